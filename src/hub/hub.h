/* hub.h — the Hugging Face hub inside tandem: model references (ORG/NAME[:FILE or QUANT]), the cache layout
 * huggingface_hub uses, the model-info reader and the digests that check downloads. Depends on base and libcurl. */
#ifndef TANDEM_HUB_H
#define TANDEM_HUB_H

#include "tandem_base.h"

/* ---- digests (digest.c) ---- */

typedef enum digest_kind { DIGEST_SHA256, DIGEST_SHA1 } digest_kind;
enum { DIGEST_HEX_MAX = 65 }; /* 64 hex digits of a SHA-256 and a NUL */
typedef struct digest {
    digest_kind kind;
    uint32_t h[8];
    uint8_t buf[64];
    size_t fill;
    uint64_t total;
} digest;
void digest_init(digest *d, digest_kind kind);
void digest_update(digest *d, const void *data, size_t n);
void digest_hex(digest *d, char out[DIGEST_HEX_MAX]); /* lowercase hex; d is spent */

/* ---- the model-info API's answer (hub_info.c) ---- */

typedef struct hub_sibling {
    char *path;    /* rfilename: relative, '/'-separated, no empty, "." or ".." part */
    int64_t size;  /* bytes; -1 when the answer does not say */
    char *blob_id; /* the git blob id (40 hex digits), or NULL */
    char *sha256;  /* lfs.sha256 (64 hex digits) for an LFS file, else NULL */
} hub_sibling;

typedef struct hub_info {
    char *commit; /* "sha": the commit the revision points at (40 hex digits) */
    hub_sibling *files;
    size_t n_files;
} hub_info;

/* Parses GET /api/models/{repo}/revision/{rev}?blobs=true. TANDEM_ERR_FORMAT naming what is wrong (not JSON, no
 * sha, a sibling without rfilename, a path that would leave the snapshot folder, a bad digest); what names the
 * source in messages. */
tandem_status hub_info_parse(const char *what, const char *json, size_t len, hub_info *out);
void hub_info_free(hub_info *info); /* accepts a zeroed struct */
/* A path a repo may hold: relative, no empty, "." or ".." component, no backslash or control character. */
bool hub_path_ok(const char *path);

/* ---- references and the cache layout (hub.c) ---- */

/* Whether s is shaped like a hub reference ORG/NAME or ORG/NAME:X (the characters the hub allows in names). On
 * true, *repo_id and *select (X, or NULL) are malloc'd when the pointers are not NULL. */
bool hub_ref_split(const char *s, char **repo_id, char **select);
/* HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME/huggingface/hub or ~/.cache/huggingface/hub
 * (malloc'd; NULL on out of memory). */
char *hub_cache_root(void);

/* A malloc'd formatted string (paths and URLs), NULL when out of memory. */
char *hub_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Whether name (a file's base name) contains quant case-insensitively as a whole token: not preceded or followed
 * by a letter, digit or '_' ("Q4_K" is not in "x-Q4_K_M.gguf", "Q4_K_M" is). */
bool hub_name_has_quant(const char *name, const char *quant);

/* Among paths (sorted), those whose base name has quant (all when quant is NULL) must be one file or the parts
 * of one split GGUF ("-00001-of-00002.gguf"): *first and *count give them. Otherwise TANDEM_ERR_INVALID_ARG
 * listing the candidates; what opens the message. */
tandem_status hub_pick_gguf(const char *what, char *const *paths, size_t n, const char *quant, size_t *first,
                            size_t *count);

/* For the model loaders: a path that exists, or is not shaped like a hub reference, or whose ORG/NAME part ends
 * like a model file (.gguf, .safetensors, .json, .bin: a missing local file), is theirs (*resolved NULL).
 * A reference is looked up in the local cache without network: *resolved is the file or snapshot folder it names;
 * not cached: TANDEM_ERR_IO telling how to download it. */
tandem_status hub_resolve_model_path(const char *path, char **resolved);

#endif
