/* fuzz_tokenize.c — encoding arbitrary bytes with the tiny golden tokenizer (tests/golden/models/tied_gqa2, or
 * the folder in $TANDEM_FUZZ_TOKENIZER), with parse_special on and off:
 *  - decode(encode(x)) must equal x up to the documented NFC: the text is cut at added tokens (when
 *    parse_special) and at bytes that are not part of a well-formed character, and each remaining run of valid
 *    UTF-8 is NFC-normalized; for text already in NFC that is x itself, byte for byte;
 *  - the ids, pushed one at a time through the streaming detokenizer, must give valid UTF-8 pieces whose
 *    concatenation (with the flush) equals decode(ids) with invalid UTF-8 replaced as Python's
 *    errors="replace" does (fuzz_utf8_replace, written independently of src/tokenizer);
 *  - the same holds for an arbitrary id sequence made from the input bytes (ids that split characters).
 * Seeds: short texts in many scripts, special tokens, invalid UTF-8 and non-NFC text. */
#include <jansson.h>
#include <utf8proc.h>

#include "fuzz_common.h"

#ifndef TANDEM_SOURCE_DIR
#define TANDEM_SOURCE_DIR "."
#endif

static tandem_tokenizer *tok;
static char **added;  /* the added tokens' texts, from tokenizer.json and tokenizer_config.json */
static size_t *added_len, n_added;

static void add_text(const char *s, size_t n) {
    for (size_t i = 0; i < n_added; i++)
        if (added_len[i] == n && memcmp(added[i], s, n) == 0) return;
    added = realloc(added, (n_added + 1) * sizeof *added);
    added_len = realloc(added_len, (n_added + 1) * sizeof *added_len);
    FUZZ_CHECK(added && added_len);
    added[n_added] = malloc(n + 1);
    FUZZ_CHECK(added[n_added] != NULL);
    memcpy(added[n_added], s, n);
    added_len[n_added++] = n;
}

static void read_added(const char *dir) {
    char path[1024];
    json_error_t err;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    json_t *root = json_load_file(path, 0, &err);
    FUZZ_CHECK(root != NULL);
    json_t *list = json_object_get(root, "added_tokens");
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *c = json_object_get(json_array_get(list, i), "content");
        add_text(json_string_value(c), json_string_length(c));
    }
    json_decref(root);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    root = json_load_file(path, 0, &err);
    if (!root) return;
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(root, "added_tokens_decoder"), key, v) {
        json_t *c = json_object_get(v, "content");
        add_text(json_string_value(c), json_string_length(c));
    }
    json_decref(root);
}

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
        fprintf(stderr, "fuzz_tokenize: cannot load the tokenizer in %s (set TANDEM_FUZZ_TOKENIZER): %s\n", dir,
                tandem_last_error());
        abort();
    }
    read_added(dir);
    return 0;
}

/* ---- the expected decode(encode(x)) ---- */

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void put(buf *b, const void *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        FUZZ_CHECK(b->p != NULL);
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void put_nfc(buf *b, const uint8_t *s, size_t n) {
    if (n == 0) return;
    utf8proc_uint8_t *norm = NULL;
    utf8proc_ssize_t len = utf8proc_map(s, (utf8proc_ssize_t)n, &norm, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    FUZZ_CHECK(len >= 0);  /* s is well-formed UTF-8 */
    put(b, norm, (size_t)len);
    free(norm);
}

/* Text between added tokens: valid runs NFC-normalized, every other byte kept as it is. */
static void put_segment(buf *b, const uint8_t *s, size_t n) {
    size_t run = 0;
    for (size_t i = 0; i < n;) {
        size_t sub, k = fuzz_utf8_char(s + i, n - i, &sub);
        if (k) {
            i += k;
            continue;
        }
        put_nfc(b, s + run, i - run);
        put(b, s + i, 1);
        run = ++i;
    }
    put_nfc(b, s + run, n - run);
}

static void expected(buf *b, const uint8_t *s, size_t n, bool parse_special) {
    size_t start = 0;
    for (size_t i = 0; i < n;) {
        size_t best = 0;
        for (size_t a = 0; parse_special && a < n_added; a++)
            if (added_len[a] > best && added_len[a] <= n - i && memcmp(added[a], s + i, added_len[a]) == 0)
                best = added_len[a];
        if (!best) {
            i++;
            continue;
        }
        put_segment(b, s + start, i - start);
        put(b, s + i, best);
        i += best;
        start = i;
    }
    put_segment(b, s + start, n - start);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const int32_t n_vocab = tandem_tokenizer_vocab_size(tok);
    for (int special = 0; special < 2; special++) {
        int32_t *ids = NULL;
        size_t n_ids = 0;
        tandem_status st = tandem_tokenizer_encode(tok, (const char *)data, size, special, &ids, &n_ids);
        if (st != TANDEM_OK) {
            fprintf(stderr, "fuzz_tokenize: encode failed: %s\n", tandem_last_error());
            abort();
        }
        FUZZ_CHECK(size == 0 || n_ids > 0);
        for (size_t i = 0; i < n_ids; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < n_vocab);
        char *text = NULL;
        size_t len = 0;
        st = tandem_tokenizer_decode(tok, ids, n_ids, &text, &len);
        FUZZ_CHECK(st == TANDEM_OK);
        buf want = {0};
        put(&want, "", 0);
        expected(&want, data, size, special);
        if (len != want.len || memcmp(text, want.p, len) != 0) {
            fprintf(stderr, "fuzz_tokenize: decode(encode(x)) != x up to NFC (parse_special %d): got %zu bytes, "
                    "want %zu\n", special, len, want.len);
            abort();
        }
        free(want.p);
        tandem_free(text);
        fuzz_check_stream(tok, ids, n_ids);
        tandem_free(ids);
    }
    /* Arbitrary ids: two input bytes per id, so tokens that split characters meet in any order. */
    size_t n = size / 2;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    FUZZ_CHECK(ids != NULL);
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(((uint32_t)data[2 * i] << 8 | data[2 * i + 1]) % (uint32_t)n_vocab);
    fuzz_check_stream(tok, ids, n);
    free(ids);
    return 0;
}
