"""The tandem Python package's OpenVINO GenAI-shaped classes beyond LLMPipeline's text path: EncodedResults for
token-id input, speculative-decoding metrics, structured output, ContinuousBatchingPipeline, chat KV reuse and
tandem.pull. References: `tandem run --json` (ids, speculative counts), jsonschema, the pipeline alone."""
import importlib
import json
import math

import pytest

from test_python_package import PROMPTS, cli_run

np = pytest.importorskip("numpy")


class FakeOvTensor:
    """What the package reads of an openvino.Tensor: .data, a numpy view of its memory (openvino is not installed)."""

    def __init__(self, array):
        self.data = array


def test_token_ids_give_encoded_results_equal_to_tandem_run(tandem, pipe, run_tandem, model_path):
    ref = cli_run(run_tandem, model_path, PROMPTS[1], "--temp", "0", "-n", "12")
    inputs = pipe.get_tokenizer().encode(PROMPTS[1])
    assert inputs.input_ids == [ref["prompt_ids"]]
    r = pipe.generate(inputs, max_new_tokens=12)
    assert isinstance(r, tandem.EncodedResults)
    assert r.tokens == [ref["generated_ids"]] and r.finish_reasons == [ref["finish_reason"]]
    assert len(r.scores) == 1 and r.extended_perf_metrics is None
    assert r.perf_metrics.get_num_input_tokens() == len(ref["prompt_ids"])
    assert r.perf_metrics.get_num_generated_tokens() == len(ref["generated_ids"])
    # no chat template is applied to ids (apply_chat_template is for text); the same through __call__
    assert pipe(inputs, max_new_tokens=12, apply_chat_template=True).tokens == r.tokens
    # one row as a 1-D array, as an ov.Tensor
    arr = np.array(ref["prompt_ids"], dtype=np.int64)
    assert pipe.generate(arr, max_new_tokens=12).tokens == r.tokens
    assert pipe.generate(FakeOvTensor(arr[None, :]), max_new_tokens=12).tokens == r.tokens


def test_padded_batch_of_ids_gives_each_row_alone(tandem, pipe):
    rows = pipe.get_tokenizer().encode(PROMPTS).input_ids
    width = max(len(r) for r in rows)
    ids = np.array([[0] * (width - len(r)) + r for r in rows], dtype=np.int64)  # left padding, as OpenVINO pads
    mask = np.array([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=np.int64)
    assert len(rows[0]) != len(rows[1])  # so padding is really there
    r = pipe.generate(tandem.TokenizedInputs(FakeOvTensor(ids), FakeOvTensor(mask)), max_new_tokens=10)
    alone = [pipe.generate(tandem.TokenizedInputs([row]), max_new_tokens=10).tokens[0] for row in rows]
    assert r.tokens == alone and len(r.finish_reasons) == 2
    texts = [pipe.generate(p, max_new_tokens=10, apply_chat_template=False).token_ids[0] for p in PROMPTS]
    assert alone == texts


def test_bad_token_input_raises(tandem, pipe):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        pipe.generate(np.array([1, 2, 10 ** 6]), max_new_tokens=2)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        pipe.generate(np.array([[-1, 2]]), max_new_tokens=2)
    with pytest.raises(TypeError, match="integer token ids"):
        pipe.generate(np.array([[1.5, 2.0]]), max_new_tokens=2)
    with pytest.raises(ValueError, match="attention_mask"):
        pipe.generate(tandem.TokenizedInputs([[1, 2, 3]], [[1, 1]]), max_new_tokens=2)
    with pytest.raises(ValueError, match="empty"):
        pipe.generate(tandem.TokenizedInputs([[1, 2]], [[0, 0]]), max_new_tokens=2)


@pytest.mark.parametrize("draft", ["tied_gqa2/model-q8_0.gguf", "tied_gqa2/model-q4_0.gguf"])
def test_speculative_metrics_equal_tandem_run(tandem, run_tandem, models_dir, model_path, draft):
    """extended_perf_metrics (SDPerModelsPerfMetrics) carry tandem's spec stats: with a fixed draft length the counts
    are deterministic, so they must equal `tandem run -md` for the same settings."""
    p = tandem.LLMPipeline(model_path, draft_model=tandem.draft_model(models_dir / draft))
    r = p.generate(PROMPTS[1], max_new_tokens=24, num_assistant_tokens=3, apply_chat_template=False)
    ref = cli_run(run_tandem, model_path, PROMPTS[1], "--temp", "0", "-n", "24", "-md", models_dir / draft,
                  "--draft-max", "3", "--draft-fixed")
    assert r.token_ids == [ref["generated_ids"]]
    sd, spec = r.extended_perf_metrics, ref["speculative"]
    assert isinstance(sd, tandem.SDPerModelsPerfMetrics) and isinstance(sd, tandem.ExtendedPerfMetrics)
    assert sd.get_num_accepted_tokens() == spec["accepted"] > 0
    assert sd.main_model_metrics.num_iterations == spec["rounds"]
    assert sd.main_model_metrics.get_num_generated_tokens() == len(ref["generated_ids"])
    assert sd.draft_model_metrics.get_num_generated_tokens() == spec["drafted"] - spec["drafted_lookup"]
    assert sd.draft_model_metrics.get_num_accepted_tokens() == spec["accepted"] - spec["accepted_lookup"]
    assert sd.num_drafted_tokens == spec["drafted"] and sd.acceptance_rate == pytest.approx(spec["acceptance_rate"])
    assert sd.main_model_metrics.get_inference_duration().mean > 0
    assert sd.main_model_metrics.get_ttft().mean == r.perf_metrics.get_ttft().mean > 0
    assert sd.main_model_metrics.get_tpot().mean == r.perf_metrics.get_tpot().mean > 0
    assert math.isnan(sd.draft_model_metrics.get_ttft().mean) and math.isnan(sd.get_ttst().mean)
    assert sd.draft_model_metrics.get_inference_duration().mean > 0
    assert sd.main_model_metrics.get_latency().mean == pytest.approx(
        sd.main_model_metrics.get_inference_duration().mean / spec["rounds"])
    # the prompt's pass gives the first token; every verification pass its accepted proposals and one of its own
    assert 1 + spec["rounds"] + spec["accepted"] >= len(ref["generated_ids"])
    # the same through token ids (EncodedResults) and summed over a list of prompts
    enc = p.generate(p.get_tokenizer().encode(PROMPTS[1]), max_new_tokens=24, num_assistant_tokens=3)
    assert enc.extended_perf_metrics.get_num_accepted_tokens() == spec["accepted"]
    both = p.generate([PROMPTS[1], PROMPTS[0]], max_new_tokens=24, num_assistant_tokens=3, apply_chat_template=False)
    one = p.generate(PROMPTS[0], max_new_tokens=24, num_assistant_tokens=3, apply_chat_template=False)
    assert both.token_ids == [ref["generated_ids"], one.token_ids[0]]
    assert both.extended_perf_metrics.get_num_accepted_tokens() == spec["accepted"] + \
        one.extended_perf_metrics.get_num_accepted_tokens()


def test_prompt_lookup_metrics_count_lookup_proposals(tandem, run_tandem, model_path):
    p = tandem.LLMPipeline(model_path, prompt_lookup=True)
    prompt = "one two three one two three one two three one two"
    r = p.generate(prompt, max_new_tokens=24, max_ngram_size=2, num_assistant_tokens=4, apply_chat_template=False)
    ref = cli_run(run_tandem, model_path, prompt, "--temp", "0", "-n", "24", "--lookup", "2", "--draft-max", "4",
                  "--draft-fixed")
    assert r.token_ids == [ref["generated_ids"]]
    sd, spec = r.extended_perf_metrics, ref["speculative"]
    assert sd.num_drafted_tokens == spec["drafted"] == spec["drafted_lookup"]
    assert sd.num_accepted_lookup_tokens == spec["accepted_lookup"] == sd.get_num_accepted_tokens()
    assert sd.draft_model_metrics.get_num_generated_tokens() == 0  # no draft model
    assert tandem.LLMPipeline(model_path).generate(prompt, max_new_tokens=4).extended_perf_metrics is None


JSON_PROMPT = "<|im_start|>user\nGive me JSON.<|im_end|>\n<|im_start|>assistant\n"
SCHEMA = {"type": "object",
          "properties": {"name": {"type": "string", "maxLength": 8},
                         "age": {"type": "integer", "minimum": 0, "maximum": 120},
                         "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3}},
          "required": ["name", "age"], "additionalProperties": False}


def test_structured_output_samples_validate(tandem, pipe):
    """50 sampled answers of a random model under structured_output_config: each ends at the grammar's end and is
    valid under the schema as the jsonschema package judges it; without the config the same draws are not JSON."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(SCHEMA)
    soc = tandem.StructuredOutputConfig(json_schema=json.dumps(SCHEMA))
    cfg = tandem.GenerationConfig(do_sample=True, temperature=1.0, max_new_tokens=200, apply_chat_template=False,
                                  structured_output_config=soc)
    texts = set()
    for seed in range(50):
        cfg.rng_seed = seed
        r = pipe.generate(JSON_PROMPT, cfg)
        assert r.finish_reasons == ["eos"], r.texts
        value = json.loads(r.texts[0])
        assert not [e.message for e in validator.iter_errors(value)], r.texts[0]
        texts.add(r.texts[0])
    assert len(texts) > 10  # sampled: the grammar leaves choices and they are taken
    free = [pipe.generate(JSON_PROMPT, do_sample=True, rng_seed=s, max_new_tokens=40, apply_chat_template=False)
            for s in range(5)]
    assert not any(t.texts[0].startswith("{") for t in free)  # the random model alone writes no JSON


def test_structured_output_greedy_equals_tandem_run(tandem, pipe, run_tandem, model_path, tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMA))
    ref = cli_run(run_tandem, model_path, JSON_PROMPT, "--temp", "0", "-n", "200", "--json-schema", path)
    soc = tandem.StructuredOutputConfig(json_schema=SCHEMA)  # a dict is taken too
    r = pipe.generate(JSON_PROMPT, max_new_tokens=200, apply_chat_template=False, structured_output_config=soc)
    assert r.token_ids == [ref["generated_ids"]] and r.texts == [ref["text"]]
    # several prompts at once (the engine) and token-id input follow the grammar too
    both = pipe.generate([JSON_PROMPT, JSON_PROMPT], max_new_tokens=200, apply_chat_template=False,
                         structured_output_config=soc)
    assert both.token_ids == [ref["generated_ids"]] * 2
    enc = pipe.generate(tandem.TokenizedInputs([ref["prompt_ids"]]), max_new_tokens=200, structured_output_config=soc)
    assert enc.tokens == [ref["generated_ids"]]


@pytest.mark.parametrize("kwargs, exc, needle", [
    ({"regex": "[a-z]+"}, NotImplementedError, "regex"),
    ({"grammar": "root ::= \"x\""}, NotImplementedError, "grammar"),
    ({"json_schema": SCHEMA, "structural_tags_config": {}}, NotImplementedError, "structural_tags_config"),
    ({}, ValueError, "json_schema"),
    ({"json_schema": 5}, TypeError, "json_schema"),
])
def test_structured_output_unsupported_kinds_raise(tandem, pipe, kwargs, exc, needle):
    with pytest.raises(exc, match=needle):
        pipe.generate(JSON_PROMPT, max_new_tokens=4, structured_output_config=tandem.StructuredOutputConfig(**kwargs))


def test_structured_output_bad_schema_raises_the_c_message(tandem, pipe):
    soc = tandem.StructuredOutputConfig(json_schema="{not json")
    with pytest.raises(tandem.TandemError, match="schema"):
        pipe.generate(JSON_PROMPT, max_new_tokens=4, structured_output_config=soc)
    with pytest.raises(ValueError, match="ignore_eos"):
        pipe.generate(JSON_PROMPT, max_new_tokens=4, ignore_eos=True,
                      structured_output_config=tandem.StructuredOutputConfig(json_schema=SCHEMA))


def common_prefix(a, b):
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n


@pytest.mark.parametrize("draft", [None, "tied_gqa2/model-q8_0.gguf"])
def test_chat_turns_reuse_the_kv_cache(tandem, models_dir, model_path, draft):
    """In chat mode each turn evaluates only what follows the tokens the context already holds (the last turn's
    prompt and answer, but its last token, which was never evaluated), and answers as a fresh pipeline given the
    whole conversation as ids does."""
    kw = {"draft_model": tandem.draft_model(models_dir / draft)} if draft else {}
    p, ref = tandem.LLMPipeline(model_path, **kw), tandem.LLMPipeline(model_path)
    tok = p.get_tokenizer()
    p.start_chat("be brief")
    history = [{"role": "system", "content": "be brief"}]
    held = []
    for turn in ["hello", "and then", "one more thing", "bye"]:
        r = p.generate(turn, max_new_tokens=8)
        history.append({"role": "user", "content": turn})
        ids = tok.encode(tok.apply_chat_template(history, True)).input_ids[0]
        assert r.token_ids == ref.generate(tandem.TokenizedInputs([ids]), max_new_tokens=8).tokens
        pm = r.perf_metrics
        assert pm.get_num_input_tokens() == len(ids)
        assert pm.get_num_reused_input_tokens() == common_prefix(held, ids)
        if held:  # everything the template renders again as it was is reused, the previous prompt at least
            assert pm.get_num_reused_input_tokens() >= len(prev_prompt)
        history.append({"role": "assistant", "content": r.texts[0]})
        prev_prompt, held = ids, ids + r.token_ids[0][:-1]
    p.finish_chat()
    r = p.generate("hello", max_new_tokens=8)
    assert r.perf_metrics.get_num_reused_input_tokens() == 0
    assert r.token_ids == ref.generate("hello", max_new_tokens=8).token_ids


CB_PROMPTS = PROMPTS + ["a third, longer prompt to read over more than one step of the engine " * 2, "zebra"]


def cb_pipe(tandem, model_path, **scheduler):
    sc = tandem.SchedulerConfig(**{"max_num_seqs": 2, "max_num_batched_tokens": 16, **scheduler})
    return tandem.ContinuousBatchingPipeline(model_path, sc, "CPU")


def test_continuous_batching_generate_equals_llm_pipeline_alone(tandem, pipe, model_path):
    """Four prompts on two slots (two wait in the queue), prompts read 16 tokens a step beside the decoding ones:
    each answer equals LLMPipeline's alone with the same config, greedy, sampled, stop strings, structured."""
    cb = cb_pipe(tandem, model_path)
    G = tandem.GenerationConfig
    configs = [G(max_new_tokens=12), G(max_new_tokens=12, do_sample=True, temperature=0.8, rng_seed=5, top_k=20),
               G(max_new_tokens=20, stop_strings={"e"}, include_stop_str_in_output=True),
               G(max_new_tokens=200, structured_output_config=tandem.StructuredOutputConfig(json_schema=SCHEMA))]
    results = cb.generate(CB_PROMPTS, configs)
    assert [r.m_request_id for r in results] == [0, 1, 2, 3]
    for prompt, config, r in zip(CB_PROMPTS, configs, results):
        alone = pipe.generate(prompt, config)
        assert r.m_generation_ids == alone.texts and r.token_ids == alone.token_ids, prompt
        assert r.m_status == tandem.GenerationStatus.FINISHED and r.finish_reasons == alone.finish_reasons
        assert r.perf_metrics.get_num_input_tokens() == alone.perf_metrics.get_num_input_tokens()
    json.loads(results[3].m_generation_ids[0])
    # one config for all; the pipeline's own when none is given
    greedy = cb.generate(CB_PROMPTS, tandem.GenerationConfig(max_new_tokens=12))
    assert [r.token_ids[0] for r in greedy] == [pipe.generate(p, max_new_tokens=12).token_ids[0] for p in CB_PROMPTS]


def test_continuous_batching_token_ids_equal_tandem_run(tandem, run_tandem, model_path):
    cb = cb_pipe(tandem, model_path)
    refs = [cli_run(run_tandem, model_path, p, "--temp", "0", "-n", "10") for p in PROMPTS]
    results = cb.generate([np.array(r["prompt_ids"]) for r in refs], tandem.GenerationConfig(max_new_tokens=10))
    assert isinstance(results[0], tandem.EncodedGenerationResult)
    assert [r.m_generation_ids for r in results] == [[r["generated_ids"]] for r in refs]


def test_continuous_batching_handles_read_as_they_go(tandem, pipe, model_path):
    cb = cb_pipe(tandem, model_path)
    config = tandem.GenerationConfig(max_new_tokens=16, apply_chat_template=False)
    handles = [cb.add_request(i, p, config) for i, p in enumerate(CB_PROMPTS)]
    assert cb.has_non_finished_requests()
    pieces = [[] for _ in handles]
    steps = 0
    while cb.has_non_finished_requests():
        cb.step()
        steps += 1
        for h, got in zip(handles, pieces):
            if h.can_read():
                new = h.read()[0].generated_ids
                assert new
                got.append(new)
    assert all(h.get_status() == tandem.GenerationStatus.FINISHED for h in handles)
    for p, h, got in zip(CB_PROMPTS, handles, pieces):
        want = pipe.generate(p, config).token_ids[0]
        assert sum(got, []) == want and len(got) > 1  # token by token, not all at the end
        assert h.read_all()[0].generated_ids == want and not h.can_read()
        assert h.read_all()[0].finish_reason == tandem.GenerationFinishReason.LENGTH
    assert steps >= 16


def test_continuous_batching_stop_and_cancel(tandem, pipe, model_path):
    cb = cb_pipe(tandem, model_path)
    config = tandem.GenerationConfig(max_new_tokens=24, apply_chat_template=False)
    a, b, c = (cb.add_request(i, p, config) for i, p in enumerate(CB_PROMPTS[:3]))
    first = []
    while len(first) < 4:
        cb.step()
        first += a.read()[0].generated_ids
    a.stop()
    b.cancel()
    c.drop()
    assert a.get_status() == tandem.GenerationStatus.STOP and b.get_status() == tandem.GenerationStatus.CANCEL
    full = pipe.generate(CB_PROMPTS[0], config).token_ids[0]
    got = a.read_all()[0].generated_ids
    assert 4 <= len(got) < len(full) and full[:len(got)] == got and got[:len(first)] == first
    assert not cb.has_non_finished_requests()
    d = cb.add_request(9, CB_PROMPTS[1], config)  # the pipeline goes on
    assert d.read_all()[0].generated_ids == pipe.generate(CB_PROMPTS[1], config).token_ids[0]
    # a streamer on one prompt; STOP from it ends that request
    pieces = []
    r = cb.generate([CB_PROMPTS[0]], config, streamer=lambda t: pieces.append(t) or len(pieces) == 3)
    assert len(pieces) == 3 and r[0].m_status == tandem.GenerationStatus.STOP
    with pytest.raises(ValueError, match="streamer"):
        cb.generate(CB_PROMPTS, config, streamer=print)


@pytest.mark.parametrize("scheduler, running", [({"max_num_seqs": 1}, 1), ({"max_num_seqs": 3}, 3),
                                                ({"num_kv_blocks": 8}, 1), ({"num_kv_blocks": 16}, 2),
                                                ({"cache_size": 1.5 * 131072 / (1 << 30)}, 1)])
def test_scheduler_config_limits_running_sequences(tandem, pipe, model_path, scheduler, running):
    """max_num_seqs, num_kv_blocks (32 rows each: tied_gqa2's context of 256 rows is 8 blocks) and cache_size
    (GiB; one context is 128 KiB) bound how many requests run at once: after one step, only that many have ids.
    The answers stay each prompt's own."""
    cb = cb_pipe(tandem, model_path, **{"max_num_seqs": 3, "max_num_batched_tokens": 64, **scheduler})
    config = tandem.GenerationConfig(max_new_tokens=6, apply_chat_template=False)
    handles = [cb.add_request(i, p, config) for i, p in enumerate(PROMPTS + ["zebra"])]
    cb.step()
    assert sum(h.can_read() for h in handles) == running
    for h, p in zip(handles, PROMPTS + ["zebra"]):
        assert h.read_all()[0].generated_ids == pipe.generate(p, config).token_ids[0]


def test_continuous_batching_with_a_draft_model(tandem, pipe, models_dir, model_path):
    cb = tandem.ContinuousBatchingPipeline(model_path, tandem.SchedulerConfig(max_num_seqs=2), "CPU",
                                           draft_model=tandem.draft_model(models_dir / "tied_gqa2/model-q8_0.gguf"))
    config = tandem.GenerationConfig(max_new_tokens=16, num_assistant_tokens=3, apply_chat_template=False)
    results = cb.generate(CB_PROMPTS, config)
    assert [r.token_ids[0] for r in results] == [pipe.generate(p, config).token_ids[0] for p in CB_PROMPTS]
    assert sum(r.extended_perf_metrics.get_num_accepted_tokens() for r in results) > 0


@pytest.mark.parametrize("scheduler, exc, needle", [
    ({"max_num_seqs": 8, "max_num_batched_tokens": 4}, ValueError, "max_num_batched_tokens"),
    ({"max_num_seqs": 0}, ValueError, "max_num_seqs"),
    ({"dynamic_split_fuse": False}, NotImplementedError, "dynamic_split_fuse"),
    ({"use_cache_eviction": True}, NotImplementedError, "use_cache_eviction"),
    ({"cache_size": 1, "num_kv_blocks": 4}, ValueError, "not both"),
])
def test_scheduler_config_errors(tandem, model_path, scheduler, exc, needle):
    with pytest.raises(exc, match=needle):
        tandem.ContinuousBatchingPipeline(model_path, tandem.SchedulerConfig(**scheduler))
    with pytest.raises(AttributeError, match="block_count"):
        tandem.SchedulerConfig(block_count=3)


def test_scheduler_budget_too_small_for_one_context_raises(tandem, model_path):
    cb = cb_pipe(tandem, model_path, num_kv_blocks=4)
    with pytest.raises(tandem.TandemError, match="SchedulerConfig.cache_size / num_kv_blocks hold less"):
        cb.add_request(0, PROMPTS[0], tandem.GenerationConfig(max_new_tokens=2))


SAMPLED = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "rng_seed": 1,
           "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
FLAG = {"temperature": "--temp", "top_k": "--top-k", "top_p": "--top-p", "min_p": "--min-p", "rng_seed": "--seed",
        "repetition_penalty": "--repeat-penalty", "presence_penalty": "--presence-penalty",
        "frequency_penalty": "--frequency-penalty"}


@pytest.mark.parametrize("field, value", [("temperature", 0.5), ("top_k", 5), ("top_p", 0.5), ("min_p", 0.2),
                                          ("rng_seed", 2), ("repetition_penalty", 1.5), ("presence_penalty", 1.5),
                                          ("frequency_penalty", 1.5)])
def test_each_sampling_field_alone_changes_the_answer_as_tandem_run(pipe, run_tandem, model_path, field, value):
    """Each sampling field, changed alone from a neutral sampled config, changes the answer, and the answer is
    `tandem run`'s with that flag: so no field is dropped or crossed with another on the way to C."""
    def flags(cfg):
        out = ["-n", "24", "--repeat-last-n", "-1"]
        for k, f in FLAG.items():
            out += [f, str(cfg[k])]
        return out
    prompt = PROMPTS[1] + " the cat sat on the mat"  # repeated tokens: the penalties have something to act on
    base = pipe.generate(prompt, max_new_tokens=24, apply_chat_template=False, **SAMPLED).token_ids[0]
    changed = dict(SAMPLED, **{field: value})
    got = pipe.generate(prompt, max_new_tokens=24, apply_chat_template=False, **changed).token_ids[0]
    assert got != base
    assert got == cli_run(run_tandem, model_path, prompt, *flags(changed))["generated_ids"]
    assert base == cli_run(run_tandem, model_path, prompt, *flags(SAMPLED))["generated_ids"]


@pytest.mark.parametrize("kw, flags", [({"num_assistant_tokens": 2}, ["--draft-max", "2", "--draft-fixed"]),
                                       ({"num_assistant_tokens": 5}, ["--draft-max", "5", "--draft-fixed"]),
                                       ({"assistant_confidence_threshold": 0.9}, ["--draft-p-min", "0.9"])])
def test_assistant_fields_shape_the_drafts_as_tandem_run(tandem, run_tandem, models_dir, model_path, kw, flags):
    """num_assistant_tokens and assistant_confidence_threshold do not change a greedy answer, but they change what
    the draft proposes: its counts equal `tandem run -md` with the matching flags (and differ from the defaults')."""
    draft = models_dir / "tied_gqa2/model-q4_0.gguf"
    p = tandem.LLMPipeline(model_path, draft_model=tandem.draft_model(draft))
    r = p.generate(PROMPTS[1], max_new_tokens=32, apply_chat_template=False, **kw)
    ref = cli_run(run_tandem, model_path, PROMPTS[1], "--temp", "0", "-n", "32", "-md", draft, *flags)
    assert r.token_ids == [ref["generated_ids"]]
    sd = r.extended_perf_metrics
    if "num_assistant_tokens" in kw:  # a fixed length: the counts are exact
        assert (sd.main_model_metrics.num_iterations, sd.num_drafted_tokens) == \
            (ref["speculative"]["rounds"], ref["speculative"]["drafted"])
        assert sd.num_drafted_tokens <= kw["num_assistant_tokens"] * sd.main_model_metrics.num_iterations
        other = p.generate(PROMPTS[1], max_new_tokens=32, apply_chat_template=False,
                           num_assistant_tokens=7 - kw["num_assistant_tokens"]).extended_perf_metrics
        assert (other.main_model_metrics.num_iterations, other.num_drafted_tokens) != \
            (sd.main_model_metrics.num_iterations, sd.num_drafted_tokens)
    else:  # the draft stops at its first token below 0.9 confidence: fewer tokens per pass than without it
        free = p.generate(PROMPTS[1], max_new_tokens=32, apply_chat_template=False, num_assistant_tokens=5)
        assert sd.num_drafted_tokens / sd.main_model_metrics.num_iterations < \
            free.extended_perf_metrics.num_drafted_tokens / free.extended_perf_metrics.main_model_metrics.num_iterations


def test_end_ids_equal_to_the_models_are_accepted(pipe):
    eos = pipe.get_tokenizer().get_eos_token_ids()
    plain = pipe.generate(PROMPTS[0], max_new_tokens=48)
    for kw in ({"eos_token_id": eos[-1]}, {"stop_token_ids": set(eos)}, {"stop_token_ids": set()}):
        assert pipe.generate(PROMPTS[0], max_new_tokens=48, **kw).token_ids == plain.token_ids


# Each GenerationConfig field and the tests that observe its effect (or, for what tandem lacks, its clear error).
FIELD_TESTS = {
    "max_new_tokens": ["test_python_package.py::test_greedy_raw_prompt_equals_tandem_run"],
    "max_length": ["test_python_package.py::test_generation_config_object_and_pipeline_default"],
    "ignore_eos": ["test_python_package.py::test_text_streamer_and_ignore_eos"],
    "eos_token_id": ["test_python_package.py::test_generation_config_errors",
                     "test_end_ids_equal_to_the_models_are_accepted"],
    "stop_token_ids": ["test_python_package.py::test_generation_config_errors",
                       "test_end_ids_equal_to_the_models_are_accepted"],
    "stop_strings": ["test_python_package.py::test_stop_strings"],
    "include_stop_str_in_output": ["test_python_package.py::test_stop_strings"],
    "do_sample": ["test_python_package.py::test_sampling_fields_map_onto_tandem_run"],
    "temperature": ["test_each_sampling_field_alone_changes_the_answer_as_tandem_run"],
    "top_k": ["test_each_sampling_field_alone_changes_the_answer_as_tandem_run"],
    "top_p": ["test_each_sampling_field_alone_changes_the_answer_as_tandem_run"],
    "min_p": ["test_each_sampling_field_alone_changes_the_answer_as_tandem_run"],
    "rng_seed": ["test_each_sampling_field_alone_changes_the_answer_as_tandem_run"],
    "repetition_penalty": ["test_each_sampling_field_alone_changes_the_answer_as_tandem_run"],
    "presence_penalty": ["test_each_sampling_field_alone_changes_the_answer_as_tandem_run"],
    "frequency_penalty": ["test_each_sampling_field_alone_changes_the_answer_as_tandem_run"],
    "num_assistant_tokens": ["test_assistant_fields_shape_the_drafts_as_tandem_run"],
    "assistant_confidence_threshold": ["test_assistant_fields_shape_the_drafts_as_tandem_run"],
    "max_ngram_size": ["test_prompt_lookup_metrics_count_lookup_proposals"],
    "apply_chat_template": ["test_python_package.py::test_str_input_uses_the_chat_template_like_run_chat"],
    "structured_output_config": ["test_structured_output_samples_validate"],
    # not supported by tandem: a NotImplementedError naming the field
    "min_new_tokens": ["test_python_logprobs.py::test_min_new_tokens_equals_transformers",
                       "test_python_logprobs.py::test_min_new_tokens_holds_back_stop_strings"],
    "logprobs": ["test_python_logprobs.py::test_scores_are_sums_of_log_softmax"],
    **{f: ["test_python_package.py::test_generation_config_errors"]
       for f in ("num_beams", "num_beam_groups", "num_return_sequences", "diversity_penalty",
                 "length_penalty", "no_repeat_ngram_size", "echo", "adapters")},
}


def test_every_generation_config_field_has_a_test(tandem):
    import test_python_package
    assert set(vars(tandem.GenerationConfig())) == set(FIELD_TESTS)
    for field, tests in FIELD_TESTS.items():
        for t in tests:
            module, name = t.split("::") if "::" in t else ("", t)
            where = importlib.import_module(module[:-3]) if module else None
            assert callable(getattr(where, name, None) if module else globals().get(name)), (field, t)
    source = open(test_python_package.__file__).read()
    for f in FIELD_TESTS:  # the unsupported ones are really in the error test's table
        if FIELD_TESTS[f] == ["test_python_package.py::test_generation_config_errors"]:
            assert f'{{"{f}":' in source, f
