"""docs/deploy.md's setup, for real: two `tandem serve` replicas behind Debian's nginx on loopback, requests routed by
`hash $http_x_session_id consistent`. Checked: a session always reaches the same replica (its KV cache holds the
session's history), sessions spread over both, a stream passes through the proxy intact, a stopped replica's sessions
fail over to the other, and /metrics answers on both replicas."""
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest
from serve_process import Server

MODEL = "tied_gqa2"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, session=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/json"}
    if session:
        headers["X-Session-Id"] = session
    conn.request("POST" if body is not None else "GET", path, body=json.dumps(body) if body is not None else None,
                 headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def served_by(port, session):
    status, data = get(port, "/v1/models", session)
    assert status == 200, data
    return json.loads(data)["data"][0]["id"]


@pytest.fixture
def cluster(tandem_bin, models_dir, tmp_path):
    if not os.path.exists(NGINX):
        pytest.fail("nginx is needed (scripts/setup.sh installs Debian's nginx-light)")
    replicas = {}
    for alias in ("replica-a", "replica-b"):
        srv = Server(tandem_bin, models_dir / MODEL, tmp_path, "--alias", alias, "--parallel", "2")
        replicas[alias] = (srv, int(srv.url.rstrip("/").rsplit(":", 1)[1]))
    port = free_port()
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;" for _, p in replicas.values())
    conf.write_text(f"""daemon off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/logs/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy;
  fastcgi_temp_path {tmp_path}/fcgi; uwsgi_temp_path {tmp_path}/uwsgi; scgi_temp_path {tmp_path}/scgi;
  upstream tandem {{
    hash $http_x_session_id consistent;
{servers}
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://tandem;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 600s;
      proxy_next_upstream error timeout http_502 http_503;
    }}
  }}
}}
""")
    nginx = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf)], stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if nginx.poll() is not None:
                pytest.fail("nginx did not start: " + nginx.stderr.read())
            time.sleep(0.1)
    yield port, replicas
    nginx.terminate()
    nginx.wait(timeout=30)
    for srv, _ in replicas.values():
        srv.stop(check=True)


def test_sessions_stick_spread_and_fail_over(cluster):
    port, replicas = cluster
    sessions = [f"session-{i}" for i in range(24)]
    owner = {s: served_by(port, s) for s in sessions}
    for s in sessions:  # affinity: every later request of a session reaches the same replica
        for _ in range(2):
            assert served_by(port, s) == owner[s]
    assert set(owner.values()) == {"replica-a", "replica-b"}  # both replicas get sessions

    # a streamed chat answer through the proxy equals the replica's own non-streamed answer
    s = sessions[0]
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "temperature": 0, "max_tokens": 8}
    status, data = get(port, "/v1/chat/completions", s, dict(body, stream=True))
    assert status == 200
    events = [line[6:] for line in data.decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    streamed = "".join((c["choices"][0]["delta"].get("content") or "") for c in map(json.loads, events[:-1])
                       if c.get("choices"))
    direct_port = replicas[owner[s]][1]
    status, data = get(direct_port, "/v1/chat/completions", None, body)
    assert status == 200
    assert streamed == (json.loads(data)["choices"][0]["message"]["content"] or "")

    # /metrics on both replicas: Prometheus text that counts what each served
    for alias, (_, p) in replicas.items():
        with urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=10) as r:
            text = r.read().decode()
        assert re.search(r"^vllm:num_requests_running(\{[^}]*\})? 0(\.0+)?$", text, re.M), text[:2000]
        assert re.search(r"^vllm:num_requests_waiting(\{[^}]*\})? 0(\.0+)?$", text, re.M)

    # failover: stop the replica that owns session s; its sessions move to the other one
    stopped = owner[s]
    srv, _ = replicas[stopped]
    srv.proc.terminate()
    assert srv.proc.wait(timeout=60) == 0
    other = "replica-b" if stopped == "replica-a" else "replica-a"
    for t in sessions:
        assert served_by(port, t) == (other if owner[t] == stopped else owner[t])
    status, data = get(port, "/v1/chat/completions", s, body)
    assert status == 200 and json.loads(data)["model"] in ("m", other)
