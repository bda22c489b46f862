/* fuzz_safetensors.c — safetensors reader: bytes -> scratch file -> safetensors_open_file -> every tensor
 * checked against the header rules (known dtype, size = product of the shape, data inside the file, sorted
 * unique names that safetensors_find returns). Seeds: small real checkpoints and hand-made headers. */
#include "fuzz_common.h"
#include "safetensors.h"

static uint32_t dtype_size(const char *dtype) {
    static const struct { const char *name; uint32_t size; } table[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
        {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].name, dtype) == 0) return table[i].size;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_write_file(path, sizeof path, "model.safetensors", data, size);
    st_set *s = NULL;
    fuzz_clear_error();
    tandem_status st = safetensors_open_file(path, &s);
    fuzz_check_failure(st);
    if (st != TANDEM_OK) {
        FUZZ_CHECK(s == NULL);
        return 0;
    }
    FUZZ_CHECK(s->n_shards == 1 && s->shards[0].size == size && size >= 8);
    uint64_t header_len;
    memcpy(&header_len, data, 8);
    const uint8_t *base = s->shards[0].data, *data_begin = base + 8 + header_len, *end = base + size;
    for (int64_t i = 0; i < s->n_tensors; i++) {
        const st_tensor *t = &s->tensors[i];
        FUZZ_CHECK(t->name != NULL && t->shard == 0);
        if (i > 0) FUZZ_CHECK(strcmp(s->tensors[i - 1].name, t->name) < 0);  /* sorted, unique */
        FUZZ_CHECK(safetensors_find(s, t->name) == t);
        FUZZ_CHECK(memchr(t->dtype, 0, sizeof t->dtype) != NULL);
        uint32_t esize = dtype_size(t->dtype);
        FUZZ_CHECK(esize != 0);
        FUZZ_CHECK(t->type == -1 || t->type == TANDEM_TYPE_F32 || t->type == TANDEM_TYPE_F16 ||
                   t->type == TANDEM_TYPE_BF16);
        FUZZ_CHECK(t->n_dims >= 0 && t->n_dims <= 8);
        uint64_t n = esize;
        for (int d = 0; d < t->n_dims; d++) {
            FUZZ_CHECK(t->shape[d] >= 0);
            FUZZ_CHECK(size_mul_ok(n, (uint64_t)t->shape[d], &n));
        }
        FUZZ_CHECK(n == t->nbytes);
        const uint8_t *p = t->data;
        FUZZ_CHECK(p >= data_begin && p <= end && t->nbytes <= (uint64_t)(end - p));
        if (t->nbytes) {
            fuzz_touch(p, 1);
            fuzz_touch(p + t->nbytes - 1, 1);
        }
    }
    FUZZ_CHECK(safetensors_find(s, "tandem.fuzz.no.such.tensor") == NULL ||
               strcmp(safetensors_find(s, "tandem.fuzz.no.such.tensor")->name, "tandem.fuzz.no.such.tensor") == 0);
    safetensors_close(s);
    return 0;
}
