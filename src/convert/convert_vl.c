/* convert_vl.c — what tandem_convert adds for a Qwen3-VL folder: which tensors are the vision tower's, and the
 * vision tower as a second GGUF in llama.cpp's mmproj layout (clip.*, v.*, mm.*). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "convert.h"
#include "image.h"
#include "names.h"
#include "vit.h"

bool convert_vl_is_vision_name(const char *hf) {
    return strncmp(hf, "model.visual.", 13) == 0 || strncmp(hf, "visual.", 7) == 0;
}

tandem_status convert_vl_mmproj_path(const char *out_path, const tandem_convert_params *p, char **mmproj) {
    *mmproj = NULL;
    if (p->mmproj_path) {
        *mmproj = strdup(p->mmproj_path);
    } else {
        const char *slash = strrchr(out_path, '/');
        const size_t dir = slash ? (size_t)(slash - out_path + 1) : 0, n = strlen(out_path) + sizeof "mmproj-";
        if ((*mmproj = malloc(n))) snprintf(*mmproj, n, "%.*smmproj-%s", (int)dir, out_path, out_path + dir);
    }
    if (!*mmproj) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_convert: out of memory");
    if (!strcmp(*mmproj, out_path))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_convert: mmproj_path: %s is also the text model's output",
                           *mmproj);
    return convert_check_output(*mmproj, p->overwrite);
}

/* ---- the mmproj file ---- */

tandem_status convert_vl_check_tower(const char *dir, const vit_config *c) {
    const struct {
        bool ok;
        const char *field, *only;
    } fixed[] = {{c->in_channels == 3, "in_channels", "3"},
                 {c->temporal_patch_size == 2, "temporal_patch_size", "2"},
                 {c->activation == VIT_GELU_TANH, "hidden_act", "gelu_pytorch_tanh"},
                 {c->rope_theta == 10000.0f, "rope_theta", "10000"}};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        if (!fixed[i].ok)
            return tandem_fail(TANDEM_ERR_UNSUPPORTED,
                               "%s: vision_config.%s: llama.cpp's mmproj layout has no key for it and holds only %s",
                               dir, fixed[i].field, fixed[i].only);
    return TANDEM_OK;
}

static tandem_status vision_type(tandem_ftype f, tandem_type *t) {
    switch (f) {
    case TANDEM_FTYPE_F32: *t = TANDEM_TYPE_F32; return TANDEM_OK;
    case TANDEM_FTYPE_F16: *t = TANDEM_TYPE_F16; return TANDEM_OK;
    case TANDEM_FTYPE_BF16: *t = TANDEM_TYPE_BF16; return TANDEM_OK;
    case TANDEM_FTYPE_Q8_0: *t = TANDEM_TYPE_Q8_0; return TANDEM_OK;
    default:
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_convert: mmproj_ftype %s is not a vision tower type (F32, F16, BF16 or Q8_0)",
                           tandem_ftype_name(f));
    }
}

/* Every vision tensor, transformers' names after the prefix, in the order of llama.cpp's files. */
static int vision_names(const vit_config *c, char (*out)[80]) {
    int n = 0;
    static const char *const BLOCK[] = {"norm1.weight",          "norm1.bias",
                                        "attn.qkv.weight",       "attn.qkv.bias",
                                        "attn.proj.weight",      "attn.proj.bias",
                                        "norm2.weight",          "norm2.bias",
                                        "mlp.linear_fc1.weight", "mlp.linear_fc1.bias",
                                        "mlp.linear_fc2.weight", "mlp.linear_fc2.bias"};
    static const char *const MERGER[] = {"norm.weight",     "norm.bias",         "linear_fc1.weight",
                                         "linear_fc1.bias", "linear_fc2.weight", "linear_fc2.bias"};
    snprintf(out[n++], 80, "patch_embed.proj.weight");
    snprintf(out[n++], 80, "patch_embed.proj.weight.1");
    snprintf(out[n++], 80, "patch_embed.proj.bias");
    snprintf(out[n++], 80, "pos_embed.weight");
    for (int l = 0; l < c->depth; l++)
        for (size_t i = 0; i < sizeof BLOCK / sizeof *BLOCK; i++) snprintf(out[n++], 80, "blocks.%d.%s", l, BLOCK[i]);
    for (size_t i = 0; i < sizeof MERGER / sizeof *MERGER; i++) snprintf(out[n++], 80, "merger.%s", MERGER[i]);
    for (int j = 0; j < c->n_deepstack; j++)
        for (size_t i = 0; i < sizeof MERGER / sizeof *MERGER; i++)
            snprintf(out[n++], 80, "deepstack_merger_list.%d.%s", j, MERGER[i]);
    return n;
}

/* Frame t of the Conv3d kernel (hidden, channels, frames, patch, patch) as f32 (hidden, channels, patch, patch). */
static float *kernel_frame(const st_tensor *k, int t) {
    const int64_t chunks = k->shape[0] * k->shape[1], frames = k->shape[2], square = k->shape[3] * k->shape[4];
    const size_t elem = (size_t)tandem_type_size((tandem_type)k->type);
    float *out = malloc(sizeof(float) * (size_t)(chunks * square));
    void *aligned = malloc(elem * (size_t)square);
    if (out && aligned)
        for (int64_t i = 0; i < chunks; i++) {
            memcpy(aligned, (const uint8_t *)k->data + (size_t)((i * frames + t) * square) * elem,
                   elem * (size_t)square);
            dequantize_row((tandem_type)k->type, aligned, out + i * square, square);
        }
    free(aligned);
    if (!aligned) free(out), out = NULL;
    return out;
}

/* llama.cpp stores the pixel budget as u32; larger budgets are capped (no image needs more). */
static uint32_t pixels_u32(int64_t n) { return n > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)n; }

static tandem_status write_mmproj_keys(gguf_writer *w, const vit_config *c, const char *name, tandem_ftype ftype,
                                       const char *dir) {
    vision_preprocess_config pre = vision_preprocess_config_qwen3vl();
    char *pre_path = path_join(dir, "preprocessor_config.json");
    if (!pre_path) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_convert: out of memory");
    tandem_status st = path_exists(pre_path) ? vision_preprocess_config_load(pre_path, &pre) : TANDEM_OK;
    free(pre_path);
    if (st) return st;
    bool deepstack[1024] = {false}; /* vit_config's depth limit */
    for (int j = 0; j < c->n_deepstack; j++) deepstack[c->deepstack_layers[j]] = true;
    if ((st = gguf_writer_set_str(w, "general.architecture", "clip", 4)) ||
        (st = gguf_writer_set_str(w, "general.type", "mmproj", 6)) ||
        (st = gguf_writer_set_str(w, "general.name", name, strlen(name))) ||
        (st = gguf_writer_set_u32(w, "general.file_type", (uint32_t)ftype)) ||
        (st = gguf_writer_set_u32(w, "general.quantization_version", 2)) ||
        (st = gguf_writer_set_str(w, "clip.projector_type", "qwen3vl_merger", 14)) ||
        (st = gguf_writer_set_bool(w, "clip.has_vision_encoder", true)) ||
        (st = gguf_writer_set_bool(w, "clip.use_gelu", true)) ||
        (st = gguf_writer_set_u32(w, "clip.vision.projection_dim", (uint32_t)c->out_hidden)) ||
        (st = gguf_writer_set_u32(w, "clip.vision.image_size", (uint32_t)(c->position_side * c->patch_size))) ||
        (st = gguf_writer_set_u32(w, "clip.vision.patch_size", (uint32_t)c->patch_size)) ||
        (st = gguf_writer_set_u32(w, "clip.vision.embedding_length", (uint32_t)c->hidden)) ||
        (st = gguf_writer_set_u32(w, "clip.vision.feed_forward_length", (uint32_t)c->ffn_dim)) ||
        (st = gguf_writer_set_u32(w, "clip.vision.block_count", (uint32_t)c->depth)) ||
        (st = gguf_writer_set_u32(w, "clip.vision.attention.head_count", (uint32_t)c->n_heads)) ||
        (st = gguf_writer_set_f32(w, "clip.vision.attention.layer_norm_epsilon", c->norm_eps)) ||
        (st = gguf_writer_set_arr_f32(w, "clip.vision.image_mean", pre.image_mean, 3)) ||
        (st = gguf_writer_set_arr_f32(w, "clip.vision.image_std", pre.image_std, 3)) ||
        (st = gguf_writer_set_u32(w, "clip.vision.spatial_merge_size", (uint32_t)c->merge_size)) ||
        (st = gguf_writer_set_u32(w, "clip.vision.image_min_pixels", pixels_u32(pre.min_pixels))) ||
        (st = gguf_writer_set_u32(w, "clip.vision.image_max_pixels", pixels_u32(pre.max_pixels))) ||
        (st = gguf_writer_set_arr_bool(w, "clip.vision.is_deepstack_layers", deepstack, (size_t)c->depth)))
        return st;
    return TANDEM_OK;
}

tandem_status convert_vl_write_mmproj(const char *hf_dir, const st_set *set, thread_pool *pool, const char *out_path,
                                      const tandem_convert_params *p) {
    tandem_type mtype = TANDEM_TYPE_F16;
    tandem_status st = vision_type(p->mmproj_ftype, &mtype);
    if (st) return st;
    vit_model *vm = NULL;
    if ((st = vit_load(hf_dir, &vm))) return st; /* vision_config, names, dtypes and shapes checked there */
    const vit_config c = *vit_model_config(vm);
    vit_free(vm);
    if ((st = convert_vl_check_tower(hf_dir, &c))) return st;
    const int max = 6 + 12 * c.depth + 6 * (1 + c.n_deepstack);
    char(*names)[80] = calloc((size_t)max, sizeof *names);
    char(*gguf_names)[80] = calloc((size_t)max, sizeof *gguf_names);
    convert_source *src = calloc((size_t)max, sizeof *src);
    tandem_type *types = calloc((size_t)max, sizeof *types);
    float *frames[2] = {NULL, NULL};
    char *name = path_base_name(hf_dir);
    gguf_writer *w = NULL;
    if (!names || !gguf_names || !src || !types || !name) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_convert: out of memory");
        goto done;
    }
    const char *prefix = safetensors_find(set, "model.visual.patch_embed.proj.weight") ? "model.visual." : "visual.";
    const int n = vision_names(&c, names);
    for (int i = 0; i < n; i++) {
        char hf[128];
        const bool second = !strcmp(names[i], "patch_embed.proj.weight.1"),
                   kernel = second || !strcmp(names[i], "patch_embed.proj.weight");
        snprintf(hf, sizeof hf, "%s%s", prefix, kernel ? "patch_embed.proj.weight" : names[i]);
        const st_tensor *t = safetensors_find(set, hf);
        if (!t || !vit_gguf_tensor_name(&c, names[i], gguf_names[i], sizeof gguf_names[i])) {
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s' is missing", hf_dir, hf);
            goto done;
        }
        convert_source *s = &src[i];
        s->gguf_name = gguf_names[i];
        s->label = t->name;
        s->file = set->shards[t->shard].path;
        s->check_copies = true;
        if (kernel) { /* llama.cpp's two frame kernels, each (hidden, channels, patch, patch) */
            if (!(frames[second] = kernel_frame(t, second))) {
                st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_convert: out of memory");
                goto done;
            }
            s->type = TANDEM_TYPE_F32;
            s->data = frames[second];
            s->n_dims = 4;
            const int64_t ne[4] = {t->shape[4], t->shape[3], t->shape[1], t->shape[0]};
            memcpy(s->ne, ne, sizeof ne);
            types[i] = mtype == TANDEM_TYPE_F32 ? TANDEM_TYPE_F32 : TANDEM_TYPE_F16; /* as llama.cpp forces it */
        } else {
            s->type = (tandem_type)t->type;
            s->data = t->data;
            s->n_dims = t->n_dims;
            for (int d = 0; d < 4; d++) s->ne[d] = d < t->n_dims ? t->shape[t->n_dims - 1 - d] : 1;
            const bool table = !strcmp(names[i], "pos_embed.weight");
            types[i] = t->n_dims < 2 || table                            ? TANDEM_TYPE_F32
                       : mtype == TANDEM_TYPE_Q8_0 && s->ne[0] % 32 != 0 ? TANDEM_TYPE_F16 /* rows not whole blocks */
                                                                         : mtype;
        }
        s->cols = s->ne[0];
        s->rows = s->ne[1] * s->ne[2] * s->ne[3];
    }
    if ((st = gguf_writer_init(&w)) || (st = write_mmproj_keys(w, &c, name, p->mmproj_ftype, hf_dir))) goto done;
    st = convert_write_tensors(w, pool, src, n, types, out_path, p);
done:
    gguf_writer_free(w);
    free(frames[0]);
    free(frames[1]);
    free(name);
    free(types);
    free(src);
    free(gguf_names);
    free(names);
    return st;
}
