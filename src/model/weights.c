/* weights.c — binds Qwen3 weights by name from a GGUF (llama.cpp names) or safetensors (HF names):
 * presence, shape and type are checked here so the forward pass can trust every pointer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "names.h"
#include "qwen3.h"

/* One tensor as found in either source: PyTorch shape order (outermost first). */
typedef struct tensor_view {
    const char *name;   /* the name in the source, for messages */
    const void *data;
    int32_t type;       /* tandem_type, or -1 for a dtype tandem cannot run */
    const char *dtype;  /* for messages */
    int32_t n_dims;
    int64_t shape[8];
} tensor_view;

typedef struct weight_source {
    const char *path;  /* file or folder, for messages */
    const gguf_file *gguf;
    const st_set *st;
    tensor_naming naming; /* GGUF for a GGUF; HF, or HF_VL for a Qwen3-VL checkpoint's text model */
} weight_source;

static void view_gguf(const gguf_tensor *t, tensor_view *v) {
    memset(v, 0, sizeof *v);
    v->name = t->name;
    v->data = t->data;
    v->type = (int32_t)t->type;
    v->dtype = tandem_type_name(t->type);
    v->n_dims = t->n_dims;
    for (int i = 0; i < t->n_dims; i++) v->shape[i] = t->ne[t->n_dims - 1 - i];  /* GGUF ne is reversed */
}

static void view_st(const st_tensor *t, tensor_view *v) {
    memset(v, 0, sizeof *v);
    v->name = t->name;
    v->data = t->data;
    v->type = t->type;
    v->dtype = t->dtype;
    v->n_dims = t->n_dims;
    memcpy(v->shape, t->shape, sizeof v->shape);
}

/* Looks a tensor up by its name in the source (GGUF or HF naming, whichever the source uses); false if absent. */
static bool find_tensor(const weight_source *src, const char *name, tensor_view *v) {
    memset(v, 0, sizeof *v);
    if (src->gguf) {
        const gguf_tensor *t = gguf_find_tensor(src->gguf, name);
        if (t) view_gguf(t, v);
        return t != NULL;
    }
    const st_tensor *t = safetensors_find(src->st, name);
    if (t) view_st(t, v);
    return t != NULL;
}

/* Every tensor of the source in turn, in file order: the i-th into *v; false past the last. */
static bool source_tensor(const weight_source *src, int64_t i, tensor_view *v) {
    if (src->gguf) {
        if (i >= src->gguf->n_tensors) return false;
        view_gguf(&src->gguf->tensors[i], v);
    } else {
        if (i >= src->st->n_tensors) return false;
        view_st(&src->st->tensors[i], v);
    }
    return true;
}

/* The layer a tensor name belongs to ("blk.N." in GGUF, "model.layers.N." or "model.language_model.layers.N." in
 * HF names), or -1. */
static int64_t layer_of(const weight_source *src, const char *name) { return qwen3_layer_of_name(name, src->naming); }

/* Makes room for one more owned pointer (m->owned[m->n_owned]); false when out of memory. */
static bool own_slot(qwen3_model *m) {
    void **grown = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *grown);
    if (grown) m->owned = grown;
    return grown != NULL;
}

static void *own(qwen3_model *m, size_t bytes) {
    void *p = own_slot(m) ? malloc(bytes ? bytes : 1) : NULL;
    if (p) m->owned[m->n_owned++] = p;
    return p;
}

/* Tensor t of layer `layer` (ignored for a global tensor), by the name the source uses. */
static tandem_status require(const weight_source *src, qwen3_tensor t, int layer, tensor_view *v) {
    char name[128];
    if (!qwen3_tensor_name(t, layer, src->naming, name, sizeof name))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: layer %d: tensor name too long", src->path, layer);
    if (!find_tensor(src, name, v)) return tandem_fail(TANDEM_ERR_FORMAT, "%s: missing tensor '%s'", src->path, name);
    if (v->type < 0 || !kernel_type_supported((tandem_type)v->type))
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which tandem cannot run yet",
                           src->path, v->name, v->dtype);
    return TANDEM_OK;
}

static tandem_status shape_error(const weight_source *src, const tensor_view *v, int64_t rows, int64_t cols) {
    char got[128] = "";
    size_t n = 0;
    for (int i = 0; i < v->n_dims && n < sizeof got - 24; i++)
        n += (size_t)snprintf(got + n, sizeof got - n, "%s%lld", i ? ", " : "", (long long)v->shape[i]);
    if (rows < 0)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s' has shape [%s], expected [%lld] from the config",
                           src->path, v->name, got, (long long)cols);
    return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s' has shape [%s], expected [%lld, %lld] from the config",
                       src->path, v->name, got, (long long)rows, (long long)cols);
}

static tandem_status bind_matrix(qwen3_model *m, const weight_source *src, qwen3_tensor t, int layer, int64_t rows,
                                 int64_t cols, weight_matrix *w) {
    tensor_view v;
    tandem_status st = require(src, t, layer, &v);
    if (st) return st;
    if (v.n_dims != 2 || v.shape[0] != rows || v.shape[1] != cols) return shape_error(src, &v, rows, cols);
    uint64_t row_bytes;
    if (!tandem_type_row_bytes((tandem_type)v.type, cols, &row_bytes))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s': %lld columns are not whole %s blocks", src->path,
                           v.name, (long long)cols, v.dtype);
    w->data = v.data;
    w->type = (tandem_type)v.type;
    w->rows = rows;
    w->cols = cols;
    w->row_bytes = (size_t)row_bytes;
    /* Kernels read f32/f16 elements through typed pointers; safetensors only guarantees byte offsets.
     * A misaligned tensor (rare) gets an aligned copy rather than undefined behaviour. */
    size_t align = (size_t)tandem_type_size((tandem_type)v.type);
    if (align > 1 && tandem_type_block_size((tandem_type)v.type) == 1 && (uintptr_t)v.data % align != 0) {
        void *copy = own(m, row_bytes * (size_t)rows);
        if (!copy) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory copying '%s'", src->path, v.name);
        memcpy(copy, v.data, row_bytes * (size_t)rows);
        w->data = copy;
    }
    return TANDEM_OK;
}

/* Norm weights become f32 copies: they are tiny, and bf16/f16 checkpoints store them in half precision. */
static tandem_status bind_vector(qwen3_model *m, const weight_source *src, qwen3_tensor t, int layer, int64_t n,
                                 const float **out) {
    tensor_view v;
    tandem_status st = require(src, t, layer, &v);
    if (st) return st;
    if (v.n_dims != 1 || v.shape[0] != n) return shape_error(src, &v, -1, n);
    if (tandem_type_block_size((tandem_type)v.type) != 1)
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: tensor '%s' is %s; norm weights must be F32, F16 or BF16",
                           src->path, v.name, v.dtype);
    float *copy = own(m, (size_t)n * sizeof(float));
    if (!copy) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", src->path);
    dequantize_row((tandem_type)v.type, v.data, copy, n);
    *out = copy;
    return TANDEM_OK;
}

static tandem_status bind_all(qwen3_model *m, const weight_source *src) {
    const qwen3_config *c = &m->cfg;
    const int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
    tandem_status st;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", src->path);
    if ((st = bind_matrix(m, src, QWEN3_TOKEN_EMBD, -1, c->vocab_size, c->dim, &m->embed_tokens)) ||
        (st = bind_vector(m, src, QWEN3_OUTPUT_NORM, -1, c->dim, &m->norm)))
        return st;
    if (c->tied_embeddings) {
        m->lm_head = m->embed_tokens;
    } else if ((st = bind_matrix(m, src, QWEN3_OUTPUT, -1, c->vocab_size, c->dim, &m->lm_head))) {
        return st;
    }
    for (int l = 0; l < c->n_layers; l++) {
        qwen3_layer *L = &m->layers[l];
        if ((st = bind_vector(m, src, QWEN3_ATTN_NORM, l, c->dim, &L->input_layernorm)) ||
            (st = bind_matrix(m, src, QWEN3_ATTN_Q, l, q_dim, c->dim, &L->q_proj)) ||
            (st = bind_matrix(m, src, QWEN3_ATTN_K, l, kv_dim, c->dim, &L->k_proj)) ||
            (st = bind_matrix(m, src, QWEN3_ATTN_V, l, kv_dim, c->dim, &L->v_proj)) ||
            (st = bind_vector(m, src, QWEN3_ATTN_Q_NORM, l, c->head_dim, &L->q_norm)) ||
            (st = bind_vector(m, src, QWEN3_ATTN_K_NORM, l, c->head_dim, &L->k_norm)) ||
            (st = bind_matrix(m, src, QWEN3_ATTN_OUTPUT, l, c->dim, q_dim, &L->o_proj)) ||
            (st = bind_vector(m, src, QWEN3_FFN_NORM, l, c->dim, &L->post_attention_layernorm)) ||
            (st = bind_matrix(m, src, QWEN3_FFN_GATE, l, c->ffn_dim, c->dim, &L->gate_proj)) ||
            (st = bind_matrix(m, src, QWEN3_FFN_UP, l, c->ffn_dim, c->dim, &L->up_proj)) ||
            (st = bind_matrix(m, src, QWEN3_FFN_DOWN, l, c->dim, c->ffn_dim, &L->down_proj)))
            return st;
    }
    /* A tensor of a layer the config does not have would be ignored: a file cut or merged wrongly, or a
     * block_count that lies, and the model would run with layers missing. */
    tensor_view v;
    for (int64_t i = 0; source_tensor(src, i, &v); i++) {
        const int64_t l = layer_of(src, v.name);
        if (l >= c->n_layers)
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s' belongs to layer %lld, but %s is %d (layers 0..%d)",
                               src->path, v.name, (long long)l, src->gguf ? "qwen3.block_count" : "num_hidden_layers",
                               c->n_layers, c->n_layers - 1);
    }
    return TANDEM_OK;
}

tandem_status qwen3_bind_gguf(qwen3_model *m, const gguf_file *f) {
    weight_source src = {f->map.path, f, NULL, NAMING_GGUF};
    tandem_status st = bind_all(m, &src);
    if (st) qwen3_model_release(m);
    return st;
}

tandem_status qwen3_bind_safetensors(qwen3_model *m, const st_set *s, const char *dir) {
    /* a Qwen3-VL checkpoint keeps its text model under model.language_model (and its vision tower beside it) */
    const bool vl = safetensors_find(s, qwen3_global_name(QWEN3_TOKEN_EMBD, NAMING_HF_VL)) != NULL;
    weight_source src = {dir, NULL, s, vl ? NAMING_HF_VL : NAMING_HF};
    tandem_status st = bind_all(m, &src);
    if (st) qwen3_model_release(m);
    return st;
}

/* Where a tensor comes in the forward pass, for naming the first bad one: the embeddings, the layers in order,
 * then the final norm and the output head. */
static int64_t forward_rank(const weight_source *src, const tensor_view *v) {
    const int64_t l = layer_of(src, v->name);
    if (l >= 0) return 1 + l;
    return strstr(v->name, "embd") || strstr(v->name, "embed") ? 0 : INT64_MAX;
}

tandem_status qwen3_find_nonfinite_weight(const gguf_file *f, const st_set *s, qwen3_bad_weight *bad) {
    const bool vl = !f && safetensors_find(s, qwen3_global_name(QWEN3_TOKEN_EMBD, NAMING_HF_VL)) != NULL;
    const weight_source src = {NULL, f, f ? NULL : s, f ? NAMING_GGUF : vl ? NAMING_HF_VL : NAMING_HF};
    memset(bad, 0, sizeof *bad);
    int64_t best_rank = INT64_MAX;
    float *row = NULL;
    void *aligned = NULL;
    size_t row_cap = 0, aligned_cap = 0;
    tensor_view v;
    for (int64_t i = 0; source_tensor(&src, i, &v); i++) {
        if (v.type < 0 || !kernel_type_supported((tandem_type)v.type) || v.n_dims < 1) continue;
        const int64_t rank = forward_rank(&src, &v);
        if (bad->name && rank >= best_rank) continue;
        const int64_t cols = v.shape[v.n_dims - 1];
        int64_t rows = 1;
        for (int d = 0; d < v.n_dims - 1; d++) rows *= v.shape[d];
        uint64_t row_bytes;
        if (cols < 1 || !tandem_type_row_bytes((tandem_type)v.type, cols, &row_bytes)) continue;
        if ((size_t)cols > row_cap || (size_t)row_bytes > aligned_cap) {
            row_cap = row_cap > (size_t)cols ? row_cap : (size_t)cols;
            aligned_cap = aligned_cap > row_bytes ? aligned_cap : (size_t)row_bytes;
            free(row);
            free(aligned);
            row = malloc(row_cap * sizeof(float));
            aligned = malloc(aligned_cap);
            if (!row || !aligned) {
                free(row);
                free(aligned);
                return tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory checking the weights");
            }
        }
        for (int64_t r = 0; r < rows; r++) {
            /* safetensors only promises byte offsets; the row kernels read f32/f16 through typed pointers */
            memcpy(aligned, (const uint8_t *)v.data + (size_t)r * row_bytes, (size_t)row_bytes);
            dequantize_row((tandem_type)v.type, aligned, row, cols);
            if (all_finite_f32(row, cols)) continue;
            int64_t c = 0;
            while (isfinite(row[c])) c++;
            *bad = (qwen3_bad_weight){.name = v.name, .layer = rank >= 1 && rank < INT64_MAX ? (int32_t)(rank - 1) : -1,
                                      .row = r, .col = c, .value = row[c]};
            best_rank = rank;
            break;
        }
    }
    free(row);
    free(aligned);
    return TANDEM_OK;
}

enum { LAYER_MATRICES = 7 };  /* q, k, v, o, gate, up, down */

/* The matrices to pack, head first (an untied embedding table is only read a row per token: it stays mapped,
 * mostly untouched) into out; returns how many. */
static int packable_matrices(qwen3_model *m, weight_matrix **out) {
    int n = 0;
    out[n++] = m->cfg.tied_embeddings ? &m->embed_tokens : &m->lm_head;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        qwen3_layer *L = &m->layers[l];
        weight_matrix *const mats[LAYER_MATRICES] = {&L->q_proj, &L->k_proj, &L->v_proj, &L->o_proj,
                                                     &L->gate_proj, &L->up_proj, &L->down_proj};
        for (int i = 0; i < LAYER_MATRICES; i++) out[n++] = mats[i];
    }
    return n;
}

/* A packed matrix's share of the block: its bytes, rounded up so the next one starts on a cache line. */
static size_t packed_slot_bytes(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

tandem_status qwen3_pack_weights(qwen3_model *m, thread_pool *pool) {
    /* One block for every packed matrix, on huge pages (streamed_alloc): per-matrix blocks would each round up. */
    weight_matrix **mats = malloc(sizeof *mats * (size_t)(1 + LAYER_MATRICES * m->cfg.n_layers));
    if (!mats) return tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory packing weights");
    const int n = packable_matrices(m, mats);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += packed_slot_bytes(weight_packed_bytes(mats[i]));
    uint8_t *block = NULL;
    if (total && (!own_slot(m) || !(block = streamed_alloc(total)))) {
        free(mats);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory packing weights (%zu MB)", total >> 20);
    }
    if (block) m->owned[m->n_owned++] = block;
    for (int i = 0; i < n; i++) {
        const size_t bytes = weight_packed_bytes(mats[i]);
        if (!bytes) continue;
        const void *source = mats[i]->data;
        weight_pack_into(pool, mats[i], block);
        block += packed_slot_bytes(bytes);
        mapped_range_release(source, bytes);
    }
    if (m->cfg.tied_embeddings) m->lm_head = m->embed_tokens;
    free(mats);
    return TANDEM_OK;
}

void qwen3_model_release(qwen3_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    m->owned = NULL;
    m->n_owned = 0;
    m->layers = NULL;
}
