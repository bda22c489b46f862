/* threadpool.c — a persistent pool of worker threads running one parallel-for at a time.
 * Workers are created once per model, so no thread is created per token; tasks are claimed atomically. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "tandem_base.h"

/* Between the many short parallel-fors of a forward pass (about 4 per layer per token) workers spin for a
 * while before sleeping on the condition variable: waking a sleeping thread costs tens of microseconds, a
 * noticeable share of a small model's token. Idle pools still sleep. The job fields are published by the
 * release store of generation and read after its acquire load; the sleeper counts close the race between
 * a spinner deciding to sleep and the other side deciding nobody sleeps (both sides use seq_cst). */
enum { SPIN_ROUNDS = 1 << 10 };  /* ~20 µs of pause instructions */

struct thread_pool {
    int n_threads;  /* including the caller */
    pthread_t *workers;
    struct worker_arg { struct thread_pool *pool; int index; } *worker_args;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_uint_fast64_t generation;  /* bumped for every job; workers wait for a new one */
    atomic_bool quit;
    atomic_int sleeping_workers;      /* workers waiting on wake */
    atomic_bool caller_sleeping;      /* the caller waits on done */
    /* the current job */
    pool_task_fn fn;
    void *arg;
    int n_tasks;
    atomic_int next_task;
    atomic_int busy_workers;  /* workers that have not finished the current job */
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_tasks(thread_pool *p, int thread) {
    for (;;) {
        int t = atomic_fetch_add(&p->next_task, 1);
        if (t >= p->n_tasks) break;
        p->fn(t, thread, p->arg);
    }
}

static void *worker_main(void *arg) {
    struct worker_arg *wa = arg;
    thread_pool *p = wa->pool;
    uint64_t seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&p->generation, memory_order_acquire) == seen; i++)
            cpu_relax();
        if (atomic_load(&p->generation) == seen) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleeping_workers, 1);
            while (atomic_load(&p->generation) == seen) pthread_cond_wait(&p->wake, &p->mu);
            atomic_fetch_sub(&p->sleeping_workers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        seen = atomic_load(&p->generation);
        if (atomic_load(&p->quit)) break;
        run_tasks(p, wa->index);
        if (atomic_fetch_sub(&p->busy_workers, 1) == 1 && atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

/* Starts the next job (or the quit) and wakes the workers that went to sleep. */
static void publish(thread_pool *p) {
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->sleeping_workers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
}

int cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

tandem_status thread_pool_create(int n_threads, thread_pool **out) {
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "thread pool: n_threads %d out of range 1..1024", n_threads);
    thread_pool *p = calloc(1, sizeof *p);
    if (!p) return tandem_fail(TANDEM_ERR_NO_MEMORY, "thread pool: out of memory");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        p->worker_args = calloc((size_t)n_threads - 1, sizeof *p->worker_args);
        if (!p->workers || !p->worker_args) {
            thread_pool_free(p);
            return tandem_fail(TANDEM_ERR_NO_MEMORY, "thread pool: out of memory");
        }
        for (int i = 0; i < n_threads - 1; i++) {
            p->worker_args[i] = (struct worker_arg){p, i + 1};
            if (pthread_create(&p->workers[i], NULL, worker_main, &p->worker_args[i]) != 0) {
                p->n_threads = i + 1; /* only the started ones are joined */
                thread_pool_free(p);
                return tandem_fail(TANDEM_ERR_NO_MEMORY, "thread pool: cannot start thread %d", i + 1);
            }
        }
    }
    *out = p;
    return TANDEM_OK;
}

void thread_pool_free(thread_pool *p) {
    if (!p) return;
    atomic_store(&p->quit, true);
    publish(p);
    if (p->workers)
        for (int i = 0; i < p->n_threads - 1; i++) pthread_join(p->workers[i], NULL);
    free(p->workers);
    free(p->worker_args);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
}

int thread_pool_size(const thread_pool *p) { return p ? p->n_threads : 1; }

void thread_pool_run(thread_pool *p, int n_tasks, pool_task_fn fn, void *arg) {
    if (n_tasks <= 0) return;
    if (!p || p->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(t, 0, arg);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store(&p->next_task, 0);
    atomic_store(&p->busy_workers, p->n_threads - 1);
    publish(p);
    run_tasks(p, 0);
    for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&p->busy_workers, memory_order_acquire) > 0; i++)
        cpu_relax();
    if (atomic_load(&p->busy_workers) > 0) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_sleeping, true);
        while (atomic_load(&p->busy_workers) > 0) pthread_cond_wait(&p->done, &p->mu);
        atomic_store(&p->caller_sleeping, false);
        pthread_mutex_unlock(&p->mu);
    }
}
