#!/usr/bin/env python3
"""make_sampler_golden.py — reference distributions for tandem's sampler from transformers' own logits
processors (repetition penalty, temperature, top-k, top-p, min-p, in generate()'s order), plus OpenAI-style
presence/frequency penalties computed in numpy. Writes tests/golden/sampler/cases.json.
Run from the repo root: python3 tests/gen/make_sampler_golden.py  (needs torch and transformers)."""
import json
import pathlib

import numpy as np
import torch
import transformers
from transformers.generation.logits_process import (MinPLogitsWarper, RepetitionPenaltyLogitsProcessor,
                                                    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

VOCAB = 96
SEED = 1234
OUT = pathlib.Path(__file__).resolve().parents[1] / "golden" / "sampler" / "cases.json"

CASES = [
    dict(temperature=1.0),
    dict(temperature=0.7),
    dict(temperature=1.3, top_k=10),
    dict(temperature=0.9, top_p=0.8),
    dict(temperature=1.0, min_p=0.05),
    dict(temperature=0.6, top_k=20, top_p=0.95),
    dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05),
    dict(temperature=1.0, repeat_penalty=1.3),
    dict(temperature=0.7, repeat_penalty=1.1, top_k=20, top_p=0.9),
    dict(temperature=1.0, presence_penalty=0.5, frequency_penalty=0.25),
    dict(temperature=1.0, top_p=0.3),
    dict(temperature=2.0, min_p=0.2),
]


def reference_probs(logits, history, c):
    scores = torch.tensor(logits, dtype=torch.float32)[None, :]
    ids = torch.tensor(history, dtype=torch.long)[None, :]
    if c.get("repeat_penalty", 1.0) != 1.0:
        scores = RepetitionPenaltyLogitsProcessor(c["repeat_penalty"])(ids, scores)
    pres, freq = c.get("presence_penalty", 0.0), c.get("frequency_penalty", 0.0)
    if pres or freq:  # OpenAI semantics: logit - count*frequency - [count > 0]*presence
        counts = np.bincount(np.array(history), minlength=VOCAB).astype(np.float32)
        adj = counts * np.float32(freq) + (counts > 0).astype(np.float32) * np.float32(pres)
        scores = scores - torch.tensor(adj)[None, :]
    scores = TemperatureLogitsWarper(c["temperature"])(ids, scores)
    if c.get("top_k", 0) > 0:
        scores = TopKLogitsWarper(c["top_k"])(ids, scores)
    if c.get("top_p", 1.0) < 1.0:
        scores = TopPLogitsWarper(c["top_p"])(ids, scores)
    if c.get("min_p", 0.0) > 0.0:
        scores = MinPLogitsWarper(c["min_p"])(ids, scores)
    return torch.softmax(scores, dim=-1)[0].tolist()


def main():
    rng = np.random.default_rng(SEED)
    out = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "numpy": np.__version__}, "seed": SEED, "vocab": VOCAB, "cases": []}
    for c in CASES:
        logits = (rng.standard_normal(VOCAB) * 3).astype(np.float32).tolist()
        history = rng.integers(0, VOCAB, size=24).tolist()
        out["cases"].append({"params": c, "logits": logits, "history": history,
                             "probs": reference_probs(logits, history, c)})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=0) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
