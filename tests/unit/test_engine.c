/* test_engine.c — tandem_engine against tandem_generate: every request's ids, text and finish reason through the
 * engine equal tandem_generate's for that request alone (greedy and seeded sampling, stop strings, end ids, full
 * contexts, max_tokens), with f16, f32 and q8_0 caches, queueing, chunked prompts, adds and cancels mid-run, the KV budget,
 * and prompts that start with what a slot's cache holds (reused: the count, the output still a cold run's). */
#include <stdlib.h>

#include "golden.h"

enum { N_REQ = 10, N_CTX = 96, MAX_TEXT = 4096 };

static tandem_model *model;

typedef struct request {
    const char *name;
    int32_t prompt[N_CTX];
    size_t n_prompt;
    tandem_gen_params gp;
    const char *stop[1];
    char stop_text[8];
} request;

/* What a request's on_text received, concatenated. */
typedef struct stream {
    char text[MAX_TEXT];
    size_t len;
    int calls;
} stream;

static bool on_text(const char *text, size_t len, void *user) {
    stream *s = user;
    if (s->len + len < MAX_TEXT) memcpy(s->text + s->len, text, len);
    s->len += len;
    s->calls++;
    return true;
}

static void reference(const request *q, tandem_type kv_type, tandem_gen_result *r) {
    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = N_CTX;
    cp.kv_type = kv_type;
    tandem_ctx *ctx = NULL;
    CHECK_OK(tandem_ctx_init(model, &cp, &ctx));
    tandem_gen_params gp = q->gp;
    gp.on_text = NULL;
    CHECK_OK(tandem_generate(ctx, q->prompt, q->n_prompt, &gp, r));
    tandem_ctx_free(ctx);
}

static void check_same(const char *scenario, const request *q, const tandem_gen_result *want,
                       const tandem_gen_result *got, const stream *s) {
    CHECK_MSG(want->n_ids == got->n_ids &&
                  (want->n_ids == 0 || memcmp(want->ids, got->ids, want->n_ids * sizeof *want->ids) == 0),
              "%s, %s: %zu ids through the engine, %zu alone, or different ones", scenario, q->name, got->n_ids,
              want->n_ids);
    CHECK_MSG(want->text_len == got->text_len && memcmp(want->text, got->text, want->text_len) == 0,
              "%s, %s: the texts differ: '%s' vs '%s' alone", scenario, q->name, got->text, want->text);
    CHECK_MSG(want->finish == got->finish, "%s, %s: finish %s, alone %s", scenario, q->name,
              tandem_finish_name(got->finish), tandem_finish_name(want->finish));
    CHECK_MSG(got->timings.n_prompt == (int32_t)q->n_prompt && got->timings.n_generated == (int32_t)got->n_ids,
              "%s, %s: timings count %d prompt and %d generated tokens", scenario, q->name, got->timings.n_prompt,
              got->timings.n_generated);
    if (got->n_ids > 0) CHECK_MSG(got->timings.ttft_ms > 0, "%s, %s: no time to first token", scenario, q->name);
    if (s)
        CHECK_MSG(s->len == got->text_len && memcmp(s->text, got->text, got->text_len) == 0,
                  "%s, %s: the stream is not the text", scenario, q->name);
}

static tandem_engine *open_engine(int32_t n_slots, int32_t n_batch, tandem_type kv_type, int64_t budget) {
    tandem_engine_params ep = tandem_engine_default_params();
    ep.n_slots = n_slots;
    ep.n_ctx = N_CTX;
    ep.n_batch = n_batch;
    ep.kv_type = kv_type;
    ep.kv_budget_bytes = budget;
    tandem_engine *e = NULL;
    CHECK_OK(tandem_engine_create(model, &ep, &e));
    return e;
}

static int64_t add(tandem_engine *e, const request *q, stream *s) {
    tandem_gen_params gp = q->gp;
    gp.on_text = on_text;
    gp.user = s;
    int64_t id = 0;
    CHECK_OK(tandem_engine_add(e, q->prompt, q->n_prompt, &gp, &id));
    return id;
}

/* The most requests seen running at once by the last run_to_idle. */
static int peak_running;

/* What tandem_engine_request_ids reported last for each request of run_to_idle (copies). */
static int32_t *seen_ids[N_REQ];
static size_t n_seen_ids[N_REQ];

/* tandem_engine_request_ids of request i after a step: it only grows, and what it reported stays as it was. */
static void check_request_ids(tandem_engine *e, int64_t id, int i) {
    const int32_t *now;
    size_t n;
    CHECK_OK(tandem_engine_request_ids(e, id, &now, &n));
    CHECK_MSG(n >= n_seen_ids[i], "request %lld: %zu ids after %zu", (long long)id, n, n_seen_ids[i]);
    if (n < n_seen_ids[i]) return;
    CHECK_MSG(n_seen_ids[i] == 0 || !memcmp(now, seen_ids[i], n_seen_ids[i] * sizeof *now),
              "request %lld: ids reported earlier changed", (long long)id);
    int32_t *copy = realloc(seen_ids[i], (n ? n : 1) * sizeof *copy);
    if (!copy) return;
    if (n) memcpy(copy, now, n * sizeof *now);
    seen_ids[i] = copy;
    n_seen_ids[i] = n;
}

/* Steps until idle; no more than max_running requests run at any time. */
static void run_to_idle(tandem_engine *e, int *steps, const int64_t *ids, int n, int max_running) {
    peak_running = 0;
    for (int i = 0; i < n; i++) n_seen_ids[i] = 0;
    for (bool idle = false; !idle && *steps < 10000; (*steps)++) {
        CHECK_OK(tandem_engine_step(e, &idle));
        for (int i = 0; i < n; i++) check_request_ids(e, ids[i], i);
        int running = 0;
        for (int i = 0; i < n; i++) running += tandem_engine_request_state(e, ids[i]) == TANDEM_REQUEST_RUNNING;
        CHECK_MSG(running <= max_running, "%d requests run at once, at most %d may", running, max_running);
        peak_running = running > peak_running ? running : peak_running;
    }
}

/* All requests added at once (queueing when n_slots < N_REQ), run to the end, each compared with tandem_generate. */
static void scenario_all(const char *name, const request *qs, int n, int32_t n_slots, int32_t n_batch,
                         tandem_type kv_type, int64_t budget, int max_running) {
    tandem_engine *e = open_engine(n_slots, n_batch, kv_type, budget);
    if (!e) return;
    static stream streams[N_REQ];
    memset(streams, 0, sizeof streams);
    int64_t ids[N_REQ];
    for (int i = 0; i < n; i++) ids[i] = add(e, &qs[i], &streams[i]);
    int steps = 0;
    run_to_idle(e, &steps, ids, n, max_running);
    for (int i = 0; i < n; i++) {
        CHECK(tandem_engine_request_state(e, ids[i]) == TANDEM_REQUEST_DONE);
        tandem_gen_result want, got;
        reference(&qs[i], kv_type, &want);
        CHECK_OK(tandem_engine_result(e, ids[i], &got));
        check_same(name, &qs[i], &want, &got, &streams[i]);
        CHECK_MSG(n_seen_ids[i] == got.n_ids &&
                      (!got.n_ids || !memcmp(seen_ids[i], got.ids, got.n_ids * sizeof *got.ids)),
                  "%s: request %d: tandem_engine_request_ids at the end differs from the result", name, i);
        CHECK(tandem_engine_request_state(e, ids[i]) == TANDEM_REQUEST_UNKNOWN);
        const int32_t *gone;
        size_t n_gone;
        CHECK(tandem_engine_request_ids(e, ids[i], &gone, &n_gone) == TANDEM_ERR_INVALID_ARG && !gone && !n_gone);
        tandem_gen_result_free(&want);
        tandem_gen_result_free(&got);
    }
    tandem_engine_free(e);
}

/* Requests added while others run; one cancelled mid-generation and one while queued; the others unaffected. */
static void scenario_mid_run(const request *qs, tandem_type kv_type) {
    const char *name = "added and cancelled mid-run";
    tandem_engine *e = open_engine(2, 8, kv_type, 0);
    if (!e) return;
    static stream streams[4];
    memset(streams, 0, sizeof streams);
    /* qs[0] generates long (it is cancelled), qs[1] runs beside it, qs[2] and qs[3] come later */
    int64_t id0 = add(e, &qs[0], &streams[0]);
    int64_t id1 = add(e, &qs[1], &streams[1]);
    bool idle = false;
    for (int i = 0; i < 20; i++) CHECK_OK(tandem_engine_step(e, &idle));
    CHECK(!idle);
    int64_t id2 = add(e, &qs[2], &streams[2]); /* both slots busy: it waits */
    int64_t id3 = add(e, &qs[3], &streams[3]);
    CHECK_OK(tandem_engine_step(e, &idle));
    CHECK_MSG(tandem_engine_request_state(e, id2) == TANDEM_REQUEST_QUEUED, "%s: no slot, yet request 2 runs", name);
    CHECK_OK(tandem_engine_cancel(e, id3)); /* queued: ends with nothing */
    CHECK(tandem_engine_request_state(e, id0) == TANDEM_REQUEST_RUNNING);
    CHECK_OK(tandem_engine_cancel(e, id0)); /* mid-generation: its slot goes to request 2 */
    CHECK(tandem_engine_request_state(e, id0) == TANDEM_REQUEST_DONE);
    CHECK_OK(tandem_engine_step(e, &idle));
    CHECK_MSG(tandem_engine_request_state(e, id2) == TANDEM_REQUEST_RUNNING, "%s: the freed slot is not reused", name);
    int steps = 0;
    const int64_t all[] = {id0, id1, id2, id3};
    run_to_idle(e, &steps, all, 4, 2);
    CHECK(tandem_engine_cancel(e, 12345) == TANDEM_ERR_INVALID_ARG);

    tandem_gen_result want, got;
    reference(&qs[0], kv_type, &want);
    CHECK_OK(tandem_engine_result(e, id0, &got));
    CHECK_MSG(got.finish == TANDEM_FINISH_ABORTED && got.n_ids > 0 && got.n_ids < want.n_ids &&
                  memcmp(got.ids, want.ids, got.n_ids * sizeof *got.ids) == 0,
              "%s: the cancelled request: finish %s, %zu ids (alone %zu), not a prefix of its own output", name,
              tandem_finish_name(got.finish), got.n_ids, want.n_ids);
    CHECK(streams[0].len <= got.text_len && memcmp(streams[0].text, got.text, streams[0].len) == 0);
    tandem_gen_result_free(&want);
    tandem_gen_result_free(&got);
    CHECK_OK(tandem_engine_result(e, id3, &got));
    CHECK(got.finish == TANDEM_FINISH_ABORTED && got.n_ids == 0 && got.text && got.text_len == 0 &&
          streams[3].calls == 0);
    tandem_gen_result_free(&got);
    const int64_t others[] = {id1, id2};
    for (int i = 0; i < 2; i++) {
        const request *q = &qs[1 + i];
        reference(q, kv_type, &want);
        CHECK_OK(tandem_engine_result(e, others[i], &got));
        check_same(name, q, &want, &got, &streams[1 + i]);
        tandem_gen_result_free(&want);
        tandem_gen_result_free(&got);
    }
    tandem_engine_free(e);
}

/* A long prompt read in chunks while another sequence keeps decoding: request b's 60-token prompt, with a budget of
 * 4 tokens per step, takes many steps, and a decodes in each of them; b's first text comes while a still runs. */
static void scenario_chunked(void) {
    request a = {.name = "a, decoding", .n_prompt = 3}, b = {.name = "b, a long prompt", .n_prompt = 60};
    a.gp = b.gp = tandem_gen_default_params(model);
    a.gp.sampling.temperature = b.gp.sampling.temperature = 0;
    a.gp.ignore_eos = b.gp.ignore_eos = true;
    a.gp.max_tokens = 60;
    b.gp.max_tokens = 5;
    for (size_t k = 0; k < 60; k++) a.prompt[k] = b.prompt[k] = (int32_t)((k * 31u + 7) % 400);
    tandem_engine *e = open_engine(2, 4, TANDEM_TYPE_F16, 0);
    if (!e) return;
    static stream sa, sb;
    memset(&sa, 0, sizeof sa);
    memset(&sb, 0, sizeof sb);
    const int64_t ida = add(e, &a, &sa);
    bool idle;
    CHECK_OK(tandem_engine_step(e, &idle));
    const int64_t idb = add(e, &b, &sb);
    int a_steps_during_b_prompt = 0, steps = 0;
    while (sb.calls == 0 && steps++ < 100) {
        const int before = sa.calls;
        CHECK_OK(tandem_engine_step(e, &idle));
        a_steps_during_b_prompt += sb.calls == 0 && sa.calls > before;
    }
    CHECK_MSG(tandem_engine_request_state(e, ida) == TANDEM_REQUEST_RUNNING && a_steps_during_b_prompt >= 10,
              "a streamed text in %d of the steps that read b's prompt (a %s)", a_steps_during_b_prompt,
              tandem_engine_request_state(e, ida) == TANDEM_REQUEST_RUNNING ? "runs" : "has finished");
    steps = 0;
    const int64_t ids[] = {ida, idb};
    run_to_idle(e, &steps, ids, 2, 2);
    const request *qs[] = {&a, &b};
    const stream *ss[] = {&sa, &sb};
    for (int i = 0; i < 2; i++) {
        tandem_gen_result want, got;
        reference(qs[i], TANDEM_TYPE_F16, &want);
        CHECK_OK(tandem_engine_result(e, ids[i], &got));
        check_same("chunked prompt", qs[i], &want, &got, ss[i]);
        tandem_gen_result_free(&want);
        tandem_gen_result_free(&got);
    }
    tandem_engine_free(e);
}

/* Adds q alone, runs it to the end, checks it against a cold tandem_generate and that it reused `reused` prompt
 * tokens; *got keeps the result (for the next turn's prompt). */
static void run_turn(tandem_engine *e, const request *q, tandem_type kv_type, int32_t reused, tandem_gen_result *got) {
    static stream s;
    memset(&s, 0, sizeof s);
    const int64_t id = add(e, q, &s);
    int steps = 0;
    run_to_idle(e, &steps, &id, 1, 1);
    tandem_gen_result want;
    reference(q, kv_type, &want);
    CHECK_OK(tandem_engine_result(e, id, got));
    char name[64];
    snprintf(name, sizeof name, "prefix reuse, %s", tandem_type_name(kv_type));
    check_same(name, q, &want, got, &s);
    CHECK_MSG(got->timings.n_prompt_reused == reused, "%s: %d prompt tokens reused, %d expected", q->name,
              got->timings.n_prompt_reused, reused);
    tandem_gen_result_free(&want);
}

/* A request of n tokens: prefix (n_prefix tokens) then tokens drawn from seed. */
static void make_turn(request *q, const char *name, const int32_t *prefix, size_t n_prefix, size_t n, unsigned seed,
                      float temperature) {
    memset(q, 0, sizeof *q);
    q->name = name;
    q->gp = tandem_gen_default_params(model);
    q->gp.ignore_eos = true; /* every turn ends on max_tokens: its last token is emitted, never evaluated */
    q->gp.max_tokens = 12;
    q->gp.sampling.temperature = temperature;
    q->gp.sampling.seed = seed;
    if (n_prefix > 0) memcpy(q->prompt, prefix, n_prefix * sizeof *prefix);
    for (size_t k = n_prefix; k < n; k++) q->prompt[k] = (int32_t)(((k + 1) * 7919u + 977u * seed) % 400);
    q->n_prompt = n;
}

/* An agent's turns on two slots. A finished sequence's cache holds its prompt and every generated token but the
 * last (emitted, never evaluated), so a next turn resending prompt + generated text + new tokens reuses
 * n_prompt + n_ids − 1 of them. Free slots are overwritten least recently used first, keeping the others. */
static void scenario_prefix(tandem_type kv_type) {
    tandem_engine *e = open_engine(2, 8, kv_type, 0); /* n_batch 8: the rest of a prompt is read in chunks */
    if (!e) return;
    static request a, b, c, d, f, g, h;
    tandem_gen_result ra, rb, rc, rd, rf, rg, rh;
    make_turn(&a, "turn 1 (greedy)", NULL, 0, 20, 1, 0.0f);
    run_turn(e, &a, kv_type, 0, &ra); /* slot 0 */

    /* turn 2: turn 1's prompt and output, then 10 new tokens; sampled with a seed */
    int32_t hist[N_CTX];
    memcpy(hist, a.prompt, a.n_prompt * sizeof *hist);
    memcpy(hist + a.n_prompt, ra.ids, ra.n_ids * sizeof *hist);
    const size_t n_hist = a.n_prompt + ra.n_ids;
    make_turn(&b, "turn 2 (seeded, resends turn 1)", hist, n_hist, n_hist + 10, 2, 0.9f);
    run_turn(e, &b, kv_type, (int32_t)(n_hist - 1), &rb); /* slot 0, its cache kept */

    /* a request sharing turn 1's first 10 tokens only: the rest of slot 0's cache is overwritten */
    make_turn(&c, "shares 10 tokens", a.prompt, 10, 30, 3, 0.0f);
    if (c.prompt[10] == a.prompt[10]) c.prompt[10] = (c.prompt[10] + 1) % 400;
    run_turn(e, &c, kv_type, 10, &rc); /* slot 0 (slot 1, never used, holds nothing) */

    /* sharing nothing: the least recently used slot, never used slot 1, then slot 0 (used before slot 1) */
    make_turn(&d, "shares nothing (d)", NULL, 0, 25, 4, 0.9f);
    d.prompt[0] = (c.prompt[0] + 1) % 400;
    run_turn(e, &d, kv_type, 0, &rd); /* slot 1 */
    make_turn(&f, "shares nothing (f)", NULL, 0, 15, 5, 0.0f);
    f.prompt[0] = (c.prompt[0] + 2) % 400;
    run_turn(e, &f, kv_type, 0, &rf); /* slot 0: c's cache is overwritten, d's kept */

    /* d's next turn finds its history in slot 1; c's next turn finds nothing any more */
    memcpy(hist, d.prompt, d.n_prompt * sizeof *hist);
    memcpy(hist + d.n_prompt, rd.ids, rd.n_ids * sizeof *hist);
    make_turn(&g, "d's next turn", hist, d.n_prompt + rd.n_ids, d.n_prompt + rd.n_ids + 5, 6, 0.9f);
    run_turn(e, &g, kv_type, (int32_t)(d.n_prompt + rd.n_ids - 1), &rg);
    memcpy(hist, c.prompt, c.n_prompt * sizeof *hist);
    memcpy(hist + c.n_prompt, rc.ids, rc.n_ids * sizeof *hist);
    make_turn(&h, "c's next turn, after its slot was overwritten", hist, c.n_prompt + rc.n_ids,
              c.n_prompt + rc.n_ids + 5, 7, 0.0f);
    run_turn(e, &h, kv_type, 0, &rh);

    /* a prompt that is all in a cache (g's, resent as is) still evaluates its last token */
    request again = g;
    again.name = "g's prompt resent";
    tandem_gen_result ragain;
    run_turn(e, &again, kv_type, (int32_t)g.n_prompt - 1, &ragain);
    check_same("prefix reuse, the same prompt twice", &g, &rg, &ragain, NULL);

    tandem_gen_result *all[] = {&ra, &rb, &rc, &rd, &rf, &rg, &rh, &ragain};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tandem_gen_result_free(all[i]);
    tandem_engine_free(e);
}

/* What add refuses, with the field named, and nothing queued. */
static void scenario_refusals(const request *q) {
    tandem_model_info mi;
    tandem_model_get_info(model, &mi);
    /* one cache: layers × kv heads × head_dim × rows, keys and values, f16 */
    const int64_t cache = 2LL * mi.n_layers * mi.n_kv_heads * mi.head_dim * N_CTX * 2;
    tandem_engine *e = open_engine(4, 16, TANDEM_TYPE_F16, cache - 1);
    if (!e) return;
    int64_t id = -1;
    CHECK(tandem_engine_add(e, q->prompt, q->n_prompt, &q->gp, &id) == TANDEM_ERR_NO_MEMORY);
    CHECK_MSG(strstr(tandem_last_error(), "kv_budget_bytes") != NULL, "the budget's refusal: '%s'",
              tandem_last_error());
    CHECK(id == 0);
    bool idle = false;
    CHECK_OK(tandem_engine_step(e, &idle));
    CHECK(idle);
    tandem_engine_free(e);

    /* a q8_0 cache: per 32 values 34 bytes; one byte short of it refused, exactly it accepted */
    const int64_t cache_q8 = 2LL * mi.n_layers * mi.n_kv_heads * (mi.head_dim / 32 * 34) * N_CTX;
    for (int64_t budget = cache_q8 - 1; budget <= cache_q8; budget++) {
        e = open_engine(4, 16, TANDEM_TYPE_Q8_0, budget);
        if (!e) return;
        const tandem_status st = tandem_engine_add(e, q->prompt, q->n_prompt, &q->gp, &id);
        CHECK_MSG(budget < cache_q8 ? st == TANDEM_ERR_NO_MEMORY : st == TANDEM_OK,
                  "a budget of %lld bytes for q8_0 caches of %lld: status %d", (long long)budget, (long long)cache_q8,
                  (int)st);
        tandem_engine_free(e);
    }

    tandem_engine_params bad_kv = tandem_engine_default_params();
    bad_kv.kv_type = TANDEM_TYPE_BF16;
    CHECK(tandem_engine_create(model, &bad_kv, &e) == TANDEM_ERR_INVALID_ARG && !e);
    CHECK_MSG(strstr(tandem_last_error(), "tandem_engine_params.kv_type BF16") != NULL, "'%s'", tandem_last_error());

    e = open_engine(4, 16, TANDEM_TYPE_F16, 0);
    if (!e) return;
    tandem_gen_params gp = q->gp;
    gp.spec.lookup_ngram = 2; /* speculation with draft_max 0, as tandem_generate refuses it */
    CHECK(tandem_engine_add(e, q->prompt, q->n_prompt, &gp, &id) == TANDEM_ERR_INVALID_ARG);
    CHECK_MSG(strstr(tandem_last_error(), "tandem_spec_params.draft_max") != NULL, "'%s'", tandem_last_error());
    gp = q->gp;
    const int32_t bad_prediction[2] = {1, mi.vocab_size};
    gp.spec = tandem_spec_default_params();
    gp.prediction = bad_prediction;
    gp.n_prediction = 2;
    CHECK(tandem_engine_add(e, q->prompt, q->n_prompt, &gp, &id) == TANDEM_ERR_INVALID_ARG);
    CHECK_MSG(strstr(tandem_last_error(), "tandem_gen_params.prediction") != NULL, "'%s'", tandem_last_error());
    tandem_ctx *draft = NULL;
    CHECK_OK(tandem_ctx_init(model, NULL, &draft));
    gp = q->gp;
    gp.draft = draft; /* an engine drafts with its own draft model */
    CHECK(tandem_engine_add(e, q->prompt, q->n_prompt, &gp, &id) == TANDEM_ERR_INVALID_ARG);
    CHECK_MSG(strstr(tandem_last_error(), "tandem_gen_params.draft") != NULL, "'%s'", tandem_last_error());
    tandem_ctx_free(draft);
    static int32_t long_prompt[N_CTX + 1];
    CHECK(tandem_engine_add(e, long_prompt, N_CTX + 1, &q->gp, &id) == TANDEM_ERR_CONTEXT_FULL);
    CHECK_MSG(strstr(tandem_last_error(), "tandem_engine_params.n_ctx") != NULL, "'%s'", tandem_last_error());
    CHECK(tandem_engine_add(e, q->prompt, 0, &q->gp, &id) == TANDEM_ERR_INVALID_ARG);
    const int32_t bad = mi.vocab_size;
    CHECK(tandem_engine_add(e, &bad, 1, &q->gp, &id) == TANDEM_ERR_INVALID_ARG);
    CHECK_OK(tandem_engine_step(e, &idle));
    CHECK(idle);
    CHECK(tandem_engine_result(e, 1, &(tandem_gen_result){0}) == TANDEM_ERR_INVALID_ARG);
    tandem_engine_free(e);

    tandem_engine_params ep = tandem_engine_default_params();
    ep.n_slots = 8;
    ep.n_batch = 4;
    CHECK(tandem_engine_create(model, &ep, &e) == TANDEM_ERR_INVALID_ARG);
    CHECK_MSG(strstr(tandem_last_error(), "tandem_engine_params.n_batch") != NULL, "'%s'", tandem_last_error());
}

static void count_token(const tandem_token_logprob *lp, void *user) {
    (void)lp;
    ++*(int *)user;
}

/* tandem_engine_get_usage after every step of three requests on two slots: the running requests' rows are their
 * prompts plus the tokens generated so far but the last (emitted, evaluated by the next step), counted by each
 * request's on_token; the queued one waits; at the end nothing runs and the slots keep what they read. */
static void scenario_usage(const request *qs) {
    const int idx[3] = {0, 6, 5}; /* prompts of 5, 9 and 25 tokens: each read in one step */
    tandem_engine *e = open_engine(2, 64, TANDEM_TYPE_F16, 0);
    if (!e) return;
    int64_t ids[3];
    int generated[3] = {0};
    for (int i = 0; i < 3; i++) {
        tandem_gen_params gp = qs[idx[i]].gp;
        gp.logprobs = true;
        gp.on_token = count_token;
        gp.user = &generated[i];
        CHECK_OK(tandem_engine_add(e, qs[idx[i]].prompt, qs[idx[i]].n_prompt, &gp, &ids[i]));
    }
    tandem_engine_usage u;
    tandem_engine_get_usage(e, &u);
    CHECK(u.n_slots == 2 && u.rows_total == 2 * N_CTX && u.n_running == 0 && u.n_queued == 3 && u.rows_running == 0);
    int steps = 0;
    for (bool idle = false; !idle && steps < 1000; steps++) {
        CHECK_OK(tandem_engine_step(e, &idle));
        tandem_engine_get_usage(e, &u);
        int running = 0, queued = 0;
        int64_t rows = 0, unread = 0; /* unread: prompts of requests that took a slot this step, not read yet */
        for (int i = 0; i < 3; i++) {
            const tandem_request_state st = tandem_engine_request_state(e, ids[i]);
            queued += st == TANDEM_REQUEST_QUEUED;
            if (st != TANDEM_REQUEST_RUNNING) continue;
            running++;
            if (generated[i] > 0) rows += (int64_t)qs[idx[i]].n_prompt + generated[i] - 1;
            else unread += (int64_t)qs[idx[i]].n_prompt;
        }
        CHECK_MSG(u.n_running == running && u.n_queued == queued && u.rows_running >= rows &&
                      u.rows_running <= rows + unread,
                  "step %d: usage says %d running, %d queued, %lld rows; the requests %d, %d, %lld (+%lld)", steps,
                  u.n_running, u.n_queued, (long long)u.rows_running, running, queued, (long long)rows,
                  (long long)unread);
    }
    CHECK(u.n_running == 0 && u.n_queued == 0 && u.rows_running == 0 && u.rows_cached > 0 &&
          u.rows_cached <= u.rows_total);
    tandem_engine_free(e);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    model = load_golden_model(argv[1], "tied_gqa2/model-q8_0.gguf");
    if (!model) return test_summary();

    static request qs[N_REQ];
    const tandem_gen_params base = tandem_gen_default_params(model);
    static const size_t n_prompts[N_REQ] = {5, 40, 12, 70, 3, 25, 9, 60, 17, 33};
    static const int32_t max_tokens[N_REQ] = {60, 20, -1, 30, 45, 8, 50, 25, 0, 40};
    static char names[N_REQ][64];
    for (int i = 0; i < N_REQ; i++) {
        request *q = &qs[i];
        q->gp = base;
        q->gp.max_tokens = max_tokens[i];
        q->gp.ignore_eos = i % 3 != 2; /* every third may end on an end id */
        q->n_prompt = n_prompts[i];
        for (size_t k = 0; k < q->n_prompt; k++) q->prompt[k] = (int32_t)((k * 7919u + 131u * (unsigned)i + 5) % 400);
        const bool sampled = i % 2 == 1;
        q->gp.sampling.temperature = sampled ? 0.9f : 0.0f;
        q->gp.sampling.seed = 1000u + (uint64_t)i;
        snprintf(names[i], sizeof names[i], "request %d (%s, %zu prompt tokens, max_tokens %d)", i,
                 sampled ? "sampled" : "greedy", q->n_prompt, max_tokens[i]);
        q->name = names[i];
    }
    /* stop strings taken from the middle of what two requests generate alone, so that they do stop them */
    for (int i = 4; i < 8; i += 3) {
        request *q = &qs[i];
        tandem_gen_result r;
        reference(q, TANDEM_TYPE_F16, &r);
        if (r.text_len >= 8) {
            memcpy(q->stop_text, r.text + r.text_len / 2, 2);
            q->stop[0] = q->stop_text;
            q->gp.stop = q->stop;
            q->gp.n_stop = 1;
        }
        tandem_gen_result_free(&r);
        tandem_gen_result want;
        reference(q, TANDEM_TYPE_F16, &want);
        CHECK_MSG(want.finish == TANDEM_FINISH_STOP_STRING, "%s: the stop string does not stop it", q->name);
        tandem_gen_result_free(&want);
    }
    /* the request with max_tokens -1 fills its context */
    tandem_gen_result r;
    reference(&qs[2], TANDEM_TYPE_F16, &r);
    CHECK_MSG(r.finish == TANDEM_FINISH_CONTEXT_FULL || r.finish == TANDEM_FINISH_EOS, "%s ends by %s", qs[2].name,
              tandem_finish_name(r.finish));
    tandem_gen_result_free(&r);

    scenario_all("one slot each", qs, N_REQ, N_REQ, 64, TANDEM_TYPE_F16, 0, N_REQ);
    scenario_all("3 slots, f16", qs, N_REQ, 3, 64, TANDEM_TYPE_F16, 0, 3);
    scenario_all("3 slots, f32", qs, N_REQ, 3, 64, TANDEM_TYPE_F32, 0, 3);
    scenario_all("3 slots, q8_0", qs, N_REQ, 3, 64, TANDEM_TYPE_Q8_0, 0, 3);
    scenario_all("4 slots, n_batch 5: prompts in chunks beside decodes", qs, N_REQ, 4, 5, TANDEM_TYPE_F16, 0, 4);
    tandem_model_info mi;
    tandem_model_get_info(model, &mi);
    const int64_t cache_f32 = 2LL * mi.n_layers * mi.n_kv_heads * mi.head_dim * N_CTX * 4;
    scenario_all("a budget of 2.5 caches for 6 slots", qs, N_REQ, 6, 16, TANDEM_TYPE_F32, cache_f32 * 5 / 2, 2);
    CHECK_MSG(peak_running == 2, "2.5 f32 caches: %d requests ran at once, not 2", peak_running);
    /* the budget counts bytes: the 2.5 f16 caches' bytes hold 4 q8_0 caches (a row of 32 values: 34 bytes, not 64) */
    const int64_t f16_budget = cache_f32 / 2 * 5 / 2;
    scenario_all("2.5 f16 caches' bytes, f16", qs, N_REQ, 6, 16, TANDEM_TYPE_F16, f16_budget, 2);
    CHECK_MSG(peak_running == 2, "2.5 f16 caches: %d requests ran at once, not 2", peak_running);
    scenario_all("2.5 f16 caches' bytes, q8_0", qs, N_REQ, 6, 16, TANDEM_TYPE_Q8_0, f16_budget, 4);
    CHECK_MSG(peak_running == 4, "2.5 f16 caches' bytes of q8_0 caches: %d requests ran at once, not 4", peak_running);
    scenario_chunked();
    scenario_prefix(TANDEM_TYPE_F16);
    scenario_prefix(TANDEM_TYPE_F32);
    scenario_prefix(TANDEM_TYPE_Q8_0);
    scenario_mid_run(qs, TANDEM_TYPE_F16);
    scenario_mid_run(qs, TANDEM_TYPE_Q8_0);
    scenario_refusals(&qs[0]);
    scenario_usage(qs);

    for (int i = 0; i < N_REQ; i++) free(seen_ids[i]);
    tandem_model_free(model);
    return test_summary();
}
