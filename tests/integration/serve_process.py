"""serve_process.py — a `tandem serve` process for the integration tests (test_serve.py, test_serve_clients.py,
test_chat_page.py, test_deploy_nginx.py): started on a free port, ready when /health says so, stopped by SIGTERM."""
import os
import re
import signal
import subprocess
import time

import httpx
import openai
import pytest
from prometheus_client import parser as prometheus_parser


class Server:
    """A `tandem serve` process on a free port; stderr goes to a file (read for the URL, shown on failure)."""

    def __init__(self, tandem_bin, model, tmp_path, *flags, env=None):
        self.log_path = tmp_path / f"serve-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "w")
        full_env = {k: v for k, v in os.environ.items() if k != "TANDEM_API_KEY"}  # the test's key or none
        full_env.update(env or {})
        self.proc = subprocess.Popen([str(tandem_bin), "serve", "-m", str(model), "--port", "0", "-t", "1",
                                      *[str(f) for f in flags]], stdout=subprocess.DEVNULL, stderr=self.log,
                                     env=full_env)
        deadline = time.monotonic() + 120
        self.url = None
        while self.url is None:
            m = re.search(r"listening on (http://\S+)", self.log_path.read_text())
            if m:
                self.url = m.group(1)
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"tandem serve did not start:\n{self.log_path.read_text()}", pytrace=False)
            else:
                time.sleep(0.02)
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"tandem serve never became ready:\n{self.log_path.read_text()}", pytrace=False)
            time.sleep(0.02)

    def client(self, api_key="unused", **kw):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0, timeout=120, **kw)

    def metrics(self):
        text = httpx.get(self.url + "/metrics", timeout=10).text
        out = {}
        for family in prometheus_parser.text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def stderr(self):
        return self.log_path.read_text()

    def stop(self, check=False):
        """Ends the server. check: by SIGTERM, which must drain and exit 0 (under ASan, LeakSanitizer then checks
        that everything was freed); either way the log must hold no sanitizer report."""
        rc = None
        check = check and self.proc.poll() is None  # a test that ended it checked its exit itself
        if check:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.close()
        log = self.stderr()
        assert not re.search(r"Sanitizer|runtime error:", log), log
        if check:
            assert rc == 0, f"exit status {rc} after SIGTERM:\n{log}"
