/* test_sampler.c — the sampler against transformers' logits processors (tests/golden/sampler/cases.json
 * from tests/gen/make_sampler_golden.py), seed reproducibility, and draws that follow the distribution. */
#include <jansson.h>
#include <stdlib.h>

#include "tandem.h"
#include "test.h"

static tandem_sampler_params params_from_json(const json_t *p) {
    tandem_sampler_params s = tandem_sampler_default_params();
    s.top_k = 0;
    s.top_p = 1;
    s.min_p = 0;
    s.repeat_penalty = 1;
    s.repeat_last_n = -1;  /* transformers penalises every id of the input */
    s.seed = 7;
    json_t *v;
    if ((v = json_object_get(p, "temperature"))) s.temperature = (float)json_number_value(v);
    if ((v = json_object_get(p, "top_k"))) s.top_k = (int32_t)json_integer_value(v);
    if ((v = json_object_get(p, "top_p"))) s.top_p = (float)json_number_value(v);
    if ((v = json_object_get(p, "min_p"))) s.min_p = (float)json_number_value(v);
    if ((v = json_object_get(p, "repeat_penalty"))) s.repeat_penalty = (float)json_number_value(v);
    if ((v = json_object_get(p, "presence_penalty"))) s.presence_penalty = (float)json_number_value(v);
    if ((v = json_object_get(p, "frequency_penalty"))) s.frequency_penalty = (float)json_number_value(v);
    return s;
}

static void check_against_transformers(const char *golden_dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/sampler/cases.json", golden_dir);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    CHECK_MSG(root != NULL, "%s: %s", path, err.text);
    if (!root) return;
    const int V = (int)json_integer_value(json_object_get(root, "vocab"));
    json_t *cases = json_object_get(root, "cases");
    float *logits = malloc(sizeof(float) * V), *probs = malloc(sizeof(float) * V);
    int32_t *history = malloc(sizeof(int32_t) * 256);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        json_t *jl = json_object_get(c, "logits"), *jh = json_object_get(c, "history"), *jp = json_object_get(c, "probs");
        for (int k = 0; k < V; k++) logits[k] = (float)json_number_value(json_array_get(jl, (size_t)k));
        size_t n_hist = json_array_size(jh);
        for (size_t k = 0; k < n_hist; k++) history[k] = (int32_t)json_integer_value(json_array_get(jh, k));
        tandem_sampler_params sp = params_from_json(json_object_get(c, "params"));
        tandem_sampler *s;
        CHECK_OK(tandem_sampler_init(&sp, V, &s));
        tandem_sampler_probs(s, logits, history, n_hist, probs);
        double worst = 0;
        int kept_ref = 0, kept = 0;
        for (int k = 0; k < V; k++) {
            double ref = json_number_value(json_array_get(jp, (size_t)k));
            kept_ref += ref > 0;
            kept += probs[k] > 0;
            if (fabs(ref - probs[k]) > worst) worst = fabs(ref - probs[k]);
        }
        CHECK_MSG(worst < 1e-5 && kept == kept_ref, "case %zu: max |Δp| %g, kept %d vs %d", i, worst, kept, kept_ref);
        tandem_sampler_free(s);
    }
    free(logits);
    free(probs);
    free(history);
    json_decref(root);
}

/* Same seed, same draws; another seed, other draws; draws follow the probabilities (chi-square). */
static void check_draws(void) {
    enum { V = 16, DRAWS = 40000 };
    float logits[V];
    for (int i = 0; i < V; i++) logits[i] = (float)(i % 5) * 0.7f - (float)i * 0.05f;
    tandem_sampler_params sp = tandem_sampler_default_params();
    sp.temperature = 1.0f;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    sp.seed = 42;
    tandem_sampler *a, *b, *c;
    CHECK_OK(tandem_sampler_init(&sp, V, &a));
    CHECK_OK(tandem_sampler_init(&sp, V, &b));
    sp.seed = 43;
    CHECK_OK(tandem_sampler_init(&sp, V, &c));
    int same_ab = 0, same_ac = 0, counts[V] = {0};
    for (int i = 0; i < DRAWS; i++) {
        int32_t x = tandem_sampler_sample(a, logits, NULL, 0), y = tandem_sampler_sample(b, logits, NULL, 0),
                z = tandem_sampler_sample(c, logits, NULL, 0);
        same_ab += x == y;
        same_ac += x == z;
        CHECK(x >= 0 && x < V);
        counts[x]++;
    }
    CHECK(same_ab == DRAWS);
    CHECK(same_ac < DRAWS * 0.5);
    float probs[V];
    tandem_sampler_probs(a, logits, NULL, 0, probs);
    double chi2 = 0;
    for (int i = 0; i < V; i++) {
        double e = probs[i] * DRAWS;
        chi2 += (counts[i] - e) * (counts[i] - e) / e;
    }
    /* 15 degrees of freedom: P(chi2 > 37.7) = 0.001; a wrong sampler lands far beyond (hundreds+) */
    CHECK_MSG(chi2 < 37.7, "chi-square %g over %d draws", chi2, DRAWS);
    tandem_sampler_free(a);
    tandem_sampler_free(b);
    tandem_sampler_free(c);

    /* greedy = argmax, also in tandem_sampler_probs */
    sp.temperature = 0;
    CHECK_OK(tandem_sampler_init(&sp, V, &a));
    CHECK(tandem_sampler_sample(a, logits, NULL, 0) == 4);
    tandem_sampler_probs(a, logits, NULL, 0, probs);
    CHECK(probs[4] == 1.0f && probs[3] == 0.0f);
    tandem_sampler_free(a);
}

static void check_bad_params(void) {
    tandem_sampler *s;
    tandem_sampler_params sp = tandem_sampler_default_params();
    sp.top_p = 0;
    CHECK_FAILS(tandem_sampler_init(&sp, 10, &s), TANDEM_ERR_INVALID_ARG, "top_p");
    sp = tandem_sampler_default_params();
    sp.temperature = -1;
    CHECK_FAILS(tandem_sampler_init(&sp, 10, &s), TANDEM_ERR_INVALID_ARG, "temperature");
    sp = tandem_sampler_default_params();
    sp.repeat_penalty = 0;
    CHECK_FAILS(tandem_sampler_init(&sp, 10, &s), TANDEM_ERR_INVALID_ARG, "repeat_penalty");
    sp = tandem_sampler_default_params();
    CHECK_FAILS(tandem_sampler_init(&sp, 0, &s), TANDEM_ERR_INVALID_ARG, "vocab_size");
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    check_against_transformers(argv[1]);
    check_draws();
    check_bad_params();
    return test_summary();
}
