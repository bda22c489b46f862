/* chat.c — `tandem chat`: a conversation with the model's chat template, interactive on a terminal (streamed,
 * reasoning dimmed, tool calls shown, /commands) or one JSON conversation per stdin line; each turn reuses the KV cache. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "tandem.h"

static const char CHAT_HELP[] =
    "usage: tandem chat -m MODEL [--mmproj FILE] [-md DRAFT] [--system TEXT] [--no-think] [--hide-think] [--tools "
    "TOOLS.json]\n"
    "                   [--chat-template-file FILE] [-n MAX_TOKENS] [sampling options] [-c CTX] [-t THREADS]\n"
    "A conversation with the model, rendered with its chat template. Each turn evaluates only the tokens after what\n"
    "the KV cache already holds from the previous turns.\n"
    "On a terminal: each line is a user turn; the answer streams, reasoning dimmed, tool calls as\n"
    "[tool call NAME(ARGS)]. Commands: /clear, /think on|off, /save FILE, /image PATH (a vision-language\n"
    "model: the image goes before the next message's text), /quit. Ctrl-C stops the answer;\n"
    "Ctrl-C or Ctrl-D at the prompt ends the chat.\n"
    "Otherwise: each stdin line is one conversation as JSON (a messages array, or {\"messages\": [...],\n"
    "\"tools\": [...]}); each gets one JSON line on stdout: the assistant message with finish_reason and usage.\n"
    "  -m, --model PATH         GGUF file or Hugging Face checkpoint folder\n"
    "      --mmproj FILE        a qwen3vl GGUF's vision tower (its mmproj GGUF), for /image\n"
    "      --system TEXT        a system message first (stdin mode: unless the conversation has one)\n"
    "      --no-think           enable_thinking=false (Qwen3: no reasoning)\n"
    "      --hide-think         do not print the reasoning\n"
    "      --tools FILE         an OpenAI tools array (JSON) offered to the model; its calls are constrained to\n"
    "                           the tools and their parameter schemas (as tandem run --tools)\n"
    "      --tool-choice C      auto (default), none, required, or a tool's name (as tandem run)\n"
    "      --no-parallel-tool-calls  at most one call per answer\n"
    "      --no-tool-grammar    offer the tools without constraining the calls\n"
    "      --chat-template-file FILE  this Jinja template instead of the model's\n"
    "  -n, --max-tokens N       most tokens per answer (default -1: until EOS or full context)\n"
    "      --temp T, --top-k K, --top-p P, --min-p P, --repeat-penalty F, --repeat-last-n N,\n"
    "      --presence-penalty F, --frequency-penalty F, --seed S   sampling, as in tandem run\n"
    "  -c, --ctx-size N         context size in tokens (default min(model, 4096))\n"
    "  -t, --threads N          threads (default: all cores)\n" KV_TYPE_HELP
    "  -md, --draft MODEL       speculative decoding with this draft model (and --draft-max, --draft-min,\n"
    "                           --draft-p-min, --draft-fixed, --lookup as in tandem run)\n";

#define DIM "\033[2m"
#define UNDIM "\033[0m"

/* What stays from turn to turn: the model, its context, the template and the tokens the context holds. */
typedef struct chat {
    tandem_model *model, *draft_model;
    tandem_ctx *ctx, *draft_ctx;
    const tandem_tokenizer *tok;
    tandem_chat_template *tmpl, *tmpl_tools; /* tmpl_tools: for turns with tools (the model's "tool_use" one) */
    tandem_gen_params gp;
    tandem_chat_render_params rp;
    tandem_tool_grammar_params tool_grammar; /* with tools: the calls the answer may make (tools_json per turn) */
    bool free_tools;                         /* --no-tool-grammar: tools offered, calls not constrained */
    int32_t *held;                           /* the tokens the context holds, in order (its first n_held) */
    size_t n_held, cap_held;
    /* the conversation's images (/image), in order; the last n_pending wait for the next user message */
    tandem_image **images;
    int n_images, n_pending;
} chat;

/* One answer being generated: the parser, and how its deltas are shown. */
typedef struct answer {
    tandem_chat_parser *parser;
    bool print, dim, hide_think, in_reasoning;
    char last; /* the last byte printed, '\0' for none */
    char *tool_name, *tool_args;
    size_t args_len;
} answer;

static void print_text(answer *a, const char *s, size_t n, bool reasoning) {
    if (!n) return;
    if (reasoning != a->in_reasoning && a->dim) fputs(reasoning ? DIM : UNDIM, stdout);
    a->in_reasoning = reasoning;
    fwrite(s, 1, n, stdout);
    a->last = s[n - 1];
}

static bool on_delta(const tandem_chat_delta *d, void *user) {
    answer *a = user;
    if (!a->print) return true;
    switch (d->kind) {
    case TANDEM_CHAT_DELTA_REASONING:
        if (!a->hide_think) print_text(a, d->text, d->len, true);
        break;
    case TANDEM_CHAT_DELTA_CONTENT: print_text(a, d->text, d->len, false); break;
    case TANDEM_CHAT_DELTA_TOOL_CALL:
        free(a->tool_name);
        free(a->tool_args);
        a->tool_name = strdup(d->tool_name);
        a->tool_args = NULL;
        a->args_len = 0;
        break;
    case TANDEM_CHAT_DELTA_TOOL_ARGUMENTS: {
        char *grown = realloc(a->tool_args, a->args_len + d->len + 1);
        if (!grown) return false;
        memcpy(grown + a->args_len, d->text, d->len);
        a->args_len += d->len;
        grown[a->args_len] = '\0';
        a->tool_args = grown;
        break;
    }
    case TANDEM_CHAT_DELTA_TOOL_END: {
        /* shown whole once it has parsed: a call that breaks off later becomes text (TOOL_DROPPED) */
        if (a->last && a->last != '\n') print_text(a, "\n", 1, false);
        print_text(a, "[tool call ", 11, false);
        print_text(a, a->tool_name ? a->tool_name : "", a->tool_name ? strlen(a->tool_name) : 0, false);
        print_text(a, "(", 1, false);
        print_text(a, a->tool_args ? a->tool_args : "", a->args_len, false);
        print_text(a, ")]\n", 3, false);
        break;
    }
    case TANDEM_CHAT_DELTA_TOOL_DROPPED: break;
    }
    fflush(stdout);
    return true;
}

static bool on_text(const char *text, size_t len, void *user) {
    answer *a = user;
    if (tandem_chat_parser_feed(a->parser, text, len, on_delta, a)) return false;
    return !cli_interrupted;
}

static bool hold_tokens(chat *c, const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    if (na + nb > c->cap_held) {
        int32_t *grown = realloc(c->held, (na + nb) * sizeof *grown);
        if (!grown) return false;
        c->held = grown;
        c->cap_held = na + nb;
    }
    memmove(c->held, a, na * sizeof *a);
    memcpy(c->held + na, b, nb * sizeof *b);
    c->n_held = na + nb;
    return true;
}

/* The result of one turn. */
typedef struct turn {
    json_t *message; /* the assistant message (the parser's JSON) */
    tandem_gen_result r;
    size_t n_prompt, n_reused;
    bool interrupted;
} turn;

/* Renders messages, evaluates what the context does not hold yet, generates and parses the answer. On failure,
 * the library's error is left for report_status and the context holds nothing (the next turn starts afresh). */
static tandem_status chat_turn(chat *c, json_t *messages, const char *tools, answer *a, turn *out) {
    memset(out, 0, sizeof *out);
    tandem_grammar *grammar = NULL;
    tandem_chat_render_params rp = c->rp;
    rp.tools_json = tools;
    char *msgs = json_dumps(messages, JSON_COMPACT);
    if (!msgs) {
        fputs("tandem chat: error: the conversation cannot be encoded as JSON (text that is not UTF-8?)\n", stderr);
        return TANDEM_ERR_INVALID_ARG;
    }
    char *text;
    size_t text_len;
    tandem_status st = tandem_chat_render(tools ? c->tmpl_tools : c->tmpl, msgs, strlen(msgs), &rp, &text, &text_len);
    free(msgs);
    if (st) return st;
    /* the template may end the prompt inside "<think>" (thinking-only templates): the answer starts in reasoning */
    const char *open = NULL, *close = NULL;
    for (const char *p = text; (p = strstr(p, "<think>")); p++) open = p;
    for (const char *p = text; (p = strstr(p, "</think>")); p++) close = p;
    int32_t *ids;
    size_t n_ids;
    const int n_images = c->n_images - c->n_pending; /* those the messages hold */
    st = n_images ? tandem_vl_prompt(c->model, text, text_len, (const tandem_image *const *)c->images, n_images, &ids,
                                     &n_ids)
                  : tandem_tokenizer_encode(c->tok, text, text_len, true, &ids, &n_ids);
    tandem_free(text);
    if (st) return st;
    /* the longest common prefix with what the context holds stays; at least the last prompt token is evaluated
     * again, for its logits */
    size_t common = 0;
    const size_t n_past = (size_t)tandem_ctx_n_past(c->ctx);
    const size_t held = c->n_held < n_past ? c->n_held : n_past;
    while (common < held && common < n_ids && c->held[common] == ids[common]) common++;
    if (common == n_ids && common > 0) common--;
    /* an image is kept whole or evaluated again whole; the images after what is kept go with the prompt */
    int first_image = 0;
    const int32_t pad = tandem_model_image_token(c->model);
    for (size_t i = 0; n_images && i < n_ids;) {
        if (ids[i] != pad) {
            i++;
            continue;
        }
        size_t end = i;
        while (end < n_ids && ids[end] == pad) end++;
        if (end <= common) first_image++;
        else if (i < common) common = i;
        i = end;
    }
    if ((st = tandem_ctx_truncate(c->ctx, (int32_t)common))) goto done;
    c->n_held = common;

    tandem_chat_parser_params pp = tandem_chat_parser_default_params();
    pp.reasoning_open = open && (!close || close < open);
    pp.parse_tool_calls = tools != NULL;
    if ((st = tandem_chat_parser_create(&pp, &a->parser))) goto done;
    tandem_gen_params gp = c->gp;
    gp.on_text = on_text;
    gp.user = a;
    gp.images = (const tandem_image *const *)c->images + first_image;
    gp.n_images = n_images - first_image;
    if (tools && !c->free_tools) { /* every call the model opens names one of the tools, with valid arguments */
        tandem_tool_grammar_params tp = c->tool_grammar;
        tp.tools_json = tools;
        tp.reasoning_open = pp.reasoning_open;
        tp.thinking = rp.enable_thinking != 0;
        if ((st = tandem_grammar_from_tools(c->tok, &tp, &grammar))) goto done;
        gp.grammar = grammar;
    }
    st = tandem_generate(c->ctx, ids + common, n_ids - common, &gp, &out->r);
    if (st) {
        c->n_held = 0;
        tandem_ctx_truncate(c->ctx, 0);
        goto done;
    }
    out->interrupted = out->r.finish == TANDEM_FINISH_ABORTED && cli_interrupted;
    out->n_prompt = n_ids;
    out->n_reused = common;
    if (!hold_tokens(c, ids, n_ids, out->r.ids, out->r.n_ids)) c->n_held = 0;
    tandem_chat_parser_finish(a->parser, on_delta, a);
    char *mj = NULL;
    if ((st = tandem_chat_parser_message_json(a->parser, &mj))) goto done;
    /* the answer may hold U+0000 (the parser writes it as \u0000) */
    json_error_t err;
    out->message = json_loads(mj, JSON_ALLOW_NUL, &err);
    tandem_free(mj);
    if (!out->message) {
        fprintf(stderr, "tandem chat: error: the parser's message is not JSON: %s\n", err.text);
        st = TANDEM_ERR_FORMAT;
    }
done:
    if (st && out->r.ids) tandem_gen_result_free(&out->r);
    tandem_chat_parser_free(a->parser);
    a->parser = NULL;
    free(a->tool_name);
    free(a->tool_args);
    a->tool_name = a->tool_args = NULL;
    tandem_grammar_free(grammar);
    tandem_free(ids);
    return st;
}

static const char *finish_reason(const turn *t) {
    if (t->r.finish == TANDEM_FINISH_EOS || t->r.finish == TANDEM_FINISH_STOP_STRING)
        return json_array_size(json_object_get(t->message, "tool_calls")) ? "tool_calls" : "stop";
    if (t->r.finish == TANDEM_FINISH_LENGTH || t->r.finish == TANDEM_FINISH_CONTEXT_FULL) return "length";
    return tandem_finish_name(t->r.finish);
}

/* ---- stdin mode: one conversation per line ---- */

static int chat_lines(chat *c, const char *system, const char *tools) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long long lineno = 0;
    int failed = 0;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (strspn(line, " \t") == (size_t)n) continue;
        json_error_t err;
        json_t *doc = json_loadb(line, (size_t)n, 0, &err), *messages = doc;
        char *line_tools = NULL;
        const char *why = NULL;
        if (!doc) why = err.text;
        else if (json_is_object(doc)) {
            messages = json_object_get(doc, "messages");
            json_t *t = json_object_get(doc, "tools");
            if (t && !json_is_null(t)) line_tools = json_dumps(t, JSON_COMPACT);
        }
        if (!why && !json_is_array(messages)) why = "expected a messages array or an object with \"messages\"";
        if (why) {
            fprintf(stderr, "tandem chat: error: stdin line %lld: %s\n", lineno, why);
            failed = 1;
            json_decref(doc);
            continue;
        }
        json_t *conv = json_deep_copy(messages);
        json_t *first = json_array_get(conv, 0);
        const char *role = json_string_value(json_object_get(first, "role"));
        if (system && !(role && (!strcmp(role, "system") || !strcmp(role, "developer"))))
            json_array_insert_new(conv, 0, json_pack("{s:s, s:s}", "role", "system", "content", system));
        answer a = {0};
        turn t;
        char where[48];
        snprintf(where, sizeof where, "stdin line %lld", lineno);
        tandem_status st = chat_turn(c, conv, line_tools ? line_tools : tools, &a, &t);
        if (st) {
            report_status("chat", where, st);
            failed = 1;
        } else {
            json_object_set_new(t.message, "finish_reason", json_string(finish_reason(&t)));
            json_object_set_new(t.message, "usage",
                                json_pack("{s:i, s:i}", "prompt_tokens", (json_int_t)t.n_prompt, "completion_tokens",
                                          (json_int_t)t.r.timings.n_generated));
            print_json_line(t.message);
            fflush(stdout);
            tandem_gen_result_free(&t.r);
        }
        free(line_tools);
        json_decref(conv);
        json_decref(doc);
    }
    free(line);
    return failed ? EXIT_FAILED : 0;
}

/* ---- interactive mode ---- */

static void on_chat_interrupt(int sig) {
    (void)sig;
    cli_interrupted = 1;
}

/* Ctrl-C sets cli_interrupted: during an answer the text callback stops it; at the prompt the wait for a line sees
 * it (a read in progress fails with EINTR: no SA_RESTART) and the chat ends. Not reset by the signal: each Ctrl-C
 * is one. */
static void catch_interrupts(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_chat_interrupt;
    sigaction(SIGINT, &sa, NULL);
}

static void save_messages(const json_t *messages, const char *path) {
    int fd;
    char *tmp = NULL;
    char *s = json_dumps(messages, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    FILE *f = NULL;
    bool ok = s && tandem_temp_file_create(path, &fd, &tmp) == TANDEM_OK;
    if (ok && !(f = fdopen(fd, "wb"))) {
        close(fd);
        ok = false;
    }
    if (f) {
        ok = fputs(s, f) >= 0 && fputc('\n', f) != EOF;
        ok = (fclose(f) == 0) && ok;
        ok = ok && rename(tmp, path) == 0;
        if (!ok) unlink(tmp);
    }
    if (ok) fprintf(stderr, "saved %zu messages to %s\n", json_array_size(messages), path);
    else fprintf(stderr, "tandem chat: error: /save %s: %s\n", path, errno ? strerror(errno) : "cannot write");
    tandem_free(tmp);
    free(s);
}

static const char COMMANDS_HELP[] =
    "commands: /clear (forget the conversation), /think on|off, /save FILE (the messages as JSON), /image PATH\n"
    "(an image before the next message's text), /quit\n";

/* Forgets the images from the n_keep-th on. */
static void drop_images(chat *c, int n_keep) {
    while (c->n_images > n_keep) tandem_image_free(c->images[--c->n_images]);
    if (c->n_pending > c->n_images) c->n_pending = c->n_images;
}

/* /image PATH: loaded now (errors name the file), placed before the next message's text. */
static void attach_image(chat *c, const char *path) {
    tandem_image *img = NULL;
    tandem_status st = tandem_image_load(c->model, path, NULL, &img);
    tandem_image **grown = st ? NULL : realloc(c->images, (size_t)(c->n_images + 1) * sizeof *grown);
    if (st || !grown) {
        if (st) report_status("chat", NULL, st);
        else fputs("tandem chat: error: out of memory\n", stderr);
        tandem_image_free(img);
        return;
    }
    c->images = grown;
    c->images[c->n_images++] = img;
    c->n_pending++;
    fprintf(stderr, "image %s: %d tokens, goes with the next message\n", path, tandem_image_tokens(img));
}

static json_t *new_conversation(const char *system) {
    json_t *m = json_array();
    if (system) json_array_append_new(m, json_pack("{s:s, s:s}", "role", "system", "content", system));
    return m;
}

static int chat_terminal(chat *c, const char *system, const char *tools, bool hide_think) {
    json_t *messages = new_conversation(system);
    const bool tty_out = isatty(STDOUT_FILENO), tty_err = isatty(STDERR_FILENO);
    char *line = NULL;
    size_t cap = 0;
    catch_interrupts();
    setvbuf(stdin, NULL, _IONBF, 0);
    fprintf(stderr, "tandem chat: type a message; /quit or Ctrl-D ends, Ctrl-C stops an answer\n");
    for (;;) {
        cli_interrupted = 0;
        fputs("> ", stdout);
        fflush(stdout);
        /* a Ctrl-C that comes just before the read would not interrupt it: wait for a line (or EOF) in short polls
         * that look at the flag (stdin is unbuffered, so what poll sees is all there is) */
        struct pollfd in = {.fd = STDIN_FILENO, .events = POLLIN};
        while (!cli_interrupted && poll(&in, 1, 100) == 0) continue;
        ssize_t n = cli_interrupted ? -1 : getline(&line, &cap, stdin);
        if (n < 0 || cli_interrupted) {
            putchar('\n');
            break;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (n == 0) continue;
        if (line[0] == '/') {
            char arg[4096] = "";
            if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
            if (!strcmp(line, "/clear")) {
                json_decref(messages);
                messages = new_conversation(system);
                drop_images(c, 0);
                fprintf(stderr, "conversation cleared\n");
            } else if (!strcmp(line, "/think on") || !strcmp(line, "/think off")) {
                c->rp.enable_thinking = line[8] == 'n';
                fprintf(stderr, "thinking %s\n", c->rp.enable_thinking ? "on" : "off");
            } else if (sscanf(line, "/save %4095s", arg) == 1) {
                save_messages(messages, arg);
            } else if (!strncmp(line, "/image ", 7) && line[7]) {
                attach_image(c, line + 7);
            } else {
                fputs(COMMANDS_HELP, stderr);
            }
            continue;
        }
        json_t *user = json_pack("{s:s, s:s%}", "role", "user", "content", line, (size_t)n);
        if (!user) {
            fprintf(stderr, "tandem chat: error: the line is not valid UTF-8\n");
            continue;
        }
        const int images_before = c->n_images - c->n_pending;
        if (c->n_pending) { /* as transformers' processors take them: image parts, then the text */
            json_t *parts = json_array();
            for (int i = 0; i < c->n_pending; i++) json_array_append_new(parts, json_pack("{s:s}", "type", "image"));
            json_array_append_new(parts,
                                  json_pack("{s:s, s:O}", "type", "text", "text", json_object_get(user, "content")));
            json_object_set_new(user, "content", parts);
            c->n_pending = 0;
        }
        json_array_append_new(messages, user);
        answer a = {.print = true, .dim = tty_out, .hide_think = hide_think};
        turn t;
        tandem_status st = chat_turn(c, messages, tools, &a, &t);
        if (a.in_reasoning && a.dim) fputs(UNDIM, stdout);
        if (a.last && a.last != '\n') putchar('\n');
        fflush(stdout);
        if (st) {
            report_status("chat", NULL, st);
            json_array_remove(messages, json_array_size(messages) - 1);
            drop_images(c, images_before); /* they went with the message */
            continue;
        }
        json_array_append_new(messages, t.message);
        const tandem_timings *tm = &t.r.timings;
        const double tps = tm->n_generated > 1 && tm->decode_ms > 0 ? (tm->n_generated - 1) / (tm->decode_ms / 1e3) : 0;
        fprintf(stderr, "%s[%d tokens, %.1f tok/s (%zu prompt tokens, %zu reused)", tty_err ? DIM : "", tm->n_generated,
                tps, t.n_prompt, t.n_reused);
        if (t.r.speculative && t.r.spec_stats.n_drafted > 0)
            fprintf(stderr, ", %.0f%% of drafted tokens accepted", 100 * t.r.spec_stats.acceptance_rate);
        if (t.interrupted) fputs(", interrupted", stderr);
        else if (t.r.finish != TANDEM_FINISH_EOS) fprintf(stderr, ", finish: %s", tandem_finish_name(t.r.finish));
        fprintf(stderr, "]%s\n", tty_err ? UNDIM : "");
        tandem_gen_result_free(&t.r);
    }
    free(line);
    json_decref(messages);
    return 0;
}

int cmd_chat(int argc, char **argv) {
    args a = {"chat", argc, argv, 0};
    const char *model_path = NULL, *draft_path = NULL, *mmproj_path = NULL, *system = NULL, *tools_path = NULL,
               *template_path = NULL;
    const char *tool_choice = NULL;
    bool parallel_calls = true, free_tools = false;
    int max_tokens = -1, threads = 0, n_ctx = 0;
    bool hide_think = false;
    int enable_thinking = -1;
    tandem_type kv_type = TANDEM_TYPE_F16;
    tandem_spec_params spec = tandem_spec_default_params();
    sampling_flags sf = sampling_flags_unset();
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(CHAT_HELP, stdout);
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) model_path = take_value(&a, f);
        else if (!strcmp(f, "--system")) system = take_value(&a, f);
        else if (!strcmp(f, "--mmproj")) mmproj_path = take_value(&a, f);
        else if (!strcmp(f, "--no-think")) enable_thinking = 0;
        else if (!strcmp(f, "--hide-think")) hide_think = true;
        else if (!strcmp(f, "--tools")) tools_path = take_value(&a, f);
        else if (!strcmp(f, "--tool-choice")) tool_choice = take_value(&a, f);
        else if (!strcmp(f, "--no-parallel-tool-calls")) parallel_calls = false;
        else if (!strcmp(f, "--no-tool-grammar")) free_tools = true;
        else if (!strcmp(f, "--chat-template-file")) template_path = take_value(&a, f);
        else if (!strcmp(f, "-n") || !strcmp(f, "--max-tokens"))
            max_tokens = (int)parse_int(&a, f, take_value(&a, f), -1, INT_MAX);
        else if (parse_sampling_option(&a, f, &sf)) continue;
        else if (!strcmp(f, "-c") || !strcmp(f, "--ctx-size"))
            n_ctx = (int)parse_int(&a, f, take_value(&a, f), 1, 1 << 24);
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) threads = parse_threads(&a, f);
        else if (!strcmp(f, "--kv-type")) kv_type = parse_kv_type(&a, f);
        else if (parse_spec_option(&a, f, &spec, &draft_path)) continue;
        else die_usage("chat", "unknown option '%s'", f);
    }
    if (!model_path) die_usage("chat", "missing -m MODEL");
    if (spec.draft_min > spec.draft_max)
        die_usage("chat", "--draft-min %d exceeds --draft-max %d", spec.draft_min, spec.draft_max);
    char *tools = NULL;
    if (tools_path) {
        size_t len;
        tools = read_file("chat", tools_path, &len);
        json_t *j = json_loadb(tools, len, 0, NULL);
        if (!json_is_array(j)) die_usage("chat", "--tools %s: not a JSON array of tools", tools_path);
        json_decref(j);
    }

    chat c = {0};
    c.free_tools = free_tools;
    c.tool_grammar = tandem_tool_grammar_default_params();
    c.tool_grammar.parallel_tool_calls = parallel_calls;
    if (!tool_choice || !strcmp(tool_choice, "auto")) c.tool_grammar.choice = TANDEM_TOOL_CHOICE_AUTO;
    else if (!strcmp(tool_choice, "none")) c.tool_grammar.choice = TANDEM_TOOL_CHOICE_NONE;
    else if (!strcmp(tool_choice, "required")) c.tool_grammar.choice = TANDEM_TOOL_CHOICE_REQUIRED;
    else c.tool_grammar.choice = TANDEM_TOOL_CHOICE_NAMED, c.tool_grammar.function_name = tool_choice;
    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = threads;
    mp.mmproj_path = mmproj_path;
    tandem_status st = tandem_model_load(model_path, &mp, &c.model);
    if (st) die_status("chat", st);
    mp.mmproj_path = NULL; /* the draft is a text model */
    c.tok = tandem_model_tokenizer(c.model);
    c.tmpl = load_chat_template("chat", c.tok, model_path, template_path, false);
    c.tmpl_tools = c.tmpl;
    if (!template_path && tandem_tokenizer_chat_template_for(c.tok, true) != tandem_tokenizer_chat_template(c.tok))
        c.tmpl_tools = load_chat_template("chat", c.tok, model_path, NULL, true);
    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = n_ctx;
    cp.kv_type = kv_type;
    if ((st = tandem_ctx_init(c.model, &cp, &c.ctx))) die_status("chat", st);
    warn_beyond_trained_context("chat", c.model, tandem_ctx_n_ctx(c.ctx));
    if (draft_path) {
        if ((st = tandem_model_load(draft_path, &mp, &c.draft_model))) die_status("chat", st);
        if ((st = tandem_model_check_draft(c.model, c.draft_model))) die_status("chat", st);
        cp.n_ctx = tandem_ctx_n_ctx(c.ctx);
        if ((st = tandem_ctx_init(c.draft_model, &cp, &c.draft_ctx))) die_status("chat", st);
    }
    c.gp = tandem_gen_default_params(c.model);
    c.gp.draft = c.draft_ctx;
    c.gp.spec = spec;
    c.gp.max_tokens = max_tokens;
    tandem_sampler_params *sp = &c.gp.sampling;
    apply_sampling_flags(&sf, sp);
    c.rp = tandem_chat_render_default_params();
    c.rp.add_generation_prompt = true;
    c.rp.enable_thinking = enable_thinking;
    set_template_special_tokens(&c.rp, c.tok);

    const int rc = isatty(STDIN_FILENO) ? chat_terminal(&c, system, tools, hide_think) : chat_lines(&c, system, tools);
    free(c.held);
    drop_images(&c, 0);
    free(c.images);
    if (c.tmpl_tools != c.tmpl) tandem_chat_template_free(c.tmpl_tools);
    tandem_chat_template_free(c.tmpl);
    tandem_ctx_free(c.draft_ctx);
    tandem_model_free(c.draft_model);
    tandem_ctx_free(c.ctx);
    tandem_model_free(c.model);
    free(tools);
    return rc;
}
