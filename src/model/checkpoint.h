/* checkpoint.h — the one resolver of a model path: a GGUF file, or a Hugging Face folder whose files (config.json,
 * weights, generation config, tokenizer, chat template, preprocessor config) are found here and nowhere else. */
#ifndef TANDEM_CHECKPOINT_H
#define TANDEM_CHECKPOINT_H

#include <jansson.h>

#include "qwen3.h"

/* The files of a checkpoint, each a malloc'd path or NULL when absent. A GGUF holds everything in one file. */
typedef struct checkpoint_files {
    bool is_gguf;
    char *path;                /* as given: the GGUF file or the HF folder */
    char *config;              /* config.json */
    char *safetensors;         /* model.safetensors: the weights in one file */
    char *safetensors_index;   /* model.safetensors.index.json: the weights in shards (wins over one file) */
    char *generation_config;   /* generation_config.json: sampling defaults, eos ids */
    char *tokenizer;           /* tokenizer.json */
    char *tokenizer_config;    /* tokenizer_config.json: special tokens, its chat_template */
    char *chat_template_json;  /* chat_template.json ({"chat_template": …}, as processors save it) */
    char *chat_template_jinja; /* chat_template.jinja */
    char *preprocessor_config; /* preprocessor_config.json: image preprocessing (Qwen3-VL) */
    bool text_config;          /* config.json nests the text model's hyperparameters under text_config */
    bool vision_config;        /* config.json has a vision_config (a vision-language model: Qwen3-VL) */
} checkpoint_files;

/* path: a folder (an HF set: the files above that exist in it) or a file (a GGUF: only path is set), or a hub
 * reference (ORG/NAME[:QUANT or FILE], src/hub) that no local path has: out->path is then where the Hugging Face
 * cache holds it. Fails only when path does not exist (a reference: is not cached) or memory runs out; what a
 * model needs is checked by checkpoint_open.
 * text_config / vision_config are left false (they come from reading config.json). */
tandem_status checkpoint_find(const char *path, checkpoint_files *out);
void checkpoint_files_free(checkpoint_files *f); /* accepts a zeroed struct */

/* A checkpoint opened for its weights: the files, the mapped weights, the config. */
typedef struct checkpoint {
    checkpoint_files files;
    gguf_file *gguf;     /* a GGUF file: its weights, metadata and tokenizer; else NULL */
    st_set *st;          /* an HF set: its safetensors, one file or every shard; else NULL */
    json_t *config_json; /* an HF set: config.json as read (its *_token_id fields name special tokens); else NULL */
    qwen3_config cfg;    /* from config.json (its text_config when it has one) or the GGUF metadata */
} checkpoint;

/* Finds the files of path and opens what a model needs: the GGUF, or config.json and the safetensors. Errors name
 * the folder and the missing file (a tokenizer-only folder, an empty one, a safetensors file given instead of its
 * folder). The caller frees with checkpoint_close, and may take gguf / st (setting them NULL) to keep them. */
tandem_status checkpoint_open(const char *path, checkpoint *out);
void checkpoint_close(checkpoint *c); /* accepts a zeroed struct */

/* Binds m's weights (m->cfg = c->cfg first) from the opened checkpoint: of a vision-language checkpoint (Qwen3-VL),
 * its text model (the vision tower is vit_load's). */
tandem_status checkpoint_bind(const checkpoint *c, qwen3_model *m);

/* config.json's JSON (root) → config, as qwen3_config_from_json; path names the file in messages. */
tandem_status qwen3_config_from_json_value(const char *path, const json_t *root, qwen3_config *cfg);

#endif
