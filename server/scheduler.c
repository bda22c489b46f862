/* scheduler.c — the one thread that uses the tandem_engine: takes parsed requests from an inbox, steps the engine,
 * turns each request's text into its answer's bytes and resumes the connection waiting for them. */
#include "scheduler.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

struct serve_scheduler {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    serve_job *inbox, *inbox_tail; /* submitted, not yet seen by the engine thread */
    bool wake;                     /* something changed (a client went away) */
    bool stop;
    int pending;  /* submitted and not yet finished by the engine */
    int capacity; /* most pending requests: the slots and the queue behind them */
    atomic_int live;
    tandem_engine *engine;
    int32_t n_slots;
    serve_metrics *metrics;
    pthread_t thread;
    serve_buf scratch; /* the engine thread's: one feed's events before they go to the job */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t random_u64(void) {
    uint64_t x = 0;
    if (getrandom(&x, sizeof x, 0) != (ssize_t)sizeof x) {
        struct timespec ts; /* no entropy source: ids only need to differ between requests */
        clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts;
    }
    return x;
}

serve_job *serve_job_create(serve_scheduler *s, serve_request *req, struct MHD_Connection *conn,
                            const char *model_name) {
    serve_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    char id[48];
    snprintf(id, sizeof id, "%s-%016llx%08llx", req->route == SERVE_CHAT_COMPLETIONS ? "chatcmpl" : "cmpl",
             (unsigned long long)random_u64(), (unsigned long long)(random_u64() & 0xffffffffu));
    j->answer = serve_answer_create(req, model_name, id, (int64_t)time(NULL), random_u64());
    if (!j->answer) {
        free(j);
        return NULL;
    }
    pthread_mutex_init(&j->mu, NULL);
    j->refs = 1;
    j->conn = conn;
    j->status = 200;
    atomic_init(&j->gone, false);
    j->sched = s;
    j->req = *req;
    memset(req, 0, sizeof *req);
    j->t_arrival = now_s();
    atomic_fetch_add(&s->live, 1);
    return j;
}

void serve_job_release(serve_job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    const bool last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last) return;
    serve_scheduler *s = j->sched;
    serve_answer_free(j->answer);
    serve_request_free(&j->req);
    serve_buf_free(&j->out);
    pthread_mutex_destroy(&j->mu);
    free(j);
    atomic_fetch_sub(&s->live, 1);
}

/* Appends bytes for the connection (under the job's lock) and resumes it if it waits. */
static void deliver(serve_job *j, const char *data, size_t len, bool finished, int status) {
    pthread_mutex_lock(&j->mu);
    if (len && !serve_buf_append(&j->out, data, len)) atomic_store(&j->gone, true); /* out of memory: give up */
    if (finished) j->finished = true, j->status = status;
    if (j->suspended && j->conn) {
        j->suspended = false;
        MHD_resume_connection(j->conn);
    }
    pthread_mutex_unlock(&j->mu);
}

static void fail_job(serve_job *j, int status, const char *param, const char *reason, const char *code) {
    serve_error err;
    serve_fail(&err, status, param, "%s", reason);
    err.code = code;
    char *body = serve_error_json(&err);
    pthread_mutex_lock(&j->mu);
    const bool streaming = j->accepted && j->req.stream;
    pthread_mutex_unlock(&j->mu);
    if (streaming) {
        /* the 200 and earlier events are out: an error event ends the stream (the openai SDK raises APIError) */
        serve_buf ev = {0};
        if (body && serve_buf_append(&ev, "data: ", 6) && serve_buf_append(&ev, body, strlen(body)) &&
            serve_buf_append(&ev, "\n\n", 2))
            deliver(j, ev.data, ev.len, true, status);
        else deliver(j, NULL, 0, true, status);
        serve_buf_free(&ev);
    } else {
        deliver(j, body ? body : "", body ? strlen(body) : 0, true, status);
    }
    free(body);
}

static bool on_text(const char *text, size_t len, void *user) {
    serve_job *j = user;
    if (atomic_load(&j->gone)) return false;
    serve_buf *tmp = &j->sched->scratch;
    tmp->len = 0;
    if (!serve_answer_feed(j->answer, text, len, tmp)) return false;
    if (tmp->len) deliver(j, tmp->data, tmp->len, false, 200);
    return true;
}

static void on_token(const tandem_token_logprob *lp, void *user) {
    serve_job *j = user;
    if (!serve_answer_token(j->answer, lp)) atomic_store(&j->gone, true); /* out of memory: give up */
}

/* The engine refused the request at add: the error a client should see. */
static int add_error_status(tandem_status st) { return st == TANDEM_ERR_NO_MEMORY || st == TANDEM_ERR_IO ? 500 : 400; }

static void finish_pending(serve_scheduler *s) {
    pthread_mutex_lock(&s->mu);
    s->pending--;
    pthread_mutex_unlock(&s->mu);
}

/* Queues the job in the engine: true if it is now the engine's (in the active list). */
static bool start_job(serve_scheduler *s, serve_job *j) {
    if (atomic_load(&j->gone)) {
        serve_metrics_cancelled(s->metrics);
        return false;
    }
    tandem_gen_params gp = j->req.gen;
    gp.on_text = on_text;
    gp.on_token = on_token;
    gp.user = j;
    tandem_status st = tandem_engine_add(s->engine, j->req.prompt_ids, j->req.n_prompt, &gp, &j->engine_id);
    if (st) {
        char reason[600];
        if (st == TANDEM_ERR_CONTEXT_FULL)
            snprintf(reason, sizeof reason, "the prompt's %zu tokens do not fit a slot's context", j->req.n_prompt);
        else snprintf(reason, sizeof reason, "%s", tandem_last_error());
        fail_job(j, add_error_status(st), st == TANDEM_ERR_CONTEXT_FULL ? "messages" : "", reason,
                 st == TANDEM_ERR_CONTEXT_FULL ? "context_length_exceeded" : NULL);
        return false;
    }
    pthread_mutex_lock(&j->mu);
    j->accepted = true;
    if (j->suspended && j->conn) {
        j->suspended = false;
        MHD_resume_connection(j->conn);
    }
    pthread_mutex_unlock(&j->mu);
    return true;
}

/* The job's request is done in the engine: its last bytes (or its error) go to the connection. */
static void end_job(serve_scheduler *s, serve_job *j) {
    tandem_gen_result res;
    tandem_status st = tandem_engine_result(s->engine, j->engine_id, &res);
    if (atomic_load(&j->gone)) {
        serve_metrics_cancelled(s->metrics);
        if (st == TANDEM_OK) tandem_gen_result_free(&res);
        deliver(j, NULL, 0, true, 499);
        return;
    }
    if (st) {
        char reason[600];
        snprintf(reason, sizeof reason, "generation failed: %s", tandem_last_error());
        fail_job(j, 500, "", reason, NULL);
        return;
    }
    serve_metrics_generation(s->metrics, &res, now_s() - j->t_arrival);
    serve_buf *tmp = &s->scratch;
    tmp->len = 0;
    if (serve_answer_finish(j->answer, &res, tmp)) deliver(j, tmp->data, tmp->len, true, 200);
    else fail_job(j, 500, "", "out of memory while writing the answer", NULL);
    tandem_gen_result_free(&res);
}

/* libmicrohttpd does not poll a suspended connection, so a client that leaves while it waits (for a non-streamed
 * answer, or for a stream's next event) would be noticed only when there is something to write: its socket is peeked
 * here, between engine steps, while the job's lock keeps the connection suspended (and its socket open). The end of
 * the client's input or an error means it went away. */
static void check_client(serve_job *j) {
    pthread_mutex_lock(&j->mu);
    if (j->suspended && j->conn && !atomic_load(&j->gone)) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(j->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        char c;
        const ssize_t n = ci ? recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) : 1;
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            atomic_store(&j->gone, true);
    }
    pthread_mutex_unlock(&j->mu);
}

static void *engine_main(void *arg) {
    serve_scheduler *s = arg;
    serve_job *active = NULL; /* the engine's requests, linked by next */
    bool idle = true;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->inbox && !s->wake && idle && !active && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
        serve_job *in = s->inbox;
        s->inbox = s->inbox_tail = NULL;
        s->wake = false;
        const bool stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop && !in && !active) break;

        while (in) {
            serve_job *j = in;
            in = in->next;
            if (start_job(s, j)) {
                j->next = active;
                active = j;
            } else {
                finish_pending(s);
                serve_job_release(j);
            }
        }
        for (serve_job *j = active; j; j = j->next) {
            check_client(j);
            if (atomic_load(&j->gone) && !j->cancel_sent) {
                tandem_engine_cancel(s->engine, j->engine_id);
                j->cancel_sent = true;
            }
        }
        if (active) {
            tandem_status st = tandem_engine_step(s->engine, &idle);
            if (st) fprintf(stderr, "tandem serve: engine step failed: %s\n", tandem_last_error());
        }
        /* the gauges first: a client that has its answer may read /metrics at once */
        int waiting = 0, running = 0;
        serve_job *done = NULL;
        for (serve_job **p = &active; *p;) {
            serve_job *j = *p;
            tandem_request_state state = tandem_engine_request_state(s->engine, j->engine_id);
            if (state == TANDEM_REQUEST_DONE || state == TANDEM_REQUEST_UNKNOWN) {
                *p = j->next;
                j->next = done;
                done = j;
                continue;
            }
            if (state == TANDEM_REQUEST_QUEUED) waiting++;
            else running++;
            p = &j->next;
        }
        if (!active) idle = true;
        tandem_engine_usage kv;
        tandem_engine_get_usage(s->engine, &kv);
        serve_metrics_gauges(s->metrics, waiting, running, &kv);
        while (done) {
            serve_job *j = done;
            done = done->next;
            end_job(s, j);
            finish_pending(s);
            serve_job_release(j);
        }
    }
    return NULL;
}

serve_scheduler *serve_scheduler_start(tandem_engine *engine, int32_t n_slots, int32_t queue_max,
                                       serve_metrics *metrics) {
    serve_scheduler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    atomic_init(&s->live, 0);
    s->engine = engine;
    s->n_slots = n_slots;
    s->capacity = n_slots + queue_max;
    s->metrics = metrics;
    tandem_engine_usage kv; /* the gauges before the first request (the engine thread keeps them after each step) */
    tandem_engine_get_usage(engine, &kv);
    serve_metrics_gauges(metrics, 0, 0, &kv);
    if (pthread_create(&s->thread, NULL, engine_main, s)) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return NULL;
    }
    return s;
}

bool serve_scheduler_submit(serve_scheduler *s, serve_job *j) {
    pthread_mutex_lock(&s->mu);
    const bool room = s->pending < s->capacity && !s->stop;
    if (room) {
        s->pending++;
        pthread_mutex_lock(&j->mu);
        j->refs++; /* the engine thread's */
        pthread_mutex_unlock(&j->mu);
        j->next = NULL;
        if (s->inbox_tail) s->inbox_tail->next = j;
        else s->inbox = j;
        s->inbox_tail = j;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return room;
}

void serve_scheduler_wake(serve_scheduler *s) {
    pthread_mutex_lock(&s->mu);
    s->wake = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int serve_scheduler_live_jobs(serve_scheduler *s) { return atomic_load(&s->live); }

void serve_scheduler_stop(serve_scheduler *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    serve_buf_free(&s->scratch);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
