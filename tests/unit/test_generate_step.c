/* test_generate_step.c — tandem_generate as steps of a sequence (gen_sequence): sequences stepped by hand, several
 * interleaved on one model, give what tandem_generate gives each alone (ids, text, finish, counts, the cache after),
 * plain and speculative, for every way generation ends; a step is one unit (a prompt chunk, a token, a round). */
#include <stdlib.h>

#include "golden.h"
#include "runtime.h"

static const char *golden;
static tandem_model *target, *draft_q4, *draft_other;

enum { N_CTX = 160, MAX_IDS = 128 };

typedef struct config {
    const char *name;
    int32_t prompt[100];
    size_t n_prompt;
    int32_t n_ctx;   /* 0: N_CTX */
    int32_t n_batch; /* 0: the default */
    tandem_gen_params gp;
    tandem_model *draft_model; /* NULL: no draft context */
    bool timing_dependent;     /* adaptive drafting: the counts depend on measured times, the ids do not */
    int abort_at_call;         /* > 0: on_text answers false to that call */
    bool prefill_first;        /* the context holds the prompt already; generate from an empty prompt */
} config;

typedef struct outcome {
    tandem_gen_result r;
    int32_t n_past;
    float logits[512]; /* the context's last logits after generation (0 if none) */
    bool has_logits;
    int steps, prompt_steps;
} outcome;

typedef struct stream {
    int calls, abort_at;
} stream;

static bool on_text(const char *text, size_t len, void *user) {
    stream *s = user;
    return ++s->calls != s->abort_at;
}

/* A fresh context (and draft context) for c, with the prompt in it already if c->prefill_first. */
static void open_ctx(const config *c, tandem_ctx **ctx, tandem_ctx **draft) {
    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = c->n_ctx ? c->n_ctx : N_CTX;
    if (c->n_batch) cp.n_batch = c->n_batch;
    CHECK_OK(tandem_ctx_init(target, &cp, ctx));
    *draft = NULL;
    if (c->draft_model) CHECK_OK(tandem_ctx_init(c->draft_model, NULL, draft));
    if (c->prefill_first) CHECK_OK(tandem_ctx_eval(*ctx, c->prompt, (int32_t)c->n_prompt, NULL));
}

static void close_ctx(tandem_ctx *ctx, tandem_ctx *draft, outcome *o) {
    tandem_model_info mi;
    tandem_model_get_info(target, &mi);
    o->n_past = tandem_ctx_n_past(ctx);
    const float *l = tandem_ctx_logits(ctx);
    o->has_logits = l != NULL;
    memset(o->logits, 0, sizeof o->logits);
    if (l) memcpy(o->logits, l, sizeof(float) * (size_t)mi.vocab_size);
    tandem_ctx_free(ctx);
    tandem_ctx_free(draft);
}

static void run_generate(const config *c, outcome *o) {
    tandem_ctx *ctx, *draft;
    open_ctx(c, &ctx, &draft);
    tandem_gen_params gp = c->gp;
    gp.draft = draft;
    stream s = {.abort_at = c->abort_at_call};
    gp.on_text = on_text;
    gp.user = &s;
    const size_t n_prompt = c->prefill_first ? 0 : c->n_prompt;
    CHECK_OK(tandem_generate(ctx, c->prompt, n_prompt, &gp, &o->r));
    close_ctx(ctx, draft, o);
}

/* Several sequences stepped in turn, each starting `stagger` turns after the one before. */
typedef struct job {
    const config *c;
    tandem_ctx *ctx, *draft;
    tandem_gen_params gp;
    stream s;
    gen_sequence seq;
    bool started, done;
} job;

static void run_interleaved(const config **cs, int n, int stagger, outcome *out) {
    job jobs[8] = {0};
    for (int i = 0; i < n; i++) {
        job *j = &jobs[i];
        j->c = cs[i];
        open_ctx(j->c, &j->ctx, &j->draft);
        j->gp = j->c->gp;
        j->gp.draft = j->draft;
        j->s.abort_at = j->c->abort_at_call;
        j->gp.on_text = on_text;
        j->gp.user = &j->s;
        out[i].steps = out[i].prompt_steps = 0;
    }
    for (int turn = 0, running = n; running > 0; turn++) {
        running = 0;
        for (int i = 0; i < n; i++) {
            job *j = &jobs[i];
            if (j->done || turn < i * stagger) {
                running += !j->done;
                continue;
            }
            if (!j->started) {
                const size_t n_prompt = j->c->prefill_first ? 0 : j->c->n_prompt;
                tandem_status st = gen_sequence_init(&j->seq, j->ctx, j->c->prompt, n_prompt, &j->gp, &out[i].r);
                CHECK_OK(st);
                j->started = true;
                if (st) {
                    gen_sequence_free(&j->seq);
                    close_ctx(j->ctx, j->draft, &out[i]);
                    j->done = true;
                    continue;
                }
            }
            const int32_t past = tandem_ctx_n_past(j->ctx);
            const bool in_prompt = j->seq.phase == GEN_PROMPT && j->seq.n_prompt_done < j->seq.n_prompt;
            tandem_status st = gen_sequence_step(&j->seq, &j->done);
            CHECK_OK(st);
            if (st) j->done = true;
            out[i].steps++;
            if (in_prompt) { /* a prompt step evaluates one chunk of it, no more */
                out[i].prompt_steps++;
                const int32_t chunk = j->seq.prompt_chunk;
                const int32_t want = (int32_t)j->c->n_prompt - past < chunk ? (int32_t)j->c->n_prompt - past : chunk;
                CHECK_MSG(tandem_ctx_n_past(j->ctx) == past + want, "%s: a prompt step took %d tokens, not %d",
                          j->c->name, tandem_ctx_n_past(j->ctx) - past, want);
            }
            if (j->done) {
                CHECK_OK(gen_sequence_finish(&j->seq));
                gen_sequence_free(&j->seq);
                close_ctx(j->ctx, j->draft, &out[i]);
            }
            running += !j->done;
        }
    }
}

static void check_same(const config *c, const outcome *want, const outcome *got) {
    const tandem_gen_result *a = &want->r, *b = &got->r;
    CHECK_MSG(a->n_ids == b->n_ids && (a->n_ids == 0 || memcmp(a->ids, b->ids, sizeof *a->ids * a->n_ids) == 0),
              "%s: %zu ids by hand, %zu from tandem_generate, or different ones", c->name, b->n_ids, a->n_ids);
    CHECK_MSG(a->text_len == b->text_len && memcmp(a->text, b->text, a->text_len) == 0, "%s: the texts differ",
              c->name);
    CHECK_MSG(a->finish == b->finish, "%s: finish %s by hand, %s from tandem_generate", c->name,
              tandem_finish_name(b->finish), tandem_finish_name(a->finish));
    CHECK(a->speculative == b->speculative);
    CHECK(a->timings.n_prompt == b->timings.n_prompt && a->timings.n_generated == b->timings.n_generated);
    CHECK(b->timings.n_generated == (int32_t)b->n_ids);
    CHECK(b->timings.prompt_ms >= 0 && b->timings.decode_ms >= 0);
    CHECK(b->n_ids == 0 || b->timings.ttft_ms >= b->timings.prompt_ms);
    const tandem_spec_stats *x = &a->spec_stats, *y = &b->spec_stats;
    if (!c->timing_dependent)
        CHECK_MSG(x->n_rounds == y->n_rounds && x->n_drafted == y->n_drafted && x->n_accepted == y->n_accepted &&
                      x->n_drafted_lookup == y->n_drafted_lookup && x->n_accepted_lookup == y->n_accepted_lookup &&
                      x->n_rounds_draft_off == y->n_rounds_draft_off,
                  "%s: speculative counts differ", c->name);
    /* (adaptive rounds may end on another pass, so the cache's last logits may or may not be there) */
    if (!c->timing_dependent)
        CHECK_MSG(want->n_past == got->n_past && want->has_logits == got->has_logits &&
                      memcmp(want->logits, got->logits, sizeof want->logits) == 0,
                  "%s: the context after generation differs", c->name);
}

/* The greedy ids of the target alone by argmax over tandem_ctx_eval: the reference for plain greedy decoding. */
static void greedy_reference(const int32_t *prompt, size_t n_prompt, int n, int32_t *out) {
    tandem_model_info mi;
    tandem_model_get_info(target, &mi);
    tandem_ctx *ctx;
    CHECK_OK(tandem_ctx_init(target, NULL, &ctx));
    CHECK_OK(tandem_ctx_eval(ctx, prompt, (int32_t)n_prompt, NULL));
    for (int i = 0; i < n; i++) {
        const float *l = tandem_ctx_logits(ctx);
        int32_t x = 0;
        for (int32_t v = 1; v < mi.vocab_size; v++) x = l[v] > l[x] ? v : x;
        out[i] = x;
        CHECK_OK(tandem_ctx_eval(ctx, &x, 1, NULL));
    }
    tandem_ctx_free(ctx);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    golden = argv[1];
    target = load_golden_model(golden, "tied_gqa2");
    draft_q4 = load_golden_model(golden, "tied_gqa2/model-q4_0.gguf");
    draft_other = load_golden_model(golden, "untied_gqa4");
    if (!target || !draft_q4 || !draft_other) return test_summary();

    enum { N = 20 };
    static config cs[N];
    tandem_gen_params base = tandem_gen_default_params(target);
    base.spec = tandem_spec_default_params();
    for (int i = 0; i < N; i++) {
        cs[i].gp = base;
        cs[i].gp.ignore_eos = true;
        cs[i].gp.max_tokens = 40;
        cs[i].gp.sampling.temperature = 0;
        cs[i].n_prompt = 12;
        for (size_t k = 0; k < 100; k++) cs[i].prompt[k] = (int32_t)((k * 7919u + 13) % 400);
    }
    int n = 0;
    cs[n++].name = "plain greedy";
    cs[n].name = "plain sampled";
    cs[n].gp.sampling = base.sampling;
    cs[n].gp.sampling.temperature = 0.9f;
    cs[n++].gp.sampling.seed = 7;
    cs[n].name = "a long prompt in chunks";
    cs[n].n_prompt = 100;
    cs[n++].n_batch = 16;
    cs[n].name = "end ids honoured";
    cs[n].gp.ignore_eos = false;
    cs[n].gp.max_tokens = -1;
    cs[n].gp.sampling.temperature = 1.0f;
    for (uint64_t seed = 1; seed < 100; seed++) { /* a seed with which the target ends by itself */
        cs[n].gp.sampling.seed = seed;
        outcome o;
        run_generate(&cs[n], &o);
        const bool eos = o.r.finish == TANDEM_FINISH_EOS;
        tandem_gen_result_free(&o.r);
        if (eos) break;
    }
    n++;
    cs[n].name = "the context fills";
    cs[n].gp.max_tokens = -1;
    cs[n++].n_ctx = 30;
    cs[n].name = "the callback stops it";
    cs[n++].abort_at_call = 4;
    cs[n].name = "max_tokens 0";
    cs[n++].gp.max_tokens = 0;
    cs[n].name = "from what the context holds";
    cs[n++].prefill_first = true;
    const int first_spec = n;
    cs[n].name = "draft, greedy";
    cs[n].draft_model = draft_q4;
    cs[n].gp.spec.adaptive = false;
    cs[n++].gp.spec.draft_max = 4;
    cs[n].name = "draft, sampled";
    cs[n].draft_model = draft_other;
    cs[n].gp.sampling = base.sampling;
    cs[n].gp.sampling.temperature = 0.8f;
    cs[n].gp.sampling.seed = 11;
    cs[n].gp.spec.adaptive = false;
    cs[n++].gp.spec.draft_max = 3;
    cs[n].name = "draft, adaptive";
    cs[n].draft_model = draft_other;
    cs[n++].timing_dependent = true;
    cs[n].name = "lookup";
    cs[n++].gp.spec.lookup_ngram = 2;
    cs[n].name = "speculative, the context fills";
    cs[n].draft_model = draft_q4;
    cs[n].gp.spec.adaptive = false;
    cs[n].gp.max_tokens = -1;
    cs[n++].n_ctx = 33;
    cs[n].name = "speculative, the callback stops it";
    cs[n].draft_model = draft_q4;
    cs[n].gp.spec.adaptive = false;
    cs[n++].abort_at_call = 5;
    cs[n].name = "speculative, max_tokens 0";
    cs[n].gp.spec.lookup_ngram = 2;
    cs[n++].gp.max_tokens = 0;
    cs[n].name = "speculative, a long prompt in chunks";
    cs[n].draft_model = draft_q4;
    cs[n].gp.spec.adaptive = false;
    cs[n].n_prompt = 70;
    cs[n++].n_batch = 16;

    /* stop strings: cut where a piece of the plain greedy text appears (so that they do stop it) */
    outcome plain;
    run_generate(&cs[0], &plain);
    CHECK(plain.r.text_len > 20);
    static char stop_a[8], stop_b[8];
    memcpy(stop_a, plain.r.text + 12, 3);
    memcpy(stop_b, plain.r.text + 14, 4);
    static const char *stops[] = {stop_b, stop_a};
    cs[n].name = "stop strings";
    cs[n].gp.stop = stops;
    cs[n++].gp.n_stop = 2;
    cs[n].name = "speculative, stop strings";
    cs[n].gp.stop = stops;
    cs[n].gp.n_stop = 2;
    cs[n].draft_model = draft_q4;
    cs[n].gp.spec.adaptive = false;
    cs[n++].gp.spec.draft_max = 6;
    CHECK(n <= N);

    outcome *alone = calloc((size_t)n, sizeof *alone), *by_hand = calloc((size_t)n, sizeof *by_hand);
    for (int i = 0; i < n; i++) run_generate(&cs[i], &alone[i]);
    /* interleaved in groups of four, started one, two or no turns apart */
    for (int g = 0; g < n; g += 4) {
        const config *group[4];
        int k = 0;
        for (; k < 4 && g + k < n; k++) group[k] = &cs[g + k];
        run_interleaved(group, k, (g / 4) % 3, by_hand + g);
    }
    for (int i = 0; i < n; i++) {
        check_same(&cs[i], &alone[i], &by_hand[i]);
        const tandem_gen_result *r = &by_hand[i].r;
        const int chunks = cs[i].prefill_first ? 0
                                               : (int)((cs[i].n_prompt + (cs[i].n_batch ? cs[i].n_batch : 64) - 1) /
                                                       (cs[i].n_batch ? cs[i].n_batch : 64));
        CHECK_MSG(by_hand[i].prompt_steps == chunks, "%s: %d prompt steps, not %d", cs[i].name, by_hand[i].prompt_steps,
                  chunks);
        /* after the prompt: one step per token (plain), or the first token and then one per round */
        const int after = by_hand[i].steps - by_hand[i].prompt_steps;
        const bool full_check = r->finish == TANDEM_FINISH_CONTEXT_FULL; /* a round that finds no room emits nothing */
        const bool speculative = cs[i].draft_model || cs[i].gp.spec.lookup_ngram > 0;
        CHECK(r->speculative == speculative);
        if (!speculative && cs[i].gp.max_tokens != 0)
            CHECK_MSG(after == (int)r->n_ids, "%s: %d steps for %zu tokens", cs[i].name, after, r->n_ids);
        else if (cs[i].gp.max_tokens != 0)
            CHECK_MSG(after == 1 + r->spec_stats.n_rounds + full_check, "%s: %d steps for %d rounds", cs[i].name, after,
                      r->spec_stats.n_rounds);
        printf("%-38s %2zu ids, finish %-12s %d steps\n", cs[i].name, r->n_ids, tandem_finish_name(r->finish),
               by_hand[i].steps);
    }

    /* what each case is about did happen */
    CHECK(alone[0].r.finish == TANDEM_FINISH_LENGTH && alone[0].r.n_ids == 40);
    int32_t ref[40];
    greedy_reference(cs[0].prompt, cs[0].n_prompt, 40, ref);
    CHECK_MSG(memcmp(ref, by_hand[0].r.ids, sizeof ref) == 0, "plain greedy: not the target's argmax");
    CHECK(memcmp(alone[0].r.ids, alone[1].r.ids, sizeof ref) != 0); /* sampling differs from greedy */
    for (int i = 0; i < n; i++) {
        const tandem_gen_result *r = &by_hand[i].r;
        if (strstr(cs[i].name, "end ids")) CHECK(r->finish == TANDEM_FINISH_EOS);
        if (strstr(cs[i].name, "fills")) CHECK(r->finish == TANDEM_FINISH_CONTEXT_FULL);
        if (strstr(cs[i].name, "callback")) CHECK(r->finish == TANDEM_FINISH_ABORTED);
        if (strstr(cs[i].name, "stop strings")) { /* cut where the first of them begins in the plain text */
            const char *a = memmem(plain.r.text, plain.r.text_len, stop_a, strlen(stop_a));
            const char *b = memmem(plain.r.text, plain.r.text_len, stop_b, strlen(stop_b));
            const size_t cut = (size_t)((a && (!b || a < b) ? a : b) - plain.r.text);
            CHECK(r->finish == TANDEM_FINISH_STOP_STRING && r->text_len == cut && cut <= 12);
            CHECK(memcmp(r->text, plain.r.text, cut) == 0);
        }
        if (strstr(cs[i].name, "max_tokens 0")) CHECK(r->finish == TANDEM_FINISH_LENGTH && r->n_ids == 0);
        if (strstr(cs[i].name, "max_tokens 0")) CHECK(by_hand[i].n_past == (int32_t)cs[i].n_prompt);
        /* greedy speculation: the target's own ids, as far as they go */
        if (r->speculative && cs[i].gp.sampling.temperature == 0 && cs[i].n_prompt == 12 && r->n_ids <= 40)
            CHECK_MSG((r->n_ids == 0 || memcmp(r->ids, alone[0].r.ids, sizeof *r->ids * r->n_ids) == 0),
                      "%s: not the target's greedy ids", cs[i].name);
        if (r->speculative && cs[i].gp.max_tokens == 40 && cs[i].gp.n_stop == 0 && !cs[i].abort_at_call)
            CHECK(r->n_ids == 40);
    }
    CHECK(strstr(cs[first_spec].name, "greedy") && by_hand[first_spec].r.spec_stats.n_accepted > 0);

    /* a bad id late in a prompt of several chunks: refused before any chunk, named at its index in the prompt */
    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_batch = 16;
    tandem_ctx *ctx;
    CHECK_OK(tandem_ctx_init(target, &cp, &ctx));
    int32_t bad_prompt[70];
    memcpy(bad_prompt, cs[0].prompt, sizeof bad_prompt);
    bad_prompt[40] = 100000;
    tandem_gen_result r;
    CHECK_FAILS(tandem_generate(ctx, bad_prompt, 70, &cs[0].gp, &r), TANDEM_ERR_INVALID_ARG,
                "token id 100000 at index 40 is outside");
    CHECK(tandem_ctx_n_past(ctx) == 0);
    tandem_ctx_free(ctx);

    for (int i = 0; i < n; i++) {
        tandem_gen_result_free(&alone[i].r);
        tandem_gen_result_free(&by_hand[i].r);
    }
    free(alone);
    free(by_hand);
    tandem_gen_result_free(&plain.r);
    tandem_model_free(target);
    tandem_model_free(draft_q4);
    tandem_model_free(draft_other);
    return test_summary();
}
