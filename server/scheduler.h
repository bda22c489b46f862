/* scheduler.h — the engine thread of `tandem serve` and the jobs it shares with the HTTP threads: a parsed request
 * goes in, its answer's bytes come out into the job's buffer, and the job's suspended connection is resumed. */
#ifndef TANDEM_SERVE_SCHEDULER_H
#define TANDEM_SERVE_SCHEDULER_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "metrics.h"
#include "serve.h"

typedef struct serve_scheduler serve_scheduler;

/* One generation request. Held by the HTTP request that made it, by the engine thread while the engine has it, and
 * by a streaming response: freed when the last lets go (serve_job_release). */
typedef struct serve_job {
    pthread_mutex_t mu; /* guards the fields up to `out`'s reader position */
    int refs;
    struct MHD_Connection *conn; /* NULL once the HTTP request has ended */
    bool suspended;              /* conn waits for this job: whoever changes the job resumes it */
    bool accepted;               /* the engine took the request (a stream may answer 200 and start) */
    bool finished;               /* out holds the whole answer (or the error) */
    int status;                  /* the HTTP status of a non-streamed answer or of an error before the stream */
    bool stream_error;           /* the request failed after its stream had started: out ends with an error event */
    serve_buf out;               /* the body (not streaming) or the events not yet read (streaming) */
    size_t sent;                 /* bytes of out the stream has handed to the connection */
    atomic_bool gone;            /* the client went away: cancel */

    /* set before submission, then the engine thread's */
    serve_scheduler *sched;
    serve_request req;
    serve_answer *answer;
    double t_arrival; /* seconds, monotonic */
    int64_t engine_id;
    bool cancel_sent;
    struct serve_job *next;
} serve_job;

/* A job holding req (moved in: the job frees it) and one reference, the caller's. NULL when out of memory. */
serve_job *serve_job_create(serve_scheduler *s, serve_request *req, struct MHD_Connection *conn,
                            const char *model_name);
void serve_job_release(serve_job *j);

/* Starts the engine thread on engine (which it then owns until serve_scheduler_stop). queue_max: requests that may
 * wait beyond n_slots before submissions are refused. NULL when the thread cannot start. */
serve_scheduler *serve_scheduler_start(tandem_engine *engine, int32_t n_slots, int32_t queue_max,
                                       serve_metrics *metrics);
/* Hands the job to the engine thread (which takes its own reference). false: the queue is full. */
bool serve_scheduler_submit(serve_scheduler *s, serve_job *j);
/* A job's client went away (j->gone is set): wakes the engine thread to cancel it. */
void serve_scheduler_wake(serve_scheduler *s);
int serve_scheduler_live_jobs(serve_scheduler *s); /* jobs not yet freed: 0 once every answer was delivered */
/* Stops the engine thread once nothing is left to do, and joins it. */
void serve_scheduler_stop(serve_scheduler *s);

#endif
