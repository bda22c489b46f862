/* runtime.h — the structs behind the public handles tandem_model and tandem_ctx, and what the runtime's files
 * share among themselves (the sampler's draws, the generation emitter, the speculative rule and loop, quality's
 * evaluation on ids); included by every .c file of src/runtime. A model owns its files, weights, tokenizer, pool. */
#ifndef TANDEM_RUNTIME_H
#define TANDEM_RUNTIME_H

#include <pthread.h>

#include "gguf.h"
#include "qwen3.h"
#include "safetensors.h"
#include "tandem_base.h"
#include "tokenizer.h"

struct tandem_model {
    qwen3_model qwen;
    gguf_file *gguf;               /* one of gguf / st is the weight source */
    st_set *st;
    tandem_tokenizer *tokenizer;
    thread_pool *pool;
    char *path;
    char *name;
    const char *source;            /* "gguf" or "safetensors" */
    tandem_sampler_params sampler_defaults;
    int64_t n_params, weight_bytes;
    pthread_mutex_t pack_lock;     /* the first context packs the weights (qwen3_pack_weights), once */
    bool packed;
};

/* One sequence: its KV cache, and (until an engine shares one among sequences) a scratch of its own. */
struct tandem_ctx {
    tandem_model *model;
    qwen3_kv_cache *cache;
    qwen3_scratch *scratch;
    int32_t n_past;
    int32_t *tokens;               /* (n_ctx) the ids in the cache, in order */
    float *logits;                 /* (vocab_size) the last position's logits */
    bool has_logits;               /* logits holds them */
};

/* ---- sampler internals used by speculative decoding ---- */

double sampler_uniform(tandem_sampler *s);  /* next uniform draw in [0, 1) from the sampler's generator */
/* Draws an id from probs (n floats summing to ~1) with the sampler's generator. */
int32_t sampler_draw(tandem_sampler *s, const float *probs, int32_t n);
bool sampler_is_greedy(const tandem_sampler *s);

/* ---- generation output, shared by the plain and the speculative loop ---- */

/* Turns accepted ids into the result: ids, text (complete UTF-8), stop strings, streaming, EOS. */
typedef struct gen_emitter {
    const tandem_gen_params *params;
    const tandem_tokenizer *tok;
    tandem_gen_result *r;
    tandem_detokenizer *detok;
    size_t text_cap, ids_cap, emitted;
    double t_start, t_first;
} gen_emitter;

/* Appends id; sets r->finish when generation must end (EOS, stop string, max tokens, callback). */
tandem_status emitter_push(gen_emitter *e, int32_t id);

/* The speculative sampling rule for one proposed token x drawn from q (NULL: a point mass at x): returns x
 * and sets *accepted with probability min(1, p(x)/q(x)); otherwise returns a token drawn from the normalised
 * residual max(0, p − q). scratch: V floats. With both p and q exact, the returned token is distributed as p. */
int32_t spec_accept_or_correct(tandem_sampler *s, const float *p, const float *q, int32_t x, int32_t V,
                               float *scratch, bool *accepted);

/* The speculative loop (speculative.c): after the prompt is evaluated in target, generates into e. */
tandem_status speculative_loop(tandem_ctx *target, const tandem_gen_params *p, tandem_sampler *sampler,
                               gen_emitter *e);

/* ---- quality.c: tandem_perplexity / tandem_kld on token ids (the public calls tokenize first) ---- */
tandem_status quality_eval_ids(tandem_model *model, tandem_model *ref, const int32_t *ids, size_t n_ids,
                              const tandem_eval_params *params, tandem_quality_result *out);

#endif
