#!/usr/bin/env python3
"""make_vl_golden.py — goldens for tandem's Qwen3-VL vision tower (src/vision/vit.c), made with transformers.
Writes tests/golden/vision/: two tiny random-weight Qwen3VLForConditionalGeneration checkpoints (save_pretrained:
config.json, model.safetensors, preprocessor_config.json) and, for a few images of tests/golden/images, what the
model's own get_image_features returns in float32 (eager attention):
- vl_tied: text tied, vision hidden 32, 2 heads (head dim 16), depth 4, DeepStack taps [1, 2], a learned position
  table of 64 (8 x 8), weights stored as float32;
- vl_untied: text untied, vision hidden 40, 2 heads (head dim 20: 5 rotary frequencies per axis, an odd count, as
  8B's head dim 72 is not a power of two), depth 3, taps [0, 2], intermediate 72 (not a multiple of 32, as 8B's 4304), a table of 144
  (12 x 12), weights stored as bfloat16 (the reference runs on the bfloat16 values upcast to float32).
Images (Qwen2VLImageProcessorPil with Qwen3-VL's settings and a small pixel budget, 1024-6144 pixels): grids 2x2
(smaller than both tables), 4x6 (h != w), 2x12 (wider than the tables: the interpolation upsamples) and two images
in one call (2x2 and 6x2). Per image <image>.pixels.f32 (pixel_values, float32 little-endian, [patches, 1536]);
per model and case <model>/<case>.embeds.f32 (the merger's output, [tokens, out_hidden]) and
<model>/<case>.deepstack<j>.f32 (one per deepstack_visual_indexes entry); cases.json lists them with grid_thw.
Weights: N(0, 1/fan_in) for matrices, N(0, 0.1^2) biases, N(1, 0.1^2) / N(0, 0.1^2) LayerNorm weights / biases,
N(0, 0.5^2) position table, so activations stay O(1) through the blocks; fixed torch.Generator seeds.

torch is not a dependency of the repo (CI never runs this; the goldens are committed). A venv for it:
    python3 -m venv /tmp/vl-venv && /tmp/vl-venv/bin/pip install torch==2.15.0 transformers==5.25.0 pillow numpy \
        safetensors
    /tmp/vl-venv/bin/python tests/gen/make_vl_golden.py        # from the repo root; deterministic
"""
import io
import json
import pathlib
import shutil

import numpy as np
import torch
from PIL import Image, ImageOps
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGES = ROOT / "tests/golden/images"
OUT = ROOT / "tests/golden/vision"
MIN_PIXELS, MAX_PIXELS = 1024, 6144

MODELS = {
    "vl_tied": dict(seed=3101, dtype=torch.float32, tied=True,
                    vision=dict(depth=4, hidden_size=32, num_heads=2, intermediate_size=64,
                                num_position_embeddings=64, deepstack_visual_indexes=[1, 2]),
                    text=dict(hidden_size=32, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                              intermediate_size=64, rope_parameters={"rope_type": "default", "rope_theta": 5e6,
                                                                     "mrope_section": [4, 2, 2],
                                                                     "mrope_interleaved": True})),
    "vl_untied": dict(seed=3102, dtype=torch.bfloat16, tied=False,
                      vision=dict(depth=3, hidden_size=40, num_heads=2, intermediate_size=72,
                                  num_position_embeddings=144, deepstack_visual_indexes=[0, 2]),
                      text=dict(hidden_size=40, num_attention_heads=2, num_key_value_heads=2, head_dim=16,
                                intermediate_size=48, rope_parameters={"rope_type": "default", "rope_theta": 5e6,
                                                                       "mrope_section": [4, 2, 2],
                                                                       "mrope_interleaved": True})),
}
# case name -> images (files of tests/golden/images), encoded together in one call
CASES = {
    "small_2x2": ["webp_lossy.webp"],
    "grid_4x6": ["large_150x100.png"],
    "wide_2x12": ["wide_250x9.png"],
    "two_images": ["png_rgba.png", "png_rgb_37x91.png"],
}


def make_config(spec):
    text = dict(vocab_size=256, num_hidden_layers=2, max_position_embeddings=512, rms_norm_eps=1e-6,
                tie_word_embeddings=spec["tied"], **spec["text"])
    vision = dict(patch_size=16, temporal_patch_size=2, spatial_merge_size=2, in_channels=3,
                  hidden_act="gelu_pytorch_tanh", out_hidden_size=text["hidden_size"], **spec["vision"])
    # small image token ids: the tiny vocabulary has 256 entries
    cfg = Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=250, video_token_id=251,
                        vision_start_token_id=248, vision_end_token_id=249, tie_word_embeddings=spec["tied"])
    cfg._attn_implementation = "eager"
    cfg.vision_config._attn_implementation = "eager"
    cfg.text_config._attn_implementation = "eager"
    return cfg


def randomize(model, seed, embed_fan_in=1):
    """Weights from seed: norms near 1, biases and the position table small, matrices scaled by 1/sqrt(fan-in)
    (the token embedding by 1/sqrt(embed_fan_in))."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "norm" in name:  # LayerNorm / RMSNorm
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("pos_embed.weight"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                if "embed_tokens" in name:
                    fan_in = embed_fan_in
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)


def processor():
    return Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3,
                                   image_std=[0.5] * 3, size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS})


def f32(t):
    return np.ascontiguousarray(t.detach().to(torch.float32).numpy()).astype("<f4").tobytes()


def main():
    torch.manual_seed(0)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    proc = processor()
    pixels = {}
    images_doc = []
    for name in sorted({f for files in CASES.values() for f in files}):
        im = ImageOps.exif_transpose(Image.open(io.BytesIO((IMAGES / name).read_bytes())))
        out = proc(im, return_tensors="np")
        pv = np.asarray(out["pixel_values"], dtype=np.float32)
        thw = [int(v) for v in out["image_grid_thw"][0]]
        pixels[name] = (torch.from_numpy(pv), thw)
        (OUT / f"{name}.pixels.f32").write_bytes(pv.astype("<f4").tobytes())
        images_doc.append({"file": name, "grid_thw": thw, "n_patches": pv.shape[0], "patch_dim": pv.shape[1]})
    models_doc = []
    for mname, spec in MODELS.items():
        cfg = make_config(spec)
        model = Qwen3VLForConditionalGeneration(cfg).to(torch.float32)
        randomize(model, spec["seed"])
        folder = OUT / mname
        model.to(spec["dtype"]).save_pretrained(folder)
        proc.save_pretrained(folder)
        # the reference runs on exactly the stored weights (bfloat16 ones upcast)
        model = Qwen3VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32,
                                                                attn_implementation="eager")
        model.eval()
        cases = []
        for cname, files in CASES.items():
            pv = torch.cat([pixels[f][0] for f in files])
            thw = torch.tensor([pixels[f][1] for f in files])
            with torch.no_grad():
                feats = model.get_image_features(pv, thw)
            embeds = torch.cat(list(feats.pooler_output))
            (folder / f"{cname}.embeds.f32").write_bytes(f32(embeds))
            ds = feats.deepstack_features
            for j, per_image in enumerate(ds):
                (folder / f"{cname}.deepstack{j}.f32").write_bytes(f32(torch.cat(list(per_image))))
            cases.append({"case": cname, "images": files, "grid_thw": thw.tolist(), "n_tokens": embeds.shape[0],
                          "out_hidden": embeds.shape[1], "n_deepstack": len(ds),
                          "embeds_absmax": float(embeds.abs().max())})
        models_doc.append({"model": mname, "dtype": str(spec["dtype"]).replace("torch.", ""), "seed": spec["seed"],
                           "tied": spec["tied"], "cases": cases})
    import transformers
    doc = {"versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
                        "numpy": np.__version__},
           "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "images": images_doc, "models": models_doc}
    (OUT / "cases.json").write_text(json.dumps(doc, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
