"""A public Space keeps every visitor's secrets and the owner's. Tried as an attacker would: over HTTP only,
against `python app.py` started with a Space's environment (SYSTEM=spaces, SPACE_ID, the owner's HF_TOKEN
secret, OAuth settings) and HF_ENDPOINT pointing at a stand-in Hub on loopback that records every request
and its Authorization header. UI-only handlers are called through the browser's own route (queue/join with
the handler's fn_index): hiding an event from the API docs does not stop anyone calling it. A second client
plays the other visitor; X-Forwarded-For plays the Space's proxy, which appends the visitor's address."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from app_support import StandInHub, free_port, wait_until_serving
from lstmgen.core.operator_settings import ServerLimits

pytestmark = [pytest.mark.filterwarnings("ignore::Warning:gradio.*"),
              pytest.mark.filterwarnings("ignore::ResourceWarning")]

PROJECT = Path(__file__).resolve().parent.parent
OWNER_TOKEN = "hf_owner_secret_do_not_leak"
VISITOR_TEXT = Path(PROJECT / "data" / "tinyshakespeare.txt").read_text()[:20_000]
MAX_BYTES = 100_000  # the server's text limit in these tests (LSTMGEN_TRAIN_MAX_BYTES)
MAX_WAITING = 3
CALL_TIMEOUT_S = 120
SPACE_HOST = "owner-lstmgen.hf.space"
UPLOAD_KEEP_S = 4  # the server keeps an upload no training used this long (LSTMGEN_UPLOAD_KEEP_S)
DATASET_TIMEOUT_S = 20  # and reads a Hub dataset this long (LSTMGEN_TRAIN_DATASET_TIMEOUT_S)
UNREAD_KEEP_S = 8  # and keeps an answer nobody reads this long (LSTMGEN_UNREAD_KEEP_S)


VISITOR_TOKEN = "hf_mallory_own_token"  # a signed-in visitor's own token (their Hub account: mallory)


class RecordingHub:
    """A stand-in for huggingface.co: answers whoami for the signed-in visitor's token (401 otherwise), 404 to
    everything else, and records (method, path, Authorization) of every request, and each request's body."""

    def __init__(self):
        import http.server

        self.requests: list[tuple[str, str, str]] = []
        self.bodies: list[bytes] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self):
                authorization = self.headers.get("authorization", "")
                hub.requests.append((self.command, self.path, authorization))
                length = int(self.headers.get("content-length") or 0)
                hub.bodies.append(self.rfile.read(length) if length else b"")
                whoami = self.path.startswith("/api/whoami")
                if whoami and authorization == f"Bearer {VISITOR_TOKEN}":
                    body = json.dumps({"name": "mallory", "type": "user", "fullname": "Mallory"}).encode()
                    self.send_response(200)
                else:
                    body = json.dumps({"error": "Repository not found"}).encode()
                    self.send_response(401 if whoami else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_PUT = answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def saw_owner_token(self) -> bool:
        return any(OWNER_TOKEN in auth for _, _, auth in self.requests)


@pytest.fixture(scope="module")
def hub():
    hub = RecordingHub()
    yield hub
    hub.server.shutdown()


@pytest.fixture(scope="module")
def space(hub, tmp_path_factory):
    """`python app.py` as a Space runs it, with the owner's secret set. Yields (url, log path, Gradio's upload
    folder)."""
    port = free_port()
    log = tmp_path_factory.mktemp("space") / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "LSTMGEN_", "GRADIO_"))}
    env.update(SYSTEM="spaces", SPACE_ID="owner/lstmgen", SPACE_HOST=SPACE_HOST, HF_TOKEN=OWNER_TOKEN,
               HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path_factory.mktemp("hf_home")), HF_HUB_DISABLE_TELEMETRY="1",
               GRADIO_ANALYTICS_ENABLED="False", OAUTH_CLIENT_ID="space-client", OAUTH_CLIENT_SECRET="space-secret",
               OAUTH_SCOPES="openid profile contribute-repos", OPENID_PROVIDER_URL=hub.url,
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               LSTMGEN_TRAIN_MIN_SECONDS="1", LSTMGEN_TRAIN_MAX_BYTES=str(MAX_BYTES),
               LSTMGEN_TRAIN_MAX_WAITING=str(MAX_WAITING), GRADIO_TEMP_DIR=str(tmp_path_factory.mktemp("gradio")),
               LSTMGEN_UPLOAD_KEEP_S=str(UPLOAD_KEEP_S), LSTMGEN_TRAIN_DATASET_TIMEOUT_S=str(DATASET_TIMEOUT_S),
               LSTMGEN_UNREAD_KEEP_S=str(UNREAD_KEEP_S))
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "app.py", "--no-hub", "--port", str(port)], cwd=PROJECT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, server)
        yield url, log, Path(env["GRADIO_TEMP_DIR"])
    finally:
        server.terminate()
        server.wait(30)


def client(url, address: str = "10.0.0.1"):
    """A visitor's gradio_client, seen by the app at `address` (what the Space's proxy appends)."""
    from gradio_client import Client

    return Client(url, verbose=False, headers={"X-Forwarded-For": address})


def signed_in(account_token: str) -> dict:
    """The session cookie a visitor holds after signing in with Hugging Face on the Space: Gradio's OAuth
    info in Starlette's signed session (the test knows the Space's OAuth secret, as the Space does; the
    visitor only ever holds the cookie the Space gave them)."""
    import base64
    import hashlib

    from itsdangerous import TimestampSigner

    info = {"oauth_info": {"access_token": account_token, "token_type": "bearer", "scope": "openid profile contribute-repos",
                           "expires_at": int(time.time()) + 3600,
                           "userinfo": {"preferred_username": "mallory", "name": "Mallory"}}}
    secret = hashlib.sha256(("space-secret" + "-v4").encode()).hexdigest()  # gradio.oauth's session key
    cookie = TimestampSigner(secret).sign(base64.b64encode(json.dumps(info).encode())).decode()
    return {"session": cookie}


def ui_call(url, handler: str, data: list, session: str, address: str | list[str] = "10.0.0.1",
            cookies: dict | None = None, origin: str | None = None) -> tuple[list, str | None]:
    """Call a UI event handler as the browser does (POST queue/join with its fn_index, then read the
    session's event stream). `address`: X-Forwarded-For, or a list of its header lines; `origin`: the page
    the call comes from (Origin, with the Space's own Host). Returns (every update's output data, the error
    message or None)."""
    config = httpx.get(url + "config").json()
    fn_index = next(d["id"] for d in config["dependencies"] if d["api_name"] == handler)
    headers = [("X-Forwarded-For", line) for line in ([address] if isinstance(address, str) else address)]
    if cookies:
        headers.append(("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items())))
    if origin:
        headers += [("Origin", origin), ("Host", SPACE_HOST)]
    joined = httpx.post(url + "gradio_api/queue/join", headers=headers, timeout=30, json={
        "data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None})
    if joined.status_code != 200:  # refused before it entered the queue
        return [], f"HTTP {joined.status_code}: {joined.text}"
    updates = []
    with httpx.stream("GET", url + f"gradio_api/queue/data?session_hash={session}", headers=headers,
                      timeout=CALL_TIMEOUT_S) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") == "process_generating" and message.get("success"):
                updates.append(message["output"]["data"])
            if message.get("msg") == "process_completed":
                output = message.get("output") or {}
                if message.get("success"):
                    updates.append(output.get("data"))
                    return updates, None
                return updates, output.get("error") or ""
    raise AssertionError("the event stream ended without a result")


def train_in_ui(url, session, address, text=VISITOR_TEXT, dataset="", upload=None, seconds=2):
    # on_train's inputs: upload, pasted text, dataset id, its column, tokenizer, size, seconds
    return ui_call(url, "on_train", [upload, text if not dataset and not upload else "", dataset, "text", "char",
                                     "tiny", seconds], session, address)


# --------------------------------------------------------------------------- 1. publishing


def test_an_anonymous_visitor_cannot_publish_and_the_owners_token_is_never_used(space, hub):
    url, _, _ = space
    session = secrets.token_hex(8)
    updates, error = train_in_ui(url, session, "10.0.1.1")
    assert error is None and any(u and "Done" in str(u[0]) for u in updates), (error, updates[-1:])
    hub.requests.clear()
    # The repo name of one of the app's own models, on the owner's account; then a plain name.
    _, error = ui_call(url, "on_publish", [None, "owner/char-shakespeare", "other"], session, "10.0.1.1")
    assert error and "sign in with Hugging Face first" in error
    _, error = ui_call(url, "on_publish", [None, "my-lstm", "other"], session, "10.0.1.1")
    assert error and "sign in with Hugging Face first" in error
    assert hub.requests == [] and not hub.saw_owner_token()


def test_a_signed_in_visitor_publishes_only_to_their_own_account_with_their_own_token(space, hub):
    url, _, _ = space
    mallory, eve = secrets.token_hex(8), secrets.token_hex(8)
    updates, error = train_in_ui(url, mallory, "10.0.1.2")
    assert error is None and any(u and "Done" in str(u[0]) for u in updates), (error, updates[-1:])
    hub.requests.clear()
    hub.bodies.clear()
    cookies = signed_in(VISITOR_TOKEN)
    # Another account's repo, by its full id: refused before anything reaches the Hub.
    _, error = ui_call(url, "on_publish", [None, "owner/char-shakespeare", "other"], mallory, "10.0.1.2", cookies)
    assert error and "give only the repo's name" in error and hub.requests == []
    # A plain name: the repo is created on the visitor's own account, with the visitor's own token only.
    _, error = ui_call(url, "on_publish", [None, "my-lstm", "other"], mallory, "10.0.1.2", cookies)
    assert error and "refused the upload (HTTP 404)" in error  # the stand-in Hub knows no repos
    assert hub.requests and all(auth == f"Bearer {VISITOR_TOKEN}" for _, _, auth in hub.requests), hub.requests
    assert hub.requests[0][1].startswith("/api/whoami")
    created = [json.loads(body) for (_, path, _), body in zip(hub.requests, hub.bodies) if path == "/api/repos/create"]
    assert created and all(c["organization"] == "mallory" and c["name"] == "my-lstm" for c in created)
    assert not hub.saw_owner_token()
    # A second visitor, signed in with the same cookie or not, has no model in their session to publish.
    for their_cookies in (None, cookies):
        hub.requests.clear()
        _, error = ui_call(url, "on_publish", [None, "my-lstm", "other"], eve, "10.0.1.3", their_cookies)
        assert error and "train a model first" in error and hub.requests == []


def test_a_visitor_names_only_a_repo_on_their_own_account(tmp_path):
    from lstmgen import hub as publish

    for name in ("owner/char-shakespeare", "a/b", "-x", "x.", "a--b", "a..b", "x" * 97, "my lstm", ""):
        with pytest.raises(publish.PublishError):
            publish.check_repo_name(name)
    assert publish.check_repo_name(" my-lstm_2.0 ") == "my-lstm_2.0"


def test_the_servers_own_login_is_used_only_when_the_operator_opts_in(monkeypatch):
    from lstmgen import hub as publish

    monkeypatch.setenv("HF_TOKEN", OWNER_TOKEN)
    monkeypatch.delenv(publish.SERVER_TOKEN_ENV, raising=False)
    assert publish.publishing_token(None) is None
    assert publish.publishing_token("hf_visitor") == "hf_visitor"
    monkeypatch.setenv(publish.SERVER_TOKEN_ENV, "1")
    assert publish.publishing_token(None) == OWNER_TOKEN


# --------------------------------------------------------------------------- 2. the dataset box


@pytest.mark.parametrize("dataset", ["/etc", "../../etc", "~", "~/.cache", "data", "lstmgen", "tests/../data",
                                     "./data", "C:\\secrets", "text", "csv", "a/b/c"])
def test_the_dataset_box_refuses_anything_but_a_hub_id_before_loading(space, dataset):
    url, _, _ = space
    updates, error = train_in_ui(url, secrets.token_hex(8), f"10.0.2.{abs(hash(dataset)) % 250}", dataset=dataset)
    assert error and ("Hugging Face dataset id" in error or "not a Hub dataset" in error), error
    assert not any("training" in str(u) for u in updates)


def test_the_servers_upload_folder_is_not_a_dataset(space):
    url, _, gradio_temp = space
    updates, error = train_in_ui(url, secrets.token_hex(8), "10.0.2.251", dataset=str(gradio_temp))
    assert error and "Hugging Face dataset id" in error


def test_a_hub_dataset_is_read_anonymously_never_with_the_owners_token(space, hub):
    url, _, _ = space
    hub.requests.clear()
    _, error = train_in_ui(url, secrets.token_hex(8), "10.0.2.252", dataset="someone/private-data")
    assert error and "could not be read" in error and "Error" not in error  # a sentence, no exception text
    asked = [r for r in hub.requests if "someone/private-data" in r[1]]
    assert asked, hub.requests  # it did ask the (stand-in) Hub …
    assert not hub.saw_owner_token() and all(auth == "" for _, _, auth in asked)  # … as a stranger


# --------------------------------------------------------------------------- 3. a visitor's model is the visitor's


def test_a_visitors_model_is_reachable_only_with_its_key(space):
    url, _, _ = space
    alice, bob = client(url, "10.0.3.1"), client(url, "10.0.3.2")
    job = alice.submit(VISITOR_TEXT, "char", "tiny", 2, api_name="/train")
    last = job.result(timeout=CALL_TIMEOUT_S)
    key = last["model"]
    assert last["status"] == "done" and key.startswith("yours-") and len(key.removeprefix("yours-")) * 6 >= 128
    # Alice uses it; Bob cannot see it, nor find it by guessing; errors name only everyone's models.
    assert alice.predict(key, "ROMEO:", 0.8, 20, api_name="/generate")["float32"]["tokens"] == 20
    listed = bob.predict(api_name="/models")
    assert set(listed) == {"char", "subword", "word"} and key not in json.dumps(listed)
    for guess in ("yours-" + secrets.token_urlsafe(16), key[:-1], key.upper()):
        # Every endpoint that takes a model name: none reaches Alice's model, nor names it.
        for args, endpoint in (((guess, "ROMEO:"), "/generate"), ((guess, "ROMEO:"), "/next_tokens"),
                               ((guess, "ROMEO:", 1, 1), "/cells"), ((guess,), "/cell_features"),
                               ((guess, "ROMEO: a text to score"), "/score")):
            with pytest.raises(Exception) as refused:
                bob.predict(*args, api_name=endpoint)
            assert str(refused.value) == f"unknown model {guess!r}: choose one of char, subword, word", endpoint
    # Nothing shown to anyone names a path on the server.
    shown = json.dumps(listed) + json.dumps(last)
    assert str(PROJECT) not in shown and "/tmp" not in shown and "lstmgen-visitors" not in shown
    # The key is the capability: Bob, given it, can use the model.
    assert bob.predict(key, "ROMEO:", 0.8, 20, api_name="/generate")["float32"]["tokens"] == 20
    assert bob.predict(key, "ROMEO: a text", api_name="/score")["model"] == key


# --------------------------------------------------------------------------- 4. uploads


def test_uploads_over_the_limit_are_refused_and_a_used_upload_is_deleted(space):
    url, _, _ = space
    too_big = httpx.post(url + "gradio_api/upload", files={"files": ("big.txt", b"a" * (MAX_BYTES + 1), "text/plain")})
    assert too_big.status_code >= 400
    uploaded = httpx.post(url + "gradio_api/upload", files={"files": ("mine.txt", VISITOR_TEXT.encode(), "text/plain")})
    path = uploaded.json()[0]
    assert Path(path).is_file()
    file_data = {"path": path, "orig_name": "mine.txt", "meta": {"_type": "gradio.FileData"}}
    updates, error = train_in_ui(url, secrets.token_hex(8), "10.0.4.1", upload=file_data)
    assert error is None, error
    assert not Path(path).exists()  # read once, then deleted


# --------------------------------------------------------------------------- 5. fair sharing


def test_one_training_per_visitor_first_come_first_served_and_generation_goes_on(space):
    url, _, _ = space
    started: dict[str, float] = {}
    finished: dict[str, dict] = {}
    places: dict[str, list] = {}

    def visitor(address, seconds):
        job = client(url, address).submit(VISITOR_TEXT, "char", "tiny", seconds, api_name="/train")
        for update in job:
            if update["status"] == "waiting":
                places.setdefault(address, []).append(update["place"])
            elif address not in started:
                started[address] = time.monotonic()
        finished[address] = job.result(timeout=CALL_TIMEOUT_S)

    first = threading.Thread(target=visitor, args=("10.0.5.1", 8))
    first.start()
    while "10.0.5.1" not in started:
        time.sleep(0.1)
    # The same visitor from a second client (a new session), even with a forged first hop, is refused.
    for forged in ("10.0.5.1", "203.0.113.9, 10.0.5.1"):
        with pytest.raises(Exception, match="already running or waiting"):
            client(url, forged).submit(VISITOR_TEXT, "char", "tiny", 2, api_name="/train").result(timeout=30)
    # Three others arrive in order and wait in that order; a fourth finds the line full.
    others = [f"10.0.5.{i}" for i in (2, 3, 4)]
    threads = []
    for address in others:
        threads.append(threading.Thread(target=visitor, args=(address, 1)))
        threads[-1].start()
        while address not in places:
            time.sleep(0.05)
    with pytest.raises(Exception, match="the line is full"):
        client(url, "10.0.5.9").submit(VISITOR_TEXT, "char", "tiny", 2, api_name="/train").result(timeout=30)
    # Generation is not held up by the line: another visitor generates at once.
    began = time.monotonic()
    result = client(url, "10.0.5.10").predict("char", "ROMEO:", 0.8, 50, api_name="/generate")
    assert result["float32"]["tokens"] == 50 and time.monotonic() - began < 30
    for thread in [first, *threads]:
        thread.join(CALL_TIMEOUT_S)
    assert [places[a][0] for a in others] == [1, 2, 3]
    assert sorted(others, key=started.get) == others  # they trained in the order they came
    assert all(finished[a]["status"] == "done" for a in ["10.0.5.1", *others])


def test_train_has_one_concurrency_limit_and_its_own_group():
    from lstmgen.app import build_demo
    from lstmgen.serve import service

    demo = build_demo(service.load_all(records=[], use_hub=False))
    trains = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") in ("train", "on_train")]
    generates = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") in ("generate", "on_generate_trained")]
    assert len(trains) == 2 and {fn.concurrency_id for fn in trains} == {"train"}
    assert {fn.concurrency_limit for fn in trains} == {demo.lstmgen_app.studio.limits.max_waiting + 5}
    assert "train" not in {fn.concurrency_id for fn in generates}


# --------------------------------------------------------------------------- 6. bounded requests, quiet errors


def test_a_huge_request_is_refused_unread(space):
    url, _, _ = space
    body = b'{"data": ["' + b"a" * 100_000_000 + b'", "char", "tiny", 10]}'
    began = time.monotonic()
    try:
        answer = httpx.post(url + "gradio_api/call/train", content=body, headers={"content-type": "application/json"},
                            timeout=60)
        assert answer.status_code == 413
    except httpx.HTTPError:
        pass  # the server may close the connection before the whole body is sent: refused either way
    assert time.monotonic() - began < 30
    assert httpx.get(url + "config").status_code == 200


def test_a_text_over_the_limit_gets_a_message(space):
    url, _, _ = space
    with pytest.raises(Exception, match=f"the limit is {MAX_BYTES:,}"):
        client(url, "10.0.6.1").submit("a" * (MAX_BYTES + 1), "char", "tiny", 2, api_name="/train").result(timeout=60)


# --------------------------------------------------------------------------- the studio's bounds, directly


def test_a_hub_datasets_text_stops_at_the_byte_limit_of_an_endless_stream():
    from lstmgen.core.data import dataset_text

    class Rows:  # a streamed dataset without end, as `datasets` gives it
        column_names = ["text"]

        def __iter__(self):
            while True:
                yield {"text": "x" * 999}

    assert dataset_text(Rows(), "someone/endless", "text", 10_000) == {
        "error": "the dataset someone/endless has more than 10,000 bytes of text; the limit is 10,000: upload a part "
                 "of it as a file instead"}
    said = dataset_text(Rows(), "someone/endless", "body" * 100, 10_000)["error"]
    assert said.startswith("the dataset someone/endless has no column 'bodybody") and len(said) < 150
    assert dataset_text([{"text": "a"}, {"text": None}, {"text": "b"}], "x/y", "text", 10) == {"text": "a\nb"}


def test_a_datasets_text_is_read_in_the_visitors_turn(tmp_path):
    from lstmgen.serve import studio

    runs = studio.Studio(root=tmp_path, sweep_every_s=0)
    first = runs.train(VISITOR_TEXT, "char", "tiny", 10, client="a", session="a")
    assert next(first)["status"] == "tokenizing"
    while next(first)["status"] != "training":
        pass
    read_at = []
    second = runs.train(lambda: read_at.append(time.monotonic()) or VISITOR_TEXT, "char", "tiny", 10, client="b")
    assert next(second)["status"] == "waiting" and read_at == []  # not read while waiting
    runs.stop("a")
    *_, done = first
    assert done["status"] == "done"
    updates = list(second)
    assert read_at and updates[0]["status"] == "reading your text" and updates[-1]["status"] == "done"


def test_nothing_of_a_visitor_outlives_its_models_hour(tmp_path, monkeypatch):
    from lstmgen.app.train_tab import forget_download
    from lstmgen.core.operator_settings import TrainingLimits
    from lstmgen.serve import studio

    import gc
    import weakref

    from lstmgen.serve import service

    gone = []
    runs = studio.Studio(limits=TrainingLimits(keep_s=2.5), root=tmp_path / "visitors", sweep_every_s=0.2,
                         on_evict=gone.append, load=lambda folder: service.load_source(folder, use_hub=False))
    *_, done = runs.train(VISITOR_TEXT, "char", "tiny", 10, client="a")
    key = done["model"]
    assert runs.get(key) is not None and any((tmp_path / "visitors").iterdir())
    # What the server keeps about the model (its cells table, the whole-text graphs) is kept on the model itself.
    served = runs.get(key).served
    service.best_cells(served), service.text_scores(served, VISITOR_TEXT[:500])
    kept = [weakref.ref(served), weakref.ref(served.int8), weakref.ref(served.loaded.model)]
    del served
    time.sleep(3.5)  # the sweeper deletes it, without anyone asking
    assert gone == [key] and runs.get(key) is None and not any((tmp_path / "visitors").iterdir())
    gc.collect()
    assert [ref() for ref in kept] == [None, None, None]  # and nothing of it is left in memory
    # Gradio's copy of the model's zip (the download) goes with it.
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    copy = tmp_path / "gradio" / "0123abcd" / f"{key}.zip"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"zip")
    forget_download(key)
    assert not copy.exists()
    runs.close()
    assert not (tmp_path / "visitors").exists()


def test_the_served_models_are_safe_under_concurrent_eviction(tmp_path):
    from lstmgen.core.operator_settings import TrainingLimits
    from lstmgen.serve import studio

    runs = studio.Studio(limits=TrainingLimits(keep_s=3600, max_models=2), root=tmp_path, sweep_every_s=0)
    for i in range(40):  # models appear and go while readers look them up
        runs.models[f"k{i}"] = studio.VisitorModel(tmp_path / f"k{i}" / "model", time.time(), object())
    errors = []

    def reader():
        try:
            for _ in range(2000):
                for i in range(40):
                    runs.get(f"k{i}")
        except Exception as error:  # noqa: BLE001 - any error fails the test
            errors.append(error)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    runs.evict()
    for thread in threads:
        thread.join()
    assert not errors and len(runs.models) == 2


def test_a_hub_that_cannot_be_reached_gets_a_sentence_not_an_exception(tmp_path):
    from lstmgen import hub as publish

    # These tests run with HF_HUB_OFFLINE=1: huggingface_hub refuses every call, as an unreachable Hub would.
    with pytest.raises(publish.PublishError) as refused:
        publish.push_to_account(tmp_path, "my-lstm", "hf_visitor_token", timeout_s=30)
    assert str(refused.value) == "the Hugging Face Hub could not be reached: try again later"


# --------------------------------------------------------------------------- 7. what one client can cost


def flood(url, api_name: str, data: list, address: str, n: int) -> list[int]:
    """`n` calls sent at once by one client (REST, each its own session); the HTTP status of each."""
    def one(_):
        return httpx.post(url + f"gradio_api/call/{api_name}", json={"data": data}, timeout=30,
                          headers={"X-Forwarded-For": address}).status_code

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_one_client_holds_one_costly_request_at_a_time_and_another_visitor_is_served(space):
    url, _, _ = space
    long_text = VISITOR_TEXT[:10_000]
    statuses = flood(url, "cells", ["char", long_text, 1, 1], "10.0.7.1", 12)
    assert statuses.count(200) == 1 and statuses.count(503) == 11, statuses  # refused at once, not queued
    answer = httpx.post(url + "gradio_api/call/score", json={"data": ["char", long_text]},
                        headers={"X-Forwarded-For": "10.0.7.1"})
    assert answer.status_code == 503 and answer.json()["detail"] == (
        "you already have a request of this kind waiting, running or not yet read: wait for it to finish, then try "
        "again")
    # Generating takes a core as looking inside does: the two share one place.
    assert flood(url, "generate", ["char", "ROMEO:", 0.8, 1000], "10.0.7.1", 6).count(200) == 0
    # Meanwhile another visitor is served in every group.
    other = client(url, "10.0.7.2")
    assert other.predict("char", "ROMEO:", 0.8, 200, api_name="/generate")["float32"]["tokens"] == 200
    assert other.predict("char", "ROMEO: to be", 1, 1, api_name="/cells")["layer"] == 1
    # The flood never read its answers: they hold its share until they are dropped, and then free it.
    assert flood(url, "cells", ["char", "ROMEO:", 1, 1], "10.0.7.1", 1) == [503]
    time.sleep(UNREAD_KEEP_S + 8)
    assert flood(url, "cells", ["char", "ROMEO:", 1, 1], "10.0.7.1", 3).count(200) == 1


def test_a_signed_in_visitor_is_one_client_whatever_their_address(space):
    url, _, _ = space
    cookie = "; ".join(f"{k}={v}" for k, v in signed_in(VISITOR_TOKEN).items())
    statuses = []
    for i in range(3):  # three addresses, one account
        statuses.append(httpx.post(url + "gradio_api/call/cells", json={"data": ["char", VISITOR_TEXT[:10_000], 1, 1]},
                                   headers={"X-Forwarded-For": f"10.0.7.{10 + i}", "Cookie": cookie}).status_code)
    assert statuses == [200, 503, 503]


def test_another_website_cannot_act_as_a_signed_in_visitor(space, hub):
    url, _, _ = space
    session, cookies = secrets.token_hex(8), signed_in(VISITOR_TOKEN)
    updates, error = train_in_ui(url, session, "10.0.7.20")
    assert error is None, error
    hub.requests.clear()
    evil = "https://evil.example"
    # The browser's preflight gets no CORS answer, so it would not even send the call …
    preflight = httpx.options(url + "gradio_api/queue/join", headers={
        "Origin": evil, "Host": SPACE_HOST, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 403 and not any(h.startswith("access-control-allow") for h in preflight.headers)
    # … and the calls themselves, sent anyway (a form post needs no preflight), are refused.
    for handler, data in (("on_publish", [None, "totally-my-model", "other"]), ("on_train", [None, VISITOR_TEXT, "", "text",
                                                                                   "char", "tiny", 2]),
                          ("_check_login_status", [])):
        _, error = ui_call(url, handler, data, session, "10.0.7.20", cookies, origin=evil)
        assert error and error.startswith("HTTP 403") and "its own pages only" in error, (handler, error)
    referred = httpx.post(url + "gradio_api/call/generate", json={"data": ["char", "ROMEO:"]},
                          headers={"Referer": evil + "/page", "Host": SPACE_HOST, "Cookie": "session=x"})
    assert referred.status_code == 403
    assert hub.requests == []  # nothing reached the Hub in the visitor's name
    # Reading a page without cookies is allowed, but another site's page may not read the answer.
    page = httpx.get(url + "config", headers={"Origin": evil, "Host": SPACE_HOST})
    assert page.status_code == 200 and "access-control-allow-origin" not in page.headers
    # The Space's own page, with the visitor's cookie, works as before.
    updates, error = ui_call(url, "_check_login_status", [], session, "10.0.7.20", cookies, origin=f"https://{SPACE_HOST}")
    assert error is None, error
    _, error = ui_call(url, "on_publish", [None, "my-lstm", "other"], session, "10.0.7.20", cookies, origin=f"https://{SPACE_HOST}")
    assert error and "refused the upload (HTTP 404)" in error and hub.requests  # it reached the (stand-in) Hub


def test_the_client_is_the_hop_the_proxy_appended_over_every_header_line(space):
    from lstmgen.serve.web import client_address, forwarded_hops

    lines = [(b"x-forwarded-for", b"10.9.9.3"), (b"host", b"x"), (b"x-forwarded-for", b"203.0.113.5, 192.0.2.77")]
    assert forwarded_hops(lines) == ["10.9.9.3", "203.0.113.5", "192.0.2.77"]
    assert client_address(forwarded_hops(lines), "10.0.0.254", 1) == "192.0.2.77"  # what the Space's proxy appended
    assert client_address(forwarded_hops(lines), "10.0.0.254", 2) == "203.0.113.5"  # behind two proxies
    assert client_address(forwarded_hops(lines), "10.0.0.254", 0) == "10.0.0.254"  # no proxy: the connection
    assert client_address([], "10.0.0.254", 1) == "10.0.0.254"
    # Over HTTP: a training from "10.9.9.1, 192.0.2.77" is running; a second header line cannot pose as another.
    url, _, _ = space
    first = threading.Thread(target=train_in_ui, args=(url, secrets.token_hex(8), "10.9.9.1, 192.0.2.77"),
                             kwargs={"seconds": 6})
    first.start()
    time.sleep(3)
    _, error = train_in_ui(url, secrets.token_hex(8), ["10.9.9.3", "192.0.2.77"])
    first.join(CALL_TIMEOUT_S)
    assert error and "already running or waiting" in error, error


def test_mcp_serves_only_its_listed_tools_and_tells_its_callers_apart(space):
    url, _, _ = space
    mcp = url + "gradio_api/mcp/"
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

    def rpc(method, params, address):
        answer = httpx.post(mcp, headers={**headers, "X-Forwarded-For": address}, timeout=60,
                            json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        return json.loads(next(line[5:] for line in answer.text.splitlines() if line.startswith("data:")))

    tools = [t["name"] for t in rpc("tools/list", {}, "10.0.7.30")["result"]["tools"]]
    assert tools and not any(t.endswith("train") for t in tools)
    called = rpc("tools/call", {"name": "lstmgen_train", "arguments": {"text": VISITOR_TEXT, "seconds": 2}},
                 "10.0.7.30")
    assert "Unknown tool" in json.dumps(called), called
    schema = httpx.get(url + "gradio_api/mcp/schema").json()
    assert not any(t["name"].endswith("train") for t in schema), [t["name"] for t in schema]
    # Gradio's MCP server calls the app for all its callers in one session of its own (marked x-gradio-user: mcp):
    # two callers from two addresses each get their training (the second waits its turn, not refused).
    session, results = secrets.token_hex(8), {}
    config = httpx.get(url + "config").json()
    fn_index = next(d["id"] for d in config["dependencies"] if d["api_name"] == "train")

    def train_as_mcp(address):
        joined = httpx.post(url + "gradio_api/queue/join", headers={"X-Forwarded-For": address, "x-gradio-user": "mcp"},
                            json={"data": [VISITOR_TEXT, "char", "tiny", 2], "fn_index": fn_index,
                                  "session_hash": session}, timeout=30)
        results[address] = joined.status_code

    for address in ("10.0.7.31", "10.0.7.32"):
        train_as_mcp(address)
    last: dict = {}
    with httpx.stream("GET", url + f"gradio_api/queue/data?session_hash={session}", timeout=CALL_TIMEOUT_S) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    last[message["event_id"]] = message
                if len(last) == 2 or message.get("msg") == "close_stream":
                    break
    assert results == {"10.0.7.31": 200, "10.0.7.32": 200}
    finals = [m["output"]["data"][0] for m in last.values() if m.get("success")]
    assert len(finals) == 2 and all(f["status"] == "done" for f in finals), last


def test_each_client_uploads_a_bounded_volume_and_unused_uploads_go(space):
    url, _, _ = space
    limits = ServerLimits()

    def upload(address, name="x.txt", size=1000):
        return httpx.post(url + "gradio_api/upload", headers={"X-Forwarded-For": address},
                          files={"files": (name, b"a" * size, "text/plain")})

    answers = [upload("10.0.7.40") for _ in range(limits.uploads_per_minute + 2)]
    assert [a.status_code for a in answers] == [200] * limits.uploads_per_minute + [429, 429]
    assert "wait a minute" in answers[-1].json()["error"]
    kept = Path(answers[0].json()[0])
    assert kept.is_file() and upload("10.0.7.41").status_code == 200  # another client still uploads
    time.sleep(UPLOAD_KEEP_S + 2)  # no training used it: it is deleted
    assert not kept.exists()


def test_bare_sessions_keep_little_memory(space):
    url, _, _ = space
    pid = server_pid(url)
    config = httpx.get(url + "config").json()
    fn_index = next(d["id"] for d in config["dependencies"] if d["api_name"] == "on_stop")

    def bare_calls(n):
        with httpx.Client(timeout=30) as http:
            for _ in range(n):
                http.post(url + "gradio_api/run/predict", json={"data": [], "fn_index": fn_index,
                                                                "session_hash": secrets.token_hex(8)})

    bare_calls(200)  # warm up: the allocator's first growth is not the sessions'
    before = rss_mb(pid)
    bare_calls(2000)
    assert rss_mb(pid) - before < 50


def test_a_flood_of_refusals_grows_the_log_by_little(space):
    url, log, _ = space
    before = log.stat().st_size
    for _ in range(3):
        with pytest.raises(Exception, match="tokenizer must be one of"):
            client(url, "10.0.7.50").submit(VISITOR_TEXT, "x" * 1_000_000, "tiny", 2, api_name="/train").result(60)
    time.sleep(0.5)
    assert log.stat().st_size - before < 3 * 1000


def test_no_input_of_any_type_leaves_a_traceback(space):
    url, log, _ = space
    config = httpx.get(url + "config").json()
    odd_values = [None, [1, 2], {"a": 1}, 10**30, -1e308, "x" * 300, True]
    tried = set()
    for dependency in config["dependencies"]:
        handler = re.sub(r"_\d+$", "", dependency["api_name"] or "")  # each tab's copy of a handler, once
        if not dependency["backend_fn"] or handler in tried:
            continue
        tried.add(handler)
        n = len(dependency["inputs"])
        calls = [[value] * n for value in odd_values] + [[None] * (n + 1)] + ([[None] * (n - 1)] if n else [])
        for data in calls:
            if dependency["queue"]:
                _, error = ui_call(url, dependency["api_name"], data, secrets.token_hex(8), "10.0.7.60")
            else:
                httpx.post(url + "gradio_api/run/predict", timeout=30, json={
                    "data": data, "fn_index": dependency["id"], "session_hash": secrets.token_hex(8)})
    assert {"generate", "score", "train", "on_train", "on_publish", "on_generate"} <= tried
    text = without_gradios_own_reports(log.read_text())
    assert "Traceback" not in text, text[text.rfind("Traceback") - 200:][:3000]
    assert max(len(line) for line in text.splitlines() if line.startswith("refused")) <= 200


class DrippingHub:
    """A stand-in Hub that knows every file (HEAD: its commit and ETag) and sends each (GET) as a 6 MB body at 1 KB
    a second: a read that never ends and never times out. `hung_up` is set once the reader closes the connection."""

    def __init__(self):
        import http.server

        self.hung_up, self.authorizations = threading.Event(), []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hub.authorizations.append(self.headers.get("authorization", ""))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(6_000_000))
                self.end_headers()
                try:
                    for _ in range(6000):
                        self.wfile.write(b" " * 1000)
                        self.wfile.flush()
                        time.sleep(1)
                except OSError:
                    hub.hung_up.set()

            def do_HEAD(self):
                hub.authorizations.append(self.headers.get("authorization", ""))
                self.send_response(200)
                for header, value in (("ETag", '"0123"'), ("X-Repo-Commit", "a" * 40), ("content-length", "6000000")):
                    self.send_header(header, value)
                self.end_headers()

            do_POST = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_dataset_read_ends_at_its_limit_when_the_hub_sends_a_byte_now_and_then(monkeypatch):
    from lstmgen.core.data import CorpusError, read_hub_dataset

    hub = DrippingHub()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)  # the reader (a child process) finds the Hub here …
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # (the tests' own default)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", OWNER_TOKEN)  # … and never sends the server's token
    began = time.monotonic()
    with pytest.raises(CorpusError, match="took longer than 5 seconds"):
        read_hub_dataset("someone/dripping", timeout_s=5)
    assert time.monotonic() - began < 8
    assert hub.hung_up.wait(5)  # the read really ended: nothing reads on in the background
    assert hub.authorizations and not any(hub.authorizations)
    hub.server.shutdown()


def test_a_visitor_whose_text_cannot_be_read_leaves_the_line(tmp_path):
    from lstmgen.core.data import CorpusError
    from lstmgen.serve import studio

    runs = studio.Studio(root=tmp_path, sweep_every_s=0)

    def unreadable():
        raise CorpusError("reading the dataset someone/dripping took longer than 60 seconds")

    with pytest.raises(CorpusError, match="took longer than 60 seconds"):  # the visitor's one-line answer
        list(runs.train(unreadable, "char", "tiny", 10, client="a"))
    assert runs.line == []  # the place is free: the same visitor trains next
    again = runs.train(VISITOR_TEXT, "char", "tiny", 10, client="a")
    assert next(again)["status"] == "tokenizing"
    again.close()
    runs.close()


def test_sign_in_asks_only_to_create_repos_and_a_repo_it_did_not_create_gets_a_sentence(tmp_path):
    front_matter = (PROJECT / "README.md").read_text().split("---")[1]
    assert re.search(r"hf_oauth_scopes:\n  - contribute-repos\n(?!  -)", front_matter), front_matter
    # The Hub, for a sign-in with contribute-repos: the repo exists (409 on create), and writing to it is refused.
    stand_in = StatusHub({"/api/whoami-v2": (200, {"name": "mallory", "type": "user"}),
                          "/api/repos/create": (409, {"error": "You already created this model repo",
                                                      "url": "https://huggingface.co/mallory/my-old-model"}),
                          "preupload": (403, {"error": "This OAuth app can only write to repos it created"})})
    (tmp_path / "config.json").write_text("{}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {"HF_ENDPOINT": stand_in.url}
    code = ("from lstmgen import hub\ntry:\n    hub.push_to_account(%r, 'my-old-model', %r, timeout_s=30)\n"
            "except hub.PublishError as error:\n    print(error)" % (str(tmp_path), VISITOR_TOKEN))
    try:
        said = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=PROJECT,
                              timeout=120).stdout.strip()
    finally:
        stand_in.server.shutdown()
    assert said == ("your sign-in does not let this app write to my-old-model: choose a new name (it writes only "
                    "to models it created), or sign in again and allow it to")


class StatusHub:
    """A stand-in Hub that answers each request whose path contains a key of `answers` with its (status, JSON)."""

    def __init__(self, answers: dict):
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self):
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                StandInHub.reply(self, *next((v for k, v in answers.items() if k in self.path),
                                             (404, {"error": "not found"})))

            do_GET = do_POST = do_HEAD = do_PUT = answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def server_pid(url) -> int:
    """The pid of the app the `space` fixture started on the url's port."""
    wanted = ["app.py", "--no-hub", "--port", url.rstrip("/").rsplit(":", 1)[1]]
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().split(b"\0")[1:5] == [w.encode() for w in wanted]:
                return int(proc.name)
        except OSError:
            continue
    raise AssertionError("the app's process was not found")


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1000


def without_gradios_own_reports(text: str) -> str:
    """The server's log without the two reports Gradio itself may print at start-up in Space mode, whatever the
    visitors do: its MCP server leaves an asyncio event loop that Python reports when it collects it ("Exception
    ignored in: <function BaseEventLoop.__del__ …> … Invalid file descriptor: -1"), and its Spaces hot-reload
    thread (watchfn_spaces) can fail while modules are still being imported ("dictionary changed size during
    iteration")."""
    text = re.sub(r"Exception ignored in: <function BaseEventLoop.__del__.*?ValueError: Invalid file descriptor: -1\n",
                  "", text, flags=re.S)
    return re.sub(r"Exception in thread [^\n]*:\nTraceback \(most recent call last\):\n(?:  [^\n]*\n)*?"
                  r"[^\n]*watchfn_spaces\n(?:  [^\n]*\n)*RuntimeError: dictionary changed size during iteration\n",
                  "", text)


def test_zz_no_visitor_error_left_a_traceback_in_the_servers_log(space):
    _, log, _ = space
    text = without_gradios_own_reports(log.read_text())
    assert "refused" in text  # every refusal of the tests above was logged …
    assert "Traceback" not in text, text[-3000:]  # … in one line each
