/* golden.h — reading golden files in C tests: whole files, and the tiny golden models of tests/golden/models (two
 * threads, like CI; a failed load is a failed CHECK with tandem_last_error(): the caller gets NULL and stops). */
#ifndef TANDEM_TEST_GOLDEN_H
#define TANDEM_TEST_GOLDEN_H

#include <stdio.h>
#include <stdlib.h>

#include "tandem.h"
#include "test.h"

/* A whole file, malloc'd (one spare byte), its length in *size; NULL when it cannot be read. */
static inline void *read_golden_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

/* rel: a path under GOLDEN_DIR/models, e.g. "tied_gqa2" or "tied_gqa2/model-q4_0.gguf". */
static inline tandem_model *load_golden_model(const char *golden_dir, const char *rel) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s", golden_dir, rel);
    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = 2;
    tandem_model *m = NULL;
    CHECK_OK(tandem_model_load(path, &mp, &m));
    return m;
}

#endif
