"""lstmgen as a package: `pip install .` gives `import lstmgen` and the `lstmgen` and `lstmgen-train` commands, and
three lines use any model, float32 or int8:

    import lstmgen
    model = lstmgen.load("someone/char-mine")          # or a local folder; int8=True for the compressed copy
    print(model.generate("ROMEO:", length=200, temperature=0.8))

Each figure the model gives (next_tokens, score, cells) is checked here against the network computed another
way: the torch model teacher-forced for the float32 copy, the int8 step graph stepped token by token for the
int8 one. A published model's card shows those three lines with its own repo id, and they run against a
stand-in Hub."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import lstmgen
from lstmgen.core.files import PRETRAINED_DIR
from lstmgen.core.settings import SettingError
from lstmgen.hub import ModelLoadError
from app_support import StandInHub
from test_readme import plan, snippets

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "ROMEO:\nBut soft, what light"
TEXT = "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\n"


def child_env(**overrides) -> dict:
    """This environment without Hub, dataset or lstmgen settings of its own, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_", "LSTMGEN_"))}
    env.update(HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", **overrides)
    return env


# --------------------------------------------------------------------------- the package


def test_import_lstmgen_is_light_and_names_the_public_api():
    code = ("import sys, lstmgen; print(json.dumps([lstmgen.__all__, sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('torch', 'onnxruntime', 'gradio', 'huggingface_hub'))]))")
    result = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, cwd=ROOT,
                            env=child_env())
    assert result.returncode == 0, result.stderr
    names, heavy = json.loads(result.stdout)
    assert names == ["load", "Model", "CellValues"] and heavy == []
    assert [getattr(lstmgen, name).__name__ for name in names] == names  # each resolves, on first use


def checkout_copy(destination: Path) -> Path:
    """The checkout's files as they would be committed (tracked and new, not ignored), copied: building in place
    would leave build/ and lstmgen.egg-info/ in the checkout."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    return destination


def requirements(lines) -> list[str]:
    """Requirement lines, comments dropped, each written one way (packaging's)."""
    from packaging.requirements import Requirement

    lines = (line.split("#", 1)[0].strip() for line in lines)
    return sorted(str(Requirement(line)) for line in lines if line)


def test_a_wheel_of_the_checkout_installs_lstmgen_and_its_commands_which_run_from_another_folder(tmp_path):
    source, wheels, target, elsewhere = (tmp_path / name for name in ("source", "wheels", "target", "elsewhere"))
    for folder in (source, elsewhere):
        folder.mkdir()
    checkout_copy(source)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # No build isolation: the build uses this machine's setuptools, and no network.
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(wheels)], check=True,
                   capture_output=True, env=child_env())
    wheel = next(wheels.glob("lstmgen-*.whl"))

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA")).rsplit("/", 1)[0]
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert {name.split("/")[0] for name in names} == {"lstmgen", info}  # no bench/, data/, tests/, app.py
    shipped = {p.relative_to(ROOT).as_posix() for p in PRETRAINED_DIR.rglob("*") if p.is_file()}
    assert shipped and shipped <= set(names)  # the weights, tokenizers, cards and figures of the shipped models
    assert "lstmgen/py.typed" in names
    depends = [line.removeprefix("Requires-Dist:") for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    # The Space's pins, read from requirements.txt.
    assert requirements(depends) == requirements((ROOT / "requirements.txt").read_text().splitlines())
    assert "lstmgen = lstmgen.__main__:console" in entry_points
    assert "lstmgen-train = lstmgen.__main__:train_console" in entry_points

    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True,
                   capture_output=True, env=child_env())
    env = child_env(PYTHONPATH=str(target), HF_HUB_OFFLINE="1")  # the installed copy, and no checkout
    where = subprocess.run([sys.executable, "-c", "import lstmgen; print(lstmgen.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(target)

    generated = subprocess.run([target / "bin" / "lstmgen", "generate", "--model", "char", "--prompt", "ROMEO:",
                                "--seed", "1", "--length", "100"], cwd=elsewhere, env=env, capture_output=True,
                               text=True, timeout=120)
    assert generated.returncode == 0, generated.stderr[-2000:]
    assert "bundled" in generated.stderr and "100 tokens" in generated.stderr
    # The checkout's engine, seeded alike, writes the same text.
    expected = lstmgen.load(PRETRAINED_DIR / "char-shakespeare").generate("ROMEO:", length=100, seed=1)
    assert generated.stdout == expected + "\n"

    helped = subprocess.run([target / "bin" / "lstmgen-train", "--help"], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert helped.stdout.startswith("usage: lstmgen-train") and "--push-to-hub" in helped.stdout
    assert not list(elsewhere.iterdir())  # neither command wrote where it ran


# --------------------------------------------------------------------------- the three lines, and beside them


@pytest.fixture(scope="module")
def char():
    return lstmgen.load("char")  # offline here (tests/conftest.py): the weights that ship


@pytest.fixture(scope="module")
def char_int8():
    return lstmgen.load(PRETRAINED_DIR / "char-shakespeare", int8=True)  # a local folder


@pytest.fixture(scope="module")
def word():
    return lstmgen.load("word")


def float32_logits(model, ids: list[int]) -> torch.Tensor:
    """The torch model teacher-forced over `ids`: (len(ids), vocab), float64."""
    with torch.inference_mode():
        logits = model.loaded.model(torch.tensor([ids]))[0][0]
    return logits.double().clone()  # a plain tensor, outside inference mode


def int8_steps(model, ids: list[int]) -> tuple[torch.Tensor, list[tuple]]:
    """The int8 step graph (what generates) stepped token by token: each step's logits, and (h, c) after it."""
    engine, state = model.engine.new_engine(), None
    logits, states = [], []
    for token in ids:
        values, state = engine.step(token, state)
        logits.append(values.double().clone())
        states.append(tuple(s.clone() for s in state))
    return torch.stack(logits), states


def test_generate_writes_the_prompt_then_the_new_text(char):
    text = char.generate("ROMEO:", length=200, temperature=0.8, seed=3)
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 200  # a letter a token
    assert char.generate("ROMEO:", length=200, temperature=0.8, seed=3) == text  # a seed repeats a text


@pytest.mark.parametrize("copy", ["float32", "int8"])
def test_greedy_generation_takes_the_most_likely_letter_each_step(copy, char, char_int8):
    model = char if copy == "float32" else char_int8
    ids = model.tokenizer.encode("ROMEO:").ids
    for _ in range(40):
        logits = float32_logits(model, ids)[-1] if copy == "float32" else int8_steps(model, ids)[0][-1]
        ids.append(int(logits.argmax()))
    assert model.generate("ROMEO:", length=40, temperature=0) == model.tokenizer.decode(ids)


@pytest.mark.parametrize("copy", ["float32", "int8"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_next_tokens_are_the_k_most_likely_with_their_probabilities(copy, temperature, char, char_int8):
    model = char if copy == "float32" else char_int8
    ids = model.tokenizer.encode(PROMPT).ids
    logits = float32_logits(model, ids)[-1] if copy == "float32" else int8_steps(model, ids)[0][-1]
    probabilities = torch.softmax(logits / temperature, -1)
    expected = [(model.tokenizer.piece(int(i)), float(probabilities[i])) for i in probabilities.argsort(descending=True)[:5]]
    listed = model.next_tokens(PROMPT, k=5, temperature=temperature)
    assert [piece for piece, _ in listed] == [piece for piece, _ in expected]
    assert [p for _, p in listed] == pytest.approx([p for _, p in expected], rel=1e-4, abs=1e-7)


def test_next_tokens_of_a_word_model_are_written_as_generation_writes_them(word):
    """Each listed token is the text it adds after the prompt (spaced and cased); the first is what greedy
    generation writes."""
    listed = word.next_tokens("Harry looked at", k=5)
    assert len(listed) == 5 and all(piece.startswith(" ") for piece, _ in listed)
    assert word.generate("Harry looked at", length=1, temperature=0) == "Harry looked at" + listed[0][0]
    ids = word.tokenizer.encode("Harry looked at").ids
    special = sorted(word.tokenizer.special_ids.values())
    logits = float32_logits(word, ids)[-1]
    logits[special] = -math.inf  # special tokens are masked, as generation masks them
    assert [p for _, p in listed] == pytest.approx(torch.softmax(logits, -1).sort(descending=True).values[:5].tolist(),
                                                   rel=1e-4)


@pytest.mark.parametrize("copy", ["float32", "int8"])
def test_score_is_the_texts_loss_token_by_token(copy, char, char_int8):
    model = char if copy == "float32" else char_int8
    ids = model.tokenizer.encode(TEXT).ids
    logits = float32_logits(model, ids) if copy == "float32" else int8_steps(model, ids)[0]
    nats = -torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    score = model.score(TEXT)
    assert score.tokens == len(ids) - 1 and score.texts == list(TEXT)
    assert score.probabilities[0] is None  # nothing predicts the first letter
    assert score.probabilities[1:] == pytest.approx(torch.exp(-nats).tolist(), rel=1e-4)
    assert score.total_nats == pytest.approx(float(nats.sum()), rel=1e-5)
    assert score.loss == pytest.approx(float(nats.mean()), rel=1e-5)
    assert score.bits_per_char == pytest.approx(float(nats.sum()) / len(TEXT) / math.log(2), rel=1e-5)
    assert score.perplexity == pytest.approx(math.exp(float(nats.mean())), rel=1e-5)


@pytest.mark.parametrize("copy", ["float32", "int8"])
@pytest.mark.parametrize("layer, cell", [(1, 1), (3, 512), (2, 77)])
def test_cells_are_one_cells_memory_and_output_after_each_token(copy, layer, cell, char, char_int8):
    model = char if copy == "float32" else char_int8
    ids = model.tokenizer.encode(TEXT).ids
    if copy == "float32":  # the torch model one token at a time, its state carried
        states, state = [], None
        with torch.inference_mode():
            for token in ids:
                _, state = model.loaded.model(torch.tensor([[token]]), state)
                states.append(state)
    else:
        states = int8_steps(model, ids)[1]
    values = model.cells(TEXT, layer=layer, cell=cell)
    assert values.pieces == list(TEXT)
    assert values.h == pytest.approx([float(h[layer - 1, 0, cell - 1]) for h, _ in states], abs=1e-5)
    assert values.c == pytest.approx([float(c[layer - 1, 0, cell - 1]) for _, c in states], abs=1e-5)


def test_bad_arguments_are_refused_in_one_line(char, tmp_path):
    refusals = [
        (lambda: char.generate("ROMEO:", temperature=5), SettingError, "temperature"),
        (lambda: char.generate("ROMEO:", length=0), SettingError, "length"),
        (lambda: char.generate("ROMEO:", colour="red"), SettingError, "colour"),
        (lambda: char.next_tokens("ROMEO:", k=0), ValueError, "k must be"),
        (lambda: char.cells(TEXT, layer=4), ValueError, "layer must be a whole number from 1 to 3"),
        (lambda: char.cells(TEXT, cell=513), ValueError, "cell must be a whole number from 1 to 512"),
        (lambda: char.cells("", 1, 1), ValueError, "holds nothing of the text"),
        (lambda: char.score(b"bytes"), TypeError, "as a string"),
        (lambda: lstmgen.load(tmp_path), ModelLoadError, "is not a model folder"),
    ]
    for call, kind, words in refusals:
        with pytest.raises(kind) as refused:
            call()
        assert words in str(refused.value) and "\n" not in str(refused.value)


# --------------------------------------------------------------------------- a published model's card


@pytest.fixture
def stand_in_hub():
    hub = StandInHub()
    yield hub
    hub.close()


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, re.S)


def test_a_published_models_card_shows_the_three_lines_with_its_repo_and_they_run(stand_in_hub, tmp_path):
    """`lstmgen-train ... --push-to-hub someone/char-mine` (a tiny model, trained for one epoch), then the card's
    snippet, as the Hub shows it, run in an empty folder: it downloads the model from the Hub and writes."""
    (tmp_path / "play.txt").write_text("ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 300)
    tiny = ["--preset", "char-shakespeare", "--embed-size", "16", "--hidden-size", "32", "--num-layers", "1",
            "--batch-size", "4", "--seq-len", "32", "--epochs", "1", "--no-progress", "--threads", "1"]
    train = "import sys; from lstmgen.__main__ import train_console; sys.exit(train_console())"  # the command
    env = child_env(HF_ENDPOINT=stand_in_hub.url, HF_HOME=str(tmp_path / "hf_home"), HF_DATASETS_OFFLINE="1",
                    PYTHONPATH=str(ROOT))
    published = subprocess.run([sys.executable, "-c", train, *tiny, "--data", str(tmp_path / "play.txt"), "--out",
                                str(tmp_path / "run"), "--push-to-hub", "someone/char-mine"],
                               env=dict(env, HF_TOKEN="hf_write_token"), cwd=tmp_path, capture_output=True, text=True,
                               timeout=300)
    assert published.returncode == 0, published.stderr[-3000:]
    assert "pushed to" in published.stdout

    files = stand_in_hub.files("someone/char-mine")
    card = files["README.md"].decode()
    assert (tmp_path / "run" / "model" / "README.md").read_text() == card  # the folder holds what was published
    [snippet] = python_blocks(card)
    assert snippet == ('import lstmgen\n'
                       'model = lstmgen.load("someone/char-mine")          # or a local folder; int8=True for the '
                       'compressed copy\n'
                       'print(model.generate("ROMEO:", length=200, temperature=0.8))\n')

    reader = tmp_path / "reader"
    reader.mkdir()
    ran = subprocess.run([sys.executable, "-c", snippet], env=env, cwd=reader, capture_output=True, text=True,
                         timeout=120)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.startswith("ROMEO:") and len(ran.stdout) == len("ROMEO:") + 200 + 1  # a letter a token, "\n"
    assert "model.safetensors" in stand_in_hub.requested_files()  # read from the Hub


# --------------------------------------------------------------------------- the README's lines


def test_the_readmes_python_lines_run(tmp_path):
    """The README's Python blocks that do not talk to the app (tests/test_readme.py sends them here), as written,
    in an empty folder, offline: a shipped model's name reaches the weights that ship."""
    blocks = [s for s in snippets() if s.language == "python" and plan(s).endswith(
        "test_package.py::test_the_readmes_python_lines_run")]
    assert any("lstmgen.load(" in s.code for s in blocks)
    for snippet in blocks:
        ran = subprocess.run([sys.executable, "-c", snippet.code], env=child_env(HF_HUB_OFFLINE="1",
                             PYTHONPATH=str(ROOT)), cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, f"{snippet}\n{ran.stderr[-2000:]}"
        assert ran.stdout.startswith("ROMEO:") and len(ran.stdout) > 200, ran.stdout
