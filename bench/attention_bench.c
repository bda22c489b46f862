/* attention_bench.c — a prompt chunk's attention over a long KV cache against what this CPU can compute: the peak
 * rate of f32 FMAs and of VNNI int8 dot products (vpdpbusd) on N threads, and attention_forward's rate on the tiles
 * a forward pass gives it (an agent's second turn: A new tokens after H cached rows).
 *
 * The peaks run independent chains of one instruction (enough of them to cover its latency) on every thread at once,
 * so they are what the execution units retire, not what any real kernel reaches. Attention runs as qwen3.c cuts it:
 * tiles of up to 16 consecutive tokens × the G query heads of one KV head, one call per (tile, KV head), over that
 * head's H + A cached rows, on one thread (the pool's threads take whole calls, so N threads divide the time by N at
 * best). With --layers L, L such caches are read in turn, as a forward pass reads its layers': a decoding step
 * (--new 1) then finds its keys in memory rather than in the L3 cache. Every rate is per CPU-second of the threads that did the work (CLOCK_THREAD_CPUTIME_ID), not per second of
 * wall time: on a host shared with other jobs, wall time measures the others too. Usage: attention_bench
 * [--threads N] [--history H] [--new A] [--head-dim D] [--group G] [--kv-heads K] [--layers L] [--seconds S]. */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"

/* CPU seconds of the calling thread. */
static double thread_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float random_uniform(void) { /* xorshift64*, in [-1, 1) */
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return (float)((rng_state * 0x2545F4914F6CDD1Dull) >> 40) / (float)(1 << 23) - 1.0f;
}

/* ---- peaks: ITER iterations of CHAINS independent accumulators, one instruction each (unrolled, so that the
 * accumulators stay in registers) ---- */

enum { ITER = 1 << 22, CHAINS = 12 };

/* Each returns the operations it did (an FMA lane: 2 flops; a vpdpbusd lane: 4 multiplies and 4 adds); the sum of
 * the accumulators goes to *sink so that nothing is left out. */
__attribute__((target("avx2,fma"))) static double fma256(float *sink) {
    __m256 acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_ps((float)c);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < ITER; i++)
        _Pragma("GCC unroll 16") for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    __m256 s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm256_add_ps(s, acc[c]);
    *sink = _mm256_cvtss_f32(s);
    return (double)ITER * CHAINS * 8 * 2;
}

__attribute__((target("avx512f"))) static double fma512(float *sink) {
    __m512 acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_ps((float)c);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (long i = 0; i < ITER; i++)
        _Pragma("GCC unroll 16") for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    __m512 s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm512_add_ps(s, acc[c]);
    *sink = _mm512_reduce_add_ps(s);
    return (double)ITER * CHAINS * 16 * 2;
}

__attribute__((target("avx512f,avx512vl,avx512vnni"))) static double vnni256(float *sink) {
    __m256i acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_epi32(c);
    const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2);
    for (long i = 0; i < ITER; i++)
        _Pragma("GCC unroll 16") for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_dpbusd_epi32(acc[c], a, b);
    __m256i s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm256_add_epi32(s, acc[c]);
    *sink = (float)_mm256_extract_epi32(s, 0);
    return (double)ITER * CHAINS * 32 * 2;
}

__attribute__((target("avx512f,avx512vnni"))) static double vnni512(float *sink) {
    __m512i acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_epi32(c);
    const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
    for (long i = 0; i < ITER; i++)
        _Pragma("GCC unroll 16") for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_dpbusd_epi32(acc[c], a, b);
    __m512i s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm512_add_epi32(s, acc[c]);
    *sink = (float)_mm512_reduce_add_epi32(s);
    return (double)ITER * CHAINS * 64 * 2;
}

typedef struct peak_run {
    double (*fn)(float *);
    double rate; /* operations per CPU-second of this thread */
    float sink;
} peak_run;

static void *peak_thread(void *arg) {
    peak_run *r = arg;
    const double t0 = thread_seconds();
    const double ops = r->fn(&r->sink);
    r->rate = ops / (thread_seconds() - t0);
    return NULL;
}

/* Operations per CPU-second of fn run on n_threads threads at once, summed over the threads (what they retire
 * together while they run), the best of 3. */
static double peak_rate(double (*fn)(float *), int n_threads) {
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        peak_run runs[64];
        pthread_t th[64];
        for (int i = 0; i < n_threads; i++) {
            runs[i].fn = fn;
            pthread_create(&th[i], NULL, peak_thread, &runs[i]);
        }
        double rate = 0;
        for (int i = 0; i < n_threads; i++) {
            pthread_join(th[i], NULL);
            rate += runs[i].rate;
        }
        if (rate > best) best = rate;
    }
    return best;
}

/* ---- attention on the tiles of a prompt chunk ---- */

enum { TILE_TOKENS = 16 }; /* qwen3.c's ATTENTION_TILE_TOKENS */

typedef struct attention_job {
    int history, added, hd, group, kv_heads, n_tiles, layer;
    tandem_type kv_type;
    const uint8_t *keys, *values; /* (layers, kv_heads, history + added) rows */
    size_t row_bytes, scratch_floats;
    const float *q; /* (added, kv_heads · group · hd) */
    float *out, *scratch;
} attention_job;

static void attention_task(int task, const attention_job *j) {
    const int tile = task / j->kv_heads, head = task % j->kv_heads, t0 = tile * TILE_TOKENS;
    const int nt = j->added - t0 < TILE_TOKENS ? j->added - t0 : TILE_TOKENS;
    const int64_t stride = (int64_t)j->kv_heads * j->group * j->hd;
    const size_t head_rows = (size_t)(j->history + j->added) * j->row_bytes * ((size_t)j->layer * j->kv_heads + head);
    const size_t q_off = (size_t)t0 * stride + (size_t)head * j->group * j->hd;
    attention_forward(j->out + q_off, stride, j->q + q_off, stride, nt, j->group, j->keys + head_rows,
                      j->values + head_rows, j->kv_type, j->history + t0 + 1, j->hd, 0.088f, j->scratch);
}

/* Flops of one pass over every tile: per query row, 2·hd for each key's score and 2·hd for its weighted value. */
static double attention_flops(const attention_job *j) {
    double keys = 0;
    for (int t = 0; t < j->added; t++) keys += j->history + t + 1;
    return keys * j->group * j->kv_heads * 4.0 * j->hd;
}

int main(int argc, char **argv) {
    int threads = 2, history = 4096, added = 50, hd = 128, group = 2, kv_heads = 8, layers = 1;
    double seconds = 1;
    for (int i = 1; i < argc; i++) {
        int *v = !strcmp(argv[i], "--threads")    ? &threads
                 : !strcmp(argv[i], "--history")  ? &history
                 : !strcmp(argv[i], "--new")      ? &added
                 : !strcmp(argv[i], "--head-dim") ? &hd
                 : !strcmp(argv[i], "--group")    ? &group
                 : !strcmp(argv[i], "--kv-heads") ? &kv_heads
                 : !strcmp(argv[i], "--layers")   ? &layers
                                                  : NULL;
        if (v && i + 1 < argc) *v = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: attention_bench [--threads N] [--history H] [--new A] [--head-dim D] [--group G] "
                    "[--kv-heads K] [--layers L] [--seconds S]\n");
            return 2;
        }
    }
    if (threads < 1 || threads > 64 || history < 0 || added < 1 || hd < 32 || hd % 32 || group < 1 || kv_heads < 1 ||
        layers < 1) {
        fprintf(stderr, "attention_bench: threads 1..64, added ≥ 1, head_dim a multiple of 32\n");
        return 2;
    }
    printf("attention_bench: %d threads, kernels %s\n", threads, kernel_isa_name());
    const double f256 = __builtin_cpu_supports("fma") ? peak_rate(fma256, threads) : 0;
    const double f512 = __builtin_cpu_supports("avx512f") ? peak_rate(fma512, threads) : 0;
    const bool vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl");
    const double i256 = vnni ? peak_rate(vnni256, threads) : 0, i512 = vnni ? peak_rate(vnni512, threads) : 0;
    printf("peak f32 FMA on %d threads: %.1f GFLOP per CPU-s (256-bit), %.1f (512-bit)\n", threads, f256 / 1e9,
           f512 / 1e9);
    printf("peak int8 vpdpbusd on %d threads: %.1f GOP per CPU-s (256-bit), %.1f (512-bit)\n", threads, i256 / 1e9,
           i512 / 1e9);

    const tandem_type types[] = {TANDEM_TYPE_F16, TANDEM_TYPE_Q8_0, TANDEM_TYPE_F32};
    const int rows = history + added;
    float *x = malloc(sizeof(float) * (size_t)hd);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        attention_job j = {.history = history,
                           .added = added,
                           .hd = hd,
                           .group = group,
                           .kv_heads = kv_heads,
                           .n_tiles = (added + TILE_TOKENS - 1) / TILE_TOKENS,
                           .kv_type = types[ti]};
        j.row_bytes = kv_row_bytes(j.kv_type, hd);
        j.scratch_floats = attention_scratch_floats(TILE_TOKENS * group, hd);
        const size_t layer_bytes = (size_t)kv_heads * rows * j.row_bytes, cache_bytes = layer_bytes * layers,
                     q_floats = (size_t)added * kv_heads * group * hd;
        uint8_t *k = malloc(cache_bytes), *v = malloc(cache_bytes);
        float *q = malloc(sizeof(float) * q_floats), *out = malloc(sizeof(float) * q_floats);
        j.scratch = malloc(sizeof(float) * j.scratch_floats);
        if (!k || !v || !q || !out || !j.scratch) return 1;
        for (size_t r = 0; r < (size_t)kv_heads * rows; r++) {
            for (int d = 0; d < hd; d++) x[d] = random_uniform() * 3;
            kv_store_row(j.kv_type, k + r * j.row_bytes, x, hd);
            for (int d = 0; d < hd; d++) x[d] = random_uniform();
            kv_store_row(j.kv_type, v + r * j.row_bytes, x, hd);
        }
        for (int l = 1; l < layers; l++) { /* the same values, elsewhere in memory */
            memcpy(k + l * layer_bytes, k, layer_bytes);
            memcpy(v + l * layer_bytes, v, layer_bytes);
        }
        for (size_t i = 0; i < q_floats; i++) q[i] = random_uniform();
        j.keys = k, j.values = v, j.q = q, j.out = out;
        const int n_tasks = j.n_tiles * kv_heads;
        for (j.layer = 0; j.layer < layers; j.layer++) /* warm-up */
            for (int t = 0; t < n_tasks; t++) attention_task(t, &j);
        double best = 1e30, total = 0;
        int passes = 0;
        for (const double start = thread_seconds(); passes < 3 || thread_seconds() - start < seconds; passes++) {
            const double t0 = thread_seconds();
            for (j.layer = 0; j.layer < layers; j.layer++)
                for (int t = 0; t < n_tasks; t++) attention_task(t, &j);
            const double t = (thread_seconds() - t0) / layers;
            best = t < best ? t : best;
            total += t;
        }
        const double flops = attention_flops(&j), rate = flops / best;
        printf(
            "attention, %s cache: %d new tokens × %d query heads over %d + their own rows, head_dim %d: one "
            "layer %.2f CPU-ms (best; mean %.2f), %.1f GFLOP per CPU-s = %.0f%% of one thread's 256-bit FMA peak; "
            "on %d threads at best %.2f ms a layer\n",
            tandem_type_name(j.kv_type), added, group * kv_heads, history, hd, best * 1e3, total / passes * 1e3,
            rate / 1e9, f256 ? 100 * rate / (f256 / threads) : 0, threads, best * 1e3 / threads);
        free(k), free(v), free(q), free(out), free(j.scratch);
    }
    free(x);
    return 0;
}
