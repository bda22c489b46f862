/* heatmap.h — a matrix of values in [0, 1] as a PNG heat map (for `tandem prune --analyze`). */
#ifndef TANDEM_CLI_HEATMAP_H
#define TANDEM_CLI_HEATMAP_H

/* values (rows, cols), NaN = empty (white); each value becomes a cell × cell square. 0 ok, −1 on any failure. */
int heatmap_write_png(const char *path, const float *values, int rows, int cols, int cell);

#endif
