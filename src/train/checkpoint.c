/* checkpoint.c — training checkpoints: parameters, Adam moments, step, RNG state and data position in one
 * little-endian file, written to a temporary file and renamed so an interrupted write never replaces a good one.
 *
 * Layout: "TDMTRCK1" | u32 version 1 | i32 n_layers, dim, ffn_dim, n_heads, n_kv_heads, head_dim, vocab_size, tied
 *         | u64 n_params | i64 step | u64 rng_state | i64 data_pos | u64 run_hash | f32 params, adam_m, adam_v */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train.h"

static const char MAGIC[8] = {'T', 'D', 'M', 'T', 'R', 'C', 'K', '1'};
enum { CHECKPOINT_VERSION = 1 };

typedef struct checkpoint_header {
    char magic[8];
    uint32_t version;
    int32_t dims[8];
    uint64_t n_params;
    int64_t step;
    uint64_t rng_state;
    int64_t data_pos;
    uint64_t run_hash;
} checkpoint_header;

static void config_dims(const qwen3_config *c, int32_t dims[8]) {
    const int32_t d[8] = {c->n_layers, c->dim, c->ffn_dim, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size,
                          c->tied_embeddings};
    memcpy(dims, d, sizeof d);
}

tandem_status train_checkpoint_save(const train_model *m, const train_progress *p, const char *path) {
    checkpoint_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, MAGIC, sizeof MAGIC);
    h.version = CHECKPOINT_VERSION;
    config_dims(&m->cfg, h.dims);
    h.n_params = m->n_params;
    h.step = p->step;
    h.rng_state = p->rng_state;
    h.data_pos = p->data_pos;
    h.run_hash = p->run_hash;

    int fd;
    char *tmp;
    tandem_status st = tandem_temp_file_create(path, &fd, &tmp);
    if (st) return st;
    FILE *f = fdopen(fd, "wb");
    int err = 0;
    if (!f) {
        err = errno;
        close(fd);
    } else {
        const float *blocks[3] = {m->params, m->adam_m, m->adam_v};
        if (fwrite(&h, sizeof h, 1, f) != 1) err = errno ? errno : EIO;
        for (int i = 0; i < 3 && !err; i++)
            if (fwrite(blocks[i], sizeof(float), m->n_params, f) != m->n_params) err = errno ? errno : EIO;
        if (!err && fflush(f) != 0) err = errno ? errno : EIO;
        if (!err && fsync(fileno(f)) != 0 && errno != EINVAL) err = errno;
        if (fclose(f) != 0 && !err) err = errno ? errno : EIO;
    }
    if (!err && rename(tmp, path) != 0) err = errno;
    if (err) {
        unlink(tmp);
        st = tandem_fail(TANDEM_ERR_IO, "%s: cannot write checkpoint: %s", path, strerror(err));
    }
    free(tmp);
    return st;
}

tandem_status train_checkpoint_load(train_model *m, train_progress *p, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return tandem_fail(TANDEM_ERR_IO, "%s: cannot open checkpoint: %s", path, strerror(errno));
    tandem_status st = TANDEM_OK;
    checkpoint_header h;
    int32_t dims[8];
    config_dims(&m->cfg, dims);
    static const char *const DIM_NAMES[8] = {"num_hidden_layers", "hidden_size", "intermediate_size",
                                             "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
                                             "tie_word_embeddings"};
    if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, MAGIC, sizeof MAGIC) != 0) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: not a tandem training checkpoint", path);
        goto done;
    }
    if (h.version != CHECKPOINT_VERSION) {
        st = tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: checkpoint version %u is not supported", path, h.version);
        goto done;
    }
    for (int i = 0; i < 8; i++)
        if (h.dims[i] != dims[i]) {
            st = tandem_fail(TANDEM_ERR_MISMATCH, "%s: %s is %d in the checkpoint but %d in the config", path,
                             DIM_NAMES[i], h.dims[i], dims[i]);
            goto done;
        }
    if (h.n_params != m->n_params || h.step < 0 || h.data_pos < 0) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: checkpoint header is inconsistent", path);
        goto done;
    }
    float *blocks[3] = {m->params, m->adam_m, m->adam_v};
    for (int i = 0; i < 3; i++)
        if (fread(blocks[i], sizeof(float), m->n_params, f) != m->n_params) {
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s: checkpoint is truncated", path);
            goto done;
        }
    p->step = h.step;
    p->rng_state = h.rng_state;
    p->data_pos = h.data_pos;
    p->run_hash = h.run_hash;
done:
    fclose(f);
    return st;
}
