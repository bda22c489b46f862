"""The ctypes mirrors of tandem.h's structs in python/tandem/_lib.py against the C compiler's layout (sizes and
field offsets printed by tests/integration/abi_layout.c, built with the library): a field added to a struct in C
and not in Python would make every call that passes the struct read or write the wrong bytes."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

MIRRORS = {"tandem_sampler_params": "SamplerParams", "tandem_spec_params": "SpecParams",
           "tandem_spec_stats": "SpecStats", "tandem_gen_params": "GenParams", "tandem_token_logprob": "TokenLogprob",
           "tandem_timings": "Timings",
           "tandem_gen_result": "GenResult", "tandem_model_params": "ModelParams", "tandem_model_info": "ModelInfo",
           "tandem_ctx_params": "CtxParams", "tandem_image_params": "ImageParams",
           "tandem_chat_render_params": "ChatRenderParams", "tandem_engine_params": "EngineParams",
           "tandem_download_progress": "DownloadProgress", "tandem_download_params": "DownloadParams"}


@pytest.fixture(scope="module")
def layout():
    exe = os.environ.get("TANDEM_ABI_LAYOUT") or str(REPO / "build" / "tests" / "abi_layout")
    if not os.path.isfile(exe):
        pytest.skip(f"{exe} not built (ninja -C build abi_layout, or set TANDEM_ABI_LAYOUT)")
    return json.loads(subprocess.run([exe], capture_output=True, text=True, check=True).stdout)


@pytest.fixture(scope="module")
def lib():
    so = os.environ.get("TANDEM_LIBRARY") or str(REPO / "build" / "libtandem.so")
    if not os.path.isfile(so):
        pytest.skip(f"libtandem.so not found at {so} (build tandem_shared, or set TANDEM_LIBRARY)")
    os.environ["TANDEM_LIBRARY"] = so
    sys.path.insert(0, str(REPO / "python"))
    from tandem import _lib
    return _lib


@pytest.mark.parametrize("c_name", sorted(MIRRORS))
def test_ctypes_struct_matches_c(layout, lib, c_name):
    import ctypes
    py = getattr(lib, MIRRORS[c_name])
    c = layout[c_name]
    assert ctypes.sizeof(py) == c["size"], f"{MIRRORS[c_name]}: {ctypes.sizeof(py)} bytes, C {c_name}: {c['size']}"
    for field, offset in c["fields"].items():
        assert hasattr(py, field), f"{MIRRORS[c_name]} lacks {c_name}.{field}"
        assert getattr(py, field).offset == offset, f"{MIRRORS[c_name]}.{field} at {getattr(py, field).offset}, C at {offset}"


def test_every_mirror_is_checked(lib):
    import ctypes
    mirrored = {n for n, v in vars(lib).items() if isinstance(v, type) and issubclass(v, ctypes.Structure)}
    assert mirrored <= set(MIRRORS.values()), f"add {sorted(mirrored - set(MIRRORS.values()))} to abi_layout.c"
