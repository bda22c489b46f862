/* main.c — the `tandem` command line: run, tokenize, detokenize, info, convert, quantize, perplexity, kld.
 * Sees only include/tandem.h (and jansson for --json output). Exit codes: 0 ok, 1 failed, 2 bad usage. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "tandem.h"

/* ---- errors and usage ---- */

enum { EXIT_FAILED = 1, EXIT_USAGE = 2 };

static _Noreturn void die_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tandem %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see 'tandem %s --help')\n", cmd);
    va_end(ap);
    exit(EXIT_USAGE);
}

static _Noreturn void die_status(const char *cmd, tandem_status st) {
    fprintf(stderr, "tandem %s: error: %s (%s)\n", cmd, tandem_last_error(), tandem_status_name(st));
    exit(EXIT_FAILED);
}

/* ---- argument parsing: every flag takes its value from the next argument ---- */

typedef struct args {
    const char *cmd;
    int argc;
    char **argv;
    int i;
} args;

static const char *take_value(args *a, const char *flag) {
    if (a->i + 1 >= a->argc) die_usage(a->cmd, "option %s needs a value", flag);
    return a->argv[++a->i];
}

static long long parse_int(args *a, const char *flag, const char *s, long long lo, long long hi) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) die_usage(a->cmd, "option %s: '%s' is not an integer", flag, s);
    if (v < lo || v > hi) die_usage(a->cmd, "option %s: %lld is outside %lld..%lld", flag, v, lo, hi);
    return v;
}

static double parse_float(args *a, const char *flag, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) die_usage(a->cmd, "option %s: '%s' is not a number", flag, s);
    if (v < lo || v > hi) die_usage(a->cmd, "option %s: %g is outside %g..%g", flag, v, lo, hi);
    return v;
}

static char *read_file(const char *cmd, const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "tandem %s: error: %s: cannot open: %s\n", cmd, path, strerror(errno));
        exit(EXIT_FAILED);
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fprintf(stderr, "tandem %s: error: out of memory reading %s\n", cmd, path);
            exit(EXIT_FAILED);
        }
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        cap *= 2;
        buf = realloc(buf, cap);
    }
    if (ferror(f)) {
        fprintf(stderr, "tandem %s: error: %s: read failed\n", cmd, path);
        exit(EXIT_FAILED);
    }
    if (f != stdin) fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static json_t *ids_json(const int32_t *ids, size_t n) {
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, json_integer(ids[i]));
    return arr;
}

static void print_json_line(json_t *obj) {
    /* JSON_ENSURE_ASCII: one plain-ASCII line whatever the text (non-ASCII becomes \uXXXX escapes). */
    char *s = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (!s) {
        fprintf(stderr, "tandem: error: cannot encode JSON output\n");
        exit(EXIT_FAILED);
    }
    printf("%s\n", s);
    free(s);
    json_decref(obj);
}

/* JSON strings must be valid UTF-8: replace invalid sequences with U+FFFD for the JSON copy. */
static json_t *text_json(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j) return j;
    char *fixed = malloc(n * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        json_t *probe = len && i + len <= n ? json_stringn(s + i, len) : NULL;
        if (probe) {
            memcpy(fixed + o, s + i, len);
            o += len;
            i += len;
            json_decref(probe);
        } else {
            memcpy(fixed + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += 1;
        }
    }
    j = json_stringn(fixed, o);
    free(fixed);
    return j;
}

/* ---- tandem run ---- */

static const char RUN_HELP[] =
    "usage: tandem run -m MODEL (-p TEXT | -f FILE) [options]\n"
    "Generates text after the prompt and streams it to stdout.\n"
    "  -m, --model PATH         GGUF file or Hugging Face checkpoint folder\n"
    "  -p, --prompt TEXT        prompt text (special tokens such as <|im_start|> are recognised)\n"
    "  -f, --file FILE          read the prompt from FILE ('-' = stdin)\n"
    "  -n, --max-tokens N       stop after N generated tokens (default -1: until EOS or full context)\n"
    "      --temp T             temperature; 0 = greedy (default: the model's generation_config.json)\n"
    "      --top-k K            keep the K most likely tokens (0 = off)\n"
    "      --top-p P            keep the smallest set with probability mass P (1 = off)\n"
    "      --min-p P            drop tokens below P x the top probability (0 = off)\n"
    "      --repeat-penalty F   penalise tokens seen in the last --repeat-last-n (1 = off)\n"
    "      --repeat-last-n N    window of the penalties (default 64, -1 = whole context)\n"
    "      --presence-penalty F subtract F from the logit of every seen token\n"
    "      --frequency-penalty F subtract F per occurrence\n"
    "      --seed S             random seed (same seed, same output)\n"
    "      --stop TEXT          stop when TEXT appears (repeatable; TEXT is not printed)\n"
    "      --ignore-eos         keep generating past end-of-generation tokens\n"
    "  -c, --ctx-size N         context size in tokens (default min(model, 4096))\n"
    "  -b, --batch N            prompt tokens per forward pass (default 64)\n"
    "  -t, --threads N          threads (default: all cores)\n"
    "      --json               after the text, print one JSON line with ids, text, finish_reason, timings\n"
    "speculative decoding (output identical to the target alone):\n"
    "  -md, --draft MODEL       a small model of the same vocabulary that proposes tokens\n"
    "      --draft-max N        most tokens proposed per target pass (default 8)\n"
    "      --draft-min N        drop draft-model proposals shorter than N (default 1)\n"
    "      --draft-p-min P      stop a draft when the draft's top probability is below P (default 0: off)\n"
    "      --draft-fixed        always propose --draft-max tokens (default: adapt to acceptance and cost)\n"
    "      --lookup N           propose the continuation of the last N-gram seen earlier (prompt lookup)\n";

static bool stream_to_stdout(const char *text, size_t len, void *user) {
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

static int cmd_run(int argc, char **argv) {
    args a = {"run", argc, argv, 0};
    const char *model_path = NULL, *prompt = NULL, *prompt_file = NULL, *draft_path = NULL;
    int max_tokens = -1, threads = 0, n_ctx = 0, n_batch = 64;
    tandem_spec_params spec = tandem_spec_default_params();
    bool json = false, ignore_eos = false;
    const char **stops = calloc((size_t)argc, sizeof *stops);
    int n_stop = 0;
    /* sampling overrides, applied over the model's defaults once it is loaded */
    double temp = NAN, top_p = NAN, min_p = NAN, rep = NAN, pres = NAN, freq = NAN;
    long long top_k = -1, rep_n = LLONG_MIN, seed = -1;
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(RUN_HELP, stdout);
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) model_path = take_value(&a, f);
        else if (!strcmp(f, "-p") || !strcmp(f, "--prompt")) prompt = take_value(&a, f);
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) prompt_file = take_value(&a, f);
        else if (!strcmp(f, "-n") || !strcmp(f, "--max-tokens")) max_tokens = (int)parse_int(&a, f, take_value(&a, f), -1, INT_MAX);
        else if (!strcmp(f, "--temp")) temp = parse_float(&a, f, take_value(&a, f), 0, 100);
        else if (!strcmp(f, "--top-k")) top_k = parse_int(&a, f, take_value(&a, f), 0, INT_MAX);
        else if (!strcmp(f, "--top-p")) top_p = parse_float(&a, f, take_value(&a, f), 1e-9, 1);
        else if (!strcmp(f, "--min-p")) min_p = parse_float(&a, f, take_value(&a, f), 0, 1);
        else if (!strcmp(f, "--repeat-penalty")) rep = parse_float(&a, f, take_value(&a, f), 1e-6, 100);
        else if (!strcmp(f, "--repeat-last-n")) rep_n = parse_int(&a, f, take_value(&a, f), -1, INT_MAX);
        else if (!strcmp(f, "--presence-penalty")) pres = parse_float(&a, f, take_value(&a, f), -100, 100);
        else if (!strcmp(f, "--frequency-penalty")) freq = parse_float(&a, f, take_value(&a, f), -100, 100);
        else if (!strcmp(f, "--seed")) seed = parse_int(&a, f, take_value(&a, f), 0, LLONG_MAX);
        else if (!strcmp(f, "--stop")) stops[n_stop++] = take_value(&a, f);
        else if (!strcmp(f, "--ignore-eos")) ignore_eos = true;
        else if (!strcmp(f, "-c") || !strcmp(f, "--ctx-size")) n_ctx = (int)parse_int(&a, f, take_value(&a, f), 1, 1 << 24);
        else if (!strcmp(f, "-b") || !strcmp(f, "--batch")) n_batch = (int)parse_int(&a, f, take_value(&a, f), 1, 4096);
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) threads = (int)parse_int(&a, f, take_value(&a, f), 1, 1024);
        else if (!strcmp(f, "--json")) json = true;
        else if (!strcmp(f, "-md") || !strcmp(f, "--draft")) draft_path = take_value(&a, f);
        else if (!strcmp(f, "--draft-max")) spec.draft_max = (int)parse_int(&a, f, take_value(&a, f), 1, 64);
        else if (!strcmp(f, "--draft-min")) spec.draft_min = (int)parse_int(&a, f, take_value(&a, f), 0, 64);
        else if (!strcmp(f, "--draft-p-min")) spec.draft_p_min = (float)parse_float(&a, f, take_value(&a, f), 0, 1);
        else if (!strcmp(f, "--draft-fixed")) spec.adaptive = false;
        else if (!strcmp(f, "--lookup")) spec.lookup_ngram = (int)parse_int(&a, f, take_value(&a, f), 1, 16);
        else die_usage("run", "unknown option '%s'", f);
    }
    if (!model_path) die_usage("run", "missing -m MODEL");
    if (!prompt == !prompt_file) die_usage("run", "give exactly one of -p TEXT or -f FILE");
    if (spec.draft_min > spec.draft_max) die_usage("run", "--draft-min %d exceeds --draft-max %d", spec.draft_min, spec.draft_max);
    size_t prompt_len;
    char *prompt_buf = NULL;
    if (prompt_file) prompt = prompt_buf = read_file("run", prompt_file, &prompt_len);
    else prompt_len = strlen(prompt);

    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = threads;
    tandem_model *model;
    tandem_status st = tandem_model_load(model_path, &mp, &model);
    if (st) die_status("run", st);
    const tandem_tokenizer *tok = tandem_model_tokenizer(model);
    int32_t *ids;
    size_t n_ids;
    if ((st = tandem_tokenizer_encode(tok, prompt, prompt_len, true, &ids, &n_ids))) die_status("run", st);
    if (n_ids == 0) die_usage("run", "the prompt is empty");

    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    tandem_ctx *ctx;
    if ((st = tandem_ctx_init(model, &cp, &ctx))) die_status("run", st);

    tandem_model *draft_model = NULL;
    tandem_ctx *draft_ctx = NULL;
    if (draft_path) {
        if ((st = tandem_model_load(draft_path, &mp, &draft_model))) die_status("run", st);
        if ((st = tandem_model_check_draft(model, draft_model))) die_status("run", st);
        cp.n_ctx = tandem_ctx_n_ctx(ctx);
        if ((st = tandem_ctx_init(draft_model, &cp, &draft_ctx))) die_status("run", st);
    }

    tandem_gen_params gp = tandem_gen_default_params(model);
    gp.draft = draft_ctx;
    gp.spec = spec;
    tandem_sampler_params *sp = &gp.sampling;
    if (!isnan(temp)) sp->temperature = (float)temp;
    if (top_k >= 0) sp->top_k = (int32_t)top_k;
    if (!isnan(top_p)) sp->top_p = (float)top_p;
    if (!isnan(min_p)) sp->min_p = (float)min_p;
    if (!isnan(rep)) sp->repeat_penalty = (float)rep;
    if (rep_n != LLONG_MIN) sp->repeat_last_n = (int32_t)rep_n;
    if (!isnan(pres)) sp->presence_penalty = (float)pres;
    if (!isnan(freq)) sp->frequency_penalty = (float)freq;
    if (seed >= 0) sp->seed = (uint64_t)seed;
    gp.max_tokens = max_tokens;
    gp.stop = stops;
    gp.n_stop = n_stop;
    gp.ignore_eos = ignore_eos;
    gp.on_text = stream_to_stdout;

    tandem_gen_result r;
    if ((st = tandem_generate(ctx, ids, n_ids, &gp, &r))) die_status("run", st);
    const tandem_timings *t = &r.timings;
    const double prefill_tps = t->prompt_ms > 0 ? t->n_prompt / (t->prompt_ms / 1e3) : 0;
    const double decode_tps = t->n_generated > 1 && t->decode_ms > 0 ? (t->n_generated - 1) / (t->decode_ms / 1e3) : 0;
    if (json) {
        if (r.text_len == 0 || r.text[r.text_len - 1] != '\n') putchar('\n');
        json_t *timings = json_pack("{s:f, s:f, s:f, s:i, s:i, s:f, s:f}", "prompt_ms", t->prompt_ms, "ttft_ms",
                                    t->ttft_ms, "decode_ms", t->decode_ms, "prompt_tokens", t->n_prompt,
                                    "generated_tokens", t->n_generated, "prefill_tokens_per_s", prefill_tps,
                                    "decode_tokens_per_s", decode_tps);
        json_t *out = json_object();
        json_object_set_new(out, "prompt_ids", ids_json(ids, n_ids));
        json_object_set_new(out, "generated_ids", ids_json(r.ids, r.n_ids));
        json_object_set_new(out, "text", text_json(r.text, r.text_len));
        json_object_set_new(out, "finish_reason", json_string(tandem_finish_name(r.finish)));
        json_object_set_new(out, "timings", timings);
        if (r.speculative) {
            const tandem_spec_stats *x = &r.spec_stats;
            json_object_set_new(out, "speculative", json_pack(
                "{s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:i, s:b, s:i}", "rounds", x->n_rounds,
                "drafted", x->n_drafted, "accepted", x->n_accepted, "drafted_lookup", x->n_drafted_lookup,
                "accepted_lookup", x->n_accepted_lookup, "acceptance_rate", x->acceptance_rate, "mean_per_pass",
                x->mean_per_pass, "mean_draft_len", x->mean_draft_len, "draft_ms", x->draft_ms, "target_ms",
                x->target_ms, "c", x->draft_target_ratio, "predicted_speedup", x->predicted_speedup, "draft_max",
                spec.draft_max, "adaptive", spec.adaptive, "lookup", spec.lookup_ngram));
        }
        print_json_line(out);
    } else {
        putchar('\n');
        fprintf(stderr, "tandem: %d prompt tokens (%.1f tok/s), %d generated (%.2f tok/s), first token after %.0f ms, "
                "finish: %s\n", t->n_prompt, prefill_tps, t->n_generated, decode_tps, t->ttft_ms,
                tandem_finish_name(r.finish));
        if (r.speculative)
            fprintf(stderr, "tandem: speculative: %d of %d proposed tokens accepted (%.0f%%), %.2f tokens per target "
                    "pass, c = %.3f, predicted speedup %.2fx\n", r.spec_stats.n_accepted, r.spec_stats.n_drafted,
                    100 * r.spec_stats.acceptance_rate, r.spec_stats.mean_per_pass, r.spec_stats.draft_target_ratio,
                    r.spec_stats.predicted_speedup);
    }
    tandem_gen_result_free(&r);
    tandem_free(ids);
    tandem_ctx_free(draft_ctx);
    tandem_model_free(draft_model);
    tandem_ctx_free(ctx);
    tandem_model_free(model);
    free(prompt_buf);
    free(stops);
    return 0;
}

/* ---- tandem tokenize / detokenize ---- */

static const char TOKENIZE_HELP[] =
    "usage: tandem tokenize -m MODEL (--text TEXT | -f FILE) [--json] [--no-special]\n"
    "Prints the token ids of the text, separated by spaces (--json: {\"ids\": [...]}).\n"
    "  -m, --model PATH   GGUF file, checkpoint folder, or a folder with only tokenizer.json\n"
    "      --text TEXT    the text\n"
    "  -f, --file FILE    read the text from FILE ('-' = stdin)\n"
    "      --no-special   treat <|im_start|> and other added tokens as plain text\n"
    "      --json         print one JSON object\n";

static int cmd_tokenize(int argc, char **argv) {
    args a = {"tokenize", argc, argv, 0};
    const char *model_path = NULL, *text = NULL, *file = NULL;
    bool json = false, special = true;
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(TOKENIZE_HELP, stdout);
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) model_path = take_value(&a, f);
        else if (!strcmp(f, "--text")) text = take_value(&a, f);
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) file = take_value(&a, f);
        else if (!strcmp(f, "--json")) json = true;
        else if (!strcmp(f, "--no-special")) special = false;
        else die_usage("tokenize", "unknown option '%s'", f);
    }
    if (!model_path) die_usage("tokenize", "missing -m MODEL");
    if (!text == !file) die_usage("tokenize", "give exactly one of --text TEXT or -f FILE");
    size_t len;
    char *buf = NULL;
    if (file) text = buf = read_file("tokenize", file, &len);
    else len = strlen(text);
    tandem_tokenizer *tok;
    tandem_status st = tandem_tokenizer_load(model_path, &tok);
    if (st) die_status("tokenize", st);
    int32_t *ids;
    size_t n;
    if ((st = tandem_tokenizer_encode(tok, text, len, special, &ids, &n))) die_status("tokenize", st);
    if (json) {
        json_t *out = json_object();
        json_object_set_new(out, "ids", ids_json(ids, n));
        print_json_line(out);
    } else {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    tandem_free(ids);
    tandem_tokenizer_free(tok);
    free(buf);
    return 0;
}

static const char DETOKENIZE_HELP[] =
    "usage: tandem detokenize -m MODEL ID...\n"
    "Prints the text of the token ids (raw bytes, no newline added).\n";

static int cmd_detokenize(int argc, char **argv) {
    args a = {"detokenize", argc, argv, 0};
    const char *model_path = NULL;
    int32_t *ids = calloc((size_t)argc, sizeof *ids);
    size_t n = 0;
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(DETOKENIZE_HELP, stdout);
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) model_path = take_value(&a, f);
        else if (f[0] == '-' && !(f[1] >= '0' && f[1] <= '9')) die_usage("detokenize", "unknown option '%s'", f);
        else ids[n++] = (int32_t)parse_int(&a, "ID", f, 0, INT32_MAX);
    }
    if (!model_path) die_usage("detokenize", "missing -m MODEL");
    tandem_tokenizer *tok;
    tandem_status st = tandem_tokenizer_load(model_path, &tok);
    if (st) die_status("detokenize", st);
    char *text;
    size_t len;
    if ((st = tandem_tokenizer_decode(tok, ids, n, &text, &len))) die_status("detokenize", st);
    fwrite(text, 1, len, stdout);
    tandem_free(text);
    tandem_tokenizer_free(tok);
    free(ids);
    return 0;
}

/* ---- tandem info ---- */

static const char INFO_HELP[] =
    "usage: tandem info MODEL [--json] [--tensors]\n"
    "Prints the architecture, hyperparameters, tensor count and types, and a tokenizer summary.\n"
    "Reads only headers: the weights are mapped, not read.\n"
    "      --tensors   list every tensor with its type and shape\n"
    "      --json      print one JSON object\n";

static int cmd_info(int argc, char **argv) {
    args a = {"info", argc, argv, 0};
    const char *model_path = NULL;
    bool json = false, tensors = false;
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(INFO_HELP, stdout);
            return 0;
        } else if (!strcmp(f, "--json")) json = true;
        else if (!strcmp(f, "--tensors")) tensors = true;
        else if (!strcmp(f, "-m") || !strcmp(f, "--model")) model_path = take_value(&a, f);
        else if (f[0] == '-') die_usage("info", "unknown option '%s'", f);
        else if (model_path) die_usage("info", "more than one MODEL given");
        else model_path = f;
    }
    if (!model_path) die_usage("info", "missing MODEL");
    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = 1;
    tandem_model *model;
    tandem_status st = tandem_model_load(model_path, &mp, &model);
    if (st) die_status("info", st);
    tandem_model_info mi;
    tandem_model_get_info(model, &mi);
    /* tensor count per type */
    int64_t per_type[TANDEM_TYPE_COUNT + 1] = {0};
    for (int32_t i = 0; i < mi.n_tensors; i++) {
        tandem_tensor_info ti;
        if (tandem_model_tensor_info(model, i, &ti) == TANDEM_OK) per_type[ti.type]++;
    }
    const tandem_tokenizer *tok = tandem_model_tokenizer(model);
    size_t n_eos;
    const int32_t *eos = tandem_tokenizer_eos_ids(tok, &n_eos);
    const char *tmpl = tandem_tokenizer_chat_template(tok);
    if (json) {
        json_t *types = json_object();
        for (int t = 0; t <= TANDEM_TYPE_COUNT; t++)
            if (per_type[t]) json_object_set_new(types, t == TANDEM_TYPE_COUNT ? "other" : tandem_type_name((tandem_type)t),
                                                 json_integer(per_type[t]));
        json_t *out = json_pack(
            "{s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:I, s:I, s:i, s:o, "
            "s:{s:i, s:o, s:b}}",
            "architecture", mi.architecture, "name", mi.name, "source", mi.source, "n_layers", mi.n_layers, "dim",
            mi.dim, "n_heads", mi.n_heads, "n_kv_heads", mi.n_kv_heads, "head_dim", mi.head_dim, "ffn_dim",
            mi.ffn_dim, "vocab_size", mi.vocab_size, "context_length", mi.context_length, "rope_theta",
            (double)mi.rope_theta, "rms_eps", (double)mi.rms_eps, "tied_embeddings", mi.tied_embeddings, "n_params",
            (json_int_t)mi.n_params, "weight_bytes", (json_int_t)mi.weight_bytes, "n_tensors", mi.n_tensors,
            "tensor_types", types, "tokenizer", "vocab_size", tandem_tokenizer_vocab_size(tok), "eos_ids",
            ids_json(eos, n_eos), "chat_template", tmpl != NULL);
        print_json_line(out);
    } else {
        printf("model:          %s (%s, %s)\n", mi.name, mi.architecture, mi.source);
        printf("layers:         %d\n", mi.n_layers);
        printf("hidden size:    %d\n", mi.dim);
        printf("heads:          %d query, %d key/value, head_dim %d\n", mi.n_heads, mi.n_kv_heads, mi.head_dim);
        printf("ffn size:       %d\n", mi.ffn_dim);
        printf("vocab size:     %d\n", mi.vocab_size);
        printf("context length: %d\n", mi.context_length);
        printf("rope theta:     %g\n", (double)mi.rope_theta);
        printf("rms eps:        %g\n", (double)mi.rms_eps);
        printf("embeddings:     %s\n", mi.tied_embeddings ? "tied (output head = token embeddings)" : "separate output head");
        printf("parameters:     %lld (%.2f GiB as stored)\n", (long long)mi.n_params, (double)mi.weight_bytes / (1 << 30));
        printf("tensors:        %d (", mi.n_tensors);
        const char *sep = "";
        for (int t = 0; t <= TANDEM_TYPE_COUNT; t++)
            if (per_type[t]) {
                printf("%s%lld %s", sep, (long long)per_type[t], t == TANDEM_TYPE_COUNT ? "other" : tandem_type_name((tandem_type)t));
                sep = ", ";
            }
        printf(")\n");
        printf("tokenizer:      %d tokens, end ids", tandem_tokenizer_vocab_size(tok));
        for (size_t i = 0; i < n_eos; i++) printf(" %d", eos[i]);
        printf(", chat template: %s\n", tmpl ? "yes" : "no");
    }
    if (tensors && !json) {
        for (int32_t i = 0; i < mi.n_tensors; i++) {
            tandem_tensor_info ti;
            if (tandem_model_tensor_info(model, i, &ti) != TANDEM_OK) continue;
            printf("  %-40s %-6s [", ti.name, ti.type == TANDEM_TYPE_COUNT ? "other" : tandem_type_name(ti.type));
            for (int d = 0; d < ti.n_dims; d++) printf(d ? ", %lld" : "%lld", (long long)ti.shape[d]);
            printf("]\n");
        }
    }
    tandem_model_free(model);
    return 0;
}


/* ---- progress bar for long jobs (convert, quantize, perplexity, kld) ---- */

/* Drawn on stderr only when it is a terminal; pipes and files get nothing. Ctrl-C asks the library to stop
 * (the job then fails cleanly and leaves no output file) instead of killing the process mid-write. */
static volatile sig_atomic_t g_interrupted;

static void on_interrupt(int sig) {
    (void)sig;
    g_interrupted = 1;
}

typedef struct progress_bar {
    bool enabled;
    bool drawn;
    char stage[16];
    double t_stage;  /* seconds, when the current stage began */
} progress_bar;

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void progress_init(progress_bar *b) {
    memset(b, 0, sizeof *b);
    b->enabled = isatty(STDERR_FILENO);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static bool progress_draw(const char *stage, int64_t done, int64_t total, void *user) {
    progress_bar *b = user;
    if (g_interrupted) return false;
    if (!b->enabled || total <= 0) return true;
    const double now = seconds_now();
    if (strncmp(b->stage, stage, sizeof b->stage - 1) != 0) {
        snprintf(b->stage, sizeof b->stage, "%s", stage);
        b->t_stage = now;
    }
    const double frac = (double)done / (double)total, elapsed = now - b->t_stage;
    enum { WIDTH = 30 };
    char bar[WIDTH + 1];
    const int fill = (int)(frac * WIDTH + 0.5);
    for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    char eta[32] = "ETA --";
    if (done > 0 && done < total) {
        const double left = elapsed / frac - elapsed;
        snprintf(eta, sizeof eta, "ETA %dm%02ds", (int)(left / 60), (int)left % 60);
    } else if (done >= total) {
        snprintf(eta, sizeof eta, "%.1fs", elapsed);
    }
    fprintf(stderr, "\r%-9s [%s] %3d%% %s   ", stage, bar, (int)(frac * 100 + 0.5), eta);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
    b->drawn = done < total;
    return true;
}

static void progress_end(progress_bar *b) {
    if (b->enabled && b->drawn) fputc('\n', stderr);
    b->drawn = false;
}

/* ---- tandem convert / quantize ---- */

static const char CONVERT_HELP[] =
    "usage: tandem convert HF_DIR -o OUT.gguf [--weight-format FORMAT] [--sym | --asym] [--ratio R] [--force]\n"
    "Converts a Hugging Face Qwen3 checkpoint folder into one GGUF (tokenizer and chat template inside),\n"
    "with llama.cpp's tensor names, metadata and per-tensor types.\n"
    "  -o, --output FILE        the GGUF to write (written to a temporary file, renamed at the end)\n"
    "      --weight-format F    f32, f16 (default), bf16, int8 (Q8_0), int4 (Q4_1 or with --sym Q4_0), nf4 (IQ4_NL),\n"
    "                           q4_k_m, q5_k_m, q6_k; also any GGUF type name tandem quantize takes\n"
    "      --sym / --asym       int4 only: symmetric Q4_0 / asymmetric Q4_1 (default --asym)\n"
    "      --ratio R            keep only R of the layers' weights at the chosen 2-6 bit format, the most\n"
    "                           sensitive rest (1-R) in Q8_0 (default 1)\n"
    "      --force              overwrite OUT if it exists\n"
    "  -t, --threads N          threads (default: all cores)\n";

static const char QUANTIZE_HELP[] =
    "usage: tandem quantize IN.gguf OUT.gguf TYPE [--ratio R] [--force] [-t N]\n"
    "Re-quantizes a Qwen3 GGUF. TYPE: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 IQ4_NL Q2_K Q3_K Q4_K Q5_K Q6_K\n"
    "Q4_K_M Q5_K_M (Q2_K..Q5_K alone: every weight that type; Q4_K_M, Q5_K_M, Q6_K and the 32-block types use\n"
    "llama-quantize's mixes). Metadata is copied; general.file_type is updated.\n"
    "      --ratio R            as for tandem convert\n"
    "      --force              overwrite OUT.gguf if it exists\n"
    "  -t, --threads N          threads (default: all cores)\n";

static int cmd_convert_or_quantize(int argc, char **argv, bool quantize) {
    const char *cmd = quantize ? "quantize" : "convert";
    args a = {cmd, argc, argv, 0};
    const char *positional[3] = {NULL, NULL, NULL}, *out = NULL, *format = quantize ? NULL : "f16";
    int n_pos = 0;
    bool sym = false, asym = false;
    tandem_convert_params cp = tandem_convert_default_params();
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(quantize ? QUANTIZE_HELP : CONVERT_HELP, stdout);
            return 0;
        } else if (!quantize && (!strcmp(f, "-o") || !strcmp(f, "--output"))) out = take_value(&a, f);
        else if (!quantize && !strcmp(f, "--weight-format")) format = take_value(&a, f);
        else if (!quantize && !strcmp(f, "--sym")) sym = true;
        else if (!quantize && !strcmp(f, "--asym")) asym = true;
        else if (!strcmp(f, "--ratio")) cp.ratio = (float)parse_float(&a, f, take_value(&a, f), 0.0, 1.0);
        else if (!strcmp(f, "--force")) cp.overwrite = true;
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) cp.n_threads = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 1024);
        else if (f[0] == '-' && f[1]) die_usage(cmd, "unknown option '%s'", f);
        else if (n_pos < (quantize ? 3 : 1)) positional[n_pos++] = f;
        else die_usage(cmd, "unexpected argument '%s'", f);
    }
    if (sym && asym) die_usage(cmd, "--sym and --asym exclude each other");
    if (quantize) {
        if (n_pos < 3) die_usage(cmd, "expected IN.gguf OUT.gguf TYPE");
        out = positional[1];
        format = positional[2];
    } else {
        if (n_pos < 1) die_usage(cmd, "missing HF_DIR");
        if (!out) die_usage(cmd, "missing -o OUT.gguf");
        if ((sym || asym) && strcasecmp(format, "int4") != 0) die_usage(cmd, "--sym/--asym only apply to --weight-format int4");
    }
    if (!(cp.ratio > 0.0f)) die_usage(cmd, "--ratio must be above 0");
    if (tandem_ftype_parse(format, !sym, &cp.ftype) != TANDEM_OK) die_usage(cmd, "%s", tandem_last_error());
    progress_bar bar;
    progress_init(&bar);
    cp.progress = progress_draw;
    cp.user = &bar;
    const double t0 = seconds_now();
    tandem_status st = quantize ? tandem_quantize_file(positional[0], out, &cp) : tandem_convert(positional[0], out, &cp);
    progress_end(&bar);
    if (st) die_status(cmd, st);
    fprintf(stderr, "tandem %s: wrote %s (%s) in %.1fs\n", cmd, out, tandem_ftype_name(cp.ftype), seconds_now() - t0);
    return 0;
}

/* ---- tandem perplexity / kld ---- */

static const char PERPLEXITY_HELP[] =
    "usage: tandem perplexity -m MODEL -f TEXT [--ctx N] [--chunks N] [-b N] [-t N] [--json]\n"
    "Perplexity of MODEL on the text. The text is tokenized and cut into chunks of --ctx tokens (a final\n"
    "partial chunk is dropped); each chunk is evaluated from an empty cache and only its second half is\n"
    "scored, as llama.cpp's llama-perplexity does.\n"
    "  -m, --model PATH         GGUF file or checkpoint folder\n"
    "  -f, --file FILE          the text ('-' = stdin)\n"
    "      --ctx N              chunk length in tokens (default 512)\n"
    "      --chunks N           score at most N chunks (default: all)\n"
    "  -b, --batch N            tokens per forward pass (default 64)\n"
    "  -t, --threads N          threads (default: all cores)\n"
    "      --json               print one JSON line\n";

static const char KLD_HELP[] =
    "usage: tandem kld -m MODEL --ref REF_MODEL -f TEXT [--ctx N] [--chunks N] [-b N] [-t N] [--json]\n"
    "Mean KL divergence KL(ref || model) of the next-token distributions, top-1 agreement and both\n"
    "perplexities, over the same chunks and scored positions as tandem perplexity.\n"
    "  -m, --model PATH         the (compressed) model\n"
    "      --ref PATH           the reference (full-precision) model, same vocabulary\n"
    "  -f, --file FILE          the text ('-' = stdin)\n"
    "      --ctx N, --chunks N, -b N, -t N, --json   as for tandem perplexity\n";

static int cmd_quality(int argc, char **argv, bool kld) {
    const char *cmd = kld ? "kld" : "perplexity";
    args a = {cmd, argc, argv, 0};
    const char *model_path = NULL, *ref_path = NULL, *text_path = NULL;
    bool json = false;
    int threads = 0;
    tandem_eval_params ep = tandem_eval_default_params();
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(kld ? KLD_HELP : PERPLEXITY_HELP, stdout);
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) model_path = take_value(&a, f);
        else if (kld && !strcmp(f, "--ref")) ref_path = take_value(&a, f);
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) text_path = take_value(&a, f);
        else if (!strcmp(f, "--ctx") || !strcmp(f, "-c")) ep.n_ctx = (int32_t)parse_int(&a, f, take_value(&a, f), 4, 1 << 20);
        else if (!strcmp(f, "--chunks")) ep.max_chunks = (int32_t)parse_int(&a, f, take_value(&a, f), 1, INT32_MAX);
        else if (!strcmp(f, "-b") || !strcmp(f, "--batch")) ep.n_batch = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 4096);
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) threads = (int)parse_int(&a, f, take_value(&a, f), 1, 1024);
        else if (!strcmp(f, "--json")) json = true;
        else die_usage(cmd, "unknown option '%s'", f);
    }
    if (!model_path) die_usage(cmd, "missing -m MODEL");
    if (kld && !ref_path) die_usage(cmd, "missing --ref REF_MODEL");
    if (!text_path) die_usage(cmd, "missing -f TEXT");
    size_t len;
    char *text = read_file(cmd, text_path, &len);
    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = threads;
    tandem_model *model = NULL, *ref = NULL;
    tandem_status st = tandem_model_load(model_path, &mp, &model);
    if (st) die_status(cmd, st);
    if (kld && (st = tandem_model_load(ref_path, &mp, &ref))) die_status(cmd, st);
    progress_bar bar;
    progress_init(&bar);
    ep.progress = progress_draw;
    ep.user = &bar;
    tandem_quality_result r;
    st = kld ? tandem_kld(model, ref, text, len, &ep, &r) : tandem_perplexity(model, text, len, &ep, &r);
    progress_end(&bar);
    if (st) die_status(cmd, st);
    if (json) {
        json_t *o = json_pack("{s:i, s:I, s:i, s:f, s:f}", "chunks", r.n_chunks, "scored_tokens", (json_int_t)r.n_scored,
                              "ctx", ep.n_ctx, "perplexity", r.perplexity, "nll_stderr", r.nll_stderr);
        if (kld) {
            json_object_set_new(o, "ref_perplexity", json_real(r.ref_perplexity));
            json_object_set_new(o, "kld_mean", json_real(r.kld_mean));
            json_object_set_new(o, "kld_stderr", json_real(r.kld_stderr));
            json_object_set_new(o, "kld_max", json_real(r.kld_max));
            json_object_set_new(o, "top1_agreement", json_real(r.top1_agreement));
        }
        print_json_line(o);
    } else {
        printf("chunks: %d of %d tokens, scored tokens: %lld\n", r.n_chunks, ep.n_ctx, (long long)r.n_scored);
        printf("perplexity: %.4f (mean NLL stderr %.4f)\n", r.perplexity, r.nll_stderr);
        if (kld) {
            printf("reference perplexity: %.4f\n", r.ref_perplexity);
            printf("mean KL divergence: %.6f ± %.6f nats (max %.6f)\n", r.kld_mean, r.kld_stderr, r.kld_max);
            printf("top-1 agreement: %.2f%%\n", 100.0 * r.top1_agreement);
        }
    }
    tandem_model_free(model);
    tandem_model_free(ref);
    free(text);
    return 0;
}

/* ---- dispatch ---- */

static const char MAIN_HELP[] =
    "usage: tandem COMMAND [options]   (tandem COMMAND --help for details)\n"
    "tandem runs Qwen3 models on the CPU.\n"
    "commands:\n"
    "  run          generate text from a prompt\n"
    "  tokenize     print the token ids of a text\n"
    "  detokenize   print the text of token ids\n"
    "  info         describe a model file or folder\n"
    "  convert      Hugging Face checkpoint folder -> GGUF (f16, q8_0, q4_k_m, ...)\n"
    "  quantize     re-quantize a GGUF\n"
    "  perplexity   perplexity of a model on a text\n"
    "  kld          KL divergence and top-1 agreement of a model against a reference\n";

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(MAIN_HELP, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(MAIN_HELP, stdout);
        return 0;
    }
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "detokenize")) return cmd_detokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "convert")) return cmd_convert_or_quantize(argc - 1, argv + 1, false);
    if (!strcmp(cmd, "quantize")) return cmd_convert_or_quantize(argc - 1, argv + 1, true);
    if (!strcmp(cmd, "perplexity")) return cmd_quality(argc - 1, argv + 1, false);
    if (!strcmp(cmd, "kld")) return cmd_quality(argc - 1, argv + 1, true);
    fprintf(stderr, "tandem: unknown command '%s'\n%s", cmd, MAIN_HELP);
    return EXIT_USAGE;
}
