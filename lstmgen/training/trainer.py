"""The trainer: truncated BPTT with the state carried, checkpoints that resume, the best model kept.

AdamW, clipping, plateau, cosine or time-budget schedules, early stopping, weight averaging, bf16 autocast,
tqdm, per-epoch metrics in JSON and atomic checkpoints. Works alone or under torchrun (DDP)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from ..core.config import TrainConfig
from ..core.data import batchify, bptt_batches, num_batches
from ..core.evaluate import evaluate
from ..core.files import BEST_FOLDER, METRICS_FILE, replace_folder, save_atomic, write_json_atomic

CHECKPOINT_FILE = "last.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read; the message names the file, which is left as it was."""


def resolve_device(device: str) -> str:
    """"auto" is a GPU only where one is really usable (gpu.compute_device); anything else is taken as given."""
    if device != "auto":
        return device
    from .gpu import compute_device

    return compute_device()


def budget_lr(elapsed_s: float, budget_s: float, step: int, peak: float, floor: float, warmup_steps: int = 0) -> float:
    """The rate when the run's length is a time budget: a linear warm-up over steps, then a half cosine
    from `peak` to `floor` as the budget runs out."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = min(1.0, elapsed_s / budget_s) if budget_s > 0 else 0.0
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def bf16_supported(device: str) -> bool:
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())


def cosine_lr(step: int, total_steps: int, peak: float, floor: float, warmup_steps: int = 0) -> float:
    """The rate for step `step` (0-based) of `total_steps`: a linear warm-up, then a half cosine from `peak`
    down to `floor`, which the last step uses."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - 1 - warmup_steps))
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def save_model_folder(model, tokenizer, folder: Path) -> None:
    """config.json + model.safetensors + tokenizer, swapped in whole."""

    def build(tmp):
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save(tmp)

    replace_folder(build, folder)


class Trainer:
    def __init__(self, model, train_ids, val_ids, out_dir: str | Path, config: TrainConfig, tokenizer=None,
                 on_progress: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None):
        """`on_progress(self.progress())` is called after every step and every validation: the caller's view of
        the run (nobody reads the trainer's counters from outside); `should_stop()` is asked after every step."""
        self.config, self.tokenizer, self.on_progress, self.should_stop = config, tokenizer, on_progress, should_stop
        self.out_dir = Path(out_dir)
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.is_main = self.rank == 0
        self.device = torch.device(resolve_device(config.device))
        self.model = model.to(self.device)
        if self.distributed:
            self.model = torch.nn.parallel.DistributedDataParallel(model)
        self.amp = config.amp == "on" or (config.amp == "auto" and bf16_supported(self.device.type))
        # Each process takes its own contiguous block of streams.
        all_rows = batchify(train_ids, config.batch_size * self.world)
        self.rows = all_rows[self.rank * config.batch_size : (self.rank + 1) * config.batch_size].to(self.device)
        self.total_steps = config.epochs * num_batches(self.rows, config.seq_len)  # the cosine's length
        self.val_ids = val_ids
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        if config.lr_schedule not in ("plateau", "cosine", "budget"):
            raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}")
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=config.lr_factor, patience=config.lr_patience, min_lr=config.min_lr
        )
        self.epoch, self.position, self.steps, self.elapsed = 0, 0, 0, 0.0
        # The epoch in progress: summed window losses and their count, kept across a resume so the
        # epoch's train_loss covers every batch, not just those run after it.
        self.epoch_loss_sum, self.epoch_windows = 0.0, 0
        self.state = None
        self.best_val, self.bad_epochs = math.inf, 0
        self.history: list[dict] = []
        # Points for a live plot (curve_every_s): {"step", "elapsed_s", "train_loss", "val_loss", "tokens_per_s"}.
        self.curve: list[dict] = []
        self.stopped = False  # should_stop() ended the run
        self.curve_noted_at = 0.0  # training seconds at the last curve point
        # Averaged weights (AWD-LSTM's averaged SGD, done here over AdamW's iterates): evaluated and kept as best.
        self.averaged: AveragedModel | None = None
        torch.manual_seed(config.seed + self.rank)

    @property
    def raw_model(self):
        return self.model.module if self.distributed else self.model

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> None:
        local = {"state": None if self.state is None else [s.cpu() for s in self.state], "rng": torch.get_rng_state()}
        per_rank = [None] * self.world
        if self.distributed:
            dist.all_gather_object(per_rank, local)
        else:
            per_rank = [local]
        if not self.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_atomic({
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch, "position": self.position, "steps": self.steps, "elapsed": self.elapsed,
            "epoch_loss_sum": self.epoch_loss_sum, "epoch_windows": self.epoch_windows,
            "best_val": self.best_val, "bad_epochs": self.bad_epochs, "history": json.dumps(self.history),
            "world": self.world, "per_rank": per_rank,
            "averaged": None if self.averaged is None else self.averaged.state_dict(),
        }, self.out_dir / CHECKPOINT_FILE)

    def resume(self) -> bool:
        """Load the last checkpoint, if any. Returns whether one was found."""
        path = self.out_dir / CHECKPOINT_FILE
        if not path.is_file():
            return False
        try:  # weights_only: a checkpoint is never unpickled as arbitrary objects
            ckpt = torch.load(path, map_location=self.device, weights_only=True)
            self.raw_model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
        except Exception as error:
            raise CheckpointError(
                f"cannot resume from {path}: it is damaged or from another model ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}). The file is kept as it was; move it away "
                "to start afresh, or train into another --out") from None
        self.epoch, self.position, self.steps = ckpt["epoch"], ckpt["position"], ckpt["steps"]
        self.epoch_loss_sum, self.epoch_windows = ckpt.get("epoch_loss_sum", 0.0), ckpt.get("epoch_windows", 0)
        self.elapsed, self.best_val, self.bad_epochs = ckpt["elapsed"], ckpt["best_val"], ckpt["bad_epochs"]
        self.history = json.loads(ckpt["history"])
        if ckpt.get("averaged") is not None:
            self.start_averaging()
            self.averaged.load_state_dict(ckpt["averaged"])
        if ckpt["world"] == self.world:
            mine = ckpt["per_rank"][self.rank]
            self.state = None if mine["state"] is None else tuple(s.to(self.device) for s in mine["state"])
            torch.set_rng_state(mine["rng"])
        else:
            self.state = None  # another number of processes: the streams differ, start them fresh
        return True

    # ------------------------------------------------------------------ training

    def start_averaging(self) -> None:
        decay = self.config.average_decay
        self.averaged = AveragedModel(self.raw_model, use_buffers=True,
                                      multi_avg_fn=get_ema_multi_avg_fn(decay) if decay else None)

    @property
    def model_to_keep(self):
        """The weights that are evaluated and saved: the running average once it has started."""
        return self.raw_model if self.averaged is None else self.averaged.module

    def evaluate(self):
        cfg = self.config
        return evaluate(self.model_to_keep, self.val_ids, cfg.eval_batch_size, cfg.eval_seq_len,
                        num_chars=cfg.eval_num_chars, per_tokens=cfg.eval_per_tokens, device=self.device)

    def out_of_time(self) -> bool:
        return self.config.time_budget_s > 0 and self.elapsed >= self.config.time_budget_s

    def must_stop(self) -> bool:
        if self.should_stop is not None and self.should_stop():
            self.stopped = True
        return self.stopped or self.out_of_time()

    def note_curve(self, train_loss: float, tokens_per_s: float) -> None:
        cfg = self.config
        quick = evaluate(self.model_to_keep, self.val_ids[: cfg.curve_val_tokens], min(cfg.eval_batch_size, 16),
                         cfg.eval_seq_len, device=self.device)
        self.model.train()
        self.curve.append({"step": self.steps, "elapsed_s": self.elapsed, "train_loss": train_loss,
                           "val_loss": quick.loss, "tokens_per_s": tokens_per_s})

    def train_window(self, inputs, targets) -> float:
        state = None if self.state is None else tuple(s.detach() for s in self.state)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits, state = self.model(inputs, state)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip)
        cfg = self.config
        if cfg.lr_schedule in ("cosine", "budget"):
            rate = (cosine_lr(self.steps, self.total_steps, cfg.lr, cfg.min_lr, cfg.warmup_steps)
                    if cfg.lr_schedule == "cosine" else
                    budget_lr(self.elapsed, cfg.time_budget_s, self.steps, cfg.lr, cfg.min_lr, cfg.warmup_steps))
            for group in self.optimizer.param_groups:
                group["lr"] = rate
        self.optimizer.step()
        if self.config.average_after and self.epoch + 1 >= self.config.average_after:
            if self.averaged is None:
                self.start_averaging()
            self.averaged.update_parameters(self.raw_model)
        self.state = tuple(s.detach().float() for s in state)
        return loss.item()

    def run_epoch(self) -> tuple[float, float, bool]:
        """Train from the current position to the end of the epoch. Returns (mean loss, tokens/s, finished)."""
        cfg = self.config
        self.model.train()
        tokens, windows = 0, 0
        started = last_checkpoint = previous = time.time()
        done_before = self.position // cfg.seq_len
        bar = tqdm(total=num_batches(self.rows, cfg.seq_len), initial=done_before, desc=f"epoch {self.epoch + 1}",
                   disable=not (cfg.progress and self.is_main), leave=False, dynamic_ncols=True)
        for position, inputs, targets in bptt_batches(self.rows, cfg.seq_len, start=self.position):
            loss = self.train_window(inputs, targets)
            self.epoch_loss_sum, self.epoch_windows = self.epoch_loss_sum + loss, self.epoch_windows + 1
            windows, tokens = windows + 1, tokens + targets.numel() * self.world
            self.position, self.steps = position + inputs.size(1), self.steps + 1
            now = time.time()
            self.elapsed += now - previous
            previous = now
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens / (now - started):.0f}")
            if cfg.curve_every_s and self.elapsed - self.curve_noted_at >= cfg.curve_every_s:
                self.curve_noted_at = self.elapsed
                self.note_curve(self.epoch_loss_sum / self.epoch_windows, tokens / max(now - started, 1e-9))
                previous = now = time.time()  # the quick validation is not training time
            if self.on_progress:
                self.on_progress(self.progress())
            due = (cfg.checkpoint_every_steps and self.steps % cfg.checkpoint_every_steps == 0) or (
                now - last_checkpoint >= cfg.checkpoint_every_s)
            stop = self.must_stop()
            if due or stop:
                self.save_checkpoint()
                last_checkpoint = time.time()
            if stop:
                bar.close()
                return self.epoch_loss_sum / self.epoch_windows, tokens / max(time.time() - started, 1e-9), False
        bar.close()
        mean_loss = self.epoch_loss_sum / max(self.epoch_windows, 1)
        if self.distributed:  # every process saw its own streams: report the mean over all of them
            mean = torch.tensor([mean_loss], device=self.device)
            dist.all_reduce(mean)
            mean_loss = mean.item() / self.world
        return mean_loss, tokens / max(time.time() - started, 1e-9), True

    def validate_and_keep(self, epoch, train_loss: float, tokens_per_s: float):
        """Validate, record the epoch (or the part of one, when `epoch` is a fraction) and keep the model
        as the best if it is. Returns the evaluation."""
        val = self.evaluate()
        record = {
            "epoch": epoch, "train_loss": train_loss, "train_perplexity": math.exp(min(train_loss, 50)),
            "val_loss": val.loss, "val_perplexity": val.perplexity, "val_bits_per_char": val.bits_per_char,
            "lr": self.optimizer.param_groups[0]["lr"], "tokens_per_s": tokens_per_s, "elapsed_s": self.elapsed,
            "amp_bf16": self.amp, "averaged_weights": self.averaged is not None,
        }
        self.history.append(record)
        if self.on_progress:
            self.on_progress(self.progress())
        if val.loss < self.best_val:
            self.best_val, self.bad_epochs = val.loss, 0
            if self.is_main:
                save_model_folder(self.model_to_keep, self.tokenizer, self.out_dir / BEST_FOLDER)
        else:
            self.bad_epochs += 1
        if self.is_main:
            write_json_atomic({"config": asdict(self.config), "epochs": self.history}, self.out_dir / METRICS_FILE)
            tqdm.write(f"epoch {epoch}: train {train_loss:.4f}  val {val.loss:.4f}  ppl {val.perplexity:.2f}  "
                       f"lr {record['lr']:.2e}  {tokens_per_s:.0f} tok/s")
        return val

    def progress(self) -> dict:
        """Where the run is: its step, epoch (1-based, the one in progress), training and validation losses, speed,
        training seconds, and the curve (quick points and each validation, in time order)."""
        last = self.curve[-1] if self.curve else {}
        history = self.history[-1] if self.history else {}
        train_loss = self.epoch_loss_sum / self.epoch_windows if self.epoch_windows else history.get("train_loss")
        return {"step": self.steps, "epoch": self.epoch + 1, "train_loss": train_loss,
                "val_loss": history.get("val_loss", last.get("val_loss")), "tokens_per_s": last.get("tokens_per_s"),
                "elapsed_s": self.elapsed, "stopped": self.stopped,
                "curve": sorted([dict(p) for p in self.curve] + [
                    {"elapsed_s": h["elapsed_s"], "train_loss": h["train_loss"], "val_loss": h["val_loss"]}
                    for h in self.history], key=lambda p: p["elapsed_s"])}

    def fit(self) -> list[dict]:
        """Train until the epochs, the patience, the time budget or should_stop() run out; keep the best model."""
        cfg = self.config
        while self.epoch < cfg.epochs and self.bad_epochs < cfg.early_stop and not self.must_stop():
            train_loss, tokens_per_s, finished = self.run_epoch()
            if not finished:
                if cfg.validate_at_stop and self.epoch_windows:
                    part = self.position / (self.rows.size(1) - 1)
                    self.validate_and_keep(round(self.epoch + part, 3), train_loss, tokens_per_s)
                break
            val = self.validate_and_keep(self.epoch + 1, train_loss, tokens_per_s)
            if cfg.lr_schedule == "plateau":
                self.scheduler.step(val.loss)
            self.epoch, self.position, self.state = self.epoch + 1, 0, None
            self.epoch_loss_sum, self.epoch_windows = 0.0, 0
            self.save_checkpoint()
        return self.history
