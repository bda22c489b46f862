/* kernels_isa.h — the table of row dot products each instruction set provides, private to src/kernels.
 * act.c fills it with the scalar reference or with the SIMD twins (avx2.c, vnni.c), the best the CPU can run. */
#ifndef TANDEM_KERNELS_ISA_H
#define TANDEM_KERNELS_ISA_H

#include "kernels.h"

/* out[t] = Σ_i W[i]·x̂_t[i] for t < n_tok ≤ MATMUL_TOKENS: W one row of cols values stored as its type,
 * x̂_t token t's activations as act blocks at x + t·x_stride (x_stride in blocks). */
typedef void (*row_dot_act_fn)(const uint8_t *row, const act_block *x, int64_t x_stride, int n_tok, int64_t cols,
                               float *out);
/* The same against float activations x + t·x_stride (x_stride in floats), for F32/F16/BF16 rows, for up to
 * n_rows ≤ FLOAT_TILE_ROWS consecutive rows (row r at rows + r·row_bytes) at once: out[t·FLOAT_TILE_ROWS + r].
 * Returns how many rows it did (≥ 1; the kernel picks its tile for n_tok). */
enum { FLOAT_TILE_ROWS = 4 };
/* Tokens per float tile in prompts (more than MATMUL_TOKENS tokens): the tile's register budget, not the
 * weight reads, bounds a prompt's pace, and 3 tokens × 4 rows use all 16 AVX2 registers. */
enum { FLOAT_PREFILL_TOKENS = 3 };
typedef int (*row_dot_float_fn)(const uint8_t *rows, size_t row_bytes, int n_rows, const float *x, int64_t x_stride,
                                int n_tok, int64_t cols, float *out);

/* y[t·y_stride + r] = Σ_k W_r[k]·x[t·x_stride + k] for r < n_rows ≤ FLOAT_GEMM_ROWS and any n_tok: F32/F16/BF16
 * rows against a prompt's tokens, each weight converted once per call rather than once per 3-token tile. For
 * FLOAT_GEMM_MIN_TOKENS or more tokens: the conversion is a pass of its own, not overlapped with the
 * arithmetic, which a 16-token pass (a verification pass) does not repay and 32 tokens or more do
 * (bench/README.md, "Huge pages for packed weights, Q6_K group prefetch, float panels for prompts"). */
enum { FLOAT_GEMM_ROWS = 64, FLOAT_GEMM_MIN_TOKENS = 32 };
typedef void (*rows_gemm_float_fn)(const uint8_t *rows, size_t row_bytes, int n_rows, const float *x,
                                   int64_t x_stride, int n_tok, int64_t cols, float *y, int64_t y_stride);

/* out[t·PACK_ROWS + i] = Σ_j W_i[j]·x̂_t[j] for the PACK_ROWS rows of one packed group (pack.c's layout) and
 * t < n_tok ≤ MATMUL_TOKENS. */
typedef void (*group_dot_act_fn)(const uint8_t *group, const act_block *x, int64_t x_stride, int n_tok,
                                 int64_t cols, float *out);

/* Float weights packed (pack.c: column k of a group's 8 rows is 8 consecutive elements), against float
 * activations x + t·x_stride. dot_packed_float: the PACK_ROWS rows of one group for t < n_tok ≤
 * MATMUL_TOKENS, out[t·PACK_ROWS + i]. gemm_packed_float: n_rows (a multiple of PACK_ROWS; a task's, at most 64)
 * consecutive packed rows, their groups at groups, against any number of tokens:
 * y[t·y_stride + r] = Σ_k W_r[k]·x[t·x_stride + k]. Both read each element once per call and convert it in
 * registers: in the packed layout a column of 8 rows is one load, so no transposed panel is made first. */
typedef void (*group_dot_float_fn)(const uint8_t *group, const float *x, int64_t x_stride, int n_tok, int64_t cols,
                                   float *out);
typedef void (*groups_gemm_float_fn)(const uint8_t *groups, int n_rows, const float *x, int64_t x_stride, int n_tok,
                                     int64_t cols, float *y, int64_t y_stride);

typedef struct kernel_isa {
    const char *name;
    void (*quantize_act)(const float *x, act_block *out, int64_t n, int scale_blocks);
    row_dot_act_fn dot_act[TANDEM_TYPE_COUNT];      /* NULL: the type uses the exact path */
    row_dot_float_fn dot_float[TANDEM_TYPE_COUNT];  /* NULL: dot_row per token */
    rows_gemm_float_fn gemm_float[TANDEM_TYPE_COUNT]; /* NULL: the float tiles for every token count */
    group_dot_act_fn dot_packed[TANDEM_TYPE_COUNT]; /* NULL: the type is not packed (unless float, below) */
    group_dot_float_fn dot_packed_float[TANDEM_TYPE_COUNT];     /* NULL: float rows stay plain */
    groups_gemm_float_fn gemm_packed_float[TANDEM_TYPE_COUNT];  /* set wherever dot_packed_float is */
    /* attention_forward's contract (kernels.h) */
    void (*attention)(float *out, int64_t out_stride, const float *q, int64_t q_stride, int n_tokens, int n_queries,
                      const void *keys, const void *values, tandem_type kv_type, int n_keys0, int head_dim,
                      float scale, float *scratch);
    void (*to_f16)(uint16_t *out, const float *x, int64_t n);                /* f32_to_f16_row's contract */
    void (*swiglu)(float *out, const float *gate, const float *up, int n);  /* swiglu_forward's contract */
    void (*softmax)(float *x, int n);                                       /* softmax_forward_simd's */
    int64_t (*argmax)(const float *x, int64_t n);                            /* argmax_f32's contract */
    void (*gelu_tanh)(float *out, const float *x, int64_t n);                /* gelu_tanh_forward's contract */
} kernel_isa;

/* The scalar twins (ops.c), the references the SIMD ones are tested against. */
void attention_forward_scalar(float *out, int64_t out_stride, const float *q, int64_t q_stride, int n_tokens,
                              int n_queries, const void *keys, const void *values, tandem_type kv_type, int n_keys0,
                              int head_dim, float scale, float *scratch);
void f32_to_f16_row_scalar(uint16_t *out, const float *x, int64_t n);
void swiglu_forward_scalar(float *out, const float *gate, const float *up, int n);
int64_t argmax_f32_scalar(const float *x, int64_t n);
void gelu_tanh_forward_scalar(float *out, const float *x, int64_t n);

const kernel_isa *kernel_isa_current(void);

/* The scalar quantizer (the definition the SIMD twins must reproduce byte for byte). */
void quantize_act_scalar(const float *x, act_block *out, int64_t n, int scale_blocks);

/* Makes isa the selected table (tests: vnni.c built over SIMDe's emulation on a CPU without VNNI); NULL
 * restores the best. Not thread-safe, like kernel_isa_select. */
void kernel_isa_use(const kernel_isa *isa);

#if defined(__x86_64__)
/* avx2.c; only called when the CPU has AVX2, FMA and F16C. */
void kernel_isa_fill_avx2(kernel_isa *isa);
/* vnni.c: avx2.c's table with VNNI packed products; called only when the CPU has AVX2 and AVX-512 VNNI + VL
 * (EVEX) or AVX-VNNI (VEX). */
void kernel_isa_fill_avx512vnni(kernel_isa *isa);
void kernel_isa_fill_avxvnni(kernel_isa *isa);
#endif

#endif
