/* fuzz_safetensors_index.c — sharded checkpoints: the input is model.safetensors.index.json, optionally
 * followed by FUZZ_SEP and the shard model-00001-of-00002.safetensors, and again by FUZZ_SEP and
 * model-00002-of-00002.safetensors; the parts go into a scratch folder and safetensors_open_dir reads it. A set
 * that opens must keep the index's promise: every tensor the weight_map names is found, in the shard it names.
 * Seeds: tiny two-shard checkpoints and the golden sharded index. */
#include <jansson.h>

#include "fuzz_common.h"
#include "safetensors.h"

#define FUZZ_SEP "\n#--8<--#\n"

static const char *const SHARDS[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char dir[512], path[512], name[128];
    const uint8_t *part[3] = {data, NULL, NULL};
    size_t len[3] = {size, 0, 0};
    fuzz_split(data, size, FUZZ_SEP, &len[0], &part[1], &len[1]);
    if (part[1]) fuzz_split(part[1], len[1], FUZZ_SEP, &len[1], &part[2], &len[2]);

    fuzz_path(dir, sizeof dir, "sharded");
    mkdir(dir, 0700);
    fuzz_write_file(path, sizeof path, "sharded/model.safetensors.index.json", part[0], len[0]);
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "sharded/%s", SHARDS[i]);
        if (part[i + 1]) fuzz_write_file(path, sizeof path, name, part[i + 1], len[i + 1]);
        else fuzz_unlink(name);
    }

    st_set *s = NULL;
    fuzz_clear_error();
    tandem_status st = safetensors_open_dir(dir, &s);
    fuzz_check_failure(st);
    if (st != TANDEM_OK) {
        FUZZ_CHECK(s == NULL);
        return 0;
    }
    FUZZ_CHECK(s->n_shards >= 1 && s->n_shards <= 2);
    for (int64_t i = 0; i < s->n_tensors; i++) {
        const st_tensor *t = &s->tensors[i];
        FUZZ_CHECK(t->shard >= 0 && t->shard < s->n_shards);
        if (i > 0) FUZZ_CHECK(strcmp(s->tensors[i - 1].name, t->name) < 0);
        FUZZ_CHECK(safetensors_find(s, t->name) == t);
        const mapped_file *mf = &s->shards[t->shard];
        const uint8_t *p = t->data;
        FUZZ_CHECK(p >= mf->data + 8 && t->nbytes <= mf->size && p + t->nbytes <= mf->data + mf->size);
        if (t->nbytes) fuzz_touch(p + t->nbytes - 1, 1);
    }
    /* The index's promise, checked with an independent parse of the index. */
    json_error_t err;
    json_t *index = json_loadb((const char *)part[0], len[0], JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    /* (jansson reading a buffer may differ from reading the file on odd bytes such as a raw NUL: then skip) */
    const char *tensor;
    json_t *shard;
    json_object_foreach(json_object_get(index, "weight_map"), tensor, shard) {
        const st_tensor *t = safetensors_find(s, tensor);
        FUZZ_CHECK(t != NULL && json_is_string(shard));
        const char *file = strrchr(s->shards[t->shard].path, '/');
        FUZZ_CHECK(file && strcmp(file + 1, json_string_value(shard)) == 0);
    }
    json_decref(index);
    safetensors_close(s);
    return 0;
}
