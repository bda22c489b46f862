/* test_convert.c — the converter library in C (so the sanitizer builds run it): the recipe's per-tensor types
 * for an 8-layer model worked out by hand from llama.cpp's rules, converting the golden folders at every
 * format into files tandem loads again, re-quantizing, aborting from the progress callback, and refusals. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "convert.h"
#include "golden.h"

/* ---- the recipe on a synthetic Qwen3 of 8 layers, dim 1024 (rows of whole 256-blocks) ---- */

enum { N_LAYERS = 8 };

static tandem_type plan_one(tandem_ftype f, float ratio, const char *name, int64_t cols, bool tied, int n_gqa) {
    planned_tensor t = {.name = name, .n_dims = 2, .cols = cols, .n_elements = cols * 1024};
    CHECK(tensor_kind_of(name, &t.kind, &t.layer));
    recipe r = {.ftype = f, .ratio = ratio, .n_layers = N_LAYERS, .n_gqa = n_gqa, .tied = tied};
    tandem_type type = TANDEM_TYPE_COUNT;
    CHECK_OK(recipe_plan(&r, &t, 1, &type));
    return type;
}

static void recipe_rules(void) {
    /* use_more_bits(i, 8): i < 1, i ≥ 7, (i − 1) % 3 == 2 → layers 0, 3, 6, 7 */
    const bool more[N_LAYERS] = {true, false, false, true, false, false, true, true};
    for (int l = 0; l < N_LAYERS; l++) {
        char v[64], down[64], q[64];
        snprintf(v, sizeof v, "blk.%d.attn_v.weight", l);
        snprintf(down, sizeof down, "blk.%d.ffn_down.weight", l);
        snprintf(q, sizeof q, "blk.%d.attn_q.weight", l);
        CHECK(plan_one(TANDEM_FTYPE_Q4_K_M, 1, v, 1024, false, 2) == (more[l] ? TANDEM_TYPE_Q6_K : TANDEM_TYPE_Q4_K));
        CHECK(plan_one(TANDEM_FTYPE_Q5_K_M, 1, down, 1024, false, 2) == (more[l] ? TANDEM_TYPE_Q6_K : TANDEM_TYPE_Q5_K));
        CHECK(plan_one(TANDEM_FTYPE_Q4_K_M, 1, q, 1024, false, 2) == TANDEM_TYPE_Q4_K);
        CHECK(plan_one(TANDEM_FTYPE_Q4_K, 1, v, 1024, false, 2) == TANDEM_TYPE_Q4_K);  /* pure */
        /* IQ4_NL: attn_v Q5_K from a GQA ratio of 4; ffn_down of the first eighth (layer 0) Q5_K */
        CHECK(plan_one(TANDEM_FTYPE_IQ4_NL, 1, v, 1024, false, 4) == TANDEM_TYPE_Q5_K);
        CHECK(plan_one(TANDEM_FTYPE_IQ4_NL, 1, v, 1024, false, 2) == TANDEM_TYPE_IQ4_NL);
        CHECK(plan_one(TANDEM_FTYPE_IQ4_NL, 1, down, 1024, false, 2) == (l == 0 ? TANDEM_TYPE_Q5_K : TANDEM_TYPE_IQ4_NL));
    }
    /* the output head: Q6_K unless the base is Q8_0, Q8_0 when rows are not whole base blocks */
    CHECK(plan_one(TANDEM_FTYPE_Q4_0, 1, "output.weight", 1024, false, 2) == TANDEM_TYPE_Q6_K);
    CHECK(plan_one(TANDEM_FTYPE_Q8_0, 1, "output.weight", 1024, false, 2) == TANDEM_TYPE_Q8_0);
    CHECK(plan_one(TANDEM_FTYPE_Q4_K_M, 1, "output.weight", 1088, false, 2) == TANDEM_TYPE_Q8_0);
    CHECK(plan_one(TANDEM_FTYPE_Q4_K_M, 1, "token_embd.weight", 1024, true, 2) == TANDEM_TYPE_Q6_K);
    CHECK(plan_one(TANDEM_FTYPE_Q4_K_M, 1, "token_embd.weight", 1024, false, 2) == TANDEM_TYPE_Q4_K);
    CHECK(plan_one(TANDEM_FTYPE_F16, 1, "token_embd.weight", 1024, true, 2) == TANDEM_TYPE_F16);
    /* fallbacks for rows that are not whole 256-blocks (1088 = 34 · 32), and F16 when not even 32-blocks */
    CHECK(plan_one(TANDEM_FTYPE_Q4_K, 1, "blk.1.attn_q.weight", 1088, false, 2) == TANDEM_TYPE_Q5_0);
    CHECK(plan_one(TANDEM_FTYPE_Q5_K, 1, "blk.1.attn_q.weight", 1088, false, 2) == TANDEM_TYPE_Q5_1);
    CHECK(plan_one(TANDEM_FTYPE_Q6_K, 1, "blk.1.attn_q.weight", 1088, false, 2) == TANDEM_TYPE_Q8_0);
    CHECK(plan_one(TANDEM_FTYPE_Q2_K, 1, "blk.1.attn_q.weight", 1088, false, 2) == TANDEM_TYPE_Q4_0);
    CHECK(plan_one(TANDEM_FTYPE_Q4_0, 1, "blk.1.attn_q.weight", 1000, false, 2) == TANDEM_TYPE_F16);
    /* --ratio: the first of the ranking (layer 0's attn_v) goes to Q8_0 with any ratio below 1 */
    CHECK(plan_one(TANDEM_FTYPE_Q4_0, 0.999f, "blk.0.attn_v.weight", 1024, false, 2) == TANDEM_TYPE_Q8_0);
    recipe bad = {.ftype = TANDEM_FTYPE_Q8_0, .ratio = 0.5f, .n_layers = 1, .n_gqa = 1};
    planned_tensor t = {.name = "blk.0.attn_q.weight", .kind = KIND_ATTN_Q, .layer = 0, .n_dims = 2, .cols = 32,
                        .n_elements = 32};
    tandem_type type;
    CHECK_FAILS(recipe_plan(&bad, &t, 1, &type), TANDEM_ERR_INVALID_ARG, "ratio");
    tensor_kind k;
    int32_t l;
    CHECK(!tensor_kind_of("blk.0.mlp.weird", &k, &l) && !tensor_kind_of("lm_head.weight", &k, &l));

    tandem_ftype f;
    CHECK_OK(tandem_ftype_parse("int4", false, &f));
    CHECK(f == TANDEM_FTYPE_Q4_0);
    CHECK_OK(tandem_ftype_parse("int4", true, &f));
    CHECK(f == TANDEM_FTYPE_Q4_1);
    CHECK_OK(tandem_ftype_parse("nf4", false, &f));
    CHECK(f == TANDEM_FTYPE_IQ4_NL && !strcmp(tandem_ftype_name(f), "IQ4_NL"));
    CHECK_OK(tandem_ftype_parse("q4_k_m", false, &f));
    CHECK(f == TANDEM_FTYPE_Q4_K_M);
    CHECK_FAILS(tandem_ftype_parse("int3", false, &f), TANDEM_ERR_INVALID_ARG, "int3");
}

/* ---- whole files ---- */

static int files_in(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

/* Stops at the second tensor, while the temporary file is being written. */
static bool stop_at_write(const char *stage, int64_t done, int64_t total, void *user) {
    (void)done;
    (void)total;
    return strcmp(stage, "convert") == 0 && ++*(int *)user < 2;
}

static void convert_and_load(const char *golden, const char *tmp) {
    static const tandem_ftype FORMATS[] = {TANDEM_FTYPE_F32,  TANDEM_FTYPE_F16,    TANDEM_FTYPE_BF16,
                                           TANDEM_FTYPE_Q8_0, TANDEM_FTYPE_Q4_0,   TANDEM_FTYPE_Q4_1,
                                           TANDEM_FTYPE_Q5_0, TANDEM_FTYPE_IQ4_NL, TANDEM_FTYPE_Q4_K_M,
                                           TANDEM_FTYPE_Q6_K};
    static const char *const MODELS[] = {"tied_gqa2", "sharded", "bf16", "untied_gqa4"};
    char src[4096], out[4096];
    for (size_t m = 0; m < sizeof MODELS / sizeof MODELS[0]; m++) {
        snprintf(src, sizeof src, "%s/models/%s", golden, MODELS[m]);
        for (size_t i = 0; i < sizeof FORMATS / sizeof FORMATS[0]; i++) {
            snprintf(out, sizeof out, "%s/%s-%s.gguf", tmp, MODELS[m], tandem_ftype_name(FORMATS[i]));
            tandem_convert_params p = tandem_convert_default_params();
            p.ftype = FORMATS[i];
            p.n_threads = 2;
            CHECK_OK(tandem_convert(src, out, &p));
            tandem_model *model = NULL;
            tandem_model_params mp = tandem_model_default_params();
            mp.n_threads = 1;
            CHECK_OK(tandem_model_load(out, &mp, &model));
            if (model) {
                tandem_model_info info;
                tandem_model_get_info(model, &info);
                CHECK(info.n_layers >= 2 && tandem_tokenizer_chat_template(tandem_model_tokenizer(model)) != NULL);
            }
            tandem_model_free(model);
        }
    }
    /* re-quantize one of them, then refuse to overwrite, then overwrite when asked */
    snprintf(src, sizeof src, "%s/tied_gqa2-Q4_K_M.gguf", tmp);
    snprintf(out, sizeof out, "%s/requantized.gguf", tmp);
    tandem_convert_params p = tandem_convert_default_params();
    p.ftype = TANDEM_FTYPE_Q8_0;
    CHECK_OK(tandem_quantize_file(src, out, &p));
    CHECK_FAILS(tandem_quantize_file(src, out, &p), TANDEM_ERR_INVALID_ARG, "already exists");
    p.overwrite = true;
    CHECK_OK(tandem_quantize_file(src, out, &p));
    /* a stop from the progress callback during the write leaves no file */
    const int before = files_in(tmp);
    snprintf(src, sizeof src, "%s/models/tied_gqa2", golden);
    snprintf(out, sizeof out, "%s/stopped.gguf", tmp);
    int calls = 0;
    p.progress = stop_at_write;
    p.user = &calls;
    CHECK_FAILS(tandem_convert(src, out, &p), TANDEM_ERR_ABORTED, "stopped");
    CHECK(calls == 2 && files_in(tmp) == before && access(out, F_OK) != 0);
    snprintf(src, sizeof src, "%s/models/no-such-model", golden);
    CHECK_FAILS(tandem_convert(src, out, NULL), TANDEM_ERR_IO, "no-such-model");
}

int main(int argc, char **argv) {
    const char *golden = argc > 1 ? argv[1] : "tests/golden";
    recipe_rules();
    char tmp[] = "/tmp/tandem-test-convert-XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    convert_and_load(golden, tmp);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return test_summary();
}
