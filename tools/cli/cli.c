/* cli.c — what the command files of the tandem CLI share (declared in cli.h): error exits, argument parsing, file
 * reading, output files, JSON output, interrupts, weight and KV types, the speculative options. Sees only tandem.h. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Library messages open with the API function ("tandem_tokenizer_load: PATH: reason", tandem.h); a CLI user called
 * no function, so the command's name stands in for it. */
static const char *without_api_name(const char *msg) {
    if (strncmp(msg, "tandem_", 7) != 0) return msg;
    const char *p = msg + 7;
    while (islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_') p++;
    return p[0] == ':' && p[1] == ' ' ? p + 2 : msg;
}

/* The library's errors name API fields ("raise tandem_ctx_params.n_ctx"): a server or Python user has no flags.
 * The CLI user sets those fields with flags, so die_status shows each phrase below as the flag that sets it
 * (whole identifiers only: ".lr" is not ".lr_min"). */
static const struct {
    const char *api, *cli;
} FLAG_OF_FIELD[] = {
    {"tandem_ctx_params.n_ctx", "--ctx-size"},
    {"tandem_ctx_params.kv_type", "--kv-type"},
    {"tandem_engine_params.kv_type", "--kv-type"},
    {"tandem_spec_params.draft_max", "--draft-max"},
    {"tandem_spec_params.draft_min", "--draft-min"},
    {"tandem_spec_params.draft_p_min", "--draft-p-min"},
    {"tandem_spec_params.lookup_ngram", "--lookup"},
    {"tandem_engine_params.n_slots", "--parallel"}, /* the engine's fields: tandem serve's flags */
    {"tandem_engine_params.n_ctx", "--ctx"},
    {"tandem_engine_params.kv_budget_bytes", "--kv-budget"},
    {"messages_json", "--messages"}, /* tandem_chat_render's inputs, as tandem template takes them */
    {"tools_json", "--tools"},
    {"extra_context_json", "--kwargs"},
    {"schema_json", "--json-schema"},
    {"function_name", "--tool-choice"},
    {"ignore_eos", "--ignore-eos"},
    {"set tandem_synth_params.chat_template_path", "pass --chat-template-file"},
    {"tandem_synth_params.raw", "--raw"},
    {"chat_template_path", "--chat-template-file"},
    {"mmproj_ftype", "--mmproj-type"},
    {"mmproj_path", "--mmproj"},
    {"tandem_image_params.min_tokens", "--image-min-tokens"},
    {"tandem_image_params.max_tokens", "--image-max-tokens"},
    {"set tandem_convert_params.overwrite", "pass --force"},
    {"set tandem_train_params.force", "pass --force"},
    {"set tandem_prune_params.force", "pass --force"},
    {"set tandem_distill_params.force", "pass --force"},
    {"set tandem_synth_params.force", "pass --force"},
    {"set tandem_train_params.tokenizer_path", "pass --tokenizer"},
    {"lower batch or seq", "lower --batch or --seq"}, /* train_model_init: train's and distill's batch and seq */
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
    {"tandem_distill_params.checkpoint_every", "--checkpoint-every"},
    {"tandem_download_params.token", "--token"},
    {"tandem_download_params.include", "--include"},
    {"tandem_download_params.n_parallel", "--parallel"},
    {"tandem_download_params.file", "the :FILE or :QUANT"},
    {"tandem_download_params.repo_id", "REPO_ID"},
    {" (or tandem_download)", ""}, /* a reference not cached: the message's `tandem pull` is the CLI's way */
};

/* Where one command takes a field otherwise than by the flag above: looked up first. */
static const struct {
    const char *cmd, *api, *cli;
} FLAG_OF_FIELD_IN[] = {
    {"chat", "messages_json", "the messages"}, /* tandem chat reads them from stdin lines or the terminal */
    {"convert", "mmproj_path", "--mmproj-out"},
};

static bool is_ident_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* msg with every FLAG_OF_FIELD phrase replaced, into out (cap ≥ 1; truncated if it must be). */
static const char *with_flags(const char *cmd, const char *msg, char *out, size_t cap) {
    size_t n = 0;
    while (*msg && n + 1 < cap) {
        const char *cli = NULL;
        size_t len = 0;
        for (size_t i = 0; i < sizeof FLAG_OF_FIELD_IN / sizeof *FLAG_OF_FIELD_IN && !cli; i++) {
            len = strlen(FLAG_OF_FIELD_IN[i].api);
            if (!strcmp(cmd, FLAG_OF_FIELD_IN[i].cmd) && !strncmp(msg, FLAG_OF_FIELD_IN[i].api, len) &&
                !is_ident_char(msg[len]))
                cli = FLAG_OF_FIELD_IN[i].cli;
        }
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

void report_status(const char *cmd, const char *where, tandem_status st) {
    char msg[4096];
    fprintf(stderr, "tandem %s: error: %s%s%s (%s)\n", cmd, where ? where : "", where ? ": " : "",
            with_flags(cmd, without_api_name(tandem_last_error()), msg, sizeof msg), tandem_status_name(st));
}

_Noreturn void die_status(const char *cmd, tandem_status st) {
    report_status(cmd, NULL, st);
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
    if (end == s || *end) die_usage(a->cmd, "option %s: '%s' is not an integer", flag, s);
    if (errno == ERANGE) die_usage(a->cmd, "option %s: %s is outside %lld..%lld", flag, s, lo, hi);
    if (v < lo || v > hi) die_usage(a->cmd, "option %s: %lld is outside %lld..%lld", flag, v, lo, hi);
    return v;
}

double parse_float(args *a, const char *flag, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || isnan(v)) die_usage(a->cmd, "option %s: '%s' is not a number", flag, s);
    /* ERANGE on underflow too (1e-400 becomes 0 or a denormal): only an overflow is out of range */
    if (isinf(v) || (errno == ERANGE && fabs(v) > 1))
        die_usage(a->cmd, "option %s: %s is outside %g..%g", flag, s, lo, hi);
    if (v < lo || v > hi) die_usage(a->cmd, "option %s: %g is outside %g..%g", flag, v, lo, hi);
    return v;
}

int parse_threads(args *a, const char *flag) {
    const int n = (int)parse_int(a, flag, take_value(a, flag), 1, 1024), cpus = tandem_cpu_count();
    if (n <= cpus) return n;
    fprintf(stderr, "tandem %s: warning: %s %d: only %d CPUs are online, using %d threads\n", a->cmd, flag, n, cpus,
            cpus);
    return cpus;
}

void warn_beyond_trained_context(const char *cmd, const tandem_model *model, int64_t n_ctx) {
    tandem_model_info info;
    tandem_model_get_info(model, &info);
    if (n_ctx > info.context_length)
        fprintf(stderr, "tandem %s: warning: a context of %lld tokens goes past the %d the model was trained on "
                "(context_length): text beyond that is usually poor\n", cmd, (long long)n_ctx, info.context_length);
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
    if (ferror(f)) {  /* errno is fread's: e.g. "Is a directory" */
        fprintf(stderr, "tandem %s: error: %s: read failed: %s\n", cmd, path, strerror(errno));
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

/* ---- output files: checked before the work, written to a temporary file and renamed ---- */

void check_output_path(const char *cmd, const char *flag, const char *path, bool refuse_existing) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "tandem %s: error: %s %s: is a folder (give a file name)\n", cmd, flag, path);
        exit(EXIT_FAILED);
    }
    if (refuse_existing && access(path, F_OK) == 0) {
        fprintf(stderr, "tandem %s: error: %s %s: already exists (use --force to overwrite)\n", cmd, flag, path);
        exit(EXIT_FAILED);
    }
    int fd;
    char *tmp;
    if (tandem_temp_file_create(path, &fd, &tmp) != TANDEM_OK) {
        const int e = errno;
        char *dir = strdup(path);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash) *(slash == dir ? slash + 1 : slash) = '\0';
        const char *folder = slash ? dir : ".";
        if (e == ENOENT)
            fprintf(stderr, "tandem %s: error: %s %s: cannot create the output there: the folder %s does not exist\n",
                    cmd, flag, path, folder);
        else
            fprintf(stderr, "tandem %s: error: %s %s: cannot create the output there (in the folder %s): %s\n", cmd,
                    flag, path, folder, strerror(e));
        free(dir);
        exit(EXIT_FAILED);
    }
    close(fd);
    unlink(tmp);
    tandem_free(tmp);
}

output_file output_open(const char *cmd, const char *flag, const char *path) {
    output_file o = {NULL, NULL, path};
    int fd;
    if (tandem_temp_file_create(path, &fd, &o.tmp) == TANDEM_OK && !(o.f = fdopen(fd, "wb"))) {
        close(fd);
        unlink(o.tmp);
    }
    if (!o.f) {
        fprintf(stderr, "tandem %s: error: %s %s: cannot write: %s\n", cmd, flag, path, strerror(errno));
        tandem_free(o.tmp);
        exit(EXIT_FAILED);
    }
    return o;
}

bool output_commit(output_file *o, bool ok) {
    int e = 0;
    if (ok && (ferror(o->f) || fflush(o->f) != 0)) e = errno ? errno : EIO;
    if (fclose(o->f) != 0 && ok && !e) e = errno ? errno : EIO;
    if (ok && !e && rename(o->tmp, o->path) != 0) e = errno;
    if (!ok || e) unlink(o->tmp);
    tandem_free(o->tmp);
    o->f = NULL, o->tmp = NULL;
    errno = e;
    return !ok || !e;
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
    /* SA_RESTART, as signal() installs it: reads and writes in progress carry on. SA_RESETHAND: a second Ctrl-C
     * ends the program at once, for when the next point to stop at is far away (a long prefill, a long step). */
    sa.sa_flags = SA_RESTART | SA_RESETHAND;
    sigaction(sig, &sa, NULL);
}

_Noreturn void die_interrupted(const char *cmd, long long step) {
    fprintf(stderr, "tandem %s: interrupted at step %lld; nothing saved (use --checkpoint FILE to be able to resume)\n",
            cmd, step);
    exit(EXIT_FAILED);
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
    static const tandem_type TYPES[] = {TANDEM_TYPE_F16, TANDEM_TYPE_F32, TANDEM_TYPE_Q8_0};
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

tandem_chat_template *load_chat_template(const char *cmd, const tandem_tokenizer *tok, const char *model_path,
                                         const char *template_path, bool with_tools) {
    size_t source_len = 0;
    char *source = NULL;
    const char *origin = template_path;
    if (template_path) {
        source = read_file(cmd, template_path, &source_len);
    } else {
        const char *t = tandem_tokenizer_chat_template_for(tok, with_tools);
        if (!t) {
            fprintf(stderr, "tandem %s: error: %s has no chat template; pass --chat-template-file FILE\n", cmd,
                    model_path);
            exit(EXIT_FAILED);
        }
        source = strdup(t);
        source_len = strlen(t);
        origin = model_path;
    }
    tandem_chat_template *t;
    tandem_status st = tandem_chat_template_parse(source, source_len, origin, &t);
    free(source);
    if (st) die_status(cmd, st);
    return t;
}

void set_template_special_tokens(tandem_chat_render_params *p, const tandem_tokenizer *tok) {
    p->special_tokens_json = tandem_tokenizer_special_tokens_json(tok);
}

char *render_chat_prompt(const char *cmd, const tandem_tokenizer *tok, const char *model_path,
                         const char *template_path, const char *system, const char *user, size_t user_len,
                         int enable_thinking, int n_images, size_t *len) {
    json_t *msgs = json_array();
    if (system) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", system));
    if (n_images > 0) {
        json_t *parts = json_array();
        for (int i = 0; i < n_images; i++) json_array_append_new(parts, json_pack("{s:s}", "type", "image"));
        json_array_append_new(parts, json_pack("{s:s, s:s%}", "type", "text", "text", user, user_len));
        json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", "user", "content", parts));
    } else {
        json_array_append_new(msgs, json_pack("{s:s, s:s%}", "role", "user", "content", user, user_len));
    }
    char *msgs_json = json_dumps(msgs, JSON_COMPACT);
    json_decref(msgs);
    if (!msgs_json) die_usage(cmd, "the prompt is not valid UTF-8 (the chat template takes text)");
    tandem_chat_template *t = load_chat_template(cmd, tok, model_path, template_path, false);
    tandem_chat_render_params p = tandem_chat_render_default_params();
    p.add_generation_prompt = true;
    p.enable_thinking = enable_thinking;
    set_template_special_tokens(&p, tok);
    char *text;
    tandem_status st = tandem_chat_render(t, msgs_json, strlen(msgs_json), &p, &text, len);
    if (st) die_status(cmd, st);
    tandem_chat_template_free(t);
    free(msgs_json);
    return text;
}

sampling_flags sampling_flags_unset(void) { return (sampling_flags){NAN, NAN, NAN, NAN, NAN, NAN, -1, LLONG_MIN, -1}; }

bool parse_sampling_option(args *a, const char *f, sampling_flags *s) {
    if (!strcmp(f, "--temp")) s->temp = parse_float(a, f, take_value(a, f), 0, 100);
    else if (!strcmp(f, "--top-k")) s->top_k = parse_int(a, f, take_value(a, f), 0, INT_MAX);
    else if (!strcmp(f, "--top-p")) s->top_p = parse_float(a, f, take_value(a, f), 1e-9, 1);
    else if (!strcmp(f, "--min-p")) s->min_p = parse_float(a, f, take_value(a, f), 0, 1);
    else if (!strcmp(f, "--repeat-penalty")) s->rep = parse_float(a, f, take_value(a, f), 1e-6, 100);
    else if (!strcmp(f, "--repeat-last-n")) s->rep_n = parse_int(a, f, take_value(a, f), -1, INT_MAX);
    else if (!strcmp(f, "--presence-penalty")) s->pres = parse_float(a, f, take_value(a, f), -100, 100);
    else if (!strcmp(f, "--frequency-penalty")) s->freq = parse_float(a, f, take_value(a, f), -100, 100);
    else if (!strcmp(f, "--seed")) s->seed = parse_int(a, f, take_value(a, f), 0, LLONG_MAX);
    else return false;
    return true;
}

void apply_sampling_flags(const sampling_flags *s, tandem_sampler_params *sp) {
    if (!isnan(s->temp)) sp->temperature = (float)s->temp;
    if (s->top_k >= 0) sp->top_k = (int32_t)s->top_k;
    if (!isnan(s->top_p)) sp->top_p = (float)s->top_p;
    if (!isnan(s->min_p)) sp->min_p = (float)s->min_p;
    if (!isnan(s->rep)) sp->repeat_penalty = (float)s->rep;
    if (s->rep_n != LLONG_MIN) sp->repeat_last_n = (int32_t)s->rep_n;
    if (!isnan(s->pres)) sp->presence_penalty = (float)s->pres;
    if (!isnan(s->freq)) sp->frequency_penalty = (float)s->freq;
    if (s->seed >= 0) sp->seed = (uint64_t)s->seed;
}
