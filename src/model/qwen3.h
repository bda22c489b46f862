/* qwen3.h — the Qwen3 dense model inside tandem: hyperparameters, weights bound to mapped files, the
 * per-sequence state (KV cache + activations) and the forward pass. Depends on kernels, io and base. */
#ifndef TANDEM_QWEN3_H
#define TANDEM_QWEN3_H

#include "gguf.h"
#include "kernels.h"
#include "safetensors.h"

/* Glossary (docs/architecture.md): dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, vocab_size. */
typedef struct qwen3_config {
    int32_t n_layers;
    int32_t dim;             /* hidden_size */
    int32_t ffn_dim;         /* intermediate_size */
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;        /* not dim/n_heads in general (Qwen3-0.6B: 128 vs 64) */
    int32_t vocab_size;
    int32_t context_length;  /* max_position_embeddings, informational */
    float rope_theta;
    float rms_eps;
    bool tied_embeddings;    /* lm_head shares token embeddings */
} qwen3_config;

/* HF config.json → config (checks model_type, required fields, ranges, unsupported features). */
tandem_status qwen3_config_from_json(const char *config_path, qwen3_config *cfg);
/* GGUF metadata (qwen3.*) → config; vocab_size from token_embd.weight. */
tandem_status qwen3_config_from_gguf(const gguf_file *f, qwen3_config *cfg);
/* The mirror of qwen3_config_from_gguf: general.* and qwen3.* keys with llama.cpp's types (u32 counts, f32
 * floats) for a model of config c; file_type is llama.cpp's general.file_type. */
tandem_status qwen3_config_write_gguf(gguf_writer *w, const qwen3_config *c, const char *name, uint32_t file_type);

typedef struct qwen3_layer {
    const float *input_layernorm;           /* (dim) */
    weight_matrix q_proj;                   /* (n_heads*head_dim, dim) */
    weight_matrix k_proj;                   /* (n_kv_heads*head_dim, dim) */
    weight_matrix v_proj;                   /* (n_kv_heads*head_dim, dim) */
    const float *q_norm;                    /* (head_dim), shared by all query heads */
    const float *k_norm;                    /* (head_dim) */
    weight_matrix o_proj;                   /* (dim, n_heads*head_dim) */
    const float *post_attention_layernorm;  /* (dim) */
    weight_matrix gate_proj;                /* (ffn_dim, dim) */
    weight_matrix up_proj;                  /* (ffn_dim, dim) */
    weight_matrix down_proj;                /* (dim, ffn_dim) */
} qwen3_layer;

typedef struct qwen3_model {
    qwen3_config cfg;
    weight_matrix embed_tokens;  /* (vocab_size, dim) */
    qwen3_layer *layers;         /* (n_layers) */
    const float *norm;           /* (dim) final RMSNorm */
    weight_matrix lm_head;       /* (vocab_size, dim); = embed_tokens when tied */
    void **owned;                /* f32 copies of norm vectors, of any misaligned tensor, packed matrices */
    int32_t n_owned;
} qwen3_model;

/* Binds every weight of cfg's shape from a GGUF (GGUF names) or a safetensors set (HF names): checks
 * presence, shape and type, and reports the first problem by tensor name. No weight bytes are read,
 * except norm vectors, which are converted to f32 copies. */
tandem_status qwen3_bind_gguf(qwen3_model *m, const gguf_file *f);
tandem_status qwen3_bind_safetensors(qwen3_model *m, const st_set *s, const char *dir);
/* Copies every matrix the kernels multiply faster packed (weight_pack) into that layout, once, all into one
 * block on huge pages (streamed_alloc), and lets the originals' pages leave the resident set (a model then holds
 * its weights once; nothing reads those ranges again: a mapped file's pages would fault back from the file, a
 * misaligned tensor's copy from binding is no longer referenced). Binding alone reads no weights (tandem info
 * stays instant): runtimes call this before computing. */
tandem_status qwen3_pack_weights(qwen3_model *m, thread_pool *pool);
void qwen3_model_release(qwen3_model *m);  /* frees what bind allocated; not the mapped files */

/* A weight that is NaN or infinite: the tensor (its name in the file), its layer (-1 outside the layers), where. */
typedef struct qwen3_bad_weight {
    const char *name;  /* NULL when every weight is finite; borrowed from the file */
    int32_t layer;
    int64_t row, col;  /* row: the outer dimensions flattened */
    float value;
} qwen3_bad_weight;
/* Reads every weight of f (or, when f is NULL, s) and names the non-finite one that comes first in the forward
 * pass. Slow (it dequantizes the whole model): the diagnosis when logits are not finite, never a load step. */
tandem_status qwen3_find_nonfinite_weight(const gguf_file *f, const st_set *s, qwen3_bad_weight *bad);

/* One sequence: KV cache and activation buffers, sized once so that a forward pass never allocates. */
typedef struct qwen3_state {
    int32_t n_ctx, n_batch, n_threads;
    tandem_type kv_type;  /* of the cache: F16 (half the memory and attention reads) or F32 (the exact path) */
    void *k_cache;    /* (n_layers, n_kv_heads, n_ctx, head_dim) of kv_type: one head's keys are contiguous */
    void *v_cache;    /* (n_layers, n_kv_heads, n_ctx, head_dim) */
    float *x;         /* (n_batch, dim) residual stream */
    float *xb;        /* (n_batch, dim) normed input of a sub-block */
    float *xb2;       /* (n_batch, dim) output of a sub-block before the residual add */
    float *q;         /* (n_batch, n_heads*head_dim) */
    float *k;         /* (n_batch, n_kv_heads*head_dim) */
    float *v;         /* (n_batch, n_kv_heads*head_dim) */
    float *att;       /* (n_batch, n_heads*head_dim) attention output, concatenated heads */
    float *hb;        /* (n_batch, ffn_dim) gate, then silu(gate)·up */
    float *hb2;       /* (n_batch, ffn_dim) up */
    float *attention_scratch;  /* (n_threads, attention_tile, n_heads / n_kv_heads, ATTENTION_SCRATCH_PER_QUERY) */
    int32_t attention_tile;    /* most tokens an attention task takes: min(n_batch, ATTENTION_TILE_TOKENS) */
    float *scratch;   /* (n_threads, max(dim, ffn_dim, n_heads*head_dim)) dequantized weight rows */
    matmul_scratch mm;  /* scratch above as .rows, .act (n_batch, max cols / 32) activations quantized to 8 bits
                         * (its own allocation), and whether to use the exact path */
    float *inv_freq;  /* (head_dim/2) rotary frequencies */
    float *rope;      /* (n_batch, head_dim) each position's rotation (rope_angles), made once per forward pass */
    float *logits;    /* (vocab_size) last position's logits */
    void *block;      /* the single allocation everything above points into */
    /* Optional, caller-owned, NULL by default: (n_layers+1, n, dim) receives the residual stream entering each layer
     * and, last, leaving the final layer, for the n tokens of each forward pass (layer-importance analysis). */
    float *layer_states;
} qwen3_state;

/* exact: multiply quantized weights by f32 activations (the reference path) rather than 8-bit ones.
 * kv_type: TANDEM_TYPE_F16 or TANDEM_TYPE_F32, how the cache keeps keys and values. */
tandem_status qwen3_state_init(const qwen3_model *m, int32_t n_ctx, int32_t n_batch, int32_t n_threads, bool exact,
                               tandem_type kv_type, qwen3_state **out);
void qwen3_state_free(qwen3_state *s);

/* Evaluates n ≤ n_batch tokens at positions pos0 … pos0+n-1 (pos0+n ≤ n_ctx), writing their keys and
 * values into the cache. logits: (n, vocab_size) receives every position's logits, or NULL to compute
 * only the last position's into s->logits. */
void qwen3_forward(const qwen3_model *m, qwen3_state *s, thread_pool *pool, const int32_t *ids, int32_t n,
                   int32_t pos0, float *logits);

#endif
