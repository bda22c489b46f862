/* packed_k_drivers.h — the super-block walks and prefetches of the packed Q4_K/Q5_K/Q6_K products, shared by the
 * kernel files whose multiplies differ: avx2.c and vnni.c (vnni.c built for AVX-512 VNNI, AVX-VNNI and SIMDe). */
#ifndef TANDEM_PACKED_K_DRIVERS_H
#define TANDEM_PACKED_K_DRIVERS_H

/* What the includer provides. This header is an inline part of its includer, not a header of its own: include it
 * once, after avx2_inline.h (INLINE, FOR_TOKENS, MATMUL_TOKENS, prefetch_ahead, k4_packed_head_load, add_int_sums,
 * ROW_DOT_ACT) and after defining these two functions, with the includer's instructions for the multiplies:
 *
 *   INLINE void k4_chunk_packed_nt(const uint8_t *w, const act_block *x, int64_t xs, __m256i sc, __m256i mn,
 *                                  __m256 dmin, __m256i *isum, __m256 *acc, const int NT, const int c,
 *                                  const bool FIVE);
 *       Chunk c (0…3) of the packed Q4_K (FIVE false) or Q5_K (FIVE true) super-block of 8 rows at w: for each
 *       token t < NT (activation blocks x[t·xs + 2c] and the next), adds sub-blocks 2c and 2c + 1's integer sums
 *       times their 6-bit scales to isum[t] and subtracts their mins, dmin·min·(dx·Σq̂), from acc[t]. The scales
 *       and mins are bytes 2(c mod 2) and 2(c mod 2) + 1 of each row's lane of sc and mn (k4_packed_head's lo
 *       words for c < 2, hi for c ≥ 2). c, NT and FIVE are compile-time constants.
 *   INLINE void q6_K_block_nt(const uint8_t *w, const act_block *x, int64_t xs, __m256i *isum, const int NT,
 *                             const int h, const int k);
 *       Activation block k (0…3) of half h (0…1) of the packed Q6_K super-block of 8 rows at w, x the half's
 *       first block: for each token t < NT adds Σ scale·(q − 32)·q̂ over the block's 32 columns to isum[t].
 *
 * It defines the includer's packed K-quant entry points, dot_q4_K_packed, dot_q5_K_packed and dot_q6_K_packed
 * (ROW_DOT_ACT, at the end), which the includer puts in its kernel_isa table.
 *
 * The drivers own the K-quants' prefetching (prefetch_ahead): a group of 8 rows' super-blocks is asked for in
 * batches of 420-704 bytes, before every second Q6_K block and every second Q4_K/Q5_K chunk. The batch size is a
 * measured choice, not a derived one, and differs per CPU: the whole group at once, one block or one chunk were
 * each slower on the Zen 4 host (bench/README.md, "K-quant prefetch batches, embedded broadcasts"). */

/* One row's super-block: Q4_K's or Q5_K's (FIVE), Q6_K's; a packed group holds 8 of them. */
INLINE int k4_block_bytes(const bool FIVE) { return FIVE ? 176 : 144; }
enum { Q6_K_BLOCK_BYTES = 210 };

/* Chunks c and c + 1 (sub-blocks 2c … 2c + 3, their scales and mins in sc and mn), their half of the group asked for
 * first. */
INLINE void k4_chunk_pair_nt(const uint8_t *w, const act_block *x, int64_t xs, __m256i sc, __m256i mn, __m256 dmin,
                             __m256i *isum, __m256 *acc, const int NT, const int c, const bool FIVE) {
    prefetch_ahead(w + 2 * c * k4_block_bytes(FIVE), 4 * k4_block_bytes(FIVE), NT);
    k4_chunk_packed_nt(w, x, xs, sc, mn, dmin, isum, acc, NT, c, FIVE);
    k4_chunk_packed_nt(w, x, xs, sc, mn, dmin, isum, acc, NT, c + 1, FIVE);
}

/* Blocks k and k + 1 of half h (activation blocks x[k], x[k + 1]), their quarter of the group asked for first. */
INLINE void q6_K_block_pair_nt(const uint8_t *w, const act_block *x, int64_t xs, __m256i *isum, const int NT,
                               const int h, const int k) {
    prefetch_ahead(w + (4 * h + k) * Q6_K_BLOCK_BYTES, 2 * Q6_K_BLOCK_BYTES, NT);
    q6_K_block_nt(w, x, xs, isum, NT, h, k);
    q6_K_block_nt(w, x, xs, isum, NT, h, k + 1);
}

INLINE void dot_k4_packed_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out,
                             const int NT, const bool FIVE) {
    __m256 acc[MATMUL_TOKENS];
    FOR_TOKENS (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < cols / 256; sb++, w += 8 * k4_block_bytes(FIVE)) {
        const k4_packed_head h = k4_packed_head_load(w);
        const act_block *a = x + 8 * sb;
        __m256i isum[MATMUL_TOKENS];
        FOR_TOKENS (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();
        k4_chunk_pair_nt(w, a, xs, h.sc_lo, h.mn_lo, h.dmin, isum, acc, NT, 0, FIVE);
        k4_chunk_pair_nt(w, a, xs, h.sc_hi, h.mn_hi, h.dmin, isum, acc, NT, 2, FIVE);
        FOR_TOKENS (int t = 0; t < NT; t++)
            acc[t] = add_int_sums(acc[t], isum[t], h.d, &a[t * xs]);
    }
    FOR_TOKENS (int t = 0; t < NT; t++) _mm256_storeu_ps(out + 8 * t, acc[t]);
}
INLINE void dot_q4_K_packed_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out,
                               const int NT) {
    dot_k4_packed_nt(w, x, xs, cols, out, NT, false);
}
INLINE void dot_q5_K_packed_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out,
                               const int NT) {
    dot_k4_packed_nt(w, x, xs, cols, out, NT, true);
}

INLINE void dot_q6_K_packed_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out,
                               const int NT) {
    __m256 acc[MATMUL_TOKENS];
    FOR_TOKENS (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < cols / 256; sb++, w += 8 * Q6_K_BLOCK_BYTES) {
        const act_block *a = x + 8 * sb;
        __m256i isum[MATMUL_TOKENS];
        FOR_TOKENS (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();
        q6_K_block_pair_nt(w, a, xs, isum, NT, 0, 0);
        q6_K_block_pair_nt(w, a, xs, isum, NT, 0, 2);
        q6_K_block_pair_nt(w, a + 4, xs, isum, NT, 1, 0);
        q6_K_block_pair_nt(w, a + 4, xs, isum, NT, 1, 2);
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 1664)));
        FOR_TOKENS (int t = 0; t < NT; t++)
            acc[t] = add_int_sums(acc[t], isum[t], d, &a[t * xs]);
    }
    FOR_TOKENS (int t = 0; t < NT; t++) _mm256_storeu_ps(out + 8 * t, acc[t]);
}
ROW_DOT_ACT(dot_q4_K_packed, dot_q4_K_packed_nt)
ROW_DOT_ACT(dot_q5_K_packed, dot_q5_K_packed_nt)
ROW_DOT_ACT(dot_q6_K_packed, dot_q6_K_packed_nt)

#endif
