/* tokenizer_derived.h — what layers above the tokenizer may ask of its internals (src/grammar: which tokens are
 * added ones, and a slot to cache what it derives from a tokenizer), without the loaders' headers of tokenizer.h. */
#ifndef TANDEM_TOKENIZER_DERIVED_H
#define TANDEM_TOKENIZER_DERIVED_H

#include "tandem.h"

/* Added tokens (tokenizer.json's added_tokens, special or not: <|im_end|>, <tool_call>, <think>, …). */
bool tokenizer_is_added(const tandem_tokenizer *tok, int32_t id);
/* One object a later layer derives from the tokenizer (src/grammar: llguidance's view of the vocabulary), built by
 * build(tok, arg) on first use, kept while the tokenizer lives and freed by destroy with it. Thread-safe; NULL when
 * build fails (it then said why with tandem_fail). One kind of object per tokenizer. */
void *tokenizer_derived(const tandem_tokenizer *tok, void *(*build)(const tandem_tokenizer *tok, void *arg), void *arg,
                        void (*destroy)(void *derived));

#endif
