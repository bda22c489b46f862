/* train_ops.c — forward and backward of every operation Qwen3 training uses, side by side; each backward
 * quotes the forward line it differentiates. Plain loops over float arrays, GEMMs through OpenBLAS. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "train_ops.h"

/* ---- embedding ---- */

void train_embedding_forward(float *out, const int32_t *ids, const float *wte, int N, int C) {
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * C, wte + (size_t)ids[n] * C, (size_t)C * sizeof(float));
}

void train_embedding_backward(float *dwte, const float *dout, const int32_t *ids, int N, int C) {
    for (int n = 0; n < N; n++) {
        /* forward: out[n] = wte[ids[n]] */
        float *dw = dwte + (size_t)ids[n] * C;
        const float *d = dout + (size_t)n * C;
        for (int i = 0; i < C; i++) dw[i] += d[i];
    }
}

/* ---- RMSNorm ---- */

void train_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
        /* HF Qwen3RMSNorm: x * torch.rsqrt(x.pow(2).mean(-1) + eps), then weight * x, all in float32 */
        const float r = 1.0f / sqrtf((float)(ss / C) + eps);
        for (int i = 0; i < C; i++) y[i] = weight[i] * (x[i] * r);
        rstd[n] = r;
    }
}

void train_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                            const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        const float r = rstd[n];
        /* forward: y[i] = weight[i] · x[i] · r,  r = (mean(x²) + eps)^(-1/2)
         * dr/dx[i] = −r³ · x[i] / C, so dx[i] = r·w[i]·dy[i] − r³/C · x[i] · Σ_j dy[j]·w[j]·x[j] */
        double dot = 0;
        for (int i = 0; i < C; i++) dot += (double)dy[i] * weight[i] * x[i];
        const float k = (float)(dot * r * r * r / C);
        for (int i = 0; i < C; i++) {
            dweight[i] += dy[i] * x[i] * r;
            dx[i] += r * weight[i] * dy[i] - k * x[i];
        }
    }
}

/* ---- linear ---- */

void train_linear_forward(float *out, const float *inp, const float *weight, int N, int C, int OC) {
    /* out (N, OC) = inp (N, C) · weight (OC, C)ᵀ */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC);
}

void train_linear_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                           int N, int C, int OC) {
    /* forward: out[n][o] = Σ_c inp[n][c] · weight[o][c] */
    if (dinp)  /* dinp (N, C) += dout (N, OC) · weight (OC, C) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
    /* dweight (OC, C) += dout (N, OC)ᵀ · inp (N, C) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
}

void train_matmul_ref(float *out, const float *inp, const float *weight, int N, int C, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = 0;
            for (int c = 0; c < C; c++) s += (double)inp[(size_t)n * C + c] * weight[(size_t)o * C + c];
            out[(size_t)n * OC + o] = (float)s;
        }
}

/* ---- rotary embedding ---- */

/* HF multiplies the position by inv_freq in float32 and takes cos/sin of that float32 angle (as rope_forward in
 * kernels/ops.c does), so training and inference rotate by the same amounts. */
static void rope_rotate(float *out, const float *inp, const float *inv_freq, int B, int T, int H, int hd, float sign) {
    const int half = hd / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int k = 0; k < half; k++) {
                const float angle = (float)t * inv_freq[k];
                const float c = (float)cos((double)angle), s = sign * (float)sin((double)angle);
                for (int h = 0; h < H; h++) {
                    const size_t off = (((size_t)b * T + t) * H + h) * hd;
                    const float x1 = inp[off + k], x2 = inp[off + k + half];
                    out[off + k] = x1 * c - x2 * s;
                    out[off + k + half] = x2 * c + x1 * s;
                }
            }
}

void train_rope_forward(float *out, const float *inp, const float *inv_freq, int B, int T, int H, int hd) {
    /* q_embed = q·cos + rotate_half(q)·sin, rotate_half(x) = cat(−x2, x1) */
    rope_rotate(out, inp, inv_freq, B, T, H, hd, 1.0f);
}

void train_rope_backward(float *dinp, const float *dout, const float *inv_freq, int B, int T, int H, int hd) {
    /* forward: (y1, y2) = (x1·c − x2·s, x2·c + x1·s), a rotation R; dx = Rᵀ·dy is the rotation by −angle:
     * dx1 = dy1·c + dy2·s, dx2 = dy2·c − dy1·s */
    const int half = hd / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int k = 0; k < half; k++) {
                const float angle = (float)t * inv_freq[k];
                const float c = (float)cos((double)angle), s = (float)sin((double)angle);
                for (int h = 0; h < H; h++) {
                    const size_t off = (((size_t)b * T + t) * H + h) * hd;
                    const float d1 = dout[off + k], d2 = dout[off + k + half];
                    dinp[off + k] += d1 * c + d2 * s;
                    dinp[off + k + half] += d2 * c - d1 * s;
                }
            }
}

/* ---- causal grouped-query attention ---- */

void train_attention_forward_ref(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                                 int Hq, int Hkv, int hd) {
    const int group = Hq / Hkv, q_dim = Hq * hd, kv_dim = Hkv * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++) {
            const int kvh = h / group;  /* HF repeat_kv: query heads h·group … share KV head h/group */
            for (int t = 0; t < T; t++) {
                const float *qt = q + ((size_t)b * T + t) * q_dim + (size_t)h * hd;
                float *p = att + (((size_t)b * Hq + h) * T + t) * T;
                /* scores = q·kᵀ · scale over u ≤ t (the causal mask), then softmax */
                for (int u = 0; u <= t; u++) {
                    const float *ku = k + ((size_t)b * T + u) * kv_dim + (size_t)kvh * hd;
                    float s = 0;
                    for (int i = 0; i < hd; i++) s += qt[i] * ku[i];
                    p[u] = s * scale;
                }
                softmax_forward(p, t + 1);
                for (int u = t + 1; u < T; u++) p[u] = 0.0f;
                /* out_t = Σ_u p[u] · v_u */
                float *ot = out + ((size_t)b * T + t) * q_dim + (size_t)h * hd;
                memset(ot, 0, (size_t)hd * sizeof(float));
                for (int u = 0; u <= t; u++) {
                    const float *vu = v + ((size_t)b * T + u) * kv_dim + (size_t)kvh * hd;
                    for (int i = 0; i < hd; i++) ot[i] += p[u] * vu[i];
                }
            }
        }
}

void train_attention_backward_ref(float *dq, float *dk, float *dv, float *datt, const float *dout, const float *q,
                                  const float *k, const float *v, const float *att, int B, int T, int Hq, int Hkv,
                                  int hd) {
    const int group = Hq / Hkv, q_dim = Hq * hd, kv_dim = Hkv * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++) {
            const int kvh = h / group;
            for (int t = 0; t < T; t++) {
                const float *p = att + (((size_t)b * Hq + h) * T + t) * T;
                float *dp = datt + (((size_t)b * Hq + h) * T + t) * T;
                const float *dot = dout + ((size_t)b * T + t) * q_dim + (size_t)h * hd;
                /* forward: out_t = Σ_u p[u] · v_u  →  dp[u] = dout_t · v_u,  dv_u += p[u] · dout_t */
                double pdp = 0;
                for (int u = 0; u <= t; u++) {
                    const size_t kv_off = ((size_t)b * T + u) * kv_dim + (size_t)kvh * hd;
                    const float *vu = v + kv_off;
                    float *dvu = dv + kv_off;
                    float s = 0;
                    for (int i = 0; i < hd; i++) {
                        s += dot[i] * vu[i];
                        dvu[i] += p[u] * dot[i];
                    }
                    dp[u] = s;
                    pdp += (double)p[u] * s;
                }
                /* forward: p = softmax(scores)  →  dscore[u] = p[u] · (dp[u] − Σ_w p[w]·dp[w]) */
                for (int u = 0; u <= t; u++) dp[u] = p[u] * (dp[u] - (float)pdp);
                /* forward: scores[u] = q_t·k_u · scale  →  dq_t += scale·Σ_u dscore[u]·k_u, dk_u += scale·dscore[u]·q_t */
                const size_t q_off = ((size_t)b * T + t) * q_dim + (size_t)h * hd;
                const float *qt = q + q_off;
                float *dqt = dq + q_off;
                for (int u = 0; u <= t; u++) {
                    const size_t kv_off = ((size_t)b * T + u) * kv_dim + (size_t)kvh * hd;
                    const float *ku = k + kv_off;
                    float *dku = dk + kv_off;
                    const float ds = dp[u] * scale;
                    for (int i = 0; i < hd; i++) {
                        dqt[i] += ds * ku[i];
                        dku[i] += ds * qt[i];
                    }
                }
            }
        }
}

/* The same attention as matrix products per (sequence, head), so OpenBLAS threads and vectorises it. The causal
 * upper triangle is computed and then masked: twice the multiply-adds of the loops, far fewer cycles. */
void train_attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                             int Hq, int Hkv, int hd) {
    const int group = Hq / Hkv, q_dim = Hq * hd, kv_dim = Hkv * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++) {
            const int kvh = h / group;  /* HF repeat_kv */
            const float *qh = q + (size_t)b * T * q_dim + (size_t)h * hd;
            const float *kh = k + (size_t)b * T * kv_dim + (size_t)kvh * hd;
            const float *vh = v + (size_t)b * T * kv_dim + (size_t)kvh * hd;
            float *p = att + ((size_t)b * Hq + h) * T * T;
            /* scores (T, T) = q_h (T, hd) · k_h (T, hd)ᵀ · scale */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, qh, q_dim, kh, kv_dim, 0.0f, p, T);
            for (int t = 0; t < T; t++) {
                float *row = p + (size_t)t * T;
                softmax_forward(row, t + 1);
                for (int u = t + 1; u < T; u++) row[u] = 0.0f;  /* the causal mask */
            }
            /* out_h (T, hd) = att (T, T) · v_h (T, hd) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, p, T, vh, kv_dim, 0.0f,
                        out + (size_t)b * T * q_dim + (size_t)h * hd, q_dim);
        }
}

void train_attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout, const float *q,
                              const float *k, const float *v, const float *att, int B, int T, int Hq, int Hkv,
                              int hd) {
    const int group = Hq / Hkv, q_dim = Hq * hd, kv_dim = Hkv * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++) {
            const int kvh = h / group;
            const size_t q_off = (size_t)b * T * q_dim + (size_t)h * hd, kv_off = (size_t)b * T * kv_dim + (size_t)kvh * hd;
            const float *p = att + ((size_t)b * Hq + h) * T * T, *doh = dout + q_off;
            float *dp = datt + ((size_t)b * Hq + h) * T * T;
            /* forward: out = att · v  →  datt = dout · vᵀ, dv += attᵀ · dout */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, doh, q_dim, v + kv_off, kv_dim, 0.0f,
                        dp, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, p, T, doh, q_dim, 1.0f, dv + kv_off,
                        kv_dim);
            /* forward: att = softmax(scores) row by row  →  dscores = att ⊙ (datt − Σ_u att·datt) (0 above t) */
            for (int t = 0; t < T; t++) {
                const float *pr = p + (size_t)t * T;
                float *dr = dp + (size_t)t * T;
                double pdp = 0;
                for (int u = 0; u <= t; u++) pdp += (double)pr[u] * dr[u];
                for (int u = 0; u <= t; u++) dr[u] = pr[u] * (dr[u] - (float)pdp);
                for (int u = t + 1; u < T; u++) dr[u] = 0.0f;
            }
            /* forward: scores = q · kᵀ · scale  →  dq += scale · dscores · k, dk += scale · dscoresᵀ · q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, scale, dp, T, k + kv_off, kv_dim, 1.0f,
                        dq + q_off, q_dim);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, scale, dp, T, q + q_off, q_dim, 1.0f,
                        dk + kv_off, kv_dim);
        }
}

/* ---- SwiGLU ---- */

void train_swiglu_forward(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i += INT32_MAX) {  /* the inference kernel takes an int count */
        const int chunk = n - i < INT32_MAX ? (int)(n - i) : INT32_MAX;
        swiglu_forward(out + i, gate + i, up + i, chunk);
    }
}

void train_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        /* forward: out = silu(g)·up, silu(g) = g·σ(g), silu'(g) = σ(g)·(1 + g·(1 − σ(g))) */
        const float g = gate[i], sig = 1.0f / (1.0f + expf(-g));
        dgate[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
        dup[i] += dout[i] * g * sig;
    }
}

/* ---- residual ---- */

void train_residual_forward(float *out, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void train_residual_backward(float *da, float *db, const float *dout, int64_t n) {
    /* forward: out = a + b */
    for (int64_t i = 0; i < n; i++) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

/* ---- cross-entropy ---- */

/* log Σ_i exp(x[i]·inv_temp) over n values, in double around the maximum. */
static double log_sum_exp(const float *x, int n, float inv_temp, float *max_out) {
    float max = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] * inv_temp > max) max = x[i] * inv_temp;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)(x[i] * inv_temp - max));
    if (max_out) *max_out = max;
    return max + log(sum);
}

int train_crossentropy_forward(float *losses, const float *logits, const int32_t *targets, int N, int V) {
    int counted = 0;
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) {
            losses[n] = 0.0f;
            continue;
        }
        const float *z = logits + (size_t)n * V;
        /* loss = logsumexp(z) − z[target] */
        losses[n] = (float)(log_sum_exp(z, V, 1.0f, NULL) - z[targets[n]]);
        counted++;
    }
    return counted;
}

void train_crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets, float scale, int N,
                                 int V) {
    const bool in_place = dlogits == logits;
    for (int n = 0; n < N; n++) {
        float *dz = dlogits + (size_t)n * V;
        if (targets[n] < 0) {
            if (in_place) memset(dz, 0, (size_t)V * sizeof(float));
            continue;
        }
        const float *z = logits + (size_t)n * V;
        /* forward: loss = logsumexp(z) − z[y]  →  dz = softmax(z) − onehot(y) */
        const double lse = log_sum_exp(z, V, 1.0f, NULL);
        const int32_t y = targets[n];
        for (int i = 0; i < V; i++) {
            const float g = scale * ((float)exp((double)z[i] - lse) - (i == y ? 1.0f : 0.0f));
            dz[i] = in_place ? g : dz[i] + g;
        }
    }
}

/* ---- KL to teacher top-k ---- */

/* p (K) = softmax of the teacher's valid top-k logits / temp; unused slots get 0. */
static void teacher_probs(float *p, const int32_t *ids, const float *tl, float inv_temp, int K) {
    float max = -INFINITY;
    for (int i = 0; i < K; i++)
        if (ids[i] >= 0 && tl[i] * inv_temp > max) max = tl[i] * inv_temp;
    double sum = 0;
    for (int i = 0; i < K; i++) {
        p[i] = ids[i] >= 0 ? expf(tl[i] * inv_temp - max) : 0.0f;
        sum += p[i];
    }
    for (int i = 0; i < K; i++) p[i] = sum > 0 ? (float)(p[i] / sum) : 0.0f;
}

void train_kl_topk_forward(float *losses, const float *logits, const int32_t *teacher_ids,
                           const float *teacher_logits, float temp, int N, int V, int K) {
    TANDEM_ASSERT(K >= 1 && K <= TRAIN_MAX_TOPK);
    const float inv_temp = 1.0f / temp;
    float p[TRAIN_MAX_TOPK];
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * V;
        const int32_t *ids = teacher_ids + (size_t)n * K;
        teacher_probs(p, ids, teacher_logits + (size_t)n * K, inv_temp, K);
        /* KL(p ‖ q) = Σ_i p_i · (log p_i − log q[id_i]),  log q[j] = z[j]/temp − logsumexp(z/temp) */
        const double lse = log_sum_exp(z, V, inv_temp, NULL);
        double kl = 0;
        for (int i = 0; i < K; i++)
            if (ids[i] >= 0 && p[i] > 0) kl += p[i] * (log((double)p[i]) - ((double)z[ids[i]] * inv_temp - lse));
        losses[n] = (float)kl;
    }
}

void train_kl_topk_backward(float *dlogits, const float *logits, const int32_t *teacher_ids,
                            const float *teacher_logits, float temp, float scale, int N, int V, int K) {
    TANDEM_ASSERT(K >= 1 && K <= TRAIN_MAX_TOPK);
    const float inv_temp = 1.0f / temp;
    float p[TRAIN_MAX_TOPK];
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * V;
        float *dz = dlogits + (size_t)n * V;
        const int32_t *ids = teacher_ids + (size_t)n * K;
        teacher_probs(p, ids, teacher_logits + (size_t)n * K, inv_temp, K);
        /* forward: KL = Σ_i p_i log p_i − Σ_i p_i · (z[id_i]/temp − logsumexp(z/temp)), Σ p = 1
         * →  dz[j] = (q[j] − p[j]) / temp */
        const double lse = log_sum_exp(z, V, inv_temp, NULL);
        const float s = scale * inv_temp;
        for (int j = 0; j < V; j++) dz[j] += s * (float)exp((double)z[j] * inv_temp - lse);
        for (int i = 0; i < K; i++)
            if (ids[i] >= 0) dz[ids[i]] -= s * p[i];
    }
}
