"""train_space.py and `python -m lstmgen`, run as a person runs them: in their own processes.

One tiny char-shakespeare model trains in a few seconds on a made-up corpus; it writes a complete
model folder, resumes after a kill, trains under torchrun with two processes, refuses to start a
push it cannot finish, never prints the token, and the command line generates and evaluates with it.
"""

import json
import math
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from app_support import wait_until_serving
from lstmgen import hub
from lstmgen.core.data import batchify, num_batches
from lstmgen.engine.generate import generate
from lstmgen.hub import load_model_folder
from lstmgen.core.model import LSTMLanguageModel
from lstmgen.core.records import PRESETS, prepare
from lstmgen.engine.ort import OrtModel

PROJECT = Path(__file__).resolve().parent.parent
TINY = ["--preset", "char-shakespeare", "--embed-size", "16", "--hidden-size", "32", "--num-layers", "1",
        "--batch-size", "4", "--seq-len", "32", "--no-progress", "--threads", "1"]
MODEL_FILES = {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "loss_curve.png", "README.md"}


def made_up_play(size: int = 20_000) -> str:
    rng = random.Random(0)
    words = ("the king and queen of a far land spoke to brave knights about bread wine honey and bees "
             "abbots came by at night with lamps").split()
    speeches = []
    while sum(map(len, speeches)) < size:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(5, 14)))
        speeches.append(f"{rng.choice(['ABBOT', 'KING', 'QUEEN', 'BAKER'])}:\n{line.capitalize()}.\n\n")
    return "".join(speeches)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A folder holding the preset's one file, tinyshakespeare.txt (made up, ~20 KB)."""
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "tinyshakespeare.txt").write_text(made_up_play())
    return folder


def child_env(hf_home: Path, **overrides) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING_FACE_", "LSTMGEN_")) and k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               GRADIO_ANALYTICS_ENABLED="False", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    env.update(overrides)
    return env


def run(args: list, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], env=env, cwd=PROJECT, capture_output=True, text=True,
                          timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checkpoint(out: Path) -> dict:
    return torch.load(out / "last.pt", weights_only=True)


def steps_per_epoch(corpus: Path, streams: int) -> int:
    data = prepare(PRESETS["char-shakespeare"], (corpus / "tinyshakespeare.txt").read_text())
    return num_batches(batchify(data.train_ids, streams), 32)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One finished run: `python train_space.py --preset char-shakespeare` shrunk to seconds."""
    root = tmp_path_factory.mktemp("trained")
    out = root / "run"
    result = run(["train_space.py", *TINY, "--epochs", "2", "--data", corpus / "tinyshakespeare.txt", "--out", out],
                 child_env(root / "hf_home"))
    return out, result


# --------------------------------------------------------------------------- a run, end to end


def test_a_run_writes_a_complete_model_folder_that_loads_strictly(trained):
    out, result = trained
    assert result.returncode == 0, result.stderr[-3000:]
    folder = out / "model"
    assert f"model folder: {folder}" in result.stdout
    assert MODEL_FILES <= {p.name for p in folder.iterdir()}

    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["preset"] == "char-shakespeare" and metrics["kind"] == "char"
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    for name in ("val_float", "val_int8"):
        figure = metrics["final"][name]
        assert math.isfinite(figure["loss"]) and figure["loss"] > 0 and figure["bits_per_char"] > 0
    assert metrics["final"]["size_bytes"]["int8_in_memory"] < metrics["final"]["size_bytes"]["float32_in_memory"]

    png = (folder / "loss_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert width > 100 and height > 100 and len(png) > 5000

    card = (folder / "README.md").read_text()
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "lstmgen"
    assert {"lstm", "text-generation", "char"} <= set(front["tags"])
    assert front["datasets"] == ["karpathy/tiny_shakespeare"]
    evaluation = front["model-index"][0]["results"][0]
    assert evaluation["dataset"]["split"] == "validation"
    assert evaluation["metrics"] == [{"type": "loss", "value": round(metrics["final"]["val_float"]["loss"], 4)}]

    model, tokenizer = load_model_folder(folder)
    strict = LSTMLanguageModel.from_pretrained(folder, strict=True)
    assert model.hidden_size == strict.hidden_size == 32 and model.num_layers == 1  # the flags were applied
    assert tokenizer.vocab_size == model.vocab_size == metrics["vocab_size"]
    assert model.num_parameters() == metrics["parameters"]
    for a, b in zip(model.state_dict().values(), strict.state_dict().values()):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- resume after a kill


def test_a_new_run_can_start_from_a_finished_models_weights(trained, corpus, tmp_path):
    """--init-from continues a model whose checkpoint did not survive (a new machine): it starts
    where the weights left off instead of from scratch, and its history follows the earlier one's."""
    out, _ = trained
    first = json.loads((out / "model" / "metrics.json").read_text())["epochs"]
    again = tmp_path / "again"
    result = run(["train_space.py", *TINY, "--epochs", "1", "--data", corpus / "tinyshakespeare.txt", "--out", again,
                  "--init-from", out / "model"], child_env(tmp_path / "hf_home"))
    assert result.returncode == 0, result.stderr
    whole = json.loads((again / "model" / "metrics.json").read_text())["epochs"]
    assert whole[: len(first)] == first
    continued = whole[len(first):]
    assert [e["epoch"] for e in continued] == [len(first) + 1]
    assert continued[0]["val_loss"] < first[0]["val_loss"]


def test_a_killed_run_resumes_where_it_stopped(tmp_path, corpus):
    out = tmp_path / "run"
    env = child_env(tmp_path / "hf_home")
    args = [sys.executable, "train_space.py", *TINY, "--epochs", "2", "--checkpoint-every-s", "0",
            "--data", str(corpus / "tinyshakespeare.txt"), "--out", str(out)]
    first = subprocess.Popen(args, env=env, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and first.poll() is None:  # wait until it is a few steps into epoch 2
            if (out / "last.pt").is_file():
                state = checkpoint(out)
                if state["epoch"] == 1 and state["position"] >= 10 * 32:
                    break
            time.sleep(0.02)
        assert first.poll() is None, "the run ended before it could be killed:\n" + first.communicate()[0][-3000:]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    killed = checkpoint(out)
    assert killed["epoch"] == 1 and killed["position"] > 0, "killed in the middle of the second epoch"
    assert [e["epoch"] for e in json.loads((out / "metrics.json").read_text())["epochs"]] == [1]
    assert not (out / "model").exists()

    resumed = subprocess.run(args + ["--resume"], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=120)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {out / 'last.pt'}: epoch 2, step {killed['steps']}" in resumed.stdout
    assert "epoch 1:" not in resumed.stdout and "epoch 2:" in resumed.stdout
    for metrics in (out / "metrics.json", out / "model" / "metrics.json"):
        assert [e["epoch"] for e in json.loads(metrics.read_text())["epochs"]] == [1, 2]
    # Every window of both epochs was trained exactly once, across the kill.
    assert checkpoint(out)["steps"] == 2 * steps_per_epoch(corpus, streams=4)
    load_model_folder(out / "model")


# --------------------------------------------------------------------------- two processes


def test_two_processes_train_one_model_with_ddp(tmp_path, corpus):
    out = tmp_path / "run"
    env = child_env(tmp_path / "hf_home", MASTER_ADDR="127.0.0.1")
    result = run(["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                  "--master-port", free_port(), "train_space.py", *TINY, "--epochs", "1",
                  "--data", corpus / "tinyshakespeare.txt", "--out", out], env, timeout=180)

    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert result.stdout.count("epoch 1:") == 1 and result.stdout.count("model folder:") == 1  # rank 0 reports
    last = checkpoint(out)
    assert last["world"] == 2 and len(last["per_rank"]) == 2
    # 2 processes × 4 streams: the epoch takes half the steps one process with 4 streams needs.
    assert last["steps"] == steps_per_epoch(corpus, streams=8) < steps_per_epoch(corpus, streams=4)
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1]
    assert all(e["tokens_per_s"] > 0 for e in metrics["epochs"])
    load_model_folder(out / "model")


# --------------------------------------------------------------------------- pushing to the Hub


def test_push_without_a_token_stops_before_training(tmp_path, corpus):
    out = tmp_path / "run"
    result = run(["train_space.py", *TINY, "--epochs", "1", "--data", corpus / "tinyshakespeare.txt", "--out", out,
                  "--push-to-hub", "someone/repo"], child_env(tmp_path / "empty_hf_home"))
    assert result.returncode != 0
    assert "needs a Hugging Face token" in result.stderr and "HF_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr  # a message, not a crash
    assert "epoch" not in result.stdout and not out.exists()


def test_push_creates_the_repo_and_uploads_the_folder_with_the_token(monkeypatch, tmp_path):
    from huggingface_hub import HfApi

    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = dict(repo_id=repo_id, token=self.token, **kwargs)
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        calls["upload_folder"] = dict(token=self.token, **kwargs)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    url = hub.push(tmp_path, "someone/repo", "hf_secret")

    assert url == "https://huggingface.co/someone/repo"
    created = calls["create_repo"]
    assert created["repo_id"] == "someone/repo" and created["repo_type"] == "model" and created["exist_ok"] is True
    assert created["token"] == "hf_secret"
    uploaded = calls["upload_folder"]
    assert uploaded["folder_path"] == str(tmp_path) and uploaded["repo_id"] == "someone/repo"
    assert uploaded.get("repo_type", "model") == "model" and uploaded["token"] == "hf_secret"


def test_a_push_that_fails_at_the_network_never_prints_the_token(trained, corpus, tmp_path):
    """A push is retried by running the finished run again with --resume (no training): here it fails."""
    finished, result = trained
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "run"
    shutil.copytree(finished, out, ignore=shutil.ignore_patterns("model"))
    closed = free_port()  # nothing listens there: the upload fails at once
    env = child_env(tmp_path / "hf_home", HF_TOKEN="hf_secret_value", HF_HUB_OFFLINE="0",
                    HF_ENDPOINT=f"http://127.0.0.1:{closed}")
    pushed = run(["train_space.py", *TINY, "--epochs", "2", "--data", corpus / "tinyshakespeare.txt", "--out", out,
                  "--resume", "--push-to-hub", "someone/repo"], env)
    assert pushed.returncode != 0
    assert "resumed from" in pushed.stdout and "epoch 1:" not in pushed.stdout  # nothing left to train
    assert (out / "model" / "model.safetensors").is_file()  # the folder is written before the upload
    assert "Connect" in pushed.stderr or "Connection refused" in pushed.stderr
    assert "hf_secret_value" not in pushed.stdout and "hf_secret_value" not in pushed.stderr


# --------------------------------------------------------------------------- python -m lstmgen


def lstmgen_cli(*args) -> list:
    return [sys.executable, "-m", "lstmgen", *map(str, args)]


@pytest.fixture(scope="module")
def cli(trained, corpus, tmp_path_factory) -> dict:
    """`python -m lstmgen` on the trained model folder, every command started side by side (each one
    pays for importing torch). Returns {name: (returncode, stdout, stderr)}."""
    out, result = trained
    assert result.returncode == 0, result.stderr[-3000:]
    folder = out / "model"
    root = tmp_path_factory.mktemp("cli")
    other = root / "other"  # a corpus with other characters: its ids mean other things to the model
    other.mkdir()
    (other / "tinyshakespeare.txt").write_text("XYZ qrs? " * 2000)
    greedy = ["generate", "--model", folder, "--prompt", "ab", "--length", 20, "--seed", 1, "--temperature", 0]
    commands = {
        "generate": lstmgen_cli(*greedy),
        "generate again": lstmgen_cli(*greedy),
        "generate int8": lstmgen_cli(*greedy, "--int8"),
        "evaluate": lstmgen_cli("evaluate", "--model", folder, "--data", corpus),
        "evaluate other corpus": lstmgen_cli("evaluate", "--model", folder, "--data", other),
    }
    env = child_env(root / "hf_home")
    running = {name: subprocess.Popen(command, env=env, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True) for name, command in commands.items()}
    outputs = {name: process.communicate(timeout=180) for name, process in running.items()}
    return {name: (running[name].returncode, *outputs[name]) for name in commands} | {"folder": folder,
                                                                                       "other": other}


def test_generate_prints_the_prompt_and_its_continuation_reproducibly(cli):
    folder = cli["folder"]
    code, text, stderr = cli["generate"]
    assert code == 0, stderr[-3000:]
    assert text.startswith("ab") and text.endswith("\n") and len(text) == 2 + 20 + 1  # stdout holds the text only
    assert f"# local folder {folder}" in stderr
    assert cli["generate again"][:2] == (0, text)
    model, tokenizer = load_model_folder(folder)
    assert text[:-1] == generate(model, tokenizer, "ab", 20, temperature=0, seed=1)

    code, int8_text, int8_stderr = cli["generate int8"]
    assert code == 0, int8_stderr[-3000:]
    assert "(int8)" in int8_stderr and int8_text.startswith("ab") and len(int8_text) == 2 + 20 + 1
    assert int8_text[:-1] == generate(OrtModel(model, "int8"), tokenizer, "ab", 20, temperature=0, seed=1)


def test_evaluate_reproduces_the_figure_in_metrics_json(cli):
    folder = cli["folder"]
    figure = json.loads((folder / "metrics.json").read_text())["final"]["val_float"]
    code, stdout, stderr = cli["evaluate"]
    assert code == 0, stderr[-3000:]
    report = json.loads(stdout)  # stdout holds the JSON report only
    assert report["model"] == f"local folder {folder}" and report["split"] == "val" and report["int8"] is False
    assert report["tokens"] == figure["tokens"]
    assert report["loss"] == pytest.approx(figure["loss"], rel=1e-6)
    assert report["bits_per_char"] == pytest.approx(figure["bits_per_char"], rel=1e-6)


def test_evaluate_refuses_a_corpus_that_does_not_give_the_models_tokenizer(cli):
    code, stdout, stderr = cli["evaluate other corpus"]
    assert code == 2
    assert "tokenizer" in stderr and str(cli["other"]) in stderr
    assert stdout == ""


# --------------------------------------------------------------------------- any corpus, any tokenizer


REVIEWS = ["a wonderful film with a moving story and great acting", "the plot was dull and the acting was worse",
           "i loved the music and the story of the old king", "a boring film , i fell asleep before the end",
           "great fun for the whole family and a happy end"]


def imdb_like_folder(root: Path) -> Path:
    """A local folder laid out as the Hub lays out stanfordnlp/imdb: plain_text/{train,test}-00000-of-00001.parquet."""
    from datasets import Dataset

    rng = random.Random(1)
    folder = root / "imdb"
    (folder / "plain_text").mkdir(parents=True)
    for split, rows in (("train", 400), ("test", 50)):
        texts = [" ".join(rng.choice(REVIEWS) for _ in range(3)) for _ in range(rows)]
        Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(rows)]}).to_parquet(
            str(folder / "plain_text" / f"{split}-00000-of-00001.parquet"))
    return folder


def test_a_new_word_model_trains_on_a_hub_shaped_dataset_and_the_app_serves_it_as_a_fourth_model(tmp_path):
    out = tmp_path / "out"
    result = run(["train_space.py", "--tokenizer", "word", "--dataset", imdb_like_folder(tmp_path), "--text-column",
                  "text", "--split", "train", "--epochs", "1", "--time-budget", "15", "--hidden-size", "32",
                  "--embed-size", "16", "--num-layers", "1", "--no-progress", "--threads", "1", "--out", out],
                 child_env(tmp_path / "hf_home"))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert metrics["kind"] == "word" and metrics["record"]["name"] == "word-imdb"
    assert metrics["vocab_size"] > 10 and math.isfinite(metrics["final"]["val_float"]["loss"])

    # `python app.py --no-hub --model OUT/model` serves it beside the shipped three (LSTMGEN_MODELS works alike).
    from gradio_client import Client

    port = free_port()
    server = subprocess.Popen([sys.executable, "app.py", "--no-hub", "--port", str(port), "--model", str(out / "model")],
                              env=child_env(tmp_path / "hf_home"), cwd=PROJECT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_serving(url, server, timeout_s=90)
        client = Client(url, verbose=False)
        models = client.predict(api_name="/models")
        assert list(models)[:3] == ["char", "subword", "word"] and models["word-imdb"]["loaded"] is True
        result = client.predict("word-imdb", "a wonderful", 0.8, 5, 0, 1.0, 1, False, api_name="/generate")
        assert result["float32"]["tokens"] == 5
    finally:
        server.terminate()
        server.wait(20)


def test_a_dataset_without_the_text_column_is_refused_clearly(tmp_path):
    result = run(["train_space.py", "--tokenizer", "char", "--dataset", imdb_like_folder(tmp_path), "--text-column",
                  "review", "--epochs", "1"], child_env(tmp_path / "hf_home"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "has no column 'review'" in result.stderr and "--text-column" in result.stderr


# --------------------------------------------------------------------------- every command fails politely


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """A failed command: non-zero exit, no traceback, and its last line says what went wrong."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_the_word_preset_without_the_books_names_the_files_and_the_data_option(tmp_path):
    env = child_env(tmp_path / "hf_home")  # LSTMGEN_DATA is not passed on: the books are nowhere
    for command in (["train_space.py", "--preset", "word-harrypotter", "--epochs", "1"],
                    ["-m", "lstmgen", "evaluate", "--model", "word-harrypotter", "--no-hub"]):
        line = one_line_error(run(command, env))
        assert "harrypotter/1.txt" in line and "--data" in line and "LSTMGEN_DATA" in line


def test_the_shakespeare_presets_train_on_a_fresh_clone_without_a_data_folder(tmp_path):
    result = run(["train_space.py", "--preset", "char-shakespeare", "--epochs", "1", "--hidden-size", "64",
                  "--num-layers", "1", "--time-budget", "20", "--no-progress", "--threads", "1", "--out", tmp_path / "o"],
                 child_env(tmp_path / "hf_home"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert MODEL_FILES <= {p.name for p in (tmp_path / "o" / "model").iterdir()}


def test_a_damaged_model_folder_is_refused_in_one_line_and_nothing_is_unpickled(trained, tmp_path):
    out, _ = trained
    truncated = tmp_path / "truncated"
    shutil.copytree(out / "model", truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(out / "model" / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"not even a pickle")
    env = child_env(tmp_path / "hf_home")
    line = one_line_error(run(["-m", "lstmgen", "generate", "--model", truncated, "--no-hub"], env))
    assert "truncated" in line and str(weights) in line
    line = one_line_error(run(["-m", "lstmgen", "generate", "--model", pickled, "--no-hub"], env))
    assert "pickled weights are never loaded: pytorch_model.bin" in line
    line = one_line_error(run(["-m", "lstmgen", "generate", "--model", "nobody/nothing", "--no-hub"], env))
    assert "not a model folder, not a preset" in line


def test_bad_sampling_settings_on_the_command_line_are_refused_with_the_apps_limits(tmp_path):
    result = run(["-m", "lstmgen", "generate", "--model", "char-shakespeare", "--no-hub", "--temperature", "3"],
                 child_env(tmp_path / "hf_home"))
    assert "temperature must be between 0.0 and 2.0" in one_line_error(result)
    result = run(["train_space.py", "--preset", "char-shakespeare", "--dropout", "1.5"], child_env(tmp_path / "hf_home"))
    assert "dropout must be between 0.0 and 0.95, got 1.5" in one_line_error(result)


def test_resuming_from_a_damaged_checkpoint_names_it_and_keeps_it(trained, corpus, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    result = run(["train_space.py", *TINY, "--epochs", "1", "--data", corpus / "tinyshakespeare.txt", "--out", out,
                  "--resume"], child_env(tmp_path / "hf_home"))
    line = one_line_error(result)
    assert str(out / "last.pt") in line and "kept" in line
    assert (out / "last.pt").read_bytes() == b"PK\x03\x04 truncated"


# --------------------------------------------------------------------------- one recipe for new models


def test_a_new_model_from_the_command_line_learns_as_the_apps_train_your_own_does(tmp_path):
    """`train_space.py --tokenizer char --data FILE` (no preset) trains with the app's recipe for new models
    (lstmgen/core/records.py): on the same 20 KB text, in the same 15-second budget, on one torch thread each,
    its validation loss is the Train your own tab's within 0.05 (it was 3.43 against 1.86 at 60 s)."""
    from lstmgen.serve import studio

    text = (PROJECT / "data" / "tinyshakespeare.txt").read_text()[:20_000]
    source = tmp_path / "shakespeare-20k.txt"
    source.write_text(text)

    run_dir = tmp_path / "app" / "yours-test"  # the app's path, as Studio runs it: one torch thread
    run_dir.mkdir(parents=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(studio.TRAINING.seed)  # as train_space.py seeds before it builds the model
        app_done = list(studio.run_training(str(run_dir), text, "char", "small", 15))[-1]
    finally:
        torch.set_num_threads(threads)
    assert app_done["status"] == "done", app_done

    out = tmp_path / "cli"  # the command line's path, with the recipe's defaults: nothing but the budget given
    result = run(["train_space.py", "--tokenizer", "char", "--data", source, "--time-budget", "15", "--no-progress",
                  "--out", out], child_env(tmp_path / "hf_home"), timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]

    app = json.loads((Path(app_done["folder"]) / "metrics.json").read_text())
    cli = json.loads((out / "model" / "metrics.json").read_text())
    assert cli["training"]["model"] == app["training"]["model"]  # the small model: one 256-wide layer
    run_only = {"checkpoint_every_s", "progress"}  # the app neither resumes nor draws progress bars
    assert {k: v for k, v in cli["training"].items() if k not in run_only} == \
        {k: v for k, v in app["training"].items() if k not in run_only}
    assert cli["training"]["threads"] == 1 and cli["training"]["time_budget_s"] == 15
    app_loss, cli_loss = app["final"]["val_float"]["loss"], cli["final"]["val_float"]["loss"]
    assert abs(cli_loss - app_loss) <= 0.05, (cli_loss, app_loss)
    assert cli_loss < 2.2  # it learned: a uniform guess over ~60 characters is 4.1


def test_a_new_model_without_a_time_budget_is_refused_before_training(tmp_path, corpus):
    """The recipe fits its rate to the time budget: `--time-budget 0` alone would train at the peak rate for
    10,000 epochs, so it is refused in one line."""
    out = tmp_path / "run"
    line = one_line_error(run(["train_space.py", "--tokenizer", "char", "--data", corpus / "tinyshakespeare.txt",
                               "--time-budget", "0", "--out", out], child_env(tmp_path / "hf_home")))
    assert "--time-budget" in line and "--lr-schedule" in line
    assert not out.exists()


# --------------------------------------------------------------------------- a Hub dataset's revision

DATASET_RECORD = r"""
import json, sys
from lstmgen.core.data import CorpusError
from lstmgen.training.run import TrainCommand
answers = {}
for revision in (None, "v1", "no-such-tag"):
    try:
        corpus = TrainCommand(tokenizer="char", dataset="someone/plays", dataset_revision=revision).record().corpus
        answers[str(revision)] = corpus.dataset_revision
    except CorpusError as error:
        answers[str(revision)] = f"refused: {error}"
print(json.dumps(answers))
"""


def test_a_hub_datasets_revision_is_resolved_to_the_commit_that_is_read_and_recorded(tmp_path):
    """`--dataset-revision` (a tag here) and no revision (main) each become the commit they name before the text
    is read: the text is read at that commit (read_corpus passes it to `datasets`), and metrics.json and the card
    keep it (record.to_metrics, tests/test_hub.py for the card). A revision the Hub does not have is refused."""
    from app_support import StandInHub

    from lstmgen.core.data import Corpus
    from lstmgen.core.records import new_model

    hub = StandInHub()
    try:
        first = hub.commit("datasets/someone/plays", {"train.txt": b"ROMEO: one\n"})
        latest = hub.commit("datasets/someone/plays", {"train.txt": b"ROMEO: two\n"})
        hub.repos["datasets/someone/plays"]["tags"]["v1"] = first
        env = child_env(tmp_path / "hf_home", HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0")
        done = subprocess.run([sys.executable, "-c", DATASET_RECORD], env=env, cwd=PROJECT, capture_output=True,
                              text=True, timeout=120)
    finally:
        hub.close()
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert answers["None"] == latest and answers["v1"] == first
    assert answers["no-such-tag"].startswith("refused: cannot find revision 'no-such-tag' of the dataset someone/plays")

    corpus = Corpus(name="someone/plays", dataset="someone/plays", dataset_revision=first)
    kept = new_model("plays", "char", corpus).to_metrics()
    assert kept["dataset"] == {"id": "someone/plays", "revision": first, "split": "train", "text_column": "text"}


def test_a_dataset_revision_for_a_local_folder_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "plays"
    folder.mkdir()
    result = run(["train_space.py", "--tokenizer", "char", "--dataset", folder, "--dataset-revision", "v1",
                  "--time-budget", "5"], child_env(tmp_path / "hf_home"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--dataset-revision is for a Hub dataset" in result.stderr
