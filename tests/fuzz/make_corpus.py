#!/usr/bin/env python3
"""make_corpus.py — writes the seed corpus of every fuzz target into tests/fuzz/corpus/<target>/.

Seeds are small on purpose (libFuzzer mutates small inputs much faster): tiny Qwen3 GGUFs with a ~300-token
byte-level tokenizer, the golden files that are already small, hand-made safetensors / JSON variants, and
texts for the tokenizer. Deterministic (fixed seeds); needs numpy, gguf and safetensors (scripts/setup.sh).
Run from anywhere:  python3 tests/fuzz/make_corpus.py   (rewrites tests/fuzz/corpus/, keeps regression/)
"""
import hashlib
import json
import os
import shutil
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GOLDEN = os.path.join(ROOT, "tests", "golden")
TIED = os.path.join(GOLDEN, "models", "tied_gqa2")
CORPUS = os.path.join(HERE, "corpus")
SEP = b"\n#--8<--#\n"  # fuzz_tokenizer_json.c's separator between tokenizer.json, tokenizer_config.json, ...

sys.path.insert(0, os.path.join(ROOT, "tests", "gen"))
import qwen3_gguf  # noqa: E402


def out(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


# ---------------------------------------------------------------- a mini byte-level BPE tokenizer

def mini_tokenizer(normalizer=True, merges_as_pairs=False, extra_added=()):
    """tokenizer.json dict: 256 byte tokens, a few merges, Qwen's special tokens (ids after the vocab)."""
    b2u = qwen3_gguf.byte_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    words = ["the", " the", "in", " in", "er", "he", "ll", "'ll", " a", "Hello", " world", "ö", "日本", "12"]
    merges = []
    for w in words:
        s = "".join(b2u[b] for b in w.encode("utf-8"))
        cur = s[0]
        for ch in s[1:]:
            nxt = cur + ch
            if nxt not in vocab:
                vocab[nxt] = len(vocab)
                merges.append([cur, ch] if merges_as_pairs else f"{cur} {ch}")
            cur = nxt
    added = []
    for content in ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", *extra_added]:
        added.append({"id": len(vocab) + len(added), "content": content, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": content.startswith("<|")})
    split = {"type": "Split", "pattern": {"Regex": qwen3_gguf_pattern()}, "behavior": "Isolated", "invert": False}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"} if normalizer else None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            split, {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def qwen3_gguf_pattern():
    tok = json.loads(read(os.path.join(TIED, "tokenizer.json")))
    return tok["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]


MINI_CONFIG = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
               "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                                "{% endfor %}"}


def n_ids(tok):
    return max([*tok["model"]["vocab"].values(), *(a["id"] for a in tok["added_tokens"])]) + 1


# ---------------------------------------------------------------- tiny Qwen3 GGUFs

def tiny_gguf(path, *, layers=1, dim=32, heads=2, kv_heads=1, head_dim=16, ffn=32, tied=True, ftype="q4_0",
              tok=None, extra_vocab=0, seed=0, tokenizer=True):
    import gguf
    from gguf.quants import quantize
    tok = tok or mini_tokenizer()
    vocab_size = n_ids(tok) + extra_vocab
    hp = {"hidden_size": dim, "intermediate_size": ffn, "vocab_size": vocab_size, "head_dim": head_dim,
          "num_attention_heads": heads, "num_key_value_heads": kv_heads, "num_hidden_layers": layers,
          "tie_word_embeddings": tied, "max_position_embeddings": 64, "rope_theta": 1e6, "rms_norm_eps": 1e-6}
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, "qwen3")
    qwen3_gguf.add_model_metadata(w, hp, f"fuzz-tiny-{ftype}", ftype)
    if tokenizer:
        qwen3_gguf.add_tokenizer_metadata(w, tok, MINI_CONFIG, vocab_size)
    qt = qwen3_gguf.QTYPE[ftype]
    for gname, _hname, shape in qwen3_gguf.tensor_layout(hp):
        a = (rng.standard_normal(shape) * (1.0 if len(shape) == 1 else 0.05)).astype(np.float32)
        if len(shape) == 1:
            a = (1.0 + 0.1 * a).astype(np.float32)
            w.add_tensor(gname, a)
        elif ftype == "f32":
            w.add_tensor(gname, a)
        elif ftype == "f16":
            w.add_tensor(gname, quantize(a, qt))
        else:
            w.add_tensor(gname, quantize(a, qt), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_seeds(tmp):
    paths = {}
    specs = {
        "tiny-q4_0-tied.gguf": dict(ftype="q4_0"),
        "tiny-q8_0-untied-2layers.gguf": dict(ftype="q8_0", tied=False, layers=2, heads=4, kv_heads=2, head_dim=8,
                                              seed=1),
        "tiny-f16-gqa1.gguf": dict(ftype="f16", dim=16, heads=2, kv_heads=2, head_dim=8, ffn=16, seed=2),
        "tiny-bf16.gguf": dict(ftype="bf16", dim=16, heads=1, kv_heads=1, head_dim=16, ffn=16, seed=3),
        "tiny-f32-headdim-ne-dim.gguf": dict(ftype="f32", dim=16, heads=2, kv_heads=1, head_dim=32, ffn=16, seed=4,
                                             extra_vocab=3),
    }
    for name, kw in specs.items():
        p = os.path.join(tmp, name)
        tiny_gguf(p, **kw)
        paths[name] = p
    p = os.path.join(tmp, "no-tokenizer-q4_0.gguf")
    tiny_gguf(p, ftype="q4_0", tokenizer=False, seed=5)
    paths["no-tokenizer-q4_0.gguf"] = p
    return paths


def kquant_gguf(path):
    """A 1-layer model with dim 256 whose matrices use the other runnable types (Q2_K…Q6_K, Q4_1, Q5_0, Q5_1,
    IQ4_NL); block bytes are random, with every other byte kept small so that f16 scales stay finite."""
    import gguf
    T = gguf.GGMLQuantizationType
    tok = mini_tokenizer()
    V = n_ids(tok)
    hp = {"hidden_size": 256, "intermediate_size": 32, "vocab_size": V, "head_dim": 32, "num_attention_heads": 1,
          "num_key_value_heads": 1, "num_hidden_layers": 1, "tie_word_embeddings": True,
          "max_position_embeddings": 64, "rope_theta": 1e6, "rms_norm_eps": 1e-6}
    types = {"token_embd.weight": T.Q2_K, "blk.0.attn_q.weight": T.Q4_K, "blk.0.attn_k.weight": T.Q5_K,
             "blk.0.attn_v.weight": T.Q5_1, "blk.0.attn_output.weight": T.Q5_0, "blk.0.ffn_gate.weight": T.Q3_K,
             "blk.0.ffn_up.weight": T.Q6_K, "blk.0.ffn_down.weight": T.IQ4_NL}
    rng = np.random.default_rng(12)
    w = gguf.GGUFWriter(path, "qwen3")
    qwen3_gguf.add_model_metadata(w, hp, "fuzz-tiny-kquants", "q4_0")
    qwen3_gguf.add_tokenizer_metadata(w, tok, MINI_CONFIG, V)
    for gname, _hname, shape in qwen3_gguf.tensor_layout(hp):
        if len(shape) == 1:
            w.add_tensor(gname, (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32))
            continue
        qt = types[gname]
        block, size = gguf.GGML_QUANT_SIZES[qt]
        raw = rng.integers(0, 256, size=(shape[0], shape[1] // block * size), dtype=np.uint8)
        raw[:, 1::2] &= 0x3B
        w.add_tensor(gname, raw, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tokenizer_only_gguf(path):
    import gguf
    tok = mini_tokenizer()
    w = gguf.GGUFWriter(path, "qwen3")
    qwen3_gguf.add_tokenizer_metadata(w, tok, MINI_CONFIG, n_ids(tok))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def mmproj_gguf(path, *, hidden=8, heads=2, ffn=16, depth=2, patch=4, merge=2, side=4, out_dim=8, deepstack=(0,),
                qtype="f16", flags=True, seed=0):
    """A tiny vision projector in llama.cpp's mmproj layout (clip.*, v.*, mm.*; reference §6.11)."""
    import gguf
    from gguf.quants import quantize
    T = gguf.GGMLQuantizationType
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, "clip")
    w.add_type("mmproj")
    w.add_string("clip.projector_type", "qwen3vl_merger")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.use_gelu", True)
    for key, v in [("projection_dim", out_dim), ("image_size", side * patch), ("patch_size", patch),
                   ("embedding_length", hidden), ("feed_forward_length", ffn), ("block_count", depth),
                   ("attention.head_count", heads), ("spatial_merge_size", merge)]:
        w.add_uint32(f"clip.vision.{key}", v)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    if flags:
        w.add_array("clip.vision.is_deepstack_layers", [i in deepstack for i in range(depth)])

    def mat(name, rows, cols, kind=None):
        a = (rng.standard_normal((rows, cols)) * 0.2).astype(np.float32)
        kind = kind or qtype
        if kind == "q8_0" and cols % 32 == 0:
            w.add_tensor(name, quantize(a, T.Q8_0), raw_dtype=T.Q8_0)
        else:
            w.add_tensor(name, a.astype(np.float32 if kind == "f32" else np.float16))

    def vec(name, n, one=False):
        w.add_tensor(name, (np.ones(n) if one else rng.standard_normal(n) * 0.1).astype(np.float32))

    for frame in ["", ".1"]:
        w.add_tensor("v.patch_embd.weight" + frame,
                     (rng.standard_normal((hidden, 3, patch, patch)) * 0.1).astype(np.float16))
    vec("v.patch_embd.bias", hidden)
    w.add_tensor("v.position_embd.weight", (rng.standard_normal((side * side, hidden)) * 0.1).astype(np.float32))
    for b in range(depth):
        p = f"v.blk.{b}."
        vec(p + "ln1.weight", hidden, True), vec(p + "ln1.bias", hidden)
        mat(p + "attn_qkv.weight", 3 * hidden, hidden), vec(p + "attn_qkv.bias", 3 * hidden)
        mat(p + "attn_out.weight", hidden, hidden), vec(p + "attn_out.bias", hidden)
        vec(p + "ln2.weight", hidden, True), vec(p + "ln2.bias", hidden)
        mat(p + "ffn_up.weight", ffn, hidden), vec(p + "ffn_up.bias", ffn)
        mat(p + "ffn_down.weight", hidden, ffn), vec(p + "ffn_down.bias", hidden)
    wide = merge * merge * hidden
    vec("v.post_ln.weight", hidden, True), vec("v.post_ln.bias", hidden)
    mat("mm.0.weight", wide, wide), vec("mm.0.bias", wide)
    mat("mm.2.weight", out_dim, wide), vec("mm.2.bias", out_dim)
    for b in deepstack:
        p = f"v.deepstack.{b}."
        vec(p + "norm.weight", wide, True), vec(p + "norm.bias", wide)
        mat(p + "fc1.weight", wide, wide), vec(p + "fc1.bias", wide)
        mat(p + "fc2.weight", out_dim, wide), vec(p + "fc2.bias", out_dim)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def hand_gguf(version=3, kvs=(), tensors=(), alignment=32):
    """A GGUF built byte by byte: kvs [(key, type_id, payload_bytes)], tensors [(name, ne, type, data)]."""
    def s(x):
        x = x.encode() if isinstance(x, str) else x
        return struct.pack("<Q", len(x)) + x
    b = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, t, payload in kvs:
        b += s(key) + struct.pack("<I", t) + payload
    off = 0
    infos, datas = b"", []
    for name, ne, t, data in tensors:
        infos += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        infos += struct.pack("<IQ", t, off)
        datas.append((off, data))
        off += (len(data) + alignment - 1) // alignment * alignment
    b += infos
    b += b"\0" * ((-len(b)) % alignment)
    start = len(b)
    for o, data in datas:
        b += b"\0" * (start + o - len(b)) + data
    return b


def qwen3vl_gguf():
    """The metadata of a qwen3vl text model (Qwen3-VL in llama.cpp's layout: qwen3vl.* keys, M-RoPE sections
    [t, h, w, 0], DeepStack layers) and a token embedding table, by hand."""
    u32 = lambda v: struct.pack("<I", v)  # noqa: E731
    string = lambda x: struct.pack("<Q", len(x)) + x.encode()  # noqa: E731
    kvs = [("general.architecture", 8, string("qwen3vl"))]
    for key, v in [("block_count", 1), ("embedding_length", 16), ("feed_forward_length", 32),
                   ("attention.head_count", 2), ("attention.head_count_kv", 1), ("attention.key_length", 16),
                   ("n_deepstack_layers", 1)]:
        kvs.append((f"qwen3vl.{key}", 4, u32(v)))
    kvs.append(("qwen3vl.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-6)))
    kvs.append(("qwen3vl.rope.dimension_sections", 9, u32(5) + struct.pack("<Q", 4) + struct.pack("<4i", 4, 2, 2, 0)))
    return hand_gguf(kvs=kvs, tensors=[("token_embd.weight", [16, 4], 0, bytes(16 * 4 * 4))])


def v4_config():
    """The golden config as transformers 4.x writes it (rope_theta + rope_scaling instead of rope_parameters)."""
    base = json.loads(read(os.path.join(TIED, "config.json")))
    v4 = {k: v for k, v in base.items() if k != "rope_parameters"}
    v4["rope_theta"] = 1000000.0
    v4["rope_scaling"] = None
    return v4


def vl_config(flat, vision=False):
    """A flat config nested as Qwen3-VL writes config.json: the text model under text_config (model_type
    qwen3_vl_text, M-RoPE rope_scaling), tie_word_embeddings at the top level, optionally a vision_config."""
    text = {k: v for k, v in flat.items() if k != "tie_word_embeddings"}
    text["model_type"] = "qwen3_vl_text"
    text["rope_scaling"] = {"mrope_interleaved": True, "mrope_section": [6, 5, 5], "rope_type": "default"}
    root = {"architectures": ["Qwen3VLForConditionalGeneration"], "model_type": "qwen3_vl", "text_config": text,
            "tie_word_embeddings": flat.get("tie_word_embeddings", False), "image_token_id": 151655}
    if vision:
        root["vision_config"] = {"model_type": "qwen3_vl", "depth": 2, "hidden_size": 32, "patch_size": 16,
                                 "spatial_merge_size": 2, "out_hidden_size": flat["hidden_size"]}
    return root


# ---------------------------------------------------------------- main

def chat_parse_seeds():
    """chat_parse (max_len 4096): [flags, cut seed (2 bytes)] + a golden text of tests/golden/chat_parse."""
    doc = json.loads(read(os.path.join(GOLDEN, "chat_parse", "cases.json")))
    for i, c in enumerate(doc["cases"]):
        flags = (1 if c["reasoning_open"] else 0) | (0 if c["parse_tool_calls"] else 2)
        text = c["text"].encode("utf-8")
        if len(text) <= 4096:
            out("chat_parse", c["name"] + ".bin", bytes([flags, i % 256, (i * 37) % 256]) + text)
    out("chat_parse", "bad-utf8.bin", b"\x00\x01\x07<think>\n\xe2\x82</think>\xff<tool_call>{\"name\": \"\xc3\", "
                                      b"\"arguments\": {\"a\": \"\xed\xa0\x80\"}}</tool_call>\xf0\x9f")
def chat_template_seeds():
    """chat_template (max_len 16384): template SEP messages [SEP tools], from the golden cases whose template is
    in the repo (tests/golden/chat/templates; the Qwen3 one stays in its package)."""
    d = os.path.join(CORPUS, "chat_template")
    if os.path.isdir(d):
        shutil.rmtree(d)
    with open(os.path.join(GOLDEN, "chat", "cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    for case in cases:
        if case["template"] == "qwen3":
            continue
        tmpl = read(os.path.join(GOLDEN, "chat", case["template"]))
        data = tmpl + SEP + json.dumps(case["messages"], ensure_ascii=False).encode()
        if case.get("tools"):
            data += SEP + json.dumps(case["tools"], ensure_ascii=False).encode()
        out("chat_template", case["name"].replace("/", "-") + ".bin", data)
    msgs = b'[{"role": "user", "content": "hi"}]'
    hostile = {
        "recursion.bin": b"{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(0) }}",
        "loops.bin": b"{% for i in range(99999) %}{% for j in range(99999) %}{{ i }}{% endfor %}{% endfor %}",
        "growth.bin": b"{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
                      b"{% endfor %}{{ ns.s|length }}",
        "syntax.bin": b"{% if %}{{ ((( }}{% endfor %}{# x",
    }
    for name, tmpl in hostile.items():
        out("chat_template", "hostile-" + name, tmpl + SEP + msgs)


def image_seeds():
    """image (max_len 4096): [flags] + the golden images under 2 KB (every format and PNG colour type)."""
    d = os.path.join(GOLDEN, "images")
    for i, name in enumerate(sorted(os.listdir(d))):
        if name.endswith((".jpg", ".png", ".webp")) and os.path.getsize(os.path.join(d, name)) <= 2048:
            out("image", name, bytes([i % 4]) + read(os.path.join(d, name)))


def preprocessor_config_seeds():
    """preprocessor_config (max_len 4096): Qwen3-VL's preprocessor_config.json, Qwen2-VL's, and a small budget."""
    out("preprocessor_config", "qwen3vl.json", json.dumps({
        "size": {"longest_edge": 16777216, "shortest_edge": 65536}, "patch_size": 16, "temporal_patch_size": 2,
        "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "processor_class": "Qwen3VLProcessor", "image_processor_type": "Qwen2VLImageProcessorFast"}).encode())
    out("preprocessor_config", "qwen2vl.json", json.dumps({
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "rescale_factor": 0.00392156862745098}).encode())
    out("preprocessor_config", "small.json", json.dumps({
        "size": {"shortest_edge": 1024, "longest_edge": 4096}, "image_mean": 0.5, "image_std": 0.25}).encode())


def grammar_seeds():
    """fuzz_grammar_schema: JSON schemas (valid, unsupported, malformed) and tool sets with a choice and flags."""
    schemas = {
        "object.json": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                                         "age": {"type": "integer", "minimum": 0, "maximum": 120}},
                        "required": ["name", "age"], "additionalProperties": False},
        "nested.json": {"type": "object", "properties": {"p": {"type": "object", "properties": {
            "x": {"type": "number", "exclusiveMinimum": 0}}}, "t": {"type": "array", "items": {"enum": ["a", 1]}}}},
        "anyof.json": {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^[a-z]{2}-[0-9]+$"}]},
        "refs.json": {"$defs": {"n": {"type": "integer", "multipleOf": 3}}, "type": "array",
                      "items": {"$ref": "#/$defs/n"}, "minItems": 1, "maxItems": 4},
        "const.json": {"const": {"a": [1, 2.5, None, True]}},
        "format.json": {"type": "string", "format": "date-time"},
        "bad-type.json": {"type": "strange"},
        "bad-pattern.json": {"type": "string", "pattern": "(("},
        "bad-ref.json": {"$ref": "#/nowhere"},
        "oneof.json": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]},
    }
    for name, schema in schemas.items():
        out("grammar_schema", name, json.dumps(schema))
    out("grammar_schema", "true.json", "true")
    out("grammar_schema", "truncated.json", '{"type": "object", "properties": {"a": ')
    out("grammar_schema", "any-object", "o")
    weather = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 6}}, "required": ["city"]}}}
    add = {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}
    for choice in "0123":
        for flags in "0137":
            out("grammar_schema", f"tools-{choice}{flags}", "\x01" + choice + flags + json.dumps([weather, add]))
    out("grammar_schema", "tools-no-name", "\x0120" + json.dumps([{"function": {"parameters": {}}}]))
    out("grammar_schema", "tools-not-array", "\x0100" + json.dumps(weather))
    tree = {"name": "tree", "parameters": {"type": "object", "properties": {
        "v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#"}},
        "p": {"$ref": "#/$defs/p"}, "q": {"$ref": "#/properties/v"}, "a": {"$ref": "#anchor"},
        "e": {"enum": [{"$ref": "#"}]}}, "$defs": {"p": {"type": "string"}}}}
    out("grammar_schema", "tools-local-refs", "\x0120" + json.dumps([tree, add]))
    out("grammar_schema", "tools-local-refs-alone", "\x0120" + json.dumps([tree]))


def hub_info_seeds():
    """hub_info (max_len 16384): the hub's model-info answers (GET /api/models/ORG/NAME/revision/REV?blobs=true) as
    huggingface.co shapes them: a GGUF repository with LFS files and split parts, an HF checkpoint, edge cases.
    Some end with SEP and a model reference for hub_ref_split."""
    def sib(path, data, lfs=False):
        s = {"rfilename": path, "size": len(data),
             "blobId": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
        if lfs:
            s["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return s
    commit = hashlib.sha1(b"seed").hexdigest()
    gguf = {"_id": "6650", "id": "Qwen/Qwen3-8B-GGUF", "private": False, "sha": commit, "siblings": [
        sib(".gitattributes", b"*.gguf filter=lfs\n"), sib("README.md", b"# Qwen3-8B-GGUF\n"),
        sib("Qwen3-8B-Q4_K_M.gguf", b"GGUF" * 8, True), sib("Qwen3-8B-Q8_0.gguf", b"GGUF" * 9, True),
        sib("Qwen3-8B-IQ4_K_M.gguf", b"GGUF" * 3, True), sib("mmproj-Qwen3-8B-Q4_K_M.gguf", b"mm", True),
        sib("split/Qwen3-8B-Q4_K_M-00001-of-00002.gguf", b"a", True),
        sib("split/Qwen3-8B-Q4_K_M-00002-of-00002.gguf", b"b", True)]}
    out("hub_info", "gguf-repo.json", json.dumps(gguf, indent=1).encode() + SEP + b"Qwen/Qwen3-8B-GGUF:Q4_K_M")
    hf = {"id": "Qwen/Qwen3-0.6B", "sha": commit, "siblings": [
        sib("config.json", b"{}"), sib("model.safetensors", b"\0" * 64, True),
        sib("tokenizer.json", b"{}", True), sib("nested/dir/notes.txt", b"x")]}
    out("hub_info", "hf-repo.json", json.dumps(hf))
    out("hub_info", "no-blobs.json", json.dumps({"sha": commit, "siblings": [{"rfilename": "a.gguf"},
                                                                             {"rfilename": "b/c.txt"}]}))
    out("hub_info", "split-only.json", json.dumps({"sha": commit, "siblings": [
        sib("m-Q4_K_M-00001-of-00003.gguf", b"1", True), sib("m-Q4_K_M-00002-of-00003.gguf", b"2", True),
        sib("m-Q4_K_M-00003-of-00003.gguf", b"3", True)]}).encode() + SEP + b"org/name:dir/file.gguf")
    out("hub_info", "hostile-paths.json", json.dumps({"sha": commit, "siblings": [
        {"rfilename": "../escape"}, {"rfilename": "/abs"}, {"rfilename": "a//b"}]}))
    out("hub_info", "empty.json", json.dumps({"sha": commit, "siblings": []}))


def serve_request_seeds():
    """serve_request (max_len 8192): [flags: 1 completions, 2 no-think, 4 a 48-token context] + a request body, as
    the openai SDK, smolagents, Qwen-Agent and AutoGen send them, and malformed ones."""
    user = [{"role": "user", "content": "What is the weather in Paris?"}]
    weather = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                                "parameters": {"type": "object", "properties": {
                                                    "city": {"type": "string", "maxLength": 8}},
                                                    "required": ["city"]}}}
    final = {"type": "function", "function": {"name": "final_answer", "parameters": {
        "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}}
    history = user + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"}]
    chat = {
        "plain": {"model": "qwen3", "messages": user},
        "sdk-stream": {"model": "qwen3", "messages": [{"role": "developer", "content": "Be brief."}] + user,
                       "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.7, "top_p": 0.9,
                       "seed": 3, "max_completion_tokens": 64, "stop": ["\n\n"], "user": "u", "store": False},
        "parts": {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                            {"type": "text", "text": "b"}]}]},
        "image": {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        "smolagents-tools": {"model": "m", "messages": history, "tools": [weather, final], "tool_choice": "required",
                             "stop": ["Observation:", "Calling tools:"], "max_tokens": 128},
        "named": {"messages": user, "tools": [weather], "tool_choice": {"type": "function",
                                                                       "function": {"name": "get_weather"}},
                  "parallel_tool_calls": False},
        "tool-none": {"messages": user, "tools": [weather], "tool_choice": "none"},
        "autogen-null-content": {"messages": history + [{"role": "assistant", "content": "It is 21 C."},
                                                        {"role": "user", "content": "thanks"}],
                                 "tools": [weather], "tool_choice": "auto"},
        "qwen-agent": {"model": "qwen", "messages": [{"role": "system", "content": "You are helpful."}] + user,
                       "chat_template_kwargs": {"enable_thinking": False}, "top_k": 20, "min_p": 0,
                       "repetition_penalty": 1.05, "presence_penalty": 0.5},
        "json-schema": {"messages": user, "response_format": {"type": "json_schema", "json_schema": {
            "name": "w", "strict": True, "schema": {"type": "object", "properties": {"t": {"type": "integer"}},
                                                    "required": ["t"], "additionalProperties": False}}}},
        "json-object": {"messages": user, "response_format": {"type": "json_object"}, "enable_thinking": False},
        "prediction": {"messages": user, "prediction": {"type": "content", "content": "x = 1\ny = 2"}},
        "bad-types": {"messages": user, "temperature": "hot", "max_tokens": 0, "n": 2, "logprobs": True},
        "bad-role": {"messages": [{"role": "robot", "content": 5}]},
        "logprobs": {"messages": user, "logprobs": True, "top_logprobs": 3, "stream": True,
                     "stream_options": {"include_usage": True, "continuous_usage_stats": True}},
    }
    for name, body in chat.items():
        out("serve_request", f"chat-{name}.json", b"\x00" + json.dumps(body).encode())
    out("serve_request", "chat-no-think.json", b"\x02" + json.dumps(chat["plain"]).encode())
    out("serve_request", "chat-small-context.json", b"\x04" + json.dumps(chat["smolagents-tools"]).encode())
    out("serve_request", "chat-truncated.json", b"\x00" + json.dumps(chat["smolagents-tools"]).encode()[:150])
    out("serve_request", "chat-nul.json", b'\x00{"messages": [{"role": "user", "content": "a\\u0000b"}], '
                                          b'"stop": "\\u0000"}')
    completions = {
        "string": {"model": "m", "prompt": "Once upon a time", "max_tokens": 8, "echo": True},
        "ids": {"prompt": [1, 2, 3], "stream": True, "stop": "\n"},
        "list": {"prompt": ["<|im_start|>user\nhi<|im_end|>\n"], "temperature": 0},
        "bad": {"prompt": [[1, -5]], "logprobs": 3},
        "logprobs": {"prompt": [1, 300, 12, 99], "logprobs": 2, "max_tokens": 4},
    }
    for name, body in completions.items():
        out("serve_request", f"completions-{name}.json", b"\x01" + json.dumps(body).encode())


def train_jsonl_seeds():
    """tandem train's samples (.jsonl): the first byte picks the window length, the rest is the file."""
    chat = "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    files = {
        "prompt-completion.jsonl": "".join(json.dumps({"prompt": chat, "completion": c}) + "\n"
                                           for c in ("Hello!<|im_end|>", "<think>\nok\n</think>\n\nYes<|im_end|>")),
        "text-and-blank.jsonl": "\n" + json.dumps({"text": "one two three four"}) + "\r\n  \n" +
                                json.dumps({"text": "x"}) + "\n",
        "long-sample.jsonl": json.dumps({"prompt": "word " * 80, "completion": " end"}) + "\n",
        "bad-line.jsonl": json.dumps({"prompt": "a", "completion": "b"}) + "\n{\"prompt\": 3}\n[1]\n",
        "unicode.jsonl": json.dumps({"prompt": "Grüße 世界 🙂", "completion": "\u0000 é"}, ensure_ascii=False) + "\n",
    }
    for i, (name, text) in enumerate(sorted(files.items())):
        out("train_jsonl", name, bytes([5 + 9 * i]) + text.encode("utf-8"))


def data_uri_seeds():
    """serve's image_url data: URIs: valid ones (a PNG's start, padding of 0-2, parameters), and the refusals."""
    import base64
    png = read(os.path.join(GOLDEN, "vision_chat", "checker_64x96.png"))
    seeds = {
        "png_small": b"data:image/png;base64," + base64.b64encode(png[:300]),
        "jpeg": b"data:image/jpeg;base64,/9j/4AAQSkZJRg==",
        "no_type": b"data:;base64,AAEC",
        "params": b"data:image/webp;name=x.webp;base64,UklGRg==",
        "pad1": b"data:image/png;base64,QUI=",
        "noncanon": b"data:image/png;base64,QR==",
        "not_b64": b"data:image/png,abcd",
        "text_type": b"data:text/plain;base64,aGVsbG8=",
        "empty": b"data:image/png;base64,",
        "inner_pad": b"data:image/png;base64,QQ==QUJD",
        "bad_digit": b"data:image/png;base64,QU-D",
        "https": b"https://example.com/a.png",
        "bare_b64": b"aGVsbG8gd29ybGQ=",
        "big": b"data:image/png;base64," + base64.b64encode(b"x" * 2000),
    }
    for name, data in seeds.items():
        out("data_uri", name, data)


def main():
    import tempfile
    from safetensors.numpy import save as st_save

    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    tmp = tempfile.mkdtemp(prefix="tandem-corpus-")
    try:
        models = gguf_seeds(tmp)
        tokenizer_only_gguf(os.path.join(tmp, "tok.gguf"))

        # ---- gguf (max_len 16384): metadata of every type, tokenizer-only, tiny models, hand-made edge cases
        out("gguf", "all_types.gguf", read(os.path.join(GOLDEN, "gguf", "all_types.gguf")))
        out("gguf", "tokenizer-only.gguf", read(os.path.join(tmp, "tok.gguf")))
        for name in ["tiny-q4_0-tied.gguf", "tiny-f16-gqa1.gguf", "no-tokenizer-q4_0.gguf"]:
            out("gguf", name, read(models[name]))
        out("gguf", "empty-v3.gguf", hand_gguf())
        out("gguf", "empty-v2.gguf", hand_gguf(version=2))
        u32 = lambda v: struct.pack("<I", v)  # noqa: E731
        kq = [("general.alignment", 4, u32(64)),
              ("a.str_arr", 9, u32(8) + struct.pack("<Q", 2) + struct.pack("<Q", 1) + b"x" + struct.pack("<Q", 0)),
              ("a.f32_arr", 9, u32(6) + struct.pack("<Q", 3) + struct.pack("<3f", 1.5, float("nan"), -1e30)),
              ("a.bool", 7, b"\x02")]
        ts = [("f32", [4], 0, struct.pack("<4f", 1, 2, 3, 4)),
              ("q4_k", [256, 1], 12, bytes(144)),
              ("q8_0.2d", [32, 2], 8, bytes(68)),
              ("i64", [1, 1, 1, 2], 27, bytes(16))]
        out("gguf", "types-aligned64.gguf", hand_gguf(kvs=kq, tensors=ts, alignment=64))
        out("gguf", "qwen3vl-metadata.gguf", qwen3vl_gguf())

        # ---- model_load (max_len 100000): tiny models and the golden Q4_0
        for name, p in models.items():
            out("model_load", name, read(p))
        out("model_load", "golden-tied_gqa2-q4_0.gguf", read(os.path.join(TIED, "model-q4_0.gguf")))
        kquant_gguf(os.path.join(tmp, "kq.gguf"))
        out("model_load", "tiny-kquants-dim256.gguf", read(os.path.join(tmp, "kq.gguf")))

        # ---- mmproj (max_len 65536): tiny vision projectors, F16 / F32 without the deepstack flags / Q8_0
        mmproj_gguf(os.path.join(tmp, "mm-f16.gguf"))
        mmproj_gguf(os.path.join(tmp, "mm-f32.gguf"), qtype="f32", depth=1, deepstack=(), flags=False, seed=1)
        mmproj_gguf(os.path.join(tmp, "mm-q8_0.gguf"), qtype="q8_0", hidden=32, heads=4, ffn=32, depth=1, side=2,
                    out_dim=32, seed=2)
        for name in ["mm-f16.gguf", "mm-f32.gguf", "mm-q8_0.gguf"]:
            out("mmproj", name, read(os.path.join(tmp, name)))

        # ---- safetensors (max_len 16384)
        rng = np.random.default_rng(7)
        out("safetensors", "mixed-dtypes.safetensors", st_save({
            "a.f32": rng.standard_normal((3, 4)).astype(np.float32),
            "b.f16": rng.standard_normal((8,)).astype(np.float16),
            "c.i64": np.arange(6, dtype=np.int64).reshape(2, 3),
            "d.scalar": np.array(1.5, dtype=np.float32),
            "e.empty": np.zeros((0, 4), dtype=np.float32),
            "f.u8": np.arange(5, dtype=np.uint8),
            "g.bool": np.array([True, False]),
        }, metadata={"format": "pt"}))
        qwen = {}
        for i in range(2):
            qwen[f"model.layers.{i}.input_layernorm.weight"] = np.ones(8, np.float32)
            qwen[f"model.layers.{i}.self_attn.q_proj.weight"] = rng.standard_normal((8, 8)).astype(np.float32)
        qwen["model.embed_tokens.weight"] = rng.standard_normal((16, 8)).astype(np.float16)
        out("safetensors", "qwen-names.safetensors", st_save(qwen))
        # bf16 has no numpy dtype: written by hand (header + data)
        hdr = json.dumps({"w.bf16": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
                          "x.f8": {"dtype": "F8_E4M3", "shape": [3], "data_offsets": [8, 11]},
                          "__metadata__": {"k": "v"}}).encode()
        hdr += b" " * ((-len(hdr)) % 8)
        out("safetensors", "bf16-f8-by-hand.safetensors", struct.pack("<Q", len(hdr)) + hdr + bytes(range(11)))
        empty = b"{}"
        out("safetensors", "empty-header.safetensors", struct.pack("<Q", len(empty)) + empty)

        # ---- safetensors_index (max_len 16384): index.json [SEP shard 1 [SEP shard 2]]
        names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        shard1 = st_save({"model.embed_tokens.weight": rng.standard_normal((4, 4)).astype(np.float32),
                          "model.norm.weight": np.ones(4, np.float16)})
        shard2 = st_save({"lm_head.weight": rng.standard_normal((4, 4)).astype(np.float32),
                          "model.layers.0.mlp.up_proj.weight": np.zeros((2, 4), np.float32)})
        wmap = {"model.embed_tokens.weight": names[0], "model.norm.weight": names[0],
                "lm_head.weight": names[1], "model.layers.0.mlp.up_proj.weight": names[1]}
        index = json.dumps({"metadata": {"total_size": 128}, "weight_map": wmap}, indent=1).encode()
        out("safetensors_index", "two-shards.bin", index + SEP + shard1 + SEP + shard2)
        one = json.dumps({"weight_map": {k: names[0] for k in ["model.embed_tokens.weight", "model.norm.weight"]}})
        out("safetensors_index", "one-shard.bin", one.encode() + SEP + shard1)
        out("safetensors_index", "golden-index-no-shards.json",
            read(os.path.join(GOLDEN, "models", "sharded", "model.safetensors.index.json")))

        # ---- hf_folder (max_len 8192): config.json [SEP generation_config.json], golden weights linked
        out("hf_folder", "golden.json", read(os.path.join(TIED, "config.json")) + SEP +
            read(os.path.join(TIED, "generation_config.json")))
        out("hf_folder", "golden-no-generation-config.json", read(os.path.join(TIED, "config.json")))
        out("hf_folder", "v4-sampling.json", json.dumps(v4_config(), indent=1).encode() + SEP + json.dumps(
            {"do_sample": True, "temperature": 0.6, "top_k": 20, "top_p": 0.95, "min_p": 0.0,
             "repetition_penalty": 1.1, "eos_token_id": 402}).encode())
        tied_cfg = json.loads(read(os.path.join(TIED, "config.json")))
        out("hf_folder", "text_config.json", json.dumps(vl_config(tied_cfg), indent=1).encode() + SEP +
            read(os.path.join(TIED, "generation_config.json")))
        out("hf_folder", "text_config-vision.json", json.dumps(vl_config(tied_cfg, vision=True), indent=1))

        # ---- quant_rows (max_len 2400): [type pick, blocks, activation pattern] + row bytes; the type pick is
        # taken modulo the number of runnable types, so 0..19 covers them all. Bytes: f16 scales kept moderate.
        qrng = np.random.default_rng(11)
        for i in range(20):
            row = qrng.integers(0, 256, size=1700, dtype=np.uint8)
            row[1::2] &= 0x3B  # every other byte small: f16 scales at any offset stay finite and modest
            out("quant_rows", f"type{i:02d}.bin", bytes([i, i % 4, 40 + i]) + row.tobytes())

        # ---- config_json
        for m in ["tied_gqa2", "untied_gqa1", "untied_gqa4", "bf16", "sharded"]:
            out("config_json", f"{m}.json", read(os.path.join(GOLDEN, "models", m, "config.json")))
        base = json.loads(read(os.path.join(TIED, "config.json")))
        out("config_json", "v4-rope_theta.json", json.dumps(v4_config(), indent=1))
        minimal = {k: base[k] for k in ["model_type", "num_hidden_layers", "hidden_size", "intermediate_size",
                                        "num_attention_heads", "vocab_size"]}
        out("config_json", "minimal.json", json.dumps(minimal))
        yarn = dict(base, rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6})
        out("config_json", "rope-yarn.json", json.dumps(yarn))
        out("config_json", "text_config.json", json.dumps(vl_config(base), indent=1))
        out("config_json", "text_config-vision.json", json.dumps(vl_config(base, vision=True), indent=1))
        for m in ["vl_tied", "vl_untied"]:  # Qwen3-VL folders with a vision_config (vit_config_from_json)
            out("config_json", f"{m}.json", read(os.path.join(GOLDEN, "vision", m, "config.json")))
        out("config_json", "real-0.6B-like.json", json.dumps(dict(
            base, hidden_size=1024, intermediate_size=3072, num_attention_heads=16, num_key_value_heads=8,
            head_dim=128, num_hidden_layers=28, vocab_size=151936, max_position_embeddings=40960)))

        # ---- tokenizer_json (max_len 32768): tokenizer.json [SEP tokenizer_config.json [SEP generation_config]]
        out("tokenizer_json", "golden-tied_gqa2.json",
            read(os.path.join(TIED, "tokenizer.json")) + SEP + read(os.path.join(TIED, "tokenizer_config.json")) +
            SEP + read(os.path.join(TIED, "generation_config.json")))
        out("tokenizer_json", "golden-tokenizer-only.json", read(os.path.join(TIED, "tokenizer.json")))
        out("tokenizer_json", "mini-nfc.json", json.dumps(mini_tokenizer(), ensure_ascii=False))
        out("tokenizer_json", "mini-pairs-no-normalizer.json",
            json.dumps(mini_tokenizer(normalizer=False, merges_as_pairs=True), ensure_ascii=False).encode() + SEP +
            json.dumps(dict(MINI_CONFIG, added_tokens_decoder={"300": {"content": "<tool_call>", "special": False}}))
            .encode() + SEP + json.dumps({"eos_token_id": [2, 3]}).encode())
        no_pre = mini_tokenizer(extra_added=("ab", "a"))
        no_pre["pre_tokenizer"] = None
        out("tokenizer_json", "mini-no-pretokenizer.json",
            json.dumps(no_pre, ensure_ascii=False).encode() + SEP +
            json.dumps({"eos_token": {"content": "<|endoftext|>"},
                        "chat_template": [{"name": "default", "template": "x"}]}).encode())
        out("tokenizer_json", "mini-named-templates.json",
            json.dumps(mini_tokenizer(), ensure_ascii=False).encode() + SEP +
            json.dumps({"bos_token": None, "eos_token": "<|endoftext|>", "pad_token": {"content": "<|endoftext|>"},
                        "chat_template": [{"name": "default", "template": "d"},
                                                          {"name": "tool_use", "template": "t"},
                                                          {"name": "tool_use", "template": "t2"}]}).encode())

        # ---- convert: the same seeds as tokenizer_json (its tokenizer files, converted with the golden weights)
        for name in sorted(os.listdir(os.path.join(CORPUS, "tokenizer_json"))):
            out("convert", name, read(os.path.join(CORPUS, "tokenizer_json", name)))

        # ---- tokenize (max_len 4096): texts
        texts = {
            "english.txt": "Hello world, the quick brown fox jumps over the lazy dog. It'll be fine, they're here.",
            "chat.txt": "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
                        "<|im_start|>assistant\n<think>\n\n</think>\n\nHello<|im_end|><|endoftext|>",
            "multiscript.txt": "Grüße, 世界! Привет мир. مرحبا. नमस्ते 🙂👍🏽 한국어 テスト ｶﾀｶﾅ",
            "numbers-space.txt": "12345 6.78e-9  \t\t\n\n   x\r\n\r\n  \u00a0\u3000end   ",
            "non-nfc.txt": "e\u0301 A\u030a \u1100\u1161\u11a8 \u212b \ufb01 o\u0308\u0323",
            "almost-special.txt": "<|im_start <|im_end|>> <<|endoftext|> </think <think><think>",
            "code.txt": "def f(x):\n    return x**2  # comment\n\nif __name__ == '__main__':\n\tprint(f(3))\n",
        }
        for name, t in texts.items():
            out("tokenize", name, t)
        out("tokenize", "invalid-utf8.bin", b"ok \xff\xfe \xc3( \xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80 \xc0\xaf"
                                            b" \xe2\x82\xac \xf0\x9f\x99 end\xc3")
        out("tokenize", "nul-and-controls.bin", b"a\x00b\x01\x7f\x1b[0m\x00\x00 <|im_end|>\x00")

        chat_parse_seeds()
        chat_template_seeds()
        image_seeds()
        preprocessor_config_seeds()
        grammar_seeds()
        hub_info_seeds()
        serve_request_seeds()
        train_jsonl_seeds()
        data_uri_seeds()
    finally:
        shutil.rmtree(tmp)

    total = 0
    for dirpath, _dirs, files in os.walk(CORPUS):
        for f in files:
            total += os.path.getsize(os.path.join(dirpath, f))
    print(f"corpus: {total} bytes in {CORPUS}")


if __name__ == "__main__":
    main()
