/* fuzz_preprocessor_config.c — preprocessor_config.json bytes -> vision_preprocess_config_load; a config it
 * accepts must be one vision_preprocess can run with. Seeds: Qwen3-VL's and Qwen2-VL's configs. */
#include <math.h>

#include "fuzz_common.h"
#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_write_file(path, sizeof path, "preprocessor_config.json", data, size);
    vision_preprocess_config cfg;
    fuzz_clear_error();
    tandem_status st = vision_preprocess_config_load(path, &cfg);
    fuzz_check_failure(st);
    if (st != TANDEM_OK) return 0;
    FUZZ_CHECK(cfg.patch_size >= 1 && cfg.merge_size >= 1 && cfg.temporal_patch_size >= 1);
    FUZZ_CHECK(cfg.min_pixels >= 1 && cfg.min_pixels <= cfg.max_pixels);
    FUZZ_CHECK(cfg.rescale_factor > 0 && isfinite(cfg.rescale_factor));
    for (int i = 0; i < 3; i++) FUZZ_CHECK(cfg.image_std[i] != 0 && isfinite(cfg.image_std[i]));
    /* a tiny image through the whole preprocessing with this config, when its patches stay small */
    if ((int64_t)cfg.patch_size * cfg.merge_size <= 64 && cfg.max_pixels <= 65536 && cfg.temporal_patch_size <= 4) {
        uint8_t px[4 * 3 * 3];
        for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 37);
        vision_rgb img = {.width = 4, .height = 3, .rgb = px};
        vision_pixels out;
        fuzz_clear_error();
        st = vision_preprocess("fuzz", &img, &cfg, &out);
        fuzz_check_failure(st);
        if (st == TANDEM_OK) vision_pixels_free(&out);
    }
    return 0;
}
