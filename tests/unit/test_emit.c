/* test_emit.c — the emitter (emit.c) alone, on the real Qwen3 vocabulary, against a plain re-implementation over the
 * whole text: for EVERY way of splitting a string into tokens, the result (ids, finish, text) and the stream. */
#include <stdlib.h>

#include "runtime.h"
#include "test.h"

enum { MAX_TOKEN_LEN = 16, MAX_TEXT = 32, MAX_PATH = 64, MAX_PATHS = 20000 };

static tandem_tokenizer *tok;
static int32_t eos_id, pad_id; /* an end id; an id past the tokenizer (a padding row: no text) */

typedef struct outcome {
    size_t n_ids;
    tandem_finish finish;
    char text[256];
    size_t len;
    size_t complete_after[MAX_PATH]; /* reference: bytes of complete text after each accepted token */
} outcome;

/* Whether s[0..n) is well-formed UTF-8 made of whole characters (RFC 3629: no overlongs, surrogates, > U+10FFFF). */
static bool utf8_whole(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        const unsigned c = s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (k == 0 || i + k > n) return false;
        unsigned cp = k == 1 ? c : c & (0x7F >> k);
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        const unsigned min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += k;
    }
    return true;
}

/* ---- the reference: the whole text at once, after each token ---- */

/* Bytes of buf[0..n) up to the last character boundary (buf is a prefix of valid UTF-8). */
static size_t complete_len(const char *buf, size_t n) {
    size_t c = n;
    while (c > 0 && ((unsigned char)buf[c - 1] & 0xC0) == 0x80) c--; /* back over continuation bytes */
    if (c == 0) return 0;
    const unsigned lead = (unsigned char)buf[c - 1];
    const size_t k = lead < 0x80 ? 1 : (lead >> 5) == 6 ? 2 : (lead >> 4) == 14 ? 3 : 4;
    return n - (c - 1) >= k ? n : c - 1; /* the last character is whole, or cut before its lead byte */
}

static void reference(const int32_t *ids, int n, const tandem_gen_params *gp, outcome *o) {
    memset(o, 0, sizeof *o);
    char buf[256] = {0};
    size_t len = 0;
    if (gp->max_tokens == 0) {
        o->finish = TANDEM_FINISH_LENGTH;
        return;
    }
    for (int i = 0; i < n; i++) {
        o->n_ids = (size_t)i + 1;
        if (!gp->ignore_eos && ids[i] == eos_id) {
            o->finish = TANDEM_FINISH_EOS;
            break;
        }
        size_t tl = 0;
        const char *t = tandem_tokenizer_token_bytes(tok, ids[i], &tl);
        if (t) memcpy(buf + len, t, tl), len += tl;
        const size_t c = complete_len(buf, len);
        o->complete_after[i] = c;
        /* the earliest start of any stop string in the complete text so far */
        size_t cut = SIZE_MAX;
        for (int s = 0; s < gp->n_stop; s++) {
            const size_t sl = strlen(gp->stop[s]);
            for (size_t at = 0; sl > 0 && at + sl <= c && at < cut; at++)
                if (memcmp(buf + at, gp->stop[s], sl) == 0) cut = at;
        }
        if (cut != SIZE_MAX) {
            o->finish = TANDEM_FINISH_STOP_STRING;
            memcpy(o->text, buf, cut);
            o->len = cut;
            return;
        }
        if (gp->max_tokens > 0 && i + 1 >= gp->max_tokens) {
            o->finish = TANDEM_FINISH_LENGTH;
            break;
        }
    }
    const size_t c = complete_len(buf, len);
    memcpy(o->text, buf, c);
    o->len = c;
    if (c < len) memcpy(o->text + c, "\xEF\xBF\xBD", 3), o->len += 3; /* an unfinished character: U+FFFD */
}

/* ---- the emitter ---- */

typedef struct stream {
    char buf[256];
    size_t len;
    int calls, stop_at_call; /* stop_at_call > 0: answer false to that call */
    int last_token;          /* the token being pushed (-1 at the end) */
    int call_token[MAX_PATH];
    bool bad_chunk, after_stop;
} stream;

static bool collect(const char *text, size_t len, void *user) {
    stream *s = user;
    if (s->stop_at_call > 0 && s->calls >= s->stop_at_call) s->after_stop = true;
    if (!utf8_whole((const unsigned char *)text, len) || len == 0) s->bad_chunk = true;
    if (s->len + len <= sizeof s->buf) memcpy(s->buf + s->len, text, len);
    s->len += len;
    if (s->calls < MAX_PATH) s->call_token[s->calls] = s->last_token;
    s->calls++;
    return s->calls != s->stop_at_call;
}

/* Pushes ids while generation goes on, as the decoders do; streamed_after[i]: bytes streamed after token i. */
static void run_emitter(const int32_t *ids, int n, tandem_gen_params *gp, stream *s, outcome *o,
                        size_t *streamed_after) {
    gp->on_text = collect;
    gp->user = s;
    gen_emitter e;
    tandem_gen_result r;
    memset(o, 0, sizeof *o);
    CHECK_OK(emitter_init(&e, gp, tok, tandem_tokenizer_vocab_size(tok), &r, now_ms()));
    for (int i = 0; i < n && r.finish == TANDEM_FINISH_NONE; i++) {
        s->last_token = i;
        CHECK_OK(emitter_push(&e, ids[i], NULL));
        streamed_after[i] = s->len;
    }
    s->last_token = -1;
    CHECK_OK(emitter_end(&e));
    o->n_ids = r.n_ids;
    o->finish = r.finish;
    o->len = r.text_len < sizeof o->text ? r.text_len : sizeof o->text;
    memcpy(o->text, r.text, o->len);
    CHECK(r.n_ids == (size_t)r.timings.n_generated && (r.n_ids == 0 || memcmp(r.ids, ids, r.n_ids * sizeof *ids) == 0));
    CHECK(r.text[r.text_len] == '\0');
    emitter_free(&e);
    tandem_gen_result_free(&r);
}

static int n_runs, n_failed_runs;

/* One sequence of ids under one set of parameters: the emitter against the reference. */
static void check_ids(const int32_t *ids, int n, tandem_gen_params gp, const char *what) {
    outcome want, got;
    stream s = {0};
    size_t streamed_after[MAX_PATH] = {0};
    reference(ids, n, &gp, &want);
    run_emitter(ids, n, &gp, &s, &got, streamed_after);
    size_t max_stop = 0;
    for (int i = 0; i < gp.n_stop; i++) max_stop = strlen(gp.stop[i]) > max_stop ? strlen(gp.stop[i]) : max_stop;
    bool ok = got.n_ids == want.n_ids && got.finish == want.finish && got.len == want.len &&
              memcmp(got.text, want.text, got.len) == 0;
    /* the stream: whole characters in every piece, concatenating to the result's text ... */
    ok = ok && !s.bad_chunk && s.len == got.len && memcmp(s.buf, got.text, got.len) == 0;
    /* ... and never later than needed: all complete text but what could still begin a stop string */
    for (size_t i = 0; ok && i + 1 < got.n_ids; i++)
        ok = streamed_after[i] + (max_stop ? max_stop - 1 : 0) >= want.complete_after[i];
    n_runs++;
    if (!ok && ++n_failed_runs <= 5) {
        fprintf(stderr, "%s, max_tokens %d, ignore_eos %d, ids", what, gp.max_tokens, gp.ignore_eos);
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr,
                ":\n  emitter:   %zu ids, %s, \"%.*s\", streamed \"%.*s\"%s\n  reference: %zu ids, %s, \"%.*s\"\n",
                got.n_ids, tandem_finish_name(got.finish), (int)got.len, got.text,
                (int)(s.len < sizeof s.buf ? s.len : sizeof s.buf), s.buf, s.bad_chunk ? " (a broken piece)" : "",
                want.n_ids, tandem_finish_name(want.finish), (int)want.len, want.text);
    }
    CHECK(ok);
}

/* The callback's false: generation ends there with ABORTED, the text so far kept whole, nothing streamed after. */
static void check_abort(const int32_t *ids, int n, tandem_gen_params gp) {
    stream all = {0};
    outcome o, want;
    size_t streamed_after[MAX_PATH];
    run_emitter(ids, n, &gp, &all, &o, streamed_after);
    for (int call = 1; call <= all.calls && call <= 3; call++) {
        const int token = all.call_token[call - 1];
        if (token < 0) continue; /* the end's call: its answer does not matter */
        stream s = {.stop_at_call = call};
        run_emitter(ids, n, &gp, &s, &o, streamed_after);
        gp.max_tokens = -1;
        reference(ids, token + 1, &gp, &want);
        CHECK(o.finish == TANDEM_FINISH_ABORTED && o.n_ids == (size_t)token + 1 && !s.after_stop);
        CHECK(o.len == want.complete_after[token] && memcmp(o.text, want.text, o.len) == 0);
        CHECK(s.len <= o.len && memcmp(s.buf, o.text, s.len) == 0);
    }
}

/* ---- every split of a string into tokens ---- */

typedef struct split_case {
    const char *text;
    const char *stop[3];
    int n_stop;
} split_case;

static int32_t piece_id[MAX_TEXT][MAX_TOKEN_LEN + 1]; /* id of text[i..i+l), or -1 */
static int32_t path[MAX_PATH];
static size_t path_at[MAX_PATH + 1]; /* byte offset where each token of the path starts */
static int n_paths;

static void check_path(const split_case *c, int n) {
    tandem_gen_params gp = tandem_gen_default_params(NULL);
    gp.stop = c->stop;
    gp.n_stop = c->n_stop;
    const int max_tokens[] = {-1, 0, 1, 2, 3};
    for (size_t m = 0; m < sizeof max_tokens / sizeof *max_tokens; m++) {
        gp.max_tokens = max_tokens[m];
        check_ids(path, n, gp, c->text);
    }
    gp.max_tokens = -1;
    if (n_paths % 5 == 0) check_abort(path, n, gp);
    if (n_paths % 3 != 0) return;
    /* an end id, a padding id at every place: ends there (or, with ignore_eos, its text is text) / adds nothing */
    int32_t with[MAX_PATH + 1];
    for (int j = 0; j <= n; j++) {
        memcpy(with, path, sizeof *path * (size_t)j);
        memcpy(with + j + 1, path + j, sizeof *path * (size_t)(n - j));
        with[j] = pad_id;
        check_ids(with, n + 1, gp, c->text);
        with[j] = eos_id;
        gp.ignore_eos = false;
        check_ids(with, n + 1, gp, c->text);
        /* the end id's text inside a character would break it: only at character boundaries */
        gp.ignore_eos = true;
        if (path_at[j] == strlen(c->text) || ((unsigned char)c->text[path_at[j]] & 0xC0) != 0x80)
            check_ids(with, n + 1, gp, c->text);
        gp.ignore_eos = false;
    }
}

static void enumerate(const split_case *c, size_t at, int n) {
    const size_t len = strlen(c->text);
    if (n_paths >= MAX_PATHS) return;
    if (at == len) {
        check_path(c, n);
        n_paths++;
        return;
    }
    for (size_t l = 1; l <= MAX_TOKEN_LEN && at + l <= len; l++) {
        if (piece_id[at][l] < 0) continue;
        path[n] = piece_id[at][l];
        path_at[n + 1] = at + l;
        enumerate(c, at + l, n + 1);
    }
}

static void check_splits(const split_case *c) {
    const size_t len = strlen(c->text);
    memset(piece_id, 0xFF, sizeof piece_id);
    const int32_t V = tandem_tokenizer_vocab_size(tok);
    for (int32_t id = 0; id < V; id++) {
        size_t tl;
        const char *t = tandem_tokenizer_token_bytes(tok, id, &tl);
        if (!t || tl == 0 || tl > MAX_TOKEN_LEN || id == eos_id) continue;
        for (size_t i = 0; i + tl <= len; i++)
            if (piece_id[i][tl] < 0 && memcmp(c->text + i, t, tl) == 0) piece_id[i][tl] = id;
    }
    for (size_t i = 0; i < len; i++) CHECK_MSG(piece_id[i][1] >= 0, "no token for byte %zu of \"%s\"", i, c->text);
    n_paths = 0;
    path_at[0] = 0;
    const int before = n_runs;
    enumerate(c, 0, 0);
    CHECK_MSG(n_paths < MAX_PATHS, "\"%s\": too many splits to try them all", c->text);
    printf("\"%s\": %d splits into tokens, %d runs\n", c->text, n_paths, n_runs - before);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    if (tandem_tokenizer_load(argv[2], &tok) != TANDEM_OK) {
        fprintf(stderr, "cannot load the Qwen3 tokenizer from %s: %s (run scripts/setup.sh)\n", argv[2],
                tandem_last_error());
        return 1;
    }
    size_t n_eos;
    const int32_t *eos = tandem_tokenizer_eos_ids(tok, &n_eos);
    CHECK(n_eos > 0);
    if (n_eos == 0) return test_summary();
    eos_id = eos[0];
    pad_id = tandem_tokenizer_vocab_size(tok);
    CHECK(tandem_tokenizer_token_bytes(tok, pad_id, &(size_t){0}) == NULL);

    const split_case cases[] = {
        {"Hi END there", {"END", ""}, 2}, /* an empty stop string never matches */
        {"xxabcx", {"abc", "ab"}, 2},     /* a stop string that is a prefix of another: the first wins */
        {"xxabcx", {"ab", "abc"}, 2},
        {"zabcdez", {"abcde", "bcd"}, 2}, /* the earliest start among those in the text */
        {"zabcdez", {"bcd", "abcde"}, 2},
        {"aaab", {"aab"}, 1},  /* a held-back tail that overlaps itself */
        {"abcab", {"abd"}, 1}, /* a partial stop string at the end is ordinary text */
        {"a\n\nb\n", {"\n\n"}, 1},
        {"a\xC3\xA9\xF0\x9F\x98\x80"
         "b\xE4\xB8\xAD"
         "c",
         {0},
         0}, /* aé😀b中c: characters split across tokens */
        {"a\xC3\xA9\xF0\x9F\x98\x80"
         "b\xE4\xB8\xAD"
         "c",
         {"\xF0\x9F\x98\x80"
          "b"},
         1},                                                          /* a stop string of both */
        {"\xE4\xB8\xAD\xE6\x96\x87 end", {"\xE6\x96\x87 e", "d"}, 2}, /* 中文 end */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_splits(&cases[i]);
    printf("%d emitter runs, %d differ from the reference\n", n_runs, n_failed_runs);

    /* the stop text itself is never in the result, and the id that completed it is */
    tandem_gen_params gp = tandem_gen_default_params(NULL);
    const char *stop[] = {"END"};
    gp.stop = stop;
    gp.n_stop = 1;
    int32_t *ids;
    size_t n_ids;
    CHECK_OK(tandem_tokenizer_encode(tok, "Hi END there", 12, false, &ids, &n_ids));
    stream s = {0};
    outcome o;
    size_t streamed_after[MAX_PATH];
    run_emitter(ids, (int)n_ids, &gp, &s, &o, streamed_after);
    CHECK(o.finish == TANDEM_FINISH_STOP_STRING && o.len == 3 && memcmp(o.text, "Hi ", 3) == 0 && o.n_ids < n_ids);
    tandem_free(ids);
    /* a NULL stop string is refused, naming it */
    const char *bad_stop[] = {"x", NULL};
    gp.stop = bad_stop;
    gp.n_stop = 2;
    gen_emitter e;
    tandem_gen_result r;
    CHECK_FAILS(emitter_init(&e, &gp, tok, tandem_tokenizer_vocab_size(tok), &r, 0), TANDEM_ERR_INVALID_ARG,
                "stop string 1 is NULL");
    emitter_free(&e);
    tandem_gen_result_free(&r);
    tandem_tokenizer_free(tok);
    return test_summary();
}
