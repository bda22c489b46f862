/* fuzz_image.c — image bytes -> vision_decode -> vision_preprocess (src/vision/image.c), and the EXIF reader on
 * the same bytes. Input: [flags] + image file; flags pick the pixel budget. Seeds: the small golden images. */
#include "fuzz_common.h"
#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t flags = data[0];
    data++, size--;
    int o = vision_exif_orientation(data, size);
    FUZZ_CHECK(o >= 1 && o <= 8);
    /* small limits keep each run fast; the header checks are what they exercise */
    vision_decode_limits lim = {.max_side = 2048, .max_pixels = 1 << 18};
    vision_rgb rgb;
    fuzz_clear_error();
    tandem_status st = vision_decode("fuzz.img", data, size, &lim, &rgb);
    fuzz_check_failure(st);
    if (st != TANDEM_OK) return 0;
    FUZZ_CHECK(rgb.width >= 1 && rgb.height >= 1 && rgb.width <= 2048 && rgb.height <= 2048);
    FUZZ_CHECK((int64_t)rgb.width * rgb.height <= lim.max_pixels);
    vision_preprocess_config cfg = vision_preprocess_config_qwen3vl();
    cfg.min_pixels = (flags & 1) ? 1024 : 4096;
    cfg.max_pixels = (flags & 2) ? 4096 : 16384;
    vision_pixels px;
    fuzz_clear_error();
    st = vision_preprocess("fuzz.img", &rgb, &cfg, &px);
    fuzz_check_failure(st);
    if (st == TANDEM_OK) {
        FUZZ_CHECK(px.grid_t == 1 && px.grid_h % 2 == 0 && px.grid_w % 2 == 0);
        FUZZ_CHECK(px.n_patches == (int64_t)px.grid_h * px.grid_w && px.patch_dim == 3 * 2 * 16 * 16);
        int64_t n = px.n_patches * px.patch_dim;
        for (int64_t i = 0; i < n; i += 97) FUZZ_CHECK(px.pixel_values[i] >= -1.0f && px.pixel_values[i] <= 1.0f);
        vision_pixels_free(&px);
    }
    vision_rgb_free(&rgb);
    return 0;
}
