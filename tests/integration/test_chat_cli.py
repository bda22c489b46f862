"""`tandem chat`: the stdin mode (one JSON conversation per line) against `tandem template` tokenized by the
`tokenizers` package and against `tandem run --chat`, and the interactive mode driven through a pseudo-terminal."""
import json
import os
import pty
import select
import signal
import time

import pytest

tokenizers = pytest.importorskip("tokenizers")

MODEL = "tied_gqa2"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]


def chat_lines(run_tandem, models_dir, lines, *flags, check=True):
    return run_tandem("chat", "-m", models_dir / MODEL, "--temp", "0", "-n", "8", *flags,
                      input="".join(line + "\n" for line in lines), check=check)


def n_template_tokens(run_tandem, models_dir, tmp_path, messages, *flags):
    """The prompt `tandem template` renders (with the generation prompt), tokenized by Hugging Face tokenizers."""
    path = tmp_path / "messages.json"
    path.write_text(json.dumps(messages))
    text = run_tandem("template", "-m", models_dir / MODEL, "--messages", path, "--generation-prompt", *flags).stdout
    tok = tokenizers.Tokenizer.from_file(str(models_dir / MODEL / "tokenizer.json"))
    return len(tok.encode(text, add_special_tokens=False).ids)


CONVERSATIONS = [
    [{"role": "user", "content": "hello"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
     {"role": "assistant", "content": "Hello! ☀️"}, {"role": "user", "content": "again"}],
    [{"role": "user", "content": "Weather in Paris?"},
     {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
         "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
     {"role": "tool", "content": "{\"temp\": 21}"}],
]


def test_stdin_mode_one_json_line_per_conversation(run_tandem, models_dir, tmp_path):
    lines = [json.dumps(CONVERSATIONS[0]), json.dumps(CONVERSATIONS[1]),
             json.dumps({"messages": CONVERSATIONS[2], "tools": TOOLS})]
    cp = chat_lines(run_tandem, models_dir, lines)
    out = [json.loads(line) for line in cp.stdout.splitlines()]
    assert len(out) == 3
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps(TOOLS))
    for conv, msg, extra in zip(CONVERSATIONS, out, [[], [], ["--tools", tools]]):
        assert msg["role"] == "assistant"
        assert isinstance(msg["content"], str) or msg.get("tool_calls")
        assert msg["finish_reason"] in ("stop", "length", "tool_calls")
        assert msg["usage"]["completion_tokens"] == 8 or msg["finish_reason"] != "length"
        assert 0 < msg["usage"]["completion_tokens"] <= 8
        assert msg["usage"]["prompt_tokens"] == n_template_tokens(run_tandem, models_dir, tmp_path, conv, *extra)


def test_stdin_mode_no_think_and_system(run_tandem, models_dir, tmp_path):
    conv = CONVERSATIONS[0]
    msg = json.loads(chat_lines(run_tandem, models_dir, [json.dumps(conv)], "--no-think", "--system", "S").stdout)
    with_system = [{"role": "system", "content": "S"}] + conv
    assert msg["usage"]["prompt_tokens"] == n_template_tokens(run_tandem, models_dir, tmp_path, with_system,
                                                              "--no-think")


def test_greedy_answer_equals_run_chat(run_tandem, models_dir):
    """One user message: the same prompt, so greedy decoding gives the same tokens as `tandem run --chat`."""
    ran = json.loads(run_tandem("run", "--chat", "-m", models_dir / MODEL, "-p", "hello there", "--temp", "0",
                                "-n", "16", "--json").stdout.splitlines()[-1])
    msg = json.loads(chat_lines(run_tandem, models_dir, [json.dumps([{"role": "user", "content": "hello there"}])],
                                "-n", "16").stdout)
    assert msg["usage"]["prompt_tokens"] == len(ran["prompt_ids"])
    assert msg["usage"]["completion_tokens"] == len(ran["generated_ids"])
    if "<think>" not in ran["text"] and "<tool_call>" not in ran["text"]:
        assert msg["content"] == ran["text"]


def test_bad_line_names_its_number_and_the_next_line_works(run_tandem, models_dir):
    good = json.dumps(CONVERSATIONS[0])
    cp = chat_lines(run_tandem, models_dir, [good, "{not json", "", '{"messages": 3}', good, "[1]", good],
                    check=False)
    assert cp.returncode == 1
    errors = cp.stderr.splitlines()
    assert [e.split(":")[1] for e in errors] == [" error"] * 3 and len(errors) == 3
    assert "stdin line 2:" in errors[0] and "stdin line 4:" in errors[1]
    # the template's complaint about a message, naming no flag (chat has no --messages)
    assert "stdin line 6: the messages: message 0 is not an object" in errors[2]
    out = [json.loads(line) for line in cp.stdout.splitlines()]
    assert len(out) == 3 and out[0] == out[1] == out[2]


class Terminal:
    """tandem chat on a pseudo-terminal: write lines, read until a text appears."""
    running = []

    def __init__(self, argv):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execv(argv[0], argv)
        self.buf = b""
        Terminal.running.append(self)

    def expect(self, text, timeout=60):
        end = time.time() + timeout
        while text.encode() not in self.buf or not self.buf:
            if time.time() > end:
                raise AssertionError(f"timed out waiting for {text!r}; got {self.buf.decode(errors='replace')!r}")
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                self.buf += chunk
        assert text.encode() in self.buf, self.buf.decode(errors="replace")
        got, self.buf = self.buf, self.buf[self.buf.index(text.encode()) + len(text):]
        return got.decode(errors="replace")

    def send(self, line):
        os.write(self.fd, line.encode() + b"\n")

    def wait(self, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            try:
                if select.select([self.fd], [], [], 0)[0]:
                    os.read(self.fd, 4096)
            except OSError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                Terminal.running.remove(self)
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError("tandem chat did not end")


@pytest.fixture(autouse=True)
def end_terminals():
    """A failed test leaves no chat running."""
    yield
    while Terminal.running:
        t = Terminal.running.pop()
        os.kill(t.pid, signal.SIGKILL)
        os.waitpid(t.pid, 0)
        os.close(t.fd)


def stats(text):
    """(prompt tokens, reused) from the line after an answer: "[N tokens, ... (P prompt tokens, R reused) ...]"."""
    part = text[text.rindex("(") + 1:text.rindex(" reused)")]
    prompt, reused = part.split(" prompt tokens, ")
    return int(prompt), int(reused)


def test_interactive_session(tandem_bin, run_tandem, models_dir, tmp_path):
    term = Terminal([str(tandem_bin), "chat", "-m", str(models_dir / MODEL), "--temp", "0", "-n", "6"])
    term.expect("> ")
    term.send("hello")
    n1, reused1 = stats(term.expect(" reused)"))
    assert reused1 == 0 and n1 > 0
    term.expect("> ")
    term.send("how are you")
    n2, reused2 = stats(term.expect(" reused)"))
    assert 0 < reused2 < n2 and n2 > n1  # the first turn's tokens were not evaluated again
    term.expect("> ")
    saved = tmp_path / "conv.json"
    term.send(f"/save {saved}")
    term.expect("saved 4 messages")
    msgs = json.loads(saved.read_text())
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert [m["content"] for m in msgs if m["role"] == "user"] == ["hello", "how are you"]
    term.send("/bogus")
    term.expect("commands: /clear")
    term.send("/think off")
    term.expect("thinking off")
    term.send("/clear")
    term.expect("conversation cleared")
    term.send("hello")
    n3, _ = stats(term.expect(" reused)"))
    # a new conversation of one message, rendered with enable_thinking false
    assert n3 == n_template_tokens(run_tandem, models_dir, tmp_path, [{"role": "user", "content": "hello"}],
                                   "--no-think")
    assert n1 == n_template_tokens(run_tandem, models_dir, tmp_path, [{"role": "user", "content": "hello"}])
    term.expect("> ")
    term.send(f"/save {saved}")
    term.expect("saved 2 messages")
    assert [m["content"] for m in json.loads(saved.read_text()) if m["role"] == "user"] == ["hello"]
    term.send("/quit")
    assert term.wait() == 0


def test_interactive_ctrl_c_and_ctrl_d_at_the_prompt_end_it(tandem_bin, models_dir):
    for key in (b"\x03", b"\x04"):
        term = Terminal([str(tandem_bin), "chat", "-m", str(models_dir / MODEL), "-n", "4"])
        term.expect("> ")
        os.write(term.fd, key)
        assert term.wait() == 0


def test_interactive_ctrl_c_stops_the_answer_not_the_chat(tandem_bin, models_dir, tmp_path):
    """An answer limited only by a large context: Ctrl-C ends it, the partial answer stays in the conversation."""
    term = Terminal([str(tandem_bin), "chat", "-m", str(models_dir / MODEL), "--temp", "0", "-c", "60000",
                     "--max-tokens", "-1"])
    term.expect("> ")
    term.send("abc")  # greedy, this model answers it with thousands of tokens
    term.expect("abc\r\n")
    term.expect("")  # the first bytes of the answer: it is being generated (a Ctrl-C at the prompt would end the chat)
    os.write(term.fd, b"\x03")
    term.expect(" reused)")
    tail = term.expect("]")
    if ", interrupted" not in tail:
        pytest.skip("the answer ended before Ctrl-C arrived")
    term.expect("> ")
    saved = tmp_path / "conv.json"
    term.send(f"/save {saved}")
    term.expect("saved 2 messages")
    assert json.loads(saved.read_text())[1]["content"]
    term.send("/quit")
    assert term.wait() == 0


def test_draft_model_gives_the_same_answers(run_tandem, models_dir):
    """Speculative decoding over two conversations in a row (the second reuses the context and the draft's): greedy
    answers identical to the target alone."""
    lines = [json.dumps(CONVERSATIONS[1]), json.dumps(CONVERSATIONS[1][:2]), json.dumps(CONVERSATIONS[0])]
    alone = chat_lines(run_tandem, models_dir, lines, "-n", "24").stdout
    drafted = chat_lines(run_tandem, models_dir, lines, "-n", "24", "-md", models_dir / MODEL / "model-q4_0.gguf",
                         "--draft-fixed").stdout
    assert len(alone.splitlines()) == 3 and drafted == alone


def test_interactive_stats_show_the_acceptance_with_a_draft(tandem_bin, models_dir):
    term = Terminal([str(tandem_bin), "chat", "-m", str(models_dir / MODEL), "--temp", "0", "-n", "12", "-md",
                     str(models_dir / MODEL / "model-q4_0.gguf"), "--draft-fixed"])
    for text in ("hello", "and more"):
        term.expect("> ")
        term.send(text)
        term.expect(" reused)")
        assert "of drafted tokens accepted" in term.expect("]")
    term.send("/quit")
    assert term.wait() == 0


def test_stdin_mode_tool_calls_follow_the_tools(run_tandem, models_dir, tmp_path):
    """With --tools the calls are constrained (tandem_grammar_from_tools): sampled from the random model, every
    answer under --tool-choice required holds exactly one call (--no-parallel-tool-calls) of a listed tool whose
    arguments the jsonschema package finds valid, and ends with finish_reason tool_calls."""
    jsonschema = pytest.importorskip("jsonschema")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
                 "type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                 "required": ["city"], "additionalProperties": False}}},
             {"type": "function", "function": {"name": "add", "parameters": {
                 "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                 "required": ["a", "b"], "additionalProperties": False}}}]
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(tools))
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    lines = [json.dumps([{"role": "user", "content": f"question {i}"}]) for i in range(12)]
    cp = run_tandem("chat", "-m", models_dir / MODEL, "--tools", path, "--tool-choice", "required",
                    "--no-parallel-tool-calls", "--no-think", "--temp", "1", "--seed", "7", "-n", "256",
                    input="".join(line + "\n" for line in lines))
    out = [json.loads(line) for line in cp.stdout.splitlines()]
    assert len(out) == len(lines)
    for msg in out:
        assert msg["finish_reason"] == "tool_calls", msg
        assert len(msg["tool_calls"]) == 1, msg
        fn = msg["tool_calls"][0]["function"]
        assert fn["name"] in schemas
        jsonschema.validate(json.loads(fn["arguments"]), schemas[fn["name"]])


def test_named_templates_tool_use_for_turns_with_tools(run_tandem, models_dir, tmp_path):
    """A model with HF's named templates: turns with tools render with "tool_use", the others with "default", and
    both see the tokenizer's special tokens, as transformers' apply_chat_template (jinja2 here, tokenized by the
    tokenizers package)."""
    import shutil
    import sys
    from pathlib import Path
    pytest.importorskip("jinja2")
    gen = Path(__file__).resolve().parents[1] / "gen"
    sys.path.insert(0, str(gen))
    import make_chat_golden as ref
    named = json.loads((gen.parent / "golden" / "chat" / "named_cases.json").read_text(encoding="utf-8"))
    src = models_dir / MODEL
    for f in ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"]:
        shutil.copy(src / f, tmp_path / f)
    config = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = named["chat_template"]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    conv = CONVERSATIONS[1]
    cp = run_tandem("chat", "-m", tmp_path, "--temp", "0", "-n", "2",
                    input=json.dumps(conv) + "\n" + json.dumps({"messages": conv, "tools": TOOLS}) + "\n")
    out = [json.loads(line) for line in cp.stdout.splitlines()]
    tok = tokenizers.Tokenizer.from_file(str(src / "tokenizer.json"))
    for msg, (k, tools) in zip(out, [(0, None), (1, TOOLS)]):
        text = ref.render(ref.make_env(), named["chat_template"][k]["template"],
                          dict(ref.special_variables(config), messages=conv, tools=tools, add_generation_prompt=True))
        assert msg["usage"]["prompt_tokens"] == len(tok.encode(text, add_special_tokens=False).ids)
    assert len(out) == 2
