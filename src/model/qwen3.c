/* qwen3.c — THE Qwen3 forward pass over a batch of tokens, read top to bottom, and the KV caches and scratch it
 * runs in.
 * Only kernel calls: no intrinsics, no file formats. Mirrors transformers' modeling_qwen3.py.
 *
 *   ids ─ embed_tokens ─┬─ for each layer ──────────────────────────────────────────────────┐
 *                       │  h = RMSNorm(x, input_layernorm)                                    │
 *                       │  q,k,v = h·Wqᵀ, h·Wkᵀ, h·Wvᵀ                                         │
 *                       │  q,k = per-head RMSNorm(q_norm / k_norm), then RoPE (or M-RoPE)     │
 *                       │  k,v → each token's KV cache, at its row                            │
 *                       │  x += o_proj(causal GQA attention(q, K, V))                         │
 *                       │  x += down_proj(silu(gate_proj(h')) ⊙ up_proj(h')),                 │
 *                       │       h' = RMSNorm(x, post_attention_layernorm)                     │
 *                       │  Qwen3-VL, l < n_deepstack: x += DeepStack set l at image rows      │
 *                       └─ logits = lm_head(RMSNorm(x, norm)) ──────────────────────────────────┘
 *
 * (x starts as embed_tokens rows of the ids, or as embedding rows the batch brings.)
 * n tokens go through each matrix together (prefill, verification of draft tokens, several sequences); each
 * token attends to its own sequence's cache up to its own row, so one pass over k tokens equals k single steps,
 * and one pass over several sequences equals a pass per sequence. */
#include <math.h>
#include <stdlib.h>

#include "qwen3.h"

/* An attention task is up to this many consecutive tokens of one run (one sequence, consecutive cache rows) and one
 * KV head: they read that head's cached keys and values once, together (kernels.h). */
enum { ATTENTION_TILE_TOKENS = 16 };

/* Tokens t0 … t0+nt−1 of a pass, one run's, attending together. */
typedef struct qwen3_attention_tile {
    int32_t t0, nt;
    int32_t n_keys; /* the last token's: its row + 1 */
} qwen3_attention_tile;

/* A buffer of a block carved by carve_block: its size in floats, and the pointer (of any object type) that receives
 * its start. */
typedef struct block_part {
    uint64_t floats;
    void *start;
} block_part;

/* One allocation on huge pages (streamed_alloc) carved into parts with 64-byte aligned starts; NULL when too big or
 * out of memory. On huge pages: a decoding step reads the whole KV cache once more per token, and from 4 KiB pages
 * that read took a TLB miss every 64 lines (bench/README.md, "Long prompts: decoding after 4-8K tokens of context").
 * The cost: a head's first key makes its 2 MiB resident, so a cache of n_ctx rows is resident from the first tokens
 * on, as a cache cleared at allocation would be. */
static void *carve_block(const block_part *parts, size_t n_parts, uint64_t *bytes) {
    uint64_t total = 0;
    *bytes = 0;
    for (size_t i = 0; i < n_parts; i++) {
        uint64_t padded = (parts[i].floats + 15) & ~(uint64_t)15;
        if (!size_add_ok(total, padded, &total)) return NULL;
    }
    if (!size_mul_ok(total, sizeof(float), bytes) || *bytes > SIZE_MAX / 2) return NULL;
    float *block = streamed_alloc((size_t)*bytes), *p = block;
    if (!block) return NULL;
    for (size_t i = 0; i < n_parts; i++) {
        memcpy(parts[i].start, &(void *){p}, sizeof(void *)); /* object pointers share one representation */
        p += (parts[i].floats + 15) & ~(uint64_t)15;
    }
    return block;
}

/* ---- the KV cache of one sequence ---- */

void qwen3_kv_cache_free(qwen3_kv_cache *c) {
    if (!c) return;
    free(c->block);
    free(c);
}

uint64_t qwen3_kv_cache_bytes(const qwen3_config *c, int32_t n_ctx, tandem_type kv_type) {
    return 2 * (uint64_t)c->n_layers * c->n_kv_heads * (uint64_t)n_ctx * kv_row_bytes(kv_type, c->head_dim);
}

tandem_status qwen3_kv_cache_init(const qwen3_model *m, int32_t n_ctx, tandem_type kv_type, qwen3_kv_cache **out) {
    const qwen3_config *c = &m->cfg;
    *out = NULL;
    if (n_ctx < 1) return tandem_fail(TANDEM_ERR_INVALID_ARG, "qwen3_kv_cache_init: n_ctx %d must be ≥ 1", n_ctx);
    TANDEM_ASSERT(!kv_type_problem(kv_type, c->head_dim)); /* tandem_ctx_init checks users' */
    qwen3_kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return tandem_fail(TANDEM_ERR_NO_MEMORY, "qwen3_kv_cache_init: out of memory");
    kv->n_ctx = n_ctx;
    kv->kv_type = kv_type;
    const uint64_t floats = (qwen3_kv_cache_bytes(c, n_ctx, kv_type) / 2 + sizeof(float) - 1) / sizeof(float);
    const block_part parts[] = {{floats, &kv->k}, {floats, &kv->v}};
    uint64_t bytes;
    kv->block = carve_block(parts, 2, &bytes);
    if (!kv->block) {
        qwen3_kv_cache_free(kv);
        return bytes ? tandem_fail(TANDEM_ERR_NO_MEMORY, "qwen3_kv_cache_init: cannot allocate %.1f MiB for n_ctx %d",
                                   (double)bytes / (1 << 20), n_ctx)
                     : tandem_fail(TANDEM_ERR_NO_MEMORY,
                                   "qwen3_kv_cache_init: n_ctx %d needs more memory than can be addressed", n_ctx);
    }
    *out = kv;
    return TANDEM_OK;
}

/* ---- the scratch a pass computes in ---- */

void qwen3_scratch_free(qwen3_scratch *s) {
    if (!s) return;
    free(s->block);
    free(s->mm.act);
    free(s);
}

tandem_status qwen3_scratch_init(const qwen3_model *m, int32_t n_batch, int32_t n_threads, bool exact,
                                 qwen3_scratch **out) {
    const qwen3_config *c = &m->cfg;
    *out = NULL;
    if (n_batch < 1 || n_threads < 1)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "qwen3_scratch_init: n_batch %d, n_threads %d must be ≥ 1", n_batch,
                           n_threads);
    qwen3_scratch *s = calloc(1, sizeof *s);
    if (!s) return tandem_fail(TANDEM_ERR_NO_MEMORY, "qwen3_scratch_init: out of memory");
    s->n_batch = n_batch;
    s->n_threads = n_threads;
    s->attention_tile = n_batch < ATTENTION_TILE_TOKENS ? n_batch : ATTENTION_TILE_TOKENS;

    const uint64_t q_dim = (uint64_t)c->n_heads * c->head_dim, kv_dim = (uint64_t)c->n_kv_heads * c->head_dim;
    uint64_t max_cols = (uint64_t)c->dim;
    if ((uint64_t)c->ffn_dim > max_cols) max_cols = (uint64_t)c->ffn_dim;
    if (q_dim > max_cols) max_cols = q_dim;
    const uint64_t B = (uint64_t)n_batch;
    const uint64_t group = (uint64_t)(c->n_heads / c->n_kv_heads);  /* query heads per KV head */
    const uint64_t float_bytes = sizeof(float);                     /* sizes below in floats */
    const block_part parts[] = {
        {B * c->dim, &s->x},
        {B * c->dim, &s->xb},
        {B * c->dim, &s->xb2},
        {B * q_dim, &s->q},
        {B * kv_dim, &s->k},
        {B * kv_dim, &s->v},
        {B * q_dim, &s->att},
        {B * c->ffn_dim, &s->hb},
        {B * c->ffn_dim, &s->hb2},
        {(uint64_t)n_threads * attention_scratch_floats(s->attention_tile * (int)group, c->head_dim),
         &s->attention_scratch},
        {B * ((sizeof(qwen3_attention_tile) + float_bytes - 1) / float_bytes), &s->tiles},
        {(uint64_t)n_threads * max_cols, &s->scratch},
        {(uint64_t)c->head_dim / 2, &s->inv_freq},
        {B * c->head_dim, &s->rope},
        {B * ((sizeof(qwen3_kv_cache *) + float_bytes - 1) / float_bytes), &s->sequence_cache},
        {B, &s->sequence_row},
        {B, &s->sequence_logits},
    };
    uint64_t bytes;
    s->block = carve_block(parts, sizeof parts / sizeof parts[0], &bytes);
    const size_t act_bytes = (size_t)n_batch * (size_t)(max_cols / 32 + 1) * sizeof(act_block);
    s->mm.act = aligned_alloc(64, (act_bytes + 63) & ~(size_t)63);
    if (!s->block || !s->mm.act) {
        qwen3_scratch_free(s);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "qwen3_scratch_init: cannot allocate %.1f MiB for n_batch %d",
                           (double)bytes / (1 << 20), n_batch);
    }
    s->mm.rows = s->scratch;
    s->mm.exact = exact;
    rope_inv_freq(s->inv_freq, c->head_dim, c->rope_theta);
    *out = s;
    return TANDEM_OK;
}

qwen3_batch qwen3_sequence_batch(qwen3_scratch *s, qwen3_kv_cache *cache, const int32_t *ids, int32_t n, int32_t pos0,
                                 bool last_only) {
    TANDEM_ASSERT(n >= 1 && n <= s->n_batch);
    for (int32_t t = 0; t < n; t++) {
        s->sequence_cache[t] = cache;
        s->sequence_row[t] = pos0 + t;
        s->sequence_logits[t] = !last_only || t == n - 1;
    }
    return (qwen3_batch){.n = n,
                         .ids = ids,
                         .cache = s->sequence_cache,
                         .row = s->sequence_row,
                         .n_pos = 1,
                         .pos = s->sequence_row,
                         .logits = s->sequence_logits};
}

/* ---- attention over the caches, one task per (tile of a run's tokens, KV head) ---- */

typedef struct attention_job {
    const qwen3_model *m;
    qwen3_scratch *s;
    const qwen3_batch *b;
    int32_t layer, n_tiles;
    bool prepare_in_task; /* each run is one tile, and no two runs share a cache */
} attention_job;

/* The byte offset where a KV head's row 0 sits in this layer of a cache. Cache layout (layer, kv_head, row,
 * head_dim): a head's keys are contiguous for attention. */
static size_t kv_head_start(const attention_job *job, const qwen3_kv_cache *cache, const int kv_head) {
    const qwen3_config *c = &job->m->cfg;
    return ((size_t)job->layer * c->n_kv_heads + kv_head) * (size_t)cache->n_ctx *
           kv_row_bytes(cache->kv_type, c->head_dim);
}

/* One KV head's part of tokens t0 … t1−1: Qwen3's QK-norm (RMSNorm over each head's vector, before the rotary
 * embedding) and RoPE on its query heads and its key, then its key and value into the token's cache row. The heads
 * are independent, so the threads share this work (the main thread did it alone). */
static void prepare_kv_head(const attention_job *job, const int kv_head, const int t0, const int t1) {
    const qwen3_config *c = &job->m->cfg;
    const qwen3_layer *L = &job->m->layers[job->layer];
    qwen3_scratch *s = job->s;
    const int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    const int q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    for (int t = t0; t < t1; t++) {
        float *q = s->q + (size_t)t * q_dim + (size_t)kv_head * group * hd;
        float *k = s->k + (size_t)t * kv_dim + (size_t)kv_head * hd;
        const float *v = s->v + (size_t)t * kv_dim + (size_t)kv_head * hd;
        const float *cos_sin = s->rope + (size_t)t * hd;
        for (int h = 0; h < group; h++) rmsnorm_forward(q + h * hd, q + h * hd, L->q_norm, hd, c->rms_eps);
        rmsnorm_forward(k, k, L->k_norm, hd, c->rms_eps);
        rope_forward(q, group, hd, cos_sin);
        rope_forward(k, 1, hd, cos_sin);
        const qwen3_kv_cache *cache = job->b->cache[t];
        const size_t off = kv_head_start(job, cache, kv_head) +
                           (size_t)job->b->row[t] * kv_row_bytes(cache->kv_type, hd);
        kv_store_row(cache->kv_type, (uint8_t *)cache->k + off, k, hd);
        kv_store_row(cache->kv_type, (uint8_t *)cache->v + off, v, hd);
    }
}

static void prepare_task(int task, int thread, void *arg) {
    const attention_job *job = arg;
    prepare_kv_head(job, task, 0, job->b->n);
}

static void attention_task(int task, int thread, void *arg) {
    const attention_job *job = arg;
    const qwen3_config *c = &job->m->cfg;
    qwen3_scratch *s = job->s;
    const qwen3_attention_tile *tile = &s->tiles[task / c->n_kv_heads];
    const int kv_head = task % c->n_kv_heads, t0 = tile->t0, nt = tile->nt;
    /* With one tile per run this task is the only reader of the rows it writes, so it prepares them itself: no pass
     * of its own, and the query vectors are still in this core's cache when it attends. */
    if (job->prepare_in_task) prepare_kv_head(job, kv_head, t0, t0 + nt);
    const qwen3_kv_cache *cache = job->b->cache[t0];
    const int group = c->n_heads / c->n_kv_heads;  /* HF repeat_kv: consecutive query heads share a KV head */
    const int q_dim = c->n_heads * c->head_dim;
    const size_t head_offset = kv_head_start(job, cache, kv_head);
    const size_t q_off = (size_t)t0 * q_dim + (size_t)kv_head * group * c->head_dim;
    float *scratch = s->attention_scratch +
                     (size_t)thread * attention_scratch_floats(s->attention_tile * group, c->head_dim);
    attention_forward(s->att + q_off, q_dim, s->q + q_off, q_dim, nt, group, (const uint8_t *)cache->k + head_offset,
                      (const uint8_t *)cache->v + head_offset, cache->kv_type,
                      job->b->row[t0] + 1 /* causal: rows 0 … own row */, c->head_dim, 1.0f / sqrtf((float)c->head_dim),
                      scratch);
}

/* The tiles that read the most keys first: the threads then finish together. */
static int tile_order(const void *a, const void *b) {
    const qwen3_attention_tile *x = a, *y = b;
    if (x->n_keys != y->n_keys) return x->n_keys < y->n_keys ? 1 : -1;
    return (x->t0 < y->t0) - (x->t0 > y->t0);
}

/* Splits b's runs into tiles (s->tiles, in the order the tasks take them); returns their count, and whether each
 * run is one tile of its own cache (then the attention tasks prepare their keys themselves). */
static int plan_attention(const qwen3_config *c, qwen3_scratch *s, const qwen3_batch *b, bool *prepare_in_task) {
    /* Tiles as long as allowed while there are 4 tasks per thread (a verification pass over 4 tokens on 2 threads:
     * one tile per KV head). */
    const int n = b->n, tiles_wanted = (4 * s->n_threads + c->n_kv_heads - 1) / c->n_kv_heads;
    int tile = (n + tiles_wanted - 1) / tiles_wanted;  /* ≥ 1 */
    if (tile > s->attention_tile) tile = s->attention_tile;
    int n_tiles = 0, n_runs = 0;
    bool caches_distinct = true;
    for (int t0 = 0, t1; t0 < n; t0 = t1) {
        for (t1 = t0 + 1; t1 < n && b->cache[t1] == b->cache[t0] && b->row[t1] == b->row[t1 - 1] + 1;) t1++;
        for (int r = 0; r < t0 && caches_distinct; r++) caches_distinct = b->cache[r] != b->cache[t0];
        n_runs++;
        for (int u = t0; u < t1; u += tile) {
            const int nt = t1 - u < tile ? t1 - u : tile;
            s->tiles[n_tiles++] = (qwen3_attention_tile){u, nt, b->row[u] + nt};
        }
    }
    *prepare_in_task = n_tiles == n_runs && caches_distinct;
    qsort(s->tiles, (size_t)n_tiles, sizeof *s->tiles, tile_order);
    return n_tiles;
}

/* ---- the forward pass ---- */

void qwen3_forward(const qwen3_model *m, qwen3_scratch *s, thread_pool *pool, const qwen3_batch *b, float *logits) {
    const qwen3_config *c = &m->cfg;
    const int dim = c->dim, hd = c->head_dim, n = b->n;
    TANDEM_ASSERT(n >= 1 && n <= s->n_batch && (b->ids || b->embd));
    TANDEM_ASSERT(b->n_pos == 1 || b->n_pos == 3);
    thread_pool_begin_burst(pool);  /* ~4 parallel-fors per layer: the workers stay awake between them */

    /* x = each token's embedding row; its rotary cos/sin, for all layers */
    for (int t = 0; t < n; t++) {
        TANDEM_ASSERT(b->row[t] >= 0 && b->row[t] < b->cache[t]->n_ctx);
        float *x = s->x + (size_t)t * dim;
        if (b->ids && b->ids[t] != -1) {
            TANDEM_ASSERT(b->ids[t] >= 0 && b->ids[t] < c->vocab_size);
            weight_row_dequantize(&m->embed_tokens, b->ids[t], x);
        } else {
            TANDEM_ASSERT(b->embd);
            memcpy(x, b->embd + (size_t)t * dim, (size_t)dim * sizeof(float));
        }
        if (b->n_pos == 3) /* Qwen3-VL: each frequency takes the t, h or w component (interleaved M-RoPE) */
            rope_angles_mrope(s->rope + (size_t)t * hd, hd, b->pos + (size_t)t * 3, c->rope_sections, s->inv_freq);
        else rope_angles(s->rope + (size_t)t * hd, hd, b->pos[t], s->inv_freq);
    }
    attention_job attention = {m, s, b, 0, 0, false};
    attention.n_tiles = plan_attention(c, s, b, &attention.prepare_in_task);

    for (int l = 0; l < c->n_layers; l++) {
        const qwen3_layer *L = &m->layers[l];
        attention.layer = l;
        if (s->layer_states) memcpy(s->layer_states + (size_t)l * n * dim, s->x, (size_t)n * dim * sizeof(float));

        /* ---- self-attention block: h = RMSNorm(x, input_layernorm) into xb, then q, k, v = h·Wᵀ ---- */
        float *const qkv_out[3] = {s->q, s->k, s->v};
        const weight_matrix *const qkv[3] = {&L->q_proj, &L->k_proj, &L->v_proj};
        matmul_normed_input(pool, qkv_out, s->xb, s->x, L->input_layernorm, c->rms_eps, qkv, 3, n, &s->mm);

        /* QK-norm, RoPE and the cache writes: inside the attention tasks when each run is one task per KV head
         * (decoding, verification), else a pass of their own before the tiles read earlier tiles' keys */
        if (!attention.prepare_in_task) thread_pool_run(pool, c->n_kv_heads, prepare_task, &attention);
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

        /* ---- DeepStack (Qwen3-VL): the vision tower's feature set l joins the image tokens' residual stream ---- */
        if (b->deepstack && l < c->n_deepstack)
            for (int t = 0; t < n; t++)
                if (!b->ids || b->ids[t] == -1)
                    add_forward(s->x + (size_t)t * dim, b->deepstack + ((size_t)l * n + t) * dim, dim);
    }

    if (s->layer_states)
        memcpy(s->layer_states + (size_t)c->n_layers * n * dim, s->x, (size_t)n * dim * sizeof(float));

    /* ---- final norm and output head for the tokens that want logits, gathered to the front of x ---- */
    int n_out = n;
    if (b->logits) {
        n_out = 0;
        for (int t = 0; t < n; t++)
            if (b->logits[t]) {
                if (n_out != t) memcpy(s->x + (size_t)n_out * dim, s->x + (size_t)t * dim, (size_t)dim * sizeof(float));
                n_out++;
            }
    }
    if (n_out > 0) {
        TANDEM_ASSERT(logits);
        const weight_matrix *const head = &m->lm_head;
        matmul_normed_input(pool, &logits, s->xb, s->x, m->norm, c->rms_eps, &head, 1, n_out, &s->mm);
    }
    thread_pool_end_burst(pool);
}
