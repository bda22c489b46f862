/* image.c — image decoding (libjpeg-turbo, libpng, libwebp), EXIF orientation, alpha on white, and the Qwen-VL
 * preprocessing: smart_resize, Pillow's fixed-point bicubic resampling, normalisation and the patch order. */
#include "image.h"

#include <stdio.h> /* before jpeglib.h, which uses FILE */

#include <jansson.h>
#include <jerror.h>
#include <jpeglib.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>

vision_decode_limits vision_decode_limits_default(void) {
    return (vision_decode_limits){.max_side = 32768, .max_pixels = (int64_t)1 << 27};
}

void vision_rgb_free(vision_rgb *img) {
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->width = img->height = 0;
}

static tandem_status check_size(const char *name, int64_t w, int64_t h, const vision_decode_limits *lim) {
    if (w <= 0 || h <= 0)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: empty image (%lld x %lld)", name, (long long)w, (long long)h);
    if (w > lim->max_side || h > lim->max_side)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %lld x %lld pixels exceeds the limit of %lld pixels per side", name,
                           (long long)w, (long long)h, (long long)lim->max_side);
    if (w * h > lim->max_pixels)
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: %lld x %lld pixels exceeds the limit of %lld pixels", name,
                           (long long)w, (long long)h, (long long)lim->max_pixels);
    return TANDEM_OK;
}

/* ---- alpha on white: Pillow's alpha_composite(white, image), fixed point as Pillow rounds it ---- */

static uint8_t over_white(uint32_t c, uint32_t a) {
    if (a == 0) return 255;
    const uint32_t precision = 7;
    uint32_t outa255 = a * 255 + 255 * (255 - a);
    uint32_t coef1 = a * 255 * 255 * (1u << precision) / outa255;
    uint32_t coef2 = 255 * (1u << precision) - coef1;
    uint32_t t = c * coef1 + 255 * coef2 + (0x80u << precision);
    return (uint8_t)((((t >> 8) + t) >> 8) >> precision);
}

/* RGBA rows (stride w*4) -> RGB in place-safe order (the output is never ahead of the input). */
static void rgba_to_rgb_on_white(uint8_t *buf, int64_t n_pixels) {
    for (int64_t i = 0; i < n_pixels; i++) {
        const uint8_t *s = buf + i * 4;
        uint8_t r = over_white(s[0], s[3]), g = over_white(s[1], s[3]), b = over_white(s[2], s[3]);
        buf[i * 3] = r, buf[i * 3 + 1] = g, buf[i * 3 + 2] = b;
    }
}

/* ---- EXIF orientation ---- */

static uint32_t tiff_u16(const uint8_t *p, bool big) {
    return big ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}
static uint32_t tiff_u32(const uint8_t *p, bool big) {
    return big ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
               : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

int vision_exif_orientation(const uint8_t *tiff, size_t size) {
    if (!tiff || size < 8) return 1;
    bool big;
    if (tiff[0] == 'I' && tiff[1] == 'I') big = false;
    else if (tiff[0] == 'M' && tiff[1] == 'M') big = true;
    else return 1;
    if (tiff_u16(tiff + 2, big) != 42) return 1;
    uint64_t ifd = tiff_u32(tiff + 4, big);
    if (ifd > size || size - ifd < 2) return 1;
    uint32_t n = tiff_u16(tiff + ifd, big);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t e = ifd + 2 + (uint64_t)i * 12;
        if (e + 12 > size) return 1;
        if (tiff_u16(tiff + e, big) != 0x0112) continue;
        uint32_t type = tiff_u16(tiff + e + 2, big), count = tiff_u32(tiff + e + 4, big);
        if (type != 3 || count < 1) return 1; /* SHORT, value inline */
        uint32_t v = tiff_u16(tiff + e + 8, big);
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

/* Applies orientation o as Pillow's exif_transpose does; replaces img's buffer. */
static tandem_status apply_orientation(vision_rgb *img, int o) {
    if (o <= 1 || o > 8) return TANDEM_OK;
    int64_t w = img->width, h = img->height;
    int64_t ow = o >= 5 ? h : w, oh = o >= 5 ? w : h;
    uint8_t *dst = malloc((size_t)(w * h * 3));
    if (!dst) return tandem_fail(TANDEM_ERR_NO_MEMORY, "vision_decode: out of memory");
    for (int64_t y = 0; y < oh; y++) {
        for (int64_t x = 0; x < ow; x++) {
            int64_t sx, sy;
            switch (o) {
            case 2: sx = w - 1 - x, sy = y; break;
            case 3: sx = w - 1 - x, sy = h - 1 - y; break;
            case 4: sx = x, sy = h - 1 - y; break;
            case 5: sx = y, sy = x; break;
            case 6: sx = y, sy = h - 1 - x; break;
            case 7: sx = w - 1 - y, sy = h - 1 - x; break;
            default: sx = w - 1 - y, sy = x; break; /* 8 */
            }
            memcpy(dst + (y * ow + x) * 3, img->rgb + (sy * w + sx) * 3, 3);
        }
    }
    free(img->rgb);
    img->rgb = dst;
    img->width = (int32_t)ow;
    img->height = (int32_t)oh;
    return TANDEM_OK;
}

/* ---- JPEG ---- */

typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_failure;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_failure *f = (jpeg_failure *)cinfo->err;
    f->mgr.format_message(cinfo, f->message);
    longjmp(f->jump, 1);
}

/* Warnings are silent, except a premature end of data: Pillow refuses truncated JPEGs too. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    jpeg_failure *f = (jpeg_failure *)cinfo->err;
    if (level == -1 && f->mgr.msg_code == JWRN_JPEG_EOF) {
        f->mgr.format_message(cinfo, f->message);
        longjmp(f->jump, 1);
    }
}

/* A progressive JPEG of thousands of tiny scans costs minutes of CPU for a few kilobytes (libjpeg-turbo's advice:
 * bound the scan count, as djpeg -maxscans does). */
enum { JPEG_MAX_SCANS = 1000 };

typedef struct {
    struct jpeg_progress_mgr mgr;
    jpeg_failure *fail;
} jpeg_scan_guard;

static void jpeg_on_progress(j_common_ptr cinfo) {
    if (!cinfo->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    jpeg_scan_guard *g = (jpeg_scan_guard *)cinfo->progress;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        snprintf(g->fail->message, sizeof g->fail->message, "more than %d progressive scans", JPEG_MAX_SCANS);
        longjmp(g->fail->jump, 1);
    }
}

static tandem_status decode_jpeg(const char *name, const uint8_t *data, size_t size, const vision_decode_limits *lim,
                                 vision_rgb *out) {
    if (size > 0xffffffffu) return tandem_fail(TANDEM_ERR_FORMAT, "%s: JPEG of %zu bytes is too large", name, size);
    struct jpeg_decompress_struct cinfo;
    jpeg_failure fail;
    memset(&fail, 0, sizeof fail);
    cinfo.err = jpeg_std_error(&fail.mgr);
    fail.mgr.error_exit = jpeg_on_error;
    fail.mgr.emit_message = jpeg_on_message;
    jpeg_scan_guard progress = {.mgr.progress_monitor = jpeg_on_progress, .fail = &fail};
    uint8_t *volatile pixels = NULL;
    if (setjmp(fail.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: corrupt JPEG: %s", name, fail.message);
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &progress.mgr;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(&cinfo, TRUE);
    tandem_status st = check_size(name, cinfo.image_width, cinfo.image_height, lim);
    if (st != TANDEM_OK) {
        jpeg_destroy_decompress(&cinfo);
        return st;
    }
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&cinfo);
        return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: CMYK JPEGs are not supported", name);
    }
    int orientation = 1;
    for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
            orientation = vision_exif_orientation(m->data + 6, m->data_length - 6);
            break;
        }
    }
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    size_t w = cinfo.output_width, h = cinfo.output_height;
    pixels = malloc(w * h * 3);
    if (!pixels) {
        jpeg_destroy_decompress(&cinfo);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory for %zu x %zu pixels", name, w, h);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + (size_t)cinfo.output_scanline * w * 3;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    out->width = (int32_t)w;
    out->height = (int32_t)h;
    out->rgb = pixels;
    st = apply_orientation(out, orientation);
    if (st != TANDEM_OK) vision_rgb_free(out);
    return st;
}

/* ---- PNG ---- */

typedef struct {
    const uint8_t *data;
    size_t size, pos;
    char message[256];
} png_source;

static void png_on_read(png_structp png, png_bytep dst, size_t n) {
    png_source *src = png_get_io_ptr(png);
    if (src->size - src->pos < n) png_error(png, "unexpected end of data");
    memcpy(dst, src->data + src->pos, n);
    src->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg) {
    png_source *src = png_get_error_ptr(png);
    snprintf(src->message, sizeof src->message, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {}

static tandem_status decode_png(const char *name, const uint8_t *data, size_t size, const vision_decode_limits *lim,
                                vision_rgb *out) {
    png_source src = {.data = data, .size = size};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    if (!png) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", name);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", name);
    }
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    volatile tandem_status size_status = TANDEM_OK;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        if (size_status != TANDEM_OK) return size_status;
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: corrupt PNG: %s", name, src.message);
    }
    png_set_read_fn(png, &src, png_on_read);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    size_status = check_size(name, w, h, lim);
    if (size_status != TANDEM_OK) png_longjmp(png, 1);
    int depth = png_get_bit_depth(png, info), color = png_get_color_type(png, info);
    /* Pillow reads a 16-bit grey PNG as mode I;16 and converts it to RGB by clamping at 255 (not by scaling). */
    bool gray16 = depth == 16 && color == PNG_COLOR_TYPE_GRAY;
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (!gray16 && png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16 && !gray16) png_set_strip_16(png);
    if (gray16) png_set_swap(png); /* little-endian samples */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    int channels = png_get_channels(png, info);
    if (rowbytes != (size_t)w * channels * (gray16 ? 2 : 1)) png_error(png, "unexpected row layout");
    /* room for RGBA in 8 bits or 16-bit grey, converted to RGB in place afterwards */
    size_t cap = (size_t)w * h * (gray16 ? 3 : (channels < 3 ? 4 : (size_t)channels));
    if (cap < rowbytes * h) cap = rowbytes * h;
    pixels = malloc(cap);
    rows = malloc(sizeof(png_bytep) * h);
    if (!pixels || !rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * rowbytes;
    png_read_image(png, rows);
    /* no png_read_end: what follows the pixels is not needed, and Pillow too decodes a file cut before IEND */
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    uint8_t *p = pixels;
    int64_t n = (int64_t)w * h;
    if (gray16) {
        uint8_t *tmp = malloc((size_t)n * 3);
        if (!tmp) {
            free(p);
            return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", name);
        }
        for (int64_t i = 0; i < n; i++) {
            uint8_t v = p[2 * i + 1] ? 255 : p[2 * i];
            tmp[3 * i] = tmp[3 * i + 1] = tmp[3 * i + 2] = v;
        }
        free(p);
        p = tmp;
    } else if (channels == 1 || channels == 2) {
        /* grey (+alpha) -> RGBA from the back so nothing is overwritten before it is read */
        for (int64_t i = n - 1; i >= 0; i--) {
            uint8_t v = p[i * channels], a = channels == 2 ? p[i * channels + 1] : 255;
            p[i * 4] = p[i * 4 + 1] = p[i * 4 + 2] = v;
            p[i * 4 + 3] = a;
        }
        if (channels == 2) rgba_to_rgb_on_white(p, n);
        else
            for (int64_t i = 0; i < n; i++) memmove(p + i * 3, p + i * 4, 3);
    } else if (channels == 4) {
        rgba_to_rgb_on_white(p, n);
    }
    out->width = (int32_t)w;
    out->height = (int32_t)h;
    out->rgb = p;
    return TANDEM_OK;
}

/* ---- WebP ---- */

static tandem_status decode_webp(const char *name, const uint8_t *data, size_t size, const vision_decode_limits *lim,
                                 vision_rgb *out) {
    WebPBitstreamFeatures f;
    VP8StatusCode vs = WebPGetFeatures(data, size, &f);
    if (vs != VP8_STATUS_OK) return tandem_fail(TANDEM_ERR_FORMAT, "%s: corrupt WebP (status %d)", name, (int)vs);
    tandem_status st = check_size(name, f.width, f.height, lim);
    if (st != TANDEM_OK) return st;
    if (f.has_animation) return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: animated WebP is not supported", name);
    size_t n = (size_t)f.width * (size_t)f.height;
    uint8_t *p = malloc(n * 4);
    if (!p) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", name);
    if (!WebPDecodeRGBAInto(data, size, p, n * 4, f.width * 4)) {
        free(p);
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: corrupt WebP", name);
    }
    if (f.has_alpha) rgba_to_rgb_on_white(p, (int64_t)n);
    else
        for (size_t i = 0; i < n; i++) memmove(p + i * 3, p + i * 4, 3);
    out->width = f.width;
    out->height = f.height;
    out->rgb = p;
    return TANDEM_OK;
}

tandem_status vision_decode(const char *name, const uint8_t *data, size_t size, const vision_decode_limits *limits,
                            vision_rgb *out) {
    memset(out, 0, sizeof *out);
    if (!name) name = "image";
    vision_decode_limits lim = limits ? *limits : vision_decode_limits_default();
    if (!data || size < 12) return tandem_fail(TANDEM_ERR_FORMAT, "%s: not an image (%zu bytes)", name, size);
    if (data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return decode_jpeg(name, data, size, &lim, out);
    if (memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0) return decode_png(name, data, size, &lim, out);
    if (memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0)
        return decode_webp(name, data, size, &lim, out);
    return tandem_fail(TANDEM_ERR_UNSUPPORTED, "%s: unknown image format (JPEG, PNG and WebP are supported)", name);
}

/* ---- smart_resize ---- */

tandem_status vision_smart_resize(const char *name, int32_t height, int32_t width, int32_t factor, int64_t min_pixels,
                                  int64_t max_pixels, int32_t *out_height, int32_t *out_width) {
    if (height <= 0 || width <= 0 || factor <= 0)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "vision_smart_resize: %s: empty image", name);
    double hi = height > width ? height : width, lo = height > width ? width : height;
    if (hi / lo > 200)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "vision_smart_resize: %s: aspect ratio %g exceeds 200", name,
                           hi / lo);
    /* Python's round() rounds half to even, as nearbyint does in the default rounding mode */
    double h_bar = nearbyint((double)height / factor) * factor, w_bar = nearbyint((double)width / factor) * factor;
    double hw = (double)height * width;
    if (h_bar * w_bar > (double)max_pixels) {
        double beta = sqrt(hw / (double)max_pixels);
        h_bar = fmax(factor, floor(height / beta / factor) * factor);
        w_bar = fmax(factor, floor(width / beta / factor) * factor);
    } else if (h_bar * w_bar < (double)min_pixels) {
        double beta = sqrt((double)min_pixels / hw);
        h_bar = ceil(height * beta / factor) * factor;
        w_bar = ceil(width * beta / factor) * factor;
    }
    if (h_bar < factor || w_bar < factor || h_bar > INT32_MAX / 4 || w_bar > INT32_MAX / 4)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "vision_smart_resize: %s: resized to %g x %g pixels", name, w_bar,
                           h_bar);
    *out_height = (int32_t)h_bar;
    *out_width = (int32_t)w_bar;
    return TANDEM_OK;
}

/* ---- Pillow's bicubic resampling (separable, a = -0.5, support 2 scaled up when downscaling) ---- */

enum { PRECISION_BITS = 32 - 8 - 2 };

static double bicubic(double x) {
    const double a = -0.5;
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

/* Per output index: the first input index, the tap count and ksize fixed-point weights. */
static int32_t *resample_coeffs(int32_t in_size, int32_t out_size, int32_t *ksize_out, int32_t **bounds_out) {
    double scale = (double)in_size / out_size, filterscale = scale < 1 ? 1 : scale;
    double support = 2.0 * filterscale;
    int32_t ksize = (int32_t)ceil(support) * 2 + 1;
    double *k = malloc(sizeof(double) * (size_t)ksize);
    int32_t *kk = malloc(sizeof(int32_t) * (size_t)out_size * (size_t)ksize);
    int32_t *bounds = malloc(sizeof(int32_t) * 2 * (size_t)out_size);
    if (!k || !kk || !bounds) {
        free(k), free(kk), free(bounds);
        return NULL;
    }
    for (int32_t xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0, ss = 1.0 / filterscale;
        int32_t xmin = (int32_t)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int32_t xmax = (int32_t)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        int32_t x = 0;
        for (; x < xmax; x++) {
            double w = bicubic((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        for (x = 0; x < ksize; x++)
            kk[(size_t)xx * ksize + x] = k[x] < 0 ? (int32_t)(-0.5 + k[x] * (1 << PRECISION_BITS))
                                                  : (int32_t)(0.5 + k[x] * (1 << PRECISION_BITS));
        bounds[xx * 2] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    free(k);
    *ksize_out = ksize;
    *bounds_out = bounds;
    return kk;
}

static uint8_t clip8(int32_t v) {
    v >>= PRECISION_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* One horizontal pass: rows [row0, row0 + rows) of src (src_w wide) -> rows of dst (out_w wide). */
static void resample_rows(const uint8_t *src, int32_t src_w, int32_t row0, int32_t rows, uint8_t *dst, int32_t out_w,
                          const int32_t *kk, int32_t ksize, const int32_t *bounds) {
    for (int32_t y = 0; y < rows; y++) {
        const uint8_t *row = src + (size_t)(y + row0) * src_w * 3;
        for (int32_t xx = 0; xx < out_w; xx++) {
            int32_t xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1];
            const int32_t *k = kk + (size_t)xx * ksize;
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int32_t x = 0; x < xmax; x++) {
                const uint8_t *p = row + (size_t)(x + xmin) * 3;
                s0 += p[0] * k[x], s1 += p[1] * k[x], s2 += p[2] * k[x];
            }
            uint8_t *o = dst + ((size_t)y * out_w + xx) * 3;
            o[0] = clip8(s0), o[1] = clip8(s1), o[2] = clip8(s2);
        }
    }
}

/* One vertical pass: src (w wide) -> out_h rows of dst. */
static void resample_columns(const uint8_t *src, int32_t w, uint8_t *dst, int32_t out_h, const int32_t *kk,
                             int32_t ksize, const int32_t *bounds) {
    for (int32_t yy = 0; yy < out_h; yy++) {
        int32_t ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1];
        const int32_t *k = kk + (size_t)yy * ksize;
        for (int32_t xx = 0; xx < w; xx++) {
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int32_t y = 0; y < ymax; y++) {
                const uint8_t *p = src + ((size_t)(y + ymin) * w + xx) * 3;
                s0 += p[0] * k[y], s1 += p[1] * k[y], s2 += p[2] * k[y];
            }
            uint8_t *o = dst + ((size_t)yy * w + xx) * 3;
            o[0] = clip8(s0), o[1] = clip8(s1), o[2] = clip8(s2);
        }
    }
}

tandem_status vision_resize_bicubic(const vision_rgb *in, int32_t out_w, int32_t out_h, vision_rgb *out) {
    memset(out, 0, sizeof *out);
    if (out_w <= 0 || out_h <= 0 || in->width <= 0 || in->height <= 0)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "vision_resize_bicubic: empty size");
    int32_t in_w = in->width, in_h = in->height;
    bool need_h = out_w != in_w, need_v = out_h != in_h;
    /* Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many pixels as the
     * width (the horizontal pass then has fewer rows); the order changes the rounding of the intermediate image. */
    bool vertical_first = need_h && out_h < in_h && (int64_t)in_h - out_h > 2 * ((int64_t)in_w - out_w);
    int32_t kh = 0, kv = 0, *bh = NULL, *bv = NULL;
    int32_t *kkh = resample_coeffs(in_w, out_w, &kh, &bh), *kkv = resample_coeffs(in_h, out_h, &kv, &bv);
    uint8_t *tmp = NULL, *dst = malloc((size_t)out_w * out_h * 3);
    tandem_status st = TANDEM_OK;
    if (!kkh || !kkv || !dst) goto oom;
    if (!need_h && !need_v) {
        memcpy(dst, in->rgb, (size_t)out_w * out_h * 3);
    } else if (!need_v) {
        resample_rows(in->rgb, in_w, 0, in_h, dst, out_w, kkh, kh, bh);
    } else if (!need_h) {
        resample_columns(in->rgb, in_w, dst, out_h, kkv, kv, bv);
    } else if (vertical_first) {
        if (!(tmp = malloc((size_t)in_w * out_h * 3))) goto oom;
        resample_columns(in->rgb, in_w, tmp, out_h, kkv, kv, bv);
        resample_rows(tmp, in_w, 0, out_h, dst, out_w, kkh, kh, bh);
    } else {
        /* the horizontal pass covers only the rows the vertical pass reads */
        int32_t y_first = bv[0], y_last = bv[out_h * 2 - 2] + bv[out_h * 2 - 1];
        for (int32_t i = 0; i < out_h; i++) bv[i * 2] -= y_first;
        if (!(tmp = malloc((size_t)out_w * (y_last - y_first) * 3))) goto oom;
        resample_rows(in->rgb, in_w, y_first, y_last - y_first, tmp, out_w, kkh, kh, bh);
        resample_columns(tmp, out_w, dst, out_h, kkv, kv, bv);
    }
    out->width = out_w;
    out->height = out_h;
    out->rgb = dst;
    dst = NULL;
    goto done;
oom:
    st = tandem_fail(TANDEM_ERR_NO_MEMORY, "vision_resize_bicubic: out of memory");
done:
    free(kkh), free(kkv), free(bh), free(bv), free(tmp), free(dst);
    return st;
}

/* ---- normalisation and patches ---- */

vision_preprocess_config vision_preprocess_config_qwen3vl(void) {
    return (vision_preprocess_config){.patch_size = 16,
                                      .merge_size = 2,
                                      .temporal_patch_size = 2,
                                      .min_pixels = 65536,
                                      .max_pixels = 16777216,
                                      .rescale_factor = 1.0 / 255,
                                      .image_mean = {0.5f, 0.5f, 0.5f},
                                      .image_std = {0.5f, 0.5f, 0.5f}};
}

/* A field that is present must be valid; an absent one keeps Qwen3-VL's value. */
static tandem_status config_int(const char *path, const json_t *obj, const char *key, int64_t lo, int64_t hi,
                                int64_t *out) {
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return TANDEM_OK;
    int64_t x;
    if (!json_get_int(obj, key, &x) || x < lo || x > hi)
        return tandem_fail(TANDEM_ERR_FORMAT,
                           "vision_preprocess_config_load: %s: %s: must be an integer in [%lld, %lld]", path, key,
                           (long long)lo, (long long)hi);
    *out = x;
    return TANDEM_OK;
}

static tandem_status config_triple(const char *path, const json_t *obj, const char *key, bool nonzero, float out[3]) {
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return TANDEM_OK;
    if (json_is_number(v)) {
        double x = json_number_value(v);
        v = NULL;
        if (isfinite(x) && (!nonzero || x != 0)) {
            out[0] = out[1] = out[2] = (float)x;
            return TANDEM_OK;
        }
    }
    if (json_is_array(v) && json_array_size(v) == 3) {
        float t[3];
        bool ok = true;
        for (size_t i = 0; i < 3; i++) {
            const json_t *e = json_array_get(v, i);
            double x = json_is_number(e) ? json_number_value(e) : NAN;
            ok = ok && isfinite(x) && (!nonzero || x != 0);
            t[i] = (float)x;
        }
        if (ok) {
            memcpy(out, t, sizeof t);
            return TANDEM_OK;
        }
    }
    return tandem_fail(TANDEM_ERR_FORMAT, "vision_preprocess_config_load: %s: %s: must be 3 finite numbers%s", path,
                       key, nonzero ? ", none zero" : "");
}

tandem_status vision_preprocess_config_load(const char *path, vision_preprocess_config *cfg) {
    *cfg = vision_preprocess_config_qwen3vl();
    json_t *root;
    tandem_status st = json_load_path(path, &root);
    if (st != TANDEM_OK) return st;
    int64_t patch = cfg->patch_size, merge = cfg->merge_size, temporal = cfg->temporal_patch_size;
    int64_t lo = cfg->min_pixels, hi = cfg->max_pixels;
    const json_t *size = json_object_get(root, "size");
    if (!json_is_object(root))
        st = tandem_fail(TANDEM_ERR_FORMAT, "vision_preprocess_config_load: %s: not a JSON object", path);
    if (st == TANDEM_OK) st = config_int(path, root, "patch_size", 1, 1024, &patch);
    if (st == TANDEM_OK) st = config_int(path, root, "merge_size", 1, 64, &merge);
    if (st == TANDEM_OK) st = config_int(path, root, "temporal_patch_size", 1, 64, &temporal);
    /* the processor's __init__: size {shortest_edge, longest_edge} (pixel counts), then min_pixels / max_pixels */
    if (st == TANDEM_OK && json_is_object(size)) st = config_int(path, size, "shortest_edge", 1, (int64_t)1 << 40, &lo);
    if (st == TANDEM_OK && json_is_object(size)) st = config_int(path, size, "longest_edge", 1, (int64_t)1 << 40, &hi);
    if (st == TANDEM_OK) st = config_int(path, root, "min_pixels", 1, (int64_t)1 << 40, &lo);
    if (st == TANDEM_OK) st = config_int(path, root, "max_pixels", 1, (int64_t)1 << 40, &hi);
    if (st == TANDEM_OK) st = config_triple(path, root, "image_mean", false, cfg->image_mean);
    if (st == TANDEM_OK) st = config_triple(path, root, "image_std", true, cfg->image_std);
    double rescale;
    if (st == TANDEM_OK && json_get_number(root, "rescale_factor", &rescale)) {
        if (!(rescale > 0) || !isfinite(rescale))
            st = tandem_fail(TANDEM_ERR_FORMAT, "vision_preprocess_config_load: %s: rescale_factor: must be positive",
                             path);
        else cfg->rescale_factor = rescale;
    }
    if (st == TANDEM_OK && lo > hi)
        st = tandem_fail(TANDEM_ERR_FORMAT,
                         "vision_preprocess_config_load: %s: size: shortest_edge %lld exceeds "
                         "longest_edge %lld (both are pixel counts)",
                         path, (long long)lo, (long long)hi);
    json_decref(root);
    if (st != TANDEM_OK) return st;
    cfg->patch_size = (int32_t)patch;
    cfg->merge_size = (int32_t)merge;
    cfg->temporal_patch_size = (int32_t)temporal;
    cfg->min_pixels = lo;
    cfg->max_pixels = hi;
    return TANDEM_OK;
}

static tandem_status check_config(const vision_preprocess_config *c);

tandem_status vision_preprocess_config_from_gguf(const char *path, const gguf_file *f, vision_preprocess_config *cfg) {
    *cfg = vision_preprocess_config_qwen3vl();
    uint32_t v;
    if (gguf_get_u32(f, "clip.vision.patch_size", &v)) cfg->patch_size = (int32_t)(v < 1024 ? v : 1024);
    if (gguf_get_u32(f, "clip.vision.spatial_merge_size", &v)) cfg->merge_size = (int32_t)(v < 64 ? v : 64);
    if (gguf_get_u32(f, "clip.vision.image_min_pixels", &v)) cfg->min_pixels = v;
    if (gguf_get_u32(f, "clip.vision.image_max_pixels", &v)) cfg->max_pixels = v;
    static const char *const keys[2] = {"clip.vision.image_mean", "clip.vision.image_std"};
    for (int k = 0; k < 2; k++) {
        const gguf_kv *kv = gguf_find_kv(f, keys[k]);
        if (!kv) continue;
        if (kv->type != GGUF_TYPE_ARRAY || kv->n != 3 ||
            (kv->array_type != GGUF_TYPE_FLOAT32 && kv->array_type != GGUF_TYPE_FLOAT64))
            return tandem_fail(TANDEM_ERR_FORMAT, "vision_preprocess_config_from_gguf: %s: %s: not 3 floats", path,
                               keys[k]);
        for (int i = 0; i < 3; i++)
            (k ? cfg->image_std : cfg->image_mean)[i] = (float)gguf_array_float(kv, (uint64_t)i);
    }
    tandem_status st = check_config(cfg);
    if (st != TANDEM_OK)
        return tandem_fail(st, "vision_preprocess_config_from_gguf: %s: %s", path, tandem_last_error());
    return TANDEM_OK;
}

void vision_pixels_free(vision_pixels *px) {
    if (!px) return;
    free(px->pixel_values);
    memset(px, 0, sizeof *px);
}

static tandem_status check_config(const vision_preprocess_config *c) {
    if (c->patch_size < 1 || c->patch_size > 1024 || c->merge_size < 1 || c->merge_size > 64 ||
        c->temporal_patch_size < 1 || c->temporal_patch_size > 64 || c->min_pixels < 1 || c->max_pixels < c->min_pixels)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "vision_preprocess: config: patch_size %d, merge_size %d, "
                           "temporal_patch_size %d, size %lld-%lld out of range",
                           c->patch_size, c->merge_size, c->temporal_patch_size, (long long)c->min_pixels,
                           (long long)c->max_pixels);
    for (int i = 0; i < 3; i++)
        if (!(c->image_std[i] != 0) || !isfinite(c->image_std[i]) || !isfinite(c->image_mean[i]))
            return tandem_fail(TANDEM_ERR_INVALID_ARG, "vision_preprocess: config: image_std must be non-zero");
    return TANDEM_OK;
}

tandem_status vision_patchify(const vision_rgb *img, const vision_preprocess_config *c, vision_pixels *out) {
    memset(out, 0, sizeof *out);
    tandem_status st = check_config(c);
    if (st != TANDEM_OK) return st;
    int32_t p = c->patch_size, m = c->merge_size, t = c->temporal_patch_size, unit = p * m;
    if (img->width <= 0 || img->height <= 0 || img->width % unit || img->height % unit)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "vision_patchify: %d x %d is not a multiple of %d", img->width,
                           img->height, unit);
    int32_t gh = img->height / p, gw = img->width / p;
    int64_t dim = 3 * (int64_t)t * p * p, n = (int64_t)gh * gw;
    float *pv = malloc(sizeof(float) * (size_t)(n * dim));
    if (!pv) return tandem_fail(TANDEM_ERR_NO_MEMORY, "vision_patchify: out of memory");
    /* numpy: rescale in float64 then cast, normalise in float32 */
    float lut[3][256];
    for (int ch = 0; ch < 3; ch++)
        for (int v = 0; v < 256; v++) {
            float r = (float)((double)v * c->rescale_factor);
            lut[ch][v] = (r - c->image_mean[ch]) / c->image_std[ch];
        }
    int64_t row = 0;
    for (int32_t by = 0; by < gh / m; by++)
        for (int32_t bx = 0; bx < gw / m; bx++)
            for (int32_t my = 0; my < m; my++)
                for (int32_t mx = 0; mx < m; mx++, row++) {
                    float *o = pv + row * dim;
                    int32_t y0 = (by * m + my) * p, x0 = (bx * m + mx) * p;
                    for (int ch = 0; ch < 3; ch++)
                        for (int32_t tt = 0; tt < t; tt++)
                            for (int32_t py = 0; py < p; py++)
                                for (int32_t px = 0; px < p; px++)
                                    *o++ = lut[ch][img->rgb[((size_t)(y0 + py) * img->width + x0 + px) * 3 + ch]];
                }
    out->pixel_values = pv;
    out->n_patches = n;
    out->patch_dim = dim;
    out->grid_t = 1;
    out->grid_h = gh;
    out->grid_w = gw;
    out->resized_height = img->height;
    out->resized_width = img->width;
    return TANDEM_OK;
}

tandem_status vision_preprocess(const char *name, const vision_rgb *img, const vision_preprocess_config *c,
                                vision_pixels *out) {
    return vision_preprocess_keep(name, img, c, out, NULL);
}

tandem_status vision_preprocess_keep(const char *name, const vision_rgb *img, const vision_preprocess_config *c,
                                     vision_pixels *out, vision_rgb *resized_out) {
    memset(out, 0, sizeof *out);
    if (resized_out) memset(resized_out, 0, sizeof *resized_out);
    tandem_status st = check_config(c);
    if (st != TANDEM_OK) return st;
    int32_t rh, rw;
    st = vision_smart_resize(name ? name : "image", img->height, img->width, c->patch_size * c->merge_size,
                             c->min_pixels, c->max_pixels, &rh, &rw);
    if (st != TANDEM_OK) return st;
    if ((int64_t)rh * rw > ((int64_t)1 << 28))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "vision_preprocess: %s: resized to %d x %d pixels, too many", name,
                           rw, rh);
    vision_rgb resized;
    st = vision_resize_bicubic(img, rw, rh, &resized);
    if (st != TANDEM_OK) return st;
    st = vision_patchify(&resized, c, out);
    if (st == TANDEM_OK && resized_out) *resized_out = resized;
    else vision_rgb_free(&resized);
    return st;
}
