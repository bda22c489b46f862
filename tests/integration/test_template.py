"""`tandem template` against Python jinja2 set up as transformers sets it up (tests/gen/make_chat_golden.py):
the model's own template from an HF tokenizer folder, a GGUF and a chat_template.jinja file, and bad inputs."""
import json
import shutil

import pytest

jinja2 = pytest.importorskip("jinja2")
import make_chat_golden as ref  # noqa: E402  (tests/gen, on sys.path through conftest.py)

TOOLS = ref.TOOLS
CONVERSATION = [
    {"role": "developer", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris? ☀️"},
    {"role": "assistant", "content": None, "reasoning_content": "Need the tool.",
     "tool_calls": [{"id": "c1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "content": "{\"temp\": 21}"},
]


def expected(source, messages, **kw):
    case = dict(kw, messages=messages)
    return ref.render(ref.make_env(), source, case)


def write(tmp_path, name, obj):
    p = tmp_path / name
    p.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return p


@pytest.mark.parametrize("flags,kw", [
    ([], {}),
    (["--generation-prompt"], {"add_generation_prompt": True}),
    (["--generation-prompt", "--no-think", "--tools", "TOOLS"], {"add_generation_prompt": True,
                                                                 "enable_thinking": 0, "tools": TOOLS}),
])
def test_qwen3_folder_matches_jinja2(run_tandem, qwen3_tokenizer_dir, tmp_path, flags, kw):
    source = json.loads((qwen3_tokenizer_dir / "tokenizer_config.json").read_text())["chat_template"]
    msgs = write(tmp_path, "msgs.json", CONVERSATION)
    tools = write(tmp_path, "tools.json", TOOLS)
    args = [str(tools) if f == "TOOLS" else f for f in flags]
    cp = run_tandem("template", "-m", qwen3_tokenizer_dir, "--messages", msgs, *args)
    assert cp.stdout == expected(source, CONVERSATION, **kw)
    assert cp.stderr == ""


def test_gguf_and_jinja_file_sources(run_tandem, models_dir, tmp_path):
    """The template stored in a GGUF (tokenizer.chat_template), and a folder's chat_template.jinja, which
    transformers prefers to tokenizer_config.json's entry."""
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    m = write(tmp_path, "m.json", msgs)
    folder = models_dir / "tied_gqa2"
    source = json.loads((folder / "tokenizer_config.json").read_text())["chat_template"]
    cp = run_tandem("template", "-m", folder / "model-q8_0.gguf", "--messages", m, "--generation-prompt")
    assert cp.stdout == expected(source, msgs, add_generation_prompt=True)

    tok = tmp_path / "tok"
    tok.mkdir()
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(folder / f, tok / f)
    jinja_source = "{% for m in messages %}[{{ m.role|upper }}] {{ m.content }}\n{% endfor %}"
    (tok / "chat_template.jinja").write_text(jinja_source)
    cp = run_tandem("template", "-m", tok, "--messages", m)
    assert cp.stdout == expected(jinja_source, msgs) == "[USER] hi\n[ASSISTANT] hello\n"


def test_template_file_override_and_kwargs(run_tandem, tmp_path):
    tmpl = tmp_path / "t.jinja"
    tmpl.write_text("{{ greeting }}, {{ messages|map(attribute='role')|join('+') }}"
                    "{{ ' (think)' if enable_thinking is defined and enable_thinking }}")
    m = write(tmp_path, "m.json", CONVERSATION)
    cp = run_tandem("template", "--chat-template-file", tmpl, "--messages", m, "--kwargs", '{"greeting": "hey"}',
                    "--think")
    assert cp.stdout == "hey, system+user+assistant+tool (think)"


@pytest.mark.parametrize("template,messages,needle", [
    ("{% if x %}", "[]", "t.jinja): line 1, column 11: unexpected end of template"),
    ("{{ x | frobnicate }}", "[]", "no filter named 'frobnicate'"),
    ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", "[]",
     "loops run more than"),
    ("{{ raise_exception('nope') }}", "[]", "line 1: raise_exception: nope"),
    ("ok", "[{\"role\": ", "--messages: invalid JSON"),
    ("ok", "{\"role\": \"user\"}", "--messages: not an array"),
])
def test_bad_inputs(run_tandem, tmp_path, template, messages, needle):
    tmpl = tmp_path / "t.jinja"
    tmpl.write_text(template)
    m = tmp_path / "m.json"
    m.write_text(messages)
    cp = run_tandem("template", "--chat-template-file", tmpl, "--messages", m, check=False)
    assert cp.returncode == 1 and cp.stdout == ""
    assert needle in cp.stderr, cp.stderr
    assert cp.stderr.startswith("tandem template: error: ")


def test_usage(run_tandem, tmp_path):
    cp = run_tandem("template", "--messages", "x.json", check=False)
    assert cp.returncode == 2 and "missing -m MODEL" in cp.stderr
    cp = run_tandem("template", "--help")
    assert cp.stdout.startswith("usage: tandem template")


def test_run_chat_renders_the_template(run_tandem, models_dir, tmp_path):
    """run --chat: the prompt ids are those of the rendered template (the generation prompt included)."""
    model = models_dir / "tied_gqa2" / "model-q8_0.gguf"
    source = json.loads((models_dir / "tied_gqa2" / "tokenizer_config.json").read_text())["chat_template"]
    want = expected(source, [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hi there"}],
                    add_generation_prompt=True)
    text = tmp_path / "prompt.txt"
    text.write_text(want)
    ids = json.loads(run_tandem("tokenize", "-m", model, "-f", text, "--json").stdout)["ids"]
    cp = run_tandem("run", "-m", model, "-p", "hi there", "--chat", "--system", "Be nice.", "-n", "1", "--temp", "0",
                    "--json")
    assert json.loads(cp.stdout.strip().splitlines()[-1])["prompt_ids"] == ids
    tmpl = tmp_path / "t.jinja"
    tmpl.write_text("{{ messages[0].content|upper }}")
    cp = run_tandem("run", "-m", model, "-p", "hi", "--chat", "--chat-template-file", tmpl, "-n", "1", "--json")
    text.write_text("HI")
    ids = json.loads(run_tandem("tokenize", "-m", model, "-f", text, "--json").stdout)["ids"]
    assert json.loads(cp.stdout.strip().splitlines()[-1])["prompt_ids"] == ids
    cp = run_tandem("run", "-m", model, "-p", "hi", "--no-think", check=False)
    assert cp.returncode == 2 and "need --chat" in cp.stderr
