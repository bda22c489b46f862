"""tandem.pull and tandem.hub_resolve (the Python binding of tandem_download / tandem_hub_resolve) against the fake
hub of test_pull.py, huggingface_hub reading the cache as the reference; the pulled model loads by path and by
reference and answers as the original files do."""
import os
from pathlib import Path

import pytest

from test_pull import MODEL, TOKEN, check_cached_by_huggingface_hub, home, hub, repo_dir, snapshot  # noqa: F401


@pytest.fixture
def hub_user(hub, home, monkeypatch):  # noqa: F811
    """The process environment of a user of the fake hub: its endpoint, a cache and HF_HOME in the test's folder."""
    for k in list(os.environ):
        if k.startswith(("HF_", "HUGGINGFACE_")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "cache"))
    monkeypatch.setenv("HF_HOME", str(home / "hf-home"))
    return home


def test_pull_repository_and_load_it(tandem, hub, hub_user):  # noqa: F811
    home = hub_user
    path = tandem.pull("acme/tiny-hf", max_workers=3)
    assert Path(path) == snapshot(home, hub, "acme/tiny-hf")
    check_cached_by_huggingface_hub(hub, home, "acme/tiny-hf", hub.repos["acme/tiny-hf"].files)
    assert tandem.hub_resolve("acme/tiny-hf") == path
    want = tandem.LLMPipeline(str(MODEL)).generate("hello world", max_new_tokens=8).token_ids
    assert tandem.LLMPipeline(path).generate("hello world", max_new_tokens=8).token_ids == want
    assert tandem.LLMPipeline("acme/tiny-hf").generate("hello world", max_new_tokens=8).token_ids == want
    hub.reset()  # a second pull fetches no file again
    assert tandem.pull("acme/tiny-hf") == path and hub.resolve_gets() == []


def test_pull_one_quantization_or_patterns(tandem, hub, hub_user, tmp_path):  # noqa: F811
    home = hub_user
    path = tandem.pull("acme/Tiny-GGUF:Q4_K_M")
    assert Path(path) == snapshot(home, hub, "acme/Tiny-GGUF") / "Tiny-Q4_K_M.gguf"
    assert tandem.pull("acme/Tiny-GGUF", "Q4_K_M") == path == tandem.hub_resolve("acme/Tiny-GGUF:Q4_K_M")
    check_cached_by_huggingface_hub(hub, home, "acme/Tiny-GGUF", ["Tiny-Q4_K_M.gguf"])
    assert Path(path).read_bytes() == (MODEL / "model-q4_0.gguf").read_bytes()
    tandem.pull("acme/tiny-hf", include=["*.json", "docs/*"])
    want = [p for p in hub.repos["acme/tiny-hf"].files if p.endswith(".json") or p.startswith("docs/")]
    check_cached_by_huggingface_hub(hub, home, "acme/tiny-hf", want)
    plain = tmp_path / "plain"
    assert tandem.pull("acme/tiny-hf", include="*.md", local_dir=plain) == str(plain)
    assert (plain / "README.md").read_bytes() == hub.repos["acme/tiny-hf"].files["README.md"]
    with pytest.raises(ValueError, match="not both"):
        tandem.pull("acme/tiny-hf", "README.md", include="*.md")


def test_pull_progress_and_stopping_it(tandem, hub, hub_user):  # noqa: F811
    home = hub_user
    reports = []
    tandem.pull("acme/tiny-hf", progress=lambda p: reports.append((p.file and p.file.decode(), p.n_files_done,
                                                                   p.n_files, p.bytes_done, p.bytes_total)))
    files = hub.repos["acme/tiny-hf"].files
    assert sorted(r[0] for r in reports if r[0]) == sorted(files)
    assert reports[-1][1:] == (len(files), len(files), sum(map(len, files.values())), sum(map(len, files.values())))
    # True from the callback stops the download (TANDEM_ERR_ABORTED): one file at a time, stopped at the first
    # report, most files are not there; a later pull completes it
    with pytest.raises(tandem.TandemError) as e:
        tandem.pull("acme/Tiny-GGUF", include="*.gguf", max_workers=1, progress=lambda p: True, cache_dir=home / "c2")
    assert e.value.status == -7
    ggufs = [f for f in hub.repos["acme/Tiny-GGUF"].files if f.endswith(".gguf")]
    snap = home / "c2" / "models--acme--Tiny-GGUF" / "snapshots" / hub.repos["acme/Tiny-GGUF"].commit
    assert len(list(snap.glob("*.gguf")) if snap.exists() else []) < len(ggufs)
    path = tandem.pull("acme/Tiny-GGUF", include="*.gguf", cache_dir=home / "c2")
    assert sorted(p.name for p in Path(path).glob("*.gguf")) == sorted(ggufs)
    # an exception in the callback stops it too and is raised as it was
    with pytest.raises(KeyError, match="from the callback"):
        tandem.pull("acme/Tiny-GGUF:Q4_K_M", progress=lambda p: {}["from the callback"])


def test_pull_errors_raise_the_library_message(tandem, hub, hub_user):  # noqa: F811
    home = hub_user
    with pytest.raises(tandem.TandemError, match="acme/nope .revision main.: repository or revision not found"):
        tandem.pull("acme/nope")
    with pytest.raises(tandem.TandemError, match="HTTP 401"):
        tandem.pull("acme/private")
    assert not repo_dir(home, "acme/private").exists()
    path = tandem.pull("acme/private", token=TOKEN)
    check_cached_by_huggingface_hub(hub, home, "acme/private", ["secret.txt", "weights.bin"])
    assert Path(path).is_dir()
    with pytest.raises(tandem.TandemError, match="tandem pull acme/Other-GGUF:Q4_K_M"):
        tandem.hub_resolve("acme/Other-GGUF:Q4_K_M")
    with pytest.raises(tandem.TandemError, match="not"):
        tandem.hub_resolve("no-slash")
