/* quality.c — tandem_perplexity and tandem_kld: how well a model predicts a text, and how far a compressed
 * model's next-token distributions are from its reference's, scored chunk by chunk as llama.cpp does; running stats. */
#include <math.h>
#include <stdlib.h>

#include "runtime.h"

tandem_eval_params tandem_eval_default_params(void) {
    return (tandem_eval_params){.n_ctx = 512, .n_batch = 64, .max_chunks = 0, .kv_type = TANDEM_TYPE_F16};
}

/* log-softmax statistics of one row of logits, in double */
typedef struct row_stats {
    double log_z;    /* log Σ exp(logit) */
    int32_t argmax;
    double max;
} row_stats;

static row_stats row_stats_of(const float *logits, int32_t V) {
    row_stats r = {.argmax = 0, .max = logits[0]};
    for (int32_t i = 1; i < V; i++)
        if (logits[i] > r.max) {
            r.max = logits[i];
            r.argmax = i;
        }
    double sum = 0;
    for (int32_t i = 0; i < V; i++) sum += exp((double)logits[i] - r.max);
    r.log_z = r.max + log(sum);
    return r;
}

/* KL(p_ref ‖ p_model) = Σ p_ref (log p_ref − log p_model) for one position. */
static double kl_row(const float *ref, row_stats rs, const float *model, row_stats ms, int32_t V) {
    double kl = 0;
    for (int32_t i = 0; i < V; i++) {
        const double lr = (double)ref[i] - rs.log_z, lm = (double)model[i] - ms.log_z;
        kl += exp(lr) * (lr - lm);
    }
    return kl > 0 ? kl : 0;  /* rounding can give -1e-17 */
}

void tandem_running_stats_add(tandem_running_stats *s, double x) {
    s->n++;
    s->sum += x;
    const double d = x - s->welford_mean;
    s->welford_mean += d / (double)s->n;
    s->m2 += d * (x - s->welford_mean);
}
double tandem_running_stats_mean(const tandem_running_stats *s) { return s->n ? s->sum / (double)s->n : 0; }
double tandem_running_stats_sd(const tandem_running_stats *s) {
    return s->n < 2 ? 0 : sqrt(s->m2 / (double)(s->n - 1));
}

/* The standard error of the mean. */
static double running_stderr(const tandem_running_stats *r) {
    return r->n < 2 ? 0 : tandem_running_stats_sd(r) / sqrt((double)r->n);
}

/* Evaluates ids[0 .. n_ctx) in ctx from an empty cache; the first half without logits, then the scored half
 * in batches whose logits land in buf (n_batch × V). For each scored position calls score(pos, logits). */
typedef struct chunk_eval {
    tandem_ctx *ctx;
    float *buf;
    int32_t n_batch;
} chunk_eval;

static tandem_status eval_prefix(chunk_eval *e, const int32_t *ids, int32_t first) {
    tandem_status st = tandem_ctx_truncate(e->ctx, 0);
    if (st) return st;
    return first > 0 ? tandem_ctx_eval(e->ctx, ids, first, NULL) : TANDEM_OK;
}

tandem_status quality_eval_ids(tandem_model *model, tandem_model *ref, const int32_t *ids, size_t n_ids,
                              const tandem_eval_params *params, tandem_quality_result *out) {
    tandem_eval_params defaults = tandem_eval_default_params();
    const tandem_eval_params *p = params ? params : &defaults;
    memset(out, 0, sizeof *out);
    if (!model || !ids) return tandem_fail(TANDEM_ERR_INVALID_ARG, "perplexity: no model or no tokens");
    const int32_t V = model->qwen.cfg.vocab_size;
    if (ref && ref->qwen.cfg.vocab_size != V)
        return tandem_fail(TANDEM_ERR_MISMATCH, "kld: the model has %d vocabulary rows, the reference %d", V,
                           ref->qwen.cfg.vocab_size);
    if (ref) {
        tandem_status st = tandem_model_check_draft(ref, model);
        if (st) return st;
    }
    const int32_t n_ctx = p->n_ctx > 0 ? p->n_ctx : 512, n_batch = p->n_batch > 0 ? p->n_batch : 64;
    if (n_ctx < 4) return tandem_fail(TANDEM_ERR_INVALID_ARG, "perplexity: a chunk of %d tokens is too short (at least 4)", n_ctx);
    const int32_t max_ctx = model->qwen.cfg.context_length < (ref ? ref->qwen.cfg.context_length : INT32_MAX)
                                ? model->qwen.cfg.context_length : ref->qwen.cfg.context_length;
    if (n_ctx > max_ctx)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "perplexity: chunks of %d tokens exceed the model's context of %d",
                           n_ctx, max_ctx);

    tandem_ctx *mctx = NULL, *rctx = NULL;
    float *mbuf = NULL, *rbuf = NULL;
    tandem_status st = TANDEM_OK;
    int64_t n_chunks = (int64_t)n_ids / n_ctx;
    if (p->max_chunks > 0 && n_chunks > p->max_chunks) n_chunks = p->max_chunks;
    if (n_chunks < 1) {
        st = tandem_fail(TANDEM_ERR_INVALID_ARG, "perplexity: the text has %zu tokens, fewer than one chunk of %d "
                         "(use a longer text or a smaller context)", n_ids, n_ctx);
        goto done;
    }
    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.exact = p->exact;
    cp.kv_type = p->kv_type;
    if ((st = tandem_ctx_init(model, &cp, &mctx))) goto done;
    if (ref && (st = tandem_ctx_init(ref, &cp, &rctx))) goto done;
    mbuf = malloc((size_t)n_batch * (size_t)V * sizeof(float));
    rbuf = ref ? malloc((size_t)n_batch * (size_t)V * sizeof(float)) : NULL;
    if (!mbuf || (ref && !rbuf)) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "perplexity: out of memory");
        goto done;
    }
    tandem_running_stats nll = {0}, ref_nll = {0}, kld = {0};
    int64_t agree = 0;
    chunk_eval me = {mctx, mbuf, n_batch}, re = {rctx, rbuf, n_batch};
    /* scored: logits at positions first … n_ctx-2, each predicting the next token */
    const int32_t first = n_ctx / 2;
    for (int64_t c = 0; c < n_chunks; c++) {
        const int32_t *chunk = ids + c * n_ctx;
        if ((st = eval_prefix(&me, chunk, first))) goto done;
        if (ref && (st = eval_prefix(&re, chunk, first))) goto done;
        for (int32_t pos = first; pos < n_ctx - 1; pos += n_batch) {
            const int32_t nb = pos + n_batch <= n_ctx - 1 ? n_batch : n_ctx - 1 - pos;
            if ((st = tandem_ctx_eval(mctx, chunk + pos, nb, mbuf))) goto done;
            if (ref && (st = tandem_ctx_eval(rctx, chunk + pos, nb, rbuf))) goto done;
            for (int32_t k = 0; k < nb; k++) {
                const float *ml = mbuf + (size_t)k * V;
                const int32_t next = chunk[pos + k + 1];
                row_stats ms = row_stats_of(ml, V);
                tandem_running_stats_add(&nll, ms.log_z - (double)ml[next]);
                if (ref) {
                    const float *rl = rbuf + (size_t)k * V;
                    row_stats rs = row_stats_of(rl, V);
                    tandem_running_stats_add(&ref_nll, rs.log_z - (double)rl[next]);
                    const double d = kl_row(rl, rs, ml, ms, V);
                    tandem_running_stats_add(&kld, d);
                    if (d > out->kld_max) out->kld_max = d;
                    agree += rs.argmax == ms.argmax;
                }
            }
        }
        if (p->progress && !p->progress("evaluate", c + 1, n_chunks, p->user)) {
            st = tandem_fail(TANDEM_ERR_ABORTED, "perplexity: stopped");
            goto done;
        }
    }
    out->n_chunks = (int32_t)n_chunks;
    out->n_scored = nll.n;
    out->perplexity = exp(tandem_running_stats_mean(&nll));
    out->nll_stderr = running_stderr(&nll);
    if (ref) {
        out->ref_perplexity = exp(tandem_running_stats_mean(&ref_nll));
        out->kld_mean = tandem_running_stats_mean(&kld);
        out->kld_stderr = running_stderr(&kld);
        out->top1_agreement = kld.n ? (double)agree / (double)kld.n : 0;
    }
done:
    tandem_ctx_free(mctx);
    tandem_ctx_free(rctx);
    free(mbuf);
    free(rbuf);
    return st;
}

static tandem_status quality_run(tandem_model *model, tandem_model *ref, const char *text, size_t len,
                                 const tandem_eval_params *params, tandem_quality_result *out) {
    memset(out, 0, sizeof *out);
    if (!model || !text) return tandem_fail(TANDEM_ERR_INVALID_ARG, "perplexity: no model or no text");
    int32_t *ids = NULL;
    size_t n_ids = 0;
    tandem_status st = tandem_tokenizer_encode(model->tokenizer, text, len, false, &ids, &n_ids);
    if (st) return st;
    st = quality_eval_ids(model, ref, ids, n_ids, params, out);
    tandem_free(ids);
    return st;
}

tandem_status tandem_perplexity(tandem_model *model, const char *text, size_t len, const tandem_eval_params *params,
                                tandem_quality_result *result) {
    return quality_run(model, NULL, text, len, params, result);
}

tandem_status tandem_kld(tandem_model *model, tandem_model *ref, const char *text, size_t len,
                         const tandem_eval_params *params, tandem_quality_result *result) {
    if (!ref) return tandem_fail(TANDEM_ERR_INVALID_ARG, "kld: no reference model");
    return quality_run(model, ref, text, len, params, result);
}
