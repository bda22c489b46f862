/* quant.c — block layouts of the weight types (ggml-compatible), their dequantization, dot products of
 * a stored row with float activations, and the reference quantizers. Scalar code: the reference. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>

#include "kernels.h"

/* The quantizers must round exactly as ggml's reference does (files written here are compared byte for
 * byte), so no multiply-add may be fused. gcc fuses across statements on FMA targets in GNU C modes and
 * clang within an expression, so both are told not to (gcc's ISO C default, as built, is already off).
 * Dequantization does not depend on it: its products are exact (see dequant_* below), so a fused and an
 * unfused a·b − c round alike. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* ---- block layouts ----
 * Blocks are packed and not naturally aligned in a file: the structs document the layout and give sizes
 * and offsets; fields are read through byte pointers (offsetof + memcpy), never through the structs.
 * Every layout is ggml's. f16 fields are IEEE half, little-endian. */
typedef struct block_q8_0 { uint16_t d; int8_t qs[32]; } block_q8_0;
typedef struct block_q4_0 { uint16_t d; uint8_t qs[16]; } block_q4_0;
/* y = d·q + m, q 4-bit; low nibbles hold elements 0..15, high nibbles 16..31 */
typedef struct block_q4_1 { uint16_t d, m; uint8_t qs[16]; } block_q4_1;
/* y = d·(q − 16), q 5-bit: low 4 bits as Q4_0, bit 4 of element j in bit j of qh (LE uint32) */
typedef struct block_q5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } block_q5_0;
typedef struct block_q5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } block_q5_1;
/* y = d·K[q], K the 16-entry non-linear codebook below */
typedef struct block_iq4_nl { uint16_t d; uint8_t qs[16]; } block_iq4_nl;
/* K-quants: 256-element super-blocks of 16 sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 8 of 32 (Q4_K, Q5_K). */
typedef struct block_q2_K { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; } block_q2_K;
typedef struct block_q3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; } block_q3_K;
typedef struct block_q4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } block_q4_K;
typedef struct block_q5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } block_q5_K;
typedef struct block_q6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } block_q6_K;
_Static_assert(sizeof(block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(block_q4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(block_q4_1) == 20, "Q4_1 block is 20 bytes");
_Static_assert(sizeof(block_q5_0) == 22, "Q5_0 block is 22 bytes");
_Static_assert(sizeof(block_q5_1) == 24, "Q5_1 block is 24 bytes");
_Static_assert(sizeof(block_iq4_nl) == 18, "IQ4_NL block is 18 bytes");
_Static_assert(sizeof(block_q2_K) == 84, "Q2_K block is 84 bytes");
_Static_assert(sizeof(block_q3_K) == 110, "Q3_K block is 110 bytes");
_Static_assert(sizeof(block_q4_K) == 144, "Q4_K block is 144 bytes");
_Static_assert(sizeof(block_q5_K) == 176, "Q5_K block is 176 bytes");
_Static_assert(sizeof(block_q6_K) == 210, "Q6_K block is 210 bytes");

enum { QK = 32, QK_K = 256 };

static const int8_t iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* f16 → f32 through a 64K table: the scalar conversion is branchy and sits in the hottest loop. */
static float f16_table[65536];
static pthread_once_t f16_table_once = PTHREAD_ONCE_INIT;
static void f16_table_init(void) {
    for (uint32_t i = 0; i < 65536; i++) f16_table[i] = f16_to_f32((uint16_t)i);
}
static inline float f16(const void *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return f16_table[h];
}
static inline void put_f16(uint8_t *p, float f) {
    uint16_t h = f32_to_f16(f);
    memcpy(p, &h, 2);
}
static inline uint32_t get_u32(const uint8_t *p) {  /* little-endian, as the files store it */
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

bool kernel_type_supported(tandem_type t) {
    pthread_once(&f16_table_once, f16_table_init);
    switch (t) {
    case TANDEM_TYPE_F32: case TANDEM_TYPE_F16: case TANDEM_TYPE_BF16:
    case TANDEM_TYPE_Q8_0: case TANDEM_TYPE_Q4_0: case TANDEM_TYPE_Q4_1:
    case TANDEM_TYPE_Q5_0: case TANDEM_TYPE_Q5_1: case TANDEM_TYPE_IQ4_NL:
    case TANDEM_TYPE_Q2_K: case TANDEM_TYPE_Q3_K: case TANDEM_TYPE_Q4_K:
    case TANDEM_TYPE_Q5_K: case TANDEM_TYPE_Q6_K:
        return true;
    default:
        return false;
    }
}

/* ---- dequantization ----
 * Each dequant_* decodes nb whole blocks. Every value is formed as ggml's (and gguf-py's) reference
 * forms it: the per-(sub-)block factor first (d·scale, a product of an f16 and a ≤ 8-bit integer), then
 * times the quant, then one add of the offset. The products are exact in f32 (≤ 11 + 7 + 6 significant
 * bits), so the only rounding is that final add, and the result is bit-identical to the references. */

static inline void dequant_q4_1(const uint8_t *p, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q4_1), y += QK) {
        const float d = f16(p + offsetof(block_q4_1, d)), m = f16(p + offsetof(block_q4_1, m));
        const uint8_t *qs = p + offsetof(block_q4_1, qs);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)(qs[j] & 0x0F) + m;
            y[j + 16] = d * (float)(qs[j] >> 4) + m;
        }
    }
}

static inline void dequant_q5_0(const uint8_t *p, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q5_0), y += QK) {
        const float d = f16(p + offsetof(block_q5_0, d));
        const uint32_t qh = get_u32(p + offsetof(block_q5_0, qh));
        const uint8_t *qs = p + offsetof(block_q5_0, qs);
        for (int j = 0; j < 16; j++) {
            const int lo = (qs[j] & 0x0F) | (int)((qh >> j) & 1) << 4;
            const int hi = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = d * (float)(lo - 16);
            y[j + 16] = d * (float)(hi - 16);
        }
    }
}

static inline void dequant_q5_1(const uint8_t *p, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q5_1), y += QK) {
        const float d = f16(p + offsetof(block_q5_1, d)), m = f16(p + offsetof(block_q5_1, m));
        const uint32_t qh = get_u32(p + offsetof(block_q5_1, qh));
        const uint8_t *qs = p + offsetof(block_q5_1, qs);
        for (int j = 0; j < 16; j++) {
            const int lo = (qs[j] & 0x0F) | (int)((qh >> j) & 1) << 4;
            const int hi = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = d * (float)lo + m;
            y[j + 16] = d * (float)hi + m;
        }
    }
}

static inline void dequant_iq4_nl(const uint8_t *p, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_iq4_nl), y += QK) {
        const float d = f16(p + offsetof(block_iq4_nl, d));
        const uint8_t *qs = p + offsetof(block_iq4_nl, qs);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)iq4nl_values[qs[j] & 0x0F];
            y[j + 16] = d * (float)iq4nl_values[qs[j] >> 4];
        }
    }
}

/* Q2_K: element 128h + 32s + l holds bits 2s..2s+1 of qs[32h + l]; sub-block e/16 has a 4-bit scale
 * (low nibble of scales[e/16]) and a 4-bit min (high nibble): y = d·sc·q − dmin·mn. */
static inline void dequant_q2_K(const uint8_t *p, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q2_K), y += QK_K) {
        const float d = f16(p + offsetof(block_q2_K, d)), dmin = f16(p + offsetof(block_q2_K, dmin));
        const uint8_t *sc = p + offsetof(block_q2_K, scales), *qs = p + offsetof(block_q2_K, qs);
        for (int e0 = 0; e0 < QK_K; e0 += 16) {
            const float dl = d * (float)(sc[e0 / 16] & 0x0F), ml = dmin * (float)(sc[e0 / 16] >> 4);
            const int h = e0 / 128, s = (e0 % 128) / 32, l0 = e0 % 32;
            for (int k = 0; k < 16; k++) y[e0 + k] = dl * (float)((qs[32 * h + l0 + k] >> (2 * s)) & 3) - ml;
        }
    }
}

/* Q3_K: the low 2 bits as in Q2_K; the third bit of element e is bit e/32 of hmask[e%32] and, oddly,
 * a set bit means "no offset": q = low − (bit ? 0 : 4). Sixteen 6-bit signed scales (stored + 32): low
 * nibbles in scales[0..7] (j < 8 low, j ≥ 8 high nibble of scales[j−8]), top 2 bits in scales[8 + j%4]
 * at bit 2·(j/4). y = d·(sc − 32)·q. */
static inline int q3k_scale(const uint8_t *s, int j) {
    const int lo = j < 8 ? s[j] & 0x0F : s[j - 8] >> 4;
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | hi << 4) - 32;
}
static inline void dequant_q3_K(const uint8_t *p, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q3_K), y += QK_K) {
        const float d = f16(p + offsetof(block_q3_K, d));
        const uint8_t *hm = p + offsetof(block_q3_K, hmask), *qs = p + offsetof(block_q3_K, qs);
        const uint8_t *sc = p + offsetof(block_q3_K, scales);
        for (int e0 = 0; e0 < QK_K; e0 += 16) {
            const float dl = d * (float)q3k_scale(sc, e0 / 16);
            const int h = e0 / 128, s = (e0 % 128) / 32, l0 = e0 % 32;
            for (int k = 0; k < 16; k++) {
                const int l = l0 + k;
                const int q = ((qs[32 * h + l] >> (2 * s)) & 3) - (((hm[l] >> (e0 / 32)) & 1) ? 0 : 4);
                y[e0 + k] = dl * (float)q;
            }
        }
    }
}

/* The 12-byte packing of eight 6-bit scales and mins shared by Q4_K and Q5_K (reference.md §2.3). */
static inline void k4_scale_min(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | (s[j - 4] >> 6) << 4;
        *mn = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* Q4_K: chunk c (64 elements) uses qs[32c..32c+31]: low nibbles → sub-block 2c, high → 2c+1. */
static inline void dequant_q4_K(const uint8_t *p, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q4_K), y += QK_K) {
        const float d = f16(p + offsetof(block_q4_K, d)), dmin = f16(p + offsetof(block_q4_K, dmin));
        const uint8_t *sc = p + offsetof(block_q4_K, scales), *qs = p + offsetof(block_q4_K, qs);
        for (int c = 0; c < 4; c++) {
            int s0, m0, s1, m1;
            k4_scale_min(sc, 2 * c, &s0, &m0);
            k4_scale_min(sc, 2 * c + 1, &s1, &m1);
            const float d0 = d * (float)s0, n0 = dmin * (float)m0, d1 = d * (float)s1, n1 = dmin * (float)m1;
            const uint8_t *q = qs + 32 * c;
            for (int l = 0; l < 32; l++) {
                y[64 * c + l] = d0 * (float)(q[l] & 0x0F) - n0;
                y[64 * c + 32 + l] = d1 * (float)(q[l] >> 4) - n1;
            }
        }
    }
}

/* Q5_K: as Q4_K plus a fifth bit: chunk c takes bits 2c and 2c+1 of the 32 shared qh bytes. */
static inline void dequant_q5_K(const uint8_t *p, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q5_K), y += QK_K) {
        const float d = f16(p + offsetof(block_q5_K, d)), dmin = f16(p + offsetof(block_q5_K, dmin));
        const uint8_t *sc = p + offsetof(block_q5_K, scales), *qh = p + offsetof(block_q5_K, qh);
        const uint8_t *qs = p + offsetof(block_q5_K, qs);
        for (int c = 0; c < 4; c++) {
            int s0, m0, s1, m1;
            k4_scale_min(sc, 2 * c, &s0, &m0);
            k4_scale_min(sc, 2 * c + 1, &s1, &m1);
            const float d0 = d * (float)s0, n0 = dmin * (float)m0, d1 = d * (float)s1, n1 = dmin * (float)m1;
            const uint8_t *q = qs + 32 * c;
            for (int l = 0; l < 32; l++) {
                const int lo = (q[l] & 0x0F) | ((qh[l] >> (2 * c)) & 1) << 4;
                const int hi = (q[l] >> 4) | ((qh[l] >> (2 * c + 1)) & 1) << 4;
                y[64 * c + l] = d0 * (float)lo - n0;
                y[64 * c + 32 + l] = d1 * (float)hi - n1;
            }
        }
    }
}

/* Q6_K: half h (128 elements) uses ql[64h..], qh[32h..]; element 128h + 32k + l takes its low nibble from
 * ql[64h + l + 32(k&1)] (low nibble for k < 2, high for k ≥ 2) and bits 2k..2k+1 of qh[32h + l]. */
static inline void dequant_q6_K(const uint8_t *p, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q6_K), y += QK_K) {
        const float d = f16(p + offsetof(block_q6_K, d));
        const int8_t *sc = (const int8_t *)(p + offsetof(block_q6_K, scales));
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = p + offsetof(block_q6_K, ql) + 64 * h, *qh = p + offsetof(block_q6_K, qh) + 32 * h;
            for (int k = 0; k < 4; k++) {
                for (int l = 0; l < 32; l++) {
                    const int e = 128 * h + 32 * k + l;
                    const int lo = k < 2 ? ql[l + 32 * k] & 0x0F : ql[l + 32 * (k - 2)] >> 4;
                    const int q = (lo | ((qh[l] >> (2 * k)) & 3) << 4) - 32;
                    y[e] = d * (float)sc[e / 16] * (float)q;
                }
            }
        }
    }
}

KERNEL_CLONES void dequantize_row(tandem_type t, const void *src, float *dst, int64_t n) {
    pthread_once(&f16_table_once, f16_table_init);
    const uint8_t *p = src;
    switch (t) {
    case TANDEM_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    case TANDEM_TYPE_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = f16(p + 2 * i);
        return;
    case TANDEM_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = bf16_to_f32(h);
        }
        return;
    case TANDEM_TYPE_Q8_0:
        for (int64_t b = 0; b < n / 32; b++, p += sizeof(block_q8_0)) {
            const float d = f16(p);
            const int8_t *qs = (const int8_t *)(p + 2);
            for (int j = 0; j < 32; j++) dst[32 * b + j] = d * (float)qs[j];
        }
        return;
    case TANDEM_TYPE_Q4_0:
        for (int64_t b = 0; b < n / 32; b++, p += sizeof(block_q4_0)) {
            const float d = f16(p);
            const uint8_t *qs = p + 2;
            for (int j = 0; j < 16; j++) {  /* low nibbles: elements 0..15, high: 16..31 */
                dst[32 * b + j] = d * (float)((qs[j] & 0x0F) - 8);
                dst[32 * b + j + 16] = d * (float)((qs[j] >> 4) - 8);
            }
        }
        return;
    case TANDEM_TYPE_Q4_1: dequant_q4_1(p, dst, n / QK); return;
    case TANDEM_TYPE_Q5_0: dequant_q5_0(p, dst, n / QK); return;
    case TANDEM_TYPE_Q5_1: dequant_q5_1(p, dst, n / QK); return;
    case TANDEM_TYPE_IQ4_NL: dequant_iq4_nl(p, dst, n / QK); return;
    case TANDEM_TYPE_Q2_K: dequant_q2_K(p, dst, n / QK_K); return;
    case TANDEM_TYPE_Q3_K: dequant_q3_K(p, dst, n / QK_K); return;
    case TANDEM_TYPE_Q4_K: dequant_q4_K(p, dst, n / QK_K); return;
    case TANDEM_TYPE_Q5_K: dequant_q5_K(p, dst, n / QK_K); return;
    case TANDEM_TYPE_Q6_K: dequant_q6_K(p, dst, n / QK_K); return;
    default:
        TANDEM_ASSERT(!"dequantize_row: unsupported type");
    }
}

/* Sixteen independent partial sums let the compiler keep them in one vector register without being
 * allowed to reassociate a single running sum. */
KERNEL_CLONES float dot_f32(const float *a, const float *b, int64_t n) {
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[i + j] * b[i + j];
    float s = 0;
    for (; i < n; i++) s += a[i] * b[i];
    for (int j = 0; j < 16; j++) s += acc[j];
    return s;
}

/* Elements dot_row decodes at a time for the types without a dedicated loop: one K-quant super-block or
 * eight 32-element blocks, a 1 KiB stack buffer that stays in L1. */
enum { DOT_CHUNK = 256 };

KERNEL_CLONES float dot_row(tandem_type t, const void *row, const float *x, int64_t n) {
    pthread_once(&f16_table_once, f16_table_init);
    const uint8_t *p = row;
    switch (t) {
    case TANDEM_TYPE_F32:
        return dot_f32(row, x, n);
    case TANDEM_TYPE_Q8_0: {
        float s = 0;
        for (int64_t b = 0; b < n / 32; b++, p += sizeof(block_q8_0)) {
            const int8_t *qs = (const int8_t *)(p + 2);
            const float *xb = x + 32 * b;
            float acc[8] = {0};
            for (int j = 0; j < 32; j += 8)
                for (int k = 0; k < 8; k++) acc[k] += (float)qs[j + k] * xb[j + k];
            float bs = 0;
            for (int k = 0; k < 8; k++) bs += acc[k];
            s += f16(p) * bs;
        }
        return s;
    }
    case TANDEM_TYPE_Q4_0: {
        float s = 0;
        for (int64_t b = 0; b < n / 32; b++, p += sizeof(block_q4_0)) {
            const uint8_t *qs = p + 2;
            const float *xb = x + 32 * b;
            float acc[16] = {0};
            for (int j = 0; j < 16; j++)
                acc[j] = (float)((qs[j] & 0x0F) - 8) * xb[j] + (float)((qs[j] >> 4) - 8) * xb[j + 16];
            float bs = 0;
            for (int j = 0; j < 16; j++) bs += acc[j];
            s += f16(p) * bs;
        }
        return s;
    }
    case TANDEM_TYPE_F16:
    case TANDEM_TYPE_BF16:
    case TANDEM_TYPE_Q4_1: case TANDEM_TYPE_Q5_0: case TANDEM_TYPE_Q5_1: case TANDEM_TYPE_IQ4_NL:
    case TANDEM_TYPE_Q2_K: case TANDEM_TYPE_Q3_K: case TANDEM_TYPE_Q4_K: case TANDEM_TYPE_Q5_K:
    case TANDEM_TYPE_Q6_K: {
        /* Decode a chunk into a stack buffer, then the vectorised f32 dot: no allocation, and the
         * dequantizers stay the single definition of every layout. */
        const int64_t bs = tandem_type_block_size(t), ts = tandem_type_size(t);
        float buf[DOT_CHUNK];
        float s = 0;
        for (int64_t i = 0; i < n; i += DOT_CHUNK) {
            const int64_t m = n - i < DOT_CHUNK ? n - i : DOT_CHUNK;
            dequantize_row(t, p + i / bs * ts, buf, m);
            s += dot_f32(buf, x + i, m);
        }
        return s;
    }
    default:
        TANDEM_ASSERT(!"dot_row: unsupported type");
    }
    return 0;
}

/* ---- reference quantizers ----
 * They follow ggml's *_ref functions (the rules in reference.md §2.5 and, for the K-quants and IQ4_NL,
 * the scale searches described with each below), operation for operation in f32, so that the bytes
 * equal what gguf-py and llama-quantize (without an importance matrix) write. */

/* ggml rounds to the nearest integer (ties to even) by adding 1.5·2^23: the sum's low mantissa bits are
 * then the integer, offset by 2^22. Kept rather than lrintf so that even out-of-range inputs (NaN, inf,
 * |v| > 2^22, which only garbage weights produce) give ggml's bytes and no undefined conversion. */
static inline int nearest_int(float v) {
    const float biased = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &biased, 4);
    return (i & 0x007FFFFF) - 0x00400000;
}

/* (int)v clamped to [0, hi] for v ≥ 0, as the 32-element quantizers' truncating casts do; NaN and
 * negative values give 0 instead of an undefined conversion. */
static inline int trunc_clamp(float v, int hi) {
    if (!(v > 0)) return 0;
    return v >= (float)hi ? hi : (int)v;
}

/* roundf to int8 for quantizers: a non-finite weight (inf·0 = NaN) or an overflowing product would make the
 * conversion undefined; NaN gives 0 and out-of-range values saturate. Identical for every finite block. */
static inline int8_t round_i8(float v) {
    if (!(v == v)) return 0;
    v = roundf(v);
    return (int8_t)(v > 127.0f ? 127.0f : v < -128.0f ? -128.0f : v);
}

/* Sub-blocks whose largest |x| is below this are stored as zeros (ggml's GROUP_MAX_EPS). */
#define GROUP_MAX_EPS 1e-15f

void quantize_row_q8_0(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < n / 32; b++, p += sizeof(block_q8_0)) {
        const float *x = src + 32 * b;
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        uint16_t dh = f32_to_f16(d);
        memcpy(p, &dh, 2);
        for (int j = 0; j < 32; j++) ((int8_t *)(p + 2))[j] = round_i8(x[j] * id);
    }
}

void quantize_row_q4_0(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < n / 32; b++, p += sizeof(block_q4_0)) {
        const float *x = src + 32 * b;
        float amax = 0, max = 0;  /* max keeps the sign of the largest-magnitude element */
        for (int j = 0; j < 32; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
        uint16_t dh = f32_to_f16(d);
        memcpy(p, &dh, 2);
        for (int j = 0; j < 16; j++) {
            /* trunc_clamp = ggml's MIN(15, (int8_t)(v + 8.5f)) for every finite block, and defined when a
             * subnormal block maximum makes id infinite */
            const int lo = trunc_clamp(x[j] * id + 8.5f, 15), hi = trunc_clamp(x[j + 16] * id + 8.5f, 15);
            p[2 + j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

/* Q4_1 / Q5_1: the block's range split into 15 / 31 steps from its minimum; q = trunc((x − min)/d + ½). */
static void quantize_affine_32(const float *src, uint8_t *p, int64_t n, int nmax, bool five_bits) {
    const size_t bytes = five_bits ? sizeof(block_q5_1) : sizeof(block_q4_1);
    const size_t off_qs = five_bits ? offsetof(block_q5_1, qs) : offsetof(block_q4_1, qs);
    for (int64_t b = 0; b < n / QK; b++, p += bytes) {
        const float *x = src + QK * b;
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / (float)nmax, id = d != 0 ? 1.0f / d : 0.0f;
        put_f16(p + offsetof(block_q4_1, d), d);  /* d and m sit at the same offsets in Q4_1 and Q5_1 */
        put_f16(p + offsetof(block_q4_1, m), min);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const float v0 = (x[j] - min) * id, v1 = (x[j + 16] - min) * id;
            const int q0 = trunc_clamp(v0 + 0.5f, nmax), q1 = trunc_clamp(v1 + 0.5f, nmax);
            p[off_qs + j] = (uint8_t)((q0 & 0x0F) | (q1 & 0x0F) << 4);
            qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + 16);
        }
        if (five_bits)
            for (int k = 0; k < 4; k++) p[offsetof(block_q5_1, qh) + k] = (uint8_t)(qh >> (8 * k));
    }
}

void quantize_row_q4_1(const float *src, void *dst, int64_t n) { quantize_affine_32(src, dst, n, 15, false); }
void quantize_row_q5_1(const float *src, void *dst, int64_t n) { quantize_affine_32(src, dst, n, 31, true); }

/* Q5_0: as Q4_0 with 32 levels: d = max / −16 (max the signed element of largest |x|). */
void quantize_row_q5_0(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < n / QK; b++, p += sizeof(block_q5_0)) {
        const float *x = src + QK * b;
        float amax = 0, max = 0;
        for (int j = 0; j < QK; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -16.0f, id = d != 0 ? 1.0f / d : 0.0f;
        put_f16(p + offsetof(block_q5_0, d), d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const float v0 = x[j] * id, v1 = x[j + 16] * id;
            const int q0 = trunc_clamp(v0 + 16.5f, 31), q1 = trunc_clamp(v1 + 16.5f, 31);
            p[offsetof(block_q5_0, qs) + j] = (uint8_t)((q0 & 0x0F) | (q1 & 0x0F) << 4);
            qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + 16);
        }
        for (int k = 0; k < 4; k++) p[offsetof(block_q5_0, qh) + k] = (uint8_t)(qh >> (8 * k));
    }
}

/* Index of the codebook entry nearest to v (values ascending); a tie between two neighbours goes up. */
static inline int iq4nl_index(float v) {
    if (v <= (float)iq4nl_values[0]) return 0;
    if (v >= (float)iq4nl_values[15]) return 15;
    int lo = 0, hi = 15;  /* invariant: values[lo] ≤ v < values[hi] */
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (v < (float)iq4nl_values[mid]) hi = mid;
        else lo = mid;
    }
    return v - (float)iq4nl_values[lo] < (float)iq4nl_values[hi] - v ? lo : hi;
}

/* IQ4_NL (no importance matrix): weights w = x². Start from d = max/127 (so the largest-magnitude element
 * lands on the +113 end of the codebook), take the least-squares d for those indices, then try the 15
 * inverse scales (k − 127)/max, k = −7..7 (largest element on the −127 end, stretched a little either way),
 * keeping the least-squares d of the assignment that explains most of Σw·x² (largest (Σwqx)²/Σwq²). The
 * stored indices are finally recomputed from the chosen d. This is what llama-quantize writes (ggml's
 * quantize_iq4_nl); an all-zero block is d = 0 with every index 8 (the codeword nearest 0). */
void quantize_row_iq4_nl(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < n / QK; b++, p += sizeof(block_iq4_nl)) {
        const float *x = src + QK * b;
        float w[QK], amax = 0, max = 0;
        for (int j = 0; j < QK; j++) w[j] = x[j] * x[j];
        for (int j = 0; j < QK; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        float d = 0;
        if (amax >= GROUP_MAX_EPS) {
            d = -max / (float)iq4nl_values[0];
            float id = 1 / d, sumqx = 0, sumq2 = 0;
            for (int j = 0; j < QK; j++) {
                const float q = (float)iq4nl_values[iq4nl_index(id * x[j])];
                sumqx += w[j] * q * x[j];
                sumq2 += w[j] * q * q;
            }
            d = sumqx / sumq2;
            float best = d * sumqx;
            for (int k = -7; k <= 7; k++) {
                id = (float)(k + iq4nl_values[0]) / max;
                sumqx = sumq2 = 0;
                for (int j = 0; j < QK; j++) {
                    const float q = (float)iq4nl_values[iq4nl_index(id * x[j])];
                    sumqx += w[j] * q * x[j];
                    sumq2 += w[j] * q * q;
                }
                if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
        }
        put_f16(p + offsetof(block_iq4_nl, d), d);
        const float id = d != 0 ? 1 / d : 0;
        uint8_t *qs = p + offsetof(block_iq4_nl, qs);
        for (int j = 0; j < 16; j++)
            qs[j] = (uint8_t)(iq4nl_index(id * x[j]) | iq4nl_index(id * x[j + 16]) << 4);
    }
}

/* Symmetric search (Q6_K sub-blocks: ggml's make_qx_quants with weights x²). L[i] ∈ [0, 2·nmax) is the
 * quant + nmax. Start from iscale = −nmax/max, then try −(nmax + k/10)/max for k = ±1..±9 and keep the
 * assignment with the largest (Σw·x·l)²/Σw·l² (the least-squares fit's explained energy); the returned
 * scale is that fit's Σw·x·l / Σw·l². An all-(near-)zero group gives scale 0 and L = 0. */
static float search_symmetric(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0;
    }
    float iscale = (float)-nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int k = -9; k <= 9; k++) {
        if (k == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)k) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            const float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
                L[i] = (int8_t)(l + nmax);
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Symmetric search for Q3_K sub-blocks (ggml's make_q3_quants with do_rmse): start from round(−nmax·x/max)
 * (clamped to [−nmax, nmax)), then up to five sweeps of coordinate descent, each element moved to the
 * level that the least-squares scale of the others suggests when that raises (Σw·x·l)²/Σw·l² (w = x²).
 * L[i] receives l + nmax; returns the least-squares scale. */
static float search_q3(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0;
    }
    const float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int sweep = 0; sweep < 5; sweep++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                int l = nearest_int(x[i] * sl2 / slx);
                l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
                if (l != L[i]) {
                    slx += w * x[i] * (float)l;
                    sl2 += w * (float)l * (float)l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return sumlx / suml2;
}

/* Affine search (ggml's make_qkx2_quants) for the K-quants with a min: x ≈ scale·l − min, l ∈ [0, nmax].
 * The range [min(x, 0), max x] first gives l; then for nstep + 1 trial inverse scales
 * (nmax + rmin + k·rdelta)/range the rounded l's get a weighted least-squares (scale, min) — min clamped
 * to ≤ 0 with the scale refitted — and the trial is kept when its weighted error (squared, or absolute
 * with mad) is smaller. *neg_min receives −min (≥ 0). Laux: scratch of n. */
static float search_affine(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min,
                           uint8_t *Laux, float rmin, float rdelta, int nstep, bool mad) {
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *neg_min = -min;
        return 0;
    }
    float iscale = (float)nmax / (max - min), scale = 1 / iscale, best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        l = l < 0 ? 0 : l > nmax ? nmax : l;
        L[i] = (uint8_t)l;
        float diff = scale * (float)l + min - x[i];
        diff = mad ? fabsf(diff) : diff * diff;
        best_error += w[i] * diff;
    }
    for (int k = 0; k <= nstep; k++) {
        iscale = (rmin + rdelta * (float)k + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = mad ? fabsf(diff) : diff * diff;
                err += w[i] * diff;
            }
            if (err < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

/* Q2_K: per 16-element sub-block an affine fit with l ∈ 0..3 (weights |x|, absolute error); the scales
 * and mins are then quantized to 4 bits against the largest of each (d = max_scale/15, dmin =
 * max_min/15), and every element re-rounded with its stored sub-block scale and min. */
void quantize_row_q2_K(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q2_K)) {
        const float *x = src + QK_K * b;
        uint8_t L[QK_K], Laux[16];
        float w[16], scales[QK_K / 16], mins[QK_K / 16], max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * j + l]);
            scales[j] = search_affine(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        uint8_t *sc = p + offsetof(block_q2_K, scales);
        if (max_scale > 0) {
            const float iscale = 15.0f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) sc[j] = (uint8_t)nearest_int(iscale * scales[j]);
            put_f16(p + offsetof(block_q2_K, d), max_scale / 15.0f);
        } else {
            memset(sc, 0, QK_K / 16);
            put_f16(p + offsetof(block_q2_K, d), 0.0f);
        }
        if (max_min > 0) {
            const float iscale = 15.0f / max_min;
            for (int j = 0; j < QK_K / 16; j++) sc[j] = (uint8_t)(sc[j] | nearest_int(iscale * mins[j]) << 4);
            put_f16(p + offsetof(block_q2_K, dmin), max_min / 15.0f);
        } else {
            put_f16(p + offsetof(block_q2_K, dmin), 0.0f);
        }
        const float d = f16_to_f32((uint16_t)(p[offsetof(block_q2_K, d)] | p[offsetof(block_q2_K, d) + 1] << 8));
        const float dmin =
            f16_to_f32((uint16_t)(p[offsetof(block_q2_K, dmin)] | p[offsetof(block_q2_K, dmin) + 1] << 8));
        for (int j = 0; j < QK_K / 16; j++) {
            const float dl = d * (float)(sc[j] & 0x0F);
            if (dl == 0) continue;  /* keeps the search's l's, as ggml does */
            const float ml = dmin * (float)(sc[j] >> 4);
            for (int i = 0; i < 16; i++) {
                int l = nearest_int((x[16 * j + i] + ml) / dl);
                L[16 * j + i] = (uint8_t)(l < 0 ? 0 : l > 3 ? 3 : l);
            }
        }
        uint8_t *qs = p + offsetof(block_q2_K, qs);
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *Lh = L + 128 * h + l;
                qs[32 * h + l] = (uint8_t)(Lh[0] | Lh[32] << 2 | Lh[64] << 4 | Lh[96] << 6);
            }
    }
}

/* Q3_K: per 16-element sub-block the symmetric coordinate-descent fit with l ∈ −4..3; the sixteen
 * scales are quantized to 6-bit signed against the largest in magnitude (iscale = −32/max_scale, d =
 * 1/iscale), and every element re-rounded with its stored scale. */
void quantize_row_q3_K(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q3_K)) {
        const float *x = src + QK_K * b;
        int8_t L[QK_K];
        float scales[QK_K / 16], max_scale = 0, amax = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = search_q3(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        uint8_t *sc = p + offsetof(block_q3_K, scales);
        memset(sc, 0, 12);
        if (max_scale != 0) {
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) {
                int l = nearest_int(iscale * scales[j]);
                l = (l < -32 ? -32 : l > 31 ? 31 : l) + 32;
                if (j < 8) sc[j] = (uint8_t)(l & 0x0F);
                else sc[j - 8] = (uint8_t)(sc[j - 8] | (l & 0x0F) << 4);
                sc[8 + j % 4] = (uint8_t)(sc[8 + j % 4] | (l >> 4) << (2 * (j / 4)));
            }
            put_f16(p + offsetof(block_q3_K, d), 1 / iscale);
        } else {
            put_f16(p + offsetof(block_q3_K, d), 0.0f);
        }
        const float d = f16_to_f32((uint16_t)(p[offsetof(block_q3_K, d)] | p[offsetof(block_q3_K, d) + 1] << 8));
        for (int j = 0; j < QK_K / 16; j++) {
            const float dl = d * (float)q3k_scale(sc, j);
            if (dl == 0) continue;
            for (int i = 0; i < 16; i++) {
                int l = nearest_int(x[16 * j + i] / dl);
                L[16 * j + i] = (int8_t)((l < -4 ? -4 : l > 3 ? 3 : l) + 4);
            }
        }
        /* third bit of element e → bit e/32 of hmask[e%32]; the low two bits packed as in Q2_K */
        uint8_t *hm = p + offsetof(block_q3_K, hmask), *qs = p + offsetof(block_q3_K, qs);
        memset(hm, 0, 32);
        for (int e = 0; e < QK_K; e++)
            if (L[e] > 3) {
                hm[e % 32] = (uint8_t)(hm[e % 32] | 1 << (e / 32));
                L[e] = (int8_t)(L[e] - 4);
            }
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const int8_t *Lh = L + 128 * h + l;
                qs[32 * h + l] = (uint8_t)(Lh[0] | Lh[32] << 2 | Lh[64] << 4 | Lh[96] << 6);
            }
    }
}

/* Q4_K and Q5_K share everything but the number of levels and the search's trial range: per 32-element
 * sub-block an affine fit weighted by rms(x) + |x| (squared error); the eight scales and eight mins are
 * quantized to 6 bits against the largest of each (d = max_scale/63, dmin = max_min/63) and every
 * element re-rounded with its stored scale and min. L receives l ∈ [0, nmax]; the caller packs it. */
static void quantize_k4_common(const float *x, uint8_t *p, uint8_t *L, int nmax, float rmin, int nstep) {
    uint8_t Laux[32];
    float w[32], scales[8], mins[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xs[l]);
        scales[j] = search_affine(32, nmax, xs, w, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t *s = p + offsetof(block_q4_K, scales);  /* d, dmin, scales at the same offsets in Q5_K */
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]), lm = (uint8_t)nearest_int(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            s[j] = ls;
            s[j + 4] = lm;
        } else {
            s[j + 4] = (uint8_t)((ls & 0x0F) | (lm & 0x0F) << 4);
            s[j - 4] = (uint8_t)(s[j - 4] | (ls >> 4) << 6);
            s[j] = (uint8_t)(s[j] | (lm >> 4) << 6);
        }
    }
    put_f16(p + offsetof(block_q4_K, d), max_scale / 63.0f);
    put_f16(p + offsetof(block_q4_K, dmin), max_min / 63.0f);
    const float d = f16_to_f32((uint16_t)(p[0] | p[1] << 8)), dmin = f16_to_f32((uint16_t)(p[2] | p[3] << 8));
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        k4_scale_min(s, j, &sc, &mn);
        const float dl = d * (float)sc;
        if (dl == 0) continue;  /* keeps the search's l's, as ggml does */
        const float ml = dmin * (float)mn;
        for (int i = 0; i < 32; i++) {
            int l = nearest_int((x[32 * j + i] + ml) / dl);
            L[32 * j + i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        }
    }
}

void quantize_row_q4_K(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q4_K)) {
        uint8_t L[QK_K];
        quantize_k4_common(src + QK_K * b, p, L, 15, -1.0f, 20);
        uint8_t *qs = p + offsetof(block_q4_K, qs);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) qs[32 * c + l] = (uint8_t)(L[64 * c + l] | L[64 * c + 32 + l] << 4);
    }
}

void quantize_row_q5_K(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q5_K)) {
        uint8_t L[QK_K];
        quantize_k4_common(src + QK_K * b, p, L, 31, -0.5f, 15);
        uint8_t *qh = p + offsetof(block_q5_K, qh), *qs = p + offsetof(block_q5_K, qs);
        memset(qh, 0, 32);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                const int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                qs[32 * c + l] = (uint8_t)((lo & 0x0F) | (hi & 0x0F) << 4);
                qh[l] = (uint8_t)(qh[l] | (lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
            }
    }
}

/* Q6_K: per 16-element sub-block the symmetric fit with l ∈ −32..31; the sixteen scales are quantized to
 * int8 against the largest in magnitude (iscale = −128/max_scale, d = 1/iscale), and every element
 * re-rounded with its stored scale. A super-block whose scales are all (near) zero is stored as zeros. */
void quantize_row_q6_K(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q6_K)) {
        const float *x = src + QK_K * b;
        int8_t L[QK_K];
        float scales[QK_K / 16], max_scale = 0, max_abs = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = search_symmetric(16, 32, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs) {
                max_abs = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        if (max_abs < GROUP_MAX_EPS) {
            memset(p, 0, sizeof(block_q6_K));
            continue;
        }
        const float iscale = -128.0f / max_scale;
        put_f16(p + offsetof(block_q6_K, d), 1 / iscale);
        int8_t *sc = (int8_t *)(p + offsetof(block_q6_K, scales));
        for (int j = 0; j < QK_K / 16; j++) {
            const int l = nearest_int(iscale * scales[j]);
            sc[j] = (int8_t)(l < 127 ? l : 127);
        }
        const float d = f16_to_f32((uint16_t)(p[offsetof(block_q6_K, d)] | p[offsetof(block_q6_K, d) + 1] << 8));
        for (int j = 0; j < QK_K / 16; j++) {
            const float dl = d * (float)sc[j];
            if (dl == 0) continue;
            for (int i = 0; i < 16; i++) {
                int l = nearest_int(x[16 * j + i] / dl);
                L[16 * j + i] = (int8_t)((l < -32 ? -32 : l > 31 ? 31 : l) + 32);
            }
        }
        uint8_t *ql = p + offsetof(block_q6_K, ql), *qh = p + offsetof(block_q6_K, qh);
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const int8_t *Lh = L + 128 * h + l;
                ql[64 * h + l] = (uint8_t)((Lh[0] & 0x0F) | (Lh[64] & 0x0F) << 4);
                ql[64 * h + 32 + l] = (uint8_t)((Lh[32] & 0x0F) | (Lh[96] & 0x0F) << 4);
                qh[32 * h + l] =
                    (uint8_t)(Lh[0] >> 4 | (Lh[32] >> 4) << 2 | (Lh[64] >> 4) << 4 | (Lh[96] >> 4) << 6);
            }
    }
}

bool quantize_input_ok(const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float a = fabsf(src[i]);
        if (!(a <= 0x1p30f) || (a != 0 && a < 0x1p-30f)) return false;  /* NaN fails the first test */
    }
    return true;
}

bool quantize_prepare_row(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (fabsf(x[i]) < 0x1p-30f) x[i] = 0.0f;
    return quantize_input_ok(x, n);
}

bool kernel_can_quantize(tandem_type t) {
    switch (t) {
    case TANDEM_TYPE_F32: case TANDEM_TYPE_F16: case TANDEM_TYPE_BF16:
    case TANDEM_TYPE_Q8_0: case TANDEM_TYPE_Q4_0: case TANDEM_TYPE_Q4_1:
    case TANDEM_TYPE_Q5_0: case TANDEM_TYPE_Q5_1: case TANDEM_TYPE_IQ4_NL:
    case TANDEM_TYPE_Q2_K: case TANDEM_TYPE_Q3_K: case TANDEM_TYPE_Q4_K:
    case TANDEM_TYPE_Q5_K: case TANDEM_TYPE_Q6_K:
        return true;
    default:
        return false;
    }
}

void quantize_row(tandem_type t, const float *src, void *dst, int64_t n) {
    TANDEM_ASSERT(kernel_can_quantize(t) && n >= 0 && n % tandem_type_block_size(t) == 0);
    uint8_t *p = dst;
    switch (t) {
    case TANDEM_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return;
    case TANDEM_TYPE_F16:
        for (int64_t i = 0; i < n; i++) put_f16(p + 2 * i, src[i]);
        return;
    case TANDEM_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            const uint16_t h = f32_to_bf16(src[i]);
            memcpy(p + 2 * i, &h, 2);
        }
        return;
    case TANDEM_TYPE_Q8_0: quantize_row_q8_0(src, dst, n); return;
    case TANDEM_TYPE_Q4_0: quantize_row_q4_0(src, dst, n); return;
    case TANDEM_TYPE_Q4_1: quantize_row_q4_1(src, dst, n); return;
    case TANDEM_TYPE_Q5_0: quantize_row_q5_0(src, dst, n); return;
    case TANDEM_TYPE_Q5_1: quantize_row_q5_1(src, dst, n); return;
    case TANDEM_TYPE_IQ4_NL: quantize_row_iq4_nl(src, dst, n); return;
    case TANDEM_TYPE_Q2_K: quantize_row_q2_K(src, dst, n); return;
    case TANDEM_TYPE_Q3_K: quantize_row_q3_K(src, dst, n); return;
    case TANDEM_TYPE_Q4_K: quantize_row_q4_K(src, dst, n); return;
    case TANDEM_TYPE_Q5_K: quantize_row_q5_K(src, dst, n); return;
    case TANDEM_TYPE_Q6_K: quantize_row_q6_K(src, dst, n); return;
    default: return;
    }
}
