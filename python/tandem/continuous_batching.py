# ContinuousBatchingPipeline, SchedulerConfig and GenerationHandle as OpenVINO GenAI names them, over tandem_engine:
# requests added at any time, one engine step per step() for all of them, each request's output its own alone.
import ctypes
import enum
import math
import time

from . import _lib
from ._lib import TandemError, check, lib
from .generation import DecodedResults, PerfMetrics
from .pipeline import ChatHistory, _ModelPipeline, _TextSink, _token_prompts

_GIB = 1 << 30


class SchedulerConfig:
    """OpenVINO GenAI's SchedulerConfig on tandem_engine_params:
    max_num_seqs -> n_slots (sequences decoded together; more requests wait in a queue),
    max_num_batched_tokens -> n_batch (tokens of one step: running sequences' next tokens, then prompt chunks; at
    least max_num_seqs, at most 4096), cache_size (GiB) or num_kv_blocks (of block_size = 32 rows each) ->
    kv_budget_bytes (both 0: every slot may take a whole context), enable_prefix_caching: tandem's engine always keeps
    a finished request's cache in its slot for a later prompt that starts the same (so False changes nothing but the
    memory held). dynamic_split_fuse must stay True (tandem always splits prompts into chunks beside decoding);
    cache eviction and sparse attention are not supported (NotImplementedError)."""

    BLOCK_SIZE = 32

    def __init__(self, **kwargs):
        self.max_num_batched_tokens = 256
        self.num_kv_blocks = 0
        self.cache_size = 0
        self.max_num_seqs = 256
        self.enable_prefix_caching = False
        self.dynamic_split_fuse = True
        self.use_cache_eviction = False
        self.use_sparse_attention = False
        for k, v in kwargs.items():
            if not hasattr(self, k):
                raise AttributeError(f"SchedulerConfig has no field '{k}'")
            setattr(self, k, v)

    def to_string(self):
        return repr(self)

    def __repr__(self):
        return "SchedulerConfig(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"

    def _engine_params(self, model, n_ctx, draft):
        def need(cond, msg):
            if not cond:
                raise ValueError(f"SchedulerConfig: {msg}")
        if not self.dynamic_split_fuse:
            raise NotImplementedError("SchedulerConfig.dynamic_split_fuse = False: tandem always reads prompts in "
                                      "chunks beside the running sequences")
        for name in ("use_cache_eviction", "use_sparse_attention"):
            if getattr(self, name):
                raise NotImplementedError(f"SchedulerConfig.{name}: not supported by tandem")
        need(isinstance(self.max_num_seqs, int) and 1 <= self.max_num_seqs <= 4096,
             f"max_num_seqs must be in 1..4096, got {self.max_num_seqs!r}")
        need(isinstance(self.max_num_batched_tokens, int)
             and self.max_num_seqs <= self.max_num_batched_tokens <= 4096,
             f"max_num_batched_tokens must be in max_num_seqs ({self.max_num_seqs})..4096, got "
             f"{self.max_num_batched_tokens!r}")
        need(self.cache_size >= 0 and self.num_kv_blocks >= 0, "cache_size and num_kv_blocks must be >= 0")
        need(not (self.cache_size and self.num_kv_blocks), "set cache_size or num_kv_blocks, not both")
        ep = lib.tandem_engine_default_params()
        ep.n_slots = self.max_num_seqs
        ep.n_batch = self.max_num_batched_tokens
        ep.n_ctx = n_ctx
        ep.draft_model = draft
        if self.cache_size:
            ep.kv_budget_bytes = int(self.cache_size * _GIB)
        elif self.num_kv_blocks:
            row = 0  # bytes of one position's keys and values (f16, the engine's default kv_type), both models
            for m in (model, draft):
                if m:
                    info = _lib.ModelInfo()
                    lib.tandem_model_get_info(m, ctypes.byref(info))
                    row += info.n_layers * info.n_kv_heads * info.head_dim * 2 * 2
            ep.kv_budget_bytes = self.num_kv_blocks * self.BLOCK_SIZE * row
        return ep


class GenerationStatus(enum.IntEnum):
    RUNNING = 0
    FINISHED = 1
    IGNORED = 2  # the request could not run (it failed: see GenerationHandle.error)
    STOP = 3     # GenerationHandle.stop() or a streamer's STOP ended it
    CANCEL = 4   # GenerationHandle.cancel() or a streamer's CANCEL ended it


class GenerationFinishReason(enum.IntEnum):
    NONE = 0
    STOP = 1    # an end token or a stop string
    LENGTH = 2  # max_new_tokens / max_length, or the context is full


_FINISH_REASON = {"eos": GenerationFinishReason.STOP, "stop": GenerationFinishReason.STOP,
                  "length": GenerationFinishReason.LENGTH, "context_full": GenerationFinishReason.LENGTH}


class GenerationOutput:
    """New (read) or all (read_all) generated ids of one sequence; these carry no log-probabilities (score NaN,
    generated_log_probs empty: the finished GenerationResult's m_scores has them). finish_reason is NONE until the
    request has ended."""

    def __init__(self, generated_ids, finish_reason=GenerationFinishReason.NONE):
        self.generated_ids = generated_ids
        self.generated_log_probs = []
        self.score = math.nan
        self.finish_reason = finish_reason

    def __repr__(self):
        return f"GenerationOutput(generated_ids={self.generated_ids!r}, finish_reason={self.finish_reason!r})"


class GenerationResult:
    """A finished request, as OpenVINO GenAI's GenerationResult (text prompts: m_generation_ids holds texts) or
    EncodedGenerationResult (token-id prompts: lists of ids). Also finish_reasons and token_ids (tandem's)."""

    def __init__(self, request_id, decoded, status, encoded):
        self.m_request_id = request_id
        self.m_generation_ids = decoded.token_ids if encoded else decoded.texts
        self.m_scores = decoded.scores
        self.m_status = status
        self.perf_metrics = decoded.perf_metrics
        self.extended_perf_metrics = decoded.extended_perf_metrics
        self.finish_reasons = decoded.finish_reasons
        self.token_ids = decoded.token_ids

    def get_generation_ids(self):
        return self.m_generation_ids

    def __repr__(self):
        return f"GenerationResult(m_request_id={self.m_request_id}, m_generation_ids={self.m_generation_ids!r})"


EncodedGenerationResult = GenerationResult


class GenerationHandle:
    """One request of a ContinuousBatchingPipeline (add_request). Its ids arrive as the pipeline steps: read() gives
    the ids generated since the last read, read_all() runs the pipeline until this request ends and gives all of them.
    stop() and cancel() end it (what it generated so far stays); drop() forgets it."""

    def __init__(self, pipe, request_id, engine_id, prepared, sink, config, encoded, t0):
        self._pipe = pipe
        self.request_id = request_id
        self._rid = engine_id
        self._prepared = prepared  # (ids, gen params, stops, the arrays they point to): alive while the engine runs
        self._sink = sink
        self._config = config
        self._encoded = encoded
        self._t0 = t0
        self._n_read = 0
        self._ended_by = None  # GenerationStatus.STOP or CANCEL when ended by the handle
        self._result = None    # DecodedResults once finished
        self.error = None      # TandemError when the request failed

    def _collect(self):
        """Takes the engine's result once the request is done (called after every step)."""
        if self._result is not None or self.error is not None or self._rid is None:
            return
        if lib.tandem_engine_request_state(self._pipe._engine, self._rid) != _lib.REQUEST_DONE:
            return
        res = _lib.GenResult()
        try:
            check(lib.tandem_engine_result(self._pipe._engine, self._rid, ctypes.byref(res)))
        except TandemError as e:
            self.error = e
            return
        ids, _, stops, _ = self._prepared
        self._result = self._pipe._finish(res, self._config, stops, len(ids), self._t0, self._sink.write)
        self._sink.end()

    def _ids(self):
        if self._result is not None:
            return self._result.token_ids[0]
        if self._rid is None or self.error is not None:
            return []
        p = ctypes.POINTER(ctypes.c_int32)()
        n = ctypes.c_size_t()
        check(lib.tandem_engine_request_ids(self._pipe._engine, self._rid, ctypes.byref(p), ctypes.byref(n)))
        return p[:n.value]

    def get_status(self):
        if self.error is not None:
            return GenerationStatus.IGNORED
        if self._result is None:
            return GenerationStatus.RUNNING
        if self._ended_by is not None:
            return self._ended_by
        if self._sink.cancelled:
            return GenerationStatus.CANCEL
        if self._result.finish_reasons[0] == "aborted":
            return GenerationStatus.STOP
        return GenerationStatus.FINISHED

    def can_read(self):
        with self._pipe._lock:
            return len(self._ids()) > self._n_read

    def read(self):
        """{0: GenerationOutput of the ids generated since the last read} (one sequence per request in tandem)."""
        with self._pipe._lock:
            ids = self._ids()
            new, self._n_read = ids[self._n_read:], len(ids)
            return {0: GenerationOutput(new, self._finish_reason())}

    def read_all(self):
        """Steps the pipeline until this request has ended; [GenerationOutput of all its ids]."""
        while self.get_status() == GenerationStatus.RUNNING:
            self._pipe.step()
        with self._pipe._lock:
            ids = self._ids()
            self._n_read = len(ids)
            return [GenerationOutput(ids, self._finish_reason())]

    def _finish_reason(self):
        if self._result is None:
            return GenerationFinishReason.NONE
        return _FINISH_REASON.get(self._result.finish_reasons[0], GenerationFinishReason.NONE)

    def _end(self, status):
        with self._pipe._lock:
            if self._result is None and self.error is None and self._rid is not None:
                check(lib.tandem_engine_cancel(self._pipe._engine, self._rid))
                self._ended_by = status
                self._collect()
            if self in self._pipe._handles:
                self._pipe._handles.remove(self)

    def stop(self):
        self._end(GenerationStatus.STOP)

    def cancel(self):
        self._end(GenerationStatus.CANCEL)

    def drop(self):
        self._end(GenerationStatus.CANCEL)

    def _generation_result(self):
        if self.error is not None:
            raise self.error
        return GenerationResult(self.request_id, self._result, self.get_status(), self._encoded)


class ContinuousBatchingPipeline(_ModelPipeline):
    """ContinuousBatchingPipeline(models_path, scheduler_config, device="CPU", properties=None, **kwargs): many
    requests decoded together by one tandem engine (SchedulerConfig maps onto it), each request's output the one
    LLMPipeline gives it alone. properties as LLMPipeline's (draft_model=, prompt_lookup=, INFERENCE_NUM_THREADS,
    n_ctx). Use add_request + step + has_non_finished_requests, or generate(prompts, configs). Text prompts are
    rendered with the chat template when GenerationConfig.apply_chat_template is True, as in LLMPipeline."""

    def __init__(self, models_path, scheduler_config=None, device="CPU", properties=None, tokenizer_properties=None,
                 **kwargs):
        props = dict(properties or {})
        props.update(kwargs)
        if tokenizer_properties:
            raise ValueError("ContinuousBatchingPipeline: unsupported tokenizer_properties "
                             f"{sorted(tokenizer_properties)}")
        self._open("ContinuousBatchingPipeline", models_path, device, props)
        self._scheduler_config = scheduler_config or SchedulerConfig()
        ep = self._scheduler_config._engine_params(self._model, self._n_ctx, self._draft)
        engine = ctypes.c_void_p()
        check(lib.tandem_engine_create(self._model, ctypes.byref(ep), ctypes.byref(engine)))
        self._engine = engine
        self._handles = []
        self._loaded()

    def get_config(self):
        return self.get_generation_config()

    def add_request(self, request_id, prompt, generation_config=None):
        """Queues one request: prompt a str, a ChatHistory, or token ids (a tensor/array or TokenizedInputs of one
        row); returns its GenerationHandle."""
        return self._add(request_id, prompt, self._config_of(generation_config, {}), None)

    def _add(self, request_id, prompt, config, streamer):
        tokens = _token_prompts(prompt)
        if tokens is not None:
            if len(tokens) != 1:
                raise ValueError("ContinuousBatchingPipeline.add_request: one prompt per request")
            prompt = tokens[0]
        elif not isinstance(prompt, (str, ChatHistory)):
            raise TypeError("ContinuousBatchingPipeline: a prompt is a str, a ChatHistory or token ids")
        t0 = time.perf_counter()
        prepared = self._prepare(prompt, config)
        ids, gp, stops, _ = prepared
        sink = _TextSink(streamer)
        gp.on_text = sink.callback
        gp.draft = None  # the engine drafts with its draft_model
        with self._lock:
            h = GenerationHandle(self, request_id, None, prepared, sink, config, tokens is not None, t0)
            if gp.max_tokens == 0:
                h._result = DecodedResults([""], [0.0], PerfMetrics(None, self._load_ms, 0.0, len(ids), 0),
                                           ["length"], [[]])
                return h
            arr = (ctypes.c_int32 * len(ids))(*ids)
            rid = ctypes.c_int64()
            try:
                check(lib.tandem_engine_add(self._engine, arr, len(ids), ctypes.byref(gp), ctypes.byref(rid)))
            except TandemError as e:
                sc = self._scheduler_config
                if e.status == -5 and (sc.cache_size or sc.num_kv_blocks):  # TANDEM_ERR_NO_MEMORY: the budget
                    raise TandemError(f"SchedulerConfig.cache_size / num_kv_blocks hold less than one sequence's KV "
                                      f"cache (lower the pipeline's n_ctx, or raise them): {e}", e.status) from None
                raise
            h._rid = rid.value
            self._handles.append(h)
        return h

    def step(self):
        """One engine step for every queued and running request; finished requests' results are collected."""
        with self._lock:
            idle = ctypes.c_bool(False)
            check(lib.tandem_engine_step(self._engine, ctypes.byref(idle)))
            failed = None
            for h in list(self._handles):
                h._collect()
                failed = failed or h._sink.failure
                h._sink.failure = None
                if h._result is not None or h.error is not None:
                    self._handles.remove(h)
        if failed is not None:  # a streamer raised: its request stopped; the exception goes to the caller
            raise failed

    def has_non_finished_requests(self):
        with self._lock:
            return bool(self._handles)

    def generate(self, prompts, generation_config=None, streamer=None):
        """prompts: a list of str (or ChatHistory), or of token-id tensors/arrays; generation_config: one
        GenerationConfig per prompt, or one for all (None: the pipeline's). A streamer needs a single prompt.
        Returns [GenerationResult] (texts) or [EncodedGenerationResult] (ids), in the order of the prompts."""
        if isinstance(prompts, (str, ChatHistory)):
            prompts = [prompts]
        prompts = list(prompts)
        if not prompts:
            raise ValueError("ContinuousBatchingPipeline.generate: no prompt given")
        if streamer is not None and len(prompts) > 1:
            raise ValueError("ContinuousBatchingPipeline.generate: a streamer needs a single prompt")
        configs = generation_config if isinstance(generation_config, (list, tuple)) else \
            [generation_config] * len(prompts)
        if len(configs) != len(prompts):
            raise ValueError(f"ContinuousBatchingPipeline.generate: {len(prompts)} prompts but {len(configs)} "
                             "generation configs")
        handles = []
        try:
            for i, (p, c) in enumerate(zip(prompts, configs)):
                handles.append(self._add(i, p, self._config_of(c, {}), streamer))
            while any(h.get_status() == GenerationStatus.RUNNING for h in handles):
                self.step()
        except BaseException:
            for h in handles:
                h.drop()
            raise
        return [h._generation_result() for h in handles]
