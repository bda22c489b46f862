/* emit.c — the emitter: accepts generated ids into a tandem_gen_result (end ids, stop strings, max tokens) and
 * streams text once it is final (complete UTF-8, never part of a stop string). Semantics and hooks: emit.h. */
#include <math.h>
#include <stdlib.h>

#include "runtime.h"

/* Growable byte / id buffers for the result. */
static bool text_append(tandem_gen_result *r, size_t *cap, const char *s, size_t n) {
    if (r->text_len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < r->text_len + n + 1) c *= 2;
        char *p = realloc(r->text, c);
        if (!p) return false;
        r->text = p;
        *cap = c;
    }
    memcpy(r->text + r->text_len, s, n);
    r->text_len += n;
    r->text[r->text_len] = '\0';
    return true;
}

static bool id_append(tandem_gen_result *r, size_t *cap, int32_t id) {
    if (r->n_ids == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        int32_t *p = realloc(r->ids, c * sizeof *p);
        if (!p) return false;
        r->ids = p;
        *cap = c;
    }
    r->ids[r->n_ids++] = id;
    return true;
}

/* Where the first stop string starts in text[from..len), or -1. */
static ptrdiff_t find_stop(const tandem_gen_params *p, const char *text, size_t len, size_t from) {
    ptrdiff_t best = -1;
    for (int32_t i = 0; i < p->n_stop; i++) {
        const char *stop = p->stop[i];
        size_t sl = strlen(stop);
        if (sl == 0 || sl > len) continue;
        for (size_t at = from > sl ? from - sl + 1 : 0; at + sl <= len; at++)
            if (memcmp(text + at, stop, sl) == 0) {
                if (best < 0 || (ptrdiff_t)at < best) best = (ptrdiff_t)at;
                break;
            }
    }
    return best;
}

/* Length of the longest suffix of text[0..len) that is a proper prefix of some stop string: that much
 * must be held back from the stream, since the next token may complete the stop string. */
static size_t stop_prefix_hold(const tandem_gen_params *p, const char *text, size_t len) {
    size_t hold = 0;
    for (int32_t i = 0; i < p->n_stop; i++) {
        size_t sl = strlen(p->stop[i]);
        for (size_t k = sl > 1 ? sl - 1 : 0; k > hold; k--)
            if (k <= len && memcmp(text + len - k, p->stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

/* The record of id drawn from logits (n of them): log_softmax, and the n_top largest, ties to the lower id. */
static void token_logprob(const float *logits, int32_t n, int32_t id, int32_t n_top, tandem_token_logprob *out) {
    float max = logits[0];
    for (int32_t i = 1; i < n; i++) max = logits[i] > max ? logits[i] : max;
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += expf(logits[i] - max);
    const double lse = (double)max + log(sum);
    memset(out, 0, sizeof *out);
    out->id = id;
    out->logprob = (float)((double)logits[id] - lse);
    int32_t kept = 0; /* top_logprobs holds raw logits until the end, descending */
    for (int32_t i = 0; i < n && n_top > 0; i++) {
        const float v = logits[i];
        if (kept == n_top && !(v > out->top_logprobs[kept - 1])) continue;
        int32_t at = kept < n_top ? kept++ : kept - 1;
        for (; at > 0 && v > out->top_logprobs[at - 1]; at--) {
            out->top_logprobs[at] = out->top_logprobs[at - 1];
            out->top_ids[at] = out->top_ids[at - 1];
        }
        out->top_logprobs[at] = v;
        out->top_ids[at] = i;
    }
    out->n_top = kept;
    for (int32_t j = 0; j < kept; j++) out->top_logprobs[j] = (float)((double)out->top_logprobs[j] - lse);
}

static bool is_eos(const tandem_tokenizer *tok, int32_t id) {
    size_t n;
    const int32_t *eos = tandem_tokenizer_eos_ids(tok, &n);
    for (size_t i = 0; i < n; i++)
        if (eos[i] == id) return true;
    return false;
}

/* The one way text leaves the emitter (the streaming hook point, emit.h): r->text[streamed..upto). Returns the
 * callback's wish to go on. */
static bool stream_text(gen_emitter *e, size_t upto) {
    const tandem_gen_params *p = e->params;
    const size_t from = e->streamed;
    e->streamed = upto;
    return !p->on_text || p->on_text(e->r->text + from, upto - from, p->user);
}

tandem_status emitter_check_params(const tandem_gen_params *params, const char *fn) {
    for (int32_t i = 0; i < params->n_stop; i++)
        if (!params->stop || !params->stop[i])
            return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: stop string %d is NULL", fn, i);
    if (params->grammar && params->ignore_eos)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "%s: ignore_eos: cannot be true with a grammar (its end is an end id)", fn);
    if (params->min_new_tokens < 0)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: tandem_gen_params.min_new_tokens: %d is negative", fn,
                           params->min_new_tokens);
    if (params->min_new_tokens > 0 && params->grammar)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "%s: min_new_tokens: cannot be above 0 with a grammar (its end is an end id)", fn);
    if (params->top_logprobs < 0 || params->top_logprobs > TANDEM_MAX_TOP_LOGPROBS)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: tandem_gen_params.top_logprobs: %d is outside 0..%d", fn,
                           params->top_logprobs, TANDEM_MAX_TOP_LOGPROBS);
    return TANDEM_OK;
}

tandem_status emitter_init(gen_emitter *e, const tandem_gen_params *params, const tandem_tokenizer *tok,
                           int32_t n_vocab, tandem_gen_result *r, double t_start) {
    memset(r, 0, sizeof *r);
    *e = (gen_emitter){.params = params, .tok = tok, .r = r, .t_start = t_start, .n_vocab = n_vocab};
    tandem_status st = emitter_check_params(params, "tandem_generate");
    if (st) return st;
    if ((st = tandem_detokenizer_init(tok, &e->detok))) return st;
    if (params->grammar && grammar_vocab_size(params->grammar) != tandem_tokenizer_vocab_size(tok))
        return tandem_fail(TANDEM_ERR_MISMATCH,
                           "tandem_generate: grammar: made for a tokenizer of %d tokens, the model's has %d",
                           grammar_vocab_size(params->grammar), tandem_tokenizer_vocab_size(tok));
    if (params->grammar && (st = grammar_matcher_new(params->grammar, &e->grammar))) return st;
    if (!text_append(r, &e->text_cap, "", 0))
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_generate: out of memory");
    if (params->max_tokens == 0) r->finish = TANDEM_FINISH_LENGTH;
    return TANDEM_OK;
}

void emitter_free(gen_emitter *e) {
    tandem_detokenizer_free(e->detok);
    e->detok = NULL;
    grammar_matcher_free(e->grammar);
    e->grammar = NULL;
    free(e->masked);
    free(e->probs);
    e->masked = e->probs = NULL;
}

/* Appends id's record to r->logprobs and hands it to on_token. */
static bool push_logprob(gen_emitter *e, int32_t id, const float *logits) {
    tandem_gen_result *r = e->r;
    if (r->n_ids == e->logprobs_cap) {
        size_t c = e->logprobs_cap ? e->logprobs_cap * 2 : 64;
        tandem_token_logprob *p = realloc(r->logprobs, c * sizeof *p);
        if (!p) return false;
        r->logprobs = p;
        e->logprobs_cap = c;
    }
    tandem_token_logprob *lp = &r->logprobs[r->n_ids];
    token_logprob(logits, e->n_vocab, id, e->params->top_logprobs, lp);
    if (e->params->on_token) e->params->on_token(lp, e->params->user);
    return true;
}

tandem_status emitter_push(gen_emitter *e, int32_t id, const float *logits) {
    const tandem_gen_params *params = e->params;
    tandem_gen_result *r = e->r;
    if (r->n_ids == 0) {
        e->t_first = now_ms();
        r->timings.ttft_ms = e->t_first - e->t_start;
    }
    if (e->grammar) {
        tandem_status st = grammar_matcher_consume(e->grammar, id);
        if (st) return st;
    }
    if (params->logprobs && !push_logprob(e, id, logits)) goto oom;
    if (!params->logprobs && params->on_token) {
        const tandem_token_logprob bare = {.id = id};
        params->on_token(&bare, params->user);
    }
    if (!id_append(r, &e->ids_cap, id)) goto oom;
    if (!params->ignore_eos && is_eos(e->tok, id)) {
        r->finish = TANDEM_FINISH_EOS;
        return TANDEM_OK;
    }
    const char *piece = "";
    size_t piece_len = 0;
    /* A model may have more embedding rows than the tokenizer has tokens (Qwen3: 151936 vs 151669);
     * a sampled padding id has no text, and decodes to nothing, as in transformers. */
    if (tandem_tokenizer_token_bytes(e->tok, id, &piece_len) == NULL) {
        piece_len = 0;
    } else {
        tandem_status st = tandem_detokenizer_push(e->detok, id, &piece, &piece_len);
        if (st) return st;
    }
    const size_t before = r->text_len;
    if (!text_append(r, &e->text_cap, piece, piece_len)) goto oom;
    /* min_new_tokens: a stop string completed by one of the first min_new_tokens ids stays text */
    ptrdiff_t stop_at = r->n_ids > (size_t)params->min_new_tokens ? find_stop(params, r->text, r->text_len, before)
                                                                  : -1;
    if (stop_at >= 0) {
        r->text_len = (size_t)stop_at;
        r->text[r->text_len] = '\0';
        r->finish = TANDEM_FINISH_STOP_STRING;
        return TANDEM_OK;
    }
    const size_t safe = r->text_len - stop_prefix_hold(params, r->text, r->text_len);
    if (safe > e->streamed && !stream_text(e, safe)) {
        r->finish = TANDEM_FINISH_ABORTED;
        return TANDEM_OK;
    }
    if (params->max_tokens >= 0 && r->n_ids >= (size_t)params->max_tokens) r->finish = TANDEM_FINISH_LENGTH;
    return TANDEM_OK;
oom:
    return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_generate: out of memory");
}

/* What the stream still holds back is final now: an incomplete character becomes U+FFFD, and a partial
 * stop string that never completed is ordinary text. */
tandem_status emitter_end(gen_emitter *e) {
    tandem_gen_result *r = e->r;
    if (r->finish != TANDEM_FINISH_STOP_STRING && r->finish != TANDEM_FINISH_ABORTED) {
        const char *tail;
        size_t tail_len;
        tandem_status st = tandem_detokenizer_flush(e->detok, &tail, &tail_len);
        if (st) return st;
        if (!text_append(r, &e->text_cap, tail, tail_len))
            return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_generate: out of memory");
    }
    /* the last piece: the callback can no longer stop anything, so its answer is not asked for */
    if (r->text_len > e->streamed && r->finish != TANDEM_FINISH_ABORTED) (void)stream_text(e, r->text_len);
    r->timings.n_generated = (int32_t)r->n_ids;
    r->timings.decode_ms = r->n_ids > 0 ? now_ms() - e->t_first : 0;
    return TANDEM_OK;
}
