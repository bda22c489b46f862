/* vision.c — images in a prompt (Qwen3-VL): tandem_image (decoded and preprocessed), the processor's placeholder
 * expansion, and a prompt's evaluation with the vision tower's rows, DeepStack features and M-RoPE positions. */
#include <math.h>
#include <stdlib.h>

#include "hub.h"
#include "runtime.h"

struct tandem_image {
    vision_pixels px;
    char digest[DIGEST_HEX_MAX]; /* SHA-256 of what makes pixel_values: the encoded-image cache's key */
    int32_t width, height;       /* as decoded */
    int32_t tokens;              /* merged tokens: its rows in the prompt */
    int32_t grid_h, grid_w;      /* of merged tokens: its rows and columns */
};

tandem_image_params tandem_image_default_params(void) { return (tandem_image_params){0, 0}; }

bool tandem_model_has_vision(const tandem_model *model) { return model->vit != NULL; }

int32_t tandem_model_image_token(const tandem_model *model) { return model->vit ? model->image_token_id : -1; }

void tandem_image_free(tandem_image *img) {
    if (!img) return;
    vision_pixels_free(&img->px);
    free(img);
}

int32_t tandem_image_tokens(const tandem_image *img) { return img->tokens; }

void tandem_image_size(const tandem_image *img, int32_t *width, int32_t *height, int32_t *resized_width,
                       int32_t *resized_height) {
    if (width) *width = img->width;
    if (height) *height = img->height;
    if (resized_width) *resized_width = img->px.resized_width;
    if (resized_height) *resized_height = img->px.resized_height;
}

tandem_status vision_missing(const tandem_model *m, const char *where) {
    return tandem_fail(TANDEM_ERR_UNSUPPORTED,
                       "%s: %s has no vision tower (images need a Qwen3-VL model; a qwen3vl GGUF needs its mmproj "
                       "file: "
                       "tandem_model_params.mmproj_path)",
                       where, m->path);
}

tandem_status tandem_image_from_bytes(const tandem_model *model, const char *name, const void *data, size_t size,
                                      const tandem_image_params *params, tandem_image **out) {
    *out = NULL;
    if (!name) name = "image";
    if (!model->vit) {
        char where[320];
        snprintf(where, sizeof where, "tandem_image_load: %s", name);
        return vision_missing(model, where);
    }
    if (!data && size) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_image_load: %s: data is NULL", name);
    const tandem_image_params defaults = tandem_image_default_params();
    if (!params) params = &defaults;
    vision_preprocess_config cfg = model->preprocess;
    const int64_t cell = (int64_t)cfg.patch_size * cfg.merge_size * cfg.patch_size * cfg.merge_size;
    if (params->min_tokens < 0 || params->max_tokens < 0 ||
        (params->min_tokens && params->max_tokens && params->min_tokens > params->max_tokens))
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_image_load: tandem_image_params.min_tokens %d, max_tokens %d: must be ≥ 0, min ≤ "
                           "max",
                           params->min_tokens, params->max_tokens);
    if (params->min_tokens) cfg.min_pixels = params->min_tokens * cell;
    if (params->max_tokens) cfg.max_pixels = params->max_tokens * cell;
    if (cfg.min_pixels > cfg.max_pixels) cfg.min_pixels = cfg.max_pixels;
    tandem_image *img = calloc(1, sizeof *img);
    if (!img) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_image_load: out of memory");
    vision_rgb rgb = {0}, resized = {0};
    tandem_status st = vision_decode(name, data, size, NULL, &rgb);
    if (!st) st = vision_preprocess_keep(name, &rgb, &cfg, &img->px, &resized);
    img->width = rgb.width;
    img->height = rgb.height;
    vision_rgb_free(&rgb);
    if (!st && img->px.grid_t != 1)
        st = tandem_fail(TANDEM_ERR_UNSUPPORTED, "tandem_image_load: %s: grid_t %d (a video?)", name, img->px.grid_t);
    if (st) {
        vision_rgb_free(&resized);
        tandem_image_free(img);
        return st;
    }
    img->grid_h = img->px.grid_h / cfg.merge_size;
    img->grid_w = img->px.grid_w / cfg.merge_size;
    img->tokens = (int32_t)vit_image_tokens(vit_model_config(model->vit), &img->px);
    /* pixel_values are a function of the resized pixels and the preprocessing config: those are hashed (a byte per
     * value instead of a float per value and temporal frame) */
    digest d;
    digest_init(&d, DIGEST_SHA256);
    const int64_t shape[8] = {img->px.grid_t,    img->px.grid_h, img->px.grid_w, img->px.n_patches,
                              img->px.patch_dim, cfg.patch_size, cfg.merge_size, cfg.temporal_patch_size};
    const double scale[7] = {cfg.image_mean[0], cfg.image_mean[1], cfg.image_mean[2], cfg.image_std[0],
                             cfg.image_std[1],  cfg.image_std[2],  cfg.rescale_factor};
    digest_update(&d, shape, sizeof shape);
    digest_update(&d, scale, sizeof scale);
    digest_update(&d, &resized.width, sizeof resized.width);
    digest_update(&d, &resized.height, sizeof resized.height);
    digest_update(&d, resized.rgb, (size_t)resized.width * (size_t)resized.height * 3);
    vision_rgb_free(&resized);
    digest_hex(&d, img->digest);
    *out = img;
    return TANDEM_OK;
}

tandem_status tandem_image_from_patches(const tandem_model *model, const float *pixel_values, int64_t n_patches,
                                        int64_t patch_dim, int32_t grid_t, int32_t grid_h, int32_t grid_w,
                                        tandem_image **out) {
    *out = NULL;
    if (!model->vit) return vision_missing(model, "tandem_image_from_patches");
    const vit_config *c = vit_model_config(model->vit);
    const int64_t want_dim = (int64_t)c->in_channels * c->temporal_patch_size * c->patch_size * c->patch_size;
    if (!pixel_values) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_image_from_patches: pixel_values is NULL");
    if (patch_dim != want_dim)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_image_from_patches: patch_dim: %lld, the vision tower takes %lld (%d channels x "
                           "temporal patch %d x patch %d²)",
                           (long long)patch_dim, (long long)want_dim, c->in_channels, c->temporal_patch_size,
                           c->patch_size);
    if (grid_t != 1)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_image_from_patches: grid_t: %d, an image has 1 (videos are "
                           "not supported)",
                           grid_t);
    /* the side limit keeps every product below in range and is far beyond any pixel budget */
    if (grid_h <= 0 || grid_w <= 0 || grid_h % c->merge_size || grid_w % c->merge_size || grid_h > 4096 ||
        grid_w > 4096)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_image_from_patches: grid_h %d, grid_w %d: must be positive multiples of the merge "
                           "size %d, at most 4096",
                           grid_h, grid_w, c->merge_size);
    if (n_patches != (int64_t)grid_t * grid_h * grid_w)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_image_from_patches: n_patches: %lld, the grid %d x %d x %d has %lld",
                           (long long)n_patches, grid_t, grid_h, grid_w, (long long)grid_t * grid_h * grid_w);
    const size_t n = (size_t)n_patches * (size_t)patch_dim;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(pixel_values[i]))
            return tandem_fail(TANDEM_ERR_INVALID_ARG,
                               "tandem_image_from_patches: pixel_values[%zu][%zu] is not finite", i / (size_t)patch_dim,
                               i % (size_t)patch_dim);
    tandem_image *img = calloc(1, sizeof *img);
    float *copy = malloc(n * sizeof *copy);
    if (!img || !copy) {
        free(img);
        free(copy);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_image_from_patches: out of memory");
    }
    memcpy(copy, pixel_values, n * sizeof *copy);
    img->px = (vision_pixels){.pixel_values = copy,
                              .n_patches = n_patches,
                              .patch_dim = patch_dim,
                              .grid_t = grid_t,
                              .grid_h = grid_h,
                              .grid_w = grid_w,
                              .resized_height = grid_h * c->patch_size,
                              .resized_width = grid_w * c->patch_size};
    img->width = img->px.resized_width;
    img->height = img->px.resized_height;
    img->grid_h = grid_h / c->merge_size;
    img->grid_w = grid_w / c->merge_size;
    img->tokens = (int32_t)vit_image_tokens(c, &img->px);
    *out = img;
    return TANDEM_OK;
}

tandem_status tandem_image_load(const tandem_model *model, const char *path, const tandem_image_params *params,
                                tandem_image **out) {
    *out = NULL;
    if (!path) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_image_load: path is NULL");
    mapped_file mf;
    tandem_status st = mapped_file_open(path, &mf);
    if (st) return st;
    st = tandem_image_from_bytes(model, path, mf.data, mf.size, params, out);
    mapped_file_close(&mf);
    return st;
}

tandem_status tandem_vl_prompt(const tandem_model *model, const char *text, size_t len,
                               const tandem_image *const *images, int32_t n_images, int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (n_images < 0 || (n_images > 0 && !images))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_vl_prompt: n_images %d without images", n_images);
    for (int32_t i = 0; i < n_images; i++)
        if (!images[i]) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_vl_prompt: images[%d] is NULL", i);
    int32_t *tok;
    size_t n_tok;
    tandem_status st = tandem_tokenizer_encode(model->tokenizer, text, len, true, &tok, &n_tok);
    if (st) return st;
    const int32_t pad = model->image_token_id;
    size_t n_out = n_tok;
    int32_t found = 0;
    for (size_t i = 0; i < n_tok; i++) {
        if (tok[i] != pad) continue;
        if (found < n_images) n_out += (size_t)images[found]->tokens - 1;
        found++;
    }
    if (found != n_images) {
        free(tok);
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_vl_prompt: the text holds %d image placeholder%s (<|image_pad|>, id %d) for %d "
                           "image%s",
                           found, found == 1 ? "" : "s", pad, n_images, n_images == 1 ? "" : "s");
    }
    int32_t *out = malloc((n_out ? n_out : 1) * sizeof *out);
    if (!out) {
        free(tok);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_vl_prompt: out of memory");
    }
    size_t k = 0;
    for (size_t i = 0, image = 0; i < n_tok; i++) {
        const int32_t repeat = tok[i] == pad ? images[image++]->tokens : 1;
        for (int32_t r = 0; r < repeat; r++) out[k++] = tok[i];
    }
    free(tok);
    *ids = out;
    *n_ids = n_out;
    return TANDEM_OK;
}

/* ---- a prompt with images ---- */

struct vl_prompt {
    tandem_model *model;
    int32_t n_deepstack, dim;
    size_t n_prompt;
    int32_t *ids;           /* (n_prompt) the prompt with −1 at image tokens: qwen3_batch's "an embedding row" */
    int32_t *feature_row;   /* (n_prompt) an image token's row of embeds / deepstack, −1 for text */
    int32_t *pos;           /* (n_prompt, 3) M-RoPE positions (t, h, w) */
    int32_t next_pos;       /* the position of the token after the prompt */
    float *embeds;          /* (image tokens, dim) the vision tower's rows */
    float *deepstack;       /* (n_deepstack, image tokens, dim) */
    int64_t n_features;     /* image tokens */
    float *batch_embd;      /* (n_batch, dim) one pass's rows (tandem_generate's; an engine batches its own) */
    float *batch_deepstack; /* (n_deepstack, n_batch, dim) */
    const tandem_image *const *images; /* (n_images) borrowed */
    int32_t n_images;
    size_t *image_at;     /* (n_images) each image's first token in the prompt */
    int64_t *image_first; /* (n_images) its first row of embeds */
    bool *encoded;        /* (n_images) its rows are in embeds / deepstack */
};

void vl_prompt_free(vl_prompt *p) {
    if (!p) return;
    free(p->ids);
    free(p->feature_row);
    free(p->pos);
    free(p->embeds);
    free(p->deepstack);
    free(p->batch_embd);
    free(p->batch_deepstack);
    free(p->image_at);
    free(p->image_first);
    free(p->encoded);
    free(p);
}

/* transformers' get_rope_index for one prompt starting at position start: text tokens (s, s, s) and s + 1 next; an
 * image's run of gh x gw tokens at s: (s, s + r, s + c) in raster order, then s + max(gh, gw) next. Checks that the
 * runs of image_token_id are the images (count and lengths). */
static tandem_status plan_positions(vl_prompt *p, const int32_t *prompt, size_t n, int32_t image_token_id,
                                    const tandem_image *const *images, int32_t n_images, int32_t start) {
    int32_t next = start, image = 0;
    int64_t feature = 0;
    for (size_t i = 0; i < n;) {
        if (prompt[i] != image_token_id) {
            p->ids[i] = prompt[i];
            p->feature_row[i] = -1;
            for (int a = 0; a < 3; a++) p->pos[i * 3 + a] = next;
            next++;
            i++;
            continue;
        }
        size_t run = 0;
        while (i + run < n && prompt[i + run] == image_token_id) run++;
        if (image >= n_images)
            return tandem_fail(TANDEM_ERR_INVALID_ARG,
                               "tandem_generate: the prompt has more <|image_pad|> runs than the %d image%s of "
                               "tandem_gen_params.images",
                               n_images, n_images == 1 ? "" : "s");
        const tandem_image *img = images[image];
        if (run != (size_t)img->tokens)
            return tandem_fail(TANDEM_ERR_INVALID_ARG,
                               "tandem_generate: image %d takes %d tokens but its <|image_pad|> run in the prompt has "
                               "%zu (build the prompt with tandem_vl_prompt)",
                               image, img->tokens, run);
        p->image_at[image] = i;
        p->image_first[image] = feature;
        for (int32_t r = 0, t = 0; r < img->grid_h; r++)
            for (int32_t c = 0; c < img->grid_w; c++, t++) {
                const size_t k = i + (size_t)t;
                p->ids[k] = -1;
                p->feature_row[k] = (int32_t)(feature + t);
                p->pos[k * 3 + 0] = next;
                p->pos[k * 3 + 1] = next + r;
                p->pos[k * 3 + 2] = next + c;
            }
        next += img->grid_h > img->grid_w ? img->grid_h : img->grid_w;
        feature += img->tokens;
        i += run;
        image++;
    }
    if (image != n_images)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_generate: tandem_gen_params.images has %d image%s but the prompt places %d (build "
                           "the prompt with tandem_vl_prompt)",
                           n_images, n_images == 1 ? "" : "s", image);
    p->next_pos = next;
    p->n_features = feature;
    return TANDEM_OK;
}

/* embeds and deepstack for the prompt's image tokens */
static tandem_status features_alloc(vl_prompt *p) {
    if (p->embeds) return TANDEM_OK;
    const size_t features = (size_t)(p->n_features ? p->n_features : 1), dim = (size_t)p->dim;
    const size_t sets = (size_t)(p->n_deepstack ? p->n_deepstack : 1);
    p->embeds = malloc(features * dim * sizeof(float));
    p->deepstack = malloc(sets * features * dim * sizeof(float));
    if (p->embeds && p->deepstack) return TANDEM_OK;
    free(p->embeds);
    free(p->deepstack);
    p->embeds = p->deepstack = NULL;
    return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_generate: out of memory for %lld image tokens",
                       (long long)p->n_features);
}

tandem_status vl_prompt_plan(tandem_model *m, const int32_t *prompt, size_t n_prompt,
                             const struct tandem_image *const *images, int32_t n_images, int32_t start, int32_t n_batch,
                             vl_prompt **out) {
    *out = NULL;
    if (!m->vit) return vision_missing(m, "tandem_generate: tandem_gen_params.images");
    if (n_images < 0 || !images)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_generate: tandem_gen_params.n_images %d without images",
                           n_images);
    for (int32_t i = 0; i < n_images; i++)
        if (!images[i])
            return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_generate: tandem_gen_params.images[%d] is NULL", i);
    const qwen3_config *c = &m->qwen.cfg;
    const size_t n = n_prompt ? n_prompt : 1, n_img = (size_t)(n_images ? n_images : 1);
    vl_prompt *p = calloc(1, sizeof *p);
    if (!p) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_generate: out of memory");
    p->model = m;
    p->n_deepstack = c->n_deepstack;
    p->dim = c->dim;
    p->n_prompt = n_prompt;
    p->images = images;
    p->n_images = n_images;
    p->ids = malloc(n * sizeof *p->ids);
    p->feature_row = malloc(n * sizeof *p->feature_row);
    p->pos = malloc(n * 3 * sizeof *p->pos);
    p->image_at = malloc(n_img * sizeof *p->image_at);
    p->image_first = malloc(n_img * sizeof *p->image_first);
    p->encoded = calloc(n_img, sizeof *p->encoded);
    tandem_status st = !p->ids || !p->feature_row || !p->pos || !p->image_at || !p->image_first || !p->encoded
                           ? tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_generate: out of memory")
                           : plan_positions(p, prompt, n_prompt, m->image_token_id, images, n_images, start);
    if (st) goto fail;
    const size_t dim = (size_t)c->dim, sets = (size_t)(c->n_deepstack ? c->n_deepstack : 1);
    if (n_batch > 0) { /* tandem_generate's: the features now; an engine's wait for the first image it encodes */
        if ((st = features_alloc(p))) goto fail;
        p->batch_embd = malloc((size_t)n_batch * dim * sizeof(float));
        p->batch_deepstack = malloc(sets * (size_t)n_batch * dim * sizeof(float));
        if (!p->batch_embd || !p->batch_deepstack) {
            st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_generate: out of memory");
            goto fail;
        }
    }
    *out = p;
    return TANDEM_OK;
fail:
    vl_prompt_free(p);
    return st;
}

tandem_status vl_prompt_init(tandem_ctx *ctx, const int32_t *prompt, size_t n_prompt,
                             const struct tandem_image *const *images, int32_t n_images, vl_prompt **out) {
    tandem_model *m = ctx->model;
    vl_prompt *p;
    tandem_status st = vl_prompt_plan(m, prompt, n_prompt, images, n_images, ctx->n_past + ctx->pos_delta,
                                      ctx->scratch->n_batch, &p);
    if (st) return st;
    if (n_images > 0) { /* all images in one pass of the tower */
        vision_pixels *px = malloc((size_t)n_images * sizeof *px);
        if (!px) {
            vl_prompt_free(p);
            return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_generate: out of memory");
        }
        for (int32_t i = 0; i < n_images; i++) px[i] = images[i]->px;
        st = vit_encode(m->vit, m->pool, px, n_images, p->embeds, p->n_deepstack ? p->deepstack : NULL);
        free(px);
        if (st) {
            vl_prompt_free(p);
            return st;
        }
        for (int32_t i = 0; i < n_images; i++) p->encoded[i] = true;
    }
    *out = p;
    return TANDEM_OK;
}

const int32_t *vl_prompt_positions(const vl_prompt *p) { return p->pos; }
const int32_t *vl_prompt_ids(const vl_prompt *p) { return p->ids; }
int32_t vl_prompt_next_pos(const vl_prompt *p) { return p->next_pos; }
int32_t vl_prompt_n_images(const vl_prompt *p) { return p->n_images; }

void vl_prompt_image_span(const vl_prompt *p, int32_t i, size_t *at, int32_t *tokens, const char **hex) {
    if (at) *at = p->image_at[i];
    if (tokens) *tokens = p->images[i]->tokens;
    if (hex) *hex = p->images[i]->digest;
}

bool vl_prompt_image_encoded(const vl_prompt *p, int32_t i) { return p->encoded[i]; }

size_t vl_prompt_image_floats(const vl_prompt *p, int32_t i) {
    return (size_t)p->images[i]->tokens * (size_t)p->dim * (size_t)(1 + p->n_deepstack);
}

/* image i's rows of embeds and of each DeepStack set, to (store) or from (load) one block: embeds then the sets */
static void image_rows_copy(vl_prompt *p, int32_t i, float *block, bool store) {
    const size_t rows = (size_t)p->images[i]->tokens * (size_t)p->dim, first = (size_t)p->image_first[i] * p->dim;
    for (int32_t j = -1; j < p->n_deepstack; j++) {
        float *at = j < 0 ? p->embeds + first : p->deepstack + (size_t)j * (size_t)p->n_features * p->dim + first;
        float *b = block + (size_t)(j + 1) * rows;
        if (store) memcpy(b, at, rows * sizeof(float));
        else memcpy(at, b, rows * sizeof(float));
    }
}

void vl_prompt_image_store(const vl_prompt *p, int32_t i, float *block) {
    image_rows_copy((vl_prompt *)p, i, block, true);
}

tandem_status vl_prompt_image_load(vl_prompt *p, int32_t i, const float *block) {
    tandem_status st = features_alloc(p);
    if (st) return st;
    image_rows_copy(p, i, (float *)block, false);
    p->encoded[i] = true;
    return TANDEM_OK;
}

tandem_status vl_prompt_encode_image(vl_prompt *p, thread_pool *pool, int32_t i) {
    tandem_model *m = p->model;
    const int32_t tokens = p->images[i]->tokens;
    const size_t rows = (size_t)tokens * (size_t)p->dim;
    tandem_status st = features_alloc(p);
    if (st) return st;
    float *deep = p->n_deepstack ? malloc((size_t)p->n_deepstack * rows * sizeof(float)) : NULL;
    if (p->n_deepstack && !deep) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_generate: out of memory");
    st = vit_encode(m->vit, pool, &p->images[i]->px, 1, p->embeds + (size_t)p->image_first[i] * p->dim, deep);
    for (int32_t j = 0; !st && j < p->n_deepstack; j++) /* the sets are (n_deepstack, image tokens) in the prompt */
        memcpy(p->deepstack + ((size_t)j * (size_t)p->n_features + (size_t)p->image_first[i]) * p->dim,
               deep + (size_t)j * rows, rows * sizeof(float));
    free(deep);
    if (!st) p->encoded[i] = true;
    return st;
}

void vl_prompt_fill_rows(const vl_prompt *p, size_t from, int32_t n, int32_t batch_at, int32_t batch_n, float *embd,
                         float *deepstack) {
    const size_t dim = (size_t)p->dim;
    for (int32_t t = 0; t < n; t++) {
        const int32_t row = p->feature_row[from + (size_t)t];
        if (row < 0) continue;
        const size_t b = (size_t)(batch_at + t);
        memcpy(embd + b * dim, p->embeds + (size_t)row * dim, dim * sizeof(float));
        for (int32_t j = 0; j < p->n_deepstack; j++)
            memcpy(deepstack + ((size_t)j * (size_t)batch_n + b) * dim,
                   p->deepstack + ((size_t)j * (size_t)p->n_features + (size_t)row) * dim, dim * sizeof(float));
    }
}

void vl_prompt_advance(tandem_ctx *ctx, const vl_prompt *p, size_t from, int32_t n) {
    /* the cache keeps the ids as the prompt has them: <|image_pad|> at image rows */
    for (int32_t t = 0; t < n; t++) {
        const int32_t id = p->ids[from + (size_t)t];
        ctx->tokens[ctx->n_past + t] = id >= 0 ? id : ctx->model->image_token_id;
    }
    /* each row's continuation position, for a later cut (tandem_ctx_truncate) */
    for (int32_t t = 0; t < n; t++) {
        const int32_t row = ctx->n_past + t, *q = p->pos + (from + (size_t)t) * 3;
        if (ctx->first_image_row < 0 && p->feature_row[from + (size_t)t] >= 0) ctx->first_image_row = row;
        int32_t next = (q[0] > q[1] ? (q[0] > q[2] ? q[0] : q[2]) : (q[1] > q[2] ? q[1] : q[2])) + 1;
        if (row > 0 && ctx->first_image_row >= 0 && row > ctx->first_image_row && ctx->next_pos[row - 1] > next)
            next = ctx->next_pos[row - 1];
        ctx->next_pos[row] = next;
    }
    ctx->n_past += n;
    ctx->has_logits = true;
    /* later rows continue after the images: position = row + delta (the plan's for the prompt's own rows) */
    const size_t next = from + (size_t)n;
    ctx->pos_delta = (next < p->n_prompt ? p->pos[next * 3] : p->next_pos) - ctx->n_past;
}

tandem_status vl_prompt_eval(tandem_ctx *ctx, vl_prompt *p, size_t from, int32_t n, float *logits) {
    const qwen3_model *qm = &ctx->model->qwen;
    TANDEM_ASSERT(n >= 1 && n <= ctx->scratch->n_batch && n <= ctx->cache->n_ctx - ctx->n_past);
    vl_prompt_fill_rows(p, from, n, 0, n, p->batch_embd, p->batch_deepstack);
    qwen3_batch b = qwen3_sequence_batch(ctx->scratch, ctx->cache, p->ids + from, n, ctx->n_past, !logits);
    b.embd = p->batch_embd;
    b.n_pos = 3;
    b.pos = p->pos + from * 3;
    b.deepstack = p->n_deepstack ? p->batch_deepstack : NULL;
    const size_t V = (size_t)qm->cfg.vocab_size;
    qwen3_forward(qm, ctx->scratch, ctx->model->pool, &b, logits ? logits : ctx->logits);
    if (logits) memcpy(ctx->logits, logits + (size_t)(n - 1) * V, V * sizeof(float));
    if (!all_finite_f32(ctx->logits, qm->cfg.vocab_size)) {
        ctx->has_logits = false;
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: the logits of a prompt with images are not finite",
                           ctx->model->path);
    }
    vl_prompt_advance(ctx, p, from, n);
    return TANDEM_OK;
}
