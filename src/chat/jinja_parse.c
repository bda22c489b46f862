/* jinja_parse.c — tokens to a tree: jinja2's statements (for, if, set, macro, call, filter, with, break,
 * continue) and its expression grammar with jinja2's precedence. Syntax errors name the line and column. */
#include <stdio.h>
#include <stdlib.h>

#include "jinja.h"

#define MAX_NESTING 200 /* brackets, operators and blocks inside one another */

typedef struct parser {
    jctx *c;
    const jtok *t;
    size_t n, i;
    int nesting;
    int loops; /* for loops around the current statement (not across a macro) */
} parser;

static const jtok *cur(parser *P) { return &P->t[P->i]; }
static const jtok *next_tok(parser *P) { return &P->t[P->i + 1 < P->n ? P->i + 1 : P->i]; }

_Noreturn static void perr(parser *P, const char *fmt, const char *arg) {
    const jtok *t = cur(P);
    jfail_at(P->c, JERR_SYNTAX, t->line, t->col, fmt, arg);
}

static const char *tok_desc(const jtok *t) {
    static _Thread_local char buf[64];
    switch ((jtok_kind)t->kind) {
    case T_EOF: return "end of template";
    case T_TEXT: return "template data";
    case T_VAR_BEGIN: return "'{{'";
    case T_VAR_END: return "'}}'";
    case T_BLOCK_BEGIN: return "'{%'";
    case T_BLOCK_END: return "'%}'";
    case T_STRING: return "a string";
    case T_INT: return "an integer";
    case T_FLOAT: return "a float";
    default: snprintf(buf, sizeof buf, "'%.*s'", (int)(t->n < 40 ? t->n : 40), t->p); return buf;
    }
}

static bool is_op(parser *P, const char *op) {
    const jtok *t = cur(P);
    return t->kind == T_OP && t->n == strlen(op) && !memcmp(t->p, op, t->n);
}
static bool is_name(parser *P, const char *name) {
    const jtok *t = cur(P);
    return t->kind == T_NAME && t->n == strlen(name) && !memcmp(t->p, name, t->n);
}
static bool tok_is_name(const jtok *t, const char *name) {
    return t->kind == T_NAME && t->n == strlen(name) && !memcmp(t->p, name, t->n);
}
static void expect_op(parser *P, const char *op) {
    if (!is_op(P, op)) {
        char m[64];
        snprintf(m, sizeof m, "expected '%s', got %s", op, tok_desc(cur(P)));
        perr(P, "%s", m);
    }
    P->i++;
}
static void expect_kind(parser *P, jtok_kind k, const char *what) {
    if (cur(P)->kind != k) {
        char m[96];
        snprintf(m, sizeof m, "expected %s, got %s", what, tok_desc(cur(P)));
        perr(P, "%s", m);
    }
    P->i++;
}
static const jtok *expect_name(parser *P) {
    if (cur(P)->kind != T_NAME) {
        char m[96];
        snprintf(m, sizeof m, "expected a name, got %s", tok_desc(cur(P)));
        perr(P, "%s", m);
    }
    return &P->t[P->i++];
}

static jnode *mk(parser *P, jnode_kind k, int line) {
    jnode *n = ja_alloc(&P->c->arena, sizeof *n);
    n->kind = (uint8_t)k;
    n->line = line;
    return n;
}

/* growable node lists */
typedef struct nlist {
    jnode **v;
    size_t n, cap;
} nlist;
static void nl_push(parser *P, nlist *l, jnode *x) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jnode **v = ja_alloc(&P->c->arena, cap * sizeof *v);
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
}
static jnodes nl_done(nlist *l) { return (jnodes){l->v, l->n}; }

typedef struct kwlist {
    const char **names;
    size_t *lens;
    nlist vals;
    size_t cap;
} kwlist;
static void kw_push(parser *P, kwlist *k, const char *name, size_t n, jnode *val) {
    if (k->vals.n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4;
        const char **names = ja_alloc(&P->c->arena, cap * sizeof *names);
        size_t *lens = ja_alloc(&P->c->arena, cap * sizeof *lens);
        if (k->vals.n) {
            memcpy(names, k->names, k->vals.n * sizeof *names);
            memcpy(lens, k->lens, k->vals.n * sizeof *lens);
        }
        k->names = names;
        k->lens = lens;
        k->cap = cap;
    }
    k->names[k->vals.n] = name;
    k->lens[k->vals.n] = n;
    nl_push(P, &k->vals, val);
}

static void enter(parser *P) {
    if (++P->nesting > MAX_NESTING) perr(P, "%s", "the template nests too deeply");
}

/* ---- expressions ---- */

static jnode *parse_expr(parser *P);
static jnode *parse_or(parser *P);
static jnode *parse_unary(parser *P, bool with_filter);
static jnode *parse_primary(parser *P);
static jnode *parse_postfix(parser *P, jnode *node);

/* "(" args ")": positional and keyword arguments into n->body / n->kw_* */
static void parse_call_args(parser *P, jnode *n) {
    expect_op(P, "(");
    nlist pos = {0};
    kwlist kw = {0};
    while (!is_op(P, ")")) {
        if (pos.n || kw.vals.n) expect_op(P, ",");
        if (is_op(P, ")")) break;
        if (is_op(P, "*") || is_op(P, "**")) perr(P, "%s", "*args and **kwargs in calls are not supported");
        if (cur(P)->kind == T_NAME && next_tok(P)->kind == T_OP && next_tok(P)->n == 1 && next_tok(P)->p[0] == '=') {
            const jtok *name = expect_name(P);
            P->i++;
            kw_push(P, &kw, name->p, name->n, parse_expr(P));
        } else {
            if (kw.vals.n) perr(P, "%s", "a positional argument follows keyword arguments");
            nl_push(P, &pos, parse_expr(P));
        }
    }
    P->i++;
    n->body = nl_done(&pos);
    n->kw_vals = nl_done(&kw.vals);
    n->kw_names = kw.names;
    n->kw_lens = kw.lens;
    n->n_kw = kw.vals.n;
}

static jnode *parse_filter(parser *P, jnode *in) {
    /* after '|' */
    int line = cur(P)->line;
    const jtok *name = expect_name(P);
    jnode *f = mk(P, E_FILTER, line);
    f->a = in;
    f->name = name->p;
    f->name_n = name->n;
    if (!jinja_filter_exists(name->p, name->n)) {
        P->i--;
        char m[64];
        snprintf(m, sizeof m, "%.*s", (int)(name->n < 40 ? name->n : 40), name->p);
        perr(P, "no filter named '%s'", m);
    }
    if (is_op(P, "(")) parse_call_args(P, f);
    return f;
}

static jnode *parse_test(parser *P, jnode *in) {
    /* after 'is' */
    int line = cur(P)->line;
    jnode *t = mk(P, E_TEST, line);
    t->a = in;
    if (is_name(P, "not")) {
        t->flag = true;
        P->i++;
    }
    const jtok *name = expect_name(P);
    t->name = name->p;
    t->name_n = name->n;
    if (!jinja_test_exists(name->p, name->n)) {
        P->i--;
        char m[64];
        snprintf(m, sizeof m, "%.*s", (int)(name->n < 40 ? name->n : 40), name->p);
        perr(P, "no test named '%s'", m);
    }
    if (is_op(P, "(")) {
        parse_call_args(P, t);
    } else {
        const jtok *c = cur(P);
        bool arg = c->kind == T_STRING || c->kind == T_INT || c->kind == T_FLOAT ||
                   (c->kind == T_OP && c->n == 1 && (c->p[0] == '(' || c->p[0] == '[' || c->p[0] == '{')) ||
                   (c->kind == T_NAME && !tok_is_name(c, "else") && !tok_is_name(c, "or") && !tok_is_name(c, "and"));
        if (arg) {
            nlist pos = {0};
            nl_push(P, &pos, parse_postfix(P, parse_primary(P)));
            t->body = nl_done(&pos);
        }
    }
    return t;
}

static jnode *parse_filter_expr(parser *P, jnode *node) {
    for (;;) {
        if (is_op(P, "|")) {
            P->i++;
            node = parse_filter(P, node);
        } else if (is_name(P, "is")) {
            P->i++;
            node = parse_test(P, node);
        } else if (is_op(P, "(")) {
            jnode *call = mk(P, E_CALL, cur(P)->line);
            call->a = node;
            parse_call_args(P, call);
            node = call;
        } else {
            return node;
        }
    }
}

static jnode *parse_subscript(parser *P, jnode *node) {
    int line = cur(P)->line;
    if (is_op(P, ".")) {
        P->i++;
        if (cur(P)->kind == T_INT) { /* x.0 is x[0] */
            jnode *it = mk(P, E_ITEM, line);
            it->a = node;
            it->b = mk(P, E_CONST, line);
            it->b->value = jv_int(cur(P)->i);
            P->i++;
            return it;
        }
        const jtok *name = expect_name(P);
        jnode *at = mk(P, E_ATTR, line);
        at->a = node;
        at->name = name->p;
        at->name_n = name->n;
        return at;
    }
    expect_op(P, "[");
    jnode *parts[3] = {NULL, NULL, NULL};
    bool slice = false;
    int k = 0;
    for (;;) {
        if (is_op(P, ":")) {
            if (k == 2) perr(P, "%s", "a slice takes at most three parts");
            slice = true;
            k++;
            P->i++;
            continue;
        }
        if (is_op(P, "]")) break;
        if (parts[k]) perr(P, "%s", "expected ':' or ']' in a subscript");
        parts[k] = parse_expr(P);
        if (!slice && is_op(P, ",")) perr(P, "%s", "tuple subscripts are not supported");
    }
    P->i++;
    jnode *it = mk(P, slice ? E_SLICE : E_ITEM, line);
    it->a = node;
    if (!slice && !parts[0]) perr(P, "%s", "expected an expression in the subscript");
    it->b = parts[0];
    it->c = parts[1];
    it->d = parts[2];
    return it;
}

static jnode *parse_postfix(parser *P, jnode *node) {
    for (;;) {
        if (is_op(P, ".") || is_op(P, "[")) {
            node = parse_subscript(P, node);
        } else if (is_op(P, "(")) {
            jnode *call = mk(P, E_CALL, cur(P)->line);
            call->a = node;
            parse_call_args(P, call);
            node = call;
        } else {
            return node;
        }
    }
}

static jnode *parse_primary(parser *P) {
    const jtok *t = cur(P);
    int line = t->line;
    jnode *n;
    switch ((jtok_kind)t->kind) {
    case T_NAME:
        P->i++;
        n = mk(P, E_CONST, line);
        if (tok_is_name(t, "true") || tok_is_name(t, "True")) n->value = jv_bool(true);
        else if (tok_is_name(t, "false") || tok_is_name(t, "False")) n->value = jv_bool(false);
        else if (tok_is_name(t, "none") || tok_is_name(t, "None")) n->value = jv_none();
        else {
            n->kind = E_NAME;
            n->name = t->p;
            n->name_n = t->n;
        }
        return n;
    case T_STRING: {
        jbuf b = {0};
        while (cur(P)->kind == T_STRING) { /* adjacent literals concatenate */
            jb_put(P->c, &b, cur(P)->p, cur(P)->n);
            P->i++;
        }
        n = mk(P, E_CONST, line);
        n->value = jv_str(P->c, b.p ? b.p : "", b.n);
        return n;
    }
    case T_INT:
        P->i++;
        n = mk(P, E_CONST, line);
        n->value = jv_int(t->i);
        return n;
    case T_FLOAT:
        P->i++;
        n = mk(P, E_CONST, line);
        n->value = jv_float(t->f);
        return n;
    case T_OP:
        if (is_op(P, "(")) {
            enter(P);
            P->i++;
            if (is_op(P, ")")) {
                P->i++;
                P->nesting--;
                return mk(P, E_TUPLE, line);
            }
            jnode *first = parse_expr(P);
            if (is_op(P, ")")) {
                P->i++;
                P->nesting--;
                return first;
            }
            nlist items = {0};
            nl_push(P, &items, first);
            while (is_op(P, ",")) {
                P->i++;
                if (is_op(P, ")")) break;
                nl_push(P, &items, parse_expr(P));
            }
            expect_op(P, ")");
            P->nesting--;
            n = mk(P, E_TUPLE, line);
            n->body = nl_done(&items);
            return n;
        }
        if (is_op(P, "[")) {
            enter(P);
            P->i++;
            nlist items = {0};
            while (!is_op(P, "]")) {
                if (items.n) expect_op(P, ",");
                if (is_op(P, "]")) break;
                nl_push(P, &items, parse_expr(P));
            }
            P->i++;
            P->nesting--;
            n = mk(P, E_LIST, line);
            n->body = nl_done(&items);
            return n;
        }
        if (is_op(P, "{")) {
            enter(P);
            P->i++;
            nlist keys = {0}, vals = {0};
            while (!is_op(P, "}")) {
                if (keys.n) expect_op(P, ",");
                if (is_op(P, "}")) break;
                nl_push(P, &keys, parse_expr(P));
                expect_op(P, ":");
                nl_push(P, &vals, parse_expr(P));
            }
            P->i++;
            P->nesting--;
            n = mk(P, E_DICT, line);
            n->body = nl_done(&keys);
            n->orelse = nl_done(&vals);
            return n;
        }
        break;
    default: break;
    }
    char m[96];
    snprintf(m, sizeof m, "unexpected %s", tok_desc(t));
    perr(P, "%s", m);
}

static jnode *parse_unary(parser *P, bool with_filter) {
    enter(P);
    int line = cur(P)->line;
    jnode *node;
    if (is_op(P, "-") || is_op(P, "+")) {
        bool neg = is_op(P, "-");
        P->i++;
        node = mk(P, neg ? E_NEG : E_POS, line);
        node->a = parse_unary(P, false);
    } else {
        node = parse_primary(P);
    }
    node = parse_postfix(P, node);
    if (with_filter) node = parse_filter_expr(P, node);
    P->nesting--;
    return node;
}

static jnode *binop(parser *P, jop op, jnode *a, jnode *b, int line) {
    jnode *n = mk(P, E_BINOP, line);
    n->op = (uint8_t)op;
    n->a = a;
    n->b = b;
    return n;
}

static jnode *parse_pow(parser *P) {
    jnode *left = parse_unary(P, true);
    while (is_op(P, "**")) {
        int line = cur(P)->line;
        P->i++;
        left = binop(P, OP_POW, left, parse_unary(P, true), line);
    }
    return left;
}

static jnode *parse_math2(parser *P) {
    jnode *left = parse_pow(P);
    for (;;) {
        jop op;
        if (is_op(P, "*")) op = OP_MUL;
        else if (is_op(P, "/")) op = OP_DIV;
        else if (is_op(P, "//")) op = OP_FLOORDIV;
        else if (is_op(P, "%")) op = OP_MOD;
        else return left;
        int line = cur(P)->line;
        P->i++;
        left = binop(P, op, left, parse_pow(P), line);
    }
}

static jnode *parse_concat(parser *P) {
    jnode *left = parse_math2(P);
    while (is_op(P, "~")) {
        int line = cur(P)->line;
        P->i++;
        left = binop(P, OP_CONCAT, left, parse_math2(P), line);
    }
    return left;
}

static jnode *parse_math1(parser *P) {
    jnode *left = parse_concat(P);
    while (is_op(P, "+") || is_op(P, "-")) {
        jop op = is_op(P, "+") ? OP_ADD : OP_SUB;
        int line = cur(P)->line;
        P->i++;
        left = binop(P, op, left, parse_concat(P), line);
    }
    return left;
}

static jnode *parse_compare(parser *P) {
    int line = cur(P)->line;
    jnode *expr = parse_math1(P);
    nlist operands = {0};
    uint8_t ops[64];
    size_t n_ops = 0;
    for (;;) {
        jop op;
        if (is_op(P, "==")) op = OP_EQ;
        else if (is_op(P, "!=")) op = OP_NE;
        else if (is_op(P, "<")) op = OP_LT;
        else if (is_op(P, "<=")) op = OP_LE;
        else if (is_op(P, ">")) op = OP_GT;
        else if (is_op(P, ">=")) op = OP_GE;
        else if (is_name(P, "in")) op = OP_IN;
        else if (is_name(P, "not") && tok_is_name(next_tok(P), "in")) {
            op = OP_NOTIN;
            P->i++;
        } else break;
        P->i++;
        if (n_ops == sizeof ops) perr(P, "%s", "too many chained comparisons");
        ops[n_ops++] = (uint8_t)op;
        nl_push(P, &operands, parse_math1(P));
    }
    if (!n_ops) return expr;
    jnode *n = mk(P, E_COMPARE, line);
    n->a = expr;
    n->kw_vals = nl_done(&operands);
    n->ops = ja_alloc(&P->c->arena, n_ops);
    memcpy(n->ops, ops, n_ops);
    return n;
}

static jnode *parse_not(parser *P) {
    if (is_name(P, "not")) {
        enter(P);
        jnode *n = mk(P, E_NOT, cur(P)->line);
        P->i++;
        n->a = parse_not(P);
        P->nesting--;
        return n;
    }
    return parse_compare(P);
}

static jnode *parse_and(parser *P) {
    jnode *left = parse_not(P);
    while (is_name(P, "and")) {
        jnode *n = mk(P, E_AND, cur(P)->line);
        P->i++;
        n->a = left;
        n->b = parse_not(P);
        left = n;
    }
    return left;
}

static jnode *parse_or(parser *P) {
    jnode *left = parse_and(P);
    while (is_name(P, "or")) {
        jnode *n = mk(P, E_OR, cur(P)->line);
        P->i++;
        n->a = left;
        n->b = parse_and(P);
        left = n;
    }
    return left;
}

static jnode *parse_expr(parser *P) {
    enter(P);
    jnode *expr = parse_or(P);
    while (is_name(P, "if")) {
        jnode *n = mk(P, E_COND, cur(P)->line);
        P->i++;
        n->a = parse_or(P); /* condition */
        n->b = expr;        /* then */
        if (is_name(P, "else")) {
            P->i++;
            n->c = parse_expr(P);
        }
        expr = n;
    }
    P->nesting--;
    return expr;
}

/* An expression, or several separated by commas (a tuple without brackets), as {{ }} and set allow. */
static jnode *parse_tuple_expr(parser *P) {
    int line = cur(P)->line;
    jnode *first = parse_expr(P);
    if (!is_op(P, ",")) return first;
    nlist items = {0};
    nl_push(P, &items, first);
    while (is_op(P, ",")) {
        P->i++;
        if (cur(P)->kind == T_VAR_END || cur(P)->kind == T_BLOCK_END) break;
        nl_push(P, &items, parse_expr(P));
    }
    jnode *n = mk(P, E_TUPLE, line);
    n->body = nl_done(&items);
    return n;
}

/* ---- statements ---- */

static jnodes parse_body(parser *P, const char *const *ends, const char **which);

/* Target names of for and set: one name or several (optionally in brackets) into n->kw_names. */
static void parse_targets(parser *P, jnode *n) {
    kwlist names = {0};
    bool paren = is_op(P, "(");
    if (paren) P->i++;
    for (;;) {
        const jtok *t = expect_name(P);
        kw_push(P, &names, t->p, t->n, NULL);
        if (!is_op(P, ",")) break;
        P->i++;
        if (paren && is_op(P, ")")) break;
    }
    if (paren) expect_op(P, ")");
    n->kw_names = names.names;
    n->kw_lens = names.lens;
    n->n_kw = names.vals.n;
    n->flag = names.vals.n > 1 || paren;
}

static void end_block(parser *P) { expect_kind(P, T_BLOCK_END, "'%}'"); }

static jnode *parse_for(parser *P, int line) {
    jnode *n = mk(P, N_FOR, line);
    jnode *targets = mk(P, E_TUPLE, line);
    parse_targets(P, targets);
    n->d = targets;
    if (!is_name(P, "in")) perr(P, "%s", "expected 'in' in a for loop");
    P->i++;
    /* the iterable: no inline if (that is the loop's filter) */
    n->a = parse_or(P);
    if (is_name(P, "if")) {
        P->i++;
        n->b = parse_expr(P);
    }
    if (is_name(P, "recursive")) perr(P, "%s", "recursive for loops are not supported");
    end_block(P);
    static const char *const ends[] = {"endfor", "else", NULL};
    const char *which;
    P->loops++;
    n->body = parse_body(P, ends, &which);
    P->loops--;
    if (!strcmp(which, "else")) {
        end_block(P);
        static const char *const ends2[] = {"endfor", NULL};
        n->orelse = parse_body(P, ends2, &which);
    }
    end_block(P);
    return n;
}

static jnode *parse_if(parser *P, int line) {
    jnode *n = mk(P, N_IF, line);
    n->a = parse_tuple_expr(P);
    end_block(P);
    static const char *const ends[] = {"endif", "elif", "else", NULL};
    const char *which;
    n->body = parse_body(P, ends, &which);
    if (!strcmp(which, "elif")) {
        jnode *elif = parse_if(P, cur(P)->line); /* consumes through endif */
        nlist l = {0};
        nl_push(P, &l, elif);
        n->orelse = nl_done(&l);
        return n;
    }
    if (!strcmp(which, "else")) {
        end_block(P);
        static const char *const ends2[] = {"endif", NULL};
        n->orelse = parse_body(P, ends2, &which);
    }
    end_block(P);
    return n;
}

static jnode *parse_set(parser *P, int line) {
    jnode *n = mk(P, N_SET, line);
    if (cur(P)->kind == T_NAME && next_tok(P)->kind == T_OP && next_tok(P)->n == 1 && next_tok(P)->p[0] == '.') {
        const jtok *ns = expect_name(P);
        P->i++;
        const jtok *attr = expect_name(P);
        jnode *ref = mk(P, E_NSREF, line);
        ref->name = ns->p;
        ref->name_n = ns->n;
        ref->c = mk(P, E_CONST, line);
        ref->c->value = jv_str(P->c, attr->p, attr->n);
        n->d = ref;
    } else {
        jnode *targets = mk(P, E_TUPLE, line);
        parse_targets(P, targets);
        n->d = targets;
    }
    if (is_op(P, "=")) {
        P->i++;
        n->a = parse_tuple_expr(P);
        end_block(P);
        return n;
    }
    /* block set: {% set x %}...{% endset %}, optionally through filters */
    n->kind = N_SET_BLOCK;
    jnode *filters = NULL;
    while (is_op(P, "|")) {
        P->i++;
        filters = parse_filter(P, filters);
    }
    n->b = filters;
    end_block(P);
    static const char *const ends[] = {"endset", NULL};
    const char *which;
    n->body = parse_body(P, ends, &which);
    end_block(P);
    return n;
}

/* Macro parameters "(a, b=1)" into n->kw_names (names) and n->kw_vals (defaults, NULL when none). */
static void parse_params(parser *P, jnode *n) {
    kwlist params = {0};
    expect_op(P, "(");
    while (!is_op(P, ")")) {
        if (params.vals.n) expect_op(P, ",");
        if (is_op(P, ")")) break;
        const jtok *name = expect_name(P);
        jnode *dflt = NULL;
        if (is_op(P, "=")) {
            P->i++;
            dflt = parse_expr(P);
        } else if (params.vals.n && params.vals.v[params.vals.n - 1]) {
            perr(P, "%s", "a parameter without a default follows one with a default");
        }
        kw_push(P, &params, name->p, name->n, dflt);
    }
    P->i++;
    n->kw_names = params.names;
    n->kw_lens = params.lens;
    n->n_kw = params.vals.n;
    n->kw_vals = nl_done(&params.vals);
}

static jnode *parse_macro(parser *P, int line) {
    jnode *n = mk(P, N_MACRO, line);
    const jtok *name = expect_name(P);
    n->name = name->p;
    n->name_n = name->n;
    parse_params(P, n);
    end_block(P);
    static const char *const ends[] = {"endmacro", NULL};
    const char *which;
    int loops = P->loops;
    P->loops = 0;
    n->body = parse_body(P, ends, &which);
    P->loops = loops;
    if (cur(P)->kind == T_NAME) P->i++; /* {% endmacro name %} */
    end_block(P);
    return n;
}

static jnode *parse_call_block(parser *P, int line) {
    jnode *n = mk(P, N_CALL_BLOCK, line);
    if (is_op(P, "(")) parse_params(P, n);
    n->a = parse_expr(P);
    if (n->a->kind != E_CALL) perr(P, "%s", "expected a call after {% call %}");
    end_block(P);
    static const char *const ends[] = {"endcall", NULL};
    const char *which;
    n->body = parse_body(P, ends, &which);
    end_block(P);
    return n;
}

static jnode *parse_filter_block(parser *P, int line) {
    jnode *n = mk(P, N_FILTER_BLOCK, line);
    jnode *filters = NULL;
    do {
        if (filters) P->i++;
        filters = parse_filter(P, filters);
    } while (is_op(P, "|"));
    n->b = filters;
    end_block(P);
    static const char *const ends[] = {"endfilter", NULL};
    const char *which;
    n->body = parse_body(P, ends, &which);
    end_block(P);
    return n;
}

static jnode *parse_with(parser *P, int line) {
    jnode *n = mk(P, N_WITH, line);
    kwlist assigns = {0};
    while (!(cur(P)->kind == T_BLOCK_END)) {
        if (assigns.vals.n) expect_op(P, ",");
        const jtok *name = expect_name(P);
        expect_op(P, "=");
        kw_push(P, &assigns, name->p, name->n, parse_expr(P));
    }
    n->kw_names = assigns.names;
    n->kw_lens = assigns.lens;
    n->n_kw = assigns.vals.n;
    n->kw_vals = nl_done(&assigns.vals);
    end_block(P);
    static const char *const ends[] = {"endwith", NULL};
    const char *which;
    n->body = parse_body(P, ends, &which);
    end_block(P);
    return n;
}

static jnode *parse_statement(parser *P) {
    const jtok *kw = cur(P);
    int line = kw->line;
    if (kw->kind != T_NAME) perr(P, "%s", "expected a statement name after '{%'");
    P->i++;
    enter(P);
    jnode *n;
    if (tok_is_name(kw, "for")) n = parse_for(P, line);
    else if (tok_is_name(kw, "if")) n = parse_if(P, line);
    else if (tok_is_name(kw, "set")) n = parse_set(P, line);
    else if (tok_is_name(kw, "macro")) n = parse_macro(P, line);
    else if (tok_is_name(kw, "call")) n = parse_call_block(P, line);
    else if (tok_is_name(kw, "filter")) n = parse_filter_block(P, line);
    else if (tok_is_name(kw, "with")) n = parse_with(P, line);
    else if (tok_is_name(kw, "break") || tok_is_name(kw, "continue")) {
        if (!P->loops) {
            P->i--;
            perr(P, "%s", tok_is_name(kw, "break") ? "'break' outside a loop" : "'continue' outside a loop");
        }
        n = mk(P, tok_is_name(kw, "break") ? N_BREAK : N_CONTINUE, line);
        end_block(P);
    } else {
        P->i--;
        char m[80];
        snprintf(m, sizeof m, "%.*s", (int)(kw->n < 40 ? kw->n : 40), kw->p);
        static const char *const known[] = {"include", "import", "from", "extends", "block", "do", "autoescape"};
        for (size_t k = 0; k < sizeof known / sizeof *known; k++)
            if (tok_is_name(kw, known[k])) perr(P, "the '%s' statement is not supported in chat templates", m);
        perr(P, "unknown statement '%s'", m);
    }
    P->nesting--;
    return n;
}

/* Statements until {% one of ends %} (left at its name, consumed: *which names it); NULL ends = the template. */
static jnodes parse_body(parser *P, const char *const *ends, const char **which) {
    nlist body = {0};
    for (;;) {
        const jtok *t = cur(P);
        switch ((jtok_kind)t->kind) {
        case T_EOF:
            if (ends) {
                char m[96];
                snprintf(m, sizeof m, "unexpected end of template: expected '{%% %s %%}'", ends[0]);
                perr(P, "%s", m);
            }
            *which = NULL;
            return nl_done(&body);
        case T_TEXT: {
            jnode *n = mk(P, N_TEXT, t->line);
            n->name = t->p;
            n->name_n = t->n;
            nl_push(P, &body, n);
            P->i++;
            break;
        }
        case T_VAR_BEGIN: {
            P->i++;
            jnode *n = mk(P, N_OUTPUT, t->line);
            n->a = parse_tuple_expr(P);
            expect_kind(P, T_VAR_END, "'}}'");
            nl_push(P, &body, n);
            break;
        }
        case T_BLOCK_BEGIN: {
            const jtok *name = next_tok(P);
            if (ends && name->kind == T_NAME) {
                for (const char *const *e = ends; *e; e++)
                    if (tok_is_name(name, *e)) {
                        P->i += 2;
                        *which = *e;
                        return nl_done(&body);
                    }
            }
            if (name->kind == T_NAME) {
                static const char *const closers[] = {"endfor",   "endif",   "elif",      "else",   "endset",
                                                      "endmacro", "endcall", "endfilter", "endwith"};
                for (size_t k = 0; k < sizeof closers / sizeof *closers; k++)
                    if (tok_is_name(name, closers[k])) {
                        P->i++;
                        char m[96];
                        if (ends) snprintf(m, sizeof m, "unexpected '%s': expected '%s'", closers[k], ends[0]);
                        else snprintf(m, sizeof m, "unexpected '%s' outside any block", closers[k]);
                        perr(P, "%s", m);
                    }
            }
            P->i++;
            nl_push(P, &body, parse_statement(P));
            break;
        }
        default: perr(P, "unexpected %s", tok_desc(t));
        }
    }
}

jnode *jinja_parse(jctx *c, const jtok *toks, size_t n_toks) {
    parser P = {.c = c, .t = toks, .n = n_toks};
    const char *which;
    jnode *root = ja_alloc(&c->arena, sizeof *root);
    root->kind = N_WITH; /* a body without assignments */
    root->line = 1;
    root->body = parse_body(&P, NULL, &which);
    return root;
}
