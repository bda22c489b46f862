"""tandem.hf (optimum-intel's OVModelForCausalLM / OVModelForVisualCausalLM shape) against transformers:
tests/golden/python/hf (tests/gen/make_hf_golden.py) holds what a Qwen3-VL processor and a tokenizer hand to
generate() (pixel_values as the processor made them) and what transformers' model.generate returned for it."""
import json
import re

import pytest

from conftest import GOLDEN

np = pytest.importorskip("numpy")
HF = GOLDEN / "python" / "hf"
CASES = {c["case"]: c for c in json.loads((HF / "cases.json").read_text())["cases"]}
VL_CASES = [n for n, c in CASES.items() if "pixels" in c]


def processor_output(case):
    """The processor's BatchFeature as numpy arrays (what return_tensors="np" gives)."""
    c = CASES[case]
    out = {"input_ids": np.array(c["input_ids"], dtype=np.int64),
           "attention_mask": np.array(c["attention_mask"], dtype=np.int64)}
    if "pixels" in c:
        out["pixel_values"] = np.fromfile(HF / c["pixels"], dtype="<f4").reshape(c["pixels_shape"])
        out["image_grid_thw"] = np.array(c["image_grid_thw"], dtype=np.int64)
    return out


@pytest.fixture(scope="module")
def vl_model(tandem):
    from tandem.hf import ModelForVisualCausalLM
    return ModelForVisualCausalLM.from_pretrained(GOLDEN / "vision_chat" / "model")


@pytest.fixture(scope="module")
def lm(tandem):
    from tandem.hf import ModelForCausalLM
    return ModelForCausalLM.from_pretrained(GOLDEN / "models" / "tied_gqa2")


@pytest.mark.parametrize("case", VL_CASES)
def test_visual_generate_equals_transformers(vl_model, case):
    c = CASES[case]
    inputs = processor_output(case)
    out = vl_model.generate(**inputs, max_new_tokens=c["max_new_tokens"], do_sample=False)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    assert out.tolist() == c["output"]
    # the article's decoding step: the new ids after the prompt
    new = out[:, inputs["input_ids"].shape[1]:]
    assert new.tolist() == [row[len(c["input_ids"][0]):] for row in c["output"]]


@pytest.mark.parametrize("case", ["llm_batch", "llm_one"])
def test_causal_generate_equals_transformers(lm, case):
    c = CASES[case]
    out = lm.generate(**processor_output(case), max_new_tokens=c["max_new_tokens"], do_sample=False)
    assert out.tolist() == c["output"]


def test_torch_in_torch_out_and_streamer(lm, tandem):
    """torch tensors in give a torch tensor out; a transformers-style streamer gets the prompt, then each id."""
    torch = pytest.importorskip("torch")  # not a dependency: numpy input is the tested path in CI
    c = CASES["llm_one"]
    out = lm.generate(torch.tensor(c["input_ids"]), max_new_tokens=c["max_new_tokens"])
    assert isinstance(out, torch.Tensor) and out.tolist() == c["output"]


def test_streamer_gets_prompt_then_each_new_id(lm):
    c = CASES["llm_one"]

    class Streamer:  # transformers' BaseStreamer protocol
        def __init__(self):
            self.puts, self.ended = [], False

        def put(self, value):
            self.puts.append(value.tolist())

        def end(self):
            self.ended = True

    s = Streamer()
    out = lm.generate(np.array(c["input_ids"]), max_new_tokens=c["max_new_tokens"], streamer=s)
    new = c["output"][0][len(c["input_ids"][0]):]
    assert s.puts == [c["input_ids"]] + [[t] for t in new] and s.ended
    assert out.tolist() == c["output"]


def test_rows_ending_early_are_padded_and_defaults_follow_transformers(lm, tandem, models_dir, tmp_path):
    """A row that ends at an end id is padded with pad_token_id after it; without max_new_tokens the output is
    bounded by transformers' default max_length (20, prompt included)."""
    import os
    from tandem.hf import ModelForCausalLM
    c = CASES["llm_batch"]
    inputs = processor_output("llm_batch")
    width = inputs["input_ids"].shape[1]
    row0 = c["output"][0][width:]
    src = models_dir / "tied_gqa2"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        os.symlink(src / name, tmp_path / name)
    assert row0[2] not in row0[:2] and row0[2] not in c["output"][1][width:width + 3]
    cfg = json.loads((src / "generation_config.json").read_text())
    cfg["eos_token_id"] = [402, 400, row0[2]]
    (tmp_path / "generation_config.json").write_text(json.dumps(cfg))
    early = ModelForCausalLM.from_pretrained(tmp_path)
    out = early.generate(**inputs, max_new_tokens=c["max_new_tokens"], pad_token_id=7)
    assert out.shape == (2, width + c["max_new_tokens"])
    assert out[0, width:].tolist() == row0[:3] + [7] * (c["max_new_tokens"] - 3)
    assert out[1].tolist()[:width + 3] == c["output"][1][:width + 3]
    assert lm.generate(**inputs).shape == (2, 20)


def test_bad_inputs_are_clear_errors(vl_model, lm, tandem):
    inputs = processor_output("one_image")
    with pytest.raises(ValueError, match="patches"):
        vl_model.generate(**dict(inputs, pixel_values=inputs["pixel_values"][:-1]), max_new_tokens=2)
    bad = dict(inputs, image_grid_thw=np.array([[1, 3, 8]]))  # as many patches, a grid the merge cannot pair
    with pytest.raises(tandem.TandemError, match="merge size"):
        vl_model.generate(**bad, max_new_tokens=2)
    with pytest.raises(tandem.TandemError, match="patch_dim"):
        vl_model.generate(**dict(inputs, pixel_values=inputs["pixel_values"][:, :-1]), max_new_tokens=2)
    nan = inputs["pixel_values"].copy()
    nan[3, 5] = np.nan
    with pytest.raises(tandem.TandemError, match=r"pixel_values\[3\]\[5\] is not finite"):
        vl_model.generate(**dict(inputs, pixel_values=nan), max_new_tokens=2)
    with pytest.raises(ValueError, match="no placeholder"):
        vl_model.generate(input_ids=np.array([[5, 6, 7]]), pixel_values=inputs["pixel_values"],
                          image_grid_thw=inputs["image_grid_thw"], max_new_tokens=2)
    with pytest.raises(ValueError, match=re.escape("more <|image_pad|> runs")):
        vl_model.generate(input_ids=inputs["input_ids"], max_new_tokens=2)
    with pytest.raises(TypeError, match="ModelForVisualCausalLM"):
        lm.generate(**inputs, max_new_tokens=2)
    with pytest.raises(TypeError, match="unsupported arguments"):
        lm.generate(input_ids=np.array([[5, 6]]), max_new_tokens=2, bogus=1)
    with pytest.raises(NotImplementedError, match="num_beams"):
        lm.generate(input_ids=np.array([[5, 6]]), max_new_tokens=2, num_beams=4)
    with pytest.raises(ValueError, match="attention_mask"):
        lm.generate(input_ids=np.array([[5, 6]]), attention_mask=np.array([[1]]), max_new_tokens=2)


def test_image_from_patches_checks_its_arguments(vl_model, lm, tandem):
    """tandem_image_from_patches itself: a grid_t other than 1, a patch count that is not the grid's, a model
    without a vision tower; a good call gives the image its grid's tokens (patches / merge size²)."""
    import ctypes
    from tandem import _lib
    pv = processor_output("one_image")["pixel_values"]
    ptr = pv.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    model = vl_model._pipe._model

    def make(m, n, t, h, w):
        img = ctypes.c_void_p()
        _lib.check(_lib.lib.tandem_image_from_patches(m, ptr, n, pv.shape[1], t, h, w, ctypes.byref(img)))
        return img

    with pytest.raises(tandem.TandemError, match="grid_t: 2"):
        make(model, pv.shape[0], 2, 4, 3)
    with pytest.raises(tandem.TandemError, match="n_patches: 23"):
        make(model, 23, 1, 4, 6)
    with pytest.raises(tandem.TandemError, match="no vision tower"):
        make(lm._pipe._model, pv.shape[0], 1, 4, 6)
    img = make(model, pv.shape[0], 1, 4, 6)
    try:
        assert _lib.lib.tandem_image_tokens(img) == 6
    finally:
        _lib.lib.tandem_image_free(img)
