/* sampler.c — turning logits into a token: penalties, temperature, top-k, top-p, min-p, and a seeded
 * generator. The order follows transformers: penalties, temperature, top-k, top-p, min-p, then draw. */
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "runtime.h"

typedef struct candidate {
    int32_t id;
    float logit;  /* after penalties and temperature; later the probability */
} candidate;

struct tandem_sampler {
    tandem_sampler_params p;
    int32_t vocab_size;
    uint64_t rng;          /* splitmix64 state */
    candidate *cand;       /* (vocab_size) */
    int32_t *counts;       /* (vocab_size) occurrences in the penalty window; zero between calls */
    float *work;           /* (vocab_size) penalised logits, then scaled by 1 / temperature for top-k */
    int32_t *top_ids;      /* (vocab_size) top_k_f32's output */
    float *top_vals;       /* (vocab_size) */
};

tandem_sampler_params tandem_sampler_default_params(void) {
    /* For models without generation_config.json: common local-inference defaults. */
    return (tandem_sampler_params){
        .temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .repeat_penalty = 1.0f,
        .repeat_last_n = 64, .presence_penalty = 0.0f, .frequency_penalty = 0.0f,
        .seed = (uint64_t)time(NULL),
    };
}

static uint64_t next_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double next_uniform(uint64_t *state) { return (double)(next_u64(state) >> 11) * 0x1.0p-53; }

double sampler_uniform(tandem_sampler *s) { return next_uniform(&s->rng); }

bool sampler_is_greedy(const tandem_sampler *s) { return s->p.temperature <= 0.0f; }

int32_t sampler_draw(tandem_sampler *s, const float *probs, int32_t n) {
    double total = 0;
    for (int32_t i = 0; i < n; i++) total += probs[i];
    const double r = next_uniform(&s->rng) * total;
    double acc = 0;
    int32_t last = 0;
    for (int32_t i = 0; i < n; i++) {
        if (probs[i] <= 0) continue;
        acc += probs[i];
        last = i;
        if (r < acc) return i;
    }
    return last;
}

tandem_status tandem_sampler_init(const tandem_sampler_params *params, int32_t vocab_size, tandem_sampler **out) {
    *out = NULL;
    const tandem_sampler_params *p = params;
    if (vocab_size < 1) return tandem_fail(TANDEM_ERR_INVALID_ARG, "sampler: vocab_size %d must be ≥ 1", vocab_size);
    if (!(p->temperature >= 0) || !isfinite(p->temperature))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "sampler: temperature %g must be ≥ 0", p->temperature);
    if (p->top_k < 0) return tandem_fail(TANDEM_ERR_INVALID_ARG, "sampler: top_k %d must be ≥ 0", p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "sampler: top_p %g must be in (0, 1]", p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "sampler: min_p %g must be in [0, 1]", p->min_p);
    if (!(p->repeat_penalty > 0) || !isfinite(p->repeat_penalty))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "sampler: repeat_penalty %g must be > 0", p->repeat_penalty);
    if (!isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "sampler: penalties must be finite numbers");
    tandem_sampler *s = calloc(1, sizeof *s);
    if (!s) return tandem_fail(TANDEM_ERR_NO_MEMORY, "sampler: out of memory");
    s->p = *p;
    s->vocab_size = vocab_size;
    s->rng = p->seed;
    s->cand = malloc((size_t)vocab_size * sizeof *s->cand);
    s->counts = calloc((size_t)vocab_size, sizeof *s->counts);
    s->work = malloc((size_t)vocab_size * sizeof *s->work);
    s->top_ids = malloc((size_t)vocab_size * sizeof *s->top_ids);
    s->top_vals = malloc((size_t)vocab_size * sizeof *s->top_vals);
    if (!s->cand || !s->counts || !s->work || !s->top_ids || !s->top_vals) {
        tandem_sampler_free(s);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "sampler: out of memory");
    }
    *out = s;
    return TANDEM_OK;
}

void tandem_sampler_free(tandem_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->counts);
    free(s->work);
    free(s->top_ids);
    free(s->top_vals);
    free(s);
}

static bool has_penalties(const tandem_sampler_params *p) {
    return p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
}

/* The logits to sample from: logits itself when no penalty is set (no copy), else s->work = logits with
 * repetition / presence / frequency penalties over the last repeat_last_n ids. */
static const float *penalized_logits(tandem_sampler *s, const float *logits, const int32_t *history, size_t n_history) {
    const tandem_sampler_params *p = &s->p;
    if (!has_penalties(p)) return logits;
    memcpy(s->work, logits, (size_t)s->vocab_size * sizeof(float));
    size_t window = p->repeat_last_n < 0 ? n_history : (size_t)p->repeat_last_n;
    if (window > n_history) window = n_history;
    const int32_t *recent = history + (n_history - window);
    for (size_t i = 0; i < window; i++)
        if (recent[i] >= 0 && recent[i] < s->vocab_size) s->counts[recent[i]]++;
    for (size_t i = 0; i < window; i++) {
        int32_t id = recent[i];
        if (id < 0 || id >= s->vocab_size || s->counts[id] == 0) continue;  /* 0: already applied */
        float *l = &s->work[id];
        *l = *l > 0 ? *l / p->repeat_penalty : *l * p->repeat_penalty;
        *l -= p->presence_penalty + (float)s->counts[id] * p->frequency_penalty;
        s->counts[id] = 0;
    }
    return s->work;
}

static int by_logit_desc(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id - y->id;  /* ties: lower id first, so results never depend on qsort's order */
}

/* Fills s->cand[0..*n) with the kept tokens of logits and their normalised probabilities, most likely first. */
static void distribution(tandem_sampler *s, const float *logits, int32_t *n_kept) {
    const tandem_sampler_params *p = &s->p;
    int32_t n = s->vocab_size;
    const float inv_t = 1.0f / p->temperature;
    if (p->top_k > 0 && p->top_k < n) {
        /* scaled before selecting: the scaling can make two logits equal, and ties then go to the lower id */
        for (int32_t i = 0; i < n; i++) s->work[i] = logits[i] * inv_t;
        n = top_k_f32(s->work, n, p->top_k, s->top_ids, s->top_vals);
        for (int32_t i = 0; i < n; i++) s->cand[i] = (candidate){s->top_ids[i], s->top_vals[i]};  /* by_logit_desc */
    } else {
        for (int32_t i = 0; i < n; i++) s->cand[i] = (candidate){i, logits[i] * inv_t};
        qsort(s->cand, (size_t)n, sizeof *s->cand, by_logit_desc);
    }
    /* softmax over the kept candidates */
    const float max = s->cand[0].logit;
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        s->cand[i].logit = expf(s->cand[i].logit - max);
        sum += s->cand[i].logit;
    }
    for (int32_t i = 0; i < n; i++) s->cand[i].logit = (float)(s->cand[i].logit / sum);
    /* top-p: the smallest prefix whose mass reaches top_p (at least one token) */
    if (p->top_p < 1.0f) {
        double mass = 0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            mass += s->cand[i].logit;
            if (mass >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    /* min-p: drop tokens below min_p × the top probability */
    if (p->min_p > 0.0f) {
        const float floor_p = p->min_p * s->cand[0].logit;
        int32_t keep = 1;
        while (keep < n && s->cand[keep].logit >= floor_p) keep++;
        n = keep;
    }
    double kept = 0;
    for (int32_t i = 0; i < n; i++) kept += s->cand[i].logit;
    for (int32_t i = 0; i < n; i++) s->cand[i].logit = (float)(s->cand[i].logit / kept);
    *n_kept = n;
}

int32_t tandem_sampler_sample(tandem_sampler *s, const float *logits, const int32_t *history, size_t n_history) {
    const float *scores = penalized_logits(s, logits, history, n_history);
    if (s->p.temperature <= 0.0f) return (int32_t)argmax_f32(scores, s->vocab_size);
    int32_t n;
    distribution(s, scores, &n);
    const double r = next_uniform(&s->rng);
    double acc = 0;
    for (int32_t i = 0; i < n; i++) {
        acc += s->cand[i].logit;
        if (r < acc) return s->cand[i].id;
    }
    return s->cand[n - 1].id;  /* rounding left r just above the total */
}

void tandem_sampler_probs(tandem_sampler *s, const float *logits, const int32_t *history, size_t n_history,
                          float *probs) {
    const float *scores = penalized_logits(s, logits, history, n_history);
    memset(probs, 0, (size_t)s->vocab_size * sizeof *probs);
    if (s->p.temperature <= 0.0f) {
        probs[argmax_f32(scores, s->vocab_size)] = 1.0f;
        return;
    }
    int32_t n;
    distribution(s, scores, &n);
    for (int32_t i = 0; i < n; i++) probs[s->cand[i].id] = s->cand[i].logit;
}
