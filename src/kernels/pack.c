/* pack.c — the packed weight layout: PACK_ROWS rows of a matrix interleaved block by block, so that one
 * vector holds the same 4 columns of 8 rows; and reading a row back from either layout.
 *
 * A packed matrix is a sequence of groups of 8 rows, 8·row_bytes each (the plain layout's size), made of
 * the 8 rows' blocks in column order. Within a group's block every field of the type's block (scales,
 * quants, …) is interleaved across the 8 rows in units of 2 or 4 bytes: unit u of row i of a field at
 * plain offset F sits at 8·F + (8u + i)·unit. A 32-byte vector of quant units thus holds columns
 * 4u…4u+3 of all 8 rows: multiplied by the activations' 4 bytes repeated 8 times, its lanes are the 8
 * rows' partial sums, with no horizontal sums, and one scale vector serves 8 rows. Float types (F32, F16,
 * BF16) are blocks of one element: a group is its 8 rows' columns one after the other, 8 elements each. */
#include <stdlib.h>

#include "kernels_isa.h"

typedef struct block_field {
    int offset;  /* in the plain block; the field runs to the next field's offset or the block's end */
    int unit;    /* bytes per interleaved unit: 2 (f16 scales) or 4 */
} block_field;

typedef struct packed_type {
    tandem_type type;
    int block_bytes, n_fields;
    block_field fields[5];
} packed_type;

static const packed_type PACKED_TYPES[] = {
    {TANDEM_TYPE_F32, 4, 1, {{0, 4}}},   /* a block is one element: column k of 8 rows is 8 consecutive values */
    {TANDEM_TYPE_F16, 2, 1, {{0, 2}}},
    {TANDEM_TYPE_BF16, 2, 1, {{0, 2}}},
    {TANDEM_TYPE_Q8_0, 34, 2, {{0, 2}, {2, 4}}},                     /* d, qs[32] */
    {TANDEM_TYPE_Q4_0, 18, 2, {{0, 2}, {2, 4}}},                     /* d, qs[16] */
    {TANDEM_TYPE_Q4_K, 144, 4, {{0, 2}, {2, 2}, {4, 4}, {16, 4}}},   /* d, dmin, scales[12], qs[128] */
    {TANDEM_TYPE_Q5_K, 176, 5, {{0, 2}, {2, 2}, {4, 4}, {16, 4}, {48, 4}}},  /* d, dmin, scales[12], qh[32], qs[128] */
    {TANDEM_TYPE_Q6_K, 210, 4, {{0, 4}, {128, 4}, {192, 4}, {208, 2}}},  /* ql[128], qh[64], scales[16], d */
};

static const packed_type *packed_type_of(tandem_type t) {
    for (size_t i = 0; i < sizeof PACKED_TYPES / sizeof PACKED_TYPES[0]; i++)
        if (PACKED_TYPES[i].type == t) return &PACKED_TYPES[i];
    return NULL;
}

/* Copies one block from the plain layout to row i's place in a packed group block (to_group), or back. The
 * copies have a constant size so that they compile to single moves (packing an 8B model moves 4.6 GB). */
static void move_block(const packed_type *p, int i, const uint8_t *from, uint8_t *to, bool to_group) {
    for (int f = 0; f < p->n_fields; f++) {
        const int off = p->fields[f].offset, unit = p->fields[f].unit;
        const int end = f + 1 < p->n_fields ? p->fields[f + 1].offset : p->block_bytes;
        for (int u = 0; u < (end - off) / unit; u++) {
            const size_t in_group = (size_t)(8 * off + (8 * u + i) * unit), in_plain = (size_t)(off + u * unit);
            uint8_t *dst = to + (to_group ? in_group : in_plain);
            const uint8_t *src = from + (to_group ? in_plain : in_group);
            if (unit == 4) memcpy(dst, src, 4);
            else memcpy(dst, src, 2);
        }
    }
}

/* Row i's elements of a float type (a block is one element) moved as move_block does, each copy one move
 * (elem_bytes a constant): per element, move_block's walk over the field table cost more than the copy. */
static inline __attribute__((always_inline)) void move_elements(int i, const uint8_t *from, uint8_t *to, int64_t n,
                                                                bool to_group, const int elem_bytes) {
    for (int64_t k = 0; k < n; k++) {
        const size_t in_group = (size_t)(PACK_ROWS * k + i) * elem_bytes, in_plain = (size_t)k * elem_bytes;
        memcpy(to + (to_group ? in_group : in_plain), from + (to_group ? in_plain : in_group), (size_t)elem_bytes);
    }
}

/* move_block for n consecutive blocks of row i: from the plain row to the group (to_group), or back. */
static inline __attribute__((always_inline)) void move_blocks(const packed_type *p, int i, const uint8_t *from, uint8_t *to,
                                                              int64_t n, bool to_group) {
    if (p->n_fields == 1 && p->fields[0].unit == p->block_bytes) {  /* a float type */
        if (p->block_bytes == 4) move_elements(i, from, to, n, to_group, 4);
        else move_elements(i, from, to, n, to_group, 2);
        return;
    }
    const size_t plain_step = (size_t)p->block_bytes, group_step = PACK_ROWS * plain_step;
    for (int64_t b = 0; b < n; b++)
        move_block(p, i, from + b * (to_group ? plain_step : group_step), to + b * (to_group ? group_step : plain_step),
                   to_group);
}

typedef struct pack_job {
    const packed_type *type;
    const weight_matrix *w;
    uint8_t *dst;
    int64_t groups_per_task;
} pack_job;

static void pack_task(int task, int thread, void *arg) {
    const pack_job *job = arg;
    const weight_matrix *w = job->w;
    const int64_t blocks = w->cols / tandem_type_block_size(w->type), n_groups = w->rows / PACK_ROWS;
    const int64_t g1 = (task + 1) * job->groups_per_task < n_groups ? (task + 1) * job->groups_per_task : n_groups;
    for (int64_t g = task * job->groups_per_task; g < g1; g++) {
        const uint8_t *rows = (const uint8_t *)w->data + (size_t)g * PACK_ROWS * w->row_bytes;
        uint8_t *group = job->dst + (size_t)g * PACK_ROWS * w->row_bytes;
        for (int i = 0; i < PACK_ROWS; i++) move_blocks(job->type, i, rows + i * w->row_bytes, group, blocks, true);
    }
}

size_t weight_packed_bytes(const weight_matrix *w) {
    const packed_type *p = packed_type_of(w->type);
    const kernel_isa *isa = kernel_isa_current();
    if (!p || w->packed || w->rows % PACK_ROWS || !(isa->dot_packed[w->type] || isa->dot_packed_float[w->type]))
        return 0;
    return w->row_bytes * (size_t)w->rows;
}

void weight_pack_into(thread_pool *pool, weight_matrix *w, uint8_t *dst) {
    TANDEM_ASSERT(weight_packed_bytes(w) > 0 && (uintptr_t)dst % 64 == 0);
    const int64_t n_groups = w->rows / PACK_ROWS, per_task = n_groups < 64 ? n_groups : 64;
    pack_job job = {packed_type_of(w->type), w, dst, per_task};
    thread_pool_run(pool, (int)((n_groups + per_task - 1) / per_task), pack_task, &job);
    w->data = dst;
    w->packed = true;
}

tandem_status weight_pack(thread_pool *pool, weight_matrix *w, void **buffer) {
    *buffer = NULL;
    const size_t bytes = weight_packed_bytes(w);
    if (!bytes) return TANDEM_OK;
    uint8_t *dst = streamed_alloc(bytes);
    if (!dst)
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory packing a %lld x %lld %s matrix", (long long)w->rows,
                           (long long)w->cols, tandem_type_name(w->type));
    weight_pack_into(pool, w, dst);
    *buffer = dst;
    return TANDEM_OK;
}

void weight_row_dequantize(const weight_matrix *w, int64_t r, float *dst) {
    if (!w->packed) {
        dequantize_row(w->type, (const uint8_t *)w->data + (size_t)r * w->row_bytes, dst, w->cols);
        return;
    }
    const packed_type *p = packed_type_of(w->type);
    const int64_t block_elems = tandem_type_block_size(w->type);
    const uint8_t *group = (const uint8_t *)w->data + (size_t)(r / PACK_ROWS) * PACK_ROWS * w->row_bytes;
    /* a run of blocks in the plain layout (the largest packed block is 210 bytes; a float one is 2 or 4) */
    uint8_t plain[1024];
    const int64_t n_blocks = w->cols / block_elems, run = (int64_t)sizeof plain / p->block_bytes;
    for (int64_t b0 = 0; b0 < n_blocks; b0 += run) {
        const int64_t nb = n_blocks - b0 < run ? n_blocks - b0 : run;
        move_blocks(p, (int)(r % PACK_ROWS), group + (size_t)b0 * PACK_ROWS * p->block_bytes, plain, nb, false);
        dequantize_row(w->type, plain, dst + block_elems * b0, block_elems * nb);
    }
}
