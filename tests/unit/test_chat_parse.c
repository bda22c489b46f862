/* test_chat_parse.c — the streaming chat output parser (src/chat/chat_parse.c) against the goldens of
 * tests/gen/make_chat_parse_golden.py (Qwen3's template rendered by jinja2, plus hand-written raw outputs).
 * Every golden is parsed whole, split at every byte boundary, fed byte by byte and cut at random places: the message
 * must be the expected one each time, and the deltas, applied as tandem.h says, must add up to it. */
#include <jansson.h>
#include <stdlib.h>

#include "tandem_base.h"
#include "test.h"

static const char *const TAGS[] = {"<think>", "</think>", "<tool_call>", "</tool_call>"};
static int printed_failures;

/* ---- the deltas, applied as a client would (tandem.h's contract) ---- */

enum { CALL_OPEN, CALL_ENDED, CALL_DROPPED };

typedef struct seen_call {
    char *id, *name;
    byte_buf args;
    int state;
} seen_call;

typedef struct collect {
    byte_buf reasoning, content;
    seen_call calls[64];
    int n_calls;
    int open;              /* the call that text and arguments deltas may refer to; -1: none */
    int n_deltas, stop_at; /* the callback returns false on delta number stop_at (-1: never) */
    bool clean;            /* no reasoning or content delta may hold tag text */
    int bad;               /* contract violations seen */
    const char *why;
} collect;

static void collect_free(collect *c) {
    free(c->reasoning.data);
    free(c->content.data);
    for (int i = 0; i < c->n_calls; i++) free(c->calls[i].id), free(c->calls[i].name), free(c->calls[i].args.data);
    memset(c, 0, sizeof *c);
}

static bool utf8_valid(const char *s, size_t n) {
    const uint8_t *p = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        size_t need = c < 0x80                 ? 1
                      : c >= 0xC2 && c <= 0xDF ? 2
                      : c >= 0xE0 && c <= 0xEF ? 3
                      : c >= 0xF0 && c <= 0xF4 ? 4
                                               : 0;
        if (!need || i + need > n) return false;
        for (size_t k = 1; k < need; k++) {
            uint8_t lo = 0x80, hi = 0xBF;
            if (k == 1 && c == 0xE0) lo = 0xA0;
            if (k == 1 && c == 0xED) hi = 0x9F;
            if (k == 1 && c == 0xF0) lo = 0x90;
            if (k == 1 && c == 0xF4) hi = 0x8F;
            if (p[i + k] < lo || p[i + k] > hi) return false;
        }
        i += need;
    }
    return true;
}

static bool contains(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(s + i, needle, k)) return true;
    return false;
}

static void violation(collect *c, const char *why) {
    c->bad++;
    if (!c->why) c->why = why;
}

static bool on_delta(const tandem_chat_delta *d, void *user) {
    collect *c = user;
    int n = c->n_deltas++;
    if (!d->text || (d->len && !utf8_valid(d->text, d->len))) violation(c, "delta text not UTF-8");
    switch (d->kind) {
    case TANDEM_CHAT_DELTA_REASONING:
    case TANDEM_CHAT_DELTA_CONTENT:
        if (d->len == 0) violation(c, "empty text delta");
        if (d->tool_index != -1 || d->tool_id || d->tool_name) violation(c, "text delta with tool fields");
        for (size_t t = 0; c->clean && t < sizeof TAGS / sizeof *TAGS; t++)
            if (contains(d->text, d->len, TAGS[t])) violation(c, "tag text in a delta");
        if (!byte_buf_append(d->kind == TANDEM_CHAT_DELTA_REASONING ? &c->reasoning : &c->content, d->text, d->len))
            violation(c, "oom");
        break;
    case TANDEM_CHAT_DELTA_TOOL_CALL:
        if (c->open >= 0) violation(c, "a call starts while another is open");
        if (d->tool_index != c->n_calls || c->n_calls == 64) {
            violation(c, "call index out of order");
            break;
        }
        if (!d->tool_id || strlen(d->tool_id) != 29 || strncmp(d->tool_id, "call_", 5) != 0) violation(c, "bad id");
        for (int i = 5; d->tool_id && d->tool_id[i]; i++)
            if (!((d->tool_id[i] >= 'a' && d->tool_id[i] <= 'z') || (d->tool_id[i] >= 'A' && d->tool_id[i] <= 'Z') ||
                  (d->tool_id[i] >= '0' && d->tool_id[i] <= '9')))
                violation(c, "bad id character");
        if (!d->tool_name || !d->tool_name[0]) violation(c, "no name");
        c->calls[c->n_calls] = (seen_call){.id = strdup(d->tool_id ? d->tool_id : ""),
                                           .name = strdup(d->tool_name ? d->tool_name : ""),
                                           .state = CALL_OPEN};
        c->open = c->n_calls++;
        break;
    default: /* TOOL_ARGUMENTS, TOOL_END, TOOL_DROPPED: about the open call */
        if (c->open < 0 || d->tool_index != c->open) {
            violation(c, "tool delta without its open call");
            break;
        }
        if (strcmp(d->tool_id, c->calls[c->open].id) || strcmp(d->tool_name, c->calls[c->open].name))
            violation(c, "tool delta names another call");
        if (d->kind == TANDEM_CHAT_DELTA_TOOL_ARGUMENTS) {
            if (d->len == 0) violation(c, "empty arguments delta");
            if (!byte_buf_append(&c->calls[c->open].args, d->text, d->len)) violation(c, "oom");
        } else {
            if (d->len != 0) violation(c, "end/drop delta with text");
            c->calls[c->open].state = d->kind == TANDEM_CHAT_DELTA_TOOL_END ? CALL_ENDED : CALL_DROPPED;
            c->open = -1;
        }
        break;
    }
    return n != c->stop_at;
}

static json_t *jstr(const byte_buf *b) { return json_stringn(b->len ? (const char *)b->data : "", b->len); }

/* The message the deltas add up to (the same null / omission rules as the parser's). */
static json_t *collected_message(const collect *c) {
    json_t *m = json_object(), *calls = json_array();
    int n_ended = 0;
    for (int i = 0; i < c->n_calls; i++) {
        const seen_call *s = &c->calls[i];
        if (s->state != CALL_ENDED) continue;
        n_ended++;
        json_array_append_new(calls, json_pack("{s:s,s:s,s:{s:s,s:o}}", "id", s->id, "type", "function", "function",
                                               "name", s->name, "arguments", jstr(&s->args)));
    }
    json_object_set_new(m, "role", json_string("assistant"));
    json_object_set_new(m, "content", c->content.len == 0 && n_ended ? json_null() : jstr(&c->content));
    if (c->reasoning.len) json_object_set_new(m, "reasoning_content", jstr(&c->reasoning));
    if (n_ended) json_object_set_new(m, "tool_calls", calls);
    else json_decref(calls);
    return m;
}

/* ---- running the parser ---- */

typedef struct run_out {
    char *json; /* the parser's message */
    collect c;
} run_out;

/* Parses text cut at the n_cuts sorted positions cuts[]. */
static bool run_cuts(const json_t *kase, const char *text, size_t len, const size_t *cuts, size_t n_cuts, uint64_t seed,
                     run_out *out) {
    memset(out, 0, sizeof *out);
    out->c.open = -1;
    out->c.stop_at = -1;
    out->c.clean = json_is_true(json_object_get(kase, "clean"));
    tandem_chat_parser_params pp = tandem_chat_parser_default_params();
    pp.reasoning_open = json_is_true(json_object_get(kase, "reasoning_open"));
    pp.parse_tool_calls = json_is_true(json_object_get(kase, "parse_tool_calls"));
    pp.id_seed = seed;
    tandem_chat_parser *p = NULL;
    if (tandem_chat_parser_create(&pp, &p) != TANDEM_OK) return false;
    size_t at = 0;
    bool ok = true;
    for (size_t i = 0; ok && i <= n_cuts; i++) {
        size_t to = i < n_cuts ? cuts[i] : len;
        ok = tandem_chat_parser_feed(p, text + at, to - at, on_delta, &out->c) == TANDEM_OK;
        at = to;
    }
    ok = ok && tandem_chat_parser_finish(p, on_delta, &out->c) == TANDEM_OK;
    ok = ok && tandem_chat_parser_message_json(p, &out->json) == TANDEM_OK;
    tandem_chat_parser_free(p);
    return ok;
}

static void run_free(run_out *r) {
    tandem_free(r->json);
    collect_free(&r->c);
}

/* The parser's message equals the expected one (ids aside, checked by on_delta and against the deltas). */
static bool matches_expected(const char *json, const json_t *expected) {
    json_t *got = json_loads(json, JSON_ALLOW_NUL, NULL);
    if (!got) return false;
    json_t *calls = json_object_get(got, "tool_calls");
    for (size_t i = 0; i < json_array_size(calls); i++) json_object_del(json_array_get(calls, i), "id");
    bool eq = json_equal(got, (json_t *)expected);
    json_decref(got);
    return eq;
}

static bool deltas_add_up(const run_out *r) {
    json_t *got = json_loads(r->json, JSON_ALLOW_NUL, NULL), *want = collected_message(&r->c);
    bool eq = got && json_equal(got, want) && r->c.open == -1;
    json_decref(got);
    json_decref(want);
    return eq;
}

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* One way of cutting a case: the message must be byte-identical to the whole parse's, and the deltas add up. */
static void check_cut(const json_t *kase, const char *text, size_t len, const char *whole, const size_t *cuts,
                      size_t n_cuts, const char *how) {
    const char *name = json_string_value(json_object_get(kase, "name"));
    run_out r;
    bool ran = run_cuts(kase, text, len, cuts, n_cuts, 7, &r);
    bool same = ran && r.json && strcmp(r.json, whole) == 0;
    bool adds = ran && r.json && deltas_add_up(&r);
    test_checks++;
    if (!(same && adds && r.c.bad == 0)) {
        test_failures++;
        if (printed_failures++ < 20)
            fprintf(stderr, "%s: %s (first cut %zu): %s\n  got  %s\n  want %s\n", name, how, n_cuts ? cuts[0] : len,
                    !ran    ? "parser failed"
                    : !same ? "message differs"
                    : !adds ? "deltas do not add up"
                            : r.c.why,
                    r.json ? r.json : "(none)", whole);
    }
    run_free(&r);
}

static void check_case(const json_t *kase) {
    const char *name = json_string_value(json_object_get(kase, "name"));
    const json_t *jtext = json_object_get(kase, "text");
    const char *text = json_string_value(jtext);
    size_t len = json_string_length(jtext);
    const json_t *expected = json_object_get(kase, "expected");

    run_out whole;
    CHECK_MSG(run_cuts(kase, text, len, NULL, 0, 7, &whole), "%s: %s", name, tandem_last_error());
    if (!whole.json) {
        run_free(&whole);
        return;
    }
    CHECK_MSG(matches_expected(whole.json, expected), "%s:\n  got  %s\n  want %s", name, whole.json,
              json_dumps(expected, JSON_COMPACT | JSON_ALLOW_NUL));
    CHECK_MSG(deltas_add_up(&whole), "%s: the deltas do not add up to %s", name, whole.json);
    CHECK_MSG(whole.c.bad == 0, "%s: %s", name, whole.c.why);

    size_t *cuts = calloc(len + 1, sizeof *cuts);
    for (size_t k = 0; k <= len; k++) {
        cuts[0] = k;
        check_cut(kase, text, len, whole.json, cuts, 1, "two pieces");
    }
    for (size_t k = 0; k < len; k++) cuts[k] = k + 1;
    check_cut(kase, text, len, whole.json, cuts, len ? len - 1 : 0, "byte by byte");
    for (int t = 0; t < 40; t++) {
        size_t n = 0;
        for (size_t k = 1; k < len; k++)
            if (rng_next() % 4 == 0) cuts[n++] = k;
        check_cut(kase, text, len, whole.json, cuts, n, "random cuts");
    }
    free(cuts);

    /* Stopping: the callback says false on delta k; nothing more is delivered, and the message is what the
     * deltas up to k add up to. */
    for (int k = 0;; k++) {
        run_out r = {0};
        r.c.open = -1;
        r.c.stop_at = k;
        tandem_chat_parser_params pp = tandem_chat_parser_default_params();
        pp.reasoning_open = json_is_true(json_object_get(kase, "reasoning_open"));
        pp.parse_tool_calls = json_is_true(json_object_get(kase, "parse_tool_calls"));
        pp.id_seed = 7;
        tandem_chat_parser *p = NULL;
        CHECK_OK(tandem_chat_parser_create(&pp, &p));
        size_t half = len / 2;
        tandem_status a = tandem_chat_parser_feed(p, text, half, on_delta, &r.c);
        tandem_status b = tandem_chat_parser_feed(p, text + half, len - half, on_delta, &r.c);
        tandem_status f = tandem_chat_parser_finish(p, on_delta, &r.c);
        if (r.c.n_deltas <= k) { /* fewer deltas than k + 1: the callback never said stop */
            CHECK_MSG(a == TANDEM_OK && b == TANDEM_OK && f == TANDEM_OK && (k > 0 || whole.c.n_deltas == 0),
                      "%s: k %d", name, k);
            tandem_chat_parser_free(p);
            run_free(&r);
            break;
        }
        CHECK_MSG(r.c.n_deltas == k + 1, "%s: stop at %d: %d deltas", name, k, r.c.n_deltas);
        /* each call succeeds until the one that stopped; that one and every later one say ABORTED */
        CHECK_MSG(f == TANDEM_ERR_ABORTED && (a == TANDEM_OK || b == TANDEM_ERR_ABORTED) &&
                      (a == TANDEM_OK || a == TANDEM_ERR_ABORTED) && (b == TANDEM_OK || b == TANDEM_ERR_ABORTED),
                  "%s: stop at %d: %d %d %d", name, k, a, b, f);
        CHECK(strstr(tandem_last_error(), "stop") != NULL);
        r.c.open = -1; /* a call may be cut off: the message leaves it out, as collected_message does */
        CHECK_OK(tandem_chat_parser_message_json(p, &r.json));
        CHECK_MSG(r.json && deltas_add_up(&r), "%s: stopped at %d: %s", name, k, r.json);
        tandem_chat_parser_free(p);
        run_free(&r);
    }
    run_free(&whole);
}

/* ---- beyond the goldens ---- */

static char *parse_message(const char *const *pieces, const size_t *lens, int n, tandem_chat_parser_params pp) {
    tandem_chat_parser *p = NULL;
    char *json = NULL;
    if (tandem_chat_parser_create(&pp, &p) != TANDEM_OK) return NULL;
    bool ok = true;
    for (int i = 0; ok && i < n; i++) ok = tandem_chat_parser_feed(p, pieces[i], lens[i], NULL, NULL) == TANDEM_OK;
    if (ok && tandem_chat_parser_finish(p, NULL, NULL) == TANDEM_OK) tandem_chat_parser_message_json(p, &json);
    tandem_chat_parser_free(p);
    return json;
}

static void test_utf8_input(void) {
    tandem_chat_parser_params pp = tandem_chat_parser_default_params();
    /* Python: b"a\xffb\xe2\x82 \xed\xa0\x80 \xf0\x9f\x99".decode("utf-8", "replace") */
    const char *bad[] = {
        "a\xff"
        "b\xe2\x82 \xed\xa0\x80 \xf0\x9f\x99"};
    size_t bad_len[] = {strlen(bad[0])};
    char *json = parse_message(bad, bad_len, 1, pp);
    CHECK_MSG(json && !strcmp(json,
                              "{\"role\":\"assistant\",\"content\":\"a\xEF\xBF\xBD"
                              "b\xEF\xBF\xBD \xEF\xBF\xBD"
                              "\xEF\xBF\xBD\xEF\xBF\xBD \xEF\xBF\xBD\"}"),
              "%s", json ? json : "(null)");
    tandem_free(json);
    /* A character cut between pieces stays whole. */
    const char *euro[] = {"<think>\n\xE2", "\x82", "\xAC</think>\n\n\xF0\x9F", "\x99\x82"};
    size_t euro_len[] = {9, 1, 13, 2};
    json = parse_message(euro, euro_len, 4, pp);
    CHECK_MSG(json && !strcmp(json,
                              "{\"role\":\"assistant\",\"content\":\"\xF0\x9F\x99\x82\",\"reasoning_content\":"
                              "\"\xE2\x82\xAC\"}"),
              "%s", json ? json : "(null)");
    tandem_free(json);
}

static void test_ids(void) {
    const char *text[] = {"<tool_call>{\"name\": \"a\"}</tool_call><tool_call>{\"name\": \"b\"}</tool_call>"};
    size_t len[] = {strlen(text[0])};
    tandem_chat_parser_params pp = tandem_chat_parser_default_params();
    pp.id_seed = 1;
    char *a = parse_message(text, len, 1, pp), *b = parse_message(text, len, 1, pp);
    pp.id_seed = 2;
    char *c = parse_message(text, len, 1, pp);
    json_t *ja = json_loads(a ? a : "", 0, NULL), *jc = json_loads(c ? c : "", 0, NULL);
    const char *id0 = json_string_value(json_object_get(json_array_get(json_object_get(ja, "tool_calls"), 0), "id"));
    const char *id1 = json_string_value(json_object_get(json_array_get(json_object_get(ja, "tool_calls"), 1), "id"));
    const char *other = json_string_value(json_object_get(json_array_get(json_object_get(jc, "tool_calls"), 0), "id"));
    CHECK(a && b && !strcmp(a, b)); /* the same seed gives the same ids */
    CHECK(id0 && id1 && other && strcmp(id0, id1) != 0 && strcmp(id0, other) != 0);
    json_decref(ja);
    json_decref(jc);
    tandem_free(a);
    tandem_free(b);
    tandem_free(c);
}

static void test_api_errors(void) {
    tandem_chat_parser *p = NULL;
    CHECK_FAILS(tandem_chat_parser_create(NULL, NULL), TANDEM_ERR_INVALID_ARG, "out");
    CHECK_OK(tandem_chat_parser_create(NULL, &p)); /* NULL params: the defaults */
    CHECK_FAILS(tandem_chat_parser_feed(p, NULL, 3, NULL, NULL), TANDEM_ERR_INVALID_ARG, "text");
    CHECK_OK(tandem_chat_parser_feed(p, NULL, 0, NULL, NULL));
    const char *call = "<tool_call>{\"name\": \"x\"}";
    CHECK_OK(tandem_chat_parser_feed(p, call, strlen(call), NULL, NULL));
    char *json = NULL;
    CHECK_OK(tandem_chat_parser_message_json(p, &json));
    CHECK(json && strstr(json, "\"content\":null,\"tool_calls\":[{\"id\":\"call_"));
    CHECK(json && strstr(json, "\"name\":\"x\",\"arguments\":\"{}\""));
    tandem_free(json);
    CHECK_OK(tandem_chat_parser_finish(p, NULL, NULL));
    CHECK_OK(tandem_chat_parser_finish(p, NULL, NULL));
    CHECK_FAILS(tandem_chat_parser_feed(p, "x", 1, NULL, NULL), TANDEM_ERR_INVALID_ARG, "finished");
    CHECK_FAILS(tandem_chat_parser_message_json(p, NULL), TANDEM_ERR_INVALID_ARG, "json");
    tandem_chat_parser_free(p);
    tandem_chat_parser_free(NULL);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_chat_parse GOLDEN_DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/chat_parse/cases.json", argv[1]);
    json_error_t err;
    json_t *doc = json_load_file(path, JSON_ALLOW_NUL, &err);
    if (!doc) {
        fprintf(stderr, "test_chat_parse: %s:%d: %s\n", path, err.line, err.text);
        return 1;
    }
    json_t *cases = json_object_get(doc, "cases");
    CHECK(json_array_size(cases) >= 50);
    for (size_t i = 0; i < json_array_size(cases); i++) check_case(json_array_get(cases, i));
    json_decref(doc);
    test_utf8_input();
    test_ids();
    test_api_errors();
    return test_summary();
}
