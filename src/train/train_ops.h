/* train_ops.h — the operations of Qwen3 training as <op>_forward / <op>_backward pairs over raw float arrays
 * (llm.c style): outputs first, then inputs, then dimensions; gradients are prefixed d. Depends on base.
 *
 * Dimensions: N rows (= B·T tokens), C channels, B sequences of T tokens, V vocabulary, F MLP width,
 * Hq query heads, Hkv key/value heads, hd head_dim, K teacher top-k.
 * Every _backward ACCUMULATES into its d-outputs (+=), so a tensor read by two consumers (the residual stream,
 * a tied embedding, the normed input of q/k/v) simply receives both contributions; callers zero them first.
 * An op taking a pool spreads its rows over the pool's threads (NULL: all on the calling thread); its GEMMs then
 * call a single-threaded OpenBLAS per task, so OpenBLAS's own threads should be off (openblas_set_num_threads(1)):
 * its workers would spin for the cores while the pool's threads run the other ops. Reductions over rows (a norm's
 * weight gradient) sum fixed blocks in a fixed order, so results do not depend on the number of threads. */
#ifndef TANDEM_TRAIN_OPS_H
#define TANDEM_TRAIN_OPS_H

#include "tandem_base.h"

/* fn(begin, end, arg) over [0, n) cut into blocks of at least `grain` items spread over the pool's threads. */
typedef void (*train_range_fn)(int64_t begin, int64_t end, void *arg);
void train_parallel_for(thread_pool *pool, int64_t n, int64_t grain, train_range_fn fn, void *arg);

/* ---- embedding ---- */
/* out (N, C) = wte[ids[n]] ; ids (N) in 0..V-1; wte (V, C) */
void train_embedding_forward(float *out, const int32_t *ids, const float *wte, int N, int C);
void train_embedding_backward(float *dwte, const float *dout, const int32_t *ids, int N, int C);

/* ---- RMSNorm (Qwen3: weight multiplies directly, not 1 + w) ---- */
/* out (N, C) = inp · rstd · weight, rstd (N) = 1 / sqrt(mean(inp²) + eps) saved for backward; weight (C).
 * Also the per-head QK-norm: N = tokens · heads rows of C = head_dim. out may not alias inp. */
void train_rmsnorm_forward(thread_pool *pool, float *out, float *rstd, const float *inp, const float *weight, int N,
                           int C, float eps);
void train_rmsnorm_backward(thread_pool *pool, float *dinp, float *dweight, const float *dout, const float *inp,
                            const float *weight, const float *rstd, int N, int C);

/* ---- linear: out = inp · weightᵀ (no bias in Qwen3) ---- */
/* out (N, OC) = inp (N, C) · weight (OC, C)ᵀ, by OpenBLAS sgemm. */
void train_linear_forward(thread_pool *pool, float *out, const float *inp, const float *weight, int N, int C, int OC);
/* dinp (N, C) += dout (N, OC) · weight (OC, C); dweight (OC, C) += dout ᵀ · inp (N, C). */
void train_linear_backward(thread_pool *pool, float *dinp, float *dweight, const float *dout, const float *inp,
                           const float *weight, int N, int C, int OC);
/* The plain triple loop: the algorithmic reference the tests hold sgemm to. out (N, OC), inp (N, C), weight (OC, C). */
void train_matmul_ref(float *out, const float *inp, const float *weight, int N, int C, int OC);

/* ---- rotary embedding, rotate-half (NEOX) layout of HF apply_rotary_pos_emb ---- */
/* out (B, T, H, hd) = rope(inp) with position t within each sequence; inv_freq (hd/2). out may alias inp. */
void train_rope_forward(thread_pool *pool, float *out, const float *inp, const float *inv_freq, int B, int T, int H,
                        int hd);
/* dinp (B, T, H, hd) += Rᵀ · dout: the rotation by −angle. */
void train_rope_backward(thread_pool *pool, float *dinp, const float *dout, const float *inv_freq, int B, int T, int H,
                         int hd);

/* ---- causal grouped-query attention ---- */
/* out (B, T, Hq·hd) = Σ_u≤t softmax_u(q_t·k_u / sqrt(hd)) v_u per head; query head h reads KV head
 * h / (Hq/Hkv) (HF repeat_kv: consecutive query heads share). q (B, T, Hq·hd); k, v (B, T, Hkv·hd);
 * att (B, Hq, T, T) receives the probabilities (row t is zero beyond u = t), saved for backward. */
void train_attention_forward(thread_pool *pool, float *out, float *att, const float *q, const float *k, const float *v,
                             int B, int T, int Hq, int Hkv, int hd);
/* dq, dk, dv += gradients; datt (B, Hq, T, T) is scratch (overwritten). */
void train_attention_backward(thread_pool *pool, float *dq, float *dk, float *dv, float *datt, const float *dout,
                              const float *q, const float *k, const float *v, const float *att, int B, int T, int Hq,
                              int Hkv, int hd);
/* The same two as plain loops over u ≤ t: the algorithmic reference of the sgemm versions above. */
void train_attention_forward_ref(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                                 int Hq, int Hkv, int hd);
void train_attention_backward_ref(float *dq, float *dk, float *dv, float *datt, const float *dout, const float *q,
                                  const float *k, const float *v, const float *att, int B, int T, int Hq, int Hkv,
                                  int hd);

/* ---- SwiGLU: silu(gate) ⊙ up ---- */
/* out (n) = silu(gate) ⊙ up, silu(z) = z·σ(z); gate, up (n). */
void train_swiglu_forward(thread_pool *pool, float *out, const float *gate, const float *up, int64_t n);
void train_swiglu_backward(thread_pool *pool, float *dgate, float *dup, const float *dout, const float *gate,
                           const float *up, int64_t n);

/* ---- residual ---- */
/* out (n) = a + b (n) */
void train_residual_forward(thread_pool *pool, float *out, const float *a, const float *b, int64_t n);
/* da += dout, db += dout */
void train_residual_backward(thread_pool *pool, float *da, float *db, const float *dout, int64_t n);

/* ---- cross-entropy over next tokens ---- */
/* losses (N) = −log softmax(logits[n])[targets[n]], 0 where targets[n] < 0 (ignored); logits (N, V).
 * Returns the number of counted (non-ignored) targets. */
int train_crossentropy_forward(thread_pool *pool, float *losses, const float *logits, const int32_t *targets, int N,
                               int V);
/* dlogits (N, V) += scale · (softmax(logits) − onehot(target)) on counted rows; scale = dloss, e.g.
 * 1 / counted for the mean. dlogits may alias logits (then it is overwritten row by row, not accumulated). */
void train_crossentropy_backward(thread_pool *pool, float *dlogits, const float *logits, const int32_t *targets,
                                 float scale, int N, int V);

/* ---- KL to a teacher's top-k logits (distillation) ---- */
enum { TRAIN_MAX_TOPK = 256 };  /* K ≤ this; data with more must be cut by its reader */
/* p = softmax(teacher_logits[n] / temp) over its K ids (renormalised over the top-k), q = softmax(logits[n] /
 * temp) over the whole vocabulary: losses (N) = KL(p ‖ q) = Σ_i p_i (log p_i − log q[ids_i]).
 * logits (N, V); teacher_ids, teacher_logits (N, K); an id < 0 marks an unused slot. */
void train_kl_topk_forward(float *losses, const float *logits, const int32_t *teacher_ids,
                           const float *teacher_logits, float temp, int N, int V, int K);
/* dlogits (N, V) += scale · (q − p) / temp, p scattered onto the vocabulary (Σ p = 1). */
void train_kl_topk_backward(float *dlogits, const float *logits, const int32_t *teacher_ids,
                            const float *teacher_logits, float temp, float scale, int N, int V, int K);

#endif
