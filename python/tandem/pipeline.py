# LLMPipeline, draft_model and Tokenizer: OpenVINO GenAI's text-generation classes over tandem_model/ctx/generate.
# The streamer convention is inverted in one place, _on_text: Python's True/STOP means stop, C's false means stop.
import ctypes
import json
import math
import os
import threading
import time

from . import _lib
from ._lib import TandemError, check, lib
from .generation import (DecodedResults, EncodedResults, GenerationConfig, PerfMetrics, SDPerModelsPerfMetrics,
                         StreamerBase, StreamingStatus)


def _check_device(device):
    if device != "CPU":
        raise ValueError(f"device {device!r} is not supported: tandem runs on the CPU only (device='CPU')")


def _load_model(path, n_threads, mmproj_path=None):
    mp = lib.tandem_model_default_params()
    mp.n_threads = n_threads
    mp.mmproj_path = os.fsencode(os.fspath(mmproj_path)) if mmproj_path is not None else None
    model = ctypes.c_void_p()
    check(lib.tandem_model_load(os.fsencode(os.fspath(path)), ctypes.byref(mp), ctypes.byref(model)))
    return model


class draft_model:
    """A draft model for speculative decoding, passed to LLMPipeline(..., draft_model=draft_model(path))."""

    def __init__(self, models_path, device="CPU", **kwargs):
        _check_device(device)
        if kwargs:
            raise ValueError(f"draft_model: unsupported properties {sorted(kwargs)}")
        self.models_path = os.fspath(models_path)


class TokenizedInputs:
    """Token ids of one or more prompts, as OpenVINO GenAI's: input_ids and attention_mask, one row per prompt (lists
    here; a numpy array or an ov.Tensor too when passed to generate). Positions whose mask is 0 (padding, on either
    side) are dropped before generation."""

    def __init__(self, input_ids, attention_mask=None):
        self.input_ids = input_ids
        self.attention_mask = attention_mask if attention_mask is not None else [[1] * len(ids) for ids in input_ids]


class _TokenIds(list):
    """One prompt given as token ids (generate() then returns EncodedResults)."""


def _rows(x, what):
    """A list of lists of ints from a 1-D or 2-D array-like: an ov.Tensor (.data), numpy/torch (.tolist()), lists."""
    if hasattr(x, "data") and not isinstance(x, (list, tuple, memoryview)) and not hasattr(x, "tolist"):
        x = x.data  # ov.Tensor: a numpy view of its memory
    if hasattr(x, "tolist"):
        x = x.tolist()
    if not isinstance(x, (list, tuple)):
        raise TypeError(f"LLMPipeline.generate: {what} must be a 1-D or 2-D array of token ids")
    if all(isinstance(v, int) for v in x):
        x = [x]
    if not all(isinstance(r, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in r)
               for r in x):
        raise TypeError(f"LLMPipeline.generate: {what} must be a 1-D or 2-D array of integer token ids")
    return [list(r) for r in x]


def _token_prompts(inputs):
    """The prompts of token-id input as _TokenIds, or None when inputs is text."""
    if isinstance(inputs, TokenizedInputs):
        ids = _rows(inputs.input_ids, "TokenizedInputs.input_ids")
        mask = _rows(inputs.attention_mask, "TokenizedInputs.attention_mask")
        if [len(r) for r in mask] != [len(r) for r in ids]:
            raise ValueError("LLMPipeline.generate: TokenizedInputs.attention_mask differs in shape from input_ids")
        return [_TokenIds(t for t, m in zip(r, mr) if m) for r, mr in zip(ids, mask)]
    if isinstance(inputs, (str, ChatHistory)) or (isinstance(inputs, list) and all(isinstance(p, str) for p in inputs)):
        return None
    if hasattr(inputs, "data") or hasattr(inputs, "tolist"):
        return [_TokenIds(r) for r in _rows(inputs, "inputs")]
    return None


class Tokenizer:
    """A tokenizer: Tokenizer(tokenizer_path) loads one as OpenVINO GenAI's does (a folder holding tokenizer.json,
    the tokenizer.json file, or a GGUF); a pipeline's get_tokenizer() gives its model's (borrowed from the model,
    which it keeps alive)."""

    def __init__(self, tokenizer_path, properties=None, **kwargs):
        self._owned = self._owner = None
        props = dict(properties or {}, **kwargs)
        if props:
            raise ValueError(f"Tokenizer: unsupported properties {sorted(props)}")
        handle = ctypes.c_void_p()
        check(lib.tandem_tokenizer_load(os.fsencode(os.fspath(tokenizer_path)), ctypes.byref(handle)))
        self._owned = self._tok = handle
        self._template_override = None  # set_chat_template's, used instead of the model's (all of them)

    @classmethod
    def _borrowed(cls, owner, tok):
        """The tokenizer of owner's model (owner is kept alive with it)."""
        self = cls.__new__(cls)
        self._owned, self._owner, self._tok, self._template_override = None, owner, tok, None
        return self

    def __del__(self):
        if getattr(self, "_owned", None):
            lib.tandem_tokenizer_free(self._owned)
            self._owned = None

    def _encode_one(self, text):
        data = text.encode("utf-8")
        ids = ctypes.POINTER(ctypes.c_int32)()
        n = ctypes.c_size_t()
        check(lib.tandem_tokenizer_encode(self._tok, data, len(data), True, ctypes.byref(ids), ctypes.byref(n)))
        try:
            return ids[:n.value]
        finally:
            lib.tandem_free(ids)

    def encode(self, prompts, add_special_tokens=True, pad_to_max_length=False, max_length=None,
               padding_side=None):
        """TokenizedInputs for a str or a list of str; added tokens such as <|im_start|> are matched in the text (as
        Hugging Face's tokenizers do whatever add_special_tokens says). add_special_tokens: whether the tokenizer's
        post-processor adds its tokens (a BOS); Qwen's add none, so both values give the same ids, as with
        transformers. Padding (pad_to_max_length, max_length, padding_side) is not supported: each row keeps its
        length."""
        if not isinstance(add_special_tokens, bool):
            raise TypeError("Tokenizer.encode: add_special_tokens must be a bool")
        if pad_to_max_length or max_length is not None or padding_side not in (None, "right", "left"):
            raise NotImplementedError("Tokenizer.encode: padding and truncation are not supported (rows keep their "
                                      "lengths)")
        if isinstance(prompts, str):
            prompts = [prompts]
        return TokenizedInputs([self._encode_one(p) for p in prompts])

    def is_special(self, token_id):
        """Whether token_id is a special token (tokenizer.json "special": true, a GGUF CONTROL token): what
        decode(skip_special_tokens=True) leaves out. A tandem extension."""
        return bool(lib.tandem_tokenizer_is_special(self._tok, int(token_id)))

    def decode(self, tokens, skip_special_tokens=True):
        """Text of a list of ids (a 1-D array too), or of a list per sequence (a 2-D array), giving a list of str.
        skip_special_tokens (OpenVINO GenAI's default True) leaves out the special tokens (<|im_end|>,
        <|endoftext|>, ...; not <think>), as Hugging Face's decode does."""
        if hasattr(tokens, "data") and not hasattr(tokens, "tolist") and not isinstance(tokens, (list, tuple)):
            tokens = tokens.data  # ov.Tensor
        if hasattr(tokens, "tolist"):
            tokens = tokens.tolist()
        if tokens and isinstance(tokens[0], (list, tuple)):
            return [self.decode(t, skip_special_tokens) for t in tokens]
        tokens = [int(t) for t in tokens]
        if skip_special_tokens:
            tokens = [t for t in tokens if not lib.tandem_tokenizer_is_special(self._tok, t)]
        arr = (ctypes.c_int32 * len(tokens))(*tokens)
        text = ctypes.POINTER(ctypes.c_char)()
        n = ctypes.c_size_t()
        check(lib.tandem_tokenizer_decode(self._tok, arr, len(tokens), ctypes.byref(text), ctypes.byref(n)))
        return _lib.take_bytes(text, n.value).decode("utf-8", "replace")

    @property
    def chat_template(self):
        if self._template_override is not None:
            return self._template_override
        t = lib.tandem_tokenizer_chat_template(self._tok)
        return t.decode("utf-8") if t else ""

    def set_chat_template(self, chat_template):
        """Uses chat_template (Jinja text) instead of the model's templates from now on, as OpenVINO GenAI's
        Tokenizer.set_chat_template and tandem's --chat-template-file do."""
        self._template_override = str(chat_template)

    def get_eos_token_ids(self):
        n = ctypes.c_size_t()
        p = lib.tandem_tokenizer_eos_ids(self._tok, ctypes.byref(n))
        return [p[i] for i in range(n.value)]

    def get_eos_token_id(self):
        ids = self.get_eos_token_ids()
        return ids[0] if ids else -1

    def apply_chat_template(self, history, add_generation_prompt, chat_template="", tools=None, extra_context=None):
        """Renders history (a list of {"role", "content", ...} dicts) with the model's chat template (its "tool_use"
        one when tools are given and it has one, as transformers picks), or chat_template when given (the text of a
        template, or the name of one of the model's, as in transformers), through
        tandem's own Jinja interpreter (tandem_chat_render); the tokenizer's special tokens (bos_token, eos_token,
        pad_token, ...) are variables, extra_context over them."""
        model_source = lib.tandem_tokenizer_chat_template_for(self._tok, tools is not None)
        # as transformers: chat_template may name one of the model's templates ("tool_use", "default")
        named = lib.tandem_tokenizer_chat_template_named(self._tok, chat_template.encode("utf-8")) \
            if chat_template and self._template_override is None else None
        if named is not None:
            chat_template = named.decode("utf-8")
        if self._template_override is not None:
            model_source = self._template_override.encode("utf-8")
        source = chat_template or (model_source.decode("utf-8") if model_source else None)
        if not source:
            raise TandemError("Tokenizer.apply_chat_template: the model has no chat template; pass chat_template")
        src = source.encode("utf-8")
        t = ctypes.c_void_p()
        origin = b"chat_template argument" if chat_template else b"the model's chat template"
        check(lib.tandem_chat_template_parse(src, len(src), origin, ctypes.byref(t)))
        try:
            p = lib.tandem_chat_render_default_params()
            p.add_generation_prompt = bool(add_generation_prompt)
            p.special_tokens_json = lib.tandem_tokenizer_special_tokens_json(self._tok)
            p.tools_json = json.dumps(list(tools)).encode() if tools is not None else None
            p.extra_context_json = json.dumps(dict(extra_context)).encode() if extra_context is not None else None
            msgs = json.dumps(list(history), ensure_ascii=False).encode("utf-8")
            out = ctypes.POINTER(ctypes.c_char)()
            n = ctypes.c_size_t()
            check(lib.tandem_chat_render(t, msgs, len(msgs), ctypes.byref(p), ctypes.byref(out), ctypes.byref(n)))
            return _lib.take_bytes(out, n.value).decode("utf-8")
        finally:
            lib.tandem_chat_template_free(t)


class ChatHistory(list):
    """Messages ({"role": ..., "content": ..., other keys the template reads}) as OpenVINO GenAI's ChatHistory; passed
    to generate(), it is rendered with the chat template (add_generation_prompt=True)."""

    def get_messages(self):
        return list(self)

    def set_messages(self, messages):
        self[:] = list(messages)


_PIPELINE_PROPERTIES = {"INFERENCE_NUM_THREADS", "n_ctx", "draft_model", "prompt_lookup"}


class _ModelPipeline:
    """What LLMPipeline and ContinuousBatchingPipeline share: the model (and draft model), its tokenizer, the default
    GenerationConfig, and the mapping of a prompt and a GenerationConfig onto tandem_gen_params and back."""

    def _open(self, who, models_path, device, props, supported=_PIPELINE_PROPERTIES):
        _check_device(device)
        unknown = set(props) - supported
        if unknown:
            raise ValueError(f"{who}: unsupported properties {sorted(unknown)} (supported: {sorted(supported)})")
        self._model = self._ctx = self._draft = self._draft_ctx = self._engine = None
        self._chat = None
        self._grammars = {}  # schema text -> compiled tandem_grammar, freed with the pipeline
        self._lock = threading.Lock()
        self._t0 = time.perf_counter()
        self._n_threads = int(props.get("INFERENCE_NUM_THREADS", 0))
        self._n_ctx = int(props.get("n_ctx", 0))
        self._model = _load_model(models_path, self._n_threads, props.get("mmproj_path"))
        dm = props.get("draft_model")
        if dm is not None:
            if not isinstance(dm, draft_model):
                raise TypeError(f"{who}: draft_model= takes tandem.draft_model(path)")
            self._draft = _load_model(dm.models_path, self._n_threads)
            check(lib.tandem_model_check_draft(self._model, self._draft))
        self._prompt_lookup = bool(props.get("prompt_lookup", False))
        self._tokenizer = Tokenizer._borrowed(self, lib.tandem_model_tokenizer(self._model))
        has_gen_config = os.path.isfile(os.path.join(os.fspath(models_path), "generation_config.json"))
        self._config = self._default_config(has_gen_config)

    def _loaded(self):
        self._load_ms = (time.perf_counter() - self._t0) * 1000.0

    def __del__(self):
        for free, name in ((lib.tandem_engine_free, "_engine"), (lib.tandem_ctx_free, "_draft_ctx"),
                           (lib.tandem_ctx_free, "_ctx")):
            h = getattr(self, name, None)
            if h:
                free(h)
                setattr(self, name, None)
        for g in getattr(self, "_grammars", {}).values():  # after the engine: its requests borrow them
            lib.tandem_grammar_free(g)
        self._grammars = {}
        for name in ("_draft", "_model"):
            h = getattr(self, name, None)
            if h:
                lib.tandem_model_free(h)
                setattr(self, name, None)

    def _default_config(self, has_gen_config):
        """The model's generation_config.json as tandem read it (sampling), and its end ids. Without that file (a
        GGUF) OpenVINO GenAI's defaults (greedy), not the sampling defaults of the tandem CLI."""
        s = lib.tandem_gen_default_params(self._model).sampling
        c = GenerationConfig()
        eos = self._tokenizer.get_eos_token_ids()
        c.eos_token_id = eos[0] if eos else -1
        c.stop_token_ids = set(eos)
        if not has_gen_config:
            return c
        c.do_sample = s.temperature > 0
        if s.temperature > 0:
            c.temperature = s.temperature
        c.top_k, c.top_p, c.min_p = s.top_k, s.top_p, s.min_p
        c.repetition_penalty = s.repeat_penalty
        return c

    def get_tokenizer(self):
        return self._tokenizer

    def get_generation_config(self):
        return self._config.copy()

    def set_generation_config(self, config):
        if isinstance(config, dict):
            config = GenerationConfig(**config)
        config.validate()
        self._config = config.copy()

    def _config_of(self, generation_config, kwargs):
        """The GenerationConfig of one call: generation_config (a GenerationConfig, or a dict over the pipeline's),
        else the pipeline's, then kwargs over it; validated."""
        if isinstance(generation_config, dict):
            config = self._config.copy()
            config.update_generation_config(**generation_config)
        else:
            config = (generation_config or self._config).copy()
        config.update_generation_config(**kwargs)
        config.validate()
        return config

    def _gen_params(self, config):
        gp = lib.tandem_gen_default_params(self._model)
        eos = set(self._tokenizer.get_eos_token_ids())
        extra = set(config.stop_token_ids) - eos
        if config.eos_token_id not in (-1, None) and config.eos_token_id not in eos:
            extra.add(config.eos_token_id)
        if extra:
            raise NotImplementedError(f"GenerationConfig: stop_token_ids/eos_token_id {sorted(extra)} are not the "
                                      f"model's end ids {sorted(eos)}; tandem stops only on those")
        s = gp.sampling
        s.temperature = config.temperature if config.do_sample else 0.0
        s.top_k, s.top_p, s.min_p = config.top_k, config.top_p, config.min_p
        s.repeat_penalty = config.repetition_penalty
        s.repeat_last_n = -1  # OpenVINO GenAI (like transformers) penalises every token seen
        s.presence_penalty, s.frequency_penalty = config.presence_penalty, config.frequency_penalty
        s.seed = config.rng_seed
        gp.ignore_eos = config.ignore_eos
        gp.min_new_tokens = config.min_new_tokens
        gp.logprobs = True  # scores: a pass over the vocabulary per token, small beside the model's
        gp.top_logprobs = config.logprobs
        gp.spec = lib.tandem_spec_default_params()
        if self._draft_ctx:
            gp.draft = self._draft_ctx
        if config.num_assistant_tokens > 0:
            gp.spec.draft_max = config.num_assistant_tokens
            gp.spec.adaptive = False  # OpenVINO GenAI: a fixed number of assistant tokens per pass
        if config.assistant_confidence_threshold > 0:
            gp.spec.draft_p_min = config.assistant_confidence_threshold
        if config.structured_output_config is not None:
            gp.grammar = self._grammar(config.structured_output_config.schema_text())
        if self._prompt_lookup:
            if config.max_ngram_size <= 0:
                raise ValueError("LLMPipeline(prompt_lookup=True) needs GenerationConfig.max_ngram_size > 0")
            gp.spec.lookup_ngram = config.max_ngram_size
        return gp

    def _grammar(self, schema):
        """The compiled grammar of a JSON schema (kept: engine requests borrow it until they end)."""
        g = self._grammars.get(schema)
        if g is None:
            g = ctypes.c_void_p()
            check(lib.tandem_grammar_from_json_schema(self._tokenizer._tok, schema.encode("utf-8"), ctypes.byref(g)))
            self._grammars[schema] = g
        return g

    def _prepare(self, prompt, config):
        """(prompt ids, gen params, stop strings, the array the params point to: keep it alive while they are used)"""
        tok = self._tokenizer
        if isinstance(prompt, _TokenIds):
            ids = list(prompt)
            n_vocab = lib.tandem_tokenizer_vocab_size(tok._tok)
            bad = [t for t in ids if not 0 <= t < n_vocab]
            if bad:
                raise ValueError(f"LLMPipeline.generate: token id {bad[0]} is outside the vocabulary [0, {n_vocab})")
        else:
            if isinstance(prompt, ChatHistory):
                prompt = tok.apply_chat_template(prompt, add_generation_prompt=True)
            elif config.apply_chat_template and tok.chat_template:
                prompt = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
            ids = tok._encode_one(prompt)
        if not ids:
            raise ValueError("LLMPipeline.generate: the prompt is empty")
        return (ids, *self._params_for(ids, config))

    def _params_for(self, ids, config):
        """(gen params, stop strings, the array the params point to) of a prompt of ids under config."""
        gp = self._gen_params(config)
        if config.max_new_tokens is not None:
            gp.max_tokens = config.max_new_tokens
        elif config.max_length is not None:
            gp.max_tokens = max(config.max_length - len(ids), 0)
        stops = sorted(config.stop_strings)
        stop_arr = (ctypes.c_char_p * max(len(stops), 1))(*[s.encode("utf-8") for s in stops])
        gp.stop = stop_arr
        gp.n_stop = len(stops)
        return gp, stops, stop_arr

    def _generate_after(self, ids, common, gp, sink, config, stops, t0):
        """tandem_generate on ids[common:] (the context holds ids[:common]) into a DecodedResults."""
        rest = ids[common:]
        arr = (ctypes.c_int32 * len(rest))(*rest)
        res = _lib.GenResult()
        check(lib.tandem_generate(self._ctx, arr, len(rest), ctypes.byref(gp), ctypes.byref(res)))
        if sink.failure:
            lib.tandem_gen_result_free(ctypes.byref(res))
            raise sink.failure
        return self._finish(res, config, stops, len(ids), t0, sink.write, n_reused=common)

    def _finish(self, res, config, stops, n_prompt, t0, write=None, n_reused=None):
        """DecodedResults of one tandem_gen_result (freed here)."""
        try:
            out_ids = res.ids[:res.n_ids]
            text = ctypes.string_at(res.text, res.text_len).decode("utf-8", "replace")
            finish = _lib.FINISH_NAMES.get(res.finish, "none")
            timings = _lib.Timings.from_buffer_copy(res.timings)  # the result's memory is freed below
            spec = _lib.SpecStats.from_buffer_copy(res.spec_stats) if res.speculative else None
            records = res.logprobs[:res.n_ids] if res.logprobs else []
            token_logprobs = [float(lp.logprob) for lp in records]
            top = [[(lp.top_ids[j], float(lp.top_logprobs[j])) for j in range(lp.n_top)] for lp in records] \
                if config.logprobs > 0 else []
        finally:
            lib.tandem_gen_result_free(ctypes.byref(res))
        if finish == "stop" and config.include_stop_str_in_output:
            full = self._tokenizer.decode(out_ids, skip_special_tokens=False)
            rest = full[len(text):] if full.startswith(text) else ""
            hit = next((s for s in stops if rest.startswith(s)), None)
            if hit is None:
                raise NotImplementedError("include_stop_str_in_output: the stop string could not be located")
            text += hit
            if write:
                write(hit)
        generate_ms = (time.perf_counter() - t0) * 1000.0
        pm = PerfMetrics(timings, self._load_ms, generate_ms, n_prompt, timings.n_generated)
        if n_reused is not None:  # tandem_generate read only the part after what the context held
            pm._n_reused = n_reused
        sd = SDPerModelsPerfMetrics(spec, timings.n_generated, timings) if spec is not None else None
        return DecodedResults([text], [math.fsum(token_logprobs)], pm, [finish], [out_ids], sd, [token_logprobs],
                              [top])


class LLMPipeline(_ModelPipeline):
    """LLMPipeline(models_path, device="CPU", config=None, **kwargs): models_path is a Hugging Face checkpoint folder
    or a GGUF file. kwargs/config: draft_model=draft_model(path), prompt_lookup=True, INFERENCE_NUM_THREADS (0 = all
    CPUs), n_ctx (0 = min(model context, 4096)). One generate() at a time per pipeline (a lock serialises calls)."""

    def __init__(self, models_path, device="CPU", config=None, **kwargs):
        props = dict(config or {})
        props.update(kwargs)
        self._open("LLMPipeline", models_path, device, props)
        cp = lib.tandem_ctx_default_params()
        cp.n_ctx = self._n_ctx
        ctx = ctypes.c_void_p()
        check(lib.tandem_ctx_init(self._model, ctypes.byref(cp), ctypes.byref(ctx)))
        self._ctx = ctx
        if self._draft:
            cp.n_ctx = lib.tandem_ctx_n_ctx(self._ctx)
            dctx = ctypes.c_void_p()
            check(lib.tandem_ctx_init(self._draft, ctypes.byref(cp), ctypes.byref(dctx)))
            self._draft_ctx = dctx
        self._loaded()

    def __call__(self, inputs, generation_config=None, streamer=None, **kwargs):
        return self.generate(inputs, generation_config, streamer, **kwargs)

    def generate(self, inputs, generation_config=None, streamer=None, **kwargs):
        """inputs: a str, or a list of str (decoded together by a tandem engine, with the draft model or prompt lookup
        as one prompt alone would be). A str is rendered
        with the chat template as a user message when the model has one and apply_chat_template is True, as
        OpenVINO GenAI does by default. streamer: a callable (str) -> StreamingStatus | bool | None or a
        StreamerBase; True or STOP (or CANCEL) ends the generation."""
        config = self._config_of(generation_config, kwargs)
        tokens = _token_prompts(inputs)
        if tokens is not None:  # token ids in, token ids out (EncodedResults); no chat template, no chat history
            r = self._generate_prompts(tokens, config, streamer)
            return EncodedResults.of(r)
        prompts = [inputs] if isinstance(inputs, (str, ChatHistory)) else list(inputs)
        if not all(isinstance(p, str) for p in prompts) and not isinstance(inputs, ChatHistory):
            raise TypeError("LLMPipeline.generate: inputs must be a str, a list of str, a ChatHistory, "
                            "TokenizedInputs or a tensor of token ids")
        chat = self._chat is not None and isinstance(inputs, str)
        if chat:  # start_chat(): the conversation so far plus this user message
            prompts = [ChatHistory(self._chat + [{"role": "user", "content": inputs}])]
        result = self._generate_prompts(prompts, config, streamer)
        if chat and not result._cancelled:  # CANCEL drops this turn from the history, as in OpenVINO GenAI
            self._chat = list(prompts[0]) + [{"role": "assistant", "content": result.texts[0]}]
        return result

    def _generate_prompts(self, prompts, config, streamer):
        if len(prompts) > 1 and streamer is not None:
            raise ValueError("LLMPipeline.generate: a streamer needs a single prompt (as in OpenVINO GenAI)")
        if not prompts:
            raise ValueError("LLMPipeline.generate: no prompt given")
        with self._lock:
            if len(prompts) > 1:
                return self._generate_batch(prompts, config)
            return self._generate_one(prompts[0], config, streamer)

    def start_chat(self, system_message=""):
        """Chat mode: each generate(str) is a user turn rendered with the whole conversation, and the KV cache is
        kept between turns: only the tokens after the longest common prefix with what the context holds (the last
        turn's prompt and answer) are evaluated (perf_metrics.get_num_reused_input_tokens()). finish_chat() ends it."""
        self._chat = [{"role": "system", "content": system_message}] if system_message else []
        self._held = []

    def finish_chat(self):
        self._chat = None
        self._held = []

    def _generate_batch(self, prompts, config):
        """Several prompts decoded together by a tandem engine (each gets what tandem_generate gives it alone)."""
        t0 = time.perf_counter()
        if self._engine is None:
            ep = lib.tandem_engine_default_params()
            ep.n_ctx = lib.tandem_ctx_n_ctx(self._ctx)
            ep.draft_model = self._draft  # None without one; the engine keeps a draft cache per slot
            engine = ctypes.c_void_p()
            check(lib.tandem_engine_create(self._model, ctypes.byref(ep), ctypes.byref(engine)))
            self._engine = engine
        prepared = [self._prepare(p, config) for p in prompts]
        req = []
        try:
            for ids, gp, _, _ in prepared:
                if gp.max_tokens == 0:
                    req.append(None)
                    continue
                gp.draft = None  # the engine drafts with its draft_model
                arr = (ctypes.c_int32 * len(ids))(*ids)
                rid = ctypes.c_int64()
                check(lib.tandem_engine_add(self._engine, arr, len(ids), ctypes.byref(gp), ctypes.byref(rid)))
                req.append(rid.value)
            idle = ctypes.c_bool(False)
            while not idle.value:
                check(lib.tandem_engine_step(self._engine, ctypes.byref(idle)))
            result = None
            for rid, (ids, gp, stops, _) in zip(req, prepared):
                if rid is None:
                    r = DecodedResults([""], [0.0], PerfMetrics(None, self._load_ms, 0.0, len(ids), 0),
                                       ["length"], [[]])
                else:
                    res = _lib.GenResult()
                    check(lib.tandem_engine_result(self._engine, rid, ctypes.byref(res)))
                    r = self._finish(res, config, stops, len(ids), t0)
                result = DecodedResults.join(result, r)
            return result
        except BaseException:
            lib.tandem_engine_free(self._engine)  # drops every request still held
            self._engine = None
            raise

    def _generate_one(self, prompt, config, streamer):
        t0 = time.perf_counter()
        ids, gp, stops, stop_arr = self._prepare(prompt, config)
        if gp.max_tokens == 0:
            return DecodedResults([""], [0.0], PerfMetrics(None, self._load_ms, 0.0, len(ids), 0), ["length"],
                                  [[]])
        sink = _TextSink(streamer)
        gp.on_text = sink.callback
        # chat mode keeps the KV cache between turns: the longest common prefix of what the context holds and this
        # prompt stays, and at least the last prompt token is evaluated again for its logits. The draft context
        # catches up by itself (tandem_generate compares what it holds with the sequence).
        common = 0
        if self._chat is not None:
            held = self._held[:lib.tandem_ctx_n_past(self._ctx)]
            while common < len(held) and common < len(ids) and held[common] == ids[common]:
                common += 1
            common = min(common, len(ids) - 1)
        elif self._draft_ctx:
            check(lib.tandem_ctx_truncate(self._draft_ctx, 0))
        check(lib.tandem_ctx_truncate(self._ctx, common))
        self._held = []
        r = self._generate_after(ids, common, gp, sink, config, stops, t0)
        if self._chat is not None:
            self._held = ids + r.token_ids[0]
        r._cancelled = sink.cancelled
        sink.end()
        return r


class _TextSink:
    """A streamer (a callable or a StreamerBase) as tandem's text callback: the one place Python's streamer
    convention meets tandem's. True/STOP/CANCEL -> the callback returns false (stop); an exception in the streamer
    stops the generation and is kept (.failure) to be raised once the C call has returned."""

    def __init__(self, streamer):
        self.streamer = streamer
        self.write = streamer.write if isinstance(streamer, StreamerBase) else streamer
        self.failure = None
        self.cancelled = False
        self.callback = _lib.TextCallback(self._on_text) if self.write else _lib.TextCallback()

    def _on_text(self, ptr, n, user):
        try:
            status = self.write(ctypes.string_at(ptr, n).decode("utf-8"))
            if status is StreamingStatus.CANCEL:
                self.cancelled = True
            return not (status is True or status in (StreamingStatus.STOP, StreamingStatus.CANCEL))
        except BaseException as e:
            self.failure = self.failure or e
            return False

    def end(self):
        if isinstance(self.streamer, StreamerBase):
            self.streamer.end()
