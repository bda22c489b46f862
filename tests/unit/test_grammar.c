/* test_grammar.c — constrained decoding on the tiny random models: bad schemas and tools fail naming the field; greedy
 * output under a grammar is identical with and without speculation (three drafts, lookup); sampled tokens follow the
 * grammar-restricted distribution (chi-square, plain and speculative); engine requests follow their grammar.
 * (That outputs validate against their schemas is tests/integration/test_grammar.py's job, with jsonschema.) */
#include <jansson.h>
#include <stdlib.h>

#include "chi_square.h"
#include "golden.h"
#include "grammar.h"
#include "runtime.h"

static const char *golden;

static void check_errors(const tandem_tokenizer *tok) {
    tandem_grammar *g = NULL;
    CHECK(tandem_grammar_from_json_schema(tok, "{\"type\": \"object\",", &g) == TANDEM_ERR_INVALID_ARG);
    CHECK_MSG(strstr(tandem_last_error(), "schema_json: line 1") != NULL, "%s", tandem_last_error());
    CHECK(tandem_grammar_from_json_schema(tok, "[1, 2]", &g) == TANDEM_ERR_INVALID_ARG);
    CHECK(tandem_grammar_from_json_schema(tok, "{\"type\": \"strange\"}", &g) == TANDEM_ERR_INVALID_ARG);
    CHECK_MSG(strstr(tandem_last_error(), "schema_json: ") && strstr(tandem_last_error(), "strange"), "%s",
              tandem_last_error());
    CHECK(tandem_grammar_from_json_schema(tok, "{\"properties\": {\"a\": {\"pattern\": \"(\"}}}", &g) ==
          TANDEM_ERR_INVALID_ARG);
    CHECK(tandem_grammar_from_json_schema(tok, "{\"$ref\": \"#/nowhere\"}", &g) == TANDEM_ERR_INVALID_ARG);
    CHECK(g == NULL);

    tandem_tool_grammar_params tp = tandem_tool_grammar_default_params();
    tp.tools_json =
        "[{\"type\": \"function\", \"function\": {\"name\": \"a\"}}, {\"type\": \"function\", "
        "\"function\": {\"parameters\": {}}}]";
    CHECK(tandem_grammar_from_tools(tok, &tp, &g) == TANDEM_ERR_INVALID_ARG);
    CHECK_MSG(strstr(tandem_last_error(), "tools_json: [1].function.name") != NULL, "%s", tandem_last_error());
    tp.tools_json = "{}";
    CHECK(tandem_grammar_from_tools(tok, &tp, &g) == TANDEM_ERR_INVALID_ARG);
    tp.tools_json = "[]";
    CHECK(tandem_grammar_from_tools(tok, &tp, &g) == TANDEM_ERR_INVALID_ARG);
    tp.tools_json = "[{\"name\": \"a\", \"parameters\": {\"type\": \"object\"}}]";
    tp.choice = TANDEM_TOOL_CHOICE_NAMED;
    tp.function_name = "b";
    CHECK(tandem_grammar_from_tools(tok, &tp, &g) == TANDEM_ERR_INVALID_ARG);
    CHECK_MSG(strstr(tandem_last_error(), "function_name") != NULL, "%s", tandem_last_error());
    tp.function_name = "a";
    CHECK_OK(tandem_grammar_from_tools(tok, &tp, &g));
    tandem_grammar_free(g);
    tp.choice = TANDEM_TOOL_CHOICE_NONE;
    tp.tools_json = NULL; /* not needed to ban calls */
    CHECK_OK(tandem_grammar_from_tools(tok, &tp, &g));
    tandem_grammar_free(g);
}

typedef struct run {
    int32_t ids[160];
    int n;
    char text[4096];
    tandem_finish finish;
    tandem_spec_stats stats;
} run;

static const int32_t base_prompt[] = {401, 72, 105, 33, 402, 198, 401, 65};
enum { N_BASE = sizeof base_prompt / sizeof *base_prompt };

static void generate_after(tandem_model *m, const int32_t *prompt, int n_prompt, tandem_ctx *draft,
                           const tandem_grammar *g, const tandem_sampler_params *sp, const tandem_spec_params *spec,
                           int max_tokens, run *out) {
    tandem_ctx *ctx;
    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = 200;
    CHECK_OK(tandem_ctx_init(m, &cp, &ctx));
    tandem_gen_params gp = tandem_gen_default_params(m);
    gp.sampling = *sp;
    gp.max_tokens = max_tokens;
    gp.grammar = g;
    gp.draft = draft;
    if (spec) gp.spec = *spec;
    if (draft) CHECK_OK(tandem_ctx_truncate(draft, 0));
    tandem_gen_result r;
    memset(out, 0, sizeof *out);
    CHECK_OK(tandem_generate(ctx, prompt, (size_t)n_prompt, &gp, &r));
    out->n = (int)r.n_ids;
    memcpy(out->ids, r.ids, sizeof(int32_t) * r.n_ids);
    snprintf(out->text, sizeof out->text, "%s", r.text ? r.text : "");
    out->finish = r.finish;
    out->stats = r.spec_stats;
    tandem_gen_result_free(&r);
    tandem_ctx_free(ctx);
}

static void generate(tandem_model *m, tandem_ctx *draft, const tandem_grammar *g, const tandem_sampler_params *sp,
                     const tandem_spec_params *spec, int max_tokens, run *out) {
    generate_after(m, base_prompt, N_BASE, draft, g, sp, spec, max_tokens, out);
}

static const char *const schemas[] = {
    "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 99}, "
    "\"b\": {\"enum\": [\"x\", \"yy\"]}}, \"required\": [\"a\", \"b\"], \"additionalProperties\": false}",
    "{\"type\": \"array\", \"items\": {\"type\": \"boolean\"}, \"minItems\": 1, \"maxItems\": 3}",
    NULL, /* any object */
};

/* Greedy: the same ids whatever proposes tokens (draft models that agree, half agree or not at all; lookup). */
static void check_greedy(tandem_model *target, tandem_model **drafts, int n_drafts) {
    const tandem_tokenizer *tok = tandem_model_tokenizer(target);
    tandem_sampler_params sp = tandem_sampler_default_params();
    sp.temperature = 0;
    int n_cmp = 0;
    for (int si = 0; si < 4; si++) {
        tandem_grammar *g = NULL;
        if (si < 3) {
            CHECK_OK(tandem_grammar_from_json_schema(tok, schemas[si], &g));
        } else {
            tandem_tool_grammar_params tp = tandem_tool_grammar_default_params();
            tp.tools_json =
                "[{\"name\": \"f\", \"parameters\": {\"type\": \"object\", \"properties\": {\"n\": "
                "{\"type\": \"integer\"}}, \"required\": [\"n\"], \"additionalProperties\": false}}]";
            tp.choice = TANDEM_TOOL_CHOICE_REQUIRED;
            tp.thinking = false;
            CHECK_OK(tandem_grammar_from_tools(tok, &tp, &g));
        }
        if (!g) continue;
        run plain, spec_run;
        generate(target, NULL, g, &sp, NULL, 120, &plain);
        if (si < 3 && plain.finish == TANDEM_FINISH_EOS) { /* a finished JSON value: it parses */
            json_error_t e;
            json_t *v = json_loads(plain.text, JSON_DECODE_ANY, &e);
            CHECK_MSG(v != NULL, "schema %d: %s is not JSON: %s", si, plain.text, e.text);
            json_decref(v);
        }
        for (int d = -1; d < n_drafts; d++) {
            tandem_ctx *dctx = NULL;
            if (d >= 0) CHECK_OK(tandem_ctx_init(drafts[d], NULL, &dctx));
            for (int len = 1; len <= 8; len *= 2) {
                tandem_spec_params spec = tandem_spec_default_params();
                spec.draft_max = len;
                spec.adaptive = false;
                spec.lookup_ngram = d < 0 ? 2 : 0;
                generate(target, dctx, g, &sp, &spec, 120, &spec_run);
                const bool same = spec_run.n == plain.n &&
                                  memcmp(spec_run.ids, plain.ids, sizeof(int32_t) * plain.n) == 0;
                CHECK_MSG(same, "grammar %d draft %d len %d: ids differ from the target alone (%d vs %d ids)", si, d,
                          len, spec_run.n, plain.n);
                n_cmp++;
            }
            tandem_ctx_free(dctx);
        }
        printf("grammar %d: greedy %d ids (%s): %.80s\n", si, plain.n, tandem_finish_name(plain.finish), plain.text);
        tandem_grammar_free(g);
    }
    printf("greedy under a grammar: %d speculative runs identical to plain decoding\n", n_cmp);
}

/* ---- sampling: the distribution is the sampler's restricted to the grammar ---- */

/* The definition, computed with the whole mask: D = t restricted to the allowed ids and renormalised, or the
 * sampler's distribution over masked logits when t gives them nothing. */
static void restricted(tandem_sampler *s, grammar_matcher *gm, const float *logits, const int32_t *hist, size_t n_hist,
                       int32_t V, float *probs) {
    float *masked = malloc(sizeof(float) * V);
    memcpy(masked, logits, sizeof(float) * V);
    CHECK_OK(grammar_matcher_mask_logits(gm, masked, V));
    tandem_sampler_probs(s, logits, hist, n_hist, probs);
    double kept = 0;
    for (int v = 0; v < V; v++) {
        if (masked[v] == -INFINITY) probs[v] = 0;
        kept += probs[v];
    }
    if (kept > 0)
        for (int v = 0; v < V; v++) probs[v] = (float)(probs[v] / kept);
    else tandem_sampler_probs(s, masked, hist, n_hist, probs);
    free(masked);
}

/* The second token of an integer, over SEEDS seeds: plain (sample, then check), with a draft model (drafting under
 * the grammar), and (with_lookup) with lookup after a prompt where each possible first token was followed by "A" (a
 * proposal the grammar refuses: the rule's residual path). */
static void check_sampling(tandem_model *target, tandem_model *draft_model, int top_k, bool with_lookup) {
    enum { SEEDS = 3000 };
    const tandem_tokenizer *tok = tandem_model_tokenizer(target);
    tandem_model_info mi;
    tandem_model_get_info(target, &mi);
    const int32_t V = mi.vocab_size;
    tandem_grammar *g = NULL;
    CHECK_OK(tandem_grammar_from_json_schema(tok, "{\"type\": \"integer\"}", &g));
    if (!g) return;
    tandem_sampler_params sp = tandem_sampler_default_params();
    sp.temperature = 1.0f;
    sp.top_k = top_k;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    tandem_sampler *s;
    CHECK_OK(tandem_sampler_init(&sp, V, &s));
    grammar_matcher *gm;
    CHECK_OK(grammar_matcher_new(g, &gm));
    /* the prompt: the base one, then every possible first token followed by "A" */
    int32_t prompt[N_BASE + 2 * 64];
    int n_prompt = N_BASE;
    memcpy(prompt, base_prompt, sizeof base_prompt);
    float *p1 = malloc(sizeof(float) * V), *p2 = malloc(sizeof(float) * V);
    for (int v = 0; v < V; v++) p1[v] = 0;
    CHECK_OK(grammar_matcher_mask_logits(gm, p1, V));
    for (int v = 0; with_lookup && v < V && n_prompt + 2 <= (int)(sizeof prompt / sizeof *prompt); v++)
        if (p1[v] == 0) {
            prompt[n_prompt++] = v;
            prompt[n_prompt++] = 65; /* "A": no integer goes on with it */
        }
    CHECK(!grammar_matcher_allows(gm, 65));
    tandem_ctx *tc;
    CHECK_OK(tandem_ctx_init(target, NULL, &tc));
    CHECK_OK(tandem_ctx_eval(tc, prompt, n_prompt, NULL));
    /* the exact marginal of the second token: Σ_t1 D1(t1) D2(t2 | t1) */
    double *marginal = calloc((size_t)V, sizeof(double));
    restricted(s, gm, tandem_ctx_logits(tc), prompt, (size_t)n_prompt, V, p1);
    int32_t hist[N_BASE + 2 * 64 + 1];
    memcpy(hist, prompt, sizeof(int32_t) * (size_t)n_prompt);
    int n_first = 0;
    for (int t1 = 0; t1 < V; t1++) {
        if (p1[t1] == 0) continue;
        n_first++;
        CHECK_OK(tandem_ctx_truncate(tc, n_prompt));
        CHECK_OK(tandem_ctx_eval(tc, &t1, 1, NULL));
        hist[n_prompt] = t1;
        CHECK_OK(grammar_matcher_consume(gm, t1));
        restricted(s, gm, tandem_ctx_logits(tc), hist, (size_t)n_prompt + 1, V, p2);
        CHECK_OK(grammar_matcher_rollback(gm, 1));
        for (int v = 0; v < V; v++) marginal[v] += (double)p1[t1] * p2[v];
    }
    tandem_ctx *dc;
    CHECK_OK(tandem_ctx_init(draft_model, NULL, &dc));
    static const char *const mode_name[] = {"plain", "draft model", "lookup"};
    for (int mode = 0; mode < (with_lookup ? 3 : 2); mode++) {
        int *seen = calloc((size_t)V, sizeof(int));
        tandem_spec_params spec = tandem_spec_default_params();
        spec.adaptive = false;
        spec.draft_max = 3;
        spec.lookup_ngram = mode == 2 ? 1 : 0;
        int n_bad = 0, n_drafted = 0;
        for (int seed = 0; seed < SEEDS; seed++) {
            sp.seed = (uint64_t)seed * 7919 + 17;
            run r;
            /* 4 tokens: the round after the first token proposes up to 2, so the second comes from the rule */
            generate_after(target, prompt, n_prompt, mode == 1 ? dc : NULL, g, &sp, mode ? &spec : NULL, 4, &r);
            n_drafted += r.stats.n_drafted;
            if (r.n >= 2) seen[r.ids[1]]++;
            else n_bad++;
        }
        int dof;
        double chi = chi_square(seen, marginal, V, SEEDS - n_bad, &dof);
        printf(
            "top_k %d, %s: 2nd token under the grammar over %d seeds (%d first tokens allowed, %d tokens proposed): "
            "chi2 %.1f (dof %d, critical %.1f)\n",
            top_k, mode_name[mode], SEEDS, n_first, n_drafted, chi, dof, chi_critical(dof));
        CHECK_MSG(chi < chi_critical(dof), "top_k %d mode %d: chi2 %g over %d dof", top_k, mode, chi, dof);
        CHECK(dof >= 3);   /* the test has bins to tell distributions apart */
        CHECK(n_bad == 0); /* an integer has no end after one token here: the second token always comes */
        if (mode) CHECK(n_drafted >= SEEDS); /* every second token was proposed, and the rule decided it */
        free(seen);
    }
    tandem_ctx_free(dc);
    tandem_ctx_free(tc);
    grammar_matcher_free(gm);
    tandem_sampler_free(s);
    tandem_grammar_free(g);
    free(p1);
    free(p2);
    free(marginal);
}

/* Engine requests each follow their own grammar, and give what tandem_generate gives them alone. */
static void check_engine(tandem_model *m) {
    const tandem_tokenizer *tok = tandem_model_tokenizer(m);
    tandem_grammar *g[2] = {NULL, NULL};
    CHECK_OK(tandem_grammar_from_json_schema(tok, schemas[0], &g[0]));
    CHECK_OK(tandem_grammar_from_json_schema(tok, schemas[1], &g[1]));
    if (!g[0] || !g[1]) return;
    tandem_engine *e;
    CHECK_OK(tandem_engine_create(m, NULL, &e));
    static const int32_t prompt[] = {401, 72, 105, 33, 402, 198, 401, 65};
    tandem_gen_params gp[4];
    int64_t id[4];
    for (int i = 0; i < 4; i++) {
        gp[i] = tandem_gen_default_params(m);
        gp[i].sampling.temperature = 1.0f;
        gp[i].sampling.seed = 100 + (uint64_t)i;
        gp[i].max_tokens = 60;
        gp[i].grammar = g[i % 2];
        CHECK_OK(tandem_engine_add(e, prompt, sizeof prompt / sizeof *prompt, &gp[i], &id[i]));
    }
    for (bool idle = false; !idle;) CHECK_OK(tandem_engine_step(e, &idle));
    for (int i = 0; i < 4; i++) {
        tandem_gen_result r;
        CHECK_OK(tandem_engine_result(e, id[i], &r));
        run alone;
        generate(m, NULL, g[i % 2], &gp[i].sampling, NULL, 60, &alone);
        CHECK_MSG((int)r.n_ids == alone.n && memcmp(r.ids, alone.ids, sizeof(int32_t) * r.n_ids) == 0,
                  "engine request %d differs from tandem_generate", i);
        tandem_gen_result_free(&r);
    }
    tandem_engine_free(e);
    tandem_grammar_free(g[0]);
    tandem_grammar_free(g[1]);
}

/* A grammar of another vocabulary (the real Qwen3 tokenizer's, when the tests were given it) is refused. */
static void check_mismatch(tandem_model *m, const char *qwen3_dir) {
    tandem_tokenizer *big;
    if (tandem_tokenizer_load(qwen3_dir, &big) != TANDEM_OK) {
        printf("no Qwen3 tokenizer in %s: mismatch check skipped\n", qwen3_dir);
        return;
    }
    tandem_grammar *g = NULL;
    CHECK_OK(tandem_grammar_from_json_schema(big, schemas[0], &g));
    tandem_ctx *ctx;
    CHECK_OK(tandem_ctx_init(m, NULL, &ctx));
    tandem_gen_params gp = tandem_gen_default_params(m);
    gp.grammar = g;
    gp.max_tokens = 4;
    const int32_t prompt[] = {401, 72};
    tandem_gen_result r;
    CHECK(g && tandem_generate(ctx, prompt, 2, &gp, &r) == TANDEM_ERR_MISMATCH);
    CHECK_MSG(strstr(tandem_last_error(), "grammar") != NULL, "%s", tandem_last_error());
    tandem_ctx_free(ctx);
    tandem_grammar_free(g);
    tandem_tokenizer_free(big);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    golden = argv[1];
    tandem_model *target = load_golden_model(golden, "tied_gqa2");
    tandem_model *drafts[3] = {load_golden_model(golden, "tied_gqa2/model-q4_0.gguf"),
                               load_golden_model(golden, "untied_gqa4"), load_golden_model(golden, "tied_gqa2")};
    if (!target || !drafts[0] || !drafts[1] || !drafts[2]) return test_summary();
    check_errors(tandem_model_tokenizer(target));
    check_greedy(target, drafts, 3);
    check_sampling(target, drafts[1], 0, true);
    check_sampling(target, drafts[1], 5, false); /* top-5 often holds no allowed token: the masked fallback */
    check_engine(target);
    if (argc > 2) check_mismatch(target, argv[2]);
    for (int i = 0; i < 3; i++) tandem_model_free(drafts[i]);
    tandem_model_free(target);
    return test_summary();
}
