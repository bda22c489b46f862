#!/usr/bin/env python3
# make_gguf_golden.py — writes tests/golden/gguf/all_types.gguf with the reference `gguf` package, plus
# all_types.json describing every kv and tensor in it, so test_gguf.c can check tandem's reader against it.
"""Regenerate with:  python3 tests/gen/make_gguf_golden.py  (from the repository root).

The file holds every scalar metadata type, arrays of every fixed-size type plus bools and strings
(non-ASCII, empty, with an embedded NUL), tensors of F32, F16, BF16, I32, Q8_0 and Q4_0 with one to four
dimensions, and a custom general.alignment of 64 (so a non-default alignment is covered; tandem's own
writer and the interop test cover the default 32).

JSON conventions (chosen so jansson in the C test reads every value exactly):
  * UINT64 values (scalars and array elements) are decimal strings: JSON parsers stop at int64.
  * FLOAT32 values are the float32 widened to a double; FLOAT64 values are exact doubles.
  * STRING values are the decoded UTF-8 text (an embedded NUL appears as \\u0000).
  * each tensor has sha256 and fnv1a64 (hex string) of its data bytes; the C test uses fnv1a64.
"""
import hashlib
import importlib.metadata
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as V

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "..", "golden", "gguf")
ALIGNMENT = 64


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def f32(x: float) -> float:
    """The value a FLOAT32 field really holds, as a Python float."""
    return float(np.float32(x))


# key, value type, value (array entries add the element type). Order = file order.
SCALARS = [
    ("test.u8", V.UINT8, 200),
    ("test.i8", V.INT8, -100),
    ("test.u16", V.UINT16, 60000),
    ("test.i16", V.INT16, -30000),
    ("test.u32", V.UINT32, 4000000000),
    ("test.i32", V.INT32, -2000000000),
    ("test.f32", V.FLOAT32, f32(3.14159)),
    ("test.bool_true", V.BOOL, True),
    ("test.bool_false", V.BOOL, False),
    ("test.string", V.STRING, "Grüße, 世界 🙂"),
    ("test.string_empty", V.STRING, ""),
    ("test.string_nul", V.STRING, "a\x00b"),
    ("test.u64", V.UINT64, 0xFEDCBA9876543210),
    ("test.i64", V.INT64, -0x123456789ABCDEF),
    ("test.f64", V.FLOAT64, 2.718281828459045),
    ("test.f32_tiny", V.FLOAT32, f32(-1.5e-8)),
]
ARRAYS = [
    ("test.arr_u8", V.UINT8, [0, 1, 255]),
    ("test.arr_i8", V.INT8, [-128, 0, 127]),
    ("test.arr_u16", V.UINT16, [0, 65535, 1234]),
    ("test.arr_i16", V.INT16, [-32768, 32767]),
    ("test.arr_u32", V.UINT32, [0, 4294967295, 7]),
    ("test.arr_i32", V.INT32, [-5, 0, 7, 2147483647, -2147483648]),
    ("test.arr_u64", V.UINT64, [0, 2**64 - 1, 2**40]),
    ("test.arr_i64", V.INT64, [-(2**63), 2**63 - 1, -1]),
    ("test.arr_f32", V.FLOAT32, [f32(0.5), f32(-1.25), f32(1e-7), f32(65504.0)]),
    ("test.arr_f64", V.FLOAT64, [0.1, -2.5e300, 5e-324]),
    ("test.arr_bool", V.BOOL, [True, False, True, True]),
    ("test.arr_str", V.STRING, ["hello", "", "Grüße", "世界", "🙂", "tab\tnewline\n"]),
    ("test.arr_one", V.INT32, [42]),
]


def make_tensors(rng):
    """name -> (ggml type, PyTorch-order shape, bytes)."""
    out = []

    def add(name, qtype, shape, data: np.ndarray):
        out.append((name, qtype, shape, np.ascontiguousarray(data)))

    add("t.f32", Q.F32, (3, 4), rng.standard_normal((3, 4)).astype(np.float32))
    add("t.f16", Q.F16, (5,), rng.standard_normal(5).astype(np.float16))
    add("t.f16_3d", Q.F16, (2, 2, 8), rng.standard_normal((2, 2, 8)).astype(np.float16))
    add("t.f32_4d", Q.F32, (2, 3, 1, 4), rng.standard_normal((2, 3, 1, 4)).astype(np.float32))
    add("t.i32", Q.I32, (5,), np.array([1, -2, 3, 2**31 - 1, -(2**31)], dtype=np.int32))
    if hasattr(gguf.quants, "BF16"):
        add("t.bf16", Q.BF16, (2, 8),
            gguf.quants.quantize(rng.standard_normal((2, 8)).astype(np.float32), Q.BF16))
    add("t.q8_0", Q.Q8_0, (2, 64),
        gguf.quants.quantize(rng.standard_normal((2, 64)).astype(np.float32), Q.Q8_0))
    add("t.q4_0", Q.Q4_0, (3, 32),
        gguf.quants.quantize(rng.standard_normal((3, 32)).astype(np.float32), Q.Q4_0))
    return out


def json_value(vtype, value):
    if vtype == V.UINT64:
        return str(value)
    return value


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    gguf_path = os.path.join(OUT_DIR, "all_types.gguf")
    json_path = os.path.join(OUT_DIR, "all_types.json")
    rng = np.random.default_rng(1234)
    tensors = make_tensors(rng)

    w = gguf.GGUFWriter(gguf_path, arch="tandem-test")  # adds general.architecture first
    w.add_custom_alignment(ALIGNMENT)                    # general.alignment (UINT32)
    for key, vtype, value in SCALARS:
        # add_key_value directly: add_string skips empty strings, and bytes keep the embedded NUL as is
        w.add_key_value(key, value.encode("utf-8") if vtype == V.STRING else value, vtype)
    for key, etype, values in ARRAYS:
        w.add_key_value(key, values, V.ARRAY, sub_type=etype)
    for name, qtype, shape, data in tensors:
        if data.dtype == np.uint8:  # quantized bytes: the writer derives the element shape
            w.add_tensor(name, data, raw_dtype=qtype)
        else:
            w.add_tensor(name, data, raw_dtype=qtype if qtype == Q.I32 else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # Describe the file as the reference reader sees it (offsets, data start), cross-checked against
    # what was written.
    r = gguf.GGUFReader(gguf_path)
    kvs = [
        {"key": "general.architecture", "type": "STRING", "value": "tandem-test"},
        {"key": "general.alignment", "type": "UINT32", "value": ALIGNMENT},
    ]
    kvs += [{"key": k, "type": t.name, "value": json_value(t, v)} for k, t, v in SCALARS]
    kvs += [{"key": k, "type": "ARRAY", "array_type": t.name, "value": [json_value(t, x) for x in v]}
            for k, t, v in ARRAYS]
    keys_in_file = [k for k in r.fields if not k.startswith("GGUF.")]
    assert keys_in_file == [kv["key"] for kv in kvs], keys_in_file

    tensor_json = []
    assert len(r.tensors) == len(tensors)
    for rt, (name, qtype, shape, data) in zip(r.tensors, tensors):
        raw = data.tobytes()
        assert rt.name == name and int(rt.tensor_type) == int(qtype) and rt.n_bytes == len(raw)
        assert bytes(r.data[rt.data_offset:rt.data_offset + rt.n_bytes]) == raw
        tensor_json.append({
            "name": name,
            "type": int(qtype),
            "type_name": qtype.name,
            "ne": [int(x) for x in rt.shape],  # innermost first, as stored
            "offset": int(rt.data_offset - r.data_offset),
            "nbytes": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "fnv1a64": fnv1a64(raw),
        })

    desc = {
        "generator": "tests/gen/make_gguf_golden.py",
        "gguf_package_version": importlib.metadata.version("gguf"),
        "numpy_version": np.__version__,
        "version": 3,
        "alignment": ALIGNMENT,
        "data_start": int(r.data_offset),
        "file_size": os.path.getsize(gguf_path),
        "kv": kvs,
        "tensors": tensor_json,
    }
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(desc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {gguf_path} ({desc['file_size']} bytes) and {json_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
