"""The chat page `tandem serve` answers GET / with, driven in a real browser (Debian's chromium, headless, through
selenium and Debian's chromedriver): what the page shows for an answer (reasoning, content, tool calls, token count)
must equal what the same request returns from the API without streaming, and the figures must be there. A
screenshot of each run is saved under build/test-artifacts/ (TANDEM_ARTIFACTS overrides)."""
import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from serve_process import Server  # noqa: E402

MODEL = "tied_gqa2"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def server(tandem_bin, models_dir, tmp_path_factory):
    # a draft (the model's own Q4_0 copy), so that answers carry the acceptance figure the page shows
    srv = Server(tandem_bin, models_dir / MODEL / "model-q8_0.gguf", tmp_path_factory.mktemp("serve"),
                 "--parallel", "2", "-md", models_dir / MODEL / "model-q4_0.gguf")
    yield srv.url.rstrip("/")
    srv.stop(check=True)


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("chromium and chromedriver are needed (scripts/setup.sh installs Debian's chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,800"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=opts)
    yield drv
    drv.quit()


def artifacts_dir(repo_root):
    d = Path(os.environ.get("TANDEM_ARTIFACTS", repo_root / "build" / "test-artifacts"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def api_answer(url, body):
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def ask(drv, text, *, temperature="0", max_tokens="12", thinking=True, tools=None, tool_choice="auto"):
    """Types a message into the page with the given settings and waits for the answer; returns its element."""
    drv.find_element(By.ID, "show-settings").click() if not drv.find_element(By.ID, "settings").is_displayed() else None
    for field, value in (("temperature", temperature), ("max-tokens", max_tokens)):
        e = drv.find_element(By.ID, field)
        e.clear()
        e.send_keys(value)
    if drv.find_element(By.ID, "thinking").is_selected() != thinking:
        drv.find_element(By.ID, "thinking").click()
    tools_box = drv.find_element(By.ID, "tools")
    tools_box.clear()
    if tools:
        drv.execute_script("arguments[0].value = arguments[1];", tools_box, json.dumps(tools))
    drv.execute_script("arguments[0].value = arguments[1];", drv.find_element(By.ID, "tool-choice"), tool_choice)
    n_before = len(drv.find_elements(By.CSS_SELECTOR, ".msg.assistant"))
    box = drv.find_element(By.ID, "input")
    box.send_keys(text)
    drv.find_element(By.ID, "send").click()
    WebDriverWait(drv, 120).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg.assistant")) > n_before
        and d.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1].get_attribute("data-done") == "1")
    return drv.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1]


def shown(drv, answer):
    """What the page shows for an answer, read from the DOM (hidden reasoning read via textContent)."""
    reasoning = drv.execute_script("return arguments[0].querySelector('details.reasoning pre').textContent;", answer)
    content = drv.execute_script("return arguments[0].querySelector('.content').textContent;", answer)
    calls = [{"name": c.find_element(By.CSS_SELECTOR, ".name").text,
              "arguments": drv.execute_script("return arguments[0].querySelector('pre').textContent;", c)}
             for c in answer.find_elements(By.CSS_SELECTOR, ".tool-call")]
    return reasoning, content, calls


def test_page_streams_the_api_answer(server, browser, repo_root):
    browser.get(server + "/")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "model").text not in ("", "…"))
    with urllib.request.urlopen(server + "/v1/models", timeout=10) as r:
        assert browser.find_element(By.ID, "model").text == json.load(r)["data"][0]["id"]

    answer = ask(browser, "Hello there", thinking=True)
    ref = api_answer(server, {"model": "m", "messages": [{"role": "user", "content": "Hello there"}],
                              "temperature": 0, "max_tokens": 12,
                              "chat_template_kwargs": {"enable_thinking": True}})
    msg = ref["choices"][0]["message"]
    reasoning, content, calls = shown(browser, answer)
    assert content == (msg.get("content") or "")
    assert reasoning == (msg.get("reasoning_content") or "")
    reasoning_box = answer.find_element(By.CSS_SELECTOR, "details.reasoning")
    assert reasoning_box.is_displayed() == bool(reasoning)
    assert calls == []
    assert int(answer.get_attribute("data-tokens")) == ref["usage"]["completion_tokens"]
    assert answer.get_attribute("data-finish") == ref["choices"][0]["finish_reason"]
    stats = answer.find_element(By.CSS_SELECTOR, ".stats").text
    assert "TTFT" in stats and f"{ref['usage']['completion_tokens']} tokens" in stats
    if ref["usage"]["completion_tokens"] > 1:
        assert "tok/s" in stats
    # the draft's figures come from this answer's own usage chunk (how many tokens a run drafts depends on measured
    # timings, so another request's figures would differ)
    drafted, accepted = int(answer.get_attribute("data-drafted") or 0), int(answer.get_attribute("data-accepted") or 0)
    assert drafted > 0 and 0 <= accepted <= drafted
    assert f"draft acceptance {int(100 * accepted / drafted + 0.5)}%" in stats  # as Math.round
    assert "draft acceptance" in stats
    browser.save_screenshot(str(artifacts_dir(repo_root) / "chat_page.png"))


def test_page_shows_tool_calls_and_keeps_the_history(server, browser, repo_root):
    browser.get(server + "/")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "model").text not in ("", "…"))
    first = ask(browser, "Weather in Paris?", thinking=False, tools=TOOLS, tool_choice="required", max_tokens="40")
    ref = api_answer(server, {"model": "m", "messages": [{"role": "user", "content": "Weather in Paris?"}],
                              "temperature": 0, "max_tokens": 40, "tools": TOOLS, "tool_choice": "required",
                              "chat_template_kwargs": {"enable_thinking": False}})
    msg = ref["choices"][0]["message"]
    _, content, calls = shown(browser, first)
    want = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in msg.get("tool_calls") or []]
    assert calls == want
    assert content == (msg.get("content") or "")
    if ref["choices"][0]["finish_reason"] == "tool_calls":
        assert calls and calls[0]["name"] == "get_weather"
        json.loads(calls[0]["arguments"])
    # a second turn sends the first answer back as history: the server reuses the prompt prefix
    second = ask(browser, "And in Rome?", thinking=False, max_tokens="8")
    assert second.get_attribute("data-done") == "1"
    assert not second.find_elements(By.CSS_SELECTOR, ".error")
    browser.save_screenshot(str(artifacts_dir(repo_root) / "chat_page_tools.png"))


def test_page_shows_server_errors(server, browser):
    browser.get(server + "/")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "model").text not in ("", "…"))
    answer = ask(browser, "hi", max_tokens="0")  # max_tokens must be at least 1: the server's 400 is shown
    err = answer.find_elements(By.CSS_SELECTOR, ".error")
    assert err and "max_tokens" in err[0].text
