"""tandem synth and tandem distill as a user runs them, and the toy family's tokenizer recipe: synth's answers equal
plain greedy decoding (tandem run, no draft), its stored top-k agree with the answer, an interrupted output resumes to
the same file; distill's loss falls and its output runs; bad input fails with the file, line and reason; the BPE
made by bench/toy/make_data.py tokenizes in tandem exactly as in Hugging Face tokenizers."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli import tiny_tensors, write_gguf

TINY = "tied_gqa2"
PROMPTS = [{"prompt": "hello world"}, "def f(x):", {"prompt": "the cat <|im_end|> sat"}, {"prompt": "é 中文 😀"}]


def write_prompts(path, items, blank_lines=True):
    with open(path, "w", encoding="utf-8") as f:
        for k, item in enumerate(items):
            f.write(json.dumps(item) + "\n")
            if blank_lines and k == 0:
                f.write("\n")  # skipped, does not count as a prompt
    return path


def read_lines(path):
    return [json.loads(l) for l in open(path, encoding="utf-8")]


def prompt_text(item):
    return item["prompt"] if isinstance(item, dict) else item


def expect_error(run_tandem, args, *needles, code=1):
    cp = run_tandem(*args, check=False)
    assert cp.returncode == code, (cp.returncode, cp.stdout, cp.stderr)
    for n in needles:
        assert n in cp.stderr, (n, cp.stderr)
    return cp


@pytest.fixture(scope="module")
def synth_out(tmp_path_factory, run_tandem, models_dir):
    d = tmp_path_factory.mktemp("synth")
    prompts = write_prompts(d / "prompts.jsonl", PROMPTS)
    out = d / "data.jsonl"
    cp = run_tandem("synth", "-m", models_dir / TINY, "-md", models_dir / TINY / "model-q4_0.gguf", "-f", prompts,
                    "-o", out, "-n", 10, "--topk", 5, "-t", 1)
    return d, prompts, out, cp.stdout


@pytest.mark.parametrize("raw", [False, True])
def test_synth_answers_are_the_targets_greedy_output(run_tandem, models_dir, tmp_path, raw):
    """Against tandem run on the same text, the target alone (no draft), greedy."""
    prompts = write_prompts(tmp_path / "p.jsonl", PROMPTS)
    out = tmp_path / "d.jsonl"
    cp = run_tandem("synth", "-m", models_dir / TINY, "-md", models_dir / TINY / "model-q4_0.gguf", "-f", prompts,
                    "-o", out, "-n", 10, "--draft-max", 3, "--draft-fixed", *(["--raw"] if raw else []))
    assert "4 prompts, 0 already done, 4 answered" in cp.stdout, cp.stdout
    lines = read_lines(out)
    assert [l["index"] for l in lines] == [0, 1, 2, 3]
    compared = 0
    for item, line in zip(PROMPTS, lines):
        text = prompt_text(item)
        assert line["prompt"] == text and "top_ids" not in line
        full = text if raw else f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
        ref_prompt = json.loads(run_tandem("tokenize", "-m", models_dir / TINY, "--text", full, "--json",
                                           *(["--no-special"] if raw else [])).stdout)["ids"]
        assert line["prompt_ids"] == ref_prompt
        (tmp_path / "full.txt").write_text(full, encoding="utf-8")
        ref = json.loads(run_tandem("run", "-m", models_dir / TINY, "-f", tmp_path / "full.txt", "-n", 10, "--temp", 0,
                                    "--json").stdout.strip().splitlines()[-1])
        if ref["prompt_ids"] == line["prompt_ids"]:  # run parses <|im_end|> in a raw prompt as special; synth not
            assert line["ids"] == ref["generated_ids"] and line["finish"] == ref["finish_reason"]
            assert line["text"] == ref["text"]
            compared += 1
    assert compared >= 3


def test_synth_stores_top_k(synth_out):
    d, prompts, out, stdout = synth_out
    lines = read_lines(out)
    assert len(lines) == len(PROMPTS) and sum(len(l["ids"]) for l in lines) > 0
    for line in lines:
        # one row per generated token, logits descending, the greedy choice first
        assert len(line["top_ids"]) == len(line["ids"]) == len(line["top_logits"])
        for ids, logits, tok in zip(line["top_ids"], line["top_logits"], line["ids"]):
            assert len(ids) == 5 and len(set(ids)) == 5
            assert logits == sorted(logits, reverse=True)
            assert ids[0] == tok


def test_synth_resumes_after_an_interruption(synth_out, run_tandem, models_dir, tmp_path):
    d, prompts, out, _ = synth_out
    full = out.read_bytes()
    lines = full.split(b"\n")
    # a run that stopped in the middle of writing its second answer
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(lines[0] + b"\n" + lines[1][: len(lines[1]) // 2])
    cp = run_tandem("synth", "-m", models_dir / TINY, "-f", prompts, "-o", cut, "-n", 10, "--topk", 5)
    assert "1 already done, 3 answered" in cp.stdout, cp.stdout
    assert cut.read_bytes() == full
    # everything done: nothing to do, file unchanged
    cp = run_tandem("synth", "-m", models_dir / TINY, "-f", prompts, "-o", cut, "-n", 10, "--topk", 5)
    assert "4 already done, 0 answered" in cp.stdout and cut.read_bytes() == full
    # --force starts over
    cp = run_tandem("synth", "-m", models_dir / TINY, "-f", prompts, "-o", cut, "-n", 10, "--topk", 5, "--force")
    assert "0 already done, 4 answered" in cp.stdout and cut.read_bytes() == full


def test_synth_bad_input(run_tandem, models_dir, tmp_path):
    m = models_dir / TINY
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": "unterminated\n')
    out = tmp_path / "out.jsonl"
    expect_error(run_tandem, ["synth", "-m", m, "-f", bad, "-o", out], f"{bad}:2", "not valid JSON")
    assert not out.exists()
    bad.write_text('{"prompt": "ok"}\n\n{"text": "no prompt key"}\n')
    expect_error(run_tandem, ["synth", "-m", m, "-f", bad, "-o", out], f"{bad}:3", "prompt")
    bad.write_text("\n\n")
    expect_error(run_tandem, ["synth", "-m", m, "-f", bad, "-o", out], "no prompts")
    expect_error(run_tandem, ["synth", "-m", m, "-f", tmp_path / "missing.jsonl", "-o", out], "missing.jsonl")
    good = write_prompts(tmp_path / "good.jsonl", PROMPTS)
    other = write_gguf(tmp_path / "other.gguf", tiny_tensors())
    expect_error(run_tandem, ["synth", "-m", m, "-md", other, "-f", good, "-o", out], "must match")
    # an output that tandem synth did not write is not resumed
    out.write_text('{"something": "else"}\n')
    expect_error(run_tandem, ["synth", "-m", m, "-f", good, "-o", out], f"{out}:1", "index")
    out.write_text('{"index": 0, "prompt": "another prompt"}\n')
    expect_error(run_tandem, ["synth", "-m", m, "-f", good, "-o", out], f"{out}:1", "differs")
    out.write_text("not json\n")
    expect_error(run_tandem, ["synth", "-m", m, "-f", good, "-o", out], f"{out}:1", "not valid JSON")
    for args, needle in [([], "missing -m"), (["-m", m], "missing -f"), (["-m", m, "-f", good], "missing -o"),
                         (["-m", m, "-f", good, "-o", out, "--topk", "0"], "--topk"),
                         (["-m", m, "-f", good, "-o", out, "--bogus"], "unknown option")]:
        expect_error(run_tandem, ["synth"] + args, needle, code=2)


@pytest.mark.parametrize("case", ["notes", "notes without newline", "json config", "one-line json config",
                                  "json lines of other objects", "answer lines of another shape"])
def test_synth_refuses_an_output_it_did_not_write(run_tandem, models_dir, tmp_path, case):
    """Only synth's own file is resumed (every complete line an answer {"index", "prompt", "prompt_ids", "ids", "text",
    "finish"} for these prompts, a half-written last line the start of one); anything else is left byte for byte as
    it was, unless --force."""
    good = write_prompts(tmp_path / "good.jsonl", PROMPTS)
    out = tmp_path / "out.jsonl"
    content = {
        "notes": "my notes\nsecond line\n",
        "notes without newline": "my notes",
        "json config": json.dumps({"index": 0, "lr": 0.1, "steps": [1, 2]}, indent=2) + "\n",
        "one-line json config": json.dumps({"index": 0, "prompt": "hello world"}),  # json.dump writes no newline
        "json lines of other objects": '{"index": 0, "prompt": "hello world", "score": 3}\n',
        "answer lines of another shape": '{"index": 0, "prompt": "hello world", "prompt_ids": [1], "ids": "x", '
                                         '"text": "", "finish": "eos"}\n',
    }[case].encode()
    out.write_bytes(content)
    cp = run_tandem("synth", "-m", models_dir / TINY, "-f", good, "-o", out, "-n", 4, check=False)
    assert cp.returncode == 1 and str(out) in cp.stderr and "tandem synth" in cp.stderr, cp.stderr
    assert out.read_bytes() == content
    cp = run_tandem("synth", "-m", models_dir / TINY, "-f", good, "-o", out, "-n", 4, "--force")
    assert "0 already done, 4 answered" in cp.stdout and len(read_lines(out)) == 4


def test_synth_uses_an_empty_output_and_resumes_its_own(synth_out, run_tandem, models_dir, tmp_path):
    """An empty file holds nothing to lose: synth writes into it. A half-written last line that is the start of an
    answer, however short, is dropped and answered again."""
    d, prompts, full_out, _ = synth_out
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"")
    cp = run_tandem("synth", "-m", models_dir / TINY, "-f", prompts, "-o", out, "-n", 10, "--topk", 5)
    assert "0 already done, 4 answered" in cp.stdout and out.read_bytes() == full_out.read_bytes()
    first = full_out.read_bytes().split(b"\n")[0]
    for partial in (b"{", b'{"ind', first[:40]):
        out.write_bytes(first + b"\n" + partial)
        cp = run_tandem("synth", "-m", models_dir / TINY, "-f", prompts, "-o", out, "-n", 10, "--topk", 5)
        assert "1 already done, 3 answered" in cp.stdout and out.read_bytes() == full_out.read_bytes()


# ---- distill ----

def test_distill_loss_falls_and_output_runs(synth_out, run_tandem, models_dir, tmp_path):
    d, _, data, _ = synth_out
    student = models_dir / TINY / "model-q4_0.gguf"
    out = tmp_path / "healed.gguf"
    cp = run_tandem("distill", "--student", student, "--teacher", models_dir / TINY, "--data", data, "-o", out,
                    "--steps", 40, "--batch", 4, "--lr", 3e-3, "-t", 1)
    first, last = [float(x) for x in cp.stdout.split("distilled: loss ")[1].split(",")[0].split(" -> ")]
    assert last < 0.5 * first, cp.stdout
    run_tandem("run", "-m", out, "-p", "hello", "-n", 4, "--temp", 0)
    # without stored logits the teacher supplies them online: the loss falls too
    plain = tmp_path / "plain.jsonl"
    with open(plain, "w") as f:
        for line in read_lines(data):
            del line["top_ids"], line["top_logits"]
            f.write(json.dumps(line) + "\n")
    cp = run_tandem("distill", "--student", student, "--teacher", models_dir / TINY, "--data", plain, "-o",
                    tmp_path / "online.gguf", "--steps", 20, "--batch", 4, "--lr", 3e-3, "-t", 1)
    first, last = [float(x) for x in cp.stdout.split("distilled: loss ")[1].split(",")[0].split(" -> ")]
    assert last < first, cp.stdout


def test_distill_bad_input(synth_out, run_tandem, models_dir, tmp_path):
    _, prompts, data, _ = synth_out
    m = models_dir / TINY
    out = tmp_path / "o.gguf"
    other = write_gguf(tmp_path / "other.gguf", tiny_tensors())
    expect_error(run_tandem, ["distill", "--student", other, "--teacher", m, "--data", data, "-o", out], "vocab_size")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(data.read_text().splitlines()[0] + "\n{broken\n")
    expect_error(run_tandem, ["distill", "--student", m, "--teacher", m, "--data", bad, "-o", out], f"{bad}:2",
                 "not valid JSON")
    expect_error(run_tandem, ["distill", "--student", m, "--teacher", m, "--data", prompts, "-o", out], f"{prompts}:1",
                 "prompt_ids")
    bad.write_text('{"prompt_ids": [1, 2], "ids": [3, 99999]}\n')
    expect_error(run_tandem, ["distill", "--student", m, "--teacher", m, "--data", bad, "-o", out], f"{bad}:1",
                 "below the vocabulary")
    assert not out.exists()
    out.write_bytes(b"x")
    expect_error(run_tandem, ["distill", "--student", m, "--teacher", m, "--data", data, "-o", out], "already exists")
    for args, needle in [([], "missing --student"), (["--student", m], "missing --teacher"),
                         (["--student", m, "--teacher", m], "missing --data"),
                         (["--student", m, "--teacher", m, "--data", data], "missing -o")]:
        expect_error(run_tandem, ["distill"] + args, needle, code=2)


def test_distill_writes_the_students_type(synth_out, run_tandem, models_dir, tmp_path):
    """Without --type the output keeps the student's weight type (Q8_0 student -> Q8_0 output); --type overrides."""
    gguf = pytest.importorskip("gguf")
    _, _, data, _ = synth_out
    for student, kind, label in [("model-q8_0.gguf", [], gguf.LlamaFileType.MOSTLY_Q8_0),
                                 ("model-q4_0.gguf", [], gguf.LlamaFileType.MOSTLY_Q4_0),
                                 ("model-f16.gguf", [], gguf.LlamaFileType.MOSTLY_F16),
                                 ("model-q8_0.gguf", ["--type", "f32"], gguf.LlamaFileType.ALL_F32)]:
        out = tmp_path / f"{student}-{len(kind)}.gguf"
        run_tandem("distill", "--student", models_dir / TINY / student, "--teacher", models_dir / TINY, "--data", data,
                   "-o", out, "--steps", 2, "--batch", 2, "-t", 1, *kind)
        r = gguf.GGUFReader(str(out))
        assert int(r.fields["general.file_type"].parts[-1][0]) == label, (student, kind)
        want = {gguf.LlamaFileType.MOSTLY_Q8_0: gguf.GGMLQuantizationType.Q8_0,
                gguf.LlamaFileType.MOSTLY_Q4_0: gguf.GGMLQuantizationType.Q4_0,
                gguf.LlamaFileType.MOSTLY_F16: gguf.GGMLQuantizationType.F16,
                gguf.LlamaFileType.ALL_F32: gguf.GGMLQuantizationType.F32}[label]
        assert r.get_tensor(0) is not None
        assert {t.tensor_type for t in r.tensors if t.name == "blk.0.attn_q.weight"} == {want}


def _distill_args(synth_out, models_dir, tmp_path, name, steps):
    _, _, data, _ = synth_out
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return ["distill", "--student", models_dir / TINY / "model-f32.gguf", "--teacher", models_dir / TINY,
            "--data", data, "-o", folder / "healed.gguf", "--steps", steps, "--batch", 3, "--lr", 3e-3, "--seed", 7,
            "--warmup", 2, "-t", 1], folder


def test_distill_resume_equals_uninterrupted(synth_out, run_tandem, models_dir, tmp_path):
    """Stopped after 3 of 7 steps and resumed from its checkpoint (the answers dealt again in the same order, across
    a reshuffle: 4 answers, 3 per step), distill writes the same file, byte for byte, as a run never stopped."""
    args, a = _distill_args(synth_out, models_dir, tmp_path, "a", 7)
    run_tandem(*args)
    args, b = _distill_args(synth_out, models_dir, tmp_path, "b", 7)
    ck = tmp_path / "distill.ckpt"
    cp = run_tandem(*args, "--checkpoint", ck, "--stop-after", 3)
    assert "stopped after 3 steps" in cp.stdout and ck.exists() and not (b / "healed.gguf").exists()
    run_tandem(*args, "--checkpoint", ck, "--resume")
    assert (a / "healed.gguf").read_bytes() == (b / "healed.gguf").read_bytes()
    # a checkpoint made with another seed (another order of the answers) is refused
    args, c = _distill_args(synth_out, models_dir, tmp_path, "c", 7)
    args[args.index("--seed") + 1] = 8
    cp = run_tandem(*args, "--checkpoint", ck, "--resume", check=False)
    assert cp.returncode == 1 and "distill.ckpt" in cp.stderr and "seed" in cp.stderr, cp.stderr


def test_distill_ctrl_c_saves_checkpoint_and_resumes(synth_out, run_tandem, interrupt_at_checkpoint, models_dir,
                                                     tmp_path):
    """Ctrl-C stops at the end of a step with the checkpoint saved; --resume continues exactly: 2 steps later its
    checkpoint equals, byte for byte, that of a run never interrupted."""
    args, a = _distill_args(synth_out, models_dir, tmp_path, "a", 100000)
    args += ["--checkpoint-every", 1]
    ck = tmp_path / "a.ckpt"
    out, err, n = interrupt_at_checkpoint(args + ["--checkpoint", ck], ck)
    assert not (a / "healed.gguf").exists()
    cp = run_tandem(*args, "--checkpoint", ck, "--resume", "--stop-after", 2)
    assert "stopped after 2 steps" in cp.stdout
    ref = tmp_path / "b.ckpt"
    run_tandem(*args, "--checkpoint", ref, "--stop-after", n + 2)
    assert ck.read_bytes() == ref.read_bytes()


def test_distill_ctrl_c_without_checkpoint_says_nothing_was_saved(synth_out, tandem_bin, models_dir, tmp_path):
    import signal
    args, a = _distill_args(synth_out, models_dir, tmp_path, "a", 100000)
    proc = subprocess.Popen([str(tandem_bin)] + [str(x) for x in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("step 1:")  # printed once the first step is done
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "nothing saved" in err and "--checkpoint FILE" in err, (out, err)
    assert not list(a.iterdir())


# ---- the toy family's tokenizer recipe ----

def test_toy_tokenizer_matches_hf(run_tandem, repo_root, qwen3_tokenizer_dir, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    if not Path("/usr/lib/python3.11").is_dir():
        pytest.skip("no CPython 3.11 standard library in /usr/lib/python3.11")
    cp = subprocess.run([sys.executable, str(repo_root / "bench" / "toy" / "make_data.py"), "--out", str(tmp_path),
                         "--vocab", "1024", "--max-bytes", "1500000", "--qwen3-tokenizer", str(qwen3_tokenizer_dir)],
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    tok_dir = tmp_path / "tokenizer"
    hf = tokenizers.Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    assert hf.get_vocab_size(with_added_tokens=True) == 1024
    # Qwen3's added tokens, in its order, are the last ids
    qwen3 = json.loads((qwen3_tokenizer_dir / "tokenizer.json").read_text())["added_tokens"]
    assert [hf.token_to_id(a["content"]) for a in qwen3] == list(range(1024 - len(qwen3), 1024))
    config = json.loads((tok_dir / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|im_end|>" and "<|im_start|>" in config["chat_template"]
    assert config["added_tokens_decoder"][str(hf.token_to_id("<think>"))]["content"] == "<think>"
    sample = (tmp_path / "valid.txt").read_text()[:30000] + (
        "\n<|im_start|>user\nwrite code<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
        "<tool_call>{}</tool_call> café naïve 中文 😀 \t  \r\n\r\n  x = 12345  # ünïcödé\n")
    (tmp_path / "sample.txt").write_text(sample, encoding="utf-8")
    ours = json.loads(run_tandem("tokenize", "-m", tok_dir, "-f", tmp_path / "sample.txt", "--json").stdout)["ids"]
    ref = hf.encode(sample).ids
    assert ours == ref
    assert len(ref) < len(sample.encode()) / 2  # the merges were learned: far fewer ids than bytes
    text = run_tandem("detokenize", "-m", tok_dir, *ref[:400]).stdout
    assert text.rstrip("\n") == hf.decode(ref[:400], skip_special_tokens=False).rstrip("\n")


def test_synth_renders_the_chat_template(run_tandem, models_dir, tmp_path):
    """Non-raw prompts are one user message rendered by the target's template (enable_thinking as given) or by
    --chat-template-file, against Python jinja2 rendering it as transformers does (tests/gen/make_chat_golden.py)."""
    pytest.importorskip("jinja2")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))
    import make_chat_golden as ref
    folder = models_dir / TINY
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    own = config["chat_template"]
    mine = tmp_path / "mine.jinja"
    mine.write_text("{{ bos_token if bos_token is defined else '-' }}|{{ pad_token }}|{% for m in messages %}[{{ m.role }}] "
                    "{{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}>{% endif %}",
                    encoding="utf-8")
    prompts = write_prompts(tmp_path / "p.jsonl", PROMPTS[:2], blank_lines=False)
    for flags, source, kw in [(["--no-think"], own, {"enable_thinking": 0}),
                              (["--chat-template-file", mine], mine.read_text(encoding="utf-8"),
                               ref.special_variables(config))]:
        out = tmp_path / "d.jsonl"
        run_tandem("synth", "-m", folder, "-f", prompts, "-o", out, "-n", 2, "--force", *flags)
        for item, line in zip(PROMPTS, read_lines(out)):
            msgs = [{"role": "user", "content": prompt_text(item)}]
            full = ref.render(ref.make_env(), source, dict(kw, messages=msgs, add_generation_prompt=True))
            (tmp_path / "full.txt").write_text(full, encoding="utf-8")
            want = json.loads(run_tandem("tokenize", "-m", folder, "-f", tmp_path / "full.txt", "--json").stdout)["ids"]
            assert line["prompt_ids"] == want, (flags, full)
    cp = run_tandem("synth", "-m", folder, "-f", prompts, "-o", tmp_path / "x.jsonl", "--raw", "--chat-template-file",
                    mine, check=False)
    assert cp.returncode != 0 and "--chat-template-file: not with --raw" in cp.stderr, cp.stderr
    # a model without a template: said so, with the ways out
    import shutil
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"]:
        shutil.copy(folder / f, bare / f)
    (bare / "tokenizer_config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "chat_template"}))
    cp = run_tandem("synth", "-m", bare, "-f", prompts, "-o", tmp_path / "y.jsonl", check=False)
    assert cp.returncode == 1 and "has no chat template (pass --chat-template-file, or --raw" in cp.stderr, cp.stderr
    assert not (tmp_path / "y.jsonl").exists() or (tmp_path / "y.jsonl").read_text() == ""
