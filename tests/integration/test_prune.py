"""tandem prune as a user runs it: the distance table, the pruned GGUF (loads, runs, has renumbered layers, and its
own calibration perplexity equals the one prune predicted for it), GGUF and HF-folder inputs, and bad input."""
import json
import os
import re

import pytest

TOKENIZER = "tests/golden/models/tied_gqa2"
CALIB = "def add(a, b):\n    return a + b\n\nclass Point:\n    x: int = 0\n" * 30


def heatmap_layout(L, cell=32):
    """Where tools/cli/heatmap.c draws (heatmap.h's constants): the grid's corner, the legend's colour bar, the size."""
    pad, th = 6, 14
    width = lambda s: len(s) * 12 - 2  # the 5x7 font at scale 2, a character every 12 pixels
    grid_x, grid_y = pad + th + pad + width(str(L - 1)) + pad, pad + th + pad + th + pad
    legend_x, legend_h = grid_x + max(L * cell, width("BLOCK SIZE N")) + 3 * pad, max(L * cell, 100)
    size = (legend_x + max(16 + pad + width("0.5"), width("DISTANCE")) + pad,
            grid_y + max(legend_h, width("LAYER L")) + th // 2 + pad)
    return grid_x, grid_y, legend_x, legend_h, size


def check_png(path, table, L, cell=32, umask=None):
    """The heat map, read back with Pillow: L×L cells whose brightness grows with the distance; cells with
    l+n > L white; a colour bar from the colour of 1 (top) to that of 0 (bottom); black text (axes, legend) around;
    mode 0666 less the umask, as any new file."""
    from PIL import Image
    grid_x, grid_y, legend_x, legend_h, size = heatmap_layout(L, cell)
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG" and im.mode == "RGB" and im.size == size
        def pixel(l, n):
            return im.getpixel((grid_x + (n - 1) * cell + cell // 2, grid_y + l * cell + cell // 2))
        assert pixel(L - 1, L) == (255, 255, 255)
        cells = sorted(table.items(), key=lambda kv: kv[1])
        assert sum(pixel(*cells[0][0])) < sum(pixel(*cells[-1][0]))
        # the legend: the ramp's ends (heatmap.c: 0 = (68, 1, 84), 1 = (253, 231, 37)), darker downwards
        assert im.getpixel((legend_x + 8, grid_y)) == (253, 231, 37)
        assert im.getpixel((legend_x + 8, grid_y + legend_h - 1)) == (68, 1, 84)
        bar = [sum(im.getpixel((legend_x + 8, grid_y + y))) for y in range(0, legend_h, 10)]
        assert bar == sorted(bar, reverse=True)
        # text: black pixels above the grid (column title and numbers), left of it (row numbers and title) and
        # beside the bar (1, 0.5, 0)
        black = lambda x0, y0, x1, y1: sum(im.getpixel((x, y)) == (0, 0, 0) for x in range(x0, x1)
                                          for y in range(y0, y1))
        assert black(grid_x, 0, grid_x + 142, grid_y) > 50
        assert black(0, grid_y, grid_x, grid_y + L * cell) > 50
        assert black(legend_x + 16, grid_y - 7, size[0], grid_y + legend_h + 7) > 50
    assert not list(path.parent.glob(path.name + ".tmp.*"))  # written to a temporary file, then renamed
    if umask is None:  # the one this process (and the tandem it started) runs with
        umask = os.umask(0)
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def ppl(stdout):
    m = re.search(r"perplexity ([0-9.]+)(?: -> ([0-9.]+))?", stdout)
    assert m, stdout
    return float(m.group(1)), (float(m.group(2)) if m.group(2) else None)


@pytest.fixture(scope="module")
def model4(tmp_path_factory, run_tandem):
    """A 4-layer model trained briefly on CALIB (so the layers are not random noise)."""
    d = tmp_path_factory.mktemp("prune")
    (d / "calib.txt").write_text(CALIB)
    cfg = {"model_type": "qwen3", "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128, "vocab_size": 448,
           "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False}
    (d / "config.json").write_text(json.dumps(cfg))
    run_tandem("train", "--config", d / "config.json", "--data", d / "calib.txt", "--tokenizer", TOKENIZER,
               "-o", d / "m4.gguf", "--steps", 30, "--batch", 4, "--seq", 32, "--lr", 3e-3)
    return d


def test_prune_analyze_and_remove(model4, run_tandem):
    gguf = pytest.importorskip("gguf")
    d = model4
    cp = run_tandem("prune", "-m", d / "m4.gguf", "-f", d / "calib.txt", "--remove", 2, "-o", d / "p2.gguf",
                    "--analyze", "--csv", d / "table.csv", "--png", d / "table.png", "--window", 64)
    rows = [l for l in cp.stdout.splitlines() if l.startswith("l=")]
    assert len(rows) == 4 and [len(r.split()) - 1 for r in rows] == [4, 3, 2, 1], cp.stdout
    csv = (d / "table.csv").read_text().splitlines()
    assert csv[0] == "l,n,distance" and len(csv) == 1 + 10
    table = {(int(l), int(n)): float(v) for l, n, v in (x.split(",") for x in csv[1:])}
    assert all(0 < v < 1 for v in table.values())
    # the removed block is the pair with the smallest distance
    m = re.search(r"removing layers (\d+),(\d+) \(2 of 4 left\)", cp.stdout)
    assert m, cp.stdout
    first = int(m.group(1))
    assert int(m.group(2)) == first + 1
    assert table[(first, 2)] == min(v for (l, n), v in table.items() if n == 2)
    before, after = ppl(cp.stdout)
    assert before > 1 and after > 1
    check_png(d / "table.png", table, 4)

    r = gguf.GGUFReader(str(d / "p2.gguf"))
    names = [t.name for t in r.tensors]
    assert sum(n.endswith("attn_q.weight") for n in names) == 2 and "blk.1.ffn_down.weight" in names
    assert "blk.2.attn_q.weight" not in names and int(r.fields["qwen3.block_count"].parts[-1][0]) == 2
    assert "2" in [l.split()[-1] for l in run_tandem("info", d / "p2.gguf").stdout.splitlines() if "layers" in l]
    run_tandem("run", "-m", d / "p2.gguf", "-p", "def ", "-n", 8, "--temp", 0)
    # the written model measures what prune predicted for it
    cp2 = run_tandem("prune", "-m", d / "p2.gguf", "-f", d / "calib.txt", "--analyze", "--window", 64)
    assert ppl(cp2.stdout)[0] == pytest.approx(after, rel=1e-4)


def test_prune_explicit_layers_hf_folder(run_tandem, models_dir, tmp_path):
    gguf = pytest.importorskip("gguf")
    (tmp_path / "calib.txt").write_text(CALIB)
    out = tmp_path / "p.gguf"
    cp = run_tandem("prune", "-m", models_dir / "untied_gqa4", "-f", tmp_path / "calib.txt", "--layers", "1",
                    "-o", out, "--window", 64)
    assert "removing layer 1 (2 of 3 left)" in cp.stdout
    _, after = ppl(cp.stdout)
    r = gguf.GGUFReader(str(out))
    assert int(r.fields["qwen3.block_count"].parts[-1][0]) == 2 and "tokenizer.ggml.tokens" in r.fields
    cp2 = run_tandem("prune", "-m", out, "-f", tmp_path / "calib.txt", "--analyze", "--window", 64)
    assert ppl(cp2.stdout)[0] == pytest.approx(after, rel=1e-4)


@pytest.mark.parametrize("case,needle", [
    ("remove too many", "cannot remove 3 of its 3 layers"),
    ("layer out of range", "layer 7 is out of range"),
    ("layer twice", "layer 1 is listed twice"),
    ("empty calibration", "calibration text is empty"),
    ("missing calibration", "cannot open"),
    ("output exists", "already exists"),
])
def test_prune_bad_input(run_tandem, models_dir, tmp_path, case, needle):
    calib = tmp_path / "calib.txt"
    calib.write_text("" if case == "empty calibration" else CALIB)
    out = tmp_path / "out.gguf"
    args = ["prune", "-m", models_dir / "untied_gqa4", "-f", calib, "-o", out]
    if case == "remove too many":
        args += ["--remove", 3]
    elif case == "layer out of range":
        args += ["--layers", "0,7"]
    elif case == "layer twice":
        args += ["--layers", "1,1"]
    else:
        args += ["--remove", 1]
    if case == "missing calibration":
        args[4] = tmp_path / "none.txt"
    if case == "output exists":
        out.write_bytes(b"keep")
    before = sorted(p.name for p in tmp_path.iterdir())
    cp = run_tandem(*args, check=False)
    assert cp.returncode == 1 and needle in cp.stderr, cp.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if case == "output exists":
        assert out.read_bytes() == b"keep"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_prune_png_mode_follows_the_umask(model4, tandem_bin, tmp_path, umask):
    """The table's PNG and CSV, and the GGUF, get 0666 less the umask: 0644 under 022 (mkstemp alone gives 0600),
    0640 under 027 (a fixed 0644 would not)."""
    import subprocess
    d = model4
    cmd = [str(tandem_bin), "prune", "-m", str(d / "m4.gguf"), "-f", str(d / "calib.txt"), "--remove", "1",
           "-o", str(tmp_path / "p.gguf"), "--csv", str(tmp_path / "t.csv"), "--png", str(tmp_path / "t.png"),
           "--window", "64"]
    subprocess.run(cmd, check=True, capture_output=True, preexec_fn=lambda: os.umask(umask))
    for name in ("t.csv", "t.png", "p.gguf"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    csv = (tmp_path / "t.csv").read_text().splitlines()[1:]
    table = {(int(l), int(n)): float(v) for l, n, v in (x.split(",") for x in csv)}
    check_png(tmp_path / "t.png", table, 4, umask=umask)


def test_prune_usage_errors(run_tandem):
    for args, needle in [([], "missing -m"), (["-m", "x"], "missing -f"),
                         (["-m", "x", "-f", "y"], "give -o OUT.gguf, --analyze, --csv or --png"),
                         (["-m", "x", "-f", "y", "-o", "z"], "-o needs --remove N or --layers"),
                         (["-m", "x", "-f", "y", "--layers", "1,a", "-o", "z"], "--layers")]:
        cp = run_tandem("prune", *args, check=False)
        assert cp.returncode == 2 and needle in cp.stderr, (args, cp.stderr)
