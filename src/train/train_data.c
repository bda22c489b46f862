/* train_data.c — training samples from JSONL: {"prompt", "completion"} lines (loss on the completion only) or
 * {"text"} lines, tokenized and packed whole into windows of T+1 tokens, with the targets that count. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tandem.h"
#include "train.h"

void train_windows_free(train_windows *w) {
    free(w->inputs);
    free(w->targets);
    memset(w, 0, sizeof *w);
}

static bool grow_windows(train_windows *w, int64_t *cap) {
    if (w->n < *cap) return true;
    const int64_t c = *cap ? *cap * 2 : 64;
    const size_t T = (size_t)w->T;
    int32_t *in = realloc(w->inputs, (size_t)c * T * sizeof *in);
    if (in) w->inputs = in;
    int32_t *tg = in ? realloc(w->targets, (size_t)c * T * sizeof *tg) : NULL;
    if (tg) w->targets = tg;
    if (!in || !tg) return false;
    *cap = c;
    return true;
}

/* A new, empty window: inputs padded with pad_id, every target ignored. */
static bool open_window(train_windows *w, int64_t *cap, int32_t pad_id) {
    if (!grow_windows(w, cap)) return false;
    const size_t T = (size_t)w->T, off = (size_t)w->n * T;
    for (size_t i = 0; i < T; i++) w->inputs[off + i] = pad_id, w->targets[off + i] = -1;
    w->n++;
    return true;
}

/* One sample's ids (prompt then completion; counted[i]: ids[i] is a target that counts) into the windows: into the
 * last window if it fits after what is there (a window holds T+1 tokens: T inputs, the last only a target), else
 * into a new one; a sample longer than T+1 keeps its last T+1 tokens. */
static bool pack(train_windows *w, int64_t *cap, int32_t *used, const int32_t *ids, const bool *counted, size_t n,
                 int32_t pad_id) {
    const size_t T = (size_t)w->T;
    if (n > T + 1) ids += n - (T + 1), counted += n - (T + 1), n = T + 1;
    if (w->n == 0 || (size_t)*used + n > T + 1) {
        if (!open_window(w, cap, pad_id)) return false;
        *used = 0;
    }
    int32_t *in = w->inputs + (size_t)(w->n - 1) * T, *tg = w->targets + (size_t)(w->n - 1) * T;
    for (size_t i = 0; i < n; i++) {
        const size_t at = (size_t)*used + i; /* the token's place in the window's T+1 */
        if (at < T) in[at] = ids[i];
        /* position at − 1 predicts it; a sample's first token is not predicted from the one before (another
         * sample's end), so it never counts */
        if (at > 0 && i > 0 && counted[i]) tg[at - 1] = ids[i];
    }
    *used += (int32_t)n;
    return true;
}

static const char *string_field(const json_t *j, const char *key) {
    const json_t *v = json_object_get(j, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

tandem_status train_windows_from_jsonl(const char *path, const char *data, size_t len, const tandem_tokenizer *tok,
                                       int T, int32_t pad_id, train_windows *out) {
    memset(out, 0, sizeof *out);
    out->T = T;
    tandem_status st = TANDEM_OK;
    int64_t cap = 0, line_no = 0;
    int32_t used = 0;
    int32_t *ids = NULL;
    bool *counted = NULL;
    size_t start = 0;
    while (!st && start < len) {
        const char *nl = memchr(data + start, '\n', len - start);
        const size_t end = nl ? (size_t)(nl - data) : len, n_line = end - start;
        const char *line = data + start;
        start = end + 1;
        line_no++;
        size_t k = 0;
        while (k < n_line && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k == n_line) continue; /* blank lines are allowed */
        json_error_t err;
        json_t *j = json_loadb(line, n_line, 0, &err);
        const char *prompt = j ? string_field(j, "prompt") : NULL,
                   *completion = j ? string_field(j, "completion") : NULL;
        const char *text = j ? string_field(j, "text") : NULL;
        if (!j) {
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s:%lld: not valid JSON: %s", path, (long long)line_no, err.text);
        } else if (!json_is_object(j)) {
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s:%lld: not a JSON object", path, (long long)line_no);
        } else if (!text && (!prompt || !completion)) {
            st = tandem_fail(TANDEM_ERR_FORMAT,
                             "%s:%lld: expected \"prompt\" and \"completion\" strings (the loss "
                             "counts the completion) or a \"text\" string (all of it counts)",
                             path, (long long)line_no);
        } else if (text && (prompt || completion)) {
            st = tandem_fail(TANDEM_ERR_FORMAT,
                             "%s:%lld: \"text\" and \"prompt\"/\"completion\" together: give one "
                             "form per line",
                             path, (long long)line_no);
        }
        int32_t *p_ids = NULL, *c_ids = NULL;
        size_t n_p = 0, n_c = 0;
        if (!st) {
            const char *first = text ? text : prompt;
            st = tandem_tokenizer_encode(tok, first, strlen(first), true, &p_ids, &n_p);
            if (!st && completion)
                st = tandem_tokenizer_encode(tok, completion, strlen(completion), true, &c_ids, &n_c);
        }
        json_decref(j);
        if (!st && n_p + n_c >= 2) {
            const size_t n = n_p + n_c;
            int32_t *ids2 = realloc(ids, n * sizeof *ids);
            if (ids2) ids = ids2;
            bool *counted2 = ids2 ? realloc(counted, n * sizeof *counted) : NULL;
            if (counted2) counted = counted2;
            if (!ids2 || !counted2) {
                st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
            } else {
                memcpy(ids, p_ids, n_p * sizeof *ids);
                if (n_c) memcpy(ids + n_p, c_ids, n_c * sizeof *ids);
                for (size_t i = 0; i < n; i++) counted[i] = text != NULL || i >= n_p;
                if (!pack(out, &cap, &used, ids, counted, n, pad_id))
                    st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
            }
        }
        tandem_free(p_ids);
        tandem_free(c_ids);
    }
    free(ids);
    free(counted);
    if (!st && out->n == 0) st = tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: no samples of two tokens or more", path);
    if (st) train_windows_free(out);
    return st;
}

void train_windows_order(int64_t *order, int64_t n, uint64_t seed, int64_t pass) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    train_rng rng = {seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(pass + 1))};
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
        const int64_t k = (int64_t)(train_rng_next(&rng) % (uint64_t)(i + 1));
        const int64_t t = order[i];
        order[i] = order[k], order[k] = t;
    }
}
