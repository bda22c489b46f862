/* kernel_bench.c — the matrix product alone, per weight type: weight bytes streamed per second at 1 token
 * (decode) and the cost of a pass over k tokens relative to k = 1 (verification), on one large matrix.
 *
 * `tandem bench` measures a whole model; this isolates one kernel so a change to it can be judged without
 * the rest of the forward pass (and without making an 8B file). Random weights: speed does not depend on
 * their values. Usage: kernel_bench [--types q8_0,q4_0,q4_k,q6_k,q5_k,f16,bf16,f32] [--rows R] [--cols C]
 * [--threads N] [--seconds S] [--max-k K]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float random_uniform(void) {  /* xorshift64*, in [-1, 1) */
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return (float)((rng_state * 0x2545F4914F6CDD1Dull) >> 40) / (float)(1 << 23) - 1.0f;
}

static bool parse_type(const char *name, tandem_type *out) {
    static const struct { const char *name; tandem_type type; } TYPES[] = {
        {"q8_0", TANDEM_TYPE_Q8_0}, {"q4_0", TANDEM_TYPE_Q4_0}, {"q4_k", TANDEM_TYPE_Q4_K},
        {"q6_k", TANDEM_TYPE_Q6_K}, {"q5_k", TANDEM_TYPE_Q5_K}, {"f16", TANDEM_TYPE_F16}, {"bf16", TANDEM_TYPE_BF16},
        {"f32", TANDEM_TYPE_F32},
    };
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (strcmp(name, TYPES[i].name) == 0) return *out = TYPES[i].type, true;
    return false;
}

/* Seconds per matmul over n_tokens, the best of as many runs as fit in `seconds`; *mean (if not NULL) gets
 * their mean. From memory the two differ by 10-30% on a shared host: the best says what the kernel can do,
 * the mean what a model streaming many matrices in a row gets. */
static double time_matmul(thread_pool *pool, const weight_matrix *w, const float *x, float *y, int n_tokens,
                          const matmul_scratch *scratch, double seconds, double *mean) {
    double best = 1e30, total = 0, start = now_seconds();
    int runs = 0;
    matmul(pool, y, x, w, n_tokens, scratch);  /* warm-up */
    for (; runs < 3 || now_seconds() - start < seconds; runs++) {
        const double t0 = now_seconds();
        matmul(pool, y, x, w, n_tokens, scratch);
        const double t = now_seconds() - t0;
        if (t < best) best = t;
        total += t;
    }
    if (mean) *mean = total / runs;
    return best;
}

int main(int argc, char **argv) {
    const char *types = "q8_0,q4_0,q4_k,q6_k";
    int64_t rows = 49152, cols = 4096;  /* 113 MB at 4 bits: well beyond the L3 cache */
    int threads = 2;
    double seconds = 1.0;
    int max_k = 16;
    for (int i = 1; i < argc; i++) {
        const bool has_value = i + 1 < argc;
        if (strcmp(argv[i], "--types") == 0 && has_value) types = argv[++i];
        else if (strcmp(argv[i], "--rows") == 0 && has_value) rows = atoll(argv[++i]);
        else if (strcmp(argv[i], "--cols") == 0 && has_value) cols = atoll(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && has_value) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && has_value) seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--max-k") == 0 && has_value) max_k = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--types q8_0,q4_0,q4_k,q6_k,q5_k,f16,bf16,f32] [--rows R] [--cols C] "
                            "[--threads N] [--seconds S] [--max-k K]\n", argv[0]);
            return 2;
        }
    }
    if (rows <= 0 || rows % 8 != 0 || cols <= 0 || cols % 256 != 0 || threads < 1) {
        fprintf(stderr, "kernel_bench: rows must be a positive multiple of 8, cols of 256, threads >= 1\n");
        return 2;
    }
    enum { MAX_K = 16 };
    thread_pool *pool = NULL;
    if (thread_pool_create(threads, &pool) != TANDEM_OK) return 1;
    float *x = malloc(sizeof(float) * (size_t)(MAX_K * cols)), *y = malloc(sizeof(float) * (size_t)(MAX_K * rows));
    float *row = malloc(sizeof(float) * (size_t)cols);
    matmul_scratch scratch = {.rows = malloc(sizeof(float) * (size_t)(threads * cols)),
                              .act = malloc(sizeof(act_block) * (size_t)(MAX_K * cols / 32))};
    if (!x || !y || !row || !scratch.rows || !scratch.act) return 1;
    for (int64_t i = 0; i < MAX_K * cols; i++) x[i] = random_uniform();

    printf("kernels %s, %d threads, matrix %lld x %lld\n", kernel_isa_name(), threads, (long long)rows,
           (long long)cols);
    printf("%-6s %9s %9s %9s %7s %7s %7s %7s\n", "type", "MB", "GB/s k=1", "(mean)", "k=2", "k=4", "k=8", "k=16");
    char *list = strdup(types);
    for (char *name = strtok(list, ","); name; name = strtok(NULL, ",")) {
        tandem_type type;
        if (!parse_type(name, &type)) {
            fprintf(stderr, "kernel_bench: unknown type '%s'\n", name);
            return 2;
        }
        uint64_t row_bytes = 0;
        if (!tandem_type_row_bytes(type, cols, &row_bytes)) return 1;
        uint8_t *data = malloc(row_bytes * (size_t)rows);
        if (!data) return 1;
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cols; c++) row[c] = random_uniform();
            quantize_row(type, row, data + (size_t)r * row_bytes, cols);
        }
        weight_matrix w = {data, type, rows, cols, row_bytes, false};
        void *packed = NULL;
        if (weight_pack(pool, &w, &packed) != TANDEM_OK) return 1;
        const double bytes = (double)row_bytes * (double)rows;
        double mean1;
        const double t1 = time_matmul(pool, &w, x, y, 1, &scratch, seconds, &mean1);
        printf("%-6s %9.1f %9.1f %9.1f", name, bytes / 1e6, bytes / t1 / 1e9, bytes / mean1 / 1e9);
        for (int k = 2; k <= max_k && k <= MAX_K; k *= 2)
            printf(" %6.2fx", time_matmul(pool, &w, x, y, k, &scratch, seconds, NULL) / t1);
        printf("%s\n", w.packed ? "  (packed)" : "");
        fflush(stdout);
        free(packed);
        free(data);
    }
    free(list);
    free(x), free(y), free(row), free(scratch.rows), free(scratch.act);
    thread_pool_free(pool);
    return 0;
}
