/* hub_info.c — the hub's model-info answer (commit and files with sizes, blob ids and LFS digests) read into a
 * hub_info, every file path checked so that no answer can make a download write outside its folder. */
#include <jansson.h>
#include <stdlib.h>

#include "hub.h"

void hub_info_free(hub_info *info) {
    if (!info) return;
    for (size_t i = 0; i < info->n_files; i++) {
        free(info->files[i].path);
        free(info->files[i].blob_id);
        free(info->files[i].sha256);
    }
    free(info->files);
    free(info->commit);
    memset(info, 0, sizeof *info);
}

bool hub_path_ok(const char *path) {
    if (!path || !path[0] || strlen(path) > 4096) return false;
    const char *part = path;
    for (const char *p = path;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '/' || c == '\0') {
            size_t n = (size_t)(p - part);
            if (n == 0 || (n == 1 && part[0] == '.') || (n == 2 && part[0] == '.' && part[1] == '.')) return false;
            if (c == '\0') return true;
            part = p + 1;
        } else if (c < 0x20 || c == 0x7f || c == '\\') {
            return false;
        }
    }
}

static bool is_hex(const char *s, size_t n) {
    if (strlen(s) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static char *dup_str(const char *s) { return s ? strdup(s) : NULL; }

static tandem_status read_sibling(const char *what, size_t i, const json_t *s, hub_sibling *f) {
    f->size = -1;
    if (!json_is_object(s)) return tandem_fail(TANDEM_ERR_FORMAT, "%s: siblings[%zu] is not an object", what, i);
    const char *path = json_get_string(s, "rfilename");
    if (!path) return tandem_fail(TANDEM_ERR_FORMAT, "%s: siblings[%zu] has no rfilename string", what, i);
    if (!hub_path_ok(path))
        return tandem_fail(TANDEM_ERR_FORMAT,
                           "%s: siblings[%zu].rfilename \"%.200s\" is not a relative path inside the repository", what,
                           i, path);
    if (!(f->path = dup_str(path))) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", what);
    int64_t size;
    if (json_get_int(s, "size", &size)) {
        if (size < 0)
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: size %lld is negative", what, path, (long long)size);
        f->size = size;
    }
    const char *blob = json_get_string(s, "blobId");
    if (blob) {
        if (!is_hex(blob, 40))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: blobId \"%.80s\" is not 40 hex digits", what, path, blob);
        if (!(f->blob_id = dup_str(blob))) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", what);
    }
    const json_t *lfs = json_object_get(s, "lfs");
    if (lfs && !json_is_null(lfs)) {
        const char *sha = json_is_object(lfs) ? json_get_string(lfs, "sha256") : NULL;
        if (!sha || !is_hex(sha, 64))
            return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: lfs.sha256 is not 64 lowercase hex digits", what, path);
        if (!(f->sha256 = dup_str(sha))) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", what);
        int64_t lfs_size;
        if (json_get_int(lfs, "size", &lfs_size)) {
            if (lfs_size < 0 || (f->size >= 0 && lfs_size != f->size))
                return tandem_fail(TANDEM_ERR_FORMAT, "%s: %s: lfs.size %lld disagrees with size %lld", what, path,
                                   (long long)lfs_size, (long long)f->size);
            f->size = lfs_size;
        }
    }
    return TANDEM_OK;
}

tandem_status hub_info_parse(const char *what, const char *json, size_t len, hub_info *out) {
    memset(out, 0, sizeof *out);
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: not JSON: line %d, column %d: %s", what, err.line, err.column,
                           err.text);
    tandem_status st = TANDEM_OK;
    const json_t *siblings = json_object_get(root, "siblings");
    const char *sha = json_is_object(root) ? json_get_string(root, "sha") : NULL;
    if (!json_is_object(root)) st = tandem_fail(TANDEM_ERR_FORMAT, "%s: the answer is not a JSON object", what);
    else if (!sha || !is_hex(sha, 40))
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: no \"sha\" of 40 hex digits (the revision's commit)", what);
    else if (!json_is_array(siblings)) st = tandem_fail(TANDEM_ERR_FORMAT, "%s: no \"siblings\" array", what);
    if (st) goto done;
    out->commit = dup_str(sha);
    size_t n = json_array_size(siblings);
    out->files = calloc(n ? n : 1, sizeof *out->files);
    if (!out->commit || !out->files) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", what);
        goto done;
    }
    for (size_t i = 0; i < n && !st; i++) {
        st = read_sibling(what, i, json_array_get(siblings, i), &out->files[i]);
        out->n_files = i + 1;
        for (size_t j = 0; j < i && !st; j++)
            if (!strcmp(out->files[j].path, out->files[i].path))
                st = tandem_fail(TANDEM_ERR_FORMAT, "%s: %s is listed twice", what, out->files[i].path);
    }
done:
    json_decref(root);
    if (st) hub_info_free(out);
    return st;
}
