/* act.c — activations quantized to 8 bits for the integer dot products, and the choice of instruction set
 * (the scalar reference or a SIMD twin) made once from what the CPU reports. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "kernels_isa.h"

/* ---- quantization ----
 * d = max|x|/127 over a group of scale_blocks blocks and q = round-half-even(x · (1/d)): the SIMD twins
 * compute the same f32 products and round them with the same mode, so every instruction set writes the
 * same bytes for finite inputs. A NaN in a group makes d NaN (and every q 0), so the products it enters are NaN
 * and the logits show it (tandem_ctx_eval checks them), instead of a finite value that no one could tell wrong. */
void quantize_act_scalar(const float *x, act_block *out, int64_t n, int scale_blocks) {
    for (int64_t g = 0; g < n / 32; g += scale_blocks) {
        float amax = 0.0f;
        for (int j = 0; j < 32 * scale_blocks; j++) {  /* a NaN makes amax NaN and stays: see below */
            const float a = fabsf(x[32 * g + j]);
            amax = amax != amax || a <= amax ? amax : a;
        }
        const float d = amax / 127.0f, id = d >= FLT_MIN ? 1.0f / d : 0.0f;
        for (int64_t b = g; b < g + scale_blocks; b++) {
            act_block *a = &out[b];
            int sum[2] = {0, 0};
            for (int j = 0; j < 32; j++) {
                const int v = (int)lrintf(x[32 * b + j] * id);
                a->q[j] = (int8_t)v;
                sum[j / 16] += v;
            }
            a->d = d;
            a->s = d * (float)(sum[0] + sum[1]);
            a->sum16[0] = (int16_t)sum[0];
            a->sum16[1] = (int16_t)sum[1];
            a->unused = 0;
        }
    }
}

int act_scale_blocks(tandem_type t) { return tandem_type_block_size(t) == 256 ? 8 : 1; }

/* ---- instruction sets ---- */

static kernel_isa isa_scalar = {.name = "scalar",
                                .quantize_act = quantize_act_scalar,
                                .attention = attention_forward_scalar,
                                .swiglu = swiglu_forward_scalar,
                                .softmax = softmax_forward,
                                .argmax = argmax_f32_scalar,
                                .to_f16 = f32_to_f16_row_scalar,
                                .gelu_tanh = gelu_tanh_forward_scalar};
#if defined(__x86_64__)
static kernel_isa isa_avx2, isa_avxvnni, isa_avx512vnni;
#endif
static const kernel_isa *isa_best, *isa_selected;
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__)
/* AVX2 + FMA + F16C, and the OS saves the YMM registers (XCR0 bits 1 and 2). */
static bool cpu_has_avx2(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c)) return false;
    unsigned xcr0_lo, xcr0_hi;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 6) != 6) return false;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return b & (1u << 5);
}

/* AVX-512 VNNI with 256-bit (VL) encodings, and the OS saves the opmask and ZMM state (XCR0 bits 5–7), without
 * which every EVEX instruction faults. */
static bool cpu_has_avx512vnni(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool f = b & (1u << 16), vl = b & (1u << 31), vnni = c & (1u << 11);
    if (!(f && vl && vnni)) return false;
    unsigned xcr0_lo, xcr0_hi;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    return (xcr0_lo & 0xE6) == 0xE6;
}

/* AVX-VNNI: the VEX-encoded 256-bit vpdpbusd (leaf 7 sub-leaf 1, EAX bit 4). */
static bool cpu_has_avxvnni(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
    return a & (1u << 4);
}
#endif

static const kernel_isa *isa_by_name(const char *name) {
    if (!strcmp(name, "scalar")) return &isa_scalar;
#if defined(__x86_64__)
    if (!strcmp(name, "avx2") && isa_avx2.name) return &isa_avx2;
    if (!strcmp(name, "avxvnni") && isa_avxvnni.name) return &isa_avxvnni;
    if (!strcmp(name, "avx512vnni") && isa_avx512vnni.name) return &isa_avx512vnni;
#endif
    return NULL;
}

static void isa_init(void) {
    isa_best = &isa_scalar;
#if defined(__x86_64__)
    if (cpu_has_avx2()) {
        kernel_isa_fill_avx2(&isa_avx2);
        isa_best = &isa_avx2;
        /* the same code in either encoding; AVX-512's has 32 vector registers */
        if (cpu_has_avxvnni()) {
            kernel_isa_fill_avxvnni(&isa_avxvnni);
            isa_best = &isa_avxvnni;
        }
        if (cpu_has_avx512vnni()) {
            kernel_isa_fill_avx512vnni(&isa_avx512vnni);
            isa_best = &isa_avx512vnni;
        }
    }
#endif
    const char *forced = getenv("TANDEM_KERNELS");
    const kernel_isa *isa = forced ? isa_by_name(forced) : NULL;
    isa_selected = isa ? isa : isa_best;
}

const kernel_isa *kernel_isa_current(void) {
    pthread_once(&isa_once, isa_init);
    return isa_selected;
}

const char *kernel_isa_name(void) { return kernel_isa_current()->name; }

bool kernel_isa_select(const char *name) {
    pthread_once(&isa_once, isa_init);
    const kernel_isa *isa = name ? isa_by_name(name) : isa_best;
    if (!isa) return false;
    isa_selected = isa;
    return true;
}

void kernel_isa_use(const kernel_isa *isa) {
    pthread_once(&isa_once, isa_init);
    isa_selected = isa ? isa : isa_best;
}

void quantize_act(const float *x, act_block *out, int64_t n, int scale_blocks) {
    TANDEM_ASSERT((scale_blocks == 1 || scale_blocks == 8) && n % (32 * scale_blocks) == 0);
    kernel_isa_current()->quantize_act(x, out, n, scale_blocks);
}

bool kernel_has_act_dot(tandem_type t) {
    return t >= 0 && t < TANDEM_TYPE_COUNT && kernel_isa_current()->dot_act[t] != NULL;
}
