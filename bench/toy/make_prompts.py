#!/usr/bin/env python3
# make_prompts.py — prompts for tandem synth on the toy family: code up to and including a `def` line, taken at
# evenly spaced functions of a text (the training split), as JSONL {"prompt": ...} on stdout.
"""usage: make_prompts.py TEXT N [--context LINES]

The toy models are base models trained on Python source, so their prompts are code to continue (synth --raw): the
LINES lines (default 8) that end with a function's `def ...:` line, for N functions evenly spaced over TEXT."""
import argparse
import json
import re
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("text")
    ap.add_argument("n", type=int)
    ap.add_argument("--context", type=int, default=8)
    a = ap.parse_args()
    lines = open(a.text, encoding="utf-8").read().split("\n")
    defs = [i for i, l in enumerate(lines) if re.match(r"\s*def \w+\(.*\):\s*$", l) and i >= a.context]
    if len(defs) < a.n:
        sys.exit(f"make_prompts.py: {a.text} has only {len(defs)} one-line function definitions, fewer than {a.n}")
    for k in range(a.n):
        i = defs[k * len(defs) // a.n]
        print(json.dumps({"prompt": "\n".join(lines[i - a.context + 1:i + 1]) + "\n"}))


if __name__ == "__main__":
    main()
