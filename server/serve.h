/* serve.h — what the parts of `tandem serve` share: an OpenAI request turned into engine inputs (request.c), the
 * engine's output turned into OpenAI responses and server-sent events (response.c), and the server's settings. */
#ifndef TANDEM_SERVE_H
#define TANDEM_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tandem.h"

/* A growing byte buffer for response bodies and event streams (the server sees only tandem.h, so it has its own). */
typedef struct serve_buf {
    char *data; /* NUL-terminated when non-NULL */
    size_t len, cap;
} serve_buf;
bool serve_buf_append(serve_buf *b, const void *data, size_t len); /* false when out of memory */
void serve_buf_free(serve_buf *b);

/* What a request needs from the loaded model and the server's settings (read-only while serving). */
typedef struct serve_model {
    const char *name; /* the id /v1/models lists and responses carry (--alias, else the file name) */
    const tandem_model *model;
    const tandem_tokenizer *tok;
    const tandem_chat_template *chat_template;       /* NULL: chat completions are refused (400 naming the model) */
    const tandem_chat_template *chat_template_tools; /* the model's "tool_use" template (requests with tools), or
                                                       NULL: chat_template serves them too */
    int32_t n_ctx;                                   /* a slot's context: prompt + max tokens must fit */
    bool no_think;             /* --no-think: enable_thinking=false unless the request says otherwise */
    bool has_draft;            /* a draft model is loaded (-md) */
    tandem_spec_params spec;   /* speculative decoding for every request (draft length, lookup n-gram), used when
                                has_draft, spec.lookup_ngram > 0 or the request has a `prediction` */
    bool has_vision;           /* the model takes images (Qwen3-VL): image_url parts are decoded, else refused */
    bool allow_local_files;    /* --allow-local-files: image_url may be a file:// URL or an absolute path */
    tandem_image_params image; /* the image token budget (--image-min-tokens / --image-max-tokens) */
} serve_model;

/* data_uri.c. Strict base64 (RFC 4648: padded, canonical, no whitespace) of len characters into out (len / 4 * 3
 * bytes at least); false with why filled when in is not. */
bool serve_base64_decode(const char *in, size_t len, unsigned char *out, size_t *out_len, char *why, size_t why_len);
/* A data: URI ("data:[image/TYPE][;params];base64,DATA") decoded into *data (malloc'd, *size > 0 bytes, at most
 * max_bytes). 0, or an HTTP status with why filled: 400 (not a data: URI, not base64, not an image type, bad
 * base64, empty, too large), 500 (out of memory). */
int serve_data_uri_decode(const char *uri, size_t len, size_t max_bytes, unsigned char **data, size_t *size, char *why,
                          size_t why_len);

/* The server's limits on what one request may ask for. */
typedef struct serve_limits {
    size_t max_body_bytes;  /* 413 above this */
    int32_t max_messages;   /* 400 above this */
    int32_t max_tokens;     /* most generated tokens per request (also the default when the request sets none) */
    int32_t max_stop;       /* most stop strings (OpenAI: 4) */
    int32_t max_images;     /* most images per request */
    size_t max_image_bytes; /* most bytes of one encoded image (PNG, JPEG, WebP file) */
} serve_limits;
serve_limits serve_default_limits(void);

/* An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with its HTTP status. */
typedef struct serve_error serve_error;
struct serve_error {
    int status;       /* 400, 401, 404, 413, 429, 500, 503 */
    const char *type; /* "invalid_request_error", "authentication_error", "not_found_error", "server_error", … */
    char param[64];   /* the offending field as a JSON path ("messages[3].content", "tools[0].function.name"),
                            or "" */
    char message[512];
    const char *code; /* OpenAI's error code ("context_length_exceeded"), a static string, or NULL (null) */
};
/* Fills err and returns false, so parsers can `return serve_fail(err, 400, "max_tokens", "must be ≥ 1")`. */
bool serve_fail(serve_error *err, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
char *serve_error_json(const serve_error *err); /* malloc'd body; NULL when out of memory */

typedef enum serve_route {
    SERVE_CHAT_COMPLETIONS, /* POST /v1/chat/completions */
    SERVE_COMPLETIONS,      /* POST /v1/completions (prompt: a string; an array of token ids also accepted) */
} serve_route;

/* One request, parsed and ready for tandem_engine_add. Everything is owned and freed by serve_request_free. */
typedef struct serve_request {
    serve_route route;
    const tandem_tokenizer *tok; /* the model's (borrowed): the answer spells tokens with it (logprobs) */
    char *model;                 /* as sent (any name is accepted: one model is served) */
    int32_t *prompt_ids;         /* the rendered chat (or the completion prompt), tokenized */
    size_t n_prompt;
    tandem_gen_params gen; /* max_tokens, sampling (seed), stop strings, grammar: ready for the engine;
                                       gen.stop points into stop[] below, gen.grammar is `grammar` */
    char **stop;
    int32_t n_stop;
    tandem_grammar *grammar; /* from response_format or tools + tool_choice; NULL = free */
    bool stream;
    bool include_usage;               /* stream_options.include_usage */
    bool continuous_usage;            /* stream_options.continuous_usage_stats (vLLM's): usage on every chunk */
    bool parse_output;                /* chat: run the output through tandem_chat_parser (reasoning, tool calls) */
    tandem_chat_parser_params parser; /* reasoning_open, parse_tool_calls (tools offered and tool_choice != none) */
    int32_t *prediction_ids;          /* `prediction` (predicted output) tokenized, or NULL: draft proposals */
    size_t n_prediction;
    bool echo;       /* completions: echo the prompt */
    char *echo_text; /* echo: the prompt as text (decoded from prompt_ids), echo_len bytes */
    size_t echo_len;
    tandem_image **images; /* the messages' image_url parts in order (gen.images points here); n_images of them */
    int32_t n_images;
} serve_request;

/* Parses a request body for route against the model and limits. On failure returns false with err filled (400 with
 * the field's path for a bad field, 413 for a body over the limit) and nothing to free. */
bool serve_request_parse(const serve_model *m, const serve_limits *lim, serve_route route, const char *body, size_t len,
                         serve_request *out, serve_error *err);
void serve_request_free(serve_request *r);

/* The answer to one request as it is generated: text from the engine's on_text goes in, OpenAI JSON comes out.
 * Streaming: each feed appends zero or more complete server-sent events ("data: {chunk}\n\n") to out; finish appends
 * the last chunk (finish_reason), the usage chunk when include_usage, and "data: [DONE]\n\n".
 * Not streaming: feed only accumulates; finish writes the whole chat.completion / text_completion object. */
typedef struct serve_answer serve_answer;
/* id: "chatcmpl-…" or "cmpl-…"; created: unix seconds; id_seed: seeds the tool call ids. */
serve_answer *serve_answer_create(const serve_request *r, const char *model_name, const char *id, int64_t created,
                                  uint64_t id_seed);
void serve_answer_free(serve_answer *a);
bool serve_answer_feed(serve_answer *a, const char *text, size_t len, serve_buf *out);
/* A generated token (the engine's on_token, called before the token's text is fed): counted (continuous usage), and
 * when the request asked for logprobs its record goes out with the next chunk that carries text (streaming) or in
 * the answer. An end id that ends the answer is left out of logprobs, as it has no text. false when out of memory. */
bool serve_answer_token(serve_answer *a, const tandem_token_logprob *lp);
/* res: the engine's result (finish reason, timings, speculative figures) for finish_reason and usage. */
bool serve_answer_finish(serve_answer *a, const tandem_gen_result *res, serve_buf *out);

#endif
