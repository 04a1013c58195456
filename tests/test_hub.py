"""Where a model comes from and what is refused.

`resolve(name)` takes a local folder, else the Hub (through huggingface_hub's real `snapshot_download`
and cache), else the weights bundled with the package; it never waits long for the Hub, never fetches
or unpickles a pickle, and a damaged folder is refused with a message that names the file at fault.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is imported, so everything that
talks to a (local, fake) Hub runs in a child process with its own environment.
"""

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

import pytest
import torch

from app_support import StandInHub
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


# --------------------------------------------------------------------------- a stand-in Hub on 127.0.0.1


@pytest.fixture
def fake_hub():
    hub = StandInHub()
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
name = args["name"]
if args.get("revision"):  # a preset's record, pinned to this revision (as the shipped records are)
    from dataclasses import replace
    from lstmgen.core.records import PRESETS
    name = replace(PRESETS[name], revision=args["revision"])
started = time.perf_counter()
loaded = hub.resolve(name)
elapsed = time.perf_counter() - started
with torch.no_grad():
    logits = loaded.model(torch.tensor([args["probe"]]))[0].tolist()
from lstmgen.serve.service import where_from
print(json.dumps({"source": loaded.source, "folder": str(loaded.folder), "fallback_reason": loaded.fallback_reason,
                  "preset": loaded.preset, "elapsed": elapsed, "logits": logits, "origin": loaded.origin,
                  "repo": loaded.repo, "revision": loaded.revision, "commit": loaded.commit,
                  "panel": where_from(loaded)}))
"""


def child_env(hf_home: Path, **overrides) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "LSTMGEN_"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               GRADIO_ANALYTICS_ENABLED="False", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    env.update(overrides)
    return env


def resolve_in_child(name: str, env: dict, pretrained: Path | None = None, timeout: float = 90,
                     revision: str | None = None) -> dict:
    """resolve(name) in a child process; with `revision`, `name` is a preset whose record pins that revision."""
    args = json.dumps({"name": name, "pretrained": str(pretrained) if pretrained else None, "probe": PROBE,
                       "revision": revision})
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
    assert "pytorch_model.bin" in fake_hub.files("someone/tiny")
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

    assert loaded["source"] == f"Hub owner/name@{commit[:12]} (this machine's Hub cache)"
    assert loaded["origin"] == "cache" and loaded["commit"] == commit
    assert Path(loaded["folder"]) == storage / "snapshots" / commit
    assert torch.equal(torch.tensor(loaded["logits"]), torch.tensor(logits_of(original)))


# --------------------------------------------------------------------------- pinned revisions


def test_a_pinned_revision_is_served_after_main_has_moved_on(tmp_path, fake_hub):
    """"owner/name@revision" (in --model, LSTMGEN_REPO_<NAME> or a record) is that commit or tag, not main."""
    first, second = tmp_path / "first", tmp_path / "second"
    pinned_model, latest_model = save_tiny_model(first, seed=1), save_tiny_model(second, seed=2)
    pinned = fake_hub.add_repo("someone/tiny", first)
    latest = fake_hub.add_repo("someone/tiny", second)
    fake_hub.repos["someone/tiny"]["tags"]["v1"] = pinned

    cases = {"someone/tiny": (latest, None), f"someone/tiny@{pinned}": (pinned, pinned),
             "someone/tiny@v1": (pinned, "v1")}
    for name, (commit, revision) in cases.items():
        env = child_env(tmp_path / f"hf_home_{len(name)}", HF_ENDPOINT=fake_hub.url, HF_HUB_OFFLINE="0")
        loaded = resolve_in_child(name, env)
        expected = pinned_model if commit == pinned else latest_model
        assert torch.equal(torch.tensor(loaded["logits"]), torch.tensor(logits_of(expected))), name
        assert loaded["source"] == f"Hub someone/tiny@{commit[:12]}" and loaded["origin"] == "hub", name
        assert (loaded["commit"], loaded["revision"]) == (commit, revision), name
        assert loaded["panel"] == ("Downloaded from the Hugging Face Hub repo someone/tiny"
                                   + (f" (revision {revision})" if revision else "") + " when the app started.")

    # A shipped model's repo named by the operator, with its revision.
    env = child_env(tmp_path / "hf_home_operator", HF_ENDPOINT=fake_hub.url, HF_HUB_OFFLINE="0",
                    LSTMGEN_REPO_CHAR_SHAKESPEARE="someone/tiny@v1")
    loaded = resolve_in_child(PRESET, env)
    assert loaded["commit"] == pinned and torch.equal(torch.tensor(loaded["logits"]), torch.tensor(logits_of(pinned_model)))


def test_a_pinned_revision_in_the_cache_is_served_without_asking_the_hub(tmp_path, fake_hub, bundled):
    """Once downloaded, a pinned revision is read from the cache first: a Hub that never answers costs nothing
    (not even a connection); an unpinned repo asks the Hub first, and then serves the cache."""
    pretrained, _ = bundled
    repo = tmp_path / "repo"
    original = save_tiny_model(repo, seed=3)
    commit = fake_hub.add_repo("someone/tiny", repo)
    hf_home = tmp_path / "hf_home"
    resolve_in_child("someone/tiny", child_env(hf_home, HF_ENDPOINT=fake_hub.url, HF_HUB_OFFLINE="0"))  # main

    hole = BlackHole()
    try:
        env = child_env(hf_home, HF_ENDPOINT=hole.url, HF_HUB_OFFLINE="0", LSTMGEN_HUB_TIMEOUT="2",
                        LSTMGEN_REPO_CHAR_SHAKESPEARE=f"someone/tiny@{commit}")
        pinned = resolve_in_child(PRESET, env, pretrained=pretrained)
        assert not hole.connections  # the Hub was not asked at all
        env["LSTMGEN_REPO_CHAR_SHAKESPEARE"] = "someone/tiny"
        unpinned = resolve_in_child(PRESET, env, pretrained=pretrained)
        assert hole.connections  # main may have moved on: the Hub was asked first
    finally:
        hole.close()
    for loaded in (pinned, unpinned):
        assert loaded["origin"] == "cache" and loaded["commit"] == commit, loaded["fallback_reason"]
        assert loaded["source"] == f"Hub someone/tiny@{commit[:12]} (this machine's Hub cache)"
        assert torch.equal(torch.tensor(loaded["logits"]), torch.tensor(logits_of(original)))
    assert pinned["elapsed"] < 1.5 and unpinned["elapsed"] >= 2  # the cache at once; the Hub's time-out first
    assert pinned["panel"] == (f"Read from this server's copy of the Hugging Face Hub repo someone/tiny (revision "
                               f"{commit}), saved on an earlier start: the same files, without asking the Hub.")


def test_a_shipped_models_push_is_tagged_with_the_revision_its_record_pins(tmp_path, fake_hub):
    """hub.push tags a shipped model's upload with weights_revision() of its folder; a record pinning that tag
    is served those weights after main has moved on."""
    from lstmgen.core.records import weights_revision

    shipped, newer = tmp_path / "shipped", tmp_path / "newer"
    shipped_model = save_tiny_model(shipped, seed=4)
    save_tiny_model(newer, seed=5)
    env = child_env(tmp_path / "hf_home", HF_ENDPOINT=fake_hub.url, HF_HUB_OFFLINE="0")
    code = ("import sys; from lstmgen import hub; hub.push(sys.argv[1], 'lstmgen/char-shakespeare', "
            "'hf_write_token')")
    for folder in (shipped, newer):
        pushed = subprocess.run([sys.executable, "-c", code, str(folder)], env=env, cwd=PROJECT, capture_output=True,
                                text=True, timeout=120)
        assert pushed.returncode == 0, pushed.stderr[-3000:]
    tags = fake_hub.repos["lstmgen/char-shakespeare"]["tags"]
    assert set(tags) == {weights_revision(shipped), weights_revision(newer)}
    assert fake_hub.files("lstmgen/char-shakespeare", tags[weights_revision(shipped)])["model.safetensors"] == \
        (shipped / "model.safetensors").read_bytes()

    loaded = resolve_in_child(PRESET, env, revision=weights_revision(shipped))
    assert loaded["revision"] == weights_revision(shipped) and loaded["commit"] == tags[weights_revision(shipped)]
    assert torch.equal(torch.tensor(loaded["logits"]), torch.tensor(logits_of(shipped_model)))


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


# --------------------------------------------------------------------------- published cards

PUBLISH = r"""
import json, shutil, sys
from pathlib import Path
from lstmgen.core.data import DatasetText
from lstmgen.serve.studio import Studio, publish

args = json.loads(sys.argv[1])
text = Path(args["text_file"]).read_text()
studio = Studio(root=args["root"], sweep_every_s=0)
answers = {}
for name, dataset, license in args["publish"]:
    # What the Train tab gives the studio: pasted text, or the reading of a Hub dataset (read_hub_dataset's answer).
    source = (lambda: DatasetText(text, dataset, args["commit"], "train", "text")) if dataset else text
    updates = list(studio.train(source, "char", "tiny", 2, client="tester"))
    key, folder = updates[-1]["model"], studio.folder(updates[-1]["model"])
    shutil.copytree(folder, Path(args["copies"]) / name)  # the studio deletes its folders when the process ends
    url = publish(folder, name, "hf_write_token", **({"license": license} if license else {}))
    answers[name] = {"key": key, "url": url}
print(json.dumps(answers))
"""


def test_a_visitors_published_card_tells_the_truth(tmp_path, fake_hub):
    """Two visitors' models, published to the stand-in Hub as the Train tab publishes them: one trained on a
    Hub dataset with a license chosen, one on pasted text with the default. Each card is read as the Hub
    received it: its title and model-index name are the repo's name, its key is nowhere, `datasets:` holds
    only the Hub dataset (with the commit read), the license is the publisher's, and it says what the model
    cannot do and what each figure was measured on."""
    from huggingface_hub import ModelCard

    text_file = tmp_path / "text.txt"
    text_file.write_text((PROJECT / "data" / "tinyshakespeare.txt").read_text()[:40_000])
    commit = "c0ffee" * 6 + "c0ff"
    args = {"text_file": str(text_file), "root": str(tmp_path / "studio"), "copies": str(tmp_path / "copies"),
            "commit": commit, "publish": [["plays-lstm", "someone/plays", "cc-by-4.0"], ["my-lstm", None, None]]}
    env = child_env(tmp_path / "hf_home", HF_ENDPOINT=fake_hub.url, HF_HUB_OFFLINE="0", LSTMGEN_TRAIN_MIN_SECONDS="1")
    done = subprocess.run([sys.executable, "-c", PUBLISH, json.dumps(args)], env=env, cwd=PROJECT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])

    for name, dataset, license in args["publish"]:
        repo_id, key = f"visitor/{name}", answers[name]["key"]
        assert answers[name]["url"].endswith(repo_id)
        uploaded = fake_hub.files(repo_id)
        folder = tmp_path / "copies" / name
        # Nothing in the repo or the folder holds the key, the only way to the model on the server.
        for files in (uploaded, {p.name: p.read_bytes() for p in folder.iterdir()}):
            assert not [file for file, data in files.items() if key.encode() in data or key[6:].encode() in data]
        # The files are the folder's, the card written for the repo.
        assert {f: d for f, d in uploaded.items() if f != "README.md"} == \
            {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "README.md"}
        config = json.loads(uploaded["config.json"])
        assert config["hidden_size"] == 128 and config["vocab_size"] == len(set(text_file.read_text()[:36_000]))

        card = uploaded["README.md"].decode()
        data = ModelCard(card).data
        assert data.model_name == name and card.split("\n---\n", 1)[1].lstrip().startswith(f"# {name}\n")
        assert f'"{repo_id}"' in card  # the usage example loads this repo
        assert data.license == (license or "other")
        if license is None:
            assert "The publisher chose no standard license (`other`)" in card
        if dataset:
            assert data.datasets == [dataset]
            assert data.eval_results[0].dataset_type == dataset and data.eval_results[0].dataset_revision == commit
            assert f"read at commit `{commit}`" in card
        else:
            assert data.datasets is None and "not on the Hugging Face Hub" in card
        assert "## Intended uses and limitations" in card and "A small LSTM" in card
        # Each figure with the text it was measured on, as metrics.json holds it.
        final = json.loads(uploaded["metrics.json"])["final"]
        for key_, label in (("val_float", "validation text (the last 10%) · as stored"),
                            ("val_int8", "validation text (the last 10%) · int8 copy")):
            figure = final[key_]
            assert f"| {label} | {figure['tokens']:,} | {figure['loss']:.4f} | {figure['perplexity']:.2f} |" in card


def test_a_publish_with_a_license_outside_the_list_is_refused_before_the_hub_is_asked(tmp_path):
    from lstmgen.hub import PublishError
    from lstmgen.serve.studio import LICENSES, publish

    assert LICENSES[0] == "other"  # the default
    with pytest.raises(PublishError, match="choose a license among other, mit"):
        publish(tmp_path, "my-lstm", "hf_write_token", license="mine-all-mine")


# --------------------------------------------------------------------------- the Space on the Hub


def test_the_space_front_matter_names_its_models_data_license_and_gradio_as_pinned():
    """The README's front matter is what the Hub reads for the Space: the shipped models' repos, the Hub
    dataset their text is, tags and hardware; MIT, with the LICENSE file; the Gradio version requirements.txt
    pins."""
    import re

    import yaml

    from lstmgen.core.records import PRESETS

    front = yaml.safe_load((PROJECT / "README.md").read_text().split("---\n")[1])
    assert front["models"] == [record.repo_id for record in PRESETS.values()]
    assert front["datasets"] == sorted({r.corpus.hub_dataset for r in PRESETS.values() if r.corpus.hub_dataset})
    assert front["tags"] and front["suggested_hardware"] == "zero-a10g"
    assert front["license"] == "mit" and (PROJECT / "LICENSE").read_text().startswith("MIT License")
    assert all(record.license == "mit" for record in PRESETS.values())  # the cards say the project's license
    pinned = re.search(r"^gradio\[[a-z,]+\]==([\d.]+)", (PROJECT / "requirements.txt").read_text(), re.MULTILINE)
    assert pinned and pinned.group(1) == front["sdk_version"]


@pytest.mark.parametrize("name, refusal", [
    ("someone-else/my-lstm", "give only the repo's name"), ("my lstm", "give the repo a name"),
    ("-lstm", "give the repo a name"), ("my--lstm", "give the repo a name"), ("lstm.git", "give the repo a name"),
    ("x" * 97, "give the repo a name"), ("café", "give the repo a name"), ("", "give the repo a name")])
def test_a_repo_name_is_checked_as_the_hub_checks_it_and_only_a_name_is_taken(name, refusal):
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from lstmgen.hub import PublishError, check_repo_name

    with pytest.raises(PublishError, match=refusal):
        check_repo_name(name)
    if "/" not in name:  # huggingface_hub refuses it too
        with pytest.raises(HFValidationError):
            validate_repo_id(name)
    assert check_repo_name(" my-lstm_2.0 ") == "my-lstm_2.0"
