/* request.c — an OpenAI request body (POST /v1/chat/completions, /v1/completions) checked field by field and turned
 * into engine inputs: the prompt's ids, tandem_gen_params, the grammar and the output parser's settings. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "serve.h"

serve_limits serve_default_limits(void) {
    return (serve_limits){
        .max_body_bytes = 32u << 20,
        .max_messages = 4096,
        .max_tokens = 8192,
        .max_stop = 16,
        .max_images = 16,
        .max_image_bytes = 20u << 20,
    };
}

bool serve_fail(serve_error *err, int status, const char *param, const char *fmt, ...) {
    err->status = status;
    err->code = NULL;
    switch (status) {
    case 401: err->type = "authentication_error"; break;
    case 404: err->type = "not_found_error"; break;
    case 429: err->type = "rate_limit_error"; break;
    case 500:
    case 503: err->type = "server_error"; break;
    default: err->type = "invalid_request_error"; break;
    }
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return false;
}

/* ---- field readers: each takes the field's JSON path for its error ---- */

typedef struct parse_ctx {
    const serve_model *m;
    const serve_limits *lim;
    serve_error *err;
    serve_request *out;
} parse_ctx;

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

static bool bad_type(serve_error *err, const char *path, const char *expected, const json_t *v) {
    return serve_fail(err, 400, path, "%s: expected %s, got %s", path, expected, type_name(v));
}

/* An optional field: NULL when absent or null (clients send null for "not set"). */
static json_t *opt(const json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) ? v : NULL;
}

static bool read_bool(serve_error *err, const json_t *v, const char *path, bool *out) {
    if (!json_is_boolean(v)) return bad_type(err, path, "a boolean", v);
    *out = json_is_true(v);
    return true;
}

static bool read_number(serve_error *err, const json_t *v, const char *path, double lo, double hi, double *out) {
    if (!json_is_number(v)) return bad_type(err, path, "a number", v);
    const double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return serve_fail(err, 400, path, "%s: %g is out of range: expected %g to %g", path, x, lo, hi);
    *out = x;
    return true;
}

/* An integer (a number with an integral value, as JavaScript clients send 1.0, is accepted too). */
static bool read_int(serve_error *err, const json_t *v, const char *path, int64_t lo, int64_t hi, int64_t *out) {
    int64_t x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9.0e15) {
        x = (int64_t)json_real_value(v);
    } else {
        return bad_type(err, path, "an integer", v);
    }
    if (x < lo && hi == INT64_MAX)
        return serve_fail(err, 400, path, "%s: %lld is out of range: expected at least %lld", path, (long long)x,
                          (long long)lo);
    if (x < lo || x > hi)
        return serve_fail(err, 400, path, "%s: %lld is out of range: expected %lld to %lld", path, (long long)x,
                          (long long)lo, (long long)hi);
    *out = x;
    return true;
}

/* A string without NUL bytes (it becomes a C string). */
static bool read_cstring(serve_error *err, const json_t *v, const char *path, const char **out) {
    if (!json_is_string(v)) return bad_type(err, path, "a string", v);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return serve_fail(err, 400, path, "%s: must not contain U+0000", path);
    *out = json_string_value(v);
    return true;
}

/* ---- the fields both routes share ---- */

static uint64_t random_seed(void) {
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        static uint64_t counter; /* requests are parsed on several threads at once */
        s = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^
            __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    }
    return s;
}

static bool parse_stop(parse_ctx *c, const json_t *root) {
    json_t *v = opt(root, "stop");
    if (!v) return true;
    serve_request *r = c->out;
    const size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (!json_is_string(v) && !json_is_array(v)) return bad_type(c->err, "stop", "a string or an array of strings", v);
    if (n > (size_t)c->lim->max_stop)
        return serve_fail(c->err, 400, "stop", "stop: %zu stop strings, more than the limit of %d", n,
                          c->lim->max_stop);
    if (n == 0) return true;
    if (!(r->stop = calloc(n, sizeof *r->stop))) return serve_fail(c->err, 500, "", "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_is_array(v) ? json_array_get(v, i) : v;
        char path[32];
        if (json_is_array(v)) snprintf(path, sizeof path, "stop[%zu]", i);
        else snprintf(path, sizeof path, "stop");
        const char *text;
        if (!read_cstring(c->err, s, path, &text)) return false;
        if (!text[0]) return serve_fail(c->err, 400, path, "%s: a stop string must not be empty", path);
        if (!(r->stop[i] = strdup(text))) return serve_fail(c->err, 500, "", "out of memory");
        r->n_stop = (int32_t)(i + 1);
    }
    r->gen.stop = (const char *const *)r->stop;
    r->gen.n_stop = r->n_stop;
    return true;
}

/* Sampling: what the request leaves out keeps the model's defaults (generation_config.json), as vLLM and
 * llama-server do; the seed, when not given, is drawn at random so that equal requests get different samples. */
static bool parse_sampling(parse_ctx *c, const json_t *root) {
    tandem_sampler_params *s = &c->out->gen.sampling;
    serve_error *err = c->err;
    json_t *v;
    double x;
    int64_t i;
    if ((v = opt(root, "temperature"))) {
        if (!read_number(err, v, "temperature", 0, 2, &x)) return false;
        s->temperature = (float)x;
    }
    if ((v = opt(root, "top_k"))) { /* vLLM's -1 (and 0) = off */
        if (!read_int(err, v, "top_k", -1, INT32_MAX, &i)) return false;
        s->top_k = i < 0 ? 0 : (int32_t)i;
    }
    if ((v = opt(root, "top_p"))) {
        if (!read_number(err, v, "top_p", 0, 1, &x)) return false;
        if (x > 0) {
            s->top_p = (float)x;
        } else { /* OpenAI's top_p 0: only the most likely token */
            s->top_p = 1;
            s->top_k = 1;
        }
    }
    if ((v = opt(root, "min_p"))) {
        if (!read_number(err, v, "min_p", 0, 1, &x)) return false;
        s->min_p = (float)x;
    }
    if ((v = opt(root, "presence_penalty"))) {
        if (!read_number(err, v, "presence_penalty", -2, 2, &x)) return false;
        s->presence_penalty = (float)x;
    }
    if ((v = opt(root, "frequency_penalty"))) {
        if (!read_number(err, v, "frequency_penalty", -2, 2, &x)) return false;
        s->frequency_penalty = (float)x;
    }
    if ((v = opt(root, "repetition_penalty"))) {
        if (!read_number(err, v, "repetition_penalty", 0, 10, &x)) return false;
        if (x <= 0) return serve_fail(err, 400, "repetition_penalty", "repetition_penalty: must be > 0 (1 = off)");
        s->repeat_penalty = (float)x;
    }
    if ((v = opt(root, "seed"))) {
        if (!read_int(err, v, "seed", INT64_MIN, INT64_MAX, &i)) return false;
        s->seed = (uint64_t)i;
    } else {
        s->seed = random_seed();
    }
    if ((v = opt(root, "n"))) {
        if (!read_int(err, v, "n", INT32_MIN, INT32_MAX, &i)) return false;
        if (i != 1)
            return serve_fail(err, 400, "n", "n: only n = 1 is supported (one choice per request), got %lld",
                              (long long)i);
    }
    if ((v = opt(root, "logit_bias"))) {
        if (!json_is_object(v)) return bad_type(err, "logit_bias", "an object", v);
        if (json_object_size(v)) return serve_fail(err, 400, "logit_bias", "logit_bias: not supported yet");
    }
    return true;
}

/* stream, stream_options and the token limit (capped by the server's limit and the context's room). */
static bool parse_common(parse_ctx *c, const json_t *root, int32_t default_max_tokens) {
    serve_request *r = c->out;
    json_t *v;
    if ((v = opt(root, "model"))) {
        const char *name;
        if (!read_cstring(c->err, v, "model", &name)) return false;
        if (!(r->model = strdup(name))) return serve_fail(c->err, 500, "", "out of memory");
    }
    if ((v = opt(root, "stream")) && !read_bool(c->err, v, "stream", &r->stream)) return false;
    if ((v = opt(root, "stream_options"))) {
        if (!json_is_object(v)) return bad_type(c->err, "stream_options", "an object", v);
        json_t *u = opt(v, "include_usage");
        if (u && !read_bool(c->err, u, "stream_options.include_usage", &r->include_usage)) return false;
        /* vLLM's extension: usage so far on every chunk (with include_usage) */
        u = opt(v, "continuous_usage_stats");
        if (u && !read_bool(c->err, u, "stream_options.continuous_usage_stats", &r->continuous_usage)) return false;
    }
    int64_t max_tokens = default_max_tokens;
    bool set = false;
    const char *keys[] = {"max_completion_tokens", "max_tokens"};
    for (int k = 0; k < 2 && !set; k++) {
        if ((v = opt(root, keys[k]))) {
            if (!read_int(c->err, v, keys[k], 1, INT64_MAX, &max_tokens)) return false;
            set = true;
        }
    }
    if (max_tokens > c->lim->max_tokens) max_tokens = c->lim->max_tokens;
    r->gen.max_tokens = (int32_t)max_tokens;
    /* ignore_eos: llama-server's and vLLM's extension (benchmarks ask for exactly max_tokens tokens) */
    if ((v = opt(root, "ignore_eos")) && !read_bool(c->err, v, "ignore_eos", &r->gen.ignore_eos)) return false;
    if (!parse_sampling(c, root)) return false;
    return parse_stop(c, root);
}

/* The prompt must leave room for one generated token; max_tokens is cut to the room left. */
static bool fit_context(parse_ctx *c, const char *what) {
    serve_request *r = c->out;
    const int64_t n_ctx = c->m->n_ctx;
    if ((int64_t)r->n_prompt >= n_ctx) {
        serve_fail(c->err, 400, what,
                   "This model's maximum context length is %lld tokens. However, your %s resulted in %zu tokens, "
                   "which leaves no room for a completion. Please reduce the length of the %s.",
                   (long long)n_ctx, what, r->n_prompt, what);
        c->err->code = "context_length_exceeded";
        return false;
    }
    if ((int64_t)r->gen.max_tokens > n_ctx - (int64_t)r->n_prompt)
        r->gen.max_tokens = (int32_t)(n_ctx - (int64_t)r->n_prompt);
    return true;
}

static bool tokenize(parse_ctx *c, const char *text, size_t len, bool parse_special, int32_t **ids, size_t *n) {
    if (tandem_tokenizer_encode(c->m->tok, text, len, parse_special, ids, n) != TANDEM_OK)
        return serve_fail(c->err, 500, "", "tokenizing failed: %s", tandem_last_error());
    return true;
}

/* ---- chat messages ---- */

/* An image_url part's image (the object form {"url": …, "detail": …} or the bare string), decoded and preprocessed
 * for the model, appended to the request's images. path: the part's. */
static bool parse_image_part(parse_ctx *c, json_t *part, const char *type, const char *ppath) {
    serve_request *r = c->out;
    if (!c->m->has_vision)
        return serve_fail(c->err, 400, ppath, "%s: images need a Qwen3-VL model; model \"%s\" has no vision tower",
                          ppath, c->m->name ? c->m->name : "");
    char upath[128];
    /* image_url and the Responses API's input_image carry "image_url"; a bare {"type": "image"} "image" or that */
    const char *key = !strcmp(type, "image") && json_object_get(part, "image") ? "image" : "image_url";
    json_t *v = json_object_get(part, key);
    snprintf(upath, sizeof upath, "%s.%s", ppath, key);
    if (json_is_object(v)) {
        strncat(upath, ".url", sizeof upath - strlen(upath) - 1);
        json_t *d = opt(v, "detail");
        if (d && !json_is_string(d)) {
            char dpath[128];
            snprintf(dpath, sizeof dpath, "%s.%s.detail", ppath, key);
            return bad_type(c->err, dpath, "a string", d);
        }
        v = json_object_get(v, "url");
    }
    if (!json_is_string(v))
        return v ? bad_type(c->err, upath, "a string (a data: URI)", v)
                 : serve_fail(c->err, 400, upath, "%s: missing (a data: URI)", upath);
    if (r->n_images >= c->lim->max_images)
        return serve_fail(c->err, 400, upath, "%s: more than %d images in one request", upath, c->lim->max_images);
    const char *url = json_string_value(v);
    const size_t len = json_string_length(v);
    tandem_image **grown = realloc(r->images, (size_t)(r->n_images + 1) * sizeof *grown);
    if (!grown) return serve_fail(c->err, 500, "", "out of memory");
    r->images = grown;
    tandem_image *img = NULL;
    tandem_status st;
    if (len >= 5 && !strncasecmp(url, "data:", 5)) {
        unsigned char *data;
        size_t size;
        char why[200];
        const int status = serve_data_uri_decode(url, len, c->lim->max_image_bytes, &data, &size, why, sizeof why);
        if (status) return serve_fail(c->err, status, upath, "%s: %s", upath, why);
        st = tandem_image_from_bytes(c->m->model, upath, data, size, &c->m->image, &img);
        free(data);
    } else if (!strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8)) {
        return serve_fail(c->err, 400, upath, "%s: fetching remote images is not supported; send a data: URI", upath);
    } else if (!strncasecmp(url, "file://", 7) || url[0] == '/') {
        if (!c->m->allow_local_files)
            return serve_fail(c->err, 400, upath,
                              "%s: local files are refused by this server (start it with --allow-local-files); send a "
                              "data: URI",
                              upath);
        const char *path = url;
        if (!strncasecmp(url, "file://", 7)) {
            path = url + 7;
            if (!strncasecmp(path, "localhost/", 10)) path += 9;
            if (path[0] != '/')
                return serve_fail(c->err, 400, upath, "%s: a file:// URL needs an absolute path", upath);
        }
        if (strlen(path) != len - (size_t)(path - url))
            return serve_fail(c->err, 400, upath, "%s: must not contain U+0000", upath);
        st = tandem_image_load(c->m->model, path, &c->m->image, &img);
    } else {
        return serve_fail(c->err, 400, upath, "%s: expected a data: URI (data:image/png;base64,...)", upath);
    }
    if (st == TANDEM_ERR_NO_MEMORY) return serve_fail(c->err, 500, "", "%s", tandem_last_error());
    if (st) return serve_fail(c->err, 400, upath, "%s", tandem_last_error());
    if (tandem_image_tokens(img) >= c->m->n_ctx) {
        const int32_t tokens = tandem_image_tokens(img);
        tandem_image_free(img);
        return serve_fail(c->err, 400, upath,
                          "%s: the image takes %d tokens, more than a slot's context of %d (send it smaller, or start "
                          "the server with a lower --image-max-tokens)",
                          upath, tokens, c->m->n_ctx);
    }
    r->images[r->n_images++] = img;
    r->gen.images = (const tandem_image *const *)r->images;
    r->gen.n_images = r->n_images;
    return true;
}

/* A content part array becomes its text parts joined with "\n" (vLLM's rule): Qwen3's templates print only string
 * contents, and would drop an array silently. With images (a Qwen3-VL model) it stays an array of {"type": "image"}
 * and {"type": "text", "text": …} parts in the order sent, as the processor renders them. Other parts are refused,
 * naming the part. */
static bool parse_content(parse_ctx *c, json_t *msg, size_t mi, bool null_ok) {
    char path[96];
    snprintf(path, sizeof path, "messages[%zu].content", mi);
    json_t *content = json_object_get(msg, "content");
    if (!content || json_is_null(content)) {
        if (null_ok) return true;
        return serve_fail(c->err, 400, path, "%s: expected a string or an array of content parts, got %s", path,
                          content ? "null" : "nothing");
    }
    if (json_is_string(content)) return true;
    if (!json_is_array(content)) return bad_type(c->err, path, "a string or an array of content parts", content);
    size_t total = 0;
    bool images = false;
    for (size_t pi = 0; pi < json_array_size(content); pi++) {
        json_t *part = json_array_get(content, pi);
        char ppath[96];
        snprintf(ppath, sizeof ppath, "messages[%zu].content[%zu]", mi, pi);
        if (!json_is_object(part)) return bad_type(c->err, ppath, "a content part object", part);
        const char *type = json_string_value(json_object_get(part, "type"));
        if (!type) {
            json_t *t = json_object_get(part, "type");
            return serve_fail(c->err, 400, ppath, "%s.type: expected a string, got %s", ppath,
                              t ? type_name(t) : "nothing");
        }
        if (!strcmp(type, "image_url") || !strcmp(type, "image") || !strcmp(type, "input_image")) {
            if (!parse_image_part(c, part, type, ppath)) return false;
            images = true;
            continue;
        }
        if (!strcmp(type, "input_audio") || !strcmp(type, "audio"))
            return serve_fail(c->err, 400, ppath, "%s: audio input is not supported", ppath);
        if (!strcmp(type, "file")) return serve_fail(c->err, 400, ppath, "%s: file inputs are not supported", ppath);
        if (strcmp(type, "text") && strcmp(type, "refusal"))
            return serve_fail(c->err, 400, ppath,
                              "%s: content part type \"%.40s\" is not supported (expected \"text\")", ppath, type);
        const char *key = strcmp(type, "text") ? "refusal" : "text";
        json_t *text = json_object_get(part, key);
        if (!json_is_string(text)) {
            char tpath[112];
            snprintf(tpath, sizeof tpath, "%s.%s", ppath, key);
            return text ? bad_type(c->err, tpath, "a string", text)
                        : serve_fail(c->err, 400, tpath, "%s: expected a string, got nothing", tpath);
        }
        total += json_string_length(text) + 1;
    }
    if (images) { /* the parts as the template expects them */
        json_t *parts = json_array();
        for (size_t pi = 0; parts && pi < json_array_size(content); pi++) {
            json_t *part = json_array_get(content, pi);
            const char *type = json_string_value(json_object_get(part, "type"));
            json_t *p;
            if (!strcmp(type, "text") || !strcmp(type, "refusal"))
                p = json_pack("{s:s, s:O}", "type", "text", "text", json_object_get(part, type));
            else p = json_pack("{s:s}", "type", "image");
            if (!p || json_array_append_new(parts, p)) json_decref(parts), parts = NULL;
        }
        if (!parts || json_object_set_new(msg, "content", parts)) return serve_fail(c->err, 500, "", "out of memory");
        return true;
    }
    char *joined = malloc(total + 1);
    if (!joined) return serve_fail(c->err, 500, "", "out of memory");
    size_t n = 0;
    for (size_t pi = 0; pi < json_array_size(content); pi++) {
        json_t *part = json_array_get(content, pi);
        json_t *text = json_object_get(part, "text");
        if (!text) text = json_object_get(part, "refusal");
        if (pi) joined[n++] = '\n';
        memcpy(joined + n, json_string_value(text), json_string_length(text));
        n += json_string_length(text);
    }
    json_t *s = json_stringn_nocheck(joined, n); /* parts were valid UTF-8 already */
    free(joined);
    if (!s || json_object_set_new(msg, "content", s)) return serve_fail(c->err, 500, "", "out of memory");
    return true;
}

static bool parse_tool_call_history(parse_ctx *c, json_t *calls, size_t mi) {
    char path[96];
    snprintf(path, sizeof path, "messages[%zu].tool_calls", mi);
    if (!json_is_array(calls)) return bad_type(c->err, path, "an array of tool calls", calls);
    for (size_t ci = 0; ci < json_array_size(calls); ci++) {
        json_t *call = json_array_get(calls, ci);
        snprintf(path, sizeof path, "messages[%zu].tool_calls[%zu]", mi, ci);
        if (!json_is_object(call)) return bad_type(c->err, path, "a tool call object", call);
        json_t *id = opt(call, "id");
        if (id && !json_is_string(id)) {
            snprintf(path, sizeof path, "messages[%zu].tool_calls[%zu].id", mi, ci);
            return bad_type(c->err, path, "a string", id);
        }
        json_t *fn = json_object_get(call, "function");
        snprintf(path, sizeof path, "messages[%zu].tool_calls[%zu].function", mi, ci);
        if (!json_is_object(fn))
            return fn ? bad_type(c->err, path, "an object", fn) : serve_fail(c->err, 400, path, "%s: missing", path);
        json_t *name = json_object_get(fn, "name");
        snprintf(path, sizeof path, "messages[%zu].tool_calls[%zu].function.name", mi, ci);
        if (!json_is_string(name))
            return name ? bad_type(c->err, path, "a string", name) : serve_fail(c->err, 400, path, "%s: missing", path);
        json_t *args = opt(fn, "arguments");
        snprintf(path, sizeof path, "messages[%zu].tool_calls[%zu].function.arguments", mi, ci);
        if (args && !json_is_string(args) && !json_is_object(args))
            return bad_type(c->err, path, "a string holding a JSON object", args);
    }
    return true;
}

static bool parse_messages(parse_ctx *c, json_t *messages) {
    if (!messages) return serve_fail(c->err, 400, "messages", "messages: missing (an array of messages is required)");
    if (!json_is_array(messages)) return bad_type(c->err, "messages", "an array of messages", messages);
    const size_t n = json_array_size(messages);
    if (n == 0) return serve_fail(c->err, 400, "messages", "messages: must hold at least one message");
    if (n > (size_t)c->lim->max_messages)
        return serve_fail(c->err, 400, "messages", "messages: %zu messages, more than the limit of %d", n,
                          c->lim->max_messages);
    for (size_t mi = 0; mi < n; mi++) {
        json_t *msg = json_array_get(messages, mi);
        char path[96];
        snprintf(path, sizeof path, "messages[%zu]", mi);
        if (!json_is_object(msg)) return bad_type(c->err, path, "a message object", msg);
        json_t *role_v = json_object_get(msg, "role");
        snprintf(path, sizeof path, "messages[%zu].role", mi);
        if (!json_is_string(role_v))
            return role_v ? bad_type(c->err, path, "a string", role_v)
                          : serve_fail(c->err, 400, path, "%s: missing", path);
        const char *role = json_string_value(role_v);
        const bool assistant = !strcmp(role, "assistant");
        if (strcmp(role, "system") && strcmp(role, "developer") && strcmp(role, "user") && !assistant &&
            strcmp(role, "tool"))
            return serve_fail(c->err, 400, path,
                              "%s: \"%.40s\" is not a role: expected system, developer, user, assistant or tool", path,
                              role);
        json_t *v;
        if ((v = opt(msg, "name")) && !json_is_string(v)) {
            snprintf(path, sizeof path, "messages[%zu].name", mi);
            return bad_type(c->err, path, "a string", v);
        }
        if ((v = opt(msg, "reasoning_content")) && !json_is_string(v)) {
            snprintf(path, sizeof path, "messages[%zu].reasoning_content", mi);
            return bad_type(c->err, path, "a string", v);
        }
        json_t *calls = opt(msg, "tool_calls");
        if (calls && !assistant) {
            snprintf(path, sizeof path, "messages[%zu].tool_calls", mi);
            return serve_fail(c->err, 400, path, "%s: only assistant messages carry tool calls", path);
        }
        if (calls && !parse_tool_call_history(c, calls, mi)) return false;
        if (!strcmp(role, "tool") && (v = opt(msg, "tool_call_id")) && !json_is_string(v)) {
            snprintf(path, sizeof path, "messages[%zu].tool_call_id", mi);
            return bad_type(c->err, path, "a string", v);
        }
        if (!parse_content(c, msg, mi, assistant)) return false;
    }
    return true;
}

/* ---- tools, tool_choice, response_format ---- */

typedef struct chat_options {
    json_t *tools; /* the tools array (non-empty), or NULL */
    tandem_tool_choice choice;
    const char *function_name;
    bool parallel_tool_calls;
    int json_output;            /* 0 text, 1 json_object, 2 json_schema */
    char *schema;               /* json_schema's schema (compact JSON), or NULL */
    int32_t enable_thinking;    /* -1 the template's default, 0, 1 */
    const char *thinking_param; /* the field that set enable_thinking explicitly, or NULL */
    char *kwargs;               /* chat_template_kwargs without enable_thinking (compact JSON), or NULL */
} chat_options;

static bool parse_tools(parse_ctx *c, const json_t *root, chat_options *o) {
    json_t *tools = opt(root, "tools");
    if (tools) {
        if (!json_is_array(tools)) return bad_type(c->err, "tools", "an array of tools", tools);
        for (size_t i = 0; i < json_array_size(tools); i++) {
            json_t *t = json_array_get(tools, i);
            char path[96];
            snprintf(path, sizeof path, "tools[%zu]", i);
            if (!json_is_object(t)) return bad_type(c->err, path, "a tool object", t);
            json_t *type = json_object_get(t, "type");
            snprintf(path, sizeof path, "tools[%zu].type", i);
            if (type && !json_is_string(type)) return bad_type(c->err, path, "a string", type);
            if (type && strcmp(json_string_value(type), "function"))
                return serve_fail(c->err, 400, path, "%s: \"%.40s\" tools are not supported (expected \"function\")",
                                  path, json_string_value(type));
            json_t *fn = json_object_get(t, "function");
            snprintf(path, sizeof path, "tools[%zu].function", i);
            if (!json_is_object(fn))
                return fn ? bad_type(c->err, path, "an object", fn)
                          : serve_fail(c->err, 400, path, "%s: missing", path);
            json_t *name = json_object_get(fn, "name");
            snprintf(path, sizeof path, "tools[%zu].function.name", i);
            const char *s;
            if (!name) return serve_fail(c->err, 400, path, "%s: missing", path);
            if (!read_cstring(c->err, name, path, &s)) return false;
            if (!s[0]) return serve_fail(c->err, 400, path, "%s: must not be empty", path);
            json_t *v;
            if ((v = opt(fn, "description")) && !json_is_string(v)) {
                snprintf(path, sizeof path, "tools[%zu].function.description", i);
                return bad_type(c->err, path, "a string", v);
            }
            if ((v = opt(fn, "parameters")) && !json_is_object(v)) {
                snprintf(path, sizeof path, "tools[%zu].function.parameters", i);
                return bad_type(c->err, path, "a JSON Schema object", v);
            }
            if ((v = opt(fn, "strict")) && !json_is_boolean(v)) {
                snprintf(path, sizeof path, "tools[%zu].function.strict", i);
                return bad_type(c->err, path, "a boolean", v);
            }
        }
        if (json_array_size(tools)) o->tools = tools;
    }
    o->choice = TANDEM_TOOL_CHOICE_AUTO;
    json_t *tc = opt(root, "tool_choice");
    if (tc) {
        if (json_is_string(tc)) {
            const char *s = json_string_value(tc);
            if (!strcmp(s, "auto")) o->choice = TANDEM_TOOL_CHOICE_AUTO;
            else if (!strcmp(s, "none")) o->choice = TANDEM_TOOL_CHOICE_NONE;
            else if (!strcmp(s, "required")) o->choice = TANDEM_TOOL_CHOICE_REQUIRED;
            else
                return serve_fail(c->err, 400, "tool_choice",
                                  "tool_choice: \"%.40s\" is not a choice: expected \"auto\", \"none\", \"required\" "
                                  "or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                                  s);
        } else if (json_is_object(tc)) {
            json_t *type = json_object_get(tc, "type");
            if (!json_is_string(type) || strcmp(json_string_value(type), "function"))
                return serve_fail(c->err, 400, "tool_choice.type",
                                  "tool_choice.type: expected \"function\" (other tool choices are not supported)");
            json_t *fn = json_object_get(tc, "function");
            if (!json_is_object(fn))
                return fn ? bad_type(c->err, "tool_choice.function", "an object", fn)
                          : serve_fail(c->err, 400, "tool_choice.function", "tool_choice.function: missing");
            json_t *name = json_object_get(fn, "name");
            if (!name)
                return serve_fail(c->err, 400, "tool_choice.function.name", "tool_choice.function.name: missing");
            if (!read_cstring(c->err, name, "tool_choice.function.name", &o->function_name)) return false;
            o->choice = TANDEM_TOOL_CHOICE_NAMED;
            bool offered = false;
            for (size_t i = 0; o->tools && i < json_array_size(o->tools) && !offered; i++) {
                json_t *fn_i = json_object_get(json_array_get(o->tools, i), "function");
                offered = !strcmp(json_string_value(json_object_get(fn_i, "name")), o->function_name);
            }
            if (!offered)
                return serve_fail(c->err, 400, "tool_choice.function.name",
                                  "tool_choice.function.name: \"%.60s\" is not one of the tools offered",
                                  o->function_name);
        } else {
            return bad_type(c->err, "tool_choice", "a string or an object", tc);
        }
    }
    if (!o->tools && o->choice == TANDEM_TOOL_CHOICE_REQUIRED)
        return serve_fail(c->err, 400, "tool_choice", "tool_choice: \"required\" needs tools");
    o->parallel_tool_calls = true;
    json_t *v = opt(root, "parallel_tool_calls");
    if (v && !read_bool(c->err, v, "parallel_tool_calls", &o->parallel_tool_calls)) return false;
    return true;
}

static bool parse_response_format(parse_ctx *c, const json_t *root, chat_options *o) {
    json_t *rf = opt(root, "response_format");
    if (!rf) return true;
    if (!json_is_object(rf)) return bad_type(c->err, "response_format", "an object", rf);
    json_t *type = json_object_get(rf, "type");
    if (!json_is_string(type))
        return type ? bad_type(c->err, "response_format.type", "a string", type)
                    : serve_fail(c->err, 400, "response_format.type", "response_format.type: missing");
    const char *t = json_string_value(type);
    if (!strcmp(t, "text")) return true;
    if (!strcmp(t, "json_object")) {
        o->json_output = 1;
        return true;
    }
    if (strcmp(t, "json_schema"))
        return serve_fail(c->err, 400, "response_format.type",
                          "response_format.type: \"%.40s\" is not a format: expected \"text\", \"json_object\" or "
                          "\"json_schema\"",
                          t);
    o->json_output = 2;
    json_t *js = json_object_get(rf, "json_schema");
    if (!json_is_object(js))
        return js ? bad_type(c->err, "response_format.json_schema", "an object", js)
                  : serve_fail(c->err, 400, "response_format.json_schema", "response_format.json_schema: missing");
    json_t *v;
    if ((v = opt(js, "name")) && !json_is_string(v))
        return bad_type(c->err, "response_format.json_schema.name", "a string", v);
    if ((v = opt(js, "strict")) && !json_is_boolean(v))
        return bad_type(c->err, "response_format.json_schema.strict", "a boolean", v);
    json_t *schema = opt(js, "schema");
    if (schema) {
        if (!json_is_object(schema) && !json_is_boolean(schema))
            return bad_type(c->err, "response_format.json_schema.schema", "a JSON Schema object", schema);
        if (!(o->schema = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY)))
            return serve_fail(c->err, 500, "", "out of memory");
    }
    return true;
}

/* enable_thinking: chat_template_kwargs.enable_thinking, else the top-level enable_thinking, else --no-think. */
static bool parse_thinking(parse_ctx *c, const json_t *root, chat_options *o) {
    o->enable_thinking = -1;
    json_t *kw = opt(root, "chat_template_kwargs");
    json_t *v;
    if ((v = opt(root, "enable_thinking"))) {
        bool b = false;
        if (!read_bool(c->err, v, "enable_thinking", &b)) return false;
        o->enable_thinking = b;
        o->thinking_param = "enable_thinking";
    }
    if (kw) {
        if (!json_is_object(kw)) return bad_type(c->err, "chat_template_kwargs", "an object", kw);
        json_t *copy = json_copy(kw);
        if (!copy) return serve_fail(c->err, 500, "", "out of memory");
        if ((v = opt(kw, "enable_thinking"))) {
            bool b = false;
            if (!read_bool(c->err, v, "chat_template_kwargs.enable_thinking", &b)) {
                json_decref(copy);
                return false;
            }
            o->enable_thinking = b;
            o->thinking_param = "chat_template_kwargs.enable_thinking";
        }
        json_object_del(copy, "enable_thinking");
        o->kwargs = json_dumps(copy, JSON_COMPACT);
        json_decref(copy);
        if (!o->kwargs)
            return serve_fail(c->err, 400, "chat_template_kwargs", "chat_template_kwargs: cannot be encoded as JSON");
    }
    if (o->json_output) {
        /* the grammar's JSON starts at the first token: the prompt must close the reasoning itself */
        if (o->enable_thinking == 1)
            return serve_fail(c->err, 400, o->thinking_param,
                              "%s: response_format %s makes the answer JSON from its first token, so the model cannot "
                              "think first: leave enable_thinking unset or false",
                              o->thinking_param, o->json_output == 1 ? "json_object" : "json_schema");
        o->enable_thinking = 0;
    } else if (o->enable_thinking < 0 && c->m->no_think) {
        o->enable_thinking = 0;
    }
    return true;
}

static bool parse_prediction(parse_ctx *c, const json_t *root) {
    json_t *p = opt(root, "prediction");
    if (!p) return true;
    if (!json_is_object(p)) return bad_type(c->err, "prediction", "an object", p);
    json_t *type = json_object_get(p, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), "content"))
        return serve_fail(c->err, 400, "prediction.type", "prediction.type: expected \"content\"");
    json_t *content = json_object_get(p, "content");
    serve_buf text = {0};
    bool ok = true;
    if (json_is_string(content)) {
        ok = serve_buf_append(&text, json_string_value(content), json_string_length(content));
    } else if (json_is_array(content)) {
        for (size_t i = 0; ok && i < json_array_size(content); i++) {
            json_t *part = json_array_get(content, i);
            char path[96];
            snprintf(path, sizeof path, "prediction.content[%zu]", i);
            json_t *t = json_object_get(part, "text");
            if (!json_is_object(part) || !json_is_string(json_object_get(part, "type")) ||
                strcmp(json_string_value(json_object_get(part, "type")), "text") || !json_is_string(t)) {
                serve_buf_free(&text);
                return serve_fail(c->err, 400, path, "%s: expected a text part {\"type\": \"text\", \"text\": ...}",
                                  path);
            }
            ok = serve_buf_append(&text, json_string_value(t), json_string_length(t));
        }
    } else {
        return content ? bad_type(c->err, "prediction.content", "a string or an array of text parts", content)
                       : serve_fail(c->err, 400, "prediction.content", "prediction.content: missing");
    }
    if (!ok) return serve_fail(c->err, 500, "", "out of memory");
    ok = true;
    if (text.len) ok = tokenize(c, text.data, text.len, false, &c->out->prediction_ids, &c->out->n_prediction);
    serve_buf_free(&text);
    return ok;
}

/* The prompt ends inside "<think>" (thinking-2507 templates open it in the generation prompt). */
static bool ends_in_open_think(const char *text, size_t len) {
    while (len && (text[len - 1] == '\n' || text[len - 1] == ' ' || text[len - 1] == '\r' || text[len - 1] == '\t'))
        len--;
    return len >= 7 && !memcmp(text + len - 7, "<think>", 7);
}

static bool build_chat(parse_ctx *c, json_t *root, chat_options *o) {
    serve_request *r = c->out;
    const serve_model *m = c->m;
    if (!m->chat_template)
        return serve_fail(c->err, 400, "model",
                          "model \"%s\" has no chat template: use /v1/completions, or start the server with a chat "
                          "template",
                          m->name ? m->name : "");
    json_t *messages = json_object_get(root, "messages");
    if (!parse_messages(c, messages)) return false;
    if (!parse_tools(c, root, o) || !parse_response_format(c, root, o) || !parse_thinking(c, root, o)) return false;
    const bool calls = o->tools && o->choice != TANDEM_TOOL_CHOICE_NONE;
    if (calls && o->json_output && o->choice == TANDEM_TOOL_CHOICE_AUTO)
        return serve_fail(c->err, 400, "response_format",
                          "response_format: JSON output together with tools under tool_choice \"auto\" is not "
                          "supported (one grammar constrains the answer): set tool_choice to \"none\" or "
                          "\"required\", or drop response_format");
    if (!parse_prediction(c, root)) return false;

    char *msgs = json_dumps(messages, JSON_COMPACT);
    char *tools = o->tools ? json_dumps(o->tools, JSON_COMPACT) : NULL;
    if (!msgs || (o->tools && !tools)) {
        free(msgs);
        free(tools);
        return serve_fail(c->err, 400, "messages", "messages: cannot be encoded as JSON");
    }
    tandem_chat_render_params rp = tandem_chat_render_default_params();
    rp.add_generation_prompt = true;
    rp.enable_thinking = o->enable_thinking;
    rp.tools_json = tools;
    rp.extra_context_json = o->kwargs;
    rp.special_tokens_json = tandem_tokenizer_special_tokens_json(m->tok); /* as transformers passes them */
    char *text = NULL;
    size_t text_len = 0;
    /* a model with named templates renders tool requests with its "tool_use" one (transformers' choice) */
    const tandem_chat_template *tmpl = o->tools && m->chat_template_tools ? m->chat_template_tools : m->chat_template;
    tandem_status st = tandem_chat_render(tmpl, msgs, strlen(msgs), &rp, &text, &text_len);
    free(msgs);
    free(tools);
    if (st == TANDEM_ERR_NO_MEMORY) return serve_fail(c->err, 500, "", "%s", tandem_last_error());
    if (st) return serve_fail(c->err, 400, "messages", "%s", tandem_last_error());
    bool open = ends_in_open_think(text, text_len);
    if (open && o->json_output) { /* close the reasoning the template opened, as enable_thinking=false writes it */
        static const char close[] = "\n</think>\n\n";
        char *t = realloc(text, text_len + sizeof close);
        if (!t) {
            tandem_free(text);
            return serve_fail(c->err, 500, "", "out of memory");
        }
        memcpy(t + text_len, close, sizeof close);
        text = t;
        text_len += sizeof close - 1;
        open = false;
    }
    bool ok;
    if (r->n_images) { /* the processor's step: each image's placeholder repeated to its token count */
        st = tandem_vl_prompt(m->model, text, text_len, (const tandem_image *const *)r->images, r->n_images,
                              &r->prompt_ids, &r->n_prompt);
        ok = st == TANDEM_OK ||
             serve_fail(c->err, st == TANDEM_ERR_NO_MEMORY ? 500 : 400, "messages",
                        "messages: the chat template placed the images wrongly: %s", tandem_last_error());
    } else {
        ok = tokenize(c, text, text_len, true, &r->prompt_ids, &r->n_prompt);
    }
    tandem_free(text);
    if (!ok || !fit_context(c, "messages")) return false;

    r->parse_output = true;
    r->parser = tandem_chat_parser_default_params();
    r->parser.reasoning_open = open;
    r->parser.parse_tool_calls = calls;
    if (o->tools && !(o->json_output && o->choice == TANDEM_TOOL_CHOICE_NONE)) {
        tandem_tool_grammar_params tp = tandem_tool_grammar_default_params();
        tp.tools_json = tools = json_dumps(o->tools, JSON_COMPACT);
        if (!tools) return serve_fail(c->err, 500, "", "out of memory");
        tp.choice = o->choice;
        tp.function_name = o->function_name;
        tp.parallel_tool_calls = o->parallel_tool_calls;
        tp.reasoning_open = open;
        tp.thinking = o->enable_thinking != 0;
        st = tandem_grammar_from_tools(m->tok, &tp, &r->grammar);
        free(tools);
        if (st == TANDEM_ERR_NO_MEMORY) return serve_fail(c->err, 500, "", "%s", tandem_last_error());
        if (st) return serve_fail(c->err, 400, "tools", "tools: %s", tandem_last_error());
    } else if (o->json_output) {
        st = tandem_grammar_from_json_schema(m->tok, o->schema, &r->grammar);
        if (st == TANDEM_ERR_NO_MEMORY) return serve_fail(c->err, 500, "", "%s", tandem_last_error());
        if (st)
            return serve_fail(c->err, 400, o->schema ? "response_format.json_schema.schema" : "response_format",
                              "%s: %s", o->schema ? "response_format.json_schema.schema" : "response_format",
                              tandem_last_error());
    }
    r->gen.grammar = r->grammar;
    return true;
}

/* ---- completions ---- */

static bool build_completion(parse_ctx *c, json_t *root) {
    serve_request *r = c->out;
    json_t *p = json_object_get(root, "prompt");
    const char *path = "prompt";
    if (json_is_array(p) && json_array_size(p) == 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0)))) {
        p = json_array_get(p, 0); /* a list of one prompt */
        path = "prompt[0]";
    }
    if (!p) return serve_fail(c->err, 400, "prompt", "prompt: missing (a string or an array of token ids)");
    if (json_is_string(p)) {
        if (!json_string_length(p)) return serve_fail(c->err, 400, path, "%s: must not be empty", path);
        if (!tokenize(c, json_string_value(p), json_string_length(p), true, &r->prompt_ids, &r->n_prompt)) return false;
    } else if (json_is_array(p)) {
        const size_t n = json_array_size(p);
        if (n == 0) return serve_fail(c->err, 400, path, "%s: must not be empty", path);
        if (json_is_array(json_array_get(p, 0)) || (json_is_string(json_array_get(p, 0))))
            return serve_fail(c->err, 400, path, "%s: only one prompt per request is supported", path);
        if (!(r->prompt_ids = malloc(n * sizeof *r->prompt_ids))) return serve_fail(c->err, 500, "", "out of memory");
        const int32_t vocab = tandem_tokenizer_vocab_size(c->m->tok);
        for (size_t i = 0; i < n; i++) {
            char ipath[40];
            snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
            int64_t id;
            if (!read_int(c->err, json_array_get(p, i), ipath, 0, vocab - 1, &id)) return false;
            r->prompt_ids[i] = (int32_t)id;
        }
        r->n_prompt = n;
    } else {
        return bad_type(c->err, path, "a string or an array of token ids", p);
    }
    if (!fit_context(c, "prompt")) return false;
    json_t *v;
    if ((v = opt(root, "echo")) && !read_bool(c->err, v, "echo", &r->echo)) return false;
    if ((v = opt(root, "suffix"))) return serve_fail(c->err, 400, "suffix", "suffix: not supported");
    int64_t i;
    if ((v = opt(root, "best_of"))) {
        if (!read_int(c->err, v, "best_of", INT32_MIN, INT32_MAX, &i)) return false;
        if (i != 1) return serve_fail(c->err, 400, "best_of", "best_of: only 1 is supported");
    }
    if ((v = opt(root, "logprobs"))) { /* the legacy form: how many alternatives per token (OpenAI: at most 5) */
        if (!read_int(c->err, v, "logprobs", 0, TANDEM_MAX_TOP_LOGPROBS, &i)) return false;
        r->gen.logprobs = true;
        r->gen.top_logprobs = (int32_t)i;
    }
    if (r->echo && r->gen.logprobs)
        return serve_fail(c->err, 400, "logprobs", "logprobs: not supported with echo (no prompt log-probabilities)");
    if (r->echo) { /* the prompt as text, for the answer's first piece */
        if (tandem_tokenizer_decode(c->m->tok, r->prompt_ids, r->n_prompt, &r->echo_text, &r->echo_len) != TANDEM_OK)
            return serve_fail(c->err, 500, "", "decoding the prompt failed: %s", tandem_last_error());
    }
    return true;
}

bool serve_request_parse(const serve_model *m, const serve_limits *lim, serve_route route, const char *body, size_t len,
                         serve_request *out, serve_error *err) {
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    if (len > lim->max_body_bytes)
        return serve_fail(err, 413, "", "the request body is %zu bytes, more than this server's limit of %zu bytes",
                          len, lim->max_body_bytes);
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", body ? len : 0, JSON_ALLOW_NUL, &je);
    if (!root)
        return serve_fail(err, 400, "", "the request body is not valid JSON: line %d, column %d: %s", je.line,
                          je.column, je.text);
    if (!json_is_object(root)) {
        bad_type(err, "", "a JSON object", root);
        snprintf(err->message, sizeof err->message, "the request body: expected a JSON object, got %s",
                 type_name(root));
        json_decref(root);
        return false;
    }
    parse_ctx c = {m, lim, err, out};
    out->route = route;
    out->tok = m->tok;
    out->gen = tandem_gen_default_params(m->model);
    bool ok;
    json_t *v;
    if (route == SERVE_CHAT_COMPLETIONS) {
        chat_options o = {0};
        int64_t top = 0;
        bool lp = false;
        ok = parse_common(&c, root, lim->max_tokens);
        if (ok && (v = opt(root, "logprobs"))) ok = read_bool(err, v, "logprobs", &lp);
        if (ok && (v = opt(root, "top_logprobs"))) {
            if ((ok = read_int(err, v, "top_logprobs", 0, TANDEM_MAX_TOP_LOGPROBS, &top)) && top > 0 && !lp)
                ok = serve_fail(err, 400, "top_logprobs", "top_logprobs: needs logprobs set to true");
        }
        out->gen.logprobs = lp;
        out->gen.top_logprobs = (int32_t)top;
        if (ok && (v = opt(root, "audio"))) ok = serve_fail(err, 400, "audio", "audio: audio output is not supported");
        if (ok && (v = opt(root, "functions")))
            ok = serve_fail(err, 400, "functions", "functions: the deprecated functions are not supported: send tools");
        if (ok) ok = build_chat(&c, root, &o);
        free(o.schema);
        free(o.kwargs);
    } else {
        ok = parse_common(&c, root, 16) && build_completion(&c, root);
    }
    json_decref(root);
    if (ok && out->gen.ignore_eos && out->grammar) {
        serve_fail(err, 400, "ignore_eos",
                   "ignore_eos: cannot be combined with tools or response_format (an end "
                   "token is where a grammar lets the answer end)");
        ok = false;
    }
    if (ok && (m->has_draft || m->spec.lookup_ngram > 0 || out->n_prediction > 0)) {
        out->gen.spec = m->spec;
        out->gen.prediction = out->prediction_ids;
        out->gen.n_prediction = (int32_t)out->n_prediction;
    }
    if (!ok) serve_request_free(out);
    return ok;
}

void serve_request_free(serve_request *r) {
    if (!r) return;
    free(r->model);
    tandem_free(r->prompt_ids);
    for (int32_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    tandem_grammar_free(r->grammar);
    tandem_free(r->prediction_ids);
    tandem_free(r->echo_text);
    for (int32_t i = 0; i < r->n_images; i++) tandem_image_free(r->images[i]);
    free(r->images);
    memset(r, 0, sizeof *r);
}
