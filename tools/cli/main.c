/* main.c — the `tandem` command line: run, tokenize, detokenize, info, and the dispatch to the other commands'
 * files. Sees only include/tandem.h (and jansson for --json output); shared helpers and exit codes in cli.h. */
#include <ctype.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "tandem.h"

/* ---- JSON output of run, tokenize and info ---- */

static json_t *ids_json(const int32_t *ids, size_t n) {
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, json_integer(ids[i]));
    return arr;
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
    "  -m, --model PATH         GGUF file or Hugging Face checkpoint folder, or a hub reference pulled with\n"
    "                           tandem pull (ORG/NAME, ORG/NAME:QUANT, ORG/NAME:FILE)\n"
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
    "      --exact              f32 activations for quantized weights (the reference path; default: 8-bit\n"
    "                           activations and integer dot products where the CPU has them)\n" KV_TYPE_HELP
    "      --json               after the text, print one JSON line with ids, text, finish_reason, timings\n"
    "      --chat               -p/-f is one user message, rendered with the model's chat template (and the\n"
    "                           assistant's opening) instead of raw text\n"
    "      --system TEXT        with --chat: a system message before it\n"
    "      --no-think           no reasoning: with --chat, enable_thinking=false; with --tools, no <think> block\n"
    "      --chat-template-file FILE  with --chat: this Jinja template instead of the model's\n"
    "      --image PATH         an image (JPEG, PNG, WebP) for a vision-language model (Qwen3-VL; repeatable):\n"
    "                           implies --chat, the user message being the images, then -p/-f's text\n"
    "      --image-min-tokens N, --image-max-tokens N  each image's token budget (32x32-pixel cells; default:\n"
    "                           the model's preprocessor_config.json, Qwen3-VL: 64 and 16384)\n"
    "      --mmproj FILE        a qwen3vl GGUF's vision tower (the mmproj GGUF tandem convert writes beside it)\n"
    "Ctrl-C stops at the next token and still prints the summary (finish: interrupted; exit code 130).\n"
    "speculative decoding (output identical to the target alone):\n"
    "  -md, --draft MODEL       a small model of the same vocabulary that proposes tokens\n"
    "      --draft-max N        most tokens proposed per target pass (default 8)\n"
    "      --draft-min N        drop draft-model proposals shorter than N (default 1)\n"
    "      --draft-p-min P      stop a draft when the draft's top probability is below P (default 0: off)\n"
    "      --draft-fixed        always propose --draft-max tokens (default: adapt to acceptance and cost)\n"
    "      --lookup N           propose the continuation of the last N-gram seen earlier (prompt lookup)\n"
    "constrained decoding (every token keeps the output in the grammar):\n"
    "      --json-schema FILE   the output is one JSON value valid under the JSON Schema in FILE\n"
    "      --json-object        the output is one JSON object\n"
    "      --tools FILE         tool calls in Qwen3's format for the OpenAI tools array in FILE: free text, then\n"
    "                           <tool_call>{\"name\": …, \"arguments\": …}</tool_call> valid for one of the tools\n"
    "      --tool-choice C      auto (default), none (no call), required (a call first), or a tool's name\n"
    "      --no-parallel-tool-calls  at most one call, then the end\n"
    "      --reasoning-open     the prompt ends inside <think>: the output starts as reasoning (with --tools)\n";

/* The streamed text's last byte, so that what follows it can start on a line of its own. */
static bool stream_to_stdout(const char *text, size_t len, void *user) {
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    if (len) *(char *)user = text[len - 1];
    return !cli_interrupted;
}

/* Whether stdout and stderr reach the same file, pipe or terminal (as with 2>&1). */
static bool same_output(void) {
    struct stat out, err;
    return fstat(STDOUT_FILENO, &out) == 0 && fstat(STDERR_FILENO, &err) == 0 && out.st_dev == err.st_dev &&
           out.st_ino == err.st_ino;
}

/* What speculative decoding did, as measured; the speedup only as the prediction it is, since the target alone
 * was not timed (tandem bench -md times both). */
static void print_spec_summary(const tandem_spec_stats *x, double decode_tps) {
    fprintf(stderr, "tandem: speculative: %.2f tok/s measured, %.2f tokens per target pass; ", decode_tps,
            x->mean_per_pass);
    if (x->n_drafted > 0)
        fprintf(stderr, "%d of %d proposed tokens accepted (%.0f%%)", x->n_accepted, x->n_drafted,
                100 * x->acceptance_rate);
    else
        fputs("no tokens proposed", stderr);
    if (x->n_rounds_draft_off > 0)
        fprintf(stderr, "; adaptive drafting switched the draft model off for %d of %d target passes (at its measured "
                "acceptance and cost it did not pay)", x->n_rounds_draft_off, x->n_rounds);
    fprintf(stderr, "\ntandem: speculative: predicted speedup %.2fx (E/(gamma*c+1), c = %.3f; a prediction: the target "
            "alone was not timed, 'tandem bench -md' measures it)\n", x->predicted_speedup, x->draft_target_ratio);
}

static int cmd_run(int argc, char **argv) {
    args a = {"run", argc, argv, 0};
    const char *model_path = NULL, *prompt = NULL, *prompt_file = NULL, *draft_path = NULL, *mmproj_path = NULL;
    const char *schema_file = NULL, *tools_file = NULL, *tool_choice = NULL;
    bool any_object = false;
    tandem_tool_grammar_params tp = tandem_tool_grammar_default_params();
    int max_tokens = -1, threads = 0, n_ctx = 0, n_batch = 64;
    tandem_spec_params spec = tandem_spec_default_params();
    bool json = false, ignore_eos = false, exact = false, chat = false;
    const char *template_path = NULL, *system = NULL;
    int enable_thinking = -1;
    tandem_type kv_type = TANDEM_TYPE_F16;
    const char **stops = calloc((size_t)argc, sizeof *stops);
    int n_stop = 0;
    const char **image_paths = calloc((size_t)argc, sizeof *image_paths);
    int n_images = 0;
    tandem_image_params ip = tandem_image_default_params();
    /* sampling overrides, applied over the model's defaults once it is loaded */
    sampling_flags sf = sampling_flags_unset();
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(RUN_HELP, stdout);
            free(stops);
            free(image_paths);
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) model_path = take_value(&a, f);
        else if (!strcmp(f, "-p") || !strcmp(f, "--prompt")) prompt = take_value(&a, f);
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) prompt_file = take_value(&a, f);
        else if (!strcmp(f, "-n") || !strcmp(f, "--max-tokens")) max_tokens = (int)parse_int(&a, f, take_value(&a, f), -1, INT_MAX);
        else if (parse_sampling_option(&a, f, &sf)) continue;
        else if (!strcmp(f, "--stop")) stops[n_stop++] = take_value(&a, f);
        else if (!strcmp(f, "--ignore-eos")) ignore_eos = true;
        else if (!strcmp(f, "-c") || !strcmp(f, "--ctx-size")) n_ctx = (int)parse_int(&a, f, take_value(&a, f), 1, 1 << 24);
        else if (!strcmp(f, "-b") || !strcmp(f, "--batch")) n_batch = (int)parse_int(&a, f, take_value(&a, f), 1, 4096);
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) threads = parse_threads(&a, f);
        else if (!strcmp(f, "--json")) json = true;
        else if (!strcmp(f, "--exact")) exact = true;
        else if (!strcmp(f, "--kv-type")) kv_type = parse_kv_type(&a, f);
        else if (!strcmp(f, "--chat")) chat = true;
        else if (!strcmp(f, "--chat-template-file")) template_path = take_value(&a, f);
        else if (!strcmp(f, "--system")) system = take_value(&a, f);
        else if (!strcmp(f, "--no-think")) enable_thinking = 0, tp.thinking = false;
        else if (!strcmp(f, "--image")) image_paths[n_images++] = take_value(&a, f), chat = true;
        else if (!strcmp(f, "--mmproj")) mmproj_path = take_value(&a, f);
        else if (!strcmp(f, "--image-min-tokens"))
            ip.min_tokens = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 1 << 20);
        else if (!strcmp(f, "--image-max-tokens"))
            ip.max_tokens = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 1 << 20);
        else if (!strcmp(f, "--json-schema")) schema_file = take_value(&a, f);
        else if (!strcmp(f, "--json-object")) any_object = true;
        else if (!strcmp(f, "--tools")) tools_file = take_value(&a, f);
        else if (!strcmp(f, "--tool-choice")) tool_choice = take_value(&a, f);
        else if (!strcmp(f, "--no-parallel-tool-calls")) tp.parallel_tool_calls = false;
        else if (!strcmp(f, "--reasoning-open")) tp.reasoning_open = true;
        else if (parse_spec_option(&a, f, &spec, &draft_path)) continue;
        else die_usage("run", "unknown option '%s'", f);
    }
    if (!model_path) die_usage("run", "missing -m MODEL");
    if ((schema_file != NULL) + any_object + (tools_file != NULL) > 1)
        die_usage("run", "give at most one of --json-schema, --json-object and --tools");
    if (tool_choice && !tools_file && strcmp(tool_choice, "none") != 0) die_usage("run", "--tool-choice needs --tools");
    if (!prompt == !prompt_file) die_usage("run", "give exactly one of -p TEXT or -f FILE");
    if (spec.draft_min > spec.draft_max) die_usage("run", "--draft-min %d exceeds --draft-max %d", spec.draft_min, spec.draft_max);
    if (!chat && (template_path || system || (enable_thinking >= 0 && !tools_file)))
        die_usage("run", "--chat-template-file, --system and --no-think need --chat (or --no-think --tools)");
    size_t prompt_len;
    char *prompt_buf = NULL;
    if (prompt_file) prompt = prompt_buf = read_file("run", prompt_file, &prompt_len);
    else prompt_len = strlen(prompt);

    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = threads;
    mp.mmproj_path = mmproj_path;
    tandem_model *model;
    tandem_status st = tandem_model_load(model_path, &mp, &model);
    if (st) die_status("run", st);
    mp.mmproj_path = NULL; /* the draft is a text model */
    const tandem_tokenizer *tok = tandem_model_tokenizer(model);
    tandem_image **images = n_images ? calloc((size_t)n_images, sizeof *images) : NULL;
    for (int i = 0; i < n_images; i++)
        if ((st = tandem_image_load(model, image_paths[i], &ip, &images[i]))) die_status("run", st);
    if (chat) {
        char *rendered = render_chat_prompt("run", tok, model_path, template_path, system, prompt, prompt_len,
                                            enable_thinking, n_images, &prompt_len);
        free(prompt_buf);
        prompt = prompt_buf = rendered;
    }
    int32_t *ids;
    size_t n_ids;
    if ((st = n_images ? tandem_vl_prompt(model, prompt, prompt_len, (const tandem_image *const *)images, n_images,
                                          &ids, &n_ids)
                       : tandem_tokenizer_encode(tok, prompt, prompt_len, true, &ids, &n_ids)))
        die_status("run", st);
    if (n_ids == 0) die_usage("run", "the prompt is empty");

    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.exact = exact;
    cp.kv_type = kv_type;
    tandem_ctx *ctx;
    if ((st = tandem_ctx_init(model, &cp, &ctx))) die_status("run", st);
    warn_beyond_trained_context("run", model, tandem_ctx_n_ctx(ctx));

    tandem_model *draft_model = NULL;
    tandem_ctx *draft_ctx = NULL;
    if (draft_path) {
        if ((st = tandem_model_load(draft_path, &mp, &draft_model))) die_status("run", st);
        if ((st = tandem_model_check_draft(model, draft_model))) die_status("run", st);
        cp.n_ctx = tandem_ctx_n_ctx(ctx);
        if ((st = tandem_ctx_init(draft_model, &cp, &draft_ctx))) die_status("run", st);
    }

    tandem_grammar *grammar = NULL;
    char *schema_text = NULL, *tools_text = NULL;
    if (schema_file || any_object) {
        size_t len;
        if (schema_file) schema_text = read_file("run", schema_file, &len);
        if ((st = tandem_grammar_from_json_schema(tok, schema_text, &grammar))) die_status("run", st);
    } else if (tools_file || tool_choice) {
        size_t len;
        if (tools_file) tp.tools_json = tools_text = read_file("run", tools_file, &len);
        if (!tool_choice || !strcmp(tool_choice, "auto")) tp.choice = TANDEM_TOOL_CHOICE_AUTO;
        else if (!strcmp(tool_choice, "none")) tp.choice = TANDEM_TOOL_CHOICE_NONE;
        else if (!strcmp(tool_choice, "required")) tp.choice = TANDEM_TOOL_CHOICE_REQUIRED;
        else tp.choice = TANDEM_TOOL_CHOICE_NAMED, tp.function_name = tool_choice;
        if ((st = tandem_grammar_from_tools(tok, &tp, &grammar))) die_status("run", st);
    }

    tandem_gen_params gp = tandem_gen_default_params(model);
    gp.grammar = grammar;
    gp.draft = draft_ctx;
    gp.spec = spec;
    tandem_sampler_params *sp = &gp.sampling;
    apply_sampling_flags(&sf, sp);
    gp.max_tokens = max_tokens;
    gp.stop = stops;
    gp.n_stop = n_stop;
    gp.ignore_eos = ignore_eos;
    gp.images = (const tandem_image *const *)images;
    gp.n_images = n_images;
    char last_streamed = '\0';  /* '\0': nothing streamed */
    gp.on_text = stream_to_stdout;
    gp.user = &last_streamed;

    cli_catch(SIGINT);
    tandem_gen_result r;
    if ((st = tandem_generate(ctx, ids, n_ids, &gp, &r))) die_status("run", st);
    /* the library's "aborted" is the callback's doing, which only Ctrl-C asks for here */
    const bool interrupted = r.finish == TANDEM_FINISH_ABORTED && cli_interrupted;
    const char *finish = interrupted ? "interrupted" : tandem_finish_name(r.finish);
    const tandem_timings *t = &r.timings;
    const double prefill_tps = t->prompt_ms > 0 ? t->n_prompt / (t->prompt_ms / 1e3) : 0;
    const double decode_tps = t->n_generated > 1 && t->decode_ms > 0 ? (t->n_generated - 1) / (t->decode_ms / 1e3) : 0;
    if (json) {
        if (last_streamed != '\n') putchar('\n');
        json_t *timings = json_pack("{s:f, s:f, s:f, s:i, s:i, s:f, s:f}", "prompt_ms", t->prompt_ms, "ttft_ms",
                                    t->ttft_ms, "decode_ms", t->decode_ms, "prompt_tokens", t->n_prompt,
                                    "generated_tokens", t->n_generated, "prefill_tokens_per_s", prefill_tps,
                                    "decode_tokens_per_s", decode_tps);
        json_t *out = json_object();
        json_object_set_new(out, "prompt_ids", ids_json(ids, n_ids));
        json_object_set_new(out, "generated_ids", ids_json(r.ids, r.n_ids));
        json_object_set_new(out, "text", text_json(r.text, r.text_len));
        json_object_set_new(out, "finish_reason", json_string(finish));
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
            json_object_set_new(json_object_get(out, "speculative"), "draft_off_rounds",
                                json_integer(x->n_rounds_draft_off));
        }
        print_json_line(out);
    } else {
        /* stdout is the text, byte for byte, when it is a file or a pipe; the summary still starts a line of its own
         * where it follows the text (2>&1, or both on a terminal), and a terminal's prompt after the text too */
        if (last_streamed && last_streamed != '\n') {
            if (same_output()) fputc('\n', stderr);
            else if (isatty(STDOUT_FILENO)) putchar('\n');
        }
        fprintf(stderr, "tandem: %d prompt tokens (%.1f tok/s), %d generated (%.2f tok/s), first token after %.0f ms, "
                "finish: %s\n", t->n_prompt, prefill_tps, t->n_generated, decode_tps, t->ttft_ms,
                finish);
        if (r.speculative) print_spec_summary(&r.spec_stats, decode_tps);
    }
    tandem_gen_result_free(&r);
    tandem_free(ids);
    tandem_ctx_free(draft_ctx);
    tandem_model_free(draft_model);
    tandem_ctx_free(ctx);
    tandem_grammar_free(grammar);
    for (int i = 0; i < n_images; i++) tandem_image_free(images[i]);
    free(images);
    free(image_paths);
    tandem_model_free(model);
    free(schema_text);
    free(tools_text);
    free(prompt_buf);
    free(stops);
    return interrupted ? 128 + SIGINT : 0;
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
    "Prints the text of the token ids (raw bytes, no newline added); at least one ID.\n";

static int cmd_detokenize(int argc, char **argv) {
    args a = {"detokenize", argc, argv, 0};
    const char *model_path = NULL;
    int32_t *ids = calloc((size_t)argc, sizeof *ids);
    size_t n = 0;
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(DETOKENIZE_HELP, stdout);
            free(ids);
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) model_path = take_value(&a, f);
        else if (f[0] == '-' && !(f[1] >= '0' && f[1] <= '9')) die_usage("detokenize", "unknown option '%s'", f);
        else ids[n++] = (int32_t)parse_int(&a, "ID", f, 0, INT32_MAX);
    }
    if (!model_path) die_usage("detokenize", "missing -m MODEL");
    if (n == 0) die_usage("detokenize", "no token ids given");
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
    "Prints the architecture, hyperparameters, tensor count and types, and a tokenizer summary; for a vision\n"
    "projector (mmproj GGUF) its tower: projector, blocks, widths, patch and merge sizes, DeepStack taps.\n"
    "Reads only headers: the weights are mapped, not read.\n"
    "      --tensors   list every tensor with its type and shape\n"
    "      --json      print one JSON object\n";

/* An mmproj GGUF: the vision tower it holds. */
static int info_mmproj(const char *path, bool json) {
    tandem_mmproj_info mi;
    tandem_status st = tandem_mmproj_info_read(path, &mi);
    if (st) die_status("info", st);
    json_t *types = json_object();
    for (int t = 0; t < TANDEM_TYPE_COUNT; t++)
        if (mi.tensors_per_type[t])
            json_object_set_new(types, tandem_type_name((tandem_type)t), json_integer(mi.tensors_per_type[t]));
    if (json) {
        json_t *ds = ids_json(mi.deepstack_layers, (size_t)mi.n_deepstack);
        print_json_line(
            json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o, s:I, s:I, s:i, s:o}",
                      "architecture", "clip", "projector", mi.projector, "depth", mi.depth, "hidden", mi.hidden,
                      "n_heads", mi.n_heads, "ffn_dim", mi.ffn_dim, "patch_size", mi.patch_size, "temporal_patch_size",
                      mi.temporal_patch_size, "merge_size", mi.merge_size, "image_size", mi.image_size, "n_positions",
                      mi.n_positions, "out_hidden", mi.out_hidden, "deepstack_layers", ds, "n_params",
                      (json_int_t)mi.n_params, "weight_bytes", (json_int_t)mi.weight_bytes, "n_tensors", mi.n_tensors,
                      "tensor_types", types));
        return 0;
    }
    printf("vision projector: %s (mmproj, clip)\n", mi.projector);
    printf("blocks:         %d, width %d, %d heads, MLP width %d\n", mi.depth, mi.hidden, mi.n_heads, mi.ffn_dim);
    printf("patches:        %d x %d pixels, %d frames each; %d x %d patches merged into one token\n", mi.patch_size,
           mi.patch_size, mi.temporal_patch_size, mi.merge_size, mi.merge_size);
    printf("positions:      %d learned (%d x %d pixel grid, interpolated to each image)\n", mi.n_positions,
           mi.image_size, mi.image_size);
    printf("output width:   %d (the text model's hidden size)\n", mi.out_hidden);
    printf("deepstack:      %d taps", mi.n_deepstack);
    for (int j = 0; j < mi.n_deepstack; j++) printf("%s%d", j ? ", " : " after blocks ", mi.deepstack_layers[j]);
    printf("\nparameters:     %lld (%.1f MiB as stored)\n", (long long)mi.n_params,
           (double)mi.weight_bytes / (1 << 20));
    printf("tensors:        %d (", mi.n_tensors);
    const char *key, *sep = "";
    json_t *v;
    json_object_foreach(types, key, v) {
        printf("%s%lld %s", sep, (long long)json_integer_value(v), key);
        sep = ", ";
    }
    printf(")\n");
    json_decref(types);
    return 0;
}

/* A GGUF tandem cannot load as a model (why: reason) but whose metadata describes one. */
static int info_metadata(json_t *meta, bool json, const char *reason) {
    json_object_set_new(meta, "loadable", json_false());
    json_object_set_new(meta, "reason", json_string(reason));
    if (json) {
        print_json_line(json_incref(meta));
        return 0;
    }
    printf("model:          %s (GGUF metadata only: %s)\n", json_string_value(json_object_get(meta, "architecture")),
           reason);
    printf("tensors:        %lld\n", (long long)json_integer_value(json_object_get(meta, "n_tensors")));
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(meta, "metadata"), key, v) {
        if (!strncmp(key, "tokenizer.", 10) && !json_is_string(v)) continue;
        if (!strcmp(key, "tokenizer.chat_template")) {
            printf("  %-44s (%zu characters)\n", key, strlen(json_string_value(v)));
            continue;
        }
        char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        printf("  %-44s %s\n", key, text ? text : "?");
        free(text);
    }
    return 0;
}

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
    /* a GGUF that is no model tandem loads: a vision projector (mmproj), or a qwen3vl file that fails to load (its
     * metadata shown with the reason) */
    char *meta_text = NULL;
    json_t *meta = tandem_gguf_metadata_json(model_path, &meta_text) == TANDEM_OK ? json_loads(meta_text, 0, NULL)
                                                                                  : NULL;
    tandem_free(meta_text);
    const char *arch = json_string_value(json_object_get(meta, "architecture"));
    if (arch && !strcmp(arch, "clip")) {
        json_decref(meta);
        return info_mmproj(model_path, json);
    }
    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = 1;
    tandem_model *model;
    tandem_status st = tandem_model_load(model_path, &mp, &model);
    if (st && arch && !strcmp(arch, "qwen3vl")) {
        const int code = info_metadata(meta, json, tandem_last_error());
        json_decref(meta);
        return code;
    }
    json_decref(meta);
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
        json_object_set_new(out, "vision", json_boolean(tandem_model_has_vision(model)));
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
        if (tandem_model_has_vision(model)) printf("vision:         a vision tower: images with --image\n");
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

/* ---- dispatch ---- */

static const char MAIN_HELP[] =
    "usage: tandem COMMAND [options]   (tandem COMMAND --help for details; tandem --version)\n"
    "tandem runs Qwen3 models on the CPU.\n"
    "commands:\n"
    "  run          generate text from a prompt\n"
    "  tokenize     print the token ids of a text\n"
    "  detokenize   print the text of token ids\n"
    "  info         describe a model file or folder\n"
    "  pull         download a model from the Hugging Face hub into the local cache (then -m ORG/NAME:QUANT)\n"
    "  chat         talk with a model through its chat template (terminal, or JSON lines on stdin)\n"
    "  serve        an OpenAI-compatible HTTP server (chat completions, streaming, tools, metrics)\n"
    "  template     print the prompt a model's chat template makes of a conversation\n"
    "  train        train a Qwen3 model on a text (full parameters, AdamW) and write a GGUF\n"
    "  prune        remove the least important block of layers (angular distance) and write a GGUF\n"
    "  synth        answer a file of prompts with the target (distillation data, speculative, resumable)\n"
    "  distill      fine-tune a student (e.g. a pruned draft) on synth's answers of a teacher\n"
    "  convert      Hugging Face checkpoint folder -> GGUF (f16, q8_0, q4_k_m, ...)\n"
    "  quantize     re-quantize a GGUF\n"
    "  perplexity   perplexity of a model on a text\n"
    "  kld          KL divergence and top-1 agreement of a model against a reference\n"
    "  bench        measure time to first token, prefill and decode speed, verification cost\n";

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
} COMMANDS[] = {
    {"run", cmd_run},
    {"tokenize", cmd_tokenize},
    {"detokenize", cmd_detokenize},
    {"info", cmd_info},
    {"train", cmd_train},
    {"prune", cmd_prune},
    {"bench", cmd_bench},
    {"convert", cmd_convert},
    {"quantize", cmd_quantize},
    {"perplexity", cmd_perplexity},
    {"kld", cmd_kld},
    {"synth", cmd_synth},
    {"distill", cmd_distill},
    {"template", cmd_template},
    {"chat", cmd_chat},
    {"pull", cmd_pull},
    {"serve", cmd_serve},
};

static int print_version(void) {
    printf("tandem %s\n", tandem_version());
    return 0;
}

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
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) return print_version();
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(cmd, COMMANDS[i].name)) {
            /* only right after the command: later, "--version" may be a value (tandem tokenize --text --version) */
            if (argc > 2 && !strcmp(argv[2], "--version")) return print_version();
            return COMMANDS[i].run(argc - 1, argv + 1);
        }
    fprintf(stderr, "tandem: unknown command '%s'\n%s", cmd, MAIN_HELP);
    return EXIT_USAGE;
}
