/* test_serve_request.c — `tandem serve`'s request parsing (server/request.c) with the real Qwen3 tokenizer and chat
 * template: every field's mapping, each error with its status and JSON path, and prompts equal to Qwen3's format. */
#include <jansson.h>
#include <stdlib.h>

#include "serve.h"
#include "test.h"

static serve_model M;
static serve_limits L;
static const tandem_tokenizer *TOK;

/* ---- helpers ---- */

static bool parse(serve_route route, const char *body, serve_request *r, serve_error *e) {
    return serve_request_parse(&M, &L, route, body, strlen(body), r, e);
}

/* body must be refused with status and param, the message holding needle. */
#define CHECK_REFUSED(route, body, status_, param_, needle)                                                           \
    do {                                                                                                              \
        serve_request r_;                                                                                             \
        serve_error e_;                                                                                               \
        const bool ok_ = parse(route, body, &r_, &e_);                                                                \
        CHECK_MSG(!ok_ && e_.status == (status_) && !strcmp(e_.param, param_) && strstr(e_.message, needle),          \
                  "%s: got ok=%d status %d param \"%s\" message \"%s\"", body, ok_, e_.status, e_.param, e_.message); \
        if (ok_) serve_request_free(&r_);                                                                             \
        else CHECK(r_.prompt_ids == NULL && r_.grammar == NULL && r_.stop == NULL);                                   \
    } while (0)

#define CHAT(body, r) CHECK_MSG(parse_ok(SERVE_CHAT_COMPLETIONS, body, r), "%s", body)
#define COMPLETION(body, r) CHECK_MSG(parse_ok(SERVE_COMPLETIONS, body, r), "%s", body)

static bool parse_ok(serve_route route, const char *body, serve_request *r) {
    serve_error e;
    if (parse(route, body, r, &e)) return true;
    fprintf(stderr, "refused (%d, %s): %s\n", e.status, e.param, e.message);
    return false;
}

static bool ids_equal_text(const serve_request *r, const char *text, bool special) {
    int32_t *ids;
    size_t n;
    if (tandem_tokenizer_encode(TOK, text, strlen(text), special, &ids, &n)) return false;
    const bool eq = n == r->n_prompt && !memcmp(ids, r->prompt_ids, n * sizeof *ids);
    if (!eq) {
        char *got = NULL;
        size_t len;
        tandem_tokenizer_decode(TOK, r->prompt_ids, r->n_prompt, &got, &len);
        fprintf(stderr, "prompt differs:\n  want %s\n  got  %s\n", text, got ? got : "?");
        tandem_free(got);
    }
    tandem_free(ids);
    return eq;
}

/* The prompt tandem_chat_render gives for messages/tools with the model's template, tokenized. */
static bool ids_equal_render(const serve_request *r, const char *messages, const char *tools, int thinking) {
    tandem_chat_render_params rp = tandem_chat_render_default_params();
    rp.add_generation_prompt = true;
    rp.tools_json = tools;
    rp.enable_thinking = thinking;
    char *text;
    size_t len;
    if (tandem_chat_render(M.chat_template, messages, strlen(messages), &rp, &text, &len)) return false;
    const bool eq = ids_equal_text(r, text, true);
    tandem_free(text);
    return eq;
}

static const char *prompt_tail(const serve_request *r, char *buf, size_t n) {
    char *text = NULL;
    size_t len = 0;
    tandem_tokenizer_decode(TOK, r->prompt_ids, r->n_prompt, &text, &len);
    snprintf(buf, n, "%s", text && len >= n - 1 ? text + len - (n - 1) : text ? text : "");
    tandem_free(text);
    return buf;
}

/* ---- the fields ---- */

#define USER_HI "\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]"
#define QWEN_HI "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
#define TOOLS                                                                                                      \
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather of a city\", " \
    "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": "    \
    "[\"city\"]}}}, {\"type\": \"function\", \"function\": {\"name\": \"add\", \"parameters\": {\"type\": "        \
    "\"object\"}}}]"

static void check_plain_chat(void) {
    serve_request r;
    CHAT("{\"model\": \"qwen\", " USER_HI "}", &r);
    CHECK(ids_equal_text(&r, QWEN_HI, true)); /* Qwen3's format (docs: <|im_start|>role\ncontent<|im_end|>\n) */
    CHECK(r.route == SERVE_CHAT_COMPLETIONS && !strcmp(r.model, "qwen") && !r.stream && !r.include_usage);
    CHECK(r.parse_output && !r.parser.reasoning_open && !r.parser.parse_tool_calls);
    CHECK(r.grammar == NULL && r.gen.grammar == NULL && r.n_stop == 0 && r.prediction_ids == NULL);
    CHECK(r.gen.max_tokens == L.max_tokens); /* the server's default, well inside the context */
    const tandem_sampler_params d = tandem_model_sampler_defaults(M.model);
    const tandem_sampler_params *s = &r.gen.sampling;
    CHECK(s->temperature == d.temperature && s->top_p == d.top_p && s->top_k == d.top_k && s->min_p == d.min_p &&
          s->repeat_penalty == d.repeat_penalty && s->presence_penalty == d.presence_penalty &&
          s->frequency_penalty == d.frequency_penalty && s->repeat_last_n == d.repeat_last_n);
    serve_request_free(&r);

    /* nulls mean "not set"; unknown and ignored keys pass */
    CHAT("{" USER_HI
         ", \"stop\": null, \"tools\": null, \"max_tokens\": null, \"user\": \"u\", \"metadata\": {}, "
         "\"store\": true, \"service_tier\": \"auto\", \"frobnicate\": [1, 2], \"logprobs\": false, "
         "\"top_logprobs\": 0, \"n\": 1, \"logit_bias\": {}}",
         &r);
    CHECK(ids_equal_text(&r, QWEN_HI, true) && r.n_stop == 0 && r.grammar == NULL);
    CHECK(!r.gen.logprobs && r.gen.top_logprobs == 0);
    serve_request_free(&r);
    CHAT("{" USER_HI ", \"logprobs\": true, \"top_logprobs\": 20}", &r);
    CHECK(r.gen.logprobs && r.gen.top_logprobs == 20);
    serve_request_free(&r);

    /* system, developer (= system), a multi-turn history, content parts joined with "\n" */
    CHAT(
        "{\"messages\": [{\"role\": \"developer\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "
        "[{\"type\": \"text\", \"text\": \"a\"}, {\"type\": \"text\", \"text\": \"b\"}]}, {\"role\": \"assistant\", "
        "\"content\": \"ok\"}, {\"role\": \"user\", \"content\": \"again\"}]}",
        &r);
    CHECK(ids_equal_text(&r,
                         "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\na\nb<|im_end|>\n<|im_start|>"
                         "assistant\nok<|im_end|>\n<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n",
                         true));
    serve_request_free(&r);

    /* an agent's history: content null on the tool-call turn, arguments as a string, a tool result */
    const char *hist =
        "[{\"role\": \"user\", \"content\": \"Weather in Paris?\"}, {\"role\": \"assistant\", "
        "\"content\": null, \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\", \"function\": "
        "{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}}]}, {\"role\": "
        "\"tool\", \"tool_call_id\": \"c1\", \"content\": \"{\\\"temp\\\": 21}\"}]";
    char body[2048];
    snprintf(body, sizeof body, "{\"messages\": %s, \"tools\": %s}", hist, TOOLS);
    CHAT(body, &r);
    CHECK(ids_equal_render(&r, hist, TOOLS, -1));
    CHECK(r.grammar != NULL && r.gen.grammar == r.grammar && r.parser.parse_tool_calls);
    char tail[128];
    CHECK(strstr(prompt_tail(&r, tail, sizeof tail), "<tool_response>\n{\"temp\": 21}\n</tool_response>"));
    serve_request_free(&r);
}

static void check_thinking(void) {
    serve_request r;
    const char *closed = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
    CHAT("{" USER_HI ", \"enable_thinking\": false}", &r);
    CHECK(ids_equal_text(&r, closed, true));
    serve_request_free(&r);
    CHAT("{" USER_HI ", \"chat_template_kwargs\": {\"enable_thinking\": false}}", &r);
    CHECK(ids_equal_text(&r, closed, true));
    serve_request_free(&r);
    /* chat_template_kwargs wins over the top-level field */
    CHAT("{" USER_HI ", \"enable_thinking\": true, \"chat_template_kwargs\": {\"enable_thinking\": false}}", &r);
    CHECK(ids_equal_text(&r, closed, true));
    serve_request_free(&r);
    /* --no-think is the default, the request overrides it */
    M.no_think = true;
    CHAT("{" USER_HI "}", &r);
    CHECK(ids_equal_text(&r, closed, true));
    serve_request_free(&r);
    CHAT("{" USER_HI ", \"enable_thinking\": true}", &r);
    CHECK(ids_equal_text(&r, QWEN_HI, true));
    serve_request_free(&r);
    M.no_think = false;
    /* JSON output closes the reasoning (its grammar starts at the first token) */
    CHAT("{" USER_HI ", \"response_format\": {\"type\": \"json_object\"}}", &r);
    CHECK(ids_equal_text(&r, closed, true) && r.grammar != NULL && !r.parser.parse_tool_calls &&
          !r.parser.reasoning_open);
    serve_request_free(&r);
    CHAT("{" USER_HI
         ", \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"p\", "
         "\"strict\": true, \"schema\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}}}}}}",
         &r);
    CHECK(ids_equal_text(&r, closed, true) && r.grammar != NULL);
    serve_request_free(&r);
    CHAT("{" USER_HI ", \"response_format\": {\"type\": \"text\"}}", &r);
    CHECK(ids_equal_text(&r, QWEN_HI, true) && r.grammar == NULL);
    serve_request_free(&r);
    CHECK_REFUSED(SERVE_CHAT_COMPLETIONS,
                  "{" USER_HI
                  ", \"response_format\": {\"type\": \"json_object\"}, "
                  "\"enable_thinking\": true}",
                  400, "enable_thinking", "cannot think first");
    CHECK_REFUSED(SERVE_CHAT_COMPLETIONS,
                  "{" USER_HI
                  ", \"response_format\": {\"type\": \"json_object\"}, "
                  "\"chat_template_kwargs\": {\"enable_thinking\": true}}",
                  400, "chat_template_kwargs.enable_thinking", "cannot think first");
}

/* A thinking-2507 style template opens "<think>" in the generation prompt: the output starts as reasoning. */
static void check_reasoning_open(void) {
    static const char src[] =
        "{%- for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + "
        "'<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}";
    tandem_chat_template *t;
    CHECK_OK(tandem_chat_template_parse(src, strlen(src), "open-think", &t));
    const tandem_chat_template *saved = M.chat_template;
    M.chat_template = t;
    serve_request r;
    CHAT("{" USER_HI "}", &r);
    CHECK(r.parser.reasoning_open && ids_equal_text(&r, QWEN_HI "<think>\n", true));
    serve_request_free(&r);
    CHAT("{" USER_HI ", \"tools\": " TOOLS ", \"tool_choice\": \"required\"}", &r);
    CHECK(r.parser.reasoning_open && r.parser.parse_tool_calls && r.grammar != NULL);
    serve_request_free(&r);
    /* JSON output: the prompt closes what the template opened, as Qwen3 writes an empty reasoning */
    CHAT("{" USER_HI ", \"response_format\": {\"type\": \"json_object\"}}", &r);
    CHECK(!r.parser.reasoning_open && ids_equal_text(&r, QWEN_HI "<think>\n\n</think>\n\n", true));
    serve_request_free(&r);
    /* chat_template_kwargs reach the template as variables */
    static const char greet[] = "{{ greeting }} {{ messages[0].content }}";
    tandem_chat_template *tg;
    CHECK_OK(tandem_chat_template_parse(greet, strlen(greet), "greeting", &tg));
    M.chat_template = tg;
    CHAT("{" USER_HI ", \"chat_template_kwargs\": {\"greeting\": \"Hello\", \"enable_thinking\": true}}", &r);
    CHECK(ids_equal_text(&r, "Hello hi", true));
    serve_request_free(&r);
    tandem_chat_template_free(tg);
    /* a template error is a 400 with the template's message */
    static const char bad[] = "{{ raise_exception('only user turns, please') }}";
    tandem_chat_template *tb;
    CHECK_OK(tandem_chat_template_parse(bad, strlen(bad), "raising", &tb));
    M.chat_template = tb;
    CHECK_REFUSED(SERVE_CHAT_COMPLETIONS, "{" USER_HI "}", 400, "messages", "only user turns, please");
    M.chat_template = NULL;
    CHECK_REFUSED(SERVE_CHAT_COMPLETIONS, "{" USER_HI "}", 400, "model", "has no chat template");
    M.chat_template = saved;
    tandem_chat_template_free(tb);
    tandem_chat_template_free(t);
}

static void check_tools(void) {
    serve_request r;
    const char *msgs = "[{\"role\": \"user\", \"content\": \"hi\"}]";
    const char *choices[] = {"\"auto\"", "\"required\"", "{\"type\": \"function\", \"function\": {\"name\": \"add\"}}"};
    for (int i = 0; i < 3; i++) {
        char body[1024];
        snprintf(body, sizeof body,
                 "{\"messages\": %s, \"tools\": %s, \"tool_choice\": %s, "
                 "\"parallel_tool_calls\": false}",
                 msgs, TOOLS, choices[i]);
        CHAT(body, &r);
        CHECK(r.grammar != NULL && r.parser.parse_tool_calls && ids_equal_render(&r, msgs, TOOLS, -1));
        serve_request_free(&r);
    }
    /* none: the tools are still in the prompt, no call is parsed, and the grammar forbids opening one */
    CHAT("{" USER_HI ", \"tools\": " TOOLS ", \"tool_choice\": \"none\"}", &r);
    CHECK(r.grammar != NULL && !r.parser.parse_tool_calls && ids_equal_render(&r, msgs, TOOLS, -1));
    serve_request_free(&r);
    /* none with JSON output: the JSON grammar */
    CHAT("{" USER_HI ", \"tools\": " TOOLS
         ", \"tool_choice\": \"none\", \"response_format\": "
         "{\"type\": \"json_object\"}}",
         &r);
    CHECK(r.grammar != NULL && !r.parser.parse_tool_calls && ids_equal_render(&r, msgs, TOOLS, 0));
    serve_request_free(&r);
    /* an empty tools array is no tools */
    CHAT("{" USER_HI ", \"tools\": []}", &r);
    CHECK(r.grammar == NULL && !r.parser.parse_tool_calls && ids_equal_text(&r, QWEN_HI, true));
    serve_request_free(&r);
}

static void check_sampling_and_limits(void) {
    serve_request r;
    CHAT("{" USER_HI
         ", \"temperature\": 0.5, \"top_p\": 0.9, \"top_k\": 5, \"min_p\": 0.1, \"presence_penalty\": "
         "0.5, \"frequency_penalty\": -0.25, \"repetition_penalty\": 1.1, \"seed\": 42, \"max_tokens\": 50, "
         "\"stop\": [\"x\", \"<|im_end|>\"], \"stream\": true, \"stream_options\": {\"include_usage\": true}}",
         &r);
    const tandem_sampler_params *s = &r.gen.sampling;
    CHECK(s->temperature == 0.5f && s->top_p == 0.9f && s->top_k == 5 && s->min_p == 0.1f &&
          s->presence_penalty == 0.5f && s->frequency_penalty == -0.25f && s->repeat_penalty == 1.1f && s->seed == 42);
    CHECK(r.gen.max_tokens == 50 && r.stream && r.include_usage);
    CHECK(r.n_stop == 2 && r.gen.n_stop == 2 && !strcmp(r.gen.stop[0], "x") && !strcmp(r.gen.stop[1], "<|im_end|>"));
    serve_request_free(&r);
    /* max_completion_tokens wins over max_tokens; a single stop string; top_p 0 keeps the top token; top_k -1 off */
    CHAT("{" USER_HI
         ", \"max_completion_tokens\": 30, \"max_tokens\": 50, \"stop\": \"Observation:\", "
         "\"top_p\": 0, \"seed\": -1}",
         &r);
    CHECK(r.gen.max_tokens == 30 && r.n_stop == 1 && !strcmp(r.gen.stop[0], "Observation:"));
    CHECK(r.gen.sampling.top_k == 1 && r.gen.sampling.top_p == 1 && r.gen.sampling.seed == UINT64_MAX);
    serve_request_free(&r);
    CHAT("{" USER_HI ", \"top_k\": -1, \"temperature\": 0, \"max_tokens\": 7.0}", &r);
    CHECK(r.gen.sampling.top_k == 0 && r.gen.sampling.temperature == 0 && r.gen.max_tokens == 7);
    serve_request_free(&r);
    /* the server's limit caps max_tokens; so does the room the context leaves */
    CHAT("{" USER_HI ", \"max_tokens\": 1000000}", &r);
    CHECK(r.gen.max_tokens == L.max_tokens);
    serve_request_free(&r);
    const int32_t n_ctx = M.n_ctx;
    M.n_ctx = 12;
    CHAT("{" USER_HI ", \"max_tokens\": 100}", &r);
    CHECK(r.gen.max_tokens == 12 - (int32_t)r.n_prompt && r.gen.max_tokens >= 1);
    const size_t n_prompt = r.n_prompt;
    serve_request_free(&r);
    M.n_ctx = (int32_t)n_prompt;
    {
        serve_request r2;
        serve_error e;
        CHECK(!parse(SERVE_CHAT_COMPLETIONS, "{" USER_HI "}", &r2, &e));
        char want[64];
        snprintf(want, sizeof want, "maximum context length is %zu tokens", n_prompt);
        CHECK_MSG(e.status == 400 && !strcmp(e.param, "messages") && e.code &&
                      !strcmp(e.code, "context_length_exceeded") && strstr(e.message, want),
                  "%d %s %s", e.status, e.param, e.message);
        snprintf(want, sizeof want, "resulted in %zu tokens", n_prompt);
        CHECK_MSG(strstr(e.message, want), "%s", e.message);
        char *j = serve_error_json(&e);
        json_t *v = json_loads(j, 0, NULL);
        CHECK(v && !strcmp(json_string_value(json_object_get(json_object_get(v, "error"), "code")),
                           "context_length_exceeded"));
        CHECK(v && !strcmp(json_string_value(json_object_get(json_object_get(v, "error"), "param")), "messages"));
        CHECK(v && !strcmp(json_string_value(json_object_get(json_object_get(v, "error"), "type")),
                           "invalid_request_"
                           "error"));
        json_decref(v);
        free(j);
    }
    M.n_ctx = n_ctx;
    /* predicted output: its text tokenized as plain text */
    CHAT("{" USER_HI ", \"prediction\": {\"type\": \"content\", \"content\": \"<|im_end|> x = 1\"}}", &r);
    {
        int32_t *ids;
        size_t n;
        CHECK_OK(tandem_tokenizer_encode(TOK, "<|im_end|> x = 1", 16, false, &ids, &n));
        CHECK(r.n_prediction == n && !memcmp(ids, r.prediction_ids, n * sizeof *ids));
        tandem_free(ids);
    }
    serve_request_free(&r);
    CHAT("{" USER_HI
         ", \"prediction\": {\"type\": \"content\", \"content\": [{\"type\": \"text\", \"text\": \"ab\"}, "
         "{\"type\": \"text\", \"text\": \"cd\"}]}}",
         &r);
    {
        int32_t *ids;
        size_t n;
        CHECK_OK(tandem_tokenizer_encode(TOK, "abcd", 4, false, &ids, &n));
        CHECK(r.n_prediction == n && !memcmp(ids, r.prediction_ids, n * sizeof *ids));
        tandem_free(ids);
    }
    serve_request_free(&r);
}

static void check_completions(void) {
    serve_request r;
    COMPLETION("{\"model\": \"m\", \"prompt\": \"Once upon<|endoftext|>\"}", &r);
    CHECK(ids_equal_text(&r, "Once upon<|endoftext|>", true) && r.gen.max_tokens == 16 && !r.parse_output &&
          r.grammar == NULL && !r.echo);
    serve_request_free(&r);
    COMPLETION("{\"prompt\": [\"Once upon\"], \"max_tokens\": 5, \"echo\": true}", &r);
    CHECK(ids_equal_text(&r, "Once upon", true) && r.gen.max_tokens == 5 && r.echo && r.echo_len == 9 &&
          !memcmp(r.echo_text, "Once upon", 9));
    serve_request_free(&r);
    COMPLETION("{\"prompt\": [[9707, 11, 1879]], \"logprobs\": 0, \"best_of\": 1}", &r);
    CHECK(r.n_prompt == 3 && r.prompt_ids[0] == 9707 && r.prompt_ids[2] == 1879);
    CHECK(r.gen.logprobs && r.gen.top_logprobs == 0); /* the legacy form: 0 = the chosen token's only */
    serve_request_free(&r);
    COMPLETION("{\"prompt\": \"a\", \"logprobs\": 5}", &r);
    CHECK(r.gen.logprobs && r.gen.top_logprobs == 5);
    serve_request_free(&r);
    COMPLETION("{\"prompt\": \"a\"}", &r);
    CHECK(!r.gen.logprobs && r.gen.top_logprobs == 0);
    serve_request_free(&r);
    COMPLETION("{\"prompt\": [9707, 11], \"stream\": true, \"stop\": [\"\\n\"], \"temperature\": 1.5}", &r);
    CHECK(r.n_prompt == 2 && r.stream && r.n_stop == 1 && r.gen.sampling.temperature == 1.5f);
    serve_request_free(&r);
}

static void check_errors(void) {
    const serve_route C = SERVE_CHAT_COMPLETIONS, P = SERVE_COMPLETIONS;
    CHECK_REFUSED(C, "{\"messages\": [", 400, "", "not valid JSON: line 1, column 14");
    CHECK_REFUSED(C, "{\n\"messages\": 1,\n}", 400, "", "line 3, column 1");
    CHECK_REFUSED(C, "[]", 400, "", "expected a JSON object, got an array");
    CHECK_REFUSED(C, "{}", 400, "messages", "messages: missing");
    CHECK_REFUSED(C, "{\"messages\": \"hi\"}", 400, "messages", "expected an array of messages, got a string");
    CHECK_REFUSED(C, "{\"messages\": []}", 400, "messages", "at least one message");
    CHECK_REFUSED(C, "{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}", 400, "messages[0].role",
                  "\"bot\" is not a role");
    CHECK_REFUSED(C, "{\"messages\": [{\"content\": \"x\"}]}", 400, "messages[0].role", "missing");
    CHECK_REFUSED(C, "{\"messages\": [5]}", 400, "messages[0]", "expected a message object, got an integer");
    CHECK_REFUSED(C, "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", 400, "messages[0].content",
                  "expected a string or an array of content parts, got an integer");
    CHECK_REFUSED(C, "{\"messages\": [{\"role\": \"user\", \"content\": null}]}", 400, "messages[0].content",
                  "got null");
    CHECK_REFUSED(C,
                  "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": "
                  "[{\"type\": \"image_url\", \"image_url\": {\"url\": \"http://x/y.png\"}}]}]}",
                  400, "messages[1].content[0]", "messages[1].content[0]: images need a Qwen3-VL model");
    CHECK_REFUSED(C,
                  "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"}, "
                  "{\"type\": \"input_audio\", \"input_audio\": {}}]}]}",
                  400, "messages[0].content[1]", "audio input is not supported");
    CHECK_REFUSED(C, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]}", 400,
                  "messages[0].content[0].text", "expected a string");
    CHECK_REFUSED(C, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"video\"}]}]}", 400,
                  "messages[0].content[0]", "\"video\" is not supported");
    CHECK_REFUSED(C,
                  "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", "
                  "\"tool_calls\": {}}]}",
                  400, "messages[1].tool_calls", "expected an array of tool calls");
    CHECK_REFUSED(C,
                  "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", "
                  "\"tool_calls\": [{\"type\": \"function\", \"function\": {\"arguments\": \"{}\"}}]}]}",
                  400, "messages[1].tool_calls[0].function.name", "missing");
    CHECK_REFUSED(C,
                  "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", "
                  "\"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": 3}}]}]}",
                  400, "messages[1].tool_calls[0].function.arguments", "got an integer");
    CHECK_REFUSED(C, "{\"messages\": [{\"role\": \"tool\", \"content\": \"a\", \"tool_call_id\": 7}]}", 400,
                  "messages[0].tool_call_id", "expected a string");
    CHECK_REFUSED(C, "{" USER_HI ", \"tools\": \"x\"}", 400, "tools", "expected an array of tools");
    CHECK_REFUSED(C, "{" USER_HI ", \"tools\": [{\"type\": \"custom\", \"custom\": {\"name\": \"f\"}}]}", 400,
                  "tools[0].type", "\"custom\" tools are not supported");
    CHECK_REFUSED(C, "{" USER_HI ", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"\"}}]}", 400,
                  "tools[0].function.name", "must not be empty");
    CHECK_REFUSED(C,
                  "{" USER_HI
                  ", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}, "
                  "{\"type\": \"function\", \"function\": {\"name\": \"g\", \"parameters\": []}}]}",
                  400, "tools[1].function.parameters", "expected a JSON Schema object, got an array");
    CHECK_REFUSED(C, "{" USER_HI ", \"tools\": " TOOLS ", \"tool_choice\": \"maybe\"}", 400, "tool_choice",
                  "\"maybe\" is not a choice");
    CHECK_REFUSED(C, "{" USER_HI ", \"tool_choice\": \"required\"}", 400, "tool_choice", "needs tools");
    CHECK_REFUSED(C,
                  "{" USER_HI ", \"tools\": " TOOLS
                  ", \"tool_choice\": {\"type\": \"function\", \"function\": "
                  "{\"name\": \"nope\"}}}",
                  400, "tool_choice.function.name", "\"nope\" is not one of the tools");
    CHECK_REFUSED(C, "{" USER_HI ", \"tools\": " TOOLS ", \"parallel_tool_calls\": \"yes\"}", 400,
                  "parallel_tool_calls", "expected a boolean, got a string");
    CHECK_REFUSED(C, "{" USER_HI ", \"tools\": " TOOLS ", \"response_format\": {\"type\": \"json_object\"}}", 400,
                  "response_format", "tool_choice \"auto\" is not supported");
    CHECK_REFUSED(C, "{" USER_HI ", \"response_format\": {\"type\": \"xml\"}}", 400, "response_format.type",
                  "\"xml\" is not a format");
    CHECK_REFUSED(C, "{" USER_HI ", \"response_format\": {\"type\": \"json_schema\"}}", 400,
                  "response_format.json_schema", "missing");
    CHECK_REFUSED(C,
                  "{" USER_HI
                  ", \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": "
                  "\"x\", \"schema\": 5}}}",
                  400, "response_format.json_schema.schema", "got an integer");
    CHECK_REFUSED(C,
                  "{" USER_HI
                  ", \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": "
                  "\"x\", \"schema\": {\"type\": 12}}}}",
                  400, "response_format.json_schema.schema", "schema");
    CHECK_REFUSED(C, "{" USER_HI ", \"stream\": \"yes\"}", 400, "stream", "expected a boolean");
    CHECK_REFUSED(C, "{" USER_HI ", \"stream_options\": {\"include_usage\": 1}}", 400, "stream_options.include_usage",
                  "expected a boolean, got an integer");
    CHECK_REFUSED(C, "{" USER_HI ", \"stop\": 5}", 400, "stop", "expected a string or an array of strings");
    CHECK_REFUSED(C, "{" USER_HI ", \"stop\": [\"a\", \"\"]}", 400, "stop[1]", "must not be empty");
    CHECK_REFUSED(C, "{" USER_HI ", \"stop\": [\"a\", 3]}", 400, "stop[1]", "expected a string, got an integer");
    CHECK_REFUSED(C, "{" USER_HI ", \"stop\": [\"a\\u0000b\"]}", 400, "stop[0]", "U+0000");
    CHECK_REFUSED(C, "{" USER_HI ", \"stop\": [\"1\", \"2\", \"3\", \"4\", \"5\"]}", 400, "stop",
                  "5 stop strings, more than the limit of 4");
    CHECK_REFUSED(C, "{" USER_HI ", \"max_tokens\": 0}", 400, "max_tokens", "0 is out of range: expected at least 1");
    CHECK_REFUSED(C, "{" USER_HI ", \"max_completion_tokens\": \"5\"}", 400, "max_completion_tokens",
                  "expected an integer, got a string");
    CHECK_REFUSED(C, "{" USER_HI ", \"max_tokens\": 1.5}", 400, "max_tokens", "expected an integer, got a number");
    CHECK_REFUSED(C, "{" USER_HI ", \"temperature\": 3}", 400, "temperature", "3 is out of range: expected 0 to 2");
    CHECK_REFUSED(C, "{" USER_HI ", \"temperature\": \"hot\"}", 400, "temperature", "expected a number");
    CHECK_REFUSED(C, "{" USER_HI ", \"top_p\": 1.5}", 400, "top_p", "out of range");
    CHECK_REFUSED(C, "{" USER_HI ", \"top_k\": -2}", 400, "top_k", "out of range");
    CHECK_REFUSED(C, "{" USER_HI ", \"top_k\": 0.5}", 400, "top_k", "expected an integer");
    CHECK_REFUSED(C, "{" USER_HI ", \"min_p\": 2}", 400, "min_p", "out of range");
    CHECK_REFUSED(C, "{" USER_HI ", \"presence_penalty\": 3}", 400, "presence_penalty", "expected -2 to 2");
    CHECK_REFUSED(C, "{" USER_HI ", \"frequency_penalty\": -2.5}", 400, "frequency_penalty", "expected -2 to 2");
    CHECK_REFUSED(C, "{" USER_HI ", \"repetition_penalty\": 0}", 400, "repetition_penalty", "must be > 0");
    CHECK_REFUSED(C, "{" USER_HI ", \"seed\": \"x\"}", 400, "seed", "expected an integer");
    CHECK_REFUSED(C, "{" USER_HI ", \"logprobs\": 1}", 400, "logprobs", "expected a boolean");
    CHECK_REFUSED(C, "{" USER_HI ", \"top_logprobs\": 2}", 400, "top_logprobs", "needs logprobs");
    CHECK_REFUSED(C, "{" USER_HI ", \"logprobs\": true, \"top_logprobs\": 21}", 400, "top_logprobs", "out of range");
    CHECK_REFUSED(C, "{" USER_HI ", \"n\": 2}", 400, "n", "only n = 1");
    CHECK_REFUSED(C, "{" USER_HI ", \"logit_bias\": {\"9707\": 5}}", 400, "logit_bias", "not supported");
    CHECK_REFUSED(C, "{" USER_HI ", \"chat_template_kwargs\": \"x\"}", 400, "chat_template_kwargs",
                  "expected an object");
    CHECK_REFUSED(C, "{" USER_HI ", \"chat_template_kwargs\": {\"enable_thinking\": \"no\"}}", 400,
                  "chat_template_kwargs.enable_thinking", "expected a boolean");
    CHECK_REFUSED(C, "{" USER_HI ", \"enable_thinking\": 0}", 400, "enable_thinking", "expected a boolean");
    CHECK_REFUSED(C, "{" USER_HI ", \"prediction\": {\"type\": \"content\", \"content\": 5}}", 400,
                  "prediction.content", "got an integer");
    CHECK_REFUSED(C, "{" USER_HI ", \"prediction\": {\"type\": \"other\", \"content\": \"x\"}}", 400, "prediction.type",
                  "expected \"content\"");
    CHECK_REFUSED(C, "{\"model\": 5, " USER_HI "}", 400, "model", "expected a string");
    CHECK_REFUSED(C, "{" USER_HI ", \"functions\": [{\"name\": \"f\"}]}", 400, "functions", "send tools");
    CHECK_REFUSED(C, "{" USER_HI ", \"audio\": {\"voice\": \"x\"}}", 400, "audio", "not supported");
    /* limits */
    {
        const size_t n = 6;
        char body[512] = "{\"messages\": [";
        for (size_t i = 0; i < n; i++)
            strcat(body, i ? ", {\"role\": \"user\", \"content\": \"x\"}" : "{\"role\": \"user\", \"content\": \"x\"}");
        strcat(body, "]}");
        L.max_messages = 5;
        CHECK_REFUSED(C, body, 400, "messages", "6 messages, more than the limit of 5");
        L.max_messages = 6;
        serve_request r;
        CHAT(body, &r);
        serve_request_free(&r);
        L.max_body_bytes = strlen(body) - 1;
        char want[96];
        snprintf(want, sizeof want, "body is %zu bytes, more than this server's limit of %zu", strlen(body),
                 strlen(body) - 1);
        CHECK_REFUSED(C, body, 413, "", want);
        L = serve_default_limits();
        L.max_stop = 4;
        L.max_tokens = 1000;
    }
    /* completions */
    CHECK_REFUSED(P, "{}", 400, "prompt", "missing");
    CHECK_REFUSED(P, "{\"prompt\": 5}", 400, "prompt", "expected a string or an array of token ids");
    CHECK_REFUSED(P, "{\"prompt\": \"\"}", 400, "prompt", "must not be empty");
    CHECK_REFUSED(P, "{\"prompt\": []}", 400, "prompt", "must not be empty");
    CHECK_REFUSED(P, "{\"prompt\": [\"a\", \"b\"]}", 400, "prompt", "only one prompt per request");
    CHECK_REFUSED(P, "{\"prompt\": [1, -1]}", 400, "prompt[1]", "-1 is out of range");
    CHECK_REFUSED(P, "{\"prompt\": [[1, 999999999]]}", 400, "prompt[0][1]", "out of range");
    CHECK_REFUSED(P, "{\"prompt\": \"a\", \"echo\": 1}", 400, "echo", "expected a boolean");
    CHECK_REFUSED(P, "{\"prompt\": \"a\", \"logprobs\": 21}", 400, "logprobs", "out of range");
    CHECK_REFUSED(P, "{\"prompt\": \"a\", \"logprobs\": 2, \"echo\": true}", 400, "logprobs", "echo");
    CHECK_REFUSED(P, "{\"prompt\": \"a\", \"suffix\": \"b\"}", 400, "suffix", "not supported");
    CHECK_REFUSED(P, "{\"prompt\": \"a\", \"max_tokens\": -3}", 400, "max_tokens", "out of range");
}

static void check_error_json(void) {
    serve_error e;
    CHECK(!serve_fail(&e, 503, "", "busy: %d queued", 7));
    char *s = serve_error_json(&e);
    json_t *v = json_loads(s, 0, NULL);
    json_t *err = json_object_get(v, "error");
    CHECK(err && !strcmp(json_string_value(json_object_get(err, "message")), "busy: 7 queued"));
    CHECK(json_is_null(json_object_get(err, "param")) && json_is_null(json_object_get(err, "code")));
    CHECK(!strcmp(json_string_value(json_object_get(err, "type")), "server_error"));
    json_decref(v);
    free(s);
    CHECK(!serve_fail(&e, 401, NULL, "wrong API key") && !strcmp(e.type, "authentication_error"));
    CHECK(!serve_fail(&e, 404, NULL, "x") && !strcmp(e.type, "not_found_error"));
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s GOLDEN_DIR QWEN3_TOKENIZER_DIR\n", argv[0]);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/models/tied_gqa2", argv[1]);
    tandem_model *model;
    CHECK_OK(tandem_model_load(path, NULL, &model));
    tandem_tokenizer *tok;
    if (tandem_tokenizer_load(argv[2], &tok)) {
        fprintf(stderr, "no Qwen3 tokenizer in %s (%s): run scripts/setup.sh\n", argv[2], tandem_last_error());
        return 1;
    }
    TOK = tok;
    tandem_chat_template *tmpl;
    const char *src = tandem_tokenizer_chat_template(tok);
    CHECK(src != NULL);
    CHECK_OK(tandem_chat_template_parse(src, strlen(src), "Qwen3 tokenizer_config.json", &tmpl));
    M = (serve_model){.name = "qwen3-test", .model = model, .tok = tok, .chat_template = tmpl, .n_ctx = 4096};
    L = serve_default_limits();
    L.max_stop = 4;
    L.max_tokens = 1000;

    check_plain_chat();
    check_thinking();
    check_reasoning_open();
    check_tools();
    check_sampling_and_limits();
    check_completions();
    check_errors();
    check_error_json();

    tandem_chat_template_free(tmpl);
    tandem_tokenizer_free(tok);
    tandem_model_free(model);
    return test_summary();
}
