/* threadpool.c — a persistent pool of worker threads running one parallel-for at a time.
 * Workers are created once per model, so no thread is created per token; each thread works through its
 * own contiguous range of tasks and, when done, takes tasks from the back of the others' ranges; a worker
 * that has not joined a job by the time every task is claimed stays out of it. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "tandem_base.h"

/* Between the parallel-fors of a forward pass (about 4 per layer per token) workers spin before sleeping on
 * the condition variable, and the caller spins while the workers finish their shares: waking a sleeping
 * thread costs tens of microseconds (more in a virtual machine, where the wake-up goes through the
 * hypervisor), and each wake-up sits on the forward pass's critical path. A worker that runs out of tasks
 * waits for the others' last task and then for the caller's serial steps: with 20 µs budgets an 8B decode
 * slept in most of its parallel-fors and ran much slower than with 1 ms. But a pool spinning while another pool
 * of the process works (the draft model's while the target verifies) takes that pool's cores: long spins
 * everywhere made the speculative tests many times slower. So the long budget belongs to the pool that began
 * the latest burst (thread_pool_begin_burst: a forward pass), during its bursts and between them (a worker
 * that slept between forward passes slowed an 8B decode too), and only while the threads of the pools in
 * bursts fit the cores; other pools spin 20 µs (the figures: bench/README.md, "Workers that stay awake through
 * a forward pass, finer decode tasks"). The budgets are times, not pause counts: a pause takes ~10 to ~140
 * cycles depending on the core.
 * A worker joins a job before it claims a task, and once the caller has run out of tasks to claim it closes
 * the job and waits only for the workers that joined. A worker whose core another process has taken then
 * costs a parallel-for nothing but the tasks it did claim: the caller used to wait until every worker had
 * run and found nothing left, which on a busy core took a scheduler time slice per parallel-for (the
 * figures: bench/README.md, "Threads under load").
 * The job fields are published by the release store of the job word and read after a worker's acquiring
 * join; the sleeper counts close the race between a spinner deciding to sleep and the other side deciding
 * nobody sleeps (both sides use seq_cst). */
static const double BURST_SPIN_MS = 1.0, IDLE_SPIN_MS = 0.02;

/* Process-wide: the threads of all pools now in a burst, and the pool that began the latest burst. */
static atomic_int threads_in_bursts;
static _Atomic(const thread_pool *) latest_burst_pool;

struct thread_pool {
    int n_threads;  /* including the caller */
    int n_cpus;
    int burst_depth;           /* the caller's nesting of bursts */
    /* The caller's back-off from stalled workers (see thread_pool_run): jobs still to run alone, the length
     * of the next such run, and the parallel jobs since the last stall. */
    int solo_jobs_left, solo_run_length, jobs_since_stall;
    pthread_t *workers;
    struct worker_arg { struct thread_pool *pool; int index; } *worker_args;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    /* The current job's number (JOB_GEN_SHIFT up), whether it is closed to latecomers (JOB_CLOSED) and how
     * many workers joined it and are still in it (the low bits): one word, so that joining (a compare-and-swap
     * that fails once the job is closed or replaced) and closing (a fetch-or) cannot cross. */
    atomic_uint_fast64_t job;
    atomic_bool quit;
    atomic_int sleeping_workers;      /* workers waiting on wake */
    atomic_bool caller_sleeping;      /* the caller waits on done */
    /* the current job */
    pool_task_fn fn;
    void *arg;
    struct task_range *ranges;  /* one per thread */
};

enum { JOB_GEN_SHIFT = 32 };
static const uint64_t JOB_CLOSED = 1u << 31, JOB_JOINED = JOB_CLOSED - 1;

static inline uint32_t job_gen(uint64_t job) { return (uint32_t)(job >> JOB_GEN_SHIFT); }

/* Thread i's tasks are [first, end), packed as first << 32 | end so that the owner (taking first) and a
 * thief (taking end − 1) claim with one compare-and-swap. Contiguous ranges matter for matrix products:
 * consecutive tasks are consecutive weight rows, so a thread's memory stream and its prefetches run on
 * from one task into the next instead of restarting cold at every claim (interleaved claims sent each
 * prefetch into the rows the other thread was reading). Stealing keeps the balance when a core is slowed
 * by other work. Padded to a cache line: the owners' claims do not contend. */
struct task_range {
    _Alignas(64) atomic_uint_fast64_t first_end;
};

static inline uint64_t pack_range(uint32_t first, uint32_t end) { return (uint64_t)first << 32 | end; }

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

double thread_pool_spin_budget_ms(const thread_pool *p) {
    const bool latest = atomic_load_explicit(&latest_burst_pool, memory_order_relaxed) == p;
    return latest && atomic_load_explicit(&threads_in_bursts, memory_order_relaxed) <= p->n_cpus ? BURST_SPIN_MS
                                                                                                : IDLE_SPIN_MS;
}

/* One round of a wait: a pause, and every 64 (~1-2 µs) a look at the clock (a vDSO call) and the budget, so
 * that another pool's burst cuts the spin short. False once the budget is spent. Past the first 20 µs each
 * look also yields the core: if another thread is waiting for it (this pool's worker that has not started
 * yet, another process's threads) it runs, otherwise the yield returns at once. Without the yields two test
 * processes sharing 2 cores spun against each other's descheduled threads (ctest -j2 took 183 s, not 87). */
static bool spin_round(const thread_pool *p, double start_ms, unsigned round) {
    cpu_relax();
    if (round % 64 != 0) return true;
    const double waited_ms = now_ms() - start_ms;
    if (waited_ms > thread_pool_spin_budget_ms(p)) return false;
    if (waited_ms > IDLE_SPIN_MS) sched_yield();
    return true;
}

/* Waits for p's job number to differ from `seen` (true) or for the budget to pass (false). */
static bool spin_for_job(const thread_pool *p, uint32_t seen) {
    const double start_ms = now_ms();
    for (unsigned i = 1; job_gen(atomic_load_explicit(&p->job, memory_order_acquire)) == seen; i++)
        if (!spin_round(p, start_ms, i)) return false;
    return true;
}

/* Waits for the workers that joined p's (closed) job to leave it (true) or for the budget to pass (false). */
static bool spin_for_workers(const thread_pool *p) {
    const double start_ms = now_ms();
    for (unsigned i = 1; atomic_load_explicit(&p->job, memory_order_acquire) & JOB_JOINED; i++)
        if (!spin_round(p, start_ms, i)) return false;
    return true;
}

/* Joins job `gen` unless the caller has closed it or started another: true if joined. */
static bool join_job(thread_pool *p, uint32_t gen) {
    uint64_t job = atomic_load(&p->job);
    while (job_gen(job) == gen && !(job & JOB_CLOSED))
        if (atomic_compare_exchange_weak(&p->job, &job, job + 1)) return true;
    return false;
}

/* Claims the first (own range) or last (stolen) task of a range; -1 when it is empty. */
static int claim_task(struct task_range *r, bool from_back) {
    uint64_t v = atomic_load_explicit(&r->first_end, memory_order_relaxed);
    for (;;) {
        const uint32_t first = (uint32_t)(v >> 32), end = (uint32_t)v;
        if (first >= end) return -1;
        const uint64_t next = from_back ? pack_range(first, end - 1) : pack_range(first + 1, end);
        if (atomic_compare_exchange_weak_explicit(&r->first_end, &v, next, memory_order_relaxed, memory_order_relaxed))
            return (int)(from_back ? end - 1 : first);
    }
}

/* Runs tasks until none is left to claim; returns how many it ran. */
static int run_tasks(thread_pool *p, int thread) {
    int ran = 0;
    for (int t; (t = claim_task(&p->ranges[thread], false)) >= 0; ran++) p->fn(t, thread, p->arg);
    /* then help the others, starting with the next thread, from the far end of their ranges */
    for (int i = 1; i < p->n_threads; i++) {
        struct task_range *victim = &p->ranges[(thread + i) % p->n_threads];
        for (int t; (t = claim_task(victim, true)) >= 0; ran++) p->fn(t, thread, p->arg);
    }
    return ran;
}

static void *worker_main(void *arg) {
    struct worker_arg *wa = arg;
    thread_pool *p = wa->pool;
    uint32_t seen = 0;
    for (;;) {
        if (!spin_for_job(p, seen)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleeping_workers, 1);
            while (job_gen(atomic_load(&p->job)) == seen) pthread_cond_wait(&p->wake, &p->mu);
            atomic_fetch_sub(&p->sleeping_workers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        seen = job_gen(atomic_load(&p->job));
        if (atomic_load(&p->quit)) break;
        if (!join_job(p, seen)) continue; /* too late: the caller did this job's tasks */
        run_tasks(p, wa->index);
        const uint64_t left = atomic_fetch_sub(&p->job, 1) - 1;
        if ((left & JOB_JOINED) == 0 && (left & JOB_CLOSED) && atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

/* Starts the next job (or the quit), open and joined by nobody yet, and wakes the workers that went to
 * sleep. Only the caller writes the job word while no worker is in a job (the last job was closed and left). */
static void publish(thread_pool *p) {
    const uint32_t next = job_gen(atomic_load(&p->job)) + 1;
    atomic_store(&p->job, (uint64_t)next << JOB_GEN_SHIFT);
    if (atomic_load(&p->sleeping_workers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
}

/* A worker that joined and then lost its core in the middle of a task (another process took it) holds the
 * caller until the scheduler gives it back, a time slice later, and on a busy machine that happens again and
 * again: two threads then ran slower than one. So when the caller waited for the workers much longer than
 * one of its own tasks took, it runs the next jobs alone (their order of claims unchanged), 16 after a first
 * stall and twice as many after each stall that follows within 64 parallel jobs, up to 1024 (a few tokens),
 * then tries the workers again. Counted in jobs, not time: which thread runs a task never changes its result,
 * and a job count keeps the back-off the same on fast and slow machines. */
enum { SOLO_RUN_MIN = 16, SOLO_RUN_MAX = 1024, STALL_MEMORY_JOBS = 64 };
static const double STALL_MIN_MS = 0.2;

static void note_stall(thread_pool *p, int caller_tasks, double caller_ms, double waited_ms) {
    if (caller_tasks > 0 && waited_ms > STALL_MIN_MS + 4.0 * caller_ms / caller_tasks) {
        p->solo_run_length = p->solo_run_length ? p->solo_run_length * 2 : SOLO_RUN_MIN;
        if (p->solo_run_length > SOLO_RUN_MAX) p->solo_run_length = SOLO_RUN_MAX;
        p->solo_jobs_left = p->solo_run_length;
        p->jobs_since_stall = 0;
    } else if (p->solo_run_length && ++p->jobs_since_stall >= STALL_MEMORY_JOBS) {
        p->solo_run_length = 0;
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
    p->n_cpus = cpu_count();
    p->ranges = aligned_alloc(_Alignof(struct task_range), sizeof(struct task_range) * (size_t)n_threads);
    if (!p->ranges) {
        free(p);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "thread pool: out of memory");
    }
    for (int i = 0; i < n_threads; i++) atomic_init(&p->ranges[i].first_end, 0);
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
    if (p->burst_depth > 0) atomic_fetch_sub(&threads_in_bursts, p->n_threads);  /* freed inside a burst */
    const thread_pool *self = p;
    atomic_compare_exchange_strong(&latest_burst_pool, &self, NULL);  /* a later pool may reuse the address */
    atomic_store(&p->quit, true);
    publish(p);
    if (p->workers)
        for (int i = 0; i < p->n_threads - 1; i++) pthread_join(p->workers[i], NULL);
    free(p->workers);
    free(p->worker_args);
    free(p->ranges);
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
    for (int i = 0; i < p->n_threads; i++) {  /* thread i's share: tasks [n·i/T, n·(i+1)/T) */
        const int64_t first = (int64_t)n_tasks * i / p->n_threads, end = (int64_t)n_tasks * (i + 1) / p->n_threads;
        atomic_store_explicit(&p->ranges[i].first_end, pack_range((uint32_t)first, (uint32_t)end), memory_order_relaxed);
    }
    if (p->solo_jobs_left > 0) { /* backing off: the caller claims every task, in the order it would */
        p->solo_jobs_left--;
        run_tasks(p, 0);
        return;
    }
    publish(p);
    const double start_ms = now_ms();
    const int ran = run_tasks(p, 0);
    const double claimed_ms = now_ms();
    /* Every task is claimed; those of the workers that joined run to the end, and the others never start. */
    atomic_fetch_or(&p->job, JOB_CLOSED);
    if (!spin_for_workers(p)) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_sleeping, true);
        while (atomic_load(&p->job) & JOB_JOINED) pthread_cond_wait(&p->done, &p->mu);
        atomic_store(&p->caller_sleeping, false);
        pthread_mutex_unlock(&p->mu);
    }
    note_stall(p, ran, claimed_ms - start_ms, now_ms() - claimed_ms);
}

void thread_pool_begin_burst(thread_pool *p) {
    if (!p || p->burst_depth++ > 0) return;
    atomic_fetch_add(&threads_in_bursts, p->n_threads);
    atomic_store(&latest_burst_pool, p);
}

void thread_pool_end_burst(thread_pool *p) {
    if (!p) return;
    TANDEM_ASSERT(p->burst_depth > 0);
    if (--p->burst_depth == 0) atomic_fetch_sub(&threads_in_bursts, p->n_threads);
}
