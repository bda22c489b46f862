"""OpenVINO GenAI's sample scripts for the classes tandem's package has, written from OpenVINO's documented API with
only `import openvino_genai` changed (tests/integration/ov_samples), run as users run them, on the tiny model; what
they print is checked against the package used directly (itself checked against `tandem run` elsewhere)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

SAMPLES = REPO / "tests" / "integration" / "ov_samples"


@pytest.fixture(scope="module")
def run_sample(tandem):
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))  # tandem's fixture set TANDEM_LIBRARY

    def run(name, *args, input=None):
        # bytes, not text mode: the random model writes "\r", which universal newlines would turn into "\n"
        cp = subprocess.run([sys.executable, str(SAMPLES / name), *map(str, args)], capture_output=True, timeout=300,
                            env=dict(env, PYTHONIOENCODING="utf-8"), input=input.encode() if input else None)
        assert cp.returncode == 0, cp.stderr.decode(errors="replace")
        return cp.stdout.decode("utf-8")
    return run


def test_greedy_causal_lm(run_sample, pipe, model_path):
    want = pipe.generate("Why is the sky blue?", max_new_tokens=100).texts[0]
    assert run_sample("greedy_causal_lm.py", model_path, "Why is the sky blue?") == want + "\n"


def test_chat_sample(tandem, run_sample, model_path):
    out = run_sample("chat_sample.py", model_path, input="hello\nand then\n")
    ref = tandem.LLMPipeline(model_path)
    ref.start_chat()
    want = "".join(f"question:\n{ref.generate(q, max_new_tokens=12).texts[0]}\n----------\n"
                   for q in ["hello", "and then"])
    assert out == want + "question:\n"


def test_speculative_decoding_lm(tandem, run_sample, pipe, models_dir, model_path):
    draft = models_dir / "tied_gqa2" / "model-q8_0.gguf"
    out = run_sample("speculative_decoding_lm.py", model_path, draft, "Alan Turing was a")
    text = pipe.generate("Alan Turing was a", max_new_tokens=100).texts[0]
    p = tandem.LLMPipeline(model_path, draft_model=tandem.draft_model(draft))
    sd = p.generate("Alan Turing was a", max_new_tokens=100, num_assistant_tokens=5).extended_perf_metrics
    assert out == (f"{text}\naccepted draft tokens: {sd.get_num_accepted_tokens()}\n"
                   f"main model iterations: {sd.main_model_metrics.num_iterations}\n"
                   f"draft model tokens: {sd.draft_model_metrics.get_num_generated_tokens()}\n")
    assert sd.get_num_accepted_tokens() > 0


def test_prompt_lookup_decoding_lm(run_sample, pipe, model_path):
    prompt = "one two three one two three one two"
    assert run_sample("prompt_lookup_decoding_lm.py", model_path, prompt) == \
        pipe.generate(prompt, max_new_tokens=100).texts[0] + "\n"


def test_benchmark_genai(run_sample, model_path):
    out = run_sample("benchmark_genai.py", "-m", model_path, "-n", "3", "-mt", "7")
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert lines["Generated tokens"] == "21"  # three iterations summed by PerfMetrics' +
    assert float(lines["TTFT"].split()[0]) > 0 and float(lines["Throughput"].split()[0]) > 0


def test_structured_output_generation(run_sample, model_path):
    jsonschema = pytest.importorskip("jsonschema")
    sys.path.insert(0, str(SAMPLES))
    import structured_output_generation as sample
    value = json.loads(run_sample("structured_output_generation.py", model_path))
    jsonschema.validate(value, sample.SCHEMA)


def test_continuous_batching_sample(run_sample, pipe, model_path):
    prompts = ["hello world", "the cat sat on the mat and", "zebra"]
    out = run_sample("continuous_batching_sample.py", model_path, *prompts)
    tok = pipe.get_tokenizer()  # the sample decodes ids: special tokens skipped, as OpenVINO GenAI's decode does
    want = "".join(f"{i}: FINISHED: {tok.decode(pipe.generate(p, max_new_tokens=10).token_ids[0])!r}\n"
                   for i, p in enumerate(prompts))
    assert out == want


def test_visual_language_chat(tandem, run_sample, golden_dir, tmp_path):
    """Two images from a folder, then two questions: the answers of the pipeline used directly, images as files."""
    import shutil
    images = [golden_dir / "vision_chat" / "checker_64x96.png", golden_dir / "images" / "large_150x100.png"]
    for i, p in enumerate(images):
        shutil.copy(p, tmp_path / f"{i}.png")
    model = golden_dir / "vision_chat" / "model"
    out = run_sample("visual_language_chat.py", model, tmp_path, input="What is here?\nAnd now?\n")
    ref = tandem.VLMPipeline(model)
    ref.start_chat()
    first = ref.generate("What is here?", images=images, max_new_tokens=30, do_sample=False).texts[0]
    second = ref.generate("And now?", max_new_tokens=30, do_sample=False).texts[0]
    assert out == f"question:\n{first}\n----------\nquestion:\n{second}\n----------\nquestion:\n"
