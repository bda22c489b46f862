/* hub.c — model references by hub id (ORG/NAME, ORG/NAME:QUANT, ORG/NAME:FILE) resolved in the local Hugging Face
 * cache without network: the cache root and layout as huggingface_hub writes them, and the GGUF file a quant picks. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>

#include "hub.h"

/* The hub's repository names: letters, digits, '-', '_', '.'; not starting with '-' or '.', no "--" or "..". */
static bool name_ok(const char *s, size_t n) {
    if (n == 0 || n > 96 || s[0] == '-' || s[0] == '.' || s[n - 1] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '-' || c == '_' || c == '.')) return false;
        if (i > 0 && (c == '-' || c == '.') && s[i - 1] == c) return false;
    }
    return true;
}

bool hub_ref_split(const char *s, char **repo_id, char **select) {
    if (repo_id) *repo_id = NULL;
    if (select) *select = NULL;
    if (!s) return false;
    const char *slash = strchr(s, '/');
    if (!slash) return false;
    const char *colon = strchr(slash, ':');
    const char *end = colon ? colon : s + strlen(s);
    if (memchr(slash + 1, '/', (size_t)(end - slash - 1))) return false;
    if (!name_ok(s, (size_t)(slash - s)) || !name_ok(slash + 1, (size_t)(end - slash - 1))) return false;
    if (colon && !hub_path_ok(colon + 1)) return false;
    if (repo_id && !(*repo_id = strndup(s, (size_t)(end - s)))) return false;
    if (select && colon && !(*select = strdup(colon + 1))) {
        if (repo_id) free(*repo_id), *repo_id = NULL;
        return false;
    }
    return true;
}


char *hub_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

static const char *env_nonempty(const char *name) {
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

char *hub_cache_root(void) {
    const char *v;
    if ((v = env_nonempty("HF_HUB_CACHE")) || (v = env_nonempty("HUGGINGFACE_HUB_CACHE"))) return strdup(v);
    if ((v = env_nonempty("HF_HOME"))) return hub_printf("%s/hub", v);
    if ((v = env_nonempty("XDG_CACHE_HOME"))) return hub_printf("%s/huggingface/hub", v);
    const char *home = env_nonempty("HOME");
    return hub_printf("%s/.cache/huggingface/hub", home ? home : ".");
}

bool hub_name_has_quant(const char *name, const char *quant) {
    const size_t n = strlen(name), k = strlen(quant);
    if (k == 0) return false;
    for (size_t i = 0; i + k <= n; i++) {
        if (strncasecmp(name + i, quant, k)) continue;
        bool before = i > 0 && (isalnum((unsigned char)name[i - 1]) || name[i - 1] == '_');
        bool after = i + k < n && (isalnum((unsigned char)name[i + k]) || name[i + k] == '_');
        if (!before && !after) return true;
    }
    return false;
}

/* ---- GGUF files of a snapshot ---- */

typedef struct path_list {
    char **items;
    size_t n, cap;
} path_list;

static void path_list_free(path_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

static bool path_list_add(path_list *l, char *s) {
    if (!s) return false;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        char **p = realloc(l->items, cap * sizeof *p);
        if (!p) {
            free(s);
            return false;
        }
        l->items = p;
        l->cap = cap;
    }
    l->items[l->n++] = s;
    return true;
}

static bool ends_with_ci(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcasecmp(s + n - k, suffix);
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* The .gguf files under dir (relative paths, into l), multimodal projectors (mmproj*) left out: they are no
 * language model. Depth-limited: snapshots hold a repository's few folders. */
static bool list_ggufs(const char *root, const char *rel, int depth, path_list *l) {
    char *dir = rel[0] ? hub_printf("%s/%s", root, rel) : strdup(root);
    if (!dir) return false;
    DIR *d = opendir(dir);
    free(dir);
    if (!d) return true;
    bool ok = true;
    struct dirent *e;
    while (ok && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *child = rel[0] ? hub_printf("%s/%s", rel, e->d_name) : strdup(e->d_name);
        char *full = child ? hub_printf("%s/%s", root, child) : NULL;
        if (!full) {
            free(child);
            ok = false;
            break;
        }
        struct stat stt;
        if (stat(full, &stt) == 0 && S_ISDIR(stt.st_mode)) {
            if (depth < 4) ok = list_ggufs(root, child, depth + 1, l);
            free(child);
        } else if (ends_with_ci(e->d_name, ".gguf") && strncasecmp(e->d_name, "mmproj", 6)) {
            ok = path_list_add(l, child);
        } else {
            free(child);
        }
        free(full);
    }
    closedir(d);
    return ok;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The part of a GGUF name before a split suffix "-00001-of-00003.gguf" (or before ".gguf"), its length. */
static size_t gguf_group_len(const char *path) {
    size_t n = strlen(path);
    if (n < 5) return n;
    n -= 5; /* ".gguf" */
    const char *p = path;
    /* "-DDDDD-of-DDDDD" right before ".gguf" */
    if (n >= 15 && p[n - 15] == '-' && !strncmp(p + n - 9, "-of-", 4)) {
        bool digits = true;
        for (size_t i = n - 14; i < n - 9; i++) digits &= isdigit((unsigned char)p[i]) != 0;
        for (size_t i = n - 5; i < n; i++) digits &= isdigit((unsigned char)p[i]) != 0;
        if (digits) return n - 15;
    }
    return n;
}

tandem_status hub_pick_gguf(const char *what, char *const *paths, size_t n, const char *quant, size_t *first,
                            size_t *count) {
    size_t lo = SIZE_MAX, k = 0;
    char listing[600] = "";
    size_t used = 0;
    bool ambiguous = false;
    for (size_t i = 0; i < n; i++) {
        if (quant && !hub_name_has_quant(base_name(paths[i]), quant)) continue;
        if (lo == SIZE_MAX) lo = i;
        else if (gguf_group_len(paths[i]) != gguf_group_len(paths[lo]) ||
                 strncmp(paths[i], paths[lo], gguf_group_len(paths[lo])))
            ambiguous = true;
        k++;
    }
    for (size_t i = 0; i < n && used + 1 < sizeof listing; i++) {
        if (quant && !hub_name_has_quant(base_name(paths[i]), quant)) continue;
        int w = snprintf(listing + used, sizeof listing - used, "%s%s", used ? ", " : "", paths[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    if (lo == SIZE_MAX) {
        char all[600] = "";
        size_t u = 0;
        for (size_t i = 0; i < n && u + 1 < sizeof all; i++) {
            int w = snprintf(all + u, sizeof all - u, "%s%s", u ? ", " : "", paths[i]);
            if (w < 0) break;
            u += (size_t)w;
        }
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: no .gguf file named with %s (%s%s)", what, quant,
                           n ? "the GGUF files: " : "no GGUF files at all", all);
    }
    if (ambiguous)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: %s%s matches several GGUF files: %s: name one file instead",
                           what, quant ? "quantization " : "", quant ? quant : "the repository", listing);
    *first = lo;
    *count = k;
    return TANDEM_OK;
}

/* ---- the cache, read ---- */

static char *read_small_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char buf[256];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && isspace((unsigned char)buf[n - 1])) buf[--n] = '\0';
    return strdup(buf);
}

static bool is_commit(const char *s) {
    if (strlen(s) != 40) return false;
    for (int i = 0; i < 40; i++)
        if (!isxdigit((unsigned char)s[i])) return false;
    return true;
}

/* lead: "" or, for a model path, "no such file or folder, and " */
static tandem_status not_cached(const char *lead, const char *ref, const char *root, const char *why) {
    return tandem_fail(TANDEM_ERR_IO,
                       "%s: %snot in the Hugging Face cache (%s): %s: download it first with `tandem pull %s` "
                       "(or tandem_download)",
                       ref, lead, root, why, ref);
}

/* The snapshot folder of repo_id at revision in root (malloc'd), or a not_cached failure. */
static tandem_status cached_snapshot(const char *lead, const char *ref, const char *root, const char *repo_id,
                                     const char *revision, char **out) {
    *out = NULL;
    char *org_end = strchr(repo_id, '/');
    char *repo_dir = hub_printf("%s/models--%.*s--%s", root, (int)(org_end - repo_id), repo_id, org_end + 1);
    if (!repo_dir) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", ref);
    tandem_status st = TANDEM_OK;
    char *commit = NULL;
    if (is_commit(revision)) {
        commit = strdup(revision);
    } else {
        char *ref_file = hub_printf("%s/refs/%s", repo_dir, revision);
        commit = ref_file ? read_small_file(ref_file) : NULL;
        free(ref_file);
        if (!commit || !is_commit(commit)) {
            st = not_cached(lead, ref, root, path_is_dir(repo_dir) ? "no refs/main in its folder" : "no folder for it");
            goto done;
        }
    }
    *out = commit ? hub_printf("%s/snapshots/%s", repo_dir, commit) : NULL;
    if (!*out) st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", ref);
    else if (!path_is_dir(*out)) {
        free(*out);
        *out = NULL;
        st = not_cached(lead, ref, root, "refs/main names a snapshot that is not there");
    }
done:
    free(commit);
    free(repo_dir);
    return st;
}

static bool any_has_quant(const path_list *l, const char *quant) {
    for (size_t i = 0; i < l->n; i++)
        if (hub_name_has_quant(base_name(l->items[i]), quant)) return true;
    return false;
}

/* The path ref names in its snapshot folder snap: the folder itself (an HF checkpoint), its one GGUF, the file
 * select names, or the GGUF file whose name has the quantization select. */
static tandem_status pick_in_snapshot(const char *lead, const char *ref, const char *root, const char *snap,
                                      const char *select, char **out) {
    *out = NULL;
    if (select) {
        char *file = hub_printf("%s/%s", snap, select);
        if (!file) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", ref);
        struct stat stt;
        if (lstat(file, &stt) == 0) {
            if (stat(file, &stt) != 0) {
                tandem_status st = tandem_fail(TANDEM_ERR_IO,
                                               "%s: %s: its blob is missing from the cache (%s): "
                                               "download it again with `tandem pull %s`",
                                               ref, file, strerror(errno), ref);
                free(file);
                return st;
            }
            *out = file;
            return TANDEM_OK;
        }
        free(file);
    } else {
        char *config = hub_printf("%s/config.json", snap);
        bool hf = config && path_exists(config);
        free(config);
        if (hf) {
            *out = strdup(snap);
            return *out ? TANDEM_OK : tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", ref);
        }
    }
    path_list l = {0};
    if (!list_ggufs(snap, "", 0, &l)) {
        path_list_free(&l);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", ref);
    }
    if (l.n) qsort(l.items, l.n, sizeof *l.items, cmp_str);
    tandem_status st;
    size_t first = 0, count = 0;
    if (!select && l.n == 0) {
        *out = strdup(snap); /* neither config.json nor a GGUF: the loader says what is missing */
        st = *out ? TANDEM_OK : tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", ref);
    } else if (select && l.n == 0) {
        st = not_cached(lead, ref, root, "no such file, and no .gguf file, in its snapshot");
    } else if (select && !any_has_quant(&l, select)) {
        st = not_cached(lead, ref, root, "its snapshot has no such file and no .gguf file named with it");
    } else if ((st = hub_pick_gguf(ref, l.items, l.n, select, &first, &count))) {
        tandem_error_prefix("cached snapshot %s", snap);
    } else {
        *out = hub_printf("%s/%s", snap, l.items[first]);
        if (!*out) st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", ref);
    }
    path_list_free(&l);
    return st;
}

/* ref (already checked by hub_ref_split) → *out in the cache; messages open with ref (and lead). */
static tandem_status resolve_ref(const char *lead, const char *ref, char **out) {
    char *repo_id = NULL, *select = NULL;
    if (!hub_ref_split(ref, &repo_id, &select)) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", ref);
    char *root = hub_cache_root(), *snap = NULL;
    tandem_status st = root ? cached_snapshot(lead, ref, root, repo_id, "main", &snap)
                            : tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", ref);
    if (!st) st = pick_in_snapshot(lead, ref, root, snap, select, out);
    free(snap);
    free(root);
    free(repo_id);
    free(select);
    return st;
}

tandem_status tandem_hub_resolve(const char *ref, char **local_path) {
    if (!local_path) return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_hub_resolve: local_path is NULL");
    *local_path = NULL;
    if (!ref || !hub_ref_split(ref, NULL, NULL))
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_hub_resolve: ref \"%.200s\" is not a hub reference (ORG/NAME, ORG/NAME:QUANT or "
                           "ORG/NAME:FILE)",
                           ref ? ref : "(null)");
    tandem_status st = resolve_ref("", ref, local_path);
    if (st) tandem_error_prefix("tandem_hub_resolve");
    return st;
}

/* ORG/NAME ending like a model file ("models/x.gguf") is a missing local file, not a repository */
static bool looks_like_file(const char *path) {
    size_t n = strcspn(path, ":");
    static const char *const EXT[] = {".gguf", ".safetensors", ".json", ".bin"};
    for (size_t i = 0; i < sizeof EXT / sizeof *EXT; i++) {
        size_t k = strlen(EXT[i]);
        if (n > k && !strncasecmp(path + n - k, EXT[i], k)) return true;
    }
    return false;
}

tandem_status hub_resolve_model_path(const char *path, char **resolved) {
    *resolved = NULL;
    struct stat stt;
    if (!path || lstat(path, &stt) == 0 || looks_like_file(path) || !hub_ref_split(path, NULL, NULL)) return TANDEM_OK;
    return resolve_ref("no such file or folder, and ", path, resolved);
}
