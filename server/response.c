/* response.c — the engine's text turned into OpenAI answers: chat.completion / text_completion objects, or their
 * chunks as server-sent events, with usage and tandem's timings; the buffer they are written to. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

bool serve_buf_append(serve_buf *b, const void *data, size_t len) {
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1) {
            if (cap > SIZE_MAX / 2) return false;
            cap *= 2;
        }
        char *p = realloc(b->data, cap);
        if (!p) return false;
        b->data = p;
        b->cap = cap;
    }
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return true;
}

void serve_buf_free(serve_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- UTF-8: completions pass the engine's text through without a parser, so pieces are checked here ---- */

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when none starts there; then *bad: the bytes of the maximal
 * subpart of a sequence there (at least 1: Python's errors="replace" gives one U+FFFD for them), and *partial: those
 * bytes are a valid beginning cut short by the end of the buffer. */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad, bool *partial) {
    *partial = false;
    *bad = 1;
    const unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    for (size_t i = 1; i < need; i++) {
        if (i >= n) {
            *partial = true;
            *bad = i;
            return 0;
        }
        const unsigned char lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xBF;
        if (s[i] < lo_i || s[i] > hi_i) {
            *bad = i;
            return 0;
        }
    }
    return need;
}

/* Appends text to b with what is not valid UTF-8 replaced by U+FFFD as Python's errors="replace" does. Returns the
 * bytes consumed: all of them, except (when hold_partial) a valid beginning of a character at the end, kept for the
 * next piece. */
static size_t utf8_clean(serve_buf *b, const char *text, size_t len, bool hold_partial, bool *ok) {
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, run = 0; /* run: start of the valid bytes not yet copied */
    while (i < len) {
        bool partial;
        size_t bad;
        const size_t k = utf8_seq(s + i, len - i, &bad, &partial);
        if (k) {
            i += k;
            continue;
        }
        if (partial && hold_partial) break;
        *ok = *ok && serve_buf_append(b, text + run, i - run) && serve_buf_append(b, "\xEF\xBF\xBD", 3);
        run = i += bad;
    }
    *ok = *ok && serve_buf_append(b, text + run, i - run);
    return i;
}

/* ---- the answer ---- */

struct serve_answer {
    serve_route route;
    bool stream, include_usage, parse_output;
    char *model, *id;
    int64_t created;
    tandem_chat_parser *parser;
    serve_buf *out; /* where the parser's callback writes events (during feed and finish) */
    bool ok;        /* false after running out of memory */
    bool started;   /* stream: the first chunk was written */
    bool finished;
    int32_t n_calls;    /* tool calls complete so far: the next call's index in the stream */
    int32_t call_index; /* the parser's index of the call being held back, or -1 */
    char *call_id, *call_name;
    serve_buf call_args;
    serve_buf text; /* no parser: the text so far (not streaming); the held part of a character */
    serve_buf tail; /* no parser: the beginning of a character cut by the end of a piece */
    char *echo;
    size_t echo_len;
    /* logprobs: the records of the tokens so far (end ids left out); a stream has sent the first n_lps_sent */
    const tandem_tokenizer *tok;
    bool logprobs, ignore_eos;
    tandem_token_logprob *lps;
    size_t n_lps, cap_lps, n_lps_sent;
    size_t text_offset; /* completions: bytes of the answer's text before the next record's token (echo included) */
    /* usage.completion_tokens_details.reasoning_tokens (chat): the ids of "<think>", "</think>" and "<tool_call>" when
     * each is one token (else -1), and whether the prompt opened the reasoning */
    int32_t think_id, think_end_id, tool_call_id;
    bool reasoning_open;
    bool continuous_usage;     /* stream_options.continuous_usage_stats with include_usage */
    size_t n_prompt, n_tokens; /* the prompt's tokens; tokens generated so far (serve_answer_token) */
};

/* The id of a tag that the tokenizer has as one token, or -1. */
static int32_t special_id(const tandem_tokenizer *tok, const char *tag) {
    int32_t *ids = NULL, id = -1;
    size_t n = 0;
    if (tok && tandem_tokenizer_encode(tok, tag, strlen(tag), true, &ids, &n) == TANDEM_OK && n == 1) id = ids[0];
    tandem_free(ids);
    return id;
}

serve_answer *serve_answer_create(const serve_request *r, const char *model_name, const char *id, int64_t created,
                                  uint64_t id_seed) {
    serve_answer *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->route = r->route;
    a->stream = r->stream;
    a->include_usage = r->stream && r->include_usage;
    a->parse_output = r->parse_output && r->route == SERVE_CHAT_COMPLETIONS;
    a->created = created;
    a->ok = true;
    a->call_index = -1;
    a->tok = r->tok;
    a->logprobs = r->gen.logprobs && r->tok;
    a->ignore_eos = r->gen.ignore_eos;
    a->text_offset = r->echo_len;
    a->reasoning_open = r->parser.reasoning_open;
    a->continuous_usage = a->include_usage && r->continuous_usage;
    a->n_prompt = r->n_prompt;
    a->think_id = special_id(r->tok, "<think>");
    a->think_end_id = special_id(r->tok, "</think>");
    a->tool_call_id = r->parser.parse_tool_calls ? special_id(r->tok, "<tool_call>") : -1;
    a->model = strdup(model_name ? model_name : "");
    a->id = strdup(id ? id : "");
    if (!a->model || !a->id) goto fail;
    if (r->echo && r->echo_len) {
        if (!(a->echo = malloc(r->echo_len))) goto fail;
        memcpy(a->echo, r->echo_text, r->echo_len);
        a->echo_len = r->echo_len;
    }
    if (a->parse_output) {
        tandem_chat_parser_params pp = r->parser;
        pp.id_seed = id_seed;
        if (tandem_chat_parser_create(&pp, &a->parser) != TANDEM_OK) goto fail;
    }
    return a;
fail:
    serve_answer_free(a);
    return NULL;
}

void serve_answer_free(serve_answer *a) {
    if (!a) return;
    free(a->model);
    free(a->id);
    tandem_chat_parser_free(a->parser);
    free(a->call_id);
    free(a->call_name);
    serve_buf_free(&a->call_args);
    serve_buf_free(&a->text);
    serve_buf_free(&a->tail);
    free(a->echo);
    free(a->lps);
    free(a);
}

bool serve_answer_token(serve_answer *a, const tandem_token_logprob *lp) {
    a->n_tokens++;
    if (!a->logprobs || !a->ok) return a->ok;
    if (!a->ignore_eos) {
        size_t n_eos;
        const int32_t *eos = tandem_tokenizer_eos_ids(a->tok, &n_eos);
        for (size_t i = 0; i < n_eos; i++)
            if (eos[i] == lp->id) return true;
    }
    if (a->n_lps == a->cap_lps) {
        const size_t cap = a->cap_lps ? 2 * a->cap_lps : 64;
        tandem_token_logprob *p = realloc(a->lps, cap * sizeof *p);
        if (!p) return a->ok = false;
        a->lps = p;
        a->cap_lps = cap;
    }
    a->lps[a->n_lps++] = *lp;
    return true;
}

/* A chunk's frame: id, object, created, model, and "usage": null when the client asked for a usage chunk. */
static json_t *chunk_new(const serve_answer *a) {
    json_t *c = json_object();
    if (!c) return NULL;
    json_object_set_new(c, "id", json_string(a->id));
    json_object_set_new(c, "object",
                        json_string(a->route == SERVE_CHAT_COMPLETIONS ? "chat.completion.chunk" : "text_completion"));
    json_object_set_new(c, "created", json_integer(a->created));
    json_object_set_new(c, "model", json_string(a->model));
    return c;
}

/* "data: {json}\n\n"; takes the reference to j. */
static bool write_event(serve_answer *a, json_t *j) {
    if (!j) return a->ok = false;
    if (a->include_usage && !json_object_get(j, "usage"))
        json_object_set_new(j, "usage",
                            a->continuous_usage
                                ? json_pack("{s:i, s:i, s:i}", "prompt_tokens", (int)a->n_prompt, "completion_tokens",
                                            (int)a->n_tokens, "total_tokens", (int)(a->n_prompt + a->n_tokens))
                                : json_null());
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    bool ok = s && serve_buf_append(a->out, "data: ", 6) && serve_buf_append(a->out, s, strlen(s)) &&
              serve_buf_append(a->out, "\n\n", 2);
    free(s);
    if (!ok) a->ok = false;
    return ok;
}

static json_t *string_n(const char *text, size_t len);

/* A token's text (invalid UTF-8 replaced) and, for chat, its raw bytes; padding ids beyond the tokenizer are "". */
static json_t *token_json(const serve_answer *a, int32_t id, double logprob, bool chat) {
    size_t len = 0;
    const char *bytes = tandem_tokenizer_token_bytes(a->tok, id, &len);
    if (!bytes) len = 0;
    json_t *t = json_object(), *b = chat ? json_array() : NULL;
    if (!t || (chat && !b)) {
        json_decref(t), json_decref(b);
        return NULL;
    }
    json_object_set_new(t, "token", string_n(bytes ? bytes : "", len));
    json_object_set_new(t, "logprob", json_real(logprob));
    for (size_t i = 0; b && i < len; i++) json_array_append_new(b, json_integer((unsigned char)bytes[i]));
    if (b) json_object_set_new(t, "bytes", b);
    return t;
}

/* The records [from, to) in OpenAI's shape: chat {"content": [{token, logprob, bytes, top_logprobs}], "refusal"},
 * completions {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"}. */
static json_t *logprobs_json(serve_answer *a, size_t from, size_t to) {
    const bool chat = a->route == SERVE_CHAT_COMPLETIONS;
    json_t *content = json_array(), *tokens = json_array(), *values = json_array(), *tops = json_array(),
           *offsets = json_array();
    bool ok = content && tokens && values && tops && offsets;
    for (size_t i = from; ok && i < to; i++) {
        const tandem_token_logprob *lp = &a->lps[i];
        json_t *tok = token_json(a, lp->id, lp->logprob, chat);
        json_t *top = chat ? json_array() : json_object();
        ok = tok && top;
        for (int32_t j = 0; ok && j < lp->n_top; j++) {
            json_t *alt = token_json(a, lp->top_ids[j], lp->top_logprobs[j], chat);
            if (!alt) ok = false;
            else if (chat) json_array_append_new(top, alt);
            else
                json_object_set(top, json_string_value(json_object_get(alt, "token")), json_object_get(alt, "logprob"));
            if (!chat) json_decref(alt);
        }
        if (!ok) {
            json_decref(tok), json_decref(top);
            break;
        }
        if (chat) {
            json_object_set_new(tok, "top_logprobs", top);
            json_array_append_new(content, tok);
        } else {
            size_t len = 0;
            if (!tandem_tokenizer_token_bytes(a->tok, lp->id, &len)) len = 0;
            json_array_append(tokens, json_object_get(tok, "token"));
            json_array_append(values, json_object_get(tok, "logprob"));
            json_array_append_new(tops, top);
            json_array_append_new(offsets, json_integer((json_int_t)a->text_offset));
            a->text_offset += len;
            json_decref(tok);
        }
    }
    json_t *out = NULL;
    if (ok && chat) out = json_pack("{s:O, s:n}", "content", content, "refusal");
    else if (ok)
        out = json_pack("{s:O, s:O, s:O, s:O}", "tokens", tokens, "token_logprobs", values, "top_logprobs", tops,
                        "text_offset", offsets);
    json_decref(content), json_decref(tokens), json_decref(values), json_decref(tops), json_decref(offsets);
    if (!out) a->ok = false;
    return out;
}

/* The records not yet sent (a stream's chunk that carries text), or null. */
static json_t *pending_logprobs(serve_answer *a) {
    if (!a->logprobs || a->n_lps_sent == a->n_lps) return json_null();
    json_t *j = logprobs_json(a, a->n_lps_sent, a->n_lps);
    a->n_lps_sent = a->n_lps;
    return j ? j : json_null();
}

/* One choice: a chat chunk's {"index", "delta", "logprobs", "finish_reason"} or a completion's {"index", "text", …}.
 * Takes the reference to payload (the delta object, or the text string). */
static bool write_choice(serve_answer *a, json_t *payload, const char *finish_reason, json_t *extra_key_value,
                         bool with_logprobs) {
    json_t *c = chunk_new(a);
    json_t *choice = json_object();
    json_t *choices = json_array();
    if (!c || !choice || !choices || !payload) {
        json_decref(c), json_decref(choice), json_decref(choices), json_decref(payload), json_decref(extra_key_value);
        return a->ok = false;
    }
    json_object_set_new(choice, "index", json_integer(0));
    json_object_set_new(choice, a->route == SERVE_CHAT_COMPLETIONS ? "delta" : "text", payload);
    json_object_set_new(choice, "logprobs", with_logprobs ? pending_logprobs(a) : json_null());
    json_object_set_new(choice, "finish_reason", finish_reason ? json_string(finish_reason) : json_null());
    json_array_append_new(choices, choice);
    json_object_set_new(c, "choices", choices);
    if (extra_key_value) json_object_set_new(c, "timings", extra_key_value);
    return write_event(a, c);
}

static json_t *string_n(const char *text, size_t len) {
    json_t *s = json_stringn(text, len);
    if (s) return s;
    serve_buf b = {0}; /* not UTF-8: replaced as Python's errors="replace" would */
    bool ok = true;
    utf8_clean(&b, text, len, false, &ok);
    s = ok ? json_stringn(b.data ? b.data : "", b.len) : NULL;
    serve_buf_free(&b);
    return s;
}

char *serve_error_json(const serve_error *err) {
    json_t *e = json_object();
    if (!e) return NULL;
    /* the message may quote the request (a role, a template's error) and be cut inside a character */
    json_object_set_new(e, "message", string_n(err->message, strlen(err->message)));
    json_object_set_new(e, "type", json_string(err->type ? err->type : "invalid_request_error"));
    json_object_set_new(e, "param", err->param[0] ? json_string(err->param) : json_null());
    json_object_set_new(e, "code", err->code ? json_string(err->code) : json_null());
    json_t *root = json_pack("{so}", "error", e);
    if (!root) return NULL;
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

/* The first chunk: the assistant's role (chat) or the echoed prompt (completions with echo). */
static bool start_stream(serve_answer *a) {
    if (a->started) return true;
    a->started = true;
    if (a->route == SERVE_CHAT_COMPLETIONS)
        return write_choice(a, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL, NULL, false);
    if (a->echo_len) return write_choice(a, string_n(a->echo, a->echo_len), NULL, NULL, false);
    return true;
}

static bool write_delta(serve_answer *a, const char *key, const char *text, size_t len) {
    json_t *s = string_n(text, len);
    if (!s) return a->ok = false;
    return write_choice(a, a->route == SERVE_CHAT_COMPLETIONS ? json_pack("{s:o}", key, s) : s, NULL, NULL, true);
}

/* The parser's deltas. A tool call is held back until it is complete (TOOL_END) and then sent in one chunk, so a
 * call that turns out not to parse (TOOL_DROPPED: its text follows as content) never reaches the client. */
static bool on_delta(const tandem_chat_delta *d, void *user) {
    serve_answer *a = user;
    switch (d->kind) {
    case TANDEM_CHAT_DELTA_REASONING:
        if (a->stream) write_delta(a, "reasoning_content", d->text, d->len);
        break;
    case TANDEM_CHAT_DELTA_CONTENT:
        if (a->stream) write_delta(a, "content", d->text, d->len);
        break;
    case TANDEM_CHAT_DELTA_TOOL_CALL:
        free(a->call_id);
        free(a->call_name);
        a->call_args.len = 0;
        a->call_index = d->tool_index;
        a->call_id = strdup(d->tool_id);
        a->call_name = strdup(d->tool_name);
        if (!a->call_id || !a->call_name) a->ok = false;
        break;
    case TANDEM_CHAT_DELTA_TOOL_ARGUMENTS:
        if (d->tool_index == a->call_index && !serve_buf_append(&a->call_args, d->text, d->len)) a->ok = false;
        break;
    case TANDEM_CHAT_DELTA_TOOL_END:
        if (d->tool_index != a->call_index) break;
        if (a->stream && a->ok) {
            json_t *call = json_pack("{s:i, s:s, s:s, s:{s:s, s:s%}}", "index", (int)a->n_calls, "id", a->call_id,
                                     "type", "function", "function", "name", a->call_name, "arguments",
                                     a->call_args.data ? a->call_args.data : "", a->call_args.len);
            write_choice(a, call ? json_pack("{s:[o]}", "tool_calls", call) : NULL, NULL, NULL, true);
        }
        a->n_calls++;
        a->call_index = -1;
        break;
    case TANDEM_CHAT_DELTA_TOOL_DROPPED:
        if (d->tool_index == a->call_index) a->call_index = -1;
        break;
    }
    return a->ok;
}

bool serve_answer_feed(serve_answer *a, const char *text, size_t len, serve_buf *out) {
    if (!a->ok || a->finished) return false;
    a->out = out;
    if (a->stream && !start_stream(a)) return false;
    if (a->parser) {
        if (tandem_chat_parser_feed(a->parser, text, len, on_delta, a) != TANDEM_OK) a->ok = false;
        return a->ok;
    }
    /* no parser: whole characters go out, a character cut by the end of the piece waits for the next */
    serve_buf piece = {0};
    bool ok = serve_buf_append(&a->tail, text, len);
    size_t used = ok ? utf8_clean(&piece, a->tail.data, a->tail.len, true, &ok) : 0;
    if (ok) {
        memmove(a->tail.data, a->tail.data + used, a->tail.len - used);
        a->tail.len -= used;
    }
    if (ok && piece.len) {
        if (a->stream) ok = write_delta(a, a->route == SERVE_CHAT_COMPLETIONS ? "content" : "", piece.data, piece.len);
        else ok = serve_buf_append(&a->text, piece.data, piece.len);
    }
    serve_buf_free(&piece);
    if (!ok) a->ok = false;
    return a->ok;
}

static const char *finish_reason(const serve_answer *a, const tandem_gen_result *res) {
    const tandem_finish f = res ? res->finish : TANDEM_FINISH_NONE;
    if (f == TANDEM_FINISH_LENGTH || f == TANDEM_FINISH_CONTEXT_FULL) return "length";
    return a->n_calls > 0 ? "tool_calls" : "stop";
}

/* Generated tokens of the reasoning: from the start of the output (which "<think>" opens, or the prompt opened)
 * through "</think>", or up to a "<tool_call>" that ends it; all of them (but an end id) when it never closed. */
static int reasoning_tokens(const serve_answer *a, const tandem_gen_result *res) {
    if (!a->parser || !res->ids || res->n_ids == 0) return 0;
    if (!a->reasoning_open && (a->think_id < 0 || res->ids[0] != a->think_id)) return 0;
    for (size_t i = a->reasoning_open ? 0 : 1; i < res->n_ids; i++) {
        if (res->ids[i] == a->think_end_id) return (int)i + 1;
        if (res->ids[i] == a->tool_call_id && a->tool_call_id >= 0) return (int)i;
    }
    return (int)res->n_ids - (res->finish == TANDEM_FINISH_EOS);
}

/* usage: OpenAI's, with cached prompt tokens, the reasoning tokens (chat) and, when speculative decoding ran, the
 * drafted tokens the target accepted and rejected (OpenAI's predicted-output fields). */
static json_t *usage_json(const serve_answer *a, const tandem_gen_result *res) {
    const tandem_timings *t = &res->timings;
    json_t *u = json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", (int)t->n_prompt, "completion_tokens",
                          (int)t->n_generated, "total_tokens", (int)(t->n_prompt + t->n_generated),
                          "prompt_tokens_details", "cached_tokens", (int)t->n_prompt_reused);
    json_t *details = json_object();
    if (!u || !details) {
        json_decref(u), json_decref(details);
        return NULL;
    }
    if (t->n_image_tokens) { /* tandem's: the prompt's image tokens, and those from the encoded-image cache */
        json_t *pd = json_object_get(u, "prompt_tokens_details");
        json_object_set_new(pd, "image_tokens", json_integer(t->n_image_tokens));
        json_object_set_new(pd, "cached_image_tokens", json_integer(t->n_image_tokens_cached));
    }
    if (a->route == SERVE_CHAT_COMPLETIONS)
        json_object_set_new(details, "reasoning_tokens", json_integer(reasoning_tokens(a, res)));
    if (res->speculative) {
        const tandem_spec_stats *s = &res->spec_stats;
        json_object_set_new(details, "accepted_prediction_tokens", json_integer(s->n_accepted));
        json_object_set_new(details, "rejected_prediction_tokens", json_integer(s->n_drafted - s->n_accepted));
    }
    if (json_object_size(details)) json_object_set_new(u, "completion_tokens_details", details);
    else json_decref(details);
    return u;
}

/* tandem's extension (ignored by OpenAI clients): where the time went and what speculative decoding did. */
static json_t *timings_json(const tandem_gen_result *res) {
    const tandem_timings *t = &res->timings;
    const double tps = t->n_generated > 1 && t->decode_ms > 0 ? (t->n_generated - 1) / (t->decode_ms / 1e3) : 0;
    const tandem_spec_stats *s = &res->spec_stats;
    json_t *j = json_pack("{s:f, s:f, s:f, s:f, s:i, s:i, s:i, s:i}", "ttft_ms", t->ttft_ms, "prompt_ms", t->prompt_ms,
                          "decode_ms", t->decode_ms, "decode_tokens_per_s", tps, "cached_tokens",
                          (int)t->n_prompt_reused, "drafted", res->speculative ? (int)s->n_drafted : 0, "accepted",
                          res->speculative ? (int)s->n_accepted : 0, "draft_rounds",
                          res->speculative ? (int)s->n_rounds : 0);
    if (j && t->n_image_tokens) {
        json_object_set_new(j, "image_tokens", json_integer(t->n_image_tokens));
        json_object_set_new(j, "cached_image_tokens", json_integer(t->n_image_tokens_cached));
        json_object_set_new(j, "image_ms", json_real(t->image_ms));
    }
    return j;
}

static bool finish_stream(serve_answer *a, const tandem_gen_result *res) {
    json_t *empty = a->route == SERVE_CHAT_COMPLETIONS ? json_object() : json_string("");
    if (!write_choice(a, empty, finish_reason(a, res), a->include_usage ? NULL : timings_json(res), true)) return false;
    if (a->include_usage) {
        json_t *c = chunk_new(a);
        if (!c) return a->ok = false;
        json_object_set_new(c, "choices", json_array());
        json_object_set_new(c, "usage", usage_json(a, res));
        json_object_set_new(c, "timings", timings_json(res));
        if (!write_event(a, c)) return false;
    }
    if (!serve_buf_append(a->out, "data: [DONE]\n\n", 14)) return a->ok = false;
    return true;
}

static bool finish_whole(serve_answer *a, const tandem_gen_result *res) {
    json_t *body = json_object();
    json_t *choice = json_object();
    if (!body || !choice) {
        json_decref(body), json_decref(choice);
        return a->ok = false;
    }
    json_object_set_new(body, "id", json_string(a->id));
    json_object_set_new(body, "object",
                        json_string(a->route == SERVE_CHAT_COMPLETIONS ? "chat.completion" : "text_completion"));
    json_object_set_new(body, "created", json_integer(a->created));
    json_object_set_new(body, "model", json_string(a->model));
    json_object_set_new(choice, "index", json_integer(0));
    if (a->route == SERVE_CHAT_COMPLETIONS) {
        json_t *msg = NULL;
        if (a->parser) {
            char *mj = NULL;
            if (tandem_chat_parser_message_json(a->parser, &mj) == TANDEM_OK) {
                msg = json_loads(mj, JSON_ALLOW_NUL, NULL); /* the answer may hold U+0000, written as \u0000 */
                tandem_free(mj);
            }
        } else {
            msg = json_pack("{s:s, s:o}", "role", "assistant", "content",
                            string_n(a->text.data ? a->text.data : "", a->text.len));
        }
        if (!msg) a->ok = false;
        json_object_set_new(choice, "message", msg ? msg : json_null());
    } else {
        serve_buf t = {0};
        bool ok = serve_buf_append(&t, a->echo ? a->echo : "", a->echo_len) &&
                  serve_buf_append(&t, a->text.data ? a->text.data : "", a->text.len);
        json_object_set_new(choice, "text", ok ? string_n(t.data, t.len) : NULL);
        serve_buf_free(&t);
        if (!ok) a->ok = false;
    }
    json_object_set_new(choice, "logprobs", a->logprobs ? logprobs_json(a, 0, a->n_lps) : json_null());
    json_object_set_new(choice, "finish_reason", json_string(finish_reason(a, res)));
    json_object_set_new(body, "choices", json_pack("[o]", choice));
    json_object_set_new(body, "usage", usage_json(a, res));
    json_object_set_new(body, "timings", timings_json(res));
    char *s = a->ok ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    const bool ok = s && serve_buf_append(a->out, s, strlen(s));
    free(s);
    if (!ok) a->ok = false;
    return a->ok;
}

bool serve_answer_finish(serve_answer *a, const tandem_gen_result *res, serve_buf *out) {
    if (!a->ok || a->finished) return false;
    static const tandem_gen_result none;
    if (!res) res = &none;
    a->out = out;
    a->finished = true;
    if (a->stream && !start_stream(a)) return false;
    if (a->parser) {
        if (tandem_chat_parser_finish(a->parser, on_delta, a) != TANDEM_OK) a->ok = false;
    } else if (a->tail.len) { /* a character the output never finished */
        serve_buf piece = {0};
        bool ok = true;
        utf8_clean(&piece, a->tail.data, a->tail.len, false, &ok);
        a->tail.len = 0;
        if (ok && a->stream)
            ok = write_delta(a, a->route == SERVE_CHAT_COMPLETIONS ? "content" : "", piece.data, piece.len);
        else if (ok) ok = serve_buf_append(&a->text, piece.data, piece.len);
        serve_buf_free(&piece);
        if (!ok) a->ok = false;
    }
    if (!a->ok) return false;
    return a->stream ? finish_stream(a, res) : finish_whole(a, res);
}
