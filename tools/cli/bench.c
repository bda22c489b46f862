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
    "      --exact              f32 activations (the reference path) instead of 8-bit ones\n"
    KV_TYPE_HELP
    "      --curve              also time one pass over k = 1, 2, 4, 8, 16 tokens (every position's logits,\n"
    "                           as verification computes them; median of max(r, 7) rounds in which the k\n"
    "                           take turns) and print its cost relative to k = 1\n"
    "      --json               print one JSON object as the last line\n"
    "speculative decoding (adds acceptance_rate and mean_accepted):\n"
    "  -md, --draft MODEL       draft model; --draft-max N, --draft-min N, --draft-p-min P, --draft-fixed and\n"
    "                           --lookup N as for tandem run\n";

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
 * one that warms caches), in ms, into ms_out[i]. A round times every k once, in turn, so the load of a shared
 * machine, which drifts over seconds, reaches each k alike (timed k by k, the ratios moved by tens of percent
 * between runs); the median keeps one descheduled pass out of the curve. */
static void time_passes(tandem_ctx *ctx, const int32_t *ids, int reps, float *logits, double ms_out[CURVE_N_KS]) {
    enum { MAX_REPS = 64 };
    double ms[CURVE_N_KS][MAX_REPS];
    if (reps > MAX_REPS) reps = MAX_REPS;
    tandem_status st;
    if ((st = tandem_ctx_truncate(ctx, 0)) || (st = tandem_ctx_eval(ctx, ids, CURVE_PREFIX, NULL)))
        die_status("bench", st);
    for (int r = -1; r < reps; r++)
        for (int i = 0; i < CURVE_N_KS; i++) {
            const double t0 = now_ms();
            if ((st = tandem_ctx_eval(ctx, ids + CURVE_PREFIX, curve_ks[i], logits))) die_status("bench", st);
            if (r >= 0) ms[i][r] = now_ms() - t0;
            if ((st = tandem_ctx_truncate(ctx, CURVE_PREFIX))) die_status("bench", st);
        }
    for (int i = 0; i < CURVE_N_KS; i++) {
        qsort(ms[i], (size_t)reps, sizeof ms[i][0], cmp_double);
        ms_out[i] = reps % 2 ? ms[i][reps / 2] : (ms[i][reps / 2 - 1] + ms[i][reps / 2]) / 2;
    }
}

int cmd_bench(int argc, char **argv) {
    args a = {"bench", argc, argv, 0};
    const char *model_path = NULL, *draft_path = NULL, *text_file = NULL;
    int n_prompt = 512, n_gen = 128, reps = 3, warmup = 1, threads = 0, n_batch = 512;
    bool json = false, exact = false, curve = false;
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
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) threads = (int)parse_int(&a, f, take_value(&a, f), 1, 1024);
        else if (!strcmp(f, "-b") || !strcmp(f, "--batch")) n_batch = (int)parse_int(&a, f, take_value(&a, f), 1, 4096);
        else if (!strcmp(f, "--exact")) exact = true;
        else if (!strcmp(f, "--kv-type")) kv_type = parse_kv_type(&a, f);
        else if (!strcmp(f, "--curve")) curve = true;
        else if (!strcmp(f, "--json")) json = true;
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
    const int n_ids = prompt_len > curve_len ? prompt_len : curve_len;
    int32_t *ids = make_prompt(model, text_file, n_ids);

    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = prompt_len + n_gen + 64 > curve_len ? prompt_len + n_gen + 64 : curve_len;
    cp.n_batch = n_batch > CURVE_MAX_K ? n_batch : CURVE_MAX_K;
    cp.exact = exact;
    cp.kv_type = kv_type;
    tandem_ctx *ctx = NULL, *draft_ctx = NULL;
    if ((st = tandem_ctx_init(model, &cp, &ctx))) die_status("bench", st);
    if (draft_path) {
        if ((st = tandem_model_load(draft_path, &mp, &draft_model))) die_status("bench", st);
        if ((st = tandem_model_check_draft(model, draft_model))) die_status("bench", st);
        if ((st = tandem_ctx_init(draft_model, &cp, &draft_ctx))) die_status("bench", st);
    }

    tandem_gen_params gp = tandem_gen_default_params(model);
    gp.sampling.temperature = 0;
    gp.sampling.repeat_penalty = 1;
    gp.max_tokens = n_gen;
    gp.ignore_eos = true;
    gp.draft = draft_ctx;
    gp.spec = spec;
    stat_acc ttft = {0}, prefill = {0}, decode = {0}, tpot = {0}, accept = {0}, per_pass = {0}, mean_acc = {0};
    for (int run = 0; run < warmup + reps; run++) {
        if ((st = tandem_ctx_truncate(ctx, 0))) die_status("bench", st);
        if (draft_ctx && (st = tandem_ctx_truncate(draft_ctx, 0))) die_status("bench", st);
        tandem_gen_result r;
        if ((st = tandem_generate(ctx, ids, (size_t)prompt_len, &gp, &r))) die_status("bench", st);
        const tandem_timings *t = &r.timings;
        if (run >= warmup) {
            stat_add(&ttft, t->ttft_ms);
            if (n_prompt > 0) stat_add(&prefill, t->n_prompt / (t->prompt_ms / 1e3));
            if (t->n_generated > 1) {
                stat_add(&decode, (t->n_generated - 1) / (t->decode_ms / 1e3));
                stat_add(&tpot, t->decode_ms / (t->n_generated - 1));
            }
            if (r.speculative) {
                stat_add(&accept, r.spec_stats.acceptance_rate);
                stat_add(&per_pass, r.spec_stats.mean_per_pass);
                stat_add(&mean_acc, r.spec_stats.n_rounds ? (double)r.spec_stats.n_accepted / r.spec_stats.n_rounds : 0);
            }
        }
        tandem_gen_result_free(&r);
    }

    double curve_ms[CURVE_N_KS] = {0};  /* curve_ms[i]: a pass over curve_ks[i] tokens */
    if (curve) {
        float *logits = malloc(sizeof(float) * (size_t)CURVE_MAX_K * (size_t)info.vocab_size);
        if (!logits) die_usage("bench", "out of memory for the curve's logits");
        time_passes(ctx, ids, reps < 7 ? 7 : reps, logits, curve_ms);
        free(logits);
    }

    const double rss = peak_rss_mb();
    /* decode is bound by memory bandwidth: the weight bytes streamed per second is the comparable figure */
    const double stream_gb_s = stat_mean(&decode) * (double)info.step_bytes / 1e9;
    printf("tandem bench: %s, %s kernels, %d threads, %s activations, %s KV cache\n", model_path, tandem_kernel_isa(),
           tandem_model_threads(model), exact ? "f32" : "8-bit", tandem_type_name(tandem_ctx_kv_type(ctx)));
    printf("  prompt %d tokens, generate %d, %d runs after %d warm-up\n", n_prompt, n_gen, reps, warmup);
    printf("  time to first token   %9.1f ms   (± %.1f)\n", stat_mean(&ttft), stat_sd(&ttft));
    if (n_prompt > 0) printf("  prefill               %9.2f tok/s (± %.2f)\n", stat_mean(&prefill), stat_sd(&prefill));
    printf("  decode                %9.2f tok/s (± %.2f)\n", stat_mean(&decode), stat_sd(&decode));
    printf("  time per output token %9.2f ms\n", stat_mean(&tpot));
    printf("  weights streamed      %9.2f GB/s while decoding (%.0f MB per token)\n", stream_gb_s, info.step_bytes / 1e6);
    printf("  peak resident memory  %9.1f MB\n", rss);
    if (draft_ctx || spec.lookup_ngram > 0)
        printf("  speculative: acceptance %.3f, %.2f accepted and %.2f produced per target pass\n", stat_mean(&accept),
               stat_mean(&mean_acc), stat_mean(&per_pass));
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
        json_object_set_new(out, "kv_type", json_string(tandem_type_name(tandem_ctx_kv_type(ctx))));
        if (draft_ctx || spec.lookup_ngram > 0) {
            json_object_set_new(out, "acceptance_rate", json_real(stat_mean(&accept)));
            json_object_set_new(out, "mean_accepted", json_real(stat_mean(&mean_acc)));
            json_object_set_new(out, "mean_per_pass", json_real(stat_mean(&per_pass)));
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
    tandem_ctx_free(draft_ctx);
    tandem_model_free(draft_model);
    tandem_ctx_free(ctx);
    tandem_model_free(model);
    free(ids);
    return 0;
}
