"""The one training pipeline: a record and its text in, a finished model folder out, progress by callback."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from ..core.data import DATA_ENV, Corpus, hub_dataset_commit, load_text, read_corpus
from ..core.files import BEST_FOLDER, METRICS_FILE, read_json
from ..core.records import (NEW_MODEL_HELD_OUT, NEW_MODEL_SIZE, NEW_MODEL_SIZES, NEW_MODEL_TRAINING, PRESETS,
                            ModelRecord, new_model, new_model_batch_size, prepare)
from ..core.settings import setting
from .folder import finalize, record_continuation
from .trainer import Trainer, resolve_device


class TrainingFailed(RuntimeError):
    """A training that cannot give a model; the message says why, in words for whoever asked for it."""


class NothingToKeep(TrainingFailed):
    """Training ended before its first validation, so no model was kept (`out_of_time`: the budget ended it)."""

    def __init__(self, out_of_time: bool):
        super().__init__("no validation finished within the time budget, so there is no model to write yet"
                         if out_of_time else "training stopped before its first validation: there is no model to write")
        self.out_of_time = out_of_time


@dataclass(frozen=True)
class TrainCommand:
    """What train_space.py is asked to train and how the run goes, one flag each (the model's and the training's
    own settings are ModelConfig's and TrainConfig's flags, beside these)."""

    preset: str | None = setting(None, "a shipped model's corpus, split and settings", choices=sorted(PRESETS))
    tokenizer: str | None = setting(None, "a new model: its tokenizer", choices=["char", "word", "subword"])
    name: str | None = setting(None, "a new model's name (default: from the data)")
    data: str | None = setting(None, f"local text: a file, or a folder (a preset's files, or every .txt in it); "
                                     f"default ${DATA_ENV}, then the repository's data/")
    dataset: str | None = setting(None, "a Hub dataset id (e.g. stanfordnlp/imdb) or a local folder laid out like one")
    dataset_revision: str | None = setting(None, "the Hub dataset's revision (commit, branch or tag; default its main "
                                                 "branch): the commit read is recorded in metrics.json and the card")
    text_column: str = setting("text", "the dataset's text column")
    split: str = setting("train", "the dataset's split to train on")
    size: str = setting(NEW_MODEL_SIZE, "a new model: the app's model size (the model flags override it)",
                        choices=sorted(NEW_MODEL_SIZES))
    held_out: float = setting(NEW_MODEL_HELD_OUT, "a new model: the last share held out for validation",
                              low=0.001, high=0.999)
    min_freq: int = setting(1, "a new word/subword model: uses a token needs for its own id (1, as in the app)", low=1)
    out: str | None = setting(None, "output folder (default runs/NAME)")
    resume: bool = setting(False, "continue from the output folder's last checkpoint")
    init_from: str | None = setting(None, "start from these weights (a model folder, or a preset's shipped weights) "
                                          "with a fresh optimizer: continues a model whose checkpoint did not survive")
    finalize_only: bool = setting(False, "no training: rebuild the model folder from the output folder's best checkpoint")
    bundle: bool = setting(False, "copy the model folder into lstmgen/pretrained/NAME")
    push_to_hub: str | None = setting(None, "upload the model folder to this Hub repo (OWNER/NAME): the card names it")
    license: str | None = setting(None, "the model card's license, a Hub license id (default: a preset's, else other: "
                                        "none chosen)")
    notes: str = setting("", "text for the model card's notes (what was tried)")

    def record(self) -> ModelRecord:
        """A preset's record, or a new model's: its text and tokenizer with the recipe for new models. A Hub
        dataset's revision is resolved to its commit here, so the text read and the commit recorded agree."""
        revision = hub_dataset_commit(self.dataset, self.dataset_revision) if self.dataset else None
        if self.preset:
            record = PRESETS[self.preset]
            if self.dataset:
                record = replace(record, corpus=replace(record.corpus, dataset=self.dataset, dataset_split=self.split,
                                                        text_column=self.text_column, dataset_revision=revision,
                                                        hub_dataset=None))
        else:
            source = (self.dataset or self.data).rstrip("/")
            corpus = Corpus(name=Path(source).name if self.data else self.dataset, dataset=self.dataset,
                            text_column=self.text_column, dataset_split=self.split, dataset_revision=revision,
                            cuts=(round(1 - self.held_out, 6),),
                            note=f"{source}, first {1 - self.held_out:.0%} for training, last {self.held_out:.0%} for "
                                 "validation")
            name = self.name or f"{self.tokenizer}-{Path(source).stem or 'text'}"
            record = new_model(name, self.tokenizer, corpus, self.size, min_freq=self.min_freq)
        if self.license:
            record = replace(record, license=self.license)
        return replace(record, repo=self.push_to_hub) if self.push_to_hub else record

    def text(self, record: ModelRecord) -> str:
        if self.dataset:
            return read_corpus(record.corpus)  # the dataset, at the commit record() resolved
        return read_corpus(record.corpus, self.data) if self.preset else load_text(self.data)


@dataclass
class Trained:
    """What a finished run hands back (the figures are the kept model's, on the held-out text)."""

    folder: Path
    parameters: int
    vocab_size: int
    metrics: dict


def train(record: ModelRecord, text: str, out_dir: str | Path, device: str = "auto", fit_batch_to_text: bool = False,
          init_from=None, resume: bool = False, finalize_only: bool = False,
          should_stop: Callable[[], bool] | None = None, on_progress: Callable[[dict], None] | None = None,
          notes: str = "", command: str = "") -> Trained | None:
    """Tokenize and split `text` as `record` says, seed, build, train into `out_dir` (checkpoints, the best model),
    then write `out_dir/model`. `on_progress(update)` gets a dict with "status" ("tokenizing", "starting",
    "training", "writing the model folder") and the Trainer's figures. `fit_batch_to_text`: a new model on a short
    text trains on fewer streams. `init_from`: a lstmgen.hub.LoadedModel to start from. Under torchrun it runs on
    every process and returns None on all but the first. Raises TrainingFailed when there is no model to write."""
    device, distributed = _start(resolve_device(device))
    is_main = not distributed or dist.get_rank() == 0
    notify = on_progress if on_progress is not None and is_main else (lambda update: None)
    out_dir = Path(out_dir)
    notify({"status": "tokenizing", "step": 0, "elapsed_s": 0.0})
    data = prepare(record, text)
    if len(data.train_ids) < 2 * record.train.batch_size or len(data.val_ids) < 2:
        raise TrainingFailed("the text gives too few tokens to train on: give a longer text")
    config = replace(record.train, device=device, eval_per_tokens=data.val_per_tokens, eval_num_chars=data.val_chars)
    if fit_batch_to_text:
        config = replace(config, batch_size=new_model_batch_size(config, len(data.train_ids)))
    torch.manual_seed(config.seed)  # the same text and settings train the same model
    model = record.model.build(data.tokenizer.vocab_size)
    if init_from is not None:
        if init_from.tokenizer.state() != data.tokenizer.state():
            raise TrainingFailed(f"{init_from.folder} was trained with another tokenizer than this text gives")
        model.load_state_dict(init_from.model.float().state_dict())
        if is_main:  # the model card's loss curve then shows the whole training, not just this run
            record_continuation(out_dir, init_from.folder, init_from.metrics.get("epochs", []))
    trainer = Trainer(model, data.train_ids, data.val_ids, out_dir, config, tokenizer=data.tokenizer,
                      should_stop=should_stop, on_progress=lambda progress: notify({"status": "training", **progress}))
    resumed = resume and trainer.resume()
    notify({"status": "starting", "parameters": model.num_parameters(), "vocab_size": data.tokenizer.vocab_size,
            "train_tokens": len(data.train_ids), "bf16": trainer.amp, **trainer.progress(),
            "resumed": resumed})
    if not finalize_only:
        trainer.fit()
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    if not is_main:
        return None
    if not (out_dir / BEST_FOLDER).is_dir():
        raise NothingToKeep(trainer.out_of_time())
    notify({"status": "writing the model folder", **trainer.progress()})
    folder = finalize(out_dir, record, data, config, notes=notes, command=command)
    return Trained(folder, model.num_parameters(), data.tokenizer.vocab_size, read_json(folder / METRICS_FILE, {}))


def steps_per_second(size: str = NEW_MODEL_SIZE, vocab_size: int = 65, seconds: float = 0.5,
                     device: str = "cpu") -> float:
    """How many training steps a second a new model of `size` makes here, now: the Trainer's own step (the
    recipe's batch and window, autocast as it decides) on random tokens of a `vocab_size` vocabulary (a text's
    letters are ~65), timed for `seconds` after one warm-up step. The random state is left as it was."""
    config = replace(NEW_MODEL_TRAINING, device=device, progress=False)
    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory() as out:
        torch.manual_seed(0)
        ids = torch.randint(vocab_size, (config.batch_size * (config.seq_len + 2),)).tolist()
        trainer = Trainer(NEW_MODEL_SIZES[size].build(vocab_size), ids, ids[:64], out, config)
        inputs, targets = trainer.rows[:, : config.seq_len], trainer.rows[:, 1 : config.seq_len + 1]
        trainer.model.train()
        trainer.train_window(inputs, targets)
        steps, started = 0, time.perf_counter()
        while steps == 0 or time.perf_counter() - started < seconds:
            trainer.train_window(inputs, targets)
            steps += 1
        return steps / (time.perf_counter() - started)


def _start(device: str) -> tuple[str, bool]:
    """Under torchrun (WORLD_SIZE > 1): join the process group; each process takes its own GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device, False
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return device, True
