/* vit.c — the Qwen3-VL vision tower (transformers' Qwen3VLVisionModel): vision_config, the model.visual.* weights,
 * and the forward pass on the kernels layer's products and per-row ops, rows split over the thread pool. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "gguf.h"
#include "kernels.h"
#include "safetensors.h"
#include "vit.h"

/* Far beyond any release, small enough that sizes computed from them cannot overflow. */
enum {
    MAX_DEPTH = 1024,
    MAX_DIM = 1 << 16,
    MAX_HEADS = 1024,
    MAX_CHANNELS = 16,
    MAX_PATCH = 1024,
    MAX_TEMPORAL = 64,
    MAX_MERGE = 64,
    MAX_POSITIONS = 1 << 24,
};

/* ---- vision_config ---- */

static tandem_status int_field(const char *path, const json_t *vc, const char *key, int32_t fallback, int32_t lo,
                               int32_t hi, int32_t *out) {
    const json_t *v = json_object_get(vc, key);
    if (!v || json_is_null(v)) {
        *out = fallback;
        return TANDEM_OK;
    }
    int64_t x;
    if (!json_get_int(vc, key, &x))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: vision_config.%s must be an integer", path, key);
    if (x < lo || x > hi)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: vision_config.%s = %lld is out of range %d..%d", path, key,
                           (long long)x, (int)lo, (int)hi);
    *out = (int32_t)x;
    return TANDEM_OK;
}

static tandem_status read_rope(const char *path, const json_t *vc, vit_config *c) {
    c->rope_theta = 10000.0f; /* transformers' default for the axial rotary embedding */
    const json_t *params = json_object_get(vc, "rope_parameters");
    const json_t *holders[2] = {vc, params && !json_is_null(params) ? params : NULL};
    if (holders[1] && !json_is_object(holders[1]))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: vision_config.rope_parameters must be an object", path);
    for (int i = 0; i < 2; i++) {
        if (!holders[i] || !json_object_get(holders[i], "rope_theta")) continue;
        double theta = 0;
        const float f = json_get_number(holders[i], "rope_theta", &theta) ? (float)theta : 0.0f;
        if (!(f > 0) || !isfinite(f)) /* as a float: 1e-50 would become 0, 1e39 infinity */
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: vision_config.%srope_theta must be a positive number", path,
                               i ? "rope_parameters." : "");
        c->rope_theta = f;
    }
    if (holders[1]) {
        const json_t *type = json_object_get(holders[1], "rope_type");
        if (type && !json_is_null(type) && (!json_is_string(type) || strcmp(json_string_value(type), "axial") != 0))
            return tandem_fail(TANDEM_ERR_UNSUPPORTED,
                               "%s: vision_config.rope_parameters.rope_type: only 'axial' rotary embeddings are "
                               "supported",
                               path);
    }
    return TANDEM_OK;
}

static tandem_status read_deepstack(const char *path, const json_t *vc, vit_config *c) {
    const json_t *a = json_object_get(vc, "deepstack_visual_indexes");
    if (!a || json_is_null(a)) { /* transformers' default */
        const int32_t def[3] = {8, 16, 24};
        c->n_deepstack = 3;
        memcpy(c->deepstack_layers, def, sizeof def);
    } else {
        if (!json_is_array(a))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: vision_config.deepstack_visual_indexes must be a list", path);
        if (json_array_size(a) > VIT_MAX_DEEPSTACK)
            return tandem_fail(TANDEM_ERR_FORMAT,
                               "%s: vision_config.deepstack_visual_indexes has %zu entries (the "
                               "limit is %d)",
                               path, json_array_size(a), VIT_MAX_DEEPSTACK);
        c->n_deepstack = (int32_t)json_array_size(a);
        for (int32_t j = 0; j < c->n_deepstack; j++) {
            const json_t *v = json_array_get(a, (size_t)j);
            if (!json_is_integer(v))
                return tandem_fail(TANDEM_ERR_FORMAT,
                                   "%s: vision_config.deepstack_visual_indexes[%d] must be an integer", path, j);
            c->deepstack_layers[j] = (int32_t)(json_integer_value(v) < 0 || json_integer_value(v) > MAX_DEPTH
                                                   ? -1
                                                   : json_integer_value(v));
        }
    }
    for (int32_t j = 0; j < c->n_deepstack; j++) {
        if (c->deepstack_layers[j] < 0 || c->deepstack_layers[j] >= c->depth)
            return tandem_fail(TANDEM_ERR_FORMAT,
                               "%s: vision_config.deepstack_visual_indexes[%d] is not a block index (depth %d)", path,
                               j, c->depth);
        for (int32_t k = 0; k < j; k++)
            if (c->deepstack_layers[k] == c->deepstack_layers[j])
                return tandem_fail(TANDEM_ERR_FORMAT, "%s: vision_config.deepstack_visual_indexes lists block %d twice",
                                   path, c->deepstack_layers[j]);
    }
    return TANDEM_OK;
}

tandem_status vit_config_from_json_value(const char *path, const json_t *root, vit_config *c) {
    memset(c, 0, sizeof *c);
    const json_t *vc = json_is_object(root) ? json_object_get(root, "vision_config") : NULL;
    if (!vc || json_is_null(vc))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: missing field 'vision_config' (not a vision-language model)", path);
    if (!json_is_object(vc)) return tandem_fail(TANDEM_ERR_FORMAT, "%s: field 'vision_config' must be an object", path);
    const char *type = json_get_string(vc, "model_type");
    if (type && strcmp(type, "qwen3_vl_vision") != 0 && strcmp(type, "qwen3_vl_moe_vision") != 0)
        return tandem_fail(TANDEM_ERR_UNSUPPORTED,
                           "%s: vision_config.model_type '%s' is not supported (expected 'qwen3_vl_vision')", path,
                           type);
    tandem_status st;
    /* defaults: Qwen3VLVisionConfig's */
    if ((st = int_field(path, vc, "depth", 27, 1, MAX_DEPTH, &c->depth)) ||
        (st = int_field(path, vc, "hidden_size", 1152, 1, MAX_DIM, &c->hidden)) ||
        (st = int_field(path, vc, "num_heads", 16, 1, MAX_HEADS, &c->n_heads)) ||
        (st = int_field(path, vc, "intermediate_size", 4304, 1, 4 * MAX_DIM, &c->ffn_dim)) ||
        (st = int_field(path, vc, "in_channels", 3, 1, MAX_CHANNELS, &c->in_channels)) ||
        (st = int_field(path, vc, "patch_size", 16, 1, MAX_PATCH, &c->patch_size)) ||
        (st = int_field(path, vc, "temporal_patch_size", 2, 1, MAX_TEMPORAL, &c->temporal_patch_size)) ||
        (st = int_field(path, vc, "spatial_merge_size", 2, 1, MAX_MERGE, &c->merge_size)) ||
        (st = int_field(path, vc, "out_hidden_size", 3584, 1, MAX_DIM, &c->out_hidden)) ||
        (st = int_field(path, vc, "num_position_embeddings", 2304, 1, MAX_POSITIONS, &c->n_positions)))
        return st;
    if (c->hidden % c->n_heads != 0)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: vision_config.hidden_size %d is not a multiple of num_heads %d",
                           path, c->hidden, c->n_heads);
    c->head_dim = c->hidden / c->n_heads;
    if (c->head_dim % 4 != 0)
        return tandem_fail(TANDEM_ERR_FORMAT,
                           "%s: vision_config: head size %d (hidden_size / num_heads) must be a multiple of 4 for the "
                           "2-D rotary embedding",
                           path, c->head_dim);
    if ((int64_t)c->merge_size * c->merge_size * c->hidden > 16 * (int64_t)MAX_DIM)
        return tandem_fail(TANDEM_ERR_FORMAT,
                           "%s: vision_config: spatial_merge_size %d is too large for hidden_size %d", path,
                           c->merge_size, c->hidden);
    c->position_side = (int32_t)lrint(sqrt((double)c->n_positions));
    if ((int64_t)c->position_side * c->position_side != c->n_positions)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: vision_config.num_position_embeddings = %d is not a perfect square",
                           path, c->n_positions);
    const char *act = json_get_string(vc, "hidden_act");
    if (json_object_get(vc, "hidden_act") && !act)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: vision_config.hidden_act must be a string", path);
    if (!act || strcmp(act, "gelu_pytorch_tanh") == 0 || strcmp(act, "gelu_new") == 0) c->activation = VIT_GELU_TANH;
    else if (strcmp(act, "gelu") == 0) c->activation = VIT_GELU_ERF;
    else
        return tandem_fail(TANDEM_ERR_UNSUPPORTED,
                           "%s: vision_config.hidden_act '%s' is not supported (gelu_pytorch_tanh or gelu)", path, act);
    if ((st = read_rope(path, vc, c)) || (st = read_deepstack(path, vc, c))) return st;
    c->norm_eps = 1e-6f;
    return TANDEM_OK;
}

tandem_status vit_config_from_json(const char *path, vit_config *c) {
    json_t *root = NULL;
    tandem_status st = json_load_path(path, &root);
    if (st) return st;
    st = vit_config_from_json_value(path, root, c);
    json_decref(root);
    return st;
}

/* ---- weights ---- */

typedef struct vit_block {
    weight_matrix qkv, proj, fc1, fc2;
    const float *norm1_w, *norm1_b, *norm2_w, *norm2_b, *qkv_b, *proj_b, *fc1_b, *fc2_b;
} vit_block;

/* The merger (norm over each patch's hidden values, then merge² patches concatenated) and the DeepStack mergers
 * (postshuffle: the patches concatenated first, the norm over all merge²·hidden values). */
typedef struct vit_merger {
    weight_matrix fc1, fc2;
    const float *norm_w, *norm_b, *fc1_b, *fc2_b;
    bool postshuffle;
} vit_merger;

struct vit_model {
    vit_config cfg;
    st_set *st;          /* an HF folder's weights, or */
    gguf_file *gguf;     /* an mmproj GGUF's */
    char *label;         /* "vit_load" or "vit_load_gguf: <path>": what messages start with */
    bool quantized;      /* some matrix has a block type (Q8_0): products need the activations quantized */
    const char *prefix;  /* "model.visual." or "visual." */
    weight_matrix patch; /* (hidden, in_channels·temporal·patch²): the Conv3d as a product */
    const float *patch_b, *pos_embed, *inv_freq;
    vit_block *blocks;
    vit_merger merger, deepstack[VIT_MAX_DEEPSTACK];
    void **owned; /* f32 copies of vectors and of misaligned matrices */
    int n_owned, cap_owned;
};

static void *own(vit_model *m, size_t bytes) {
    if (m->n_owned == m->cap_owned) {
        const int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **grown = realloc(m->owned, sizeof *grown * (size_t)cap);
        if (!grown) return NULL;
        m->owned = grown, m->cap_owned = cap;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (p) m->owned[m->n_owned++] = p;
    return p;
}

/* A tensor as the binders see it, from either source: shape outermost first (GGUF's ne reversed). */
typedef struct raw_tensor {
    char name[96]; /* as stored in the file, for messages */
    tandem_type type;
    int n_dims;
    int64_t shape[5];
    const void *data;
    size_t nbytes;
} raw_tensor;

/* The tensor named name (transformers' name after the prefix) in m's file, or NULL in *found when absent. */
static bool lookup_tensor(const vit_model *m, const char *name, raw_tensor *r, bool *supported, const char **dtype) {
    memset(r, 0, sizeof *r);
    *supported = true, *dtype = "";
    if (m->gguf) {
        if (!vit_gguf_tensor_name(&m->cfg, name, r->name, sizeof r->name))
            snprintf(r->name, sizeof r->name, "%s", name);
        const gguf_tensor *t = gguf_find_tensor(m->gguf, r->name);
        if (!t) return false;
        r->type = t->type, r->n_dims = t->n_dims, r->data = t->data, r->nbytes = (size_t)t->nbytes;
        for (int i = 0; i < t->n_dims; i++) r->shape[i] = t->ne[t->n_dims - 1 - i];
        *supported = t->type == TANDEM_TYPE_F32 || t->type == TANDEM_TYPE_F16 || t->type == TANDEM_TYPE_BF16 ||
                     t->type == TANDEM_TYPE_Q8_0;
        *dtype = tandem_type_name(t->type);
        return true;
    }
    snprintf(r->name, sizeof r->name, "%s%s", m->prefix, name);
    const st_tensor *t = safetensors_find(m->st, r->name);
    if (!t) return false;
    *supported = t->type >= 0, *dtype = t->dtype;
    r->type = (tandem_type)(t->type >= 0 ? t->type : 0), r->n_dims = t->n_dims, r->data = t->data,
    r->nbytes = (size_t)t->nbytes;
    for (int i = 0; i < t->n_dims && i < 5; i++) r->shape[i] = t->shape[i];
    return true;
}

/* The tensor <prefix><name> (a GGUF: its llama.cpp name) with the shape the config implies (outermost first). */
static tandem_status find_tensor(const vit_model *m, const char *name, int n_dims, const int64_t *shape,
                                 raw_tensor *t) {
    bool supported;
    const char *dtype;
    if (!lookup_tensor(m, name, t, &supported, &dtype))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s' is missing", m->label, t->name);
    if (!supported)
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: tensor '%s': type %s is not supported (F32, F16, BF16%s)",
                           m->label, t->name, dtype, m->gguf ? ", Q8_0" : "");
    bool same = t->n_dims == n_dims;
    for (int i = 0; same && i < n_dims; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char got[160] = "", want[160] = "";
        for (int i = 0; i < t->n_dims; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        for (int i = 0; i < n_dims; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? ", " : "", (long long)shape[i]);
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s' has shape [%s], %s implies [%s]", m->label, t->name, got,
                           m->gguf ? "the clip.vision metadata" : "vision_config", want);
    }
    return TANDEM_OK;
}

static void bind_raw_matrix(vit_model *m, const raw_tensor *t, int64_t rows, int64_t cols, weight_matrix *w) {
    uint64_t row_bytes = 0;
    tandem_type_row_bytes(t->type, cols, &row_bytes);
    *w = (weight_matrix){.data = t->data, .type = t->type, .rows = rows, .cols = cols, .row_bytes = (size_t)row_bytes};
    if (tandem_type_block_size(t->type) > 1) m->quantized = true;
}

/* A matrix (rows, cols): the first dimension is rows, the others (a Conv3d kernel's) make the columns. */
static tandem_status bind_matrix(vit_model *m, const char *name, int n_dims, const int64_t *shape, weight_matrix *w) {
    raw_tensor t;
    tandem_status st = find_tensor(m, name, n_dims, shape, &t);
    if (st) return st;
    int64_t cols = 1;
    for (int i = 1; i < n_dims; i++) cols *= shape[i];
    if (tandem_type_block_size(t.type) > 1 && cols % tandem_type_block_size(t.type) != 0)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s': rows of %lld values are not whole %s blocks", m->label,
                           t.name, (long long)cols, tandem_type_name(t.type));
    bind_raw_matrix(m, &t, shape[0], cols, w);
    const size_t elem = (size_t)tandem_type_size(t.type);
    if (tandem_type_block_size(t.type) == 1 && (uintptr_t)t.data % elem != 0) {
        /* safetensors guarantees byte offsets only; kernels read typed elements */
        void *copy = own(m, t.nbytes);
        if (!copy) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory copying '%s'", m->label, t.name);
        memcpy(copy, t.data, t.nbytes);
        w->data = copy;
    }
    return TANDEM_OK;
}

/* A vector or table as an f32 copy (small; half-precision checkpoints store norms and biases as halves). */
static tandem_status bind_floats(vit_model *m, const char *name, int n_dims, const int64_t *shape, const float **out) {
    raw_tensor t;
    tandem_status st = find_tensor(m, name, n_dims, shape, &t);
    if (st) return st;
    int64_t n = 1;
    for (int i = 0; i < n_dims; i++) n *= shape[i];
    const int64_t cols = shape[n_dims - 1];
    if (tandem_type_block_size(t.type) > 1 && cols % tandem_type_block_size(t.type) != 0)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s': rows of %lld values are not whole %s blocks", m->label,
                           t.name, (long long)cols, tandem_type_name(t.type));
    float *f = own(m, sizeof(float) * (size_t)n);
    if (!f) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory for '%s'", m->label, t.name);
    const uint8_t *src = t.data;
    if (tandem_type_block_size(t.type) > 1) { /* GGUF: aligned, whole blocks per row */
        uint64_t row_bytes = 0;
        tandem_type_row_bytes(t.type, cols, &row_bytes);
        for (int64_t r = 0; r < n / cols; r++) dequantize_row(t.type, src + (size_t)r * row_bytes, f + r * cols, cols);
    } else {
        for (int64_t i = 0; i < n; i++) {
            if (t.type == TANDEM_TYPE_F32) {
                memcpy(f + i, src + 4 * i, 4);
            } else {
                uint16_t h;
                memcpy(&h, src + 2 * i, 2);
                f[i] = t.type == TANDEM_TYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
            }
        }
    }
    *out = f;
    return TANDEM_OK;
}

static tandem_status bind_merger(vit_model *m, const char *prefix, bool postshuffle, vit_merger *mg) {
    const vit_config *c = &m->cfg;
    const int64_t wide = (int64_t)c->merge_size * c->merge_size * c->hidden, norm = postshuffle ? wide : c->hidden;
    const int64_t s_norm[1] = {norm}, s_fc1[2] = {wide, wide}, s_fc1b[1] = {wide}, s_fc2[2] = {c->out_hidden, wide},
                  s_fc2b[1] = {c->out_hidden};
    char name[128];
    tandem_status st;
    mg->postshuffle = postshuffle;
#define NAME(suffix) (snprintf(name, sizeof name, "%s.%s", prefix, suffix), name)
    if ((st = bind_floats(m, NAME("norm.weight"), 1, s_norm, &mg->norm_w)) ||
        (st = bind_floats(m, NAME("norm.bias"), 1, s_norm, &mg->norm_b)) ||
        (st = bind_matrix(m, NAME("linear_fc1.weight"), 2, s_fc1, &mg->fc1)) ||
        (st = bind_floats(m, NAME("linear_fc1.bias"), 1, s_fc1b, &mg->fc1_b)) ||
        (st = bind_matrix(m, NAME("linear_fc2.weight"), 2, s_fc2, &mg->fc2)) ||
        (st = bind_floats(m, NAME("linear_fc2.bias"), 1, s_fc2b, &mg->fc2_b)))
        return st;
#undef NAME
    return TANDEM_OK;
}

/* llama.cpp splits the Conv3d kernel by frame (v.patch_embd.weight, .weight.1, each (hidden, channels, patch,
 * patch)); the product wants transformers' (hidden, channels, frames, patch, patch): the frames interleaved per
 * channel, a copy in the stored type. */
static tandem_status bind_gguf_patch(vit_model *m) {
    const vit_config *c = &m->cfg;
    const int64_t shape[4] = {c->hidden, c->in_channels, c->patch_size, c->patch_size};
    raw_tensor frame[2];
    tandem_status st;
    if ((st = find_tensor(m, "patch_embed.proj.weight", 4, shape, &frame[0])) ||
        (st = find_tensor(m, "patch_embed.proj.weight.1", 4, shape, &frame[1])))
        return st;
    if (frame[1].type != frame[0].type)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s' is %s but '%s' is %s (both frames must have one type)",
                           m->label, frame[1].name, tandem_type_name(frame[1].type), frame[0].name,
                           tandem_type_name(frame[0].type));
    const int64_t square = (int64_t)c->patch_size * c->patch_size;
    uint64_t chunk;
    if (square % tandem_type_block_size(frame[0].type) != 0 || !tandem_type_row_bytes(frame[0].type, square, &chunk))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s': patches of %lld values are not whole %s blocks",
                           m->label, frame[0].name, (long long)square, tandem_type_name(frame[0].type));
    uint8_t *both = own(m, 2 * frame[0].nbytes);
    if (!both) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", m->label);
    const int64_t chunks = (int64_t)c->hidden * c->in_channels; /* (hidden, channel) pairs */
    for (int64_t i = 0; i < chunks; i++)
        for (int t = 0; t < 2; t++)
            memcpy(both + ((size_t)i * 2 + (size_t)t) * chunk, (const uint8_t *)frame[t].data + (size_t)i * chunk,
                   (size_t)chunk);
    raw_tensor t = frame[0];
    t.data = both;
    bind_raw_matrix(m, &t, c->hidden, 2 * c->in_channels * square, &m->patch);
    return TANDEM_OK;
}

static tandem_status bind_weights(vit_model *m) {
    const vit_config *c = &m->cfg;
    m->prefix = "model.visual.";
    if (m->st) {
        char probe[64];
        snprintf(probe, sizeof probe, "%spatch_embed.proj.weight", m->prefix);
        if (!safetensors_find(m->st, probe)) m->prefix = "visual."; /* some re-exports drop "model." */
    }
    const int64_t E = c->hidden, F = c->ffn_dim;
    const int64_t s_patch[5] = {E, c->in_channels, c->temporal_patch_size, c->patch_size, c->patch_size};
    const int64_t s_e[1] = {E}, s_pos[2] = {c->n_positions, E};
    tandem_status st;
    if ((st = m->gguf ? bind_gguf_patch(m) : bind_matrix(m, "patch_embed.proj.weight", 5, s_patch, &m->patch)) ||
        (st = bind_floats(m, "patch_embed.proj.bias", 1, s_e, &m->patch_b)) ||
        (st = bind_floats(m, "pos_embed.weight", 2, s_pos, &m->pos_embed)))
        return st;
    if (!(m->blocks = calloc((size_t)c->depth, sizeof *m->blocks)))
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", m->label);
    const int64_t s_qkv[2] = {3 * E, E}, s_qkvb[1] = {3 * E}, s_proj[2] = {E, E}, s_fc1[2] = {F, E}, s_f[1] = {F},
                  s_fc2[2] = {E, F};
    for (int l = 0; l < c->depth; l++) {
        vit_block *b = &m->blocks[l];
        char name[128];
#define NAME(suffix) (snprintf(name, sizeof name, "blocks.%d.%s", l, suffix), name)
        if ((st = bind_floats(m, NAME("norm1.weight"), 1, s_e, &b->norm1_w)) ||
            (st = bind_floats(m, NAME("norm1.bias"), 1, s_e, &b->norm1_b)) ||
            (st = bind_floats(m, NAME("norm2.weight"), 1, s_e, &b->norm2_w)) ||
            (st = bind_floats(m, NAME("norm2.bias"), 1, s_e, &b->norm2_b)) ||
            (st = bind_matrix(m, NAME("attn.qkv.weight"), 2, s_qkv, &b->qkv)) ||
            (st = bind_floats(m, NAME("attn.qkv.bias"), 1, s_qkvb, &b->qkv_b)) ||
            (st = bind_matrix(m, NAME("attn.proj.weight"), 2, s_proj, &b->proj)) ||
            (st = bind_floats(m, NAME("attn.proj.bias"), 1, s_e, &b->proj_b)) ||
            (st = bind_matrix(m, NAME("mlp.linear_fc1.weight"), 2, s_fc1, &b->fc1)) ||
            (st = bind_floats(m, NAME("mlp.linear_fc1.bias"), 1, s_f, &b->fc1_b)) ||
            (st = bind_matrix(m, NAME("mlp.linear_fc2.weight"), 2, s_fc2, &b->fc2)) ||
            (st = bind_floats(m, NAME("mlp.linear_fc2.bias"), 1, s_e, &b->fc2_b)))
            return st;
#undef NAME
    }
    if ((st = bind_merger(m, "merger", false, &m->merger))) return st;
    for (int j = 0; j < c->n_deepstack; j++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "deepstack_merger_list.%d", j);
        if ((st = bind_merger(m, prefix, true, &m->deepstack[j]))) return st;
    }
    float *inv = own(m, sizeof(float) * (size_t)(c->head_dim / 4));
    if (!inv) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", m->label);
    rope_inv_freq(inv, c->head_dim / 2, c->rope_theta); /* head_dim/4 frequencies, shared by rows and columns */
    m->inv_freq = inv;
    return TANDEM_OK;
}

tandem_status vit_load(const char *dir, vit_model **out) {
    *out = NULL;
    vit_model *m = calloc(1, sizeof *m);
    if (m && !(m->label = strdup("vit_load"))) free(m), m = NULL;
    if (!m) return tandem_fail(TANDEM_ERR_NO_MEMORY, "vit_load: out of memory");
    char *config = path_join(dir, "config.json");
    tandem_status st = config ? vit_config_from_json(config, &m->cfg)
                              : tandem_fail(TANDEM_ERR_NO_MEMORY, "vit_load: out of memory");
    free(config);
    if (!st) st = safetensors_open_dir(dir, &m->st);
    if (!st) st = bind_weights(m);
    if (st) {
        vit_free(m);
        return st;
    }
    *out = m;
    return TANDEM_OK;
}

void vit_free(vit_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->blocks);
    safetensors_close(m->st);
    gguf_close(m->gguf);
    free(m->label);
    free(m);
}

const vit_config *vit_model_config(const vit_model *m) { return &m->cfg; }

/* ---- an mmproj GGUF (llama.cpp's layout, clip.* metadata, v.* tensors) ---- */

/* transformers' name (after model.visual.) → llama.cpp's: the table of reference §6.11, in prefix pairs. */
static const struct {
    const char *hf, *gguf;
} BLOCK_NAMES[] =
    {
        {"norm1.", "ln1."},
        {"norm2.", "ln2."},
        {"attn.qkv.", "attn_qkv."},
        {"attn.proj.", "attn_out."},
        {"mlp.linear_fc1.", "ffn_up."},
        {"mlp.linear_fc2.", "ffn_down."},
},
  MERGER_NAMES[] = {{"norm.", "v.post_ln."}, {"linear_fc1.", "mm.0."}, {"linear_fc2.", "mm.2."}},
  DEEPSTACK_NAMES[] = {{"norm.", "norm."}, {"linear_fc1.", "fc1."}, {"linear_fc2.", "fc2."}};

static bool rename_part(const char *rest, const void *table, size_t n, const char *lead, char *out, size_t cap) {
    const struct { const char *hf, *gguf; } *t = table;
    for (size_t i = 0; i < n; i++) {
        const size_t k = strlen(t[i].hf);
        if (!strncmp(rest, t[i].hf, k)) {
            const int w = snprintf(out, cap, "%s%s%s", lead, t[i].gguf, rest + k);
            return w > 0 && (size_t)w < cap;
        }
    }
    return false;
}

bool vit_gguf_tensor_name(const vit_config *c, const char *hf, char *out, size_t cap) {
    static const char *const WHOLE[][2] = {{"patch_embed.proj.weight", "v.patch_embd.weight"},
                                           {"patch_embed.proj.weight.1", "v.patch_embd.weight.1"},
                                           {"patch_embed.proj.bias", "v.patch_embd.bias"},
                                           {"pos_embed.weight", "v.position_embd.weight"}};
    for (size_t i = 0; i < sizeof WHOLE / sizeof WHOLE[0]; i++)
        if (!strcmp(hf, WHOLE[i][0])) {
            const int w = snprintf(out, cap, "%s", WHOLE[i][1]);
            return w > 0 && (size_t)w < cap;
        }
    int index = -1, used = 0;
    char lead[48];
    if (sscanf(hf, "blocks.%d.%n", &index, &used) == 1 && used > 0 && index >= 0) {
        snprintf(lead, sizeof lead, "v.blk.%d.", index);
        return rename_part(hf + used, BLOCK_NAMES, sizeof BLOCK_NAMES / sizeof BLOCK_NAMES[0], lead, out, cap);
    }
    if (!strncmp(hf, "merger.", 7))
        return rename_part(hf + 7, MERGER_NAMES, sizeof MERGER_NAMES / sizeof MERGER_NAMES[0], "", out, cap);
    used = 0;
    if (sscanf(hf, "deepstack_merger_list.%d.%n", &index, &used) == 1 && used > 0 && index >= 0 &&
        index < c->n_deepstack) { /* llama.cpp numbers them by the block they tap */
        snprintf(lead, sizeof lead, "v.deepstack.%d.", c->deepstack_layers[index]);
        return rename_part(hf + used, DEEPSTACK_NAMES, sizeof DEEPSTACK_NAMES / sizeof DEEPSTACK_NAMES[0], lead, out,
                           cap);
    }
    return false;
}

/* clip.* integer key in lo..hi; absent: fallback, or an error when fallback < 0 (required). */
static tandem_status clip_int(const vit_model *m, const char *key, int32_t fallback, int32_t lo, int32_t hi,
                              int32_t *out) {
    const gguf_kv *kv = gguf_find_kv(m->gguf, key);
    if (!kv) {
        if (fallback < 0) return tandem_fail(TANDEM_ERR_FORMAT, "%s: missing metadata key '%s'", m->label, key);
        *out = fallback;
        return TANDEM_OK;
    }
    const bool is_int = kv->type <= GGUF_TYPE_INT32 && kv->type != GGUF_TYPE_FLOAT32 && kv->type != GGUF_TYPE_BOOL;
    const bool is_wide = kv->type == GGUF_TYPE_UINT64 || kv->type == GGUF_TYPE_INT64;
    if (!is_int && !is_wide)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: metadata key '%s' must be an integer", m->label, key);
    const bool is_signed = kv->type == GGUF_TYPE_INT8 || kv->type == GGUF_TYPE_INT16 || kv->type == GGUF_TYPE_INT32 ||
                           kv->type == GGUF_TYPE_INT64;
    const long long x = is_signed ? (long long)kv->v.i64
                                  : (kv->v.u64 > (uint64_t)INT32_MAX ? (long long)INT32_MAX + 1 : (long long)kv->v.u64);
    if (x < lo || x > hi)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: metadata key '%s' = %lld is out of range %d..%d", m->label, key, x,
                           (int)lo, (int)hi);
    *out = (int32_t)x;
    return TANDEM_OK;
}

static bool has_tensor(const vit_model *m, const char *name) { return gguf_find_tensor(m->gguf, name) != NULL; }

/* Which blocks feed a DeepStack merger: clip.vision.is_deepstack_layers (one bool per block), which must agree with
 * the v.deepstack.L.* tensors present; without the key (llama.cpp itself goes by the tensors), the tensors. */
static tandem_status clip_deepstack(vit_model *m) {
    vit_config *c = &m->cfg;
    static const char KEY[] = "clip.vision.is_deepstack_layers";
    const gguf_kv *kv = gguf_find_kv(m->gguf, KEY);
    if (kv && (kv->type != GGUF_TYPE_ARRAY || kv->array_type != GGUF_TYPE_BOOL || kv->n != (uint64_t)c->depth))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: metadata key '%s' must be an array of %d bools (one per block)",
                           m->label, KEY, c->depth);
    c->n_deepstack = 0;
    for (int32_t l = 0; l < c->depth; l++) {
        char name[64];
        snprintf(name, sizeof name, "v.deepstack.%d.norm.weight", l);
        const bool present = has_tensor(m, name), flagged = kv ? gguf_array_int(kv, (uint64_t)l) != 0 : present;
        if (flagged != present)
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: metadata key '%s' %s block %d but tensor '%s' is %s", m->label,
                               KEY, flagged ? "flags" : "does not flag", l, name, present ? "present" : "missing");
        if (!flagged) continue;
        if (c->n_deepstack == VIT_MAX_DEEPSTACK)
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: more than %d DeepStack layers", m->label, VIT_MAX_DEEPSTACK);
        c->deepstack_layers[c->n_deepstack++] = l;
    }
    return TANDEM_OK;
}

static tandem_status clip_config(vit_model *m) {
    vit_config *c = &m->cfg;
    const gguf_file *f = m->gguf;
    memset(c, 0, sizeof *c);
    gguf_str s;
    if (!gguf_get_str(f, "general.architecture", &s))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: missing metadata key 'general.architecture' (string)", m->label);
    if (s.len != 4 || memcmp(s.ptr, "clip", 4) != 0)
        return tandem_fail(TANDEM_ERR_FORMAT,
                           "%s: general.architecture is '%.*s', not 'clip' (not a vision projector file: an mmproj "
                           "GGUF)",
                           m->label, (int)(s.len > 64 ? 64 : s.len), s.ptr);
    const char *pkey = gguf_find_kv(f, "clip.projector_type") ? "clip.projector_type" : "clip.vision.projector_type";
    if (!gguf_get_str(f, pkey, &s))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: missing metadata key 'clip.projector_type' (string)", m->label);
    if (s.len != 14 || memcmp(s.ptr, "qwen3vl_merger", 14) != 0)
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: %s '%.*s' is not supported (only 'qwen3vl_merger': Qwen3-VL)",
                           m->label, pkey, (int)(s.len > 64 ? 64 : s.len), s.ptr);
    bool flag = true;
    if (gguf_find_kv(f, "clip.has_vision_encoder") && (!gguf_get_bool(f, "clip.has_vision_encoder", &flag) || !flag))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: metadata key 'clip.has_vision_encoder' must be true", m->label);
    if (gguf_find_kv(f, "clip.use_silu") && (!gguf_get_bool(f, "clip.use_silu", &flag) || flag))
        return tandem_fail(TANDEM_ERR_UNSUPPORTED,
                           "%s: metadata key 'clip.use_silu': only GELU vision towers are supported", m->label);
    if (gguf_find_kv(f, "clip.use_gelu") && (!gguf_get_bool(f, "clip.use_gelu", &flag) || !flag))
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: metadata key 'clip.use_gelu' must be true (Qwen3-VL's GELU)",
                           m->label);
    int32_t image_size;
    tandem_status st;
    if ((st = clip_int(m, "clip.vision.block_count", -1, 1, MAX_DEPTH, &c->depth)) ||
        (st = clip_int(m, "clip.vision.embedding_length", -1, 1, MAX_DIM, &c->hidden)) ||
        (st = clip_int(m, "clip.vision.attention.head_count", -1, 1, MAX_HEADS, &c->n_heads)) ||
        (st = clip_int(m, "clip.vision.feed_forward_length", -1, 1, 4 * MAX_DIM, &c->ffn_dim)) ||
        (st = clip_int(m, "clip.vision.patch_size", -1, 1, MAX_PATCH, &c->patch_size)) ||
        (st = clip_int(m, "clip.vision.spatial_merge_size", -1, 1, MAX_MERGE, &c->merge_size)) ||
        (st = clip_int(m, "clip.vision.projection_dim", -1, 1, MAX_DIM, &c->out_hidden)) ||
        (st = clip_int(m, "clip.vision.image_size", -1, 1, MAX_PATCH * 4096, &image_size)))
        return st;
    if (c->hidden % c->n_heads != 0 || (c->hidden / c->n_heads) % 4 != 0)
        return tandem_fail(TANDEM_ERR_FORMAT,
                           "%s: clip.vision.embedding_length %d over clip.vision.attention.head_count %d must give "
                           "heads whose size is a multiple of 4",
                           m->label, c->hidden, c->n_heads);
    c->head_dim = c->hidden / c->n_heads;
    if ((int64_t)c->merge_size * c->merge_size * c->hidden > 16 * (int64_t)MAX_DIM)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: clip.vision.spatial_merge_size %d is too large", m->label,
                           c->merge_size);
    if (image_size % c->patch_size != 0 ||
        (int64_t)(image_size / c->patch_size) * (image_size / c->patch_size) > MAX_POSITIONS)
        return tandem_fail(TANDEM_ERR_FORMAT,
                           "%s: clip.vision.image_size %d is not a multiple of clip.vision.patch_size %d or too large",
                           m->label, image_size, c->patch_size);
    c->position_side = image_size / c->patch_size;
    c->n_positions = c->position_side * c->position_side;
    c->norm_eps = 1e-6f;
    if (gguf_find_kv(f, "clip.vision.attention.layer_norm_epsilon") &&
        (!gguf_get_f32(f, "clip.vision.attention.layer_norm_epsilon", &c->norm_eps) || !(c->norm_eps > 0) ||
         !(c->norm_eps < 1)))
        return tandem_fail(TANDEM_ERR_FORMAT,
                           "%s: metadata key 'clip.vision.attention.layer_norm_epsilon' must be a number in (0, 1)",
                           m->label);
    /* what llama.cpp's layout fixes: RGB, two frames per patch (the .weight.1 kernel), tanh GELU, θ 10000 */
    c->in_channels = 3;
    c->temporal_patch_size = 2;
    c->activation = VIT_GELU_TANH;
    c->rope_theta = 10000.0f;
    return clip_deepstack(m);
}

tandem_status vit_load_gguf(const char *path, vit_model **out) {
    *out = NULL;
    if (!path) return tandem_fail(TANDEM_ERR_INVALID_ARG, "vit_load_gguf: path is NULL");
    vit_model *m = calloc(1, sizeof *m);
    const size_t n = strlen(path) + sizeof "vit_load_gguf: ";
    if (m && !(m->label = malloc(n))) free(m), m = NULL;
    if (!m) return tandem_fail(TANDEM_ERR_NO_MEMORY, "vit_load_gguf: out of memory");
    snprintf(m->label, n, "vit_load_gguf: %s", path);
    tandem_status st = gguf_open(path, &m->gguf);
    if (!st) st = clip_config(m);
    if (!st) st = bind_weights(m);
    if (st) {
        vit_free(m);
        return st;
    }
    *out = m;
    return TANDEM_OK;
}


int64_t vit_image_tokens(const vit_config *c, const vision_pixels *img) {
    return (int64_t)img->grid_t * img->grid_h * img->grid_w / ((int64_t)c->merge_size * c->merge_size);
}

/* ---- the forward pass ---- */

/* Queries per attention task: a tile's scores stay in L1 (attention_forward's scratch). */
enum { ATTENTION_QUERIES = 64, MLP_ROWS = 1024, ROWS_PER_TASK = 16 };

/* Work on each row of a (rows, n) array, ROWS_PER_TASK rows per task. */
typedef enum {
    ROWS_LAYERNORM, /* out = LayerNorm(x; w, b) */
    ROWS_BIAS_GELU, /* out += b, then GELU (tanh or erf) in place */
    ROWS_RESIDUAL,  /* y += b, then out += y (a product with bias added to the residual stream, HF's order) */
    ROWS_BIAS,      /* out += b */
    ROWS_QKV,       /* the qkv rows: + bias, rotary on q and k, split into head-major q, k, v */
} rows_kind;

typedef struct rows_job {
    rows_kind kind;
    int64_t rows;
    int n;
    float *out, *y;
    const float *x, *w, *b;
    float eps;
    vit_activation act;
    /* ROWS_QKV */
    const vit_config *cfg;
    const float *rope;   /* (rows, head_dim) */
    float *qh, *kh, *vh; /* (heads, rows, head_dim) */
} rows_job;

static void rows_task(int task, int thread, void *arg) {
    const rows_job *j = arg;
    const int64_t r0 = (int64_t)task * ROWS_PER_TASK, r1 = r0 + ROWS_PER_TASK < j->rows ? r0 + ROWS_PER_TASK : j->rows;
    const size_t n = (size_t)j->n;
    switch (j->kind) {
    case ROWS_LAYERNORM:
        for (int64_t r = r0; r < r1; r++) layernorm_forward(j->out + r * n, j->x + r * n, j->w, j->b, j->n, j->eps);
        return;
    case ROWS_BIAS_GELU:
        bias_add_rows(j->out + r0 * n, j->b, r1 - r0, j->n);
        if (j->act == VIT_GELU_TANH) gelu_tanh_forward(j->out + r0 * n, j->out + r0 * n, (r1 - r0) * (int64_t)n);
        else gelu_erf_forward(j->out + r0 * n, j->out + r0 * n, (r1 - r0) * (int64_t)n);
        return;
    case ROWS_RESIDUAL:
        bias_add_rows(j->y + r0 * n, j->b, r1 - r0, j->n);
        add_forward(j->out + r0 * n, j->y + r0 * n, (r1 - r0) * (int64_t)n);
        return;
    case ROWS_BIAS: bias_add_rows(j->out + r0 * n, j->b, r1 - r0, j->n); return;
    case ROWS_QKV: {
        const int E = j->cfg->hidden, H = j->cfg->n_heads, hd = j->cfg->head_dim;
        for (int64_t r = r0; r < r1; r++) {
            float *row = j->out + r * n;
            bias_add_rows(row, j->b, 1, j->n);
            rope_forward(row, H, hd, j->rope + r * hd);
            rope_forward(row + E, H, hd, j->rope + r * hd);
            for (int h = 0; h < H; h++) {
                const size_t at = ((size_t)h * (size_t)j->rows + (size_t)r) * (size_t)hd;
                memcpy(j->qh + at, row + h * hd, sizeof(float) * (size_t)hd);
                memcpy(j->kh + at, row + E + h * hd, sizeof(float) * (size_t)hd);
                memcpy(j->vh + at, row + 2 * E + h * hd, sizeof(float) * (size_t)hd);
            }
        }
        return;
    }
    }
}

static void run_rows(thread_pool *pool, rows_job *job) {
    const int64_t tasks = (job->rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    thread_pool_run(pool, (int)tasks, rows_task, job);
}

/* An attention task: ATTENTION_QUERIES queries of one head of one segment (an image's frame) against all of the
 * segment's keys, written into att (rows, hidden) at the head's columns. */
typedef struct attention_task_at {
    int64_t start, len, q0;
    int head;
} attention_task_at;

typedef struct attention_job {
    const attention_task_at *at;
    const float *qh, *kh, *vh;
    float *att;
    int64_t rows;
    int hidden, head_dim;
    float scale;
    float *scratch;
    size_t scratch_per_thread;
} attention_job;

static void attention_task(int task, int thread, void *arg) {
    const attention_job *j = arg;
    const attention_task_at *a = &j->at[task];
    const int hd = j->head_dim;
    const int nq = (int)(a->len - a->q0 < ATTENTION_QUERIES ? a->len - a->q0 : ATTENTION_QUERIES);
    float *out = j->scratch + (size_t)thread * j->scratch_per_thread, *sc = out + (size_t)ATTENTION_QUERIES * hd;
    const size_t head_base = (size_t)a->head * (size_t)j->rows * hd;
    attention_full_forward(out, j->qh + head_base + (size_t)(a->start + a->q0) * hd, nq,
                           j->kh + head_base + (size_t)a->start * hd, j->vh + head_base + (size_t)a->start * hd,
                           (int)a->len, hd, j->scale, sc);
    for (int i = 0; i < nq; i++)
        memcpy(j->att + (size_t)(a->start + a->q0 + i) * j->hidden + (size_t)a->head * hd, out + (size_t)i * hd,
               sizeof(float) * (size_t)hd);
}

/* transformers' interpolation taps on one axis: position i of size onto a table side long (align_corners), in
 * float32 as it computes them; taps clamped to the table, weights 1 − distance. */
static void axis_taps(int32_t i, int32_t size, int32_t side, int32_t tap[2], float weight[2]) {
    const float src = (float)i * (float)(side - 1) / (float)(size > 1 ? size - 1 : 1);
    const float fl = floorf(src);
    for (int o = 0; o < 2; o++) {
        const int32_t t = (int32_t)fl + o;
        tap[o] = t < 0 ? 0 : t > side - 1 ? side - 1 : t;
        const float w = 1.0f - fabsf(src - fl - (float)o);
        weight[o] = w > 0.0f ? w : 0.0f;
    }
}

/* Buffers of a pass, carved from one allocation. */
typedef struct vit_work {
    float *h, *xb, *tmp, *qkv, *qh, *kh, *vh, *mlp, *rope, *attention, *rows;
    size_t attention_per_thread;
} vit_work;

/* out (tokens, out_hidden) = merger mg of h (patches, hidden), xb and tmp (patches, hidden) as scratch. */
static void merger_forward(const vit_model *m, const vit_merger *mg, thread_pool *pool, const float *h, int64_t patches,
                           float *xb, float *tmp, float *out, const matmul_scratch *mm) {
    const vit_config *c = &m->cfg;
    const int64_t tokens = patches / ((int64_t)c->merge_size * c->merge_size);
    const int wide = c->merge_size * c->merge_size * c->hidden;
    rows_job norm = {.kind = ROWS_LAYERNORM,
                     .rows = mg->postshuffle ? tokens : patches,
                     .n = mg->postshuffle ? wide : c->hidden,
                     .out = xb,
                     .x = h,
                     .w = mg->norm_w,
                     .b = mg->norm_b,
                     .eps = c->norm_eps};
    run_rows(pool, &norm);
    matmul(pool, tmp, xb, &mg->fc1, (int)tokens, mm);
    rows_job act = {.kind = ROWS_BIAS_GELU, .rows = tokens, .n = wide, .out = tmp, .b = mg->fc1_b, .act = VIT_GELU_ERF};
    run_rows(pool, &act);
    matmul(pool, out, tmp, &mg->fc2, (int)tokens, mm);
    rows_job bias = {.kind = ROWS_BIAS, .rows = tokens, .n = c->out_hidden, .out = out, .b = mg->fc2_b};
    run_rows(pool, &bias);
}

/* Learned positions interpolated to each image's grid and the rotary angles of each patch, rows in the
 * processor's order (merge² patches of a window together, windows row-major, frame after frame). */
static void add_positions(const vit_model *m, const vision_pixels *images, int n_images, float *h, float *rope) {
    const vit_config *c = &m->cfg;
    const int E = c->hidden, side = c->position_side, mg = c->merge_size;
    int64_t r = 0;
    for (int i = 0; i < n_images; i++) {
        const vision_pixels *img = &images[i];
        const int32_t gh = img->grid_h, gw = img->grid_w, blocks_w = gw / mg;
        for (int32_t t = 0; t < img->grid_t; t++)
            for (int64_t within = 0; within < (int64_t)gh * gw; within++, r++) {
                const int32_t in_col = (int32_t)(within % mg), in_row = (int32_t)(within / mg % mg);
                const int32_t block_col = (int32_t)(within / ((int64_t)mg * mg) % blocks_w);
                const int32_t block_row = (int32_t)(within / ((int64_t)mg * mg * blocks_w));
                const int32_t row = block_row * mg + in_row, col = block_col * mg + in_col;
                int32_t ht[2], wt[2];
                float hw[2], ww[2];
                axis_taps(row, gh, side, ht, hw);
                axis_taps(col, gw, side, wt, ww);
                float *x = h + r * E;
                for (int d = 0; d < E; d++) {
                    float pe = 0.0f;
                    for (int a = 0; a < 2; a++)
                        for (int b = 0; b < 2; b++)
                            pe += m->pos_embed[((size_t)ht[a] * side + (size_t)wt[b]) * E + d] * (hw[a] * ww[b]);
                    x[d] += pe;
                }
                rope_angles_2d(rope + r * c->head_dim, c->head_dim, row, col, m->inv_freq);
            }
    }
}

static tandem_status check_images(const vit_config *c, const vision_pixels *images, int n_images, int64_t *patches,
                                  int64_t *segments) {
    if (n_images < 1) return tandem_fail(TANDEM_ERR_INVALID_ARG, "vit_encode: no images");
    const int64_t patch_dim = (int64_t)c->in_channels * c->temporal_patch_size * c->patch_size * c->patch_size;
    *patches = *segments = 0;
    for (int i = 0; i < n_images; i++) {
        const vision_pixels *p = &images[i];
        if (!p->pixel_values || p->patch_dim != patch_dim || p->grid_t < 1 || p->grid_h < 1 || p->grid_w < 1 ||
            p->grid_h % c->merge_size || p->grid_w % c->merge_size ||
            p->n_patches != (int64_t)p->grid_t * p->grid_h * p->grid_w)
            return tandem_fail(TANDEM_ERR_INVALID_ARG,
                               "vit_encode: image %d: %lld patches of %lld values on a %d x %d x %d grid do not fit "
                               "the vision tower (patches of %lld values, grid sides multiples of %d)",
                               i, (long long)p->n_patches, (long long)p->patch_dim, p->grid_t, p->grid_h, p->grid_w,
                               (long long)patch_dim, c->merge_size);
        *patches += p->n_patches;
        *segments += p->grid_t;
    }
    if (*patches > INT32_MAX / 4)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "vit_encode: %lld patches in one call is too many",
                           (long long)*patches);
    return TANDEM_OK;
}

tandem_status vit_encode(const vit_model *m, thread_pool *pool, const vision_pixels *images, int n_images,
                         float *embeds, float *deepstack) {
    const vit_config *c = &m->cfg;
    int64_t N = 0, n_segments = 0;
    tandem_status st = check_images(c, images, n_images, &N, &n_segments);
    if (st) return st;
    const int E = c->hidden, hd = c->head_dim, threads = thread_pool_size(pool);
    const int64_t tokens = N / ((int64_t)c->merge_size * c->merge_size);
    const int64_t mlp_rows = N < MLP_ROWS ? N : MLP_ROWS;
    int64_t max_cols = images[0].patch_dim;
    if (c->ffn_dim > max_cols) max_cols = c->ffn_dim;
    if ((int64_t)c->merge_size * c->merge_size * E > max_cols) max_cols = (int64_t)c->merge_size * c->merge_size * E;

    /* attention tasks: (segment, head, block of queries) */
    int64_t n_tasks = 0;
    for (int i = 0; i < n_images; i++) {
        const int64_t len = (int64_t)images[i].grid_h * images[i].grid_w;
        n_tasks += (int64_t)images[i].grid_t * c->n_heads * ((len + ATTENTION_QUERIES - 1) / ATTENTION_QUERIES);
    }
    attention_task_at *at = malloc(sizeof *at * (size_t)n_tasks);
    vit_work w = {.attention_per_thread = (size_t)ATTENTION_QUERIES * hd +
                                          attention_scratch_floats(ATTENTION_QUERIES, hd)};
    const size_t NE = (size_t)N * E;
    const size_t sizes[] = {NE,
                            NE,
                            NE,
                            3 * NE,
                            NE,
                            NE,
                            NE,
                            (size_t)mlp_rows * c->ffn_dim,
                            (size_t)N * hd,
                            (size_t)threads * w.attention_per_thread,
                            (size_t)threads * (size_t)max_cols};
    float **parts[] = {&w.h, &w.xb, &w.tmp, &w.qkv, &w.qh, &w.kh, &w.vh, &w.mlp, &w.rope, &w.attention, &w.rows};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += (sizes[i] + 15) & ~(size_t)15;
    float *block = aligned_alloc(64, total * sizeof(float));
    /* Q8_0 matrices multiply 8-bit activations: every product's input rows, quantized once per product */
    const size_t act_blocks = m->quantized ? (size_t)N * (size_t)(max_cols / 32 + 1) : 0;
    act_block *act_buf = act_blocks ? aligned_alloc(64, (act_blocks * sizeof(act_block) + 63) & ~(size_t)63) : NULL;
    if (!block || !at || (act_blocks && !act_buf)) {
        free(block);
        free(at);
        free(act_buf);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "vit_encode: out of memory for %lld patches (%.1f MiB)", (long long)N,
                           (double)total * sizeof(float) / (1 << 20));
    }
    float *p = block;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) *parts[i] = p, p += (sizes[i] + 15) & ~(size_t)15;
    const matmul_scratch mm = {.rows = w.rows, .act = act_buf, .exact = false};
    n_tasks = 0;
    int64_t start = 0;
    for (int i = 0; i < n_images; i++) {
        const int64_t len = (int64_t)images[i].grid_h * images[i].grid_w;
        for (int32_t t = 0; t < images[i].grid_t; t++, start += len)
            for (int h = 0; h < c->n_heads; h++)
                for (int64_t q0 = 0; q0 < len; q0 += ATTENTION_QUERIES)
                    at[n_tasks++] = (attention_task_at){start, len, q0, h};
    }

    thread_pool_begin_burst(pool);
    /* patch embedding: the Conv3d (stride = kernel) is a product over flattened patches */
    int64_t row = 0;
    for (int i = 0; i < n_images; i++) {
        matmul(pool, w.h + (size_t)row * E, images[i].pixel_values, &m->patch, (int)images[i].n_patches, &mm);
        row += images[i].n_patches;
    }
    rows_job bias = {.kind = ROWS_BIAS, .rows = N, .n = E, .out = w.h, .b = m->patch_b};
    run_rows(pool, &bias);
    add_positions(m, images, n_images, w.h, w.rope);

    const attention_job aj = {.at = at,
                              .qh = w.qh,
                              .kh = w.kh,
                              .vh = w.vh,
                              .att = w.xb,
                              .rows = N,
                              .hidden = E,
                              .head_dim = hd,
                              .scale = 1.0f / sqrtf((float)hd),
                              .scratch = w.attention,
                              .scratch_per_thread = w.attention_per_thread};
    for (int l = 0; l < c->depth; l++) {
        const vit_block *b = &m->blocks[l];
        rows_job norm1 = {.kind = ROWS_LAYERNORM,
                          .rows = N,
                          .n = E,
                          .out = w.xb,
                          .x = w.h,
                          .w = b->norm1_w,
                          .b = b->norm1_b,
                          .eps = c->norm_eps};
        run_rows(pool, &norm1);
        matmul(pool, w.qkv, w.xb, &b->qkv, (int)N, &mm);
        rows_job qkv = {.kind = ROWS_QKV,
                        .rows = N,
                        .n = 3 * E,
                        .out = w.qkv,
                        .b = b->qkv_b,
                        .cfg = c,
                        .rope = w.rope,
                        .qh = w.qh,
                        .kh = w.kh,
                        .vh = w.vh};
        run_rows(pool, &qkv);
        thread_pool_run(pool, (int)n_tasks, attention_task, (void *)&aj);
        matmul(pool, w.tmp, w.xb, &b->proj, (int)N, &mm);
        rows_job res = {.kind = ROWS_RESIDUAL, .rows = N, .n = E, .out = w.h, .y = w.tmp, .b = b->proj_b};
        run_rows(pool, &res);
        for (int64_t r0 = 0; r0 < N; r0 += mlp_rows) { /* the MLP a slice of rows at a time: its buffer stays small */
            const int64_t nr = N - r0 < mlp_rows ? N - r0 : mlp_rows;
            float *h = w.h + (size_t)r0 * E, *xb = w.xb + (size_t)r0 * E, *y = w.tmp + (size_t)r0 * E;
            rows_job norm2 = {.kind = ROWS_LAYERNORM,
                              .rows = nr,
                              .n = E,
                              .out = xb,
                              .x = h,
                              .w = b->norm2_w,
                              .b = b->norm2_b,
                              .eps = c->norm_eps};
            run_rows(pool, &norm2);
            matmul(pool, w.mlp, xb, &b->fc1, (int)nr, &mm);
            rows_job act = {
                .kind = ROWS_BIAS_GELU, .rows = nr, .n = c->ffn_dim, .out = w.mlp, .b = b->fc1_b, .act = c->activation};
            run_rows(pool, &act);
            matmul(pool, y, w.mlp, &b->fc2, (int)nr, &mm);
            rows_job res2 = {.kind = ROWS_RESIDUAL, .rows = nr, .n = E, .out = h, .y = y, .b = b->fc2_b};
            run_rows(pool, &res2);
        }
        for (int j = 0; j < c->n_deepstack; j++)
            if (c->deepstack_layers[j] == l && deepstack)
                merger_forward(m, &m->deepstack[j], pool, w.h, N, w.xb, w.tmp,
                               deepstack + (size_t)j * (size_t)tokens * c->out_hidden, &mm);
    }
    merger_forward(m, &m->merger, pool, w.h, N, w.xb, w.tmp, embeds, &mm);
    thread_pool_end_burst(pool);
    free(block);
    free(at);
    free(act_buf);
    return TANDEM_OK;
}
