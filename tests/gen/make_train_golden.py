#!/usr/bin/env python3
"""make_train_golden.py — one full-parameter training step of tiny random Qwen3 models in PyTorch, the reference
for tandem's training pass (tests/unit/test_train_golden.c). Committed output; CI has no torch/transformers.

    python3 tests/gen/make_train_golden.py      # from the repo root; rewrites tests/golden/train/**

Needs torch, transformers (v5), safetensors and numpy. Per model folder tests/golden/train/<name>/:
  * config.json + model.safetensors: the initial weights (HF names, float32), loadable by tandem's loaders;
  * step.safetensors: inputs int32[B, T], targets int32[B, T] (next tokens, -1 = ignored), loss float32[1]
    (Qwen3ForCausalLM(labels=...).loss: mean cross-entropy over non-ignored targets), grad_norm float32[1]
    (before clipping), lr float32[1], grad.<hf name> (gradients before clipping) and updated.<hf name> (weights
    after clip_grad_norm_ and one torch.optim.AdamW step; no weight decay on norm vectors);
  * train.json: the hyperparameters of that step (schedule, AdamW, clipping).
"""
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import qwen3_gguf  # noqa: E402

REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(REPO, "tests", "golden", "train")

VOCAB = 256
B, T = 2, 16
# The schedule: the step is number STEP (0-based) of TOTAL, after WARMUP warm-up steps, on a fresh optimizer.
HP = dict(lr_max=3e-3, lr_min=3e-4, warmup=2, total=10, step=3, beta1=0.9, beta2=0.95, eps=1e-8,
          weight_decay=0.1, clip=0.5)
MODELS = {
    # head_dim 16 != hidden/heads = 12; GQA 2
    "untied": dict(config=dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                               head_dim=16, intermediate_size=96, tie_word_embeddings=False, rope_theta=1e4,
                               rms_norm_eps=1e-6), seed=11),
    # GQA 4, tied lm_head (its gradient lands on the embedding)
    "tied": dict(config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                             head_dim=16, intermediate_size=64, tie_word_embeddings=True, rope_theta=1e6,
                             rms_norm_eps=1e-6), seed=12),
}


def lr_schedule(step, warmup, total, lr_max, lr_min):
    """Linear warm-up to lr_max over `warmup` steps, then cosine to lr_min at `total` (as train_lr_schedule)."""
    if step < warmup:
        return lr_max * (step + 1) / warmup
    if step >= total:
        return lr_min
    progress = (step - warmup) / max(1, total - warmup)
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * progress))


def make(name, spec):
    import torch
    from safetensors.numpy import save_file
    from transformers import Qwen3Config, Qwen3ForCausalLM

    hp = dict(spec["config"], vocab_size=VOCAB, max_position_embeddings=128)
    kw = {k: v for k, v in hp.items() if k != "rope_theta"}
    cfg = Qwen3Config(rope_parameters={"rope_type": "default", "rope_theta": float(hp["rope_theta"])}, **kw)
    model = Qwen3ForCausalLM._from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    g = torch.Generator().manual_seed(spec["seed"])
    layout = qwen3_gguf.tensor_layout(hp)
    state = {}
    for gname, hname, shape in layout:
        if len(shape) == 1:
            state[hname] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[hname] = (0.5 if gname == "token_embd.weight" else 0.15) * torch.randn(shape, generator=g)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k == "lm_head.weight" for k in missing), (missing, unexpected)
    model.train()

    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    cfg.save_pretrained(folder)
    save_file({h: state[h].numpy().copy() for _, h, _ in layout}, os.path.join(folder, "model.safetensors"))

    ids = torch.randint(0, VOCAB, (B, T), generator=g)
    labels = ids.clone()
    labels[0, 6] = -100  # one ignored target: position 5 of sequence 0
    out = model(input_ids=ids, labels=labels)
    out.loss.backward()
    params = dict(model.named_parameters())
    grads = {h: params[h].grad.detach().clone() for _, h, _ in layout}
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), HP["clip"])
    lr = lr_schedule(HP["step"], HP["warmup"], HP["total"], HP["lr_max"], HP["lr_min"])
    decay = [p for p in model.parameters() if p.ndim == 2]
    no_decay = [p for p in model.parameters() if p.ndim == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": HP["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"], foreach=False)
    opt.step()

    targets = torch.full((B, T), -1, dtype=torch.int32)
    targets[:, :-1] = labels[:, 1:].to(torch.int32)
    targets[targets == -100] = -1
    ref = {"inputs": ids.to(torch.int32).numpy(), "targets": targets.numpy(),
           "loss": np.array([out.loss.item()], np.float32), "grad_norm": np.array([grad_norm.item()], np.float32),
           "lr": np.array([lr], np.float32)}
    for _, h, _ in layout:
        ref["grad." + h] = grads[h].numpy()
        ref["updated." + h] = params[h].detach().numpy().copy()
    save_file({k: np.ascontiguousarray(v) for k, v in ref.items()}, os.path.join(folder, "step.safetensors"))
    with open(os.path.join(folder, "train.json"), "w") as f:
        json.dump(dict(HP, batch=B, seq=T, seed=spec["seed"]), f, indent=2)
        f.write("\n")
    print(f"{name}: loss {out.loss.item():.6f}, grad norm {grad_norm.item():.4f}, lr {lr:.6g}")


def main():
    import torch
    import transformers
    torch.manual_seed(0)
    for name, spec in MODELS.items():
        make(name, spec)
    with open(os.path.join(OUT, "VERSIONS.json"), "w") as f:
        json.dump({"generator": "tests/gen/make_train_golden.py",
                   "versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
                                "numpy": np.__version__}}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
