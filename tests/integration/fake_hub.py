"""fake_hub.py — a local HTTP server imitating the Hugging Face hub's URLs that `tandem pull` uses, over repositories
of small in-memory files, with the faults the tests need (a connection dropped mid-file, a corrupted file, Range
ignored, a private repository).

URLs, as huggingface.co answers them (huggingface_hub's file_download.py / hf_api.py read the same):
  GET  /api/models/ORG/NAME/revision/REV[?blobs=true]  {"id", "sha", "siblings": [{"rfilename", "size", "blobId",
                                                        "lfs": {"sha256", "size", "pointerSize"}}]}; 404 unknown
                                                        repository or revision; 401 private without the token
  GET|HEAD /ORG/NAME/resolve/REV/PATH                   LFS file: 302 to http://localhost:PORT/cdn/<sha256> (another
                                                        host name, like the hub's CDN) with X-Repo-Commit,
                                                        X-Linked-Etag ("<sha256>"), X-Linked-Size; other file: 200
                                                        with ETag "<git blob id>", X-Repo-Commit; Range honoured
  GET|HEAD /cdn/<sha256>                                the LFS file's bytes, Range honoured, the CDN's own ETag
"""
import hashlib
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, repo_id, files, lfs=(), token=None, commit=None):
        self.repo_id = repo_id
        self.files = dict(files)          # path -> bytes
        self.lfs = set(lfs)               # paths stored in LFS
        self.token = token                # required bearer token, or None (public)
        self.commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()

    def sha256(self, path):
        return hashlib.sha256(self.files[path]).hexdigest()

    def blob_id(self, path):
        """The name huggingface_hub gives the file's blob: the LFS sha256, else the git blob id."""
        return self.sha256(path) if path in self.lfs else git_blob_id(self.files[path])

    def info(self):
        siblings = []
        for path, data in self.files.items():
            s = {"rfilename": path, "size": len(data), "blobId": git_blob_id(data)}
            if path in self.lfs:
                s["lfs"] = {"sha256": self.sha256(path), "size": len(data), "pointerSize": 134}
            siblings.append(s)
        return {"id": self.repo_id, "modelId": self.repo_id, "sha": self.commit, "private": self.token is not None,
                "siblings": siblings}


class FakeHub:
    """with FakeHub() as hub: hub.add(Repo(...)); hub.url is the endpoint. Faults (each reset by hub.reset()):
    drop_after[(repo_id, path)] = n: the next transfer of that file sends n bytes, then closes the connection;
    corrupt: {(repo_id, path)}: one byte of the served file flipped (metadata unchanged);
    ignore_range: answer Range requests with the whole file (200);
    bare_info: the model info lists only file names (as without ?blobs=true): ids come from the resolve URLs' ETags.
    requests: (method, path, headers dict) of every request, in order."""

    def __init__(self):
        self.repos = {}
        self.lock = threading.Lock()
        self.reset()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_GET(self):
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # the LFS redirects go to another host name, as the hub's go to its CDN (clients drop the token there)
        self.cdn_url = f"http://localhost:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reset(self):
        with self.lock:
            self.drop_after = {}
            self.corrupt = set()
            self.ignore_range = False
            self.bare_info = False
            self.requests = []

    def add(self, repo):
        self.repos[repo.repo_id] = repo
        return repo

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def ranges(self, path_suffix):
        """The Range headers of the GETs whose path ends with path_suffix."""
        with self.lock:
            return [h.get("range") for m, p, h in self.requests if m == "GET" and p.endswith(path_suffix)]

    def resolve_gets(self):
        with self.lock:
            return [p for m, p, h in self.requests if m == "GET" and "/resolve/" in p]

    # ---- answers ----

    def _send(self, h, code, headers=(), body=b"", head=False):
        h.send_response(code)
        headers = dict(headers)
        headers.setdefault("Content-Length", str(len(body)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if not head and body:
            h.wfile.write(body)

    def _json(self, h, code, obj, head=False, extra=()):
        self._send(h, code, {"Content-Type": "application/json", **dict(extra)}, json.dumps(obj).encode(), head)

    def _authorized(self, h, repo):
        return repo.token is None or h.headers.get("Authorization") == f"Bearer {repo.token}"

    def _handle(self, h, head):
        url = urllib.parse.urlsplit(h.path)
        path = urllib.parse.unquote(url.path)
        with self.lock:
            self.requests.append(("HEAD" if head else "GET", path, {k.lower(): v for k, v in h.headers.items()}))
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/(.+)", path)
        if m:
            return self._info(h, m.group(1), m.group(2), head)
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m:
            return self._resolve(h, m.group(1), m.group(2), m.group(3), head)
        m = re.fullmatch(r"/cdn/([0-9a-f]{64})", path)
        if m:
            for repo in self.repos.values():
                for p in repo.lfs:
                    if repo.sha256(p) == m.group(1):
                        return self._content(h, repo, p, {"ETag": '"cdn-' + m.group(1)[:16] + '"'}, head)
        self._json(h, 404, {"error": "not found"}, head)

    def _repo_or_error(self, h, repo_id, revision, head):
        repo = self.repos.get(repo_id)
        if repo is None:
            self._json(h, 404, {"error": "Repository not found"}, head, {"X-Error-Code": "RepoNotFound"})
            return None
        if not self._authorized(h, repo):
            self._json(h, 401, {"error": "Invalid credentials in Authorization header"}, head)
            return None
        if revision not in ("main", repo.commit):
            self._json(h, 404, {"error": f"Revision Not Found for url: {revision}"}, head,
                       {"X-Error-Code": "RevisionNotFound"})
            return None
        return repo

    def _info(self, h, repo_id, revision, head):
        repo = self._repo_or_error(h, repo_id, revision, head)
        if repo is not None:
            info = repo.info()
            if self.bare_info:
                info["siblings"] = [{"rfilename": s["rfilename"]} for s in info["siblings"]]
            self._json(h, 200, info, head)

    def _resolve(self, h, repo_id, revision, file, head):
        repo = self._repo_or_error(h, repo_id, revision, head)
        if repo is None:
            return
        if file not in repo.files:
            return self._json(h, 404, {"error": "Entry not found"}, head,
                              {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.commit})
        data = repo.files[file]
        ids = {"X-Repo-Commit": repo.commit}
        if file in repo.lfs:
            sha = repo.sha256(file)
            ids.update({"X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)), "ETag": f'"{sha}"',
                        "Location": f"{self.cdn_url}/cdn/{sha}"})
            return self._send(h, 302, ids, b"", head)
        ids["ETag"] = f'"{git_blob_id(data)}"'
        self._content(h, repo, file, ids, head)

    def _content(self, h, repo, file, headers, head):
        data = repo.files[file]
        key = (repo.repo_id, file)
        with self.lock:
            if key in self.corrupt and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            drop = None if head else self.drop_after.pop(key, None)
            ignore_range = self.ignore_range
        headers = dict(headers, **{"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"})
        start = 0
        rng = h.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and not ignore_range:
            start = int(m.group(1))
            if start >= len(data):
                headers["Content-Range"] = f"bytes */{len(data)}"
                return self._send(h, 416, headers, b"", head)
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        code = 206 if start or (m and not ignore_range) else 200
        if drop is None:
            return self._send(h, code, headers, body, head)
        # the connection dies after `drop` bytes of a response that promised all of them
        h.send_response(code)
        headers["Content-Length"] = str(len(body))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body[:drop])
        h.wfile.flush()
        h.close_connection = True
        h.connection.shutdown(2)
