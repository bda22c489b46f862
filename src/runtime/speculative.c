/* speculative.c — speculative decoding: a draft model and/or n-gram lookup propose tokens, the target
 * verifies them in one batched pass, and the speculative sampling rule keeps the output exactly the target's.
 *
 * One round, with `pending` the last emitted token (sampled, not yet in the target's KV cache):
 *   1. propose x_0 … x_{k-1} after pending (lookup match, else the draft model; q_i their distributions)
 *   2. target evaluates [pending, x_0 … x_{k-1}] in one pass → distributions p_0 … p_k
 *   3. for i < k: accept x_i with probability min(1, p_i(x_i) / q_i(x_i)); on the first rejection emit a
 *      token drawn from normalise(max(0, p_i − q_i)) and stop; if all are accepted, emit a bonus token ~ p_k
 *   4. roll the target's cache back to pending + accepted tokens; the last emitted token is the new pending.
 * Greedy decoding is the special case of one-hot p and q: accept iff x_i is the target's argmax. */
#include <math.h>
#include <stdlib.h>

#include "runtime.h"

enum { MAX_DRAFT = 64, MAX_NGRAM = 16, PROBE_INTERVAL = 16 };

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

/* Brings the draft context to hold exactly seq[0..len) with logits for its last position. */
static tandem_status draft_sync(tandem_ctx *d, const int32_t *seq, int32_t len) {
    int32_t common = 0;
    while (common < d->n_past && common < len && d->tokens[common] == seq[common]) common++;
    if (common == len) common = len - 1;  /* the last position's logits must be recomputed */
    tandem_status st = tandem_ctx_truncate(d, common);
    if (st) return st;
    return tandem_ctx_eval(d, seq + common, len - common, NULL);
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

/* ---- the decoder: one round per step ---- */

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
    float *logits;        /* (k+1, V) target logits of a pass */
    float *p_probs;       /* (k+1, V) target distributions */
    float *q_probs;       /* (k, V) proposal distributions */
    int32_t *seq;         /* the sequence: cache + pending + drafts */
    bool *one_hot;        /* q_i is a point mass (lookup / greedy) */
    bool *from_lookup;
};

void spec_decoder_free(spec_decoder *d) {
    if (!d) return;
    tandem_sampler_free(d->draft_sampler);
    free(d->logits);
    free(d->p_probs);
    free(d->q_probs);
    free(d->seq);
    free(d->one_hot);
    free(d->from_lookup);
    free(d);
}

tandem_status spec_decoder_init(tandem_ctx *target, const tandem_gen_params *p, tandem_sampler *sampler,
                                spec_decoder **out) {
    *out = NULL;
    const tandem_spec_params *sp = &p->spec;
    const int32_t V = target->model->qwen.cfg.vocab_size, n_ctx = target->cache->n_ctx;
    if (sp->draft_max < 1 || sp->draft_max > MAX_DRAFT)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "speculative: draft_max %d outside 1..%d", sp->draft_max, MAX_DRAFT);
    if (sp->draft_min < 0 || sp->draft_min > sp->draft_max)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "speculative: draft_min %d outside 0..draft_max", sp->draft_min);
    if (!(sp->draft_p_min >= 0 && sp->draft_p_min <= 1))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "speculative: draft_p_min %g outside [0, 1]", sp->draft_p_min);
    if (sp->lookup_ngram < 0 || sp->lookup_ngram > MAX_NGRAM)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "speculative: lookup n-gram %d outside 0..%d", sp->lookup_ngram,
                           MAX_NGRAM);
    if (p->draft == target)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "speculative: the draft context must not be the target context");

    const int32_t K = sp->draft_max;
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
    d->p_probs = malloc(sizeof(float) * (size_t)V * (K + 1));
    d->q_probs = malloc(sizeof(float) * (size_t)V * K);
    d->seq = malloc(sizeof(int32_t) * ((size_t)n_ctx + K + 2));
    d->one_hot = malloc(sizeof(bool) * (size_t)K);
    d->from_lookup = malloc(sizeof(bool) * (size_t)K);
    tandem_status st = TANDEM_OK;
    if (!d->logits || !d->p_probs || !d->q_probs || !d->seq || !d->one_hot || !d->from_lookup) {
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

/* Proposals for one round after seq[0..len) (written to seq[len..]): lookup first (free), else the draft model.
 * Returns how many. */
static tandem_status propose(spec_decoder *d, gen_emitter *e, int32_t len, int32_t max_k, tandem_spec_stats *stats,
                             int32_t *n_out) {
    const tandem_spec_params *sp = &d->p->spec;
    int32_t *seq = d->seq;
    const int32_t V = d->V;
    int32_t k = lookup_propose(seq, len, sp->lookup_ngram, max_k, seq + len);
    for (int32_t i = 0; i < k; i++) {
        d->one_hot[i] = true;
        d->from_lookup[i] = true;
    }
    if (k == 0 && d->draft && max_k > 0) {
        int32_t gamma = sp->adaptive ? choose_length(&d->lm, max_k) : max_k;
        stats->n_rounds_draft_off += gamma == 0;
        if (gamma > 0) {
            double t_sync = now_ms();
            tandem_status st = draft_sync(d->draft, seq, len);
            if (st) return st;
            /* catching up (the prompt, accepted tokens) is draft time, but not the per-step cost c */
            double t0 = now_ms();
            stats->draft_ms += t0 - t_sync;
            /* under a grammar the draft drafts under it too (its q restricted as the target's p will be), stepping
             * the matcher through its own tokens and rolling it back after: fewer proposals the target must refuse */
            int32_t n_consumed = 0;
            for (int32_t i = 0; i < gamma; i++) {
                const float *dl = tandem_ctx_logits(d->draft);
                if (sp->draft_p_min > 0 && max_softmax_prob(dl, V) < sp->draft_p_min) break;
                int32_t x;
                const size_t n_hist = (size_t)(len + i);
                if (d->greedy) { /* q is the point mass at the draft's (allowed) argmax */
                    st = constrained_sample(e, d->draft_sampler, dl, seq, n_hist, V, &x);
                } else {
                    float *q = d->q_probs + (size_t)i * V;
                    tandem_sampler_probs(d->draft_sampler, dl, seq, n_hist, q);
                    st = constrained_probs(e, d->draft_sampler, dl, seq, n_hist, V, q);
                    x = sampler_draw(d->draft_sampler, q, V);
                }
                if (!st && e->grammar && !(st = grammar_matcher_consume(e->grammar, x))) n_consumed++;
                if (st) {
                    if (e->grammar) (void)grammar_matcher_rollback(e->grammar, n_consumed);
                    return st;
                }
                seq[len + i] = x;
                d->one_hot[i] = d->greedy;
                d->from_lookup[i] = false;
                k = i + 1;
                if (e->grammar && !grammar_matcher_allows_more(e->grammar)) break; /* an end id: nothing follows */
                if (i + 1 < gamma && (st = tandem_ctx_eval(d->draft, &x, 1, NULL))) break;
            }
            if (e->grammar) {
                tandem_status st2 = grammar_matcher_rollback(e->grammar, n_consumed);
                if (!st) st = st2;
            }
            if (st) return st;
            const double dt = now_ms() - t0;
            stats->draft_ms += dt;
            d->draft_step_ms += dt;
            if (k > 0) ema(&d->lm.t_draft, dt / k);
            if (k < sp->draft_min) k = 0; /* too short to be worth a wider pass */
        }
    }
    *n_out = k;
    return TANDEM_OK;
}

tandem_status spec_decoder_step(spec_decoder *d, gen_emitter *e) {
    tandem_ctx *target = d->target;
    tandem_gen_result *r = e->r;
    tandem_spec_stats *stats = &r->spec_stats;
    const int32_t V = d->V, n_ctx = target->cache->n_ctx;
    int32_t *seq = d->seq;
    tandem_status st;

    if (!d->started) { /* the first token comes from the prompt's logits, as without speculation */
        d->started = true;
        tandem_status st0 = constrained_sample(e, d->sampler, tandem_ctx_logits(target), target->tokens,
                                               (size_t)target->n_past, V, &d->pending);
        return st0 ? st0 : emitter_push(e, d->pending);
    }

    const int32_t base = target->n_past; /* tokens in the cache before this round */
    if (base >= n_ctx) {
        r->finish = TANDEM_FINISH_CONTEXT_FULL;
        return TANDEM_OK;
    }
    memcpy(seq, target->tokens, sizeof *seq * (size_t)base);
    seq[base] = d->pending;
    const int32_t len = base + 1;
    int32_t room = n_ctx - len, max_k = d->K < room ? d->K : room;
    /* never propose past max_tokens: those tokens could not be emitted anyway */
    if (d->p->max_tokens >= 0) {
        int32_t left = d->p->max_tokens - (int32_t)r->n_ids - 1; /* a round also emits one target token */
        if (left < max_k) max_k = left > 0 ? left : 0;
    }

    /* 1. proposals */
    int32_t k;
    if ((st = propose(d, e, len, max_k, stats, &k))) return st;

    /* Under a grammar, proposals are cut before the first one it refuses (the matcher has taken pending already):
     * that one is not evaluated, but stays the proposal at its position, where the rule below rejects it (the
     * grammar gives it probability 0) and draws from the residual, as it would had it been evaluated. */
    int32_t refused = -1;
    if (e->grammar && k > 0) {
        const int32_t valid = grammar_matcher_valid_prefix(e->grammar, seq + len, k);
        if (valid < k) {
            refused = seq[len + valid];
            k = valid;
        }
    }

    /* 2. one target pass over pending + proposals */
    double t0 = now_ms();
    if ((st = tandem_ctx_eval(target, seq + base, k + 1, d->logits))) return st;
    const double dt = now_ms() - t0;
    stats->target_ms += dt;
    ema(&d->lm.t_pass[k + 1], dt);
    stats->n_rounds++;
    /* each position's distribution, restricted by the grammar in the state after the proposals before it: the
     * matcher steps through them tentatively and is rolled back to pending (the emitter advances it again by the
     * tokens kept) */
    for (int32_t i = 0; i <= k; i++) {
        float *p_i = d->p_probs + (size_t)i * V;
        tandem_sampler_probs(d->sampler, d->logits + (size_t)i * V, seq, (size_t)(len + i), p_i);
        /* after a proposed end id nothing is emitted: that position's distribution is never used */
        if (!e->grammar || !grammar_matcher_allows_more(e->grammar)) continue;
        if ((st = constrained_probs(e, d->sampler, d->logits + (size_t)i * V, seq, (size_t)(len + i), V, p_i)))
            return st;
        if (i < k && (st = grammar_matcher_consume(e->grammar, seq[len + i]))) return st;
    }
    if (e->grammar && (st = grammar_matcher_rollback(e->grammar, k))) return st;

    /* 3. accept or correct */
    int32_t accepted = 0, next = -1;
    for (int32_t i = 0; i < k; i++) {
        const int32_t x = seq[len + i];
        bool accept;
        const int32_t out = spec_accept_or_correct(d->sampler, d->p_probs + (size_t)i * V,
                                                   d->one_hot[i] ? NULL : d->q_probs + (size_t)i * V, x, V,
                                                   d->logits /* no longer needed: scratch */, &accept);
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
    if (next < 0 && refused >= 0) { /* the refused proposal, at position k */
        bool accept;
        next = spec_accept_or_correct(d->sampler, d->p_probs + (size_t)k * V,
                                      d->one_hot[k] ? NULL : d->q_probs + (size_t)k * V, refused, V, d->logits,
                                      &accept);
        (void)accept; /* never: the grammar gives it probability 0 */
        stats->n_drafted++;
        stats->n_drafted_lookup += d->from_lookup[k];
    }
    if (next < 0) next = sampler_draw(d->sampler, d->p_probs + (size_t)k * V, V); /* bonus ~ p_k (one-hot if greedy) */

    /* 4. roll back what was rejected, emit what was kept */
    if ((st = tandem_ctx_truncate(target, len + accepted))) return st;
    for (int32_t i = 0; i < accepted && r->finish == TANDEM_FINISH_NONE; i++)
        if ((st = emitter_push(e, seq[len + i]))) return st;
    if (r->finish != TANDEM_FINISH_NONE) return TANDEM_OK;
    d->pending = next;
    return emitter_push(e, next);
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
