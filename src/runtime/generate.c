/* generate.c — the generation loop: prompt prefill, sampling, stop conditions (EOS, stop strings,
 * max tokens, full context) and streaming of text that is final (complete UTF-8, never part of a stop). */
#include <stdlib.h>

#include "runtime.h"

const char *tandem_finish_name(tandem_finish f) {
    switch (f) {
    case TANDEM_FINISH_NONE: return "none";
    case TANDEM_FINISH_EOS: return "eos";
    case TANDEM_FINISH_STOP_STRING: return "stop";
    case TANDEM_FINISH_LENGTH: return "length";
    case TANDEM_FINISH_CONTEXT_FULL: return "context_full";
    case TANDEM_FINISH_ABORTED: return "aborted";
    }
    return "unknown";
}

tandem_gen_params tandem_gen_default_params(const tandem_model *model) {
    return (tandem_gen_params){
        .max_tokens = -1,
        .sampling = model ? tandem_model_sampler_defaults(model) : tandem_sampler_default_params(),
    };
}

void tandem_gen_result_free(tandem_gen_result *r) {
    if (!r) return;
    free(r->ids);
    free(r->text);
    memset(r, 0, sizeof *r);
}

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

static bool is_eos(const tandem_tokenizer *tok, int32_t id) {
    size_t n;
    const int32_t *eos = tandem_tokenizer_eos_ids(tok, &n);
    for (size_t i = 0; i < n; i++)
        if (eos[i] == id) return true;
    return false;
}

tandem_status emitter_push(gen_emitter *e, int32_t id) {
    const tandem_gen_params *params = e->params;
    tandem_gen_result *r = e->r;
    if (r->n_ids == 0) {
        e->t_first = now_ms();
        r->timings.ttft_ms = e->t_first - e->t_start;
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
    ptrdiff_t stop_at = find_stop(params, r->text, r->text_len, before);
    if (stop_at >= 0) {
        r->text_len = (size_t)stop_at;
        r->text[r->text_len] = '\0';
        r->finish = TANDEM_FINISH_STOP_STRING;
        return TANDEM_OK;
    }
    const size_t safe = r->text_len - stop_prefix_hold(params, r->text, r->text_len);
    if (safe > e->emitted) {
        bool go_on = !params->on_text || params->on_text(r->text + e->emitted, safe - e->emitted, params->user);
        e->emitted = safe;
        if (!go_on) {
            r->finish = TANDEM_FINISH_ABORTED;
            return TANDEM_OK;
        }
    }
    if (params->max_tokens >= 0 && r->n_ids >= (size_t)params->max_tokens) r->finish = TANDEM_FINISH_LENGTH;
    return TANDEM_OK;
oom:
    return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_generate: out of memory");
}

/* What the stream still holds back is final now: an incomplete character becomes U+FFFD, and a partial
 * stop string that never completed is ordinary text. */
static tandem_status emitter_end(gen_emitter *e) {
    tandem_gen_result *r = e->r;
    if (r->finish != TANDEM_FINISH_STOP_STRING && r->finish != TANDEM_FINISH_ABORTED) {
        const char *tail;
        size_t tail_len;
        tandem_status st = tandem_detokenizer_flush(e->detok, &tail, &tail_len);
        if (st) return st;
        if (!text_append(r, &e->text_cap, tail, tail_len))
            return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_generate: out of memory");
    }
    if (r->text_len > e->emitted && e->params->on_text && r->finish != TANDEM_FINISH_ABORTED)
        e->params->on_text(r->text + e->emitted, r->text_len - e->emitted, e->params->user);
    r->timings.n_generated = (int32_t)r->n_ids;
    r->timings.decode_ms = r->n_ids > 0 ? now_ms() - e->t_first : 0;
    return TANDEM_OK;
}

tandem_status tandem_generate(tandem_ctx *ctx, const int32_t *prompt, size_t n_prompt, const tandem_gen_params *params,
                              tandem_gen_result *r) {
    memset(r, 0, sizeof *r);
    const int32_t vocab = ctx->model->qwen.cfg.vocab_size;
    tandem_sampler *sampler = NULL;
    gen_emitter e = {.params = params, .tok = ctx->model->tokenizer, .r = r, .t_start = now_ms()};
    tandem_status st;

    for (int32_t i = 0; i < params->n_stop; i++)
        if (!params->stop || !params->stop[i])
            return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_generate: stop string %d is NULL", i);
    if (n_prompt == 0 && !ctx->has_logits)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_generate: the prompt is empty and the context holds nothing");
    if (n_prompt > (size_t)(ctx->cache->n_ctx - ctx->n_past))
        return tandem_fail(TANDEM_ERR_CONTEXT_FULL,
                           "context full: the prompt has %zu tokens but only %d of the "
                           "context's %d positions are free (raise tandem_ctx_params.n_ctx)",
                           n_prompt, ctx->cache->n_ctx - ctx->n_past, ctx->cache->n_ctx);
    const bool speculative = params->draft || params->spec.lookup_ngram > 0;
    if (params->draft && (st = tandem_model_check_draft(ctx->model, params->draft->model))) return st;
    if ((st = tandem_sampler_init(&params->sampling, vocab, &sampler))) goto done;
    if ((st = tandem_detokenizer_init(e.tok, &e.detok))) goto done;
    if (n_prompt > 0 && (st = tandem_ctx_eval(ctx, prompt, (int32_t)n_prompt, NULL))) goto done;
    r->timings.n_prompt = (int32_t)n_prompt;
    r->timings.prompt_ms = now_ms() - e.t_start;
    if (!text_append(r, &e.text_cap, "", 0)) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_generate: out of memory");
        goto done;
    }
    if (params->max_tokens == 0) r->finish = TANDEM_FINISH_LENGTH;

    if (speculative) {
        r->speculative = true;
        if ((st = speculative_loop(ctx, params, sampler, &e))) goto done;
    } else {
        while (r->finish == TANDEM_FINISH_NONE) {
            const int32_t id = tandem_sampler_sample(sampler, tandem_ctx_logits(ctx), ctx->tokens, (size_t)ctx->n_past);
            if ((st = emitter_push(&e, id))) goto done;
            if (r->finish != TANDEM_FINISH_NONE) break;
            if (ctx->n_past >= ctx->cache->n_ctx) {
                r->finish = TANDEM_FINISH_CONTEXT_FULL;
                break;
            }
            if ((st = tandem_ctx_eval(ctx, &id, 1, NULL))) goto done;
        }
    }
    st = emitter_end(&e);
done:
    if (st) tandem_gen_result_free(r);
    tandem_sampler_free(sampler);
    tandem_detokenizer_free(e.detok);
    return st;
}
