/* schema.c — the grammars tandem offers: a JSON schema (response_format) and Qwen3's tool calls (a lazy Lark grammar
 * around one JSON schema per tool), written as llguidance input and compiled by grammar.c. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "grammar_internal.h"
#include "tokenizer_derived.h"

/* JSON as Python's json.dumps writes it (and Qwen3's template, and OpenAI): ", " and ": ", nothing else; also what
 * keeps a random model from filling its output with whitespace. A schema's own x-guidance wins. */
static bool add_json_style(json_t *schema) {
    if (!json_is_object(schema) || json_object_get(schema, "x-guidance")) return true;
    json_t *opts = json_pack("{s:b, s:s, s:s}", "whitespace_flexible", 0, "item_separator", ", ", "key_separator",
                             ": ");
    return opts && json_object_set_new(schema, "x-guidance", opts) == 0;
}

/* Every grammar's options: no_forcing makes llguidance's mask byte-level like its token check (otherwise text the
 * grammar forces is allowed only as its canonical tokenization in the mask, any tokenization in the check), so that
 * sample-then-check (src/runtime/constrain.c) draws from the same distribution as the masked draw. */
#define LARK_OPTIONS "%llguidance {\"no_forcing\": true}"

/* printf onto a growing buffer; false on out of memory. */
static bool appendf(byte_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool appendf(byte_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return false;
    char *s = malloc((size_t)n + 1);
    if (!s) return false;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    const bool ok = byte_buf_append(b, s, (size_t)n);
    free(s);
    return ok;
}

/* Parses text as JSON; the error names field and where the text is broken. */
static tandem_status parse_json(const char *text, const char *fn, const char *field, json_t **out) {
    json_error_t e;
    *out = json_loads(text, JSON_REJECT_DUPLICATES, &e);
    if (!*out)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: %s: line %d column %d: %s", fn, field, e.line, e.column,
                           e.text);
    return TANDEM_OK;
}

tandem_status tandem_grammar_from_json_schema(const tandem_tokenizer *tok, const char *schema_json,
                                              tandem_grammar **out) {
    static const char fn[] = "tandem_grammar_from_json_schema";
    if (!out || !tok) return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: tok and out must not be NULL", fn);
    *out = NULL;
    json_t *schema;
    tandem_status st = TANDEM_OK;
    if (!schema_json) {
        schema = json_pack("{s:s}", "type", "object");
        if (!schema) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", fn);
    } else if ((st = parse_json(schema_json, fn, "schema_json", &schema))) {
        return st;
    }
    if (!json_is_object(schema) && !json_is_boolean(schema)) {
        json_decref(schema);
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: schema_json: a schema is a JSON object (or true/false)", fn);
    }
    char *text = add_json_style(schema) ? json_dumps(schema, JSON_COMPACT) : NULL;
    json_decref(schema);
    byte_buf b = {0};
    const bool ok = text && appendf(&b, "%s\nstart: %%json %s\n", LARK_OPTIONS, text) && byte_buf_append(&b, "", 1);
    free(text);
    if (!ok) {
        free(b.data);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", fn);
    }
    st = grammar_compile(tok, "lark", (const char *)b.data, fn, "schema_json", out);
    free(b.data);
    return st;
}

/* ---- tool calls ---- */

tandem_tool_grammar_params tandem_tool_grammar_default_params(void) {
    return (
        tandem_tool_grammar_params){.choice = TANDEM_TOOL_CHOICE_AUTO, .parallel_tool_calls = true, .thinking = true};
}

/* The id of an added token spelled text, or -1. */
static int32_t added_id(const tandem_tokenizer *tok, const char *text) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (tandem_tokenizer_encode(tok, text, strlen(text), true, &ids, &n)) return -1;
    const int32_t id = n == 1 && tokenizer_is_added(tok, ids[0]) ? ids[0] : -1;
    tandem_free(ids);
    return id;
}

/* The schema of one call object {"name": NAME, "arguments": ARGS} for tool i of the array; NULL with an error. */
static json_t *call_schema(const json_t *tool, size_t i, const char *fn, const char **name_out) {
    const json_t *f = json_object_get(tool, "function");
    const char *path = "function.";
    if (!json_is_object(f)) {
        f = tool;
        path = "";
    }
    if (!json_is_object(f)) {
        tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: tools_json: [%zu]: not an object", fn, i);
        return NULL;
    }
    const char *name = json_string_value(json_object_get(f, "name"));
    if (!name || !*name) {
        tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: tools_json: [%zu].%sname: missing, empty or not a string", fn, i,
                    path);
        return NULL;
    }
    json_t *params = json_object_get(f, "parameters");
    if (params && !json_is_object(params) && !json_is_boolean(params)) {
        tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: tools_json: [%zu].%sparameters: a schema is a JSON object", fn, i,
                    path);
        return NULL;
    }
    json_t *args = params ? json_incref(params) : json_pack("{s:s}", "type", "object");
    json_t *s = json_pack("{s:s, s:{s:{s:s}, s:o}, s:[s, s], s:b}", "type", "object", "properties", "name", "const",
                          name, "arguments", args, "required", "name", "arguments", "additionalProperties", 0);
    if (!s) tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", fn);
    *name_out = name;
    return s;
}

/* Keywords whose value is a map of names to schemas, and those whose value is data (never rebased). */
static bool is_schema_map(const char *k) {
    return !strcmp(k, "properties") || !strcmp(k, "patternProperties") || !strcmp(k, "$defs") ||
           !strcmp(k, "definitions") || !strcmp(k, "dependentSchemas");
}
static bool is_data(const char *k) {
    return !strcmp(k, "const") || !strcmp(k, "enum") || !strcmp(k, "default") || !strcmp(k, "examples") ||
           !strcmp(k, "required") || !strcmp(k, "dependentRequired");
}

/* A tool's parameters schema is nested in the calls schema at base ("/anyOf/2/properties/arguments"): its local
 * references ("#" and "#/…", which name its own root) are prefixed with base so that they still point into it, not
 * into the calls schema's root. Other references (anchors "#name", other documents) are left alone. depth bounds the
 * walk (a schema from jansson has no cycles, but may be deep). */
static bool rebase_refs(json_t *s, const char *base, int depth) {
    if (depth > 400) return true; /* deeper than llguidance compiles: it will refuse the schema itself */
    if (json_is_array(s)) {
        size_t i;
        json_t *v;
        json_array_foreach(s, i, v) if (!rebase_refs(v, base, depth + 1)) return false;
        return true;
    }
    if (!json_is_object(s)) return true;
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v) {
        if (!strcmp(k, "$ref") && json_is_string(v)) {
            const char *r = json_string_value(v);
            if (r[0] != '#' || (r[1] && r[1] != '/')) continue;
            const size_t nb = strlen(base), nr = strlen(r);
            char *t = malloc(nb + nr + 1);
            if (!t) return false;
            t[0] = '#';
            memcpy(t + 1, base, nb);
            memcpy(t + 1 + nb, r + 1, nr); /* with the NUL */
            const int err = json_string_set(v, t);
            free(t);
            if (err) return false;
        } else if (is_schema_map(k) && json_is_object(v)) {
            const char *name;
            json_t *sub;
            json_object_foreach(v, name, sub) if (!rebase_refs(sub, base, depth + 1)) return false;
        } else if (!is_data(k) && !rebase_refs(v, base, depth + 1)) {
            return false;
        }
    }
    return true;
}

/* One JSON schema for the calls allowed: the named tool's, or anyOf all the tools'. */
static tandem_status calls_schema(const tandem_tool_grammar_params *p, const char *fn, json_t **out) {
    json_t *tools;
    tandem_status st = parse_json(p->tools_json ? p->tools_json : "null", fn, "tools_json", &tools);
    if (st) return st;
    json_t *any = json_array();
    if (!json_is_array(tools)) st = tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: tools_json: not a JSON array", fn);
    for (size_t i = 0; !st && i < json_array_size(tools); i++) {
        const char *name = NULL;
        json_t *s = call_schema(json_array_get(tools, i), i, fn, &name);
        if (!s) {
            st = TANDEM_ERR_INVALID_ARG;
            break;
        }
        if (p->choice == TANDEM_TOOL_CHOICE_NAMED && strcmp(name, p->function_name) != 0) json_decref(s);
        else json_array_append_new(any, s);
    }
    if (!st && json_array_size(any) == 0)
        st = p->choice == TANDEM_TOOL_CHOICE_NAMED
                 ? tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: function_name: no tool in tools_json is named '%.200s'", fn,
                               p->function_name)
                 : tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: tools_json: no tools", fn);
    /* each tool's parameters where they end up: the schema itself (one tool) or anyOf[k] */
    for (size_t k = 0; !st && k < json_array_size(any); k++) {
        char base[64];
        if (json_array_size(any) == 1) snprintf(base, sizeof base, "/properties/arguments");
        else snprintf(base, sizeof base, "/anyOf/%zu/properties/arguments", k);
        json_t *args = json_object_get(json_object_get(json_array_get(any, k), "properties"), "arguments");
        if (!rebase_refs(args, base, 0)) st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", fn);
    }
    json_decref(tools);
    if (st) {
        json_decref(any);
        return st;
    }
    json_t *schema = json_array_size(any) == 1 ? json_incref(json_array_get(any, 0)) : json_pack("{s:O}", "anyOf", any);
    json_decref(any);
    if (!schema || !add_json_style(schema)) {
        json_decref(schema);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", fn);
    }
    *out = schema;
    return TANDEM_OK;
}

/* Appends "<[^a,b,…]>": any token but the listed ids (ids < 0 are skipped). */
static bool any_token_but(byte_buf *b, const int32_t *ids, size_t n) {
    bool ok = appendf(b, "<[^"), first = true;
    for (size_t i = 0; ok && i < n; i++) {
        if (ids[i] < 0) continue;
        ok = appendf(b, first ? "%d" : ",%d", ids[i]);
        first = false;
    }
    return ok && appendf(b, "]>\n");
}

/* The grammar (llguidance's Lark):
 *   start: reasoning WS? call …      REQUIRED / NAMED (a call, more when parallel)
 *   start: reasoning free calls?     AUTO (text of any tokens but <tool_call>; a call begins at <tool_call>)
 *   start: reasoning free            NONE
 * reasoning is "<think> any* </think>" (optional when thinking, required-and-open when reasoning_open, absent
 * otherwise); calls are "<tool_call>\n" JSON "\n</tool_call>" separated by spaces and newlines (WS, 1-16). The tags
 * are tokens, named by id: text spelling them byte by byte is text, as in the chat template's own rendering. */
tandem_status tandem_grammar_from_tools(const tandem_tokenizer *tok, const tandem_tool_grammar_params *p,
                                        tandem_grammar **out) {
    static const char fn[] = "tandem_grammar_from_tools";
    if (!out || !tok || !p) return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: tok, params and out must not be NULL", fn);
    *out = NULL;
    if (p->choice < TANDEM_TOOL_CHOICE_AUTO || p->choice > TANDEM_TOOL_CHOICE_NAMED)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: choice: %d is no tandem_tool_choice", fn, (int)p->choice);
    if (p->choice == TANDEM_TOOL_CHOICE_NAMED && (!p->function_name || !*p->function_name))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: function_name: needed with TANDEM_TOOL_CHOICE_NAMED", fn);
    const char *tags[4] = {"<tool_call>", "</tool_call>", "<think>", "</think>"};
    int32_t tag[4];
    for (int i = 0; i < 4; i++)
        if ((tag[i] = added_id(tok, tags[i])) < 0)
            return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: the tokenizer has no %s token", fn, tags[i]);
    const int32_t call_open = tag[0], call_close = tag[1], think_open = tag[2], think_close = tag[3];
    size_t n_eos = 0;
    const int32_t *eos = tandem_tokenizer_eos_ids(tok, &n_eos);

    json_t *schema = NULL;
    tandem_status st = TANDEM_OK;
    if (p->choice != TANDEM_TOOL_CHOICE_NONE && (st = calls_schema(p, fn, &schema))) return st;
    char *schema_text = schema ? json_dumps(schema, JSON_COMPACT) : NULL;
    json_decref(schema);
    if (schema && !schema_text) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", fn);

    byte_buf b = {0};
    bool ok = true;
    const bool forced = p->choice == TANDEM_TOOL_CHOICE_REQUIRED || p->choice == TANDEM_TOOL_CHOICE_NAMED;
    ok = appendf(&b, "%s\n", LARK_OPTIONS);
    if (p->reasoning_open) ok = ok && appendf(&b, "reasoning: think_token* <[%d]>\n", think_close);
    else if (p->thinking) ok = ok && appendf(&b, "reasoning: (<[%d]> think_token* <[%d]>)?\n", think_open, think_close);
    else ok = ok && appendf(&b, "reasoning: \"\"\n");
    /* inside reasoning anything goes but its end and the end of generation */
    int32_t *but = malloc(sizeof *but * (n_eos + 5));
    ok = ok && but;
    if (ok) {
        size_t n = 0;
        for (size_t i = 0; i < n_eos; i++) but[n++] = eos[i];
        but[n++] = think_close;
        ok = appendf(&b, "think_token: ") && any_token_but(&b, but, n);
        /* free text: neither the tags nor an end id (the end comes where the grammar may stop) */
        but[n++] = think_open;
        but[n++] = call_open;
        but[n++] = call_close;
        ok = ok && appendf(&b, "free_token: ") && any_token_but(&b, but, n);
    }
    free(but);
    if (p->choice == TANDEM_TOOL_CHOICE_NONE) {
        ok = ok && appendf(&b, "start: reasoning free_token*\n");
    } else {
        const char *more = p->parallel_tool_calls ? " (WS? call)*" : "";
        ok = ok && (forced ? appendf(&b, "start: reasoning WS? call%s\n", more)
                           : appendf(&b, "start: reasoning free_token* (call%s)?\n", more));
        ok = ok && appendf(&b, "call: <[%d]> \"\\n\" arguments \"\\n\" <[%d]>\n", call_open, call_close);
        ok = ok && appendf(&b, "WS: /[ \\n]{1,16}/\narguments: %%json %s\n", schema_text);
    }
    free(schema_text);
    const char nul = 0;
    if (!ok || !byte_buf_append(&b, &nul, 1)) {
        free(b.data);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", fn);
    }
    st = grammar_compile(tok, "lark", (const char *)b.data, fn, "tools_json", out);
    free(b.data);
    return st;
}
