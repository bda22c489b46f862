/* jinja_value.c — the interpreter's memory (an arena with a cap), errors, and values with Python's semantics:
 * truthiness, equality and order, str() and repr() (floats as the shortest round-trip), UTF-8, HF's tojson. */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "jinja.h"

/* ---- arena ---- */

struct jarena_block {
    jarena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *ja_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    jarena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        if (a->used + n > a->limit || n > a->limit)
            jfail(a->owner, JERR_LIMIT, "the template needs more than %zu MiB of memory (the sandbox's limit)",
                  a->limit >> 20);
        size_t cap = n > 65536 ? n : 65536;
        b = malloc(sizeof *b + cap);
        if (!b) {
            a->owner->err_status = TANDEM_ERR_NO_MEMORY;
            jfail(a->owner, JERR_LIMIT, "out of memory");
        }
        b->cap = cap;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    a->used += n;
    memset(p, 0, n);
    return p;
}

void jarena_free(jarena *a) {
    for (jarena_block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
    a->used = 0;
}

/* ---- errors ---- */

static void jfail_record(jctx *c, jerr_kind kind, int line, int col, const char *fmt, va_list ap) {
    char msg[400];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (col > 0)
        snprintf(c->err, sizeof c->err, "chat template (%s): line %d, column %d: %s", c->origin, line, col, msg);
    else if (line > 0) snprintf(c->err, sizeof c->err, "chat template (%s): line %d: %s", c->origin, line, msg);
    else snprintf(c->err, sizeof c->err, "chat template (%s): %s", c->origin, msg);
    c->err_kind = kind;
    if (!c->err_status) c->err_status = kind == JERR_SYNTAX ? TANDEM_ERR_FORMAT : TANDEM_ERR_INVALID_ARG;
}

_Noreturn void jfail(jctx *c, jerr_kind kind, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    jfail_record(c, kind, c->line, 0, fmt, ap);
    va_end(ap);
    longjmp(c->on_error, 1);
}

_Noreturn void jfail_at(jctx *c, jerr_kind kind, int line, int col, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    jfail_record(c, kind, line, col, fmt, ap);
    va_end(ap);
    longjmp(c->on_error, 1);
}

/* ---- buffers (malloc'd, grown by doubling; the owner frees p) ---- */

void jb_put(jctx *c, jbuf *b, const char *s, size_t n) {
    if (n == 0) return;
    if (b->is_output) {
        c->out_bytes += (int64_t)n;
        if (c->out_bytes > c->lim.max_output)
            jfail(c, JERR_LIMIT, "the output exceeds %lld bytes (the sandbox's limit)", (long long)c->lim.max_output);
    }
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n + 1) {
            if (cap > c->lim.max_memory) jfail(c, JERR_LIMIT, "a string exceeds the sandbox's memory limit");
            cap *= 2;
        }
        char *p = ja_alloc(&c->arena, cap);
        if (b->n) memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void jb_puts(jctx *c, jbuf *b, const char *s) { jb_put(c, b, s, strlen(s)); }

void jb_printf(jctx *c, jbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) jb_put(c, b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* ---- constructors ---- */

jv jv_str(jctx *c, const char *s, size_t n) {
    char *p = ja_alloc(&c->arena, n + 1);
    if (n) memcpy(p, s, n);
    jv v = {.t = JV_STR};
    v.s.p = p;
    v.s.n = n;
    return v;
}
jv jv_str_lit(const char *s) {
    jv v = {.t = JV_STR};
    v.s.p = s;
    v.s.n = strlen(s);
    return v;
}
jv jv_undef(const char *name) {
    jv v = {.t = JV_UNDEF};
    v.s.p = name;
    v.s.n = name ? strlen(name) : 0;
    return v;
}
jv jv_none(void) { return (jv){.t = JV_NONE}; }
jv jv_bool(bool b) { return (jv){.t = JV_BOOL, .b = b}; }
jv jv_int(int64_t i) { return (jv){.t = JV_INT, .i = i}; }
jv jv_float(double f) { return (jv){.t = JV_FLOAT, .f = f}; }
jv jv_list(jctx *c, size_t n) {
    jlist *l = ja_alloc(&c->arena, sizeof *l);
    if (n > c->lim.max_memory / sizeof(jv)) jfail(c, JERR_LIMIT, "a list exceeds the sandbox's memory limit");
    l->items = n ? ja_alloc(&c->arena, n * sizeof(jv)) : NULL;
    l->n = n;
    return (jv){.t = JV_LIST, .l = l};
}
jv jv_dict(jctx *c) { return (jv){.t = JV_DICT, .d = ja_alloc(&c->arena, sizeof(jdict))}; }

static bool key_eq(jctx *c, jv a, jv b) {
    if (a.t == JV_STR && b.t == JV_STR) return a.s.n == b.s.n && !memcmp(a.s.p, b.s.p, a.s.n);
    if (a.t == JV_STR || b.t == JV_STR) return false;
    return jv_equal(c, a, b);
}

static void charge(jctx *c, size_t n) {
    c->steps += (int64_t)(n / 8);
    if (c->steps > c->lim.max_steps)
        jfail(c, JERR_LIMIT, "the template runs more than %lld steps (the sandbox's limit)",
              (long long)c->lim.max_steps);
}

void jdict_set(jctx *c, jdict *d, jv key, jv val) {
    charge(c, d->n);
    for (size_t i = 0; i < d->n; i++)
        if (key_eq(c, d->keys[i], key)) {
            d->vals[i] = val;
            return;
        }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        jv *k = ja_alloc(&c->arena, cap * sizeof(jv)), *v = ja_alloc(&c->arena, cap * sizeof(jv));
        if (d->n) {
            memcpy(k, d->keys, d->n * sizeof(jv));
            memcpy(v, d->vals, d->n * sizeof(jv));
        }
        d->keys = k;
        d->vals = v;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n++] = val;
}

bool jdict_get(jctx *c, const jdict *d, jv key, jv *out) {
    charge(c, d->n);
    for (size_t i = 0; i < d->n; i++)
        if (key_eq(c, d->keys[i], key)) {
            *out = d->vals[i];
            return true;
        }
    return false;
}

bool jdict_get_str(const jdict *d, const char *key, jv *out) {
    size_t n = strlen(key);
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i].t == JV_STR && d->keys[i].s.n == n && !memcmp(d->keys[i].s.p, key, n)) {
            *out = d->vals[i];
            return true;
        }
    return false;
}

/* ---- UTF-8 ---- */

size_t utf8_len(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

size_t utf8_offset(const char *s, size_t n, size_t cp) {
    size_t i = 0;
    for (size_t k = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (k == cp) return i;
            k++;
        }
    }
    return n;
}

uint32_t utf8_decode(const char *s, size_t n, size_t *used) {
    const unsigned char *u = (const unsigned char *)s;
    size_t len = u[0] < 0x80 ? 1 : u[0] < 0xE0 ? 2 : u[0] < 0xF0 ? 3 : 4;
    if (len > n) len = n;
    uint32_t cp = len == 1 ? u[0] : len == 2 ? u[0] & 0x1Fu : len == 3 ? u[0] & 0x0Fu : u[0] & 0x07u;
    for (size_t i = 1; i < len; i++) cp = cp << 6 | (u[i] & 0x3Fu);
    *used = len;
    return cp;
}

size_t utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        size_t len;
        uint32_t min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) len = 2, min = 0x80;
        else if ((c & 0xF0) == 0xE0) len = 3, min = 0x800;
        else if ((c & 0xF8) == 0xF0) len = 4, min = 0x10000;
        else return false;
        if (i + len > n) return false;
        uint32_t cp = c & (0x7F >> len);
        for (size_t k = 1; k < len; k++) {
            if ((u[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (u[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

bool py_isspace(uint32_t cp) {
    return (cp >= 9 && cp <= 13) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* ---- Python semantics ---- */

const char *jv_type_name(jv v) {
    switch ((jtype)v.t) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return v.l->tuple ? "tuple" : "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_MACRO: return "Macro";
    case JV_FUNC: return "builtin_function_or_method";
    case JV_LOOP: return "LoopContext";
    }
    return "object";
}

bool jv_truthy(jv v) {
    switch ((jtype)v.t) {
    case JV_UNDEF:
    case JV_NONE: return false;
    case JV_BOOL: return v.b;
    case JV_INT: return v.i != 0;
    case JV_FLOAT: return v.f != 0.0;
    case JV_STR: return v.s.n != 0;
    case JV_LIST: return v.l->n != 0;
    case JV_DICT: return v.d->n != 0;
    default: return true;
    }
}

static bool is_num(jv v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }
static double num_f(jv v) {
    return v.t == JV_FLOAT ? v.f : v.t == JV_INT ? (double)v.i : v.t == JV_BOOL ? (double)v.b : 0.0;
}
static int64_t num_i(jv v) { return v.t == JV_INT ? v.i : v.t == JV_BOOL ? (int64_t)v.b : 0; }

static bool equal_values(jctx *c, jv a, jv b);

bool jv_equal(jctx *c, jv a, jv b) {
    if (a.t != JV_LIST && a.t != JV_DICT) return equal_values(c, a, b);
    nest_in(c);
    bool r = equal_values(c, a, b);
    nest_out(c);
    return r;
}

static bool equal_values(jctx *c, jv a, jv b) {
    if (is_num(a) && is_num(b)) {
        if (a.t == JV_FLOAT || b.t == JV_FLOAT) return num_f(a) == num_f(b);
        return num_i(a) == num_i(b);
    }
    if (a.t != b.t) return false;
    switch ((jtype)a.t) {
    case JV_UNDEF:
    case JV_NONE: return true;
    case JV_STR: return a.s.n == b.s.n && !memcmp(a.s.p, b.s.p, a.s.n);
    case JV_LIST:
        if (a.l->n != b.l->n || a.l->tuple != b.l->tuple) return false;
        charge(c, a.l->n);
        for (size_t i = 0; i < a.l->n; i++)
            if (!jv_equal(c, a.l->items[i], b.l->items[i])) return false;
        return true;
    case JV_DICT:
        if (a.d->n != b.d->n) return false;
        for (size_t i = 0; i < a.d->n; i++) {
            jv o;
            if (!jdict_get(c, b.d, a.d->keys[i], &o) || !jv_equal(c, a.d->vals[i], o)) return false;
        }
        return true;
    case JV_NS: return a.d == b.d;
    case JV_MACRO: return a.m == b.m;
    case JV_FUNC: return a.fn == b.fn;
    case JV_LOOP: return a.loop == b.loop;
    default: return false;
    }
}

int jv_compare(jctx *c, jv a, jv b) {
    if (is_num(a) && is_num(b)) {
        if (a.t == JV_FLOAT || b.t == JV_FLOAT) {
            double x = num_f(a), y = num_f(b);
            return x < y ? -1 : x > y ? 1 : 0;
        }
        int64_t x = num_i(a), y = num_i(b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a.t == JV_STR && b.t == JV_STR) {
        /* UTF-8 byte order is code point order */
        size_t n = a.s.n < b.s.n ? a.s.n : b.s.n;
        int r = memcmp(a.s.p, b.s.p, n);
        if (r) return r;
        return a.s.n < b.s.n ? -1 : a.s.n > b.s.n ? 1 : 0;
    }
    if (a.t == JV_LIST && b.t == JV_LIST && a.l->tuple == b.l->tuple) {
        nest_in(c);
        int r = a.l->n < b.l->n ? -1 : a.l->n > b.l->n ? 1 : 0;
        for (size_t i = 0; i < a.l->n && i < b.l->n; i++) {
            if (jv_equal(c, a.l->items[i], b.l->items[i])) continue;
            r = jv_compare(c, a.l->items[i], b.l->items[i]);
            break;
        }
        nest_out(c);
        return r;
    }
    jfail(c, JERR_RUNTIME, "'<' not supported between instances of '%s' and '%s'", jv_type_name(a), jv_type_name(b));
}

/* ---- str() and repr() ---- */

void float_repr(double f, char out[32]) {
    if (isnan(f)) {
        strcpy(out, "nan");
        return;
    }
    if (isinf(f)) {
        strcpy(out, f < 0 ? "-inf" : "inf");
        return;
    }
    /* the shortest %.*e that reads back as f gives Python's digits */
    char e[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, f);
        if (strtod(e, NULL) == f) break;
    }
    /* e: [-]d[.ddd]e[+-]XX → digits and decimal exponent */
    char digits[24];
    size_t nd = 0;
    const char *p = e;
    bool neg = *p == '-';
    if (neg) p++;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    int decpt = exp10 + 1; /* digits d1 d2 ... = 0.d1d2... × 10^decpt */
    char *o = out;
    if (neg) *o++ = '-';
    if (decpt > 16 || decpt < -3) {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, nd - 1);
            o += nd - 1;
        }
        sprintf(o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
        return;
    }
    if (decpt <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -decpt; i++) *o++ = '0';
        memcpy(o, digits, nd);
        o += nd;
    } else if ((size_t)decpt >= nd) {
        memcpy(o, digits, nd);
        o += nd;
        for (size_t i = nd; i < (size_t)decpt; i++) *o++ = '0';
        *o++ = '.';
        *o++ = '0';
    } else {
        memcpy(o, digits, (size_t)decpt);
        o += decpt;
        *o++ = '.';
        memcpy(o, digits + decpt, nd - (size_t)decpt);
        o += nd - (size_t)decpt;
    }
    *o = '\0';
}

/* Python's str.isprintable() for the code points a chat template may meet (controls, separators, format
 * characters; every other code point counts as printable). */
static bool py_printable(uint32_t cp) {
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) return false;
    if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) ||
        (cp >= 0x205F && cp <= 0x206F) || cp == 0x3000 || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB))
        return false;
    if ((cp >= 0xE000 && cp <= 0xF8FF) || cp >= 0xF0000) return false; /* private use */
    return true;
}

static void str_repr(jctx *c, jbuf *b, const char *s, size_t n) {
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    jb_put(c, b, &q, 1);
    for (size_t i = 0; i < n;) {
        size_t used;
        uint32_t cp = utf8_decode(s + i, n - i, &used);
        char esc[16];
        if (cp == (uint32_t)q || cp == '\\') {
            esc[0] = '\\';
            esc[1] = (char)cp;
            jb_put(c, b, esc, 2);
        } else if (cp == '\n') jb_puts(c, b, "\\n");
        else if (cp == '\r') jb_puts(c, b, "\\r");
        else if (cp == '\t') jb_puts(c, b, "\\t");
        else if (!py_printable(cp)) {
            if (cp < 0x100) snprintf(esc, sizeof esc, "\\x%02x", cp);
            else if (cp < 0x10000) snprintf(esc, sizeof esc, "\\u%04x", cp);
            else snprintf(esc, sizeof esc, "\\U%08x", cp);
            jb_puts(c, b, esc);
        } else jb_put(c, b, s + i, used);
        i += used;
    }
    jb_put(c, b, &q, 1);
}

static void seq_repr(jctx *c, jbuf *b, jv v) {
    bool tuple = v.l->tuple;
    jb_puts(c, b, tuple ? "(" : "[");
    for (size_t i = 0; i < v.l->n; i++) {
        if (i) jb_puts(c, b, ", ");
        jv_repr(c, b, v.l->items[i]);
    }
    if (tuple && v.l->n == 1) jb_puts(c, b, ",");
    jb_puts(c, b, tuple ? ")" : "]");
}

void jv_repr(jctx *c, jbuf *b, jv v) {
    nest_in(c);
    switch ((jtype)v.t) {
    case JV_STR: str_repr(c, b, v.s.p, v.s.n); break;
    case JV_LIST: seq_repr(c, b, v); break;
    case JV_DICT:
        jb_puts(c, b, "{");
        for (size_t i = 0; i < v.d->n; i++) {
            if (i) jb_puts(c, b, ", ");
            jv_repr(c, b, v.d->keys[i]);
            jb_puts(c, b, ": ");
            jv_repr(c, b, v.d->vals[i]);
        }
        jb_puts(c, b, "}");
        break;
    case JV_UNDEF: jb_puts(c, b, "Undefined"); break;
    default: jv_to_str(c, b, v); break;
    }
    nest_out(c);
}

void jv_to_str(jctx *c, jbuf *b, jv v) {
    char tmp[40];
    switch ((jtype)v.t) {
    case JV_UNDEF: break;
    case JV_NONE: jb_puts(c, b, "None"); break;
    case JV_BOOL: jb_puts(c, b, v.b ? "True" : "False"); break;
    case JV_INT: jb_printf(c, b, "%lld", (long long)v.i); break;
    case JV_FLOAT:
        float_repr(v.f, tmp);
        jb_puts(c, b, tmp);
        break;
    case JV_STR: jb_put(c, b, v.s.p, v.s.n); break;
    case JV_LIST:
    case JV_DICT: jv_repr(c, b, v); break;
    case JV_NS:
        jb_puts(c, b, "<Namespace ");
        {
            jv d = {.t = JV_DICT, .d = v.d};
            jv_repr(c, b, d);
        }
        jb_puts(c, b, ">");
        break;
    case JV_MACRO: jb_puts(c, b, "<Macro>"); break;
    case JV_FUNC: jb_puts(c, b, "<built-in function>"); break;
    case JV_LOOP: jb_puts(c, b, "<LoopContext>"); break;
    }
}

jv jv_stringify(jctx *c, jv v) {
    if (v.t == JV_STR) return v;
    jbuf b = {0};
    jv_to_str(c, &b, v);
    jv r = {.t = JV_STR};
    r.s.p = b.p ? b.p : "";
    r.s.n = b.n;
    return r;
}

/* ---- JSON ---- */

static void json_str(jctx *c, jbuf *b, const char *s, size_t n, bool ascii) {
    jb_put(c, b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ascii && ch >= 0x7F) {
            jb_put(c, b, s + run, i - run);
            size_t used;
            uint32_t cp = utf8_decode(s + i, n - i, &used);
            char esc[16];
            if (cp >= 0x10000) { /* a surrogate pair, as Python writes it */
                uint32_t v = cp - 0x10000;
                snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
            } else {
                snprintf(esc, sizeof esc, "\\u%04x", cp);
            }
            jb_puts(c, b, esc);
            i += used - 1;
            run = i + 1;
            continue;
        }
        if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
        jb_put(c, b, s + run, i - run);
        run = i + 1;
        char esc[8];
        switch (ch) {
        case '"': jb_puts(c, b, "\\\""); break;
        case '\\': jb_puts(c, b, "\\\\"); break;
        case '\n': jb_puts(c, b, "\\n"); break;
        case '\r': jb_puts(c, b, "\\r"); break;
        case '\t': jb_puts(c, b, "\\t"); break;
        case '\b': jb_puts(c, b, "\\b"); break;
        case '\f': jb_puts(c, b, "\\f"); break;
        default: snprintf(esc, sizeof esc, "\\u%04x", ch); jb_puts(c, b, esc);
        }
    }
    jb_put(c, b, s + run, n - run);
    jb_put(c, b, "\"", 1);
}

static void json_newline(jctx *c, jbuf *b, const jjson_opts *o, int level) {
    jb_put(c, b, "\n", 1);
    for (int i = 0; i < level; i++) jb_put(c, b, o->indent, o->indent_n);
}

/* json.dumps turns keys that are not strings into strings */
static jv json_key(jctx *c, jv k) {
    char tmp[40];
    switch ((jtype)k.t) {
    case JV_STR: return k;
    case JV_NONE: return jv_str_lit("null");
    case JV_BOOL: return jv_str_lit(k.b ? "true" : "false");
    case JV_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)k.i); return jv_str(c, tmp, strlen(tmp));
    case JV_FLOAT: float_repr(k.f, tmp); return jv_str(c, tmp, strlen(tmp));
    default: jfail(c, JERR_RUNTIME, "tojson: keys must be str, int, float, bool or None, not %s", jv_type_name(k));
    }
}

static void sort_by_key(jv *keys, jv *vals, size_t n) {
    for (size_t i = 1; i < n; i++) { /* insertion sort: stable, and dicts in templates are small */
        jv k = keys[i], v = vals[i];
        size_t j = i;
        while (j > 0) {
            jv p = keys[j - 1];
            size_t m = p.s.n < k.s.n ? p.s.n : k.s.n;
            int r = memcmp(p.s.p, k.s.p, m);
            if (r < 0 || (r == 0 && p.s.n <= k.s.n)) break;
            keys[j] = keys[j - 1];
            vals[j] = vals[j - 1];
            j--;
        }
        keys[j] = k;
        vals[j] = v;
    }
}

void jv_to_json(jctx *c, jbuf *b, jv v, const jjson_opts *o, int level) {
    char tmp[40];
    switch ((jtype)v.t) {
    case JV_NONE: jb_puts(c, b, "null"); return;
    case JV_BOOL: jb_puts(c, b, v.b ? "true" : "false"); return;
    case JV_INT: jb_printf(c, b, "%lld", (long long)v.i); return;
    case JV_FLOAT:
        if (isnan(v.f)) jb_puts(c, b, "NaN");
        else if (isinf(v.f)) jb_puts(c, b, v.f < 0 ? "-Infinity" : "Infinity");
        else {
            float_repr(v.f, tmp);
            jb_puts(c, b, tmp);
        }
        return;
    case JV_STR: json_str(c, b, v.s.p, v.s.n, o->ensure_ascii); return;
    case JV_LIST:
        if (v.l->n == 0) {
            jb_puts(c, b, "[]");
            return;
        }
        jb_puts(c, b, "[");
        for (size_t i = 0; i < v.l->n; i++) {
            if (i) jb_puts(c, b, o->item_sep);
            if (o->indent) json_newline(c, b, o, level + 1);
            nest_in(c);
            jv_to_json(c, b, v.l->items[i], o, level + 1);
            nest_out(c);
        }
        if (o->indent) json_newline(c, b, o, level);
        jb_puts(c, b, "]");
        return;
    case JV_DICT: {
        if (v.d->n == 0) {
            jb_puts(c, b, "{}");
            return;
        }
        size_t n = v.d->n;
        jv *keys = ja_alloc(&c->arena, n * sizeof(jv)), *vals = ja_alloc(&c->arena, n * sizeof(jv));
        for (size_t i = 0; i < n; i++) {
            keys[i] = json_key(c, v.d->keys[i]);
            vals[i] = v.d->vals[i];
        }
        if (o->sort_keys) sort_by_key(keys, vals, n);
        jb_puts(c, b, "{");
        for (size_t i = 0; i < n; i++) {
            if (i) jb_puts(c, b, o->item_sep);
            if (o->indent) json_newline(c, b, o, level + 1);
            json_str(c, b, keys[i].s.p, keys[i].s.n, o->ensure_ascii);
            jb_puts(c, b, o->key_sep);
            nest_in(c);
            jv_to_json(c, b, vals[i], o, level + 1);
            nest_out(c);
        }
        if (o->indent) json_newline(c, b, o, level);
        jb_puts(c, b, "}");
        return;
    }
    default:
        jfail(c, JERR_RUNTIME, "tojson: Object of type %s is not JSON serializable",
              v.t == JV_UNDEF ? "Undefined" : jv_type_name(v));
    }
}

jv jv_from_json(jctx *c, const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_NULL: return jv_none();
    case JSON_TRUE: return jv_bool(true);
    case JSON_FALSE: return jv_bool(false);
    case JSON_INTEGER: return jv_int((int64_t)json_integer_value(j));
    case JSON_REAL: return jv_float(json_real_value(j));
    case JSON_STRING: return jv_str(c, json_string_value(j), json_string_length(j));
    case JSON_ARRAY: {
        jv l = jv_list(c, json_array_size(j));
        for (size_t i = 0; i < l.l->n; i++) l.l->items[i] = jv_from_json(c, json_array_get(j, i));
        return l;
    }
    case JSON_OBJECT: {
        jv d = jv_dict(c);
        const char *k;
        json_t *val;
        void *tmp;
        json_object_foreach_safe((json_t *)j, tmp, k, val) {
            jdict_set(c, d.d, jv_str(c, k, json_object_iter_key_len(json_object_key_to_iter(k))), jv_from_json(c, val));
        }
        return d;
    }
    }
    return jv_none();
}
