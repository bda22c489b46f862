/* names.c — the one table of Qwen3 tensor names (GGUF and Hugging Face) and the helpers that write, parse and
 * translate them, so that every part of tandem agrees on what a tensor is called. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

/* Globals: the whole name; block tensors: what follows "blk.N." / "model.layers.N." /
 * "model.language_model.layers.N.". */
static const char *const NAMES[QWEN3_N_TENSORS][3] = {
    [QWEN3_TOKEN_EMBD] = {"token_embd.weight", "model.embed_tokens.weight", "model.language_model.embed_tokens.weight"},
    [QWEN3_ATTN_NORM] = {"attn_norm.weight", "input_layernorm.weight", "input_layernorm.weight"},
    [QWEN3_ATTN_Q] = {"attn_q.weight", "self_attn.q_proj.weight", "self_attn.q_proj.weight"},
    [QWEN3_ATTN_K] = {"attn_k.weight", "self_attn.k_proj.weight", "self_attn.k_proj.weight"},
    [QWEN3_ATTN_V] = {"attn_v.weight", "self_attn.v_proj.weight", "self_attn.v_proj.weight"},
    [QWEN3_ATTN_Q_NORM] = {"attn_q_norm.weight", "self_attn.q_norm.weight", "self_attn.q_norm.weight"},
    [QWEN3_ATTN_K_NORM] = {"attn_k_norm.weight", "self_attn.k_norm.weight", "self_attn.k_norm.weight"},
    [QWEN3_ATTN_OUTPUT] = {"attn_output.weight", "self_attn.o_proj.weight", "self_attn.o_proj.weight"},
    [QWEN3_FFN_NORM] = {"ffn_norm.weight", "post_attention_layernorm.weight", "post_attention_layernorm.weight"},
    [QWEN3_FFN_GATE] = {"ffn_gate.weight", "mlp.gate_proj.weight", "mlp.gate_proj.weight"},
    [QWEN3_FFN_UP] = {"ffn_up.weight", "mlp.up_proj.weight", "mlp.up_proj.weight"},
    [QWEN3_FFN_DOWN] = {"ffn_down.weight", "mlp.down_proj.weight", "mlp.down_proj.weight"},
    [QWEN3_OUTPUT_NORM] = {"output_norm.weight", "model.norm.weight", "model.language_model.norm.weight"},
    [QWEN3_OUTPUT] = {"output.weight", "lm_head.weight", "lm_head.weight"},
};

static const char *const BLOCK_PREFIX[3] = {"blk.", "model.layers.", "model.language_model.layers."};

const char *qwen3_block_prefix(tensor_naming naming) { return BLOCK_PREFIX[naming]; }

const char *qwen3_global_name(qwen3_tensor t, tensor_naming naming) { return NAMES[t][naming]; }

bool qwen3_tensor_name(qwen3_tensor t, int layer, tensor_naming naming, char *out, size_t cap) {
    if ((unsigned)t >= QWEN3_N_TENSORS) return false;
    const int n = qwen3_tensor_in_block(t)
                      ? snprintf(out, cap, "%s%d.%s", BLOCK_PREFIX[naming], layer, NAMES[t][naming])
                      : snprintf(out, cap, "%s", NAMES[t][naming]);
    return n >= 0 && (size_t)n < cap;
}

/* The decimal layer number at s (no sign) and where it ends; -1 if there is none. */
static long long layer_number(const char *s, const char **end) {
    if (!isdigit((unsigned char)s[0])) return -1;
    long long l = 0;
    for (*end = s; isdigit((unsigned char)**end); (*end)++) {
        if (l > (1LL << 40)) return -1; /* no model has that many layers; keeps the sum from overflowing */
        l = l * 10 + (**end - '0');
    }
    return l;
}

long long qwen3_layer_of_name(const char *name, tensor_naming naming) {
    const char *prefix = BLOCK_PREFIX[naming], *end;
    const size_t len = strlen(prefix);
    if (strncmp(name, prefix, len) != 0) return -1;
    const long long l = layer_number(name + len, &end);
    return l >= 0 && *end == '.' ? l : -1;
}

bool qwen3_tensor_parse(const char *name, tensor_naming naming, qwen3_tensor *t, int *layer) {
    const long long l = qwen3_layer_of_name(name, naming);
    const char *digits = name + strlen(BLOCK_PREFIX[naming]);
    if (l > 0x7fffffff || (l >= 0 && digits[0] == '0' && digits[1] != '.')) return false; /* as written, or not */
    const char *rest = l < 0 ? name : strchr(digits, '.') + 1;
    for (int k = 0; k < QWEN3_N_TENSORS; k++) {
        if ((l >= 0) != qwen3_tensor_in_block((qwen3_tensor)k) || strcmp(rest, NAMES[k][naming]) != 0) continue;
        *t = (qwen3_tensor)k;
        *layer = (int)l;
        return true;
    }
    return false;
}

bool qwen3_tensor_rename(const char *name, tensor_naming from, char *out, size_t cap) {
    qwen3_tensor t;
    int layer;
    return qwen3_tensor_parse(name, from, &t, &layer) &&
           qwen3_tensor_name(t, layer, from == NAMING_GGUF ? NAMING_HF : NAMING_GGUF, out, cap);
}
