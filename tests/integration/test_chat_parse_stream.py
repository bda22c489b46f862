"""test_chat_parse_stream.py — the chat output parser (tandem_chat_parser_* in libtandem, through ctypes) against
Python's json module: which tool-call bodies are calls at all.

A call is `<tool_call>\\n{"name": "f", "arguments": X}\\n</tool_call>` with X a JSON value written in many ways,
or a mutation of one (characters deleted, inserted, replaced; cases where that makes a "<tool_call>" are skipped). The parser
must take the call exactly when Python's strict JSON decoder (no NaN/Infinity, no duplicate "name" or "arguments" at
the top) reads an object with a non-empty string name at the start of the body; then its arguments, a raw slice of
the text, must load to the same value, and what follows the object is content. Otherwise the whole text is content,
verbatim. Each text is also fed in random pieces: the
deltas must add up to the same message."""
import ctypes
import json
import random

import pytest


class Delta(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("tool_index", ctypes.c_int32), ("tool_id", ctypes.c_char_p),
                ("tool_name", ctypes.c_char_p), ("text", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class Params(ctypes.Structure):
    _fields_ = [("reasoning_open", ctypes.c_bool), ("parse_tool_calls", ctypes.c_bool), ("id_seed", ctypes.c_uint64)]


CALLBACK = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.POINTER(Delta), ctypes.c_void_p)
REASONING, CONTENT, TOOL_CALL, TOOL_ARGUMENTS, TOOL_END, TOOL_DROPPED = range(6)


@pytest.fixture(scope="module")
def lib(tandem_bin):
    path = tandem_bin.parent / "libtandem.so"
    if not path.is_file():
        pytest.skip(f"{path} not built")
    lib = ctypes.CDLL(str(path))
    vp = ctypes.c_void_p
    lib.tandem_chat_parser_create.argtypes = [ctypes.POINTER(Params), ctypes.POINTER(vp)]
    lib.tandem_chat_parser_feed.argtypes = [vp, ctypes.c_char_p, ctypes.c_size_t, CALLBACK, vp]
    lib.tandem_chat_parser_finish.argtypes = [vp, CALLBACK, vp]
    lib.tandem_chat_parser_message_json.argtypes = [vp, ctypes.POINTER(vp)]
    lib.tandem_chat_parser_free.argtypes = [vp]
    lib.tandem_free.argtypes = [vp]
    return lib


def parse(lib, data, cuts=()):
    """data (bytes) fed in pieces ending at cuts -> (message dict, message from the deltas)."""
    p = ctypes.c_void_p()
    assert lib.tandem_chat_parser_create(ctypes.byref(Params(False, True, 1)), ctypes.byref(p)) == 0
    got = {"reasoning": b"", "content": b"", "calls": []}

    def on_delta(dp, _user):
        d = dp.contents
        text = ctypes.string_at(d.text, d.len) if d.len else b""
        if d.kind == REASONING:
            got["reasoning"] += text
        elif d.kind == CONTENT:
            got["content"] += text
        elif d.kind == TOOL_CALL:
            assert d.tool_index == len(got["calls"])
            got["calls"].append({"id": d.tool_id.decode(), "name": d.tool_name.decode(), "args": b"", "state": 0})
        else:
            call = got["calls"][d.tool_index]
            assert call["state"] == 0
            if d.kind == TOOL_ARGUMENTS:
                call["args"] += text
            else:
                call["state"] = 1 if d.kind == TOOL_END else 2
        return True

    cb = CALLBACK(on_delta)
    at = 0
    for c in list(cuts) + [len(data)]:
        assert lib.tandem_chat_parser_feed(p, data[at:c], c - at, cb, None) == 0
        at = c
    assert lib.tandem_chat_parser_finish(p, cb, None) == 0
    out = ctypes.c_void_p()
    assert lib.tandem_chat_parser_message_json(p, ctypes.byref(out)) == 0
    msg = json.loads(ctypes.string_at(out.value).decode("utf-8"))
    lib.tandem_free(out)
    lib.tandem_chat_parser_free(p)

    ended = [c for c in got["calls"] if c["state"] == 1]
    assert all(c["state"] != 0 for c in got["calls"])
    streamed = {"role": "assistant",
                "content": got["content"].decode("utf-8") if got["content"] or not ended else None}
    if got["reasoning"]:
        streamed["reasoning_content"] = got["reasoning"].decode("utf-8")
    if ended:
        streamed["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
            "name": c["name"], "arguments": c["args"].decode("utf-8")}} for c in ended]
    return msg, streamed


def no_constants(name):
    raise ValueError(name)


def reference(body):
    """The call Python's json sees at the start of body, or None: (name, arguments value, the text after it)."""
    tops = []

    def hook(pairs):
        tops.append(pairs)  # the outermost object is the last one completed
        return dict(pairs)

    try:
        value, end = json.JSONDecoder(object_pairs_hook=hook, parse_constant=no_constants).raw_decode(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    keys = [k for k, _ in tops[-1]]
    if keys.count("name") > 1 or keys.count("arguments") > 1:
        return None
    name = value.get("name")
    if not isinstance(name, str) or not name or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return None
    return name, value.get("arguments", {}), body[end:]


def random_value(rng, depth=0):
    r = rng.random()
    if depth > 3 or r < 0.4:
        return rng.choice([0, -0.0, 1.5e-7, -12, 10**20, 3.25, True, False, None, "", "x", "é\"\\/\n\t}{][,:",
                           "日本 🙂", "\u0001\u007f", "</tool_call>"])
    if r < 0.7:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["a", "name", "arguments", "k\"", "ü", ""]) + str(i): random_value(rng, depth + 1)
            for i in range(rng.randint(0, 3))}


def render(rng, value):
    style = rng.randint(0, 3)
    if style == 0:
        return json.dumps(value, ensure_ascii=False)
    if style == 1:
        return json.dumps(value, separators=(",", ":"))
    if style == 2:
        return json.dumps(value, indent=rng.choice([1, 2, "\t"]), ensure_ascii=False)
    return " " + json.dumps(value, ensure_ascii=rng.random() < 0.5) + "\n"


ALPHABET = "{}[]\",:0123456789.eE+- \n\t\\/tfnrualsx\u00e9"
TRICKY = ["01", "1.", ".5", "-", "1e", "1e+", "-0", "0.0e-0", "1E5", "-0.5E-10", "\"\\u12\"", "\"\\uD83D\\uDE00\"",
          "\"\\ud800\"", "\"\\x\"", "[1,]", "{\"a\":1,}", "{,}", "[,1]", "tru", "nul", "NaN", "Infinity", "-Infinity",
          "\"a\tb\"", "\"\u007f\"", "{\"a\" 1}", "[1 2]", "\"\\/\"", "[]", "{}", "\"\"", "0", "truex", "[1]]", "{}}",
          "\"\\u00e9\"", "1 2", "{\"a\":{}}, \"name\": \"g\"", "{}, \"arguments\": 1", "[\"}\"], \"x\": [1]"]


def test_arguments_accepted_exactly_when_json_says_so(lib):
    rng = random.Random(20250429)
    cases = list(TRICKY)
    for _ in range(2000):
        s = render(rng, random_value(rng))
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            i = rng.randrange(len(s) + 1)
            op = rng.randrange(3)
            if op == 0 and s:
                s = s[:i] + s[i + 1:]
            elif op == 1:
                s = s[:i] + rng.choice(ALPHABET) + s[i:]
            elif s:
                s = s[:i] + rng.choice(ALPHABET) + s[i + 1:]
        cases.append(s)
    n_calls = 0
    for x in cases:
        if "<tool_call>" in x:  # a mutation made a tag: the text after a break is read again, not this oracle
            continue
        body = "{\"name\": \"f\", \"arguments\": " + x + "}"
        text = "<tool_call>\n" + body + "\n</tool_call>"
        data = text.encode("utf-8")
        msg, streamed = parse(lib, data)
        ref = reference(body)
        if ref is None:
            assert msg == {"role": "assistant", "content": text}, (x, msg)
        else:
            n_calls += 1
            # after the object: whitespace, then "</tool_call>" (and its newlines) or text that is content
            rest = (ref[2] + "\n</tool_call>").lstrip(" \t\n\r")
            content = rest[len("</tool_call>"):].lstrip("\n") if rest.startswith("</tool_call>") else rest
            assert msg.get("content") == (content or None) and len(msg["tool_calls"]) == 1, (x, msg)
            fn = msg["tool_calls"][0]["function"]
            assert fn["name"] == ref[0], x
            raw = fn["arguments"]
            assert raw in body, (x, raw)  # a slice of what was generated, never re-serialized
            assert json.loads(raw, parse_constant=no_constants) == ref[1], (x, raw)
        assert streamed == msg, x
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 12))))
        assert parse(lib, data, cuts) == (msg, streamed), (x, cuts)
    assert 0.3 < n_calls / len(cases) < 0.7  # both kinds are exercised
