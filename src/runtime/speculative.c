/* speculative.c — speculative decoding: a draft model and/or n-gram lookup propose tokens, the target
 * verifies them in one batched pass, and the speculative sampling rule keeps the output exactly the target's.
 *
 * One round, with `pending` the last emitted token (sampled, not yet in the target's KV cache):
 *   1. propose x_0 … x_{k-1} after pending (lookup match, else the draft model; q_i their distributions)
 *   2. target evaluates [pending, x_0 … x_{k-1}] in one pass → distributions p_0 … p_k
 *   3. for i < k: accept x_i with probability min(1, p_i(x_i) / q_i(x_i)); on the first rejection emit a
 *      token drawn from normalise(max(0, p_i − q_i)) and stop; if all are accepted, emit a bonus token ~ p_k
 *   4. roll the target's cache back to pending + accepted tokens; the last emitted token is the new pending.
 * Greedy decoding is the special case of one-hot p and q: accept iff x_i is the target's argmax.
 *
 * Proposals come from the request's predicted output (tandem_gen_params.prediction), else n-gram lookup in the
 * sequence, else the draft model. A round runs in phases (spec_round_begin, _draft, _end) around the passes it needs,
 * so that tandem_generate (spec_decoder_step) evaluates them on its own contexts and an engine batches them with
 * other sequences' (engine.c): one implementation of the rule and its bookkeeping for both. */
#include <math.h>
#include <stdlib.h>

#include "runtime.h"

enum { MAX_DRAFT = 64, MAX_NGRAM = 16, PROBE_INTERVAL = 16, PREDICTION_NGRAM = 3 };

tandem_spec_params tandem_spec_default_params(void) {
    return (tandem_spec_params){.draft_max = 8, .draft_min = 1, .draft_p_min = 0.0f, .adaptive = true,
                                .lookup_ngram = 0};
}

/* ---- vocabulary check ---- */

tandem_status tandem_model_check_draft(const tandem_model *target, const tandem_model *draft) {
    const int32_t vt = target->qwen.cfg.vocab_size, vd = draft->qwen.cfg.vocab_size;
    if (vt != vd)
        return tandem_fail(TANDEM_ERR_MISMATCH, "draft %s has %d vocabulary rows, target %s has %d: they must match",
                           draft->path, vd, target->path, vt);
    /* Token counts may differ only by padding entries (a GGUF lists "[PAD…]" rows that tokenizer.json
     * omits); the text of every id both know is compared on a sample below. */
    const tandem_tokenizer *a = target->tokenizer, *b = draft->tokenizer;
    const int32_t na = tandem_tokenizer_vocab_size(a), nb = tandem_tokenizer_vocab_size(b);
    const int32_t n_common = na < nb ? na : nb;
    size_t ne_a, ne_b;
    const int32_t *ea = tandem_tokenizer_eos_ids(a, &ne_a), *eb = tandem_tokenizer_eos_ids(b, &ne_b);
    bool same_eos = ne_a == ne_b;
    for (size_t i = 0; same_eos && i < ne_a; i++) {
        bool found = false;
        for (size_t j = 0; j < ne_b; j++) found |= ea[i] == eb[j];
        same_eos = found;
    }
    if (!same_eos)
        return tandem_fail(TANDEM_ERR_MISMATCH, "draft %s and target %s end generation on different token ids",
                           draft->path, target->path);
    /* every 97th id plus the last 64 common ids (where added tokens live) must have the same text */
    for (int32_t id = 0; id < n_common;
         id = id + 97 < n_common - 64 ? id + 97 : (id < n_common - 64 ? n_common - 64 : id + 1)) {
        size_t la, lb;
        const char *ta = tandem_tokenizer_token_bytes(a, id, &la), *tb = tandem_tokenizer_token_bytes(b, id, &lb);
        if ((ta == NULL) != (tb == NULL) || (ta && (la != lb || memcmp(ta, tb, la) != 0)))
            return tandem_fail(TANDEM_ERR_MISMATCH, "draft %s and target %s disagree on the text of token %d",
                               draft->path, target->path, id);
    }
    return TANDEM_OK;
}

/* ---- proposals ---- */

/* Prompt lookup: the continuation after the most recent earlier occurrence of the last n tokens of seq. */
static int32_t lookup_propose(const int32_t *seq, int32_t len, int32_t n, int32_t max, int32_t *out) {
    if (n <= 0 || len <= n || max <= 0) return 0;
    const int32_t *tail = seq + len - n;
    for (int32_t start = len - n - 1; start >= 0; start--) {
        if (memcmp(seq + start, tail, (size_t)n * sizeof *seq) != 0) continue;
        int32_t k = 0;
        while (k < max && start + n + k < len) {
            out[k] = seq[start + n + k];
            k++;
        }
        return k;
    }
    return 0;
}

static float max_softmax_prob(const float *logits, int32_t n) {
    float m = logits[0];
    for (int32_t i = 1; i < n; i++) m = logits[i] > m ? logits[i] : m;
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)logits[i] - m);
    return (float)(1.0 / sum);
}

/* ---- adaptive draft length ---- */

/* The draft length that maximises expected tokens per unit of time, from the measured acceptance rate α,
 * draft step cost and target pass cost for k tokens: E(γ) = (1 − α^{γ+1}) / (1 − α), cost = γ·t_d + T(γ+1). */
typedef struct length_model {
    double alpha;           /* running acceptance rate of draft-model tokens */
    double t_draft;         /* ms per draft step */
    double t_pass[MAX_DRAFT + 2];  /* ms per target pass of k tokens (0: unmeasured) */
    int32_t since_probe;    /* plain steps since the last probe */
    int32_t probe_interval; /* plain steps between probes: doubles while probes find nothing */
} length_model;

/* Target pass time for k tokens: measured, or scaled from the nearest measured size (a pass over more
 * tokens costs a little more: weights are read once per pass, arithmetic grows with k). */
static double pass_cost(const length_model *lm, int32_t k) {
    if (lm->t_pass[k] > 0) return lm->t_pass[k];
    for (int32_t d = 1; d <= MAX_DRAFT + 1; d++) {
        if (k - d >= 1 && lm->t_pass[k - d] > 0) return lm->t_pass[k - d] * (1.0 + 0.1 * (k - 1)) / (1.0 + 0.1 * (k - d - 1));
        if (k + d <= MAX_DRAFT + 1 && lm->t_pass[k + d] > 0)
            return lm->t_pass[k + d] * (1.0 + 0.1 * (k - 1)) / (1.0 + 0.1 * (k + d - 1));
    }
    return 1.0 + 0.1 * (k - 1);
}

static int32_t choose_length(length_model *lm, int32_t max) {
    if (lm->t_draft <= 0) return max < 4 ? max : 4;  /* nothing measured yet: start moderately */
    const double a = lm->alpha < 0.999 ? lm->alpha : 0.999;
    int32_t best = 0;
    double best_rate = 1.0 / pass_cost(lm, 1);
    for (int32_t g = 1; g <= max; g++) {
        double expected = (1.0 - pow(a, g + 1)) / (1.0 - a);
        double rate = expected / (g * lm->t_draft + pass_cost(lm, g + 1));
        if (rate > best_rate) {
            best_rate = rate;
            best = g;
        }
    }
    if (best == 0 && ++lm->since_probe >= lm->probe_interval) {  /* re-measure now and then: text changes */
        lm->since_probe = 0;
        return max < 2 ? max : 2;
    }
    if (best > 0) lm->since_probe = 0;
    return best;
}

static void ema(double *x, double v) { *x = *x > 0 ? 0.8 * *x + 0.2 * v : v; }

/* ---- the speculative sampling rule ---- */

int32_t spec_accept_or_correct(tandem_sampler *s, const float *p, const float *q, int32_t x, int32_t V,
                               float *scratch, bool *accepted) {
    const float qx = q ? q[x] : 1.0f;
    /* greedy: p is one-hot, accept iff it is at x; no random draw, so greedy output never depends on it */
    *accepted = sampler_is_greedy(s) ? p[x] > 0 : sampler_uniform(s) * qx < p[x];
    if (*accepted) return x;
    for (int32_t v = 0; v < V; v++) {  /* the residual max(0, p − q); sampler_draw normalises it */
        const float qv = q ? q[v] : (v == x ? 1.0f : 0.0f);
        scratch[v] = p[v] > qv ? p[v] - qv : 0.0f;
    }
    return sampler_draw(s, scratch, V);
}

/* ---- the decoder: one round in phases ---- */

struct spec_decoder {
    tandem_ctx *target, *draft;
    const tandem_gen_params *p;
    tandem_sampler *sampler;       /* the sequence's (borrowed) */
    tandem_sampler *draft_sampler; /* the draft's own draws (sampling only) */
    int32_t V, K;                  /* vocabulary rows, draft_max */
    bool greedy;
    bool started;    /* the first token is out: pending holds the last emitted one */
    int32_t pending; /* the last emitted token, not yet in target's cache */
    length_model lm;
    double draft_step_ms; /* draft time spent proposing (without catching up), for c */
    float *logits;        /* (k+1, V) target logits of a pass (spec_decoder_step) */
    float *residual;      /* (V) the acceptance rule's scratch (the logits stay readable: logprobs) */
    float *p_probs;       /* (k+1, V) target distributions */
    float *q_probs;       /* (k, V) proposal distributions */
    int32_t *seq;         /* the sequence: cache + pending + drafts */
    bool *one_hot;        /* q_i is a point mass (lookup / greedy) */
    bool *from_lookup;
    int32_t pred_at; /* the prediction's index where the output last followed it */
    /* the round in progress */
    int32_t base, len, k; /* tokens in target's cache before it; + pending; proposals in seq[len..len+k) */
    int32_t gamma;        /* draft-model tokens asked for (0: none) */
    int32_t n_consumed;   /* grammar steps taken through draft tokens, rolled back when drafting ends */
    int32_t refused;      /* a proposal the grammar refuses, cut from the pass (-1: none) */
    int32_t pred_from;    /* the prediction's index of proposal 0 (-1: not from the prediction) */
    double t_phase, t_draft0;
};

void spec_decoder_free(spec_decoder *d) {
    if (!d) return;
    tandem_sampler_free(d->draft_sampler);
    free(d->logits);
    free(d->residual);
    free(d->p_probs);
    free(d->q_probs);
    free(d->seq);
    free(d->one_hot);
    free(d->from_lookup);
    free(d);
}

tandem_status spec_check_params(const tandem_gen_params *p, int32_t vocab_size) {
    const tandem_spec_params *sp = &p->spec;
    if (sp->draft_max < 1 || sp->draft_max > MAX_DRAFT)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "speculative: tandem_spec_params.draft_max %d outside 1..%d",
                           sp->draft_max, MAX_DRAFT);
    if (sp->draft_min < 0 || sp->draft_min > sp->draft_max)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "speculative: tandem_spec_params.draft_min %d outside 0..draft_max",
                           sp->draft_min);
    if (!(sp->draft_p_min >= 0 && sp->draft_p_min <= 1))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "speculative: tandem_spec_params.draft_p_min %g outside [0, 1]",
                           sp->draft_p_min);
    if (sp->lookup_ngram < 0 || sp->lookup_ngram > MAX_NGRAM)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "speculative: tandem_spec_params.lookup_ngram %d outside 0..%d",
                           sp->lookup_ngram, MAX_NGRAM);
    if (p->n_prediction < 0 || (p->n_prediction > 0 && !p->prediction))
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "speculative: tandem_gen_params.prediction: n_prediction %d but %s array", p->n_prediction,
                           p->prediction ? "an" : "no");
    for (int32_t i = 0; i < p->n_prediction; i++)
        if (p->prediction[i] < 0 || p->prediction[i] >= vocab_size)
            return tandem_fail(TANDEM_ERR_INVALID_ARG,
                               "speculative: tandem_gen_params.prediction: token id %d at index %d is outside 0..%d",
                               p->prediction[i], i, vocab_size - 1);
    return TANDEM_OK;
}

tandem_status spec_decoder_init(tandem_ctx *target, const tandem_gen_params *p, tandem_sampler *sampler,
                                spec_decoder **out) {
    *out = NULL;
    const int32_t V = target->model->qwen.cfg.vocab_size, n_ctx = target->cache->n_ctx;
    tandem_status st = spec_check_params(p, V);
    if (st) return st;
    if (p->draft == target)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "speculative: the draft context must not be the target context");

    const int32_t K = p->spec.draft_max;
    spec_decoder *d = calloc(1, sizeof *d);
    if (!d) return tandem_fail(TANDEM_ERR_NO_MEMORY, "speculative: out of memory");
    *d = (spec_decoder){.target = target,
                        .draft = p->draft,
                        .p = p,
                        .sampler = sampler,
                        .V = V,
                        .K = K,
                        .greedy = sampler_is_greedy(sampler),
                        .lm = {.alpha = 0.5, .probe_interval = PROBE_INTERVAL}};
    d->logits = malloc(sizeof(float) * (size_t)V * (K + 1));
    d->residual = malloc(sizeof(float) * (size_t)V);
    d->p_probs = malloc(sizeof(float) * (size_t)V * (K + 1));
    d->q_probs = malloc(sizeof(float) * (size_t)V * K);
    d->seq = malloc(sizeof(int32_t) * ((size_t)n_ctx + K + 2));
    d->one_hot = malloc(sizeof(bool) * (size_t)K);
    d->from_lookup = malloc(sizeof(bool) * (size_t)K);
    if (!d->logits || !d->residual || !d->p_probs || !d->q_probs || !d->seq || !d->one_hot || !d->from_lookup) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "speculative: out of memory");
    } else if (d->draft) {
        tandem_sampler_params dp = p->sampling;
        dp.seed ^= 0x9E3779B97F4A7C15ull;  /* an independent stream for the draft's own draws */
        st = tandem_sampler_init(&dp, V, &d->draft_sampler);
    }
    if (st) {
        spec_decoder_free(d);
        return st;
    }
    *out = d;
    return TANDEM_OK;
}

tandem_status spec_decoder_first(spec_decoder *d, gen_emitter *e, const float *logits) {
    d->started = true;
    tandem_status st = constrained_sample(e, d->sampler, logits, d->target->tokens, (size_t)d->target->n_past, d->V, 0,
                                          &d->pending);
    return st ? st : emitter_push(e, d->pending, logits);
}

/* Predicted output: while the tokens generated so far (n_gen, the last of seq[0..len)) are the prediction's start,
 * the prediction's rest; once they part, the continuation after an occurrence in the prediction of seq's last n
 * tokens, the first one at or after where the output last followed it (else the first one). */
static int32_t prediction_propose(spec_decoder *d, const int32_t *seq, int32_t len, int32_t n_gen, int32_t max,
                                  int32_t *out) {
    const int32_t *pred = d->p->prediction, n_pred = d->p->n_prediction;
    d->pred_from = -1;
    if (n_pred <= 0 || max <= 0) return 0;
    int32_t from = -1;
    if (n_gen <= n_pred && memcmp(seq + len - n_gen, pred, (size_t)n_gen * sizeof *seq) == 0) {
        from = n_gen;
    } else {
        const int32_t n = d->p->spec.lookup_ngram > 0 ? d->p->spec.lookup_ngram : PREDICTION_NGRAM;
        if (len < n) return 0;
        for (int32_t s = 0; s + n < n_pred; s++) {
            if (memcmp(pred + s, seq + len - n, (size_t)n * sizeof *seq) != 0) continue;
            if (from < 0) from = s + n;
            if (s + n >= d->pred_at) {
                from = s + n;
                break;
            }
        }
    }
    if (from < 0 || from >= n_pred) return 0;
    int32_t k = n_pred - from < max ? n_pred - from : max;
    memcpy(out, pred + from, (size_t)k * sizeof *out);
    d->pred_from = from;
    return k;
}

/* The proposals are complete (seq[len..len+k)): the draft's grammar steps undone, the draft's time counted, drafts
 * shorter than draft_min dropped, and the proposals cut before the first one the grammar refuses. Under a grammar
 * that one is not evaluated, but stays the proposal at its position, where the rule rejects it (the grammar gives it
 * probability 0) and draws from the residual, as it would had it been evaluated. */
static tandem_status proposals_done(spec_decoder *d, gen_emitter *e, bool drafted, const int32_t **ids, int32_t *n,
                                    spec_phase *next) {
    tandem_spec_stats *stats = &e->r->spec_stats;
    if (drafted) {
        if (e->grammar) {
            tandem_status st = grammar_matcher_rollback(e->grammar, d->n_consumed);
            d->n_consumed = 0;
            if (st) return st;
        }
        const double dt = now_ms() - d->t_draft0;
        stats->draft_ms += dt;
        d->draft_step_ms += dt;
        if (d->k > 0) ema(&d->lm.t_draft, dt / d->k);
        if (d->k < d->p->spec.draft_min) d->k = 0; /* too short to be worth a wider pass */
    }
    d->refused = -1;
    if (e->grammar && d->k > 0) { /* the matcher has taken pending already */
        const int32_t valid = grammar_matcher_valid_prefix(e->grammar, d->seq + d->len, d->k);
        if (valid < d->k) {
            d->refused = d->seq[d->len + valid];
            d->k = valid;
        }
    }
    *ids = d->seq + d->base;
    *n = d->k + 1;
    *next = SPEC_VERIFY;
    d->t_phase = now_ms();
    return TANDEM_OK;
}

tandem_status spec_round_begin(spec_decoder *d, gen_emitter *e, int32_t max_k, const int32_t **ids, int32_t *n,
                               spec_phase *next) {
    tandem_ctx *target = d->target;
    tandem_gen_result *r = e->r;
    const tandem_spec_params *sp = &d->p->spec;
    const int32_t n_ctx = target->cache->n_ctx;
    int32_t *seq = d->seq;
    *ids = NULL;
    *n = 0;
    *next = SPEC_DONE;
    const int32_t base = target->n_past; /* tokens in the cache before this round */
    if (base >= n_ctx) {
        r->finish = TANDEM_FINISH_CONTEXT_FULL;
        return TANDEM_OK;
    }
    memcpy(seq, target->tokens, sizeof *seq * (size_t)base);
    seq[base] = d->pending;
    const int32_t len = base + 1;
    const int32_t room = n_ctx - len;
    if (max_k > d->K) max_k = d->K;
    if (max_k > room) max_k = room;
    /* never propose past max_tokens: those tokens could not be emitted anyway */
    if (d->p->max_tokens >= 0) {
        int32_t left = d->p->max_tokens - (int32_t)r->n_ids - 1; /* a round also emits one target token */
        if (left < max_k) max_k = left > 0 ? left : 0;
    }
    if (max_k < 0) max_k = 0;
    d->base = base;
    d->len = len;
    d->gamma = 0;
    d->n_consumed = 0;

    /* proposals: the prediction, else lookup in the sequence (both free), else the draft model */
    int32_t k = prediction_propose(d, seq, len, (int32_t)r->n_ids, max_k, seq + len);
    if (k == 0) k = lookup_propose(seq, len, sp->lookup_ngram, max_k, seq + len);
    for (int32_t i = 0; i < k; i++) {
        d->one_hot[i] = true;
        d->from_lookup[i] = true;
    }
    d->k = k;
    if (k == 0 && d->draft && max_k > 0) {
        d->gamma = sp->adaptive ? choose_length(&d->lm, max_k) : max_k;
        r->spec_stats.n_rounds_draft_off += d->gamma == 0;
    }
    if (d->gamma == 0) return proposals_done(d, e, false, ids, n, next);
    /* the draft context catches up with seq[0..len): rows it holds of another sequence (a rejected draft, an older
     * request in an engine slot) are dropped, and the last token is evaluated again for its logits */
    tandem_ctx *dc = d->draft;
    int32_t common = 0;
    while (common < dc->n_past && common < len && dc->tokens[common] == seq[common]) common++;
    if (common == len) common = len - 1;
    tandem_status st = tandem_ctx_truncate(dc, common);
    if (st) return st;
    *ids = seq + common;
    *n = len - common;
    *next = SPEC_DRAFT;
    d->t_phase = now_ms();
    return TANDEM_OK;
}

void spec_round_pass_starts(spec_decoder *d) { d->t_phase = now_ms(); }

void spec_round_abort(spec_decoder *d, gen_emitter *e) {
    if (e->grammar && d->n_consumed > 0) (void)grammar_matcher_rollback(e->grammar, d->n_consumed);
    d->n_consumed = 0;
}

tandem_status spec_round_draft(spec_decoder *d, gen_emitter *e, const float *draft_logits, const int32_t **ids,
                               int32_t *n, spec_phase *next) {
    const tandem_spec_params *sp = &d->p->spec;
    const int32_t V = d->V, len = d->len, i = d->k;
    int32_t *seq = d->seq;
    if (i == 0) { /* catching up (the prompt, accepted tokens) is draft time, but not the per-step cost c */
        d->t_draft0 = now_ms();
        e->r->spec_stats.draft_ms += d->t_draft0 - d->t_phase;
    }
    if (sp->draft_p_min > 0 && max_softmax_prob(draft_logits, V) < sp->draft_p_min)
        return proposals_done(d, e, true, ids, n, next);
    /* under a grammar the draft drafts under it too (its q restricted as the target's p will be), stepping the
     * matcher through its own tokens and rolling it back after: fewer proposals the target must refuse */
    int32_t x;
    const size_t n_hist = (size_t)(len + i);
    tandem_status st;
    if (d->greedy) { /* q is the point mass at the draft's (allowed) argmax */
        st = constrained_sample(e, d->draft_sampler, draft_logits, seq, n_hist, V, i, &x);
    } else {
        float *q = d->q_probs + (size_t)i * V;
        tandem_sampler_probs(d->draft_sampler, draft_logits, seq, n_hist, q);
        st = constrained_probs(e, d->draft_sampler, draft_logits, seq, n_hist, V, i, q);
        x = sampler_draw(d->draft_sampler, q, V);
    }
    if (!st && e->grammar && !(st = grammar_matcher_consume(e->grammar, x))) d->n_consumed++;
    if (st) {
        spec_round_abort(d, e);
        return st;
    }
    seq[len + i] = x;
    d->one_hot[i] = d->greedy;
    d->from_lookup[i] = false;
    d->k = i + 1;
    if ((e->grammar && !grammar_matcher_allows_more(e->grammar)) /* an end id: nothing follows */
        || d->k == d->gamma)
        return proposals_done(d, e, true, ids, n, next);
    *ids = seq + len + i;
    *n = 1;
    *next = SPEC_DRAFT;
    return TANDEM_OK;
}

tandem_status spec_round_end(spec_decoder *d, gen_emitter *e, const float *logits) {
    tandem_ctx *target = d->target;
    tandem_gen_result *r = e->r;
    tandem_spec_stats *stats = &r->spec_stats;
    const int32_t V = d->V, len = d->len, k = d->k, refused = d->refused;
    int32_t *seq = d->seq;
    tandem_status st;

    const double dt = now_ms() - d->t_phase;
    stats->target_ms += dt;
    ema(&d->lm.t_pass[k + 1], dt);
    stats->n_rounds++;
    /* each position's distribution, restricted by the grammar in the state after the proposals before it (or by
     * min_new_tokens): the matcher steps through them tentatively and is rolled back to pending (the emitter
     * advances it again by the tokens kept) */
    for (int32_t i = 0; i <= k; i++) {
        float *p_i = d->p_probs + (size_t)i * V;
        tandem_sampler_probs(d->sampler, logits + (size_t)i * V, seq, (size_t)(len + i), p_i);
        /* after a proposed end id nothing is emitted: that position's distribution is never used */
        if (e->grammar && !grammar_matcher_allows_more(e->grammar)) continue;
        if ((st = constrained_probs(e, d->sampler, logits + (size_t)i * V, seq, (size_t)(len + i), V, i, p_i)))
            return st;
        if (e->grammar && i < k && (st = grammar_matcher_consume(e->grammar, seq[len + i]))) return st;
    }
    if (e->grammar && (st = grammar_matcher_rollback(e->grammar, k))) return st;

    /* accept or correct (a token's logits row, for its logprobs, is that of its position: the target's there) */
    int32_t accepted = 0, next = -1;
    for (int32_t i = 0; i < k; i++) {
        const int32_t x = seq[len + i];
        bool accept;
        const int32_t out = spec_accept_or_correct(d->sampler, d->p_probs + (size_t)i * V,
                                                   d->one_hot[i] ? NULL : d->q_probs + (size_t)i * V, x, V, d->residual,
                                                   &accept);
        stats->n_drafted++;
        stats->n_drafted_lookup += d->from_lookup[i];
        if (!accept) {
            next = out;
            break;
        }
        accepted++;
        stats->n_accepted++;
        stats->n_accepted_lookup += d->from_lookup[i];
    }
    if (k > 0 && !d->from_lookup[0]) {
        ema(&d->lm.alpha, (double)accepted / k);
        /* a draft that keeps failing is asked less and less often; one that helps, at the usual rate */
        d->lm.probe_interval = accepted == 0 ? (d->lm.probe_interval < 1024 ? 2 * d->lm.probe_interval : 1024)
                                             : PROBE_INTERVAL;
    }
    if (d->pred_from >= 0) d->pred_at = d->pred_from + accepted;
    if (next < 0 && refused >= 0) { /* the refused proposal, at position k */
        bool accept;
        next = spec_accept_or_correct(d->sampler, d->p_probs + (size_t)k * V,
                                      d->one_hot[k] ? NULL : d->q_probs + (size_t)k * V, refused, V, d->residual,
                                      &accept);
        (void)accept; /* never: the grammar gives it probability 0 */
        stats->n_drafted++;
        stats->n_drafted_lookup += d->from_lookup[k];
    }
    if (next < 0) next = sampler_draw(d->sampler, d->p_probs + (size_t)k * V, V); /* bonus ~ p_k (one-hot if greedy) */

    /* roll back what was rejected, emit what was kept */
    if ((st = tandem_ctx_truncate(target, len + accepted))) return st;
    for (int32_t i = 0; i < accepted && r->finish == TANDEM_FINISH_NONE; i++)
        if ((st = emitter_push(e, seq[len + i], logits + (size_t)i * V))) return st;
    if (r->finish != TANDEM_FINISH_NONE) return TANDEM_OK;
    d->pending = next;
    return emitter_push(e, next, logits + (size_t)accepted * V);
}

/* tandem_generate's round: the same phases, each pass on the sequence's own contexts. */
tandem_status spec_decoder_step(spec_decoder *d, gen_emitter *e) {
    if (!d->started) return spec_decoder_first(d, e, tandem_ctx_logits(d->target));
    const int32_t *ids;
    int32_t n;
    spec_phase next;
    tandem_status st = spec_round_begin(d, e, d->K, &ids, &n, &next);
    while (!st && next == SPEC_DRAFT) {
        if ((st = tandem_ctx_eval(d->draft, ids, n, NULL))) {
            spec_round_abort(d, e);
            return st;
        }
        st = spec_round_draft(d, e, tandem_ctx_logits(d->draft), &ids, &n, &next);
    }
    if (st || next == SPEC_DONE) return st;
    if ((st = tandem_ctx_eval(d->target, ids, n, d->logits))) return st;
    return spec_round_end(d, e, d->logits);
}

void spec_decoder_stats(const spec_decoder *d, tandem_gen_result *r) {
    tandem_spec_stats *stats = &r->spec_stats;
    stats->acceptance_rate = stats->n_drafted ? (double)stats->n_accepted / stats->n_drafted : 0;
    stats->mean_per_pass = stats->n_rounds ? (double)(r->n_ids - 1) / stats->n_rounds : 0;
    stats->mean_draft_len = stats->n_rounds ? (double)stats->n_drafted / stats->n_rounds : 0;
    const int32_t model_drafted = stats->n_drafted - stats->n_drafted_lookup;
    if (model_drafted > 0 && stats->n_rounds > 0) {
        double t_step = d->draft_step_ms / model_drafted, t_pass = stats->target_ms / stats->n_rounds;
        stats->draft_target_ratio = t_step / t_pass;
    }
    stats->predicted_speedup = stats->mean_per_pass / (stats->mean_draft_len * stats->draft_target_ratio + 1.0);
}
