/* test_threadpool.c — the persistent thread pool (src/base/threadpool.c): every task runs exactly once per
 * job, thread indices stay in range and are not shared by two tasks at the same time, back-to-back jobs do
 * not leak work into each other, a slow or absent worker neither loses tasks nor holds up the caller (and
 * one that stalls in a task makes the caller run the next jobs alone), idle
 * pools stop spinning, the spin budget follows bursts, and pools are created and freed cleanly. Written to be
 * run under ThreadSanitizer too (scripts/test.sh's build-tsan stage), so the checks use atomics and per-task
 * slots. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tandem_base.h"
#include "test.h"

enum { MAX_TASKS = 4096, MAX_THREADS = 16 };

typedef struct job {
    int n_tasks, n_threads;
    atomic_int runs[MAX_TASKS];         /* how many times each task ran */
    atomic_int busy[MAX_THREADS];       /* tasks currently running on each thread index */
    atomic_int bad_thread, overlap;
    long scratch[MAX_THREADS][8];       /* per-thread scratch, as the kernels use it (plain memory) */
    long out[MAX_TASKS];                /* each task writes only its own slot */
} job;

static void task(int t, int thread, void *arg) {
    job *j = arg;
    if (thread < 0 || thread >= j->n_threads) {
        atomic_fetch_add(&j->bad_thread, 1);
        return;
    }
    if (atomic_fetch_add(&j->busy[thread], 1) != 0) atomic_fetch_add(&j->overlap, 1);
    long *s = j->scratch[thread];
    for (int k = 0; k < 8; k++) s[k] = (long)t * 8 + k;  /* races here if two tasks shared a thread index */
    long sum = 0;
    for (int k = 0; k < 8; k++) sum += s[k];
    j->out[t] = sum;
    atomic_fetch_add(&j->runs[t], 1);
    atomic_fetch_sub(&j->busy[thread], 1);
}

static void reset(job *j, int n_tasks, int n_threads) {
    j->n_tasks = n_tasks;
    j->n_threads = n_threads;
    for (int i = 0; i < MAX_TASKS; i++) atomic_store(&j->runs[i], 0);
    for (int i = 0; i < MAX_THREADS; i++) atomic_store(&j->busy[i], 0);
    atomic_store(&j->bad_thread, 0);
    atomic_store(&j->overlap, 0);
}

static void check_job(const job *j) {
    int wrong = 0;
    for (int t = 0; t < j->n_tasks; t++)
        if (atomic_load(&j->runs[t]) != 1 || j->out[t] != (long)t * 64 + 28) wrong++;
    for (int t = j->n_tasks; t < MAX_TASKS; t++)
        if (atomic_load(&j->runs[t]) != 0) wrong++;
    CHECK_MSG(wrong == 0, "%d of %d tasks ran a wrong number of times (%d threads)", wrong, j->n_tasks, j->n_threads);
    CHECK(atomic_load(&j->bad_thread) == 0);
    CHECK(atomic_load(&j->overlap) == 0);
}

static void test_sizes(void) {
    static job j;
    const int threads[] = {1, 2, 3, 4, 8};
    const int tasks[] = {0, 1, 2, 3, 7, 64, 1000, MAX_TASKS};
    for (size_t a = 0; a < sizeof threads / sizeof *threads; a++) {
        thread_pool *pool = NULL;
        CHECK_OK(thread_pool_create(threads[a], &pool));
        if (!pool) continue;
        CHECK(thread_pool_size(pool) == threads[a]);
        for (int rep = 0; rep < 3; rep++) {
            for (size_t b = 0; b < sizeof tasks / sizeof *tasks; b++) {
                reset(&j, tasks[b], threads[a]);
                thread_pool_run(pool, tasks[b], task, &j);
                check_job(&j);
            }
        }
        thread_pool_free(pool);
    }
}

/* Many short jobs back to back: the generation handshake must not let a slow worker run tasks of the
 * previous job in the next one, nor miss a wake-up (a hang here is the failure). */
static void test_many_jobs(void) {
    static job j;
    thread_pool *pool = NULL;
    CHECK_OK(thread_pool_create(4, &pool));
    if (!pool) return;
    for (int rep = 0; rep < 2000; rep++) {
        int n = 1 + rep % 13;
        reset(&j, n, 4);
        thread_pool_run(pool, n, task, &j);
        check_job(&j);
    }
    thread_pool_free(pool);
}

/* Claim order: each thread runs its own contiguous share of the tasks first to last (a matrix product's
 * weight rows then stream without restarting), and helps with other shares from their far ends. */
typedef struct order_job {
    int n_tasks, n_threads;
    int ran_on[MAX_TASKS];          /* thread that ran each task */
    int seq[MAX_THREADS][MAX_TASKS]; /* tasks in the order each thread ran them (own slot per thread) */
    int n_seq[MAX_THREADS];
    int slow_below;                 /* tasks below this sleep 5 ms */
} order_job;

static void order_task(int t, int thread, void *arg) {
    order_job *j = arg;
    if (t < j->slow_below) usleep(5000);
    j->ran_on[t] = thread;
    j->seq[thread][j->n_seq[thread]++] = t;
}

static void test_claim_order(void) {
    static order_job j;
    const int threads[] = {2, 3};
    for (size_t a = 0; a < 2; a++) {
        for (int slow = 0; slow <= 1; slow++) {
            thread_pool *pool = NULL; /* a fresh pool: not backing off from a stall in the job before */
            CHECK_OK(thread_pool_create(threads[a], &pool));
            if (!pool) return;
            memset(&j, 0, sizeof j);
            j.n_tasks = 60, j.n_threads = threads[a];
            j.slow_below = slow ? 10 : 0;  /* thread 0's share, 20 or 30 tasks, starts with 10 slow ones */
            thread_pool_run(pool, j.n_tasks, order_task, &j);
            int total = 0, bad_order = 0;
            for (int th = 0; th < j.n_threads; th++) {
                const int first = j.n_tasks * th / j.n_threads, end = j.n_tasks * (th + 1) / j.n_threads;
                int last_own = -1, last_stolen[MAX_THREADS], stole = 0;
                for (int v = 0; v < MAX_THREADS; v++) last_stolen[v] = MAX_TASKS;
                for (int i = 0; i < j.n_seq[th]; i++) {
                    const int t = j.seq[th][i];
                    if (t >= first && t < end) {  /* own tasks ascend, all before any stolen one */
                        bad_order += t <= last_own || stole;
                        last_own = t;
                    } else {  /* stolen ones descend within each victim's share */
                        int v = 0;
                        while (v + 1 < j.n_threads && j.n_tasks * (v + 1) / j.n_threads <= t) v++;
                        bad_order += t >= last_stolen[v];
                        last_stolen[v] = t;
                        stole = 1;
                    }
                }
                total += j.n_seq[th];
            }
            CHECK_MSG(total == j.n_tasks, "%d tasks ran, expected %d", total, j.n_tasks);
            CHECK_MSG(bad_order == 0, "%d tasks out of order (%d threads)", bad_order, j.n_threads);
            if (slow) {  /* 50 ms of sleeps on thread 0's share: the others, done in microseconds, took some */
                int stolen = 0;
                for (int t = 0; t < 10; t++) stolen += j.ran_on[t] != 0;
                CHECK_MSG(stolen > 0, "no slow task of thread 0's share ran elsewhere (%d threads)", j.n_threads);
            }
            thread_pool_free(pool);
        }
    }
}

/* A worker slowed by other work on its core (here: a sleep in some of its tasks) keeps its tasks' results
 * and loses none to the caller or the other workers: every task runs exactly once, each result equals the
 * serial one, over jobs of every size around the pool's shares. */
typedef struct slow_job {
    job base;
    int slow_every; /* a worker sleeps in every slow_every-th task it runs */
    atomic_int worker_tasks;
} slow_job;

static void slow_task(int t, int thread, void *arg) {
    slow_job *j = arg;
    if (thread != 0 && atomic_fetch_add(&j->worker_tasks, 1) % j->slow_every == 0) usleep(200);
    task(t, thread, &j->base);
}

static void test_slow_worker(void) {
    static slow_job j;
    const int threads[] = {2, 3};
    for (size_t a = 0; a < sizeof threads / sizeof *threads; a++) {
        thread_pool *pool = NULL;
        CHECK_OK(thread_pool_create(threads[a], &pool));
        if (!pool) return;
        for (int rep = 0; rep < 300; rep++) {
            const int n = 1 + rep % 97;
            reset(&j.base, n, threads[a]);
            j.slow_every = 1 + rep % 5;
            atomic_store(&j.worker_tasks, 0);
            thread_pool_run(pool, n, slow_task, &j);
            check_job(&j.base);
        }
        thread_pool_free(pool);
    }
}

/* A worker that cannot run (its core taken by another process) must not hold up the caller: the caller does
 * every task itself and returns, instead of waiting for the worker to come and find nothing left. The worker
 * is held, outside any job, in a signal handler until released. A hang is the failure: a watchdog releases
 * the worker after a minute and the test then fails (a deadlock detector, not a timing check: the jobs
 * take milliseconds). */
static atomic_int worker_held, worker_release;
static pthread_t held_worker;
static atomic_int worker_known;

static void hold_worker(int sig) {
    (void)sig;
    atomic_store(&worker_held, 1);
    const struct timespec ms = {0, 1000000};
    while (!atomic_load(&worker_release)) nanosleep(&ms, NULL);
}

static void find_worker_task(int t, int thread, void *arg) {
    (void)t, (void)arg;
    if (thread == 1) {
        held_worker = pthread_self();
        atomic_store(&worker_known, 1);
    }
    while (!atomic_load(&worker_known)) sched_yield(); /* the caller's tasks wait until the worker ran one */
}

static atomic_int jobs_done, watchdog_fired, worker_ran;

static void counted_task(int t, int thread, void *arg) {
    if (thread != 0) atomic_fetch_add(&worker_ran, 1);
    task(t, thread, arg);
}

static void *watchdog(void *arg) {
    (void)arg;
    for (int i = 0; i < 60000 && !atomic_load(&jobs_done); i++) usleep(1000);
    if (!atomic_load(&jobs_done)) atomic_store(&watchdog_fired, 1);
    atomic_store(&worker_release, 1);
    return NULL;
}

static void test_absent_worker(void) {
    static job j;
    thread_pool *pool = NULL;
    CHECK_OK(thread_pool_create(2, &pool));
    if (!pool) return;
    thread_pool_run(pool, 2, find_worker_task, NULL); /* one task each: the worker's sets held_worker */
    CHECK(atomic_load(&worker_known) == 1);
    struct sigaction sa = {.sa_handler = hold_worker}, old;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, &old) == 0);
    pthread_t dog;
    CHECK(pthread_create(&dog, NULL, watchdog, NULL) == 0);
    CHECK(pthread_kill(held_worker, SIGUSR1) == 0);
    while (!atomic_load(&worker_held)) usleep(100);
    for (int rep = 0; rep < 200; rep++) {
        const int n = 1 + rep % 64;
        reset(&j, n, 2);
        thread_pool_run(pool, n, counted_task, &j);
        check_job(&j);
    }
    atomic_store(&jobs_done, 1);
    pthread_join(dog, NULL);
    CHECK_MSG(!atomic_load(&watchdog_fired), "the caller waited for a worker that could not run");
    CHECK_MSG(atomic_load(&worker_ran) == 0, "a held worker ran %d tasks", atomic_load(&worker_ran));
    for (int rep = 0; rep < 200; rep++) { /* released, the worker takes part again */
        reset(&j, 64, 2);
        thread_pool_run(pool, 64, task, &j);
        check_job(&j);
    }
    thread_pool_free(pool);
    sigaction(SIGUSR1, &old, NULL);
}

/* A worker that stalls in the middle of a task (its core taken by another process) makes the caller run the
 * next jobs alone, claiming tasks in the same order, and the workers take part again afterwards. The worker
 * sleeps 100 ms in its first task; the caller's tasks wait until it has started, so it surely joined. */
static atomic_int stall_worker_started;

static void stalling_task(int t, int thread, void *arg) {
    if (thread != 0 && !atomic_exchange(&stall_worker_started, 1)) usleep(100 * 1000);
    while (thread == 0 && !atomic_load(&stall_worker_started)) sched_yield();
    counted_task(t, thread, arg);
}

/* The caller's first task gives a published job's worker up to 200 ms to join and run a task. */
static void waiting_task(int t, int thread, void *arg) {
    for (int i = 0; t == 0 && thread == 0 && i < 2000 && !atomic_load(&worker_ran); i++) usleep(100);
    counted_task(t, thread, arg);
}

static void slow_counted_task(int t, int thread, void *arg) {
    usleep(50);
    counted_task(t, thread, arg);
}

static void test_stalled_worker(void) {
    static job j;
    thread_pool *pool = NULL;
    CHECK_OK(thread_pool_create(2, &pool));
    if (!pool) return;
    atomic_store(&worker_ran, 0);
    reset(&j, 64, 2);
    thread_pool_run(pool, 64, stalling_task, &j);
    check_job(&j);
    CHECK(atomic_load(&worker_ran) > 0);
    atomic_store(&worker_ran, 0);
    reset(&j, 64, 2);
    thread_pool_run(pool, 64, waiting_task, &j);
    check_job(&j);
    CHECK_MSG(atomic_load(&worker_ran) == 0, "after a stall the worker still ran %d tasks", atomic_load(&worker_ran));
    int jobs = 0;
    for (; jobs < 3000 && atomic_load(&worker_ran) == 0; jobs++) {
        reset(&j, 64, 2);
        thread_pool_run(pool, 64, slow_counted_task, &j);
        check_job(&j);
    }
    CHECK_MSG(atomic_load(&worker_ran) > 0, "the worker never took part again in %d jobs", jobs);
    thread_pool_free(pool);
}

/* Workers spin for a while after a job (waking a sleeper costs more than a short gap between jobs) but an
 * idle pool must sleep: over 300 ms with nothing to do, the process may use a few milliseconds of CPU, not
 * 300 ms per worker. Jobs after the idle time still run (the wake-up path). */
static double process_cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void test_idle_pool_sleeps(void) {
    static job j;
    const int n_threads = cpu_count() >= 2 ? 2 : 1;
    thread_pool *pool = NULL;
    CHECK_OK(thread_pool_create(n_threads, &pool));
    if (!pool) return;
    for (int round = 0; round < 2; round++) {  /* the job alone, then inside a burst that ends before the idle time */
        if (round == 1) thread_pool_begin_burst(pool);
        reset(&j, 64, n_threads);
        thread_pool_run(pool, 64, task, &j);
        check_job(&j);
        if (round == 1) thread_pool_end_burst(pool);
        const double before = process_cpu_ms();
        usleep(300 * 1000);
        const double used = process_cpu_ms() - before;
        CHECK_MSG(used < 60.0, "an idle pool of %d threads used %.1f ms of CPU in 300 ms", n_threads, used);
    }
    thread_pool_free(pool);
}

/* The spin policy: long for the pool that began the latest burst, in its bursts and between them, while the
 * threads of the pools in bursts fit the cores; short for every other pool (two models' pools taking turns
 * must not spin against each other); bursts nest. */
static void test_burst_budget(void) {
    const int cpus = cpu_count();
    thread_pool *a = NULL, *b = NULL;
    CHECK_OK(thread_pool_create(1, &a));
    CHECK_OK(thread_pool_create(cpus, &b));
    if (!a || !b) return;
    const double idle = thread_pool_spin_budget_ms(a);
    CHECK(thread_pool_spin_budget_ms(b) == idle);
    thread_pool_begin_burst(a);
    const double burst = thread_pool_spin_budget_ms(a);
    CHECK_MSG(burst > idle, "burst budget %g ms, idle %g ms", burst, idle);
    CHECK(thread_pool_spin_budget_ms(b) == idle);  /* b has not begun a burst */
    thread_pool_begin_burst(a);  /* nested */
    thread_pool_end_burst(a);
    CHECK(thread_pool_spin_budget_ms(a) == burst);
    thread_pool_end_burst(a);
    CHECK(thread_pool_spin_budget_ms(a) == burst);  /* between its bursts a stays awake */
    thread_pool_begin_burst(b);  /* b's turn: a's threads go to sleep */
    CHECK(thread_pool_spin_budget_ms(a) == idle);
    CHECK(thread_pool_spin_budget_ms(b) == burst);
    thread_pool_begin_burst(a);  /* both at once: 1 + cpus threads, more than the cores */
    CHECK(thread_pool_spin_budget_ms(a) == idle);
    CHECK(thread_pool_spin_budget_ms(b) == idle);
    thread_pool_end_burst(a);
    CHECK(thread_pool_spin_budget_ms(a) == burst);  /* a began the latest burst and b's threads fit alone */
    static job j;  /* jobs in a burst run as usual */
    for (int rep = 0; rep < 200; rep++) {
        reset(&j, 1 + rep % 50, cpus);
        thread_pool_run(b, 1 + rep % 50, task, &j);
        check_job(&j);
    }
    thread_pool_end_burst(b);
    CHECK(thread_pool_spin_budget_ms(b) == idle);
    thread_pool_free(a);  /* the latest burst's pool freed: nothing spins long */
    CHECK(thread_pool_spin_budget_ms(b) == idle);
    thread_pool_begin_burst(NULL);  /* no pool: nothing to do */
    thread_pool_end_burst(NULL);
    thread_pool_free(b);
}

/* A NULL pool runs everything on the caller as thread 0. */
static void test_null_pool(void) {
    static job j;
    reset(&j, 100, 1);
    thread_pool_run(NULL, 100, task, &j);
    check_job(&j);
    CHECK(thread_pool_size(NULL) == 1);
}

static void test_create_free(void) {
    for (int i = 0; i < 50; i++) {
        thread_pool *pool = NULL;
        CHECK_OK(thread_pool_create(1 + i % 6, &pool));
        thread_pool_free(pool);  /* freed without ever running a job */
    }
    thread_pool *pool = (thread_pool *)1;
    CHECK(thread_pool_create(0, &pool) == TANDEM_ERR_INVALID_ARG && pool == NULL);
    CHECK(thread_pool_create(100000, &pool) == TANDEM_ERR_INVALID_ARG && pool == NULL);
    thread_pool_free(NULL);
    CHECK(cpu_count() >= 1);
}

int main(void) {
    test_sizes();
    test_many_jobs();
    test_claim_order();
    test_slow_worker();
    test_absent_worker();
    test_stalled_worker();
    test_idle_pool_sleeps();
    test_burst_budget();
    test_null_pool();
    test_create_free();
    return test_summary();
}
