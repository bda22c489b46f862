/* avx2_inline.h — the inline pieces the AVX2-family kernel files share (avx2.c, vnni.c): loads, lane shuffles of
 * packed scales, prefetching and the per-token-count entry points. Only for files built with -mavx2 -mfma -mf16c. */
#ifndef TANDEM_AVX2_INLINE_H
#define TANDEM_AVX2_INLINE_H

#include <immintrin.h>

#include "kernels_isa.h"

#define INLINE static inline __attribute__((always_inline))
/* Token loops run NT ≤ 4 times; unrolled, each token's accumulator stays in a register (at -O2 gcc
 * keeps the loop and spills the accumulators to the stack, several times slower: bench/README.md, "Before the
 * side-by-side runs"). */
#define FOR_TOKENS _Pragma("GCC unroll 4") for

INLINE __m256i load256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

INLINE uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;  /* x86 is little-endian, as the files are */
}

/* The per-type kernels are written once for a compile-time token count NT (1…4) so that the
 * accumulators live in registers. ROW_DOT_ACT(name, kernel_nt) defines the entry point
 *     static void name(const uint8_t *row, const act_block *x, int64_t xs, int n_tok, int64_t cols, float *out)
 * which calls kernel_nt(row, x, xs, cols, out, NT) with NT = n_tok (1…4). Both names are written out in full at
 * every use (e.g. ROW_DOT_ACT(dot_q8_0, dot_q8_0_nt)), so grep finds where each entry point is defined and who
 * calls each kernel. */
#define ROW_DOT_ACT(name, kernel_nt)                                                                        \
    static void name(const uint8_t *row, const act_block *x, int64_t xs, int n_tok, int64_t cols, float *out) { \
        switch (n_tok) {                                                                                    \
        case 1: kernel_nt(row, x, xs, cols, out, 1); break;                                                 \
        case 2: kernel_nt(row, x, xs, cols, out, 2); break;                                                 \
        case 3: kernel_nt(row, x, xs, cols, out, 3); break;                                                 \
        default: kernel_nt(row, x, xs, cols, out, 4); break;                                                \
        }                                                                                                   \
    }

/* Asks for the cache lines PREFETCH_BYTES ahead of the n bytes at p, the part of the group this step
 * reads. The hardware prefetcher alone left the kernels waiting at the start of each group (bench/README.md,
 * "After prefetching, Q6_K/Q5_K/float tiles"). Prefetches past the matrix's end are dropped: they never fault.
 * One token asks for L1 (T0); more tokens, whose multiplies take longer per byte, ask for L2 (T1). Into L1, a
 * pass over 2-8 tokens paid its multiplies and its memory waits one after the other (likely: each line holds
 * one of the core's few L1 miss slots for a whole memory round trip; no counters here to show it); into L2
 * they overlap, while one token gained nothing from L2 (bench/README.md, "Multi-token passes prefetch into
 * L2"). */
#ifndef PREFETCH_BYTES
#define PREFETCH_BYTES 8192
#endif
INLINE void prefetch_ahead(const uint8_t *p, const int n, const int NT) {
    if (NT == 1)
        for (int o = 0; o < n; o += 64) _mm_prefetch((const char *)p + PREFETCH_BYTES + o, _MM_HINT_T0);
    else
        for (int o = 0; o < n; o += 64) _mm_prefetch((const char *)p + PREFETCH_BYTES + o, _MM_HINT_T1);
}

/* An empty asm that claims to change v, so that v's additions stay one running chain. Left alone, gcc
 * re-associates an unrolled chain of integer adds into a tree, which holds every product at once: at 3-4
 * tokens that is more than 16 registers, and the Q4_K kernel spilled them to the stack (bench/README.md,
 * "K-quant sums kept as chains"). */
#define KEEP_CHAIN(v) __asm__("" : "+x"(v))

/* Byte b of each 32-bit lane picked out by one byte shuffle (b a compile-time constant; the masks fold to
 * constants): zero-extended into both int16 halves of the lane (unsigned scales as madd_epi16 pairs), into
 * the high byte of both halves (signed scales · 256, then shifted down arithmetically), or into the lane's
 * low byte (an unsigned byte as int32). */
INLINE __m256i lane_mask(uint32_t pattern, const int b) {
    const uint32_t m0 = pattern + (uint32_t)b * 0x01010101u;
    return _mm256_setr_epi32((int)m0, (int)(m0 + 0x04040404u), (int)(m0 + 0x08080808u), (int)(m0 + 0x0C0C0C0Cu),
                             (int)m0, (int)(m0 + 0x04040404u), (int)(m0 + 0x08080808u), (int)(m0 + 0x0C0C0C0Cu));
}
INLINE __m256i lane_byte_pairs(__m256i v, const int b) { return _mm256_shuffle_epi8(v, lane_mask(0x80008000u, b)); }
INLINE __m256i lane_byte_high_pairs(__m256i v, const int b) { return _mm256_shuffle_epi8(v, lane_mask(0x00800080u, b)); }
INLINE __m256i lane_byte_int32(__m256i v, const int b) { return _mm256_shuffle_epi8(v, lane_mask(0x80808000u, b)); }
INLINE __m256 lane_byte_float(__m256i v, const int b) { return _mm256_cvtepi32_ps(lane_byte_int32(v, b)); }

/* acc += d·dx·isum: the 8 rows' exact integer sums of a block or super-block, converted once (d: the rows'
 * scales, dx: the activations' scale, shared by a super-block's 8 blocks). */
INLINE __m256 add_int_sums(__m256 acc, __m256i isum, __m256 d, const act_block *a) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d, _mm256_set1_ps(a->d)), acc);
}

/* The head of a packed Q4_K/Q5_K super-block of 8 rows: d and dmin per row, and the 6-bit scales and mins of
 * sub-blocks 0–3 (lo) and 4–7 (hi), one byte per sub-block in each row's 32-bit lane (k4_scales' decoding, for 8
 * rows at once). */
typedef struct k4_packed_head {
    __m256 d, dmin;
    __m256i sc_lo, mn_lo, sc_hi, mn_hi;
} k4_packed_head;
INLINE k4_packed_head k4_packed_head_load(const uint8_t *w) {
    const __m256i low6 = _mm256_set1_epi32(0x3F3F3F3F), low4 = _mm256_set1_epi32(0x0F0F0F0F);
    const __m256i low2 = _mm256_set1_epi32(0x03030303);
    const __m256i u0 = load256(w + 32), u1 = load256(w + 64), u2 = load256(w + 96);
    k4_packed_head h;
    h.d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w));
    h.dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 16)));
    h.sc_lo = _mm256_and_si256(u0, low6);
    h.mn_lo = _mm256_and_si256(u1, low6);
    h.sc_hi = _mm256_or_si256(_mm256_and_si256(u2, low4),
                              _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u0, 6), low2), 4));
    h.mn_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u2, 4), low4),
                              _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u1, 6), low2), 4));
    return h;
}

/* The mins of chunk c's two sub-blocks (2c, 2c+1: bytes b, b+1 of each row's min word, b = 2·(c % 2)) times
 * dmin, and their subtraction from a token's accumulator: dmin·mn·(dx·Σq̂) per sub-block, a[0] and a[1] the
 * sub-blocks' activation blocks (c a compile-time constant). */
typedef struct k4_chunk_mins {
    __m256 lo, hi;
} k4_chunk_mins;
INLINE k4_chunk_mins k4_chunk_mins_of(__m256i mn, __m256 dmin, const int c) {
    const int b = 2 * (c % 2);
    return (k4_chunk_mins){_mm256_mul_ps(dmin, lane_byte_float(mn, b)), _mm256_mul_ps(dmin, lane_byte_float(mn, b + 1))};
}
INLINE __m256 k4_sub_mins(__m256 acc, k4_chunk_mins m, const act_block *a) {
    acc = _mm256_fnmadd_ps(m.lo, _mm256_set1_ps(a[0].s), acc);
    return _mm256_fnmadd_ps(m.hi, _mm256_set1_ps(a[1].s), acc);
}

/* Q5_K packed: bits 2c and 2c+1 of each of the 32 qh bytes at p moved to bit 4 of lo and hi (16-bit shifts; bits
 * crossing bytes are masked off; c a compile-time constant). */
INLINE void add_fifth_bits(const uint8_t *p, const int c, __m256i *lo, __m256i *hi) {
    const __m256i h = load256(p), b5 = _mm256_set1_epi8(0x10);
    const __m256i h_lo = 2 * c <= 4 ? _mm256_slli_epi16(h, 4 - 2 * c) : _mm256_srli_epi16(h, 2 * c - 4);
    const __m256i h_hi = 2 * c + 1 <= 4 ? _mm256_slli_epi16(h, 3 - 2 * c) : _mm256_srli_epi16(h, 2 * c - 3);
    *lo = _mm256_or_si256(*lo, _mm256_and_si256(h_lo, b5));
    *hi = _mm256_or_si256(*hi, _mm256_and_si256(h_hi, b5));
}

/* Where unit u (columns 4u…4u+3 of the 8 rows) of chunk c of a packed Q4_K/Q5_K super-block at w starts: its
 * 32 bytes of nibbles, past the header (and Q5_K's fifth bits). */
INLINE const uint8_t *k4_unit_at(const uint8_t *w, const int c, const int u, const bool FIVE) {
    return w + (FIVE ? 384 : 128) + (c * 8 + u) * 32;
}

/* Unit u of chunk c of a packed Q4_K/Q5_K super-block at w: the quants of sub-blocks 2c (lo) and 2c+1 (hi),
 * 0…15, or 0…31 with Q5_K's fifth bits (u, c and FIVE compile-time constants). */
INLINE void k4_unit_quants(const uint8_t *w, const int c, const int u, const bool FIVE, __m256i *lo, __m256i *hi) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i raw = load256(k4_unit_at(w, c, u, FIVE));
    *lo = _mm256_and_si256(raw, m4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
    if (FIVE) add_fifth_bits(w + 128 + 32 * u, c, lo, hi);
}

/* Q6_K's 6-bit values of activation block k (0…3) of a half: the low (k < 2) or high nibbles of ql with bits
 * 2k, 2k+1 of qh on top, 32 unsigned bytes (k a compile-time constant). */
INLINE __m256i q6_values(const uint8_t *ql, const uint8_t *qh, const int k) {
    const __m256i raw = load256(ql), high = load256(qh), m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i lo = k < 2 ? _mm256_and_si256(raw, m4) : _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
    /* bits 2k, 2k+1 of each byte moved to bits 4, 5 (16-bit shifts: bits crossing bytes are masked off) */
    const __m256i hi = k == 0 ? _mm256_slli_epi16(high, 4) : k == 1 ? _mm256_slli_epi16(high, 2)
                     : k == 2 ? high : _mm256_srli_epi16(high, 2);
    return _mm256_or_si256(lo, _mm256_and_si256(hi, m30));
}

#endif
