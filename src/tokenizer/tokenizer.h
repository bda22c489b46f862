/* tokenizer.h — internals of the byte-level BPE tokenizer (Qwen2/Qwen3 pre-tokenizer, added tokens,
 * NFC) behind the public tandem_tokenizer_* functions. Loads from tokenizer.json folders or GGUF metadata. */
#ifndef TANDEM_TOKENIZER_H
#define TANDEM_TOKENIZER_H

#include <jansson.h>

#include "checkpoint.h"
#include "gguf.h"
#include "tandem_base.h"
#include "tokenizer_derived.h"

/* The qwen2 pre-tokenizer's split regex, as every Qwen2/Qwen3 tokenizer.json writes it. */
extern const char TOKENIZER_QWEN2_PATTERN[];

/* The files a tokenizer reads (checkpoint_find): of dir_or_file when it is a folder, else of the folder holding
 * the file, with the file itself as tokenizer.json (whatever its name). */
tandem_status tokenizer_files_of(const char *dir_or_file, checkpoint_files *f);
/* f->tokenizer (tokenizer.json, required) with f->tokenizer_config, f->generation_config (chat template, eos
 * token, eos ids), f->config (its eos_token_id is checked) and f->chat_template_jinja when present. */
tandem_status tokenizer_load_files(const checkpoint_files *f, tandem_tokenizer **out);
/* A model's chat templates: the default one and HF's further named ones (tokenizer_config.json's list of
 * {name, template}; GGUF tokenizer.chat_template.NAME, as gguf-py writes them). */
typedef struct chat_templates {
    char *text; /* the default template; NULL when there is none */
    size_t n;   /* further named templates ("tool_use", ...) */
    char **names, **texts;
} chat_templates;
void chat_templates_free(chat_templates *t); /* accepts a zeroed struct */
/* The chat templates of f's folder into *out (zeroed first; malloc'd), in transformers' order:
 * chat_template.jinja, else tokenizer_config.json's chat_template (cfg, that file parsed, may be NULL; a string,
 * or HF's list of {name, template}: "default" and the named others), else chat_template.json's chat_template. */
tandem_status tokenizer_chat_templates(const checkpoint_files *f, const json_t *cfg, chat_templates *out);
/* The names transformers passes to a chat template from the tokenizer's special tokens (SPECIAL_TOKENS_ATTRIBUTES),
 * in the order tandem_tokenizer_special_token accepts them. */
#define TOKENIZER_N_SPECIAL 7
extern const char *const TOKENIZER_SPECIAL_NAMES[TOKENIZER_N_SPECIAL];
/* dir_or_file: a folder with tokenizer.json (tokenizer_config.json and generation_config.json are read
 * too when present: chat template, eos token, eos ids), or a path to a tokenizer.json file. */
tandem_status tokenizer_load_json(const char *dir_or_file, tandem_tokenizer **out);
/* From tokenizer.ggml.* keys of an open GGUF; copies what it needs (f may be closed afterwards). */
tandem_status tokenizer_load_gguf(const gguf_file *f, tandem_tokenizer **out);
/* Writes tokenizer.ggml.* (model gpt2, pre qwen2, tokens, token types, merges, eos/pad/bos ids, add_bos_token)
 * and tokenizer.chat_template (+ .NAME and chat_templates for named ones) for source: a folder with tokenizer.json, or that file; tokenizer_config.json and
 * chat_template.jinja are read from beside it. Special ids come from tokenizer_config.json, else from config
 * (the model's config.json, may be NULL); ids without a token become [PAD<id>] up to vocab_size. Refuses a
 * pre-tokenizer other than Qwen2's (no llama.cpp name would fit it). template_override: NULL, or a template text
 * written instead of the folder's templates (all of them: it is the one to use everywhere). */
tandem_status tokenizer_write_gguf_keys(gguf_writer *w, const char *source, const json_t *config, int32_t vocab_size,
                                        const char *template_override);

#endif
