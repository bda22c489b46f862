/* gguf.c — the GGUF reader (memory-mapped, every field validated before use) and the GGUF writer.
 * A file that gguf_open accepts has in-bounds, aligned, non-overlapping tensors of known types. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"

/* Tensor data and packed arrays are used in place from the map, so the host must share the files'
 * byte order; big-endian hosts would need a converting loader, which tandem does not have. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "tandem reads little-endian GGUF files in place");

#define GGUF_HEADER_BYTES 24        /* magic, version, tensor count, kv count */
#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_NAME 64            /* ggml's GGML_MAX_NAME, which counts the NUL */
#define GGUF_MAX_DIMS 4
#define GGUF_N_VALUE_TYPES 13
/* Lower bounds on one record's size, used to reject absurd counts before allocating for them: a kv
 * needs a key length (8), a value type (4) and at least one value byte; a tensor info needs a name
 * length (8), n_dims (4), one ne (8) and a type (4). */
#define GGUF_MIN_KV_BYTES 13
#define GGUF_MIN_TENSOR_INFO_BYTES 24

/* Payload bytes of each scalar value type; 0 for STRING and ARRAY, whose size is variable. */
static const uint8_t value_type_size[GGUF_N_VALUE_TYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const value_type_names[GGUF_N_VALUE_TYPES] = {
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
    "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64",
};

static const char *value_type_name(uint32_t t) { return t < GGUF_N_VALUE_TYPES ? value_type_names[t] : "?"; }

static bool is_power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

typedef unsigned long long ull;  /* for printf: uint64_t is `unsigned long` on some targets */
typedef long long ll;

/* ======================================================================================== reader */

/* A read position in the map. Invariant: pos <= size, so size - pos never wraps. */
typedef struct cursor {
    const char *path;
    const uint8_t *data;
    uint64_t size;
    uint64_t pos;
} cursor;

static uint64_t cursor_left(const cursor *c) { return c->size - c->pos; }

/* what names the field being read, e.g. "key 'general.name'" or "tensor #3 name length". */
static tandem_status cursor_read(cursor *c, void *dst, uint64_t n, const char *what) {
    if (n > cursor_left(c))
        return tandem_fail(TANDEM_ERR_FORMAT,
                           "%s: %s: needs %llu bytes at offset %llu but the file ends at %llu (truncated?)",
                           c->path, what, (ull)n, (ull)c->pos, (ull)c->size);
    memcpy(dst, c->data + c->pos, (size_t)n);
    c->pos += n;
    return TANDEM_OK;
}

static tandem_status cursor_u32(cursor *c, uint32_t *v, const char *what) { return cursor_read(c, v, 4, what); }
static tandem_status cursor_u64(cursor *c, uint64_t *v, const char *what) { return cursor_read(c, v, 8, what); }

/* A length-prefixed string; the bytes stay in the map. */
static tandem_status cursor_str(cursor *c, gguf_str *s, const char *what) {
    uint64_t len = 0;
    tandem_status st = cursor_u64(c, &len, what);
    if (st != TANDEM_OK) return st;
    if (len > cursor_left(c))
        return tandem_fail(TANDEM_ERR_FORMAT,
                           "%s: %s: string length %llu runs past the end of the file (%llu bytes left at offset %llu)",
                           c->path, what, (ull)len, (ull)cursor_left(c), (ull)c->pos);
    s->ptr = (const char *)(c->data + c->pos);
    s->len = len;
    c->pos += len;
    return TANDEM_OK;
}

/* Open-addressing set of C strings, used only while validating (unique keys and tensor names). */
typedef struct name_set {
    const char **slots;
    uint64_t mask;
} name_set;

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static bool name_set_init(name_set *set, uint64_t n) {
    uint64_t cap = 16;
    while (cap < 2 * n) cap *= 2;  /* n is bounded by the file size, so this cannot overflow */
    set->slots = calloc((size_t)cap, sizeof *set->slots);
    set->mask = cap - 1;
    return set->slots != NULL;
}

/* Returns false when name is already in the set. */
static bool name_set_insert(name_set *set, const char *name) {
    for (uint64_t i = fnv1a(name) & set->mask;; i = (i + 1) & set->mask) {
        if (!set->slots[i]) {
            set->slots[i] = name;
            return true;
        }
        if (strcmp(set->slots[i], name) == 0) return false;
    }
}

static void name_set_free(name_set *set) { free(set->slots); }

/* Copies a name out of the map; names with an embedded NUL would compare wrongly as C strings. */
static tandem_status copy_name(const cursor *c, gguf_str s, char **out, const char *what) {
    if (memchr(s.ptr, 0, (size_t)s.len))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s contains a NUL byte", c->path, what);
    char *p = malloc((size_t)s.len + 1);
    if (!p) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory reading %s", c->path, what);
    memcpy(p, s.ptr, (size_t)s.len);
    p[s.len] = '\0';
    *out = p;
    return TANDEM_OK;
}

/* Reads one scalar of a fixed-size type and widens it into kv->v. */
static tandem_status read_scalar(cursor *c, gguf_kv *kv, const char *what) {
    uint8_t raw[8] = {0};
    tandem_status st = cursor_read(c, raw, value_type_size[kv->type], what);
    if (st != TANDEM_OK) return st;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: kv->v.u64 = raw[0]; break;
    case GGUF_TYPE_BOOL: kv->v.u64 = raw[0] != 0; break;  /* the format: anything non-zero is true */
    case GGUF_TYPE_INT8: { int8_t x; memcpy(&x, raw, 1); kv->v.i64 = x; break; }
    case GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, raw, 2); kv->v.u64 = x; break; }
    case GGUF_TYPE_INT16: { int16_t x; memcpy(&x, raw, 2); kv->v.i64 = x; break; }
    case GGUF_TYPE_UINT32: { uint32_t x; memcpy(&x, raw, 4); kv->v.u64 = x; break; }
    case GGUF_TYPE_INT32: { int32_t x; memcpy(&x, raw, 4); kv->v.i64 = x; break; }
    case GGUF_TYPE_FLOAT32: { float x; memcpy(&x, raw, 4); kv->v.f64 = x; break; }
    case GGUF_TYPE_UINT64: memcpy(&kv->v.u64, raw, 8); break;
    case GGUF_TYPE_INT64: memcpy(&kv->v.i64, raw, 8); break;
    case GGUF_TYPE_FLOAT64: memcpy(&kv->v.f64, raw, 8); break;
    default: break;  /* STRING and ARRAY never reach here */
    }
    return TANDEM_OK;
}

static tandem_status read_array(cursor *c, gguf_kv *kv, const char *what) {
    uint32_t elem_type = 0;
    uint64_t n = 0;
    tandem_status st = cursor_u32(c, &elem_type, what);
    if (st == TANDEM_OK) st = cursor_u64(c, &n, what);
    if (st != TANDEM_OK) return st;
    if (elem_type >= GGUF_N_VALUE_TYPES)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: unknown array element type %u", c->path, what, elem_type);
    /* The spec allows arrays of arrays, but no model uses them and llama.cpp rejects them too. */
    if (elem_type == GGUF_TYPE_ARRAY)
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: %s: arrays of arrays are not supported", c->path, what);
    kv->array_type = (gguf_value_type)elem_type;
    /* Each string takes at least its 8-byte length, so count is checked against the bytes left before
     * the index of n strings is allocated. Division keeps the check free of overflow. */
    uint64_t min_elem_bytes = elem_type == GGUF_TYPE_STRING ? 8 : value_type_size[elem_type];
    if (n > cursor_left(c) / min_elem_bytes)
        return tandem_fail(TANDEM_ERR_FORMAT,
                           "%s: %s: array of %llu %s elements runs past the end of the file (%llu bytes left)",
                           c->path, what, (ull)n, value_type_name(elem_type), (ull)cursor_left(c));
    kv->n = n;
    if (elem_type != GGUF_TYPE_STRING) {
        kv->array_data = c->data + c->pos;
        c->pos += n * min_elem_bytes;
        return TANDEM_OK;
    }
    kv->array_data = c->data + c->pos;
    kv->strings = malloc(n ? (size_t)n * sizeof *kv->strings : 1);
    if (!kv->strings) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: %s: out of memory", c->path, what);
    for (uint64_t i = 0; i < n; i++) {
        /* Vocabularies hold ~150k strings: the element's description is formatted only when it fails. */
        uint64_t len;
        bool fits = cursor_left(c) >= 8;
        if (fits) {
            memcpy(&len, c->data + c->pos, 8);
            fits = len <= cursor_left(c) - 8;
        }
        if (!fits) {
            char elem_what[192];
            snprintf(elem_what, sizeof elem_what, "%s: element %llu", what, (ull)i);
            return cursor_str(c, &kv->strings[i], elem_what);  /* fails, and says why */
        }
        cursor_str(c, &kv->strings[i], what);
    }
    return TANDEM_OK;
}

static tandem_status read_kv(cursor *c, gguf_kv *kv, int64_t index, name_set *keys) {
    char what[160];
    gguf_str key = {0};
    uint32_t type = 0;
    snprintf(what, sizeof what, "kv #%lld key", (ll)index);
    tandem_status st = cursor_str(c, &key, what);
    if (st != TANDEM_OK) return st;
    if (key.len == 0) return tandem_fail(TANDEM_ERR_FORMAT, "%s: kv #%lld: empty key", c->path, (ll)index);
    st = copy_name(c, key, &kv->key, what);
    if (st != TANDEM_OK) return st;
    snprintf(what, sizeof what, "key '%.120s'", kv->key);
    if (!name_set_insert(keys, kv->key)) return tandem_fail(TANDEM_ERR_FORMAT, "%s: duplicate %s", c->path, what);
    st = cursor_u32(c, &type, what);
    if (st != TANDEM_OK) return st;
    if (type >= GGUF_N_VALUE_TYPES)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: unknown value type %u", c->path, what, type);
    kv->type = (gguf_value_type)type;
    if (type == GGUF_TYPE_STRING) return cursor_str(c, &kv->v.str, what);
    if (type == GGUF_TYPE_ARRAY) return read_array(c, kv, what);
    return read_scalar(c, kv, what);
}

/* general.alignment decides where the data section starts and which offsets are legal. */
static tandem_status read_alignment(const gguf_file *f, uint32_t *alignment) {
    const gguf_kv *kv = gguf_find_kv(f, "general.alignment");
    *alignment = GGUF_DEFAULT_ALIGNMENT;
    if (!kv) return TANDEM_OK;
    if (kv->type != GGUF_TYPE_UINT32)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: key 'general.alignment' has type %s, expected UINT32",
                           f->map.path, value_type_name(kv->type));
    if (!is_power_of_two(kv->v.u64))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: key 'general.alignment' is %llu, expected a non-zero power of two",
                           f->map.path, (ull)kv->v.u64);
    *alignment = (uint32_t)kv->v.u64;
    return TANDEM_OK;
}

static tandem_status read_tensor_info(cursor *c, gguf_tensor *t, int64_t index, uint32_t alignment,
                                      name_set *names) {
    char what[160];
    gguf_str name = {0};
    uint32_t n_dims = 0, type = 0;
    snprintf(what, sizeof what, "tensor #%lld name", (ll)index);
    tandem_status st = cursor_str(c, &name, what);
    if (st != TANDEM_OK) return st;
    if (name.len == 0) return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor #%lld: empty name", c->path, (ll)index);
    if (name.len >= GGUF_MAX_NAME)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor #%lld: name '%.40s...' is %llu bytes long (limit %d)",
                           c->path, (ll)index, name.ptr, (ull)name.len, GGUF_MAX_NAME - 1);
    st = copy_name(c, name, &t->name, what);
    if (st != TANDEM_OK) return st;
    snprintf(what, sizeof what, "tensor '%s'", t->name);
    if (!name_set_insert(names, t->name)) return tandem_fail(TANDEM_ERR_FORMAT, "%s: duplicate %s", c->path, what);

    st = cursor_u32(c, &n_dims, what);
    if (st != TANDEM_OK) return st;
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: n_dims is %u (must be 1 to %d)", c->path, what, n_dims,
                           GGUF_MAX_DIMS);
    t->n_dims = (int32_t)n_dims;
    int64_t n_elements = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= t->n_dims) continue;
        uint64_t raw = 0;
        st = cursor_u64(c, &raw, what);
        if (st != TANDEM_OK) return st;
        int64_t ne = (int64_t)raw;
        if (ne < 1)
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: ne[%d] is %lld (must be at least 1)", c->path, what, d, (ll)ne);
        if (__builtin_mul_overflow(n_elements, ne, &n_elements))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: element count overflows int64", c->path, what);
        t->ne[d] = ne;
    }

    st = cursor_u32(c, &type, what);
    if (st == TANDEM_OK) st = cursor_u64(c, &t->offset, what);
    if (st != TANDEM_OK) return st;
    if (type >= TANDEM_TYPE_COUNT)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: invalid tensor type id %u", c->path, what, type);
    /* An id below TANDEM_TYPE_COUNT is a real ggml type; tandem just has no size table for it. */
    if (!tandem_type_known((int32_t)type))
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: %s: tensor type id %u is not supported", c->path, what, type);
    t->type = (tandem_type)type;
    int32_t block = tandem_type_block_size(t->type);
    if (t->ne[0] % block != 0)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: ne[0] = %lld is not a multiple of the %s block size (%d)",
                           c->path, what, (ll)t->ne[0], tandem_type_name(t->type), block);
    uint64_t nbytes;
    bool size_ok = tandem_type_row_bytes(t->type, t->ne[0], &nbytes);
    for (int d = 1; d < GGUF_MAX_DIMS && size_ok; d++) size_ok = size_mul_ok(nbytes, (uint64_t)t->ne[d], &nbytes);
    if (!size_ok) return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: byte size overflows", c->path, what);
    t->nbytes = nbytes;
    if (t->offset % alignment != 0)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: offset %llu is not a multiple of the alignment (%u)", c->path,
                           what, (ull)t->offset, alignment);
    return TANDEM_OK;
}

typedef struct tensor_span {
    uint64_t begin, end;
    int64_t index;
} tensor_span;

static int compare_spans(const void *a, const void *b) {
    const tensor_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Bounds of every tensor against the file, then pairwise disjointness via a sort by offset. */
static tandem_status check_tensor_data(gguf_file *f) {
    tandem_status st = TANDEM_OK;
    tensor_span *spans = malloc(f->n_tensors ? (size_t)f->n_tensors * sizeof *spans : 1);
    if (!spans) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", f->map.path);
    for (int64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint64_t begin, end;
        if (!size_add_ok(f->data_start, t->offset, &begin) || !size_add_ok(begin, t->nbytes, &end) ||
            end > f->map.size) {
            st = tandem_fail(TANDEM_ERR_FORMAT,
                             "%s: tensor '%s': data [offset %llu, %llu bytes] runs past the end of the file (%llu bytes)",
                             f->map.path, t->name, (ull)t->offset, (ull)t->nbytes, (ull)f->map.size);
            goto done;
        }
        t->data = f->map.data + begin;
        spans[i] = (tensor_span){t->offset, t->offset + t->nbytes, i};
    }
    qsort(spans, (size_t)f->n_tensors, sizeof *spans, compare_spans);
    for (int64_t i = 1; i < f->n_tensors; i++) {
        if (spans[i].begin < spans[i - 1].end) {
            const gguf_tensor *a = &f->tensors[spans[i - 1].index], *b = &f->tensors[spans[i].index];
            st = tandem_fail(TANDEM_ERR_FORMAT,
                             "%s: tensors '%s' [offset %llu, %llu bytes] and '%s' [offset %llu, %llu bytes] overlap",
                             f->map.path, a->name, (ull)a->offset, (ull)a->nbytes, b->name, (ull)b->offset,
                             (ull)b->nbytes);
            goto done;
        }
    }
done:
    free(spans);
    return st;
}

static tandem_status parse_gguf(gguf_file *f) {
    cursor c = {f->map.path, f->map.data, f->map.size, 0};
    name_set keys = {0}, names = {0};
    tandem_status st = TANDEM_OK;
    uint64_t n_tensors = 0, n_kv = 0;

    if (c.size < GGUF_HEADER_BYTES) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: file is %llu bytes, too small for a GGUF header (%d bytes)", c.path,
                         (ull)c.size, GGUF_HEADER_BYTES);
        goto done;
    }
    if (memcmp(c.data, "GGUF", 4) != 0) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: not a GGUF file (magic %02x %02x %02x %02x, expected \"GGUF\")",
                         c.path, c.data[0], c.data[1], c.data[2], c.data[3]);
        goto done;
    }
    c.pos = 4;
    cursor_u32(&c, &f->version, "version");  /* cannot fail: the header size was checked */
    /* A big-endian file's version reads as 0x0N000000 here (the low half is zero), as llama.cpp notes. */
    if (f->version != 0 && (f->version & 0xFFFF) == 0) {
        st = tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: byte-swapped (big-endian) GGUF, only little-endian is supported",
                         c.path);
        goto done;
    }
    if (f->version != 2 && f->version != 3) {
        st = tandem_fail(f->version == 0 ? TANDEM_ERR_FORMAT : TANDEM_ERR_UNSUPPORTED,
                         "%s: GGUF version %u is not supported (only versions 2 and 3)", c.path, f->version);
        goto done;
    }
    cursor_u64(&c, &n_tensors, "tensor count");
    cursor_u64(&c, &n_kv, "kv count");
    /* Counts are checked against the bytes that could hold them before anything is allocated. */
    if (n_kv > cursor_left(&c) / GGUF_MIN_KV_BYTES) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: kv count %llu is impossible in a file of %llu bytes", c.path,
                         (ull)n_kv, (ull)c.size);
        goto done;
    }
    if (n_tensors > (cursor_left(&c) - n_kv * GGUF_MIN_KV_BYTES) / GGUF_MIN_TENSOR_INFO_BYTES) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: tensor count %llu is impossible in a file of %llu bytes", c.path,
                         (ull)n_tensors, (ull)c.size);
        goto done;
    }

    /* The arrays are zeroed and their counts set at once, so gguf_close can free a half-read file. */
    f->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *f->kv);
    f->tensors = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors || !name_set_init(&keys, n_kv) || !name_set_init(&names, n_tensors)) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory for %llu kvs and %llu tensors", c.path, (ull)n_kv,
                         (ull)n_tensors);
        goto done;
    }
    f->n_kv = (int64_t)n_kv;
    f->n_tensors = (int64_t)n_tensors;

    for (int64_t i = 0; i < f->n_kv && st == TANDEM_OK; i++) st = read_kv(&c, &f->kv[i], i, &keys);
    if (st == TANDEM_OK) st = read_alignment(f, &f->alignment);
    for (int64_t i = 0; i < f->n_tensors && st == TANDEM_OK; i++)
        st = read_tensor_info(&c, &f->tensors[i], i, f->alignment, &names);
    if (st != TANDEM_OK) goto done;

    /* The data section starts at the next multiple of the alignment; padding beyond the file's end is
     * only a problem if a tensor lies there, which check_tensor_data reports. */
    f->data_start = (c.pos + f->alignment - 1) / f->alignment * f->alignment;
    st = check_tensor_data(f);
done:
    name_set_free(&keys);
    name_set_free(&names);
    return st;
}

tandem_status gguf_open(const char *path, gguf_file **out) {
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
    tandem_status st = mapped_file_open(path, &f->map);
    if (st == TANDEM_OK) st = parse_gguf(f);
    if (st != TANDEM_OK) {
        gguf_close(f);
        return st;
    }
    *out = f;
    return TANDEM_OK;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    for (int64_t i = 0; f->kv && i < f->n_kv; i++) {
        free(f->kv[i].key);
        free(f->kv[i].strings);
    }
    for (int64_t i = 0; f->tensors && i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->kv);
    free(f->tensors);
    mapped_file_close(&f->map);
    free(f);
}

/* Linear scans: files hold tens of kvs and at most a few thousand tensors, looked up once at load. */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
    for (int64_t i = 0; i < f->n_kv; i++)
        if (strcmp(f->kv[i].key, key) == 0) return &f->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

static bool type_is_unsigned_int(gguf_value_type t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_UINT64;
}
static bool type_is_signed_int(gguf_value_type t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}

bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return false;
    if (type_is_unsigned_int(kv->type) && kv->v.u64 <= UINT32_MAX) {
        *out = (uint32_t)kv->v.u64;
        return true;
    }
    if (type_is_signed_int(kv->type) && kv->v.i64 >= 0 && kv->v.i64 <= (int64_t)UINT32_MAX) {
        *out = (uint32_t)kv->v.i64;
        return true;
    }
    return false;
}

bool gguf_get_f32(const gguf_file *f, const char *key, float *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || (kv->type != GGUF_TYPE_FLOAT32 && kv->type != GGUF_TYPE_FLOAT64)) return false;
    double v = kv->v.f64;
    /* A finite double beyond float's range would silently become infinity; NaN and infinities pass. */
    if (isfinite(v) && fabs(v) > FLT_MAX) return false;
    *out = (float)v;
    return true;
}

bool gguf_get_bool(const gguf_file *f, const char *key, bool *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->type != GGUF_TYPE_BOOL) return false;
    *out = kv->v.u64 != 0;
    return true;
}

bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->type != GGUF_TYPE_STRING) return false;
    *out = kv->v.str;
    return true;
}

/* A C cast truncates toward zero but is undefined for NaN and out-of-range values: those give 0 / saturate. */
static int64_t double_to_i64(double x) {
    if (x != x) return 0;
    if (x >= 9223372036854775808.0) return INT64_MAX;
    if (x < -9223372036854775808.0) return INT64_MIN;
    return (int64_t)x;
}

int64_t gguf_array_int(const gguf_kv *kv, uint64_t i) {
    const uint8_t *p = kv->array_data + i * value_type_size[kv->array_type < GGUF_N_VALUE_TYPES ? kv->array_type : 0];
    switch (kv->array_type) {
    case GGUF_TYPE_UINT8: return p[0];
    case GGUF_TYPE_BOOL: return p[0] != 0;
    case GGUF_TYPE_INT8: { int8_t x; memcpy(&x, p, 1); return x; }
    case GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, p, 2); return x; }
    case GGUF_TYPE_INT16: { int16_t x; memcpy(&x, p, 2); return x; }
    case GGUF_TYPE_UINT32: { uint32_t x; memcpy(&x, p, 4); return x; }
    case GGUF_TYPE_INT32: { int32_t x; memcpy(&x, p, 4); return x; }
    case GGUF_TYPE_UINT64: { uint64_t x; memcpy(&x, p, 8); return (int64_t)x; }
    case GGUF_TYPE_INT64: { int64_t x; memcpy(&x, p, 8); return x; }
    case GGUF_TYPE_FLOAT32: { float x; memcpy(&x, p, 4); return double_to_i64(x); }
    case GGUF_TYPE_FLOAT64: { double x; memcpy(&x, p, 8); return double_to_i64(x); }
    default: return 0;
    }
}

double gguf_array_float(const gguf_kv *kv, uint64_t i) {
    const uint8_t *p = kv->array_data + i * value_type_size[kv->array_type < GGUF_N_VALUE_TYPES ? kv->array_type : 0];
    if (kv->array_type == GGUF_TYPE_FLOAT32) {
        float x;
        memcpy(&x, p, 4);
        return x;
    }
    if (kv->array_type == GGUF_TYPE_FLOAT64) {
        double x;
        memcpy(&x, p, 8);
        return x;
    }
    if (kv->array_type == GGUF_TYPE_UINT64) {
        uint64_t x;
        memcpy(&x, p, 8);
        return (double)x;
    }
    return (double)gguf_array_int(kv, i);
}

/* ======================================================================================== writer */

static bool buf_u32(byte_buf *b, uint32_t v) { return byte_buf_append(b, &v, 4); }
static bool buf_u64(byte_buf *b, uint64_t v) { return byte_buf_append(b, &v, 8); }
static bool buf_str(byte_buf *b, const char *s, uint64_t len) { return buf_u64(b, len) && byte_buf_append(b, s, (size_t)len); }

/* A kv is kept serialized (value type + payload, exactly as it goes to the file), so copying a kv from
 * another file and writing it need no per-type code beyond the encoder. */
typedef struct writer_kv {
    char *key;
    byte_buf value;
} writer_kv;

typedef struct writer_tensor {
    char *name;
    tandem_type type;
    int32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes;
    const void *data;            /* or NULL, and then fill makes the bytes at write time: */
    gguf_tensor_fill fill;
    void *fill_user;
} writer_tensor;

struct gguf_writer {
    writer_kv *kvs;
    size_t n_kvs, cap_kvs;
    writer_tensor *tensors;
    size_t n_tensors, cap_tensors;
    gguf_write_progress progress;  /* may be NULL */
    void *progress_user;
};

void gguf_writer_set_progress(gguf_writer *w, gguf_write_progress fn, void *user) {
    w->progress = fn;
    w->progress_user = user;
}

tandem_status gguf_writer_init(gguf_writer **out) {
    *out = calloc(1, sizeof **out);
    return *out ? TANDEM_OK : tandem_fail(TANDEM_ERR_NO_MEMORY, "gguf writer: out of memory");
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kvs; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].value.data);
    }
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->kvs);
    free(w->tensors);
    free(w);
}

/* Takes ownership of value in every case. Setting a key twice replaces the value in place, so a file
 * being rewritten can copy every kv and then override a few. */
static tandem_status put_kv(gguf_writer *w, const char *key, byte_buf *value, bool encoded_ok) {
    tandem_status st = TANDEM_OK;
    if (!key || !key[0]) {
        st = tandem_fail(TANDEM_ERR_INVALID_ARG, "gguf writer: empty key");
        goto done;
    }
    if (!encoded_ok) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "gguf writer: key '%s': out of memory", key);
        goto done;
    }
    for (size_t i = 0; i < w->n_kvs; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            free(w->kvs[i].value.data);
            w->kvs[i].value = *value;
            *value = (byte_buf){0};
            goto done;
        }
    }
    if (w->n_kvs == w->cap_kvs) {
        size_t cap = w->cap_kvs ? 2 * w->cap_kvs : 16;
        writer_kv *grown = realloc(w->kvs, cap * sizeof *grown);
        if (!grown) {
            st = tandem_fail(TANDEM_ERR_NO_MEMORY, "gguf writer: key '%s': out of memory", key);
            goto done;
        }
        w->kvs = grown;
        w->cap_kvs = cap;
    }
    char *key_copy = strdup(key);
    if (!key_copy) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "gguf writer: key '%s': out of memory", key);
        goto done;
    }
    w->kvs[w->n_kvs++] = (writer_kv){key_copy, *value};
    *value = (byte_buf){0};
done:
    free(value->data);
    return st;
}

static tandem_status put_scalar(gguf_writer *w, const char *key, gguf_value_type type, const void *payload) {
    byte_buf b = {0};
    bool ok = buf_u32(&b, type) && byte_buf_append(&b, payload, value_type_size[type]);
    return put_kv(w, key, &b, ok);
}

tandem_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v) {
    return put_scalar(w, key, GGUF_TYPE_UINT32, &v);
}
tandem_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v) {
    return put_scalar(w, key, GGUF_TYPE_INT32, &v);
}
tandem_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v) {
    return put_scalar(w, key, GGUF_TYPE_FLOAT32, &v);
}
tandem_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v) {
    uint8_t byte = v ? 1 : 0;
    return put_scalar(w, key, GGUF_TYPE_BOOL, &byte);
}

tandem_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v, size_t len) {
    byte_buf b = {0};
    bool ok = buf_u32(&b, GGUF_TYPE_STRING) && buf_str(&b, v, len);
    return put_kv(w, key, &b, ok);
}

/* Fixed-size elements, packed; count * size is guarded so a huge n fails instead of wrapping. */
static tandem_status put_fixed_array(gguf_writer *w, const char *key, gguf_value_type elem_type, const void *v,
                                     size_t n) {
    byte_buf b = {0};
    uint64_t bytes;
    if (!size_mul_ok(n, value_type_size[elem_type], &bytes) || bytes > SIZE_MAX)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "gguf writer: key '%s': array of %zu elements is too large",
                           key ? key : "", n);
    bool ok = buf_u32(&b, GGUF_TYPE_ARRAY) && buf_u32(&b, elem_type) && buf_u64(&b, n) &&
              byte_buf_append(&b, v, (size_t)bytes);
    return put_kv(w, key, &b, ok);
}

tandem_status gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n) {
    return put_fixed_array(w, key, GGUF_TYPE_INT32, v, n);
}
tandem_status gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *v, size_t n) {
    return put_fixed_array(w, key, GGUF_TYPE_FLOAT32, v, n);
}
tandem_status gguf_writer_set_arr_bool(gguf_writer *w, const char *key, const bool *v, size_t n) {
    uint8_t *bytes = malloc(n ? n : 1); /* GGUF bools are one byte, 0 or 1, whatever sizeof(bool) is */
    if (!bytes) return tandem_fail(TANDEM_ERR_NO_MEMORY, "gguf writer: out of memory");
    for (size_t i = 0; i < n; i++) bytes[i] = v[i] ? 1 : 0;
    tandem_status st = put_fixed_array(w, key, GGUF_TYPE_BOOL, bytes, n);
    free(bytes);
    return st;
}

tandem_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const gguf_str *v, size_t n) {
    byte_buf b = {0};
    bool ok = buf_u32(&b, GGUF_TYPE_ARRAY) && buf_u32(&b, GGUF_TYPE_STRING) && buf_u64(&b, n);
    for (size_t i = 0; i < n && ok; i++) ok = buf_str(&b, v[i].ptr, v[i].len);
    return put_kv(w, key, &b, ok);
}

/* Narrows a widened scalar back to its stored width. */
static bool encode_scalar(byte_buf *b, const gguf_kv *kv) {
    uint8_t raw[8];
    switch (kv->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_BOOL: raw[0] = (uint8_t)kv->v.u64; break;
    case GGUF_TYPE_INT8: { int8_t x = (int8_t)kv->v.i64; memcpy(raw, &x, 1); break; }
    case GGUF_TYPE_UINT16: { uint16_t x = (uint16_t)kv->v.u64; memcpy(raw, &x, 2); break; }
    case GGUF_TYPE_INT16: { int16_t x = (int16_t)kv->v.i64; memcpy(raw, &x, 2); break; }
    case GGUF_TYPE_UINT32: { uint32_t x = (uint32_t)kv->v.u64; memcpy(raw, &x, 4); break; }
    case GGUF_TYPE_INT32: { int32_t x = (int32_t)kv->v.i64; memcpy(raw, &x, 4); break; }
    case GGUF_TYPE_FLOAT32: { float x = (float)kv->v.f64; memcpy(raw, &x, 4); break; }
    case GGUF_TYPE_UINT64: memcpy(raw, &kv->v.u64, 8); break;
    case GGUF_TYPE_INT64: memcpy(raw, &kv->v.i64, 8); break;
    case GGUF_TYPE_FLOAT64: memcpy(raw, &kv->v.f64, 8); break;
    default: return false;
    }
    return byte_buf_append(b, raw, value_type_size[kv->type]);
}

tandem_status gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv) {
    byte_buf b = {0};
    const char *key = kv->key ? kv->key : "";
    if ((unsigned)kv->type >= GGUF_N_VALUE_TYPES)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "gguf writer: key '%s': unknown value type %d", key, (int)kv->type);
    bool ok = buf_u32(&b, kv->type);
    if (kv->type == GGUF_TYPE_STRING) {
        ok = ok && buf_str(&b, kv->v.str.ptr, kv->v.str.len);
    } else if (kv->type != GGUF_TYPE_ARRAY) {
        ok = ok && encode_scalar(&b, kv);
    } else if (kv->array_type == GGUF_TYPE_STRING) {
        ok = ok && buf_u32(&b, GGUF_TYPE_STRING) && buf_u64(&b, kv->n);
        for (uint64_t i = 0; i < kv->n && ok; i++) ok = buf_str(&b, kv->strings[i].ptr, kv->strings[i].len);
    } else {
        uint64_t bytes;
        if ((unsigned)kv->array_type >= GGUF_N_VALUE_TYPES || kv->array_type == GGUF_TYPE_ARRAY ||
            !size_mul_ok(kv->n, value_type_size[kv->array_type], &bytes) || bytes > SIZE_MAX) {
            free(b.data);
            return tandem_fail(TANDEM_ERR_INVALID_ARG, "gguf writer: key '%s': cannot copy an array of type %d", key,
                               (int)kv->array_type);
        }
        ok = ok && buf_u32(&b, kv->array_type) && buf_u64(&b, kv->n) && byte_buf_append(&b, kv->array_data, (size_t)bytes);
    }
    return put_kv(w, kv->key, &b, ok);
}

static tandem_status add_tensor(gguf_writer *w, const char *name, tandem_type type, int32_t n_dims,
                                const int64_t *ne, const void *data, gguf_tensor_fill fill, void *fill_user) {
    const char *shown = name ? name : "";
    size_t name_len = name ? strlen(name) : 0;
    if (name_len == 0 || name_len >= GGUF_MAX_NAME)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "gguf writer: tensor '%s': name must be 1 to %d bytes", shown,
                           GGUF_MAX_NAME - 1);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "gguf writer: tensor '%s': n_dims is %d (must be 1 to %d)", name,
                           n_dims, GGUF_MAX_DIMS);
    if (!tandem_type_known((int32_t)type))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "gguf writer: tensor '%s': unknown type %d", name, (int)type);
    if (!data && !fill) return tandem_fail(TANDEM_ERR_INVALID_ARG, "gguf writer: tensor '%s': no data", name);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return tandem_fail(TANDEM_ERR_INVALID_ARG, "gguf writer: duplicate tensor '%s'", name);

    writer_tensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}, .data = data, .fill = fill,
                       .fill_user = fill_user};
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 1)
            return tandem_fail(TANDEM_ERR_INVALID_ARG, "gguf writer: tensor '%s': ne[%d] is %lld", name, d, (ll)ne[d]);
        t.ne[d] = ne[d];
    }
    bool size_ok = tandem_type_row_bytes(type, t.ne[0], &t.nbytes);
    for (int d = 1; d < GGUF_MAX_DIMS && size_ok; d++) size_ok = size_mul_ok(t.nbytes, (uint64_t)t.ne[d], &t.nbytes);
    if (!size_ok)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "gguf writer: tensor '%s': ne[0] = %lld is not a whole number of %s blocks, or the size overflows",
                           name, (ll)t.ne[0], tandem_type_name(type));
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        writer_tensor *grown = realloc(w->tensors, cap * sizeof *grown);
        if (!grown) return tandem_fail(TANDEM_ERR_NO_MEMORY, "gguf writer: tensor '%s': out of memory", name);
        w->tensors = grown;
        w->cap_tensors = cap;
    }
    t.name = strdup(name);
    if (!t.name) return tandem_fail(TANDEM_ERR_NO_MEMORY, "gguf writer: tensor '%s': out of memory", name);
    w->tensors[w->n_tensors++] = t;
    return TANDEM_OK;
}

tandem_status gguf_writer_add_tensor(gguf_writer *w, const char *name, tandem_type type, int32_t n_dims,
                                     const int64_t *ne, const void *data) {
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL);
}

tandem_status gguf_writer_add_tensor_fill(gguf_writer *w, const char *name, tandem_type type, int32_t n_dims,
                                          const int64_t *ne, gguf_tensor_fill fill, void *user) {
    if (!fill) return tandem_fail(TANDEM_ERR_INVALID_ARG, "gguf writer: tensor '%s': no fill function", name ? name : "");
    return add_tensor(w, name, type, n_dims, ne, NULL, fill, user);
}

/* The output stream: counts bytes (for padding) and remembers the first write error. */
typedef struct out_file {
    FILE *fp;
    uint64_t pos;
    int error;  /* errno of the first failure, 0 while all is well */
} out_file;

static void out_write(out_file *o, const void *p, size_t n) {
    if (o->error || n == 0) return;
    if (fwrite(p, 1, n, o->fp) != n) {
        o->error = errno ? errno : EIO;
        return;
    }
    o->pos += n;
}

static void out_pad(out_file *o, uint32_t alignment) {
    static const uint8_t zeros[256];
    uint64_t pad = (alignment - o->pos % alignment) % alignment;
    while (pad > 0 && !o->error) {
        size_t n = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        out_write(o, zeros, n);
        pad -= n;
    }
}

/* 32 like every writer, unless the caller set (or copied) general.alignment: then the file must honour it. */
static tandem_status writer_alignment(const gguf_writer *w, uint32_t *alignment) {
    *alignment = GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kvs; i++) {
        if (strcmp(w->kvs[i].key, "general.alignment") != 0) continue;
        const byte_buf *v = &w->kvs[i].value;
        uint32_t type = 0, value = 0;
        memcpy(&type, v->data, 4);
        if (type == GGUF_TYPE_UINT32) memcpy(&value, v->data + 4, 4);
        if (type != GGUF_TYPE_UINT32 || !is_power_of_two(value))
            return tandem_fail(TANDEM_ERR_INVALID_ARG, "gguf writer: general.alignment must be a UINT32 power of two");
        *alignment = value;
    }
    return TANDEM_OK;
}

/* TANDEM_ERR_ABORTED when the progress callback asked to stop; a fill function's failure as it reported it. */
static tandem_status write_gguf_body(const gguf_writer *w, out_file *o, uint32_t alignment) {
    uint32_t version = 3;
    uint64_t n_tensors = w->n_tensors, n_kv = w->n_kvs;
    out_write(o, "GGUF", 4);
    out_write(o, &version, 4);
    out_write(o, &n_tensors, 8);  /* the tensor count comes first */
    out_write(o, &n_kv, 8);
    for (size_t i = 0; i < w->n_kvs; i++) {
        uint64_t key_len = strlen(w->kvs[i].key);
        out_write(o, &key_len, 8);
        out_write(o, w->kvs[i].key, (size_t)key_len);
        out_write(o, w->kvs[i].value.data, w->kvs[i].value.len);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        uint64_t name_len = strlen(t->name), dims = (uint64_t)t->n_dims;
        uint32_t n_dims = (uint32_t)t->n_dims, type = (uint32_t)t->type;
        out_write(o, &name_len, 8);
        out_write(o, t->name, (size_t)name_len);
        out_write(o, &n_dims, 4);
        out_write(o, t->ne, (size_t)dims * 8);
        out_write(o, &type, 4);
        out_write(o, &offset, 8);
        offset += (t->nbytes + alignment - 1) / alignment * alignment;
    }
    out_pad(o, alignment);
    /* tensors made at write time share one buffer, as large as the largest of them */
    void *buf = NULL;
    size_t buf_size = 0;
    tandem_status st = TANDEM_OK;
    for (size_t i = 0; i < w->n_tensors && !o->error; i++) {
        const writer_tensor *t = &w->tensors[i];
        const void *data = t->data;
        if (t->fill) {
            if (t->nbytes > buf_size) {
                void *grown = realloc(buf, (size_t)t->nbytes);
                if (!grown) {
                    st = tandem_fail(TANDEM_ERR_NO_MEMORY, "gguf writer: tensor '%s': out of memory for %llu bytes",
                                     t->name, (unsigned long long)t->nbytes);
                    break;
                }
                buf = grown;
                buf_size = (size_t)t->nbytes;
            }
            if ((st = t->fill(t->fill_user, buf, (size_t)t->nbytes))) break;
            data = buf;
        }
        out_write(o, data, (size_t)t->nbytes);
        out_pad(o, alignment);  /* after every tensor, the last included, as ggml and gguf-py do */
        if (w->progress && !w->progress(i + 1, w->n_tensors, w->progress_user)) {
            st = tandem_fail(TANDEM_ERR_ABORTED, "gguf writer: writing was stopped");
            break;
        }
    }
    free(buf);
    return st;
}

tandem_status gguf_writer_write(gguf_writer *w, const char *path) {
    tandem_status st = TANDEM_OK;
    uint32_t alignment;
    out_file o = {0};
    int fd = -1;
    char *tmp = NULL;

    st = writer_alignment(w, &alignment);
    if (st != TANDEM_OK) goto done;
    /* A temp file in the same folder, renamed at the end, so readers never see a half-written model. */
    if ((st = tandem_temp_file_create(path, &fd, &tmp))) goto done;
    o.fp = fdopen(fd, "wb");
    if (!o.fp) {
        st = tandem_fail(TANDEM_ERR_IO, "%s: cannot open %s for writing: %s", path, tmp, strerror(errno));
        close(fd);
        goto done;
    }
    if ((st = write_gguf_body(w, &o, alignment))) {
        fclose(o.fp);
        o.fp = NULL;
        if (st == TANDEM_ERR_ABORTED) tandem_error_prefix("%s", path);  /* a fill's own message names its source */
        goto done;
    }
    if (!o.error && fflush(o.fp) != 0) o.error = errno ? errno : EIO;
    if (!o.error && fsync(fileno(o.fp)) != 0 && errno != EINVAL) o.error = errno;
    if (fclose(o.fp) != 0 && !o.error) o.error = errno ? errno : EIO;
    o.fp = NULL;
    if (o.error) {
        st = tandem_fail(TANDEM_ERR_IO, "%s: cannot write: %s", path, strerror(o.error));
        goto done;
    }
    if (rename(tmp, path) != 0) st = tandem_fail(TANDEM_ERR_IO, "%s: cannot rename %s onto it: %s", path, tmp,
                                                 strerror(errno));
done:
    if (st != TANDEM_OK && fd >= 0) unlink(tmp);
    free(tmp);
    return st;
}
