"""Train your own on a public server: the line, the limits, and visitors' models behind their keys.

Bounded so that a public Space survives its visitors and keeps each visitor's text and model to that visitor.

- One training at a time per server. The others wait in one line, first come first served, told their
  place and the wait; each client (by address) has at most one training running or waiting, and the
  line holds at most `max_waiting`. A Hub dataset is read inside the visitor's turn, not before.
- Training runs in a thread with torch's one intra-op thread (the app sets one per request), so it takes
  one core and generation for other visitors keeps the rest.
- A trained model is named by a key of 128 random bits. The key is the only way to it: nothing lists
  visitors' models, and an unknown key is answered like any unknown name.
- The text's size, the time budget, the models kept and how long are the server's TrainingLimits
  (lstmgen.core.operator_settings: LSTMGEN_TRAIN_*). Trained models live in a temporary folder of their own,
  the oldest deleted first, each deleted `keep_s` seconds after training; a sweeper checks every minute,
  and the folder goes when the server stops. The text itself is never written to disk or logged.
- On a ZeroGPU Space the training runs under @spaces.GPU (lstmgen/training/gpu.py) with a duration derived from
  the budget; elsewhere on the CPU. Both are the same code.
"""

from __future__ import annotations

import atexit
import logging
import queue
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Union


from .. import hub
from ..core.data import Corpus, DatasetText
from ..core.files import BEST_FOLDER, METRICS_FILE, read_json
from ..core.records import record_from_metrics
from ..training import run
from ..training.folder import model_card
from ..training.gpu import compute_device, gpu_function, on_zerogpu
from ..training.trainer import CHECKPOINT_FILE
from ..core.records import NEW_MODEL_SIZE, NEW_MODEL_SIZES, NEW_MODEL_TRAINING, ModelRecord, new_model
from ..core.operator_settings import TrainingLimits, training_limits
from ..core.settings import SettingError, checked, setting

log = logging.getLogger("lstmgen.serve.studio")
STOP_FILE = "STOP"  # a file, not an event: it reaches a ZeroGPU worker, which runs in a forked process


class TrainingError(SettingError):
    """A training that cannot start (the line is full, the file is not text); the message is meant for the
    visitor."""


# The sizes a visitor picks from and how they train: the recipe for new models (lstmgen/records.py), which
# `train_space.py --tokenizer ...` uses too. The app adds no progress bars and no checkpoint along the way
# (a visitor's training is never resumed).
SIZES = NEW_MODEL_SIZES
TRAINING = replace(NEW_MODEL_TRAINING, checkpoint_every_s=1e9, progress=False)
TOKENIZERS = ("char", "word", "subword")
# The licenses a visitor picks for a published model (the Hub's ids); "other" says none was chosen.
LICENSES = ("other", "mit", "apache-2.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc0-1.0", "openrail")


@dataclass(frozen=True)
class TrainRequest:
    """What a visitor asks to train, declared like every setting (lstmgen.core.settings); the bounds of the text
    and the budget are the server's TrainingLimits, given at the check (check_request)."""

    text: str = setting("", "the text to learn from, as UTF-8", unit="bytes", label="the text",
                        too_short="a model needs at least {low:,} to learn from")
    tokenizer: str = setting("char", "how the text is cut into tokens", choices=TOKENIZERS)
    size: str = setting(NEW_MODEL_SIZE, "the model's size", choices=tuple(SIZES))
    seconds: float = setting(NEW_MODEL_TRAINING.time_budget_s, "the training time budget in seconds")


def decode_upload(data: bytes) -> str:
    """The text of an uploaded file: UTF-8 (a byte-order mark is dropped), or a clear error."""
    if b"\x00" in data[:65536]:
        raise TrainingError("this file looks binary (it holds NUL bytes): upload plain UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise TrainingError(f"this file is not UTF-8 text (byte {error.start} cannot be read as UTF-8): "
                            "save it as UTF-8 and upload it again") from None


def check_request(limits: TrainingLimits, **values) -> TrainRequest:
    """A training request from untrusted values (lstmgen.core.settings.checked), the text's and the budget's
    bounds from the server's `limits`."""
    bounds = {"text": (limits.min_bytes, limits.max_bytes), "seconds": (limits.min_seconds, limits.max_seconds)}
    request = checked(TrainRequest, bounds=bounds, **values)
    if "\x00" in request.text:
        raise TrainingError("the text holds NUL characters: it looks binary")
    return request


def parameter_count(size: str, vocab_size: int = 100) -> int:
    """The size's parameters for a vocabulary of `vocab_size` (a character vocabulary is ~100)."""
    return SIZES[size].build(vocab_size).num_parameters()


def visitor_record(name: str, tokenizer: str, size: str, seconds: float, dataset: dict | None = None) -> ModelRecord:
    """A visitor's model, named `name` (never its key: the name goes into its folder and card). `dataset`: where
    a Hub dataset's text was read (DatasetText's fields but the text), for the card."""
    split = "first 90% for training, last 10% for validation"
    if dataset:
        corpus = Corpus(name=dataset["dataset"], note=f"the dataset's text: {split}", dataset=dataset["dataset"],
                        dataset_split=dataset["split"], text_column=dataset["text_column"],
                        dataset_revision=dataset["commit"])
    else:
        corpus = Corpus(name="own text", note=f"your text: {split}")
    record = new_model(name, tokenizer, corpus, size, title=f"Yours · {tokenizer}")
    return replace(record, train=replace(TRAINING, time_budget_s=seconds))


def _duration(run_dir, text, tokenizer, size, seconds, dataset=None) -> int:
    return int(float(seconds)) + 90  # the budget, plus tokenizing, the final validation and the model folder


@gpu_function(duration=_duration)
def run_training(run_dir: str, text: str, tokenizer: str, size: str, seconds: float,
                 dataset: dict | None = None) -> Iterator[dict]:
    """Train a visitor's model into run_dir through the one pipeline (lstmgen.training.run), yielding its progress
    at most once a second; the last update has status "done" (with the model folder) or "failed". On ZeroGPU
    this runs in a forked worker with a GPU: only what it yields and what it writes to run_dir come back."""
    run_dir = Path(run_dir)
    device = "cuda" if on_zerogpu() else compute_device()  # inside a GPU function the GPU is real
    record = visitor_record(f"yours-{tokenizer}", tokenizer, size, seconds, dataset)
    updates: queue.Queue = queue.Queue()
    outcome: dict = {}

    def work():
        try:
            outcome["trained"] = run.train(
                record, text, run_dir, device, fit_batch_to_text=True, on_progress=updates.put,
                should_stop=lambda: (run_dir / STOP_FILE).exists(), notes="Trained in the app's Train your own tab.",
                command=f"trained in the app: {tokenizer}, {size}, {seconds:g} s")
        except run.TrainingFailed as error:
            outcome["error"] = f"{error}: give a longer text or more time" if isinstance(error, run.NothingToKeep) \
                else str(error)
        except BaseException as error:  # logged here, told to the visitor in plain words
            log.error("a visitor's training failed: %s: %s", type(error).__name__, error)
            outcome["error"] = "the training failed on the server: try again, or with another text"
        finally:
            updates.put(None)

    threading.Thread(target=work, name=f"train-{run_dir.name[:12]}", daemon=True).start()
    latest, pending, shown_at = {}, None, 0.0
    while True:
        try:
            update = updates.get(timeout=0.5)
        except queue.Empty:
            update = {}
        if update is None:
            break
        if update.get("status") == "starting":
            continue
        if update:
            latest = update
        if update.get("status") == "training":
            pending = update
        elif update:
            pending = None
            shown_at = time.monotonic()
            yield update
        if pending is not None and time.monotonic() - shown_at >= 1.0:
            shown_at = time.monotonic()
            yield pending
            pending = None
    if "error" in outcome:
        yield {"status": "failed", "error": outcome["error"]}
        return
    trained, figures = outcome["trained"], outcome["trained"].metrics.get("final", {})
    # The last update gives the kept (best) model's figures, not the last step's.
    yield {**latest, "status": "done", "folder": str(trained.folder), "parameters": trained.parameters,
           "vocab_size": trained.vocab_size, "val_loss": figures.get("val_float", {}).get("loss"),
           "val_loss_int8": figures.get("val_int8", {}).get("loss")}


TextSource = Union[str, Callable[[], str]]  # the text, or a function that reads it (a Hub dataset) in the turn


@dataclass
class Ticket:
    """A place in the line."""

    client: str  # the visitor's address: one training running or waiting per client
    session: str  # the browser session (Stop in the UI)
    seconds: float
    run_dir: Path | None = None  # while training


@dataclass
class VisitorModel:
    folder: Path
    made: float
    served: object  # what `load(folder)` returned: the app serves it to whoever has the key


def new_key() -> str:
    """A visitor model's key: 128 random bits (22 URL-safe characters). The model itself never holds it."""
    return "yours-" + secrets.token_urlsafe(16)


def publish(folder: str | Path, name: str, token: str | None, license: str = "other") -> str:
    """Publish a visitor's model folder to `{the token's user}/{name}` with `license`, its card written for that
    repo (lstmgen.hub.push_to_account says what can go wrong). Returns the repo's URL."""
    if license not in LICENSES:
        raise hub.PublishError(f"choose a license among {', '.join(LICENSES)}")
    metrics = read_json(Path(folder) / METRICS_FILE, {})
    record = replace(record_from_metrics(metrics, "model", metrics.get("kind", "char")), license=license)
    return hub.push_to_account(folder, name, token, card=lambda repo_id: model_card(record, metrics, repo_id))


class Studio:
    """The server's trainings: the line, the running one, and the models they made, each behind its key."""

    def __init__(self, limits: TrainingLimits | None = None, root: str | Path | None = None, load=None, on_evict=None,
                 sweep_every_s: float = 60.0):
        """`load(folder)` makes a trained model servable (the app passes service.load_source); `on_evict(name)`
        is called for each model deleted, so whoever cached something of it can let it go."""
        self.limits = limits or training_limits()
        self.load, self.on_evict = load, on_evict
        self.root = Path(root or tempfile.mkdtemp(prefix="lstmgen-visitors-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.guard = threading.Condition()  # the line and the models below
        self.line: list[Ticket] = []  # waiting or training, in order of arrival; the first one trains
        self.models: dict[str, VisitorModel] = {}  # key -> model
        self.closed = threading.Event()
        atexit.register(self.close)
        if sweep_every_s:
            threading.Thread(target=self._sweep, args=(sweep_every_s,), name="studio-sweeper", daemon=True).start()

    # ------------------------------------------------------------------ the line

    def position(self, ticket: Ticket) -> tuple[int, float]:
        """(how many are ahead, an estimate of the seconds until this ticket's turn)."""
        with self.guard:
            ahead = self.line.index(ticket) if ticket in self.line else 0
            return ahead, sum(t.seconds + 20 for t in self.line[:ahead])

    @property
    def running(self) -> Ticket | None:
        with self.guard:
            return self.line[0] if self.line and self.line[0].run_dir is not None else None

    def stop(self, session: str) -> bool:
        """Ask this session's training to stop; it keeps the best model so far. Returns whether one was running."""
        ticket = self.running
        if ticket is None or ticket.session != session:
            return False
        (ticket.run_dir / STOP_FILE).touch()
        return True

    def train(self, text: TextSource, tokenizer, size, seconds, client: str, session: str = "") -> Iterator[dict]:
        """Validate, wait in line, read the text, train; yield progress. The last update is "done", with `model`
        (the new model's key), or "failed" with `error`. Bad input raises SettingError
        (its TrainingError where the line refuses it)."""
        given = {"text": text} if isinstance(text, str) else {}  # a Hub dataset's text is checked once read
        request = check_request(self.limits, tokenizer=tokenizer, size=size, seconds=seconds, **given)
        tokenizer, size, seconds = request.tokenizer, request.size, request.seconds
        text = request.text if given else text
        ticket = Ticket(client, session, seconds)
        with self.guard:
            if any(t.client == client or (session and t.session == session) for t in self.line):
                raise TrainingError("a training of yours is already running or waiting: wait for it, or stop it")
            if len(self.line) > self.limits.max_waiting:
                raise TrainingError(f"the line is full ({self.limits.max_waiting} trainings waiting): "
                                    "try again in a few minutes")
            self.line.append(ticket)
        try:
            while True:
                with self.guard:
                    if self.line[0] is ticket:
                        break
                    self.guard.wait(1.0)
                    if self.line[0] is ticket:
                        break
                ahead, wait = self.position(ticket)
                yield {"status": "waiting", "place": ahead, "wait_s": wait, "done": False}
            dataset = None
            if not isinstance(text, str):
                yield {"status": "reading your text", "done": False}
                read = text()
                if isinstance(read, DatasetText):  # a Hub dataset: its card names it, and the commit read
                    dataset = {"dataset": read.dataset, "commit": read.commit, "split": read.split,
                               "text_column": read.text_column}
                    read = read.text
                text = check_request(self.limits, text=read).text
            key = new_key()
            ticket.run_dir = self.root / key
            ticket.run_dir.mkdir()
            yield from self._run(ticket.run_dir, text, tokenizer, size, seconds, dataset)
        finally:
            if ticket.run_dir is not None and ticket.run_dir.name not in self.models:
                shutil.rmtree(ticket.run_dir, ignore_errors=True)
            with self.guard:
                self.line.remove(ticket)
                self.guard.notify_all()

    def _run(self, run_dir: Path, text, tokenizer, size, seconds, dataset=None) -> Iterator[dict]:
        last = {}
        for update in run_training(str(run_dir), text, tokenizer, size, seconds, dataset):
            last = update
            if update["status"] == "done":
                break
            yield {**update, "done": update["status"] == "failed"}
        if last.get("status") != "done":
            return
        shutil.rmtree(run_dir / BEST_FOLDER, ignore_errors=True)  # only the model folder is kept
        (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
        folder = Path(last.pop("folder"))
        served = self.load(str(folder)) if self.load else None
        if served is not None:  # answers name the model as its holder calls it, by its key (held in memory only)
            served.record = replace(served.record, name=run_dir.name)
        self.evict(room_for=1)
        with self.guard:
            self.models[run_dir.name] = VisitorModel(folder, time.time(), served)
        yield {**last, "model": run_dir.name, "done": True}

    # ------------------------------------------------------------------ the models

    def evict(self, room_for: int = 0) -> list[str]:
        """Delete models past their time, and the oldest while there is no room for `room_for` more.
        Returns their keys."""
        now, gone = time.time(), []
        with self.guard:
            by_age = sorted(self.models.items(), key=lambda item: item[1].made)
            for key, model in by_age:
                if now - model.made > self.limits.keep_s or \
                        len(self.models) - len(gone) + room_for > self.limits.max_models:
                    gone.append(key)
            for key in gone:
                shutil.rmtree(self.models.pop(key).folder.parent, ignore_errors=True)
        for key in gone:
            if self.on_evict:
                self.on_evict(key)
        return gone

    def get(self, key) -> VisitorModel | None:
        """The model behind this key, or None (unknown, or expired)."""
        if not isinstance(key, str):
            return None
        with self.guard:
            model = self.models.get(key)
        if model is not None and time.time() - model.made > self.limits.keep_s:
            self.evict()
            return None
        return model

    def folder(self, key) -> Path | None:
        model = self.get(key)
        return model.folder if model else None

    def _sweep(self, every_s: float) -> None:
        while not self.closed.wait(every_s):
            self.evict()

    def close(self) -> None:
        """Delete every visitor's model and the studio's folder (the server is stopping)."""
        self.closed.set()
        with self.guard:
            keys = list(self.models)
            self.models.clear()
        shutil.rmtree(self.root, ignore_errors=True)
        for key in keys:
            if self.on_evict:
                self.on_evict(key)
