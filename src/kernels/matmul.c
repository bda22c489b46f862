/* matmul.c — y = x·Wᵀ for every weight type, output rows split over the thread pool, x made (RMSNorm, SwiGLU) and
 * quantized a token per task. Picks per type the integer path, the float SIMD path, or the exact scalar reference. */
#include "kernels_isa.h"

/* Packed float passes of up to this many tokens go 4 tokens at a time through group products (the task's rows
 * re-read from L2 per 4 tokens), longer ones through the GEMM; both give the same bits. Where one overtakes
 * the other was measured on the 0.6B output head (bench/README.md, "Packed float weights"). */
enum { PACKED_FLOAT_GROUP_TOKENS = 8 };

typedef enum matmul_path {
    PATH_ACT,      /* integer dot products against act blocks (quantized weight types) */
    PATH_PACKED,   /* the same, 8 rows at a time from pack.c's layout */
    PATH_FLOAT,    /* SIMD float dot products (F32/F16/BF16) */
    PATH_PACKED_FLOAT, /* the same, 8 rows at a time from pack.c's layout */
    PATH_EXACT,    /* reference: dot_row per token, or a row dequantized once for many tokens */
} matmul_path;

/* One of the matrices a call multiplies: its output, its path, and its share of the tasks. */
typedef struct matmul_part {
    float *y;
    const weight_matrix *w;
    matmul_path path;
    int64_t task_rows;
    int first_task;  /* tasks first_task … of the next part's first_task − 1 are this matrix's */
} matmul_part;

typedef struct matmul_job {
    const float *x;
    int n_tokens;
    const matmul_scratch *scratch;
    const kernel_isa *isa;
    int n_parts;
    matmul_part parts[MATMUL_MAX_PARTS];
} matmul_job;

/* Tokens go in groups of MATMUL_TOKENS (the group's activations stay in L1) over all rows of a task (the
 * task's weight rows stay in L2), so a row is unpacked once per group rather than once per token. */
/* A group product's out[t·PACK_ROWS + i] (t < nt) into y's rows r … r + 7 of tokens t0 … t0 + nt − 1. */
static void store_group(float *y, int64_t rows, int64_t r, int t0, int nt, const float *group_out) {
    for (int t = 0; t < nt; t++)
        memcpy(y + (size_t)(t0 + t) * rows + r, group_out + t * PACK_ROWS, sizeof(float) * PACK_ROWS);
}

static void matmul_task(int task, int thread, void *arg) {
    const matmul_job *job = arg;
    int p = job->n_parts - 1;
    while (job->parts[p].first_task > task) p--;
    const matmul_part *part = &job->parts[p];
    const weight_matrix *w = part->w;
    float *y = part->y;
    const int64_t rows = w->rows, cols = w->cols;
    const int64_t r0 = (int64_t)(task - part->first_task) * part->task_rows;
    const int64_t r1 = r0 + part->task_rows < rows ? r0 + part->task_rows : rows;
    const uint8_t *base = w->data;
    const int n = job->n_tokens;
    float out[MATMUL_TOKENS];

    switch (part->path) {
    case PATH_ACT: {
        const row_dot_act_fn dot = job->isa->dot_act[w->type];
        const int64_t blocks = cols / 32;
        for (int t0 = 0; t0 < n; t0 += MATMUL_TOKENS) {
            const int nt = n - t0 < MATMUL_TOKENS ? n - t0 : MATMUL_TOKENS;
            for (int64_t r = r0; r < r1; r++) {
                dot(base + (size_t)r * w->row_bytes, job->scratch->act + (size_t)t0 * blocks, blocks, nt, cols, out);
                for (int t = 0; t < nt; t++) y[(size_t)(t0 + t) * rows + r] = out[t];
            }
        }
        return;
    }
    case PATH_PACKED: {  /* r0 and r1 are multiples of PACK_ROWS */
        const group_dot_act_fn dot = job->isa->dot_packed[w->type];
        const int64_t blocks = cols / 32;
        float group_out[MATMUL_TOKENS * PACK_ROWS];
        for (int t0 = 0; t0 < n; t0 += MATMUL_TOKENS) {
            const int nt = n - t0 < MATMUL_TOKENS ? n - t0 : MATMUL_TOKENS;
            for (int64_t r = r0; r < r1; r += PACK_ROWS) {
                dot(base + (size_t)r * w->row_bytes, job->scratch->act + (size_t)t0 * blocks, blocks, nt, cols,
                    group_out);
                store_group(y, rows, r, t0, nt, group_out);
            }
        }
        return;
    }
    case PATH_FLOAT: {
        const rows_gemm_float_fn gemm = job->isa->gemm_float[w->type];
        if (gemm && n >= FLOAT_GEMM_MIN_TOKENS) {  /* a prompt: the rows converted once, as panels */
            for (int64_t r = r0; r < r1; r += FLOAT_GEMM_ROWS) {
                const int n_rows = r1 - r < FLOAT_GEMM_ROWS ? (int)(r1 - r) : FLOAT_GEMM_ROWS;
                gemm(base + (size_t)r * w->row_bytes, w->row_bytes, n_rows, job->x, cols, n, cols, y + r, rows);
            }
            return;
        }
        const row_dot_float_fn dot = job->isa->dot_float[w->type];
        float tile_out[MATMUL_TOKENS * FLOAT_TILE_ROWS];
        const int group = n > MATMUL_TOKENS ? FLOAT_PREFILL_TOKENS : MATMUL_TOKENS;  /* decode: weights read once */
        for (int t0 = 0; t0 < n; t0 += group) {
            const int nt = n - t0 < group ? n - t0 : group;
            for (int64_t r = r0; r < r1;) {
                const int left = r1 - r < FLOAT_TILE_ROWS ? (int)(r1 - r) : FLOAT_TILE_ROWS;
                const int done = dot(base + (size_t)r * w->row_bytes, w->row_bytes, left, job->x + (size_t)t0 * cols,
                                     cols, nt, cols, tile_out);
                for (int t = 0; t < nt; t++)
                    for (int i = 0; i < done; i++) y[(size_t)(t0 + t) * rows + r + i] = tile_out[t * FLOAT_TILE_ROWS + i];
                r += done;
            }
        }
        return;
    }
    case PATH_PACKED_FLOAT: {  /* r0 and r1 are multiples of PACK_ROWS */
        const float *x = job->x;
        if (n > PACKED_FLOAT_GROUP_TOKENS) {  /* every token tile through the task's rows, each element read once */
            job->isa->gemm_packed_float[w->type](base + (size_t)r0 * w->row_bytes, (int)(r1 - r0), x, cols, n, cols,
                                                 y + r0, rows);
            return;
        }
        const group_dot_float_fn dot = job->isa->dot_packed_float[w->type];
        float group_out[MATMUL_TOKENS * PACK_ROWS];
        for (int t0 = 0; t0 < n; t0 += MATMUL_TOKENS) {
            const int nt = n - t0 < MATMUL_TOKENS ? n - t0 : MATMUL_TOKENS;
            for (int64_t r = r0; r < r1; r += PACK_ROWS) {
                dot(base + (size_t)r * w->row_bytes, x + (size_t)t0 * cols, cols, nt, cols, group_out);
                store_group(y, rows, r, t0, nt, group_out);
            }
        }
        return;
    }
    case PATH_EXACT:
        break;
    }
    float *row = job->scratch->rows + (size_t)thread * cols;
    if (w->packed) {  /* the exact path on packed weights (the selected kernels changed after packing) */
        for (int64_t r = r0; r < r1; r++) {
            weight_row_dequantize(w, r, row);
            for (int t = 0; t < n; t++) y[(size_t)t * rows + r] = dot_f32(row, job->x + (size_t)t * cols, cols);
        }
        return;
    }
    if (n == 1 || w->type == TANDEM_TYPE_F32) {
        for (int64_t r = r0; r < r1; r++)
            for (int t = 0; t < n; t++)
                y[(size_t)t * rows + r] = dot_row(w->type, base + (size_t)r * w->row_bytes, job->x + (size_t)t * cols, cols);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        dequantize_row(w->type, base + (size_t)r * w->row_bytes, row, cols);
        for (int t = 0; t < n; t++) y[(size_t)t * rows + r] = dot_f32(row, job->x + (size_t)t * cols, cols);
    }
}

/* The element-wise step that makes a product's input, out (tokens, cols): RMSNorm(a) with weight b, or
 * SwiGLU silu(a) ⊙ b. */
typedef struct input_op {
    enum { INPUT_RMSNORM, INPUT_SWIGLU } kind;
    float *out;
    const float *a, *b;
    float eps;
} input_op;

/* A token per task: the step that makes its input (when the call has one), then its activations quantized (when
 * a path wants them), both on one core while the vector is in its L1. */
typedef struct input_job {
    const float *in;          /* the product's input (op->out when there is an op) */
    const input_op *op;       /* NULL: in is given */
    act_block *act;           /* NULL: no path wants quantized activations */
    int64_t cols;
    int scale_blocks;
    const kernel_isa *isa;
} input_job;

static void input_task(int task, int thread, void *arg) {
    const input_job *job = arg;
    const size_t at = (size_t)task * job->cols;
    const input_op *op = job->op;
    if (op && op->kind == INPUT_RMSNORM) rmsnorm_forward(op->out + at, op->a + at, op->b, (int)job->cols, op->eps);
    if (op && op->kind == INPUT_SWIGLU) swiglu_forward(op->out + at, op->a + at, op->b + at, (int)job->cols);
    if (job->act) job->isa->quantize_act(job->in + at, job->act + (size_t)task * (job->cols / 32), job->cols,
                                         job->scale_blocks);
}

static void matmul_input(thread_pool *pool, float *const *y, const float *in, const input_op *op,
                         const weight_matrix *const *w, int n_mats, int n_tokens, const matmul_scratch *scratch) {
    TANDEM_ASSERT(n_mats >= 1 && n_mats <= MATMUL_MAX_PARTS);
    /* Matrices whose kernels want activations grouped differently (a K-quant beside a Q8_0, as no Qwen3
     * file mixes them) are multiplied in two calls, each quantizing its own way. */
    const int scale_blocks = act_scale_blocks(w[0]->type);
    for (int i = 1; i < n_mats; i++)
        if (act_scale_blocks(w[i]->type) != scale_blocks) {
            float *y_same[MATMUL_MAX_PARTS], *y_other[MATMUL_MAX_PARTS];
            const weight_matrix *w_same[MATMUL_MAX_PARTS], *w_other[MATMUL_MAX_PARTS];
            int n_same = 0, n_other = 0;
            for (int j = 0; j < n_mats; j++) {
                if (act_scale_blocks(w[j]->type) == scale_blocks) y_same[n_same] = y[j], w_same[n_same++] = w[j];
                else y_other[n_other] = y[j], w_other[n_other++] = w[j];
            }
            matmul_input(pool, y_same, in, op, w_same, n_same, n_tokens, scratch);
            matmul_input(pool, y_other, in, NULL, w_other, n_other, n_tokens, scratch);  /* in is made now */
            return;
        }
    const kernel_isa *isa = kernel_isa_current();
    matmul_job job = {.x = in, .n_tokens = n_tokens, .scratch = scratch, .isa = isa, .n_parts = n_mats};
    bool need_act = false;
    int n_tasks = 0;
    for (int i = 0; i < n_mats; i++) {
        TANDEM_ASSERT(w[i]->cols == w[0]->cols);
        matmul_path path = PATH_EXACT;
        if (w[i]->packed && isa->dot_packed_float[w[i]->type])
            path = PATH_PACKED_FLOAT;
        else if (!w[i]->packed && isa->dot_float[w[i]->type])
            path = PATH_FLOAT;
        else if (!scratch->exact && w[i]->packed && isa->dot_packed[w[i]->type])
            path = PATH_PACKED;
        else if (!scratch->exact && !w[i]->packed && isa->dot_act[w[i]->type] && w[i]->cols % (32 * scale_blocks) == 0)
            path = PATH_ACT;
        need_act |= path == PATH_ACT || path == PATH_PACKED;
        /* Rows per task: enough tasks to balance the threads, each big enough to amortise claiming it and
         * reading the token group's activations. A prefill task's rows must stay in L2 (at most 64). In
         * decoding the matrix is streamed once and the threads finish a product together only to within a
         * task: 32 tasks per thread of at most 64 rows (an 8B matrix's 256-row tasks left long tails:
         * bench/README.md, "Workers that stay awake through a forward pass, finer decode tasks"). */
        const bool prefill = n_tokens > MATMUL_TOKENS;
        const int64_t per_thread = w[i]->rows / ((prefill ? 8 : 32) * (int64_t)thread_pool_size(pool));
        int64_t task_rows = per_thread < 16 ? 16 : per_thread > 64 ? 64 : per_thread;
        if (w[i]->packed) task_rows -= task_rows % PACK_ROWS;  /* whole groups */
        job.parts[i] = (matmul_part){y[i], w[i], path, task_rows, n_tasks};
        n_tasks += (int)((w[i]->rows + task_rows - 1) / task_rows);
    }
    if (need_act || op) {  /* once for all the matrices */
        input_job ij = {in, op, need_act ? scratch->act : NULL, w[0]->cols, scale_blocks, isa};
        if (n_tokens <= 2)  /* a pool round trip costs more than a token or two */
            for (int t = 0; t < n_tokens; t++) input_task(t, 0, &ij);
        else
            thread_pool_run(pool, n_tokens, input_task, &ij);
    }
    thread_pool_run(pool, n_tasks, matmul_task, &job);
}

void matmul_shared_input(thread_pool *pool, float *const *y, const float *x, const weight_matrix *const *w,
                         int n_mats, int n_tokens, const matmul_scratch *scratch) {
    matmul_input(pool, y, x, NULL, w, n_mats, n_tokens, scratch);
}

void matmul_normed_input(thread_pool *pool, float *const *y, float *xb, const float *x, const float *norm, float eps,
                         const weight_matrix *const *w, int n_mats, int n_tokens, const matmul_scratch *scratch) {
    TANDEM_ASSERT(norm && xb != x);
    const input_op rmsnorm = {INPUT_RMSNORM, xb, x, norm, eps};
    matmul_input(pool, y, xb, &rmsnorm, w, n_mats, n_tokens, scratch);
}

void matmul_swiglu_input(thread_pool *pool, float *y, float *h, const float *gate, const float *up,
                         const weight_matrix *w, int n_tokens, const matmul_scratch *scratch) {
    const input_op swiglu = {INPUT_SWIGLU, h, gate, up, 0.0f};
    matmul_input(pool, &y, h, &swiglu, &w, 1, n_tokens, scratch);
}

void matmul(thread_pool *pool, float *y, const float *x, const weight_matrix *w, int n_tokens,
            const matmul_scratch *scratch) {
    matmul_shared_input(pool, &y, x, &w, 1, n_tokens, scratch);
}
