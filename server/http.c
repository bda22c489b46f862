/* http.c — `tandem serve`'s HTTP side on libmicrohttpd: the daemon, routes, authentication, body limits, readiness
 * and drain; generation requests wait for the engine thread suspended (no thread held per request or stream). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "scheduler.h"
#include "server.h"

enum { STATE_LOADING, STATE_READY, STATE_DRAINING };

struct serve_server {
    struct MHD_Daemon *daemon;
    serve_http_params p;
    char *api_key; /* NULL: open */
    atomic_int state;
    int port;
    int64_t created;
    const serve_model *model;
    const serve_limits *limits;
    serve_metrics *metrics;
    serve_scheduler *sched;
    tandem_engine *engine;
};

typedef enum route {
    ROUTE_CHAT,
    ROUTE_COMPLETIONS,
    ROUTE_MODELS,
    ROUTE_MODEL, /* /v1/models/{id} */
    ROUTE_HEALTH,
    ROUTE_METRICS,
    ROUTE_PAGE, /* GET /: the chat page */
    ROUTE_OTHER,
} route;

/* server/page/chat.html, embedded at build time (server/page/embed.cmake) */
extern const unsigned char serve_chat_page[];
extern const size_t serve_chat_page_len;

static const char *const ROUTE_NAMES[] = {
    "/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/models/{id}", "/health", "/metrics", "/", "other"};

/* One HTTP request's state across the handler's calls (MHD's req_cls). */
typedef struct http_request {
    route route;
    bool responded; /* a response is queued: the rest of the body is read and dropped */
    bool too_large;
    size_t dropped; /* body bytes read past the limit */
    serve_buf body;
    serve_job *job;
} http_request;

serve_http_params serve_http_default_params(void) {
    return (serve_http_params){.host = "127.0.0.1",
                               .port = 8080,
                               .n_threads = 4,
                               .queue_max = 64,
                               .idle_timeout_s = 30,
                               .per_ip_connections = 256,
                               .max_connections = 1024,
                               .connection_memory = 64 * 1024};
}

/* ---- responses ---- */

static enum MHD_Result send_bytes(serve_server *s, struct MHD_Connection *conn, route r, int status, const char *type,
                                  const char *body, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == 500) MHD_add_response_header(resp, "x-should-retry", "false"); /* a long generation is not re-run */
    if (status == 503 || status == 429) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == 405)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                r == ROUTE_CHAT || r == ROUTE_COMPLETIONS ? "POST" : "GET");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    serve_metrics_response(s->metrics, ROUTE_NAMES[r], status);
    return ret;
}

static enum MHD_Result send_json(serve_server *s, struct MHD_Connection *conn, route r, int status, json_t *obj) {
    char *text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!text) return MHD_NO;
    enum MHD_Result ret = send_bytes(s, conn, r, status, "application/json", text, strlen(text));
    free(text);
    return ret;
}

static enum MHD_Result send_error(serve_server *s, struct MHD_Connection *conn, route r, const serve_error *err) {
    char *body = serve_error_json(err);
    if (!body) return MHD_NO;
    enum MHD_Result ret = send_bytes(s, conn, r, err->status, "application/json", body, strlen(body));
    free(body);
    return ret;
}

static enum MHD_Result fail(serve_server *s, struct MHD_Connection *conn, route r, int status, const char *param,
                            const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static enum MHD_Result fail(serve_server *s, struct MHD_Connection *conn, route r, int status, const char *param,
                            const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    serve_error err;
    serve_fail(&err, status, param, "%s", msg);
    return send_error(s, conn, r, &err);
}

/* ---- streams ---- */

/* MHD asks for more of a stream: what the engine thread appended, or the end, or nothing yet (then the connection is
 * suspended until the engine thread appends more and resumes it). */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    serve_job *j = cls;
    pthread_mutex_lock(&j->mu);
    if (j->sent < j->out.len) {
        size_t n = j->out.len - j->sent;
        if (n > max) n = max;
        memcpy(buf, j->out.data + j->sent, n);
        j->sent += n;
        if (j->sent == j->out.len) j->out.len = j->sent = 0, j->out.data[0] = '\0';
        pthread_mutex_unlock(&j->mu);
        return (ssize_t)n;
    }
    if (j->finished) {
        pthread_mutex_unlock(&j->mu);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    j->suspended = true;
    MHD_suspend_connection(j->conn);
    pthread_mutex_unlock(&j->mu);
    return 0;
}

static void stream_free(void *cls) { serve_job_release(cls); }

/* ---- generation requests ---- */

/* The job's state decides: its error or whole answer, the start of its stream, or waiting (suspended) for the engine
 * thread, which resumes the connection when that changes. */
static enum MHD_Result answer_job(serve_server *s, struct MHD_Connection *conn, http_request *hr) {
    serve_job *j = hr->job;
    pthread_mutex_lock(&j->mu);
    if (j->finished && !(j->req.stream && j->accepted)) {
        const int status = j->status;
        serve_buf out = j->out;
        j->out = (serve_buf){0};
        pthread_mutex_unlock(&j->mu);
        enum MHD_Result ret = send_bytes(s, conn, hr->route, status, "application/json", out.data ? out.data : "",
                                         out.len);
        serve_buf_free(&out);
        return ret;
    }
    if (j->req.stream && j->accepted) {
        j->refs++; /* the response's */
        pthread_mutex_unlock(&j->mu);
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, j,
                                                                      stream_free);
        if (!resp) {
            serve_job_release(j);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no"); /* nginx: pass events on at once */
        enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        serve_metrics_response(s->metrics, ROUTE_NAMES[hr->route], 200);
        return ret;
    }
    j->suspended = true;
    MHD_suspend_connection(conn);
    pthread_mutex_unlock(&j->mu);
    return MHD_YES;
}

static enum MHD_Result start_generation(serve_server *s, struct MHD_Connection *conn, http_request *hr) {
    serve_request req;
    serve_error err;
    memset(&err, 0, sizeof err);
    const serve_route sr = hr->route == ROUTE_CHAT ? SERVE_CHAT_COMPLETIONS : SERVE_COMPLETIONS;
    if (!serve_request_parse(s->model, s->limits, sr, hr->body.data ? hr->body.data : "", hr->body.len, &req, &err))
        return send_error(s, conn, hr->route, &err);
    serve_buf_free(&hr->body);
    serve_job *j = serve_job_create(s->sched, &req, conn, s->model->name);
    if (!j) {
        serve_request_free(&req);
        return fail(s, conn, hr->route, 500, "", "out of memory");
    }
    /* after the job counts as live, so that a drain waiting for no live jobs cannot miss it */
    if (atomic_load(&s->state) != STATE_READY) {
        serve_job_release(j);
        return fail(s, conn, hr->route, 503, "", "the server is shutting down");
    }
    if (!serve_scheduler_submit(s->sched, j)) {
        serve_job_release(j);
        return fail(s, conn, hr->route, 503, "", "the server is busy: every slot is taken and the queue is full");
    }
    hr->job = j;
    return answer_job(s, conn, hr);
}

/* ---- the other routes ---- */

static json_t *model_object(const serve_server *s) {
    return json_pack("{s:s, s:s, s:I, s:s}", "id", s->model->name, "object", "model", "created", (json_int_t)s->created,
                     "owned_by", "tandem");
}

static enum MHD_Result answer_get(serve_server *s, struct MHD_Connection *conn, route r, const char *url) {
    const int state = atomic_load(&s->state);
    if (r == ROUTE_HEALTH) {
        const char *status = state == STATE_READY ? "ok" : state == STATE_LOADING ? "loading" : "draining";
        return send_json(s, conn, r, state == STATE_READY ? 200 : 503, json_pack("{s:s}", "status", status));
    }
    if (r == ROUTE_METRICS) {
        size_t len;
        char *text = serve_metrics_render(s->metrics, s->model ? s->model->name : "", &len);
        if (!text) return MHD_NO;
        enum MHD_Result ret = send_bytes(s, conn, r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
        free(text);
        return ret;
    }
    if (r == ROUTE_PAGE)
        return send_bytes(s, conn, r, 200, "text/html; charset=utf-8", (const char *)serve_chat_page,
                          serve_chat_page_len);
    if (r == ROUTE_MODELS)
        return send_json(s, conn, r, 200, json_pack("{s:s, s:[o]}", "object", "list", "data", model_object(s)));
    /* ROUTE_MODEL */
    const char *id = url + strlen("/v1/models/");
    if (strcmp(id, s->model->name) != 0)
        return fail(s, conn, r, 404, "model", "The model '%.200s' does not exist (this server has '%.200s')", id,
                    s->model->name);
    return send_json(s, conn, r, 200, model_object(s));
}

/* ---- the handler ---- */

static route route_of(const char *url) {
    if (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/chat/completions")) return ROUTE_CHAT;
    if (!strcmp(url, "/v1/completions") || !strcmp(url, "/completions")) return ROUTE_COMPLETIONS;
    if (!strcmp(url, "/v1/models") || !strcmp(url, "/models")) return ROUTE_MODELS;
    if (!strncmp(url, "/v1/models/", 11) && url[11]) return ROUTE_MODEL;
    if (!strcmp(url, "/health")) return ROUTE_HEALTH;
    if (!strcmp(url, "/metrics")) return ROUTE_METRICS;
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) return ROUTE_PAGE;
    return ROUTE_OTHER;
}

/* Compares without an early exit, so the time taken says nothing about how much of the key was right. */
static bool same_secret(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = la != lb;
    for (size_t i = 0; i < la; i++) diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return diff == 0;
}

static bool authorized(const serve_server *s, struct MHD_Connection *conn) {
    if (!s->api_key) return true;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    while (*h == ' ') h++;
    return same_secret(h, s->api_key);
}

/* The first call, with the headers: everything that can be refused before the body. */
static enum MHD_Result on_headers(serve_server *s, struct MHD_Connection *conn, http_request *hr, const char *url,
                                  const char *method) {
    const route r = hr->route;
    const bool is_post = !strcmp(method, MHD_HTTP_METHOD_POST);
    const bool is_get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
    hr->responded = true; /* unless the body is wanted, below */
    if (r == ROUTE_OTHER) return fail(s, conn, r, 404, "", "No route %.200s %.300s", method, url);
    const bool generation = r == ROUTE_CHAT || r == ROUTE_COMPLETIONS;
    if (generation ? !is_post : !is_get)
        return fail(s, conn, r, 405, "", "%.200s does not take %.20s (use %s)", url, method,
                    generation ? "POST" : "GET");
    if (r == ROUTE_HEALTH || r == ROUTE_METRICS || r == ROUTE_PAGE) { /* open: the page's own calls carry the key */
        hr->responded = false; /* answered once the request is read: the connection can then stay open */
        return MHD_YES;
    }
    if (!authorized(s, conn)) {
        serve_error err;
        serve_fail(&err, 401, "", "Incorrect API key provided: send the server's key as 'Authorization: Bearer KEY'");
        err.code = "invalid_api_key";
        return send_error(s, conn, r, &err);
    }
    const int state = atomic_load(&s->state);
    if (state != STATE_READY)
        return fail(s, conn, r, 503, "",
                    state == STATE_LOADING ? "the model is loading" : "the server is shutting down");
    if (!generation) {
        hr->responded = false;
        return MHD_YES;
    }
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || end == cl || n > s->limits->max_body_bytes)
            return fail(s, conn, r, 413, "", "the request body is larger than the limit of %zu bytes",
                        s->limits->max_body_bytes);
    }
    hr->responded = false;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls) {
    (void)version;
    serve_server *s = cls;
    http_request *hr = *req_cls;
    if (!hr) {
        if (!(hr = calloc(1, sizeof *hr))) return MHD_NO;
        *req_cls = hr;
        hr->route = route_of(url);
        return on_headers(s, conn, hr, url, method);
    }
    if (*upload_data_size) {
        const size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (hr->responded || hr->too_large) {
            /* dropped; a sender that goes on long past the limit is cut off */
            hr->dropped += n;
            return hr->dropped > 16 * s->limits->max_body_bytes + (1u << 20) ? MHD_NO : MHD_YES;
        }
        if (hr->body.len + n > s->limits->max_body_bytes) {
            hr->too_large = true;
            serve_buf_free(&hr->body);
            return MHD_YES;
        }
        return serve_buf_append(&hr->body, upload_data, n) ? MHD_YES : MHD_NO;
    }
    if (hr->job) return answer_job(s, conn, hr); /* resumed by the engine thread */
    if (hr->responded) return MHD_YES;
    if (hr->too_large) {
        hr->responded = true;
        return fail(s, conn, hr->route, 413, "", "the request body is larger than the limit of %zu bytes",
                    s->limits->max_body_bytes);
    }
    hr->responded = true; /* a response is queued now, or start_generation suspends for the job */
    if (hr->route != ROUTE_CHAT && hr->route != ROUTE_COMPLETIONS) return answer_get(s, conn, hr->route, url);
    return start_generation(s, conn, hr);
}

/* The request ended: answered, or the client went away (then its generation is cancelled and its slot freed). */
static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe) {
    (void)conn;
    serve_server *s = cls;
    http_request *hr = *req_cls;
    if (!hr) return;
    if (hr->job) {
        serve_job *j = hr->job;
        pthread_mutex_lock(&j->mu);
        j->conn = NULL;
        const bool done = j->finished;
        pthread_mutex_unlock(&j->mu);
        if (!done || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
            atomic_store(&j->gone, true);
            serve_scheduler_wake(s->sched);
        }
        serve_job_release(j);
    }
    serve_buf_free(&hr->body);
    free(hr);
    *req_cls = NULL;
}

/* ---- the server ---- */

/* SIGINT and SIGTERM: the first wakes serve_server_run through a pipe (whichever thread the signal lands on; a
 * handler can only write()), a second one ends the process from the handler. */
static int signal_pipe[2] = {-1, -1};
static volatile sig_atomic_t signal_count, first_signal;

static void on_signal(int sig) {
    if (signal_count++ > 0) {
        static const char msg[] = "tandem serve: second signal: stopping now\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(128 + sig);
    }
    first_signal = sig;
    const int saved = errno;
    ssize_t w = write(signal_pipe[1], "s", 1);
    (void)w;
    errno = saved;
}

static bool catch_signals(char *err, size_t err_cap) {
    if (signal_pipe[0] < 0 && pipe2(signal_pipe, O_CLOEXEC) != 0) {
        snprintf(err, err_cap, "pipe: %s", strerror(errno));
        return false;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-write is an error return, not the end of the server */
    return true;
}


serve_server *serve_server_start(const serve_http_params *p, char *err, size_t err_cap) {
    serve_server *s = calloc(1, sizeof *s);
    if (!s || !(s->metrics = serve_metrics_create())) {
        snprintf(err, err_cap, "out of memory");
        free(s);
        return NULL;
    }
    s->p = *p;
    if (p->api_key && p->api_key[0]) s->api_key = strdup(p->api_key);
    atomic_init(&s->state, STATE_LOADING);
    s->created = (int64_t)time(NULL);

    if (!catch_signals(err, err_cap)) {
        serve_server_free(s);
        return NULL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", p->port);
    int gai = getaddrinfo(p->host, port, &hints, &ai);
    if (gai) {
        snprintf(err, err_cap, "host %s: %s", p->host, gai_strerror(gai));
        serve_server_free(s);
        return NULL;
    }
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                 MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(p->n_threads > 0 ? p->n_threads : 1),
                                 MHD_OPTION_CONNECTION_TIMEOUT, p->idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                 p->connection_memory, MHD_OPTION_PER_IP_CONNECTION_LIMIT, p->per_ip_connections,
                                 MHD_OPTION_CONNECTION_LIMIT, p->max_connections, MHD_OPTION_NOTIFY_COMPLETED,
                                 on_completed, s, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->daemon) {
        snprintf(err, err_cap, "cannot listen on %s port %d (in use, or not an address of this machine)", p->host,
                 p->port);
        serve_server_free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : p->port;
    return s;
}

int serve_server_port(const serve_server *s) { return s->port; }

bool serve_server_ready(serve_server *s, const serve_model *m, const serve_limits *lim, tandem_engine *engine,
                        int32_t n_slots) {
    s->model = m;
    s->limits = lim;
    s->engine = engine;
    if (!(s->sched = serve_scheduler_start(engine, n_slots, s->p.queue_max, s->metrics))) return false;
    atomic_store(&s->state, STATE_READY);
    return true;
}

int serve_server_run(serve_server *s) {
    char c;
    while (read(signal_pipe[0], &c, 1) != 1) {
    }
    fprintf(stderr, "tandem serve: %s: draining (running requests finish; a second signal stops at once)\n",
            strsignal(first_signal));
    atomic_store(&s->state, STATE_DRAINING);
    while (s->sched && serve_scheduler_live_jobs(s->sched) > 0) {
        const struct timespec tick = {0, 20 * 1000 * 1000};
        nanosleep(&tick, NULL);
    }
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    serve_scheduler_stop(s->sched);
    s->sched = NULL;
    fprintf(stderr, "tandem serve: stopped\n");
    return 0;
}

void serve_server_free(serve_server *s) {
    if (!s) return;
    if (s->daemon) MHD_stop_daemon(s->daemon);
    serve_scheduler_stop(s->sched);
    serve_metrics_free(s->metrics);
    free(s->api_key);
    free(s);
}
