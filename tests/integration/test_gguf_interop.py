# test_gguf_interop.py — a GGUF written by tandem's writer must read back in the reference `gguf` package.
# Builds nothing: runs the already-built test_gguf binary with TANDEM_GGUF_OUT set, which makes it write the file.
"""What the binary writes (see export_for_interop in tests/unit/test_gguf.c):
  * every kv of tests/golden/gguf/all_types.gguf except general.alignment (copied with gguf_writer_copy_kv),
    with general.architecture then overwritten to "qwen3";
  * the sample kvs tandem.* set through the writer's typed setters;
  * the sample tensors own.* and then every tensor of the golden file.
The build folder is $TANDEM_BUILD_DIR, else the folder of $TANDEM_BIN (the CLI sits at the build root),
else build/; relative paths are taken from the repository root, as conftest.py does.
"""
import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGUFValueType as V  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = ROOT / "tests" / "golden"
GOLDEN_JSON = GOLDEN_DIR / "gguf" / "all_types.json"


def find_test_binary():
    if os.environ.get("TANDEM_BUILD_DIR"):
        binary = ROOT / os.environ["TANDEM_BUILD_DIR"] / "tests" / "test_gguf"  # ROOT / absolute = absolute
        if not binary.exists():
            pytest.fail(f"{binary} does not exist (TANDEM_BUILD_DIR is set): build the test_gguf target")
        return binary
    build = ROOT / os.environ["TANDEM_BIN"] if os.environ.get("TANDEM_BIN") else ROOT / "build" / "tandem"
    binary = build.parent / "tests" / "test_gguf"
    if not binary.exists():
        pytest.skip(f"{binary} is not built; set TANDEM_BUILD_DIR to the CMake build folder")
    return binary


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf_interop") / "tandem_written.gguf"
    env = dict(os.environ, TANDEM_GGUF_OUT=str(out))
    proc = subprocess.run([str(find_test_binary()), str(GOLDEN_DIR)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.exists()
    return gguf.GGUFReader(out), out


@pytest.fixture(scope="module")
def golden():
    with open(GOLDEN_JSON, encoding="utf-8") as f:
        return json.load(f)


def raw_bytes(reader, tensor):
    return bytes(reader.data[tensor.data_offset:tensor.data_offset + tensor.n_bytes])


def test_layout(exported):
    reader, path = exported
    assert reader.fields["GGUF.version"].contents() == 3
    assert "general.alignment" not in reader.fields
    assert reader.alignment == 32
    assert reader.data_offset % 32 == 0
    ends = []
    for t in reader.tensors:
        assert (t.data_offset - reader.data_offset) % 32 == 0, t.name
        ends.append(t.data_offset + t.n_bytes)
    # tandem pads after every tensor, the last included, like gguf-py
    assert os.path.getsize(path) == reader.data_offset + sum((t.n_bytes + 31) // 32 * 32 for t in reader.tensors)
    assert max(ends) <= os.path.getsize(path)


def expected_json_value(vtype, value):
    return int(value) if vtype == "UINT64" else value


def test_copied_kvs(exported, golden):
    reader, _ = exported
    for kv in golden["kv"]:
        if kv["key"] in ("general.alignment", "general.architecture"):
            continue
        field = reader.fields[kv["key"]]
        assert field.types[0] == V[kv["type"]], kv["key"]
        if kv["type"] == "ARRAY":
            assert field.types[-1] == V[kv["array_type"]], kv["key"]
            want = [expected_json_value(kv["array_type"], x) for x in kv["value"]]
        else:
            want = expected_json_value(kv["type"], kv["value"])
        assert field.contents() == want, kv["key"]


def test_own_kvs(exported):
    reader, _ = exported
    f = reader.fields
    want = {
        "general.architecture": (V.STRING, "qwen3"),
        "tandem.u32": (V.UINT32, 123456789),
        "tandem.i32": (V.INT32, -42),
        "tandem.f32": (V.FLOAT32, 0.25),
        "tandem.bool": (V.BOOL, True),
        "tandem.str": (V.STRING, "héllo wörld"),
        "tandem.str_empty": (V.STRING, ""),
    }
    for key, (vtype, value) in want.items():
        assert f[key].types == [vtype], key
        assert f[key].contents() == value, key
    arrays = {
        "tandem.arr_i32": (V.INT32, [1, -2, 3, 2**31 - 1, -(2**31)]),
        "tandem.arr_f32": (V.FLOAT32, [float(np.float32(x)) for x in (0.5, -1.5, 1e-3)]),
        "tandem.arr_str": (V.STRING, ["a", "", "ünï", "日本", "last"]),
    }
    for key, (etype, values) in arrays.items():
        assert f[key].types == [V.ARRAY, etype], key
        assert f[key].contents() == values, key
    assert f["tandem.arr_empty"].types[0] == V.ARRAY
    assert f["tandem.arr_empty"].contents() == []
    # the kv count in the header matches what was read
    assert f["GGUF.kv_count"].contents() == len([k for k in f if not k.startswith("GGUF.")])


def test_tensors(exported, golden):
    reader, _ = exported
    Q = gguf.GGMLQuantizationType
    f32 = (np.arange(12, dtype=np.float32) * np.float32(0.5) - np.float32(3)).tobytes()
    f16 = (np.arange(8, dtype=np.float32) * np.float32(0.25)).astype(np.float16).tobytes()
    bf16 = ((np.arange(16, dtype=np.float32) - 8).view(np.uint32) >> 16).astype(np.uint16).tobytes()
    q8_0 = bytes((i * 7 + 3) & 0xFF for i in range(136))
    q4_0 = bytes((i * 13 + 1) & 0xFF for i in range(18))
    own = [
        ("own.f32", Q.F32, [4, 3], f32),
        ("own.f16", Q.F16, [8], f16),
        ("own.bf16", Q.BF16, [2, 2, 2, 2], bf16),
        ("own.q8_0", Q.Q8_0, [64, 2], q8_0),
        ("own.q4_0", Q.Q4_0, [32], q4_0),
    ]
    names = [t.name for t in reader.tensors]
    assert names == [o[0] for o in own] + [t["name"] for t in golden["tensors"]]
    by_name = {t.name: t for t in reader.tensors}
    for name, qtype, ne, data in own:
        t = by_name[name]
        assert t.tensor_type == qtype, name
        assert t.shape.tolist() == ne, name
        assert raw_bytes(reader, t) == data, name
    for want in golden["tensors"]:
        t = by_name[want["name"]]
        assert int(t.tensor_type) == want["type"], want["name"]
        assert t.shape.tolist() == want["ne"], want["name"]
        assert t.n_bytes == want["nbytes"], want["name"]
        assert hashlib.sha256(raw_bytes(reader, t)).hexdigest() == want["sha256"], want["name"]
