/* qwen3.c — THE Qwen3 forward pass, read top to bottom, and the per-sequence state it runs in.
 * Only kernel calls: no intrinsics, no file formats. Mirrors transformers' modeling_qwen3.py.
 *
 *   ids ─ embed_tokens ─┬─ for each layer ──────────────────────────────────────────────────┐
 *                       │  h = RMSNorm(x, input_layernorm)                                    │
 *                       │  q,k,v = h·Wqᵀ, h·Wkᵀ, h·Wvᵀ                                         │
 *                       │  q,k = per-head RMSNorm(q_norm / k_norm), then RoPE (rotate-half)   │
 *                       │  k,v → KV cache at positions pos0…pos0+n-1                          │
 *                       │  x += o_proj(causal GQA attention(q, K, V))                         │
 *                       │  x += down_proj(silu(gate_proj(h')) ⊙ up_proj(h')),                 │
 *                       │       h' = RMSNorm(x, post_attention_layernorm)                     │
 *                       └─ logits = lm_head(RMSNorm(x, norm)) ──────────────────────────────────┘
 *
 * n tokens go through each matrix together (prefill, and verification of draft tokens); each token
 * attends to the cache up to its own position, so one pass over k tokens equals k single steps. */
#include <math.h>
#include <stdlib.h>

#include "qwen3.h"

/* An attention task is up to this many consecutive tokens of one KV head: they read that head's cached keys and
 * values once, together (kernels.h). */
enum { ATTENTION_TILE_TOKENS = 16 };

/* ---- state ---- */

void qwen3_state_free(qwen3_state *s) {
    if (!s) return;
    free(s->block);
    free(s->mm.act);
    free(s);
}

tandem_status qwen3_state_init(const qwen3_model *m, int32_t n_ctx, int32_t n_batch, int32_t n_threads, bool exact,
                               tandem_type kv_type, qwen3_state **out) {
    const qwen3_config *c = &m->cfg;
    *out = NULL;
    if (n_ctx < 1 || n_batch < 1 || n_threads < 1)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "qwen3_state_init: n_ctx %d, n_batch %d, n_threads %d must be ≥ 1",
                           n_ctx, n_batch, n_threads);
    TANDEM_ASSERT(kv_type == TANDEM_TYPE_F16 || kv_type == TANDEM_TYPE_F32);  /* tandem_ctx_init checks users' */
    qwen3_state *s = calloc(1, sizeof *s);
    if (!s) return tandem_fail(TANDEM_ERR_NO_MEMORY, "qwen3_state_init: out of memory");
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    s->n_threads = n_threads;
    s->kv_type = kv_type;
    s->attention_tile = n_batch < ATTENTION_TILE_TOKENS ? n_batch : ATTENTION_TILE_TOKENS;

    const uint64_t q_dim = (uint64_t)c->n_heads * c->head_dim, kv_dim = (uint64_t)c->n_kv_heads * c->head_dim;
    uint64_t max_cols = (uint64_t)c->dim;
    if ((uint64_t)c->ffn_dim > max_cols) max_cols = (uint64_t)c->ffn_dim;
    if (q_dim > max_cols) max_cols = q_dim;
    const uint64_t cache_values = (uint64_t)c->n_layers * kv_dim * (uint64_t)n_ctx;
    const uint64_t cache = kv_type == TANDEM_TYPE_F16 ? (cache_values + 1) / 2 : cache_values;  /* in floats */
    const uint64_t B = (uint64_t)n_batch;
    /* One allocation carved into named buffers (sizes in floats, in the order of the struct). */
    const uint64_t group = (uint64_t)(c->n_heads / c->n_kv_heads);  /* query heads per KV head */
    const uint64_t sizes[] = {cache, cache, B * c->dim, B * c->dim, B * c->dim, B * q_dim, B * kv_dim, B * kv_dim,
                              B * q_dim, B * c->ffn_dim, B * c->ffn_dim,
                              (uint64_t)n_threads * s->attention_tile * group * ATTENTION_SCRATCH_PER_QUERY,
                              (uint64_t)n_threads * max_cols, (uint64_t)c->head_dim / 2, B * c->head_dim,
                              (uint64_t)c->vocab_size};
    float *k_cache, *v_cache;
    float **slots[] = {&k_cache, &v_cache, &s->x, &s->xb, &s->xb2, &s->q, &s->k, &s->v, &s->att,
                       &s->hb, &s->hb2, &s->attention_scratch, &s->scratch, &s->inv_freq, &s->rope, &s->logits};
    _Static_assert(sizeof sizes / sizeof sizes[0] == sizeof slots / sizeof slots[0], "one size per buffer");
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint64_t padded = (sizes[i] + 15) & ~(uint64_t)15;  /* 64-byte aligned starts */
        if (!size_add_ok(total, padded, &total)) goto too_big;
    }
    uint64_t bytes;
    if (!size_mul_ok(total, sizeof(float), &bytes) || bytes > SIZE_MAX / 2) goto too_big;
    /* On huge pages (streamed_alloc) like the packed weights: a decoding step reads the whole cache once more per
     * token, and from 4 KiB pages that read took a TLB miss every 64 lines (bench/README.md, "Long prompts:
     * decoding after 4-8K tokens of context"). The cost: a head's first key makes its 2 MiB resident, so the
     * cache of n_ctx positions is resident from the first tokens on, as a cache cleared at allocation would be. */
    s->block = streamed_alloc((size_t)bytes);
    const size_t act_bytes = (size_t)n_batch * (size_t)(max_cols / 32 + 1) * sizeof(act_block);
    s->mm.act = aligned_alloc(64, (act_bytes + 63) & ~(size_t)63);
    if (!s->block || !s->mm.act) {
        qwen3_state_free(s);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "qwen3_state_init: cannot allocate %.1f MiB for n_ctx %d",
                           (double)bytes / (1 << 20), n_ctx);
    }
    float *p = s->block;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *slots[i] = p;
        p += (sizes[i] + 15) & ~(uint64_t)15;
    }
    s->k_cache = k_cache;
    s->v_cache = v_cache;
    s->mm.rows = s->scratch;
    s->mm.exact = exact;
    rope_inv_freq(s->inv_freq, c->head_dim, c->rope_theta);
    *out = s;
    return TANDEM_OK;
too_big:
    qwen3_state_free(s);
    return tandem_fail(TANDEM_ERR_NO_MEMORY, "qwen3_state_init: n_ctx %d needs more memory than can be addressed", n_ctx);
}

/* ---- attention over the cache, one task per (tile of consecutive tokens, KV head) ---- */

typedef struct attention_job {
    const qwen3_model *m;
    qwen3_state *s;
    int32_t layer, n, pos0, tile, n_tiles;
} attention_job;

/* The cache element where a KV head's position 0 sits in this layer. Cache layout (layer, kv_head, pos, head_dim):
 * a head's keys are contiguous for attention. */
static size_t kv_head_start(const attention_job *job, const int kv_head) {
    const qwen3_config *c = &job->m->cfg;
    return ((size_t)job->layer * c->n_kv_heads + kv_head) * (size_t)job->s->n_ctx * c->head_dim;
}

/* One KV head's part of the pass's n tokens: Qwen3's QK-norm (RMSNorm over each head's vector, before the rotary
 * embedding) and RoPE on its query heads and its key, then its key and value into the cache. The heads are
 * independent, so the threads share this work (the main thread did it alone). */
static void prepare_kv_head(const attention_job *job, const int kv_head) {
    const qwen3_config *c = &job->m->cfg;
    const qwen3_layer *L = &job->m->layers[job->layer];
    qwen3_state *s = job->s;
    const int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    const int q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    const size_t head_start = kv_head_start(job, kv_head);
    for (int t = 0; t < job->n; t++) {
        float *q = s->q + (size_t)t * q_dim + (size_t)kv_head * group * hd;
        float *k = s->k + (size_t)t * kv_dim + (size_t)kv_head * hd;
        const float *v = s->v + (size_t)t * kv_dim + (size_t)kv_head * hd;
        const float *cos_sin = s->rope + (size_t)t * hd;
        for (int h = 0; h < group; h++) rmsnorm_forward(q + h * hd, q + h * hd, L->q_norm, hd, c->rms_eps);
        rmsnorm_forward(k, k, L->k_norm, hd, c->rms_eps);
        rope_forward(q, group, hd, cos_sin);
        rope_forward(k, 1, hd, cos_sin);
        const size_t off = head_start + (size_t)(job->pos0 + t) * hd;
        if (s->kv_type == TANDEM_TYPE_F16) {
            f32_to_f16_row((uint16_t *)s->k_cache + off, k, hd);
            f32_to_f16_row((uint16_t *)s->v_cache + off, v, hd);
        } else {
            memcpy((float *)s->k_cache + off, k, (size_t)hd * sizeof(float));
            memcpy((float *)s->v_cache + off, v, (size_t)hd * sizeof(float));
        }
    }
}

static void prepare_task(int task, int thread, void *arg) {
    prepare_kv_head(arg, task);
}

static void attention_task(int task, int thread, void *arg) {
    const attention_job *job = arg;
    const qwen3_config *c = &job->m->cfg;
    qwen3_state *s = job->s;
    /* the latest tokens, which see the most keys, first: the threads then finish together */
    const int tile = job->n_tiles - 1 - task / c->n_kv_heads, kv_head = task % c->n_kv_heads;
    /* With one tile per KV head this task is the head's only reader, so it prepares the head itself: no pass of
     * its own, and the query vectors are still in this core's cache when it attends. */
    if (job->n_tiles == 1) prepare_kv_head(job, kv_head);
    const int t0 = tile * job->tile, nt = job->n - t0 < job->tile ? job->n - t0 : job->tile;
    const int group = c->n_heads / c->n_kv_heads;  /* HF repeat_kv: consecutive query heads share a KV head */
    const int q_dim = c->n_heads * c->head_dim;
    const size_t head_offset = kv_head_start(job, kv_head) * tandem_type_size(s->kv_type);
    const size_t q_off = (size_t)t0 * q_dim + (size_t)kv_head * group * c->head_dim;
    float *scratch = s->attention_scratch + (size_t)thread * s->attention_tile * group * ATTENTION_SCRATCH_PER_QUERY;
    attention_forward(s->att + q_off, q_dim, s->q + q_off, q_dim, nt, group, (const uint8_t *)s->k_cache + head_offset,
                      (const uint8_t *)s->v_cache + head_offset, s->kv_type,
                      job->pos0 + t0 + 1 /* causal: keys 0 … own position */, c->head_dim,
                      1.0f / sqrtf((float)c->head_dim), scratch);
}

/* ---- the forward pass ---- */

void qwen3_forward(const qwen3_model *m, qwen3_state *s, thread_pool *pool, const int32_t *ids, int32_t n,
                   int32_t pos0, float *logits) {
    const qwen3_config *c = &m->cfg;
    const int dim = c->dim, hd = c->head_dim;
    TANDEM_ASSERT(n >= 1 && n <= s->n_batch && pos0 >= 0 && pos0 + n <= s->n_ctx);
    thread_pool_begin_burst(pool);  /* ~4 parallel-fors per layer: the workers stay awake between them */

    /* Attention tiles as long as allowed while there are 4 tasks per thread (a verification pass over 4 tokens
     * on 2 threads: one tile per KV head). */
    const int tiles_wanted = (4 * s->n_threads + c->n_kv_heads - 1) / c->n_kv_heads;
    int tile = (n + tiles_wanted - 1) / tiles_wanted;  /* ≥ 1 */
    if (tile > s->attention_tile) tile = s->attention_tile;
    attention_job attention = {m, s, 0, n, pos0, tile, (n + tile - 1) / tile};

    /* x = embed_tokens(ids); each position's rotary cos/sin, for all layers */
    for (int t = 0; t < n; t++) {
        TANDEM_ASSERT(ids[t] >= 0 && ids[t] < c->vocab_size);
        weight_row_dequantize(&m->embed_tokens, ids[t], s->x + (size_t)t * dim);
        rope_angles(s->rope + (size_t)t * hd, hd, pos0 + t, s->inv_freq);
    }

    for (int l = 0; l < c->n_layers; l++) {
        const qwen3_layer *L = &m->layers[l];
        attention.layer = l;
        if (s->layer_states) memcpy(s->layer_states + (size_t)l * n * dim, s->x, (size_t)n * dim * sizeof(float));

        /* ---- self-attention block: h = RMSNorm(x, input_layernorm) into xb, then q, k, v = h·Wᵀ ---- */
        float *const qkv_out[3] = {s->q, s->k, s->v};
        const weight_matrix *const qkv[3] = {&L->q_proj, &L->k_proj, &L->v_proj};
        matmul_normed_input(pool, qkv_out, s->xb, s->x, L->input_layernorm, c->rms_eps, qkv, 3, n, &s->mm);

        /* QK-norm, RoPE and the cache writes: inside the attention tasks when each KV head is one task (decoding,
         * verification), else a pass of their own before the tiles read earlier tiles' keys */
        if (attention.n_tiles > 1) thread_pool_run(pool, c->n_kv_heads, prepare_task, &attention);
        thread_pool_run(pool, attention.n_tiles * c->n_kv_heads, attention_task, &attention);

        matmul(pool, s->xb2, s->att, &L->o_proj, n, &s->mm);
        add_forward(s->x, s->xb2, (int64_t)n * dim);

        /* ---- MLP block: down_proj(silu(gate_proj(h)) * up_proj(h)), h = RMSNorm(x, post_attention_layernorm) ---- */
        float *const gate_up_out[2] = {s->hb, s->hb2};
        const weight_matrix *const gate_up[2] = {&L->gate_proj, &L->up_proj};
        matmul_normed_input(pool, gate_up_out, s->xb, s->x, L->post_attention_layernorm, c->rms_eps, gate_up, 2, n,
                            &s->mm);
        matmul_swiglu_input(pool, s->xb2, s->hb, s->hb, s->hb2, &L->down_proj, n, &s->mm);
        add_forward(s->x, s->xb2, (int64_t)n * dim);
    }

    if (s->layer_states)
        memcpy(s->layer_states + (size_t)c->n_layers * n * dim, s->x, (size_t)n * dim * sizeof(float));

    /* ---- final norm and output head: every position, or only the last ---- */
    const weight_matrix *const head = &m->lm_head;
    const int n_out = logits ? n : 1;  /* the last n_out positions */
    float *const out = logits ? logits : s->logits;
    matmul_normed_input(pool, &out, s->xb, s->x + (size_t)(n - n_out) * dim, m->norm, c->rms_eps, &head, 1, n_out,
                        &s->mm);
    thread_pool_end_burst(pool);
}
