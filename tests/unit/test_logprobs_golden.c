/* test_logprobs_golden.c — tandem_gen_params.logprobs: each generated token's record against transformers' logits
 * (tied_gqa2's reference, greedy), and against one forward pass over prompt + answer for sampled, speculative
 * (draft model, lookup: accepted and corrected tokens) and engine generations, with the callback's records. */
#include <math.h>
#include <stdlib.h>

#include "golden.h"
#include "safetensors.h"

enum { TOP = 5, N_CTX = 128 };
static const double TOL = 1e-4; /* f32 logits in another order than PyTorch's: ~1e-6 (test_golden_models) */

static tandem_model *model;

typedef struct records {
    tandem_token_logprob lp[N_CTX];
    int n;
} records;

static void on_token(const tandem_token_logprob *lp, void *user) {
    records *r = user;
    if (r->n < N_CTX) r->lp[r->n] = *lp;
    r->n++;
}

static tandem_ctx *exact_ctx(void) {
    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = N_CTX;
    cp.exact = true;
    tandem_ctx *ctx = NULL;
    CHECK_OK(tandem_ctx_init(model, &cp, &ctx));
    return ctx;
}

static int vocab_of(const tandem_model *m) {
    tandem_model_info info;
    tandem_model_get_info(m, &info);
    return info.vocab_size;
}

/* log_softmax of a row, in double. */
static void log_softmax(const float *row, int V, double *out) {
    double max = row[0], sum = 0;
    for (int v = 1; v < V; v++) max = row[v] > max ? row[v] : max;
    for (int v = 0; v < V; v++) sum += exp((double)row[v] - max);
    for (int v = 0; v < V; v++) out[v] = (double)row[v] - max - log(sum);
}

/* One record against the reference row's log_softmax: the token's value, and the top TOP values in order with their
 * ids wherever the reference ranks them apart by more than the tolerance. */
static void check_record(const char *label, int i, const tandem_token_logprob *lp, int32_t id, const double *ref,
                         int V) {
    CHECK_MSG(lp->id == id, "%s: record %d is of id %d, the token is %d", label, i, lp->id, id);
    CHECK_MSG(fabs(lp->logprob - ref[id]) < TOL, "%s: token %d: logprob %.6f, reference %.6f", label, i, lp->logprob,
              ref[id]);
    CHECK_MSG(lp->n_top == TOP, "%s: token %d: %d alternatives", label, i, lp->n_top);
    double prev = INFINITY;
    for (int j = 0; j < lp->n_top && j < TOP; j++) {
        int best = -1; /* the reference's j-th: the largest below prev, ties to the lower id */
        for (int v = 0; v < V; v++)
            if (ref[v] < prev && (best < 0 || ref[v] > ref[best])) best = v;
        double next = -INFINITY; /* the value that follows, to see whether the rank is clear */
        for (int v = 0; v < V; v++)
            if (ref[v] < ref[best] && ref[v] > next) next = ref[v];
        CHECK_MSG(fabs(lp->top_logprobs[j] - ref[best]) < TOL, "%s: token %d: top %d is %.6f, reference %.6f", label, i,
                  j, lp->top_logprobs[j], ref[best]);
        const bool clear = ref[best] - next > 2 * TOL && (j == 0 || prev - ref[best] > 2 * TOL);
        CHECK_MSG(!clear || lp->top_ids[j] == best, "%s: token %d: top %d is id %d, reference %d", label, i, j,
                  lp->top_ids[j], best);
        prev = ref[best];
    }
}

/* Every record of r (and the callback's copies) against one exact pass over prompt + the generated ids. */
static void check_against_pass(const char *label, const int32_t *prompt, int n_prompt, const tandem_gen_result *r,
                               const records *seen) {
    const int V = vocab_of(model);
    const int n = (int)r->n_ids;
    CHECK_MSG(r->logprobs != NULL && seen->n == n, "%s: %d records through the callback for %d tokens", label, seen->n,
              n);
    if (!r->logprobs || n == 0 || n_prompt + n > N_CTX) return;
    int32_t seq[N_CTX];
    memcpy(seq, prompt, sizeof *seq * (size_t)n_prompt);
    memcpy(seq + n_prompt, r->ids, sizeof *seq * (size_t)n);
    float *logits = malloc(sizeof(float) * (size_t)(n_prompt + n) * V);
    double *ref = malloc(sizeof(double) * (size_t)V);
    tandem_ctx *ctx = exact_ctx();
    CHECK_OK(tandem_ctx_eval(ctx, seq, n_prompt + n - 1, logits));
    for (int i = 0; i < n; i++) {
        log_softmax(logits + (size_t)(n_prompt - 1 + i) * V, V, ref);
        check_record(label, i, &r->logprobs[i], r->ids[i], ref, V);
        CHECK_MSG(!memcmp(&seen->lp[i], &r->logprobs[i], sizeof seen->lp[i]), "%s: callback record %d differs", label,
                  i);
    }
    tandem_ctx_free(ctx);
    free(ref);
    free(logits);
}

static tandem_gen_params base_params(records *seen, bool sampled) {
    tandem_gen_params gp = tandem_gen_default_params(model);
    gp.sampling.temperature = sampled ? 0.9f : 0;
    gp.sampling.top_k = 0;
    gp.sampling.top_p = 1;
    gp.sampling.min_p = 0;
    gp.sampling.repeat_penalty = sampled ? 1.3f : 1; /* raw logprobs: neither penalty nor temperature shows */
    gp.sampling.seed = 7;
    gp.max_tokens = 40;
    gp.ignore_eos = true;
    gp.logprobs = true;
    gp.top_logprobs = TOP;
    gp.on_token = on_token;
    gp.user = seen;
    memset(seen, 0, sizeof *seen);
    return gp;
}

/* Greedy, plain: every record against transformers' logits of the reference's greedy continuation. */
static void check_transformers(const char *golden) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/tied_gqa2/reference-hf.safetensors", golden);
    st_set *st = NULL;
    CHECK_OK(safetensors_open_file(path, &st));
    if (!st) return;
    const st_tensor *p = safetensors_find(st, "prompt"), *g = safetensors_find(st, "greedy"),
                    *l = safetensors_find(st, "logits");
    CHECK(p && g && l);
    if (!p || !g || !l) return;
    const int n_prompt = (int)p->shape[0], n_greedy = (int)g->shape[0], V = (int)l->shape[1];
    const int32_t *prompt = p->data, *greedy = g->data;
    records seen;
    tandem_gen_params gp = base_params(&seen, false);
    gp.max_tokens = n_greedy;
    tandem_ctx *ctx = exact_ctx();
    tandem_gen_result r;
    CHECK_OK(tandem_generate(ctx, prompt, (size_t)n_prompt, &gp, &r));
    CHECK(r.n_ids == (size_t)n_greedy && r.logprobs);
    double *ref = malloc(sizeof(double) * (size_t)V);
    for (int i = 0; r.logprobs && i < (int)r.n_ids && i < n_greedy; i++) {
        CHECK_MSG(r.ids[i] == greedy[i], "greedy token %d: %d, transformers %d", i, r.ids[i], greedy[i]);
        log_softmax((const float *)l->data + (size_t)(n_prompt - 1 + i) * V, V, ref);
        check_record("transformers", i, &r.logprobs[i], greedy[i], ref, V);
        CHECK_MSG(r.logprobs[i].top_ids[0] == r.ids[i], "greedy token %d is not the top alternative", i);
    }
    printf("  greedy against transformers: %zu tokens\n", r.n_ids);
    free(ref);
    tandem_gen_result_free(&r);
    tandem_ctx_free(ctx);
    safetensors_close(st);
}

/* Speculative decoding (a draft context of the same model, then lookup) and sampling with penalties. */
static void check_speculative(void) {
    const int32_t prompt[] = {17, 230, 230, 41, 17, 230, 230, 41, 17, 230, 99, 8};
    const int n_prompt = (int)(sizeof prompt / sizeof *prompt);
    int64_t drafted = 0, accepted = 0;
    for (int variant = 0; variant < 6; variant++) {
        const bool sampled = variant % 2, lookup = variant >= 4, draft = variant >= 2 && variant < 4;
        char label[64];
        snprintf(label, sizeof label, "%s%s", sampled ? "sampled" : "greedy",
                 lookup  ? " + lookup"
                 : draft ? " + draft"
                         : "");
        records seen;
        tandem_gen_params gp = base_params(&seen, sampled);
        tandem_ctx *ctx = exact_ctx(), *dctx = draft ? exact_ctx() : NULL;
        gp.spec = tandem_spec_default_params();
        gp.spec.draft_max = 4;
        gp.spec.adaptive = false;
        gp.draft = dctx;
        if (lookup) gp.spec.lookup_ngram = 1;
        tandem_gen_result r;
        CHECK_OK(tandem_generate(ctx, prompt, (size_t)n_prompt, &gp, &r));
        check_against_pass(label, prompt, n_prompt, &r, &seen);
        drafted += r.spec_stats.n_drafted;
        accepted += r.spec_stats.n_accepted;
        printf("  %s: %zu tokens, %d/%d proposals accepted\n", label, r.n_ids, r.spec_stats.n_accepted,
               r.spec_stats.n_drafted);
        tandem_gen_result_free(&r);
        tandem_ctx_free(dctx);
        tandem_ctx_free(ctx);
    }
    /* both outcomes of verification happened: accepted proposals and corrected tokens */
    CHECK_MSG(accepted > 0 && accepted < drafted, "%lld of %lld proposals accepted", (long long)accepted,
              (long long)drafted);
}

/* The engine, plain and with a draft model, two requests at once. */
static void check_engine(void) {
    const int32_t prompts[2][6] = {{5, 6, 7, 8, 9, 10}, {300, 12, 12, 300, 12, 12}};
    for (int with_draft = 0; with_draft < 2; with_draft++) {
        tandem_engine_params ep = tandem_engine_default_params();
        ep.n_slots = 2;
        ep.n_ctx = N_CTX;
        ep.exact = true;
        ep.draft_model = with_draft ? model : NULL;
        tandem_engine *e = NULL;
        CHECK_OK(tandem_engine_create(model, &ep, &e));
        if (!e) return;
        records seen[2];
        tandem_gen_params gp[2];
        int64_t ids[2];
        for (int i = 0; i < 2; i++) {
            gp[i] = base_params(&seen[i], i == 1);
            gp[i].spec = tandem_spec_default_params();
            gp[i].spec.draft_max = with_draft ? 3 : 0;
            CHECK_OK(tandem_engine_add(e, prompts[i], 6, &gp[i], &ids[i]));
        }
        for (bool idle = false; !idle;) CHECK_OK(tandem_engine_step(e, &idle));
        for (int i = 0; i < 2; i++) {
            tandem_gen_result r;
            CHECK_OK(tandem_engine_result(e, ids[i], &r));
            char label[64];
            snprintf(label, sizeof label, "engine%s, request %d", with_draft ? " + draft" : "", i);
            check_against_pass(label, prompts[i], 6, &r, &seen[i]);
            tandem_gen_result_free(&r);
        }
        /* refused before anything is queued */
        gp[0].top_logprobs = TANDEM_MAX_TOP_LOGPROBS + 1;
        CHECK_FAILS(tandem_engine_add(e, prompts[0], 6, &gp[0], &ids[0]), TANDEM_ERR_INVALID_ARG, "top_logprobs");
        tandem_engine_free(e);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s GOLDEN_DIR\n", argv[0]);
        return 2;
    }
    model = load_golden_model(argv[1], "tied_gqa2");
    if (!model) return test_summary();
    check_transformers(argv[1]);
    check_speculative();
    check_engine();
    /* without logprobs: no records, and on_token gets the bare ids */
    tandem_ctx *ctx = exact_ctx();
    tandem_gen_params gp = tandem_gen_default_params(model);
    gp.max_tokens = 3;
    records seen = {0};
    gp.on_token = on_token;
    gp.user = &seen;
    tandem_gen_result r;
    const int32_t prompt[] = {1, 2, 3};
    CHECK_OK(tandem_generate(ctx, prompt, 3, &gp, &r));
    CHECK(r.logprobs == NULL && r.n_ids == 3 && seen.n == 3);
    for (int i = 0; i < seen.n && i < 3; i++)
        CHECK(seen.lp[i].id == r.ids[i] && seen.lp[i].logprob == 0 && seen.lp[i].n_top == 0);
    tandem_gen_result_free(&r);
    gp.logprobs = true;
    gp.top_logprobs = -1;
    CHECK_FAILS(tandem_generate(ctx, prompt, 3, &gp, &r), TANDEM_ERR_INVALID_ARG, "top_logprobs");
    tandem_ctx_free(ctx);
    tandem_model_free(model);
    return test_summary();
}
