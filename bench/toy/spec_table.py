#!/usr/bin/env python3
# spec_table.py — the four-way speculative decoding measurement on the toy family: target alone, + draft, + pruned
# draft, + pruned and healed draft; tokens/s from `tandem bench`, acceptance, E and c from `tandem run --json`.
"""usage: spec_table.py BUILD_DIR [--tandem PATH] [--threads 1] [--prompts 6] [-n 128] [-r 5] [--target FILE]
                     [--healed FILE] [--temp T --seed S]

BUILD_DIR holds target.gguf, draft.gguf, draft_pruned.gguf, draft_healed.gguf and valid.txt (make_family.sh);
--target and --healed name another target and its healed draft there (the wide target: target_wide.gguf and
draft_healed_wide.gguf). With --temp T > 0 every configuration samples at temperature T (the same seeds), and its
tokens/s is the mean decode rate of those runs (`tandem bench` decodes greedily).
Prompts: the LINES-line stretches of valid.txt (held-out code) that end with a `def` line. Prints a Markdown table."""
import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path


def run_json(cmd):
    cp = subprocess.run(cmd, capture_output=True, text=True, errors="surrogateescape")
    if cp.returncode != 0:
        sys.exit(f"spec_table.py: {' '.join(map(str, cmd))} failed:\n{cp.stderr}")
    return json.loads(cp.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("--tandem", default="./build/tandem")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", type=int, default=5)
    ap.add_argument("--target", default="target.gguf")
    ap.add_argument("--healed", default="draft_healed.gguf")
    ap.add_argument("--temp", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    b = Path(a.build)
    lines = (b / "valid.txt").read_text(encoding="utf-8").split("\n")
    defs = [i for i, l in enumerate(lines) if re.match(r"\s*def \w+\(.*\):\s*$", l) and i >= 12]
    prompts = ["\n".join(lines[i - 11:i + 1]) + "\n" for i in defs[:: max(1, len(defs) // a.prompts)][: a.prompts]]
    bench_prompt = b / "bench_prompt.txt"
    bench_prompt.write_text(prompts[0], encoding="utf-8")
    rows = [("target alone", None), ("target + draft (4 layers)", "draft.gguf"),
            ("target + pruned draft (3 layers, no healing)", "draft_pruned.gguf"),
            ("target + pruned + healed draft (3 layers)", a.healed)]
    t = [a.tandem]
    print(f"| configuration | decode tok/s ({'bench' if a.temp == 0 else f'run, temperature {a.temp}'}) | speedup | acceptance | E (tokens/pass) | c | predicted speedup |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for name, draft in rows:
        md = ["-md", str(b / draft)] if draft else []
        if a.temp == 0:
            bench = run_json(t + ["bench", "-m", str(b / a.target), *md, "-p", "96", "-f", str(bench_prompt),
                                  "-n", str(a.n), "-r", str(a.r), "-t", str(a.threads), "--json"])
        acc, per_pass, c, pred, rates = [], [], [], [], []
        for i, p in enumerate(prompts):
            out = run_json(t + ["run", "-m", str(b / a.target), *md, "-p", p, "-n", str(a.n), "--temp", str(a.temp),
                                "--seed", str(a.seed + i), "--ignore-eos", "-t", str(a.threads), "--json"])
            rates.append(out["timings"]["decode_tokens_per_s"])
            s = out.get("speculative")
            if s:
                acc.append(s["acceptance_rate"]), per_pass.append(s["mean_per_pass"])
                c.append(s["c"]), pred.append(s["predicted_speedup"])
        tps = bench["decode_tokens_per_s"] if a.temp == 0 else statistics.mean(rates)
        base = base or tps
        f = lambda xs, d=2: f"{statistics.mean(xs):.{d}f}" if xs else "–"
        print(f"| {name} | {tps:.0f} | {tps / base:.2f}x | {f(acc)} | {f(per_pass)} | {f(c, 3)} | {f(pred)} |",
              flush=True)


if __name__ == "__main__":
    main()
