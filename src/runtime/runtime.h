/* runtime.h — the structs behind the public handles tandem_model and tandem_ctx, and what the runtime's files
 * share among themselves (the sampler's draws, the emitter (emit.h), the speculative rule and decoder, the
 * per-sequence generation step, quality's evaluation on ids); included by every .c file of src/runtime. A model
 * owns its files, weights, tokenizer, pool. */
#ifndef TANDEM_RUNTIME_H
#define TANDEM_RUNTIME_H

#include <pthread.h>

#include "emit.h"
#include "gguf.h"
#include "qwen3.h"
#include "safetensors.h"
#include "tandem_base.h"
#include "tokenizer.h"
#include "vit.h"

struct tandem_model {
    qwen3_model qwen;
    gguf_file *gguf;               /* one of gguf / st is the weight source */
    st_set *st;
    tandem_tokenizer *tokenizer;
    thread_pool *pool;
    char *path;
    char *name;
    const char *source;            /* "gguf" or "safetensors" */
    tandem_sampler_params sampler_defaults;
    int64_t n_params, weight_bytes;
    pthread_mutex_t pack_lock;     /* the first context packs the weights (qwen3_pack_weights), once */
    bool packed;
    /* Qwen3-VL (vision.c): the vision tower (NULL for a text model), its preprocessing, the placeholder id */
    vit_model *vit;
    vision_preprocess_config preprocess;
    int32_t image_token_id;
};

/* One sequence: its KV cache, and a scratch of its own (an engine's slots share the engine's: engine.c). */
struct tandem_ctx {
    tandem_model *model;
    qwen3_kv_cache *cache;
    qwen3_scratch *scratch;
    int32_t n_past;
    int32_t *tokens;               /* (n_ctx) the ids in the cache, in order */
    float *logits;                 /* (vocab_size) the last position's logits */
    bool has_logits;               /* logits holds them */
    /* Qwen3-VL: after an image, row r has rotary position r + pos_delta (all three axes); pos (n_batch) holds a
     * pass's positions. From first_image_row on (-1: no image in the cache), next_pos (n_ctx) records per row
     * 1 + the largest position component of the rows up to it: where text continues if the cache is cut after
     * that row, whichever of several images it follows. */
    int32_t pos_delta, first_image_row;
    int32_t *pos, *next_pos;
};

/* Packs the model's weights for the kernels (qwen3_pack_weights) unless done already; what every context and
 * engine does before its first pass. */
tandem_status model_pack_once(tandem_model *model);

/* ---- sampler internals used by speculative decoding ---- */

double sampler_uniform(tandem_sampler *s);  /* next uniform draw in [0, 1) from the sampler's generator */
/* Draws an id from probs (n floats summing to ~1) with the sampler's generator. */
int32_t sampler_draw(tandem_sampler *s, const float *probs, int32_t n);
bool sampler_is_greedy(const tandem_sampler *s);

/* The speculative sampling rule for one proposed token x drawn from q (NULL: a point mass at x): returns x
 * and sets *accepted with probability min(1, p(x)/q(x)); otherwise returns a token drawn from the normalised
 * residual max(0, p − q). scratch: V floats. With both p and q exact, the returned token is distributed as p. */
int32_t spec_accept_or_correct(tandem_sampler *s, const float *p, const float *q, int32_t x, int32_t V,
                               float *scratch, bool *accepted);

/* ---- constrain.c: drawing under the emitter's grammar (e->grammar; without one, the plain sampler) ---- */

/* *out ~ the sampler's distribution restricted to the ids the grammar allows next (greedy: the best allowed id);
 * the mask is computed only when the sampler's own draw is refused. V: logits' length. ahead: the id drawn is
 * generated id number e->r->n_ids + ahead (a speculative round's later positions), for min_new_tokens, which bans
 * the end ids in the sampler's input (constrain.c). */
tandem_status constrained_sample(gen_emitter *e, tandem_sampler *s, const float *logits, const int32_t *history,
                                 size_t n_history, int32_t V, int32_t ahead, int32_t *out);
/* probs: the sampler's distribution over logits (tandem_sampler_probs), restricted in place to what the grammar
 * allows next (or, min_new_tokens, recomputed without the end ids): the distribution constrained_sample draws from.
 * Nothing to do without either. */
tandem_status constrained_probs(gen_emitter *e, tandem_sampler *s, const float *logits, const int32_t *history,
                                size_t n_history, int32_t V, int32_t ahead, float *probs);

/* ---- speculative.c: one speculative decoder per sequence, fed to the emitter (emit.h) ---- */

typedef struct spec_decoder spec_decoder;
/* Checks p->spec and the draft context, and allocates one round's buffers. The decoder borrows target, p and
 * sampler for its life. */
tandem_status spec_decoder_init(tandem_ctx *target, const tandem_gen_params *p, tandem_sampler *sampler,
                                spec_decoder **out);
/* Checks p->spec and p->prediction (ids below vocab_size), as spec_decoder_init does. */
tandem_status spec_check_params(const tandem_gen_params *p, int32_t vocab_size);
/* Samples the first token from the prompt's logits (of target's last position) and emits it. */
tandem_status spec_decoder_first(spec_decoder *d, gen_emitter *e, const float *logits);

/* One round in phases, for a caller that evaluates the passes itself (an engine, batching many sequences):
 *   spec_round_begin proposes at most max_k tokens (further bounded by draft_max, the context and max_tokens);
 *   while *next is SPEC_DRAFT: evaluate ids[0..n) into the draft context after its n_past (its tokens and n_past
 *     updated as tandem_ctx_eval does) and pass the last one's logits to spec_round_draft;
 *   at SPEC_VERIFY: evaluate ids[0..n) (pending + proposals) into target after its n_past, with every position's
 *     logits, and pass them (n × vocab) to spec_round_end, which accepts or corrects, truncates target, and emits;
 *   SPEC_DONE: the round ended without a pass (target is full: e->r->finish is set).
 * ids point into the decoder, valid until its next call. After a failing pass call spec_round_abort. */
typedef enum spec_phase { SPEC_DRAFT, SPEC_VERIFY, SPEC_DONE } spec_phase;
tandem_status spec_round_begin(spec_decoder *d, gen_emitter *e, int32_t max_k, const int32_t **ids, int32_t *n,
                               spec_phase *next);
tandem_status spec_round_draft(spec_decoder *d, gen_emitter *e, const float *draft_logits, const int32_t **ids,
                               int32_t *n, spec_phase *next);
tandem_status spec_round_end(spec_decoder *d, gen_emitter *e, const float *logits);
void spec_round_abort(spec_decoder *d, gen_emitter *e); /* undoes the round's grammar steps */
/* The verification pass starts now (its time feeds the adaptive draft length): a caller that does other work between
 * SPEC_VERIFY and the pass. */
void spec_round_pass_starts(spec_decoder *d);
/* tandem_generate's unit of work: the first call samples the first token from target's logits (those of the prompt)
 * and emits it (spec_decoder_first); each later call is one round (propose, one target pass, accept or correct, roll
 * back, emit). Sets e->r->finish to TANDEM_FINISH_CONTEXT_FULL when target is full; adds to e->r->spec_stats. */
tandem_status spec_decoder_step(spec_decoder *d, gen_emitter *e);
/* The derived figures of r->spec_stats (rates, means, c, predicted speedup) from the counts. */
void spec_decoder_stats(const spec_decoder *d, tandem_gen_result *r);
void spec_decoder_free(spec_decoder *d);

/* ---- generate.c: one generation as a sequence of steps, so that an engine can interleave sequences ---- */

typedef enum gen_phase { GEN_PROMPT, GEN_DECODE } gen_phase;
typedef struct vl_prompt vl_prompt; /* vision.c: a prompt's images, encoded, and its positions */

/* tandem_generate is gen_sequence_init, gen_sequence_step until done, gen_sequence_finish, gen_sequence_free.
 * ctx, prompt, params and r are borrowed until gen_sequence_finish. */
typedef struct gen_sequence {
    tandem_ctx *ctx;
    const tandem_gen_params *params;
    tandem_gen_result *r;
    const int32_t *prompt;
    size_t n_prompt, n_prompt_done; /* prompt tokens, and how many of them are in ctx already */
    int32_t prompt_chunk;           /* prompt tokens per step (init: the context's n_batch, one forward pass) */
    gen_phase phase;
    tandem_sampler *sampler;
    gen_emitter emit;
    spec_decoder *spec; /* NULL: plain decoding */
    vl_prompt *vl;      /* NULL: a text prompt */
} gen_sequence;

/* Checks the arguments (as tandem_generate documents them) and prepares; evaluates nothing. On failure *s may
 * still be passed to gen_sequence_free. */
tandem_status gen_sequence_init(gen_sequence *s, tandem_ctx *ctx, const int32_t *prompt, size_t n_prompt,
                                const tandem_gen_params *params, tandem_gen_result *r);
/* One unit of work: a chunk of the prompt (prompt_chunk tokens), or, once the prompt is in: sample, emit and
 * evaluate one token (plain), or one speculative round. *done: the sequence has finished (r->finish is set); call
 * again only while not done. After a failure the sequence cannot go on (gen_sequence_free it). */
tandem_status gen_sequence_step(gen_sequence *s, bool *done);
/* After the last step: the speculative figures, the stream's end, the timings. r is then complete. */
tandem_status gen_sequence_finish(gen_sequence *s);
void gen_sequence_free(gen_sequence *s); /* the sequence's own state (not r); safe after a failure */

/* ---- vision.c: a prompt with images (Qwen3-VL) ---- */

/* Checks that prompt's <|image_pad|> runs are the images, in order (each run as long as its image's tokens), encodes
 * them with the vision tower and places every prompt token at its M-RoPE position after what ctx holds. */
tandem_status vl_prompt_init(tandem_ctx *ctx, const int32_t *prompt, size_t n_prompt,
                             const struct tandem_image *const *images, int32_t n_images, vl_prompt **out);
/* Evaluates prompt tokens from … from+n−1 (n ≤ the context's n_batch; the next ones after ctx's n_past) as
 * tandem_ctx_eval would (logits: NULL, or n × vocab_size floats for every position's), image tokens as their rows
 * with DeepStack; after the last one, ctx continues positions after the images. */
tandem_status vl_prompt_eval(tandem_ctx *ctx, vl_prompt *p, size_t from, int32_t n, float *logits);
/* (n_prompt, 3) each prompt token's (t, h, w) position. */
const int32_t *vl_prompt_positions(const vl_prompt *p);

/* An engine's use (engine.c): the plan of a whole prompt from position start, its images encoded one by one when
 * a prompt chunk reaches them (or loaded from the engine's cache of encoded images), its rows put into the engine's
 * batch, and ctx advanced past each chunk. n_batch 0: no buffers of its own for vl_prompt_eval. images borrowed. */
/* TANDEM_ERR_UNSUPPORTED for images given to a model without a vision tower; `where` starts the message. */
tandem_status vision_missing(const tandem_model *m, const char *where);
tandem_status vl_prompt_plan(tandem_model *m, const int32_t *prompt, size_t n_prompt,
                             const struct tandem_image *const *images, int32_t n_images, int32_t start, int32_t n_batch,
                             vl_prompt **out);
const int32_t *vl_prompt_ids(const vl_prompt *p); /* (n_prompt) the prompt, −1 at image tokens */
int32_t vl_prompt_next_pos(const vl_prompt *p);   /* the position after the prompt */
int32_t vl_prompt_n_images(const vl_prompt *p);
/* image i: its first token in the prompt, its tokens, its digest (SHA-256 of its pixels, hex): any may be NULL */
void vl_prompt_image_span(const vl_prompt *p, int32_t i, size_t *at, int32_t *tokens, const char **hex);
bool vl_prompt_image_encoded(const vl_prompt *p, int32_t i);
size_t vl_prompt_image_floats(const vl_prompt *p, int32_t i); /* its rows and DeepStack rows: the cache's block */
void vl_prompt_image_store(const vl_prompt *p, int32_t i, float *block);          /* an encoded image's block out */
tandem_status vl_prompt_image_load(vl_prompt *p, int32_t i, const float *block);  /* a cached block in: encoded */
tandem_status vl_prompt_encode_image(vl_prompt *p, thread_pool *pool, int32_t i); /* the tower on image i alone */
/* prompt tokens from … from+n−1 at rows batch_at… of a batch of batch_n tokens: image tokens' rows into embd
 * (batch_n, dim) and deepstack (n_deepstack, batch_n, dim); text tokens' rows are left alone */
void vl_prompt_fill_rows(const vl_prompt *p, size_t from, int32_t n, int32_t batch_at, int32_t batch_n, float *embd,
                         float *deepstack);
/* after prompt tokens from … from+n−1 went into ctx's cache at its n_past: ctx's ids (<|image_pad|> at image rows),
 * n_past, the rows' continuation positions and pos_delta, as vl_prompt_eval leaves them */
void vl_prompt_advance(tandem_ctx *ctx, const vl_prompt *p, size_t from, int32_t n);
void vl_prompt_free(vl_prompt *p); /* accepts NULL */

/* ---- quality.c: tandem_perplexity / tandem_kld on token ids (the public calls tokenize first) ---- */
tandem_status quality_eval_ids(tandem_model *model, tandem_model *ref, const int32_t *ids, size_t n_ids,
                              const tandem_eval_params *params, tandem_quality_result *out);

#endif
