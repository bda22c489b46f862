/* server.h — `tandem serve`'s HTTP server as the CLI drives it: bind and listen (/health answers 503 while the model
 * loads), hand over the model and its engine, then serve until SIGTERM or SIGINT and drain. */
#ifndef TANDEM_SERVE_SERVER_H
#define TANDEM_SERVE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "serve.h"

typedef struct serve_http_params {
    const char *host;            /* numeric address or name to bind ("127.0.0.1") */
    int port;                    /* 0: a free port (serve_server_port says which) */
    const char *api_key;         /* NULL or "": no authentication; else every /v1 route wants "Bearer KEY" */
    int n_threads;               /* the HTTP thread pool (each thread polls its connections with epoll) */
    int queue_max;               /* requests that may wait for a slot; more get 503 with Retry-After */
    unsigned idle_timeout_s;     /* a connection silent this long is closed (slow senders) */
    unsigned per_ip_connections; /* most connections from one address */
    unsigned max_connections;
    size_t connection_memory; /* per connection: headers and buffers (bodies are read in pieces) */
} serve_http_params;
serve_http_params serve_http_default_params(void);

typedef struct serve_server serve_server;

/* Binds host:port and answers at once: /health and the /v1 routes say 503 until serve_server_ready. Takes over
 * SIGINT and SIGTERM (and ignores SIGPIPE) for the process. NULL, with a message in err, when the address cannot be
 * bound. */
serve_server *serve_server_start(const serve_http_params *p, char *err, size_t err_cap);
int serve_server_port(const serve_server *s);
/* The model is loaded: requests go to engine (used only by the server's engine thread from now on). m and lim
 * (and the strings they point to) must outlive the server. false when the engine thread cannot start. */
bool serve_server_ready(serve_server *s, const serve_model *m, const serve_limits *lim, tandem_engine *engine,
                        int32_t n_slots);
/* Serves until SIGTERM or SIGINT, then drains: /health and new requests say 503, requests already taken run to
 * their end and their answers are delivered; then stops and returns 0. A second signal ends the process at once
 * (exit status 128 + signal). */
int serve_server_run(serve_server *s);
void serve_server_free(serve_server *s); /* stops the daemon and the engine thread if still running */

#endif
