# tandem.hf: ModelForCausalLM and ModelForVisualCausalLM, shaped like optimum-intel's OVModelFor* classes: generate()
# takes what a transformers tokenizer / AutoProcessor returns and returns prompt + new ids as transformers does.
import ctypes

from . import _lib
from ._lib import TandemError, check, lib
from .generation import GenerationConfig
from .pipeline import LLMPipeline
from .vlm import VLMPipeline, _pad_runs

# transformers' generate() keywords that are GenerationConfig fields of the same meaning
_CONFIG_KEYS = ("max_new_tokens", "max_length", "min_new_tokens", "do_sample", "temperature", "top_k", "top_p",
                "min_p", "repetition_penalty", "stop_strings", "num_beams", "num_return_sequences", "rng_seed",
                "presence_penalty", "frequency_penalty", "no_repeat_ngram_size", "num_beam_groups",
                "diversity_penalty", "length_penalty")
_IGNORED = ("use_cache", "tokenizer", "output_attentions", "output_hidden_states", "mm_token_type_ids")
_TRANSFORMERS_MAX_LENGTH = 20  # transformers' GenerationConfig default when nothing else bounds the output


def _is_torch(x):
    return type(x).__module__.split(".")[0] == "torch"


def _to_numpy(x, what, dtype):
    import numpy as np
    if _is_torch(x):
        x = x.detach().cpu().numpy()
    elif hasattr(x, "data") and not hasattr(x, "__array__") and not isinstance(x, (list, tuple)):
        x = x.data  # ov.Tensor
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise TypeError(f"generate: {what} must be an array (torch, numpy, nested lists): {e}") from None


def _like(x, array):
    """array (numpy) as the kind of x: a torch tensor (int64) when x is one, else numpy."""
    if _is_torch(x):
        import torch
        return torch.from_numpy(array)
    return array


class _Streamer:
    """transformers' streamer protocol (put(prompt ids), put(each new id), end()) fed from tandem's on_token."""

    def __init__(self, streamer, like):
        self.streamer, self.like, self.failure = streamer, like, None

    def put(self, ids):
        import numpy as np
        if self.failure is None:
            try:
                self.streamer.put(_like(self.like, np.asarray(ids, dtype=np.int64)))
            except BaseException as e:  # raised once tandem_generate has returned
                self.failure = e


class ModelForCausalLM:
    """ModelForCausalLM.from_pretrained(path) as optimum-intel's OVModelForCausalLM: generate(input_ids,
    attention_mask, max_new_tokens=..., do_sample=..., streamer=...) returns prompt + new ids, one row per input
    row (a torch tensor for torch input, else a numpy int64 array). Rows are generated one after the other, each
    without its padding (attention_mask 0); rows that end early are padded with pad_token_id on the right, as
    transformers does. transformers is not needed (numpy input works); its streamers work (put/end)."""

    _pipeline_class = LLMPipeline
    _kind = "ModelForCausalLM"

    def __init__(self, pipeline, model_id):
        self._pipe = pipeline
        self.model_id = model_id
        self.device = "cpu"

    @classmethod
    def from_pretrained(cls, model_id, device="CPU", ov_config=None, export=False, compile=True, **kwargs):
        """model_id: a Hugging Face folder, a GGUF, or a hub reference tandem resolves. ov_config: properties for
        the pipeline (INFERENCE_NUM_THREADS, n_ctx, ...). export and compile are accepted for optimum's code and mean
        nothing here: tandem reads Hugging Face checkpoints directly."""
        for k in ("trust_remote_code", "use_cache"):
            kwargs.pop(k, None)
        props = dict(ov_config or {})
        props.update(kwargs)
        return cls(cls._pipeline_class(model_id, device.upper() if isinstance(device, str) else device, **props),
                   model_id)

    def to(self, device):
        if str(device).upper() != "CPU":
            raise ValueError(f"{self._kind}.to({device!r}): tandem runs on the CPU only")
        return self

    def _config(self, generation_config, kwargs):
        config = self._pipe.get_generation_config()
        pad = kwargs.pop("pad_token_id", None)
        eos = kwargs.pop("eos_token_id", None)
        if generation_config is not None:
            if isinstance(generation_config, GenerationConfig):
                given = {k: getattr(generation_config, k) for k in _CONFIG_KEYS}
            else:  # a transformers GenerationConfig: its fields that differ from transformers' defaults
                given = generation_config.to_diff_dict() if hasattr(generation_config, "to_diff_dict") \
                    else dict(vars(generation_config))
                pad = given.get("pad_token_id", pad) if pad is None else pad
                eos = given.get("eos_token_id", eos) if eos is None else eos
            config.update_generation_config(**{k: v for k, v in given.items() if k in _CONFIG_KEYS})
        if kwargs.pop("return_dict_in_generate", False) or kwargs.pop("output_scores", False) \
                or kwargs.pop("output_logits", False):
            raise NotImplementedError(f"{self._kind}.generate: return_dict_in_generate / output_scores are not "
                                      "supported (use LLMPipeline's logprobs)")
        for k in _IGNORED:
            kwargs.pop(k, None)
        unknown = set(kwargs) - set(_CONFIG_KEYS)
        if unknown:
            raise TypeError(f"{self._kind}.generate: unsupported arguments {sorted(unknown)}")
        config.update_generation_config(**kwargs)
        if config.max_new_tokens is None and config.max_length is None:
            config.max_length = _TRANSFORMERS_MAX_LENGTH
        if eos is not None:
            eos = [eos] if isinstance(eos, int) else list(eos)
            config.stop_token_ids = set(eos)
            config.eos_token_id = eos[0] if eos else -1
        config.validate()
        if pad is None:
            pad = config.eos_token_id if config.eos_token_id not in (None, -1) else 0
        return config, int(pad)

    def _rows(self, input_ids, attention_mask):
        import numpy as np
        if input_ids is None:
            raise TypeError(f"{self._kind}.generate: input_ids is required")
        ids = _to_numpy(input_ids, "input_ids", np.int64)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"{self._kind}.generate: input_ids must be [batch, length], not {tuple(ids.shape)}")
        mask = np.ones_like(ids) if attention_mask is None else _to_numpy(attention_mask, "attention_mask", np.int64)
        if mask.ndim == 1:
            mask = mask[None]
        if mask.shape != ids.shape:
            raise ValueError(f"{self._kind}.generate: attention_mask {tuple(mask.shape)} differs in shape from "
                             f"input_ids {tuple(ids.shape)}")
        return ids, [[int(t) for t, m in zip(row, mrow) if m] for row, mrow in zip(ids, mask)]

    def generate(self, input_ids=None, attention_mask=None, generation_config=None, streamer=None, **kwargs):
        import numpy as np
        images = self._take_images(kwargs)
        config, pad = self._config(generation_config, kwargs)
        ids, rows = self._rows(input_ids, attention_mask)
        if config.max_new_tokens is None:  # transformers counts max_length with the padding
            config.max_new_tokens = max(config.max_length - ids.shape[1], 0)
        if streamer is not None and len(rows) > 1:
            raise ValueError(f"{self._kind}.generate: a streamer needs a batch of one (as in transformers)")
        sink = _Streamer(streamer, input_ids) if streamer is not None else None
        try:
            new = self._generate_rows(rows, config, images, sink)
        finally:
            for img in images:
                lib.tandem_image_free(img)
        width = ids.shape[1] + max(len(n) for n in new)
        out = np.full((ids.shape[0], width), pad, dtype=np.int64)
        out[:, :ids.shape[1]] = ids
        for i, n in enumerate(new):
            out[i, ids.shape[1]:ids.shape[1] + len(n)] = n
        return _like(input_ids, out)

    def _take_images(self, kwargs):
        for k in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"):
            if kwargs.get(k) is not None:
                raise TypeError(f"{self._kind}.generate: {k} needs ModelForVisualCausalLM")
            kwargs.pop(k, None)
        return []

    def _images_of(self, row, images):
        return []

    def _generate_rows(self, rows, config, images, sink):
        pipe = self._pipe
        queue = list(images)
        new = []
        with pipe._lock:
            for row in rows:
                if not row:
                    raise ValueError(f"{self._kind}.generate: a row of input_ids is all padding")
                row_images = self._images_of(row, queue)
                if sink is not None:
                    sink.put([row])
                new.append(self._generate_row(row, config, row_images, sink))
            if queue:
                raise ValueError(f"{self._kind}.generate: {len(queue)} image(s) of pixel_values have no placeholder "
                                 "run in input_ids")
        if sink is not None:
            if sink.failure is not None:
                raise sink.failure
            sink.streamer.end()
        return new

    def _generate_row(self, ids, config, images, sink):
        pipe = self._pipe
        gp, _, _stop_arr = pipe._params_for(ids, config)  # gp points into _stop_arr: keep it
        if gp.max_tokens == 0:
            return []
        callback = _lib.TokenCallback(lambda lp, user: sink.put([lp.contents.id])) if sink is not None \
            else _lib.TokenCallback()
        gp.on_token = callback
        gp.logprobs = False
        handles = (ctypes.c_void_p * max(len(images), 1))(*images)
        if images:
            gp.images = ctypes.cast(handles, ctypes.c_void_p)
            gp.n_images = len(images)
        check(lib.tandem_ctx_truncate(pipe._ctx, 0))
        if pipe._draft_ctx:
            check(lib.tandem_ctx_truncate(pipe._draft_ctx, 0))
        arr = (ctypes.c_int32 * len(ids))(*ids)
        res = _lib.GenResult()
        check(lib.tandem_generate(pipe._ctx, arr, len(ids), ctypes.byref(gp), ctypes.byref(res)))
        try:
            return res.ids[:res.n_ids]
        finally:
            lib.tandem_gen_result_free(ctypes.byref(res))

    def get_tokenizer(self):
        """tandem's Tokenizer of the model (not a transformers one)."""
        return self._pipe.get_tokenizer()


class ModelForVisualCausalLM(ModelForCausalLM):
    """ModelForVisualCausalLM.from_pretrained(path) (a Qwen3-VL folder, or a qwen3vl GGUF with mmproj_path=) as
    optimum-intel's OVModelForVisualCausalLM: generate(**processor(text=..., images=..., return_tensors="pt"),
    max_new_tokens=...) takes input_ids, attention_mask, pixel_values and image_grid_thw as the processor made them
    (patches and grid go to tandem_image_from_patches as they are: no second preprocessing) and returns prompt + new
    ids. The images are taken in order: each run of <|image_pad|> in a row is the next image of image_grid_thw."""

    _pipeline_class = VLMPipeline
    _kind = "ModelForVisualCausalLM"

    def _take_images(self, kwargs):
        import numpy as np
        for k in ("pixel_values_videos", "video_grid_thw"):
            if kwargs.pop(k, None) is not None:
                raise NotImplementedError(f"{self._kind}.generate: {k}: videos are not supported (images only)")
        pixels, grids = kwargs.pop("pixel_values", None), kwargs.pop("image_grid_thw", None)
        if pixels is None and grids is None:
            return []
        if pixels is None or grids is None:
            raise ValueError(f"{self._kind}.generate: pixel_values and image_grid_thw go together")
        pv = np.ascontiguousarray(_to_numpy(pixels, "pixel_values", np.float32))
        grid = _to_numpy(grids, "image_grid_thw", np.int64)
        if grid.ndim != 2 or grid.shape[1] != 3 or pv.ndim != 2:
            raise ValueError(f"{self._kind}.generate: image_grid_thw must be [images, 3] and pixel_values "
                             f"[patches, patch_dim], not {tuple(grid.shape)} and {tuple(pv.shape)}")
        counts = [int(t) * int(h) * int(w) for t, h, w in grid]
        if any(c <= 0 for c in counts) or sum(counts) != pv.shape[0]:
            raise ValueError(f"{self._kind}.generate: pixel_values has {pv.shape[0]} patches, image_grid_thw "
                             f"describes {sum(counts)}")
        images, start = [], 0
        try:
            for (t, h, w), n in zip(grid.tolist(), counts):
                part = pv[start:start + n]
                start += n
                img = ctypes.c_void_p()
                check(lib.tandem_image_from_patches(self._pipe._model,
                                                    part.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), n,
                                                    pv.shape[1], t, h, w, ctypes.byref(img)))
                images.append(img.value)
        except BaseException:
            for img in images:
                lib.tandem_image_free(img)
            raise
        return images

    def _images_of(self, row, queue):
        """The images of a row's placeholder runs, taken from the front of queue; each run must be as long as its
        image's tokens."""
        pad = lib.tandem_model_image_token(self._pipe._model)
        taken = []
        for i, end in _pad_runs(row, pad):
            if not queue:
                raise ValueError(f"{self._kind}.generate: input_ids hold more <|image_pad|> runs than "
                                 "image_grid_thw has images")
            img = queue.pop(0)
            if lib.tandem_image_tokens(img) != end - i:
                raise ValueError(f"{self._kind}.generate: an <|image_pad|> run of {end - i} ids for an image of "
                                 f"{lib.tandem_image_tokens(img)} tokens (image_grid_thw / merge size²)")
            taken.append(img)
        return taken


__all__ = ["ModelForCausalLM", "ModelForVisualCausalLM", "TandemError"]
