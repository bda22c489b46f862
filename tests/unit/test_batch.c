/* test_batch.c — one forward pass over tokens of several sequences equals each sequence evaluated alone, bit for bit:
 * the logits of every token and the caches, for mixes of prompt chunks, single decodes and verification passes at
 * different cache depths (f16, f32 and q8_0 caches, 8-bit and exact activations, float and quantized weights); a token
 * given by its embedding row equals the token given by its id; the logits a batch selects are those rows. */
#include <stdlib.h>

#include "golden.h"
#include "runtime.h"

enum { N_SEQ = 4, N_STEPS = 8, N_CTX = 128, N_BATCH = 96, MAX_LEN = 96 };

/* Tokens per step for each sequence (0: absent at that step). Prompts of up to 40 tokens, decodes of 1, verification
 * passes of 2-17; depths cross attention's 16-token tiles and 64-key blocks; sequences join late and pause. */
static const int chunks[N_SEQ][N_STEPS] = {
    {40, 1, 1, 5, 1, 17, 0, 1},
    {1, 1, 1, 30, 4, 1, 33, 1},
    {0, 3, 1, 9, 1, 1, 40, 1},
    {3, 0, 2, 1, 16, 1, 5, 1},
};

static int32_t token_id(int seq, int row) { return (int32_t)((seq * 131u + row * 7919u + 13) % 400); }

/* One sequence alone: its chunks in order, each a one-sequence batch; logits (len, V) of every row. */
static void run_alone(const qwen3_model *qm, thread_pool *pool, qwen3_scratch *s, qwen3_kv_cache *cache, int seq,
                      float *logits) {
    const int V = qm->cfg.vocab_size;
    int32_t ids[MAX_LEN];
    int row = 0;
    for (int step = 0; step < N_STEPS; step++) {
        const int n = chunks[seq][step];
        if (!n) continue;
        for (int t = 0; t < n; t++) ids[t] = token_id(seq, row + t);
        const qwen3_batch b = qwen3_sequence_batch(s, cache, ids, n, row, false);
        qwen3_forward(qm, s, pool, &b, logits + (size_t)row * V);
        row += n;
    }
}

/* A step's batch: each present sequence's chunk as a run, in an order that changes with the step (forward, backward);
 * on steps 0, 2 and 5 the first chunk of two or more tokens is split in two runs, its second half first: one
 * sequence's tokens in two runs, a run whose rows come after a later run's. */
typedef struct step_batch {
    int n;
    int32_t ids[N_BATCH], row[N_BATCH], seq[N_BATCH];
    qwen3_kv_cache *cache[N_BATCH];
} step_batch;

static void add_run(step_batch *sb, qwen3_kv_cache **caches, int seq, int row0, int n) {
    for (int t = 0; t < n; t++, sb->n++) {
        TANDEM_ASSERT(sb->n < N_BATCH);
        sb->ids[sb->n] = token_id(seq, row0 + t);
        sb->row[sb->n] = row0 + t;
        sb->seq[sb->n] = seq;
        sb->cache[sb->n] = caches[seq];
    }
}

static void make_step(step_batch *sb, qwen3_kv_cache **caches, const int *depth, int step) {
    sb->n = 0;
    bool split = step == 0 || step == 2 || step == 5;
    for (int i = 0; i < N_SEQ; i++) {
        const int seq = step % 2 ? N_SEQ - 1 - i : i, n = chunks[seq][step];
        if (split && n >= 2) {
            const int first = n / 2;
            add_run(sb, caches, seq, depth[seq] + first, n - first);
            add_run(sb, caches, seq, depth[seq], first);
            split = false;
        } else {
            add_run(sb, caches, seq, depth[seq], n);
        }
    }
}

/* The rows 0 … len−1 of every layer and KV head of two caches are the same bits. */
static bool same_cache_rows(const qwen3_config *c, const qwen3_kv_cache *a, const qwen3_kv_cache *b, int len) {
    const size_t row_bytes = kv_row_bytes(a->kv_type, c->head_dim);
    for (int lh = 0; lh < c->n_layers * c->n_kv_heads; lh++) {
        const size_t off = (size_t)lh * a->n_ctx * row_bytes;
        if (memcmp((const uint8_t *)a->k + off, (const uint8_t *)b->k + off, (size_t)len * row_bytes) ||
            memcmp((const uint8_t *)a->v + off, (const uint8_t *)b->v + off, (size_t)len * row_bytes))
            return false;
    }
    return true;
}

static void check_batches(const char *name, tandem_model *m, tandem_type kv_type, bool exact) {
    const qwen3_model *qm = &m->qwen;
    const int V = qm->cfg.vocab_size, n_threads = thread_pool_size(m->pool);
    qwen3_kv_cache *alone[N_SEQ] = {0}, *together[N_SEQ] = {0};
    qwen3_scratch *s = NULL;
    float *want[N_SEQ] = {0}, *got = malloc((size_t)N_BATCH * V * sizeof *got);
    float *selected = malloc((size_t)N_BATCH * V * sizeof *selected);
    CHECK_OK(qwen3_scratch_init(qm, N_BATCH, n_threads, exact, &s));
    int len[N_SEQ] = {0};
    for (int seq = 0; seq < N_SEQ; seq++) {
        for (int step = 0; step < N_STEPS; step++) len[seq] += chunks[seq][step];
        TANDEM_ASSERT(len[seq] <= MAX_LEN);
        CHECK_OK(qwen3_kv_cache_init(qm, N_CTX, kv_type, &alone[seq]));
        CHECK_OK(qwen3_kv_cache_init(qm, N_CTX, kv_type, &together[seq]));
        want[seq] = malloc((size_t)len[seq] * V * sizeof *want[seq]);
        if (!s || !alone[seq] || !together[seq]) goto done;
        run_alone(qm, m->pool, s, alone[seq], seq, want[seq]);
    }

    int depth[N_SEQ] = {0}, differ = 0, n_tokens = 0;
    for (int step = 0; step < N_STEPS; step++) {
        step_batch sb;
        make_step(&sb, together, depth, step);
        const qwen3_batch b = {.n = sb.n, .ids = sb.ids, .cache = sb.cache, .row = sb.row, .n_pos = 1, .pos = sb.row};
        if (step == 3) {
            /* every other token's logits only, before the full pass: the same rows (the full pass rewrites the same
             * keys and values into the caches) */
            bool pick[N_BATCH];
            int n_picked = 0;
            for (int t = 0; t < sb.n; t++) n_picked += pick[t] = t % 2 == 1;
            qwen3_batch some = b;
            some.logits = pick;
            qwen3_forward(qm, s, m->pool, &some, selected);
            for (int t = 1, i = 0; t < sb.n; t += 2, i++) {
                const float *ref = want[sb.seq[t]] + (size_t)sb.row[t] * V;
                CHECK_MSG(memcmp(selected + (size_t)i * V, ref, (size_t)V * sizeof(float)) == 0,
                          "%s: the logits of a selected token (%d of %d) differ", name, i, n_picked);
            }
        }
        qwen3_forward(qm, s, m->pool, &b, got);
        for (int t = 0; t < sb.n; t++) {
            const float *ref = want[sb.seq[t]] + (size_t)sb.row[t] * V;
            differ += memcmp(got + (size_t)t * V, ref, (size_t)V * sizeof(float)) != 0;
        }
        n_tokens += sb.n;
        for (int seq = 0; seq < N_SEQ; seq++) depth[seq] += chunks[seq][step];
    }
    CHECK_MSG(differ == 0, "%s (%s cache%s): %d of %d tokens evaluated together differ from their sequence alone", name,
              tandem_type_name(kv_type), exact ? ", exact" : "", differ, n_tokens);
    printf("%s (%s cache%s): %d tokens of %d sequences in %d passes: %d differ from each sequence alone\n", name,
           tandem_type_name(kv_type), exact ? ", exact" : "", n_tokens, N_SEQ, N_STEPS, differ);
    for (int seq = 0; seq < N_SEQ; seq++)
        CHECK_MSG(same_cache_rows(&qm->cfg, alone[seq], together[seq], len[seq]),
                  "%s (%s cache%s): sequence %d's cache differs", name, tandem_type_name(kv_type),
                  exact ? ", exact" : "", seq);
done:
    for (int seq = 0; seq < N_SEQ; seq++) {
        qwen3_kv_cache_free(alone[seq]);
        qwen3_kv_cache_free(together[seq]);
        free(want[seq]);
    }
    qwen3_scratch_free(s);
    free(got);
    free(selected);
}

/* Tokens given as embedding rows (the dequantized rows of their ids), some or all of a pass: the logits of the ids. */
static void check_embeddings(const char *name, tandem_model *m) {
    const qwen3_model *qm = &m->qwen;
    const int V = qm->cfg.vocab_size, dim = qm->cfg.dim;
    enum { N = 9 };
    qwen3_scratch *s = NULL;
    qwen3_kv_cache *cache = NULL;
    CHECK_OK(qwen3_scratch_init(qm, N, thread_pool_size(m->pool), false, &s));
    CHECK_OK(qwen3_kv_cache_init(qm, N, TANDEM_TYPE_F16, &cache));
    float *by_id = malloc((size_t)N * V * sizeof(float)), *by_row = malloc((size_t)N * V * sizeof(float));
    float *embd = malloc((size_t)N * dim * sizeof(float));
    if (!s || !cache) goto done;
    int32_t ids[N], mixed[N];
    for (int t = 0; t < N; t++) {
        ids[t] = token_id(1, t);
        mixed[t] = t % 3 == 1 ? -1 : ids[t]; /* −1: row t of embd */
        weight_row_dequantize(&qm->embed_tokens, ids[t], embd + (size_t)t * dim);
    }
    qwen3_batch b = qwen3_sequence_batch(s, cache, ids, N, 0, false);
    qwen3_forward(qm, s, m->pool, &b, by_id);
    const int32_t *const inputs[2] = {mixed, NULL};
    for (int i = 0; i < 2; i++) {
        b.ids = inputs[i];
        b.embd = embd;
        qwen3_forward(qm, s, m->pool, &b, by_row);
        CHECK_MSG(memcmp(by_id, by_row, (size_t)N * V * sizeof(float)) == 0,
                  "%s: tokens given by embedding rows (%s) differ from the same ids", name, i ? "all" : "some");
    }
done:
    qwen3_kv_cache_free(cache);
    qwen3_scratch_free(s);
    free(by_id);
    free(by_row);
    free(embd);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *models[] = {"tied_gqa2/model-q4_0.gguf", "untied_gqa4/model-q8_0.gguf", "tied_gqa2/model-f16.gguf",
                            "untied_gqa1"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        tandem_model *m = load_golden_model(argv[1], models[i]);
        tandem_ctx *ctx = NULL;
        if (m) CHECK_OK(tandem_ctx_init(m, NULL, &ctx)); /* packs the weights, as the runtime computes with them */
        if (!ctx) {
            tandem_model_free(m);
            continue;
        }
        tandem_ctx_free(ctx);
        const tandem_type kv_types[] = {TANDEM_TYPE_F16, TANDEM_TYPE_F32, TANDEM_TYPE_Q8_0};
        for (int kt = 0; kt < 3; kt++)
            for (int exact = 0; exact < 2; exact++)
                if (!kv_type_problem(kv_types[kt], m->qwen.cfg.head_dim)) /* Q8_0: head_dim 32, not 16 */
                    check_batches(models[i], m, kv_types[kt], exact);
        check_embeddings(models[i], m);
        tandem_model_free(m);
    }
    return test_summary();
}
