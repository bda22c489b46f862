"""`tandem pull` against a local imitation of the Hugging Face hub (fake_hub.py), and model references by hub id
(-m ORG/NAME:QUANT). The reference for the cache layout is huggingface_hub itself: it reads what tandem wrote
(scan_cache_dir, hf_hub_download(local_files_only=True), try_to_load_from_cache), and it downloads from the same fake
hub into a layout tandem must find and that must equal tandem's own, link for link."""
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GOLDEN, REPO
from fake_hub import FakeHub, Repo, git_blob_id

huggingface_hub = pytest.importorskip("huggingface_hub")

MODEL = GOLDEN / "models" / "tied_gqa2"
TOKEN = "hf_test_secret"


def _read(p):
    return Path(p).read_bytes()


def hf_repo_files():
    names = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    files = {n: _read(MODEL / n) for n in names}
    files["README.md"] = b"# tiny Qwen3\n"
    files["docs/deep/notes.txt"] = b"a file two folders down\n"
    return files


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as h:
        h.add(Repo("acme/tiny-hf", hf_repo_files(), lfs={"model.safetensors", "tokenizer.json"}))
        h.add(Repo("acme/Tiny-GGUF", {
            "Tiny-Q4_K_M.gguf": _read(MODEL / "model-q4_0.gguf"),  # a real GGUF under a quantization's name
            "Tiny-Q8_0.gguf": _read(MODEL / "model-q8_0.gguf"),
            "mmproj-Tiny-Q4_K_M.gguf": b"not a language model",
            "README.md": b"# tiny GGUF\n",
        }, lfs={"Tiny-Q4_K_M.gguf", "Tiny-Q8_0.gguf", "mmproj-Tiny-Q4_K_M.gguf"}))
        h.add(Repo("acme/private", {"secret.txt": b"only with a token\n", "weights.bin": bytes(range(256)) * 40},
                   lfs={"weights.bin"}, token=TOKEN))
        same = bytes(range(256)) * 64  # one blob under several names, fetched at once
        h.add(Repo("acme/dups", {"a.bin": same, "b/a.bin": same, "c.bin": same, "x.txt": b"x", "y/x.txt": b"x"},
                   lfs={"a.bin", "b/a.bin", "c.bin"}))
        yield h


@pytest.fixture
def home(tmp_path, hub):
    hub.reset()
    return tmp_path


def hub_env(hub, home, **extra):
    """The environment of a user of this fake hub: its endpoint, a cache and HF_HOME in the test's folder, no token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(home / "cache"), HF_HOME=str(home / "hf-home"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1")
    env.update(extra)
    return env


def tandem(tandem_bin, hub, home, *args, env=None, preexec_fn=None, cwd=REPO):
    full = hub_env(hub, home, **(env or {}))
    return subprocess.run([str(tandem_bin), *map(str, args)], capture_output=True, text=True, env=full, cwd=cwd,
                          timeout=120, preexec_fn=preexec_fn)


def ok(cp):
    assert cp.returncode == 0, f"exit {cp.returncode}\n--- stdout\n{cp.stdout}\n--- stderr\n{cp.stderr}"
    return cp.stdout.strip()


def failed(cp):
    assert cp.returncode == 1, f"exit {cp.returncode}\n--- stdout\n{cp.stdout}\n--- stderr\n{cp.stderr}"
    assert "AddressSanitizer" not in cp.stderr and "runtime error" not in cp.stderr, cp.stderr
    return cp.stderr


def repo_dir(home, repo_id):
    return home / "cache" / ("models--" + repo_id.replace("/", "--"))


def check_cached_by_huggingface_hub(hub, home, repo_id, paths):
    """huggingface_hub's reading of the cache: exactly `paths` of repo_id at its commit, each file's blob named by
    the hub's id of its content, with its bytes; nothing incomplete."""
    repo = hub.repos[repo_id]
    info = huggingface_hub.scan_cache_dir(home / "cache")
    assert not info.warnings, info.warnings
    (cached,) = [r for r in info.repos if r.repo_id == repo_id]
    (rev,) = cached.revisions
    assert rev.commit_hash == repo.commit
    assert rev.refs == frozenset({"main"})
    got = {str(f.file_path.relative_to(rev.snapshot_path)): f for f in rev.files}
    assert sorted(got) == sorted(paths)
    for p, f in got.items():
        assert f.blob_path.name == repo.blob_id(p), p
        assert f.blob_path.read_bytes() == repo.files[p], p
        assert not os.path.isabs(os.readlink(f.file_path)), p  # relative links, as huggingface_hub makes them
        local = huggingface_hub.hf_hub_download(repo_id, p, cache_dir=home / "cache", local_files_only=True)
        assert Path(local).read_bytes() == repo.files[p], p
        assert huggingface_hub.try_to_load_from_cache(repo_id, p, cache_dir=home / "cache") == local
    assert not list((repo_dir(home, repo_id) / "blobs").glob("*.incomplete"))


def snapshot(home, hub, repo_id):
    return repo_dir(home, repo_id) / "snapshots" / hub.repos[repo_id].commit


# ---- downloads ----

def test_pull_whole_repository_into_huggingface_hubs_layout(tandem_bin, hub, home):
    path = ok(tandem(tandem_bin, hub, home, "pull", "acme/tiny-hf", "--parallel", "3"))
    assert Path(path) == snapshot(home, hub, "acme/tiny-hf")
    check_cached_by_huggingface_hub(hub, home, "acme/tiny-hf", hub.repos["acme/tiny-hf"].files)
    # the reference loads as the checkpoint folder it names (the model's name is the reference's)
    by_ref = ok(tandem(tandem_bin, hub, home, "info", "acme/tiny-hf")).splitlines()
    assert by_ref[0] == "model:          tiny-hf (qwen3, safetensors)"
    assert by_ref[1:] == ok(tandem(tandem_bin, hub, home, "info", MODEL)).splitlines()[1:]
    # a second pull finds every file in place: the model info is asked again, no file is fetched again
    hub.reset()
    assert ok(tandem(tandem_bin, hub, home, "pull", "acme/tiny-hf")) == path
    assert hub.resolve_gets() == []


def test_pull_include_patterns(tandem_bin, hub, home):
    ok(tandem(tandem_bin, hub, home, "pull", "acme/tiny-hf", "--include", "*.json", "--include", "docs/*"))
    want = [p for p in hub.repos["acme/tiny-hf"].files if p.endswith(".json") or p.startswith("docs/")]
    check_cached_by_huggingface_hub(hub, home, "acme/tiny-hf", want)
    assert "nothing" not in want
    err = failed(tandem(tandem_bin, hub, home, "pull", "acme/tiny-hf", "--include", "*.xyz"))
    assert "--include matches none of its 7 files" in err


def test_pull_quant_and_run_by_reference(tandem_bin, hub, home):
    path = ok(tandem(tandem_bin, hub, home, "pull", "acme/Tiny-GGUF:Q4_K_M"))
    assert Path(path) == snapshot(home, hub, "acme/Tiny-GGUF") / "Tiny-Q4_K_M.gguf"
    check_cached_by_huggingface_hub(hub, home, "acme/Tiny-GGUF", ["Tiny-Q4_K_M.gguf"])  # not Q8_0, not mmproj
    gguf = MODEL / "model-q4_0.gguf"
    for ref in ("acme/Tiny-GGUF:Q4_K_M", "acme/Tiny-GGUF:q4_k_m", "acme/Tiny-GGUF:Tiny-Q4_K_M.gguf",
                "acme/Tiny-GGUF"):  # the one GGUF cached (mmproj files are no model)
        assert ok(tandem(tandem_bin, hub, home, "info", ref)) == ok(tandem(tandem_bin, hub, home, "info", gguf)), ref
    run = ("run", "-p", "Hello there", "-n", "8", "--temp", "0")
    assert ok(tandem(tandem_bin, hub, home, *run, "-m", "acme/Tiny-GGUF:Q4_K_M")) == \
        ok(tandem(tandem_bin, hub, home, *run, "-m", gguf))
    assert ok(tandem(tandem_bin, hub, home, "tokenize", "-m", "acme/Tiny-GGUF:Q4_K_M", "--text", "Hello")) == \
        ok(tandem(tandem_bin, hub, home, "tokenize", "-m", gguf, "--text", "Hello"))
    # a quantization that is not cached (but is on the hub), and a repository never pulled
    err = failed(tandem(tandem_bin, hub, home, "info", "acme/Tiny-GGUF:Q8_0"))
    assert "tandem pull acme/Tiny-GGUF:Q8_0" in err
    err = failed(tandem(tandem_bin, hub, home, "run", "-m", "acme/Other-GGUF:Q4_K_M", "-p", "x"))
    assert "not in the Hugging Face cache" in err and "tandem pull acme/Other-GGUF:Q4_K_M" in err
    # "Q4_K" is a token of no file name ("Q4_K_M" is another quantization): the choices are listed
    err = failed(tandem(tandem_bin, hub, home, "pull", "acme/Tiny-GGUF:Q4_K"))
    assert "Tiny-Q4_K_M.gguf, Tiny-Q8_0.gguf" in err


def test_a_local_path_wins_over_a_reference(tandem_bin, hub, home):
    # "acme/Tiny-GGUF:Q4_K_M" is cached, but a local file of that very name is what the user meant
    ok(tandem(tandem_bin, hub, home, "pull", "acme/Tiny-GGUF:Q4_K_M"))
    local = home / "work" / "acme" / "Tiny-GGUF:Q4_K_M"
    local.parent.mkdir(parents=True)
    local.write_bytes(_read(MODEL / "model-q8_0.gguf"))
    got = ok(tandem(tandem_bin, hub, home, "info", "acme/Tiny-GGUF:Q4_K_M", cwd=home / "work"))
    assert got == ok(tandem(tandem_bin, hub, home, "info", MODEL / "model-q8_0.gguf"))


def test_models_huggingface_hub_downloaded_are_found(tandem_bin, hub, home):
    # huggingface_hub downloads from the same fake hub: tandem loads from its cache by reference, and the layout
    # tandem writes for the same files is the same, link for link
    code = ("import sys, huggingface_hub\n"
            "for f in sys.argv[2:]: huggingface_hub.hf_hub_download('acme/Tiny-GGUF', f, cache_dir=sys.argv[1])\n")
    files = ["Tiny-Q4_K_M.gguf", "README.md"]
    subprocess.run([sys.executable, "-c", code, str(home / "hf-cache"), *files], check=True, timeout=120,
                   env=hub_env(hub, home))
    env = {"HF_HUB_CACHE": str(home / "hf-cache")}
    assert ok(tandem(tandem_bin, hub, home, "info", "acme/Tiny-GGUF:Q4_K_M", env=env)) == \
        ok(tandem(tandem_bin, hub, home, "info", MODEL / "model-q4_0.gguf"))
    for f in files:
        ok(tandem(tandem_bin, hub, home, "pull", f"acme/Tiny-GGUF:{f}"))

    def layout(root):
        out = {}
        for p in sorted((root / "models--acme--Tiny-GGUF").rglob("*")):
            rel = str(p.relative_to(root))
            out[rel] = ("link", os.readlink(p)) if p.is_symlink() else ("dir",) if p.is_dir() else \
                ("file", p.read_bytes())
        return out
    assert layout(home / "cache") == layout(home / "hf-cache")


def test_pull_into_a_plain_folder(tandem_bin, hub, home):
    out = home / "plain"
    assert Path(ok(tandem(tandem_bin, hub, home, "pull", "acme/tiny-hf", "--dir", out))) == out
    files = hub.repos["acme/tiny-hf"].files
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir())
    assert got == sorted(files)
    for p, data in files.items():
        assert not (out / p).is_symlink() and (out / p).read_bytes() == data
    assert not (home / "cache").exists()
    assert ok(tandem(tandem_bin, hub, home, "info", out)).splitlines()[1:] == \
        ok(tandem(tandem_bin, hub, home, "info", MODEL)).splitlines()[1:]


def test_listing_without_digests_uses_the_etags(tandem_bin, hub, home):
    # a model info without sizes, blob ids or LFS digests: each file's blob is named, and checked, by the ETag /
    # X-Linked-Etag of its resolve URL (a HEAD before the download), as huggingface_hub names them
    hub.bare_info = True
    ok(tandem(tandem_bin, hub, home, "pull", "acme/Tiny-GGUF", "--include", "Tiny-Q8_0.gguf", "--include", "*.md"))
    check_cached_by_huggingface_hub(hub, home, "acme/Tiny-GGUF", ["Tiny-Q8_0.gguf", "README.md"])
    with hub.lock:
        assert sorted(p for m, p, h in hub.requests if m == "HEAD") == \
            ["/acme/Tiny-GGUF/resolve/" + hub.repos["acme/Tiny-GGUF"].commit + "/" + f
             for f in ("README.md", "Tiny-Q8_0.gguf")]
    hub.reset()
    hub.bare_info = True
    hub.corrupt.add(("acme/tiny-hf", "model.safetensors"))
    err = failed(tandem(tandem_bin, hub, home, "pull", "acme/tiny-hf:model.safetensors"))
    assert "checksum mismatch: the download's sha256 is" in err


def test_files_sharing_a_blob_in_parallel(tandem_bin, hub, home):
    ok(tandem(tandem_bin, hub, home, "pull", "acme/dups", "--parallel", "5"))
    check_cached_by_huggingface_hub(hub, home, "acme/dups", hub.repos["acme/dups"].files)
    assert len(list((repo_dir(home, "acme/dups") / "blobs").iterdir())) == 2


def test_progress_line_per_file_when_not_a_terminal(tandem_bin, hub, home):
    cp = tandem(tandem_bin, hub, home, "pull", "acme/tiny-hf", "--parallel", "4")
    ok(cp)
    lines = [l for l in cp.stderr.splitlines() if l.startswith("tandem pull: ")]
    n = len(hub.repos["acme/tiny-hf"].files)
    assert sorted(l.split(" (")[0][len("tandem pull: "):] for l in lines) == sorted(hub.repos["acme/tiny-hf"].files)
    assert [l.rsplit("(", 1)[1] for l in lines] == [f"{i}/{n} files)" for i in range(1, n + 1)]


# ---- failures: nothing half-written ever looks complete ----

def test_dropped_connection_resumes_with_range(tandem_bin, hub, home):
    repo = hub.repos["acme/Tiny-GGUF"]
    sha = repo.sha256("Tiny-Q8_0.gguf")
    hub.drop_after[("acme/Tiny-GGUF", "Tiny-Q8_0.gguf")] = 10000
    err = failed(tandem(tandem_bin, hub, home, "pull", "acme/Tiny-GGUF:Q8_0"))
    assert "interrupted after 10000 of 147968 bytes" in err and "run again to resume" in err
    part = repo_dir(home, "acme/Tiny-GGUF") / "blobs" / f"{sha}.incomplete"
    assert part.stat().st_size == 10000
    assert not (snapshot(home, hub, "acme/Tiny-GGUF") / "Tiny-Q8_0.gguf").exists()
    assert not (repo_dir(home, "acme/Tiny-GGUF") / "refs" / "main").exists()
    path = ok(tandem(tandem_bin, hub, home, "pull", "acme/Tiny-GGUF:Q8_0"))
    assert hub.ranges(f"/cdn/{sha}") == [None, "bytes=10000-"]
    assert Path(path).read_bytes() == repo.files["Tiny-Q8_0.gguf"]
    assert not part.exists()
    check_cached_by_huggingface_hub(hub, home, "acme/Tiny-GGUF", ["Tiny-Q8_0.gguf"])


def test_resume_when_the_server_ignores_range(tandem_bin, hub, home):
    repo = hub.repos["acme/Tiny-GGUF"]
    hub.drop_after[("acme/Tiny-GGUF", "Tiny-Q8_0.gguf")] = 5000
    failed(tandem(tandem_bin, hub, home, "pull", "acme/Tiny-GGUF:Q8_0"))
    hub.ignore_range = True  # answers 200 with the whole file: the part must start again, not grow
    path = ok(tandem(tandem_bin, hub, home, "pull", "acme/Tiny-GGUF:Q8_0"))
    assert hub.ranges(f"/cdn/{repo.sha256('Tiny-Q8_0.gguf')}")[-1] == "bytes=5000-"
    assert Path(path).read_bytes() == repo.files["Tiny-Q8_0.gguf"]


@pytest.mark.parametrize("file,digest", [("Tiny-Q8_0.gguf", "sha256"), ("README.md", "git blob id")])
def test_wrong_checksum_leaves_nothing(tandem_bin, hub, home, file, digest):
    repo = hub.repos["acme/Tiny-GGUF"]
    hub.corrupt.add(("acme/Tiny-GGUF", file))
    cp = tandem(tandem_bin, hub, home, "pull", f"acme/Tiny-GGUF:{file}")
    err = failed(cp)
    assert f"checksum mismatch: the download's {digest} is" in err and repo.blob_id(file) in err
    assert "(mismatch)" in err
    rd = repo_dir(home, "acme/Tiny-GGUF")
    assert list((rd / "blobs").iterdir()) == []  # no blob, no part
    assert not snapshot(home, hub, "acme/Tiny-GGUF").exists() or \
        list(snapshot(home, hub, "acme/Tiny-GGUF").iterdir()) == []
    hub.corrupt.clear()
    assert Path(ok(tandem(tandem_bin, hub, home, "pull", f"acme/Tiny-GGUF:{file}"))).read_bytes() == repo.files[file]


def test_token_for_a_private_repository(tandem_bin, hub, home):
    err = failed(tandem(tandem_bin, hub, home, "pull", "acme/private"))
    assert "HTTP 401" in err and "set HF_TOKEN (or --token)" in err
    err = failed(tandem(tandem_bin, hub, home, "pull", "acme/private", env={"HF_TOKEN": "hf_wrong"}))
    assert "HTTP 401" in err and "check the token" in err
    assert not repo_dir(home, "acme/private").exists()
    hub.reset()
    path = ok(tandem(tandem_bin, hub, home, "pull", "acme/private", env={"HF_TOKEN": TOKEN}))
    check_cached_by_huggingface_hub(hub, home, "acme/private", ["secret.txt", "weights.bin"])
    # the token goes to the hub, not to the CDN host the LFS file is redirected to
    with hub.lock:
        sent = [(p, h.get("authorization")) for m, p, h in hub.requests if m == "GET"]
    assert all(a == f"Bearer {TOKEN}" for p, a in sent if not p.startswith("/cdn/"))
    assert [a for p, a in sent if p.startswith("/cdn/")] == [None]
    # --token, and huggingface-cli login's token file
    ok(tandem(tandem_bin, hub, home, "pull", "acme/private", "--dir", home / "a", "--token", TOKEN))
    (home / "hf-home").mkdir(exist_ok=True)
    (home / "hf-home" / "token").write_text(TOKEN + "\n")
    ok(tandem(tandem_bin, hub, home, "pull", "acme/private", "--dir", home / "b"))
    assert Path(path).is_dir()


def _limit_file_size(limit):
    def f():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return f


def test_full_disk_keeps_the_part_for_resuming(tandem_bin, hub, home):
    # a file-size limit stands in for a full disk: the write fails (EFBIG) in the middle of the file
    repo = hub.repos["acme/Tiny-GGUF"]
    sha = repo.sha256("Tiny-Q8_0.gguf")
    cp = tandem(tandem_bin, hub, home, "pull", "acme/Tiny-GGUF:Q8_0", preexec_fn=_limit_file_size(65536))
    err = failed(cp)
    part = repo_dir(home, "acme/Tiny-GGUF") / "blobs" / f"{sha}.incomplete"
    assert f"cannot write {part}: File too large" in err and "kept there for the next run to resume" in err
    assert 0 < part.stat().st_size <= 65536
    assert not (repo_dir(home, "acme/Tiny-GGUF") / "blobs" / sha).exists()
    assert not (snapshot(home, hub, "acme/Tiny-GGUF") / "Tiny-Q8_0.gguf").exists()
    info = huggingface_hub.scan_cache_dir(home / "cache")
    assert all(not rev.files for r in info.repos for rev in r.revisions)
    have = part.stat().st_size
    path = ok(tandem(tandem_bin, hub, home, "pull", "acme/Tiny-GGUF:Q8_0"))
    assert hub.ranges(f"/cdn/{sha}")[-1] == f"bytes={have}-"
    assert Path(path).read_bytes() == repo.files["Tiny-Q8_0.gguf"]


def test_unknown_repository_file_and_revision(tandem_bin, hub, home):
    err = failed(tandem(tandem_bin, hub, home, "pull", "acme/nope"))
    assert "acme/nope (revision main): repository or revision not found" in err and "HTTP 404" in err
    err = failed(tandem(tandem_bin, hub, home, "pull", "acme/Tiny-GGUF:missing.txt"))
    assert "no .gguf file named with missing.txt" in err
    err = failed(tandem(tandem_bin, hub, home, "pull", "acme/Tiny-GGUF", "--revision", "v9"))
    assert "acme/Tiny-GGUF (revision v9): repository or revision not found" in err
    assert not (home / "cache").exists() or not any((home / "cache").rglob("*.gguf"))


def test_pull_usage_errors(tandem_bin, hub, home):
    for args, msg in ((["pull"], "missing REPO_ID"), (["pull", "nobody"], "not a hub repository id"),
                      (["pull", "acme/x:"], "nothing after ':'"),
                      (["pull", "acme/x:Q4_K_M", "--include", "*"], "--include selects files"),
                      (["pull", "acme/x", "--parallel", "0"], "outside 1..64")):
        cp = tandem(tandem_bin, hub, home, *args)
        assert cp.returncode == 2 and msg in cp.stderr, (args, cp.stderr)
    cp = tandem(tandem_bin, hub, home, "pull", "a/b/c")
    assert cp.returncode == 1 and "is not ORG/NAME" in cp.stderr, cp.stderr
    cp = tandem(tandem_bin, hub, home, "pull", "acme/x", env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert cp.returncode == 1 and "cannot reach http://127.0.0.1:9/api/models/acme/x/revision/main" in cp.stderr

