# The ctypes binding of libtandem: finds the shared library, mirrors the tandem.h structs this package uses, and turns
# failing statuses into TandemError. Only tandem.h's functions are called; the struct layouts must track that header.
import ctypes
import os
from ctypes import POINTER, c_bool, c_char_p, c_double, c_float, c_int, c_int32, c_int64, c_size_t, c_uint64, c_void_p
from pathlib import Path


class TandemError(RuntimeError):
    """A tandem C API call failed; str() is tandem_last_error()'s message, .status the tandem_status value."""

    def __init__(self, message, status=0):
        super().__init__(message)
        self.status = status


def _find_library():
    env = os.environ.get("TANDEM_LIBRARY")
    if env:
        return env
    here = Path(__file__).resolve().parent
    for name in ("libtandem.so", "libtandem.dylib"):
        if (here / name).is_file():
            return str(here / name)
    raise ImportError(f"libtandem not found next to {here} (install the package with pip, or set TANDEM_LIBRARY "
                      "to a built libtandem.so)")


class SamplerParams(ctypes.Structure):
    _fields_ = [("temperature", c_float), ("top_k", c_int32), ("top_p", c_float), ("min_p", c_float),
                ("repeat_penalty", c_float), ("repeat_last_n", c_int32), ("presence_penalty", c_float),
                ("frequency_penalty", c_float), ("seed", c_uint64)]


class SpecParams(ctypes.Structure):
    _fields_ = [("draft_max", c_int32), ("draft_min", c_int32), ("draft_p_min", c_float), ("adaptive", c_bool),
                ("lookup_ngram", c_int32)]


class SpecStats(ctypes.Structure):
    _fields_ = [("n_rounds", c_int32), ("n_drafted", c_int32), ("n_accepted", c_int32),
                ("n_drafted_lookup", c_int32), ("n_accepted_lookup", c_int32), ("draft_ms", c_double),
                ("target_ms", c_double), ("acceptance_rate", c_double), ("mean_per_pass", c_double),
                ("mean_draft_len", c_double), ("draft_target_ratio", c_double), ("predicted_speedup", c_double),
                ("n_rounds_draft_off", c_int32)]


TextCallback = ctypes.CFUNCTYPE(c_bool, ctypes.POINTER(ctypes.c_char), c_size_t, c_void_p)


MAX_TOP_LOGPROBS = 20  # TANDEM_MAX_TOP_LOGPROBS


class TokenLogprob(ctypes.Structure):
    _fields_ = [("id", c_int32), ("logprob", c_float), ("n_top", c_int32),
                ("top_ids", c_int32 * MAX_TOP_LOGPROBS), ("top_logprobs", c_float * MAX_TOP_LOGPROBS)]


TokenCallback = ctypes.CFUNCTYPE(None, POINTER(TokenLogprob), c_void_p)


class GenParams(ctypes.Structure):
    _fields_ = [("max_tokens", c_int32), ("sampling", SamplerParams), ("stop", POINTER(c_char_p)),
                ("n_stop", c_int32), ("ignore_eos", c_bool), ("on_text", TextCallback), ("user", c_void_p),
                ("draft", c_void_p), ("spec", SpecParams), ("grammar", c_void_p), ("prediction", POINTER(c_int32)),
                ("n_prediction", c_int32), ("images", c_void_p), ("n_images", c_int32),
                ("logprobs", c_bool), ("top_logprobs", c_int32), ("on_token", TokenCallback),
                ("min_new_tokens", c_int32)]


class Timings(ctypes.Structure):
    _fields_ = [("prompt_ms", c_double), ("ttft_ms", c_double), ("decode_ms", c_double), ("n_prompt", c_int32),
                ("n_generated", c_int32), ("n_prompt_reused", c_int32), ("n_image_tokens", c_int32),
                ("n_image_tokens_cached", c_int32), ("image_ms", c_double)]


class GenResult(ctypes.Structure):
    _fields_ = [("ids", POINTER(c_int32)), ("n_ids", c_size_t), ("text", ctypes.POINTER(ctypes.c_char)),
                ("text_len", c_size_t), ("finish", c_int), ("timings", Timings), ("speculative", c_bool),
                ("spec_stats", SpecStats), ("logprobs", POINTER(TokenLogprob))]


class ModelParams(ctypes.Structure):
    _fields_ = [("n_threads", c_int32), ("mmproj_path", c_char_p)]


class ModelInfo(ctypes.Structure):
    _fields_ = [("architecture", c_char_p), ("name", c_char_p), ("source", c_char_p), ("n_layers", c_int32),
                ("dim", c_int32), ("n_heads", c_int32), ("n_kv_heads", c_int32), ("head_dim", c_int32),
                ("ffn_dim", c_int32), ("vocab_size", c_int32), ("context_length", c_int32), ("rope_theta", c_float),
                ("rms_eps", c_float), ("tied_embeddings", c_bool), ("n_params", c_int64), ("weight_bytes", c_int64),
                ("step_bytes", c_int64), ("n_tensors", c_int32)]


class CtxParams(ctypes.Structure):
    _fields_ = [("n_ctx", c_int32), ("n_batch", c_int32), ("exact", c_bool), ("kv_type", c_int)]


class ImageParams(ctypes.Structure):
    _fields_ = [("min_tokens", c_int32), ("max_tokens", c_int32)]


class ChatRenderParams(ctypes.Structure):
    _fields_ = [("add_generation_prompt", c_bool), ("enable_thinking", c_int32), ("tools_json", c_char_p),
                ("extra_context_json", c_char_p), ("bos_token", c_char_p), ("eos_token", c_char_p),
                ("now_unix", c_int64), ("max_output_bytes", c_int64), ("special_tokens_json", c_char_p)]


class EngineParams(ctypes.Structure):
    _fields_ = [("n_slots", c_int32), ("n_ctx", c_int32), ("n_batch", c_int32), ("kv_type", c_int),
                ("kv_budget_bytes", c_int64), ("exact", c_bool), ("draft_model", c_void_p),
                ("image_cache_bytes", c_int64)]


REQUEST_UNKNOWN, REQUEST_QUEUED, REQUEST_RUNNING, REQUEST_DONE = 0, 1, 2, 3  # tandem_request_state
class DownloadProgress(ctypes.Structure):
    _fields_ = [("file", c_char_p), ("n_files_done", c_int32), ("n_files", c_int32), ("bytes_done", c_int64),
                ("bytes_total", c_int64), ("bytes_start", c_int64)]


DownloadCallback = ctypes.CFUNCTYPE(c_bool, POINTER(DownloadProgress), c_void_p)


class DownloadParams(ctypes.Structure):
    _fields_ = [("repo_id", c_char_p), ("revision", c_char_p), ("file", c_char_p), ("include", POINTER(c_char_p)),
                ("n_include", c_int32), ("cache_dir", c_char_p), ("local_dir", c_char_p), ("token", c_char_p),
                ("endpoint", c_char_p), ("n_parallel", c_int32), ("progress", DownloadCallback), ("user", c_void_p)]


FINISH_NAMES = {0: "none", 1: "eos", 2: "stop", 3: "length", 4: "context_full", 5: "aborted"}

lib = ctypes.CDLL(_find_library())  # CDLL: every call releases the GIL; callbacks take it back


def _sig(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)


_sig("tandem_last_error", c_char_p)
_sig("tandem_status_name", c_char_p, c_int)
_sig("tandem_free", None, c_void_p)
_sig("tandem_version", c_char_p)
_sig("tandem_tokenizer_encode", c_int, c_void_p, c_char_p, c_size_t, c_bool, POINTER(POINTER(c_int32)),
     POINTER(c_size_t))
_sig("tandem_tokenizer_decode", c_int, c_void_p, POINTER(c_int32), c_size_t, POINTER(ctypes.POINTER(ctypes.c_char)),
     POINTER(c_size_t))
_sig("tandem_tokenizer_eos_ids", POINTER(c_int32), c_void_p, POINTER(c_size_t))
_sig("tandem_tokenizer_chat_template", c_char_p, c_void_p)
_sig("tandem_tokenizer_chat_template_for", c_char_p, c_void_p, c_bool)
_sig("tandem_tokenizer_chat_template_named", c_char_p, c_void_p, c_char_p)
_sig("tandem_tokenizer_special_token", c_char_p, c_void_p, c_char_p)
_sig("tandem_tokenizer_special_tokens_json", c_char_p, c_void_p)
_sig("tandem_tokenizer_vocab_size", c_int32, c_void_p)
_sig("tandem_tokenizer_is_special", c_bool, c_void_p, c_int32)
_sig("tandem_tokenizer_load", c_int, c_char_p, POINTER(c_void_p))
_sig("tandem_tokenizer_free", None, c_void_p)
_sig("tandem_model_default_params", ModelParams)
_sig("tandem_model_load", c_int, c_char_p, POINTER(ModelParams), POINTER(c_void_p))
_sig("tandem_model_free", None, c_void_p)
_sig("tandem_model_tokenizer", c_void_p, c_void_p)
_sig("tandem_model_check_draft", c_int, c_void_p, c_void_p)
_sig("tandem_model_get_info", None, c_void_p, POINTER(ModelInfo))
_sig("tandem_ctx_default_params", CtxParams)
_sig("tandem_ctx_init", c_int, c_void_p, POINTER(CtxParams), POINTER(c_void_p))
_sig("tandem_ctx_free", None, c_void_p)
_sig("tandem_ctx_n_ctx", c_int32, c_void_p)
_sig("tandem_ctx_truncate", c_int, c_void_p, c_int32)
_sig("tandem_spec_default_params", SpecParams)
_sig("tandem_gen_default_params", GenParams, c_void_p)
_sig("tandem_generate", c_int, c_void_p, POINTER(c_int32), c_size_t, POINTER(GenParams), POINTER(GenResult))
_sig("tandem_gen_result_free", None, POINTER(GenResult))
_sig("tandem_model_has_vision", c_bool, c_void_p)
_sig("tandem_model_image_token", c_int32, c_void_p)
_sig("tandem_image_default_params", ImageParams)
_sig("tandem_image_load", c_int, c_void_p, c_char_p, POINTER(ImageParams), POINTER(c_void_p))
_sig("tandem_image_from_bytes", c_int, c_void_p, c_char_p, c_char_p, c_size_t, POINTER(ImageParams),
     POINTER(c_void_p))
_sig("tandem_image_from_patches", c_int, c_void_p, POINTER(c_float), c_int64, c_int64, c_int32, c_int32, c_int32,
     POINTER(c_void_p))
_sig("tandem_image_free", None, c_void_p)
_sig("tandem_image_tokens", c_int32, c_void_p)
_sig("tandem_vl_prompt", c_int, c_void_p, c_char_p, c_size_t, c_void_p, c_int32, POINTER(POINTER(c_int32)),
     POINTER(c_size_t))
_sig("tandem_ctx_n_past", c_int32, c_void_p)
_sig("tandem_engine_default_params", EngineParams)
_sig("tandem_engine_create", c_int, c_void_p, POINTER(EngineParams), POINTER(c_void_p))
_sig("tandem_engine_free", None, c_void_p)
_sig("tandem_engine_add", c_int, c_void_p, POINTER(c_int32), c_size_t, POINTER(GenParams), POINTER(c_int64))
_sig("tandem_engine_step", c_int, c_void_p, POINTER(c_bool))
_sig("tandem_engine_result", c_int, c_void_p, c_int64, POINTER(GenResult))
_sig("tandem_engine_cancel", c_int, c_void_p, c_int64)
_sig("tandem_engine_request_state", c_int, c_void_p, c_int64)
_sig("tandem_engine_request_ids", c_int, c_void_p, c_int64, POINTER(POINTER(c_int32)), POINTER(c_size_t))
_sig("tandem_grammar_from_json_schema", c_int, c_void_p, c_char_p, POINTER(c_void_p))
_sig("tandem_grammar_free", None, c_void_p)
_sig("tandem_download_default_params", DownloadParams)
_sig("tandem_download", c_int, POINTER(DownloadParams), POINTER(POINTER(ctypes.c_char)))
_sig("tandem_hub_resolve", c_int, c_char_p, POINTER(POINTER(ctypes.c_char)))
_sig("tandem_chat_template_parse", c_int, c_char_p, c_size_t, c_char_p, POINTER(c_void_p))
_sig("tandem_chat_template_free", None, c_void_p)
_sig("tandem_chat_render_default_params", ChatRenderParams)
_sig("tandem_chat_render", c_int, c_void_p, c_char_p, c_size_t, POINTER(ChatRenderParams),
     POINTER(ctypes.POINTER(ctypes.c_char)), POINTER(c_size_t))


def check(status):
    """Raises TandemError with this thread's tandem_last_error() when status is not TANDEM_OK."""
    if status != 0:
        msg = lib.tandem_last_error().decode("utf-8", "replace")
        if not msg:
            msg = lib.tandem_status_name(status).decode()
        raise TandemError(msg, status)


def take_bytes(ptr, n):
    """Copies n bytes from a tandem-allocated buffer and frees it."""
    try:
        return ctypes.string_at(ptr, n)
    finally:
        lib.tandem_free(ptr)
