/* replay_main.c — a main() for the fuzz targets in builds without libFuzzer (any compiler): every file named
 * on the command line, or found in a folder named there (not recursively, sorted, dotfiles skipped), is read
 * and passed once to LLVMFuzzerTestOneInput. A folder that does not exist is skipped with a note (an empty
 * regression folder is not kept by git); no input at all is an error. A crash or a failed oracle check
 * aborts, which fails the ctest that runs this over tests/fuzz/{regression,corpus}/<target>/. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int run_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    uint8_t *data = malloc(cap);
    for (;;) {
        if (!data) {
            fprintf(stderr, "replay: out of memory reading %s\n", path);
            fclose(fp);
            return -1;
        }
        len += fread(data + len, 1, cap - len, fp);
        if (len < cap) break;
        cap *= 2;
        data = realloc(data, cap);
    }
    int err = ferror(fp);
    fclose(fp);
    if (err) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(data);
        return -1;
    }
    /* An exact-size copy, so that AddressSanitizer catches a read one past the input like libFuzzer does. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(data);
        return -1;
    }
    memcpy(exact, data, len);
    free(data);
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int skip_name(const struct dirent *e) { return e->d_name[0] != '.'; }

int main(int argc, char **argv) {
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    long n_inputs = 0;
    int failures = 0;
    for (int a = 1; a < argc; a++) {
        struct stat st;
        if (stat(argv[a], &st) != 0) {
            fprintf(stderr, "replay: %s does not exist, skipped\n", argv[a]);
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            failures += run_file(argv[a]) != 0;
            n_inputs++;
            continue;
        }
        struct dirent **names = NULL;
        int n = scandir(argv[a], &names, skip_name, alphasort);
        if (n < 0) {
            fprintf(stderr, "replay: cannot list %s: %s\n", argv[a], strerror(errno));
            failures++;
            continue;
        }
        for (int i = 0; i < n; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[a], names[i]->d_name);
            free(names[i]);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                failures += run_file(path) != 0;
                n_inputs++;
            }
        }
        free(names);
    }
    fprintf(stderr, "replay: %ld inputs, %d unreadable\n", n_inputs, failures);
    if (n_inputs == 0) {
        fprintf(stderr, "replay: no inputs found\n");
        return 1;
    }
    return failures ? 1 : 0;
}
