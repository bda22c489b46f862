/* train_run.c — tandem_train: options (flags over the config's "train" object over defaults), the tokenized text
 * split into training and held-out tokens, the step loop with schedule, validation and checkpoints, and export.
 * Tokenizes through the public tandem_tokenizer_* functions only. */
#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tandem.h"
#include "train.h"

tandem_train_params tandem_train_default_params(void) {
    tandem_train_params p;
    memset(&p, 0, sizeof p);
    p.out_type = TANDEM_TYPE_F32;
    p.steps = p.warmup = p.seed = p.val_every = p.checkpoint_every = -1;
    p.batch = p.seq = p.accum = p.topk = -1;
    p.lr = p.lr_min = p.weight_decay = p.beta1 = p.beta2 = p.eps = p.clip = p.val_frac = NAN;
    p.kl_weight = p.kl_temp = NAN;
    return p;
}

/* ---- options ---- */

/* A "train" key of the config fills an unset field of tandem_train_params (of the same name); messages name the
 * config key or the field, whichever gave the value. */
static tandem_status opt_int(const json_t *train, const char *path, const char *key, int64_t *v, int64_t fallback,
                             int64_t lo, int64_t hi) {
    char where[160];
    snprintf(where, sizeof where, "tandem_train_params.%s", key);
    if (*v == -1) {
        json_t *j = train ? json_object_get(train, key) : NULL;
        if (j) {
            if (!json_is_integer(j))
                return tandem_fail(TANDEM_ERR_FORMAT, "%s: train.%s must be an integer", path, key);
            *v = json_integer_value(j);
            snprintf(where, sizeof where, "%s: train.%s", path, key);
        } else {
            *v = fallback;
        }
    }
    if (*v < lo || *v > hi)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s = %lld is outside %lld..%lld", where, (long long)*v,
                           (long long)lo, (long long)hi);
    return TANDEM_OK;
}

static tandem_status opt_float(const json_t *train, const char *path, const char *key, float *v, float fallback,
                               double lo, double hi, bool lo_open) {
    char where[160];
    snprintf(where, sizeof where, "tandem_train_params.%s", key);
    if (isnan(*v)) {
        json_t *j = train ? json_object_get(train, key) : NULL;
        if (j) {
            if (!json_is_number(j)) return tandem_fail(TANDEM_ERR_FORMAT, "%s: train.%s must be a number", path, key);
            *v = (float)json_number_value(j);
            snprintf(where, sizeof where, "%s: train.%s", path, key);
        } else {
            *v = fallback;
        }
    }
    if (!isfinite(*v) || *v > hi || *v < lo || (lo_open && *v == lo))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s = %g is outside %s%g..%g]", where, *v, lo_open ? "(" : "[", lo,
                           hi);
    return TANDEM_OK;
}

typedef struct train_options {
    int64_t steps, batch, seq, accum, warmup, seed, val_every, checkpoint_every, topk;
    float lr, lr_min, weight_decay, beta1, beta2, eps, clip, val_frac, kl_weight, kl_temp;
} train_options;

static tandem_status resolve_options(const tandem_train_params *p, const json_t *train, const char *path,
                                     train_options *o) {
    tandem_status st;
    /* a misspelt key would silently fall back to a default: refuse it */
    static const char *const KEYS[] = {"steps", "batch", "seq", "warmup", "seed", "val_every", "checkpoint_every",
                                       "lr", "lr_min", "weight_decay", "beta1", "beta2", "eps", "clip", "val_frac",
                                       "accum", "topk", "kl_weight", "kl_temp"};
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)train, key, val) {
        size_t k = 0;
        while (k < sizeof KEYS / sizeof KEYS[0] && strcmp(KEYS[k], key)) k++;
        if (k == sizeof KEYS / sizeof KEYS[0])
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: train.%s is not a training option", path, key);
    }
    o->steps = p->steps, o->batch = p->batch, o->seq = p->seq, o->accum = p->accum, o->warmup = p->warmup, o->seed = p->seed;
    o->val_every = p->val_every, o->checkpoint_every = p->checkpoint_every;
    o->lr = p->lr, o->lr_min = p->lr_min, o->weight_decay = p->weight_decay, o->beta1 = p->beta1;
    o->beta2 = p->beta2, o->eps = p->eps, o->clip = p->clip, o->val_frac = p->val_frac;
    o->topk = p->topk, o->kl_weight = p->kl_weight, o->kl_temp = p->kl_temp;
    if ((st = opt_int(train, path, "steps", &o->steps, 1000, 1, 1LL << 40)) ||
        (st = opt_int(train, path, "batch", &o->batch, 8, 1, 1 << 16)) ||
        (st = opt_int(train, path, "seq", &o->seq, 128, 1, 1 << 20)) ||
        (st = opt_int(train, path, "accum", &o->accum, 1, 1, 1 << 16)) ||
        (st = opt_int(train, path, "topk", &o->topk, 32, 1, TRAIN_MAX_TOPK)) ||
        (st = opt_float(train, path, "kl_weight", &o->kl_weight, 0.5f, 0, 1, false)) ||
        (st = opt_float(train, path, "kl_temp", &o->kl_temp, 1.0f, 0, 100, true)) ||
        (st = opt_int(train, path, "warmup", &o->warmup, o->steps / 10 < 100 ? o->steps / 10 : 100, 0, 1LL << 40)) ||
        (st = opt_int(train, path, "seed", &o->seed, 1, 0, INT64_MAX)) ||
        (st = opt_int(train, path, "val_every", &o->val_every, 0, 0, 1LL << 40)) ||
        (st = opt_int(train, path, "checkpoint_every", &o->checkpoint_every, 100, 1, 1LL << 40)) ||
        (st = opt_float(train, path, "lr", &o->lr, 1e-3f, 0, 10, true)) ||
        (st = opt_float(train, path, "lr_min", &o->lr_min, o->lr / 10, 0, o->lr, false)) ||
        (st = opt_float(train, path, "weight_decay", &o->weight_decay, 0.1f, 0, 10, false)) ||
        (st = opt_float(train, path, "beta1", &o->beta1, 0.9f, 0, 1, false)) ||
        (st = opt_float(train, path, "beta2", &o->beta2, 0.95f, 0, 1, false)) ||
        (st = opt_float(train, path, "eps", &o->eps, 1e-8f, 0, 1, true)) ||
        (st = opt_float(train, path, "clip", &o->clip, 1.0f, 0, 1e9, false)) ||
        (st = opt_float(train, path, "val_frac", &o->val_frac, o->val_every > 0 ? 0.1f : 0.0f, 0, 0.9, false)))
        return st;
    if (o->beta1 >= 1 || o->beta2 >= 1)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "AdamW betas %g, %g must be below 1", o->beta1, o->beta2);
    if (o->batch * o->seq > (1 << 24))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "batch %lld × seq %lld tokens per step is too many",
                           (long long)o->batch, (long long)o->seq);
    if (o->val_every > 0 && o->val_frac <= 0)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "validation every %lld steps needs a held-out fraction > 0",
                           (long long)o->val_every);
    return TANDEM_OK;
}

/* ---- data ---- */

tandem_status train_read_text(const char *path, char **out, size_t *len) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return tandem_fail(TANDEM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *grown = cap < SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    const bool failed = ferror(f);
    fclose(f);
    if (!buf) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory reading the text", path);
    if (failed) {
        free(buf);
        return tandem_fail(TANDEM_ERR_IO, "%s: read error", path);
    }
    *out = buf;
    *len = n;
    return TANDEM_OK;
}

/* B sequences of T+1 consecutive tokens from *pos on, as inputs (B, T) and their next tokens as targets (B, T).
 * When the next would not fit, a new pass over the text starts at a random offset below T, so that successive
 * passes cut the text into different windows. */
static void next_batch(int32_t *inputs, int32_t *targets, const int32_t *tokens, int64_t n_tokens, int64_t *pos,
                       train_rng *rng, int B, int T) {
    for (int b = 0; b < B; b++) {
        if (*pos + T + 1 > n_tokens) {
            const int64_t slack = n_tokens - (T + 1);  /* ≥ 0: checked at the start */
            const int64_t span = slack < T - 1 ? slack : T - 1;
            *pos = span > 0 ? (int64_t)(train_rng_next(rng) % (uint64_t)(span + 1)) : 0;
        }
        memcpy(inputs + (size_t)b * T, tokens + *pos, (size_t)T * sizeof(int32_t));
        memcpy(targets + (size_t)b * T, tokens + *pos + 1, (size_t)T * sizeof(int32_t));
        *pos += T;
    }
}

/* B windows of samples, the next ones in this pass's order (a new order each pass). */
static void next_windows(int32_t *inputs, int32_t *targets, const train_windows *w, int64_t n_train, int64_t *pos,
                         int64_t *order, int64_t *order_pass, uint64_t seed, int B) {
    const size_t T = (size_t)w->T;
    for (int b = 0; b < B; b++) {
        const int64_t pass = *pos / n_train;
        if (pass != *order_pass) train_windows_order(order, n_train, seed, pass), *order_pass = pass;
        const int64_t k = order[*pos % n_train];
        memcpy(inputs + (size_t)b * T, w->inputs + (size_t)k * T, T * sizeof *inputs);
        memcpy(targets + (size_t)b * T, w->targets + (size_t)k * T, T * sizeof *targets);
        (*pos)++;
    }
}

/* Mean loss over the held-out windows [first, w->n), at most 16 batches. */
static float validation_loss(train_model *m, int32_t *inputs, int32_t *targets, const train_windows *w, int64_t first,
                             int B) {
    const size_t T = (size_t)w->T;
    double sum = 0;
    int64_t counted = 0;
    for (int64_t k = first, batches = 0; k < w->n && batches < 16; batches++) {
        int b = 0;
        for (; b < B && k < w->n; b++, k++) {
            memcpy(inputs + (size_t)b * T, w->inputs + (size_t)k * T, T * sizeof *inputs);
            memcpy(targets + (size_t)b * T, w->targets + (size_t)k * T, T * sizeof *targets);
        }
        const float loss = train_forward(m, inputs, targets, b, (int)T);
        if (m->n_counted) sum += (double)loss * m->n_counted;
        counted += m->n_counted;
    }
    return counted ? (float)(sum / counted) : NAN;
}

/* The held-out tokens of a text as windows of consecutive tokens, as many as validation reads (16 batches). */
static bool text_windows(train_windows *w, const int32_t *tokens, int64_t n_tokens, int B, int T) {
    w->T = T;
    w->n = (n_tokens - 1) / T;
    if (w->n > 16 * (int64_t)B) w->n = 16 * (int64_t)B;
    w->inputs = malloc((size_t)w->n * T * sizeof *w->inputs);
    w->targets = malloc((size_t)w->n * T * sizeof *w->targets);
    if (!w->inputs || !w->targets) return false;
    for (int64_t k = 0; k < w->n; k++) {
        memcpy(w->inputs + k * T, tokens + k * T, (size_t)T * sizeof *tokens);
        memcpy(w->targets + k * T, tokens + k * T + 1, (size_t)T * sizeof *tokens);
    }
    return true;
}

/* ---- a model opened for its weights ---- */

void model_source_close(model_source *s) {
    qwen3_model_release(&s->model);
    gguf_close(s->gguf);
    safetensors_close(s->st);
    memset(s, 0, sizeof *s);
}

tandem_status model_source_open(model_source *s, const char *path) {
    memset(s, 0, sizeof *s);
    checkpoint ck;
    tandem_status st = checkpoint_open(path, &ck);
    if (st) return st;
    st = checkpoint_bind(&ck, &s->model);
    s->gguf = ck.gguf; /* the bound weights point into these maps */
    s->st = ck.st;
    ck.gguf = NULL;
    ck.st = NULL;
    checkpoint_close(&ck);
    if (st) model_source_close(s);
    return st;
}

tandem_status train_check_writable(const char *path, const char *what) {
    int fd;
    char *tmp;
    if (tandem_temp_file_create(path, &fd, &tmp))
        return tandem_fail(TANDEM_ERR_IO, "%s: cannot create the %s there: %s", path, what, strerror(errno));
    close(fd);
    unlink(tmp);
    free(tmp);
    return TANDEM_OK;
}

uint64_t train_fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

/* ---- the run ---- */

tandem_status tandem_train(const tandem_train_params *p) {
    if (!p || !p->data_path || !p->output_path || (!p->config_path && !p->init_path))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_train: data, output and a config or init model are required");
    tandem_status st = TANDEM_OK;
    json_t *root = NULL;
    char *text = NULL, *name = NULL;
    int32_t *tokens = NULL, *inputs = NULL, *targets = NULL;
    int64_t *order = NULL;
    train_windows win = {0};
    tandem_tokenizer *tok = NULL;
    model_source init = {0};
    bool init_open = false;
    train_teacher_model teacher = {0};
    train_model m = {0};
    thread_pool *pool = NULL;
    qwen3_config cfg;
    train_options o;
    const char *tokenizer_path = p->tokenizer_path ? p->tokenizer_path : p->init_path;

    if (path_exists(p->output_path) && !p->force)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: already exists (set tandem_train_params.force to overwrite)",
                           p->output_path);
    if (!tokenizer_path)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_train: a tokenizer is required (set tandem_train_params.tokenizer_path)");
    if (p->out_type != TANDEM_TYPE_F32 && p->out_type != TANDEM_TYPE_F16 && p->out_type != TANDEM_TYPE_BF16 &&
        !kernel_can_quantize(p->out_type))
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: cannot write weights as %s", p->output_path,
                           tandem_type_name(p->out_type));

    if ((st = train_check_writable(p->output_path, "output")) ||
        (p->checkpoint_path && (st = train_check_writable(p->checkpoint_path, "checkpoint"))))
        return st;

    /* model dims and options */
    if (p->config_path) {
        if ((st = qwen3_config_from_json(p->config_path, &cfg))) goto done;
        if ((st = json_load_path(p->config_path, &root))) goto done;
    }
    const json_t *train_obj = root ? json_object_get(root, "train") : NULL;
    if (train_obj && !json_is_object(train_obj)) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: 'train' must be an object", p->config_path);
        goto done;
    }
    if ((st = resolve_options(p, train_obj, p->config_path ? p->config_path : "config", &o))) goto done;
    if (p->init_path) {
        if ((st = model_source_open(&init, p->init_path))) goto done;
        init_open = true;
        if (!p->config_path) cfg = init.model.cfg;
    }

    /* tokenizer and text */
    if ((st = tandem_tokenizer_load(tokenizer_path, &tok))) goto done;
    if (tandem_tokenizer_vocab_size(tok) > cfg.vocab_size) {
        st = tandem_fail(TANDEM_ERR_MISMATCH, "%s: the tokenizer has %d tokens but the config's vocab_size is %d",
                         tokenizer_path, tandem_tokenizer_vocab_size(tok), cfg.vocab_size);
        goto done;
    }
    size_t text_len = 0, n_tokens = 0;
    if ((st = train_read_text(p->data_path, &text, &text_len))) goto done;
    if (text_len == 0) {
        st = tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: the training text is empty", p->data_path);
        goto done;
    }
    const int B = (int)o.batch, T = (int)o.seq;
    /* samples (.jsonl): windows of whole samples, the held-out ones at the end */
    const size_t path_len = strlen(p->data_path);
    const bool samples = path_len > 6 && !strcmp(p->data_path + path_len - 6, ".jsonl");
    int64_t n_win_train = 0, order_pass = -1;
    if (samples) {
        if ((st = train_windows_from_jsonl(p->data_path, text, text_len, tok, T, 0, &win))) goto done;
        const int64_t n_win_val = o.val_every > 0 ? (int64_t)floor((double)win.n * o.val_frac) : 0;
        n_win_train = win.n - n_win_val;
        if (o.val_every > 0 && n_win_val < 1) {
            st = tandem_fail(TANDEM_ERR_INVALID_ARG,
                             "%s: the held-out %.0f%% of %lld windows of samples is empty "
                             "(raise tandem_train_params.val_frac or give more samples)",
                             p->data_path, 100.0 * o.val_frac, (long long)win.n);
            goto done;
        }
        if (n_win_train < 1) {
            st = tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: no window of samples is left for training", p->data_path);
            goto done;
        }
        if (!(order = malloc((size_t)n_win_train * sizeof *order))) {
            st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_train: out of memory");
            goto done;
        }
    } else if ((st = tandem_tokenizer_encode(tok, text, text_len, true, &tokens, &n_tokens))) {
        goto done;
    }
    const int64_t n_val = samples ? 0 : o.val_every > 0 ? (int64_t)floor((double)n_tokens * o.val_frac) : 0;
    const int64_t n_train = samples ? n_win_train : (int64_t)n_tokens - n_val;
    if (!samples && n_train < T + 1) {
        st = tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: %lld training tokens are fewer than one sequence of seq + 1 = %d "
                         "(use more text or a smaller tandem_train_params.seq)", p->data_path, (long long)n_train,
                         T + 1);
        goto done;
    }
    if (!samples && o.val_every > 0 && n_val < T + 1) {
        st = tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: the held-out %.0f%% has %lld tokens, fewer than one sequence of "
                         "%d (raise tandem_train_params.val_frac or lower tandem_train_params.seq)", p->data_path,
                         100.0 * o.val_frac, (long long)n_val, T + 1);
        goto done;
    }
    /* a text's held-out windows; samples' are the last of `win` already */
    if (!samples && n_val > 0 && !text_windows(&win, tokens + n_train, n_val, B, T)) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_train: out of memory");
        goto done;
    }
    const int64_t first_val = samples ? n_train : 0;

    /* model, weights, optional resume */
    if ((st = train_model_init(&m, &cfg, B, T))) goto done;
    const int n_threads = p->n_threads > 0 ? p->n_threads : cpu_count();
    if (p->teacher_path && (st = train_teacher_open(&teacher, p->teacher_path, &cfg, B, T, (int)o.topk, n_threads)))
        goto done;
    const train_teacher kl = {teacher.ids, teacher.top, teacher.K, o.kl_temp, o.kl_weight};
    inputs = malloc((size_t)B * T * sizeof *inputs);
    targets = malloc((size_t)B * T * sizeof *targets);
    if (!inputs || !targets) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_train: out of memory");
        goto done;
    }
    train_rng rng = {(uint64_t)o.seed};
    if (init_open) {
        if ((st = train_model_copy_from(&m, &init.model, p->init_path))) goto done;
        model_source_close(&init);
        init_open = false;
    } else {
        train_model_init_random(&m, &rng, 0.02f);
    }
    train_progress prog = {0, rng.state, 0, 0};
    /* what a resumed run must share with the one that wrote the checkpoint */
    uint64_t h = train_fnv1a(0xCBF29CE484222325ull, &o.batch, sizeof o.batch);
    h = train_fnv1a(h, &o.seq, sizeof o.seq);
    h = train_fnv1a(h, &n_train, sizeof n_train);
    if (samples) {
        h = train_fnv1a(h, win.inputs, (size_t)n_train * T * sizeof *win.inputs);
        h = train_fnv1a(h, win.targets, (size_t)n_train * T * sizeof *win.targets);
    } else {
        h = train_fnv1a(h, tokens, (size_t)n_train * sizeof *tokens);
    }
    prog.run_hash = h;
    if (p->resume && p->checkpoint_path && path_exists(p->checkpoint_path)) {
        train_progress saved;
        if ((st = train_checkpoint_load(&m, &saved, p->checkpoint_path))) goto done;
        if (saved.run_hash != prog.run_hash) {
            st = tandem_fail(TANDEM_ERR_MISMATCH, "%s: the checkpoint was made with another text, batch or seq",
                             p->checkpoint_path);
            goto done;
        }
        prog = saved;
        rng.state = saved.rng_state;
    }

    /* the pool runs every op and cuts each GEMM into single-threaded OpenBLAS calls (train_ops.h) */
    if ((st = thread_pool_create(n_threads, &pool))) goto done;
    m.pool = pool;
    openblas_set_num_threads(1);
    const train_adamw base_opt = {o.lr, o.beta1, o.beta2, o.eps, o.weight_decay};
    const double t0 = now_ms();
    const int64_t first_step = prog.step;
    while (prog.step < o.steps) {
        const int64_t s = prog.step;
        /* gradient accumulation: the mean of `accum` micro-batches' gradients */
        train_zero_grad(&m);
        m.loss_scale = 1.0f / (float)o.accum;
        float loss = 0;
        for (int64_t micro = 0; micro < o.accum; micro++) {
            if (samples)
                next_windows(inputs, targets, &win, n_train, &prog.data_pos, order, &order_pass, (uint64_t)o.seed, B);
            else next_batch(inputs, targets, tokens, n_train, &prog.data_pos, &rng, B, T);
            if (p->teacher_path) train_teacher_run(&teacher, inputs, B, T);
            loss += train_forward_distill(&m, inputs, targets, p->teacher_path ? &kl : NULL, B, T) / (float)o.accum;
            train_backward(&m);
        }
        const float norm = train_clip_grad_norm(&m, o.clip);
        train_adamw opt = base_opt;
        opt.lr = train_lr_schedule(s, o.warmup, o.steps, o.lr, o.lr_min);
        train_adamw_update(&m, &opt, s + 1);
        prog.step = s + 1;
        prog.rng_state = rng.state;
        if (!isfinite(loss) || !isfinite(norm)) {
            st = tandem_fail(TANDEM_ERR_ABORTED, "%s: training diverged at step %lld (loss %g, gradient norm %g): "
                             "lower tandem_train_params.lr", p->data_path, (long long)prog.step, loss, norm);
            goto done;
        }
        tandem_train_progress rep = {prog.step, o.steps, loss, NAN, opt.lr, norm, 0, 0, 0};
        if (o.val_every > 0 && (prog.step % o.val_every == 0 || prog.step == o.steps))
            rep.val_loss = validation_loss(&m, inputs, targets, &win, first_val, B);
        rep.elapsed_s = (now_ms() - t0) / 1000.0;
        const double done_steps = (double)(prog.step - first_step);
        rep.tokens_per_s = rep.elapsed_s > 0 ? done_steps * (double)o.accum * B * T / rep.elapsed_s : 0;
        rep.eta_s = rep.elapsed_s / done_steps * (double)(o.steps - prog.step);
        const bool go_on = !p->on_progress || p->on_progress(&rep, p->user);
        if (p->checkpoint_path && (!go_on || prog.step % o.checkpoint_every == 0 || prog.step == o.steps))
            if ((st = train_checkpoint_save(&m, &prog, p->checkpoint_path))) goto done;
        if (!go_on) {
            st = tandem_fail(TANDEM_ERR_ABORTED, "stopped at step %lld%s%s", (long long)prog.step,
                             p->checkpoint_path ? "; resume from " : "", p->checkpoint_path ? p->checkpoint_path : "");
            goto done;
        }
    }

    /* the output, named after its file */
    name = path_stem(p->output_path);
    if (!name) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_train: out of memory");
        goto done;
    }
    st = train_export_gguf(&m, p->output_path, p->out_type, name, tokenizer_path);
done:
    if (init_open) model_source_close(&init);
    train_teacher_close(&teacher);
    train_model_free(&m);
    thread_pool_free(pool);
    tandem_tokenizer_free(tok);
    tandem_free(tokens);
    train_windows_free(&win);
    free(order);
    free(text);
    free(inputs);
    free(targets);
    free(name);
    json_decref(root);
    return st;
}
