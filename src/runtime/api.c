/* api.c — tandem_model and tandem_ctx: loading a model from a GGUF file or an HF folder (weights,
 * tokenizer, generation defaults), evaluating tokens in batches, KV rollback, info for `tandem info`. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint.h"
#include "runtime.h"

/* ---- defaults ---- */

tandem_model_params tandem_model_default_params(void) { return (tandem_model_params){.n_threads = 0}; }

int32_t tandem_model_threads(const tandem_model *model) { return thread_pool_size(model->pool); }

int32_t tandem_cpu_count(void) { return cpu_count(); }

const char *tandem_kernel_isa(void) { return kernel_isa_name(); }

const char *tandem_version(void) { return TANDEM_VERSION; }

tandem_ctx_params tandem_ctx_default_params(void) {
    return (tandem_ctx_params){.n_ctx = 0, .n_batch = 64, .exact = false, .kv_type = TANDEM_TYPE_F16};
}

tandem_sampler_params tandem_model_sampler_defaults(const tandem_model *model) { return model->sampler_defaults; }

/* generation_config.json (path; NULL when the folder has none): do_sample, temperature, top_k, top_p, min_p,
 * repetition_penalty. Absent file or fields keep tandem's defaults; a malformed file is an error (the user would
 * get surprising output). */
static tandem_status read_generation_config(const char *path, tandem_sampler_params *p) {
    tandem_status st = TANDEM_OK;
    json_t *root = NULL;
    if (!path) goto done;
    if ((st = json_load_path(path, &root))) goto done;
    if (!json_is_object(root)) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: top level must be a JSON object", path);
        goto done;
    }
    double d;
    int64_t i;
    bool do_sample = true;
    if (json_get_number(root, "temperature", &d)) p->temperature = (float)d;
    if (json_get_int(root, "top_k", &i)) p->top_k = (int32_t)(i < 0 ? 0 : i > INT32_MAX ? INT32_MAX : i);
    if (json_get_number(root, "top_p", &d)) p->top_p = (float)d;
    if (json_get_number(root, "min_p", &d)) p->min_p = (float)d;
    if (json_get_number(root, "repetition_penalty", &d)) p->repeat_penalty = (float)d;
    if (json_get_bool(root, "do_sample", &do_sample) && !do_sample) p->temperature = 0.0f;
    /* generation_config.json values apply without tandem's own truncation defaults */
    if (!json_object_get(root, "min_p")) p->min_p = 0.0f;
    if (!json_object_get(root, "top_k")) p->top_k = 0;
    if (!json_object_get(root, "top_p")) p->top_p = 1.0f;
done:
    json_decref(root);
    return st;
}

/* ---- model ---- */

void tandem_model_free(tandem_model *m) {
    if (!m) return;
    qwen3_model_release(&m->qwen);
    gguf_close(m->gguf);
    safetensors_close(m->st);
    tandem_tokenizer_free(m->tokenizer);
    vit_free(m->vit);
    thread_pool_free(m->pool);
    free(m->path);
    free(m->name);
    pthread_mutex_destroy(&m->pack_lock);
    free(m);
}

static void count_weights(tandem_model *m) {
    if (m->gguf) {
        for (int64_t i = 0; i < m->gguf->n_tensors; i++) {
            const gguf_tensor *t = &m->gguf->tensors[i];
            m->n_params += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
            m->weight_bytes += (int64_t)t->nbytes;
        }
    } else {
        for (int64_t i = 0; i < m->st->n_tensors; i++) {
            const st_tensor *t = &m->st->tensors[i];
            int64_t n = 1;
            for (int d = 0; d < t->n_dims; d++) n *= t->shape[d];
            m->n_params += n;
            m->weight_bytes += (int64_t)t->nbytes;
        }
    }
}

/* A Qwen3-VL folder's vision tower (vit_load), its preprocessing (preprocessor_config.json, else Qwen3-VL's) and
 * the image placeholder's id (config.json image_token_id), checked against the text model. */
static tandem_status load_vision(tandem_model *m, const checkpoint *ck) {
    const qwen3_config *c = &m->qwen.cfg;
    tandem_status st = vit_load(ck->files.path, &m->vit);
    if (st) return st;
    const vit_config *v = vit_model_config(m->vit);
    if (v->out_hidden != c->dim || v->n_deepstack != c->n_deepstack)
        return tandem_fail(TANDEM_ERR_MISMATCH,
                           "%s: vision_config: out_hidden_size %d and %d DeepStack taps do not match the text model's "
                           "hidden_size %d and %d DeepStack layers",
                           ck->files.config, v->out_hidden, v->n_deepstack, c->dim, c->n_deepstack);
    m->preprocess = vision_preprocess_config_qwen3vl();
    if (ck->files.preprocessor_config &&
        (st = vision_preprocess_config_load(ck->files.preprocessor_config, &m->preprocess)))
        return st;
    if (m->preprocess.patch_size != v->patch_size || m->preprocess.merge_size != v->merge_size ||
        m->preprocess.temporal_patch_size != v->temporal_patch_size)
        return tandem_fail(TANDEM_ERR_MISMATCH,
                           "%s: patch_size %d, merge_size %d, temporal_patch_size %d differ from config.json's "
                           "vision_config (%d, %d, %d)",
                           ck->files.preprocessor_config, m->preprocess.patch_size, m->preprocess.merge_size,
                           m->preprocess.temporal_patch_size, v->patch_size, v->merge_size, v->temporal_patch_size);
    int64_t id = 151655; /* Qwen3VLConfig's default */
    const json_t *field = json_object_get(ck->config_json, "image_token_id");
    if (field && !json_get_int(ck->config_json, "image_token_id", &id))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: image_token_id must be an integer", ck->files.config);
    if (id < 0 || id >= c->vocab_size)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: image_token_id %lld is outside the vocabulary (0..%d)",
                           ck->files.config, (long long)id, c->vocab_size - 1);
    m->image_token_id = (int32_t)id;
    return TANDEM_OK;
}

/* A qwen3vl GGUF's vision tower from its mmproj GGUF (vit_load_gguf): Qwen3-VL's preprocessing with the tower's
 * patch and merge sizes, and the placeholder id the GGUF's tokenizer gives "<|image_pad|>". */
static tandem_status load_mmproj(tandem_model *m, const char *mmproj_path) {
    const qwen3_config *c = &m->qwen.cfg;
    if (!c->rope_sections[0] && !c->rope_sections[1] && !c->rope_sections[2])
        return tandem_fail(TANDEM_ERR_MISMATCH,
                           "tandem_model_load: mmproj_path: %s is a text model (architecture qwen3); a vision tower "
                           "needs a qwen3vl GGUF",
                           m->path);
    tandem_status st = vit_load_gguf(mmproj_path, &m->vit);
    if (st) return st;
    const vit_config *v = vit_model_config(m->vit);
    if (v->out_hidden != c->dim || v->n_deepstack != c->n_deepstack)
        return tandem_fail(TANDEM_ERR_MISMATCH,
                           "%s: the projector's width %d and %d DeepStack taps do not match %s's embedding length %d "
                           "and %d DeepStack layers",
                           mmproj_path, v->out_hidden, v->n_deepstack, m->path, c->dim, c->n_deepstack);
    gguf_file *f = NULL;
    if ((st = gguf_open(mmproj_path, &f))) return st;
    st = vision_preprocess_config_from_gguf(mmproj_path, f, &m->preprocess);
    gguf_close(f);
    if (st) return st;
    m->preprocess.temporal_patch_size = v->temporal_patch_size;
    if (m->preprocess.patch_size != v->patch_size || m->preprocess.merge_size != v->merge_size)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: clip.vision.patch_size / spatial_merge_size disagree with the tower",
                           mmproj_path);
    static const char pad[] = "<|image_pad|>";
    int32_t *ids = NULL;
    size_t n = 0;
    if ((st = tandem_tokenizer_encode(m->tokenizer, pad, sizeof pad - 1, true, &ids, &n))) return st;
    int32_t id = n == 1 ? ids[0] : -1;
    tandem_free(ids);
    if (id < 0 || id >= c->vocab_size)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: the tokenizer has no %s token for images", m->path, pad);
    m->image_token_id = id;
    return TANDEM_OK;
}

tandem_status tandem_model_load(const char *path, const tandem_model_params *params, tandem_model **out) {
    *out = NULL;
    if (!path) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_model_load: path is NULL");
    tandem_model_params defaults = tandem_model_default_params();
    if (!params) params = &defaults;
    tandem_model *m = calloc(1, sizeof *m);
    if (!m) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_model_load: out of memory");
    pthread_mutex_init(&m->pack_lock, NULL);
    tandem_status st;
    m->path = strdup(path);
    m->sampler_defaults = tandem_sampler_default_params();
    if (!m->path) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_model_load: out of memory");
        goto fail;
    }
    checkpoint ck;
    if ((st = checkpoint_open(path, &ck))) goto fail;
    if ((st = checkpoint_bind(&ck, &m->qwen))) goto fail_checkpoint;
    m->gguf = ck.gguf; /* the model keeps the maps its weights point into */
    m->st = ck.st;
    ck.gguf = NULL;
    ck.st = NULL;
    m->source = m->gguf ? "gguf" : "safetensors";
    if (m->gguf) {
        if ((st = tokenizer_load_gguf(m->gguf, &m->tokenizer))) goto fail_checkpoint;
        if (params->mmproj_path && (st = load_mmproj(m, params->mmproj_path))) goto fail_checkpoint;
        gguf_str name;
        m->name = gguf_get_str(m->gguf, "general.name", &name) ? strndup(name.ptr, name.len) : path_base_name(path);
    } else {
        if ((st = tokenizer_load_files(&ck.files, &m->tokenizer))) goto fail_checkpoint;
        if (params->mmproj_path) {
            st = tandem_fail(TANDEM_ERR_INVALID_ARG,
                             "tandem_model_load: mmproj_path: %s is a Hugging Face folder, which carries its own "
                             "vision tower",
                             path);
            goto fail_checkpoint;
        }
        if ((st = read_generation_config(ck.files.generation_config, &m->sampler_defaults))) goto fail_checkpoint;
        if (ck.files.vision_config && (st = load_vision(m, &ck))) goto fail_checkpoint;
        m->name = path_base_name(path);
    }
    checkpoint_close(&ck);
    if (!m->name) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_model_load: out of memory");
        goto fail;
    }
    if (tandem_tokenizer_vocab_size(m->tokenizer) > m->qwen.cfg.vocab_size) {
        st = tandem_fail(TANDEM_ERR_MISMATCH, "%s: the tokenizer has %d tokens but the model only %d embedding rows",
                         path, tandem_tokenizer_vocab_size(m->tokenizer), m->qwen.cfg.vocab_size);
        goto fail;
    }
    int n_threads = params->n_threads > 0 ? params->n_threads : cpu_count();
    if ((st = thread_pool_create(n_threads, &m->pool))) goto fail;
    count_weights(m);
    *out = m;
    return TANDEM_OK;
fail_checkpoint:
    checkpoint_close(&ck);
fail:
    tandem_model_free(m);
    return st;
}

void tandem_model_get_info(const tandem_model *m, tandem_model_info *info) {
    const qwen3_config *c = &m->qwen.cfg;
    *info = (tandem_model_info){
        .architecture = c->rope_sections[0] || c->rope_sections[1] || c->rope_sections[2] ? "qwen3vl" : "qwen3",
        .name = m->name,
        .source = m->source,
        .n_layers = c->n_layers,
        .dim = c->dim,
        .n_heads = c->n_heads,
        .n_kv_heads = c->n_kv_heads,
        .head_dim = c->head_dim,
        .ffn_dim = c->ffn_dim,
        .vocab_size = c->vocab_size,
        .context_length = c->context_length,
        .rope_theta = c->rope_theta,
        .rms_eps = c->rms_eps,
        .tied_embeddings = c->tied_embeddings,
        .n_params = m->n_params,
        .weight_bytes = m->weight_bytes,
        /* untied: the embedding table is read one row per token, not streamed */
        .step_bytes = m->weight_bytes - (c->tied_embeddings
                                             ? 0
                                             : (int64_t)(m->qwen.embed_tokens.row_bytes * (size_t)(c->vocab_size - 1))),
        .n_tensors = (int32_t)(m->gguf ? m->gguf->n_tensors : m->st->n_tensors),
    };
}

tandem_status tandem_model_tensor_info(const tandem_model *m, int32_t i, tandem_tensor_info *info) {
    memset(info, 0, sizeof *info);
    if (m->gguf) {
        if (i < 0 || i >= m->gguf->n_tensors)
            return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_model_tensor_info: index %d out of range", i);
        const gguf_tensor *t = &m->gguf->tensors[i];
        info->name = t->name;
        info->type = t->type;
        info->n_dims = t->n_dims;
        for (int d = 0; d < t->n_dims; d++) info->shape[d] = t->ne[t->n_dims - 1 - d];
        return TANDEM_OK;
    }
    if (i < 0 || i >= m->st->n_tensors)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_model_tensor_info: index %d out of range", i);
    const st_tensor *t = &m->st->tensors[i];
    info->name = t->name;
    info->type = t->type < 0 ? TANDEM_TYPE_COUNT : (tandem_type)t->type;
    info->n_dims = t->n_dims > 4 ? 4 : t->n_dims;
    for (int d = 0; d < info->n_dims; d++) info->shape[d] = t->shape[d];
    return TANDEM_OK;
}

const tandem_tokenizer *tandem_model_tokenizer(const tandem_model *m) { return m->tokenizer; }

/* ---- context ---- */

/* Loading reads only headers; the first context (or engine) to compute packs the weights (pack.c), once. */
tandem_status model_pack_once(tandem_model *model) {
    pthread_mutex_lock(&model->pack_lock);
    tandem_status st = model->packed ? TANDEM_OK : qwen3_pack_weights(&model->qwen, model->pool);
    model->packed = st == TANDEM_OK;
    pthread_mutex_unlock(&model->pack_lock);
    return st;
}

tandem_status tandem_ctx_init(tandem_model *model, const tandem_ctx_params *params, tandem_ctx **out) {
    *out = NULL;
    tandem_ctx_params p = params ? *params : tandem_ctx_default_params();
    const int32_t model_ctx = model->qwen.cfg.context_length;
    if (p.n_ctx == 0) p.n_ctx = model_ctx < 4096 ? model_ctx : 4096;
    if (p.n_batch == 0) p.n_batch = 64;
    if (p.n_ctx < 1 || p.n_ctx > (1 << 24))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_ctx_init: n_ctx %d out of range 1..%d", p.n_ctx, 1 << 24);
    if (p.n_batch < 1 || p.n_batch > 4096)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_ctx_init: n_batch %d out of range 1..4096", p.n_batch);
    const char *kv_problem = kv_type_problem(p.kv_type, model->qwen.cfg.head_dim);
    if (kv_problem)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_ctx_init: tandem_ctx_params.kv_type %s (type %d): %s",
                           tandem_type_name(p.kv_type), (int)p.kv_type, kv_problem);
    tandem_status pack_st = model_pack_once(model);
    if (pack_st) return pack_st;
    tandem_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_ctx_init: out of memory");
    ctx->model = model;
    ctx->tokens = malloc((size_t)p.n_ctx * sizeof *ctx->tokens);
    ctx->pos = malloc((size_t)p.n_batch * sizeof *ctx->pos);
    ctx->next_pos = malloc((size_t)p.n_ctx * sizeof *ctx->next_pos);
    ctx->first_image_row = -1;
    ctx->logits = malloc((size_t)model->qwen.cfg.vocab_size * sizeof *ctx->logits);
    tandem_status st = !ctx->tokens || !ctx->logits || !ctx->pos || !ctx->next_pos
                           ? tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_ctx_init: out of memory")
                           : qwen3_kv_cache_init(&model->qwen, p.n_ctx, p.exact ? TANDEM_TYPE_F32 : p.kv_type,
                                                 &ctx->cache);
    if (!st) st = qwen3_scratch_init(&model->qwen, p.n_batch, thread_pool_size(model->pool), p.exact, &ctx->scratch);
    if (st) {
        tandem_ctx_free(ctx);
        return st;
    }
    *out = ctx;
    return TANDEM_OK;
}

void tandem_ctx_free(tandem_ctx *ctx) {
    if (!ctx) return;
    qwen3_scratch_free(ctx->scratch);
    qwen3_kv_cache_free(ctx->cache);
    free(ctx->tokens);
    free(ctx->logits);
    free(ctx->pos);
    free(ctx->next_pos);
    free(ctx);
}

int32_t tandem_ctx_n_ctx(const tandem_ctx *ctx) { return ctx->cache->n_ctx; }
tandem_type tandem_ctx_kv_type(const tandem_ctx *ctx) { return ctx->cache->kv_type; }
int32_t tandem_ctx_n_past(const tandem_ctx *ctx) { return ctx->n_past; }

/* The logits of a pass over ids (n of them, at position ctx->n_past) are not finite: names the cause, slowly (this
 * runs once, on failure). A weight that is NaN or infinite, the first in the forward pass; else, every weight being
 * finite, the first layer whose output is not (activations that overflow), found by running the pass again with
 * the residual stream kept per layer. */
static tandem_status nonfinite_logits_error(tandem_ctx *ctx, const int32_t *ids, int32_t n) {
    const tandem_model *m = ctx->model;
    const qwen3_config *c = &m->qwen.cfg;
    qwen3_bad_weight bad;
    tandem_status st = qwen3_find_nonfinite_weight(m->gguf, m->st, &bad);
    if (st) return st;
    if (bad.name) {
        char layer[32] = "";
        if (bad.layer >= 0) snprintf(layer, sizeof layer, " (layer %d)", bad.layer);
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: the logits are not finite: tensor '%s'%s holds %s at [%lld, %lld]",
                           m->path, bad.name, layer, isnan(bad.value) ? "NaN" : "an infinity", (long long)bad.row,
                           (long long)bad.col);
    }
    const size_t per_layer = (size_t)n * (size_t)c->dim;
    float *states = malloc((size_t)(c->n_layers + 1) * per_layer * sizeof *states);
    if (!states) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: the logits are not finite (out of memory finding why)",
                                    m->path);
    ctx->scratch->layer_states = states;
    const qwen3_batch b = qwen3_sequence_batch(ctx->scratch, ctx->cache, ids, n, ctx->n_past, true);
    qwen3_forward(&m->qwen, ctx->scratch, m->pool, &b, ctx->logits);
    ctx->scratch->layer_states = NULL;
    int32_t layer = 0;
    while (layer < c->n_layers && all_finite_f32(states + (size_t)(layer + 1) * per_layer, (int64_t)per_layer)) layer++;
    free(states);
    if (layer < c->n_layers)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: the logits are not finite: every weight is, but the output of layer "
                           "%d is not (activations overflow)", m->path, layer);
    return tandem_fail(TANDEM_ERR_FORMAT, "%s: the logits are not finite: every weight and layer output is (the output "
                       "head overflows)", m->path);
}

tandem_status tandem_ctx_eval(tandem_ctx *ctx, const int32_t *ids, int32_t n, float *logits) {
    const qwen3_model *qm = &ctx->model->qwen;
    if (n < 1 || !ids) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_ctx_eval: need at least one token");
    if (n > ctx->cache->n_ctx - ctx->n_past)
        return tandem_fail(TANDEM_ERR_CONTEXT_FULL,
                           "context full: %d tokens held + %d new would exceed the context size of %d tokens",
                           ctx->n_past, n, ctx->cache->n_ctx);
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= qm->cfg.vocab_size)
            return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_ctx_eval: token id %d at index %d is outside 0..%d",
                               ids[i], i, qm->cfg.vocab_size - 1);
    for (int32_t done = 0; done < n;) {
        int32_t chunk = n - done < ctx->scratch->n_batch ? n - done : ctx->scratch->n_batch;
        bool last = done + chunk == n;
        float *out = logits ? logits + (size_t)done * qm->cfg.vocab_size : NULL;
        qwen3_batch b = qwen3_sequence_batch(ctx->scratch, ctx->cache, ids + done, chunk, ctx->n_past, !out);
        if (ctx->pos_delta) { /* after an image (Qwen3-VL): positions continue from the image's, three equal axes */
            for (int32_t t = 0; t < chunk; t++) ctx->pos[t] = ctx->n_past + t + ctx->pos_delta;
            b.pos = ctx->pos;
        }
        qwen3_forward(qm, ctx->scratch, ctx->model->pool, &b, out ? out : ctx->logits);
        /* A NaN or an infinity would be sampled as an arbitrary token. The last position sees every earlier one
         * through attention, so its row stands for the pass: one row per pass, cheap beside the pass itself. */
        if (!all_finite_f32(out ? out + (size_t)(chunk - 1) * qm->cfg.vocab_size : ctx->logits, qm->cfg.vocab_size)) {
            ctx->has_logits = false;
            return nonfinite_logits_error(ctx, ids + done, chunk);
        }
        if (logits && last)  /* keep tandem_ctx_logits() valid in the all-logits mode too */
            memcpy(ctx->logits, out + (size_t)(chunk - 1) * qm->cfg.vocab_size,
                   (size_t)qm->cfg.vocab_size * sizeof(float));
        memcpy(ctx->tokens + ctx->n_past, ids + done, (size_t)chunk * sizeof *ids);
        if (ctx->first_image_row >= 0)
            for (int32_t t = 0; t < chunk; t++) ctx->next_pos[ctx->n_past + t] = ctx->n_past + t + ctx->pos_delta + 1;
        ctx->n_past += chunk;
        done += chunk;
    }
    ctx->has_logits = true;
    return TANDEM_OK;
}

const float *tandem_ctx_logits(const tandem_ctx *ctx) { return ctx->has_logits ? ctx->logits : NULL; }

tandem_status tandem_ctx_truncate(tandem_ctx *ctx, int32_t n_keep) {
    if (n_keep < 0 || n_keep > ctx->n_past)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_ctx_truncate: n_keep %d outside 0..%d", n_keep, ctx->n_past);
    /* Cache rows past n_keep are simply overwritten later: attention never reads beyond a query's
     * own position. The last logits no longer describe the sequence unless nothing was dropped. */
    if (n_keep < ctx->n_past) ctx->has_logits = false;
    /* text after the cut continues from the kept rows' positions: the rows' own before any image */
    if (n_keep < ctx->n_past && ctx->first_image_row >= 0) {
        if (n_keep <= ctx->first_image_row) ctx->pos_delta = 0, ctx->first_image_row = -1;
        else ctx->pos_delta = ctx->next_pos[n_keep - 1] - n_keep;
    }
    ctx->n_past = n_keep;
    return TANDEM_OK;
}
