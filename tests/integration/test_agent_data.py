"""bench/agent/make_data.py, the toy agent's training data, checked against independent references: tandem's own
chat-template renderer (`tandem template`) gives the same text as the generator's jinja2 rendering, every tool call is
valid under the tool's JSON schema (jsonschema), the samples are whole requests and answers that fit a window under the trained
tokenizer (tokenizers), the copying drills copy, the held-out topics never occur, and the python-pptx code in the transcripts writes the deck that
eval_agent.py's checker accepts (python-pptx)."""
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "bench" / "agent"
sys.path.insert(0, str(AGENT))
SEQ = 1024


def make_data(out, qwen3_dir):
    subprocess.run([sys.executable, str(AGENT / "make_data.py"), "--out", str(out), "--episodes", "30",
                    "--prompt-episodes", "5", "--copy-samples", "200", "--vocab", "1024", "--seq", str(SEQ), "--examples", "40",
                    "--qwen3-tokenizer", str(qwen3_dir)], check=True, capture_output=True, timeout=300)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory, qwen3_tokenizer_dir):
    return make_data(tmp_path_factory.mktemp("agent_data"), qwen3_tokenizer_dir)


def examples(data):
    return [json.loads(line) for line in (data / "examples.jsonl").read_text(encoding="utf-8").splitlines()]


def test_tandem_renders_the_same_text(data, run_tandem, tmp_path):
    for i, ex in enumerate(examples(data)[:12]):
        (tmp_path / "m.json").write_text(json.dumps(ex["messages"]))
        (tmp_path / "mf.json").write_text(json.dumps(ex["messages"] + [ex["answer"]]))
        (tmp_path / "t.json").write_text(json.dumps(ex["tools"]))
        prompt = run_tandem("template", "-m", data / "tokenizer", "--messages", tmp_path / "m.json", "--tools",
                            tmp_path / "t.json", "--generation-prompt").stdout
        full = run_tandem("template", "-m", data / "tokenizer", "--messages", tmp_path / "mf.json", "--tools",
                          tmp_path / "t.json").stdout
        assert prompt == ex["prompt"], i
        assert full == ex["full"], i


def test_tool_calls_are_valid_under_their_schemas(data):
    exs = examples(data)
    names = set()
    for ex in exs:
        schemas = {t["function"]["name"]: t["function"]["parameters"] for t in ex["tools"]}
        for call in ex["answer"]["tool_calls"]:
            fn = call["function"]
            jsonschema.validate(fn["arguments"], schemas[fn["name"]])
            names.add(fn["name"])
            # what the model is trained to write after <tool_call>: Qwen3's JSON, parseable back to the call
            line = json.dumps({"name": fn["name"], "arguments": fn["arguments"]}, ensure_ascii=False)
            assert f"<tool_call>\n{line}\n</tool_call><|im_end|>" in ex["full"]
    assert names == {"web_search", "python", "final_answer"}


def test_samples_are_requests_and_answers(data):
    tok = Tokenizer.from_file(str(data / "tokenizer" / "tokenizer.json"))
    lines = [json.loads(line) for line in (data / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    drills = [s for s in lines if not s["prompt"].startswith("<|im_start|>system\n")]
    lines = [s for s in lines if s["prompt"].startswith("<|im_start|>system\n")]
    assert len(lines) >= 60 and len(drills) >= 60
    for s in drills:  # a copying drill: every answer line is copied from the user's message
        user = s["prompt"].split("<|im_start|>user\n", 1)[1]
        # thinking off: Qwen3's generation prompt holds the empty think block
        assert s["prompt"].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
        assert s["completion"].endswith("<|im_end|>\n")
        answer = s["completion"][:-len("<|im_end|>\n")]
        for line in answer.splitlines():
            for piece in re.findall(r'"([^"]+)"', line) or [line]:
                assert piece in user, (piece, user)
    copies = [json.loads(line) for line in (data / "copy.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(copies) >= 100
    for s in copies:  # the copying curriculum: the words of the request, back
        words = s["prompt"].split("Repeat exactly: ", 1)[1].split("<|im_end|>", 1)[0]
        assert s["completion"] == words + "<|im_end|>\n" and 2 <= len(words.split()) <= 6
    for s in lines:
        # the loss counts the answer only: the prompt is the whole request up to the generation prompt
        assert s["prompt"].startswith("<|im_start|>system\n") and s["prompt"].endswith("<|im_start|>assistant\n")
        assert s["completion"].startswith("<think>\n") and s["completion"].endswith("</tool_call><|im_end|>\n")
        assert s["completion"].count("<|im_start|>") == 0
        assert len(tok.encode(s["prompt"] + s["completion"], add_special_tokens=False).ids) <= SEQ + 1
    pairs = {(s["prompt"], s["completion"]) for s in lines}
    for ex in examples(data):  # each generated call is a sample (if it fits a window)
        if len(tok.encode(ex["full"], add_special_tokens=False).ids) <= SEQ + 1:
            assert (ex["prompt"], ex["full"][len(ex["prompt"]):]) in pairs


def test_heldout_topics_never_occur(data):
    from corpus import HELDOUT, NOTES
    texts = [(data / n).read_text(encoding="utf-8") for n in ("train.jsonl", "prompts.jsonl", "calib.txt", "probe.jsonl")]
    for topic in HELDOUT:
        for t in texts:
            assert topic not in t
            for fact in NOTES[topic]:
                assert fact.split(": ", 1)[1] not in t, fact


def test_transcript_code_writes_a_deck_the_checker_accepts(data, tmp_path):
    from agent_tools import run_python
    from eval_agent import check_deck
    done = 0
    for ex in examples(data):
        call = ex["answer"]["tool_calls"][0]["function"]
        code = call["arguments"].get("code", "")
        if call["name"] != "python" or "from pptx" not in code or "slide_layout[" in code:
            continue  # only the transcripts' working code (their made-up bugs are meant to fail)
        obs = run_python(code, tmp_path)
        assert obs.startswith("Saved ") and not obs.startswith("Error"), obs
        deck = tmp_path / obs.split()[1]
        observation = next(m["content"] for m in reversed(ex["messages"]) if m["content"].startswith("Observation:\n##"))
        topic = observation.split("### ", 1)[1].split("\n", 1)[0]
        facts = [line[2:] for line in observation.splitlines() if line.startswith("- ")]
        r = check_deck(str(deck), topic, facts)
        assert r["opens"] and r["title_slide"] and r["found"] == len(facts) and r["n_made_up"] == 0, r
        done += 1
    assert done >= 2


def test_deterministic(data, tmp_path, qwen3_tokenizer_dir):
    again = make_data(tmp_path, qwen3_tokenizer_dir)
    for name in ("train.jsonl", "copy.jsonl", "prompts.jsonl", "probe.jsonl", "tokenizer/tokenizer.json",
                 "tokenizer/tokenizer_config.json"):
        assert hashlib.sha256((again / name).read_bytes()).digest() == hashlib.sha256((data / name).read_bytes()).digest()
