/* generate.c — one generation as a sequence of steps (gen_sequence: prompt chunks, then a token or a speculative
 * round per step, every token through the emitter of emit.c), and tandem_generate, which runs them to the end. */
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
    free(r->logprobs);
    memset(r, 0, sizeof *r);
}

tandem_status gen_sequence_init(gen_sequence *s, tandem_ctx *ctx, const int32_t *prompt, size_t n_prompt,
                                const tandem_gen_params *params, tandem_gen_result *r) {
    const double t_start = now_ms();
    *s = (gen_sequence){.ctx = ctx,
                        .params = params,
                        .r = r,
                        .prompt = prompt,
                        .n_prompt = n_prompt,
                        .prompt_chunk = ctx->scratch->n_batch,
                        .phase = GEN_PROMPT};
    tandem_status st = emitter_init(&s->emit, params, ctx->model->tokenizer, ctx->model->qwen.cfg.vocab_size, r,
                                    t_start);
    if (st) return st;
    if (n_prompt == 0 && !ctx->has_logits)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_generate: the prompt is empty and the context holds nothing");
    if (n_prompt > (size_t)(ctx->cache->n_ctx - ctx->n_past))
        return tandem_fail(TANDEM_ERR_CONTEXT_FULL,
                           "context full: the prompt has %zu tokens but only %d of the "
                           "context's %d positions are free (raise tandem_ctx_params.n_ctx)",
                           n_prompt, ctx->cache->n_ctx - ctx->n_past, ctx->cache->n_ctx);
    /* checked before the first chunk, as one tandem_ctx_eval of the whole prompt would: a bad id leaves ctx as it
     * was, and the index is the prompt's */
    const int32_t vocab = ctx->model->qwen.cfg.vocab_size;
    for (size_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= vocab)
            return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_ctx_eval: token id %d at index %zu is outside 0..%d",
                               prompt[i], i, vocab - 1);
    if (params->draft && (st = tandem_model_check_draft(ctx->model, params->draft->model))) return st;
    if (params->n_images > 0 || params->images) {
        if (params->draft)
            return tandem_fail(TANDEM_ERR_UNSUPPORTED,
                               "tandem_generate: tandem_gen_params.draft: a draft model does not see the images");
        const double t_images = now_ms();
        if ((st = vl_prompt_init(ctx, prompt, n_prompt, params->images, params->n_images, &s->vl))) return st;
        r->timings.image_ms = now_ms() - t_images;
        for (int32_t i = 0; i < params->n_images; i++)
            r->timings.n_image_tokens += tandem_image_tokens(params->images[i]);
    }
    if ((st = tandem_sampler_init(&params->sampling, vocab, &s->sampler))) return st;
    if (params->draft || params->spec.lookup_ngram > 0 || params->n_prediction > 0) {
        r->speculative = true;
        if ((st = spec_decoder_init(ctx, params, s->sampler, &s->spec))) return st;
    }
    return TANDEM_OK;
}

void gen_sequence_free(gen_sequence *s) {
    vl_prompt_free(s->vl);
    s->vl = NULL;
    spec_decoder_free(s->spec);
    s->spec = NULL;
    tandem_sampler_free(s->sampler);
    s->sampler = NULL;
    emitter_free(&s->emit);
}

/* One token of plain decoding: drawn from the last logits, emitted, and evaluated unless generation ends. */
static tandem_status plain_step(gen_sequence *s) {
    tandem_ctx *ctx = s->ctx;
    tandem_gen_result *r = s->r;
    int32_t id;
    const float *logits = tandem_ctx_logits(ctx);
    tandem_status st = constrained_sample(&s->emit, s->sampler, logits, ctx->tokens, (size_t)ctx->n_past,
                                          ctx->model->qwen.cfg.vocab_size, 0, &id);
    if (!st) st = emitter_push(&s->emit, id, logits);
    if (st || r->finish != TANDEM_FINISH_NONE) return st;
    if (ctx->n_past >= ctx->cache->n_ctx) {
        r->finish = TANDEM_FINISH_CONTEXT_FULL;
        return TANDEM_OK;
    }
    return tandem_ctx_eval(ctx, &id, 1, NULL);
}

tandem_status gen_sequence_step(gen_sequence *s, bool *done) {
    tandem_gen_result *r = s->r;
    tandem_status st = TANDEM_OK;
    *done = false;
    if (s->phase == GEN_PROMPT) {
        /* the prompt is evaluated even when no token may follow (max_tokens 0): ctx then holds it */
        const size_t left = s->n_prompt - s->n_prompt_done;
        if (left > 0) {
            const int32_t n = left < (size_t)s->prompt_chunk ? (int32_t)left : s->prompt_chunk;
            st = s->vl ? vl_prompt_eval(s->ctx, s->vl, s->n_prompt_done, n, NULL)
                       : tandem_ctx_eval(s->ctx, s->prompt + s->n_prompt_done, n, NULL);
            if (st) return st;
            s->n_prompt_done += (size_t)n;
        }
        if (s->n_prompt_done == s->n_prompt) {
            r->timings.n_prompt = (int32_t)s->n_prompt;
            r->timings.prompt_ms = now_ms() - s->emit.t_start;
            s->phase = GEN_DECODE;
        }
        /* an empty prompt is no unit of work: go on to the first token */
        if (left > 0 || r->finish != TANDEM_FINISH_NONE) {
            *done = r->finish != TANDEM_FINISH_NONE && s->phase == GEN_DECODE;
            return TANDEM_OK;
        }
    }
    st = s->spec ? spec_decoder_step(s->spec, &s->emit) : plain_step(s);
    *done = r->finish != TANDEM_FINISH_NONE;
    return st;
}

tandem_status gen_sequence_finish(gen_sequence *s) {
    if (s->spec) spec_decoder_stats(s->spec, s->r);
    return emitter_end(&s->emit);
}

tandem_status tandem_generate(tandem_ctx *ctx, const int32_t *prompt, size_t n_prompt, const tandem_gen_params *params,
                              tandem_gen_result *r) {
    gen_sequence s;
    tandem_status st = gen_sequence_init(&s, ctx, prompt, n_prompt, params, r);
    for (bool done = false; !st && !done;) st = gen_sequence_step(&s, &done);
    if (!st) st = gen_sequence_finish(&s);
    gen_sequence_free(&s);
    if (st) tandem_gen_result_free(r);
    return st;
}
