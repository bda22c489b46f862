"""tandem train as a user runs it: a tiny model learns a repeating text (loss falls, the GGUF loads in tandem and
in the gguf reader, greedy decoding reproduces the pattern), checkpoint resume equals an uninterrupted run, --init
continues training, and bad input fails with a clear message, exit 1 and no file left behind."""
import json
import math
import re

import pytest

TOKENIZER = "tests/golden/models/tied_gqa2"   # the tiny 448-token BPE of the golden models
PATTERN = "one two three four five six seven eight nine ten. "


def write_config(folder, **over):
    cfg = {"model_type": "qwen3", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128, "vocab_size": 448,
           "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": True}
    cfg.update(over)
    path = folder / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def summary(stdout):
    m = re.search(r"trained: loss ([0-9.]+) -> ([0-9.]+)", stdout)
    assert m, stdout
    return float(m.group(1)), float(m.group(2))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, run_tandem):
    """A model trained on PATTERN × 200: (folder, output path, stdout)."""
    d = tmp_path_factory.mktemp("train")
    (d / "data.txt").write_text(PATTERN * 200)
    cfg = write_config(d)
    out = d / "model.gguf"
    cp = run_tandem("train", "--config", cfg, "--data", d / "data.txt", "--tokenizer", TOKENIZER, "-o", out,
                    "--steps", 120, "--batch", 4, "--seq", 32, "--lr", 5e-3, "--warmup", 10, "--val-every", 40,
                    "--threads", 2)
    return d, out, cp.stdout


def test_train_loss_falls_and_model_runs(trained, run_tandem):
    d, out, stdout = trained
    first, last = summary(stdout)
    assert first > 5.0                       # a random init starts near ln(448) = 6.1
    assert last < 0.25 * first, stdout      # the pattern is learned
    vals = [float(v) for v in re.findall(r"val loss ([0-9.]+)", stdout)]
    assert len(vals) >= 3 and vals[-1] < 0.2 and vals[-1] < vals[0], stdout
    # greedy decoding continues the pattern the text taught (after one full period of context: training windows
    # start anywhere in the pattern, so the very first tokens of a text are not what the model learned)
    prompt = PATTERN + "one two three"
    cp = run_tandem("run", "-m", out, "-p", prompt, "-n", 24, "--temp", 0)
    expected = (PATTERN * 3)[len(prompt):]
    text = cp.stdout.rstrip("\n")
    assert len(text) >= 30 and expected.startswith(text), (text, expected)


def test_train_output_reads_in_gguf_package(trained):
    gguf = pytest.importorskip("gguf")
    _, out, _ = trained
    r = gguf.GGUFReader(str(out))
    names = {t.name: t for t in r.tensors}
    assert "token_embd.weight" in names and "output.weight" not in names   # tied
    assert len(names) == 1 + 2 * 11 + 1
    q = names["blk.1.attn_q.weight"]
    assert [int(x) for x in q.shape] == [64, 64] and q.tensor_type == gguf.GGMLQuantizationType.F32
    arch = r.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "qwen3"
    assert int(r.fields["qwen3.attention.key_length"].parts[-1][0]) == 16
    assert "tokenizer.ggml.tokens" in r.fields and "tokenizer.chat_template" in r.fields


def test_train_init_continues_and_bf16_output(trained, run_tandem):
    d, out, _ = trained
    out2 = d / "continued-bf16.gguf"
    cp = run_tandem("train", "--init", out, "--data", d / "data.txt", "-o", out2, "--steps", 3, "--batch", 2,
                    "--seq", 32, "--lr", 1e-4, "--warmup", 0, "--type", "bf16")
    first, _ = summary(cp.stdout)
    assert first < 0.5, cp.stdout           # starts where the first run ended, not from scratch
    info = run_tandem("info", out2).stdout
    assert "BF16" in info
    # a quantized output (the hook the converter's per-tensor rules will replace): matrices Q8_0, norms F32
    out3 = d / "continued-q8_0.gguf"
    run_tandem("train", "--init", out, "--data", d / "data.txt", "-o", out3, "--steps", 1, "--batch", 1, "--seq", 16,
               "--type", "q8_0")
    info = run_tandem("info", out3).stdout
    assert "Q8_0" in info and "F32" in info, info
    gguf = pytest.importorskip("gguf")
    for path, label in ((out2, gguf.LlamaFileType.MOSTLY_BF16), (out3, gguf.LlamaFileType.MOSTLY_Q8_0)):
        assert int(gguf.GGUFReader(str(path)).fields["general.file_type"].parts[-1][0]) == label
    cp = run_tandem("run", "-m", out3, "-p", PATTERN + "one two three", "-n", 6, "--temp", 0)
    assert cp.stdout.startswith(" four five"), cp.stdout


def test_train_resume_equals_uninterrupted(tmp_path, run_tandem):
    gguf = pytest.importorskip("gguf")
    (tmp_path / "data.txt").write_text(PATTERN * 50)
    cfg = write_config(tmp_path, tie_word_embeddings=False)
    common = ["--config", cfg, "--data", tmp_path / "data.txt", "--tokenizer", TOKENIZER, "--steps", 6,
              "--batch", 2, "--seq", 16, "--lr", 3e-3, "--warmup", 2, "--seed", 5]
    run_tandem("train", *common, "-o", tmp_path / "a.gguf")
    ck = tmp_path / "run.ckpt"
    cp = run_tandem("train", *common, "-o", tmp_path / "b.gguf", "--checkpoint", ck, "--stop-after", 4)
    assert "stopped after 4 steps" in cp.stdout and ck.exists() and not (tmp_path / "b.gguf").exists()
    run_tandem("train", *common, "-o", tmp_path / "b.gguf", "--checkpoint", ck, "--resume")
    a, b = gguf.GGUFReader(str(tmp_path / "a.gguf")), gguf.GGUFReader(str(tmp_path / "b.gguf"))
    assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
    for ta, tb in zip(a.tensors, b.tensors):
        assert bytes(ta.data.tobytes()) == bytes(tb.data.tobytes()), ta.name
    # a checkpoint made with other settings is refused
    cp = run_tandem("train", *common[:-8], "--steps", 6, "--batch", 3, "--seq", 16, "-o", tmp_path / "c.gguf",
                    "--checkpoint", ck, "--resume", check=False)
    assert cp.returncode == 1 and "run.ckpt" in cp.stderr and "another text, batch or seq" in cp.stderr


@pytest.mark.parametrize("args,needle", [
    ([], "missing --config"),
    (["--config", "c.json"], "missing --data"),
    (["--config", "c.json", "--data", "d.txt"], "missing -o"),
    (["--config", "c.json", "--data", "d.txt", "-o", "x.gguf", "--resume"], "--resume needs --checkpoint"),
    (["--config", "c.json", "--data", "d.txt", "-o", "x.gguf", "--steps", "0"], "--steps"),
    (["--config", "c.json", "--data", "d.txt", "-o", "x.gguf", "--type", "q9"], "--type"),
])
def test_train_usage_errors(run_tandem, args, needle):
    cp = run_tandem("train", *args, check=False)
    assert cp.returncode == 2 and needle in cp.stderr, cp.stderr


def _bad_case(tmp_path, case):
    """(args, file named in the error, reason needle) for one kind of bad input."""
    data = tmp_path / "data.txt"
    data.write_text(PATTERN * 20)
    cfg = write_config(tmp_path)
    out = tmp_path / "out.gguf"
    base = {"config": cfg, "data": data, "tokenizer": TOKENIZER, "out": out}
    named, needle = None, None
    if case == "empty data":
        data.write_text("")
        named, needle = data, "empty"
    elif case == "data shorter than a sequence":
        data.write_text("one two")
        named, needle = data, "fewer than one sequence"
    elif case == "held-out split too short":
        data.write_text(PATTERN * 4)
        base["extra"] = ["--val-every", "5", "--val-frac", "0.05"]
        named, needle = data, "held-out"
    elif case == "missing data":
        base["data"] = tmp_path / "nope.txt"
        named, needle = base["data"], "cannot open"
    elif case == "heads not divisible":
        base["config"] = write_config(tmp_path, num_attention_heads=3, num_key_value_heads=2)
        named, needle = cfg, "not a multiple"
    elif case == "zero hidden size":
        base["config"] = write_config(tmp_path, hidden_size=0)
        named, needle = cfg, "out of range"
    elif case == "bad train object":
        c = json.loads(cfg.read_text())
        c["train"] = {"lr": "fast"}
        cfg.write_text(json.dumps(c))
        named, needle = cfg, "train.lr must be a number"
    elif case == "misspelt train option":
        c = json.loads(cfg.read_text())
        c["train"] = {"stpes": 10}
        cfg.write_text(json.dumps(c))
        named, needle = cfg, "train.stpes is not a training option"
    elif case == "vocab smaller than tokenizer":
        base["config"] = write_config(tmp_path, vocab_size=300)
        named, needle = TOKENIZER, "vocab_size is 300"
    elif case == "unreadable tokenizer":
        tok = tmp_path / "tok"
        tok.mkdir()
        (tok / "tokenizer.json").write_text("{not json")
        base["tokenizer"] = tok
        named, needle = tok / "tokenizer.json", ""
    elif case == "missing tokenizer":
        base["tokenizer"] = tmp_path / "no-tokenizer"
        named, needle = base["tokenizer"], ""
    elif case == "output exists":
        out.write_bytes(b"keep me")
        named, needle = out, "already exists"
    elif case == "output folder missing":
        out = tmp_path / "no-such-dir" / "out.gguf"
        named, needle = out, "cannot create the output"
    args = ["train", "--config", base["config"], "--data", base["data"], "--tokenizer", base["tokenizer"],
            "-o", out, "--steps", 2, "--batch", 2, "--seq", 32] + base.get("extra", [])
    return args, named, needle, out


@pytest.mark.parametrize("case", ["empty data", "data shorter than a sequence", "held-out split too short",
                                  "missing data", "heads not divisible", "zero hidden size", "bad train object", "misspelt train option",
                                  "vocab smaller than tokenizer", "unreadable tokenizer", "missing tokenizer",
                                  "output exists", "output folder missing"])
def test_train_bad_input(run_tandem, tmp_path, case):
    args, named, needle, out = _bad_case(tmp_path, case)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    cp = run_tandem(*args, check=False)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert str(named) in cp.stderr and needle in cp.stderr, cp.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before   # nothing written, no temp file left
    if case == "output exists":
        assert out.read_bytes() == b"keep me"


def test_train_ctrl_c_saves_checkpoint_and_resumes(tmp_path, interrupt_at_checkpoint, run_tandem):
    """Ctrl-C stops at the end of a step with the checkpoint saved (exit 1, 'resume from'); --resume then continues
    exactly: after 2 more steps its checkpoint equals that of a run that was never interrupted, byte for byte."""
    (tmp_path / "data.txt").write_text(PATTERN * 50)
    cfg = write_config(tmp_path, num_hidden_layers=1)
    common = ["train", "--config", cfg, "--data", tmp_path / "data.txt", "--tokenizer", TOKENIZER,
              "--steps", 100000, "--batch", 2, "--seq", 16, "--checkpoint-every", 1, "--threads", 1]
    ck = tmp_path / "a.ckpt"
    out, err, n = interrupt_at_checkpoint(common + ["-o", tmp_path / "a.gguf", "--checkpoint", ck], ck)
    assert not (tmp_path / "a.gguf").exists()
    cp = run_tandem(*common, "-o", tmp_path / "a.gguf", "--checkpoint", ck, "--resume", "--stop-after", 2)
    assert "stopped after 2 steps" in cp.stdout
    ref = tmp_path / "b.ckpt"
    run_tandem(*common, "-o", tmp_path / "b.gguf", "--checkpoint", ref, "--stop-after", n + 2)
    assert ck.read_bytes() == ref.read_bytes()


def test_train_ctrl_c_without_checkpoint_says_nothing_was_saved(tmp_path, tandem_bin):
    """Without --checkpoint, Ctrl-C loses the steps done: the message says so, and how to keep them next time."""
    import signal
    import subprocess
    (tmp_path / "data.txt").write_text(PATTERN * 50)
    cfg = write_config(tmp_path, num_hidden_layers=1)
    args = ["train", "--config", cfg, "--data", tmp_path / "data.txt", "--tokenizer", TOKENIZER, "-o",
            tmp_path / "a.gguf", "--steps", 100000, "--batch", 2, "--seq", 16, "--val-every", 1, "--threads", 1]
    proc = subprocess.Popen([str(tandem_bin)] + [str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("step 1:")  # the first step is done
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (out, err)
    assert re.search(r"interrupted at step \d+; nothing saved \(use --checkpoint FILE", err), err
    assert not (tmp_path / "a.gguf").exists()


# Every output path is checked before the work (the folder exists and takes a new file): the message names the flag
# and the path, and nothing runs. The inputs after the output are missing on purpose: had the work started, they
# would fail first. The names match the sanitizer run's -k filter (scripts/test.sh), so these run under ASan too.
MISSING_OUTPUT_CASES = {
    "train -o": ["train", "--config", "{d}/c.json", "--data", "{d}/t.txt", "-o", "{out}"],
    "train --checkpoint": ["train", "--config", "{d}/c.json", "--data", "{d}/t.txt", "-o", "{d}/m.gguf",
                           "--checkpoint", "{out}"],
    "distill -o": ["distill", "--student", "{d}/s.gguf", "--teacher", "{d}/t.gguf", "--data", "{d}/x.jsonl",
                   "-o", "{out}"],
    "distill --checkpoint": ["distill", "--student", "{d}/s.gguf", "--teacher", "{d}/t.gguf", "--data",
                             "{d}/x.jsonl", "-o", "{d}/m.gguf", "--checkpoint", "{out}"],
    "synth -o": ["synth", "-m", "{d}/m.gguf", "-f", "{d}/p.jsonl", "-o", "{out}"],
    "prune -o": ["prune", "-m", "{d}/m.gguf", "-f", "{d}/c.txt", "--remove", "1", "-o", "{out}"],
    "prune --csv": ["prune", "-m", "{d}/m.gguf", "-f", "{d}/c.txt", "--analyze", "--csv", "{out}"],
    "prune --png": ["prune", "-m", "{d}/m.gguf", "-f", "{d}/c.txt", "--png", "{out}"],
    "convert -o": ["convert", "{d}/hf", "-o", "{out}"],
    "quantize OUT.gguf": ["quantize", "{d}/m.gguf", "{out}", "q8_0"],
}


@pytest.mark.parametrize("case", sorted(MISSING_OUTPUT_CASES))
def test_output_in_missing_folder_fails_before_the_work(run_tandem, tmp_path, case):
    out = tmp_path / "no-such-dir" / "out.file"
    args = [a.format(d=tmp_path, out=out) for a in MISSING_OUTPUT_CASES[case]]
    cp = run_tandem(*args, check=False)
    flag = case.split()[1]
    assert cp.returncode == 1 and cp.stdout == "", (cp.stdout, cp.stderr)
    assert f"{flag} {out}: cannot create the output there: the folder {out.parent} does not exist" in cp.stderr, \
        cp.stderr
    assert list(tmp_path.iterdir()) == []


def test_prune_output_errors_leave_nothing_and_free_everything(run_tandem, tandem_bin, models_dir, tmp_path):
    """prune's CSV and PNG are all or nothing: when one cannot be written after the calibration (here: a file size
    limit the PNG exceeds), neither is left, nor a temporary file; an existing one is refused before the work. Under
    the sanitizer build (scripts/test.sh) LeakSanitizer checks both paths free what they hold (a leak changes the
    exit code)."""
    import resource
    import signal
    import subprocess
    (tmp_path / "calib.txt").write_text(PATTERN * 20)
    base = [str(tandem_bin), "prune", "-m", str(models_dir / "untied_gqa4"), "-f", str(tmp_path / "calib.txt"),
            "--window", "64", "--csv", str(tmp_path / "t.csv"), "--png", str(tmp_path / "t.png")]

    def small_files():  # writes beyond 512 bytes fail with EFBIG (SIGXFSZ ignored) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    cp = subprocess.run(base, capture_output=True, text=True, preexec_fn=small_files, timeout=120)
    assert cp.returncode == 1, (cp.returncode, cp.stderr)
    assert f"--png {tmp_path / 't.png'}: cannot write" in cp.stderr, cp.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.txt"]
    (tmp_path / "t.csv").write_text("keep")
    cp = run_tandem(*base[1:], check=False)
    assert cp.returncode == 1 and f"--csv {tmp_path / 't.csv'}: already exists" in cp.stderr, cp.stderr
    assert cp.stdout == "" and (tmp_path / "t.csv").read_text() == "keep"


def test_train_with_real_qwen3_tokenizer(tmp_path, run_tandem, qwen3_tokenizer_dir):
    """The real Qwen3 tokenizer (151,669 tokens, padded to the config's 151,936) goes into the GGUF intact: the trained
    file tokenizes like the tokenizer.json folder, and keeps the chat template."""
    (tmp_path / "data.txt").write_text(PATTERN * 10)
    cfg = write_config(tmp_path, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                       intermediate_size=64, vocab_size=151936)
    out = tmp_path / "q.gguf"
    run_tandem("train", "--config", cfg, "--data", tmp_path / "data.txt", "--tokenizer", qwen3_tokenizer_dir,
               "-o", out, "--steps", 1, "--batch", 1, "--seq", 16)
    text = tmp_path / "s.txt"
    text.write_text("Hello <|im_start|>user wörld 123 日本語 😀\n\tdef f(): pass")
    a = run_tandem("tokenize", "-m", out, "-f", text).stdout
    b = run_tandem("tokenize", "-m", qwen3_tokenizer_dir, "-f", text).stdout
    assert a == b and len(a.split()) > 10
    assert "chat template: yes" in run_tandem("info", out).stdout


def test_train_options_from_config_and_flags(tmp_path, run_tandem):
    """The config's "train" object sets options; a flag wins over it."""
    (tmp_path / "data.txt").write_text(PATTERN * 20)
    cfg = write_config(tmp_path, num_hidden_layers=1)
    c = json.loads(cfg.read_text())
    c["train"] = {"steps": 2, "batch": 1, "seq": 16, "val_every": 1, "val_frac": 0.5}
    cfg.write_text(json.dumps(c))
    base = ["train", "--config", cfg, "--data", tmp_path / "data.txt", "--tokenizer", TOKENIZER]
    steps = lambda out: re.findall(r"^step (\d+): train loss", out, re.M)
    assert steps(run_tandem(*base, "-o", tmp_path / "a.gguf").stdout) == ["1", "2"]
    assert steps(run_tandem(*base, "-o", tmp_path / "b.gguf", "--steps", 3).stdout) == ["1", "2", "3"]


def test_train_accumulation_equals_larger_batch(tmp_path, run_tandem):
    """--batch 1 --accum 2 reads the same windows as --batch 2 and averages the same gradients: the same weights up to
    float summation order, which AdamW's g/sqrt(v) amplifies where gradients are tiny (the gradients themselves are
    compared in test_train_ops.c); a run on other data lands far away."""
    gguf = pytest.importorskip("gguf")
    import numpy as np
    (tmp_path / "data.txt").write_text(PATTERN * 20)
    cfg = write_config(tmp_path, num_hidden_layers=1)
    base = ["train", "--config", cfg, "--data", tmp_path / "data.txt", "--tokenizer", TOKENIZER, "--steps", 3,
            "--seq", 16, "--lr", 1e-3, "--warmup", 1]
    run_tandem(*base, "--batch", 2, "-o", tmp_path / "a.gguf")
    run_tandem(*base, "--batch", 1, "--accum", 2, "-o", tmp_path / "b.gguf")
    run_tandem(*base, "--batch", 1, "-o", tmp_path / "c.gguf")
    a, b, c = (gguf.GGUFReader(str(tmp_path / f"{x}.gguf")) for x in "abc")
    worst_ab = worst_ac = 0.0
    for ta, tb, tc in zip(a.tensors, b.tensors, c.tensors):
        scale = float(np.abs(ta.data).max())
        worst_ab = max(worst_ab, float(np.abs(ta.data - tb.data).max()) / scale)
        worst_ac = max(worst_ac, float(np.abs(ta.data - tc.data).max()) / scale)
    assert worst_ab < 3e-3 and worst_ac > 10 * worst_ab, (worst_ab, worst_ac)


def test_train_distill_from_teacher(trained, run_tandem, tmp_path):
    """A smaller student trained on the teacher's top-k distribution alone (--kl-weight 1: the text's own next tokens
    carry no weight) learns the pattern the teacher knows."""
    d, teacher, _ = trained
    cfg = write_config(tmp_path, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    out = tmp_path / "student.gguf"
    cp = run_tandem("train", "--config", cfg, "--data", d / "data.txt", "--tokenizer", TOKENIZER, "-o", out,
                    "--teacher", teacher, "--kl-weight", 1, "--topk", 8, "--steps", 120, "--batch", 4, "--seq", 32,
                    "--lr", 1e-2, "--warmup", 10)
    first, last = summary(cp.stdout)
    assert last < 0.2 * first, cp.stdout
    prompt = PATTERN + "one two three"
    text = run_tandem("run", "-m", out, "-p", prompt, "-n", 12, "--temp", 0).stdout.rstrip("\n")
    assert len(text) >= 20 and (PATTERN * 3)[len(prompt):].startswith(text), text


def test_train_teacher_with_other_vocabulary_is_refused(trained, run_tandem, tmp_path):
    d, teacher, _ = trained
    cfg = write_config(tmp_path, vocab_size=512)
    out = tmp_path / "s.gguf"
    cp = run_tandem("train", "--config", cfg, "--data", d / "data.txt", "--tokenizer", TOKENIZER, "-o", out,
                    "--teacher", teacher, "--steps", 1, "--batch", 1, "--seq", 16, check=False)
    assert cp.returncode == 1 and str(teacher) in cp.stderr and "vocab_size 448 differs" in cp.stderr, cp.stderr
    assert not out.exists()


def test_train_jsonl_counts_the_completion_only(tmp_path, run_tandem):
    """Samples whose prompts are random words and whose completion is fixed: counting only the completion, the loss
    falls to near zero (the model learns the answer); the same samples as plain text cannot get there (random words
    are unpredictable). The chat prompt then answers with the completion."""
    import random
    rng = random.Random(3)
    words = PATTERN.split()
    samples = []
    for _ in range(160):
        q = " ".join(rng.choice(words) for _ in range(8))
        samples.append({"prompt": f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n",
                        "completion": "seven eight.<|im_end|>"})
    (tmp_path / "sft.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (tmp_path / "text.jsonl").write_text("".join(json.dumps({"text": s["prompt"] + s["completion"]}) + "\n"
                                                 for s in samples))
    cfg = write_config(tmp_path)
    common = ["--config", cfg, "--tokenizer", TOKENIZER, "--steps", 80, "--batch", 4, "--seq", 64, "--lr", 5e-3,
              "--warmup", 8, "--val-every", 80, "--val-frac", 0.1]
    sft = run_tandem("train", *common, "--data", tmp_path / "sft.jsonl", "-o", tmp_path / "sft.gguf")
    text = run_tandem("train", *common, "--data", tmp_path / "text.jsonl", "-o", tmp_path / "text.gguf")
    val = lambda out: float(re.findall(r"val loss ([0-9.]+)", out)[-1])  # noqa: E731
    assert val(sft.stdout) < 0.05, sft.stdout
    # as text, the 8 random words of ten carry 8·ln(10) ≈ 18 nats a sample of under 60 tokens: over 0.3 a token
    assert val(text.stdout) > 0.3, text.stdout
    cp = run_tandem("run", "-m", tmp_path / "sft.gguf", "-p",
                    "<|im_start|>user\nnine two five one ten ten three six<|im_end|>\n<|im_start|>assistant\n",
                    "-n", 8, "--temp", 0)
    assert cp.stdout.strip() == "seven eight.", cp.stdout


@pytest.mark.parametrize("line,needle", [
    ('{"prompt": "a", "completion": "b"}\n{"prompt": 1}', "data.jsonl:2: expected \"prompt\" and \"completion\""),
    ('{"prompt": "a", "completion": "b"}\n{oops', "data.jsonl:2: not valid JSON"),
])
def test_train_jsonl_bad_line_is_named(tmp_path, run_tandem, line, needle):
    (tmp_path / "data.jsonl").write_text(line)
    cp = run_tandem("train", "--config", write_config(tmp_path), "--data", tmp_path / "data.jsonl", "--tokenizer",
                    TOKENIZER, "-o", tmp_path / "x.gguf", "--steps", 2, "--seq", 16, check=False)
    assert cp.returncode == 1 and needle in cp.stderr, cp.stderr
    assert not (tmp_path / "x.gguf").exists()
