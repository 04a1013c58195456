"""Resolve a model: an explicit local folder, else the Hugging Face Hub, else the weights bundled
with the package. Safetensors only, and never a long wait.

huggingface_hub's own time-outs (HF_HUB_ETAG_TIMEOUT, HF_HUB_DOWNLOAD_TIMEOUT) bound only the first
request: measured here, a failing DNS costs ~23 s of retries, and an endpoint that accepts connections
but never answers kept hf_hub_download busy for 396 s (snapshot_download did not return at all). So
the download runs in a daemon thread and we stop waiting at a deadline.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .files import CONFIG_FILE, METRICS_FILE, TOKENIZER_FILE, WEIGHTS_FILE, read_json
from .model import LSTMLanguageModel
from .records import PRESETS, ModelRecord, find
from .tokenizers import Tokenizer, load_tokenizer

# What is fetched from a repo: never *.bin / *.pt / *.pkl, so a pickle never reaches the disk.
SAFE_PATTERNS = ["*.safetensors", "*.json", "*.tiktoken", "*.md", "*.png"]
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}
DEFAULT_HUB_TIMEOUT_S = float(os.environ.get("LSTMGEN_HUB_TIMEOUT", "6"))


class ModelLoadError(RuntimeError):
    """A model that cannot be used; the message names the file at fault, or why no source worked."""


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
    if not folder.is_dir():
        raise ModelLoadError(f"{folder} is not a folder")
    weights, config = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    if not weights.is_file():
        pickles = sorted(p.name for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES)
        refused = f" (pickled weights are never loaded: {', '.join(pickles)})" if pickles else ""
        raise ModelLoadError(f"{folder} is not a model folder: {weights} is missing{refused}")
    if not config.is_file():
        raise ModelLoadError(f"missing config file {config}")
    try:
        json.loads(config.read_text())
    except ValueError as error:
        raise ModelLoadError(f"invalid config file {config}: {error}") from None
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:  # validates the header against the file size
            for key in f.keys():
                f.get_slice(key)
    except Exception as error:  # safetensors raises its own error types for every kind of damage
        raise ModelLoadError(f"corrupt or truncated weights file {weights}: {error}") from None
    try:
        model = LSTMLanguageModel.from_pretrained(folder, strict=True)
    except Exception as error:
        raise ModelLoadError(f"weights {weights} do not match config {config}: {_first_line(error)}") from None
    try:
        tokenizer = load_tokenizer(folder)
    except (OSError, ValueError) as error:
        raise ModelLoadError(str(error)) from None
    if tokenizer.vocab_size != model.vocab_size:
        raise ModelLoadError(f"tokenizer {folder / TOKENIZER_FILE} has {tokenizer.vocab_size} tokens, "
                             f"config {config} expects {model.vocab_size}")
    return model.eval(), tokenizer


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_metrics(folder: Path) -> dict:
    return read_json(Path(folder) / METRICS_FILE, {})


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


def resolve(name: str | ModelRecord, revision: str | None = None, timeout_s: float = DEFAULT_HUB_TIMEOUT_S,
            use_hub: bool = True, cache_dir: str | None = None) -> LoadedModel:
    """`name` is a local folder, a record or a preset's name (its folder, else its Hub repo, else its
    bundled weights), or a Hub repo id."""
    record = name if isinstance(name, ModelRecord) else None
    if record is None:
        path = Path(name).expanduser()
        if path.is_dir():
            model, tokenizer = load_model_folder(path)
            return LoadedModel(model, tokenizer, path, f"local folder {path}", read_metrics(path))
        record = find(name)
    if record is not None and record.folder is not None:
        return resolve(str(record.folder))
    repo_id = record.repo_id if record else name
    reason = None
    if use_hub:
        try:
            folder = download(repo_id, revision, timeout_s, cache_dir)
            model, tokenizer = load_model_folder(folder)
            # The snapshot folder is named after the commit it holds.
            return LoadedModel(model, tokenizer, folder, f"Hub {repo_id}@{folder.name[:12]}", read_metrics(folder))
        except Exception as error:  # any failure of the Hub path falls back to the bundled weights
            reason = f"{type(error).__name__}: {_first_line(error)}"
    if record is None:
        hub = f"the Hub failed ({reason})" if use_hub else "the Hub was not asked (--no-hub)"
        raise ModelLoadError(f"cannot load {name!r}: it is not a model folder, not a preset "
                             f"({', '.join(PRESETS)}), and {hub}")
    bundled = record.bundled_folder
    if not bundled.is_dir():
        raise ModelLoadError(f"no bundled weights for {record.long_name} at {bundled}; Hub: {reason or 'not tried'}")
    model, tokenizer = load_model_folder(bundled)
    return LoadedModel(model, tokenizer, bundled, f"bundled {Path(*bundled.parts[-3:])}",
                       read_metrics(bundled), fallback_reason=reason)

