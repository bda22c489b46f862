/* serve_answer_driver.c — test_serve_answer.py's driver: scripted generated text through serve_answer (server/
 * response.c), the way the server feeds it, printing what a client would receive.
 * Input: JSON lines, one case each: {"route": "chat"|"completions", "stream", "include_usage", "parse_tool_calls",
 * "reasoning_open", "echo" (string or null), "id_seed", "pieces": [hex strings: the text as the engine cuts it],
 * "result": {"finish": "eos"|"stop"|"length"|"context_full"|"aborted", "n_prompt", "n_generated",
 * "n_prompt_reused", "speculative", "n_drafted", "n_accepted", "n_rounds", "ttft_ms", "prompt_ms", "decode_ms"}}.
 * Output: one JSON line per case, {"out": the SSE stream or the response body} or {"error": …}. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static char *unhex(const char *hex, size_t *len) {
    const size_t n = strlen(hex) / 2;
    char *out = malloc(n + 1);
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        const int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        out[i] = (char)(hi << 4 | lo);
    }
    *len = n;
    return out;
}

static tandem_finish finish_of(const char *s) {
    static const char *const names[] = {"none", "eos", "stop", "length", "context_full", "aborted"};
    for (int i = 0; i < 6; i++)
        if (s && !strcmp(s, names[i])) return (tandem_finish)i;
    return TANDEM_FINISH_NONE;
}

static const char *run_case(json_t *c, serve_buf *out) {
    serve_request r = {0};
    const char *route = json_string_value(json_object_get(c, "route"));
    r.route = route && !strcmp(route, "completions") ? SERVE_COMPLETIONS : SERVE_CHAT_COMPLETIONS;
    r.stream = json_is_true(json_object_get(c, "stream"));
    r.include_usage = json_is_true(json_object_get(c, "include_usage"));
    r.parse_output = r.route == SERVE_CHAT_COMPLETIONS;
    r.parser = tandem_chat_parser_default_params();
    r.parser.parse_tool_calls = json_is_true(json_object_get(c, "parse_tool_calls"));
    r.parser.reasoning_open = json_is_true(json_object_get(c, "reasoning_open"));
    json_t *echo = json_object_get(c, "echo");
    if (json_is_string(echo)) {
        r.echo = true;
        r.echo_text = (char *)json_string_value(echo);
        r.echo_len = json_string_length(echo);
    }
    serve_answer *a = serve_answer_create(&r, "tandem-test",
                                          r.route == SERVE_CHAT_COMPLETIONS ? "chatcmpl-1" : "cmpl-1", 1700000000,
                                          (uint64_t)json_integer_value(json_object_get(c, "id_seed")));
    if (!a) return "serve_answer_create failed";
    json_t *pieces = json_object_get(c, "pieces");
    for (size_t i = 0; i < json_array_size(pieces); i++) {
        size_t len;
        char *p = unhex(json_string_value(json_array_get(pieces, i)), &len);
        const bool ok = p && serve_answer_feed(a, p, len, out);
        free(p);
        if (!ok) {
            serve_answer_free(a);
            return "serve_answer_feed failed";
        }
    }
    json_t *res = json_object_get(c, "result");
    tandem_gen_result g = {0};
    g.finish = finish_of(json_string_value(json_object_get(res, "finish")));
    g.timings.n_prompt = (int32_t)json_integer_value(json_object_get(res, "n_prompt"));
    g.timings.n_generated = (int32_t)json_integer_value(json_object_get(res, "n_generated"));
    g.timings.n_prompt_reused = (int32_t)json_integer_value(json_object_get(res, "n_prompt_reused"));
    g.timings.ttft_ms = json_number_value(json_object_get(res, "ttft_ms"));
    g.timings.prompt_ms = json_number_value(json_object_get(res, "prompt_ms"));
    g.timings.decode_ms = json_number_value(json_object_get(res, "decode_ms"));
    g.speculative = json_is_true(json_object_get(res, "speculative"));
    g.spec_stats.n_drafted = (int32_t)json_integer_value(json_object_get(res, "n_drafted"));
    g.spec_stats.n_accepted = (int32_t)json_integer_value(json_object_get(res, "n_accepted"));
    g.spec_stats.n_rounds = (int32_t)json_integer_value(json_object_get(res, "n_rounds"));
    const bool ok = serve_answer_finish(a, &g, out);
    serve_answer_free(a);
    return ok ? NULL : "serve_answer_finish failed";
}

int main(void) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        json_error_t e;
        json_t *c = json_loadb(line, (size_t)n, 0, &e);
        if (!c) {
            fprintf(stderr, "serve_answer_driver: bad case: %s\n", e.text);
            return 2;
        }
        serve_buf out = {0};
        const char *err = run_case(c, &out);
        json_t *o = err ? json_pack("{ss}", "error", err)
                        : json_pack("{s:s%}", "out", out.data ? out.data : "", out.len);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (!s) {
            fprintf(stderr, "serve_answer_driver: the output is not UTF-8 JSON\n");
            return 2;
        }
        puts(s);
        free(s);
        json_decref(o);
        json_decref(c);
        serve_buf_free(&out);
    }
    free(line);
    return 0;
}
