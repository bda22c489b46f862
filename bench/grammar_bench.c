/* grammar_bench.c — what constrained decoding costs per token on a real vocabulary (the Qwen3 tokenizer, 151,669
 * tokens, masks over 151,936 logits): the cheap check of one token (sample-then-check's usual path) against the full
 * mask (its path when the sampled token is refused), along valid outputs of a JSON schema and of the tool grammar.
 * Times are the thread's CPU time. usage: grammar_bench TOKENIZER_DIR [REPEATS]   (not a test: figures go to
 * bench/README.md) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grammar.h"
#include "tandem.h"

enum { N_LOGITS = 151936 };

/* The thread's CPU time: on a machine shared with other work, wall-clock times per token mostly measure when the
 * scheduler lets the thread run (everything here is single-threaded). */
static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n ? v[n / 2] : 0;
}

static double mean(const double *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += v[i];
    return n ? s / n : 0;
}

/* Steps through text's tokens under g: at each position times the check of the next token and the full mask. */
static void walk(const char *label, const tandem_tokenizer *tok, const tandem_grammar *g, const char *text,
                 int repeats) {
    int32_t *ids;
    size_t n;
    if (tandem_tokenizer_encode(tok, text, strlen(text), true, &ids, &n)) {
        fprintf(stderr, "encode: %s\n", tandem_last_error());
        exit(1);
    }
    float *logits = malloc(sizeof(float) * N_LOGITS);
    double *check = malloc(sizeof(double) * n * (size_t)repeats), *mask = malloc(sizeof(double) * n * (size_t)repeats);
    int n_check = 0, n_mask = 0;
    for (int r = 0; r < repeats; r++) {
        grammar_matcher *m;
        if (grammar_matcher_new(g, &m)) exit(1);
        for (size_t i = 0; i < n; i++) {
            /* a check takes about as long as reading the clock: timed over 32 of them */
            double t0 = now_us();
            bool ok = true;
            for (int k = 0; k < 32; k++) ok &= grammar_matcher_allows(m, ids[i]);
            check[n_check++] = (now_us() - t0) / 32;
            if (!ok) {
                fprintf(stderr, "%s: token %zu (%d) refused\n", label, i, ids[i]);
                exit(1);
            }
            memset(logits, 0, sizeof(float) * N_LOGITS);
            t0 = now_us();
            if (grammar_matcher_mask_logits(m, logits, N_LOGITS)) {
                fprintf(stderr, "mask: %s\n", tandem_last_error());
                exit(1);
            }
            mask[n_mask++] = now_us() - t0;
            if (grammar_matcher_consume(m, ids[i])) {
                fprintf(stderr, "consume: %s\n", tandem_last_error());
                exit(1);
            }
        }
        grammar_matcher_free(m);
    }
    printf("%-26s %3zu tokens  check: mean %5.1f us, median %5.1f us   full mask: mean %7.1f us, median %7.1f us\n",
           label, n, mean(check, n_check), median(check, n_check), mean(mask, n_mask), median(mask, n_mask));
    free(logits);
    free(check);
    free(mask);
    tandem_free(ids);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs("usage: grammar_bench TOKENIZER_DIR [REPEATS]\n", stderr);
        return 2;
    }
    const int repeats = argc > 2 ? atoi(argv[2]) : 5;
    tandem_tokenizer *tok;
    if (tandem_tokenizer_load(argv[1], &tok)) {
        fprintf(stderr, "%s\n", tandem_last_error());
        return 1;
    }
    printf("vocabulary: %d tokens, masks over %d logits\n", tandem_tokenizer_vocab_size(tok), N_LOGITS);
    static const char schema[] =
        "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}, \"country\": {\"type\": \"string\"},"
        " \"population\": {\"type\": \"integer\", \"minimum\": 0}, \"landmarks\": {\"type\": \"array\", \"items\": "
        "{\"type\": \"string\"}, \"maxItems\": 5}, \"capital\": {\"type\": \"boolean\"}}, \"required\": [\"city\", "
        "\"country\", \"population\", \"landmarks\", \"capital\"], \"additionalProperties\": false}";
    static const char json_text[] =
        "{\"city\": \"Paris\", \"country\": \"France\", \"population\": 2102650, "
        "\"landmarks\": [\"Eiffel Tower\", \"Louvre Museum\", \"Notre-Dame\"], "
        "\"capital\": true}<|im_end|>";
    static const char tools[] =
        "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\", "
        "\"properties\": {\"location\": {\"type\": \"string\"}, \"unit\": {\"enum\": [\"celsius\", \"fahrenheit\"]}},"
        " \"required\": [\"location\"]}}}, {\"type\": \"function\", \"function\": {\"name\": \"search\", "
        "\"parameters\": {\"type\": \"object\", \"properties\": {\"query\": {\"type\": \"string\"}}, \"required\": "
        "[\"query\"]}}}]";
    static const char tool_text[] =
        "<think>\nThe user wants the weather in Paris, so I should call get_weather with the city.\n</think>\n\n"
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris, France\", \"unit\": "
        "\"celsius\"}}\n</tool_call><|im_end|>";
    static const char free_text[] =
        "The capital of France is Paris, a city known for its art, food and the Eiffel "
        "Tower, which was built in 1889 for the World's Fair.<|im_end|>";

    double t0 = now_us();
    tandem_grammar *g_schema, *g_tools, *g_none;
    if (tandem_grammar_from_json_schema(tok, schema, &g_schema)) return fprintf(stderr, "%s\n", tandem_last_error());
    const double t_first = now_us() - t0;
    t0 = now_us();
    tandem_grammar *g_again;
    if (tandem_grammar_from_json_schema(tok, schema, &g_again)) return 1;
    const double t_second = now_us() - t0;
    tandem_grammar_free(g_again);
    tandem_tool_grammar_params tp = tandem_tool_grammar_default_params();
    tp.tools_json = tools;
    t0 = now_us();
    if (tandem_grammar_from_tools(tok, &tp, &g_tools)) return fprintf(stderr, "%s\n", tandem_last_error());
    const double t_tools = now_us() - t0;
    tp.choice = TANDEM_TOOL_CHOICE_NONE;
    if (tandem_grammar_from_tools(tok, &tp, &g_none)) return 1;
    printf(
        "compile: first grammar %.1f ms (with the vocabulary for llguidance, once per tokenizer), the same schema "
        "again %.1f ms, the tool grammar %.1f ms\n",
        t_first / 1e3, t_second / 1e3, t_tools / 1e3);
    walk("json schema", tok, g_schema, json_text, repeats);
    walk("tools: reasoning + call", tok, g_tools, tool_text, repeats);
    walk("tools (none): free text", tok, g_none, free_text, repeats);
    tandem_grammar_free(g_schema);
    tandem_grammar_free(g_tools);
    tandem_grammar_free(g_none);
    tandem_tokenizer_free(tok);
    return 0;
}
