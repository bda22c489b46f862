#!/usr/bin/env python3
# probe_copy.py — does a toy agent model copy from its context? Greedy answers (tandem synth) to probe.jsonl's calls
# on made-up topics, scored: the right tool, the topic in the search query, the notes found verbatim in the code.
"""Usage: python3 bench/agent/probe_copy.py MODEL.gguf [--probe build/probe.jsonl] [--n 24] [--tandem build/tandem]

A quick learnability measure between training runs (seconds, no server): the full check is eval_agent.py, which
runs the model through tandem serve and smolagents on the held-out topics."""
import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def tool_call(text):
    m = re.search(r"<tool_call>\s*(\{.*\})\s*</tool_call>", text, re.S)
    if not m:
        return None
    try:
        call = json.loads(m.group(1))
    except json.JSONDecodeError:
        return None
    return call if isinstance(call, dict) and isinstance(call.get("arguments"), dict) else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--probe", default=str(HERE / "build" / "probe.jsonl"))
    ap.add_argument("--n", type=int, default=24, help="calls probed, half searches and half code where possible")
    ap.add_argument("--tandem", default=str(HERE.parents[1] / "build" / "tandem"))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    rows = [json.loads(line) for line in open(a.probe, encoding="utf-8")]
    by_tool = {t: [r for r in rows if r["tool"] == t] for t in ("web_search", "python")}
    picked = by_tool["web_search"][:a.n // 2] + by_tool["python"][:a.n - a.n // 2]
    with tempfile.TemporaryDirectory() as wd:
        prompts, out = Path(wd) / "p.jsonl", Path(wd) / "o.jsonl"
        prompts.write_text("".join(json.dumps({"prompt": r["prompt"]}) + "\n" for r in picked), encoding="utf-8")
        subprocess.run([a.tandem, "synth", "-m", a.model, "-f", str(prompts), "-o", str(out), "-n", "640",
                        "--chat-template-file", str(HERE / "passthrough.jinja"), "-c", "2048", "-t", str(a.threads)],
                       check=True, stdout=subprocess.DEVNULL)
        answers = {json.loads(line)["index"]: json.loads(line)["text"] for line in open(out, encoding="utf-8")}
    score = {"web_search": [0, 0, 0], "python": [0, 0, 0.0]}  # probed, right tool, topic copied / notes copied
    for i, r in enumerate(picked):
        s = score[r["tool"]]
        s[0] += 1
        call = tool_call(answers.get(i, ""))
        if not call or call.get("name") != r["tool"]:
            continue
        s[1] += 1
        if r["tool"] == "web_search":
            s[2] += r["topic"].lower() in str(call["arguments"].get("query", "")).lower()
        else:
            code = str(call["arguments"].get("code", ""))
            s[2] += sum(f.split(": ", 1)[1] in code for f in r["facts"]) / len(r["facts"])
    w, p = score["web_search"], score["python"]
    print(f"probe_copy: {a.model}: search {w[1]}/{w[0]} right tool, topic copied {w[2]}/{w[0]}; "
          f"code {p[1]}/{p[0]} right tool, notes copied {p[2] / max(p[0], 1):.2f} of the facts on average")
    return 0


if __name__ == "__main__":
    sys.exit(main())
