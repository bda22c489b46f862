/* test_quality.c — perplexity and KL divergence (quality.c) against values computed here from transformers'
 * logits (tests/golden/models/<model>/reference-*.safetensors), plus chunking, argument errors and aborting, and the
 * running mean / sd. */
#include <math.h>
#include <stdlib.h>

#include "golden.h"
#include "runtime.h"
#include "safetensors.h"

/* Reference tensors of one golden variant: the sequence prompt + greedy and its logits (80 × V). */
typedef struct reference {
    st_set *set;
    int32_t ids[80];
    int32_t n;
    const float *logits;  /* (n, V), in the map */
    int32_t V;
} reference;

static bool load_reference(const char *golden, const char *rel, reference *r) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s", golden, rel);
    memset(r, 0, sizeof *r);
    CHECK_OK(safetensors_open_file(path, &r->set));
    if (!r->set) return false;
    const st_tensor *prompt = safetensors_find(r->set, "prompt"), *greedy = safetensors_find(r->set, "greedy");
    const st_tensor *logits = safetensors_find(r->set, "logits");
    CHECK(prompt && greedy && logits);
    if (!prompt || !greedy || !logits) return false;
    const int32_t np = (int32_t)prompt->shape[0], ng = (int32_t)greedy->shape[0];
    CHECK(np + ng == 80 && logits->shape[0] == 80);
    memcpy(r->ids, prompt->data, sizeof(int32_t) * (size_t)np);
    memcpy(r->ids + np, greedy->data, sizeof(int32_t) * (size_t)ng);
    r->n = np + ng;
    r->logits = logits->data;
    r->V = (int32_t)logits->shape[1];
    return true;
}

static double log_sum_exp(const float *x, int32_t n) {
    double m = x[0], s = 0;
    for (int32_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    for (int32_t i = 0; i < n; i++) s += exp((double)x[i] - m);
    return m + log(s);
}

static int32_t argmax(const float *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* One chunk of n_ctx = 80 tokens: scored positions 40 … 78 (the second half, as llama.cpp's perplexity). */
static void perplexity_matches_transformers(const char *golden) {
    reference ref;
    if (!load_reference(golden, "tied_gqa2/reference-hf.safetensors", &ref)) return;
    tandem_model *m = load_golden_model(golden, "tied_gqa2");
    if (!m) goto done;
    double nll = 0;
    int n = 0;
    for (int32_t pos = 40; pos < 79; pos++, n++) {
        const float *l = ref.logits + (size_t)pos * ref.V;
        nll += log_sum_exp(l, ref.V) - l[ref.ids[pos + 1]];
    }
    const double expected = exp(nll / n);
    tandem_eval_params ep = tandem_eval_default_params();
    ep.n_ctx = 80;
    ep.n_batch = 16;  /* several batches inside the scored half */
    tandem_quality_result r;
    CHECK_OK(quality_eval_ids(m, NULL, ref.ids, 80, &ep, &r));
    CHECK(r.n_chunks == 1 && r.n_scored == 39);
    CHECK_NEAR(r.perplexity / expected, 1.0, 1e-4);
    /* a model against itself: no divergence, full agreement, both perplexities equal */
    CHECK_OK(quality_eval_ids(m, m, ref.ids, 80, &ep, &r));
    CHECK_NEAR(r.kld_mean, 0.0, 1e-9);
    CHECK_NEAR(r.top1_agreement, 1.0, 0.0);
    CHECK_NEAR(r.ref_perplexity / expected, 1.0, 1e-4);
    /* chunking: 80 ids in chunks of 32 → 2 chunks (the last 16 ids dropped), 15 scored each */
    ep.n_ctx = 32;
    CHECK_OK(quality_eval_ids(m, NULL, ref.ids, 80, &ep, &r));
    CHECK(r.n_chunks == 2 && r.n_scored == 30);
    ep.max_chunks = 1;
    CHECK_OK(quality_eval_ids(m, NULL, ref.ids, 80, &ep, &r));
    CHECK(r.n_chunks == 1 && r.n_scored == 15);
    ep.max_chunks = 0;
    ep.n_ctx = 81;
    CHECK_FAILS(quality_eval_ids(m, NULL, ref.ids, 80, &ep, &r), TANDEM_ERR_INVALID_ARG, "fewer than one chunk");
    ep.n_ctx = 4096;
    CHECK_FAILS(quality_eval_ids(m, NULL, ref.ids, 80, &ep, &r), TANDEM_ERR_INVALID_ARG, "context");
done:
    tandem_model_free(m);
    safetensors_close(ref.set);
}

/* KL(hf ‖ f16 GGUF) from both transformers references (same greedy path, so the same sequence). */
static void kld_matches_transformers(const char *golden) {
    reference hf, f16;
    if (!load_reference(golden, "tied_gqa2/reference-hf.safetensors", &hf)) return;
    if (!load_reference(golden, "tied_gqa2/reference-gguf-f16.safetensors", &f16)) {
        safetensors_close(hf.set);
        return;
    }
    CHECK(memcmp(hf.ids, f16.ids, sizeof hf.ids) == 0);
    tandem_model *m = load_golden_model(golden, "tied_gqa2/model-f16.gguf");
    tandem_model *r = load_golden_model(golden, "tied_gqa2");
    double kl = 0, nll_m = 0, nll_r = 0;
    int n = 0, agree = 0;
    for (int32_t pos = 40; pos < 79; pos++, n++) {
        const float *lr = hf.logits + (size_t)pos * hf.V, *lm = f16.logits + (size_t)pos * f16.V;
        const double zr = log_sum_exp(lr, hf.V), zm = log_sum_exp(lm, hf.V);
        for (int32_t i = 0; i < hf.V; i++) {
            const double a = lr[i] - zr, b = lm[i] - zm;
            kl += exp(a) * (a - b);
        }
        nll_m += zm - lm[hf.ids[pos + 1]];
        nll_r += zr - lr[hf.ids[pos + 1]];
        agree += argmax(lr, hf.V) == argmax(lm, hf.V);
    }
    if (m && r) {
        tandem_eval_params ep = tandem_eval_default_params();
        ep.n_ctx = 80;
        ep.kv_type = TANDEM_TYPE_F32;  /* the weights' rounding alone, as in the references */
        tandem_quality_result res;
        CHECK_OK(quality_eval_ids(m, r, hf.ids, 80, &ep, &res));
        CHECK(kl / n > 1e-7);  /* f16 rounding is visible: the comparison below is not 0 ≈ 0 */
        CHECK_NEAR(res.kld_mean / (kl / n), 1.0, 0.05);
        CHECK_NEAR(res.perplexity / exp(nll_m / n), 1.0, 1e-4);
        CHECK_NEAR(res.ref_perplexity / exp(nll_r / n), 1.0, 1e-4);
        CHECK_NEAR(res.top1_agreement, (double)agree / n, 1e-9);
    }
    tandem_model_free(m);
    tandem_model_free(r);
    safetensors_close(hf.set);
    safetensors_close(f16.set);
}

static bool stop_now(const char *stage, int64_t done, int64_t total, void *user) {
    (void)stage;
    (void)done;
    (void)total;
    (*(int *)user)++;
    return false;
}

static void text_api_and_abort(const char *golden) {
    tandem_model *m = load_golden_model(golden, "tied_gqa2");
    if (!m) return;
    static const char text[] = "The river rose slowly through the night, and by morning the lower fields were under "
                               "water. Farmers walked the embankments with lanterns, checking for seepage.";
    tandem_eval_params ep = tandem_eval_default_params();
    ep.n_ctx = 16;
    tandem_quality_result r;
    CHECK_OK(tandem_perplexity(m, text, sizeof text - 1, &ep, &r));
    CHECK(r.n_chunks >= 2 && isfinite(r.perplexity) && r.perplexity > 1);
    int calls = 0;
    ep.progress = stop_now;
    ep.user = &calls;
    CHECK_FAILS(tandem_perplexity(m, text, sizeof text - 1, &ep, &r), TANDEM_ERR_ABORTED, "stopped");
    CHECK(calls == 1);
    CHECK_FAILS(tandem_kld(m, NULL, text, sizeof text - 1, NULL, &r), TANDEM_ERR_INVALID_ARG, "reference");
    tandem_model_free(m);
}

/* The running mean and sample sd against two passes over the values (mean first, then Σ(x − mean)²), including
 * a spread of 1 around 1e9, where Σx² − n·mean² loses every digit. */
static void running_stats_match_two_passes(void) {
    enum { N = 1000 };
    static double x[N];
    const double offsets[] = {0, -3.25, 1e9};
    for (size_t c = 0; c < sizeof offsets / sizeof *offsets; c++) {
        tandem_running_stats s = {0};
        CHECK(tandem_running_stats_mean(&s) == 0 && tandem_running_stats_sd(&s) == 0);
        double sum = 0;
        for (int i = 0; i < N; i++) {
            x[i] = offsets[c] + (double)((i * 7919) % 101) / 50.0;
            tandem_running_stats_add(&s, x[i]);
            sum += x[i];
            if (i == 0) CHECK(tandem_running_stats_sd(&s) == 0);  /* one value: no spread */
        }
        const double mean = sum / N;
        double ss = 0;
        for (int i = 0; i < N; i++) ss += (x[i] - mean) * (x[i] - mean);
        const double sd = sqrt(ss / (N - 1));
        CHECK(s.n == N && tandem_running_stats_mean(&s) == mean);
        CHECK_MSG(fabs(tandem_running_stats_sd(&s) - sd) <= 1e-8 * sd, "offset %g: sd %.12g, two passes %.12g",
                  offsets[c], tandem_running_stats_sd(&s), sd);
    }
}

int main(int argc, char **argv) {
    const char *golden = argc > 1 ? argv[1] : "tests/golden";
    perplexity_matches_transformers(golden);
    kld_matches_transformers(golden);
    text_api_and_abort(golden);
    running_stats_match_two_passes();
    return test_summary();
}
