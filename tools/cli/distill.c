/* distill.c — `tandem distill`: fine-tunes a student (e.g. a pruned draft) on tandem synth's answers of a teacher,
 * cross-entropy + KL to the teacher's top-k logits; a progress line on a terminal. The work is tandem_distill. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"

static const char DISTILL_HELP[] =
    "usage: tandem distill --student DRAFT --teacher TARGET --data DATA.jsonl -o HEALED.gguf [--steps N] [--batch N]\n"
    "                      [--seq N] [--lr F] [--lr-min F] [--warmup N] [--weight-decay F] [--clip F]\n"
    "                      [--kl-weight W] [--kl-temp T] [--topk K] [--seed N] [--type T] [--force] [-t THREADS]\n"
    "                      [--checkpoint PATH [--checkpoint-every N] [--resume] [--stop-after N]]\n"
    "Fine-tunes the student on the teacher's answers written by tandem synth: loss = (1 - W) * cross-entropy on the\n"
    "answer tokens (the prompt is context only) + W * KL(teacher's top-k || student), with the top-k logits stored\n"
    "in DATA.jsonl (synth --topk) or, where absent, computed from the teacher now.\n"
    "  --student MODEL    the model to fine-tune (GGUF or HF folder); its tokenizer is written into the output\n"
    "  --teacher MODEL    the target; its vocabulary must be the student's\n"
    "  --data DATA.jsonl  tandem synth output\n"
    "  -o, --output PATH  the fine-tuned model (GGUF)\n"
    "  --steps N          optimiser steps (default 200)     --batch N   answers per step (default 8)\n"
    "  --seq N            tokens per answer incl. prompt; longer ones keep their end (default 256)\n"
    "  --lr F             peak learning rate (default 5e-4), warm-up then cosine decay to --lr-min (lr/10)\n"
    "  --kl-weight W      0..1 (default 0.5)   --kl-temp T (default 1)   --topk K online top-k (default 32)\n"
    "  --type T           f32, f16, bf16, q8_0, q4_0 (default: the student's, e.g. q8_0 for a Q8_0 student)\n"
    "  --force            overwrite the output\n"
    "  --checkpoint PATH  save weights, Adam moments and step every --checkpoint-every steps (default 100), on\n"
    "                     Ctrl-C and at the end\n"
    "  --resume           continue from --checkpoint if it exists (same data, --batch, --seq, --seed): the output\n"
    "                     is then bit-identical to an uninterrupted run\n"
    "  --stop-after N     stop after N steps of this invocation (checkpoint saved); go on later with --resume\n"
    "  -t, --threads N    threads (default: all cores)\n";

typedef struct distill_report {
    bool tty;
    long long stop_after, steps_this_run;  /* --stop-after: 0 = off */
    int64_t last_step;
    float first_loss, last_loss;
    double tokens_per_s;
} distill_report;

static bool distill_progress(const tandem_train_progress *p, void *user) {
    distill_report *r = user;
    if (isnan(r->first_loss)) r->first_loss = p->loss;
    r->last_loss = p->loss;
    r->tokens_per_s = p->tokens_per_s;
    r->last_step = p->step;
    r->steps_this_run++;
    if (r->tty) {
        fprintf(stderr, "\r\033[Kstep %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  ETA %.0fs", (long long)p->step,
                (long long)p->n_steps, p->loss, p->lr, p->tokens_per_s, p->eta_s);
        if (p->step == p->n_steps) fputc('\n', stderr);
    }
    if (p->step == 1 || p->step % 50 == 0 || p->step == p->n_steps) {
        if (r->tty) fputc('\n', stderr);
        printf("step %lld: loss %.4f\n", (long long)p->step, p->loss);
        fflush(stdout);
    }
    return !cli_interrupted && !(r->stop_after > 0 && r->steps_this_run >= r->stop_after);
}

int cmd_distill(int argc, char **argv) {
    args a = {"distill", argc, argv, 0};
    tandem_distill_params p = tandem_distill_default_params();
    long long stop_after = 0;
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(DISTILL_HELP, stdout);
            return 0;
        } else if (!strcmp(f, "--student")) p.student_path = take_value(&a, f);
        else if (!strcmp(f, "--teacher")) p.teacher_path = take_value(&a, f);
        else if (!strcmp(f, "--data")) p.data_path = take_value(&a, f);
        else if (!strcmp(f, "-o") || !strcmp(f, "--output")) p.output_path = take_value(&a, f);
        else if (!strcmp(f, "--steps")) p.steps = parse_int(&a, f, take_value(&a, f), 1, 1LL << 40);
        else if (!strcmp(f, "--batch")) p.batch = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 1 << 12);
        else if (!strcmp(f, "--seq")) p.seq = (int32_t)parse_int(&a, f, take_value(&a, f), 2, 1 << 16);
        else if (!strcmp(f, "--lr")) p.lr = (float)parse_float(&a, f, take_value(&a, f), 1e-12, 10);
        else if (!strcmp(f, "--lr-min")) p.lr_min = (float)parse_float(&a, f, take_value(&a, f), 0, 10);
        else if (!strcmp(f, "--warmup")) p.warmup = parse_int(&a, f, take_value(&a, f), 0, 1LL << 40);
        else if (!strcmp(f, "--weight-decay")) p.weight_decay = (float)parse_float(&a, f, take_value(&a, f), 0, 10);
        else if (!strcmp(f, "--clip")) p.clip = (float)parse_float(&a, f, take_value(&a, f), 0, 1e9);
        else if (!strcmp(f, "--kl-weight")) p.kl_weight = (float)parse_float(&a, f, take_value(&a, f), 0, 1);
        else if (!strcmp(f, "--kl-temp")) p.kl_temp = (float)parse_float(&a, f, take_value(&a, f), 1e-3, 100);
        else if (!strcmp(f, "--topk")) p.topk = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 256);
        else if (!strcmp(f, "--seed")) p.seed = parse_int(&a, f, take_value(&a, f), 0, 1LL << 62);
        else if (!strcmp(f, "--force")) p.force = true;
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) p.n_threads = parse_threads(&a, f);
        else if (!strcmp(f, "--type")) p.out_type = parse_weight_type(&a, f);
        else if (!strcmp(f, "--checkpoint")) p.checkpoint_path = take_value(&a, f);
        else if (!strcmp(f, "--checkpoint-every")) p.checkpoint_every = parse_int(&a, f, take_value(&a, f), 1, 1LL << 40);
        else if (!strcmp(f, "--resume")) p.resume = true;
        else if (!strcmp(f, "--stop-after")) stop_after = parse_int(&a, f, take_value(&a, f), 1, 1LL << 40);
        else die_usage("distill", "unknown option '%s'", f);
    }
    if (!p.student_path) die_usage("distill", "missing --student MODEL");
    if (!p.teacher_path) die_usage("distill", "missing --teacher MODEL");
    if (!p.data_path) die_usage("distill", "missing --data DATA.jsonl");
    if (!p.output_path) die_usage("distill", "missing -o HEALED.gguf");
    if (p.resume && !p.checkpoint_path) die_usage("distill", "--resume needs --checkpoint PATH");
    if (stop_after && !p.checkpoint_path) die_usage("distill", "--stop-after needs --checkpoint PATH");
    check_output_path("distill", "-o", p.output_path, false);
    if (p.checkpoint_path) check_output_path("distill", "--checkpoint", p.checkpoint_path, false);
    distill_report r = {isatty(fileno(stderr)), stop_after, 0, 0, NAN, NAN, 0};
    p.on_progress = distill_progress;
    p.user = &r;
    cli_catch(SIGINT);
    tandem_status st = tandem_distill(&p);
    if (st == TANDEM_ERR_ABORTED && stop_after > 0 && r.steps_this_run >= stop_after && !cli_interrupted) {
        printf("stopped after %lld steps: loss %.4f; checkpoint %s (continue with --resume)\n", r.steps_this_run,
               r.last_loss, p.checkpoint_path);
        return 0;
    }
    if (st == TANDEM_ERR_ABORTED && cli_interrupted && !p.checkpoint_path) die_interrupted("distill", r.last_step);
    if (st) die_status("distill", st);
    printf("distilled: loss %.4f -> %.4f, %.0f tokens/s; wrote %s\n", r.first_loss, r.last_loss, r.tokens_per_s,
           p.output_path);
    return 0;
}
