/* grammar.h — the bridge between tandem and llguidance, for the runtime: a grammar_matcher follows one generation
 * through a tandem_grammar (which tokens may come next, advance, validate drafted tokens, roll back). */
#ifndef TANDEM_GRAMMAR_H
#define TANDEM_GRAMMAR_H

#include "tandem_base.h"

typedef struct grammar_matcher grammar_matcher;

/* Tokens in the vocabulary g was compiled for (tandem_tokenizer_vocab_size of its tokenizer). */
int32_t grammar_vocab_size(const tandem_grammar *g);
/* A fresh parse state at the start of g's language. g must outlive the matcher. */
tandem_status grammar_matcher_new(const tandem_grammar *g, grammar_matcher **out);
void grammar_matcher_free(grammar_matcher *m);

/* Whether id may come next (the cheap check: no mask is computed). Ids outside the tokenizer never may. */
bool grammar_matcher_allows(grammar_matcher *m, int32_t id);
/* False once an end id has been consumed (nothing may follow it). */
bool grammar_matcher_allows_more(const grammar_matcher *m);
/* How many of ids[0..n), in order, the grammar accepts from here (the state does not move). */
int32_t grammar_matcher_valid_prefix(grammar_matcher *m, const int32_t *ids, int32_t n);
/* Sets logits[id] = -INFINITY for every id of [0, n_logits) that may not come next (the full mask). Fails when no
 * id may (the grammar's error). */
tandem_status grammar_matcher_mask_logits(grammar_matcher *m, float *logits, int32_t n_logits);
/* Advances by id, which must be allowed (an error naming it otherwise). */
tandem_status grammar_matcher_consume(grammar_matcher *m, int32_t id);
/* Undoes the last n consumed ids. */
tandem_status grammar_matcher_rollback(grammar_matcher *m, int32_t n);

#endif
