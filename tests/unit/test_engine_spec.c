/* test_engine_spec.c — speculative decoding inside tandem_engine against tandem_generate: every request's ids, text,
 * finish reason (and, with a fixed draft length, its drafted and accepted counts) through the engine equal
 * tandem_generate's for that request alone with a context of the same draft model — greedy and seeded sampling, the
 * draft model, lookup, predicted outputs and plain requests mixed on 1…4 slots, arriving at different steps, cancelled
 * mid-run, reusing a slot's prefix, under a grammar, with few verification rows per step, and the KV budget counting
 * the draft's caches. Sampled requests draw the same numbers in the same order as alone, so they too are identical;
 * that this is the target's distribution is test_speculative's statistical check of the same code. */
#include <stdlib.h>

#include "golden.h"

enum { N_CTX = 128, MAX_TEXT = 4096, N_MIX = 10 };

static tandem_model *target, *draft_model;
static tandem_grammar *grammar;

typedef struct request {
    char name[96];
    int32_t prompt[N_CTX];
    size_t n_prompt;
    tandem_gen_params gp;
    int32_t prediction[N_CTX];
} request;

typedef struct stream {
    char text[MAX_TEXT];
    size_t len;
} stream;

static bool on_text(const char *text, size_t len, void *user) {
    stream *s = user;
    if (s->len + len < MAX_TEXT) memcpy(s->text + s->len, text, len);
    s->len += len;
    return true;
}

/* Totals over every speculative request compared: both outcomes of verification must have happened. */
static int64_t n_drafted, n_accepted, n_drafted_lookup, n_accepted_lookup;

/* tandem_generate alone: a fresh context, and a fresh draft context when the engine drafts for the request. */
static void reference(const request *q, bool engine_has_draft, tandem_type kv_type, tandem_gen_result *r) {
    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = N_CTX;
    cp.kv_type = kv_type;
    tandem_ctx *ctx = NULL, *dctx = NULL;
    CHECK_OK(tandem_ctx_init(target, &cp, &ctx));
    tandem_gen_params gp = q->gp;
    gp.on_text = NULL;
    if (engine_has_draft && gp.spec.draft_max > 0) {
        CHECK_OK(tandem_ctx_init(draft_model, &cp, &dctx));
        gp.draft = dctx;
    }
    CHECK_OK(tandem_generate(ctx, q->prompt, q->n_prompt, &gp, r));
    tandem_ctx_free(dctx);
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
    CHECK_MSG(want->speculative == got->speculative, "%s, %s: speculative %d, alone %d", scenario, q->name,
              got->speculative, want->speculative);
    if (s)
        CHECK_MSG(s->len == got->text_len && memcmp(s->text, got->text, got->text_len) == 0,
                  "%s, %s: the stream is not the text", scenario, q->name);
    const tandem_spec_stats *a = &want->spec_stats, *b = &got->spec_stats;
    /* with a fixed draft length both propose the same tokens in the same rounds (adaptive lengths follow timings) */
    if (got->speculative && !q->gp.spec.adaptive)
        CHECK_MSG(a->n_rounds == b->n_rounds && a->n_drafted == b->n_drafted && a->n_accepted == b->n_accepted &&
                      a->n_drafted_lookup == b->n_drafted_lookup && a->n_accepted_lookup == b->n_accepted_lookup,
                  "%s, %s: %d rounds, %d/%d accepted (lookup %d/%d); alone %d, %d/%d (%d/%d)", scenario, q->name,
                  b->n_rounds, b->n_accepted, b->n_drafted, b->n_accepted_lookup, b->n_drafted_lookup, a->n_rounds,
                  a->n_accepted, a->n_drafted, a->n_accepted_lookup, a->n_drafted_lookup);
    if (got->speculative) CHECK(b->n_accepted <= b->n_drafted && b->n_accepted_lookup <= b->n_drafted_lookup);
    n_drafted += b->n_drafted - b->n_drafted_lookup;
    n_accepted += b->n_accepted - b->n_accepted_lookup;
    n_drafted_lookup += b->n_drafted_lookup;
    n_accepted_lookup += b->n_accepted_lookup;
}

static tandem_engine *open_engine(int32_t n_slots, int32_t n_batch, tandem_type kv_type, int64_t budget,
                                  bool with_draft) {
    tandem_engine_params ep = tandem_engine_default_params();
    ep.n_slots = n_slots;
    ep.n_ctx = N_CTX;
    ep.n_batch = n_batch;
    ep.kv_type = kv_type;
    ep.kv_budget_bytes = budget;
    ep.draft_model = with_draft ? draft_model : NULL;
    tandem_engine *e = NULL;
    CHECK_OK(tandem_engine_create(target, &ep, &e));
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

typedef enum kind { PLAIN, DRAFT, LOOKUP, PREDICTION, DRAFT_LOOKUP, GRAMMAR } kind;
static const char *const KIND_NAMES[] = {"plain", "draft", "lookup", "prediction", "draft+lookup", "grammar+draft"};

/* Request i of a mix: its kind, prompt length, sampling and limits vary with i. */
static void make_request(request *q, int i, kind k, bool sampled) {
    static const size_t n_prompts[] = {5, 40, 12, 70, 3, 25, 9, 60, 17, 33};
    static const int32_t max_tokens[] = {40, 20, 50, 30, 45, 12, 36, 25, 48, 40};
    memset(q, 0, sizeof *q);
    q->gp = tandem_gen_default_params(target);
    q->gp.max_tokens = max_tokens[i % 10];
    q->gp.ignore_eos = k != GRAMMAR && i % 3 != 2; /* every third may end on an end id */
    q->gp.sampling.temperature = sampled ? 0.9f : 0.0f;
    q->gp.sampling.seed = 77u + (uint64_t)i;
    q->n_prompt = n_prompts[i % 10];
    const bool repetitive = k == LOOKUP || k == DRAFT_LOOKUP;
    for (size_t t = 0; t < q->n_prompt; t++)
        q->prompt[t] = repetitive ? (int32_t)(20 + (t * 3 + (unsigned)i) % 7)
                                  : (int32_t)((t * 7919u + 131u * (unsigned)i + 5) % 400);
    if (k != PLAIN) {
        q->gp.spec = tandem_spec_default_params();
        q->gp.spec.draft_max = 2 + i % 5;
        q->gp.spec.adaptive = !sampled &&
                              i % 2 == 0; /* sampled: fixed lengths, so that the draws are tandem_generate's */
        if (k == LOOKUP || k == DRAFT_LOOKUP) q->gp.spec.lookup_ngram = 2;
    }
    if (k == GRAMMAR) q->gp.grammar = grammar;
    if (k == PREDICTION) { /* the plain output, with two tokens changed: the answer leaves it and comes back */
        request plain = *q;
        plain.gp.spec = (tandem_spec_params){0};
        tandem_gen_result r;
        reference(&plain, false, TANDEM_TYPE_F16, &r);
        const int32_t n = (int32_t)r.n_ids;
        memcpy(q->prediction, r.ids, (size_t)n * sizeof *r.ids);
        if (n > 8) q->prediction[n / 3] = (q->prediction[n / 3] + 1) % 400, q->prediction[n / 2] = 7;
        q->gp.prediction = q->prediction;
        q->gp.n_prediction = n;
        tandem_gen_result_free(&r);
    }
    snprintf(q->name, sizeof q->name, "request %d (%s, %s, %zu prompt tokens, max_tokens %d)", i, KIND_NAMES[k],
             sampled ? "sampled" : "greedy", q->n_prompt, q->gp.max_tokens);
}

/* Requests arrive one every `every` steps (all at once when 0); cancel (≥ 0) is cancelled once its text has begun.
 * Each is compared with tandem_generate (the cancelled one: its ids a prefix of what it makes alone). */
static void scenario_mix(const char *scenario, const request *qs, int n, int32_t n_slots, int32_t n_batch,
                         tandem_type kv_type, bool with_draft, int every, int cancel) {
    tandem_engine *e = open_engine(n_slots, n_batch, kv_type, 0, with_draft);
    if (!e) return;
    static stream streams[N_MIX];
    memset(streams, 0, sizeof streams);
    int64_t ids[N_MIX] = {0};
    int added = 0, steps = 0, peak = 0;
    bool idle = false, cancelled = false;
    while ((added < n || !idle) && steps < 20000) {
        while (added < n && (every == 0 || steps >= added * every)) {
            ids[added] = add(e, &qs[added], &streams[added]);
            added++;
        }
        if (!cancelled && cancel >= 0 && cancel < added &&
            tandem_engine_request_state(e, ids[cancel]) == TANDEM_REQUEST_RUNNING && streams[cancel].len > 0) {
            CHECK_OK(tandem_engine_cancel(e, ids[cancel]));
            cancelled = true;
        }
        CHECK_OK(tandem_engine_step(e, &idle));
        steps++;
        int running = 0;
        for (int i = 0; i < added; i++) running += tandem_engine_request_state(e, ids[i]) == TANDEM_REQUEST_RUNNING;
        CHECK_MSG(running <= n_slots, "%s: %d requests run at once on %d slots", scenario, running, n_slots);
        peak = running > peak ? running : peak;
    }
    CHECK_MSG(peak == (n < n_slots ? n : n_slots) || every > 0, "%s: at most %d requests ran at once", scenario, peak);
    CHECK_MSG(cancelled == (cancel >= 0), "%s: request %d was never seen running with text to cancel", scenario,
              cancel);
    for (int i = 0; i < n; i++) {
        CHECK(tandem_engine_request_state(e, ids[i]) == TANDEM_REQUEST_DONE);
        tandem_gen_result want, got;
        reference(&qs[i], with_draft, kv_type, &want);
        CHECK_OK(tandem_engine_result(e, ids[i], &got));
        if (i == cancel) {
            CHECK_MSG(got.finish == TANDEM_FINISH_ABORTED && got.n_ids > 0 && got.n_ids < want.n_ids &&
                          memcmp(got.ids, want.ids, got.n_ids * sizeof *got.ids) == 0,
                      "%s, %s cancelled: finish %s, %zu ids (alone %zu), not a prefix of its own output", scenario,
                      qs[i].name, tandem_finish_name(got.finish), got.n_ids, want.n_ids);
        } else {
            check_same(scenario, &qs[i], &want, &got, &streams[i]);
        }
        tandem_gen_result_free(&want);
        tandem_gen_result_free(&got);
    }
    tandem_engine_free(e);
}

/* An agent's turns on one slot with a draft: turn 2 resends turn 1's prompt and answer plus new tokens (the target's
 * cache holds all but the answer's last token; the draft's cache holds what it drafted, accepted or not, and must catch
 * up), turn 3 leaves turn 2's answer after 3 tokens. Each equals a cold tandem_generate. */
static void scenario_prefix(bool sampled) {
    tandem_engine *e = open_engine(1, 64, TANDEM_TYPE_F16, 0, true);
    if (!e) return;
    request turns[3];
    make_request(&turns[0], 1, DRAFT, sampled);
    turns[0].gp.max_tokens = 20;
    tandem_gen_result prev = {0};
    for (int t = 0; t < 3; t++) {
        request *q = &turns[t];
        if (t > 0) {
            *q = turns[t - 1];
            const size_t keep = t == 1 ? prev.n_ids : 3;
            memcpy(q->prompt + q->n_prompt, prev.ids, keep * sizeof *prev.ids);
            q->n_prompt += keep;
            for (int k = 0; k < 5; k++) q->prompt[q->n_prompt++] = (int32_t)(50 + 11 * t + k);
            q->gp.sampling.seed += 1;
            snprintf(q->name, sizeof q->name, "turn %d (%s)", t + 1, sampled ? "sampled" : "greedy");
        }
        const int32_t reused = t == 0   ? 0
                               : t == 1 ? (int32_t)(turns[0].n_prompt + prev.n_ids - 1)
                                        : (int32_t)(turns[1].n_prompt + 3);
        tandem_gen_result_free(&prev);
        static stream s;
        memset(&s, 0, sizeof s);
        const int64_t id = add(e, q, &s);
        bool idle = false;
        for (int steps = 0; !idle && steps < 10000; steps++) CHECK_OK(tandem_engine_step(e, &idle));
        tandem_gen_result want;
        reference(q, true, TANDEM_TYPE_F16, &want);
        CHECK_OK(tandem_engine_result(e, id, &prev));
        check_same("prefix reuse with a draft", q, &want, &prev, &s);
        CHECK_MSG(prev.timings.n_prompt_reused == reused, "%s: %d prompt tokens reused, %d expected", q->name,
                  prev.timings.n_prompt_reused, reused);
        tandem_gen_result_free(&want);
        if (t < 2 && prev.n_ids < 4) {
            CHECK_MSG(false, "%s: only %zu tokens generated", q->name, prev.n_ids);
            break;
        }
    }
    tandem_gen_result_free(&prev);
    tandem_engine_free(e);
}

/* The KV budget counts each slot's target and draft caches. */
static void scenario_budget(const request *q) {
    tandem_model_info ti, di;
    tandem_model_get_info(target, &ti);
    tandem_model_get_info(draft_model, &di);
    const int64_t target_cache = 2LL * ti.n_layers * ti.n_kv_heads * ti.head_dim * N_CTX * 2;
    const int64_t draft_cache = 2LL * di.n_layers * di.n_kv_heads * di.head_dim * N_CTX * 2;
    /* one target cache fits, the pair does not */
    tandem_engine *e = open_engine(4, 64, TANDEM_TYPE_F16, target_cache + draft_cache / 2, true);
    if (!e) return;
    int64_t id;
    CHECK(tandem_engine_add(e, q->prompt, q->n_prompt, &q->gp, &id) == TANDEM_ERR_NO_MEMORY);
    CHECK_MSG(strstr(tandem_last_error(), "target and draft") && strstr(tandem_last_error(), "kv_budget_bytes"), "'%s'",
              tandem_last_error());
    tandem_engine_free(e);
    /* 2.5 pairs: two requests at once */
    e = open_engine(4, 64, TANDEM_TYPE_F16, (target_cache + draft_cache) * 5 / 2, true);
    if (!e) return;
    static stream streams[4];
    int64_t ids[4];
    for (int i = 0; i < 4; i++) ids[i] = add(e, q, &streams[i]);
    int peak = 0;
    bool idle = false;
    for (int steps = 0; !idle && steps < 10000; steps++) {
        CHECK_OK(tandem_engine_step(e, &idle));
        int running = 0;
        for (int i = 0; i < 4; i++) running += tandem_engine_request_state(e, ids[i]) == TANDEM_REQUEST_RUNNING;
        peak = running > peak ? running : peak;
    }
    CHECK_MSG(peak == 2, "2.5 target + draft caches: %d requests ran at once, not 2", peak);
    for (int i = 0; i < 4; i++) {
        tandem_gen_result r;
        CHECK_OK(tandem_engine_result(e, ids[i], &r));
        tandem_gen_result_free(&r);
    }
    tandem_engine_free(e);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    target = load_golden_model(argv[1], "tied_gqa2/model-q8_0.gguf");
    draft_model = load_golden_model(argv[1], "tied_gqa2/model-q4_0.gguf"); /* agrees often, not always */
    if (!target || !draft_model) return test_summary();
    CHECK_OK(tandem_grammar_from_json_schema(tandem_model_tokenizer(target),
                                             "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}, "
                                             "\"b\": {\"enum\": [\"x\", \"yy\"]}}, "
                                             "\"required\": [\"a\", \"b\"], \"additionalProperties\": false}",
                                             &grammar));
    if (!grammar) return test_summary();

    static request mix[N_MIX];
    static const kind kinds[N_MIX] = {DRAFT,   PLAIN,        PREDICTION, DRAFT, LOOKUP,
                                      GRAMMAR, DRAFT_LOOKUP, PREDICTION, DRAFT, GRAMMAR};
    for (int i = 0; i < N_MIX; i++) make_request(&mix[i], i, kinds[i], i % 2 == 1);
    /* without a draft model the engine still speculates with lookup and predictions (draft requests: lookup-less) */
    static request no_draft[N_MIX];
    for (int i = 0; i < N_MIX; i++) {
        const kind k = kinds[i] == DRAFT || kinds[i] == GRAMMAR ? LOOKUP : kinds[i];
        make_request(&no_draft[i], i, k, i % 2 == 1);
    }

    char name[96];
    for (int32_t n = 1; n <= 4; n++) {
        snprintf(name, sizeof name, "%d slot(s), a draft model, all at once", n);
        scenario_mix(name, mix, N_MIX, n, 64, TANDEM_TYPE_F16, true, 0, -1);
        snprintf(name, sizeof name, "%d slot(s), a draft model, arriving every 3 steps, one cancelled", n);
        scenario_mix(name, mix, n + 3, n, 64, TANDEM_TYPE_F16, true, 3, 1 + n % 3);
    }
    scenario_mix("4 slots, q8_0 caches", mix, N_MIX, 4, 64, TANDEM_TYPE_Q8_0, true, 2, -1);
    scenario_mix("4 slots, no draft model", no_draft, N_MIX, 4, 64, TANDEM_TYPE_F16, false, 1, -1);
    /* few rows per step: proposals are cut to fit (greedy output stays the target's; other draws when sampled) */
    static request greedy[N_MIX];
    int n_greedy = 0;
    for (int i = 0; i < N_MIX; i++)
        if (mix[i].gp.sampling.temperature == 0) greedy[n_greedy++] = mix[i];
    for (int i = 0; i < n_greedy; i++) greedy[i].gp.spec.adaptive = true; /* counts may differ: compare outputs */
    scenario_mix("4 slots, n_batch 9: one proposal each", greedy, n_greedy, 4, 9, TANDEM_TYPE_F16, true, 0, -1);
    scenario_mix("4 slots, n_batch 5: prompts in chunks", greedy, n_greedy, 4, 5, TANDEM_TYPE_F16, true, 1, -1);
    scenario_prefix(false);
    scenario_prefix(true);
    scenario_budget(&mix[0]);

    printf("draft model: %lld of %lld proposals accepted; lookup and prediction: %lld of %lld\n", (long long)n_accepted,
           (long long)n_drafted, (long long)n_accepted_lookup, (long long)n_drafted_lookup);
    CHECK_MSG(n_accepted > 0 && n_accepted < n_drafted, "the draft model's proposals: %lld of %lld accepted",
              (long long)n_accepted, (long long)n_drafted);
    CHECK_MSG(n_accepted_lookup > 0 && n_accepted_lookup < n_drafted_lookup,
              "lookup and prediction proposals: %lld of %lld accepted", (long long)n_accepted_lookup,
              (long long)n_drafted_lookup);
    tandem_grammar_free(grammar);
    tandem_model_free(draft_model);
    tandem_model_free(target);
    return test_summary();
}
