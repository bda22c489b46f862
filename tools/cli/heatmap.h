/* heatmap.h — a matrix of values in [0, 1] as a PNG heat map (for `tandem prune --analyze`): the cells, axis titles
 * and numbers, and a colour legend, in a built-in 5×7 font. */
#ifndef TANDEM_CLI_HEATMAP_H
#define TANDEM_CLI_HEATMAP_H

#include <stdio.h>

/* The layout, in pixels: text is the 5×7 font at HEATMAP_FONT_SCALE, HEATMAP_TEXT_HEIGHT tall, a character every
 * HEATMAP_ADVANCE; HEATMAP_PAD between parts. tests/integration/test_prune.py reads the picture with these. */
enum {
    HEATMAP_FONT_SCALE = 2,
    HEATMAP_TEXT_HEIGHT = 7 * HEATMAP_FONT_SCALE,
    HEATMAP_ADVANCE = 6 * HEATMAP_FONT_SCALE,
    HEATMAP_PAD = 6,
    HEATMAP_LEGEND_WIDTH = 16,
    HEATMAP_LEGEND_MIN_HEIGHT = 100,
};

/* Where things are: the grid's top-left corner (cell (row r, column c) is the cell × cell square from
 * grid_x + c·cell, grid_y + r·cell), the legend's colour bar (HEATMAP_LEGEND_WIDTH × legend_h: the colour of 1 at
 * its top row down to 0 at its bottom row) and the picture's size. Row numbers are left of the grid, column numbers
 * and the column title above it, the row title (vertical) at the left edge, the legend's title above the bar. */
typedef struct heatmap_layout {
    int grid_x, grid_y;
    int legend_x, legend_y, legend_h;
    int width, height;
} heatmap_layout;
heatmap_layout heatmap_layout_of(int rows, int cols, int cell);

/* values (rows, cols), NaN = empty (white); each value becomes a cell × cell square; rows are numbered from 0
 * ("LAYER L"), columns from 1 ("BLOCK SIZE N"), as prune's table. Written to f. 0 ok, −1 on any failure. */
int heatmap_write_png(FILE *f, const float *values, int rows, int cols, int cell);

#endif
