/* prefix_bench.c — time to first token of an agent's second turn through tandem_engine: a history of H tokens (in a
 * slot's cache from the first turn) resent with A new tokens, against a cold A-token prompt and the cold H + A.
 *
 * Each round takes turns among the three (new random tokens each round, so only the history is ever reused) and
 * prints their TTFT and the reused count; then the means and ratios. Usage: prefix_bench MODEL [--history H]
 * [--new A] [--rounds R] [--threads T] [--batch B] [--kv-type f16|f32|q8_0] [--skip-full] (the cold H + A prompt is
 * a full prefill, minutes on a loaded host: --skip-full leaves it out). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tandem.h"

static tandem_model *model;

static void fail(void) {
    fprintf(stderr, "prefix_bench: %s\n", tandem_last_error());
    exit(1);
}

/* One request of one generated token; its time to first token, *reused its prompt tokens found in the cache. */
static double ttft(tandem_engine *e, const int32_t *prompt, size_t n, int32_t *reused) {
    tandem_gen_params gp = tandem_gen_default_params(model);
    gp.sampling.temperature = 0;
    gp.max_tokens = 1;
    gp.ignore_eos = true;
    int64_t id;
    if (tandem_engine_add(e, prompt, n, &gp, &id)) fail();
    for (bool idle = false; !idle;)
        if (tandem_engine_step(e, &idle)) fail();
    tandem_gen_result r;
    if (tandem_engine_result(e, id, &r)) fail();
    const double t = r.timings.ttft_ms;
    *reused = r.timings.n_prompt_reused;
    tandem_gen_result_free(&r);
    return t;
}

int main(int argc, char **argv) {
    int history = 4096, added = 50, rounds = 3, threads = 0, batch = 512;
    const char *path = NULL;
    tandem_type kv_type = TANDEM_TYPE_F16;
    bool skip_full = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--skip-full")) {
            skip_full = true;
            continue;
        }
        if (!strcmp(argv[i], "--kv-type") && i + 1 < argc) {
            const char *t = argv[++i];
            kv_type = !strcmp(t, "q8_0") ? TANDEM_TYPE_Q8_0 : !strcmp(t, "f32") ? TANDEM_TYPE_F32 : TANDEM_TYPE_F16;
            continue;
        }
        int *v = !strcmp(argv[i], "--history")   ? &history
                 : !strcmp(argv[i], "--new")     ? &added
                 : !strcmp(argv[i], "--rounds")  ? &rounds
                 : !strcmp(argv[i], "--threads") ? &threads
                 : !strcmp(argv[i], "--batch")   ? &batch
                                                 : NULL;
        if (v && i + 1 < argc) *v = atoi(argv[++i]);
        else if (!v && !path) path = argv[i];
        else path = NULL, i = argc;
    }
    if (!path || history < 1 || added < 2 || rounds < 1) {
        fprintf(stderr,
                "usage: prefix_bench MODEL [--history H] [--new A ≥ 2] [--rounds R] [--threads T] [--batch B] "
                "[--kv-type f16|f32|q8_0] [--skip-full]\n");
        return 2;
    }
    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = threads;
    if (tandem_model_load(path, &mp, &model)) fail();
    tandem_engine_params ep = tandem_engine_default_params();
    ep.n_slots = 1;
    ep.n_ctx = history + added + 1;
    ep.n_batch = batch;
    ep.kv_type = kv_type;
    tandem_engine *warm = NULL, *cold = NULL; /* warm keeps the history; cold never holds a prefix of what it reads */
    if (tandem_engine_create(model, &ep, &warm) || tandem_engine_create(model, &ep, &cold)) fail();
    int32_t *ids = malloc((size_t)(history + added) * sizeof *ids);
    if (!ids) return 1;
    tandem_model_info mi;
    tandem_model_get_info(model, &mi);
    srand(7);
    for (int i = 0; i < history + added; i++) ids[i] = rand() % mi.vocab_size;
    int32_t reused, reused_cold;
    printf("prefix_bench: %s, %d threads, history %d tokens, %d new, n_batch %d, %s cache\n", path,
           tandem_model_threads(model), history, added, batch, tandem_type_name(kv_type));
    printf("first turn, the history cold: %.1f ms\n", ttft(warm, ids, (size_t)history, &reused));
    ttft(cold, ids + history, (size_t)added, &reused_cold); /* the cold engine's cache allocated (and touched) */
    double sum_warm = 0, sum_short = 0, sum_full = 0;
    for (int r = 0; r < rounds; r++) {
        for (int i = history; i < history + added; i++) ids[i] = rand() % mi.vocab_size;
        const double t_warm = ttft(warm, ids, (size_t)(history + added), &reused);
        const double t_short = ttft(cold, ids + history, (size_t)added, &reused_cold);
        const double t_full = skip_full ? 0 : ttft(cold, ids, (size_t)(history + added), &reused_cold);
        double t_other = ttft(cold, ids + history + 1, (size_t)added - 1, &reused_cold); /* cold holds no history */
        (void)t_other;
        printf("round %d: second turn %.1f ms (%d reused) | cold %d tokens %.1f ms | cold %d tokens %.1f ms\n", r,
               t_warm, reused, added, t_short, history + added, t_full);
        sum_warm += t_warm;
        sum_short += t_short;
        sum_full += t_full;
    }
    printf(
        "mean: second turn %.1f ms, cold %d tokens %.1f ms (second turn / that: %.2fx), cold %d tokens %.1f ms "
        "(that / second turn: %.1fx)\n",
        sum_warm / rounds, added, sum_short / rounds, sum_warm / sum_short, history + added, sum_full / rounds,
        sum_full / sum_warm);
    free(ids);
    tandem_engine_free(warm);
    tandem_engine_free(cold);
    tandem_model_free(model);
    return 0;
}
