/* tokenizer.c — byte-level BPE (Qwen2/Qwen3): loading from tokenizer.json folders and GGUF metadata, encoding
 * (added tokens, NFC, qwen2 pre-tokenizer regex, BPE by merge rank), decoding and the streaming detokenizer. */

/* The target is Hugging Face `tokenizers` id for id. Behaviour that HF has no equivalent for is defined here:
 *  - Invalid UTF-8 in the input: every byte that does not start a well-formed UTF-8 character becomes a token
 *    of its own (the byte-level token for that byte), and the valid runs between such bytes are normalized,
 *    pre-tokenized and merged on their own, exactly as HF would tokenize each run alone. So decode(encode(x))
 *    gives back x byte for byte, except that valid runs come back in NFC (as with HF).
 *  - parse_special = false matches no added token at all (HF would still match them).
 *  - Added tokens' lstrip / rstrip / single_word / normalized flags are not read (every Qwen added token has
 *    them false): an added token matches its exact text anywhere in the raw input, longest first.
 * Known differences from HF, all from Unicode table versions (found by fuzzing against tokenizers 0.23):
 *  - HF's NFC uses old tables (Unicode 9): it does not reorder combining marks assigned since (e.g. U+0327
 *    after U+1DF8, U+08CE or U+11A34); utf8proc does, so such text can tokenize differently.
 *  - \p{L} / \p{N} come from PCRE2 10.42 (Unicode 14) while HF's Oniguruma knows Unicode 16: letters and
 *    digits assigned after Unicode 14 are "other" characters here. */

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <jansson.h>
#include <pcre2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <utf8proc.h>

#include "hub.h"
#include "tokenizer.h"

/* The qwen2 pre-tokenizer (tokenizer.json Split regex of every Qwen2/Qwen3 release); used for GGUF files whose
 * tokenizer.ggml.pre names it and for tokenizer.json files without a pre_tokenizer. */
const char TOKENIZER_QWEN2_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* llama.cpp's names for the qwen2 pre-tokenizer in tokenizer.ggml.pre. */
static const char *const QWEN2_PRE_NAMES[] = {"qwen2", "deepseek-r1-qwen", "megrez", "kormo", "f2llmv2"};

/* Ids above this are refused: a corrupt id must not make us allocate huge per-id tables (real vocabularies stay
 * below 300k). */
#define MAX_TOKEN_ID ((1 << 22) - 1)

/* ---- the tokenizer ---- */

typedef struct merge_slot {
    uint64_t key;    /* (left id << 32) | right id; EMPTY_KEY when free */
    uint32_t rank;   /* merge priority: lower merges first */
    int32_t new_id;  /* the token the pair merges into */
} merge_slot;
#define EMPTY_KEY UINT64_MAX

typedef struct added_token {
    size_t off, len;  /* literal text in tok->arena */
    int32_t id;
    uint8_t first;    /* its first byte */
    bool special;
} added_token;

struct tandem_tokenizer {
    int32_t n_ids;        /* max id + 1 */
    size_t *tok_off;      /* per id: raw bytes at arena + tok_off[id]; SIZE_MAX when the id has no token */
    size_t *tok_len;
    char *arena;          /* every token's raw bytes, each NUL-terminated */
    int32_t byte_id[256]; /* the token of each single byte (byte-level BPE starts from these) */
    merge_slot *merges;   /* open-addressing hash of merges */
    size_t merge_mask;
    added_token *added;   /* sorted by first byte, then longest first (leftmost-longest matching) */
    size_t n_added;
    uint16_t added_first[256], added_count[256]; /* added[first .. first+count) start with that byte */
    bool nfc;
    char *pattern;        /* the regex as compiled for PCRE2 (after \s rewriting) */
    pcre2_code *re;
    int32_t *eos;
    size_t n_eos;
    chat_templates templates;
    char *special[TOKENIZER_N_SPECIAL];  /* bos_token, eos_token, ... as TOKENIZER_SPECIAL_NAMES; NULL = not set */
    char *special_json;                  /* those set, as a JSON object */
    _Atomic(void *) derived;             /* tokenizer_derived's object (a later layer's), built on first use */
    void (*derived_free)(void *derived); /* set with it */
};

/* ---- small helpers ---- */

static char *dup_mem(const char *p, size_t n) {
    char *s = malloc(n + 1);
    if (!s) return NULL;
    if (n) memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* A token or string made printable for an error message: quoted, control bytes escaped, cut after ~48 bytes. */
typedef struct quoted {
    char s[232];
} quoted;
static quoted quote(const char *p, size_t n) {
    quoted q;
    size_t o = 0;
    q.s[o++] = '\'';
    for (size_t i = 0; i < n && o < sizeof q.s - 12; i++) {
        unsigned char c = (unsigned char)p[i];
        if (i >= 48 && (c & 0xC0) != 0x80) {
            memcpy(q.s + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c == 0x7F || c == '\'' || c == '\\') o += (size_t)snprintf(q.s + o, 5, "\\x%02x", c);
        else q.s[o++] = (char)c;
    }
    q.s[o++] = '\'';
    q.s[o] = '\0';
    return q;
}

/* ---- UTF-8 ---- */

/* Classifies the bytes at p[0..n) (n ≥ 1) by the Unicode rules for well-formed UTF-8 (Table 3-7: no
 * overlongs, no surrogates, nothing above U+10FFFF — the same rules as Python, Rust and PCRE2):
 *   1: a complete character of *len bytes;
 *   0: a valid start that runs out of input after *len = n bytes (it may still be completed);
 *  -1: ill-formed; *len is the maximal subpart (bytes replaced by one U+FFFD, as Python's errors="replace"). */
static int utf8_next(const uint8_t *p, size_t n, size_t *len) {
    uint8_t c = p[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80) {
        *len = 1;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *len = 1;
        return -1;
    }
    for (size_t i = 1; i < need; i++) {
        if (i >= n) {
            *len = n;
            return 0;
        }
        uint8_t b = p[i];
        bool ok = i == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
        if (!ok) {
            *len = i;
            return -1;
        }
    }
    *len = need;
    return 1;
}

static uint32_t utf8_decode(const uint8_t *p, size_t len) {
    if (len == 1) return p[0];
    uint32_t c = p[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) c = (c << 6) | (p[i] & 0x3F);
    return c;
}

/* ---- GPT-2 byte <-> unicode map ---- */

/* Bytes that are printable in Latin-1 stand for themselves; the other 68 — 0x00-0x20, 0x7F-0xA0 and 0xAD — are
 * moved, in byte order, to U+0100..U+0143 so every byte has a visible character. */
static uint32_t byte_to_cp(int b) {
    if (b <= 0x20) return 0x100u + (uint32_t)b;
    if (b >= 0x7F && b <= 0xA0) return 0x100u + 33 + (uint32_t)(b - 0x7F);
    if (b == 0xAD) return 0x143u;
    return (uint32_t)b;
}

/* The byte a mapped character stands for, or -1. */
static int cp_to_byte(uint32_t cp) {
    if (cp < 0x100) return (cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || cp >= 0xAE ? (int)cp : -1;
    if (cp < 0x100 + 33) return (int)(cp - 0x100);
    if (cp < 0x100 + 67) return (int)(cp - 0x100 - 33 + 0x7F);
    return cp == 0x143 ? 0xAD : -1;
}

/* Raw bytes of a byte-level token string, written to out (capacity ≥ n); false if some character is not in
 * the map (then HF's ByteLevel decoder, and we, use the string's own UTF-8 bytes). */
static bool byte_level_decode(const char *s, size_t n, char *out, size_t *out_len) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0, o = 0;
    while (i < n) {
        size_t k;
        if (utf8_next(p + i, n - i, &k) != 1) return false;
        int b = cp_to_byte(utf8_decode(p + i, k));
        if (b < 0) return false;
        out[o++] = (char)b;
        i += k;
    }
    *out_len = o;
    return true;
}

/* ---- string -> id hash (load time only; keys borrowed from the JSON tree or the GGUF map) ---- */

typedef struct strmap {
    const char **key;
    size_t *key_len;
    int32_t *val;
    size_t mask, count;
} strmap;

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static bool strmap_init(strmap *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 16) cap *= 2;
    memset(m, 0, sizeof *m);
    m->key = calloc(cap, sizeof *m->key);
    m->key_len = calloc(cap, sizeof *m->key_len);
    m->val = malloc(cap * sizeof *m->val);
    m->mask = cap - 1;
    return m->key && m->key_len && m->val;
}

static void strmap_free(strmap *m) {
    free(m->key);
    free(m->key_len);
    free(m->val);
    memset(m, 0, sizeof *m);
}

static size_t strmap_slot(const strmap *m, const char *p, size_t n) {
    size_t i = (size_t)hash_bytes(p, n) & m->mask;
    while (m->key[i] && !(m->key_len[i] == n && memcmp(m->key[i], p, n) == 0)) i = (i + 1) & m->mask;
    return i;
}

static int32_t strmap_get(const strmap *m, const char *p, size_t n) {
    if (!m->key) return -1;
    size_t i = strmap_slot(m, p, n);
    return m->key[i] ? m->val[i] : -1;
}

/* Inserts (p, n) -> id unless the key is present; *prev receives the id already stored, or -1. Keeps the table
 * at most half full. False when out of memory. */
static bool strmap_put(strmap *m, const char *p, size_t n, int32_t id, int32_t *prev) {
    if (2 * (m->count + 1) > m->mask + 1) {
        strmap bigger;
        if (!strmap_init(&bigger, m->count + 1)) {
            strmap_free(&bigger);
            return false;
        }
        for (size_t i = 0; i <= m->mask; i++) {
            if (!m->key[i]) continue;
            size_t j = strmap_slot(&bigger, m->key[i], m->key_len[i]);
            bigger.key[j] = m->key[i];
            bigger.key_len[j] = m->key_len[i];
            bigger.val[j] = m->val[i];
        }
        bigger.count = m->count;
        strmap_free(m);
        *m = bigger;
    }
    size_t i = strmap_slot(m, p, n);
    *prev = m->key[i] ? m->val[i] : -1;
    if (m->key[i]) return true;
    m->key[i] = p;
    m->key_len[i] = n;
    m->val[i] = id;
    m->count++;
    return true;
}

/* ---- merge table ---- */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static const merge_slot *merge_find(const tandem_tokenizer *tok, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)mix64(key) & tok->merge_mask;
    for (;;) {
        const merge_slot *s = &tok->merges[i];
        if (s->key == key) return s;
        if (s->key == EMPTY_KEY) return NULL;
        i = (i + 1) & tok->merge_mask;
    }
}

static tandem_status merges_alloc(tandem_tokenizer *tok, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 16) cap *= 2;
    tok->merges = malloc(cap * sizeof *tok->merges);
    if (!tok->merges) return tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory for %zu merges", n);
    for (size_t i = 0; i < cap; i++) tok->merges[i].key = EMPTY_KEY;
    tok->merge_mask = cap - 1;
    return TANDEM_OK;
}

/* ---- building a tokenizer from per-id strings (shared by the JSON and GGUF loaders) ---- */

enum { KIND_NONE = 0, KIND_NORMAL, KIND_ADDED };

typedef struct builder {
    const char *file;   /* for messages */
    int32_t n_ids;
    const char **str;   /* per id: byte-level form (normal) or literal text (added); borrowed */
    size_t *len;
    uint8_t *kind;
    bool *special;
    strmap vocab;       /* byte-level string -> id of normal tokens (merges are resolved here) */
    strmap added;       /* literal text -> id of added tokens */
    char *buf;          /* scratch for concatenating a merge pair */
    size_t buf_cap;
} builder;

/* n_vocab: how many normal tokens to expect (sizes the string map; it grows if needed). */
static tandem_status builder_init(builder *b, const char *file, int64_t n_ids, size_t n_vocab) {
    memset(b, 0, sizeof *b);
    b->file = file;
    b->n_ids = (int32_t)n_ids;
    size_t n = (size_t)n_ids;
    b->str = calloc(n ? n : 1, sizeof *b->str);
    b->len = calloc(n ? n : 1, sizeof *b->len);
    b->kind = calloc(n ? n : 1, 1);
    b->special = calloc(n ? n : 1, sizeof *b->special);
    if (!b->str || !b->len || !b->kind || !b->special || !strmap_init(&b->vocab, n_vocab) || !strmap_init(&b->added, 64))
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory for %zu tokens", file, n);
    return TANDEM_OK;
}

static void builder_free(builder *b) {
    free(b->str);
    free(b->len);
    free(b->kind);
    free(b->special);
    strmap_free(&b->vocab);
    strmap_free(&b->added);
    free(b->buf);
    memset(b, 0, sizeof *b);
}

/* Records token `id` with text p[0..n). field names where it came from in messages. An added token may take the
 * id of a vocab token with the same text (HF files list special tokens in both places). */
static tandem_status builder_set(builder *b, int64_t id, const char *p, size_t n, bool added, bool special,
                                 bool dup_ok, const char *field) {
    if (!p) p = ""; /* an empty GGUF string may have no pointer */
    if (id < 0 || id >= b->n_ids)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: id %lld out of range [0, %d)", b->file, field, (long long)id,
                           b->n_ids);
    if (added && n == 0) return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: empty added token", b->file, field);
    size_t i = (size_t)id;
    if (b->kind[i] != KIND_NONE) {
        bool same = b->len[i] == n && memcmp(b->str[i], p, n) == 0;
        if (!same && !dup_ok) {
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: id %lld is already token %s, cannot also be %s", b->file,
                               field, (long long)id, quote(b->str[i], b->len[i]).s, quote(p, n).s);
        }
        if (!same || !added) return TANDEM_OK; /* GGUF duplicates: the first wins */
        if (b->kind[i] == KIND_ADDED) {
            b->special[i] = b->special[i] || special;
            return TANDEM_OK;
        }
        /* A vocab token that is also an added token is reached both by BPE (standing for the bytes its byte-level
         * spelling maps to) and by matching its literal text; both must be the same bytes, or decode(encode(x))
         * would not give x back. True for every real case ("<|endoftext|>" and the like). */
        if (n > b->buf_cap) {
            char *nb = realloc(b->buf, n);
            if (!nb) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", b->file);
            b->buf = nb;
            b->buf_cap = n;
        }
        size_t raw_len;
        if (byte_level_decode(p, n, b->buf, &raw_len) && (raw_len != n || memcmp(b->buf, p, n) != 0))
            return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: %s: added token %s is also vocab token %lld, which stands "
                               "for other bytes", b->file, field, quote(p, n).s, (long long)id);
    }
    /* A repeated string keeps its first id (GGUF; tokenizer.json keys are unique). */
    int32_t prev;
    if (!strmap_put(added ? &b->added : &b->vocab, p, n, (int32_t)id, &prev))
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", b->file);
    if (added && prev >= 0 && prev != id && !dup_ok)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: added token %s has two ids, %d and %lld", b->file, field,
                           quote(p, n).s, prev, (long long)id);
    b->str[i] = p;
    b->len[i] = n;
    b->kind[i] = added ? KIND_ADDED : KIND_NORMAL;
    b->special[i] = special;
    return TANDEM_OK;
}

static int added_cmp(const void *pa, const void *pb) {
    const added_token *a = pa, *b = pb;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* Builds the per-id raw bytes, the single-byte table and the added-token index. */
static tandem_status builder_finish_tokens(builder *b, tandem_tokenizer *tok, const char *vocab_field) {
    size_t n = (size_t)b->n_ids, total = 0, n_added = 0;
    for (size_t i = 0; i < n; i++) {
        total += b->len[i] + 1;
        n_added += b->kind[i] == KIND_ADDED;
    }
    tok->n_ids = b->n_ids;
    tok->tok_off = malloc((n ? n : 1) * sizeof *tok->tok_off);
    tok->tok_len = calloc(n ? n : 1, sizeof *tok->tok_len);
    tok->arena = malloc(total + 1);
    tok->added = calloc(n_added ? n_added : 1, sizeof *tok->added);
    if (!tok->tok_off || !tok->tok_len || !tok->arena || !tok->added)
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory for the vocabulary", b->file);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (b->kind[i] == KIND_NONE) {
            tok->tok_off[i] = SIZE_MAX;
            continue;
        }
        size_t len = b->len[i];
        if (b->kind[i] != KIND_NORMAL || !byte_level_decode(b->str[i], len, tok->arena + o, &len)) {
            len = b->len[i];
            if (len) memcpy(tok->arena + o, b->str[i], len);
        }
        tok->tok_off[i] = o;
        tok->tok_len[i] = len;
        tok->arena[o + len] = '\0';
        if (b->kind[i] == KIND_ADDED) {
            tok->added[tok->n_added++] = (added_token){
                .off = o, .len = len, .id = (int32_t)i, .first = (uint8_t)tok->arena[o], .special = b->special[i]};
        }
        o += len + 1;
    }
    /* Byte-level BPE must be able to spell every byte, or encoding could not round-trip. */
    for (int byte = 0; byte < 256; byte++) {
        char s[4];
        uint32_t cp = byte_to_cp(byte);
        size_t k = cp < 0x80 ? 1 : 2;
        if (k == 1) s[0] = (char)cp;
        else {
            s[0] = (char)(0xC0 | (cp >> 6));
            s[1] = (char)(0x80 | (cp & 0x3F));
        }
        int32_t id = strmap_get(&b->vocab, s, k);
        if (id < 0)
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: no token for byte 0x%02x (%s); a byte-level BPE vocabulary "
                               "needs all 256", b->file, vocab_field, byte, quote(s, k).s);
        tok->byte_id[byte] = id;
    }
    /* Sorted by first byte, longest first, so the first match found at a position is the longest one. */
    if (tok->n_added > UINT16_MAX)
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: %zu added tokens (at most %d supported)", b->file,
                           tok->n_added, UINT16_MAX);
    qsort(tok->added, tok->n_added, sizeof *tok->added, added_cmp);
    for (size_t i = tok->n_added; i-- > 0;) {
        tok->added_first[tok->added[i].first] = (uint16_t)i;
        tok->added_count[tok->added[i].first]++;
    }
    return TANDEM_OK;
}

/* Adds merge number `rank` of the pair (a, b); both and their concatenation must be vocab tokens. Like HF, a
 * repeated pair takes the rank of its last occurrence. */
static tandem_status builder_add_merge(builder *b, tandem_tokenizer *tok, size_t rank, const char *a, size_t na,
                                       const char *c, size_t nc, const char *field) {
    int32_t ia = strmap_get(&b->vocab, a, na), ic = strmap_get(&b->vocab, c, nc);
    if (ia < 0)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s[%zu]: token %s not in vocab", b->file, field, rank,
                           quote(a, na).s);
    if (ic < 0)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s[%zu]: token %s not in vocab", b->file, field, rank,
                           quote(c, nc).s);
    if (na + nc > b->buf_cap) {
        size_t cap = (na + nc) * 2 + 64;
        char *nb = realloc(b->buf, cap);
        if (!nb) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", b->file);
        b->buf = nb;
        b->buf_cap = cap;
    }
    memcpy(b->buf, a, na);
    memcpy(b->buf + na, c, nc);
    int32_t inew = strmap_get(&b->vocab, b->buf, na + nc);
    if (inew < 0)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s[%zu]: merged token %s not in vocab", b->file, field, rank,
                           quote(b->buf, na + nc).s);
    if (rank > UINT32_MAX - 1) return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: %s: too many merges", b->file, field);
    uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ic;
    size_t i = (size_t)mix64(key) & tok->merge_mask;
    while (tok->merges[i].key != EMPTY_KEY && tok->merges[i].key != key) i = (i + 1) & tok->merge_mask;
    tok->merges[i] = (merge_slot){.key = key, .rank = (uint32_t)rank, .new_id = inew};
    return TANDEM_OK;
}

/* Rewrites the pattern for PCRE2. HF runs it with Oniguruma, whose \s is exactly Unicode White_Space (checked
 * over all code points against tokenizers 0.23); PCRE2 10.42's \s also matches U+180E, so \s and \S become
 * explicit classes. Everything else used by tokenizer patterns (\p{..}, (?i:..), (?!..)) means the same. */
#define WHITE_SPACE                                                                                          \
    "\\t\\n\\x0b\\f\\r\\x20\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"
static tandem_status translate_pattern(const char *src, size_t n, char **out, size_t *out_len) {
    size_t cap = n * (sizeof WHITE_SPACE + 4) + 1, o = 0;
    char *dst = malloc(cap);
    if (!dst) return tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory");
    bool in_class = false;
    size_t class_start = 0;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '\\' && i + 1 < n) {
            char e = src[i + 1];
            i++;
            if (e == 's' || e == 'S') {
                if (in_class && e == 'S') {
                    free(dst);
                    return tandem_fail(TANDEM_ERR_UNSUPPORTED, "pre-tokenizer regex: \\S inside a character class");
                }
                const char *rep = in_class ? WHITE_SPACE : e == 's' ? "[" WHITE_SPACE "]" : "[^" WHITE_SPACE "]";
                size_t k = strlen(rep);
                memcpy(dst + o, rep, k);
                o += k;
            } else {
                dst[o++] = '\\';
                dst[o++] = e;
            }
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            class_start = i + 1;
            if (i + 1 < n && src[i + 1] == '^') class_start++;
        } else if (in_class && c == ']' && i != class_start) {
            in_class = false;
        }
        dst[o++] = c;
    }
    dst[o] = '\0';
    *out = dst;
    *out_len = o;
    return TANDEM_OK;
}

static tandem_status compile_pattern(tandem_tokenizer *tok, const char *file, const char *field, const char *pat,
                                     size_t n) {
    size_t len = 0;
    tandem_status st = translate_pattern(pat, n, &tok->pattern, &len);
    if (st != TANDEM_OK) {
        tandem_error_prefix("%s: %s", file, field);
        return st;
    }
    int err;
    PCRE2_SIZE at;
    tok->re = pcre2_compile((PCRE2_SPTR)tok->pattern, len, PCRE2_UTF | PCRE2_UCP, &err, &at, NULL);
    if (!tok->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: %s: regex not accepted by PCRE2 at offset %zu: %s", file,
                           field, (size_t)at, (const char *)msg);
    }
    /* JIT is an optimisation only: without it (unsupported CPU, no executable memory) matching still works. */
    (void)pcre2_jit_compile(tok->re, PCRE2_JIT_COMPLETE);
    return TANDEM_OK;
}

/* Appends id to the EOS list unless present. */
static tandem_status eos_add(tandem_tokenizer *tok, int32_t id) {
    for (size_t i = 0; i < tok->n_eos; i++)
        if (tok->eos[i] == id) return TANDEM_OK;
    int32_t *p = realloc(tok->eos, (tok->n_eos + 1) * sizeof *p);
    if (!p) return tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory");
    tok->eos = p;
    tok->eos[tok->n_eos++] = id;
    return TANDEM_OK;
}

/* The id of a token given by its text: an added token first, then a vocab token in byte-level form. */
static int32_t builder_find(const builder *b, const char *p, size_t n) {
    int32_t id = strmap_get(&b->added, p, n);
    return id >= 0 ? id : strmap_get(&b->vocab, p, n);
}

void tandem_tokenizer_free(tandem_tokenizer *tok) {
    if (!tok) return;
    free(tok->tok_off);
    free(tok->tok_len);
    free(tok->arena);
    free(tok->merges);
    free(tok->added);
    free(tok->pattern);
    pcre2_code_free(tok->re);
    free(tok->eos);
    chat_templates_free(&tok->templates);
    for (int i = 0; i < TOKENIZER_N_SPECIAL; i++) free(tok->special[i]);
    free(tok->special_json);
    void *derived = atomic_load(&tok->derived);
    if (derived) tok->derived_free(derived);
    free(tok);
}

void *tokenizer_derived(const tandem_tokenizer *ctok, void *(*build)(const tandem_tokenizer *tok, void *arg), void *arg,
                        void (*destroy)(void *derived)) {
    tandem_tokenizer *tok = (tandem_tokenizer *)ctok; /* the slot is a cache: the tokenizer itself stays as it is */
    void *have = atomic_load(&tok->derived);
    if (have) return have;
    void *made = build(ctok, arg);
    if (!made) return NULL;
    /* two threads may both build: the first to store wins, the other's copy is dropped */
    if (!atomic_compare_exchange_strong(&tok->derived, &have, made)) {
        destroy(made);
        return have;
    }
    tok->derived_free = destroy; /* only the winner writes it; read when the tokenizer is freed */
    return made;
}

bool tokenizer_is_added(const tandem_tokenizer *tok, int32_t id) {
    for (size_t i = 0; i < tok->n_added; i++)
        if (tok->added[i].id == id) return true;
    return false;
}

/* ---- loading tokenizer.json (+ tokenizer_config.json, generation_config.json) ---- */

/* Parses a non-negative decimal id (the keys of added_tokens_decoder). */
static bool parse_id(const char *s, int64_t *out) {
    int64_t v = 0;
    if (!*s) return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > MAX_TOKEN_ID) return false;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return true;
}

/* An integer JSON id within [0, MAX_TOKEN_ID]. */
static tandem_status json_id(const json_t *v, const char *file, const char *field, int64_t *out) {
    if (!json_is_integer(v))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: id must be an integer", file, field);
    int64_t id = json_integer_value(v);
    if (id < 0 || id > MAX_TOKEN_ID)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: id %lld out of range [0, %d]", file, field, (long long)id,
                           MAX_TOKEN_ID);
    *out = id;
    return TANDEM_OK;
}

/* Checks the parts of tokenizer.json we do not implement, so a different tokenizer fails loudly. */
static tandem_status json_check_pipeline(const json_t *root, const json_t *model, const char *file, bool *nfc,
                                         const char **pattern, size_t *pattern_len) {
    const char *type = json_get_string(model, "type");
    if (!type) return tandem_fail(TANDEM_ERR_FORMAT, "%s: model.type: missing or not a string", file);
    if (strcmp(type, "BPE") != 0)
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: model.type: '%s' is not supported (need BPE)", file, type);
    bool flag;
    if (json_get_bool(model, "ignore_merges", &flag) && flag)
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: model.ignore_merges: true is not supported", file);
    const char *keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const char *s = json_get_string(model, keys[i]);
        if (s && *s)
            return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: model.%s: '%s' is not supported", file, keys[i], s);
    }

    const json_t *norm = json_object_get(root, "normalizer");
    *nfc = false;
    if (norm && !json_is_null(norm)) {
        const char *nt = json_get_string(norm, "type");
        if (!nt) return tandem_fail(TANDEM_ERR_FORMAT, "%s: normalizer.type: missing or not a string", file);
        if (strcmp(nt, "NFC") != 0)
            return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: normalizer.type: '%s' is not supported (need NFC)", file,
                               nt);
        *nfc = true;
    }

    *pattern = TOKENIZER_QWEN2_PATTERN;
    *pattern_len = sizeof TOKENIZER_QWEN2_PATTERN - 1;
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    if (!pre || json_is_null(pre)) return TANDEM_OK;
    const char *pt = json_get_string(pre, "type");
    if (!pt) return tandem_fail(TANDEM_ERR_FORMAT, "%s: pre_tokenizer.type: missing or not a string", file);
    const json_t *list = pre;
    size_t n = 1;
    if (strcmp(pt, "Sequence") == 0) {
        list = json_object_get(pre, "pretokenizers");
        if (!json_is_array(list))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: pre_tokenizer.pretokenizers: missing or not an array", file);
        n = json_array_size(list);
    }
    bool have_split = false;
    for (size_t i = 0; i < n; i++) {
        const json_t *p = list == pre ? pre : json_array_get(list, i);
        const char *t = json_get_string(p, "type");
        if (!t) return tandem_fail(TANDEM_ERR_FORMAT, "%s: pre_tokenizer[%zu].type: missing or not a string", file, i);
        if (strcmp(t, "ByteLevel") == 0) {
            if (json_get_bool(p, "use_regex", &flag) && flag)
                return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: pre_tokenizer[%zu]: ByteLevel with use_regex is not "
                                   "supported", file, i);
            if (json_get_bool(p, "add_prefix_space", &flag) && flag)
                return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: pre_tokenizer[%zu]: add_prefix_space is not supported",
                                   file, i);
        } else if (strcmp(t, "Split") == 0) {
            if (have_split)
                return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: pre_tokenizer[%zu]: only one Split is supported", file,
                                   i);
            const char *re = json_get_string(json_object_get(p, "pattern"), "Regex");
            const char *beh = json_get_string(p, "behavior");
            if (!re)
                return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: pre_tokenizer[%zu].pattern: only a Regex pattern is "
                                   "supported", file, i);
            if (!beh || strcmp(beh, "Isolated") != 0 || (json_get_bool(p, "invert", &flag) && flag))
                return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: pre_tokenizer[%zu]: only Split with behavior Isolated "
                                   "and invert false is supported", file, i);
            *pattern = re;
            *pattern_len = json_string_length(json_object_get(json_object_get(p, "pattern"), "Regex"));
            have_split = true;
        } else {
            return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: pre_tokenizer[%zu]: type '%s' is not supported", file, i,
                               t);
        }
    }
    if (!have_split)
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: pre_tokenizer: no Split regex (only regex-split byte-level BPE "
                           "is supported)", file);
    return TANDEM_OK;
}

/* Largest id over vocab, added_tokens and tokenizer_config's added_tokens_decoder, validating types on the way. */
static tandem_status json_max_id(const json_t *vocab, const json_t *added, const json_t *decoder, const char *file,
                                 const char *cfg_file, int64_t *max_id) {
    char field[sizeof(quoted) + 40];
    const char *key;
    size_t key_len;
    json_t *v;
    int64_t id, mx = -1;
    tandem_status st;
    json_object_keylen_foreach((json_t *)vocab, key, key_len, v) {
        id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id > MAX_TOKEN_ID) { /* the field is spelled out only for the message */
            snprintf(field, sizeof field, "model.vocab[%s]", quote(key, key_len).s);
            return json_id(v, file, field, &id);
        }
        if (id > mx) mx = id;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        snprintf(field, sizeof field, "added_tokens[%zu]", i);
        if (!json_is_object(a)) return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: not an object", file, field);
        if (!json_is_string(json_object_get(a, "content")))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s.content: missing or not a string", file, field);
        const json_t *sp = json_object_get(a, "special");
        if (sp && !json_is_boolean(sp))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s.special: not a boolean", file, field);
        snprintf(field, sizeof field, "added_tokens[%zu].id", i);
        if ((st = json_id(json_object_get(a, "id"), file, field, &id)) != TANDEM_OK) return st;
        if (id > mx) mx = id;
    }
    json_object_keylen_foreach((json_t *)decoder, key, key_len, v) {
        snprintf(field, sizeof field, "added_tokens_decoder[%s]", quote(key, key_len).s);
        if (!parse_id(key, &id) || strlen(key) != key_len)
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: key is not a token id", cfg_file, field);
        if (!json_is_object(v) || !json_is_string(json_object_get(v, "content")))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s.content: missing or not a string", cfg_file, field);
        const json_t *sp = json_object_get(v, "special");
        if (sp && !json_is_boolean(sp))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s.special: not a boolean", cfg_file, field);
        if (id > mx) mx = id;
    }
    *max_id = mx;
    return TANDEM_OK;
}

static tandem_status json_fill(builder *b, const json_t *vocab, const json_t *added, const json_t *decoder,
                               const char *cfg_file) {
    char field[sizeof(quoted) + 40];
    const char *key;
    size_t key_len;
    json_t *v;
    tandem_status st;
    json_object_keylen_foreach((json_t *)vocab, key, key_len, v) {
        /* (a clash message quotes both tokens, so the field need not name the key) */
        if ((st = builder_set(b, json_integer_value(v), key, key_len, false, false, false, "model.vocab")) != TANDEM_OK)
            return st;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i), *c = json_object_get(a, "content");
        snprintf(field, sizeof field, "added_tokens[%zu]", i);
        st = builder_set(b, json_integer_value(json_object_get(a, "id")), json_string_value(c), json_string_length(c),
                         true, json_is_true(json_object_get(a, "special")), false, field);
        if (st != TANDEM_OK) return st;
    }
    /* tokenizer_config.json repeats the added tokens; it may only agree with tokenizer.json or add new ones. */
    const char *file = b->file;
    b->file = cfg_file;
    st = TANDEM_OK;
    json_object_keylen_foreach((json_t *)decoder, key, key_len, v) {
        const json_t *c = json_object_get(v, "content");
        int64_t id = -1;
        parse_id(key, &id);
        snprintf(field, sizeof field, "added_tokens_decoder[%s]", quote(key, key_len).s);
        st = builder_set(b, id, json_string_value(c), json_string_length(c), true,
                         json_is_true(json_object_get(v, "special")), false, field);
        if (st != TANDEM_OK) break;
    }
    b->file = file;
    return st;
}

static tandem_status json_merges(builder *b, tandem_tokenizer *tok, const json_t *merges) {
    size_t n = json_array_size(merges);
    tandem_status st = merges_alloc(tok, n);
    for (size_t i = 0; i < n && st == TANDEM_OK; i++) {
        const json_t *m = json_array_get(merges, i);
        const char *a, *c;
        size_t na, nc;
        if (json_is_string(m)) {
            /* "a b": exactly one space, as HF requires (byte-level tokens never hold a raw space). */
            a = json_string_value(m);
            size_t len = json_string_length(m);
            const char *sp = memchr(a, ' ', len);
            if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - a)))
                return tandem_fail(TANDEM_ERR_FORMAT, "%s: model.merges[%zu]: %s is not two tokens separated by one "
                                   "space", b->file, i, quote(a, len).s);
            na = (size_t)(sp - a);
            c = sp + 1;
            nc = len - na - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            na = json_string_length(json_array_get(m, 0));
            c = json_string_value(json_array_get(m, 1));
            nc = json_string_length(json_array_get(m, 1));
        } else {
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: model.merges[%zu]: neither \"a b\" nor [\"a\", \"b\"]",
                               b->file, i);
        }
        st = builder_add_merge(b, tok, i, a, na, c, nc, "model.merges");
    }
    return st;
}

/* The eos_token_id field of a generation_config.json or config.json (an id or a list of ids; absent or null: none):
 * each must be a token of the vocabulary, and joins the EOS ids when add. */
static tandem_status json_eos_ids(tandem_tokenizer *tok, const json_t *root, const char *file, bool add) {
    const json_t *e = json_object_get(root, "eos_token_id");
    if (!e || json_is_null(e)) return TANDEM_OK;
    size_t n = json_is_array(e) ? json_array_size(e) : 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_is_array(e) ? json_array_get(e, i) : e;
        if (!json_is_integer(v))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: eos_token_id: not an integer or a list of integers", file);
        json_int_t id = json_integer_value(v);
        if (id < 0 || id >= tok->n_ids || tok->tok_off[id] == SIZE_MAX)
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: eos_token_id: %lld is not a token id (vocab size %d)", file,
                               (long long)id, tok->n_ids);
        tandem_status st = add ? eos_add(tok, (int32_t)id) : TANDEM_OK;
        if (st != TANDEM_OK) return st;
    }
    return TANDEM_OK;
}

/* EOS ids: generation_config.json eos_token_id ∪ tokenizer_config.json eos_token; when neither file names one,
 * the ids of <|im_end|> and <|endoftext|> (the tokens that end a Qwen turn or document). config.json's
 * eos_token_id (model_cfg) is checked, not used: converters take it for the GGUF's eos id when tokenizer_config.json
 * names none, so an id outside the vocabulary is an error here too, not a surprise later. */
static tandem_status json_eos(builder *b, tandem_tokenizer *tok, const json_t *cfg, const char *cfg_file,
                              const json_t *gen, const char *gen_file, const json_t *model_cfg,
                              const char *model_cfg_file) {
    tandem_status st;
    if ((st = json_eos_ids(tok, gen, gen_file, true)) != TANDEM_OK ||
        (st = json_eos_ids(tok, model_cfg, model_cfg_file, false)) != TANDEM_OK)
        return st;
    const json_t *t = json_object_get(cfg, "eos_token");
    if (json_is_object(t)) t = json_object_get(t, "content");
    if (t && !json_is_null(t)) {
        if (!json_is_string(t))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: eos_token: not a string or {\"content\": string}", cfg_file);
        int32_t id = builder_find(b, json_string_value(t), json_string_length(t));
        if (id < 0)
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: eos_token: %s is not a token", cfg_file,
                               quote(json_string_value(t), json_string_length(t)).s);
        if ((st = eos_add(tok, id)) != TANDEM_OK) return st;
    }
    if (tok->n_eos == 0) {
        const char *names[] = {"<|im_end|>", "<|endoftext|>"};
        for (int i = 0; i < 2 && st == TANDEM_OK; i++) {
            int32_t id = builder_find(b, names[i], strlen(names[i]));
            if (id >= 0) st = eos_add(tok, id);
        }
    }
    return st;
}

static tandem_status read_text_file(const char *path, char **out) {
    mapped_file mf;
    tandem_status st = mapped_file_open(path, &mf);
    if (st != TANDEM_OK) return st;
    *out = dup_mem((const char *)mf.data, mf.size);
    mapped_file_close(&mf);
    return *out ? TANDEM_OK : tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
}

const char *const TOKENIZER_SPECIAL_NAMES[TOKENIZER_N_SPECIAL] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                                                  "pad_token", "cls_token", "mask_token"};

void chat_templates_free(chat_templates *t) {
    free(t->text);
    for (size_t i = 0; i < t->n; i++) {
        free(t->names[i]);
        free(t->texts[i]);
    }
    free(t->names);
    free(t->texts);
    memset(t, 0, sizeof *t);
}

/* obj's chat_template into *out: a string (the default), or HF's list of {name, template} (the one named
 * "default" and the others by name); *out stays empty when obj has none. file names obj in messages. */
static tandem_status chat_template_field(const json_t *obj, const char *file, chat_templates *out) {
    const json_t *t = json_object_get(obj, "chat_template");
    if (!t || json_is_null(t)) return TANDEM_OK;
    if (json_is_string(t)) {
        out->text = dup_mem(json_string_value(t), json_string_length(t));
        return out->text ? TANDEM_OK : tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", file);
    }
    if (!json_is_array(t))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: chat_template: not a string or a list of {name, template}", file);
    size_t n = json_array_size(t);
    out->names = calloc(n ? n : 1, sizeof *out->names);
    out->texts = calloc(n ? n : 1, sizeof *out->texts);
    if (!out->names || !out->texts) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", file);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(t, i), *text = json_object_get(e, "template");
        const char *name = json_get_string(e, "name");
        if (!name || !json_is_string(text))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: chat_template[%zu]: not a {name, template} object", file, i);
        char *copy = dup_mem(json_string_value(text), json_string_length(text));
        if (!copy) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", file);
        /* a later entry of the same name replaces an earlier one, as transformers' dict does */
        char **slot = NULL;
        if (!strcmp(name, "default")) slot = &out->text;
        for (size_t k = 0; !slot && k < out->n; k++)
            if (!strcmp(out->names[k], name)) slot = &out->texts[k];
        if (!slot) {
            if (!(out->names[out->n] = dup_mem(name, strlen(name)))) {
                free(copy);
                return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", file);
            }
            slot = &out->texts[out->n++];
        }
        free(*slot);
        *slot = copy;
    }
    return TANDEM_OK;
}

tandem_status tokenizer_chat_templates(const checkpoint_files *f, const json_t *cfg, chat_templates *out) {
    memset(out, 0, sizeof *out);
    tandem_status st;
    /* transformers' order: a separate chat_template.jinja takes priority over the config's entry */
    if (f->chat_template_jinja) {
        st = read_text_file(f->chat_template_jinja, &out->text);
    } else if (!(st = chat_template_field(cfg, f->tokenizer_config, out)) && !out->text && !out->n &&
               f->chat_template_json) {
        json_t *root = NULL;
        if (!(st = json_load_path(f->chat_template_json, &root))) {
            if (!json_is_object(root))
                st = tandem_fail(TANDEM_ERR_FORMAT, "%s: top level is not an object", f->chat_template_json);
            else st = chat_template_field(root, f->chat_template_json, out);
        }
        json_decref(root);
    }
    if (st) chat_templates_free(out);
    return st;
}

/* tok->special as a JSON object of those set. */
static tandem_status special_tokens_json(tandem_tokenizer *tok) {
    json_t *o = json_object();
    for (int i = 0; o && i < TOKENIZER_N_SPECIAL; i++) {
        /* jansson refuses text that is not UTF-8 (a GGUF token may be): such a token is left out */
        json_t *v = tok->special[i] ? json_string(tok->special[i]) : NULL;
        if (v && json_object_set_new(o, TOKENIZER_SPECIAL_NAMES[i], v)) {
            json_decref(o);
            o = NULL;
        }
    }
    tok->special_json = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return tok->special_json ? TANDEM_OK : tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory");
}

/* tokenizer_config.json's special tokens (a string or {"content": string}; null or absent = not set). */
static tandem_status json_special_tokens(tandem_tokenizer *tok, const json_t *cfg, const char *cfg_file) {
    for (int i = 0; i < TOKENIZER_N_SPECIAL; i++) {
        const json_t *v = json_object_get(cfg, TOKENIZER_SPECIAL_NAMES[i]);
        if (json_is_object(v)) v = json_object_get(v, "content");
        if (!v || json_is_null(v)) continue;
        if (!json_is_string(v))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: not a string or {\"content\": string}", cfg_file,
                               TOKENIZER_SPECIAL_NAMES[i]);
        if (!(tok->special[i] = dup_mem(json_string_value(v), json_string_length(v))))
            return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", cfg_file);
    }
    return TANDEM_OK;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return dup_mem(".", 1);
    if (slash == path) return dup_mem("/", 1);
    return dup_mem(path, (size_t)(slash - path));
}

/* Loads an optional JSON file beside tokenizer.json: absent (path NULL) -> *out NULL; present -> must parse as
 * an object. */
static tandem_status load_optional_json(const char *path, json_t **out) {
    *out = NULL;
    if (!path) return TANDEM_OK;
    tandem_status st = json_load_path(path, out);
    if (st == TANDEM_OK && !json_is_object(*out))
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: top level is not an object", path);
    return st;
}

tandem_status tokenizer_files_of(const char *dir_or_file, checkpoint_files *f) {
    if (path_is_dir(dir_or_file)) return checkpoint_find(dir_or_file, f);
    char *dir = dir_of(dir_or_file);
    tandem_status st = dir ? checkpoint_find(dir, f) : tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory");
    free(dir);
    if (st) return st;
    free(f->tokenizer); /* the file given, whatever its name */
    f->tokenizer = dup_mem(dir_or_file, strlen(dir_or_file));
    if (!f->tokenizer) {
        checkpoint_files_free(f);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory");
    }
    return TANDEM_OK;
}

tandem_status tokenizer_load_json(const char *dir_or_file, tandem_tokenizer **out) {
    if (!out || !dir_or_file) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tokenizer_load_json: NULL argument");
    *out = NULL;
    checkpoint_files f;
    tandem_status st = tokenizer_files_of(dir_or_file, &f);
    if (st) return st;
    st = tokenizer_load_files(&f, out);
    checkpoint_files_free(&f);
    return st;
}

tandem_status tokenizer_load_files(const checkpoint_files *f, tandem_tokenizer **out) {
    const char *file = f->tokenizer, *cfg_file = f->tokenizer_config, *gen_file = f->generation_config;
    const char *model_cfg_file = f->config;
    json_t *root = NULL, *cfg = NULL, *gen = NULL, *model_cfg = NULL;
    tandem_tokenizer *tok = NULL;
    builder b = {0};
    tandem_status st = TANDEM_OK;
    *out = NULL;
    if (!file) return tandem_fail(TANDEM_ERR_IO, "%s: no tokenizer.json in this folder", f->path);
    if ((st = json_load_path(file, &root)) != TANDEM_OK) goto done;
    if ((st = load_optional_json(cfg_file, &cfg)) != TANDEM_OK) goto done;
    if ((st = load_optional_json(gen_file, &gen)) != TANDEM_OK) goto done;
    if ((st = load_optional_json(model_cfg_file, &model_cfg)) != TANDEM_OK) goto done;
    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: model: missing or not an object", file);
        goto done;
    }
    const json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    const json_t *added = json_object_get(root, "added_tokens");
    const json_t *decoder = json_object_get(cfg, "added_tokens_decoder");
    bool nfc = false;
    const char *pattern = NULL;
    size_t pattern_len = 0;
    if ((st = json_check_pipeline(root, model, file, &nfc, &pattern, &pattern_len)) != TANDEM_OK) goto done;
    if (!json_is_object(vocab)) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: model.vocab: missing or not an object", file);
        goto done;
    }
    if (!json_is_array(merges)) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: model.merges: missing or not an array", file);
        goto done;
    }
    if (added && !json_is_array(added) && !json_is_null(added)) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: added_tokens: not an array", file);
        goto done;
    }
    if (decoder && !json_is_object(decoder)) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: added_tokens_decoder: not an object", cfg_file);
        goto done;
    }
    int64_t max_id = -1;
    if ((st = json_max_id(vocab, added, decoder, file, cfg_file, &max_id)) != TANDEM_OK) goto done;
    if ((st = builder_init(&b, file, max_id + 1, json_object_size(vocab))) != TANDEM_OK) goto done;
    if ((st = json_fill(&b, vocab, added, decoder, cfg_file)) != TANDEM_OK) goto done;

    tok = calloc(1, sizeof *tok);
    if (!tok) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    tok->nfc = nfc;
    if ((st = builder_finish_tokens(&b, tok, "model.vocab")) != TANDEM_OK) goto done;
    if ((st = json_merges(&b, tok, merges)) != TANDEM_OK) goto done;
    if ((st = compile_pattern(tok, file, "pre_tokenizer", pattern, pattern_len)) != TANDEM_OK) goto done;
    if ((st = json_eos(&b, tok, cfg, cfg_file, gen, gen_file, model_cfg, model_cfg_file)) != TANDEM_OK) goto done;
    if ((st = json_special_tokens(tok, cfg, cfg_file)) != TANDEM_OK) goto done;
    if ((st = special_tokens_json(tok)) != TANDEM_OK) goto done;
    st = tokenizer_chat_templates(f, cfg, &tok->templates);

done:
    if (st == TANDEM_OK) {
        *out = tok;
    } else {
        tandem_tokenizer_free(tok);
    }
    builder_free(&b);
    json_decref(root);
    json_decref(cfg);
    json_decref(gen);
    json_decref(model_cfg);
    return st;
}

/* ---- loading from GGUF metadata ---- */

static const gguf_kv *gguf_string_array(const gguf_file *f, const char *key, tandem_status *st) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) *st = tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: missing", f->map.path, key);
    else if (kv->type != GGUF_TYPE_ARRAY || kv->array_type != GGUF_TYPE_STRING || (kv->n && !kv->strings))
        *st = tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: not an array of strings", f->map.path, key);
    else return kv;
    return NULL;
}

static bool gguf_is_int_type(gguf_value_type t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_INT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_INT16 ||
           t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

/* An optional string kv: absent -> *out {NULL, 0}; present but of another type -> error. */
static tandem_status gguf_opt_str(const gguf_file *f, const char *key, gguf_str *out) {
    out->ptr = NULL;
    out->len = 0;
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return TANDEM_OK;
    if (kv->type != GGUF_TYPE_STRING) return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: not a string", f->map.path, key);
    *out = kv->v.str;
    if (!out->ptr) out->ptr = "";
    return TANDEM_OK;
}

static tandem_status gguf_check_model(const gguf_file *f) {
    const char *path = f->map.path;
    gguf_str model, pre;
    tandem_status st = gguf_opt_str(f, "tokenizer.ggml.model", &model);
    if (st == TANDEM_OK) st = gguf_opt_str(f, "tokenizer.ggml.pre", &pre);
    if (st != TANDEM_OK) return st;
    if (!model.ptr) return tandem_fail(TANDEM_ERR_FORMAT, "%s: tokenizer.ggml.model: missing", path);
    if (model.len != 4 || memcmp(model.ptr, "gpt2", 4) != 0)
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model: %s is not supported (need 'gpt2')", path,
                           quote(model.ptr, model.len).s);
    if (!pre.ptr) return tandem_fail(TANDEM_ERR_FORMAT, "%s: tokenizer.ggml.pre: missing (need 'qwen2')", path);
    for (size_t i = 0; i < sizeof QWEN2_PRE_NAMES / sizeof *QWEN2_PRE_NAMES; i++)
        if (pre.len == strlen(QWEN2_PRE_NAMES[i]) && memcmp(pre.ptr, QWEN2_PRE_NAMES[i], pre.len) == 0)
            return TANDEM_OK;
    return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre: %s is not supported (need 'qwen2')", path,
                       quote(pre.ptr, pre.len).s);
}

/* The special tokens' text from tokenizer.ggml.*_id (llama.cpp's keys), as llama.cpp passes them to templates. */
static tandem_status gguf_special_tokens(const gguf_file *f, tandem_tokenizer *tok) {
    static const char *const KEYS[TOKENIZER_N_SPECIAL] = {
        "tokenizer.ggml.bos_token_id",       "tokenizer.ggml.eos_token_id",     "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.cls_token_id",
        "tokenizer.ggml.mask_token_id"};
    for (int i = 0; i < TOKENIZER_N_SPECIAL; i++) {
        if (!gguf_find_kv(f, KEYS[i])) continue;
        uint32_t id;
        if (!gguf_get_u32(f, KEYS[i], &id) || id >= (uint32_t)tok->n_ids || tok->tok_off[id] == SIZE_MAX)
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: not a token id (vocab size %d)", f->map.path, KEYS[i],
                               tok->n_ids);
        if (!(tok->special[i] = dup_mem(tok->arena + tok->tok_off[id], tok->tok_len[id])))
            return tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory");
    }
    return TANDEM_OK;
}

/* tokenizer.chat_template, and the named ones gguf-py writes: tokenizer.chat_templates lists the names, each
 * stored as tokenizer.chat_template.NAME. */
static tandem_status gguf_chat_templates(const gguf_file *f, chat_templates *out) {
    gguf_str tpl;
    tandem_status st = gguf_opt_str(f, "tokenizer.chat_template", &tpl);
    if (st) return st;
    if (tpl.ptr && !(out->text = dup_mem(tpl.ptr, (size_t)tpl.len)))
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory");
    if (!gguf_find_kv(f, "tokenizer.chat_templates")) return TANDEM_OK;
    const gguf_kv *names = gguf_string_array(f, "tokenizer.chat_templates", &st);
    if (!names) return st;
    out->names = calloc(names->n ? names->n : 1, sizeof *out->names);
    out->texts = calloc(names->n ? names->n : 1, sizeof *out->texts);
    if (!out->names || !out->texts) return tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory");
    for (uint64_t i = 0; i < names->n; i++) {
        char key[160];
        const gguf_str *name = &names->strings[i];
        if (!name->len || name->len > 100 || memchr(name->ptr, '\0', name->len))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: tokenizer.chat_templates[%llu]: not a template name",
                               f->map.path, (unsigned long long)i);
        snprintf(key, sizeof key, "tokenizer.chat_template.%.*s", (int)name->len, name->ptr);
        if ((st = gguf_opt_str(f, key, &tpl))) return st;
        if (!tpl.ptr)
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: missing (named in tokenizer.chat_templates)", f->map.path,
                               key);
        out->names[out->n] = dup_mem(name->ptr, (size_t)name->len);
        out->texts[out->n] = dup_mem(tpl.ptr, (size_t)tpl.len);
        if (!out->names[out->n] || !out->texts[out->n++]) return tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory");
    }
    return TANDEM_OK;
}

tandem_status tokenizer_load_gguf(const gguf_file *f, tandem_tokenizer **out) {
    tandem_tokenizer *tok = NULL;
    builder b = {0};
    tandem_status st = TANDEM_OK;
    if (!out || !f) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tokenizer_load_gguf: NULL argument");
    *out = NULL;
    const char *path = f->map.path ? f->map.path : "gguf";
    if ((st = gguf_check_model(f)) != TANDEM_OK) goto done;
    const gguf_kv *tokens = gguf_string_array(f, "tokenizer.ggml.tokens", &st);
    if (!tokens) goto done;
    const gguf_kv *merges = gguf_string_array(f, "tokenizer.ggml.merges", &st);
    if (!merges) goto done;
    const gguf_kv *types = gguf_find_kv(f, "tokenizer.ggml.token_type");
    if (!types) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: tokenizer.ggml.token_type: missing", path);
        goto done;
    }
    if (types->type != GGUF_TYPE_ARRAY || !gguf_is_int_type(types->array_type)) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: tokenizer.ggml.token_type: not an array of integers", path);
        goto done;
    }
    if (types->n != tokens->n) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: tokenizer.ggml.token_type: %llu entries but tokenizer.ggml.tokens has "
                         "%llu", path, (unsigned long long)types->n, (unsigned long long)tokens->n);
        goto done;
    }
    if (tokens->n == 0 || tokens->n > (uint64_t)MAX_TOKEN_ID + 1) {
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: tokenizer.ggml.tokens: %llu tokens (need 1 to %d)", path,
                         (unsigned long long)tokens->n, MAX_TOKEN_ID + 1);
        goto done;
    }
    if ((st = builder_init(&b, path, (int64_t)tokens->n, (size_t)tokens->n)) != TANDEM_OK) goto done;
    char field[64] = "tokenizer.ggml.tokens";
    for (uint64_t i = 0; i < tokens->n; i++) {
        int64_t type = gguf_array_int(types, i);
        /* CONTROL (3) and USER_DEFINED (4) are the added tokens, stored as plain text; an empty one could never be
         * matched, so it is kept as an ordinary (unreachable) token. */
        bool added = (type == 3 || type == 4) && tokens->strings[i].len > 0;
        if (added) /* only an added token can fail here; the field is spelled out for it alone */
            snprintf(field, sizeof field, "tokenizer.ggml.tokens[%llu]", (unsigned long long)i);
        st = builder_set(&b, (int64_t)i, tokens->strings[i].ptr, tokens->strings[i].len, added, type == 3, true, field);
        if (st != TANDEM_OK) goto done;
    }
    tok = calloc(1, sizeof *tok);
    if (!tok) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    tok->nfc = true; /* HF applies NFC for qwen2 tokenizers (llama.cpp does not) */
    if ((st = builder_finish_tokens(&b, tok, "tokenizer.ggml.tokens")) != TANDEM_OK) goto done;
    if ((st = merges_alloc(tok, merges->n)) != TANDEM_OK) goto done;
    for (uint64_t i = 0; i < merges->n; i++) {
        /* "a b" split at the first space after byte 0, as llama.cpp does (gguf-py writes spaces inside tokens
         * as U+0120, so the first space is the separator). */
        const char *s = merges->strings[i].ptr;
        size_t n = merges->strings[i].len;
        const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
        if (!sp) {
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s: tokenizer.ggml.merges[%llu]: %s has no space separator", path,
                             (unsigned long long)i, quote(s, n).s);
            goto done;
        }
        size_t na = (size_t)(sp - s);
        st = builder_add_merge(&b, tok, (size_t)i, s, na, sp + 1, n - na - 1, "tokenizer.ggml.merges");
        if (st != TANDEM_OK) goto done;
    }
    if ((st = compile_pattern(tok, path, "tokenizer.ggml.pre", TOKENIZER_QWEN2_PATTERN, sizeof TOKENIZER_QWEN2_PATTERN - 1)) != TANDEM_OK)
        goto done;

    /* EOS: tokenizer.ggml.eos_token_id ∪ <|im_end|>, <|endoftext|> (GGUF keeps one eos id; generation stops on
     * both in HF's generation_config). */
    const gguf_kv *eos = gguf_find_kv(f, "tokenizer.ggml.eos_token_id");
    if (eos) {
        uint32_t id;
        if (!gguf_get_u32(f, "tokenizer.ggml.eos_token_id", &id) || id >= (uint32_t)tok->n_ids) {
            st = tandem_fail(TANDEM_ERR_FORMAT, "%s: tokenizer.ggml.eos_token_id: not a token id (vocab size %d)", path,
                             tok->n_ids);
            goto done;
        }
        if ((st = eos_add(tok, (int32_t)id)) != TANDEM_OK) goto done;
    }
    const char *names[] = {"<|im_end|>", "<|endoftext|>"};
    for (int i = 0; i < 2; i++) {
        int32_t id = builder_find(&b, names[i], strlen(names[i]));
        if (id >= 0 && (st = eos_add(tok, id)) != TANDEM_OK) goto done;
    }
    if ((st = gguf_special_tokens(f, tok)) != TANDEM_OK) goto done;
    if ((st = special_tokens_json(tok)) != TANDEM_OK) goto done;
    st = gguf_chat_templates(f, &tok->templates);

done:
    if (st == TANDEM_OK) {
        *out = tok;
    } else {
        tandem_tokenizer_free(tok);
    }
    builder_free(&b);
    return st;
}

/* ---- public loading ---- */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

tandem_status tandem_tokenizer_load(const char *path, tandem_tokenizer **out) {
    tandem_status st;
    if (!out) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_tokenizer_load: out is NULL");
    *out = NULL;
    if (!path) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_tokenizer_load: path is NULL");
    /* a hub reference (ORG/NAME:Q4_K_M) that is no local path: the cached file or folder it names */
    char *cached = NULL;
    if ((st = hub_resolve_model_path(path, &cached))) {
        tandem_error_prefix("tandem_tokenizer_load");
        return st;
    }
    if (cached) {
        st = tandem_tokenizer_load(cached, out);
        free(cached);
        return st;
    }
    if (path_is_dir(path)) {
        st = tokenizer_load_json(path, out);
    } else {
        char magic[4] = {0};
        FILE *fp = fopen(path, "rb");
        if (!fp) {
            st = tandem_fail(TANDEM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        } else {
            size_t got = fread(magic, 1, 4, fp);
            fclose(fp);
            if (got == 4 && memcmp(magic, "GGUF", 4) == 0) {
                gguf_file *f = NULL;
                st = gguf_open(path, &f);
                if (st == TANDEM_OK) st = tokenizer_load_gguf(f, out);
                gguf_close(f);
            } else if (ends_with(path, ".json")) {
                st = tokenizer_load_json(path, out);
            } else {
                st = tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: neither a GGUF file, a .json file nor a folder", path);
            }
        }
    }
    if (st != TANDEM_OK) tandem_error_prefix("tandem_tokenizer_load");
    return st;
}

int32_t tandem_tokenizer_vocab_size(const tandem_tokenizer *tok) { return tok ? tok->n_ids : 0; }

const char *tandem_tokenizer_token_bytes(const tandem_tokenizer *tok, int32_t id, size_t *len) {
    if (len) *len = 0;
    if (!tok || id < 0 || id >= tok->n_ids || tok->tok_off[id] == SIZE_MAX) return NULL;
    if (len) *len = tok->tok_len[id];
    return tok->arena + tok->tok_off[id];
}

const int32_t *tandem_tokenizer_eos_ids(const tandem_tokenizer *tok, size_t *n) {
    if (n) *n = tok ? tok->n_eos : 0;
    return tok ? tok->eos : NULL;
}

const char *tandem_tokenizer_chat_template(const tandem_tokenizer *tok) { return tok ? tok->templates.text : NULL; }

const char *tandem_tokenizer_chat_template_named(const tandem_tokenizer *tok, const char *name) {
    if (!tok) return NULL;
    if (!name || !strcmp(name, "default")) return tok->templates.text;
    for (size_t i = 0; i < tok->templates.n; i++)
        if (!strcmp(tok->templates.names[i], name)) return tok->templates.texts[i];
    return NULL;
}

const char *tandem_tokenizer_chat_template_for(const tandem_tokenizer *tok, bool with_tools) {
    const char *t = with_tools ? tandem_tokenizer_chat_template_named(tok, "tool_use") : NULL;
    return t ? t : tandem_tokenizer_chat_template(tok);
}

const char *tandem_tokenizer_special_tokens_json(const tandem_tokenizer *tok) { return tok ? tok->special_json : NULL; }

bool tandem_tokenizer_is_special(const tandem_tokenizer *tok, int32_t id) {
    if (!tok) return false;
    for (size_t i = 0; i < tok->n_added; i++) /* few added tokens (Qwen3: 26) */
        if (tok->added[i].id == id) return tok->added[i].special;
    return false;
}

const char *tandem_tokenizer_special_token(const tandem_tokenizer *tok, const char *name) {
    if (!tok || !name) return NULL;
    for (int i = 0; i < TOKENIZER_N_SPECIAL; i++)
        if (!strcmp(TOKENIZER_SPECIAL_NAMES[i], name)) return tok->special[i];
    return NULL;
}

/* ---- encoding ---- */

typedef struct heap_entry {
    uint32_t rank;
    int32_t new_id;
    size_t pos;
} heap_entry;

/* Per-call state: the tokenizer stays read-only, so one tokenizer can encode on many threads at once. */
typedef struct encoder {
    const tandem_tokenizer *tok;
    int32_t *ids;
    size_t n_ids, cap_ids;
    pcre2_match_data *md;
    int32_t *sym;            /* BPE symbols of the current piece */
    size_t *prev, *next;     /* linked list over them; SIZE_MAX = none; sym[i] < 0 once merged away */
    size_t cap_sym;
    heap_entry *heap;
    size_t n_heap, cap_heap;
} encoder;

static void encoder_free(encoder *e) {
    free(e->ids);
    pcre2_match_data_free(e->md);
    free(e->sym);
    free(e->prev);
    free(e->next);
    free(e->heap);
}

static tandem_status push_id(encoder *e, int32_t id) {
    if (e->n_ids == e->cap_ids) {
        size_t cap = e->cap_ids ? e->cap_ids * 2 : 256;
        int32_t *p = realloc(e->ids, cap * sizeof *p);
        if (!p) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_tokenizer_encode: out of memory for %zu ids", cap);
        e->ids = p;
        e->cap_ids = cap;
    }
    e->ids[e->n_ids++] = id;
    return TANDEM_OK;
}

/* Min-heap on (rank, pos): the lowest rank merges first, the leftmost among equal ranks (HF's order). */
static bool heap_less(const heap_entry *a, const heap_entry *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static tandem_status heap_push(encoder *e, size_t pos, const merge_slot *m) {
    if (e->n_heap == e->cap_heap) {
        size_t cap = e->cap_heap ? e->cap_heap * 2 : 64;
        heap_entry *p = realloc(e->heap, cap * sizeof *p);
        if (!p) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_tokenizer_encode: out of memory");
        e->heap = p;
        e->cap_heap = cap;
    }
    size_t i = e->n_heap++;
    heap_entry x = {.rank = m->rank, .new_id = m->new_id, .pos = pos};
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&x, &e->heap[parent])) break;
        e->heap[i] = e->heap[parent];
        i = parent;
    }
    e->heap[i] = x;
    return TANDEM_OK;
}

static heap_entry heap_pop(encoder *e) {
    heap_entry top = e->heap[0], x = e->heap[--e->n_heap];
    size_t i = 0, n = e->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(&e->heap[c + 1], &e->heap[c])) c++;
        if (!heap_less(&e->heap[c], &x)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = x;
    return top;
}

/* BPE over one piece, mirroring HF's Word::merge_all: a queue of candidate merges ordered by (rank, position);
 * a popped entry is stale (skipped) when its left symbol was merged away, has no right neighbour, or the pair
 * there no longer merges into the same token. */
static tandem_status bpe_piece(encoder *e, const uint8_t *p, size_t n) {
    const tandem_tokenizer *tok = e->tok;
    tandem_status st = TANDEM_OK;
    if (n == 1) return push_id(e, tok->byte_id[p[0]]);
    if (n > e->cap_sym) {
        size_t cap = n * 2;
        int32_t *sym = realloc(e->sym, cap * sizeof *sym);
        if (sym) e->sym = sym;
        size_t *prev = realloc(e->prev, cap * sizeof *prev);
        if (prev) e->prev = prev;
        size_t *next = realloc(e->next, cap * sizeof *next);
        if (next) e->next = next;
        if (!sym || !prev || !next) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_tokenizer_encode: out of memory");
        e->cap_sym = cap;
    }
    e->n_heap = 0;
    for (size_t i = 0; i < n; i++) {
        e->sym[i] = tok->byte_id[p[i]];
        e->prev[i] = i ? i - 1 : SIZE_MAX;
        e->next[i] = i + 1 < n ? i + 1 : SIZE_MAX;
    }
    for (size_t i = 0; i + 1 < n && st == TANDEM_OK; i++) {
        const merge_slot *m = merge_find(tok, e->sym[i], e->sym[i + 1]);
        if (m) st = heap_push(e, i, m);
    }
    while (e->n_heap > 0 && st == TANDEM_OK) {
        heap_entry top = heap_pop(e);
        size_t pos = top.pos, right = e->next[pos];
        if (e->sym[pos] < 0 || right == SIZE_MAX) continue;
        const merge_slot *m = merge_find(tok, e->sym[pos], e->sym[right]);
        if (!m || m->new_id != top.new_id) continue;
        e->sym[pos] = top.new_id;
        e->sym[right] = -1;
        e->next[pos] = e->next[right];
        if (e->next[pos] != SIZE_MAX) e->prev[e->next[pos]] = pos;
        if (e->prev[pos] != SIZE_MAX) {
            m = merge_find(tok, e->sym[e->prev[pos]], e->sym[pos]);
            if (m) st = heap_push(e, e->prev[pos], m);
        }
        if (st == TANDEM_OK && e->next[pos] != SIZE_MAX) {
            m = merge_find(tok, e->sym[pos], e->sym[e->next[pos]]);
            if (m) st = heap_push(e, pos, m);
        }
    }
    for (size_t i = 0; i != SIZE_MAX && st == TANDEM_OK; i = e->next[i]) st = push_id(e, e->sym[i]);
    return st;
}

/* Pre-tokenizes well-formed UTF-8 (already normalized) with the regex; every match is a piece, and so is any
 * text between matches (HF's "Isolated" split). */
static tandem_status split_and_merge(encoder *e, const uint8_t *s, size_t n) {
    tandem_status st = TANDEM_OK;
    size_t at = 0;
    uint32_t opts = PCRE2_NO_UTF_CHECK | PCRE2_NOTEMPTY; /* validated by utf8_next before */
    while (at < n && st == TANDEM_OK) {
        int rc = pcre2_match(e->tok->re, s, n, at, opts, e->md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* huge runs can exhaust the JIT stack; the interpreter uses the heap */
            rc = pcre2_match(e->tok->re, s, n, at, opts | PCRE2_NO_JIT, e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) {
            st = bpe_piece(e, s + at, n - at);
            break;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return tandem_fail(TANDEM_ERR_INVALID_ARG,
                               "tandem_tokenizer_encode: pre-tokenizer regex failed at byte %zu: %s", at,
                               (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        if (ov[0] < at || ov[1] <= ov[0]) /* only \K tricks could do this; pieces must tile the text */
            return tandem_fail(TANDEM_ERR_UNSUPPORTED, "tandem_tokenizer_encode: pre-tokenizer regex gave an empty or "
                               "backward match at byte %zu", at);
        if (ov[0] > at) st = bpe_piece(e, s + at, ov[0] - at);
        if (st == TANDEM_OK) st = bpe_piece(e, s + ov[0], ov[1] - ov[0]);
        at = ov[1];
    }
    return st;
}

/* A run of well-formed UTF-8 between added tokens and invalid bytes: NFC, then split and merge. */
static tandem_status encode_valid(encoder *e, const uint8_t *s, size_t n) {
    if (n == 0) return TANDEM_OK;
    bool ascii = true;
    for (size_t i = 0; i < n && ascii; i++) ascii = s[i] < 0x80;
    if (!e->tok->nfc || ascii) return split_and_merge(e, s, n); /* ASCII is always in NFC */
    utf8proc_uint8_t *norm = NULL;
    utf8proc_ssize_t len = utf8proc_map(s, (utf8proc_ssize_t)n, &norm, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (len < 0) {
        free(norm);
        return tandem_fail(len == UTF8PROC_ERROR_NOMEM ? TANDEM_ERR_NO_MEMORY : TANDEM_ERR_INVALID_ARG,
                           "tandem_tokenizer_encode: NFC failed: %s", utf8proc_errmsg(len));
    }
    tandem_status st = split_and_merge(e, norm, (size_t)len);
    free(norm);
    return st;
}

/* Text between added tokens: valid runs are encoded as HF would; each byte that is not part of a well-formed
 * character becomes its own byte token. */
static tandem_status encode_segment(encoder *e, const uint8_t *s, size_t n) {
    tandem_status st = TANDEM_OK;
    size_t start = 0, i = 0;
    while (i < n && st == TANDEM_OK) {
        size_t k;
        if (utf8_next(s + i, n - i, &k) == 1) {
            i += k;
            continue;
        }
        st = encode_valid(e, s + start, i - start);
        if (st == TANDEM_OK) st = push_id(e, e->tok->byte_id[s[i]]);
        start = ++i;
    }
    if (st == TANDEM_OK) st = encode_valid(e, s + start, n - start);
    return st;
}

/* The longest added token that starts at s, or NULL. */
static const added_token *match_added(const tandem_tokenizer *tok, const uint8_t *s, size_t n) {
    size_t first = tok->added_first[s[0]], count = tok->added_count[s[0]];
    for (size_t i = first; i < first + count; i++) {
        const added_token *a = &tok->added[i];
        if (a->len <= n && memcmp(tok->arena + a->off, s, a->len) == 0) return a;
    }
    return NULL;
}

tandem_status tandem_tokenizer_encode(const tandem_tokenizer *tok, const char *text, size_t len, bool parse_special,
                                      int32_t **ids, size_t *n_ids) {
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!tok || !ids || !n_ids || (!text && len))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_tokenizer_encode: NULL argument");
    encoder e = {.tok = tok};
    tandem_status st = TANDEM_OK;
    e.md = pcre2_match_data_create_from_pattern(tok->re, NULL);
    e.ids = malloc(16 * sizeof *e.ids);
    e.cap_ids = 16;
    if (!e.md || !e.ids) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_tokenizer_encode: out of memory");
        goto done;
    }
    const uint8_t *s = (const uint8_t *)text;
    size_t start = 0;
    for (size_t i = 0; i < len && st == TANDEM_OK;) {
        const added_token *a = parse_special && tok->added_count[s[i]] ? match_added(tok, s + i, len - i) : NULL;
        if (!a) {
            i++;
            continue;
        }
        st = encode_segment(&e, s + start, i - start);
        if (st == TANDEM_OK) st = push_id(&e, a->id);
        i += a->len;
        start = i;
    }
    if (st == TANDEM_OK) st = encode_segment(&e, s + start, len - start);
    if (st == TANDEM_OK) {
        *ids = e.ids;
        *n_ids = e.n_ids;
        e.ids = NULL;
    }
done:
    encoder_free(&e);
    return st;
}

/* ---- decoding ---- */

tandem_status tandem_tokenizer_decode(const tandem_tokenizer *tok, const int32_t *ids, size_t n_ids, char **text,
                                      size_t *len) {
    if (text) *text = NULL;
    if (len) *len = 0;
    if (!tok || !text || !len || (!ids && n_ids))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_tokenizer_decode: NULL argument");
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->n_ids || tok->tok_off[id] == SIZE_MAX)
            return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_tokenizer_decode: ids[%zu] = %d is not a token id "
                               "(vocab size %d)", i, id, tok->n_ids);
        total += tok->tok_len[id]; /* cannot overflow: each id adds at most the arena size */
    }
    char *out = malloc(total + 1);
    if (!out) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_tokenizer_decode: out of memory for %zu bytes", total);
    size_t o = 0;
    for (size_t i = 0; i < n_ids; i++) {
        memcpy(out + o, tok->arena + tok->tok_off[ids[i]], tok->tok_len[ids[i]]);
        o += tok->tok_len[ids[i]];
    }
    out[o] = '\0';
    *text = out;
    *len = o;
    return TANDEM_OK;
}

struct tandem_detokenizer {
    const tandem_tokenizer *tok;
    uint8_t pending[4]; /* the start of a character that the next token may complete (at most 3 bytes) */
    size_t n_pending;
    char *out;
    size_t cap_out;
    char *in;           /* pending + the new token's bytes */
    size_t cap_in;
};

tandem_status tandem_detokenizer_init(const tandem_tokenizer *tok, tandem_detokenizer **out) {
    if (!out || !tok) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_detokenizer_init: NULL argument");
    *out = calloc(1, sizeof **out);
    if (!*out) return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_detokenizer_init: out of memory");
    (*out)->tok = tok;
    return TANDEM_OK;
}

void tandem_detokenizer_free(tandem_detokenizer *d) {
    if (!d) return;
    free(d->out);
    free(d->in);
    free(d);
}

static bool grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t c = need < 64 ? 64 : need * 2;
    char *p = realloc(*buf, c);
    if (!p) return false;
    *buf = p;
    *cap = c;
    return true;
}

/* Emits d->in[0..n) as valid UTF-8 into d->out: ill-formed maximal subparts become U+FFFD; an incomplete
 * character at the end is kept in pending unless `final`. */
static tandem_status detok_emit(tandem_detokenizer *d, size_t n, bool final, const char **out, size_t *len) {
    if (!grow(&d->out, &d->cap_out, n * 3 + 1))
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_detokenizer: out of memory");
    size_t i = 0, o = 0;
    d->n_pending = 0;
    while (i < n) {
        size_t k;
        int r = utf8_next((const uint8_t *)d->in + i, n - i, &k);
        if (r == 1) {
            memcpy(d->out + o, d->in + i, k);
            o += k;
        } else if (r == 0 && !final) {
            memcpy(d->pending, d->in + i, k);
            d->n_pending = k;
        } else {
            memcpy(d->out + o, "\xEF\xBF\xBD", 3);
            o += 3;
        }
        i += k;
    }
    d->out[o] = '\0';
    *out = d->out;
    *len = o;
    return TANDEM_OK;
}

tandem_status tandem_detokenizer_push(tandem_detokenizer *d, int32_t id, const char **out, size_t *len) {
    if (!d || !out || !len) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_detokenizer_push: NULL argument");
    *out = "";
    *len = 0;
    size_t n;
    const char *t = tandem_tokenizer_token_bytes(d->tok, id, &n);
    if (!t)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_detokenizer_push: %d is not a token id (vocab size %d)", id,
                           d->tok->n_ids);
    if (!grow(&d->in, &d->cap_in, d->n_pending + n + 1))
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_detokenizer_push: out of memory");
    memcpy(d->in, d->pending, d->n_pending);
    memcpy(d->in + d->n_pending, t, n);
    return detok_emit(d, d->n_pending + n, false, out, len);
}

tandem_status tandem_detokenizer_flush(tandem_detokenizer *d, const char **out, size_t *len) {
    if (!d || !out || !len) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_detokenizer_flush: NULL argument");
    if (!grow(&d->in, &d->cap_in, d->n_pending + 1))
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "tandem_detokenizer_flush: out of memory");
    memcpy(d->in, d->pending, d->n_pending);
    return detok_emit(d, d->n_pending, true, out, len);
}
