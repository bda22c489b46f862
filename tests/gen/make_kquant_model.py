"""make_kquant_model.py — writes a tiny random-weight Qwen3 checkpoint folder whose matrix rows are whole
256-value K-quant super-blocks (hidden 256, ffn 512, head_dim 64), for the converter's quantization tests.

Needs numpy and safetensors only (no torch), so tests build it on the fly into a temporary folder:
    python3 tests/gen/make_kquant_model.py OUT_DIR [--seed N]
The tokenizer files are the tiny golden ones (tests/golden/models/tied_gqa2). Weights are drawn with numpy's
default_rng(seed): matrices N(0, (0.5 / sqrt(fan_in))^2) (the output head 4x that), embeddings N(0, 1), norm
weights N(1, 0.05^2): small layer updates on a large residual stream and a sharp output head give a confident
random model (reference perplexity ~3200 on the tests' text, far from uniform), so quantization error shows
in the KL divergence and greedy paths are not all near-ties.
"""
import argparse
import json
import os
import shutil

import numpy as np
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER_DIR = os.path.join(HERE, "..", "golden", "models", "tied_gqa2")

CONFIG = {
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_act": "silu",
    "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 448, "max_position_embeddings": 512,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": False, "attention_bias": False,
    "use_sliding_window": False, "bos_token_id": 400, "eos_token_id": 402, "torch_dtype": "float32",
}
GAIN = 0.5


def make_state(seed):
    rng = np.random.default_rng(seed)
    c = CONFIG
    E, F, V, hd = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols)) * (GAIN / np.sqrt(cols))).astype(np.float32)

    def norm(n):
        return (1.0 + 0.05 * rng.standard_normal(n)).astype(np.float32)

    st = {"model.embed_tokens.weight": rng.standard_normal((V, E)).astype(np.float32)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        st[p + "input_layernorm.weight"] = norm(E)
        st[p + "self_attn.q_proj.weight"] = mat(q, E)
        st[p + "self_attn.k_proj.weight"] = mat(kv, E)
        st[p + "self_attn.v_proj.weight"] = mat(kv, E)
        st[p + "self_attn.q_norm.weight"] = norm(hd)
        st[p + "self_attn.k_norm.weight"] = norm(hd)
        st[p + "self_attn.o_proj.weight"] = mat(E, q)
        st[p + "post_attention_layernorm.weight"] = norm(E)
        st[p + "mlp.gate_proj.weight"] = mat(F, E)
        st[p + "mlp.up_proj.weight"] = mat(F, E)
        st[p + "mlp.down_proj.weight"] = mat(E, F)
    st["model.norm.weight"] = norm(E)
    st["lm_head.weight"] = mat(V, E) * np.float32(4.0)  # sharpens the output distribution
    return st


def write(out, seed=7):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 400, "eos_token_id": [402, 400], "do_sample": False}, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKENIZER_DIR, name), os.path.join(out, name))
    save_file(make_state(seed), os.path.join(out, "model.safetensors"), metadata={"format": "pt"})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    write(a.out, a.seed)
