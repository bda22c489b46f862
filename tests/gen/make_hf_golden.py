#!/usr/bin/env python3
"""make_hf_golden.py — goldens for tandem.hf (python/tandem/hf.py, optimum-intel's OVModelFor* shape): what a
transformers processor / tokenizer hands to generate() and what transformers' own model.generate returns for it.
Writes tests/golden/python/hf/cases.json and, per VL case, <case>.pixels.f32 (pixel_values, float32 little-endian,
[patches, patch_dim]):
- vl cases on tests/golden/vision_chat/model (the tiny Qwen3-VL of make_vl_text_golden.py), with the processor that
  script builds (Qwen3VLProcessor over Qwen2VLImageProcessorPil, its pixel budget): one image, two images, and a batch
  of two prompts (one with an image, one without) padded on the left; input_ids, attention_mask, image_grid_thw and
  model.generate(**inputs, do_sample=False, max_new_tokens=N) (prompt + new ids, as transformers returns them);
- llm cases on tests/golden/models/tied_gqa2: a batch of two raw prompts tokenized with padding on the left and
  generate's output (a row that ends early is padded with pad_token_id), and one row alone.

    /tmp/vl-venv/bin/python tests/gen/make_hf_golden.py     # from the repo root; deterministic
(torch is not a dependency of the repo; the venv is make_vl_golden.py's.)
"""
import json
import pathlib

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import (AutoModelForCausalLM, PreTrainedTokenizerFast, ProcessorMixin,
                          Qwen3VLForConditionalGeneration, Qwen3VLProcessor)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

import make_vl_text_golden as vl

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/golden/python/hf"
VL_MODEL = ROOT / "tests/golden/vision_chat/model"
LLM_MODEL = ROOT / "tests/golden/models/tied_gqa2"
N_NEW = 6
LLM_PROMPTS = ["hello world", "the cat sat on the mat and"]


def vl_processor():
    tok = PreTrainedTokenizerFast(tokenizer_file=str(VL_MODEL / "tokenizer.json"), eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", model_max_length=512, padding_side="left")
    improc = Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3,
                                      image_std=[0.5] * 3,
                                      size={"shortest_edge": vl.MIN_PIXELS, "longest_edge": vl.MAX_PIXELS})
    ProcessorMixin.check_argument_for_proper_class = lambda self, name, arg: None  # no torchvision: no video class
    return Qwen3VLProcessor(image_processor=improc, tokenizer=tok, video_processor=Qwen3VLVideoProcessor(),
                            chat_template=vl.TEMPLATE)


def message(n_images, text):
    return [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}]


def main():
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    proc = vl_processor()
    model = Qwen3VLForConditionalGeneration.from_pretrained(VL_MODEL, dtype=torch.float32,
                                                            attn_implementation="eager").eval()
    checker = Image.open(ROOT / "tests/golden/vision_chat/checker_64x96.png").convert("RGB")
    large = Image.open(ROOT / "tests/golden/images/large_150x100.png").convert("RGB")
    vl_cases = {
        "one_image": ([message(1, "Describe this image.")], [checker]),
        "two_images": ([message(2, "What differs between them?")], [checker, large]),
        "batch": ([message(1, "Describe this image."), message(0, "Hello, who are you?")], [checker]),
    }
    cases = []
    for name, (messages, images) in vl_cases.items():
        texts = [proc.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
        inputs = proc(text=texts, images=images, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**inputs, do_sample=False, max_new_tokens=N_NEW, pad_token_id=proc.tokenizer.pad_token_id)
        pixels = inputs["pixel_values"].to(torch.float32).numpy()
        (OUT / f"{name}.pixels.f32").write_bytes(np.ascontiguousarray(pixels).astype("<f4").tobytes())
        cases.append({"case": name, "model": "vision_chat/model", "texts": texts,
                      "input_ids": inputs["input_ids"].tolist(), "attention_mask": inputs["attention_mask"].tolist(),
                      "image_grid_thw": inputs["image_grid_thw"].tolist(), "pixels": f"{name}.pixels.f32",
                      "pixels_shape": list(pixels.shape), "output": out.tolist()})
    tok = PreTrainedTokenizerFast(tokenizer_file=str(LLM_MODEL / "tokenizer.json"), pad_token="<|endoftext|>",
                                  eos_token="<|im_end|>", padding_side="left")
    llm = AutoModelForCausalLM.from_pretrained(LLM_MODEL, dtype=torch.float32, attn_implementation="eager").eval()
    for name, prompts in (("llm_batch", LLM_PROMPTS), ("llm_one", LLM_PROMPTS[:1])):
        inputs = tok(prompts, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = llm.generate(**inputs, do_sample=False, max_new_tokens=N_NEW + 4)
        cases.append({"case": name, "model": "models/tied_gqa2", "texts": prompts,
                      "input_ids": inputs["input_ids"].tolist(), "attention_mask": inputs["attention_mask"].tolist(),
                      "output": out.tolist(), "max_new_tokens": N_NEW + 4})
    for c in cases:
        c.setdefault("max_new_tokens", N_NEW)
    (OUT / "cases.json").write_text(json.dumps({
        "versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__},
        "cases": cases}, indent=1) + "\n")
    for c in cases:
        print(c["case"], [len(r) for r in c["input_ids"]], [r[len(c["input_ids"][0]):] for r in c["output"]])


if __name__ == "__main__":
    main()
