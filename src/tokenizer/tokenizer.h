/* tokenizer.h — internals of the byte-level BPE tokenizer (Qwen2/Qwen3 pre-tokenizer, added tokens,
 * NFC) behind the public tandem_tokenizer_* functions. Loads from tokenizer.json folders or GGUF metadata. */
#ifndef TANDEM_TOKENIZER_H
#define TANDEM_TOKENIZER_H

#include "gguf.h"
#include "tandem_base.h"

/* dir_or_file: a folder with tokenizer.json (tokenizer_config.json and generation_config.json are read
 * too when present: chat template, eos token, eos ids), or a path to a tokenizer.json file. */
tandem_status tokenizer_load_json(const char *dir_or_file, tandem_tokenizer **out);
/* From tokenizer.ggml.* keys of an open GGUF; copies what it needs (f may be closed afterwards). */
tandem_status tokenizer_load_gguf(const gguf_file *f, tandem_tokenizer **out);

#endif
