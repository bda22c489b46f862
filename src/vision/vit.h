/* vit.h — the Qwen3-VL vision tower: pixel_values (image.h) → image embeddings (the merger's rows, as wide as the
 * text model) and the DeepStack features, with vision_config from config.json and weights from safetensors. */
#ifndef TANDEM_VISION_VIT_H
#define TANDEM_VISION_VIT_H

#include "image.h"
#include "tandem_base.h"

enum { VIT_MAX_DEEPSTACK = 16 };

typedef enum { VIT_GELU_TANH, VIT_GELU_ERF } vit_activation;

/* Qwen3VLVisionConfig. Absent fields take transformers' defaults; present ones must be valid. */
typedef struct vit_config {
    int32_t depth;                              /* blocks */
    int32_t hidden, n_heads, head_dim, ffn_dim; /* hidden_size, num_heads, hidden/num_heads, intermediate_size */
    int32_t in_channels, patch_size, temporal_patch_size, merge_size; /* merge_size: spatial_merge_size */
    int32_t out_hidden;                 /* out_hidden_size: the text model's hidden size */
    int32_t n_positions, position_side; /* num_position_embeddings = position_side² (the learned table) */
    int32_t n_deepstack, deepstack_layers[VIT_MAX_DEEPSTACK]; /* deepstack_visual_indexes, in order */
    vit_activation activation; /* the blocks' MLP (hidden_act); the mergers use erf GELU */
    float rope_theta;          /* rope_parameters.rope_theta (axial 2-D rotary) */
    float norm_eps;            /* every LayerNorm's (1e-6, fixed in transformers) */
} vit_config;

/* vision_config of a parsed config.json (path only labels messages): TANDEM_ERR_FORMAT naming the file and
 * vision_config.<field> for a missing vision_config or an invalid field, TANDEM_ERR_UNSUPPORTED for a hidden_act,
 * rope type or model_type tandem does not run. */
tandem_status vit_config_from_json_value(const char *path, const json_t *root, vit_config *c);
tandem_status vit_config_from_json(const char *path, vit_config *c);

typedef struct vit_model vit_model;

/* The vision tower of a Hugging Face Qwen3-VL folder (config.json, model.safetensors or an index and shards):
 * tensors model.visual.* (or visual.*) of type F32, F16 or BF16, their shapes checked against the config. */
tandem_status vit_load(const char *dir, vit_model **out);
/* The vision tower of an mmproj GGUF in llama.cpp's layout (general.architecture "clip", clip.projector_type
 * "qwen3vl_merger", clip.vision.* hyperparameters, v.* / mm.* tensors incl. v.deepstack.L.* and the patch kernel
 * split by frame), matrices F32, F16, BF16 or Q8_0: the same model as vit_load's. Errors name the file and the key
 * or tensor at fault. */
tandem_status vit_load_gguf(const char *path, vit_model **out);
void vit_free(vit_model *m); /* accepts NULL */
/* llama.cpp's name of the tensor transformers calls model.visual.<hf> (c: the DeepStack block numbers; the second
 * frame of the patch kernel is "patch_embed.proj.weight.1"); false for a name the layout does not have. */
bool vit_gguf_tensor_name(const vit_config *c, const char *hf, char *out, size_t cap);
const vit_config *vit_model_config(const vit_model *m);

/* Rows the encoder returns for an image: grid_t·grid_h·grid_w / merge_size². */
int64_t vit_image_tokens(const vit_config *c, const vision_pixels *img);

/* Encodes n_images ≥ 1 images in one pass (attention within each image's temporal frames, as transformers'
 * cu_seqlens): embeds (Σ tokens, out_hidden) the merger's output, the images' rows one after the other, each
 * image's in raster order of its merged grid; deepstack (n_deepstack, Σ tokens, out_hidden) the DeepStack
 * mergers' outputs in deepstack_visual_indexes order, or NULL when not wanted. Matrix products and per-row work
 * go to pool (NULL: the calling thread). TANDEM_ERR_INVALID_ARG for pixels that do not fit the config. */
tandem_status vit_encode(const vit_model *m, thread_pool *pool, const vision_pixels *images, int n_images,
                         float *embeds, float *deepstack);

#endif
