#!/usr/bin/env python3
"""compare_llamacpp.py — tandem and llama.cpp side by side, in one run, on the same random-weight GGUF files
with the exact shapes of released Qwen3 sizes (speed does not depend on weight values).

For every (size, type): prompt processing (pp: one pass over --pp tokens from an empty context), token
generation (tg: --tg tokens from an empty context, one at a time), the weight bytes streamed per second while
generating, and the cost of one pass over k = 1, 2, 4, 8, 16 tokens relative to k = 1 (what verifying k drafted
tokens costs). The two programs take turns, --rounds times per file (who goes first alternates), so that both see
the same machine load; each round gives a ratio, and the table reports the medians of the rounds and the range of
their ratios. The ratios are the figures to read: absolute numbers move with whatever else the machine does.

llama.cpp is not part of tandem: build it yourself, outside this repository, and pass its llama-bench:
  python3 bench/compare_llamacpp.py --llama-bench ~/llama.cpp/build/bin/llama-bench --sizes 0.6b,8b \\
      --types q8_0,q4_0,q4_k_m --threads 2 --out /tmp/compare.md
Model files are written to --models-dir (default /tmp/tandem-bench-models) by bench/make_random_gguf.py when
missing (an 8B Q8_0 file is 8.7 GB)."""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
KS = [1, 2, 4, 8, 16]


def run_json(cmd, what):
    cp = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if cp.returncode != 0:
        sys.exit(f"compare_llamacpp: {what} failed (exit {cp.returncode}):\n{' '.join(map(str, cmd))}\n{cp.stderr[-2000:]}")
    return cp.stdout


def tandem(tandem_bin, model, args, threads, reps, warmup=1):
    out = run_json([tandem_bin, "bench", "-m", model, "-t", threads, "-r", reps, "--warmup", warmup, "--json", *args],
                   "tandem bench")
    return json.loads(out.strip().splitlines()[-1])


def llama(llama_bench, model, args, threads, reps):
    out = run_json([llama_bench, "-m", model, "-t", threads, "-r", reps, "-o", "json", *args], "llama-bench")
    return json.loads(out)


def llama_ts(results, n_prompt, n_gen, n_depth=0):
    for r in results:
        if r["n_prompt"] == n_prompt and r["n_gen"] == n_gen and r.get("n_depth", 0) == n_depth:
            return r["avg_ts"]
    sys.exit(f"compare_llamacpp: llama-bench gave no result for pp{n_prompt} tg{n_gen} at depth {n_depth}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-bench", required=True, help="llama.cpp's llama-bench binary (built outside the repo)")
    ap.add_argument("--tandem", default=str(REPO / "build" / "tandem"))
    ap.add_argument("--sizes", default="0.6b,8b")
    ap.add_argument("--types", default="f16,q8_0,q4_0,q4_k_m")
    ap.add_argument("--models-dir", default="/tmp/tandem-bench-models")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-r", "--repetitions", type=int, default=2, help="runs averaged within each program's turn")
    ap.add_argument("--rounds", type=int, default=3, help="turns of each program per file (pp and tg)")
    ap.add_argument("--pp", type=int, default=512)
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--no-curve", action="store_true", help="skip the verification-cost curve")
    ap.add_argument("--depth", default="",
                    help="also prompts of these lengths and generation after them, e.g. 4096,8192")
    ap.add_argument("--depth-only", action="store_true", help="only the --depth table")
    ap.add_argument("--out", help="also write the markdown table here")
    a = ap.parse_args()
    models = pathlib.Path(a.models_dir)
    models.mkdir(parents=True, exist_ok=True)
    depths = [int(d) for d in a.depth.split(",") if d]
    if a.depth_only and not depths:
        sys.exit("compare_llamacpp: --depth-only needs --depth")
    if a.rounds < 1 or a.repetitions < 1:
        sys.exit("compare_llamacpp: --rounds and -r must be at least 1")
    rows, curves, deep = [], [], []
    isa = "?"
    for size in a.sizes.split(","):
        for qtype in a.types.split(","):
            f = models / f"qwen3-{size}-{qtype}.gguf"
            if not f.exists():
                print(f"writing {f} ...", file=sys.stderr)
                subprocess.run([sys.executable, str(REPO / "bench" / "make_random_gguf.py"), str(f), "--size", size,
                                "--type", qtype], check=True)
            for d in depths:
                print(f"{size} {qtype}: depth {d}, tandem ...", file=sys.stderr)
                t_d = tandem(a.tandem, f, ["-p", str(d), "-n", str(a.tg)], a.threads, a.repetitions, warmup=0)
                print(f"{size} {qtype}: depth {d}, llama.cpp ...", file=sys.stderr)
                l_pp = llama(a.llama_bench, f, ["-p", str(d), "-n", "0", "--no-warmup"], a.threads, a.repetitions)
                l_tg = llama(a.llama_bench, f, ["-p", "0", "-n", str(a.tg), "-d", str(d), "--no-warmup"], a.threads,
                             a.repetitions)
                isa = t_d["isa"]
                deep.append((size, qtype, d, t_d["prefill_tokens_per_s"], llama_ts(l_pp, d, 0),
                             t_d["decode_tokens_per_s"], llama_ts(l_tg, 0, a.tg, d), t_d["peak_rss_mb"]))
            if a.depth_only:
                continue
            rounds, rss = [], 0.0  # rounds: (tandem pp, llama.cpp pp, tandem tg, llama.cpp tg) in tokens/s
            for r in range(a.rounds):
                print(f"{size} {qtype}: round {r + 1} of {a.rounds} ...", file=sys.stderr)
                with_curve = r == 0 and not a.no_curve
                def llama_turn():
                    return llama(a.llama_bench, f, ["-p", str(a.pp), "-n", str(a.tg)], a.threads, a.repetitions)
                tandem_first = r % 2 == 0
                if not tandem_first:
                    l_res = llama_turn()
                t_pp = tandem(a.tandem, f, ["-p", str(a.pp), "-n", "1", "-b", str(a.pp)], a.threads, a.repetitions)
                t_tg = tandem(a.tandem, f, ["-p", "0", "-n", str(a.tg)] + (["--curve"] if with_curve else []),
                              a.threads, a.repetitions)
                if tandem_first:
                    l_res = llama_turn()
                if r == 0:
                    first_tg = t_tg  # the curve, the step's bytes, the ISA
                rss = max(rss, t_pp["peak_rss_mb"], t_tg["peak_rss_mb"])
                rounds.append((t_pp["prefill_tokens_per_s"], llama_ts(l_res, a.pp, 0), t_tg["decode_tokens_per_s"],
                               llama_ts(l_res, 0, a.tg)))
            step_bytes = first_tg["decode_weight_gb_per_s"] / first_tg["decode_tokens_per_s"] * 1e9
            med = [statistics.median(v[i] for v in rounds) for i in range(4)]
            rows.append((size, qtype, med[0], med[1], [v[0] / v[1] for v in rounds], med[2], med[3],
                         [v[2] / v[3] for v in rounds], step_bytes, rss))
            isa = first_tg["isa"]
            if not a.no_curve:
                l_curve = llama(a.llama_bench, f, ["-p", ",".join(map(str, KS)), "-n", "0"], a.threads, a.repetitions)
                l_ms = {k: k / llama_ts(l_curve, k, 0) for k in KS}
                t_rel = {c["k"]: c["relative"] for c in first_tg["verify_curve"]}
                curves.append((size, qtype, t_rel, {k: l_ms[k] / l_ms[1] for k in KS}))
    lines = [f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} CPUs, "
             f"{a.threads} threads, {a.rounds} rounds of {a.repetitions} repetitions; tandem kernels: {isa}.", ""]
    if rows:
        lines += ["Tokens/s and GB/s: medians of the rounds; ratio: the median of the rounds' ratios (their range).", "",
                  f"| model | tandem pp{a.pp} | llama.cpp pp{a.pp} | ratio | "
                  f"tandem tg{a.tg} | llama.cpp tg{a.tg} | ratio | "
                  "tandem GB/s | llama.cpp GB/s | tandem peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]

    def ratio(values):
        return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"
    for size, qtype, tpp, lpp, pp_ratios, ttg, ltg, tg_ratios, step, rss in rows:
        lines.append(f"| Qwen3-{size} {qtype.upper()} | {tpp:.1f} | {lpp:.1f} | {ratio(pp_ratios)} | {ttg:.2f} | "
                     f"{ltg:.2f} | {ratio(tg_ratios)} | {ttg * step / 1e9:.1f} | {ltg * step / 1e9:.1f} | "
                     f"{rss:.0f} |")
    if curves:
        lines += ["", "Cost of one pass over k tokens relative to k = 1 (tandem / llama.cpp):", "",
                  "| model | " + " | ".join(f"k={k}" for k in KS[1:]) + " |", "|---|" + "---|" * (len(KS) - 1)]
        for size, qtype, t_rel, l_rel in curves:
            lines.append(f"| Qwen3-{size} {qtype.upper()} | " +
                         " | ".join(f"{t_rel[k]:.2f} / {l_rel[k]:.2f}" for k in KS[1:]) + " |")
    if deep:
        lines += ["", f"Long prompts: prefill of D tokens from an empty context, then tg{a.tg} after them "
                  "(tokens/s):", "",
                  "| model | D | tandem prefill | llama.cpp pp | ratio | tandem tg | llama.cpp tg @ D | ratio | "
                  "tandem peak RSS MB |", "|---|---|---|---|---|---|---|---|---|"]
        for size, qtype, d, tpp, lpp, ttg, ltg, rss in deep:
            lines.append(f"| Qwen3-{size} {qtype.upper()} | {d} | {tpp:.1f} | {lpp:.1f} | {tpp / lpp:.2f}x | "
                         f"{ttg:.2f} | {ltg:.2f} | {ttg / ltg:.2f}x | {rss:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        pathlib.Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
