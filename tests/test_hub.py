"""Where a model comes from and what is refused.

`resolve(name)` takes a local folder, else the Hub (through huggingface_hub's real `snapshot_download`
and cache), else the weights bundled with the package; it never waits long for the Hub, never fetches
or unpickles a pickle, and a damaged folder is refused with a message that names the file at fault.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is imported, so everything that
talks to a (local, fake) Hub runs in a child process with its own environment.
"""

import hashlib
import http.server
import json
import os
import pickle
import random
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import torch

from lstmgen.hub import ModelLoadError, load_model_folder
from lstmgen.core.model import LSTMLanguageModel
from lstmgen.core.tokenizers import CharTokenizer

PROJECT = Path(__file__).resolve().parent.parent
PRESET = "char-shakespeare"
TEXT = "ab cd ef\ngh ij kl\n"
PROBE = [0, 1, 2, 3, 4, 5, 6, 1]  # token ids whose logits are compared


# --------------------------------------------------------------------------- model folders


def save_tiny_model(folder: Path, seed: int = 0, **metrics) -> LSTMLanguageModel:
    """A tiny character model as a repo holds it: config.json, model.safetensors, tokenizer.json, metrics.json."""
    tokenizer = CharTokenizer.build(TEXT)
    torch.manual_seed(seed)
    model = LSTMLanguageModel(tokenizer.vocab_size, embed_size=8, hidden_size=16, num_layers=1).eval()
    model.save_pretrained(folder)
    tokenizer.save(folder)
    (folder / "metrics.json").write_text(json.dumps({"preset": PRESET, **metrics}))
    return model


def logits_of(model) -> list:
    with torch.no_grad():
        return model(torch.tensor([PROBE]))[0].tolist()


class UnpickleMarker:
    """Unpickling this object creates `path`: proof that a pickle was executed."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def pickled_weights(path: Path, marker: Path, model: LSTMLanguageModel) -> None:
    """A real torch.save checkpoint, with a payload that leaves `marker` behind if anyone unpickles it."""
    torch.save({"state_dict": model.state_dict(), "payload": UnpickleMarker(marker)}, path)


# --------------------------------------------------------------------------- a fake Hub on 127.0.0.1


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """The part of the Hub's HTTP API that snapshot_download uses (read from huggingface_hub 2.4.0):

    GET  /api/models/{repo}/revision/{rev}   repo info: "sha" (the commit) and "siblings"
    GET  /api/models/{repo}/tree/{commit}    the file listing (path, size, git oid, LFS sha256)
    HEAD /{repo}/resolve/{commit}/{file}     X-Repo-Commit, ETag / X-Linked-Etag, Content-Length
    GET  /{repo}/resolve/{commit}/{file}     the bytes
    Every request is logged in `requests` as (method, path).
    """

    def __init__(self):
        self.repos: dict[str, tuple[str, dict[str, bytes]]] = {}
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.answer(self, body=False)

            def do_GET(self):
                hub.answer(self, body=True)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_repo(self, repo_id: str, folder: Path) -> str:
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        commit = hashlib.sha1(repo_id.encode() + b"".join(files.values())).hexdigest()
        self.repos[repo_id] = (commit, files)
        return commit

    def requested_files(self) -> list[str]:
        return [unquote(urlsplit(path).path).rsplit("/", 1)[-1] for _, path in self.requests if "/resolve/" in path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def is_lfs(name: str) -> bool:
        return name.endswith((".safetensors", ".bin"))

    def answer(self, handler, body: bool):
        self.requests.append((handler.command, handler.path))
        parts = unquote(urlsplit(handler.path).path).strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            repo_id, what = "/".join(parts[2:4]), parts[4]
            if repo_id not in self.repos:
                return self.send(handler, 404, b"{}", {"X-Error-Code": "RepoNotFound"}, body)
            commit, files = self.repos[repo_id]
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
            repo_id, name = "/".join(parts[:2]), "/".join(parts[4:])
            if repo_id not in self.repos:
                return self.send(handler, 404, b"", {"X-Error-Code": "RepoNotFound"}, body)
            commit, files = self.repos[repo_id]
            if name not in files:
                return self.send(handler, 404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, body)
            data = files[name]
            headers = {"X-Repo-Commit": commit, "ETag": f'"{git_blob_id(data)}"'}
            if self.is_lfs(name):
                headers.update({"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Linked-Size": str(len(data))})
            return self.send(handler, 200, data, headers, body)
        return self.send(handler, 404, b"", {}, body)

    @staticmethod
    def send(handler, status: int, data: bytes, headers: dict, body: bool):
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)


@pytest.fixture
def fake_hub():
    hub = FakeHub()
    yield hub
    hub.close()


class BlackHole:
    """A TCP server that accepts connections and never answers."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections.append(connection)

    def close(self):
        self.socket.close()
        for connection in self.connections:
            connection.close()


# --------------------------------------------------------------------------- resolve() in a child process

RESOLVE = r"""
import json, sys, time
from pathlib import Path
import torch
import lstmgen.hub as hub

args = json.loads(sys.argv[1])
if args.get("pretrained"):
    import lstmgen.core.files
    lstmgen.core.files.PRETRAINED_DIR = Path(args["pretrained"])
started = time.perf_counter()
loaded = hub.resolve(args["name"])
elapsed = time.perf_counter() - started
with torch.no_grad():
    logits = loaded.model(torch.tensor([args["probe"]]))[0].tolist()
print(json.dumps({"source": loaded.source, "folder": str(loaded.folder), "fallback_reason": loaded.fallback_reason,
                  "preset": loaded.preset, "elapsed": elapsed, "logits": logits}))
"""


def child_env(hf_home: Path, **overrides) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "LSTMGEN_"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               GRADIO_ANALYTICS_ENABLED="False", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    env.update(overrides)
    return env


def resolve_in_child(name: str, env: dict, pretrained: Path | None = None, timeout: float = 90) -> dict:
    args = json.dumps({"name": name, "pretrained": str(pretrained) if pretrained else None, "probe": PROBE})
    result = subprocess.run([sys.executable, "-c", RESOLVE, args], env=env, cwd=PROJECT, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def bundled(tmp_path) -> tuple[Path, LSTMLanguageModel]:
    """A stand-in for lstmgen/pretrained/: a folder holding a model folder named after the preset."""
    pretrained = tmp_path / "pretrained"
    model = save_tiny_model(pretrained / PRESET, seed=1)
    return pretrained, model


# --------------------------------------------------------------------------- the Hub, over HTTP


def test_resolve_pulls_a_repo_over_http_through_the_hub_cache_and_never_fetches_pickles(tmp_path, fake_hub):
    repo = tmp_path / "repo"
    original = save_tiny_model(repo)
    # The repo also holds a pickled copy of the weights, as many repos do: it must not be fetched.
    pickled_weights(repo / "pytorch_model.bin", tmp_path / "unpickled", original)
    commit = fake_hub.add_repo("someone/tiny", repo)

    hf_home = tmp_path / "hf_home"
    env = child_env(hf_home, HF_ENDPOINT=fake_hub.url, HF_HUB_OFFLINE="0")
    loaded = resolve_in_child("someone/tiny", env)

    assert loaded["source"] == f"Hub someone/tiny@{commit[:12]}"
    assert loaded["preset"] == PRESET  # metrics.json came along
    assert torch.equal(torch.tensor(loaded["logits"]), torch.tensor(logits_of(original)))
    # It went through huggingface_hub's cache: HF_HOME/hub/models--someone--tiny/snapshots/<commit>.
    snapshot = hf_home / "hub" / "models--someone--tiny" / "snapshots" / commit
    assert Path(loaded["folder"]) == snapshot
    assert (hf_home / "hub" / "models--someone--tiny" / "refs" / "main").read_text() == commit
    # The client was told about the pickle (the repo info and the file listing name it)...
    assert "pytorch_model.bin" in fake_hub.repos["someone/tiny"][1]
    assert [path for _, path in fake_hub.requests if path.startswith("/api/models/someone/tiny/")]
    # ...the safe files were downloaded, and no .bin/.pt was ever requested or written.
    requested = fake_hub.requested_files()
    assert {"model.safetensors", "config.json", "tokenizer.json", "metrics.json"} <= set(requested)
    assert not [name for name in requested if name.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    assert not list(hf_home.rglob("*.bin"))
    assert not (tmp_path / "unpickled").exists()


def test_a_repo_with_only_pickled_weights_falls_back_to_the_bundled_weights(tmp_path, fake_hub, bundled):
    pretrained, bundled_model = bundled
    repo = tmp_path / "repo"
    marker = tmp_path / "unpickled"
    model = save_tiny_model(repo)
    (repo / "model.safetensors").unlink()
    pickled_weights(repo / "pytorch_model.bin", marker, model)
    fake_hub.add_repo("someone/pickled", repo)

    hf_home = tmp_path / "hf_home"
    env = child_env(hf_home, HF_ENDPOINT=fake_hub.url, HF_HUB_OFFLINE="0",
                    LSTMGEN_REPO_CHAR_SHAKESPEARE="someone/pickled")
    loaded = resolve_in_child(PRESET, env, pretrained=pretrained)

    assert fake_hub.requested_files(), "the Hub was asked first"
    assert loaded["source"].startswith("bundled") and loaded["folder"] == str(pretrained / PRESET)
    assert "model.safetensors" in loaded["fallback_reason"]
    assert torch.equal(torch.tensor(loaded["logits"]), torch.tensor(logits_of(bundled_model)))
    assert "pytorch_model.bin" not in fake_hub.requested_files()
    assert not list(hf_home.rglob("*.bin"))
    assert not marker.exists()


def test_a_local_folder_with_only_a_pickle_is_refused_without_unpickling_it(tmp_path):
    folder = tmp_path / "model"
    marker = tmp_path / "unpickled"
    model = save_tiny_model(folder)
    (folder / "model.safetensors").unlink()
    pickled_weights(folder / "pytorch_model.bin", marker, model)

    with pytest.raises(ModelLoadError) as refused:
        load_model_folder(folder)
    assert "pickled" in str(refused.value) and "pytorch_model.bin" in str(refused.value)
    assert str(folder / "model.safetensors") in str(refused.value)
    assert not marker.exists()
    # The payload is live: unpickling it (here, the test's own object, never a file) leaves the marker.
    pickle.loads(pickle.dumps(UnpickleMarker(marker)))
    assert marker.exists()


# --------------------------------------------------------------------------- the Hub cache, offline


def test_a_repo_already_in_the_cache_loads_offline(tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    hf_home = tmp_path / "hf_home"
    storage = hf_home / "hub" / "models--owner--name"
    original = save_tiny_model(storage / "snapshots" / commit)
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(commit)

    loaded = resolve_in_child("owner/name", child_env(hf_home, HF_HUB_OFFLINE="1"))

    assert loaded["source"] == f"Hub owner/name@{commit[:12]}"
    assert Path(loaded["folder"]) == storage / "snapshots" / commit
    assert torch.equal(torch.tensor(loaded["logits"]), torch.tensor(logits_of(original)))


# --------------------------------------------------------------------------- a Hub that does not answer


def test_an_unreachable_hub_falls_back_to_the_bundled_weights_within_10_s(tmp_path, bundled):
    """Two ways the Hub is out of reach: a server that accepts the connection and never answers
    (huggingface_hub alone would wait for minutes), and a host name that does not resolve."""
    pretrained, bundled_model = bundled
    hole = BlackHole()
    endpoints = {"never answers": hole.url, "no such host": "http://nonexistent.invalid"}
    try:
        with ThreadPoolExecutor(len(endpoints)) as pool:  # side by side: each one waits on its own
            futures = {case: pool.submit(resolve_in_child, PRESET, pretrained=pretrained,
                                         env=child_env(tmp_path / case, HF_ENDPOINT=url, HF_HUB_OFFLINE="0"))
                       for case, url in endpoints.items()}
            loaded = {case: future.result() for case, future in futures.items()}
    finally:
        hole.close()
    assert hole.connections, "the Hub was tried"
    for case, result in loaded.items():
        assert result["source"].startswith("bundled"), case
        assert result["elapsed"] < 10, case
        assert torch.equal(torch.tensor(result["logits"]), torch.tensor(logits_of(bundled_model))), case
    assert "TimeoutError" in loaded["never answers"]["fallback_reason"]
    assert "did not answer" in loaded["never answers"]["fallback_reason"]
    assert loaded["no such host"]["fallback_reason"]


# --------------------------------------------------------------------------- damaged folders


def truncate_weights(folder: Path) -> str:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) - 100])
    return "model.safetensors"


def random_weights(folder: Path) -> str:
    (folder / "model.safetensors").write_bytes(random.Random(0).randbytes(4096))
    return "model.safetensors"


def config_sizes_disagree(folder: Path) -> str:
    config = json.loads((folder / "config.json").read_text())
    config["hidden_size"] *= 2
    (folder / "config.json").write_text(json.dumps(config))
    return "config.json"


def config_not_json(folder: Path) -> str:
    (folder / "config.json").write_text('{"vocab_size": 9,')
    return "config.json"


def tokenizer_missing(folder: Path) -> str:
    (folder / "tokenizer.json").unlink()
    return "tokenizer.json"


def tokenizer_vocabulary_disagrees(folder: Path) -> str:
    CharTokenizer.build(TEXT + "xyz").save(folder)
    return "tokenizer.json"


@pytest.mark.parametrize("damage", [truncate_weights, random_weights, config_sizes_disagree, config_not_json,
                                    tokenizer_missing, tokenizer_vocabulary_disagrees])
def test_a_damaged_folder_is_refused_with_the_file_at_fault_named(tmp_path, damage):
    folder = tmp_path / "model"
    save_tiny_model(folder)
    load_model_folder(folder)  # intact, it loads
    offending = damage(folder)
    with pytest.raises(ModelLoadError) as refused:
        load_model_folder(folder)
    assert str(folder / offending) in str(refused.value)
