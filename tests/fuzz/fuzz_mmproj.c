/* fuzz_mmproj.c — the mmproj GGUF reader of the vision tower: bytes -> scratch .gguf -> vit_load_gguf -> the config
 * it promises checked, and a one-window image encoded when the tower is small. Seeds: tiny F16, F32 and Q8_0
 * mmproj files written by make_corpus.py in llama.cpp's layout. */
#include <stdlib.h>

#include "fuzz_common.h"
#include "vit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_write_file(path, sizeof path, "mmproj.gguf", data, size);
    vit_model *m = NULL;
    fuzz_clear_error();
    tandem_status st = vit_load_gguf(path, &m);
    fuzz_check_failure(st);
    if (st != TANDEM_OK) {
        FUZZ_CHECK(m == NULL);
        return 0;
    }
    const vit_config *c = vit_model_config(m);
    FUZZ_CHECK(c->depth >= 1 && c->hidden >= 1 && c->n_heads >= 1 && c->head_dim * c->n_heads == c->hidden);
    FUZZ_CHECK(c->head_dim % 4 == 0 && c->merge_size >= 1 && c->patch_size >= 1 && c->out_hidden >= 1);
    FUZZ_CHECK(c->position_side * c->position_side == c->n_positions);
    FUZZ_CHECK(c->n_deepstack >= 0 && c->n_deepstack <= VIT_MAX_DEEPSTACK);
    for (int j = 0; j < c->n_deepstack; j++)
        FUZZ_CHECK(c->deepstack_layers[j] >= 0 && c->deepstack_layers[j] < c->depth &&
                   (j == 0 || c->deepstack_layers[j] > c->deepstack_layers[j - 1]));
    /* one window of merge x merge patches, pixel values from the input's bytes */
    vision_pixels px = {.grid_t = 1, .grid_h = c->merge_size, .grid_w = c->merge_size};
    px.n_patches = (int64_t)c->merge_size * c->merge_size;
    px.patch_dim = (int64_t)c->in_channels * c->temporal_patch_size * c->patch_size * c->patch_size;
    const int64_t values = px.n_patches * px.patch_dim;
    const int64_t out_values = (int64_t)(1 + c->n_deepstack) * c->out_hidden;
    if (size > 0 && values <= (1 << 18) && (int64_t)c->hidden * c->ffn_dim <= (1 << 20)) {
        px.pixel_values = malloc(sizeof(float) * (size_t)values);
        float *out = malloc(sizeof(float) * (size_t)out_values);
        FUZZ_CHECK(px.pixel_values && out);
        for (int64_t i = 0; i < values; i++) px.pixel_values[i] = (float)data[(size_t)i % size] / 128.0f - 1.0f;
        FUZZ_CHECK(vit_encode(m, NULL, &px, 1, out, out + c->out_hidden) == TANDEM_OK);
        fuzz_touch(out, sizeof(float) * (uint64_t)out_values);
        free(out);
        free(px.pixel_values);
    }
    vit_free(m);
    return 0;
}
