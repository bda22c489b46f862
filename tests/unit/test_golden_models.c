/* test_golden_models.c — tandem's Qwen3 forward pass against Hugging Face transformers: logits of every
 * position (batched prefill, token-by-token decode, chunked), 64 greedy tokens, and KV rollback; the 8-bit path with
 * f16 and q8_0 KV caches, and a q8_0 cache against f32 and f16 ones.
 * References come from tests/gen/make_golden.py; tests/golden/models/manifest.json lists every model, its
 * variants (the HF folder ".", or a GGUF file) and the reference .safetensors of each. */
#include <jansson.h>
#include <stdlib.h>

#include "safetensors.h"
#include "tandem.h"
#include "golden.h"
#include "test.h"

/* f32 arithmetic in a different order than PyTorch: differences are ~1e-6 relative; the bar is
 * 1e-4 absolute on logits (references for quantized files use the dequantized weights, so the same bar). */
static const double LOGIT_TOL = 1e-4;

typedef struct reference {
    st_set *st;
    const int32_t *prompt, *greedy, *prompt2;
    const float *logits, *logits2;  /* (n_prompt + n_greedy, vocab), (n_prompt2, vocab) */
    int n_prompt, n_greedy, n_prompt2, vocab;
} reference;

static const st_tensor *need(const st_set *st, const char *name, const char *dtype, int n_dims) {
    const st_tensor *t = safetensors_find(st, name);
    if (!t || strcmp(t->dtype, dtype) != 0 || t->n_dims != n_dims) return NULL;
    return t;
}

static bool load_reference(const char *path, reference *r) {
    memset(r, 0, sizeof *r);
    if (safetensors_open_file(path, &r->st) != TANDEM_OK) {
        fprintf(stderr, "%s: %s\n", path, tandem_last_error());
        return false;
    }
    const st_tensor *p = need(r->st, "prompt", "I32", 1), *g = need(r->st, "greedy", "I32", 1),
                    *l = need(r->st, "logits", "F32", 2), *p2 = need(r->st, "prompt2", "I32", 1),
                    *l2 = need(r->st, "logits2", "F32", 2);
    if (!p || !g || !l || !p2 || !l2) {
        fprintf(stderr, "%s: reference tensors missing or of the wrong type\n", path);
        return false;
    }
    r->prompt = p->data;
    r->greedy = g->data;
    r->prompt2 = p2->data;
    r->logits = l->data;
    r->logits2 = l2->data;
    r->n_prompt = (int)p->shape[0];
    r->n_greedy = (int)g->shape[0];
    r->n_prompt2 = (int)p2->shape[0];
    r->vocab = (int)l->shape[1];
    return l->shape[0] == r->n_prompt + r->n_greedy && l2->shape[0] == r->n_prompt2 && l2->shape[1] == r->vocab;
}

/* The checks against transformers use the exact path (f32 activations); check_fast_path below measures
 * the default 8-bit-activation path against the same reference. */
static tandem_ctx *new_ctx_cache(tandem_model *m, int n_ctx, int n_batch, bool exact, tandem_type kv_type) {
    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.exact = exact;
    cp.kv_type = kv_type;
    tandem_ctx *ctx = NULL;
    CHECK_OK(tandem_ctx_init(m, &cp, &ctx));
    return ctx;
}
static tandem_ctx *new_ctx(tandem_model *m, int n_ctx, int n_batch) {
    return new_ctx_cache(m, n_ctx, n_batch, true, TANDEM_TYPE_F32);
}

/* The default path quantizes activations to 8 bits per 32 values (for the weight types with integer dot
 * products). Its logits stay close to transformers': RMS error relative to the logits' RMS spread, and the
 * top token at each position where the reference's top two are 0.3 apart (measured: RMS 1.8–2.8%, top-1
 * all; transformers-initialised tiny models have logit spread ~1.2, so the margins are wide relative
 * to the 8-bit rounding but near ties elsewhere make greedy runs diverge, which is why they are not compared). */
static void check_fast_path(tandem_model *m, const char *label, const reference *r, const int32_t *seq, int n_seq,
                            float *logits, tandem_type kv_type) {
    tandem_ctx *ctx = new_ctx_cache(m, 128, 64, false, kv_type);
    CHECK_OK(tandem_ctx_eval(ctx, seq, n_seq, logits));
    const int V = r->vocab;
    double err2 = 0, spread2 = 0;
    int agree = 0, counted = 0;
    for (int t = 0; t < n_seq; t++) {
        const float *ref = r->logits + (size_t)t * V, *got = logits + (size_t)t * V;
        double mean = 0;
        for (int v = 0; v < V; v++) mean += ref[v];
        mean /= V;
        int best_ref = 0, best_got = 0;
        float second = -1e30f;
        for (int v = 0; v < V; v++) {
            err2 += ((double)got[v] - ref[v]) * ((double)got[v] - ref[v]);
            spread2 += ((double)ref[v] - mean) * ((double)ref[v] - mean);
            if (ref[v] > ref[best_ref]) best_ref = v;
            if (got[v] > got[best_got]) best_got = v;
        }
        for (int v = 0; v < V; v++)
            if (v != best_ref && ref[v] > second) second = ref[v];
        if (ref[best_ref] - second > 0.3f) {  /* the largest |Δlogit| seen is 0.25 */
            counted++;
            agree += best_ref == best_got;
        }
    }
    const double rel = sqrt(err2 / spread2);
    const char *kv_name = tandem_type_name(kv_type);
    printf("  8-bit path, %s cache: rms %.2e, top-1 %d/%d", kv_name, rel, agree, counted);
    CHECK_MSG(rel < 0.05, "%s: 8-bit activation path, %s cache: RMS logit error %.3g of the spread", label, kv_name,
              rel);
    CHECK_MSG(agree == counted, "%s: 8-bit activation path, %s cache: top token differs at %d of %d clear positions",
              label, kv_name, counted - agree, counted);
    tandem_ctx_free(ctx);
}

/* The largest and the second largest logit of a row. */
static void top_two(const float *row, int V, int *best, float *margin) {
    int b = 0;
    for (int v = 1; v < V; v++)
        if (row[v] > row[b]) b = v;
    float second = -INFINITY;
    for (int v = 0; v < V; v++)
        if (v != b && row[v] > second) second = row[v];
    *best = b;
    *margin = row[b] - second;
}

/* A Q8_0 cache against an f32 one and the default f16 one, all on the 8-bit path, so that only the cache differs.
 * (1) Over the reference sequence: the logits' RMS difference from the f32 cache's, relative to their spread
 * (measured 0.8% on float weights, 2.3% on quantized ones, where the 8-bit activations amplify it), and the top token
 * wherever the f32 cache's top two are 0.3 apart. (2) Greedy: the f16 cache's 64 greedy tokens, evaluated in one pass
 * with each cache (a pass gives the logits of the steps that generate): wherever the f16 cache's top two are
 * CLEAR_MARGIN apart, the q8_0 cache's choice is the same (the largest |Δlogit| between the two caches measured at
 * these positions is 0.16: this leaves twice that), and the q8_0 cache's own greedy run repeats the f16 cache's up to
 * the first position that is not clear. At least a quarter of the positions must be clear (measured: half). */
static void check_q8_0_cache(tandem_model *m, const char *label, const reference *r, const int32_t *seq, int n_seq) {
    const float CLEAR_MARGIN = 0.3f;
    const int V = r->vocab;
    float *l32 = malloc(sizeof(float) * (size_t)n_seq * V), *l8 = malloc(sizeof(float) * (size_t)n_seq * V);
    int32_t *run = malloc(sizeof *run * (size_t)n_seq);
    tandem_ctx *c32 = new_ctx_cache(m, 128, 64, false, TANDEM_TYPE_F32);
    tandem_ctx *c8 = new_ctx_cache(m, 128, 64, false, TANDEM_TYPE_Q8_0);
    tandem_ctx *c16 = new_ctx_cache(m, 128, 64, false, TANDEM_TYPE_F16);
    tandem_gen_result g16 = {0}, g8 = {0};
    if (!l32 || !l8 || !run || !c32 || !c8 || !c16) goto out;
    CHECK_OK(tandem_ctx_eval(c32, seq, n_seq, l32));
    CHECK_OK(tandem_ctx_eval(c8, seq, n_seq, l8));
    double err2 = 0, spread2 = 0;
    int agree = 0, counted = 0;
    for (int t = 0; t < n_seq; t++) {
        const float *a = l32 + (size_t)t * V, *b = l8 + (size_t)t * V;
        double mean = 0;
        for (int v = 0; v < V; v++) mean += a[v];
        mean /= V;
        for (int v = 0; v < V; v++) {
            err2 += ((double)b[v] - a[v]) * ((double)b[v] - a[v]);
            spread2 += ((double)a[v] - mean) * ((double)a[v] - mean);
        }
        int best32, best8;
        float margin, unused;
        top_two(a, V, &best32, &margin);
        top_two(b, V, &best8, &unused);
        if (margin > CLEAR_MARGIN) counted++, agree += best32 == best8;
    }
    const double rel = sqrt(err2 / spread2);
    printf("  q8_0 cache vs f32: rms %.2e, top-1 %d/%d", rel, agree, counted);
    CHECK_MSG(rel < 0.04, "%s: q8_0 cache: RMS logit difference from an f32 cache %.3g of the spread", label, rel);
    CHECK_MSG(agree == counted, "%s: q8_0 cache: top token differs from an f32 cache's at %d of %d clear positions",
              label, counted - agree, counted);

    tandem_gen_params gp = tandem_gen_default_params(m);
    gp.sampling.temperature = 0;
    gp.sampling.repeat_penalty = 1;
    gp.max_tokens = r->n_greedy;
    gp.ignore_eos = true;
    CHECK_OK(tandem_generate(c16, r->prompt, (size_t)r->n_prompt, &gp, &g16));
    CHECK_OK(tandem_ctx_truncate(c8, 0));
    CHECK_OK(tandem_generate(c8, r->prompt, (size_t)r->n_prompt, &gp, &g8));
    const int n_gen = (int)g16.n_ids, n_all = r->n_prompt + n_gen;
    CHECK(n_gen == r->n_greedy && n_all <= n_seq);
    if (n_gen != r->n_greedy || n_all > n_seq) goto out;
    memcpy(run, r->prompt, sizeof *run * (size_t)r->n_prompt);
    memcpy(run + r->n_prompt, g16.ids, sizeof *run * (size_t)n_gen);
    CHECK_OK(tandem_ctx_truncate(c16, 0));
    CHECK_OK(tandem_ctx_truncate(c8, 0));
    CHECK_OK(tandem_ctx_eval(c16, run, n_all - 1, l32)); /* l32 now holds the f16 cache's logits */
    CHECK_OK(tandem_ctx_eval(c8, run, n_all - 1, l8));
    int clear = 0, same_clear = 0, first_unclear = n_gen;
    for (int i = 0; i < n_gen; i++) {
        const size_t at = (size_t)(r->n_prompt - 1 + i) * V;
        int best16, best8;
        float margin, unused;
        top_two(l32 + at, V, &best16, &margin);
        top_two(l8 + at, V, &best8, &unused);
        CHECK_MSG(best16 == g16.ids[i], "%s: the f16 cache's pass disagrees with its own generation", label);
        if (margin > CLEAR_MARGIN) clear++, same_clear += best8 == best16;
        else if (first_unclear == n_gen) first_unclear = i;
    }
    int same = 0;
    while (same < (int)g8.n_ids && same < n_gen && g8.ids[same] == g16.ids[same]) same++;
    printf(", greedy: %d/%d clear choices the f16 cache's, the run the same for %d (first unclear %d)", same_clear,
           clear, same, first_unclear);
    CHECK_MSG(same_clear == clear, "%s: q8_0 cache: %d of %d clear greedy choices differ from the f16 cache's", label,
              clear - same_clear, clear);
    CHECK_MSG(same >= first_unclear, "%s: q8_0 cache's greedy run leaves the f16 cache's at %d, before %d", label, same,
              first_unclear);
    CHECK_MSG(clear >= n_gen / 4, "%s: only %d of %d greedy choices are clear", label, clear, n_gen);
out:
    tandem_gen_result_free(&g16);
    tandem_gen_result_free(&g8);
    tandem_ctx_free(c32);
    tandem_ctx_free(c8);
    tandem_ctx_free(c16);
    free(run);
    free(l32);
    free(l8);
}

static void check_variant(const char *label, const char *model_path, const reference *r) {
    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = 2;
    tandem_model *m = NULL;
    CHECK_OK(tandem_model_load(model_path, &mp, &m));
    if (!m) return;
    tandem_model_info info;
    tandem_model_get_info(m, &info);
    CHECK_MSG(info.vocab_size == r->vocab, "%s: vocab %d vs reference %d", label, info.vocab_size, r->vocab);
    if (info.vocab_size != r->vocab) goto out;
    const int n_seq = r->n_prompt + r->n_greedy, V = r->vocab;
    int32_t *seq = malloc(sizeof *seq * (size_t)n_seq);
    float *logits = malloc(sizeof *logits * (size_t)n_seq * V);
    memcpy(seq, r->prompt, sizeof *seq * (size_t)r->n_prompt);
    memcpy(seq + r->n_prompt, r->greedy, sizeof *seq * (size_t)r->n_greedy);

    /* 1. the whole sequence in batched passes (n_batch 64: two chunks), every position's logits */
    tandem_ctx *ctx = new_ctx(m, 128, 64);
    CHECK_OK(tandem_ctx_eval(ctx, seq, n_seq, logits));
    double d = max_abs_diff(logits, r->logits, (size_t)n_seq * V);
    CHECK_MSG(d < LOGIT_TOL, "%s: batched logits differ from transformers by %g", label, d);
    printf("%-28s batched max|Δlogit| %.2e", label, d);

    /* 2. token by token (the decode path), and tandem_ctx_logits after each step */
    CHECK_OK(tandem_ctx_truncate(ctx, 0));
    double worst = 0;
    for (int t = 0; t < n_seq; t++) {
        CHECK_OK(tandem_ctx_eval(ctx, seq + t, 1, NULL));
        d = max_abs_diff(tandem_ctx_logits(ctx), r->logits + (size_t)t * V, (size_t)V);
        if (!(d <= worst)) worst = d;
    }
    CHECK_MSG(worst < LOGIT_TOL, "%s: decode logits differ from transformers by %g", label, worst);
    printf("  decode %.2e", worst);

    /* 3. KV rollback: feed wrong tokens, roll back, continue with the right ones (odd chunk sizes) */
    CHECK_OK(tandem_ctx_truncate(ctx, 0));
    CHECK_OK(tandem_ctx_eval(ctx, seq, 21, NULL));
    int32_t wrong[7];
    for (int i = 0; i < 7; i++) wrong[i] = (seq[21 + i] + 1 + i) % V;
    CHECK_OK(tandem_ctx_eval(ctx, wrong, 7, NULL));
    CHECK_OK(tandem_ctx_truncate(ctx, 21));
    CHECK(tandem_ctx_logits(ctx) == NULL);
    CHECK_OK(tandem_ctx_eval(ctx, seq + 21, 3, logits));  /* verification-style pass of 3 tokens */
    d = max_abs_diff(logits, r->logits + (size_t)21 * V, (size_t)3 * V);
    CHECK_OK(tandem_ctx_eval(ctx, seq + 24, n_seq - 24, NULL));
    double d_last = max_abs_diff(tandem_ctx_logits(ctx), r->logits + (size_t)(n_seq - 1) * V, (size_t)V);
    CHECK_MSG(d < LOGIT_TOL && d_last < LOGIT_TOL, "%s: after rollback logits differ by %g / %g", label, d, d_last);
    printf("  rollback %.2e", d > d_last ? d : d_last);
    tandem_ctx_free(ctx);

    /* 4. greedy generation of 64 tokens from the prompt, with a small batch to exercise chunking */
    ctx = new_ctx(m, 128, 5);
    tandem_gen_params gp = tandem_gen_default_params(m);
    gp.sampling.temperature = 0;
    gp.sampling.repeat_penalty = 1;
    gp.max_tokens = r->n_greedy;
    gp.ignore_eos = true;
    tandem_gen_result res;
    CHECK_OK(tandem_generate(ctx, r->prompt, (size_t)r->n_prompt, &gp, &res));
    int same = 0;
    while (same < (int)res.n_ids && same < r->n_greedy && res.ids[same] == r->greedy[same]) same++;
    CHECK_MSG(same == r->n_greedy && (int)res.n_ids == r->n_greedy, "%s: greedy tokens agree for %d of %d", label,
              same, r->n_greedy);
    CHECK(res.finish == TANDEM_FINISH_LENGTH);
    printf("  greedy %d/%d", same, r->n_greedy);
    tandem_gen_result_free(&res);
    tandem_ctx_free(ctx);
    check_fast_path(m, label, r, seq, n_seq, logits, TANDEM_TYPE_F16);
    if (info.head_dim % 32 == 0) { /* whole Q8_0 blocks */
        check_fast_path(m, label, r, seq, n_seq, logits, TANDEM_TYPE_Q8_0);
        check_q8_0_cache(m, label, r, seq, n_seq);
    }

    /* 5. a second, unrelated sequence in a fresh context */
    ctx = new_ctx(m, 16, 64);
    CHECK_OK(tandem_ctx_eval(ctx, r->prompt2, r->n_prompt2, logits));
    d = max_abs_diff(logits, r->logits2, (size_t)r->n_prompt2 * V);
    CHECK_MSG(d < LOGIT_TOL, "%s: prompt2 logits differ by %g", label, d);
    /* context full: nothing changes, and the error says so */
    CHECK_FAILS(tandem_ctx_eval(ctx, r->prompt, 12, NULL), TANDEM_ERR_CONTEXT_FULL, "context");
    CHECK(tandem_ctx_n_past(ctx) == r->n_prompt2);
    printf("\n");
    tandem_ctx_free(ctx);
    free(seq);
    free(logits);
out:
    tandem_model_free(m);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s GOLDEN_DIR\n", argv[0]);
        return 2;
    }
    char manifest_path[4096];
    snprintf(manifest_path, sizeof manifest_path, "%s/models/manifest.json", argv[1]);
    json_error_t err;
    json_t *manifest = json_load_file(manifest_path, 0, &err);
    CHECK_MSG(manifest != NULL, "%s: %s", manifest_path, err.text);
    if (!manifest) return test_summary();
    int n_variants = 0;
    const char *model_name, *variant_name;
    json_t *model, *variant;
    json_object_foreach(json_object_get(manifest, "models"), model_name, model) {
        json_object_foreach(json_object_get(model, "variants"), variant_name, variant) {
            const char *file = json_string_value(json_object_get(variant, "file"));
            const char *ref = json_string_value(json_object_get(variant, "reference"));
            CHECK_MSG(file && ref, "%s/%s: manifest entry lacks file or reference", model_name, variant_name);
            if (!file || !ref) continue;
            char model_path[8192], ref_path[8192], label[300];
            snprintf(model_path, sizeof model_path, "%s/models/%s/%s", argv[1], model_name, file);
            snprintf(ref_path, sizeof ref_path, "%s/models/%s/%s", argv[1], model_name, ref);
            snprintf(label, sizeof label, "%s/%s", model_name, variant_name);
            reference r;
            bool ok = load_reference(ref_path, &r);
            CHECK_MSG(ok, "%s: bad reference file", ref_path);
            if (ok) {
                check_variant(label, model_path, &r);
                n_variants++;
            }
            safetensors_close(r.st);
        }
    }
    json_decref(manifest);
    CHECK_MSG(n_variants >= 10, "expected at least 10 golden variants, found %d", n_variants);
    return test_summary();
}
