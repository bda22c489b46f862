/* test_quant.c — every quantized weight type against tests/golden/quant (gguf-py's numpy reference, ggml's C
 * quantizer): dequantize, quantize, dot products, matmul and the type table. argv[1]: the tests/golden dir. */
#include <jansson.h>
#include <stdlib.h>
#include <unistd.h>

#include "kernels.h"
#include "kernels_isa.h"
#include "safetensors.h"
#include "test.h"

typedef struct quant_case {
    tandem_type type;
    /* Ceiling on rms(dequant(quantize(x)) − x) / rms(x) for every non-zero golden row. Empirical: about
     * 1.3 × the worst row of the golden inputs (heavy-tailed row for most types). A wrong layout or a
     * broken search lands far above (a swapped nibble order alone gives ≈ 1.4). Bit-exactness with the
     * references (below) is the real guarantee; this bound also holds when the golden has no q_ggml. */
    double rel_rms_bound;
} quant_case;

static const quant_case CASES[] = {
    {TANDEM_TYPE_Q4_0, 0.20},   {TANDEM_TYPE_Q4_1, 0.14}, {TANDEM_TYPE_Q5_0, 0.10}, {TANDEM_TYPE_Q5_1, 0.07},
    {TANDEM_TYPE_Q8_0, 0.013},  {TANDEM_TYPE_IQ4_NL, 0.15}, {TANDEM_TYPE_Q2_K, 0.48}, {TANDEM_TYPE_Q3_K, 0.28},
    {TANDEM_TYPE_Q4_K, 0.13},   {TANDEM_TYPE_Q5_K, 0.065}, {TANDEM_TYPE_Q6_K, 0.036},
};
enum { N_CASES = sizeof CASES / sizeof CASES[0] };

static uint64_t rng_state = 98765;
static float frand(void) {  /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

/* The tensor `name` of dtype `dtype`, or NULL (with a failed check when `required`). */
static const st_tensor *get(const st_set *s, const char *type, const char *name, const char *dtype, bool required) {
    const st_tensor *t = safetensors_find(s, name);
    if (!t) {
        if (required) CHECK_MSG(t != NULL, "%s: tensor %s missing", type, name);
        return NULL;
    }
    CHECK_MSG(strcmp(t->dtype, dtype) == 0, "%s: %s has dtype %s, expected %s", type, name, t->dtype, dtype);
    return strcmp(t->dtype, dtype) == 0 ? t : NULL;
}

/* Bit-for-bit equality of two float arrays (so −0 ≠ +0 too); reports the first difference. */
static void check_same_bits(const char *what, const char *type, const float *got, const float *want, int64_t n) {
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], 4) != 0) {
            if (first < 0) first = i;
            bad++;
        }
    CHECK_MSG(bad == 0, "%s %s: %lld of %lld values differ, first at %lld: %.9g vs %.9g", type, what,
              (long long)bad, (long long)n, (long long)first, first >= 0 ? got[first] : 0.0,
              first >= 0 ? want[first] : 0.0);
}

static void check_same_bytes(const char *what, const char *type, const uint8_t *got, const uint8_t *want,
                             int64_t n, int32_t block_bytes) {
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (got[i] != want[i]) {
            if (first < 0) first = i;
            bad++;
        }
    CHECK_MSG(bad == 0, "%s %s: %lld of %lld bytes differ, first in block %lld (byte %lld)", type, what,
              (long long)bad, (long long)n, first >= 0 ? (long long)(first / block_bytes) : -1LL,
              first >= 0 ? (long long)(first % block_bytes) : -1LL);
}

/* dot_row against a double-precision dot of the dequantized row. Tolerance: the first-order worst case
 * of the f32 summation tree (a product and at most 256/16 + 16 lane additions per chunk, one addition
 * per chunk or block for the row sum: fewer than n/16 + 34 roundings on any term) times Σ|w·x|. */
static void check_dot(tandem_type t, const uint8_t *row, int64_t n) {
    float *x = malloc(sizeof(float) * (size_t)n), *w = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = frand();
    dequantize_row(t, row, w, n);
    double ref = 0, mag = 0;
    for (int64_t i = 0; i < n; i++) {
        ref += (double)w[i] * x[i];
        mag += fabs((double)w[i] * x[i]);
    }
    const double got = dot_row(t, row, x, n), tol = ((double)n / 16 + 34) * 0x1p-24 * mag;
    CHECK_MSG(fabs(got - ref) <= tol, "%s dot_row n=%lld: %.9g vs %.9g (tol %g)", tandem_type_name(t),
              (long long)n, got, ref, tol);
    free(x);
    free(w);
}

static void check_type(const char *golden, const quant_case *c) {
    const tandem_type t = c->type;
    const char *name = tandem_type_name(t);
    const int32_t bs = tandem_type_block_size(t), ts = tandem_type_size(t);
    char path[4096];
    snprintf(path, sizeof path, "%s/quant/%s.safetensors", golden, name);
    st_set *s = NULL;
    CHECK_OK(safetensors_open_file(path, &s));
    if (!s) return;
    CHECK_MSG(kernel_type_supported(t) && kernel_can_quantize(t), "%s not supported", name);

    const st_tensor *info = get(s, name, "type_info", "I64", true);
    if (info && info->nbytes == 24) {
        int64_t v[3];
        memcpy(v, info->data, sizeof v);
        CHECK_MSG(v[0] == t && v[1] == bs && v[2] == ts,
                  "%s: golden type_info {%lld, %lld, %lld}, tandem {%d, %d, %d}", name, (long long)v[0],
                  (long long)v[1], (long long)v[2], (int)t, bs, ts);
    }

    /* 1. random valid blocks: dequantize_row == gguf-py bit for bit. Both form d·scale (exact: an f16
     * times a ≤ 8-bit integer), times the quant (exact: ≤ 24 significant bits, no overflow or underflow
     * for finite f16 inputs), then one rounded add of the min; so there is one rounding, the same in
     * both, and the tolerance is zero. */
    const st_tensor *raw = get(s, name, "raw", "U8", true), *raw_deq = get(s, name, "raw_deq", "F32", true);
    if (raw && raw_deq) {
        const int64_t n = (int64_t)(raw_deq->nbytes / 4);
        CHECK_MSG(n % bs == 0 && raw->nbytes == (uint64_t)(n / bs * ts), "%s: raw has %llu bytes for %lld values",
                  name, (unsigned long long)raw->nbytes, (long long)n);
        if (n % bs == 0 && raw->nbytes == (uint64_t)(n / bs * ts)) {
            float *y = malloc(sizeof(float) * (size_t)n);
            dequantize_row(t, raw->data, y, n);
            check_same_bits("dequantize_row(raw) vs gguf-py", name, y, raw_deq->data, n);
            free(y);
            /* 3. dot_row on odd block counts */
            const int64_t counts[] = {1, 3, 7, bs == 32 ? 63 : 5};
            for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++)
                if (counts[k] * bs <= n) check_dot(t, raw->data, counts[k] * bs);
        }
    }

    /* 2. the golden inputs, row by row: quantize_row == gguf-py's and ggml's bytes where they exist,
     * dequantize_row(gguf's q) == gguf's deq bit for bit, and the reconstruction error within the bound */
    const st_tensor *x = get(s, name, "x", "F32", true), *rows = get(s, name, "rows", "I64", true);
    const st_tensor *q = get(s, name, "q", "U8", false), *deq = get(s, name, "deq", "F32", false);
    const st_tensor *q_ggml = get(s, name, "q_ggml", "U8", false);
    if (!x || !rows) goto done;
    const int64_t n = (int64_t)(x->nbytes / 4), n_rows = (int64_t)(rows->nbytes / 8);
    const int64_t qbytes = n / bs * ts;
    const float *xs = x->data;
    uint8_t *mine = malloc((size_t)qbytes);
    float *y = malloc(sizeof(float) * (size_t)n);
    int64_t off = 0;
    for (int64_t r = 0; r < n_rows; r++) {
        int64_t len;
        memcpy(&len, (const uint8_t *)rows->data + 8 * r, 8);
        if (len <= 0 || len % bs != 0 || off + len > n) {
            CHECK_MSG(false, "%s: bad row length %lld", name, (long long)len);
            break;
        }
        quantize_row(t, xs + off, mine + off / bs * ts, len);
        dequantize_row(t, mine + off / bs * ts, y + off, len);
        double err = 0, ref = 0;
        for (int64_t i = off; i < off + len; i++) {
            err += ((double)y[i] - xs[i]) * ((double)y[i] - xs[i]);
            ref += (double)xs[i] * xs[i];
        }
        if (ref == 0)
            CHECK_MSG(err == 0, "%s row %lld: an all-zero row does not come back as zeros", name, (long long)r);
        else
            CHECK_MSG(sqrt(err / ref) <= c->rel_rms_bound, "%s row %lld: relative rms error %.4f > %.4f", name,
                      (long long)r, sqrt(err / ref), c->rel_rms_bound);
        off += len;
    }
    CHECK_MSG(off == n, "%s: rows cover %lld of %lld values", name, (long long)off, (long long)n);
    if (off == n) {
        if (q) {
            CHECK(q->nbytes == (uint64_t)qbytes);
            if (q->nbytes == (uint64_t)qbytes)
                check_same_bytes("quantize_row vs gguf-py", name, mine, q->data, qbytes, ts);
        }
        if (q_ggml) {
            CHECK(q_ggml->nbytes == (uint64_t)qbytes);
            if (q_ggml->nbytes == (uint64_t)qbytes)
                check_same_bytes("quantize_row vs ggml", name, mine, q_ggml->data, qbytes, ts);
        }
        if (q && deq && q->nbytes == (uint64_t)qbytes && deq->nbytes == (uint64_t)n * 4) {
            dequantize_row(t, q->data, y, n);
            check_same_bits("dequantize_row(q) vs gguf-py", name, y, deq->data, n);
        }
    }
    free(mine);
    free(y);
done:
    safetensors_close(s);
}

#if defined(TANDEM_TEST_VNNI_SIMDE)
/* vnni.c built over SIMDe's emulation of vpdpbusd (tests/CMakeLists.txt): the VNNI kernels on any AVX2 CPU. */
void kernel_isa_fill_vnni_simde(kernel_isa *isa);
static kernel_isa vnni_simde;
#endif

/* kernel_isa_select, and "avx512vnni-simde": vnni.c over SIMDe on a CPU with AVX2. */
static bool select_isa(const char *name) {
#if defined(TANDEM_TEST_VNNI_SIMDE)
    if (!strcmp(name, "avx512vnni-simde")) {
        if (!kernel_isa_select("avx2")) return false;
        if (!vnni_simde.name) kernel_isa_fill_vnni_simde(&vnni_simde);
        kernel_isa_use(&vnni_simde);
        return true;
    }
#endif
    return kernel_isa_select(name);
}

/* matmul on every instruction set the CPU has, both paths, 1…9 tokens (full token groups and a
 * remainder), rows starting at odd addresses, 2 threads, against double loops:
 * - exact: Σ dequantized W · x, to the summation bound (|w|, |x| ≤ 1 and Σ|w·x| ≤ 768: below 2e-3);
 * - 8-bit activations: Σ dequantized W · x̂, x̂ the activations as quantize_act_scalar rounds them with the
 *   type's act_scale_blocks (the definition every SIMD twin must meet), to
 *   1e-5 of Σ|w·x̂|, and Σ W·x within the rounding of x̂ (|x − x̂| ≤ d/2 per value). */
static void check_matmul(tandem_type t, const char *isa, bool pack) {
    if (!select_isa(isa)) {
        printf("  (%s kernels: this CPU lacks them, not tested here)\n", isa);
        return;
    }
    enum { MAX_TOK = 9 };
    const int rows = pack ? 24 : 19, cols = 768, bs = tandem_type_block_size(t);
    const size_t row_bytes = (size_t)(cols / bs) * (size_t)tandem_type_size(t);
    thread_pool *pool = NULL;
    CHECK_OK(thread_pool_create(2, &pool));
    float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * MAX_TOK * cols);
    float *xq = malloc(sizeof(float) * MAX_TOK * cols), *y = malloc(sizeof(float) * MAX_TOK * rows);
    float *deq = malloc(sizeof(float) * cols);
    /* rows at odd addresses (F32 rows are always 4-byte aligned: GGUF aligns data, safetensors loading copies
     * misaligned tensors), never at the 32-byte boundaries SIMD loads would like */
    uint8_t *alloc = malloc(row_bytes * rows + 4), *data = alloc + (t == TANDEM_TYPE_F32 ? 4 : 1);
    act_block *act = malloc(sizeof(act_block) * MAX_TOK * (cols / 32)), *ref_act = malloc(sizeof(act_block) * (cols / 32));
    matmul_scratch scratch = {malloc(sizeof(float) * 2 * cols), act, true};
    for (int i = 0; i < rows * cols; i++) w[i] = frand();
    for (int i = 0; i < MAX_TOK * cols; i++) x[i] = frand() * (float)(1 + i % 3);
    for (int k = 0; k < MAX_TOK; k++) {  /* x̂: x as the 8-bit activations represent it */
        quantize_act_scalar(x + k * cols, ref_act, cols, act_scale_blocks(t));
        for (int c = 0; c < cols; c++) xq[k * cols + c] = ref_act[c / 32].d * (float)ref_act[c / 32].q[c % 32];
    }
    for (int r = 0; r < rows; r++) quantize_row(t, w + r * cols, data + r * row_bytes, cols);
    weight_matrix m = {data, t, rows, cols, row_bytes, false};
    void *packed = NULL;
    float *seen = malloc(sizeof(float) * MAX_TOK * rows), *deq_packed = malloc(sizeof(float) * cols);
    if (pack) {  /* the packed copy reads back row for row as the plain rows (which the references below use) */
        CHECK_OK(weight_pack(pool, &m, &packed));
        CHECK_MSG(packed && m.packed, "%s on %s: weight_pack left the matrix plain", tandem_type_name(t), isa);
        int differ = 0;
        for (int r = 0; r < rows; r++) {
            dequantize_row(t, data + r * row_bytes, deq, cols);
            weight_row_dequantize(&m, r, deq_packed);
            differ += memcmp(deq, deq_packed, sizeof(float) * cols) != 0;
        }
        CHECK_MSG(differ == 0, "%s on %s: %d packed rows read back differently", tandem_type_name(t), isa, differ);
    }
    for (int exact = 1; exact >= 0; exact--) {
        scratch.exact = exact;
        const bool int_path = !exact && kernel_has_act_dot(t);
        for (int n_tok = 1; n_tok <= MAX_TOK; n_tok++) {
            matmul(pool, y, x, &m, n_tok, &scratch);
            double worst = 0, worst_x = 0;
            for (int r = 0; r < rows; r++) {
                dequantize_row(t, data + r * row_bytes, deq, cols);
                for (int k = 0; k < n_tok; k++) {
                    double ref = 0, ref_q = 0, mag = 0, bound = 0;
                    for (int c = 0; c < cols; c++) {
                        ref += (double)deq[c] * x[k * cols + c];
                        ref_q += (double)deq[c] * xq[k * cols + c];
                        mag += fabs((double)deq[c] * xq[k * cols + c]);
                        bound += fabs((double)deq[c]) * fabs((double)x[k * cols + c] - xq[k * cols + c]);
                    }
                    const double got = y[k * rows + r];
                    if (int_path) {
                        worst = fmax(worst, fabs(ref_q - got) / (1e-5 * mag + 1e-6));
                        worst_x = fmax(worst_x, fabs(ref - got) / (bound + 1e-5 * mag + 1e-6));
                    } else {
                        worst = fmax(worst, fabs(ref - got) / 2e-3);
                    }
                }
            }
            CHECK_MSG(worst <= 1, "matmul %s%s on %s, %s path, tokens=%d: error %g × the bound", tandem_type_name(t),
                      pack ? " packed" : "", isa, int_path ? "8-bit" : "exact", n_tok, worst);
            /* a token's outputs do not depend on how many tokens share the pass, bit for bit (the 8-bit
             * kernels and the packed float ones promise it: verification must match single passes) */
            if (int_path || (pack && bs == 1)) {
                int differ = 0;
                for (int k = 0; k + 1 < n_tok; k++)
                    differ += memcmp(seen + k * rows, y + k * rows, sizeof(float) * rows) != 0;
                memcpy(seen + (n_tok - 1) * rows, y + (n_tok - 1) * rows, sizeof(float) * rows);
                CHECK_MSG(differ == 0, "matmul %s%s on %s: %d tokens' outputs change with %d tokens per pass",
                          tandem_type_name(t), pack ? " packed" : "", isa, differ, n_tok);
            }
            CHECK_MSG(worst_x <= 1, "matmul %s on %s tokens=%d: %g × the activation rounding bound from x",
                      tandem_type_name(t), isa, n_tok, worst_x);
        }
    }
    free(w); free(x); free(xq); free(y); free(deq); free(alloc); free(act); free(ref_act); free(scratch.rows);
    free(packed); free(seen); free(deq_packed);
    thread_pool_free(pool);
    kernel_isa_select(NULL);
}

/* Prompts of FLOAT_GEMM_MIN_TOKENS tokens or more through plain float weights go through the panel GEMM
 * (gemm_float), and packed float weights through gemm_packed_float past 8 tokens (groups of 4 below): matmul against
 * the double loop on token counts on both sides of each switch, rows over several tasks and 2 threads,
 * columns over two 256-column panels and a tail (packed: an odd width, so the 4-column steps leave a tail). */
static void check_float_prompt(tandem_type t, bool pack) {
    enum { MAX_TOK = FLOAT_GEMM_MIN_TOKENS + 9 };
    const int ROWS = pack ? 72 : 70, COLS = pack ? 643 : 640;
    const size_t row_bytes = (size_t)COLS * (size_t)tandem_type_size(t);
    thread_pool *pool = NULL;
    CHECK_OK(thread_pool_create(2, &pool));
    float *w = malloc(sizeof(float) * ROWS * COLS), *x = malloc(sizeof(float) * MAX_TOK * COLS);
    float *y = malloc(sizeof(float) * MAX_TOK * ROWS), *deq = malloc(sizeof(float) * ROWS * COLS);
    uint8_t *data = malloc(row_bytes * ROWS);
    matmul_scratch scratch = {malloc(sizeof(float) * 2 * COLS), malloc(sizeof(act_block) * MAX_TOK * (COLS / 32)), false};
    for (int i = 0; i < ROWS * COLS; i++) w[i] = frand();
    for (int i = 0; i < MAX_TOK * COLS; i++) x[i] = frand();
    for (int r = 0; r < ROWS; r++) {
        quantize_row(t, w + r * COLS, data + r * row_bytes, COLS);
        dequantize_row(t, data + r * row_bytes, deq + r * COLS, COLS);
    }
    weight_matrix m = {data, t, ROWS, COLS, row_bytes, false};
    void *packed = NULL;
    if (pack) {
        CHECK_OK(weight_pack(pool, &m, &packed));
        CHECK_MSG(m.packed, "%s on %s: weight_pack left the matrix plain", tandem_type_name(t), kernel_isa_name());
    }
    const int counts[] = {1, MATMUL_TOKENS, MATMUL_TOKENS + 1, FLOAT_GEMM_MIN_TOKENS - 1, FLOAT_GEMM_MIN_TOKENS, MAX_TOK};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        matmul(pool, y, x, &m, counts[i], &scratch);
        double worst = 0;
        for (int k = 0; k < counts[i]; k++)
            for (int r = 0; r < ROWS; r++) {
                double ref = 0;
                for (int c = 0; c < COLS; c++) ref += (double)deq[r * COLS + c] * x[k * COLS + c];
                worst = fmax(worst, fabs(ref - y[k * ROWS + r]) / 2e-3);
            }
        CHECK_MSG(worst <= 1, "matmul %s%s on %s, %d tokens: error %g x the bound", tandem_type_name(t),
                  pack ? " packed" : "", kernel_isa_name(), counts[i], worst);
    }
    if (pack) {  /* the last pass (MAX_TOK tokens, the GEMM) gives each token the bits a pass of its own gives */
        float *alone = malloc(sizeof(float) * ROWS);
        int differ = 0;
        for (int k = 0; k < MAX_TOK; k++) {
            matmul(pool, alone, x + k * COLS, &m, 1, &scratch);
            differ += memcmp(alone, y + k * ROWS, sizeof(float) * ROWS) != 0;
        }
        CHECK_MSG(differ == 0, "matmul %s packed on %s: %d of %d tokens differ from single-token passes",
                  tandem_type_name(t), kernel_isa_name(), differ, MAX_TOK);
        free(alone);
    }
    free(w); free(x); free(y); free(deq); free(data); free(scratch.rows); free(scratch.act); free(packed);
    thread_pool_free(pool);
}

/* The integer kernels add products in int16 before widening, as far as each type's largest quant allows (e.g.
 * 8 units of Q4_K, 4 of Q5_K). Random rows stay far from those limits, so here rows sit at their extremes: mostly
 * equal values (the largest quant), or mostly slightly below an opposite-signed maximum (the largest quant of
 * the signed types), against activations all ±127. One more unit in an int16 sum overflows and fails this. */
static void check_extreme_quants(tandem_type t, bool pack) {
    enum { ROWS = 8 * 3, COLS = 512 };
    const size_t row_bytes = (size_t)(COLS / tandem_type_block_size(t)) * (size_t)tandem_type_size(t);
    float *w = malloc(sizeof(float) * ROWS * COLS), *x = malloc(sizeof(float) * 2 * COLS), *y = malloc(sizeof(float) * 2 * ROWS);
    float *deq = malloc(sizeof(float) * COLS);
    uint8_t *data = malloc(row_bytes * ROWS);
    act_block *act = malloc(sizeof(act_block) * 2 * (COLS / 32));
    matmul_scratch scratch = {malloc(sizeof(float) * COLS), act, false};
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLS; c++) {
            const float sign = r % 2 ? -1.0f : 1.0f;
            w[r * COLS + c] = r % 3 == 2 ? (c % 16 == 0 ? sign : -0.97f * sign) : (c % 16 == 0 ? 0.0f : sign);
        }
    for (int c = 0; c < COLS; c++) x[c] = 1.0f, x[COLS + c] = -1.0f;
    for (int r = 0; r < ROWS; r++) quantize_row(t, w + r * COLS, data + r * row_bytes, COLS);
    weight_matrix m = {data, t, ROWS, COLS, row_bytes, false};
    void *packed = NULL;
    if (pack) CHECK_OK(weight_pack(NULL, &m, &packed));
    matmul(NULL, y, x, &m, 2, &scratch);
    double worst = 0;
    for (int r = 0; r < ROWS; r++) {
        dequantize_row(t, data + r * row_bytes, deq, COLS);
        for (int k = 0; k < 2; k++) {
            double ref = 0, mag = 0;  /* x = ±1 is exactly ±127 · (1/127) as 8-bit activations */
            for (int c = 0; c < COLS; c++) {
                const double xq = (double)act[k * (COLS / 32) + c / 32].d * act[k * (COLS / 32) + c / 32].q[c % 32];
                ref += deq[c] * xq, mag += fabs(deq[c] * xq);
            }
            worst = fmax(worst, fabs(ref - y[k * ROWS + r]) / (1e-5 * mag + 1e-6));
        }
    }
    CHECK_MSG(worst <= 1, "matmul %s%s with extreme quants: error %g x the bound", tandem_type_name(t),
              pack ? " packed" : "", worst);
    free(w); free(x); free(y); free(deq); free(data); free(act); free(scratch.rows); free(packed);
}

static const tandem_type PACKED[] = {TANDEM_TYPE_Q8_0, TANDEM_TYPE_Q4_0, TANDEM_TYPE_Q4_K, TANDEM_TYPE_Q5_K,
                                     TANDEM_TYPE_Q6_K};
enum { N_PACKED = sizeof PACKED / sizeof PACKED[0] };

/* The packed products of isa equal avx2's bit for bit on 1…9 tokens: both make exact integer sums and the same
 * float steps in the same order (vnni.c's contract). Random rows and activations at full scale. */
static void check_same_as_avx2(const char *isa) {
    if (!kernel_isa_select("avx2") || !select_isa(isa)) return;
    enum { ROWS = 8 * 5, COLS = 1024, MAX_TOK = 9 };
    thread_pool *pool = NULL;
    CHECK_OK(thread_pool_create(2, &pool));
    float *w = malloc(sizeof(float) * COLS), *x = malloc(sizeof(float) * MAX_TOK * COLS);
    float *y_avx2 = malloc(sizeof(float) * MAX_TOK * ROWS), *y_isa = malloc(sizeof(float) * MAX_TOK * ROWS);
    act_block *act = malloc(sizeof(act_block) * MAX_TOK * (COLS / 32));
    matmul_scratch scratch = {malloc(sizeof(float) * 2 * COLS), act, false};
    for (int i = 0; i < MAX_TOK * COLS; i++) x[i] = frand() * (float)(1 + i % 5);
    for (size_t k = 0; k < N_PACKED; k++) {
        const tandem_type t = PACKED[k];
        const size_t row_bytes = (size_t)(COLS / tandem_type_block_size(t)) * (size_t)tandem_type_size(t);
        uint8_t *data = malloc(row_bytes * ROWS);
        for (int r = 0; r < ROWS; r++) {
            for (int c = 0; c < COLS; c++) w[c] = frand();
            quantize_row(t, w, data + (size_t)r * row_bytes, COLS);
        }
        weight_matrix m = {data, t, ROWS, COLS, row_bytes, false};
        void *packed = NULL;
        select_isa(isa);
        CHECK_OK(weight_pack(pool, &m, &packed));
        int differ = 0;
        for (int n_tok = 1; n_tok <= MAX_TOK; n_tok++) {
            kernel_isa_select("avx2");
            matmul(pool, y_avx2, x, &m, n_tok, &scratch);
            select_isa(isa);
            matmul(pool, y_isa, x, &m, n_tok, &scratch);
            differ += memcmp(y_avx2, y_isa, sizeof(float) * (size_t)(n_tok * ROWS)) != 0;
        }
        CHECK_MSG(packed && differ == 0, "%s packed on %s: %d of %d token counts differ from avx2",
                  tandem_type_name(t), isa, differ, MAX_TOK);
        free(packed);
        free(data);
    }
    free(w); free(x); free(y_avx2); free(y_isa); free(act); free(scratch.rows);
    thread_pool_free(pool);
    kernel_isa_select(NULL);
}

/* Packing splits the row groups over the pool's threads (64 groups per task): a matrix of several tasks and a
 * partial last one reads back row for row as the plain rows. */
static void check_pack_threads(void) {
    if (!kernel_isa_select("avx2")) return;
    const tandem_type types[] = {TANDEM_TYPE_Q8_0, TANDEM_TYPE_Q4_0, TANDEM_TYPE_Q4_K, TANDEM_TYPE_Q5_K, TANDEM_TYPE_Q6_K,
                                 TANDEM_TYPE_F32, TANDEM_TYPE_F16, TANDEM_TYPE_BF16};
    enum { ROWS = 8 * (64 * 3 + 5), COLS = 256 };
    thread_pool *pool = NULL;
    CHECK_OK(thread_pool_create(3, &pool));
    float *w = malloc(sizeof(float) * COLS), *a = malloc(sizeof(float) * COLS), *b = malloc(sizeof(float) * COLS);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const size_t row_bytes = (size_t)(COLS / tandem_type_block_size(types[k])) * (size_t)tandem_type_size(types[k]);
        uint8_t *data = malloc(row_bytes * ROWS);
        for (int r = 0; r < ROWS; r++) {
            for (int c = 0; c < COLS; c++) w[c] = frand();
            quantize_row(types[k], w, data + (size_t)r * row_bytes, COLS);
        }
        weight_matrix m = {data, types[k], ROWS, COLS, row_bytes, false};
        void *packed = NULL;
        CHECK_OK(weight_pack(pool, &m, &packed));
        int differ = 0;
        for (int r = 0; r < ROWS; r++) {
            dequantize_row(types[k], data + (size_t)r * row_bytes, a, COLS);
            weight_row_dequantize(&m, r, b);
            differ += memcmp(a, b, sizeof(float) * COLS) != 0;
        }
        CHECK_MSG(packed && differ == 0, "%s packed on 3 threads: %d of %d rows read back differently",
                  tandem_type_name(types[k]), differ, ROWS);
        free(packed);
        free(data);
    }
    free(w); free(a); free(b);
    thread_pool_free(pool);
    kernel_isa_select(NULL);
}

/* matmul_shared_input over matrices of mixed types and paths (8-bit with a scale per block and per super-block,
 * packed, float, exact) equals one matmul per matrix, bit for bit, on 1 to 9 tokens; matmul_normed_input equals
 * rmsnorm_forward per token, then matmul_shared_input, and matmul_swiglu_input swiglu_forward, then matmul (their
 * inputs and their products). */
static void check_shared_input(void) {
    enum { COLS = 512, MAX_TOK = 9, N = 4 };
    /* Q6_K packed (super-block activations) beside Q8_0 (block activations): quantized apart; Q3_K: exact path */
    const tandem_type types[N] = {TANDEM_TYPE_Q6_K, TANDEM_TYPE_F16, TANDEM_TYPE_Q3_K, TANDEM_TYPE_Q8_0};
    const int rows[N] = {40, 21, 16, 37};
    thread_pool *pool = NULL;
    CHECK_OK(thread_pool_create(2, &pool));
    float *x = malloc(sizeof(float) * MAX_TOK * COLS), *w = malloc(sizeof(float) * 40 * COLS);
    act_block *act = malloc(sizeof(act_block) * MAX_TOK * (COLS / 32));
    matmul_scratch scratch = {malloc(sizeof(float) * 2 * COLS), act, false};
    weight_matrix m[N];
    const weight_matrix *mp[N];
    float *together[N], *alone = malloc(sizeof(float) * MAX_TOK * 40);
    uint8_t *data[N];
    void *packed = NULL;
    for (int i = 0; i < MAX_TOK * COLS; i++) x[i] = frand();
    for (int k = 0; k < N; k++) {
        const size_t row_bytes = (size_t)(COLS / tandem_type_block_size(types[k])) * (size_t)tandem_type_size(types[k]);
        data[k] = malloc(row_bytes * (size_t)rows[k]);
        for (int i = 0; i < rows[k] * COLS; i++) w[i] = frand();
        for (int r = 0; r < rows[k]; r++) quantize_row(types[k], w + r * COLS, data[k] + r * row_bytes, COLS);
        m[k] = (weight_matrix){data[k], types[k], rows[k], COLS, row_bytes, false};
        mp[k] = &m[k];
        together[k] = malloc(sizeof(float) * MAX_TOK * rows[k]);
    }
    CHECK_OK(weight_pack(pool, &m[0], &packed));  /* where the CPU has the packed kernel */
    int differ = 0;
    for (int n_tok = 1; n_tok <= MAX_TOK; n_tok++) {
        matmul_shared_input(pool, together, x, mp, N, n_tok, &scratch);
        for (int k = 0; k < N; k++) {
            matmul(pool, alone, x, &m[k], n_tok, &scratch);
            differ += memcmp(alone, together[k], sizeof(float) * (size_t)(n_tok * rows[k])) != 0;
        }
    }
    CHECK_MSG(differ == 0, "matmul_shared_input differs from separate matmuls %d times", differ);

    float *norm = malloc(sizeof(float) * COLS), *xb = malloc(sizeof(float) * MAX_TOK * COLS);
    float *xb_ref = malloc(sizeof(float) * MAX_TOK * COLS), *normed[N];
    for (int i = 0; i < COLS; i++) norm[i] = 1.0f + frand();
    for (int k = 0; k < N; k++) normed[k] = malloc(sizeof(float) * MAX_TOK * rows[k]);
    int differ_xb = 0;
    differ = 0;
    for (int n_tok = 1; n_tok <= MAX_TOK; n_tok++) {
        for (int t = 0; t < n_tok; t++) rmsnorm_forward(xb_ref + t * COLS, x + t * COLS, norm, COLS, 1e-6f);
        matmul_shared_input(pool, together, xb_ref, mp, N, n_tok, &scratch);
        memset(xb, 0, sizeof(float) * MAX_TOK * COLS);
        matmul_normed_input(pool, normed, xb, x, norm, 1e-6f, mp, N, n_tok, &scratch);
        differ_xb += memcmp(xb, xb_ref, sizeof(float) * (size_t)(n_tok * COLS)) != 0;
        for (int k = 0; k < N; k++)
            differ += memcmp(normed[k], together[k], sizeof(float) * (size_t)(n_tok * rows[k])) != 0;
    }
    CHECK_MSG(differ_xb == 0, "matmul_normed_input's normalized input differs from rmsnorm_forward %d times",
              differ_xb);
    CHECK_MSG(differ == 0, "matmul_normed_input differs from rmsnorm_forward + matmul_shared_input %d times", differ);

    /* matmul_swiglu_input: h = silu(gate) ⊙ up made in place over gate, as the forward pass does */
    float *gate = malloc(sizeof(float) * MAX_TOK * COLS), *up = malloc(sizeof(float) * MAX_TOK * COLS);
    for (int i = 0; i < MAX_TOK * COLS; i++) up[i] = frand();
    differ = differ_xb = 0;
    for (int n_tok = 1; n_tok <= MAX_TOK; n_tok++)
        for (int k = 0; k < N; k++) {
            swiglu_forward(xb_ref, x, up, n_tok * COLS);
            matmul(pool, alone, xb_ref, &m[k], n_tok, &scratch);
            memcpy(gate, x, sizeof(float) * MAX_TOK * COLS);
            matmul_swiglu_input(pool, normed[k], gate, gate, up, &m[k], n_tok, &scratch);
            differ_xb += memcmp(gate, xb_ref, sizeof(float) * (size_t)(n_tok * COLS)) != 0;
            differ += memcmp(normed[k], alone, sizeof(float) * (size_t)(n_tok * rows[k])) != 0;
        }
    CHECK_MSG(differ_xb == 0, "matmul_swiglu_input's input differs from swiglu_forward %d times", differ_xb);
    CHECK_MSG(differ == 0, "matmul_swiglu_input differs from swiglu_forward + matmul %d times", differ);
    free(gate); free(up);
    for (int k = 0; k < N; k++) free(data[k]), free(together[k]), free(normed[k]);
    free(x); free(w); free(act); free(scratch.rows); free(alone); free(packed); free(norm); free(xb); free(xb_ref);
    thread_pool_free(pool);
}

/* tandem's type table against gguf-py's GGML_QUANT_SIZES (stored in versions.json by the generator). */
static void check_type_table(const char *golden) {
    char path[4096];
    snprintf(path, sizeof path, "%s/quant/versions.json", golden);
    json_t *root = NULL;
    CHECK_OK(json_load_path(path, &root));
    if (!root) return;
    const json_t *sizes = json_object_get(root, "ggml_quant_sizes");
    CHECK(json_is_object(sizes));
    int compared = 0;
    for (int32_t id = 0; id < TANDEM_TYPE_COUNT; id++) {
        if (!tandem_type_known(id)) continue;
        const char *name = tandem_type_name((tandem_type)id);
        /* gguf-py lists Q8_1 as 40 bytes; ggml's C struct (two f16 and 32 int8) and tandem say 36. It is an
         * activation-only type that no model file stores. */
        if (id == TANDEM_TYPE_Q8_1) continue;
        const json_t *v = json_object_get(sizes, name);
        CHECK_MSG(json_is_array(v) && json_array_size(v) == 2, "%s missing from gguf's table", name);
        if (!json_is_array(v) || json_array_size(v) != 2) continue;
        const json_int_t b = json_integer_value(json_array_get(v, 0)), s = json_integer_value(json_array_get(v, 1));
        CHECK_MSG(b == tandem_type_block_size((tandem_type)id) && s == tandem_type_size((tandem_type)id),
                  "%s: gguf (%lld, %lld), tandem (%d, %d)", name, (long long)b, (long long)s,
                  tandem_type_block_size((tandem_type)id), tandem_type_size((tandem_type)id));
        compared++;
    }
    CHECK(compared >= 20);
    json_decref(root);
}

/* F16/BF16 through the generic entry: the same rounding as the scalar converters. */
static void check_half_rows(void) {
    float x[64], y[64];
    uint8_t q[128];
    for (int i = 0; i < 64; i++) x[i] = frand() * 100;
    quantize_row(TANDEM_TYPE_F16, x, q, 64);
    dequantize_row(TANDEM_TYPE_F16, q, y, 64);
    int bad = 0;
    for (int i = 0; i < 64; i++) bad += y[i] != f16_to_f32(f32_to_f16(x[i]));
    quantize_row(TANDEM_TYPE_BF16, x, q, 64);
    dequantize_row(TANDEM_TYPE_BF16, q, y, 64);
    for (int i = 0; i < 64; i++) bad += y[i] != bf16_to_f32(f32_to_bf16(x[i]));
    CHECK_MSG(bad == 0, "%d half-precision values differ", bad);
    CHECK(!kernel_type_supported(TANDEM_TYPE_Q8_K) && !kernel_can_quantize(TANDEM_TYPE_Q8_1));
}

/* VmFlags of the mapping of /proc/self/smaps that holds p (into flags); false if none does. */
static bool mapping_flags(const void *p, char *flags, size_t n) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return false;
    char line[512];
    bool inside = false, found = false;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(flags, n, "%s", line + 8);
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* Packed weights live in memory from streamed_alloc: 2 MiB aligned and advised for huge pages (the "hg" flag),
 * which decides whether Linux backs it with 2 MiB pages in its default "madvise" mode. */
static void check_streamed_alloc(void) {
    const size_t bytes = (size_t)5 << 20;
    uint8_t *p = streamed_alloc(bytes);
    CHECK(p != NULL);
    if (!p) return;
    CHECK_MSG((uintptr_t)p % ((size_t)2 << 20) == 0, "streamed_alloc: %p is not 2 MiB aligned", (void *)p);
    memset(p, 1, bytes);
    char flags[512];
    /* Linux with /proc and transparent huge pages; elsewhere (no THP: madvise refuses) alignment is all there is */
    if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0 && mapping_flags(p, flags, sizeof flags))
        CHECK_MSG(strstr(flags, " hg") != NULL, "streamed_alloc: memory not advised for huge pages (VmFlags:%s)", flags);
    free(p);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s tests/golden\n", argv[0]);
        return 2;
    }
    for (int i = 0; i < N_CASES; i++) check_type(argv[1], &CASES[i]);
    const tandem_type mm[] = {TANDEM_TYPE_F32, TANDEM_TYPE_F16, TANDEM_TYPE_BF16, TANDEM_TYPE_Q8_0, TANDEM_TYPE_Q4_0,
                              TANDEM_TYPE_Q4_1, TANDEM_TYPE_Q5_0, TANDEM_TYPE_Q5_1, TANDEM_TYPE_IQ4_NL, TANDEM_TYPE_Q2_K,
                              TANDEM_TYPE_Q3_K, TANDEM_TYPE_Q4_K, TANDEM_TYPE_Q5_K, TANDEM_TYPE_Q6_K};
    const char *isas[] = {"scalar", "avx2"};
    for (size_t j = 0; j < 2; j++)
        for (size_t i = 0; i < sizeof mm / sizeof mm[0]; i++) check_matmul(mm[i], isas[j], false);
    for (size_t j = 0; j < 2; j++)
        if (kernel_isa_select(isas[j])) {
            check_float_prompt(TANDEM_TYPE_F32, false);
            check_float_prompt(TANDEM_TYPE_F16, false);
            check_float_prompt(TANDEM_TYPE_BF16, false);
            kernel_isa_select(NULL);
        }
    if (kernel_isa_select("avx2")) {  /* float weights packed (avx2's float kernels serve the VNNI tables too) */
        const tandem_type floats[] = {TANDEM_TYPE_F32, TANDEM_TYPE_F16, TANDEM_TYPE_BF16};
        for (size_t i = 0; i < 3; i++) check_float_prompt(floats[i], true);
        for (size_t i = 0; i < 3; i++) check_matmul(floats[i], "avx2", true);
        kernel_isa_select(NULL);
    }
    if (kernel_isa_select("avx2")) {
        const tandem_type extreme[] = {TANDEM_TYPE_Q8_0, TANDEM_TYPE_Q4_0, TANDEM_TYPE_Q4_1, TANDEM_TYPE_Q5_0,
                                       TANDEM_TYPE_Q5_1, TANDEM_TYPE_IQ4_NL, TANDEM_TYPE_Q4_K, TANDEM_TYPE_Q5_K,
                                       TANDEM_TYPE_Q6_K};
        for (size_t i = 0; i < sizeof extreme / sizeof extreme[0]; i++) check_extreme_quants(extreme[i], false);
        kernel_isa_select(NULL);
    }
    /* the packed layout on every instruction set with packed products (weight_pack packs only then); the VNNI
     * tables share avx2's other entries, tested above */
    const char *packed_isas[] = {"avx2", "avxvnni", "avx512vnni", "avx512vnni-simde"};
    for (size_t j = 0; j < sizeof packed_isas / sizeof packed_isas[0]; j++) {
        const char *isa = packed_isas[j];
        if (!select_isa(isa)) {
            printf("  (%s kernels: this CPU lacks them, not tested here)\n", isa);
            continue;
        }
        for (size_t i = 0; i < N_PACKED; i++) check_extreme_quants(PACKED[i], true);
        for (size_t i = 0; i < N_PACKED; i++) check_matmul(PACKED[i], isa, true);
        kernel_isa_select(NULL);
        if (j > 0) check_same_as_avx2(isa);
    }
    check_shared_input();
    check_streamed_alloc();
    check_pack_threads();
    check_type_table(argv[1]);
    check_half_rows();
    return test_summary();
}
