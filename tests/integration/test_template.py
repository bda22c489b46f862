"""`tandem template` against Python jinja2 set up as transformers sets it up (tests/gen/make_chat_golden.py):
the model's own template from an HF tokenizer folder, a GGUF and a chat_template.jinja file, and bad inputs."""
import json
import os
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


with open(os.path.join(ref.OUT_DIR, "named_cases.json"), encoding="utf-8") as _f:
    NAMED = json.load(_f)


def named_folder(tmp_path, qwen3_tokenizer_dir, overrides):
    """The real Qwen3 tokenizer with tokenizer_config.json's chat_template as HF's list of named templates."""
    d = tmp_path / "named"
    d.mkdir(exist_ok=True)
    shutil.copy(qwen3_tokenizer_dir / "tokenizer.json", d)
    config = json.loads((qwen3_tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.update(overrides, chat_template=NAMED["chat_template"])
    (d / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return d


CLI_NAMED = [c for c in NAMED["cases"] if "template_name" not in c]  # by name: the Python package's argument


@pytest.mark.parametrize("case", CLI_NAMED, ids=[c["name"] for c in CLI_NAMED])
def test_named_templates_and_special_tokens_match_transformers(run_tandem, qwen3_tokenizer_dir, tmp_path, case):
    """tests/golden/chat/named_cases.json (transformers' apply_chat_template): the "tool_use" template when tools are
    given (an empty list too), "default" otherwise; the special tokens from tokenizer_config.json (Qwen3's null
    bos_token undefined), kwargs over them."""
    d = named_folder(tmp_path, qwen3_tokenizer_dir, NAMED["configs"][case["config"]])
    m = write(tmp_path, "m.json", case["messages"])
    tools = ["--tools", write(tmp_path, "t.json", case["tools"])] if case["tools"] is not None else []
    tools += ["--kwargs", json.dumps(case["extra"])] if "extra" in case else []
    cp = run_tandem("template", "-m", d, "--messages", m, "--generation-prompt", *tools)
    assert cp.stdout == case["expected"]
    # a template file replaces the model's (named ones too), and still gets the model's special tokens
    f = tmp_path / "f.jinja"
    f.write_text(NAMED["chat_template"][0]["template"], encoding="utf-8")
    cp = run_tandem("template", "-m", d, "--chat-template-file", f, "--messages", m, "--generation-prompt")
    default = next(c for c in NAMED["cases"] if c["config"] == case["config"] and c["messages"] == case["messages"]
                   and c["tools"] is None and "extra" not in c)
    assert cp.stdout == default["expected"]


def gguf_fields(path):
    gguf = pytest.importorskip("gguf")
    r = gguf.GGUFReader(str(path))
    out = {}
    for k, f in r.fields.items():
        if k.startswith("tokenizer.chat_template"):
            out[k] = f.contents()
    return out, r


def test_named_templates_through_convert(run_tandem, models_dir, tmp_path):
    """convert writes HF's named templates as gguf-py's add_chat_template does (its own writer is the reference),
    and the GGUF renders with the same choice; the GGUF's bos/eos_token are its tokenizer.ggml.*_token_id's text,
    as llama.cpp passes them."""
    gguf = pytest.importorskip("gguf")
    src = models_dir / "tied_gqa2"
    hf = tmp_path / "hf"
    hf.mkdir()
    for f in ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"]:
        shutil.copy(src / f, hf / f)
    config = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = NAMED["chat_template"]
    (hf / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    out = tmp_path / "m.gguf"
    run_tandem("convert", hf, "-o", out)
    ours, reader = gguf_fields(out)
    w = gguf.GGUFWriter(str(tmp_path / "ref.gguf"), "qwen3")
    w.add_chat_template(NAMED["chat_template"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    want, _ = gguf_fields(tmp_path / "ref.gguf")
    assert ours == want and "tokenizer.chat_template.tool_use" in ours

    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    keys = {"bos_token": "bos_token_id", "eos_token": "eos_token_id", "unk_token": "unknown_token_id",
            "sep_token": "seperator_token_id", "pad_token": "padding_token_id", "cls_token": "cls_token_id",
            "mask_token": "mask_token_id"}
    special = {k: tokens[reader.fields["tokenizer.ggml." + v].contents()] for k, v in keys.items()
               if "tokenizer.ggml." + v in reader.fields}
    assert {"bos_token", "eos_token", "pad_token"} <= set(special)
    msgs = [{"role": "user", "content": "hi"}]
    m = write(tmp_path, "m.json", msgs)
    t = write(tmp_path, "t.json", TOOLS)
    for tools, source in [(None, NAMED["chat_template"][0]["template"]), (TOOLS, NAMED["chat_template"][1]["template"])]:
        kw = dict(special, add_generation_prompt=True, tools=tools)
        cp = run_tandem("template", "-m", out, "--messages", m, "--generation-prompt", *(["--tools", t] if tools else []))
        assert cp.stdout == expected(source, msgs, **kw)
        # and the folder itself: tokenizer_config.json's tokens (tiny model: bos_token null)
        cp = run_tandem("template", "-m", hf, "--messages", m, "--generation-prompt", *(["--tools", t] if tools else []))
        kw = dict(ref.special_variables(config), add_generation_prompt=True, tools=tools)
        assert cp.stdout == expected(source, msgs, **kw)


def test_convert_chat_template_file(run_tandem, models_dir, tmp_path):
    """convert --chat-template-file stores that file as tokenizer.chat_template, replacing the folder's (named ones
    too); a template that does not parse fails before anything is written."""
    src = models_dir / "tied_gqa2"
    hf = tmp_path / "hf"
    hf.mkdir()
    for f in ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"]:
        shutil.copy(src / f, hf / f)
    config = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = NAMED["chat_template"]
    (hf / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    f = tmp_path / "mine.jinja"
    source = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}é"
    f.write_text(source, encoding="utf-8")
    out = tmp_path / "m.gguf"
    run_tandem("convert", hf, "-o", out, "--chat-template-file", f)
    fields, _ = gguf_fields(out)
    assert fields == {"tokenizer.chat_template": source}
    m = write(tmp_path, "m.json", [{"role": "user", "content": "hi"}])
    t = write(tmp_path, "t.json", TOOLS)
    assert run_tandem("template", "-m", out, "--messages", m, "--tools", t).stdout == "<user>hi\né"

    bad = tmp_path / "bad.jinja"
    bad.write_text("line one\n{% for x in %}")
    cp = run_tandem("convert", hf, "-o", tmp_path / "bad.gguf", "--chat-template-file", bad, check=False)
    assert cp.returncode == 1 and "bad.jinja): line 2" in cp.stderr, cp.stderr
    assert not (tmp_path / "bad.gguf").exists()
    empty = tmp_path / "empty.jinja"
    empty.write_text("")
    run_tandem("convert", hf, "-o", tmp_path / "empty.gguf", "--chat-template-file", empty)
    assert gguf_fields(tmp_path / "empty.gguf")[0] == {"tokenizer.chat_template": ""}
    cp = run_tandem("convert", hf, "-o", tmp_path / "bad.gguf", "--chat-template-file", tmp_path / "none", check=False)
    assert cp.returncode == 1 and "none" in cp.stderr and not (tmp_path / "bad.gguf").exists()


def test_run_chat_passes_the_special_tokens(run_tandem, models_dir, tmp_path):
    """run --chat: a template file sees the model's special tokens (tokenizer_config.json's), as in transformers."""
    folder = models_dir / "tied_gqa2"
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    tmpl = tmp_path / "t.jinja"
    tmpl.write_text("{{ bos_token is defined }}|{{ pad_token }}|{{ messages[0].content }}{{ eos_token }}")
    want = expected(tmpl.read_text(), [{"role": "user", "content": "hi"}], add_generation_prompt=True,
                    **ref.special_variables(config))
    assert "<|im_end|>" in want  # the tiny model's eos_token, as Qwen3's
    text = tmp_path / "prompt.txt"
    text.write_text(want)
    ids = json.loads(run_tandem("tokenize", "-m", folder, "-f", text, "--json").stdout)["ids"]
    cp = run_tandem("run", "-m", folder, "-p", "hi", "--chat", "--chat-template-file", tmpl, "-n", "1", "--json")
    assert json.loads(cp.stdout.strip().splitlines()[-1])["prompt_ids"] == ids
