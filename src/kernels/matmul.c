/* matmul.c — y = x·Wᵀ for every weight type, output rows split over the thread pool.
 * With several tokens a row is dequantized once and reused for all of them (the verification path). */
#include "kernels.h"

typedef struct matmul_job {
    float *y;
    const float *x;
    const weight_matrix *w;
    int n_tokens;
    float *scratch;  /* (threads, cols) */
} matmul_job;

/* Rows per task: small enough to balance threads, large enough to amortise claiming a task. */
enum { MATMUL_TASK_ROWS = 16 };

static void matmul_task(int task, int thread, void *arg) {
    const matmul_job *job = arg;
    const weight_matrix *w = job->w;
    const int64_t r0 = (int64_t)task * MATMUL_TASK_ROWS;
    const int64_t r1 = r0 + MATMUL_TASK_ROWS < w->rows ? r0 + MATMUL_TASK_ROWS : w->rows;
    const uint8_t *base = w->data;
    const int64_t cols = w->cols, rows = w->rows;
    if (job->n_tokens == 1 || w->type == TANDEM_TYPE_F32) {
        for (int64_t r = r0; r < r1; r++)
            for (int t = 0; t < job->n_tokens; t++)
                job->y[(size_t)t * rows + r] =
                    dot_row(w->type, base + (size_t)r * w->row_bytes, job->x + (size_t)t * cols, cols);
        return;
    }
    float *row = job->scratch + (size_t)thread * cols;
    for (int64_t r = r0; r < r1; r++) {
        dequantize_row(w->type, base + (size_t)r * w->row_bytes, row, cols);
        for (int t = 0; t < job->n_tokens; t++)
            job->y[(size_t)t * rows + r] = dot_f32(row, job->x + (size_t)t * cols, cols);
    }
}

void matmul(thread_pool *pool, float *y, const float *x, const weight_matrix *w, int n_tokens, float *scratch) {
    matmul_job job = {y, x, w, n_tokens, scratch};
    int n_tasks = (int)((w->rows + MATMUL_TASK_ROWS - 1) / MATMUL_TASK_ROWS);
    thread_pool_run(pool, n_tasks, matmul_task, &job);
}
