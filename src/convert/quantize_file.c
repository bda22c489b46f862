/* quantize_file.c — tandem_quantize_file: a Qwen3 GGUF re-encoded to another file type (llama-quantize's job):
 * metadata copied, general.file_type updated, every tensor typed by the recipe. */
#include <stdlib.h>

#include "convert.h"

tandem_status tandem_quantize_file(const char *in_path, const char *out_path, const tandem_convert_params *params) {
    tandem_convert_params defaults = tandem_convert_default_params();
    const tandem_convert_params *p = params ? params : &defaults;
    if (!in_path) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_quantize_file: no input file given");
    tandem_status st = convert_check_output(out_path, p->overwrite);
    if (st) return st;

    gguf_file *f = NULL;
    qwen3_model bound = {0};
    gguf_writer *w = NULL;
    thread_pool *pool = NULL;
    convert_source *src = NULL;
    planned_tensor *plan = NULL;
    tandem_type *types = NULL;
    int32_t n = 0;
    if ((st = gguf_open(in_path, &f))) goto done;
    /* the same checks as loading: architecture, hyperparameters, every tensor's presence, shape and type */
    if ((st = qwen3_config_from_gguf(f, &bound.cfg))) goto done;
    const qwen3_config cfg = bound.cfg;
    if ((st = qwen3_bind_gguf(&bound, f))) goto done;
    n = (int32_t)f->n_tensors;
    src = calloc((size_t)n + 1, sizeof *src);
    plan = calloc((size_t)n + 1, sizeof *plan);
    types = calloc((size_t)n + 1, sizeof *types);
    if (!src || !plan || !types) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", in_path);
        goto done;
    }
    for (int32_t i = 0; i < n; i++) {
        const gguf_tensor *t = &f->tensors[i];
        convert_source *s = &src[i];
        if (!tensor_kind_of(t->name, &plan[i].kind, &plan[i].layer) || plan[i].layer >= cfg.n_layers) {
            st = tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: tensor '%s': unknown tensor name for a Qwen3 model", in_path,
                             t->name);
            goto done;
        }
        if (!kernel_type_supported(t->type)) {
            st = tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: tensor '%s': type %s cannot be read", in_path, t->name,
                             tandem_type_name(t->type));
            goto done;
        }
        *s = (convert_source){.gguf_name = t->name, .label = t->name, .file = in_path, .type = t->type,
                              .data = t->data, .n_dims = t->n_dims, .cols = t->ne[0],
                              .rows = t->ne[1] * t->ne[2] * t->ne[3], .check_copies = false};
        memcpy(s->ne, t->ne, sizeof s->ne);
        plan[i] = (planned_tensor){.name = t->name, .kind = plan[i].kind, .layer = plan[i].layer,
                                   .n_dims = t->n_dims, .cols = s->cols, .n_elements = s->rows * s->cols};
    }
    recipe r = {.ftype = p->ftype, .ratio = p->ratio, .n_layers = cfg.n_layers, .n_gqa = cfg.n_heads / cfg.n_kv_heads,
                .tied = cfg.tied_embeddings};
    if ((st = recipe_plan(&r, plan, n, types))) goto done;
    if ((st = thread_pool_create(p->n_threads > 0 ? p->n_threads : cpu_count(), &pool))) goto done;
    if ((st = gguf_writer_init(&w))) goto done;
    for (int64_t i = 0; i < f->n_kv; i++)
        if ((st = gguf_writer_copy_kv(w, &f->kv[i]))) goto done;
    if ((st = gguf_writer_set_u32(w, "general.file_type", (uint32_t)p->ftype)) ||
        (st = gguf_writer_set_u32(w, "general.quantization_version", 2)))
        goto done;
    st = convert_write_tensors(w, pool, src, n, types, out_path, p);
done:
    free(types);
    free(plan);
    free(src);
    gguf_writer_free(w);
    thread_pool_free(pool);
    qwen3_model_release(&bound);
    gguf_close(f);
    return st;
}
