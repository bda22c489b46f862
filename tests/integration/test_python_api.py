"""The tandem Python package's OpenVINO GenAI-shaped classes beyond LLMPipeline's text path: EncodedResults for
token-id input, speculative-decoding metrics, structured output, ContinuousBatchingPipeline, chat KV reuse and
tandem.pull. References: `tandem run --json` (ids, speculative counts), jsonschema, the pipeline alone."""
import json

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
