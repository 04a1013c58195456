"""Train your own: a visitor's text in, a model out, bounded so that a shared Space survives its visitors.

- One training at a time per server; the others wait in line and are told their place and the wait.
- Training runs in a thread with torch's one intra-op thread (the app sets one per request), so it takes
  one core and generation for other visitors keeps the rest.
- Text: at least 1 KB and at most 10 MB of UTF-8; a time budget of 10 to 300 seconds. Self-hosters
  change these with LSTMGEN_TRAIN_MIN_BYTES, LSTMGEN_TRAIN_MAX_BYTES, LSTMGEN_TRAIN_MIN_SECONDS and
  LSTMGEN_TRAIN_MAX_SECONDS.
- Trained models live in a temporary folder of their own, at most LSTMGEN_TRAIN_MAX_MODELS (4) per
  server, the oldest evicted first, each deleted LSTMGEN_TRAIN_KEEP_S (3600) seconds after training.
  The text itself is never written to disk or logged; only the model folder is kept, for that long.
- On a ZeroGPU Space the training runs under @spaces.GPU (lstmgen/gpu.py) with a duration derived from
  the budget; elsewhere on the CPU. Both are the same code.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from .data import Corpus
from .gpu import compute_device, gpu_function, on_zerogpu
from .model import ModelConfig
from .records import ModelRecord, TokenizerSpec, prepare
from .train import TrainConfig

STOP_FILE = "STOP"  # a file, not an event: it reaches a ZeroGPU worker, which runs in a forked process


class TrainingError(ValueError):
    """Input a training cannot start from; the message is meant for the visitor."""


@dataclass(frozen=True)
class Limits:
    min_bytes: int = 1_000
    max_bytes: int = 10_000_000
    min_seconds: float = 10.0
    max_seconds: float = 300.0
    max_models: int = 4
    keep_s: float = 3600.0

    @classmethod
    def from_env(cls) -> "Limits":
        def number(name, default):
            return type(default)(os.environ.get(f"LSTMGEN_TRAIN_{name}", default))

        d = cls()
        return cls(number("MIN_BYTES", d.min_bytes), number("MAX_BYTES", d.max_bytes),
                   number("MIN_SECONDS", d.min_seconds), number("MAX_SECONDS", d.max_seconds),
                   number("MAX_MODELS", d.max_models), number("KEEP_S", d.keep_s))


# The sizes a visitor picks from. "small" is tuned for a 60-second budget on one CPU thread (bench/train_budget.py):
# a wide single layer, a high peak rate and short windows (32 streams × 32 steps) learn fastest when the budget
# is short; a 1×512 model or a second layer runs 3-4 times fewer steps and ends worse.
SIZES = {
    "tiny": ModelConfig(embed_size=32, hidden_size=128, num_layers=1, dropout=0.0),
    "small": ModelConfig(embed_size=64, hidden_size=256, num_layers=1, dropout=0.0),
}
TRAINING = TrainConfig(
    epochs=10_000, batch_size=32, seq_len=32, lr=1e-2, weight_decay=0.01, clip=1.0, lr_schedule="budget",
    warmup_steps=100, min_lr=5e-4, early_stop=10_000, eval_batch_size=16, checkpoint_every_s=1e9, progress=False,
    validate_at_stop=True, curve_every_s=3.0, curve_val_tokens=4_000, seed=0)
TOKENIZERS = ("char", "word", "subword")


def decode_upload(data: bytes) -> str:
    """The text of an uploaded file: UTF-8 (a byte-order mark is dropped), or a clear error."""
    if b"\x00" in data[:65536]:
        raise TrainingError("this file looks binary (it holds NUL bytes): upload plain UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise TrainingError(f"this file is not UTF-8 text (byte {error.start} cannot be read as UTF-8): "
                            "save it as UTF-8 and upload it again") from None


def check_request(text, tokenizer, size, seconds, limits: Limits) -> tuple[str, str, str, float]:
    """Validate a training request; raise TrainingError with a clear message."""
    if not isinstance(text, str):
        raise TrainingError("text must be text")
    n = len(text.encode("utf-8"))
    if n < limits.min_bytes:
        raise TrainingError(f"the text is {n:,} bytes; a model needs at least {limits.min_bytes:,} to learn from")
    if n > limits.max_bytes:
        raise TrainingError(f"the text is {n:,} bytes; the limit is {limits.max_bytes:,}")
    if "\x00" in text:
        raise TrainingError("the text holds NUL characters: it looks binary")
    if tokenizer not in TOKENIZERS:
        raise TrainingError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, not {tokenizer!r}")
    if size not in SIZES:
        raise TrainingError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        raise TrainingError(f"seconds must be a number, not {seconds!r}") from None
    if not limits.min_seconds <= seconds <= limits.max_seconds:
        raise TrainingError(f"seconds must be between {limits.min_seconds:g} and {limits.max_seconds:g}, got {seconds:g}")
    return text, tokenizer, size, seconds


def parameter_count(size: str, vocab_size: int = 100) -> int:
    """The size's parameters for a vocabulary of `vocab_size` (a character vocabulary is ~100)."""
    return SIZES[size].build(vocab_size).num_parameters()


def visitor_record(name: str, tokenizer: str, size: str, seconds: float) -> ModelRecord:
    return ModelRecord(
        name=name, long_name=name, title=f"Yours · {tokenizer}",
        corpus=Corpus(name="own text", note="your text: first 90% for training, last 10% for validation"),
        # Word vocabularies of large texts are capped, so the model stays small.
        tokenizer=TokenizerSpec(tokenizer, min_freq=1, max_size=20_000 if tokenizer == "word" else 0),
        model=SIZES[size], train=replace(TRAINING, time_budget_s=seconds), examples=("",), length=200)


def _duration(run_dir, text, tokenizer, size, seconds) -> int:
    return int(float(seconds)) + 90  # the budget, plus tokenizing, the final validation and the model folder


@gpu_function(duration=_duration)
def run_training(run_dir: str, text: str, tokenizer: str, size: str, seconds: float) -> Iterator[dict]:
    """Train a visitor's model into run_dir, yielding progress; the last update has status "done" (with the
    model folder) or "failed". On ZeroGPU this runs in a forked worker with a GPU: only what it yields and
    what it writes to run_dir come back."""
    from . import publish
    from .train import Trainer

    run_dir = Path(run_dir)
    device = "cuda" if on_zerogpu() else compute_device()  # inside a GPU function the GPU is real
    record = visitor_record(run_dir.name, tokenizer, size, seconds)
    data = prepare(record, text)
    if len(data.train_ids) < 2 * record.train.batch_size or len(data.val_ids) < 2:
        yield {"status": "failed", "error": "the text gives too few tokens to train on: give a longer text"}
        return
    config = replace(record.train, device=device, eval_per_tokens=data.val_per_tokens, eval_num_chars=data.val_chars,
                     batch_size=min(record.train.batch_size, max(1, len(data.train_ids) // (4 * record.train.seq_len))))
    model = record.model.build(data.tokenizer.vocab_size)
    trainer = Trainer(model, data.train_ids, data.val_ids, run_dir, config, tokenizer=data.tokenizer,
                      should_stop=lambda: (run_dir / STOP_FILE).exists())
    failure: list[BaseException] = []

    def fit():
        try:
            trainer.fit()
        except BaseException as error:  # reported to the visitor below
            failure.append(error)

    worker = threading.Thread(target=fit, name=f"train-{run_dir.name}", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(1.0)
        yield progress(trainer, "training")
    if failure:
        yield {"status": "failed", "error": f"training failed: {type(failure[0]).__name__}: {failure[0]}"}
        return
    if not (run_dir / "best").is_dir():
        yield {"status": "failed", "error": "training stopped before any step: nothing to keep"}
        return
    yield progress(trainer, "writing the model folder")
    folder = publish.finalize(run_dir, record, data, config, notes="Trained in the app's Train your own tab.",
                              command=f"trained in the app: {tokenizer}, {size}, {seconds:g} s")
    yield {**progress(trainer, "done"), "folder": str(folder), "parameters": model.num_parameters(),
           "vocab_size": data.tokenizer.vocab_size}


def progress(trainer, status: str) -> dict:
    last = trainer.curve[-1] if trainer.curve else {}
    history = trainer.history[-1] if trainer.history else {}
    train_loss = trainer.epoch_loss_sum / trainer.epoch_windows if trainer.epoch_windows else history.get("train_loss")
    return {"status": status, "step": trainer.steps, "epoch": trainer.epoch + 1,
            "train_loss": train_loss, "val_loss": history.get("val_loss", last.get("val_loss")),
            "tokens_per_s": last.get("tokens_per_s"), "elapsed_s": trainer.elapsed,
            # The live plot: quick points along the way, and each (part of an) epoch's full validation.
            "curve": sorted([dict(p) for p in trainer.curve] + [
                {"elapsed_s": h["elapsed_s"], "train_loss": h["train_loss"], "val_loss": h["val_loss"]}
                for h in trainer.history], key=lambda p: p["elapsed_s"]),
            "stopped": trainer.stopped}


class Studio:
    """The server's trainings: the line, the running one, and the models they made."""

    def __init__(self, limits: Limits | None = None, root: str | Path | None = None, on_ready=None, on_evict=None):
        """`on_ready(name, folder)` is called for each model trained, `on_evict(name)` for each model deleted,
        so whoever serves them can take them up and let them go."""
        self.limits = limits or Limits.from_env()
        self.on_ready, self.on_evict = on_ready, on_evict
        self.root = Path(root or tempfile.mkdtemp(prefix="lstmgen-visitors-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()  # one training at a time
        self.guard = threading.Lock()  # the line and the models below
        self.line: list[tuple[str, float]] = []  # (session, budget) of those waiting or training, in order
        self.running: dict[str, Path] = {}  # session -> its run folder
        self.models: dict[str, tuple[Path, float]] = {}  # name -> (model folder, when trained)

    # ------------------------------------------------------------------ the line

    def position(self, session: str) -> tuple[int, float]:
        """(how many are ahead, an estimate of the seconds until this session's turn)."""
        with self.guard:
            sessions = [s for s, _ in self.line]
            ahead = sessions.index(session) if session in sessions else 0
            return ahead, sum(budget + 20 for _, budget in self.line[:ahead])

    def stop(self, session: str) -> bool:
        """Ask this session's training to stop; it keeps the best model so far. Returns whether one was running."""
        run_dir = self.running.get(session)
        if run_dir is None:
            return False
        (run_dir / STOP_FILE).touch()
        return True

    def train(self, text, tokenizer, size, seconds, session: str) -> Iterator[dict]:
        """Validate, wait in line, train; yield progress. The last update is "done", with `model` (a new model
        name) and `folder`, or "failed" with `error`."""
        text, tokenizer, size, seconds = check_request(text, tokenizer, size, seconds, self.limits)
        with self.guard:
            if any(s == session for s, _ in self.line):
                raise TrainingError("a training of yours is already running or waiting: wait for it, or stop it")
            self.line.append((session, seconds))
        try:
            while not self.lock.acquire(timeout=1.0):
                ahead, wait = self.position(session)
                yield {"status": "waiting", "place": ahead, "wait_s": wait, "done": False}
            try:
                name = f"yours-{secrets.token_hex(4)}"
                run_dir = self.root / name
                run_dir.mkdir()
                self.running[session] = run_dir
                yield from self._run(run_dir, text, tokenizer, size, seconds)
            finally:
                self.running.pop(session, None)
                self.lock.release()
        finally:
            with self.guard:
                self.line = [(s, b) for s, b in self.line if s != session]

    def _run(self, run_dir: Path, text, tokenizer, size, seconds) -> Iterator[dict]:
        last = {}
        for update in run_training(str(run_dir), text, tokenizer, size, seconds):
            last = update
            if update["status"] == "done":
                break
            yield {**update, "done": update["status"] == "failed"}
        if last.get("status") != "done":
            shutil.rmtree(run_dir, ignore_errors=True)
            return
        self.evict()
        with self.guard:
            self.models[run_dir.name] = (Path(last["folder"]), time.time())
        shutil.rmtree(run_dir / "best", ignore_errors=True)  # only the model folder is kept
        (run_dir / "last.pt").unlink(missing_ok=True)
        if self.on_ready:
            self.on_ready(run_dir.name, last["folder"])
        yield {**last, "model": run_dir.name, "done": True}

    # ------------------------------------------------------------------ the models

    def evict(self) -> list[str]:
        """Delete models past their time, and the oldest while there is no room for one more. Returns their names."""
        now, gone = time.time(), []
        with self.guard:
            for name, (folder, made) in sorted(self.models.items(), key=lambda item: item[1][1]):
                if now - made > self.limits.keep_s or len(self.models) - len(gone) >= self.limits.max_models:
                    gone.append(name)
            for name in gone:
                folder, _ = self.models.pop(name)
                shutil.rmtree(folder.parent, ignore_errors=True)
        for name in gone:
            if self.on_evict:
                self.on_evict(name)
        return gone

    def folder(self, name: str) -> Path | None:
        entry = self.models.get(name)
        return entry[0] if entry else None

