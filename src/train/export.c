/* export.c — writes a trained model as a Qwen3 GGUF that tandem (config.c, weights.c, the tokenizer) and
 * llama.cpp load: llama.cpp tensor names and qwen3.* metadata, plus the tokenizer carried over from its source. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "tokenizer.h"
#include "train.h"


/* The storage type of one tensor. Norm vectors stay F32 (weights.c converts them to f32 anyway); matrices take the
 * requested type. This is the hook for the converter's per-tensor rules (e.g. Q4_K_M keeping some tensors at
 * higher precision): a matrix whose row is not whole blocks of `requested` falls back to F16. */
static tandem_type export_tensor_type(const train_tensor *t, tandem_type requested) {
    if (t->n_dims == 1) return TANDEM_TYPE_F32;
    if (t->shape[1] % tandem_type_block_size(requested) != 0) return TANDEM_TYPE_F16;
    return requested;
}

uint32_t train_gguf_file_type(tandem_type t) {
    /* general.file_type (llama.cpp LlamaFileType): train writes every matrix in one type, so the K-quants get the
     * labels convert gives its pure K-quant files (Q3_K/Q4_K/Q5_K as the _S mixes), not the _M ones */
    switch (t) {
    case TANDEM_TYPE_F32: return TANDEM_FTYPE_F32;
    case TANDEM_TYPE_F16: return TANDEM_FTYPE_F16;
    case TANDEM_TYPE_BF16: return TANDEM_FTYPE_BF16;
    case TANDEM_TYPE_Q4_0: return TANDEM_FTYPE_Q4_0;
    case TANDEM_TYPE_Q4_1: return TANDEM_FTYPE_Q4_1;
    case TANDEM_TYPE_Q8_0: return TANDEM_FTYPE_Q8_0;
    case TANDEM_TYPE_Q5_0: return TANDEM_FTYPE_Q5_0;
    case TANDEM_TYPE_Q5_1: return TANDEM_FTYPE_Q5_1;
    case TANDEM_TYPE_IQ4_NL: return TANDEM_FTYPE_IQ4_NL;
    case TANDEM_TYPE_Q2_K: return TANDEM_FTYPE_Q2_K;
    case TANDEM_TYPE_Q3_K: return TANDEM_FTYPE_Q3_K;
    case TANDEM_TYPE_Q4_K: return TANDEM_FTYPE_Q4_K;
    case TANDEM_TYPE_Q5_K: return TANDEM_FTYPE_Q5_K;
    case TANDEM_TYPE_Q6_K: return TANDEM_FTYPE_Q6_K;
    default: return TANDEM_FTYPE_F32;
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

tandem_status train_write_tokenizer(gguf_writer *w, const char *source, int32_t vocab_size) {
    return path_is_dir(source) || strstr(source, ".json") ? tokenizer_write_gguf_keys(w, source, NULL, vocab_size, NULL)
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
