/* train_ops.c — forward and backward of every operation Qwen3 training uses, side by side; each backward
 * quotes the forward line it differentiates. Loops over float arrays and GEMMs through OpenBLAS, spread over rows
 * on a thread pool. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
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

/* ---- parallel rows ---- */

typedef struct range_job {
    train_range_fn fn;
    void *arg;
    int64_t n, block;
} range_job;

static void range_task(int task, int thread, void *arg) {
    (void)thread;
    const range_job *j = arg;
    const int64_t begin = (int64_t)task * j->block, end = begin + j->block < j->n ? begin + j->block : j->n;
    j->fn(begin, end, j->arg);
}

/* [0, n) in blocks of at least `grain`, at most per_thread blocks a thread. */
static void parallel_blocks(thread_pool *pool, int64_t n, int64_t grain, int per_thread, train_range_fn fn, void *arg) {
    const int threads = pool ? thread_pool_size(pool) : 1;
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t tasks = threads > 1 ? (n + grain - 1) / grain : 1;
    if (tasks > (int64_t)per_thread * threads) tasks = (int64_t)per_thread * threads;
    if (tasks <= 1) {
        fn(0, n, arg);
        return;
    }
    range_job j = {fn, arg, n, (n + tasks - 1) / tasks};
    thread_pool_run(pool, (int)((n + j.block - 1) / j.block), range_task, &j);
}

void train_parallel_for(thread_pool *pool, int64_t n, int64_t grain, train_range_fn fn, void *arg) {
    /* four blocks a thread, so a thread that another process holds back leaves little for the others to wait on */
    parallel_blocks(pool, n, grain, 4, fn, arg);
}

/* ---- RMSNorm ---- */

typedef struct rms_job {
    float *out, *rstd, *dinp, *dweight;
    const float *inp, *weight, *dout, *rstd_in;
    int64_t N, dweight_stride;
    int C;
    float eps;
} rms_job;

static void rms_forward_rows(int64_t begin, int64_t end, void *arg) {
    const rms_job *j = arg;
    const int C = j->C;
    for (int64_t n = begin; n < end; n++) {
        const float *x = j->inp + (size_t)n * C;
        float *y = j->out + (size_t)n * C;
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
        /* HF Qwen3RMSNorm: x * torch.rsqrt(x.pow(2).mean(-1) + eps), then weight * x, all in float32 */
        const float r = 1.0f / sqrtf((float)(ss / C) + j->eps);
        for (int i = 0; i < C; i++) y[i] = j->weight[i] * (x[i] * r);
        j->rstd[n] = r;
    }
}

void train_rmsnorm_forward(thread_pool *pool, float *out, float *rstd, const float *inp, const float *weight, int N,
                           int C, float eps) {
    rms_job j = {out, rstd, NULL, NULL, inp, weight, NULL, NULL, N, 0, C, eps};
    train_parallel_for(pool, N, 16384 / C + 1, rms_forward_rows, &j);
}

/* The weight gradient is a sum over rows: block b of RMS_BLOCKS row blocks adds into its own row of j->dweight
 * (dweight_stride C), and the blocks are summed in order afterwards; without the memory for that, all blocks add
 * into dweight itself (stride 0) on the calling thread. */
enum { RMS_BLOCKS = 16 };

static void rms_backward_blocks(int64_t begin, int64_t end, void *arg) {
    const rms_job *j = arg;
    const int C = j->C;
    const int64_t N = j->N;
    for (int64_t b = begin; b < end; b++) {
        float *dw = j->dweight + (size_t)b * (size_t)j->dweight_stride;
        for (int64_t n = N * b / RMS_BLOCKS; n < N * (b + 1) / RMS_BLOCKS; n++) {
            const float *x = j->inp + (size_t)n * C, *dy = j->dout + (size_t)n * C;
            float *dx = j->dinp + (size_t)n * C;
            const float r = j->rstd_in[n];
            /* forward: y[i] = weight[i] · x[i] · r,  r = (mean(x²) + eps)^(-1/2)
             * dr/dx[i] = −r³ · x[i] / C, so dx[i] = r·w[i]·dy[i] − r³/C · x[i] · Σ_j dy[j]·w[j]·x[j] */
            double dot = 0;
            for (int i = 0; i < C; i++) dot += (double)dy[i] * j->weight[i] * x[i];
            const float k = (float)(dot * r * r * r / C);
            for (int i = 0; i < C; i++) {
                dw[i] += dy[i] * x[i] * r;
                dx[i] += r * j->weight[i] * dy[i] - k * x[i];
            }
        }
    }
}

void train_rmsnorm_backward(thread_pool *pool, float *dinp, float *dweight, const float *dout, const float *inp,
                            const float *weight, const float *rstd, int N, int C) {
    float *partial = calloc((size_t)RMS_BLOCKS * C, sizeof(float));
    if (!partial) {
        rms_job serial = {NULL, NULL, dinp, dweight, inp, weight, dout, rstd, N, 0, C, 0.0f};
        rms_backward_blocks(0, RMS_BLOCKS, &serial);
        return;
    }
    rms_job j = {NULL, NULL, dinp, partial, inp, weight, dout, rstd, N, C, C, 0.0f};
    train_parallel_for(pool, RMS_BLOCKS, 1, rms_backward_blocks, &j);
    for (int b = 0; b < RMS_BLOCKS; b++)
        for (int i = 0; i < C; i++) dweight[i] += partial[(size_t)b * C + i];
    free(partial);
}

/* ---- linear ---- */

/* One sgemm cut into blocks of rows of its output, one single-threaded call per block: C (M, N) = alpha · op(A) ·
 * op(B) + beta · C, row-major, where the blocks cut M (A's rows, or its columns when transposed). */
typedef struct gemm_job {
    bool trans_a, trans_b;
    int M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *C;
} gemm_job;

static void gemm_rows(int64_t begin, int64_t end, void *arg) {
    const gemm_job *g = arg;
    const float *a = g->A + (g->trans_a ? (size_t)begin : (size_t)begin * g->lda);
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans, g->trans_b ? CblasTrans : CblasNoTrans,
                (int)(end - begin), g->N, g->K, g->alpha, a, g->lda, g->B, g->ldb, g->beta,
                g->C + (size_t)begin * g->ldc, g->ldc);
}

static void gemm(thread_pool *pool, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    gemm_job g = {trans_a, trans_b, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C};
    /* every call packs all of op(B) again: blocks of at least 256 rows and two a thread keep that small next to
     * the multiply-adds */
    parallel_blocks(pool, M, 256, 2, gemm_rows, &g);
}

void train_linear_forward(thread_pool *pool, float *out, const float *inp, const float *weight, int N, int C, int OC) {
    /* out (N, OC) = inp (N, C) · weight (OC, C)ᵀ */
    gemm(pool, false, true, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC);
}

void train_linear_backward(thread_pool *pool, float *dinp, float *dweight, const float *dout, const float *inp,
                           const float *weight, int N, int C, int OC) {
    /* forward: out[n][o] = Σ_c inp[n][c] · weight[o][c] */
    if (dinp)  /* dinp (N, C) += dout (N, OC) · weight (OC, C) */
        gemm(pool, false, false, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
    /* dweight (OC, C) += dout (N, OC)ᵀ · inp (N, C) */
    gemm(pool, true, false, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
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
 * kernels/ops.c does), so training and inference rotate by the same amounts. sign −1 rotates by −angle (the
 * transpose); accumulate adds into out instead of writing it. Rows are the B·T tokens. */
typedef struct rope_job {
    float *out;
    const float *inp, *inv_freq;
    int T, H, hd;
    float sign;
    bool accumulate;
} rope_job;

static void rope_rows(int64_t begin, int64_t end, void *arg) {
    const rope_job *j = arg;
    const int half = j->hd / 2;
    for (int64_t row = begin; row < end; row++) {
        const int t = (int)(row % j->T);
        for (int k = 0; k < half; k++) {
            const float angle = (float)t * j->inv_freq[k];
            const float c = (float)cos((double)angle), s = j->sign * (float)sin((double)angle);
            for (int h = 0; h < j->H; h++) {
                const size_t off = ((size_t)row * j->H + h) * j->hd;
                const float x1 = j->inp[off + k], x2 = j->inp[off + k + half];
                const float y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;
                j->out[off + k] = j->accumulate ? j->out[off + k] + y1 : y1;
                j->out[off + k + half] = j->accumulate ? j->out[off + k + half] + y2 : y2;
            }
        }
    }
}

void train_rope_forward(thread_pool *pool, float *out, const float *inp, const float *inv_freq, int B, int T, int H,
                        int hd) {
    /* q_embed = q·cos + rotate_half(q)·sin, rotate_half(x) = cat(−x2, x1) */
    rope_job j = {out, inp, inv_freq, T, H, hd, 1.0f, false};
    train_parallel_for(pool, (int64_t)B * T, 64, rope_rows, &j);
}

void train_rope_backward(thread_pool *pool, float *dinp, const float *dout, const float *inv_freq, int B, int T, int H,
                         int hd) {
    /* forward: (y1, y2) = (x1·c − x2·s, x2·c + x1·s), a rotation R; dx = Rᵀ·dy is the rotation by −angle:
     * dx1 = dy1·c + dy2·s, dx2 = dy2·c − dy1·s */
    rope_job j = {dinp, dout, inv_freq, T, H, hd, -1.0f, true};
    train_parallel_for(pool, (int64_t)B * T, 64, rope_rows, &j);
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

/* The same attention as matrix products, a task per (sequence, KV head) with the query heads that share it (so
 * its dk, dv rows are its own), each on one thread. Causal: the T × T products go in blocks of ATT_BLOCK query
 * rows, and block i only reaches keys 0 … its last row, so little of the masked upper triangle is computed. */
enum { ATT_BLOCK = 128 };

typedef struct att_job {
    float *out, *att, *dq, *dk, *dv, *datt;
    const float *q, *k, *v, *dout, *att_in;
    int B, T, Hq, Hkv, hd;
} att_job;

static void att_forward_task(int task, int thread, void *arg) {
    (void)thread;
    const att_job *j = arg;
    const int T = j->T, hd = j->hd, group = j->Hq / j->Hkv, q_dim = j->Hq * hd, kv_dim = j->Hkv * hd;
    const int b = task / j->Hkv, kvh = task % j->Hkv;
    const float scale = 1.0f / sqrtf((float)hd);
    const float *kh = j->k + (size_t)b * T * kv_dim + (size_t)kvh * hd;
    const float *vh = j->v + (size_t)b * T * kv_dim + (size_t)kvh * hd;
    for (int h = kvh * group; h < (kvh + 1) * group; h++) { /* HF repeat_kv: consecutive query heads share */
        const float *qh = j->q + (size_t)b * T * q_dim + (size_t)h * hd;
        float *oh = j->out + (size_t)b * T * q_dim + (size_t)h * hd;
        float *p = j->att + ((size_t)b * j->Hq + h) * T * T;
        for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
            const int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T;
            /* scores (rows r0…r1, keys 0…r1) = q_h · k_hᵀ · scale */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, hd, scale, qh + (size_t)r0 * q_dim, q_dim,
                        kh, kv_dim, 0.0f, p + (size_t)r0 * T, T);
            for (int t = r0; t < r1; t++) {
                float *row = p + (size_t)t * T;
                softmax_forward_simd(row, t + 1);
                memset(row + t + 1, 0, (size_t)(T - t - 1) * sizeof(float)); /* the causal mask */
            }
            /* out_h (rows r0…r1) = att (rows r0…r1, keys 0…r1) · v_h (0…r1) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, hd, r1, 1.0f, p + (size_t)r0 * T, T, vh,
                        kv_dim, 0.0f, oh + (size_t)r0 * q_dim, q_dim);
        }
    }
}

void train_attention_forward(thread_pool *pool, float *out, float *att, const float *q, const float *k, const float *v,
                             int B, int T, int Hq, int Hkv, int hd) {
    att_job j = {out, att, NULL, NULL, NULL, NULL, q, k, v, NULL, NULL, B, T, Hq, Hkv, hd};
    thread_pool_run(pool, B * Hkv, att_forward_task, &j);
}

static void att_backward_task(int task, int thread, void *arg) {
    (void)thread;
    const att_job *j = arg;
    const int T = j->T, hd = j->hd, group = j->Hq / j->Hkv, q_dim = j->Hq * hd, kv_dim = j->Hkv * hd;
    const int b = task / j->Hkv, kvh = task % j->Hkv;
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t kv_off = (size_t)b * T * kv_dim + (size_t)kvh * hd;
    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
        const size_t q_off = (size_t)b * T * q_dim + (size_t)h * hd;
        const float *p = j->att_in + ((size_t)b * j->Hq + h) * T * T, *doh = j->dout + q_off;
        float *dp = j->datt + ((size_t)b * j->Hq + h) * T * T;
        for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
            const int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T;
            /* forward: out = att · v  →  datt = dout · vᵀ (rows r0…r1, keys 0…r1) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, hd, 1.0f, doh + (size_t)r0 * q_dim, q_dim,
                        j->v + kv_off, kv_dim, 0.0f, dp + (size_t)r0 * T, T);
            /* forward: att = softmax(scores) row by row  →  dscores = att ⊙ (datt − Σ_u att·datt) (0 above t) */
            for (int t = r0; t < r1; t++) {
                const float *pr = p + (size_t)t * T;
                float *dr = dp + (size_t)t * T;
                double pdp = 0;
                for (int u = 0; u <= t; u++) pdp += (double)pr[u] * dr[u];
                for (int u = 0; u <= t; u++) dr[u] = pr[u] * (dr[u] - (float)pdp);
                for (int u = t + 1; u < r1; u++) dr[u] = 0.0f;
            }
            /* forward: scores = q · kᵀ · scale  →  dq (rows r0…r1) += scale · dscores · k */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, hd, r1, scale, dp + (size_t)r0 * T, T,
                        j->k + kv_off, kv_dim, 1.0f, j->dq + q_off + (size_t)r0 * q_dim, q_dim);
        }
        /* the key side by blocks of keys c0…c1, which only the queries t ≥ c0 reach:
         * dv += attᵀ · dout, dk += scale · dscoresᵀ · q */
        for (int c0 = 0; c0 < T; c0 += ATT_BLOCK) {
            const int c1 = c0 + ATT_BLOCK < T ? c0 + ATT_BLOCK : T;
            const size_t corner = (size_t)c0 * T + c0;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c1 - c0, hd, T - c0, 1.0f, p + corner, T,
                        doh + (size_t)c0 * q_dim, q_dim, 1.0f, j->dv + kv_off + (size_t)c0 * kv_dim, kv_dim);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c1 - c0, hd, T - c0, scale, dp + corner, T,
                        j->q + q_off + (size_t)c0 * q_dim, q_dim, 1.0f, j->dk + kv_off + (size_t)c0 * kv_dim, kv_dim);
        }
    }
}

void train_attention_backward(thread_pool *pool, float *dq, float *dk, float *dv, float *datt, const float *dout,
                              const float *q, const float *k, const float *v, const float *att, int B, int T, int Hq,
                              int Hkv, int hd) {
    att_job j = {NULL, NULL, dq, dk, dv, datt, q, k, v, dout, att, B, T, Hq, Hkv, hd};
    thread_pool_run(pool, B * Hkv, att_backward_task, &j);
}

/* ---- SwiGLU ---- */

/* Element-wise ops over n values: blocks of [begin, end). */
typedef struct elem_job {
    float *out, *out2;
    const float *a, *b, *c;
} elem_job;

static void swiglu_forward_range(int64_t begin, int64_t end, void *arg) {
    const elem_job *j = arg;
    for (int64_t i = begin; i < end; i += INT32_MAX) { /* the inference kernel takes an int count */
        const int chunk = end - i < INT32_MAX ? (int)(end - i) : INT32_MAX;
        swiglu_forward(j->out + i, j->a + i, j->b + i, chunk);
    }
}

void train_swiglu_forward(thread_pool *pool, float *out, const float *gate, const float *up, int64_t n) {
    elem_job j = {out, NULL, gate, up, NULL};
    train_parallel_for(pool, n, 1 << 14, swiglu_forward_range, &j);
}

static void swiglu_backward_range(int64_t begin, int64_t end, void *arg) {
    const elem_job *j = arg;
    const float *gate = j->a, *up = j->b, *dout = j->c;
    for (int64_t i = begin; i < end; i++) {
        /* forward: out = silu(g)·up, silu(g) = g·σ(g), silu'(g) = σ(g)·(1 + g·(1 − σ(g))) */
        const float g = gate[i], sig = 1.0f / (1.0f + expf(-g));
        j->out[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
        j->out2[i] += dout[i] * g * sig;
    }
}

void train_swiglu_backward(thread_pool *pool, float *dgate, float *dup, const float *dout, const float *gate,
                           const float *up, int64_t n) {
    elem_job j = {dgate, dup, gate, up, dout};
    train_parallel_for(pool, n, 1 << 14, swiglu_backward_range, &j);
}

/* ---- residual ---- */

static void residual_forward_range(int64_t begin, int64_t end, void *arg) {
    const elem_job *j = arg;
    for (int64_t i = begin; i < end; i++) j->out[i] = j->a[i] + j->b[i];
}

void train_residual_forward(thread_pool *pool, float *out, const float *a, const float *b, int64_t n) {
    elem_job j = {out, NULL, a, b, NULL};
    train_parallel_for(pool, n, 1 << 15, residual_forward_range, &j);
}

static void residual_backward_range(int64_t begin, int64_t end, void *arg) {
    const elem_job *j = arg;
    /* forward: out = a + b */
    for (int64_t i = begin; i < end; i++) {
        j->out[i] += j->a[i];
        j->out2[i] += j->a[i];
    }
}

void train_residual_backward(thread_pool *pool, float *da, float *db, const float *dout, int64_t n) {
    elem_job j = {da, db, dout, NULL, NULL};
    train_parallel_for(pool, n, 1 << 15, residual_backward_range, &j);
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

typedef struct ce_job {
    float *losses, *dlogits;
    const float *logits;
    const int32_t *targets;
    float scale;
    int V;
} ce_job;

static void ce_forward_rows(int64_t begin, int64_t end, void *arg) {
    const ce_job *j = arg;
    for (int64_t n = begin; n < end; n++) {
        if (j->targets[n] < 0) {
            j->losses[n] = 0.0f;
            continue;
        }
        const float *z = j->logits + (size_t)n * j->V;
        /* loss = logsumexp(z) − z[target] */
        j->losses[n] = (float)(log_sum_exp(z, j->V, 1.0f, NULL) - z[j->targets[n]]);
    }
}

int train_crossentropy_forward(thread_pool *pool, float *losses, const float *logits, const int32_t *targets, int N,
                               int V) {
    ce_job j = {losses, NULL, logits, targets, 0.0f, V};
    train_parallel_for(pool, N, 4, ce_forward_rows, &j);
    int counted = 0;
    for (int n = 0; n < N; n++) counted += targets[n] >= 0;
    return counted;
}

static void ce_backward_rows(int64_t begin, int64_t end, void *arg) {
    const ce_job *j = arg;
    const int V = j->V;
    const bool in_place = j->dlogits == j->logits;
    for (int64_t n = begin; n < end; n++) {
        float *dz = j->dlogits + (size_t)n * V;
        if (j->targets[n] < 0) {
            if (in_place) memset(dz, 0, (size_t)V * sizeof(float));
            continue;
        }
        const float *z = j->logits + (size_t)n * V;
        /* forward: loss = logsumexp(z) − z[y]  →  dz = softmax(z) − onehot(y) */
        const double lse = log_sum_exp(z, V, 1.0f, NULL);
        const int32_t y = j->targets[n];
        for (int i = 0; i < V; i++) {
            const float g = j->scale * ((float)exp((double)z[i] - lse) - (i == y ? 1.0f : 0.0f));
            dz[i] = in_place ? g : dz[i] + g;
        }
    }
}

void train_crossentropy_backward(thread_pool *pool, float *dlogits, const float *logits, const int32_t *targets,
                                 float scale, int N, int V) {
    ce_job j = {NULL, dlogits, logits, targets, scale, V};
    train_parallel_for(pool, N, 4, ce_backward_rows, &j);
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
