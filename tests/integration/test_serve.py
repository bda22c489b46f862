"""`tandem serve` through the official openai SDK and raw HTTP: answers against `tandem run` (an independent path through
the CLI), tool calls and structured outputs against jsonschema, /metrics through prometheus_client's parser, and the
server's behaviour under concurrency, disconnects, huge bodies, slow senders and SIGTERM.

Each server runs on the tiny random-weight model tied_gqa2 (its tokenizer has Qwen3's special tokens), on a free port
(`--port 0`, read from stderr), one evaluation thread; every server started is killed at teardown.
"""
import json
import signal
import socket
import threading
import time

import pytest

openai = pytest.importorskip("openai")
jsonschema = pytest.importorskip("jsonschema")
httpx = pytest.importorskip("httpx")
prometheus_parser = pytest.importorskip("prometheus_client.parser")
np = pytest.importorskip("numpy")
safetensors_numpy = pytest.importorskip("safetensors.numpy")
from serve_process import Server  # noqa: E402

MODEL = "tied_gqa2"
PROMPT = "hello there"
LONG_CTX = "32768"  # room for a long answer: disconnect and drain tests need a stream still running
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
]
PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def gauge(metrics, name):
    return next(v for (n, _), v in metrics.items() if n == name)


@pytest.fixture(scope="module")
def server(tandem_bin, models_dir, tmp_path_factory):
    s = Server(tandem_bin, models_dir / MODEL, tmp_path_factory.mktemp("serve"), "--parallel", "4", "--ctx", LONG_CTX,
               "--max-tokens", "30000", "--max-body", "1M")
    yield s
    s.stop(check=True)


@pytest.fixture
def fresh_server(tandem_bin, models_dir, tmp_path):
    """A server of one's own, for tests that stop it or fill it: started(*flags) -> Server."""
    started = []

    def start(*flags, env=None):
        started.append(Server(tandem_bin, models_dir / MODEL, tmp_path, *flags, env=env))
        return started[-1]
    yield start
    for s in started:
        s.stop(check=True)


def run_json(run_tandem, models_dir, *args):
    return json.loads(run_tandem("run", "-m", models_dir / MODEL, "--temp", "0", "--json", *args).stdout
                      .splitlines()[-1])


NO_THINK = {"extra_body": {"chat_template_kwargs": {"enable_thinking": False}}}  # random reasoning would run long


def chat_args(**kw):
    return {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "temperature": 0, "max_tokens": 16,
            **kw}


# ---- answers ----

def test_chat_equals_run_chat(server, run_tandem, models_dir):
    ran = run_json(run_tandem, models_dir, "--chat", "-p", PROMPT, "-n", "16")
    assert "<think>" not in ran["text"] and "<tool_call>" not in ran["text"]  # plain content: no parsing involved
    r = server.client().chat.completions.create(**chat_args())
    assert r.object == "chat.completion" and r.model == MODEL and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.content == ran["text"]
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(ran["prompt_ids"])
    assert r.usage.completion_tokens == len(ran["generated_ids"])


def test_stream_equals_non_stream(server):
    client = server.client()
    whole = client.chat.completions.create(**chat_args())
    chunks = list(client.chat.completions.create(**chat_args(stream=True, stream_options={"include_usage": True})))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert not chunks[-1].choices and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert len({c.id for c in chunks}) == 1


def test_completions_equal_run(server, run_tandem, models_dir):
    ran = run_json(run_tandem, models_dir, "-p", "Once upon a time", "-n", "12")
    r = server.client().completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=0)
    assert r.choices[0].text == ran["text"]
    assert r.usage.completion_tokens == len(ran["generated_ids"])
    assert r.choices[0].finish_reason == {"eos": "stop", "length": "length"}[ran["finish_reason"]]


# ---- logprobs: the model's raw distribution (log_softmax of the logits) at each generated token ----

def log_softmax(row):
    row = row.astype(np.float64)
    m = row.max()
    return row - m - np.log(np.exp(row - m).sum())


def test_logprobs_equal_transformers(fresh_server, models_dir):
    """/v1/completions on the reference prompt's ids, greedy, through the exact path: every token's logprob and its
    5 alternatives equal log_softmax of transformers' logits (tests/gen/make_golden.py) at that position."""
    ref = safetensors_numpy.load_file(str(models_dir / MODEL / "reference-hf.safetensors"))
    s = fresh_server("--exact")
    n = len(ref["greedy"])
    r = s.client().completions.create(model=MODEL, prompt=ref["prompt"].tolist(), max_tokens=n, temperature=0,
                                      logprobs=5, extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == n
    assert lp.text_offset[0] == 0  # (tokens cut characters here: each token's text has its own U+FFFD)
    for i, tok in enumerate(ref["greedy"].tolist()):
        want = log_softmax(ref["logits"][len(ref["prompt"]) - 1 + i])
        assert lp.token_logprobs[i] == pytest.approx(want[tok], abs=1e-4)
        top = sorted(want, reverse=True)[:5]
        # the legacy form is a {token: logprob} dict: alternatives spelt alike (U+FFFD) keep one entry
        assert lp.top_logprobs[i] and all(min(abs(v - t) for t in top) < 1e-4 for v in lp.top_logprobs[i].values())
        assert lp.token_logprobs[i] == pytest.approx(top[0], abs=1e-4)  # greedy: the most likely token
        assert i == 0 or lp.text_offset[i] > lp.text_offset[i - 1]


def chat_logprobs(client, stream, **kw):
    """The answer's content and its logprobs.content as the SDK parsed them (a stream's chunks joined)."""
    args = chat_args(logprobs=True, top_logprobs=3, max_tokens=24, **NO_THINK, **kw)
    if not stream:
        r = client.chat.completions.create(**args)
        return r.choices[0].message.content, r.choices[0].logprobs.content
    text, content = "", []
    for c in client.chat.completions.create(**args, stream=True):
        if c.choices:
            text += c.choices[0].delta.content or ""
            if c.choices[0].logprobs:
                content += c.choices[0].logprobs.content
    return text, content


def test_chat_logprobs_shape_and_stream(server):
    """OpenAI's shape through the SDK's types: one entry per token whose bytes make up the content, the greedy token
    the first of its alternatives; a stream's chunks carry the same entries as the whole answer."""
    text, content = chat_logprobs(server.client(), False)
    assert text and content
    assert b"".join(bytes(e.bytes) for e in content).decode(errors="replace") == text
    for e in content:
        assert len(e.top_logprobs) == 3 and e.top_logprobs[0].token == e.token
        assert e.top_logprobs[0].logprob == e.logprob and e.logprob <= 0
        assert [t.logprob for t in e.top_logprobs] == sorted((t.logprob for t in e.top_logprobs), reverse=True)
    s_text, s_content = chat_logprobs(server.client(), True)
    assert s_text == text
    assert [e.model_dump() for e in s_content] == [e.model_dump() for e in content]
    # sampled: still the raw distribution (temperature and penalties do not change it), and the drawn token need not
    # be the first alternative
    _, hot = chat_logprobs(server.client(), False, temperature=1.5, seed=3, frequency_penalty=1.0)
    assert all(e.logprob <= e.top_logprobs[0].logprob for e in hot)


def test_logprobs_with_a_draft_equal_without(server, fresh_server, models_dir):
    """Speculative decoding (the model as its own draft, and lookup, whose proposals are often rejected): the same
    tokens with the same logprobs as plain decoding, stream and not."""
    plain = chat_logprobs(server.client(), False)
    for flags, verified in ((["-md", models_dir / MODEL], "accepted_prediction_tokens"),
                            (["--lookup", "2"], "rejected_prediction_tokens")):
        s = fresh_server(*flags)
        for stream in (False, True):
            text, content = chat_logprobs(s.client(), stream)
            assert text == plain[0]
            assert [e.token for e in content] == [e.token for e in plain[1]]
            for got, want in zip(content, plain[1]):
                assert got.logprob == pytest.approx(want.logprob, abs=2e-3)
                assert [t.logprob for t in got.top_logprobs] == pytest.approx([t.logprob for t in want.top_logprobs],
                                                                              abs=2e-3)
        usage = s.client().chat.completions.create(**chat_args(**NO_THINK, max_tokens=24)).usage
        assert getattr(usage.completion_tokens_details, verified) > 0  # accepted ones, and corrected ones


def test_logprobs_bad_values(server):
    for kw, param in (({"top_logprobs": 21, "logprobs": True}, "top_logprobs"), ({"top_logprobs": 2}, "top_logprobs"),
                      ({"logprobs": 3}, "logprobs")):
        with pytest.raises(openai.BadRequestError) as e:
            server.client().chat.completions.create(**chat_args(**kw))
        assert e.value.body["param"] == param
    with pytest.raises(openai.BadRequestError) as e:
        server.client().completions.create(model=MODEL, prompt="x", logprobs=21)
    assert e.value.body["param"] == "logprobs"


def test_continuous_usage_stats(server):
    """stream_options.continuous_usage_stats (vLLM's): every chunk carries the usage so far; its completion_tokens are
    the tokens generated by then: as many as the logprobs entries sent so far, and at the end the final usage's."""
    chunks = list(server.client().chat.completions.create(
        **chat_args(stream=True, logprobs=True, max_tokens=24, **NO_THINK,
                    stream_options={"include_usage": True, "continuous_usage_stats": True})))
    final = chunks[-1].usage
    assert not chunks[-1].choices and final.completion_tokens == 24
    entries = 0
    for c in chunks[:-1]:
        assert c.usage.prompt_tokens == final.prompt_tokens
        assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens
        if c.choices[0].logprobs:
            entries += len(c.choices[0].logprobs.content)
            assert c.usage.completion_tokens >= entries
    assert chunks[-2].choices[0].finish_reason == "length" and chunks[-2].usage.completion_tokens == 24 == entries
    # without include_usage it changes nothing
    plain = list(server.client().chat.completions.create(
        **chat_args(stream=True, max_tokens=4, stream_options={"continuous_usage_stats": True})))
    assert all(c.usage is None for c in plain)


# ---- usage.completion_tokens_details.reasoning_tokens ----

# the tiny model's template, with a generation prompt that opens the reasoning (as Qwen3's thinking-2507 templates do)
THINK_TEMPLATE = ("{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                  "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}"
                  "{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}")
HOT = {"temperature": 1.5, "max_tokens": 60, "extra_body": {"top_k": 0, "min_p": 0, "top_p": 1}}


def test_reasoning_tokens(server, fresh_server, tmp_path):
    """Sampled answers to a prompt that opens <think>: reasoning_tokens counts the tokens through the generated
    </think> (found in the answer's logprobs entries, one per token), or all of them when it never closes; the same in
    a stream's usage chunk; 0 without reasoning."""
    (tmp_path / "think.jinja").write_text(THINK_TEMPLATE)
    s = fresh_server("--chat-template-file", tmp_path / "think.jinja")
    closed = open_ = 0
    for seed in range(40):
        args = {**chat_args(seed=seed, logprobs=True, **HOT)}
        r = s.client().chat.completions.create(**args)
        tokens = [e.token for e in r.choices[0].logprobs.content]
        want = tokens.index("</think>") + 1 if "</think>" in tokens else len(tokens)  # (an end id has no entry)
        if "<tool_call>" in tokens[:want]:
            continue  # no tools offered: text, but keep the test simple
        assert r.usage.completion_tokens_details.reasoning_tokens == want, (seed, tokens)
        if "</think>" in tokens:
            closed += 1
            assert r.choices[0].message.model_extra.get("reasoning_content")
            chunks = list(s.client().chat.completions.create(**args, stream=True,
                                                              stream_options={"include_usage": True}))
            assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == want
        else:
            open_ += 1
        if closed >= 2 and open_ >= 1:
            break
    assert closed >= 2 and open_ >= 1
    r = server.client().chat.completions.create(**chat_args(**NO_THINK))
    assert r.usage.completion_tokens_details.reasoning_tokens == 0


# ---- tools and structured outputs: the grammar makes them valid even from random weights ----

def calls_of(r, finish="tool_calls"):
    """The answer's tool calls, each valid under its tool's parameters (jsonschema), ids distinct."""
    assert r.choices[0].finish_reason == finish
    calls = r.choices[0].message.tool_calls
    assert calls and len({c.id for c in calls}) == len(calls)
    for c in calls:
        jsonschema.validate(json.loads(c.function.arguments), PARAMS[c.function.name])
    return calls


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tool_choice_required(server, seed):
    r = server.client().chat.completions.create(**chat_args(tools=TOOLS, tool_choice="required", temperature=1,
                                                            seed=seed, max_tokens=200, parallel_tool_calls=False,
                                                            **NO_THINK))
    assert len(calls_of(r)) == 1


def test_tool_choice_named(server):
    r = server.client().chat.completions.create(**chat_args(
        tools=TOOLS, tool_choice={"type": "function", "function": {"name": "add"}}, temperature=1, seed=5,
        max_tokens=200, parallel_tool_calls=False, **NO_THINK))
    assert [c.function.name for c in calls_of(r)] == ["add"]


def test_parallel_tool_calls(server):
    """Sampled answers with parallel calls allowed: every call of every answer valid, and some answer makes several
    (a random model rarely ends after one: an answer may then run into max_tokens, its finished calls kept)."""
    client = server.client()
    counts = []
    for seed in range(4):
        many = client.chat.completions.create(**chat_args(tools=TOOLS, tool_choice="required", temperature=1,
                                                          seed=seed, max_tokens=200, **NO_THINK))
        assert many.choices[0].finish_reason in ("tool_calls", "length")
        counts.append(len(calls_of(many, many.choices[0].finish_reason)))
    assert max(counts) > 1, counts


def test_tool_calls_streamed(server):
    args = chat_args(tools=TOOLS, tool_choice="required", temperature=1, seed=2, max_tokens=200, **NO_THINK)
    args["parallel_tool_calls"] = False
    whole = server.client().chat.completions.create(**args)
    calls = {}
    for c in server.client().chat.completions.create(**args, stream=True):
        for d in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            assert d.index is not None
            entry = calls.setdefault(d.index, {"id": d.id, "name": d.function.name, "arguments": ""})
            entry["arguments"] += d.function.arguments or ""
    assert [(c["name"], c["arguments"]) for _, c in sorted(calls.items())] == \
        [(c.function.name, c.function.arguments) for c in whole.choices[0].message.tool_calls]


def test_response_format_json_schema(server):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 120}},
              "required": ["name", "age"], "additionalProperties": False}
    for seed in range(3):
        r = server.client().chat.completions.create(**chat_args(
            temperature=1, seed=seed, max_tokens=200, **NO_THINK,
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema,
                                                                    "strict": True}}))
        jsonschema.validate(json.loads(r.choices[0].message.content), schema)


# ---- errors, in OpenAI's shape, as the SDK's exception types ----

def test_bad_request_names_the_field(server):
    with pytest.raises(openai.BadRequestError) as e:
        server.client().chat.completions.create(**chat_args(max_tokens=-1))
    assert e.value.status_code == 400 and e.value.body["param"] == "max_tokens"


def test_malformed_json(server):
    r = httpx.post(server.url + "/v1/chat/completions", content=b'{"messages": [', timeout=10,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(server.url + "/health", timeout=5).status_code == 200


def test_not_found_and_wrong_method(server):
    with pytest.raises(openai.NotFoundError):
        server.client().models.retrieve("no-such-model")
    r = httpx.get(server.url + "/v1/nothing", timeout=10)
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(server.url + "/v1/chat/completions", timeout=10)
    assert r.status_code == 405 and r.headers["allow"] == "POST" and "error" in r.json()


def test_api_key(fresh_server):
    s = fresh_server("--api-key", "sekrit")
    with pytest.raises(openai.AuthenticationError):
        s.client(api_key="wrong").chat.completions.create(**chat_args())
    with pytest.raises(openai.AuthenticationError):
        s.client(api_key="wrong").models.list()
    assert s.client(api_key="sekrit").chat.completions.create(**chat_args()).choices[0].message.content is not None
    assert httpx.get(s.url + "/health", timeout=5).status_code == 200  # health and metrics stay open
    assert httpx.get(s.url + "/metrics", timeout=5).status_code == 200
    t = fresh_server(env={"TANDEM_API_KEY": "from-env"})
    with pytest.raises(openai.AuthenticationError):
        t.client(api_key="wrong").models.list()
    assert t.client(api_key="from-env").models.list().data[0].id == MODEL


def raw_request(url, data, read_timeout=30):
    """Sends bytes on a fresh connection and returns the response's status line and headers (lower-cased names)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=read_timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything: the answer is still there
        head = b""
        while b"\r\n\r\n" not in head:
            part = sock.recv(65536)
            if not part:
                break
            head += part
    lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return int(lines[0].split()[1]), {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}


def test_body_too_large(server):
    """413 from the Content-Length before any body is read, and from a chunked body as it passes the limit."""
    status, _ = raw_request(server.url, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                        b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{")
    assert status == 413
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2 * 16)) + b"0\r\n\r\n"  # 2 MB > 1M
    status, _ = raw_request(server.url, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                        b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert status == 413
    with pytest.raises(openai.APIStatusError) as e:
        server.client().chat.completions.create(**chat_args(messages=[{"role": "user", "content": "x" * (1 << 20)}]))
    assert e.value.status_code == 413
    assert httpx.get(server.url + "/health", timeout=5).status_code == 200


# ---- routes ----

def test_models_and_health(server):
    assert [m.id for m in server.client().models.list().data] == [MODEL]
    assert server.client().models.retrieve(MODEL).id == MODEL
    r = httpx.get(server.url + "/health", timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_metrics(server):
    before = server.metrics()
    r = server.client().chat.completions.create(**chat_args())
    after = server.metrics()

    def delta(name):
        return sum(v for (n, _), v in after.items() if n == name) - sum(v for (n, _), v in before.items() if n == name)
    assert delta("tandem_generation_tokens_total") == r.usage.completion_tokens
    assert delta("tandem_prompt_tokens_total") == r.usage.prompt_tokens
    assert delta("tandem_time_to_first_token_seconds_count") == 1
    assert delta("tandem_e2e_request_latency_seconds_count") == 1
    assert after[("tandem_http_responses_total", (("code", "200"), ("route", "/v1/chat/completions")))] >= 1
    for name in ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"):
        assert after[(name, (("model_name", MODEL),))] == 0
    assert gauge(after, "tandem_requests_running") == 0
    assert "vllm:prefix_cache_hits_total" in {n for n, _ in after}


def test_kv_gauge_counts_rows(fresh_server):
    """The KV gauges count rows (token positions), not slots: a finished answer leaves its slot holding prompt +
    answer - 1 rows (the last token is never evaluated), free for reuse and so not "in use" (as vLLM counts evictable
    cached blocks); while one long answer runs on one of two slots, the rows in use are its prompt and more, and the
    usage share is rows / (2 x ctx), well below the 0.5 that counting slots would give."""
    s = fresh_server("--parallel", "2", "--ctx", LONG_CTX, "--max-tokens", "30000")
    rows = lambda m, state: m[("tandem_kv_cache_rows", (("state", state),))]  # noqa: E731
    m = s.metrics()
    total = 2 * int(LONG_CTX)
    assert (rows(m, "total"), rows(m, "running"), rows(m, "cached")) == (total, 0, 0)
    r = s.client().chat.completions.create(**chat_args())
    m = s.metrics()
    assert rows(m, "running") == 0 and rows(m, "cached") == r.usage.prompt_tokens + r.usage.completion_tokens - 1
    with httpx.stream("POST", s.url + "/v1/chat/completions", timeout=60,
                      json=chat_args(stream=True, **LONG)) as resp:
        lines = resp.iter_lines()
        for _ in range(20):
            next(lines)
        m = s.metrics()
    used = rows(m, "running")
    assert gauge(m, "tandem_requests_running") == 1 and used > 0
    for name in ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"):
        assert m[(name, (("model_name", MODEL),))] == pytest.approx(used / total, abs=1e-6) and used / total < 0.5
    assert gauge(m, "tandem_kv_cache_usage_ratio") == pytest.approx(used / total, abs=1e-6)


# ---- concurrency, disconnects, slow senders ----

def stream_text(client, **kw):
    out = []
    for c in client.chat.completions.create(**chat_args(stream=True, **kw)):
        if c.choices:
            out.append(c.choices[0].delta.content or "")
    return "".join(out)


def test_concurrent_streams(server):
    """8 streaming clients at once on 4 slots (4 wait in the queue): each gets what it gets alone. Several rounds:
    the slots' kept caches then share prefixes with the next prompts, whose reuse must be exact."""
    prompts = [f"{PROMPT} {i % 4}" for i in range(8)]
    alone = {p: stream_text(server.client(), messages=[{"role": "user", "content": p}], max_tokens=24)
             for p in set(prompts)}
    for _ in range(4):
        results = [None] * len(prompts)

        def worker(i):
            results[i] = stream_text(server.client(), messages=[{"role": "user", "content": prompts[i]}],
                                     max_tokens=24)
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert results == [alone[p] for p in prompts]


def test_64_concurrent_streams(server):
    """64 streaming clients at once on 4 slots (the rest queued): every one gets its answer alone, /health answers
    meanwhile (not held behind the queue: the bound is far below the queue's 64 answers), and no request is left
    running or waiting afterwards."""
    prompts = [f"{PROMPT} {i % 8}" for i in range(64)]
    alone = {p: stream_text(server.client(), messages=[{"role": "user", "content": p}], max_tokens=8)
             for p in set(prompts)}
    results = [None] * len(prompts)

    def worker(i):
        results[i] = stream_text(server.client(), messages=[{"role": "user", "content": prompts[i]}], max_tokens=8)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    assert httpx.get(server.url + "/health", timeout=5).status_code == 200
    for t in threads:
        t.join(300)
    assert results == [alone[p] for p in prompts]
    m = server.metrics()
    assert gauge(m, "vllm:num_requests_running") == 0 and gauge(m, "vllm:num_requests_waiting") == 0


def test_ten_thousand_messages(server):
    """A conversation of 10,000 messages is refused by name (400 on messages), and the server stays healthy."""
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": "hi"} for i in range(10000)]
    with pytest.raises(openai.BadRequestError) as e:
        server.client().chat.completions.create(**chat_args(messages=msgs))
    assert e.value.body["param"] == "messages" and "10000" in e.value.body["message"]
    assert httpx.get(server.url + "/health", timeout=5).status_code == 200


def wait_for(predicate, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


# Greedy, this prompt loops without an end id on this model: 24000 tokens take seconds, so the stream is cut mid-way
# (or the server drained with it running); DRAIN runs to its end.
LONG = {"max_tokens": 24000}
DRAIN = {"max_tokens": 16000}  # long enough to outlast the drain test's checks on a loaded machine (6000 did not)


def test_disconnect_frees_the_slot(server):
    cancelled = gauge(server.metrics(), "tandem_requests_cancelled_total")
    with httpx.stream("POST", server.url + "/v1/chat/completions", timeout=60,
                      json=chat_args(stream=True, **LONG)) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
    # the connection is closed: the server notices on its next write and cancels the request
    wait_for(lambda: gauge(server.metrics(), "tandem_requests_cancelled_total") == cancelled + 1, "not cancelled")
    wait_for(lambda: gauge(server.metrics(), "tandem_requests_running") == 0, "slot not freed")
    assert server.client().chat.completions.create(**chat_args()).choices[0].finish_reason == "length"


def test_disconnect_while_waiting_frees_the_slot(server):
    """A client that closes its connection while it waits for a NON-streamed answer (its connection suspended, so
    libmicrohttpd does not watch it) cancels the request at once: cancelled, its slot free, long before the answer's
    24000 tokens; the finished counters do not move."""
    before = server.metrics()
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps(chat_args(**LONG)).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    wait_for(lambda: gauge(server.metrics(), "tandem_requests_running") == 1, "never ran")
    sock.close()
    wait_for(lambda: gauge(server.metrics(), "tandem_requests_cancelled_total") ==
             gauge(before, "tandem_requests_cancelled_total") + 1, "not cancelled")
    wait_for(lambda: gauge(server.metrics(), "tandem_requests_running") == 0, "slot not freed")
    after = server.metrics()
    finished = [k for k in after if k[0] == "tandem_requests_finished_total"]
    assert all(after[k] == before.get(k, 0) for k in finished)
    assert after[("tandem_generation_tokens_total", ())] == before[("tandem_generation_tokens_total", ())]
    assert server.client().chat.completions.create(**chat_args()).choices[0].finish_reason == "length"


def test_slow_senders_do_not_block(server):
    """Clients sending a byte a second (more of them than HTTP threads) while /health answers at once."""
    stop = threading.Event()
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    socks = [socket.create_connection((host, int(port))) for _ in range(8)]

    def drip(sock):
        data = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"{" * 100
        for b in data:
            if stop.is_set():
                return
            try:
                sock.send(bytes([b]))
            except OSError:
                return
            stop.wait(1)
    threads = [threading.Thread(target=drip, args=(s,)) for s in socks]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            time.sleep(1)
            r = httpx.get(server.url + "/health", timeout=5)
            assert r.status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join()
        for s in socks:
            s.close()


def test_slow_reader(server):
    """A stream nobody reads: the server keeps serving others, and once the reader goes its request is cancelled."""
    cancelled = gauge(server.metrics(), "tandem_requests_cancelled_total")
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps(chat_args(stream=True, **LONG)).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    try:
        wait_for(lambda: gauge(server.metrics(), "tandem_requests_running") == 1, "not running")
        assert server.client().chat.completions.create(**chat_args()).choices[0].finish_reason == "length"
    finally:
        sock.close()
    wait_for(lambda: gauge(server.metrics(), "tandem_requests_cancelled_total") == cancelled + 1, "not cancelled")
    wait_for(lambda: gauge(server.metrics(), "tandem_requests_running") == 0, "slot not freed")


def test_queue_full_is_503(fresh_server):
    s = fresh_server("--parallel", "1", "--queue", "0", "--ctx", LONG_CTX, "--max-tokens", "30000")
    with httpx.stream("POST", s.url + "/v1/chat/completions", timeout=60, json=chat_args(stream=True, **LONG)) as r:
        assert r.status_code == 200
        lines = r.iter_lines()  # kept: a dropped iterator closes the response, and the server cancels the request
        next(lines)
        with pytest.raises(openai.APIStatusError) as e:
            s.client().chat.completions.create(**chat_args())
        assert e.value.status_code == 503 and e.value.response.headers["retry-after"]


def test_sigterm_drains(fresh_server):
    """SIGTERM during a stream: /health and new requests say 503, the stream runs to its end, then exit 0."""
    s = fresh_server("--ctx", LONG_CTX)
    with httpx.stream("POST", s.url + "/v1/chat/completions", timeout=120, json=chat_args(stream=True, **DRAIN)) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        s.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "draining" in s.stderr(), "no drain")
        assert httpx.get(s.url + "/health", timeout=5).status_code == 503
        with pytest.raises(openai.APIStatusError) as e:
            s.client().chat.completions.create(**chat_args())
        assert e.value.status_code == 503
        events = [line for line in lines if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["choices"][0]["finish_reason"] in ("length", "stop")
    assert s.proc.wait(timeout=60) == 0


def test_second_signal_stops_at_once(fresh_server):
    s = fresh_server("--ctx", LONG_CTX, "--max-tokens", "30000")
    with httpx.stream("POST", s.url + "/v1/chat/completions", timeout=120, json=chat_args(stream=True, **LONG)) as r:
        lines = r.iter_lines()
        next(lines)
        s.proc.send_signal(signal.SIGINT)
        wait_for(lambda: "draining" in s.stderr(), "no drain")
        s.proc.send_signal(signal.SIGINT)
        assert s.proc.wait(timeout=30) == 128 + signal.SIGINT
