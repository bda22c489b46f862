/* grammar_internal.h — what the files of src/grammar share: compiling a grammar text (llguidance's "json_schema"
 * or "lark") for a tokenizer. Not for other layers (they use grammar.h). */
#ifndef TANDEM_GRAMMAR_INTERNAL_H
#define TANDEM_GRAMMAR_INTERNAL_H

#include "grammar.h"

/* Compiles text as llguidance's kind ("json_schema", "lark") for tok; errors read "fn: field: llguidance's reason". */
tandem_status grammar_compile(const tandem_tokenizer *tok, const char *kind, const char *text, const char *fn,
                              const char *field, tandem_grammar **out);

#endif
