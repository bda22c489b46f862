/* chat_parse.c — the streaming parser of Qwen3 chat output (tandem_chat_parser_*): reasoning, content and tool
 * calls from text that arrives in pieces cut anywhere; the contract is the comment above it in tandem.h.
 *
 * The input is first made valid UTF-8 (a carry of at most 3 bytes), then appended to `in`, the bytes not yet
 * decided. A state machine consumes `in` as far as it can decide: text states find tags and hold back a tag prefix
 * and a trailing run of newlines; the call state feeds a JSON scanner one byte at a time, keeping the call's raw
 * text so that a call that breaks can be given back verbatim. Nothing depends on where the input was cut. */
#include <jansson.h>
#include <stdlib.h>

#include "tandem_base.h"

#define JSON_MAX_DEPTH 512 /* nesting of a call's JSON; deeper is not taken as a call */
#define NAME_MAX_BYTES 1024
#define KEY_MAX_BYTES 16 /* longer top-level keys are neither "name" nor "arguments" */

static const char TAG_THINK[] = "<think>";
static const char TAG_THINK_END[] = "</think>";
static const char TAG_CALL[] = "<tool_call>";
static const char TAG_CALL_END[] = "</tool_call>";

typedef enum parse_state {
    ST_START,      /* nothing decided yet: "<think>" may open the output */
    ST_REASONING,  /* inside <think> */
    ST_CONTENT,    /* the answer */
    ST_CALL,       /* inside <tool_call>: the JSON scanner runs */
    ST_AFTER_CALL, /* the call's JSON ended: whitespace, then "</tool_call>" is expected */
} parse_state;

/* ---- the JSON scanner of a call: strict RFC 8259, one byte at a time ---- */

typedef enum json_mode {
    J_VALUE,       /* a value must start (whitespace first) */
    J_KEY_OR_END,  /* after '{' */
    J_KEY,         /* after ',' in an object */
    J_COLON,       /* after a key */
    J_AFTER,       /* after a value: ',' or the closing bracket */
    J_ARRAY_FIRST, /* after '[' */
    J_STRING,
    J_NUMBER,
    J_LITERAL,
} json_mode;

enum { STR_PLAIN, STR_ESCAPE, STR_HEX }; /* J_STRING sub-states */
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
enum { KEY_OTHER, KEY_NAME, KEY_ARGS }; /* what the current top-level member is */
typedef enum scan_result { SCAN_ACCEPT, SCAN_REJECT, SCAN_DONE } scan_result;

typedef struct json_scan {
    json_mode mode;
    int sub;        /* J_STRING: STR_*; J_NUMBER: N_* */
    int hex_digits; /* \uXXXX digits read */
    uint32_t hex_value;
    uint32_t high_surrogate; /* a decoded \uD800-\uDBFF waiting for its low half (0: none) */
    const char *literal;     /* J_LITERAL: "true", "false" or "null" */
    int literal_at;
    bool string_is_key;
    bool decode; /* the string is a top-level key or the name: decoded into `decoded` */
    int depth;
    uint8_t stack[JSON_MAX_DEPTH]; /* '{' or '[' per open container */
    /* the call layer */
    int member;   /* KEY_* of the top-level member being read */
    bool in_args; /* the bytes belong to the arguments value */
    bool have_name, have_args;
    byte_buf decoded; /* a top-level key or the name, decoded */
    bool decoded_overflow;
} json_scan;

/* ---- the parser ---- */

typedef struct chat_call {
    char id[32];
    char *name;
    byte_buf args;
} chat_call;

struct tandem_chat_parser {
    tandem_chat_parser_params params;
    tandem_status failed; /* sticky: out of memory, or the callback said stop */
    bool finished;

    uint8_t carry[4]; /* an incomplete UTF-8 character at the end of the input so far */
    int n_carry, carry_need;

    byte_buf in; /* sanitized bytes not yet decided, from in_pos */
    size_t in_pos;
    size_t known_newlines; /* in[in_pos .. +known_newlines) is a held run of '\n' (saves rescanning it) */

    parse_state state;
    bool drop_newlines;       /* a run of '\n' here is a separator (after <think>, </think>, </tool_call>) */
    bool think_close_pending; /* a call ended the reasoning: a later "</think>" is dropped */

    /* the call being read */
    parse_state call_return; /* where its text goes if it breaks */
    byte_buf call_raw;       /* its text so far, from the newlines before "<tool_call>" */
    json_scan scan;
    bool call_announced; /* TOOL_CALL delivered */
    size_t args_sent;    /* bytes of cur.args delivered */
    chat_call cur;       /* id, name and arguments */
    int32_t n_announced; /* calls given an index */

    byte_buf reasoning, content;
    chat_call *calls; /* the complete calls */
    size_t n_calls, cap_calls;

    tandem_chat_delta_callback cb;
    void *user;
};

tandem_chat_parser_params tandem_chat_parser_default_params(void) {
    return (tandem_chat_parser_params){.reasoning_open = false, .parse_tool_calls = true, .id_seed = 0};
}

tandem_status tandem_chat_parser_create(const tandem_chat_parser_params *params, tandem_chat_parser **out) {
    if (!out) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_chat_parser_create: out is NULL");
    *out = NULL;
    tandem_chat_parser *p = calloc(1, sizeof *p);
    if (!p) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_chat_parser_create: out of memory");
    p->params = params ? *params : tandem_chat_parser_default_params();
    p->state = ST_START;
    p->in.data = malloc(p->in.cap = 256); /* never NULL: the steps do pointer arithmetic on it, even when empty */
    if (!p->in.data) {
        free(p);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_chat_parser_create: out of memory");
    }
    *out = p;
    return TANDEM_OK;
}

static void call_clear(chat_call *c) {
    free(c->name);
    free(c->args.data);
    memset(c, 0, sizeof *c);
}

void tandem_chat_parser_free(tandem_chat_parser *p) {
    if (!p) return;
    free(p->in.data);
    free(p->call_raw.data);
    free(p->scan.decoded.data);
    call_clear(&p->cur);
    free(p->reasoning.data);
    free(p->content.data);
    for (size_t i = 0; i < p->n_calls; i++) call_clear(&p->calls[i]);
    free(p->calls);
    free(p);
}

/* ---- delivering deltas ---- */

/* Records the failure once; every later step sees p->failed. */
static tandem_status parser_fail(tandem_chat_parser *p, tandem_status st, const char *what) {
    if (!p->failed) p->failed = st;
    return tandem_fail(st, "%s: %s", what, st == TANDEM_ERR_ABORTED ? "the callback asked to stop" : "out of memory");
}

static bool fail_oom(tandem_chat_parser *p) {
    parser_fail(p, TANDEM_ERR_NO_MEMORY, "tandem_chat_parser_feed");
    return false;
}

static bool deliver(tandem_chat_parser *p, tandem_chat_delta_kind kind, const char *text, size_t len) {
    if (p->failed) return false;
    bool tool = kind >= TANDEM_CHAT_DELTA_TOOL_CALL;
    if ((kind == TANDEM_CHAT_DELTA_REASONING || kind == TANDEM_CHAT_DELTA_CONTENT ||
         kind == TANDEM_CHAT_DELTA_TOOL_ARGUMENTS) &&
        len == 0)
        return true;
    if (kind == TANDEM_CHAT_DELTA_REASONING || kind == TANDEM_CHAT_DELTA_CONTENT) {
        byte_buf *b = kind == TANDEM_CHAT_DELTA_REASONING ? &p->reasoning : &p->content;
        if (!byte_buf_append(b, text, len)) {
            parser_fail(p, TANDEM_ERR_NO_MEMORY, "tandem_chat_parser_feed");
            return false;
        }
    }
    if (!p->cb) return true;
    tandem_chat_delta d = {
        .kind = kind,
        .tool_index = tool ? p->n_announced - 1 : -1,
        .tool_id = tool ? p->cur.id : NULL,
        .tool_name = tool ? p->cur.name : NULL,
        .text = len ? text : "",
        .len = len,
    };
    if (!p->cb(&d, p->user)) {
        parser_fail(p, TANDEM_ERR_ABORTED, "tandem_chat_parser_feed");
        return false;
    }
    return true;
}

static bool deliver_text(tandem_chat_parser *p, parse_state st, const uint8_t *s, size_t n) {
    return deliver(p, st == ST_REASONING ? TANDEM_CHAT_DELTA_REASONING : TANDEM_CHAT_DELTA_CONTENT, (const char *)s, n);
}

/* ---- call ids: "call_" + 24 characters of [A-Za-z0-9], splitmix64 from (seed, index) ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void make_call_id(uint64_t seed, int32_t index, char out[32]) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    uint64_t x = seed ^ ((uint64_t)(index + 1) * 0xD1B54A32D192ED03ull);
    memcpy(out, "call_", 5);
    for (int i = 0; i < 24; i++) out[5 + i] = alphabet[(splitmix64(&x) >> 32) % 62];
    out[29] = '\0';
}

/* ---- the JSON scanner ---- */

static bool is_json_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static bool decoded_put(json_scan *s, const void *b, size_t n) {
    if (s->decoded_overflow) return true;
    size_t cap = s->string_is_key ? KEY_MAX_BYTES : NAME_MAX_BYTES;
    if (s->decoded.len + n > cap) {
        s->decoded_overflow = true;
        return true;
    }
    return byte_buf_append(&s->decoded, b, n);
}

static bool decoded_put_code(json_scan *s, uint32_t c) {
    uint8_t u[4];
    size_t n;
    if (c < 0x80) u[0] = (uint8_t)c, n = 1;
    else if (c < 0x800) u[0] = (uint8_t)(0xC0 | c >> 6), u[1] = (uint8_t)(0x80 | (c & 0x3F)), n = 2;
    else if (c < 0x10000)
        u[0] = (uint8_t)(0xE0 | c >> 12), u[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F)),
        u[2] = (uint8_t)(0x80 | (c & 0x3F)), n = 3;
    else
        u[0] = (uint8_t)(0xF0 | c >> 18), u[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F)),
        u[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F)), u[3] = (uint8_t)(0x80 | (c & 0x3F)), n = 4;
    return decoded_put(s, u, n);
}

/* A lone high surrogate decodes to U+FFFD once it is clear no low half follows. */
static bool flush_high_surrogate(json_scan *s) {
    if (!s->high_surrogate) return true;
    s->high_surrogate = 0;
    return decoded_put_code(s, 0xFFFD);
}

static void scan_reset(json_scan *s) {
    byte_buf keep = s->decoded;
    memset(s, 0, offsetof(json_scan, decoded));
    s->mode = J_VALUE;
    keep.len = 0;
    s->decoded = keep;
    s->decoded_overflow = false;
}

typedef struct scan_ctx {
    tandem_chat_parser *p;
    bool name_done; /* this byte completed the name */
    bool oom;
} scan_ctx;

/* A value ended; s->depth is the depth of the container holding it. */
static scan_result value_done(scan_ctx *c) {
    json_scan *s = &c->p->scan;
    s->mode = J_AFTER;
    if (s->depth == 1) {
        if (s->member == KEY_ARGS) s->in_args = false, s->have_args = true;
        if (s->member == KEY_NAME) c->name_done = true;
    }
    return SCAN_ACCEPT;
}

static scan_result start_value(scan_ctx *c, uint8_t b) {
    json_scan *s = &c->p->scan;
    if (s->depth == 0 && b != '{') return SCAN_REJECT; /* a call is one object */
    if (s->depth == 1 && s->member == KEY_NAME && b != '"') return SCAN_REJECT;
    if (s->depth == 1 && s->member == KEY_ARGS) s->in_args = true;
    switch (b) {
    case '{':
    case '[':
        if (s->depth == JSON_MAX_DEPTH) return SCAN_REJECT;
        s->stack[s->depth++] = b;
        s->mode = b == '{' ? J_KEY_OR_END : J_ARRAY_FIRST;
        return SCAN_ACCEPT;
    case '"':
        s->mode = J_STRING;
        s->sub = STR_PLAIN;
        s->string_is_key = false;
        s->decode = s->depth == 1 && s->member == KEY_NAME;
        s->decoded.len = 0;
        s->decoded_overflow = false;
        s->high_surrogate = 0;
        return SCAN_ACCEPT;
    case 't': s->literal = "true"; break;
    case 'f': s->literal = "false"; break;
    case 'n': s->literal = "null"; break;
    case '-': s->mode = J_NUMBER, s->sub = N_MINUS; return SCAN_ACCEPT;
    default:
        if (b >= '0' && b <= '9') {
            s->mode = J_NUMBER;
            s->sub = b == '0' ? N_ZERO : N_INT;
            return SCAN_ACCEPT;
        }
        return SCAN_REJECT;
    }
    s->mode = J_LITERAL;
    s->literal_at = 1;
    return SCAN_ACCEPT;
}

static scan_result close_container(scan_ctx *c, uint8_t b) {
    json_scan *s = &c->p->scan;
    if (s->depth == 0 || s->stack[s->depth - 1] != (b == '}' ? '{' : '[')) return SCAN_REJECT;
    s->depth--;
    if (s->depth == 0) return SCAN_DONE;
    return value_done(c);
}

static scan_result key_done(scan_ctx *c) {
    json_scan *s = &c->p->scan;
    s->mode = J_COLON;
    if (s->depth != 1) return SCAN_ACCEPT;
    s->member = KEY_OTHER;
    if (s->decoded_overflow) return SCAN_ACCEPT;
    if (s->decoded.len == 4 && !memcmp(s->decoded.data, "name", 4)) {
        if (s->have_name) return SCAN_REJECT; /* a second "name": which one would be meant? */
        s->member = KEY_NAME;
    } else if (s->decoded.len == 9 && !memcmp(s->decoded.data, "arguments", 9)) {
        if (s->have_args) return SCAN_REJECT;
        s->member = KEY_ARGS;
    }
    return SCAN_ACCEPT;
}

static scan_result string_done(scan_ctx *c) {
    json_scan *s = &c->p->scan;
    if (s->decode && !flush_high_surrogate(s)) c->oom = true;
    if (s->string_is_key) return key_done(c);
    if (s->depth == 1 && s->member == KEY_NAME) {
        if (s->decoded_overflow || s->decoded.len == 0) return SCAN_REJECT;
        for (size_t i = 0; i < s->decoded.len; i++)
            if (s->decoded.data[i] < 0x20 || s->decoded.data[i] == 0x7F) return SCAN_REJECT;
        s->have_name = true;
    }
    return value_done(c);
}

static int hex_value(uint8_t b) {
    if (b >= '0' && b <= '9') return b - '0';
    if (b >= 'a' && b <= 'f') return b - 'a' + 10;
    if (b >= 'A' && b <= 'F') return b - 'A' + 10;
    return -1;
}

static scan_result string_byte(scan_ctx *c, uint8_t b) {
    json_scan *s = &c->p->scan;
    bool ok = true;
    switch (s->sub) {
    case STR_PLAIN:
        if (b == '"') return string_done(c);
        if (b < 0x20) return SCAN_REJECT; /* raw control characters are not JSON (json.loads refuses them) */
        if (b == '\\') {
            s->sub = STR_ESCAPE;
            return SCAN_ACCEPT;
        }
        if (s->decode) ok = flush_high_surrogate(s) && decoded_put(s, &b, 1);
        break;
    case STR_ESCAPE: {
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        if (b == 'u') {
            s->sub = STR_HEX;
            s->hex_digits = 0;
            s->hex_value = 0;
            return SCAN_ACCEPT;
        }
        const char *e = b ? strchr(from, b) : NULL;
        if (!e) return SCAN_REJECT;
        s->sub = STR_PLAIN;
        if (s->decode) ok = flush_high_surrogate(s) && decoded_put(s, &to[e - from], 1);
        break;
    }
    default: { /* STR_HEX */
        int h = hex_value(b);
        if (h < 0) return SCAN_REJECT;
        s->hex_value = s->hex_value << 4 | (uint32_t)h;
        if (++s->hex_digits < 4) return SCAN_ACCEPT;
        s->sub = STR_PLAIN;
        if (!s->decode) break;
        uint32_t u = s->hex_value;
        if (u >= 0xDC00 && u <= 0xDFFF && s->high_surrogate) {
            uint32_t cp = 0x10000 + ((s->high_surrogate - 0xD800) << 10) + (u - 0xDC00);
            s->high_surrogate = 0;
            ok = decoded_put_code(s, cp);
        } else {
            ok = flush_high_surrogate(s);
            if (u >= 0xD800 && u <= 0xDBFF) s->high_surrogate = u;
            else if (ok) ok = decoded_put_code(s, u >= 0xDC00 && u <= 0xDFFF ? 0xFFFD : u);
        }
    }
    }
    if (!ok) c->oom = true;
    return SCAN_ACCEPT;
}

/* Whether b continues the number; updates the sub-state if it does. */
static bool number_continues(json_scan *s, uint8_t b) {
    bool digit = b >= '0' && b <= '9';
    switch (s->sub) {
    case N_MINUS:
        if (!digit) return false;
        s->sub = b == '0' ? N_ZERO : N_INT;
        return true;
    case N_ZERO:
    case N_INT:
        if (digit && s->sub == N_INT) return true;
        if (b == '.') return s->sub = N_DOT, true;
        if (b == 'e' || b == 'E') return s->sub = N_E, true;
        return false;
    case N_DOT:
    case N_FRAC:
        if (digit) return s->sub = N_FRAC, true;
        if (s->sub == N_FRAC && (b == 'e' || b == 'E')) return s->sub = N_E, true;
        return false;
    case N_E:
        if (b == '+' || b == '-') return s->sub = N_ESIGN, true;
        if (digit) return s->sub = N_EXP, true;
        return false;
    default: /* N_ESIGN, N_EXP */
        if (digit) return s->sub = N_EXP, true;
        return false;
    }
}

static scan_result dispatch(scan_ctx *c, uint8_t b) {
    json_scan *s = &c->p->scan;
    switch (s->mode) {
    case J_VALUE:
        if (is_json_ws(b)) return SCAN_ACCEPT;
        return start_value(c, b);
    case J_ARRAY_FIRST:
        if (is_json_ws(b)) return SCAN_ACCEPT;
        if (b == ']') return close_container(c, b);
        return start_value(c, b);
    case J_KEY_OR_END:
    case J_KEY:
        if (is_json_ws(b)) return SCAN_ACCEPT;
        if (b == '}' && s->mode == J_KEY_OR_END) return close_container(c, b);
        if (b != '"') return SCAN_REJECT;
        s->mode = J_STRING;
        s->sub = STR_PLAIN;
        s->string_is_key = true;
        s->decode = s->depth == 1;
        s->decoded.len = 0;
        s->decoded_overflow = false;
        s->high_surrogate = 0;
        return SCAN_ACCEPT;
    case J_COLON:
        if (is_json_ws(b)) return SCAN_ACCEPT;
        if (b != ':') return SCAN_REJECT;
        s->mode = J_VALUE;
        return SCAN_ACCEPT;
    case J_AFTER:
        if (is_json_ws(b)) return SCAN_ACCEPT;
        if (b == ',') {
            s->mode = s->stack[s->depth - 1] == '{' ? J_KEY : J_VALUE;
            return SCAN_ACCEPT;
        }
        if (b == '}' || b == ']') return close_container(c, b);
        return SCAN_REJECT;
    case J_STRING: return string_byte(c, b);
    case J_LITERAL:
        if (b != (uint8_t)s->literal[s->literal_at]) return SCAN_REJECT;
        if (s->literal[++s->literal_at] == '\0') return value_done(c);
        return SCAN_ACCEPT;
    case J_NUMBER: break; /* handled by scan_byte */
    }
    return SCAN_REJECT;
}

/* One byte of the call's text: accepted (and added to the arguments if it belongs to them), rejected (the call
 * breaks here, the byte is not consumed) or the end of the call's object. */
static scan_result scan_byte(scan_ctx *c, uint8_t b) {
    json_scan *s = &c->p->scan;
    if (s->mode == J_NUMBER) {
        if (number_continues(s, b)) {
            if (s->in_args && !byte_buf_append(&c->p->cur.args, &b, 1)) c->oom = true;
            return SCAN_ACCEPT;
        }
        if (s->sub != N_ZERO && s->sub != N_INT && s->sub != N_FRAC && s->sub != N_EXP) return SCAN_REJECT;
        value_done(c); /* the number ended before b: b is read after it */
    }
    bool was_in_args = s->in_args;
    scan_result r = dispatch(c, b);
    if (r != SCAN_REJECT && (was_in_args || s->in_args) && !byte_buf_append(&c->p->cur.args, &b, 1)) c->oom = true;
    return r;
}

/* ---- calls ---- */

static bool call_begin(tandem_chat_parser *p, const uint8_t *raw, size_t n) {
    p->call_return = p->state;
    p->call_raw.len = 0;
    scan_reset(&p->scan);
    call_clear(&p->cur);
    p->call_announced = false;
    p->args_sent = 0;
    p->state = ST_CALL;
    return byte_buf_append(&p->call_raw, raw, n);
}

static bool call_flush_args(tandem_chat_parser *p) {
    if (!p->call_announced || p->args_sent == p->cur.args.len) return true;
    size_t from = p->args_sent;
    p->args_sent = p->cur.args.len;
    return deliver(p, TANDEM_CHAT_DELTA_TOOL_ARGUMENTS, (const char *)p->cur.args.data + from, p->cur.args.len - from);
}

static bool call_announce(tandem_chat_parser *p) {
    json_scan *s = &p->scan;
    p->cur.name = malloc(s->decoded.len + 1);
    if (!p->cur.name) return fail_oom(p);
    memcpy(p->cur.name, s->decoded.data, s->decoded.len);
    p->cur.name[s->decoded.len] = '\0';
    make_call_id(p->params.id_seed, p->n_announced++, p->cur.id);
    p->call_announced = true;
    return deliver(p, TANDEM_CHAT_DELTA_TOOL_CALL, NULL, 0) && call_flush_args(p);
}

/* The call does not parse: TOOL_DROPPED if it was announced, then its text, verbatim, where it came from. */
static bool call_break(tandem_chat_parser *p) {
    if (p->call_announced && !deliver(p, TANDEM_CHAT_DELTA_TOOL_DROPPED, NULL, 0)) return false;
    p->state = p->call_return;
    p->drop_newlines = false;
    p->known_newlines = 0;
    call_clear(&p->cur);
    p->call_announced = false;
    return deliver_text(p, p->state, p->call_raw.data, p->call_raw.len);
}

static bool call_complete(tandem_chat_parser *p) {
    json_scan *s = &p->scan;
    if (!s->have_args && !byte_buf_append(&p->cur.args, "{}", 2)) return fail_oom(p);
    if (!call_flush_args(p)) return false;
    bool delivered = deliver(p, TANDEM_CHAT_DELTA_TOOL_END, NULL, 0); /* ended even if the callback stops here */
    if (p->n_calls == p->cap_calls) {
        size_t cap = p->cap_calls ? 2 * p->cap_calls : 4;
        chat_call *grown = realloc(p->calls, cap * sizeof *grown);
        if (!grown) return fail_oom(p);
        p->calls = grown;
        p->cap_calls = cap;
    }
    p->calls[p->n_calls++] = p->cur;
    memset(&p->cur, 0, sizeof p->cur);
    p->call_announced = false;
    if (p->call_return == ST_REASONING) p->think_close_pending = true;
    p->state = ST_AFTER_CALL;
    return delivered;
}

/* ---- the state machine ---- */

typedef enum { MATCH_NO, MATCH_PREFIX, MATCH_FULL } tag_match;

static tag_match match_tag(const uint8_t *s, size_t n, const char *tag, size_t tag_len) {
    size_t k = n < tag_len ? n : tag_len;
    if (memcmp(s, tag, k) != 0) return MATCH_NO;
    return n >= tag_len ? MATCH_FULL : MATCH_PREFIX;
}

typedef enum { STEP_WAIT, STEP_AGAIN, STEP_STOP } step_result;

static step_result step_start(tandem_chat_parser *p, bool final) {
    const uint8_t *s = p->in.data + p->in_pos;
    size_t n = p->in.len - p->in_pos;
    tag_match m = match_tag(s, n, TAG_THINK, sizeof TAG_THINK - 1);
    if (m == MATCH_PREFIX && !final) return STEP_WAIT;
    if (m == MATCH_FULL) {
        p->in_pos += sizeof TAG_THINK - 1;
        p->state = ST_REASONING;
        p->drop_newlines = true;
    } else {
        p->state = p->params.reasoning_open ? ST_REASONING : ST_CONTENT;
        p->drop_newlines = p->params.reasoning_open;
    }
    return STEP_AGAIN;
}

/* Reasoning or content: text up to the next tag is delivered, a tag prefix and the newlines before it held. */
static step_result step_text(tandem_chat_parser *p, bool final) {
    const bool reasoning = p->state == ST_REASONING;
    const uint8_t *in = p->in.data;
    size_t len = p->in.len;
    if (p->drop_newlines) {
        while (p->in_pos < len && in[p->in_pos] == '\n') p->in_pos++;
        if (p->in_pos == len) return STEP_WAIT;
        p->drop_newlines = false;
        p->known_newlines = 0;
    }
    const size_t start = p->in_pos;
    size_t scan = start + p->known_newlines;
    for (;;) {
        const uint8_t *lt = scan < len ? memchr(in + scan, '<', len - scan) : NULL;
        size_t j = lt ? (size_t)(lt - in) : len;
        size_t nl = j; /* the run of '\n' just before j starts at nl */
        while (nl > start && in[nl - 1] == '\n') {
            if (nl - 1 < start + p->known_newlines) {
                nl = start;
                break;
            }
            nl--;
        }
        if (j == len) {
            /* Trailing newlines: content keeps them at the end, reasoning drops them (as the template strips it). */
            size_t upto = final && !reasoning ? len : nl;
            if (!deliver_text(p, p->state, in + start, upto - start)) return STEP_STOP;
            p->in_pos = final ? len : nl;
            p->known_newlines = final ? 0 : len - nl;
            return STEP_WAIT;
        }
        const uint8_t *t = in + j;
        size_t n = len - j;
        bool call_ok = p->params.parse_tool_calls;
        bool end_ok = reasoning || p->think_close_pending;
        tag_match call = call_ok ? match_tag(t, n, TAG_CALL, sizeof TAG_CALL - 1) : MATCH_NO;
        tag_match end = end_ok ? match_tag(t, n, TAG_THINK_END, sizeof TAG_THINK_END - 1) : MATCH_NO;
        if (end == MATCH_FULL) {
            /* Reasoning's own newlines before "</think>" go; after a call ended the reasoning, the "</think>" that
             * comes late sits in content, and the newlines before it are kept there as text. */
            if (!deliver_text(p, p->state, in + start, (reasoning ? nl : j) - start)) return STEP_STOP;
            p->in_pos = j + sizeof TAG_THINK_END - 1;
            p->known_newlines = 0;
            p->state = ST_CONTENT;
            p->drop_newlines = true;
            p->think_close_pending = false;
            return STEP_AGAIN;
        }
        if (call == MATCH_FULL) {
            if (!deliver_text(p, p->state, in + start, nl - start)) return STEP_STOP;
            p->in_pos = j + sizeof TAG_CALL - 1;
            p->known_newlines = 0;
            if (!call_begin(p, in + nl, p->in_pos - nl)) {
                parser_fail(p, TANDEM_ERR_NO_MEMORY, "tandem_chat_parser_feed");
                return STEP_STOP;
            }
            return STEP_AGAIN;
        }
        if (!final && (call == MATCH_PREFIX || end == MATCH_PREFIX)) {
            if (!deliver_text(p, p->state, in + start, nl - start)) return STEP_STOP;
            p->in_pos = nl;
            p->known_newlines = j - nl;
            return STEP_WAIT;
        }
        scan = j + 1; /* this '<' is text */
    }
}

static step_result step_call(tandem_chat_parser *p, bool final) {
    scan_ctx c = {.p = p};
    while (p->in_pos < p->in.len) {
        uint8_t b = p->in.data[p->in_pos];
        c.name_done = false;
        scan_result r = scan_byte(&c, b);
        if (c.oom) {
            parser_fail(p, TANDEM_ERR_NO_MEMORY, "tandem_chat_parser_feed");
            return STEP_STOP;
        }
        if (r == SCAN_DONE && !p->scan.have_name) r = SCAN_REJECT; /* an object without a name is no call */
        if (r == SCAN_REJECT) return call_break(p) ? STEP_AGAIN : STEP_STOP;
        if (!byte_buf_append(&p->call_raw, &b, 1)) {
            parser_fail(p, TANDEM_ERR_NO_MEMORY, "tandem_chat_parser_feed");
            return STEP_STOP;
        }
        p->in_pos++;
        if (c.name_done && !call_announce(p)) return STEP_STOP;
        if (r == SCAN_DONE) return call_complete(p) ? STEP_AGAIN : STEP_STOP;
    }
    if (!call_flush_args(p)) return STEP_STOP;
    if (final) return call_break(p) ? STEP_AGAIN : STEP_STOP; /* the output ended inside the call */
    return STEP_WAIT;
}

static step_result step_after_call(tandem_chat_parser *p, bool final) {
    while (p->in_pos < p->in.len && is_json_ws(p->in.data[p->in_pos])) p->in_pos++;
    size_t n = p->in.len - p->in_pos;
    if (n == 0 && !final) return STEP_WAIT;
    tag_match m = match_tag(p->in.data + p->in_pos, n, TAG_CALL_END, sizeof TAG_CALL_END - 1);
    if (m == MATCH_PREFIX && !final) return STEP_WAIT;
    p->state = ST_CONTENT;
    p->known_newlines = 0;
    p->drop_newlines = m == MATCH_FULL;
    if (m == MATCH_FULL) p->in_pos += sizeof TAG_CALL_END - 1;
    return STEP_AGAIN;
}

/* Decides as much of `in` as it can, then drops the consumed bytes. */
static tandem_status run(tandem_chat_parser *p, bool final) {
    for (;;) {
        if (p->failed) break;
        step_result r;
        switch (p->state) {
        case ST_START: r = step_start(p, final); break;
        case ST_REASONING:
        case ST_CONTENT: r = step_text(p, final); break;
        case ST_CALL: r = step_call(p, final); break;
        default: r = step_after_call(p, final); break;
        }
        if (r == STEP_STOP) break;
        if (r == STEP_WAIT) {
            if (!final || p->in_pos == p->in.len) break;
        }
    }
    if (p->in_pos) {
        memmove(p->in.data, p->in.data + p->in_pos, p->in.len - p->in_pos);
        p->in.len -= p->in_pos;
        p->in_pos = 0;
    }
    return p->failed;
}

/* ---- input: UTF-8 with Python's errors="replace" ---- */

static bool put_input(tandem_chat_parser *p, const void *b, size_t n) { return byte_buf_append(&p->in, b, n); }

static bool put_replacement(tandem_chat_parser *p) { return put_input(p, "\xEF\xBF\xBD", 3); }

/* Appends text to `in`, every well-formed character as it is, each maximal ill-formed subpart as U+FFFD
 * (Unicode 3.9, Table 3-7); an incomplete character at the end waits in the carry. */
static bool take_input(tandem_chat_parser *p, const uint8_t *s, size_t n) {
    size_t run = 0; /* s[run .. i) is well-formed and not yet copied */
    for (size_t i = 0; i < n;) {
        uint8_t b = s[i];
        if (p->n_carry == 0) {
            if (b < 0x80) {
                i++;
                continue;
            }
            if (!put_input(p, s + run, i - run)) return false;
            int need = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
            i++;
            run = i;
            if (!need) {
                if (!put_replacement(p)) return false;
                continue;
            }
            p->carry[0] = b;
            p->n_carry = 1;
            p->carry_need = need;
            continue;
        }
        uint8_t lead = p->carry[0], lo = 0x80, hi = 0xBF;
        if (p->n_carry == 1) {
            if (lead == 0xE0) lo = 0xA0;
            if (lead == 0xED) hi = 0x9F;
            if (lead == 0xF0) lo = 0x90;
            if (lead == 0xF4) hi = 0x8F;
        }
        if (b < lo || b > hi) { /* the carry is a maximal subpart; b starts afresh */
            p->n_carry = 0;
            if (!put_replacement(p)) return false;
            run = i;
            continue;
        }
        p->carry[p->n_carry++] = b;
        i++;
        run = i;
        if (p->n_carry == p->carry_need) {
            if (!put_input(p, p->carry, (size_t)p->n_carry)) return false;
            p->n_carry = 0;
        }
    }
    return put_input(p, s + run, n - run); /* empty while a character waits in the carry */
}

/* ---- the public calls ---- */

tandem_status tandem_chat_parser_feed(tandem_chat_parser *p, const char *text, size_t len,
                                      tandem_chat_delta_callback cb, void *user) {
    if (!p || (!text && len))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_chat_parser_feed: %s is NULL", p ? "text" : "p");
    if (p->failed) return parser_fail(p, p->failed, "tandem_chat_parser_feed");
    if (p->finished) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_chat_parser_feed: the parser is finished");
    p->cb = cb;
    p->user = user;
    if (!take_input(p, (const uint8_t *)text, len))
        return parser_fail(p, TANDEM_ERR_NO_MEMORY, "tandem_chat_parser_feed");
    return run(p, false);
}

tandem_status tandem_chat_parser_finish(tandem_chat_parser *p, tandem_chat_delta_callback cb, void *user) {
    if (!p) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_chat_parser_finish: p is NULL");
    if (p->failed) return parser_fail(p, p->failed, "tandem_chat_parser_finish");
    if (p->finished) return TANDEM_OK;
    p->finished = true;
    p->cb = cb;
    p->user = user;
    if (p->n_carry) { /* the output ended inside a character */
        p->n_carry = 0;
        if (!put_replacement(p)) return parser_fail(p, TANDEM_ERR_NO_MEMORY, "tandem_chat_parser_finish");
    }
    return run(p, true);
}

static json_t *string_of(const byte_buf *b) { return json_stringn(b->len ? (const char *)b->data : "", b->len); }

tandem_status tandem_chat_parser_message_json(const tandem_chat_parser *p, char **json) {
    if (!p || !json)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_chat_parser_message_json: %s is NULL", p ? "json" : "p");
    *json = NULL;
    json_t *msg = json_object(), *calls = NULL;
    bool ok = msg && !json_object_set_new(msg, "role", json_string("assistant"));
    if (ok && p->content.len == 0 && p->n_calls > 0) ok = !json_object_set_new(msg, "content", json_null());
    else if (ok) ok = !json_object_set_new(msg, "content", string_of(&p->content));
    if (ok && p->reasoning.len) ok = !json_object_set_new(msg, "reasoning_content", string_of(&p->reasoning));
    if (ok && p->n_calls) {
        calls = json_array();
        ok = !json_object_set_new(msg, "tool_calls", calls);
        for (size_t i = 0; ok && i < p->n_calls; i++) {
            const chat_call *c = &p->calls[i];
            json_t *call = json_object(), *fn; /* each _new setter owns its value, even when it fails */
            ok = !json_array_append_new(calls, call) && !json_object_set_new(call, "id", json_string(c->id)) &&
                 !json_object_set_new(call, "type", json_string("function")) &&
                 !json_object_set_new(call, "function", fn = json_object()) &&
                 !json_object_set_new(fn, "name", json_string(c->name)) &&
                 !json_object_set_new(fn, "arguments", string_of(&c->args));
        }
    }
    char *s = ok ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (!s) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_chat_parser_message_json: out of memory");
    *json = s;
    return TANDEM_OK;
}
