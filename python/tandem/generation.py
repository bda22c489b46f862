# GenerationConfig, streamers and results as OpenVINO GenAI's Python API names them, mapped onto tandem_gen_params.
# Fields tandem cannot honour raise NotImplementedError (never silently ignored); bad values raise ValueError.
import enum
import json
import math
from pathlib import Path


class StreamingStatus(enum.IntEnum):
    RUNNING = 0
    STOP = 1
    CANCEL = 2  # outside chat mode the same as STOP (there is no chat history to drop the answer from yet)


class StreamerBase:
    """Subclass and override write(); return StreamingStatus.STOP (or True) to end the generation.

    Unlike OpenVINO GenAI, write() receives text, not token ids: tandem streams complete UTF-8 text that is never
    part of a stop string (tandem_text_callback), so no detokenizer is needed on this side."""

    def write(self, text):
        return StreamingStatus.RUNNING

    def end(self):
        pass


class TextStreamer(StreamerBase):
    """OpenVINO GenAI's TextStreamer(tokenizer, callback): callback(text) -> StreamingStatus | bool | None receives
    the text as it becomes final (tandem already streams whole UTF-8 text, so tokenizer is only kept)."""

    def __init__(self, tokenizer, callback, detokenization_params=None):
        self.tokenizer = tokenizer
        self._callback = callback

    def write(self, text):
        return self._callback(text)


class StructuredOutputConfig:
    """OpenVINO GenAI's StructuredOutputConfig: the output must follow json_schema (a JSON Schema as a str, or a dict),
    through tandem's grammars (llguidance). tandem writes JSON with ", " and ": " separators and no other
    whitespace. regex, grammar, structural_tags_config and compound_grammar are not supported by tandem's grammar API
    and raise NotImplementedError."""

    _UNSUPPORTED = ("regex", "grammar", "structural_tags_config", "compound_grammar")

    def __init__(self, json_schema=None, regex=None, grammar=None, structural_tags_config=None,
                 compound_grammar=None, backend=None):
        self.json_schema = json_schema
        self.regex = regex
        self.grammar = grammar
        self.structural_tags_config = structural_tags_config
        self.compound_grammar = compound_grammar
        self.backend = backend

    def schema_text(self):
        return self.json_schema if isinstance(self.json_schema, str) else json.dumps(self.json_schema)

    def validate(self):
        for name in self._UNSUPPORTED:
            if getattr(self, name) is not None:
                raise NotImplementedError(f"StructuredOutputConfig.{name}: tandem's grammars take a JSON schema only "
                                          "(json_schema)")
        if self.backend not in (None, "", "llguidance"):
            raise NotImplementedError(f"StructuredOutputConfig.backend = {self.backend!r}: tandem uses llguidance")
        if self.json_schema is None:
            raise ValueError("StructuredOutputConfig: set json_schema")
        if not isinstance(self.json_schema, (str, dict)):
            raise TypeError("StructuredOutputConfig.json_schema must be a str or a dict")

    def __repr__(self):
        return f"StructuredOutputConfig(json_schema={self.json_schema!r})"


# name: default (None = not set). Defaults are OpenVINO GenAI's, except where noted in __init__.
_FIELDS = {
    "max_new_tokens": None, "max_length": None, "min_new_tokens": 0, "ignore_eos": False, "eos_token_id": -1,
    "stop_strings": set(), "include_stop_str_in_output": False, "stop_token_ids": set(),
    "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
    "temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "do_sample": False, "rng_seed": 0,
    "num_assistant_tokens": 0, "assistant_confidence_threshold": 0.0, "max_ngram_size": 0,
    "apply_chat_template": True,
    # accepted for OpenVINO GenAI code; only their neutral values are supported
    "num_beams": 1, "num_beam_groups": 1, "num_return_sequences": 1, "diversity_penalty": 0.0,
    "length_penalty": 1.0, "no_repeat_ngram_size": 0, "echo": False, "logprobs": 0,
    "structured_output_config": None, "adapters": None,
}
_NOT_YET = {  # field: (neutral value, what is missing)
    "num_beams": (1, "beam search is not supported by tandem"),
    "num_beam_groups": (1, "beam search is not supported by tandem"),
    "diversity_penalty": (0.0, "beam search is not supported by tandem"),
    "length_penalty": (1.0, "beam search is not supported by tandem"),
    "num_return_sequences": (1, "tandem returns one sequence per prompt"),
    "no_repeat_ngram_size": (0, "tandem's sampler has no n-gram ban"),
    "echo": (False, "tandem does not return the prompt in the output"),
    "adapters": (None, "tandem has no LoRA adapters"),
}


class GenerationConfig:
    """OpenVINO GenAI's GenerationConfig: GenerationConfig(), GenerationConfig(json_path) or GenerationConfig(**fields).

    Differences: top_k = 0 means off (OpenVINO: a huge number); max_new_tokens and max_length default to None
    (generate until an end token or the context is full)."""

    def __init__(self, json_path=None, **kwargs):
        for k, v in _FIELDS.items():
            object.__setattr__(self, k, set(v) if isinstance(v, set) else v)
        if json_path is not None:
            data = json.loads(Path(json_path).read_text())
            eos = data.get("eos_token_id")
            if isinstance(eos, list):
                data["stop_token_ids"] = set(eos)
                data["eos_token_id"] = eos[0] if eos else -1
            for k in list(data):
                if k not in _FIELDS:
                    del data[k]  # generation_config.json holds transformers-only keys (bos, pad, version)
            self.update_generation_config(**data)
        self.update_generation_config(**kwargs)

    def __setattr__(self, name, value):
        if name not in _FIELDS:
            raise AttributeError(f"GenerationConfig has no field '{name}'")
        if name in ("stop_strings", "stop_token_ids") and value is not None:
            value = set(value)
        object.__setattr__(self, name, value)

    def update_generation_config(self, **kwargs):
        for k, v in kwargs.items():
            setattr(self, k, v)

    def copy(self):
        c = GenerationConfig()
        c.update_generation_config(**{k: getattr(self, k) for k in _FIELDS})
        return c

    def __repr__(self):
        return "GenerationConfig(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in _FIELDS) + ")"

    def is_greedy_decoding(self):
        return not self.do_sample and self.num_beams == 1

    def is_multinomial(self):
        return bool(self.do_sample)

    def is_beam_search(self):
        return self.num_beams > 1

    def is_assisting_generation(self):
        return self.num_assistant_tokens > 0 or self.assistant_confidence_threshold > 0

    def is_prompt_lookup(self):
        return self.max_ngram_size > 0

    def validate(self):
        """ValueError for values no generation can have, NotImplementedError for features tandem lacks."""
        def need(cond, msg):
            if not cond:
                raise ValueError(f"GenerationConfig: {msg}")
        for name, (neutral, why) in _NOT_YET.items():
            if getattr(self, name) != neutral:
                raise NotImplementedError(f"GenerationConfig.{name} = {getattr(self, name)!r}: {why}")
        for name in ("max_new_tokens", "max_length"):
            v = getattr(self, name)
            need(v is None or (isinstance(v, int) and v >= 0), f"{name} must be None or an integer >= 0, got {v!r}")
        need(isinstance(self.temperature, (int, float)) and self.temperature >= 0,
             f"temperature must be >= 0, got {self.temperature!r}")
        need(not self.do_sample or self.temperature > 0, "do_sample needs temperature > 0")
        need(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p!r}")
        need(isinstance(self.top_k, int) and self.top_k >= 0, f"top_k must be an integer >= 0, got {self.top_k!r}")
        need(0 <= self.min_p <= 1, f"min_p must be in [0, 1], got {self.min_p!r}")
        need(self.repetition_penalty > 0, f"repetition_penalty must be > 0, got {self.repetition_penalty!r}")
        for name in ("presence_penalty", "frequency_penalty"):
            v = getattr(self, name)
            need(math.isfinite(v) and -100 <= v <= 100, f"{name} must be in [-100, 100], got {v!r}")
        need(isinstance(self.min_new_tokens, int) and self.min_new_tokens >= 0,
             f"min_new_tokens must be an integer >= 0, got {self.min_new_tokens!r}")
        need(isinstance(self.logprobs, int) and 0 <= self.logprobs <= 20,
             f"logprobs (the number of top log-probabilities per token) must be in [0, 20], got {self.logprobs!r}")
        need(isinstance(self.rng_seed, int) and self.rng_seed >= 0, f"rng_seed must be an integer >= 0")
        need(0 <= self.num_assistant_tokens <= 64, "num_assistant_tokens must be in [0, 64]")
        need(0 <= self.assistant_confidence_threshold <= 1, "assistant_confidence_threshold must be in [0, 1]")
        need(0 <= self.max_ngram_size <= 16, "max_ngram_size must be in [0, 16]")
        need(all(isinstance(s, str) and s for s in self.stop_strings), "stop_strings must be non-empty strings")
        need(all(isinstance(t, int) for t in self.stop_token_ids), "stop_token_ids must be integers")
        if self.structured_output_config is not None:
            if not isinstance(self.structured_output_config, StructuredOutputConfig):
                raise TypeError("GenerationConfig.structured_output_config must be a StructuredOutputConfig")
            self.structured_output_config.validate()
            need(not self.ignore_eos, "structured_output_config needs ignore_eos False (the grammar's end is the end)")
            need(self.min_new_tokens == 0, "structured_output_config needs min_new_tokens 0 (the grammar's end is the "
                 "end)")


class MeanStdPair:
    def __init__(self, mean, std=0.0):
        self.mean = float(mean)
        self.std = float(std)

    def __iter__(self):
        return iter((self.mean, self.std))

    def __repr__(self):
        return f"MeanStdPair(mean={self.mean}, std={self.std})"


class PerfMetrics:
    """Durations in milliseconds, throughput in tokens per second, as OpenVINO GenAI's PerfMetrics. One generate()
    call gives one sample of each, so std is 0 (tandem reports aggregate timings, not per-token ones)."""

    def __init__(self, timings=None, load_ms=0.0, generate_ms=0.0, n_input=0, n_generated=0):
        t = timings
        self._ttft = t.ttft_ms if t else 0.0
        decode_steps = (t.n_generated - 1) if t else 0
        self._tpot = t.decode_ms / decode_steps if t and decode_steps > 0 else 0.0
        self._inference = (t.prompt_ms + t.decode_ms) if t else 0.0
        self._load = load_ms
        self._generate = generate_ms
        self._n_input = n_input
        self._n_generated = n_generated
        self._n_reused = t.n_prompt_reused if t else 0

    def get_ttft(self):
        return MeanStdPair(self._ttft)

    def get_tpot(self):
        return MeanStdPair(self._tpot)

    def get_throughput(self):
        return MeanStdPair(1000.0 / self._tpot if self._tpot > 0 else 0.0)

    def get_generate_duration(self):
        return MeanStdPair(self._generate)

    def get_inference_duration(self):
        """Time in the model: the prompt's evaluation plus decoding (tandem's timings.prompt_ms + decode_ms)."""
        return MeanStdPair(self._inference)

    def get_load_time(self):
        return self._load  # OpenVINO GenAI returns a float here, not a MeanStdPair

    def get_num_generated_tokens(self):
        return self._n_generated

    def get_num_input_tokens(self):
        return self._n_input

    def get_num_reused_input_tokens(self):
        """Of the input tokens, those found in the KV cache and not evaluated again (chat turns, the engine's prefix
        reuse): tandem_timings.n_prompt_reused. A tandem extension."""
        return self._n_reused

    def __add__(self, other):
        """Sums of two generations (list input): token counts add, durations add, ttft/tpot are averaged."""
        r = type(self).__new__(type(self))
        r.__dict__.update(self.__dict__)
        r._ttft = (self._ttft + other._ttft) / 2
        r._tpot = (self._tpot + other._tpot) / 2
        r._generate = self._generate + other._generate
        r._inference = self._inference + other._inference
        r._n_input = self._n_input + other._n_input
        r._n_generated = self._n_generated + other._n_generated
        r._n_reused = self._n_reused + other._n_reused
        return r


class ExtendedPerfMetrics(PerfMetrics):
    """OpenVINO GenAI's base of pipeline-specific metrics (DecodedResults.extended_perf_metrics)."""


class SDPerfMetrics(ExtendedPerfMetrics):
    """One model's side of speculative decoding (OpenVINO GenAI's SDPerfMetrics), from tandem_spec_stats:
    get_num_generated_tokens() the tokens this model produced (the target: the output; the draft: its proposals),
    get_num_accepted_tokens() the proposals the target kept, get_inference_duration() this model's time,
    num_iterations its passes (the target's verification passes; for the draft, its proposed tokens, one draft pass
    each), get_latency() the time per pass. get_ttft() / get_tpot(): the generation's (the target emits every token;
    the draft model's are NaN). tandem does not time single tokens: get_ttst() is NaN."""

    def __init__(self, n_generated=0, n_accepted=0, inference_ms=0.0, n_iterations=0, timings=None):
        super().__init__(timings, n_generated=n_generated)
        if timings is None:
            self._ttft = self._tpot = math.nan
        self._inference = inference_ms
        self.num_accepted_tokens = n_accepted
        self.num_iterations = n_iterations

    def get_num_accepted_tokens(self):
        return self.num_accepted_tokens

    def get_latency(self):
        return MeanStdPair(self._inference / self.num_iterations if self.num_iterations else 0.0)

    def get_ttst(self):
        return MeanStdPair(math.nan)

    def __add__(self, other):
        r = super().__add__(other)
        r.num_accepted_tokens = self.num_accepted_tokens + other.num_accepted_tokens
        r.num_iterations = self.num_iterations + other.num_iterations
        return r


class SDPerModelsPerfMetrics(SDPerfMetrics):
    """extended_perf_metrics of a speculative generation (a draft model, prompt lookup, or both), as OpenVINO GenAI's:
    main_model_metrics and draft_model_metrics (SDPerfMetrics), get_num_accepted_tokens() every proposal the target
    kept (draft model and n-gram lookup together; draft_model_metrics counts the draft model's alone). Also
    num_drafted_tokens, acceptance_rate and num_accepted_lookup_tokens (tandem's own figures)."""

    def __init__(self, stats=None, n_generated=0, timings=None):
        s = stats
        n_accepted = s.n_accepted if s else 0
        super().__init__(n_generated, n_accepted, s.target_ms if s else 0.0, s.n_rounds if s else 0, timings)
        drafted_by_model = (s.n_drafted - s.n_drafted_lookup) if s else 0
        self.main_model_metrics = SDPerfMetrics(n_generated, n_accepted, s.target_ms if s else 0.0,
                                                s.n_rounds if s else 0, timings)
        self.draft_model_metrics = SDPerfMetrics(drafted_by_model, (s.n_accepted - s.n_accepted_lookup) if s else 0,
                                                 s.draft_ms if s else 0.0, drafted_by_model)
        self.num_drafted_tokens = s.n_drafted if s else 0
        self.num_accepted_lookup_tokens = s.n_accepted_lookup if s else 0

    @property
    def acceptance_rate(self):
        return self.num_accepted_tokens / self.num_drafted_tokens if self.num_drafted_tokens else 0.0

    def __add__(self, other):
        r = super().__add__(other)
        r.main_model_metrics = self.main_model_metrics + other.main_model_metrics
        r.draft_model_metrics = self.draft_model_metrics + other.draft_model_metrics
        r.num_drafted_tokens = self.num_drafted_tokens + other.num_drafted_tokens
        r.num_accepted_lookup_tokens = self.num_accepted_lookup_tokens + other.num_accepted_lookup_tokens
        return r


def _add_optional(a, b):
    return b if a is None else a if b is None else a + b


class DecodedResults:
    """texts, scores, perf_metrics and extended_perf_metrics (SDPerModelsPerfMetrics when the generation speculated,
    else None) as in OpenVINO GenAI, plus finish_reasons (tandem's names: "eos", "stop", "length", "context_full",
    "aborted") and token_ids. scores: per sequence the sum of its generated ids' log-probabilities (an end id that
    ended it included) under the model's raw distribution (log_softmax of the logits, before penalties, temperature
    and top-k/p: tandem_token_logprob), for greedy decoding too (OpenVINO GenAI gives 0 there). Also tandem's
    token_logprobs (per sequence, each generated id's log-probability) and, with GenerationConfig.logprobs = N > 0,
    top_logprobs (per sequence, per generated id, the N most likely [(id, log-probability)], most likely first)."""

    def __init__(self, texts, scores, perf_metrics, finish_reasons, token_ids=None, extended_perf_metrics=None,
                 token_logprobs=None, top_logprobs=None):
        self.texts = texts
        self.scores = scores
        self.perf_metrics = perf_metrics
        self.extended_perf_metrics = extended_perf_metrics
        self.finish_reasons = finish_reasons
        self.token_ids = token_ids or []
        self.token_logprobs = token_logprobs if token_logprobs is not None else [[] for _ in texts]
        self.top_logprobs = top_logprobs if top_logprobs is not None else [[] for _ in texts]
        self._cancelled = False  # the streamer returned CANCEL (chat mode drops the turn)

    def __str__(self):
        return self.texts[0] if self.texts else ""

    @staticmethod
    def join(result, r):
        """result followed by r (result None: r alone): the results of a list of prompts, in order."""
        if result is None:
            return r
        result.texts += r.texts
        result.scores += r.scores
        result.finish_reasons += r.finish_reasons
        result.token_ids += r.token_ids
        result.token_logprobs += r.token_logprobs
        result.top_logprobs += r.top_logprobs
        result.perf_metrics = result.perf_metrics + r.perf_metrics
        result.extended_perf_metrics = _add_optional(result.extended_perf_metrics, r.extended_perf_metrics)
        return result

    def __repr__(self):
        return f"DecodedResults(texts={self.texts!r}, finish_reasons={self.finish_reasons!r})"


class EncodedResults:
    """What generate() returns for token-id input (TokenizedInputs, or a tensor/array of ids), as OpenVINO GenAI's
    EncodedResults: tokens (the generated ids, one list per input row), scores (as in DecodedResults),
    perf_metrics and extended_perf_metrics; plus finish_reasons, token_logprobs and top_logprobs (DecodedResults')."""

    def __init__(self, tokens, scores, perf_metrics, finish_reasons, extended_perf_metrics=None, token_logprobs=None,
                 top_logprobs=None):
        self.tokens = tokens
        self.scores = scores
        self.perf_metrics = perf_metrics
        self.extended_perf_metrics = extended_perf_metrics
        self.finish_reasons = finish_reasons
        self.token_logprobs = token_logprobs if token_logprobs is not None else [[] for _ in tokens]
        self.top_logprobs = top_logprobs if top_logprobs is not None else [[] for _ in tokens]

    @classmethod
    def of(cls, decoded):
        return cls(decoded.token_ids, decoded.scores, decoded.perf_metrics, decoded.finish_reasons,
                   decoded.extended_perf_metrics, decoded.token_logprobs, decoded.top_logprobs)

    def __repr__(self):
        return f"EncodedResults(tokens={self.tokens!r}, finish_reasons={self.finish_reasons!r})"
