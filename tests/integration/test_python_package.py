"""The tandem Python package (python/tandem, OpenVINO GenAI's API shape) against independent references: the tandem
CLI's `run --json` output, the tokenizers package, jinja2 as transformers sets it up, and a built wheel in a venv.

In-tree tests load TANDEM_LIBRARY (default <repo>/build/libtandem.so); test_wheel_installs_in_a_fresh_venv runs
`pip wheel .` (set TANDEM_SKIP_WHEEL_TEST=1 to skip it offline; its CMake tree is kept in build/skbuild-wheel)."""
import json
import os
import subprocess
import sys
import threading
import venv

import pytest

from conftest import REPO

PROMPTS = ["hello world", "the cat sat on the mat and"]


def cli_run(run_tandem, model, prompt, *flags):
    out = run_tandem("run", "-m", model, "-p", prompt, "--json", *flags).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("model", ["tied_gqa2", "untied_gqa4/model-q8_0.gguf"])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_raw_prompt_equals_tandem_run(tandem, run_tandem, models_dir, model, prompt):
    p = tandem.LLMPipeline(models_dir / model)
    r = p.generate(prompt, max_new_tokens=12, apply_chat_template=False)
    ref = cli_run(run_tandem, models_dir / model, prompt, "--temp", "0", "-n", "12")
    assert r.token_ids[0] == ref["generated_ids"]
    assert r.texts[0] == ref["text"] and str(r) == ref["text"]
    assert r.finish_reasons[0] == ref["finish_reason"]
    pm = r.perf_metrics
    assert pm.get_num_input_tokens() == len(ref["prompt_ids"])
    assert pm.get_num_generated_tokens() == len(ref["generated_ids"])
    assert pm.get_ttft().mean > 0 and pm.get_generate_duration().mean >= pm.get_ttft().mean
    assert pm.get_tpot().std == 0 and pm.get_throughput().mean > 0 and pm.get_load_time() > 0


def test_str_input_uses_the_chat_template_like_run_chat(pipe, run_tandem, model_path):
    # OpenVINO GenAI's GenerationConfig.apply_chat_template defaults to True: a str prompt is a user message
    r = pipe.generate("hello world", max_new_tokens=10)
    ref = cli_run(run_tandem, model_path, "hello world", "--chat", "--temp", "0", "-n", "10")
    assert r.token_ids[0] == ref["generated_ids"] and r.texts[0] == ref["text"]
    raw = pipe.generate("hello world", max_new_tokens=10, apply_chat_template=False)
    assert raw.perf_metrics.get_num_input_tokens() < r.perf_metrics.get_num_input_tokens()


def test_sampling_fields_map_onto_tandem_run(pipe, run_tandem, model_path):
    cfg = dict(do_sample=True, temperature=0.9, top_k=0, top_p=1.0, min_p=0.0, rng_seed=7, repetition_penalty=1.3,
               presence_penalty=0.5, frequency_penalty=0.25, max_new_tokens=16, apply_chat_template=False)
    r = pipe(PROMPTS[1], **cfg)
    ref = cli_run(run_tandem, model_path, PROMPTS[1], "--temp", "0.9", "--top-k", "0", "--top-p", "1", "--min-p", "0",
                  "--seed", "7", "--repeat-penalty", "1.3", "--repeat-last-n", "-1", "--presence-penalty", "0.5",
                  "--frequency-penalty", "0.25", "-n", "16")
    assert r.token_ids[0] == ref["generated_ids"]
    greedy = pipe(PROMPTS[1], max_new_tokens=16, apply_chat_template=False)
    assert greedy.token_ids[0] != r.token_ids[0]  # the fields were not ignored


def test_generation_config_object_and_pipeline_default(tandem, model_path):
    p = tandem.LLMPipeline(model_path)
    cfg = p.get_generation_config()
    assert not cfg.do_sample and cfg.stop_token_ids  # tied_gqa2's generation_config.json: do_sample false
    cfg.max_new_tokens = 3
    cfg.apply_chat_template = False
    p.set_generation_config(cfg)
    assert p.generate(PROMPTS[0]).perf_metrics.get_num_generated_tokens() == 3
    assert len(p.generate(PROMPTS[0], max_new_tokens=5).token_ids[0]) == 5
    n_prompt = p.generate(PROMPTS[0]).perf_metrics.get_num_input_tokens()
    r = p.generate(PROMPTS[0], tandem.GenerationConfig(max_length=n_prompt + 4, apply_chat_template=False))
    assert len(r.token_ids[0]) == 4 and r.finish_reasons == ["length"]


@pytest.mark.parametrize("kw", [{}, {"do_sample": True, "temperature": 0.8, "rng_seed": 3, "top_k": 20},
                                {"stop_strings": {"e"}, "include_stop_str_in_output": True}])
def test_list_input_gives_what_each_prompt_gives_alone(pipe, kw):
    prompts = PROMPTS + ["a third, longer prompt to read over more than one step of the engine " * 3] + PROMPTS[:1]
    r = pipe.generate(prompts, max_new_tokens=12, apply_chat_template=False, **kw)
    singles = [pipe.generate(p, max_new_tokens=12, apply_chat_template=False, **kw) for p in prompts]
    assert r.token_ids == [s.token_ids[0] for s in singles]
    assert r.texts == [s.texts[0] for s in singles] and len(r.scores) == len(prompts)
    assert r.finish_reasons == [s.finish_reasons[0] for s in singles]
    assert r.perf_metrics.get_num_generated_tokens() == sum(len(ids) for ids in r.token_ids)
    assert pipe.generate(PROMPTS, max_new_tokens=0).texts == ["", ""]


def test_streamer_pieces_concatenate_to_the_text(tandem, pipe):
    pieces = []
    r = pipe.generate(PROMPTS[1], max_new_tokens=20, streamer=pieces.append, apply_chat_template=False)
    assert len(pieces) > 1 and "".join(pieces) == r.texts[0]

    class Collect(tandem.StreamerBase):
        def __init__(self):
            self.text, self.ended = "", False

        def write(self, text):
            self.text += text
            return tandem.StreamingStatus.RUNNING

        def end(self):
            self.ended = True

    s = Collect()
    r2 = pipe.generate(PROMPTS[1], max_new_tokens=20, streamer=s, apply_chat_template=False)
    assert s.ended and s.text == r2.texts[0] == r.texts[0]


@pytest.mark.parametrize("stop_value", [True, "STOP", "CANCEL"])
def test_streamer_stops_the_generation(tandem, pipe, stop_value):
    value = stop_value if stop_value is True else tandem.StreamingStatus[stop_value]
    full = pipe.generate(PROMPTS[1], max_new_tokens=20, apply_chat_template=False)
    pieces = []

    def streamer(text):
        pieces.append(text)
        return value if len(pieces) == 2 else None

    r = pipe.generate(PROMPTS[1], max_new_tokens=20, streamer=streamer, apply_chat_template=False)
    assert len(pieces) == 2 and r.finish_reasons == ["aborted"]
    assert len(r.token_ids[0]) < len(full.token_ids[0]) and full.texts[0].startswith(r.texts[0])


def test_streamer_exception_propagates(pipe):
    def streamer(text):
        raise KeyError("from the streamer")
    with pytest.raises(KeyError, match="from the streamer"):
        pipe.generate(PROMPTS[0], max_new_tokens=5, streamer=streamer, apply_chat_template=False)
    assert pipe.generate(PROMPTS[0], max_new_tokens=3, apply_chat_template=False).texts  # still usable


def test_stop_strings(pipe):
    full = pipe.generate(PROMPTS[1], max_new_tokens=20, apply_chat_template=False).texts[0]
    stop = full[5:8]
    assert stop and stop not in full[:7]
    r = pipe.generate(PROMPTS[1], max_new_tokens=20, stop_strings={stop}, apply_chat_template=False)
    assert r.texts[0] == full[:full.index(stop)] and r.finish_reasons == ["stop"]
    pieces = []
    r2 = pipe.generate(PROMPTS[1], max_new_tokens=20, stop_strings={stop}, include_stop_str_in_output=True,
                       streamer=pieces.append, apply_chat_template=False)
    assert r2.texts[0] == full[:full.index(stop)] + stop == "".join(pieces)


def test_draft_model_and_prompt_lookup_give_the_greedy_text(tandem, pipe, model_path, models_dir):
    plain = pipe.generate(PROMPTS[1], max_new_tokens=24, apply_chat_template=False)
    for draft in (model_path, str(models_dir / "tied_gqa2" / "model-q8_0.gguf")):
        p = tandem.LLMPipeline(model_path, "CPU", draft_model=tandem.draft_model(draft, "CPU"))
        for kw in ({}, {"num_assistant_tokens": 3}, {"assistant_confidence_threshold": 0.5}):
            r = p.generate(PROMPTS[1], max_new_tokens=24, apply_chat_template=False, **kw)
            assert r.token_ids == plain.token_ids and r.texts == plain.texts, (draft, kw)
    r = p.generate(PROMPTS[::-1], max_new_tokens=24, apply_chat_template=False)  # together, drafting in the engine
    assert r.token_ids[0] == plain.token_ids[0] and len(r.texts) == 2
    pl = tandem.LLMPipeline(model_path, prompt_lookup=True)
    r = pl.generate(PROMPTS[1], max_new_tokens=24, max_ngram_size=2, num_assistant_tokens=4,
                    apply_chat_template=False)
    assert r.token_ids == plain.token_ids
    r = pl.generate(PROMPTS[::-1], max_new_tokens=24, max_ngram_size=2, num_assistant_tokens=4,
                    apply_chat_template=False)  # lookup in the engine
    assert r.token_ids[0] == plain.token_ids[0] and len(r.texts) == 2
    with pytest.raises(ValueError, match="max_ngram_size"):
        pl.generate(PROMPTS[1], max_new_tokens=4)


def test_missing_draft_model_raises(tandem, model_path, tmp_path):
    with pytest.raises(tandem.TandemError, match="nothing-here"):
        tandem.LLMPipeline(model_path, draft_model=tandem.draft_model(tmp_path / "nothing-here"))
    with pytest.raises(TypeError, match="draft_model"):
        tandem.LLMPipeline(model_path, draft_model=model_path)


@pytest.mark.parametrize("kwargs, exc, needle", [
    ({"num_beams": 2}, NotImplementedError, "beam search"),
    ({"num_return_sequences": 2}, NotImplementedError, "num_return_sequences"),
    ({"min_new_tokens": -1}, ValueError, "min_new_tokens"),
    ({"logprobs": 21}, ValueError, "logprobs"),
    ({"num_beam_groups": 2}, NotImplementedError, "beam search"),
    ({"diversity_penalty": 0.5}, NotImplementedError, "beam search"),
    ({"length_penalty": 0.5}, NotImplementedError, "beam search"),
    ({"no_repeat_ngram_size": 3}, NotImplementedError, "no_repeat_ngram_size"),
    ({"echo": True}, NotImplementedError, "echo"),
    ({"adapters": object()}, NotImplementedError, "adapters"),
    ({"min_p": 1.5}, ValueError, "min_p"),
    ({"top_k": -1}, ValueError, "top_k"),
    ({"presence_penalty": 101.0}, ValueError, "presence_penalty"),
    ({"max_ngram_size": 17}, ValueError, "max_ngram_size"),
    ({"assistant_confidence_threshold": 1.5}, ValueError, "assistant_confidence_threshold"),
    ({"stop_strings": {""}}, ValueError, "stop_strings"),
    ({"stop_token_ids": {5}}, NotImplementedError, "stop_token_ids"),
    ({"eos_token_id": 7}, NotImplementedError, "end ids"),
    ({"top_p": 0.0}, ValueError, "top_p"),
    ({"temperature": -1.0}, ValueError, "temperature"),
    ({"do_sample": True, "temperature": 0.0}, ValueError, "temperature"),
    ({"max_new_tokens": -2}, ValueError, "max_new_tokens"),
    ({"repetition_penalty": 0.0}, ValueError, "repetition_penalty"),
    ({"num_assistant_tokens": 100}, ValueError, "num_assistant_tokens"),
    ({"no_such_field": 1}, AttributeError, "no_such_field"),
])
def test_generation_config_errors(tandem, pipe, kwargs, exc, needle):
    with pytest.raises(exc, match=needle):
        pipe.generate(PROMPTS[0], **{"max_new_tokens": 4, **kwargs})
    if needle not in ("no_such_field", "stop_token_ids", "end ids"):  # these need the model's end ids
        with pytest.raises(exc, match=needle):
            tandem.GenerationConfig(**kwargs).validate()


def test_pipeline_errors(tandem, model_path, tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(tandem.TandemError, match=str(missing)) as e:
        tandem.LLMPipeline(missing)
    assert isinstance(e.value, RuntimeError) and e.value.status < 0
    with pytest.raises(ValueError, match="CPU"):
        tandem.LLMPipeline(model_path, "GPU")
    with pytest.raises(ValueError, match="PERFORMANCE_HINT"):
        tandem.LLMPipeline(model_path, "CPU", PERFORMANCE_HINT="LATENCY")


def test_generation_config_from_json(tandem, model_path):
    cfg = tandem.GenerationConfig(os.path.join(model_path, "generation_config.json"))
    assert cfg.stop_token_ids == {400, 402} and cfg.eos_token_id == 402 and cfg.do_sample is False


def test_tokenizer_matches_the_tokenizers_package(pipe, model_path):
    tokenizers = pytest.importorskip("tokenizers")
    ref = tokenizers.Tokenizer.from_file(os.path.join(model_path, "tokenizer.json"))
    tok = pipe.get_tokenizer()
    texts = ["hello world", "<|im_start|>user\nthe cat<|im_end|>\n", "  spaces\tand é ünïcode 123"]
    enc = tok.encode(texts).input_ids
    for text, ids in zip(texts, enc):
        assert ids == ref.encode(text).ids
        assert tok.decode(ids, skip_special_tokens=False) == ref.decode(ids, skip_special_tokens=False)
        assert tok.decode(ids) == ref.decode(ids, skip_special_tokens=True)  # OpenVINO GenAI's default
    assert tok.encode(texts[0]).attention_mask == [[1] * len(enc[0])]
    assert tok.decode(enc) == [ref.decode(ids) for ids in enc]


def test_standalone_tokenizer_matches_the_tokenizers_package(tandem, qwen3_tokenizer_dir):
    """Tokenizer(path) on the real Qwen3 tokenizer: encode with and without add_special_tokens, and decode with and
    without skip_special_tokens (special tokens left out; <think>, <tool_call>, not special, kept), as tokenizers."""
    tokenizers = pytest.importorskip("tokenizers")
    np = pytest.importorskip("numpy")
    ref = tokenizers.Tokenizer.from_file(str(qwen3_tokenizer_dir / "tokenizer.json"))
    tok = tandem.Tokenizer(qwen3_tokenizer_dir)
    texts = ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\nhm\n</think>\n\nok<|im_end|>",
             "<tool_call>{}</tool_call><|endoftext|>", "plain text, ünïcode 😀 123"]
    for text in texts:
        for add in (True, False):
            ids = tok.encode(text, add_special_tokens=add).input_ids[0]
            assert ids == ref.encode(text, add_special_tokens=add).ids
        for skip in (True, False):
            assert tok.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip)
        assert tok.decode(np.array(ids)) == ref.decode(ids)
    think = ref.token_to_id("<think>")
    assert tok.is_special(ref.token_to_id("<|im_end|>")) and not tok.is_special(think)
    assert not tok.is_special(-1) and not tok.is_special(10 ** 7)
    with pytest.raises(tandem.TandemError, match="tokenizer"):
        tandem.Tokenizer(qwen3_tokenizer_dir / "missing")
    with pytest.raises(ValueError, match="properties"):
        tandem.Tokenizer(qwen3_tokenizer_dir, {"add_special_tokens": False})
    with pytest.raises(NotImplementedError, match="padding"):
        tok.encode(texts, pad_to_max_length=True)


def test_apply_chat_template_matches_jinja2(pipe, qwen3_tokenizer_dir):
    pytest.importorskip("jinja2")
    import make_chat_golden as ref  # tests/gen: jinja2 set up as transformers does
    env = ref.make_env()
    tok = pipe.get_tokenizer()
    history = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi é"},
               {"role": "assistant", "content": "hello"}, {"role": "user", "content": "more"}]
    for agp in (False, True):
        want = ref.render(env, tok.chat_template, {"messages": history, "add_generation_prompt": agp})
        assert tok.apply_chat_template(history, add_generation_prompt=agp) == want
    qwen3 = json.loads((qwen3_tokenizer_dir / "tokenizer_config.json").read_text())["chat_template"]
    for extra in (None, {"enable_thinking": False}):
        case = {"messages": history, "add_generation_prompt": True, "tools": ref.TOOLS, "extra": extra}
        got = tok.apply_chat_template(history, True, chat_template=qwen3, tools=ref.TOOLS, extra_context=extra)
        assert got == ref.render(env, qwen3, case)


def test_named_templates_and_special_tokens(tandem, models_dir, qwen3_tokenizer_dir, tmp_path):
    """Tokenizer.apply_chat_template picks the "tool_use" template when tools are given and passes the tokenizer's
    special tokens, as transformers does (tests/golden/chat/named_cases.json; jinja2 here)."""
    pytest.importorskip("jinja2")
    import shutil
    import make_chat_golden as ref
    named = json.loads((REPO / "tests" / "golden" / "chat" / "named_cases.json").read_text(encoding="utf-8"))
    src = models_dir / "tied_gqa2"
    for f in ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"]:
        shutil.copy(src / f, tmp_path / f)
    config = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.update(chat_template=named["chat_template"], bos_token="<|endoftext|>")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    tok = tandem.LLMPipeline(str(tmp_path)).get_tokenizer()
    history = [{"role": "user", "content": "hi"}]
    for tools, k in [(None, 0), (ref.TOOLS, 1), ([], 1)]:
        want = ref.render(ref.make_env(), named["chat_template"][k]["template"],
                          dict(ref.special_variables(config), messages=history, add_generation_prompt=True,
                               tools=tools))
        assert tok.apply_chat_template(history, True, tools=tools) == want
    # a template asked for by name (transformers' chat_template="default"): it wins over the tools' choice; the
    # expected text is transformers' (named_cases.json), on a tokenizer with those special tokens
    tiny = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    qwen3 = json.loads((qwen3_tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert ref.special_variables(tiny) == ref.special_variables(qwen3)  # so transformers' text holds for it
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(dict(tiny, chat_template=named["chat_template"])),
                                                    encoding="utf-8")
    tok = tandem.LLMPipeline(str(tmp_path)).get_tokenizer()
    cases = [c for c in named["cases"] if "template_name" in c and c["config"] == "qwen3_tokens"]
    assert len(cases) == 4
    for c in cases:
        got = tok.apply_chat_template(c["messages"], True, chat_template=c["template_name"], tools=c["tools"])
        assert got == c["expected"], c["name"]


def test_bad_chat_template_raises(tandem, pipe):
    with pytest.raises(tandem.TandemError, match="chat template"):
        pipe.get_tokenizer().apply_chat_template([{"role": "user", "content": "x"}], True,
                                                 chat_template="{% for %}")


def test_two_pipelines_in_two_threads(tandem, model_path, models_dir):
    paths = [model_path, str(models_dir / "untied_gqa4")]
    pipes = [tandem.LLMPipeline(p) for p in paths]
    want = [p.generate(PROMPTS[1], max_new_tokens=16, apply_chat_template=False).token_ids for p in pipes]
    got = [None, None]

    def work(i):
        got[i] = pipes[i].generate(PROMPTS[1], max_new_tokens=16, apply_chat_template=False).token_ids
    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want


@pytest.mark.skipif(os.environ.get("TANDEM_SKIP_WHEEL_TEST") == "1", reason="TANDEM_SKIP_WHEEL_TEST=1")
def test_wheel_installs_in_a_fresh_venv(tmp_path, model_path, run_tandem):
    wheels = tmp_path / "wheels"
    # pip fetches scikit-build-core into its isolated build environment (from its cache after the first time)
    cp = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-w", str(wheels),
                         "-C", f"build-dir={REPO / 'build' / 'skbuild-wheel'}"],
                        capture_output=True, text=True, timeout=900)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    (wheel,) = wheels.glob("tandem-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    cp = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", str(wheel)], capture_output=True,
                        text=True, timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    code = ("import json, sys, tandem as openvino_genai\n"
            "p = openvino_genai.LLMPipeline(sys.argv[1], 'CPU')\n"
            "r = p.generate('hello world', max_new_tokens=8, apply_chat_template=False)\n"
            "print(json.dumps({'ids': r.token_ids[0], 'file': openvino_genai.__file__}))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TANDEM_LIBRARY", "PYTHONPATH")}
    cp = subprocess.run([str(py), "-c", code, model_path], capture_output=True, text=True, timeout=120,
                        cwd=tmp_path, env=env)
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout)
    assert out["file"].startswith(str(env_dir))
    ref = cli_run(run_tandem, model_path, "hello world", "--temp", "0", "-n", "8")
    assert out["ids"] == ref["generated_ids"]


def test_the_article_snippet_runs_with_the_import_changed(model_path, models_dir, tandem):
    # The Intel/Hugging Face article's code, with `import openvino_genai` replaced
    import tandem as openvino_genai
    target_path, draft_path, device = model_path, str(models_dir / "tied_gqa2" / "model-q8_0.gguf"), "CPU"
    model = openvino_genai.LLMPipeline(target_path, device, draft_model=openvino_genai.draft_model(draft_path, device))
    pieces = []

    def streamer(subword):
        pieces.append(subword)
        return False

    result = model.generate("Alan Turing was a", max_new_tokens=100, streamer=streamer)
    assert "".join(pieces) == str(result)
    plain = openvino_genai.LLMPipeline(target_path, device).generate("Alan Turing was a", max_new_tokens=100)
    assert result.token_ids == plain.token_ids


def test_chat_mode_keeps_the_conversation(tandem, model_path):
    p, ref = tandem.LLMPipeline(model_path), tandem.LLMPipeline(model_path)
    tok = p.get_tokenizer()
    p.start_chat("be brief")
    first = p.generate("hello", max_new_tokens=6)
    second = p.generate("and then", max_new_tokens=6)
    history = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"},
               {"role": "assistant", "content": first.texts[0]}, {"role": "user", "content": "and then"}]
    want = ref.generate(tok.apply_chat_template(history, True), max_new_tokens=6, apply_chat_template=False)
    assert second.token_ids == want.token_ids
    assert ref.generate(tandem.ChatHistory(history), max_new_tokens=6).token_ids == want.token_ids
    # CANCEL drops the turn: the next turn sees the history without it
    p.generate("ignored turn", max_new_tokens=6, streamer=lambda t: tandem.StreamingStatus.CANCEL)
    history += [{"role": "assistant", "content": second.texts[0]}, {"role": "user", "content": "last"}]
    want = ref.generate(tok.apply_chat_template(history, True), max_new_tokens=6, apply_chat_template=False)
    assert p.generate("last", max_new_tokens=6).token_ids == want.token_ids
    p.finish_chat()
    assert p.generate("hello", max_new_tokens=6).token_ids == ref.generate("hello", max_new_tokens=6).token_ids


def test_text_streamer_and_ignore_eos(tandem, pipe):
    ends = [p for p in ("hello", "hello world", "the cat", "a", "b c d")
            if pipe.generate(p, max_new_tokens=48).finish_reasons == ["eos"]]
    assert ends, "no prompt ends with an end token within 48 tokens on this model"
    pieces = []
    r = pipe.generate(ends[0], max_new_tokens=48, ignore_eos=True,
                      streamer=tandem.TextStreamer(pipe.get_tokenizer(), pieces.append))
    assert r.finish_reasons == ["length"] and len(r.token_ids[0]) == 48 and "".join(pieces) == r.texts[0]


def test_set_chat_template_is_used_by_generate(tandem, run_tandem, models_dir, tmp_path):
    """Tokenizer.set_chat_template (OpenVINO GenAI's) replaces the model's template, as --chat-template-file does in
    tandem run --chat: the same prompt ids."""
    p = tandem.LLMPipeline(str(models_dir / "tied_gqa2"))
    source = "{{ eos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    p.get_tokenizer().set_chat_template(source)
    assert p.get_tokenizer().chat_template == source
    tmpl = tmp_path / "t.jinja"
    tmpl.write_text(source)
    ran = json.loads(run_tandem("run", "-m", models_dir / "tied_gqa2", "-p", "hi", "--chat", "--chat-template-file",
                                tmpl, "-n", "4", "--temp", "0", "--json").stdout.strip().splitlines()[-1])
    r = p.generate("hi", max_new_tokens=4, do_sample=False)
    assert r.texts[0] == ran["text"]
    want = p.get_tokenizer().apply_chat_template([{"role": "user", "content": "hi"}], True, tools=[{"type": "x"}])
    assert want.startswith("<|im_end|><user>hi")


def test_gguf_tokenizer_skips_its_control_tokens(tandem, model_path):
    """In a GGUF the special tokens are those of type CONTROL (llama.cpp's converter marks <|fim_prefix|> and the
    like so too, unlike tokenizer.json): read with the gguf package, the text decoded by tokenizers."""
    tokenizers = pytest.importorskip("tokenizers")
    gguf = pytest.importorskip("gguf")
    path = os.path.join(model_path, "model-f32.gguf")
    field = gguf.GGUFReader(path).fields["tokenizer.ggml.token_type"]
    types = [int(field.parts[i][0]) for i in field.data]
    ref = tokenizers.Tokenizer.from_file(os.path.join(model_path, "tokenizer.json"))
    tok = tandem.LLMPipeline(path).get_tokenizer()
    ids = list(range(395, 426)) + [5, 6]
    control = [i for i in ids if types[i] == gguf.TokenType.CONTROL]
    assert 400 in control and 402 in control
    assert tok.decode(ids) == ref.decode([i for i in ids if i not in control], skip_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=False) == ref.decode(ids, skip_special_tokens=False)
