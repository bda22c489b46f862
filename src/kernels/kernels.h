/* kernels.h — every numeric operation the model calls, with shapes on every parameter. Kernels know
 * nothing of models, files or tokens: plain loops over float arrays and quantized rows. Depends on base. */
#ifndef TANDEM_KERNELS_H
#define TANDEM_KERNELS_H

#include "tandem_base.h"

/* Hot loops are compiled several times (AVX-512, AVX2+FMA, baseline) and the loader picks the best the
 * CPU has (GNU ifunc; gcc only: clang 14 mangles "arch=" clones differently). The loops are written so
 * the compiler vectorises them. The matrix products have hand-written twins per instruction set
 * (kernels_isa.h), picked at run time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(TANDEM_NO_CLONES)
#define KERNEL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KERNEL_CLONES
#endif

/* ---- quantized rows (quant.c) ---- */

/* True if tandem can dequantize and multiply weights of type t. */
bool kernel_type_supported(tandem_type t);
/* dst (n) = the n values of a row stored as type t at src. n is a multiple of t's block size. */
void dequantize_row(tandem_type t, const void *src, float *dst, int64_t n);
/* Σ_i W[i]·x[i] for one row of n values stored as type t. */
float dot_row(tandem_type t, const void *row, const float *x, int64_t n);
/* Plain f32 dot product of n values. */
float dot_f32(const float *a, const float *b, int64_t n);
/* Reference quantizers (ggml's *_ref rules): dst receives n/32 blocks. */
void quantize_row_q8_0(const float *src, void *dst, int64_t n);
void quantize_row_q4_0(const float *src, void *dst, int64_t n);
void quantize_row_q4_1(const float *src, void *dst, int64_t n);
void quantize_row_q5_0(const float *src, void *dst, int64_t n);
void quantize_row_q5_1(const float *src, void *dst, int64_t n);
void quantize_row_iq4_nl(const float *src, void *dst, int64_t n);
/* K-quants (ggml's quantize_row_*_K_ref, i.e. llama-quantize without an importance matrix): dst receives
 * n/256 super-blocks. */
void quantize_row_q2_K(const float *src, void *dst, int64_t n);
void quantize_row_q3_K(const float *src, void *dst, int64_t n);
void quantize_row_q4_K(const float *src, void *dst, int64_t n);
void quantize_row_q5_K(const float *src, void *dst, int64_t n);
void quantize_row_q6_K(const float *src, void *dst, int64_t n);
/* True if quantize_row can write type t. */
bool kernel_can_quantize(tandem_type t);
/* dst (n / block size blocks of t) = src (n) stored as type t, n a multiple of t's block size; F16/BF16
 * round to nearest even. Same bytes as the per-type functions above. src must pass quantize_input_ok: the
 * scale searches square and sum values, so NaN, infinities and magnitudes near FLT_MAX have no meaning there
 * (a converter reports such a tensor by name instead of quantizing it). */
void quantize_row(tandem_type t, const float *src, void *dst, int64_t n);
/* True if every value is 0 or 2^-30 ≤ |x| ≤ 2^30 (trained weights are far inside; the fuzzer found the
 * K-quant scale searches overflow on extreme magnitudes, so the domain is stated, not assumed). */
bool quantize_input_ok(const float *src, int64_t n);
/* Brings a row of weights into that domain where it can: magnitudes below 2^-30 become 0 (far below any
 * quantization step of a real row; weight decay leaves such values), then returns quantize_input_ok. NaN,
 * infinities and magnitudes above 2^30 stay and make it false: the caller names the tensor. */
bool quantize_prepare_row(float *x, int64_t n);

/* ---- activations quantized for integer dot products (act.c) ----
 * Weight types with integer quants multiply faster against 8-bit activations: 32 values share one f32
 * scale d = max|x|/127 and q = round(x/d). s serves the weight types with offsets (mins, "q − 8" and so
 * on), whose correction needs Σx per block; sum16 Q6_K's −32, per half block, in integers.
 *
 * K-quant weights (256-element super-blocks) take activations whose 8 blocks of a super-block share one
 * scale (d = max|x| over the 256 values / 127, as llama.cpp's Q8_K): their kernels then apply the 6- and
 * 8-bit sub-block scales to integer sums and convert to float once per super-block, not once per block.
 * act_scale_blocks names the grouping a weight type's kernels expect. */
typedef struct act_block {
    float d;             /* scale: x ≈ d·q (the same for the scale_blocks blocks of a group) */
    float s;             /* d·Σq over the 32 values */
    int16_t sum16[2];    /* Σq over values 0–15 and over 16–31 */
    uint32_t unused;     /* keeps q at a 16-byte offset */
    int8_t q[32];
} act_block;
_Static_assert(sizeof(act_block) == 48, "act_block is 48 bytes");

/* Blocks of 32 activations that share one scale for weights of type t: 8 (a 256-element super-block) for
 * the K-quants, else 1. */
int act_scale_blocks(tandem_type t);
/* out (n/32 blocks) = x (n) quantized, scale_blocks (1 or 8) consecutive blocks sharing one scale; n a
 * multiple of 32·scale_blocks. Same bytes on every instruction set. */
void quantize_act(const float *x, act_block *out, int64_t n, int scale_blocks);
/* True if the selected instruction set has an integer dot product for weights of type t. */
bool kernel_has_act_dot(tandem_type t);
/* Name of the instruction set the kernels use ("avx512vnni", "avxvnni", "avx2", "scalar"): the best the CPU
 * has, or the one named by the environment variable TANDEM_KERNELS (for tests and benchmarks comparing paths). */
const char *kernel_isa_name(void);
/* Forces the instruction set (one of those names, or NULL for the best); false if the CPU lacks it.
 * Not thread-safe: for tests and tools, before any kernel runs. */
bool kernel_isa_select(const char *name);

/* ---- matrix products (matmul.c) ---- */

/* A weight matrix as stored: rows = output features, cols = input features (PyTorch [out, in],
 * GGUF ne = {in, out}); row o is row_bytes bytes at data + o·row_bytes. */
typedef struct weight_matrix {
    const void *data;
    tandem_type type;
    int64_t rows, cols;
    size_t row_bytes;
    bool packed;  /* rows interleaved by weight_pack (then only the kernels know where row o is) */
} weight_matrix;

/* ---- packed weight layout (pack.c) ----
 * Q8_0, Q4_0, Q4_K, Q5_K and Q6_K matrices multiply faster with PACK_ROWS rows interleaved column block by
 * column block (one vector then holds the same columns of 8 rows: no horizontal sums, one scale vector for 8
 * rows), and so do F32, F16 and BF16 ones (one stream, no horizontal sums); bench/README.md, "Before the
 * side-by-side runs" and "Packed float weights". Same size as the plain layout; packing is a copy made once
 * when a model is first run. */
enum { PACK_ROWS = 8 };
/* Bytes of w's packed copy if the selected kernels have a packed product for it (Q8_0, Q4_0, Q4_K, Q5_K,
 * Q6_K, F32, F16 or BF16, rows a multiple of 8, not packed yet); 0 when w stays as it is. */
size_t weight_packed_bytes(const weight_matrix *w);
/* Copies w (weight_packed_bytes(w) > 0) into the packed layout at dst, 64-byte aligned and that many bytes,
 * on the pool's threads, and points w at it. */
void weight_pack_into(thread_pool *pool, weight_matrix *w, uint8_t *dst);
/* weight_pack_into a new buffer (streamed_alloc; the caller frees *buffer); *buffer = NULL when w stays. */
tandem_status weight_pack(thread_pool *pool, weight_matrix *w, void **buffer);
/* dst (w->cols) = row r of w dequantized, from either layout. */
void weight_row_dequantize(const weight_matrix *w, int64_t r, float *dst);

/* Buffers a matmul works in, owned by the caller so that a forward pass never allocates. */
typedef struct matmul_scratch {
    float *rows;      /* (n_threads, max cols) a dequantized weight row per thread (the exact path) */
    act_block *act;   /* (max tokens, max cols / 32) the activations quantized to 8 bits */
    bool exact;       /* multiply quantized weights by f32 activations, the reference path, instead of
                         by 8-bit activations (faster, ~1e-3 relative difference per product sum) */
} matmul_scratch;

/* y (n_tokens, w->rows) = x (n_tokens, w->cols) · Wᵀ, rows split over the pool's threads. Each weight
 * row is read once for up to MATMUL_TOKENS tokens at a time, so verifying k drafted tokens streams the
 * weights ~once, not k times. */
enum { MATMUL_TOKENS = 4 };
void matmul(thread_pool *pool, float *y, const float *x, const weight_matrix *w, int n_tokens,
            const matmul_scratch *scratch);
/* y[i] = x · w[i]ᵀ for n_mats ≤ MATMUL_MAX_PARTS matrices of the same input width (q/k/v, gate/up): x is
 * quantized once and all rows go to the pool in one round, with the same results as n_mats matmul calls. */
enum { MATMUL_MAX_PARTS = 4 };
void matmul_shared_input(thread_pool *pool, float *const *y, const float *x, const weight_matrix *const *w,
                         int n_mats, int n_tokens, const matmul_scratch *scratch);
/* The same product of a normalized input: xb (n_tokens, cols) = RMSNorm(x) with weight norm (rmsnorm_forward),
 * each token normalized and quantized by one task while its vector is still in that core's L1, then y[i] =
 * xb · w[i]ᵀ. Results equal rmsnorm_forward per token followed by matmul_shared_input, bit for bit. */
void matmul_normed_input(thread_pool *pool, float *const *y, float *xb, const float *x, const float *norm, float eps,
                         const weight_matrix *const *w, int n_mats, int n_tokens, const matmul_scratch *scratch);
/* y = h · wᵀ with h (n_tokens, w->cols) = silu(gate) ⊙ up (swiglu_forward; h may be gate), made and quantized a
 * token per task as above. Results equal swiglu_forward followed by matmul, bit for bit. */
void matmul_swiglu_input(thread_pool *pool, float *y, float *h, const float *gate, const float *up,
                         const weight_matrix *w, int n_tokens, const matmul_scratch *scratch);

/* ---- element-wise and per-vector ops (ops.c) ---- */

/* out (n) = w ⊙ x / sqrt(mean(x²) + eps); out may alias x. w (n) multiplies directly (not 1 + w). */
void rmsnorm_forward(float *out, const float *x, const float *w, int n, float eps);
/* Rotary embedding, rotate-half ("NEOX") layout as in HF Qwen3 apply_rotary_pos_emb: for each head
 * vector x (head_dim), pairs (k, k + head_dim/2) rotate by angle pos·inv_freq[k]. rope_angles makes one
 * position's cos_sin (head_dim): the cosines of the head_dim/2 angles, then their sines (once per position
 * and forward pass: every layer and head shares them); rope_forward rotates x (n_heads, head_dim) in place. */
void rope_angles(float *cos_sin, int head_dim, int32_t pos, const float *inv_freq);
/* Qwen3-VL's interleaved M-RoPE (transformers' apply_interleaved_mrope): rope_angles' layout, frequency k taking
 * its position from axis H (pos[1]) when k % 3 == 1 and k < 3·sections[1], from W (pos[2]) when k % 3 == 2 and
 * k < 3·sections[2], else from T (pos[0]). Equal components give rope_angles(pos[0]). */
void rope_angles_mrope(float *cos_sin, int head_dim, const int32_t pos[3], const int32_t sections[3],
                       const float *inv_freq);
void rope_forward(float *x, int n_heads, int head_dim, const float *cos_sin);
/* inv_freq (head_dim/2) = 1 / theta^(2k/head_dim), computed in float32 as HF does. */
void rope_inv_freq(float *inv_freq, int head_dim, float theta);
/* In place softmax of x (n). */
void softmax_forward(float *x, int n);
/* softmax_forward with the SIMD exp where the instruction set has one (relative error ~2e-7 a value next to
 * expf's): the training pass's attention rows. */
void softmax_forward_simd(float *x, int n);
/* out (n) = silu(gate) ⊙ up, silu(z) = z / (1 + e^-z); out may alias gate. */
void swiglu_forward(float *out, const float *gate, const float *up, int n);
/* out (n) += x (n). */
void add_forward(float *out, const float *x, int64_t n);
/* True if no value of x (n) is NaN or infinite (cheap enough for one logits row per forward pass). */
bool all_finite_f32(const float *x, int64_t n);
/* The index of the largest of x[0..n) (n ≥ 1), the first on ties; NaNs never win (0 when all are NaN). */
int64_t argmax_f32(const float *x, int64_t n);
/* The k largest of z (n ≥ 1), best first, into ids and vals (min(k, n) entries each; that count is returned):
 * ordered by value descending, equal values by index ascending, so the selection and its order never depend on
 * how the search went (the sampler's, the teacher's and synth's top-k are this one). k ≥ 1; k ≥ n gives every
 * index, sorted. O(n log k): a min-heap of the best k so far in ids/vals, then sorted in place. z must hold no NaN
 * (its position in the order is unspecified; the result stays within bounds). */
int32_t top_k_f32(const float *z, int32_t n, int32_t k, int32_t *ids, float *vals);
/* Causal attention for n_tokens consecutive positions × n_queries query heads that share one KV head (a GQA
 * group): query g of token t, q + t·q_stride + g·head_dim, attends keys 0 … n_keys0 + t − 1 (n_keys0 ≥ 1):
 * out + t·out_stride + g·head_dim (head_dim) = Σ_u softmax_u(q·k_u · scale) v_u. keys, values
 * (n_keys0 + n_tokens − 1 rows of head_dim) contiguous rows of kv_type F32, F16 or Q8_0 (kv_row_bytes each).
 * scratch: attention_scratch_floats(n_tokens · n_queries, head_dim) floats: the keys go in blocks of
 * ATTENTION_KEY_BLOCK, so the memory a call needs does not grow with the context. Together, the queries read each
 * key and value once. A query's result does not depend on the other queries of the call: a verification pass over
 * k tokens gives the bits of k single-token calls. */
enum { ATTENTION_KEY_BLOCK = 64, ATTENTION_SCRATCH_PER_QUERY = ATTENTION_KEY_BLOCK + 4 };
void attention_forward(float *out, int64_t out_stride, const float *q, int64_t q_stride, int n_tokens, int n_queries,
                       const void *keys, const void *values, tandem_type kv_type, int n_keys0, int head_dim,
                       float scale, float *scratch);
/* The scratch floats attention_forward needs for n_queries query rows in all (tokens × query heads) of head_dim:
 * ATTENTION_SCRATCH_PER_QUERY per row, and room for a block of keys and values converted to floats (a Q8_0 cache's
 * block is converted once for all the rows of a call). */
size_t attention_scratch_floats(int n_queries, int head_dim);

/* ---- the vision encoder's per-vector ops (ops.c) ---- */

/* out (n) = (x − mean) / sqrt(var + eps) ⊙ w + b, mean and biased variance over the n values (PyTorch's
 * LayerNorm); out may alias x. */
void layernorm_forward(float *out, const float *x, const float *w, const float *b, int n, float eps);
/* y (rows, n) += b (n), on every row. */
void bias_add_rows(float *y, const float *b, int64_t rows, int n);
/* out (n) = GELU(x); out may alias x. The tanh form 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) is PyTorch's
 * gelu(approximate="tanh") (HF's "gelu_pytorch_tanh"); the erf form 0.5·x·(1 + erf(x/√2)) is nn.GELU()'s. */
void gelu_tanh_forward(float *out, const float *x, int64_t n);
void gelu_erf_forward(float *out, const float *x, int64_t n);
/* A 2-D position's cos_sin (head_dim, rope_forward's layout) for axial rotary embeddings (Qwen-VL vision
 * towers): of the head_dim/2 angles the first head_dim/4 are row·inv_freq[k], the next head_dim/4
 * col·inv_freq[k]; inv_freq (head_dim/4), e.g. rope_inv_freq(inv_freq, head_dim/2, theta). head_dim a multiple
 * of 4. */
void rope_angles_2d(float *cos_sin, int head_dim, int32_t row, int32_t col, const float *inv_freq);
/* Bidirectional attention: each of n_queries query rows (q + i·head_dim) attends all n_keys keys:
 * out + i·head_dim (head_dim) = Σ_u softmax_u(q_i·k_u · scale) v_u, keys and values contiguous f32 rows of
 * head_dim. attention_forward's kernel with every query at the last position (the same arithmetic per query
 * whatever n_queries is); scratch: attention_scratch_floats(n_queries, head_dim) floats. */
void attention_full_forward(float *out, const float *q, int n_queries, const float *keys, const float *values,
                            int n_keys, int head_dim, float scale, float *scratch);

/* ---- the KV cache's rows (ops.c) ----
 * A row is one token's key or value vector of one KV head: head_dim values as F32, F16 (round to nearest even) or
 * Q8_0 (ggml's block_q8_0: per 32 values an f16 scale d = max|x|/127 and 32 int8 q = round(x/d); keys and values
 * are read back as d·q). */
/* NULL if a cache of kv_type can hold rows of head_dim values, else why not (a phrase for an error message). */
const char *kv_type_problem(tandem_type kv_type, int head_dim);
/* Bytes of one row (kv_type_problem(kv_type, head_dim) == NULL). */
size_t kv_row_bytes(tandem_type kv_type, int head_dim);
/* dst (kv_row_bytes) = x (head_dim) stored as kv_type. A NaN in a Q8_0 block makes its scale NaN, so it reaches
 * the logits as it would from an f16 or f32 cache, where it is caught. */
void kv_store_row(tandem_type kv_type, void *dst, const float *x, int head_dim);
/* out (n) = x (n) as f16, rounded to nearest even (f32_to_f16): keys and values entering an f16 cache. */
void f32_to_f16_row(uint16_t *out, const float *x, int64_t n);

#endif
