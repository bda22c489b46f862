/* avx2.c — AVX2 + FMA + F16C twins of the kernels: weight rows and packed 8-row groups against 8-bit
 * activations with integer multiply-adds, F32/F16/BF16 row tiles against float activations, activation
 * quantization and attention. Built with -mavx2 -mfma -mf16c; act.c's dispatch calls it only on CPUs that
 * report all three.
 *
 * Every dot product takes its weights and up to MATMUL_TOKENS tokens: a weight block is loaded and unpacked
 * once, then multiplied into each token's accumulator. Decoding one token is bound by how fast weights
 * stream from memory; verifying k drafted tokens then costs little more than one, which is what makes
 * speculative decoding pay on a CPU.
 *
 * The integer core: _mm256_maddubs_epi16 multiplies unsigned by signed bytes and adds neighbour pairs
 * into int16 (no overflow: |pair| ≤ 2·128·127 < 2^15 for every weight type here), _mm256_madd_epi16 sums
 * pairs into int32. Unsigned weight quants (Q4_0's 0…15) go in directly and their offset (−8) is applied
 * once per block through the activation sum; signed ones (Q8_0, IQ4_NL) use |w| and sign(w)·x. */
#include <immintrin.h>
#include <math.h>

#include "avx2_inline.h"

INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE float load_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* Σ over each group of 8 bytes' products, as 8 float lanes: u unsigned, s signed bytes. */
INLINE __m256 dot_u8s8(__m256i u, __m256i s) {
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

/* 16 packed nibbles → 32 bytes: low nibbles (elements 0–15) in the low lane, high (16–31) in the high. */
INLINE __m256i unpack_nibbles_32(const uint8_t *p) {
    const __m128i raw = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
}

/* Byte j = 0x10 if bit j of bits is set, else 0 (the fifth bit of Q5_0/Q5_1). */
INLINE __m256i bits_to_0x10(uint32_t bits) {
    const __m256i spread = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread), bit);
    return _mm256_and_si256(_mm256_cmpeq_epi8(v, bit), _mm256_set1_epi8(0x10));
}

/* ---- 32-element block types ---- */

/* Q8_0 (y = d·q, 32 signed bytes) and IQ4_NL (y = d·K[q], the 16-entry codebook looked up with one byte
 * shuffle): signed weights, so |w| and sign(w)·x go into the unsigned × signed multiply. NL is a
 * compile-time constant. */
INLINE void dot_signed32_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out, const int NT,
                            const bool NL) {
    const __m256i codebook = _mm256_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
                                              -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
    const int block_bytes = NL ? 18 : 34;
    __m256 acc[MATMUL_TOKENS];
    FOR_TOKENS (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < cols / 32; b++, w += block_bytes) {
        const float d = load_f16(w);
        const __m256i q = NL ? _mm256_shuffle_epi8(codebook, unpack_nibbles_32(w + 2)) : load256(w + 2);
        const __m256i aq = _mm256_sign_epi8(q, q);
        FOR_TOKENS (int t = 0; t < NT; t++) {
            const act_block *a = x + t * xs + b;
            const __m256 p = dot_u8s8(aq, _mm256_sign_epi8(load256(a->q), q));
            acc[t] = _mm256_fmadd_ps(p, _mm256_set1_ps(d * a->d), acc[t]);
        }
    }
    FOR_TOKENS (int t = 0; t < NT; t++) out[t] = hsum8(acc[t]);
}
INLINE void dot_q8_0_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out, const int NT) {
    dot_signed32_nt(w, x, xs, cols, out, NT, false);
}
INLINE void dot_iq4_nl_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out, const int NT) {
    dot_signed32_nt(w, x, xs, cols, out, NT, true);
}
ROW_DOT_ACT(dot_q8_0, dot_q8_0_nt)
ROW_DOT_ACT(dot_iq4_nl, dot_iq4_nl_nt)

/* Q4_0, Q4_1, Q5_0, Q5_1: unsigned quants q (4 bits, or 5 with a fifth bit from the 32-bit qh field) and
 * either y = d·(q − zero) (zero 8 or 16) or y = d·q + m. Σ_i y_i·x̂_i = d·dx·Σq·x̂ + (m or −zero·d)·(dx·Σx̂),
 * the second term once per block through the activation sum s. The arguments after NT are compile-time
 * constants: the block layout is d, [m], [qh], qs. */
INLINE void dot_affine32_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out, const int NT,
                            const bool HAS_MIN, const bool FIVE) {
    const int qh_off = HAS_MIN ? 4 : 2, qs_off = qh_off + (FIVE ? 4 : 0), block_bytes = qs_off + 16;
    const float zero = FIVE ? 16.0f : 8.0f;
    __m256 acc[MATMUL_TOKENS];
    float off[MATMUL_TOKENS];
    FOR_TOKENS (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps(), off[t] = 0.0f;
    for (int64_t b = 0; b < cols / 32; b++, w += block_bytes) {
        const float d = load_f16(w), m = HAS_MIN ? load_f16(w + 2) : -zero * d;
        __m256i q = unpack_nibbles_32(w + qs_off);
        if (FIVE) q = _mm256_or_si256(q, bits_to_0x10(load_u32(w + qh_off)));
        FOR_TOKENS (int t = 0; t < NT; t++) {
            const act_block *a = x + t * xs + b;
            acc[t] = _mm256_fmadd_ps(dot_u8s8(q, load256(a->q)), _mm256_set1_ps(d * a->d), acc[t]);
            off[t] += m * a->s;
        }
    }
    FOR_TOKENS (int t = 0; t < NT; t++) out[t] = hsum8(acc[t]) + off[t];
}
INLINE void dot_q4_0_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out, const int NT) {
    dot_affine32_nt(w, x, xs, cols, out, NT, false, false);
}
INLINE void dot_q4_1_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out, const int NT) {
    dot_affine32_nt(w, x, xs, cols, out, NT, true, false);
}
INLINE void dot_q5_0_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out, const int NT) {
    dot_affine32_nt(w, x, xs, cols, out, NT, false, true);
}
INLINE void dot_q5_1_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out, const int NT) {
    dot_affine32_nt(w, x, xs, cols, out, NT, true, true);
}
ROW_DOT_ACT(dot_q4_0, dot_q4_0_nt)
ROW_DOT_ACT(dot_q4_1, dot_q4_1_nt)
ROW_DOT_ACT(dot_q5_0, dot_q5_0_nt)
ROW_DOT_ACT(dot_q5_1, dot_q5_1_nt)

/* ---- packed groups of 8 rows (pack.c's layout) ---- */

/*
 * A 32-byte vector holds columns 4u…4u+3 of the 8 rows; the activation's 4 bytes for those columns are
 * broadcast to every lane, so after the multiply-adds lane i holds row i's sum. Per block and token that
 * is one int32 → float conversion and one FMA for 8 rows, where the row kernels above need one per row.
 * The sums are exact integers; the float steps (scale product, FMA order) are the same as the definition
 * the tests hold these kernels to: acc_i = fma(Σq·x̂, d_i·dx, acc_i) per block, in column order. */

/* Q8_0: signed weights, so |w| and sign(w)·x as in dot_signed32_nt; int16 pair sums reach 2·127·127, so
 * each unit's are widened to int32 before adding. */
INLINE void dot_q8_0_packed_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out,
                               const int NT) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[MATMUL_TOKENS];
    FOR_TOKENS (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < cols / 32; b++, w += 8 * 34) {
        prefetch_ahead(w, 8 * 34, NT);
        const __m256 scales = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w));
        __m256i sum[MATMUL_TOKENS];
        FOR_TOKENS (int t = 0; t < NT; t++) sum[t] = _mm256_setzero_si256();
        for (int u = 0; u < 8; u++) {
            const __m256i q = load256(w + 16 + 32 * u), aq = _mm256_sign_epi8(q, q);
            FOR_TOKENS (int t = 0; t < NT; t++) {
                const __m256i a = _mm256_set1_epi32((int)load_u32((const uint8_t *)x[t * xs + b].q + 4 * u));
                sum[t] = _mm256_add_epi32(sum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(aq, _mm256_sign_epi8(a, q)), ones));
            }
        }
        FOR_TOKENS (int t = 0; t < NT; t++)
            acc[t] = add_int_sums(acc[t], sum[t], scales, &x[t * xs + b]);
    }
    FOR_TOKENS (int t = 0; t < NT; t++) _mm256_storeu_ps(out + 8 * t, acc[t]);
}

/* Q4_0: unsigned nibbles 0…15 go straight into the multiply; the 8 int16 pair sums of a block stay below
 * 8·2·15·127 < 2^15, so they add as int16 and widen once. The −8 offset is −8·d_i·(dx·Σx̂) per block. */
INLINE void dot_q4_0_packed_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out,
                               const int NT) {
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[MATMUL_TOKENS];
    FOR_TOKENS (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < cols / 32; b++, w += 8 * 18) {
        prefetch_ahead(w, 8 * 18, NT);
        const __m256 scales = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w));
        __m256i sum[MATMUL_TOKENS];
        FOR_TOKENS (int t = 0; t < NT; t++) sum[t] = _mm256_setzero_si256();
        for (int u = 0; u < 4; u++) {
            const __m256i raw = load256(w + 16 + 32 * u);
            const __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            FOR_TOKENS (int t = 0; t < NT; t++) {
                const int8_t *a = x[t * xs + b].q;
                const __m256i p_lo = _mm256_maddubs_epi16(lo, _mm256_set1_epi32((int)load_u32((const uint8_t *)a + 4 * u)));
                const __m256i p_hi = _mm256_maddubs_epi16(hi, _mm256_set1_epi32((int)load_u32((const uint8_t *)a + 16 + 4 * u)));
                sum[t] = _mm256_add_epi16(sum[t], _mm256_add_epi16(p_lo, p_hi));
            }
        }
        FOR_TOKENS (int t = 0; t < NT; t++) {
            const act_block *a = &x[t * xs + b];
            const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(sum[t], ones));
            acc[t] = _mm256_fmadd_ps(p, _mm256_mul_ps(scales, _mm256_set1_ps(a->d)), acc[t]);
            acc[t] = _mm256_fmadd_ps(scales, _mm256_set1_ps(-8.0f * a->s), acc[t]);
        }
    }
    FOR_TOKENS (int t = 0; t < NT; t++) _mm256_storeu_ps(out + 8 * t, acc[t]);
}
ROW_DOT_ACT(dot_q8_0_packed, dot_q8_0_packed_nt)
ROW_DOT_ACT(dot_q4_0_packed, dot_q4_0_packed_nt)

/* isum += sc_lo·sum_lo + sc_hi·sum_hi: two sub-blocks' int16 sums times their scales, widened to int32. */
INLINE __m256i add_scaled_sums(__m256i isum, __m256i sum_lo, __m256i sc_lo, __m256i sum_hi, __m256i sc_hi) {
    return _mm256_add_epi32(isum, _mm256_add_epi32(_mm256_madd_epi16(sum_lo, sc_lo), _mm256_madd_epi16(sum_hi, sc_hi)));
}

/*
 * K-quants against super-block activations (act_scale_blocks: the 8 blocks of a super-block share the scale
 * dx). The sub-block scales then multiply the integer sums in the int16 → int32 step (madd_epi16 with the
 * scale in both halves of each row's lane), the products of a whole super-block add as int32, and each
 * token converts to float and multiplies by d·dx once per super-block.
 *
 * Q4_K and Q5_K packed: per super-block the 8 rows' d, dmin (16 bytes each), 6-bit scales and mins (three
 * 32-byte vectors: word k of row i in lane i, decoded for 8 rows at once as k4_scales does for one), for Q5_K
 * the fifth bits (unit u, columns 4u… of every sub-block, at 128 + 32u), then the quants: chunk c's unit u
 * (columns 4u… of sub-blocks 2c in the low nibbles, 2c+1 in the high ones) at QS + (8c + u)·32, QS = 128
 * (Q4_K) or 384 (Q5_K). Nibble products add in int16 over a sub-block's 8 units (8·2·15·127 < 2^15), 5-bit
 * ones over 4 (4·2·31·127 < 2^15); times a 6-bit scale and over 8 sub-blocks they stay far inside int32.
 * The mins, dmin·mn·(dx·Σq̂) per sub-block, go to the float accumulator. c and FIVE are compile-time
 * constants (immediate shifts). */
INLINE void k4_chunk_packed_nt(const uint8_t *w, const act_block *x, int64_t xs, __m256i sc, __m256i mn, __m256 dmin,
                               __m256i *isum, __m256 *acc, const int NT, const int c, const bool FIVE) {
    const int b = 2 * (c % 2);  /* sub-blocks 2c and 2c+1: bytes b and b+1 of the scale words */
    const __m256i sc_lo = lane_byte_pairs(sc, b), sc_hi = lane_byte_pairs(sc, b + 1);
    const k4_chunk_mins mins = k4_chunk_mins_of(mn, dmin, c);
    __m256i sum_lo[MATMUL_TOKENS], sum_hi[MATMUL_TOKENS];
    FOR_TOKENS (int t = 0; t < NT; t++) sum_lo[t] = sum_hi[t] = _mm256_setzero_si256();
    _Pragma("GCC unroll 8") for (int u = 0; u < 8; u++) {
        __m256i lo, hi;
        k4_unit_quants(w, c, u, FIVE, &lo, &hi);
        FOR_TOKENS (int t = 0; t < NT; t++) {
            const uint8_t *a = (const uint8_t *)x[t * xs + 2 * c].q + 4 * u;
            sum_lo[t] = _mm256_add_epi16(sum_lo[t], _mm256_maddubs_epi16(lo, _mm256_set1_epi32((int)load_u32(a))));
            sum_hi[t] = _mm256_add_epi16(sum_hi[t], _mm256_maddubs_epi16(hi, _mm256_set1_epi32((int)load_u32(a + sizeof(act_block)))));
            KEEP_CHAIN(sum_lo[t]);
            KEEP_CHAIN(sum_hi[t]);
        }
        if (FIVE && u == 3)
            FOR_TOKENS (int t = 0; t < NT; t++) {
                isum[t] = add_scaled_sums(isum[t], sum_lo[t], sc_lo, sum_hi[t], sc_hi);
                sum_lo[t] = sum_hi[t] = _mm256_setzero_si256();
            }
    }
    FOR_TOKENS (int t = 0; t < NT; t++) {
        const act_block *a = &x[t * xs + 2 * c];
        isum[t] = add_scaled_sums(isum[t], sum_lo[t], sc_lo, sum_hi[t], sc_hi);
        acc[t] = k4_sub_mins(acc[t], mins, a);
    }
}

/* Q6_K packed: ql (unit u of half h, run p at (16h + 8p + u)·32), qh (unit u of half h at 1024 +
 * (8h + u)·32), the signed 8-bit scales (4 per unit, at 1536) and d (at 1664). Activation block k of half h
 * takes the low (k < 2) or high nibbles of run k % 2 and bits 2k, 2k+1 of qh, as in dot_q6_K_nt. Values
 * reach 63, so only two units' products add in int16 (2·2·63·127 < 2^15) before the scale multiply-add
 * (scale as int16 in both halves of each row's lane); the −32 offset, −32·sc·Σq̂ per 16 columns, joins the
 * int32 sum through one more multiply-add of the scales·32 with the block's two int16 half sums.
 * h and k are compile-time constants (every shift immediate, no branch): with them as loop variables gcc
 * kept the 6-bit values in memory and shifted by registers, and the kernel ran far below the memory's rate
 * (bench/README.md, "After prefetching, Q6_K/Q5_K/float tiles"). */
INLINE void q6_K_block_nt(const uint8_t *w, const act_block *x, int64_t xs, __m256i *isum, const int NT, const int h,
                          const int k) {
    const __m256i scu = load256(w + 1536 + (2 * h + k / 2) * 32);
    const int b0 = 2 * (k % 2);  /* the block's two scales: bytes b0, b0+1 of each row's scale word */
    const __m256i hi0 = lane_byte_high_pairs(scu, b0), hi1 = lane_byte_high_pairs(scu, b0 + 1);  /* scale · 256 */
    const __m256i sc0 = _mm256_srai_epi16(hi0, 8), sc1 = _mm256_srai_epi16(hi1, 8);
    /* (32·sc0, 32·sc1) per lane: the scales of the two halves against the half sums (sum16) */
    const __m256i sc_halves = _mm256_srai_epi16(_mm256_blend_epi16(hi0, hi1, 0xAA), 3);
    const uint8_t *ql = w + (16 * h + 8 * (k % 2)) * 32, *qh = w + 1024 + 8 * h * 32;
    _Pragma("GCC unroll 4") for (int u = 0; u < 8; u += 2) {
        const __m256i q0 = q6_values(ql + 32 * u, qh + 32 * u, k), q1 = q6_values(ql + 32 * u + 32, qh + 32 * u + 32, k);
        FOR_TOKENS (int t = 0; t < NT; t++) {
            const uint8_t *a = (const uint8_t *)x[t * xs + k].q + 4 * u;
            const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(q0, _mm256_set1_epi32((int)load_u32(a))),
                                               _mm256_maddubs_epi16(q1, _mm256_set1_epi32((int)load_u32(a + 4))));
            isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, u < 4 ? sc0 : sc1));
            KEEP_CHAIN(isum[t]);
        }
    }
    FOR_TOKENS (int t = 0; t < NT; t++) {
        int32_t half_sums;
        memcpy(&half_sums, x[t * xs + k].sum16, 4);
        isum[t] = _mm256_sub_epi32(isum[t], _mm256_madd_epi16(sc_halves, _mm256_set1_epi32(half_sums)));
    }
}

#include "packed_k_drivers.h"

/* ---- K-quants: 256-element super-blocks = 8 activation blocks ---- */

/* The 12-byte packing of eight 6-bit scales and mins of Q4_K and Q5_K (k4_scale_min in quant.c), four
 * at a time in 32-bit words: scales 0–3 and mins 0–3 are the low 6 bits of bytes 0–3 and 4–7; scales and
 * mins 4–7 take their low 4 bits from the nibbles of bytes 8–11 and their top 2 bits from the top bits of
 * bytes 0–3 (scales) and 4–7 (mins). Out: d·scale and dmin·min as floats, converted in one vector step. */
INLINE void k4_scales(const uint8_t *s, float d, float dmin, float dsc[8], float dmn[8]) {
    uint32_t u[3];
    memcpy(u, s, 12);
    const uint32_t sc_lo = u[0] & 0x3F3F3F3F, mn_lo = u[1] & 0x3F3F3F3F;
    const uint32_t sc_hi = (u[2] & 0x0F0F0F0F) | ((u[0] >> 6) & 0x03030303) << 4;
    const uint32_t mn_hi = ((u[2] >> 4) & 0x0F0F0F0F) | ((u[1] >> 6) & 0x03030303) << 4;
    const __m256 scf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)sc_hi, (int)sc_lo)));
    const __m256 mnf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)mn_hi, (int)mn_lo)));
    _mm256_storeu_ps(dsc, _mm256_mul_ps(_mm256_set1_ps(d), scf));
    _mm256_storeu_ps(dmn, _mm256_mul_ps(_mm256_set1_ps(dmin), mnf));
}

/* Q4_K: y = d·sc·q − dmin·mn per 32-element sub-block; chunk c's 32 bytes hold sub-block 2c in the low
 * nibbles and 2c+1 in the high ones. Q5_K is the same plus a fifth bit: chunk c takes bits 2c (low
 * sub-block) and 2c+1 of the 32 qh bytes. FIVE is a compile-time constant. */
INLINE void dot_k4_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out, const int NT,
                      const bool FIVE) {
    const int block_bytes = FIVE ? 176 : 144, qs_off = FIVE ? 48 : 16;
    const __m256i m4 = _mm256_set1_epi8(0x0F), b5 = _mm256_set1_epi8(0x10);
    __m256 acc[MATMUL_TOKENS];
    float off[MATMUL_TOKENS];
    FOR_TOKENS (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps(), off[t] = 0.0f;
    for (int64_t sb = 0; sb < cols / 256; sb++, w += block_bytes) {
        const float d = load_f16(w), dmin = load_f16(w + 2);
        float dsc[8], dmn[8];
        k4_scales(w + 4, d, dmin, dsc, dmn);
        const __m256i qh = FIVE ? load256(w + 16) : _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i raw = load256(w + qs_off + 32 * c);
            __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            if (FIVE) {
                const __m256i bit_lo = _mm256_set1_epi8((char)(1 << (2 * c))), bit_hi = _mm256_set1_epi8((char)(2 << (2 * c)));
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit_lo), bit_lo), b5));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit_hi), bit_hi), b5));
            }
            const float d0 = dsc[2 * c], d1 = dsc[2 * c + 1], n0 = dmn[2 * c], n1 = dmn[2 * c + 1];
            FOR_TOKENS (int t = 0; t < NT; t++) {
                const act_block *a = x + t * xs + 8 * sb + 2 * c;
                acc[t] = _mm256_fmadd_ps(dot_u8s8(lo, load256(a[0].q)), _mm256_set1_ps(d0 * a[0].d), acc[t]);
                acc[t] = _mm256_fmadd_ps(dot_u8s8(hi, load256(a[1].q)), _mm256_set1_ps(d1 * a[1].d), acc[t]);
                off[t] += n0 * a[0].s + n1 * a[1].s;
            }
        }
    }
    FOR_TOKENS (int t = 0; t < NT; t++) out[t] = hsum8(acc[t]) - off[t];
}
INLINE void dot_q4_K_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out, const int NT) {
    dot_k4_nt(w, x, xs, cols, out, NT, false);
}
INLINE void dot_q5_K_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out, const int NT) {
    dot_k4_nt(w, x, xs, cols, out, NT, true);
}
ROW_DOT_ACT(dot_q4_K, dot_q4_K_nt)
ROW_DOT_ACT(dot_q5_K, dot_q5_K_nt)

/* Q6_K: y = d·sc·(q − 32) with a signed 8-bit scale per 16 elements. Half h (128 elements) takes low
 * nibbles from ql[64h…] (activation blocks 0,1: low nibbles of the two 32-byte runs; 2,3: high) and two
 * high bits from qh[32h…] (bits 2k, 2k+1 for block k). The scales multiply in the int16 → int32 step. */
INLINE void dot_q6_K_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out, const int NT) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    __m256 acc[MATMUL_TOKENS];
    float off[MATMUL_TOKENS];
    FOR_TOKENS (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps(), off[t] = 0.0f;
    for (int64_t sb = 0; sb < cols / 256; sb++, w += 210) {
        const float d = load_f16(w + 208);
        const int8_t *sc = (const int8_t *)(w + 192);
        float dsc[16];  /* d·scale as floats, converted 8 at a time */
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)sc);
        _mm256_storeu_ps(dsc, _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc8))));
        _mm256_storeu_ps(dsc + 8, _mm256_mul_ps(_mm256_set1_ps(d),
                                                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc8, 8)))));
        for (int h = 0; h < 2; h++) {
            const __m256i ql0 = load256(w + 64 * h), ql1 = load256(w + 64 * h + 32), qh = load256(w + 128 + 32 * h);
            for (int k = 0; k < 4; k++) {
                const __m256i ql = k & 1 ? ql1 : ql0;
                const __m256i lo = k < 2 ? _mm256_and_si256(ql, m4) : _mm256_and_si256(_mm256_srli_epi16(ql, 4), m4);
                const __m256i hi2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m2), 4);
                const __m256i q = _mm256_or_si256(lo, hi2);
                const int s0 = sc[8 * h + 2 * k], s1 = sc[8 * h + 2 * k + 1];
                const __m256i scales = _mm256_set_m128i(_mm_set1_epi16((short)s1), _mm_set1_epi16((short)s0));
                FOR_TOKENS (int t = 0; t < NT; t++) {
                    const act_block *a = x + t * xs + 8 * sb + 4 * h + k;
                    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, load256(a->q)), scales);
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * a->d), acc[t]);
                    off[t] += dsc[8 * h + 2 * k] * (a->d * (float)a->sum16[0]) + dsc[8 * h + 2 * k + 1] * (a->d * (float)a->sum16[1]);
                }
            }
        }
    }
    FOR_TOKENS (int t = 0; t < NT; t++) out[t] = hsum8(acc[t]) - 32.0f * off[t];
}
ROW_DOT_ACT(dot_q6_K, dot_q6_K_nt)

/* ---- float rows against float activations ---- */

/* 8 weights as floats from each storage type. */
INLINE __m256 load8_f32(const uint8_t *p) { return _mm256_loadu_ps((const float *)p); }
INLINE __m256 load8_f16(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
INLINE __m256 load8_bf16(const uint8_t *p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* tile(…, R, n_tok) with n_tok (1…4) as a compile-time constant, inside a ROW_DOT_FLOAT entry point. */
#define FLOAT_TILE_BY_TOKENS(tile, R)                                                                         \
    switch (n_tok) {                                                                                          \
    case 1: tile(w, rb, x, xs, cols, out, R, 1); break;                                                       \
    case 2: tile(w, rb, x, xs, cols, out, R, 2); break;                                                       \
    case 3: tile(w, rb, x, xs, cols, out, R, 3); break;                                                       \
    default: tile(w, rb, x, xs, cols, out, R, 4); break;                                                      \
    }

/* R rows × NT tokens at once: R·NT independent FMA chains. One row against one token is a single chain, bound
 * by the FMA latency (4 cycles) at a quarter of the FMA units' rate; 4 rows × 1–2 tokens or 2 rows × 4 tokens
 * keep 4–8 chains in flight and each converted weight vector serves NT tokens, each loaded x vector R rows.
 * Prompts go 3 tokens at a time (FLOAT_PREFILL_TOKENS) through 4 rows: 12 chains, 3 x vectors and the weight
 * vector being used fill the 16 registers, and the FMA units, not the chains' latency, set the pace.
 * ROW_DOT_FLOAT(name, name_tile, load8, elem_bytes, to_f32) defines that tile, name_tile, and the entry point
 *     static int name(const uint8_t *w, size_t rb, int n_rows, const float *x, int64_t xs, int n_tok,
 *                     int64_t cols, float *out)
 * which runs the tile that fits n_rows and n_tok and returns how many rows it did. */
#define ROW_DOT_FLOAT(name, name_tile, load8, elem_bytes, to_f32)                                             \
    INLINE void name_tile(const uint8_t *w, size_t rb, const float *x, int64_t xs, int64_t cols, float *out,  \
                          const int R, const int NT) {                                                        \
        __m256 acc[4][MATMUL_TOKENS];                                                                         \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                                   \
            FOR_TOKENS (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps();                              \
        int64_t i = 0;                                                                                        \
        for (; i + 8 <= cols; i += 8) {                                                                       \
            __m256 xv[MATMUL_TOKENS];                                                                         \
            FOR_TOKENS (int t = 0; t < NT; t++) xv[t] = _mm256_loadu_ps(x + t * xs + i);                      \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                                             \
                if ((i * (elem_bytes)) % 64 == 0) /* the next tile's rows, at this column */                  \
                    _mm_prefetch((const char *)w + (R + r) * rb + i * (elem_bytes), _MM_HINT_T0);             \
                const __m256 wv = load8(w + r * rb + i * (elem_bytes));                                       \
                FOR_TOKENS (int t = 0; t < NT; t++) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);        \
            }                                                                                                 \
        }                                                                                                     \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                                                   \
            FOR_TOKENS (int t = 0; t < NT; t++) {                                                             \
                float s = hsum8(acc[r][t]);                                                                   \
                for (int64_t j = i; j < cols; j++) s += to_f32(w + r * rb + j * (elem_bytes)) * x[t * xs + j]; \
                out[t * FLOAT_TILE_ROWS + r] = s;                                                             \
            }                                                                                                 \
    }                                                                                                         \
    static int name(const uint8_t *w, size_t rb, int n_rows, const float *x, int64_t xs, int n_tok, int64_t cols, \
                    float *out) {                                                                             \
        if (n_tok <= 3 && n_rows >= 4) {                                                                      \
            if (n_tok == 1) name_tile(w, rb, x, xs, cols, out, 4, 1);                                       \
            else if (n_tok == 2) name_tile(w, rb, x, xs, cols, out, 4, 2);                                  \
            else name_tile(w, rb, x, xs, cols, out, 4, 3);                                                  \
            return 4;                                                                                         \
        }                                                                                                     \
        const int R = n_rows >= 2 ? 2 : 1;                                                                    \
        if (R == 2) {                                                                                         \
            FLOAT_TILE_BY_TOKENS(name_tile, 2)                                                              \
        } else {                                                                                              \
            FLOAT_TILE_BY_TOKENS(name_tile, 1)                                                              \
        }                                                                                                     \
        return R;                                                                                             \
    }

INLINE float scalar_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}
INLINE float scalar_bf16(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
/* Each line defines the tile and the entry point it names: dot_f32_rows_tile and dot_f32_rows, dot_f16_rows_tile
 * and dot_f16_rows, dot_bf16_rows_tile and dot_bf16_rows. */
ROW_DOT_FLOAT(dot_f32_rows, dot_f32_rows_tile, load8_f32, 4, scalar_f32)
ROW_DOT_FLOAT(dot_f16_rows, dot_f16_rows_tile, load8_f16, 2, load_f16)
ROW_DOT_FLOAT(dot_bf16_rows, dot_bf16_rows_tile, load8_bf16, 2, scalar_bf16)

/* ---- float rows against many tokens (prompts) ---- */

/*
 * The tiles above convert each weight vector for 3 tokens at a time, so a prompt converts every weight n/3
 * times, and the 4-row × 3-token tile falls well short of the FMA units' rate in the model (bench/README.md,
 * "Huge pages for packed weights, Q6_K group prefetch, float panels for prompts"). Here a task's rows are
 * first converted to f32 and transposed into panels of 16 rows (panel[k·16 + j] = row j's column k0 + k,
 * GEMM_KC columns at a time, 64 KB for 64 rows: L2), once per column block; then 6 tokens go through a panel at
 * a time: 12 accumulators (6 tokens × 2 vectors of rows), 2 weight vectors and 1 broadcast activation fill 15
 * of the 16 registers, and each column's 12 FMAs need 8 loads and no conversion. Sums run over the columns
 * in order, per column block added to y.
 */
enum { GEMM_NR = 16, GEMM_MR = 6, GEMM_KC = 256 };

INLINE __m256 load8_as(const uint8_t *p, const tandem_type type) {
    return type == TANDEM_TYPE_F32 ? load8_f32(p) : type == TANDEM_TYPE_F16 ? load8_f16(p) : load8_bf16(p);
}
INLINE float load1_as(const uint8_t *p, const tandem_type type) {
    return type == TANDEM_TYPE_F32 ? scalar_f32(p) : type == TANDEM_TYPE_F16 ? load_f16(p) : scalar_bf16(p);
}

/* r[i] = column i of the 8 × 8 matrix whose rows are r[0..7] */
INLINE void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {  /* u[i + c]: column c of rows i…i+3 (low lane) and column c + 4 (high lane) */
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* The panel of rows j < n_rows of w (zeros for the rest of the 16), columns k0 … k0 + kc − 1. */
INLINE void gemm_pack_panel(const uint8_t *w, size_t rb, int n_rows, int64_t k0, int kc, float *panel,
                            const tandem_type type, const int elem_bytes) {
    for (int j0 = 0; j0 < GEMM_NR; j0 += 8) {
        int k = 0;
        for (; k + 8 <= kc; k += 8) {
            __m256 r[8];
            for (int j = 0; j < 8; j++)
                r[j] = j0 + j < n_rows ? load8_as(w + (size_t)(j0 + j) * rb + (size_t)(k0 + k) * elem_bytes, type)
                                       : _mm256_setzero_ps();
            transpose8(r);
            for (int i = 0; i < 8; i++) _mm256_store_ps(panel + (k + i) * GEMM_NR + j0, r[i]);
        }
        for (; k < kc; k++)
            for (int j = 0; j < 8; j++)
                panel[k * GEMM_NR + j0 + j] =
                    j0 + j < n_rows ? load1_as(w + (size_t)(j0 + j) * rb + (size_t)(k0 + k) * elem_bytes, type) : 0.0f;
    }
}

/* y[t·ys + j] (+)= Σ_k panel[k·16 + j]·x[t·xs + k] for t < MR (a compile-time constant), j < n_rows. */
INLINE void gemm_micro(const float *panel, int kc, const float *x, int64_t xs, float *y, int64_t ys, int n_rows,
                       bool accumulate, const int MR) {
    __m256 acc[GEMM_MR][2];
    _Pragma("GCC unroll 6") for (int t = 0; t < MR; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const __m256 w0 = _mm256_load_ps(panel + k * GEMM_NR), w1 = _mm256_load_ps(panel + k * GEMM_NR + 8);
        _Pragma("GCC unroll 6") for (int t = 0; t < MR; t++) {
            const __m256 xb = _mm256_broadcast_ss(x + t * xs + k);
            acc[t][0] = _mm256_fmadd_ps(w0, xb, acc[t][0]);
            acc[t][1] = _mm256_fmadd_ps(w1, xb, acc[t][1]);
        }
    }
    _Pragma("GCC unroll 6") for (int t = 0; t < MR; t++) {
        float *out = y + t * ys;
        if (n_rows == GEMM_NR) {
            if (accumulate) {
                acc[t][0] = _mm256_add_ps(acc[t][0], _mm256_loadu_ps(out));
                acc[t][1] = _mm256_add_ps(acc[t][1], _mm256_loadu_ps(out + 8));
            }
            _mm256_storeu_ps(out, acc[t][0]);
            _mm256_storeu_ps(out + 8, acc[t][1]);
        } else {
            float part[GEMM_NR];
            _mm256_storeu_ps(part, acc[t][0]);
            _mm256_storeu_ps(part + 8, acc[t][1]);
            for (int j = 0; j < n_rows; j++) out[j] = accumulate ? out[j] + part[j] : part[j];
        }
    }
}

INLINE void gemm_float_rows(const uint8_t *w, size_t rb, int n_rows, const float *x, int64_t xs, int n_tok,
                            int64_t cols, float *y, int64_t ys, const tandem_type type, const int elem_bytes) {
    _Alignas(32) float panels[FLOAT_GEMM_ROWS / GEMM_NR][GEMM_KC * GEMM_NR];
    const int n_panels = (n_rows + GEMM_NR - 1) / GEMM_NR;
    for (int64_t k0 = 0; k0 < cols; k0 += GEMM_KC) {
        const int kc = cols - k0 < GEMM_KC ? (int)(cols - k0) : GEMM_KC;
        for (int p = 0; p < n_panels; p++)
            gemm_pack_panel(w + (size_t)p * GEMM_NR * rb, rb, n_rows - p * GEMM_NR, k0, kc, panels[p], type, elem_bytes);
        for (int t0 = 0; t0 < n_tok; t0 += GEMM_MR) {
            const float *xt = x + t0 * xs + k0;
            for (int p = 0; p < n_panels; p++) {
                const int nr = n_rows - p * GEMM_NR < GEMM_NR ? n_rows - p * GEMM_NR : GEMM_NR;
                float *yt = y + t0 * ys + p * GEMM_NR;
                switch (n_tok - t0 < GEMM_MR ? n_tok - t0 : GEMM_MR) {
                case 1: gemm_micro(panels[p], kc, xt, xs, yt, ys, nr, k0 > 0, 1); break;
                case 2: gemm_micro(panels[p], kc, xt, xs, yt, ys, nr, k0 > 0, 2); break;
                case 3: gemm_micro(panels[p], kc, xt, xs, yt, ys, nr, k0 > 0, 3); break;
                case 4: gemm_micro(panels[p], kc, xt, xs, yt, ys, nr, k0 > 0, 4); break;
                case 5: gemm_micro(panels[p], kc, xt, xs, yt, ys, nr, k0 > 0, 5); break;
                default: gemm_micro(panels[p], kc, xt, xs, yt, ys, nr, k0 > 0, 6); break;
                }
            }
        }
    }
}
static void gemm_f32_rows(const uint8_t *w, size_t rb, int n_rows, const float *x, int64_t xs, int n_tok, int64_t cols,
                          float *y, int64_t ys) {
    gemm_float_rows(w, rb, n_rows, x, xs, n_tok, cols, y, ys, TANDEM_TYPE_F32, 4);
}
static void gemm_f16_rows(const uint8_t *w, size_t rb, int n_rows, const float *x, int64_t xs, int n_tok, int64_t cols,
                          float *y, int64_t ys) {
    gemm_float_rows(w, rb, n_rows, x, xs, n_tok, cols, y, ys, TANDEM_TYPE_F16, 2);
}
static void gemm_bf16_rows(const uint8_t *w, size_t rb, int n_rows, const float *x, int64_t xs, int n_tok,
                           int64_t cols, float *y, int64_t ys) {
    gemm_float_rows(w, rb, n_rows, x, xs, n_tok, cols, y, ys, TANDEM_TYPE_BF16, 2);
}

/* ---- packed float rows (pack.c: column k of a group's 8 rows is 8 consecutive elements) ---- */

/*
 * A column of 8 rows is one load and one conversion, multiplied by the token's value broadcast: the lanes are
 * the rows, so there are no horizontal sums, and a group streams from one address rather than from 4 rows'.
 * It streams the 0.6B output head faster than the plain 4-row tiles (bench/README.md, "Packed float weights").
 *
 * Every (row, token) sum is formed the same way whatever the token count, so that a pass over k tokens gives
 * the bits k single-token passes give (a verification pass must not flip a near-tie the target alone would
 * not): per block of GEMM_KC columns, even and odd columns (from the block's start) go to two chains, the
 * block's sum is chain 0 + chain 1, and the blocks' sums are added in order. Two chains per token also keep a
 * single token's FMAs from waiting on each other's latency.
 */
enum { PACKED_GEMM_MR = 3 };  /* tokens per GEMM tile: 3 tokens × 2 groups × 2 chains = 12 accumulators */

/* acc[t] += column k of the 8 rows at g · token t's value k, for t < NT. */
INLINE void add_column(__m256 *acc, const uint8_t *g, int64_t k, const float *x, int64_t xs, const tandem_type type,
                       const int eb, const int NT) {
    const __m256 wv = load8_as(g + k * PACK_ROWS * eb, type);
    FOR_TOKENS (int t = 0; t < NT; t++) acc[t] = _mm256_fmadd_ps(wv, _mm256_broadcast_ss(x + t * xs + k), acc[t]);
}

/* out[t·8 + i] for the 8 rows of group g and NT ≤ MATMUL_TOKENS tokens (decoding, short passes). */
INLINE void group_dot_float(const uint8_t *g, const float *x, int64_t xs, int64_t cols, float *out,
                            const tandem_type type, const int eb, const int NT) {
    if (cols == 0) FOR_TOKENS (int t = 0; t < NT; t++) _mm256_storeu_ps(out + t * PACK_ROWS, _mm256_setzero_ps());
    for (int64_t k0 = 0; k0 < cols; k0 += GEMM_KC) {
        const int64_t k_end = cols - k0 < GEMM_KC ? cols : k0 + GEMM_KC;
        __m256 acc[2][MATMUL_TOKENS];
        FOR_TOKENS (int t = 0; t < NT; t++) acc[0][t] = acc[1][t] = _mm256_setzero_ps();
        int64_t k = k0;
        for (; k + 4 <= k_end; k += 4) {
            prefetch_ahead(g + k * PACK_ROWS * eb, 4 * PACK_ROWS * eb, NT);
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) add_column(acc[j & 1], g, k + j, x, xs, type, eb, NT);
        }
        _Pragma("GCC unroll 3") for (int j = 0; j < 3; j++)  /* the block's last 1-3 columns (k − k0 is even) */
            if (k + j < k_end) add_column(acc[j & 1], g, k + j, x, xs, type, eb, NT);
        /* the running sums live in out: in registers beside 8 accumulators they spilled at 4 tokens */
        FOR_TOKENS (int t = 0; t < NT; t++) {
            const __m256 block = _mm256_add_ps(acc[0][t], acc[1][t]);
            _mm256_storeu_ps(out + t * PACK_ROWS, k0 ? _mm256_add_ps(_mm256_loadu_ps(out + t * PACK_ROWS), block) : block);
        }
    }
}

/* y[t·ys + j] (+)= the sums above over columns k0 … k0 + kc − 1 for the 8·NG rows of NG consecutive groups
 * (group_bytes apart) and MR ≤ PACKED_GEMM_MR tokens, the weights converted as they are loaded. */
INLINE void gemm_packed_micro(const uint8_t *g, size_t group_bytes, int64_t k0, int kc, const float *x, int64_t xs,
                              float *y, int64_t ys, bool accumulate, const tandem_type type, const int eb,
                              const int NG, const int MR) {
    __m256 acc[2][PACKED_GEMM_MR][2];
    _Pragma("GCC unroll 3") for (int t = 0; t < MR; t++)
        _Pragma("GCC unroll 2") for (int v = 0; v < NG; v++) acc[0][t][v] = acc[1][t][v] = _mm256_setzero_ps();
    int64_t k = k0;
    for (; k + 2 <= k0 + kc; k += 2)
        _Pragma("GCC unroll 2") for (int c = 0; c < 2; c++) {
            __m256 wv[2];
            _Pragma("GCC unroll 2") for (int v = 0; v < NG; v++)
                wv[v] = load8_as(g + v * group_bytes + (k + c) * PACK_ROWS * eb, type);
            _Pragma("GCC unroll 3") for (int t = 0; t < MR; t++) {
                const __m256 xb = _mm256_broadcast_ss(x + t * xs + k + c);
                _Pragma("GCC unroll 2") for (int v = 0; v < NG; v++) acc[c][t][v] = _mm256_fmadd_ps(wv[v], xb, acc[c][t][v]);
            }
        }
    if (k < k0 + kc)  /* an odd block: its last column is even, chain 0's */
        _Pragma("GCC unroll 2") for (int v = 0; v < NG; v++) {
            const __m256 wv = load8_as(g + v * group_bytes + k * PACK_ROWS * eb, type);
            _Pragma("GCC unroll 3") for (int t = 0; t < MR; t++)
                acc[0][t][v] = _mm256_fmadd_ps(wv, _mm256_broadcast_ss(x + t * xs + k), acc[0][t][v]);
        }
    _Pragma("GCC unroll 3") for (int t = 0; t < MR; t++)
        _Pragma("GCC unroll 2") for (int v = 0; v < NG; v++) {
            float *out = y + t * ys + v * PACK_ROWS;
            const __m256 block = _mm256_add_ps(acc[0][t][v], acc[1][t][v]);
            _mm256_storeu_ps(out, accumulate ? _mm256_add_ps(_mm256_loadu_ps(out), block) : block);
        }
}

#define GEMM_PACKED_BY_TOKENS(NG)                                                                             \
    switch (mr) {                                                                                             \
    case 1: gemm_packed_micro(g, group_bytes, k0, kc, xt, xs, yt, ys, k0 > 0, type, eb, NG, 1); break;        \
    case 2: gemm_packed_micro(g, group_bytes, k0, kc, xt, xs, yt, ys, k0 > 0, type, eb, NG, 2); break;        \
    default: gemm_packed_micro(g, group_bytes, k0, kc, xt, xs, yt, ys, k0 > 0, type, eb, NG, 3); break;       \
    }

/* GEMM_KC columns at a time (the task's ≤ 64 rows of them, 32 KB of f16, stay in L1/L2 while every token
 * tile passes), tiles of 3 tokens × 2 groups. */
INLINE void gemm_packed_float(const uint8_t *groups, int n_rows, const float *x, int64_t xs, int n_tok, int64_t cols,
                              float *y, int64_t ys, const tandem_type type, const int eb) {
    const size_t group_bytes = (size_t)PACK_ROWS * (size_t)cols * (size_t)eb;
    const int n_groups = n_rows / PACK_ROWS;
    for (int64_t k0 = 0; k0 < cols; k0 += GEMM_KC) {
        const int kc = cols - k0 < GEMM_KC ? (int)(cols - k0) : GEMM_KC;
        for (int t0 = 0, mr; t0 < n_tok; t0 += mr) {
            /* tiles of even size (5 tokens as 3 + 2, 4 as 2 + 2: a 1-token tile keeps only 4 FMA chains) */
            const int tiles_left = (n_tok - t0 + PACKED_GEMM_MR - 1) / PACKED_GEMM_MR;
            mr = (n_tok - t0 + tiles_left - 1) / tiles_left;
            const float *xt = x + t0 * xs;
            for (int i = 0; i < n_groups; i += 2) {
                const uint8_t *g = groups + (size_t)i * group_bytes;
                float *yt = y + t0 * ys + i * PACK_ROWS;
                if (n_groups - i >= 2) {
                    GEMM_PACKED_BY_TOKENS(2)
                } else {
                    GEMM_PACKED_BY_TOKENS(1)
                }
            }
        }
    }
    if (cols == 0)
        for (int t = 0; t < n_tok; t++) memset(y + t * ys, 0, sizeof(float) * (size_t)n_rows);
}

/* PACKED_FLOAT(dot_name, gemm_name, type, eb) defines the packed float entry points of one type: dot_name (up
 * to MATMUL_TOKENS tokens, group_dot_float) and gemm_name (longer passes, gemm_packed_float). */
#define PACKED_FLOAT(dot_name, gemm_name, type, eb)                                                           \
    static void dot_name(const uint8_t *g, const float *x, int64_t xs, int n_tok, int64_t cols, float *out) { \
        switch (n_tok) {                                                                                      \
        case 1: group_dot_float(g, x, xs, cols, out, type, eb, 1); break;                                     \
        case 2: group_dot_float(g, x, xs, cols, out, type, eb, 2); break;                                     \
        case 3: group_dot_float(g, x, xs, cols, out, type, eb, 3); break;                                     \
        default: group_dot_float(g, x, xs, cols, out, type, eb, 4); break;                                    \
        }                                                                                                     \
    }                                                                                                         \
    static void gemm_name(const uint8_t *groups, int n_rows, const float *x, int64_t xs, int n_tok,           \
                          int64_t cols, float *y, int64_t ys) {                                               \
        gemm_packed_float(groups, n_rows, x, xs, n_tok, cols, y, ys, type, eb);                               \
    }
PACKED_FLOAT(dot_f32_packed, gemm_f32_packed, TANDEM_TYPE_F32, 4)
PACKED_FLOAT(dot_f16_packed, gemm_f16_packed, TANDEM_TYPE_F16, 2)
PACKED_FLOAT(dot_bf16_packed, gemm_bf16_packed, TANDEM_TYPE_BF16, 2)

/* ---- activation quantization: the same bytes as quantize_act_scalar ---- */

INLINE float hmax8(__m256 m) {
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    return _mm_cvtss_f32(m4);
}

static void quantize_act_avx2(const float *x, act_block *out, int64_t n, int scale_blocks) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t g = 0; g < n / 32; g += scale_blocks) {
        __m256 m = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
        for (int i = 0; i < 4 * scale_blocks; i++) {
            const __m256 v = _mm256_loadu_ps(x + 32 * g + 8 * i);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        }
        const float d = _mm256_testz_ps(nan, nan) ? hmax8(m) / 127.0f : NAN, id = d >= 0x1p-126f ? 1.0f / d : 0.0f;
        const __m256 idv = _mm256_set1_ps(id);
        for (int64_t b = g; b < g + scale_blocks; b++) {
            act_block *a = &out[b];
            __m256i iv[4];
            for (int i = 0; i < 4; i++)  /* round to even */
                iv[i] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * b + 8 * i), idv));
            /* int32 → int16 → int8 packs interleave 128-bit lanes; the permute puts elements back in order */
            const __m256i p16a = _mm256_packs_epi32(iv[0], iv[1]), p16b = _mm256_packs_epi32(iv[2], iv[3]);
            const __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b),
                                                           _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)a->q, p8);
            /* Σq per half: widen to int16 and add 16 at a time */
            const __m256i s16 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), p8), _mm256_set1_epi16(1));
            const __m128i lo = _mm256_castsi256_si128(s16), hi = _mm256_extracti128_si256(s16, 1);
            const __m128i l2 = _mm_hadd_epi32(lo, lo), h2 = _mm_hadd_epi32(hi, hi);
            const int sum0 = _mm_cvtsi128_si32(_mm_hadd_epi32(l2, l2)), sum1 = _mm_cvtsi128_si32(_mm_hadd_epi32(h2, h2));
            a->d = d;
            a->s = d * (float)(sum0 + sum1);
            a->sum16[0] = (int16_t)sum0;
            a->sum16[1] = (int16_t)sum1;
            a->unused = 0;
        }
    }
}

/* ---- attention: tiles of queries (tokens × the query heads of one KV head) over blocks of keys ---- */

/* e^x, 8 at a time: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two for an exact r), e^r by Cephes' degree-6
 * polynomial (relative error ~2e-7), times 2^n through the exponent bits. x is clamped to [-87, 88] so 2^n
 * stays a normal float: below e^-87 ≈ 2e-38 the result is that, not 0, which a softmax cannot tell apart.
 * NaN stays NaN, as with expf (min/max return their second operand when one is NaN): a NaN attention score,
 * from a NaN weight, then reaches the logits, where it is caught, instead of becoming a weight of e^-87. */
INLINE __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(pow2n));
}

/* The cache holds keys and values as f32 or f16 (F16, a compile-time constant): the address of element i of
 * base, and 8 or 1 of them from there, converted on load. */
INLINE const void *kv_at(const void *base, size_t i, const bool F16) {
    return (const uint8_t *)base + i * (F16 ? 2 : 4);
}
INLINE __m256 load_kv8(const void *base, size_t i, const bool F16) {
    return load8_as(kv_at(base, i, F16), F16 ? TANDEM_TYPE_F16 : TANDEM_TYPE_F32);
}
INLINE float load_kv1(const void *base, size_t i, const bool F16) {
    return load1_as(kv_at(base, i, F16), F16 ? TANDEM_TYPE_F16 : TANDEM_TYPE_F32);
}

/* a·b + c rounded once, whatever the compiler's contraction setting. */
INLINE float fma1(float a, float b, float c) {
    return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}

/* The lane sums of a, b, c, d, each as ((0+1)+(2+3))+((4+5)+(6+7)). */
INLINE __m128 lane_sums4(__m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/*
 * A tile of query rows (row m = token m / G's query head m % G of the KV head) passes over the keys in blocks of
 * ATTENTION_KEY_BLOCK: the block's scores, then per row an online-softmax step, then the block's weighted values
 * added to the rows' outputs, which stay in out. Each key and value of a block is read once per tile from L1/L2
 * (a 16-token prompt tile reads the cache 16 times less than a pass per token), and the loads are shared by
 * 2-4 rows in registers.
 *
 * Every row's result is formed the same way whatever tile it is in, so that a verification pass gives the bits
 * of single-token passes:
 *  - a score is 8 lanes chained over the columns, their sum ((0+1)+(2+3))+((4+5)+(6+7)), then the columns past
 *    the last multiple of 8 fused in one by one, times scale, whichever rows and keys share the loads;
 *  - per block (blocks start at key 0): new max = max(old max, the block's scores), p = e^(score − new max) by
 *    exp8, α = e^(old max − new max) (0 for the first block), sum = sum·α + the block's p summed as 8 lanes of
 *    chunks in order, out = out·α then + p_u·v_u fused for the keys in order;
 *  - out · (1 / sum) at the end.
 * The rows of a tile see different numbers of keys (causal): in a block, a row's keys past its own last get
 * p = 0, and adding 0·v leaves its sums unchanged (a −0 may become +0: the same value).
 *
 * Decoding reads the cache from memory (the weights streamed since evicted it), where the hardware
 * prefetcher alone left the kernel waiting: it read the cache from memory far slower than from L2. So the
 * first rows' pass asks for the keys of the next block and, into L2 rather than L1 (the block's keys stream
 * through L1 meanwhile), the values of the keys it scores (bench/README.md, "Attention prefetches into L2").
 */

/* S[r·KB + u + j] = the scores of rows r < R (queries qr[r]) against keys u … u + NK − 1 of the block. */
INLINE void score_tile(float *S, const float *const *qr, const void *keys, int u, int hd, float scale, const int R,
                       const int NK, const bool F16) {
    const int hd8 = hd & ~7;
    __m256 acc[3][4];
    _Pragma("GCC unroll 3") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int j = 0; j < NK; j++) acc[r][j] = _mm256_setzero_ps();
    for (int d = 0; d < hd8; d += 8) {
        __m256 qv[3];
        _Pragma("GCC unroll 3") for (int r = 0; r < R; r++) qv[r] = _mm256_loadu_ps(qr[r] + d);
        _Pragma("GCC unroll 4") for (int j = 0; j < NK; j++) {
            const __m256 kv = load_kv8(keys, (size_t)(u + j) * hd + d, F16);
            _Pragma("GCC unroll 3") for (int r = 0; r < R; r++) acc[r][j] = _mm256_fmadd_ps(qv[r], kv, acc[r][j]);
        }
    }
    _Pragma("GCC unroll 3") for (int r = 0; r < R; r++) {
        float sums[4];
        _mm_storeu_ps(sums, NK == 4 ? lane_sums4(acc[r][0], acc[r][1], acc[r][2], acc[r][3])
                                    : lane_sums4(acc[r][0], acc[r][0], acc[r][0], acc[r][0]));
        _Pragma("GCC unroll 4") for (int j = 0; j < NK; j++) {
            float s = sums[j];
            for (int d = hd8; d < hd; d++) s = fma1(qr[r][d], load_kv1(keys, (size_t)(u + j) * hd + d, F16), s);
            S[r * ATTENTION_KEY_BLOCK + u + j] = s * scale;
        }
    }
}

#define SCORE_TILE_BY_ROWS(NK)                                                                                  \
    switch (R) {                                                                                              \
    case 1: score_tile(S + m * ATTENTION_KEY_BLOCK, qr, bk, u, hd, scale, 1, NK, F16); break;               \
    case 2: score_tile(S + m * ATTENTION_KEY_BLOCK, qr, bk, u, hd, scale, 2, NK, F16); break;               \
    default: score_tile(S + m * ATTENTION_KEY_BLOCK, qr, bk, u, hd, scale, 3, NK, F16); break;              \
    }

/* out rows or[r] (r < R), columns d0 … d0 + 8V − 1: ·α[r], then + p_r,u · v_u for the block's kb keys in order. */
INLINE void value_tile(float *const *orow, const float *const *prow, const float *alpha, const void *values, int kb,
                       int hd, int d0, const int R, const int V, const bool F16) {
    __m256 o[4][8];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8") for (int i = 0; i < V; i++)
            o[r][i] = _mm256_mul_ps(_mm256_loadu_ps(orow[r] + d0 + 8 * i), _mm256_set1_ps(alpha[r]));
    for (int u = 0; u < kb; u++) {
        __m256 vv[8];
        _Pragma("GCC unroll 8") for (int i = 0; i < V; i++) vv[i] = load_kv8(values, (size_t)u * hd + d0 + 8 * i, F16);
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const __m256 p = _mm256_set1_ps(prow[r][u]);
            _Pragma("GCC unroll 8") for (int i = 0; i < V; i++) o[r][i] = _mm256_fmadd_ps(p, vv[i], o[r][i]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8") for (int i = 0; i < V; i++) _mm256_storeu_ps(orow[r] + d0 + 8 * i, o[r][i]);
}

/* One row's online-softmax step over its block scores s (lim ≥ 1 of its own, of the block's kb): s becomes p
 * (0 from lim to kb), *max and *sum move on, *alpha is what the row's output is scaled by first. */
static void softmax_step(float *s, int lim, int kb, float *max, float *sum, float *alpha) {
    __m256 vmax8 = _mm256_set1_ps(-INFINITY);
    int u = 0;
    for (; u + 8 <= lim; u += 8) vmax8 = _mm256_max_ps(vmax8, _mm256_loadu_ps(s + u));
    float block_max = hmax8(vmax8);
    for (; u < lim; u++) block_max = s[u] > block_max ? s[u] : block_max;
    const float new_max = block_max > *max ? block_max : *max;
    *alpha = *max == -INFINITY ? 0.0f : _mm256_cvtss_f32(exp8(_mm256_set1_ps(*max - new_max)));
    const __m256 vmax = _mm256_set1_ps(new_max), lanes = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 vsum = _mm256_setzero_ps();
    for (u = 0; u < lim; u += 8) {  /* s has room for whole chunks: lanes from lim on are masked to 0 */
        const __m256 live = _mm256_cmp_ps(_mm256_add_ps(lanes, _mm256_set1_ps((float)u)), _mm256_set1_ps((float)lim),
                                          _CMP_LT_OQ);
        const __m256 p = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_loadu_ps(s + u), vmax)), live);
        _mm256_storeu_ps(s + u, p);
        vsum = _mm256_add_ps(vsum, p);
    }
    for (; u < kb; u++) s[u] = 0.0f;
    const float block_sum = _mm_cvtss_f32(lane_sums4(vsum, vsum, vsum, vsum));
    *sum = fma1(*sum, *alpha, block_sum);
    *max = new_max;
}

/* Where row m (token m / G, query head m % G) starts in q or out, rows of a token head_dim apart, tokens stride. */
INLINE size_t tile_row(int m, int G, int64_t stride, int hd) { return (size_t)(m / G) * stride + (size_t)(m % G) * hd; }

/* A Q8_0 cache's n rows of hd values (hd a multiple of 32) at src into floats at dst, d·q (exact in float: an
 * 11-bit by 8-bit product), asking for the rows that follow (up to ahead bytes) into L2 as it goes. */
static void q8_0_rows_to_f32(float *dst, const uint8_t *src, int n, int hd, size_t ahead) {
    const size_t bytes = (size_t)n * (size_t)(hd / 32) * 34;
    for (size_t o = 0; o < bytes && o < ahead; o += 64) _mm_prefetch((const char *)src + bytes + o, _MM_HINT_T1);
    for (size_t b = 0; b < bytes; b += 34, dst += 32) {
        const __m256 d = _mm256_set1_ps(load_f16(src + b));
        _Pragma("GCC unroll 4") for (int j = 0; j < 32; j += 8) {
            const __m128i q8 = _mm_loadl_epi64((const __m128i *)(src + b + 2 + j));
            _mm256_storeu_ps(dst + j, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), d));
        }
    }
}

/* Q8 (a compile-time constant, then F16 false): keys and values are Q8_0 rows, and each block of them is converted
 * to floats once (q8_0_rows_to_f32, into the scratch past the rows' part) for all the rows of the tile, which then
 * read them as from an f32 cache: converting in the score and value tiles would redo it for every 3 or 4 rows, at
 * three steps per 8 values where f16 takes one. */
INLINE void attention_tile(float *out, int64_t os, const float *q, int64_t qs, int T, int G, const void *keys,
                           const void *values, int n_keys0, int hd, float scale, float *scratch, const bool F16,
                           const bool Q8) {
    const int M = T * G, KB = ATTENTION_KEY_BLOCK;
    float *S = scratch, *row_max = S + (size_t)M * KB, *row_sum = row_max + M, *row_alpha = row_sum + M;
    for (int m = 0; m < M; m++) {
        row_max[m] = -INFINITY;
        row_sum[m] = 0.0f;
        memset(out + tile_row(m, G, os, hd), 0, sizeof(float) * (size_t)hd);
    }
    const int n_keys = n_keys0 + T - 1;  /* the last token's */
    for (int b0 = 0; b0 < n_keys; b0 += KB) {
        const int kb = n_keys - b0 < KB ? n_keys - b0 : KB;
        const void *bk = kv_at(keys, (size_t)b0 * hd, F16), *bv = kv_at(values, (size_t)b0 * hd, F16);
        if (Q8) {
            float *const key_floats = scratch + (size_t)M * ATTENTION_SCRATCH_PER_QUERY;
            float *const value_floats = key_floats + (size_t)KB * hd;
            const size_t q8_row = (size_t)(hd / 32) * 34, ahead = (size_t)(n_keys - b0 - kb) * q8_row;
            q8_0_rows_to_f32(key_floats, (const uint8_t *)keys + (size_t)b0 * q8_row, kb, hd, ahead);
            q8_0_rows_to_f32(value_floats, (const uint8_t *)values + (size_t)b0 * q8_row, kb, hd, ahead);
            bk = key_floats, bv = value_floats;
        }
        const int t_first = b0 - n_keys0 + 1 > 0 ? b0 - n_keys0 + 1 : 0;  /* the first token that sees key b0 */
        for (int m = t_first * G, R; m < M; m += R) {
            R = M - m < 3 ? M - m : 3;
            const float *qr[3];
            for (int r = 0; r < R; r++) qr[r] = q + tile_row(m + r, G, qs, hd);
            const bool first_rows = !Q8 && m == t_first * G;
            int u = 0;
            for (; u + 4 <= kb; u += 4) {
                if (first_rows) {  /* into L2: these keys' values, added after the block's scores, and the keys
                                    * a block ahead (see above) */
                    const char *values_now = kv_at(bv, (size_t)u * hd, F16);
                    const char *keys_next = kv_at(bk, (size_t)(u + KB) * hd, F16);
                    const bool keys_ahead = b0 + u + KB + 4 <= n_keys;
                    for (size_t o = 0; o < (size_t)4 * hd * (F16 ? 2 : 4); o += 64) {
                        _mm_prefetch(values_now + o, _MM_HINT_T1);
                        if (keys_ahead) _mm_prefetch(keys_next + o, _MM_HINT_T1);
                    }
                }
                SCORE_TILE_BY_ROWS(4)
            }
            for (; u < kb; u++) SCORE_TILE_BY_ROWS(1)
        }
        for (int m = t_first * G; m < M; m++) {
            const int own = n_keys0 + m / G - b0;
            softmax_step(S + (size_t)m * KB, own < kb ? own : kb, kb, row_max + m, row_sum + m, row_alpha + m);
        }
        for (int m = t_first * G, R; m < M; m += R) {
            R = M - m >= 4 && hd % 16 == 0 ? 4 : M - m >= 2 && hd % 32 == 0 ? 2 : 1;
            float *orow[4];
            const float *prow[4];
            for (int r = 0; r < R; r++) {
                orow[r] = out + tile_row(m + r, G, os, hd);
                prow[r] = S + (size_t)(m + r) * KB;
            }
            const float *alpha = row_alpha + m;
            int d0 = 0;
            if (R == 4)
                for (; d0 < hd; d0 += 16) value_tile(orow, prow, alpha, bv, kb, hd, d0, 4, 2, F16);
            else if (R == 2)
                for (; d0 < hd; d0 += 32) value_tile(orow, prow, alpha, bv, kb, hd, d0, 2, 4, F16);
            else {
                for (; d0 + 64 <= hd; d0 += 64) value_tile(orow, prow, alpha, bv, kb, hd, d0, 1, 8, F16);
                for (; d0 + 32 <= hd; d0 += 32) value_tile(orow, prow, alpha, bv, kb, hd, d0, 1, 4, F16);
                for (; d0 + 8 <= hd; d0 += 8) value_tile(orow, prow, alpha, bv, kb, hd, d0, 1, 1, F16);
                for (; d0 < hd; d0++) {
                    float o = orow[0][d0] * alpha[0];
                    for (int u = 0; u < kb; u++) o = fma1(prow[0][u], load_kv1(bv, (size_t)u * hd + d0, F16), o);
                    orow[0][d0] = o;
                }
            }
        }
    }
    for (int m = 0; m < M; m++) {
        float *o = out + tile_row(m, G, os, hd);
        const float inv = 1.0f / row_sum[m];
        for (int d = 0; d < hd; d++) o[d] *= inv;
    }
}

static void attention_avx2(float *out, int64_t out_stride, const float *q, int64_t q_stride, int n_tokens,
                           int n_queries, const void *keys, const void *values, tandem_type kv_type, int n_keys0,
                           int head_dim, float scale, float *scratch) {
    if (kv_type == TANDEM_TYPE_F16)
        attention_tile(out, out_stride, q, q_stride, n_tokens, n_queries, keys, values, n_keys0, head_dim, scale,
                       scratch, true, false);
    else if (kv_type == TANDEM_TYPE_Q8_0)
        attention_tile(out, out_stride, q, q_stride, n_tokens, n_queries, keys, values, n_keys0, head_dim, scale,
                       scratch, false, true);
    else
        attention_tile(out, out_stride, q, q_stride, n_tokens, n_queries, keys, values, n_keys0, head_dim, scale,
                       scratch, false, false);
}

static void to_f16_avx2(uint16_t *out, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    f32_to_f16_row_scalar(out + i, x + i, n - i);
}

/* ---- per-vector ops ---- */

/* softmax_forward with exp8: the maximum and the sum over 8 lanes, the scalar loop for the last n % 8. */
static void softmax_avx2(float *x, int n) {
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
    float lanes[8], max = -INFINITY;
    _mm256_storeu_ps(lanes, vmax);
    for (int k = 0; k < 8; k++) max = lanes[k] > max ? lanes[k] : max;
    for (; i < n; i++) max = x[i] > max ? x[i] : max;
    const __m256 mv = _mm256_set1_ps(max);
    __m256 vsum = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
        _mm256_storeu_ps(x + i, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    _mm256_storeu_ps(lanes, vsum);
    double sum = 0;
    for (int k = 0; k < 8; k++) sum += lanes[k];
    for (; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    const __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= (float)(1.0 / sum);
}

/* silu(g)·up with exp8: the scalar expf took its slow path (e^-g underflowing) on large gate values, a visible
 * part of a small model's decode step (bench/README.md, "Contiguous task shares, SIMD SwiGLU and argmax, f16 KV
 * cache"). */
static void swiglu_avx2(float *out, const float *gate, const float *up, int n) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, exp8(_mm256_xor_ps(g, sign))));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
    }
    swiglu_forward_scalar(out + i, gate + i, up + i, n - i);
}

/* GELU's tanh form as x·σ(2u) = x / (1 + e^(−2u)), u = √(2/π)·(x + 0.044715·x³) (the same function: 0.5·(1 +
 * tanh u) = σ(2u)), with exp8; its clamp keeps e^(−2u) finite, so a large negative x gives x / (1 + e^88) ≈ −0 and a
 * large positive one x. */
static void gelu_tanh_avx2(float *out, const float *x, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), c = _mm256_set1_ps(-2.0f * 0.7978845608028654f),
                 a = _mm256_set1_ps(0.044715f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 inner = _mm256_fmadd_ps(_mm256_mul_ps(a, v), _mm256_mul_ps(v, v), v);
        _mm256_storeu_ps(out + i, _mm256_div_ps(v, _mm256_add_ps(one, exp8(_mm256_mul_ps(c, inner)))));
    }
    gelu_tanh_forward_scalar(out + i, x + i, n - i);
}

/* argmax_f32_scalar's two passes, 32 values a step (four independent max chains, then the first equal). */
static int64_t argmax_avx2(const float *x, int64_t n) {
    __m256 m[4];
    for (int j = 0; j < 4; j++) m[j] = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)  /* max_ps(v, m) returns m when v is NaN */
        for (int j = 0; j < 4; j++) m[j] = _mm256_max_ps(_mm256_loadu_ps(x + i + 8 * j), m[j]);
    float max = hmax8(_mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3])));
    for (; i < n; i++) max = x[i] > max ? x[i] : max;
    const __m256 mv = _mm256_set1_ps(max);
    for (i = 0; i + 8 <= n; i += 8) {
        const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), mv, _CMP_EQ_OQ));
        if (hit) return i + __builtin_ctz((unsigned)hit);
    }
    for (; i < n; i++)
        if (x[i] == max) return i;
    return 0;
}

void kernel_isa_fill_avx2(kernel_isa *isa) {
    *isa = (kernel_isa){.name = "avx2",
                        .quantize_act = quantize_act_avx2,
                        .attention = attention_avx2,
                        .swiglu = swiglu_avx2,
                        .softmax = softmax_avx2,
                        .argmax = argmax_avx2,
                        .to_f16 = to_f16_avx2,
                        .gelu_tanh = gelu_tanh_avx2};
    isa->dot_act[TANDEM_TYPE_Q8_0] = dot_q8_0;
    isa->dot_packed[TANDEM_TYPE_Q8_0] = dot_q8_0_packed;
    isa->dot_packed[TANDEM_TYPE_Q4_0] = dot_q4_0_packed;
    isa->dot_packed[TANDEM_TYPE_Q4_K] = dot_q4_K_packed;
    isa->dot_packed[TANDEM_TYPE_Q5_K] = dot_q5_K_packed;
    isa->dot_packed[TANDEM_TYPE_Q6_K] = dot_q6_K_packed;
    isa->dot_act[TANDEM_TYPE_Q4_0] = dot_q4_0;
    isa->dot_act[TANDEM_TYPE_Q4_1] = dot_q4_1;
    isa->dot_act[TANDEM_TYPE_Q5_0] = dot_q5_0;
    isa->dot_act[TANDEM_TYPE_Q5_1] = dot_q5_1;
    isa->dot_act[TANDEM_TYPE_IQ4_NL] = dot_iq4_nl;
    isa->dot_act[TANDEM_TYPE_Q4_K] = dot_q4_K;
    isa->dot_act[TANDEM_TYPE_Q5_K] = dot_q5_K;
    isa->dot_act[TANDEM_TYPE_Q6_K] = dot_q6_K;
    isa->dot_float[TANDEM_TYPE_F32] = dot_f32_rows;
    isa->dot_float[TANDEM_TYPE_F16] = dot_f16_rows;
    isa->dot_float[TANDEM_TYPE_BF16] = dot_bf16_rows;
    isa->gemm_float[TANDEM_TYPE_F32] = gemm_f32_rows;
    isa->gemm_float[TANDEM_TYPE_F16] = gemm_f16_rows;
    isa->gemm_float[TANDEM_TYPE_BF16] = gemm_bf16_rows;
    isa->dot_packed_float[TANDEM_TYPE_F32] = dot_f32_packed;
    isa->dot_packed_float[TANDEM_TYPE_F16] = dot_f16_packed;
    isa->dot_packed_float[TANDEM_TYPE_BF16] = dot_bf16_packed;
    isa->gemm_packed_float[TANDEM_TYPE_F32] = gemm_f32_packed;
    isa->gemm_packed_float[TANDEM_TYPE_F16] = gemm_f16_packed;
    isa->gemm_packed_float[TANDEM_TYPE_BF16] = gemm_bf16_packed;
}
