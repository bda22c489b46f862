/* fuzz_data_uri.c — `tandem serve`'s data: URI and base64 decoder (server/data_uri.c) on arbitrary bytes.
 *  - serve_data_uri_decode either refuses with 400 and a reason, or gives 1..max bytes whose base64 (encoded here,
 *    independently) is exactly the URI's data part: the decoder is strict, so only canonical base64 is accepted;
 *  - serve_base64_decode on the whole input agrees with the same re-encoding. */
#include "fuzz_common.h"
#include "serve.h"

static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* RFC 4648 base64 with padding, written for the check: out holds (n + 2) / 3 * 4 characters */
static size_t encode(const unsigned char *in, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        const unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                           (i + 2 < n ? (unsigned)in[i + 2] : 0);
        out[k++] = ALPHABET[v >> 18 & 63];
        out[k++] = ALPHABET[v >> 12 & 63];
        out[k++] = i + 1 < n ? ALPHABET[v >> 6 & 63] : '=';
        out[k++] = i + 2 < n ? ALPHABET[v & 63] : '=';
    }
    return k;
}

static void check_base64(const char *in, size_t len) {
    unsigned char *out = malloc(len / 4 * 3 + 1);
    char *again = malloc(len + 4);
    FUZZ_CHECK(out && again);
    size_t n;
    char why[200] = "";
    if (serve_base64_decode(in, len, out, &n, why, sizeof why)) {
        FUZZ_CHECK(n <= len / 4 * 3);
        FUZZ_CHECK(encode(out, n, again) == len && !memcmp(again, in, len));
    } else {
        FUZZ_CHECK(why[0]);
    }
    free(out);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *uri = (const char *)data;
    check_base64(uri, size);
    unsigned char *bytes;
    size_t n;
    char why[200] = "";
    const size_t max = 1024;
    const int status = serve_data_uri_decode(uri, size, max, &bytes, &n, why, sizeof why);
    if (status) {
        FUZZ_CHECK(status == 400 && why[0] && !bytes && n == 0);
        return 0;
    }
    FUZZ_CHECK(bytes && n >= 1 && n <= max && size >= 5);
    const char *comma = memchr(uri, ',', size);
    FUZZ_CHECK(comma);
    const size_t b_len = size - (size_t)(comma + 1 - uri);
    char *again = malloc(b_len + 4);
    FUZZ_CHECK(again);
    FUZZ_CHECK(encode(bytes, n, again) == b_len && !memcmp(again, comma + 1, b_len));
    free(again);
    free(bytes);
    return 0;
}
