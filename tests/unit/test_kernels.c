/* test_kernels.c — kernels against plain definitions: f16/bf16 conversion, quantize→dequantize error,
 * dot products of stored rows, threaded matmul on odd shapes, RoPE (1-D and 2-D), RMSNorm, LayerNorm, softmax,
 * causal and bidirectional attention, SwiGLU, GELU, argmax, and NaN kept as NaN, on every instruction set; top-k
 * against a full sort. */
#include <float.h>
#include <stdlib.h>

#include "kernels.h"
#include "kernels_isa.h"
#include "test.h"

static uint64_t rng_state = 12345;
static float frand(void) {  /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

static void check_half_precision(void) {
    /* every finite f16 survives f16 → f32 → f16 */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) continue; /* NaN payloads */
        if (f32_to_f16(f16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK_MSG(bad == 0, "%d f16 values do not round-trip", bad);
    CHECK(f16_to_f32(0x3C00) == 1.0f && f16_to_f32(0xC000) == -2.0f && f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(f32_to_f16(65504.0f) == 0x7BFF && f32_to_f16(65520.0f) == 0x7C00);
    CHECK(f32_to_f16(1.0f + 0x1p-11f) == 0x3C00);      /* tie → even */
    CHECK(f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3C02);  /* tie → even (up) */
    CHECK(bf16_to_f32(0x3F80) == 1.0f && f32_to_bf16(1.0f) == 0x3F80);
    CHECK(f32_to_bf16(1.0f + 0x1p-8f) == 0x3F80 && f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3F82);
}

/* Quantize, dequantize, and compare with the original: the per-block error is bounded by the step. */
static void check_quant_roundtrip(void) {
    enum { N = 32 * 37 };
    float x[N], y[N];
    uint8_t q[N * 2];
    for (int i = 0; i < N; i++) x[i] = frand() * (1 + i % 7);
    quantize_row_q8_0(x, q, N);
    dequantize_row(TANDEM_TYPE_Q8_0, q, y, N);
    double worst = 0;
    for (int b = 0; b < N / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * b + j]));
        for (int j = 0; j < 32; j++) worst = fmax(worst, fabs(x[32 * b + j] - y[32 * b + j]) / (amax / 127));
    }
    /* half a step from rounding, plus up to 127 × the f16 rounding of the scale (2^-11 relative) */
    CHECK_MSG(worst <= 0.5 + 127 * 0x1p-11, "Q8_0 error %g steps", worst);
    quantize_row_q4_0(x, q, N);
    dequantize_row(TANDEM_TYPE_Q4_0, q, y, N);
    worst = 0;
    for (int b = 0; b < N / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * b + j]));
        for (int j = 0; j < 32; j++) worst = fmax(worst, fabs(x[32 * b + j] - y[32 * b + j]) / (amax / 8));
    }
    CHECK_MSG(worst <= 1.0 + 1e-2, "Q4_0 error %g steps", worst);
}

/* dot_row(type) equals a double-precision dot of the dequantized row, for every supported type. */
static void check_dot_rows(void) {
    const tandem_type types[] = {TANDEM_TYPE_F32, TANDEM_TYPE_F16, TANDEM_TYPE_BF16, TANDEM_TYPE_Q8_0, TANDEM_TYPE_Q4_0};
    const int sizes[] = {32, 64, 96, 544, 1056};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            const int n = sizes[si];
            float *x = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * n), *deq = malloc(sizeof(float) * n);
            uint8_t *row = malloc((size_t)n * 4 + 64);
            for (int i = 0; i < n; i++) x[i] = frand(), w[i] = frand();
            switch (types[ti]) {
            case TANDEM_TYPE_F32: memcpy(row, w, sizeof(float) * n); break;
            case TANDEM_TYPE_F16: for (int i = 0; i < n; i++) { uint16_t h = f32_to_f16(w[i]); memcpy(row + 2 * i, &h, 2); } break;
            case TANDEM_TYPE_BF16: for (int i = 0; i < n; i++) { uint16_t h = f32_to_bf16(w[i]); memcpy(row + 2 * i, &h, 2); } break;
            case TANDEM_TYPE_Q8_0: quantize_row_q8_0(w, row, n); break;
            default: quantize_row_q4_0(w, row, n); break;
            }
            dequantize_row(types[ti], row, deq, n);
            double ref = 0;
            for (int i = 0; i < n; i++) ref += (double)deq[i] * x[i];
            float got = dot_row(types[ti], row, x, n);
            CHECK_MSG(fabs(got - ref) < 1e-4 * (1 + fabs(ref)), "%s n=%d: %g vs %g", tandem_type_name(types[ti]), n, got, ref);
            free(x); free(w); free(deq); free(row);
        }
    }
}

/* matmul with 1..3 threads, 1..9 tokens, odd row counts: every entry against a double loop. */
static void check_matmul(void) {
    const int rows_list[] = {1, 17, 33, 100}, cols = 64;
    for (int threads = 1; threads <= 3; threads++) {
        thread_pool *pool;
        CHECK_OK(thread_pool_create(threads, &pool));
        for (size_t ri = 0; ri < 4; ri++) {
            const int rows = rows_list[ri];
            for (int n_tok = 1; n_tok <= 9; n_tok += 4) {
                for (int q = 0; q < 2; q++) {
                    tandem_type type = q ? TANDEM_TYPE_Q8_0 : TANDEM_TYPE_F32;
                    size_t row_bytes = q ? (size_t)cols / 32 * 34 : (size_t)cols * 4;
                    float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * n_tok * cols);
                    float *y = malloc(sizeof(float) * n_tok * rows);
                    act_block *act = malloc(sizeof(act_block) * n_tok * (cols / 32));
                    matmul_scratch scratch = {malloc(sizeof(float) * threads * cols), act, true};
                    float *deq = malloc(sizeof(float) * cols);
                    uint8_t *data = malloc(row_bytes * rows);
                    for (int i = 0; i < rows * cols; i++) w[i] = frand();
                    for (int i = 0; i < n_tok * cols; i++) x[i] = frand();
                    for (int r = 0; r < rows; r++) {
                        if (q) quantize_row_q8_0(w + r * cols, data + r * row_bytes, cols);
                        else memcpy(data + r * row_bytes, w + r * cols, row_bytes);
                    }
                    weight_matrix m = {data, type, rows, cols, row_bytes, false};
                    matmul(pool, y, x, &m, n_tok, &scratch);
                    double worst = 0;
                    for (int r = 0; r < rows; r++) {
                        dequantize_row(type, data + r * row_bytes, deq, cols);
                        for (int t = 0; t < n_tok; t++) {
                            double ref = 0;
                            for (int c = 0; c < cols; c++) ref += (double)deq[c] * x[t * cols + c];
                            worst = fmax(worst, fabs(ref - y[t * rows + r]));
                        }
                    }
                    CHECK_MSG(worst < 1e-4, "matmul %s threads=%d rows=%d tokens=%d: %g", tandem_type_name(type),
                              threads, rows, n_tok, worst);
                    free(w); free(x); free(y); free(scratch.rows); free(act); free(deq); free(data);
                }
            }
        }
        thread_pool_free(pool);
    }
}

/* Every instruction set quantizes activations to the same bytes as the scalar definition, with a scale per
 * block and per group of 8 blocks (the K-quants' super-blocks): random values, an all-zero block, tiny and
 * huge magnitudes, and exact .5 ties (round half to even). */
static void check_quantize_act(int scale_blocks) {
    enum { N = 32 * 16 };
    float x[N];
    for (int i = 0; i < N; i++) x[i] = frand() * (float)(1 + i % 5);
    for (int i = 32; i < 64; i++) x[i] = 0.0f;
    for (int i = 64; i < 96; i++) x[i] = frand() * 1e-39f;  /* subnormal: the block quantizes to zero */
    for (int i = 256; i < 288; i++) x[i] = frand() * 1e30f;
    for (int i = 320; i < 352; i++) x[i] = (float)(i - 336) + 0.5f;  /* with max 15.5: ties at x·127/15.5 */
    for (int i = 352; i < 384; i++) x[i] = (float)((i % 2) ? 127 : -127) * 0.5f;
    if (scale_blocks == 8)
        for (int i = 0; i < 256; i++) x[i] = frand() * 1e-39f;  /* a whole group subnormal */
    act_block ref[N / 32], got[N / 32];
    quantize_act_scalar(x, ref, N, scale_blocks);
    /* the definition: q = round(x / d), d = max|x| / 127 over the group, Σq per half, s = d·Σq */
    int bad_def = 0;
    for (int b = 0; b < N / 32; b++) {
        const int g = b - b % scale_blocks;
        float amax = 0;
        for (int j = 0; j < 32 * scale_blocks; j++) amax = fmaxf(amax, fabsf(x[32 * g + j]));
        int sum[2] = {0, 0};
        for (int j = 0; j < 32; j++) {
            const double exact_q = ref[b].d > 0x1p-126f ? (double)x[32 * b + j] / ref[b].d : 0.0;
            bad_def += fabs(exact_q - ref[b].q[j]) > 0.5 + 1e-4 || abs(ref[b].q[j]) > 127;
            sum[j / 16] += ref[b].q[j];
        }
        bad_def += ref[b].d != amax / 127.0f || ref[b].sum16[0] != sum[0] || ref[b].sum16[1] != sum[1];
        bad_def += ref[b].s != ref[b].d * (float)(sum[0] + sum[1]);
    }
    CHECK_MSG(bad_def == 0, "quantize_act_scalar (%d blocks per scale) breaks its definition %d times", scale_blocks,
              bad_def);
    const char *isas[] = {"avx2"};
    for (size_t k = 0; k < sizeof isas / sizeof isas[0]; k++) {
        if (!kernel_isa_select(isas[k])) {
            printf("  (%s kernels: this CPU lacks them, not tested here)\n", isas[k]);
            continue;
        }
        memset(got, 0x55, sizeof got);
        quantize_act(x, got, N, scale_blocks);
        CHECK_MSG(memcmp(ref, got, sizeof ref) == 0, "%s quantize_act (%d blocks per scale) differs from the scalar bytes",
                  isas[k], scale_blocks);
        kernel_isa_select(NULL);
    }
}

/* Float rows (F32/F16/BF16) of odd lengths (SIMD body + scalar tail), 1–4 tokens with a stride, through
 * matmul on every instruction set, against a double loop over the stored values. */
/* F32/F16/BF16 matmuls against the double definition: few tokens through the row tiles (odd widths, every
 * tail) and prompts (FLOAT_GEMM_MIN_TOKENS or more) through the panels, whose rows (83: partial panels and
 * tasks) and columns (300 = 256 + 44, 517, 37: column blocks and a transpose tail) cover every edge. */
static void check_float_rows(void) {
    const tandem_type types[] = {TANDEM_TYPE_F32, TANDEM_TYPE_F16, TANDEM_TYPE_BF16};
    const char *isas[] = {"scalar", "avx2"};
    typedef struct { int rows, cols, n_tok; } shape;
    shape shapes[16];
    int n_shapes = 0;
    for (int cols = 1; cols <= 41; cols += 8) shapes[n_shapes++] = (shape){21, cols, 1 + cols % 5};
    shapes[n_shapes++] = (shape){83, 300, FLOAT_GEMM_MIN_TOKENS};
    shapes[n_shapes++] = (shape){83, 517, FLOAT_GEMM_MIN_TOKENS + 7};
    shapes[n_shapes++] = (shape){130, 37, FLOAT_GEMM_MIN_TOKENS + 8};
    thread_pool *pool;
    CHECK_OK(thread_pool_create(2, &pool));
    for (size_t k = 0; k < 2; k++) {
        if (!kernel_isa_select(isas[k])) continue;
        for (size_t ti = 0; ti < 3; ti++) {
            for (int si = 0; si < n_shapes; si++) {
                const int rows = shapes[si].rows, cols = shapes[si].cols, n_tok = shapes[si].n_tok;
                const size_t es = ti == 0 ? 4 : 2, row_bytes = es * (size_t)cols;
                float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * n_tok * cols);
                float *y = malloc(sizeof(float) * n_tok * rows), *deq = malloc(sizeof(float) * cols);
                uint8_t *alloc = malloc(row_bytes * rows + 4), *data = alloc + (ti == 0 ? 4 : 1);  /* F32: aligned to 4 */
                for (int i = 0; i < rows * cols; i++) w[i] = frand();
                for (int i = 0; i < n_tok * cols; i++) x[i] = frand();
                for (int r = 0; r < rows; r++) quantize_row(types[ti], w + r * cols, data + r * row_bytes, cols);
                matmul_scratch scratch = {malloc(sizeof(float) * 2 * cols), NULL, false};
                weight_matrix m = {data, types[ti], rows, cols, row_bytes, false};
                matmul(pool, y, x, &m, n_tok, &scratch);
                double worst = 0;  /* in units of the bound: f32 rounding of a sum of cols products */
                for (int r = 0; r < rows; r++) {
                    dequantize_row(types[ti], data + r * row_bytes, deq, cols);
                    for (int t = 0; t < n_tok; t++) {
                        double ref = 0, mag = 0;
                        for (int c = 0; c < cols; c++) {
                            ref += (double)deq[c] * x[t * cols + c];
                            mag += fabs((double)deq[c] * x[t * cols + c]);
                        }
                        worst = fmax(worst, fabs(ref - y[t * rows + r]) / (1e-6 + 1e-6 * mag));
                    }
                }
                CHECK_MSG(worst < 1, "%s rows on %s, %dx%d, tokens=%d: error %g x the bound", tandem_type_name(types[ti]),
                          isas[k], rows, cols, n_tok, worst);
                free(w); free(x); free(y); free(deq); free(alloc); free(scratch.rows);
            }
        }
    }
    kernel_isa_select(NULL);
    thread_pool_free(pool);
}

/* Largest |out − definition| over nq queries: softmax(q_g·k_u · 0.3) · v in double. */
static double attention_error(const float *q, int nq, const float *keys, const float *vals, int n_keys, int hd,
                              const float *out) {
    double worst = 0, *p = malloc(sizeof(double) * n_keys);
    for (int g = 0; g < nq; g++) {
        double max = -1e300, sum = 0;
        for (int u = 0; u < n_keys; u++) {
            double s = 0;
            for (int d = 0; d < hd; d++) s += (double)q[g * hd + d] * keys[u * hd + d];
            p[u] = s * 0.3;
            max = fmax(max, p[u]);
        }
        for (int u = 0; u < n_keys; u++) sum += p[u] = exp(p[u] - max);
        for (int d = 0; d < hd; d++) {
            double ref = 0;
            for (int u = 0; u < n_keys; u++) ref += p[u] / sum * vals[u * hd + d];
            worst = fmax(worst, fabs(ref - out[g * hd + d]));
        }
    }
    free(p);
    return worst;
}

/* Attention on every instruction set and every cache type against a double-precision definition (over the keys and
 * values the cache holds: rounded to f16, or Q8_0 blocks dequantized by quant.c's dequantize_row): head sizes with
 * and without 64/16/8-wide chunks and scalar tails (multiples of 32 for Q8_0), 1 to 300 keys (partial key blocks),
 * 1 to 5 queries sharing the keys, tiles of 1 to 17 tokens (each seeing one key more than the one before), strided
 * rows. Every token of a tile gets the bits a call for that token alone gives (verification passes must match
 * single steps). */
static void check_attention_isas(void) {
    const int head_dims[] = {4, 13, 16, 32, 40, 64, 72, 128}, tiles[] = {1, 2, 5, 17};
    const char *isas[] = {"scalar", "avx2"};
    const tandem_type kv_types[] = {TANDEM_TYPE_F32, TANDEM_TYPE_F16, TANDEM_TYPE_Q8_0};
    for (size_t k = 0; k < 2; k++) {
        if (!kernel_isa_select(isas[k])) continue;
        for (size_t kt = 0; kt < 3; kt++) {
            const tandem_type kv = kv_types[kt];
            const char *kv_name = tandem_type_name(kv);
            double worst = 0;
            int cases = 0, differ = 0;
            for (size_t hi = 0; hi < sizeof head_dims / sizeof head_dims[0]; hi++) {
                const int hd = head_dims[hi];
                if (kv_type_problem(kv, hd)) continue;
                const size_t row_bytes = kv_row_bytes(kv, hd);
                for (int n_keys0 = 1; n_keys0 <= 300; n_keys0 += 37) {
                    const int nq = 1 + (n_keys0 + (int)hi) % 5, T = tiles[(n_keys0 / 37 + hi) % 4];
                    const int n_keys = n_keys0 + T - 1, stride = nq * hd + 3;  /* rows 3 floats apart */
                    float *q = malloc(sizeof(float) * stride * T), *keys = malloc(sizeof(float) * hd * n_keys);
                    float *vals = malloc(sizeof(float) * hd * n_keys), *out = malloc(sizeof(float) * stride * T);
                    float *single = malloc(sizeof(float) * nq * hd);
                    uint8_t *kc = malloc(row_bytes * n_keys), *vc = malloc(row_bytes * n_keys);
                    float *sc = malloc(sizeof(float) * attention_scratch_floats(T * nq, hd));
                    /* every third case with large scores: the softmax then spans e^0 … below e^-87 */
                    const float q_scale = n_keys0 % 3 == 2 ? 60.0f : 2.0f;
                    for (int i = 0; i < stride * T; i++) q[i] = frand() * q_scale;
                    for (int i = 0; i < hd * n_keys; i++) keys[i] = frand(), vals[i] = frand();
                    for (int u = 0; u < n_keys; u++) { /* the cache's rows, and what they hold as floats */
                        kv_store_row(kv, kc + u * row_bytes, keys + u * hd, hd);
                        kv_store_row(kv, vc + u * row_bytes, vals + u * hd, hd);
                        if (kv == TANDEM_TYPE_F32) continue;
                        dequantize_row(kv, kc + u * row_bytes, keys + u * hd, hd);
                        dequantize_row(kv, vc + u * row_bytes, vals + u * hd, hd);
                    }
                    attention_forward(out, stride, q, stride, T, nq, kc, vc, kv, n_keys0, hd, 0.3f, sc);
                    for (int t = 0; t < T; t++) {
                        worst = fmax(worst, attention_error(q + t * stride, nq, keys, vals, n_keys0 + t, hd, out + t * stride));
                        attention_forward(single, nq * hd, q + t * stride, nq * hd, 1, nq, kc, vc, kv, n_keys0 + t, hd,
                                          0.3f, sc);
                        differ += memcmp(single, out + t * stride, sizeof(float) * nq * hd) != 0;
                        cases++;
                    }
                    free(q);
                    free(keys);
                    free(vals);
                    free(out);
                    free(single);
                    free(sc);
                    free(kc);
                    free(vc);
                }
            }
            printf("attention on %s (%s cache): %.2g from the definition at worst; %d tokens of tiles\n", isas[k],
                   kv_name, worst, cases);
            /* f32 sums over up to 300 weighted values of magnitude ≤ 1: a few 1e-6 of rounding */
            CHECK_MSG(cases > 0 && worst < 2e-5, "attention on %s (%s cache) differs from the definition by %g",
                      isas[k], kv_name, worst);
            CHECK_MSG(differ == 0, "attention on %s (%s cache): %d of %d tokens of tiles differ from single calls",
                      isas[k], kv_name, differ, cases);
        }
    }
    kernel_isa_select(NULL);
}

/* kv_store_row's Q8_0 rows are quantize_row's (ggml's rule) for finite values; a NaN makes its block's scale NaN, so
 * every value of that block reads back as NaN instead of a finite value; kv_type_problem names what a cache cannot
 * hold. */
static void check_kv_rows(void) {
    enum { HD = 96 };
    float x[HD], back[HD];
    uint8_t got[HD / 32 * 34], want[HD / 32 * 34];
    for (int i = 0; i < HD; i++) x[i] = frand() * ldexpf(1.0f, i % 9 - 4);
    x[5] = 0.0f, x[40] = -3.5f;
    CHECK(kv_row_bytes(TANDEM_TYPE_Q8_0, HD) == sizeof got);
    kv_store_row(TANDEM_TYPE_Q8_0, got, x, HD);
    quantize_row(TANDEM_TYPE_Q8_0, x, want, HD);
    CHECK_MSG(memcmp(got, want, sizeof got) == 0, "kv_store_row's Q8_0 differs from quantize_row");
    x[40] = NAN;
    kv_store_row(TANDEM_TYPE_Q8_0, got, x, HD);
    dequantize_row(TANDEM_TYPE_Q8_0, got, back, HD);
    int nan_count = 0, finite_count = 0;
    for (int i = 0; i < HD; i++)
        nan_count += isnan(back[i]) && i / 32 == 1, finite_count += isfinite(back[i]) && i / 32 != 1;
    CHECK_MSG(nan_count == 32 && finite_count == 64, "a NaN in a Q8_0 row: %d NaN in its block, %d finite elsewhere",
              nan_count, finite_count);
    CHECK(kv_type_problem(TANDEM_TYPE_Q8_0, 16) != NULL && kv_type_problem(TANDEM_TYPE_Q4_0, 128) != NULL);
    CHECK(!kv_type_problem(TANDEM_TYPE_F16, 16) && !kv_type_problem(TANDEM_TYPE_F32, 13));
}

/* f32 → f16 rows on every instruction set give f32_to_f16's bits: random values over the f16 range, ties,
 * subnormals, overflow to infinity, and lengths with scalar tails. */
static void check_to_f16_isas(void) {
    const char *isas[] = {"scalar", "avx2"};
    enum { N = 517 };
    float x[N];
    uint16_t got[N];
    for (int i = 0; i < N; i++) x[i] = frand() * ldexpf(1.0f, (i % 40) - 26);
    x[0] = 1.0f + 0x1p-11f, x[1] = 1.0f + 3 * 0x1p-11f, x[2] = 65520.0f, x[3] = -1e30f, x[4] = 0x1p-25f, x[5] = -0.0f;
    x[6] = INFINITY, x[7] = 3 * 0x1p-26f;
    for (size_t k = 0; k < 2; k++) {
        if (!kernel_isa_select(isas[k])) continue;
        for (int n = 1; n <= N; n += 129) {
            f32_to_f16_row(got, x, n);
            int bad = 0;
            for (int i = 0; i < n; i++) bad += got[i] != f32_to_f16(x[i]);
            CHECK_MSG(bad == 0, "f32_to_f16_row on %s (n=%d): %d values differ from f32_to_f16", isas[k], n, bad);
        }
    }
    kernel_isa_select(NULL);
}

/* The SIMD softmax on every instruction set against softmax in double (float's rounding of a score minus the
 * maximum, up to 2^-17 of 120, shows as 1e-6 of a probability) and against softmax_forward (expf), with rows far
 * apart in scale (scores of ±60) and lengths that leave scalar tails; the probabilities sum to one. */
static void check_softmax_isas(void) {
    const char *isas[] = {"scalar", "avx2"};
    enum { N = 203 };
    float x[N], y[N], z[N];
    for (int i = 0; i < N; i++) x[i] = frand() * (i % 7 == 0 ? 60.0f : 4.0f);
    for (size_t k = 0; k < 2; k++) {
        if (!kernel_isa_select(isas[k])) continue;
        for (int n = 1; n <= N; n += 17) {
            memcpy(y, x, sizeof x);
            memcpy(z, x, sizeof x);
            softmax_forward_simd(y, n);
            softmax_forward(z, n);
            double max = x[0], sum = 0, total = 0, worst = 0, worst_expf = 0;
            for (int i = 1; i < n; i++) max = fmax(max, x[i]);
            for (int i = 0; i < n; i++) sum += exp((double)x[i] - max);
            for (int i = 0; i < n; i++) {
                const double ref = exp((double)x[i] - max) / sum;
                worst = fmax(worst, fabs(ref - y[i]) / fmax(ref, 1e-30));
                worst_expf = fmax(worst_expf, fabs((double)z[i] - y[i]) / fmax(z[i], 1e-30));
                total += y[i];
            }
            CHECK_MSG(worst < 1e-5, "softmax on %s (n=%d) is off by %g relative", isas[k], n, worst);
            CHECK_MSG(worst_expf < 1e-6, "softmax on %s (n=%d) is %g from expf's", isas[k], n, worst_expf);
            CHECK_NEAR(total, 1.0, 1e-6);
        }
    }
    kernel_isa_select(NULL);
}

/* SwiGLU on every instruction set against silu(g)·u in double, with gates far into both tails (e^-g
 * overflowing and underflowing) and lengths that leave scalar tails. */
static void check_swiglu_isas(void) {
    const char *isas[] = {"scalar", "avx2"};
    enum { N = 203 };
    float g[N], u[N], o[N];
    for (int i = 0; i < N; i++) g[i] = frand() * (i % 5 == 0 ? 120.0f : 6.0f), u[i] = frand() * 3.0f;
    for (size_t k = 0; k < 2; k++) {
        if (!kernel_isa_select(isas[k])) continue;
        for (int n = 1; n <= N; n += 101) {
            swiglu_forward(o, g, u, n);
            double worst = 0;
            for (int i = 0; i < n; i++) {
                const double ref = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
                worst = fmax(worst, fabs(ref - o[i]) / fmax(fabs(ref), 1e-20));  /* below 1e-20: zero for any use */
            }
            CHECK_MSG(worst < 1e-6, "swiglu on %s (n=%d) is off by %g relative", isas[k], n, worst);
        }
    }
    kernel_isa_select(NULL);
}

/* The vision encoder's ops against double-precision definitions: LayerNorm (a long row with a large common offset,
 * in place), bias rows, GELU in both forms (tails where e^(−2u) overflows and underflows, scalar tails of the SIMD
 * loop) on every instruction set, the 2-D rotary angles, and bidirectional attention on every instruction set
 * (every query sees every key; partial key blocks, head sizes with and without 8-wide chunks). */
static void check_vision_ops(void) {
    enum { N = 1029 };
    float *x = malloc(sizeof(float) * N), *w = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N);
    float *out = malloc(sizeof(float) * N);
    double mean = 0, var = 0;
    for (int i = 0; i < N; i++) x[i] = 100.0f + frand() * (i % 5 + 1), w[i] = frand(), b[i] = frand(), mean += x[i];
    mean /= N;
    for (int i = 0; i < N; i++) var += (x[i] - mean) * (x[i] - mean) / N;
    memcpy(out, x, sizeof(float) * N);
    layernorm_forward(out, out, w, b, N, 1e-6f);
    double worst = 0;
    for (int i = 0; i < N; i++) worst = fmax(worst, fabs(out[i] - ((x[i] - mean) / sqrt(var + 1e-6) * w[i] + b[i])));
    CHECK_MSG(worst < 2e-5, "LayerNorm over %d values differs from the definition by %g", N, worst);

    float y[3 * 5], bias[5];
    for (int i = 0; i < 15; i++) y[i] = (float)i;
    for (int i = 0; i < 5; i++) bias[i] = 0.5f * i;
    bias_add_rows(y, bias, 3, 5);
    for (int i = 0; i < 15; i++) CHECK(y[i] == (float)i + 0.5f * (i % 5));

    for (int i = 0; i < N; i++) x[i] = frand() * (i % 7 == 0 ? 40.0f : 4.0f);
    const char *isas[] = {"scalar", "avx2"};
    for (size_t k = 0; k < 2; k++) {
        if (!kernel_isa_select(isas[k])) continue;
        for (int n = 1; n <= N; n += 257) {
            gelu_tanh_forward(out, x, n);
            worst = 0;
            for (int i = 0; i < n; i++) {
                const double v = x[i], ref = 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
                worst = fmax(worst, fabs(ref - out[i]) / (1.0 + fabs(v)));
            }
            CHECK_MSG(worst < 1e-6, "gelu_tanh on %s (n=%d) is off by %g", isas[k], n, worst);
        }
    }
    kernel_isa_select(NULL);
    gelu_erf_forward(out, x, N);
    worst = 0;
    for (int i = 0; i < N; i++)
        worst = fmax(worst, fabs(0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0))) - out[i]) / (1.0 + fabs(x[i])));
    CHECK_MSG(worst < 1e-6, "gelu_erf is off by %g", worst);
    /* the two forms differ (by ~4e-4 at x = 3): a test that mixed them up would see it */
    float t3 = 3.0f, e3 = 3.0f;
    gelu_tanh_forward(&t3, &t3, 1);
    gelu_erf_forward(&e3, &e3, 1);
    CHECK(fabsf(t3 - e3) > 2e-4f);

    /* 2-D rotary: angles row·ω_k for the first quarter, col·ω_k for the second, ω_k = θ^(-4k/hd) */
    enum { HD = 20 };
    float inv[HD / 4], cs[HD];
    rope_inv_freq(inv, HD / 2, 10000.0f);
    rope_angles_2d(cs, HD, 3, 7, inv);
    for (int k = 0; k < HD / 2; k++) {
        const double a = (k < HD / 4 ? 3.0 : 7.0) * pow(10000.0, -4.0 * (k % (HD / 4)) / HD);
        CHECK_NEAR(cs[k], cos(a), 1e-5);
        CHECK_NEAR(cs[HD / 2 + k], sin(a), 1e-5);
    }
    free(x), free(w), free(b), free(out);

    const int head_dims[] = {16, 20, 24, 64, 72};
    for (size_t k = 0; k < 2; k++) {
        if (!kernel_isa_select(isas[k])) continue;
        worst = 0;
        for (size_t hi = 0; hi < sizeof head_dims / sizeof head_dims[0]; hi++) {
            const int hd = head_dims[hi];
            for (int n_keys = 1; n_keys <= 200; n_keys += 33) {
                const int nq = 1 + (n_keys * 7 + (int)hi) % 70;
                float *q = malloc(sizeof(float) * nq * hd), *keys = malloc(sizeof(float) * n_keys * hd);
                float *vals = malloc(sizeof(float) * n_keys * hd), *o = malloc(sizeof(float) * nq * hd);
                float *sc = malloc(sizeof(float) * attention_scratch_floats(nq, hd));
                for (int i = 0; i < nq * hd; i++) q[i] = frand() * 2.0f;
                for (int i = 0; i < n_keys * hd; i++) keys[i] = frand(), vals[i] = frand();
                attention_full_forward(o, q, nq, keys, vals, n_keys, hd, 0.3f, sc);
                worst = fmax(worst, attention_error(q, nq, keys, vals, n_keys, hd, o));
                free(q), free(keys), free(vals), free(o), free(sc);
            }
        }
        CHECK_MSG(worst < 2e-5, "bidirectional attention on %s differs from the definition by %g", isas[k], worst);
    }
    kernel_isa_select(NULL);
}

/* argmax on every instruction set against a plain loop: the first of equal maxima, NaNs never chosen, a
 * maximum in the scalar tail, -inf everywhere, all NaN. */
static void check_argmax_isas(void) {
    const char *isas[] = {"scalar", "avx2"};
    enum { N = 1000 };
    float *x = malloc(sizeof(float) * N);
    for (size_t k = 0; k < 2; k++) {
        if (!kernel_isa_select(isas[k])) continue;
        for (int n = 1; n <= N; n += 37) {
            for (int i = 0; i < n; i++) x[i] = frand();
            const int64_t at = (n * 7 + 3) % n;
            x[at] = 2.0f;
            CHECK_MSG(argmax_f32(x, n) == at, "argmax on %s (n=%d): %lld, expected %lld", isas[k], n,
                      (long long)argmax_f32(x, n), (long long)at);
            x[n - 1] = 2.0f;  /* a tie: the first one wins */
            CHECK(argmax_f32(x, n) == (at < n - 1 ? at : n - 1));
            x[n - 1] = 3.0f;  /* the maximum in the last, possibly scalar, position */
            CHECK(argmax_f32(x, n) == n - 1);
            x[at] = NAN;
            if (at != n - 1) CHECK(argmax_f32(x, n) == n - 1);
        }
        for (int i = 0; i < 45; i++) x[i] = -INFINITY;
        x[0] = NAN;
        CHECK(argmax_f32(x, 45) == 1);
        for (int i = 0; i < 45; i++) x[i] = NAN;
        CHECK(argmax_f32(x, 45) == 0);
    }
    free(x);
    kernel_isa_select(NULL);
}

/* A NaN must reach the logits, where tandem_ctx_eval looks for it: all_finite_f32 finds any NaN or infinity (and
 * passes FLT_MAX), and neither the 8-bit activations nor attention turn a NaN into a finite value on any
 * instruction set (they did: max|x| skipped NaN, and the AVX2 exp clamped it to e^-87). */
static void check_nonfinite(void) {
    enum { N = 77 };
    float x[N];
    for (int n = 0; n <= N; n++) {
        for (int i = 0; i < n; i++) x[i] = i % 2 ? FLT_MAX : -FLT_MAX / 3;
        CHECK_MSG(all_finite_f32(x, n), "all_finite_f32 (n=%d) refuses finite values", n);
        for (int at = 0; at < n; at++) {
            const float bad[3] = {NAN, INFINITY, -INFINITY};
            for (int b = 0; b < 3; b++) {
                x[at] = bad[b];
                CHECK_MSG(!all_finite_f32(x, n), "all_finite_f32 (n=%d) misses %g at %d", n, bad[b], at);
            }
            x[at] = 1.0f;
        }
    }
    const char *isas[] = {"scalar", "avx2", "avx512vnni"};
    for (size_t k = 0; k < 3; k++) {
        if (!kernel_isa_select(isas[k])) continue;
        float a[256];
        act_block q[8];
        for (int i = 0; i < 256; i++) a[i] = frand();
        a[40] = NAN;  /* in the second block of 32 */
        quantize_act(a, q, 256, 1);
        CHECK_MSG(isnan(q[1].d) && !isnan(q[0].d) && !isnan(q[2].d), "%s quantize_act: NaN not kept in its block",
                  isas[k]);
        quantize_act(a, q, 256, 8);
        CHECK_MSG(isnan(q[0].d) && isnan(q[7].d), "%s quantize_act (8 blocks per scale): NaN not kept", isas[k]);
        float qv[4] = {1, 0.5f, 0, 0}, keys[12] = {0}, vals[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, att[4];
        float sc[ATTENTION_SCRATCH_PER_QUERY];
        keys[4] = NAN;  /* the second key */
        attention_forward(att, 4, qv, 4, 1, 1, keys, vals, TANDEM_TYPE_F32, 3, 4, 0.5f, sc);
        CHECK_MSG(!all_finite_f32(att, 4), "%s attention: a NaN key gives a finite output", isas[k]);
    }
    kernel_isa_select(NULL);
}

static void check_ops(void) {
    /* RMSNorm */
    float x[8] = {1, -2, 3, -4, 5, -6, 7, -8}, w[8], out[8];
    double ms = 0;
    for (int i = 0; i < 8; i++) w[i] = 0.5f + i * 0.1f, ms += x[i] * x[i] / 8.0;
    rmsnorm_forward(out, x, w, 8, 1e-6f);
    for (int i = 0; i < 8; i++) CHECK_NEAR(out[i], w[i] * x[i] / sqrt(ms + 1e-6), 1e-6);
    /* a long row with a tail past the eight running sums, in place */
    enum { N = 1027 };
    float *xl = malloc(sizeof(float) * N), *wl = malloc(sizeof(float) * N), *xl0 = malloc(sizeof(float) * N);
    double msl = 0;
    for (int i = 0; i < N; i++) xl[i] = xl0[i] = frand() * (i % 7 + 1), wl[i] = frand(), msl += (double)xl[i] * xl[i] / N;
    rmsnorm_forward(xl, xl, wl, N, 1e-6f);
    double worst = 0;
    for (int i = 0; i < N; i++) worst = fmax(worst, fabs(xl[i] - wl[i] * xl0[i] / sqrt(msl + 1e-6)));
    CHECK_MSG(worst < 1e-6, "RMSNorm over %d values differs from the definition by %g", N, worst);
    free(xl); free(wl); free(xl0);

    /* RoPE rotate-half: pairs (k, k + d/2) rotate by pos·θ^(-2k/d); norms are preserved */
    enum { D = 8 };
    float inv[D / 2], v[2 * D], v0[2 * D];
    rope_inv_freq(inv, D, 10000.0f);
    for (int k = 0; k < D / 2; k++) CHECK_NEAR(inv[k], pow(10000.0, -2.0 * k / D), 1e-6);
    for (int i = 0; i < 2 * D; i++) v[i] = v0[i] = frand();
    float cos_sin[D];
    rope_angles(cos_sin, D, 5, inv);
    rope_forward(v, 2, D, cos_sin);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < D / 2; k++) {
            double a = 5.0 * inv[k], x0 = v0[h * D + k], x1 = v0[h * D + k + D / 2];
            CHECK_NEAR(v[h * D + k], x0 * cos(a) - x1 * sin(a), 1e-6);
            CHECK_NEAR(v[h * D + k + D / 2], x1 * cos(a) + x0 * sin(a), 1e-6);
        }

    /* softmax, SwiGLU */
    float s[4] = {1, 2, 3, 1000};
    softmax_forward(s, 4);
    CHECK_NEAR(s[3], 1.0, 1e-6);
    CHECK(s[0] >= 0 && s[0] < 1e-6);
    float g[3] = {-1, 0, 2}, u[3] = {2, 3, 4}, o[3];
    swiglu_forward(o, g, u, 3);
    for (int i = 0; i < 3; i++) CHECK_NEAR(o[i], g[i] / (1 + exp(-g[i])) * u[i], 1e-6);

    /* attention: one key → its value; equal scores → mean of values */
    float q[4] = {1, 0, 0, 0}, keys[8] = {0}, vals[8] = {1, 2, 3, 4, 5, 6, 7, 8}, att[4], sc[ATTENTION_SCRATCH_PER_QUERY];
    attention_forward(att, 4, q, 4, 1, 1, keys, vals, TANDEM_TYPE_F32, 1, 4, 0.5f, sc);
    for (int i = 0; i < 4; i++) CHECK_NEAR(att[i], vals[i], 1e-6);
    attention_forward(att, 4, q, 4, 1, 1, keys, vals, TANDEM_TYPE_F32, 2, 4, 0.5f, sc);
    for (int i = 0; i < 4; i++) CHECK_NEAR(att[i], (vals[i] + vals[4 + i]) / 2, 1e-6);
}

/* ---- top-k against a full sort (value descending, then index ascending) ---- */

typedef struct ranked { float v; int32_t i; } ranked;
static int by_rank(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* top_k_f32 equals the first min(k, n) entries of the sorted list: the same ids, values and order. */
static void check_top_k_case(const float *z, int32_t n, int32_t k, const char *what) {
    ranked *ref = malloc((size_t)n * sizeof *ref);
    int32_t *ids = malloc((size_t)k * sizeof *ids);
    float *vals = malloc((size_t)k * sizeof *vals);
    for (int32_t i = 0; i < n; i++) ref[i] = (ranked){z[i], i};
    qsort(ref, (size_t)n, sizeof *ref, by_rank);
    const int32_t m = top_k_f32(z, n, k, ids, vals), want = k < n ? k : n;
    CHECK_MSG(m == want, "%s: n %d k %d kept %d", what, n, k, m);
    int bad = -1;
    for (int32_t j = 0; j < want && bad < 0; j++)
        if (ids[j] != ref[j].i || vals[j] != ref[j].v) bad = j;
    CHECK_MSG(bad < 0, "%s: n %d k %d: entry %d is (%d, %g), the sort says (%d, %g)", what, n, k, bad,
              bad < 0 ? 0 : ids[bad], bad < 0 ? 0.0 : vals[bad], bad < 0 ? 0 : ref[bad].i,
              bad < 0 ? 0.0 : ref[bad].v);
    free(ref), free(ids), free(vals);
}

static void check_top_k(void) {
    enum { N = 1000 };
    float *z = malloc(N * sizeof *z);
    const int32_t ks[] = {1, 2, 3, 17, 40, 500, 999, 1000, 1001, 5000};
    for (size_t c = 0; c < sizeof ks / sizeof *ks; c++) {
        const int32_t k = ks[c];
        for (int i = 0; i < N; i++) z[i] = frand();
        check_top_k_case(z, N, k, "distinct");
        for (int i = 0; i < N; i++) z[i] = (float)(int)(4 * frand());  /* 7 values: ties everywhere */
        check_top_k_case(z, N, k, "few values");
        for (int i = 0; i < N; i++) z[i] = 1.5f;
        check_top_k_case(z, N, k, "all equal");
        for (int i = 0; i < N; i++) z[i] = (float)i;
        check_top_k_case(z, N, k, "ascending");
        for (int i = 0; i < N; i++) z[i] = (float)(N - i);
        check_top_k_case(z, N, k, "descending");
        for (int i = 0; i < N; i++) z[i] = i % 3 ? -INFINITY : (float)((i * 7919) % 997) / 10.0f;
        check_top_k_case(z, N, k, "-inf and repeats");
        check_top_k_case(z, 1, k, "one value");
        check_top_k_case(z + 7, 5, k, "five values");
    }
    free(z);
}

/* Qwen3-VL's interleaved M-RoPE: with sections [24, 20, 20] (head_dim 128) frequency k takes h when k % 3 == 1 and
 * k < 60, w when k % 3 == 2 and k < 60, else t (so 60-63 are t), as transformers' apply_interleaved_mrope; equal
 * components are plain RoPE, to the bit. */
static void check_mrope(void) {
    enum { HD = 128 };
    float inv[HD / 2], cs[HD], plain[HD];
    rope_inv_freq(inv, HD, 5e6f);
    const int32_t sections[3] = {24, 20, 20}, pos[3] = {5, 11, 17};
    rope_angles_mrope(cs, HD, pos, sections, inv);
    int from[3] = {0, 0, 0};
    for (int k = 0; k < HD / 2; k++) {
        const int axis = k < 60 && k % 3 ? k % 3 : 0;
        from[axis]++;
        const float angle = (float)pos[axis] * inv[k];
        CHECK(cs[k] == (float)cos((double)angle) && cs[HD / 2 + k] == (float)sin((double)angle));
    }
    CHECK(from[0] == 24 && from[1] == 20 && from[2] == 20);
    const int32_t same[3] = {9, 9, 9};
    rope_angles_mrope(cs, HD, same, sections, inv);
    rope_angles(plain, HD, 9, inv);
    CHECK(memcmp(cs, plain, sizeof cs) == 0);
}

int main(void) {
    check_half_precision();
    check_mrope();
    check_quant_roundtrip();
    check_dot_rows();
    check_matmul();
    check_quantize_act(1);
    check_quantize_act(8);
    check_float_rows();
    check_attention_isas();
    check_kv_rows();
    check_to_f16_isas();
    check_swiglu_isas();
    check_softmax_isas();
    check_vision_ops();
    check_argmax_isas();
    check_ops();
    check_nonfinite();
    check_top_k();
    return test_summary();
}
