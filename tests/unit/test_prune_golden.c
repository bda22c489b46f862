/* test_prune_golden.c — the layer-importance inputs of pruning against transformers: qwen3_forward's per-layer
 * residual states (layer_states hook) equal HF's decoder-layer outputs (tests/golden/models/<m>/reference-hf), and the
 * block distances computed from them equal arccos(cos)/π written out directly; its calibration perplexity equals
 * tandem_perplexity's on the same text. */
#include <stdlib.h>
#include <unistd.h>

#include "safetensors.h"
#include "test.h"
#include "train.h"

static void run(const char *golden_dir, const char *name) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/models/%s", golden_dir, name);
    model_source src;
    st_set *ref = NULL;
    thread_pool *pool = NULL;
    qwen3_scratch *s = NULL;
    qwen3_kv_cache *cache = NULL;
    float *states = NULL, *logits = NULL;
    double *dist = NULL, *norms = NULL;
    CHECK_OK(model_source_open(&src, dir));
    snprintf(path, sizeof path, "%s/reference-hf.safetensors", dir);
    CHECK_OK(safetensors_open_file(path, &ref));
    if (!ref || !src.model.layers) goto done;
    const qwen3_config *c = &src.model.cfg;
    const int L = c->n_layers, C = c->dim;
    const st_tensor *prompt = safetensors_find(ref, "prompt"), *greedy = safetensors_find(ref, "greedy");
    CHECK(prompt && greedy);
    if (!prompt || !greedy) goto done;
    const int np = (int)prompt->shape[0], ng = (int)greedy->shape[0], n = np + ng;
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    memcpy(ids, prompt->data, (size_t)np * 4);
    memcpy(ids + np, greedy->data, (size_t)ng * 4);
    CHECK_OK(thread_pool_create(2, &pool));
    CHECK_OK(qwen3_kv_cache_init(&src.model, n, TANDEM_TYPE_F32, &cache));
    CHECK_OK(qwen3_scratch_init(&src.model, n, 2, true, &s));
    states = malloc((size_t)(L + 1) * n * C * sizeof *states);
    logits = malloc((size_t)c->vocab_size * sizeof *logits);
    s->layer_states = states;
    const qwen3_batch batch = qwen3_sequence_batch(s, cache, ids, n, 0, true);
    qwen3_forward(&src.model, s, pool, &batch, logits);
    /* state l+1 = output of HF decoder layer l */
    for (int l = 0; l < L; l++) {
        char key[32];
        snprintf(key, sizeof key, "hidden_%d", l);
        const st_tensor *h = safetensors_find(ref, key);
        CHECK(h && h->nbytes == (uint64_t)n * C * 4);
        if (!h) continue;
        const float *hf = h->data, *ours = states + (size_t)(l + 1) * n * C;
        double max_diff = 0, max_ref = 0;
        for (size_t i = 0; i < (size_t)n * C; i++) {
            max_diff = fmax(max_diff, fabs((double)ours[i] - hf[i]));
            max_ref = fmax(max_ref, fabs((double)hf[i]));
        }
        CHECK_MSG(max_diff <= 1e-4 * max_ref, "%s layer %d: hidden state max diff %.3g (max %.3g)", name, l, max_diff,
                  max_ref);
    }
    /* state 0 = the embedding rows */
    const float *emb = src.model.embed_tokens.data;
    CHECK(src.model.embed_tokens.type == TANDEM_TYPE_F32);
    for (int t = 0; t < n; t++) CHECK(memcmp(states + (size_t)t * C, emb + (size_t)ids[t] * C, (size_t)C * 4) == 0);

    /* distances from the states, against the definition written out per block */
    dist = calloc((size_t)L * L, sizeof *dist);
    norms = malloc((size_t)(L + 1) * n * sizeof *norms);
    prune_block_distances(dist, states, L, n, C, norms);
    for (int l = 0; l < L; l++)
        for (int k = 1; k <= L; k++) {
            if (l + k > L) {
                CHECK(dist[(size_t)l * L + k - 1] == 0);
                continue;
            }
            double expect = 0;
            for (int t = 0; t < n; t++) {
                const float *a = states + ((size_t)l * n + t) * C, *b = states + ((size_t)(l + k) * n + t) * C;
                double ab = 0, aa = 0, bb = 0;
                for (int i = 0; i < C; i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
                expect += acos(fmin(1.0, fmax(-1.0, ab / sqrt(aa * bb)))) / M_PI;
            }
            CHECK_NEAR(dist[(size_t)l * L + k - 1], expect, 1e-9 * n);
            const double mean = expect / n;
            CHECK(mean > 0 && mean < 1);
        }
    free(ids);
done:
    free(states);
    free(logits);
    free(dist);
    free(norms);
    qwen3_scratch_free(s);
    qwen3_kv_cache_free(cache);
    thread_pool_free(pool);
    safetensors_close(ref);
    model_source_close(&src);
}

/* prune's calibration perplexity is tandem_perplexity's figure: the same text (special-token markup included, read
 * as plain text by both), windows of W tokens = chunks of n_ctx = W, exact, a final partial window unscored. */
static void perplexity_is_tandem_perplexity(const char *golden_dir, const char *name) {
    char dir[4096], calib[] = "/tmp/tandem_prune_calib_XXXXXX";
    snprintf(dir, sizeof dir, "%s/models/%s", golden_dir, name);
    const char *line = "def add(a, b):\n    return a + b\n<|im_start|>user\nclass Point:\n    x: int = 0\n";
    char text[4096] = "";
    for (int i = 0; i < 9; i++) strcat(text, line);
    strcat(text, "tail");
    const int fd = mkstemp(calib);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    enum { W = 32 };
    tandem_prune_params pp = tandem_prune_default_params();
    pp.model_path = dir;
    pp.calib_path = calib;
    pp.window = W;
    pp.n_threads = 2;
    tandem_prune_result pr = {0};
    tandem_model *model = NULL;
    tandem_quality_result q = {0};
    tandem_eval_params ep = tandem_eval_default_params();
    ep.n_ctx = W;
    ep.exact = true;
    CHECK_OK(tandem_prune(&pp, &pr));
    CHECK_OK(tandem_model_load(dir, NULL, &model));
    if (model) CHECK_OK(tandem_perplexity(model, text, strlen(text), &ep, &q));
    CHECK_MSG(q.n_chunks >= 2 && pr.n_tokens % W != 0, "%s: %lld tokens, %d chunks: want a partial last window", name,
              (long long)pr.n_tokens, q.n_chunks);
    CHECK_MSG(fabs(pr.ppl_before / q.perplexity - 1) < 1e-5, "%s: prune's perplexity %.9g, tandem_perplexity's %.9g",
              name, pr.ppl_before, q.perplexity);
    tandem_model_free(model);
    tandem_prune_result_free(&pr);
    unlink(calib);
}

int main(int argc, char **argv) {
    const char *golden = argc > 1 ? argv[1] : "tests/golden";
    run(golden, "untied_gqa4");
    run(golden, "tied_gqa2");
    perplexity_is_tandem_perplexity(golden, "untied_gqa4");
    perplexity_is_tandem_perplexity(golden, "tied_gqa2");
    return test_summary();
}
