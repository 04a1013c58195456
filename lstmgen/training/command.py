"""`lstmgen-train` (and `python train_space.py`): flags in, a trained model folder out, published if asked.

    lstmgen-train --preset char-shakespeare [--epochs N ...] [--resume] [--push-to-hub OWNER/NAME]
    lstmgen-train --tokenizer word --dataset stanfordnlp/imdb --text-column text --split train
    lstmgen-train --tokenizer char --data my_text.txt --time-budget 600
    lstmgen-train --preset char-shakespeare --finalize-only --bundle   # ship the best checkpoint
    torchrun --nproc-per-node 2 train_space.py --preset word-harrypotter   # DistributedDataParallel

A preset (lstmgen/core/records.py) brings its corpus, split and settings; a new model takes any text (`--data`
files, or a `--dataset`: a Hub id or a local folder laid out like one) with the app's recipe for new models.
Any flag overrides them. The output folder holds the training state (resumable) and, when training ends,
`model/`: what is pushed, what `lstmgen generate --model OUT/model` and `python app.py --model OUT/model` use.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import torch

from .. import hub
from ..core.config import TrainConfig
from ..core.files import CARD_FILE, METRICS_FILE, read_json
from ..core.model import ModelConfig
from ..core.settings import SettingError, add_flags, checked, given
from . import run
from .folder import bundle, model_card
from .trainer import CHECKPOINT_FILE


PROGRAM = "lstmgen-train"  # how the command is named in --help and in the model folder's record of it


def parse_args(argv=None, program: str = PROGRAM) -> tuple[run.TrainCommand, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog=program, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, run.TrainCommand, "what to train, and the run")
    add_flags(parser, ModelConfig, "model (a preset's or the new-model recipe's values unless given)")
    add_flags(parser, TrainConfig, "training (a preset's or the new-model recipe's values unless given)")
    args = parser.parse_args(argv)
    try:
        command = checked(run.TrainCommand, **given(args, run.TrainCommand))
    except SettingError as error:
        parser.error(str(error))
    if (command.preset is None) == (command.tokenizer is None):
        parser.error("give --preset NAME, or --tokenizer char|word|subword for a new model")
    if command.tokenizer and (command.data is None) == (command.dataset is None):
        parser.error("a new model needs its text: --data FILE_OR_FOLDER or --dataset ID_OR_FOLDER")
    return command, args


def main(argv=None, program: str = PROGRAM) -> int:
    """Run the command; `program` is how it was called (`python train_space.py` there), as metrics.json keeps it."""
    command, args = parse_args(argv, program)
    for settings in (ModelConfig, TrainConfig):  # the flags' values against their declared limits
        checked(settings, **given(args, settings))
    record = command.record()
    record = replace(record, model=replace(record.model, **given(args, ModelConfig)),
                     train=replace(record.train, **given(args, TrainConfig)))
    if record.train.lr_schedule == "budget" and not record.train.time_budget_s:
        raise SettingError("--lr-schedule budget fits the rate to the time budget: give --time-budget SECONDS, "
                           "or another --lr-schedule with --epochs")
    token = hub.require_token() if command.push_to_hub else None  # fail before any training; never printed
    if record.train.threads:
        torch.set_num_threads(record.train.threads)
    out = Path(command.out or f"runs/{record.long_name}")
    said = f"`{program} " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])) + "`"

    def report(update: dict) -> None:  # what a person at the terminal reads before the progress bars
        if update["status"] != "starting":
            return
        if update["resumed"]:
            print(f"resumed from {out / CHECKPOINT_FILE}: epoch {update['epoch']}, step {update['step']}", flush=True)
        print(f"{record.long_name}: {update['parameters']:,} parameters, vocabulary {update['vocab_size']:,}, "
              f"{update['train_tokens']:,} training tokens, bf16 autocast {'on' if update['bf16'] else 'off'}", flush=True)

    try:
        trained = run.train(record, command.text(record), out, record.train.device,
                            fit_batch_to_text=bool(command.tokenizer) and args.batch_size is None,
                            init_from=hub.resolve(command.init_from, use_hub=False) if command.init_from else None,
                            resume=command.resume, finalize_only=command.finalize_only, on_progress=report,
                            notes=command.notes, command=said)
    except run.NothingToKeep as nothing:
        print(f"{nothing}: run again with --resume (the checkpoint is kept), or give a larger --time-budget",
              file=sys.stderr)
        return 0 if nothing.out_of_time else 2
    if trained is None:  # another process of a torchrun: the first one writes the model
        return 0
    print(f"model folder: {trained.folder}")
    if command.bundle:
        print(f"bundled as {bundle(trained.folder, record.long_name)}")
    if command.push_to_hub:
        print(f"pushed to {publish(trained.folder, record, command.push_to_hub, token)}")
    return 0


def publish(folder: Path, record, repo_id: str, token: str) -> str:
    """Push a model folder to `repo_id`, its model card first written for that repo (its usage example names it)."""
    folder = Path(folder)
    (folder / CARD_FILE).write_text(model_card(record, read_json(folder / METRICS_FILE, {}), repo_id))
    return hub.push(folder, repo_id, token)
