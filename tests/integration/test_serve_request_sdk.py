"""`tandem serve`'s request parsing (server/request.c) on the bodies the official openai SDK sends.

The SDK's own client builds each request (its HTTP transport is replaced by one that records the body), and
tests/integration/serve_parse_driver.c parses it with the real Qwen3 tokenizer and chat template. The prompt ids must
equal Python jinja2's rendering of the same template (as transformers' apply_chat_template sets it up) tokenized by
Hugging Face `tokenizers`, after the normalisations tandem documents (developer -> system, arguments strings ->
objects, text parts joined with "\\n"); sampling fields, stop strings, limits and errors must be what was sent.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
jinja2 = pytest.importorskip("jinja2")
tokenizers = pytest.importorskip("tokenizers")
pydantic = pytest.importorskip("pydantic")
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402

N_CTX = 4096
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}},
         {"type": "function", "function": {"name": "final_answer", "description": "The answer",
                                           "parameters": {"type": "object",
                                                          "properties": {"answer": {"type": "string"}}}}}]
HISTORY = [{"role": "system", "content": "You are an agent."},
           {"role": "user", "content": "Weather in Paris? Réponds en français ☀️"},
           {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
               "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
           {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"}]
CANNED = {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
          "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                       "message": {"role": "assistant", "content": "{\"city\": \"Paris\", \"temp\": 21}"}}]}


@pytest.fixture(scope="module")
def qwen3(qwen3_tokenizer_dir):
    tok = tokenizers.Tokenizer.from_file(str(qwen3_tokenizer_dir / "tokenizer.json"))
    template = json.loads((qwen3_tokenizer_dir / "tokenizer_config.json").read_text())["chat_template"]
    return tok, template


@pytest.fixture(scope="module")
def parse(tandem_bin, qwen3_tokenizer_dir, models_dir):
    v = os.environ.get("TANDEM_SERVE_PARSE_DRIVER")
    p = Path(v) if v else tandem_bin.parent / "tests" / "serve_parse_driver"
    if not p.is_file():
        pytest.fail(f"serve_parse_driver not found at {p} (build it, or set TANDEM_SERVE_PARSE_DRIVER)")

    proc = subprocess.Popen([str(p), str(qwen3_tokenizer_dir), str(models_dir / "tied_gqa2")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)

    def run(body, route="chat", n_ctx=N_CTX, no_think=False, max_tokens=0):
        case = {"route": route, "body": body, "n_ctx": n_ctx, "no_think": no_think, "max_tokens": max_tokens}
        proc.stdin.write(json.dumps(case) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line, f"serve_parse_driver ended (status {proc.poll()})"
        return json.loads(line)
    yield run
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0


def sdk_body(method="chat", **kwargs):
    """The body the openai SDK sends for client.chat.completions.create(**kwargs) (or .parse / completions)."""
    bodies = []

    def handler(request):
        bodies.append(request.content.decode())
        if json.loads(request.content).get("stream"):
            return httpx.Response(200, text="data: [DONE]\n\n", headers={"content-type": "text/event-stream"})
        if method == "completions":
            return httpx.Response(200, json={"id": "x", "object": "text_completion", "created": 1, "model": "m",
                                             "choices": [{"index": 0, "text": "", "finish_reason": "stop",
                                                          "logprobs": None}]})
        return httpx.Response(200, json=CANNED)

    client = openai.OpenAI(api_key="k", base_url="http://tandem.test/v1", max_retries=0,
                           http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    if method == "chat":
        client.chat.completions.create(model="qwen3", **kwargs)
    elif method == "parse":
        client.chat.completions.parse(model="qwen3", **kwargs)
    else:
        client.completions.create(model="qwen3", **kwargs)
    assert len(bodies) == 1
    return bodies[0]


def reference_ids(qwen3, messages, tools=None, **variables):
    """jinja2 + tokenizers: the template as transformers' apply_chat_template runs it, on the normalised messages."""
    tok, template = qwen3
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    env.globals["raise_exception"] = raise_exception
    msgs = []
    for m in json.loads(json.dumps(messages)):
        if m["role"] == "developer":
            m["role"] = "system"
        if isinstance(m.get("content"), list):
            m["content"] = "\n".join(p["text"] for p in m["content"])
        for c in m.get("tool_calls") or []:
            if isinstance(c["function"]["arguments"], str):
                c["function"]["arguments"] = json.loads(c["function"]["arguments"])
        msgs.append(m)
    render = env.from_string(template).render
    try:
        text = render(messages=msgs, tools=tools, add_generation_prompt=True, **variables)
    except (TypeError, jinja2.exceptions.UndefinedError):  # tandem.h: once more with null content as ""
        for m in msgs:
            if m.get("content") is None:
                m["content"] = ""
        text = render(messages=msgs, tools=tools, add_generation_prompt=True, **variables)
    return tok.encode(text, add_special_tokens=False).ids


def test_plain_chat_with_every_sampling_field(parse, qwen3):
    msgs = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    body = sdk_body(messages=msgs, temperature=0.2, top_p=0.5, seed=7, max_completion_tokens=20, stop=["END", "\n\n"],
                    presence_penalty=0.5, frequency_penalty=-0.5, n=1, user="u", store=False, metadata={"k": "v"},
                    extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1})
    r = parse(body)
    assert r["ok"], r
    assert r["prompt_ids"] == reference_ids(qwen3, msgs)
    s = r["sampling"]
    assert s["temperature"] == pytest.approx(0.2) and s["top_p"] == pytest.approx(0.5) and s["top_k"] == 20
    assert s["min_p"] == pytest.approx(0.05) and s["repetition_penalty"] == pytest.approx(1.1)
    assert s["presence_penalty"] == 0.5 and s["frequency_penalty"] == -0.5 and s["seed"] == 7
    assert r["max_tokens"] == 20 and r["stop"] == ["END", "\n\n"]
    assert not r["grammar"] and r["parse_output"] and not r["parse_tool_calls"] and not r["stream"]


def test_defaults_come_from_the_model_and_the_limits(parse, qwen3):
    """Left out: the model's generation_config.json (tied_gqa2: do_sample false, so greedy) and the server's limit
    on max_tokens, cut to the room the context leaves."""
    msgs = [{"role": "user", "content": "hi"}]
    r = parse(sdk_body(messages=msgs), max_tokens=100)
    assert r["ok"] and r["sampling"]["temperature"] == 0 and r["max_tokens"] == 100
    n = len(reference_ids(qwen3, msgs))
    r = parse(sdk_body(messages=msgs, max_tokens=100), n_ctx=n + 5)
    assert r["ok"] and r["max_tokens"] == 5
    r = parse(sdk_body(messages=msgs), n_ctx=n)
    assert not r["ok"] and r["status"] == 400 and r["code"] == "context_length_exceeded"
    assert f"maximum context length is {n} tokens" in r["message"] and f"resulted in {n} tokens" in r["message"]


def test_agent_history_with_tools(parse, qwen3):
    for choice, parallel in (("auto", True), ("required", False),
                             ({"type": "function", "function": {"name": "final_answer"}}, True)):
        r = parse(sdk_body(messages=HISTORY, tools=TOOLS, tool_choice=choice, parallel_tool_calls=parallel,
                           stop=["Observation:", "Calling tools:"]))
        assert r["ok"], r
        assert r["prompt_ids"] == reference_ids(qwen3, HISTORY, TOOLS)
        assert r["grammar"] and r["parse_tool_calls"] and r["stop"] == ["Observation:", "Calling tools:"]
    r = parse(sdk_body(messages=HISTORY, tools=TOOLS, tool_choice="none"))
    assert r["ok"] and r["prompt_ids"] == reference_ids(qwen3, HISTORY, TOOLS) and not r["parse_tool_calls"]


def test_thinking_switches(parse, qwen3):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "two"}]}]
    off = reference_ids(qwen3, msgs, enable_thinking=False)
    assert parse(sdk_body(messages=msgs))["prompt_ids"] == reference_ids(qwen3, msgs)
    assert parse(sdk_body(messages=msgs, extra_body={"chat_template_kwargs": {"enable_thinking": False}})
                 )["prompt_ids"] == off
    assert parse(sdk_body(messages=msgs, extra_body={"enable_thinking": False}))["prompt_ids"] == off
    assert parse(sdk_body(messages=msgs), no_think=True)["prompt_ids"] == off
    assert parse(sdk_body(messages=msgs, extra_body={"enable_thinking": True}), no_think=True
                 )["prompt_ids"] == reference_ids(qwen3, msgs, enable_thinking=True)


def test_structured_output_from_a_pydantic_model(parse, qwen3):
    class Weather(pydantic.BaseModel):
        city: str
        temp: int

    msgs = [{"role": "user", "content": "Weather in Paris as JSON"}]
    body = sdk_body("parse", messages=msgs, response_format=Weather)
    assert json.loads(body)["response_format"]["type"] == "json_schema"
    r = parse(body)
    assert r["ok"], r
    assert r["grammar"] and not r["parse_tool_calls"]
    assert r["prompt_ids"] == reference_ids(qwen3, msgs, enable_thinking=False)  # the JSON starts at once
    r = parse(sdk_body(messages=msgs, response_format={"type": "json_object"},
                       extra_body={"chat_template_kwargs": {"enable_thinking": True}}))
    assert not r["ok"] and r["status"] == 400 and r["param"] == "chat_template_kwargs.enable_thinking"


def test_stream_and_prediction(parse, qwen3):
    tok, _ = qwen3
    msgs = [{"role": "user", "content": "Rename x to y in: x = 1"}]
    r = parse(sdk_body(messages=msgs, stream=True, stream_options={"include_usage": True},
                       prediction={"type": "content", "content": "y = 1\nprint(y)"}))
    assert r["ok"] and r["stream"] and r["include_usage"]
    assert r["prediction_ids"] == tok.encode("y = 1\nprint(y)", add_special_tokens=False).ids


def test_sdk_bodies_refused_with_the_field(parse):
    image = [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]
    r = parse(sdk_body(messages=image))
    assert (r["status"], r["param"]) == (400, "messages[0].content[1]")
    assert r["message"].startswith("messages[0].content[1]: images need a Qwen3-VL model; model ")
    r = parse(sdk_body(messages=[{"role": "user", "content": "hi"}], top_logprobs=3))
    assert (r["status"], r["param"]) == (400, "top_logprobs") and "needs logprobs" in r["message"]
    r = parse(sdk_body(messages=[{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=3))
    assert r["ok"] and r["logprobs"] and r["top_logprobs"] == 3
    r = parse(sdk_body(messages=[{"role": "user", "content": "hi"}], n=3))
    assert (r["status"], r["param"]) == (400, "n")
    r = parse(sdk_body(messages=[{"role": "user", "content": "hi"}], tools=TOOLS,
                       tool_choice={"type": "function", "function": {"name": "nope"}}))
    assert (r["status"], r["param"]) == (400, "tool_choice.function.name")


def test_completions(parse, qwen3):
    tok, _ = qwen3
    prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    r = parse(sdk_body("completions", prompt=prompt, echo=True, stop="\n"), route="completions")
    assert r["ok"] and r["prompt_ids"] == tok.encode(prompt, add_special_tokens=False).ids
    assert r["max_tokens"] == 16 and r["echo"] == prompt and r["stop"] == ["\n"] and not r["parse_output"]
    r = parse(sdk_body("completions", prompt=[9707, 11, 1879], max_tokens=3, stream=True), route="completions")
    assert r["ok"] and r["prompt_ids"] == [9707, 11, 1879] and r["max_tokens"] == 3 and r["stream"]
