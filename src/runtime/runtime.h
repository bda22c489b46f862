/* runtime.h — the structs behind the public handles tandem_model and tandem_ctx, shared by api.c,
 * generate.c and (later) speculative.c. A model owns its files, weights, tokenizer and thread pool. */
#ifndef TANDEM_RUNTIME_H
#define TANDEM_RUNTIME_H

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
};

struct tandem_ctx {
    tandem_model *model;
    qwen3_state *state;
    int32_t n_past;
    int32_t *tokens;               /* (n_ctx) the ids in the cache, in order */
    bool has_logits;               /* state->logits holds the last position's logits */
};

#endif
