/* file_info.c — GGUF files described without loading a model: an mmproj's vision tower (through the encoder's own
 * loader, so info says what the encoder would run) and any file's metadata as JSON (tandem info's fallback). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "gguf.h"
#include "vit.h"

tandem_status tandem_mmproj_info_read(const char *path, tandem_mmproj_info *info) {
    if (!info) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_mmproj_info_read: info is NULL");
    memset(info, 0, sizeof *info);
    vit_model *m = NULL;
    tandem_status st = vit_load_gguf(path, &m);
    if (st) return st;
    gguf_file *f = NULL;
    if ((st = gguf_open(path, &f))) {
        vit_free(m);
        return st;
    }
    const vit_config *c = vit_model_config(m);
    gguf_str s = {0};
    if (!gguf_get_str(f, "clip.projector_type", &s)) gguf_get_str(f, "clip.vision.projector_type", &s);
    snprintf(info->projector, sizeof info->projector, "%.*s", (int)(s.len < 31 ? s.len : 31), s.ptr ? s.ptr : "");
    info->depth = c->depth, info->hidden = c->hidden, info->n_heads = c->n_heads, info->ffn_dim = c->ffn_dim;
    info->patch_size = c->patch_size, info->temporal_patch_size = c->temporal_patch_size;
    info->merge_size = c->merge_size, info->out_hidden = c->out_hidden;
    info->image_size = c->position_side * c->patch_size, info->n_positions = c->n_positions;
    info->n_deepstack = c->n_deepstack;
    for (int j = 0; j < c->n_deepstack && j < 16; j++) info->deepstack_layers[j] = c->deepstack_layers[j];
    info->n_tensors = (int32_t)f->n_tensors;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if ((int)t->type >= 0 && (int)t->type < TANDEM_TYPE_COUNT) info->tensors_per_type[t->type]++;
        info->n_params += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        info->weight_bytes += (int64_t)t->nbytes;
    }
    gguf_close(f);
    vit_free(m);
    return TANDEM_OK;
}

static const char *value_type_name(gguf_value_type t) {
    static const char *const NAMES[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    return (unsigned)t < sizeof NAMES / sizeof *NAMES ? NAMES[t] : "?";
}

/* A GGUF string as JSON; bytes that are not UTF-8 become '?' (metadata strings are not promised to be UTF-8). */
static json_t *gstr(gguf_str s) {
    json_t *v = json_stringn(s.ptr ? s.ptr : "", (size_t)s.len);
    if (v) return v;
    char *copy = malloc((size_t)s.len + 1);
    if (!copy) return json_null();
    for (uint64_t i = 0; i < s.len; i++) copy[i] = (unsigned char)s.ptr[i] < 0x80 && s.ptr[i] ? s.ptr[i] : '?';
    v = json_stringn(copy, (size_t)s.len);
    free(copy);
    return v ? v : json_null();
}

static json_t *scalar_json(const gguf_kv *kv) {
    switch (kv->type) {
    case GGUF_TYPE_STRING: return gstr(kv->v.str);
    case GGUF_TYPE_BOOL: return json_boolean(kv->v.u64 != 0);
    case GGUF_TYPE_FLOAT32:
    case GGUF_TYPE_FLOAT64: return json_real(kv->v.f64);
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_INT16:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_INT64: return json_integer((json_int_t)kv->v.i64);
    default:
        return kv->v.u64 > (uint64_t)INT64_MAX ? json_real((double)kv->v.u64) : json_integer((json_int_t)kv->v.u64);
    }
}

static json_t *kv_json(const gguf_kv *kv) {
    if (kv->type != GGUF_TYPE_ARRAY) return scalar_json(kv);
    if (kv->n > 16) {
        char text[64];
        snprintf(text, sizeof text, "[%llu elements of %s]", (unsigned long long)kv->n,
                 value_type_name(kv->array_type));
        return json_string(text);
    }
    json_t *a = json_array();
    for (uint64_t i = 0; i < kv->n; i++) {
        json_t *v;
        switch (kv->array_type) {
        case GGUF_TYPE_STRING: v = gstr(kv->strings[i]); break;
        case GGUF_TYPE_BOOL: v = json_boolean(gguf_array_int(kv, i) != 0); break;
        case GGUF_TYPE_FLOAT32:
        case GGUF_TYPE_FLOAT64: v = json_real(gguf_array_float(kv, i)); break;
        case GGUF_TYPE_ARRAY: v = json_null(); break;
        default: v = json_integer((json_int_t)gguf_array_int(kv, i)); break;
        }
        json_array_append_new(a, v);
    }
    return a;
}

tandem_status tandem_gguf_metadata_json(const char *path, char **json) {
    if (!json) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_gguf_metadata_json: json is NULL");
    *json = NULL;
    gguf_file *f = NULL;
    tandem_status st = gguf_open(path, &f);
    if (st) return st;
    json_t *meta = json_object(), *root = json_object();
    gguf_str arch = {0};
    json_object_set_new(root, "architecture",
                        gguf_get_str(f, "general.architecture", &arch) ? gstr(arch) : json_null());
    json_object_set_new(root, "n_tensors", json_integer((json_int_t)f->n_tensors));
    for (int64_t i = 0; i < f->n_kv; i++) json_object_set_new(meta, f->kv[i].key, kv_json(&f->kv[i]));
    json_object_set_new(root, "metadata", meta);
    gguf_close(f);
    *json = json_dumps(root, JSON_PRESERVE_ORDER | JSON_COMPACT);
    json_decref(root);
    return *json ? TANDEM_OK : tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_gguf_metadata_json: out of memory");
}
