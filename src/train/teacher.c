/* teacher.c — online distillation targets: a teacher model (GGUF or HF folder, any weight type) runs the inference
 * forward pass over each training batch, and its top-k logits per position become the student's KL targets. */
#include <stdlib.h>

#include "train.h"

void train_teacher_close(train_teacher_model *t) {
    if (!t) return;
    qwen3_scratch_free(t->scratch);
    qwen3_kv_cache_free(t->cache);
    thread_pool_free(t->pool);
    free(t->logits);
    free(t->ids);
    free(t->top);
    model_source_close(&t->src);
    memset(t, 0, sizeof *t);
}

tandem_status train_teacher_open(train_teacher_model *t, const char *path, const qwen3_config *student, int B, int T,
                                 int K, int n_threads) {
    memset(t, 0, sizeof *t);
    if (K < 1 || K > TRAIN_MAX_TOPK)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: top-k %d is outside 1..%d", path, K, TRAIN_MAX_TOPK);
    tandem_status st = model_source_open(&t->src, path);
    if (st) return st;
    const int V = t->src.model.cfg.vocab_size;
    if (V != student->vocab_size) {
        st = tandem_fail(TANDEM_ERR_MISMATCH, "%s: the teacher's vocab_size %d differs from the student's %d", path, V,
                         student->vocab_size);
        goto fail;
    }
    if (K > V) K = V;
    t->K = K;
    if ((st = thread_pool_create(n_threads, &t->pool)) ||
        (st = qwen3_kv_cache_init(&t->src.model, T, TANDEM_TYPE_F16, &t->cache)) ||
        (st = qwen3_scratch_init(&t->src.model, T, thread_pool_size(t->pool), false, &t->scratch)))
        goto fail;
    t->logits = malloc((size_t)T * V * sizeof *t->logits);
    t->ids = malloc((size_t)B * T * K * sizeof *t->ids);
    t->top = malloc((size_t)B * T * K * sizeof *t->top);
    if (!t->logits || !t->ids || !t->top) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory for the teacher's logits", path);
        goto fail;
    }
    return TANDEM_OK;
fail:
    train_teacher_close(t);
    return st;
}

void train_teacher_run(train_teacher_model *t, const int32_t *inputs, int B, int T) {
    const int V = t->src.model.cfg.vocab_size, K = t->K;
    for (int b = 0; b < B; b++) {
        /* each sequence from position 0, like the student's */
        const qwen3_batch batch = qwen3_sequence_batch(t->scratch, t->cache, inputs + (size_t)b * T, T, 0, false);
        qwen3_forward(&t->src.model, t->scratch, t->pool, &batch, t->logits);
        for (int i = 0; i < T; i++) {
            const size_t row = (size_t)b * T + i;
            top_k_f32(t->logits + (size_t)i * V, V, K, t->ids + row * K, t->top + row * K);
        }
    }
}
