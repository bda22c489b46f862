"""`tandem serve`'s answers (server/response.c) as the official openai SDK reads them.

Scripted generated text (reasoning, content, tool calls, a call that does not parse, text that is not ASCII) goes
through serve_answer by tests/integration/serve_answer_driver.c, whole, cut at every byte boundary and byte by
byte. Every chunk must validate as openai.types.chat.ChatCompletionChunk (Completion for /v1/completions), every
body as ChatCompletion; the stream accumulated by the SDK's own ChatCompletionStreamState must give the message of
the non-streamed body; and that message must be the one written here by hand from Qwen3's output format.
"""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")
from openai.lib.streaming.chat import ChatCompletionStreamState  # noqa: E402
from openai._models import construct_type  # noqa: E402
from openai.types import Completion  # noqa: E402
from openai.types.chat import ChatCompletion, ChatCompletionChunk  # noqa: E402

RESULT = {"finish": "eos", "n_prompt": 31, "n_generated": 17, "n_prompt_reused": 12, "speculative": True,
          "n_drafted": 10, "n_accepted": 7, "n_rounds": 4, "ttft_ms": 12.5, "prompt_ms": 10.0, "decode_ms": 80.0}

CALL_WEATHER = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
CALL_ADD = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'

# (name, generated text, parser settings, engine finish, expected message: reasoning, content, [(name, arguments)],
#  expected finish_reason)
SCRIPTS = [
    ("reasoning_then_content", "<think>\nLet me think.\n</think>\n\nThe answer is 42.", {}, "eos",
     ("Let me think.", "The answer is 42.", []), "stop"),
    ("two_calls_after_reasoning", "<think>\nI need the weather.\n</think>\n\n" + CALL_WEATHER + "\n" + CALL_ADD,
     {"parse_tool_calls": True}, "eos",
     ("I need the weather.", None, [("get_weather", '{"city": "Paris"}'), ("add", '{"a": 1, "b": 2}')]),
     "tool_calls"),
    ("call_cut_by_length", 'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par',
     {"parse_tool_calls": True}, "length",
     (None, 'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par', []), "length"),
    ("dropped_call_then_call", '<tool_call>\n{"name": 5}\n</tool_call>\n' + CALL_ADD,
     {"parse_tool_calls": True}, "eos",
     (None, '<tool_call>\n{"name": 5}\n</tool_call>', [("add", '{"a": 1, "b": 2}')]), "tool_calls"),
    ("tool_call_text_without_tools", "Here: " + CALL_ADD, {}, "stop", (None, "Here: " + CALL_ADD, []), "stop"),
    ("unicode", "Héllo ☀️ 日本語 \u0000 é", {}, "eos", (None, "Héllo ☀️ 日本語 \u0000 é", []), "stop"),
    ("reasoning_open", "thinking… a < b\n</think>\n\nanswer <b>bold</b>", {"reasoning_open": True}, "aborted",
     ("thinking… a < b", "answer <b>bold</b>", []), "stop"),
    ("empty", "", {}, "context_full", (None, None, []), "length"),
]


@pytest.fixture(scope="module")
def driver(tandem_bin):
    v = os.environ.get("TANDEM_SERVE_ANSWER_DRIVER")
    p = Path(v) if v else tandem_bin.parent / "tests" / "serve_answer_driver"
    if not p.is_file():
        pytest.fail(f"serve_answer_driver not found at {p} (build it, or set TANDEM_SERVE_ANSWER_DRIVER)")

    def run(cases):
        lines = "".join(json.dumps(c) + "\n" for c in cases)
        cp = subprocess.run([str(p)], input=lines, capture_output=True, text=True, timeout=600)
        assert cp.returncode == 0, cp.stderr
        outs = [json.loads(line) for line in cp.stdout.splitlines()]
        assert len(outs) == len(cases)
        for o in outs:
            assert "error" not in o, o
        return [o["out"] for o in outs]
    return run


def cuttings(data: bytes):
    """The text whole, cut in two at every byte boundary, and byte by byte."""
    yield [data]
    for k in range(1, len(data)):
        yield [data[:k], data[k:]]
    yield [data[i:i + 1] for i in range(len(data))]


def case(text_pieces, stream, include_usage=False, route="chat", finish="eos", echo=None, **parser):
    return {"route": route, "stream": stream, "include_usage": include_usage, "echo": echo, "id_seed": 99,
            "pieces": [p.hex() for p in text_pieces], "result": dict(RESULT, finish=finish), **parser}


def events(out):
    """The SSE stream as JSON chunks; it must end with data: [DONE]."""
    assert out.endswith("data: [DONE]\n\n"), out[-200:]
    parts = out.split("\n\n")
    assert parts[-1] == "" and parts[-2] == "data: [DONE]"
    chunks = []
    for p in parts[:-2]:
        assert p.startswith("data: ") and "\n" not in p, p
        chunks.append(json.loads(p[len("data: "):]))
    return chunks


def message_of(msg):
    """(reasoning, content, [(name, arguments)]) of a message object (SDK model), content "" and None alike."""
    extra = msg.model_extra or {}
    calls = [(c.function.name, c.function.arguments) for c in (msg.tool_calls or [])]
    return extra.get("reasoning_content"), msg.content or None, calls


def check_usage(usage):
    assert usage.prompt_tokens == RESULT["n_prompt"] and usage.completion_tokens == RESULT["n_generated"]
    assert usage.total_tokens == RESULT["n_prompt"] + RESULT["n_generated"]
    assert usage.prompt_tokens_details.cached_tokens == RESULT["n_prompt_reused"]
    d = usage.completion_tokens_details
    assert d.accepted_prediction_tokens == RESULT["n_accepted"]
    assert d.rejected_prediction_tokens == RESULT["n_drafted"] - RESULT["n_accepted"]


def check_timings(t):
    assert t["ttft_ms"] == RESULT["ttft_ms"] and t["prompt_ms"] == RESULT["prompt_ms"]
    assert t["decode_ms"] == RESULT["decode_ms"] and t["cached_tokens"] == RESULT["n_prompt_reused"]
    assert t["drafted"] == RESULT["n_drafted"] and t["accepted"] == RESULT["n_accepted"]
    assert t["draft_rounds"] == RESULT["n_rounds"]
    assert t["decode_tokens_per_s"] == pytest.approx((RESULT["n_generated"] - 1) / (RESULT["decode_ms"] / 1e3))


@pytest.mark.parametrize("name,text,parser,finish,expected,finish_reason", SCRIPTS, ids=[s[0] for s in SCRIPTS])
def test_chat_stream_equals_body_equals_expected(driver, name, text, parser, finish, expected, finish_reason):
    data = text.encode()
    cuts = list(cuttings(data))
    cases = []
    for pieces in cuts:
        cases += [case(pieces, False, finish=finish, **parser), case(pieces, True, False, finish=finish, **parser),
                  case(pieces, True, True, finish=finish, **parser)]
    outs = driver(cases)
    bodies = outs[0::3]
    assert len(set(bodies)) == 1, "the body depends on where the text was cut"
    body = ChatCompletion.model_validate(json.loads(bodies[0]))
    assert body.object == "chat.completion" and body.id == "chatcmpl-1" and body.model == "tandem-test"
    assert body.created == 1700000000 and len(body.choices) == 1
    choice = body.choices[0]
    assert choice.index == 0 and choice.finish_reason == finish_reason and choice.logprobs is None
    msg = choice.message
    assert msg.role == "assistant"
    assert message_of(msg) == expected
    if not expected[2]:
        assert msg.content == (expected[1] or "")  # a string, even empty, when no tool was called
    elif expected[1] is None:
        assert msg.content is None  # OpenAI's shape for a pure tool-call turn
    if expected[2]:
        ids = [c.id for c in msg.tool_calls]
        assert all(re.fullmatch(r"call_[A-Za-z0-9]{24}", i) for i in ids) and len(set(ids)) == len(ids)
        assert all(c.type == "function" for c in msg.tool_calls)
    check_usage(body.usage)
    check_timings(body.model_extra["timings"])

    for k, pieces in enumerate(cuts):
        for include_usage, out in ((False, outs[3 * k + 1]), (True, outs[3 * k + 2])):
            chunks = events(out)
            state = ChatCompletionStreamState()
            for j, raw in enumerate(chunks):
                chunk = ChatCompletionChunk.model_validate(raw)
                assert chunk.id == "chatcmpl-1" and chunk.object == "chat.completion.chunk"
                assert chunk.model == "tandem-test" and chunk.created == 1700000000
                if include_usage:
                    assert "usage" in raw
                    if j < len(chunks) - 1:
                        assert raw["usage"] is None
                else:
                    assert "usage" not in raw
                state.handle_chunk(chunk)
            first = chunks[0]["choices"][0]
            assert first["delta"] == {"role": "assistant", "content": ""} and first["finish_reason"] is None
            if include_usage:  # the usage chunk: no choices
                last = chunks[-1]
                assert last["choices"] == [] and last["usage"] is not None
                check_usage(ChatCompletionChunk.model_validate(last).usage)
                check_timings(last["timings"])
                chunks = chunks[:-1]
            else:
                check_timings(chunks[-1]["timings"])
            end = chunks[-1]["choices"][0]
            assert end["delta"] == {} and end["finish_reason"] == finish_reason
            for c in chunks[:-1]:
                assert c["choices"][0]["finish_reason"] is None
                assert c["choices"][0]["delta"], "an empty delta before the end"
            # tool-call deltas: index on every one, id, type and name in the first of each call
            seen = set()
            for c in chunks:
                for tc in c["choices"][0]["delta"].get("tool_calls", []):
                    assert isinstance(tc["index"], int)
                    if tc["index"] not in seen:
                        assert tc["id"] and tc["type"] == "function" and tc["function"]["name"]
                        seen.add(tc["index"])
            assert seen == set(range(len(expected[2])))
            # the SDK's accumulated snapshot (get_final_completion refuses finish_reason "length")
            final = state.get_final_completion() if finish_reason != "length" else state.current_completion_snapshot
            got = final.choices[0]
            assert got.finish_reason == finish_reason
            assert message_of(got.message) == expected, (name, pieces)
            assert [c.id for c in got.message.tool_calls or []] == [c.id for c in msg.tool_calls or []]


@pytest.mark.parametrize("echo", [None, "Once upon"])
def test_completions(driver, echo):
    text = "a time, 日本 there was"
    data = text.encode()
    cuts = list(cuttings(data))
    cases = []
    for pieces in cuts:
        cases += [case(pieces, False, route="completions", finish="length", echo=echo),
                  case(pieces, True, True, route="completions", finish="length", echo=echo)]
    outs = driver(cases)
    want = (echo or "") + text
    assert len(set(outs[0::2])) == 1
    body = Completion.model_validate(json.loads(outs[0]))
    assert body.object == "text_completion" and body.id == "cmpl-1" and body.model == "tandem-test"
    assert body.choices[0].text == want and body.choices[0].finish_reason == "length"
    check_usage(body.usage)
    for out in outs[1::2]:
        raw = events(out)
        # the SDK reads completion chunks without validation (construct_type: its Completion type does not allow
        # the finish_reason null of the chunks before the last); the last two chunks validate strictly
        chunks = [construct_type(type_=Completion, value=c) for c in raw]
        for c in raw[-2:]:
            Completion.model_validate(c)
        assert all(c["object"] == "text_completion" and c["id"] == "cmpl-1" for c in raw)
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        check_usage(chunks[-1].usage)
        assert all(c.usage is None for c in chunks[:-1])
        assert "".join(c.choices[0].text for c in chunks[:-1]) == want
        assert chunks[-2].choices[0].finish_reason == "length" and chunks[-2].choices[0].text == ""
        assert all(c.choices[0].finish_reason is None for c in chunks[:-2])


def test_completions_bad_utf8_is_replaced(driver):
    """Bytes that never form a character come out as U+FFFD (Python's errors="replace"), whole or cut anywhere."""
    data = b"ok \xff\xe6\x97 then \xe6\x97\xa5 \xf0\x9f"
    want = data.decode("utf-8", errors="replace")
    cases = [case(p, False, route="completions") for p in cuttings(data)]
    cases += [case(p, True, route="completions") for p in cuttings(data)]
    outs = driver(cases)
    n = len(outs) // 2
    for out in outs[:n]:
        assert json.loads(out)["choices"][0]["text"] == want
    for out in outs[n:]:
        assert "".join(c["choices"][0]["text"] for c in events(out)) == want
