/* recipe.c — which type every tensor of a Qwen3 GGUF gets for a file type (ftype): llama-quantize's rules for
 * its mixes, the fallbacks for rows that are not whole blocks, and tandem's --ratio rule for 8-bit tensors. */

/* The rules, as llama.cpp's src/llama-quant.cpp applies them to a dense model without an importance matrix:
 *  - 1-D tensors (norms) are F32 in every file.
 *  - F32 / F16 / BF16: every matrix in that type.
 *  - Quantized ftypes start from their base type (Q4_K_M → Q4_K, Q5_K_M → Q5_K, Q6_K → Q6_K, …), then
 *    - output.weight, and token_embd.weight when the embeddings are tied (it is then the output head too):
 *      Q8_0 if a row is not a whole number of base-type blocks, else Q6_K unless the base is Q8_0;
 *    - attn_v and ffn_down of the layers use_more_bits picks (the first and last eighth of the layers and every
 *      third layer in between) become Q6_K for Q4_K_M and Q5_K_M;
 *    - IQ4_NL: attn_v becomes Q5_K when n_heads / n_kv_heads ≥ 4, ffn_down of the first eighth of layers Q5_K;
 *    - the pure K recipes (Q2_K, Q3_K, Q4_K, Q5_K) apply none of these (llama-quantize --pure): every matrix
 *      gets the base type.
 *  - Fallback when a row length is not a multiple of the chosen type's block: Q2_K, Q3_K → Q4_0; Q4_K → Q5_0;
 *    Q5_K → Q5_1; Q6_K → Q8_0; and F16 when even that does not fit (llama-quantize stops with an error for a
 *    32-block type that does not fit; tandem stores such a tensor in F16 instead).
 *  - --ratio R (R < 1, 2- to 6-bit ftypes): the layers' matrices (blk.*) are ranked from most to least
 *    sensitive and the smallest prefix of that ranking holding at least (1 - R) of their parameters is stored in
 *    Q8_0. The ranking: (1) attn_v and ffn_down of the first and the last layer; (2) attn_v and ffn_down of the
 *    other layers use_more_bits picks; (3) everything else, layers nearest either end first, and within a layer
 *    attn_v, ffn_down, attn_output, attn_k, attn_q, ffn_up, ffn_gate. Ties keep the layer order. */
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "convert.h"
#include "names.h"

/* ---- names ---- */

typedef struct ftype_name {
    const char *name;
    tandem_ftype ftype;
} ftype_name;

static const ftype_name FTYPE_NAMES[] = {
    {"F32", TANDEM_FTYPE_F32},       {"F16", TANDEM_FTYPE_F16},       {"BF16", TANDEM_FTYPE_BF16},
    {"Q8_0", TANDEM_FTYPE_Q8_0},     {"Q4_0", TANDEM_FTYPE_Q4_0},     {"Q4_1", TANDEM_FTYPE_Q4_1},
    {"Q5_0", TANDEM_FTYPE_Q5_0},     {"Q5_1", TANDEM_FTYPE_Q5_1},     {"IQ4_NL", TANDEM_FTYPE_IQ4_NL},
    {"Q2_K", TANDEM_FTYPE_Q2_K},     {"Q3_K", TANDEM_FTYPE_Q3_K},     {"Q4_K", TANDEM_FTYPE_Q4_K},
    {"Q5_K", TANDEM_FTYPE_Q5_K},     {"Q6_K", TANDEM_FTYPE_Q6_K},     {"Q4_K_M", TANDEM_FTYPE_Q4_K_M},
    {"Q5_K_M", TANDEM_FTYPE_Q5_K_M},
};
enum { N_FTYPE_NAMES = sizeof FTYPE_NAMES / sizeof FTYPE_NAMES[0] };

const char *tandem_ftype_name(tandem_ftype f) {
    for (int i = 0; i < N_FTYPE_NAMES; i++)
        if (FTYPE_NAMES[i].ftype == f) return FTYPE_NAMES[i].name;
    return "?";
}

static bool ftype_known(tandem_ftype f) { return strcmp(tandem_ftype_name(f), "?") != 0; }

tandem_status tandem_ftype_parse(const char *name, bool asym, tandem_ftype *out) {
    if (!name) return tandem_fail(TANDEM_ERR_INVALID_ARG, "weight format: none given");
    /* optimum-cli export openvino's --weight-format names */
    if (!strcasecmp(name, "int8")) name = "Q8_0";
    else if (!strcasecmp(name, "int4")) name = asym ? "Q4_1" : "Q4_0";
    else if (!strcasecmp(name, "nf4")) name = "IQ4_NL";
    else if (!strcasecmp(name, "fp16")) name = "F16";
    else if (!strcasecmp(name, "fp32")) name = "F32";
    for (int i = 0; i < N_FTYPE_NAMES; i++) {
        if (!strcasecmp(name, FTYPE_NAMES[i].name)) {
            *out = FTYPE_NAMES[i].ftype;
            return TANDEM_OK;
        }
    }
    return tandem_fail(TANDEM_ERR_INVALID_ARG,
                       "weight format '%s' is not one of f32, f16, bf16, int8, int4, nf4, q8_0, q4_0, q4_1, q5_0, "
                       "q5_1, iq4_nl, q2_k, q3_k, q4_k, q5_k, q6_k, q4_k_m, q5_k_m", name);
}

/* ---- tensor kinds ---- */

bool tensor_kind_of(const char *name, tensor_kind *kind, int32_t *layer) {
    static const tensor_kind KINDS[QWEN3_N_TENSORS] = {
        [QWEN3_TOKEN_EMBD] = KIND_TOKEN_EMBD, [QWEN3_ATTN_Q] = KIND_ATTN_Q,           [QWEN3_ATTN_K] = KIND_ATTN_K,
        [QWEN3_ATTN_V] = KIND_ATTN_V,         [QWEN3_ATTN_OUTPUT] = KIND_ATTN_OUTPUT, [QWEN3_FFN_GATE] = KIND_FFN_GATE,
        [QWEN3_FFN_UP] = KIND_FFN_UP,         [QWEN3_FFN_DOWN] = KIND_FFN_DOWN,       [QWEN3_OUTPUT] = KIND_OUTPUT,
    }; /* the rest (norms) are KIND_OTHER */
    qwen3_tensor t;
    int l;
    *layer = -1;
    *kind = KIND_OTHER;
    if (!qwen3_tensor_parse(name, NAMING_GGUF, &t, &l)) return false;
    *kind = KINDS[t];
    *layer = l;
    return true;
}

/* ---- the plan ---- */

static tandem_type base_type(tandem_ftype f) {
    switch (f) {
    case TANDEM_FTYPE_F32: return TANDEM_TYPE_F32;
    case TANDEM_FTYPE_F16: return TANDEM_TYPE_F16;
    case TANDEM_FTYPE_BF16: return TANDEM_TYPE_BF16;
    case TANDEM_FTYPE_Q8_0: return TANDEM_TYPE_Q8_0;
    case TANDEM_FTYPE_Q4_0: return TANDEM_TYPE_Q4_0;
    case TANDEM_FTYPE_Q4_1: return TANDEM_TYPE_Q4_1;
    case TANDEM_FTYPE_Q5_0: return TANDEM_TYPE_Q5_0;
    case TANDEM_FTYPE_Q5_1: return TANDEM_TYPE_Q5_1;
    case TANDEM_FTYPE_IQ4_NL: return TANDEM_TYPE_IQ4_NL;
    case TANDEM_FTYPE_Q2_K: return TANDEM_TYPE_Q2_K;
    case TANDEM_FTYPE_Q3_K: return TANDEM_TYPE_Q3_K;
    case TANDEM_FTYPE_Q4_K: case TANDEM_FTYPE_Q4_K_M: return TANDEM_TYPE_Q4_K;
    case TANDEM_FTYPE_Q5_K: case TANDEM_FTYPE_Q5_K_M: return TANDEM_TYPE_Q5_K;
    case TANDEM_FTYPE_Q6_K: return TANDEM_TYPE_Q6_K;
    }
    return TANDEM_TYPE_COUNT;
}

static bool is_float_type(tandem_type t) {
    return t == TANDEM_TYPE_F32 || t == TANDEM_TYPE_F16 || t == TANDEM_TYPE_BF16;
}

static bool is_pure(tandem_ftype f) {
    return f == TANDEM_FTYPE_Q2_K || f == TANDEM_FTYPE_Q3_K || f == TANDEM_FTYPE_Q4_K || f == TANDEM_FTYPE_Q5_K;
}

bool recipe_accepts_ratio(tandem_ftype f) {
    tandem_type b = base_type(f);
    return b != TANDEM_TYPE_COUNT && !is_float_type(b) && b != TANDEM_TYPE_Q8_0;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers, and every third layer in between. */
static bool use_more_bits(int32_t layer, int32_t n_layers) {
    return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

static bool fits(tandem_type t, int64_t cols) { return cols % tandem_type_block_size(t) == 0; }

/* llama-quantize's tensor_type_fallback, with F16 where it has none. */
static tandem_type fallback(tandem_type t, int64_t cols) {
    if (fits(t, cols)) return t;
    switch (t) {
    case TANDEM_TYPE_Q2_K: case TANDEM_TYPE_Q3_K: t = TANDEM_TYPE_Q4_0; break;
    case TANDEM_TYPE_Q4_K: t = TANDEM_TYPE_Q5_0; break;
    case TANDEM_TYPE_Q5_K: t = TANDEM_TYPE_Q5_1; break;
    case TANDEM_TYPE_Q6_K: t = TANDEM_TYPE_Q8_0; break;
    default: t = TANDEM_TYPE_F16; break;
    }
    return fits(t, cols) ? t : TANDEM_TYPE_F16;
}

static tandem_type mixed_type(const recipe *r, const planned_tensor *t, tandem_type base) {
    const tandem_ftype f = r->ftype;
    if (t->kind == KIND_OUTPUT || (r->tied && t->kind == KIND_TOKEN_EMBD)) {
        if (!fits(base, t->cols)) return TANDEM_TYPE_Q8_0;
        return base == TANDEM_TYPE_Q8_0 ? base : TANDEM_TYPE_Q6_K;
    }
    const bool km = f == TANDEM_FTYPE_Q4_K_M || f == TANDEM_FTYPE_Q5_K_M;
    if (t->kind == KIND_ATTN_V) {
        if (f == TANDEM_FTYPE_IQ4_NL && r->n_gqa >= 4) return TANDEM_TYPE_Q5_K;
        if (km && use_more_bits(t->layer, r->n_layers)) return TANDEM_TYPE_Q6_K;
    } else if (t->kind == KIND_FFN_DOWN) {
        if (km && use_more_bits(t->layer, r->n_layers)) return TANDEM_TYPE_Q6_K;
        if (f == TANDEM_FTYPE_IQ4_NL && t->layer < r->n_layers / 8) return TANDEM_TYPE_Q5_K;
    }
    return base;
}

/* Sensitivity ranking for --ratio (lower sorts first); see the rule at the top of the file. */
static const int KIND_RANK[] = {
    [KIND_ATTN_V] = 0, [KIND_FFN_DOWN] = 1, [KIND_ATTN_OUTPUT] = 2, [KIND_ATTN_K] = 3,
    [KIND_ATTN_Q] = 4, [KIND_FFN_UP] = 5,   [KIND_FFN_GATE] = 6,
};

typedef struct ranked {
    int32_t index;
    int64_t key[4];
} ranked;

static int ranked_cmp(const void *pa, const void *pb) {
    const ranked *a = pa, *b = pb;
    for (int i = 0; i < 4; i++)
        if (a->key[i] != b->key[i]) return a->key[i] < b->key[i] ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

static void rank_of(const recipe *r, const planned_tensor *t, int64_t key[4]) {
    const bool v_or_down = t->kind == KIND_ATTN_V || t->kind == KIND_FFN_DOWN;
    const bool edge = t->layer == 0 || t->layer == r->n_layers - 1;
    const int32_t from_edge = t->layer < r->n_layers - 1 - t->layer ? t->layer : r->n_layers - 1 - t->layer;
    key[0] = v_or_down && edge ? 0 : v_or_down && use_more_bits(t->layer, r->n_layers) ? 1 : 2;
    key[1] = key[0] == 2 ? from_edge : 0;
    key[2] = KIND_RANK[t->kind];
    key[3] = t->layer;
}

static tandem_status apply_ratio(const recipe *r, const planned_tensor *ts, int32_t n, tandem_type *types) {
    ranked *order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
    if (!order) return tandem_fail(TANDEM_ERR_NO_MEMORY, "recipe: out of memory");
    int32_t m = 0;
    int64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        if (ts[i].layer < 0 || ts[i].n_dims < 2 || ts[i].kind == KIND_OTHER) continue;
        order[m].index = i;
        rank_of(r, &ts[i], order[m].key);
        total += ts[i].n_elements;
        m++;
    }
    qsort(order, (size_t)m, sizeof *order, ranked_cmp);
    const double target = (1.0 - (double)r->ratio) * (double)total;
    int64_t kept = 0;
    for (int32_t j = 0; j < m && (double)kept < target; j++) {
        const planned_tensor *t = &ts[order[j].index];
        types[order[j].index] = fallback(TANDEM_TYPE_Q8_0, t->cols);
        kept += t->n_elements;
    }
    free(order);
    return TANDEM_OK;
}

tandem_status recipe_plan(const recipe *r, const planned_tensor *ts, int32_t n, tandem_type *types) {
    const tandem_type base = base_type(r->ftype);
    if (base == TANDEM_TYPE_COUNT || !ftype_known(r->ftype))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "recipe: unknown file type %d", (int)r->ftype);
    if (!(r->ratio > 0.0f && r->ratio <= 1.0f))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "recipe: ratio %g must be in (0, 1]", (double)r->ratio);
    if (r->ratio < 1.0f && !recipe_accepts_ratio(r->ftype))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "recipe: a ratio below 1 only applies to 2- to 6-bit formats, not %s",
                           tandem_ftype_name(r->ftype));
    for (int32_t i = 0; i < n; i++) {
        const planned_tensor *t = &ts[i];
        if (t->n_dims < 2 || t->kind == KIND_OTHER) {
            types[i] = TANDEM_TYPE_F32;
        } else if (is_float_type(base)) {
            types[i] = base;
        } else {
            tandem_type chosen = is_pure(r->ftype) ? base : mixed_type(r, t, base);
            types[i] = fallback(chosen, t->cols);
        }
    }
    return r->ratio < 1.0f ? apply_ratio(r, ts, n, types) : TANDEM_OK;
}
