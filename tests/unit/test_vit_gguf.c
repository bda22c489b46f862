/* test_vit_gguf.c — the mmproj GGUF path of the vision tower: convert_vl_write_mmproj of the tiny Qwen3-VL folders
 * read back by vit_load_gguf encodes as vit_load of the folder does; bad mmproj files give errors naming the fault. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert.h"
#include "gguf.h"
#include "kernels.h"
#include "safetensors.h"
#include "golden.h"
#include "test.h"
#include "vit.h"

/* How far a lossy mmproj may move the outputs (magnitude ~1.5) from the folder's. Measured when set: BF16 rounding
 * of an F32 folder's matrices ~1e-2, F16 ~2e-3, Q8_0 (weights and 8-bit activations) ~5e-2; a folder already in
 * BF16 stays within 1e-6 (only the patch kernel, stored F16 as llama.cpp does, sums in another order). A wrong
 * layout moves them by more than 1: check_broken_variants shows that each bound fails a file with the patch
 * kernel's two frames swapped, and one with two DeepStack mergers' fc1 swapped. */
#define BF16_MAX_ABS_DIFF 2.5e-2
#define F16_MAX_ABS_DIFF 5e-3
#define Q8_0_MAX_ABS_DIFF 0.15

typedef struct images {
    vision_pixels px[2];
    int n;
    int64_t tokens;
} images;

/* Deterministic pixel values in [-1, 1]: a 4 x 6 patch grid and a 2 x 2 one, encoded together. */
static void make_images(const vit_config *c, images *im) {
    static const int32_t grids[2][2] = {{4, 6}, {2, 2}};
    uint32_t state = 12345;
    im->n = 2, im->tokens = 0;
    for (int i = 0; i < 2; i++) {
        vision_pixels *p = &im->px[i];
        memset(p, 0, sizeof *p);
        p->grid_t = 1, p->grid_h = grids[i][0], p->grid_w = grids[i][1];
        p->n_patches = (int64_t)p->grid_h * p->grid_w;
        p->patch_dim = (int64_t)c->in_channels * c->temporal_patch_size * c->patch_size * c->patch_size;
        p->pixel_values = malloc(sizeof(float) * (size_t)(p->n_patches * p->patch_dim));
        for (int64_t k = 0; k < p->n_patches * p->patch_dim; k++) {
            state = state * 1664525u + 1013904223u;
            p->pixel_values[k] = (float)(state >> 8) / (float)(1 << 23) - 1.0f;
        }
        im->tokens += vit_image_tokens(c, p);
    }
}

static void free_images(images *im) {
    for (int i = 0; i < im->n; i++) free(im->px[i].pixel_values);
}

/* Embeddings then DeepStack features of m on im, malloc'd; NULL (and a failed check) on an error. */
static float *encode(const vit_model *m, thread_pool *pool, const images *im, size_t *n) {
    const vit_config *c = vit_model_config(m);
    const size_t per = (size_t)im->tokens * (size_t)c->out_hidden;
    *n = per * (size_t)(1 + c->n_deepstack);
    float *out = malloc(sizeof(float) * *n);
    tandem_status st = vit_encode(m, pool, im->px, im->n, out, out + per);
    CHECK_OK(st);
    if (st) free(out), out = NULL;
    return out;
}

static tandem_status write_mmproj(const char *dir, thread_pool *pool, tandem_ftype type, const char *out) {
    st_set *set = NULL;
    tandem_status st = safetensors_open_dir(dir, &set);
    tandem_convert_params p = tandem_convert_default_params();
    p.mmproj_ftype = type;
    p.overwrite = true;
    if (!st) st = convert_vl_write_mmproj(dir, set, pool, out, &p);
    safetensors_close(set);
    return st;
}

/* A copy of the GGUF at in with one change: the kv key dropped or replaced (str_value: a string, else the u32
 * u32_value), the tensors named in swap (pairs) exchanging data, tensor drop left out, tensor reshape given its
 * ne reversed. */
typedef struct edit {
    const char *key, *str_value;
    uint32_t u32_value;
    bool replace;
    const char *swap[2], *drop, *reshape;
} edit;

static void rewrite(const char *in, const char *out, const edit *e) {
    gguf_file *f = NULL;
    gguf_writer *w = NULL;
    CHECK_OK(gguf_open(in, &f));
    CHECK_OK(gguf_writer_init(&w));
    if (!f || !w) return;
    for (int64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        if (e->key && !strcmp(kv->key, e->key)) {
            if (!e->replace) continue;
            if (e->str_value) CHECK_OK(gguf_writer_set_str(w, kv->key, e->str_value, strlen(e->str_value)));
            else CHECK_OK(gguf_writer_set_u32(w, kv->key, e->u32_value));
            continue;
        }
        CHECK_OK(gguf_writer_copy_kv(w, kv));
    }
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (e->drop && !strcmp(t->name, e->drop)) continue;
        const void *data = t->data;
        for (int s = 0; s < 2; s++)
            if (e->swap[s] && !strcmp(t->name, e->swap[s])) data = gguf_find_tensor(f, e->swap[1 - s])->data;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        if (e->reshape && !strcmp(t->name, e->reshape)) ne[0] = t->ne[1], ne[1] = t->ne[0];
        CHECK_OK(gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, ne, data));
    }
    CHECK_OK(gguf_writer_write(w, out));
    gguf_writer_free(w);
    gguf_close(f);
}

/* One folder: its mmproj at each type against the folder itself. */
static void check_folder(const char *golden, const char *name, thread_pool *pool, const char *tmp) {
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/vision/%s", golden, name);
    vit_model *hf = NULL;
    CHECK_OK(vit_load(dir, &hf));
    if (!hf) return;
    const vit_config *hc = vit_model_config(hf);
    images im;
    make_images(hc, &im);
    size_t n = 0;
    float *ref = encode(hf, pool, &im, &n);
    static const struct {
        tandem_ftype type;
        double bound; /* 0: equal to the bit */
    } TYPES[] = {{TANDEM_FTYPE_F32, 0},
                 {TANDEM_FTYPE_BF16, BF16_MAX_ABS_DIFF},
                 {TANDEM_FTYPE_F16, F16_MAX_ABS_DIFF},
                 {TANDEM_FTYPE_Q8_0, Q8_0_MAX_ABS_DIFF}};
    for (size_t k = 0; k < sizeof TYPES / sizeof *TYPES && ref; k++) {
        snprintf(path, sizeof path, "%s/%s-%s.gguf", tmp, name, tandem_ftype_name(TYPES[k].type));
        CHECK_OK(write_mmproj(dir, pool, TYPES[k].type, path));
        vit_model *g = NULL;
        CHECK_OK(vit_load_gguf(path, &g));
        if (!g) continue;
        const vit_config *gc = vit_model_config(g);
        CHECK_MSG(gc->depth == hc->depth && gc->hidden == hc->hidden && gc->n_heads == hc->n_heads &&
                      gc->head_dim == hc->head_dim && gc->ffn_dim == hc->ffn_dim &&
                      gc->in_channels == hc->in_channels && gc->patch_size == hc->patch_size &&
                      gc->temporal_patch_size == hc->temporal_patch_size && gc->merge_size == hc->merge_size &&
                      gc->out_hidden == hc->out_hidden && gc->n_positions == hc->n_positions &&
                      gc->position_side == hc->position_side && gc->n_deepstack == hc->n_deepstack &&
                      !memcmp(gc->deepstack_layers, hc->deepstack_layers, sizeof hc->deepstack_layers) &&
                      gc->activation == hc->activation && gc->rope_theta == hc->rope_theta &&
                      gc->norm_eps == hc->norm_eps,
                  "%s: the config read back differs from the folder's", path);
        size_t gn = 0;
        float *out = encode(g, pool, &im, &gn);
        if (out && gn == n) {
            const double d = max_abs_diff(out, ref, n);
            printf("%s %s: max |gguf - folder| %.3g\n", name, tandem_ftype_name(TYPES[k].type), d);
            if (TYPES[k].bound == 0) /* the same values through the same kernels */
                CHECK_MSG(memcmp(out, ref, sizeof(float) * n) == 0, "%s: not equal to the bit (%g)", path, d);
            else CHECK_MSG(d <= TYPES[k].bound, "%s: off by %g", path, d);
        }
        free(out);
        vit_free(g);
    }
    free(ref);
    free_images(&im);
    vit_free(hf);
}

/* The tolerances catch layout mistakes: swapped frame kernels and swapped DeepStack mergers exceed them. */
static void check_broken_variants(const char *golden, thread_pool *pool, const char *tmp) {
    char dir[1024], good[1200], bad[1200];
    snprintf(dir, sizeof dir, "%s/vision/vl_tied", golden);
    vit_model *hf = NULL;
    CHECK_OK(vit_load(dir, &hf));
    if (!hf) return;
    images im;
    make_images(vit_model_config(hf), &im);
    size_t n = 0;
    float *ref = encode(hf, pool, &im, &n);
    static const struct {
        tandem_ftype type;
        double bound;
    } TYPES[] = {{TANDEM_FTYPE_F16, F16_MAX_ABS_DIFF}, {TANDEM_FTYPE_Q8_0, Q8_0_MAX_ABS_DIFF}};
    const edit edits[] = {{.swap = {"v.patch_embd.weight", "v.patch_embd.weight.1"}},
                          {.swap = {"v.deepstack.1.fc1.weight", "v.deepstack.2.fc1.weight"}}};
    for (size_t k = 0; k < 2 && ref; k++) {
        snprintf(good, sizeof good, "%s/vl_tied-%s.gguf", tmp, tandem_ftype_name(TYPES[k].type));
        CHECK_OK(write_mmproj(dir, pool, TYPES[k].type, good));
        for (size_t e = 0; e < 2; e++) {
            snprintf(bad, sizeof bad, "%s/broken-%zu-%zu.gguf", tmp, k, e);
            rewrite(good, bad, &edits[e]);
            vit_model *g = NULL;
            CHECK_OK(vit_load_gguf(bad, &g));
            size_t gn = 0;
            float *out = g ? encode(g, pool, &im, &gn) : NULL;
            if (out && gn == n)
                CHECK_MSG(max_abs_diff(out, ref, n) > TYPES[k].bound, "%s: a broken file within the %s bound", bad,
                          tandem_ftype_name(TYPES[k].type));
            free(out);
            vit_free(g);
            unlink(bad);
        }
    }
    free(ref);
    free_images(&im);
    vit_free(hf);
}

/* Hostile or mismatched files: each a clear error naming the file and the key or tensor. */
static void check_bad_files(const char *tmp) {
    char good[1200], bad[1200];
    snprintf(good, sizeof good, "%s/vl_tied-F32.gguf", tmp);
    snprintf(bad, sizeof bad, "%s/bad.gguf", tmp);
    static const struct {
        edit e;
        tandem_status st;
        const char *needle;
    } cases[] = {
        {{.key = "clip.vision.block_count"}, TANDEM_ERR_FORMAT, "missing metadata key 'clip.vision.block_count'"},
        {{.key = "clip.vision.projection_dim"}, TANDEM_ERR_FORMAT, "missing metadata key 'clip.vision.projection_dim'"},
        {{.key = "clip.projector_type", .replace = true, .str_value = "mlp"},
         TANDEM_ERR_UNSUPPORTED,
         "clip.projector_type 'mlp' is not supported"},
        {{.key = "clip.projector_type"}, TANDEM_ERR_FORMAT, "missing metadata key 'clip.projector_type'"},
        {{.key = "general.architecture", .replace = true, .str_value = "qwen3vl"},
         TANDEM_ERR_FORMAT,
         "general.architecture is 'qwen3vl', not 'clip'"},
        {{.key = "clip.vision.embedding_length", .replace = true, .u32_value = 0},
         TANDEM_ERR_FORMAT,
         "'clip.vision.embedding_length' = 0 is out of range"},
        {{.key = "clip.vision.attention.head_count", .replace = true, .u32_value = 3},
         TANDEM_ERR_FORMAT,
         "must give heads whose size is a multiple of 4"},
        {{.key = "clip.vision.block_count", .replace = true, .u32_value = 3},
         TANDEM_ERR_FORMAT,
         "'clip.vision.is_deepstack_layers' must be an array of 3 bools"},
        {{.key = "clip.vision.is_deepstack_layers"}, TANDEM_OK, ""}, /* llama.cpp goes by the tensors too */
        {{.key = "clip.vision.image_size", .replace = true, .u32_value = 100},
         TANDEM_ERR_FORMAT,
         "clip.vision.image_size 100 is not a multiple of clip.vision.patch_size 16"},
        {{.key = "clip.vision.image_size", .replace = true, .u32_value = 160},
         TANDEM_ERR_FORMAT,
         "tensor 'v.position_embd.weight' has shape [64, 32], the clip.vision metadata implies [100, 32]"},
        {{.reshape = "v.blk.0.ffn_up.weight"},
         TANDEM_ERR_FORMAT,
         "tensor 'v.blk.0.ffn_up.weight' has shape [32, 64], the clip.vision metadata implies [64, 32]"},
        {{.drop = "v.deepstack.2.fc1.bias"}, TANDEM_ERR_FORMAT, "tensor 'v.deepstack.2.fc1.bias' is missing"},
        {{.drop = "v.deepstack.1.norm.weight"},
         TANDEM_ERR_FORMAT,
         "'clip.vision.is_deepstack_layers' flags block 1 but tensor 'v.deepstack.1.norm.weight' is missing"},
        {{.drop = "v.patch_embd.weight.1"}, TANDEM_ERR_FORMAT, "tensor 'v.patch_embd.weight.1' is missing"},
        {{.drop = "mm.2.weight"}, TANDEM_ERR_FORMAT, "tensor 'mm.2.weight' is missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rewrite(good, bad, &cases[i].e);
        vit_model *m = NULL;
        if (cases[i].st == TANDEM_OK) {
            CHECK_OK(vit_load_gguf(bad, &m));
        } else {
            CHECK_FAILS(vit_load_gguf(bad, &m), cases[i].st, cases[i].needle);
            CHECK_MSG(strstr(tandem_last_error(), bad) != NULL, "the message does not name the file: %s",
                      tandem_last_error());
            CHECK(m == NULL);
        }
        vit_free(m);
    }
    unlink(bad);
    vit_model *m = NULL;
    CHECK_FAILS(vit_load_gguf(bad, &m), TANDEM_ERR_IO, "bad.gguf");
}

/* The GGUF names of every transformers name, as reference §6.11 lists them. */
static void check_names(void) {
    vit_config c = {.depth = 27, .n_deepstack = 3, .deepstack_layers = {8, 16, 24}};
    static const char *const PAIRS[][2] = {
        {"patch_embed.proj.weight", "v.patch_embd.weight"},
        {"patch_embed.proj.bias", "v.patch_embd.bias"},
        {"pos_embed.weight", "v.position_embd.weight"},
        {"blocks.26.norm1.bias", "v.blk.26.ln1.bias"},
        {"blocks.0.norm2.weight", "v.blk.0.ln2.weight"},
        {"blocks.3.attn.qkv.weight", "v.blk.3.attn_qkv.weight"},
        {"blocks.3.attn.proj.bias", "v.blk.3.attn_out.bias"},
        {"blocks.12.mlp.linear_fc1.weight", "v.blk.12.ffn_up.weight"},
        {"blocks.12.mlp.linear_fc2.bias", "v.blk.12.ffn_down.bias"},
        {"merger.norm.weight", "v.post_ln.weight"},
        {"merger.linear_fc1.bias", "mm.0.bias"},
        {"merger.linear_fc2.weight", "mm.2.weight"},
        {"deepstack_merger_list.0.norm.bias", "v.deepstack.8.norm.bias"},
        {"deepstack_merger_list.2.linear_fc1.weight", "v.deepstack.24.fc1.weight"},
        {"deepstack_merger_list.1.linear_fc2.bias", "v.deepstack.16.fc2.bias"},
    };
    char out[96];
    for (size_t i = 0; i < sizeof PAIRS / sizeof *PAIRS; i++)
        CHECK_MSG(vit_gguf_tensor_name(&c, PAIRS[i][0], out, sizeof out) && !strcmp(out, PAIRS[i][1]), "%s -> %s",
                  PAIRS[i][0], out);
    CHECK(!vit_gguf_tensor_name(&c, "deepstack_merger_list.3.norm.bias", out, sizeof out));
    CHECK(!vit_gguf_tensor_name(&c, "blocks.1.attn.rope.weight", out, sizeof out));
    CHECK(!vit_gguf_tensor_name(&c, "merger.norm.weight", out, 8)); /* does not fit */
}

int main(int argc, char **argv) {
    const char *golden = argc > 1 ? argv[1] : "tests/golden";
    char tmp[] = "/tmp/test_vit_gguf_XXXXXX";
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "mkdtemp failed\n");
        return 1;
    }
    thread_pool *pool = NULL;
    CHECK_OK(thread_pool_create(2, &pool));
    check_names();
    check_folder(golden, "vl_tied", pool, tmp);
    check_folder(golden, "vl_untied", pool, tmp);
    check_broken_variants(golden, pool, tmp);
    check_bad_files(tmp);
    thread_pool_free(pool);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
    return test_summary();
}
