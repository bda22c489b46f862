/* fuzz_chat_parse.c — the streaming chat output parser (src/chat/chat_parse.c) on arbitrary text. Input: one byte of
 * flags (bit 0 reasoning_open, bit 1 tool calls off), two bytes seeding where the text is cut, then the text.
 *  - the text fed whole, cut at the seeded places, and (up to 4 KiB) byte by byte gives the same message, byte for
 *    byte, and each time the deltas applied as tandem.h says (text appended, dropped calls removed) add up to it;
 *  - deltas are whole UTF-8, never empty, and tool deltas follow the order TOOL_CALL, ARGUMENTS…, END or DROPPED;
 *  - the text with bad UTF-8 replaced as Python's errors="replace" does (fuzz_utf8_replace) parses the same;
 *  - the message is JSON (jansson), every call has a non-empty name and arguments that jansson reads as JSON;
 *  - when the callback says stop, nothing more is delivered and the message is what was delivered.
 * Seeds: the goldens of tests/golden/chat_parse (tests/fuzz/make_corpus.py). */
#include <jansson.h>

#include "fuzz_common.h"

typedef struct seen_call {
    char *id, *name;
    byte_buf args;
    int state; /* 0 open, 1 ended, 2 dropped */
} seen_call;

typedef struct collect {
    byte_buf reasoning, content;
    seen_call *calls;
    int n_calls, open;
    int n_deltas, stop_at; /* the callback says stop on delta number stop_at (-1: never) */
} collect;

static void collect_free(collect *c) {
    free(c->reasoning.data);
    free(c->content.data);
    for (int i = 0; i < c->n_calls; i++) free(c->calls[i].id), free(c->calls[i].name), free(c->calls[i].args.data);
    free(c->calls);
}

static bool on_delta(const tandem_chat_delta *d, void *user) {
    collect *c = user;
    FUZZ_CHECK(d->text != NULL && fuzz_utf8_valid((const uint8_t *)d->text, d->len));
    switch (d->kind) {
    case TANDEM_CHAT_DELTA_REASONING:
    case TANDEM_CHAT_DELTA_CONTENT:
        FUZZ_CHECK(d->len > 0 && d->tool_index == -1 && !d->tool_id && !d->tool_name);
        FUZZ_CHECK(
            byte_buf_append(d->kind == TANDEM_CHAT_DELTA_REASONING ? &c->reasoning : &c->content, d->text, d->len));
        break;
    case TANDEM_CHAT_DELTA_TOOL_CALL:
        FUZZ_CHECK(c->open == -1 && d->tool_index == c->n_calls);
        FUZZ_CHECK(d->tool_id && strlen(d->tool_id) == 29 && !strncmp(d->tool_id, "call_", 5));
        FUZZ_CHECK(d->tool_name && d->tool_name[0] && d->len == 0);
        c->calls = realloc(c->calls, (size_t)(c->n_calls + 1) * sizeof *c->calls);
        FUZZ_CHECK(c->calls != NULL);
        c->calls[c->n_calls] = (seen_call){.id = strdup(d->tool_id), .name = strdup(d->tool_name)};
        c->open = c->n_calls++;
        break;
    default:
        FUZZ_CHECK(c->open >= 0 && d->tool_index == c->open);
        FUZZ_CHECK(!strcmp(d->tool_id, c->calls[c->open].id) && !strcmp(d->tool_name, c->calls[c->open].name));
        if (d->kind == TANDEM_CHAT_DELTA_TOOL_ARGUMENTS) {
            FUZZ_CHECK(d->len > 0 && byte_buf_append(&c->calls[c->open].args, d->text, d->len));
        } else {
            FUZZ_CHECK(d->len == 0);
            c->calls[c->open].state = d->kind == TANDEM_CHAT_DELTA_TOOL_END ? 1 : 2;
            c->open = -1;
        }
    }
    return c->n_deltas++ != c->stop_at;
}

static json_t *jstr(const byte_buf *b) { return json_stringn(b->len ? (const char *)b->data : "", b->len); }

static json_t *collected_message(const collect *c) {
    json_t *m = json_object(), *calls = json_array();
    int n_ended = 0;
    for (int i = 0; i < c->n_calls; i++) {
        if (c->calls[i].state != 1) continue;
        n_ended++;
        json_array_append_new(calls,
                              json_pack("{s:s,s:s,s:{s:s,s:o}}", "id", c->calls[i].id, "type", "function", "function",
                                        "name", c->calls[i].name, "arguments", jstr(&c->calls[i].args)));
    }
    json_object_set_new(m, "role", json_string("assistant"));
    json_object_set_new(m, "content", c->content.len == 0 && n_ended ? json_null() : jstr(&c->content));
    if (c->reasoning.len) json_object_set_new(m, "reasoning_content", jstr(&c->reasoning));
    if (n_ended) json_object_set_new(m, "tool_calls", calls);
    else json_decref(calls);
    return m;
}

/* Parses text fed in pieces ending at cuts[0..n_cuts) and the end, the callback saying stop on delta stop_at (-1:
 * never); returns the message, checking that the deltas add up to it. */
static char *parse(const tandem_chat_parser_params *pp, const char *text, size_t len, const size_t *cuts, size_t n_cuts,
                   int stop_at) {
    tandem_chat_parser *p = NULL;
    FUZZ_CHECK(tandem_chat_parser_create(pp, &p) == TANDEM_OK);
    collect c = {.open = -1, .stop_at = stop_at};
    size_t at = 0;
    bool stopped = false;
    for (size_t i = 0; i <= n_cuts + 1; i++) {
        size_t to = i < n_cuts ? cuts[i] : len;
        tandem_status st = i <= n_cuts ? tandem_chat_parser_feed(p, text + at, to - at, on_delta, &c)
                                       : tandem_chat_parser_finish(p, on_delta, &c);
        at = to;
        if (st == TANDEM_ERR_ABORTED) stopped = true; /* and stays so */
        else FUZZ_CHECK(st == TANDEM_OK && !stopped);
    }
    FUZZ_CHECK(stopped == (stop_at >= 0 && c.n_deltas > stop_at));
    FUZZ_CHECK(c.n_deltas <= stop_at + 1 || stop_at < 0);
    if (stopped) c.open = -1; /* a call cut off by the stop is not in the message */
    FUZZ_CHECK(c.open == -1);
    char *json = NULL;
    FUZZ_CHECK(tandem_chat_parser_message_json(p, &json) == TANDEM_OK);
    json_error_t err;
    json_t *got = json_loads(json, JSON_ALLOW_NUL, &err), *want = collected_message(&c);
    FUZZ_CHECK(got != NULL);
    if (!json_equal(got, want)) {
        fprintf(stderr, "fuzz_chat_parse: the deltas do not add up to the message %s\n", json);
        abort();
    }
    json_t *calls = json_object_get(got, "tool_calls");
    for (size_t i = 0; i < json_array_size(calls); i++) {
        json_t *fn = json_object_get(json_array_get(calls, i), "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        FUZZ_CHECK(name && name[0]);
        json_t *args = json_object_get(fn, "arguments");
        json_t *v = json_loadb(json_string_value(args), json_string_length(args),
                               JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &err);
        /* jansson refuses numbers out of a double's range and \u escapes of lone surrogates, which JSON's grammar
         * allows (Python's json and JavaScript's JSON.parse accept both) */
        if (!v && !strstr(err.text, "overflow") && !strstr(err.text, "too big") &&
            !strstr(err.text, "invalid Unicode")) {
            fprintf(stderr, "fuzz_chat_parse: arguments are not JSON (%s): %s\n", err.text, json_string_value(args));
            abort();
        }
        json_decref(v);
    }
    json_decref(got);
    json_decref(want);
    collect_free(&c);
    tandem_chat_parser_free(p);
    return json;
}

static void check_same(const char *a, const char *b, const char *how) {
    if (strcmp(a, b) != 0) {
        fprintf(stderr, "fuzz_chat_parse: %s gives another message:\n  %s\n  %s\n", how, b, a);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    tandem_chat_parser_params pp = tandem_chat_parser_default_params();
    pp.reasoning_open = data[0] & 1;
    pp.parse_tool_calls = !(data[0] & 2);
    pp.id_seed = data[0];
    uint32_t seed = (uint32_t)data[1] << 8 | data[2];
    const char *text = (const char *)data + 3;
    size_t len = size - 3;

    char *whole = parse(&pp, text, len, NULL, 0, -1);

    size_t *cuts = calloc(len + 1, sizeof *cuts);
    FUZZ_CHECK(cuts != NULL);
    size_t n = 0;
    uint32_t x = seed * 2654435761u + 1;
    for (size_t k = 1; k < len; k++) {
        x = x * 1664525u + 1013904223u;
        if ((x >> 24) % (1 + (seed & 7)) == 0) cuts[n++] = k; /* density from 1 in 1 to 1 in 8 */
    }
    char *cut = parse(&pp, text, len, cuts, n, -1);
    check_same(whole, cut, "cutting the text");
    free(cut);
    free(parse(&pp, text, len, cuts, n, data[1] % 16)); /* stopped early: the deltas so far add up to the message */
    if (len <= 4096 && len > 1) {
        for (size_t k = 0; k + 1 < len; k++) cuts[k] = k + 1;
        char *bytes = parse(&pp, text, len, cuts, len - 1, -1);
        check_same(whole, bytes, "feeding byte by byte");
        free(bytes);
    }
    free(cuts);

    size_t clean_len;
    char *clean = fuzz_utf8_replace(data + 3, len, &clean_len);
    char *replaced = parse(&pp, clean, clean_len, NULL, 0, -1);
    check_same(whole, replaced, "replacing bad UTF-8 first");
    free(replaced);
    free(clean);
    free(whole);
    return 0;
}
