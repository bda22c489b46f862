/* fuzz_grammar_schema.c — the schema compiler (src/grammar): arbitrary bytes as a JSON schema or as a tools array,
 * compiled for the tiny golden tokenizer (tests/golden/models/tied_gqa2, or $TANDEM_FUZZ_TOKENIZER). A rejection
 * must carry a message; an accepted grammar is walked for a few tokens, and at every step the cheap token check
 * (grammar_matcher_allows, what sample-then-check relies on) must agree with the full mask on every id tried.
 * Input: byte 0x01 + choice digit (0 auto, 1 none, 2 required, 3 named "f") + flags digit (1 parallel, 2 thinking,
 * 4 reasoning open) + tools JSON; "o" for any JSON object; anything else is the schema text itself.
 * Seeds: the schemas and tool sets of tests/integration/test_grammar.py and malformed variants. */
#include <math.h>

#include "fuzz_common.h"
#include "grammar.h"

#ifndef TANDEM_SOURCE_DIR
#define TANDEM_SOURCE_DIR "."
#endif

static tandem_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = getenv("TANDEM_FUZZ_TOKENIZER");
    static char fallback[1024];
    if (!dir || !dir[0]) {
        snprintf(fallback, sizeof fallback, "%s/tests/golden/models/tied_gqa2", TANDEM_SOURCE_DIR);
        dir = fallback;
    }
    if (tandem_tokenizer_load(dir, &tok) != TANDEM_OK) {
        fprintf(stderr, "fuzz_grammar_schema: cannot load the tokenizer in %s (set TANDEM_FUZZ_TOKENIZER): %s\n", dir,
                tandem_last_error());
        abort();
    }
    return 0;
}

/* A few steps through the grammar: at each, the mask and the single-token check agree on a spread of ids, and one
 * allowed id (chosen by the input's hash) is consumed. */
static void walk(const tandem_grammar *g, uint64_t h) {
    grammar_matcher *m;
    FUZZ_CHECK(grammar_matcher_new(g, &m) == TANDEM_OK);
    const int32_t V = tandem_tokenizer_vocab_size(tok);
    float *logits = malloc(sizeof(float) * (size_t)V);
    FUZZ_CHECK(logits != NULL);
    for (int step = 0; step < 12; step++) {
        for (int32_t i = 0; i < V; i++) logits[i] = 0;
        tandem_status st = grammar_matcher_mask_logits(m, logits, V);
        fuzz_check_failure(st);
        if (st) break;
        int32_t n_allowed = 0;
        for (int32_t i = 0; i < V; i++) n_allowed += logits[i] == 0;
        FUZZ_CHECK(n_allowed > 0);
        for (int32_t i = (int32_t)(h % 7); i < V; i += 7) FUZZ_CHECK(grammar_matcher_allows(m, i) == (logits[i] == 0));
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        int32_t pick = (int32_t)((h >> 33) % (uint64_t)n_allowed), id = 0;
        for (; id < V; id++)
            if (logits[id] == 0 && pick-- == 0) break;
        FUZZ_CHECK(grammar_matcher_allows(m, id));
        FUZZ_CHECK(grammar_matcher_consume(m, id) == TANDEM_OK);
        size_t n_eos;
        const int32_t *eos = tandem_tokenizer_eos_ids(tok, &n_eos);
        bool end = false;
        for (size_t k = 0; k < n_eos; k++) end |= eos[k] == id;
        if (end) break;
    }
    free(logits);
    grammar_matcher_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ull;
    tandem_grammar *g = NULL;
    tandem_status st;
    fuzz_clear_error();
    if (size >= 3 && text[0] == '\x01') {
        tandem_tool_grammar_params p = tandem_tool_grammar_default_params();
        p.choice = (tandem_tool_choice)((unsigned char)text[1] % 4);
        p.function_name = "f";
        p.parallel_tool_calls = text[2] & 1;
        p.thinking = text[2] & 2;
        p.reasoning_open = text[2] & 4;
        p.tools_json = text + 3;
        st = tandem_grammar_from_tools(tok, &p, &g);
    } else {
        st = tandem_grammar_from_json_schema(tok, size == 1 && text[0] == 'o' ? NULL : text, &g);
    }
    fuzz_check_failure(st);
    FUZZ_CHECK((st == TANDEM_OK) == (g != NULL));
    if (g) walk(g, h);
    tandem_grammar_free(g);
    free(text);
    return 0;
}
