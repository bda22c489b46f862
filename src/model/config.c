/* config.c — Qwen3 hyperparameters from a Hugging Face config.json or from GGUF qwen3.* metadata, with
 * range checks, so that absurd or unsupported configurations fail at load with the field named. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint.h"
#include "names.h"
#include "qwen3.h"

/* Limits far beyond any Qwen3 release but small enough that sizes computed from them cannot overflow. */
enum { MAX_LAYERS = 1024, MAX_DIM = 1 << 16, MAX_HEADS = 1024, MAX_HEAD_DIM = 1024, MAX_VOCAB = 1 << 22 };

static tandem_status check_config(const char *src, qwen3_config *c) {
#define RANGE(field, lo, hi)                                                                            \
    if (c->field < (lo) || c->field > (hi))                                                             \
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s = %d is out of range %d..%d", src, #field, c->field, \
                           (int)(lo), (int)(hi));
    RANGE(n_layers, 1, MAX_LAYERS);
    RANGE(dim, 1, MAX_DIM);
    RANGE(ffn_dim, 1, 4 * MAX_DIM);
    RANGE(n_heads, 1, MAX_HEADS);
    RANGE(n_kv_heads, 1, c->n_heads);
    RANGE(head_dim, 2, MAX_HEAD_DIM);
    RANGE(vocab_size, 1, MAX_VOCAB);
#undef RANGE
    if (c->n_heads % c->n_kv_heads != 0)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                           src, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: head_dim %d must be even for rotary embeddings", src, c->head_dim);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: rope_theta %g must be a positive number", src, c->rope_theta);
    if (!(c->rms_eps > 0) || !(c->rms_eps < 1))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: rms_norm_eps %g must be in (0, 1)", src, c->rms_eps);
    const int32_t *sec = c->rope_sections;
    if ((sec[0] || sec[1] || sec[2]) && (int64_t)sec[0] + sec[1] + sec[2] != c->head_dim / 2)
        return tandem_fail(TANDEM_ERR_FORMAT,
                           "%s: M-RoPE sections [%d, %d, %d] (mrope_section, rope.dimension_sections) must sum to "
                           "head_dim / 2 = %d",
                           src, sec[0], sec[1], sec[2], c->head_dim / 2);
    if (c->n_deepstack < 0 || c->n_deepstack > MAX_LAYERS)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %d DeepStack layers is out of range 0..%d", src, c->n_deepstack,
                           MAX_LAYERS);
    if (c->context_length <= 0) c->context_length = 40960;
    return TANDEM_OK;
}

static tandem_status json_int_field(const char *path, const json_t *root, const char *key, int32_t *out,
                                    bool required, int32_t fallback) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return tandem_fail(TANDEM_ERR_FORMAT, "%s: missing field '%s'", path, key);
        *out = fallback;
        return TANDEM_OK;
    }
    int64_t x;
    if (!json_get_int(root, key, &x))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: field '%s' must be an integer", path, key);
    if (x < INT32_MIN || x > INT32_MAX)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: field '%s' = %lld is too %s (the limit is %d)", path, key,
                           (long long)x, x > 0 ? "large" : "small", x > 0 ? INT32_MAX : INT32_MIN);
    *out = (int32_t)x;
    return TANDEM_OK;
}

static tandem_status json_float_field(const char *path, const json_t *obj, const char *key, float *out) {
    double d;
    if (!json_get_number(obj, key, &d))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: field '%s' must be a number", path, key);
    *out = (float)d;
    return TANDEM_OK;
}

/* Qwen3-VL's mrope_section [t, h, w] (rope_parameters or rope_scaling): three non-negative counts of rotary
 * frequencies. transformers always interleaves them (apply_interleaved_mrope), whatever mrope_interleaved says. */
static tandem_status read_mrope_section(const char *path, const json_t *obj, qwen3_config *c) {
    const json_t *sec = json_object_get(obj, "mrope_section");
    if (!sec || json_is_null(sec)) return TANDEM_OK;
    if (!json_is_array(sec) || json_array_size(sec) != 3)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: field 'mrope_section' must be an array of 3 integers", path);
    for (size_t i = 0; i < 3; i++) {
        const json_t *v = json_array_get(sec, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > MAX_HEAD_DIM)
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: field 'mrope_section' must be an array of 3 integers in 0..%d",
                               path, MAX_HEAD_DIM);
        c->rope_sections[i] = (int32_t)json_integer_value(v);
    }
    return TANDEM_OK;
}

/* rope settings: v4 configs write rope_theta + rope_scaling, v5 configs write rope_parameters. */
static tandem_status read_rope(const char *path, const json_t *root, qwen3_config *c) {
    c->rope_theta = 10000.0f;  /* Qwen3Config's default */
    const json_t *params = json_object_get(root, "rope_parameters");
    const json_t *scaling = json_object_get(root, "rope_scaling");
    if (json_object_get(root, "rope_theta")) {
        tandem_status st = json_float_field(path, root, "rope_theta", &c->rope_theta);
        if (st) return st;
    }
    if (json_is_object(params) && json_object_get(params, "rope_theta")) {
        tandem_status st = json_float_field(path, params, "rope_theta", &c->rope_theta);
        if (st) return st;
    }
    const json_t *kinds[2] = {params, scaling};
    for (int i = 0; i < 2; i++) {
        if (!kinds[i] || json_is_null(kinds[i])) continue;
        if (!json_is_object(kinds[i]))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: '%s' must be an object", path,
                               i == 0 ? "rope_parameters" : "rope_scaling");
        const char *type = json_get_string(kinds[i], "rope_type");
        if (!type) type = json_get_string(kinds[i], "type");
        if (type && strcmp(type, "default") != 0)
            return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: rope type '%s' is not supported (only default RoPE)",
                               path, type);
        tandem_status st = read_mrope_section(path, kinds[i], c);
        if (st) return st;
    }
    return TANDEM_OK;
}

/* What Qwen3-VL adds to its text model: M-RoPE sections (transformers' default [24, 20, 20] when absent, which
 * only fits head_dim 128; other sizes without them get plain RoPE, as equal position components would) and one
 * DeepStack feature set per vision_config.deepstack_visual_indexes entry (transformers' default has 3). */
static tandem_status read_vl_fields(const char *src, const json_t *root, qwen3_config *c) {
    const int32_t *sec = c->rope_sections;
    if (sec[0] == 0 && sec[1] == 0 && sec[2] == 0 && c->head_dim == 128) {
        c->rope_sections[0] = 24;
        c->rope_sections[1] = 20;
        c->rope_sections[2] = 20;
    }
    const json_t *vision = json_object_get(root, "vision_config");
    if (!json_is_object(vision)) return TANDEM_OK;
    const json_t *taps = json_object_get(vision, "deepstack_visual_indexes");
    if (!taps || json_is_null(taps)) {
        c->n_deepstack = 3;
    } else if (!json_is_array(taps) || json_array_size(taps) > MAX_LAYERS) {
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: vision_config.deepstack_visual_indexes must be an array", src);
    } else {
        c->n_deepstack = (int32_t)json_array_size(taps);
    }
    return TANDEM_OK;
}

/* A Qwen3-VL config.json nests the text model's hyperparameters under text_config (model_type qwen3_vl_text: a
 * Qwen3 whose M-RoPE equals plain RoPE for text, every token's three position components being equal). */
tandem_status qwen3_config_from_json_value(const char *path, const json_t *root, qwen3_config *c) {
    memset(c, 0, sizeof *c);
    if (!json_is_object(root)) return tandem_fail(TANDEM_ERR_FORMAT, "%s: top level must be a JSON object", path);
    const json_t *text = json_object_get(root, "text_config");
    if (json_is_null(text)) text = NULL;
    if (text && !json_is_object(text))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: field 'text_config' must be an object", path);
    const json_t *hp = text ? text : root;
    char *nested = NULL;
    if (text) {
        const size_t n = strlen(path) + sizeof " (text_config)";
        if (!(nested = malloc(n))) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
        snprintf(nested, n, "%s (text_config)", path);
    }
    const char *src = text ? nested : path; /* messages name where the field was looked for */
    tandem_status st;
    const char *model_type = json_get_string(hp, "model_type");
    if (!model_type) model_type = json_get_string(root, "model_type");
    if (!model_type) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: missing field 'model_type'", src);
        goto done;
    }
    if (strcmp(model_type, "qwen3") != 0 && !(text && strcmp(model_type, "qwen3_vl_text") == 0)) {
        st = tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: model_type '%s' is not supported (expected 'qwen3'%s)", src,
                         model_type, text ? " or 'qwen3_vl_text'" : "");
        goto done;
    }
    if ((st = json_int_field(src, hp, "num_hidden_layers", &c->n_layers, true, 0)) ||
        (st = json_int_field(src, hp, "hidden_size", &c->dim, true, 0)) ||
        (st = json_int_field(src, hp, "intermediate_size", &c->ffn_dim, true, 0)) ||
        (st = json_int_field(src, hp, "num_attention_heads", &c->n_heads, true, 0)) ||
        (st = json_int_field(src, hp, "num_key_value_heads", &c->n_kv_heads, false, c->n_heads)) ||
        (st = json_int_field(src, hp, "vocab_size", &c->vocab_size, true, 0)) ||
        (st = json_int_field(src, hp, "max_position_embeddings", &c->context_length, false, 40960)))
        goto done;
    if (c->n_heads <= 0) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: num_attention_heads = %d must be positive", src, c->n_heads);
        goto done;
    }
    if ((st = json_int_field(src, hp, "head_dim", &c->head_dim, false, c->dim / c->n_heads))) goto done;
    c->rms_eps = 1e-6f;
    if (json_object_get(hp, "rms_norm_eps") && (st = json_float_field(src, hp, "rms_norm_eps", &c->rms_eps))) goto done;
    if ((st = read_rope(src, hp, c))) goto done;
    c->tied_embeddings = false;  /* Qwen3Config's default */
    json_t *tie = json_object_get(hp, "tie_word_embeddings");
    if (!tie) tie = json_object_get(root, "tie_word_embeddings"); /* Qwen3-VL writes it at the top level too */
    if (tie && !json_is_boolean(tie)) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: field 'tie_word_embeddings' must be true or false", src);
        goto done;
    }
    if (tie) c->tied_embeddings = json_is_true(tie);
    bool bias = false;
    if (json_get_bool(hp, "attention_bias", &bias) && bias) {
        st = tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: attention_bias = true is not supported", src);
        goto done;
    }
    bool swa = false;
    if (json_get_bool(hp, "use_sliding_window", &swa) && swa) {
        st = tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: use_sliding_window = true is not supported", src);
        goto done;
    }
    const char *act = json_get_string(hp, "hidden_act");
    if (act && strcmp(act, "silu") != 0) {
        st = tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (expected 'silu')", src, act);
        goto done;
    }
    if (text && (st = read_vl_fields(src, root, c))) goto done;
    st = check_config(src, c);
done:
    free(nested);
    return st;
}

tandem_status qwen3_config_from_json(const char *path, qwen3_config *c) {
    memset(c, 0, sizeof *c);
    json_t *root = NULL;
    tandem_status st = json_load_path(path, &root);
    if (st) return st;
    st = qwen3_config_from_json_value(path, root, c);
    json_decref(root);
    return st;
}

static tandem_status gguf_u32_field(const gguf_file *f, const char *key, int32_t *out, bool required,
                                    int32_t fallback) {
    if (!gguf_find_kv(f, key)) {
        if (required) return tandem_fail(TANDEM_ERR_FORMAT, "%s: missing metadata key '%s'", f->map.path, key);
        *out = fallback;
        return TANDEM_OK;
    }
    uint32_t v;
    const gguf_kv *kv = gguf_find_kv(f, key);
    const bool is_unsigned = kv->type == GGUF_TYPE_UINT8 || kv->type == GGUF_TYPE_UINT16 ||
                             kv->type == GGUF_TYPE_UINT32 || kv->type == GGUF_TYPE_UINT64;
    const bool is_signed = kv->type == GGUF_TYPE_INT8 || kv->type == GGUF_TYPE_INT16 ||
                           kv->type == GGUF_TYPE_INT32 || kv->type == GGUF_TYPE_INT64;
    if ((is_unsigned && kv->v.u64 > INT32_MAX) || (is_signed && kv->v.i64 > INT32_MAX))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: metadata key '%s' = %llu is too large (the limit is %d)",
                           f->map.path, key,
                           is_unsigned ? (unsigned long long)kv->v.u64 : (unsigned long long)kv->v.i64, INT32_MAX);
    if (!gguf_get_u32(f, key, &v))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: metadata key '%s' must be a non-negative integer", f->map.path, key);
    *out = (int32_t)v;
    return TANDEM_OK;
}

/* The metadata keys of an architecture: "<arch>.<name>" (qwen3.block_count, qwen3vl.block_count). */
static const char *arch_key(char *buf, size_t cap, const char *arch, const char *name) {
    snprintf(buf, cap, "%s.%s", arch, name);
    return buf;
}

/* qwen3vl's rope.dimension_sections [t, h, w, 0] (llama.cpp's 4th section is always 0; tandem follows
 * transformers, which has 3) and n_deepstack_layers. */
static tandem_status read_gguf_vl_fields(const gguf_file *f, qwen3_config *c) {
    const char *path = f->map.path;
    const gguf_kv *kv = gguf_find_kv(f, "qwen3vl.rope.dimension_sections");
    if (!kv) return tandem_fail(TANDEM_ERR_FORMAT, "%s: missing metadata key 'qwen3vl.rope.dimension_sections'", path);
    const bool ints = kv->array_type != GGUF_TYPE_STRING && kv->array_type != GGUF_TYPE_ARRAY &&
                      kv->array_type != GGUF_TYPE_FLOAT32 && kv->array_type != GGUF_TYPE_FLOAT64;
    if (kv->type != GGUF_TYPE_ARRAY || !ints || kv->n < 3 || kv->n > 4)
        return tandem_fail(TANDEM_ERR_FORMAT,
                           "%s: metadata key 'qwen3vl.rope.dimension_sections' must be an array of "
                           "4 integers",
                           path);
    for (uint64_t i = 0; i < kv->n; i++) {
        const int64_t v = gguf_array_int(kv, i);
        if (v < 0 || v > c->head_dim || (i == 3 && v != 0))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: qwen3vl.rope.dimension_sections[%d] = %lld is out of range",
                               path, (int)i, (long long)v);
        if (i < 3) c->rope_sections[i] = (int32_t)v;
    }
    return gguf_u32_field(f, "qwen3vl.n_deepstack_layers", &c->n_deepstack, false, 0);
}

tandem_status qwen3_config_from_gguf(const gguf_file *f, qwen3_config *c) {
    memset(c, 0, sizeof *c);
    const char *path = f->map.path;
    gguf_str arch_str;
    if (!gguf_get_str(f, "general.architecture", &arch_str))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: missing metadata key 'general.architecture'", path);
    const bool vl = arch_str.len == 7 && memcmp(arch_str.ptr, "qwen3vl", 7) == 0;
    if (!vl && (arch_str.len != 5 || memcmp(arch_str.ptr, "qwen3", 5) != 0))
        return tandem_fail(TANDEM_ERR_UNSUPPORTED,
                           "%s: architecture '%.*s' is not supported (expected 'qwen3' or 'qwen3vl')", path,
                           (int)(arch_str.len > 64 ? 64 : arch_str.len), arch_str.ptr);
    const char *arch = vl ? "qwen3vl" : "qwen3";
    char k[96];
    tandem_status st;
    if ((st = gguf_u32_field(f, arch_key(k, sizeof k, arch, "block_count"), &c->n_layers, true, 0)) ||
        (st = gguf_u32_field(f, arch_key(k, sizeof k, arch, "embedding_length"), &c->dim, true, 0)) ||
        (st = gguf_u32_field(f, arch_key(k, sizeof k, arch, "feed_forward_length"), &c->ffn_dim, true, 0)) ||
        (st = gguf_u32_field(f, arch_key(k, sizeof k, arch, "attention.head_count"), &c->n_heads, true, 0)) ||
        (st = gguf_u32_field(f, arch_key(k, sizeof k, arch, "attention.head_count_kv"), &c->n_kv_heads, false,
                             c->n_heads)) ||
        (st = gguf_u32_field(f, arch_key(k, sizeof k, arch, "context_length"), &c->context_length, false, 40960)))
        return st;
    if (c->n_heads <= 0)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s.attention.head_count must be positive", path, arch);
    if ((st = gguf_u32_field(f, arch_key(k, sizeof k, arch, "attention.key_length"), &c->head_dim, false,
                             c->dim / c->n_heads)))
        return st;
    int32_t value_length;
    if ((st = gguf_u32_field(f, arch_key(k, sizeof k, arch, "attention.value_length"), &value_length, false,
                             c->head_dim)))
        return st;
    if (value_length != c->head_dim)
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: attention.value_length %d differs from key_length %d", path,
                           value_length, c->head_dim);
    int32_t rot;
    if ((st = gguf_u32_field(f, arch_key(k, sizeof k, arch, "rope.dimension_count"), &rot, false, c->head_dim)))
        return st;
    if (rot != c->head_dim)
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: partial rotary (rope.dimension_count %d of %d) is not supported",
                           path, rot, c->head_dim);
    c->rope_theta = 10000.0f;
    if (gguf_find_kv(f, arch_key(k, sizeof k, arch, "rope.freq_base")) && !gguf_get_f32(f, k, &c->rope_theta))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: metadata key '%s' must be a number", path, k);
    if (!gguf_get_f32(f, arch_key(k, sizeof k, arch, "attention.layer_norm_rms_epsilon"), &c->rms_eps))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: missing or non-numeric key '%s'", path, k);
    gguf_str scaling;
    if (gguf_get_str(f, arch_key(k, sizeof k, arch, "rope.scaling.type"), &scaling) &&
        !(scaling.len == 4 && !memcmp(scaling.ptr, "none", 4)))
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: rope scaling '%.*s' is not supported", path,
                           (int)(scaling.len > 32 ? 32 : scaling.len), scaling.ptr);
    if (vl && (st = read_gguf_vl_fields(f, c))) return st;
    const char *emb_name = qwen3_global_name(QWEN3_TOKEN_EMBD, NAMING_GGUF);
    const gguf_tensor *emb = gguf_find_tensor(f, emb_name);
    if (!emb) return tandem_fail(TANDEM_ERR_FORMAT, "%s: missing tensor '%s'", path, emb_name);
    if (emb->n_dims != 2 || emb->ne[1] > INT32_MAX)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s' must be 2-D", path, emb_name);
    c->vocab_size = (int32_t)emb->ne[1];
    c->tied_embeddings = gguf_find_tensor(f, qwen3_global_name(QWEN3_OUTPUT, NAMING_GGUF)) == NULL;
    return check_config(path, c);
}

tandem_status qwen3_config_write_gguf(gguf_writer *w, const qwen3_config *c, const char *name, uint32_t file_type) {
    /* Qwen3-VL's text model (rope sections set) is llama.cpp's qwen3vl: the same keys under its own prefix, plus
     * the M-RoPE sections (a 4th, always 0, that llama.cpp requires) and the DeepStack layer count */
    const bool vl = c->rope_sections[0] || c->rope_sections[1] || c->rope_sections[2];
    const char *arch = vl ? "qwen3vl" : "qwen3";
    char key[96];
#define KEY(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    tandem_status st;
    if ((st = gguf_writer_set_str(w, "general.architecture", arch, strlen(arch))) ||
        (st = gguf_writer_set_str(w, "general.type", "model", 5)) ||
        (st = gguf_writer_set_str(w, "general.name", name, strlen(name))) ||
        (st = gguf_writer_set_u32(w, "general.file_type", file_type)) ||
        (st = gguf_writer_set_u32(w, "general.quantization_version", 2)) ||
        (st = gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)c->context_length)) ||
        (st = gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)c->dim)) ||
        (st = gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)c->n_layers)) ||
        (st = gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->ffn_dim)) ||
        (st = gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads)) ||
        (st = gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads)) ||
        (st = gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim)) ||
        (st = gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim)) ||
        (st = gguf_writer_set_f32(w, KEY("rope.freq_base"), c->rope_theta)) ||
        (st = gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->rms_eps)))
        return st;
    if (vl) {
        const int32_t sections[4] = {c->rope_sections[0], c->rope_sections[1], c->rope_sections[2], 0};
        if ((st = gguf_writer_set_arr_i32(w, KEY("rope.dimension_sections"), sections, 4)) ||
            (st = gguf_writer_set_u32(w, KEY("n_deepstack_layers"), (uint32_t)c->n_deepstack)))
            return st;
    }
#undef KEY
    return TANDEM_OK;
}
