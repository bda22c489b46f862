/* heatmap.c — writes a matrix of values in [0, 1] as a PNG heat map (RGB, uncompressed "stored" deflate blocks, so
 * no zlib is needed): the picture of `tandem prune --analyze`. Sees nothing but libc. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heatmap.h"

static uint32_t crc_table[256];

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n) {
    if (!crc_table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            crc_table[i] = c;
        }
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc;
}

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static int write_chunk(FILE *f, const char type[4], const uint8_t *data, uint32_t n) {
    uint8_t head[8], tail[4];
    put_u32(head, n);
    memcpy(head + 4, type, 4);
    uint32_t crc = crc32_update(0xFFFFFFFFu, (const uint8_t *)type, 4);
    crc = crc32_update(crc, data, n) ^ 0xFFFFFFFFu;
    put_u32(tail, crc);
    return fwrite(head, 1, 8, f) == 8 && (n == 0 || fwrite(data, 1, n, f) == n) && fwrite(tail, 1, 4, f) == 4 ? 0 : -1;
}

/* Blue (0) → teal → yellow (1), a viridis-like ramp; NaN cells are white. */
static void color(float v, uint8_t rgb[3]) {
    if (isnan(v)) {
        rgb[0] = rgb[1] = rgb[2] = 255;
        return;
    }
    static const float stops[3][3] = {{68, 1, 84}, {33, 145, 140}, {253, 231, 37}};
    float t = v < 0 ? 0 : v > 1 ? 1 : v;
    const int i = t < 0.5f ? 0 : 1;
    const float u = (t - 0.5f * (float)i) * 2.0f;
    for (int c = 0; c < 3; c++) rgb[c] = (uint8_t)lrintf(stops[i][c] + u * (stops[i + 1][c] - stops[i][c]));
}

int heatmap_write_png(const char *path, const float *values, int rows, int cols, int cell) {
    const uint32_t w = (uint32_t)(cols * cell), h = (uint32_t)(rows * cell), stride = 1 + 3 * w;
    const size_t raw_n = (size_t)stride * h;
    uint8_t *raw = malloc(raw_n);
    const size_t n_blocks = raw_n / 65535 + 1;
    uint8_t *z = malloc(2 + raw_n + 5 * n_blocks + 4);
    if (!raw || !z) {
        free(raw);
        free(z);
        return -1;
    }
    for (uint32_t y = 0; y < h; y++) {
        uint8_t *row = raw + (size_t)y * stride;
        row[0] = 0;  /* filter: none */
        for (uint32_t x = 0; x < w; x++) color(values[(size_t)(y / cell) * cols + x / cell], row + 1 + 3 * x);
    }
    /* zlib stream: header, stored blocks of ≤ 65535 bytes, Adler-32 */
    size_t zn = 0;
    z[zn++] = 0x78, z[zn++] = 0x01;
    for (size_t off = 0; off < raw_n || off == 0; off += 65535) {
        const size_t len = raw_n - off < 65535 ? raw_n - off : 65535;
        z[zn++] = off + len >= raw_n ? 1 : 0;
        z[zn++] = (uint8_t)len, z[zn++] = (uint8_t)(len >> 8);
        z[zn++] = (uint8_t)~len, z[zn++] = (uint8_t)(~len >> 8);
        memcpy(z + zn, raw + off, len);
        zn += len;
        if (off + len >= raw_n) break;
    }
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < raw_n; i++) a = (a + raw[i]) % 65521, b = (b + a) % 65521;
    put_u32(z + zn, (b << 16) | a);
    zn += 4;
    uint8_t ihdr[13];
    put_u32(ihdr, w);
    put_u32(ihdr + 4, h);
    ihdr[8] = 8, ihdr[9] = 2, ihdr[10] = 0, ihdr[11] = 0, ihdr[12] = 0;  /* 8-bit RGB, no interlace */
    FILE *f = fopen(path, "wb");
    int rc = -1;
    if (f) {
        static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
        rc = fwrite(sig, 1, 8, f) == 8 && !write_chunk(f, "IHDR", ihdr, 13) &&
                     !write_chunk(f, "IDAT", z, (uint32_t)zn) && !write_chunk(f, "IEND", NULL, 0)
                 ? 0
                 : -1;
        if (fclose(f) != 0) rc = -1;
    }
    free(raw);
    free(z);
    return rc;
}
