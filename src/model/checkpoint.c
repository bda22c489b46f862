/* checkpoint.c — a model path resolved once: which files of a Hugging Face folder exist (the layout lives here
 * only), and the GGUF or the config + safetensors opened with errors that name the folder and the missing file. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint.h"
#include "hub.h"

/* The Hugging Face folder layout: each file a checkpoint may hold, and where its path goes. */
typedef struct hf_file {
    const char *name;
    size_t offset; /* of its char * in checkpoint_files */
} hf_file;

#define HF_FILE(name, field) \
    { name, offsetof(checkpoint_files, field) }
static const hf_file HF_FILES[] = {
    HF_FILE("config.json", config),
    HF_FILE(ST_SINGLE_NAME, safetensors),
    HF_FILE(ST_INDEX_NAME, safetensors_index),
    HF_FILE("generation_config.json", generation_config),
    HF_FILE("tokenizer.json", tokenizer),
    HF_FILE("tokenizer_config.json", tokenizer_config),
    HF_FILE("chat_template.json", chat_template_json),
    HF_FILE("chat_template.jinja", chat_template_jinja),
    HF_FILE("preprocessor_config.json", preprocessor_config),
};
#undef HF_FILE
enum { N_HF_FILES = sizeof HF_FILES / sizeof HF_FILES[0] };

static char **file_slot(checkpoint_files *f, int i) { return (char **)((char *)f + HF_FILES[i].offset); }

void checkpoint_files_free(checkpoint_files *f) {
    if (!f) return;
    free(f->path);
    for (int i = 0; i < N_HF_FILES; i++) free(*file_slot(f, i));
    memset(f, 0, sizeof *f);
}

tandem_status checkpoint_find(const char *path, checkpoint_files *out) {
    memset(out, 0, sizeof *out);
    if (!path) return tandem_fail(TANDEM_ERR_INVALID_ARG, "checkpoint: path is NULL");
    /* a hub reference (ORG/NAME:Q4_K_M) that is no local path: its file or folder in the Hugging Face cache */
    char *cached = NULL;
    tandem_status st = hub_resolve_model_path(path, &cached);
    if (st) return st;
    out->path = cached ? cached : strdup(path);
    if (!out->path) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
    path = out->path;
    /* anything but a folder is taken for a GGUF: opening it says what is wrong (missing, not a GGUF, …) */
    out->is_gguf = !path_is_dir(path);
    if (out->is_gguf) return TANDEM_OK;
    for (int i = 0; i < N_HF_FILES; i++) {
        char *file = path_join(path, HF_FILES[i].name);
        if (!file) {
            st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
            checkpoint_files_free(out); /* frees path */
            return st;
        }
        if (path_exists(file)) *file_slot(out, i) = file;
        else free(file);
    }
    return TANDEM_OK;
}

void checkpoint_close(checkpoint *c) {
    if (!c) return;
    checkpoint_files_free(&c->files);
    gguf_close(c->gguf);
    safetensors_close(c->st);
    json_decref(c->config_json);
    memset(c, 0, sizeof *c);
}

static bool ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static tandem_status open_gguf(checkpoint *c) {
    const char *path = c->files.path;
    tandem_status st = gguf_open(path, &c->gguf);
    /* a checkpoint's weights alone are no model: its config and tokenizer are beside it */
    if (st == TANDEM_ERR_FORMAT && ends_with(path, ".safetensors"))
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "%s is a safetensors file: give the folder that holds it with "
                           "config.json and tokenizer.json",
                           path);
    return st ? st : qwen3_config_from_gguf(c->gguf, &c->cfg);
}

static tandem_status open_hf(checkpoint *c) {
    const checkpoint_files *f = &c->files;
    const char *dir = f->path;
    /* the folder tokenizing accepts (tokenizer.json alone) is not a model: say which file makes one */
    if (!f->config)
        return tandem_fail(TANDEM_ERR_IO, "%s: no config.json in this folder%s", dir,
                           f->tokenizer ? ": a tokenizer-only folder? a model needs config.json and its "
                                          "safetensors beside tokenizer.json"
                                        : " (a Hugging Face checkpoint folder holds config.json, "
                                          "*.safetensors and tokenizer.json)");
    tandem_status st = json_load_path(f->config, &c->config_json);
    if (st) return st;
    if ((st = qwen3_config_from_json_value(f->config, c->config_json, &c->cfg))) return st;
    c->files.text_config = json_is_object(json_object_get(c->config_json, "text_config"));
    const json_t *vision = json_object_get(c->config_json, "vision_config");
    c->files.vision_config = vision && !json_is_null(vision);
    if (f->safetensors_index) return safetensors_open_index(dir, f->safetensors_index, &c->st);
    if (f->safetensors) return safetensors_open_file(f->safetensors, &c->st);
    return tandem_fail(TANDEM_ERR_IO, "%s: no %s or %s in this folder", dir, ST_SINGLE_NAME, ST_INDEX_NAME);
}

tandem_status checkpoint_open(const char *path, checkpoint *out) {
    memset(out, 0, sizeof *out);
    tandem_status st = checkpoint_find(path, &out->files);
    if (!st) st = out->files.is_gguf ? open_gguf(out) : open_hf(out);
    if (st) checkpoint_close(out);
    return st;
}

tandem_status checkpoint_bind(const checkpoint *c, qwen3_model *m) {
    m->cfg = c->cfg;
    return c->gguf ? qwen3_bind_gguf(m, c->gguf) : qwen3_bind_safetensors(m, c->st, c->files.path);
}
