/* bench.c — `tandem bench`: time to first token, prefill and decode speed, peak memory, speculative
 * acceptance, and the cost of one pass over k tokens (what verifying k drafted tokens costs). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"

static const char BENCH_HELP[] =
    "usage: tandem bench -m MODEL [options]\n"
    "Runs a prompt of -p tokens and generates -n tokens (greedy, past EOS), --warmup times unmeasured and\n"
    "-r times measured, and prints the mean (and spread) of: time to first token, prefill tokens/s, tokens/s\n"
    "from the second generated token on, time per output token, and the peak resident memory.\n"
    "  -m, --model PATH         GGUF file or Hugging Face checkpoint folder\n"
    "  -p, --prompt-tokens N    prompt length (default 512; 0 = decode alone, after a 1-token prompt)\n"
    "  -n, --gen-tokens N       tokens to generate (default 128)\n"
    "  -f, --file FILE          make the prompt from this text (repeated to -p tokens) instead of random ids\n"
    "  -r, --repetitions N      measured runs (default 3)\n"
    "      --warmup N           unmeasured runs first (default 1)\n"
    "  -t, --threads N          threads (default: all cores)\n"
    "  -b, --batch N            prompt tokens per forward pass (default 512)\n"
    "      --exact              f32 activations (the reference path) instead of 8-bit ones\n" KV_TYPE_HELP
    "      --curve              also time one pass over k = 1, 2, 4, 8, 16 tokens (every position's logits,\n"
    "                           as verification computes them; median of max(r, 7) rounds in which the k\n"
    "                           take turns) and print its cost relative to k = 1\n"
    "      --parallel N         decode N independent sequences together through one engine (one forward pass\n"
    "                           per step for all), taking turns with one sequence through it: the aggregate\n"
    "                           decode rate and its ratio to one sequence's (each sequence's prompt: -p tokens)\n"
    "      --json               print one JSON object as the last line\n"
    "speculative decoding (each run is followed by one of the target alone: adds the measured speedup, acceptance):\n"
    "  -md, --draft MODEL       draft model; --draft-max N, --draft-min N, --draft-p-min P, --draft-fixed and\n"
    "                           --lookup N as for tandem run\n"
    "Ctrl-C stops at the next token and prints what the runs measured so far (exit code 130).\n";

/* the spreads: the library's running mean and sample standard deviation */
typedef tandem_running_stats stat_acc;
static void stat_add(stat_acc *s, double v) { tandem_running_stats_add(s, v); }
static double stat_mean(const stat_acc *s) { return tandem_running_stats_mean(s); }
static double stat_sd(const stat_acc *s) { return tandem_running_stats_sd(s); }

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;  /* Linux reports kilobytes */
}

/* The prompt: the text's tokens repeated to n, or ids drawn from the regular vocabulary (deterministic). */
static int32_t *make_prompt(const tandem_model *model, const char *text_file, int n) {
    int32_t *ids = malloc(sizeof *ids * (size_t)(n > 0 ? n : 1));
    if (!ids) die_usage("bench", "out of memory for %d prompt tokens", n);
    if (text_file) {
        size_t len, n_text;
        char *text = read_file("bench", text_file, &len);
        int32_t *text_ids;
        tandem_status st = tandem_tokenizer_encode(tandem_model_tokenizer(model), text, len, false, &text_ids, &n_text);
        if (st) die_status("bench", st);
        if (n_text == 0) {
            fprintf(stderr, "tandem bench: error: %s: no tokens in the text\n", text_file);
            exit(EXIT_FAILED);
        }
        for (int i = 0; i < n; i++) ids[i] = text_ids[(size_t)i % n_text];
        tandem_free(text_ids);
        free(text);
        return ids;
    }
    tandem_model_info info;
    tandem_model_get_info(model, &info);
    /* ids below the first special token are ordinary text pieces in Qwen3 vocabularies */
    int32_t range = info.vocab_size > 151643 ? 151643 : info.vocab_size;
    uint64_t state = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < n; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((state >> 33) % (uint64_t)range);
    }
    return ids;
}

static int cmp_double(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* The verification-cost curve: passes over curve_ks tokens after CURVE_PREFIX cached ones. */
enum { CURVE_PREFIX = 16, CURVE_N_KS = 5, CURVE_MAX_K = 16 };
static const int curve_ks[CURVE_N_KS] = {1, 2, 4, 8, CURVE_MAX_K};

/* One pass over curve_ks[i] tokens after the prefix, every position's logits: the median of reps rounds (after
 * one that warms caches; fewer if Ctrl-C comes first: the rounds done are returned), in ms, into ms_out[i]. A
 * round times every k once, in turn, so the load of a shared machine, which drifts over seconds, reaches each k
 * alike (timed k by k, the ratios moved by tens of percent between runs); the median keeps one descheduled pass out
 * of the curve. */
static int time_passes(tandem_ctx *ctx, const int32_t *ids, int reps, float *logits, double ms_out[CURVE_N_KS]) {
    enum { MAX_REPS = 64 };
    double ms[CURVE_N_KS][MAX_REPS];
    if (reps > MAX_REPS) reps = MAX_REPS;
    tandem_status st;
    if ((st = tandem_ctx_truncate(ctx, 0)) || (st = tandem_ctx_eval(ctx, ids, CURVE_PREFIX, NULL)))
        die_status("bench", st);
    for (int r = -1; r < reps; r++) {
        if (cli_interrupted) {
            reps = r > 0 ? r : 0;
            break;
        }
        for (int i = 0; i < CURVE_N_KS; i++) {
            const double t0 = now_ms();
            if ((st = tandem_ctx_eval(ctx, ids + CURVE_PREFIX, curve_ks[i], logits))) die_status("bench", st);
            if (r >= 0) ms[i][r] = now_ms() - t0;
            if ((st = tandem_ctx_truncate(ctx, CURVE_PREFIX))) die_status("bench", st);
        }
    }
    for (int i = 0; i < CURVE_N_KS && reps > 0; i++) {
        qsort(ms[i], (size_t)reps, sizeof ms[i][0], cmp_double);
        ms_out[i] = reps % 2 ? ms[i][reps / 2] : (ms[i][reps / 2 - 1] + ms[i][reps / 2]) / 2;
    }
    return reps;
}

static bool continue_unless_interrupted(const char *text, size_t len, void *user) { return !cli_interrupted; }

/* What every timed generation runs: greedy, no penalty, exactly n_gen tokens (past end ids), Ctrl-C stopping it. */
static tandem_gen_params timed_gen_params(const tandem_model *model, int n_gen) {
    tandem_gen_params gp = tandem_gen_default_params(model);
    gp.sampling.temperature = 0;
    gp.sampling.repeat_penalty = 1;
    gp.max_tokens = n_gen;
    gp.ignore_eos = true;
    gp.on_text = continue_unless_interrupted;
    return gp;
}

/* One run of --parallel: n sequences of n_gen greedy tokens after prompts of prompt_len (sequence i's starts at
 * ids + i), added together to one engine and stepped to the end. Returns the aggregate decode rate: the tokens after
 * each sequence's first, over the time from the moment the last sequence had its first token to the end of the
 * last (when the prompts fit one step, every first token comes from the same step); 0 when interrupted. *ttft: the
 * sequences' mean time to first token. */
static double parallel_run(tandem_model *model, const int32_t *ids, int prompt_len, int n_gen, int n, int n_batch,
                           bool exact, tandem_type kv_type, double *ttft) {
    tandem_engine_params ep = tandem_engine_default_params();
    ep.n_slots = n;
    ep.n_ctx = prompt_len + n_gen + 8;
    ep.n_batch = n_batch > n ? n_batch : n;
    ep.kv_type = kv_type;
    ep.exact = exact;
    tandem_engine *engine = NULL;
    tandem_status st = tandem_engine_create(model, &ep, &engine);
    if (st) die_status("bench", st);
    const tandem_gen_params gp = timed_gen_params(model, n_gen);
    int64_t *req = malloc((size_t)n * sizeof *req);
    if (!req) die_usage("bench", "out of memory");
    for (int i = 0; i < n; i++)
        if ((st = tandem_engine_add(engine, ids + i, (size_t)prompt_len, &gp, &req[i]))) die_status("bench", st);
    for (bool idle = false; !idle;)
        if ((st = tandem_engine_step(engine, &idle))) die_status("bench", st);
    double last_first = 0, last_end = 0, tokens = 0, ttft_sum = 0;
    for (int i = 0; i < n; i++) {
        tandem_gen_result r;
        if ((st = tandem_engine_result(engine, req[i], &r))) die_status("bench", st);
        const tandem_timings *t = &r.timings;
        if (t->ttft_ms > last_first) last_first = t->ttft_ms;
        if (t->ttft_ms + t->decode_ms > last_end) last_end = t->ttft_ms + t->decode_ms;
        tokens += t->n_generated > 1 ? t->n_generated - 1 : 0;
        ttft_sum += t->ttft_ms;
        tandem_gen_result_free(&r);
    }
    free(req);
    tandem_engine_free(engine);
    *ttft = ttft_sum / n;
    return cli_interrupted || last_end <= last_first ? 0 : tokens / ((last_end - last_first) / 1e3);
}

/* tandem bench --parallel N: per run, N sequences together, then one sequence, through the same engine code. */
static int bench_parallel(tandem_model *model, const char *model_path, const int32_t *ids, int prompt_len, int n_gen,
                          int reps, int warmup, int n, int n_batch, bool exact, tandem_type kv_type, bool json) {
    stat_acc together = {0}, alone = {0}, ttft = {0};
    int measured = 0;
    cli_catch(SIGINT);
    for (int run = 0; run < warmup + reps && !cli_interrupted; run++) {
        double t_n, t_1;
        const double rate_n = parallel_run(model, ids, prompt_len, n_gen, n, n_batch, exact, kv_type, &t_n);
        const double rate_1 = parallel_run(model, ids, prompt_len, n_gen, 1, n_batch, exact, kv_type, &t_1);
        if (cli_interrupted || run < warmup || rate_n <= 0 || rate_1 <= 0) continue;
        measured++;
        stat_add(&together, rate_n);
        stat_add(&alone, rate_1);
        stat_add(&ttft, t_n);
    }
    if (measured == 0) {
        fprintf(stderr, "tandem bench: no measured run to report (interrupted, or -n too small)\n");
        return cli_interrupted ? 128 + SIGINT : 1;
    }
    const double ratio = stat_mean(&together) / stat_mean(&alone);
    printf("tandem bench --parallel %d: %s, %s kernels, %d threads, %s activations, %s KV cache\n", n, model_path,
           tandem_kernel_isa(), tandem_model_threads(model), exact ? "f32" : "8-bit",
           tandem_type_name(exact ? TANDEM_TYPE_F32 : kv_type));
    printf("  %d sequences, prompt %d tokens each, generate %d each, %d runs after %d warm-up\n", n, prompt_len, n_gen,
           measured, warmup);
    printf("  aggregate decode      %9.2f tok/s (± %.2f) with %d sequences\n", stat_mean(&together), stat_sd(&together),
           n);
    printf("  one sequence          %9.2f tok/s (± %.2f)\n", stat_mean(&alone), stat_sd(&alone));
    printf("  ratio                 %9.2fx\n", ratio);
    printf("  time to first token   %9.1f ms (mean of the %d sequences)\n", stat_mean(&ttft), n);
    if (json) {
        json_t *out = json_pack("{s:s, s:s, s:i, s:b, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f}", "model",
                                model_path, "isa", tandem_kernel_isa(), "threads", tandem_model_threads(model), "exact",
                                exact, "parallel", n, "n_prompt", prompt_len, "n_gen", n_gen, "repetitions", measured,
                                "aggregate_decode_tokens_per_s", stat_mean(&together),
                                "aggregate_decode_tokens_per_s_sd", stat_sd(&together), "single_decode_tokens_per_s",
                                stat_mean(&alone), "ratio", ratio, "ttft_ms", stat_mean(&ttft));
        print_json_line(out);
    }
    return cli_interrupted ? 128 + SIGINT : 0;
}

int cmd_bench(int argc, char **argv) {
    args a = {"bench", argc, argv, 0};
    const char *model_path = NULL, *draft_path = NULL, *text_file = NULL;
    int n_prompt = 512, n_gen = 128, reps = 3, warmup = 1, threads = 0, n_batch = 512;
    bool json = false, exact = false, curve = false;
    int parallel = 0;
    tandem_type kv_type = TANDEM_TYPE_F16;
    tandem_spec_params spec = tandem_spec_default_params();
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(BENCH_HELP, stdout);
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) model_path = take_value(&a, f);
        else if (!strcmp(f, "-p") || !strcmp(f, "--prompt-tokens")) n_prompt = (int)parse_int(&a, f, take_value(&a, f), 0, 1 << 20);
        else if (!strcmp(f, "-n") || !strcmp(f, "--gen-tokens")) n_gen = (int)parse_int(&a, f, take_value(&a, f), 1, 1 << 20);
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) text_file = take_value(&a, f);
        else if (!strcmp(f, "-r") || !strcmp(f, "--repetitions")) reps = (int)parse_int(&a, f, take_value(&a, f), 1, 1000);
        else if (!strcmp(f, "--warmup")) warmup = (int)parse_int(&a, f, take_value(&a, f), 0, 1000);
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) threads = parse_threads(&a, f);
        else if (!strcmp(f, "-b") || !strcmp(f, "--batch")) n_batch = (int)parse_int(&a, f, take_value(&a, f), 1, 4096);
        else if (!strcmp(f, "--exact")) exact = true;
        else if (!strcmp(f, "--kv-type")) kv_type = parse_kv_type(&a, f);
        else if (!strcmp(f, "--curve")) curve = true;
        else if (!strcmp(f, "--json")) json = true;
        else if (!strcmp(f, "--parallel")) parallel = (int)parse_int(&a, f, take_value(&a, f), 1, 1024);
        else if (parse_spec_option(&a, f, &spec, &draft_path)) continue;
        else die_usage("bench", "unknown option '%s'", f);
    }
    if (!model_path) die_usage("bench", "missing -m MODEL");
    if (spec.draft_min > spec.draft_max)
        die_usage("bench", "--draft-min %d exceeds --draft-max %d", spec.draft_min, spec.draft_max);

    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = threads;
    tandem_model *model = NULL, *draft_model = NULL;
    tandem_status st = tandem_model_load(model_path, &mp, &model);
    if (st) die_status("bench", st);
    tandem_model_info info;
    tandem_model_get_info(model, &info);
    const int prompt_len = n_prompt > 0 ? n_prompt : 1;
    const int curve_len = CURVE_PREFIX + CURVE_MAX_K;
    const int n_ids = (prompt_len > curve_len ? prompt_len : curve_len) + parallel;
    int32_t *ids = make_prompt(model, text_file, n_ids);
    if (parallel > 0) {
        if (draft_path || spec.lookup_ngram > 0 || curve)
            die_usage("bench", "--parallel measures plain decoding: without -md, --lookup and --curve");
        const int rc = bench_parallel(model, model_path, ids, prompt_len, n_gen, reps, warmup, parallel, n_batch, exact,
                                      kv_type, json);
        tandem_model_free(model);
        free(ids);
        return rc;
    }

    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = prompt_len + n_gen + 64 > curve_len ? prompt_len + n_gen + 64 : curve_len;
    cp.n_batch = n_batch > CURVE_MAX_K ? n_batch : CURVE_MAX_K;
    cp.exact = exact;
    cp.kv_type = kv_type;
    tandem_ctx *ctx = NULL, *draft_ctx = NULL;
    if ((st = tandem_ctx_init(model, &cp, &ctx))) die_status("bench", st);
    warn_beyond_trained_context("bench", model, (int64_t)prompt_len + n_gen);
    if (draft_path) {
        if ((st = tandem_model_load(draft_path, &mp, &draft_model))) die_status("bench", st);
        if ((st = tandem_model_check_draft(model, draft_model))) die_status("bench", st);
        if ((st = tandem_ctx_init(draft_model, &cp, &draft_ctx))) die_status("bench", st);
    }

    tandem_gen_params gp = timed_gen_params(model, n_gen);
    gp.draft = draft_ctx;
    gp.spec = spec;
    cli_catch(SIGINT);
    int measured = 0;  /* the runs done when Ctrl-C stops the rest (a run it cut short is not counted) */
    /* With speculative decoding, each run also generates with the target alone, right after, so that the speedup
     * is measured (the load of a shared machine drifts over seconds: taking turns reaches both alike). */
    const bool speculative = draft_ctx || spec.lookup_ngram > 0;
    tandem_gen_params alone = gp;
    alone.draft = NULL;
    alone.spec.lookup_ngram = 0;
    stat_acc ttft = {0}, prefill = {0}, decode = {0}, tpot = {0}, accept = {0}, per_pass = {0}, mean_acc = {0};
    stat_acc passes = {0}, alone_decode = {0}, predicted = {0};
    int64_t n_drafted = 0, n_rounds = 0, n_draft_off = 0;
    for (int run = 0; run < warmup + reps; run++) {
        /* res[0] with the draft (or the target alone when there is none), res[1] the target alone after it; a run
         * counts only when all its generations finished */
        tandem_gen_result res[2];
        int n_done = 0;
        for (; n_done <= (int)speculative && !cli_interrupted; n_done++) {
            if ((st = tandem_ctx_truncate(ctx, 0))) die_status("bench", st);
            if (draft_ctx && (st = tandem_ctx_truncate(draft_ctx, 0))) die_status("bench", st);
            if ((st = tandem_generate(ctx, ids, (size_t)prompt_len, n_done ? &alone : &gp, &res[n_done])))
                die_status("bench", st);
        }
        if (!cli_interrupted && run >= warmup) {
            measured++;
            const tandem_timings *t = &res[0].timings;
            stat_add(&ttft, t->ttft_ms);
            if (n_prompt > 0) stat_add(&prefill, t->n_prompt / (t->prompt_ms / 1e3));
            if (t->n_generated > 1) {
                stat_add(&decode, (t->n_generated - 1) / (t->decode_ms / 1e3));
                stat_add(&tpot, t->decode_ms / (t->n_generated - 1));
                /* the target's weights are read once per pass: one per token after the first, or one per
                 * speculative round (all of them fall after the first token) */
                const int n_passes = res[0].speculative ? res[0].spec_stats.n_rounds : t->n_generated - 1;
                stat_add(&passes, n_passes / (t->decode_ms / 1e3));
            }
            if (res[0].speculative) {
                const tandem_spec_stats *x = &res[0].spec_stats;
                stat_add(&accept, x->acceptance_rate);
                stat_add(&per_pass, x->mean_per_pass);
                stat_add(&mean_acc, x->n_rounds ? (double)x->n_accepted / x->n_rounds : 0);
                stat_add(&predicted, x->predicted_speedup);
                n_drafted += x->n_drafted;
                n_rounds += x->n_rounds;
                n_draft_off += x->n_rounds_draft_off;
            }
            if (speculative && res[1].timings.n_generated > 1)
                stat_add(&alone_decode, (res[1].timings.n_generated - 1) / (res[1].timings.decode_ms / 1e3));
        }
        for (int k = 0; k < n_done; k++) tandem_gen_result_free(&res[k]);
        if (cli_interrupted) break;
    }
    const double speedup = stat_mean(&alone_decode) > 0 ? stat_mean(&decode) / stat_mean(&alone_decode) : 0;

    if (measured == 0) {
        fprintf(stderr, "tandem bench: interrupted before the first measured run: nothing to report\n");
        goto done;
    }
    double curve_ms[CURVE_N_KS] = {0};  /* curve_ms[i]: a pass over curve_ks[i] tokens */
    const bool curve_asked = curve;
    if (curve && !cli_interrupted) {
        float *logits = malloc(sizeof(float) * (size_t)CURVE_MAX_K * (size_t)info.vocab_size);
        if (!logits) die_usage("bench", "out of memory for the curve's logits");
        curve = time_passes(ctx, ids, reps < 7 ? 7 : reps, logits, curve_ms) > 0;
        free(logits);
    } else curve = false;
    if (cli_interrupted) {
        fprintf(stderr, "tandem bench: interrupted: %d of %d measured runs done%s\n", measured, reps,
                curve || !curve_asked ? "" : ", no curve");
        reps = measured;  /* the runs the report describes */
    }

    const double rss = peak_rss_mb();
    /* decode is bound by memory bandwidth: the weight bytes streamed per second is the comparable figure (the
     * target's, per pass: a speculative round produces several tokens from one read of the weights) */
    const double stream_gb_s = stat_mean(&passes) * (double)info.step_bytes / 1e9;
    printf("tandem bench: %s, %s kernels, %d threads, %s activations, %s KV cache\n", model_path, tandem_kernel_isa(),
           tandem_model_threads(model), exact ? "f32" : "8-bit", tandem_type_name(tandem_ctx_kv_type(ctx)));
    printf("  prompt %d tokens, generate %d, %d runs after %d warm-up\n", n_prompt, n_gen, reps, warmup);
    printf("  time to first token   %9.1f ms   (± %.1f)\n", stat_mean(&ttft), stat_sd(&ttft));
    if (n_prompt > 0) printf("  prefill               %9.2f tok/s (± %.2f)\n", stat_mean(&prefill), stat_sd(&prefill));
    printf("  decode                %9.2f tok/s (± %.2f)\n", stat_mean(&decode), stat_sd(&decode));
    printf("  time per output token %9.2f ms\n", stat_mean(&tpot));
    printf("  weights streamed      %9.2f GB/s while decoding (%.0f MB per target pass, %.2f passes/s)\n", stream_gb_s,
           info.step_bytes / 1e6, stat_mean(&passes));
    printf("  peak resident memory  %9.1f MB\n", rss);
    if (speculative) {
        printf("  target alone          %9.2f tok/s (± %.2f) decode: measured speedup %.2fx (predicted %.2fx)\n",
               stat_mean(&alone_decode), stat_sd(&alone_decode), speedup, stat_mean(&predicted));
        if (n_drafted > 0)
            printf("  speculative: acceptance %.3f, %.2f accepted and %.2f produced per target pass\n",
                   stat_mean(&accept), stat_mean(&mean_acc), stat_mean(&per_pass));
        else
            printf("  speculative: no tokens proposed, %.2f produced per target pass\n", stat_mean(&per_pass));
        if (n_draft_off > 0)
            printf("  adaptive drafting switched the draft model off for %lld of %lld target passes (at its measured "
                   "acceptance and cost it did not pay)\n", (long long)n_draft_off, (long long)n_rounds);
    }
    if (curve) {
        printf("  one pass over k tokens (after %d), relative to k = 1:\n", CURVE_PREFIX);
        for (int i = 0; i < CURVE_N_KS; i++) {
            const int k = curve_ks[i];
            printf("    k = %2d  %8.2f ms  %5.2fx  (k single passes: %.2fx as long)\n", k, curve_ms[i],
                   curve_ms[i] / curve_ms[0], k * curve_ms[0] / curve_ms[i]);
        }
    }
    if (json) {
        json_t *out = json_pack("{s:s, s:s, s:i, s:b, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f}", "model", model_path,
                                "isa", tandem_kernel_isa(), "threads", tandem_model_threads(model), "exact", exact,
                                "n_prompt", n_prompt, "n_gen", n_gen, "repetitions", reps, "ttft_ms", stat_mean(&ttft),
                                "prefill_tokens_per_s", stat_mean(&prefill), "decode_tokens_per_s", stat_mean(&decode),
                                "decode_tokens_per_s_sd", stat_sd(&decode), "tpot_ms", stat_mean(&tpot), "peak_rss_mb", rss);
        json_object_set_new(out, "decode_weight_gb_per_s", json_real(stream_gb_s));
        json_object_set_new(out, "decode_target_passes_per_s", json_real(stat_mean(&passes)));
        json_object_set_new(out, "step_bytes", json_integer(info.step_bytes));
        json_object_set_new(out, "kv_type", json_string(tandem_type_name(tandem_ctx_kv_type(ctx))));
        if (cli_interrupted) json_object_set_new(out, "interrupted", json_true());
        if (speculative) {
            json_object_set_new(out, "acceptance_rate", json_real(stat_mean(&accept)));
            json_object_set_new(out, "mean_accepted", json_real(stat_mean(&mean_acc)));
            json_object_set_new(out, "mean_per_pass", json_real(stat_mean(&per_pass)));
            json_object_set_new(out, "target_alone_decode_tokens_per_s", json_real(stat_mean(&alone_decode)));
            json_object_set_new(out, "measured_speedup", json_real(speedup));
            json_object_set_new(out, "predicted_speedup", json_real(stat_mean(&predicted)));
            json_object_set_new(out, "drafted", json_integer(n_drafted));
            json_object_set_new(out, "draft_off_rounds", json_integer(n_draft_off));
            json_object_set_new(out, "rounds", json_integer(n_rounds));
        }
        if (curve) {
            json_t *arr = json_array();
            for (int i = 0; i < CURVE_N_KS; i++)
                json_array_append_new(arr, json_pack("{s:i, s:f, s:f}", "k", curve_ks[i], "ms", curve_ms[i], "relative",
                                                     curve_ms[i] / curve_ms[0]));
            json_object_set_new(out, "verify_curve", arr);
        }
        print_json_line(out);
    }
done:
    tandem_ctx_free(draft_ctx);
    tandem_model_free(draft_model);
    tandem_ctx_free(ctx);
    tandem_model_free(model);
    free(ids);
    return cli_interrupted ? 128 + SIGINT : 0;
}
