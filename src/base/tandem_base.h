/* tandem_base.h — what every part of tandem may use: errors, assertions, mapped files, the thread pool,
 * half-precision conversion, JSON file helpers and a clock. Depends on libc, pthreads and jansson only. */
#ifndef TANDEM_BASE_H
#define TANDEM_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tandem.h"

/* ---- errors ---- */

/* Records "fmt…" as this thread's last error and returns st, so a failure reads `return tandem_fail(…)`. */
tandem_status tandem_fail(tandem_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with "prefix: " (adds context on the way up, e.g. the file name). */
void tandem_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Programmer errors only (shape mismatch at a kernel's entry), never data. Kept in release builds. */
#define TANDEM_ASSERT(cond)                                                                  \
    do {                                                                                     \
        if (!(cond)) tandem_assert_failed(__FILE__, __LINE__, #cond);                        \
    } while (0)
_Noreturn void tandem_assert_failed(const char *file, int line, const char *cond);

/* ---- overflow-safe size arithmetic ---- */

static inline bool size_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool size_add_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* ---- tensor types (table in types.c) ---- */

bool tandem_type_known(int32_t t);              /* has a name and a size (not every known type is runnable) */
int32_t tandem_type_block_size(tandem_type t);  /* elements per block; 0 if unknown */
int32_t tandem_type_size(tandem_type t);        /* bytes per block; 0 if unknown */
/* Bytes of n_elements of type t; false if n_elements is not a whole number of blocks or overflows. */
bool tandem_type_row_bytes(tandem_type t, int64_t n_elements, uint64_t *out);

/* ---- memory-mapped files (read-only) ---- */

typedef struct mapped_file {
    const uint8_t *data;  /* NULL for an empty file */
    size_t size;
    char *path;           /* owned copy, for error messages */
} mapped_file;

tandem_status mapped_file_open(const char *path, mapped_file *mf);
void mapped_file_close(mapped_file *mf);  /* accepts a zeroed or half-opened struct */
/* The whole pages inside [p, p + n) of a mapping are not needed for now: the OS drops them from this process's
 * resident set (they are read from the file again if touched). For weights copied into another layout. */
void mapped_range_release(const void *p, size_t n);
/* Memory for bytes that are streamed again and again (packed weights, a context's KV cache): on 2 MiB pages
 * where the OS allows it (Linux's transparent huge pages in "madvise" mode), which cuts TLB misses and page
 * faults. Freed with free(); NULL when out of memory. */
void *streamed_alloc(size_t bytes);

/* ---- files and paths ---- */

bool path_is_dir(const char *path);
bool path_exists(const char *path);
char *path_join(const char *dir, const char *name);  /* malloc'd; NULL on OOM */
char *path_base_name(const char *path);  /* malloc'd last component ("a/b/" → "b"); NULL on OOM */
char *path_stem(const char *path);       /* malloc'd last component without its extension ("a/m.gguf" → "m") */

/* ---- a growing byte buffer ---- */

typedef struct byte_buf {
    uint8_t *data;  /* malloc'd; the owner frees it */
    size_t len, cap;
} byte_buf;
/* Appends n bytes (doubling the capacity as needed); false on out of memory, the buffer then unchanged. */
bool byte_buf_append(byte_buf *b, const void *p, size_t n);

/* ---- thread pool: persistent workers, one parallel-for at a time ---- */

typedef struct thread_pool thread_pool;
/* fn(task, thread, arg) is called once for every task in [0, n_tasks); thread ∈ [0, pool size) names
 * the thread running it (the caller is 0), so a task can use per-thread scratch memory. */
typedef void (*pool_task_fn)(int task, int thread, void *arg);

tandem_status thread_pool_create(int n_threads, thread_pool **out);  /* n_threads ≥ 1 (including caller) */
void thread_pool_free(thread_pool *pool);
int thread_pool_size(const thread_pool *pool);
/* Runs fn for tasks 0..n_tasks-1 spread over the pool's threads (the caller works too); returns when all
 * are done. A worker that has not started by the time the others have claimed every task does not take part
 * (the caller does not wait for a worker that another process keeps off its core), and after a worker
 * stalled in the middle of a task the caller runs the next jobs alone for a while. pool may be NULL:
 * everything then runs on the calling thread. */
void thread_pool_run(thread_pool *pool, int n_tasks, pool_task_fn fn, void *arg);
/* Brackets a burst of parallel-fors from one caller (a forward pass). The pool that began the latest burst
 * keeps its threads spinning up to a millisecond (instead of ~20 µs) before they sleep, in its bursts and
 * between them, as long as the pools in bursts do not have more threads than the machine has cores.
 * Bursts nest; pool may be NULL. */
void thread_pool_begin_burst(thread_pool *pool);
void thread_pool_end_burst(thread_pool *pool);
/* How long p's threads now spin before sleeping, in ms (the policy above; for tests). */
double thread_pool_spin_budget_ms(const thread_pool *pool);
int cpu_count(void);

/* ---- half precision ---- */

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);   /* round to nearest even, like numpy / ggml */
static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
uint16_t f32_to_bf16(float f);  /* round to nearest even, NaN kept quiet */

/* ---- JSON (jansson) ---- */

typedef struct json_t json_t;
/* Parses a whole file; on failure the error names the file, line, column and reason. */
tandem_status json_load_path(const char *path, json_t **out);
/* Typed getters that accept any JSON number where it is integral; false if absent or of another type. */
bool json_get_int(const json_t *obj, const char *key, int64_t *out);
bool json_get_number(const json_t *obj, const char *key, double *out);
bool json_get_bool(const json_t *obj, const char *key, bool *out);
const char *json_get_string(const json_t *obj, const char *key);

/* ---- time ---- */

double now_ms(void);  /* monotonic milliseconds */

#endif
