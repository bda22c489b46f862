/* grammar_samples.c — the test driver of test_grammar.py: N sampled generations (seeds SEED, SEED+1, …) of a model
 * under one grammar, one JSON line each {"ids", "text", "finish"}, so that Python's jsonschema can judge them.
 * usage: grammar_samples MODEL N SEED MAX_TOKENS PROMPT (schema FILE | object | tools FILE CHOICE PARALLEL THINKING
 *        OPEN) — CHOICE auto|none|required|<name>; PARALLEL, THINKING, OPEN 0 or 1. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tandem.h"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = '\0';
    fclose(f);
    return s;
}

static int fail(const char *what) {
    fprintf(stderr, "grammar_samples: %s: %s\n", what, tandem_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fputs(
            "usage: grammar_samples MODEL N SEED MAX_TOKENS PROMPT (schema FILE | object | tools FILE CHOICE "
            "PARALLEL THINKING OPEN)\n",
            stderr);
        return 2;
    }
    const int n = atoi(argv[2]), seed = atoi(argv[3]), max_tokens = atoi(argv[4]);
    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = 1;
    tandem_model *model;
    if (tandem_model_load(argv[1], &mp, &model)) return fail("load");
    const tandem_tokenizer *tok = tandem_model_tokenizer(model);
    tandem_grammar *g = NULL;
    char *text = NULL;
    tandem_status st;
    if (!strcmp(argv[6], "schema") && argc >= 8) {
        if (!(text = slurp(argv[7]))) return fail(argv[7]);
        st = tandem_grammar_from_json_schema(tok, text, &g);
    } else if (!strcmp(argv[6], "object")) {
        st = tandem_grammar_from_json_schema(tok, NULL, &g);
    } else if (!strcmp(argv[6], "tools") && argc >= 12) {
        if (!(text = slurp(argv[7]))) return fail(argv[7]);
        tandem_tool_grammar_params tp = tandem_tool_grammar_default_params();
        tp.tools_json = text;
        const char *c = argv[8];
        tp.choice = !strcmp(c, "auto")       ? TANDEM_TOOL_CHOICE_AUTO
                    : !strcmp(c, "none")     ? TANDEM_TOOL_CHOICE_NONE
                    : !strcmp(c, "required") ? TANDEM_TOOL_CHOICE_REQUIRED
                                             : TANDEM_TOOL_CHOICE_NAMED;
        tp.function_name = c;
        tp.parallel_tool_calls = atoi(argv[9]);
        tp.thinking = atoi(argv[10]);
        tp.reasoning_open = atoi(argv[11]);
        st = tandem_grammar_from_tools(tok, &tp, &g);
    } else {
        fputs("grammar_samples: unknown grammar\n", stderr);
        return 2;
    }
    if (st) return fail("grammar");
    int32_t *prompt;
    size_t n_prompt;
    if (tandem_tokenizer_encode(tok, argv[5], strlen(argv[5]), true, &prompt, &n_prompt)) return fail("prompt");
    tandem_ctx *ctx;
    if (tandem_ctx_init(model, NULL, &ctx)) return fail("context");
    for (int i = 0; i < n; i++) {
        tandem_gen_params gp = tandem_gen_default_params(model);
        gp.sampling = tandem_sampler_default_params();
        gp.sampling.temperature = 1.0f;
        gp.sampling.top_k = 0;
        gp.sampling.top_p = 1.0f;
        gp.sampling.min_p = 0.0f;
        gp.sampling.seed = (uint64_t)(seed + i);
        gp.max_tokens = max_tokens;
        gp.grammar = g;
        tandem_gen_result r;
        if (tandem_ctx_truncate(ctx, 0) || tandem_generate(ctx, prompt, n_prompt, &gp, &r)) return fail("generate");
        json_t *ids = json_array();
        for (size_t k = 0; k < r.n_ids; k++) json_array_append_new(ids, json_integer(r.ids[k]));
        json_t *line = json_pack("{s:o, s:o, s:s}", "ids", ids, "text", json_stringn(r.text, r.text_len), "finish",
                                 tandem_finish_name(r.finish));
        char *s = json_dumps(line, JSON_COMPACT);
        puts(s ? s : "null");
        free(s);
        json_decref(line);
        tandem_gen_result_free(&r);
    }
    tandem_free(prompt);
    tandem_ctx_free(ctx);
    tandem_grammar_free(g);
    tandem_model_free(model);
    free(text);
    return 0;
}
