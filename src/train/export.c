/* export.c — writes a trained model as a Qwen3 GGUF that tandem (config.c, weights.c, the tokenizer) and
 * llama.cpp load: llama.cpp tensor names and qwen3.* metadata, plus the tokenizer carried over from its source. */
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "train.h"

/* GGUF token types (tokenizer.ggml.token_type), as llama.cpp's convert writes them */
enum { TOKEN_NORMAL = 1, TOKEN_CONTROL = 3, TOKEN_USER_DEFINED = 4, TOKEN_UNUSED = 5 };

/* The storage type of one tensor. Norm vectors stay F32 (weights.c converts them to f32 anyway); matrices take the
 * requested type. This is the hook for the converter's per-tensor rules (e.g. Q4_K_M keeping some tensors at
 * higher precision): a matrix whose row is not whole blocks of `requested` falls back to F16. */
static tandem_type export_tensor_type(const train_tensor *t, tandem_type requested) {
    if (t->n_dims == 1) return TANDEM_TYPE_F32;
    if (t->shape[1] % tandem_type_block_size(requested) != 0) return TANDEM_TYPE_F16;
    return requested;
}

uint32_t train_gguf_file_type(tandem_type t) {
    /* general.file_type (llama.cpp LlamaFileType) for the types train can write */
    switch (t) {
    case TANDEM_TYPE_F32: return 0;
    case TANDEM_TYPE_F16: return 1;
    case TANDEM_TYPE_Q4_0: return 2;
    case TANDEM_TYPE_Q4_1: return 3;
    case TANDEM_TYPE_Q8_0: return 7;
    case TANDEM_TYPE_Q5_0: return 8;
    case TANDEM_TYPE_Q5_1: return 9;
    case TANDEM_TYPE_BF16: return 32;
    case TANDEM_TYPE_IQ4_NL: return 25;
    case TANDEM_TYPE_Q2_K: return 10;
    case TANDEM_TYPE_Q3_K: return 12;
    case TANDEM_TYPE_Q4_K: return 15;
    case TANDEM_TYPE_Q5_K: return 17;
    case TANDEM_TYPE_Q6_K: return 18;
    default: return 0;
    }
}

/* ---- tokenizer metadata ---- */

static tandem_status copy_gguf_tokenizer(gguf_writer *w, const char *path, int32_t vocab_size) {
    gguf_file *f = NULL;
    tandem_status st = gguf_open(path, &f);
    if (st) return st;
    const gguf_kv *tokens = gguf_find_kv(f, "tokenizer.ggml.tokens");
    if (!tokens) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: no tokenizer (tokenizer.ggml.tokens missing)", path);
    } else if (tokens->n > (uint64_t)vocab_size) {
        st = tandem_fail(TANDEM_ERR_MISMATCH, "%s: the tokenizer has %llu tokens but the config's vocab_size is %d",
                         path, (unsigned long long)tokens->n, vocab_size);
    }
    for (int64_t i = 0; i < f->n_kv && !st; i++)
        if (strncmp(f->kv[i].key, "tokenizer.", 10) == 0) st = gguf_writer_copy_kv(w, &f->kv[i]);
    gguf_close(f);
    return st;
}

/* A string field that may be {"content": "..."} (tokenizer_config.json's AddedToken form). */
static const char *token_text(const json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_get_string(v, "content");
    return NULL;
}

/* tokenizer.json (+ tokenizer_config.json, chat_template.jinja) → tokenizer.ggml.* keys, as tests/gen/qwen3_gguf.py
 * and llama.cpp's convert_hf_to_gguf.py write them; ids without a token are padded as [PAD<id>]. */
static tandem_status convert_json_tokenizer(gguf_writer *w, const char *source, int32_t vocab_size) {
    tandem_status st = TANDEM_OK;
    char *dir = NULL, *file = NULL, *cfg_path = NULL, *jinja_path = NULL, *dup = NULL, *tpl_text = NULL;
    char *joined = NULL;  /* "left right" texts of merges stored as pairs, end to end */
    json_t *tok = NULL, *cfg = NULL;
    gguf_str *tokens = NULL, *merges = NULL;
    int32_t *types = NULL;
    char (*pads)[24] = NULL;
    if (path_is_dir(source)) {
        dir = strdup(source);
        file = path_join(source, "tokenizer.json");
    } else {
        dup = strdup(source);
        dir = dup ? strdup(dirname(dup)) : NULL;
        file = strdup(source);
    }
    if (!dir || !file) goto oom;
    if ((st = json_load_path(file, &tok))) goto done;
    const json_t *model = json_object_get(tok, "model"), *vocab = json_object_get(model, "vocab");
    const json_t *jmerges = json_object_get(model, "merges"), *added = json_object_get(tok, "added_tokens");
    if (!json_is_object(vocab) || !json_is_array(jmerges)) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: model.vocab / model.merges missing: not a BPE tokenizer.json", file);
        goto done;
    }
    tokens = calloc((size_t)vocab_size, sizeof *tokens);
    types = calloc((size_t)vocab_size, sizeof *types);
    pads = calloc((size_t)vocab_size, sizeof *pads);
    if (!tokens || !types || !pads) goto oom;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)vocab, key, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || id >= vocab_size) {
            st = tandem_fail(TANDEM_ERR_MISMATCH, "%s: token '%s' has id %lld, outside the config's vocab_size %d",
                             file, key, (long long)id, vocab_size);
            goto done;
        }
        tokens[id] = (gguf_str){key, strlen(key)};
        types[id] = TOKEN_NORMAL;
    }
    int32_t eot = -1;
    size_t i;
    json_array_foreach(added, i, val) {
        const char *content = json_get_string(val, "content");
        int64_t id;
        bool special = false;
        if (!content || !json_get_int(val, "id", &id) || id < 0 || id >= vocab_size) {
            st = tandem_fail(TANDEM_ERR_MISMATCH, "%s: added_tokens[%zu] is malformed or beyond vocab_size %d", file,
                             i, vocab_size);
            goto done;
        }
        json_get_bool(val, "special", &special);
        const size_t n = strlen(content);
        const bool looks_special = n >= 4 && strncmp(content, "<|", 2) == 0 && strcmp(content + n - 2, "|>") == 0;
        tokens[id] = (gguf_str){content, n};
        types[id] = special || looks_special ? TOKEN_CONTROL : TOKEN_USER_DEFINED;
        if (strcmp(content, "<|endoftext|>") == 0) eot = (int32_t)id;
    }
    for (int32_t id = 0; id < vocab_size; id++)
        if (!tokens[id].ptr) {
            snprintf(pads[id], sizeof pads[id], "[PAD%d]", id);
            tokens[id] = (gguf_str){pads[id], strlen(pads[id])};
            types[id] = TOKEN_UNUSED;
        }
    const size_t n_merges = json_array_size(jmerges);
    merges = calloc(n_merges ? n_merges : 1, sizeof *merges);
    if (!merges) goto oom;
    /* merges are "left right" strings (old layout) or ["left", "right"] pairs (tokenizers ≥ 0.20) */
    size_t joined_len = 0;
    for (size_t k = 0; k < n_merges; k++) {
        const json_t *mg = json_array_get(jmerges, k);
        if (json_is_string(mg)) {
            merges[k] = (gguf_str){json_string_value(mg), json_string_length(mg)};
        } else if (json_is_array(mg) && json_array_size(mg) == 2 && json_is_string(json_array_get(mg, 0)) &&
                   json_is_string(json_array_get(mg, 1))) {
            joined_len += json_string_length(json_array_get(mg, 0)) + json_string_length(json_array_get(mg, 1)) + 2;
        } else {
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s: model.merges[%zu] is neither a string nor a pair", file, k);
            goto done;
        }
    }
    if (joined_len) {
        joined = malloc(joined_len);
        if (!joined) goto oom;
        char *p = joined;
        for (size_t k = 0; k < n_merges; k++) {
            const json_t *mg = json_array_get(jmerges, k);
            if (!json_is_array(mg)) continue;
            int len = sprintf(p, "%s %s", json_string_value(json_array_get(mg, 0)),
                              json_string_value(json_array_get(mg, 1)));
            merges[k] = (gguf_str){p, (size_t)len};
            p += len + 1;
        }
    }
    if ((st = gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", 4)) ||
        (st = gguf_writer_set_str(w, "tokenizer.ggml.pre", "qwen2", 5)) ||
        (st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tokens, (size_t)vocab_size)) ||
        (st = gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, (size_t)vocab_size)) ||
        (st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, n_merges)) ||
        (st = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false)))
        goto done;
    /* as Qwen3 GGUFs: bos = <|endoftext|> (never prepended); eos / pad from tokenizer_config.json */
    if (eot >= 0 && (st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)eot))) goto done;
    if (!(cfg_path = path_join(dir, "tokenizer_config.json")) || !(jinja_path = path_join(dir, "chat_template.jinja")))
        goto oom;
    const char *tpl = NULL;
    if (path_exists(cfg_path)) {
        if ((st = json_load_path(cfg_path, &cfg))) goto done;
        const char *names[2] = {"eos_token", "pad_token"};
        const char *keys[2] = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"};
        for (int k = 0; k < 2; k++) {
            const char *text = token_text(json_object_get(cfg, names[k]));
            if (!text) continue;
            for (int32_t id = 0; id < vocab_size; id++)
                if (tokens[id].len == strlen(text) && memcmp(tokens[id].ptr, text, tokens[id].len) == 0) {
                    if ((st = gguf_writer_set_u32(w, keys[k], (uint32_t)id))) goto done;
                    break;
                }
        }
        tpl = json_get_string(cfg, "chat_template");
    }
    /* the template: tokenizer_config.json's, else chat_template.jinja (newer HF exports) */
    size_t tpl_len = tpl ? strlen(tpl) : 0;
    if (!tpl && path_exists(jinja_path)) {
        if ((st = train_read_text(jinja_path, &tpl_text, &tpl_len))) goto done;
        tpl = tpl_text;
    }
    if (tpl && tpl_len && (st = gguf_writer_set_str(w, "tokenizer.chat_template", tpl, tpl_len))) goto done;
    goto done;  /* the writer copied every string it was given */
oom:
    st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", source);
done:
    free(joined);
    free(dir);
    free(file);
    free(dup);
    free(cfg_path);
    free(jinja_path);
    free(tpl_text);
    free(tokens);
    free(types);
    free(pads);
    free(merges);
    json_decref(tok);
    json_decref(cfg);
    return st;
}

tandem_status train_write_tokenizer(gguf_writer *w, const char *source, int32_t vocab_size) {
    return path_is_dir(source) || strstr(source, ".json") ? convert_json_tokenizer(w, source, vocab_size)
                                                          : copy_gguf_tokenizer(w, source, vocab_size);
}

/* ---- the model file ---- */

tandem_status train_export_gguf(const train_model *m, const char *path, tandem_type type, const char *name,
                                const char *tokenizer_source) {
    const qwen3_config *c = &m->cfg;
    if (type != TANDEM_TYPE_F32 && type != TANDEM_TYPE_F16 && type != TANDEM_TYPE_BF16 && !kernel_can_quantize(type))
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: cannot write weights as %s", path, tandem_type_name(type));
    gguf_writer *w = NULL;
    void **converted = calloc((size_t)m->n_tensors, sizeof *converted);
    if (!converted) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
    tandem_status st = gguf_writer_init(&w);
    if (st) goto done;
    if ((st = qwen3_config_write_gguf(w, c, name, train_gguf_file_type(type)))) goto done;
    if (tokenizer_source && (st = train_write_tokenizer(w, tokenizer_source, c->vocab_size))) goto done;
    for (int i = 0; i < m->n_tensors; i++) {
        const train_tensor *t = &m->tensors[i];
        const float *src = m->params + t->offset;
        const tandem_type tt = export_tensor_type(t, type);
        int64_t ne[2] = {t->n_dims == 2 ? t->shape[1] : t->shape[0], t->shape[0]};  /* GGUF: innermost first */
        const void *data = src;
        if (tt != TANDEM_TYPE_F32) {
            const int64_t rows = t->shape[0], cols = t->shape[1];
            uint64_t row_bytes;
            tandem_type_row_bytes(tt, cols, &row_bytes);
            uint8_t *buf = malloc((size_t)row_bytes * (size_t)rows);
            if (!buf) {
                st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory converting '%s'", path, t->name);
                goto done;
            }
            converted[i] = buf;
            float *flushed = NULL;
            if (tt != TANDEM_TYPE_F16 && tt != TANDEM_TYPE_BF16) {
                /* a copy: weight decay leaves weights below 2^-30, which quantize_prepare_row zeroes */
                flushed = malloc((size_t)t->numel * sizeof *flushed);
                if (!flushed) {
                    st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory converting '%s'", path, t->name);
                    goto done;
                }
                memcpy(flushed, src, (size_t)t->numel * sizeof *flushed);
                src = flushed;
            }
            if (flushed && !quantize_prepare_row(flushed, (int64_t)t->numel)) {
                free(flushed);
                st = tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s' has values outside the quantizers' domain "
                                 "(NaN, infinite or extreme): the training diverged", path, t->name);
                goto done;
            }
            for (int64_t r = 0; r < rows; r++)
                quantize_row(tt, src + (size_t)r * cols, buf + (size_t)r * row_bytes, cols);
            free(flushed);
            data = buf;
        }
        if ((st = gguf_writer_add_tensor(w, t->name, tt, t->n_dims, ne, data))) goto done;
    }
    st = gguf_writer_write(w, path);
done:
    gguf_writer_free(w);
    for (int i = 0; i < m->n_tensors; i++) free(converted[i]);
    free(converted);
    return st;
}
