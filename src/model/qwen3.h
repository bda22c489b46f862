/* qwen3.h — the Qwen3 dense model inside tandem: hyperparameters, weights bound to mapped files, a sequence's KV
 * cache, the activation scratch, and the forward pass over a batch of tokens. Depends on kernels, io and base. */
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
    /* Qwen3-VL's text model (zero for Qwen3): rotary frequencies per position axis (t, h, w), interleaved as in
     * transformers' apply_interleaved_mrope, and the number of first layers after which a DeepStack feature set
     * is added at the image rows. */
    int32_t rope_sections[3];
    int32_t n_deepstack;
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

/* One sequence's KV cache: keys and values of rows 0 … n_ctx−1, one row per token the sequence has evaluated.
 * Nothing else: the buffers a pass computes in are a qwen3_scratch, shared by every sequence of a model. */
typedef struct qwen3_kv_cache {
    int32_t n_ctx;       /* rows */
    tandem_type kv_type; /* F16 (half the memory and attention reads), Q8_0 (~0.53 of F16) or F32 (the exact path) */
    void *k;             /* (n_layers, n_kv_heads, n_ctx) rows of head_dim values as kv_type (kv_row_bytes each):
                            one head's keys are contiguous */
    void *v;             /* (n_layers, n_kv_heads, n_ctx, head_dim) */
    void *block;         /* the single allocation k and v point into */
} qwen3_kv_cache;

/* kv_type: one kv_type_problem accepts for the model's head_dim (F16, F32 or Q8_0). */
tandem_status qwen3_kv_cache_init(const qwen3_model *m, int32_t n_ctx, tandem_type kv_type, qwen3_kv_cache **out);
void qwen3_kv_cache_free(qwen3_kv_cache *c);
/* Bytes of the keys and values of a cache of n_ctx rows (what qwen3_kv_cache_init allocates, before rounding up to
 * whole pages): the unit of an engine's KV budget. */
uint64_t qwen3_kv_cache_bytes(const qwen3_config *c, int32_t n_ctx, tandem_type kv_type);

/* What a forward pass computes in, sized once for up to n_batch tokens so that a pass never allocates; it holds
 * nothing between passes, so one scratch serves any sequence (any cache) of its model, one pass at a time. */
typedef struct qwen3_scratch {
    int32_t n_batch, n_threads;
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
    struct qwen3_attention_tile *tiles; /* (n_batch) the pass's attention tiles (qwen3.c) */
    float *scratch;   /* (n_threads, max(dim, ffn_dim, n_heads*head_dim)) dequantized weight rows */
    matmul_scratch mm;  /* scratch above as .rows, .act (n_batch, max cols / 32) activations quantized to 8 bits
                         * (its own allocation), and whether to use the exact path */
    float *inv_freq;  /* (head_dim/2) rotary frequencies */
    float *rope;      /* (n_batch, head_dim) each token's rotation (rope_angles), made once per forward pass */
    /* (n_batch) each: the per-token arrays of qwen3_sequence_batch's batches (its rows are its positions) */
    qwen3_kv_cache **sequence_cache;
    int32_t *sequence_row;
    bool *sequence_logits;
    void *block; /* the single allocation the buffers above point into */
    /* Optional, caller-owned, NULL by default: (n_layers+1, n, dim) receives the residual stream entering each layer
     * and, last, leaving the final layer, for the n tokens of each forward pass (layer-importance analysis). */
    float *layer_states;
} qwen3_scratch;

/* exact: multiply quantized weights by f32 activations (the reference path) rather than 8-bit ones. */
tandem_status qwen3_scratch_init(const qwen3_model *m, int32_t n_batch, int32_t n_threads, bool exact,
                                 qwen3_scratch **out);
void qwen3_scratch_free(qwen3_scratch *s);

/* The tokens of one forward pass, of one sequence or several. Token t (0 ≤ t < n) is
 *   - its input: ids[t], or row t of embd (an image's embedding, say) when ids is NULL or ids[t] is −1;
 *   - its sequence: cache[t], which receives its key and value at row[t] (< cache[t]->n_ctx). It attends to rows
 *     0 … row[t] of that cache and nothing else: causal within its sequence, blind to the others;
 *   - its rotary position: pos[t·n_pos … t·n_pos+n_pos−1]. Text has n_pos = 1 (usually pos = row); n_pos = 3 gives
 *     Qwen3-VL's (temporal, height, width) components, rotated by interleaved M-RoPE over cfg.rope_sections (three
 *     equal components rotate as the one position would);
 *   - with deepstack (Qwen3-VL): after layer j < cfg.n_deepstack, row t of feature set j is added to its residual
 *     stream when its input is an embedding row (an image token), as transformers' DeepStack does.
 * Tokens of one sequence at consecutive rows, consecutive in the batch, form a run: a run's tokens read the cache
 * together. Two tokens must not write the same row of one cache; a row is read only by passes after the one that
 * wrote it or by the later rows of its own pass. */
typedef struct qwen3_batch {
    int32_t n;
    const int32_t *ids;           /* (n) or NULL */
    const float *embd;            /* (n, dim) or NULL */
    qwen3_kv_cache *const *cache; /* (n) */
    const int32_t *row;           /* (n) */
    int32_t n_pos;                /* components of a position: 1, or 3 (M-RoPE) */
    const int32_t *pos;           /* (n, n_pos) */
    const float *deepstack;       /* (cfg.n_deepstack, n, dim) or NULL: no DeepStack features */
    const bool *logits;           /* (n) whose logits the pass computes, or NULL: every token's */
} qwen3_batch;

/* The batch of n ≤ s->n_batch tokens of one sequence: ids at rows and positions pos0 … pos0+n−1 of cache, with
 * every token's logits or (last_only) the last token's. Its arrays live in s, until the next such call. */
qwen3_batch qwen3_sequence_batch(qwen3_scratch *s, qwen3_kv_cache *cache, const int32_t *ids, int32_t n, int32_t pos0,
                                 bool last_only);

/* Evaluates the n ≤ s->n_batch tokens of b, writing their keys and values into their caches. logits: (number of
 * tokens b->logits selects, vocab_size) receives those tokens' logits, in batch order. */
void qwen3_forward(const qwen3_model *m, qwen3_scratch *s, thread_pool *pool, const qwen3_batch *b, float *logits);

#endif
