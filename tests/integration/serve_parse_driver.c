/* serve_parse_driver.c — test_serve_request_sdk.py's driver: request bodies through serve_request_parse (server/
 * request.c) with the real Qwen3 tokenizer and its chat template, printing what the engine would be given.
 * Usage: serve_parse_driver QWEN3_TOKENIZER_DIR [MODEL_DIR]. Input: JSON lines {"route": "chat"|"completions",
 * "body": the body as a string, "n_ctx", "no_think", "max_tokens" (the server's limit)}. Output: one JSON line each,
 * {"ok": false, "status", "param", "message", "code"} or {"ok": true, "prompt_ids", "max_tokens", "stop", "grammar",
 * "parse_tool_calls", "reasoning_open", "stream", "include_usage", "sampling": {…}, "prediction_ids", "echo",
 * "logprobs", "top_logprobs"}. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

static json_t *ids_json(const int32_t *ids, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
    return a;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: serve_parse_driver QWEN3_TOKENIZER_DIR [MODEL_DIR]\n");
        return 2;
    }
    tandem_tokenizer *tok;
    tandem_chat_template *tmpl;
    tandem_model *model = NULL;
    if (tandem_tokenizer_load(argv[1], &tok)) {
        fprintf(stderr, "serve_parse_driver: %s\n", tandem_last_error());
        return 2;
    }
    const char *src = tandem_tokenizer_chat_template(tok);
    if (!src || tandem_chat_template_parse(src, strlen(src), "Qwen3", &tmpl)) {
        fprintf(stderr, "serve_parse_driver: no chat template: %s\n", tandem_last_error());
        return 2;
    }
    if (argc > 2 && tandem_model_load(argv[2], NULL, &model)) {
        fprintf(stderr, "serve_parse_driver: %s\n", tandem_last_error());
        return 2;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        json_t *c = json_loadb(line, (size_t)n, 0, NULL);
        if (!c) {
            fprintf(stderr, "serve_parse_driver: a case is not JSON\n");
            return 2;
        }
        serve_model m = {.name = "qwen3",
                         .model = model,
                         .tok = tok,
                         .chat_template = tmpl,
                         .n_ctx = (int32_t)json_integer_value(json_object_get(c, "n_ctx")),
                         .no_think = json_is_true(json_object_get(c, "no_think"))};
        serve_limits lim = serve_default_limits();
        if (json_integer_value(json_object_get(c, "max_tokens")))
            lim.max_tokens = (int32_t)json_integer_value(json_object_get(c, "max_tokens"));
        const char *route = json_string_value(json_object_get(c, "route"));
        json_t *body = json_object_get(c, "body");
        serve_request r;
        serve_error e;
        json_t *o;
        if (!serve_request_parse(&m, &lim,
                                 route && !strcmp(route, "completions") ? SERVE_COMPLETIONS : SERVE_CHAT_COMPLETIONS,
                                 json_string_value(body), json_string_length(body), &r, &e)) {
            o = json_pack("{s:b, s:i, s:s, s:s, s:s?}", "ok", 0, "status", e.status, "param", e.param, "message",
                          e.message, "code", e.code);
        } else {
            json_t *stop = json_array();
            for (int32_t i = 0; i < r.gen.n_stop; i++) json_array_append_new(stop, json_string(r.gen.stop[i]));
            const tandem_sampler_params *s = &r.gen.sampling;
            o = json_pack(
                "{s:b, s:o, s:i, s:o, s:b, s:b, s:b, s:b, s:b, s:b, s:o, s:s%, s:{s:f, s:f, s:i, s:f, s:f, "
                "s:f, s:f, s:I}}",
                "ok", 1, "prompt_ids", ids_json(r.prompt_ids, r.n_prompt), "max_tokens", r.gen.max_tokens, "stop", stop,
                "grammar", r.grammar != NULL, "parse_output", r.parse_output, "parse_tool_calls",
                r.parser.parse_tool_calls, "reasoning_open", r.parser.reasoning_open, "stream", r.stream,
                "include_usage", r.include_usage, "prediction_ids", ids_json(r.prediction_ids, r.n_prediction), "echo",
                r.echo_text ? r.echo_text : "", r.echo_len, "sampling", "temperature", s->temperature, "top_p",
                s->top_p, "top_k", s->top_k, "min_p", s->min_p, "presence_penalty", s->presence_penalty,
                "frequency_penalty", s->frequency_penalty, "repetition_penalty", s->repeat_penalty, "seed",
                (json_int_t)s->seed);
            if (o) {
                json_object_set_new(o, "logprobs", json_boolean(r.gen.logprobs));
                json_object_set_new(o, "top_logprobs", json_integer(r.gen.top_logprobs));
            }
            serve_request_free(&r);
        }
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (!s) {
            fprintf(stderr, "serve_parse_driver: cannot print a result\n");
            return 2;
        }
        puts(s);
        fflush(stdout); /* the test reads each answer before it writes the next case */
        free(s);
        json_decref(o);
        json_decref(c);
    }
    free(line);
    tandem_chat_template_free(tmpl);
    tandem_tokenizer_free(tok);
    tandem_model_free(model);
    return 0;
}
