/* quant.c — block layouts of the weight types (ggml-compatible), their dequantization, dot products of
 * a stored row with float activations, and the reference quantizers. Scalar code: the reference. */
#include <math.h>
#include <pthread.h>

#include "kernels.h"

/* Blocks are packed and not naturally aligned: fields are read with memcpy. */
typedef struct block_q8_0 { uint16_t d; int8_t qs[32]; } block_q8_0;
typedef struct block_q4_0 { uint16_t d; uint8_t qs[16]; } block_q4_0;
_Static_assert(sizeof(block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(block_q4_0) == 18, "Q4_0 block is 18 bytes");

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

bool kernel_type_supported(tandem_type t) {
    pthread_once(&f16_table_once, f16_table_init);
    switch (t) {
    case TANDEM_TYPE_F32: case TANDEM_TYPE_F16: case TANDEM_TYPE_BF16:
    case TANDEM_TYPE_Q8_0: case TANDEM_TYPE_Q4_0:
        return true;
    default:
        return false;
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

KERNEL_CLONES float dot_row(tandem_type t, const void *row, const float *x, int64_t n) {
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
    case TANDEM_TYPE_BF16: {
        float buf[256];
        float s = 0;
        for (int64_t i = 0; i < n; i += 256) {
            int64_t m = n - i < 256 ? n - i : 256;
            dequantize_row(t, p + 2 * i, buf, m);
            s += dot_f32(buf, x + i, m);
        }
        return s;
    }
    default:
        TANDEM_ASSERT(!"dot_row: unsupported type");
    }
    return 0;
}

void quantize_row_q8_0(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < n / 32; b++, p += sizeof(block_q8_0)) {
        const float *x = src + 32 * b;
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        uint16_t dh = f32_to_f16(d);
        memcpy(p, &dh, 2);
        for (int j = 0; j < 32; j++) ((int8_t *)(p + 2))[j] = (int8_t)roundf(x[j] * id);
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
            int lo = (int)(x[j] * id + 8.5f), hi = (int)(x[j + 16] * id + 8.5f);
            lo = lo < 15 ? lo : 15;
            hi = hi < 15 ? hi : 15;
            p[2 + j] = (uint8_t)(lo | (hi << 4));
        }
    }
}
