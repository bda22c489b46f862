"""The tandem program as a user runs it: every command and its --help, usage errors, generation against
the transformers goldens, stop strings, streaming, tokenizer-only folders, and clear errors on bad files."""
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from qwen3_gguf import byte_to_unicode
from safetensors.numpy import load_file

TINY = "tied_gqa2"


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def reference(models_dir, name, variant="hf"):
    return load_file(str(models_dir / name / f"reference-{variant}.safetensors"))


# ---- help and usage ----

@pytest.mark.parametrize("cmd", ["run", "tokenize", "detokenize", "info", "bench"])
def test_help_on_every_command(run_tandem, cmd):
    cp = run_tandem(cmd, "--help")
    assert cp.stdout.startswith("usage: tandem " + cmd)


def test_top_level_help_and_unknown_command(run_tandem):
    assert "commands:" in run_tandem("--help").stdout
    cp = run_tandem("frobnicate", check=False)
    assert cp.returncode == 2 and "unknown command" in cp.stderr


@pytest.mark.parametrize("args,needle", [
    (["run", "-m", "x", "-p", "hi", "--bogus"], "unknown option '--bogus'"),
    (["run", "-m", "x", "-p"], "needs a value"),
    (["run", "-p", "hi"], "missing -m"),
    (["run", "-m", "x", "-p", "a", "-f", "b"], "exactly one of"),
    (["run", "-m", "x", "-p", "a", "-n", "ten"], "not an integer"),
    (["run", "-m", "x", "-p", "a", "--top-p", "1.5"], "outside"),
    (["tokenize", "-m", "x"], "exactly one of"),
    (["info"], "missing MODEL"),
    (["info", "a", "b"], "more than one"),
    (["bench", "-p", "4"], "missing -m"),
    (["bench", "-m", "x", "-r", "0"], "outside"),
    (["bench", "-m", "x", "--draft-min", "5", "--draft-max", "2"], "--draft-min"),
    (["run", "-m", "x", "-p", "a", "--kv-type", "q4_0"], "--kv-type: 'q4_0' is not one of f16, f32, q8_0"),
    (["perplexity", "-m", "x", "-f", "t", "--kv-type", "bf16"], "is not one of f16, f32, q8_0"),
    # a number too large for any integer type is out of range, with the range, not "not an integer"
    (["run", "-m", "x", "-p", "a", "-n", "99999999999999999999"], "-n: 99999999999999999999 is outside -1..2147483647"),
    (["run", "-m", "x", "-p", "a", "--temp", "1e999"], "--temp: 1e999 is outside 0..100"),
    (["detokenize", "-m", "x"], "no token ids given"),
])
def test_usage_errors(run_tandem, args, needle):
    cp = run_tandem(*args, check=False)
    assert cp.returncode == 2, cp.stderr
    assert needle in cp.stderr


def test_version(run_tandem, repo_root):
    """tandem --version, tandem version and tandem COMMAND --version print the library's version, the one
    include/tandem.h declares."""
    import re
    declared = re.search(r'#define TANDEM_VERSION "([^"]+)"', (repo_root / "include" / "tandem.h").read_text()).group(1)
    for args in (["--version"], ["version"], ["run", "--version"], ["bench", "--version"], ["convert", "--version"]):
        cp = run_tandem(*args)
        assert cp.stdout == f"tandem {declared}\n", (args, cp.stdout)
    assert "--version" in run_tandem("--help").stdout
    cp = run_tandem("frobnicate", "--version", check=False)
    assert cp.returncode == 2 and "unknown command" in cp.stderr


# ---- generation ----

@pytest.mark.parametrize("variant,path", [("hf", "."), ("gguf-q8_0", "model-q8_0.gguf")])
def test_run_greedy_matches_transformers(run_tandem, models_dir, variant, path):
    ref = reference(models_dir, TINY, variant)
    model = models_dir / TINY / path
    # the prompt goes in as text: detokenize the reference prompt ids, and check tokenize gives them back
    ids = [str(i) for i in ref["prompt"].tolist()]
    text = run_tandem("detokenize", "-m", model, *ids).stdout
    assert last_json(run_tandem("tokenize", "-m", model, "--text", text, "--json").stdout)["ids"] == \
        ref["prompt"].tolist()
    # --exact: f32 activations, the path whose logits match transformers to 1e-5 (the default 8-bit path
    # is compared in test_golden_models: random tiny models have near-ties that greedy runs can flip)
    cp = run_tandem("run", "-m", model, "-p", text, "-n", "64", "--temp", "0", "--ignore-eos", "--json", "--exact")
    out = last_json(cp.stdout)
    assert out["prompt_ids"] == ref["prompt"].tolist()
    assert out["generated_ids"] == ref["greedy"].tolist()
    assert out["finish_reason"] == "length"
    t = out["timings"]
    assert t["generated_tokens"] == 64 and t["prompt_tokens"] == len(ids)
    assert t["ttft_ms"] > 0 and t["decode_tokens_per_s"] > 0
    # the streamed text printed before the JSON line is the same text
    assert cp.stdout.startswith(out["text"])


def test_seed_reproducible_and_sampling_varies(run_tandem, models_dir):
    model = models_dir / TINY
    def gen(seed):
        return last_json(run_tandem("run", "-m", model, "-p", "hello", "-n", "24", "--temp", "1.0",
                                    "--top-k", "0", "--top-p", "1", "--min-p", "0", "--seed", str(seed),
                                    "--ignore-eos", "--json").stdout)["generated_ids"]
    a, b, c = gen(1), gen(1), gen(2)
    assert a == b
    assert a != c


def test_stop_string_cuts_text(run_tandem, models_dir):
    model = models_dir / TINY
    full = last_json(run_tandem("run", "-m", model, "-p", "def f", "-n", "40", "--temp", "0", "--ignore-eos",
                                "--json").stdout)
    text = full["text"]
    assert len(text) > 12
    stop = text[8:12]
    first = text.index(stop)
    cp = run_tandem("run", "-m", model, "-p", "def f", "-n", "40", "--temp", "0", "--ignore-eos",
                    "--stop", stop, "--json")
    out = last_json(cp.stdout)
    assert out["finish_reason"] == "stop"
    assert out["text"] == text[:first]
    assert stop not in cp.stdout.rsplit("\n", 2)[0]  # never streamed


def test_eos_from_generation_config_ends_generation(run_tandem, models_dir, tmp_path):
    """Make the greedy path's 3rd token an end-of-generation id via generation_config.json: it must stop there."""
    ref = reference(models_dir, TINY)
    model = tmp_path / "m"
    shutil.copytree(models_dir / TINY, model)
    third = int(ref["greedy"][2])
    (model / "generation_config.json").write_text(json.dumps({"eos_token_id": [third], "do_sample": False}))
    text = run_tandem("detokenize", "-m", model, *[str(i) for i in ref["prompt"].tolist()]).stdout
    out = last_json(run_tandem("run", "-m", model, "-p", text, "-n", "64", "--json").stdout)
    assert out["finish_reason"] == "eos"
    assert out["generated_ids"] == ref["greedy"][:3].tolist()


def test_context_full_is_reported(run_tandem, models_dir):
    out = last_json(run_tandem("run", "-m", models_dir / TINY, "-p", "abc", "-c", "12", "--temp", "0",
                               "--ignore-eos", "--json").stdout)
    assert out["finish_reason"] == "context_full"
    assert len(out["prompt_ids"]) + len(out["generated_ids"]) == 13  # the last sampled token needs no slot
    cp = run_tandem("run", "-m", models_dir / TINY, "-p", "a long prompt " * 10, "-c", "8", check=False)
    assert cp.returncode == 1 and "context full" in cp.stderr
    # a q8_0 cache needs whole blocks of 32 per head: untied_gqa4's heads are 16 wide; the message names the flag
    cp = run_tandem("run", "-m", models_dir / "untied_gqa4", "-p", "hi", "--kv-type", "q8_0", check=False)
    assert cp.returncode == 1 and "--kv-type Q8_0 (type 8): a q8_0 cache needs a head_dim that is a multiple of 32" \
        in cp.stderr, cp.stderr


def test_summary_starts_its_own_line_and_stdout_is_the_text(tandem_bin, models_dir):
    """stdout is the generated text byte for byte when it is a pipe or file (no newline added); where stdout and stderr
    meet (2>&1), the stderr summary still starts a line of its own."""
    base = [str(tandem_bin), "run", "-m", str(models_dir / TINY), "-p", "def f", "-n", "12", "--temp", "0",
            "--ignore-eos"]
    text = json.loads(subprocess.run(base + ["--json"], capture_output=True, text=True,
                                     check=True).stdout.splitlines()[-1])["text"]
    assert text and not text.endswith("\n")
    alone = subprocess.run(base, capture_output=True, text=True, check=True)
    assert alone.stdout == text
    assert alone.stderr.startswith("tandem: ")
    both = subprocess.run(base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=True).stdout
    assert both.startswith(text + "\ntandem: ") and both.endswith("finish: length\n"), both


def test_errors_read_as_the_cli(run_tandem, models_dir, tmp_path):
    """CLI errors name the command, not the API function that failed; a safetensors file given for its folder, a
    tokenizer-only folder given as a model, and a directory given as a prompt file say what was wrong."""
    missing = tmp_path / "missing"
    cp = run_tandem("tokenize", "-m", missing, "--text", "hi", check=False)
    assert cp.returncode == 1, cp.stderr
    assert cp.stderr.startswith(f"tandem tokenize: error: {missing}: cannot open: No such file or directory"), cp.stderr
    assert "tandem_" not in cp.stderr
    st = models_dir / TINY / "model.safetensors"
    expect_error(run_tandem, ["run", "-m", st, "-p", "x"], f"{st} is a safetensors file", "folder", "config.json")
    tok = tmp_path / "tok"
    tok.mkdir()
    shutil.copy(models_dir / TINY / "tokenizer.json", tok)
    expect_error(run_tandem, ["info", tok], f"{tok}: no config.json", "tokenizer-only")
    assert run_tandem("tokenize", "-m", tok, "--text", "ab").stdout.strip()  # still a tokenizer
    (tmp_path / "empty").mkdir()
    expect_error(run_tandem, ["info", tmp_path / "empty"], "no config.json")
    expect_error(run_tandem, ["run", "-m", models_dir / TINY, "-f", tmp_path],
                 f"{tmp_path}: read failed: Is a directory")


@pytest.mark.parametrize("json_out", [True, False])
def test_ctrl_c_during_run_prints_the_summary(tandem_bin, models_dir, json_out):
    """Ctrl-C stops generation at the next token: the text so far stays on stdout, the summary (the JSON line with
    --json) follows with finish "interrupted", and the exit code is 130 (128 + SIGINT)."""
    import signal
    cmd = [str(tandem_bin), "run", "-m", str(models_dir / TINY), "-p", "def f", "-n", "1000000", "-c", "65536",
           "--temp", "0", "--ignore-eos"] + (["--json"] if json_out else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.read(1)  # generation has begun (text is streamed token by token)
    assert first and proc.poll() is None
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    out, err = (first + out).decode("utf-8", "replace"), err.decode()
    assert proc.returncode == 130, (proc.returncode, err)
    if json_out:
        last = json.loads(out.splitlines()[-1])
        assert last["finish_reason"] == "interrupted"
        assert 0 < last["timings"]["generated_tokens"] < 1000000
        assert out.startswith(last["text"][:1])
    else:
        assert "finish: interrupted" in err, err


def test_ctrl_c_during_bench_prints_what_was_measured(tandem_bin, models_dir):
    """Ctrl-C during bench's runs prints the table of the runs done (and the JSON line, marked interrupted), exit 130;
    before any measured run, it says there is nothing to report."""
    import signal
    base = [str(tandem_bin), "bench", "-m", str(models_dir / TINY), "-p", "4", "-n", "500", "--json"]
    # Ctrl-C must come after the first measured run and long before the 1000th: wait a few times what one run
    # takes now (the machine's load sets it), and wait longer if it still came too early.
    start = time.monotonic()
    subprocess.run(base + ["-r", "1", "--warmup", "0"], capture_output=True, check=True)
    one_run = time.monotonic() - start
    for warmup, measured in (("0", True), ("1000", False)):
        for wait in (3 * one_run + 0.2, 10 * one_run + 1, 30 * one_run + 3):
            proc = subprocess.Popen(base + ["-r", "1000", "--warmup", warmup], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            time.sleep(wait)
            assert proc.poll() is None, proc.communicate()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 130, (out, err)
            if not measured or "nothing to report" not in err:
                break
        if measured:
            last = json.loads(out.splitlines()[-1])
            assert last["interrupted"] is True and 0 < last["repetitions"] < 1000
            assert last["decode_tokens_per_s"] > 0
            assert f"{last['repetitions']} runs after 0 warm-up" in out and "time to first token" in out
            assert f"interrupted: {last['repetitions']} of 1000 measured runs done" in err
        else:
            assert out == "" and "nothing to report" in err, (out, err)


def test_context_past_training_and_too_many_threads_warn(run_tandem, models_dir):
    model = models_dir / TINY  # max_position_embeddings 256
    cp = run_tandem("run", "-m", model, "-p", "abc", "-c", "300", "-n", "2", "--temp", "0")
    assert "warning: a context of 300 tokens goes past the 256 the model was trained on" in cp.stderr
    assert "warning" not in run_tandem("run", "-m", model, "-p", "abc", "-c", "256", "-n", "2").stderr
    cpus = os.cpu_count()
    cp = run_tandem("bench", "-m", model, "-p", "4", "-n", "2", "-r", "1", "--warmup", "0", "-t", "1000", "--json")
    assert f"warning: -t 1000: only {cpus} CPUs are online, using {cpus} threads" in cp.stderr
    assert last_json(cp.stdout)["threads"] == cpus
    cp = run_tandem("run", "-m", model, "-p", "abc", "-n", "2", "--threads", str(cpus + 1))
    assert f"--threads {cpus + 1}: only {cpus} CPUs" in cp.stderr


def test_library_errors_name_the_flag_in_the_cli(run_tandem, models_dir, tmp_path):
    """The library names the API field (tandem_ctx_params.n_ctx, tandem_prune_params.force); the CLI user reads the
    flag that sets it."""
    cp = run_tandem("run", "-m", models_dir / TINY, "-p", "a long prompt " * 10, "-c", "8", check=False)
    assert cp.returncode == 1 and "(raise --ctx-size)" in cp.stderr and "tandem_ctx_params" not in cp.stderr
    out, calib = tmp_path / "out.gguf", tmp_path / "calib.txt"
    out.write_bytes(b"keep me")
    calib.write_text("some calibration text")
    cp = run_tandem("prune", "-m", models_dir / TINY, "-f", calib, "--remove", 1, "-o", out, check=False)
    assert cp.returncode == 1 and "already exists (pass --force to overwrite)" in cp.stderr, cp.stderr
    assert "params" not in cp.stderr and out.read_bytes() == b"keep me"


# ---- tokenizer commands ----

def test_tokenizer_only_folder_matches_hf(run_tandem, qwen3_tokenizer_dir, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    folder = tmp_path / "tok"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(qwen3_tokenizer_dir / name, folder / name)
    hf = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    for text in ["Hello world! It's 2026.", "<|im_start|>user\n你好，世界<|im_end|>\n", "def f(x):\n\treturn x  # ok"]:
        ids = last_json(run_tandem("tokenize", "-m", folder, "--text", text, "--json").stdout)["ids"]
        assert ids == hf.encode(text, add_special_tokens=False).ids
        plain = run_tandem("tokenize", "-m", folder, "--text", text).stdout.split()
        assert [int(x) for x in plain] == ids
        assert run_tandem("detokenize", "-m", folder, *map(str, ids)).stdout == text
    # --no-special: the markers are ordinary text
    ids = last_json(run_tandem("tokenize", "-m", folder, "--text", "<|im_end|>", "--json", "--no-special").stdout)["ids"]
    assert 151645 not in ids and len(ids) > 1


def test_tokenize_from_file_and_stdin(run_tandem, models_dir, tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("some text\n")
    a = run_tandem("tokenize", "-m", models_dir / TINY, "-f", f).stdout
    b = run_tandem("tokenize", "-m", models_dir / TINY, "-f", "-", input="some text\n").stdout
    assert a == b and a.strip()


# ---- info ----

def test_info_folder_and_gguf(run_tandem, models_dir):
    folder = last_json(run_tandem("info", models_dir / "untied_gqa4", "--json").stdout)
    manifest = json.loads((models_dir / "manifest.json").read_text())
    cfg = manifest["models"]["untied_gqa4"]["config"]
    assert folder["n_layers"] == cfg["num_hidden_layers"] and folder["dim"] == cfg["hidden_size"]
    assert folder["n_heads"] == cfg["num_attention_heads"] and folder["n_kv_heads"] == cfg["num_key_value_heads"]
    assert folder["head_dim"] == cfg["head_dim"] and folder["ffn_dim"] == cfg["intermediate_size"]
    assert folder["tied_embeddings"] is False and folder["source"] == "safetensors"
    gguf = last_json(run_tandem("info", models_dir / "tied_gqa2" / "model-q4_0.gguf", "--json").stdout)
    assert gguf["source"] == "gguf" and gguf["tied_embeddings"] is True
    assert set(gguf["tensor_types"]) == {"F32", "Q4_0"}
    assert gguf["tokenizer"]["eos_ids"] and gguf["tokenizer"]["vocab_size"] <= gguf["vocab_size"]
    text = run_tandem("info", models_dir / "tied_gqa2" / "model-q4_0.gguf", "--tensors").stdout
    assert "blk.0.attn_q.weight" in text and "Q4_0" in text


def test_info_on_8b_shaped_file_reads_no_weights(run_tandem, sparse_qwen3_8b_gguf, tandem_bin):
    size = sparse_qwen3_8b_gguf.stat().st_size
    assert size > 4e9
    # tandem runs under a fresh Python whose only child it is, so RUSAGE_CHILDREN there is tandem's own peak
    # (in this process it would include every earlier test's children)
    probe = ("import resource, subprocess, sys; "
             "cp = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, cp.returncode); "
             "print(cp.stdout, end=''); print(cp.stderr, end='', file=sys.stderr)")
    cp = subprocess.run([sys.executable, "-c", probe, str(tandem_bin), "info", str(sparse_qwen3_8b_gguf), "--json"],
                        capture_output=True, text=True)
    first, _, out = cp.stdout.partition("\n")
    rss_kb, rc = int(first.split()[0]), int(first.split()[1])
    assert rc == 0, cp.stderr
    info = json.loads(out.strip().splitlines()[-1])
    assert info["n_layers"] == 36 and info["dim"] == 4096 and info["vocab_size"] == 151936
    assert info["tensor_types"]["Q4_0"] == 36 * 7 + 2
    # far below the 4.6 GB file (weights are mapped, not read)
    assert rss_kb * 1024 < size / 20, f"peak RSS {rss_kb} KiB"


# ---- bad input: a clear message naming the file, exit code 1, never a crash ----

def corrupt(src, dst, fn):
    data = bytearray(src.read_bytes())
    fn(data)
    dst.write_bytes(bytes(data))
    return dst


def expect_error(run_tandem, args, *needles):
    cp = run_tandem(*args, check=False)
    assert cp.returncode == 1, f"exit {cp.returncode}: {cp.stderr}"
    for n in needles:
        assert n in cp.stderr, cp.stderr
    assert "Sanitizer" not in cp.stderr and "internal error" not in cp.stderr


def test_bad_gguf_files(run_tandem, models_dir, tmp_path):
    good = models_dir / TINY / "model-q8_0.gguf"
    data = good.read_bytes()
    for cut in [0, 3, 10, 23, 100, len(data) // 2, len(data) - 1]:
        p = tmp_path / f"cut{cut}.gguf"
        p.write_bytes(data[:cut])
        expect_error(run_tandem, ["info", p], str(p))
        expect_error(run_tandem, ["run", "-m", p, "-p", "x"], str(p))
    bad_magic = corrupt(good, tmp_path / "magic.gguf", lambda d: d.__setitem__(slice(0, 4), b"GGUX"))
    expect_error(run_tandem, ["info", bad_magic], "magic")
    v9 = corrupt(good, tmp_path / "v9.gguf", lambda d: d.__setitem__(slice(4, 8), struct.pack("<I", 9)))
    expect_error(run_tandem, ["info", v9], "version")
    huge = corrupt(good, tmp_path / "count.gguf", lambda d: d.__setitem__(slice(8, 16), struct.pack("<q", 1 << 40)))
    expect_error(run_tandem, ["info", huge], str(huge))


def write_gguf(path, tensors, vocab_tokens=258, extra_kv=None, matrix_type=None):
    """A small qwen3 GGUF built with the gguf package; tensors: name -> numpy array (PyTorch order); matrix_type:
    a GGML type name (e.g. "Q8_0") the 2-D tensors are quantized to."""
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(path), "qwen3")
    kv = {"block_count": 1, "context_length": 64, "embedding_length": 32, "feed_forward_length": 64,
          "head_count": 2, "head_count_kv": 1, "key_length": 16, "value_length": 16}
    kv.update(extra_kv or {})
    for k, v in kv.items():
        name = {"head_count": "attention.head_count", "head_count_kv": "attention.head_count_kv",
                "key_length": "attention.key_length", "value_length": "attention.value_length"}.get(k, k)
        w.add_uint32(f"qwen3.{name}", v)
    w.add_float32("qwen3.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_float32("qwen3.rope.freq_base", 10000.0)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "qwen2")
    w.add_array("tokenizer.ggml.tokens", [byte_to_unicode()[b] for b in range(256)] + ["AB"] + [f"[PAD{i}]" for i in range(257, vocab_tokens)])
    w.add_array("tokenizer.ggml.token_type", [1] * vocab_tokens)
    w.add_array("tokenizer.ggml.merges", ["A B"])
    w.add_uint32("tokenizer.ggml.eos_token_id", 0)
    for name, arr in tensors.items():
        if matrix_type and arr.ndim == 2:
            from gguf.quants import quantize
            qtype = gguf.GGMLQuantizationType[matrix_type]
            w.add_tensor(name, quantize(arr, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def tiny_tensors(vocab=258, dim=32, ffn=64, heads=2, kv_heads=1, hd=16):
    rng = np.random.default_rng(0)
    f = lambda *s: (rng.standard_normal(s) * 0.1).astype(np.float32)
    return {"token_embd.weight": f(vocab, dim), "output_norm.weight": f(dim),
            "blk.0.attn_norm.weight": f(dim), "blk.0.attn_q.weight": f(heads * hd, dim),
            "blk.0.attn_k.weight": f(kv_heads * hd, dim), "blk.0.attn_v.weight": f(kv_heads * hd, dim),
            "blk.0.attn_q_norm.weight": f(hd), "blk.0.attn_k_norm.weight": f(hd),
            "blk.0.attn_output.weight": f(dim, heads * hd), "blk.0.ffn_norm.weight": f(dim),
            "blk.0.ffn_gate.weight": f(ffn, dim), "blk.0.ffn_up.weight": f(ffn, dim),
            "blk.0.ffn_down.weight": f(dim, ffn)}


def test_gguf_semantic_errors(run_tandem, tmp_path):
    ok = write_gguf(tmp_path / "ok.gguf", tiny_tensors())
    out = last_json(run_tandem("run", "-m", ok, "-p", "AB", "-n", "3", "--temp", "0", "--json").stdout)
    assert len(out["generated_ids"]) <= 3
    t = tiny_tensors()
    del t["blk.0.ffn_up.weight"]
    expect_error(run_tandem, ["info", write_gguf(tmp_path / "missing.gguf", t)], "missing tensor 'blk.0.ffn_up.weight'")
    t = tiny_tensors()
    t["blk.0.attn_q.weight"] = t["blk.0.attn_q.weight"][:16]
    expect_error(run_tandem, ["info", write_gguf(tmp_path / "shape.gguf", t)], "blk.0.attn_q.weight", "shape")
    absurd = write_gguf(tmp_path / "absurd.gguf", tiny_tensors(), extra_kv={"block_count": 100000})
    expect_error(run_tandem, ["info", absurd], "n_layers")
    t = tiny_tensors()
    t["blk.0.ffn_down.weight"] = t["blk.0.ffn_down.weight"].astype(np.float64)
    expect_error(run_tandem, ["info", write_gguf(tmp_path / "f64.gguf", t)], "blk.0.ffn_down.weight")
    # a context length beyond int32 is too large, with the limit (it is a non-negative integer)
    long_ctx = write_gguf(tmp_path / "ctx.gguf", tiny_tensors(), extra_kv={"context_length": 3_000_000_000})
    expect_error(run_tandem, ["info", long_ctx], "'qwen3.context_length' = 3000000000 is too large", "2147483647")


def test_nonfinite_weights_fail_naming_the_tensor(run_tandem, models_dir, tmp_path):
    """A NaN or an infinity in the weights used to be sampled as an arbitrary token with exit code 0."""
    t = tiny_tensors()
    t["blk.0.ffn_up.weight"][3, 5] = np.nan
    nan = write_gguf(tmp_path / "nan.gguf", t)
    expect_error(run_tandem, ["run", "-m", nan, "-p", "AB", "-n", "3", "--temp", "0"], "not finite",
                 "'blk.0.ffn_up.weight' (layer 0)", "NaN at [3, 5]")
    expect_error(run_tandem, ["bench", "-m", nan, "-p", "4", "-n", "2", "-r", "1"], "'blk.0.ffn_up.weight'")
    # quantized weights on the default path (8-bit activations, which used to turn a NaN into a finite value)
    for name in ("blk.0.attn_v.weight", "blk.0.ffn_up.weight"):
        t = tiny_tensors()
        t[name][0, 0] = np.nan
        path = write_gguf(tmp_path / "nan-q8_0.gguf", t, matrix_type="Q8_0")
        for isa in ("scalar", "avx2", None):  # None: the best this CPU has
            cp = run_tandem("run", "-m", path, "-p", "ABAB A", "-n", "3", "--temp", "0", check=False,
                            env={"TANDEM_KERNELS": isa} if isa else None)
            assert cp.returncode == 1 and f"'{name}' (layer 0) holds NaN" in cp.stderr, (isa, cp.stderr)
    t = tiny_tensors()
    t["output_norm.weight"][7] = np.inf
    expect_error(run_tandem, ["run", "-m", write_gguf(tmp_path / "inf.gguf", t), "-p", "AB", "-n", "3"],
                 "'output_norm.weight' holds an infinity at [0, 7]")
    t = tiny_tensors()  # every weight finite, but the MLP's input scaled past float's range
    t["blk.0.ffn_norm.weight"][:] = 3e38
    expect_error(run_tandem, ["run", "-m", write_gguf(tmp_path / "big.gguf", t), "-p", "AB", "-n", "3"],
                 "every weight is, but the output of layer 0 is not")
    # an HF folder: the tensor under its Hugging Face name
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    m = copy_model(models_dir, tmp_path)
    tensors = safetensors_numpy.load_file(str(m / "model.safetensors"))
    tensors["model.layers.1.self_attn.k_proj.weight"][0, 0] = -np.inf
    safetensors_numpy.save_file(tensors, str(m / "model.safetensors"))
    expect_error(run_tandem, ["run", "-m", m, "-p", "hello", "-n", "3"],
                 "'model.layers.1.self_attn.k_proj.weight' (layer 1) holds an infinity at [0, 0]")


def test_tensors_of_missing_layers_and_eos_outside_the_vocabulary(run_tandem, models_dir, tmp_path):
    """A file with more layers than its config says, and end ids that are no token, used to load silently."""
    t = tiny_tensors()
    t["blk.5.ffn_up.weight"] = t["blk.0.ffn_up.weight"]
    expect_error(run_tandem, ["info", write_gguf(tmp_path / "extra.gguf", t)], "'blk.5.ffn_up.weight'",
                 "layer 5", "qwen3.block_count is 1")
    gguf = pytest.importorskip("gguf")
    p = tmp_path / "eos.gguf"
    write_gguf(p, tiny_tensors())
    reader = gguf.GGUFReader(str(p), "r+")  # the eos id in place: 0 -> 300 (258 tokens)
    reader.fields["tokenizer.ggml.eos_token_id"].parts[-1][0] = 300
    del reader
    expect_error(run_tandem, ["run", "-m", p, "-p", "AB"], "tokenizer.ggml.eos_token_id", "vocab size 258")
    m = copy_model(models_dir, tmp_path)
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tensors = safetensors_numpy.load_file(str(m / "model.safetensors"))
    tensors["model.layers.2.mlp.up_proj.weight"] = tensors["model.layers.0.mlp.up_proj.weight"]
    safetensors_numpy.save_file(tensors, str(m / "model.safetensors"))
    expect_error(run_tandem, ["info", m], "'model.layers.2.mlp.up_proj.weight'", "num_hidden_layers is 2")
    m = copy_model(models_dir, tmp_path / "eos")
    cfg = json.loads((m / "config.json").read_text())
    (m / "config.json").write_text(json.dumps({**cfg, "eos_token_id": 9999}))
    expect_error(run_tandem, ["run", "-m", m, "-p", "hi"], "config.json: eos_token_id: 9999", "vocab size 426")
    (m / "config.json").write_text(json.dumps({**cfg, "eos_token_id": [402, 440]}))
    expect_error(run_tandem, ["info", m], "config.json: eos_token_id: 440", "vocab size 426")
    (m / "config.json").write_text(json.dumps(cfg))
    (m / "generation_config.json").write_text(json.dumps({"eos_token_id": [402, -1]}))
    expect_error(run_tandem, ["info", m], "generation_config.json: eos_token_id: -1", "vocab size 426")


def copy_model(models_dir, tmp_path, name=TINY):
    dst = tmp_path / name
    shutil.copytree(models_dir / name, dst)
    for g in dst.glob("*.gguf"):
        g.unlink()
    return dst


def test_bad_hf_folders(run_tandem, models_dir, tmp_path):
    m = copy_model(models_dir, tmp_path)
    (m / "config.json").write_text("{ not json")
    expect_error(run_tandem, ["info", m], "config.json", "invalid JSON")
    cfg = json.loads((models_dir / TINY / "config.json").read_text())
    (m / "config.json").write_text(json.dumps({**cfg, "hidden_size": 10**9}))
    expect_error(run_tandem, ["info", m], "config.json")
    (m / "config.json").write_text(json.dumps({**cfg, "hidden_size": 48}))
    expect_error(run_tandem, ["info", m], "model.embed_tokens.weight", "shape")
    (m / "config.json").write_text(json.dumps({**cfg, "model_type": "llama"}))
    expect_error(run_tandem, ["info", m], "model_type 'llama'")
    (m / "config.json").write_text(json.dumps({**cfg, "max_position_embeddings": 10**12}))
    expect_error(run_tandem, ["info", m], "'max_position_embeddings' = 1000000000000 is too large", "2147483647")
    (m / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "num_hidden_layers"}))
    expect_error(run_tandem, ["info", m], "num_hidden_layers")
    (m / "config.json").write_text(json.dumps(cfg))
    (m / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": [1, 2]}}')
    expect_error(run_tandem, ["info", m], "tokenizer.json")
    (m / "tokenizer.json").unlink()
    expect_error(run_tandem, ["info", m], "tokenizer.json")
    (m / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    expect_error(run_tandem, ["info", m], "model.embed_tokens.weight")
    (m / "model.safetensors").unlink()
    expect_error(run_tandem, ["info", m], str(m))
    expect_error(run_tandem, ["info", tmp_path / "does-not-exist"], "does-not-exist")


def test_missing_shard_and_wrong_dtype(run_tandem, models_dir, tmp_path):
    m = copy_model(models_dir, tmp_path, "sharded")
    shards = sorted(m.glob("model-*.safetensors"))
    assert len(shards) >= 2
    shards[-1].unlink()
    expect_error(run_tandem, ["info", m], shards[-1].name)
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    m2 = copy_model(models_dir, tmp_path)
    tensors = safetensors_numpy.load_file(str(m2 / "model.safetensors"))
    tensors["model.layers.0.mlp.up_proj.weight"] = tensors["model.layers.0.mlp.up_proj.weight"].astype(np.int64)
    safetensors_numpy.save_file(tensors, str(m2 / "model.safetensors"))
    expect_error(run_tandem, ["info", m2], "model.layers.0.mlp.up_proj.weight", "I64")


# ---- speculative decoding from the command line ----

@pytest.mark.parametrize("extra", [["-md", "{models}/tied_gqa2/model-q4_0.gguf"], ["-md", "{models}/untied_gqa4"],
                                   ["--lookup", "2"], ["-md", "{models}/untied_gqa1", "--lookup", "3",
                                                       "--draft-max", "5", "--draft-fixed"]])
def test_run_speculative_is_identical(run_tandem, models_dir, extra):
    ref = reference(models_dir, TINY)
    text = run_tandem("detokenize", "-m", models_dir / TINY, *[str(i) for i in ref["prompt"].tolist()]).stdout
    args = [a.format(models=models_dir) for a in extra]
    out = last_json(run_tandem("run", "-m", models_dir / TINY, "-p", text, "-n", "64", "--temp", "0",
                               "--ignore-eos", "--json", *args).stdout)
    assert out["generated_ids"] == ref["greedy"].tolist()
    s = out["speculative"]
    assert s["rounds"] >= 1 and 0 <= s["accepted"] <= s["drafted"]
    assert {"acceptance_rate", "mean_per_pass", "c", "predicted_speedup", "draft_ms", "target_ms"} <= set(s)
    assert 0 <= s["draft_off_rounds"] <= s["rounds"]


def test_run_speculative_reports_what_was_measured(run_tandem, models_dir):
    """The summary used to print "predicted speedup 2.34x" as if measured, and "acceptance 0%" when adaptive
    drafting had switched the draft off. A draft of another model (every proposal rejected) and costlier than the
    target is switched off by the adaptive rule whatever the timings."""
    args = ["run", "-m", models_dir / TINY, "-md", models_dir / "untied_gqa4", "-p", "hello there", "-n", "64",
            "--temp", "0", "--ignore-eos"]
    err = run_tandem(*args).stderr
    assert "tok/s measured" in err
    assert "predicted speedup" in err and "a prediction: the target alone was not timed" in err
    assert "adaptive drafting switched the draft model off for" in err
    s = last_json(run_tandem(*args, "--json").stdout)["speculative"]
    assert 0 < s["draft_off_rounds"] < s["rounds"]


def test_draft_with_another_vocabulary_is_refused(run_tandem, models_dir, tmp_path):
    other = write_gguf(tmp_path / "other.gguf", tiny_tensors())
    expect_error(run_tandem, ["run", "-m", models_dir / TINY, "-md", other, "-p", "x"], "vocabulary rows", "must match")
    cp = run_tandem("run", "-m", models_dir / TINY, "-p", "x", "--draft-min", "9", "--draft-max", "4", check=False)
    assert cp.returncode == 2 and "--draft-min" in cp.stderr


# ---- tandem bench ----

BENCH_FIELDS = {"ttft_ms", "prefill_tokens_per_s", "decode_tokens_per_s", "tpot_ms", "peak_rss_mb"}


@pytest.mark.parametrize("variant", ["model-q8_0.gguf", "."])
def test_bench_reports_what_users_compare(run_tandem, models_dir, variant):
    cp = run_tandem("bench", "-m", models_dir / TINY / variant, "-p", "24", "-n", "9", "-r", "2", "--warmup", "1",
                    "-t", "2", "--json")
    out = last_json(cp.stdout)
    assert BENCH_FIELDS <= set(out)
    assert out["n_prompt"] == 24 and out["n_gen"] == 9 and out["repetitions"] == 2
    assert out["threads"] == min(2, os.cpu_count())  # more threads than CPUs: the CPUs, with a warning
    assert out["ttft_ms"] > 0 and out["prefill_tokens_per_s"] > 0 and out["decode_tokens_per_s"] > 0
    # tokens/s from the second token on and the time per output token describe the same runs: a mean of rates is
    # at least the rate of the mean time (equal when the runs are; a hiccup in one run of the tiny model moves
    # the two means apart, so no closer bound holds)
    assert out["tpot_ms"] > 0 and 1000 / out["tpot_ms"] <= out["decode_tokens_per_s"] * (1 + 1e-9)
    assert out["peak_rss_mb"] > 1 and out["isa"] in ("avx512vnni", "avxvnni", "avx2", "scalar")
    assert "acceptance_rate" not in out and "measured_speedup" not in out
    assert "time to first token" in cp.stdout and "decode" in cp.stdout
    # without speculation a pass per token after the first: the weight rate is the token rate times the bytes
    assert out["decode_target_passes_per_s"] == pytest.approx(out["decode_tokens_per_s"], rel=1e-9)
    assert out["decode_weight_gb_per_s"] == pytest.approx(out["decode_target_passes_per_s"] * out["step_bytes"] / 1e9,
                                                          rel=1e-9)


def test_bench_decode_alone_and_curve_and_draft(run_tandem, models_dir):
    out = last_json(run_tandem("bench", "-m", models_dir / TINY, "-p", "0", "-n", "6", "-r", "1", "--warmup", "0",
                               "--json").stdout)
    assert out["n_prompt"] == 0 and out["prefill_tokens_per_s"] == 0 and out["decode_tokens_per_s"] > 0
    assert out["tpot_ms"] == pytest.approx(1000 / out["decode_tokens_per_s"], rel=1e-6)  # one run: the same time
    assert out["kv_type"] == "F16" and not out["exact"]  # the default cache
    for flags, kv in ((["--kv-type", "f32"], "F32"), (["--exact"], "F32"), (["--kv-type", "F16"], "F16"),
                      (["--kv-type", "q8_0"], "Q8_0")):
        out = last_json(run_tandem("bench", "-m", models_dir / TINY, "-p", "4", "-n", "3", "-r", "1", "--warmup", "0",
                                   "--json", *flags).stdout)
        assert out["kv_type"] == kv and out["decode_tokens_per_s"] > 0, flags
    out = last_json(run_tandem("bench", "-m", models_dir / TINY, "-md", models_dir / TINY / "model-q4_0.gguf",
                               "-p", "8", "-n", "12", "-r", "1", "--warmup", "0", "--curve", "--json").stdout)
    assert 0 <= out["acceptance_rate"] <= 1 and out["mean_accepted"] >= 0 and out["mean_per_pass"] >= 1
    # the target alone is timed too, and the weights are counted per target pass, not per produced token (one run:
    # the means are the run's own figures)
    assert out["target_alone_decode_tokens_per_s"] > 0 and out["predicted_speedup"] > 0
    alone = out["target_alone_decode_tokens_per_s"]
    assert out["measured_speedup"] == pytest.approx(out["decode_tokens_per_s"] / alone, rel=1e-9)
    assert out["decode_target_passes_per_s"] * out["mean_per_pass"] == pytest.approx(out["decode_tokens_per_s"],
                                                                                     rel=1e-9)
    assert out["decode_weight_gb_per_s"] == pytest.approx(out["decode_target_passes_per_s"] * out["step_bytes"] / 1e9,
                                                          rel=1e-9)
    assert out["rounds"] >= 1 and 0 <= out["draft_off_rounds"] <= out["rounds"]
    curve = out["verify_curve"]
    assert [c["k"] for c in curve] == [1, 2, 4, 8, 16] and curve[0]["relative"] == 1.0
    assert all(c["ms"] > 0 for c in curve)


def test_bench_says_when_adaptive_drafting_switched_the_draft_off(run_tandem, models_dir):
    cp = run_tandem("bench", "-m", models_dir / TINY, "-md", models_dir / "untied_gqa4", "-p", "8", "-n", "48",
                    "-r", "1", "--warmup", "0", "--json")
    out = last_json(cp.stdout)
    assert 0 < out["draft_off_rounds"] < out["rounds"]
    assert "adaptive drafting switched the draft model off for" in cp.stdout
    assert "measured speedup" in cp.stdout and out["measured_speedup"] > 0


def test_bench_parallel_reports_the_aggregate_and_its_ratio(run_tandem, models_dir):
    cp = run_tandem("bench", "-m", models_dir / TINY / "model-q8_0.gguf", "--parallel", "3", "-p", "4", "-n", "8",
                    "-r", "2", "--warmup", "0", "--json")
    out = last_json(cp.stdout)
    assert out["parallel"] == 3 and out["n_prompt"] == 4 and out["n_gen"] == 8 and out["repetitions"] == 2
    assert out["aggregate_decode_tokens_per_s"] > 0 and out["single_decode_tokens_per_s"] > 0 and out["ttft_ms"] > 0
    # the ratio is of the two means the run printed
    assert out["ratio"] == pytest.approx(out["aggregate_decode_tokens_per_s"] / out["single_decode_tokens_per_s"],
                                         rel=1e-9)
    assert "aggregate decode" in cp.stdout and "with 3 sequences" in cp.stdout
    for flags in (["--parallel", "2", "--lookup", "2"], ["--parallel", "0"]):  # usage errors: exit code 2
        cp = run_tandem("bench", "-m", models_dir / TINY, *flags, check=False)
        assert cp.returncode == 2 and "--parallel" in cp.stderr, (flags, cp.returncode, cp.stderr)


def test_bench_bad_model_and_text(run_tandem, models_dir, tmp_path):
    expect_error(run_tandem, ["bench", "-m", tmp_path / "missing.gguf"], "missing.gguf")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    expect_error(run_tandem, ["bench", "-m", models_dir / TINY, "-f", empty, "-p", "4", "-n", "2"], "empty.txt",
                 "no tokens")


def test_agreeing_random_pair_agrees(run_tandem, tmp_path):
    """bench/make_random_gguf.py --agree: a Q8_0 draft and a Q4_0 target made with the same seed and no layer
    contributions hold the same embedding and output values, so the target accepts every drafted token; with the
    layers scaled in, the target departs from the draft somewhere (the pair measures speculative speed in
    bench/README.md)."""
    gen = Path(__file__).resolve().parents[2] / "bench" / "make_random_gguf.py"
    draft, same, other = tmp_path / "draft.gguf", tmp_path / "same.gguf", tmp_path / "other.gguf"
    for path, qtype, scale in [(draft, "q8_0", "0"), (same, "q4_0", "0"), (other, "q4_0", "30")]:
        subprocess.run([sys.executable, gen, path, "--size", "draft", "--type", qtype, "--agree", "5",
                        "--layer-scale", scale], check=True)
    stats = {}
    for target in (same, other):
        out = last_json(run_tandem("run", "-m", target, "-md", draft, "-p", "ab", "-n", "48", "--temp", "0",
                                   "--ignore-eos", "--draft-fixed", "--json").stdout)
        stats[target] = out["speculative"]
    assert stats[same]["drafted"] > 0 and stats[same]["acceptance_rate"] == 1.0
    assert stats[other]["acceptance_rate"] < 1.0
