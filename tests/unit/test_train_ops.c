/* test_train_ops.c — every training op's backward against central finite differences of its forward, sgemm against
 * the naive matmul, the whole model's backward (cross-entropy, and mixed with teacher KL) against finite differences,
 * the schedule, and checkpoint resume. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "train.h"

/* ---- harness: L = Σ out ⊙ R for a fixed random R; analytic dL/dx from backward(dout = R) vs central differences ---- */

static train_rng rng = {12345};
static float uniform(void) { return (float)((double)(train_rng_next(&rng) >> 11) / 9007199254740992.0) * 2.0f - 1.0f; }
static void fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * uniform();
}
static float *rand_array(size_t n, float scale) {
    float *x = malloc(n * sizeof(float));
    fill(x, n, scale);
    return x;
}
static float *zeros(size_t n) { return calloc(n, sizeof(float)); }

typedef double (*loss_fn)(void *ctx);

/* Perturbs x[i] by ±h and compares (L+ − L−)/2h with grad[i], for every i (or `max_checks` spread indices).
 * The loss is summed in double; the ops run in float, so h is large enough for float rounding to vanish. */
static double check_grad(const char *what, float *x, const float *grad, size_t n, loss_fn f, void *ctx, float h,
                         size_t max_checks) {
    double worst = 0;
    const size_t stride = max_checks && n > max_checks ? n / max_checks : 1;
    for (size_t i = 0; i < n; i += stride) {
        const float saved = x[i];
        x[i] = saved + h;
        const double lp = f(ctx);
        x[i] = saved - h;
        const double lm = f(ctx);
        x[i] = saved;
        const double fd = (lp - lm) / (2.0 * (double)h);
        const double err = fabs(fd - grad[i]) / (1e-2 + fabs(fd));
        if (err > worst) worst = err;
        CHECK_MSG(err < 2e-2, "%s[%zu]: backward %.6g vs finite difference %.6g", what, i, grad[i], fd);
    }
    return worst;
}

static double dot_d(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ---- per-op contexts ---- */

enum { N = 5, C = 7, OC = 9 };

typedef struct rms_ctx { float *out, *rstd, *inp, *w, *R; } rms_ctx;
static double rms_loss(void *p) {
    rms_ctx *c = p;
    train_rmsnorm_forward(NULL, c->out, c->rstd, c->inp, c->w, N, C, 1e-6f);
    return dot_d(c->out, c->R, N * C);
}
static void test_rmsnorm(void) {
    rms_ctx c = {zeros(N * C), zeros(N), rand_array(N * C, 1.5f), rand_array(C, 1.0f), rand_array(N * C, 1.0f)};
    float *dinp = zeros(N * C), *dw = zeros(C);
    rms_loss(&c);
    train_rmsnorm_backward(NULL, dinp, dw, c.R, c.inp, c.w, c.rstd, N, C);
    check_grad("rmsnorm dinp", c.inp, dinp, N * C, rms_loss, &c, 1e-2f, 0);
    check_grad("rmsnorm dweight", c.w, dw, C, rms_loss, &c, 1e-2f, 0);
    free(c.out), free(c.rstd), free(c.inp), free(c.w), free(c.R), free(dinp), free(dw);
}

typedef struct lin_ctx { float *out, *inp, *w, *R; } lin_ctx;
static double lin_loss(void *p) {
    lin_ctx *c = p;
    train_linear_forward(NULL, c->out, c->inp, c->w, N, C, OC);
    return dot_d(c->out, c->R, N * OC);
}
static void test_linear(void) {
    lin_ctx c = {zeros(N * OC), rand_array(N * C, 1.0f), rand_array(OC * C, 1.0f), rand_array(N * OC, 1.0f)};
    float *ref = zeros(N * OC), *dinp = zeros(N * C), *dw = zeros(OC * C);
    lin_loss(&c);
    train_matmul_ref(ref, c.inp, c.w, N, C, OC);
    for (int i = 0; i < N * OC; i++) CHECK_NEAR(c.out[i], ref[i], 1e-5 * (1 + fabs(ref[i])));
    train_linear_backward(NULL, dinp, dw, c.R, c.inp, c.w, N, C, OC);
    check_grad("linear dinp", c.inp, dinp, N * C, lin_loss, &c, 1e-2f, 0);
    check_grad("linear dweight", c.w, dw, OC * C, lin_loss, &c, 1e-2f, 0);
    free(c.out), free(c.inp), free(c.w), free(c.R), free(ref), free(dinp), free(dw);
}

typedef struct emb_ctx { float *out, *wte, *R; const int32_t *ids; } emb_ctx;
static double emb_loss(void *p) {
    emb_ctx *c = p;
    train_embedding_forward(c->out, c->ids, c->wte, N, C);
    return dot_d(c->out, c->R, N * C);
}
static void test_embedding(void) {
    const int32_t ids[N] = {3, 0, 3, 10, 6};  /* a repeated id accumulates */
    emb_ctx c = {zeros(N * C), rand_array(11 * C, 1.0f), rand_array(N * C, 1.0f), ids};
    float *dwte = zeros(11 * C);
    emb_loss(&c);
    train_embedding_backward(dwte, c.R, ids, N, C);
    check_grad("embedding dwte", c.wte, dwte, 11 * C, emb_loss, &c, 1e-2f, 0);
    free(c.out), free(c.wte), free(c.R), free(dwte);
}

enum { RB = 2, RT = 3, RH = 3, RHD = 6 };
typedef struct rope_ctx { float *out, *inp, *inv_freq, *R; } rope_ctx;
static double rope_loss(void *p) {
    rope_ctx *c = p;
    train_rope_forward(NULL, c->out, c->inp, c->inv_freq, RB, RT, RH, RHD);
    return dot_d(c->out, c->R, RB * RT * RH * RHD);
}
static void test_rope(void) {
    const int n = RB * RT * RH * RHD;
    float inv_freq[RHD / 2];
    rope_inv_freq(inv_freq, RHD, 10000.0f);
    rope_ctx c = {zeros(n), rand_array(n, 1.0f), inv_freq, rand_array(n, 1.0f)};
    float *dinp = zeros(n), *x = malloc(n * sizeof(float));
    rope_loss(&c);
    /* the training rope equals the inference kernel at position t */
    memcpy(x, c.inp, n * sizeof(float));
    for (int b = 0; b < RB; b++)
        for (int t = 0; t < RT; t++) {
            float cos_sin[RHD];
            rope_angles(cos_sin, RHD, t, inv_freq);
            rope_forward(x + ((size_t)b * RT + t) * RH * RHD, RH, RHD, cos_sin);
        }
    for (int i = 0; i < n; i++) CHECK_NEAR(x[i], c.out[i], 1e-6);
    train_rope_backward(NULL, dinp, c.R, inv_freq, RB, RT, RH, RHD);
    check_grad("rope dinp", c.inp, dinp, n, rope_loss, &c, 1e-2f, 0);
    free(c.out), free(c.inp), free(c.R), free(dinp), free(x);
}

typedef struct att_ctx { float *out, *att, *q, *k, *v, *R; int B, T, Hq, Hkv, hd; } att_ctx;
static double att_loss(void *p) {
    att_ctx *c = p;
    train_attention_forward(NULL, c->out, c->att, c->q, c->k, c->v, c->B, c->T, c->Hq, c->Hkv, c->hd);
    return dot_d(c->out, c->R, (size_t)c->B * c->T * c->Hq * c->hd);
}
static void test_attention(int B, int T, int Hq, int Hkv, int hd) {
    const size_t nq = (size_t)B * T * Hq * hd, nkv = (size_t)B * T * Hkv * hd, natt = (size_t)B * Hq * T * T;
    att_ctx c = {zeros(nq), zeros(natt), rand_array(nq, 1.5f), rand_array(nkv, 1.5f), rand_array(nkv, 1.0f),
                 rand_array(nq, 1.0f), B, T, Hq, Hkv, hd};
    float *dq = zeros(nq), *dk = zeros(nkv), *dv = zeros(nkv), *datt = zeros(natt);
    att_loss(&c);
    /* causal: each probability row sums to one over u ≤ t and is zero after */
    for (int r = 0; r < B * Hq * T; r++) {
        const int t = r % T;
        double s = 0;
        for (int u = 0; u < T; u++) s += c.att[(size_t)r * T + u];
        CHECK_NEAR(s, 1.0, 1e-5);
        CHECK(t == T - 1 || c.att[(size_t)r * T + T - 1] == 0.0f);
    }
    train_attention_backward(NULL, dq, dk, dv, datt, c.R, c.q, c.k, c.v, c.att, B, T, Hq, Hkv, hd);
    check_grad("attention dq", c.q, dq, nq, att_loss, &c, 1e-2f, 0);
    check_grad("attention dk", c.k, dk, nkv, att_loss, &c, 1e-2f, 0);
    check_grad("attention dv", c.v, dv, nkv, att_loss, &c, 1e-2f, 0);
    /* the sgemm versions equal the loop reference (forward again: the finite differences left perturbed outputs) */
    att_loss(&c);
    float *out2 = zeros(nq), *att2 = zeros(natt), *dq2 = zeros(nq), *dk2 = zeros(nkv), *dv2 = zeros(nkv);
    train_attention_forward_ref(out2, att2, c.q, c.k, c.v, B, T, Hq, Hkv, hd);
    train_attention_backward_ref(dq2, dk2, dv2, datt, c.R, c.q, c.k, c.v, att2, B, T, Hq, Hkv, hd);
    for (size_t i = 0; i < nq; i++) CHECK_NEAR(out2[i], c.out[i], 1e-5 * (1 + fabs(out2[i])));
    for (size_t i = 0; i < natt; i++) CHECK_NEAR(att2[i], c.att[i], 1e-6);
    for (size_t i = 0; i < nq; i++) CHECK_NEAR(dq2[i], dq[i], 1e-5 * (1 + fabs(dq2[i])));
    for (size_t i = 0; i < nkv; i++) CHECK_NEAR(dk2[i], dk[i], 1e-5 * (1 + fabs(dk2[i])));
    for (size_t i = 0; i < nkv; i++) CHECK_NEAR(dv2[i], dv[i], 1e-5 * (1 + fabs(dv2[i])));
    free(out2), free(att2), free(dq2), free(dk2), free(dv2);
    free(c.out), free(c.att), free(c.q), free(c.k), free(c.v), free(c.R), free(dq), free(dk), free(dv), free(datt);
}

/* T over several blocks of query rows (the last one partial), on a pool of two threads: the blocked products equal
 * the loop reference, and the probabilities above the diagonal are exactly zero. */
static void test_attention_blocks(thread_pool *pool) {
    const int B = 2, T = 300, Hq = 4, Hkv = 2, hd = 16;
    const size_t nq = (size_t)B * T * Hq * hd, nkv = (size_t)B * T * Hkv * hd, natt = (size_t)B * Hq * T * T;
    float *q = rand_array(nq, 1.5f), *k = rand_array(nkv, 1.5f), *v = rand_array(nkv, 1.0f), *R = rand_array(nq, 1.0f);
    float *out = zeros(nq), *att = rand_array(natt, 1.0f), *out2 = zeros(nq), *att2 = zeros(natt);
    float *dq = zeros(nq), *dk = zeros(nkv), *dv = zeros(nkv), *dq2 = zeros(nq), *dk2 = zeros(nkv), *dv2 = zeros(nkv);
    float *datt = rand_array(natt, 1.0f), *datt2 = zeros(natt);
    train_attention_forward(pool, out, att, q, k, v, B, T, Hq, Hkv, hd);
    train_attention_backward(pool, dq, dk, dv, datt, R, q, k, v, att, B, T, Hq, Hkv, hd);
    train_attention_forward_ref(out2, att2, q, k, v, B, T, Hq, Hkv, hd);
    train_attention_backward_ref(dq2, dk2, dv2, datt2, R, q, k, v, att2, B, T, Hq, Hkv, hd);
    for (size_t i = 0; i < nq; i++) CHECK_NEAR(out2[i], out[i], 1e-5 * (1 + fabs(out2[i])));
    for (size_t i = 0; i < natt; i++) CHECK_NEAR(att2[i], att[i], 1e-6);
    for (size_t r = 0; r < (size_t)B * Hq * T; r++)
        for (int u = (int)(r % T) + 1; u < T; u++) CHECK(att[r * T + u] == 0.0f);
    for (size_t i = 0; i < nq; i++) CHECK_NEAR(dq2[i], dq[i], 1e-4 * (1 + fabs(dq2[i])));
    for (size_t i = 0; i < nkv; i++) CHECK_NEAR(dk2[i], dk[i], 1e-4 * (1 + fabs(dk2[i])));
    for (size_t i = 0; i < nkv; i++) CHECK_NEAR(dv2[i], dv[i], 1e-4 * (1 + fabs(dv2[i])));
    free(q), free(k), free(v), free(R), free(out), free(att), free(out2), free(att2);
    free(dq), free(dk), free(dv), free(dq2), free(dk2), free(dv2), free(datt), free(datt2);
}

/* max |a − b| / max |b|: the error at the scale of the result (a sum of products cancels to small values). */
static double max_rel_diff(const float *a, const float *b, size_t n) {
    double worst = 0, top = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        top = fmax(top, fabs((double)b[i]));
    }
    return worst / (top > 0 ? top : 1);
}

/* Every op that takes a pool gives on two threads what it gives on the calling thread alone: the same values for
 * the row-wise ops (the norm's weight gradient too: fixed blocks), and the GEMMs within float rounding. */
static void test_ops_on_pool(thread_pool *pool) {
    enum { PN = 700, PC = 64, POC = 96, PT = 350 };
    float *x = rand_array(PN * PC, 1.5f), *w = rand_array(PC, 1.0f), *dy = rand_array(PN * PC, 1.0f);
    float *y[2], *rstd[2], *dx[2], *dw[2];
    for (int p = 0; p < 2; p++) {
        thread_pool *use = p ? pool : NULL;
        y[p] = zeros(PN * PC), rstd[p] = zeros(PN), dx[p] = zeros(PN * PC), dw[p] = zeros(PC);
        train_rmsnorm_forward(use, y[p], rstd[p], x, w, PN, PC, 1e-6f);
        train_rmsnorm_backward(use, dx[p], dw[p], dy, x, w, rstd[p], PN, PC);
    }
    CHECK(memcmp(y[0], y[1], PN * PC * sizeof(float)) == 0 && memcmp(rstd[0], rstd[1], PN * sizeof(float)) == 0);
    CHECK(memcmp(dx[0], dx[1], PN * PC * sizeof(float)) == 0 && memcmp(dw[0], dw[1], PC * sizeof(float)) == 0);

    /* linear: forward, dinp and dweight against the loop reference */
    float *wm = rand_array(POC * PC, 1.0f), *lo = zeros(PN * POC), *ref = zeros(PN * POC),
          *dout = rand_array(PN * POC, 1.0f);
    float *dinp = zeros(PN * PC), *dwm = zeros(POC * PC), *dinp_ref = zeros(PN * PC), *dwm_ref = zeros(POC * PC);
    float *wt = zeros(PC * POC), *doutt = zeros(POC * PN), *xt = zeros(PC * PN);
    train_linear_forward(pool, lo, x, wm, PN, PC, POC);
    train_matmul_ref(ref, x, wm, PN, PC, POC);
    CHECK(max_rel_diff(lo, ref, PN * POC) < 1e-4);
    train_linear_backward(pool, dinp, dwm, dout, x, wm, PN, PC, POC);
    for (int o = 0; o < POC; o++)
        for (int c = 0; c < PC; c++) wt[c * POC + o] = wm[o * PC + c];
    for (int n = 0; n < PN; n++) {
        for (int o = 0; o < POC; o++) doutt[o * PN + n] = dout[n * POC + o];
        for (int c = 0; c < PC; c++) xt[c * PN + n] = x[n * PC + c];
    }
    train_matmul_ref(dinp_ref, dout, wt, PN, POC, PC); /* dinp = dout · weight */
    train_matmul_ref(dwm_ref, doutt, xt, POC, PN, PC); /* dweight = doutᵀ · inp */
    CHECK(max_rel_diff(dinp, dinp_ref, PN * PC) < 1e-4);
    CHECK(max_rel_diff(dwm, dwm_ref, POC * PC) < 1e-4);

    /* rope, swiglu, residual, cross-entropy: bit for bit */
    float inv_freq[PC / 4];
    rope_inv_freq(inv_freq, PC / 2, 10000.0f);
    float *r[2], *dr[2], *g[2], *dg[2], *du[2], *ce[2], *dce[2];
    int32_t *tg = malloc(PN * sizeof(int32_t));
    for (int n = 0; n < PN; n++) tg[n] = n % 5 == 0 ? -1 : (n * 7) % PC;
    int counted[2];
    for (int p = 0; p < 2; p++) {
        thread_pool *use = p ? pool : NULL;
        r[p] = zeros(PN * PC), dr[p] = zeros(PN * PC), g[p] = zeros(PN * PC), dg[p] = zeros(PN * PC);
        du[p] = zeros(PN * PC), ce[p] = zeros(PN), dce[p] = zeros(PN * PC);
        train_rope_forward(use, r[p], x, inv_freq, 2, PT, 2, PC / 2);
        train_rope_backward(use, dr[p], dy, inv_freq, 2, PT, 2, PC / 2);
        train_swiglu_forward(use, g[p], x, dy, PN * PC);
        train_swiglu_backward(use, dg[p], du[p], dy, x, y[0], PN * PC);
        train_residual_backward(use, dg[p], du[p], x, PN * PC);
        counted[p] = train_crossentropy_forward(use, ce[p], x, tg, PN, PC);
        train_crossentropy_backward(use, dce[p], x, tg, 0.5f, PN, PC);
    }
    CHECK(counted[0] == counted[1] && counted[0] == PN - PN / 5);
    CHECK(memcmp(r[0], r[1], PN * PC * sizeof(float)) == 0 && memcmp(dr[0], dr[1], PN * PC * sizeof(float)) == 0);
    CHECK(memcmp(g[0], g[1], PN * PC * sizeof(float)) == 0 && memcmp(dg[0], dg[1], PN * PC * sizeof(float)) == 0);
    CHECK(memcmp(du[0], du[1], PN * PC * sizeof(float)) == 0 && memcmp(ce[0], ce[1], PN * sizeof(float)) == 0);
    CHECK(memcmp(dce[0], dce[1], PN * PC * sizeof(float)) == 0);
    for (int p = 0; p < 2; p++) {
        free(y[p]), free(rstd[p]), free(dx[p]), free(dw[p]), free(r[p]), free(dr[p]), free(g[p]), free(dg[p]);
        free(du[p]), free(ce[p]), free(dce[p]);
    }
    free(x), free(w), free(dy), free(wm), free(lo), free(ref), free(dout), free(dinp), free(dwm), free(dinp_ref);
    free(dwm_ref), free(wt), free(doutt), free(xt), free(tg);
}

typedef struct glu_ctx { float *out, *gate, *up, *R; } glu_ctx;
static double glu_loss(void *p) {
    glu_ctx *c = p;
    train_swiglu_forward(NULL, c->out, c->gate, c->up, N * C);
    return dot_d(c->out, c->R, N * C);
}
static void test_swiglu_residual(void) {
    glu_ctx c = {zeros(N * C), rand_array(N * C, 4.0f), rand_array(N * C, 2.0f), rand_array(N * C, 1.0f)};
    float *dg = zeros(N * C), *du = zeros(N * C);
    glu_loss(&c);
    train_swiglu_backward(NULL, dg, du, c.R, c.gate, c.up, N * C);
    check_grad("swiglu dgate", c.gate, dg, N * C, glu_loss, &c, 1e-2f, 0);
    check_grad("swiglu dup", c.up, du, N * C, glu_loss, &c, 1e-2f, 0);
    /* residual: out = a + b, so da = db = dout exactly */
    float *da = zeros(N * C), *db = zeros(N * C);
    train_residual_backward(NULL, da, db, c.R, N * C);
    train_residual_forward(NULL, c.out, c.gate, c.up, N * C);
    for (int i = 0; i < N * C; i++) {
        CHECK(da[i] == c.R[i] && db[i] == c.R[i]);
        CHECK(c.out[i] == c.gate[i] + c.up[i]);
    }
    free(c.out), free(c.gate), free(c.up), free(c.R), free(dg), free(du), free(da), free(db);
}

enum { V = 13, K = 4 };
typedef struct ce_ctx { float *losses, *logits; const int32_t *targets; const int32_t *tids; const float *tl; } ce_ctx;
static double ce_loss(void *p) {
    ce_ctx *c = p;
    int counted = train_crossentropy_forward(NULL, c->losses, c->logits, c->targets, N, V);
    double s = 0;
    for (int n = 0; n < N; n++) s += c->losses[n];
    return s / counted;
}
static double kl_loss(void *p) {
    ce_ctx *c = p;
    train_kl_topk_forward(c->losses, c->logits, c->tids, c->tl, 1.5f, N, V, K);
    double s = 0;
    for (int n = 0; n < N; n++) s += c->losses[n];
    return s / N;
}
static void test_losses(void) {
    const int32_t targets[N] = {4, -1, 0, 12, 4};
    const int32_t tids[N * K] = {1, 2, 3, 4, 0, 12, -1, 5, 7, 8, 9, 10, 11, 3, 2, 6, 12, 0, 1, 2};
    const float tl[N * K] = {3, 1, 0.5f, -1, 2, 2, 0, -3, 1, 1, 1, 1, 0, 4, -2, 1, 5, 4, 3, 2};
    ce_ctx c = {zeros(N), rand_array(N * V, 3.0f), targets, tids, tl};
    float *dl = zeros(N * V);
    CHECK(train_crossentropy_forward(NULL, c.losses, c.logits, targets, N, V) == 4);
    CHECK(c.losses[1] == 0.0f);
    train_crossentropy_backward(NULL, dl, c.logits, targets, 0.25f, N, V);
    check_grad("crossentropy dlogits", c.logits, dl, N * V, ce_loss, &c, 1e-2f, 0);
    /* in place (the model's path) gives the same numbers */
    float *z = malloc(N * V * sizeof(float));
    memcpy(z, c.logits, N * V * sizeof(float));
    train_crossentropy_backward(NULL, z, z, targets, 0.25f, N, V);
    for (int i = 0; i < N * V; i++) CHECK_NEAR(z[i], dl[i], 1e-7);

    /* KL: zero when the student reproduces the teacher's top-k exactly and puts no mass elsewhere (approximately) */
    memset(dl, 0, N * V * sizeof(float));
    kl_loss(&c);
    for (int n = 0; n < N; n++) CHECK(c.losses[n] > 0);
    train_kl_topk_backward(dl, c.logits, tids, tl, 1.5f, 1.0f / N, N, V, K);
    check_grad("kl_topk dlogits", c.logits, dl, N * V, kl_loss, &c, 1e-2f, 0);
    float zs[V], kl;
    const int32_t ids1[K] = {0, 1, 2, 3};
    const float t1[K] = {2, 1, 0, -1};
    for (int j = 0; j < V; j++) zs[j] = j < K ? t1[j] : -60.0f;
    train_kl_topk_forward(&kl, zs, ids1, t1, 1.0f, 1, V, K);
    CHECK_NEAR(kl, 0.0, 1e-6);
    free(c.losses), free(c.logits), free(dl), free(z);
}

/* ---- the whole model against finite differences ---- */

static qwen3_config tiny_config(bool tied) {
    qwen3_config cfg = {.n_layers = 2, .dim = 8, .ffn_dim = 10, .n_heads = 4, .n_kv_heads = 2, .head_dim = 6,
                        .vocab_size = 13, .context_length = 64, .rope_theta = 10000.0f, .rms_eps = 1e-6f,
                        .tied_embeddings = tied};
    return cfg;
}

typedef struct model_ctx { train_model *m; const int32_t *in, *tg; const train_teacher *teacher; int B, T; } model_ctx;
static double model_loss(void *p) {
    model_ctx *c = p;
    return train_forward_distill(c->m, c->in, c->tg, c->teacher, c->B, c->T);
}

static void test_model(bool tied, bool distill, thread_pool *pool) {
    qwen3_config cfg = tiny_config(tied);
    train_model m;
    CHECK_OK(train_model_init(&m, &cfg, 2, 5));
    m.pool = pool;
    train_rng r = {7};
    train_model_init_random(&m, &r, 0.5f);
    for (int i = 0; i < m.n_tensors; i++)  /* norm weights away from 1 so their gradients are generic */
        if (m.tensors[i].n_dims == 1)
            for (size_t j = 0; j < m.tensors[i].numel; j++) m.params[m.tensors[i].offset + j] += 0.3f * uniform();
    const int32_t in[10] = {1, 5, 12, 0, 7, 3, 3, 9, 2, 11}, tg[10] = {5, 12, 0, 7, -1, 3, 9, 2, 11, 4};
    /* teacher top-3 per position (one position without a teacher), loss = 0.4·CE + 0.6·KL at temperature 2 */
    int32_t tids[30];
    float tl[30];
    for (int i = 0; i < 30; i++) {
        tids[i] = (i * 7 + 3) % 13;
        tl[i] = 2.0f * uniform();
    }
    tids[12] = -1;  /* position 4: no teacher distribution */
    const train_teacher teacher = {tids, tl, 3, 2.0f, 0.6f};
    model_ctx c = {&m, in, tg, distill ? &teacher : NULL, 2, 5};
    model_loss(&c);
    train_zero_grad(&m);
    train_backward(&m);
    float *grads = malloc(m.n_params * sizeof(float));
    memcpy(grads, m.grads, m.n_params * sizeof(float));
    for (int i = 0; i < m.n_tensors; i++) {
        const train_tensor *t = &m.tensors[i];
        double worst = check_grad(t->name, m.params + t->offset, grads + t->offset, t->numel, model_loss, &c, 1e-2f,
                                  24);
        (void)worst;
    }
    free(grads);
    train_model_free(&m);
}

/* ---- gradient accumulation: two halves with loss_scale 1/2 give the gradient of the whole batch ---- */

static void test_accumulation(void) {
    qwen3_config cfg = tiny_config(false);
    train_model m;
    CHECK_OK(train_model_init(&m, &cfg, 2, 5));
    train_rng r = {11};
    train_model_init_random(&m, &r, 0.5f);
    const int32_t in[10] = {1, 5, 12, 0, 7, 3, 3, 9, 2, 11}, tg[10] = {5, 12, 0, 7, 4, 3, 9, 2, 11, 4};
    train_forward(&m, in, tg, 2, 5);
    train_zero_grad(&m);
    train_backward(&m);
    float *whole = malloc(m.n_params * sizeof(float));
    memcpy(whole, m.grads, m.n_params * sizeof(float));
    train_zero_grad(&m);
    m.loss_scale = 0.5f;
    for (int half = 0; half < 2; half++) {
        train_forward(&m, in + 5 * half, tg + 5 * half, 1, 5);
        train_backward(&m);
    }
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < m.n_params; i++) {
        max_diff = fmax(max_diff, fabs((double)m.grads[i] - whole[i]));
        max_ref = fmax(max_ref, fabs((double)whole[i]));
    }
    CHECK_MSG(max_diff <= 1e-5 * max_ref, "accumulated gradient differs by %.3g (max %.3g)", max_diff, max_ref);
    free(whole);
    train_model_free(&m);
}

/* ---- schedule, clipping ---- */

static void test_schedule_clip(void) {
    const float lr = 1e-3f, lo = 1e-4f;
    CHECK_NEAR(train_lr_schedule(0, 4, 20, lr, lo), lr / 4, 1e-9);
    CHECK_NEAR(train_lr_schedule(3, 4, 20, lr, lo), lr, 1e-9);
    CHECK_NEAR(train_lr_schedule(12, 4, 20, lr, lo), (lr + lo) / 2, 1e-8);  /* halfway through the cosine */
    CHECK_NEAR(train_lr_schedule(20, 4, 20, lr, lo), lo, 1e-9);
    for (int s = 4; s < 20; s++) CHECK(train_lr_schedule(s + 1, 4, 20, lr, lo) <= train_lr_schedule(s, 4, 20, lr, lo));

    qwen3_config cfg = tiny_config(true);
    train_model m;
    CHECK_OK(train_model_init(&m, &cfg, 1, 2));
    fill(m.grads, m.n_params, 1.0f);
    double ss = 0;
    for (size_t i = 0; i < m.n_params; i++) ss += (double)m.grads[i] * m.grads[i];
    CHECK_NEAR(train_clip_grad_norm(&m, 0.5f), sqrt(ss), 1e-4 * sqrt(ss));
    CHECK_NEAR(train_clip_grad_norm(&m, 0), 0.5, 1e-5);
    train_model_free(&m);
}

/* ---- checkpoint: 2 steps + save + load into a fresh model + 2 steps == 4 uninterrupted steps, bit for bit ---- */

static void run_steps(train_model *m, int from, int to) {
    const int32_t in[10] = {1, 5, 12, 0, 7, 3, 3, 9, 2, 11}, tg[10] = {5, 12, 0, 7, 1, 3, 9, 2, 11, 4};
    train_adamw opt = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f};
    for (int s = from; s < to; s++) {
        train_forward(m, in, tg, 2, 5);
        train_zero_grad(m);
        train_backward(m);
        train_clip_grad_norm(m, 1.0f);
        opt.lr = train_lr_schedule(s, 1, 4, 1e-2f, 1e-3f);
        train_adamw_update(m, &opt, s + 1);
    }
}

static void test_checkpoint(void) {
    qwen3_config cfg = tiny_config(false);
    train_model a, b;
    CHECK_OK(train_model_init(&a, &cfg, 2, 5));
    CHECK_OK(train_model_init(&b, &cfg, 2, 5));
    train_rng r = {3};
    train_model_init_random(&a, &r, 0.3f);
    memcpy(b.params, a.params, a.n_params * sizeof(float));
    run_steps(&a, 0, 4);

    run_steps(&b, 0, 2);
    char path[] = "/tmp/tandem_ckpt_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    train_progress p = {2, 99, 17, 5}, q;
    CHECK_OK(train_checkpoint_save(&b, &p, path));
    train_model_free(&b);
    CHECK_OK(train_model_init(&b, &cfg, 2, 5));
    CHECK_OK(train_checkpoint_load(&b, &q, path));
    CHECK(q.step == 2 && q.rng_state == 99 && q.data_pos == 17 && q.run_hash == 5);
    run_steps(&b, 2, 4);
    CHECK(memcmp(a.params, b.params, a.n_params * sizeof(float)) == 0);
    CHECK(memcmp(a.adam_v, b.adam_v, a.n_params * sizeof(float)) == 0);

    /* a checkpoint of another shape is refused by name */
    qwen3_config other = cfg;
    other.ffn_dim = 12;
    train_model c;
    CHECK_OK(train_model_init(&c, &other, 2, 5));
    CHECK_FAILS(train_checkpoint_load(&c, &q, path), TANDEM_ERR_MISMATCH, "intermediate_size");
    train_model_free(&c);
    unlink(path);
    train_model_free(&a);
    train_model_free(&b);
}

/* Q8_0 export takes weights that weight decay pushed below 2^-30 (flushed to zero) and still refuses NaN. */
static void test_export_tiny_weights(void) {
    qwen3_config cfg = {.n_layers = 1, .dim = 32, .ffn_dim = 32, .n_heads = 2, .n_kv_heads = 1, .head_dim = 16,
                        .vocab_size = 13, .context_length = 64, .rope_theta = 10000.0f, .rms_eps = 1e-6f,
                        .tied_embeddings = true};
    train_model m;
    CHECK_OK(train_model_init(&m, &cfg, 1, 4));
    train_rng r = {5};
    train_model_init_random(&m, &r, 0.02f);
    m.params[m.n_params / 2] = 1e-12f;
    m.params[m.n_params / 3] = -0x1p-126f;
    char path[] = "/tmp/tandem_export_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_OK(train_export_gguf(&m, path, TANDEM_TYPE_Q8_0, "tiny", NULL));
    m.params[m.n_params / 2] = NAN;
    CHECK_FAILS(train_export_gguf(&m, path, TANDEM_TYPE_Q8_0, "tiny", NULL), TANDEM_ERR_FORMAT, "diverged");
    unlink(path);
    train_model_free(&m);
}

int main(void) {
    test_rmsnorm();
    test_linear();
    test_embedding();
    test_rope();
    test_attention(2, 5, 4, 2, 6);
    test_attention(1, 7, 3, 1, 4);
    test_attention(1, 4, 2, 2, 8);
    thread_pool *pool = NULL;
    CHECK_OK(thread_pool_create(2, &pool));
    test_attention_blocks(pool);
    test_attention_blocks(NULL);
    test_ops_on_pool(pool);
    test_swiglu_residual();
    test_losses();
    test_model(true, false, NULL);
    test_model(false, false, pool);
    test_model(false, true, pool);
    test_accumulation();
    test_schedule_clip();
    test_checkpoint();
    test_export_tiny_weights();
    thread_pool_free(pool);
    return test_summary();
}
