/* golden.h — golden files in C tests: whole files, the largest difference from a golden array, and the tiny golden
 * models of tests/golden/models (two threads, like CI; a failed load is a failed CHECK: the caller gets NULL). */
#ifndef TANDEM_TEST_GOLDEN_H
#define TANDEM_TEST_GOLDEN_H

#include <math.h>
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

/* Largest |a − b| over n values; +inf if any is NaN (a NaN fails every bound). */
static inline double max_abs_diff(const float *a, const float *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        worst = d == d ? (d > worst ? d : worst) : INFINITY;
    }
    return worst;
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
