/* chat_template.c — the public chat-template API: parse a model's template once, render OpenAI-style messages
 * with it as transformers' apply_chat_template does, after normalising what clients send (see tandem.h). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "jinja.h"

struct tandem_chat_template {
    jctx parse; /* owns the tree (its arena) */
    jnode *root;
    char *origin;
};

static const jlimits DEFAULT_LIMITS = {
    .max_steps = 20 * 1000 * 1000,
    .max_iterations = 1000 * 1000,
    .max_depth = 100,
    .max_output = 16 << 20,
    .max_memory = (size_t)256 << 20,
};

tandem_chat_render_params tandem_chat_render_default_params(void) {
    return (tandem_chat_render_params){.enable_thinking = -1};
}

static void ctx_init(jctx *c, const char *origin) {
    memset(c, 0, sizeof *c);
    c->origin = origin;
    c->lim = DEFAULT_LIMITS;
    c->arena.limit = c->lim.max_memory;
    c->arena.owner = c;
}

tandem_status tandem_chat_template_parse(const char *source, size_t len, const char *origin,
                                         tandem_chat_template **out) {
    if (out) *out = NULL;
    if (!out || (!source && len))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_chat_template_parse: source: NULL");
    if (!origin) origin = "chat template";
    if (!utf8_valid(source, len))
        return tandem_fail(TANDEM_ERR_FORMAT, "tandem_chat_template_parse: chat template (%s): not valid UTF-8",
                           origin);
    tandem_chat_template *t = calloc(1, sizeof *t);
    char *name = t ? strdup(origin) : NULL;
    if (!name) {
        free(t);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_chat_template_parse: out of memory");
    }
    t->origin = name;
    jctx *c = &t->parse;
    ctx_init(c, t->origin);
    if (setjmp(c->on_error)) {
        tandem_status st = c->err_status ? c->err_status : TANDEM_ERR_FORMAT;
        tandem_fail(st, "tandem_chat_template_parse: %s", c->err);
        jarena_free(&c->arena);
        free(t->origin);
        free(t);
        return st;
    }
    jtok *toks;
    size_t n_toks;
    jinja_lex(c, source ? source : "", len, &toks, &n_toks);
    t->root = jinja_parse(c, toks, n_toks);
    *out = t;
    return TANDEM_OK;
}

void tandem_chat_template_free(tandem_chat_template *t) {
    if (!t) return;
    jarena_free(&t->parse.arena);
    free(t->origin);
    free(t);
}

/* ---- normalisation of the messages (on jansson values) ---- */

static bool is_nonnull(const json_t *j) { return j && !json_is_null(j); }

/* transformers' _alias_reasoning_fields: reasoning_content, thinking and reasoning name the same text. */
static json_t *alias_reasoning(json_t *msg) {
    static const char *const names[] = {"reasoning_content", "thinking", "reasoning"};
    json_t *r = NULL;
    for (size_t i = 0; i < 3 && !r; i++)
        if (is_nonnull(json_object_get(msg, names[i]))) r = json_object_get(msg, names[i]);
    if (!r) return json_incref(msg);
    json_t *out = json_object();
    json_object_set(out, "thinking", r);
    const char *k;
    json_t *v;
    json_object_foreach(msg, k, v) {
        if (!strcmp(k, "thinking")) continue;
        json_object_set(out, k, !strcmp(k, "reasoning_content") ? r : v);
    }
    if (!json_object_get(msg, "reasoning_content")) json_object_set(out, "reasoning_content", r);
    return out;
}

/* A tool call's arguments given as a JSON string (as OpenAI sends them) become the object they encode. */
static void parse_arguments(json_t *holder) {
    json_t *args = json_object_get(holder, "arguments");
    if (!json_is_string(args)) return;
    json_t *parsed = json_loadb(json_string_value(args), json_string_length(args), JSON_DECODE_ANY, NULL);
    if (json_is_object(parsed)) json_object_set(holder, "arguments", parsed);
    json_decref(parsed);
}

/* Always applied: developer → system, reasoning aliases, arguments strings parsed. */
static tandem_status normalise_always(json_t *messages) {
    for (size_t i = 0; i < json_array_size(messages); i++) {
        json_t *msg = json_array_get(messages, i);
        if (!json_is_object(msg))
            return tandem_fail(TANDEM_ERR_INVALID_ARG,
                               "tandem_chat_render: messages_json: message %zu is not an object", i);
        json_t *role = json_object_get(msg, "role");
        if (json_is_string(role) && !strcmp(json_string_value(role), "developer"))
            json_object_set_new(msg, "role", json_string("system"));
        json_t *calls = json_object_get(msg, "tool_calls");
        for (size_t k = 0; k < json_array_size(calls); k++) {
            json_t *call = json_array_get(calls, k);
            if (!json_is_object(call)) continue;
            json_t *fn = json_object_get(call, "function");
            if (json_is_object(fn)) parse_arguments(fn);
            else parse_arguments(call);
        }
        json_t *aliased = alias_reasoning(msg);
        json_array_set_new(messages, i, aliased);
    }
    return TANDEM_OK;
}

/* Applied when the template fails on the messages as sent: content null or missing → "", an array of
 * content parts → its text parts joined with "\n" (other parts, such as images, dropped). Returns whether it
 * changed anything. */
static bool normalise_content(json_t *messages) {
    bool changed = false;
    for (size_t i = 0; i < json_array_size(messages); i++) {
        json_t *msg = json_array_get(messages, i);
        json_t *content = json_object_get(msg, "content");
        if (!content || json_is_null(content)) {
            json_object_set_new(msg, "content", json_string(""));
            changed = true;
        } else if (json_is_array(content)) {
            size_t total = 0;
            for (size_t k = 0; k < json_array_size(content); k++) {
                json_t *text = json_object_get(json_array_get(content, k), "text");
                if (json_is_string(text)) total += json_string_length(text) + 1;
            }
            char *joined = malloc(total + 1);
            if (!joined) continue;
            size_t n = 0;
            for (size_t k = 0; k < json_array_size(content); k++) {
                json_t *part = json_array_get(content, k);
                json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
                if (!json_is_string(text)) continue;
                if (type && !(json_is_string(type) && !strcmp(json_string_value(type), "text"))) continue;
                if (n) joined[n++] = '\n';
                memcpy(joined + n, json_string_value(text), json_string_length(text));
                n += json_string_length(text);
            }
            json_object_set_new(msg, "content", json_stringn(joined, n));
            free(joined);
            changed = true;
        }
    }
    return changed;
}

/* ---- rendering ---- */

typedef struct render_in {
    const tandem_chat_template *t;
    const json_t *messages, *tools, *extra, *special;
    const tandem_chat_render_params *p;
} render_in;

/* One render; on failure *kind tells whether normalising the content may help. */
static tandem_status render_once(const render_in *in, char **text, size_t *text_len, jerr_kind *kind) {
    jctx c;
    ctx_init(&c, in->t->origin);
    const tandem_chat_render_params *p = in->p;
    if (p->max_output_bytes > 0) c.lim.max_output = p->max_output_bytes;
    c.now_unix = p->now_unix;
    jbuf out = {.is_output = true};
    if (setjmp(c.on_error)) {
        tandem_status st = c.err_status ? c.err_status : TANDEM_ERR_INVALID_ARG;
        *kind = c.err_kind;
        tandem_fail(st, "tandem_chat_render: %s", c.err);
        jarena_free(&c.arena);
        return st;
    }
    jv vars = jv_dict(&c);
    /* transformers' order: the special tokens, then the caller's kwargs over them */
    if (in->special) {
        jv special = jv_from_json(&c, in->special);
        for (size_t i = 0; i < special.d->n; i++) jdict_set(&c, vars.d, special.d->keys[i], special.d->vals[i]);
    }
    if (p->bos_token) jdict_set(&c, vars.d, jv_str_lit("bos_token"), jv_str(&c, p->bos_token, strlen(p->bos_token)));
    if (p->eos_token) jdict_set(&c, vars.d, jv_str_lit("eos_token"), jv_str(&c, p->eos_token, strlen(p->eos_token)));
    if (in->extra) {
        jv extra = jv_from_json(&c, in->extra);
        for (size_t i = 0; i < extra.d->n; i++) jdict_set(&c, vars.d, extra.d->keys[i], extra.d->vals[i]);
    }
    if (p->enable_thinking >= 0) jdict_set(&c, vars.d, jv_str_lit("enable_thinking"), jv_bool(p->enable_thinking != 0));
    jdict_set(&c, vars.d, jv_str_lit("messages"), jv_from_json(&c, in->messages));
    jdict_set(&c, vars.d, jv_str_lit("tools"), in->tools ? jv_from_json(&c, in->tools) : jv_none());
    jdict_set(&c, vars.d, jv_str_lit("documents"), jv_none());
    jdict_set(&c, vars.d, jv_str_lit("add_generation_prompt"), jv_bool(p->add_generation_prompt));
    jinja_render(&c, in->t->root, vars.d, &out);
    char *r = malloc(out.n + 1);
    if (!r) {
        jarena_free(&c.arena);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_chat_render: out of memory");
    }
    if (out.n) memcpy(r, out.p, out.n);
    r[out.n] = '\0';
    *text = r;
    *text_len = out.n;
    jarena_free(&c.arena);
    return TANDEM_OK;
}

static tandem_status load_json(const char *s, size_t len, const char *field, json_t **out) {
    json_error_t e;
    *out = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!*out)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_chat_render: %s: invalid JSON at line %d, column %d: %s",
                           field, e.line, e.column, e.text);
    return TANDEM_OK;
}

tandem_status tandem_chat_render(const tandem_chat_template *t, const char *messages_json, size_t len,
                                 const tandem_chat_render_params *p, char **text, size_t *text_len) {
    if (text) *text = NULL;
    if (text_len) *text_len = 0;
    if (!t || !messages_json || !text)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_chat_render: template, messages_json or text: NULL");
    tandem_chat_render_params dflt = tandem_chat_render_default_params();
    if (!p) p = &dflt;
    json_t *messages = NULL, *tools = NULL, *extra = NULL, *special = NULL;
    tandem_status st = load_json(messages_json, len, "messages_json", &messages);
    if (!st && !json_is_array(messages))
        st = tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_chat_render: messages_json: not an array of messages");
    if (!st && p->tools_json) {
        st = load_json(p->tools_json, strlen(p->tools_json), "tools_json", &tools);
        if (!st && json_is_null(tools)) {
            json_decref(tools);
            tools = NULL;
        } else if (!st && !json_is_array(tools)) {
            st = tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_chat_render: tools_json: not an array of tools");
        }
    }
    if (!st && p->extra_context_json) {
        st = load_json(p->extra_context_json, strlen(p->extra_context_json), "extra_context_json", &extra);
        if (!st && !json_is_object(extra))
            st = tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_chat_render: extra_context_json: not a JSON object");
    }
    if (!st && p->special_tokens_json) {
        st = load_json(p->special_tokens_json, strlen(p->special_tokens_json), "special_tokens_json", &special);
        if (!st && !json_is_object(special))
            st = tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_chat_render: special_tokens_json: not a JSON object");
    }
    if (!st) st = normalise_always(messages);
    if (!st) {
        render_in in = {t, messages, tools, extra, special, p};
        size_t n = 0;
        jerr_kind kind = JERR_NONE;
        st = render_once(&in, text, &n, &kind);
        if (st && kind == JERR_RUNTIME) {
            json_t *fixed = json_deep_copy(messages);
            if (fixed && normalise_content(fixed)) {
                in.messages = fixed;
                st = render_once(&in, text, &n, &kind);
            }
            json_decref(fixed);
        }
        if (!st && text_len) *text_len = n;
    }
    json_decref(messages);
    json_decref(tools);
    json_decref(extra);
    json_decref(special);
    return st;
}
