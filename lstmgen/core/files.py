"""What a model folder holds, where things live, and writes that never leave a half-written file.

A model folder is exactly what train_space.py writes, the app loads and the Hub stores:
config.json, model.safetensors, lstmgen_tokenizer.json and, for char and word, tokenizer.json in the `tokenizers`
library's format (+ gpt2.tiktoken for subword), metrics.json, loss_curve.png and README.md (the model card).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # lstmgen/
PROJECT_ROOT = PACKAGE_DIR.parent
PRETRAINED_DIR = PACKAGE_DIR / "pretrained"  # the weights that ship with the app
SHIPPED_DATA_DIR = PROJECT_ROOT / "data"  # public-domain corpora that ship with the repository

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
GPT2_RANKS_FILE = "gpt2.tiktoken"
METRICS_FILE = "metrics.json"
LOSS_CURVE_FILE = "loss_curve.png"
CARD_FILE = "README.md"
BEST_FOLDER = "best"  # the kept (best) model inside a training run's folder


def write_json_atomic(data, path: Path) -> None:
    """Write JSON to a temporary file, then rename it over `path`: a crash leaves the old file or the new."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    os.replace(tmp, path)


def save_atomic(obj, path: Path) -> None:
    """torch.save to a temporary file, then rename it over `path`."""
    import torch

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def replace_folder(build, folder: Path) -> Path:
    """Call `build(tmp)` to fill a temporary folder, then swap it in for `folder`."""
    folder = Path(folder)
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build(tmp)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def read_json(path: Path, default=None):
    """The JSON in `path`, or `default` when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default
