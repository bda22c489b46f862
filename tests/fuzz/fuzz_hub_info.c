/* fuzz_hub_info.c — the hub's model-info answer: bytes -> hub_info_parse; an answer it accepts has a commit, and
 * only file paths that stay inside a snapshot folder, with well-formed digests. Also the reference splitter and
 * the quantization picker over the accepted paths. Input: the answer, then optionally "\n#--8<--#\n" and a model
 * reference (ORG/NAME:QUANT) for hub_ref_split. Seeds: answers shaped like huggingface.co's (make_corpus.py). */
#include <stdlib.h>
#include <strings.h>

#include "fuzz_common.h"
#include "hub.h"

static bool all_hex(const char *s, size_t n) {
    if (strlen(s) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the answer, then optionally SEP and a model reference */
    size_t json_len, tail_len;
    const uint8_t *tail;
    fuzz_split(data, size, "\n#--8<--#\n", &json_len, &tail, &tail_len);
    hub_info info;
    fuzz_clear_error();
    tandem_status st = hub_info_parse("fuzz", (const char *)data, json_len, &info);
    fuzz_check_failure(st);
    if (st == TANDEM_OK) {
        FUZZ_CHECK(info.commit && all_hex(info.commit, 40));
        char **paths = calloc(info.n_files + 1, sizeof *paths);
        size_t n_gguf = 0; /* what the quantization picker is given: the .gguf files but projectors */
        FUZZ_CHECK(paths != NULL);
        for (size_t i = 0; i < info.n_files; i++) {
            const hub_sibling *f = &info.files[i];
            FUZZ_CHECK(hub_path_ok(f->path) && f->path[0] != '/' && !strstr(f->path, "//"));
            FUZZ_CHECK(strcmp(f->path, "..") && strncmp(f->path, "../", 3) && !strstr(f->path, "/../"));
            FUZZ_CHECK(f->size >= -1);
            FUZZ_CHECK(!f->blob_id || all_hex(f->blob_id, 40));
            FUZZ_CHECK(!f->sha256 || all_hex(f->sha256, 64));
            for (size_t j = 0; j < i; j++) FUZZ_CHECK(strcmp(info.files[j].path, f->path) != 0);
            const char *base = strrchr(f->path, '/');
            size_t len = strlen(f->path);
            base = base ? base + 1 : f->path;
            if (len > 5 && !strcasecmp(f->path + len - 5, ".gguf") && strncasecmp(base, "mmproj", 6))
                paths[n_gguf++] = f->path;
        }
        qsort(paths, n_gguf, sizeof *paths, cmp_str);
        size_t first = SIZE_MAX, count = 0;
        fuzz_clear_error();
        st = hub_pick_gguf("fuzz", paths, n_gguf, "Q4_K_M", &first, &count);
        fuzz_check_failure(st);
        if (st == TANDEM_OK) {
            FUZZ_CHECK(count >= 1 && first < n_gguf && count <= n_gguf - first);
            const char *base = strrchr(paths[first], '/');
            FUZZ_CHECK(hub_name_has_quant(base ? base + 1 : paths[first], "Q4_K_M"));
        }
        free(paths);
        hub_info_free(&info);
    }
    char ref[256];
    size_t n = 0;
    while (n < tail_len && n < sizeof ref - 1) ref[n] = (char)tail[n], n++;
    ref[n] = '\0';
    char *repo_id = NULL, *select = NULL;
    if (hub_ref_split(ref, &repo_id, &select)) {
        const char *slash = strchr(repo_id, '/');
        FUZZ_CHECK(slash && !strchr(slash + 1, '/') && !strchr(repo_id, ':'));
        FUZZ_CHECK(!select || hub_path_ok(select));
        FUZZ_CHECK(strncmp(ref, repo_id, strlen(repo_id)) == 0);
    }
    free(repo_id);
    free(select);
    return 0;
}
