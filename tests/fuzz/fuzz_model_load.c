/* fuzz_model_load.c — the whole GGUF model path through the public API: bytes -> scratch .gguf ->
 * tandem_model_load (one thread) -> info and tensor infos -> tandem_ctx_init (n_ctx 8) -> evaluate 2 tokens,
 * then a third past a truncate, and check the context bookkeeping. Seed: the tiny Q4_0 model (84 KB), so run
 * it with -max_len of about 100000. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_write_file(path, sizeof path, "model.gguf", data, size);
    tandem_model *model = fuzz_load_model(path);
    if (!model) return 0;
    tandem_model_info info;
    tandem_model_get_info(model, &info);
    FUZZ_CHECK(info.vocab_size >= 1 && info.n_layers >= 1 && info.n_tensors >= 1);
    FUZZ_CHECK(strcmp(info.source, "gguf") == 0);
    fuzz_touch(info.name, strlen(info.name));
    for (int32_t i = 0; i < info.n_tensors; i++) {
        tandem_tensor_info ti;
        FUZZ_CHECK(tandem_model_tensor_info(model, i, &ti) == TANDEM_OK);
        FUZZ_CHECK(ti.name && ti.n_dims >= 1 && ti.n_dims <= 4);
    }
    const tandem_tokenizer *tok = tandem_model_tokenizer(model);
    FUZZ_CHECK(tok && tandem_tokenizer_vocab_size(tok) <= info.vocab_size);

    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = 8;
    tandem_ctx *ctx = NULL;
    fuzz_clear_error();
    tandem_status st = tandem_ctx_init(model, &cp, &ctx);
    fuzz_check_failure(st);
    if (st == TANDEM_OK) {
        /* Token ids from the input's last bytes, so the fuzzer can steer which rows are read. */
        int32_t ids[3] = {0, info.vocab_size - 1, 0};
        if (size >= 4) {
            ids[0] = (int32_t)(((uint32_t)data[size - 4] << 8 | data[size - 3]) % (uint32_t)info.vocab_size);
            ids[2] = (int32_t)(((uint32_t)data[size - 2] << 8 | data[size - 1]) % (uint32_t)info.vocab_size);
        }
        FUZZ_CHECK(tandem_ctx_eval(ctx, ids, 2, NULL) == TANDEM_OK);
        FUZZ_CHECK(tandem_ctx_n_past(ctx) == 2 && tandem_ctx_logits(ctx) != NULL);
        fuzz_touch(tandem_ctx_logits(ctx), (uint64_t)info.vocab_size * sizeof(float));
        FUZZ_CHECK(tandem_ctx_truncate(ctx, 1) == TANDEM_OK);
        float *all = malloc((size_t)info.vocab_size * sizeof(float));
        FUZZ_CHECK(all != NULL);
        FUZZ_CHECK(tandem_ctx_eval(ctx, ids + 2, 1, all) == TANDEM_OK);
        FUZZ_CHECK(memcmp(all, tandem_ctx_logits(ctx), (size_t)info.vocab_size * sizeof(float)) == 0);
        free(all);
        int32_t bad = info.vocab_size;
        FUZZ_CHECK(tandem_ctx_eval(ctx, &bad, 1, NULL) == TANDEM_ERR_INVALID_ARG);
        tandem_ctx_free(ctx);
    }
    tandem_model_free(model);
    return 0;
}
