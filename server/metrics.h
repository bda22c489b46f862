/* metrics.h — what `tandem serve` counts for GET /metrics: requests by route and status, tokens, timing histograms,
 * and the engine's gauges (also under the names vLLM exports, which Kubernetes inference gateways read). */
#ifndef TANDEM_SERVE_METRICS_H
#define TANDEM_SERVE_METRICS_H

#include <stddef.h>

#include "tandem.h"

typedef struct serve_metrics serve_metrics;

serve_metrics *serve_metrics_create(void); /* NULL when out of memory */
void serve_metrics_free(serve_metrics *m);
/* One answered HTTP request: its route ("/v1/chat/completions", "/health", "other") and status. */
void serve_metrics_response(serve_metrics *m, const char *route, int status);
/* One generation the engine finished; e2e_s from the request's arrival to its end. */
void serve_metrics_generation(serve_metrics *m, const tandem_gen_result *res, double e2e_s);
void serve_metrics_cancelled(serve_metrics *m); /* a client went away before its answer ended */
/* The engine's state after a step: requests queued for a slot, running in one, and its KV-cache rows (token
 * positions): those the running requests hold, those free slots keep for prefix reuse, and all the slots have. */
void serve_metrics_gauges(serve_metrics *m, int waiting, int running, const tandem_engine_usage *kv);
/* Prometheus text exposition format 0.0.4; malloc'd, NULL when out of memory. */
char *serve_metrics_render(serve_metrics *m, const char *model_name, size_t *len);

#endif
