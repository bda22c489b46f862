/* safetensors.h — reading Hugging Face safetensors checkpoints: one file or shards listed by
 * model.safetensors.index.json, all memory-mapped. Headers are validated against file sizes. Base only. */
#ifndef TANDEM_SAFETENSORS_H
#define TANDEM_SAFETENSORS_H

#include "tandem_base.h"

typedef struct st_tensor {
    char *name;          /* owned, e.g. "model.layers.0.self_attn.q_proj.weight" */
    char dtype[8];       /* as written: "F32", "F16", "BF16", "I64", … */
    int32_t type;        /* TANDEM_TYPE_F32/F16/BF16, or -1 for a dtype tandem cannot run */
    int32_t n_dims;      /* 0..8 */
    int64_t shape[8];    /* outermost first (PyTorch order) */
    uint64_t nbytes;
    const void *data;    /* in the shard's map */
    int32_t shard;       /* index into st_set.shards */
} st_tensor;

typedef struct st_set {
    int32_t n_shards;
    mapped_file *shards;
    int64_t n_tensors;
    st_tensor *tensors;
} st_set;

/* The two ways a Hugging Face folder holds its weights (src/model/checkpoint.c resolves the folder). */
#define ST_SINGLE_NAME "model.safetensors"
#define ST_INDEX_NAME "model.safetensors.index.json"

/* A folder: model.safetensors, or model.safetensors.index.json and every shard its weight_map names
 * (each tensor must be in the shard the index says; a missing shard is an error naming it). */
tandem_status safetensors_open_dir(const char *dir, st_set **out);
/* The shards index_path (an index in dir) lists, as safetensors_open_dir does. */
tandem_status safetensors_open_index(const char *dir, const char *index_path, st_set **out);
/* One file. */
tandem_status safetensors_open_file(const char *path, st_set **out);
void safetensors_close(st_set *s);  /* accepts NULL */
const st_tensor *safetensors_find(const st_set *s, const char *name);

#endif
