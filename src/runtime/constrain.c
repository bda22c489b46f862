/* constrain.c — drawing a token under a grammar (tandem_gen_params.grammar): the sampler's distribution restricted
 * to the tokens the grammar allows next, cheaply when the sampler's own choice is allowed (the usual case).
 *
 * The distribution, with t = the sampler's final distribution (penalties, temperature, top-k/p, min-p) and A the
 * allowed set: D = t restricted to A and renormalised when t(A) > 0, else t' = the sampler's distribution over the
 * logits with every id outside A at -inf. Greedy: D is a point mass at the best allowed id (the masked argmax).
 *
 * Sample-then-check draws from D without a mask in the common case: draw x ~ t; if x ∈ A keep it, else compute the
 * mask and draw from t restricted to A (or from t' when t(A) = 0). For y ∈ A, P(y) = t(y) + (1 − t(A))·t(y)/t(A)
 * = t(y)/t(A) = D(y); when t(A) = 0 the first draw is always refused and the second is from t' = D.
 *
 * min_new_tokens (never with a grammar) bans the end ids for the first draws differently: their logits are set to
 * -inf BEFORE the sampler (transformers' MinNewTokensLengthLogitsProcessor runs before its warpers), so top-k and
 * top-p pick among the other ids; the draw is then from the sampler's distribution over those logits. */
#include <math.h>
#include <stdlib.h>

#include "runtime.h"

static tandem_status scratch(gen_emitter *e, int32_t V) {
    if (!e->masked) e->masked = malloc(sizeof(float) * (size_t)V);
    if (!e->probs) e->probs = malloc(sizeof(float) * (size_t)V);
    if (!e->masked || !e->probs) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_generate: out of memory");
    return TANDEM_OK;
}

/* Whether the end ids are banned at the draw of generated id number r->n_ids + ahead (min_new_tokens). */
static bool ends_banned(const gen_emitter *e, int32_t ahead) {
    return e->r->n_ids + (size_t)ahead < (size_t)e->params->min_new_tokens;
}

/* e->masked = logits with the end ids at -inf. */
static tandem_status ban_ends(gen_emitter *e, const float *logits, int32_t V) {
    tandem_status st = scratch(e, V);
    if (st) return st;
    memcpy(e->masked, logits, sizeof(float) * (size_t)V);
    size_t n;
    const int32_t *eos = tandem_tokenizer_eos_ids(e->tok, &n);
    for (size_t i = 0; i < n; i++)
        if (eos[i] >= 0 && eos[i] < V) e->masked[eos[i]] = -INFINITY;
    return TANDEM_OK;
}

/* e->masked = logits with every id the grammar refuses at -inf. */
static tandem_status mask_logits(gen_emitter *e, const float *logits, int32_t V) {
    tandem_status st = scratch(e, V);
    if (st) return st;
    memcpy(e->masked, logits, sizeof(float) * (size_t)V);
    return grammar_matcher_mask_logits(e->grammar, e->masked, V);
}

/* probs (t, V floats) becomes D (see the top): zero outside A (e->masked holds the mask), renormalised; or t' when
 * nothing of t is allowed. */
static void restrict_probs(gen_emitter *e, tandem_sampler *s, float *probs, const int32_t *history, size_t n_history,
                           int32_t V) {
    double kept = 0;
    for (int32_t v = 0; v < V; v++) {
        if (e->masked[v] == -INFINITY) probs[v] = 0;
        kept += probs[v];
    }
    if (kept > 0) {
        for (int32_t v = 0; v < V; v++) probs[v] = (float)(probs[v] / kept);
    } else {
        tandem_sampler_probs(s, e->masked, history, n_history, probs);
    }
}

tandem_status constrained_sample(gen_emitter *e, tandem_sampler *s, const float *logits, const int32_t *history,
                                 size_t n_history, int32_t V, int32_t ahead, int32_t *out) {
    if (ends_banned(e, ahead)) {
        tandem_status st = ban_ends(e, logits, V);
        if (!st) *out = tandem_sampler_sample(s, e->masked, history, n_history);
        return st;
    }
    const int32_t x = tandem_sampler_sample(s, logits, history, n_history);
    if (!e->grammar || grammar_matcher_allows(e->grammar, x)) {
        *out = x;
        return TANDEM_OK;
    }
    tandem_status st = mask_logits(e, logits, V);
    if (st) return st;
    if (sampler_is_greedy(s)) { /* t is a point mass outside A: D is the masked argmax */
        *out = tandem_sampler_sample(s, e->masked, history, n_history);
        return TANDEM_OK;
    }
    tandem_sampler_probs(s, logits, history, n_history, e->probs);
    restrict_probs(e, s, e->probs, history, n_history, V);
    *out = sampler_draw(s, e->probs, V);
    return TANDEM_OK;
}

tandem_status constrained_probs(gen_emitter *e, tandem_sampler *s, const float *logits, const int32_t *history,
                                size_t n_history, int32_t V, int32_t ahead, float *probs) {
    if (ends_banned(e, ahead)) {
        tandem_status st = ban_ends(e, logits, V);
        if (!st) tandem_sampler_probs(s, e->masked, history, n_history, probs);
        return st;
    }
    if (!e->grammar) return TANDEM_OK;
    if (sampler_is_greedy(s)) { /* the point mass stays where it is when allowed (no mask needed) */
        int32_t at = 0;
        while (at < V - 1 && probs[at] <= 0) at++;
        if (grammar_matcher_allows(e->grammar, at)) return TANDEM_OK;
        tandem_status st = mask_logits(e, logits, V);
        if (st) return st;
        tandem_sampler_probs(s, e->masked, history, n_history, probs);
        return TANDEM_OK;
    }
    tandem_status st = mask_logits(e, logits, V);
    if (st) return st;
    restrict_probs(e, s, probs, history, n_history, V);
    return TANDEM_OK;
}
