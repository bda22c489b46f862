#!/usr/bin/env python3
"""make_python_golden.py — goldens for the Python package's min_new_tokens and log-probabilities (python/tandem),
made with transformers on the tiny random model tests/golden/models/tied_gqa2. Writes tests/golden/python/cases.json:
- prompt_ids: a raw prompt (no chat template) tokenized with the model's tokenizer.json (tokenizers);
- free: the greedy continuation (N_NEW ids) with the model's end ids never generated in it;
- eos_id: an id of `free` (its first occurrence at EOS_AT or later) made an end id, as a generation_config.json
  with eos_token_id [eos_id, 402, 400] gives it, so that greedy decoding ends early;
- cases: for several min_new_tokens, what transformers' model.generate(do_sample=False, min_new_tokens=m,
  max_new_tokens=N_NEW) returns with that end id (MinNewTokensLengthLogitsProcessor bans the end ids for the first
  m ids), each generated id's log_softmax from one forward pass over prompt + output (raw logits, float32), their
  sum, the TOP most likely ids and log-probabilities of every position, and the smallest top1 - top2 gap of the
  logits greedy chose from (end ids removed where banned), so that tandem's own rounding cannot flip an argmax.

    /tmp/vl-venv/bin/python tests/gen/make_python_golden.py   # from the repo root; deterministic
(torch is not a dependency of the repo; the venv is make_vl_golden.py's.)
"""
import json
import pathlib

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, GenerationConfig

REPO = pathlib.Path(__file__).resolve().parents[2]
MODEL = REPO / "tests" / "golden" / "models" / "tied_gqa2"
OUT = REPO / "tests" / "golden" / "python" / "cases.json"
PROMPT = "the cat sat on the mat and"
N_NEW = 16
EOS_AT = 5
MIN_NEW = [0, 5, 6, 8, 12]  # 5 and 6: the end id may come at index 5, then not
TOP = 5
MODEL_EOS = [402, 400]


def main():
    torch.manual_seed(0)
    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    prompt = tok.encode(PROMPT, add_special_tokens=False).ids
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32, attn_implementation="eager").eval()
    x = torch.tensor([prompt])

    def generate(eos, min_new):
        cfg = GenerationConfig(do_sample=False, max_new_tokens=N_NEW, min_new_tokens=min_new, eos_token_id=eos,
                               pad_token_id=400, bos_token_id=400)
        with torch.no_grad():
            return model.generate(x, attention_mask=torch.ones_like(x), generation_config=cfg)[0, len(prompt):].tolist()

    free = generate([], 0)  # no end id at all: the model's own end ids must not occur either
    assert not set(free) & set(MODEL_EOS), "the free continuation holds an end id: pick another prompt"
    eos_id = next(t for i, t in enumerate(free) if i >= EOS_AT and t not in free[:i])
    eos = [eos_id] + MODEL_EOS
    cases = []
    for m in MIN_NEW:
        ids = generate(eos, m)
        with torch.no_grad():
            logits = model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1:-1].double()
        logp = torch.log_softmax(logits, dim=-1)
        chosen = [float(logp[i, t]) for i, t in enumerate(ids)]
        top = torch.topk(logp, TOP, dim=-1)
        gaps = []
        for i in range(len(ids)):
            row = logits[i].clone()
            if i < m:
                row[eos] = -float("inf")
            two = torch.topk(row, 2).values
            gaps.append(float(two[0] - two[1]))
            assert int(row.argmax()) == ids[i]
        cases.append(dict(min_new_tokens=m, ids=ids, finish="eos" if ids[-1] in eos else "length",
                          logprobs=chosen, score=float(np.sum(chosen)), top_ids=top.indices.tolist(),
                          top_logprobs=top.values.tolist(), min_gap=min(gaps)))
    assert len({tuple(c["ids"]) for c in cases}) >= 3, "the cases do not differ enough"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(dict(
        versions=dict(torch=torch.__version__.split("+")[0], transformers=transformers.__version__),
        model="tied_gqa2", prompt=PROMPT, prompt_ids=prompt, n_new=N_NEW, free=free, eos_id=eos_id,
        eos_token_id=eos, cases=cases), indent=1) + "\n")
    for c in cases:
        print(c["min_new_tokens"], c["finish"], len(c["ids"]), "min gap %.4f" % c["min_gap"], "score %.4f" % c["score"])


if __name__ == "__main__":
    main()
