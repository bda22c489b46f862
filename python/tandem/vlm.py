# VLMPipeline: OpenVINO GenAI's image-and-text pipeline over tandem_image_* and tandem_vl_prompt (Qwen3-VL), and
# the images it takes (paths, bytes, numpy arrays / ov.Tensors, PIL images) turned into tandem_image handles.
import ctypes
import os
import re
import struct
import time
import zlib

from . import _lib
from ._lib import check, lib
from .generation import DecodedResults, PerfMetrics
from .pipeline import _ModelPipeline, _TextSink

_VLM_PROPERTIES = {"INFERENCE_NUM_THREADS", "n_ctx", "n_batch", "exact", "mmproj_path", "image_min_tokens",
                   "image_max_tokens"}
_PNG_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> gray, gray+alpha, RGB, RGBA
_IMAGE_TAG = re.compile(r"<ov_genai_image_(\d+)>")  # OpenVINO GenAI's universal tag: images[N] here
_NATIVE_TAG = "<|vision_start|><|image_pad|><|vision_end|>"  # Qwen3-VL's: the next image


def _tagged(prompt, sources):
    """OpenVINO GenAI's image tags: (prompt with each <ov_genai_image_N> replaced by Qwen3-VL's own tag, the sources
    in the order the tags name them: an image may be named twice or not at all), or None when the prompt holds no
    tag. A prompt with Qwen3-VL's own tags takes the images in order (one tag per image)."""
    refs = [int(m.group(1)) for m in _IMAGE_TAG.finditer(prompt)]
    if refs:
        bad = [r for r in refs if r >= len(sources)]
        if bad:
            raise ValueError(f"VLMPipeline.generate: the prompt names <ov_genai_image_{bad[0]}> but {len(sources)} "
                             f"image(s) were given")
        if _NATIVE_TAG in prompt:
            raise ValueError("VLMPipeline.generate: the prompt mixes <ov_genai_image_N> tags and "
                             f"{_NATIVE_TAG}; use one kind")
        return _IMAGE_TAG.sub(_NATIVE_TAG, prompt), [sources[r] for r in refs]
    if _NATIVE_TAG in prompt:
        return prompt, sources
    return None


def _png(pixels, width, height, channels):
    """A PNG file of 8-bit pixels (rows top to bottom, channels interleaved): unfiltered rows, deflated. tandem.h
    takes encoded images only, and this is the lossless one the standard library can write."""
    stride = width * channels
    view = memoryview(pixels).cast("B")
    raw = b"".join(part for y in range(height) for part in (b"\0", view[y * stride:(y + 1) * stride]))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOR_TYPE[channels], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 1))
            + chunk(b"IEND", b""))


def _is_pil(image):
    return all(hasattr(image, a) for a in ("mode", "size", "tobytes", "convert", "getbands"))


def _array_images(image, name):
    """The images of an array (numpy, ov.Tensor, or anything numpy.asarray takes): HxW, HxWxC or NxHxWxC uint8 with
    C 1..4 (gray, gray+alpha, RGB, RGBA), as (name, PNG bytes)."""
    import numpy as np
    if hasattr(image, "data") and not hasattr(image, "__array_interface__"):  # ov.Tensor: .data is a numpy view
        image = image.data
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim not in (2, 3, 4) or (a.ndim > 2 and not 1 <= a.shape[-1] <= 4):
        raise ValueError(f"VLMPipeline.generate: {name}: an image array must be uint8 of shape HxWx3 (HxW, HxWxC "
                         f"with C 1..4, or NxHxWxC), not {a.dtype} {tuple(a.shape)}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim == 3:
        a = a[None]
    return [(f"{name}[{i}]" if len(a) > 1 else name,
             _png(np.ascontiguousarray(one).tobytes(), one.shape[1], one.shape[0], one.shape[2]))
            for i, one in enumerate(a)]


def _image_sources(images):
    """(name, path or None, bytes or None) for each image of a generate() call's images."""
    if images is None:
        return []
    if not isinstance(images, (list, tuple)):
        images = [images]
    out = []
    for i, image in enumerate(images):
        name = f"images[{i}]"
        if isinstance(image, (str, os.PathLike)):
            out.append((name, os.fsencode(os.fspath(image)), None))
        elif isinstance(image, (bytes, bytearray, memoryview)):
            out.append((name, None, bytes(image)))
        elif _is_pil(image):
            if image.mode not in ("L", "LA", "RGB", "RGBA"):
                alpha = "A" in image.getbands() or "transparency" in getattr(image, "info", {})
                image = image.convert("RGBA" if alpha else "RGB")
            w, h = image.size
            out.append((name, None, _png(image.tobytes(), w, h, len(image.mode))))
        elif hasattr(image, "__array__") or hasattr(image, "__array_interface__") or hasattr(image, "data"):
            out.extend((n, None, data) for n, data in _array_images(image, name))
        else:
            raise TypeError(f"VLMPipeline.generate: {name}: an image is a file path, encoded bytes (JPEG, PNG, "
                            f"WebP), a uint8 HxWx3 numpy array or ov.Tensor, or a PIL image; not {type(image).__name__}")
    return out


class _Image:
    """One tandem_image (decoded and preprocessed for the model's vision tower); the pipeline frees it before its
    model."""

    def __init__(self, model, name, path, data, params):
        self.handle = ctypes.c_void_p()
        if path is not None:
            check(lib.tandem_image_load(model, path, ctypes.byref(params), ctypes.byref(self.handle)))
        else:
            check(lib.tandem_image_from_bytes(model, name.encode(), data, len(data), ctypes.byref(params),
                                              ctypes.byref(self.handle)))

    def free(self):
        if self.handle:
            lib.tandem_image_free(self.handle)
            self.handle = ctypes.c_void_p()

    def __del__(self):
        self.free()


def _pad_runs(ids, pad):
    """(start, end) of each run of the image placeholder id in ids: one run an image."""
    i = 0
    while i < len(ids):
        if ids[i] != pad:
            i += 1
            continue
        end = i
        while end < len(ids) and ids[end] == pad:
            end += 1
        yield i, end
        i = end


class VLMPipeline(_ModelPipeline):
    """VLMPipeline(models_path, device="CPU", config=None, **kwargs): models_path is a Qwen3-VL Hugging Face folder
    (it holds its vision tower) or a qwen3vl GGUF with mmproj_path= its projector GGUF. kwargs/config:
    INFERENCE_NUM_THREADS (0 = all CPUs), n_ctx (0 = min(model context, 4096)), n_batch, exact (f32 activations and
    KV cache), image_min_tokens / image_max_tokens (each image's token budget, 0 = the model's). A model without a
    vision tower answers text prompts and refuses images. One generate() at a time per pipeline."""

    def __init__(self, models_path, device="CPU", config=None, **kwargs):
        props = dict(config or {})
        props.update(kwargs)
        self._chat_images = []
        self._open("VLMPipeline", models_path, device, props, _VLM_PROPERTIES)
        cp = lib.tandem_ctx_default_params()
        cp.n_ctx = self._n_ctx
        if props.get("n_batch"):
            cp.n_batch = int(props["n_batch"])
        cp.exact = bool(props.get("exact", False))
        ctx = ctypes.c_void_p()
        check(lib.tandem_ctx_init(self._model, ctypes.byref(cp), ctypes.byref(ctx)))
        self._ctx = ctx
        self._image_params = lib.tandem_image_default_params()
        self._image_params.min_tokens = int(props.get("image_min_tokens", 0))
        self._image_params.max_tokens = int(props.get("image_max_tokens", 0))
        self._held = []
        self._loaded()

    def __del__(self):
        for img in getattr(self, "_chat_images", []):  # before the model they were made for
            img.free()
        self._chat_images = []
        super().__del__()

    def start_chat(self, system_message=""):
        """Chat mode: each generate() is a user turn (its images, then its text) rendered with the whole conversation,
        images of earlier turns included; the KV cache is kept between turns and only what follows the longest common
        prefix with it is evaluated (an image is kept whole or evaluated again whole). finish_chat() ends it."""
        self._drop_chat()
        self._chat = [{"role": "system", "content": system_message}] if system_message else []

    def finish_chat(self):
        self._drop_chat()
        self._chat = None

    def _drop_chat(self):
        for img in self._chat_images:
            img.free()
        self._chat_images = []
        self._held = []

    def generate(self, prompt, images=None, generation_config=None, streamer=None, **kwargs):
        """prompt: the user's text; images: a list of images (file paths, encoded bytes, uint8 HxWx3 numpy arrays or
        ov.Tensors, PIL images), or image= one. The message is the images, then the text, rendered with the model's
        chat template (as transformers' processors and `tandem run --image` build it); with apply_chat_template=False
        the prompt is used as it is and must hold one <|vision_start|><|image_pad|><|vision_end|> per image. As in
        OpenVINO GenAI, <ov_genai_image_N> in the prompt puts images[N] there instead (images no tag names are left
        out; one may be named twice), and a prompt holding Qwen3-VL's own tag gets no images prepended.
        streamer: as LLMPipeline's. Returns DecodedResults."""
        if "image" in kwargs:
            one = kwargs.pop("image")
            images = ([] if images is None else list(images) if isinstance(images, (list, tuple)) else [images]) \
                + ([] if one is None else [one])
        videos = kwargs.pop("videos", None)
        if videos is not None and len(videos) > 0:
            raise NotImplementedError("VLMPipeline.generate: videos are not supported (images only)")
        if not isinstance(prompt, str):
            raise TypeError("VLMPipeline.generate: prompt must be a str")
        config = self._config_of(generation_config, kwargs)
        sources = _image_sources(images)
        tagged = _tagged(prompt, sources)
        if tagged is not None:
            prompt, sources = tagged
        with self._lock:
            new = [_Image(self._model, n, p, d, self._image_params) for n, p, d in sources]
            try:
                return self._generate(prompt, new, config, streamer, tagged is not None)
            finally:
                for img in new:
                    if img not in self._chat_images:
                        img.free()

    def _prompt_ids(self, text, images):
        if not images:
            return self._tokenizer._encode_one(text)
        data = text.encode("utf-8")
        handles = (ctypes.c_void_p * len(images))(*[img.handle.value for img in images])
        ids = ctypes.POINTER(ctypes.c_int32)()
        n = ctypes.c_size_t()
        check(lib.tandem_vl_prompt(self._model, data, len(data), handles, len(images), ctypes.byref(ids),
                                   ctypes.byref(n)))
        try:
            return ids[:n.value]
        finally:
            lib.tandem_free(ids)

    def _keys(self, ids, images):
        """ids with each image placeholder tagged by its image, so that a prefix held in the KV cache matches only
        where the same image sits there (two images of one size have the same ids)."""
        pad = lib.tandem_model_image_token(self._model)
        keys, k, i = [], -1, 0
        while i < len(ids):
            if ids[i] == pad and images:
                k += 1
                while i < len(ids) and ids[i] == pad:
                    keys.append((pad, images[min(k, len(images) - 1)]))
                    i += 1
            else:
                keys.append(ids[i])
                i += 1
        return keys

    def _generate(self, prompt, new, config, streamer, tagged=False):
        t0 = time.perf_counter()
        chat = self._chat is not None
        # untagged: the images first, then the text (as OpenVINO GenAI prepends them); tagged: where the tags are
        content = [{"type": "image"} for _ in new] + [{"type": "text", "text": prompt}] if new and not tagged \
            else prompt
        messages = (self._chat if chat else []) + [{"role": "user", "content": content}]
        images = (self._chat_images if chat else []) + new
        tok = self._tokenizer
        if chat or (config.apply_chat_template and tok.chat_template):
            text = tok.apply_chat_template(messages, add_generation_prompt=True)
        else:
            text = prompt
        ids = self._prompt_ids(text, images)
        if not ids:
            raise ValueError("VLMPipeline.generate: the prompt is empty")
        gp, stops, _stop_arr = self._params_for(ids, config)  # gp points into _stop_arr: keep it
        if gp.max_tokens == 0:
            return DecodedResults([""], [0.0], PerfMetrics(None, self._load_ms, 0.0, len(ids), 0), ["length"],
                                  [[]])
        # the longest common prefix with what the context holds stays (at least the last prompt token is evaluated
        # again, for its logits); an image is kept whole or evaluated again whole, and the images after the kept
        # part go with the prompt
        keys = self._keys(ids, images)
        held = self._held[:lib.tandem_ctx_n_past(self._ctx)] if chat else []
        common = 0
        while common < len(held) and common < len(ids) and held[common] == keys[common]:
            common += 1
        common = min(common, len(ids) - 1)
        pad = lib.tandem_model_image_token(self._model)
        first_image = 0
        for i, end in (_pad_runs(ids, pad) if images else ()):
            if end <= common:
                first_image += 1
            elif i < common:
                common = i
        check(lib.tandem_ctx_truncate(self._ctx, common))
        self._held = []
        passed = images[first_image:]
        handles = (ctypes.c_void_p * len(passed))(*[img.handle.value for img in passed])
        if passed:  # a text prompt passes NULL (a model without a vision tower refuses any images pointer)
            gp.images = ctypes.cast(handles, ctypes.c_void_p)
            gp.n_images = len(passed)
        sink = _TextSink(streamer)
        gp.on_text = sink.callback
        r = self._generate_after(ids, common, gp, sink, config, stops, t0)
        if chat:
            self._held = keys + r.token_ids[0]
            if not sink.cancelled:  # CANCEL drops this turn from the history, as in OpenVINO GenAI
                self._chat = messages + [{"role": "assistant", "content": r.texts[0]}]
                self._chat_images = images
        sink.end()
        return r
