/* cli.h — what the command files of the tandem CLI share: exit codes, argument parsing, error exits,
 * file reading, output files and JSON output (defined in cli.c), and each command's entry point. */
#ifndef TANDEM_CLI_H
#define TANDEM_CLI_H

#include <jansson.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>

#include "tandem.h"

enum { EXIT_FAILED = 1, EXIT_USAGE = 2 };

/* The command's arguments and the index of the one being parsed. */
typedef struct args {
    const char *cmd;
    int argc;
    char **argv;
    int i;
} args;

_Noreturn void die_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
_Noreturn void die_status(const char *cmd, tandem_status st);
/* die_status's message without the exit; where (may be NULL) comes before it ("stdin line 3"). */
void report_status(const char *cmd, const char *where, tandem_status st);
/* Every flag takes its value from the next argument. */
const char *take_value(args *a, const char *flag);
long long parse_int(args *a, const char *flag, const char *s, long long lo, long long hi);
double parse_float(args *a, const char *flag, const char *s, double lo, double hi);
/* -t/--threads N: 1..1024; more than the CPUs online only slow evaluation down, so that many are used instead,
 * with a warning. */
int parse_threads(args *a, const char *flag);
/* Warns when a context of n_ctx tokens goes past the model's trained context (its context_length). */
void warn_beyond_trained_context(const char *cmd, const tandem_model *model, int64_t n_ctx);
/* The whole file ('-' = stdin), NUL-terminated; exits with a message naming the file on failure. */
char *read_file(const char *cmd, const char *path, size_t *len);
/* Prints obj as one ASCII line and releases it. */
void print_json_line(json_t *obj);

/* Before the work, not after it: exits with a message naming the flag and path unless a file can be created at
 * path (its folder exists and is writable, path is not a folder); with refuse_existing, also if path exists (the
 * command's --force lifts that). Creates and removes a temporary file next to path; path itself is untouched. */
void check_output_path(const char *cmd, const char *flag, const char *path, bool refuse_existing);
/* Written to a temporary file next to path (mode 0666 less the umask), renamed onto path by output_commit, so path
 * only ever holds a complete file. output_open exits with a message naming the flag on failure. */
typedef struct output_file {
    FILE *f;
    char *tmp;
    const char *path;
} output_file;
output_file output_open(const char *cmd, const char *flag, const char *path);
/* Closes and renames (ok) or closes and removes the temporary file (!ok); false, with errno, if ok but it failed. */
bool output_commit(output_file *o, bool ok);

/* Set when a signal cli_catch installed arrives: long jobs then ask the library to stop (checkpoint saved,
 * no half-written output, what was measured printed) instead of dying mid-write. Once: a second signal kills. */
extern volatile sig_atomic_t cli_interrupted;
void cli_catch(int sig);
/* The long job stopped on Ctrl-C after `step` steps without a checkpoint: says nothing was saved and how to keep
 * the work next time, and exits 1. */
_Noreturn void die_interrupted(const char *cmd, long long step);
/* The chat template cmd renders with: template_path's file when given, else the model's (its "tool_use" template
 * when with_tools and it has one: transformers' choice). Exits with a message when there is none. */
tandem_chat_template *load_chat_template(const char *cmd, const tandem_tokenizer *tok, const char *model_path,
                                         const char *template_path, bool with_tools);
/* p's special tokens (bos_token, eos_token, pad_token, ...): the tokenizer's, as transformers passes them to
 * templates (tok NULL: none). */
void set_template_special_tokens(tandem_chat_render_params *p, const tandem_tokenizer *tok);
/* The prompt a chat template makes of one user turn (and a system turn when system is not NULL), with the
 * generation prompt: the model's template (tok's), or the Jinja file template_path when not NULL.
 * enable_thinking: -1 = the template's default, 0/1. n_images > 0: the user turn is content parts, that many
 * {"type": "image"} then the text (as transformers' processors are given images). Malloc'd; exits with a message on
 * failure. */
char *render_chat_prompt(const char *cmd, const tandem_tokenizer *tok, const char *model_path,
                         const char *template_path, const char *system, const char *user, size_t user_len,
                         int enable_thinking, int n_images, size_t *len);
/* --type T of train and distill: f32, f16, bf16, q8_0 or q4_0 (case-insensitive); usage error otherwise. */
tandem_type parse_weight_type(args *a, const char *flag);

/* --kv-type T of run, bench, perplexity and kld: f16 or f32 (case-insensitive); usage error otherwise. */
tandem_type parse_kv_type(args *a, const char *flag);
#define KV_TYPE_HELP                                                                                     \
    "      --kv-type T          KV cache keys and values: f16 (default; half the memory and attention\n" \
    "                           reads), q8_0 (0.53 of f16's bytes; head_dim a multiple of 32) or f32\n"  \
    "                           (--exact implies f32)\n"

/* -md/--draft, --draft-max, --draft-min, --draft-p-min, --draft-fixed, --lookup: true if f was one. */
bool parse_spec_option(args *a, const char *f, tandem_spec_params *spec, const char **draft_path);

/* The sampling flags of run and chat as given (unset: NaN, or -1 / LLONG_MIN for the integers); the model's
 * defaults (tandem_gen_default_params) keep whatever is unset. */
typedef struct sampling_flags {
    double temp, top_p, min_p, rep, pres, freq;
    long long top_k, rep_n, seed;
} sampling_flags;
sampling_flags sampling_flags_unset(void);
/* --temp, --top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n, --presence-penalty, --frequency-penalty,
 * --seed: true if f was one. */
bool parse_sampling_option(args *a, const char *f, sampling_flags *s);
void apply_sampling_flags(const sampling_flags *s, tandem_sampler_params *sp);

int cmd_bench(int argc, char **argv);
int cmd_convert(int argc, char **argv);     /* convert.c */
int cmd_quantize(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_kld(int argc, char **argv);
int cmd_train(int argc, char **argv);    /* train.c */
int cmd_prune(int argc, char **argv);
int cmd_synth(int argc, char **argv);    /* synth.c */
int cmd_distill(int argc, char **argv);  /* distill.c */
int cmd_template(int argc, char **argv); /* template.c */
int cmd_chat(int argc, char **argv);     /* chat.c */
int cmd_pull(int argc, char **argv);     /* pull.c */
int cmd_serve(int argc, char **argv);    /* serve.c */

#endif
