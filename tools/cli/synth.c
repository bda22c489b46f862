/* synth.c — `tandem synth`: the target answers a JSONL file of prompts (speculative decoding with -md), one JSON
 * line per answer, resumable; a progress bar on a terminal. The work is tandem_synth in the library. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char SYNTH_HELP[] =
    "usage: tandem synth -m TARGET [-md DRAFT] -f PROMPTS.jsonl -o DATA.jsonl [-n N] [--topk K] [--raw] [--force]\n"
    "                    [-c CTX] [-t THREADS] [--draft-max N] [--draft-min N] [--draft-p-min P] [--draft-fixed]\n"
    "                    [--lookup N] [--chat-template-file FILE] [--no-think | --think]\n"
    "The target answers every prompt greedily (distillation data for tandem distill), with speculative decoding\n"
    "when a draft (-md) or --lookup is given (the output is the target's either way).\n"
    "  -m, --model TARGET   GGUF file or HF folder\n"
    "  -md, --draft DRAFT   a draft model with the same vocabulary\n"
    "  -f, --file PROMPTS   JSONL: one {\"prompt\": \"...\"} object or JSON string per line (blank lines skipped)\n"
    "  -o, --output DATA    JSONL, one line per answer: index, prompt, prompt_ids, ids, text, finish\n"
    "                       [, top_ids, top_logits]; appended and fsync'd line by line\n"
    "  -n, --max-tokens N   most tokens per answer (default 256)\n"
    "  --topk K             also store the target's K largest logits per generated token (1..256)\n"
    "  --raw                continue the prompt as plain text (base models); default: the chat format, each\n"
    "                       prompt one user message rendered by the model's chat template (for Qwen3:\n"
    "                       <|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n)\n"
    "  --chat-template-file F  render prompts with the Jinja template in F instead of the model's\n"
    "  --no-think / --think enable_thinking=false / true for the template (default: not passed)\n"
    "  --force              start over instead of resuming an existing DATA.jsonl\n"
    "  -c, --ctx-size N     context (default: the model's, at most 4096)\n"
    "  -t, --threads N      threads (default: all cores)\n"
    "An existing DATA.jsonl is resumed: prompts whose index it holds are skipped, a half-written last line is\n"
    "dropped. Only synth's own file is resumed (every line one of its answers for these prompts); any other file\n"
    "is refused and left as it was, unless --force; an empty file is used. A progress bar is drawn when stderr\n"
    "is a terminal; a summary goes to stdout.\n";

static bool synth_progress(const tandem_synth_progress *p, void *user) {
    if (*(const bool *)user) {
        const int width = 30, filled = p->total ? (int)((long long)width * p->done / p->total) : width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
        bar[width] = '\0';
        const int left = p->total - p->done, fresh = p->done - p->skipped;
        const double eta = fresh > 0 ? p->elapsed_s / fresh * left : 0;
        fprintf(stderr, "\r\033[K[%s] %d/%d prompts  %.1f tok/s  ETA %.0fs", bar, p->done, p->total, p->tokens_per_s,
                eta);
        if (p->done == p->total) fputc('\n', stderr);
    }
    return !cli_interrupted;
}

int cmd_synth(int argc, char **argv) {
    args a = {"synth", argc, argv, 0};
    tandem_synth_params p = tandem_synth_default_params();
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(SYNTH_HELP, stdout);
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) p.model_path = take_value(&a, f);
        else if (!strcmp(f, "-md") || !strcmp(f, "--draft")) p.draft_path = take_value(&a, f);
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) p.prompts_path = take_value(&a, f);
        else if (!strcmp(f, "-o") || !strcmp(f, "--output")) p.output_path = take_value(&a, f);
        else if (!strcmp(f, "-n") || !strcmp(f, "--max-tokens")) p.max_tokens = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 1 << 20);
        else if (!strcmp(f, "--topk")) p.topk = (int32_t)parse_int(&a, f, take_value(&a, f), 1, TANDEM_SYNTH_MAX_TOPK);
        else if (!strcmp(f, "--raw")) p.raw = true;
        else if (!strcmp(f, "--chat-template-file")) p.chat_template_path = take_value(&a, f);
        else if (!strcmp(f, "--no-think")) p.enable_thinking = 0;
        else if (!strcmp(f, "--think")) p.enable_thinking = 1;
        else if (!strcmp(f, "--force")) p.force = true;
        else if (!strcmp(f, "-c") || !strcmp(f, "--ctx-size")) p.n_ctx = (int32_t)parse_int(&a, f, take_value(&a, f), 2, 1 << 24);
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) p.n_threads = parse_threads(&a, f);
        else if (!strcmp(f, "--draft-max")) p.spec.draft_max = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 64);
        else if (!strcmp(f, "--draft-min")) p.spec.draft_min = (int32_t)parse_int(&a, f, take_value(&a, f), 0, 64);
        else if (!strcmp(f, "--draft-p-min")) p.spec.draft_p_min = (float)parse_float(&a, f, take_value(&a, f), 0, 1);
        else if (!strcmp(f, "--draft-fixed")) p.spec.adaptive = false;
        else if (!strcmp(f, "--lookup")) p.spec.lookup_ngram = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 16);
        else die_usage("synth", "unknown option '%s'", f);
    }
    if (!p.model_path) die_usage("synth", "missing -m TARGET");
    if (!p.prompts_path) die_usage("synth", "missing -f PROMPTS.jsonl");
    if (!p.output_path) die_usage("synth", "missing -o DATA.jsonl");
    if (p.spec.draft_min > p.spec.draft_max)
        die_usage("synth", "--draft-min %d exceeds --draft-max %d", p.spec.draft_min, p.spec.draft_max);
    check_output_path("synth", "-o", p.output_path, false);
    bool tty = isatty(fileno(stderr));
    p.on_progress = synth_progress;
    p.user = &tty;
    cli_catch(SIGINT);
    tandem_synth_result r;
    tandem_status st = tandem_synth(&p, &r);
    if (st) die_status("synth", st);
    printf("synth: %d prompts, %d already done, %d answered (%lld tokens)", r.n_prompts, r.n_skipped, r.n_written,
           (long long)r.n_tokens);
    if (r.spec.n_rounds > 0)
        printf(", speculative: %.0f%% of %d drafted tokens accepted, %.2f tokens per target pass",
               100 * r.spec.acceptance_rate, r.spec.n_drafted, r.spec.mean_per_pass);
    printf("; wrote %s\n", p.output_path);
    return 0;
}
