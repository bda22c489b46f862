#!/usr/bin/env python3
"""make_image_golden.py — goldens for tandem's image decoding and Qwen-VL preprocessing (src/vision/image.c).
Writes tests/golden/images/: small images made with Pillow (JPEG with EXIF orientations 1-8, PNG RGBA / palette with
tRNS / 16-bit / grey / grey+alpha / 1-bit / interlaced, WebP lossy and lossless with alpha, odd sizes, a tiny image
below min_pixels, a large one above max_pixels), two decompression bombs (headers declaring 70000 x 70000 pixels),
and cases.json with what transformers computes for each:
- decoded: ImageOps.exif_transpose(Image.open(f)) then transformers' convert_to_rgb (alpha composited on white),
- resized: Pillow's Image.resize((w, h), BICUBIC) at smart_resize's size (transformers' own smart_resize),
- pixel_values and image_grid_thw from transformers' Qwen2VLImageProcessorPil with Qwen3-VL's settings (patch 16,
  merge 2, temporal 2, mean/std 0.5) and a small pixel budget so that the goldens stay small,
- Pillow's resize of large_150x100.png to a few more sizes (<file>.<w>x<h>.rgb),
- smart_resize for a table of sizes and budgets (including Qwen3-VL's defaults and extreme aspect ratios).
Raw arrays are written as <case>.decoded.rgb, <case>.resized.rgb (uint8, row-major RGB) and <case>.pixels.f32 (float32
little-endian, only for a few cases). Run from the repo root: python3 tests/gen/make_image_golden.py (needs Pillow,
numpy, transformers; deterministic)."""
import io
import json
import pathlib
import struct
import zlib

import numpy as np
from PIL import Image, ImageOps
from transformers.image_transforms import convert_to_rgb
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil, smart_resize

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/golden/images"
MIN_PIXELS, MAX_PIXELS = 1024, 4096  # small budget: resized images of 1-4 K pixels
rng = np.random.default_rng(31)


def scene(w, h, alpha=False):
    """A smooth, asymmetric picture (gradients, a disc, a corner mark) with a little noise: exercises resampling
    and shows any orientation mistake."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = 128 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)
    disc = (x - w * 0.3) ** 2 + (y - h * 0.6) ** 2 < (min(w, h) * 0.2) ** 2
    r = np.where(disc, 250, r)
    corner = (x < w * 0.2) & (y < h * 0.15)
    g = np.where(corner, 10, g)
    img = np.stack([r, g, b], -1) + rng.normal(0, 6, (h, w, 3))
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    if alpha:
        a = np.clip(255 * (x / max(w - 1, 1)) + rng.normal(0, 20, (h, w)), 0, 255).astype(np.uint8)
        a[: h // 4, : w // 4] = 0
        img = np.concatenate([img, a[..., None]], -1)
    return img


def save(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def make_images():
    imgs = {}
    base = Image.fromarray(scene(37, 23))
    for o in range(1, 9):
        ex = Image.Exif()
        ex[0x0112] = o
        imgs[f"jpeg_orient{o}.jpg"] = save(base, "JPEG", quality=90, exif=ex.tobytes())
    imgs["jpeg_big_endian_exif.jpg"] = save(base, "JPEG", quality=85, exif=b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0")
    imgs["jpeg_odd_37x91.jpg"] = save(Image.fromarray(scene(37, 91)), "JPEG", quality=92)
    imgs["jpeg_gray.jpg"] = save(Image.fromarray(scene(40, 30)[..., 1]), "JPEG", quality=90)
    imgs["jpeg_444.jpg"] = save(Image.fromarray(scene(33, 17)), "JPEG", quality=95, subsampling=0)
    imgs["jpeg_progressive.jpg"] = save(Image.fromarray(scene(45, 29)), "JPEG", quality=80, progressive=True)
    imgs["png_rgb_37x91.png"] = save(Image.fromarray(scene(37, 91)), "PNG")
    imgs["png_rgba.png"] = save(Image.fromarray(scene(41, 27, alpha=True), "RGBA"), "PNG")
    pal = Image.fromarray(scene(30, 20)).quantize(16)
    imgs["png_palette_trns.png"] = save(pal, "PNG", transparency=3)
    imgs["png_palette.png"] = save(Image.fromarray(scene(29, 31)).quantize(64), "PNG")
    imgs["png_gray.png"] = save(Image.fromarray(scene(25, 19)[..., 0]), "PNG")
    la = scene(22, 18, alpha=True)
    imgs["png_gray_alpha.png"] = save(Image.fromarray(np.stack([la[..., 0], la[..., 3]], -1), "LA"), "PNG")
    imgs["png_1bit.png"] = save(Image.fromarray(scene(35, 13)[..., 0] > 128), "PNG")
    g16 = (np.arange(24 * 20, dtype=np.uint16).reshape(20, 24) * 3).astype(np.uint16)  # values 0-1437: clamps at 255
    imgs["png_gray16.png"] = save(Image.fromarray(g16), "PNG")
    imgs["png_rgb16.png"] = png16_rgba(scene(21, 17, alpha=True))
    imgs["png_interlaced.png"] = png_adam7(scene(26, 23))
    imgs["webp_lossless_alpha.webp"] = save(Image.fromarray(scene(31, 25, alpha=True), "RGBA"), "WEBP", lossless=True)
    imgs["webp_lossless.webp"] = save(Image.fromarray(scene(31, 25)), "WEBP", lossless=True)
    imgs["webp_lossy.webp"] = save(Image.fromarray(scene(39, 27)), "WEBP", quality=80)
    imgs["tiny_5x3.png"] = save(Image.fromarray(scene(5, 3)), "PNG")
    imgs["large_150x100.png"] = save(Image.fromarray(scene(150, 100)), "PNG")
    imgs["wide_250x9.png"] = save(Image.fromarray(scene(250, 9)), "PNG")
    return imgs


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png16_rgba(a8):
    """A 16-bit RGBA PNG (Pillow cannot write one): each 16-bit sample v*257 + a small low byte."""
    h, w, _ = a8.shape
    a16 = a8.astype(np.uint16) * 257 ^ rng.integers(0, 200, a8.shape).astype(np.uint16) & 0xFF
    raw = b"".join(b"\0" + a16[y].astype(">u2").tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def png_adam7(rgb):
    """An Adam7-interlaced 8-bit RGB PNG (Pillow writes none)."""
    h, w, _ = rgb.shape
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = rgb[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        raw += b"".join(b"\0" + sub[y].tobytes() for y in range(sub.shape[0]))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1))
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def bombs(jpeg_bytes):
    png = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 70000, 70000, 8, 2, 0, 0, 0))
           + png_chunk(b"IDAT", zlib.compress(b"\0" * 10)) + png_chunk(b"IEND", b""))
    j = bytearray(jpeg_bytes)
    i = j.index(b"\xff\xc0")  # SOF0: length(2) precision(1) height(2) width(2)
    j[i + 5:i + 9] = struct.pack(">HH", 60000, 60000)
    return {"bomb_70000x70000.png": png, "bomb_60000x60000.jpg": bytes(j)}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for f in OUT.iterdir():
        f.unlink()
    proc = Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3,
                                    image_std=[0.5] * 3, size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS})
    imgs = make_images()
    with_pixels = {"png_rgba.png", "tiny_5x3.png"}
    cases = []
    for name, data in imgs.items():
        (OUT / name).write_bytes(data)
        im = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
        dec = convert_to_rgb(im, return_numpy=True)
        assert dec.dtype == np.uint8 and dec.shape[2] == 3
        (OUT / f"{name}.decoded.rgb").write_bytes(dec.tobytes())
        h, w = dec.shape[:2]
        rh, rw = smart_resize(h, w, factor=32, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
        res = np.asarray(Image.fromarray(dec).resize((rw, rh), Image.Resampling.BICUBIC))
        (OUT / f"{name}.resized.rgb").write_bytes(res.tobytes())
        case = {"file": name, "width": w, "height": h, "resized_width": rw, "resized_height": rh}
        if name in with_pixels:
            out = proc(im, return_tensors="np")
            pv = np.asarray(out["pixel_values"], dtype=np.float32)
            thw = [int(v) for v in out["image_grid_thw"][0]]
            assert thw == [1, rh // 16, rw // 16], (thw, rh, rw)
            (OUT / f"{name}.pixels.f32").write_bytes(pv.astype("<f4").tobytes())
            case.update(grid_thw=thw, n_patches=pv.shape[0], patch_dim=pv.shape[1])
        cases.append(case)
    # Pillow's resize on its own, beyond smart_resize's sizes: strong and slight down- and upscaling per axis, and
    # both pass orders (Pillow 13 goes vertical first when the height shrinks by over twice the width's pixels)
    src = np.asarray(Image.open(OUT / "large_150x100.png").convert("RGB"))
    resize_only = []
    for rw, rh in [(17, 13), (32, 32), (151, 64), (120, 30), (64, 99), (7, 200), (150, 37), (45, 100)]:
        res = np.asarray(Image.fromarray(src).resize((rw, rh), Image.Resampling.BICUBIC))
        (OUT / f"large_150x100.png.{rw}x{rh}.rgb").write_bytes(res.tobytes())
        resize_only.append([rw, rh])
    for name, data in bombs(imgs["jpeg_odd_37x91.jpg"]).items():
        (OUT / name).write_bytes(data)
    sizes = [(23, 37), (91, 37), (3, 5), (200, 300), (9, 400), (1080, 1920), (1920, 1080), (4000, 3000), (28, 5600),
             (5600, 28), (1, 200), (240, 240), (255, 256), (48, 80), (16, 16), (33, 47), (12000, 9000), (720, 1280)]
    budgets = [(MIN_PIXELS, MAX_PIXELS), (65536, 16777216), (256 * 32 * 32, 1024 * 32 * 32), (65536, 65536 * 4)]
    resize_table = []
    for h, w in sizes:
        for lo, hi in budgets:
            rh, rw = smart_resize(h, w, factor=32, min_pixels=lo, max_pixels=hi)
            resize_table.append([h, w, lo, hi, rh, rw])
    import PIL
    import transformers
    from PIL import features
    versions = {"pillow": PIL.__version__, "libjpeg_turbo": features.version("libjpeg_turbo"),
                "libwebp": features.version("webp"), "transformers": transformers.__version__,
                "numpy": np.__version__}
    doc = {"versions": versions, "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "cases": cases, "smart_resize": resize_table,
           "resize_only": {"file": "large_150x100.png", "sizes": resize_only},
           "rejected": ["bomb_70000x70000.png", "bomb_60000x60000.jpg"]}
    (OUT / "cases.json").write_text(json.dumps(doc, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.iterdir())
    print(f"wrote {len(cases)} cases to {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
