/* convert.c — `tandem convert`, `tandem quantize`, `tandem perplexity` and `tandem kld`: flags in, library calls
 * out (src/convert, src/runtime/quality.c), plus the progress bar these long jobs draw on a terminal. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* ---- progress bar for long jobs (convert, quantize, perplexity, kld) ---- */

/* Drawn on stderr only when it is a terminal; pipes and files get nothing. Ctrl-C asks the library to stop
 * (the job then fails cleanly and leaves no output file) instead of killing the process mid-write. */
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
    cli_catch(SIGINT);
    cli_catch(SIGTERM);
}

static bool progress_draw(const char *stage, int64_t done, int64_t total, void *user) {
    progress_bar *b = user;
    if (cli_interrupted) return false;
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
    "                      [--chat-template-file FILE] [--mmproj-out FILE] [--mmproj-type TYPE]\n"
    "Converts a Hugging Face Qwen3 checkpoint folder into one GGUF (tokenizer and chat template inside),\n"
    "with llama.cpp's tensor names, metadata and per-tensor types. A Qwen3-VL folder gives two files, as\n"
    "llama.cpp uses them: the text model (OUT.gguf, architecture qwen3vl) and the vision tower (an mmproj GGUF).\n"
    "  -o, --output FILE        the GGUF to write (written to a temporary file, renamed at the end)\n"
    "      --weight-format F    f32, f16 (default), bf16, int8 (Q8_0), int4 (Q4_1 or with --sym Q4_0), nf4 (IQ4_NL),\n"
    "                           q4_k_m, q5_k_m, q6_k; also any GGUF type name tandem quantize takes\n"
    "      --sym / --asym       int4 only: symmetric Q4_0 / asymmetric Q4_1 (default --asym)\n"
    "      --ratio R            keep only R of the layers' weights at the chosen 2-6 bit format, the most\n"
    "                           sensitive rest (1-R) in Q8_0 (default 1)\n"
    "      --force              overwrite OUT if it exists\n"
    "      --chat-template-file F  store the Jinja template in F as the chat template, instead of the folder's\n"
    "      --mmproj-out FILE    Qwen3-VL: where the vision tower goes (default: mmproj-OUT.gguf beside OUT.gguf)\n"
    "      --mmproj-type T      Qwen3-VL: the vision tower's matrices f16 (default), bf16, q8_0 or f32\n"
    "  -t, --threads N          threads (default: all cores)\n";

static const char QUANTIZE_HELP[] =
    "usage: tandem quantize IN.gguf OUT.gguf TYPE [--ratio R] [--force] [-t N]\n"
    "Re-quantizes a Qwen3 GGUF. TYPE: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 IQ4_NL Q2_K Q3_K Q4_K Q5_K Q6_K\n"
    "Q4_K_M Q5_K_M (Q2_K..Q5_K alone: every weight that type; Q4_K_M, Q5_K_M, Q6_K and the 32-block types use\n"
    "llama-quantize's mixes). Metadata is copied; general.file_type is updated.\n"
    "      --ratio R            as for tandem convert\n"
    "      --force              overwrite OUT.gguf if it exists\n"
    "  -t, --threads N          threads (default: all cores)\n";

static int convert_or_quantize(int argc, char **argv, bool quantize) {
    const char *cmd = quantize ? "quantize" : "convert";
    args a = {cmd, argc, argv, 0};
    const char *positional[3] = {NULL, NULL, NULL}, *out = NULL, *format = quantize ? NULL : "f16",
               *mmproj_format = NULL;
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
        else if (!quantize && !strcmp(f, "--chat-template-file")) cp.chat_template_path = take_value(&a, f);
        else if (!quantize && !strcmp(f, "--mmproj-out")) cp.mmproj_path = take_value(&a, f);
        else if (!quantize && !strcmp(f, "--mmproj-type")) mmproj_format = take_value(&a, f);
        else if (!strcmp(f, "--ratio")) cp.ratio = (float)parse_float(&a, f, take_value(&a, f), 0.0, 1.0);
        else if (!strcmp(f, "--force")) cp.overwrite = true;
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) cp.n_threads = parse_threads(&a, f);
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
    if (mmproj_format && tandem_ftype_parse(mmproj_format, false, &cp.mmproj_ftype) != TANDEM_OK)
        die_usage(cmd, "--mmproj-type: %s", tandem_last_error());
    check_output_path(cmd, quantize ? "OUT.gguf" : "-o", out, false);
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
    "usage: tandem perplexity -m MODEL -f TEXT [--ctx N] [--chunks N] [-b N] [-t N] [--exact] [--kv-type T]\n"
    "                         [--json]\n"
    "Perplexity of MODEL on the text. The text is tokenized and cut into chunks of --ctx tokens (a final\n"
    "partial chunk is dropped); each chunk is evaluated from an empty cache and only its second half is\n"
    "scored, as llama.cpp's llama-perplexity does.\n"
    "  -m, --model PATH         GGUF file or checkpoint folder\n"
    "  -f, --file FILE          the text ('-' = stdin)\n"
    "      --ctx N              chunk length in tokens (default 512)\n"
    "      --chunks N           score at most N chunks (default: all)\n"
    "  -b, --batch N            tokens per forward pass (default 64)\n"
    "  -t, --threads N          threads (default: all cores)\n"
    "      --exact              f32 activations for quantized weights (default: 8-bit, as tandem run)\n"
    KV_TYPE_HELP
    "      --json               print one JSON line\n";

static const char KLD_HELP[] =
    "usage: tandem kld -m MODEL --ref REF_MODEL -f TEXT [--ctx N] [--chunks N] [-b N] [-t N] [--exact]\n"
    "                  [--kv-type T] [--json]\n"
    "Mean KL divergence KL(ref || model) of the next-token distributions, top-1 agreement and both\n"
    "perplexities, over the same chunks and scored positions as tandem perplexity.\n"
    "  -m, --model PATH         the (compressed) model\n"
    "      --ref PATH           the reference (full-precision) model, same vocabulary\n"
    "  -f, --file FILE          the text ('-' = stdin)\n"
    "      --ctx N, --chunks N, -b N, -t N, --exact, --kv-type T, --json   as for tandem perplexity (both\n"
    "                           models evaluate with the same KV cache type)\n";

static int quality(int argc, char **argv, bool kld) {
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
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) threads = parse_threads(&a, f);
        else if (!strcmp(f, "--json")) json = true;
        else if (!strcmp(f, "--exact")) ep.exact = true;
        else if (!strcmp(f, "--kv-type")) ep.kv_type = parse_kv_type(&a, f);
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

int cmd_convert(int argc, char **argv) { return convert_or_quantize(argc, argv, false); }
int cmd_quantize(int argc, char **argv) { return convert_or_quantize(argc, argv, true); }
int cmd_perplexity(int argc, char **argv) { return quality(argc, argv, false); }
int cmd_kld(int argc, char **argv) { return quality(argc, argv, true); }
