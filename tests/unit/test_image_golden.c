/* test_image_golden.c — src/vision/image.c against Pillow and transformers (tests/gen/make_image_golden.py): decoded
 * RGB, Pillow's bicubic resize, smart_resize, pixel_values and grid; bad input (bombs, truncation) gives errors. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "golden.h"
#include "image.h"
#include "test.h"

static uint8_t *read_all(const char *dir, const char *name, const char *suffix, size_t *size) {
    char path[1024];
    snprintf(path, sizeof path, "%s/images/%s%s", dir, name, suffix);
    return read_golden_file(path, size);
}

/* Largest per-byte difference, or -1 when the sizes differ. */
static int max_diff(const uint8_t *a, const uint8_t *b, size_t n) {
    int worst = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > worst) worst = d;
    }
    return worst;
}

static void check_case(const char *dir, json_t *c, int64_t min_pixels, int64_t max_pixels) {
    const char *file = json_string_value(json_object_get(c, "file"));
    int w = (int)json_integer_value(json_object_get(c, "width"));
    int h = (int)json_integer_value(json_object_get(c, "height"));
    int rw = (int)json_integer_value(json_object_get(c, "resized_width"));
    int rh = (int)json_integer_value(json_object_get(c, "resized_height"));
    size_t n_img, n_dec, n_res;
    uint8_t *img = read_all(dir, file, "", &n_img), *dec = read_all(dir, file, ".decoded.rgb", &n_dec),
            *res = read_all(dir, file, ".resized.rgb", &n_res);
    CHECK_MSG(img && dec && res, "%s: golden files missing", file);
    if (!img || !dec || !res) goto done;
    vision_rgb rgb;
    tandem_status st = vision_decode(file, img, n_img, NULL, &rgb);
    CHECK_MSG(st == TANDEM_OK, "%s: %s", file, tandem_last_error());
    if (st != TANDEM_OK) goto done;
    CHECK_MSG(rgb.width == w && rgb.height == h, "%s: %d x %d, Pillow %d x %d", file, rgb.width, rgb.height, w, h);
    bool lossy = strstr(file, ".jpg") || strstr(file, "lossy");
    if (rgb.width == w && rgb.height == h && n_dec == (size_t)w * h * 3) {
        int d = max_diff(rgb.rgb, dec, n_dec);
        /* Pillow bundles a newer libjpeg-turbo and libwebp than Debian's; their integer IDCT and YUV->RGB match */
        CHECK_MSG(d == 0, "%s: decoded differs from Pillow by up to %d%s", file, d, lossy ? " (lossy)" : "");
    }
    int32_t sh, sw;
    st = vision_smart_resize(file, h, w, 32, min_pixels, max_pixels, &sh, &sw);
    CHECK(st == TANDEM_OK && sh == rh && sw == rw);
    /* resize Pillow's decoded image, so that a decoding difference cannot hide a resampling one */
    vision_rgb ref = {.width = w, .height = h, .rgb = dec}, out;
    st = vision_resize_bicubic(&ref, rw, rh, &out);
    CHECK(st == TANDEM_OK);
    if (st == TANDEM_OK) {
        CHECK(n_res == (size_t)rw * rh * 3);
        if (n_res == (size_t)rw * rh * 3) {
            int d = max_diff(out.rgb, res, n_res);
            CHECK_MSG(d == 0, "%s: resized %dx%d->%dx%d differs from Pillow by up to %d", file, w, h, rw, rh, d);
        }
        vision_rgb_free(&out);
    }
    json_t *thw = json_object_get(c, "grid_thw");
    if (thw) {
        size_t n_pv;
        uint8_t *pv = read_all(dir, file, ".pixels.f32", &n_pv);
        vision_preprocess_config cfg = vision_preprocess_config_qwen3vl();
        cfg.min_pixels = min_pixels;
        cfg.max_pixels = max_pixels;
        vision_pixels px;
        st = vision_preprocess(file, &rgb, &cfg, &px);
        CHECK_MSG(st == TANDEM_OK, "%s: %s", file, tandem_last_error());
        if (st == TANDEM_OK && pv) {
            CHECK(px.grid_t == json_integer_value(json_array_get(thw, 0)));
            CHECK(px.grid_h == json_integer_value(json_array_get(thw, 1)));
            CHECK(px.grid_w == json_integer_value(json_array_get(thw, 2)));
            CHECK(px.n_patches == json_integer_value(json_object_get(c, "n_patches")));
            CHECK(px.patch_dim == json_integer_value(json_object_get(c, "patch_dim")));
            size_t n = (size_t)(px.n_patches * px.patch_dim);
            CHECK(n_pv == n * sizeof(float));
            if (n_pv == n * sizeof(float)) {
                double worst = 0;
                for (size_t i = 0; i < n; i++) {
                    float e;
                    memcpy(&e, pv + i * 4, 4);
                    double d = fabs((double)px.pixel_values[i] - e);
                    if (d > worst) worst = d;
                }
                CHECK_MSG(worst <= 1e-6, "%s: pixel_values differ by up to %g", file, worst);
            }
        }
        vision_pixels_free(&px);
        free(pv);
    }
    /* every truncation of the file fails cleanly or decodes to the same size (PNG's IEND, JPEG's EOI) */
    for (size_t cut = 0; cut < n_img; cut += 1 + n_img / 61) {
        vision_rgb t;
        tandem_status ts = vision_decode(file, img, cut, NULL, &t);
        if (ts == TANDEM_OK) {
            CHECK_MSG(t.width == w && t.height == h, "%s cut at %zu", file, cut);
            vision_rgb_free(&t);
        } else {
            CHECK_MSG(strstr(tandem_last_error(), file) != NULL, "%s cut at %zu: %s", file, cut, tandem_last_error());
        }
    }
    vision_rgb_free(&rgb);
done:
    free(img), free(dec), free(res);
}

static void check_rejected(const char *dir, const char *file) {
    size_t n;
    uint8_t *img = read_all(dir, file, "", &n);
    CHECK_MSG(img != NULL, "%s missing", file);
    if (!img) return;
    vision_rgb rgb;
    tandem_status st = vision_decode(file, img, n, NULL, &rgb);
    CHECK_MSG(st == TANDEM_ERR_FORMAT && strstr(tandem_last_error(), file) && strstr(tandem_last_error(), "exceeds"),
              "%s: %d %s", file, st, tandem_last_error());
    free(img);
}

static void check_orientation_parser(void) {
    /* little-endian TIFF, one entry: Orientation SHORT 1 = 6 */
    const uint8_t le[] = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 1, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0};
    CHECK(vision_exif_orientation(le, sizeof le) == 6);
    CHECK(vision_exif_orientation(le, sizeof le - 3) == 1); /* entry cut short */
    uint8_t bad[sizeof le];
    memcpy(bad, le, sizeof le);
    bad[4] = 0xff; /* IFD offset past the end */
    CHECK(vision_exif_orientation(bad, sizeof bad) == 1);
    memcpy(bad, le, sizeof le);
    bad[18] = 9; /* out of range */
    CHECK(vision_exif_orientation(bad, sizeof bad) == 1);
}

static tandem_status load_config_text(const char *text, vision_preprocess_config *cfg) {
    char path[] = "/tmp/tandem-preprocessor-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return TANDEM_ERR_IO;
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    tandem_status st = vision_preprocess_config_load(path, cfg);
    unlink(path);
    return st;
}

static void check_config_load(void) {
    vision_preprocess_config c;
    /* Qwen3-VL-4B's preprocessor_config.json */
    CHECK(load_config_text("{\"size\": {\"longest_edge\": 16777216, \"shortest_edge\": 65536}, \"patch_size\": 16, "
                           "\"temporal_patch_size\": 2, \"merge_size\": 2, \"image_mean\": [0.5, 0.5, 0.5], "
                           "\"image_std\": [0.5, 0.5, 0.5], \"processor_class\": \"Qwen3VLProcessor\", "
                           "\"image_processor_type\": \"Qwen2VLImageProcessorFast\"}",
                           &c) == TANDEM_OK);
    CHECK(c.patch_size == 16 && c.merge_size == 2 && c.temporal_patch_size == 2);
    CHECK(c.min_pixels == 65536 && c.max_pixels == 16777216 && c.image_std[2] == 0.5f);
    /* Qwen2-VL's: min_pixels / max_pixels at the top level override size, CLIP's mean and std */
    CHECK(load_config_text("{\"min_pixels\": 3136, \"max_pixels\": 12845056, \"patch_size\": 14, "
                           "\"size\": {\"shortest_edge\": 1, \"longest_edge\": 2}, "
                           "\"image_mean\": [0.48145466, 0.4578275, 0.40821073], "
                           "\"image_std\": [0.26862954, 0.26130258, 0.27577711], \"rescale_factor\": "
                           "0.00392156862745098}",
                           &c) == TANDEM_OK);
    CHECK(c.patch_size == 14 && c.min_pixels == 3136 && c.max_pixels == 12845056);
    CHECK(c.image_mean[0] == 0.48145466f && c.image_std[1] == 0.26130258f);
    CHECK(load_config_text("{\"image_std\": [0.5, 0, 0.5]}", &c) == TANDEM_ERR_FORMAT);
    CHECK(strstr(tandem_last_error(), "image_std") != NULL);
    CHECK(load_config_text("{\"size\": {\"shortest_edge\": 100, \"longest_edge\": 10}}", &c) == TANDEM_ERR_FORMAT);
    CHECK(strstr(tandem_last_error(), "size") != NULL);
    CHECK(load_config_text("{\"patch_size\": \"16\"}", &c) == TANDEM_ERR_FORMAT);
    CHECK(strstr(tandem_last_error(), "patch_size") != NULL);
    CHECK(load_config_text("[1, 2]", &c) == TANDEM_ERR_FORMAT);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "tests/golden";
    char path[1024];
    snprintf(path, sizeof path, "%s/images/cases.json", dir);
    json_error_t err;
    json_t *doc = json_load_file(path, 0, &err);
    CHECK_MSG(doc != NULL, "%s: %s", path, err.text);
    if (!doc) return test_summary();
    int64_t lo = json_integer_value(json_object_get(doc, "min_pixels"));
    int64_t hi = json_integer_value(json_object_get(doc, "max_pixels"));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(doc, "cases"), i, v) check_case(dir, v, lo, hi);
    json_array_foreach(json_object_get(doc, "smart_resize"), i, v) {
        int32_t rh = 0, rw = 0;
        int32_t h = (int32_t)json_integer_value(json_array_get(v, 0)),
                w = (int32_t)json_integer_value(json_array_get(v, 1));
        tandem_status st = vision_smart_resize("t", h, w, 32, json_integer_value(json_array_get(v, 2)),
                                               json_integer_value(json_array_get(v, 3)), &rh, &rw);
        CHECK_MSG(st == TANDEM_OK && rh == json_integer_value(json_array_get(v, 4)) &&
                      rw == json_integer_value(json_array_get(v, 5)),
                  "smart_resize(%d, %d): %d x %d", h, w, rh, rw);
    }
    json_t *ro = json_object_get(doc, "resize_only");
    const char *ro_file = json_string_value(json_object_get(ro, "file"));
    json_array_foreach(json_object_get(ro, "sizes"), i, v) {
        int32_t w = (int32_t)json_integer_value(json_array_get(v, 0)),
                h = (int32_t)json_integer_value(json_array_get(v, 1));
        char suffix[64];
        snprintf(suffix, sizeof suffix, ".%dx%d.rgb", w, h);
        size_t n_img = 0, n_exp = 0;
        uint8_t *img = read_all(dir, ro_file, "", &n_img), *exp = read_all(dir, ro_file, suffix, &n_exp);
        vision_rgb src = {0}, out = {0};
        CHECK(img && exp && vision_decode(ro_file, img, n_img, NULL, &src) == TANDEM_OK);
        CHECK(src.rgb && vision_resize_bicubic(&src, w, h, &out) == TANDEM_OK && n_exp == (size_t)w * h * 3);
        if (out.rgb && exp && n_exp == (size_t)w * h * 3) {
            int d = max_diff(out.rgb, exp, n_exp);
            CHECK_MSG(d == 0, "resize to %d x %d differs from Pillow by up to %d", w, h, d);
        }
        vision_rgb_free(&src), vision_rgb_free(&out), free(img), free(exp);
    }
    json_array_foreach(json_object_get(doc, "rejected"), i, v) check_rejected(dir, json_string_value(v));
    int32_t rh, rw;
    CHECK(vision_smart_resize("thin.png", 1, 201, 32, 2048, 8192, &rh, &rw) == TANDEM_ERR_INVALID_ARG);
    CHECK(strstr(tandem_last_error(), "thin.png") && strstr(tandem_last_error(), "200"));
    const uint8_t junk[16] = "GIF89a.........";
    vision_rgb rgb;
    CHECK(vision_decode("a.gif", junk, sizeof junk, NULL, &rgb) == TANDEM_ERR_UNSUPPORTED);
    check_orientation_parser();
    check_config_load();
    json_decref(doc);
    return test_summary();
}
