"""Constrained decoding on a tiny random-weight model: whatever the model would say, every sampled output under a
grammar is valid, as judged by the jsonschema package (an implementation independent of llguidance).

Random weights make unconstrained text noise, so a valid output is the grammar's doing alone. Schemas bound their
strings and arrays: a random model closes a string only by chance, and the tiny model's context is 256 tokens.
The driver (tests/integration/grammar_samples.c) runs N generations in one process and prints one JSON line each.
"""
import json
import os
import re
from pathlib import Path

import pytest

jsonschema = pytest.importorskip("jsonschema")

N = 200
MODEL = "tied_gqa2"
PROMPT = "<|im_start|>user\nGive me JSON.<|im_end|>\n<|im_start|>assistant\n"

SCHEMAS = {
    "object": {"type": "object",
               "properties": {"name": {"type": "string", "maxLength": 8},
                              "age": {"type": "integer", "minimum": 0, "maximum": 120},
                              "member": {"type": "boolean"}},
               "required": ["name", "age"], "additionalProperties": False},
    "nested": {"type": "object",
               "properties": {"point": {"type": "object",
                                        "properties": {"x": {"type": "integer", "minimum": -50, "maximum": 50},
                                                       "y": {"type": "integer", "minimum": -50, "maximum": 50}},
                                        "required": ["x", "y"], "additionalProperties": False},
                              "tags": {"type": "array", "maxItems": 3,
                                       "items": {"type": "object",
                                                 "properties": {"k": {"enum": ["a", "b", "c"]}},
                                                 "required": ["k"], "additionalProperties": False}}},
               "required": ["point", "tags"], "additionalProperties": False},
    "array": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 2, "maxItems": 5},
    "enum": {"enum": ["red", "green", "blue", 3, None, True]},
    "numbers": {"type": "object",
                "properties": {"p": {"type": "number", "minimum": -1.5, "maximum": 2.25},
                               "q": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                               "n": {"type": "integer", "minimum": 10, "maximum": 999}},
                "required": ["p", "q", "n"], "additionalProperties": False},
    "pattern": {"type": "object",
                "properties": {"code": {"type": "string", "pattern": "^[a-z]{2,4}-[0-9]{1,3}$"},
                               "word": {"type": "string", "minLength": 2, "maxLength": 5}},
                "required": ["code", "word"], "additionalProperties": False},
    "anyof": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 1000},
                        {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
                         "additionalProperties": False},
                        {"type": "string", "maxLength": 3}]},
    "const_null": {"type": "object", "properties": {"v": {"const": "fixed"}, "z": {"type": "null"}},
                   "required": ["v", "z"], "additionalProperties": False},
}

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                      "parameters": {"type": "object",
                                                     "properties": {"city": {"type": "string", "maxLength": 6},
                                                                    "unit": {"enum": ["c", "f"]}},
                                                     "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer", "minimum": -99, "maximum": 99},
                                         "b": {"type": "integer", "minimum": -99, "maximum": 99}},
        "required": ["a", "b"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "noop", "parameters": {
        "type": "object", "properties": {}, "additionalProperties": False}}},
    {"type": "function", "function": {"name": "set_flags", "parameters": {
        "type": "object", "properties": {"flags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}},
        "required": ["flags"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "pick", "parameters": {
        "type": "object", "properties": {"choice": {"anyOf": [{"const": "x"}, {"type": "integer", "minimum": 0,
                                                                                "maximum": 9}]}},
        "required": ["choice"], "additionalProperties": False}}},
]


@pytest.fixture(scope="module")
def samples_bin(tandem_bin):
    v = os.environ.get("TANDEM_GRAMMAR_SAMPLES")
    p = Path(v) if v else tandem_bin.parent / "tests" / "grammar_samples"
    if not p.is_file():
        pytest.skip(f"grammar_samples not found at {p} (build it, or set TANDEM_GRAMMAR_SAMPLES)")
    return p


def run_samples(samples_bin, models_dir, grammar_args, n=N, max_tokens=200, seed=1):
    import subprocess
    out = subprocess.run([str(samples_bin), str(models_dir / MODEL), str(n), str(seed), str(max_tokens), PROMPT,
                          *grammar_args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == n
    return lines


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_outputs_validate(samples_bin, models_dir, tmp_path, name):
    schema = SCHEMAS[name]
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    validator = jsonschema.Draft202012Validator(schema)
    texts = set()
    for s in run_samples(samples_bin, models_dir, ["schema", str(path)]):
        assert s["finish"] == "eos", s
        value = json.loads(s["text"])
        errors = [e.message for e in validator.iter_errors(value)]
        assert not errors, (s["text"], errors)
        assert compact_style(s["text"]), s["text"]
        texts.add(s["text"])
    assert len(texts) > 1 or name == "const_null"  # sampled: the grammar leaves choices, and they are taken


def compact_style(text):
    """The format of tandem's grammars: JSON with Python's json.dumps separators ", " and ": ", no other whitespace
    outside strings."""
    skeleton = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    return not re.search(r"\s", skeleton.replace(", ", ",").replace(": ", ":"))


def tool_ids(models_dir):
    cfg = json.loads((models_dir / MODEL / "tokenizer.json").read_text())
    return {a["content"]: a["id"] for a in cfg["added_tokens"]}


CALL = re.compile(r"<tool_call>\n(.*?)\n</tool_call>", re.S)


def check_calls(text, tools):
    """The calls in text, each validated: a known name and arguments valid under that tool's parameters."""
    by_name = {t["function"]["name"]: t["function"].get("parameters", {"type": "object"}) for t in tools}
    calls = CALL.findall(text)
    for body in calls:
        call = json.loads(body)
        assert list(call) == ["name", "arguments"], body
        assert call["name"] in by_name, body
        errors = [e.message for e in jsonschema.Draft202012Validator(by_name[call["name"]]).iter_errors(
            call["arguments"])]
        assert not errors, (body, errors)
        assert compact_style(body), body
    return calls


@pytest.mark.parametrize("n_tools,parallel", [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (2, 1), (5, 1)])
def test_tool_calls_required(samples_bin, models_dir, tmp_path, n_tools, parallel):
    tools = TOOLS[:n_tools]
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(tools))
    names = set()
    for s in run_samples(samples_bin, models_dir, ["tools", str(path), "required", str(parallel), "0", "0"]):
        calls = check_calls(s["text"], tools)
        names.update(json.loads(c)["name"] for c in calls)
        if parallel and s["finish"] == "length":  # a random model may go on calling: the calls made are whole
            assert re.fullmatch(r"\s*(<tool_call>\n.*?\n</tool_call>\s*)*(<tool_call>.*)?", s["text"], re.S)
            continue
        assert s["finish"] == "eos", s
        # whitespace, then calls separated by whitespace only, then the end
        assert re.fullmatch(r"\s*(<tool_call>\n.*?\n</tool_call>\s*)+", s["text"], re.S), s["text"]
        assert len(calls) >= 1 and (parallel or len(calls) == 1), s["text"]
    assert len(names) == n_tools  # every tool gets called by some sample


def test_tool_call_named(samples_bin, models_dir, tmp_path):
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(TOOLS))
    for s in run_samples(samples_bin, models_dir, ["tools", str(path), "add", "1", "0", "0"], n=50):
        calls = check_calls(s["text"], TOOLS)
        assert calls and all(json.loads(c)["name"] == "add" for c in calls), s["text"]


def test_tool_calls_auto_and_none(samples_bin, models_dir, tmp_path):
    ids = tool_ids(models_dir)
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(TOOLS[:3]))
    n_calls = 0
    for s in run_samples(samples_bin, models_dir, ["tools", str(path), "auto", "1", "0", "0"], max_tokens=120):
        # free text may end anywhere (a random model rarely ends), but a call, once opened, is exact
        assert ids["<think>"] not in s["ids"] and ids["</think>"] not in s["ids"]
        if ids["<tool_call>"] in s["ids"]:
            first = s["ids"].index(ids["<tool_call>"])
            assert ids["</tool_call>"] not in s["ids"][:first]
            complete = s["ids"].count(ids["</tool_call>"])
            n_calls += len(check_calls(s["text"], TOOLS[:3]))
            assert n_calls >= complete
    assert n_calls > 0  # the random model opened calls now and then, and they were whole and valid
    for s in run_samples(samples_bin, models_dir, ["tools", str(path), "none", "1", "0", "0"], n=50,
                         max_tokens=120):
        assert ids["<tool_call>"] not in s["ids"] and ids["</tool_call>"] not in s["ids"]


def test_tool_calls_after_open_reasoning(samples_bin, models_dir, tmp_path):
    """reasoning_open: anything (tags included) until </think>, then the required call; never an end before it."""
    ids = tool_ids(models_dir)
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(TOOLS[:2]))
    finished = 0
    for s in run_samples(samples_bin, models_dir, ["tools", str(path), "required", "0", "1", "1"], n=50,
                         max_tokens=200):
        if s["finish"] == "eos":
            finished += 1
            close = s["ids"].index(ids["</think>"])
            after = s["ids"][close + 1:]
            assert after[0] != ids["<|im_end|>"]
            text_after = s["text"].split("</think>", 1)[1] if "</think>" in s["text"] else None
            assert text_after is not None and len(check_calls(text_after, TOOLS[:2])) == 1, s["text"]
        else:
            assert s["finish"] == "length"


REF_TOOLS = [
    # "#": the tool's own parameters (recursion), not the calls schema the grammar nests them in
    {"type": "function", "function": {"name": "tree", "parameters": {
        "type": "object", "properties": {"v": {"type": "integer", "minimum": 0, "maximum": 9},
                                         "kids": {"type": "array", "maxItems": 2, "items": {"$ref": "#"}}},
        "required": ["v"], "additionalProperties": False}}},
    # "#/$defs/…", "#/definitions/…" and "#/properties/…": pointers into the tool's own schema
    {"type": "function", "function": {"name": "copy", "parameters": {
        "type": "object", "properties": {"src": {"$ref": "#/$defs/path"}, "dst": {"$ref": "#/properties/src"},
                                         "mode": {"$ref": "#/definitions/mode"}},
        "$defs": {"path": {"type": "string", "pattern": "^[a-z]{1,4}$"}},
        "definitions": {"mode": {"enum": ["r", "w"]}},
        "required": ["src", "dst", "mode"], "additionalProperties": False}}},
]


@pytest.mark.parametrize("tools", [REF_TOOLS[:1], REF_TOOLS[1:], REF_TOOLS + TOOLS[:2]],
                         ids=["recursive_alone", "pointers_alone", "among_others"])
def test_tool_parameters_with_local_refs(samples_bin, models_dir, tmp_path, tools):
    """A tool's "$ref": "#…" resolves within its own parameters schema, wherever the grammar nests it (alone, or in
    an anyOf of several tools): the sampled arguments validate under the tool's schema as written."""
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(tools))
    names, whole = set(), 0
    for s in run_samples(samples_bin, models_dir, ["tools", str(path), "required", "0", "0", "0"], n=100,
                         max_tokens=160):
        if s["finish"] == "length":  # a random model may nest "tree" deeper than the budget: no whole call
            continue
        assert s["finish"] == "eos", s
        calls = check_calls(s["text"], tools)
        assert len(calls) == 1, s["text"]
        names.add(json.loads(calls[0])["name"])
        whole += 1
    assert whole >= 50 and names >= {t["function"]["name"] for t in tools if t in REF_TOOLS}
