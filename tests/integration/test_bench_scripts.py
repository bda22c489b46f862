"""bench/compare_llamacpp.py end to end against the real tandem and a stand-in llama-bench (llama.cpp is not part
of tandem): the arguments each side gets, the tables it writes, and the ratios in them."""
import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Answers like llama-bench -o json, and refuses arguments compare_llamacpp.py must not pass: a depth with a
# prompt, or depth runs without --no-warmup. Tokens/s: 100 + k for a k-token prompt, 10 generating, 5 generating
# after a depth.
FAKE_LLAMA_BENCH = textwrap.dedent("""\
    import json, sys
    a = sys.argv[1:]
    opt = lambda name, default: a[a.index(name) + 1] if name in a else default
    assert a[a.index("-o") + 1] == "json" and opt("-t", None) and opt("-r", None), a
    prompts = [int(p) for p in opt("-p", "512").split(",")]
    n_gen, depth = int(opt("-n", "128")), int(opt("-d", "0"))
    if depth:
        assert prompts == [0] and "--no-warmup" in a, a
    out = [{"n_prompt": p, "n_gen": 0, "n_depth": depth, "avg_ts": 100.0 + p} for p in prompts if p]
    if n_gen:
        out.append({"n_prompt": 0, "n_gen": n_gen, "n_depth": depth, "avg_ts": 5.0 if depth else 10.0})
    print(json.dumps(out))
    """)


def table_rows(text, first_cell):
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| " + first_cell)]


def assert_ratio(ratio_cell, numerator_cell, denominator):
    """The table prints the ratio of unrounded figures, so it may differ from the ratio of the printed numerator
    by the two roundings: half a unit in the ratio's last place and the numerator's, divided by the denominator.
    With rounds, the cell is "median (min-max)" of the rounds' ratios; the stand-in's denominator is the same in
    every round, so the median ratio is the median numerator's."""
    ratio, _, spread = ratio_cell.partition(" (")
    assert ratio.endswith("x"), ratio_cell
    decimals = len(numerator_cell.partition(".")[2])
    slack = 0.005 + 0.5 * 10.0 ** -decimals / denominator + 1e-9
    assert abs(float(ratio[:-1]) - float(numerator_cell) / denominator) <= slack, (ratio_cell, numerator_cell)
    if spread:
        low, high = spread.rstrip(")").split("-")
        assert float(low) <= float(ratio[:-1]) <= float(high), ratio_cell


def test_compare_llamacpp_tables(tandem_bin, tmp_path):
    fake = tmp_path / "llama-bench"
    fake.write_text(f"#!{sys.executable}\n" + FAKE_LLAMA_BENCH)
    fake.chmod(0o755)
    out = tmp_path / "compare.md"
    cp = subprocess.run([sys.executable, str(REPO / "bench" / "compare_llamacpp.py"), "--llama-bench", str(fake),
                         "--tandem", str(tandem_bin), "--sizes", "draft", "--types", "q8_0", "--pp", "32", "--tg", "8",
                         "-r", "1", "--rounds", "2", "--threads", "1", "--depth", "48", "--models-dir", str(tmp_path),
                         "--out", str(out)],
                        capture_output=True, text=True, timeout=600)
    assert cp.returncode == 0, cp.stderr
    text = out.read_text()
    assert text in cp.stdout and "tandem kernels: " in text and "tandem kernels: ?" not in text
    assert "2 rounds of 1 repetitions" in text and cp.stderr.count("round ") == 2

    rows = table_rows(text, "Qwen3-draft Q8_0")
    (main,) = [r for r in rows if len(r) == 10]
    tpp, lpp, ratio_pp, ttg, ltg, ratio_tg = main[1:7]
    assert float(lpp) == 132.0 and float(ltg) == 10.0  # the stand-in's pp32 and tg8
    assert float(tpp) > 0 and float(ttg) > 0
    assert_ratio(ratio_pp, tpp, 132.0)
    assert_ratio(ratio_tg, ttg, 10.0)

    (curve,) = [r for r in rows if len(r) == 5]
    for k, cell in zip([2, 4, 8, 16], curve[1:]):
        t_rel, l_rel = cell.split(" / ")
        assert float(t_rel) > 0
        assert l_rel == f"{k / (100.0 + k) * 101.0:.2f}"  # a pass's time at k over its time at k = 1

    (deep,) = [r for r in rows if len(r) == 9]
    assert deep[1] == "48" and float(deep[3]) == 148.0 and float(deep[6]) == 5.0
    assert_ratio(deep[4], deep[2], 148.0)
    assert_ratio(deep[7], deep[5], 5.0)
    assert re.search(r"Long prompts: prefill of D tokens", text)
