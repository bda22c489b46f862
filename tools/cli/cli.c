/* cli.c — what the command files of the tandem CLI share (declared in cli.h): error exits, argument parsing,
 * file reading, JSON output, interrupts, weight and KV types, the speculative decoding options. Sees only tandem.h. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "tandem.h"

/* ---- errors and usage ---- */

_Noreturn void die_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tandem %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see 'tandem %s --help')\n", cmd);
    va_end(ap);
    exit(EXIT_USAGE);
}

/* The library's errors name API fields ("raise tandem_ctx_params.n_ctx"): a server or Python user has no flags.
 * The CLI user sets those fields with flags, so die_status shows each phrase below as the flag that sets it
 * (whole identifiers only: ".lr" is not ".lr_min"). */
static const struct { const char *api, *cli; } FLAG_OF_FIELD[] = {
    {"tandem_ctx_params.n_ctx", "--ctx-size"},
    {"set tandem_convert_params.overwrite", "pass --force"},
    {"set tandem_train_params.force", "pass --force"},
    {"set tandem_prune_params.force", "pass --force"},
    {"set tandem_distill_params.force", "pass --force"},
    {"set tandem_synth_params.force", "pass --force"},
    {"set tandem_train_params.tokenizer_path", "pass --tokenizer"},
    {"lower batch or seq", "lower --batch or --seq"},  /* train_model_init: train's and distill's batch and seq */
    {"tandem_train_params.steps", "--steps"},
    {"tandem_train_params.batch", "--batch"},
    {"tandem_train_params.seq", "--seq"},
    {"tandem_train_params.accum", "--accum"},
    {"tandem_train_params.topk", "--topk"},
    {"tandem_train_params.kl_weight", "--kl-weight"},
    {"tandem_train_params.kl_temp", "--kl-temp"},
    {"tandem_train_params.warmup", "--warmup"},
    {"tandem_train_params.seed", "--seed"},
    {"tandem_train_params.val_every", "--val-every"},
    {"tandem_train_params.checkpoint_every", "--checkpoint-every"},
    {"tandem_train_params.lr", "--lr"},
    {"tandem_train_params.lr_min", "--lr-min"},
    {"tandem_train_params.weight_decay", "--weight-decay"},
    {"tandem_train_params.clip", "--clip"},
    {"tandem_train_params.val_frac", "--val-frac"},
    {"tandem_distill_params.steps", "--steps"},
    {"tandem_distill_params.batch", "--batch"},
    {"tandem_distill_params.seq", "--seq"},
    {"tandem_distill_params.topk", "--topk"},
    {"tandem_distill_params.lr", "--lr"},
};

static bool is_ident_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* msg with every FLAG_OF_FIELD phrase replaced, into out (cap ≥ 1; truncated if it must be). */
static const char *with_flags(const char *msg, char *out, size_t cap) {
    size_t n = 0;
    while (*msg && n + 1 < cap) {
        const char *cli = NULL;
        size_t len = 0;
        for (size_t i = 0; i < sizeof FLAG_OF_FIELD / sizeof *FLAG_OF_FIELD && !cli; i++) {
            len = strlen(FLAG_OF_FIELD[i].api);
            if (!strncmp(msg, FLAG_OF_FIELD[i].api, len) && !is_ident_char(msg[len])) cli = FLAG_OF_FIELD[i].cli;
        }
        if (cli) {
            n += (size_t)snprintf(out + n, cap - n, "%s", cli);
            if (n >= cap) n = cap - 1;
            msg += len;
        } else {
            out[n++] = *msg++;
        }
    }
    out[n] = '\0';
    return out;
}

_Noreturn void die_status(const char *cmd, tandem_status st) {
    char msg[4096];
    fprintf(stderr, "tandem %s: error: %s (%s)\n", cmd, with_flags(tandem_last_error(), msg, sizeof msg),
            tandem_status_name(st));
    exit(EXIT_FAILED);
}

/* ---- argument parsing: every flag takes its value from the next argument ---- */

const char *take_value(args *a, const char *flag) {
    if (a->i + 1 >= a->argc) die_usage(a->cmd, "option %s needs a value", flag);
    return a->argv[++a->i];
}

long long parse_int(args *a, const char *flag, const char *s, long long lo, long long hi) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) die_usage(a->cmd, "option %s: '%s' is not an integer", flag, s);
    if (v < lo || v > hi) die_usage(a->cmd, "option %s: %lld is outside %lld..%lld", flag, v, lo, hi);
    return v;
}

double parse_float(args *a, const char *flag, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) die_usage(a->cmd, "option %s: '%s' is not a number", flag, s);
    if (v < lo || v > hi) die_usage(a->cmd, "option %s: %g is outside %g..%g", flag, v, lo, hi);
    return v;
}

char *read_file(const char *cmd, const char *path, size_t *len) {
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

void print_json_line(json_t *obj) {
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

/* ---- interrupts, and the weight type of train and distill ---- */

volatile sig_atomic_t cli_interrupted;

static void on_interrupt(int sig) {
    (void)sig;
    cli_interrupted = 1;
}

void cli_catch(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sa.sa_flags = SA_RESTART;  /* as signal() installs it: reads and writes in progress carry on */
    sigaction(sig, &sa, NULL);
}

/* The flag's value as one of the n allowed types, matched case-insensitively against their names. */
static tandem_type parse_type_among(args *a, const char *flag, const tandem_type *allowed, size_t n) {
    const char *t = take_value(a, flag);
    char list[128] = "";
    for (size_t k = 0; k < n; k++) {
        const char *name = tandem_type_name(allowed[k]);
        if (!strcasecmp(name, t)) return allowed[k];
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%s", k ? ", " : "", name);
    }
    for (char *c = list; *c; c++) *c = (char)tolower((unsigned char)*c);
    die_usage(a->cmd, "%s: '%s' is not one of %s", flag, t, list);
}

tandem_type parse_weight_type(args *a, const char *flag) {
    static const tandem_type TYPES[] = {TANDEM_TYPE_F32, TANDEM_TYPE_F16, TANDEM_TYPE_BF16, TANDEM_TYPE_Q8_0,
                                        TANDEM_TYPE_Q4_0};
    return parse_type_among(a, flag, TYPES, sizeof TYPES / sizeof TYPES[0]);
}

tandem_type parse_kv_type(args *a, const char *flag) {
    static const tandem_type TYPES[] = {TANDEM_TYPE_F16, TANDEM_TYPE_F32};
    return parse_type_among(a, flag, TYPES, sizeof TYPES / sizeof TYPES[0]);
}

/* ---- speculative decoding options, shared by run and bench ---- */

bool parse_spec_option(args *a, const char *f, tandem_spec_params *spec, const char **draft_path) {
    if (!strcmp(f, "-md") || !strcmp(f, "--draft")) *draft_path = take_value(a, f);
    else if (!strcmp(f, "--draft-max")) spec->draft_max = (int)parse_int(a, f, take_value(a, f), 1, 64);
    else if (!strcmp(f, "--draft-min")) spec->draft_min = (int)parse_int(a, f, take_value(a, f), 0, 64);
    else if (!strcmp(f, "--draft-p-min")) spec->draft_p_min = (float)parse_float(a, f, take_value(a, f), 0, 1);
    else if (!strcmp(f, "--draft-fixed")) spec->adaptive = false;
    else if (!strcmp(f, "--lookup")) spec->lookup_ngram = (int)parse_int(a, f, take_value(a, f), 1, 16);
    else return false;
    return true;
}
