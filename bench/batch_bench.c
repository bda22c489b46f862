/* batch_bench.c — decoding N sequences: one forward pass over their N tokens (a qwen3_batch) against N single-token
 * passes, in rounds that take turns; prints each way's aggregate tokens/s (median and range over the rounds).
 *
 * Until the engine's `tandem bench --parallel N`, this is the figure of what a batch saves: the weights are read
 * once per pass. Each sequence first holds a prompt of P random tokens; each round decodes S steps from there (the
 * same cache rows in both ways). Usage: batch_bench MODEL [--seqs N] [--prompt P] [--steps S] [--rounds R]
 * [--threads T]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { MAX_SEQS = 64, MAX_ROUNDS = 100 };

int main(int argc, char **argv) {
    int n_seqs = 4, prompt = 64, steps = 32, rounds = 5, threads = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        const bool has_value = i + 1 < argc;
        if (!strcmp(argv[i], "--seqs") && has_value) n_seqs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prompt") && has_value) prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && has_value) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && has_value) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && has_value) threads = atoi(argv[++i]);
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else {
            fputs("usage: batch_bench MODEL [--seqs N] [--prompt P] [--steps S] [--rounds R] [--threads T]\n", stderr);
            return 2;
        }
    }
    if (!path || n_seqs < 1 || n_seqs > MAX_SEQS || prompt < 1 || steps < 1 || rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "batch_bench: need a model, 1 ≤ --seqs ≤ %d, --prompt ≥ 1, --steps ≥ 1, 1 ≤ --rounds ≤ %d\n",
                MAX_SEQS, MAX_ROUNDS);
        return 2;
    }
    tandem_model_params mp = tandem_model_default_params();
    if (threads > 0) mp.n_threads = threads;
    tandem_model *m = NULL;
    tandem_ctx *ctx = NULL; /* its creation packs the weights */
    if (tandem_model_load(path, &mp, &m) || tandem_ctx_init(m, NULL, &ctx)) {
        fprintf(stderr, "batch_bench: %s\n", tandem_last_error());
        return 1;
    }
    tandem_ctx_free(ctx);
    const qwen3_model *qm = &m->qwen;
    const int V = qm->cfg.vocab_size, n_ctx = prompt + steps;
    qwen3_kv_cache *caches[MAX_SEQS] = {0};
    qwen3_scratch *s = NULL;
    int32_t *ids = malloc((size_t)prompt * sizeof *ids);
    float *logits = malloc((size_t)(prompt > n_seqs ? prompt : n_seqs) * V * sizeof *logits);
    if (qwen3_scratch_init(qm, prompt > n_seqs ? prompt : n_seqs, thread_pool_size(m->pool), false, &s)) goto fail;
    for (int q = 0; q < n_seqs; q++) {
        if (qwen3_kv_cache_init(qm, n_ctx, TANDEM_TYPE_F16, &caches[q])) goto fail;
        for (int t = 0; t < prompt; t++) ids[t] = (int32_t)((q * 131u + t * 7919u + 13) % (unsigned)V);
        const qwen3_batch b = qwen3_sequence_batch(s, caches[q], ids, prompt, 0, true);
        qwen3_forward(qm, s, m->pool, &b, logits);
    }

    double single_rate[MAX_ROUNDS], batch_rate[MAX_ROUNDS];
    int32_t step_ids[MAX_SEQS], rows[MAX_SEQS];
    for (int q = 0; q < n_seqs; q++) step_ids[q] = (int32_t)((q * 31u + 7) % (unsigned)V);
    for (int r = 0; r < rounds; r++) {
        for (int way = 0; way < 2; way++) { /* single passes first in even rounds, the batch first in odd ones */
            const bool batched = (way == 0) == (r % 2 == 1);
            const double t0 = now_seconds();
            for (int step = 0; step < steps; step++) {
                for (int q = 0; q < n_seqs; q++) rows[q] = prompt + step;
                if (batched) {
                    const qwen3_batch b = {
                        .n = n_seqs, .ids = step_ids, .cache = caches, .row = rows, .n_pos = 1, .pos = rows};
                    qwen3_forward(qm, s, m->pool, &b, logits);
                } else {
                    for (int q = 0; q < n_seqs; q++) {
                        const qwen3_batch b = qwen3_sequence_batch(s, caches[q], &step_ids[q], 1, prompt + step, true);
                        qwen3_forward(qm, s, m->pool, &b, logits);
                    }
                }
            }
            const double rate = (double)steps * n_seqs / (now_seconds() - t0);
            (batched ? batch_rate : single_rate)[r] = rate;
        }
    }
    qsort(single_rate, (size_t)rounds, sizeof(double), compare_double);
    qsort(batch_rate, (size_t)rounds, sizeof(double), compare_double);
    printf("%s: %d sequences, prompt %d, %d steps, %d threads, %d rounds taking turns\n", path, n_seqs, prompt, steps,
           thread_pool_size(m->pool), rounds);
    printf("  %d single-token passes per step: %7.2f tok/s aggregate (median; range %.2f-%.2f)\n", n_seqs,
           single_rate[rounds / 2], single_rate[0], single_rate[rounds - 1]);
    printf("  one pass over %d tokens per step: %7.2f tok/s aggregate (median; range %.2f-%.2f), %.2fx\n", n_seqs,
           batch_rate[rounds / 2], batch_rate[0], batch_rate[rounds - 1],
           batch_rate[rounds / 2] / single_rate[rounds / 2]);
    for (int q = 0; q < n_seqs; q++) qwen3_kv_cache_free(caches[q]);
    qwen3_scratch_free(s);
    free(ids);
    free(logits);
    tandem_model_free(m);
    return 0;
fail:
    fprintf(stderr, "batch_bench: %s\n", tandem_last_error());
    return 1;
}
