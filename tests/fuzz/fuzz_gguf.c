/* fuzz_gguf.c — GGUF reader: bytes -> scratch file -> gguf_open -> every kv (array elements through the
 * accessors) and tensor checked against the reader's promises -> a rewrite through gguf_writer that must read
 * back identically -> qwen3_config_from_gguf and tokenizer_load_gguf on the same file.
 * Seeds: tests/golden/gguf/all_types.gguf and the tiny Q4_0 model. */
#include <math.h>

#include "fuzz_common.h"
#include "gguf.h"
#include "qwen3.h"
#include "tokenizer.h"

static void check_kv(const gguf_file *f, int64_t i) {
    const gguf_kv *kv = &f->kv[i];
    FUZZ_CHECK(kv->key && kv->key[0]);
    FUZZ_CHECK(gguf_find_kv(f, kv->key) == kv);  /* keys are unique */
    FUZZ_CHECK((unsigned)kv->type <= GGUF_TYPE_FLOAT64);
    uint32_t u32;
    float f32;
    bool b;
    gguf_str s;
    if (gguf_get_u32(f, kv->key, &u32)) FUZZ_CHECK(kv->type != GGUF_TYPE_STRING && kv->type != GGUF_TYPE_ARRAY);
    if (gguf_get_f32(f, kv->key, &f32))
        FUZZ_CHECK(kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64);
    if (gguf_get_bool(f, kv->key, &b)) FUZZ_CHECK(kv->type == GGUF_TYPE_BOOL);
    if (gguf_get_str(f, kv->key, &s)) {
        FUZZ_CHECK(kv->type == GGUF_TYPE_STRING);
        FUZZ_CHECK((const uint8_t *)s.ptr >= f->map.data && s.len <= f->map.size &&
                   (const uint8_t *)s.ptr + s.len <= f->map.data + f->map.size);
        fuzz_touch(s.ptr, s.len);
    }
    if (kv->type != GGUF_TYPE_ARRAY) return;
    FUZZ_CHECK(kv->array_type != GGUF_TYPE_ARRAY && (unsigned)kv->array_type <= GGUF_TYPE_FLOAT64);
    if (kv->array_type == GGUF_TYPE_STRING) {
        FUZZ_CHECK(kv->strings != NULL);
        for (uint64_t j = 0; j < kv->n; j++) {
            const gguf_str *e = &kv->strings[j];
            FUZZ_CHECK(e->len <= f->map.size);
            if (e->len) {
                FUZZ_CHECK((const uint8_t *)e->ptr >= f->map.data &&
                           (const uint8_t *)e->ptr + e->len <= f->map.data + f->map.size);
                fuzz_touch(e->ptr, e->len);
            }
        }
        return;
    }
    FUZZ_CHECK(kv->strings == NULL);
    double sum = 0;
    int64_t isum = 0;
    for (uint64_t j = 0; j < kv->n; j++) {
        isum ^= gguf_array_int(kv, j);
        double x = gguf_array_float(kv, j);
        if (isfinite(x)) sum += x;
    }
    (void)sum;
    (void)isum;
}

static void check_tensor(const gguf_file *f, int64_t i) {
    const gguf_tensor *t = &f->tensors[i];
    FUZZ_CHECK(t->name && t->name[0] && strlen(t->name) < 64);
    FUZZ_CHECK(gguf_find_tensor(f, t->name) == t);  /* names are unique */
    FUZZ_CHECK(t->n_dims >= 1 && t->n_dims <= 4);
    FUZZ_CHECK(tandem_type_known((int32_t)t->type));
    uint64_t nbytes = 0;
    FUZZ_CHECK(tandem_type_row_bytes(t->type, t->ne[0], &nbytes));
    for (int d = 0; d < 4; d++) {
        FUZZ_CHECK(t->ne[d] >= 1);
        if (d >= t->n_dims) FUZZ_CHECK(t->ne[d] == 1);
        if (d > 0) FUZZ_CHECK(size_mul_ok(nbytes, (uint64_t)t->ne[d], &nbytes));
    }
    FUZZ_CHECK(nbytes == t->nbytes);
    FUZZ_CHECK(t->offset % f->alignment == 0);
    FUZZ_CHECK((const uint8_t *)t->data == f->map.data + f->data_start + t->offset);
    FUZZ_CHECK(f->data_start + t->offset + t->nbytes <= f->map.size);
    const uint8_t *p = t->data;
    fuzz_touch(p, 1);
    fuzz_touch(p + t->nbytes - 1, 1);
}

/* Rewrites f with gguf_writer (every kv copied, every tensor re-added from the map) and checks that the new
 * file reads back with the same metadata and tensor bytes. */
static void check_rewrite(const gguf_file *f) {
    /* A huge general.alignment would make the rewrite pad to gigabytes; the reader accepts it when there are
     * no tensors (nothing lies past the header). */
    if (f->alignment > 4096) return;
    gguf_writer *w = NULL;
    FUZZ_CHECK(gguf_writer_init(&w) == TANDEM_OK);
    for (int64_t i = 0; i < f->n_kv; i++) {
        tandem_status st = gguf_writer_copy_kv(w, &f->kv[i]);
        if (st != TANDEM_OK) fprintf(stderr, "fuzz: copy_kv '%s': %s\n", f->kv[i].key, tandem_last_error());
        FUZZ_CHECK(st == TANDEM_OK);
    }
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        tandem_status st = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data);
        if (st != TANDEM_OK) fprintf(stderr, "fuzz: add_tensor '%s': %s\n", t->name, tandem_last_error());
        FUZZ_CHECK(st == TANDEM_OK);
    }
    char path[512];
    fuzz_path(path, sizeof path, "rewrite.gguf");
    fuzz_clear_error();
    tandem_status st = gguf_writer_write(w, path);
    gguf_writer_free(w);
    fuzz_check_failure(st);
    if (st != TANDEM_OK) {
        FUZZ_CHECK(st == TANDEM_ERR_IO);  /* e.g. the scratch folder is full; nothing else may fail */
        return;
    }
    gguf_file *g = NULL;
    st = gguf_open(path, &g);
    if (st != TANDEM_OK) fprintf(stderr, "fuzz: rewritten file does not open: %s\n", tandem_last_error());
    FUZZ_CHECK(st == TANDEM_OK);
    FUZZ_CHECK(g->n_kv == f->n_kv && g->n_tensors == f->n_tensors && g->alignment == f->alignment);
    for (int64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *a = &f->kv[i], *b = &g->kv[i];
        FUZZ_CHECK(strcmp(a->key, b->key) == 0 && a->type == b->type);
        if (a->type == GGUF_TYPE_STRING) {
            FUZZ_CHECK(a->v.str.len == b->v.str.len && memcmp(a->v.str.ptr, b->v.str.ptr, a->v.str.len) == 0);
        } else if (a->type == GGUF_TYPE_ARRAY) {
            FUZZ_CHECK(a->array_type == b->array_type && a->n == b->n);
            if (a->array_type == GGUF_TYPE_STRING) {
                for (uint64_t j = 0; j < a->n; j++)
                    FUZZ_CHECK(a->strings[j].len == b->strings[j].len &&
                               memcmp(a->strings[j].ptr, b->strings[j].ptr, a->strings[j].len) == 0);
            } else {
                static const uint8_t size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
                FUZZ_CHECK(memcmp(a->array_data, b->array_data, (size_t)a->n * size[a->array_type]) == 0);
            }
        } else if (a->type == GGUF_TYPE_FLOAT32 || a->type == GGUF_TYPE_FLOAT64) {
            FUZZ_CHECK(memcmp(&a->v.f64, &b->v.f64, 8) == 0 || (isnan(a->v.f64) && isnan(b->v.f64)));
        } else {
            FUZZ_CHECK(a->v.u64 == b->v.u64);
        }
    }
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *a = &f->tensors[i], *b = &g->tensors[i];
        FUZZ_CHECK(strcmp(a->name, b->name) == 0 && a->type == b->type && a->n_dims == b->n_dims);
        FUZZ_CHECK(memcmp(a->ne, b->ne, sizeof a->ne) == 0 && a->nbytes == b->nbytes);
        FUZZ_CHECK(memcmp(a->data, b->data, (size_t)a->nbytes) == 0);
    }
    gguf_close(g);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_write_file(path, sizeof path, "input.gguf", data, size);
    gguf_file *f = NULL;
    fuzz_clear_error();
    tandem_status st = gguf_open(path, &f);
    fuzz_check_failure(st);
    if (st != TANDEM_OK) {
        FUZZ_CHECK(f == NULL);
        return 0;
    }
    FUZZ_CHECK(f->version == 2 || f->version == 3);
    FUZZ_CHECK(f->alignment && (f->alignment & (f->alignment - 1)) == 0);
    FUZZ_CHECK(f->map.size == size);
    for (int64_t i = 0; i < f->n_kv; i++) check_kv(f, i);
    for (int64_t i = 0; i < f->n_tensors; i++) check_tensor(f, i);
    check_rewrite(f);

    qwen3_config cfg;
    fuzz_clear_error();
    st = qwen3_config_from_gguf(f, &cfg);
    fuzz_check_failure(st);
    if (st == TANDEM_OK) {
        FUZZ_CHECK(cfg.n_layers >= 1 && cfg.dim >= 1 && cfg.n_heads >= 1 && cfg.n_kv_heads >= 1);
        FUZZ_CHECK(cfg.n_heads % cfg.n_kv_heads == 0 && cfg.head_dim >= 2 && cfg.head_dim % 2 == 0);
        FUZZ_CHECK(cfg.vocab_size >= 1 && cfg.rope_theta > 0 && cfg.rms_eps > 0 && cfg.context_length > 0);
        /* M-RoPE sections (Qwen3-VL): none, or non-negative and summing to the rotary half */
        FUZZ_CHECK(cfg.rope_sections[0] >= 0 && cfg.rope_sections[1] >= 0 && cfg.rope_sections[2] >= 0);
        FUZZ_CHECK(!(cfg.rope_sections[0] || cfg.rope_sections[1] || cfg.rope_sections[2]) ||
                   cfg.rope_sections[0] + cfg.rope_sections[1] + cfg.rope_sections[2] == cfg.head_dim / 2);
        FUZZ_CHECK(cfg.n_deepstack >= 0 && cfg.n_deepstack <= 1024);
    }

    tandem_tokenizer *tok = NULL;
    fuzz_clear_error();
    st = tokenizer_load_gguf(f, &tok);
    fuzz_check_failure(st);
    gguf_close(f);  /* the tokenizer copies what it needs */
    if (st == TANDEM_OK) {
        fuzz_exercise_tokenizer(tok);
        tandem_tokenizer_free(tok);
    } else {
        FUZZ_CHECK(tok == NULL);
    }
    return 0;
}
