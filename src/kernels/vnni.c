/* vnni.c — the packed 8-row products (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) on VNNI's vpdpbusd; the rest of the table is
 * avx2.c's. Built twice, for AVX-512 VNNI (EVEX) and AVX-VNNI (VEX); act.c calls each only where the CPU has it.
 *
 * vpdpbusd multiplies unsigned by signed bytes and adds each lane's four products to an int32 accumulator in
 * one instruction, where AVX2 needs maddubs (into int16), madd (into int32) and an add: a third of the
 * multiply-port work. When k drafted tokens share each weight load that work bounds the pass (avx2.c's Q4_K at
 * k = 4 is bound by the multiply port: bench/README.md, "Workers that stay awake through a forward pass, finer
 * decode tasks"), so this is where the verification of a draft gets cheaper. Sums stay in
 * int32, so the int16 limits of avx2.c (how many units add before widening) do not apply here.
 *
 * The vectors are 256 bits on AVX-512 CPUs too: the packed layout holds 8 rows × 4 columns per 256 bits, each
 * multiplied by one broadcast 4-byte activation. In 512 bits the two halves would hold different columns, and
 * lining the activations up would take a permute beside every multiply. The EVEX build still gains AVX-512VL's
 * 32 vector registers, room for 4 tokens' accumulators.
 *
 * Every sum is an exact integer and every float step is avx2.c's, in the same order: the outputs equal the AVX2
 * kernels' bit for bit (the tests hold them to it, on an AVX2 CPU through SIMDe's emulation of vpdpbusd). */
#if defined(TANDEM_VNNI_SIMDE)
/* Tests on CPUs without VNNI: SIMDe (Debian libsimde-dev) supplies _mm256_dpbusd_epi32 from AVX2 operations. */
#include <simde/x86/avx512/dpbusd.h>
/* out of line: inlined into every unrolled multiply, the emulation took the compiler minutes */
__attribute__((noinline)) static __m256i dpbusd_simde(__m256i acc, __m256i u, __m256i s) {
    return simde_mm256_dpbusd_epi32(acc, u, s);
}
#define DPBUSD(acc, u, s) dpbusd_simde(acc, u, s)
#define VNNI_ISA_NAME "avx512vnni-simde"
#define VNNI_FILL kernel_isa_fill_vnni_simde
#elif defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define DPBUSD(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#define VNNI_ISA_NAME "avx512vnni"
#define VNNI_FILL kernel_isa_fill_avx512vnni
#elif defined(__AVXVNNI__)
#define DPBUSD(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)
#define VNNI_ISA_NAME "avxvnni"
#define VNNI_FILL kernel_isa_fill_avxvnni
#else
#error "vnni.c is built with -mavx512vnni -mavx512vl, with -mavxvnni, or with TANDEM_VNNI_SIMDE"
#endif

#include "avx2_inline.h"

/* acc += the products of q's 8 rows with activation block a's 4 bytes for columns 4u…4u+3 (in every lane).
 * EVEX vpdpbusd broadcasts a 4-byte memory operand itself ({1to8}): one instruction, where gcc 12 emits a
 * vpbroadcastd beside each (clang folds it, gcc does not), 64 of a 1-token Q4_K super-block's ~460. */
INLINE const uint8_t *act_quad_at(const act_block *a, const int u) { return (const uint8_t *)a->q + 4 * u; }
#if defined(__AVX512VNNI__) && defined(__AVX512VL__) && !defined(TANDEM_VNNI_SIMDE)
typedef int32_t __attribute__((may_alias)) act_word;  /* the asm's memory operand; q sits 16-byte aligned */
INLINE __m256i add_quad_products(__m256i acc, __m256i q, const act_block *a, const int u) {
    __asm__("vpdpbusd %2%{1to8%}, %1, %0" : "+v"(acc) : "v"(q), "m"(*(const act_word *)act_quad_at(a, u)));
    return acc;
}
#else
INLINE __m256i add_quad_products(__m256i acc, __m256i q, const act_block *a, const int u) {
    return DPBUSD(acc, q, _mm256_set1_epi32((int)load_u32(act_quad_at(a, u))));
}
#endif

/* vpdpbusd's result waits ~4 cycles for the previous one into the same accumulator, so a token's sum over a
 * block is a chain of 8 of them. Streaming from memory, the out-of-order window then fills with waiting
 * products instead of reaching the next loads: with few tokens the units go round-robin to CHAINS(NT)
 * accumulators, added at the end. The sums are exact integers, so the order changes no bit. 8B decoding got
 * faster for it; Q6_K's two half sums already make two chains, and splitting them further was slower from L2
 * (bench/README.md, "A Zen 4 host with AVX-512 VNNI"). */
#define CHAINS(NT) ((NT) == 1 ? 4 : (NT) == 2 ? 2 : 1)
enum { MAX_CHAINS = 4 };

/* Every chain's sums of NT tokens set to zero (the unused chains' zeros are dead stores gcc drops; a bound of
 * CHAINS(NT) would not take the unroll pragma). */
INLINE void clear_chains(__m256i sum[][MATMUL_TOKENS], const int NT) {
    _Pragma("GCC unroll 4") for (int c = 0; c < MAX_CHAINS; c++)
        FOR_TOKENS (int t = 0; t < NT; t++) sum[c][t] = _mm256_setzero_si256();
}

/* sum[0][t] += sum[c][t] for the other chains (exact). */
INLINE void fold_chains(__m256i sum[][MATMUL_TOKENS], const int NT) {
    _Pragma("GCC unroll 4") for (int c = 1; c < MAX_CHAINS; c++)
        if (c < CHAINS(NT)) FOR_TOKENS (int t = 0; t < NT; t++) sum[0][t] = _mm256_add_epi32(sum[0][t], sum[c][t]);
}

/* Q8_0: signed weights. Flipping their top bit makes them w + 128 (0…255), unsigned as vpdpbusd wants them;
 * the surplus 128·Σx̂ of the block (its two half sums) is subtracted up front. */
INLINE void dot_q8_0_packed_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out,
                               const int NT) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    __m256 acc[MATMUL_TOKENS];
    FOR_TOKENS (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < cols / 32; b++, w += 8 * 34) {
        prefetch_ahead(w, 8 * 34, NT);
        const __m256 scales = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w));
        __m256i sum[MAX_CHAINS][MATMUL_TOKENS];
        clear_chains(sum, NT);
        FOR_TOKENS (int t = 0; t < NT; t++) {
            const act_block *a = &x[t * xs + b];
            sum[0][t] = _mm256_set1_epi32(-128 * (a->sum16[0] + a->sum16[1]));
        }
        _Pragma("GCC unroll 8") for (int u = 0; u < 8; u++) {
            const __m256i q = _mm256_xor_si256(load256(w + 16 + 32 * u), flip);
            __m256i *s = sum[u % CHAINS(NT)];
            FOR_TOKENS (int t = 0; t < NT; t++) s[t] = add_quad_products(s[t], q, &x[t * xs + b], u);
        }
        fold_chains(sum, NT);
        FOR_TOKENS (int t = 0; t < NT; t++)
            acc[t] = add_int_sums(acc[t], sum[0][t], scales, &x[t * xs + b]);
    }
    FOR_TOKENS (int t = 0; t < NT; t++) _mm256_storeu_ps(out + 8 * t, acc[t]);
}

/* Q4_0: the nibbles 0…15 go in as they are; the −8 offset is −8·d_i·(dx·Σx̂) per block, as in avx2.c. */
INLINE void dot_q4_0_packed_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out,
                               const int NT) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[MATMUL_TOKENS];
    FOR_TOKENS (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < cols / 32; b++, w += 8 * 18) {
        prefetch_ahead(w, 8 * 18, NT);
        const __m256 scales = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w));
        __m256i sum[MAX_CHAINS][MATMUL_TOKENS];
        clear_chains(sum, NT);
        _Pragma("GCC unroll 4") for (int u = 0; u < 4; u++) {
            const __m256i raw = load256(w + 16 + 32 * u);
            const __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            /* the 8 products in the order u, 4 + u, so that chain c takes every CHAINS(NT)-th of them */
            __m256i *s_lo = sum[(2 * u) % CHAINS(NT)], *s_hi = sum[(2 * u + 1) % CHAINS(NT)];
            FOR_TOKENS (int t = 0; t < NT; t++) {
                const act_block *a = &x[t * xs + b];
                s_lo[t] = add_quad_products(s_lo[t], lo, a, u);
                s_hi[t] = add_quad_products(s_hi[t], hi, a, 4 + u);
            }
        }
        fold_chains(sum, NT);
        FOR_TOKENS (int t = 0; t < NT; t++) {
            const act_block *a = &x[t * xs + b];
            acc[t] = add_int_sums(acc[t], sum[0][t], scales, a);
            acc[t] = _mm256_fmadd_ps(scales, _mm256_set1_ps(-8.0f * a->s), acc[t]);
        }
    }
    FOR_TOKENS (int t = 0; t < NT; t++) _mm256_storeu_ps(out + 8 * t, acc[t]);
}
ROW_DOT_ACT(dot_q8_0_packed, dot_q8_0_packed_nt)
ROW_DOT_ACT(dot_q4_0_packed, dot_q4_0_packed_nt)

/* Q4_K's unit u of chunk c as k4_unit_quants gives it, except that the high nibbles stay in place (16·q): a
 * mask instead of a shift per unit, the chunk's sum divided by 16 once (exact). avx2.c cannot: vpmaddubsw's int16
 * pair sums would saturate at 16·q. */
INLINE void q4_K_unit_in_place(const uint8_t *w, const int c, const int u, __m256i *lo, __m256i *hi16) {
    const __m256i raw = load256(k4_unit_at(w, c, u, false)), m4 = _mm256_set1_epi8(0x0F);
    *lo = _mm256_and_si256(raw, m4);
    *hi16 = _mm256_andnot_si256(m4, raw);
}

/* Q4_K and Q5_K (avx2.c's layout notes): chunk c holds sub-blocks 2c (low nibbles) and 2c+1 (high). Each
 * sub-block's int32 sum is multiplied by its 6-bit scale (as int32 in each row's lane) once, after its 8 units. */
INLINE void k4_chunk_packed_nt(const uint8_t *w, const act_block *x, int64_t xs, __m256i sc, __m256i mn, __m256 dmin,
                               __m256i *isum, __m256 *acc, const int NT, const int c, const bool FIVE) {
    const int b = 2 * (c % 2);  /* sub-blocks 2c and 2c+1: bytes b and b+1 of the scale words */
    const __m256i sc_lo = lane_byte_int32(sc, b), sc_hi = lane_byte_int32(sc, b + 1);
    const k4_chunk_mins mins = k4_chunk_mins_of(mn, dmin, c);
    __m256i sum_lo[MAX_CHAINS][MATMUL_TOKENS], sum_hi[MAX_CHAINS][MATMUL_TOKENS];
    clear_chains(sum_lo, NT);
    clear_chains(sum_hi, NT);
    _Pragma("GCC unroll 8") for (int u = 0; u < 8; u++) {
        __m256i lo, hi;
        if (FIVE) k4_unit_quants(w, c, u, true, &lo, &hi);
        else q4_K_unit_in_place(w, c, u, &lo, &hi);
        __m256i *s_lo = sum_lo[u % CHAINS(NT)], *s_hi = sum_hi[u % CHAINS(NT)];
        FOR_TOKENS (int t = 0; t < NT; t++) {
            const act_block *a = &x[t * xs + 2 * c];
            s_lo[t] = add_quad_products(s_lo[t], lo, a, u);
            s_hi[t] = add_quad_products(s_hi[t], hi, a + 1, u);
        }
    }
    fold_chains(sum_lo, NT);
    fold_chains(sum_hi, NT);
    FOR_TOKENS (int t = 0; t < NT; t++) {
        const act_block *a = &x[t * xs + 2 * c];
        /* exact: |16·q·x| ≤ 240·128 and 32 of them fit int32 with room to spare */
        if (!FIVE) sum_hi[0][t] = _mm256_srai_epi32(sum_hi[0][t], 4);
        isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(_mm256_mullo_epi32(sum_lo[0][t], sc_lo),
                                                             _mm256_mullo_epi32(sum_hi[0][t], sc_hi)));
        acc[t] = k4_sub_mins(acc[t], mins, a);
    }
}

/* Q6_K (avx2.c's layout notes): activation block k of half h. Columns 0–15 (units 0–3) and 16–31 (units 4–7)
 * have a signed 8-bit scale each, moved into the top byte of each row's int32 lane and shifted down
 * arithmetically; the −32 offset is subtracted as in avx2.c, scales·32 against the block's two half sums. */
INLINE void q6_K_block_nt(const uint8_t *w, const act_block *x, int64_t xs, __m256i *isum, const int NT, const int h,
                          const int k) {
    const __m256i scu = load256(w + 1536 + (2 * h + k / 2) * 32);
    const int b0 = 2 * (k % 2);  /* the block's two scales: bytes b0, b0+1 of each row's scale word */
    const __m256i sc0 = _mm256_srai_epi32(_mm256_shuffle_epi8(scu, lane_mask(0x00808080u, b0)), 24);
    const __m256i sc1 = _mm256_srai_epi32(_mm256_shuffle_epi8(scu, lane_mask(0x00808080u, b0 + 1)), 24);
    const __m256i hi0 = lane_byte_high_pairs(scu, b0), hi1 = lane_byte_high_pairs(scu, b0 + 1);  /* scale · 256 */
    const __m256i sc_halves = _mm256_srai_epi16(_mm256_blend_epi16(hi0, hi1, 0xAA), 3);      /* (32·sc0, 32·sc1) */
    const uint8_t *ql = w + (16 * h + 8 * (k % 2)) * 32, *qh = w + 1024 + 8 * h * 32;
    __m256i s0[MATMUL_TOKENS], s1[MATMUL_TOKENS];
    FOR_TOKENS (int t = 0; t < NT; t++) s0[t] = s1[t] = _mm256_setzero_si256();
    _Pragma("GCC unroll 8") for (int u = 0; u < 8; u++) {
        const __m256i q = q6_values(ql + 32 * u, qh + 32 * u, k);
        FOR_TOKENS (int t = 0; t < NT; t++) {
            if (u < 4) s0[t] = add_quad_products(s0[t], q, &x[t * xs + k], u);
            else s1[t] = add_quad_products(s1[t], q, &x[t * xs + k], u);
        }
    }
    FOR_TOKENS (int t = 0; t < NT; t++) {
        int32_t half_sums;
        memcpy(&half_sums, x[t * xs + k].sum16, 4);
        const __m256i scaled = _mm256_add_epi32(_mm256_mullo_epi32(s0[t], sc0), _mm256_mullo_epi32(s1[t], sc1));
        isum[t] = _mm256_add_epi32(isum[t], _mm256_sub_epi32(scaled, _mm256_madd_epi16(sc_halves, _mm256_set1_epi32(half_sums))));
    }
}

#include "packed_k_drivers.h"

void VNNI_FILL(kernel_isa *isa) {
    kernel_isa_fill_avx2(isa);
    isa->name = VNNI_ISA_NAME;
    isa->dot_packed[TANDEM_TYPE_Q8_0] = dot_q8_0_packed;
    isa->dot_packed[TANDEM_TYPE_Q4_0] = dot_q4_0_packed;
    isa->dot_packed[TANDEM_TYPE_Q4_K] = dot_q4_K_packed;
    isa->dot_packed[TANDEM_TYPE_Q5_K] = dot_q5_K_packed;
    isa->dot_packed[TANDEM_TYPE_Q6_K] = dot_q6_K_packed;
}
