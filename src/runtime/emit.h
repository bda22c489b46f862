/* emit.h — the emitter: the one place a generated token is accepted into a result (ids, text, end ids, stop
 * strings, max tokens, UTF-8-safe streaming to the caller). The plain and the speculative decoders both feed it.
 *
 * Semantics (tandem.h's tandem_gen_params / tandem_gen_result):
 *  - every accepted id is appended to r->ids, including an end id or the token that completes a stop string;
 *  - an end id (tandem_tokenizer_eos_ids, unless params->ignore_eos) ends with TANDEM_FINISH_EOS and adds no text;
 *  - text is the detokenizer's complete UTF-8; an id without text (a padding row beyond the tokenizer) adds none;
 *  - a stop string ends with TANDEM_FINISH_STOP_STRING as soon as the text holds it; the text is cut where the
 *    earliest occurrence (over all stop strings) begins: the stop text itself is never part of the result;
 *  - the stream (params->on_text) gets text once it is final: complete characters, and never a tail that could
 *    still become the start of a stop string; its pieces concatenate to r->text. A false return ends with
 *    TANDEM_FINISH_ABORTED and nothing more is streamed;
 *  - min_new_tokens: a stop string completed by one of the first min_new_tokens ids does not end generation (the
 *    end ids cannot be drawn there: constrain.c bans them);
 *  - max_tokens ends with TANDEM_FINISH_LENGTH (0: before any token);
 *  - emitter_end makes the held-back rest final (an incomplete character becomes U+FFFD) and streams it.
 *
 * Constrained decoding (params->grammar): the emitter owns the generation's grammar_matcher (grammar.h);
 * emitter_push advances it by every accepted id (an id the grammar refuses is an error: the decoders draw only allowed
 * ids, constrain.c). The decoders ask it before each draw: plain_step and the engine through constrained_sample, the
 * speculative decoder for every position of a verification pass (constrained_probs, advancing tentatively through
 * the drafted ids and rolling back after).
 *
 * Hook points for what comes later (not built yet):
 *  - Streaming hook (a server's per-request stream): all text reaches the caller through stream_text() in emit.c,
 *    the one call site of on_text, so a hook attached there sees exactly the text the result holds; the id and the
 *    finish reason are known at the same point (emitter_push, emitter_end). */
#ifndef TANDEM_EMIT_H
#define TANDEM_EMIT_H

#include "grammar.h"
#include "tandem.h"

typedef struct gen_emitter {
    const tandem_gen_params *params; /* borrowed: stop strings, ignore_eos, max_tokens, on_text */
    const tandem_tokenizer *tok;
    tandem_gen_result *r; /* the result being filled (its ids and text are owned by it) */
    tandem_detokenizer *detok;
    size_t text_cap, ids_cap;
    size_t streamed;          /* bytes of r->text given to on_text */
    double t_start, t_first;  /* the generation's start (now_ms), the first accepted token's time */
    grammar_matcher *grammar; /* NULL: unconstrained */
    int32_t n_vocab;          /* the length of a logits row (the model's vocabulary) */
    size_t logprobs_cap;      /* r->logprobs' room (params->logprobs) */
    float *masked, *probs;    /* (vocab rows) constrain.c's scratch, allocated on first use */
} gen_emitter;

/* What emitter_init refuses in params, checked also by tandem_engine_add before it queues a request: a NULL stop
 * string (naming its index), a grammar with ignore_eos or min_new_tokens, top_logprobs out of range, a negative
 * min_new_tokens. fn names the caller. */
tandem_status emitter_check_params(const tandem_gen_params *params, const char *fn);
/* Zeroes *r and starts it: an empty text, finish LENGTH if max_tokens is 0, a matcher for params->grammar. Fails
 * as emitter_check_params. t_start: when the generation began, for r->timings.ttft_ms. n_vocab: a logits row's
 * length. */
tandem_status emitter_init(gen_emitter *e, const tandem_gen_params *params, const tandem_tokenizer *tok,
                           int32_t n_vocab, tandem_gen_result *r, double t_start);
/* Accepts id; sets r->finish when generation must end (end id, stop string, max tokens, the callback).
 * Call only while r->finish is TANDEM_FINISH_NONE. logits: the raw logits row of the position id was drawn for
 * (params->logprobs: its tandem_token_logprob comes from them; may be NULL without logprobs). */
tandem_status emitter_push(gen_emitter *e, int32_t id, const float *logits);
/* Ends the stream (flushes what is held back unless a stop string or the callback ended it) and fills
 * r->timings.n_generated and decode_ms. */
tandem_status emitter_end(gen_emitter *e);
void emitter_free(gen_emitter *e); /* the emitter's own state; the result stays with its owner */

#endif
