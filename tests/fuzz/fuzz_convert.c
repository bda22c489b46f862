/* fuzz_convert.c — tandem_convert on a checkpoint folder whose tokenizer files are fuzzed: the input is
 * tokenizer.json, optionally followed by FUZZ_SEP and tokenizer_config.json (the converter parses both again for
 * the GGUF tokenizer keys: vocab, added tokens, merges, special tokens, chat template; a third part, as in the
 * tokenizer_json seeds, is ignored). The folder links the
 * golden tied_gqa2 config.json and weights. A conversion that succeeds must give a GGUF that tandem loads with
 * the same vocabulary size; a refusal must leave a message and no output or temporary file.
 * Seeds: the tokenizer_json corpus (the golden tokenizer and small hand-made ones). */
#include "fuzz_common.h"

#ifndef TANDEM_SOURCE_DIR
#define TANDEM_SOURCE_DIR "."
#endif

#define FUZZ_SEP "\n#--8<--#\n"

static char folder[512];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char src[1024];
    snprintf(src, sizeof src, "%s/tests/golden/models/tied_gqa2", TANDEM_SOURCE_DIR);
    const char *files[] = {"model.safetensors", "config.json"};
    fuzz_link_folder(folder, sizeof folder, "hf", src, files, sizeof files / sizeof *files);
    return 0;
}

static int count_outputs(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (!strncmp(e->d_name, "out.gguf", 8)) n++;
    closedir(d);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512], out[512];
    size_t tok_len, cfg_len = 0, rest_len = 0;
    const uint8_t *cfg = NULL, *rest = NULL;
    fuzz_split(data, size, FUZZ_SEP, &tok_len, &cfg, &cfg_len);
    if (cfg) fuzz_split(cfg, cfg_len, FUZZ_SEP, &cfg_len, &rest, &rest_len);  /* a third part is ignored */
    fuzz_write_file(path, sizeof path, "hf/tokenizer.json", data, tok_len);
    if (cfg) fuzz_write_file(path, sizeof path, "hf/tokenizer_config.json", cfg, cfg_len);
    else fuzz_unlink("hf/tokenizer_config.json");
    fuzz_path(out, sizeof out, "out.gguf");
    unlink(out);

    tandem_convert_params p = tandem_convert_default_params();
    p.ftype = TANDEM_FTYPE_Q8_0;
    p.n_threads = 1;
    fuzz_clear_error();
    tandem_status st = tandem_convert(folder, out, &p);
    fuzz_check_failure(st);
    if (st != TANDEM_OK) {
        FUZZ_CHECK(count_outputs(fuzz_dir()) == 0);
        return 0;
    }
    FUZZ_CHECK(count_outputs(fuzz_dir()) == 1);
    tandem_model *model = fuzz_load_model(out);
    FUZZ_CHECK(model != NULL);
    tandem_model_info info;
    tandem_model_get_info(model, &info);
    FUZZ_CHECK(info.vocab_size == 448);
    tandem_model_free(model);
    return 0;
}
