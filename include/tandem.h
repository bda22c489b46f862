/* tandem.h — the public C API of libtandem: load Qwen3 models, tokenize, evaluate, sample, generate.
 * The only header that tools/, server/ and python/ may include. Every handle is opaque; no global state. */
#ifndef TANDEM_H
#define TANDEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status and errors ---- */

/* Every fallible call returns a status. On failure a message "function: file: field: reason" is kept
 * per thread and can be read with tandem_last_error() until the next failing call on that thread. */
typedef enum tandem_status {
    TANDEM_OK = 0,
    TANDEM_ERR_IO = -1,           /* a file is missing, unreadable or cannot be mapped */
    TANDEM_ERR_FORMAT = -2,       /* a file's contents are malformed (truncated, out of bounds, bad JSON) */
    TANDEM_ERR_UNSUPPORTED = -3,  /* valid but not supported here (architecture, tensor type, version) */
    TANDEM_ERR_INVALID_ARG = -4,  /* the caller passed a bad value */
    TANDEM_ERR_NO_MEMORY = -5,
    TANDEM_ERR_CONTEXT_FULL = -6, /* the sequence would exceed the context's n_ctx */
    TANDEM_ERR_ABORTED = -7,      /* a callback asked to stop */
    TANDEM_ERR_MISMATCH = -8,     /* two models or files that must agree do not (e.g. vocabularies) */
} tandem_status;

const char *tandem_last_error(void);               /* borrowed; "" when nothing failed on this thread */
const char *tandem_status_name(tandem_status st);  /* static string, e.g. "format error" */
void tandem_free(void *p);                         /* frees arrays and strings the API returned */

/* Every file tandem writes goes first to a temporary file next to it, renamed onto path at the end, so path only
 * ever holds a complete file. This creates "<path>.tmp.XXXXXX" with mode 0666 less the umask (as any new file):
 * *fd open for writing, *tmp_path its name (free with tandem_free). TANDEM_ERR_IO naming path and the reason (a
 * missing folder, no permission) otherwise. */
tandem_status tandem_temp_file_create(const char *path, int *fd, char **tmp_path);

/* ---- version ---- */

/* The release, "MAJOR.MINOR.PATCH": TANDEM_VERSION is the header's, tandem_version() the linked library's. */
#define TANDEM_VERSION "0.1.0"
const char *tandem_version(void);

/* ---- tensor types (ids equal ggml's, so GGUF files map one to one) ---- */

typedef enum tandem_type {
    TANDEM_TYPE_F32 = 0,
    TANDEM_TYPE_F16 = 1,
    TANDEM_TYPE_Q4_0 = 2,
    TANDEM_TYPE_Q4_1 = 3,
    TANDEM_TYPE_Q5_0 = 6,
    TANDEM_TYPE_Q5_1 = 7,
    TANDEM_TYPE_Q8_0 = 8,
    TANDEM_TYPE_Q8_1 = 9,
    TANDEM_TYPE_Q2_K = 10,
    TANDEM_TYPE_Q3_K = 11,
    TANDEM_TYPE_Q4_K = 12,
    TANDEM_TYPE_Q5_K = 13,
    TANDEM_TYPE_Q6_K = 14,
    TANDEM_TYPE_Q8_K = 15,
    TANDEM_TYPE_IQ4_NL = 20,
    TANDEM_TYPE_BF16 = 30,
    TANDEM_TYPE_COUNT = 43,
} tandem_type;

const char *tandem_type_name(tandem_type t);  /* "Q4_0", "BF16", …; "?" for ids tandem does not know */
/* The instruction set the kernels run on: "avx512vnni", "avxvnni", "avx2" or "scalar" (the best this CPU has,
 * or the one the environment variable TANDEM_KERNELS names). */
const char *tandem_kernel_isa(void);

/* ---- tokenizer ---- */

typedef struct tandem_tokenizer tandem_tokenizer;

/* path: a GGUF file, a tokenizer.json file, or a folder holding tokenizer.json (+ tokenizer_config.json). */
tandem_status tandem_tokenizer_load(const char *path, tandem_tokenizer **out);
void tandem_tokenizer_free(tandem_tokenizer *tok);

int32_t tandem_tokenizer_vocab_size(const tandem_tokenizer *tok);
/* Encodes UTF-8 text (invalid bytes are encoded byte by byte, as Hugging Face does). Added tokens such as
 * <|im_start|> are matched when parse_special is true. *ids: caller frees with tandem_free. */
tandem_status tandem_tokenizer_encode(const tandem_tokenizer *tok, const char *text, size_t len,
                                      bool parse_special, int32_t **ids, size_t *n_ids);
/* Decodes ids to bytes (not necessarily valid UTF-8 if ids split a character). *text is NUL-terminated;
 * caller frees with tandem_free. */
tandem_status tandem_tokenizer_decode(const tandem_tokenizer *tok, const int32_t *ids, size_t n_ids,
                                      char **text, size_t *len);
/* The raw bytes of one token; NULL for an id out of range. Borrowed, valid while tok lives. */
const char *tandem_tokenizer_token_bytes(const tandem_tokenizer *tok, int32_t id, size_t *len);
/* Ids that end generation (from generation_config.json / GGUF eos + im_end); borrowed. */
const int32_t *tandem_tokenizer_eos_ids(const tandem_tokenizer *tok, size_t *n);
/* The chat template text, or NULL when the source has none. Borrowed. */
const char *tandem_tokenizer_chat_template(const tandem_tokenizer *tok);
/* A named template of Hugging Face's list form (tokenizer_config.json "chat_template": [{"name", "template"}, …];
 * GGUF tokenizer.chat_template.NAME, as gguf-py writes it), or NULL. NULL or "default" = the default one. */
const char *tandem_tokenizer_chat_template_named(const tandem_tokenizer *tok, const char *name);
/* The template transformers' apply_chat_template picks: "tool_use" when tools are given and the model names one,
 * else the default (NULL when there is none). */
const char *tandem_tokenizer_chat_template_for(const tandem_tokenizer *tok, bool with_tools);
/* The text of a special token that transformers passes to chat templates: name is "bos_token", "eos_token",
 * "unk_token", "sep_token", "pad_token", "cls_token" or "mask_token". From tokenizer_config.json (a string or
 * {"content": …}; null = not set, e.g. Qwen3's bos_token), or a GGUF's tokenizer.ggml.*_id (llama.cpp's keys).
 * NULL when not set or name is unknown. Borrowed. */
const char *tandem_tokenizer_special_token(const tandem_tokenizer *tok, const char *name);
/* Those special tokens that are set, as a JSON object {"eos_token": "<|im_end|>", "pad_token": …} (Qwen3: no
 * bos_token): what tandem_chat_render_params.special_tokens_json takes. Borrowed; "{}" when none is set. */
const char *tandem_tokenizer_special_tokens_json(const tandem_tokenizer *tok);
/* Whether id is a special token: an added token marked "special": true in tokenizer.json (Qwen3: <|im_start|>,
 * <|endoftext|>, ...; not <think>), or of type CONTROL in a GGUF. What Hugging Face's decode(skip_special_tokens=True)
 * leaves out. False for any other id, and for an id out of range. */
bool tandem_tokenizer_is_special(const tandem_tokenizer *tok, int32_t id);

/* Streaming decoder: turns ids one at a time into text that never ends inside a UTF-8 character. */
typedef struct tandem_detokenizer tandem_detokenizer;
tandem_status tandem_detokenizer_init(const tandem_tokenizer *tok, tandem_detokenizer **out);
/* Appends the complete UTF-8 text that id finishes to *out (borrowed, valid until the next call). Bytes that
 * can never form a character are emitted as U+FFFD, as Hugging Face's errors="replace" does. */
tandem_status tandem_detokenizer_push(tandem_detokenizer *d, int32_t id, const char **out, size_t *len);
/* Emits whatever is still held back (as U+FFFD) at the end of a stream. */
tandem_status tandem_detokenizer_flush(tandem_detokenizer *d, const char **out, size_t *len);
void tandem_detokenizer_free(tandem_detokenizer *d);

/* ---- model ---- */

typedef struct tandem_model tandem_model;

typedef struct tandem_model_params {
    int32_t n_threads;  /* threads for evaluation, 1..1024, as many as asked (more than tandem_cpu_count() only
                           take turns on the cores, and slow evaluation down); 0 = tandem_cpu_count() */
    const char *mmproj_path; /* a qwen3vl GGUF's vision tower: the mmproj GGUF beside it (llama.cpp's layout), or
                                NULL; a Qwen3-VL folder carries its own and must not be given one */
} tandem_model_params;
tandem_model_params tandem_model_default_params(void);
int32_t tandem_cpu_count(void);  /* CPUs online: what n_threads = 0 means */

/* path: a GGUF file, or a Hugging Face checkpoint folder (config.json + safetensors + tokenizer files).
 * Weights are memory-mapped, never copied at load. */
tandem_status tandem_model_load(const char *path, const tandem_model_params *params, tandem_model **out);
void tandem_model_free(tandem_model *model);
int32_t tandem_model_threads(const tandem_model *model);  /* threads its evaluations use */

typedef struct tandem_model_info {
    const char *architecture;  /* "qwen3", or "qwen3vl": Qwen3-VL's text model (M-RoPE sections set) */
    const char *name;          /* general.name or the folder name; may be "" */
    const char *source;        /* "gguf" or "safetensors" */
    int32_t n_layers, dim, n_heads, n_kv_heads, head_dim, ffn_dim, vocab_size, context_length;
    float rope_theta, rms_eps;
    bool tied_embeddings;
    int64_t n_params;          /* weights counted in elements */
    int64_t weight_bytes;      /* bytes of all tensors as stored */
    int64_t step_bytes;        /* bytes one decoding step reads: all weights but the unread embedding rows */
    int32_t n_tensors;
} tandem_model_info;
/* Strings in *info are borrowed from the model. */
void tandem_model_get_info(const tandem_model *model, tandem_model_info *info);

typedef struct tandem_tensor_info {
    const char *name;   /* GGUF naming, e.g. "blk.0.attn_q.weight" */
    tandem_type type;
    int32_t n_dims;
    int64_t shape[4];   /* outermost first (PyTorch order) */
} tandem_tensor_info;
tandem_status tandem_model_tensor_info(const tandem_model *model, int32_t i, tandem_tensor_info *info);

/* Borrowed; the model owns its tokenizer. */
const tandem_tokenizer *tandem_model_tokenizer(const tandem_model *model);

/* Sampling defaults from generation_config.json (HF folders) or tandem's own defaults. */
typedef struct tandem_sampler_params {
    float temperature;       /* 0 = greedy */
    int32_t top_k;           /* 0 = off */
    float top_p;             /* 1 = off */
    float min_p;             /* 0 = off */
    float repeat_penalty;    /* 1 = off; divides positive / multiplies negative logits of seen tokens */
    int32_t repeat_last_n;   /* window for the penalties; -1 = whole context */
    float presence_penalty;  /* 0 = off; subtracted once from the logit of every seen token */
    float frequency_penalty; /* 0 = off; subtracted per occurrence */
    uint64_t seed;
} tandem_sampler_params;
tandem_sampler_params tandem_sampler_default_params(void);
tandem_sampler_params tandem_model_sampler_defaults(const tandem_model *model);

/* ---- context: one sequence with its KV cache ---- */

typedef struct tandem_ctx tandem_ctx;

typedef struct tandem_ctx_params {
    int32_t n_ctx;      /* maximum sequence length; 0 = min(model context, 4096) */
    int32_t n_batch;    /* tokens per forward pass during prefill (default 64) */
    bool exact;         /* multiply quantized weights by f32 activations and keep an f32 KV cache: the reference
                           path, slower. Default false: activations are quantized to 8 bits per 32 values for
                           integer dot products where the CPU has them (logits then differ by ~1e-3 relative) */
    tandem_type kv_type; /* how the KV cache keeps keys and values when not exact: TANDEM_TYPE_F16 (default: half
                            the memory, and half the bytes attention reads per token), TANDEM_TYPE_Q8_0 (ggml's
                            block per 32 values: 0.53 of f16's bytes; head_dim a multiple of 32) or
                            TANDEM_TYPE_F32 */
} tandem_ctx_params;
tandem_ctx_params tandem_ctx_default_params(void);

tandem_status tandem_ctx_init(tandem_model *model, const tandem_ctx_params *params, tandem_ctx **out);
void tandem_ctx_free(tandem_ctx *ctx);

int32_t tandem_ctx_n_ctx(const tandem_ctx *ctx);
tandem_type tandem_ctx_kv_type(const tandem_ctx *ctx);  /* the cache's type in effect (F32 when exact) */
int32_t tandem_ctx_n_past(const tandem_ctx *ctx);  /* tokens held in the KV cache */

/* Appends n tokens at positions n_past … n_past+n-1, all in one or more batched passes.
 * logits: NULL to keep only the last position's logits (read them with tandem_ctx_logits), or a caller
 * buffer of n × vocab_size floats that receives every position's logits (the verification path).
 * TANDEM_ERR_CONTEXT_FULL (and nothing changed) if n_past + n > n_ctx. TANDEM_ERR_FORMAT when a pass's logits are NaN
 * or infinite (the message names the tensor holding a NaN or an infinity, or the layer whose output overflows); the
 * context then holds the tokens before that pass, without logits. */
tandem_status tandem_ctx_eval(tandem_ctx *ctx, const int32_t *ids, int32_t n, float *logits);
/* Logits of the last evaluated position; borrowed, valid until the next eval. NULL before any eval. */
const float *tandem_ctx_logits(const tandem_ctx *ctx);
/* Forgets every position ≥ n_keep (KV rollback after rejected draft tokens, or a new conversation). */
tandem_status tandem_ctx_truncate(tandem_ctx *ctx, int32_t n_keep);

/* ---- sampling ---- */

typedef struct tandem_sampler tandem_sampler;
tandem_status tandem_sampler_init(const tandem_sampler_params *params, int32_t vocab_size, tandem_sampler **out);
void tandem_sampler_free(tandem_sampler *s);
/* Picks a token from logits (vocab_size floats, not modified). history: the tokens the penalties see. */
int32_t tandem_sampler_sample(tandem_sampler *s, const float *logits, const int32_t *history, size_t n_history);
/* Writes the final distribution that tandem_sampler_sample draws from (after penalties, temperature and
 * truncation) into probs (vocab_size floats, zeros outside the kept set). Greedy: a one-hot vector. */
void tandem_sampler_probs(tandem_sampler *s, const float *logits, const int32_t *history, size_t n_history,
                          float *probs);

/* ---- generation ---- */

typedef enum tandem_finish {
    TANDEM_FINISH_NONE = 0,
    TANDEM_FINISH_EOS,          /* the model produced an end-of-generation token */
    TANDEM_FINISH_STOP_STRING,  /* a stop string appeared in the text */
    TANDEM_FINISH_LENGTH,       /* max_tokens reached */
    TANDEM_FINISH_CONTEXT_FULL, /* n_ctx reached */
    TANDEM_FINISH_ABORTED,      /* the callback returned false */
} tandem_finish;
const char *tandem_finish_name(tandem_finish f);  /* "eos", "stop", "length", "context_full", "aborted" */

/* Receives text as it becomes final: complete UTF-8, never part of a stop string. Return false to stop. */
typedef bool (*tandem_text_callback)(const char *text, size_t len, void *user);

/* Speculative decoding: a draft (a small model, and/or n-gram lookup in the text so far) proposes tokens,
 * the target checks them all in one batched pass. The output is exactly what the target alone produces:
 * identical tokens when greedy, the identical distribution when sampling. */
typedef struct tandem_spec_params {
    int32_t draft_max;    /* most tokens proposed per target pass (OpenVINO GenAI: num_assistant_tokens) */
    int32_t draft_min;    /* fewest draft-model tokens worth a verification pass; shorter drafts are dropped */
    float draft_p_min;    /* stop drafting when the draft model's own top probability falls below this
                           * (OpenVINO GenAI: assistant_confidence_threshold); 0 = off */
    bool adaptive;        /* choose the draft length from the measured acceptance and draft cost */
    int32_t lookup_ngram; /* > 0: propose the continuation of the last n-gram seen earlier (prompt lookup) */
} tandem_spec_params;
tandem_spec_params tandem_spec_default_params(void);

typedef struct tandem_spec_stats {
    int32_t n_rounds;          /* target verification passes */
    int32_t n_drafted;         /* tokens proposed (draft model + lookup) */
    int32_t n_accepted;        /* proposed tokens the target kept */
    int32_t n_drafted_lookup;  /* of n_drafted, proposed by n-gram lookup */
    int32_t n_accepted_lookup;
    double draft_ms;           /* time in the draft model */
    double target_ms;          /* time in target passes */
    double acceptance_rate;    /* n_accepted / n_drafted */
    double mean_per_pass;      /* E: tokens produced per target pass */
    double mean_draft_len;     /* γ: tokens proposed per pass */
    double draft_target_ratio; /* c: one draft-model step over one target pass */
    double predicted_speedup;  /* E / (γ·c + 1), the standard model, assuming verification costs one pass: a
                                * prediction (the target alone was not timed), not a measurement */
    int32_t n_rounds_draft_off; /* target passes for which adaptive drafting asked the draft model for nothing: at
                                 * its measured acceptance and cost it would not pay (0 without a draft model) */
} tandem_spec_stats;

/* TANDEM_OK if draft can serve target: same vocabulary size, same end ids, same token text on a sample of
 * ids; otherwise TANDEM_ERR_MISMATCH saying what differs. */
tandem_status tandem_model_check_draft(const tandem_model *target, const tandem_model *draft);

/* ---- token log-probabilities (OpenAI's logprobs / top_logprobs) ---- */

/* What tandem_gen_params.logprobs reports for each generated id: log-probabilities under the model's RAW distribution
 * at that position, log_softmax of the logits as the forward pass gives them, before penalties, temperature,
 * top-k/top-p/min-p and any grammar (as vLLM reports by default, "raw_logprobs"). So they do not depend on the
 * sampling settings, and with speculative decoding an accepted proposal's record is the target's distribution at its
 * position (from the verification pass), equal to what plain decoding reports. */
#define TANDEM_MAX_TOP_LOGPROBS 20
typedef struct tandem_token_logprob {
    int32_t id;    /* the generated id */
    float logprob; /* its log-probability */
    int32_t n_top; /* tandem_gen_params.top_logprobs: the most likely ids at that position, most likely first */
    int32_t top_ids[TANDEM_MAX_TOP_LOGPROBS]; /* (ties: lower id first) */
    float top_logprobs[TANDEM_MAX_TOP_LOGPROBS];
} tandem_token_logprob;
/* Called (with tandem_gen_params.user) for each generated id as it is accepted, before its text reaches on_text: its
 * record (with tandem_gen_params.logprobs; else only id is set, logprob 0 and n_top 0, and nothing is computed). */
typedef void (*tandem_token_callback)(const tandem_token_logprob *lp, void *user);

typedef struct tandem_gen_params {
    int32_t max_tokens;             /* -1 = until EOS or context full */
    tandem_sampler_params sampling;
    const char *const *stop;        /* stop strings (borrowed), n_stop of them */
    int32_t n_stop;
    bool ignore_eos;
    tandem_text_callback on_text;   /* may be NULL */
    void *user;
    /* speculative decoding: used when draft is non-NULL, spec.lookup_ngram > 0 or n_prediction > 0 (below) */
    tandem_ctx *draft; /* a context of a draft model (checked with tandem_model_check_draft); NULL in an
                                       engine, which drafts with tandem_engine_params.draft_model */
    tandem_spec_params spec;
    /* constrained decoding: NULL = free; else every token drawn must keep the output in the grammar's language
     * (tandem_grammar_from_json_schema / _from_tools, below; made for the model's tokenizer: a vocabulary of
     * another size is TANDEM_ERR_MISMATCH; borrowed until the generation ends). An end id is allowed only where the
     * grammar may end, and always ends generation (ignore_eos must be false) */
    const struct tandem_grammar *grammar;
    /* predicted output (OpenAI's "prediction"): tokens the answer is expected to repeat (code being edited, a document
     * being revised), proposed for verification like lookup: while the tokens generated so far are the prediction's
     * start, its next tokens; once they part, the continuation of the last spec.lookup_ngram generated tokens (3 when
     * lookup_ngram is 0) where they occur in it. Ids below the vocabulary size; borrowed (tandem_engine_add copies
     * them). Tried before lookup and the draft model; counted with lookup in tandem_spec_stats. Lossless as every
     * proposal: a wrong prediction costs verification rows, never a different output. NULL / 0 = none */
    const int32_t *prediction;
    int32_t n_prediction;
    /* images (Qwen3-VL, below): the prompt's <|image_pad|> runs, in order, are these images (each run exactly
     * tandem_image_tokens long, as tandem_vl_prompt builds it); borrowed. NULL / 0 = a text prompt */
    const struct tandem_image *const *images;
    int32_t n_images;
    /* log-probabilities (tandem_token_logprob above): with logprobs, tandem_gen_result.logprobs holds one record per
     * generated id; top_logprobs: 0..TANDEM_MAX_TOP_LOGPROBS alternatives per id (TANDEM_ERR_INVALID_ARG outside that
     * range). Costs a pass over the vocabulary per generated token */
    bool logprobs;
    int32_t top_logprobs;
    tandem_token_callback on_token; /* may be NULL: each generated id (and its record, with logprobs) */
    /* a minimum length (transformers' and OpenVINO GenAI's min_new_tokens): for the first min_new_tokens generated
     * ids the end ids are banned (their logits set to -inf before the sampler, as transformers'
     * MinNewTokensLengthLogitsProcessor does), and a stop string completed by one of those ids does not end
     * generation (it stays text; one completed by a later id does). max_tokens still ends it. 0 = none; negative,
     * or above 0 with a grammar (whose end is an end id), is TANDEM_ERR_INVALID_ARG */
    int32_t min_new_tokens;
} tandem_gen_params;
tandem_gen_params tandem_gen_default_params(const tandem_model *model);

typedef struct tandem_timings {
    double prompt_ms;      /* prefill of the prompt */
    double ttft_ms;        /* start to first generated token */
    double decode_ms;      /* first generated token to the last */
    int32_t n_prompt;
    int32_t n_generated;
    int32_t n_prompt_reused; /* of n_prompt, the leading tokens found in an engine slot's KV cache (a previous
                                request's prompt and generated tokens) and not evaluated again; 0 in tandem_generate */
    /* images (Qwen3-VL): of n_prompt, the image tokens; of those, the ones whose rows an engine took from its cache of
     * encoded images (tandem_engine_params.image_cache_bytes) instead of running the vision tower; the time spent
     * encoding (or copying cached rows). Images inside a reused prefix are neither encoded nor counted as cached */
    int32_t n_image_tokens;
    int32_t n_image_tokens_cached;
    double image_ms;
} tandem_timings;

typedef struct tandem_gen_result {
    int32_t *ids;          /* generated ids (including an EOS that ended it); owned, free with tandem_gen_result_free */
    size_t n_ids;
    char *text;            /* generated text without the stop string and without EOS text */
    size_t text_len;
    tandem_finish finish;
    tandem_timings timings;
    bool speculative;        /* spec_stats is filled */
    tandem_spec_stats spec_stats;
    tandem_token_logprob *logprobs; /* (n_ids) with tandem_gen_params.logprobs, else NULL; owned like ids */
} tandem_gen_result;

/* Evaluates the prompt after whatever ctx already holds, then samples until a stop condition. */
tandem_status tandem_generate(tandem_ctx *ctx, const int32_t *prompt, size_t n_prompt,
                              const tandem_gen_params *params, tandem_gen_result *result);
void tandem_gen_result_free(tandem_gen_result *result);

/* ---- images in, text out: Qwen3-VL (src/vision, src/runtime/vision.c) ----
 * A model loaded from a Qwen3-VL Hugging Face folder (config.json with a vision_config) holds its vision tower. A
 * prompt with images is built as transformers' Qwen3VLProcessor builds it: the chat template renders each image part
 * of a message ({"type": "image"}) as <|vision_start|><|image_pad|><|vision_end|>; tandem_vl_prompt tokenizes that
 * text and repeats each <|image_pad|> as many times as its image has tokens. tandem_generate with
 * tandem_gen_params.images then encodes the images with the vision tower (on the model's threads), feeds its rows at
 * those ids, adds its DeepStack features after the first layers, and gives every token its 3-axis position as
 * transformers' get_rope_index does: an image of gh x gw tokens starting at position s puts its token (r, c) at
 * (s, s + r, s + c) and the next token at s + max(gh, gw); later tokens, generated ones included, continue from
 * there. A model without a vision tower (a text model, a qwen3vl GGUF without its projector) refuses images
 * (TANDEM_ERR_UNSUPPORTED). An engine takes them too (tandem_engine_add), a draft model does not see them. */
typedef struct tandem_image tandem_image;

typedef struct tandem_image_params {
    /* the image's token budget: its size is rounded to multiples of 32 pixels (patch 16 x merge 2) with between
     * min_tokens and max_tokens 32 x 32 cells (transformers' smart_resize); 0 = the model's preprocessor_config.json
     * (Qwen3-VL: 64 .. 16384) */
    int32_t min_tokens, max_tokens;
} tandem_image_params;
tandem_image_params tandem_image_default_params(void);

bool tandem_model_has_vision(const tandem_model *model);
/* The image placeholder's id (<|image_pad|>, config.json image_token_id); -1 without a vision tower. */
int32_t tandem_model_image_token(const tandem_model *model);
/* Decodes a JPEG, PNG or WebP file (EXIF orientation applied, transparency on white; dimensions checked from the
 * header before any pixel buffer: a decompression bomb is refused) and preprocesses it for model's vision tower
 * (resize with Pillow's bicubic, normalise, patches). Errors name the file: TANDEM_ERR_IO (unreadable),
 * TANDEM_ERR_FORMAT (not an image, truncated, corrupt, too large), TANDEM_ERR_UNSUPPORTED (a format tandem does not
 * decode, a model without a vision tower), TANDEM_ERR_INVALID_ARG (an aspect ratio above 200). */
tandem_status tandem_image_load(const tandem_model *model, const char *path, const tandem_image_params *params,
                                tandem_image **out);
/* The same from bytes in memory; name labels messages. */
tandem_status tandem_image_from_bytes(const tandem_model *model, const char *name, const void *data, size_t size,
                                      const tandem_image_params *params, tandem_image **out);
/* An image already preprocessed as transformers' Qwen2VLImageProcessor / Qwen3VLProcessor gives it (an
 * AutoProcessor's pixel_values rows of this image and its image_grid_thw row): n_patches rows of patch_dim floats
 * (channel, temporal, patch row, patch column), in the processor's order, with n_patches = grid_t x grid_h x
 * grid_w; copied. patch_dim must be the vision tower's in_channels x temporal_patch_size x patch_size²; grid_t
 * must be 1 (an image, not a video), grid_h and grid_w multiples of the merge size; values must be finite.
 * Otherwise TANDEM_ERR_INVALID_ARG saying which; TANDEM_ERR_UNSUPPORTED for a model without a vision tower.
 * tandem_image_size reports grid x patch size for both sizes. */
tandem_status tandem_image_from_patches(const tandem_model *model, const float *pixel_values, int64_t n_patches,
                                        int64_t patch_dim, int32_t grid_t, int32_t grid_h, int32_t grid_w,
                                        tandem_image **out);
void tandem_image_free(tandem_image *img);            /* accepts NULL */
int32_t tandem_image_tokens(const tandem_image *img); /* the tokens it takes in a prompt */
/* Size as decoded, and as preprocessed (multiples of 32). */
void tandem_image_size(const tandem_image *img, int32_t *width, int32_t *height, int32_t *resized_width,
                       int32_t *resized_height);

/* The processor's step: text (a rendered chat prompt holding one <|image_pad|> per image, in order) tokenized with
 * its special tokens, each <|image_pad|> repeated tandem_image_tokens(images[i]) times. TANDEM_ERR_INVALID_ARG when
 * the text's image placeholders do not match n_images. *ids: free with tandem_free. */
tandem_status tandem_vl_prompt(const tandem_model *model, const char *text, size_t len,
                               const tandem_image *const *images, int32_t n_images, int32_t **ids, size_t *n_ids);

/* ---- engine: many sequences decoded together ---- */

/* An engine generates for several requests at once on one model: each step evaluates ONE batch holding every
 * running sequence's next token and chunks of prompts still being read, so the weights are read once per step for
 * all of them. Each request's ids, text and finish reason are those tandem_generate gives it alone. A finished
 * request's slot keeps its KV cache: a later prompt that starts with the same tokens (an agent resending its history)
 * takes that slot and reads only the rest (timings.n_prompt_reused); free slots are overwritten least recently used
 * first. Use an engine (like a context) from one thread at a time; it shares the model's thread pool. */
typedef struct tandem_engine tandem_engine;

typedef struct tandem_engine_params {
    int32_t n_slots;         /* most sequences evaluated together (default 4); more requests wait in a queue */
    int32_t n_ctx;           /* rows of each sequence's KV cache: prompt + generated tokens; 0 = min(model context,
                                4096) */
    int32_t n_batch;         /* most tokens of one step (default 64, at least n_slots): running sequences' next
                                tokens first, then prompt chunks cut to fit, so a long prompt is read over several
                                steps while the others keep decoding */
    tandem_type kv_type;     /* TANDEM_TYPE_F16 (default), TANDEM_TYPE_Q8_0 or TANDEM_TYPE_F32, as
                                tandem_ctx_params.kv_type (kv_budget_bytes counts its bytes: q8_0 fits ~1.9x) */
    int64_t kv_budget_bytes; /* most bytes the KV caches of running sequences may take together; fewer sequences
                                run at once when n_slots caches do not fit. 0 = n_slots caches of n_ctx rows */
    bool exact;              /* as tandem_ctx_params.exact */
    /* speculative decoding in an engine: a request speculates when spec.lookup_ngram > 0, when it has a prediction
     * (tandem_gen_params), or when spec.draft_max > 0 and the engine has this draft model (a zeroed spec, as
     * tandem_gen_default_params gives, decodes plainly); its spec is checked as tandem_generate does. Each step then drafts for every
     * such sequence together (one draft-model pass per draft token, all sequences' tokens in it; a sequence's draft
     * cache catches up with its accepted tokens, or with a reused prefix, in the same passes) and verifies all
     * proposals in the step's one target pass, beside the other sequences' tokens; each sequence accepts or corrects
     * as tandem_generate does, so its output is tandem_generate's with a context of this draft model. A step holds
     * at most n_batch target tokens: each speculating sequence proposes at most (n_batch − running sequences) /
     * speculating sequences tokens (fewer than draft_max only when n_batch is small; sampled output is then still
     * the target's distribution, but other draws than tandem_generate's) */
    tandem_model *draft_model; /* NULL = none; same vocabulary (tandem_model_check_draft), borrowed for the engine's
                                  life. Each slot then also keeps a draft KV cache of n_ctx rows (kv_type), counted in
                                  kv_budget_bytes with the target's */
    /* images (Qwen3-VL): a request's images are encoded when its prompt chunk reaches them, and their rows (with the
     * DeepStack rows) kept in a cache keyed by the SHA-256 of the resized pixels (grid and config too), so that a
     * client resending the same image (an agent's screenshot every step) has it encoded once. The cache's most
     * bytes, least recently used images dropped first (default 256 MiB; 0 = no cache). The draft model sees no
     * images: a request with images decodes without it (lookup and predictions still propose), so its output is the
     * same */
    int64_t image_cache_bytes;
} tandem_engine_params;
tandem_engine_params tandem_engine_default_params(void);

tandem_status tandem_engine_create(tandem_model *model, const tandem_engine_params *params, tandem_engine **out);
/* Frees the engine with every request it still holds (their results are lost). */
void tandem_engine_free(tandem_engine *engine);

/* Queues a request: its prompt (copied; at least one token) and its generation parameters (copied, stop strings
 * included; on_text, user and grammar are kept as given: on_text is called from tandem_engine_step, the grammar
 * and the images must live until the request is done). With images (a Qwen3-VL model) the prompt is
 * tandem_vl_prompt's, checked against them here (TANDEM_ERR_INVALID_ARG); a model without a vision tower refuses
 * them (TANDEM_ERR_UNSUPPORTED). A reused prefix keeps an image's rows only when the prompt holds the same image
 * (its pixels' digest) at the same place. *id names the request
 * (ids start at 1 and are never reused). Refused, with nothing queued: bad ids, a prompt longer than n_ctx
 * (TANDEM_ERR_CONTEXT_FULL), a slot's KV caches (target and draft) of n_ctx rows larger than kv_budget_bytes
 * (TANDEM_ERR_NO_MEMORY), bad speculative parameters, params->draft set (an engine drafts with its draft_model).
 * The prediction, if any, is copied. */
tandem_status tandem_engine_add(tandem_engine *engine, const int32_t *prompt_ids, size_t n_prompt,
                                const tandem_gen_params *params, int64_t *id);
/* One step: queued requests take free slots, then (speculating sequences) the draft-model passes that make their
 * proposals, then one forward pass over the batch of every running sequence, then each sequence with logits samples
 * its next token, or accepts or corrects its proposals, and emits (on_text; a finished sequence frees its slot). *idle (may be NULL): nothing is queued or running any more. A request that fails (out of memory,
 * logits that are not finite) ends alone, its status kept for tandem_engine_result; the step itself fails only
 * on invalid arguments. */
tandem_status tandem_engine_step(tandem_engine *engine, bool *idle);
/* Ends a request, queued or running: it finishes with TANDEM_FINISH_ABORTED and what it generated so far (nothing
 * more is streamed), and its slot goes to the next queued request. A finished request stays as it was.
 * TANDEM_ERR_INVALID_ARG for an unknown id. */
tandem_status tandem_engine_cancel(tandem_engine *engine, int64_t id);

typedef enum tandem_request_state {
    TANDEM_REQUEST_UNKNOWN = 0, /* no such id, or its result was taken */
    TANDEM_REQUEST_QUEUED,      /* waiting for a slot */
    TANDEM_REQUEST_RUNNING,     /* in a slot: reading its prompt or generating */
    TANDEM_REQUEST_DONE,        /* finished (or cancelled, or failed): tandem_engine_result has it */
} tandem_request_state;
tandem_request_state tandem_engine_request_state(const tandem_engine *engine, int64_t id);
/* Hands over a finished request's result (free with tandem_gen_result_free) and forgets the request. Its timings:
 * ttft_ms from tandem_engine_add (queueing included), prompt_ms from taking a slot to the end of the prompt.
 * TANDEM_ERR_INVALID_ARG when the request is unknown or not finished (tandem_engine_request_state); the request's
 * own error (and no result) when it failed. */
tandem_status tandem_engine_result(tandem_engine *engine, int64_t id, tandem_gen_result *out);
/* The ids a request has generated so far (queued: none; running: those emitted up to the last step; done: all), to
 * follow a request token by token (OpenVINO GenAI's GenerationHandle.read) without a text callback. Ids once
 * reported are never taken back (rejected draft tokens are never among them). *ids is borrowed: valid until the
 * next tandem_engine_step, _cancel or _result on this engine; NULL when *n_ids is 0 (and for a failed request).
 * TANDEM_ERR_INVALID_ARG for an unknown id (or one whose result was taken). */
tandem_status tandem_engine_request_ids(const tandem_engine *engine, int64_t id, const int32_t **ids, size_t *n_ids);

/* What the engine holds now, for gauges (a server's KV-cache usage, as vLLM's kv_cache_usage_perc): KV-cache rows
 * (token positions) of the target model's caches; each slot's draft cache, if any, mirrors its slot's. */
typedef struct tandem_engine_usage {
    int32_t n_slots;      /* slots that may run at once (n_slots, fewer when kv_budget_bytes holds fewer caches) */
    int32_t n_running;    /* requests in a slot */
    int32_t n_queued;     /* requests waiting for one */
    int64_t rows_total;   /* n_slots × n_ctx */
    int64_t rows_running; /* rows the running requests hold: their prompts read so far and tokens generated */
    int64_t rows_cached;  /* rows free slots keep for prefix reuse (overwritten whenever a slot is needed) */
    /* the encoded-image cache: bytes and images it holds; since the engine's start, images found in it (hits) and
     * images the vision tower encoded (misses) */
    int64_t image_cache_bytes;
    int32_t image_cache_entries;
    int64_t image_cache_hits, image_cache_misses;
} tandem_engine_usage;
void tandem_engine_get_usage(const tandem_engine *engine, tandem_engine_usage *out);

/* ---- chat templates (src/chat) ---- */

/* A model's chat template (Jinja2, as in tokenizer_config.json, chat_template.jinja / .json or GGUF
 * tokenizer.chat_template), run by tandem's own interpreter: the output equals Python jinja2's as
 * transformers' apply_chat_template renders it (trim_blocks, lstrip_blocks, loopcontrols, HF's tojson,
 * raise_exception, strftime_now). The interpreter is sandboxed: no I/O, and a template that loops or recurses
 * without end or writes too much stops with an error naming the template and the line. */
typedef struct tandem_chat_template tandem_chat_template;
/* A parsed template is read-only: several threads may render with it at once.
 * source: the template text (UTF-8). origin names it in errors (a file path, "GGUF tokenizer.chat_template").
 * TANDEM_ERR_FORMAT on a syntax error, naming the line and column. */
tandem_status tandem_chat_template_parse(const char *source, size_t len, const char *origin,
                                         tandem_chat_template **out);
void tandem_chat_template_free(tandem_chat_template *t);
typedef struct tandem_chat_render_params {
    bool add_generation_prompt;        /* end with the assistant's opening */
    int32_t enable_thinking;           /* -1 = not passed (the template's default), 0 = false, 1 = true */
    const char *tools_json;            /* an OpenAI tools array (the template's `tools`), or NULL */
    const char *extra_context_json;    /* a JSON object of further variables (chat_template_kwargs), or NULL */
    const char *bos_token, *eos_token; /* NULL = not defined */
    int64_t now_unix;                  /* the clock of strftime_now (local time); 0 = now */
    int64_t max_output_bytes;          /* 0 = the default limit (16 MiB) */
    /* A JSON object of further variables set first, so that bos_token/eos_token above and extra_context_json win
     * over it: the tokenizer's special tokens (tandem_tokenizer_special_tokens_json), which transformers passes
     * to every template and lets kwargs override. NULL = none. */
    const char *special_tokens_json;
} tandem_chat_render_params;
tandem_chat_render_params tandem_chat_render_default_params(void);
/* Renders messages_json (an OpenAI messages array) into *text (NUL-terminated; free with tandem_free).
 * What clients send is normalised first, so that it reaches the template as transformers users pass it:
 *  - role "developer" becomes "system";
 *  - a tool call's function.arguments given as a string holding a JSON object becomes that object (templates
 *    print it with tojson or iterate it);
 *  - reasoning_content, thinking and reasoning are aliases (transformers' rule: the first one set fills
 *    reasoning_content and thinking);
 *  - other keys are passed through untouched.
 * If the template then fails on the messages as sent (a type or undefined-value error, not raise_exception or a
 * limit), it is rendered once more with content null or missing as "" and content-part arrays
 * ([{"type": "text", "text": ...}, {"type": "image_url", ...}]) as their text parts joined with "\n" (other
 * parts dropped): a template that handles null content or part arrays itself (a VL template) sees them as sent.
 * Errors: TANDEM_ERR_INVALID_ARG for bad JSON or a failing template (the message names the template's origin
 * and line: "chat template (ORIGIN): line N: ..."; raise_exception's text is included). */
tandem_status tandem_chat_render(const tandem_chat_template *t, const char *messages_json, size_t len,
                                 const tandem_chat_render_params *p, char **text, size_t *text_len);


/* ---- chat output parsing (src/chat) ---- */

/* Splits what a Qwen3 model generates into reasoning (<think>…</think>), content (the answer) and tool calls
 * (<tool_call>\n{"name": …, "arguments": …}\n</tool_call>, several per turn), from text that arrives in pieces cut
 * anywhere (inside a tag, inside a UTF-8 character). Pieces come out as deltas as soon as they are decided; a
 * suffix that could still start a tag ("<", "</thi", "<tool_c"), or a run of newlines that could still turn out to
 * be a tag's separator, is held back until the next piece or tandem_chat_parser_finish decides it.
 * - Reasoning: "<think>" at the very start of the output (or params.reasoning_open: the prompt already opened it)
 *   up to "</think>". Newlines are trimmed as Qwen3's chat template writes them: the "\n" runs after "<think>",
 *   before "</think>" and after "</think>" are dropped, so "<think>\n\n</think>\n\nHi" is no reasoning and "Hi".
 * - Tool calls (params.parse_tool_calls): "<tool_call>", then one JSON object with a string "name" (non-empty, no
 *   control characters) and any JSON value "arguments" (absent: "{}"); other keys are ignored. The object's end is
 *   found by a JSON scan (strict RFC 8259, strings and escapes followed: arguments may hold "</tool_call>"); then
 *   whitespace and "</tool_call>" (if other text comes instead, the call stands and that text is content). arguments is the raw JSON text as generated, byte for
 *   byte (compact or not, never re-serialized). The "\n" runs before "<tool_call>" and after "</tool_call>" are
 *   separators and dropped. A call opened inside reasoning ends the reasoning (a later "</think>" is dropped).
 * - A call that does not parse stays text, verbatim (with the newlines before it), in the reasoning or content it
 *   interrupted: the name is streamed (TOOL_CALL) only once the JSON up to it is valid, arguments only as valid JSON
 *   prefixes; if the JSON then breaks, or the output ends inside the call, a TOOL_DROPPED delta says "forget call
 *   tool_index" and the call's whole text follows as ordinary REASONING or CONTENT deltas. So the deltas, applied
 *   in order (text appended, dropped calls removed), always give tandem_chat_parser_message_json's message.
 * - "<think>" anywhere but the start, "</think>" outside reasoning and "</tool_call>" outside a call are text.
 * Input that is not UTF-8 is read as Python's errors="replace" does (U+FFFD per maximal bad subpart), so every
 * delta is whole UTF-8 characters. Ids: "call_" + 24 letters and digits, a function of id_seed and tool_index. */
typedef struct tandem_chat_parser tandem_chat_parser;

typedef enum tandem_chat_delta_kind {
    TANDEM_CHAT_DELTA_REASONING, /* text: more reasoning */
    TANDEM_CHAT_DELTA_CONTENT,   /* text: more of the answer */
    TANDEM_CHAT_DELTA_TOOL_CALL, /* a new call: tool_index (0, 1, … in order; never reused), tool_id, tool_name */
    TANDEM_CHAT_DELTA_TOOL_ARGUMENTS, /* text: more of call tool_index's arguments (raw JSON) */
    TANDEM_CHAT_DELTA_TOOL_END,       /* call tool_index is complete: its arguments are one whole JSON value */
    TANDEM_CHAT_DELTA_TOOL_DROPPED,   /* call tool_index did not parse: forget it; its text follows as text deltas */
} tandem_chat_delta_kind;

typedef struct tandem_chat_delta {
    tandem_chat_delta_kind kind;
    int32_t tool_index;    /* tool kinds; -1 otherwise */
    const char *tool_id;   /* tool kinds ("call_…"); NULL otherwise. Borrowed for the callback's duration */
    const char *tool_name; /* tool kinds; NULL otherwise. Borrowed likewise */
    const char *text;      /* REASONING, CONTENT, TOOL_ARGUMENTS: len bytes (never empty); "" for the others */
    size_t len;
} tandem_chat_delta;

/* Returns false to stop: the parser then delivers nothing more (feed and finish return TANDEM_ERR_ABORTED). */
typedef bool (*tandem_chat_delta_callback)(const tandem_chat_delta *d, void *user);

typedef struct tandem_chat_parser_params {
    bool reasoning_open;   /* the prompt ends inside "<think>" (Qwen3 thinking-2507 templates): start in reasoning */
    bool parse_tool_calls; /* false: "<tool_call>" is text (no tools were offered) */
    uint64_t id_seed;      /* seeds the call ids (a server passes a random value, tests a fixed one) */
} tandem_chat_parser_params;
tandem_chat_parser_params tandem_chat_parser_default_params(void); /* not open, tool calls parsed, seed 0 */

tandem_status tandem_chat_parser_create(const tandem_chat_parser_params *params, tandem_chat_parser **out);
void tandem_chat_parser_free(tandem_chat_parser *p);
/* Reads len more bytes of generated text; cb (may be NULL) receives the deltas this decides, in order. */
tandem_status tandem_chat_parser_feed(tandem_chat_parser *p, const char *text, size_t len,
                                      tandem_chat_delta_callback cb, void *user);
/* The output has ended: what was held back is decided (a partial tag is text, an unfinished call is dropped and
 * becomes text, trailing newlines of content are kept, of reasoning dropped). Later feeds are refused. */
tandem_status tandem_chat_parser_finish(tandem_chat_parser *p, tandem_chat_delta_callback cb, void *user);
/* The message the deltas so far add up to, as an OpenAI assistant message (malloc'd, free with tandem_free):
 * {"role":"assistant","content":…,"reasoning_content":…,"tool_calls":[{"id":…,"type":"function","function":
 * {"name":…,"arguments":…}}]}. content is null when empty and there are tool calls ("" otherwise when empty);
 * reasoning_content and tool_calls are left out when empty; a call appears once it has ended (TOOL_END). */
tandem_status tandem_chat_parser_message_json(const tandem_chat_parser *p, char **json);


/* ---- constrained decoding (src/grammar) ---- */

/* A grammar the output must follow, compiled for one tokenizer (with llguidance): immutable once made, so one
 * grammar can serve many generations and engine requests at once (each keeps its own parse state). A token is drawn
 * from the sampler's distribution restricted to the tokens the grammar allows next (greedy: the best allowed one);
 * speculative decoding gives the same output as without a draft. Errors name the field and the reason (a schema
 * that is not JSON, an unsupported keyword, a tool without a name); a tokenizer without the tokens a grammar needs
 * (<tool_call>, </tool_call>, <think>, </think>) gives TANDEM_ERR_UNSUPPORTED. */
typedef struct tandem_grammar tandem_grammar;

/* The whole output is one JSON value valid under schema_json (a JSON Schema: OpenAI's response_format json_schema),
 * or, with schema_json NULL, any JSON object (json_object). Written as JSON with ", " and ": " separators and no
 * other whitespace (a schema's own "x-guidance" options, llguidance's, override that). The JSON starts at the first
 * token: a Qwen3 prompt for it closes the reasoning itself (the template's enable_thinking=false renders
 * "<think>\n\n</think>\n\n"). */
tandem_status tandem_grammar_from_json_schema(const tandem_tokenizer *tok, const char *schema_json,
                                              tandem_grammar **out);

typedef enum tandem_tool_choice {
    TANDEM_TOOL_CHOICE_AUTO = 0, /* free text, or tool calls once the model opens one with <tool_call> */
    TANDEM_TOOL_CHOICE_NONE,     /* no tool call: <tool_call> is never drawn */
    TANDEM_TOOL_CHOICE_REQUIRED, /* a tool call right after the reasoning (only spaces and newlines between) */
    TANDEM_TOOL_CHOICE_NAMED,    /* as REQUIRED, calling function_name */
} tandem_tool_choice;

/* Tool calls in Qwen3's format: after free text (AUTO) or right away (REQUIRED, NAMED), each call is exactly
 * <tool_call>\n{"name": NAME, "arguments": ARGS}\n</tool_call> with NAME one of the tools' names and ARGS valid
 * under that tool's parameters schema; calls are separated by 1-16 spaces and newlines (REQUIRED and NAMED allow as
 * many before the first), and the output ends after the last.
 * Reasoning (<think>…</think>) is never constrained: any token but an end id may appear inside it. */
typedef struct tandem_tool_grammar_params {
    const char *tools_json; /* an OpenAI tools array: [{"type": "function", "function": {"name", "description",
                                 "parameters"}}, …] (the bare {"name", "parameters"} objects too) */
    tandem_tool_choice choice;
    const char *function_name; /* TANDEM_TOOL_CHOICE_NAMED: the tool to call */
    bool parallel_tool_calls;  /* several calls in one answer; false: one call, then the end */
    bool reasoning_open;       /* the prompt ends inside <think> (the output starts as reasoning, closed by
                                  </think>) */
    bool thinking; /* the output may open one <think>…</think> block first (ignored with reasoning_open) */
} tandem_tool_grammar_params;
tandem_tool_grammar_params tandem_tool_grammar_default_params(void); /* AUTO, parallel calls, thinking */
tandem_status tandem_grammar_from_tools(const tandem_tokenizer *tok, const tandem_tool_grammar_params *params,
                                        tandem_grammar **out);
void tandem_grammar_free(tandem_grammar *g); /* after every generation using it has ended */

/* ---- converting and quantizing weights ---- */

/* Reports the progress of a long job: done out of total units of the named stage ("convert": weights
 * written, in elements; "evaluate": chunks scored). Return false to stop the job (it then fails with TANDEM_ERR_ABORTED and leaves no output). */
typedef bool (*tandem_progress_callback)(const char *stage, int64_t done, int64_t total, void *user);

/* A whole file's weight recipe; the values are llama.cpp's general.file_type labels. The per-tensor types of
 * each recipe (which tensors get more bits, fallbacks for rows that are not whole blocks) are documented in
 * README.md ("tandem convert") and src/convert/recipe.c. */
typedef enum tandem_ftype {
    TANDEM_FTYPE_F32 = 0,
    TANDEM_FTYPE_F16 = 1,
    TANDEM_FTYPE_Q4_0 = 2,
    TANDEM_FTYPE_Q4_1 = 3,
    TANDEM_FTYPE_Q8_0 = 7,
    TANDEM_FTYPE_Q5_0 = 8,
    TANDEM_FTYPE_Q5_1 = 9,
    TANDEM_FTYPE_Q2_K = 10,    /* every quantized weight Q2_K (llama-quantize --pure) */
    TANDEM_FTYPE_Q3_K = 11,    /* every quantized weight Q3_K (labelled Q3_K_S) */
    TANDEM_FTYPE_Q4_K = 14,    /* every quantized weight Q4_K (labelled Q4_K_S) */
    TANDEM_FTYPE_Q4_K_M = 15,
    TANDEM_FTYPE_Q5_K = 16,    /* every quantized weight Q5_K (labelled Q5_K_S) */
    TANDEM_FTYPE_Q5_K_M = 17,
    TANDEM_FTYPE_Q6_K = 18,
    TANDEM_FTYPE_IQ4_NL = 25,
    TANDEM_FTYPE_BF16 = 32,
} tandem_ftype;

/* Parses a recipe name, case-insensitively: GGUF names ("F16", "Q8_0", "Q4_K_M", "Q6_K", "IQ4_NL", …) and
 * optimum-cli's weight formats ("f32", "f16", "bf16", "int8" = Q8_0, "int4" = Q4_1 if asym else Q4_0,
 * "nf4" = IQ4_NL, "q4_k_m", "q5_k_m", "q6_k"). asym only matters for "int4". */
tandem_status tandem_ftype_parse(const char *name, bool asym, tandem_ftype *out);
const char *tandem_ftype_name(tandem_ftype f);  /* "Q4_K_M", …; "?" for an unknown value */

typedef struct tandem_convert_params {
    tandem_ftype ftype;
    /* Fraction of the layers' weights (parameters of blk.* matrices) stored at ftype; the other 1 - ratio
     * are kept in Q8_0, most sensitive tensors first (rule in README.md). 1 = none. Only for 4-6 bit ftypes. */
    float ratio;
    bool overwrite;                     /* replace an existing output file (otherwise: TANDEM_ERR_INVALID_ARG) */
    int32_t n_threads;                  /* 0 = all cores */
    tandem_progress_callback progress;  /* may be NULL */
    void *user;
    const char *chat_template_path; /* NULL, or a Jinja file stored as tokenizer.chat_template instead of the
                                         * folder's template(s) (tandem_convert only) */
    /* Qwen3-VL folders (config.json model_type qwen3_vl) only: tandem_convert writes the text model to out_path
     * (architecture qwen3vl) and the vision tower to a second GGUF in llama.cpp's mmproj layout (clip.*
     * metadata, projector qwen3vl_merger), at mmproj_path (NULL: "mmproj-<out_path's file name>" beside it),
     * its matrices as mmproj_ftype: F16 (default), BF16, Q8_0 (matrices whose rows are not whole 32-blocks stay
     * F16) or F32; norms, biases and the position table are F32, the patch kernel F16 (F32 with F32). */
    const char *mmproj_path;
    tandem_ftype mmproj_ftype;
} tandem_convert_params;
tandem_convert_params tandem_convert_default_params(void); /* F16, ratio 1, no overwrite, mmproj F16 */

/* Hugging Face Qwen3 (or Qwen3-VL: see mmproj_path) checkpoint folder (config.json, model.safetensors or shards with
 * model.safetensors.index.json, tokenizer.json, tokenizer_config.json, optional generation_config.json and
 * chat_template.jinja) → one GGUF at out_path with llama.cpp's tensor names, metadata and tokenizer keys.
 * The file is written to a temporary name and renamed at the end: on any failure nothing is left behind.
 * Tensors are converted one at a time as the file is written (memory: about the largest tensor). */
tandem_status tandem_convert(const char *hf_dir, const char *out_path, const tandem_convert_params *params);
/* Re-quantizes a Qwen3 GGUF to params->ftype (tensors already of the chosen type are copied unchanged;
 * others are dequantized to f32 and quantized again). Metadata is copied; general.file_type and
 * general.quantization_version are updated. */
tandem_status tandem_quantize_file(const char *in_path, const char *out_path, const tandem_convert_params *params);

/* ---- GGUF files described without loading a model: vision projectors (mmproj), any file's metadata ---- */

/* An mmproj GGUF's vision tower (llama.cpp's layout; Qwen3-VL's qwen3vl_merger projector), read and checked as
 * the encoder would load it. */
typedef struct tandem_mmproj_info {
    char projector[32];                      /* clip.projector_type */
    int32_t depth, hidden, n_heads, ffn_dim; /* blocks, width, heads, MLP width */
    int32_t patch_size, temporal_patch_size, merge_size;
    int32_t image_size, n_positions;           /* the learned position grid: (image_size / patch_size)² entries */
    int32_t out_hidden;                        /* projection_dim: the text model's width */
    int32_t n_deepstack, deepstack_layers[16]; /* blocks whose output feeds a DeepStack merger, ascending */
    int32_t n_tensors;
    int32_t tensors_per_type[TANDEM_TYPE_COUNT];
    int64_t n_params, weight_bytes;
} tandem_mmproj_info;
tandem_status tandem_mmproj_info_read(const char *path, tandem_mmproj_info *info);

/* The metadata of any GGUF as one JSON object {"architecture", "n_tensors", "metadata": {key: value}}: scalars as
 * they are, arrays of up to 16 elements in full, longer ones as "[N elements of TYPE]". *json: tandem_free. */
tandem_status tandem_gguf_metadata_json(const char *path, char **json);

/* ---- quality of a (compressed) model on a text ---- */

/* The text is tokenized (added tokens not parsed) and cut into consecutive chunks of n_ctx tokens; a final
 * partial chunk is dropped. Each chunk is evaluated from an empty cache and only its second half is scored
 * (the logits at positions n_ctx/2 … n_ctx-2 predicting the next token), as llama.cpp's perplexity does, so
 * every scored token sees at least n_ctx/2 tokens of context. tandem_prune's calibration perplexity is the same
 * figure (n_ctx = its window, exact). */
#define TANDEM_PPL_FIRST_SCORED(n_ctx) ((n_ctx) / 2) /* the first scored position of a chunk */
typedef struct tandem_eval_params {
    int32_t n_ctx;       /* chunk length in tokens (default 512; at most the model's context) */
    int32_t n_batch;     /* tokens per forward pass (default 64) */
    int32_t max_chunks;  /* 0 = every chunk */
    bool exact;          /* evaluate with f32 activations and KV cache (tandem_ctx_params.exact) */
    tandem_type kv_type; /* both models' KV cache when not exact (tandem_ctx_params.kv_type, default F16): a KL
                            divergence then measures the weights alone */
    tandem_progress_callback progress;  /* stage "evaluate", counted in chunks; may be NULL */
    void *user;
} tandem_eval_params;
tandem_eval_params tandem_eval_default_params(void);

typedef struct tandem_quality_result {
    int32_t n_chunks;
    int64_t n_scored;       /* tokens scored */
    double perplexity;      /* exp(mean negative log-likelihood) of the model */
    double nll_stderr;      /* standard error of the mean NLL */
    /* tandem_kld only: */
    double ref_perplexity;  /* of the reference model */
    double kld_mean;        /* mean over scored tokens of KL(ref ‖ model) in nats */
    double kld_stderr;
    double kld_max;
    double top1_agreement;  /* fraction of scored tokens where both argmax agree */
} tandem_quality_result;

tandem_status tandem_perplexity(tandem_model *model, const char *text, size_t len, const tandem_eval_params *params,
                                tandem_quality_result *result);
/* Compares model against ref (same vocabulary, same tokenizer) on the same chunks. */
tandem_status tandem_kld(tandem_model *model, tandem_model *ref, const char *text, size_t len,
                         const tandem_eval_params *params, tandem_quality_result *result);

/* Mean and sample standard deviation (n − 1 in the denominator) of a stream of values: tandem_perplexity's and
 * tandem_kld's standard errors, tandem bench's spreads. Start from a zeroed struct. */
typedef struct tandem_running_stats {
    int64_t n;
    double sum;                /* Σx: the mean is sum / n */
    double welford_mean, m2;   /* Welford's running mean and Σ(x − mean)²: the variance without the cancellation
                                  of Σx² − n·mean² when the spread is small beside the mean */
} tandem_running_stats;
void tandem_running_stats_add(tandem_running_stats *s, double x);
double tandem_running_stats_mean(const tandem_running_stats *s);  /* 0 when empty */
double tandem_running_stats_sd(const tandem_running_stats *s);    /* 0 for fewer than two values */

/* ---- training (src/train) ---- */

/* Reported after every optimiser step. */
typedef struct tandem_train_progress {
    int64_t step;          /* steps done, 1 … n_steps */
    int64_t n_steps;
    float loss;            /* mean cross-entropy of this step's batches */
    float val_loss;        /* mean cross-entropy on the held-out split; NaN when not measured at this step */
    float lr;              /* learning rate used by this step */
    float grad_norm;       /* global gradient norm before clipping */
    double tokens_per_s;   /* training tokens per second since the start (or resume) */
    double elapsed_s, eta_s;
} tandem_train_progress;
/* Return false to stop: the run saves its checkpoint (when it has a path) and returns TANDEM_ERR_ABORTED. */
typedef bool (*tandem_train_callback)(const tandem_train_progress *p, void *user);

/* Fields left at their "unset" value (integers −1, floats NaN, as tandem_train_default_params returns) take the
 * value of the same key in the config's "train" object, else tandem's default (in brackets). */
typedef struct tandem_train_params {
    const char *config_path;     /* HF-style config.json: model dims, plus an optional "train" object with the keys
                                  * below; may be NULL with init_path (the dims of that model) */
    const char *data_path;       /* UTF-8 training text */
    const char *output_path;     /* the trained model, GGUF */
    const char *tokenizer_path;  /* tokenizer.json folder/file or GGUF; written into the output (default: init_path) */
    const char *init_path;       /* NULL: random init (N(0, 0.02²), norms 1); else a model (GGUF or HF folder) whose
                                  * weights training continues from */
    const char *teacher_path;    /* NULL, or a model of the same vocabulary whose top-k next-token logits the student
                                  * also learns (online distillation, e.g. healing a pruned model): loss =
                                  * (1 − kl_weight)·CE + kl_weight·KL(teacher ‖ student) */
    int32_t topk;                /* teacher logits kept per position [32] */
    float kl_weight;             /* [0.5] */
    float kl_temp;               /* softmax temperature of both distributions in the KL [1] */
    const char *checkpoint_path; /* NULL: no checkpoints */
    bool resume;                 /* continue from checkpoint_path when that file exists */
    bool force;                  /* overwrite output_path */
    tandem_type out_type;        /* F32 [default], F16, BF16 or a quantized type (per-tensor rules: the converter) */
    int64_t steps;               /* optimiser steps [1000] */
    int32_t batch;               /* sequences per micro-batch [8] */
    int32_t accum;               /* micro-batches whose gradients are averaged per step [1] */
    int32_t seq;                 /* tokens per sequence [128] */
    float lr;                    /* peak learning rate [1e-3] */
    float lr_min;                /* end of the cosine decay [lr/10] */
    int64_t warmup;              /* linear warm-up steps [min(100, steps/10)] */
    float weight_decay;          /* AdamW decoupled decay on matrices, never on norms [0.1] */
    float beta1, beta2, eps;     /* AdamW [0.9, 0.95, 1e-8] */
    float clip;                  /* global gradient-norm clip, 0 = off [1.0] */
    int64_t seed;                /* initialisation seed [1] */
    int64_t val_every;           /* validation loss every K steps (and at the end), 0 = off [0] */
    float val_frac;              /* fraction of the tokens held out (the end of the text) [0.1 when validating] */
    int64_t checkpoint_every;    /* steps between checkpoints [100; and on stop] */
    int32_t n_threads;           /* OpenBLAS threads; 0 = all cores */
    tandem_train_callback on_progress;  /* may be NULL */
    void *user;
} tandem_train_params;
tandem_train_params tandem_train_default_params(void);

/* Trains a Qwen3 model (full parameters, FP32 master weights, AdamW with warm-up + cosine schedule, gradient
 * clipping) on next-token cross-entropy over the tokenized text and writes it as GGUF (temp file + rename; an
 * existing output is refused unless force). Errors name the file and the reason; nothing is written on failure. */
tandem_status tandem_train(const tandem_train_params *params);

/* ---- depth pruning (src/train/prune.c) ---- */

/* Runs calibration text through a model and measures, for every block of n consecutive layers starting at layer l,
 * the angular distance arccos(cos(h_l, h_{l+n})) / π between the hidden state entering layer l and the one leaving
 * layer l+n−1, averaged over tokens (Gromov et al., arXiv 2403.17887); removes the block of `n_remove` layers with the
 * smallest distance (or the explicit `layers`) and writes the shallower model as GGUF, same weight types, tokenizer
 * and template carried over. */
typedef struct tandem_prune_params {
    const char *model_path;     /* GGUF or HF folder */
    const char *calib_path;     /* UTF-8 calibration text */
    const char *output_path;    /* NULL: analyse only */
    int32_t n_remove;           /* layers to remove as one block (ignored with layers) */
    const int32_t *layers;      /* explicit layer indices to remove, or NULL */
    int32_t n_layers_listed;
    int32_t window;             /* tokens per forward pass (default 256) */
    int32_t max_tokens;         /* calibration tokens used at most (default 8192) */
    int32_t n_threads;          /* 0 = all cores */
    bool force;                 /* overwrite output_path */
} tandem_prune_params;
tandem_prune_params tandem_prune_default_params(void);

typedef struct tandem_prune_result {
    int32_t n_layers;           /* layers of the input model (L) */
    float *distance;            /* (L, L): distance[l·L + n−1] for the block of n layers from l; NaN where l+n > L.
                                 * Owned: tandem_prune_result_free */
    int32_t *removed;           /* the removed layer indices, ascending; owned */
    int32_t n_removed;
    int64_t n_tokens;           /* calibration tokens measured */
    double ppl_before, ppl_after;  /* calibration perplexity of the input and of the pruned model: tandem_perplexity's
                                    * with n_ctx = window and exact (whole windows, second halves); NaN when the
                                    * text is too short to score (window < 3) */
} tandem_prune_result;
tandem_status tandem_prune(const tandem_prune_params *params, tandem_prune_result *result);
void tandem_prune_result_free(tandem_prune_result *result);

/* ---- distillation data (src/runtime/synth.c) ---- */

#define TANDEM_SYNTH_MAX_TOPK 256

typedef struct tandem_synth_progress {
    int32_t done;          /* prompts answered, including those found in the output at the start */
    int32_t total;
    int32_t skipped;       /* prompts already in the output when the run started */
    int64_t n_tokens;      /* tokens generated by this run */
    double elapsed_s, tokens_per_s;
} tandem_synth_progress;
/* Called after every answer is on disk; return false to stop (the run can be resumed). */
typedef bool (*tandem_synth_callback)(const tandem_synth_progress *p, void *user);

typedef struct tandem_synth_params {
    const char *model_path;    /* the target (GGUF or HF folder) */
    const char *draft_path;    /* NULL, or a draft of the same vocabulary for speculative decoding */
    const char *prompts_path;  /* JSONL: one {"prompt": "…"} object (or a JSON string) per line; blank lines
                                * skipped */
    const char *output_path;   /* JSONL, appended to: one line per answer */
    int32_t max_tokens;        /* most tokens per answer [256] */
    int32_t topk;              /* > 0: also store the target's top-k (id, logit) per generated token [0] */
    bool raw;                  /* the prompt is plain text to continue (base models) instead of a user turn */
    bool force;                /* start over: remove an existing output instead of resuming it */
    int32_t n_threads;         /* 0 = all cores */
    int32_t n_ctx;             /* 0 = the model's (at most 4096) */
    tandem_spec_params spec;   /* draft length, lookup, … (with a draft, or lookup_ngram > 0) */
    tandem_synth_callback on_progress;  /* may be NULL */
    void *user;
    const char *chat_template_path; /* NULL = the target's own chat template; else this Jinja file (not with raw) */
    int32_t enable_thinking;        /* the template's enable_thinking: -1 = not passed (default), 0, 1 */
} tandem_synth_params;
tandem_synth_params tandem_synth_default_params(void);

typedef struct tandem_synth_result {
    int32_t n_prompts, n_skipped, n_written;
    int64_t n_tokens;
    tandem_spec_stats spec;    /* n_rounds, n_drafted, n_accepted, acceptance_rate, mean_per_pass over the run */
} tandem_synth_result;

/* The target answers every prompt greedily (temperature 0: reproducible, and exactly the target's choice), in the
 * chat format: each prompt as one user message rendered by the target's chat template (or chat_template_path) with
 * the generation prompt (tandem_chat_render, the tokenizer's special tokens passed), for Qwen3
 * `<|im_start|>user\n…<|im_end|>\n<|im_start|>assistant\n`, or, with raw, as a plain continuation, with
 * speculative decoding when a draft is given. Each answer becomes one line
 * {"index", "prompt", "prompt_ids", "ids", "text", "finish"[, "top_ids", "top_logits"]} — top_* hold, for each
 * generated token, the target's k largest logits (descending) at the position that predicted it — written in one
 * write and fsync'd. An existing output is resumed: prompts whose index it holds are skipped and a half-written last
 * line is dropped. Errors name the file and line (a prompt line that is not JSON, a draft of another vocabulary). */
tandem_status tandem_synth(const tandem_synth_params *params, tandem_synth_result *result);

/* ---- distillation (src/train/distill.c) ---- */

/* Fields left at -1 / NaN take the default in brackets. */
typedef struct tandem_distill_params {
    const char *student_path;    /* the model to fine-tune (GGUF or HF folder; its tokenizer goes into the output) */
    const char *teacher_path;    /* the target it learns from: same vocabulary (checked) */
    const char *data_path;       /* tandem synth output (JSONL) */
    const char *output_path;     /* GGUF, temp file + rename */
    tandem_type out_type;        /* F32, F16, BF16, Q8_0, Q4_0, … [TANDEM_TYPE_COUNT: the type most of the student's
                                  * layer matrices have, e.g. Q8_0 for a Q8_0 student] */
    int64_t steps;               /* optimiser steps [200] */
    int32_t batch;               /* answers per step [8] */
    int32_t seq;                 /* tokens per answer, prompt included; longer ones keep their end [256] */
    float lr;                    /* peak learning rate [5e-4] */
    float lr_min;                /* [lr/10] */
    int64_t warmup;              /* [min(20, steps/10)] */
    float weight_decay;          /* [0] */
    float clip;                  /* [1] */
    float kl_weight;             /* loss = (1 − w)·CE(teacher's tokens) + w·KL(teacher's top-k ‖ student) [0.5] */
    float kl_temp;               /* [1] */
    int32_t topk;                /* teacher logits per position computed online for answers stored without them [32] */
    int64_t seed;                /* order of the answers [1] */
    int32_t n_threads;           /* 0 = all cores */
    bool force;                  /* overwrite output_path */
    const char *checkpoint_path; /* NULL: no checkpoints; else weights, Adam moments and step (tandem_train's format) */
    bool resume;                 /* continue from checkpoint_path when that file exists (same data, batch, seq, seed:
                                  * the result is then bit-identical to an uninterrupted run) */
    int64_t checkpoint_every;    /* steps between checkpoints [100; and on stop and at the end] */
    tandem_train_callback on_progress;  /* may be NULL; val_loss is NaN; return false to stop (checkpoint saved) */
    void *user;
} tandem_distill_params;
tandem_distill_params tandem_distill_default_params(void);

/* Fine-tunes the student on synth's answers: cross-entropy on the teacher's generated tokens (the prompt tokens are
 * context only) and KL to the teacher's top-k logits — those stored in the data, else computed online from the
 * teacher. A student whose vocabulary differs from the teacher's, data lines that are not valid JSON (file:line),
 * ids outside the vocabulary: clear errors, nothing written. */
tandem_status tandem_distill(const tandem_distill_params *params);

/* ---- Hugging Face hub: downloads and model references (src/hub) ---- */

/* Every path argument that names a model (tandem_model_load, tandem_tokenizer_load, the converters, the CLI's -m)
 * also accepts a hub reference when no file or folder of that name exists: "ORG/NAME" (the snapshot folder of an
 * HF checkpoint, or the repository's one GGUF), "ORG/NAME:QUANT" (the .gguf file whose name has QUANT as a token,
 * case-insensitively, e.g. "Qwen/Qwen3-8B-GGUF:Q4_K_M") or "ORG/NAME:FILE" (that file of the repository), looked
 * up in the local cache without network (revision main). The cache is huggingface_hub's: HF_HUB_CACHE, else
 * HF_HOME/hub, else ~/.cache/huggingface/hub; models--ORG--NAME/{blobs,snapshots/COMMIT,refs/main}, so files
 * downloaded by huggingface_hub are found, and tandem's downloads are found by it. */

/* Reported during tandem_download, from the calling thread: after each file and a few times per second. */
typedef struct tandem_download_progress {
    const char *file; /* the repository path of the file that just completed; NULL in periodic reports */
    int32_t n_files_done, n_files;
    int64_t bytes_done;  /* of the selected files, on disk now (parts kept from an earlier run included) */
    int64_t bytes_total; /* their sizes as the hub lists them */
    int64_t bytes_start; /* of bytes_done, what was already on disk at the start (not transferred by this call) */
} tandem_download_progress;
/* Return false to stop: the download then fails with TANDEM_ERR_ABORTED, parts kept for the next call to resume. */
typedef bool (*tandem_download_callback)(const tandem_download_progress *p, void *user);

typedef struct tandem_download_params {
    const char *repo_id;        /* "ORG/NAME" (required) */
    const char *revision;       /* branch, tag or commit; NULL = "main" */
    const char *file;           /* NULL: the whole repository (or what include selects); else one file's path in
                                    the repository or, when no file has that path, a quantization (e.g. "Q4_K_M"):
                                    the .gguf file (or the parts of a split one) whose name has it */
    const char *const *include; /* fnmatch patterns on repository paths ('*' crosses '/'); a file matching any is
                                    downloaded; NULL or n_include 0 = every file; not together with file */
    int32_t n_include;
    const char *cache_dir; /* NULL = the hub cache above */
    const char *local_dir; /* not NULL: the files go into this plain folder (created) instead of the cache */
    const char *token;     /* NULL = HF_TOKEN, else the token file huggingface-cli login writes (HF_HOME/token) */
    const char *endpoint;  /* NULL = HF_ENDPOINT, else https://huggingface.co */
    int32_t n_parallel;    /* files fetched at once, 1..64; 0 = 4 */
    tandem_download_callback progress; /* may be NULL */
    void *user;
} tandem_download_params;
tandem_download_params tandem_download_default_params(void);

/* Downloads a repository's files (all, those include selects, or one file / quantization) from the hub's resolve
 * URLs into the cache (or local_dir), several at once, and sets *local_path (free with tandem_free) to the
 * snapshot folder, or to the file when file was given (the first part of a split GGUF). Each file is written as
 * blobs/<id>.incomplete (<path>.incomplete in local_dir), resumed from where an earlier run stopped, checked
 * against the hub's metadata (an LFS file's sha256, any other file's git blob id) and only then renamed into place
 * and linked into the snapshot, so no complete-looking file is ever half-written or wrong. A file already in the
 * cache is not fetched again (in local_dir: a file of the listed size). Errors name the repository and file:
 * TANDEM_ERR_IO for the network, HTTP 401/403 (asks for a token), 404 (repository or file not found) and the
 * disk (a full disk keeps the part for resuming); TANDEM_ERR_MISMATCH when a checksum differs (the part is
 * removed); TANDEM_ERR_INVALID_ARG when file matches nothing or several files. */
tandem_status tandem_download(const tandem_download_params *params, char **local_path);

/* ref (a hub reference as above) → *local_path in the local cache (free with tandem_free), without network.
 * TANDEM_ERR_INVALID_ARG if ref is not shaped like one; TANDEM_ERR_IO, saying to run `tandem pull REF`, if it is
 * not in the cache. */
tandem_status tandem_hub_resolve(const char *ref, char **local_path);

#ifdef __cplusplus
}
#endif
#endif
