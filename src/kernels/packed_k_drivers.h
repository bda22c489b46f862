/* packed_k_drivers.h — the super-block loops of the packed Q4_K/Q5_K/Q6_K products, shared by avx2.c and vnni.c:
 * included after each defines its own k4_chunk_packed_nt and q6_K_block_nt (the multiplies differ, the walk does not). */
#ifndef TANDEM_PACKED_K_DRIVERS_H
#define TANDEM_PACKED_K_DRIVERS_H

INLINE void dot_k4_packed_nt(const uint8_t *w, const act_block *x, int64_t xs, int64_t cols, float *out,
                             const int NT, const bool FIVE) {
    __m256 acc[MATMUL_TOKENS];
    FOR_TOKENS (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < cols / 256; sb++, w += 8 * (FIVE ? 176 : 144)) {
        const k4_packed_head h = k4_packed_head_load(w);
        const act_block *a = x + 8 * sb;
        __m256i isum[MATMUL_TOKENS];
        FOR_TOKENS (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();
        k4_chunk_packed_nt(w, a, xs, h.sc_lo, h.mn_lo, h.dmin, isum, acc, NT, 0, FIVE);
        k4_chunk_packed_nt(w, a, xs, h.sc_lo, h.mn_lo, h.dmin, isum, acc, NT, 1, FIVE);
        k4_chunk_packed_nt(w, a, xs, h.sc_hi, h.mn_hi, h.dmin, isum, acc, NT, 2, FIVE);
        k4_chunk_packed_nt(w, a, xs, h.sc_hi, h.mn_hi, h.dmin, isum, acc, NT, 3, FIVE);
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
    for (int64_t sb = 0; sb < cols / 256; sb++, w += 8 * 210) {
        const act_block *a = x + 8 * sb;
        /* the whole group at once: spread over its 8 blocks, the same prefetches gave 22-25 GB/s from memory on
         * 2 threads, not 28-32 */
        prefetch_ahead(w, 8 * 210);
        __m256i isum[MATMUL_TOKENS];
        FOR_TOKENS (int t = 0; t < NT; t++) isum[t] = _mm256_setzero_si256();
        q6_K_block_nt(w, a, xs, isum, NT, 0, 0);
        q6_K_block_nt(w, a, xs, isum, NT, 0, 1);
        q6_K_block_nt(w, a, xs, isum, NT, 0, 2);
        q6_K_block_nt(w, a, xs, isum, NT, 0, 3);
        q6_K_block_nt(w, a + 4, xs, isum, NT, 1, 0);
        q6_K_block_nt(w, a + 4, xs, isum, NT, 1, 1);
        q6_K_block_nt(w, a + 4, xs, isum, NT, 1, 2);
        q6_K_block_nt(w, a + 4, xs, isum, NT, 1, 3);
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 1664)));
        FOR_TOKENS (int t = 0; t < NT; t++)
            acc[t] = add_int_sums(acc[t], isum[t], d, &a[t * xs]);
    }
    FOR_TOKENS (int t = 0; t < NT; t++) _mm256_storeu_ps(out + 8 * t, acc[t]);
}
ROW_DOT_ACT(dot_q4_K_packed)
ROW_DOT_ACT(dot_q5_K_packed)
ROW_DOT_ACT(dot_q6_K_packed)

#endif
