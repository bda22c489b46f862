"""tandem convert of Qwen3-VL folders: the text GGUF (arch qwen3vl) and the mmproj GGUF, read back with gguf-py.

References, independent of tandem's code:
  * the tiny Qwen3-VL folders transformers wrote (tests/golden/vision/vl_tied: F32, tied; vl_untied: BF16), given a
    448-token text vocabulary so the golden byte-level tokenizer fits, and one folder made here with numpy whose
    vision MLP width (48) is no multiple of 32;
  * the layouts llama.cpp's convert_hf_to_gguf.py writes, restated here from reference §6.10 / §6.11 (key names and
    value types, tensor names, ggml shapes, which tensors stay F32 / F16);
  * gguf-py's quantizers for the expected bytes of F16, BF16 and Q8_0 tensors.
"""
import json
import shutil
import struct

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf.quants import quantize  # noqa: E402

T = gguf.GGMLQuantizationType
VT = gguf.GGUFValueType
VOCAB = 448  # the golden tokenizer's 426 ids fit


def read_st(path):
    """safetensors → {name: float32 array} (BF16 widened by hand: numpy has no bfloat16)."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    out = {}
    for name, h in header.items():
        b = data[h["data_offsets"][0]:h["data_offsets"][1]]
        if h["dtype"] == "F32":
            a = np.frombuffer(b, np.float32)
        elif h["dtype"] == "BF16":
            a = (np.frombuffer(b, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(b, np.float16).astype(np.float32)
        out[name] = (h["dtype"], a.reshape(h["shape"]))
    return out


def write_st(path, tensors):
    """{name: (dtype, float32 array)} → safetensors, F32 or BF16 (truncated: the values are what they are)."""
    header, blobs, off = {}, [], 0
    for name, (dtype, a) in tensors.items():
        a = np.ascontiguousarray(a, np.float32)
        b = a.tobytes() if dtype == "F32" else (a.view(np.uint32) >> 16).astype(np.uint16).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header).encode()
    hb += b" " * ((-len(hb)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))


def make_folder(dst, golden_dir, cfg, tensors):
    dst.mkdir()
    rng = np.random.default_rng(0)
    cfg["text_config"]["vocab_size"] = VOCAB
    for name in ["model.language_model.embed_tokens.weight", "lm_head.weight"]:
        if name in tensors:
            dtype, a = tensors[name]
            tensors[name] = (dtype, (rng.standard_normal((VOCAB, a.shape[1])) * 0.02).astype(np.float32))
    write_st(dst / "model.safetensors", tensors)
    (dst / "config.json").write_text(json.dumps(cfg, indent=1))
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(golden_dir / "models" / "tied_gqa2" / f, dst / f)
    shutil.copy(golden_dir / "vision" / "vl_tied" / "preprocessor_config.json", dst)
    return dst


def odd_width_folder(dst, golden_dir):
    """A Qwen3-VL folder whose vision MLP is 48 wide (Q8_0 cannot hold its ffn_down rows), made with numpy."""
    cfg = json.loads((golden_dir / "vision" / "vl_tied" / "config.json").read_text())
    vc = cfg["vision_config"]
    vc.update(depth=2, intermediate_size=48, deepstack_visual_indexes=[0])
    cfg["text_config"].update(num_hidden_layers=1, tie_word_embeddings=False)
    cfg["tie_word_embeddings"] = False
    t = {k: v for k, v in read_st(golden_dir / "vision" / "vl_tied" / "model.safetensors").items()
         if not (k.startswith("model.visual.blocks.") or k.startswith("model.visual.deepstack_merger_list.") or
                 k.startswith("model.language_model.layers.1."))}
    rng = np.random.default_rng(1)
    E, F = vc["hidden_size"], 48
    for b in range(2):
        p = f"model.visual.blocks.{b}."
        shapes = {"norm1.weight": [E], "norm1.bias": [E], "norm2.weight": [E], "norm2.bias": [E],
                  "attn.qkv.weight": [3 * E, E], "attn.qkv.bias": [3 * E], "attn.proj.weight": [E, E],
                  "attn.proj.bias": [E], "mlp.linear_fc1.weight": [F, E], "mlp.linear_fc1.bias": [F],
                  "mlp.linear_fc2.weight": [E, F], "mlp.linear_fc2.bias": [E]}
        for k, s in shapes.items():
            t[p + k] = ("F32", (rng.standard_normal(s) * 0.1).astype(np.float32))
    src = read_st(golden_dir / "vision" / "vl_tied" / "model.safetensors")
    for k, v in src.items():
        if k.startswith("model.visual.deepstack_merger_list.0."):
            t[k] = v
    t["lm_head.weight"] = ("F32", np.zeros((VOCAB, 32), np.float32))
    return make_folder(dst, golden_dir, cfg, t)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, golden_dir):
    base = tmp_path_factory.mktemp("vl")
    out = {}
    for name in ["vl_tied", "vl_untied"]:
        src = golden_dir / "vision" / name
        out[name] = make_folder(base / name, golden_dir, json.loads((src / "config.json").read_text()),
                                read_st(src / "model.safetensors"))
    out["vl_odd"] = odd_width_folder(base / "vl_odd", golden_dir)
    return out


def field(r, key):
    f = r.fields.get(key)
    assert f is not None, f"missing key {key}"
    return f


def scalar(r, key, vtype):
    f = field(r, key)
    assert f.types == [vtype], f"{key}: types {f.types}, expected {vtype}"
    return f.contents()


def array(r, key, etype):
    f = field(r, key)
    assert f.types == [VT.ARRAY, etype], f"{key}: types {f.types}"
    return f.contents()


def tensors_of(r):
    return {t.name: t for t in r.tensors}


def expected_bytes(a, qtype):
    """What a tensor of f32 values a (PyTorch shape) holds as qtype, by gguf-py."""
    a = np.ascontiguousarray(a, np.float32)
    if qtype == T.F32:
        return a.tobytes()
    if qtype == T.F16:
        return a.astype(np.float16).tobytes()
    return quantize(a, qtype).tobytes()


def text_layout(tc, tied):
    """GGUF name → (HF name, ggml shape) of the text model (§3.4, §6.10)."""
    E, F, hd = tc["hidden_size"], tc["intermediate_size"], tc["head_dim"]
    q, kv = tc["num_attention_heads"] * hd, tc["num_key_value_heads"] * hd
    lm = "model.language_model."
    out = {"token_embd.weight": (lm + "embed_tokens.weight", [E, VOCAB]),
           "output_norm.weight": (lm + "norm.weight", [E])}
    if not tied:
        out["output.weight"] = ("lm_head.weight", [E, VOCAB])
    for i in range(tc["num_hidden_layers"]):
        p, h = f"blk.{i}.", f"{lm}layers.{i}."
        out.update({
            p + "attn_norm.weight": (h + "input_layernorm.weight", [E]),
            p + "attn_q.weight": (h + "self_attn.q_proj.weight", [E, q]),
            p + "attn_k.weight": (h + "self_attn.k_proj.weight", [E, kv]),
            p + "attn_v.weight": (h + "self_attn.v_proj.weight", [E, kv]),
            p + "attn_q_norm.weight": (h + "self_attn.q_norm.weight", [hd]),
            p + "attn_k_norm.weight": (h + "self_attn.k_norm.weight", [hd]),
            p + "attn_output.weight": (h + "self_attn.o_proj.weight", [q, E]),
            p + "ffn_norm.weight": (h + "post_attention_layernorm.weight", [E]),
            p + "ffn_gate.weight": (h + "mlp.gate_proj.weight", [E, F]),
            p + "ffn_up.weight": (h + "mlp.up_proj.weight", [E, F]),
            p + "ffn_down.weight": (h + "mlp.down_proj.weight", [F, E]),
        })
    return out


def mmproj_layout(vc, hf):
    """GGUF name → (f32 values in PyTorch order, ggml shape) of the vision tower (§6.11)."""
    E, F, P, m = vc["hidden_size"], vc["intermediate_size"], vc["patch_size"], vc["spatial_merge_size"]
    W, O, v = m * m * E, vc["out_hidden_size"], "model.visual."
    a = lambda name: hf[v + name][1]  # noqa: E731
    kernel = a("patch_embed.proj.weight")
    out = {"v.patch_embd.weight": (kernel[:, :, 0], [P, P, 3, E]),
           "v.patch_embd.weight.1": (kernel[:, :, 1], [P, P, 3, E]),
           "v.patch_embd.bias": (a("patch_embed.proj.bias"), [E]),
           "v.position_embd.weight": (a("pos_embed.weight"), [E, vc["num_position_embeddings"]]),
           "v.post_ln.weight": (a("merger.norm.weight"), [E]), "v.post_ln.bias": (a("merger.norm.bias"), [E]),
           "mm.0.weight": (a("merger.linear_fc1.weight"), [W, W]), "mm.0.bias": (a("merger.linear_fc1.bias"), [W]),
           "mm.2.weight": (a("merger.linear_fc2.weight"), [W, O]), "mm.2.bias": (a("merger.linear_fc2.bias"), [O])}
    for b in range(vc["depth"]):
        p, h = f"v.blk.{b}.", f"blocks.{b}."
        for g, n, s in [("ln1", "norm1", [E]), ("ln2", "norm2", [E]), ("attn_qkv", "attn.qkv", [E, 3 * E]),
                        ("attn_out", "attn.proj", [E, E]), ("ffn_up", "mlp.linear_fc1", [E, F]),
                        ("ffn_down", "mlp.linear_fc2", [F, E])]:
            out[p + g + ".weight"] = (a(h + n + ".weight"), s)
            out[p + g + ".bias"] = (a(h + n + ".bias"), [s[-1]])
    for j, layer in enumerate(vc["deepstack_visual_indexes"]):
        p, h = f"v.deepstack.{layer}.", f"deepstack_merger_list.{j}."
        for g, n, s in [("norm", "norm", [W]), ("fc1", "linear_fc1", [W, W]), ("fc2", "linear_fc2", [W, O])]:
            out[p + g + ".weight"] = (a(h + n + ".weight"), s)
            out[p + g + ".bias"] = (a(h + n + ".bias"), [s[-1]])
    return out


def mmproj_type(name, shape, mtype):
    """llama.cpp's choice: 1-D and the position table F32, the patch kernel F16 (F32 in an F32 file), matrices
    mtype unless a Q8_0 row would not be whole blocks (then F16)."""
    if len(shape) == 1 or name == "v.position_embd.weight":
        return T.F32
    if name.startswith("v.patch_embd.weight"):
        return T.F32 if mtype == T.F32 else T.F16
    if mtype == T.Q8_0 and shape[0] % 32:
        return T.F16
    return mtype


@pytest.mark.parametrize("name", ["vl_tied", "vl_untied"])
def test_text_gguf(run_tandem, folders, tmp_path, name):
    src = folders[name]
    cfg = json.loads((src / "config.json").read_text())
    tc = cfg["text_config"]
    out = tmp_path / "text.gguf"
    run_tandem("convert", src, "-o", out)
    assert (tmp_path / "mmproj-text.gguf").is_file()
    r = gguf.GGUFReader(out)
    assert scalar(r, "general.architecture", VT.STRING) == "qwen3vl"
    assert scalar(r, "general.file_type", VT.UINT32) == 1
    for key, hf in [("block_count", "num_hidden_layers"), ("embedding_length", "hidden_size"),
                    ("feed_forward_length", "intermediate_size"), ("attention.head_count", "num_attention_heads"),
                    ("attention.head_count_kv", "num_key_value_heads"), ("attention.key_length", "head_dim"),
                    ("attention.value_length", "head_dim"), ("context_length", "max_position_embeddings")]:
        assert scalar(r, f"qwen3vl.{key}", VT.UINT32) == tc[hf], key
    rope = tc.get("rope_parameters") or tc.get("rope_scaling")
    assert scalar(r, "qwen3vl.rope.freq_base", VT.FLOAT32) == pytest.approx(rope["rope_theta"])
    assert scalar(r, "qwen3vl.attention.layer_norm_rms_epsilon", VT.FLOAT32) == pytest.approx(tc["rms_norm_eps"])
    assert array(r, "qwen3vl.rope.dimension_sections", VT.INT32) == rope["mrope_section"] + [0]
    assert scalar(r, "qwen3vl.n_deepstack_layers", VT.UINT32) == len(cfg["vision_config"]["deepstack_visual_indexes"])
    assert not [k for k in r.fields if k.startswith("qwen3.")]
    assert scalar(r, "tokenizer.ggml.model", VT.STRING) == "gpt2"

    hf = read_st(src / "model.safetensors")
    want = text_layout(tc, cfg["tie_word_embeddings"])
    got = tensors_of(r)
    assert sorted(got) == sorted(want)
    for gname, (hname, shape) in want.items():
        t = got[gname]
        assert list(map(int, t.shape)) == shape, gname
        qtype = T.F32 if len(shape) == 1 else T.F16
        assert t.tensor_type == qtype, gname
        assert t.data.tobytes() == expected_bytes(hf[hname][1], qtype), gname


@pytest.mark.parametrize("name,fmt,mtype,ftype", [
    ("vl_tied", None, T.F16, 1), ("vl_tied", "f32", T.F32, 0), ("vl_untied", "bf16", T.BF16, 32),
    ("vl_tied", "q8_0", T.Q8_0, 7), ("vl_odd", "int8", T.Q8_0, 7), ("vl_untied", "f16", T.F16, 1)])
def test_mmproj_gguf(run_tandem, folders, tmp_path, name, fmt, mtype, ftype):
    src = folders[name]
    cfg = json.loads((src / "config.json").read_text())
    vc = cfg["vision_config"]
    out, mm = tmp_path / "text.gguf", tmp_path / "vision" / "proj.gguf"
    mm.parent.mkdir()
    run_tandem("convert", src, "-o", out, "--mmproj-out", mm, *(["--mmproj-type", fmt] if fmt else []))
    assert not (tmp_path / "mmproj-text.gguf").exists()
    r = gguf.GGUFReader(mm)
    assert scalar(r, "general.architecture", VT.STRING) == "clip"
    assert scalar(r, "general.type", VT.STRING) == "mmproj"
    assert scalar(r, "general.file_type", VT.UINT32) == ftype
    assert scalar(r, "clip.projector_type", VT.STRING) == "qwen3vl_merger"
    assert scalar(r, "clip.has_vision_encoder", VT.BOOL) is True
    assert scalar(r, "clip.use_gelu", VT.BOOL) is True
    side = int(round(vc["num_position_embeddings"] ** 0.5))
    for key, value in [("projection_dim", vc["out_hidden_size"]), ("image_size", side * vc["patch_size"]),
                       ("patch_size", vc["patch_size"]), ("embedding_length", vc["hidden_size"]),
                       ("feed_forward_length", vc["intermediate_size"]), ("block_count", vc["depth"]),
                       ("attention.head_count", vc["num_heads"]), ("spatial_merge_size", vc["spatial_merge_size"])]:
        assert scalar(r, f"clip.vision.{key}", VT.UINT32) == value, key
    assert scalar(r, "clip.vision.attention.layer_norm_epsilon", VT.FLOAT32) == pytest.approx(1e-6)
    assert array(r, "clip.vision.image_mean", VT.FLOAT32) == [0.5] * 3
    assert array(r, "clip.vision.image_std", VT.FLOAT32) == [0.5] * 3
    flags = array(r, "clip.vision.is_deepstack_layers", VT.BOOL)
    assert flags == [b in vc["deepstack_visual_indexes"] for b in range(vc["depth"])]

    want = mmproj_layout(vc, read_st(src / "model.safetensors"))
    got = tensors_of(r)
    assert sorted(got) == sorted(want)
    for gname, (values, shape) in want.items():
        t = got[gname]
        assert list(map(int, t.shape)) == shape, gname
        qtype = mmproj_type(gname, shape, mtype)
        assert t.tensor_type == qtype, gname
        assert t.data.tobytes() == expected_bytes(values, qtype), gname
    if name == "vl_odd":
        assert got["v.blk.0.ffn_down.weight"].tensor_type == T.F16 and got["v.blk.0.ffn_up.weight"].tensor_type == T.Q8_0


def test_info_describes_both(run_tandem, folders, tmp_path):
    out = tmp_path / "m.gguf"
    run_tandem("convert", folders["vl_tied"], "-o", out, "--mmproj-type", "q8_0")
    info = json.loads(run_tandem("info", tmp_path / "mmproj-m.gguf", "--json").stdout)
    vc = json.loads((folders["vl_tied"] / "config.json").read_text())["vision_config"]
    assert info["projector"] == "qwen3vl_merger" and info["architecture"] == "clip"
    assert (info["depth"], info["hidden"], info["n_heads"], info["ffn_dim"]) == (
        vc["depth"], vc["hidden_size"], vc["num_heads"], vc["intermediate_size"])
    assert (info["patch_size"], info["merge_size"], info["out_hidden"]) == (
        vc["patch_size"], vc["spatial_merge_size"], vc["out_hidden_size"])
    assert info["deepstack_layers"] == vc["deepstack_visual_indexes"]
    assert info["tensor_types"]["Q8_0"] > 0 and info["tensor_types"]["F32"] > 0
    text = run_tandem("info", tmp_path / "mmproj-m.gguf").stdout
    assert "qwen3vl_merger" in text and "deepstack:      2 taps after blocks 1, 2" in text
    # the text model: described from its metadata by a build that cannot run qwen3vl, else loaded as a model
    doc = json.loads(run_tandem("info", out, "--json").stdout)
    if doc.get("loadable") is False:
        assert doc["architecture"] == "qwen3vl" and "qwen3vl" in doc["reason"]
        assert doc["metadata"]["qwen3vl.rope.dimension_sections"] == [4, 2, 2, 0]
        assert doc["metadata"]["qwen3vl.n_deepstack_layers"] == 2
    else:
        assert (doc["n_layers"], doc["dim"], doc["vocab_size"]) == (2, 32, VOCAB)


def test_bad_uses(run_tandem, folders, tmp_path):
    src = folders["vl_tied"]
    out = tmp_path / "t.gguf"
    cp = run_tandem("convert", src, "-o", out, "--mmproj-type", "q4_0", check=False)
    assert cp.returncode != 0 and "--mmproj-type" in cp.stderr and "Q4_0" in cp.stderr
    assert not out.exists() and not (tmp_path / "mmproj-t.gguf").exists()
    (tmp_path / "mmproj-t.gguf").write_bytes(b"keep")
    cp = run_tandem("convert", src, "-o", out, check=False)
    assert cp.returncode != 0 and "mmproj-t.gguf" in cp.stderr and "already exists" in cp.stderr
    assert not out.exists() and (tmp_path / "mmproj-t.gguf").read_bytes() == b"keep"
    cp = run_tandem("convert", src, "-o", out, "--mmproj-out", out, check=False)
    assert cp.returncode != 0 and "--mmproj-out" in cp.stderr and not out.exists()
    # a broken vision tower: no text file is left behind either
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["vision_config"]["intermediate_size"] = 80
    (bad / "config.json").write_text(json.dumps(cfg))
    cp = run_tandem("convert", bad, "-o", tmp_path / "b.gguf", check=False)
    assert cp.returncode != 0 and "model.visual.blocks.0.mlp.linear_fc1.weight" in cp.stderr
    assert not (tmp_path / "b.gguf").exists() and not (tmp_path / "mmproj-b.gguf").exists()


def test_bad_mrope_sections(run_tandem, folders, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(folders["vl_tied"], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["text_config"]["rope_parameters"]["mrope_section"] = [4, 2, 1]
    (bad / "config.json").write_text(json.dumps(cfg))
    cp = run_tandem("convert", bad, "-o", tmp_path / "b.gguf", check=False)
    assert cp.returncode != 0 and "config.json" in cp.stderr and "mrope_section" in cp.stderr, cp.stderr
    assert "[4, 2, 1]" in cp.stderr and "head_dim / 2 = 8" in cp.stderr, cp.stderr
    assert not (tmp_path / "b.gguf").exists()


def test_tower_llamacpp_cannot_describe(run_tandem, folders, tmp_path):
    bad = tmp_path / "erf"
    shutil.copytree(folders["vl_tied"], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["vision_config"]["hidden_act"] = "gelu"
    (bad / "config.json").write_text(json.dumps(cfg))
    cp = run_tandem("convert", bad, "-o", tmp_path / "b.gguf", check=False)
    assert cp.returncode != 0 and "vision_config.hidden_act: llama.cpp's mmproj layout" in cp.stderr
    assert not (tmp_path / "b.gguf").exists()


def test_text_only_folder_writes_one_file(run_tandem, models_dir, tmp_path):
    cp = run_tandem("convert", models_dir / "tied_gqa2", "-o", tmp_path / "q.gguf", "--mmproj-out", tmp_path / "m",
                    check=False)
    assert cp.returncode != 0 and "--mmproj-out" in cp.stderr and "no vision tower" in cp.stderr
    run_tandem("convert", models_dir / "tied_gqa2", "-o", tmp_path / "q.gguf")
    assert [p.name for p in tmp_path.iterdir()] == ["q.gguf"]
    r = gguf.GGUFReader(tmp_path / "q.gguf")
    assert scalar(r, "general.architecture", VT.STRING) == "qwen3"
    assert "qwen3.rope.dimension_sections" not in r.fields
