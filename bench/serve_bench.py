#!/usr/bin/env python3
"""serve_bench.py — `tandem serve` and llama.cpp's `llama-server` under the same load, in turns, in one run.

Two measurements, each on every server given (the same GGUF, the same number of slots, the same threads):
- concurrency: N clients (N in --clients) each stream one completion of --max-tokens tokens at once, --rounds times;
  reported per N: aggregate completion tokens/s (all tokens over the wall time of the round), and the median and
  p90 of time to first token and of time per output token (after the first).
- agent replay: one client replays a tool-calling agent's conversation: a system prompt with tool descriptions,
  then --steps steps, each sending the whole history so far (every earlier answer exactly as the server gave it,
  plus a tool result) and reading a short answer; reported: per-step latency and the total. A server that keeps
  the conversation's KV cache reads only the new part of each prompt.
Both use /v1/completions with a text prompt (random-weight GGUFs have no chat template), temperature 0 and
ignore_eos, so every server generates exactly --max-tokens tokens. Servers take turns round by round, so a noisy
machine slows both alike; read the ratios.

llama.cpp is not part of tandem: build llama-server yourself outside this repository (e.g. from the llama.cpp copy
vendored in llama-cpp-python's sdist) and pass it with --llama-server. Example:
  python3 bench/make_random_gguf.py /tmp/q8.gguf --size 0.6b --type q8_0
  python3 bench/serve_bench.py --model /tmp/q8.gguf --llama-server ~/llama.cpp/build/bin/llama-server \\
      --clients 1,2,4,8 --parallel 4 --threads 2
"""
import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS = ("the agent reads the page then calls a tool and writes a short note about what it found while the user "
         "waits for slides on the main features of the model family").split()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def text_of(n_words, seed):
    return " ".join(WORDS[(seed * 7 + i * 3) % len(WORDS)] for i in range(n_words))


class Server:
    def __init__(self, name, cmd, port):
        self.name, self.cmd, self.port = name, cmd, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"serve_bench: {self.name} exited with {self.proc.returncode}: {' '.join(self.cmd)}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (OSError, urllib.error.HTTPError):
                pass
            time.sleep(0.2)
        sys.exit(f"serve_bench: {self.name} did not become healthy: {' '.join(self.cmd)}")

    def _drain(self):
        for _ in self.proc.stderr:
            pass

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def stream_completion(url, prompt, max_tokens):
    """One streamed completion: (time to first token, time of the last token, tokens, text), times from the send."""
    body = {"model": "bench", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    t_first = t_last = None
    n_chunks, usage, text = 0, None, []
    with urllib.request.urlopen(req, timeout=3600) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk.get("choices", []):
                if "text" in c and c.get("finish_reason") is None:  # a token (its text may be empty: random vocab)
                    now = time.perf_counter() - t0
                    t_first = now if t_first is None else t_first
                    t_last = now
                    n_chunks += 1
                    text.append(c["text"])
    n = usage["completion_tokens"] if usage else n_chunks
    return t_first or 0.0, t_last or 0.0, n, "".join(text)


def concurrency_round(server, n_clients, prompt_words, max_tokens, round_index):
    results = [None] * n_clients

    def client(i):
        results[i] = stream_completion(server.url, text_of(prompt_words, round_index * 100 + i), max_tokens)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    tokens = sum(r[2] for r in results)
    ttft = [r[0] for r in results]
    tpot = [(r[1] - r[0]) / (r[2] - 1) for r in results if r[2] > 1]
    return tokens / wall, ttft, tpot


def agent_replay(server, steps, max_tokens, system_words):
    tools = ("Tools: web_search(query) returns notes; python(code) runs code and returns its output. "
             + text_of(system_words, 1))
    history = f"System: {tools}\nUser: summarise the key features of the model family as slides.\nAssistant:"
    latencies = []
    for step in range(steps):
        t0 = time.perf_counter()
        _, _, _, answer = stream_completion(server.url, history, max_tokens)
        latencies.append(time.perf_counter() - t0)
        history += answer + f"\nTool result {step}: " + text_of(40, step + 2) + "\nAssistant:"
    return latencies


def pct(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="GGUF served by every server")
    ap.add_argument("--draft", help="a draft GGUF: each server also runs with it (tandem -md, llama-server -md)")
    ap.add_argument("--tandem", default=str(REPO / "build" / "tandem"))
    ap.add_argument("--llama-server", help="llama.cpp's llama-server (built outside the repo); omit to run tandem only")
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("--parallel", type=int, default=4, help="slots of each server")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=4096, help="context per slot")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt-words", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8, help="agent replay steps (0: skip the replay)")
    ap.add_argument("--step-tokens", type=int, default=32, help="tokens per agent step")
    ap.add_argument("--system-words", type=int, default=600, help="length of the agent's system prompt")
    a = ap.parse_args()
    clients = [int(x) for x in a.clients.split(",")]

    configs = []  # (label, command builder)
    drafts = [None] + ([a.draft] if a.draft else [])
    for draft in drafts:
        suffix = " + draft" if draft else ""

        def tandem_cmd(port, draft=draft):
            cmd = [a.tandem, "serve", "-m", a.model, "--port", str(port), "--parallel", str(a.parallel),
                   "-t", str(a.threads), "--ctx", str(a.ctx)]
            return cmd + (["-md", draft] if draft else [])
        configs.append(("tandem" + suffix, tandem_cmd))
        if a.llama_server:
            def llama_cmd(port, draft=draft):
                cmd = [a.llama_server, "-m", a.model, "--port", str(port), "-np", str(a.parallel),
                       "-t", str(a.threads), "-c", str(a.ctx * a.parallel), "--no-warmup"]
                return cmd + (["-md", draft] if draft else [])
            configs.append(("llama-server" + suffix, llama_cmd))

    conc = {c[0]: {n: {"tps": [], "ttft": [], "tpot": []} for n in clients} for c in configs}
    replay = {c[0]: [] for c in configs}
    for r in range(a.rounds):
        for label, make in configs:
            port = free_port()
            with Server(label, make(port), port) as s:
                stream_completion(s.url, "warm up", 4)
                for n in clients:
                    print(f"round {r + 1}/{a.rounds}: {label}, {n} client(s) ...", file=sys.stderr)
                    tps, ttft, tpot = concurrency_round(s, n, a.prompt_words, a.max_tokens, r)
                    conc[label][n]["tps"].append(tps)
                    conc[label][n]["ttft"] += ttft
                    conc[label][n]["tpot"] += tpot
                if a.steps:
                    print(f"round {r + 1}/{a.rounds}: {label}, agent replay ...", file=sys.stderr)
                    replay[label].append(agent_replay(s, a.steps, a.step_tokens, a.system_words))

    print(f"model {a.model}, draft {a.draft or '-'}, {a.parallel} slots, {a.threads} threads, "
          f"{a.max_tokens} tokens per request, {a.rounds} rounds in turns")
    print("| server | clients | aggregate tok/s | TTFT p50 / p90 (ms) | time per token p50 / p90 (ms) |")
    print("|---|---:|---:|---:|---:|")
    for label, _ in configs:
        for n in clients:
            c = conc[label][n]
            print(f"| {label} | {n} | {statistics.median(c['tps']):.1f} | {1000 * pct(c['ttft'], .5):.0f} / "
                  f"{1000 * pct(c['ttft'], .9):.0f} | {1000 * pct(c['tpot'], .5):.1f} / {1000 * pct(c['tpot'], .9):.1f} |")
    if a.llama_server:
        for draft in drafts:
            suffix = " + draft" if draft else ""
            t, l = conc["tandem" + suffix], conc["llama-server" + suffix]
            ratios = ", ".join(f"N={n}: {statistics.median(t[n]['tps']) / statistics.median(l[n]['tps']):.2f}x"
                               for n in clients)
            print(f"tandem{suffix} / llama-server{suffix} aggregate tok/s: {ratios}")
    if a.steps:
        print()
        print("| server | agent replay total (s) | per step (s), median over rounds |")
        print("|---|---:|---|")
        for label, _ in configs:
            totals = [sum(x) for x in replay[label]]
            per_step = [statistics.median(x[i] for x in replay[label]) for i in range(a.steps)]
            print(f"| {label} | {statistics.median(totals):.2f} | {' '.join(f'{v:.2f}' for v in per_step)} |")
        if a.llama_server:
            for draft in drafts:
                suffix = " + draft" if draft else ""
                t = statistics.median(sum(x) for x in replay["tandem" + suffix])
                l = statistics.median(sum(x) for x in replay["llama-server" + suffix])
                print(f"agent replay: llama-server{suffix} / tandem{suffix} total time: {l / t:.2f}x")


if __name__ == "__main__":
    main()
