/* fuzz_hf_folder.c — a Hugging Face checkpoint folder through the public API: the input is config.json,
 * optionally followed by FUZZ_SEP and generation_config.json; the folder also holds links to the golden
 * tied_gqa2 weights and tokenizer (or those of $TANDEM_FUZZ_HF_MODEL). tandem_model_load resolves the folder
 * (src/model/checkpoint.c), binds the weights against the fuzzed config (flat, or nested under text_config),
 * reads the sampling defaults and EOS ids from the fuzzed generation config; a model that loads evaluates 2 tokens
 * in an 8-token context. Seeds: the golden config + generation config, also nested as Qwen3-VL writes it. */
#include "fuzz_common.h"

#ifndef TANDEM_SOURCE_DIR
#define TANDEM_SOURCE_DIR "."
#endif

#define FUZZ_SEP "\n#--8<--#\n"

static char folder[512];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    static char src[1024];
    const char *model = getenv("TANDEM_FUZZ_HF_MODEL");
    if (!model || !model[0]) {
        snprintf(src, sizeof src, "%s/tests/golden/models/tied_gqa2", TANDEM_SOURCE_DIR);
        model = src;
    }
    const char *files[] = {"model.safetensors", "tokenizer.json", "tokenizer_config.json"};
    fuzz_link_folder(folder, sizeof folder, "hf", model, files, sizeof files / sizeof *files);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    size_t cfg_len, gen_len = 0;
    const uint8_t *gen = NULL;
    fuzz_split(data, size, FUZZ_SEP, &cfg_len, &gen, &gen_len);
    fuzz_write_file(path, sizeof path, "hf/config.json", data, cfg_len);
    if (gen) fuzz_write_file(path, sizeof path, "hf/generation_config.json", gen, gen_len);
    else fuzz_unlink("hf/generation_config.json");

    tandem_model *model = fuzz_load_model(folder);
    if (!model) return 0;
    tandem_model_info info;
    tandem_model_get_info(model, &info);
    FUZZ_CHECK(strcmp(info.source, "safetensors") == 0 && info.vocab_size >= 1);
    tandem_sampler_params sp = tandem_model_sampler_defaults(model);
    tandem_sampler *sampler = NULL;
    fuzz_clear_error();
    tandem_status st = tandem_sampler_init(&sp, info.vocab_size, &sampler);  /* fuzzed defaults: may be refused, with a reason */
    fuzz_check_failure(st);
    const tandem_tokenizer *tok = tandem_model_tokenizer(model);
    size_t n_eos = 0;
    const int32_t *eos = tandem_tokenizer_eos_ids(tok, &n_eos);
    for (size_t i = 0; i < n_eos; i++) FUZZ_CHECK(eos[i] >= 0 && eos[i] < tandem_tokenizer_vocab_size(tok));

    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = 8;
    tandem_ctx *ctx = NULL;
    fuzz_clear_error();
    st = tandem_ctx_init(model, &cp, &ctx);
    fuzz_check_failure(st);
    if (st == TANDEM_OK) {
        int32_t ids[2] = {0, info.vocab_size - 1};
        FUZZ_CHECK(tandem_ctx_eval(ctx, ids, 2, NULL) == TANDEM_OK);
        const float *logits = tandem_ctx_logits(ctx);
        FUZZ_CHECK(logits != NULL);
        if (sampler) {
            int32_t next = tandem_sampler_sample(sampler, logits, ids, 2);
            FUZZ_CHECK(next >= 0 && next < info.vocab_size);
        }
        tandem_ctx_free(ctx);
    }
    tandem_sampler_free(sampler);
    tandem_model_free(model);
    return 0;
}
