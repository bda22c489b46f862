"""tandem.VLMPipeline (python/tandem/vlm.py) on the tiny Qwen3-VL folder of tests/golden/vision_chat
(tests/gen/make_vl_text_golden.py): greedy answers equal transformers' (cases.json) and `tandem run --image`'s; images
given as numpy arrays, ov.Tensors, PIL images, bytes or paths give the answer of the same image read from its file;
chat turns reusing the KV cache answer as the whole conversation evaluated afresh; a text model refuses images."""
import json

import pytest

np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")


class FakeOvTensor:
    """What the package reads of an openvino.Tensor: .data, a numpy view of its memory (openvino is not installed)."""

    def __init__(self, array):
        self.data = array


@pytest.fixture(scope="module")
def vl_dir(golden_dir):
    return golden_dir / "vision_chat" / "model"


@pytest.fixture(scope="module")
def cases(golden_dir):
    return {c["case"]: c for c in json.loads((golden_dir / "vision_chat" / "cases.json").read_text())["cases"]}


@pytest.fixture(scope="module")
def image_path(golden_dir):
    return lambda name: golden_dir / ("vision_chat" if name.startswith("checker") else "images") / name


@pytest.fixture(scope="module")
def vlm(tandem, vl_dir):
    # exact and n_batch 8 as test_vl_cli.py runs `tandem run` against the same goldens
    return tandem.VLMPipeline(vl_dir, "CPU", exact=True, n_batch=8)


def greedy(pipe, case, images, **kwargs):
    return pipe.generate(case["text"], images=images, max_new_tokens=len(case["greedy"]), do_sample=False, **kwargs)


@pytest.mark.parametrize("name", ["one_image", "two_images", "text_only"])
def test_greedy_matches_transformers_and_tandem_run(tandem, vlm, run_tandem, vl_dir, cases, image_path, name):
    c = cases[name]
    r = greedy(vlm, c, [str(image_path(f)) for f in c["images"]])
    assert isinstance(r, tandem.DecodedResults)
    assert r.token_ids[0] == c["greedy"]
    assert r.perf_metrics.get_num_input_tokens() == len(c["input_ids"])
    flags = [a for f in c["images"] for a in ("--image", image_path(f))] or ["--chat"]
    out = run_tandem("run", "-m", vl_dir, *flags, "-p", c["text"], "-n", len(c["greedy"]), "--temp", "0", "--exact",
                     "--json", "-b", "8").stdout
    ref = json.loads(out.strip().splitlines()[-1])
    assert (r.token_ids[0], r.texts[0], r.finish_reasons[0]) == (ref["generated_ids"], ref["text"],
                                                                 ref["finish_reason"])


def test_image_forms_equal_the_file(vlm, cases, image_path):
    c = cases["two_images"]
    paths = [image_path(f) for f in c["images"]]
    pil = [Image.open(p).convert("RGB") for p in paths]
    arrays = [np.asarray(im) for im in pil]
    assert arrays[0].shape == (64, 96, 3) and arrays[0].dtype == np.uint8
    for images in ([arrays[0], arrays[1]], pil, [FakeOvTensor(arrays[0][None]), paths[1].read_bytes()],
                   [str(paths[0]), paths[1]]):
        assert greedy(vlm, c, images).token_ids[0] == c["greedy"]
    one = cases["one_image"]
    assert greedy(vlm, one, None, image=arrays[0]).token_ids[0] == one["greedy"]
    assert greedy(vlm, one, arrays[0]).token_ids[0] == one["greedy"]  # one array, not in a list


def test_gray_and_alpha_arrays_equal_their_rgb(vlm, cases, image_path):
    """HxW (gray) and HxWx4 (opaque RGBA) arrays read as the HxWx3 array of the same pixels: the PNG color types the
    package writes reach the model as RGB."""
    c = cases["one_image"]
    rgb = np.asarray(Image.open(image_path(c["images"][0])).convert("RGB"))
    gray = (rgb.astype(np.uint32).sum(axis=2) // 3).astype(np.uint8)
    as_rgb = greedy(vlm, c, [np.repeat(gray[:, :, None], 3, axis=2)]).token_ids[0]
    assert greedy(vlm, c, [gray]).token_ids[0] == as_rgb
    assert greedy(vlm, c, [gray[:, :, None]]).token_ids[0] == as_rgb
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    assert greedy(vlm, c, [rgba]).token_ids[0] == c["greedy"]


def test_raw_prompt_with_placeholders(tandem, vlm, cases, image_path):
    """apply_chat_template=False: the prompt as given, holding the processor's placeholders (cases.json's rendered
    text), answers as the chat-rendered one; a prompt without them for an image is refused."""
    c = cases["one_image"]
    r = vlm.generate(c["rendered"], images=[image_path(c["images"][0])], max_new_tokens=len(c["greedy"]),
                     do_sample=False, apply_chat_template=False)
    assert r.token_ids[0] == c["greedy"]
    with pytest.raises(tandem.TandemError, match="tandem_vl_prompt"):
        vlm.generate("no placeholder", images=[image_path(c["images"][0])], max_new_tokens=1,
                     apply_chat_template=False)


def test_bad_images_raise(tandem, vlm, golden_dir, image_path):
    with pytest.raises(ValueError, match="uint8"):
        vlm.generate("x", images=[np.zeros((8, 8, 3), np.float32)], max_new_tokens=1)
    with pytest.raises(ValueError, match="uint8"):
        vlm.generate("x", images=[np.zeros((3, 8, 8, 8), np.uint8)], max_new_tokens=1)
    with pytest.raises(TypeError, match="an image is"):
        vlm.generate("x", images=[object()], max_new_tokens=1)
    with pytest.raises(NotImplementedError, match="videos"):
        vlm.generate("x", videos=[np.zeros((2, 8, 8, 3), np.uint8)], max_new_tokens=1)
    with pytest.raises(tandem.TandemError, match="no_such.png"):
        vlm.generate("x", images=[golden_dir / "no_such.png"], max_new_tokens=1)
    with pytest.raises(tandem.TandemError, match="images\\[0\\]"):
        vlm.generate("x", images=[b"not an image"], max_new_tokens=1)
    # the pipeline still answers afterwards
    assert vlm.generate("x", images=[image_path("checker_64x96.png")], max_new_tokens=2).perf_metrics \
        .get_num_generated_tokens() == 2


def test_text_model_refuses_images_and_answers_text(tandem, models_dir, image_path):
    pipe = tandem.VLMPipeline(models_dir / "tied_gqa2")
    for image in (image_path("checker_64x96.png"), np.zeros((32, 32, 3), np.uint8)):
        with pytest.raises(tandem.TandemError, match="no vision tower"):
            pipe.generate("x", images=[image], max_new_tokens=2)
    text = tandem.LLMPipeline(models_dir / "tied_gqa2").generate("Hello", max_new_tokens=8, do_sample=False)
    assert pipe.generate("Hello", max_new_tokens=8, do_sample=False).token_ids == text.token_ids


def test_chat_reuses_the_cache_and_answers_as_afresh(tandem, vl_dir, cases, image_path):
    """Each turn answers as a fresh pipeline given the whole conversation as a raw prompt. A cancelled turn (its image
    of the same token count as the next turn's, so equal ids) is dropped from the history, and neither its image nor
    its positions are taken for the next turn's; a text turn after it reuses the cache of the whole prompt before."""
    c = cases["one_image"]
    checker, large = image_path("checker_64x96.png"), image_path("large_150x100.png")
    pipe = tandem.VLMPipeline(vl_dir, exact=True, n_batch=8)
    pipe.start_chat()
    r1 = greedy(pipe, c, [checker])
    assert r1.token_ids[0] == c["greedy"]
    cancelled = pipe.generate("What is this?", images=[checker], max_new_tokens=4, do_sample=False,
                              streamer=lambda text: tandem.StreamingStatus.CANCEL)
    assert cancelled.perf_metrics.get_num_generated_tokens() >= 1
    r2 = pipe.generate("What is this?", images=[large], max_new_tokens=6, do_sample=False)
    r3 = pipe.generate("And now?", max_new_tokens=6, do_sample=False)
    assert r3.perf_metrics.get_num_reused_input_tokens() >= r2.perf_metrics.get_num_input_tokens()

    def turn(text, image):
        return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}] if image else text}
    history = [turn(c["text"], True), {"role": "assistant", "content": r1.texts[0]}, turn("What is this?", True)]
    fresh = tandem.VLMPipeline(vl_dir, exact=True, n_batch=8)
    for r, following in ((r2, turn("And now?", False)), (r3, None)):
        prompt = fresh.get_tokenizer().apply_chat_template(history, add_generation_prompt=True)
        ref = fresh.generate(prompt, images=[checker, large], max_new_tokens=6, do_sample=False,
                             apply_chat_template=False)
        assert r.token_ids == ref.token_ids
        assert r.perf_metrics.get_num_input_tokens() == ref.perf_metrics.get_num_input_tokens()
        history += [{"role": "assistant", "content": r.texts[0]}, following]
    pipe.finish_chat()
    assert greedy(pipe, c, [checker]).token_ids[0] == c["greedy"]


def test_generation_config_round_trip(tandem, vlm, cases, image_path):
    """set_generation_config's config is the default of later calls; a GenerationConfig passed positionally (as
    OpenVINO's generate(prompt, images, generation_config)) is that call's."""
    c = cases["one_image"]
    saved = vlm.get_generation_config()
    config = vlm.get_generation_config()
    config.max_new_tokens, config.do_sample, config.ignore_eos = 3, False, True
    vlm.set_generation_config(config)
    try:
        assert vlm.get_generation_config().max_new_tokens == 3
        assert vlm.generate("Hi").perf_metrics.get_num_generated_tokens() == 3
    finally:
        vlm.set_generation_config(saved)
    config.max_new_tokens = len(c["greedy"])
    assert vlm.generate(c["text"], [image_path(c["images"][0])], config).token_ids[0] == c["greedy"]
    assert vlm.get_tokenizer().decode(vlm.get_tokenizer().encode("Hi").input_ids[0]) == "Hi"


def test_ov_genai_image_tags_place_the_images(vlm, cases, image_path):
    """OpenVINO GenAI's <ov_genai_image_N> tags: the tagged prompt renders as transformers' processor rendered the
    messages of cases.json (images where the tags are), images no tag names are left out, the order is the tags'."""
    one, two = cases["one_image"], cases["two_images"]
    checker, large = (str(image_path(f)) for f in two["images"])
    n1, n2 = len(one["greedy"]), len(two["greedy"])

    def ids(prompt, images):
        return vlm.generate(prompt, images=images, max_new_tokens=n2, do_sample=False).token_ids[0]

    assert ids("<ov_genai_image_0>" + one["text"], [checker])[:n1] == one["greedy"]
    assert ids("<ov_genai_image_1>" + one["text"], [large, checker])[:n1] == one["greedy"]  # large left out
    assert ids("<ov_genai_image_0><ov_genai_image_1>" + two["text"], [checker, large]) == two["greedy"]
    assert ids("<ov_genai_image_1><ov_genai_image_0>" + two["text"], [large, checker]) == two["greedy"]
    # Qwen3-VL's own tag in the prompt: no image is prepended
    assert ids("<|vision_start|><|image_pad|><|vision_end|>" + one["text"], [checker])[:n1] == one["greedy"]
    with pytest.raises(ValueError, match="ov_genai_image_2"):
        ids("<ov_genai_image_2>" + one["text"], [checker, large])
    with pytest.raises(ValueError, match="one kind"):
        ids("<ov_genai_image_0><|vision_start|><|image_pad|><|vision_end|>x", [checker, large])
