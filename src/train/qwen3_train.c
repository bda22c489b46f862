/* qwen3_train.c — the Qwen3 training pass: parameter table and blocks, forward with saved activations, and the
 * backward pass written as the forward read in reverse. Only train_ops calls; mirrors modeling_qwen3.py.
 *
 *   inputs ─ embed ─┬─ for each layer l ─────────────────────────────────────────────────────────┐
 *                   │  ln1 = RMSNorm(res[l]);  q,k,v = ln1·Wqᵀ, ln1·Wkᵀ, ln1·Wvᵀ                   │
 *                   │  q_rot,k_rot = RoPE(RMSNorm_head(q), RMSNorm_head(k));  atty = attn(q,k,v)  │
 *                   │  res_mid = res[l] + atty·Woᵀ                                                 │
 *                   │  ln2 = RMSNorm(res_mid);  res[l+1] = res_mid + down(silu(gate(ln2))·up(ln2)) │
 *                   └─ logits = lm_head(RMSNorm(res[L])) ─ cross-entropy(targets) ────────────────┘ */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "train.h"

/* ---- parameter table ---- */

static void add_tensor(train_model *m, qwen3_tensor kind, int layer, int64_t rows, int64_t cols) {
    train_tensor *t = &m->tensors[m->n_tensors++];
    qwen3_tensor_name(kind, layer, NAMING_GGUF, t->name, sizeof t->name);
    qwen3_tensor_name(kind, layer, NAMING_HF, t->hf_name, sizeof t->hf_name);
    t->n_dims = rows > 0 ? 2 : 1;
    t->shape[0] = rows > 0 ? rows : cols;
    t->shape[1] = rows > 0 ? cols : 0;
    t->numel = (size_t)(rows > 0 ? rows : 1) * (size_t)cols;
    t->offset = m->n_params;
    t->decay = rows > 0;
    m->n_params += t->numel;
}

static void build_table(train_model *m) {
    const qwen3_config *c = &m->cfg;
    const int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
    /* (rows, cols) of each block tensor, rows 0 for a vector; in the table's block order */
    const int64_t shapes[QWEN3_BLOCK_TENSORS][2] = {{0, c->dim},          {q_dim, c->dim},     {kv_dim, c->dim},
                                                    {kv_dim, c->dim},     {0, c->head_dim},    {0, c->head_dim},
                                                    {c->dim, q_dim},      {0, c->dim},         {c->ffn_dim, c->dim},
                                                    {c->ffn_dim, c->dim}, {c->dim, c->ffn_dim}};
    add_tensor(m, QWEN3_TOKEN_EMBD, -1, c->vocab_size, c->dim);
    for (int l = 0; l < c->n_layers; l++)
        for (int j = 0; j < QWEN3_BLOCK_TENSORS; j++)
            add_tensor(m, (qwen3_tensor)(QWEN3_ATTN_NORM + j), l, shapes[j][0], shapes[j][1]);
    add_tensor(m, QWEN3_OUTPUT_NORM, -1, 0, c->dim);
    if (!c->tied_embeddings) add_tensor(m, QWEN3_OUTPUT, -1, c->vocab_size, c->dim);
}

/* Named views of a block laid out by the table. */
static void point_weights(train_weights *w, train_layer_weights *layers, const train_model *m, float *base) {
    const train_tensor *t = m->tensors;
    int i = 0;
    w->embed_tokens = base + t[i++].offset;
    w->layers = layers;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        float **slots[QWEN3_BLOCK_TENSORS] = {&layers[l].input_layernorm, &layers[l].q_proj,
                                              &layers[l].k_proj,          &layers[l].v_proj,
                                              &layers[l].q_norm,          &layers[l].k_norm,
                                              &layers[l].o_proj,          &layers[l].post_attention_layernorm,
                                              &layers[l].gate_proj,       &layers[l].up_proj,
                                              &layers[l].down_proj};
        for (int j = 0; j < QWEN3_BLOCK_TENSORS; j++) *slots[j] = base + t[i++].offset;
    }
    w->norm = base + t[i++].offset;
    w->lm_head = m->cfg.tied_embeddings ? w->embed_tokens : base + t[i++].offset;
}

static float *alloc_floats(size_t n) {
    uint64_t bytes;
    if (!size_mul_ok(n, sizeof(float), &bytes) || bytes > SIZE_MAX / 2) return NULL;
    float *p = aligned_alloc(64, ((size_t)bytes + 63) & ~(size_t)63);
    if (p) memset(p, 0, (size_t)bytes);
    return p;
}

void train_model_free(train_model *m) {
    if (!m) return;
    free(m->tensors);
    free(m->params);
    free(m->grads);
    free(m->adam_m);
    free(m->adam_v);
    free(m->w.layers);
    free(m->g.layers);
    free(m->inv_freq);
    free(m->acts_block);
    memset(m, 0, sizeof *m);
}

tandem_status train_model_init(train_model *m, const qwen3_config *cfg, int32_t max_B, int32_t max_T) {
    memset(m, 0, sizeof *m);
    const qwen3_config *c = cfg;
    if (c->n_layers < 1 || c->dim < 1 || c->ffn_dim < 1 || c->n_heads < 1 || c->n_kv_heads < 1 || c->head_dim < 2 ||
        c->vocab_size < 1 || c->n_heads % c->n_kv_heads != 0 || c->head_dim % 2 != 0)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "train_model_init: invalid model dimensions");
    if (max_B < 1 || max_T < 1)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "train_model_init: batch %d × seq %d must be ≥ 1", max_B, max_T);
    m->cfg = *cfg;
    m->loss_scale = 1.0f;
    m->max_B = max_B;
    m->max_T = max_T;
    m->tensors = calloc((size_t)c->n_layers * QWEN3_BLOCK_TENSORS + 3, sizeof *m->tensors);
    train_layer_weights *wl = calloc((size_t)c->n_layers, sizeof *wl), *gl = calloc((size_t)c->n_layers, sizeof *gl);
    m->w.layers = wl;
    m->g.layers = gl;
    m->inv_freq = alloc_floats((size_t)c->head_dim / 2);
    if (!m->tensors || !wl || !gl || !m->inv_freq) goto oom;
    build_table(m);
    m->params = alloc_floats(m->n_params);
    m->grads = alloc_floats(m->n_params);
    m->adam_m = alloc_floats(m->n_params);
    m->adam_v = alloc_floats(m->n_params);
    if (!m->params || !m->grads || !m->adam_m || !m->adam_v) goto oom;
    point_weights(&m->w, wl, m, m->params);
    point_weights(&m->g, gl, m, m->grads);
    rope_inv_freq(m->inv_freq, c->head_dim, c->rope_theta);

    /* Activations: one block carved in the order of train_acts. */
    const uint64_t L = (uint64_t)c->n_layers, N = (uint64_t)max_B * (uint64_t)max_T, C = (uint64_t)c->dim;
    const uint64_t QD = (uint64_t)c->n_heads * c->head_dim, KD = (uint64_t)c->n_kv_heads * c->head_dim;
    const uint64_t F = (uint64_t)c->ffn_dim, V = (uint64_t)c->vocab_size;
    const uint64_t ATT = (uint64_t)max_B * c->n_heads * (uint64_t)max_T * (uint64_t)max_T;
    const uint64_t sizes[] = {(L + 1) * N * C, L * N * C, L * N * C, L * N, L * N * QD, L * N * KD, L * N * KD,
                              L * N * c->n_heads, L * N * c->n_kv_heads, L * N * QD, L * N * KD, L * ATT,
                              L * N * QD, L * N * C, L * N, L * N * F, L * N * F, L * N * F, N * C, N, N * V, N,
                              N, V, N * C, N * C, N * C, N * QD, N * QD, N * KD, N * KD, N * KD, N * QD, ATT, N * F,
                              N * F, N * F};
    train_acts *a = &m->a;
    float **slots[] = {&a->res, &a->res_mid, &a->ln1, &a->ln1_rstd, &a->q_raw, &a->k_raw, &a->v, &a->q_rstd,
                       &a->k_rstd, &a->q_rot, &a->k_rot, &a->att, &a->atty, &a->ln2, &a->ln2_rstd, &a->gate, &a->up,
                       &a->hmlp, &a->lnf, &a->lnf_rstd, &a->logits, &a->losses, &a->kl_losses, &a->zrow, &a->dres, &a->dln, &a->branch,
                       &a->dq, &a->dq2, &a->dk, &a->dk2, &a->dv, &a->datty, &a->datt, &a->dgate, &a->dup, &a->dh};
    _Static_assert(sizeof sizes / sizeof sizes[0] == sizeof slots / sizeof slots[0], "one size per buffer");
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (!size_add_ok(total, (sizes[i] + 15) & ~(uint64_t)15, &total)) goto oom;
    if (!(m->acts_block = alloc_floats((size_t)total))) {
        train_model_free(m);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "train_model_init: cannot allocate %.1f MiB of activations for "
                           "batch %d × seq %d (lower batch or seq)", (double)total * 4 / (1 << 20), max_B, max_T);
    }
    float *p = m->acts_block;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *slots[i] = p;
        p += (sizes[i] + 15) & ~(uint64_t)15;
    }
    return TANDEM_OK;
oom:
    train_model_free(m);
    return tandem_fail(TANDEM_ERR_NO_MEMORY, "train_model_init: out of memory");
}

/* ---- initialisation ---- */

uint64_t train_rng_next(train_rng *r) {
    /* splitmix64 */
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float train_rng_normal(train_rng *r) {
    /* Box–Muller on two uniforms in (0, 1] */
    const double u1 = ((double)(train_rng_next(r) >> 11) + 1.0) / 9007199254740992.0;
    const double u2 = (double)(train_rng_next(r) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void train_model_init_random(train_model *m, train_rng *rng, float std) {
    for (int i = 0; i < m->n_tensors; i++) {
        const train_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        for (size_t j = 0; j < t->numel; j++) p[j] = t->n_dims == 2 ? std * train_rng_normal(rng) : 1.0f;
    }
}

static void copy_matrix(float *dst, const weight_matrix *w) {
    for (int64_t r = 0; r < w->rows; r++) weight_row_dequantize(w, r, dst + (size_t)r * w->cols);
}

tandem_status train_model_copy_from(train_model *m, const qwen3_model *src, const char *path) {
    const qwen3_config *a = &m->cfg, *b = &src->cfg;
    if (a->n_layers != b->n_layers || a->dim != b->dim || a->ffn_dim != b->ffn_dim || a->n_heads != b->n_heads ||
        a->n_kv_heads != b->n_kv_heads || a->head_dim != b->head_dim || a->vocab_size != b->vocab_size ||
        a->tied_embeddings != b->tied_embeddings)
        return tandem_fail(TANDEM_ERR_MISMATCH, "%s: the model's dimensions differ from the training config", path);
    const size_t C = (size_t)a->dim;
    copy_matrix(m->w.embed_tokens, &src->embed_tokens);
    for (int l = 0; l < a->n_layers; l++) {
        const qwen3_layer *s = &src->layers[l];
        train_layer_weights *d = &m->w.layers[l];
        memcpy(d->input_layernorm, s->input_layernorm, C * sizeof(float));
        copy_matrix(d->q_proj, &s->q_proj);
        copy_matrix(d->k_proj, &s->k_proj);
        copy_matrix(d->v_proj, &s->v_proj);
        memcpy(d->q_norm, s->q_norm, (size_t)a->head_dim * sizeof(float));
        memcpy(d->k_norm, s->k_norm, (size_t)a->head_dim * sizeof(float));
        copy_matrix(d->o_proj, &s->o_proj);
        memcpy(d->post_attention_layernorm, s->post_attention_layernorm, C * sizeof(float));
        copy_matrix(d->gate_proj, &s->gate_proj);
        copy_matrix(d->up_proj, &s->up_proj);
        copy_matrix(d->down_proj, &s->down_proj);
    }
    memcpy(m->w.norm, src->norm, C * sizeof(float));
    if (!a->tied_embeddings) copy_matrix(m->w.lm_head, &src->lm_head);
    return TANDEM_OK;
}

/* ---- forward ---- */

float train_forward(train_model *m, const int32_t *inputs, const int32_t *targets, int32_t B, int32_t T) {
    return train_forward_distill(m, inputs, targets, NULL, B, T);
}

float train_forward_distill(train_model *m, const int32_t *inputs, const int32_t *targets,
                            const train_teacher *teacher, int32_t B, int32_t T) {
    const qwen3_config *c = &m->cfg;
    TANDEM_ASSERT(B >= 1 && B <= m->max_B && T >= 1 && T <= m->max_T);
    const int N = B * T, C = c->dim, F = c->ffn_dim, V = c->vocab_size, hd = c->head_dim;
    const int Hq = c->n_heads, Hkv = c->n_kv_heads, QD = Hq * hd, KD = Hkv * hd;
    const size_t NC = (size_t)N * C, att_size = (size_t)B * Hq * T * T;
    train_acts *a = &m->a;
    m->B = B;
    m->T = T;
    m->inputs = inputs;
    m->targets = targets;
    m->teacher = teacher;
    m->n_counted = m->n_kl = 0;
    TANDEM_ASSERT(!teacher || (teacher->K >= 1 && teacher->K <= TRAIN_MAX_TOPK && teacher->temp > 0 &&
                               teacher->kl_weight >= 0 && teacher->kl_weight <= 1 && (targets || teacher->kl_weight == 1)));
    for (int n = 0; n < N; n++) TANDEM_ASSERT(inputs[n] >= 0 && inputs[n] < V);

    train_embedding_forward(a->res, inputs, m->w.embed_tokens, N, C);
    for (int l = 0; l < c->n_layers; l++) {
        const train_layer_weights *w = &m->w.layers[l];
        float *res = a->res + l * NC, *res_mid = a->res_mid + l * NC, *res_out = a->res + (l + 1) * NC;
        float *ln1 = a->ln1 + l * NC, *ln1_rstd = a->ln1_rstd + (size_t)l * N;
        float *q_raw = a->q_raw + (size_t)l * N * QD, *k_raw = a->k_raw + (size_t)l * N * KD;
        float *v = a->v + (size_t)l * N * KD;
        float *q_rot = a->q_rot + (size_t)l * N * QD, *k_rot = a->k_rot + (size_t)l * N * KD;
        float *q_rstd = a->q_rstd + (size_t)l * N * Hq, *k_rstd = a->k_rstd + (size_t)l * N * Hkv;
        float *att = a->att + l * att_size, *atty = a->atty + (size_t)l * N * QD;
        float *ln2 = a->ln2 + l * NC, *ln2_rstd = a->ln2_rstd + (size_t)l * N;
        float *gate = a->gate + (size_t)l * N * F, *up = a->up + (size_t)l * N * F, *h = a->hmlp + (size_t)l * N * F;

        /* ---- self-attention block ---- */
        train_rmsnorm_forward(m->pool, ln1, ln1_rstd, res, w->input_layernorm, N, C, c->rms_eps);
        train_linear_forward(m->pool, q_raw, ln1, w->q_proj, N, C, QD);
        train_linear_forward(m->pool, k_raw, ln1, w->k_proj, N, C, KD);
        train_linear_forward(m->pool, v, ln1, w->v_proj, N, C, KD);
        /* Qwen3 QK-norm over each head's vector, then RoPE (in place on the normed copy) */
        train_rmsnorm_forward(m->pool, q_rot, q_rstd, q_raw, w->q_norm, N * Hq, hd, c->rms_eps);
        train_rmsnorm_forward(m->pool, k_rot, k_rstd, k_raw, w->k_norm, N * Hkv, hd, c->rms_eps);
        train_rope_forward(m->pool, q_rot, q_rot, m->inv_freq, B, T, Hq, hd);
        train_rope_forward(m->pool, k_rot, k_rot, m->inv_freq, B, T, Hkv, hd);
        train_attention_forward(m->pool, atty, att, q_rot, k_rot, v, B, T, Hq, Hkv, hd);
        train_linear_forward(m->pool, a->branch, atty, w->o_proj, N, QD, C);
        train_residual_forward(m->pool, res_mid, res, a->branch, (int64_t)NC);

        /* ---- MLP block: down_proj(silu(gate_proj(x)) * up_proj(x)) ---- */
        train_rmsnorm_forward(m->pool, ln2, ln2_rstd, res_mid, w->post_attention_layernorm, N, C, c->rms_eps);
        train_linear_forward(m->pool, gate, ln2, w->gate_proj, N, C, F);
        train_linear_forward(m->pool, up, ln2, w->up_proj, N, C, F);
        train_swiglu_forward(m->pool, h, gate, up, (int64_t)N * F);
        train_linear_forward(m->pool, a->branch, h, w->down_proj, N, F, C);
        train_residual_forward(m->pool, res_out, res_mid, a->branch, (int64_t)NC);
    }
    train_rmsnorm_forward(m->pool, a->lnf, a->lnf_rstd, a->res + (size_t)c->n_layers * NC, m->w.norm, N, C, c->rms_eps);
    train_linear_forward(m->pool, a->logits, a->lnf, m->w.lm_head, N, C, V);
    double ce = 0, kl = 0;
    if (targets) {
        for (int n = 0; n < N; n++) TANDEM_ASSERT(targets[n] < V);
        m->n_counted = train_crossentropy_forward(m->pool, a->losses, a->logits, targets, N, V);
        for (int n = 0; n < N; n++) ce += a->losses[n];
        ce = m->n_counted ? ce / m->n_counted : 0;
    }
    if (!teacher) return (float)ce;
    const int K = teacher->K;
    for (int n = 0; n < N; n++)
        for (int i = 0; i < K; i++) TANDEM_ASSERT(teacher->ids[(size_t)n * K + i] < V);
    train_kl_topk_forward(a->kl_losses, a->logits, teacher->ids, teacher->logits, teacher->temp, N, V, K);
    for (int n = 0; n < N; n++)
        if (teacher->ids[(size_t)n * K] >= 0) {
            kl += a->kl_losses[n];
            m->n_kl++;
        }
    kl = m->n_kl ? kl / m->n_kl : 0;
    return (float)((1.0 - teacher->kl_weight) * ce + teacher->kl_weight * kl);
}

static void zero_range(int64_t begin, int64_t end, void *arg) {
    memset((float *)arg + begin, 0, (size_t)(end - begin) * sizeof(float));
}

void train_zero_grad(train_model *m) {
    train_parallel_for(m->pool, (int64_t)m->n_params, 1 << 16, zero_range, m->grads);
}

/* ---- backward: the forward in reverse ---- */

void train_backward(train_model *m) {
    const qwen3_config *c = &m->cfg;
    const int B = m->B, T = m->T, N = B * T, C = c->dim, F = c->ffn_dim, V = c->vocab_size, hd = c->head_dim;
    const int Hq = c->n_heads, Hkv = c->n_kv_heads, QD = Hq * hd, KD = Hkv * hd;
    const size_t NC = (size_t)N * C, att_size = (size_t)B * Hq * T * T;
    train_acts *a = &m->a;
    const train_teacher *teacher = m->teacher;
    TANDEM_ASSERT(m->targets != NULL || teacher != NULL);
    if (m->n_counted == 0 && m->n_kl == 0) return;

    if (!teacher) {
        /* loss = mean(losses): dloss_n = 1 / counted; logits become dlogits in place */
        train_crossentropy_backward(m->pool, a->logits, a->logits, m->targets, m->loss_scale / (float)m->n_counted, N,
                                    V);
    } else {
        /* loss = (1 − w)·mean(CE) + w·mean(KL): each row's logits are set aside in zrow, then both gradients are
         * accumulated into the zeroed row (a row without a target or a teacher gets none from that term) */
        const int K = teacher->K;
        const float w = teacher->kl_weight;
        const float ce_scale = m->n_counted ? m->loss_scale * (1.0f - w) / (float)m->n_counted : 0.0f;
        const float kl_scale = m->n_kl ? m->loss_scale * w / (float)m->n_kl : 0.0f;
        for (int n = 0; n < N; n++) {
            float *row = a->logits + (size_t)n * V;
            memcpy(a->zrow, row, (size_t)V * sizeof(float));
            memset(row, 0, (size_t)V * sizeof(float));
            if (m->targets && ce_scale > 0)
                train_crossentropy_backward(m->pool, row, a->zrow, m->targets + n, ce_scale, 1, V);
            if (teacher->ids[(size_t)n * K] >= 0 && kl_scale > 0)
                train_kl_topk_backward(row, a->zrow, teacher->ids + (size_t)n * K, teacher->logits + (size_t)n * K,
                                       teacher->temp, kl_scale, 1, V, K);
        }
    }
    /* forward: logits = lnf · lm_headᵀ */
    memset(a->dln, 0, NC * sizeof(float));
    train_linear_backward(m->pool, a->dln, m->g.lm_head, a->logits, a->lnf, m->w.lm_head, N, C, V);
    /* forward: lnf = RMSNorm(res[L], norm) */
    memset(a->dres, 0, NC * sizeof(float));
    train_rmsnorm_backward(m->pool, a->dres, m->g.norm, a->dln, a->res + (size_t)c->n_layers * NC, m->w.norm,
                           a->lnf_rstd, N, C);

    for (int l = c->n_layers - 1; l >= 0; l--) {
        const train_layer_weights *w = &m->w.layers[l];
        train_layer_weights *g = &m->g.layers[l];
        const float *res = a->res + l * NC, *res_mid = a->res_mid + l * NC;
        const float *ln1 = a->ln1 + l * NC, *ln1_rstd = a->ln1_rstd + (size_t)l * N;
        const float *q_raw = a->q_raw + (size_t)l * N * QD, *k_raw = a->k_raw + (size_t)l * N * KD;
        const float *v = a->v + (size_t)l * N * KD;
        const float *q_rot = a->q_rot + (size_t)l * N * QD, *k_rot = a->k_rot + (size_t)l * N * KD;
        const float *q_rstd = a->q_rstd + (size_t)l * N * Hq, *k_rstd = a->k_rstd + (size_t)l * N * Hkv;
        const float *att = a->att + l * att_size, *atty = a->atty + (size_t)l * N * QD;
        const float *ln2 = a->ln2 + l * NC, *ln2_rstd = a->ln2_rstd + (size_t)l * N;
        const float *gate = a->gate + (size_t)l * N * F, *up = a->up + (size_t)l * N * F;
        const float *h = a->hmlp + (size_t)l * N * F;

        /* ---- MLP block; dres holds d res[l+1] ---- */
        /* forward: res[l+1] = res_mid + down(h): the residual passes dres on to d res_mid unchanged */
        /* forward: branch = h · down_projᵀ */
        memset(a->dh, 0, (size_t)N * F * sizeof(float));
        train_linear_backward(m->pool, a->dh, g->down_proj, a->dres, h, w->down_proj, N, F, C);
        /* forward: h = silu(gate) · up */
        memset(a->dgate, 0, (size_t)N * F * sizeof(float));
        memset(a->dup, 0, (size_t)N * F * sizeof(float));
        train_swiglu_backward(m->pool, a->dgate, a->dup, a->dh, gate, up, (int64_t)N * F);
        /* forward: gate = ln2 · gate_projᵀ, up = ln2 · up_projᵀ */
        memset(a->dln, 0, NC * sizeof(float));
        train_linear_backward(m->pool, a->dln, g->gate_proj, a->dgate, ln2, w->gate_proj, N, C, F);
        train_linear_backward(m->pool, a->dln, g->up_proj, a->dup, ln2, w->up_proj, N, C, F);
        /* forward: ln2 = RMSNorm(res_mid, post_attention_layernorm) */
        train_rmsnorm_backward(m->pool, a->dres, g->post_attention_layernorm, a->dln, res_mid,
                               w->post_attention_layernorm, ln2_rstd, N, C);

        /* ---- attention block; dres now holds d res_mid ---- */
        /* forward: res_mid = res[l] + atty · o_projᵀ */
        memset(a->datty, 0, (size_t)N * QD * sizeof(float));
        train_linear_backward(m->pool, a->datty, g->o_proj, a->dres, atty, w->o_proj, N, QD, C);
        /* forward: atty = attention(q_rot, k_rot, v) */
        memset(a->dq, 0, (size_t)N * QD * sizeof(float));
        memset(a->dk, 0, (size_t)N * KD * sizeof(float));
        memset(a->dv, 0, (size_t)N * KD * sizeof(float));
        train_attention_backward(m->pool, a->dq, a->dk, a->dv, a->datt, a->datty, q_rot, k_rot, v, att, B, T, Hq, Hkv,
                                 hd);
        /* forward: q_rot = rope(qn), k_rot = rope(kn) */
        memset(a->dq2, 0, (size_t)N * QD * sizeof(float));
        memset(a->dk2, 0, (size_t)N * KD * sizeof(float));
        train_rope_backward(m->pool, a->dq2, a->dq, m->inv_freq, B, T, Hq, hd);
        train_rope_backward(m->pool, a->dk2, a->dk, m->inv_freq, B, T, Hkv, hd);
        /* forward: qn = RMSNorm_head(q_raw, q_norm), kn = RMSNorm_head(k_raw, k_norm) */
        memset(a->dq, 0, (size_t)N * QD * sizeof(float));
        memset(a->dk, 0, (size_t)N * KD * sizeof(float));
        train_rmsnorm_backward(m->pool, a->dq, g->q_norm, a->dq2, q_raw, w->q_norm, q_rstd, N * Hq, hd);
        train_rmsnorm_backward(m->pool, a->dk, g->k_norm, a->dk2, k_raw, w->k_norm, k_rstd, N * Hkv, hd);
        /* forward: q_raw, k_raw, v = ln1 · Wqᵀ, ln1 · Wkᵀ, ln1 · Wvᵀ */
        memset(a->dln, 0, NC * sizeof(float));
        train_linear_backward(m->pool, a->dln, g->q_proj, a->dq, ln1, w->q_proj, N, C, QD);
        train_linear_backward(m->pool, a->dln, g->k_proj, a->dk, ln1, w->k_proj, N, C, KD);
        train_linear_backward(m->pool, a->dln, g->v_proj, a->dv, ln1, w->v_proj, N, C, KD);
        /* forward: ln1 = RMSNorm(res[l], input_layernorm); the residual carries dres on to d res[l] */
        train_rmsnorm_backward(m->pool, a->dres, g->input_layernorm, a->dln, res, w->input_layernorm, ln1_rstd, N, C);
    }
    /* forward: res[0] = embed_tokens[inputs] */
    train_embedding_backward(m->g.embed_tokens, a->dres, m->inputs, N, C);
}

/* ---- optimisation ---- */

/* The parameter block in NORM_BLOCKS fixed blocks, whose partial sums of squares add up in order: the norm does
 * not depend on the number of threads. */
enum { NORM_BLOCKS = 64 };

typedef struct grad_job {
    float *grads;
    size_t n;
    float coef;
    double partial[NORM_BLOCKS];
} grad_job;

static void sum_squares_blocks(int64_t begin, int64_t end, void *arg) {
    grad_job *j = arg;
    for (int64_t b = begin; b < end; b++) {
        double ss = 0;
        for (size_t i = j->n * (size_t)b / NORM_BLOCKS; i < j->n * (size_t)(b + 1) / NORM_BLOCKS; i++)
            ss += (double)j->grads[i] * j->grads[i];
        j->partial[b] = ss;
    }
}

static void scale_range(int64_t begin, int64_t end, void *arg) {
    const grad_job *j = arg;
    for (int64_t i = begin; i < end; i++) j->grads[i] *= j->coef;
}

float train_clip_grad_norm(train_model *m, float max_norm) {
    grad_job j = {m->grads, m->n_params, 1.0f, {0}};
    train_parallel_for(m->pool, NORM_BLOCKS, 1, sum_squares_blocks, &j);
    double ss = 0;
    for (int b = 0; b < NORM_BLOCKS; b++) ss += j.partial[b];
    const float norm = (float)sqrt(ss);
    if (max_norm > 0) {
        /* torch.nn.utils.clip_grad_norm_: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1 */
        j.coef = max_norm / (norm + 1e-6f);
        if (j.coef < 1.0f) train_parallel_for(m->pool, (int64_t)m->n_params, 1 << 16, scale_range, &j);
    }
    return norm;
}

typedef struct adamw_job {
    const train_model *m;
    const train_adamw *o;
    float step_size, bc2_sqrt;
} adamw_job;

/* AdamW over parameters [begin, end) of the block, tensor by tensor (the decay differs). */
static void adamw_range(int64_t begin, int64_t end, void *arg) {
    const adamw_job *j = arg;
    const train_model *m = j->m;
    const train_adamw *o = j->o;
    for (int i = 0; i < m->n_tensors; i++) {
        const train_tensor *t = &m->tensors[i];
        const int64_t lo = (int64_t)t->offset > begin ? (int64_t)t->offset : begin;
        const int64_t hi = (int64_t)(t->offset + t->numel) < end ? (int64_t)(t->offset + t->numel) : end;
        if (lo >= hi) continue;
        float *p = m->params, *g = m->grads, *mm = m->adam_m, *vv = m->adam_v;
        const float decay = t->decay ? 1.0f - o->lr * o->weight_decay : 1.0f;
        for (int64_t k = lo; k < hi; k++) {
            /* torch.optim.AdamW (single tensor): p *= 1 − lr·wd; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
             * p −= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps) */
            p[k] *= decay;
            mm[k] = o->beta1 * mm[k] + (1.0f - o->beta1) * g[k];
            vv[k] = o->beta2 * vv[k] + (1.0f - o->beta2) * g[k] * g[k];
            p[k] -= j->step_size * mm[k] / (sqrtf(vv[k]) / j->bc2_sqrt + o->eps);
        }
    }
}

void train_adamw_update(train_model *m, const train_adamw *o, int64_t step) {
    const double bc1 = 1.0 - pow(o->beta1, (double)step), bc2 = 1.0 - pow(o->beta2, (double)step);
    adamw_job j = {m, o, (float)(o->lr / bc1), (float)sqrt(bc2)};
    train_parallel_for(m->pool, (int64_t)m->n_params, 1 << 16, adamw_range, &j);
}

float train_lr_schedule(int64_t step, int64_t warmup, int64_t total, float lr_max, float lr_min) {
    if (step < warmup) return lr_max * (float)(step + 1) / (float)warmup;
    if (step >= total) return lr_min;
    const double progress = (double)(step - warmup) / (double)(total - warmup > 0 ? total - warmup : 1);
    return (float)(lr_min + 0.5 * (lr_max - lr_min) * (1.0 + cos(M_PI * progress)));
}
