/* names.h — the tensor names of a Qwen3 model, written once: llama.cpp's GGUF names and Hugging Face's, for the
 * global tensors and the 11 of every block. The loader, convert, train and prune all name tensors through here. */
#ifndef TANDEM_NAMES_H
#define TANDEM_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* Every tensor kind of a Qwen3 model, in GGUF file order (tests/gen/qwen3_gguf.py writes them so): the token
 * embeddings, the block tensors, the final norm, the output head (absent when the embeddings are tied). */
typedef enum qwen3_tensor {
    QWEN3_TOKEN_EMBD,
    QWEN3_ATTN_NORM, /* the first block tensor */
    QWEN3_ATTN_Q,
    QWEN3_ATTN_K,
    QWEN3_ATTN_V,
    QWEN3_ATTN_Q_NORM,
    QWEN3_ATTN_K_NORM,
    QWEN3_ATTN_OUTPUT,
    QWEN3_FFN_NORM,
    QWEN3_FFN_GATE,
    QWEN3_FFN_UP,
    QWEN3_FFN_DOWN, /* the last block tensor */
    QWEN3_OUTPUT_NORM,
    QWEN3_OUTPUT,
    QWEN3_N_TENSORS,
} qwen3_tensor;

enum { QWEN3_BLOCK_TENSORS = QWEN3_FFN_DOWN - QWEN3_ATTN_NORM + 1 };

/* Which naming: llama.cpp's ("blk.0.attn_q.weight"), Hugging Face's ("model.layers.0.self_attn.q_proj.weight"), or
 * Hugging Face's for the text model of a Qwen3-VL checkpoint ("model.language_model.layers.0.self_attn.q_proj.weight",
 * "model.language_model.embed_tokens.weight", "lm_head.weight"). */
typedef enum tensor_naming { NAMING_GGUF, NAMING_HF, NAMING_HF_VL } tensor_naming;

/* What precedes a block tensor's layer number: "blk.", "model.layers." or "model.language_model.layers.". */
const char *qwen3_block_prefix(tensor_naming naming);
static inline bool qwen3_tensor_in_block(qwen3_tensor t) { return t >= QWEN3_ATTN_NORM && t <= QWEN3_FFN_DOWN; }
/* The name of tensor t (of layer `layer` for a block tensor; layer is ignored otherwise) into out; false when
 * it does not fit in cap bytes. */
bool qwen3_tensor_name(qwen3_tensor t, int layer, tensor_naming naming, char *out, size_t cap);
/* A global tensor's name ("token_embd.weight", "lm_head.weight", …); t must not be a block tensor. */
const char *qwen3_global_name(qwen3_tensor t, tensor_naming naming);
/* The kind and layer (-1 for a global tensor) a name in naming denotes; false for a name a Qwen3 model does not
 * have. Layer numbers are written as qwen3_tensor_name writes them (decimal, no sign, no leading zero). */
bool qwen3_tensor_parse(const char *name, tensor_naming naming, qwen3_tensor *t, int *layer);
/* The layer of any name starting with the block prefix and a decimal layer number followed by '.', else -1
 * (whatever follows: a tensor of a layer beyond the config is an error the loader names). */
long long qwen3_layer_of_name(const char *name, tensor_naming naming);
/* name (in naming from) in the other naming, into out; false for an unknown name or one that does not fit. */
bool qwen3_tensor_rename(const char *name, tensor_naming from, char *out, size_t cap);

#endif
