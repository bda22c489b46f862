/* threadpool.c — a persistent pool of worker threads running one parallel-for at a time.
 * Workers are created once per model, so no thread is created per token; tasks are claimed atomically. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "tandem_base.h"

struct thread_pool {
    int n_threads;  /* including the caller */
    pthread_t *workers;
    struct worker_arg { struct thread_pool *pool; int index; } *worker_args;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    uint64_t generation;  /* bumped for every job; workers wait for a new one */
    bool quit;
    /* the current job */
    pool_task_fn fn;
    void *arg;
    int n_tasks;
    atomic_int next_task;
    int busy_workers;  /* workers that have not finished the current job */
};

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
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_tasks(p, wa->index);
        pthread_mutex_lock(&p->mu);
        if (--p->busy_workers == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
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
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
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
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store(&p->next_task, 0);
    p->busy_workers = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->busy_workers > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
