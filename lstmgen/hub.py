"""Resolve a model: an explicit local folder, else the Hugging Face Hub, else the weights bundled
with the package. Safetensors only, and never a long wait.

huggingface_hub's own time-outs bound only the first request: a dead DNS costs ~23 s of retries
and an endpoint that accepts connections but never answers can hold a download for minutes
(../shared/STACK.md). So the download runs in a daemon thread and we stop waiting at a deadline.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .model import LSTMLanguageModel
from .presets import PRESETS
from .tokenizers import Tokenizer, load_tokenizer

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"
# What is fetched from a repo: never *.bin / *.pt / *.pkl, so a pickle never reaches the disk.
SAFE_PATTERNS = ["*.safetensors", "*.json", "*.tiktoken", "*.md", "*.png"]
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}
DEFAULT_HUB_TIMEOUT_S = float(os.environ.get("LSTMGEN_HUB_TIMEOUT", "6"))


class ModelLoadError(RuntimeError):
    """A model folder that cannot be used; the message names the file at fault."""


@dataclass
class LoadedModel:
    model: LSTMLanguageModel
    tokenizer: Tokenizer
    folder: Path
    source: str  # "local folder …", "Hub …@revision" or "bundled …"
    metrics: dict = field(default_factory=dict)
    fallback_reason: str | None = None  # why the Hub was not used, when it was tried

    @property
    def preset(self) -> str | None:
        return self.metrics.get("preset")


def load_model_folder(folder: str | Path) -> tuple[LSTMLanguageModel, Tokenizer]:
    """Load config.json + model.safetensors + tokenizer, checking each and naming the file at fault."""
    folder = Path(folder)
    weights, config = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    if not weights.is_file():
        pickles = sorted(p.name for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES)
        refused = f" (pickled weights are never loaded: {', '.join(pickles)})" if pickles else ""
        raise ModelLoadError(f"missing weights file {weights}{refused}")
    if not config.is_file():
        raise ModelLoadError(f"missing config file {config}")
    try:
        json.loads(config.read_text())
    except ValueError as error:
        raise ModelLoadError(f"invalid config file {config}: {error}") from error
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:  # validates the header against the file size
            for key in f.keys():
                f.get_slice(key)
    except Exception as error:  # safetensors raises its own error types for every kind of damage
        raise ModelLoadError(f"corrupt or truncated weights file {weights}: {error}") from error
    try:
        model = LSTMLanguageModel.from_pretrained(folder, strict=True)
    except Exception as error:
        raise ModelLoadError(f"weights {weights} do not match config {config}: {error}") from error
    try:
        tokenizer = load_tokenizer(folder)
    except (OSError, ValueError) as error:
        raise ModelLoadError(str(error)) from error
    if tokenizer.vocab_size != model.vocab_size:
        raise ModelLoadError(f"tokenizer {folder / 'tokenizer.json'} has {tokenizer.vocab_size} tokens, "
                             f"config {config} expects {model.vocab_size}")
    return model.eval(), tokenizer


def read_metrics(folder: Path) -> dict:
    try:
        return json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def download(repo_id: str, revision: str | None = None, timeout_s: float = DEFAULT_HUB_TIMEOUT_S,
             cache_dir: str | None = None) -> Path:
    """snapshot_download of the safe files, abandoned after `timeout_s` seconds."""
    from huggingface_hub import snapshot_download

    result: dict = {}

    def fetch():
        try:
            result["path"] = snapshot_download(repo_id, revision=revision, allow_patterns=SAFE_PATTERNS,
                                               cache_dir=cache_dir)
        except BaseException as error:  # reported to the caller below
            result["error"] = error

    worker = threading.Thread(target=fetch, name=f"hub-download-{repo_id}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimeoutError(f"the Hub did not answer within {timeout_s:.0f} s for {repo_id}")
    if "error" in result:
        raise result["error"]
    return Path(result["path"])


def resolve(name: str, revision: str | None = None, timeout_s: float = DEFAULT_HUB_TIMEOUT_S,
            use_hub: bool = True, cache_dir: str | None = None) -> LoadedModel:
    """`name` is a local folder, a preset (its Hub repo, then its bundled weights) or a Hub repo id."""
    path = Path(name).expanduser()
    if path.is_dir():
        model, tokenizer = load_model_folder(path)
        return LoadedModel(model, tokenizer, path, f"local folder {path}", read_metrics(path))
    preset = PRESETS.get(name)
    repo_id = preset.repo_id if preset else name
    bundled = PRETRAINED_DIR / name if preset else None
    reason = None
    if use_hub:
        try:
            folder = download(repo_id, revision, timeout_s, cache_dir)
            model, tokenizer = load_model_folder(folder)
            # The snapshot folder is named after the commit it holds.
            return LoadedModel(model, tokenizer, folder, f"Hub {repo_id}@{folder.name[:12]}", read_metrics(folder))
        except Exception as error:  # any failure of the Hub path falls back to the bundled weights
            reason = f"{type(error).__name__}: {error}"
    if bundled is None:
        hub = f"the Hub failed ({reason})" if use_hub else "the Hub was not asked"
        raise ModelLoadError(f"cannot load {name!r}: not a local folder, not a preset, and {hub}")
    if not bundled.is_dir():
        raise ModelLoadError(f"no bundled weights for {name} at {bundled}; Hub: {reason or 'not tried'}")
    model, tokenizer = load_model_folder(bundled)
    return LoadedModel(model, tokenizer, bundled, f"bundled {bundled.relative_to(PRETRAINED_DIR.parent.parent)}",
                       read_metrics(bundled), fallback_reason=reason)
