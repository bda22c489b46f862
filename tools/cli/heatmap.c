/* heatmap.c — writes a matrix of values in [0, 1] as a PNG heat map with libpng: the picture of
 * `tandem prune --analyze`. Written to a temporary file and renamed, so a failure leaves nothing behind. */
#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "heatmap.h"

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

/* libpng reports errors by longjmp; everything it touches is set up before setjmp and freed after. */
static int write_rows(FILE *f, uint8_t *pixels, uint32_t w, uint32_t h) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep *rows = malloc(sizeof *rows * h);
    volatile int rc = -1;
    if (png && info && rows) {
        for (uint32_t y = 0; y < h; y++) rows[y] = pixels + (size_t)y * 3 * w;
        if (!setjmp(png_jmpbuf(png))) {
            png_init_io(png, f);
            png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                         PNG_FILTER_TYPE_DEFAULT);
            png_write_info(png, info);
            png_write_image(png, rows);
            png_write_end(png, NULL);
            rc = 0;
        }
    }
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    free(rows);
    return rc;
}

int heatmap_write_png(const char *path, const float *values, int rows, int cols, int cell) {
    const uint32_t w = (uint32_t)(cols * cell), h = (uint32_t)(rows * cell);
    uint8_t *pixels = malloc((size_t)3 * w * h);
    size_t tmp_len = strlen(path) + 16;
    char *tmp = malloc(tmp_len);
    int rc = -1;
    if (pixels && tmp) {
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++)
                color(values[(size_t)(y / cell) * cols + x / cell], pixels + ((size_t)y * w + x) * 3);
        snprintf(tmp, tmp_len, "%s.tmp.XXXXXX", path);
        const int fd = mkstemp(tmp);
        FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
        if (f) {
            rc = write_rows(f, pixels, w, h);
            if (fclose(f) != 0) rc = -1;
            if (rc == 0 && rename(tmp, path) != 0) rc = -1;
            if (rc != 0) unlink(tmp);
        } else if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
    }
    free(pixels);
    free(tmp);
    return rc;
}
