#!/usr/bin/env python3
"""make_quant_golden.py — reference blocks for tandem's quantized types: gguf-py's numpy quantize/dequantize
(and, optionally, ggml's own C quantizer) on seeded inputs. Writes tests/golden/quant/<TYPE>.safetensors and
tests/golden/quant/versions.json, read by tests/unit/test_quant.c.

Per type the file holds:
  x        f32 (N,)    the input rows laid end to end (lengths in "rows"); every row is whole super-blocks
  rows     i64 (R,)    row lengths: six rows of 768 (zeros, one huge outlier, per-block scales from 1e-16 to
                       1e-3, plain normal, heavy-tailed, mixed block shapes) and a weight-like row of 4096
  q        u8          gguf.quants.quantize(x) — only for the types gguf-py can quantize
  deq      f32 (N,)    gguf.quants.dequantize(q)
  q_ggml   u8          ggml_quantize_chunk(x, imatrix = NULL) from a libggml-base build — what llama-quantize
                       writes without an importance matrix (only when --ggml-lib is given)
  raw      u8          random bytes forming valid blocks (every f16 scale field forced finite)
  raw_deq  f32         gguf.quants.dequantize(raw)
  type_info i64 (3,)   [ggml type id, elements per block, bytes per block] from gguf.GGML_QUANT_SIZES

Run from anywhere:  python3 tests/gen/make_quant_golden.py --ggml-lib /path/to/libggml-base.so
(libggml-base.so ships prebuilt in the npm package @node-llama-cpp/linux-x64: `npm install --no-save
--ignore-scripts @node-llama-cpp/linux-x64@3.22.1` in a scratch folder, then pass
node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so). Without the library pass
--without-ggml: the files then lack q_ggml and test_quant checks only error bounds for the types gguf-py
cannot quantize (the K-quants and IQ4_NL). Needs numpy, gguf and safetensors."""
import argparse
import ctypes
import hashlib
import json
import pathlib

import gguf
import numpy as np
import safetensors
import safetensors.numpy

SEED = 20250611
OUT = pathlib.Path(__file__).resolve().parents[1] / "golden" / "quant"
Q = gguf.GGMLQuantizationType

# the weight types tandem runs, and the byte offsets of each block's f16 fields (scales / mins)
TYPES = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "IQ4_NL": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}
RAW_ELEMENTS = 2048  # 64 blocks of 32 or 8 super-blocks of 256


def input_rows(rng):
    """The rows every type quantizes; each a multiple of 256 long, so of every block size."""
    n = 768
    rows = [np.zeros(n, np.float32)]
    x = rng.standard_normal(n).astype(np.float32)
    x[100] = 1e4  # one huge outlier: its block's scale dwarfs the rest
    rows.append(x)
    # per-32-block scales from 1e-16 (below ggml's GROUP_MAX_EPS) to 1e-3: f16 scales that underflow or
    # are subnormal
    scales = np.repeat(np.logspace(-16, -3, n // 32), 32)
    rows.append((rng.standard_normal(n) * scales).astype(np.float32))
    rows.append(rng.standard_normal(n).astype(np.float32))
    rows.append((rng.standard_t(3, n) * 0.05).astype(np.float32))
    mixed = []
    for b in range(n // 32):  # block shapes that take the quantizers' special paths
        kind = b % 6
        if kind == 0: mixed.append(rng.random(32) + 0.5)                  # all positive (min > 0)
        elif kind == 1: mixed.append(-rng.random(32) - 0.5)               # all negative
        elif kind == 2: mixed.append(np.full(32, 0.3125))                 # constant
        elif kind == 3: mixed.append(rng.integers(-4, 4, 32).astype(float))  # exact small integers
        elif kind == 4:                                                   # half zeros
            v = rng.standard_normal(32)
            v[rng.random(32) < 0.5] = 0
            mixed.append(v)
        else: mixed.append(rng.standard_normal(32) * 1e3)                 # large
    rows.append(np.concatenate(mixed).astype(np.float32))
    # a weight-like row of a real model's width: N(0, 0.02) with rare 10x outliers
    w = rng.standard_normal(4096) * 0.02
    w[rng.random(4096) < 0.002] *= 10
    rows.append(w.astype(np.float32))
    return rows


def random_blocks(rng, name, f16_offsets):
    """Random bytes as blocks of `name`, with every f16 field made finite (exponent 31 replaced)."""
    bs, ts = gguf.GGML_QUANT_SIZES[Q[name]]
    nb = RAW_ELEMENTS // bs
    raw = rng.integers(0, 256, size=(nb, ts), dtype=np.uint8)
    for off in f16_offsets:
        h = raw[:, off:off + 2].copy().view(np.uint16)[:, 0]
        bad = (h & 0x7C00) == 0x7C00
        h[bad] = (h[bad] & 0x83FF) | (rng.integers(0, 31, size=int(bad.sum())).astype(np.uint16) << 10)
        raw[:, off:off + 2] = h.view(np.uint8).reshape(nb, 2)
    return raw.reshape(-1)


class Ggml:
    """ggml_quantize_chunk from a libggml-base shared library, with no importance matrix."""

    def __init__(self, path):
        self.path = pathlib.Path(path).resolve()
        self.lib = ctypes.CDLL(str(self.path))
        self.lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        self.lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                                 ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]

    def quantize(self, x, name):
        bs, ts = gguf.GGML_QUANT_SIZES[Q[name]]
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.zeros(len(x) // bs * ts, np.uint8)
        n = self.lib.ggml_quantize_chunk(int(Q[name]), x.ctypes.data, out.ctypes.data, 0, 1, len(x), None)
        assert n == len(out), (name, n, len(out))
        return out

    def provenance(self):
        info = {"library": self.path.name, "sha256": hashlib.sha256(self.path.read_bytes()).hexdigest(),
                "function": "ggml_quantize_chunk(type, x, out, 0, 1, n, imatrix = NULL)"}
        pkg = self.path.parents[2] / "package.json"  # node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/
        if pkg.is_file():
            meta = json.loads(pkg.read_text())
            info["package"] = f"npm {meta.get('name')}@{meta.get('version')}"
        build = self.path.parent / "_nlcBuildMetadata.json"
        if build.is_file():
            info["llama_cpp"] = json.loads(build.read_text()).get("buildOptions", {}).get("llamaCpp")
        return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--ggml-lib", help="path to libggml-base.so (adds q_ggml for every type)")
    g.add_argument("--without-ggml", action="store_true", help="write the files without q_ggml")
    args = ap.parse_args()
    ggml = Ggml(args.ggml_lib) if args.ggml_lib else None

    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    rows = input_rows(rng)
    x = np.concatenate(rows)
    lengths = np.array([len(r) for r in rows], np.int64)
    summary = {}
    for name, f16_offsets in TYPES.items():
        qt = Q[name]
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        t = {"x": x, "rows": lengths, "type_info": np.array([int(qt), bs, ts], np.int64)}
        try:
            q = gguf.quants.quantize(x.reshape(1, -1), qt).reshape(-1)
            t["q"] = q
            t["deq"] = gguf.quants.dequantize(q, qt).reshape(-1).astype(np.float32)
        except NotImplementedError:
            pass
        if ggml:
            t["q_ggml"] = ggml.quantize(x, name)
        raw = random_blocks(np.random.default_rng([SEED, int(qt)]), name, f16_offsets)
        t["raw"] = raw
        t["raw_deq"] = gguf.quants.dequantize(raw, qt).reshape(-1).astype(np.float32)
        assert np.isfinite(t["raw_deq"]).all(), name
        if "q" in t and "q_ggml" in t:  # the two oracles must agree where both quantize
            assert np.array_equal(t["q"], t["q_ggml"]), f"{name}: gguf-py and ggml disagree"
        safetensors.numpy.save_file(t, OUT / f"{name}.safetensors")
        summary[name] = {"q_gguf": "q" in t, "q_ggml": "q_ggml" in t}

    versions = {
        "generator": "tests/gen/make_quant_golden.py",
        "regenerate": "python3 tests/gen/make_quant_golden.py --ggml-lib <libggml-base.so>  (see the script)",
        "seed": SEED,
        "numpy": np.__version__,
        "gguf": gguf.__version__ if hasattr(gguf, "__version__") else _dist_version("gguf"),
        "safetensors": safetensors.__version__,
        "ggml": ggml.provenance() if ggml else None,
        "types": summary,
        # gguf-py's type table, for test_quant's check of tandem's (gguf-py lists Q8_1 as 40 bytes; the
        # C struct, and tandem, say 36 — the test skips that one)
        "ggml_quant_sizes": {k.name: list(v) for k, v in gguf.GGML_QUANT_SIZES.items()},
    }
    (OUT / "versions.json").write_text(json.dumps(versions, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(TYPES)} types to {OUT} ({total} bytes)")


def _dist_version(name):
    from importlib.metadata import version
    return version(name)


if __name__ == "__main__":
    main()
