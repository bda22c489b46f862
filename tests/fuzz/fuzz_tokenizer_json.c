/* fuzz_tokenizer_json.c — tokenizer.json loading: the input is tokenizer.json, optionally followed by
 * FUZZ_SEP and a tokenizer_config.json, and again by FUZZ_SEP and a generation_config.json; the parts go into
 * a scratch folder, tokenizer_load_json reads it, and a tokenizer that loads must round-trip a fixed text
 * (fuzz_exercise_tokenizer). Seeds: the golden tokenizer (tied_gqa2) and small hand-made ones. */
#include "fuzz_common.h"
#include "tokenizer.h"

#define FUZZ_SEP "\n#--8<--#\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char dir[512], file[512], path[512];
    size_t tok_len, cfg_len = 0, gen_len = 0;
    const uint8_t *cfg = NULL, *gen = NULL;
    fuzz_split(data, size, FUZZ_SEP, &tok_len, &cfg, &cfg_len);
    if (cfg) fuzz_split(cfg, cfg_len, FUZZ_SEP, &cfg_len, &gen, &gen_len);

    fuzz_path(dir, sizeof dir, "tok");
    mkdir(dir, 0700);
    fuzz_write_file(file, sizeof file, "tok/tokenizer.json", data, tok_len);
    if (cfg) fuzz_write_file(path, sizeof path, "tok/tokenizer_config.json", cfg, cfg_len);
    else fuzz_unlink("tok/tokenizer_config.json");
    if (gen) fuzz_write_file(path, sizeof path, "tok/generation_config.json", gen, gen_len);
    else fuzz_unlink("tok/generation_config.json");

    tandem_tokenizer *tok = NULL;
    fuzz_clear_error();
    /* Alternate between the folder and the file path: both must behave the same. */
    tandem_status st = tokenizer_load_json(size % 2 ? dir : file, &tok);
    fuzz_check_failure(st);
    if (st != TANDEM_OK) {
        FUZZ_CHECK(tok == NULL);
        return 0;
    }
    fuzz_exercise_tokenizer(tok);
    tandem_tokenizer_free(tok);
    return 0;
}
