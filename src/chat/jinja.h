/* jinja.h — the chat layer's Jinja2 interpreter (internal): values in an arena, the lexer, the parser's tree,
 * the evaluator. Errors unwind with longjmp to the one entry point, which owns every allocation (the arena). */
#ifndef TANDEM_JINJA_H
#define TANDEM_JINJA_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tandem_base.h"

/* ---- the arena: every value, node and string of one parse or render lives here ---- */

typedef struct jarena_block jarena_block;
typedef struct jctx jctx;

typedef struct jarena {
    jarena_block *head;
    size_t used, limit; /* bytes handed out and the cap (an error past it) */
    jctx *owner;        /* whom to unwind when the cap is hit or malloc fails */
} jarena;

void *ja_alloc(jarena *a, size_t n); /* zeroed; unwinds the owner on failure */
void jarena_free(jarena *a);

/* ---- values (Python's semantics, as jinja2 sees them) ---- */

typedef enum jtype {
    JV_UNDEF,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,
    JV_DICT,
    JV_NS,
    JV_MACRO,
    JV_FUNC,
    JV_LOOP
} jtype;

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jmacro jmacro;
typedef struct jfunc jfunc;
typedef struct jloop jloop;

typedef struct jv {
    uint8_t t;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p; /* UTF-8, not NUL-terminated; for JV_UNDEF the name that was missing (or NULL) */
            size_t n;
        } s;
        jlist *l;
        jdict *d; /* JV_DICT and JV_NS */
        jmacro *m;
        jfunc *fn;
        jloop *loop;
    };
} jv;

struct jlist {
    jv *items;
    size_t n;
    bool tuple;
};
struct jdict {
    jv *keys, *vals;
    size_t n, cap;
};

/* ---- errors and limits ---- */

typedef enum jerr_kind {
    JERR_NONE,
    JERR_SYNTAX,  /* the template does not parse */
    JERR_RUNTIME, /* a type error, an undefined value used, a bad argument (what normalisation may cure) */
    JERR_RAISED,  /* raise_exception() */
    JERR_LIMIT,   /* a sandbox bound (steps, loop iterations, recursion, output or memory) */
} jerr_kind;

typedef struct jlimits {
    int64_t max_steps;      /* evaluated nodes */
    int64_t max_iterations; /* loop iterations, all loops together */
    int32_t max_depth;      /* nested macro calls */
    int64_t max_output;     /* bytes of the rendered text */
    size_t max_memory;      /* arena bytes */
} jlimits;

struct jctx {
    jarena arena;
    jmp_buf on_error;
    jerr_kind err_kind;
    tandem_status err_status;
    char err[512];
    const char *origin; /* names the template in errors */
    int line;           /* the line being evaluated, for runtime errors */
    jlimits lim;
    int64_t steps, iterations, out_bytes;
    int32_t depth; /* nested macro calls */
    int32_t nest;  /* recursion of the evaluator and of value walks (equality, order, repr, JSON): C stack */
    int64_t now_unix;
};

/* Records the error (prefixed "chat template (origin): line N: ") and unwinds to ctx->on_error. */
_Noreturn void jfail(jctx *c, jerr_kind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
_Noreturn void jfail_at(jctx *c, jerr_kind kind, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Every recursive function of the interpreter enters and leaves through these, so that no template or value
 * (a list nested a million deep, built in a loop) can exhaust the C stack. */
#define JINJA_MAX_NEST 500 /* a sanitizer build's evaluator frames take kilobytes each */
static inline void nest_in(jctx *c) {
    if (++c->nest > JINJA_MAX_NEST)
        jfail(c, JERR_LIMIT, "the template or a value nests more than %d levels deep (the sandbox's limit)",
              JINJA_MAX_NEST);
}
static inline void nest_out(jctx *c) { c->nest--; }

/* ---- strings ---- */

typedef struct jbuf {
    char *p;
    size_t n, cap;
    bool is_output; /* counts against lim.max_output */
} jbuf;
void jb_put(jctx *c, jbuf *b, const char *s, size_t n);
void jb_puts(jctx *c, jbuf *b, const char *s);
void jb_printf(jctx *c, jbuf *b, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

jv jv_str(jctx *c, const char *s, size_t n); /* copies into the arena */
jv jv_str_lit(const char *s);                /* borrows a static string */
jv jv_undef(const char *name);
jv jv_none(void);
jv jv_bool(bool b);
jv jv_int(int64_t i);
jv jv_float(double f);
jv jv_list(jctx *c, size_t n); /* n items, all undefined, to fill */
jv jv_dict(jctx *c);
void jdict_set(jctx *c, jdict *d, jv key, jv val);
bool jdict_get(jctx *c, const jdict *d, jv key, jv *out);
bool jdict_get_str(const jdict *d, const char *key, jv *out);

/* UTF-8 helpers (strings are valid UTF-8: templates and JSON are checked on entry). */
size_t utf8_len(const char *s, size_t n);                    /* code points */
size_t utf8_offset(const char *s, size_t n, size_t cp);      /* byte offset of code point cp (n past the end) */
uint32_t utf8_decode(const char *s, size_t n, size_t *used); /* one code point */
size_t utf8_encode(uint32_t cp, char out[4]);
bool utf8_valid(const char *s, size_t n);
bool py_isspace(uint32_t cp); /* str.isspace()'s set */

const char *jv_type_name(jv v); /* Python's type name: 'str', 'int', 'dict', ... */
bool jv_truthy(jv v);
bool jv_equal(jctx *c, jv a, jv b);
int jv_compare(jctx *c, jv a, jv b);     /* <0, 0, >0; a type error for unordered types */
void jv_to_str(jctx *c, jbuf *b, jv v);  /* str(v) */
void jv_repr(jctx *c, jbuf *b, jv v);    /* repr(v) */
jv jv_stringify(jctx *c, jv v);          /* str(v) as a string value */
void float_repr(double f, char out[32]); /* Python's repr of a float */

/* HF's tojson: json.dumps(x, ensure_ascii=False, indent, separators, sort_keys). indent: NULL = none. */
typedef struct jjson_opts {
    const char *indent; /* NULL: one line */
    size_t indent_n;
    const char *item_sep, *key_sep;
    bool sort_keys;
    bool ensure_ascii; /* non-ASCII (and DEL) as \uXXXX escapes, as json.dumps(ensure_ascii=True) */
} jjson_opts;
void jv_to_json(jctx *c, jbuf *b, jv v, const jjson_opts *o, int level);
/* A jansson value as a template value (objects keep their order). */
struct json_t;
jv jv_from_json(jctx *c, const struct json_t *j);

/* ---- the lexer ---- */

typedef enum jtok_kind {
    T_EOF,
    T_TEXT,
    T_VAR_BEGIN,
    T_VAR_END,
    T_BLOCK_BEGIN,
    T_BLOCK_END,
    T_NAME,
    T_STRING,
    T_INT,
    T_FLOAT,
    T_OP
} jtok_kind;

typedef struct jtok {
    uint8_t kind;
    int line, col;
    const char *p; /* T_TEXT, T_NAME, T_OP: the source bytes; T_STRING: the unescaped value (arena) */
    size_t n;
    int64_t i;
    double f;
} jtok;

/* Tokenises src as transformers' environment does (trim_blocks, lstrip_blocks, newline normalisation, the
 * final newline dropped). *toks in the arena; a syntax error unwinds. */
void jinja_lex(jctx *c, const char *src, size_t n, jtok **toks, size_t *n_toks);

/* ---- the tree ---- */

typedef enum jnode_kind {
    /* statements */
    N_TEXT,
    N_OUTPUT,
    N_IF,
    N_FOR,
    N_SET,
    N_SET_BLOCK,
    N_MACRO,
    N_CALL_BLOCK,
    N_FILTER_BLOCK,
    N_WITH,
    N_BREAK,
    N_CONTINUE,
    /* expressions */
    E_CONST,
    E_NAME,
    E_ATTR,
    E_ITEM,
    E_SLICE,
    E_CALL,
    E_FILTER,
    E_TEST,
    E_BINOP,
    E_NEG,
    E_POS,
    E_NOT,
    E_AND,
    E_OR,
    E_COMPARE,
    E_COND,
    E_LIST,
    E_TUPLE,
    E_DICT,
    E_NSREF
} jnode_kind;

typedef enum jop {
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_FLOORDIV,
    OP_MOD,
    OP_POW,
    OP_CONCAT,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_IN,
    OP_NOTIN
} jop;

typedef struct jnode jnode;
typedef struct jnodes {
    jnode **v;
    size_t n;
} jnodes;

/* One node; what each field means depends on kind (see jinja_parse.c, where each is built). */
struct jnode {
    uint8_t kind, op;
    bool flag; /* E_TEST: negated; N_MACRO/E_CALL: has a caller; N_FOR: has else */
    int line;
    const char *name;
    size_t name_n;
    jv value;              /* E_CONST */
    jnode *a, *b, *c, *d;  /* operands, conditions, targets */
    jnodes body, orelse;   /* statement bodies; E_LIST/E_TUPLE/E_CALL args; E_DICT keys/values */
    jnodes kw_vals;        /* keyword argument values; macro defaults; E_COMPARE operands */
    const char **kw_names; /* keyword names; macro parameters; for/set target names */
    size_t *kw_lens;
    size_t n_kw;
    uint8_t *ops; /* E_COMPARE's operators */
};

jnode *jinja_parse(jctx *c, const jtok *toks, size_t n_toks);

/* ---- the evaluator ---- */

typedef struct jscope jscope;
/* Renders root with vars (a dict of the template's variables) into out. Unwinds on error. */
void jinja_render(jctx *c, const jnode *root, jdict *vars, jbuf *out);

/* Builtins (jinja_builtins.c), called by the evaluator. Each takes positional args and keyword args. */
typedef struct jargs {
    jv *pos;
    size_t n_pos;
    const char **kw;
    size_t *kw_n;
    jv *kw_vals;
    size_t n_kw;
} jargs;
bool jinja_filter(jctx *c, const char *name, size_t name_n, jv in, const jargs *a, jv *out);
bool jinja_filter_exists(const char *name, size_t n); /* jinja2 rejects unknown names when compiling */
bool jinja_test_exists(const char *name, size_t n);
bool jinja_test(jctx *c, const char *name, size_t name_n, jv in, const jargs *a, bool *out);
jv jinja_getattr(jctx *c, jv obj, const char *name, size_t n); /* obj.name */
jv jinja_getitem(jctx *c, jv obj, jv key);                     /* obj[key] */
jv jinja_global(jctx *c, const char *name, size_t n);          /* a builtin global, or undefined */
jv jinja_call_builtin(jctx *c, const jfunc *fn, const jargs *a);
/* Calls a macro or builtin from inside a filter (map, select with a test name go through jinja_test). */
jv jinja_call_value(jctx *c, jv callee, const jargs *a);
/* Python's printf-style formatting, fmt % args (the % operator on a string and the format filter). */
jv jinja_percent_format(jctx *c, jv fmt, jv args);
bool jinja_is_callable(jv v);

struct jfunc {
    int id;  /* which builtin */
    jv self; /* the bound object of a method */
};

struct jloop {
    const jlist *items;
    size_t index0;
    jv cycle_fn;
    int depth0;
};

jv jinja_loop_attr(jctx *c, const jloop *l, const char *name, size_t n);

/* Keyword or positional argument i / name, else dflt. */
jv jarg(const jargs *a, size_t i, const char *name, jv dflt);
void jargs_check(jctx *c, const jargs *a, size_t max_pos, const char *const *names, const char *what);

#endif
