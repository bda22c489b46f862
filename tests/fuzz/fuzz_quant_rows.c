/* fuzz_quant_rows.c — the block decoders behind every weight type: quantized rows come straight from model
 * files, so dequantize_row and dot_row must read exactly their row and nothing else, whatever the bytes.
 * Input: byte 0 picks a type tandem can run, byte 1 the number of blocks (1..8), byte 2 the activation pattern,
 * the rest is the row (zero-padded to the exact size, which lives in its own allocation so ASan sees any read
 * past it). Oracles: dot_row(row, x) agrees with Σ dequantize_row(row)[i]·x[i] when everything is finite; the
 * same for a row produced by quantize_row from values inside quantize_input_ok's domain, for the types tandem
 * can write. */
#include <math.h>

#include "fuzz_common.h"
#include "kernels.h"

static tandem_type types[TANDEM_TYPE_COUNT];
static int n_types;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    for (int t = 0; t < TANDEM_TYPE_COUNT; t++)
        if (tandem_type_known(t) && kernel_type_supported((tandem_type)t)) types[n_types++] = (tandem_type)t;
    FUZZ_CHECK(n_types > 0);
    return 0;
}

/* Σ w[i]·x[i] in double, and Σ |w[i]·x[i]| for the tolerance; false if anything is not finite. */
static bool reference_dot(const float *w, const float *x, int64_t n, double *dot, double *mag) {
    *dot = 0;
    *mag = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(w[i]) || !isfinite(x[i])) return false;
        double p = (double)w[i] * x[i];
        *dot += p;
        *mag += fabs(p);
    }
    return isfinite(*mag) && *mag < 1e30;
}

static void check_row(tandem_type t, const void *row, const float *x, int64_t n) {
    float *w = malloc((size_t)n * sizeof *w);
    FUZZ_CHECK(w != NULL);
    dequantize_row(t, row, w, n);
    float got = dot_row(t, row, x, n);
    double want, mag;
    if (reference_dot(w, x, n, &want, &mag)) {
        double tol = 1e-3 * mag + 1e-6;  /* float accumulation over at most 2048 products */
        if (!(fabs((double)got - want) <= tol)) {
            fprintf(stderr, "fuzz_quant_rows: %s n=%lld: dot_row %.9g, dequantized dot %.9g (tolerance %.3g)\n",
                    tandem_type_name(t), (long long)n, got, want, tol);
            abort();
        }
    }
    free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    const tandem_type t = types[data[0] % n_types];
    const int64_t block = tandem_type_block_size(t), n_blocks = 1 + data[1] % 8, n = block * n_blocks;
    uint64_t row_bytes = 0;
    FUZZ_CHECK(tandem_type_row_bytes(t, n, &row_bytes));
    uint8_t *row = calloc(1, (size_t)row_bytes);  /* exact size: ASan reports a read one past it */
    FUZZ_CHECK(row != NULL);
    memcpy(row, data + 3, size - 3 < row_bytes ? size - 3 : (size_t)row_bytes);

    /* Activations: a smooth pattern scaled by the third byte (occasionally huge, tiny or negative). */
    float *x = malloc((size_t)n * sizeof *x);
    FUZZ_CHECK(x != NULL);
    const float scale = ldexpf(1.0f, (int)(data[2] % 64) - 32) * (data[2] & 0x80 ? -1.0f : 1.0f);
    for (int64_t i = 0; i < n; i++) x[i] = scale * (float)((i * 37 + data[2]) % 17 - 8) / 8.0f;

    check_row(t, row, x, n);

    if (kernel_can_quantize(t)) {
        /* The row's bytes read as floats give values of every kind, NaN and infinities included; those that
         * quantize_input_ok refuses are not quantized (the converter reports them). */
        float *src = calloc((size_t)n, sizeof *src);
        FUZZ_CHECK(src != NULL);
        memcpy(src, row, (size_t)n * sizeof *src < row_bytes ? (size_t)n * sizeof *src : (size_t)row_bytes);
        uint8_t *q = malloc((size_t)row_bytes);
        FUZZ_CHECK(q != NULL);
        /* quantizers are defined for finite weights of sane magnitude; others are refused by the caller */
        if (quantize_input_ok(src, n)) {
            quantize_row(t, src, q, n);
            check_row(t, q, x, n);
        }
        /* Raw floats rarely pass, so also the row's bytes as int8 steps times a common power of two: always
         * inside the domain (0, or 2^-22 ≤ |x| ≤ 127·2^22), with runs, signs and outliers the fuzzer controls. */
        const int e = (int)(data[2] % 45) - 22;
        for (int64_t i = 0; i < n; i++) src[i] = ldexpf((float)(int8_t)row[(size_t)i % row_bytes], e);
        FUZZ_CHECK(quantize_input_ok(src, n));
        quantize_row(t, src, q, n);
        check_row(t, q, x, n);
        free(q);
        free(src);
    }
    free(x);
    free(row);
    return 0;
}
