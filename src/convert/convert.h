/* convert.h — internals of tandem_convert / tandem_quantize_file: the recipe that picks each tensor's type,
 * and the threaded re-encoding of tensors. Depends on model, tokenizer, kernels, io and base. */
#ifndef TANDEM_CONVERT_H
#define TANDEM_CONVERT_H

#include <jansson.h>

#include "gguf.h"
#include "kernels.h"
#include "qwen3.h"
#include "vit.h"

/* What kind of weight a GGUF tensor name is (llama-quantize's categories, for Qwen3). */
typedef enum tensor_kind {
    KIND_OTHER = 0,  /* 1-D tensors: norms (always F32) */
    KIND_TOKEN_EMBD,
    KIND_OUTPUT,
    KIND_ATTN_Q,
    KIND_ATTN_K,
    KIND_ATTN_V,
    KIND_ATTN_OUTPUT,
    KIND_FFN_GATE,
    KIND_FFN_UP,
    KIND_FFN_DOWN,
} tensor_kind;

/* One tensor to plan: its GGUF name, layer and shape. */
typedef struct planned_tensor {
    const char *name;  /* GGUF name */
    tensor_kind kind;
    int32_t layer;     /* blk.N → N; -1 outside the blocks */
    int32_t n_dims;
    int64_t cols;      /* ne[0]: the length of one row (quantization blocks run along it) */
    int64_t n_elements;
} planned_tensor;

/* kind and layer from a GGUF name; false for a name a Qwen3 file does not have. */
bool tensor_kind_of(const char *name, tensor_kind *kind, int32_t *layer);

typedef struct recipe {
    tandem_ftype ftype;
    float ratio;          /* see tandem_convert_params.ratio */
    int32_t n_layers;
    int32_t n_gqa;        /* n_heads / n_kv_heads */
    bool tied;            /* token_embd.weight doubles as the output head */
} recipe;

/* True for the 2-bit … 6-bit recipes that --ratio can mix with Q8_0. */
bool recipe_accepts_ratio(tandem_ftype f);
/* types[i] = the type tensors[i] is stored as under r. Fails for an unknown ftype or a bad ratio. */
tandem_status recipe_plan(const recipe *r, const planned_tensor *tensors, int32_t n, tandem_type *types);

/* Re-encodes n_rows rows of cols values from src_type to dst_type through f32, rows split over the pool.
 * Every row must hold finite values; rows going to a quantized type must also pass quantize_input_ok
 * (values below 2^-30 in magnitude are flushed to 0 first: they round to 0 in every block type anyway).
 * On failure *bad_row names the first row that was refused. */
tandem_status reencode_rows(thread_pool *pool, tandem_type src_type, const void *src, tandem_type dst_type, void *dst,
                            int64_t n_rows, int64_t cols, int64_t *bad_row);

/* ---- shared by tandem_convert and tandem_quantize_file (convert.c) ---- */

/* One tensor to write: where its bytes come from and what it is called in the output. */
typedef struct convert_source {
    const char *gguf_name;  /* output name */
    const char *label;      /* name in the source, for messages */
    const char *file;       /* source file, for messages */
    tandem_type type;       /* source type */
    const void *data;
    int32_t n_dims;
    int64_t ne[4];          /* GGUF order (innermost first) */
    int64_t rows, cols;     /* cols = ne[0]; rows = the product of the others */
    bool check_copies;      /* check values even when the bytes are copied as they are */
} convert_source;

/* An error naming out_path if it exists (and !overwrite) or is a folder. */
tandem_status convert_check_output(const char *out_path, bool overwrite);
/* Adds every tensor to w, to be made at write time (one at a time: memory stays at the largest tensor), and
 * writes out_path. Progress: stage "convert", counted in elements. A refused tensor or a stop leaves no file. */
tandem_status convert_write_tensors(gguf_writer *w, thread_pool *pool, const convert_source *src, int32_t n,
                                    const tandem_type *types, const char *out_path, const tandem_convert_params *p);

/* ---- Qwen3-VL folders (convert_vl.c) ---- */

/* model.visual.* or visual.*: the vision tower's, written to the mmproj file. */
bool convert_vl_is_vision_name(const char *hf);
/* The mmproj output (p->mmproj_path, or mmproj-<file name> beside out_path), checked as an output; *mmproj
 * malloc'd (also on failure: the caller frees it). */
tandem_status convert_vl_mmproj_path(const char *out_path, const tandem_convert_params *p, char **mmproj);
/* A tower llama.cpp's mmproj layout can describe: 3 channels, 2 frames, tanh GELU, rotary θ 10000 (the layout has
 * no keys for them); else TANDEM_ERR_UNSUPPORTED naming the vision_config field. */
tandem_status convert_vl_check_tower(const char *dir, const vit_config *c);
/* The vision tower of the folder's weights (set) as an mmproj GGUF at out_path, matrices as p->mmproj_ftype. */
tandem_status convert_vl_write_mmproj(const char *hf_dir, const st_set *set, thread_pool *pool, const char *out_path,
                                      const tandem_convert_params *p);

#endif
