/* prune.c — depth pruning by angular distance (Gromov et al., "The Unreasonable Ineffectiveness of the Deeper
 * Layers", arXiv 2403.17887): layer-block distances on calibration text, perplexity before/after, the shallower GGUF. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "tandem.h"
#include "train.h"

tandem_prune_params tandem_prune_default_params(void) {
    tandem_prune_params p;
    memset(&p, 0, sizeof p);
    p.window = 256;
    p.max_tokens = 8192;
    return p;
}

void tandem_prune_result_free(tandem_prune_result *r) {
    if (!r) return;
    free(r->distance);
    free(r->removed);
    memset(r, 0, sizeof *r);
}

/* Σ over positions t < n−1 of −log softmax(logits[t])[ids[t+1]]. logits (n, V). */
static double next_token_nll(const float *logits, const int32_t *ids, int n, int V) {
    double nll = 0;
    for (int t = 0; t + 1 < n; t++) {
        const float *z = logits + (size_t)t * V;
        float max = z[0];
        for (int i = 1; i < V; i++) max = z[i] > max ? z[i] : max;
        double sum = 0;
        for (int i = 0; i < V; i++) sum += exp((double)z[i] - max);
        nll += max + log(sum) - z[ids[t + 1]];
    }
    return nll;
}

void prune_block_distances(double *dist_sum, const float *states, int L, int n_tok, int dim, double *norms) {
    for (int l = 0; l <= L; l++)
        for (int t = 0; t < n_tok; t++) {
            const float *h = states + ((size_t)l * n_tok + t) * dim;
            double s = 0;
            for (int i = 0; i < dim; i++) s += (double)h[i] * h[i];
            norms[(size_t)l * n_tok + t] = sqrt(s);
        }
    for (int l = 0; l < L; l++)
        for (int n = 1; l + n <= L; n++)
            for (int t = 0; t < n_tok; t++) {
                const float *a = states + ((size_t)l * n_tok + t) * dim, *b = states + ((size_t)(l + n) * n_tok + t) * dim;
                double dot = 0;
                for (int i = 0; i < dim; i++) dot += (double)a[i] * b[i];
                const double den = norms[(size_t)l * n_tok + t] * norms[(size_t)(l + n) * n_tok + t];
                double c = den > 0 ? dot / den : 1.0;
                c = c > 1 ? 1 : c < -1 ? -1 : c;
                dist_sum[(size_t)l * L + n - 1] += acos(c) / M_PI;
            }
}

/* The calibration passes over ids (n_ids), each window from position 0: with dist_sum, the distance sums over every
 * token; the NLL sum and count of the positions tandem_perplexity scores with n_ctx = window (tandem.h): whole
 * windows only, positions TANDEM_PPL_FIRST_SCORED(window) … window−2 predicting the next token. */
static void calibrate(const qwen3_model *m, qwen3_scratch *s, qwen3_kv_cache *cache, thread_pool *pool,
                      const int32_t *ids, int64_t n_ids, int window, float *logits, double *nll, int64_t *n_scored,
                      double *dist_sum, double *norms) {
    const int V = m->cfg.vocab_size, first = TANDEM_PPL_FIRST_SCORED(window);
    *nll = 0;
    *n_scored = 0;
    for (int64_t off = 0; off < n_ids; off += window) {
        const int n = (int)(n_ids - off < window ? n_ids - off : window);
        const qwen3_batch b = qwen3_sequence_batch(s, cache, ids + off, n, 0, false);
        qwen3_forward(m, s, pool, &b, logits);
        if (n == window && first < n - 1) {
            *nll += next_token_nll(logits + (size_t)first * V, ids + off + first, n - first, V);
            *n_scored += n - 1 - first;
        }
        if (dist_sum) prune_block_distances(dist_sum, s->layer_states, m->cfg.n_layers, n, m->cfg.dim, norms);
    }
}

/* "blk.<i>.<rest>" → i and the offset of <rest>; −1 for other names. */
static int block_index(const char *name, int *rest) {
    const long long l = qwen3_layer_of_name(name, NAMING_GGUF);
    if (l < 0) return -1;
    *rest = (int)(strchr(name + strlen(qwen3_block_prefix(NAMING_GGUF)), '.') + 1 - name);
    return l > INT_MAX ? INT_MAX : (int)l; /* beyond any block_count: an error, not a global tensor */
}

/* The pruned model as GGUF: every kept tensor's bytes unchanged, layers renumbered, metadata and tokenizer kept. */
static tandem_status write_pruned(const model_source *src, const char *model_path, const bool *removed,
                                  int new_layers, const char *out) {
    const qwen3_config *c = &src->model.cfg;
    gguf_writer *w = NULL;
    tandem_status st = gguf_writer_init(&w);
    if (st) return st;
    int *renumber = malloc((size_t)c->n_layers * sizeof *renumber);
    if (!renumber) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", out);
        goto done;
    }
    for (int l = 0, k = 0; l < c->n_layers; l++) renumber[l] = removed[l] ? -1 : k++;
    char name[160];
    if (src->gguf) {
        const gguf_file *f = src->gguf;
        for (int64_t i = 0; i < f->n_kv && !st; i++)
            st = !strcmp(f->kv[i].key, "qwen3.block_count")
                     ? gguf_writer_set_u32(w, "qwen3.block_count", (uint32_t)new_layers)
                     : gguf_writer_copy_kv(w, &f->kv[i]);
        for (int64_t i = 0; i < f->n_tensors && !st; i++) {
            const gguf_tensor *t = &f->tensors[i];
            int rest, l = block_index(t->name, &rest);
            if (l >= c->n_layers) {
                st = tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s' names a layer beyond block_count %d", model_path,
                                 t->name, c->n_layers);
                break;
            }
            if (l >= 0 && removed[l]) continue;
            if (l >= 0) snprintf(name, sizeof name, "blk.%d.%s", renumber[l], t->name + rest);
            else snprintf(name, sizeof name, "%s", t->name);
            st = gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data);
        }
    } else {
        qwen3_config nc = *c;
        nc.n_layers = new_layers;
        char *base = path_base_name(model_path);
        st = qwen3_config_write_gguf(w, &nc, base ? base : "model", train_gguf_file_type(src->model.layers[0].q_proj.type));
        free(base);
        if (!st) st = train_write_tokenizer(w, model_path, c->vocab_size);
        for (int64_t i = 0; i < src->st->n_tensors && !st; i++) {
            const st_tensor *t = &src->st->tensors[i];
            char g[160];
            qwen3_tensor kind;
            int layer;
            /* tandem writes the tensors it knows (not, say, rotary_emb.inv_freq), in GGUF names */
            if (!qwen3_tensor_parse(t->name, NAMING_HF, &kind, &layer)) continue;
            if (kind == QWEN3_OUTPUT && c->tied_embeddings) continue;
            qwen3_tensor_name(kind, layer, NAMING_GGUF, g, sizeof g);
            if (t->type < 0 || t->n_dims < 1 || t->n_dims > 2) {
                st = tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s, which GGUF output cannot take",
                                 model_path, t->name, t->dtype);
                break;
            }
            int rest, l = block_index(g, &rest);
            if (l >= c->n_layers) continue;  /* bind checked the layers that exist; extras are not written */
            if (l >= 0 && removed[l]) continue;
            if (l >= 0) snprintf(name, sizeof name, "blk.%d.%s", renumber[l], g + rest);
            else snprintf(name, sizeof name, "%s", g);
            int64_t ne[2] = {t->shape[t->n_dims - 1], t->n_dims == 2 ? t->shape[0] : 1};
            st = gguf_writer_add_tensor(w, name, (tandem_type)t->type, t->n_dims, ne, t->data);
        }
    }
    if (!st) st = gguf_writer_write(w, out);
done:
    free(renumber);
    gguf_writer_free(w);
    return st;
}

tandem_status tandem_prune(const tandem_prune_params *p, tandem_prune_result *r) {
    if (!p || !r || !p->model_path || !p->calib_path)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_prune: a model and a calibration text are required");
    memset(r, 0, sizeof *r);
    if (p->output_path && path_exists(p->output_path) && !p->force)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: already exists (set tandem_prune_params.force to overwrite)",
                           p->output_path);
    if (p->window < 2 || p->max_tokens < 2)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_prune: window %d and max_tokens %d must be ≥ 2", p->window,
                           p->max_tokens);
    tandem_status st;
    model_source src = {0};
    tandem_tokenizer *tok = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    thread_pool *pool = NULL;
    qwen3_scratch *s = NULL;
    qwen3_kv_cache *cache = NULL;
    float *logits = NULL, *states = NULL;
    double *dist_sum = NULL, *norms = NULL;
    bool *removed = NULL;
    qwen3_model pruned = {0};
    size_t text_len = 0, n_ids = 0;

    if ((st = model_source_open(&src, p->model_path))) goto done;
    const qwen3_config *c = &src.model.cfg;
    const int L = c->n_layers;
    /* which layers go: validated before the (long) calibration */
    removed = calloc((size_t)L, sizeof *removed);
    if (!removed) goto oom;
    if (p->layers) {
        if (p->n_layers_listed < 1 || p->n_layers_listed >= L) {
            st = tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: removing %d of its %d layers would leave none", p->model_path,
                             p->n_layers_listed, L);
            goto done;
        }
        for (int i = 0; i < p->n_layers_listed; i++) {
            const int l = p->layers[i];
            if (l < 0 || l >= L || removed[l]) {
                st = tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: layer %d is %s (the model has layers 0..%d)",
                                 p->model_path, l, l >= 0 && l < L ? "listed twice" : "out of range", L - 1);
                goto done;
            }
            removed[l] = true;
        }
    } else if (p->output_path && (p->n_remove < 1 || p->n_remove >= L)) {
        st = tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: cannot remove %d of its %d layers (1 … %d)", p->model_path,
                         p->n_remove, L, L - 1);
        goto done;
    }

    if ((st = tandem_tokenizer_load(p->model_path, &tok))) goto done;
    if ((st = train_read_text(p->calib_path, &text, &text_len))) goto done;
    if (text_len == 0) {
        st = tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: the calibration text is empty", p->calib_path);
        goto done;
    }
    /* added tokens not parsed, as tandem_perplexity reads a text */
    if ((st = tandem_tokenizer_encode(tok, text, text_len, false, &ids, &n_ids))) goto done;
    if (n_ids < 2) {
        st = tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: the calibration text has %zu token(s); at least 2 are needed",
                         p->calib_path, n_ids);
        goto done;
    }
    if (n_ids > (size_t)p->max_tokens) n_ids = (size_t)p->max_tokens;
    const int window = (int)(n_ids < (size_t)p->window ? n_ids : (size_t)p->window);

    if ((st = thread_pool_create(p->n_threads > 0 ? p->n_threads : cpu_count(), &pool))) goto done;
    if ((st = qwen3_kv_cache_init(&src.model, window, TANDEM_TYPE_F32, &cache)) ||
        (st = qwen3_scratch_init(&src.model, window, thread_pool_size(pool), true, &s)))
        goto done;
    logits = malloc((size_t)window * c->vocab_size * sizeof *logits);
    states = malloc((size_t)(L + 1) * window * c->dim * sizeof *states);
    dist_sum = calloc((size_t)L * L, sizeof *dist_sum);
    norms = malloc((size_t)(L + 1) * window * sizeof *norms);
    r->distance = malloc((size_t)L * L * sizeof *r->distance);
    if (!logits || !states || !dist_sum || !norms || !r->distance) goto oom;
    s->layer_states = states;
    double nll;
    int64_t n_scored;
    calibrate(&src.model, s, cache, pool, ids, (int64_t)n_ids, window, logits, &nll, &n_scored, dist_sum, norms);
    s->layer_states = NULL;
    r->n_layers = L;
    r->n_tokens = (int64_t)n_ids;
    r->ppl_before = n_scored > 0 ? exp(nll / (double)n_scored) : NAN;
    for (int l = 0; l < L; l++)
        for (int n = 1; n <= L; n++)
            r->distance[(size_t)l * L + n - 1] = l + n <= L ? (float)(dist_sum[(size_t)l * L + n - 1] / (double)n_ids) : NAN;

    /* the block with the smallest distance, unless the layers were listed */
    if (!p->layers && p->n_remove >= 1 && p->n_remove < L) {
        int best = 0;
        for (int l = 1; l + p->n_remove <= L; l++)
            if (r->distance[(size_t)l * L + p->n_remove - 1] < r->distance[(size_t)best * L + p->n_remove - 1]) best = l;
        for (int l = best; l < best + p->n_remove; l++) removed[l] = true;
    }
    for (int l = 0; l < L; l++) r->n_removed += removed[l];
    if (r->n_removed > 0) {
        r->removed = malloc((size_t)r->n_removed * sizeof *r->removed);
        pruned = src.model;
        pruned.layers = malloc((size_t)(L - r->n_removed) * sizeof *pruned.layers);
        if (!r->removed || !pruned.layers) goto oom;
        pruned.cfg.n_layers = L - r->n_removed;
        for (int l = 0, i = 0, k = 0; l < L; l++) {
            if (removed[l]) r->removed[i++] = l;
            else pruned.layers[k++] = src.model.layers[l];
        }
        /* the pruned model is the same forward pass over fewer layers (the cache is sized for more: harmless) */
        calibrate(&pruned, s, cache, pool, ids, (int64_t)n_ids, window, logits, &nll, &n_scored, NULL, NULL);
        r->ppl_after = n_scored > 0 ? exp(nll / (double)n_scored) : NAN;
        if (p->output_path && (st = write_pruned(&src, p->model_path, removed, L - r->n_removed, p->output_path)))
            goto done;
    }
    goto done;
oom:
    st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", p->model_path);
done:
    free(pruned.layers);
    free(removed);
    free(dist_sum);
    free(norms);
    free(states);
    free(logits);
    qwen3_scratch_free(s);
    qwen3_kv_cache_free(cache);
    thread_pool_free(pool);
    tandem_free(ids);
    free(text);
    tandem_tokenizer_free(tok);
    model_source_close(&src);
    if (st) tandem_prune_result_free(r);
    return st;
}
