/* data_uri.c — the images a chat request carries inline: RFC 2397 data: URIs ("data:image/png;base64,…") and the
 * strict base64 (RFC 4648 §4, padded, canonical) inside them, decoded to bytes for tandem_image_from_bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "serve.h"

/* 0..63 for a base64 digit, 64 for '=', 255 for anything else */
static unsigned char sextet(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return (unsigned char)(c - 'A');
    if (c >= 'a' && c <= 'z') return (unsigned char)(c - 'a' + 26);
    if (c >= '0' && c <= '9') return (unsigned char)(c - '0' + 52);
    if (c == '+') return 62;
    if (c == '/') return 63;
    if (c == '=') return 64;
    return 255;
}

bool serve_base64_decode(const char *in, size_t len, unsigned char *out, size_t *out_len, char *why, size_t why_len) {
    *out_len = 0;
    if (len % 4) {
        snprintf(why, why_len, "base64: %zu characters, not a multiple of 4 (padding with '=' is required)", len);
        return false;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        unsigned char s[4];
        for (int k = 0; k < 4; k++) {
            s[k] = sextet((unsigned char)in[i + k]);
            if (s[k] == 255) {
                const unsigned char c = (unsigned char)in[i + k];
                if (c >= 0x21 && c < 0x7f)
                    snprintf(why, why_len, "base64: '%c' at offset %zu is not a base64 digit", c, i + k);
                else snprintf(why, why_len, "base64: byte 0x%02x at offset %zu is not a base64 digit", c, i + k);
                return false;
            }
        }
        const bool last = i + 4 == len;
        /* '=' only at the end: "xx==" or "xxx=" */
        const int pad = s[3] == 64 ? (s[2] == 64 ? 2 : 1) : 0;
        if (s[0] == 64 || s[1] == 64 || (s[2] == 64 && s[3] != 64) || (pad && !last)) {
            snprintf(why, why_len, "base64: '=' inside the data at offset %zu (only the end may be padded)", i);
            return false;
        }
        /* the bits the padding drops must be zero: one spelling per byte string */
        if ((pad == 2 && (s[1] & 0x0f)) || (pad == 1 && (s[2] & 0x03))) {
            snprintf(why, why_len, "base64: non-zero bits before the padding at offset %zu (not canonical)", i);
            return false;
        }
        const unsigned v = (unsigned)s[0] << 18 | (unsigned)s[1] << 12 | (unsigned)(pad == 2 ? 0 : s[2]) << 6 |
                           (unsigned)(pad ? 0 : s[3]);
        out[n++] = (unsigned char)(v >> 16);
        if (pad < 2) out[n++] = (unsigned char)(v >> 8);
        if (pad < 1) out[n++] = (unsigned char)v;
    }
    *out_len = n;
    return true;
}

int serve_data_uri_decode(const char *uri, size_t len, size_t max_bytes, unsigned char **data, size_t *size, char *why,
                          size_t why_len) {
    *data = NULL;
    *size = 0;
    if (len < 5 || strncasecmp(uri, "data:", 5)) {
        snprintf(why, why_len, "not a data: URI");
        return 400;
    }
    const char *comma = memchr(uri, ',', len);
    if (!comma) {
        snprintf(why, why_len, "data: URI without ',' before its data");
        return 400;
    }
    const char *meta = uri + 5;
    const size_t meta_len = (size_t)(comma - meta);
    /* the media type, then ;parameters; the last one must be ";base64" */
    static const char b64[] = ";base64";
    if (meta_len < sizeof b64 - 1 || strncasecmp(comma - (sizeof b64 - 1), b64, sizeof b64 - 1)) {
        snprintf(why, why_len, "data: URI is not base64 (expected data:image/...;base64,...)");
        return 400;
    }
    const size_t type_len = strcspn(meta, ";,");
    if (type_len > 0 && (type_len < 6 || strncasecmp(meta, "image/", 6))) {
        snprintf(why, why_len, "data: URI has media type \"%.*s\", not an image", type_len > 60 ? 60 : (int)type_len,
                 meta);
        return 400;
    }
    for (const char *c = meta; c < comma; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f) {
            snprintf(why, why_len, "data: URI has a control or non-ASCII byte in its media type");
            return 400;
        }
    const char *b = comma + 1;
    const size_t b_len = len - (size_t)(b - uri);
    if (b_len == 0) {
        snprintf(why, why_len, "data: URI holds no data");
        return 400;
    }
    const size_t decoded = b_len / 4 * 3;
    if (decoded > max_bytes + 2) {
        snprintf(why, why_len, "the image is about %zu bytes, more than this server's limit of %zu", decoded,
                 max_bytes);
        return 400;
    }
    unsigned char *out = malloc(decoded ? decoded : 1);
    if (!out) {
        snprintf(why, why_len, "out of memory");
        return 500;
    }
    if (!serve_base64_decode(b, b_len, out, size, why, why_len)) {
        free(out);
        return 400;
    }
    if (*size == 0 || *size > max_bytes) {
        if (*size)
            snprintf(why, why_len, "the image is %zu bytes, more than this server's limit of %zu", *size, max_bytes);
        else snprintf(why, why_len, "the image is empty");
        free(out);
        *size = 0;
        return 400;
    }
    *data = out;
    return 0;
}
