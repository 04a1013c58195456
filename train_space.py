"""Train a model and (optionally) publish it to the Hugging Face Hub.

    python train_space.py --preset char-shakespeare [--epochs N ...] [--resume] [--push-to-hub OWNER/NAME]
    python train_space.py --tokenizer word --dataset stanfordnlp/imdb --text-column text --split train
    python train_space.py --tokenizer char --data my_text.txt --time-budget 600
    python train_space.py --preset char-shakespeare --finalize-only --bundle   # ship the best checkpoint
    torchrun --nproc-per-node 2 train_space.py --preset word-harrypotter   # DistributedDataParallel

A preset (lstmgen/records.py) brings its corpus, split and settings; any flag overrides them. A new
model takes any text: local files (`--data`), or a dataset (`--dataset`: a Hub id, or a local folder
laid out as the Hub lays out a dataset), with the last `--held-out` share held out for validation. It
trains with the app's Train your own recipe (lstmgen/records.py, NEW_MODEL_*: the `--size` small model,
a cosine fitted to the time budget, 60 s unless `--time-budget` says otherwise); any flag overrides it.

The output folder holds the training state (last.pt, resumable) and, when training ends,
`model/`: config.json, model.safetensors, tokenizer, metrics.json, loss curve and model card,
exactly what is pushed, and what `python app.py --model OUT/model` serves.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from lstmgen.training import folder as publish
from lstmgen import hub
from lstmgen.core.data import DATA_ENV, Corpus, CorpusError, load_text, read_corpus
from lstmgen.__main__ import run_politely
from lstmgen.hub import resolve
from lstmgen.core.model import ModelConfig
from lstmgen.core.records import (NEW_MODEL_HELD_OUT, NEW_MODEL_SIZE, NEW_MODEL_SIZES, PRESETS, ModelRecord, new_model,
                             new_model_batch_size, prepare)
from lstmgen.core.settings import SettingError, add_flags, checked, given
from lstmgen.training.trainer import Trainer, TrainConfig, resolve_device


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_argument_group("what to train")
    what.add_argument("--preset", choices=sorted(PRESETS), help="a shipped model's corpus, split and settings")
    what.add_argument("--tokenizer", choices=["char", "word", "subword"], help="a new model: its tokenizer")
    what.add_argument("--name", help="a new model's name (default: from the data)")
    what.add_argument("--data", help=f"local text: a file, or a folder (a preset's files, or every .txt in it); "
                                     f"default ${DATA_ENV}, then the repository's data/")
    what.add_argument("--dataset", help="a Hub dataset id (e.g. stanfordnlp/imdb) or a local folder laid out like one")
    what.add_argument("--text-column", default="text", help="the dataset's text column")
    what.add_argument("--split", default="train", help="the dataset's split to train on")
    what.add_argument("--size", choices=sorted(NEW_MODEL_SIZES), default=NEW_MODEL_SIZE,
                      help="a new model: the app's model size (the model flags below override it)")
    what.add_argument("--held-out", type=float, default=NEW_MODEL_HELD_OUT,
                      help="a new model: the last share held out for validation")
    what.add_argument("--min-freq", type=int, default=1,
                      help="a new word/subword model: uses a token needs for its own id (default 1, as in the app)")
    run = parser.add_argument_group("the run")
    run.add_argument("--out", help="output folder (default runs/NAME)")
    run.add_argument("--resume", action="store_true", help="continue from the output folder's last checkpoint")
    run.add_argument("--init-from", metavar="FOLDER_OR_PRESET",
                     help="start from these weights (a model folder, or a preset's shipped weights) with a fresh "
                          "optimizer: continues a model where its checkpoint did not survive")
    run.add_argument("--finalize-only", action="store_true",
                     help="no training: rebuild the model folder from the output folder's best checkpoint")
    run.add_argument("--bundle", action="store_true", help="copy the model folder into lstmgen/pretrained/NAME")
    run.add_argument("--push-to-hub", metavar="OWNER/NAME", help="upload the model folder to this Hub repo")
    run.add_argument("--notes", default="", help="text for the model card's notes (what was tried)")
    add_flags(parser, ModelConfig, "model (a preset's or the new-model recipe's values unless given)")
    add_flags(parser, TrainConfig, "training (a preset's or the new-model recipe's values unless given)")
    args = parser.parse_args(argv)
    if (args.preset is None) == (args.tokenizer is None):
        parser.error("give --preset NAME, or --tokenizer char|word|subword for a new model")
    if args.tokenizer and (args.data is None) == (args.dataset is None):
        parser.error("a new model needs its text: --data FILE_OR_FOLDER or --dataset ID_OR_FOLDER")
    if not 0 < args.held_out < 1:
        parser.error("--held-out must be between 0 and 1")
    return args


def new_record(args) -> ModelRecord:
    """The record of a model that is not a preset: its text and tokenizer, and the recipe for new models
    (the app's Train your own settings)."""
    source = args.dataset or args.data
    name = args.name or f"{args.tokenizer}-{Path(source.rstrip('/')).stem or 'text'}"
    corpus = Corpus(name=Path(source.rstrip("/")).name if args.data else args.dataset,
                    dataset=args.dataset, text_column=args.text_column, dataset_split=args.split,
                    cuts=(round(1 - args.held_out, 6),),
                    note=f"{source}, first {1 - args.held_out:.0%} for training, last {args.held_out:.0%} for validation")
    return new_model(name, args.tokenizer, corpus, args.size, min_freq=args.min_freq)


def read_text(record: ModelRecord, args) -> str:
    if args.dataset and args.preset:
        return load_text(dataset=args.dataset, split=args.split, text_column=args.text_column)
    if args.preset or args.dataset:
        return read_corpus(record.corpus, args.data)
    data = Path(args.data).expanduser()
    files = sorted(data.glob("*.txt")) if data.is_dir() else [data]
    if not files:
        raise CorpusError(f"no .txt files in {data}")
    return load_text(files)


def main(argv=None) -> int:
    args = parse_args(argv)
    record = PRESETS[args.preset] if args.preset else new_record(args)
    for settings in (ModelConfig, TrainConfig):  # the flags' values against their declared limits
        checked(settings, **given(args, settings))
    record = replace(record, model=replace(record.model, **given(args, ModelConfig)),
                     train=replace(record.train, **given(args, TrainConfig)))
    if record.train.lr_schedule == "budget" and not record.train.time_budget_s:
        raise SettingError("--lr-schedule budget fits the rate to the time budget: give --time-budget SECONDS, "
                           "or another --lr-schedule with --epochs")
    token = hub.require_token() if args.push_to_hub else None  # fail before any training; never printed
    if record.train.threads:
        torch.set_num_threads(record.train.threads)
    device = resolve_device(record.train.device)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    is_main = not distributed or dist.get_rank() == 0
    out_dir = Path(args.out or f"runs/{record.long_name}")

    data = prepare(record, read_text(record, args))
    config = replace(record.train, device=device, eval_per_tokens=data.val_per_tokens, eval_num_chars=data.val_chars)
    if args.tokenizer and args.batch_size is None:  # as the app does: a short text trains on fewer streams
        config = replace(config, batch_size=new_model_batch_size(config, len(data.train_ids)))
    torch.manual_seed(config.seed)
    model = record.model.build(data.tokenizer.vocab_size)
    if args.init_from:
        start = resolve(args.init_from, use_hub=False)
        if start.tokenizer.state() != data.tokenizer.state():
            raise ValueError(f"{start.folder} was trained with another tokenizer than this corpus gives")
        model.load_state_dict(start.model.float().state_dict())
        if is_main:  # the model card's loss curve and history then show the whole training, not just this run
            publish.record_continuation(out_dir, start.folder, start.metrics.get("epochs", []))
    trainer = Trainer(model, data.train_ids, data.val_ids, out_dir, config, tokenizer=data.tokenizer)
    if args.resume and trainer.resume() and is_main:
        print(f"resumed from {out_dir / 'last.pt'}: epoch {trainer.epoch + 1}, step {trainer.steps}", flush=True)
    if is_main:
        print(f"{record.long_name}: {model.num_parameters():,} parameters, vocabulary {data.tokenizer.vocab_size:,}, "
              f"{len(data.train_ids):,} training tokens, bf16 autocast {'on' if trainer.amp else 'off'}", flush=True)
    if not args.finalize_only:
        trainer.fit()
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    if not is_main:
        return 0
    if not (out_dir / "best").is_dir():
        print("no epoch finished within the time budget, so there is no model to write yet; run again with "
              "--resume (the checkpoint is kept), or give a larger --time-budget", file=sys.stderr)
        return 0 if trainer.out_of_time() else 2
    command = "`python train_space.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])) + "`"
    folder = publish.finalize(out_dir, record, data, config, notes=args.notes, command=command)
    print(f"model folder: {folder}")
    if args.bundle:
        print(f"bundled as {publish.bundle(folder, record.long_name)}")
    if args.push_to_hub:
        print(f"pushed to {hub.push(folder, args.push_to_hub, token)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_politely(main))
