/* jinja_builtins.c — what templates call: jinja2's filters and tests, Python's str/dict/list methods, the
 * globals transformers gives (raise_exception, strftime_now, range, namespace, dict), attribute and item access. */
#include <ctype.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <wctype.h>

#include "jinja.h"

jv jinja_iterate(jctx *c, jv v); /* jinja_eval.c */

enum builtin_id {
    F_RANGE = 1,
    F_NAMESPACE,
    F_DICT,
    F_RAISE,
    F_STRFTIME,
    F_CYCLE,
    S_STARTSWITH,
    S_ENDSWITH,
    S_SPLIT,
    S_RSPLIT,
    S_STRIP,
    S_LSTRIP,
    S_RSTRIP,
    S_UPPER,
    S_LOWER,
    S_REPLACE,
    S_FIND,
    S_RFIND,
    S_COUNT,
    S_JOIN,
    S_TITLE,
    S_CAPITALIZE,
    S_FORMAT,
    S_SPLITLINES,
    S_ISDIGIT,
    S_ISALPHA,
    S_ISSPACE,
    S_ISALNUM,
    S_ISUPPER,
    S_ISLOWER,
    S_INDEX,
    S_RINDEX,
    S_REMOVEPREFIX,
    S_REMOVESUFFIX,
    S_PARTITION,
    S_RPARTITION,
    S_LJUST,
    S_RJUST,
    S_CENTER,
    S_ZFILL,
    S_SWAPCASE,
    S_CASEFOLD,
    S_ISASCII,
    D_ITEMS,
    D_KEYS,
    D_VALUES,
    D_GET,
    L_INDEX,
    L_COUNT,
};

int jinja_loop_cycle_id(void);
int jinja_loop_cycle_id(void) { return F_CYCLE; }

#define NAME_IS(s, n, lit) ((n) == sizeof(lit) - 1 && !memcmp((s), (lit), (n)))

/* ---- arguments ---- */

jv jarg(const jargs *a, size_t i, const char *name, jv dflt) {
    if (i < a->n_pos) return a->pos[i];
    if (name)
        for (size_t k = 0; k < a->n_kw; k++)
            if (a->kw_n[k] == strlen(name) && !memcmp(a->kw[k], name, a->kw_n[k])) return a->kw_vals[k];
    return dflt;
}

void jargs_check(jctx *c, const jargs *a, size_t max_pos, const char *const *names, const char *what) {
    if (a->n_pos > max_pos)
        jfail(c, JERR_RUNTIME, "%s takes at most %zu arguments (%zu given)", what, max_pos, a->n_pos);
    for (size_t k = 0; k < a->n_kw; k++) {
        bool ok = false;
        for (size_t i = 0; names && names[i] && !ok; i++)
            ok = a->kw_n[k] == strlen(names[i]) && !memcmp(a->kw[k], names[i], a->kw_n[k]);
        if (!ok)
            jfail(c, JERR_RUNTIME, "%s got an unexpected keyword argument '%.*s'", what, (int)a->kw_n[k], a->kw[k]);
    }
}

static jv need_str(jctx *c, jv v, const char *what) {
    if (v.t == JV_UNDEF && v.s.p) jfail(c, JERR_RUNTIME, "%s", v.s.p);
    if (v.t != JV_STR) jfail(c, JERR_RUNTIME, "%s: expected a string, not %s", what, jv_type_name(v));
    return v;
}
static int64_t need_int(jctx *c, jv v, const char *what) {
    if (v.t == JV_BOOL) return v.b;
    if (v.t != JV_INT) jfail(c, JERR_RUNTIME, "%s: expected an integer, not %s", what, jv_type_name(v));
    return v.i;
}

/* ---- case mapping (C.UTF-8's simple mappings; Python's full ones differ only for a few letters such as ß) ---- */

static locale_t utf8_locale;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;
static void utf8_locale_init(void) { utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0); }

static uint32_t cp_upper(uint32_t cp) {
    if (cp < 0x80) return (uint32_t)toupper((int)cp);
    pthread_once(&utf8_once, utf8_locale_init);
    return utf8_locale ? (uint32_t)towupper_l((wint_t)cp, utf8_locale) : cp;
}
static uint32_t cp_lower(uint32_t cp) {
    if (cp < 0x80) return (uint32_t)tolower((int)cp);
    pthread_once(&utf8_once, utf8_locale_init);
    return utf8_locale ? (uint32_t)towlower_l((wint_t)cp, utf8_locale) : cp;
}
static bool cp_cased(uint32_t cp) {
    return cp_upper(cp) != cp || cp_lower(cp) != cp || cp == 0xDF || (cp >= 0xFB00 && cp <= 0xFB06) || cp == 0x149;
}
static bool cp_alnum(uint32_t cp) {
    if (cp < 0x80) return isalnum((int)cp);
    pthread_once(&utf8_once, utf8_locale_init);
    return utf8_locale ? iswalnum_l((wint_t)cp, utf8_locale) : !py_isspace(cp);
}

typedef enum { CASE_UPPER, CASE_LOWER, CASE_TITLE, CASE_CAPITALIZE, CASE_JINJA_TITLE, CASE_SWAP } case_mode;

static jv str_case(jctx *c, jv s, case_mode mode) {
    jbuf b = {0};
    bool prev_cased = false, first = true, word_start = true;
    for (size_t i = 0; i < s.s.n;) {
        size_t used;
        uint32_t cp = utf8_decode(s.s.p + i, s.s.n - i, &used), out;
        bool up;
        switch (mode) {
        case CASE_UPPER: up = true; break;
        case CASE_LOWER: up = false; break;
        case CASE_TITLE: up = !prev_cased; break;
        case CASE_CAPITALIZE: up = first; break;
        case CASE_SWAP: up = cp_lower(cp) == cp; break;
        default: /* jinja2's title: after '-', whitespace or an opening bracket */
            up = word_start;
            word_start = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || py_isspace(cp);
            break;
        }
        static const struct {
            uint32_t cp;
            const char *upper;
        } FULL_UPPER[] = {{0xDF, "SS"},    {0xFB00, "FF"}, {0xFB01, "FI"}, {0xFB02, "FL"},      {0xFB03, "FFI"},
                          {0xFB04, "FFL"}, {0xFB05, "ST"}, {0xFB06, "ST"}, {0x149, "\xCA\xBCN"}};
        static const struct {
            uint32_t cp;
            const char *title;
        } FULL_TITLE[] = {{0xDF, "Ss"},    {0xFB00, "Ff"}, {0xFB01, "Fi"}, {0xFB02, "Fl"},      {0xFB03, "Ffi"},
                          {0xFB04, "Ffl"}, {0xFB05, "St"}, {0xFB06, "St"}, {0x149, "\xCA\xBCN"}};
        const char *full = NULL;
        bool whole = mode == CASE_UPPER || mode == CASE_SWAP; /* title case maps these letters otherwise */
        for (size_t k = 0; up && k < sizeof FULL_UPPER / sizeof *FULL_UPPER; k++)
            if (FULL_UPPER[k].cp == cp) full = whole ? FULL_UPPER[k].upper : FULL_TITLE[k].title;
        if (full) {
            jb_puts(c, &b, full);
        } else if (!up && cp == 0x130) { /* İ lowers to i and a combining dot above */
            jb_puts(c, &b, "i\xCC\x87");
        } else {
            out = up ? cp_upper(cp) : cp_lower(cp);
            char u[4];
            jb_put(c, &b, u, utf8_encode(out, u));
        }
        prev_cased = cp_cased(cp);
        first = false;
        i += used;
    }
    return jv_str(c, b.p ? b.p : "", b.n);
}

/* ---- string helpers ---- */

static bool in_chars(uint32_t cp, jv chars) {
    if (chars.t != JV_STR) return py_isspace(cp);
    for (size_t i = 0; i < chars.s.n;) {
        size_t used;
        if (utf8_decode(chars.s.p + i, chars.s.n - i, &used) == cp) return true;
        i += used;
    }
    return false;
}

static jv str_strip(jctx *c, jv s, jv chars, bool left, bool right) {
    if (chars.t != JV_STR && chars.t != JV_NONE && chars.t != JV_UNDEF)
        jfail(c, JERR_RUNTIME, "strip arg must be None or str");
    size_t a = 0, b = s.s.n;
    while (left && a < b) {
        size_t used;
        uint32_t cp = utf8_decode(s.s.p + a, b - a, &used);
        if (!in_chars(cp, chars)) break;
        a += used;
    }
    while (right && b > a) {
        size_t k = b - 1;
        while (k > a && ((unsigned char)s.s.p[k] & 0xC0) == 0x80) k--;
        size_t used;
        if (!in_chars(utf8_decode(s.s.p + k, b - k, &used), chars)) break;
        b = k;
    }
    return jv_str(c, s.s.p + a, b - a);
}

static jv list_push(jctx *c, jv l, jv item) { /* for building lists of unknown length */
    if (l.l->n % 16 == 0) {
        jv *items = ja_alloc(&c->arena, (l.l->n + 16) * sizeof(jv));
        if (l.l->n) memcpy(items, l.l->items, l.l->n * sizeof(jv));
        l.l->items = items;
    }
    l.l->items[l.l->n++] = item;
    return l;
}

static jv str_split(jctx *c, jv s, jv sep, int64_t maxsplit, bool from_right) {
    jv out = jv_list(c, 0);
    const char *p = s.s.p;
    size_t n = s.s.n;
    if (sep.t == JV_NONE || sep.t == JV_UNDEF) {
        /* runs of whitespace; empty ends dropped */
        jv parts = jv_list(c, 0);
        if (!from_right) {
            size_t i = 0;
            int64_t done = 0;
            for (;;) {
                while (i < n) {
                    size_t used;
                    if (!py_isspace(utf8_decode(p + i, n - i, &used))) break;
                    i += used;
                }
                if (i >= n) break;
                if (maxsplit >= 0 && done == maxsplit) { /* the rest as it is */
                    parts = list_push(c, parts, jv_str(c, p + i, n - i));
                    break;
                }
                size_t j = i;
                while (j < n) {
                    size_t used;
                    if (py_isspace(utf8_decode(p + j, n - j, &used))) break;
                    j += used;
                }
                parts = list_push(c, parts, jv_str(c, p + i, j - i));
                done++;
                i = j;
            }
            return parts;
        }
        /* rsplit(None): walk from the end */
        size_t e = n;
        int64_t done = 0;
        jv rev = jv_list(c, 0);
        for (;;) {
            while (e > 0) {
                size_t k = e - 1;
                while (k > 0 && ((unsigned char)p[k] & 0xC0) == 0x80) k--;
                size_t used;
                if (!py_isspace(utf8_decode(p + k, e - k, &used))) break;
                e = k;
            }
            if (e == 0) break;
            if (maxsplit >= 0 && done == maxsplit) {
                rev = list_push(c, rev, jv_str(c, p, e));
                break;
            }
            size_t b = e;
            while (b > 0) {
                size_t k = b - 1;
                while (k > 0 && ((unsigned char)p[k] & 0xC0) == 0x80) k--;
                size_t used;
                if (py_isspace(utf8_decode(p + k, b - k, &used))) break;
                b = k;
            }
            rev = list_push(c, rev, jv_str(c, p + b, e - b));
            done++;
            e = b;
        }
        for (size_t i = rev.l->n; i-- > 0;) out = list_push(c, out, rev.l->items[i]);
        return out;
    }
    need_str(c, sep, "split");
    if (sep.s.n == 0) jfail(c, JERR_RUNTIME, "empty separator");
    if (!from_right) {
        size_t i = 0;
        int64_t done = 0;
        for (;;) {
            const char *hit = maxsplit >= 0 && done >= maxsplit ? NULL : memmem(p + i, n - i, sep.s.p, sep.s.n);
            if (!hit) {
                out = list_push(c, out, jv_str(c, p + i, n - i));
                return out;
            }
            out = list_push(c, out, jv_str(c, p + i, (size_t)(hit - (p + i))));
            i = (size_t)(hit - p) + sep.s.n;
            done++;
        }
    }
    jv rev = jv_list(c, 0);
    size_t e = n;
    int64_t done = 0;
    for (;;) {
        const char *hit = NULL;
        if (!(maxsplit >= 0 && done >= maxsplit) && e >= sep.s.n)
            for (size_t k = e - sep.s.n + 1; k-- > 0;)
                if (!memcmp(p + k, sep.s.p, sep.s.n)) {
                    hit = p + k;
                    break;
                }
        if (!hit) {
            rev = list_push(c, rev, jv_str(c, p, e));
            break;
        }
        size_t after = (size_t)(hit - p) + sep.s.n;
        rev = list_push(c, rev, jv_str(c, p + after, e - after));
        e = (size_t)(hit - p);
        done++;
    }
    for (size_t i = rev.l->n; i-- > 0;) out = list_push(c, out, rev.l->items[i]);
    return out;
}

static jv str_replace(jctx *c, jv s, jv old, jv new_, int64_t count) {
    need_str(c, old, "replace");
    need_str(c, new_, "replace");
    jbuf b = {0};
    int64_t done = 0;
    if (old.s.n == 0) { /* Python inserts new before every character and at the end */
        for (size_t i = 0; i <= s.s.n;) {
            if (count < 0 || done < count) {
                jb_put(c, &b, new_.s.p, new_.s.n);
                done++;
            }
            if (i == s.s.n) break;
            size_t used;
            utf8_decode(s.s.p + i, s.s.n - i, &used);
            jb_put(c, &b, s.s.p + i, used);
            i += used;
        }
        return jv_str(c, b.p ? b.p : "", b.n);
    }
    size_t i = 0;
    for (;;) {
        const char *hit = count >= 0 && done >= count ? NULL : memmem(s.s.p + i, s.s.n - i, old.s.p, old.s.n);
        if (!hit) break;
        jb_put(c, &b, s.s.p + i, (size_t)(hit - s.s.p) - i);
        jb_put(c, &b, new_.s.p, new_.s.n);
        i = (size_t)(hit - s.s.p) + old.s.n;
        done++;
    }
    jb_put(c, &b, s.s.p + i, s.s.n - i);
    return jv_str(c, b.p ? b.p : "", b.n);
}

static bool starts_or_ends(jctx *c, jv s, jv affix, bool ends) {
    if (affix.t == JV_LIST && affix.l->tuple) {
        for (size_t i = 0; i < affix.l->n; i++)
            if (starts_or_ends(c, s, affix.l->items[i], ends)) return true;
        return false;
    }
    if (affix.t != JV_STR)
        jfail(c, JERR_RUNTIME, "%s first arg must be str or a tuple of str, not %s", ends ? "endswith" : "startswith",
              jv_type_name(affix));
    if (affix.s.n > s.s.n) return false;
    return !memcmp(s.s.p + (ends ? s.s.n - affix.s.n : 0), affix.s.p, affix.s.n);
}

/* str.format with {} / {0} / {name} fields and !r/!s; format specs are not supported. */
static jv str_format(jctx *c, jv fmt, const jargs *a) {
    jbuf b = {0};
    size_t auto_i = 0;
    const char *p = fmt.s.p, *e = p + fmt.s.n;
    while (p < e) {
        if (*p == '{' && p + 1 < e && p[1] == '{') {
            jb_put(c, &b, "{", 1);
            p += 2;
            continue;
        }
        if (*p == '}' && p + 1 < e && p[1] == '}') {
            jb_put(c, &b, "}", 1);
            p += 2;
            continue;
        }
        if (*p == '}') jfail(c, JERR_RUNTIME, "Single '}' encountered in format string");
        if (*p != '{') {
            jb_put(c, &b, p++, 1);
            continue;
        }
        const char *close = memchr(p, '}', (size_t)(e - p));
        if (!close) jfail(c, JERR_RUNTIME, "Single '{' encountered in format string");
        const char *f = p + 1;
        size_t fn = (size_t)(close - f);
        char conv = 0;
        const char *bang = memchr(f, '!', fn);
        if (memchr(f, ':', fn)) jfail(c, JERR_RUNTIME, "format specs in str.format are not supported");
        if (bang) {
            conv = bang + 1 < close ? bang[1] : 0;
            fn = (size_t)(bang - f);
        }
        jv v;
        if (fn == 0) {
            if (auto_i >= a->n_pos) jfail(c, JERR_RUNTIME, "Replacement index %zu out of range", auto_i);
            v = a->pos[auto_i++];
        } else if (isdigit((unsigned char)f[0])) {
            size_t idx = (size_t)strtoul(f, NULL, 10);
            if (idx >= a->n_pos) jfail(c, JERR_RUNTIME, "Replacement index %zu out of range", idx);
            v = a->pos[idx];
        } else {
            bool found = false;
            for (size_t k = 0; k < a->n_kw && !found; k++)
                if (a->kw_n[k] == fn && !memcmp(a->kw[k], f, fn)) {
                    v = a->kw_vals[k];
                    found = true;
                }
            if (!found) jfail(c, JERR_RUNTIME, "format: missing argument '%.*s'", (int)fn, f);
        }
        if (conv == 'r') jv_repr(c, &b, v);
        else jv_to_str(c, &b, v);
        p = close + 1;
    }
    return jv_str(c, b.p ? b.p : "", b.n);
}

/* str.splitlines()'s line breaks */
static bool is_linebreak(uint32_t cp) {
    return cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C || cp == 0x1D || cp == 0x1E ||
           cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}
static jv str_splitlines(jctx *c, jv s) {
    jv out = jv_list(c, 0);
    size_t start = 0;
    for (size_t i = 0; i < s.s.n;) {
        size_t used;
        uint32_t cp = utf8_decode(s.s.p + i, s.s.n - i, &used);
        if (is_linebreak(cp)) {
            out = list_push(c, out, jv_str(c, s.s.p + start, i - start));
            i += used;
            if (cp == '\r' && i < s.s.n && s.s.p[i] == '\n') i++;
            start = i;
        } else {
            i += used;
        }
    }
    if (start < s.s.n) out = list_push(c, out, jv_str(c, s.s.p + start, s.s.n - start));
    return out;
}

static int64_t str_find(jv s, jv sub, bool from_right) {
    if (sub.s.n > s.s.n) return -1;
    size_t at = (size_t)-1;
    if (!from_right) {
        const char *hit = sub.s.n ? memmem(s.s.p, s.s.n, sub.s.p, sub.s.n) : s.s.p;
        if (hit) at = (size_t)(hit - s.s.p);
    } else {
        for (size_t k = s.s.n - sub.s.n + 1; k-- > 0;)
            if (!memcmp(s.s.p + k, sub.s.p, sub.s.n)) {
                at = k;
                break;
            }
    }
    return at == (size_t)-1 ? -1 : (int64_t)utf8_len(s.s.p, at);
}

static bool str_all(jv s, int kind) { /* isdigit, isalpha, isspace, isalnum (ASCII and what C.UTF-8 knows) */
    if (s.s.n == 0) return false;
    for (size_t i = 0; i < s.s.n;) {
        size_t used;
        uint32_t cp = utf8_decode(s.s.p + i, s.s.n - i, &used);
        bool ok;
        switch (kind) {
        case 0: ok = cp >= '0' && cp <= '9'; break;
        case 1: ok = cp_alnum(cp) && !(cp >= '0' && cp <= '9'); break;
        case 2: ok = py_isspace(cp); break;
        default: ok = cp_alnum(cp); break;
        }
        if (!ok) return false;
        i += used;
    }
    return true;
}

static bool str_cased_all(jv s, bool upper) { /* isupper / islower */
    bool any = false;
    for (size_t i = 0; i < s.s.n;) {
        size_t used;
        uint32_t cp = utf8_decode(s.s.p + i, s.s.n - i, &used);
        if (cp_cased(cp)) {
            if (upper ? cp_lower(cp) == cp : cp_upper(cp) == cp) return false;
            any = true;
        }
        i += used;
    }
    return any;
}

/* ---- printf-style formatting ---- */

/* Pads s (code points) to width: left-justified or right, with spaces. */
static void put_padded(jctx *c, jbuf *b, const char *s, size_t n, int64_t width, bool left) {
    int64_t len = (int64_t)utf8_len(s, n);
    if (!left)
        for (int64_t i = len; i < width; i++) jb_put(c, b, " ", 1);
    jb_put(c, b, s, n);
    if (left)
        for (int64_t i = len; i < width; i++) jb_put(c, b, " ", 1);
}

jv jinja_percent_format(jctx *c, jv fmt, jv args) {
    jbuf b = {0};
    bool tuple = args.t == JV_LIST && args.l->tuple;
    /* a mapping, or any object with items that is not a tuple or a string, may go unused (Python's rule) */
    bool mapping_like = args.t == JV_DICT || (args.t == JV_LIST && !tuple);
    size_t n_args = tuple ? args.l->n : 1, next = 0;
    const char *p = fmt.s.p, *e = p + fmt.s.n;
    while (p < e) {
        const char *pct = memchr(p, '%', (size_t)(e - p));
        if (!pct) {
            jb_put(c, &b, p, (size_t)(e - p));
            break;
        }
        jb_put(c, &b, p, (size_t)(pct - p));
        p = pct + 1;
        if (p >= e) jfail(c, JERR_RUNTIME, "incomplete format");
        jv v = {0};
        bool have = false;
        if (*p == '(') {
            const char *close = memchr(p, ')', (size_t)(e - p));
            if (!close) jfail(c, JERR_RUNTIME, "incomplete format key");
            if (args.t != JV_DICT) jfail(c, JERR_RUNTIME, "format requires a mapping");
            if (!jdict_get(c, args.d, jv_str(c, p + 1, (size_t)(close - p - 1)), &v))
                jfail(c, JERR_RUNTIME, "KeyError: '%.*s'", (int)(close - p - 1), p + 1);
            have = true;
            p = close + 1;
        }
        bool left = false, zero = false, space = false, plus = false, alt = false;
        for (; p < e && strchr("-0 +#", *p); p++) {
            if (*p == '-') left = true;
            else if (*p == '0') zero = true;
            else if (*p == ' ') space = true;
            else if (*p == '+') plus = true;
            else alt = true;
        }
        int64_t width = -1, prec = -1;
        for (int k = 0; k < 2; k++) {
            int64_t *dst = k == 0 ? &width : &prec;
            if (k == 1) {
                if (p < e && *p == '.') {
                    p++;
                    prec = 0;
                } else break;
            }
            if (p < e && *p == '*') {
                if (next >= n_args) jfail(c, JERR_RUNTIME, "not enough arguments for format string");
                *dst = need_int(c, tuple ? args.l->items[next++] : args, "* width");
                p++;
            } else {
                for (; p < e && *p >= '0' && *p <= '9'; p++) {
                    *dst = (*dst < 0 ? 0 : *dst) * 10 + (*p - '0');
                    if (*dst > 4096) jfail(c, JERR_RUNTIME, "a format width or precision above 4096");
                }
            }
        }
        while (p < e && (*p == 'h' || *p == 'l' || *p == 'L')) p++;
        if (p >= e) jfail(c, JERR_RUNTIME, "incomplete format");
        char conv = *p++;
        if (conv == '%') {
            jb_put(c, &b, "%", 1);
            continue;
        }
        if (!have) {
            if (tuple) {
                if (next >= n_args) jfail(c, JERR_RUNTIME, "not enough arguments for format string");
                v = args.l->items[next++];
            } else {
                if (next >= 1) jfail(c, JERR_RUNTIME, "not enough arguments for format string");
                v = args;
                next++;
            }
        }
        char spec[32], tmp[4200];
        size_t k = 0;
        spec[k++] = '%';
        if (left) spec[k++] = '-';
        if (zero && !left) spec[k++] = '0';
        if (plus) spec[k++] = '+';
        else if (space) spec[k++] = ' ';
        if (alt && conv != 'o') spec[k++] = '#';
        spec[k] = '\0';
        switch (conv) {
        case 's':
        case 'r':
        case 'a': {
            jbuf sb = {0};
            if (conv == 's') jv_to_str(c, &sb, v);
            else jv_repr(c, &sb, v);
            size_t n = sb.n;
            if (prec >= 0) n = utf8_offset(sb.p ? sb.p : "", sb.n, (size_t)prec);
            put_padded(c, &b, sb.p ? sb.p : "", n, width, left);
            break;
        }
        case 'c': {
            char u[4];
            size_t n;
            if (v.t == JV_INT && v.i >= 0 && v.i <= 0x10FFFF && !(v.i >= 0xD800 && v.i <= 0xDFFF))
                n = utf8_encode((uint32_t)v.i, u);
            else if (v.t == JV_STR && utf8_len(v.s.p, v.s.n) == 1) {
                n = v.s.n;
                memcpy(u, v.s.p, n);
            } else jfail(c, JERR_RUNTIME, "%%c requires an int or a unicode character");
            put_padded(c, &b, u, n, width, left);
            break;
        }
        case 'd':
        case 'i':
        case 'u':
        case 'o':
        case 'x':
        case 'X': {
            int64_t x;
            if (v.t == JV_INT || v.t == JV_BOOL) x = v.t == JV_INT ? v.i : v.b;
            else if (v.t == JV_FLOAT && (conv == 'd' || conv == 'i' || conv == 'u') && isfinite(v.f) &&
                     fabs(v.f) < 9.2e18)
                x = (int64_t)v.f;
            else
                jfail(c, JERR_RUNTIME, "%%%c format: %s is required, not %s", conv,
                      conv == 'd' || conv == 'i' || conv == 'u' ? "a real number" : "an integer", jv_type_name(v));
            char digits[80];
            uint64_t mag = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
            if (conv == 'o') snprintf(digits, sizeof digits, "%s%llo", alt ? "0o" : "", (unsigned long long)mag);
            else if (conv == 'x' || conv == 'X')
                snprintf(digits, sizeof digits, conv == 'x' ? "%s%llx" : "%s%llX",
                         alt ? (conv == 'x' ? "0x" : "0X") : "", (unsigned long long)mag);
            else snprintf(digits, sizeof digits, "%llu", (unsigned long long)mag);
            const char *sign = x < 0 ? "-" : plus ? "+" : space ? " " : "";
            size_t body = strlen(sign) + strlen(digits);
            int64_t prec_pad = prec > (int64_t)strlen(digits) ? prec - (int64_t)strlen(digits) : 0;
            int64_t pad = width > (int64_t)body + prec_pad ? width - (int64_t)body - prec_pad : 0;
            jbuf nb = {0};
            if (!left && !zero)
                for (int64_t i = 0; i < pad; i++) jb_put(c, &nb, " ", 1);
            jb_puts(c, &nb, sign);
            size_t pre = alt && conv != 'd' && conv != 'i' && conv != 'u' ? 2 : 0;
            jb_put(c, &nb, digits, pre);
            if (!left && zero)
                for (int64_t i = 0; i < pad; i++) jb_put(c, &nb, "0", 1);
            for (int64_t i = 0; i < prec_pad; i++) jb_put(c, &nb, "0", 1);
            jb_puts(c, &nb, digits + pre);
            if (left)
                for (int64_t i = 0; i < pad; i++) jb_put(c, &nb, " ", 1);
            jb_put(c, &b, nb.p, nb.n);
            break;
        }
        case 'e':
        case 'E':
        case 'f':
        case 'F':
        case 'g':
        case 'G': {
            double f;
            if (v.t == JV_FLOAT) f = v.f;
            else if (v.t == JV_INT || v.t == JV_BOOL) f = (double)(v.t == JV_INT ? v.i : v.b);
            else jfail(c, JERR_RUNTIME, "must be real number, not %s", jv_type_name(v));
            snprintf(spec + k, sizeof spec - k, "%s*.*%c", "", conv);
            int n = snprintf(tmp, sizeof tmp, spec, (int)(width < 0 ? 0 : width), (int)(prec < 0 ? 6 : prec), f);
            if (n < 0 || (size_t)n >= sizeof tmp) jfail(c, JERR_RUNTIME, "a formatted number is too long");
            jb_put(c, &b, tmp, (size_t)n);
            break;
        }
        default: jfail(c, JERR_RUNTIME, "unsupported format character '%c'", conv);
        }
    }
    if (!mapping_like && next < n_args) jfail(c, JERR_RUNTIME, "not all arguments converted during string formatting");
    return jv_str(c, b.p ? b.p : "", b.n);
}

/* ---- attribute and item access ---- */

typedef struct method_entry {
    uint8_t type;
    const char *name;
    int id;
} method_entry;

static const method_entry METHODS[] = {
    {JV_STR, "startswith", S_STARTSWITH},
    {JV_STR, "endswith", S_ENDSWITH},
    {JV_STR, "split", S_SPLIT},
    {JV_STR, "rsplit", S_RSPLIT},
    {JV_STR, "strip", S_STRIP},
    {JV_STR, "lstrip", S_LSTRIP},
    {JV_STR, "rstrip", S_RSTRIP},
    {JV_STR, "upper", S_UPPER},
    {JV_STR, "lower", S_LOWER},
    {JV_STR, "replace", S_REPLACE},
    {JV_STR, "find", S_FIND},
    {JV_STR, "rfind", S_RFIND},
    {JV_STR, "count", S_COUNT},
    {JV_STR, "join", S_JOIN},
    {JV_STR, "title", S_TITLE},
    {JV_STR, "capitalize", S_CAPITALIZE},
    {JV_STR, "format", S_FORMAT},
    {JV_STR, "splitlines", S_SPLITLINES},
    {JV_STR, "isdigit", S_ISDIGIT},
    {JV_STR, "isalpha", S_ISALPHA},
    {JV_STR, "isspace", S_ISSPACE},
    {JV_STR, "isalnum", S_ISALNUM},
    {JV_STR, "isupper", S_ISUPPER},
    {JV_STR, "islower", S_ISLOWER},
    {JV_STR, "index", S_INDEX},
    {JV_STR, "rindex", S_RINDEX},
    {JV_STR, "removeprefix", S_REMOVEPREFIX},
    {JV_STR, "removesuffix", S_REMOVESUFFIX},
    {JV_STR, "partition", S_PARTITION},
    {JV_STR, "rpartition", S_RPARTITION},
    {JV_STR, "ljust", S_LJUST},
    {JV_STR, "rjust", S_RJUST},
    {JV_STR, "center", S_CENTER},
    {JV_STR, "zfill", S_ZFILL},
    {JV_STR, "swapcase", S_SWAPCASE},
    {JV_STR, "casefold", S_CASEFOLD},
    {JV_STR, "isascii", S_ISASCII},
    {JV_STR, "isnumeric", S_ISDIGIT},
    {JV_STR, "isdecimal", S_ISDIGIT},
    {JV_DICT, "items", D_ITEMS},
    {JV_DICT, "keys", D_KEYS},
    {JV_DICT, "values", D_VALUES},
    {JV_DICT, "get", D_GET},
    {JV_LIST, "index", L_INDEX},
    {JV_LIST, "count", L_COUNT},
};

static jv bound(jctx *c, int id, jv self) {
    jfunc *f = ja_alloc(&c->arena, sizeof *f);
    f->id = id;
    f->self = self;
    return (jv){.t = JV_FUNC, .fn = f};
}

static jv method_of(jctx *c, jv obj, const char *name, size_t n) {
    for (size_t i = 0; i < sizeof METHODS / sizeof *METHODS; i++)
        if (METHODS[i].type == obj.t && strlen(METHODS[i].name) == n && !memcmp(METHODS[i].name, name, n))
            return bound(c, METHODS[i].id, obj);
    return jv_undef(NULL);
}

static const char *object_desc(jv obj) { /* jinja2's object_type_repr */
    switch ((jtype)obj.t) {
    case JV_NONE: return "None";
    case JV_STR: return "'str object'";
    case JV_INT: return "'int object'";
    case JV_FLOAT: return "'float object'";
    case JV_BOOL: return "'bool object'";
    case JV_LIST: return obj.l->tuple ? "'tuple object'" : "'list object'";
    case JV_DICT: return "'dict object'";
    case JV_NS: return "'jinja2.utils.Namespace object'";
    default: return "'object'";
    }
}

static jv no_attr(jctx *c, jv obj, const char *name, size_t n) {
    jbuf b = {0};
    jb_printf(c, &b, "%s has no attribute '%.*s'", object_desc(obj), (int)n, name);
    return jv_undef(b.p);
}

jv jinja_getattr(jctx *c, jv obj, const char *name, size_t n) {
    if (n > 0 && name[0] == '_') return no_attr(c, obj, name, n); /* the sandbox hides private attributes */
    if (obj.t == JV_LOOP) return jinja_loop_attr(c, obj.loop, name, n);
    jv m = method_of(c, obj, name, n);
    if (m.t != JV_UNDEF) return m;
    if (obj.t == JV_DICT || obj.t == JV_NS) {
        jv key = {.t = JV_STR}, v;
        key.s.p = name;
        key.s.n = n;
        if (jdict_get(c, obj.d, key, &v)) return v;
    }
    return no_attr(c, obj, name, n);
}

jv jinja_getitem(jctx *c, jv obj, jv key) {
    switch ((jtype)obj.t) {
    case JV_DICT: {
        jv v;
        if (jdict_get(c, obj.d, key, &v)) return v;
        break;
    }
    case JV_LIST:
    case JV_STR:
        if (key.t == JV_INT || key.t == JV_BOOL) {
            int64_t i = key.t == JV_INT ? key.i : key.b;
            int64_t len = obj.t == JV_LIST ? (int64_t)obj.l->n : (int64_t)utf8_len(obj.s.p, obj.s.n);
            if (i < 0) i += len;
            if (i >= 0 && i < len) {
                if (obj.t == JV_LIST) return obj.l->items[i];
                size_t at = utf8_offset(obj.s.p, obj.s.n, (size_t)i), used;
                utf8_decode(obj.s.p + at, obj.s.n - at, &used);
                return jv_str(c, obj.s.p + at, used);
            }
            jbuf b = {0};
            jb_printf(c, &b, "%s has no element %lld", object_desc(obj), (long long)i);
            return jv_undef(b.p);
        }
        break;
    default: break;
    }
    if (key.t == JV_STR) return jinja_getattr(c, obj, key.s.p, key.s.n);
    jbuf b = {0};
    jb_printf(c, &b, "%s has no element ", object_desc(obj));
    jv_repr(c, &b, key);
    return jv_undef(b.p);
}

/* "a.b.0" as jinja2's attribute getters read it (map, sort, selectattr, ...) */
static jv get_path(jctx *c, jv obj, jv path) {
    if (path.t == JV_INT) return jinja_getitem(c, obj, path);
    need_str(c, path, "attribute");
    const char *p = path.s.p, *e = p + path.s.n;
    while (p <= e) {
        const char *dot = memchr(p, '.', (size_t)(e - p));
        if (!dot) dot = e;
        size_t n = (size_t)(dot - p);
        bool digits = n > 0;
        for (size_t i = 0; i < n; i++) digits &= isdigit((unsigned char)p[i]) != 0;
        if (obj.t == JV_UNDEF) jfail(c, JERR_RUNTIME, "%s", obj.s.p ? obj.s.p : "undefined value");
        if (digits) obj = jinja_getitem(c, obj, jv_int(strtoll(p, NULL, 10)));
        else obj = jinja_getitem(c, obj, jv_str(c, p, n));
        p = dot + 1;
    }
    return obj;
}

/* ---- globals ---- */

jv jinja_global(jctx *c, const char *name, size_t n) {
    static const struct {
        const char *name;
        int id;
    } G[] = {{"range", F_RANGE},
             {"namespace", F_NAMESPACE},
             {"dict", F_DICT},
             {"raise_exception", F_RAISE},
             {"strftime_now", F_STRFTIME}};
    for (size_t i = 0; i < sizeof G / sizeof *G; i++)
        if (strlen(G[i].name) == n && !memcmp(G[i].name, name, n)) return bound(c, G[i].id, jv_none());
    return jv_undef(NULL);
}

static jv call_range(jctx *c, const jargs *a) {
    jargs_check(c, a, 3, NULL, "range");
    if (a->n_pos == 0) jfail(c, JERR_RUNTIME, "range expected at least 1 argument, got 0");
    int64_t start = 0, stop, st = 1;
    if (a->n_pos == 1) stop = need_int(c, a->pos[0], "range");
    else {
        start = need_int(c, a->pos[0], "range");
        stop = need_int(c, a->pos[1], "range");
        if (a->n_pos == 3) st = need_int(c, a->pos[2], "range");
    }
    if (st == 0) jfail(c, JERR_RUNTIME, "range() arg 3 must not be zero");
    __int128 span = st > 0 ? (__int128)stop - start : (__int128)start - stop, step = st > 0 ? st : -(__int128)st;
    __int128 count128 = span > 0 ? (span + step - 1) / step : 0;
    if (count128 > 100000)
        jfail(c, JERR_LIMIT, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    size_t count = (size_t)count128;
    jv l = jv_list(c, count);
    for (size_t i = 0; i < count; i++) l.l->items[i] = jv_int(start + (int64_t)i * st);
    return l;
}

static jv call_strftime(jctx *c, const jargs *a) {
    jargs_check(c, a, 1, NULL, "strftime_now");
    jv fmt = need_str(c, jarg(a, 0, NULL, jv_undef("strftime_now() missing 1 required positional argument")),
                      "strftime_now");
    time_t t = c->now_unix ? (time_t)c->now_unix : time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    char f[256], out[1024];
    if (fmt.s.n >= sizeof f) jfail(c, JERR_RUNTIME, "strftime_now: the format is too long");
    memcpy(f, fmt.s.p, fmt.s.n);
    f[fmt.s.n] = '\0';
    size_t n = strftime(out, sizeof out, f, &tm);
    return jv_str(c, out, n);
}

/* ---- calls of builtins and methods ---- */

static jv dict_items(jctx *c, jv d) {
    jv l = jv_list(c, d.d->n);
    for (size_t i = 0; i < d.d->n; i++) {
        jv pair = jv_list(c, 2);
        pair.l->tuple = true;
        pair.l->items[0] = d.d->keys[i];
        pair.l->items[1] = d.d->vals[i];
        l.l->items[i] = pair;
    }
    return l;
}

jv jinja_call_builtin(jctx *c, const jfunc *fn, const jargs *a) {
    jv self = fn->self;
    static const char *const no_kw[] = {NULL};
    switch (fn->id) {
    case F_RANGE: return call_range(c, a);
    case F_NAMESPACE:
    case F_DICT: {
        jv d = jv_dict(c);
        if (a->n_pos > 1)
            jfail(c, JERR_RUNTIME, "%s expected at most 1 positional argument",
                  fn->id == F_DICT ? "dict" : "namespace");
        if (a->n_pos == 1) {
            jv src = a->pos[0];
            if (src.t == JV_DICT || src.t == JV_NS)
                for (size_t i = 0; i < src.d->n; i++) jdict_set(c, d.d, src.d->keys[i], src.d->vals[i]);
            else if (src.t == JV_LIST)
                for (size_t i = 0; i < src.l->n; i++) {
                    jv kv = src.l->items[i];
                    if (kv.t != JV_LIST || kv.l->n != 2)
                        jfail(c, JERR_RUNTIME, "dictionary update sequence element #%zu has the wrong length", i);
                    jdict_set(c, d.d, kv.l->items[0], kv.l->items[1]);
                }
            else jfail(c, JERR_RUNTIME, "'%s' object is not iterable", jv_type_name(src));
        }
        for (size_t k = 0; k < a->n_kw; k++) jdict_set(c, d.d, jv_str(c, a->kw[k], a->kw_n[k]), a->kw_vals[k]);
        if (fn->id == F_NAMESPACE) d.t = JV_NS;
        return d;
    }
    case F_RAISE: {
        jv msg = jarg(a, 0, "message", jv_str_lit(""));
        jv s = jv_stringify(c, msg);
        jfail(c, JERR_RAISED, "raise_exception: %.*s", (int)(s.s.n > 300 ? 300 : s.s.n), s.s.p);
    }
    case F_STRFTIME: return call_strftime(c, a);
    case F_CYCLE: {
        if (a->n_pos == 0) jfail(c, JERR_RUNTIME, "no items for cycling given");
        return a->pos[self.loop->index0 % a->n_pos];
    }
    default: break;
    }
    if (self.t == JV_STR) {
        jv s = self;
        switch (fn->id) {
        case S_STARTSWITH:
        case S_ENDSWITH:
            jargs_check(c, a, 1, no_kw, fn->id == S_STARTSWITH ? "startswith" : "endswith");
            return jv_bool(starts_or_ends(c, s, jarg(a, 0, NULL, jv_none()), fn->id == S_ENDSWITH));
        case S_SPLIT:
        case S_RSPLIT: {
            static const char *const kw[] = {"sep", "maxsplit", NULL};
            jargs_check(c, a, 2, kw, "split");
            return str_split(c, s, jarg(a, 0, "sep", jv_none()),
                             need_int(c, jarg(a, 1, "maxsplit", jv_int(-1)), "split"), fn->id == S_RSPLIT);
        }
        case S_STRIP: return str_strip(c, s, jarg(a, 0, NULL, jv_none()), true, true);
        case S_LSTRIP: return str_strip(c, s, jarg(a, 0, NULL, jv_none()), true, false);
        case S_RSTRIP: return str_strip(c, s, jarg(a, 0, NULL, jv_none()), false, true);
        case S_UPPER: return str_case(c, s, CASE_UPPER);
        case S_LOWER: return str_case(c, s, CASE_LOWER);
        case S_TITLE: return str_case(c, s, CASE_TITLE);
        case S_CAPITALIZE: return str_case(c, s, CASE_CAPITALIZE);
        case S_REPLACE:
            return str_replace(c, s, jarg(a, 0, "old", jv_none()), jarg(a, 1, "new", jv_none()),
                               need_int(c, jarg(a, 2, "count", jv_int(-1)), "replace"));
        case S_FIND:
        case S_RFIND:
        case S_INDEX: {
            int64_t r = str_find(s, need_str(c, jarg(a, 0, NULL, jv_none()), "find"), fn->id == S_RFIND);
            if (r < 0 && fn->id == S_INDEX) jfail(c, JERR_RUNTIME, "substring not found");
            return jv_int(r);
        }
        case S_COUNT: {
            jv sub = need_str(c, jarg(a, 0, NULL, jv_none()), "count");
            if (sub.s.n == 0) return jv_int((int64_t)utf8_len(s.s.p, s.s.n) + 1);
            int64_t k = 0;
            for (const char *p = s.s.p, *e = s.s.p + s.s.n; (p = memmem(p, (size_t)(e - p), sub.s.p, sub.s.n));
                 p += sub.s.n)
                k++;
            return jv_int(k);
        }
        case S_JOIN: {
            jv items = jinja_iterate(c, jarg(a, 0, NULL, jv_list(c, 0)));
            jbuf b = {0};
            for (size_t i = 0; i < items.l->n; i++) {
                if (items.l->items[i].t != JV_STR)
                    jfail(c, JERR_RUNTIME, "sequence item %zu: expected str instance, %s found", i,
                          jv_type_name(items.l->items[i]));
                if (i) jb_put(c, &b, s.s.p, s.s.n);
                jb_put(c, &b, items.l->items[i].s.p, items.l->items[i].s.n);
            }
            return jv_str(c, b.p ? b.p : "", b.n);
        }
        case S_FORMAT: return str_format(c, s, a);
        case S_SPLITLINES: return str_splitlines(c, s);
        case S_ISDIGIT: return jv_bool(str_all(s, 0));
        case S_ISALPHA: return jv_bool(str_all(s, 1));
        case S_ISSPACE: return jv_bool(str_all(s, 2));
        case S_ISALNUM: return jv_bool(str_all(s, 3));
        case S_ISUPPER: return jv_bool(str_cased_all(s, true));
        case S_ISLOWER: return jv_bool(str_cased_all(s, false));
        case S_ISASCII: {
            for (size_t i = 0; i < s.s.n; i++)
                if ((unsigned char)s.s.p[i] >= 0x80) return jv_bool(false);
            return jv_bool(true);
        }
        case S_SWAPCASE: return str_case(c, s, CASE_SWAP);
        case S_CASEFOLD: return str_case(c, s, CASE_LOWER);
        case S_RINDEX: {
            int64_t r = str_find(s, need_str(c, jarg(a, 0, NULL, jv_none()), "rindex"), true);
            if (r < 0) jfail(c, JERR_RUNTIME, "substring not found");
            return jv_int(r);
        }
        case S_REMOVEPREFIX:
        case S_REMOVESUFFIX: {
            jv x = need_str(c, jarg(a, 0, NULL, jv_none()), "removeprefix");
            bool pre = fn->id == S_REMOVEPREFIX;
            if (x.s.n > s.s.n || memcmp(s.s.p + (pre ? 0 : s.s.n - x.s.n), x.s.p, x.s.n)) return s;
            return jv_str(c, s.s.p + (pre ? x.s.n : 0), s.s.n - x.s.n);
        }
        case S_PARTITION:
        case S_RPARTITION: {
            jv sep = need_str(c, jarg(a, 0, NULL, jv_none()), "partition");
            if (sep.s.n == 0) jfail(c, JERR_RUNTIME, "empty separator");
            int64_t at = str_find(s, sep, fn->id == S_RPARTITION);
            jv r = jv_list(c, 3);
            r.l->tuple = true;
            if (at < 0) {
                r.l->items[0] = fn->id == S_PARTITION ? s : jv_str_lit("");
                r.l->items[1] = jv_str_lit("");
                r.l->items[2] = fn->id == S_PARTITION ? jv_str_lit("") : s;
                return r;
            }
            size_t b = utf8_offset(s.s.p, s.s.n, (size_t)at);
            r.l->items[0] = jv_str(c, s.s.p, b);
            r.l->items[1] = sep;
            r.l->items[2] = jv_str(c, s.s.p + b + sep.s.n, s.s.n - b - sep.s.n);
            return r;
        }
        case S_LJUST:
        case S_RJUST:
        case S_CENTER:
        case S_ZFILL: {
            int64_t width = need_int(c, jarg(a, 0, "width", jv_int(0)), "ljust");
            jv fill = fn->id == S_ZFILL ? jv_str_lit("0")
                                        : need_str(c, jarg(a, 1, "fillchar", jv_str_lit(" ")), "ljust");
            if (utf8_len(fill.s.p, fill.s.n) != 1)
                jfail(c, JERR_RUNTIME, "The fill character must be exactly one character long");
            int64_t len = (int64_t)utf8_len(s.s.p, s.s.n), pad = width - len;
            if (pad <= 0) return s;
            if (pad > 1 << 20) jfail(c, JERR_LIMIT, "a padded string exceeds the sandbox's limit");
            /* CPython's center puts the odd space on the left when the width is odd */
            int64_t left = fn->id == S_RJUST || fn->id == S_ZFILL ? pad
                           : fn->id == S_LJUST                    ? 0
                                                                  : pad / 2 + (pad & width & 1);
            jbuf b = {0};
            size_t body = 0;
            if (fn->id == S_ZFILL && s.s.n && (s.s.p[0] == '-' || s.s.p[0] == '+')) {
                jb_put(c, &b, s.s.p, 1);
                body = 1;
            }
            for (int64_t i = 0; i < left; i++) jb_put(c, &b, fill.s.p, fill.s.n);
            jb_put(c, &b, s.s.p + body, s.s.n - body);
            for (int64_t i = left; i < pad; i++) jb_put(c, &b, fill.s.p, fill.s.n);
            return jv_str(c, b.p, b.n);
        }
        default: break;
        }
    }
    if (self.t == JV_DICT) {
        switch (fn->id) {
        case D_ITEMS: return dict_items(c, self);
        case D_KEYS:
        case D_VALUES: {
            jv l = jv_list(c, self.d->n);
            memcpy(l.l->items, fn->id == D_KEYS ? self.d->keys : self.d->vals, self.d->n * sizeof(jv));
            return l;
        }
        case D_GET: {
            jv v;
            if (jdict_get(c, self.d, jarg(a, 0, NULL, jv_none()), &v)) return v;
            return jarg(a, 1, NULL, jv_none());
        }
        default: break;
        }
    }
    if (self.t == JV_LIST) {
        jv x = jarg(a, 0, NULL, jv_none());
        int64_t k = 0;
        for (size_t i = 0; i < self.l->n; i++)
            if (jv_equal(c, self.l->items[i], x)) {
                if (fn->id == L_INDEX) return jv_int((int64_t)i);
                k++;
            }
        if (fn->id == L_INDEX) jfail(c, JERR_RUNTIME, "value is not in list");
        return jv_int(k);
    }
    jfail(c, JERR_RUNTIME, "internal error: unknown builtin %d", fn->id);
}

/* ---- tests ---- */

static const char *const TESTS[] = {"defined",  "undefined", "none",        "boolean",  "false",       "true",
                                    "integer",  "float",     "number",      "string",   "mapping",     "sequence",
                                    "iterable", "callable",  "odd",         "even",     "divisibleby", "sameas",
                                    "escaped",  "in",        "eq",          "==",       "equalto",     "ne",
                                    "!=",       "lt",        "<",           "lessthan", "le",          "<=",
                                    "gt",       ">",         "greaterthan", "ge",       ">=",          "lower",
                                    "upper",    "filter",    "test",        NULL};

static bool known_filter(const char *name, size_t n);

static bool name_in(const char *const *list, const char *name, size_t n) {
    for (size_t i = 0; list[i]; i++)
        if (strlen(list[i]) == n && !memcmp(list[i], name, n)) return true;
    return false;
}

bool jinja_test(jctx *c, const char *name, size_t n, jv v, const jargs *a, bool *out) {
#define T(lit) NAME_IS(name, n, lit)
    jv arg = jarg(a, 0, NULL, jv_undef(NULL));
    if (T("defined")) *out = v.t != JV_UNDEF;
    else if (T("undefined")) *out = v.t == JV_UNDEF;
    else if (T("none")) *out = v.t == JV_NONE;
    else if (T("boolean")) *out = v.t == JV_BOOL;
    else if (T("false")) *out = v.t == JV_BOOL && !v.b;
    else if (T("true")) *out = v.t == JV_BOOL && v.b;
    else if (T("integer")) *out = v.t == JV_INT;
    else if (T("float")) *out = v.t == JV_FLOAT;
    else if (T("number")) *out = v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL;
    else if (T("string")) *out = v.t == JV_STR;
    else if (T("mapping")) *out = v.t == JV_DICT;
    else if (T("sequence")) *out = v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT || v.t == JV_UNDEF;
    else if (T("iterable")) *out = v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT || v.t == JV_UNDEF;
    else if (T("callable")) *out = jinja_is_callable(v);
    else if (T("odd") || T("even") || T("divisibleby")) {
        /* value % n == (odd: 1, else 0) with Python's modulo; a value that is no number never divides */
        jv d = T("divisibleby") ? arg : jv_int(2);
        if (T("divisibleby") && a->n_pos + a->n_kw == 0)
            jfail(c, JERR_RUNTIME, "test_divisibleby() missing 1 required positional argument: 'num'");
        if (v.t == JV_UNDEF) jfail(c, JERR_RUNTIME, "%s", v.s.p ? v.s.p : "undefined value");
        bool nums = (v.t == JV_INT || v.t == JV_BOOL || v.t == JV_FLOAT) &&
                    (d.t == JV_INT || d.t == JV_BOOL || d.t == JV_FLOAT);
        if (!nums) { /* Python's value % n: string formatting for a str, else a type error */
            if (v.t == JV_STR && ((d.t == JV_LIST && !d.l->tuple) || d.t == JV_DICT)) *out = false;
            else if (v.t == JV_STR) jfail(c, JERR_RUNTIME, "not all arguments converted during string formatting");
            else
                jfail(c, JERR_RUNTIME, "unsupported operand type(s) for %%: '%s' and '%s'", jv_type_name(v),
                      jv_type_name(d));
        } else if (v.t != JV_FLOAT && d.t != JV_FLOAT) {
            int64_t x = v.t == JV_INT ? v.i : v.b, y = d.t == JV_INT ? d.i : d.b;
            if (y == 0) jfail(c, JERR_RUNTIME, "integer division or modulo by zero");
            int64_t m = y == -1 ? 0 : x % y;
            if (m != 0 && ((m < 0) != (y < 0))) m += y;
            *out = T("odd") ? m == 1 : m == 0;
        } else {
            double x = v.t == JV_FLOAT ? v.f : (double)(v.t == JV_INT ? v.i : v.b);
            double y = d.t == JV_FLOAT ? d.f : (double)(d.t == JV_INT ? d.i : d.b);
            if (y == 0.0) jfail(c, JERR_RUNTIME, "float modulo");
            double m = fmod(x, y);
            if (m != 0.0 && ((m < 0) != (y < 0))) m += y;
            *out = T("odd") ? m == 1.0 : m == 0.0;
        }
    } else if (T("sameas")) {
        /* Python's `is`: None, bools, small ints and strings of one Latin-1 character (CPython caches them) are
         * the same object when equal */
        bool small = (v.t == JV_INT && v.i >= -5 && v.i <= 256) ||
                     (v.t == JV_STR &&
                      (v.s.n == 0 || (v.s.n <= 2 && utf8_len(v.s.p, v.s.n) == 1 && (unsigned char)v.s.p[0] < 0xC4)));
        *out = v.t == arg.t && (v.t == JV_NONE || v.t == JV_BOOL || small) && jv_equal(c, v, arg);
    } else if (T("escaped")) *out = false;
    else if (T("in")) {
        jv seq = arg;
        if (seq.t == JV_STR) *out = v.t == JV_STR && memmem(seq.s.p, seq.s.n, v.s.p, v.s.n) != NULL;
        else if (seq.t == JV_LIST || seq.t == JV_DICT) {
            jv items = jinja_iterate(c, seq);
            *out = false;
            for (size_t i = 0; i < items.l->n && !*out; i++) *out = jv_equal(c, v, items.l->items[i]);
        } else if (seq.t == JV_UNDEF) *out = false;
        else jfail(c, JERR_RUNTIME, "argument of type '%s' is not iterable", jv_type_name(seq));
    } else if (T("eq") || T("==") || T("equalto")) *out = jv_equal(c, v, arg);
    else if (T("ne") || T("!=")) *out = !jv_equal(c, v, arg);
    else if (T("lt") || T("<") || T("lessthan")) *out = jv_compare(c, v, arg) < 0;
    else if (T("le") || T("<=")) *out = jv_compare(c, v, arg) <= 0;
    else if (T("gt") || T(">") || T("greaterthan")) *out = jv_compare(c, v, arg) > 0;
    else if (T("ge") || T(">=")) *out = jv_compare(c, v, arg) >= 0;
    else if (T("lower") || T("upper")) {
        jv s = jv_stringify(c, v);
        *out = str_cased_all(s, T("upper"));
    } else if (T("filter")) *out = v.t == JV_STR && known_filter(v.s.p, v.s.n);
    else if (T("test")) *out = v.t == JV_STR && name_in(TESTS, v.s.p, v.s.n);
    else return false;
#undef T
    return true;
}

/* ---- filters ---- */

static const char *const FILTERS[] = {"center",    "format", "abs",         "attr",       "batch",   "capitalize",
                                      "count",     "d",      "default",     "dictsort",   "e",       "escape",
                                      "first",     "float",  "forceescape", "indent",     "int",     "items",
                                      "join",      "last",   "length",      "list",       "lower",   "map",
                                      "max",       "min",    "reject",      "rejectattr", "replace", "reverse",
                                      "round",     "safe",   "select",      "selectattr", "sort",    "string",
                                      "sum",       "title",  "tojson",      "trim",       "unique",  "upper",
                                      "wordcount", NULL};

static bool known_filter(const char *name, size_t n) { return name_in(FILTERS, name, n); }

/* Stable sort of items by keys (merge sort: Python's sorted is stable). */
static void sort_by(jctx *c, jv *items, jv *keys, size_t n, bool reverse, bool eq_first) {
    if (n < 2) return;
    jv *ti = ja_alloc(&c->arena, n * sizeof(jv)), *tk = ja_alloc(&c->arena, n * sizeof(jv));
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                /* attribute keys are compared as one-item lists, as jinja2's multi-attrgetter makes them:
                 * equal keys (undefined ones too) are never ordered */
                int r = eq_first && jv_equal(c, keys[j], keys[i]) ? 0 : jv_compare(c, keys[j], keys[i]);
                bool take_right = reverse ? r > 0 : r < 0;
                if (take_right) {
                    ti[k] = items[j];
                    tk[k++] = keys[j++];
                } else {
                    ti[k] = items[i];
                    tk[k++] = keys[i++];
                }
            }
            while (i < mid) {
                ti[k] = items[i];
                tk[k++] = keys[i++];
            }
            while (j < hi) {
                ti[k] = items[j];
                tk[k++] = keys[j++];
            }
        }
        memcpy(items, ti, n * sizeof(jv));
        memcpy(keys, tk, n * sizeof(jv));
        c->steps += (int64_t)n;
    }
}

static jv sort_key(jctx *c, jv v, bool case_sensitive) {
    if (!case_sensitive && v.t == JV_STR) return str_case(c, v, CASE_LOWER);
    return v;
}

/* select/reject/selectattr/rejectattr: the test named by args from `first` on (none: truthiness). */
static bool select_test(jctx *c, jv v, const jargs *a, size_t first) {
    if (a->n_pos <= first) return jv_truthy(v);
    jv name = need_str(c, a->pos[first], "select");
    jargs rest = {.pos = a->pos + first + 1,
                  .n_pos = a->n_pos - first - 1,
                  .kw = a->kw,
                  .kw_n = a->kw_n,
                  .kw_vals = a->kw_vals,
                  .n_kw = a->n_kw};
    bool r;
    if (!jinja_test(c, name.s.p, name.s.n, v, &rest, &r))
        jfail(c, JERR_RUNTIME, "no test named '%.*s'", (int)name.s.n, name.s.p);
    return r;
}

static jv do_indent(jctx *c, jv s, jv width, bool first, bool blank) {
    jv ind;
    if (width.t == JV_STR) ind = width;
    else {
        int64_t w = need_int(c, width, "indent");
        if (w < 0) w = 0;
        if (w > 4096) jfail(c, JERR_RUNTIME, "indent: width too large");
        char *sp = ja_alloc(&c->arena, (size_t)w + 1);
        memset(sp, ' ', (size_t)w);
        ind = (jv){.t = JV_STR};
        ind.s.p = sp;
        ind.s.n = (size_t)w;
    }
    if (s.t != JV_STR) jfail(c, JERR_RUNTIME, "indent: expected a string, not %s", jv_type_name(s));
    jv text = s;
    jbuf withnl = {0};
    jb_put(c, &withnl, text.s.p, text.s.n);
    jb_put(c, &withnl, "\n", 1);
    jv lines = str_splitlines(c, jv_str(c, withnl.p, withnl.n));
    jbuf b = {0};
    if (first) jb_put(c, &b, ind.s.p, ind.s.n);
    for (size_t i = 0; i < lines.l->n; i++) {
        jv line = lines.l->items[i];
        if (i) {
            jb_put(c, &b, "\n", 1);
            if (blank || line.s.n) jb_put(c, &b, ind.s.p, ind.s.n);
        }
        jb_put(c, &b, line.s.p, line.s.n);
    }
    return jv_str(c, b.p ? b.p : "", b.n);
}

static jv do_escape(jctx *c, jv v) {
    jv s = jv_stringify(c, v);
    jbuf b = {0};
    for (size_t i = 0; i < s.s.n; i++) {
        switch (s.s.p[i]) {
        case '&': jb_puts(c, &b, "&amp;"); break;
        case '<': jb_puts(c, &b, "&lt;"); break;
        case '>': jb_puts(c, &b, "&gt;"); break;
        case '"': jb_puts(c, &b, "&#34;"); break;
        case '\'': jb_puts(c, &b, "&#39;"); break;
        default: jb_put(c, &b, s.s.p + i, 1);
        }
    }
    return jv_str(c, b.p ? b.p : "", b.n);
}

static bool parse_int_str(jv s, int64_t *out) { /* Python's int(str): whitespace, sign, digits with '_' */
    size_t i = 0, n = s.s.n;
    const char *p = s.s.p;
    while (i < n && isspace((unsigned char)p[i])) i++;
    while (n > i && isspace((unsigned char)p[n - 1])) n--;
    bool neg = false;
    if (i < n && (p[i] == '+' || p[i] == '-')) neg = p[i++] == '-';
    if (i >= n) return false;
    uint64_t v = 0;
    bool prev_digit = false;
    for (; i < n; i++) {
        if (p[i] == '_' && prev_digit && i + 1 < n && isdigit((unsigned char)p[i + 1])) {
            prev_digit = false;
            continue;
        }
        if (!isdigit((unsigned char)p[i])) return false;
        if (v > ((uint64_t)INT64_MAX - (uint64_t)(p[i] - '0')) / 10) return false;
        v = v * 10 + (uint64_t)(p[i] - '0');
        prev_digit = true;
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    return true;
}

static bool parse_float_str(jv s, double *out) {
    char buf[128];
    size_t i = 0, n = s.s.n;
    while (i < n && isspace((unsigned char)s.s.p[i])) i++;
    while (n > i && isspace((unsigned char)s.s.p[n - 1])) n--;
    if (n - i == 0 || n - i >= sizeof buf) return false;
    memcpy(buf, s.s.p + i, n - i);
    buf[n - i] = '\0';
    if (strchr(buf, 'x') || strchr(buf, 'X')) return false;
    char *end;
    *out = strtod(buf, &end);
    return *end == '\0';
}

static jv do_round(jctx *c, jv v, int64_t precision, jv method) {
    if (v.t != JV_INT && v.t != JV_FLOAT && v.t != JV_BOOL)
        jfail(c, JERR_RUNTIME, "round: expected a number, not %s", jv_type_name(v));
    const char *m = method.t == JV_STR ? method.s.p : "common";
    size_t mn = method.t == JV_STR ? method.s.n : 6;
    if (!NAME_IS(m, mn, "common") && !NAME_IS(m, mn, "ceil") && !NAME_IS(m, mn, "floor"))
        jfail(c, JERR_RUNTIME, "method must be common, ceil or floor");
    if (NAME_IS(m, mn, "common")) {
        if (v.t != JV_FLOAT) {
            int64_t x = v.t == JV_BOOL ? v.b : v.i;
            if (precision >= 0) return jv_int(x);
            if (precision < -18) return jv_int(0);
            int64_t p10 = 1;
            for (int64_t k = 0; k < -precision; k++) p10 *= 10;
            int64_t q = x / p10, r = x % p10; /* half to even, as Python's round(int, -n) */
            if (r < 0) {
                r += p10;
                q--;
            }
            if (r > p10 - r || (r == p10 - r && (q & 1))) q++;
            int64_t res;
            if (__builtin_mul_overflow(q, p10, &res)) jfail(c, JERR_RUNTIME, "integer overflow");
            return jv_int(res);
        }
        if (!isfinite(v.f) || precision > 300 || precision < -300) return v;
        if (precision < 0) {
            double p10 = pow(10.0, (double)-precision), q = v.f / p10, r = nearbyint(q);
            return jv_float(r * p10);
        }
        char buf[768];                                          /* 309 integer digits and 300 decimals at most */
        snprintf(buf, sizeof buf, "%.*f", (int)precision, v.f); /* correctly rounded, ties to even as Python */
        return jv_float(strtod(buf, NULL));
    }
    double x = v.t == JV_FLOAT ? v.f : (double)(v.t == JV_INT ? v.i : v.b), p10 = pow(10.0, (double)precision);
    double r = NAME_IS(m, mn, "ceil") ? ceil(x * p10) : floor(x * p10);
    return jv_float(r / p10);
}

bool jinja_filter(jctx *c, const char *name, size_t n, jv v, const jargs *a, jv *out) {
#define F(lit) NAME_IS(name, n, lit)
    if (F("safe")) *out = v;
    else if (F("default") || F("d")) {
        jv dflt = jarg(a, 0, "default_value", jv_str_lit(""));
        bool boolean = jv_truthy(jarg(a, 1, "boolean", jv_bool(false)));
        *out = v.t == JV_UNDEF || (boolean && !jv_truthy(v)) ? dflt : v;
    } else if (F("length") || F("count")) {
        switch ((jtype)v.t) {
        case JV_STR: *out = jv_int((int64_t)utf8_len(v.s.p, v.s.n)); break;
        case JV_LIST: *out = jv_int((int64_t)v.l->n); break;
        case JV_DICT:
        case JV_NS: *out = jv_int((int64_t)v.d->n); break;
        case JV_UNDEF: *out = jv_int(0); break;
        default: jfail(c, JERR_RUNTIME, "object of type '%s' has no len()", jv_type_name(v));
        }
    } else if (F("string")) *out = jv_stringify(c, v);
    else if (F("upper")) *out = str_case(c, jv_stringify(c, v), CASE_UPPER);
    else if (F("lower")) *out = str_case(c, jv_stringify(c, v), CASE_LOWER);
    else if (F("title")) *out = str_case(c, jv_stringify(c, v), CASE_JINJA_TITLE);
    else if (F("capitalize")) *out = str_case(c, jv_stringify(c, v), CASE_CAPITALIZE);
    else if (F("trim")) *out = str_strip(c, jv_stringify(c, v), jarg(a, 0, "chars", jv_none()), true, true);
    else if (F("replace")) {
        jv cnt = jarg(a, 2, "count", jv_none());
        *out = str_replace(c, jv_stringify(c, v), jarg(a, 0, "old", jv_none()), jarg(a, 1, "new", jv_none()),
                           cnt.t == JV_NONE ? -1 : need_int(c, cnt, "replace"));
    } else if (F("e") || F("escape") || F("forceescape")) *out = do_escape(c, v);
    else if (F("tojson")) {
        static const char *const kw[] = {"ensure_ascii", "indent", "separators", "sort_keys", NULL};
        jargs_check(c, a, 4, kw, "tojson");
        /* HF's signature: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) */
        jv ensure = jarg(a, 0, "ensure_ascii", jv_bool(false)), indent = jarg(a, 1, "indent", jv_none()),
           seps = jarg(a, 2, "separators", jv_none()), sk = jarg(a, 3, "sort_keys", jv_bool(false));
        jjson_opts o = {.item_sep = ", ",
                        .key_sep = ": ",
                        .sort_keys = jv_truthy(sk),
                        .ensure_ascii = jv_truthy(ensure)};
        if (indent.t == JV_INT || indent.t == JV_BOOL) {
            int64_t w = indent.t == JV_INT ? indent.i : indent.b;
            if (w < 0) w = 0;
            if (w > 64) jfail(c, JERR_RUNTIME, "tojson: indent too large");
            char *sp = ja_alloc(&c->arena, (size_t)w + 1);
            memset(sp, ' ', (size_t)w);
            o.indent = sp;
            o.indent_n = (size_t)w;
        } else if (indent.t == JV_STR) {
            o.indent = indent.s.p;
            o.indent_n = indent.s.n;
        } else if (indent.t != JV_NONE) jfail(c, JERR_RUNTIME, "tojson: indent must be an integer, a string or None");
        if (o.indent) o.item_sep = ",";
        if (seps.t == JV_LIST && seps.l->n == 2 && seps.l->items[0].t == JV_STR && seps.l->items[1].t == JV_STR) {
            o.item_sep = jv_str(c, seps.l->items[0].s.p, seps.l->items[0].s.n).s.p;
            o.key_sep = jv_str(c, seps.l->items[1].s.p, seps.l->items[1].s.n).s.p;
        } else if (seps.t != JV_NONE) jfail(c, JERR_RUNTIME, "tojson: separators must be a pair of strings");
        jbuf b = {0};
        jv_to_json(c, &b, v, &o, 0);
        *out = jv_str(c, b.p ? b.p : "", b.n);
    } else if (F("items")) {
        if (v.t == JV_UNDEF) *out = jv_list(c, 0);
        else if (v.t != JV_DICT) jfail(c, JERR_RUNTIME, "Can only get item pairs from a mapping.");
        else *out = dict_items(c, v);
    } else if (F("list")) {
        jv items = jinja_iterate(c, v);
        *out = jv_list(c, items.l->n);
        if (items.l->n) memcpy(out->l->items, items.l->items, items.l->n * sizeof(jv));
    } else if (F("first") || F("last")) {
        jv items = jinja_iterate(c, v);
        if (items.l->n == 0)
            *out = jv_undef(F("first") ? "No first item, sequence was empty." : "No last item, sequence was empty.");
        else *out = items.l->items[F("first") ? 0 : items.l->n - 1];
    } else if (F("reverse")) {
        if (v.t == JV_STR) {
            jbuf b = {0};
            for (size_t e = v.s.n; e > 0;) {
                size_t k = e - 1;
                while (k > 0 && ((unsigned char)v.s.p[k] & 0xC0) == 0x80) k--;
                jb_put(c, &b, v.s.p + k, e - k);
                e = k;
            }
            *out = jv_str(c, b.p ? b.p : "", b.n);
        } else {
            jv items = jinja_iterate(c, v);
            *out = jv_list(c, items.l->n);
            for (size_t i = 0; i < items.l->n; i++) out->l->items[i] = items.l->items[items.l->n - 1 - i];
        }
    } else if (F("join")) {
        jv sep = jv_stringify(c, jarg(a, 0, "d", jv_str_lit(""))), attr = jarg(a, 1, "attribute", jv_none());
        jv items = jinja_iterate(c, v);
        jbuf b = {0};
        for (size_t i = 0; i < items.l->n; i++) {
            if (i) jb_put(c, &b, sep.s.p, sep.s.n);
            jv it = attr.t == JV_NONE ? items.l->items[i] : get_path(c, items.l->items[i], attr);
            jv_to_str(c, &b, it);
        }
        *out = jv_str(c, b.p ? b.p : "", b.n);
    } else if ((F("int") || F("float")) && v.t == JV_UNDEF) {
        jfail(c, JERR_RUNTIME, "%s", v.s.p ? v.s.p : "undefined value");
    } else if (F("int")) {
        jv dflt = jarg(a, 0, "default", jv_int(0));
        int64_t base = need_int(c, jarg(a, 1, "base", jv_int(10)), "int");
        int64_t i;
        double f;
        if (base != 10) jfail(c, JERR_RUNTIME, "int: only base 10 is supported");
        if (v.t == JV_INT) *out = v;
        else if (v.t == JV_BOOL) *out = jv_int(v.b);
        else if (v.t == JV_FLOAT) *out = isfinite(v.f) && fabs(v.f) < 9.2e18 ? jv_int((int64_t)v.f) : dflt;
        else if (v.t == JV_STR && parse_int_str(v, &i)) *out = jv_int(i);
        else if (v.t == JV_STR && parse_float_str(v, &f) && isfinite(f) && fabs(f) < 9.2e18) *out = jv_int((int64_t)f);
        else *out = dflt;
    } else if (F("float")) {
        jv dflt = jarg(a, 0, "default", jv_float(0.0));
        double f;
        if (v.t == JV_FLOAT) *out = v;
        else if (v.t == JV_INT) *out = jv_float((double)v.i);
        else if (v.t == JV_BOOL) *out = jv_float(v.b);
        else if (v.t == JV_STR && parse_float_str(v, &f)) *out = jv_float(f);
        else *out = dflt;
    } else if (F("abs")) {
        if (v.t == JV_INT) {
            if (v.i == INT64_MIN) jfail(c, JERR_RUNTIME, "integer overflow");
            *out = jv_int(v.i < 0 ? -v.i : v.i);
        } else if (v.t == JV_FLOAT) *out = jv_float(fabs(v.f));
        else if (v.t == JV_BOOL) *out = jv_int(v.b);
        else jfail(c, JERR_RUNTIME, "bad operand type for abs(): '%s'", jv_type_name(v));
    } else if (F("round")) {
        *out = do_round(c, v, need_int(c, jarg(a, 0, "precision", jv_int(0)), "round"),
                        jarg(a, 1, "method", jv_none()));
    } else if (F("map")) {
        jv items = jv_truthy(v) ? jinja_iterate(c, v) : jv_list(c, 0); /* jinja2: `if value:` first */
        jv attr = jarg(a, 99, "attribute", jv_undef(NULL));
        *out = jv_list(c, items.l->n);
        if (attr.t != JV_UNDEF) {
            jv dflt = jarg(a, 99, "default", jv_undef(NULL));
            for (size_t i = 0; i < items.l->n; i++) {
                jv x = get_path(c, items.l->items[i], attr);
                out->l->items[i] = x.t == JV_UNDEF && dflt.t != JV_UNDEF ? dflt : x;
            }
        } else {
            if (a->n_pos == 0) jfail(c, JERR_RUNTIME, "map: give a filter name or attribute=");
            jv fname = need_str(c, a->pos[0], "map");
            jargs rest = {.pos = a->pos + 1,
                          .n_pos = a->n_pos - 1,
                          .kw = a->kw,
                          .kw_n = a->kw_n,
                          .kw_vals = a->kw_vals,
                          .n_kw = a->n_kw};
            for (size_t i = 0; i < items.l->n; i++)
                if (!jinja_filter(c, fname.s.p, fname.s.n, items.l->items[i], &rest, &out->l->items[i]))
                    jfail(c, JERR_RUNTIME, "no filter named '%.*s'", (int)fname.s.n, fname.s.p);
        }
    } else if (F("select") || F("reject") || F("selectattr") || F("rejectattr")) {
        bool attr_mode = F("selectattr") || F("rejectattr"), want = F("select") || F("selectattr");
        jv items = jv_truthy(v) ? jinja_iterate(c, v) : jv_list(c, 0);
        jv res = jv_list(c, items.l->n);
        size_t k = 0;
        jv attr = attr_mode ? jarg(a, 0, NULL, jv_undef("selectattr: missing the attribute")) : jv_none();
        if (attr_mode && attr.t == JV_UNDEF) jfail(c, JERR_RUNTIME, "%s", attr.s.p);
        for (size_t i = 0; i < items.l->n; i++) {
            jv x = attr_mode ? get_path(c, items.l->items[i], attr) : items.l->items[i];
            if (select_test(c, x, a, attr_mode ? 1 : 0) == want) res.l->items[k++] = items.l->items[i];
        }
        res.l->n = k;
        *out = res;
    } else if (F("unique")) {
        bool cs = jv_truthy(jarg(a, 0, "case_sensitive", jv_bool(false)));
        jv attr = jarg(a, 1, "attribute", jv_none());
        jv items = jinja_iterate(c, v);
        jv res = jv_list(c, items.l->n), seen = jv_list(c, items.l->n);
        size_t k = 0;
        for (size_t i = 0; i < items.l->n; i++) {
            jv key = sort_key(c, attr.t == JV_NONE ? items.l->items[i] : get_path(c, items.l->items[i], attr), cs);
            if ((key.t == JV_LIST && !key.l->tuple) || key.t == JV_DICT || key.t == JV_NS)
                jfail(c, JERR_RUNTIME, "unhashable type: '%s'", jv_type_name(key));
            bool dup = false;
            for (size_t j = 0; j < k && !dup; j++) dup = jv_equal(c, seen.l->items[j], key);
            if (!dup) {
                seen.l->items[k] = key;
                res.l->items[k++] = items.l->items[i];
            }
        }
        res.l->n = k;
        *out = res;
    } else if (F("sort")) {
        bool rev = jv_truthy(jarg(a, 0, "reverse", jv_bool(false)));
        bool cs = jv_truthy(jarg(a, 1, "case_sensitive", jv_bool(false)));
        jv attr = jarg(a, 2, "attribute", jv_none());
        jv items = jinja_iterate(c, v);
        jv res = jv_list(c, items.l->n), keys = jv_list(c, items.l->n);
        for (size_t i = 0; i < items.l->n; i++) {
            res.l->items[i] = items.l->items[i];
            keys.l->items[i] = sort_key(c, attr.t == JV_NONE ? items.l->items[i] : get_path(c, items.l->items[i], attr),
                                        cs);
        }
        sort_by(c, res.l->items, keys.l->items, items.l->n, rev, attr.t != JV_NONE);
        *out = res;
    } else if (F("dictsort")) {
        if (v.t != JV_DICT) jfail(c, JERR_RUNTIME, "dictsort: expected a mapping, not %s", jv_type_name(v));
        bool cs = jv_truthy(jarg(a, 0, "case_sensitive", jv_bool(false)));
        jv by = jarg(a, 1, "by", jv_str_lit("key"));
        bool rev = jv_truthy(jarg(a, 2, "reverse", jv_bool(false)));
        bool by_value = by.t == JV_STR && NAME_IS(by.s.p, by.s.n, "value");
        if (!by_value && !(by.t == JV_STR && NAME_IS(by.s.p, by.s.n, "key")))
            jfail(c, JERR_RUNTIME, "You can only sort by either \"key\" or \"value\"");
        jv res = dict_items(c, v), keys = jv_list(c, v.d->n);
        for (size_t i = 0; i < v.d->n; i++) keys.l->items[i] = sort_key(c, by_value ? v.d->vals[i] : v.d->keys[i], cs);
        sort_by(c, res.l->items, keys.l->items, v.d->n, rev, false);
        *out = res;
    } else if (F("min") || F("max")) {
        bool cs = jv_truthy(jarg(a, 0, "case_sensitive", jv_bool(false)));
        jv attr = jarg(a, 1, "attribute", jv_none());
        jv items = jinja_iterate(c, v);
        if (items.l->n == 0)
            *out = jv_undef(F("min") ? "No aggregated item, sequence was empty."
                                     : "No aggregated item, sequence was empty.");
        else {
            size_t best = 0;
            jv bk = sort_key(c, attr.t == JV_NONE ? items.l->items[0] : get_path(c, items.l->items[0], attr), cs);
            for (size_t i = 1; i < items.l->n; i++) {
                jv k = sort_key(c, attr.t == JV_NONE ? items.l->items[i] : get_path(c, items.l->items[i], attr), cs);
                int r = jv_compare(c, k, bk);
                if (F("min") ? r < 0 : r > 0) {
                    best = i;
                    bk = k;
                }
            }
            *out = items.l->items[best];
        }
    } else if (F("sum")) {
        jv attr = jarg(a, 0, "attribute", jv_none());
        jv acc = jarg(a, 1, "start", jv_int(0));
        jv items = jinja_iterate(c, v);
        for (size_t i = 0; i < items.l->n; i++) {
            jv x = attr.t == JV_NONE ? items.l->items[i] : get_path(c, items.l->items[i], attr);
            bool ni = acc.t == JV_INT || acc.t == JV_BOOL, nx = x.t == JV_INT || x.t == JV_BOOL;
            if (ni && nx) {
                int64_t r;
                if (__builtin_add_overflow(acc.t == JV_INT ? acc.i : acc.b, x.t == JV_INT ? x.i : x.b, &r))
                    jfail(c, JERR_RUNTIME, "integer overflow");
                acc = jv_int(r);
            } else if ((ni || acc.t == JV_FLOAT) && (nx || x.t == JV_FLOAT)) {
                double fa = acc.t == JV_FLOAT ? acc.f : (double)(acc.t == JV_INT ? acc.i : acc.b);
                double fx = x.t == JV_FLOAT ? x.f : (double)(x.t == JV_INT ? x.i : x.b);
                acc = jv_float(fa + fx);
            } else
                jfail(c, JERR_RUNTIME, "unsupported operand type(s) for +: '%s' and '%s'", jv_type_name(acc),
                      jv_type_name(x));
        }
        *out = acc;
    } else if (F("indent")) {
        *out = do_indent(c, v, jarg(a, 0, "width", jv_int(4)), jv_truthy(jarg(a, 1, "first", jv_bool(false))),
                         jv_truthy(jarg(a, 2, "blank", jv_bool(false))));
    } else if (F("wordcount")) {
        jv s = jv_stringify(c, v);
        int64_t words = 0;
        bool in_word = false;
        for (size_t i = 0; i < s.s.n;) {
            size_t used;
            uint32_t cp = utf8_decode(s.s.p + i, s.s.n - i, &used);
            bool w = cp == '_' || cp_alnum(cp);
            if (w && !in_word) words++;
            in_word = w;
            i += used;
        }
        *out = jv_int(words);
    } else if (F("batch")) {
        int64_t size = need_int(c, jarg(a, 0, "linecount", jv_int(0)), "batch");
        jv fill = jarg(a, 1, "fill_with", jv_none());
        bool do_fill = fill.t != JV_NONE;
        if (size <= 0) jfail(c, JERR_RUNTIME, "batch: the line count must be positive");
        jv items = jinja_iterate(c, v);
        size_t n_b = (items.l->n + (size_t)size - 1) / (size_t)size;
        jv res = jv_list(c, n_b);
        for (size_t bi = 0; bi < n_b; bi++) {
            size_t from = bi * (size_t)size, cnt = items.l->n - from < (size_t)size ? items.l->n - from : (size_t)size;
            jv row = jv_list(c, do_fill ? (size_t)size : cnt);
            for (size_t k = 0; k < row.l->n; k++) row.l->items[k] = k < cnt ? items.l->items[from + k] : fill;
            res.l->items[bi] = row;
        }
        *out = res;
    } else if (F("format")) {
        /* jinja2: soft_str(value) % (kwargs or args) */
        jv fargs;
        if (a->n_kw) {
            fargs = jv_dict(c);
            for (size_t k = 0; k < a->n_kw; k++) jdict_set(c, fargs.d, jv_str(c, a->kw[k], a->kw_n[k]), a->kw_vals[k]);
        } else {
            fargs = jv_list(c, a->n_pos);
            fargs.l->tuple = true;
            if (a->n_pos) memcpy(fargs.l->items, a->pos, a->n_pos * sizeof(jv));
        }
        *out = jinja_percent_format(c, jv_stringify(c, v), fargs);
    } else if (F("center")) {
        jv width = jarg(a, 0, "width", jv_int(80));
        jargs ca = {.pos = &width, .n_pos = 1};
        jfunc f = {.id = S_CENTER, .self = jv_stringify(c, v)};
        *out = jinja_call_builtin(c, &f, &ca);
    } else if (F("attr")) {
        jv nm = need_str(c, jarg(a, 0, "name", jv_none()), "attr");
        if (v.t == JV_UNDEF) jfail(c, JERR_RUNTIME, "%s", v.s.p ? v.s.p : "undefined value");
        /* Python's getattr: a dict's keys are not its attributes */
        *out = v.t == JV_DICT && nm.s.n && nm.s.p[0] != '_' ? method_of(c, v, nm.s.p, nm.s.n)
                                                            : jinja_getattr(c, v, nm.s.p, nm.s.n);
        if (out->t == JV_UNDEF && !out->s.p) *out = no_attr(c, v, nm.s.p, nm.s.n);
    } else return false;
#undef F
    return true;
}

bool jinja_filter_exists(const char *name, size_t n) { return known_filter(name, n); }
bool jinja_test_exists(const char *name, size_t n) { return name_in(TESTS, name, n); }
