/* pack.c — the packed weight layout: PACK_ROWS rows of a Q8_0 or Q4_0 matrix interleaved block by block,
 * so that one vector holds the same 4 columns of 8 rows; and reading a row back from either layout.
 *
 * A packed matrix is a sequence of groups of 8 rows (8·row_bytes each, the plain layout's size). Group
 * block b holds the 8 rows' block b: their f16 scales (16 bytes), then their quants in 4-byte units, unit u
 * of row i at byte 16 + (8u + i)·4. Q8_0 has 8 units (32 signed bytes); Q4_0 has 4 (16 bytes of nibble
 * pairs: low nibble element k, high nibble k + 16). Multiplied against an activation's 4 bytes repeated 8
 * times, a 32-byte vector of units gives the 8 rows' partial sums in its lanes: no horizontal sums, and one
 * scale vector serves 8 rows. */
#include <stdlib.h>

#include "kernels_isa.h"

/* 4-byte quant units per block, 0 for types without a packed layout. */
static int quant_units(tandem_type t) {
    return t == TANDEM_TYPE_Q8_0 ? 8 : t == TANDEM_TYPE_Q4_0 ? 4 : 0;
}

tandem_status weight_pack(weight_matrix *w, void **buffer) {
    *buffer = NULL;
    const int units = quant_units(w->type);
    if (!units || w->packed || w->rows % PACK_ROWS || w->cols % 32 || !kernel_isa_current()->dot_packed[w->type])
        return TANDEM_OK;
    const size_t bytes = w->row_bytes * (size_t)w->rows, block = 2 + 4 * (size_t)units;
    uint8_t *dst = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!dst)
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory packing a %lld x %lld %s matrix", (long long)w->rows,
                           (long long)w->cols, tandem_type_name(w->type));
    const uint8_t *src = w->data;
    const int64_t blocks = w->cols / 32;
    for (int64_t g = 0; g < w->rows / PACK_ROWS; g++) {
        for (int64_t b = 0; b < blocks; b++) {
            uint8_t *o = dst + (size_t)g * PACK_ROWS * w->row_bytes + (size_t)b * PACK_ROWS * block;
            for (int i = 0; i < PACK_ROWS; i++) {
                const uint8_t *s = src + (size_t)(g * PACK_ROWS + i) * w->row_bytes + (size_t)b * block;
                memcpy(o + 2 * i, s, 2);
                for (int u = 0; u < units; u++) memcpy(o + 16 + (8 * u + i) * 4, s + 2 + 4 * u, 4);
            }
        }
    }
    w->data = dst;
    w->packed = true;
    *buffer = dst;
    return TANDEM_OK;
}

void weight_row_dequantize(const weight_matrix *w, int64_t r, float *dst) {
    if (!w->packed) {
        dequantize_row(w->type, (const uint8_t *)w->data + (size_t)r * w->row_bytes, dst, w->cols);
        return;
    }
    const int units = quant_units(w->type), i = (int)(r % PACK_ROWS);
    const size_t block = 2 + 4 * (size_t)units;
    const uint8_t *group = (const uint8_t *)w->data + (size_t)(r / PACK_ROWS) * PACK_ROWS * w->row_bytes;
    uint8_t plain[34];  /* one block in the plain layout */
    for (int64_t b = 0; b < w->cols / 32; b++) {
        const uint8_t *o = group + (size_t)b * PACK_ROWS * block;
        memcpy(plain, o + 2 * i, 2);
        for (int u = 0; u < units; u++) memcpy(plain + 2 + 4 * u, o + 16 + (8 * u + i) * 4, 4);
        dequantize_row(w->type, plain, dst + 32 * b, 32);
    }
}
