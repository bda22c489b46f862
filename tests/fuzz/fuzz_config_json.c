/* fuzz_config_json.c — Hugging Face config.json: bytes -> scratch config.json -> qwen3_config_from_json; a
 * config it accepts must satisfy the ranges the model code relies on. Seeds: the golden models' configs. */
#include <math.h>

#include "fuzz_common.h"
#include "qwen3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_write_file(path, sizeof path, "config.json", data, size);
    qwen3_config cfg;
    fuzz_clear_error();
    tandem_status st = qwen3_config_from_json(path, &cfg);
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
    return 0;
}
