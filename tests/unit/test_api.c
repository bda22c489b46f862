/* test_api.c — the public API's contracts: two models in one process, generation streaming equals the
 * result text, argument errors with messages, temporary output files, and that every _free accepts NULL. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "golden.h"

typedef struct stream {
    char buf[8192];
    size_t len;
    int calls;
} stream;

static bool collect(const char *text, size_t len, void *user) {
    stream *s = user;
    if (s->len + len < sizeof s->buf) memcpy(s->buf + s->len, text, len);
    s->len += len;
    s->calls++;
    return true;
}

static bool stop_after_first(const char *text, size_t len, void *user) {
    (void)text;
    (void)len;
    (*(int *)user)++;
    return false;
}

/* Greedy ids of n tokens after prompt, in a fresh context. */
static void greedy(tandem_model *m, const int32_t *prompt, size_t n_prompt, int n, int32_t *out) {
    tandem_ctx *ctx;
    CHECK_OK(tandem_ctx_init(m, NULL, &ctx));
    tandem_gen_params gp = tandem_gen_default_params(m);
    gp.sampling.temperature = 0;
    gp.max_tokens = n;
    gp.ignore_eos = true;
    tandem_gen_result r;
    CHECK_OK(tandem_generate(ctx, prompt, n_prompt, &gp, &r));
    CHECK((int)r.n_ids == n);
    memcpy(out, r.ids, sizeof *out * (size_t)n);
    tandem_gen_result_free(&r);
    tandem_ctx_free(ctx);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *golden = argv[1];
    /* two models at once (the draft/target situation), evaluated alternately */
    tandem_model *a = load_golden_model(golden, "tied_gqa2/model-q8_0.gguf"), *b = load_golden_model(golden, "untied_gqa4");
    if (!a || !b) return test_summary();
    const int32_t prompt[4] = {10, 20, 30, 40};
    int32_t ga[16], gb[16], ga2[16], gb2[16];
    greedy(a, prompt, 4, 16, ga);
    greedy(b, prompt, 4, 16, gb);
    tandem_ctx *ca, *cb;
    CHECK_OK(tandem_ctx_init(a, NULL, &ca));
    CHECK_OK(tandem_ctx_init(b, NULL, &cb));
    CHECK_OK(tandem_ctx_eval(ca, prompt, 4, NULL));
    CHECK_OK(tandem_ctx_eval(cb, prompt, 4, NULL));
    tandem_model_info ia, ib;
    tandem_model_get_info(a, &ia);
    tandem_model_get_info(b, &ib);
    for (int i = 0; i < 16; i++) {  /* interleaved greedy steps */
        const float *la = tandem_ctx_logits(ca), *lb = tandem_ctx_logits(cb);
        int32_t xa = 0, xb = 0;
        for (int v = 1; v < ia.vocab_size; v++) xa = la[v] > la[xa] ? v : xa;
        for (int v = 1; v < ib.vocab_size; v++) xb = lb[v] > lb[xb] ? v : xb;
        ga2[i] = xa;
        gb2[i] = xb;
        CHECK_OK(tandem_ctx_eval(ca, &xa, 1, NULL));
        CHECK_OK(tandem_ctx_eval(cb, &xb, 1, NULL));
    }
    CHECK(memcmp(ga, ga2, sizeof ga) == 0);
    CHECK(memcmp(gb, gb2, sizeof gb) == 0);
    CHECK(memcmp(ga, gb, sizeof ga) != 0);

    /* streamed text == result text; the callback can stop generation */
    CHECK_OK(tandem_ctx_truncate(ca, 0));
    tandem_gen_params gp = tandem_gen_default_params(a);
    gp.sampling.temperature = 0;
    gp.max_tokens = 20;
    gp.ignore_eos = true;
    stream s = {0};
    gp.on_text = collect;
    gp.user = &s;
    tandem_gen_result r;
    CHECK_OK(tandem_generate(ca, prompt, 4, &gp, &r));
    CHECK(s.len == r.text_len && memcmp(s.buf, r.text, r.text_len) == 0 && s.calls > 0);
    tandem_gen_result_free(&r);
    int calls = 0;
    gp.on_text = stop_after_first;
    gp.user = &calls;
    CHECK_OK(tandem_ctx_truncate(ca, 0));
    CHECK_OK(tandem_generate(ca, prompt, 4, &gp, &r));
    CHECK(r.finish == TANDEM_FINISH_ABORTED && calls == 1 && r.n_ids < 20);
    tandem_gen_result_free(&r);

    /* errors name what is wrong */
    int32_t bad = 100000;
    CHECK_FAILS(tandem_ctx_eval(ca, &bad, 1, NULL), TANDEM_ERR_INVALID_ARG, "token id 100000");
    CHECK_FAILS(tandem_ctx_truncate(ca, 1 << 20), TANDEM_ERR_INVALID_ARG, "n_keep");
    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = -5;
    tandem_ctx *none = NULL;
    CHECK_FAILS(tandem_ctx_init(a, &cp, &none), TANDEM_ERR_INVALID_ARG, "n_ctx");
    cp = tandem_ctx_default_params();
    cp.kv_type = TANDEM_TYPE_Q4_0; /* the cache holds f16, f32 or q8_0 */
    CHECK_FAILS(tandem_ctx_init(a, &cp, &none), TANDEM_ERR_INVALID_ARG, "tandem_ctx_params.kv_type Q4_0");
    cp.kv_type = (tandem_type)999;
    CHECK_FAILS(tandem_ctx_init(a, &cp, &none), TANDEM_ERR_INVALID_ARG, "tandem_ctx_params.kv_type ? (type 999)");
    cp.exact = true; /* exact keeps f32, but a bad kv_type is still an error */
    CHECK_FAILS(tandem_ctx_init(a, &cp, &none), TANDEM_ERR_INVALID_ARG, "tandem_ctx_params.kv_type");
    cp = tandem_ctx_default_params();
    cp.kv_type = TANDEM_TYPE_Q8_0; /* untied_gqa4's heads are 16 wide: no whole Q8_0 block */
    CHECK_FAILS(tandem_ctx_init(b, &cp, &none), TANDEM_ERR_INVALID_ARG,
                "tandem_ctx_params.kv_type Q8_0 (type 8): a q8_0 cache needs a head_dim that is a multiple of 32");
    tandem_ctx *q8 = NULL; /* tied_gqa2's are 32 wide */
    CHECK_OK(tandem_ctx_init(a, &cp, &q8));
    if (q8) CHECK(tandem_ctx_kv_type(q8) == TANDEM_TYPE_Q8_0);
    tandem_ctx_free(q8);
    cp = tandem_ctx_default_params();
    cp.n_ctx = 3;  /* the 4-token prompt does not fit: the message names the API field, not a CLI flag */
    tandem_ctx *small = NULL;
    CHECK_OK(tandem_ctx_init(a, &cp, &small));
    if (small) {
        CHECK_FAILS(tandem_generate(small, prompt, 4, &gp, &r), TANDEM_ERR_CONTEXT_FULL,
                    "(raise tandem_ctx_params.n_ctx)");
        CHECK(!strstr(tandem_last_error(), "--"));
    }
    tandem_ctx_free(small);
    tandem_model *missing = NULL;
    CHECK_FAILS(tandem_model_load("/nonexistent/model.gguf", NULL, &missing), TANDEM_ERR_IO, "/nonexistent/model.gguf");
    CHECK(missing == NULL);
    CHECK(strcmp(tandem_status_name(TANDEM_ERR_FORMAT), "format error") == 0);
    CHECK(strcmp(tandem_type_name(TANDEM_TYPE_Q4_0), "Q4_0") == 0 && strcmp(tandem_type_name((tandem_type)99), "?") == 0);

    /* an output's temporary file: next to it, unique, mode 0666 less the umask (not mkstemp's 0600) */
    char dir[] = "/tmp/tandem_test_api.XXXXXX", path[64], missing_path[96];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    snprintf(missing_path, sizeof missing_path, "%s/no-such-dir/out.gguf", dir);
    const mode_t old_umask = umask(027);
    int fd1 = -1, fd2 = -1;
    char *tmp1 = NULL, *tmp2 = NULL;
    CHECK_OK(tandem_temp_file_create(path, &fd1, &tmp1));
    CHECK_OK(tandem_temp_file_create(path, &fd2, &tmp2));
    umask(old_umask);
    struct stat sb;
    CHECK(fd1 >= 0 && fd2 >= 0 && tmp1 && tmp2 && strcmp(tmp1, tmp2) != 0);
    CHECK(tmp1 && strncmp(tmp1, path, strlen(path)) == 0 && strncmp(tmp1 + strlen(path), ".tmp.", 5) == 0);
    CHECK(tmp1 && stat(tmp1, &sb) == 0 && (sb.st_mode & 0777) == 0640);
    CHECK(access(path, F_OK) != 0);  /* the output itself is not created */
    if (fd1 >= 0) close(fd1);
    if (fd2 >= 0) close(fd2);
    if (tmp1) unlink(tmp1);
    if (tmp2) unlink(tmp2);
    tandem_free(tmp1);
    tandem_free(tmp2);
    int fd3 = 7;
    char *tmp3 = (char *)"unchanged";
    CHECK_FAILS(tandem_temp_file_create(missing_path, &fd3, &tmp3), TANDEM_ERR_IO, "no-such-dir/out.gguf");
    CHECK(fd3 == -1 && tmp3 == NULL);
    rmdir(dir);

    /* every _free takes NULL */
    tandem_model_free(NULL);
    tandem_ctx_free(NULL);
    tandem_sampler_free(NULL);
    tandem_tokenizer_free(NULL);
    tandem_detokenizer_free(NULL);
    tandem_gen_result_free(NULL);
    tandem_free(NULL);

    tandem_ctx_free(ca);
    tandem_ctx_free(cb);
    tandem_model_free(a);
    tandem_model_free(b);
    return test_summary();
}
