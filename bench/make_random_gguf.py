#!/usr/bin/env python3
"""make_random_gguf.py — a GGUF with the exact tensor shapes of a released Qwen3 size and random weights, for
speed measurements (speed does not depend on weight values). Quantized blocks get random quants and small valid
f16 scales. Usage: python3 bench/make_random_gguf.py OUT.gguf --size draft|0.6b|1.7b|4b|8b
                                     --type f16|q8_0|q4_0|q4_k_m|q5_k_m|q6_k
The K-quant mixes give each tensor the type llama-quantize gives it (output.weight Q6_K; attn_v and ffn_down Q6_K
in the first and last eighth of the layers and every third in between; the rest Q4_K or Q5_K).

--agree SEED makes one of a pair of models that agree: the embedding table and the (untied) output layer hold the
same random values in their first 256 columns for every size made with the same SEED (zeros beyond), and the final
norm is 1, so the next token is one fixed function of the current token plus whatever the layers add to the
residual stream; --layer-scale scales the blocks of attn_output and ffn_down (0: the layers add nothing). A
`--size draft --agree S --layer-scale 0` draft then predicts an `--agree S --layer-scale 0.1` target most of the time
while the target still streams every weight: a draft that agrees often, at real shapes (q8_0 and q4_0 only)."""
import argparse
import pathlib
import sys

import numpy as np

import gguf  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "gen"))
from qwen3_gguf import byte_to_unicode  # noqa: E402

SIZES = {  # layers, hidden, heads, kv heads, head_dim, ffn, tied
    "draft": (2, 256, 4, 2, 64, 768, True),  # a tiny draft with Qwen3's vocabulary size
    "0.6b": (28, 1024, 16, 8, 128, 3072, True),
    "1.7b": (28, 2048, 16, 8, 128, 6144, True),
    "4b": (36, 2560, 32, 8, 128, 9728, True),
    "8b": (36, 4096, 32, 8, 128, 12288, False),
}
VOCAB = 151936
Q = gguf.GGMLQuantizationType
# type: (ggml id, elements per block, bytes per block, byte offsets of the f16 scales in a block)
BLOCK = {"q8_0": (Q.Q8_0, 32, 34, [0]), "q4_0": (Q.Q4_0, 32, 18, [0]), "q4_K": (Q.Q4_K, 256, 144, [0, 2]),
         "q5_K": (Q.Q5_K, 256, 176, [0, 2]), "q6_K": (Q.Q6_K, 256, 210, [208])}
MIXES = {"q4_k_m": "q4_K", "q5_k_m": "q5_K", "q6_k": "q6_K"}


def tensor_type(qtype, name, layer, n_layers):
    """The stored type of one matrix: the file type, or for a K-quant mix llama-quantize's choice."""
    if qtype not in MIXES:
        return qtype
    base = MIXES[qtype]
    if qtype == "q6_k" or name == "output.weight":
        return "q6_K"
    more_bits = layer is not None and (layer < n_layers // 8 or layer >= 7 * n_layers // 8
                                       or (layer - n_layers // 8) % 3 == 2)
    if more_bits and (name.endswith("attn_v.weight") or name.endswith("ffn_down.weight")):
        return "q6_K"
    return base


AGREE_DIM = 256  # the columns an --agree pair shares: the width of --size draft


def random_matrix(rng, rows, cols, qtype, scale=1.0):
    """Random values of std ~0.02·scale (F16) or random quants with f16 block scales 0.001·scale."""
    if qtype == "f16":
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02 * scale).astype(np.float16), None
    t, bs, size, scales = BLOCK[qtype]
    blocks = rng.integers(0, 256, size=(rows, cols // bs, size), dtype=np.uint8)
    scale_bytes = np.full((rows, cols // bs), 0.001 * scale, dtype=np.float16).view(np.uint8).reshape(rows, cols // bs, 2)
    for off in scales:
        blocks[:, :, off:off + 2] = scale_bytes
    return blocks.reshape(rows, cols // bs * size), t


def agreeing_matrix(seed, rows, cols, qtype):
    """Values d·v, v random integers in [-8, 7] from seed, in the first AGREE_DIM columns, 0 beyond: exactly the
    same values whether stored as Q8_0 (q = v) or Q4_0 (q = v + 8)."""
    t, bs, size, _ = BLOCK[qtype]
    v = np.random.default_rng(seed).integers(-8, 8, size=(rows, AGREE_DIM // 32, 32), dtype=np.int16)
    blocks = np.zeros((rows, cols // bs, size), np.uint8)
    blocks[:, :AGREE_DIM // 32, 0:2] = np.frombuffer(np.float16(0.05).tobytes(), np.uint8)
    if qtype == "q8_0":
        blocks[:, :AGREE_DIM // 32, 2:] = v.astype(np.int8).view(np.uint8)
    else:
        q = (v + 8).astype(np.uint8)
        blocks[:, :AGREE_DIM // 32, 2:] = q[:, :, :16] | (q[:, :, 16:] << 4)
    return blocks.reshape(rows, cols // bs * size), t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--size", default="0.6b", choices=SIZES)
    ap.add_argument("--type", default="q8_0", choices=["f16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"])
    ap.add_argument("--agree", type=int, metavar="SEED", help="one of a pair that agrees (see above)")
    ap.add_argument("--layer-scale", type=float, default=1.0, help="scale of attn_output and ffn_down (1 = as others)")
    a = ap.parse_args()
    L, E, nh, nkv, hd, F, tied = SIZES[a.size]
    if a.agree is not None:
        if a.type not in ("q8_0", "q4_0"):
            sys.exit("make_random_gguf.py: --agree needs --type q8_0 or q4_0")
        tied = False
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(a.out, "qwen3")
    w.add_name(f"random-qwen3-{a.size}-{a.type}")
    for k, v in [("block_count", L), ("context_length", 40960), ("embedding_length", E),
                 ("feed_forward_length", F), ("attention.head_count", nh), ("attention.head_count_kv", nkv),
                 ("attention.key_length", hd), ("attention.value_length", hd)]:
        w.add_uint32(f"qwen3.{k}", v)
    w.add_float32("qwen3.rope.freq_base", 1e6)
    w.add_float32("qwen3.attention.layer_norm_rms_epsilon", 1e-6)
    # a byte-level vocabulary: 256 byte tokens, padding up to the real size
    table = byte_to_unicode()
    tokens = [table[b] for b in range(256)] + ["<|im_end|>", table[0x20] * 2] + [f"[PAD{i}]" for i in range(258, VOCAB)]
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "qwen2")
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.token_type", [1] * 256 + [3, 1] + [5] * (VOCAB - 258))
    w.add_array("tokenizer.ggml.merges", [f"{table[0x20]} {table[0x20]}"])
    w.add_uint32("tokenizer.ggml.eos_token_id", 256)

    def mat(name, rows, cols, layer=None):
        qtype = tensor_type(a.type, name, layer, L)
        if a.agree is not None and name in ("token_embd.weight", "output.weight"):
            arr, t = agreeing_matrix(a.agree + (name == "output.weight"), rows, cols, qtype)
        else:
            scaled = name.endswith("attn_output.weight") or name.endswith("ffn_down.weight")
            arr, t = random_matrix(rng, rows, cols, qtype, a.layer_scale if scaled else 1.0)
        if t is None:
            w.add_tensor(name, arr)
        else:
            w.add_tensor(name, arr, raw_dtype=t)  # byte shape (rows, blocks·size) → (rows, cols)

    def vec(name, n):
        values = (1 + 0.1 * rng.standard_normal(n)).astype(np.float32)
        if a.agree is not None and name == "output_norm.weight":
            values[:] = 1
        w.add_tensor(name, values)

    mat("token_embd.weight", VOCAB, E)
    vec("output_norm.weight", E)
    if not tied:
        mat("output.weight", VOCAB, E)
    for l in range(L):
        p = f"blk.{l}."
        vec(p + "attn_norm.weight", E)
        mat(p + "attn_q.weight", nh * hd, E, layer=l)
        mat(p + "attn_k.weight", nkv * hd, E, layer=l)
        mat(p + "attn_v.weight", nkv * hd, E, layer=l)
        vec(p + "attn_q_norm.weight", hd)
        vec(p + "attn_k_norm.weight", hd)
        mat(p + "attn_output.weight", E, nh * hd, layer=l)
        vec(p + "ffn_norm.weight", E)
        mat(p + "ffn_gate.weight", F, E, layer=l)
        mat(p + "ffn_up.weight", F, E, layer=l)
        mat(p + "ffn_down.weight", E, F, layer=l)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
