"""Train one of the presets and (optionally) publish it to the Hugging Face Hub.

    python train_space.py --preset char-shakespeare [--epochs N ...] [--resume] [--push-to-hub OWNER/NAME]
    python train_space.py --preset char-shakespeare --finalize-only --bundle   # ship the best checkpoint
    torchrun --nproc-per-node 2 train_space.py --preset word-harrypotter   # DistributedDataParallel

The output folder holds the training state (last.pt, resumable) and, when training ends,
`model/`: config.json, model.safetensors, tokenizer, metrics.json, loss curve and model card,
exactly what is pushed.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

import torch
import torch.distributed as dist

from lstmgen import publish
from lstmgen.data import load_text
from lstmgen.hub import resolve
from lstmgen.model import LSTMLanguageModel
from lstmgen.presets import PRESETS, corpus_files, prepare
from lstmgen.train import TrainConfig, Trainer

MODEL_FLAGS = ["embed_size", "hidden_size", "num_layers", "dropout", "embed_dropout", "input_dropout", "weight_drop"]
TRAIN_FLAGS = ["epochs", "batch_size", "seq_len", "lr", "weight_decay", "clip", "early_stop", "checkpoint_every_s",
               "average_after", "average_decay", "lr_schedule", "warmup_steps", "min_lr"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS))
    parser.add_argument("--data", help="local corpus: a file, or a folder holding the preset's files")
    parser.add_argument("--dataset", help="a Hub dataset id with a 'text' column, instead of local files")
    parser.add_argument("--out", help="output folder (default runs/PRESET)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--time-budget", type=float, default=0.0, help="seconds of training, then stop and finish")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    parser.add_argument("--amp", choices=["auto", "on", "off"], default="auto", help="bf16 autocast")
    parser.add_argument("--resume", action="store_true", help="continue from the output folder's last checkpoint")
    parser.add_argument("--push-to-hub", metavar="OWNER/NAME", help="upload the model folder to this Hub repo")
    parser.add_argument("--finalize-only", action="store_true",
                        help="no training: rebuild the model folder from the output folder's best checkpoint")
    parser.add_argument("--bundle", action="store_true",
                        help="copy the model folder into lstmgen/pretrained/PRESET, the app's bundled weights")
    parser.add_argument("--notes", default="", help="text for the model card's notes (what was tried)")
    parser.add_argument("--init-from", metavar="FOLDER_OR_PRESET",
                        help="start from these weights (a model folder, or a preset's shipped weights) with a "
                             "fresh optimizer: continues a model where its checkpoint did not survive")
    parser.add_argument("--no-progress", action="store_true")
    types = {f.name: f.type for f in fields(TrainConfig)}
    for name in MODEL_FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), type=int if name.endswith(("size", "layers")) else float)
    for name in TRAIN_FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), type={"int": int, "float": float, "str": str}[types[name]])
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    preset = PRESETS[args.preset]
    token = None
    if args.push_to_hub:
        try:
            token = publish.require_token()  # fail before any training, never print the token
        except publish.MissingTokenError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
        if args.device.startswith("cuda"):
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    is_main = not distributed or dist.get_rank() == 0
    out_dir = Path(args.out or f"runs/{preset.name}")

    if args.dataset:
        text = load_text(dataset=args.dataset)
    else:
        data = Path(args.data) if args.data else None
        files = [data] if data and data.is_file() else corpus_files(preset, data)
        text = load_text(files)
    data = prepare(preset, text)

    model_kwargs = dict(preset.model, vocab_size=data.tokenizer.vocab_size)
    model_kwargs.update({k: getattr(args, k) for k in MODEL_FLAGS if getattr(args, k) is not None})
    train_kwargs = dict(preset.train)
    train_kwargs.update({k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None})
    config = TrainConfig(**train_kwargs, device=args.device, amp=args.amp, time_budget_s=args.time_budget,
                         progress=not args.no_progress, eval_per_tokens=data.val_per_tokens,
                         eval_num_chars=data.val_chars if preset.kind == "char" else None)
    torch.manual_seed(config.seed)
    model = LSTMLanguageModel(**model_kwargs)
    if args.init_from:
        start = resolve(args.init_from, use_hub=False)
        if start.tokenizer.state() != data.tokenizer.state():
            print(f"error: {start.folder} was trained with another tokenizer", file=sys.stderr)
            return 2
        model.load_state_dict(start.model.float().state_dict())
        if is_main:  # the model card's loss curve and history then show the whole training, not just this run
            publish.record_continuation(out_dir, start.folder, start.metrics.get("epochs", []))
    trainer = Trainer(model, data.train_ids, data.val_ids, out_dir, config, tokenizer=data.tokenizer)
    if args.resume and trainer.resume() and is_main:
        print(f"resumed from {out_dir / 'last.pt'}: epoch {trainer.epoch + 1}, step {trainer.steps}", flush=True)
    if is_main:
        print(f"{preset.name}: {model.num_parameters():,} parameters, vocabulary {data.tokenizer.vocab_size:,}, "
              f"{len(data.train_ids):,} training tokens, bf16 autocast {'on' if trainer.amp else 'off'}", flush=True)
    if not args.finalize_only:
        trainer.fit()
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    if not is_main:
        return 0
    if trainer.out_of_time() and trainer.epoch < config.epochs and not trainer.history:
        print("time budget spent before the first epoch ended; run again with --resume", file=sys.stderr)
        return 0
    folder = publish.finalize(out_dir, preset, data, config, notes=args.notes)
    print(f"model folder: {folder}")
    if args.bundle:
        print(f"bundled as {publish.bundle(folder, preset.name)}")
    if args.push_to_hub:
        url = publish.push(folder, args.push_to_hub, token)
        print(f"pushed to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
