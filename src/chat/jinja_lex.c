/* jinja_lex.c — template text to tokens, as jinja2's lexer does it with transformers' settings: trim_blocks,
 * lstrip_blocks, `-`/`+` whitespace control, comments, raw blocks, newlines normalised, the last one dropped. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "jinja.h"

typedef struct lexer {
    jctx *c;
    const char *s;
    size_t n, pos;
    int line;
    size_t line_start;
    jtok *toks;
    size_t n_toks, cap;
} lexer;

static jtok *push(lexer *L, uint8_t kind, size_t at) {
    if (L->n_toks == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        jtok *t = ja_alloc(&L->c->arena, cap * sizeof *t);
        if (L->n_toks) memcpy(t, L->toks, L->n_toks * sizeof *t);
        L->toks = t;
        L->cap = cap;
    }
    jtok *t = &L->toks[L->n_toks++];
    t->kind = kind;
    t->line = L->line;
    t->col = (int)(at - L->line_start) + 1;
    return t;
}

/* Moves pos to to, counting lines. */
static void advance(lexer *L, size_t to) {
    for (; L->pos < to; L->pos++)
        if (L->s[L->pos] == '\n') {
            L->line++;
            L->line_start = L->pos + 1;
        }
}

_Noreturn static void lex_fail(lexer *L, const char *fmt, const char *arg) {
    jfail_at(L->c, JERR_SYNTAX, L->line, (int)(L->pos - L->line_start) + 1, fmt, arg);
}

static size_t space_run(const char *s, size_t n, size_t i) { /* end of the whitespace run at i */
    while (i < n) {
        size_t used;
        uint32_t cp = utf8_decode(s + i, n - i, &used);
        if (!py_isspace(cp)) break;
        i += used;
    }
    return i;
}

static size_t rstrip_len(const char *s, size_t n) { /* length of s without trailing whitespace */
    while (n > 0) {
        size_t k = n - 1;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        size_t used;
        if (!py_isspace(utf8_decode(s + k, n - k, &used))) break;
        n = k;
    }
    return n;
}

static void emit_text(lexer *L, size_t from, size_t len) {
    if (len == 0) return;
    jtok *t = push(L, T_TEXT, from);
    t->p = L->s + from;
    t->n = len;
}

static bool is_ident_start(char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_'; }
static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* A string literal's value, as Python's unicode-escape decoding gives it. */
static void unescape(lexer *L, jtok *t, const char *s, size_t n) {
    jbuf b = {0};
    jctx *c = L->c;
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\' || i + 1 >= n) {
            size_t j = i + 1;
            while (j < n && s[j] != '\\') j++;
            jb_put(c, &b, s + i, j - i);
            i = j;
            continue;
        }
        char e = s[i + 1];
        i += 2;
        int digits = 0;
        switch (e) {
        case '\n': break;
        case '\\': jb_put(c, &b, "\\", 1); break;
        case '\'': jb_put(c, &b, "'", 1); break;
        case '"': jb_put(c, &b, "\"", 1); break;
        case 'a': jb_put(c, &b, "\a", 1); break;
        case 'b': jb_put(c, &b, "\b", 1); break;
        case 'f': jb_put(c, &b, "\f", 1); break;
        case 'n': jb_put(c, &b, "\n", 1); break;
        case 'r': jb_put(c, &b, "\r", 1); break;
        case 't': jb_put(c, &b, "\t", 1); break;
        case 'v': jb_put(c, &b, "\v", 1); break;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default:
            if (e >= '0' && e <= '7') {
                uint32_t v = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && i < n && s[i] >= '0' && s[i] <= '7'; k++) v = v * 8 + (uint32_t)(s[i++] - '0');
                char u[4];
                jb_put(c, &b, u, utf8_encode(v, u));
            } else {
                jb_put(c, &b, s + i - 2, 2); /* unknown escapes stay as written */
            }
        }
        if (digits) {
            uint32_t v = 0;
            for (int k = 0; k < digits; k++) {
                if (i >= n || hexval(s[i]) < 0) lex_fail(L, "%s", "truncated \\x, \\u or \\U escape in a string");
                v = v * 16 + (uint32_t)hexval(s[i++]);
            }
            if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
                lex_fail(L, "%s", "a \\u or \\U escape names no Unicode character (or a lone surrogate)");
            char u[4];
            jb_put(c, &b, u, utf8_encode(v, u));
        }
    }
    t->p = b.p ? b.p : "";
    t->n = b.n;
}

/* The next delimiter at or after from: '{' followed by '{', '%' or '#'. */
static size_t find_open(const lexer *L, size_t from) {
    for (size_t i = from; i + 1 < L->n; i++) {
        const char *p = memchr(L->s + i, '{', L->n - 1 - i);
        if (!p) return L->n;
        i = (size_t)(p - L->s);
        char nx = L->s[i + 1];
        if (nx == '{' || nx == '%' || nx == '#') return i;
    }
    return L->n;
}

/* At "{%": is this "{%[-+]? raw [-+]?%}"? Sets *end past it and *minus for a "-%}" close. */
static bool match_raw(const lexer *L, size_t i, const char *word, size_t *end, bool *open_minus, char *close_sign) {
    size_t j = i + 2;
    *open_minus = j < L->n && L->s[j] == '-';
    if (j < L->n && (L->s[j] == '-' || L->s[j] == '+')) j++;
    j = space_run(L->s, L->n, j);
    size_t wl = strlen(word);
    if (j + wl > L->n || memcmp(L->s + j, word, wl)) return false;
    j = space_run(L->s, L->n, j + wl);
    *close_sign = 0;
    /* jinja2 takes "+%}" after endraw but not after raw */
    if (j < L->n && (L->s[j] == '-' || (L->s[j] == '+' && word[0] == 'e'))) {
        *close_sign = L->s[j];
        j++;
    }
    if (j + 2 > L->n || L->s[j] != '%' || L->s[j + 1] != '}') return false;
    *end = j + 2;
    return true;
}

static const char *const OPS[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                                  ">",  "=",  "(",  ")",  "[",  "]",  "{", "}", ",", ".", ":", "|", ";"};

/* Tokens inside {{ }} or {% %}, from pos up to the closing delimiter (consumed with its whitespace rules).
 * Returns whether the closing text ended with a newline (jinja2's line_starting). */
static bool lex_tag(lexer *L, bool block) {
    char stack[64];
    int depth = 0;
    size_t open_at = L->pos;
    for (;;) {
        advance(L, space_run(L->s, L->n, L->pos));
        if (L->pos >= L->n)
            lex_fail(L, "%s",
                     block ? "unexpected end of template: missing '%}'" : "unexpected end of template: missing '}}'");
        const char *s = L->s + L->pos;
        size_t rest = L->n - L->pos;
        char closer = block ? '%' : '}';
        if (depth == 0) {
            bool minus = rest >= 3 && s[0] == '-' && s[1] == closer && s[2] == '}';
            bool plus = rest >= 3 && s[0] == '+' && s[1] == closer && s[2] == '}' && block;
            bool plain = rest >= 2 && s[0] == closer && s[1] == '}';
            if (minus || plus || plain) {
                push(L, block ? T_BLOCK_END : T_VAR_END, L->pos);
                size_t end = L->pos + (plain ? 2 : 3);
                if (minus) end = space_run(L->s, L->n, end);
                else if (plain && block && end < L->n && L->s[end] == '\n') end++; /* trim_blocks */
                advance(L, end);
                return end > 0 && L->s[end - 1] == '\n';
            }
        }
        jtok *t;
        if (is_digit(s[0])) {
            /* integer or float (digits may hold '_' separators) */
            size_t i = 0;
            bool is_float = false;
            if (s[0] == '0' && rest > 2 &&
                (s[1] == 'x' || s[1] == 'X' || s[1] == 'o' || s[1] == 'O' || s[1] == 'b' || s[1] == 'B')) {
                int base = (s[1] | 0x20) == 'x' ? 16 : (s[1] | 0x20) == 'o' ? 8 : 2;
                i = 2;
                uint64_t v = 0;
                size_t nd = 0;
                while (i < rest && (hexval(s[i]) >= 0 || s[i] == '_')) {
                    if (s[i] != '_') {
                        if (hexval(s[i]) >= base) break;
                        if (v > (uint64_t)INT64_MAX / (uint64_t)base) lex_fail(L, "%s", "integer literal too large");
                        v = v * (uint64_t)base + (uint64_t)hexval(s[i]);
                        nd++;
                    }
                    i++;
                }
                if (!nd) lex_fail(L, "%s", "malformed integer literal");
                t = push(L, T_INT, L->pos);
                t->i = (int64_t)v;
                advance(L, L->pos + i);
                continue;
            }
            while (i < rest && (is_digit(s[i]) || (s[i] == '_' && i + 1 < rest && is_digit(s[i + 1])))) i++;
            if (i + 1 < rest && s[i] == '.' && is_digit(s[i + 1])) {
                is_float = true;
                i++;
                while (i < rest && (is_digit(s[i]) || (s[i] == '_' && i + 1 < rest && is_digit(s[i + 1])))) i++;
            }
            if (i < rest && (s[i] == 'e' || s[i] == 'E')) {
                size_t j = i + 1;
                if (j < rest && (s[j] == '+' || s[j] == '-')) j++;
                if (j < rest && is_digit(s[j])) {
                    is_float = true;
                    while (j < rest && (is_digit(s[j]) || (s[j] == '_' && j + 1 < rest && is_digit(s[j + 1])))) j++;
                    i = j;
                }
            }
            char num[128];
            size_t k = 0;
            for (size_t m = 0; m < i && k + 1 < sizeof num; m++)
                if (s[m] != '_') num[k++] = s[m];
            num[k] = '\0';
            if (i >= sizeof num) lex_fail(L, "%s", "number literal too long");
            if (is_float) {
                t = push(L, T_FLOAT, L->pos);
                t->f = strtod(num, NULL);
            } else {
                t = push(L, T_INT, L->pos);
                errno = 0;
                unsigned long long v = strtoull(num, NULL, 10);
                if (errno || v > (unsigned long long)INT64_MAX) lex_fail(L, "%s", "integer literal too large");
                t->i = (int64_t)v;
            }
            advance(L, L->pos + i);
            continue;
        }
        if (is_ident_start(s[0])) {
            size_t i = 1;
            while (i < rest && (is_ident_start(s[i]) || is_digit(s[i]))) i++;
            t = push(L, T_NAME, L->pos);
            t->p = s;
            t->n = i;
            advance(L, L->pos + i);
            continue;
        }
        if (s[0] == '\'' || s[0] == '"') {
            size_t i = 1;
            while (i < rest && s[i] != s[0]) i += s[i] == '\\' ? 2 : 1;
            if (i >= rest) lex_fail(L, "%s", "unterminated string literal");
            t = push(L, T_STRING, L->pos);
            unescape(L, t, s + 1, i - 1);
            advance(L, L->pos + i + 1);
            continue;
        }
        size_t op_n = 0;
        for (size_t k = 0; k < sizeof OPS / sizeof *OPS && !op_n; k++) {
            size_t m = strlen(OPS[k]);
            if (m <= rest && !memcmp(s, OPS[k], m)) op_n = m;
        }
        if (!op_n) {
            char ch[8] = {0};
            size_t used;
            utf8_decode(s, rest, &used);
            memcpy(ch, s, used);
            lex_fail(L, "unexpected character '%s'", ch);
        }
        if (op_n == 1 && (s[0] == '(' || s[0] == '[' || s[0] == '{')) {
            if (depth == (int)sizeof stack) lex_fail(L, "%s", "brackets nest too deeply");
            stack[depth++] = s[0] == '(' ? ')' : s[0] == '[' ? ']' : '}';
        } else if (op_n == 1 && (s[0] == ')' || s[0] == ']' || s[0] == '}')) {
            if (depth == 0) {
                char m[2] = {s[0], 0};
                lex_fail(L, "unexpected '%s'", m);
            }
            if (stack[depth - 1] != s[0]) {
                char m[16];
                snprintf(m, sizeof m, "%c': '%c", s[0], stack[depth - 1]);
                lex_fail(L, "unexpected '%s' expected", m);
            }
            depth--;
        }
        t = push(L, T_OP, L->pos);
        t->p = s;
        t->n = op_n;
        advance(L, L->pos + op_n);
    }
    (void)open_at;
}

void jinja_lex(jctx *c, const char *src, size_t n, jtok **toks, size_t *n_toks) {
    /* newlines normalised to \n and one trailing newline dropped (keep_trailing_newline=False) */
    char *s = ja_alloc(&c->arena, n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '\r') {
            s[m++] = '\n';
            if (i + 1 < n && src[i + 1] == '\n') i++;
        } else {
            s[m++] = src[i];
        }
    }
    if (m > 0 && s[m - 1] == '\n') m--;
    lexer L = {.c = c, .s = s, .n = m, .line = 1};
    bool line_starting = true;
    while (L.pos < L.n) {
        size_t open = find_open(&L, L.pos);
        if (open >= L.n) {
            emit_text(&L, L.pos, L.n - L.pos);
            advance(&L, L.n);
            break;
        }
        char kind = L.s[open + 1];
        char sign = open + 2 < L.n ? L.s[open + 2] : 0;
        size_t raw_end = 0;
        bool raw_open_minus = false;
        char raw_close = 0;
        bool is_raw = kind == '%' && match_raw(&L, open, "raw", &raw_end, &raw_open_minus, &raw_close);
        size_t text_len = open - L.pos;
        if (sign == '-') {
            text_len = rstrip_len(L.s + L.pos, text_len);
        } else if (sign != '+' && kind != '{') { /* lstrip_blocks */
            const char *text = L.s + L.pos;
            size_t l_pos = text_len;
            while (l_pos > 0 && text[l_pos - 1] != '\n') l_pos--;
            if ((l_pos > 0 || line_starting) && l_pos < text_len && space_run(text, text_len, l_pos) == text_len)
                text_len = l_pos;
        }
        emit_text(&L, L.pos, text_len);
        advance(&L, open);
        if (kind == '#') {
            size_t i = open + 2;
            for (; i + 1 < L.n; i++)
                if (L.s[i] == '#' && L.s[i + 1] == '}') break;
            if (i + 1 >= L.n) lex_fail(&L, "%s", "missing end of comment tag");
            size_t end = i + 2;
            if (i > open + 2 && L.s[i - 1] == '-') end = space_run(L.s, L.n, end);
            else if (!(i > open + 2 && L.s[i - 1] == '+') && end < L.n && L.s[end] == '\n') end++;
            advance(&L, end);
            line_starting = L.s[end - 1] == '\n';
        } else if (is_raw) {
            size_t body = raw_end;
            if (raw_close == '-') body = space_run(L.s, L.n, body);
            size_t i = body, end = 0;
            bool om = false;
            char cm = 0;
            for (;; i++) {
                i = find_open(&L, i);
                if (i >= L.n) {
                    advance(&L, open);
                    lex_fail(&L, "%s", "missing end of raw directive");
                }
                if (L.s[i + 1] == '%' && match_raw(&L, i, "endraw", &end, &om, &cm)) break;
            }
            size_t len = i - body;
            if (om) len = rstrip_len(L.s + body, len);
            advance(&L, body);
            emit_text(&L, body, len);
            if (cm == '-') end = space_run(L.s, L.n, end);
            else if (cm != '+' && end < L.n && L.s[end] == '\n') end++;
            advance(&L, end);
            line_starting = L.s[end - 1] == '\n';
        } else {
            push(&L, kind == '{' ? T_VAR_BEGIN : T_BLOCK_BEGIN, open);
            size_t body = open + 2;
            if (sign == '-' || sign == '+') body++;
            advance(&L, body);
            line_starting = lex_tag(&L, kind == '%');
        }
    }
    push(&L, T_EOF, L.pos);
    *toks = L.toks;
    *n_toks = L.n_toks;
}
