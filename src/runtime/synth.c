/* synth.c — tandem_synth: distillation data. The target answers every prompt of a JSONL file greedily (speculative
 * decoding with a draft when given), one JSON line per answer appended and fsync'd, resumable, optional top-k
 * logits. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime.h"

tandem_synth_params tandem_synth_default_params(void) {
    return (tandem_synth_params){.max_tokens = 256, .spec = tandem_spec_default_params(), .enable_thinking = -1};
}

/* The template prompts are rendered with: chat_template_path's file, else the target's own. */
static tandem_status synth_template(const tandem_synth_params *p, const tandem_tokenizer *tok,
                                    tandem_chat_template **out) {
    if (p->chat_template_path) {
        mapped_file mf;
        tandem_status st = mapped_file_open(p->chat_template_path, &mf);
        const char *text = mf.size ? (const char *)mf.data : ""; /* an empty file is an empty template */
        if (!st) st = tandem_chat_template_parse(text, mf.size, p->chat_template_path, out);
        mapped_file_close(&mf);
        return st;
    }
    const char *t = tandem_tokenizer_chat_template(tok);
    if (!t)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_synth: model_path: %s has no chat template (set "
                           "tandem_synth_params.chat_template_path, or tandem_synth_params.raw for a plain "
                           "continuation)",
                           p->model_path);
    return tandem_chat_template_parse(t, strlen(t), p->model_path, out);
}

/* text as one user message rendered with the generation prompt, as tandem run --chat renders -p. */
static tandem_status render_user_turn(const tandem_chat_template *tmpl, const tandem_tokenizer *tok,
                                      const tandem_synth_params *p, const char *text, char **out, size_t *len) {
    json_t *msgs = json_pack("[{s:s, s:s}]", "role", "user", "content", text);
    char *msgs_json = msgs ? json_dumps(msgs, JSON_COMPACT) : NULL;
    json_decref(msgs);
    if (!msgs_json) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_synth: out of memory");
    tandem_chat_render_params rp = tandem_chat_render_default_params();
    rp.add_generation_prompt = true;
    rp.enable_thinking = p->enable_thinking;
    rp.special_tokens_json = tandem_tokenizer_special_tokens_json(tok);
    tandem_status st = tandem_chat_render(tmpl, msgs_json, strlen(msgs_json), &rp, out, len);
    free(msgs_json);
    return st;
}

/* ---- prompts ---- */

typedef struct synth_prompt {
    char *text;     /* the prompt as given (NUL-terminated) */
    int64_t line;   /* 1-based line in the prompts file */
} synth_prompt;

static void prompts_free(synth_prompt *p, int32_t n) {
    for (int32_t i = 0; p && i < n; i++) free(p[i].text);
    free(p);
}

/* Every non-blank line: a JSON object with a "prompt" string, or a JSON string. Index i = the i-th such line. */
static tandem_status read_prompts(const char *path, synth_prompt **out, int32_t *n_out) {
    *out = NULL, *n_out = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return tandem_fail(TANDEM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    tandem_status st = TANDEM_OK;
    synth_prompt *p = NULL;
    int32_t n = 0, cap = 0;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    int64_t line_no = 0;
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        line_no++;
        ssize_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r' || line[k] == '\n')) k++;
        if (k == len) continue;
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)len, JSON_DECODE_ANY, &err);
        if (!j) {
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s:%lld: not valid JSON: %s", path, (long long)line_no, err.text);
            break;
        }
        json_t *s = json_is_object(j) ? json_object_get(j, "prompt") : j;
        if (!json_is_string(s)) {
            json_decref(j);
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s:%lld: expected {\"prompt\": \"…\"} or a JSON string", path,
                             (long long)line_no);
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            synth_prompt *grown = cap < (1 << 28) ? realloc(p, (size_t)cap * sizeof *p) : NULL;
            if (!grown) {
                json_decref(j);
                st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
                break;
            }
            p = grown;
        }
        p[n].text = malloc(json_string_length(s) + 1);
        if (!p[n].text) {
            json_decref(j);
            st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
            break;
        }
        memcpy(p[n].text, json_string_value(s), json_string_length(s) + 1);
        p[n].line = line_no;
        n++;
        json_decref(j);
    }
    if (!st && ferror(f)) st = tandem_fail(TANDEM_ERR_IO, "%s: read error", path);
    if (!st && n == 0) st = tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: no prompts", path);
    free(line);
    fclose(f);
    if (st) {
        prompts_free(p, n);
        return st;
    }
    *out = p, *n_out = n;
    return TANDEM_OK;
}

/* ---- resume: which indices the output already holds ---- */

/* Whether s (n bytes: a last line without its newline) can be the start of a line synth writes: compact JSON whose
 * keys come in the order tandem_synth sets them, {"index":N,"prompt":… */
static bool is_answer_start(const char *s, size_t n) {
    static const char START[] = "{\"index\":", AFTER[] = ",\"prompt\":";
    size_t i = 0;
    for (; i < n && START[i]; i++)
        if (s[i] != START[i]) return false;
    const size_t digits = i;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    if (i == n) return true;
    if (i == digits) return false;
    for (size_t k = 0; i < n && AFTER[k]; i++, k++)
        if (s[i] != AFTER[k]) return false;
    return true;
}

/* A line of synth's own: a JSON object with an "index" below n_prompts, the prompt text of that index, "prompt_ids"
 * and "ids" arrays, "text" and "finish" strings, and if any, "top_ids" and "top_logits" arrays. Anything else (a
 * JSON config, JSON lines of other objects, notes) is someone else's file, and resuming would append to it. */
static bool is_synth_line(const json_t *j) {
    static const char *const ARRAYS[] = {"prompt_ids", "ids"}, *const STRINGS[] = {"text", "finish"},
                             *const OPTIONAL_ARRAYS[] = {"top_ids", "top_logits"};
    for (int i = 0; i < 2; i++) {
        const json_t *o = json_object_get(j, OPTIONAL_ARRAYS[i]);
        if (!json_is_array(json_object_get(j, ARRAYS[i])) || !json_is_string(json_object_get(j, STRINGS[i])) ||
            (o && !json_is_array(o)))
            return false;
    }
    return json_is_string(json_object_get(j, "prompt"));
}

/* Reads an existing output: marks done[index] for every complete line, truncates a half-written last line (no
 * newline: the run stopped mid-write). The file must be synth's own: every complete line one of its answers
 * (is_synth_line) for this prompts file, and a half-written last line the start of one. An empty file is used as
 * it is. Anything else is an error and the file is left as it was: it belongs to something else. */
static tandem_status scan_existing(const char *path, const synth_prompt *prompts, int32_t n_prompts, bool *done,
                                   int32_t *n_done) {
    *n_done = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return TANDEM_OK;
        return tandem_fail(TANDEM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    tandem_status st = TANDEM_OK;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    int64_t line_no = 0;
    off_t good_end = 0;
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        line_no++;
        const bool complete = line[len - 1] == '\n';
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)len, 0, &err);
        if (!complete && !j) {  /* half-written: dropped below, if it is the start of an answer */
            if (!is_answer_start(line, (size_t)len))
                st = tandem_fail(TANDEM_ERR_MISMATCH,
                                 "%s:%lld: the last line (no newline) is not the start of an "
                                 "answer of tandem synth; the file is left as it is (set tandem_synth_params.force to "
                                 "overwrite it)",
                                 path, (long long)line_no);
            break;
        }
        json_t *idx = j ? json_object_get(j, "index") : NULL;
        json_t *prompt = j ? json_object_get(j, "prompt") : NULL;
        if (!j) {
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s:%lld: not valid JSON: %s (not written by tandem synth?)", path,
                             (long long)line_no, err.text);
        } else if (!json_is_integer(idx) || json_integer_value(idx) < 0 || json_integer_value(idx) >= n_prompts) {
            st = tandem_fail(TANDEM_ERR_MISMATCH, "%s:%lld: no index below the %d prompts (another prompts file? "
                             "set tandem_synth_params.force to start over)", path, (long long)line_no, n_prompts);
        } else if (json_is_string(prompt) && strcmp(json_string_value(prompt), prompts[json_integer_value(idx)].text)) {
            st = tandem_fail(TANDEM_ERR_MISMATCH, "%s:%lld: prompt %lld differs from the prompts file's (another "
                             "prompts file? set tandem_synth_params.force to start over)", path, (long long)line_no,
                             (long long)json_integer_value(idx));
        } else if (!is_synth_line(j)) {
            st = tandem_fail(TANDEM_ERR_MISMATCH,
                             "%s:%lld: not an answer of tandem synth (expected \"index\", "
                             "\"prompt\", \"prompt_ids\", \"ids\", \"text\", \"finish\"); the file is left as it is "
                             "(set tandem_synth_params.force to overwrite it)",
                             path, (long long)line_no);
        } else if (complete && !done[json_integer_value(idx)]) {
            done[json_integer_value(idx)] = true;
            (*n_done)++;
        }
        json_decref(j);
        if (st || !complete) break;  /* a whole answer without its newline: dropped below, and answered again */
        good_end += len;
    }
    const bool read_error = ferror(f);
    free(line);
    fclose(f);
    if (st) return st;
    if (read_error) return tandem_fail(TANDEM_ERR_IO, "%s: read error", path);
    if (truncate(path, good_end))
        return tandem_fail(TANDEM_ERR_IO, "%s: cannot drop the half-written last line: %s", path, strerror(errno));
    return TANDEM_OK;
}

enum { SYNTH_CHUNK = 64 };

/* The target's top-k logits at the positions that predicted each generated token: a second, teacher-forced pass
 * over prompt + answer (the same forward pass that generated it, so top_ids[j][0] is the greedy choice ids[j]). */
static tandem_status answer_top_k(tandem_ctx *ctx, const int32_t *prompt, size_t n_prompt, const int32_t *gen,
                                  size_t n_gen, int32_t k, int32_t vocab, float *logits, json_t *top_ids,
                                  json_t *top_logits) {
    tandem_status st = tandem_ctx_truncate(ctx, 0);
    if (!st && n_prompt > 1) st = tandem_ctx_eval(ctx, prompt, (int32_t)(n_prompt - 1), NULL);
    int32_t chunk[SYNTH_CHUNK], ids[TANDEM_SYNTH_MAX_TOPK];
    float vals[TANDEM_SYNTH_MAX_TOPK];
    /* position n_prompt−1+j (token prompt[-1] for j = 0, gen[j−1] after) predicts gen[j] */
    for (size_t j0 = 0; !st && j0 < n_gen; j0 += SYNTH_CHUNK) {
        const size_t m = n_gen - j0 < SYNTH_CHUNK ? n_gen - j0 : SYNTH_CHUNK;
        for (size_t j = 0; j < m; j++) chunk[j] = j0 + j == 0 ? prompt[n_prompt - 1] : gen[j0 + j - 1];
        if ((st = tandem_ctx_eval(ctx, chunk, (int32_t)m, logits))) break;
        for (size_t j = 0; j < m; j++) {
            const int32_t kept = top_k_f32(logits + j * (size_t)vocab, vocab, k, ids, vals);
            json_t *ri = json_array(), *rv = json_array();
            for (int32_t t = 0; t < kept; t++) {
                json_array_append_new(ri, json_integer(ids[t]));
                json_array_append_new(rv, json_real(vals[t]));
            }
            json_array_append_new(top_ids, ri);
            json_array_append_new(top_logits, rv);
        }
    }
    return st;
}

static json_t *ids_array(const int32_t *ids, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
    return a;
}

/* Appends line + '\n' in one write and makes it durable before the next prompt starts. */
static tandem_status append_line(int fd, const char *path, const char *line) {
    const size_t n = strlen(line);
    char *buf = malloc(n + 1);
    if (!buf) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
    memcpy(buf, line, n);
    buf[n] = '\n';
    size_t off = 0;
    while (off < n + 1) {
        const ssize_t w = write(fd, buf + off, n + 1 - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            free(buf);
            return tandem_fail(TANDEM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        }
        off += (size_t)w;
    }
    free(buf);
    if (fsync(fd)) return tandem_fail(TANDEM_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    return TANDEM_OK;
}

/* ---- the run ---- */

tandem_status tandem_synth(const tandem_synth_params *p, tandem_synth_result *result) {
    if (result) memset(result, 0, sizeof *result);
    if (!p || !p->model_path || !p->prompts_path || !p->output_path)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_synth: model, prompts and output paths are required");
    if (p->topk < 0 || p->topk > TANDEM_SYNTH_MAX_TOPK)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_synth: top-k %d is outside 0..%d", p->topk,
                           TANDEM_SYNTH_MAX_TOPK);
    if (p->max_tokens < 1)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_synth: max_tokens %d must be at least 1", p->max_tokens);
    if (p->raw && p->chat_template_path)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_synth: chat_template_path: not with "
                           "tandem_synth_params.raw (a plain continuation has no template)");
    if (p->enable_thinking < -1 || p->enable_thinking > 1)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_synth: enable_thinking: %d is not -1, 0 or 1",
                           p->enable_thinking);
    tandem_status st;
    synth_prompt *prompts = NULL;
    int32_t n_prompts = 0, n_done = 0;
    bool *done = NULL;
    tandem_model *model = NULL, *draft_model = NULL;
    tandem_ctx *ctx = NULL, *draft_ctx = NULL;
    float *logits = NULL;
    int32_t *ids = NULL;
    char *chat = NULL;
    tandem_chat_template *tmpl = NULL;
    int fd = -1;
    tandem_synth_progress prog = {0};

    if ((st = read_prompts(p->prompts_path, &prompts, &n_prompts))) return st;
    if (!(done = calloc((size_t)n_prompts, sizeof *done))) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_synth: out of memory");
        goto done;
    }
    if (p->force) {
        if (unlink(p->output_path) && errno != ENOENT) {
            st = tandem_fail(TANDEM_ERR_IO, "%s: cannot remove: %s", p->output_path, strerror(errno));
            goto done;
        }
    } else if ((st = scan_existing(p->output_path, prompts, n_prompts, done, &n_done))) {
        goto done;
    }

    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = p->n_threads;
    if ((st = tandem_model_load(p->model_path, &mp, &model))) goto done;
    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = p->n_ctx;
    if ((st = tandem_ctx_init(model, &cp, &ctx))) goto done;
    if (p->draft_path) {
        if ((st = tandem_model_load(p->draft_path, &mp, &draft_model)) ||
            (st = tandem_model_check_draft(model, draft_model)))
            goto done;
        cp.n_ctx = tandem_ctx_n_ctx(ctx);
        if ((st = tandem_ctx_init(draft_model, &cp, &draft_ctx))) goto done;
    }
    const tandem_tokenizer *tok = tandem_model_tokenizer(model);
    if (!p->raw && (st = synth_template(p, tok, &tmpl))) goto done;
    tandem_model_info info;
    tandem_model_get_info(model, &info);
    const int32_t vocab = info.vocab_size;
    const int32_t n_ctx = tandem_ctx_n_ctx(ctx);
    if (p->topk > 0 && !(logits = malloc((size_t)SYNTH_CHUNK * vocab * sizeof *logits))) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_synth: out of memory for the logits");
        goto done;
    }
    if ((fd = open(p->output_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0) {
        st = tandem_fail(TANDEM_ERR_IO, "%s: cannot open for writing: %s", p->output_path, strerror(errno));
        goto done;
    }

    tandem_gen_params gp = tandem_gen_default_params(model);
    gp.sampling.temperature = 0;  /* greedy: the target's own choice, reproducible on resume */
    gp.max_tokens = p->max_tokens;
    gp.draft = draft_ctx;
    gp.spec = p->spec;
    prog.total = n_prompts, prog.done = prog.skipped = n_done;
    const double t0 = now_ms();
    for (int32_t i = 0; i < n_prompts; i++) {
        if (done[i]) continue;
        const char *text = prompts[i].text;
        size_t len = strlen(text), n_ids = 0;
        if (!p->raw) {
            tandem_free(chat);
            chat = NULL;
            if ((st = render_user_turn(tmpl, tok, p, text, &chat, &len))) goto done;
            text = chat;
        }
        tandem_free(ids);
        ids = NULL;
        /* the chat markers are special tokens; the user's text is matched as given (as a chat template would) */
        if ((st = tandem_tokenizer_encode(tok, text, len, !p->raw, &ids, &n_ids))) goto done;
        if (n_ids == 0) {
            st = tandem_fail(TANDEM_ERR_INVALID_ARG, "%s:%lld: the prompt is empty", p->prompts_path,
                             (long long)prompts[i].line);
            goto done;
        }
        if (n_ids >= (size_t)n_ctx) {
            st = tandem_fail(TANDEM_ERR_CONTEXT_FULL, "%s:%lld: the prompt's %zu tokens do not fit the context of %d",
                             p->prompts_path, (long long)prompts[i].line, n_ids, n_ctx);
            goto done;
        }
        if ((st = tandem_ctx_truncate(ctx, 0)) || (draft_ctx && (st = tandem_ctx_truncate(draft_ctx, 0)))) goto done;
        tandem_gen_result r;
        if ((st = tandem_generate(ctx, ids, n_ids, &gp, &r))) goto done;
        json_t *line = json_pack("{s:i, s:s%, s:o, s:o, s:s%, s:s}", "index", i, "prompt", prompts[i].text,
                                 strlen(prompts[i].text), "prompt_ids", ids_array(ids, n_ids), "ids",
                                 ids_array(r.ids, r.n_ids), "text", r.text ? r.text : "", r.text_len, "finish",
                                 tandem_finish_name(r.finish));
        if (line && p->topk > 0) {
            json_t *ti = json_array(), *tl = json_array();
            json_object_set_new(line, "top_ids", ti);
            json_object_set_new(line, "top_logits", tl);
            st = answer_top_k(ctx, ids, n_ids, r.ids, r.n_ids, p->topk, vocab, logits, ti, tl);
        }
        if (r.speculative && result) {
            result->spec.n_rounds += r.spec_stats.n_rounds;
            result->spec.n_drafted += r.spec_stats.n_drafted;
            result->spec.n_accepted += r.spec_stats.n_accepted;
        }
        prog.n_tokens += (int64_t)r.n_ids;
        tandem_gen_result_free(&r);
        char *s = line && !st ? json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(6)) : NULL;
        json_decref(line);
        if (!st && !s) st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_synth: out of memory");
        if (!st) st = append_line(fd, p->output_path, s);
        free(s);
        if (st) goto done;
        prog.done++;
        prog.elapsed_s = (now_ms() - t0) / 1000.0;
        prog.tokens_per_s = prog.elapsed_s > 0 ? (double)prog.n_tokens / prog.elapsed_s : 0;
        if (p->on_progress && !p->on_progress(&prog, p->user)) {
            st = tandem_fail(TANDEM_ERR_ABORTED, "stopped after %d of %d prompts; run again to resume", prog.done,
                             n_prompts);
            goto done;
        }
    }
done:
    if (result) {
        result->n_prompts = n_prompts;
        result->n_skipped = n_done;
        result->n_written = prog.done - n_done;
        result->n_tokens = prog.n_tokens;
        tandem_spec_stats *x = &result->spec;
        x->acceptance_rate = x->n_drafted ? (double)x->n_accepted / x->n_drafted : 0;
        x->mean_per_pass = x->n_rounds ? (double)prog.n_tokens / x->n_rounds : 0;
    }
    if (fd >= 0 && close(fd) && !st)
        st = tandem_fail(TANDEM_ERR_IO, "%s: close failed: %s", p->output_path, strerror(errno));
    tandem_free(ids);
    tandem_free(chat);
    tandem_chat_template_free(tmpl);
    free(logits);
    tandem_ctx_free(draft_ctx);
    tandem_model_free(draft_model);
    tandem_ctx_free(ctx);
    tandem_model_free(model);
    prompts_free(prompts, n_prompts);
    free(done);
    return st;
}
