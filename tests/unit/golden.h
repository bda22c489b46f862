/* golden.h — loading the tiny golden models of tests/golden/models in C tests (two threads, like CI).
 * A failed load is a failed CHECK with tandem_last_error(); the caller gets NULL and stops. */
#ifndef TANDEM_TEST_GOLDEN_H
#define TANDEM_TEST_GOLDEN_H

#include "tandem.h"
#include "test.h"

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
