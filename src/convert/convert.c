/* convert.c — tandem_convert: a Hugging Face Qwen3 checkpoint folder → one GGUF with llama.cpp's tensor names,
 * qwen3.* metadata and tokenizer keys (as convert_hf_to_gguf.py writes them), each tensor typed by the recipe. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint.h"
#include "convert.h"
#include "names.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "vit.h"

tandem_convert_params tandem_convert_default_params(void) {
    return (tandem_convert_params){
        .ftype = TANDEM_FTYPE_F16, .ratio = 1.0f, .overwrite = false, .n_threads = 0, .mmproj_ftype = TANDEM_FTYPE_F16};
}

/* ---- re-encoding rows through f32 ---- */

typedef struct reencode_job {
    tandem_type src_type, dst_type;
    const uint8_t *src;
    uint8_t *dst;            /* NULL: check only */
    int64_t n_rows, cols, rows_per_task;
    size_t src_row_bytes, dst_row_bytes;
    float *scratch;          /* (threads, cols) */
    void *aligned;           /* (threads, src_row_bytes) for misaligned float sources */
    int64_t *bad_row;        /* (tasks) first refused row of each task, or -1 */
} reencode_job;

static void reencode_task(int task, int thread, void *arg) {
    reencode_job *j = arg;
    float *row = j->scratch + (size_t)thread * (size_t)j->cols;
    const int64_t r0 = (int64_t)task * j->rows_per_task;
    const int64_t r1 = r0 + j->rows_per_task < j->n_rows ? r0 + j->rows_per_task : j->n_rows;
    const bool quantized_dst = tandem_type_block_size(j->dst_type) > 1;
    const size_t elem = (size_t)tandem_type_size(j->src_type);
    j->bad_row[task] = -1;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *src = j->src + (size_t)r * j->src_row_bytes;
        /* safetensors only promises byte offsets; the row kernels read f32/f16 through typed pointers */
        if (tandem_type_block_size(j->src_type) == 1 && (uintptr_t)src % elem != 0) {
            uint8_t *copy = (uint8_t *)j->aligned + (size_t)thread * j->src_row_bytes;
            memcpy(copy, src, j->src_row_bytes);
            src = copy;
        }
        dequantize_row(j->src_type, src, row, j->cols);
        bool ok = true;
        for (int64_t i = 0; i < j->cols && ok; i++) ok = isfinite(row[i]);
        if (ok && quantized_dst) ok = quantize_prepare_row(row, j->cols);
        if (!ok) {
            j->bad_row[task] = r;
            return;
        }
        if (j->dst) quantize_row(j->dst_type, row, j->dst + (size_t)r * j->dst_row_bytes, j->cols);
    }
}

tandem_status reencode_rows(thread_pool *pool, tandem_type src_type, const void *src, tandem_type dst_type, void *dst,
                            int64_t n_rows, int64_t cols, int64_t *bad_row) {
    *bad_row = -1;
    uint64_t src_row_bytes, dst_row_bytes;
    if (!tandem_type_row_bytes(src_type, cols, &src_row_bytes) || !tandem_type_row_bytes(dst_type, cols, &dst_row_bytes) ||
        !kernel_can_quantize(dst_type) || !kernel_type_supported(src_type))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "cannot re-encode rows of %lld %s values as %s", (long long)cols,
                           tandem_type_name(src_type), tandem_type_name(dst_type));
    const int threads = thread_pool_size(pool);
    int64_t n_tasks = (int64_t)threads * 4;
    if (n_tasks > n_rows) n_tasks = n_rows > 0 ? n_rows : 1;
    reencode_job j = {.src_type = src_type, .dst_type = dst_type, .src = src, .dst = dst, .n_rows = n_rows,
                      .cols = cols, .rows_per_task = (n_rows + n_tasks - 1) / n_tasks,
                      .src_row_bytes = (size_t)src_row_bytes, .dst_row_bytes = (size_t)dst_row_bytes};
    if (j.rows_per_task < 1) j.rows_per_task = 1;
    j.scratch = malloc((size_t)threads * (size_t)cols * sizeof(float));
    j.aligned = malloc((size_t)threads * j.src_row_bytes + 16);
    j.bad_row = malloc((size_t)n_tasks * sizeof *j.bad_row);
    tandem_status st = TANDEM_OK;
    if (!j.scratch || !j.aligned || !j.bad_row) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory re-encoding rows of %lld values", (long long)cols);
        goto done;
    }
    thread_pool_run(pool, (int)n_tasks, reencode_task, &j);
    for (int64_t t = 0; t < n_tasks; t++) {
        if (j.bad_row[t] >= 0) {
            *bad_row = j.bad_row[t];
            st = TANDEM_ERR_FORMAT;  /* the caller words the message: it knows the tensor's name */
            break;
        }
    }
done:
    free(j.scratch);
    free(j.aligned);
    free(j.bad_row);
    return st;
}

/* ---- the HF tensor layout ---- */

typedef struct hf_tensor {
    char gguf_name[64];
    char hf_name[96];
} hf_tensor;

/* Every tensor of cfg's model, in the order tests/gen/qwen3_gguf.py writes them (llama.cpp reads any order). */
static int32_t hf_layout(const qwen3_config *c, tensor_naming hf_naming, hf_tensor *out) {
    int32_t n = 0;
#define ADD(t, l)                                                                     \
    (qwen3_tensor_name(t, l, NAMING_GGUF, out[n].gguf_name, sizeof out[n].gguf_name), \
     qwen3_tensor_name(t, l, hf_naming, out[n].hf_name, sizeof out[n].hf_name), n++)
    ADD(QWEN3_TOKEN_EMBD, -1);
    for (int32_t l = 0; l < c->n_layers; l++)
        for (int t = QWEN3_ATTN_NORM; t <= QWEN3_FFN_DOWN; t++) ADD((qwen3_tensor)t, l);
    ADD(QWEN3_OUTPUT_NORM, -1);
    if (!c->tied_embeddings) ADD(QWEN3_OUTPUT, -1);
#undef ADD
    return n;
}

static const char *shard_path(const st_set *s, const st_tensor *t) { return s->shards[t->shard].path; }

/* Every checkpoint tensor must be one tandem knows, in a dtype it can read (a Qwen3-VL folder's vision tensors are
 * vit_load's to check). */
static tandem_status check_checkpoint_names(const st_set *s, const qwen3_config *c, const hf_tensor *layout, int32_t n,
                                            bool vl) {
    for (int64_t i = 0; i < s->n_tensors; i++) {
        const st_tensor *t = &s->tensors[i];
        if (vl && convert_vl_is_vision_name(t->name)) continue;
        bool known = false;
        for (int32_t k = 0; k < n && !known; k++) known = !strcmp(layout[k].hf_name, t->name);
        size_t len = strlen(t->name);
        static const char INV_FREQ[] = ".rotary_emb.inv_freq";  /* a buffer older checkpoints saved; recomputed */
        if (!known && len >= sizeof INV_FREQ - 1 && !strcmp(t->name + len - (sizeof INV_FREQ - 1), INV_FREQ)) continue;
        /* equals the embeddings */
        if (!known && c->tied_embeddings && !strcmp(t->name, qwen3_global_name(QWEN3_OUTPUT, NAMING_HF))) continue;
        if (!known)
            return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: tensor '%s': unknown tensor name for a Qwen3%s checkpoint",
                               shard_path(s, t), t->name, vl ? "-VL" : "");
        if (t->type < 0)
            return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported (F32, F16 or BF16)",
                               shard_path(s, t), t->name, t->dtype);
    }
    return TANDEM_OK;
}

/* ---- the output file ---- */

tandem_status convert_check_output(const char *out_path, bool overwrite) {
    if (!out_path || !out_path[0]) return tandem_fail(TANDEM_ERR_INVALID_ARG, "no output file given");
    if (path_is_dir(out_path)) return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: is a folder, not a file", out_path);
    if (path_exists(out_path) && !overwrite)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "%s: already exists (set tandem_convert_params.overwrite to replace it)", out_path);
    return TANDEM_OK;
}

/* One tensor made at write time: re-encoded (or checked and copied) into the writer's buffer. */
typedef struct fill_job {
    const convert_source *src;
    tandem_type type;
    thread_pool *pool;
    const tandem_convert_params *p;
    int64_t *done, total;  /* elements, over all tensors */
} fill_job;

static tandem_status fill_tensor(void *user, void *dst, size_t nbytes) {
    const fill_job *j = user;
    const convert_source *s = j->src;
    const bool same = j->type == s->type;
    int64_t bad = -1;
    tandem_status st = TANDEM_OK;
    /* a tensor copied as it is only needs checking when it comes from an unquantized checkpoint */
    if (!same || s->check_copies) st = reencode_rows(j->pool, s->type, s->data, j->type, same ? NULL : dst, s->rows,
                                                     s->cols, &bad);
    if (st == TANDEM_ERR_FORMAT && bad >= 0)
        return tandem_fail(TANDEM_ERR_FORMAT,
                           "%s: tensor '%s': row %lld has values %s cannot store (NaN, infinity or a magnitude above "
                           "2^30); refusing to convert it",
                           s->file, s->label, (long long)bad, tandem_type_name(j->type));
    if (st) return st;
    if (same) memcpy(dst, s->data, nbytes);
    *j->done += s->rows * s->cols;
    if (j->p->progress && !j->p->progress("convert", *j->done, j->total, j->p->user))
        return tandem_fail(TANDEM_ERR_ABORTED, "%s: stopped", s->file);
    return TANDEM_OK;
}

tandem_status convert_write_tensors(gguf_writer *w, thread_pool *pool, const convert_source *src, int32_t n,
                                    const tandem_type *types, const char *out_path, const tandem_convert_params *p) {
    fill_job *jobs = calloc((size_t)(n > 0 ? n : 1), sizeof *jobs);
    if (!jobs) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", out_path);
    int64_t total = 0, done = 0;
    for (int32_t i = 0; i < n; i++) total += src[i].rows * src[i].cols;
    tandem_status st = TANDEM_OK;
    for (int32_t i = 0; i < n && !st; i++) {
        const convert_source *s = &src[i];
        uint64_t row_bytes;
        if (!tandem_type_row_bytes(types[i], s->cols, &row_bytes)) {
            st = tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: tensor '%s': %lld columns are not whole %s blocks", s->file,
                             s->label, (long long)s->cols, tandem_type_name(types[i]));
            break;
        }
        jobs[i] = (fill_job){.src = s, .type = types[i], .pool = pool, .p = p, .done = &done, .total = total};
        st = gguf_writer_add_tensor_fill(w, s->gguf_name, types[i], s->n_dims, s->ne, fill_tensor, &jobs[i]);
    }
    if (!st) st = gguf_writer_write(w, out_path);
    free(jobs);
    return st;
}

/* The template file given to replace the folder's, read and checked to parse (a broken template fails here, not
 * later in every program that loads the GGUF). *out: NUL-terminated, malloc'd; NULL without a path. */
static tandem_status read_template_override(const char *path, char **out) {
    *out = NULL;
    if (!path) return TANDEM_OK;
    mapped_file mf;
    tandem_status st = mapped_file_open(path, &mf);
    if (st) return st;
    tandem_chat_template *t = NULL;
    const char *text = mf.size ? (const char *)mf.data : ""; /* an empty file is an empty template */
    if (memchr(text, '\0', mf.size))
        st = tandem_fail(TANDEM_ERR_FORMAT, "tandem_convert: chat_template_path: %s holds a NUL byte", path);
    else if (!(st = tandem_chat_template_parse(text, mf.size, path, &t)) && (*out = malloc(mf.size + 1))) {
        memcpy(*out, text, mf.size);
        (*out)[mf.size] = '\0';
    } else if (!st) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_convert: out of memory");
    }
    tandem_chat_template_free(t);
    mapped_file_close(&mf);
    return st;
}

tandem_status tandem_convert(const char *hf_dir, const char *out_path, const tandem_convert_params *params) {
    tandem_convert_params defaults = tandem_convert_default_params();
    const tandem_convert_params *p = params ? params : &defaults;
    if (!hf_dir) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_convert: no checkpoint folder given");
    tandem_status st = convert_check_output(out_path, p->overwrite);
    if (st) return st;
    if (!path_is_dir(hf_dir)) return tandem_fail(TANDEM_ERR_IO, "%s: not a folder (expected a Hugging Face checkpoint)", hf_dir);

    checkpoint ck;
    qwen3_model bound = {0};
    tandem_tokenizer *tok = NULL;
    gguf_writer *w = NULL;
    thread_pool *pool = NULL;
    hf_tensor *layout = NULL;
    convert_source *src = NULL;
    planned_tensor *plan = NULL;
    tandem_type *types = NULL;
    char *name = NULL, *tmpl = NULL;
    int32_t n = 0;
    if ((st = read_template_override(p->chat_template_path, &tmpl))) return st;
    if ((st = checkpoint_open(hf_dir, &ck))) {
        free(tmpl);
        return st;
    }
    qwen3_config cfg = ck.cfg;
    const st_set *set = ck.st;
    const bool vl = ck.files.vision_config; /* Qwen3-VL: the text model here, the vision tower in an mmproj file */
    char *mmproj = NULL;
    if (!vl && p->mmproj_path) {
        st = tandem_fail(TANDEM_ERR_INVALID_ARG,
                         "tandem_convert: mmproj_path is set but %s has no vision tower (config.json has no "
                         "vision_config)",
                         hf_dir);
        goto done;
    }
    vit_model *tower = NULL; /* the vision tower checked (config, names, dtypes, shapes) before anything is written */
    if (vl && ((st = convert_vl_mmproj_path(out_path, p, &mmproj)) || (st = vit_load(hf_dir, &tower)) ||
               (st = convert_vl_check_tower(hf_dir, vit_model_config(tower))))) {
        vit_free(tower);
        goto done;
    }
    vit_free(tower);
    const size_t max_tensors = 3 + (size_t)cfg.n_layers * QWEN3_BLOCK_TENSORS;
    layout = calloc(max_tensors, sizeof *layout);
    src = calloc(max_tensors, sizeof *src);
    plan = calloc(max_tensors, sizeof *plan);
    types = calloc(max_tensors, sizeof *types);
    name = path_base_name(hf_dir);
    if (!layout || !src || !plan || !types || !name) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", hf_dir);
        goto done;
    }
    n = hf_layout(&cfg, vl ? NAMING_HF_VL : NAMING_HF, layout); /* Qwen3-VL nests the text model */
    /* names and dtypes first (the messages name the shard), then presence and shapes against config.json */
    if ((st = check_checkpoint_names(set, &cfg, layout, n, vl))) goto done;
    if ((st = checkpoint_bind(&ck, &bound))) goto done;
    if ((st = tokenizer_load_files(&ck.files, &tok))) goto done;
    if (tandem_tokenizer_vocab_size(tok) > cfg.vocab_size) {
        st = tandem_fail(TANDEM_ERR_MISMATCH, "%s: the tokenizer has %d tokens but config.json's vocab_size is %d", hf_dir,
                         tandem_tokenizer_vocab_size(tok), cfg.vocab_size);
        goto done;
    }

    for (int32_t i = 0; i < n; i++) {
        const st_tensor *t = safetensors_find(set, layout[i].hf_name);
        convert_source *s = &src[i];
        s->gguf_name = layout[i].gguf_name;
        s->label = t->name;
        s->file = shard_path(set, t);
        s->type = (tandem_type)t->type;
        s->data = t->data;
        s->n_dims = t->n_dims;
        s->cols = t->shape[t->n_dims - 1];
        s->rows = t->n_dims == 2 ? t->shape[0] : 1;
        for (int d = 0; d < 4; d++) s->ne[d] = d < t->n_dims ? t->shape[t->n_dims - 1 - d] : 1;
        s->check_copies = true;
        plan[i] = (planned_tensor){.name = s->gguf_name, .n_dims = t->n_dims, .cols = s->cols,
                                   .n_elements = s->rows * s->cols};
        tensor_kind_of(s->gguf_name, &plan[i].kind, &plan[i].layer);
    }
    recipe r = {.ftype = p->ftype, .ratio = p->ratio, .n_layers = cfg.n_layers, .n_gqa = cfg.n_heads / cfg.n_kv_heads,
                .tied = cfg.tied_embeddings};
    if ((st = recipe_plan(&r, plan, n, types))) goto done;
    if ((st = thread_pool_create(p->n_threads > 0 ? p->n_threads : cpu_count(), &pool))) goto done;
    if ((st = gguf_writer_init(&w))) goto done;
    if ((st = qwen3_config_write_gguf(w, &cfg, name, (uint32_t)p->ftype))) goto done;
    if ((st = tokenizer_write_gguf_keys(w, hf_dir, ck.config_json, cfg.vocab_size, tmpl))) goto done;
    if ((st = convert_write_tensors(w, pool, src, n, types, out_path, p))) goto done;
    if (vl && (st = convert_vl_write_mmproj(hf_dir, set, pool, mmproj, p))) remove(out_path); /* the pair or nothing */
done:
    free(mmproj);
    free(types);
    free(plan);
    free(src);
    free(layout);
    free(name);
    free(tmpl);
    gguf_writer_free(w);
    thread_pool_free(pool);
    tandem_tokenizer_free(tok);
    qwen3_model_release(&bound);
    checkpoint_close(&ck);
    return st;
}
