/* heatmap.c — writes a matrix of values in [0, 1] as a PNG heat map with libpng: the picture of
 * `tandem prune --analyze`, with axis titles, row and column numbers and a colour legend in a small built-in font. */
#include <math.h>
#include <png.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- text: a 5×7 font of the characters the labels use, each row 5 bits (bit 4 = leftmost column) ---- */

typedef struct glyph {
    char c;
    uint8_t rows[7];
} glyph;

static const glyph FONT[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}}, {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E}}, {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}}, {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}}, {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}}, {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}}, {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}}, {'Y', {0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
};

typedef struct canvas {
    uint8_t *px;  /* RGB, w × h */
    int w, h;
} canvas;

static void put(canvas *cv, int x, int y, const uint8_t rgb[3]) {
    if (x >= 0 && y >= 0 && x < cv->w && y < cv->h) memcpy(cv->px + ((size_t)y * cv->w + x) * 3, rgb, 3);
}

/* Black text, each font pixel a HEATMAP_FONT_SCALE square, from (x, y) = its top-left corner; vertical text reads
 * bottom to top (turned a quarter left) and starts at its bottom-left corner (x, y). Unknown characters are blank. */
static void draw_text(canvas *cv, int x, int y, const char *s, bool vertical) {
    static const uint8_t INK[3] = {0, 0, 0};
    const int S = HEATMAP_FONT_SCALE;
    for (int k = 0; s[k]; k++) {
        const glyph *g = NULL;
        for (size_t i = 0; i < sizeof FONT / sizeof FONT[0]; i++)
            if (FONT[i].c == s[k]) g = &FONT[i];
        for (int gy = 0; g && gy < 7; gy++)
            for (int gx = 0; gx < 5; gx++) {
                if (!(g->rows[gy] >> (4 - gx) & 1)) continue;
                /* horizontal: pixel (gx, gy) of glyph k; vertical: the same turned, x ← gy, y ← −gx */
                const int px = vertical ? x + gy * S : x + (k * HEATMAP_ADVANCE / S + gx) * S;
                const int py = vertical ? y - (k * HEATMAP_ADVANCE / S + gx + 1) * S : y + gy * S;
                for (int dy = 0; dy < S; dy++)
                    for (int dx = 0; dx < S; dx++) put(cv, px + dx, py + dy, INK);
            }
    }
}

static int text_width(const char *s) { return (int)strlen(s) * HEATMAP_ADVANCE - HEATMAP_FONT_SCALE; }

/* ---- the picture ---- */

static const char COLUMN_TITLE[] = "BLOCK SIZE N", ROW_TITLE[] = "LAYER L", LEGEND_TITLE[] = "DISTANCE";

heatmap_layout heatmap_layout_of(int rows, int cols, int cell) {
    enum { PAD = HEATMAP_PAD, TH = HEATMAP_TEXT_HEIGHT };
    heatmap_layout g;
    char widest[16];
    snprintf(widest, sizeof widest, "%d", rows > 0 ? rows - 1 : 0);
    g.grid_x = PAD + TH + PAD + text_width(widest) + PAD;
    g.grid_y = PAD + TH + PAD + TH + PAD;
    const int grid_w = cols * cell, title_w = text_width(COLUMN_TITLE);
    g.legend_x = g.grid_x + (grid_w > title_w ? grid_w : title_w) + 3 * PAD;
    g.legend_y = g.grid_y;
    g.legend_h = rows * cell > HEATMAP_LEGEND_MIN_HEIGHT ? rows * cell : HEATMAP_LEGEND_MIN_HEIGHT;
    const int labels_w = HEATMAP_LEGEND_WIDTH + PAD + text_width("0.5"), legend_w = text_width(LEGEND_TITLE);
    const int right = g.legend_x + (labels_w > legend_w ? labels_w : legend_w);
    g.width = right + PAD;
    int body = g.legend_h, row_title = text_width(ROW_TITLE);
    body = body > row_title ? body : row_title;
    g.height = g.grid_y + body + TH / 2 + PAD;  /* the "0" of the legend is centred on the bar's bottom edge */
    return g;
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

int heatmap_write_png(FILE *f, const float *values, int rows, int cols, int cell) {
    enum { PAD = HEATMAP_PAD, TH = HEATMAP_TEXT_HEIGHT };
    const heatmap_layout g = heatmap_layout_of(rows, cols, cell);
    canvas cv = {malloc((size_t)3 * g.width * g.height), g.width, g.height};
    if (!cv.px) return -1;
    memset(cv.px, 255, (size_t)3 * g.width * g.height);
    uint8_t rgb[3];
    for (int y = 0; y < rows * cell; y++)
        for (int x = 0; x < cols * cell; x++) {
            color(values[(size_t)(y / cell) * cols + x / cell], rgb);
            put(&cv, g.grid_x + x, g.grid_y + y, rgb);
        }
    /* axes: the columns' title and numbers n = 1 … cols above the grid, the rows' l = 0 … rows−1 left of it */
    char num[16];
    draw_text(&cv, g.grid_x, PAD, COLUMN_TITLE, false);
    for (int n = 1; n <= cols; n++) {
        snprintf(num, sizeof num, "%d", n);
        draw_text(&cv, g.grid_x + (n - 1) * cell + (cell - text_width(num)) / 2, PAD + TH + PAD, num, false);
    }
    for (int l = 0; l < rows; l++) {
        snprintf(num, sizeof num, "%d", l);
        draw_text(&cv, g.grid_x - PAD - text_width(num), g.grid_y + l * cell + (cell - TH) / 2, num, false);
    }
    draw_text(&cv, PAD, g.grid_y + (rows * cell + text_width(ROW_TITLE)) / 2, ROW_TITLE, true);
    /* the legend: the colour of 1 at the top of the bar down to 0 at its bottom, with 1, 0.5 and 0 beside it */
    draw_text(&cv, g.legend_x, PAD, LEGEND_TITLE, false);
    for (int y = 0; y < g.legend_h; y++) {
        color(1.0f - (float)y / (float)(g.legend_h - 1), rgb);
        for (int x = 0; x < HEATMAP_LEGEND_WIDTH; x++) put(&cv, g.legend_x + x, g.legend_y + y, rgb);
    }
    static const char *const TICKS[3] = {"1", "0.5", "0"};
    for (int i = 0; i < 3; i++)
        draw_text(&cv, g.legend_x + HEATMAP_LEGEND_WIDTH + PAD, g.legend_y + i * (g.legend_h - 1) / 2 - TH / 2,
                  TICKS[i], false);
    const int rc = write_rows(f, cv.px, (uint32_t)g.width, (uint32_t)g.height);
    free(cv.px);
    return rc;
}
