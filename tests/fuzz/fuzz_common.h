/* fuzz_common.h — shared by the libFuzzer targets in tests/fuzz/: a per-process scratch folder for the
 * readers that only take paths, oracle checks that abort (so libFuzzer and the replay test both see a
 * failure), and an independent UTF-8 "errors=replace" decoder used to check the streaming detokenizer.
 *
 * Each target defines LLVMFuzzerTestOneInput (and may define LLVMFuzzerInitialize). The same file is built
 * twice: with -fsanitize=fuzzer into fuzz_<target> (TANDEM_FUZZ=ON, clang), and with replay_main.c into
 * replay_<target>, which the normal test suite runs over tests/fuzz/{regression,corpus}/<target>/. */
#ifndef TANDEM_FUZZ_COMMON_H
#define TANDEM_FUZZ_COMMON_H

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tandem_base.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* ---- oracle failures ---- */

#define FUZZ_CHECK(cond)                                                                         \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond);       \
            abort();                                                                             \
        }                                                                                        \
    } while (0)

/* tandem_last_error() keeps the last message until the next failure; clearing it before a call lets
 * fuzz_check_failure see whether that call set one. */
static inline void fuzz_clear_error(void) { tandem_fail(TANDEM_OK, "%s", ""); }

/* Every failing call must leave a message (the error contract of tandem.h) and a known status. */
static inline void fuzz_check_failure(int st) {
    if (st == TANDEM_OK) return;
    if (st > TANDEM_OK || st < TANDEM_ERR_MISMATCH) {
        fprintf(stderr, "fuzz: unknown status %d\n", st);
        abort();
    }
    const char *msg = tandem_last_error();
    static int verbose = -1;  /* TANDEM_FUZZ_VERBOSE=1 prints every rejection (to see what seeds reach) */
    if (verbose < 0) verbose = getenv("TANDEM_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "fuzz: rejected (%s): %s\n", tandem_status_name((tandem_status)st), msg ? msg : "");
    if (!msg || !msg[0]) {
        fprintf(stderr, "fuzz: status %d (%s) without an error message\n", st, tandem_status_name((tandem_status)st));
        abort();
    }
}

/* ---- scratch files ----
 * One folder per process, /dev/shm/tandem-fuzz-<pid>-XXXXXX (or $TMPDIR / /tmp when /dev/shm is absent),
 * removed with its files at exit. A crashed run leaves its folder; scripts/fuzz.sh removes those of dead
 * processes. */

static char fuzz_dir_path[256];

static void fuzz_remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char child[512];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            struct stat st;
            if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode)) fuzz_remove_tree(child);
            else unlink(child);
        }
        closedir(d);
    }
    rmdir(path);
}

static void fuzz_cleanup(void) {
    if (fuzz_dir_path[0]) fuzz_remove_tree(fuzz_dir_path);
    fuzz_dir_path[0] = '\0';
}

static inline const char *fuzz_dir(void) {
    if (fuzz_dir_path[0]) return fuzz_dir_path;
    const char *base = "/dev/shm";
    struct stat st;
    if (stat(base, &st) != 0 || !S_ISDIR(st.st_mode) || access(base, W_OK) != 0) {
        base = getenv("TMPDIR");
        if (!base || !base[0]) base = "/tmp";
    }
    snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/tandem-fuzz-%ld-XXXXXX", base, (long)getpid());
    if (!mkdtemp(fuzz_dir_path)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_cleanup);
    return fuzz_dir_path;
}

/* path of `name` inside the scratch folder, in a static buffer per call site's choice of out. */
static inline void fuzz_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", fuzz_dir(), name);
}

/* (Re)writes the scratch file `name` with data and returns its path in out. */
static inline void fuzz_write_file(char *out, size_t cap, const char *name, const void *data, size_t size) {
    fuzz_path(out, cap, name);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror("fuzz: open scratch file");
        abort();
    }
    const uint8_t *p = data;
    while (size > 0) {
        ssize_t n = write(fd, p, size);
        if (n <= 0) {
            perror("fuzz: write scratch file");
            abort();
        }
        p += n;
        size -= (size_t)n;
    }
    close(fd);
}

/* Makes the scratch folder `name` (path in out) holding symbolic links to the n files `files` of model_dir: a
 * checkpoint folder whose other files a target writes per input. Aborts, naming the file, if one is missing. */
static inline void fuzz_link_folder(char *out, size_t cap, const char *name, const char *model_dir,
                                    const char *const *files, size_t n) {
    fuzz_path(out, cap, name);
    FUZZ_CHECK(mkdir(out, 0700) == 0);
    for (size_t i = 0; i < n; i++) {
        char from[1536], to[1536];
        snprintf(from, sizeof from, "%s/%s", model_dir, files[i]);
        snprintf(to, sizeof to, "%s/%s", out, files[i]);
        if (access(from, R_OK) != 0 || symlink(from, to) != 0) {
            fprintf(stderr, "fuzz: cannot link %s\n", from);
            abort();
        }
    }
}

static inline void fuzz_unlink(const char *name) {
    char path[512];
    fuzz_path(path, sizeof path, name);
    unlink(path);
}

/* Splits data at the first occurrence of sep: *head_len bytes before it; the rest after it in *tail
 * (NULL, 0 when sep does not occur). */
static inline void fuzz_split(const uint8_t *data, size_t size, const char *sep, size_t *head_len,
                              const uint8_t **tail, size_t *tail_len) {
    size_t k = strlen(sep);
    *head_len = size;
    *tail = NULL;
    *tail_len = 0;
    if (size < k) return;
    for (size_t i = 0; i + k <= size; i++) {
        if (data[i] == (uint8_t)sep[0] && memcmp(data + i, sep, k) == 0) {
            *head_len = i;
            *tail = data + i + k;
            *tail_len = size - i - k;
            return;
        }
    }
}

/* Reads every byte of p[0..n) so that a bad pointer or length faults here (mapped memory is not tracked by
 * AddressSanitizer; reading past a map still faults). */
static inline uint32_t fuzz_touch(const void *p, uint64_t n) {
    const volatile uint8_t *b = p;
    uint32_t sum = 0;
    for (uint64_t i = 0; i < n; i++) sum = sum * 31u + b[i];
    return sum;
}

/* ---- UTF-8 with Python's errors="replace" (an implementation independent of src/tokenizer) ----
 * Well-formed sequences follow Unicode Table 3-7; each maximal subpart of an ill-formed sequence becomes one
 * U+FFFD (Unicode §3.9 "substitution of maximal subparts", which CPython follows). */

/* Length of the well-formed character at p (1..4), or 0 if ill-formed; *subpart gets the length of the
 * maximal subpart (≥ 1) when ill-formed or truncated. */
static inline size_t fuzz_utf8_char(const uint8_t *p, size_t n, size_t *subpart) {
    uint8_t c = p[0];
    *subpart = 1;
    if (c < 0x80) return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c == 0xE0) { need = 3; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) need = 3;
    else if (c == 0xED) { need = 3; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) need = 3;
    else if (c == 0xF0) { need = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) need = 4;
    else if (c == 0xF4) { need = 4; hi = 0x8F; }
    else return 0;
    size_t i = 1;
    for (; i < need; i++) {
        if (i >= n) break;
        uint8_t b = p[i];
        uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h) break;
    }
    if (i == need) return need;
    *subpart = i;
    return 0;
}

static inline int fuzz_utf8_valid(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t sub, k = fuzz_utf8_char(p + i, n - i, &sub);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

/* Returns malloc'd text (NUL-terminated), its length in *out_len. */
static inline char *fuzz_utf8_replace(const uint8_t *p, size_t n, size_t *out_len) {
    char *out = malloc(3 * n + 1);
    FUZZ_CHECK(out != NULL);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t sub, k = fuzz_utf8_char(p + i, n - i, &sub);
        if (k) {
            memcpy(out + o, p + i, k);
            o += k;
            i += k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += sub;
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

/* Pushes ids through a streaming detokenizer and checks: every piece is valid UTF-8, and pieces + flush
 * equal decode(ids) with errors="replace". Skips silently if decode refuses the ids (then push must too). */
static inline void fuzz_check_stream(const tandem_tokenizer *tok, const int32_t *ids, size_t n) {
    char *text = NULL;
    size_t len = 0;
    fuzz_clear_error();
    tandem_status st = tandem_tokenizer_decode(tok, ids, n, &text, &len);
    fuzz_check_failure(st);
    if (st != TANDEM_OK) return;
    FUZZ_CHECK(text[len] == '\0');
    size_t want_len;
    char *want = fuzz_utf8_replace((const uint8_t *)text, len, &want_len);
    tandem_free(text);

    tandem_detokenizer *d = NULL;
    st = tandem_detokenizer_init(tok, &d);
    FUZZ_CHECK(st == TANDEM_OK);
    char *got = malloc(want_len + 1);
    FUZZ_CHECK(got != NULL);
    size_t got_len = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *piece = NULL;
        size_t piece_len = 0;
        st = i < n ? tandem_detokenizer_push(d, ids[i], &piece, &piece_len)
                   : tandem_detokenizer_flush(d, &piece, &piece_len);
        FUZZ_CHECK(st == TANDEM_OK);
        FUZZ_CHECK(piece != NULL);
        FUZZ_CHECK(fuzz_utf8_valid((const uint8_t *)piece, piece_len));
        if (got_len + piece_len > want_len || memcmp(want + got_len, piece, piece_len) != 0) {
            fprintf(stderr, "fuzz: streamed text differs from decode+replace after id #%zu\n", i);
            abort();
        }
        memcpy(got + got_len, piece, piece_len);
        got_len += piece_len;
    }
    FUZZ_CHECK(got_len == want_len);
    tandem_detokenizer_free(d);
    free(got);
    free(want);
}

/* A text whose every substring is in NFC (ASCII, precomposed letters, CJK; no combining marks) and which holds
 * invalid bytes, so that decode(encode(text)) == text for ANY tokenizer that loads, however its added tokens
 * split the text. */
static const char FUZZ_FIXED_TEXT[] =
    "Hello, w\xc3\xb6rld! <|im_start|>user\n\t  12345 \xff\xfe\xc3 \xe6\x97\xa5\xe6\x9c\xac <think>x</think>\r\n"
    "  it'll  end<|im_end|>";

/* Exercises a tokenizer that a fuzzed file produced: the fixed text round-trips with and without special
 * tokens (encode may fail only with a message, e.g. a pathological regex hitting PCRE2's match limit), and
 * the ids stream back to the same text. Also every id's bytes are readable. */
static inline void fuzz_exercise_tokenizer(const tandem_tokenizer *tok) {
    int32_t n_vocab = tandem_tokenizer_vocab_size(tok);
    FUZZ_CHECK(n_vocab > 0);
    for (int32_t id = 0; id < n_vocab; id++) {
        size_t n = 0;
        const char *b = tandem_tokenizer_token_bytes(tok, id, &n);
        if (b) fuzz_touch(b, n + 1);  /* the bytes and their NUL */
    }
    FUZZ_CHECK(tandem_tokenizer_token_bytes(tok, n_vocab, NULL) == NULL);
    FUZZ_CHECK(tandem_tokenizer_token_bytes(tok, -1, NULL) == NULL);
    size_t n_eos = 0;
    const int32_t *eos = tandem_tokenizer_eos_ids(tok, &n_eos);
    for (size_t i = 0; i < n_eos; i++) FUZZ_CHECK(eos[i] >= 0 && eos[i] < n_vocab);
    const char *tpl = tandem_tokenizer_chat_template(tok);
    if (tpl) fuzz_touch(tpl, strlen(tpl));

    const size_t text_len = sizeof FUZZ_FIXED_TEXT - 1;
    for (int special = 0; special < 2; special++) {
        int32_t *ids = NULL;
        size_t n_ids = 0;
        fuzz_clear_error();
        tandem_status st = tandem_tokenizer_encode(tok, FUZZ_FIXED_TEXT, text_len, special, &ids, &n_ids);
        fuzz_check_failure(st);
        if (st != TANDEM_OK) continue;
        for (size_t i = 0; i < n_ids; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < n_vocab);
        char *text = NULL;
        size_t len = 0;
        st = tandem_tokenizer_decode(tok, ids, n_ids, &text, &len);
        FUZZ_CHECK(st == TANDEM_OK);
        if (len != text_len || memcmp(text, FUZZ_FIXED_TEXT, len) != 0) {
            fprintf(stderr, "fuzz: decode(encode(fixed text)) differs (parse_special %d): %zu bytes: %.*s\n", special,
                    len, (int)len, text);
            abort();
        }
        tandem_free(text);
        fuzz_check_stream(tok, ids, n_ids);
        tandem_free(ids);
    }
}

/* Loads a model (one thread); a refusal must come with a status, a message and no model. NULL if refused. */
static inline tandem_model *fuzz_load_model(const char *path) {
    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = 1;
    tandem_model *model = NULL;
    fuzz_clear_error();
    tandem_status st = tandem_model_load(path, &mp, &model);
    fuzz_check_failure(st);
    if (st != TANDEM_OK) FUZZ_CHECK(model == NULL);
    return st == TANDEM_OK ? model : NULL;
}

#endif
