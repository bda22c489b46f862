"""GenerationConfig.min_new_tokens and log-probabilities (scores, token_logprobs, logprobs = top N) of the tandem
Python package against transformers: tests/golden/python/cases.json (tests/gen/make_python_golden.py) holds what
transformers' generate(min_new_tokens=...) returns on tied_gqa2 with an end id that comes early, and log_softmax of
the same model's logits."""
import json
import os
import shutil

import pytest

from conftest import GOLDEN

GOLD = json.loads((GOLDEN / "python" / "cases.json").read_text())
CASES = GOLD["cases"]
LOGPROB_TOL = 2e-3  # per token: tandem's f16 KV cache against transformers' float32


@pytest.fixture(scope="module")
def early_eos_model(models_dir, tmp_path_factory):
    """tied_gqa2 with the golden's eos_token_id list in generation_config.json (as transformers was given it)."""
    src = models_dir / GOLD["model"]
    dst = tmp_path_factory.mktemp("early_eos")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        os.symlink(src / name, dst / name)
    cfg = json.loads((src / "generation_config.json").read_text())
    cfg["eos_token_id"] = GOLD["eos_token_id"]
    (dst / "generation_config.json").write_text(json.dumps(cfg))
    return dst


@pytest.fixture(scope="module")
def early_pipe(tandem, early_eos_model):
    return tandem.LLMPipeline(early_eos_model)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"min{c['min_new_tokens']}")
def test_min_new_tokens_equals_transformers(tandem, early_pipe, case):
    r = early_pipe.generate(tandem.TokenizedInputs([GOLD["prompt_ids"]]), max_new_tokens=GOLD["n_new"],
                            min_new_tokens=case["min_new_tokens"])
    assert r.tokens == [case["ids"]]
    assert r.finish_reasons == [case["finish"]]


def test_min_new_tokens_in_a_batch_and_speculating(tandem, early_eos_model):
    """The engine (a list of prompts) and speculative decoding (prompt lookup, a draft model) ban the end ids at the
    same positions: greedy output is the golden's."""
    prompt = GOLD["prompt_ids"]
    for case in CASES:
        m = case["min_new_tokens"]
        batch = tandem.LLMPipeline(early_eos_model).generate(tandem.TokenizedInputs([prompt, prompt]),
                                                             max_new_tokens=GOLD["n_new"], min_new_tokens=m)
        assert batch.tokens == [case["ids"], case["ids"]], m
    lookup = tandem.LLMPipeline(early_eos_model, prompt_lookup=True)
    draft = tandem.LLMPipeline(early_eos_model, draft_model=tandem.draft_model(early_eos_model))
    for case in CASES:
        m = case["min_new_tokens"]
        r = lookup.generate(tandem.TokenizedInputs([prompt]), max_new_tokens=GOLD["n_new"], min_new_tokens=m,
                            max_ngram_size=2)
        assert r.tokens == [case["ids"]], m
        r = draft.generate(tandem.TokenizedInputs([prompt]), max_new_tokens=GOLD["n_new"], min_new_tokens=m,
                           num_assistant_tokens=4)
        assert r.tokens == [case["ids"]], m
        assert r.extended_perf_metrics.get_num_accepted_tokens() > 0


def test_min_new_tokens_holds_back_stop_strings(tandem, pipe, model_path):
    """A stop string completed within the first min_new_tokens ids stays text; the first one completed after ends
    the generation (its text cut), as the free greedy continuation's decoding with `tokenizers` says."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_path, "tokenizer.json"))
    free = GOLD["free"]
    piece = tok.decode(free[1:2])
    assert piece.strip() and tok.decode(free[:1]).find(piece) < 0
    inputs = tandem.TokenizedInputs([GOLD["prompt_ids"]])
    for m in (0, 1, 2, 6):
        r = pipe.generate(inputs, max_new_tokens=GOLD["n_new"], min_new_tokens=m, stop_strings={piece})
        end, text = None, ""
        for i in range(len(free)):  # the first id after the first m whose text completes the stop string
            before, text = text, tok.decode(free[:i + 1])
            at = text.find(piece, max(len(before) - len(piece) + 1, 0))
            if i >= m and at >= 0:
                end = (i, text[:at])
                break
        if end is None:
            assert r.finish_reasons == ["length"] and r.tokens == [free]
        else:
            assert r.finish_reasons == ["stop"] and r.tokens == [free[:end[0] + 1]], m
            assert pipe.get_tokenizer().decode(free[:end[0] + 1]).startswith(end[1])
    with pytest.raises(ValueError, match="min_new_tokens"):
        pipe.generate("x", min_new_tokens=-1)
    with pytest.raises(ValueError, match="min_new_tokens"):
        pipe.generate("x", min_new_tokens=2,
                      structured_output_config=tandem.StructuredOutputConfig(json_schema={"type": "object"}))


@pytest.mark.parametrize("case", CASES[::2], ids=lambda c: f"min{c['min_new_tokens']}")
def test_scores_are_sums_of_log_softmax(tandem, early_pipe, case):
    r = early_pipe.generate(tandem.TokenizedInputs([GOLD["prompt_ids"]]), max_new_tokens=GOLD["n_new"],
                            min_new_tokens=case["min_new_tokens"], logprobs=3)
    assert r.tokens == [case["ids"]]
    assert r.token_logprobs[0] == pytest.approx(case["logprobs"], abs=LOGPROB_TOL)
    assert r.scores[0] == pytest.approx(case["score"], abs=LOGPROB_TOL * len(case["ids"]))
    assert r.scores[0] == pytest.approx(sum(r.token_logprobs[0]), abs=1e-4)
    assert len(r.top_logprobs[0]) == len(case["ids"])
    for top, ref_ids, ref_lp in zip(r.top_logprobs[0], case["top_ids"], case["top_logprobs"]):
        assert [t for t, _ in top] == ref_ids[:3]
        assert [lp for _, lp in top] == pytest.approx(ref_lp[:3], abs=LOGPROB_TOL)


def test_scores_of_text_batches_and_sampling(tandem, early_pipe):
    """Every path fills scores (a list of prompts through the engine, sampling, a streamer); without logprobs there
    are no top lists; the same output gives the same score whatever the sampling settings (raw log-probabilities)."""
    prompt = GOLD["prompt"]
    one = early_pipe.generate(prompt, max_new_tokens=8, apply_chat_template=False)
    assert one.top_logprobs == [[]] and len(one.token_logprobs[0]) == len(one.token_ids[0])
    assert one.scores[0] < 0 and one.scores[0] == pytest.approx(sum(one.token_logprobs[0]), abs=1e-4)
    pieces = []
    streamed = early_pipe.generate(prompt, max_new_tokens=8, apply_chat_template=False, streamer=pieces.append)
    assert streamed.scores == one.scores and "".join(pieces) == one.texts[0]
    both = early_pipe.generate([prompt, prompt], max_new_tokens=8, apply_chat_template=False)
    assert both.scores == pytest.approx(one.scores * 2, abs=1e-5)
    hot = early_pipe.generate(prompt, max_new_tokens=8, apply_chat_template=False, do_sample=True,
                              temperature=5.0, top_k=3, rng_seed=7)
    assert hot.scores[0] == pytest.approx(sum(hot.token_logprobs[0]), abs=1e-4) and hot.scores[0] < 0
    zero = early_pipe.generate(prompt, max_new_tokens=0, apply_chat_template=False)
    assert zero.scores == [0.0]
    with pytest.raises(ValueError, match="logprobs"):
        early_pipe.generate(prompt, logprobs=21)


def test_c_api_refuses_bad_min_new_tokens(tandem, pipe):
    """tandem_generate itself (not only GenerationConfig.validate) refuses a negative min_new_tokens, and one with a
    grammar, naming the field."""
    import ctypes
    from tandem import _lib
    ids = (ctypes.c_int32 * 2)(5, 6)
    grammar = pipe._grammar('{"type": "object"}')
    for value, g in ((-1, None), (2, grammar)):
        gp = _lib.lib.tandem_gen_default_params(pipe._model)
        gp.max_tokens, gp.min_new_tokens, gp.grammar = 4, value, g
        res = _lib.GenResult()
        with pytest.raises(tandem.TandemError, match="min_new_tokens"):
            _lib.check(_lib.lib.tandem_generate(pipe._ctx, ids, 2, ctypes.byref(gp), ctypes.byref(res)))
