/* fuzz_config_json.c — Hugging Face config.json: bytes -> scratch config.json -> qwen3_config_from_json and
 * vit_config_from_json; a config they accept must satisfy the ranges the model code and the vision tower rely on.
 * Seeds: the golden models' configs. */
#include <math.h>

#include "fuzz_common.h"
#include "qwen3.h"
#include "vit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_write_file(path, sizeof path, "config.json", data, size);
    vit_config vc;
    fuzz_clear_error();
    tandem_status st = vit_config_from_json(path, &vc);
    fuzz_check_failure(st);
    if (st == TANDEM_OK) {
        FUZZ_CHECK(vc.depth >= 1 && vc.hidden >= 1 && vc.ffn_dim >= 1 && vc.out_hidden >= 1);
        FUZZ_CHECK(vc.n_heads >= 1 && vc.head_dim * vc.n_heads == vc.hidden && vc.head_dim % 4 == 0);
        FUZZ_CHECK(vc.patch_size >= 1 && vc.temporal_patch_size >= 1 && vc.merge_size >= 1 && vc.in_channels >= 1);
        FUZZ_CHECK(vc.position_side >= 1 && vc.position_side * vc.position_side == vc.n_positions);
        FUZZ_CHECK(vc.n_deepstack >= 0 && vc.n_deepstack <= VIT_MAX_DEEPSTACK);
        for (int j = 0; j < vc.n_deepstack; j++)
            FUZZ_CHECK(vc.deepstack_layers[j] >= 0 && vc.deepstack_layers[j] < vc.depth);
        FUZZ_CHECK(vc.rope_theta > 0 && isfinite(vc.rope_theta));
    }
    qwen3_config cfg;
    fuzz_clear_error();
    st = qwen3_config_from_json(path, &cfg);
    fuzz_check_failure(st);
    if (st != TANDEM_OK) return 0;
    FUZZ_CHECK(cfg.n_layers >= 1 && cfg.n_layers <= 1024);
    FUZZ_CHECK(cfg.dim >= 1 && cfg.ffn_dim >= 1 && cfg.vocab_size >= 1);
    FUZZ_CHECK(cfg.n_heads >= 1 && cfg.n_kv_heads >= 1 && cfg.n_kv_heads <= cfg.n_heads);
    FUZZ_CHECK(cfg.n_heads % cfg.n_kv_heads == 0);
    FUZZ_CHECK(cfg.head_dim >= 2 && cfg.head_dim % 2 == 0);
    FUZZ_CHECK(cfg.rope_theta > 0 && isfinite(cfg.rope_theta));
    FUZZ_CHECK(cfg.rms_eps > 0 && cfg.rms_eps < 1);
    FUZZ_CHECK(cfg.context_length > 0);
    /* M-RoPE sections (Qwen3-VL): none, or non-negative and summing to the rotary half */
    FUZZ_CHECK(cfg.rope_sections[0] >= 0 && cfg.rope_sections[1] >= 0 && cfg.rope_sections[2] >= 0);
    FUZZ_CHECK(!(cfg.rope_sections[0] || cfg.rope_sections[1] || cfg.rope_sections[2]) ||
               cfg.rope_sections[0] + cfg.rope_sections[1] + cfg.rope_sections[2] == cfg.head_dim / 2);
    FUZZ_CHECK(cfg.n_deepstack >= 0 && cfg.n_deepstack <= 1024);
    return 0;
}
