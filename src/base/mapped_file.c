/* mapped_file.c — read-only memory maps of model files, memory for streamed data, path helpers, the temporary
 * file every output is written to, and the clock.
 * Weights are used straight from the map: opening a model reads only headers. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tandem_base.h"

tandem_status mapped_file_open(const char *path, mapped_file *mf) {
    memset(mf, 0, sizeof *mf);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tandem_fail(TANDEM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return tandem_fail(TANDEM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return tandem_fail(TANDEM_ERR_IO, "%s: not a regular file", path);
    }
    mf->size = (size_t)st.st_size;
    mf->path = strdup(path);
    if (!mf->path) {
        close(fd);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    if (mf->size > 0) {
        void *p = mmap(NULL, mf->size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            mapped_file_close(mf);
            return tandem_fail(TANDEM_ERR_IO, "%s: cannot map: %s", path, strerror(e));
        }
        mf->data = p;
    }
    close(fd);  /* the mapping keeps the file alive */
    return TANDEM_OK;
}

void mapped_file_close(mapped_file *mf) {
    if (!mf) return;
    if (mf->data) munmap((void *)mf->data, mf->size);
    free(mf->path);
    memset(mf, 0, sizeof *mf);
}

void mapped_range_release(const void *p, size_t n) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), start = ((uintptr_t)p + page - 1) & ~(page - 1);
    const uintptr_t end = ((uintptr_t)p + n) & ~(page - 1);
    if (end > start) madvise((void *)start, end - start, MADV_DONTNEED);  /* advice: failure changes nothing */
}

void *streamed_alloc(size_t bytes) {
    /* Streaming 4.6 GB of 8B weights from 4 KiB pages took a TLB miss every 64 cache lines, and decode read
     * fewer bytes per second than from 2 MiB pages (bench/README.md, "Huge pages for packed weights, Q6_K group
     * prefetch, float panels for prompts"). Rounding up to a whole huge page wastes under 2 MiB,
     * so this is for one large block, not many small ones. */
    const size_t huge = (size_t)2 << 20;
    if (bytes > SIZE_MAX - huge) return NULL;
    const size_t rounded = (bytes + huge - 1) & ~(huge - 1);
    void *p = aligned_alloc(huge, rounded ? rounded : huge);
#ifdef MADV_HUGEPAGE
    if (p) madvise(p, rounded, MADV_HUGEPAGE);  /* advice: without it the memory is simply on small pages */
#endif
    return p;
}

bool path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (a > 0 && dir[a - 1] != '/') p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}

char *path_base_name(const char *path) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/') start--;
    return strndup(path + start, len - start);
}

char *path_stem(const char *path) {
    char *name = path_base_name(path);
    char *dot = name ? strrchr(name, '.') : NULL;
    if (dot && dot != name) *dot = '\0';
    return name;
}

tandem_status tandem_temp_file_create(const char *path, int *fd_out, char **tmp_out) {
    *fd_out = -1, *tmp_out = NULL;
    const size_t n = strlen(path) + sizeof ".tmp.XXXXXX";
    char *tmp = malloc(n);
    if (!tmp) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", path);
    /* mkstemp would make the file 0600 and the umask cannot be read without changing it (racy in a library):
     * open(2) with 0666 applies the umask itself; the name is made unique as mkstemp does, retrying on EEXIST */
    static const char CHARS[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    static _Atomic uint64_t counter;
    uint64_t x = ((uint64_t)ts.tv_nsec << 20) ^ ((uint64_t)getpid() << 40) ^ (uint64_t)ts.tv_sec ^ ++counter;
    int fd = -1;
    for (int attempt = 0; attempt < 1000 && fd < 0; attempt++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t r = x >> 16;
        char suffix[7];
        for (int i = 0; i < 6; i++, r /= 62) suffix[i] = CHARS[r % 62];
        suffix[6] = '\0';
        snprintf(tmp, n, "%s.tmp.%s", path, suffix);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        const int e = errno;  /* kept for callers that word their own message */
        tandem_status st = tandem_fail(TANDEM_ERR_IO, "%s: cannot create a temporary file next to it: %s", path,
                                       strerror(e));
        free(tmp);
        errno = e;
        return st;
    }
    *fd_out = fd, *tmp_out = tmp;
    return TANDEM_OK;
}

double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
