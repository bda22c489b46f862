/* fuzz_train_jsonl.c — tandem train's samples (.jsonl, src/train/train_data.c) from arbitrary bytes: the first byte
 * sets the window length, the rest is the file. Either a clear error or windows whose every id is in the vocabulary
 * and whose targets are each the next window input or the window's last token (or −1). */
#include "fuzz_common.h"
#include "train.h"

#ifndef TANDEM_SOURCE_DIR
#define TANDEM_SOURCE_DIR "."
#endif

static tandem_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/golden/models/tied_gqa2", TANDEM_SOURCE_DIR);
    if (tandem_tokenizer_load(dir, &tok) != TANDEM_OK) {
        fprintf(stderr, "fuzz_train_jsonl: cannot load the tokenizer in %s: %s\n", dir, tandem_last_error());
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int T = 1 + data[0] % 64;
    train_windows w;
    if (train_windows_from_jsonl("fuzz.jsonl", (const char *)data + 1, size - 1, tok, T, 0, &w) != TANDEM_OK) {
        FUZZ_CHECK(w.inputs == NULL && w.targets == NULL && w.n == 0 && tandem_last_error()[0] != '\0');
        return 0;
    }
    const int32_t vocab = tandem_tokenizer_vocab_size(tok);
    FUZZ_CHECK(w.n > 0 && w.T == T);
    for (int64_t k = 0; k < w.n; k++)
        for (int i = 0; i < T; i++) {
            const int32_t in = w.inputs[k * T + i], tg = w.targets[k * T + i];
            FUZZ_CHECK(in >= 0 && in < vocab);
            FUZZ_CHECK(tg >= -1 && tg < vocab);
            /* a counted target is the next token of the same sample: the next input, if the window has one */
            if (tg >= 0 && i + 1 < T) FUZZ_CHECK(tg == w.inputs[k * T + i + 1]);
        }
    train_windows_free(&w);
    return 0;
}
