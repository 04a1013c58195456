"""Tiny model folders and a launched app for tests/test_app.py and tests/test_browser.py.

Not a test module: plain helpers, imported by both (the tests folder is on sys.path under pytest)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import torch

from lstmgen.core.model import LSTMLanguageModel
from lstmgen.core.records import GPT2_RANKS
from lstmgen.core.tokenizers import CharTokenizer, SubwordTokenizer, WordTokenizer, basic_english

CHAR_TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n" * 30
SUBWORD_TEXT = "ROMEO:\nBut soft, what light through yonder window breaks? It is the east.\n" * 10
WORD_TEXT = "Harry looked at the castle. Hermione said that the castle was dark and cold. Dumbledore smiled. " * 10


def _metrics(preset: str) -> dict:
    figure = {"loss": 2.9, "perplexity": 18.2, "bits_per_char": None}
    return {"preset": preset, "epochs": [{"epoch": 1, "train_loss": 3.0, "val_loss": 2.9},
                                        {"epoch": 2, "train_loss": 2.5, "val_loss": 2.6}],
            "final": {"val_float": figure, "val_int8": dict(figure, loss=2.91, perplexity=18.4)}}


def _fit(model: LSTMLanguageModel, ids: list[int], steps: int = 120, seq_len: int = 32) -> None:
    """A few Adam steps on repeating text: the model becomes confident, so its int8 copy chooses alike."""
    data = torch.tensor(ids)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq_len - 1, (8,), generator=generator)
        x = torch.stack([data[s : s + seq_len] for s in starts])
        y = torch.stack([data[s + 1 : s + seq_len + 1] for s in starts])
        logits, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def build_model_folders(root: Path) -> dict[str, Path]:
    """char (briefly trained), subword and word (untrained: their samples vary a lot with the seed)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny steps: more threads only contend on a busy machine
    try:
        return _build(root)
    finally:
        torch.set_num_threads(threads)


def _build(root: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    tokenizers = {
        "char": CharTokenizer.build(CHAR_TEXT),
        "subword": SubwordTokenizer.build(SUBWORD_TEXT, GPT2_RANKS),
        "word": WordTokenizer.build(basic_english(WORD_TEXT), min_freq=1),
    }
    presets = {"char": "char-shakespeare", "subword": "subword-shakespeare", "word": "word-harrypotter"}
    folders = {}
    for name, tokenizer in tokenizers.items():
        model = LSTMLanguageModel(tokenizer.vocab_size, embed_size=16, hidden_size=32, num_layers=1, dropout=0.0)
        if name == "char":
            _fit(model, tokenizer.encode(CHAR_TEXT).ids)
        folder = root / name
        model.eval().save_pretrained(folder)
        tokenizer.save(folder)
        (folder / "metrics.json").write_text(json.dumps(_metrics(presets[name])))
        folders[name] = folder
    return folders


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, server, timeout_s: float = 120.0) -> None:
    """Wait until the app started as the subprocess `server` answers HTTP 200 at `url`; fail if it exits first."""
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert server.poll() is None, "the app exited before it answered"
        assert time.monotonic() < deadline, f"the app did not answer within {timeout_s:g} s"
        time.sleep(0.25)


def launch(demo) -> str:
    """Launch on loopback without blocking, with the app's own limits (lstmgen.app.launch); returns the local URL."""
    from lstmgen.app import launch as launch_app

    port = free_port()
    launch_app(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return f"http://127.0.0.1:{port}/"


# --------------------------------------------------------------------------- a stand-in Hub on 127.0.0.1


def git_blob_id(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class StandInHub:
    """The part of the Hub's HTTP API that huggingface_hub (2.x) uses to download a snapshot and to upload a
    folder, each request logged in `requests` as (method, path) and its token in `authorizations`:

    GET  /api/whoami-v2                      the token's user ("visitor"); 401 for a token not in TOKENS
    POST /api/repos/create                   a repo on the user's account (a write token only, as every POST)
    POST /api/models/{repo}/preupload/{rev}  every file is uploaded "regular" (base64 in the commit)
    POST /api/models/{repo}/commit/{rev}     a new commit: the files before it, with the commit's own
    POST /api/models/{repo}/tag/{rev}        a tag on the commit `rev` names
    GET  /api/models/{repo}/revision/{rev}   repo info: "sha" (the commit `rev` names) and "siblings"
    GET  /api/models/{repo}/tree/{commit}    the file listing (path, size, git oid, LFS sha256)
    HEAD /{repo}/resolve/{rev}/{file}        X-Repo-Commit, ETag / X-Linked-Etag, Content-Length
    GET  /{repo}/resolve/{rev}/{file}        the bytes
    A revision is a commit, a tag or "main" (the latest commit). A dataset repo is held as "datasets/{repo}" and
    answers GET /api/datasets/{repo}/revision/{rev} (its info) the same way."""

    TOKENS = {"hf_write_token": "write", "hf_read_token": "read"}
    USER = "visitor"

    def __init__(self):
        import http.server
        import threading

        self.repos: dict[str, dict] = {}  # repo id -> {"commits": [(commit, files)], "tags": {tag: commit}}
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.answer(self, body=False)

            def do_GET(self):
                hub.answer(self, body=True)

            def do_POST(self):
                hub.answer_post(self)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # ------------------------------------------------------------------ what tests call

    def add_repo(self, repo_id: str, folder: Path) -> str:
        """Commit a folder's files as the repo's latest commit; returns the commit."""
        return self.commit(repo_id, {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()})

    def commit(self, repo_id: str, files: dict[str, bytes]) -> str:
        import hashlib

        repo = self.repos.setdefault(repo_id, {"commits": [], "tags": {}})
        before = dict(repo["commits"][-1][1]) if repo["commits"] else {}
        after = {**before, **files}
        commit = hashlib.sha1(repo_id.encode() + str(len(repo["commits"])).encode() +
                              b"".join(after[name] for name in sorted(after))).hexdigest()
        repo["commits"].append((commit, after))
        return commit

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of a repo at a revision, as the Hub holds them."""
        return dict(self.snapshot(repo_id, revision)[1])

    def snapshot(self, repo_id: str, revision: str):
        """(commit, files) that `revision` names, or None."""
        repo = self.repos.get(repo_id)
        if repo is None or not repo["commits"]:
            return None
        commit = repo["tags"].get(revision, revision)
        if revision == "main":
            return repo["commits"][-1]
        return next((c for c in repo["commits"] if c[0] == commit), None)

    def requested_files(self) -> list[str]:
        from urllib.parse import unquote, urlsplit

        return [unquote(urlsplit(path).path).rsplit("/", 1)[-1] for _, path in self.requests if "/resolve/" in path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ the HTTP side

    @staticmethod
    def is_lfs(name: str) -> bool:
        return name.endswith((".safetensors", ".bin"))

    def role(self, handler) -> str | None:
        token = handler.headers.get("authorization", "").removeprefix("Bearer ")
        self.authorizations.append(token)
        return self.TOKENS.get(token)

    def answer(self, handler, body: bool):
        import hashlib
        import json
        from urllib.parse import unquote, urlsplit

        self.requests.append((handler.command, handler.path))
        parts = [unquote(p) for p in urlsplit(handler.path).path.strip("/").split("/")]
        if parts[:2] in (["api", "models"], ["api", "datasets"]) and len(parts) == 4:
            parts += ["revision", "main"]  # a repo's info without a revision: its main branch
        if parts[:2] == ["api", "whoami-v2"]:
            role = self.role(handler)
            if role is None:
                return self.send(handler, 401, b'{"error": "Invalid credentials"}', {}, body)
            answer = {"name": self.USER, "type": "user", "auth": {"accessToken": {"role": role}}}
            return self.send(handler, 200, json.dumps(answer).encode(), {"Content-Type": "application/json"}, body)
        if parts[:2] in (["api", "models"], ["api", "datasets"]) and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            repo_id, what, revision = "/".join(parts[2:4]), parts[4], parts[5]
            repo_id = f"datasets/{repo_id}" if parts[1] == "datasets" else repo_id
            found = self.snapshot(repo_id, revision)
            if found is None:
                error = "RepoNotFound" if repo_id not in self.repos else "RevisionNotFound"
                return self.send(handler, 404, b"{}", {"X-Error-Code": error}, body)
            commit, files = found
            if what == "revision":
                info = {"id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
                        "siblings": [{"rfilename": name} for name in files]}
                return self.send(handler, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
            tree = []
            for name, data in files.items():
                entry = {"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)}
                if self.is_lfs(name):
                    entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                tree.append(entry)
            return self.send(handler, 200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, body)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id, revision, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            found = self.snapshot(repo_id, revision)
            if found is None:
                return self.send(handler, 404, b"", {"X-Error-Code": "RepoNotFound"}, body)
            commit, files = found
            if name not in files:
                return self.send(handler, 404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, body)
            data = files[name]
            headers = {"X-Repo-Commit": commit, "ETag": f'"{git_blob_id(data)}"'}
            if self.is_lfs(name):
                headers.update({"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Linked-Size": str(len(data))})
            return self.send(handler, 200, data, headers, body)
        return self.send(handler, 404, b"", {}, body)

    def answer_post(self, handler):
        import base64
        import json
        from urllib.parse import unquote, urlsplit

        self.requests.append((handler.command, handler.path))
        data = handler.rfile.read(int(handler.headers.get("content-length", 0)))
        role = self.role(handler)
        if role != "write":
            return self.reply(handler, 403 if role else 401, {"error": "You don't have the rights to write here"})
        path = urlsplit(handler.path).path
        if path == "/api/validate-yaml":  # a model card's metadata
            return self.reply(handler, 200, {"errors": [], "warnings": []})
        if path == "/api/repos/create":
            asked = json.loads(data)
            repo_id = f"{asked.get('organization') or self.USER}/{asked['name']}"
            self.repos.setdefault(repo_id, {"commits": [], "tags": {}})
            return self.reply(handler, 200, {"url": f"{self.url}/{repo_id}"})
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:2] != ["api", "models"] or len(parts) < 6:
            return self.reply(handler, 404, {"error": f"no {path}"})
        repo_id, what, revision = "/".join(parts[2:4]), parts[4], parts[5]
        if repo_id not in self.repos:
            return self.reply(handler, 404, {"error": "Repository not found"})
        if what == "preupload":
            files = json.loads(data)["files"]
            return self.reply(handler, 200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                        "shouldIgnore": False} for f in files]})
        if what == "commit":
            files = {}
            for line in data.decode().splitlines():
                item = json.loads(line)
                if item.get("key") == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            commit = self.commit(repo_id, files)
            return self.reply(handler, 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{commit}", "commitOid": commit})
        if what == "tag":
            found = self.snapshot(repo_id, revision)
            if found is None:
                return self.reply(handler, 404, {"error": "Revision not found"})
            self.repos[repo_id]["tags"][json.loads(data)["tag"]] = found[0]
            return self.reply(handler, 200, {})
        return self.reply(handler, 404, {"error": f"no {path}"})

    @staticmethod
    def reply(handler, status: int, answer: dict):
        import json

        StandInHub.send(handler, status, json.dumps(answer).encode(), {"Content-Type": "application/json"}, True)

    @staticmethod
    def send(handler, status: int, data: bytes, headers: dict, body: bool):
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)
