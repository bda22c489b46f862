/* metrics.c — the counters, histograms and gauges of GET /metrics, behind one mutex (HTTP threads count responses,
 * the engine thread generations and gauges), rendered in Prometheus' text format. */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

/* Bucket bounds in seconds, those vLLM uses for the same histograms, so dashboards made for it read these. */
static const double TTFT_BOUNDS[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                     1.0,   2.5,   5.0,  7.5,  10,   20,   40,   80,  160,  640, 2560};
static const double TPOT_BOUNDS[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
                                     0.75, 1.0,   2.5,  5.0,   7.5, 10,   20,  40,  80};
static const double E2E_BOUNDS[] = {0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10,   15,  20,
                                    30,  40,  50,  60,  120, 240, 480, 960, 1920, 7680};
#define MAX_BOUNDS 24

typedef struct histogram {
    const double *bounds;
    int n_bounds;
    uint64_t counts[MAX_BOUNDS]; /* per bucket, not cumulative (rendering sums them) */
    uint64_t count;
    double sum;
} histogram;

static void histogram_add(histogram *h, double x) {
    for (int i = 0; i < h->n_bounds; i++)
        if (x <= h->bounds[i]) {
            h->counts[i]++;
            break;
        }
    h->count++;
    h->sum += x;
}

#define MAX_RESPONSE_KINDS 64
#define N_FINISH (TANDEM_FINISH_ABORTED + 1)

struct serve_metrics {
    pthread_mutex_t mu;
    struct {
        const char *route; /* static strings */
        int status;
        uint64_t n;
    } responses[MAX_RESPONSE_KINDS];
    int n_responses;
    uint64_t finished[N_FINISH];
    uint64_t cancelled;
    uint64_t prompt_tokens, reused_tokens, generated_tokens, drafted, accepted;
    histogram ttft, tpot, e2e;
    int waiting, running;
    int64_t kv_rows_running, kv_rows_cached, kv_rows_total;
    uint64_t image_tokens, image_tokens_cached;
    int64_t image_cache_bytes, image_cache_hits, image_cache_misses;
    int32_t image_cache_entries;
};

serve_metrics *serve_metrics_create(void) {
    serve_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    pthread_mutex_init(&m->mu, NULL);
    m->ttft = (histogram){.bounds = TTFT_BOUNDS, .n_bounds = sizeof TTFT_BOUNDS / sizeof *TTFT_BOUNDS};
    m->tpot = (histogram){.bounds = TPOT_BOUNDS, .n_bounds = sizeof TPOT_BOUNDS / sizeof *TPOT_BOUNDS};
    m->e2e = (histogram){.bounds = E2E_BOUNDS, .n_bounds = sizeof E2E_BOUNDS / sizeof *E2E_BOUNDS};
    return m;
}

void serve_metrics_free(serve_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void serve_metrics_response(serve_metrics *m, const char *route, int status) {
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_responses && !(m->responses[i].status == status && !strcmp(m->responses[i].route, route))) i++;
    if (i == m->n_responses && i < MAX_RESPONSE_KINDS) {
        m->responses[i].route = route;
        m->responses[i].status = status;
        m->responses[i].n = 0;
        m->n_responses++;
    }
    if (i < m->n_responses) m->responses[i].n++;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_generation(serve_metrics *m, const tandem_gen_result *res, double e2e_s) {
    const tandem_timings *t = &res->timings;
    pthread_mutex_lock(&m->mu);
    if ((int)res->finish >= 0 && (int)res->finish < N_FINISH) m->finished[res->finish]++;
    m->prompt_tokens += (uint64_t)t->n_prompt;
    m->reused_tokens += (uint64_t)t->n_prompt_reused;
    m->generated_tokens += (uint64_t)t->n_generated;
    m->image_tokens += (uint64_t)t->n_image_tokens;
    m->image_tokens_cached += (uint64_t)t->n_image_tokens_cached;
    if (res->speculative) {
        m->drafted += (uint64_t)res->spec_stats.n_drafted;
        m->accepted += (uint64_t)res->spec_stats.n_accepted;
    }
    if (t->n_generated > 0) histogram_add(&m->ttft, t->ttft_ms / 1e3);
    if (t->n_generated > 1) histogram_add(&m->tpot, t->decode_ms / 1e3 / (t->n_generated - 1));
    histogram_add(&m->e2e, e2e_s);
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_cancelled(serve_metrics *m) {
    pthread_mutex_lock(&m->mu);
    m->cancelled++;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_gauges(serve_metrics *m, int waiting, int running, const tandem_engine_usage *kv) {
    pthread_mutex_lock(&m->mu);
    m->waiting = waiting;
    m->running = running;
    m->kv_rows_running = kv->rows_running;
    m->kv_rows_cached = kv->rows_cached;
    m->kv_rows_total = kv->rows_total;
    m->image_cache_bytes = kv->image_cache_bytes;
    m->image_cache_entries = kv->image_cache_entries;
    m->image_cache_hits = kv->image_cache_hits;
    m->image_cache_misses = kv->image_cache_misses;
    pthread_mutex_unlock(&m->mu);
}

static void put(serve_buf *b, bool *ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(serve_buf *b, bool *ok, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line || !serve_buf_append(b, line, (size_t)n)) *ok = false;
}

static void put_histogram(serve_buf *b, bool *ok, const char *name, const char *help, const histogram *h) {
    put(b, ok, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (int i = 0; i < h->n_bounds; i++) {
        cumulative += h->counts[i];
        put(b, ok, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cumulative);
    }
    put(b, ok, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
    put(b, ok, "%s_sum %.6f\n%s_count %llu\n", name, h->sum, name, (unsigned long long)h->count);
}

static void put_counter(serve_buf *b, bool *ok, const char *name, const char *help, uint64_t v) {
    put(b, ok, "# HELP %s %s\n# TYPE %s counter\n%s_total %llu\n", name, help, name, name, (unsigned long long)v);
}

/* Escapes a label value (backslash, quote, newline) into out. */
static void label_value(const char *s, char *out, size_t cap) {
    size_t o = 0;
    for (; *s && o + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') out[o++] = '\\', out[o++] = *s;
        else if (*s == '\n') out[o++] = '\\', out[o++] = 'n';
        else out[o++] = *s;
    }
    out[o] = '\0';
}

char *serve_metrics_render(serve_metrics *m, const char *model_name, size_t *len) {
    char model[256];
    label_value(model_name, model, sizeof model);
    serve_buf b = {0};
    bool ok = true;
    pthread_mutex_lock(&m->mu);
    put(&b, &ok, "# HELP tandem_http_responses HTTP responses by route and status\n");
    put(&b, &ok, "# TYPE tandem_http_responses counter\n");
    for (int i = 0; i < m->n_responses; i++)
        put(&b, &ok, "tandem_http_responses_total{route=\"%s\",code=\"%d\"} %llu\n", m->responses[i].route,
            m->responses[i].status, (unsigned long long)m->responses[i].n);
    put(&b, &ok, "# HELP tandem_requests_finished Generations ended, by finish reason\n");
    put(&b, &ok, "# TYPE tandem_requests_finished counter\n");
    for (int f = 0; f < N_FINISH; f++)
        put(&b, &ok, "tandem_requests_finished_total{finish_reason=\"%s\"} %llu\n",
            f == TANDEM_FINISH_NONE ? "none" : tandem_finish_name((tandem_finish)f),
            (unsigned long long)m->finished[f]);
    put_counter(&b, &ok, "tandem_requests_cancelled", "Requests whose client went away before the answer ended",
                m->cancelled);
    put_counter(&b, &ok, "tandem_prompt_tokens", "Prompt tokens of finished generations", m->prompt_tokens);
    put_counter(&b, &ok, "tandem_prompt_tokens_reused",
                "Prompt tokens found in a slot's KV cache (prefix-cache hits) and not evaluated again",
                m->reused_tokens);
    put_counter(&b, &ok, "tandem_generation_tokens", "Generated tokens", m->generated_tokens);
    put_counter(&b, &ok, "tandem_prompt_image_tokens", "Image tokens of finished generations' prompts",
                m->image_tokens);
    put_counter(&b, &ok, "tandem_prompt_image_tokens_cached",
                "Image tokens whose rows came from the encoded-image cache instead of the vision tower",
                m->image_tokens_cached);
    put_counter(&b, &ok, "tandem_image_cache_hits", "Images found in the encoded-image cache",
                (uint64_t)m->image_cache_hits);
    put_counter(&b, &ok, "tandem_image_cache_misses", "Images the vision tower encoded",
                (uint64_t)m->image_cache_misses);
    put(&b, &ok,
        "# HELP tandem_image_cache_bytes Bytes of encoded images kept\n# TYPE tandem_image_cache_bytes gauge\n");
    put(&b, &ok, "tandem_image_cache_bytes %lld\n", (long long)m->image_cache_bytes);
    put(&b, &ok, "# HELP tandem_image_cache_images Encoded images kept\n# TYPE tandem_image_cache_images gauge\n");
    put(&b, &ok, "tandem_image_cache_images %d\n", m->image_cache_entries);
    put_counter(&b, &ok, "tandem_spec_draft_tokens", "Tokens proposed by speculative decoding", m->drafted);
    put_counter(&b, &ok, "tandem_spec_accepted_tokens", "Proposed tokens the target kept", m->accepted);
    put_histogram(&b, &ok, "tandem_time_to_first_token_seconds",
                  "From a request's arrival in the engine to its first token", &m->ttft);
    put_histogram(&b, &ok, "tandem_time_per_output_token_seconds", "Decoding time per token after the first", &m->tpot);
    put_histogram(&b, &ok, "tandem_e2e_request_latency_seconds", "From a request's arrival to its end", &m->e2e);
    put(&b, &ok, "# HELP tandem_requests_waiting Requests queued for a slot\n# TYPE tandem_requests_waiting gauge\n");
    put(&b, &ok, "tandem_requests_waiting %d\n", m->waiting);
    put(&b, &ok, "# HELP tandem_requests_running Requests in a slot\n# TYPE tandem_requests_running gauge\n");
    put(&b, &ok, "tandem_requests_running %d\n", m->running);
    /* vLLM counts cached prefix blocks that no request holds as free (evictable): so do these */
    const double kv_usage = m->kv_rows_total > 0 ? (double)m->kv_rows_running / (double)m->kv_rows_total : 0;
    put(&b, &ok, "# HELP tandem_kv_cache_rows KV-cache rows (token positions) of the slots\n");
    put(&b, &ok, "# TYPE tandem_kv_cache_rows gauge\n");
    put(&b, &ok, "tandem_kv_cache_rows{state=\"running\"} %lld\n", (long long)m->kv_rows_running);
    put(&b, &ok, "tandem_kv_cache_rows{state=\"cached\"} %lld\n", (long long)m->kv_rows_cached);
    put(&b, &ok, "tandem_kv_cache_rows{state=\"total\"} %lld\n", (long long)m->kv_rows_total);
    put(&b, &ok, "# HELP tandem_kv_cache_usage_ratio Share of the KV-cache rows held by running requests\n");
    put(&b, &ok, "# TYPE tandem_kv_cache_usage_ratio gauge\ntandem_kv_cache_usage_ratio %.6f\n", kv_usage);
    /* vLLM's names, as llm-d / KServe scorers and KEDA recipes query them */
    put(&b, &ok, "# HELP vllm:num_requests_waiting Requests queued for a slot\n");
    put(&b, &ok, "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"%s\"} %d\n", model,
        m->waiting);
    put(&b, &ok, "# HELP vllm:num_requests_running Requests in a slot\n");
    put(&b, &ok, "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"%s\"} %d\n", model,
        m->running);
    put(&b, &ok, "# HELP vllm:kv_cache_usage_perc KV-cache usage (1 = full)\n");
    put(&b, &ok, "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name=\"%s\"} %.6f\n", model,
        kv_usage);
    /* its name before vLLM 0.10, which older gateway releases read */
    put(&b, &ok, "# HELP vllm:gpu_cache_usage_perc KV-cache usage (1 = full)\n");
    put(&b, &ok, "# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc{model_name=\"%s\"} %.6f\n", model,
        kv_usage);
    put(&b, &ok, "# HELP vllm:prefix_cache_queries Prompt tokens looked up in the prefix cache\n");
    put(&b, &ok, "# TYPE vllm:prefix_cache_queries counter\nvllm:prefix_cache_queries_total{model_name=\"%s\"} %llu\n",
        model, (unsigned long long)m->prompt_tokens);
    put(&b, &ok, "# HELP vllm:prefix_cache_hits Prompt tokens found in the prefix cache\n");
    put(&b, &ok, "# TYPE vllm:prefix_cache_hits counter\nvllm:prefix_cache_hits_total{model_name=\"%s\"} %llu\n", model,
        (unsigned long long)m->reused_tokens);
    pthread_mutex_unlock(&m->mu);
    if (!ok) {
        serve_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return b.data;
}
