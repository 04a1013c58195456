"""Train your own, through the app's named API (/train) over loopback with gradio_client: a visitor's text
in, progress out, a model that every endpoint accepts; one training at a time; clear errors for bad input;
the zip a visitor downloads loads anywhere; publishing pushes to the visitor's own account."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from app_support import StandInHub, build_model_folders, launch
from lstmgen import hub as publish
from lstmgen.app import build_demo, words
from lstmgen.training.run import steps_per_second
from lstmgen.serve import service
from lstmgen.core.operator_settings import TrainingLimits
from lstmgen.serve import studio

pytestmark = [pytest.mark.filterwarnings("ignore::Warning:gradio.*"),
              pytest.mark.filterwarnings("ignore::ResourceWarning")]

PROJECT = Path(__file__).resolve().parent.parent
TEXT_50KB = (Path(PROJECT / "data" / "tinyshakespeare.txt").read_text()[:50_000])
CALL_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    folders = build_model_folders(tmp_path_factory.mktemp("train-tab-models"))
    served = service.load_all(records=[], sources=[str(folder) for folder in folders.values()], use_hub=False)
    demo = build_demo(served, studio_root=tmp_path_factory.mktemp("visitors"))
    url = launch(demo)
    yield demo, url
    demo.close()


@pytest.fixture(scope="module")
def server(launched):
    return launched[1]


@pytest.fixture(scope="module")
def app_studio(launched):
    """The launched app's studio: the visitors' trainings and models."""
    return launched[0].lstmgen_app.studio


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def train(client, text=TEXT_50KB, tokenizer="char", size="tiny", seconds=10) -> list[dict]:
    job = client.submit(text, tokenizer, size, seconds, api_name="/train")
    updates = list(job)
    assert job.status().success, job.exceptions if hasattr(job, "exceptions") else job.status()
    return updates


@pytest.fixture(scope="module")
def trained(client) -> list[dict]:
    return train(client)


def test_training_streams_growing_progress_and_ends_with_a_model(trained):
    assert len(trained) > 3
    training = [u for u in trained if u["status"] == "training"]
    assert training and all(u["done"] is False for u in training)
    steps = [u["step"] for u in training]
    assert steps == sorted(steps) and steps[-1] > steps[0]
    assert all(u["elapsed_s"] <= 10 + 5 for u in training)
    final = trained[-1]
    assert final["status"] == "done" and final["done"] is True and final["model"].startswith("yours-")
    assert final["val_loss"] is not None and 0 < final["val_loss"] < 4.2  # below the uniform guess, ln 65
    assert final["tokens_per_s"] > 0 and final["parameters"] > 0


def test_the_new_model_works_in_every_endpoint_for_whoever_holds_its_key(client, trained):
    name = trained[-1]["model"]
    assert name not in client.predict(api_name="/models")  # never listed: the key is the only way to it
    result = client.predict(name, "ROMEO:", 0.8, 30, 0, 1.0, 3, False, api_name="/generate")
    assert result["model"] == name and result["float32"]["tokens"] == 30
    # Its compressed copy chooses as it does at nearly every step: over several seeds, not one draw.
    runs = [client.predict(name, "ROMEO:", 0.8, 30, 0, 1.0, seed, False, api_name="/generate") for seed in range(8)]
    assert sum(r["fidelity"]["same_choice"] for r in runs) / len(runs) >= 0.9
    streamed = list(client.submit(name, "ROMEO:", 0.8, 30, 0, 1.0, 3, False, api_name="/generate_stream"))
    assert streamed[-1]["float32"]["text"] == result["float32"]["text"]
    candidates = client.predict(name, "ROMEO:", 5, 1.0, api_name="/next_tokens")
    assert len(candidates["float32"]) == 5


def test_the_model_folder_is_what_train_space_writes_and_loads_anywhere(client, trained, app_studio, tmp_path):
    name = trained[-1]["model"]
    folder = app_studio.folder(name)
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "loss_curve.png",
            "README.md"} <= {p.name for p in folder.iterdir()}
    archive = Path(shutil.make_archive(str(tmp_path / "download"), "zip", folder))
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(archive) as z:
        z.extractall(unpacked)
    from lstmgen.engine.generate import generate
    from lstmgen.hub import resolve

    loaded = resolve(str(unpacked), use_hub=False)
    direct = generate(loaded.model, loaded.tokenizer, "ROMEO:", 40, temperature=0.8, seed=5)
    served = client.predict(name, "ROMEO:", 0.8, 40, 0, 1.0, 5, False, api_name="/generate")
    assert direct == "ROMEO:" + served["float32"]["text"]  # the same text for the same seed
    # And from the command line that serves it: python -m lstmgen generate --model FOLDER.
    cli = subprocess.run([sys.executable, "-m", "lstmgen", "generate", "--model", str(unpacked), "--prompt", "ROMEO:",
                          "--length", "40", "--temperature", "0.8", "--seed", "5", "--no-hub"],
                         capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == direct + "\n"  # the text as generated (it may end in line breaks), then one
    # And `python app.py --model FOLDER` serves it under the folder's name (the key is the server's alone), with the
    # same text for the same seed.
    from gradio_client import Client

    from app_support import free_port, wait_until_serving

    port = free_port()
    env = dict(__import__("os").environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    server = subprocess.Popen([sys.executable, "app.py", "--no-hub", "--port", str(port), "--model", str(unpacked)],
                              cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/", server)
        again = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
            "yours-char", "ROMEO:", 0.8, 40, 0, 1.0, 5, False, api_name="/generate")  # its folder's name: no key
        assert again["float32"]["text"] == served["float32"]["text"]
    finally:
        server.terminate()
        server.wait(20)


def test_a_second_training_waits_its_turn_then_succeeds(server, app_studio):
    from gradio_client import Client

    results: dict[str, list] = {}

    def visitor(who):  # two visitors: two addresses (the Space's proxy reports each in X-Forwarded-For)
        address = {"first": "10.1.0.1", "second": "10.1.0.2"}[who]
        results[who] = train(Client(server, verbose=False, headers={"X-Forwarded-For": address}), seconds=10)

    first = threading.Thread(target=visitor, args=("first",))
    first.start()
    while not app_studio.running:  # the first one has the trainer
        first.join(0.1)
    second = threading.Thread(target=visitor, args=("second",))
    second.start()
    first.join(CALL_TIMEOUT_S)
    second.join(CALL_TIMEOUT_S)
    waiting = [u for u in results["second"] if u["status"] == "waiting"]
    assert waiting and waiting[0]["place"] == 1 and waiting[0]["wait_s"] > 0
    assert results["first"][-1]["status"] == results["second"][-1]["status"] == "done"
    assert results["first"][-1]["model"] != results["second"][-1]["model"]


@pytest.mark.parametrize("args, message", [
    (("", "char", "tiny", 10), "the text is 0 bytes; a model needs at least 1,000"),
    (("x", "char", "tiny", 10), "the text is 1 bytes; a model needs at least 1,000"),
    (("a\x00b" * 500, "char", "tiny", 10), "looks binary"),
    ((TEXT_50KB, "bytes", "tiny", 10), "tokenizer must be one of char, word, subword"),
    ((TEXT_50KB, "char", "huge", 10), "size must be one of tiny, small"),
    ((TEXT_50KB, "char", "tiny", 5), "seconds must be between 10 and 300, got 5"),
    ((TEXT_50KB, "char", "tiny", 301), "seconds must be between 10 and 300, got 301"),
    ((TEXT_50KB, "char", "tiny", "soon"), "seconds must be a number"),
])
def test_bad_training_input_gets_a_clear_error_and_the_server_keeps_answering(client, args, message):
    with pytest.raises(Exception, match=message):
        client.submit(*args, api_name="/train").result(timeout=CALL_TIMEOUT_S)
    assert "char" in client.predict(api_name="/models")


def test_text_over_the_limit_is_refused(client):
    with pytest.raises(Exception, match="the limit is 10,000,000"):
        client.submit("a" * 10_000_001, "char", "tiny", 10, api_name="/train").result(timeout=CALL_TIMEOUT_S)


def test_pressing_train_twice_is_refused_and_the_first_goes_on(tmp_path):
    runs = studio.Studio(root=tmp_path, sweep_every_s=0, load=lambda folder: service.load_source(folder, use_hub=False))
    first = runs.train(TEXT_50KB, "char", "tiny", 10, client="me", session="me")
    while next(first)["status"] != "training":
        pass
    with pytest.raises(studio.TrainingError, match="already running or waiting"):
        next(runs.train(TEXT_50KB, "char", "tiny", 10, client="me", session="me"))
    assert runs.stop("me")  # Stop ends it early and keeps the best model so far
    *_, last = first
    assert last["status"] == "done" and last["model"] and runs.folder(last["model"]).is_dir()
    # ... and the tab says so, with the run's own clock, not "Done".
    said = words.trained_figures(runs.get(last["model"]).served, last, runs.limits.keep_s)
    assert last["stopped"] and said.startswith(f"**Stopped after {last['elapsed_s']:.0f} s; kept the best model so far.**")
    assert "Done" not in said and "Stopped." in words.train_status(last, 10)


def test_the_tab_tells_a_finished_training_in_bits_and_plain_words(trained, app_studio):
    """The result a visitor reads (words.trained_figures) from /train's last update: the held-out surprise in bits
    per character (its val_loss, nats, over ln 2; recomputed from the weights in the test below), the nats in the
    small print, and what such a model writes, by the levels of bench/train_steps.md."""
    final = trained[-1]
    said = words.trained_figures(app_studio.get(final["model"]).served, final, app_studio.limits.keep_s)
    bits = final["val_loss"] / math.log(2)
    assert f"**Done: trained for {final['elapsed_s']:.0f} s.**" in said
    assert f"its surprise is **{bits:.2f} bits per character**" in said and f"{final['val_loss']:.3f}" in said
    level = next(text for top, text in words.LETTER_LEVELS if bits < top)
    assert f"It {level}." in said
    status = words.train_status({**[u for u in trained if u["status"] == "training"][-1]}, 10)
    assert re.search(r"training\*\* · \d+ s of 10 s · step [\d,]+", status), status


def test_what_a_size_and_a_time_give_is_this_servers_own_speed_times_the_time():
    speed = steps_per_second("tiny", seconds=0.2)
    assert speed > 0
    said = words.train_expectation(speed, "tiny", 60, "char")
    assert f"about {speed:,.0f} training steps a second" in said
    assert f"60 s gives about {round(speed * 60, -1):,.0f} steps" in said
    assert ("enough for mostly real words" in said) == (round(speed * 60, -1) >= words.STEPS_FOR_WORDS)
    assert "Reading words" in words.train_expectation(speed, "tiny", 60, "word")


def test_a_short_held_out_text_shows_no_cell_correlations_and_the_tab_says_why(tmp_path):
    """5 KB of text holds out 500 characters: under the stated minimum (lstmgen.inside.cells.MIN_TOKENS), so the
    model's cells.json ranks none, and the explorer says why instead of showing chance correlations."""
    from lstmgen.inside import read_cells_json
    from lstmgen.inside.cells import MIN_TOKENS
    from lstmgen.inside.features import features_for

    runs = studio.Studio(root=tmp_path, sweep_every_s=0)
    training = runs.train(TEXT_50KB[:5000], "char", "tiny", 10, client="me", session="me")
    while next(training)["status"] != "training":
        pass
    runs.stop("me")
    *_, last = training
    cells = read_cells_json(runs.folder(last["model"]))
    assert cells["rows"] == [] and cells["tokens"] < MIN_TOKENS
    said = words.cells_missing(cells, features_for("char"), MIN_TOKENS)
    assert f"is {cells['tokens']:,} pieces long, and a correlation needs at least {MIN_TOKENS:,}" in said


def test_uploads_that_are_not_utf8_text_are_refused_clearly():
    assert studio.decode_upload("héllo".encode()) == "héllo"
    assert studio.decode_upload(b"\xef\xbb\xbfbom") == "bom"
    with pytest.raises(studio.TrainingError, match="not UTF-8 text"):
        studio.decode_upload("héllo".encode("latin-1"))
    with pytest.raises(studio.TrainingError, match="looks binary"):
        studio.decode_upload(b"\x89PNG\r\n\x1a\n\x00\x00")


def test_models_beyond_the_limit_or_their_time_are_deleted_oldest_first(tmp_path):
    let_go = []
    runs = studio.Studio(limits=TrainingLimits(max_models=2, keep_s=3600), root=tmp_path, on_evict=let_go.append,
                         sweep_every_s=0)
    names = []
    for _ in range(3):
        *_, last = runs.train(TEXT_50KB[:5000], "char", "tiny", 10, client="me", session="me")
        runs.stop("me")
        names.append(last["model"])
    assert set(runs.models) == set(names[1:]) and not (tmp_path / names[0]).exists()
    assert let_go == names[:1]  # the server is told, so it stops serving the model
    runs.limits = TrainingLimits(max_models=2, keep_s=0)
    assert set(runs.evict()) == set(names[1:]) and not runs.models and set(let_go) == set(names)


# --------------------------------------------------------------------------- publishing


def test_publishing_needs_a_sign_in_and_never_shows_the_token(tmp_path):
    with pytest.raises(publish.PublishError, match="sign in with Hugging Face first"):
        publish.push_to_account(tmp_path, "my-lstm", None)
    with pytest.raises(publish.PublishError, match="give the repo a name"):
        publish.push_to_account(tmp_path, "not a name!", "hf_secret")
    with pytest.raises(publish.PublishError, match="created on your own account"):
        publish.push_to_account(tmp_path, "someone-else/my-lstm", "hf_secret")


PUSH = r"""
import json, sys
from lstmgen import hub as publish
folder, repo, token = sys.argv[1:4]
try:
    print(json.dumps({"url": publish.push_to_account(folder, repo, token or None)}))
except publish.PublishError as error:
    print(json.dumps({"error": str(error)}))
"""


def test_publishing_pushes_the_folder_to_the_visitors_own_account_with_their_token(trained, app_studio, tmp_path):
    hub = StandInHub()  # its upload API: a write token may create repos and commit to them, a read token may not
    folder = app_studio.folder(trained[-1]["model"])
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")

    def push(repo, token):
        result = subprocess.run([sys.executable, "-c", PUSH, str(folder), repo, token], env=env, cwd=PROJECT,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "hf_write_token" not in result.stdout + result.stderr and "hf_read_token" not in result.stdout
        return json.loads(result.stdout.strip().splitlines()[-1])

    done = push("my-lstm", "hf_write_token")
    assert "url" in done and done["url"].endswith("visitor/my-lstm"), done
    uploaded = hub.files("visitor/my-lstm")
    assert uploaded["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    assert {"config.json", "tokenizer.json", "metrics.json", "README.md"} <= set(uploaded)
    assert set(hub.authorizations) == {"hf_write_token"}  # the visitor's own token, and only it

    refused = push("my-lstm", "hf_read_token")
    assert "your sign-in does not let this app write to my-lstm" in refused["error"]
    assert "sign in with Hugging Face first" in push("my-lstm", "")["error"]
    hub.close()


def test_the_trained_models_validation_figures_are_its_loss_on_the_held_out_text(trained, app_studio):
    """/train's last update gives the kept model's loss on the last 10% of the text, float and int8: here
    recomputed directly, one plain log-softmax over the whole held-out text (16 streams, as measured)."""
    import torch

    from lstmgen.hub import resolve
    from lstmgen.engine.ort import OrtModel
    from lstmgen.core.records import prepare

    final = trained[-1]
    loaded = resolve(str(app_studio.folder(final["model"])), use_hub=False)
    held_out = prepare(studio.visitor_record("check", "char", "tiny", 10), TEXT_50KB).val_ids
    assert loaded.tokenizer.encode(TEXT_50KB[int(len(TEXT_50KB) * 0.9):]).ids == list(held_out)
    streams = 16
    rows = torch.tensor(held_out[: len(held_out) // streams * streams]).view(streams, -1)

    def direct_loss(model) -> float:
        with torch.inference_mode():
            logits, _ = model(rows[:, :-1])
            log_p = logits.double() - logits.double().exp().sum(-1, keepdim=True).log()
            return float(-log_p.gather(-1, rows[:, 1:, None]).mean())

    assert final["val_loss"] == pytest.approx(direct_loss(loaded.model), abs=1e-4)
    assert final["val_loss_int8"] == pytest.approx(direct_loss(OrtModel(loaded.model, "int8")), abs=1e-4)
    kept = json.loads((app_studio.folder(final["model"]) / "metrics.json").read_text())["final"]
    assert final["val_loss"] == kept["val_float"]["loss"]  # the kept (best) model's figure, not the last step's
