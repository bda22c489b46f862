/* engine_spec_bench.c — N concurrent requests through tandem_engine, plainly and with speculative decoding (a draft
 * model, and/or n-gram lookup), in rounds that take turns; prints each mode's aggregate decode tokens/s per N.
 *
 * Each request has its own prompt of P random tokens and generates S tokens greedily (end ids ignored). The decode
 * rate of a run counts the tokens after each request's first one, over the time from the last first token to the
 * end (prompt reading excluded). Usage: engine_spec_bench TARGET [--draft DRAFT] [--seqs 1,2,4] [--prompt P]
 * [--steps S] [--rounds R] [--draft-max K] [--draft-fixed] [--lookup N] [--threads T]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tandem.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static int compare_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { MAX_SEQS = 16, MAX_ROUNDS = 50, MAX_NS = 8, N_MODES = 3 };
static const char *const MODE_NAMES[N_MODES] = {"plain", "draft model", "draft model + lookup"};

typedef struct run_stats {
    double rate;    /* aggregate decode tokens/s */
    double accept;  /* accepted / drafted */
    double per_seq; /* tokens per target pass per sequence (1 plain) */
} run_stats;

static int run(tandem_model *target, tandem_model *draft, int n, int mode, int prompt, int steps, int draft_max,
               bool fixed, int lookup, run_stats *out) {
    const tandem_tokenizer *tok = tandem_model_tokenizer(target);
    const int32_t V = tandem_tokenizer_vocab_size(tok);
    tandem_engine_params ep = tandem_engine_default_params();
    ep.n_slots = n;
    ep.n_ctx = prompt + steps + 8;
    ep.n_batch = 64 > n * (draft_max + 1) ? 64 : n * (draft_max + 1);
    ep.draft_model = mode > 0 ? draft : NULL;
    tandem_engine *e = NULL;
    if (tandem_engine_create(target, &ep, &e)) return 1;
    int64_t ids[MAX_SEQS];
    int32_t *p = malloc((size_t)prompt * sizeof *p);
    const double t0 = now_ms();
    for (int q = 0; q < n; q++) {
        for (int t = 0; t < prompt; t++) p[t] = (int32_t)((q * 131u + t * 7919u + 13) % (unsigned)(V - 64));
        tandem_gen_params gp = tandem_gen_default_params(target);
        gp.sampling.temperature = 0;
        gp.max_tokens = steps;
        gp.ignore_eos = true;
        if (mode > 0) {
            gp.spec = tandem_spec_default_params();
            gp.spec.draft_max = draft_max;
            gp.spec.adaptive = !fixed;
            gp.spec.lookup_ngram = mode == 2 ? lookup : 0;
        }
        if (tandem_engine_add(e, p, (size_t)prompt, &gp, &ids[q])) return 1;
    }
    free(p);
    for (bool idle = false; !idle;)
        if (tandem_engine_step(e, &idle)) return 1;
    const double total_ms = now_ms() - t0;
    double last_first = 0;
    int64_t tokens = 0, drafted = 0, accepted = 0, rounds = 0;
    for (int q = 0; q < n; q++) {
        tandem_gen_result r;
        if (tandem_engine_result(e, ids[q], &r)) return 1;
        last_first = r.timings.ttft_ms > last_first ? r.timings.ttft_ms : last_first;
        tokens += (int64_t)r.n_ids - 1;
        drafted += r.spec_stats.n_drafted;
        accepted += r.spec_stats.n_accepted;
        rounds += r.speculative ? r.spec_stats.n_rounds : (int64_t)r.n_ids - 1;
        tandem_gen_result_free(&r);
    }
    tandem_engine_free(e);
    out->rate = (double)tokens / ((total_ms - last_first) / 1e3);
    out->accept = drafted ? (double)accepted / (double)drafted : 0;
    out->per_seq = rounds ? (double)tokens / (double)rounds : 0;
    return 0;
}

int main(int argc, char **argv) {
    int ns[MAX_NS] = {1, 2, 4}, n_ns = 3, prompt = 32, steps = 128, rounds = 3, threads = 0, draft_max = 8, lookup = 3;
    bool fixed = false;
    const char *path = NULL, *draft_path = NULL;
    for (int i = 1; i < argc; i++) {
        const bool has_value = i + 1 < argc;
        if (!strcmp(argv[i], "--draft") && has_value) draft_path = argv[++i];
        else if (!strcmp(argv[i], "--seqs") && has_value) {
            n_ns = 0;
            for (char *s = argv[++i]; *s && n_ns < MAX_NS; s += *s == ',') ns[n_ns++] = (int)strtol(s, &s, 10);
        } else if (!strcmp(argv[i], "--prompt") && has_value) prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && has_value) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && has_value) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--draft-max") && has_value) draft_max = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--draft-fixed")) fixed = true;
        else if (!strcmp(argv[i], "--lookup") && has_value) lookup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && has_value) threads = atoi(argv[++i]);
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else {
            fputs(
                "usage: engine_spec_bench TARGET [--draft DRAFT] [--seqs 1,2,4] [--prompt P] [--steps S] "
                "[--rounds R] [--draft-max K] [--draft-fixed] [--lookup N] [--threads T]\n",
                stderr);
            return 2;
        }
    }
    bool ok = path && prompt >= 1 && steps >= 2 && rounds >= 1 && rounds <= MAX_ROUNDS && draft_max >= 1 &&
              draft_max <= 64 && lookup >= 1 && n_ns > 0;
    for (int i = 0; i < n_ns; i++) ok = ok && ns[i] >= 1 && ns[i] <= MAX_SEQS;
    if (!ok) {
        fprintf(stderr,
                "engine_spec_bench: need a model, 1 ≤ --seqs ≤ %d, --prompt ≥ 1, --steps ≥ 2, 1 ≤ --rounds "
                "≤ %d, 1 ≤ --draft-max ≤ 64, --lookup ≥ 1\n",
                MAX_SEQS, MAX_ROUNDS);
        return 2;
    }
    tandem_model_params mp = tandem_model_default_params();
    if (threads > 0) mp.n_threads = threads;
    tandem_model *target = NULL, *draft = NULL;
    if (tandem_model_load(path, &mp, &target) || (draft_path && tandem_model_load(draft_path, &mp, &draft))) {
        fprintf(stderr, "engine_spec_bench: %s\n", tandem_last_error());
        return 1;
    }
    const int n_modes = draft ? N_MODES : 1;
    static run_stats stats[MAX_NS][N_MODES][MAX_ROUNDS];
    run_stats warm;
    if (run(target, draft, 1, n_modes - 1, prompt, 8, draft_max, fixed, lookup, &warm)) goto fail; /* packs */
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < n_ns; i++)
            for (int k = 0; k < n_modes; k++) { /* the modes take turns, their order rotating per round */
                const int m = (k + r) % n_modes;
                if (run(target, draft, ns[i], m, prompt, steps, draft_max, fixed, lookup, &stats[i][m][r])) goto fail;
            }
    printf("%s%s%s: prompt %d, %d tokens per request, %d threads, %d rounds taking turns, draft_max %d (%s)%s\n", path,
           draft ? " + draft " : "", draft ? draft_path : "", prompt, steps, tandem_model_threads(target), rounds,
           draft_max, fixed ? "fixed" : "adaptive", draft ? "" : " (no draft: plain only)");
    printf("| N | mode | aggregate tok/s (median; range) | vs plain | acceptance | tokens per pass per sequence |\n");
    printf("|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_ns; i++) {
        double plain_median = 0;
        for (int m = 0; m < n_modes; m++) {
            double rates[MAX_ROUNDS];
            for (int r = 0; r < rounds; r++) rates[r] = stats[i][m][r].rate;
            qsort(rates, (size_t)rounds, sizeof *rates, compare_double);
            const double median = rates[rounds / 2];
            if (m == 0) plain_median = median;
            const run_stats *last = &stats[i][m][rounds - 1];
            printf("| %d | %s | %.1f (%.1f-%.1f) | %.2fx | %.2f | %.2f |\n", ns[i], MODE_NAMES[m], median, rates[0],
                   rates[rounds - 1], median / plain_median, last->accept, last->per_seq);
        }
    }
    tandem_model_free(draft);
    tandem_model_free(target);
    return 0;
fail:
    fprintf(stderr, "engine_spec_bench: %s\n", tandem_last_error());
    return 1;
}
