/* image.h — images for the vision models: JPEG/PNG/WebP bytes -> RGB8 (EXIF orientation, alpha on white), and
 * the Qwen2-VL/Qwen3-VL preprocessing (smart_resize, Pillow's bicubic resize, normalisation, patch order). */
#ifndef TANDEM_VISION_IMAGE_H
#define TANDEM_VISION_IMAGE_H

#include <stdint.h>

#include "gguf.h"
#include "tandem_base.h"

/* An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B. */
typedef struct {
    int32_t width, height;
    uint8_t *rgb; /* width * height * 3 bytes, malloc'd */
} vision_rgb;

/* Bounds checked against the header before any pixel buffer is allocated (decompression bombs). */
typedef struct {
    int64_t max_side;   /* width and height each at most this */
    int64_t max_pixels; /* width * height at most this */
} vision_decode_limits;

/* 32768 per side and 2^27 pixels (a 384 MB RGB buffer) unless the caller asks for others. */
vision_decode_limits vision_decode_limits_default(void);

/* Decodes a JPEG, PNG or WebP image (format from its magic bytes) into out, as Pillow's
 * ImageOps.exif_transpose(Image.open(...)) followed by transformers' convert_to_rgb would: EXIF orientation of
 * JPEGs applied, transparency composited on white. name only labels error messages. limits may be NULL. */
tandem_status vision_decode(const char *name, const uint8_t *data, size_t size, const vision_decode_limits *limits,
                            vision_rgb *out);
void vision_rgb_free(vision_rgb *img);

/* The EXIF Orientation (1-8) found in a TIFF block ("II*\0" or "MM\0*" first), or 1 if there is none or the block
 * is malformed. Exposed for the fuzz target. */
int vision_exif_orientation(const uint8_t *tiff, size_t size);

/* transformers' smart_resize: height and width rounded to multiples of factor with the pixel count kept within
 * [min_pixels, max_pixels]. Fails (naming name) for an aspect ratio above 200 as the processor does. */
tandem_status vision_smart_resize(const char *name, int32_t height, int32_t width, int32_t factor, int64_t min_pixels,
                                  int64_t max_pixels, int32_t *out_height, int32_t *out_width);

/* Pillow's Image.resize(size, BICUBIC) on an RGB image, to the byte. */
tandem_status vision_resize_bicubic(const vision_rgb *in, int32_t out_width, int32_t out_height, vision_rgb *out);

/* preprocessor_config.json of a Qwen2-VL / Qwen3-VL model. */
typedef struct {
    int32_t patch_size, merge_size, temporal_patch_size;
    int64_t min_pixels, max_pixels; /* "size": {"shortest_edge", "longest_edge"} */
    double rescale_factor;
    float image_mean[3], image_std[3];
} vision_preprocess_config;

/* Qwen3-VL's: patch 16, merge 2, temporal 2, 65,536-16,777,216 pixels, mean and std 0.5. */
vision_preprocess_config vision_preprocess_config_qwen3vl(void);

/* Reads a model's preprocessor_config.json (patch_size, merge_size, temporal_patch_size, size.shortest_edge /
 * longest_edge or min_pixels / max_pixels, image_mean, image_std, rescale_factor); absent fields keep Qwen3-VL's
 * values, present ones must be valid (TANDEM_ERR_FORMAT naming the file and the field). */
tandem_status vision_preprocess_config_load(const char *path, vision_preprocess_config *cfg);
/* The same from an mmproj GGUF's clip.vision.* keys (patch_size, spatial_merge_size, image_min_pixels,
 * image_max_pixels, image_mean, image_std, as llama.cpp's converter writes them); absent keys keep Qwen3-VL's. */
tandem_status vision_preprocess_config_from_gguf(const char *path, const gguf_file *f, vision_preprocess_config *cfg);

/* pixel_values of one image: n_patches rows of patch_dim floats (channel, temporal, patch row, patch column),
 * rows in the processor's order (merge_size x merge_size groups of patches, groups row-major). */
typedef struct {
    float *pixel_values;
    int64_t n_patches, patch_dim;
    int32_t grid_t, grid_h, grid_w; /* image_grid_thw */
    int32_t resized_height, resized_width;
} vision_pixels;

/* smart_resize, bicubic resize, rescale, normalise and patchify, as Qwen2VLImageProcessor does. */
tandem_status vision_preprocess(const char *name, const vision_rgb *img, const vision_preprocess_config *cfg,
                                vision_pixels *out);
/* vision_preprocess that also hands over the resized image (resized_out: free with vision_rgb_free; zeroed on
 * failure): pixel_values are a function of it and the config, and it is 8x smaller (a digest's input). */
tandem_status vision_preprocess_keep(const char *name, const vision_rgb *img, const vision_preprocess_config *cfg,
                                     vision_pixels *out, vision_rgb *resized_out);
/* The same from an already resized image (its sides multiples of patch_size * merge_size). */
tandem_status vision_patchify(const vision_rgb *resized, const vision_preprocess_config *cfg, vision_pixels *out);
void vision_pixels_free(vision_pixels *px);

#endif
