/* error.c — the per-thread last-error message behind tandem_last_error(), status names, assertions.
 * Library code reports failures here and returns a status; it never exits or prints. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "tandem_base.h"

static _Thread_local char last_error[1024];

tandem_status tandem_fail(tandem_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return st;
}

void tandem_error_prefix(const char *fmt, ...) {
    char prefix[512], old[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    /* Truncation is fine here: a long message keeps its start, which names the file. */
    size_t n = strlen(prefix), cap = sizeof last_error - 1;
    if (n > cap) n = cap;
    memcpy(last_error, prefix, n);
    const char sep[] = ": ";
    for (size_t i = 0; i < 2 && n < cap; i++) last_error[n++] = sep[i];
    size_t m = strlen(old);
    if (m > cap - n) m = cap - n;
    memcpy(last_error + n, old, m);
    last_error[n + m] = '\0';
}

const char *tandem_last_error(void) { return last_error; }

const char *tandem_status_name(tandem_status st) {
    switch (st) {
    case TANDEM_OK: return "ok";
    case TANDEM_ERR_IO: return "I/O error";
    case TANDEM_ERR_FORMAT: return "format error";
    case TANDEM_ERR_UNSUPPORTED: return "unsupported";
    case TANDEM_ERR_INVALID_ARG: return "invalid argument";
    case TANDEM_ERR_NO_MEMORY: return "out of memory";
    case TANDEM_ERR_CONTEXT_FULL: return "context full";
    case TANDEM_ERR_ABORTED: return "aborted";
    case TANDEM_ERR_MISMATCH: return "mismatch";
    }
    return "unknown status";
}

void tandem_free(void *p) { free(p); }

_Noreturn void tandem_assert_failed(const char *file, int line, const char *cond) {
    fprintf(stderr, "tandem: internal error: %s:%d: assertion failed: %s\n", file, line, cond);
    abort();
}
