/* test_train_golden.c — one full training step of tiny Qwen3 models against PyTorch (tests/golden/train, made by
 * tests/gen/make_train_golden.py): loss, every gradient, the clipped norm, the scheduled lr, and the weights after
 * clip_grad_norm_ + torch.optim.AdamW. */
#include <stdlib.h>

#include "safetensors.h"
#include "test.h"
#include "train.h"

static const float *ref_tensor(const st_set *s, const char *name, size_t numel) {
    const st_tensor *t = safetensors_find(s, name);
    CHECK_MSG(t != NULL, "step.safetensors has no '%s'", name);
    if (!t) return NULL;
    CHECK_MSG(t->nbytes == numel * 4, "'%s' has %llu bytes, expected %zu", name, (unsigned long long)t->nbytes,
              numel * 4);
    return t->nbytes == numel * 4 ? t->data : NULL;
}

/* max |a − b| / max |b| over a tensor: the relative error at the tensor's scale. */
static double rel_error(const float *a, const float *b, size_t n) {
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < n; i++) {
        max_diff = fmax(max_diff, fabs((double)a[i] - b[i]));
        max_ref = fmax(max_ref, fabs((double)b[i]));
    }
    return max_diff / (max_ref > 0 ? max_ref : 1);
}

/* Every tensor's values (params or grads of m) against the reference's "<prefix><hf name>" entries: each within
 * 1e-4 of the tensor's largest reference magnitude. Returns the worst relative error. */
static double check_tensors(const st_set *ref, const train_model *m, const float *values, const char *prefix,
                            const char *what) {
    double worst = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const train_tensor *t = &m->tensors[i];
        char key[160];
        snprintf(key, sizeof key, "%s%s", prefix, t->hf_name);
        const float *r = ref_tensor(ref, key, t->numel);
        if (!r) continue;
        const double e = rel_error(values + t->offset, r, t->numel);
        worst = fmax(worst, e);
        CHECK_MSG(e < 1e-4, "%s: %s relative error %.3g", key, what, e);
    }
    return worst;
}

/* pool: the threads of the pass (NULL: the calling thread). */
static void run(const char *golden_dir, const char *name, thread_pool *pool) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/train/%s", golden_dir, name);
    snprintf(path, sizeof path, "%s/config.json", dir);
    qwen3_config cfg;
    st_set *weights = NULL, *ref = NULL;
    qwen3_model src = {0};
    train_model m = {0};
    CHECK_OK(qwen3_config_from_json(path, &cfg));
    CHECK_OK(safetensors_open_dir(dir, &weights));
    snprintf(path, sizeof path, "%s/step.safetensors", dir);
    CHECK_OK(safetensors_open_file(path, &ref));
    if (!weights || !ref) goto done;
    src.cfg = cfg;
    CHECK_OK(qwen3_bind_safetensors(&src, weights, dir));
    const st_tensor *in = safetensors_find(ref, "inputs"), *tg = safetensors_find(ref, "targets");
    CHECK(in && tg && in->n_dims == 2 && tg->nbytes == in->nbytes);
    if (!in || !tg || !src.layers) goto done;
    const int B = (int)in->shape[0], T = (int)in->shape[1];
    CHECK_OK(train_model_init(&m, &cfg, B, T));
    CHECK_OK(train_model_copy_from(&m, &src, dir));
    m.pool = pool;

    /* loss and gradients */
    const float loss = train_forward(&m, in->data, tg->data, B, T);
    const float *ref_loss = ref_tensor(ref, "loss", 1);
    if (ref_loss) {
        CHECK_NEAR(loss, ref_loss[0], 1e-5 * ref_loss[0]);
        printf("%s: loss %.7f, PyTorch %.7f (rel. error %.2g)\n", name, loss, ref_loss[0],
               fabs(loss - ref_loss[0]) / ref_loss[0]);
    }
    train_zero_grad(&m);
    train_backward(&m);
    const double worst_grad = check_tensors(ref, &m, m.grads, "grad.", "gradient");

    /* clipping, schedule, AdamW */
    const float *ref_norm = ref_tensor(ref, "grad_norm", 1), *ref_lr = ref_tensor(ref, "lr", 1);
    const float norm = train_clip_grad_norm(&m, 0.5f);
    if (ref_norm) CHECK_NEAR(norm, ref_norm[0], 1e-5 * ref_norm[0]);
    const float lr = train_lr_schedule(3, 2, 10, 3e-3f, 3e-4f);  /* train.json: step 3 of 10, warm-up 2 */
    if (ref_lr) CHECK_NEAR(lr, ref_lr[0], 1e-6 * ref_lr[0]);
    train_adamw opt = {lr, 0.9f, 0.95f, 1e-8f, 0.1f};
    train_adamw_update(&m, &opt, 1);
    /* One AdamW step moves every weight by about lr·sign(g); where |g| is near eps the step depends on digits of g
     * that float rounding decides, so the error is measured at the tensor's scale, like the gradients. */
    const double worst_weight = check_tensors(ref, &m, m.params, "updated.", "updated weight");
    printf("%s: worst gradient rel. error %.2g, worst updated-weight rel. error %.2g\n", name, worst_grad,
           worst_weight);
done:
    train_model_free(&m);
    qwen3_model_release(&src);
    safetensors_close(weights);
    safetensors_close(ref);
}

/* The training forward pass and the inference forward pass (qwen3.c) give the same logits for every position. */
static void same_as_inference(const char *golden_dir, const char *rel) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s", golden_dir, rel);
    gguf_file *f = NULL;
    qwen3_model src = {0};
    train_model m = {0};
    qwen3_scratch *s = NULL;
    qwen3_kv_cache *cache = NULL;
    thread_pool *pool = NULL;
    enum { T = 24 };
    float *logits = NULL;
    CHECK_OK(gguf_open(path, &f));
    if (!f) return;
    CHECK_OK(qwen3_config_from_gguf(f, &src.cfg));
    CHECK_OK(qwen3_bind_gguf(&src, f));
    if (!src.layers) goto done;
    const int V = src.cfg.vocab_size;
    int32_t ids[T];
    for (int t = 0; t < T; t++) ids[t] = (t * 37 + 11) % 400;
    CHECK_OK(train_model_init(&m, &src.cfg, 1, T));
    CHECK_OK(train_model_copy_from(&m, &src, path));
    CHECK_OK(thread_pool_create(2, &pool));
    CHECK_OK(qwen3_kv_cache_init(&src, T, TANDEM_TYPE_F32, &cache));
    CHECK_OK(qwen3_scratch_init(&src, T, 2, true, &s));
    logits = malloc((size_t)T * V * sizeof(float));
    if (!pool || !cache || !s || !logits) goto done;
    const qwen3_batch b = qwen3_sequence_batch(s, cache, ids, T, 0, false);
    qwen3_forward(&src, s, pool, &b, logits);
    train_forward(&m, ids, NULL, 1, T);
    double e = rel_error(m.a.logits, logits, (size_t)T * V);
    CHECK_MSG(e < 1e-5, "%s: training vs inference logits relative error %.3g", rel, e);
    printf("%s: training forward vs inference forward, logits rel. error %.2g\n", rel, e);
done:
    free(logits);
    qwen3_scratch_free(s);
    qwen3_kv_cache_free(cache);
    thread_pool_free(pool);
    train_model_free(&m);
    qwen3_model_release(&src);
    gguf_close(f);
}

int main(int argc, char **argv) {
    const char *golden = argc > 1 ? argv[1] : "tests/golden";
    thread_pool *pool = NULL;
    CHECK_OK(thread_pool_create(2, &pool));
    run(golden, "untied", NULL);
    run(golden, "tied", pool);
    thread_pool_free(pool);
    same_as_inference(golden, "tied_gqa2/model-f32.gguf");
    same_as_inference(golden, "untied_gqa4/model-f32.gguf");
    return test_summary();
}
