/* test_train_data.c — training samples from JSONL (train_data.c): prompt/completion samples packed whole into
 * windows, targets only on completions, long samples cut to their end, and every malformed line named. */
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "train.h"

static tandem_tokenizer *tok;

static int32_t *encode(const char *s, size_t *n) {
    int32_t *ids = NULL;
    CHECK_OK(tandem_tokenizer_encode(tok, s, strlen(s), true, &ids, n));
    return ids;
}

/* The rule, written out: window w holds samples at offsets; token j of a sample at offset o is input o+j (if < T)
 * and, when it counts and j > 0, the target of position o+j−1. */
static void expect_sample(const train_windows *w, int64_t win, int off, const char *prompt, const char *completion,
                          bool all_count) {
    size_t np, nc = 0;
    int32_t *p = encode(prompt, &np), *c = completion ? encode(completion, &nc) : NULL;
    const int32_t *in = w->inputs + win * w->T, *tg = w->targets + win * w->T;
    for (size_t j = 0; j < np + nc; j++) {
        const int32_t id = j < np ? p[j] : c[j - np];
        const int at = off + (int)j;
        if (at < w->T) CHECK_MSG(in[at] == id, "window %lld input %d: %d != %d", (long long)win, at, in[at], id);
        if (at > 0) {
            const int32_t want = j > 0 && (all_count || j >= np) ? id : -1;
            CHECK_MSG(tg[at - 1] == want, "window %lld target %d: %d != %d", (long long)win, at - 1, tg[at - 1], want);
        }
    }
    tandem_free(p);
    tandem_free(c);
}

static size_t n_tokens(const char *a, const char *b) {
    size_t na, nb = 0;
    tandem_free(encode(a, &na));
    if (b) tandem_free(encode(b, &nb));
    return na + nb;
}

static void packing(void) {
    const char *p1 = "<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n", *c1 = "hi!<|im_end|>";
    const char *p2 = "<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n", *c2 = "yes<|im_end|>";
    const char *t3 = "plain text, all of it counts";
    const size_t n1 = n_tokens(p1, c1), n2 = n_tokens(p2, c2), n3 = n_tokens(t3, NULL);
    char data[1024];
    snprintf(data, sizeof data,
             "{\"prompt\": \"%s\", \"completion\": \"%s\"}\n\n  \n{\"completion\": \"%s\", \"prompt\": \"%s\"}\r\n"
             "{\"text\": \"%s\"}",
             "<|im_start|>user\\nhello there<|im_end|>\\n<|im_start|>assistant\\n", "hi!<|im_end|>", "yes<|im_end|>",
             "<|im_start|>user\\nmore<|im_end|>\\n<|im_start|>assistant\\n", t3);
    /* T + 1 = n1 + n2: the first two share a window, the third opens the next */
    train_windows w;
    const int T = (int)(n1 + n2) - 1;
    CHECK_OK(train_windows_from_jsonl("d.jsonl", data, strlen(data), tok, T, 7, &w));
    CHECK(w.n == 2 && w.T == T);
    if (w.n == 2) {
        expect_sample(&w, 0, 0, p1, c1, false);
        expect_sample(&w, 0, (int)n1, p2, c2, false);
        expect_sample(&w, 1, 0, t3, NULL, true);
        for (int i = (int)n3; i < T; i++) CHECK(w.inputs[T + i] == 7 && w.targets[T + i - 1] == -1);
        CHECK(w.targets[T + T - 1] == -1);
        int counted = 0;
        for (int i = 0; i < T; i++) counted += w.targets[i] >= 0;
        CHECK(counted == (int)(n_tokens(c1, NULL) + n_tokens(c2, NULL))); /* the completions, nothing else */
    }
    train_windows_free(&w);

    /* one token less: the second sample does not fit and opens a window of its own */
    CHECK_OK(train_windows_from_jsonl("d.jsonl", data, strlen(data), tok, T - 1, 7, &w));
    CHECK(w.n == (n2 + n3 <= (size_t)T ? 2 : 3));
    if (w.n >= 2) expect_sample(&w, 1, 0, p2, c2, false);
    train_windows_free(&w);

    /* a sample longer than T + 1 keeps its last T + 1 tokens: the completion's end is still learnt */
    const char
        *line = "{\"prompt\": \"one two three four five six seven eight nine ten eleven\", \"completion\": \" ok\"}";
    CHECK_OK(train_windows_from_jsonl("d.jsonl", line, strlen(line), tok, 4, 0, &w));
    size_t np, nc;
    int32_t *p = encode("one two three four five six seven eight nine ten eleven", &np), *c = encode(" ok", &nc);
    CHECK(w.n == 1 && np + nc > 5);
    if (w.n == 1 && np + nc > 5) {
        int32_t all[64];
        memcpy(all, p, np * sizeof *p), memcpy(all + np, c, nc * sizeof *c);
        const size_t first = np + nc - 5;
        for (int i = 0; i < 4; i++) CHECK(w.inputs[i] == all[first + i]);
        CHECK(w.targets[3] == all[np + nc - 1]);
    }
    tandem_free(p);
    tandem_free(c);
    train_windows_free(&w);

    /* the order of a pass is a permutation, the same for the same seed and pass, another for the next pass */
    int64_t a[50], b[50], seen[50] = {0};
    train_windows_order(a, 50, 3, 0);
    train_windows_order(b, 50, 3, 0);
    CHECK(!memcmp(a, b, sizeof a));
    for (int i = 0; i < 50; i++) seen[a[i]]++;
    bool perm = true;
    for (int i = 0; i < 50; i++) perm &= seen[i] == 1;
    CHECK(perm);
    train_windows_order(b, 50, 3, 1);
    CHECK(memcmp(a, b, sizeof a) != 0);
}

static void bad_lines(void) {
    static const struct {
        const char *data, *needle;
    } cases[] = {
        {"{\"prompt\": \"a\", \"completion\": \"b\"}\n{not json}\n", "bad.jsonl:2: not valid JSON"},
        {"[1, 2]\n", "bad.jsonl:1: not a JSON object"},
        {"{\"prompt\": \"a b c\"}\n", "bad.jsonl:1: expected \"prompt\" and \"completion\" strings"},
        {"\n{\"prompt\": \"a\", \"completion\": 3}\n", "bad.jsonl:2: expected \"prompt\" and \"completion\""},
        {"{\"text\": \"a\", \"prompt\": \"b\", \"completion\": \"c\"}", "bad.jsonl:1: \"text\" and \"prompt\""},
        {"\n\n", "bad.jsonl: no samples of two tokens or more"},
        {"{\"text\": \"\"}", "bad.jsonl: no samples"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        train_windows w;
        CHECK_FAILS(train_windows_from_jsonl("bad.jsonl", cases[i].data, strlen(cases[i].data), tok, 16, 0, &w),
                    i < 5 ? TANDEM_ERR_FORMAT : TANDEM_ERR_INVALID_ARG, cases[i].needle);
        CHECK(w.inputs == NULL && w.n == 0);
    }
}

int main(int argc, char **argv) {
    const char *golden = argc > 1 ? argv[1] : "tests/golden";
    char path[1024];
    snprintf(path, sizeof path, "%s/models/tied_gqa2", golden);
    CHECK_OK(tandem_tokenizer_load(path, &tok));
    if (tok) {
        packing();
        bad_lines();
    }
    tandem_tokenizer_free(tok);
    return test_summary();
}
