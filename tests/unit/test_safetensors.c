/* test_safetensors.c — tests of the safetensors reader: single files and sharded folders built byte by
 * byte, then hostile headers, indexes and truncations that must fail with a precise message. */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "test.h"

static char tmp_dir[] = "/tmp/tandem_test_safetensors_XXXXXX";
static char case_path[256];  /* single hand-built files are written here */
static uint8_t pattern[256];  /* data bytes: pattern[i] = i * 3 + 1 */

static void tmp_file(char *out, size_t size, const char *name) { snprintf(out, size, "%s/%s", tmp_dir, name); }

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp || (n && fwrite(data, 1, n, fp) != n)) abort();
    fclose(fp);
}

/* header_len as stored (may lie), the header text, then n data bytes from the pattern. */
static void write_st_raw(const char *path, uint64_t header_len, const char *header, size_t n_data) {
    size_t hlen = strlen(header);
    uint8_t *buf = malloc(8 + hlen + n_data);
    memcpy(buf, &header_len, 8);
    memcpy(buf + 8, header, hlen);
    memcpy(buf + 8 + hlen, pattern, n_data);
    write_bytes(path, buf, 8 + hlen + n_data);
    free(buf);
}

/* A well-formed file: the header padded with spaces to a multiple of 8, as the Python writer does. */
static void write_st(const char *path, const char *header, size_t n_data) {
    char padded[4096];
    size_t hlen = strlen(header);
    if (hlen + 8 >= sizeof padded) abort();
    memcpy(padded, header, hlen);
    while (hlen % 8) padded[hlen++] = ' ';
    padded[hlen] = '\0';
    write_st_raw(path, hlen, padded, n_data);
}

/* Opens path as one file; a failure must name the file. */
static tandem_status try_file(const char *path) {
    st_set *s = NULL;
    tandem_status st = safetensors_open_file(path, &s);
    if (st == TANDEM_OK) {
        CHECK(s != NULL);
        safetensors_close(s);
    } else {
        CHECK(s == NULL);
        CHECK_MSG(strstr(tandem_last_error(), path) != NULL, "message does not name the file: %s", tandem_last_error());
    }
    return st;
}

static tandem_status try_header(const char *header, size_t n_data) {
    write_st(case_path, header, n_data);
    return try_file(case_path);
}

static tandem_status try_dir(const char *dir) {
    st_set *s = NULL;
    tandem_status st = safetensors_open_dir(dir, &s);
    if (st == TANDEM_OK) safetensors_close(s);
    else CHECK(s == NULL);
    return st;
}

/* ---- valid files ---- */

static const char *const valid_header =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"w.f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"w.f16\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]},"
    "\"w.bf16\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[32,40]},"
    "\"pos\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[40,64]},"
    "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[64,68]},"
    "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[68,68]},"
    "\"bytes\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[68,71]},"
    "\"flag\":{\"dtype\":\"BOOL\",\"shape\":[1,1,1,1,1,1,1,1],\"data_offsets\":[71,72]}}";
#define VALID_DATA 72

static void check_tensor(const st_set *s, const char *name, const char *dtype, int32_t type, int32_t n_dims,
                         const int64_t *shape, uint64_t begin, uint64_t nbytes) {
    const st_tensor *t = safetensors_find(s, name);
    CHECK_MSG(t != NULL, "tensor %s missing", name);
    if (!t) return;
    CHECK_MSG(strcmp(t->name, name) == 0 && strcmp(t->dtype, dtype) == 0 && t->type == type, "tensor %s: %s %d", name,
              t->dtype, t->type);
    CHECK_MSG(t->n_dims == n_dims, "tensor %s: n_dims %d", name, t->n_dims);
    for (int32_t d = 0; d < n_dims && d < 8; d++) CHECK_MSG(t->shape[d] == shape[d], "tensor %s: shape[%d]", name, d);
    CHECK_MSG(t->nbytes == nbytes, "tensor %s: nbytes %llu", name, (unsigned long long)t->nbytes);
    const mapped_file *mf = &s->shards[t->shard];
    uint64_t header_len;
    memcpy(&header_len, mf->data, 8);
    CHECK_MSG((const uint8_t *)t->data == mf->data + 8 + header_len + begin, "tensor %s: data pointer", name);
    CHECK_MSG(nbytes == 0 || memcmp(t->data, pattern + begin, (size_t)nbytes) == 0, "tensor %s: data", name);
}

static void check_valid_set(const st_set *s) {
    CHECK(s->n_tensors == 8);  /* __metadata__ is not a tensor */
    check_tensor(s, "w.f32", "F32", TANDEM_TYPE_F32, 2, (const int64_t[]){2, 3}, 0, 24);
    check_tensor(s, "w.f16", "F16", TANDEM_TYPE_F16, 1, (const int64_t[]){4}, 24, 8);
    check_tensor(s, "w.bf16", "BF16", TANDEM_TYPE_BF16, 2, (const int64_t[]){2, 2}, 32, 8);
    check_tensor(s, "pos", "I64", -1, 1, (const int64_t[]){3}, 40, 24);
    check_tensor(s, "scalar", "F32", TANDEM_TYPE_F32, 0, NULL, 64, 4);
    check_tensor(s, "empty", "F32", TANDEM_TYPE_F32, 2, (const int64_t[]){0, 5}, 68, 0);
    check_tensor(s, "bytes", "U8", -1, 1, (const int64_t[]){3}, 68, 3);
    check_tensor(s, "flag", "BOOL", -1, 8, (const int64_t[]){1, 1, 1, 1, 1, 1, 1, 1}, 71, 1);
    CHECK(safetensors_find(s, "__metadata__") == NULL);
    CHECK(safetensors_find(s, "missing") == NULL);
    CHECK(safetensors_find(s, "") == NULL);
}

static void test_single_file(void) {
    char dir[300], path[320];
    tmp_file(dir, sizeof dir, "single");
    CHECK(mkdir(dir, 0755) == 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_st(path, valid_header, VALID_DATA);

    st_set *s = NULL;
    CHECK_OK(safetensors_open_file(path, &s));
    if (s) {
        CHECK(s->n_shards == 1 && strcmp(s->shards[0].path, path) == 0);
        check_valid_set(s);
        safetensors_close(s);
    }
    s = NULL;
    CHECK_OK(safetensors_open_dir(dir, &s));
    if (s) {
        check_valid_set(s);
        safetensors_close(s);
    }
    safetensors_close(NULL);

    /* Every dtype with a known size lists, tandem-runnable or not. */
    CHECK_OK(try_header("{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                        "\"c\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[12,14]},"
                        "\"d\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[14,16]}}",
                        16));
    /* An empty header (no tensors) is a valid, if useless, file. */
    CHECK_OK(try_header("{}", 0));
}

/* model.safetensors.index.json with two shards; a third file in the folder is ignored. */
static void make_sharded(const char *dir, const char *index) {
    char path[400];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    write_bytes(path, index, strlen(index));
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    write_st(path,
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"c\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[8,16]}}",
             16);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    write_st(path, "{\"b\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}", 8);
}

static const char *const good_index =
    "{\"metadata\":{\"total_size\":32},\"weight_map\":{"
    "\"b\":\"model-00002-of-00002.safetensors\","
    "\"a\":\"model-00001-of-00002.safetensors\","
    "\"c\":\"model-00001-of-00002.safetensors\"}}";

static void test_sharded(void) {
    char dir[300], path[400];
    tmp_file(dir, sizeof dir, "sharded");
    make_sharded(dir, good_index);
    st_set *s = NULL;
    CHECK_OK(safetensors_open_dir(dir, &s));
    if (!s) return;
    CHECK(s->n_shards == 2);
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    CHECK(strcmp(s->shards[0].path, path) == 0);
    CHECK(s->n_tensors == 3);
    const st_tensor *a = safetensors_find(s, "a"), *b = safetensors_find(s, "b"), *c = safetensors_find(s, "c");
    CHECK(a && a->shard == 0 && a->type == TANDEM_TYPE_F32 && memcmp(a->data, pattern, 8) == 0);
    CHECK(b && b->shard == 1 && b->type == TANDEM_TYPE_F16 && b->n_dims == 2 && memcmp(b->data, pattern, 8) == 0);
    CHECK(c && c->shard == 0 && c->type == TANDEM_TYPE_BF16 && memcmp(c->data, pattern + 8, 8) == 0);
    safetensors_close(s);
}

/* ---- hostile files ---- */

static void test_header_errors(void) {
    write_bytes(case_path, "\x10\0\0", 3);
    CHECK_FAILS(try_file(case_path), TANDEM_ERR_FORMAT, "file is 3 bytes, too small for a safetensors header");
    write_st_raw(case_path, 1000, "{}", 0);
    CHECK_FAILS(try_file(case_path), TANDEM_ERR_FORMAT, "header length 1000 runs past the end of the file (10 bytes)");
    write_st_raw(case_path, 200ull * 1000 * 1000, "{}", 0);
    CHECK_FAILS(try_file(case_path), TANDEM_ERR_FORMAT, "header length 200000000 exceeds the 100 MB limit");
    write_st_raw(case_path, UINT64_MAX, "{}", 0);
    CHECK_FAILS(try_file(case_path), TANDEM_ERR_FORMAT, "exceeds the 100 MB limit");
    CHECK_FAILS(try_file("/nonexistent/x.safetensors"), TANDEM_ERR_IO, "cannot open");

    CHECK_FAILS(try_header("{\"a\": {", 0), TANDEM_ERR_FORMAT, "invalid JSON header: line 1");
    CHECK_FAILS(try_header("not json", 0), TANDEM_ERR_FORMAT, "invalid JSON header");
    CHECK_FAILS(try_header("[1, 2]", 0), TANDEM_ERR_FORMAT, "header is not a JSON object");
    CHECK_FAILS(try_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                           "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
                TANDEM_ERR_FORMAT, "invalid JSON header");
    CHECK_FAILS(try_header("{\"a\": 5}", 0), TANDEM_ERR_FORMAT, "tensor 'a': header entry is not a JSON object");

    CHECK_FAILS(try_header("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4), TANDEM_ERR_FORMAT,
                "tensor 'a': missing or non-string \"dtype\"");
    CHECK_FAILS(try_header("{\"a\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                TANDEM_ERR_UNSUPPORTED, "tensor 'a': unknown dtype 'F99'");
    CHECK_FAILS(try_header("{\"a\":{\"dtype\":\"F32\",\"shape\":5,\"data_offsets\":[0,4]}}", 4), TANDEM_ERR_FORMAT,
                "tensor 'a': \"shape\" must be an array of at most 8 sizes");
    CHECK_FAILS(try_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4),
                TANDEM_ERR_FORMAT, "\"shape\" must be an array of at most 8 sizes");
    CHECK_FAILS(try_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,4]}}", 4),
                TANDEM_ERR_FORMAT, "tensor 'a': shape[1] is not a non-negative integer");
    CHECK_FAILS(try_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4),
                TANDEM_ERR_FORMAT, "tensor 'a': shape[0] is not a non-negative integer");
    CHECK_FAILS(try_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,4]}}", 4),
                TANDEM_ERR_FORMAT, "tensor 'a': element count overflows");
    CHECK_FAILS(try_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", 4),
                TANDEM_ERR_FORMAT, "tensor 'a': byte size overflows");

    CHECK_FAILS(try_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4), TANDEM_ERR_FORMAT,
                "tensor 'a': \"data_offsets\" must be [begin, end]");
    CHECK_FAILS(try_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4), TANDEM_ERR_FORMAT,
                "\"data_offsets\" must be [begin, end]");
    CHECK_FAILS(try_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4), TANDEM_ERR_FORMAT, "\"data_offsets\"");
    CHECK_FAILS(try_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8), TANDEM_ERR_FORMAT,
                "tensor 'a': data_offsets [8, 4] end before they begin");
    CHECK_FAILS(try_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[25],\"data_offsets\":[0,100]}}", 24),
                TANDEM_ERR_FORMAT, "tensor 'a': data_offsets end 100 is past the end of the data (24 bytes)");
    CHECK_FAILS(try_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24),
                TANDEM_ERR_FORMAT, "tensor 'a': data_offsets [0, 20] hold 20 bytes but F32 with 6 elements needs 24");
    CHECK_FAILS(try_header("{\"a\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16),
                TANDEM_ERR_FORMAT, "hold 16 bytes but BF16 with 4 elements needs 8");
    CHECK_FAILS(try_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                           "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24),
                TANDEM_ERR_FORMAT, "tensors 'a' and 'b' have overlapping data ranges");
    CHECK_FAILS(try_header("{\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},"
                           "\"y\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8),
                TANDEM_ERR_FORMAT, "overlapping data ranges");
    /* An empty tensor owns no bytes, so it overlaps nothing even inside another's range. */
    CHECK_OK(try_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                        "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}", 16));
}

/* Every prefix of a valid file fails cleanly (its last tensor ends at the file's end); corrupted
 * headers never crash. */
static void test_truncation_and_corruption(void) {
    char path[300];
    tmp_file(path, sizeof path, "full.safetensors");
    write_st(path, valid_header, VALID_DATA);
    FILE *fp = fopen(path, "rb");
    uint8_t full[4096];
    size_t size = fp ? fread(full, 1, sizeof full, fp) : 0;
    if (fp) fclose(fp);
    CHECK(size > VALID_DATA);
    int wrong = 0;
    for (size_t len = 0; len < size; len++) {
        write_bytes(case_path, full, len);
        if (try_file(case_path) != TANDEM_ERR_FORMAT && wrong++ < 5)
            fprintf(stderr, "prefix of %zu bytes: %s\n", len, tandem_last_error());
    }
    CHECK_MSG(wrong == 0, "%d prefixes did not fail with a format error", wrong);
    CHECK_OK(try_file(path));

    uint64_t rng = 0x2545F4914F6CDD1Dull;
    size_t header_end = size - VALID_DATA;
    for (int iter = 0; iter < 3000; iter++) {
        uint8_t copy[4096];
        memcpy(copy, full, size);
        for (int k = 0; k < 2; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(rng >> 33) % header_end;
            /* Mostly digits and JSON punctuation, so corruptions often still parse and reach the checks. */
            static const char alphabet[] = "0123456789-,[]{}\":. e";
            copy[pos] = (rng >> 20) % 4 == 0 ? (uint8_t)(rng >> 24) : (uint8_t)alphabet[(rng >> 24) % (sizeof alphabet - 1)];
        }
        write_bytes(case_path, copy, size);
        (void)try_file(case_path);
    }
    unlink(path);
}

static void test_folder_errors(void) {
    char dir[300], path[400];
    CHECK_FAILS(try_dir("/nonexistent/folder"), TANDEM_ERR_IO, "/nonexistent/folder: not a folder");
    CHECK_FAILS(try_dir(case_path), TANDEM_ERR_IO, "not a folder");
    tmp_file(dir, sizeof dir, "empty_dir");
    mkdir(dir, 0755);
    CHECK_FAILS(try_dir(dir), TANDEM_ERR_IO, "no model.safetensors or model.safetensors.index.json in this folder");
    CHECK(strstr(tandem_last_error(), dir) != NULL);

    /* A shard listed in the index but absent from the folder. */
    tmp_file(dir, sizeof dir, "missing_shard");
    make_sharded(dir, good_index);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    unlink(path);
    CHECK_FAILS(try_dir(dir), TANDEM_ERR_IO,
                "shard 'model-00002-of-00002.safetensors' listed in");
    CHECK(strstr(tandem_last_error(), "model.safetensors.index.json is missing") != NULL);

    /* A tensor the index places in a shard that does not hold it. */
    tmp_file(dir, sizeof dir, "missing_tensor");
    make_sharded(dir, "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                      "\"b\":\"model-00002-of-00002.safetensors\","
                      "\"ghost\":\"model-00002-of-00002.safetensors\"}}");
    CHECK_FAILS(try_dir(dir), TANDEM_ERR_FORMAT,
                "tensor 'ghost' is listed for shard 'model-00002-of-00002.safetensors' but no shard contains it");
    tmp_file(dir, sizeof dir, "wrong_shard");
    make_sharded(dir, "{\"weight_map\":{\"a\":\"model-00002-of-00002.safetensors\","
                      "\"b\":\"model-00002-of-00002.safetensors\","
                      "\"c\":\"model-00001-of-00002.safetensors\"}}");
    CHECK_FAILS(try_dir(dir), TANDEM_ERR_FORMAT,
                "tensor 'a' is listed for shard 'model-00002-of-00002.safetensors' but is in "
                "'model-00001-of-00002.safetensors'");

    /* Broken indexes. */
    tmp_file(dir, sizeof dir, "bad_index");
    make_sharded(dir, "{\"weight_map\": ");
    CHECK_FAILS(try_dir(dir), TANDEM_ERR_FORMAT, "model.safetensors.index.json: line");
    tmp_file(dir, sizeof dir, "no_weight_map");
    make_sharded(dir, "{\"metadata\": {}}");
    CHECK_FAILS(try_dir(dir), TANDEM_ERR_FORMAT, "missing or empty \"weight_map\" object");
    tmp_file(dir, sizeof dir, "path_in_index");
    make_sharded(dir, "{\"weight_map\":{\"a\":\"../model-00001-of-00002.safetensors\"}}");
    CHECK_FAILS(try_dir(dir), TANDEM_ERR_FORMAT, "tensor 'a': shard must be a file name in the folder");
    tmp_file(dir, sizeof dir, "number_in_index");
    make_sharded(dir, "{\"weight_map\":{\"a\":3}}");
    CHECK_FAILS(try_dir(dir), TANDEM_ERR_FORMAT, "tensor 'a': shard must be a file name in the folder");

    /* The same tensor name in two shards is ambiguous. */
    tmp_file(dir, sizeof dir, "twice");
    make_sharded(dir, good_index);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    write_st(path, "{\"b\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                   "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16);
    CHECK_FAILS(try_dir(dir), TANDEM_ERR_FORMAT, "tensor 'a' appears in both");

    /* A broken shard is reported with the shard's own path. */
    tmp_file(dir, sizeof dir, "bad_shard");
    make_sharded(dir, good_index);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    write_st(path, "{\"b\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}", 4);
    CHECK_FAILS(try_dir(dir), TANDEM_ERR_FORMAT, "model-00002-of-00002.safetensors: tensor 'b': data_offsets end 8");
}

/* Removes the temp tree: files, and folders one level down. */
static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (path_is_dir(path)) remove_tree(path);
        else unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 2;
    }
    tmp_file(case_path, sizeof case_path, "case.safetensors");
    for (int i = 0; i < 256; i++) pattern[i] = (uint8_t)(i * 3 + 1);

    test_single_file();
    test_sharded();
    test_header_errors();
    test_truncation_and_corruption();
    test_folder_errors();

    remove_tree(tmp_dir);
    return test_summary();
}
