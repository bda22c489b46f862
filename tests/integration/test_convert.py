"""tandem convert / quantize / perplexity / kld as a user runs them.

References, all independent of tandem's code:
  * the GGUFs tests/gen/make_golden.py wrote with gguf-py (tests/golden/models/*/model-*.gguf): converting the
    same HF folders must give the same tensors and metadata;
  * gguf-py's quantizers (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, F16, BF16): identical bytes; its dequantizers (every
    type): the values tandem's own dequantization gives (read back through `tandem quantize … F32`);
  * llama-quantize's per-tensor type rules, restated in Python below (expected_type) from llama.cpp's
    src/llama-quant.cpp;
  * a tiny random Qwen3 whose rows are whole 256-value blocks (tests/gen/make_kquant_model.py, numpy only) for
    the K-quant types: KL divergence ordering Q8_0 < Q6_K < Q5_K_M < Q4_K_M and greedy agreement at Q8_0.
"""
import json
import os
import pty
import select
import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize, quantize  # noqa: E402

GEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gen")
sys.path.insert(0, GEN)
import make_kquant_model  # noqa: E402

T = gguf.GGMLQuantizationType

TEXT = """The river rose slowly through the night, and by morning the lower fields were under water. Farmers
walked the embankments with lanterns, checking for seepage, while children watched from the windows of the mill.
Nobody remembered a flood this early in the season. The old miller said that the snow in the mountains had melted
all at once after three warm days, and that the water would keep rising until the weekend. He had seen it happen
twice before, once when he was a boy and once when his own son was born. Both times the village had survived, he
said, because people helped each other move grain and animals to the high ground behind the church.
By noon the council met in the schoolhouse. They counted boats, ropes, and sandbags, and they wrote a list of the
families who lived closest to the river. Volunteers were sent to each house. Some people refused to leave; others
packed their belongings into carts and went to stay with relatives in the hills. The baker kept his ovens burning
all day so that everyone would have bread, and the innkeeper opened his rooms to anyone who needed a place to sleep.
In the evening the rain stopped. The clouds broke apart and the moon came out over the flooded meadows, which
shone like a sheet of glass. The water had reached the third step of the church, but it went no further. When the
sun rose the next day, the river had begun to fall, leaving behind mud, broken fences, and a long line of debris
along the road. It took weeks to clean everything, but no one was hurt, and the harvest, though late, was good.
"""

# --weight-format / TYPE → (tandem arguments, general.file_type)
FORMATS = {
    "f32": (["--weight-format", "f32"], 0), "f16": (["--weight-format", "f16"], 1),
    "bf16": (["--weight-format", "bf16"], 32), "int8": (["--weight-format", "int8"], 7),
    "int4-sym": (["--weight-format", "int4", "--sym"], 2), "int4-asym": (["--weight-format", "int4", "--asym"], 3),
    "nf4": (["--weight-format", "nf4"], 25), "q4_k_m": (["--weight-format", "q4_k_m"], 15),
    "q5_k_m": (["--weight-format", "q5_k_m"], 17), "q6_k": (["--weight-format", "q6_k"], 18),
    "q5_0": (["--weight-format", "Q5_0"], 8), "q5_1": (["--weight-format", "Q5_1"], 9),
    "q2_k": (["--weight-format", "Q2_K"], 10), "q3_k": (["--weight-format", "Q3_K"], 11),
    "q4_k": (["--weight-format", "Q4_K"], 14), "q5_k": (["--weight-format", "Q5_K"], 16),
}
RECIPE = {  # format → (base type, llama.cpp ftype name for the mixing rules, or None for a pure file)
    "f32": (T.F32, None), "f16": (T.F16, None), "bf16": (T.BF16, None), "int8": (T.Q8_0, "Q8_0"),
    "int4-sym": (T.Q4_0, "Q4_0"), "int4-asym": (T.Q4_1, "Q4_1"), "nf4": (T.IQ4_NL, "IQ4_NL"),
    "q4_k_m": (T.Q4_K, "Q4_K_M"), "q5_k_m": (T.Q5_K, "Q5_K_M"), "q6_k": (T.Q6_K, "Q6_K"),
    "q5_0": (T.Q5_0, "Q5_0"), "q5_1": (T.Q5_1, "Q5_1"), "q2_k": (T.Q2_K, None), "q3_k": (T.Q3_K, None),
    "q4_k": (T.Q4_K, None), "q5_k": (T.Q5_K, None),
}
GGUF_PY_QUANTIZES = {T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1}
BLOCK = {t: gguf.GGML_QUANT_SIZES[t][0] for t in T}
# relative RMS error of Gaussian weights, about 1.5 times what the reference quantizers give
MAX_REL_RMS = {T.Q2_K: 0.45, T.Q3_K: 0.27, T.Q4_K: 0.14, T.IQ4_NL: 0.14, T.Q5_K: 0.07, T.Q6_K: 0.035}


# ---- the rules, restated from llama.cpp src/llama-quant.cpp (dense model, no importance matrix) ----

def use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


FALLBACK = {T.Q2_K: T.Q4_0, T.Q3_K: T.Q4_0, T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0}


def expected_type(fmt, name, shape, cfg):
    """GGUF type of tensor `name` (PyTorch shape) under format fmt for a model of config cfg."""
    base, ftype = RECIPE[fmt]
    if len(shape) == 1:
        return T.F32
    if base in (T.F32, T.F16, T.BF16):
        return base
    cols, n = shape[-1], cfg["num_hidden_layers"]
    layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
    t = base
    if ftype is not None:
        if name == "output.weight" or (name == "token_embd.weight" and cfg["tie_word_embeddings"]):
            t = T.Q8_0 if cols % BLOCK[base] else (base if base == T.Q8_0 else T.Q6_K)
        elif name.endswith("attn_v.weight"):
            if ftype == "IQ4_NL" and cfg["num_attention_heads"] // cfg["num_key_value_heads"] >= 4:
                t = T.Q5_K
            elif ftype in ("Q4_K_M", "Q5_K_M") and use_more_bits(layer, n):
                t = T.Q6_K
        elif name.endswith("ffn_down.weight"):
            if ftype in ("Q4_K_M", "Q5_K_M") and use_more_bits(layer, n):
                t = T.Q6_K
            elif ftype == "IQ4_NL" and layer < n // 8:
                t = T.Q5_K
    if cols % BLOCK[t]:
        t = FALLBACK.get(t, T.F16)
        if cols % BLOCK[t]:
            t = T.F16
    return t


HF_SUFFIX = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def hf_name(gguf_name):
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    if gguf_name == "output.weight":
        return "lm_head.weight"
    _, layer, suffix, _ = gguf_name.split(".")
    return f"model.layers.{layer}.{HF_SUFFIX[suffix]}.weight"


# ---- helpers ----

def reader(path):
    return gguf.GGUFReader(str(path))


def kvs(r):
    """{key: python value} of every metadata key except the reader's own GGUF.* header fields."""
    out = {}
    for f in r.fields.values():
        if f.name.startswith("GGUF."):
            continue
        out[f.name] = f.contents()
    return out


def tensors(r):
    return {t.name: t for t in r.tensors}


def raw(t):
    return np.asarray(t.data).tobytes()


def shape_of(t):
    return tuple(int(x) for x in reversed(t.shape))  # PyTorch order


def no_leftovers(folder, allowed=()):
    left = sorted(p for p in os.listdir(folder) if p not in allowed)
    assert left == [], f"files left behind in {folder}: {left}"


def convert(run_tandem, src, out, fmt, *extra, check=True):
    return run_tandem("convert", src, "-o", out, *FORMATS[fmt][0], *extra, check=check)


@pytest.fixture(scope="module")
def kquant(tmp_path_factory):
    """The K-quant-shaped tiny model: its folder, config and f32 weights by HF name."""
    folder = tmp_path_factory.mktemp("kquant") / "hf"
    make_kquant_model.write(str(folder))
    with open(folder / "config.json") as f:
        cfg = json.load(f)
    return folder, cfg, load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def kquant_files(kquant, run_tandem, tmp_path_factory):
    """Every format converted once: {fmt: path}."""
    folder, _, _ = kquant
    out = tmp_path_factory.mktemp("kquant_gguf")
    files = {}
    for fmt in FORMATS:
        files[fmt] = out / f"{fmt}.gguf"
        convert(run_tandem, folder, files[fmt], fmt)
    return files


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("text") / "text.txt"
    p.write_text(TEXT * 3, encoding="utf-8")
    return p


# ---- the same file as the gguf-py generator for the same folder ----

@pytest.mark.parametrize("model,fmt,golden", [
    ("tied_gqa2", "f32", "model-f32.gguf"), ("tied_gqa2", "f16", "model-f16.gguf"),
    ("tied_gqa2", "bf16", "model-bf16.gguf"), ("tied_gqa2", "int8", "model-q8_0.gguf"),
    ("untied_gqa1", "f32", "model-f32.gguf"), ("untied_gqa1", "int8", "model-q8_0.gguf"),
    ("untied_gqa4", "f32", "model-f32.gguf"), ("untied_gqa4", "int8", "model-q8_0.gguf"),
])
def test_convert_equals_gguf_py_generator(run_tandem, models_dir, tmp_path, model, fmt, golden):
    out = tmp_path / "out.gguf"
    convert(run_tandem, models_dir / model, out, fmt)
    mine, ref = reader(out), reader(models_dir / model / golden)
    a, b = kvs(mine), kvs(ref)
    assert a.pop("general.name") == model  # the folder's name (the generator used its own label)
    b.pop("general.name")
    assert a == b
    ta, tb = tensors(mine), tensors(ref)
    assert list(ta) == list(tb)  # same names, same order
    for name in tb:
        assert ta[name].tensor_type == tb[name].tensor_type, name
        assert shape_of(ta[name]) == shape_of(tb[name]), name
        assert raw(ta[name]) == raw(tb[name]), name


def test_sharded_checkpoint_converts_like_the_single_file(run_tandem, models_dir, tmp_path):
    convert(run_tandem, models_dir / "sharded", tmp_path / "sharded.gguf", "q4_k_m")
    convert(run_tandem, models_dir / "tied_gqa2", tmp_path / "single.gguf", "q4_k_m")
    ta, tb = tensors(reader(tmp_path / "sharded.gguf")), tensors(reader(tmp_path / "single.gguf"))
    assert list(ta) == list(tb)
    for name in ta:
        assert ta[name].tensor_type == tb[name].tensor_type and raw(ta[name]) == raw(tb[name]), name


def test_bf16_checkpoint_keeps_its_bytes(run_tandem, models_dir, tmp_path):
    folder = models_dir / "bf16"
    out = tmp_path / "bf16.gguf"
    convert(run_tandem, folder, out, "bf16")
    with open(folder / "model.safetensors", "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    for name, t in tensors(reader(out)).items():
        h = header[hf_name(name)]
        b0, b1 = h["data_offsets"]
        src = np.frombuffer(data[b0:b1], dtype=np.uint16)
        if len(h["shape"]) == 1:  # norms: F32, exactly the bf16 values widened
            assert t.tensor_type == T.F32
            assert np.array_equal(np.asarray(t.data).view(np.uint32), src.astype(np.uint32) << 16), name
        else:
            assert t.tensor_type == T.BF16 and raw(t) == src.tobytes(), name


# ---- every format on the K-quant-shaped model: types, bytes, dequantized values, metadata ----

@pytest.mark.parametrize("fmt", list(FORMATS))
def test_types_bytes_and_values(run_tandem, kquant, kquant_files, tmp_path, fmt):
    _, cfg, weights = kquant
    path = kquant_files[fmt]
    r = reader(path)
    meta = kvs(r)
    assert meta["general.file_type"] == FORMATS[fmt][1]
    assert meta["general.quantization_version"] == 2
    assert meta["general.architecture"] == "qwen3"
    assert meta["qwen3.block_count"] == cfg["num_hidden_layers"]
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "qwen2"
    assert meta["tokenizer.ggml.eos_token_id"] == 402 and meta["tokenizer.ggml.bos_token_id"] == 400
    assert meta["tokenizer.ggml.add_bos_token"] is False
    assert "tokenizer.chat_template" in meta and len(meta["tokenizer.ggml.tokens"]) == cfg["vocab_size"]
    # tandem's own dequantization of every tensor of the file, as F32 (tandem quantize dequantizes to f32)
    as_f32 = tmp_path / "as_f32.gguf"
    run_tandem("quantize", path, as_f32, "F32")
    deq = tensors(reader(as_f32))
    seen = set()
    for name, t in tensors(r).items():
        src = weights[hf_name(name)]
        assert shape_of(t) == src.shape, name
        want = expected_type(fmt, name, src.shape, cfg)
        assert t.tensor_type == want, f"{name}: {t.tensor_type.name}, expected {want.name}"
        seen.add(t.tensor_type)
        values = dequantize(np.asarray(t.data), t.tensor_type).reshape(src.shape)
        assert np.array_equal(values, np.asarray(deq[name].data).reshape(src.shape)), name
        if t.tensor_type in GGUF_PY_QUANTIZES:
            assert raw(t) == quantize(src, t.tensor_type).tobytes(), name
        elif t.tensor_type != T.F32:
            err = np.sqrt(np.mean((values - src) ** 2) / np.mean(src ** 2))
            assert err < MAX_REL_RMS[t.tensor_type], f"{name}: {t.tensor_type.name} relative RMS error {err:.3f}"
        else:
            assert np.array_equal(values, src), name
    assert RECIPE[fmt][0] in seen


def test_ratio_keeps_the_most_sensitive_layers_in_q8_0(run_tandem, kquant, tmp_path):
    folder, cfg, weights = kquant
    out = tmp_path / "mixed.gguf"
    convert(run_tandem, folder, out, "int4-sym", "--ratio", "0.7")
    n = cfg["num_hidden_layers"]
    kinds = ["attn_v", "ffn_down", "attn_output", "attn_k", "attn_q", "ffn_up", "ffn_gate"]

    def rank(name):  # the documented order (README: tandem convert --ratio)
        _, layer, kind, _ = name.split(".")
        layer = int(layer)
        v_or_down = kind in ("attn_v", "ffn_down")
        tier = 0 if v_or_down and layer in (0, n - 1) else 1 if v_or_down and use_more_bits(layer, n) else 2
        return (tier, min(layer, n - 1 - layer) if tier == 2 else 0, kinds.index(kind), layer)

    ts = tensors(reader(out))
    layer_mats = sorted((nm for nm in ts if nm.startswith("blk.") and len(ts[nm].shape) == 2), key=rank)
    size = {nm: weights[hf_name(nm)].size for nm in layer_mats}
    total, kept, expect_q8 = sum(size.values()), 0, set()
    for nm in layer_mats:
        if kept >= 0.3 * total:
            break
        expect_q8.add(nm)
        kept += size[nm]
    got_q8 = {nm for nm in layer_mats if ts[nm].tensor_type == T.Q8_0}
    assert got_q8 == expect_q8
    assert {ts[nm].tensor_type for nm in layer_mats if nm not in got_q8} == {T.Q4_0}
    assert ts["output.weight"].tensor_type == T.Q6_K  # the head follows llama.cpp's rule, not the ratio
    assert "blk.0.attn_v.weight" in got_q8 and f"blk.{n - 1}.ffn_down.weight" in got_q8


def test_quantize_equals_converting_directly(run_tandem, kquant_files, tmp_path):
    src = kquant_files["f32"]
    for fmt, gtype in [("q4_k_m", "Q4_K_M"), ("int8", "Q8_0"), ("int4-asym", "Q4_1"), ("nf4", "IQ4_NL")]:
        out = tmp_path / f"{fmt}.gguf"
        run_tandem("quantize", src, out, gtype)
        a, b = reader(out), reader(kquant_files[fmt])
        assert kvs(a) == kvs(b)  # metadata copied, file type updated
        ta, tb = tensors(a), tensors(b)
        for name in tb:
            assert ta[name].tensor_type == tb[name].tensor_type and raw(ta[name]) == raw(tb[name]), (fmt, name)


def test_quantize_copies_tensors_already_of_the_type(run_tandem, kquant_files, tmp_path):
    out = tmp_path / "again.gguf"
    run_tandem("quantize", kquant_files["int8"], out, "Q8_0")
    ta, tb = tensors(reader(out)), tensors(reader(kquant_files["int8"]))
    assert all(raw(ta[n]) == raw(tb[n]) for n in tb)
    # and from a quantized file to another type: Q8_0 → Q4_0 equals gguf-py on the Q8_0-dequantized values
    out2 = tmp_path / "q4_0.gguf"
    run_tandem("quantize", kquant_files["int8"], out2, "Q4_0")
    t2 = tensors(reader(out2))
    for name, t in tb.items():
        if t2[name].tensor_type == T.Q4_0:
            values = dequantize(np.asarray(t.data), t.tensor_type).reshape(shape_of(t))
            assert raw(t2[name]) == quantize(values, T.Q4_0).tobytes(), name


# ---- quality: KL divergence ordering, greedy agreement, perplexity ----

def kld(run_tandem, model, ref, text_file, *extra):
    cp = run_tandem("kld", "-m", model, "--ref", ref, "-f", text_file, "--ctx", "128", "--json", *extra)
    return json.loads(cp.stdout.strip().splitlines()[-1])


# exact: f32 activations (the weights' error alone); default: 8-bit activations where the CPU has them
@pytest.mark.parametrize("path", [["--exact"], []], ids=["exact", "default"])
def test_kld_ordering_q8_0_q6_k_q5_k_m_q4_k_m(run_tandem, kquant, kquant_files, text_file, path):
    folder = kquant[0]
    res = {fmt: kld(run_tandem, kquant_files[fmt], folder, text_file, *path)
           for fmt in ("int8", "q6_k", "q5_k_m", "q4_k_m")}
    order = [res[f]["kld_mean"] for f in ("int8", "q6_k", "q5_k_m", "q4_k_m")]
    print("KLD Q8_0, Q6_K, Q5_K_M, Q4_K_M:", order,
          "top-1:", [res[f]["top1_agreement"] for f in ("int8", "q6_k", "q5_k_m", "q4_k_m")])
    assert 0 < order[0] < order[1] < order[2] < order[3]
    # the difference between neighbours is far outside the noise of the mean
    for a, b in zip(("int8", "q6_k", "q5_k_m"), ("q6_k", "q5_k_m", "q4_k_m")):
        assert res[b]["kld_mean"] - res[a]["kld_mean"] > 3 * (res[a]["kld_stderr"] + res[b]["kld_stderr"])
    assert res["int8"]["top1_agreement"] > 0.98
    f32 = kld(run_tandem, kquant_files["f32"], folder, text_file)  # the converted F32 file is the checkpoint
    assert f32["kld_mean"] < 1e-9 and f32["top1_agreement"] == 1.0
    assert f32["perplexity"] == pytest.approx(f32["ref_perplexity"], rel=1e-9)


GREEDY_PROMPTS = ["In the evening the rain stopped.", "By noon the council", "The baker kept his ovens"]


def greedy(run_tandem, model, prompt, *extra, n=16):
    cp = run_tandem("run", "-m", model, "-p", prompt, "-n", str(n), "--temp", "0", "--ignore-eos", "--json", *extra)
    return json.loads(cp.stdout.strip().splitlines()[-1])["generated_ids"]


@pytest.mark.parametrize("path", [["--exact"], []], ids=["exact", "default"])
@pytest.mark.parametrize("prompt", GREEDY_PROMPTS)
def test_q8_0_greedy_equals_f32(run_tandem, kquant, kquant_files, prompt, path):
    ref = greedy(run_tandem, kquant[0], prompt, *path)
    got = greedy(run_tandem, kquant_files["int8"], prompt, *path)
    assert got[:8] == ref[:8]
    agree = {fmt: next((i for i, (a, b) in enumerate(zip(greedy(run_tandem, kquant_files[fmt], prompt, *path), ref))
                        if a != b), 16) for fmt in ("q6_k", "q5_k_m", "q4_k_m", "int4-sym", "nf4")}
    print(f"{path} {prompt!r}: greedy tokens equal to F32 before the first difference: Q8_0 "
          f"{next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), 16)}, {agree}")


def test_perplexity_command_agrees_with_kld(run_tandem, kquant, kquant_files, text_file):
    cp = run_tandem("perplexity", "-m", kquant_files["q4_k_m"], "-f", text_file, "--ctx", "128", "--json")
    p = json.loads(cp.stdout.strip().splitlines()[-1])
    k = kld(run_tandem, kquant_files["q4_k_m"], kquant[0], text_file)
    n_tokens = len(run_tandem("tokenize", "-m", kquant[0], "-f", text_file).stdout.split())
    assert p["chunks"] == k["chunks"] == n_tokens // 128
    assert p["scored_tokens"] == p["chunks"] * (128 - 1 - 64)
    assert p["perplexity"] == pytest.approx(k["perplexity"], rel=1e-9)
    text = run_tandem("perplexity", "-m", kquant_files["q4_k_m"], "-f", text_file, "--ctx", "128").stdout
    assert "perplexity:" in text


def test_perplexity_text_too_short_is_an_error(run_tandem, models_dir, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("Hello there.")
    cp = run_tandem("perplexity", "-m", models_dir / "tied_gqa2", "-f", short, "--ctx", "64", check=False)
    assert cp.returncode == 1 and "fewer than one chunk" in cp.stderr


# ---- bad input: a clear error naming the file/tensor, exit 1, nothing left behind ----

def copy_model(models_dir, name, dst):
    shutil.copytree(models_dir / name, dst, ignore=shutil.ignore_patterns("*.gguf", "reference-*"))
    return dst


def expect_convert_error(run_tandem, src, tmp_path, *needles, fmt="int4-sym"):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cp = convert(run_tandem, src, out_dir / "model.gguf", fmt, check=False)
    assert cp.returncode == 1, cp.stderr
    for n in needles:
        assert n in cp.stderr, cp.stderr
    no_leftovers(out_dir)
    return cp.stderr


def test_convert_bad_missing_shard(run_tandem, models_dir, tmp_path):
    src = copy_model(models_dir, "sharded", tmp_path / "hf")
    os.remove(src / "model-00002-of-00003.safetensors")
    expect_convert_error(run_tandem, src, tmp_path, "model-00002-of-00003.safetensors")


def test_convert_bad_shape_against_config(run_tandem, models_dir, tmp_path):
    src = copy_model(models_dir, "tied_gqa2", tmp_path / "hf")
    cfg = json.loads((src / "config.json").read_text())
    cfg["intermediate_size"] = 160
    (src / "config.json").write_text(json.dumps(cfg))
    expect_convert_error(run_tandem, src, tmp_path, "model.layers.0.mlp.gate_proj.weight", "expected [160, 64]")


def rewrite_weights(src, change):
    st = load_file(str(src / "model.safetensors"))
    change(st)
    save_file(st, str(src / "model.safetensors"), metadata={"format": "pt"})


def test_convert_bad_unsupported_dtype(run_tandem, models_dir, tmp_path):
    src = copy_model(models_dir, "tied_gqa2", tmp_path / "hf")
    rewrite_weights(src, lambda st: st.update({"model.layers.1.self_attn.k_proj.weight":
                                               st["model.layers.1.self_attn.k_proj.weight"].astype(np.int32)}))
    expect_convert_error(run_tandem, src, tmp_path, "model.layers.1.self_attn.k_proj.weight", "I32")


def test_convert_bad_unknown_tensor_name(run_tandem, models_dir, tmp_path):
    src = copy_model(models_dir, "tied_gqa2", tmp_path / "hf")
    rewrite_weights(src, lambda st: st.update({"model.layers.0.mlp.extra_proj.weight": np.zeros((4, 64), np.float32)}))
    expect_convert_error(run_tandem, src, tmp_path, "model.layers.0.mlp.extra_proj.weight", "unknown tensor")


@pytest.mark.parametrize("value,fmt", [(np.nan, "int4-sym"), (np.inf, "f16"), (3e9, "q4_k_m")])
def test_convert_bad_values_are_refused(run_tandem, models_dir, tmp_path, value, fmt):
    src = copy_model(models_dir, "tied_gqa2", tmp_path / "hf")

    def poison(st):
        w = st["model.layers.1.mlp.up_proj.weight"].copy()
        w[5, 7] = value
        st["model.layers.1.mlp.up_proj.weight"] = w
    rewrite_weights(src, poison)
    expect_convert_error(run_tandem, src, tmp_path, "model.layers.1.mlp.up_proj.weight", "row 5", fmt=fmt)


def test_convert_bad_folder_and_format(run_tandem, models_dir, tmp_path):
    cp = run_tandem("convert", tmp_path / "nowhere", "-o", tmp_path / "x.gguf", check=False)
    assert cp.returncode == 1 and "nowhere" in cp.stderr
    cp = run_tandem("convert", models_dir / "tied_gqa2", "-o", tmp_path / "x.gguf", "--weight-format", "int3",
                    check=False)
    assert cp.returncode == 2 and "int3" in cp.stderr
    cp = run_tandem("convert", models_dir / "tied_gqa2", "-o", tmp_path / "x.gguf", "--weight-format", "f16",
                    "--sym", check=False)
    assert cp.returncode == 2 and "int4" in cp.stderr
    cp = run_tandem("convert", models_dir / "tied_gqa2", "-o", tmp_path / "x.gguf", "--weight-format", "int8",
                    "--ratio", "0.5", check=False)
    assert cp.returncode == 1 and "ratio" in cp.stderr
    no_leftovers(tmp_path)


def test_quantize_bad_input_file(run_tandem, models_dir, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cp = run_tandem("quantize", models_dir / "tied_gqa2" / "config.json", out_dir / "q.gguf", "Q4_0", check=False)
    assert cp.returncode == 1 and "config.json" in cp.stderr
    cp = run_tandem("quantize", models_dir / "tied_gqa2" / "model-f32.gguf", out_dir / "q.gguf", "Q7", check=False)
    assert cp.returncode == 2 and "Q7" in cp.stderr
    no_leftovers(out_dir)


# ---- existing outputs are not overwritten without --force ----

@pytest.mark.parametrize("cmd", ["convert", "quantize"])
def test_force_needed_to_overwrite(run_tandem, models_dir, tmp_path, cmd):
    out = tmp_path / "exists.gguf"
    out.write_bytes(b"precious")
    args = (["convert", models_dir / "tied_gqa2", "-o", out, "--weight-format", "int8"] if cmd == "convert" else
            ["quantize", models_dir / "tied_gqa2" / "model-f32.gguf", out, "Q8_0"])
    cp = run_tandem(*args, check=False)
    assert cp.returncode == 1 and str(out) in cp.stderr and "already exists" in cp.stderr
    assert out.read_bytes() == b"precious"
    run_tandem(*args, "--force")
    assert kvs(reader(out))["general.file_type"] == 7
    no_leftovers(tmp_path, allowed=("exists.gguf",))


# ---- progress bar: on a terminal only ----

def test_progress_bar_absent_in_pipes(run_tandem, models_dir, tmp_path):
    cp = run_tandem("convert", models_dir / "tied_gqa2", "-o", tmp_path / "p.gguf", "--weight-format", "q4_k_m")
    assert "\r" not in cp.stderr and "ETA" not in cp.stderr and "[" not in cp.stderr
    assert cp.stderr.startswith("tandem convert: wrote")


def test_progress_bar_on_a_terminal(tandem_bin, models_dir, tmp_path):
    pid, fd = pty.fork()
    if pid == 0:  # the child's stdin/stdout/stderr are the pty
        os.execv(str(tandem_bin), [str(tandem_bin), "convert", str(models_dir / "tied_gqa2"), "-o",
                                   str(tmp_path / "tty.gguf"), "--weight-format", "q4_k_m"])
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    text = out.decode("utf-8", "replace")
    assert os.WEXITSTATUS(status) == 0, text
    assert "\r" in text and "convert" in text and "100%" in text and "ETA" in text


@pytest.mark.parametrize("cmd", ["convert", "quantize", "perplexity", "kld"])
def test_help_of_the_new_commands(run_tandem, cmd):
    assert run_tandem(cmd, "--help").stdout.startswith("usage: tandem " + cmd)
    assert cmd in run_tandem("--help").stdout


@pytest.mark.parametrize("args,needle", [
    (["convert", "x"], "missing -o"),
    (["convert", "-o", "x.gguf"], "missing HF_DIR"),
    (["quantize", "a.gguf", "b.gguf"], "expected IN.gguf OUT.gguf TYPE"),
    (["kld", "-m", "x", "-f", "t"], "missing --ref"),
    (["perplexity", "-m", "x"], "missing -f"),
    (["perplexity", "-m", "x", "-f", "t", "--ctx", "2"], "outside"),
])
def test_usage_errors_of_the_new_commands(run_tandem, args, needle):
    cp = run_tandem(*args, check=False)
    assert cp.returncode == 2 and needle in cp.stderr, cp.stderr


def test_real_qwen3_tokenizer_keys(run_tandem, qwen3_tokenizer_dir, tmp_path):
    """A checkpoint with the real Qwen3 tokenizer (151,936 rows): the tokenizer keys are what the gguf-py
    helper (tests/gen/qwen3_gguf.py, llama.cpp's converter rules) derives from the same files."""
    import qwen3_gguf
    folder = tmp_path / "hf"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(qwen3_tokenizer_dir / name, folder / name)
    cfg = {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
           "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32, "vocab_size": 151936,
           "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
           "tie_word_embeddings": True, "bos_token_id": 151643, "eos_token_id": 151645}
    (folder / "config.json").write_text(json.dumps(cfg))
    rng = np.random.default_rng(1)
    hp = dict(cfg)
    st = {h: (rng.standard_normal(s) * 0.1).astype(np.float16) for _, h, s in qwen3_gguf.tensor_layout(hp)}
    save_file(st, str(folder / "model.safetensors"))
    out = tmp_path / "real.gguf"
    run_tandem("convert", folder, "-o", out, "--weight-format", "f16", timeout=300)
    meta = kvs(reader(out))
    tok_json = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    tok_cfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokens, types, merges, ids = qwen3_gguf.gguf_vocab(tok_json, cfg["vocab_size"])
    assert meta["tokenizer.ggml.tokens"] == tokens
    assert meta["tokenizer.ggml.token_type"] == types
    assert meta["tokenizer.ggml.merges"] == merges
    assert meta["tokenizer.ggml.eos_token_id"] == ids[tok_cfg["eos_token"]] == 151645
    assert meta["tokenizer.ggml.padding_token_id"] == ids[tok_cfg["pad_token"]] == 151643
    assert meta["tokenizer.ggml.bos_token_id"] == 151643
    assert meta["tokenizer.ggml.add_bos_token"] is False
    if tok_cfg.get("chat_template"):
        assert meta["tokenizer.chat_template"] == tok_cfg["chat_template"]
    # and tandem tokenizes with the converted file exactly as with the folder
    text = "Hello, world! 你好 <think>x</think> 12345"
    a = run_tandem("tokenize", "-m", out, "--text", text).stdout
    b = run_tandem("tokenize", "-m", folder, "--text", text).stdout
    assert a == b and len(a.split()) > 5


# ---- llama.cpp interop (only where a llama.cpp build is named: TANDEM_LLAMA_CPP_BIN=<llama.cpp>/build/bin) ----

def llama_bin(name):
    d = os.environ.get("TANDEM_LLAMA_CPP_BIN")
    if not d or not os.path.isfile(os.path.join(d, name)):
        pytest.skip(f"set TANDEM_LLAMA_CPP_BIN to a llama.cpp build's bin folder holding {name}")
    return os.path.join(d, name)


@pytest.mark.parametrize("gtype", ["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL"])
def test_llama_quantize_writes_the_same_file(run_tandem, kquant_files, tmp_path, gtype):
    exe = llama_bin("llama-quantize")
    theirs, ours = tmp_path / "llama.gguf", tmp_path / "tandem.gguf"
    cp = subprocess.run([exe, str(kquant_files["f32"]), str(theirs), gtype, "2"], capture_output=True, text=True,
                        timeout=300)
    assert cp.returncode == 0, cp.stderr[-2000:]
    run_tandem("quantize", kquant_files["f32"], ours, gtype)
    a, b = reader(theirs), reader(ours)
    assert kvs(a) == kvs(b)
    ta, tb = tensors(a), tensors(b)
    assert sorted(ta) == sorted(tb)  # llama-quantize writes them sorted by name
    for name in ta:
        assert ta[name].tensor_type == tb[name].tensor_type and raw(ta[name]) == raw(tb[name]), name


def test_llama_perplexity_agrees(run_tandem, kquant_files, text_file, tmp_path):
    import re
    exe = llama_bin("llama-perplexity")
    # into files: llama.cpp's log thread does not always flush its last lines into a pipe before exiting
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        cp = subprocess.run([exe, "-m", str(kquant_files["f32"]), "-f", str(text_file), "-c", "128", "-t", "2"],
                            stdout=out, stderr=err, timeout=600)
    assert cp.returncode == 0, (tmp_path / "err").read_text()[-2000:]
    # the running estimate after each chunk: "[1]3262.1486,[2]…,[20]3212.0086,"; the last is the final one
    running = re.findall(r"\[(\d+)\]([0-9.]+),", (tmp_path / "out").read_text())
    assert running and running[-1][0] == "20", running
    theirs = float(running[-1][1])
    out = run_tandem("perplexity", "-m", kquant_files["f32"], "-f", text_file, "--ctx", "128", "--json").stdout
    ours = json.loads(out.strip().splitlines()[-1])
    assert ours["chunks"] == 20
    assert ours["perplexity"] == pytest.approx(theirs, rel=1e-3)
