"""tandem run --image on the tiny Qwen3-VL folder of tests/golden/vision_chat (tests/gen/make_vl_text_golden.py):
prompt ids and greedy tokens as transformers' processor and model.generate make them; bad images are clear errors."""
import json
import os
import signal

import pytest

VL = "tests/golden/vision_chat"


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def cases(golden_dir):
    return {c["case"]: c for c in json.loads((golden_dir / "vision_chat" / "cases.json").read_text())["cases"]}


def image_path(golden_dir, name):
    return golden_dir / ("vision_chat" if name.startswith("checker") else "images") / name


@pytest.mark.parametrize("case", ["one_image", "two_images", "text_only"])
def test_run_image_matches_transformers(run_tandem, golden_dir, case):
    c = cases(golden_dir)[case]
    images = [a for f in c["images"] for a in ("--image", image_path(golden_dir, f))]
    args = ["run", "-m", golden_dir / "vision_chat" / "model", *images, "-p", c["text"], "-n", len(c["greedy"]),
            "--temp", "0", "--exact", "--json", "-b", "8"]
    if not images:
        args.append("--chat")
    out = last_json(run_tandem(*args).stdout)
    assert out["prompt_ids"] == c["input_ids"]
    assert out["generated_ids"] == c["greedy"]


@pytest.mark.parametrize("make,needle", [
    (lambda d: d / "vision_chat" / "cases.json", "unknown image format"),
    (lambda d: d / "images" / "bomb_70000x70000.png", "exceeds the limit"),
    (lambda d: d / "no_such_image.png", "no_such_image.png"),
])
def test_run_bad_image_is_a_clear_error(run_tandem, golden_dir, make, needle):
    path = make(golden_dir)
    cp = run_tandem("run", "-m", golden_dir / "vision_chat" / "model", "--image", path, "-p", "x", check=False)
    assert cp.returncode != 0 and cp.returncode < 128, cp.stderr
    assert str(path.name) in cp.stderr and needle in cp.stderr, cp.stderr


def test_run_truncated_jpeg_and_text_model(run_tandem, golden_dir, models_dir, tmp_path):
    cut = tmp_path / "cut.jpg"
    data = (golden_dir / "images" / "jpeg_444.jpg").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    cp = run_tandem("run", "-m", golden_dir / "vision_chat" / "model", "--image", cut, "-p", "x", check=False)
    assert cp.returncode not in (0,) and cp.returncode < 128 and "cut.jpg" in cp.stderr, cp.stderr
    cp = run_tandem("run", "-m", models_dir / "tied_gqa2", "--image", golden_dir / "vision_chat" / "checker_64x96.png",
                    "-p", "x", check=False)
    assert cp.returncode != 0 and "no vision tower" in cp.stderr, cp.stderr


def test_image_token_budget(run_tandem, golden_dir):
    model = golden_dir / "vision_chat" / "model"
    img = golden_dir / "vision_chat" / "checker_64x96.png"
    base = last_json(run_tandem("run", "-m", model, "--image", img, "-p", "x", "-n", "1", "--json").stdout)
    big = last_json(run_tandem("run", "-m", model, "--image", img, "-p", "x", "-n", "1", "--json",
                               "--image-min-tokens", "12", "--image-max-tokens", "24").stdout)
    pad = cases(golden_dir)["one_image"]["input_ids"][6]
    assert base["prompt_ids"].count(pad) == 6
    assert 12 <= big["prompt_ids"].count(pad) <= 24


def test_chat_image_goes_with_the_next_message(tandem_bin, golden_dir):
    """tandem chat's /image: the next message's prompt is the processor's (image then text), and the next turn
    reuses the cached image instead of evaluating it again."""
    from test_chat_cli import Terminal
    c = cases(golden_dir)["one_image"]
    term = Terminal([str(tandem_bin), "chat", "-m", str(golden_dir / "vision_chat" / "model"), "--temp", "0",
                     "-n", "4"])
    try:
        chat_session(term, c, golden_dir)
    finally:  # a failed check leaves no chat running
        if term in Terminal.running:
            Terminal.running.remove(term)
            os.kill(term.pid, signal.SIGKILL)
            os.waitpid(term.pid, 0)
            os.close(term.fd)


def chat_session(term, c, golden_dir):
    from test_chat_cli import stats
    term.expect("> ")
    term.send("/image " + str(golden_dir / "vision_chat" / "no_such.png"))
    term.expect("no_such.png")
    term.send("/image " + str(golden_dir / "vision_chat" / "checker_64x96.png"))
    term.expect("6 tokens, goes with the next message")
    term.send(c["text"])
    n1, reused1 = stats(term.expect(" reused)"))
    assert (n1, reused1) == (len(c["input_ids"]), 0)
    term.expect("> ")
    term.send("And now?")
    n2, reused2 = stats(term.expect(" reused)"))
    assert n2 > n1 and reused2 >= len(c["input_ids"])
    term.expect("> ")
    term.send("/quit")
    assert term.wait() == 0


def test_info_says_vision(run_tandem, golden_dir, models_dir):
    vl = last_json(run_tandem("info", "-m", golden_dir / "vision_chat" / "model", "--json").stdout)
    text = last_json(run_tandem("info", "-m", models_dir / "tied_gqa2", "--json").stdout)
    assert (vl["architecture"], vl["vision"]) == ("qwen3vl", True)
    assert (text["architecture"], text["vision"]) == ("qwen3", False)


@pytest.mark.parametrize("case", ["one_image", "two_images"])
def test_gguf_with_mmproj_matches_transformers(run_tandem, golden_dir, tmp_path, case):
    """The folder converted to a qwen3vl GGUF + mmproj GGUF (both f32) and loaded with --mmproj answers as
    transformers does; without --mmproj it refuses images, and a text-model mmproj is refused."""
    c = cases(golden_dir)[case]
    text, mmproj = tmp_path / "vl.gguf", tmp_path / "mmproj-vl.gguf"
    run_tandem("convert", golden_dir / "vision_chat" / "model", "-o", text, "--weight-format", "f32",
               "--mmproj-type", "f32")
    assert text.exists() and mmproj.exists()
    images = [a for f in c["images"] for a in ("--image", image_path(golden_dir, f))]
    out = last_json(run_tandem("run", "-m", text, "--mmproj", mmproj, *images, "-p", c["text"],
                               "-n", len(c["greedy"]), "--temp", "0", "--exact", "--json", "-b", "8").stdout)
    assert out["prompt_ids"] == c["input_ids"]
    assert out["generated_ids"] == c["greedy"]
    cp = run_tandem("run", "-m", text, *images, "-p", "x", check=False)
    assert cp.returncode != 0 and "--mmproj" in cp.stderr, cp.stderr
    cp = run_tandem("run", "-m", golden_dir / "vision_chat" / "model", "--mmproj", mmproj, *images, "-p", "x",
                    check=False)
    assert cp.returncode != 0 and "carries its own" in cp.stderr, cp.stderr
