#!/usr/bin/env python3
"""make_vl_text_golden.py — goldens for tandem's Qwen3-VL text model and image prompts (src/model, src/runtime),
made with transformers. Writes tests/golden/vision_chat/:
- model/: a tiny random-weight Qwen3VLForConditionalGeneration saved as a Hugging Face folder (config.json,
  model.safetensors, preprocessor_config.json, tokenizer files, a chat template; untied, as 8B), with the 448-token tokenizer of
  tests/golden/models/bf16 (Qwen3's added tokens at 400-425: <|vision_start|> 409, <|vision_end|> 410,
  <|image_pad|> 412 set as the config's token ids). Text: 3 layers, hidden 32, head_dim 16, mrope_section [4, 2, 2]
  (interleaved, as in Qwen3-VL); vision: depth 3, DeepStack taps [0, 2] (2 feature sets, so layer 2 gets none).
  The chat template is a short one written here in Qwen3-VL's form (an image part renders as
  <|vision_start|><|image_pad|><|vision_end|>, then the text; the generation prompt opens the assistant turn).
- checker_64x96.png: an image whose sides are multiples of 32 within the pixel budget (no resampling).
- cases.json: per case the messages' parts, what transformers' Qwen3VLProcessor builds (input_ids with each
  <|image_pad|> expanded, image_grid_thw), position ids from the model's get_rope_index (3 x n), the greedy tokens
  of model.generate, and <case>.logits.f32: the full model forward's logits ([n, vocab] float32 little-endian)
  with pixel_values. Cases: one image without resampling, two images (the second resized: large_150x100.png) with
  text after them, and text only through the VL model.
Preprocessing: Qwen2VLImageProcessorPil (Pillow's bicubic, as src/vision/image.c) with Qwen3-VL's settings and a
small pixel budget (1024-6144 pixels). Weights as make_vl_golden.py draws them, fixed seeds; eager attention.

    /tmp/vl-venv/bin/python tests/gen/make_vl_text_golden.py     # from the repo root (venv: make_vl_golden.py)
"""
import json
import pathlib
import shutil

import numpy as np
import torch
from PIL import Image
from transformers import ProcessorMixin, PreTrainedTokenizerFast, Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from make_vl_golden import randomize  # the same weight recipe as the vision tower's goldens
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "tests/golden/models/bf16"
IMAGES = ROOT / "tests/golden/images"
OUT = ROOT / "tests/golden/vision_chat"
MIN_PIXELS, MAX_PIXELS = 1024, 6144
SEED = 3201
N_GENERATE = 6

TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message.role + '\\n' -}}"
    "{%- if message.content is string -%}{{- message.content -}}"
    "{%- else -%}{%- for part in message.content -%}"
    "{%- if part.type == 'image' or 'image' in part or 'image_url' in part -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part.type == 'text' -%}{{- part.text -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# case -> (image files, text); "checker_64x96.png" is written by this script
CASES = {
    "one_image": (["checker_64x96.png"], "Describe this image."),
    "two_images": (["checker_64x96.png", "large_150x100.png"], "What differs between them?"),
    "text_only": ([], "Hello, who are you?"),
}


def make_checker():
    y, x = np.mgrid[0:64, 0:96]
    rgb = np.stack([(x * 5 + y * 3) % 256, ((x // 8 + y // 8) % 2) * 200 + 20, (y * 7) % 256], -1).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(OUT / "checker_64x96.png", optimize=False, compress_level=9)


def token_id(tok, s):
    i = tok.convert_tokens_to_ids(s)
    assert isinstance(i, int) and i >= 400, s
    return i


def make_config(tok):
    text = dict(vocab_size=448, num_hidden_layers=3, max_position_embeddings=512, rms_norm_eps=1e-6,
                tie_word_embeddings=False, hidden_size=32, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                intermediate_size=64, rope_parameters={"rope_type": "default", "rope_theta": 5e6,
                                                       "mrope_section": [4, 2, 2], "mrope_interleaved": True})
    vision = dict(patch_size=16, temporal_patch_size=2, spatial_merge_size=2, in_channels=3,
                  hidden_act="gelu_pytorch_tanh", out_hidden_size=32, depth=3, hidden_size=32, num_heads=2,
                  intermediate_size=64, num_position_embeddings=64, deepstack_visual_indexes=[0, 2])
    cfg = Qwen3VLConfig(text_config=text, vision_config=vision,
                        image_token_id=token_id(tok, "<|image_pad|>"), video_token_id=token_id(tok, "<|video_pad|>"),
                        vision_start_token_id=token_id(tok, "<|vision_start|>"),
                        vision_end_token_id=token_id(tok, "<|vision_end|>"), tie_word_embeddings=False)
    cfg._attn_implementation = "eager"
    cfg.vision_config._attn_implementation = "eager"
    cfg.text_config._attn_implementation = "eager"
    return cfg


def main():
    torch.manual_seed(0)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    make_checker()
    folder = OUT / "model"
    tok = PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER / "tokenizer.json"), eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", model_max_length=512)
    improc = Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3,
                                      image_std=[0.5] * 3,
                                      size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS})
    # without torchvision transformers cannot look up the video processor's class (nothing here uses videos)
    ProcessorMixin.check_argument_for_proper_class = lambda self, name, arg: None
    proc = Qwen3VLProcessor(image_processor=improc, tokenizer=tok, video_processor=Qwen3VLVideoProcessor(),
                            chat_template=TEMPLATE)
    cfg = make_config(tok)
    model = Qwen3VLForConditionalGeneration(cfg).to(torch.float32)
    randomize(model, SEED, embed_fan_in=4)
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    improc.save_pretrained(folder)  # preprocessor_config.json, as Qwen3-VL's hub folders have it
    model = Qwen3VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    cases = []
    for cname, (files, text) in CASES.items():
        parts = [{"type": "image"} for _ in files] + [{"type": "text", "text": text}]
        messages = [{"role": "user", "content": parts}]
        rendered = proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        images = [Image.open(OUT / f if f.startswith("checker") else IMAGES / f).convert("RGB") for f in files]
        inputs = proc(text=[rendered], images=images or None, return_tensors="pt")
        ids = inputs["input_ids"]
        with torch.no_grad():
            out = model(**inputs)
            pos, delta = model.model.get_rope_index(ids, inputs["mm_token_type_ids"], inputs.get("image_grid_thw"),
                                                    None, inputs["attention_mask"])
            gen = model.generate(**inputs, do_sample=False, max_new_tokens=N_GENERATE)
        logits = out.logits[0].to(torch.float32).numpy()
        (OUT / f"{cname}.logits.f32").write_bytes(np.ascontiguousarray(logits).astype("<f4").tobytes())
        thw = inputs["image_grid_thw"].tolist() if "image_grid_thw" in inputs else []
        cases.append({"case": cname, "images": files, "text": text, "rendered": rendered,
                      "input_ids": ids[0].tolist(), "image_grid_thw": thw, "positions": pos[:, 0, :].tolist(),
                      "rope_delta": int(delta.flatten()[0]), "greedy": gen[0, ids.shape[1]:].tolist(),
                      "logits_absmax": float(np.abs(logits).max())})
    import transformers
    doc = {"versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
                        "numpy": np.__version__},
           "seed": SEED, "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "vocab_size": 448,
           "image_token_id": cfg.image_token_id, "vision_start_token_id": cfg.vision_start_token_id,
           "vision_end_token_id": cfg.vision_end_token_id, "cases": cases}
    (OUT / "cases.json").write_text(json.dumps(doc, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
