/* grammar.c — tandem's side of llguidance: its view of a tandem tokenizer (token bytes, added tokens flagged,
 * end ids, tandem's encoder), compiled grammars (tandem_grammar) and the per-generation matchers of grammar.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "grammar_internal.h"
#include "llguidance.h"
#include "tokenizer_derived.h"

/* ---- llguidance's vocabulary, built once per tokenizer (tokenizer_derived) ---- */

typedef struct llg_vocab {
    LlgTokenizer *llg;
    int32_t n_vocab;
    int32_t eos[8]; /* end ids (the first 8) */
    int32_t n_eos;
} llg_vocab;

/* llguidance asks tandem's encoder for the tokens of a byte string (forced text, lexeme boundaries); called from
 * whatever thread uses a matcher: tandem_tokenizer_encode keeps no state between calls. */
static size_t tokenize_bytes(const void *user, const uint8_t *bytes, size_t len, uint32_t *out, size_t out_len) {
    const tandem_tokenizer *tok = user;
    int32_t *ids = NULL;
    size_t n = 0;
    if (tandem_tokenizer_encode(tok, (const char *)bytes, len, false, &ids, &n) != TANDEM_OK) return 0;
    for (size_t i = 0; i < n && i < out_len; i++) out[i] = (uint32_t)ids[i];
    tandem_free(ids);
    return n;
}

static void vocab_free(void *p) {
    llg_vocab *v = p;
    if (!v) return;
    llg_free_tokenizer(v->llg);
    free(v);
}

/* Token bytes as llguidance wants them: added tokens (<|im_end|>, <tool_call>, <think>) behind the 0xFF marker, so
 * that text never spells them and a grammar names them as <[id]>; ids without a token are empty (never allowed). */
static void *vocab_build(const tandem_tokenizer *tok, void *arg) {
    tandem_status *st = arg;
    const int32_t n = tandem_tokenizer_vocab_size(tok);
    size_t n_eos = 0;
    const int32_t *eos = tandem_tokenizer_eos_ids(tok, &n_eos);
    if (n_eos == 0) {
        *st = tandem_fail(TANDEM_ERR_UNSUPPORTED, "tandem_grammar: the tokenizer has no end-of-generation id");
        return NULL;
    }
    uint32_t *lens = malloc(sizeof *lens * (size_t)(n > 0 ? n : 1));
    byte_buf bytes = {0};
    uint32_t *extra = malloc(sizeof *extra * n_eos);
    llg_vocab *v = calloc(1, sizeof *v);
    bool ok = lens && extra && v;
    for (int32_t id = 0; ok && id < n; id++) {
        size_t len = 0;
        const char *p = tandem_tokenizer_token_bytes(tok, id, &len);
        if (!p) len = 0;
        const bool added = p && tokenizer_is_added(tok, id);
        const uint8_t marker = 0xFF;
        ok = (!added || byte_buf_append(&bytes, &marker, 1)) && (len == 0 || byte_buf_append(&bytes, p, len));
        lens[id] = (uint32_t)(len + added);
    }
    if (!ok) {
        *st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_grammar: out of memory");
    } else {
        for (size_t i = 1; i < n_eos; i++) extra[i - 1] = (uint32_t)eos[i];
        LlgTokenizerInitV2 init;
        memset(&init, 0, sizeof init);
        init.struct_size = sizeof init;
        init.vocab_size = (uint32_t)n;
        init.tok_eos = (uint32_t)eos[0];
        init.token_lens = lens;
        init.token_bytes = bytes.data;
        init.tokenize_fn = tokenize_bytes;
        init.tokenize_user_data = tok;
        init.tok_eos_extra = extra;
        init.tok_eos_extra_count = (uint32_t)(n_eos - 1);
        char err[512] = "";
        v->llg = llg_new_tokenizer_v2(&init, err, sizeof err);
        v->n_vocab = n;
        v->n_eos = n_eos < 8 ? (int32_t)n_eos : 8;
        for (int32_t i = 0; i < v->n_eos; i++) v->eos[i] = eos[i];
        if (!v->llg) *st = tandem_fail(TANDEM_ERR_FORMAT, "tandem_grammar: tokenizer: %s", err);
    }
    free(lens);
    free(bytes.data);
    free(extra);
    if (*st != TANDEM_OK) {
        vocab_free(v);
        return NULL;
    }
    return v;
}

/* ---- compiled grammars ---- */

struct tandem_grammar {
    LlgMatcher *start; /* the grammar at its start: every generation's matcher is a clone of it */
    const llg_vocab *vocab;
};

tandem_status grammar_compile(const tandem_tokenizer *tok, const char *kind, const char *text, const char *fn,
                              const char *field, tandem_grammar **out) {
    tandem_status st = TANDEM_OK;
    llg_vocab *v = tokenizer_derived(tok, vocab_build, &st, vocab_free);
    if (!v) return st ? st : tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", fn);
    LlgConstraintInit init;
    memset(&init, 0, sizeof init);
    llg_constraint_init_set_defaults(&init, v->llg);
    init.log_stderr_level = 0; /* errors come back as messages, never on stderr */
    init.log_buffer_level = 0;
    init.limits.verbose_errors = false; /* the message, without a dump of the grammar */
    LlgMatcher *m = llg_new_matcher(&init, kind, text);
    const char *err = m ? llg_matcher_get_error(m) : "out of memory";
    if (err) {
        /* llguidance's Lark errors start "at LINE(COLUMN): " and show the grammar below: the grammar is ours, the
         * reason is the caller's (its schema), so the message keeps only the reason */
        const char *reason = err;
        if (!strncmp(reason, "at ", 3) && strstr(reason, "): ")) reason = strstr(reason, "): ") + 3;
        char msg[600];
        size_t o = 0;
        for (const char *line = reason; *line && o + 2 < sizeof msg;) {
            const size_t len = strcspn(line, "\n");
            size_t lead = strspn(line, " "), digits = strspn(line + lead, "0123456789");
            if (digits > 0 && !strncmp(line + lead + digits, " | ", 3)) break; /* the grammar's listing begins */
            if (o > 0) msg[o++] = ' ';
            for (size_t i = lead; i < len && o + 1 < sizeof msg; i++) msg[o++] = line[i];
            line += len + (line[len] == '\n');
        }
        msg[o] = '\0';
        st = tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: %s: %s", fn, field, msg);
        llg_free_matcher(m);
        return st;
    }
    tandem_grammar *g = malloc(sizeof *g);
    if (!g) {
        llg_free_matcher(m);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", fn);
    }
    *g = (tandem_grammar){.start = m, .vocab = v};
    *out = g;
    return TANDEM_OK;
}

int32_t grammar_vocab_size(const tandem_grammar *g) { return g->vocab->n_vocab; }

void tandem_grammar_free(tandem_grammar *g) {
    if (!g) return;
    llg_free_matcher(g->start);
    free(g);
}

/* ---- matchers ---- */

/* llguidance ends a grammar where it may stop but takes no end id there once it has stopped, and its token check
 * refuses end ids: tandem handles them itself. An end id is allowed where the grammar accepts the output so far (as
 * llguidance's mask says), and is never passed on: the matcher only notes it, since nothing can follow. */
struct grammar_matcher {
    LlgMatcher *m;
    const llg_vocab *v;
    bool ended; /* the last id consumed is an end id */
};

static bool is_end(const llg_vocab *v, int32_t id) {
    for (int32_t i = 0; i < v->n_eos; i++)
        if (v->eos[i] == id) return true;
    return false;
}

static bool may_end(grammar_matcher *gm) { return llg_matcher_is_stopped(gm->m) || llg_matcher_is_accepting(gm->m); }

tandem_status grammar_matcher_new(const tandem_grammar *g, grammar_matcher **out) {
    *out = NULL;
    grammar_matcher *gm = malloc(sizeof *gm);
    LlgMatcher *m = gm ? llg_clone_matcher(g->start) : NULL;
    if (!m) {
        free(gm);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_generate: grammar: out of memory");
    }
    *gm = (grammar_matcher){.m = m, .v = g->vocab};
    *out = gm;
    return TANDEM_OK;
}

void grammar_matcher_free(grammar_matcher *gm) {
    if (!gm) return;
    llg_free_matcher(gm->m);
    free(gm);
}

static tandem_status matcher_failed(grammar_matcher *gm, const char *what) {
    const char *err = llg_matcher_get_error(gm->m);
    return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_generate: grammar: %s: %.600s", what, err ? err : "failed");
}

bool grammar_matcher_allows(grammar_matcher *gm, int32_t id) {
    if (gm->ended || id < 0 || id >= gm->v->n_vocab) return false;
    if (is_end(gm->v, id)) return may_end(gm);
    const uint32_t t = (uint32_t)id;
    return llg_matcher_validate_tokens(gm->m, &t, 1) == 1;
}

bool grammar_matcher_allows_more(const grammar_matcher *gm) { return !gm->ended; }

int32_t grammar_matcher_valid_prefix(grammar_matcher *gm, const int32_t *ids, int32_t n) {
    if (gm->ended) return 0;
    uint32_t t[64];
    int32_t k = 0;
    while (k < n && k < 64 && ids[k] >= 0 && ids[k] < gm->v->n_vocab && !is_end(gm->v, ids[k])) {
        t[k] = (uint32_t)ids[k];
        k++;
    }
    const int32_t valid = k > 0 ? llg_matcher_validate_tokens(gm->m, t, (size_t)k) : 0;
    if (valid < 0) return 0;
    if (valid < k || k == n || k == 64 || !is_end(gm->v, ids[k])) return valid;
    /* all valid up to an end id: it is valid where the grammar may end after them */
    bool end_ok = false;
    if (llg_matcher_consume_tokens(gm->m, t, (size_t)k) == 0) {
        end_ok = may_end(gm);
        if (llg_matcher_rollback(gm->m, (size_t)k) != 0) end_ok = false;
    }
    return valid + end_ok;
}

tandem_status grammar_matcher_mask_logits(grammar_matcher *gm, float *logits, int32_t n_logits) {
    if (gm->ended) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_generate: grammar: nothing follows the end");
    if (llg_matcher_compute_mask(gm->m) != 0) return matcher_failed(gm, "mask");
    const uint32_t *mask = llg_matcher_get_mask(gm->m);
    if (!mask) return matcher_failed(gm, "mask");
    const bool end_ok = may_end(gm);
    int32_t n_allowed = 0;
    for (int32_t id = 0; id < n_logits; id++) {
        bool ok = id < gm->v->n_vocab && (mask[id >> 5] >> (id & 31) & 1u);
        if (id < gm->v->n_vocab && is_end(gm->v, id)) ok = end_ok;
        if (ok) n_allowed++;
        else logits[id] = -INFINITY;
    }
    if (n_allowed == 0) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_generate: grammar: no token may come next");
    return TANDEM_OK;
}

tandem_status grammar_matcher_consume(grammar_matcher *gm, int32_t id) {
    if (id < 0 || id >= gm->v->n_vocab)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_generate: grammar: token %d is outside the tokenizer", id);
    if (gm->ended) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_generate: grammar: token %d after the end", id);
    if (is_end(gm->v, id)) {
        if (!may_end(gm))
            return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_generate: grammar: end id %d before the grammar may end",
                               id);
        gm->ended = true;
        return TANDEM_OK;
    }
    if (llg_matcher_consume_token(gm->m, (uint32_t)id) != 0) return matcher_failed(gm, "consume");
    return TANDEM_OK;
}

tandem_status grammar_matcher_rollback(grammar_matcher *gm, int32_t n) {
    if (n > 0 && gm->ended) {
        gm->ended = false;
        n--;
    }
    if (n > 0 && llg_matcher_rollback(gm->m, (size_t)n) != 0) return matcher_failed(gm, "rollback");
    return TANDEM_OK;
}
