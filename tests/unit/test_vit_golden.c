/* test_vit_golden.c — src/vision/vit.c against transformers' Qwen3VLVisionModel (tests/gen/make_vl_golden.py): image
 * embeddings and DeepStack features of tiny random-weight towers; bad vision_config fields and pixels give errors. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "golden.h"
#include "image.h"
#include "kernels.h"
#include "test.h"
#include "vit.h"

/* Tolerance: the C pass and transformers' both compute in float32 but sum in different orders (SIMD lanes vs
 * PyTorch's kernels), so each product, norm and softmax differs by a few ulp, and through the blocks the outputs
 * (of magnitude ~1.5) end a few 1e-6 apart, on the SIMD and the scalar kernels alike. Mistakes are far larger; tried
 * by hand against this bound when it was set: erf GELU in place of the tanh form in the blocks moves the outputs by
 * ~2e-4, half-pixel instead of align-corners interpolation of the position table by ~0.7, the row index on both
 * rotary axes by ~0.2. */
#define MAX_ABS_DIFF 2e-5

static size_t bytes_of(const vision_pixels *px) { return (size_t)(px->n_patches * px->patch_dim) * sizeof(float); }

/* The golden pixel_values of an image, and the same computed by src/vision/image.c from the image file with the
 * model's preprocessor_config.json: they must be equal to the bit. */
static bool load_pixels(const char *golden, const char *model_dir, const json_t *image, vision_pixels *px) {
    const char *file = json_string_value(json_object_get(image, "file"));
    const json_t *thw = json_object_get(image, "grid_thw");
    memset(px, 0, sizeof *px);
    px->grid_t = (int32_t)json_integer_value(json_array_get(thw, 0));
    px->grid_h = (int32_t)json_integer_value(json_array_get(thw, 1));
    px->grid_w = (int32_t)json_integer_value(json_array_get(thw, 2));
    px->n_patches = json_integer_value(json_object_get(image, "n_patches"));
    px->patch_dim = json_integer_value(json_object_get(image, "patch_dim"));
    char path[2200];
    snprintf(path, sizeof path, "%s/vision/%s.pixels.f32", golden, file);
    size_t size = 0;
    px->pixel_values = read_golden_file(path, &size);
    CHECK_MSG(px->pixel_values && size == bytes_of(px), "%s: missing or of the wrong size", path);
    if (!px->pixel_values || size != bytes_of(px)) return false;

    snprintf(path, sizeof path, "%s/images/%s", golden, file);
    uint8_t *bytes = read_golden_file(path, &size);
    vision_rgb rgb = {0};
    vision_pixels mine = {0};
    vision_preprocess_config cfg;
    snprintf(path, sizeof path, "%s/preprocessor_config.json", model_dir);
    CHECK_OK(vision_preprocess_config_load(path, &cfg));
    CHECK(bytes != NULL);
    if (bytes && vision_decode(file, bytes, size, NULL, &rgb) == TANDEM_OK &&
        vision_preprocess(file, &rgb, &cfg, &mine) == TANDEM_OK) {
        CHECK_MSG(mine.grid_t == px->grid_t && mine.grid_h == px->grid_h && mine.grid_w == px->grid_w &&
                      mine.n_patches == px->n_patches && mine.patch_dim == px->patch_dim &&
                      memcmp(mine.pixel_values, px->pixel_values, bytes_of(px)) == 0,
                  "%s: pixel_values differ from transformers'", file);
    } else {
        CHECK_MSG(false, "%s: %s", file, tandem_last_error());
    }
    vision_pixels_free(&mine);
    vision_rgb_free(&rgb);
    free(bytes);
    return true;
}

static const json_t *find_image(const json_t *doc, const char *file) {
    const json_t *images = json_object_get(doc, "images");
    for (size_t i = 0; i < json_array_size(images); i++)
        if (!strcmp(json_string_value(json_object_get(json_array_get(images, i), "file")), file))
            return json_array_get(images, i);
    return NULL;
}

/* One model's cases: embeddings and DeepStack features against the goldens within MAX_ABS_DIFF, on the pool and on
 * one thread (the same bits: rows are never split between threads) and on the scalar kernels. */
static void check_model(const char *golden, const json_t *doc, const json_t *model, thread_pool *pool) {
    const char *name = json_string_value(json_object_get(model, "model"));
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/vision/%s", golden, name);
    vit_model *m = NULL;
    CHECK_OK(vit_load(dir, &m));
    if (!m) return;
    const vit_config *c = vit_model_config(m);
    const json_t *cases = json_object_get(model, "cases");
    for (size_t k = 0; k < json_array_size(cases); k++) {
        const json_t *cs = json_array_get(cases, k);
        const char *cname = json_string_value(json_object_get(cs, "case"));
        const json_t *files = json_object_get(cs, "images");
        const int n_images = (int)json_array_size(files);
        vision_pixels px[4];
        int loaded = 0;
        bool ok = n_images <= 4;
        for (int i = 0; ok && i < n_images; i++) {
            const json_t *img = find_image(doc, json_string_value(json_array_get(files, (size_t)i)));
            ok = img && load_pixels(golden, dir, img, &px[i]);
            loaded += ok;
        }
        const int64_t tokens = json_integer_value(json_object_get(cs, "n_tokens"));
        const int n_ds = (int)json_integer_value(json_object_get(cs, "n_deepstack"));
        CHECK_MSG(ok && n_ds == c->n_deepstack &&
                      json_integer_value(json_object_get(cs, "out_hidden")) == c->out_hidden,
                  "%s/%s: golden case does not match the model", name, cname);
        int64_t mine = 0;
        for (int i = 0; i < loaded; i++) mine += vit_image_tokens(c, &px[i]);
        CHECK(mine == tokens);
        if (ok && mine == tokens && n_ds == c->n_deepstack) {
            const size_t n = (size_t)tokens * (size_t)c->out_hidden, total = n * (size_t)(1 + n_ds);
            float *ref = malloc(sizeof(float) * total), *out = malloc(sizeof(float) * total);
            float *one = malloc(sizeof(float) * total), *scalar = malloc(sizeof(float) * total);
            for (int j = -1; j < n_ds; j++) {
                size_t size = 0;
                if (j < 0) snprintf(path, sizeof path, "%s/%s.embeds.f32", dir, cname);
                else snprintf(path, sizeof path, "%s/%s.deepstack%d.f32", dir, cname, j);
                float *f = read_golden_file(path, &size);
                CHECK_MSG(f && size == n * sizeof(float), "%s: missing or of the wrong size", path);
                if (f && size == n * sizeof(float)) memcpy(ref + (size_t)(j + 1) * n, f, size);
                free(f);
            }
            CHECK_OK(vit_encode(m, pool, px, n_images, out, out + n));
            CHECK_OK(vit_encode(m, NULL, px, n_images, one, one + n));
            CHECK_MSG(memcmp(out, one, sizeof(float) * total) == 0,
                      "%s/%s: the pool's result differs from one "
                      "thread's",
                      name, cname);
            CHECK(kernel_isa_select("scalar"));
            CHECK_OK(vit_encode(m, pool, px, n_images, scalar, scalar + n));
            kernel_isa_select(NULL);
            for (int j = -1; j < n_ds; j++) {
                const size_t at = (size_t)(j + 1) * n;
                const double d = max_abs_diff(out + at, ref + at, n), ds = max_abs_diff(scalar + at, ref + at, n);
                char what[32] = "embeds";
                if (j >= 0) snprintf(what, sizeof what, "deepstack%d", j);
                printf("%s/%s %s: max |C - transformers| %.2g (%s), %.2g (scalar)\n", name, cname, what, d,
                       kernel_isa_name(), ds);
                CHECK_MSG(d <= MAX_ABS_DIFF && ds <= MAX_ABS_DIFF, "%s/%s %s: off by %g (%g scalar)", name, cname, what,
                          d, ds);
            }
            free(ref), free(out), free(one), free(scalar);
        }
        for (int i = 0; i < loaded; i++) free(px[i].pixel_values);
    }
    /* pixels that do not fit the tower: a grid side not a multiple of the merge size, a short patch */
    vision_pixels bad = {.pixel_values = calloc(6 * 1536, sizeof(float)),
                         .n_patches = 6,
                         .patch_dim = 1536,
                         .grid_t = 1,
                         .grid_h = 2,
                         .grid_w = 3};
    float out[64 * 4];
    CHECK_FAILS(vit_encode(m, pool, &bad, 1, out, NULL), TANDEM_ERR_INVALID_ARG, "do not fit the vision tower");
    bad.grid_w = 2, bad.n_patches = 4, bad.patch_dim = 768;
    CHECK_FAILS(vit_encode(m, pool, &bad, 1, out, NULL), TANDEM_ERR_INVALID_ARG, "patches of 1536 values");
    free(bad.pixel_values);
    vit_free(m);
}

/* vision_config fields that are missing, of the wrong type or out of range, and unsupported settings, each a clear
 * error naming the field. */
static void check_bad_configs(void) {
    static const struct {
        const char *json, *needle;
        tandem_status st;
    } bad[] = {
        {"{\"model_type\": \"qwen3\"}", "missing field 'vision_config'", TANDEM_ERR_FORMAT},
        {"{\"vision_config\": 3}", "'vision_config' must be an object", TANDEM_ERR_FORMAT},
        {"{\"vision_config\": {\"depth\": \"four\"}}", "vision_config.depth must be an integer", TANDEM_ERR_FORMAT},
        {"{\"vision_config\": {\"depth\": 0}}", "vision_config.depth = 0 is out of range", TANDEM_ERR_FORMAT},
        {"{\"vision_config\": {\"patch_size\": [16, 16]}}", "vision_config.patch_size must be an integer",
         TANDEM_ERR_FORMAT},
        {"{\"vision_config\": {\"hidden_size\": 30, \"num_heads\": 4}}", "not a multiple of num_heads",
         TANDEM_ERR_FORMAT},
        {"{\"vision_config\": {\"hidden_size\": 12, \"num_heads\": 2}}", "must be a multiple of 4", TANDEM_ERR_FORMAT},
        {"{\"vision_config\": {\"num_position_embeddings\": 50}}",
         "num_position_embeddings = 50 is not a perfect "
         "square",
         TANDEM_ERR_FORMAT},
        {"{\"vision_config\": {\"depth\": 4, \"deepstack_visual_indexes\": [1, 4]}}",
         "deepstack_visual_indexes[1] is not a block index", TANDEM_ERR_FORMAT},
        {"{\"vision_config\": {\"depth\": 4, \"deepstack_visual_indexes\": [1, 1]}}", "lists block 1 twice",
         TANDEM_ERR_FORMAT},
        {"{\"vision_config\": {\"depth\": 4, \"deepstack_visual_indexes\": 2}}", "must be a list", TANDEM_ERR_FORMAT},
        {"{\"vision_config\": {\"depth\": 4, \"deepstack_visual_indexes\": [-1]}}", "[0] is not a block index",
         TANDEM_ERR_FORMAT},
        {"{\"vision_config\": {\"hidden_act\": \"relu\"}}", "hidden_act 'relu' is not supported",
         TANDEM_ERR_UNSUPPORTED},
        {"{\"vision_config\": {\"hidden_act\": 1}}", "hidden_act must be a string", TANDEM_ERR_FORMAT},
        {"{\"vision_config\": {\"rope_parameters\": {\"rope_type\": \"default\"}}}", "only 'axial'",
         TANDEM_ERR_UNSUPPORTED},
        {"{\"vision_config\": {\"rope_parameters\": {\"rope_theta\": -1}}}", "rope_theta must be a positive",
         TANDEM_ERR_FORMAT},
        {"{\"vision_config\": {\"model_type\": \"siglip_vision_model\"}}", "model_type 'siglip_vision_model'",
         TANDEM_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *root = json_loads(bad[i].json, 0, NULL);
        vit_config c;
        CHECK(root != NULL);
        CHECK_FAILS(vit_config_from_json_value("config.json", root, &c), bad[i].st, bad[i].needle);
        CHECK_MSG(strstr(tandem_last_error(), "config.json: ") == tandem_last_error(), "%s", tandem_last_error());
        json_decref(root);
    }
    /* transformers' defaults for absent fields: the 8B-sized tower */
    json_t *root = json_loads("{\"vision_config\": {}}", 0, NULL);
    vit_config c;
    CHECK_OK(vit_config_from_json_value("config.json", root, &c));
    CHECK(c.depth == 27 && c.hidden == 1152 && c.head_dim == 72 && c.ffn_dim == 4304 && c.position_side == 48 &&
          c.n_deepstack == 3 && c.deepstack_layers[2] == 24 && c.activation == VIT_GELU_TANH &&
          c.rope_theta == 10000.0f);
    json_decref(root);
}

/* A folder whose config.json does not match its weights: the first tensor of another shape is named. */
static void check_mismatched_weights(const char *golden) {
    char dir[] = "/tmp/test_vit_XXXXXX", path[1200], weights[1200];
    if (!mkdtemp(dir)) {
        CHECK_MSG(false, "mkdtemp failed");
        return;
    }
    snprintf(weights, sizeof weights, "%s/vision/vl_tied/model.safetensors", golden);
    char *abs = realpath(weights, NULL);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(abs && symlink(abs, path) == 0);
    free(abs);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(
            "{\"vision_config\": {\"depth\": 4, \"hidden_size\": 32, \"num_heads\": 2, \"intermediate_size\": 80, "
            "\"num_position_embeddings\": 64, \"out_hidden_size\": 32, \"deepstack_visual_indexes\": [1, 2]}}",
            f);
        fclose(f);
    }
    vit_model *m = NULL;
    CHECK_FAILS(vit_load(dir, &m), TANDEM_ERR_FORMAT,
                "tensor 'model.visual.blocks.0.mlp.linear_fc1.weight' has shape [64, 32], vision_config implies [80, "
                "32]");
    CHECK(m == NULL);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv) {
    const char *golden = argc > 1 ? argv[1] : "tests/golden";
    char path[1024];
    snprintf(path, sizeof path, "%s/vision/cases.json", golden);
    json_error_t err;
    json_t *doc = json_load_file(path, 0, &err);
    CHECK_MSG(doc != NULL, "%s: %s", path, err.text);
    thread_pool *pool = NULL;
    CHECK_OK(thread_pool_create(2, &pool));
    const json_t *models = json_object_get(doc, "models");
    CHECK(json_array_size(models) == 2);
    for (size_t i = 0; i < json_array_size(models); i++) check_model(golden, doc, json_array_get(models, i), pool);
    check_bad_configs();
    check_mismatched_weights(golden);
    thread_pool_free(pool);
    json_decref(doc);
    return test_summary();
}
