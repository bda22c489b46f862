/* gguf.h — reading and writing GGUF files (v2/v3, little-endian): metadata, tensor infos, mapped data.
 * Every length, count and offset is validated against the file size before use. Depends on base only. */
#ifndef TANDEM_GGUF_H
#define TANDEM_GGUF_H

#include "tandem_base.h"

typedef enum gguf_value_type {
    GGUF_TYPE_UINT8 = 0, GGUF_TYPE_INT8 = 1, GGUF_TYPE_UINT16 = 2, GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4, GGUF_TYPE_INT32 = 5, GGUF_TYPE_FLOAT32 = 6, GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9, GGUF_TYPE_UINT64 = 10, GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
} gguf_value_type;

typedef struct gguf_str {
    const char *ptr;  /* into the mapped file: NOT NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    char *key;                   /* owned, NUL-terminated */
    gguf_value_type type;
    /* scalars (type != ARRAY), widened: */
    union {
        uint64_t u64;            /* UINT8/16/32/64 and BOOL (0/1) */
        int64_t i64;             /* INT8/16/32/64 */
        double f64;              /* FLOAT32/64 */
        gguf_str str;            /* STRING */
    } v;
    /* arrays (type == ARRAY): */
    gguf_value_type array_type;
    uint64_t n;                  /* element count */
    const uint8_t *array_data;   /* fixed-size elements, packed, in the map (unaligned: read with memcpy) */
    gguf_str *strings;           /* owned index of n strings when array_type == STRING, else NULL */
} gguf_kv;

typedef struct gguf_tensor {
    char *name;                  /* owned, NUL-terminated, unique, < 64 bytes */
    tandem_type type;
    int32_t n_dims;              /* 1..4 */
    int64_t ne[4];               /* innermost (contiguous) first, as stored; missing dims are 1 */
    uint64_t offset;             /* relative to the data section */
    uint64_t nbytes;
    const void *data;            /* in the map */
} gguf_tensor;

typedef struct gguf_file {
    mapped_file map;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_start;
    int64_t n_kv;
    gguf_kv *kv;
    int64_t n_tensors;
    gguf_tensor *tensors;
} gguf_file;

/* Opens and validates (§1.7 of the format: counts, lengths, types, alignment, bounds, overlaps, unique
 * names). Errors name the file and the key or tensor at fault. Reads only the header pages. */
tandem_status gguf_open(const char *path, gguf_file **out);
void gguf_close(gguf_file *f);  /* accepts NULL */

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Typed reads that accept any integer width/sign (ints) or f32/f64 (floats); false if absent, of another
 * kind, or out of range for the destination. */
bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
bool gguf_get_f32(const gguf_file *f, const char *key, float *out);
bool gguf_get_bool(const gguf_file *f, const char *key, bool *out);
bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
/* Element i of an integer / float array kv (caller checks i < kv->n and the array's kind). */
int64_t gguf_array_int(const gguf_kv *kv, uint64_t i);
double gguf_array_float(const gguf_kv *kv, uint64_t i);

/* ---- writer ---- */

/* Builds a GGUF in memory-light fashion: metadata and tensor infos are collected, then write streams the
 * header and copies tensor data from the caller's pointers (which must stay valid until write). */
typedef struct gguf_writer gguf_writer;
tandem_status gguf_writer_init(gguf_writer **out);
void gguf_writer_free(gguf_writer *w);
tandem_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
tandem_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
tandem_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
tandem_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
tandem_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v, size_t len);
tandem_status gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n);
tandem_status gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *v, size_t n);
tandem_status gguf_writer_set_arr_bool(gguf_writer *w, const char *key, const bool *v, size_t n);
tandem_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const gguf_str *v, size_t n);
/* Copies an existing kv (any type, arrays included) from a file being rewritten. */
tandem_status gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv);
/* ne innermost first (GGUF order). data: nbytes of the tensor, borrowed until gguf_writer_write. */
tandem_status gguf_writer_add_tensor(gguf_writer *w, const char *name, tandem_type type, int32_t n_dims,
                                     const int64_t *ne, const void *data);
/* Makes a tensor's nbytes bytes at write time into dst (a buffer the writer owns), so that a converter holds
 * one tensor at a time; a failure (with tandem_fail) stops the write and leaves no file. */
typedef tandem_status (*gguf_tensor_fill)(void *user, void *dst, size_t nbytes);
tandem_status gguf_writer_add_tensor_fill(gguf_writer *w, const char *name, tandem_type type, int32_t n_dims,
                                          const int64_t *ne, gguf_tensor_fill fill, void *user);
/* Called after each tensor's data is written (done of total tensors); returning false stops the write
 * (TANDEM_ERR_ABORTED, temporary file removed). */
typedef bool (*gguf_write_progress)(size_t done, size_t total, void *user);
void gguf_writer_set_progress(gguf_writer *w, gguf_write_progress fn, void *user);
/* Writes to "path.tmp.XXXXXX" and renames onto path at the end; a failure leaves no file at path. */
tandem_status gguf_writer_write(gguf_writer *w, const char *path);

#endif
