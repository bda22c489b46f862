/* ops.c — the per-vector operations of a transformer block: RMSNorm, LayerNorm, rotary embedding (1-D and 2-D),
 * softmax, SwiGLU, GELU, bias and residual adds, causal and bidirectional attention, argmax, top-k, a finiteness
 * test. Written to match HF's float32 arithmetic. */
#include <math.h>

#include "kernels_isa.h"

KERNEL_CLONES void rmsnorm_forward(float *out, const float *x, const float *w, int n, float eps) {
    /* double: the mean of squares over thousands of values loses bits in float. Eight running sums (element i
     * goes to sum i mod 8): one sum made each add wait on the one before (bench/README.md, "Attention in tiles").
     * A float's square is exact in double, so only the adds round, the same way on every path. */
    double ss[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) ss[j] += (double)x[i + j] * x[i + j];
    double sum = ((ss[0] + ss[1]) + (ss[2] + ss[3])) + ((ss[4] + ss[5]) + (ss[6] + ss[7]));
    for (; i < n; i++) sum += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(sum / n + eps));
    for (i = 0; i < n; i++) out[i] = w[i] * (x[i] * scale);
}

void rope_inv_freq(float *inv_freq, int head_dim, float theta) {
    /* HF: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all in float32. */
    for (int k = 0; k < head_dim / 2; k++) {
        float e = (float)(2 * k) / (float)head_dim;
        inv_freq[k] = 1.0f / powf(theta, e);
    }
}

void rope_angles(float *cos_sin, int head_dim, int32_t pos, const float *inv_freq) {
    const int half = head_dim / 2;
    for (int k = 0; k < half; k++) {
        /* HF multiplies position by inv_freq in float32, then takes cos/sin of that float32 angle. */
        const float angle = (float)pos * inv_freq[k];
        cos_sin[k] = (float)cos((double)angle);
        cos_sin[half + k] = (float)sin((double)angle);
    }
}

void rope_angles_mrope(float *cos_sin, int head_dim, const int32_t pos[3], const int32_t sections[3],
                       const float *inv_freq) {
    const int half = head_dim / 2;
    for (int k = 0; k < half; k++) {
        const int axis = k % 3 == 1 && k < 3 * sections[1] ? 1 : k % 3 == 2 && k < 3 * sections[2] ? 2 : 0;
        const float angle = (float)pos[axis] * inv_freq[k]; /* float32 product, as HF */
        cos_sin[k] = (float)cos((double)angle);
        cos_sin[half + k] = (float)sin((double)angle);
    }
}

void rope_forward(float *x, int n_heads, int head_dim, const float *cos_sin) {
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        for (int k = 0; k < half; k++) {
            const float a = v[k], b = v[k + half], c = cos_sin[k], s = cos_sin[half + k];
            v[k] = a * c - b * s;
            v[k + half] = b * c + a * s;
        }
    }
}

void softmax_forward(float *x, int n) {
    float max = x[0];
    for (int i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void swiglu_forward_scalar(float *out, const float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void softmax_forward_simd(float *x, int n) { kernel_isa_current()->softmax(x, n); }

void swiglu_forward(float *out, const float *gate, const float *up, int n) {
    kernel_isa_current()->swiglu(out, gate, up, n);
}

KERNEL_CLONES bool all_finite_f32(const float *x, int64_t n) {
    /* An exponent of all ones is an infinity or a NaN, and the largest exponent field there is: the running max of
     * the fields, eight lanes wide (a loop of eight that -O2 vectorises; one flag per element it did not), in
     * integers, so NaN compares like any other value. */
    uint32_t lane[8] = {0}, top = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            uint32_t u;
            memcpy(&u, x + i + j, sizeof u);
            u &= 0x7f800000u;
            lane[j] = u > lane[j] ? u : lane[j];
        }
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, sizeof u);
        u &= 0x7f800000u;
        top = u > top ? u : top;
    }
    for (int j = 0; j < 8; j++) top = lane[j] > top ? lane[j] : top;
    return top != 0x7f800000u;
}

/* Two passes, as the SIMD twin goes: the largest value (NaNs skipped), then its first index. Tracking the
 * index in one pass made each step wait on the load of x[best], over Qwen3's 151936 logits a visible part of a
 * small model's token (bench/README.md, "Contiguous task shares, SIMD SwiGLU and argmax, f16 KV cache"). */
int64_t argmax_f32_scalar(const float *x, int64_t n) {
    float max = -INFINITY;
    for (int64_t i = 0; i < n; i++) max = x[i] > max ? x[i] : max;
    for (int64_t i = 0; i < n; i++)
        if (x[i] == max) return i;
    return 0;
}

int64_t argmax_f32(const float *x, int64_t n) { return kernel_isa_current()->argmax(x, n); }

/* top_k_f32's order: "entry a ranks below entry b" (a smaller value, or an equal value at a larger index). */
static bool ranks_below(float va, int32_t ia, float vb, int32_t ib) { return va < vb || (va == vb && ia > ib); }

/* Restores the min-heap (lowest-ranked entry at the root) of ids/vals (n) below node i. */
static void top_k_sift_down(int32_t *ids, float *vals, int32_t n, int32_t i) {
    for (;;) {
        int32_t low = i;
        const int32_t l = 2 * i + 1, r = l + 1;
        if (l < n && ranks_below(vals[l], ids[l], vals[low], ids[low])) low = l;
        if (r < n && ranks_below(vals[r], ids[r], vals[low], ids[low])) low = r;
        if (low == i) return;
        const float tv = vals[i];
        const int32_t ti = ids[i];
        vals[i] = vals[low], ids[i] = ids[low], vals[low] = tv, ids[low] = ti;
        i = low;
    }
}

int32_t top_k_f32(const float *z, int32_t n, int32_t k, int32_t *ids, float *vals) {
    TANDEM_ASSERT(n >= 1 && k >= 1);
    const int32_t m = k < n ? k : n;
    for (int32_t i = 0; i < m; i++) ids[i] = i, vals[i] = z[i];
    for (int32_t i = m / 2 - 1; i >= 0; i--) top_k_sift_down(ids, vals, m, i);
    /* a later index ranks above the root only with a strictly larger value */
    for (int32_t i = m; i < n; i++)
        if (z[i] > vals[0]) {
            ids[0] = i, vals[0] = z[i];
            top_k_sift_down(ids, vals, m, 0);
        }
    /* heap sort: the lowest-ranked entry goes last, so the best ends first */
    for (int32_t end = m - 1; end > 0; end--) {
        const float tv = vals[0];
        const int32_t ti = ids[0];
        vals[0] = vals[end], ids[0] = ids[end], vals[end] = tv, ids[end] = ti;
        top_k_sift_down(ids, vals, end, 0);
    }
    return m;
}

KERNEL_CLONES void add_forward(float *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] += x[i];
}

/* ---- the vision encoder's ops ---- */

KERNEL_CLONES void layernorm_forward(float *out, const float *x, const float *w, const float *b, int n, float eps) {
    /* two passes in double (rmsnorm_forward's eight running sums): the mean, then the squared deviations from it,
     * so a large common offset does not cancel the variance away */
    double s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += x[i + j];
    double sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) sum += x[i];
    const double mean = sum / n;
    double v[8] = {0};
    for (i = 0; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) v[j] += (x[i + j] - mean) * (x[i + j] - mean);
    double var = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
    for (; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    const float m = (float)mean, rstd = (float)(1.0 / sqrt(var / n + eps));
    for (i = 0; i < n; i++) out[i] = (x[i] - m) * rstd * w[i] + b[i];
}

KERNEL_CLONES void bias_add_rows(float *y, const float *b, int64_t rows, int n) {
    for (int64_t r = 0; r < rows; r++, y += n)
        for (int i = 0; i < n; i++) y[i] += b[i];
}

void gelu_tanh_forward_scalar(float *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        out[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    }
}

void gelu_tanh_forward(float *out, const float *x, int64_t n) { kernel_isa_current()->gelu_tanh(out, x, n); }

void gelu_erf_forward(float *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.7071067811865476f));
}

void rope_angles_2d(float *cos_sin, int head_dim, int32_t row, int32_t col, const float *inv_freq) {
    TANDEM_ASSERT(head_dim % 4 == 0);
    const int half = head_dim / 2, quarter = head_dim / 4;
    for (int k = 0; k < half; k++) {
        /* HF: position (float32) times inv_freq in float32, then cos/sin of that float32 angle */
        const float angle = (float)(k < quarter ? row : col) * inv_freq[k < quarter ? k : k - quarter];
        cos_sin[k] = (float)cos((double)angle);
        cos_sin[half + k] = (float)sin((double)angle);
    }
}

void attention_full_forward(float *out, const float *q, int n_queries, const float *keys, const float *values,
                            int n_keys, int head_dim, float scale, float *scratch) {
    TANDEM_ASSERT(n_queries >= 1 && n_keys >= 1 && head_dim >= 1);
    /* one token whose n_queries "heads" share the keys: every query sees all n_keys */
    kernel_isa_current()->attention(out, 0, q, 0, 1, n_queries, keys, values, TANDEM_TYPE_F32, n_keys, head_dim, scale,
                                    scratch);
}

/* ---- KV cache rows ---- */

enum { KV_Q8_0_BLOCK = 32, KV_Q8_0_BLOCK_BYTES = 34 }; /* quant.c's block_q8_0: an f16 scale, 32 int8 */

const char *kv_type_problem(tandem_type kv_type, int head_dim) {
    if (kv_type != TANDEM_TYPE_F16 && kv_type != TANDEM_TYPE_F32 && kv_type != TANDEM_TYPE_Q8_0)
        return "the KV cache holds f16, f32 or q8_0";
    if (kv_type == TANDEM_TYPE_Q8_0 && head_dim % KV_Q8_0_BLOCK != 0)
        return "a q8_0 cache needs a head_dim that is a multiple of 32";
    return NULL;
}

size_t kv_row_bytes(tandem_type kv_type, int head_dim) {
    TANDEM_ASSERT(!kv_type_problem(kv_type, head_dim));
    return kv_type == TANDEM_TYPE_Q8_0 ? (size_t)head_dim / KV_Q8_0_BLOCK * KV_Q8_0_BLOCK_BYTES
                                       : (size_t)head_dim * (kv_type == TANDEM_TYPE_F16 ? 2 : 4);
}

/* quantize_row_q8_0's rule (ggml's), except that a NaN is kept: it makes amax, hence d, NaN. */
static void kv_store_q8_0(uint8_t *dst, const float *x, int n) {
    for (int b = 0; b < n / KV_Q8_0_BLOCK; b++, dst += KV_Q8_0_BLOCK_BYTES, x += KV_Q8_0_BLOCK) {
        float amax = 0.0f;
        for (int j = 0; j < KV_Q8_0_BLOCK; j++) {
            const float a = fabsf(x[j]);
            amax = amax != amax || a <= amax ? amax : a;
        }
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t dh = f32_to_f16(d);
        memcpy(dst, &dh, sizeof dh);
        for (int j = 0; j < KV_Q8_0_BLOCK; j++) {
            const float v = roundf(x[j] * id); /* |v| ≤ 127 unless NaN (then 0: d carries the NaN) */
            dst[2 + j] = (uint8_t)(int8_t)(v == v ? (v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v) : 0.0f);
        }
    }
}

void kv_store_row(tandem_type kv_type, void *dst, const float *x, int head_dim) {
    switch (kv_type) {
    case TANDEM_TYPE_F16: f32_to_f16_row(dst, x, head_dim); return;
    case TANDEM_TYPE_Q8_0: kv_store_q8_0(dst, x, head_dim); return;
    default: memcpy(dst, x, (size_t)head_dim * sizeof(float)); return;
    }
}

/* Element i of a cache's rows (rows of head_dim values, head_dim a multiple of 32 for Q8_0, so blocks never
 * straddle rows and element i is in block i / 32). */
static inline float kv_elem(const void *base, size_t i, const tandem_type kv_type) {
    if (kv_type == TANDEM_TYPE_Q8_0) {
        const uint8_t *block = (const uint8_t *)base + i / KV_Q8_0_BLOCK * KV_Q8_0_BLOCK_BYTES;
        uint16_t d;
        memcpy(&d, block, sizeof d);
        return f16_to_f32(d) * (float)(int8_t)block[2 + i % KV_Q8_0_BLOCK];
    }
    return kv_type == TANDEM_TYPE_F16 ? f16_to_f32(((const uint16_t *)base)[i]) : ((const float *)base)[i];
}

/* The definition, one query at a time, with the SIMD twins' online softmax over blocks of keys (so it needs
 * only their scratch): when a block raises the running max, what was summed so far is scaled down to it. */
static inline __attribute__((always_inline)) void attention_scalar_of(float *out, int64_t out_stride, const float *q,
                                                                      int64_t q_stride, int n_tokens, int n_queries,
                                                                      const void *keys, const void *values,
                                                                      const tandem_type kv_type, int n_keys0,
                                                                      int head_dim, float scale, float *scratch) {
    float *p = scratch;  /* one block's weights */
    for (int t = 0; t < n_tokens; t++)
        for (int g = 0; g < n_queries; g++) {
            const float *qg = q + t * q_stride + (int64_t)g * head_dim;
            float *o = out + t * out_stride + (int64_t)g * head_dim;
            const int n_keys = n_keys0 + t;
            float max = -INFINITY, sum = 0.0f;
            for (int d = 0; d < head_dim; d++) o[d] = 0.0f;
            for (int b0 = 0; b0 < n_keys; b0 += ATTENTION_KEY_BLOCK) {
                const int kb = n_keys - b0 < ATTENTION_KEY_BLOCK ? n_keys - b0 : ATTENTION_KEY_BLOCK;
                float block_max = -INFINITY;
                for (int u = 0; u < kb; u++) {
                    const size_t key = (size_t)(b0 + u) * head_dim;
                    float s;
                    if (kv_type == TANDEM_TYPE_F32) s = dot_f32(qg, (const float *)keys + key, head_dim);
                    else {  /* in double: one float running sum over large products drifts by ~1e-5 */
                        double sd = 0.0;
                        for (int d = 0; d < head_dim; d++) sd += (double)qg[d] * kv_elem(keys, key + d, kv_type);
                        s = (float)sd;
                    }
                    p[u] = s * scale;
                    block_max = p[u] > block_max ? p[u] : block_max;
                }
                const float new_max = block_max > max ? block_max : max;
                const float alpha = max == -INFINITY ? 0.0f : expf(max - new_max);
                float block_sum = 0.0f;
                for (int u = 0; u < kb; u++) block_sum += p[u] = expf(p[u] - new_max);
                sum = sum * alpha + block_sum;
                max = new_max;
                for (int d = 0; d < head_dim; d++) o[d] *= alpha;
                for (int u = 0; u < kb; u++)
                    for (int d = 0; d < head_dim; d++)
                        o[d] += p[u] * kv_elem(values, (size_t)(b0 + u) * head_dim + d, kv_type);
            }
            for (int d = 0; d < head_dim; d++) o[d] /= sum;
        }
}

/* One body per cache type (kv_type a constant inside), chosen once per call. */
KERNEL_CLONES void attention_forward_scalar(float *out, int64_t out_stride, const float *q, int64_t q_stride,
                                            int n_tokens, int n_queries, const void *keys, const void *values,
                                            tandem_type kv_type, int n_keys0, int head_dim, float scale,
                                            float *scratch) {
    switch (kv_type) {
    case TANDEM_TYPE_F16:
        attention_scalar_of(out, out_stride, q, q_stride, n_tokens, n_queries, keys, values, TANDEM_TYPE_F16, n_keys0,
                            head_dim, scale, scratch);
        return;
    case TANDEM_TYPE_Q8_0:
        attention_scalar_of(out, out_stride, q, q_stride, n_tokens, n_queries, keys, values, TANDEM_TYPE_Q8_0, n_keys0,
                            head_dim, scale, scratch);
        return;
    default:
        attention_scalar_of(out, out_stride, q, q_stride, n_tokens, n_queries, keys, values, TANDEM_TYPE_F32, n_keys0,
                            head_dim, scale, scratch);
    }
}

void attention_forward(float *out, int64_t out_stride, const float *q, int64_t q_stride, int n_tokens, int n_queries,
                       const void *keys, const void *values, tandem_type kv_type, int n_keys0, int head_dim,
                       float scale, float *scratch) {
    TANDEM_ASSERT(!kv_type_problem(kv_type, head_dim));
    TANDEM_ASSERT(n_tokens >= 1 && n_queries >= 1 && n_keys0 >= 1 && head_dim >= 1);
    kernel_isa_current()->attention(out, out_stride, q, q_stride, n_tokens, n_queries, keys, values, kv_type, n_keys0,
                                    head_dim, scale, scratch);
}

size_t attention_scratch_floats(int n_queries, int head_dim) {
    return (size_t)n_queries * ATTENTION_SCRATCH_PER_QUERY + 2 * (size_t)ATTENTION_KEY_BLOCK * (size_t)head_dim;
}

void f32_to_f16_row_scalar(uint16_t *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = f32_to_f16(x[i]);
}

void f32_to_f16_row(uint16_t *out, const float *x, int64_t n) { kernel_isa_current()->to_f16(out, x, n); }
