/* test_gguf.c — tests of the GGUF reader and writer: round trips through tandem's writer, the golden file
 * written by the reference gguf package, and hostile files that must fail cleanly with a precise message. */
#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "test.h"

static char tmp_dir[] = "/tmp/tandem_test_gguf_XXXXXX";
static char case_path[256];  /* every hand-built file is written here */

static void tmp_file(char *out, size_t size, const char *name) { snprintf(out, size, "%s/%s", tmp_dir, name); }

static uint64_t fnv1a64(const void *data, size_t n) {
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* ---- building files byte by byte ---- */

typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void put_u8(bytes *b, uint8_t v) { put(b, &v, 1); }
static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void put_f64(bytes *b, double v) { put(b, &v, 8); }
static void put_str(bytes *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void put_header(bytes *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}
static void put_kv_u32(bytes *b, const char *key, uint32_t v) {
    put_str(b, key);
    put_u32(b, GGUF_TYPE_UINT32);
    put_u32(b, v);
}
static void put_tensor_info(bytes *b, const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type,
                            uint64_t offset) {
    put_str(b, name);
    put_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) put_u64(b, (uint64_t)ne[d]);
    put_u32(b, type);
    put_u64(b, offset);
}
static void put_pad(bytes *b, size_t align) {
    while (b->len % align) put_u8(b, 0);
}
static void put_zeros(bytes *b, size_t n) {
    for (size_t i = 0; i < n; i++) put_u8(b, 0);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp || (n && fwrite(data, 1, n, fp) != n)) abort();
    fclose(fp);
}

/* Writes b to case_path and opens it; every failure must name the file. Frees b. */
static tandem_status try_open(bytes *b) {
    gguf_file *f = NULL;
    write_file(case_path, b->p, b->len);
    free(b->p);
    *b = (bytes){0};
    tandem_status st = gguf_open(case_path, &f);
    if (st == TANDEM_OK) {
        CHECK(f != NULL);
        gguf_close(f);
    } else {
        CHECK(f == NULL);
        CHECK_MSG(strncmp(tandem_last_error(), case_path, strlen(case_path)) == 0, "message does not name the file: %s",
                  tandem_last_error());
    }
    return st;
}

/* One tensor info after no kvs, then data_bytes of zeros after the padding. */
static tandem_status try_one_tensor(const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type,
                                    uint64_t offset, size_t data_bytes) {
    bytes b = {0};
    put_header(&b, 3, 1, 0);
    put_tensor_info(&b, name, n_dims, ne, type, offset);
    put_pad(&b, 32);
    put_zeros(&b, data_bytes);
    return try_open(&b);
}

/* One kv whose type and payload the caller appends after the key (via raw bytes). */
static tandem_status try_one_kv(const char *key, const void *typed_value, size_t n) {
    bytes b = {0};
    put_header(&b, 3, 0, 1);
    put_str(&b, key);
    put(&b, typed_value, n);
    return try_open(&b);
}

/* ---- a file built with tandem's writer ---- */

typedef struct sample_data {
    float f32[12];
    uint16_t f16[8];
    uint16_t bf16[16];
    uint8_t q8_0[2 * 34 * 2];
    uint8_t q4_0[18];
} sample_data;

static void fill_sample(sample_data *d) {
    for (int i = 0; i < 12; i++) d->f32[i] = (float)i * 0.5f - 3.0f;
    for (int i = 0; i < 8; i++) d->f16[i] = f32_to_f16((float)i * 0.25f);
    for (int i = 0; i < 16; i++) d->bf16[i] = f32_to_bf16((float)(i - 8));
    for (size_t i = 0; i < sizeof d->q8_0; i++) d->q8_0[i] = (uint8_t)(i * 7 + 3);
    for (size_t i = 0; i < sizeof d->q4_0; i++) d->q4_0[i] = (uint8_t)(i * 13 + 1);
}

static const int32_t sample_ints[] = {1, -2, 3, INT32_MAX, INT32_MIN};
static const float sample_floats[] = {0.5f, -1.5f, 1e-3f};
static const char *const sample_strings[] = {"a", "", "ünï", "日本", "last"};

/* Adds the sample kvs and tensors; data must outlive the write. */
static void add_sample(gguf_writer *w, const sample_data *d) {
    gguf_str strs[5];
    for (int i = 0; i < 5; i++) strs[i] = (gguf_str){sample_strings[i], strlen(sample_strings[i])};
    CHECK_OK(gguf_writer_set_str(w, "general.architecture", "qwen3", 5));
    CHECK_OK(gguf_writer_set_u32(w, "tandem.u32", 123456789u));
    CHECK_OK(gguf_writer_set_i32(w, "tandem.i32", -42));
    CHECK_OK(gguf_writer_set_f32(w, "tandem.f32", 0.25f));
    CHECK_OK(gguf_writer_set_bool(w, "tandem.bool", true));
    CHECK_OK(gguf_writer_set_str(w, "tandem.str", "héllo wörld", strlen("héllo wörld")));
    CHECK_OK(gguf_writer_set_str(w, "tandem.str_empty", NULL, 0));
    CHECK_OK(gguf_writer_set_arr_i32(w, "tandem.arr_i32", sample_ints, 5));
    CHECK_OK(gguf_writer_set_arr_f32(w, "tandem.arr_f32", sample_floats, 3));
    CHECK_OK(gguf_writer_set_arr_str(w, "tandem.arr_str", strs, 5));
    CHECK_OK(gguf_writer_set_arr_i32(w, "tandem.arr_empty", NULL, 0));
    CHECK_OK(gguf_writer_add_tensor(w, "own.f32", TANDEM_TYPE_F32, 2, (const int64_t[]){4, 3}, d->f32));
    CHECK_OK(gguf_writer_add_tensor(w, "own.f16", TANDEM_TYPE_F16, 1, (const int64_t[]){8}, d->f16));
    CHECK_OK(gguf_writer_add_tensor(w, "own.bf16", TANDEM_TYPE_BF16, 4, (const int64_t[]){2, 2, 2, 2}, d->bf16));
    CHECK_OK(gguf_writer_add_tensor(w, "own.q8_0", TANDEM_TYPE_Q8_0, 2, (const int64_t[]){64, 2}, d->q8_0));
    CHECK_OK(gguf_writer_add_tensor(w, "own.q4_0", TANDEM_TYPE_Q4_0, 1, (const int64_t[]){32}, d->q4_0));
}

static void check_tensor(const gguf_file *f, const char *name, tandem_type type, int32_t n_dims, const int64_t *ne,
                         const void *data, uint64_t nbytes) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    CHECK_MSG(t != NULL, "tensor %s missing", name);
    if (!t) return;
    CHECK(t->type == type);
    CHECK(t->n_dims == n_dims);
    for (int dim = 0; dim < 4; dim++) CHECK(t->ne[dim] == (dim < n_dims ? ne[dim] : 1));
    CHECK(t->nbytes == nbytes);
    CHECK(t->offset % f->alignment == 0);
    CHECK((const uint8_t *)t->data == f->map.data + f->data_start + t->offset);
    CHECK(memcmp(t->data, data, (size_t)nbytes) == 0);
}

/* The sample kvs and tensors, as add_sample wrote them. */
static void check_sample(const gguf_file *f, const sample_data *d) {
    uint32_t u32 = 0;
    float f32 = 0;
    bool flag = false;
    gguf_str s = {0};
    CHECK(gguf_get_str(f, "general.architecture", &s) && s.len == 5 && memcmp(s.ptr, "qwen3", 5) == 0);
    CHECK(gguf_get_u32(f, "tandem.u32", &u32) && u32 == 123456789u);
    CHECK(gguf_find_kv(f, "tandem.u32")->type == GGUF_TYPE_UINT32);
    const gguf_kv *kv = gguf_find_kv(f, "tandem.i32");
    CHECK(kv && kv->type == GGUF_TYPE_INT32 && kv->v.i64 == -42);
    CHECK(!gguf_get_u32(f, "tandem.i32", &u32));  /* negative: out of range for u32 */
    CHECK(gguf_get_f32(f, "tandem.f32", &f32) && f32 == 0.25f);
    CHECK(gguf_get_bool(f, "tandem.bool", &flag) && flag);
    CHECK(gguf_get_str(f, "tandem.str", &s) && s.len == strlen("héllo wörld") && memcmp(s.ptr, "héllo wörld", s.len) == 0);
    CHECK(gguf_get_str(f, "tandem.str_empty", &s) && s.len == 0);
    kv = gguf_find_kv(f, "tandem.arr_i32");
    CHECK(kv && kv->type == GGUF_TYPE_ARRAY && kv->array_type == GGUF_TYPE_INT32 && kv->n == 5);
    for (uint64_t i = 0; kv && i < kv->n; i++) CHECK(gguf_array_int(kv, i) == sample_ints[i]);
    kv = gguf_find_kv(f, "tandem.arr_f32");
    CHECK(kv && kv->array_type == GGUF_TYPE_FLOAT32 && kv->n == 3);
    for (uint64_t i = 0; kv && i < kv->n; i++) CHECK(gguf_array_float(kv, i) == (double)sample_floats[i]);
    kv = gguf_find_kv(f, "tandem.arr_str");
    CHECK(kv && kv->array_type == GGUF_TYPE_STRING && kv->n == 5 && kv->strings);
    for (uint64_t i = 0; kv && i < kv->n; i++)
        CHECK(kv->strings[i].len == strlen(sample_strings[i]) &&
              memcmp(kv->strings[i].ptr, sample_strings[i], kv->strings[i].len) == 0);
    kv = gguf_find_kv(f, "tandem.arr_empty");
    CHECK(kv && kv->type == GGUF_TYPE_ARRAY && kv->n == 0);
    CHECK(gguf_find_kv(f, "no.such.key") == NULL);
    CHECK(!gguf_get_u32(f, "no.such.key", &u32));
    CHECK(!gguf_get_u32(f, "tandem.str", &u32));
    CHECK(!gguf_get_f32(f, "tandem.u32", &f32));
    CHECK(!gguf_get_str(f, "tandem.u32", &s));
    CHECK(!gguf_get_bool(f, "tandem.u32", &flag));

    check_tensor(f, "own.f32", TANDEM_TYPE_F32, 2, (const int64_t[]){4, 3}, d->f32, sizeof d->f32);
    check_tensor(f, "own.f16", TANDEM_TYPE_F16, 1, (const int64_t[]){8}, d->f16, sizeof d->f16);
    check_tensor(f, "own.bf16", TANDEM_TYPE_BF16, 4, (const int64_t[]){2, 2, 2, 2}, d->bf16, sizeof d->bf16);
    check_tensor(f, "own.q8_0", TANDEM_TYPE_Q8_0, 2, (const int64_t[]){64, 2}, d->q8_0, sizeof d->q8_0);
    check_tensor(f, "own.q4_0", TANDEM_TYPE_Q4_0, 1, (const int64_t[]){32}, d->q4_0, sizeof d->q4_0);
    CHECK(gguf_find_tensor(f, "own.nothing") == NULL);
}

static void test_writer_round_trip(void) {
    char path[300];
    tmp_file(path, sizeof path, "round_trip.gguf");
    sample_data d;
    fill_sample(&d);
    gguf_writer *w = NULL;
    CHECK_OK(gguf_writer_init(&w));
    add_sample(w, &d);
    CHECK_OK(gguf_writer_set_u32(w, "tandem.u32", 7));  /* setting a key again replaces its value... */
    CHECK_OK(gguf_writer_set_u32(w, "tandem.u32", 123456789u));
    CHECK_OK(gguf_writer_write(w, path));
    gguf_writer_free(w);

    gguf_file *f = NULL;
    CHECK_OK(gguf_open(path, &f));
    if (!f) return;
    CHECK(f->version == 3);
    CHECK(f->alignment == 32);
    CHECK(f->n_kv == 11);  /* ...in place, without a second entry */
    CHECK(strcmp(f->kv[1].key, "tandem.u32") == 0);
    CHECK(f->n_tensors == 5);
    CHECK(f->data_start % 32 == 0);
    /* Tensors are packed in order, each padded to 32, the last one included. */
    uint64_t expect_offset = 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        CHECK(f->tensors[i].offset == expect_offset);
        expect_offset += align_up(f->tensors[i].nbytes, 32);
    }
    CHECK(f->map.size == f->data_start + expect_offset);
    CHECK(strcmp(f->tensors[0].name, "own.f32") == 0 && strcmp(f->tensors[4].name, "own.q4_0") == 0);
    check_sample(f, &d);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0644) == 0644);
    gguf_close(f);
}

static bool dir_has_prefix(const char *prefix) {
    bool found = false;
    DIR *dir = opendir(tmp_dir);
    if (!dir) return false;
    for (struct dirent *e; (e = readdir(dir));)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) found = true;
    closedir(dir);
    return found;
}

static void test_writer_errors(void) {
    gguf_writer *w = NULL;
    uint8_t block[34] = {0};
    float values[4] = {0};
    char long_name[80];
    memset(long_name, 'x', 64);
    long_name[64] = '\0';
    CHECK_OK(gguf_writer_init(&w));
    CHECK_FAILS(gguf_writer_set_u32(w, "", 1), TANDEM_ERR_INVALID_ARG, "empty key");
    CHECK_OK(gguf_writer_add_tensor(w, "a", TANDEM_TYPE_F32, 1, (const int64_t[]){4}, values));
    CHECK_FAILS(gguf_writer_add_tensor(w, "a", TANDEM_TYPE_F32, 1, (const int64_t[]){4}, values),
                TANDEM_ERR_INVALID_ARG, "duplicate tensor 'a'");
    CHECK_FAILS(gguf_writer_add_tensor(w, long_name, TANDEM_TYPE_F32, 1, (const int64_t[]){4}, values),
                TANDEM_ERR_INVALID_ARG, "name must be 1 to 63 bytes");
    CHECK_FAILS(gguf_writer_add_tensor(w, "b", TANDEM_TYPE_Q8_0, 1, (const int64_t[]){33}, block),
                TANDEM_ERR_INVALID_ARG, "not a whole number of Q8_0 blocks");
    CHECK_FAILS(gguf_writer_add_tensor(w, "c", TANDEM_TYPE_F32, 0, (const int64_t[]){4}, values),
                TANDEM_ERR_INVALID_ARG, "n_dims is 0");
    CHECK_FAILS(gguf_writer_add_tensor(w, "d", TANDEM_TYPE_F32, 1, (const int64_t[]){0}, values),
                TANDEM_ERR_INVALID_ARG, "ne[0] is 0");
    CHECK_FAILS(gguf_writer_add_tensor(w, "e", (tandem_type)16, 1, (const int64_t[]){256}, values),
                TANDEM_ERR_INVALID_ARG, "unknown type 16");

    /* A rename onto a folder fails after the temp file was written: the temp file must be gone. */
    char target[300];
    tmp_file(target, sizeof target, "a_folder");
    CHECK(mkdir(target, 0755) == 0);
    CHECK_FAILS(gguf_writer_write(w, target), TANDEM_ERR_IO, "cannot rename");
    CHECK(!dir_has_prefix("a_folder.tmp."));
    rmdir(target);
    /* A folder that does not exist: nothing can be created. */
    tmp_file(target, sizeof target, "missing/x.gguf");
    CHECK_FAILS(gguf_writer_write(w, target), TANDEM_ERR_IO, "cannot create a temporary file");

    /* A bad general.alignment would make an unreadable file, so write refuses it. */
    CHECK_OK(gguf_writer_set_u32(w, "general.alignment", 48));
    tmp_file(target, sizeof target, "bad_alignment.gguf");
    CHECK_FAILS(gguf_writer_write(w, target), TANDEM_ERR_INVALID_ARG, "general.alignment");
    CHECK(!path_exists(target));
    gguf_writer_free(w);
    gguf_writer_free(NULL);
}

/* ---- the golden file from the reference gguf package ---- */

static int value_type_from_name(const char *name) {
    static const char *const names[] = {"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
                                        "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"};
    for (int i = 0; i < 13; i++)
        if (name && strcmp(name, names[i]) == 0) return i;
    return -1;
}

/* One value (scalar, or array element i when kv is an array) against its JSON description. */
static bool value_matches(const gguf_kv *kv, int type, json_t *v, uint64_t i) {
    bool in_array = kv->type == GGUF_TYPE_ARRAY;
    switch (type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32:
        return json_is_integer(v) &&
               (in_array ? gguf_array_int(kv, i) : (int64_t)kv->v.u64) == (int64_t)json_integer_value(v);
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        return json_is_integer(v) && (in_array ? gguf_array_int(kv, i) : kv->v.i64) == json_integer_value(v);
    case GGUF_TYPE_UINT64: {
        uint64_t x = kv->v.u64;
        if (in_array) memcpy(&x, kv->array_data + 8 * i, 8);
        return json_is_string(v) && x == strtoull(json_string_value(v), NULL, 10);
    }
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64:
        return json_is_number(v) && (in_array ? gguf_array_float(kv, i) : kv->v.f64) == json_number_value(v);
    case GGUF_TYPE_BOOL:
        return json_is_boolean(v) && (in_array ? gguf_array_int(kv, i) != 0 : kv->v.u64 != 0) == json_is_true(v);
    case GGUF_TYPE_STRING: {
        gguf_str s = in_array ? kv->strings[i] : kv->v.str;
        return json_is_string(v) && s.len == json_string_length(v) && memcmp(s.ptr, json_string_value(v), s.len) == 0;
    }
    default: return false;
    }
}

static void check_golden_kvs(const gguf_file *f, json_t *kvs) {
    CHECK(f->n_kv == (int64_t)json_array_size(kvs));
    for (size_t i = 0; i < json_array_size(kvs) && (int64_t)i < f->n_kv; i++) {
        json_t *want = json_array_get(kvs, i);
        const gguf_kv *kv = &f->kv[i];
        const char *key = json_string_value(json_object_get(want, "key"));
        int type = value_type_from_name(json_string_value(json_object_get(want, "type")));
        json_t *value = json_object_get(want, "value");
        CHECK_MSG(key && strcmp(kv->key, key) == 0, "kv %zu: %s vs %s", i, kv->key, key);
        CHECK_MSG((int)kv->type == type, "key %s: type %d vs %d", kv->key, (int)kv->type, type);
        if (type != GGUF_TYPE_ARRAY) {
            CHECK_MSG(value_matches(kv, type, value, 0), "key %s: value differs", kv->key);
            continue;
        }
        int elem_type = value_type_from_name(json_string_value(json_object_get(want, "array_type")));
        CHECK_MSG((int)kv->array_type == elem_type, "key %s: element type %d vs %d", kv->key, (int)kv->array_type,
                  elem_type);
        CHECK_MSG(kv->n == json_array_size(value), "key %s: %llu elements", kv->key, (unsigned long long)kv->n);
        for (uint64_t e = 0; e < kv->n && e < json_array_size(value); e++)
            CHECK_MSG(value_matches(kv, elem_type, json_array_get(value, (size_t)e), e), "key %s: element %llu differs",
                      kv->key, (unsigned long long)e);
    }
}

static void check_golden_tensors(const gguf_file *f, json_t *tensors) {
    CHECK(f->n_tensors == (int64_t)json_array_size(tensors));
    for (size_t i = 0; i < json_array_size(tensors) && (int64_t)i < f->n_tensors; i++) {
        json_t *want = json_array_get(tensors, i);
        const gguf_tensor *t = &f->tensors[i];
        json_t *ne = json_object_get(want, "ne");
        CHECK_MSG(strcmp(t->name, json_string_value(json_object_get(want, "name"))) == 0, "tensor %zu: %s", i, t->name);
        CHECK_MSG((int64_t)t->type == json_integer_value(json_object_get(want, "type")), "tensor %s: type", t->name);
        CHECK_MSG((size_t)t->n_dims == json_array_size(ne), "tensor %s: n_dims %d", t->name, t->n_dims);
        for (size_t d = 0; d < 4; d++)
            CHECK_MSG(t->ne[d] == (d < json_array_size(ne) ? json_integer_value(json_array_get(ne, d)) : 1),
                      "tensor %s: ne[%zu]", t->name, d);
        CHECK_MSG((int64_t)t->offset == json_integer_value(json_object_get(want, "offset")), "tensor %s: offset",
                  t->name);
        CHECK_MSG((int64_t)t->nbytes == json_integer_value(json_object_get(want, "nbytes")), "tensor %s: nbytes",
                  t->name);
        uint64_t want_hash = strtoull(json_string_value(json_object_get(want, "fnv1a64")), NULL, 16);
        CHECK_MSG(fnv1a64(t->data, (size_t)t->nbytes) == want_hash, "tensor %s: data differ", t->name);
        CHECK(gguf_find_tensor(f, t->name) == t);
    }
}

/* Typed getters on values the reference writer produced, including ones that must be refused. */
static void check_golden_getters(const gguf_file *f) {
    uint32_t u32 = 0;
    float f32 = 0;
    bool flag = true;
    gguf_str s = {0};
    CHECK(gguf_get_u32(f, "test.u8", &u32) && u32 == 200);
    CHECK(gguf_get_u32(f, "test.u16", &u32) && u32 == 60000);
    CHECK(gguf_get_u32(f, "test.u32", &u32) && u32 == 4000000000u);
    CHECK(gguf_get_u32(f, "general.alignment", &u32) && u32 == 64);
    CHECK(!gguf_get_u32(f, "test.i8", &u32));   /* negative */
    CHECK(!gguf_get_u32(f, "test.u64", &u32));  /* too large */
    CHECK(!gguf_get_u32(f, "test.f32", &u32));  /* not an integer */
    CHECK(gguf_get_f32(f, "test.f32", &f32) && f32 == 3.14159f);
    CHECK(gguf_get_f32(f, "test.f64", &f32) && f32 == (float)2.718281828459045);
    CHECK(gguf_get_bool(f, "test.bool_false", &flag) && !flag);
    CHECK(gguf_get_str(f, "test.string_nul", &s) && s.len == 3 && memcmp(s.ptr, "a\0b", 3) == 0);
    const gguf_kv *kv = gguf_find_kv(f, "test.arr_u64");
    CHECK(kv && kv->n == 3 && gguf_array_float(kv, 2) == 1099511627776.0);
    kv = gguf_find_kv(f, "test.arr_f64");
    CHECK(kv && gguf_array_float(kv, 1) == -2.5e300);
}

static void test_golden(const char *golden_dir) {
    char gguf_path[512], json_path[512];
    snprintf(gguf_path, sizeof gguf_path, "%s/gguf/all_types.gguf", golden_dir);
    snprintf(json_path, sizeof json_path, "%s/gguf/all_types.json", golden_dir);
    json_t *desc = NULL;
    gguf_file *f = NULL;
    CHECK_OK(json_load_path(json_path, &desc));
    CHECK_OK(gguf_open(gguf_path, &f));
    if (desc && f) {
        CHECK(f->version == json_integer_value(json_object_get(desc, "version")));
        CHECK(f->alignment == json_integer_value(json_object_get(desc, "alignment")));
        CHECK((int64_t)f->data_start == json_integer_value(json_object_get(desc, "data_start")));
        CHECK((int64_t)f->map.size == json_integer_value(json_object_get(desc, "file_size")));
        check_golden_kvs(f, json_object_get(desc, "kv"));
        check_golden_tensors(f, json_object_get(desc, "tensors"));
        check_golden_getters(f);
    }
    gguf_close(f);
    json_decref(desc);
}

static size_t elem_size(gguf_value_type t) {
    static const size_t sizes[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return (unsigned)t < 13 ? sizes[t] : 0;
}

/* copy_kv for every type: copying all kvs and tensors of the golden file must reproduce them, the
 * general.alignment of 64 included (the writer honours it). */
static void test_copy_all(const char *golden_dir) {
    char src_path[512], dst_path[300];
    snprintf(src_path, sizeof src_path, "%s/gguf/all_types.gguf", golden_dir);
    tmp_file(dst_path, sizeof dst_path, "copy.gguf");
    gguf_file *src = NULL, *dst = NULL;
    gguf_writer *w = NULL;
    CHECK_OK(gguf_open(src_path, &src));
    CHECK_OK(gguf_writer_init(&w));
    if (!src || !w) goto done;
    for (int64_t i = 0; i < src->n_kv; i++) CHECK_OK(gguf_writer_copy_kv(w, &src->kv[i]));
    for (int64_t i = 0; i < src->n_tensors; i++) {
        const gguf_tensor *t = &src->tensors[i];
        CHECK_OK(gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data));
    }
    CHECK_OK(gguf_writer_write(w, dst_path));
    CHECK_OK(gguf_open(dst_path, &dst));
    if (!dst) goto done;
    CHECK(dst->alignment == 64 && dst->data_start % 64 == 0);
    CHECK(dst->n_kv == src->n_kv && dst->n_tensors == src->n_tensors);
    for (int64_t i = 0; i < src->n_kv && i < dst->n_kv; i++) {
        const gguf_kv *a = &src->kv[i], *b = &dst->kv[i];
        CHECK(strcmp(a->key, b->key) == 0 && a->type == b->type);
        if (a->type == GGUF_TYPE_STRING)
            CHECK(a->v.str.len == b->v.str.len && memcmp(a->v.str.ptr, b->v.str.ptr, a->v.str.len) == 0);
        else if (a->type != GGUF_TYPE_ARRAY)
            CHECK(memcmp(&a->v, &b->v, sizeof a->v.u64) == 0);
        else if (a->array_type == GGUF_TYPE_STRING)
            for (uint64_t e = 0; e < a->n; e++)
                CHECK(a->strings[e].len == b->strings[e].len &&
                      memcmp(a->strings[e].ptr, b->strings[e].ptr, a->strings[e].len) == 0);
        else
            CHECK(a->array_type == b->array_type && a->n == b->n &&
                  memcmp(a->array_data, b->array_data, (size_t)a->n * elem_size(a->array_type)) == 0);
    }
    for (int64_t i = 0; i < src->n_tensors && i < dst->n_tensors; i++) {
        const gguf_tensor *a = &src->tensors[i], *b = &dst->tensors[i];
        CHECK(strcmp(a->name, b->name) == 0 && a->type == b->type && a->nbytes == b->nbytes &&
              a->offset == b->offset && memcmp(a->data, b->data, (size_t)a->nbytes) == 0);
    }
done:
    gguf_writer_free(w);
    gguf_close(src);
    gguf_close(dst);
    unlink(dst_path);
}

/* With TANDEM_GGUF_OUT set, writes the file tests/integration/test_gguf_interop.py reads back with the
 * gguf package: every golden kv but general.alignment (so the default 32 applies), the sample kvs, the
 * golden tensors and the sample tensors. */
static void export_for_interop(const char *golden_dir, const char *out_path) {
    char src_path[512];
    snprintf(src_path, sizeof src_path, "%s/gguf/all_types.gguf", golden_dir);
    gguf_file *src = NULL;
    gguf_writer *w = NULL;
    sample_data d;
    fill_sample(&d);
    CHECK_OK(gguf_open(src_path, &src));
    CHECK_OK(gguf_writer_init(&w));
    if (src && w) {
        for (int64_t i = 0; i < src->n_kv; i++)
            if (strcmp(src->kv[i].key, "general.alignment") != 0) CHECK_OK(gguf_writer_copy_kv(w, &src->kv[i]));
        add_sample(w, &d);  /* general.architecture becomes "qwen3" */
        for (int64_t i = 0; i < src->n_tensors; i++) {
            const gguf_tensor *t = &src->tensors[i];
            CHECK_OK(gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data));
        }
        CHECK_OK(gguf_writer_write(w, out_path));
    }
    gguf_writer_free(w);
    gguf_close(src);
    fprintf(stderr, "wrote %s\n", out_path);
}

/* ---- hostile files ---- */

/* Every prefix of a valid file fails cleanly, until the prefix holds all tensor data (the trailing
 * padding is not required); then single-byte corruptions of the header must never crash. */
static void test_truncation_and_corruption(void) {
    char path[300];
    tmp_file(path, sizeof path, "small.gguf");
    sample_data d;
    fill_sample(&d);
    gguf_writer *w = NULL;
    CHECK_OK(gguf_writer_init(&w));
    add_sample(w, &d);
    CHECK_OK(gguf_writer_write(w, path));
    gguf_writer_free(w);
    gguf_file *f = NULL;
    CHECK_OK(gguf_open(path, &f));
    if (!f) return;
    uint64_t needed = 0;
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (f->data_start + f->tensors[i].offset + f->tensors[i].nbytes > needed)
            needed = f->data_start + f->tensors[i].offset + f->tensors[i].nbytes;
    size_t size = f->map.size, header_end = (size_t)f->data_start;
    uint8_t *copy = malloc(size);
    memcpy(copy, f->map.data, size);
    gguf_close(f);

    int wrong = 0;
    for (size_t len = 0; len <= size; len++) {
        bytes b = {0};
        put(&b, copy, len);
        tandem_status st = try_open(&b);
        tandem_status want = len >= needed ? TANDEM_OK : TANDEM_ERR_FORMAT;
        if (st != want) {
            if (wrong++ < 5) fprintf(stderr, "prefix of %zu bytes: status %d: %s\n", len, st, tandem_last_error());
        }
    }
    CHECK_MSG(wrong == 0, "%d prefixes gave the wrong status", wrong);

    /* Flip each header byte in turn, then a few thousand random multi-byte corruptions (seeded). */
    for (size_t pos = 0; pos < header_end; pos++) {
        for (int flip = 0; flip < 2; flip++) {
            bytes b = {0};
            put(&b, copy, size);
            b.p[pos] ^= flip ? 0x80 : 0xFF;
            (void)try_open(&b);
        }
    }
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (int iter = 0; iter < 3000; iter++) {
        bytes b = {0};
        put(&b, copy, size);
        for (int k = 0; k < 3; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(rng >> 33) % header_end;
            b.p[pos] = (uint8_t)(rng >> 13);
        }
        (void)try_open(&b);
    }
    free(copy);
    unlink(path);
}

static void test_header_errors(void) {
    bytes b = {0};
    gguf_file *f = NULL;
    CHECK_FAILS(gguf_open("/nonexistent/model.gguf", &f), TANDEM_ERR_IO, "/nonexistent/model.gguf");
    CHECK(f == NULL);

    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "file is 0 bytes, too small for a GGUF header");
    put(&b, "GGUF\3\0\0\0\0\0", 10);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "file is 10 bytes");

    put(&b, "GGML", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);
    put_u64(&b, 0);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "not a GGUF file (magic 47 47 4d 4c");

    put_header(&b, 3, 0, 0);  /* the smallest valid file */
    CHECK_OK(try_open(&b));
    put_header(&b, 2, 0, 0);
    CHECK_OK(try_open(&b));
    put_header(&b, 1, 0, 0);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_UNSUPPORTED, "GGUF version 1 is not supported");
    put_header(&b, 4, 0, 0);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_UNSUPPORTED, "GGUF version 4 is not supported");
    put_header(&b, 0x03000000, 0, 0);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_UNSUPPORTED, "byte-swapped");
    put_header(&b, 0, 0, 0);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "GGUF version 0");

    put_header(&b, 3, 0, 1ull << 40);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "kv count 1099511627776 is impossible");
    put_header(&b, 3, 0, UINT64_MAX);  /* negative as int64 */
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "kv count 18446744073709551615 is impossible");
    put_header(&b, 3, 1ull << 60, 0);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "tensor count 1152921504606846976 is impossible");
    put_header(&b, 3, 2, 1);  /* one kv fits in 24 bytes but not another two tensor infos as well */
    put_kv_u32(&b, "k", 1);
    put_zeros(&b, 20);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "tensor count 2 is impossible");
}

static void test_kv_errors(void) {
    bytes b = {0};
    /* key length past the end */
    put_header(&b, 3, 0, 1);
    put_u64(&b, 1000);
    put(&b, "abcdefghijklmnop", 16);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "kv #0 key: string length 1000 runs past the end of the file");

    uint8_t buf[64] = {0};
    uint32_t type;
    uint64_t n;
#define TYPED(t) (type = (t), memcpy(buf, &type, 4))
    /* string value length past the end, and one that would overflow pos + len */
    TYPED(GGUF_TYPE_STRING);
    n = 5;
    memcpy(buf + 4, &n, 8);
    memcpy(buf + 12, "abcd", 4);
    CHECK_FAILS(try_one_kv("k.str", buf, 16), TANDEM_ERR_FORMAT, "key 'k.str': string length 5 runs past the end");
    n = UINT64_MAX;
    memcpy(buf + 4, &n, 8);
    CHECK_FAILS(try_one_kv("k.str", buf, 16), TANDEM_ERR_FORMAT, "string length 18446744073709551615 runs past");

    /* truncated scalar */
    TYPED(GGUF_TYPE_UINT64);
    CHECK_FAILS(try_one_kv("k.u64", buf, 4 + 3), TANDEM_ERR_FORMAT, "key 'k.u64': needs 8 bytes");

    /* unknown value type, unknown and nested array element types */
    TYPED(13);
    CHECK_FAILS(try_one_kv("k.bad", buf, 4 + 8), TANDEM_ERR_FORMAT, "key 'k.bad': unknown value type 13");
    TYPED(GGUF_TYPE_ARRAY);
    type = 99;
    memcpy(buf + 4, &type, 4);
    n = 1;
    memcpy(buf + 8, &n, 8);
    CHECK_FAILS(try_one_kv("k.arr", buf, 4 + 4 + 8 + 8), TANDEM_ERR_FORMAT, "unknown array element type 99");
    type = GGUF_TYPE_ARRAY;
    memcpy(buf + 4, &type, 4);
    CHECK_FAILS(try_one_kv("k.arr", buf, 4 + 4 + 8 + 8), TANDEM_ERR_UNSUPPORTED, "arrays of arrays are not supported");

    /* array count × element size: past the end, and wrapping around 2^64 */
    type = GGUF_TYPE_UINT64;
    memcpy(buf + 4, &type, 4);
    n = 3;
    memcpy(buf + 8, &n, 8);
    CHECK_FAILS(try_one_kv("k.arr", buf, 4 + 4 + 8 + 16), TANDEM_ERR_FORMAT,
                "key 'k.arr': array of 3 UINT64 elements runs past the end");
    n = (1ull << 61) + 1;  /* × 8 wraps to 8 */
    memcpy(buf + 8, &n, 8);
    CHECK_FAILS(try_one_kv("k.arr", buf, 4 + 4 + 8 + 16), TANDEM_ERR_FORMAT,
                "array of 2305843009213693953 UINT64 elements runs past the end");
    type = GGUF_TYPE_STRING;
    memcpy(buf + 4, &type, 4);
    n = 1ull << 62;
    memcpy(buf + 8, &n, 8);
    CHECK_FAILS(try_one_kv("k.arr", buf, 4 + 4 + 8 + 16), TANDEM_ERR_FORMAT, "array of 4611686018427387904 STRING");
    /* a string array whose second element runs past the end */
    n = 2;
    memcpy(buf + 8, &n, 8);
    n = 1;
    memcpy(buf + 16, &n, 8);
    buf[24] = 'x';
    n = 100;
    memcpy(buf + 25, &n, 8);
    CHECK_FAILS(try_one_kv("k.arr", buf, 33 + 8), TANDEM_ERR_FORMAT, "key 'k.arr': element 1: string length 100");
    n = 0;  /* ...and with a zero length it is valid (two strings "x" and "") */
    memcpy(buf + 25, &n, 8);
    CHECK_OK(try_one_kv("k.arr", buf, 33));
#undef TYPED

    /* empty key, key with a NUL, duplicate key */
    put_header(&b, 3, 0, 1);
    put_kv_u32(&b, "", 1);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "kv #0: empty key");
    put_header(&b, 3, 0, 1);
    put_u64(&b, 3);
    put(&b, "a\0b", 3);
    put_u32(&b, GGUF_TYPE_UINT8);
    put_u8(&b, 1);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "kv #0 key contains a NUL byte");
    put_header(&b, 3, 0, 3);
    put_kv_u32(&b, "dup.key", 1);
    put_kv_u32(&b, "other", 2);
    put_kv_u32(&b, "dup.key", 3);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "duplicate key 'dup.key'");

    /* general.alignment: wrong type, zero, not a power of two; 64 is fine and moves the data */
    put_header(&b, 3, 0, 1);
    put_str(&b, "general.alignment");
    put_u32(&b, GGUF_TYPE_INT32);
    put_u32(&b, 32);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "key 'general.alignment' has type INT32, expected UINT32");
    put_header(&b, 3, 0, 1);
    put_kv_u32(&b, "general.alignment", 0);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "key 'general.alignment' is 0, expected a non-zero power of two");
    put_header(&b, 3, 0, 1);
    put_kv_u32(&b, "general.alignment", 48);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "key 'general.alignment' is 48");

    put_header(&b, 3, 2, 1);
    put_kv_u32(&b, "general.alignment", 64);
    put_tensor_info(&b, "a", 1, (const int64_t[]){4}, TANDEM_TYPE_F32, 0);
    put_tensor_info(&b, "b", 1, (const int64_t[]){4}, TANDEM_TYPE_F32, 64);
    put_pad(&b, 64);
    size_t data_start = b.len;
    put_zeros(&b, 64 + 16);
    write_file(case_path, b.p, b.len);
    free(b.p);
    b = (bytes){0};
    gguf_file *f = NULL;
    CHECK_OK(gguf_open(case_path, &f));
    if (f) {
        CHECK(f->alignment == 64 && f->data_start == data_start && f->tensors[1].offset == 64);
        gguf_close(f);
    }
    put_header(&b, 3, 1, 1);  /* offset 32 is aligned for the default, not for 64 */
    put_kv_u32(&b, "general.alignment", 64);
    put_tensor_info(&b, "a", 1, (const int64_t[]){4}, TANDEM_TYPE_F32, 32);
    put_pad(&b, 64);
    put_zeros(&b, 64);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "tensor 'a': offset 32 is not a multiple of the alignment (64)");

    /* bools: any non-zero byte is true; typed getters refuse a double beyond float's range */
    put_header(&b, 3, 0, 2);
    put_str(&b, "k.bool");
    put_u32(&b, GGUF_TYPE_BOOL);
    put_u8(&b, 7);
    put_str(&b, "k.huge");
    put_u32(&b, GGUF_TYPE_FLOAT64);
    put_f64(&b, 1e300);
    write_file(case_path, b.p, b.len);
    free(b.p);
    b = (bytes){0};
    CHECK_OK(gguf_open(case_path, &f));
    if (f) {
        bool flag = false;
        float x = 0;
        CHECK(gguf_get_bool(f, "k.bool", &flag) && flag);
        CHECK(!gguf_get_f32(f, "k.huge", &x));
        gguf_close(f);
    }
}

static void test_tensor_errors(void) {
    const int64_t ne4[] = {4}, ne8[] = {8};
    char name63[64], name64[65];
    memset(name63, 'n', 63);
    name63[63] = '\0';
    memset(name64, 'n', 64);
    name64[64] = '\0';

    CHECK_OK(try_one_tensor("ok", 1, ne4, TANDEM_TYPE_F32, 0, 16));
    CHECK_OK(try_one_tensor(name63, 1, ne4, TANDEM_TYPE_F32, 0, 16));
    CHECK_FAILS(try_one_tensor(name64, 1, ne4, TANDEM_TYPE_F32, 0, 16), TANDEM_ERR_FORMAT,
                "is 64 bytes long (limit 63)");
    CHECK_FAILS(try_one_tensor("", 1, ne4, TANDEM_TYPE_F32, 0, 16), TANDEM_ERR_FORMAT, "tensor #0: empty name");
    CHECK_FAILS(try_one_tensor("t", 0, ne4, TANDEM_TYPE_F32, 0, 16), TANDEM_ERR_FORMAT, "tensor 't': n_dims is 0");
    CHECK_FAILS(try_one_tensor("t", 5, (const int64_t[]){1, 1, 1, 1, 1}, TANDEM_TYPE_F32, 0, 16), TANDEM_ERR_FORMAT,
                "tensor 't': n_dims is 5 (must be 1 to 4)");
    CHECK_FAILS(try_one_tensor("t", 2, (const int64_t[]){4, 0}, TANDEM_TYPE_F32, 0, 16), TANDEM_ERR_FORMAT,
                "tensor 't': ne[1] is 0 (must be at least 1)");
    CHECK_FAILS(try_one_tensor("t", 1, (const int64_t[]){-1}, TANDEM_TYPE_F32, 0, 16), TANDEM_ERR_FORMAT,
                "tensor 't': ne[0] is -1");
    CHECK_FAILS(try_one_tensor("t", 2, (const int64_t[]){1ll << 32, 1ll << 32}, TANDEM_TYPE_F32, 0, 16),
                TANDEM_ERR_FORMAT, "tensor 't': element count overflows int64");
    CHECK_FAILS(try_one_tensor("t", 2, (const int64_t[]){1ll << 31, 1ll << 31}, TANDEM_TYPE_F32, 0, 16),
                TANDEM_ERR_FORMAT, "tensor 't': byte size overflows");
    CHECK_FAILS(try_one_tensor("t", 1, ne4, 99, 0, 16), TANDEM_ERR_FORMAT, "tensor 't': invalid tensor type id 99");
    CHECK_FAILS(try_one_tensor("t", 1, ne4, 0x80000000u, 0, 16), TANDEM_ERR_FORMAT, "invalid tensor type id");
    CHECK_FAILS(try_one_tensor("t", 1, (const int64_t[]){256}, 16, 0, 1024), TANDEM_ERR_UNSUPPORTED,
                "tensor 't': tensor type id 16 is not supported");
    CHECK_FAILS(try_one_tensor("t", 1, (const int64_t[]){33}, TANDEM_TYPE_Q8_0, 0, 64), TANDEM_ERR_FORMAT,
                "tensor 't': ne[0] = 33 is not a multiple of the Q8_0 block size (32)");
    CHECK_FAILS(try_one_tensor("t", 1, ne4, TANDEM_TYPE_F32, 16, 64), TANDEM_ERR_FORMAT,
                "tensor 't': offset 16 is not a multiple of the alignment (32)");
    CHECK_FAILS(try_one_tensor("blk.0.attn_q.weight", 1, ne8, TANDEM_TYPE_F32, 4096, 32), TANDEM_ERR_FORMAT,
                "tensor 'blk.0.attn_q.weight': data [offset 4096, 32 bytes] runs past the end of the file");
    CHECK_FAILS(try_one_tensor("t", 1, ne8, TANDEM_TYPE_F32, 0, 31), TANDEM_ERR_FORMAT, "runs past the end of the file");
    CHECK_FAILS(try_one_tensor("t", 1, ne8, TANDEM_TYPE_F32, UINT64_MAX - 31, 32), TANDEM_ERR_FORMAT,
                "runs past the end of the file");
    CHECK_FAILS(try_one_tensor("t", 1, ne4, TANDEM_TYPE_F32, 0, 0), TANDEM_ERR_FORMAT, "runs past the end of the file");

    bytes b = {0};
    put_header(&b, 3, 2, 0);
    put_tensor_info(&b, "same", 1, ne4, TANDEM_TYPE_F32, 0);
    put_tensor_info(&b, "same", 1, ne4, TANDEM_TYPE_F32, 32);
    put_pad(&b, 32);
    put_zeros(&b, 64);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "duplicate tensor 'same'");

    put_header(&b, 3, 3, 0);  /* b lies inside a; c is fine */
    put_tensor_info(&b, "a", 1, (const int64_t[]){16}, TANDEM_TYPE_F32, 0);
    put_tensor_info(&b, "c", 1, ne8, TANDEM_TYPE_F32, 64);
    put_tensor_info(&b, "b", 1, ne8, TANDEM_TYPE_F32, 32);
    put_pad(&b, 32);
    put_zeros(&b, 96);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "tensors 'a' [offset 0, 64 bytes] and 'b' [offset 32, 32 bytes] overlap");
    put_header(&b, 3, 2, 0);  /* two tensors at the same offset */
    put_tensor_info(&b, "a", 1, ne8, TANDEM_TYPE_F32, 0);
    put_tensor_info(&b, "b", 1, ne8, TANDEM_TYPE_F32, 0);
    put_pad(&b, 32);
    put_zeros(&b, 32);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "overlap");
    put_header(&b, 3, 2, 0);  /* out of order but disjoint: accepted (only llama.cpp insists on order) */
    put_tensor_info(&b, "late", 1, ne8, TANDEM_TYPE_F32, 32);
    put_tensor_info(&b, "early", 1, ne8, TANDEM_TYPE_F32, 0);
    put_pad(&b, 32);
    put_zeros(&b, 64);
    CHECK_OK(try_open(&b));
    put_header(&b, 3, 1, 0);  /* a tensor info cut inside its second dimension */
    put_str(&b, "t");
    put_u32(&b, 2);
    put_u64(&b, 4);
    put_u32(&b, 0);
    CHECK_FAILS(try_open(&b), TANDEM_ERR_FORMAT, "tensor 't': needs 8 bytes at offset");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s GOLDEN_DIR\n", argv[0]);
        return 2;
    }
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 2;
    }
    tmp_file(case_path, sizeof case_path, "case.gguf");
    gguf_close(NULL);

    const char *export_path = getenv("TANDEM_GGUF_OUT");
    if (export_path && export_path[0]) {
        export_for_interop(argv[1], export_path);
    } else {
        test_writer_round_trip();
        test_writer_errors();
        test_golden(argv[1]);
        test_copy_all(argv[1]);
        test_header_errors();
        test_kv_errors();
        test_tensor_errors();
        test_truncation_and_corruption();
    }

    char path[300];
    tmp_file(path, sizeof path, "round_trip.gguf");
    unlink(path);
    unlink(case_path);
    rmdir(tmp_dir);
    return test_summary();
}
