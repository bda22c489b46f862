/* tokenizer_gguf.c — a tokenizer.json folder (with tokenizer_config.json or chat_template.jinja) written as
 * the tokenizer.ggml.* keys of a GGUF, as llama.cpp's convert_hf_to_gguf.py and gguf-py write them. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "tokenizer.h"

/* The id of a special token named in tokenizer_config.json (a string or {"content": …}); -1 if absent. */
static int64_t config_token_id(const json_t *cfg, const char *key, const json_t *added, const json_t *vocab) {
    const json_t *v = json_object_get(cfg, key);
    const char *content = json_is_string(v) ? json_string_value(v) : json_get_string(v, "content");
    if (!content) return -1;
    size_t i;
    json_t *a;
    json_array_foreach(added, i, a) {
        const char *c = json_get_string(a, "content");
        int64_t id;
        if (c && !strcmp(c, content) && json_get_int(a, "id", &id)) return id;
    }
    json_t *id = json_object_get(vocab, content);
    return json_is_integer(id) ? json_integer_value(id) : -1;
}

/* config.json's fallback for a special id: an integer, or the first of a list. */
static int64_t config_json_id(const json_t *config, const char *key) {
    const json_t *v = json_object_get(config, key);
    if (json_is_array(v)) v = json_array_get(v, 0);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* One half of a ["left", "right"] merge, with every ' ' written as 'Ġ' (U+0120), as gguf-py does, so that
 * the first space separates the halves. */
static bool merge_half_append(byte_buf *b, const char *s) {
    bool ok = true;
    for (const char *p = s; *p && ok; p++) ok = *p == ' ' ? byte_buf_append(b, "\xC4\xA0", 2) : byte_buf_append(b, p, 1);
    return ok;
}

/* llama.cpp names the pre-tokenizer by the regex it splits with; only Qwen2's ("qwen2") is supported. */
static tandem_status check_pre_tokenizer(const char *path, const json_t *root) {
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    const json_t *list = json_object_get(pre, "pretokenizers");
    const json_t *single[1] = {pre};
    size_t n = json_is_array(list) ? json_array_size(list) : (pre && !json_is_null(pre) ? 1 : 0);
    for (size_t i = 0; i < n; i++) {
        const json_t *p = json_is_array(list) ? json_array_get(list, i) : single[0];
        const char *type = json_get_string(p, "type");
        if (!type || strcmp(type, "Split") != 0) continue;
        const char *re = json_get_string(json_object_get(p, "pattern"), "Regex");
        if (!re || strcmp(re, TOKENIZER_QWEN2_PATTERN) != 0)
            return tandem_fail(TANDEM_ERR_UNSUPPORTED,
                               "%s: pre_tokenizer: the Split pattern is not Qwen2's, so no llama.cpp pre-tokenizer name fits",
                               path);
    }
    return TANDEM_OK;
}

/* tokenizer.chat_template (the default), and for HF's named templates tokenizer.chat_template.NAME with the names
 * listed in tokenizer.chat_templates, as gguf-py's add_chat_template writes them (NAME: letters, digits, '_'). */
static tandem_status write_chat_templates(gguf_writer *w, const chat_templates *t) {
    tandem_status st = TANDEM_OK;
    if (t->text && (st = gguf_writer_set_str(w, "tokenizer.chat_template", t->text, strlen(t->text)))) return st;
    if (!t->n) return TANDEM_OK;
    gguf_str *names = calloc(t->n, sizeof *names);
    char *buf = malloc(t->n * 101);
    if (!names || !buf) st = tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; !st && i < t->n; i++) {
        char *name = buf + i * 101, key[160];
        size_t n = 0;
        for (const char *c = t->names[i]; *c && n < 100; c++)
            name[n++] = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ? *c : '_';
        name[n] = '\0';
        names[i] = (gguf_str){name, n};
        snprintf(key, sizeof key, "tokenizer.chat_template.%s", name);
        st = gguf_writer_set_str(w, key, t->texts[i], strlen(t->texts[i]));
    }
    if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.chat_templates", names, t->n);
    free(names);
    free(buf);
    return st;
}

tandem_status tokenizer_write_gguf_keys(gguf_writer *w, const char *source, const json_t *config, int32_t vocab_size,
                                        const char *template_override) {
    /* source: the folder, or its tokenizer.json; tokenizer_config.json and chat_template.jinja sit beside it */
    checkpoint_files f;
    tandem_status st = tokenizer_files_of(source, &f);
    if (st) return st;
    const char *dir = f.path, *tok_path = f.tokenizer, *cfg_path = f.tokenizer_config;
    json_t *root = NULL, *cfg = NULL;
    gguf_str *tokens = NULL, *merges = NULL;
    int32_t *types = NULL;
    char *pads = NULL;
    chat_templates tmpl = {0};
    byte_buf mbuf = {0};
    size_t *merge_off = NULL;
    if (!tok_path) {
        st = tandem_fail(TANDEM_ERR_IO, "%s: no tokenizer.json in this folder", dir);
        goto done;
    }
    if ((st = json_load_path(tok_path, &root))) goto done;
    if (cfg_path && (st = json_load_path(cfg_path, &cfg))) goto done;
    const json_t *model = json_object_get(root, "model"), *vocab = json_object_get(model, "vocab");
    const json_t *added = json_object_get(root, "added_tokens"), *merge_list = json_object_get(model, "merges");
    const char *model_type = json_get_string(model, "type");
    if (!json_is_object(vocab) || !json_is_array(merge_list) || (model_type && strcmp(model_type, "BPE") != 0)) {
        st = tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: model: expected a BPE model with a vocab object and a merges list",
                         tok_path);
        goto done;
    }
    if (added && !json_is_array(added)) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: added_tokens must be a list", tok_path);
        goto done;
    }
    if ((st = check_pre_tokenizer(tok_path, root))) goto done;

    /* tokens and types: vocab (NORMAL), added tokens (CONTROL when special or <|…|>-shaped, as llama.cpp's
     * converter decides, else USER_DEFINED), and [PAD<id>] (UNUSED) up to config.json's vocab_size */
    enum { TT_NORMAL = 1, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5 };
    tokens = calloc((size_t)vocab_size, sizeof *tokens);
    types = calloc((size_t)vocab_size, sizeof *types);
    pads = malloc((size_t)vocab_size * 20);
    if (!tokens || !types || !pads) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", tok_path);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)vocab, key, v) {
        int64_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id >= vocab_size) {
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s: model.vocab: token id %lld of '%.40s' is outside 0..%d (vocab_size in config.json)",
                             tok_path, (long long)id, key, vocab_size - 1);
            goto done;
        }
        tokens[id] = (gguf_str){key, strlen(key)};
        types[id] = TT_NORMAL;
    }
    size_t i;
    json_array_foreach(added, i, v) {
        const char *content = json_get_string(v, "content");
        int64_t id;
        if (!content || !json_get_int(v, "id", &id) || id < 0 || id >= vocab_size) {
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s: added_tokens[%zu]: needs a content and an id inside 0..%d", tok_path,
                             i, vocab_size - 1);
            goto done;
        }
        bool special = false;
        json_get_bool(v, "special", &special);
        size_t len = strlen(content);
        bool looks_special = len >= 4 && !strncmp(content, "<|", 2) && !strcmp(content + len - 2, "|>");
        tokens[id] = (gguf_str){content, len};
        types[id] = special || looks_special ? TT_CONTROL : TT_USER_DEFINED;
    }
    for (int32_t id = 0; id < vocab_size; id++) {
        if (types[id]) continue;
        char *p = pads + (size_t)id * 20;
        int n = snprintf(p, 20, "[PAD%d]", id);
        tokens[id] = (gguf_str){p, (uint64_t)n};
        types[id] = TT_UNUSED;
    }

    /* merges: "left right" strings, or ["left", "right"] pairs (tokenizers ≥ 0.20) */
    size_t n_merges = json_array_size(merge_list);
    merges = calloc(n_merges ? n_merges : 1, sizeof *merges);
    merge_off = calloc(n_merges ? n_merges : 1, sizeof *merge_off);
    if (!merges || !merge_off) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", tok_path);
        goto done;
    }
    json_array_foreach(merge_list, i, v) {
        merge_off[i] = mbuf.len;
        bool ok;
        if (json_is_string(v)) {
            const char *m = json_string_value(v), *sp = strchr(m, ' ');
            ok = sp && sp != m && sp[1] && !strchr(sp + 1, ' ') && byte_buf_append(&mbuf, m, strlen(m));
        } else {
            const char *a = json_string_value(json_array_get(v, 0)), *b = json_string_value(json_array_get(v, 1));
            ok = json_array_size(v) == 2 && a && b && a[0] && b[0] && merge_half_append(&mbuf, a) &&
                 byte_buf_append(&mbuf, " ", 1) && merge_half_append(&mbuf, b);
        }
        if (!ok) {
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s: model.merges[%zu]: not a 'left right' string or a pair of strings",
                             tok_path, i);
            goto done;
        }
        merges[i].len = mbuf.len - merge_off[i];
    }
    for (size_t k = 0; k < n_merges; k++) merges[k].ptr = (const char *)mbuf.data + merge_off[k];

    /* special ids: tokenizer_config.json's tokens first, then config.json's *_token_id (gguf-py's SpecialVocab) */
    int64_t eos = config_token_id(cfg, "eos_token", added, vocab), pad = config_token_id(cfg, "pad_token", added, vocab);
    int64_t bos = config_token_id(cfg, "bos_token", added, vocab);
    if (eos < 0) eos = config_json_id(config, "eos_token_id");
    if (pad < 0) pad = config_json_id(config, "pad_token_id");
    if (bos < 0) bos = config_json_id(config, "bos_token_id");
    bool add_bos = false;
    if (cfg) json_get_bool(cfg, "add_bos_token", &add_bos);
    if (template_override) {
        if (!(tmpl.text = malloc(strlen(template_override) + 1))) {
            st = tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory");
            goto done;
        }
        memcpy(tmpl.text, template_override, strlen(template_override) + 1);
    } else if ((st = tokenizer_chat_templates(&f, cfg, &tmpl))) {
        goto done;
    }

    if ((st = gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", 4)) ||
        (st = gguf_writer_set_str(w, "tokenizer.ggml.pre", "qwen2", 5)) ||
        (st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tokens, (size_t)vocab_size)) ||
        (st = gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, (size_t)vocab_size)) ||
        (st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, n_merges)))
        goto done;
    const struct {
        const char *key;
        int64_t id;
    } ids[] = {{"tokenizer.ggml.eos_token_id", eos}, {"tokenizer.ggml.padding_token_id", pad},
               {"tokenizer.ggml.bos_token_id", bos}};
    for (int k = 0; k < 3; k++) {
        if (ids[k].id < 0) continue;
        if (ids[k].id >= vocab_size) {
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s: %s %lld is outside the vocabulary", dir, ids[k].key, (long long)ids[k].id);
            goto done;
        }
        if ((st = gguf_writer_set_u32(w, ids[k].key, (uint32_t)ids[k].id))) goto done;
    }
    if ((st = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos))) goto done;
    st = write_chat_templates(w, &tmpl);
done:
    json_decref(root);
    json_decref(cfg);
    free(tokens);
    free(types);
    free(pads);
    free(merges);
    free(merge_off);
    free(mbuf.data);
    chat_templates_free(&tmpl);
    checkpoint_files_free(&f);
    return st;
}
