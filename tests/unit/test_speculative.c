/* test_speculative.c — speculative decoding is lossless: greedy ids identical to the target alone for
 * every draft (agreeing, half-agreeing, never agreeing), draft length 1…16, adaptive on/off, lookup on/off;
 * the KV cache after rollbacks equals plain decoding's; sampled tokens follow the target's distribution
 * (chi-square), and the same test rejects a deliberately wrong residual. Beneath all that: a pass over k tokens
 * gives, bit for bit, the logits of k single-token passes (every weight type, both cache types). */
#include <stdlib.h>

#include "chi_square.h"
#include "golden.h"
#include "runtime.h"

static const char *golden;

typedef struct run {
    int32_t ids[96];
    int n;
    tandem_finish finish;
    tandem_spec_stats stats;
    float next_logits[512];  /* target logits after evaluating one more token: checks the cache */
} run;

static void generate(tandem_model *target, tandem_ctx *draft, const int32_t *prompt, int n_prompt, int max_tokens,
                     const tandem_sampler_params *sp, const tandem_spec_params *spec, run *out) {
    tandem_ctx *ctx;
    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = 128;
    CHECK_OK(tandem_ctx_init(target, &cp, &ctx));
    tandem_gen_params gp = tandem_gen_default_params(target);
    gp.sampling = *sp;
    gp.max_tokens = max_tokens;
    gp.ignore_eos = true;
    gp.draft = draft;
    if (spec) gp.spec = *spec;
    tandem_gen_result r;
    memset(out, 0, sizeof *out);
    if (draft) CHECK_OK(tandem_ctx_truncate(draft, 0));
    CHECK_OK(tandem_generate(ctx, prompt, (size_t)n_prompt, &gp, &r));
    out->n = (int)r.n_ids;
    memcpy(out->ids, r.ids, sizeof(int32_t) * r.n_ids);
    out->finish = r.finish;
    out->stats = r.spec_stats;
    /* evaluate the last emitted token (not yet in the cache) and keep the logits after it */
    int32_t last = r.ids[r.n_ids - 1];
    CHECK_OK(tandem_ctx_eval(ctx, &last, 1, NULL));
    tandem_model_info mi;
    tandem_model_get_info(target, &mi);
    memcpy(out->next_logits, tandem_ctx_logits(ctx), sizeof(float) * (size_t)mi.vocab_size);
    tandem_gen_result_free(&r);
    tandem_ctx_free(ctx);
}

static double max_diff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* ---- one pass over k tokens = k single-token passes, bit for bit ---- */

/* Greedy verification compares the target's argmax over a k-token pass with the draft's tokens: if that pass
 * rounded differently from decoding one token at a time, a near-tie could pick another token than the target
 * alone would (not lossless). Prompts of 50 tokens and passes up to 40 cross attention's key blocks. */
static void check_pass_bits(const char *rel) {
    tandem_model *m = load_golden_model(golden, rel);
    if (!m) return;
    tandem_model_info mi;
    tandem_model_get_info(m, &mi);
    enum { PROMPT = 50, MAX_K = 40 };
    int32_t ids[PROMPT + MAX_K];
    for (int i = 0; i < PROMPT + MAX_K; i++) ids[i] = (int32_t)((i * 7919u + 13) % 400);
    float *batched = malloc(sizeof(float) * MAX_K * (size_t)mi.vocab_size);
    const tandem_type kv_types[] = {TANDEM_TYPE_F16, TANDEM_TYPE_F32};
    for (size_t kt = 0; kt < 2; kt++) {
        tandem_ctx_params cp = tandem_ctx_default_params();
        cp.n_ctx = 128;
        cp.kv_type = kv_types[kt];
        tandem_ctx *one_pass, *single;
        CHECK_OK(tandem_ctx_init(m, &cp, &one_pass));
        CHECK_OK(tandem_ctx_init(m, &cp, &single));
        const int ks[] = {2, 3, 4, 5, 8, 9, 16, 17, 40};
        for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
            const int k = ks[i];
            CHECK_OK(tandem_ctx_truncate(one_pass, 0));
            CHECK_OK(tandem_ctx_truncate(single, 0));
            CHECK_OK(tandem_ctx_eval(one_pass, ids, PROMPT, NULL));
            CHECK_OK(tandem_ctx_eval(single, ids, PROMPT, NULL));
            CHECK_OK(tandem_ctx_eval(one_pass, ids + PROMPT, k, batched));
            int differ = 0;
            for (int t = 0; t < k; t++) {
                CHECK_OK(tandem_ctx_eval(single, ids + PROMPT + t, 1, NULL));
                differ += memcmp(tandem_ctx_logits(single), batched + (size_t)t * mi.vocab_size,
                                 sizeof(float) * (size_t)mi.vocab_size) != 0;
            }
            CHECK_MSG(differ == 0, "%s (%s cache): a pass over %d tokens differs from single passes at %d of them",
                      rel, tandem_type_name(kv_types[kt]), k, differ);
        }
        tandem_ctx_free(single);
        tandem_ctx_free(one_pass);
    }
    free(batched);
    tandem_model_free(m);
}

/* ---- greedy: identical ids ---- */

static void check_greedy(tandem_model *target, tandem_model **drafts, int n_drafts) {
    const int32_t prompts[3][12] = {
        {296, 145, 186, 22, 164, 183, 113, 335, 307, 129, 37, 80},
        {197, 362, 206, 266, 297, 5, 5, 5, 5, 5, 5, 5},
        {10, 11, 12, 13, 10, 11, 12, 13, 10, 11, 12, 13},  /* repetitive: lookup finds matches */
    };
    tandem_sampler_params sp = tandem_sampler_default_params();
    sp.temperature = 0;
    tandem_sampler_params penalised = sp;
    penalised.repeat_penalty = 1.3f;
    const tandem_sampler_params *modes[2] = {&sp, &penalised};
    tandem_model_info mi;
    tandem_model_get_info(target, &mi);
    int n_runs = 0, n_accepted = 0, n_rejected = 0, n_draft_off = 0;
    for (int pi = 0; pi < 3; pi++) {
        for (int mode = 0; mode < 2; mode++) {
            run plain;
            generate(target, NULL, prompts[pi], 12, 48, modes[mode], NULL, &plain);
            for (int d = -1; d < n_drafts; d++) {
                tandem_ctx *dctx = NULL;
                if (d >= 0) CHECK_OK(tandem_ctx_init(drafts[d], NULL, &dctx));
                for (int len = 1; len <= 16; len += (d == 0 ? 1 : 5)) {
                    for (int variant = 0; variant < 4; variant++) {
                        tandem_spec_params spec = tandem_spec_default_params();
                        spec.draft_max = len;
                        spec.adaptive = variant & 1;
                        spec.lookup_ngram = (variant & 2) ? 2 : 0;
                        if (d < 0 && !spec.lookup_ngram) continue;  /* neither draft nor lookup: plain */
                        run sr;
                        generate(target, dctx, prompts[pi], 12, 48, modes[mode], &spec, &sr);
                        bool same = sr.n == plain.n && memcmp(sr.ids, plain.ids, sizeof(int32_t) * plain.n) == 0;
                        CHECK_MSG(same, "prompt %d mode %d draft %d len %d variant %d: ids differ from the target alone",
                                  pi, mode, d, len, variant);
                        CHECK(sr.finish == plain.finish);
                        double dl = max_diff(sr.next_logits, plain.next_logits, mi.vocab_size);
                        CHECK_MSG(dl == 0, "cache after speculation differs: logits by %g", dl);
                        CHECK(sr.stats.n_accepted <= sr.stats.n_drafted);
                        /* passes without the draft model by the adaptive rule's choice: only with both */
                        CHECK(sr.stats.n_rounds_draft_off >= 0 && sr.stats.n_rounds_draft_off <= sr.stats.n_rounds);
                        if (d < 0 || !spec.adaptive) CHECK(sr.stats.n_rounds_draft_off == 0);
                        n_draft_off += sr.stats.n_rounds_draft_off;
                        n_accepted += sr.stats.n_accepted;
                        n_rejected += sr.stats.n_drafted - sr.stats.n_accepted;
                        n_runs++;
                    }
                }
                tandem_ctx_free(dctx);
            }
        }
    }
    printf("greedy: %d speculative runs identical to the target alone (%d proposals accepted, %d rejected; %d passes "
           "with the draft switched off)\n", n_runs, n_accepted, n_rejected, n_draft_off);
    CHECK(n_accepted > 100 && n_rejected > 100);  /* both paths were exercised */
    CHECK(n_draft_off > 0);  /* the never-agreeing draft was switched off */
}

/* ---- sampling: the distribution is the target's ---- */

/* A deliberately wrong rule (corrects from p itself instead of the residual): the test must reject it. */
static int32_t wrong_accept_or_correct(tandem_sampler *s, const float *p, const float *q, int32_t x, int32_t V,
                                       bool *accepted) {
    *accepted = sampler_uniform(s) * q[x] < p[x];
    return *accepted ? x : sampler_draw(s, p, V);
}

static void check_sampling(tandem_model *target, tandem_model *draft_model) {
    enum { DRAWS = 20000 };
    tandem_model_info mi;
    tandem_model_get_info(target, &mi);
    const int V = mi.vocab_size;
    const int32_t prompt[6] = {296, 145, 186, 22, 164, 183};
    tandem_sampler_params sp = tandem_sampler_default_params();
    sp.temperature = 1.0f;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    sp.seed = 1;

    /* p: the target's next-token distribution; q: the draft's (a different model: they disagree a lot) */
    tandem_ctx *tc, *dc;
    CHECK_OK(tandem_ctx_init(target, NULL, &tc));
    CHECK_OK(tandem_ctx_init(draft_model, NULL, &dc));
    CHECK_OK(tandem_ctx_eval(tc, prompt, 6, NULL));
    CHECK_OK(tandem_ctx_eval(dc, prompt, 6, NULL));
    float *p = malloc(sizeof(float) * V), *q = malloc(sizeof(float) * V), *scratch = malloc(sizeof(float) * V);
    double *pd = malloc(sizeof(double) * V);
    tandem_sampler *s;
    CHECK_OK(tandem_sampler_init(&sp, V, &s));
    tandem_sampler_probs(s, tandem_ctx_logits(tc), prompt, 6, p);
    tandem_sampler_probs(s, tandem_ctx_logits(dc), prompt, 6, q);
    double tv = 0;
    for (int v = 0; v < V; v++) tv += fabs(p[v] - q[v]) / 2, pd[v] = p[v];
    int *right = calloc((size_t)V, sizeof(int)), *wrong = calloc((size_t)V, sizeof(int));
    int n_acc = 0;
    for (int i = 0; i < DRAWS; i++) {
        int32_t x = sampler_draw(s, q, V);
        bool acc;
        right[spec_accept_or_correct(s, p, q, x, V, scratch, &acc)]++;
        n_acc += acc;
        x = sampler_draw(s, q, V);
        wrong[wrong_accept_or_correct(s, p, q, x, V, &acc)]++;
    }
    int dof_r, dof_w;
    double chi_r = chi_square(right, pd, V, DRAWS, &dof_r), chi_w = chi_square(wrong, pd, V, DRAWS, &dof_w);
    printf("sampling rule: TV(p, q) = %.3f, acceptance %.3f (expected %.3f); chi2 %.1f (dof %d, critical %.1f); "
           "wrong residual chi2 %.1f\n", tv, (double)n_acc / DRAWS, 1 - tv, chi_r, dof_r, chi_critical(dof_r), chi_w);
    CHECK_MSG(chi_r < chi_critical(dof_r), "speculative rule: chi2 %g over %d dof", chi_r, dof_r);
    CHECK_MSG(chi_w > chi_critical(dof_w), "the test cannot tell a wrong residual: chi2 %g", chi_w);
    CHECK_NEAR((double)n_acc / DRAWS, 1 - tv, 0.02);  /* acceptance probability is 1 − TV(p, q) */

    /* end to end: the 2nd generated token (the first decided by verification) over many seeds, against
     * the exact marginal Σ_t1 p(t1) p(t2 | t1) computed from the target */
    enum { SEEDS = 3000 };
    sp.top_k = 5;  /* few bins: a sharp test with a few thousand generations */
    tandem_sampler_free(s);
    CHECK_OK(tandem_sampler_init(&sp, V, &s));
    double *marginal = calloc((size_t)V, sizeof(double));
    float *p2 = malloc(sizeof(float) * V);
    tandem_sampler_probs(s, tandem_ctx_logits(tc), prompt, 6, p);
    int32_t hist[7];
    memcpy(hist, prompt, sizeof prompt);
    for (int t1 = 0; t1 < V; t1++) {
        if (p[t1] == 0) continue;
        CHECK_OK(tandem_ctx_truncate(tc, 6));
        CHECK_OK(tandem_ctx_eval(tc, &t1, 1, NULL));
        hist[6] = t1;
        tandem_sampler_probs(s, tandem_ctx_logits(tc), hist, 7, p2);
        for (int v = 0; v < V; v++) marginal[v] += (double)p[t1] * p2[v];
    }
    int *seen = calloc((size_t)V, sizeof(int));
    tandem_spec_params spec = tandem_spec_default_params();
    spec.adaptive = false;
    spec.draft_max = 3;
    for (int seed = 0; seed < SEEDS; seed++) {
        sp.seed = (uint64_t)seed * 7919 + 17;
        run r;
        generate(target, dc, prompt, 6, 2, &sp, &spec, &r);
        if (r.n == 2) seen[r.ids[1]]++;
    }
    int dof;
    double chi = chi_square(seen, marginal, V, SEEDS, &dof);
    printf("end to end: 2nd token over %d seeds, chi2 %.1f (dof %d, critical %.1f)\n", SEEDS, chi, dof, chi_critical(dof));
    CHECK_MSG(chi < chi_critical(dof), "speculative sampling: 2nd-token chi2 %g over %d dof", chi, dof);

    tandem_sampler_free(s);
    tandem_ctx_free(tc);
    tandem_ctx_free(dc);
    free(p); free(q); free(scratch); free(pd); free(right); free(wrong); free(marginal); free(p2); free(seen);
}

static void check_vocabulary(tandem_model *target) {
    char path[4096];
    snprintf(path, sizeof path, "%s/gguf/all_types.gguf", golden);  /* not a model: load fails cleanly */
    tandem_model *m = NULL;
    CHECK(tandem_model_load(path, NULL, &m) != TANDEM_OK);
    CHECK_OK(tandem_model_check_draft(target, target));
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    golden = argv[1];
    tandem_model *target = load_golden_model(golden, "tied_gqa2");
    tandem_model *drafts[3] = {load_golden_model(golden, "tied_gqa2/model-q4_0.gguf"), load_golden_model(golden, "untied_gqa4"), load_golden_model(golden, "tied_gqa2")};
    if (!target || !drafts[0] || !drafts[1] || !drafts[2]) return test_summary();
    check_vocabulary(target);
    const char *pass_models[] = {"tied_gqa2", "tied_gqa2/model-f16.gguf", "tied_gqa2/model-bf16.gguf",
                                 "tied_gqa2/model-q8_0.gguf", "tied_gqa2/model-q4_0.gguf", "untied_gqa4"};
    for (size_t i = 0; i < sizeof pass_models / sizeof pass_models[0]; i++) check_pass_bits(pass_models[i]);
    check_greedy(target, drafts, 3);
    check_sampling(target, drafts[1]);
    for (int i = 0; i < 3; i++) tandem_model_free(drafts[i]);
    tandem_model_free(target);
    return test_summary();
}
