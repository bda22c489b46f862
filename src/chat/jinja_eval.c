/* jinja_eval.c — runs the tree: scopes as jinja2 has them (a for loop's body and a macro's are their own, if
 * blocks are not), loops with loop.*, macros and call blocks, operators with Python's semantics, the budgets. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "jinja.h"

struct jscope {
    jscope *parent;
    jdict vars;
};

struct jmacro {
    const jnode *def;
    jscope *closure;
    jv caller; /* the caller() of a call block, or undefined */
};

typedef enum flow { FLOW_NEXT, FLOW_BREAK, FLOW_CONTINUE } flow;

static flow exec_body(jctx *c, jscope *s, const jnodes *body, jbuf *out);
static jv eval(jctx *c, jscope *s, const jnode *n);

static void step(jctx *c, int line) {
    c->line = line;
    if (++c->steps > c->lim.max_steps)
        jfail(c, JERR_LIMIT, "the template runs more than %lld steps (the sandbox's limit; an endless loop?)",
              (long long)c->lim.max_steps);
}

static jscope *scope_new(jctx *c, jscope *parent) {
    jscope *s = ja_alloc(&c->arena, sizeof *s);
    s->parent = parent;
    return s;
}

static void scope_set(jctx *c, jscope *s, const char *name, size_t n, jv v) {
    jv key = {.t = JV_STR};
    key.s.p = name;
    key.s.n = n;
    jdict_set(c, &s->vars, key, v);
}

static jv undefined_name(jctx *c, const char *name, size_t n) {
    jbuf b = {0};
    jb_printf(c, &b, "'%.*s' is undefined", (int)n, name);
    return jv_undef(b.p);
}

static jv lookup(jctx *c, jscope *s, const char *name, size_t n) {
    jv key = {.t = JV_STR}, v;
    key.s.p = name;
    key.s.n = n;
    for (; s; s = s->parent)
        if (jdict_get(c, &s->vars, key, &v)) return v;
    v = jinja_global(c, name, n);
    if (v.t != JV_UNDEF) return v;
    return undefined_name(c, name, n);
}

_Noreturn static void undefined_error(jctx *c, jv u) {
    jfail(c, JERR_RUNTIME, "%s", u.s.p ? u.s.p : "undefined value");
}

/* ---- operators ---- */

static bool is_num(jv v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }
static double num_f(jv v) {
    return v.t == JV_FLOAT ? v.f : v.t == JV_INT ? (double)v.i : v.t == JV_BOOL ? (double)v.b : 0.0;
}
static int64_t num_i(jv v) { return v.t == JV_INT ? v.i : v.t == JV_BOOL ? (int64_t)v.b : 0; }

static const char *OP_NAMES[] = {"+", "-", "*", "/", "//", "%", "**", "~"};

_Noreturn static void type_error(jctx *c, jop op, jv a, jv b) {
    jfail(c, JERR_RUNTIME, "unsupported operand type(s) for %s: '%s' and '%s'", OP_NAMES[op], jv_type_name(a),
          jv_type_name(b));
}

_Noreturn static void overflow(jctx *c) { jfail(c, JERR_RUNTIME, "integer overflow (tandem's integers are 64-bit)"); }

static jv repeat(jctx *c, jv seq, int64_t times) {
    if (times < 0) times = 0;
    size_t unit = seq.t == JV_STR ? seq.s.n : seq.l->n;
    uint64_t total;
    if (!size_mul_ok(unit, (uint64_t)times, &total) || total > c->lim.max_memory / (seq.t == JV_STR ? 1 : sizeof(jv)))
        jfail(c, JERR_LIMIT, "a repeated sequence exceeds the sandbox's memory limit");
    c->steps += (int64_t)(total / 64);
    if (total == 0) { /* no items: nothing to copy (and no NULL + 0) */
        if (seq.t == JV_STR) return jv_str_lit("");
        jv r = jv_list(c, 0);
        r.l->tuple = seq.l->tuple;
        return r;
    }
    if (seq.t == JV_STR) {
        char *p = ja_alloc(&c->arena, total + 1);
        for (int64_t i = 0; i < times; i++) memcpy(p + (size_t)i * unit, seq.s.p, unit);
        jv r = {.t = JV_STR};
        r.s.p = p;
        r.s.n = total;
        return r;
    }
    jv r = jv_list(c, total);
    r.l->tuple = seq.l->tuple;
    for (int64_t i = 0; i < times; i++) memcpy(r.l->items + (size_t)i * unit, seq.l->items, unit * sizeof(jv));
    return r;
}

static jv concat_seq(jctx *c, jv a, jv b) {
    if (a.t == JV_STR) {
        char *p = ja_alloc(&c->arena, a.s.n + b.s.n + 1);
        memcpy(p, a.s.p, a.s.n);
        memcpy(p + a.s.n, b.s.p, b.s.n);
        jv r = {.t = JV_STR};
        r.s.p = p;
        r.s.n = a.s.n + b.s.n;
        return r;
    }
    jv r = jv_list(c, a.l->n + b.l->n);
    r.l->tuple = a.l->tuple;
    if (a.l->n) memcpy(r.l->items, a.l->items, a.l->n * sizeof(jv));
    if (b.l->n) memcpy(r.l->items + a.l->n, b.l->items, b.l->n * sizeof(jv));
    return r;
}

static jv binop(jctx *c, jop op, jv a, jv b) {
    if (op == OP_CONCAT) {
        jv x = jv_stringify(c, a), y = jv_stringify(c, b);
        return concat_seq(c, x, y);
    }
    if (a.t == JV_UNDEF) undefined_error(c, a);
    if (b.t == JV_UNDEF) undefined_error(c, b);
    if (is_num(a) && is_num(b)) {
        bool ints = a.t != JV_FLOAT && b.t != JV_FLOAT;
        int64_t x = num_i(a), y = num_i(b), r;
        double fx = num_f(a), fy = num_f(b);
        switch (op) {
        case OP_ADD:
            if (!ints) return jv_float(fx + fy);
            if (__builtin_add_overflow(x, y, &r)) overflow(c);
            return jv_int(r);
        case OP_SUB:
            if (!ints) return jv_float(fx - fy);
            if (__builtin_sub_overflow(x, y, &r)) overflow(c);
            return jv_int(r);
        case OP_MUL:
            if (!ints) return jv_float(fx * fy);
            if (__builtin_mul_overflow(x, y, &r)) overflow(c);
            return jv_int(r);
        case OP_DIV:
            if (fy == 0.0) jfail(c, JERR_RUNTIME, "division by zero");
            return jv_float(fx / fy);
        case OP_FLOORDIV:
        case OP_MOD:
            if (ints) {
                if (y == 0) jfail(c, JERR_RUNTIME, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) overflow(c);
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) {
                    q--;
                    m += y;
                }
                return jv_int(op == OP_FLOORDIV ? q : m);
            } else {
                if (fy == 0.0) jfail(c, JERR_RUNTIME, "float division or modulo by zero");
                double m = fmod(fx, fy), d = (fx - m) / fy;
                if (m != 0.0) {
                    if ((fy < 0) != (m < 0)) {
                        m += fy;
                        d -= 1.0;
                    }
                } else {
                    m = copysign(0.0, fy);
                }
                double fd = 0.0;
                if (d != 0.0) {
                    fd = floor(d);
                    if (d - fd > 0.5) fd += 1.0;
                } else {
                    fd = copysign(0.0, fx / fy);
                }
                return jv_float(op == OP_FLOORDIV ? fd : m);
            }
        case OP_POW:
            if (ints && y >= 0) {
                int64_t acc = 1, base = x;
                for (int64_t e = y; e > 0; e >>= 1) {
                    if (e & 1 && __builtin_mul_overflow(acc, base, &acc)) overflow(c);
                    if (e > 1 && __builtin_mul_overflow(base, base, &base)) overflow(c);
                }
                return jv_int(acc);
            }
            if (fx == 0.0 && fy < 0) jfail(c, JERR_RUNTIME, "0.0 cannot be raised to a negative power");
            return jv_float(pow(fx, fy));
        default: break;
        }
    }
    if (op == OP_ADD && a.t == JV_STR && b.t == JV_STR) return concat_seq(c, a, b);
    if (op == OP_ADD && a.t == JV_LIST && b.t == JV_LIST && a.l->tuple == b.l->tuple) return concat_seq(c, a, b);
    if (op == OP_ADD && a.t == JV_STR)
        jfail(c, JERR_RUNTIME, "can only concatenate str (not \"%s\") to str", jv_type_name(b));
    if (op == OP_MUL && (a.t == JV_STR || a.t == JV_LIST) && (b.t == JV_INT || b.t == JV_BOOL))
        return repeat(c, a, num_i(b));
    if (op == OP_MUL && (b.t == JV_STR || b.t == JV_LIST) && (a.t == JV_INT || a.t == JV_BOOL))
        return repeat(c, b, num_i(a));
    if (op == OP_MOD && a.t == JV_STR) return jinja_percent_format(c, a, b);
    type_error(c, op, a, b);
}

static bool contains(jctx *c, jv item, jv seq) {
    switch ((jtype)seq.t) {
    case JV_STR:
        if (item.t != JV_STR)
            jfail(c, JERR_RUNTIME, "'in <string>' requires string as left operand, not %s", jv_type_name(item));
        if (item.s.n == 0) return true;
        c->steps += (int64_t)(seq.s.n / 64);
        return memmem(seq.s.p, seq.s.n, item.s.p, item.s.n) != NULL;
    case JV_LIST:
        for (size_t i = 0; i < seq.l->n; i++)
            if (jv_equal(c, item, seq.l->items[i])) return true;
        return false;
    case JV_DICT: {
        if ((item.t == JV_LIST && !item.l->tuple) || item.t == JV_DICT || item.t == JV_NS)
            jfail(c, JERR_RUNTIME, "unhashable type: '%s'", jv_type_name(item));
        jv v;
        return jdict_get(c, seq.d, item, &v);
    }
    case JV_UNDEF: return false;
    default: jfail(c, JERR_RUNTIME, "argument of type '%s' is not iterable", jv_type_name(seq));
    }
}

static bool compare_op(jctx *c, jop op, jv a, jv b) {
    switch (op) {
    case OP_EQ: return jv_equal(c, a, b);
    case OP_NE: return !jv_equal(c, a, b);
    case OP_IN: return contains(c, a, b);
    case OP_NOTIN: return !contains(c, a, b);
    default: break;
    }
    if (a.t == JV_UNDEF) undefined_error(c, a);
    if (b.t == JV_UNDEF) undefined_error(c, b);
    int r = jv_compare(c, a, b);
    if (is_num(a) && is_num(b) && (isnan(num_f(a)) || isnan(num_f(b)))) return false;
    switch (op) {
    case OP_LT: return r < 0;
    case OP_LE: return r <= 0;
    case OP_GT: return r > 0;
    case OP_GE: return r >= 0;
    default: return false;
    }
}

/* ---- iteration ---- */

/* The items a for loop (or a filter) walks: lists and tuples as they are, a dict's keys, a string's
 * characters, nothing for undefined. */
static jv iterable_items(jctx *c, jv v) {
    switch ((jtype)v.t) {
    case JV_LIST: return v;
    case JV_UNDEF: return jv_list(c, 0);
    case JV_DICT: {
        jv l = jv_list(c, v.d->n);
        memcpy(l.l->items, v.d->keys, v.d->n * sizeof(jv));
        return l;
    }
    case JV_STR: {
        size_t n = utf8_len(v.s.p, v.s.n);
        jv l = jv_list(c, n);
        for (size_t i = 0, k = 0; i < v.s.n; k++) {
            size_t used;
            utf8_decode(v.s.p + i, v.s.n - i, &used);
            l.l->items[k] = jv_str(c, v.s.p + i, used);
            i += used;
        }
        return l;
    }
    default: jfail(c, JERR_RUNTIME, "'%s' object is not iterable", jv_type_name(v));
    }
}

jv jinja_iterate(jctx *c, jv v);
jv jinja_iterate(jctx *c, jv v) { return iterable_items(c, v); }

static void assign_targets(jctx *c, jscope *s, const jnode *t, jv v) {
    if (!t->flag) {
        scope_set(c, s, t->kw_names[0], t->kw_lens[0], v);
        return;
    }
    jv items = iterable_items(c, v);
    if (items.l->n != t->n_kw) jfail(c, JERR_RUNTIME, "cannot unpack %zu values into %zu names", items.l->n, t->n_kw);
    for (size_t i = 0; i < t->n_kw; i++) scope_set(c, s, t->kw_names[i], t->kw_lens[i], items.l->items[i]);
}

jv jinja_loop_attr(jctx *c, const jloop *l, const char *name, size_t n) {
    size_t len = l->items->n, i = l->index0;
#define IS(s) (n == sizeof(s) - 1 && !memcmp(name, s, n))
    if (IS("index")) return jv_int((int64_t)i + 1);
    if (IS("index0")) return jv_int((int64_t)i);
    if (IS("revindex")) return jv_int((int64_t)(len - i));
    if (IS("revindex0")) return jv_int((int64_t)(len - i - 1));
    if (IS("first")) return jv_bool(i == 0);
    if (IS("last")) return jv_bool(i + 1 == len);
    if (IS("length")) return jv_int((int64_t)len);
    if (IS("depth")) return jv_int(l->depth0 + 1);
    if (IS("depth0")) return jv_int(l->depth0);
    if (IS("previtem")) return i > 0 ? l->items->items[i - 1] : jv_undef("there is no previous item");
    if (IS("nextitem")) return i + 1 < len ? l->items->items[i + 1] : jv_undef("there is no next item");
    if (IS("cycle")) return l->cycle_fn;
#undef IS
    jbuf b = {0};
    jb_printf(c, &b, "'LoopContext' object has no attribute '%.*s'", (int)n, name);
    return jv_undef(b.p);
}

int jinja_loop_cycle_id(void);

static flow exec_for(jctx *c, jscope *s, const jnode *n, jbuf *out) {
    jv seq = iterable_items(c, eval(c, s, n->a));
    jv items = seq;
    if (n->b) { /* {% for x in xs if cond %}: filtered first, so loop.length counts what passes */
        items = jv_list(c, seq.l->n);
        size_t k = 0;
        jscope *fs = scope_new(c, s);
        for (size_t i = 0; i < seq.l->n; i++) {
            assign_targets(c, fs, n->d, seq.l->items[i]);
            if (jv_truthy(eval(c, fs, n->b))) items.l->items[k++] = seq.l->items[i];
        }
        items.l->n = k;
    }
    jloop *lp = ja_alloc(&c->arena, sizeof *lp);
    lp->items = items.l;
    jfunc *cycle = ja_alloc(&c->arena, sizeof *cycle);
    cycle->id = jinja_loop_cycle_id();
    cycle->self = (jv){.t = JV_LOOP, .loop = lp};
    lp->cycle_fn = (jv){.t = JV_FUNC, .fn = cycle};
    jscope *body = scope_new(c, s); /* one scope reused by every iteration: memory stays flat */
    for (size_t i = 0; i < items.l->n; i++) {
        if (++c->iterations > c->lim.max_iterations)
            jfail(c, JERR_LIMIT, "loops run more than %lld iterations (the sandbox's limit)",
                  (long long)c->lim.max_iterations);
        lp->index0 = i;
        body->vars.n = 0;
        assign_targets(c, body, n->d, items.l->items[i]);
        scope_set(c, body, "loop", 4, (jv){.t = JV_LOOP, .loop = lp});
        if (exec_body(c, body, &n->body, out) == FLOW_BREAK) break;
    }
    if (items.l->n == 0 && n->orelse.n) exec_body(c, scope_new(c, s), &n->orelse, out);
    return FLOW_NEXT;
}

/* ---- macros ---- */

static jv call_macro(jctx *c, const jmacro *m, const jargs *a) {
    const jnode *def = m->def;
    if (++c->depth > c->lim.max_depth)
        jfail(c, JERR_LIMIT, "macros nest more than %d calls deep (the sandbox's limit)", c->lim.max_depth);
    jscope *s = scope_new(c, m->closure);
    size_t n_params = def->n_kw;
    jv extra = jv_list(c, a->n_pos > n_params ? a->n_pos - n_params : 0);
    extra.l->tuple = true;
    c->steps += 50; /* a call's cost beyond its nodes: recursion that fans out meets the step limit early */
    for (size_t i = n_params; i < a->n_pos; i++) extra.l->items[i - n_params] = a->pos[i];
    jv kwargs = jv_dict(c);
    for (size_t i = 0; i < n_params; i++) {
        jv v;
        bool have = false;
        if (i < a->n_pos) {
            v = a->pos[i];
            have = true;
        }
        for (size_t k = 0; k < a->n_kw; k++)
            if (a->kw_n[k] == def->kw_lens[i] && !memcmp(a->kw[k], def->kw_names[i], a->kw_n[k])) {
                if (have)
                    jfail(c, JERR_RUNTIME, "macro '%.*s' got multiple values for argument '%.*s'", (int)def->name_n,
                          def->name, (int)def->kw_lens[i], def->kw_names[i]);
                v = a->kw_vals[k];
                have = true;
            }
        if (!have) {
            if (def->kw_vals.v[i]) v = eval(c, s, def->kw_vals.v[i]);
            else {
                jbuf b = {0};
                jb_printf(c, &b, "parameter '%.*s' was not provided", (int)def->kw_lens[i], def->kw_names[i]);
                v = jv_undef(b.p);
            }
        }
        scope_set(c, s, def->kw_names[i], def->kw_lens[i], v);
    }
    for (size_t k = 0; k < a->n_kw; k++) {
        bool known = false;
        for (size_t i = 0; i < n_params && !known; i++)
            known = a->kw_n[k] == def->kw_lens[i] && !memcmp(a->kw[k], def->kw_names[i], a->kw_n[k]);
        if (!known) jdict_set(c, kwargs.d, jv_str(c, a->kw[k], a->kw_n[k]), a->kw_vals[k]);
    }
    scope_set(c, s, "varargs", 7, extra);
    scope_set(c, s, "kwargs", 6, kwargs);
    if (m->caller.t != JV_UNDEF) scope_set(c, s, "caller", 6, m->caller);
    jbuf body = {0};
    exec_body(c, s, &def->body, &body);
    c->depth--;
    jv r = {.t = JV_STR};
    r.s.p = body.p ? body.p : "";
    r.s.n = body.n;
    return r;
}

static jv make_macro(jctx *c, jscope *s, const jnode *def, jv caller) {
    jmacro *m = ja_alloc(&c->arena, sizeof *m);
    m->def = def;
    m->closure = s;
    m->caller = caller;
    return (jv){.t = JV_MACRO, .m = m};
}

jv jinja_call_value(jctx *c, jv callee, const jargs *a) {
    if (callee.t == JV_MACRO) return call_macro(c, callee.m, a);
    if (callee.t == JV_FUNC) return jinja_call_builtin(c, callee.fn, a);
    if (callee.t == JV_UNDEF) undefined_error(c, callee);
    jfail(c, JERR_RUNTIME, "'%s' object is not callable", jv_type_name(callee));
}

bool jinja_is_callable(jv v) { return v.t == JV_MACRO || v.t == JV_FUNC; }

/* ---- expressions ---- */

static void eval_args(jctx *c, jscope *s, const jnode *n, jargs *a, jv first) {
    size_t extra = first.t != JV_UNDEF || first.s.p != NULL ? 0 : 0;
    (void)extra;
    a->n_pos = n->body.n;
    a->pos = a->n_pos ? ja_alloc(&c->arena, a->n_pos * sizeof(jv)) : NULL;
    for (size_t i = 0; i < n->body.n; i++) a->pos[i] = eval(c, s, n->body.v[i]);
    a->n_kw = n->n_kw;
    a->kw = n->kw_names;
    a->kw_n = n->kw_lens;
    a->kw_vals = a->n_kw ? ja_alloc(&c->arena, a->n_kw * sizeof(jv)) : NULL;
    for (size_t i = 0; i < n->n_kw; i++) a->kw_vals[i] = eval(c, s, n->kw_vals.v[i]);
}

/* A filter node's chain; a NULL input at the bottom is `text` (filter blocks and block sets). */
static jv apply_filters(jctx *c, jscope *s, const jnode *f, jv text) {
    jv in = f->a ? (f->a->kind == E_FILTER ? apply_filters(c, s, f->a, text) : eval(c, s, f->a)) : text;
    jargs a = {0};
    eval_args(c, s, f, &a, jv_undef(NULL));
    c->line = f->line;
    jv out;
    if (!jinja_filter(c, f->name, f->name_n, in, &a, &out))
        jfail(c, JERR_RUNTIME, "no filter named '%.*s'", (int)f->name_n, f->name);
    return out;
}

static jv slice(jctx *c, jv v, jv start, jv stop, jv stepv) {
    if (v.t == JV_UNDEF) undefined_error(c, v);
    if (v.t != JV_STR && v.t != JV_LIST) { /* jinja2's getitem turns the TypeError into undefined */
        jbuf b = {0};
        jb_printf(c, &b, "'%s' object is not subscriptable", jv_type_name(v));
        return jv_undef(b.p);
    }
    int64_t len = v.t == JV_STR ? (int64_t)utf8_len(v.s.p, v.s.n) : (int64_t)v.l->n;
    int64_t st = 1;
    if (stepv.t != JV_NONE && stepv.t != JV_UNDEF) {
        if (stepv.t != JV_INT && stepv.t != JV_BOOL) jfail(c, JERR_RUNTIME, "slice indices must be integers or None");
        st = num_i(stepv);
        if (st == 0) jfail(c, JERR_RUNTIME, "slice step cannot be zero");
        if (st < -INT64_MAX) st = -INT64_MAX; /* any step longer than the sequence takes one item */
    }
    int64_t lo, hi;
    for (int k = 0; k < 2; k++) {
        jv b = k == 0 ? start : stop;
        int64_t *dst = k == 0 ? &lo : &hi;
        if (b.t == JV_NONE || b.t == JV_UNDEF) {
            *dst = k == 0 ? (st > 0 ? 0 : len - 1) : (st > 0 ? len : -1);
            continue;
        }
        if (b.t != JV_INT && b.t != JV_BOOL) jfail(c, JERR_RUNTIME, "slice indices must be integers or None");
        int64_t x = num_i(b);
        if (x < 0) {
            x += len;
            if (x < 0) x = st > 0 ? 0 : -1;
        } else if (x >= len) {
            x = st > 0 ? len : len - 1;
        }
        *dst = x;
    }
    size_t count = 0;
    if (st > 0 && lo < hi) count = (size_t)((hi - lo - 1) / st + 1);
    if (st < 0 && lo > hi) count = (size_t)((lo - hi - 1) / -st + 1);
    if (v.t == JV_LIST) {
        jv r = jv_list(c, count);
        r.l->tuple = v.l->tuple;
        for (size_t i = 0; i < count; i++) r.l->items[i] = v.l->items[lo + (int64_t)i * st];
        return r;
    }
    /* strings: code point offsets */
    size_t *offs = ja_alloc(&c->arena, ((size_t)len + 1) * sizeof(size_t));
    for (size_t i = 0, k = 0; i <= v.s.n && k <= (size_t)len; i++)
        if (i == v.s.n || ((unsigned char)v.s.p[i] & 0xC0) != 0x80) offs[k++] = i;
    if (st == 1) return jv_str(c, v.s.p + offs[lo], count ? offs[lo + (int64_t)count] - offs[lo] : 0);
    jbuf b = {0};
    for (size_t i = 0; i < count; i++) {
        int64_t k = lo + (int64_t)i * st;
        jb_put(c, &b, v.s.p + offs[k], offs[k + 1] - offs[k]);
    }
    return jv_str(c, b.p ? b.p : "", b.n);
}

static jv eval_node(jctx *c, jscope *s, const jnode *n);

static jv eval(jctx *c, jscope *s, const jnode *n) {
    nest_in(c);
    jv v = eval_node(c, s, n);
    nest_out(c);
    return v;
}

static jv eval_node(jctx *c, jscope *s, const jnode *n) {
    step(c, n->line);
    switch ((jnode_kind)n->kind) {
    case E_CONST: return n->value;
    case E_NAME: return lookup(c, s, n->name, n->name_n);
    case E_ATTR: {
        jv obj = eval(c, s, n->a);
        c->line = n->line;
        if (obj.t == JV_UNDEF) undefined_error(c, obj);
        return jinja_getattr(c, obj, n->name, n->name_n);
    }
    case E_ITEM: {
        jv obj = eval(c, s, n->a), key = eval(c, s, n->b);
        c->line = n->line;
        if (obj.t == JV_UNDEF) undefined_error(c, obj);
        return jinja_getitem(c, obj, key);
    }
    case E_SLICE: {
        jv obj = eval(c, s, n->a);
        jv a = n->b ? eval(c, s, n->b) : jv_none(), b = n->c ? eval(c, s, n->c) : jv_none(),
           st = n->d ? eval(c, s, n->d) : jv_none();
        c->line = n->line;
        return slice(c, obj, a, b, st);
    }
    case E_CALL: {
        jv callee = eval(c, s, n->a);
        jargs a = {0};
        eval_args(c, s, n, &a, jv_undef(NULL));
        c->line = n->line;
        return jinja_call_value(c, callee, &a);
    }
    case E_FILTER: return apply_filters(c, s, n, jv_undef(NULL));
    case E_TEST: {
        jv in = eval(c, s, n->a);
        jargs a = {0};
        eval_args(c, s, n, &a, jv_undef(NULL));
        c->line = n->line;
        bool r;
        if (!jinja_test(c, n->name, n->name_n, in, &a, &r))
            jfail(c, JERR_RUNTIME, "no test named '%.*s'", (int)n->name_n, n->name);
        return jv_bool(n->flag ? !r : r);
    }
    case E_BINOP: {
        jv a = eval(c, s, n->a), b = eval(c, s, n->b);
        c->line = n->line;
        return binop(c, (jop)n->op, a, b);
    }
    case E_NEG:
    case E_POS: {
        jv a = eval(c, s, n->a);
        c->line = n->line;
        if (a.t == JV_UNDEF) undefined_error(c, a);
        if (!is_num(a))
            jfail(c, JERR_RUNTIME, "bad operand type for unary %s: '%s'", n->kind == E_NEG ? "-" : "+",
                  jv_type_name(a));
        if (n->kind == E_POS) return a.t == JV_BOOL ? jv_int(a.b) : a;
        if (a.t == JV_FLOAT) return jv_float(-a.f);
        if (num_i(a) == INT64_MIN) overflow(c);
        return jv_int(-num_i(a));
    }
    case E_NOT: return jv_bool(!jv_truthy(eval(c, s, n->a)));
    case E_AND: {
        jv a = eval(c, s, n->a);
        return jv_truthy(a) ? eval(c, s, n->b) : a;
    }
    case E_OR: {
        jv a = eval(c, s, n->a);
        return jv_truthy(a) ? a : eval(c, s, n->b);
    }
    case E_COMPARE: {
        jv left = eval(c, s, n->a);
        for (size_t i = 0; i < n->kw_vals.n; i++) {
            jv right = eval(c, s, n->kw_vals.v[i]);
            c->line = n->line;
            if (!compare_op(c, (jop)n->ops[i], left, right)) return jv_bool(false);
            left = right;
        }
        return jv_bool(true);
    }
    case E_COND:
        if (jv_truthy(eval(c, s, n->a))) return eval(c, s, n->b);
        return n->c ? eval(c, s, n->c) : jv_undef("the inline if's condition was false and it has no else");
    case E_LIST:
    case E_TUPLE: {
        jv l = jv_list(c, n->body.n);
        l.l->tuple = n->kind == E_TUPLE;
        for (size_t i = 0; i < n->body.n; i++) l.l->items[i] = eval(c, s, n->body.v[i]);
        return l;
    }
    case E_DICT: {
        jv d = jv_dict(c);
        for (size_t i = 0; i < n->body.n; i++) {
            jv k = eval(c, s, n->body.v[i]);
            if (k.t == JV_LIST && !k.l->tuple) jfail(c, JERR_RUNTIME, "unhashable type: 'list'");
            if (k.t == JV_DICT) jfail(c, JERR_RUNTIME, "unhashable type: 'dict'");
            jdict_set(c, d.d, k, eval(c, s, n->orelse.v[i]));
        }
        return d;
    }
    default: jfail(c, JERR_RUNTIME, "internal error: a statement where an expression belongs");
    }
}

/* ---- statements ---- */

static flow exec_node(jctx *c, jscope *s, const jnode *n, jbuf *out) {
    step(c, n->line);
    switch ((jnode_kind)n->kind) {
    case N_TEXT: jb_put(c, out, n->name, n->name_n); return FLOW_NEXT;
    case N_OUTPUT: {
        jv v = eval(c, s, n->a);
        c->line = n->line;
        jv_to_str(c, out, v);
        return FLOW_NEXT;
    }
    case N_IF:
        if (jv_truthy(eval(c, s, n->a))) return exec_body(c, s, &n->body, out);
        return exec_body(c, s, &n->orelse, out);
    case N_FOR: return exec_for(c, s, n, out);
    case N_SET:
    case N_SET_BLOCK: {
        jv v;
        if (n->kind == N_SET) {
            v = eval(c, s, n->a);
        } else {
            jbuf body = {0};
            exec_body(c, s, &n->body, &body);
            v = jv_str(c, body.p ? body.p : "", body.n);
            if (n->b) v = apply_filters(c, s, n->b, v);
        }
        c->line = n->line;
        if (n->d->kind == E_NSREF) {
            jv ns = lookup(c, s, n->d->name, n->d->name_n);
            if (ns.t != JV_NS) jfail(c, JERR_RUNTIME, "cannot assign attribute on non-namespace object");
            jdict_set(c, ns.d, n->d->c->value, v);
        } else {
            assign_targets(c, s, n->d, v);
        }
        return FLOW_NEXT;
    }
    case N_MACRO: scope_set(c, s, n->name, n->name_n, make_macro(c, s, n, jv_undef(NULL))); return FLOW_NEXT;
    case N_CALL_BLOCK: {
        const jnode *call = n->a;
        jv caller = make_macro(c, s, n, jv_undef(NULL));
        jv callee = eval(c, s, call->a);
        if (callee.t != JV_MACRO) jfail(c, JERR_RUNTIME, "{%% call %%} needs a macro, not '%s'", jv_type_name(callee));
        jmacro with = *callee.m;
        with.caller = caller;
        jargs a = {0};
        eval_args(c, s, call, &a, jv_undef(NULL));
        c->line = n->line;
        jv r = call_macro(c, &with, &a);
        jb_put(c, out, r.s.p, r.s.n);
        return FLOW_NEXT;
    }
    case N_FILTER_BLOCK: {
        jbuf body = {0};
        flow f = exec_body(c, s, &n->body, &body);
        jv v = apply_filters(c, s, n->b, jv_str(c, body.p ? body.p : "", body.n));
        jv_to_str(c, out, v);
        return f;
    }
    case N_WITH: {
        jscope *inner = scope_new(c, s);
        for (size_t i = 0; i < n->n_kw; i++)
            scope_set(c, inner, n->kw_names[i], n->kw_lens[i], eval(c, s, n->kw_vals.v[i]));
        return exec_body(c, inner, &n->body, out);
    }
    case N_BREAK: return FLOW_BREAK;
    case N_CONTINUE: return FLOW_CONTINUE;
    default: jfail(c, JERR_RUNTIME, "internal error: an expression where a statement belongs");
    }
}

static flow exec_body(jctx *c, jscope *s, const jnodes *body, jbuf *out) {
    nest_in(c);
    flow f = FLOW_NEXT;
    for (size_t i = 0; i < body->n && f == FLOW_NEXT; i++) f = exec_node(c, s, body->v[i], out);
    nest_out(c);
    return f;
}

void jinja_render(jctx *c, const jnode *root, jdict *vars, jbuf *out) {
    jscope *globals = scope_new(c, NULL);
    globals->vars = *vars;
    jscope *top = scope_new(c, globals);
    exec_body(c, top, &root->body, out);
}
