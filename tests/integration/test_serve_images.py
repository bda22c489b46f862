"""tandem serve with images (Qwen3-VL): OpenAI image_url parts (data: URIs; local files with --allow-local-files)
through the engine, on the tiny Qwen3-VL folder of tests/golden/vision_chat (tests/gen/make_vl_text_golden.py).
Greedy answers equal transformers' (the golden's ids) and `tandem run --image`; the encoded-image cache, prefix reuse
with images and a draft model leave answers unchanged; bad images are 400s naming the field."""
import base64
import json
from pathlib import Path

import httpx
import openai
import pytest

from serve_process import Server

VL = "vision_chat"


def cases(golden_dir):
    return {c["case"]: c for c in json.loads((golden_dir / VL / "cases.json").read_text())["cases"]}


def image_path(golden_dir, name):
    return golden_dir / (VL if name.startswith("checker") else "images") / name


def data_uri(path, media="image/png"):
    return f"data:{media};base64," + base64.b64encode(path.read_bytes()).decode()


def user_message(golden_dir, case, url=None):
    parts = [{"type": "image_url", "image_url": {"url": url or data_uri(image_path(golden_dir, f))}}
             for f in case["images"]]
    return {"role": "user", "content": [*parts, {"type": "text", "text": case["text"]}]}


def run_text(run_tandem, golden_dir, case, *extra):
    images = [a for f in case["images"] for a in ("--image", image_path(golden_dir, f))]
    out = run_tandem("run", "-m", golden_dir / VL / "model", *images, "-p", case["text"], "-n",
                     len(case["greedy"]), "--temp", "0", "--json", *extra).stdout
    return json.loads(out.strip().splitlines()[-1])


def ask(server, messages, n, stream=False, **kw):
    """The greedy answer (text) and its usage, streamed or not."""
    client = server.client()
    args = dict(model="m", messages=messages, max_tokens=n, temperature=0, **kw)
    if not stream:
        r = client.chat.completions.create(**args)
        return r.choices[0].message.content or "", r.usage
    text, usage = "", None
    for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **args):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    return text, usage


@pytest.fixture(scope="module")
def vl_server(tandem_bin, golden_dir, tmp_path_factory):
    s = Server(tandem_bin, golden_dir / VL / "model", tmp_path_factory.mktemp("serve_vl"), "--parallel", "2",
               "--exact", "--allow-local-files")
    yield s
    s.stop(check=True)


@pytest.mark.parametrize("name", ["one_image", "two_images"])
@pytest.mark.parametrize("stream", [False, True])
def test_answer_matches_transformers_and_run(vl_server, run_tandem, golden_dir, name, stream):
    c = cases(golden_dir)[name]
    run = run_text(run_tandem, golden_dir, c, "--exact")
    assert run["generated_ids"] == c["greedy"]  # the reference: transformers' greedy ids
    text, usage = ask(vl_server, [user_message(golden_dir, c)], len(c["greedy"]), stream=stream)
    assert text == run["text"]
    assert usage.prompt_tokens == len(c["input_ids"])
    assert usage.completion_tokens == len(c["greedy"])
    details = usage.prompt_tokens_details.model_dump()
    assert details["image_tokens"] == c["input_ids"].count(cases(golden_dir)["one_image"]["input_ids"][6])


def test_same_image_hits_the_cache(vl_server, tandem_bin, golden_dir, tmp_path):
    """A different system prompt before the same image: no prefix reuse of the image's rows, but its encoding comes
    from the cache; the answer is a fresh server's (no cache)."""
    c = cases(golden_dir)["one_image"]
    img = c["images"][0]
    before = vl_server.metrics()
    hits0 = before.get(("tandem_image_cache_hits_total", ()), 0)
    first, u1 = ask(vl_server, [{"role": "system", "content": "Look closely."}, user_message(golden_dir, c)], 6)
    second, u2 = ask(vl_server, [{"role": "system", "content": "Be brief, please."}, user_message(golden_dir, c)], 6)
    d2 = u2.prompt_tokens_details.model_dump()
    assert d2["cached_image_tokens"] == d2["image_tokens"] > 0
    assert vl_server.metrics()[("tandem_image_cache_hits_total", ())] >= hits0 + 1
    assert vl_server.metrics()[("tandem_prompt_image_tokens_cached_total", ())] >= d2["image_tokens"]
    fresh = Server(tandem_bin, golden_dir / VL / "model", tmp_path, "--exact", "--image-cache", "0")
    try:
        f2, fu2 = ask(fresh, [{"role": "system", "content": "Be brief, please."}, user_message(golden_dir, c)], 6)
        assert fu2.prompt_tokens_details.model_dump()["cached_image_tokens"] == 0
        f1, _ = ask(fresh, [{"role": "system", "content": "Look closely."}, user_message(golden_dir, c)], 6)
    finally:
        fresh.stop(check=True)
    assert (first, second) == (f1, f2)
    assert img  # the case has its image


def test_second_turn_reuses_the_image_rows(vl_server, tandem_bin, golden_dir, tmp_path):
    c = cases(golden_dir)["one_image"]
    turn1 = [user_message(golden_dir, c)]
    a1, _ = ask(vl_server, turn1, 5)
    turn2 = [*turn1, {"role": "assistant", "content": a1}, {"role": "user", "content": "And the colours?"}]
    a2, u2 = ask(vl_server, turn2, 6)
    assert u2.prompt_tokens_details.cached_tokens > len(c["input_ids"]) - 2  # the first turn's rows, image included
    # the same history with another image: its rows are not reused past the image
    other = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_uri(image_path(golden_dir, "large_150x100.png"))}},
        {"type": "text", "text": c["text"]}]}]
    _, u3 = ask(vl_server, [*other, {"role": "assistant", "content": a1},
                            {"role": "user", "content": "And the colours?"}], 2)
    assert u3.prompt_tokens_details.cached_tokens < c["input_ids"].index(c["input_ids"][6]) + 1
    fresh = Server(tandem_bin, golden_dir / VL / "model", tmp_path, "--exact")
    try:
        f2, fu2 = ask(fresh, turn2, 6)
    finally:
        fresh.stop(check=True)
    assert fu2.prompt_tokens_details.cached_tokens == 0
    assert a2 == f2


def test_local_file_and_bare_string_form(vl_server, golden_dir):
    c = cases(golden_dir)["one_image"]
    path = image_path(golden_dir, c["images"][0])
    want, _ = ask(vl_server, [user_message(golden_dir, c)], 6)
    for url in (str(path), "file://" + str(path)):
        assert ask(vl_server, [user_message(golden_dir, c, url=url)], 6)[0] == want
    bare = {"role": "user", "content": [{"type": "image_url", "image_url": data_uri(path), "detail": "low"},
                                        {"type": "text", "text": c["text"]}]}
    assert ask(vl_server, [bare], 6)[0] == want


def test_draft_model_leaves_image_answers_unchanged(tandem_bin, golden_dir, tmp_path):
    """The draft model sees no images: a request with images decodes without it, and its answer is the target's."""
    c = cases(golden_dir)["two_images"]
    model = golden_dir / VL / "model"
    plain = Server(tandem_bin, model, tmp_path, "--exact")
    try:
        want, _ = ask(plain, [user_message(golden_dir, c)], 6)
        text_want, _ = ask(plain, [{"role": "user", "content": "Hello there"}], 6)
    finally:
        plain.stop(check=True)
    drafted = Server(tandem_bin, model, tmp_path, "--exact", "-md", model, "--lookup", "2")
    try:
        got, usage = ask(drafted, [user_message(golden_dir, c)], 6)
        text_got, _ = ask(drafted, [{"role": "user", "content": "Hello there"}], 6)
    finally:
        drafted.stop(check=True)
    assert (got, text_got) == (want, text_want)


BAD = [
    ("data:image/png;base64,iVBORw0KGgo!", "not a base64 digit"),
    ("data:image/png;base64,iVBORw0KGgo", "multiple of 4"),
    ("data:image/png;base64,QR==", "not canonical"),
    ("data:image/png," + "abcd", "not base64"),
    ("data:text/plain;base64,aGVsbG8=", "not an image"),
    ("data:image/png;base64," + base64.b64encode(b"hello world, not an image").decode(), "image format"),
    ("data:image/png;base64,", "no data"),
    ("https://example.com/cat.png", "fetching remote images is not supported; send a data: URI"),
    ("ftp://x/y.png", "expected a data: URI"),
]


@pytest.mark.parametrize("url,needle", BAD)
def test_bad_image_is_a_400_naming_the_field(vl_server, url, needle):
    msgs = [{"role": "system", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                         {"type": "image_url", "image_url": {"url": url}}]}]
    with pytest.raises(openai.BadRequestError) as e:
        vl_server.client().chat.completions.create(model="m", messages=msgs, max_tokens=2)
    assert e.value.body["param"] == "messages[1].content[1].image_url.url"
    assert needle in e.value.body["message"], e.value.body["message"]
    assert httpx.get(vl_server.url + "/health", timeout=5).status_code == 200


def test_local_files_need_the_flag_and_text_models_refuse(tandem_bin, golden_dir, models_dir, tmp_path):
    path = str(image_path(golden_dir, "checker_64x96.png"))
    msg = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": path}}]}]
    s = Server(tandem_bin, golden_dir / VL / "model", tmp_path, "--max-images", "1")
    try:
        with pytest.raises(openai.BadRequestError) as e:
            s.client().chat.completions.create(model="m", messages=msg, max_tokens=2)
        assert e.value.body["param"] == "messages[0].content[0].image_url.url"
        assert "--allow-local-files" in e.value.body["message"]
        two = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_uri(Path(path))}}] * 2}]
        with pytest.raises(openai.BadRequestError) as e:
            s.client().chat.completions.create(model="m", messages=two, max_tokens=2)
        assert e.value.body["param"] == "messages[0].content[1].image_url.url" and "more than 1" in e.value.body[
            "message"]
    finally:
        s.stop(check=True)
    t = Server(tandem_bin, models_dir / "tied_gqa2", tmp_path)
    try:
        msg = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_uri(Path(path))}}]}]
        with pytest.raises(openai.BadRequestError) as e:
            t.client().chat.completions.create(model="m", messages=msg, max_tokens=2)
        assert e.value.body["param"] == "messages[0].content[0]"
        assert "no vision tower" in e.value.body["message"]
    finally:
        t.stop(check=True)



def test_concurrent_image_requests_match_their_sequential_answers(vl_server, golden_dir):
    """More requests than slots, with different images and text: each answer is the one it gets alone."""
    from concurrent.futures import ThreadPoolExecutor
    cs = cases(golden_dir)
    msgs = [[user_message(golden_dir, cs["one_image"])], [user_message(golden_dir, cs["two_images"])],
            [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": data_uri(image_path(golden_dir, "large_150x100.png"))}},
                {"type": "text", "text": "Count the shapes."}]}],
            [{"role": "user", "content": "No image here."}]]
    alone = [ask(vl_server, m, 7)[0] for m in msgs]
    with ThreadPoolExecutor(len(msgs)) as pool:
        together = list(pool.map(lambda m: ask(vl_server, m, 7, stream=True)[0], msgs * 2))
    assert together == alone * 2


def test_input_image_form_and_oversized_image(tandem_bin, vl_server, golden_dir, tmp_path):
    c = cases(golden_dir)["one_image"]
    url = data_uri(image_path(golden_dir, c["images"][0]))
    want, _ = ask(vl_server, [user_message(golden_dir, c)], 6)
    responses_form = {"role": "user", "content": [{"type": "input_image", "image_url": url},
                                                  {"type": "text", "text": c["text"]}]}
    assert ask(vl_server, [responses_form], 6)[0] == want
    s = Server(tandem_bin, golden_dir / VL / "model", tmp_path, "-c", "48", "--image-min-tokens", "64",
               "--image-max-tokens", "64")
    try:
        with pytest.raises(openai.BadRequestError) as e:
            s.client().chat.completions.create(model="m", messages=[user_message(golden_dir, c)], max_tokens=2)
        assert e.value.body["param"] == "messages[0].content[0].image_url.url"
        assert "more than a slot's context of 48" in e.value.body["message"]
    finally:
        s.stop(check=True)


def test_images_in_system_and_assistant_messages_follow_the_template(vl_server, golden_dir):
    """The template renders image parts in any role (Qwen3-VL's does): each is placed and counted."""
    url = data_uri(image_path(golden_dir, "checker_64x96.png"))
    msgs = [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": url}},
                                           {"type": "text", "text": "Use this logo."}]},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Here:"},
                                              {"type": "image_url", "image_url": {"url": url}}]},
            {"role": "user", "content": "Again?"}]
    _, usage = ask(vl_server, msgs, 2)
    d = usage.prompt_tokens_details.model_dump()
    assert d["image_tokens"] == 2 * 6
