#!/usr/bin/env python3
# eval_agent.py — the toy agent's held-out success rate: `tandem serve` on a model, smolagents' ToolCallingAgent on
# each held-out topic's slides task, and a check of the .pptx it writes against the search result's notes.
"""A run succeeds when the agent ends with final_answer, its deck opens with python-pptx, one slide is titled with the
topic, every note of the topic is on a slide (heading as the slide title and fact as its text, or "heading: fact" as
a bullet) and no slide text is made up. "loose" counts decks with at least 80% of the notes and at most one made-up
line. Prints one JSON line per run and a summary; exits 0 whatever the rate (it is a measurement)."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
from corpus import HELDOUT, NOTES  # noqa: E402


def start_server(tandem, model, threads, ctx, draft=None):
    cmd = [tandem, "serve", "-m", model, "--port", "0", "-c", str(ctx), "--parallel", "1", "--alias", "agent",
           "-t", str(threads)]
    if draft:
        cmd += ["-md", draft]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    url = None
    for line in proc.stderr:
        if "listening on " in line:
            url = line.split("listening on ", 1)[1].strip()
            break
    if not url:
        proc.kill()
        sys.exit(f"eval_agent.py: {' '.join(cmd)} did not start")
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return proc, url.rstrip("/")


def deck_lines(path):
    """(titles, [(slide title, [body paragraphs])]) of a deck."""
    from pptx import Presentation
    prs = Presentation(path)
    slides = []
    for s in prs.slides:
        title = s.shapes.title.text if s.shapes.title is not None else ""
        body = []
        for sh in s.shapes:
            if sh.has_text_frame and sh != s.shapes.title:
                body += [p.text for p in sh.text_frame.paragraphs if p.text.strip()]
        slides.append((title, body))
    return slides


def check_deck(path, topic, facts):
    try:
        slides = deck_lines(path)
    except Exception as e:  # noqa: BLE001 — any failure to open is the measured outcome
        return {"opens": False, "error": repr(e)[:200]}
    pairs = [f.split(": ", 1) for f in facts]
    found = set()
    made_up = []
    known_texts = {t for _, t in pairs} | set(facts) | {"Key features"}
    for title, body in slides:
        for h, t in pairs:
            if (title == h and t in body) or f"{h}: {t}" in body:
                found.add(h)
        made_up += [b for b in body if b not in known_texts]
        if title not in {h for h, _ in pairs} | {topic, f"Key features of {topic}"}:
            made_up.append(title)
    return {"opens": True, "slides": len(slides), "title_slide": any(t == topic for t, _ in slides),
            "found": len(found), "notes": len(facts), "made_up": made_up[:5], "n_made_up": len(made_up)}


def run_one(url, topic, task, temp, seed, max_tokens):
    import smolagents
    from agent_tools import make_agent
    model = smolagents.OpenAIServerModel(model_id="agent", api_base=url + "/v1", api_key="unused",
                                         temperature=temp, max_tokens=max_tokens, seed=seed)
    with tempfile.TemporaryDirectory() as wd:
        agent = make_agent(model, wd, max_steps=6, verbosity_level=0)
        t0 = time.time()
        error = None
        try:
            answer = agent.run(task)
        except Exception as e:  # noqa: BLE001
            answer, error = None, repr(e)[:300]
        calls, step_errors = [], []
        for s in agent.memory.steps:
            if isinstance(s, smolagents.memory.ActionStep):
                calls += [tc.name for tc in s.tool_calls or []]
                if s.error is not None:
                    step_errors.append(str(s.error)[:200])
        decks = sorted(Path(wd).glob("*.pptx"))
        res = {"topic": topic, "temp": temp, "seed": seed, "calls": calls, "answer": str(answer)[:300],
               "step_errors": step_errors, "error": error, "seconds": round(time.time() - t0, 1),
               "deck": decks[0].name if decks else None}
        res.update(check_deck(str(decks[0]), topic, NOTES[topic]) if decks else {"opens": False})
    res["success"] = bool(res["opens"] and calls and calls[-1] == "final_answer" and res.get("title_slide")
                          and res.get("found") == res.get("notes") and res.get("n_made_up") == 0)
    res["loose"] = bool(res["opens"] and res.get("found", 0) >= 0.8 * res.get("notes", 1)
                        and res.get("n_made_up", 9) <= 1)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--draft", default=None)
    ap.add_argument("--tandem", default=str(REPO / "build" / "tandem"))
    ap.add_argument("--url", default=None, help="use a running server instead of starting one")
    ap.add_argument("--temps", default="0", help="comma-separated temperatures")
    ap.add_argument("--seeds", type=int, default=1, help="runs per topic at temperatures above 0")
    ap.add_argument("--topics", default=None, help="comma-separated topics (default: corpus.HELDOUT)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--max-tokens", type=int, default=800)
    a = ap.parse_args()
    topics = a.topics.split(",") if a.topics else HELDOUT
    proc, url = (None, a.url) if a.url else start_server(a.tandem, a.model, a.threads, a.ctx, a.draft)
    results = []
    try:
        for temp in [float(t) for t in a.temps.split(",")]:
            for seed in range(a.seeds if temp > 0 else 1):
                for topic in topics:
                    task = f"Summarise the key features of {topic} and present them as slides."
                    r = run_one(url, topic, task, temp, seed, a.max_tokens)
                    results.append(r)
                    print(json.dumps(r, ensure_ascii=False), flush=True)
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
    for temp in sorted({r["temp"] for r in results}):
        rs = [r for r in results if r["temp"] == temp]
        print(f"temp {temp}: success {sum(r['success'] for r in rs)}/{len(rs)}, loose {sum(r['loose'] for r in rs)}"
              f"/{len(rs)}, deck opens {sum(r['opens'] for r in rs)}/{len(rs)}")


if __name__ == "__main__":
    main()
