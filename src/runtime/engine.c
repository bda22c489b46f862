/* engine.c — tandem_engine: many requests generated together on one model, one forward pass per step over a batch
 * of every running sequence's next token, speculative proposals and prompt chunks; slots (a KV cache each, and one of
 * the draft model, reused by a prompt that starts with what it holds), the queue, the KV budget.
 *
 * A step: queued requests take slots; each speculating sequence begins a round (speculative.c: proposals from its
 * prediction or lookup, or it asks its draft cache to catch up and the draft model to propose); draft passes, each
 * over every drafting sequence's next draft token (and catch-up tokens), until all proposals are made; then ONE target
 * pass over every sequence's tokens (a plain sequence's pending token, a speculating one's pending token and
 * proposals with every position's logits, prompt chunks); then each sequence samples, or accepts or corrects. */
#include <stdlib.h>

#include "hub.h"
#include "runtime.h"

/* An image in a slot's cache or a request's prompt: where its rows start, how many, what it was (its digest). A
 * reused prefix keeps an image's rows only when the new prompt has the same image at the same rows. */
typedef struct slot_image {
    size_t at;
    int32_t tokens;
    char digest[DIGEST_HEX_MAX];
} slot_image;

/* The encoded-image cache: an image's rows and DeepStack rows (vl_prompt_image_store's block) by digest; least
 * recently used blocks leave first when a new one would pass tandem_engine_params.image_cache_bytes. */
typedef struct image_cache_entry {
    char digest[DIGEST_HEX_MAX];
    float *block;
    size_t floats;
    uint64_t last_used;
} image_cache_entry;

typedef struct engine_request {
    int64_t id;
    tandem_request_state state;
    int32_t *prompt;
    size_t n_prompt;
    tandem_gen_params params; /* stop and prediction point into stops and prediction, the request's own copies */
    char **stops;
    int32_t *prediction;
    /* images (tandem_gen_params.images, borrowed until the request is done): the whole prompt's plan (positions from
     * 0, whatever prefix a slot holds), each image's place; params.images is NULL (the engine feeds them itself) */
    const tandem_image **images;
    int32_t n_images;
    vl_prompt *vl;
    slot_image *spans;
    tandem_gen_result r;
    tandem_status status; /* TANDEM_OK, or why the request failed (error: the message) */
    char *error;
    double t_added, t_admitted;
} engine_request;

/* A slot: one sequence's KV cache (kept for the next request) and, while it runs one, that request. The slot's
 * tandem_ctx holds the cache and the ids in it; its scratch is the engine's, and the engine drives the
 * gen_sequence's phase itself (a step's batch mixes sequences, so gen_sequence_step, which evaluates, is not used). */
typedef struct engine_slot {
    struct tandem_ctx ctx;
    struct tandem_ctx draft; /* the draft model's cache of this slot (an engine with a draft model), likewise */
    engine_request *req;     /* NULL: free */
    gen_sequence seq;
    int32_t pending; /* the token emitted last, to be evaluated by the next step; -1 while reading the prompt */
    int32_t batch_at, batch_n; /* this step's tokens of the sequence in the batch (one run): where, how many */
    int32_t logits_at;         /* its first row of the step's logits (all rows of a verification), or -1 */
    uint64_t last_used;        /* the engine's clock when the slot last took or ended a request; 0: never used */
    /* a speculative round within the step (seq.spec): its phase and the tokens it asks to evaluate */
    spec_phase phase;
    const int32_t *spec_ids;
    int32_t spec_n, spec_done;                  /* of spec_ids: how many; how many the draft has evaluated already */
    int32_t draft_at, draft_n, draft_logits_at; /* this draft pass's tokens of the sequence; its draft logits' row */
    slot_image *images; /* (n_images) the images whose rows the cache holds (its last request's), cap_images */
    int32_t n_images, cap_images;
} engine_slot;

struct tandem_engine {
    tandem_model *model;
    tandem_engine_params p;
    int32_t n_usable;     /* slots whose caches fit kv_budget_bytes */
    uint64_t cache_bytes; /* one sequence's KV cache */
    qwen3_scratch *scratch;
    engine_slot *slots;    /* (n_slots) */
    engine_request **reqs; /* in the order they were added */
    size_t n_reqs, cap_reqs;
    int64_t next_id;
    uint64_t clock; /* counts slot uses, for the LRU order of free slots */
    /* the step's batch: (n_batch) each */
    int32_t *ids, *rows, *pos; /* pos: (n_batch, n_pos) */
    int32_t n_pos;             /* 3 for a model with a vision tower (M-RoPE; text rows take three equal ones), else 1 */
    float *embd, *deepstack;   /* (n_batch, dim), (n_deepstack, n_batch, dim): image rows of the step's batch */
    bool has_embd;             /* the step's batch holds image rows */
    qwen3_kv_cache **caches;
    bool *want_logits;
    float *logits; /* (n_batch, vocab_size) */
    /* the draft model (NULL: none), its scratch, and a draft pass's batch: (n_batch) each, logits (n_slots, vocab) */
    tandem_model *draft;
    qwen3_scratch *draft_scratch;
    int32_t *d_ids, *d_rows;
    qwen3_kv_cache **d_caches;
    bool *d_want_logits;
    float *d_logits;
    /* the encoded-image cache (image_cache_entry) and its figures */
    image_cache_entry *icache;
    int32_t n_icache, cap_icache;
    int64_t icache_bytes, icache_hits, icache_misses;
    uint64_t icache_clock; /* counts uses of cached images, for their LRU order */
};

tandem_engine_params tandem_engine_default_params(void) {
    return (tandem_engine_params){
        .n_slots = 4, .n_ctx = 0, .n_batch = 64, .kv_type = TANDEM_TYPE_F16, .image_cache_bytes = 256 << 20};
}

static tandem_type engine_kv_type(const tandem_engine_params *p) { return p->exact ? TANDEM_TYPE_F32 : p->kv_type; }

tandem_status tandem_engine_create(tandem_model *model, const tandem_engine_params *params, tandem_engine **out) {
    *out = NULL;
    if (!model) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_engine_create: model is NULL");
    tandem_engine_params p = params ? *params : tandem_engine_default_params();
    const qwen3_config *c = &model->qwen.cfg;
    if (p.n_ctx == 0) p.n_ctx = c->context_length < 4096 ? c->context_length : 4096;
    if (p.n_slots < 1 || p.n_slots > 1024)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_engine_create: tandem_engine_params.n_slots %d out of range "
                           "1..1024",
                           p.n_slots);
    if (p.n_ctx < 1 || p.n_ctx > (1 << 24))
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_engine_create: tandem_engine_params.n_ctx %d out of range "
                           "1..%d",
                           p.n_ctx, 1 << 24);
    if (p.n_batch < p.n_slots || p.n_batch > 4096)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_engine_create: tandem_engine_params.n_batch %d out of range "
                           "%d..4096 (at least n_slots: every running sequence decodes in each step)",
                           p.n_batch, p.n_slots);
    const char *kv_problem = kv_type_problem(p.kv_type, c->head_dim);
    if (kv_problem)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_engine_create: tandem_engine_params.kv_type %s (type %d): %s",
                           tandem_type_name(p.kv_type), (int)p.kv_type, kv_problem);
    if (p.kv_budget_bytes < 0)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_engine_create: tandem_engine_params.kv_budget_bytes %lld "
                           "is negative",
                           (long long)p.kv_budget_bytes);
    if (p.image_cache_bytes < 0)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_engine_create: tandem_engine_params.image_cache_bytes %lld "
                           "is negative",
                           (long long)p.image_cache_bytes);
    tandem_status st = model_pack_once(model);
    if (!st && p.draft_model && !(st = tandem_model_check_draft(model, p.draft_model)))
        st = model_pack_once(p.draft_model);
    if (st) return st;
    tandem_engine *e = calloc(1, sizeof *e);
    if (!e) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_engine_create: out of memory");
    e->model = model;
    e->p = p;
    e->next_id = 1;
    e->cache_bytes = qwen3_kv_cache_bytes(c, p.n_ctx, engine_kv_type(&p));
    if (p.draft_model) e->cache_bytes += qwen3_kv_cache_bytes(&p.draft_model->qwen.cfg, p.n_ctx, engine_kv_type(&p));
    const uint64_t fit = p.kv_budget_bytes == 0 ? (uint64_t)p.n_slots : (uint64_t)p.kv_budget_bytes / e->cache_bytes;
    e->n_usable = fit < (uint64_t)p.n_slots ? (int32_t)fit : p.n_slots;
    const size_t nb = (size_t)p.n_batch;
    e->slots = calloc((size_t)p.n_slots, sizeof *e->slots);
    e->ids = malloc(nb * sizeof *e->ids);
    e->rows = malloc(nb * sizeof *e->rows);
    e->n_pos = model->vit ? 3 : 1;
    e->pos = malloc(nb * (size_t)e->n_pos * sizeof *e->pos);
    e->caches = malloc(nb * sizeof *e->caches);
    e->want_logits = malloc(nb * sizeof *e->want_logits);
    e->logits = malloc(nb * (size_t)c->vocab_size * sizeof *e->logits);
    bool ok = e->slots && e->ids && e->rows && e->pos && e->caches && e->want_logits && e->logits;
    if (model->vit) {
        const size_t sets = (size_t)(c->n_deepstack ? c->n_deepstack : 1);
        e->embd = malloc(nb * (size_t)c->dim * sizeof *e->embd);
        e->deepstack = malloc(sets * nb * (size_t)c->dim * sizeof *e->deepstack);
        ok = ok && e->embd && e->deepstack;
    }
    if (p.draft_model) {
        e->draft = p.draft_model;
        e->d_ids = malloc(nb * sizeof *e->d_ids);
        e->d_rows = malloc(nb * sizeof *e->d_rows);
        e->d_caches = malloc(nb * sizeof *e->d_caches);
        e->d_want_logits = malloc(nb * sizeof *e->d_want_logits);
        e->d_logits = malloc((size_t)p.n_slots * (size_t)c->vocab_size * sizeof *e->d_logits);
        ok = ok && e->d_ids && e->d_rows && e->d_caches && e->d_want_logits && e->d_logits;
    }
    if (!ok) {
        tandem_engine_free(e);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_engine_create: out of memory");
    }
    if ((st = qwen3_scratch_init(&model->qwen, p.n_batch, thread_pool_size(model->pool), p.exact, &e->scratch)) ||
        (e->draft && (st = qwen3_scratch_init(&e->draft->qwen, p.n_batch, thread_pool_size(e->draft->pool), p.exact,
                                              &e->draft_scratch)))) {
        tandem_engine_free(e);
        return st;
    }
    for (int32_t i = 0; i < p.n_slots; i++) {
        engine_slot *s = &e->slots[i];
        s->ctx.model = model;
        s->ctx.scratch = e->scratch;
        s->draft.model = e->draft;
        s->draft.scratch = e->draft_scratch;
        s->ctx.first_image_row = s->draft.first_image_row = -1;
        s->pending = -1;
        s->logits_at = -1;
    }
    *out = e;
    return TANDEM_OK;
}

static void request_free(engine_request *q) {
    if (!q) return;
    vl_prompt_free(q->vl);
    free(q->images);
    free(q->spans);
    free(q->prompt);
    for (int32_t i = 0; q->stops && i < q->params.n_stop; i++) free(q->stops[i]);
    free(q->stops);
    free(q->prediction);
    tandem_gen_result_free(&q->r);
    free(q->error);
    free(q);
}

void tandem_engine_free(tandem_engine *e) {
    if (!e) return;
    for (int32_t i = 0; e->slots && i < e->p.n_slots; i++) {
        engine_slot *s = &e->slots[i];
        if (s->req) gen_sequence_free(&s->seq);
        qwen3_kv_cache_free(s->ctx.cache);
        free(s->ctx.tokens);
        free(s->ctx.next_pos);
        free(s->images);
        qwen3_kv_cache_free(s->draft.cache);
        free(s->draft.tokens);
    }
    for (size_t i = 0; i < e->n_reqs; i++) request_free(e->reqs[i]);
    free(e->reqs);
    free(e->slots);
    qwen3_scratch_free(e->scratch);
    free(e->ids);
    free(e->rows);
    free(e->pos);
    free(e->caches);
    free(e->want_logits);
    free(e->logits);
    qwen3_scratch_free(e->draft_scratch);
    free(e->d_ids);
    free(e->d_rows);
    free(e->d_caches);
    free(e->d_want_logits);
    free(e->d_logits);
    free(e->embd);
    free(e->deepstack);
    for (int32_t i = 0; i < e->n_icache; i++) free(e->icache[i].block);
    free(e->icache);
    free(e);
}

static engine_request *find_request(const tandem_engine *e, int64_t id, size_t *at) {
    for (size_t i = 0; i < e->n_reqs; i++)
        if (e->reqs[i]->id == id) {
            if (at) *at = i;
            return e->reqs[i];
        }
    return NULL;
}

/* The request decodes speculatively (tandem.h: tandem_engine_params.draft_model). */
static bool speculates(const tandem_engine *e, const tandem_gen_params *gp) {
    return gp->spec.lookup_ngram > 0 || gp->n_prediction > 0 || (e->draft && gp->spec.draft_max > 0);
}

/* Everything add refuses, checked before anything is queued. */
static tandem_status check_request(const tandem_engine *e, const int32_t *prompt, size_t n_prompt,
                                   const tandem_gen_params *gp) {
    const qwen3_config *c = &e->model->qwen.cfg;
    if ((gp->images || gp->n_images) && !e->model->vit)
        return vision_missing(e->model, "tandem_engine_add: tandem_gen_params.images");
    if (gp->draft)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_engine_add: tandem_gen_params.draft: must be NULL in an engine (it drafts with "
                           "tandem_engine_params.draft_model)");
    if (speculates(e, gp)) {
        tandem_status st = spec_check_params(gp, c->vocab_size);
        if (st) return st;
    }
    if (n_prompt == 0 || !prompt)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_engine_add: the prompt is empty (a request needs at least "
                           "one token)");
    if (n_prompt > (size_t)e->p.n_ctx)
        return tandem_fail(TANDEM_ERR_CONTEXT_FULL,
                           "tandem_engine_add: the prompt has %zu tokens, more than the %d "
                           "rows of a sequence (raise tandem_engine_params.n_ctx)",
                           n_prompt, e->p.n_ctx);
    for (size_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= c->vocab_size)
            return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_engine_add: token id %d at index %zu is outside 0..%d",
                               prompt[i], i, c->vocab_size - 1);
    if (gp->n_stop < 0 || (gp->n_stop > 0 && !gp->stop))
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_engine_add: tandem_gen_params.stop: %d stop strings but "
                           "no array",
                           gp->n_stop);
    for (int32_t i = 0; i < gp->n_stop; i++)
        if (!gp->stop[i]) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_engine_add: stop string %d is NULL", i);
    tandem_status st = emitter_check_params(gp, "tandem_engine_add");
    if (st) return st;
    if (e->n_usable == 0)
        return tandem_fail(TANDEM_ERR_NO_MEMORY,
                           "tandem_engine_add: one sequence's KV cache%s (%d rows of %s) takes "
                           "%.1f MiB, more than tandem_engine_params.kv_budget_bytes (%.1f MiB): raise "
                           "kv_budget_bytes or lower tandem_engine_params.n_ctx",
                           e->draft ? "s (target and draft)" : "", e->p.n_ctx, tandem_type_name(engine_kv_type(&e->p)),
                           (double)e->cache_bytes / (1 << 20), (double)e->p.kv_budget_bytes / (1 << 20));
    tandem_sampler *probe; /* the sampling parameters are checked here rather than when a slot is taken */
    st = tandem_sampler_init(&gp->sampling, c->vocab_size, &probe);
    if (st) return st;
    tandem_sampler_free(probe);
    return TANDEM_OK;
}

/* The request's images: its prompt planned (the <|image_pad|> runs checked against the images, every token's M-RoPE
 * position), each image's span; nothing encoded yet. q->prompt is set. */
static tandem_status request_plan_images(tandem_engine *e, engine_request *q, const tandem_gen_params *gp) {
    tandem_status st = vl_prompt_plan(e->model, q->prompt, q->n_prompt, gp->images, gp->n_images, 0, 0, &q->vl);
    if (st) {
        char msg[1024]; /* the plan speaks for tandem_generate */
        const char *m = tandem_last_error();
        snprintf(msg, sizeof msg, "%s", !strncmp(m, "tandem_generate: ", 17) ? m + 17 : m);
        return tandem_fail(st, "tandem_engine_add: %s", msg);
    }
    const size_t n = (size_t)(gp->n_images ? gp->n_images : 1);
    q->images = malloc(n * sizeof *q->images);
    q->spans = malloc(n * sizeof *q->spans);
    if (!q->images || !q->spans) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_engine_add: out of memory");
    memcpy(q->images, gp->images, (size_t)gp->n_images * sizeof *q->images);
    q->n_images = gp->n_images;
    for (int32_t i = 0; i < q->n_images; i++) {
        const char *hex;
        vl_prompt_image_span(q->vl, i, &q->spans[i].at, &q->spans[i].tokens, &hex);
        snprintf(q->spans[i].digest, sizeof q->spans[i].digest, "%s", hex);
    }
    /* the images reach the sequence through the plan; the emitter and the speculative decoder see a text prompt */
    q->params.images = NULL;
    q->params.n_images = 0;
    return TANDEM_OK;
}

tandem_status tandem_engine_add(tandem_engine *e, const int32_t *prompt, size_t n_prompt,
                                const tandem_gen_params *params, int64_t *id) {
    if (!e || !id) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_engine_add: engine or id is NULL");
    *id = 0;
    const tandem_gen_params defaults = tandem_gen_default_params(e->model);
    const tandem_gen_params *gp = params ? params : &defaults;
    tandem_status st = check_request(e, prompt, n_prompt, gp);
    if (st) return st;
    if (e->n_reqs == e->cap_reqs) {
        size_t cap = e->cap_reqs ? 2 * e->cap_reqs : 16;
        engine_request **r = realloc(e->reqs, cap * sizeof *r);
        if (!r) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_engine_add: out of memory");
        e->reqs = r;
        e->cap_reqs = cap;
    }
    engine_request *q = calloc(1, sizeof *q);
    if (!q) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_engine_add: out of memory");
    q->params = *gp;
    q->prompt = malloc(n_prompt * sizeof *q->prompt);
    q->stops = gp->n_stop > 0 ? calloc((size_t)gp->n_stop, sizeof *q->stops) : NULL;
    q->prediction = gp->n_prediction > 0 ? malloc((size_t)gp->n_prediction * sizeof *q->prediction) : NULL;
    bool ok = q->prompt && (gp->n_stop == 0 || q->stops) && (gp->n_prediction <= 0 || q->prediction);
    for (int32_t i = 0; ok && i < gp->n_stop; i++) ok = (q->stops[i] = strdup(gp->stop[i])) != NULL;
    if (!ok) {
        request_free(q);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_engine_add: out of memory");
    }
    memcpy(q->prompt, prompt, n_prompt * sizeof *prompt);
    q->n_prompt = n_prompt;
    if (gp->n_images > 0 || gp->images) {
        st = request_plan_images(e, q, gp);
        if (st) {
            request_free(q);
            return st;
        }
    }
    q->n_prompt = n_prompt;
    q->params.stop = (const char *const *)q->stops;
    if (q->prediction) memcpy(q->prediction, gp->prediction, (size_t)gp->n_prediction * sizeof *q->prediction);
    q->params.prediction = q->prediction;
    q->params.n_prediction = q->prediction ? gp->n_prediction : 0;
    q->id = e->next_id++;
    q->state = TANDEM_REQUEST_QUEUED;
    q->t_added = now_ms();
    e->reqs[e->n_reqs++] = q;
    *id = q->id;
    return TANDEM_OK;
}

/* The request ends with status st (the thread's message kept for tandem_engine_result) and no result. */
static void request_fail(engine_request *q, tandem_status st) {
    q->status = st;
    q->error = strdup(tandem_last_error());
    tandem_gen_result_free(&q->r);
    q->state = TANDEM_REQUEST_DONE;
}

/* The slot is free again; its cache (ctx.tokens[0..n_past), exactly the ids evaluated into it, the last emitted token
 * not among them) is kept for a later prompt that starts with them, unless keep_cache is false (a failed request's
 * rows are not trusted). */
static void slot_release(tandem_engine *e, engine_slot *s, bool keep_cache) {
    s->req = NULL;
    s->pending = -1;
    s->last_used = ++e->clock;
    if (!keep_cache) {
        s->ctx.n_past = s->draft.n_past = 0;
        s->ctx.first_image_row = -1, s->ctx.pos_delta = 0, s->n_images = 0;
    }
}

/* The slot's request is over (r->finish set): its result completed, the slot free for the next one. */
static void slot_finish(tandem_engine *e, engine_slot *s) {
    engine_request *q = s->req;
    tandem_status st = gen_sequence_finish(&s->seq);
    gen_sequence_free(&s->seq);
    if (st) request_fail(q, st);
    q->state = TANDEM_REQUEST_DONE;
    slot_release(e, s, true);
}

/* Tokens of prompt[0..n) already in the slot's cache, at most n − 1: the prompt's last token is always evaluated,
 * since its logits give the first token. */
static size_t common_prefix(const engine_slot *s, const engine_request *q) {
    const size_t held = s->ctx.cache ? (size_t)s->ctx.n_past : 0, n = q->n_prompt;
    const size_t most = held < n - 1 ? held : n - 1;
    size_t k = 0;
    while (k < most && s->ctx.tokens[k] == q->prompt[k]) k++;
    /* equal ids are not equal rows at an image: the rows stay only up to the first image the prompt does not have
     * at the same place (same digest, same length) */
    for (int32_t i = 0; i < s->n_images; i++) {
        const slot_image *h = &s->images[i];
        if (h->at >= k) continue;
        bool same = false;
        for (int32_t j = 0; j < q->n_images && !same; j++)
            same = q->spans[j].at == h->at && q->spans[j].tokens == h->tokens && !strcmp(q->spans[j].digest, h->digest);
        if (!same) k = h->at;
    }
    return k;
}

/* The free slot for a prompt: the one whose cache shares the longest prefix with it, else (and among equals) the
 * least recently used, so that caches kept for later turns are overwritten oldest first. NULL: none free. */
static engine_slot *pick_slot(tandem_engine *e, const engine_request *q, size_t *reused) {
    engine_slot *best = NULL;
    size_t best_k = 0;
    for (int32_t i = 0; i < e->n_usable; i++) {
        engine_slot *s = &e->slots[i];
        if (s->req) continue;
        const size_t k = common_prefix(s, q);
        if (!best || k > best_k || (k == best_k && s->last_used < best->last_used)) {
            best = s;
            best_k = k;
        }
    }
    *reused = best_k;
    return best;
}

/* Queued requests, oldest first, take the free slots the budget allows, each the slot that holds most of its prompt:
 * those rows stay (n_past = the common prefix), the rest of the prompt is read over them (later rows are
 * overwritten). A row's keys and values depend only on the tokens up to it, so the output is a cold run's. */
static void admit(tandem_engine *e) {
    for (size_t next = 0; next < e->n_reqs; next++) {
        engine_request *q = e->reqs[next];
        if (q->state != TANDEM_REQUEST_QUEUED) continue;
        size_t reused = 0;
        engine_slot *s = pick_slot(e, q, &reused);
        if (!s) return;
        tandem_status st = TANDEM_OK;
        if (!s->ctx.cache) st = qwen3_kv_cache_init(&e->model->qwen, e->p.n_ctx, engine_kv_type(&e->p), &s->ctx.cache);
        if (!st && !s->ctx.tokens && !(s->ctx.tokens = malloc((size_t)e->p.n_ctx * sizeof *s->ctx.tokens)))
            st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_engine_step: out of memory");
        if (!st && e->model->vit && !s->ctx.next_pos &&
            !(s->ctx.next_pos = malloc((size_t)e->p.n_ctx * sizeof *s->ctx.next_pos)))
            st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_engine_step: out of memory");
        if (!st && q->n_images > s->cap_images) {
            slot_image *im = realloc(s->images, (size_t)q->n_images * sizeof *im);
            if (im) s->images = im, s->cap_images = q->n_images;
            else st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_engine_step: out of memory");
        }
        /* a drafting request's draft cache keeps what it holds: each round catches it up with the sequence. The draft
         * model sees no images: a request with images decodes without it (lookup and predictions still propose) */
        const bool drafts = e->draft && q->params.spec.draft_max > 0 && q->n_images == 0;
        if (!st && drafts && !s->draft.cache)
            st = qwen3_kv_cache_init(&e->draft->qwen, e->p.n_ctx, engine_kv_type(&e->p), &s->draft.cache);
        if (!st && drafts && !s->draft.tokens &&
            !(s->draft.tokens = malloc((size_t)e->p.n_ctx * sizeof *s->draft.tokens)))
            st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_engine_step: out of memory");
        q->params.draft = drafts && !st ? &s->draft : NULL;
        if (st) s->ctx.n_past = 0, s->ctx.first_image_row = -1, s->ctx.pos_delta = 0;
        else tandem_ctx_truncate(&s->ctx, (int32_t)reused); /* positions go on after the kept rows' images */
        s->ctx.has_logits = false;
        s->n_images = 0;
        if (!st) { /* the cache will hold the request's images (rows past n_past are not compared: common_prefix) */
            if (q->n_images) memcpy(s->images, q->spans, (size_t)q->n_images * sizeof *s->images);
            s->n_images = q->n_images;
        }
        if (!st) st = gen_sequence_init(&s->seq, &s->ctx, q->prompt + reused, q->n_prompt - reused, &q->params, &q->r);
        if (st) {
            gen_sequence_free(&s->seq);
            request_fail(q, st); /* the slot is still free */
            continue;
        }
        s->seq.emit.t_start = q->t_added; /* time to first token counts the wait in the queue */
        q->r.timings.n_prompt_reused = (int32_t)reused;
        for (int32_t i = 0; i < q->n_images; i++) q->r.timings.n_image_tokens += q->spans[i].tokens;
        q->t_admitted = now_ms();
        q->state = TANDEM_REQUEST_RUNNING;
        s->req = q;
        s->pending = -1;
        s->last_used = ++e->clock;
    }
}

/* The slot whose request is oldest among those still reading their prompt and not in this step's batch yet. */
static engine_slot *next_prompt_slot(tandem_engine *e) {
    engine_slot *best = NULL;
    for (int32_t i = 0; i < e->n_usable; i++) {
        engine_slot *s = &e->slots[i];
        if (s->req && s->seq.phase == GEN_PROMPT && s->batch_n == 0 && (!best || s->req->id < best->req->id)) best = s;
    }
    return best;
}

typedef enum want_logits { LOGITS_NONE, LOGITS_LAST, LOGITS_ALL } want_logits;

/* Appends tokens ids[0..n_ids) of slot s at rows from its n_past, with the last one's logits or every one's; at
 * positions pos3 ((n_ids, 3): a prompt with images) or, for text, row + pos_delta (after an image). */
static void batch_add(tandem_engine *e, engine_slot *s, int32_t *n, int32_t *n_logits, const int32_t *ids,
                      int32_t n_ids, want_logits want, const int32_t *pos3) {
    for (int32_t i = 0; i < n_ids; i++) {
        const int32_t t = *n + i;
        e->ids[t] = ids[i];
        e->caches[t] = s->ctx.cache;
        e->rows[t] = s->ctx.n_past + i;
        for (int32_t a = 0; a < e->n_pos; a++)
            e->pos[t * e->n_pos + a] = pos3 ? pos3[i * 3 + a] : s->ctx.n_past + i + s->ctx.pos_delta;
        e->want_logits[t] = want == LOGITS_ALL || (want == LOGITS_LAST && i == n_ids - 1);
        e->has_embd = e->has_embd || ids[i] < 0;
    }
    s->batch_at = *n;
    s->batch_n = n_ids;
    s->logits_at = want == LOGITS_NONE ? -1 : *n_logits;
    *n += n_ids;
    *n_logits += want == LOGITS_ALL ? n_ids : want == LOGITS_LAST;
}

/* The slot's request failed with st (the thread's message): it ends alone, and the slot's caches are not trusted. */
static void slot_fail(tandem_engine *e, engine_slot *s, tandem_status st) {
    gen_sequence_free(&s->seq);
    request_fail(s->req, st);
    slot_release(e, s, false);
    s->phase = SPEC_DONE;
}

static tandem_status nonfinite_logits(const tandem_model *m, const engine_slot *s) {
    return tandem_fail(TANDEM_ERR_FORMAT,
                       "%s: the logits of request %lld are not finite (tandem_generate on one context "
                       "names the tensor or layer)",
                       m->path, (long long)s->req->id);
}

/* After the pass: the sequence's tokens are in its cache; with logits, its next token is sampled and emitted (plain),
 * or its first token is, or its round accepts or corrects its proposals (speculative). */
static void slot_after_pass(tandem_engine *e, engine_slot *s) {
    tandem_ctx *ctx = &s->ctx;
    engine_request *q = s->req;
    tandem_gen_result *r = &q->r;
    if (q->vl && s->seq.phase == GEN_PROMPT) {
        vl_prompt_advance(ctx, q->vl, (size_t)ctx->n_past, s->batch_n); /* the plan's rows are the cache's */
        if ((size_t)ctx->n_past == q->n_prompt) { /* the prompt is in: its image rows are no longer needed */
            vl_prompt_free(q->vl);
            q->vl = NULL;
        }
    } else {
        memcpy(ctx->tokens + ctx->n_past, e->ids + s->batch_at, (size_t)s->batch_n * sizeof *ctx->tokens);
        if (ctx->first_image_row >= 0) /* after images: each row's continuation, for a cut (tandem_ctx_truncate) */
            for (int32_t t = 0; t < s->batch_n; t++)
                ctx->next_pos[ctx->n_past + t] = ctx->n_past + t + ctx->pos_delta + 1;
        ctx->n_past += s->batch_n;
    }
    if (s->seq.phase == GEN_PROMPT) {
        s->seq.n_prompt_done += (size_t)s->batch_n;
        if (s->seq.n_prompt_done < s->seq.n_prompt) return;
        r->timings.n_prompt = (int32_t)q->n_prompt;
        r->timings.prompt_ms = now_ms() - q->t_admitted;
        s->seq.phase = GEN_DECODE;
    }
    if (r->finish != TANDEM_FINISH_NONE) { /* max_tokens 0: the prompt read, nothing to generate */
        slot_finish(e, s);
        return;
    }
    const int32_t vocab = e->model->qwen.cfg.vocab_size;
    const bool verify = s->phase == SPEC_VERIFY;
    const float *logits = e->logits + (size_t)s->logits_at * (size_t)vocab;
    if (!all_finite_f32(logits + (size_t)(verify ? s->batch_n - 1 : 0) * vocab, vocab)) {
        slot_fail(e, s, nonfinite_logits(e->model, s));
        return;
    }
    tandem_status st;
    if (s->seq.spec) { /* as tandem_generate's speculative rounds (speculative.c) */
        st = verify ? spec_round_end(s->seq.spec, &s->seq.emit, logits)
                    : spec_decoder_first(s->seq.spec, &s->seq.emit, logits);
        s->phase = SPEC_DONE;
        if (st) slot_fail(e, s, st);
        else if (r->finish != TANDEM_FINISH_NONE) slot_finish(e, s);
        return; /* the next round finds a full context itself */
    }
    /* as plain decoding (generate.c, plain_step): sample, emit, then stop at a full context */
    int32_t id;
    st = constrained_sample(&s->seq.emit, s->seq.sampler, logits, ctx->tokens, (size_t)ctx->n_past, vocab, 0, &id);
    if (!st) st = emitter_push(&s->seq.emit, id, logits);
    if (st) {
        slot_fail(e, s, st);
        return;
    }
    if (r->finish == TANDEM_FINISH_NONE && ctx->n_past >= ctx->cache->n_ctx) r->finish = TANDEM_FINISH_CONTEXT_FULL;
    if (r->finish != TANDEM_FINISH_NONE) {
        slot_finish(e, s);
        return;
    }
    s->pending = id;
}

/* The draft passes of a step: each evaluates, for every sequence whose round waits on the draft model, what it asks
 * for (its next draft token, or the tokens its draft cache lacks, cut so that every waiting sequence has a place in
 * the pass), until every round has its proposals. */
static void draft_passes(tandem_engine *e) {
    if (!e->draft) return;
    const int32_t vocab = e->draft->qwen.cfg.vocab_size;
    for (;;) {
        int32_t n_waiting = 0;
        for (int32_t i = 0; i < e->n_usable; i++) {
            engine_slot *s = &e->slots[i];
            s->draft_n = 0;
            n_waiting += s->req && s->phase == SPEC_DRAFT;
        }
        if (n_waiting == 0) return;
        int32_t n = 0, n_logits = 0;
        for (int32_t i = 0; i < e->n_usable; i++) {
            engine_slot *s = &e->slots[i];
            if (!s->req || s->phase != SPEC_DRAFT) continue;
            n_waiting--;
            const int32_t need = s->spec_n - s->spec_done, room = e->p.n_batch - n - n_waiting;
            const int32_t take = need < room ? need : room;
            for (int32_t j = 0; j < take; j++) {
                e->d_ids[n + j] = s->spec_ids[s->spec_done + j];
                e->d_caches[n + j] = s->draft.cache;
                e->d_rows[n + j] = s->draft.n_past + j;
                e->d_want_logits[n + j] = j == need - 1;
            }
            s->draft_at = n;
            s->draft_n = take;
            s->draft_logits_at = take == need ? n_logits++ : -1;
            n += take;
        }
        const qwen3_batch b = {.n = n,
                               .ids = e->d_ids,
                               .cache = e->d_caches,
                               .row = e->d_rows,
                               .n_pos = 1,
                               .pos = e->d_rows,
                               .logits = e->d_want_logits};
        qwen3_forward(&e->draft->qwen, e->draft_scratch, e->draft->pool, &b, e->d_logits);
        for (int32_t i = 0; i < e->n_usable; i++) {
            engine_slot *s = &e->slots[i];
            if (s->draft_n == 0) continue;
            memcpy(s->draft.tokens + s->draft.n_past, e->d_ids + s->draft_at, (size_t)s->draft_n * sizeof *e->d_ids);
            s->draft.n_past += s->draft_n;
            s->spec_done += s->draft_n;
            if (s->draft_logits_at < 0) continue;
            const float *logits = e->d_logits + (size_t)s->draft_logits_at * (size_t)vocab;
            tandem_status st = all_finite_f32(logits, vocab) ? TANDEM_OK : nonfinite_logits(e->draft, s);
            if (st) spec_round_abort(s->seq.spec, &s->seq.emit);
            else st = spec_round_draft(s->seq.spec, &s->seq.emit, logits, &s->spec_ids, &s->spec_n, &s->phase);
            s->spec_done = 0;
            if (st) slot_fail(e, s, st);
        }
    }
}

/* The cached block of an image (its digest and size), NULL when none; a hit counts as a use. */
static const image_cache_entry *icache_find(tandem_engine *e, const char *hex, size_t floats) {
    for (int32_t i = 0; i < e->n_icache; i++) {
        image_cache_entry *c = &e->icache[i];
        if (c->floats == floats && !strcmp(c->digest, hex)) {
            c->last_used = ++e->icache_clock;
            return c;
        }
    }
    return NULL;
}

/* Keeps image i's encoded block, dropping the least recently used ones to stay within image_cache_bytes; a block
 * larger than the whole budget is not kept. Out of memory: not kept either (the cache is an optimisation). */
static void icache_put(tandem_engine *e, const vl_prompt *vl, int32_t i) {
    const size_t floats = vl_prompt_image_floats(vl, i);
    const int64_t bytes = (int64_t)(floats * sizeof(float));
    if (bytes > e->p.image_cache_bytes) return;
    while (e->n_icache > 0 && e->icache_bytes + bytes > e->p.image_cache_bytes) {
        int32_t lru = 0;
        for (int32_t j = 1; j < e->n_icache; j++)
            if (e->icache[j].last_used < e->icache[lru].last_used) lru = j;
        e->icache_bytes -= (int64_t)(e->icache[lru].floats * sizeof(float));
        free(e->icache[lru].block);
        e->icache[lru] = e->icache[--e->n_icache];
    }
    if (e->n_icache == e->cap_icache) {
        const int32_t cap = e->cap_icache ? 2 * e->cap_icache : 8;
        image_cache_entry *c = realloc(e->icache, (size_t)cap * sizeof *c);
        if (!c) return;
        e->icache = c;
        e->cap_icache = cap;
    }
    image_cache_entry *c = &e->icache[e->n_icache];
    if (!(c->block = malloc(floats * sizeof(float)))) return;
    const char *hex;
    vl_prompt_image_span(vl, i, NULL, NULL, &hex);
    snprintf(c->digest, sizeof c->digest, "%s", hex);
    c->floats = floats;
    c->last_used = ++e->icache_clock;
    vl_prompt_image_store(vl, i, c->block);
    e->icache_bytes += bytes;
    e->n_icache++;
}

/* The images whose rows lie in prompt tokens from … from+n−1 and are not encoded yet: from the cache, else through
 * the vision tower (on the model's pool, in this step: only when a prompt chunk reaches an image). */
static tandem_status encode_images(tandem_engine *e, engine_request *q, size_t from, int32_t n) {
    for (int32_t i = 0; i < q->n_images; i++) {
        const slot_image *sp = &q->spans[i];
        if (sp->at >= from + (size_t)n || sp->at + (size_t)sp->tokens <= from || vl_prompt_image_encoded(q->vl, i))
            continue;
        const double t0 = now_ms();
        const image_cache_entry *c = e->p.image_cache_bytes > 0
                                         ? icache_find(e, sp->digest, vl_prompt_image_floats(q->vl, i))
                                         : NULL;
        if (c) {
            tandem_status st = vl_prompt_image_load(q->vl, i, c->block);
            if (st) return st;
            q->r.timings.n_image_tokens_cached += sp->tokens;
            e->icache_hits++;
        } else {
            tandem_status st = vl_prompt_encode_image(q->vl, e->model->pool, i);
            if (st) return st;
            e->icache_misses++;
            if (e->p.image_cache_bytes > 0) icache_put(e, q->vl, i);
        }
        q->r.timings.image_ms += now_ms() - t0;
    }
    return TANDEM_OK;
}

tandem_status tandem_engine_step(tandem_engine *e, bool *idle) {
    if (!e) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_engine_step: engine is NULL");
    admit(e);
    int32_t n_decoding = 0, n_spec = 0;
    for (int32_t i = 0; i < e->n_usable; i++) {
        engine_slot *s = &e->slots[i];
        s->batch_n = 0;
        s->logits_at = -1;
        s->phase = SPEC_DONE;
        if (!s->req || s->seq.phase != GEN_DECODE) continue;
        n_decoding++;
        n_spec += s->seq.spec != NULL;
    }
    /* speculative rounds begin: proposals that fit the target pass beside one token of every decoding sequence */
    const int32_t spare = n_spec > 0 ? (e->p.n_batch - n_decoding) / n_spec : 0;
    for (int32_t i = 0; i < e->n_usable; i++) {
        engine_slot *s = &e->slots[i];
        if (!s->req || s->seq.phase != GEN_DECODE || !s->seq.spec) continue;
        s->spec_done = 0;
        tandem_status st = spec_round_begin(s->seq.spec, &s->seq.emit, spare, &s->spec_ids, &s->spec_n, &s->phase);
        if (st) slot_fail(e, s, st);
        else if (s->phase == SPEC_DONE) slot_finish(e, s); /* a full context */
    }
    draft_passes(e);
    int32_t n = 0, n_logits = 0;
    for (int32_t i = 0; i < e->n_usable; i++) { /* decodes and verifications first: they fit n_batch (above) */
        engine_slot *s = &e->slots[i];
        if (!s->req || s->seq.phase != GEN_DECODE) continue;
        if (!s->seq.spec) batch_add(e, s, &n, &n_logits, &s->pending, 1, LOGITS_LAST, NULL);
        else if (s->phase == SPEC_VERIFY) {
            batch_add(e, s, &n, &n_logits, s->spec_ids, s->spec_n, LOGITS_ALL, NULL);
            spec_round_pass_starts(s->seq.spec);
        }
    }
    e->has_embd = false;
    for (engine_slot *s; n < e->p.n_batch && (s = next_prompt_slot(e));) {
        const size_t left = s->seq.n_prompt - s->seq.n_prompt_done;
        const int32_t room = e->p.n_batch - n;
        const int32_t take = left < (size_t)room ? (int32_t)left : room;
        const want_logits want = (size_t)take == left ? LOGITS_LAST : LOGITS_NONE;
        engine_request *q = s->req;
        if (!q->vl) {
            batch_add(e, s, &n, &n_logits, s->seq.prompt + s->seq.n_prompt_done, take, want, NULL);
            continue;
        }
        /* a prompt with images: the plan's ids (−1 at image rows) and positions, from the cache's row on */
        const size_t from = (size_t)s->ctx.n_past;
        tandem_status st = encode_images(e, q, from, take);
        if (st) {
            s->batch_n = 0;
            slot_fail(e, s, st);
            continue;
        }
        batch_add(e, s, &n, &n_logits, vl_prompt_ids(q->vl) + from, take, want, vl_prompt_positions(q->vl) + from * 3);
    }
    if (n > 0) {
        for (int32_t i = 0; e->has_embd && i < e->n_usable; i++) { /* image rows go in once n is known */
            engine_slot *s = &e->slots[i];
            if (s->batch_n > 0 && s->req->vl && s->seq.phase == GEN_PROMPT)
                vl_prompt_fill_rows(s->req->vl, (size_t)s->ctx.n_past, s->batch_n, s->batch_at, n, e->embd,
                                    e->deepstack);
        }
        const qwen3_batch b = {.n = n,
                               .ids = e->ids,
                               .embd = e->has_embd ? e->embd : NULL,
                               .cache = e->caches,
                               .row = e->rows,
                               .n_pos = e->n_pos,
                               .pos = e->pos,
                               .deepstack = e->has_embd && e->model->qwen.cfg.n_deepstack ? e->deepstack : NULL,
                               .logits = e->want_logits};
        qwen3_forward(&e->model->qwen, e->scratch, e->model->pool, &b, e->logits);
        for (int32_t i = 0; i < e->n_usable; i++) {
            engine_slot *s = &e->slots[i];
            if (s->batch_n > 0) slot_after_pass(e, s);
        }
    }
    admit(e); /* slots freed by this step go to the queue now, so that *idle is true only when all is done */
    if (idle) {
        bool busy = false;
        for (size_t i = 0; i < e->n_reqs && !busy; i++)
            busy = e->reqs[i]->state == TANDEM_REQUEST_QUEUED || e->reqs[i]->state == TANDEM_REQUEST_RUNNING;
        *idle = !busy;
    }
    return TANDEM_OK;
}

tandem_status tandem_engine_cancel(tandem_engine *e, int64_t id) {
    engine_request *q = e ? find_request(e, id, NULL) : NULL;
    if (!q) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_engine_cancel: no request %lld", (long long)id);
    if (q->state == TANDEM_REQUEST_QUEUED) {
        memset(&q->r, 0, sizeof q->r);
        q->r.text = calloc(1, 1);
        if (!q->r.text) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_engine_cancel: out of memory");
        q->r.finish = TANDEM_FINISH_ABORTED;
        q->state = TANDEM_REQUEST_DONE;
    } else if (q->state == TANDEM_REQUEST_RUNNING) {
        for (int32_t i = 0; i < e->n_usable; i++)
            if (e->slots[i].req == q) {
                q->r.finish = TANDEM_FINISH_ABORTED; /* nothing more is streamed */
                slot_finish(e, &e->slots[i]);
                break;
            }
    }
    return TANDEM_OK;
}

void tandem_engine_get_usage(const tandem_engine *e, tandem_engine_usage *out) {
    memset(out, 0, sizeof *out);
    if (!e) return;
    out->n_slots = e->n_usable;
    out->rows_total = (int64_t)e->n_usable * e->p.n_ctx;
    for (int32_t i = 0; i < e->n_usable; i++) {
        const engine_slot *s = &e->slots[i];
        if (s->req) out->n_running++, out->rows_running += s->ctx.n_past;
        else out->rows_cached += s->ctx.n_past;
    }
    for (size_t i = 0; i < e->n_reqs; i++) out->n_queued += e->reqs[i]->state == TANDEM_REQUEST_QUEUED;
    out->image_cache_bytes = e->icache_bytes;
    out->image_cache_entries = e->n_icache;
    out->image_cache_hits = e->icache_hits;
    out->image_cache_misses = e->icache_misses;
}

tandem_request_state tandem_engine_request_state(const tandem_engine *e, int64_t id) {
    const engine_request *q = e ? find_request(e, id, NULL) : NULL;
    return q ? q->state : TANDEM_REQUEST_UNKNOWN;
}

tandem_status tandem_engine_request_ids(const tandem_engine *e, int64_t id, const int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    const engine_request *q = e ? find_request(e, id, NULL) : NULL;
    if (!q) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_engine_request_ids: no request %lld", (long long)id);
    *ids = q->r.ids; /* the emitter appends accepted ids only, so what is read here is never taken back */
    *n_ids = q->r.n_ids;
    return TANDEM_OK;
}

tandem_status tandem_engine_result(tandem_engine *e, int64_t id, tandem_gen_result *out) {
    memset(out, 0, sizeof *out);
    size_t at;
    engine_request *q = e ? find_request(e, id, &at) : NULL;
    if (!q) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_engine_result: no request %lld", (long long)id);
    if (q->state != TANDEM_REQUEST_DONE)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_engine_result: request %lld has not finished",
                           (long long)id);
    tandem_status st = q->status;
    if (st) tandem_fail(st, "%s", q->error ? q->error : "tandem_engine_result: the request failed");
    else {
        *out = q->r;
        memset(&q->r, 0, sizeof q->r);
    }
    request_free(q);
    memmove(e->reqs + at, e->reqs + at + 1, (e->n_reqs - at - 1) * sizeof *e->reqs);
    e->n_reqs--;
    return st;
}
