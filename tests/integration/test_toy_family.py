"""Issue 4's greedy losslessness on a trained pair: the committed toy family (bench/toy/models, made by
bench/toy/make_family.sh) decodes, with a draft of any fixed or adaptive length 1..16 and with or without n-gram
lookup, exactly the ids the target decodes alone, for several prompts."""
import json
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[2] / "bench" / "toy" / "models"
TARGET, DRAFTS = MODELS / "target-q8_0.gguf", [MODELS / "draft-q8_0.gguf", MODELS / "draft-pruned-healed-q8_0.gguf"]
PROMPTS = ["import os\nimport sys\n\n\ndef main(argv):\n",
           "class Queue:\n    \"\"\"A first-in, first-out queue.\"\"\"\n\n    def __init__(self, maxsize=0):\n",
           "    for i, line in enumerate(lines):\n        if line.startswith('#'):\n"]
N = 40


def generated(run_tandem, *args):
    cp = run_tandem("run", "-m", TARGET, "-n", N, "--temp", 0, "--ignore-eos", "--json", *args)
    return json.loads(cp.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def reference(run_tandem):
    if not TARGET.is_file():
        pytest.skip(f"{TARGET} not built (bash bench/toy/make_family.sh)")
    return {p: generated(run_tandem, "-p", p)["generated_ids"] for p in PROMPTS}


@pytest.mark.parametrize("draft", DRAFTS, ids=lambda p: p.stem)
def test_trained_pair_is_lossless(run_tandem, reference, draft):
    if not draft.is_file():
        pytest.skip(f"{draft} not built")
    accepted = 0
    # every draft length 1..16 once, each with one of the four (adaptive, lookup) settings and one of the prompts
    for draft_max in range(1, 17):
        prompt = PROMPTS[draft_max % len(PROMPTS)]
        adaptive, lookup = (draft_max // 4) % 2 == 0, draft_max % 2 == 0
        args = ["-p", prompt, "-md", draft, "--draft-max", draft_max] + ([] if adaptive else ["--draft-fixed"]) + \
            (["--lookup", 3] if lookup else [])
        out = generated(run_tandem, *args)
        assert out["generated_ids"] == reference[prompt], (draft_max, adaptive, lookup)
        accepted += out["speculative"]["accepted"]
    assert accepted > 0  # the trained draft agrees with the target at times: verification was exercised


@pytest.mark.parametrize("draft", DRAFTS, ids=lambda p: p.stem)
def test_stop_string_with_a_draft(run_tandem, reference, draft):
    """A stop string ends generation at the same place, with the same text and ids, with a draft (of several
    lengths, and with lookup) as without: accepted tokens past the stop string are not emitted."""
    if not draft.is_file():
        pytest.skip(f"{draft} not built")
    prompt = PROMPTS[1]
    full = generated(run_tandem, "-p", prompt)["text"]
    stop = full[len(full) // 2:len(full) // 2 + 3]  # a stretch from the middle of the target's own text
    alone = generated(run_tandem, "-p", prompt, "--stop", stop)
    assert alone["finish_reason"] == "stop" and len(alone["text"]) < len(full)
    for extra in (["--draft-max", "3"], ["--draft-max", "16", "--draft-fixed"], ["--lookup", "2"]):
        out = generated(run_tandem, "-p", prompt, "--stop", stop, "-md", draft, *extra)
        assert (out["text"], out["generated_ids"], out["finish_reason"]) == \
            (alone["text"], alone["generated_ids"], alone["finish_reason"]), extra
