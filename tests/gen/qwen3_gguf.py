"""qwen3_gguf.py — GGUF metadata, tensor naming and tokenizer keys for Qwen3 files written by the generators.

Needs only the `gguf` package and numpy (no torch). Used by make_golden.py and make_sparse_gguf.py.
"""
import json

import gguf

# GGUF token types (tokenizer.ggml.token_type)
TT_NORMAL, TT_CONTROL, TT_USER_DEFINED, TT_UNUSED = 1, 3, 4, 5

# general.file_type labels (LlamaFileType)
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "bf16": 32}
QTYPE = {
    "f32": gguf.GGMLQuantizationType.F32,
    "f16": gguf.GGMLQuantizationType.F16,
    "bf16": gguf.GGMLQuantizationType.BF16,
    "q8_0": gguf.GGMLQuantizationType.Q8_0,
    "q4_0": gguf.GGMLQuantizationType.Q4_0,
}

# (GGUF suffix, HF suffix) per block, in the order written
BLOCK_TENSORS = [
    ("attn_norm.weight", "input_layernorm.weight"),
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_q_norm.weight", "self_attn.q_norm.weight"),
    ("attn_k_norm.weight", "self_attn.k_norm.weight"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
]


def byte_to_unicode():
    """GPT-2's bytes_to_unicode: byte -> the character a byte-level BPE vocabulary writes for it (printable
    Latin-1 bytes stand for themselves, the other 68 map to U+0100… in byte order)."""
    direct = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    shifted = [b for b in range(256) if b not in direct]
    table = {b: chr(b) for b in direct}
    table.update({b: chr(0x100 + i) for i, b in enumerate(shifted)})
    return table


def tensor_layout(hp):
    """[(gguf_name, hf_name, pytorch_shape)] for a Qwen3 model; hp keys as in hparams() below."""
    E, F, V, hd = hp["hidden_size"], hp["intermediate_size"], hp["vocab_size"], hp["head_dim"]
    q, kv = hp["num_attention_heads"] * hd, hp["num_key_value_heads"] * hd
    shapes = {
        "attn_norm.weight": (E,), "attn_q.weight": (q, E), "attn_k.weight": (kv, E), "attn_v.weight": (kv, E),
        "attn_q_norm.weight": (hd,), "attn_k_norm.weight": (hd,), "attn_output.weight": (E, q),
        "ffn_norm.weight": (E,), "ffn_gate.weight": (F, E), "ffn_up.weight": (F, E), "ffn_down.weight": (E, F),
    }
    out = [("token_embd.weight", "model.embed_tokens.weight", (V, E))]
    for i in range(hp["num_hidden_layers"]):
        for g, h in BLOCK_TENSORS:
            out.append((f"blk.{i}.{g}", f"model.layers.{i}.{h}", shapes[g]))
    out.append(("output_norm.weight", "model.norm.weight", (E,)))
    if not hp["tie_word_embeddings"]:
        out.append(("output.weight", "lm_head.weight", (V, E)))
    return out


def add_model_metadata(w, hp, name, ftype):
    """general.* and qwen3.* keys with the types llama.cpp expects (u32 counts, f32 floats)."""
    w.add_type("model")
    w.add_name(name)
    w.add_file_type(FILE_TYPE[ftype])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(hp["max_position_embeddings"])
    w.add_embedding_length(hp["hidden_size"])
    w.add_block_count(hp["num_hidden_layers"])
    w.add_feed_forward_length(hp["intermediate_size"])
    w.add_head_count(hp["num_attention_heads"])
    w.add_head_count_kv(hp["num_key_value_heads"])
    w.add_key_length(hp["head_dim"])
    w.add_value_length(hp["head_dim"])
    w.add_rope_freq_base(float(hp["rope_theta"]))
    w.add_layer_norm_rms_eps(float(hp["rms_norm_eps"]))


def gguf_vocab(tokenizer_json, vocab_size):
    """(tokens, token_types, merges, ids) from a tokenizer.json dict, padded with [PAD{id}] to vocab_size."""
    model = tokenizer_json["model"]
    by_id = {i: t for t, i in model["vocab"].items()}
    types = {i: TT_NORMAL for i in by_id}
    ids = {}
    for a in tokenizer_json["added_tokens"]:
        c = a["content"]
        by_id[a["id"]] = c
        looks_special = c.startswith("<|") and c.endswith("|>")  # llama.cpp convert's does_token_look_special
        types[a["id"]] = TT_CONTROL if (a["special"] or looks_special) else TT_USER_DEFINED
        ids[c] = a["id"]
    if max(by_id) >= vocab_size:
        raise ValueError(f"tokenizer has id {max(by_id)} >= vocab_size {vocab_size}")
    tokens, token_types = [], []
    for i in range(vocab_size):
        if i in by_id:
            tokens.append(by_id[i])
            token_types.append(types[i])
        else:
            tokens.append(f"[PAD{i}]")
            token_types.append(TT_UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    for m in merges:
        if m.count(" ") != 1:
            raise ValueError(f"merge {m!r} is not 'left right'")
    return tokens, token_types, merges, ids


def add_tokenizer_metadata(w, tokenizer_json, tokenizer_config, vocab_size):
    tokens, token_types, merges, ids = gguf_vocab(tokenizer_json, vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    w.add_eos_token_id(ids[tokenizer_config["eos_token"]])
    w.add_pad_token_id(ids[tokenizer_config["pad_token"]])
    w.add_bos_token_id(ids["<|endoftext|>"])  # as Qwen3 GGUFs: from config.json bos_token_id, never prepended
    w.add_add_bos_token(False)
    if tokenizer_config.get("chat_template"):
        w.add_chat_template(tokenizer_config["chat_template"])


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
