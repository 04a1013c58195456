"""How a model is trained: TrainConfig, declared setting by setting, read without loading the trainer."""

from __future__ import annotations

from dataclasses import dataclass

from .settings import setting


@dataclass
class TrainConfig:
    """How to train; every field with help text is also a train_space.py flag."""

    epochs: int = setting(10, "passes over the training text", low=1)
    batch_size: int = setting(32, "parallel streams per process", low=1)
    seq_len: int = setting(128, "steps of truncated backpropagation through time", low=2)
    lr: float = setting(2e-3, "peak learning rate (AdamW)", low=0.0)
    weight_decay: float = setting(0.01, "AdamW weight decay", low=0.0)
    clip: float = setting(1.0, "gradient norm clipping", low=0.0)
    lr_schedule: str = setting("plateau", "plateau: multiply the rate by lr_factor after lr_patience epochs without a "
                               "better validation loss; cosine: warm up, then a half cosine down to min_lr at the last "
                               "step (best when the run's length is known in advance); budget: the same cosine over the "
                               "time budget instead of the steps", choices=["plateau", "cosine", "budget"])
    lr_factor: float = setting(0.5, "plateau: the factor the rate is multiplied by", low=0.0, high=1.0)
    lr_patience: int = setting(0, "plateau: epochs without improvement before the rate falls", low=0)
    warmup_steps: int = setting(0, "cosine: steps of linear warm-up", low=0)
    min_lr: float = setting(1e-5, "the lowest rate either schedule reaches", low=0.0)
    early_stop: int = setting(3, "stop after this many epochs without a better validation loss", low=1)
    amp: str = setting("auto", "bf16 autocast: auto (where the device has bf16), on, off", choices=["auto", "on", "off"])
    device: str = setting("auto", "cpu, cuda, cuda:N, or auto: a usable GPU if there is one, else the CPU")
    threads: int = setting(0, "CPU threads (0: torch's choice)", low=0)
    seed: int = setting(1234, "random seed of the initialisation and dropout", low=0)
    eval_batch_size: int = setting(16, "parallel streams when validating (and for the reported figure)", low=1)
    eval_seq_len: int = setting(256, "steps per window when validating", low=2)
    checkpoint_every_s: float = setting(120.0, "seconds between checkpoints (last.pt; 0: after every step)", low=0.0)
    checkpoint_every_steps: int = setting(0, "also checkpoint every N steps (0: by time only)", low=0)
    time_budget_s: float = setting(0.0, "seconds of training, then checkpoint, stop and finish (0: no limit)",
                                   low=0.0, flag="--time-budget")
    progress: bool = setting(True, "show progress bars")
    validate_at_stop: bool = setting(False, "when the time budget (or a stop) ends training mid-epoch, validate and keep "
                                            "the model if it is the best so far")
    curve_every_s: float = setting(0.0, "also note the training loss and a quick validation loss (on the first "
                                        "curve_val_tokens held-out tokens) every this many seconds (0: off)", low=0.0)
    curve_val_tokens: int = setting(20_000, "held-out tokens of the quick validation", low=2)
    average_after: int = setting(0, "from this epoch on, evaluate and keep the running average of the weights "
                                    "(0: off)", low=0)
    average_decay: float = setting(0.0, "0: the plain mean of every step since (averaged SGD); else the decay of an "
                                        "exponential average", low=0.0, high=1.0)
    # Derived from the data, not set by hand:
    eval_per_tokens: int | None = setting(None, "loss denominator (GPT-2 tokens for subword)", cli=False)
    eval_num_chars: int | None = setting(None, "characters in the validation text, for bits per character", cli=False)
