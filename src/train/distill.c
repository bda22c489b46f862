/* distill.c — tandem_distill: fine-tunes a student on tandem synth's answers (cross-entropy on the teacher's tokens,
 * KL to its top-k logits, stored or computed online) with the training code of qwen3_train.c, and writes a GGUF. */
#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "tandem.h"
#include "train.h"

tandem_distill_params tandem_distill_default_params(void) {
    tandem_distill_params p;
    memset(&p, 0, sizeof p);
    p.out_type = TANDEM_TYPE_COUNT;  /* the student's */
    p.steps = p.warmup = p.seed = p.checkpoint_every = -1;
    p.batch = p.seq = p.topk = -1;
    p.lr = p.lr_min = p.weight_decay = p.clip = p.kl_weight = p.kl_temp = NAN;
    return p;
}

/* ---- the data: one window of tokens per answer ---- */

typedef struct distill_record {
    size_t off;        /* first token in tokens[] */
    int32_t n;         /* tokens in the window (≤ seq + 1) */
    int32_t first;     /* position whose next token is the first generated one in the window */
    size_t top_off;    /* first row of the stored top-k (one row per position first … n−2), or SIZE_MAX */
} distill_record;

typedef struct distill_data {
    int32_t *tokens;
    size_t n_tokens, cap_tokens;
    distill_record *rec;
    int32_t n_rec, cap_rec;
    int32_t K;         /* stored logits per row (the widest line, ≤ TRAIN_MAX_TOPK) */
    int32_t *top_ids;  /* (rows, K), −1 = unused */
    float *top_logits;
    size_t n_rows;
    size_t cap_ids, cap_logits;  /* elements allocated in top_ids / top_logits */
} distill_data;

static void data_free(distill_data *d) {
    free(d->tokens);
    free(d->rec);
    free(d->top_ids);
    free(d->top_logits);
    memset(d, 0, sizeof *d);
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

/* An array of ids below vocab into out (n entries); false when it is not one. */
static bool read_ids(const json_t *a, int32_t *out, size_t n, int32_t vocab) {
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(a, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= vocab) return false;
        out[i] = (int32_t)json_integer_value(v);
    }
    return true;
}

/* Stored top-k of one line → rows of the data, widened to K columns (−1 padded). K grows to the widest line. */
static tandem_status add_top_rows(distill_data *d, const json_t *ti, const json_t *tl, size_t first_gen,
                                  size_t n_rows, int32_t vocab, const char *path, int64_t line_no) {
    size_t k_line = 0;
    for (size_t r = 0; r < n_rows; r++) {
        const json_t *a = json_array_get(ti, first_gen + r), *b = json_array_get(tl, first_gen + r);
        if (!json_is_array(a) || !json_is_array(b) || json_array_size(a) != json_array_size(b) || !json_array_size(a))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s:%lld: top_ids / top_logits rows must be non-empty arrays of "
                               "equal length", path, (long long)line_no);
        if (json_array_size(a) > k_line) k_line = json_array_size(a);
    }
    if (k_line > TRAIN_MAX_TOPK) k_line = TRAIN_MAX_TOPK;  /* stored descending: the largest are kept */
    if ((int32_t)k_line > d->K) {  /* widen the rows so far */
        const size_t K = k_line, n_el = (d->n_rows ? d->n_rows : 1) * K;
        int32_t *ids = malloc(n_el * sizeof *ids);
        float *vals = malloc(n_el * sizeof *vals);
        if (!ids || !vals) {
            free(ids), free(vals);
            return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
        }
        for (size_t r = 0; r < d->n_rows; r++)
            for (size_t k = 0; k < K; k++) {
                const bool have = k < (size_t)d->K;
                ids[r * K + k] = have ? d->top_ids[r * d->K + k] : -1;
                vals[r * K + k] = have ? d->top_logits[r * d->K + k] : 0;
            }
        free(d->top_ids), free(d->top_logits);
        d->top_ids = ids, d->top_logits = vals, d->K = (int32_t)K;
        d->cap_ids = d->cap_logits = n_el;
    }
    const size_t K = (size_t)d->K;
    if (!grow((void **)&d->top_ids, &d->cap_ids, (d->n_rows + n_rows) * K, sizeof(int32_t)) ||
        !grow((void **)&d->top_logits, &d->cap_logits, (d->n_rows + n_rows) * K, sizeof(float)))
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
    for (size_t r = 0; r < n_rows; r++) {
        const json_t *a = json_array_get(ti, first_gen + r), *b = json_array_get(tl, first_gen + r);
        for (size_t k = 0; k < K; k++) {
            int32_t id = -1;
            float v = 0;
            if (k < json_array_size(a)) {
                const json_t *x = json_array_get(a, k), *y = json_array_get(b, k);
                if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= vocab ||
                    !json_is_number(y) || !isfinite(json_number_value(y)))
                    return tandem_fail(TANDEM_ERR_FORMAT, "%s:%lld: top_ids must be ids below %d and top_logits "
                                       "finite numbers", path, (long long)line_no, vocab);
                id = (int32_t)json_integer_value(x);
                v = (float)json_number_value(y);
            }
            d->top_ids[(d->n_rows + r) * K + k] = id;
            d->top_logits[(d->n_rows + r) * K + k] = v;
        }
    }
    d->n_rows += n_rows;
    return TANDEM_OK;
}

/* One synth line → a window of at most T+1 tokens of prompt_ids + ids (the end, if longer). */
static tandem_status add_line(distill_data *d, const json_t *j, int32_t vocab, int T, const char *path,
                              int64_t line_no) {
    const json_t *pi = json_object_get(j, "prompt_ids"), *gi = json_object_get(j, "ids");
    if (!json_is_array(pi) || !json_is_array(gi) || !json_array_size(pi))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s:%lld: expected \"prompt_ids\" (non-empty) and \"ids\" arrays (a "
                           "tandem synth line)", path, (long long)line_no);
    const size_t np = json_array_size(pi), ng = json_array_size(gi);
    if (ng == 0) return TANDEM_OK;  /* nothing to learn */
    const json_t *ti = json_object_get(j, "top_ids"), *tl = json_object_get(j, "top_logits");
    if ((ti || tl) && (!json_is_array(ti) || !json_is_array(tl) || json_array_size(ti) != ng ||
                       json_array_size(tl) != ng))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s:%lld: top_ids and top_logits must both be arrays with one row per "
                           "generated id (%zu)", path, (long long)line_no, ng);
    const size_t total = np + ng, n = total < (size_t)T + 1 ? total : (size_t)T + 1, start = total - n;
    int32_t *all = malloc(total * sizeof *all);
    if (!all) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
    if (!read_ids(pi, all, np, vocab) || !read_ids(gi, all + np, ng, vocab)) {
        free(all);
        return tandem_fail(TANDEM_ERR_FORMAT, "%s:%lld: ids must be integers below the vocabulary size %d", path,
                           (long long)line_no, vocab);
    }
    if (!grow((void **)&d->tokens, &d->cap_tokens, d->n_tokens + n, sizeof(int32_t))) {
        free(all);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    memcpy(d->tokens + d->n_tokens, all + start, n * sizeof *all);
    free(all);
    size_t cap_rec = (size_t)d->cap_rec;
    if (!grow((void **)&d->rec, &cap_rec, (size_t)d->n_rec + 1, sizeof *d->rec))
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
    d->cap_rec = (int32_t)cap_rec;
    /* window position q predicts all[start + q + 1]: a generated token from q = np − 1 − start on */
    const size_t first = np - 1 >= start ? np - 1 - start : 0;
    distill_record *r = &d->rec[d->n_rec];
    r->off = d->n_tokens, r->n = (int32_t)n, r->first = (int32_t)first, r->top_off = SIZE_MAX;
    if (ti) {
        const size_t first_gen = start + first + 1 - np;  /* generated index predicted at window position first */
        r->top_off = d->n_rows;
        tandem_status st = add_top_rows(d, ti, tl, first_gen, n - 1 - first, vocab, path, line_no);
        if (st) return st;
    }
    d->n_tokens += n;
    d->n_rec++;
    return TANDEM_OK;
}

static tandem_status read_data(distill_data *d, const char *path, int32_t vocab, int T) {
    FILE *f = fopen(path, "rb");
    if (!f) return tandem_fail(TANDEM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    tandem_status st = TANDEM_OK;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t line_no = 0;
    while (!st && (len = getline(&line, &cap, f)) >= 0) {
        line_no++;
        ssize_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r' || line[k] == '\n')) k++;
        if (k == len) continue;
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)len, 0, &err);
        if (!j) st = tandem_fail(TANDEM_ERR_FORMAT, "%s:%lld: not valid JSON: %s", path, (long long)line_no, err.text);
        else if (!json_is_object(j))
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s:%lld: not a JSON object", path, (long long)line_no);
        else st = add_line(d, j, vocab, T, path, line_no);
        json_decref(j);
    }
    if (!st && ferror(f)) st = tandem_fail(TANDEM_ERR_IO, "%s: read error", path);
    if (!st && d->n_rec == 0) st = tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: no answers to learn from", path);
    free(line);
    fclose(f);
    return st;
}

/* ---- the run ---- */

/* The type most of the student's layer matrices are stored in (by elements): what its output keeps by default. A
 * type the trainer cannot write (none today; a future one) falls back to F32, which loses nothing. */
static tandem_type student_type(const qwen3_model *m) {
    int64_t count[TANDEM_TYPE_COUNT] = {0};
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const qwen3_layer *y = &m->layers[l];
        const weight_matrix *w[7] = {&y->q_proj, &y->k_proj, &y->v_proj, &y->o_proj, &y->gate_proj, &y->up_proj,
                                     &y->down_proj};
        for (int i = 0; i < 7; i++)
            if ((unsigned)w[i]->type < TANDEM_TYPE_COUNT) count[w[i]->type] += w[i]->rows * w[i]->cols;
    }
    tandem_type best = TANDEM_TYPE_F32;
    for (int t = 0; t < TANDEM_TYPE_COUNT; t++)
        if (count[t] > count[best]) best = (tandem_type)t;
    return best == TANDEM_TYPE_F16 || best == TANDEM_TYPE_BF16 || kernel_can_quantize(best) ? best : TANDEM_TYPE_F32;
}

/* Deals the answers to the steps: a fresh Fisher–Yates shuffle of order[] each time every answer was used once.
 * Returns the next answer; *cursor is the position in order[] (n_rec: shuffle first). */
static int32_t next_answer(int32_t *order, int32_t n_rec, int32_t *cursor, train_rng *rng) {
    if (*cursor == n_rec) {
        for (int32_t i = n_rec - 1; i > 0; i--) {
            const int32_t j = (int32_t)(train_rng_next(rng) % (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        *cursor = 0;
    }
    return order[(*cursor)++];
}

static tandem_status check_int(int64_t v, int64_t lo, int64_t hi, const char *field) {
    if (v < lo || v > hi)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s = %lld is outside %lld..%lld", field, (long long)v,
                           (long long)lo, (long long)hi);
    return TANDEM_OK;
}

tandem_status tandem_distill(const tandem_distill_params *params) {
    if (!params || !params->student_path || !params->teacher_path || !params->data_path || !params->output_path)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_distill: student, teacher, data and output are required");
    tandem_distill_params p = *params;
    if (p.steps < 0) p.steps = 200;
    if (p.batch < 0) p.batch = 8;
    if (p.seq < 0) p.seq = 256;
    if (p.topk < 0) p.topk = 32;
    if (p.seed < 0) p.seed = 1;
    if (isnan(p.lr)) p.lr = 5e-4f;
    if (isnan(p.lr_min)) p.lr_min = p.lr / 10;
    if (p.warmup < 0) p.warmup = p.steps / 10 < 20 ? p.steps / 10 : 20;
    if (isnan(p.weight_decay)) p.weight_decay = 0;
    if (isnan(p.clip)) p.clip = 1;
    if (isnan(p.kl_weight)) p.kl_weight = 0.5f;
    if (isnan(p.kl_temp)) p.kl_temp = 1;
    tandem_status st;
    if ((st = check_int(p.steps, 1, 1LL << 40, "tandem_distill_params.steps")) ||
        (st = check_int(p.batch, 1, 1 << 12, "tandem_distill_params.batch")) ||
        (st = check_int(p.seq, 2, 1 << 16, "tandem_distill_params.seq")) ||
        (st = check_int(p.topk, 1, TRAIN_MAX_TOPK, "tandem_distill_params.topk")))
        return st;
    if (!(p.lr > 0) || !(p.lr_min >= 0) || !(p.kl_weight >= 0 && p.kl_weight <= 1) || !(p.kl_temp > 0) ||
        !(p.clip >= 0) || !(p.weight_decay >= 0))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_distill: lr, lr_min, clip, weight decay must be "
                           "≥ 0 (lr > 0), kl_weight in 0..1, kl_temp > 0");
    if (path_exists(p.output_path) && !p.force)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: already exists (set tandem_distill_params.force to overwrite)",
                           p.output_path);
    if (p.out_type != TANDEM_TYPE_COUNT && p.out_type != TANDEM_TYPE_F32 && p.out_type != TANDEM_TYPE_F16 &&
        p.out_type != TANDEM_TYPE_BF16 && !kernel_can_quantize(p.out_type))
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: cannot write weights as %s", p.output_path,
                           tandem_type_name(p.out_type));
    if (p.checkpoint_every < 0) p.checkpoint_every = 100;
    if ((st = check_int(p.checkpoint_every, 1, 1LL << 40, "tandem_distill_params.checkpoint_every"))) return st;
    if ((st = train_check_writable(p.output_path, "output")) ||
        (p.checkpoint_path && (st = train_check_writable(p.checkpoint_path, "checkpoint"))))
        return st;

    model_source student = {0};
    train_teacher_model teacher = {0};
    train_model m = {0};
    distill_data d = {0};
    int32_t *inputs = NULL, *targets = NULL, *order = NULL, *kl_ids = NULL;
    float *kl_logits = NULL;
    char *name = NULL;
    const int B = p.batch;
    int T = p.seq;
    const int n_threads = p.n_threads > 0 ? p.n_threads : cpu_count();

    if ((st = model_source_open(&student, p.student_path))) goto done;
    const qwen3_config cfg = student.model.cfg;
    if (p.out_type == TANDEM_TYPE_COUNT) p.out_type = student_type(&student.model);
    /* the teacher: its vocabulary must be the student's (checked here, before reading the data) */
    if ((st = train_teacher_open(&teacher, p.teacher_path, &cfg, B, T, p.topk, n_threads))) goto done;
    if ((st = read_data(&d, p.data_path, cfg.vocab_size, T))) goto done;
    /* no wider than the longest answer: padding would cost the student's and the teacher's passes for nothing */
    int32_t longest = 2;
    for (int32_t i = 0; i < d.n_rec; i++) longest = d.rec[i].n > longest ? d.rec[i].n : longest;
    T = longest - 1 < T ? longest - 1 : T;
    const int K = d.K > teacher.K ? d.K : teacher.K;

    if ((st = train_model_init(&m, &cfg, B, T)) || (st = train_model_copy_from(&m, &student.model, p.student_path)))
        goto done;
    inputs = malloc((size_t)B * T * sizeof *inputs);
    targets = malloc((size_t)B * T * sizeof *targets);
    order = malloc((size_t)d.n_rec * sizeof *order);
    kl_ids = malloc((size_t)B * T * K * sizeof *kl_ids);
    kl_logits = malloc((size_t)B * T * K * sizeof *kl_logits);
    if (!inputs || !targets || !order || !kl_ids || !kl_logits) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_distill: out of memory");
        goto done;
    }
    for (int32_t i = 0; i < d.n_rec; i++) order[i] = i;
    train_rng rng = {(uint64_t)p.seed};
    int32_t cursor = d.n_rec;  /* a fresh shuffle at the first step */
    /* what a resumed run must share with the one that wrote the checkpoint: the answers, their windows, the batch
     * and the seed (the order of the answers is dealt again from the seed below) */
    train_progress prog = {0, rng.state, cursor, 0};
    uint64_t h = train_fnv1a(0xCBF29CE484222325ull, &B, sizeof B);
    h = train_fnv1a(h, &T, sizeof T);
    h = train_fnv1a(h, &p.seed, sizeof p.seed);
    h = train_fnv1a(h, d.tokens, d.n_tokens * sizeof *d.tokens);
    h = train_fnv1a(h, d.rec, (size_t)d.n_rec * sizeof *d.rec);
    if (d.K > 0) {
        h = train_fnv1a(h, d.top_ids, d.n_rows * (size_t)d.K * sizeof *d.top_ids);
        h = train_fnv1a(h, d.top_logits, d.n_rows * (size_t)d.K * sizeof *d.top_logits);
    }
    prog.run_hash = h;
    if (p.resume && p.checkpoint_path && path_exists(p.checkpoint_path)) {
        train_progress saved;
        if ((st = train_checkpoint_load(&m, &saved, p.checkpoint_path))) goto done;
        /* the answers the steps before used, dealt again: the same shuffles, so the same rng state and position */
        for (int64_t k = 0; k < saved.step * B; k++) next_answer(order, d.n_rec, &cursor, &rng);
        if (saved.run_hash != prog.run_hash || saved.rng_state != rng.state || saved.data_pos != cursor) {
            st = tandem_fail(TANDEM_ERR_MISMATCH, "%s: the checkpoint was made with other data, batch, seq or seed",
                             p.checkpoint_path);
            goto done;
        }
        prog = saved;
    }
    const train_teacher kl = {kl_ids, kl_logits, K, p.kl_temp, p.kl_weight};
    const train_adamw base_opt = {p.lr, 0.9f, 0.95f, 1e-8f, p.weight_decay};
    /* the student's pass runs on the teacher's pool, each GEMM cut into single-threaded OpenBLAS calls */
    m.pool = teacher.pool;
    openblas_set_num_threads(1);
    const double t0 = now_ms();
    const int64_t first_step = prog.step;
    for (int64_t s = prog.step; s < p.steps; s++) {
        bool batch_online = false;
        for (int b = 0; b < B; b++) {
            const distill_record *r = &d.rec[next_answer(order, d.n_rec, &cursor, &rng)];
            const int32_t *w = d.tokens + r->off;
            for (int t = 0; t < T; t++) {
                const bool in = t + 1 < r->n, learn = in && t >= r->first;
                inputs[(size_t)b * T + t] = t < r->n ? w[t] : 0;  /* padding: causal, never seen by earlier tokens */
                targets[(size_t)b * T + t] = learn ? w[t + 1] : -1;
                int32_t *ki = kl_ids + ((size_t)b * T + t) * K;
                float *kv = kl_logits + ((size_t)b * T + t) * K;
                for (int k = 0; k < K; k++) ki[k] = -1, kv[k] = 0;
                if (learn && r->top_off != SIZE_MAX) {
                    const size_t row = r->top_off + (size_t)(t - r->first);
                    for (int k = 0; k < d.K; k++) {
                        ki[k] = d.top_ids[row * d.K + k];
                        kv[k] = d.top_logits[row * d.K + k];
                    }
                }
                if (learn && r->top_off == SIZE_MAX) batch_online = true;
            }
        }
        if (batch_online) {
            /* answers stored without logits: the teacher's top-k now, at the positions that learn */
            train_teacher_run(&teacher, inputs, B, T);
            for (size_t q = 0; q < (size_t)B * T; q++) {
                if (targets[q] < 0 || kl_ids[q * K] >= 0) continue;
                for (int k = 0; k < teacher.K; k++) {
                    kl_ids[q * K + k] = teacher.ids[q * teacher.K + k];
                    kl_logits[q * K + k] = teacher.top[q * teacher.K + k];
                }
            }
        }
        train_zero_grad(&m);
        m.loss_scale = 1.0f;
        const float loss = train_forward_distill(&m, inputs, targets, &kl, B, T);
        train_backward(&m);
        const float norm = train_clip_grad_norm(&m, p.clip);
        train_adamw opt = base_opt;
        opt.lr = train_lr_schedule(s, p.warmup, p.steps, p.lr, p.lr_min);
        train_adamw_update(&m, &opt, s + 1);
        if (!isfinite(loss) || !isfinite(norm)) {
            st = tandem_fail(TANDEM_ERR_ABORTED,
                             "%s: distillation diverged at step %lld (loss %g): lower tandem_distill_params.lr",
                             p.data_path, (long long)s + 1, loss);
            goto done;
        }
        prog.step = s + 1, prog.rng_state = rng.state, prog.data_pos = cursor;
        tandem_train_progress rep = {s + 1, p.steps, loss, NAN, opt.lr, norm, 0, 0, 0};
        rep.elapsed_s = (now_ms() - t0) / 1000.0;
        const double done_steps = (double)(s + 1 - first_step);
        rep.tokens_per_s = rep.elapsed_s > 0 ? done_steps * B * T / rep.elapsed_s : 0;
        rep.eta_s = rep.elapsed_s / done_steps * (double)(p.steps - s - 1);
        const bool go_on = !p.on_progress || p.on_progress(&rep, p.user);
        if (p.checkpoint_path && (!go_on || prog.step % p.checkpoint_every == 0 || prog.step == p.steps))
            if ((st = train_checkpoint_save(&m, &prog, p.checkpoint_path))) goto done;
        if (!go_on) {
            if (p.checkpoint_path)
                st = tandem_fail(TANDEM_ERR_ABORTED, "stopped at step %lld; resume from %s", (long long)s + 1,
                                 p.checkpoint_path);
            else
                st = tandem_fail(TANDEM_ERR_ABORTED, "stopped at step %lld; nothing written", (long long)s + 1);
            goto done;
        }
    }

    name = path_stem(p.output_path);
    if (!name) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_distill: out of memory");
        goto done;
    }
    st = train_export_gguf(&m, p.output_path, p.out_type, name, p.student_path);
done:
    model_source_close(&student);
    train_teacher_close(&teacher);
    train_model_free(&m);
    data_free(&d);
    free(inputs);
    free(targets);
    free(order);
    free(kl_ids);
    free(kl_logits);
    free(name);
    return st;
}
