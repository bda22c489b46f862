/* train.c — `tandem train` (full-parameter training in C) and `tandem prune` (depth pruning by angular distance):
 * flags, the progress line, the distance table's CSV and PNG. Sees only include/tandem.h through cli.h. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "heatmap.h"
/* ---- train ---- */

static const char TRAIN_HELP[] =
    "usage: tandem train --config CONFIG.json --data TEXT --tokenizer TOK -o MODEL.gguf [options]\n"
    "Trains a Qwen3 model in full precision (AdamW, warm-up + cosine schedule, gradient clipping) on next-token\n"
    "prediction over TEXT and writes it as GGUF with the tokenizer and chat template, ready for 'tandem run'.\n"
    "  --config PATH          HF-style config.json (model dims); an optional \"train\" object there sets any of\n"
    "                         the options below by name (steps, batch, accum, seq, lr, lr_min, warmup, weight_decay,\n"
    "                         clip, seed, val_every, val_frac, checkpoint_every, topk, kl_weight, kl_temp);\n"
    "                         flags win over it\n"
    "  --data PATH            UTF-8 training text, or samples in a .jsonl file: one {\"prompt\": ..., \"completion\":\n"
    "                         ...} object a line (the loss counts the completion only, as for chat fine-tuning)\n"
    "                         or {\"text\": ...}; whole samples are packed into windows of --seq tokens\n"
    "  --tokenizer PATH       tokenizer.json folder/file or GGUF (default: the --init model)\n"
    "  -o, --output PATH      output GGUF (refused if it exists, unless --force)\n"
    "  --init MODEL           continue training the weights of MODEL (GGUF or HF folder) instead of a random init\n"
    "  --teacher MODEL        also learn MODEL's next-token distribution (online distillation, same vocabulary):\n"
    "                         loss = (1-w) x cross-entropy + w x KL(teacher top-k || student)\n"
    "  --kl-weight W          w (default 0.5)\n"
    "  --topk K               teacher logits kept per position (default 32)\n"
    "  --kl-temp T            temperature of both distributions in the KL (default 1)\n"
    "  --steps N              optimiser steps (default 1000)\n"
    "  --batch N              sequences per micro-batch (default 8)\n"
    "  --accum N              micro-batches per step, gradients averaged (default 1; batch x accum per step)\n"
    "  --seq N                tokens per sequence (default 128)\n"
    "  --lr F                 peak learning rate (default 1e-3)\n"
    "  --lr-min F             learning rate at the end of the cosine decay (default lr/10)\n"
    "  --warmup N             linear warm-up steps (default min(100, steps/10))\n"
    "  --weight-decay F       AdamW decoupled weight decay on matrices (default 0.1; never on norms)\n"
    "  --clip F               clip the global gradient norm to F (default 1; 0 = off)\n"
    "  --seed N               initialisation seed (default 1)\n"
    "  --val-every K          validation loss on the held-out split every K steps (default 0 = off)\n"
    "  --val-frac F           fraction of the text (its end) held out (default 0.1 with --val-every)\n"
    "  --checkpoint PATH      save weights, Adam moments, step and data position every --checkpoint-every steps\n"
    "  --checkpoint-every N   (default 100); also on Ctrl-C and at the end\n"
    "  --resume               continue from --checkpoint if it exists\n"
    "  --stop-after N         stop after N steps of this invocation (checkpoint saved); go on later with --resume\n"
    "  --type T               weight type of the output: f32 (default), f16, bf16, q8_0, q4_0\n"
    "  --force                overwrite the output\n"
    "  -t, --threads N        BLAS threads (default: all cores)\n"
    "A progress line (loss, lr, tokens/s, ETA) is drawn when stderr is a terminal; validation losses and a final\n"
    "summary are printed to stdout.\n";

typedef struct train_report {
    bool tty;
    long long stop_after, steps_this_run;  /* --stop-after: 0 = off */
    float first_loss, last_loss, last_val;
    double tokens_per_s;
} train_report;

static bool train_progress(const tandem_train_progress *p, void *user) {
    train_report *r = user;
    if (isnan(r->first_loss)) r->first_loss = p->loss;
    r->last_loss = p->loss;
    r->tokens_per_s = p->tokens_per_s;
    if (r->tty) {
        fprintf(stderr, "\r\033[Kstep %lld/%lld  loss %.4f  lr %.2e  |g| %.3f  %.0f tok/s  ETA %.0fs",
                (long long)p->step, (long long)p->n_steps, p->loss, p->lr, p->grad_norm, p->tokens_per_s, p->eta_s);
        if (p->step == p->n_steps) fputc('\n', stderr);
    }
    if (!isnan(p->val_loss)) {
        r->last_val = p->val_loss;
        if (r->tty) fputc('\n', stderr);
        printf("step %lld: train loss %.4f, val loss %.4f\n", (long long)p->step, p->loss, p->val_loss);
        fflush(stdout);
    }
    r->steps_this_run++;
    return !cli_interrupted && !(r->stop_after > 0 && r->steps_this_run >= r->stop_after);
}

int cmd_train(int argc, char **argv) {
    args a = {"train", argc, argv, 0};
    tandem_train_params p = tandem_train_default_params();
    long long stop_after = 0;
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(TRAIN_HELP, stdout);
            return 0;
        } else if (!strcmp(f, "--config")) p.config_path = take_value(&a, f);
        else if (!strcmp(f, "--data")) p.data_path = take_value(&a, f);
        else if (!strcmp(f, "--tokenizer")) p.tokenizer_path = take_value(&a, f);
        else if (!strcmp(f, "-o") || !strcmp(f, "--output")) p.output_path = take_value(&a, f);
        else if (!strcmp(f, "--init")) p.init_path = take_value(&a, f);
        else if (!strcmp(f, "--teacher")) p.teacher_path = take_value(&a, f);
        else if (!strcmp(f, "--kl-weight")) p.kl_weight = (float)parse_float(&a, f, take_value(&a, f), 0, 1);
        else if (!strcmp(f, "--topk")) p.topk = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 256);
        else if (!strcmp(f, "--kl-temp")) p.kl_temp = (float)parse_float(&a, f, take_value(&a, f), 1e-3, 100);
        else if (!strcmp(f, "--steps")) p.steps = parse_int(&a, f, take_value(&a, f), 1, 1LL << 40);
        else if (!strcmp(f, "--batch")) p.batch = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 1 << 16);
        else if (!strcmp(f, "--accum")) p.accum = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 1 << 16);
        else if (!strcmp(f, "--seq")) p.seq = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 1 << 20);
        else if (!strcmp(f, "--lr")) p.lr = (float)parse_float(&a, f, take_value(&a, f), 1e-12, 10);
        else if (!strcmp(f, "--lr-min")) p.lr_min = (float)parse_float(&a, f, take_value(&a, f), 0, 10);
        else if (!strcmp(f, "--warmup")) p.warmup = parse_int(&a, f, take_value(&a, f), 0, 1LL << 40);
        else if (!strcmp(f, "--weight-decay")) p.weight_decay = (float)parse_float(&a, f, take_value(&a, f), 0, 10);
        else if (!strcmp(f, "--clip")) p.clip = (float)parse_float(&a, f, take_value(&a, f), 0, 1e9);
        else if (!strcmp(f, "--seed")) p.seed = parse_int(&a, f, take_value(&a, f), 0, LLONG_MAX);
        else if (!strcmp(f, "--val-every")) p.val_every = parse_int(&a, f, take_value(&a, f), 0, 1LL << 40);
        else if (!strcmp(f, "--val-frac")) p.val_frac = (float)parse_float(&a, f, take_value(&a, f), 0, 0.9);
        else if (!strcmp(f, "--checkpoint")) p.checkpoint_path = take_value(&a, f);
        else if (!strcmp(f, "--checkpoint-every")) p.checkpoint_every = parse_int(&a, f, take_value(&a, f), 1, 1LL << 40);
        else if (!strcmp(f, "--resume")) p.resume = true;
        else if (!strcmp(f, "--stop-after")) stop_after = parse_int(&a, f, take_value(&a, f), 1, 1LL << 40);
        else if (!strcmp(f, "--force")) p.force = true;
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) p.n_threads = parse_threads(&a, f);
        else if (!strcmp(f, "--type")) p.out_type = parse_weight_type(&a, f);
        else die_usage("train", "unknown option '%s'", f);
    }
    if (!p.config_path && !p.init_path) die_usage("train", "missing --config CONFIG.json (or --init MODEL)");
    if (!p.data_path) die_usage("train", "missing --data TEXT");
    if (!p.output_path) die_usage("train", "missing -o MODEL.gguf");
    if (p.resume && !p.checkpoint_path) die_usage("train", "--resume needs --checkpoint PATH");
    if (stop_after && !p.checkpoint_path) die_usage("train", "--stop-after needs --checkpoint PATH");
    check_output_path("train", "-o", p.output_path, false);
    if (p.checkpoint_path) check_output_path("train", "--checkpoint", p.checkpoint_path, false);

    train_report r = {isatty(fileno(stderr)), stop_after, 0, NAN, NAN, NAN, 0};
    p.on_progress = train_progress;
    p.user = &r;
    cli_catch(SIGINT);
    tandem_status st = tandem_train(&p);
    if (st == TANDEM_ERR_ABORTED && stop_after > 0 && r.steps_this_run >= stop_after && !cli_interrupted) {
        printf("stopped after %lld steps: loss %.4f; checkpoint %s (continue with --resume)\n", r.steps_this_run,
               r.last_loss, p.checkpoint_path);
        return 0;
    }
    if (st == TANDEM_ERR_ABORTED && cli_interrupted && !p.checkpoint_path) die_interrupted("train", r.steps_this_run);
    if (st) die_status("train", st);
    printf("trained: loss %.4f -> %.4f", r.first_loss, r.last_loss);
    if (!isnan(r.last_val)) printf(", val loss %.4f", r.last_val);
    printf(", %.0f tokens/s; wrote %s\n", r.tokens_per_s, p.output_path);
    return 0;
}

/* ---- prune ---- */

static const char PRUNE_HELP[] =
    "usage: tandem prune -m MODEL -f CALIB.txt (--remove N | --layers a,b,...) -o OUT.gguf [options]\n"
    "       tandem prune -m MODEL -f CALIB.txt --analyze [--csv PATH]\n"
    "Depth pruning (Gromov et al., arXiv 2403.17887): runs the calibration text through the model, measures for every\n"
    "block of N consecutive layers from layer l the angular distance arccos(cos)/pi between the hidden state entering\n"
    "layer l and the one leaving layer l+N-1 (mean over tokens), removes the block with the smallest distance, and\n"
    "writes the shallower model (same weight types, tokenizer and template). Prints the calibration perplexity before\n"
    "and after: what `tandem perplexity --exact --ctx WINDOW` gives for the same text and model.\n"
    "  -m, --model PATH      GGUF file or HF checkpoint folder\n"
    "  -f, --file PATH       calibration text (UTF-8)\n"
    "  --remove N            remove the best block of N consecutive layers\n"
    "  --layers a,b,...      remove exactly these layers instead\n"
    "  -o, --output PATH     the pruned GGUF (refused if it exists, unless --force)\n"
    "  --analyze             print the whole distance table (rows l, columns N)\n"
    "  --csv PATH            write the table as CSV (l,n,distance)\n"
    "  --png PATH            write the table as a heat map (rows: layer l, columns: block size N; dark = small\n"
    "                        distance, legend 0..1); --csv and --png are refused if they exist, unless --force\n"
    "  --window N            tokens per forward pass (default 256)\n"
    "  --max-tokens N        calibration tokens used at most (default 8192)\n"
    "  -t, --threads N       threads (default: all cores)\n"
    "  --force               overwrite the output\n";

/* --layers a,b,...: the indices into layers (room for n_max); usage error otherwise. */
static int parse_layer_list(args *a, const char *flag, int32_t *layers, int n, int n_max) {
    const char *list = take_value(a, flag);
    for (const char *q = list; *q;) {
        char *end;
        errno = 0;
        long v = strtol(q, &end, 10);
        if (errno || end == q || v < 0 || v > (1 << 20) || (*end && *end != ','))
            die_usage(a->cmd, "%s: '%s' is not a comma-separated list of layer indices", flag, list);
        if (n >= n_max) die_usage(a->cmd, "%s: more than %d layers listed", flag, n_max);
        layers[n++] = (int32_t)v;
        q = *end ? end + 1 : end;
    }
    return n;
}

/* The table as CSV (l,n,distance) into o's temporary file; false (errno set) if writing failed. */
static bool write_csv(output_file *o, const tandem_prune_result *r) {
    const int L = r->n_layers;
    fprintf(o->f, "l,n,distance\n");
    for (int l = 0; l < L; l++)
        for (int n = 1; n <= L - l; n++) fprintf(o->f, "%d,%d,%.6f\n", l, n, r->distance[(size_t)l * L + n - 1]);
    return fflush(o->f) == 0 && !ferror(o->f);
}

int cmd_prune(int argc, char **argv) {
    args a = {"prune", argc, argv, 0};
    tandem_prune_params p = tandem_prune_default_params();
    bool analyze = false;
    const char *csv = NULL, *png = NULL;
    int32_t layers[256];  /* --layers: a model has at most a few hundred */
    int n_layers = 0;
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(PRUNE_HELP, stdout);
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) p.model_path = take_value(&a, f);
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) p.calib_path = take_value(&a, f);
        else if (!strcmp(f, "-o") || !strcmp(f, "--output")) p.output_path = take_value(&a, f);
        else if (!strcmp(f, "--remove")) p.n_remove = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 1 << 20);
        else if (!strcmp(f, "--layers")) n_layers = parse_layer_list(&a, f, layers, n_layers, 256);
        else if (!strcmp(f, "--analyze")) analyze = true;
        else if (!strcmp(f, "--csv")) csv = take_value(&a, f);
        else if (!strcmp(f, "--png")) png = take_value(&a, f);
        else if (!strcmp(f, "--window")) p.window = (int32_t)parse_int(&a, f, take_value(&a, f), 2, 1 << 16);
        else if (!strcmp(f, "--max-tokens")) p.max_tokens = (int32_t)parse_int(&a, f, take_value(&a, f), 2, INT_MAX);
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) p.n_threads = parse_threads(&a, f);
        else if (!strcmp(f, "--force")) p.force = true;
        else die_usage("prune", "unknown option '%s'", f);
    }
    if (!p.model_path) die_usage("prune", "missing -m MODEL");
    if (!p.calib_path) die_usage("prune", "missing -f CALIB.txt");
    if (n_layers && p.n_remove) die_usage("prune", "give --remove N or --layers, not both");
    if (p.output_path && !n_layers && !p.n_remove) die_usage("prune", "-o needs --remove N or --layers a,b,...");
    if (!p.output_path && !analyze && !csv && !png) die_usage("prune", "give -o OUT.gguf, --analyze, --csv or --png");
    const char *outputs[3] = {p.output_path, csv, png}, *flags[3] = {"-o", "--csv", "--png"};
    for (int i = 0; i < 3; i++)
        for (int k = i + 1; k < 3; k++)
            if (outputs[i] && outputs[k] && !strcmp(outputs[i], outputs[k]))
                die_usage("prune", "%s and %s name the same file '%s'", flags[i], flags[k], outputs[i]);
    if (n_layers) {
        p.layers = layers;
        p.n_layers_listed = n_layers;
    }
    /* every output checked before the calibration, not after it (the GGUF's existence is the library's to check) */
    for (int i = 0; i < 3; i++)
        if (outputs[i]) check_output_path("prune", flags[i], outputs[i], i > 0 && !p.force);
    tandem_prune_result r;
    tandem_status st = tandem_prune(&p, &r);
    if (st) die_status("prune", st);
    const int L = r.n_layers;
    if (analyze) {
        printf("angular distance d(l, n) over %lld tokens (rows: first layer l; columns: block size n)\n      ",
               (long long)r.n_tokens);
        for (int n = 1; n <= L; n++) printf(" n=%-4d", n);
        printf("\n");
        for (int l = 0; l < L; l++) {
            printf("l=%-3d ", l);
            for (int n = 1; n <= L - l; n++) printf(" %.4f", r.distance[(size_t)l * L + n - 1]);
            printf("\n");
        }
    }
    /* both files written to temporary names first and renamed only if both were: all or nothing */
    output_file out[2];
    int n_out = 0, failed = -1, err = 0;
    if (csv) {
        out[n_out] = output_open("prune", "--csv", csv);
        if (!write_csv(&out[n_out], &r) && failed < 0) failed = n_out, err = errno;
        n_out++;
    }
    if (png) {
        out[n_out] = output_open("prune", "--png", png);
        if (heatmap_write_png(out[n_out].f, r.distance, L, L, 32) != 0 && failed < 0) failed = n_out, err = errno;
        n_out++;
    }
    for (int i = 0; i < n_out && failed < 0; i++)  /* everything on disk before either is renamed */
        if (fflush(out[i].f) != 0 || ferror(out[i].f)) failed = i, err = errno;
    for (int i = 0; i < n_out; i++)
        if (!output_commit(&out[i], failed < 0) && failed < 0) failed = i, err = errno;
    if (failed >= 0) {
        fprintf(stderr, "tandem prune: error: %s %s: cannot write: %s\n", out[failed].path == csv ? "--csv" : "--png",
                out[failed].path, strerror(err ? err : EIO));
        tandem_prune_result_free(&r);
        return EXIT_FAILED;
    }
    printf("calibration: %lld tokens, perplexity %.4f", (long long)r.n_tokens, r.ppl_before);
    if (r.n_removed) {
        printf(" -> %.4f after removing layer%s", r.ppl_after, r.n_removed > 1 ? "s" : "");
        for (int i = 0; i < r.n_removed; i++) printf("%s%d", i ? "," : " ", r.removed[i]);
        printf(" (%d of %d left)", L - r.n_removed, L);
    }
    printf("\n");
    if (p.output_path) printf("wrote %s\n", p.output_path);
    tandem_prune_result_free(&r);
    return 0;
}
