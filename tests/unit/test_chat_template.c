/* test_chat_template.c — the chat-template interpreter against jinja2: every case of tests/golden/chat/cases.json
 * (tests/gen/make_chat_golden.py) rendered byte for byte, and bad templates failing with clear errors.
 * argv: GOLDEN_DIR QWEN3_TOKENIZER_DIR. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tandem.h"
#include "test.h"

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    s[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return s;
}

/* Where two renders part, for the failure message. */
static void show_diff(const char *name, const char *want, size_t want_n, const char *got, size_t got_n) {
    size_t i = 0;
    while (i < want_n && i < got_n && want[i] == got[i]) i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr,
            "%s: differs at byte %zu (expected %zu bytes, got %zu)\n  expected: \"%.*s\"\n  got:      \"%.*s\"\n", name,
            i, want_n, got_n, (int)((want_n - from) < 100 ? want_n - from : 100), want + from,
            (int)((got_n - from) < 100 ? got_n - from : 100), got + from);
}

static void run_golden(const char *golden_dir, const char *qwen3_template) {
    char path[4096];
    snprintf(path, sizeof path, "%s/chat/cases.json", golden_dir);
    json_error_t e;
    json_t *cases = json_load_file(path, 0, &e);
    CHECK_MSG(cases != NULL, "%s: %s", path, e.text);
    if (!cases) return;
    CHECK(json_array_size(cases) >= 50);
    size_t n_qwen3 = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *which = json_string_value(json_object_get(c, "template"));
        char *source;
        size_t source_len;
        if (!strcmp(which, "qwen3")) {
            source = strdup(qwen3_template);
            source_len = strlen(source);
            n_qwen3++;
        } else {
            snprintf(path, sizeof path, "%s/chat/%s", golden_dir, which);
            source = read_text(path, &source_len);
            CHECK_MSG(source != NULL, "%s: cannot read %s", name, path);
            if (!source) continue;
        }
        tandem_chat_template *t = NULL;
        tandem_status st = tandem_chat_template_parse(source, source_len, which, &t);
        CHECK_MSG(st == TANDEM_OK, "%s: parse: %s", name, tandem_last_error());
        free(source);
        if (st) continue;
        tandem_chat_render_params p = tandem_chat_render_default_params();
        p.add_generation_prompt = json_is_true(json_object_get(c, "add_generation_prompt"));
        json_t *think = json_object_get(c, "enable_thinking");
        p.enable_thinking = think ? (int32_t)json_integer_value(think) : -1;
        char *tools = json_object_get(c, "tools") ? json_dumps(json_object_get(c, "tools"), JSON_ENCODE_ANY) : NULL;
        char *extra = json_object_get(c, "extra") ? json_dumps(json_object_get(c, "extra"), 0) : NULL;
        char *messages = json_dumps(json_object_get(c, "messages"), 0);
        p.tools_json = tools;
        p.extra_context_json = extra;
        p.eos_token = json_string_value(json_object_get(c, "eos_token"));
        p.bos_token = json_string_value(json_object_get(c, "bos_token"));
        p.now_unix = json_integer_value(json_object_get(c, "now"));
        char *text = NULL;
        size_t text_len = 0;
        st = tandem_chat_render(t, messages, strlen(messages), &p, &text, &text_len);
        const char *want_error = json_string_value(json_object_get(c, "error"));
        if (want_error) {
            CHECK_MSG(st != TANDEM_OK && strstr(tandem_last_error(), want_error),
                      "%s: expected the error \"%s\", got %d: %s", name, want_error, st,
                      st ? tandem_last_error() : "(rendered)");
        } else {
            json_t *want = json_object_get(c, "expected");
            CHECK_MSG(st == TANDEM_OK, "%s: render: %s", name, tandem_last_error());
            if (!st) {
                bool same = text_len == json_string_length(want) && !memcmp(text, json_string_value(want), text_len);
                CHECK_MSG(same, "%s: the render differs from jinja2's", name);
                if (!same) show_diff(name, json_string_value(want), json_string_length(want), text, text_len);
                CHECK(strlen(text) == text_len);
            }
        }
        tandem_free(text);
        free(tools);
        free(extra);
        free(messages);
        tandem_chat_template_free(t);
    }
    CHECK(n_qwen3 >= 30);
    json_decref(cases);
}

/* ---- bad templates and bad inputs ---- */

static void expect_parse_error(const char *src, const char *needle) {
    tandem_chat_template *t = (tandem_chat_template *)1;
    CHECK_FAILS(tandem_chat_template_parse(src, strlen(src), "bad.jinja", &t), TANDEM_ERR_FORMAT, needle);
    CHECK(t == NULL);
}

static void expect_render_error(const char *src, const char *messages, tandem_status want, const char *needle) {
    tandem_chat_template *t = NULL;
    CHECK_OK(tandem_chat_template_parse(src, strlen(src), "bad.jinja", &t));
    if (!t) return;
    char *text = (char *)1;
    size_t n = 7;
    CHECK_FAILS(tandem_chat_render(t, messages, strlen(messages), NULL, &text, &n), want, needle);
    CHECK(text == NULL && n == 0);
    tandem_chat_template_free(t);
}

static void test_bad_templates(void) {
    /* syntax errors name the line and column */
    expect_parse_error("hello\n{% if x %}unclosed",
                       "chat template (bad.jinja): line 2, column 19: unexpected end of template: expected '{% endif "
                       "%}'");
    expect_parse_error("{{ 1 + }}", "line 1, column 8: unexpected '}}'");
    expect_parse_error("{{ x | no_such_filter }}", "no filter named 'no_such_filter'");
    expect_parse_error("{{ x is no_such_test }}", "no test named 'no_such_test'");
    expect_parse_error("a\n\n  {% endfor %}", "line 3, column 6: unexpected 'endfor' outside any block");
    expect_parse_error("{% include 'x.jinja' %}", "the 'include' statement is not supported");
    expect_parse_error("{{ 'unterminated }}", "unterminated string literal");
    expect_parse_error("{# never closed", "missing end of comment tag");
    expect_parse_error("{% break %}", "'break' outside a loop");
    expect_parse_error("{{ (((((1 }}", "line 1, column 11: unexpected '}': ')' expected");
    expect_parse_error("{{ x[1:2:3:4] }}", "at most three parts");
    expect_parse_error("{{ 99999999999999999999 }}", "integer literal too large");
    expect_parse_error("{{ '\\x4' }}", "truncated");
    {
        char deep[4000];
        size_t n = 0;
        n += (size_t)snprintf(deep, sizeof deep, "{{ ");
        for (int i = 0; i < 1000; i++) deep[n++] = '[';
        deep[n] = '\0';
        expect_parse_error(deep, "brackets nest too deeply");
        n = (size_t)snprintf(deep, sizeof deep, "{{ ");
        for (int i = 0; i < 900; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "not ");
        snprintf(deep + n, sizeof deep - n, "x }}");
        expect_parse_error(deep, "nests too deeply");
    }
    expect_parse_error("\xff\xfe", "not valid UTF-8");

    /* runtime errors, and the sandbox's limits */
    const char *msgs = "[{\"role\": \"user\", \"content\": \"hi\"}]";
    expect_render_error("{{ raise_exception('no tools allowed') }}", msgs, TANDEM_ERR_INVALID_ARG,
                        "chat template (bad.jinja): line 1: raise_exception: no tools allowed");
    expect_render_error("ok\n{{ messages[0].nope.deeper }}", msgs, TANDEM_ERR_INVALID_ARG,
                        "line 2: 'dict object' has no attribute 'nope'");
    expect_render_error("{{ missing_var + 1 }}", msgs, TANDEM_ERR_INVALID_ARG, "'missing_var' is undefined");
    expect_render_error("{{ 1 + 'a' }}", msgs, TANDEM_ERR_INVALID_ARG,
                        "unsupported operand type(s) for +: 'int' and 'str'");
    expect_render_error("{{ 1 // 0 }}", msgs, TANDEM_ERR_INVALID_ARG, "division or modulo by zero");
    expect_render_error("{{ 2 ** 64 }}", msgs, TANDEM_ERR_INVALID_ARG, "integer overflow");
    expect_render_error("{{ range(1000000)|length }}", msgs, TANDEM_ERR_INVALID_ARG, "Range too big");
    expect_render_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", msgs,
                        TANDEM_ERR_INVALID_ARG, "loops run more than 1000000 iterations");
    expect_render_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", msgs, TANDEM_ERR_INVALID_ARG,
                        "line 1: macros nest more than 100 calls deep");
    expect_render_error("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
                        msgs, TANDEM_ERR_INVALID_ARG, "steps (the sandbox's limit");
    expect_render_error("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", msgs, TANDEM_ERR_INVALID_ARG,
                        "the output exceeds 16777216 bytes");
    expect_render_error("{{ 'x' * 1000000000000 }}", msgs, TANDEM_ERR_INVALID_ARG, "memory limit");
    expect_render_error(
        "{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", msgs,
        TANDEM_ERR_INVALID_ARG, "memory");
    /* values nested deeper than the C stack allows (jinja2: RecursionError) */
    expect_render_error(
        "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}"
        "{{ ns.x == [ns.x] }}",
        msgs, TANDEM_ERR_INVALID_ARG, "nests more than 500 levels deep");
    expect_render_error(
        "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}"
        "{{ ns.x }}",
        msgs, TANDEM_ERR_INVALID_ARG, "nests more than 500 levels deep");
    expect_render_error(
        "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}"
        "{{ ns.x|tojson }}",
        msgs, TANDEM_ERR_INVALID_ARG, "nests more than 500 levels deep");
    expect_render_error(
        "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}"
        "{{ ns.x < [ns.x] }}",
        msgs, TANDEM_ERR_INVALID_ARG, "nests more than 500 levels deep");
    /* a macro recursing through a deep expression: the evaluator's own recursion is bounded too */
    {
        char src[4096];
        size_t n = (size_t)snprintf(src, sizeof src, "{%% macro f(n) %%}{{ ");
        n += (size_t)snprintf(src + n, sizeof src - n, "f(n + 1)"); /* at the bottom of a left-deep sum */
        for (int i = 0; i < 150; i++) n += (size_t)snprintf(src + n, sizeof src - n, " + 1");
        snprintf(src + n, sizeof src - n, " }}{%% endmacro %%}{{ f(0) }}");
        expect_render_error(src, msgs, TANDEM_ERR_INVALID_ARG, "nests more than 500 levels deep");
    }
    {
        static char flat[40000];
        size_t n = (size_t)snprintf(flat, sizeof flat, "{{ 0");
        for (int i = 0; i < 5000; i++) n += (size_t)snprintf(flat + n, sizeof flat - n, " + 1");
        snprintf(flat + n, sizeof flat - n, " }}");
        expect_render_error(flat, msgs, TANDEM_ERR_INVALID_ARG, "nests more than 500 levels deep");
    }
    /* a limit of the caller's own */
    tandem_chat_template *t = NULL;
    const char *big = "{% for i in range(100) %}0123456789{% endfor %}";
    CHECK_OK(tandem_chat_template_parse(big, strlen(big), "small.jinja", &t));
    tandem_chat_render_params p = tandem_chat_render_default_params();
    p.max_output_bytes = 500;
    char *text = NULL;
    size_t n = 0;
    CHECK_FAILS(tandem_chat_render(t, msgs, strlen(msgs), &p, &text, &n), TANDEM_ERR_INVALID_ARG, "exceeds 500 bytes");
    p.max_output_bytes = 1000;
    CHECK_OK(tandem_chat_render(t, msgs, strlen(msgs), &p, &text, &n));
    CHECK(n == 1000);
    tandem_free(text);
    /* bad JSON inputs */
    CHECK_FAILS(tandem_chat_render(t, "[{", 2, NULL, &text, &n), TANDEM_ERR_INVALID_ARG, "messages_json: invalid JSON");
    CHECK_FAILS(tandem_chat_render(t, "{}", 2, NULL, &text, &n), TANDEM_ERR_INVALID_ARG, "messages_json: not an array");
    CHECK_FAILS(tandem_chat_render(t, "[1]", 3, NULL, &text, &n), TANDEM_ERR_INVALID_ARG, "message 0 is not an object");
    p = tandem_chat_render_default_params();
    p.tools_json = "{\"not\": \"a list\"}";
    CHECK_FAILS(tandem_chat_render(t, msgs, strlen(msgs), &p, &text, &n), TANDEM_ERR_INVALID_ARG, "tools_json");
    p.tools_json = NULL;
    p.extra_context_json = "[1]";
    CHECK_FAILS(tandem_chat_render(t, msgs, strlen(msgs), &p, &text, &n), TANDEM_ERR_INVALID_ARG, "extra_context_json");
    p.extra_context_json = NULL;
    p.special_tokens_json = "\"eos\"";
    CHECK_FAILS(tandem_chat_render(t, msgs, strlen(msgs), &p, &text, &n), TANDEM_ERR_INVALID_ARG,
                "special_tokens_json: not a JSON object");
    tandem_chat_template_free(t);
}

/* special_tokens_json, then bos_token/eos_token, then extra_context_json: transformers passes the tokenizer's
 * special tokens first and lets the caller's kwargs override them. */
static void test_variable_precedence(void) {
    const char *src = "{{ bos_token }}|{{ eos_token }}|{{ pad_token }}|{{ unk_token is defined }}";
    const char *msgs = "[]";
    tandem_chat_template *t = NULL;
    CHECK_OK(tandem_chat_template_parse(src, strlen(src), "vars.jinja", &t));
    tandem_chat_render_params p = tandem_chat_render_default_params();
    p.special_tokens_json = "{\"bos_token\": \"B\", \"eos_token\": \"E\", \"pad_token\": \"P\"}";
    static const struct {
        const char *eos, *extra, *want;
    } cases[] = {{NULL, NULL, "B|E|P|False"},
                 {"E2", NULL, "B|E2|P|False"},
                 {"E2", "{\"eos_token\": \"E3\", \"unk_token\": \"U\"}", "B|E3|P|True"},
                 {NULL, "{\"pad_token\": null}", "B|E|None|False"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        p.eos_token = cases[i].eos;
        p.extra_context_json = cases[i].extra;
        char *text = NULL;
        size_t n = 0;
        CHECK_OK(tandem_chat_render(t, msgs, strlen(msgs), &p, &text, &n));
        CHECK_MSG(text && strcmp(text, cases[i].want) == 0, "case %zu: got '%s', want '%s'", i, text ? text : "",
                  cases[i].want);
        tandem_free(text);
    }
    tandem_chat_template_free(t);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s GOLDEN_DIR QWEN3_TOKENIZER_DIR\n", argv[0]);
        return 2;
    }
    /* the official Qwen3 template, found as tandem finds a model's: tokenizer_config.json's chat_template */
    tandem_tokenizer *tok = NULL;
    CHECK_OK(tandem_tokenizer_load(argv[2], &tok));
    const char *qwen3 = tok ? tandem_tokenizer_chat_template(tok) : NULL;
    CHECK_MSG(qwen3 != NULL, "%s: no chat template (run scripts/setup.sh for the Qwen3 tokenizer)", argv[2]);
    if (qwen3) run_golden(argv[1], qwen3);
    tandem_tokenizer_free(tok);
    test_bad_templates();
    test_variable_precedence();
    return test_summary();
}
