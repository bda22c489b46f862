/* safetensors.c — reading Hugging Face safetensors: one file, or the shards an index's weight_map names.
 * Owns the header checks (length, JSON, dtypes, shapes, offsets, overlaps) and the lookup by name. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "safetensors.h"

#define ST_MAX_HEADER_BYTES (100ull * 1000 * 1000)  /* the reference implementation's cap */
#define ST_MAX_DIMS 8

typedef unsigned long long ull;
typedef long long ll;

typedef struct st_dtype {
    const char *name;
    uint32_t size;  /* bytes per element */
    int32_t type;   /* tandem type, or -1 when tandem cannot compute with it */
} st_dtype;

/* Every dtype whose element size is fixed; a tensor of any of these can be listed and bounds-checked
 * even when tandem cannot run it (e.g. I64 position ids some checkpoints carry). */
static const st_dtype dtypes[] = {
    {"F64", 8, -1}, {"F32", 4, TANDEM_TYPE_F32}, {"F16", 2, TANDEM_TYPE_F16}, {"BF16", 2, TANDEM_TYPE_BF16},
    {"I64", 8, -1}, {"I32", 4, -1}, {"I16", 2, -1}, {"I8", 1, -1}, {"U64", 8, -1}, {"U32", 4, -1},
    {"U16", 2, -1}, {"U8", 1, -1}, {"BOOL", 1, -1}, {"F8_E4M3", 1, -1}, {"F8_E5M2", 1, -1},
};

static const st_dtype *find_dtype(const char *name) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, name) == 0) return &dtypes[i];
    return NULL;
}

/* Appends to s->tensors, growing it geometrically. */
static tandem_status push_tensor(st_set *s, int64_t *cap, const st_tensor *t, const char *path) {
    if (s->n_tensors == *cap) {
        int64_t new_cap = *cap ? 2 * *cap : 64;
        st_tensor *grown = realloc(s->tensors, (size_t)new_cap * sizeof *grown);
        if (!grown) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
        s->tensors = grown;
        *cap = new_cap;
    }
    s->tensors[s->n_tensors++] = *t;
    return TANDEM_OK;
}

/* A non-negative JSON integer; jansson has already rejected integers beyond int64. */
static bool json_nonneg_int(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Fills t from one header entry. The data pointer is set later, once the data section is known. */
static tandem_status parse_entry(const char *path, const char *name, json_t *entry, uint64_t data_size,
                                 st_tensor *t, uint64_t *begin) {
    if (!json_is_object(entry))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s': header entry is not a JSON object", path, name);
    const char *dtype_name = json_string_value(json_object_get(entry, "dtype"));
    if (!dtype_name)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    const st_dtype *dtype = find_dtype(dtype_name);
    if (!dtype)
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: tensor '%s': unknown dtype '%.32s'", path, name, dtype_name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype->name);
    t->type = dtype->type;

    json_t *shape = json_object_get(entry, "shape");
    if (!json_is_array(shape) || json_array_size(shape) > ST_MAX_DIMS)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s': \"shape\" must be an array of at most %d sizes", path,
                           name, ST_MAX_DIMS);
    t->n_dims = (int32_t)json_array_size(shape);
    uint64_t numel = 1;
    for (int32_t d = 0; d < t->n_dims; d++) {
        uint64_t dim;
        if (!json_nonneg_int(json_array_get(shape, (size_t)d), &dim))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", path,
                               name, d);
        if (!size_mul_ok(numel, dim, &numel) || numel > INT64_MAX)
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s': element count overflows", path, name);
        t->shape[d] = (int64_t)dim;
    }
    if (!size_mul_ok(numel, dtype->size, &t->nbytes))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s': byte size overflows", path, name);

    json_t *offsets = json_object_get(entry, "data_offsets");
    uint64_t end;
    if (!json_is_array(offsets) || json_array_size(offsets) != 2 ||
        !json_nonneg_int(json_array_get(offsets, 0), begin) || !json_nonneg_int(json_array_get(offsets, 1), &end))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be [begin, end] (non-negative)",
                           path, name);
    if (*begin > end)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path,
                           name, (ull)*begin, (ull)end);
    if (end > data_size)
        return tandem_fail(TANDEM_ERR_FORMAT,
                           "%s: tensor '%s': data_offsets end %llu is past the end of the data (%llu bytes)", path, name,
                           (ull)end, (ull)data_size);
    if (end - *begin != t->nbytes)
        return tandem_fail(TANDEM_ERR_FORMAT,
                           "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but %s with %llu elements needs %llu",
                           path, name, (ull)*begin, (ull)end, (ull)(end - *begin), dtype->name, (ull)numel,
                           (ull)t->nbytes);
    return TANDEM_OK;
}

typedef struct byte_range {
    uint64_t begin, end;
    int64_t index;  /* into st_set.tensors */
} byte_range;

static int compare_ranges(const void *a, const void *b) {
    const byte_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Non-empty ranges must be disjoint (empty tensors own no bytes, so they overlap nothing). */
static tandem_status check_overlaps(const st_set *s, int64_t first, const char *path) {
    tandem_status st = TANDEM_OK;
    int64_t n = 0;
    byte_range *ranges = malloc((size_t)(s->n_tensors - first + 1) * sizeof *ranges);
    if (!ranges) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
    for (int64_t i = first; i < s->n_tensors; i++) {
        const st_tensor *t = &s->tensors[i];
        if (t->nbytes == 0) continue;
        uint64_t begin = (uint64_t)((const uint8_t *)t->data - s->shards[t->shard].data);
        ranges[n++] = (byte_range){begin, begin + t->nbytes, i};
    }
    qsort(ranges, (size_t)n, sizeof *ranges, compare_ranges);
    for (int64_t i = 1; i < n; i++) {
        if (ranges[i].begin < ranges[i - 1].end) {
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s: tensors '%s' and '%s' have overlapping data ranges", path,
                             s->tensors[ranges[i - 1].index].name, s->tensors[ranges[i].index].name);
            break;
        }
    }
    free(ranges);
    return st;
}

/* Maps one file into s->shards[shard] and appends its tensors to s. */
static tandem_status read_shard(st_set *s, int32_t shard, const char *path, int64_t *cap) {
    mapped_file *mf = &s->shards[shard];
    json_t *header = NULL;
    int64_t first = s->n_tensors;
    uint64_t header_len;
    tandem_status st = mapped_file_open(path, mf);
    if (st != TANDEM_OK) goto done;
    if (mf->size < 8) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: file is %llu bytes, too small for a safetensors header", path,
                         (ull)mf->size);
        goto done;
    }
    memcpy(&header_len, mf->data, 8);  /* little-endian, like the host (asserted in gguf.c) */
    if (header_len > ST_MAX_HEADER_BYTES) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: header length %llu exceeds the 100 MB limit", path, (ull)header_len);
        goto done;
    }
    if (header_len > mf->size - 8) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%llu bytes)", path,
                         (ull)header_len, (ull)mf->size);
        goto done;
    }
    json_error_t err;
    header = json_loadb((const char *)mf->data + 8, (size_t)header_len, JSON_REJECT_DUPLICATES, &err);
    if (!header) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: invalid JSON header: line %d column %d: %s", path, err.line,
                         err.column, err.text);
        goto done;
    }
    if (!json_is_object(header)) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto done;
    }
    const uint8_t *data = mf->data + 8 + header_len;
    uint64_t data_size = mf->size - 8 - header_len;
    const char *name;
    json_t *entry;
    json_object_foreach(header, name, entry) {
        if (strcmp(name, "__metadata__") == 0) continue;
        st_tensor t = {.shard = shard};
        uint64_t begin = 0;
        st = parse_entry(path, name, entry, data_size, &t, &begin);
        if (st != TANDEM_OK) goto done;
        t.data = data + begin;
        t.name = strdup(name);
        if (!t.name) {
            st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
            goto done;
        }
        st = push_tensor(s, cap, &t, path);
        if (st != TANDEM_OK) {
            free(t.name);
            goto done;
        }
    }
    st = check_overlaps(s, first, path);
done:
    json_decref(header);
    return st;
}

static int compare_tensor_names(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

/* Sorted by name for bsearch; a name in two shards is ambiguous and rejected. */
static tandem_status index_tensors(st_set *s, const char *where) {
    if (s->n_tensors > 1) qsort(s->tensors, (size_t)s->n_tensors, sizeof *s->tensors, compare_tensor_names);
    for (int64_t i = 1; i < s->n_tensors; i++) {
        const st_tensor *a = &s->tensors[i - 1], *b = &s->tensors[i];
        if (strcmp(a->name, b->name) == 0)
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s' appears in both %s and %s", where, a->name,
                               s->shards[a->shard].path, s->shards[b->shard].path);
    }
    return TANDEM_OK;
}

static st_set *new_set(int32_t n_shards) {
    st_set *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->shards = calloc((size_t)n_shards, sizeof *s->shards);
    if (!s->shards) {
        free(s);
        return NULL;
    }
    s->n_shards = n_shards;
    return s;
}

tandem_status safetensors_open_file(const char *path, st_set **out) {
    *out = NULL;
    int64_t cap = 0;
    st_set *s = new_set(1);
    if (!s) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
    tandem_status st = read_shard(s, 0, path, &cap);
    if (st == TANDEM_OK) st = index_tensors(s, path);
    if (st != TANDEM_OK) {
        safetensors_close(s);
        return st;
    }
    *out = s;
    return TANDEM_OK;
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The distinct shard names of a weight_map, sorted (so shards load in their numbered order). Borrowed
 * from the JSON. */
static tandem_status list_shards(const char *index_path, json_t *weight_map, const char ***out, int32_t *n_out) {
    size_t n = 0;
    const char **names = malloc((json_object_size(weight_map) + 1) * sizeof *names);
    if (!names) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", index_path);
    const char *tensor;
    json_t *shard;
    json_object_foreach(weight_map, tensor, shard) {
        const char *file = json_string_value(shard);
        /* Shards live in the folder itself; a path would let an index point anywhere on disk. */
        if (!file || !file[0] || strchr(file, '/')) {
            free(names);
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: weight_map: tensor '%s': shard must be a file name in the folder",
                               index_path, tensor);
        }
        names[n++] = file;
    }
    qsort(names, n, sizeof *names, compare_strings);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++)
        if (distinct == 0 || strcmp(names[distinct - 1], names[i]) != 0) names[distinct++] = names[i];
    *out = names;
    *n_out = (int32_t)distinct;
    return TANDEM_OK;
}

tandem_status safetensors_open_index(const char *dir, const char *index_path, st_set **out) {
    json_t *index = NULL;
    const char **shard_names = NULL;
    int32_t n_shards = 0;
    int64_t cap = 0;
    st_set *s = NULL;
    tandem_status st = json_load_path(index_path, &index);
    if (st != TANDEM_OK) goto done;
    json_t *weight_map = json_object_get(index, "weight_map");
    if (!json_is_object(weight_map) || json_object_size(weight_map) == 0) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: missing or empty \"weight_map\" object", index_path);
        goto done;
    }
    st = list_shards(index_path, weight_map, &shard_names, &n_shards);
    if (st != TANDEM_OK) goto done;
    s = new_set(n_shards);
    if (!s) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", index_path);
        goto done;
    }
    for (int32_t i = 0; i < n_shards && st == TANDEM_OK; i++) {
        char *shard_path = path_join(dir, shard_names[i]);
        if (!shard_path)
            st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", index_path);
        else if (!path_exists(shard_path))
            st = tandem_fail(TANDEM_ERR_IO, "%s: shard '%s' listed in %s is missing", dir, shard_names[i], index_path);
        else
            st = read_shard(s, i, shard_path, &cap);
        free(shard_path);
    }
    if (st == TANDEM_OK) st = index_tensors(s, index_path);
    if (st != TANDEM_OK) goto done;

    /* The index is a promise about where each tensor lives; a tensor it names must be in that shard. */
    const char *tensor;
    json_t *shard;
    json_object_foreach(weight_map, tensor, shard) {
        const char *file = json_string_value(shard);
        const st_tensor *t = safetensors_find(s, tensor);
        if (!t) {
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s' is listed for shard '%s' but no shard contains it",
                             index_path, tensor, file);
            goto done;
        }
        if (strcmp(shard_names[t->shard], file) != 0) {
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor '%s' is listed for shard '%s' but is in '%s'",
                             index_path, tensor, file, shard_names[t->shard]);
            goto done;
        }
    }
done:
    free(shard_names);  /* before the JSON: the names are borrowed from it */
    json_decref(index);
    if (st != TANDEM_OK) {
        safetensors_close(s);
        s = NULL;
    }
    *out = s;
    return st;
}

tandem_status safetensors_open_dir(const char *dir, st_set **out) {
    *out = NULL;
    tandem_status st;
    if (!path_is_dir(dir)) return tandem_fail(TANDEM_ERR_IO, "%s: not a folder", dir);
    char *index_path = path_join(dir, ST_INDEX_NAME), *single_path = path_join(dir, ST_SINGLE_NAME);
    if (!index_path || !single_path)
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", dir);
    else if (path_exists(index_path)) st = safetensors_open_index(dir, index_path, out);
    else if (path_exists(single_path))
        st = safetensors_open_file(single_path, out);
    else
        st = tandem_fail(TANDEM_ERR_IO, "%s: no %s or %s in this folder", dir, ST_SINGLE_NAME, ST_INDEX_NAME);
    free(index_path);
    free(single_path);
    return st;
}

void safetensors_close(st_set *s) {
    if (!s) return;
    for (int64_t i = 0; i < s->n_tensors; i++) free(s->tensors[i].name);
    free(s->tensors);
    for (int32_t i = 0; s->shards && i < s->n_shards; i++) mapped_file_close(&s->shards[i]);
    free(s->shards);
    free(s);
}

const st_tensor *safetensors_find(const st_set *s, const char *name) {
    st_tensor key = {.name = (char *)name};
    if (s->n_tensors == 0) return NULL;  /* tensors may be NULL then, which bsearch must not see */
    return bsearch(&key, s->tensors, (size_t)s->n_tensors, sizeof *s->tensors, compare_tensor_names);
}
