"""The Hugging Face Hub both ways: resolve a model (local folder, Hub, bundled weights) and push one.

Resolving reads safetensors only and never waits long: huggingface_hub's own time-outs bound only its first
request, so the download runs in a daemon thread and we stop waiting at a deadline (LSTMGEN_HUB_TIMEOUT).
Pushing goes to the account of the token given (a visitor's own sign-in in the app), in plain-words errors.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .core.files import CONFIG_FILE, METRICS_FILE, TOKENIZER_FILE, WEIGHTS_FILE, read_json
from .core.model import LSTMLanguageModel
from .core.operator_settings import OperatorSettings, operator_settings, variable
from .core.records import PRESETS, ModelRecord, find
from .core.tokenizers import Tokenizer, load_tokenizer

# What is fetched from a repo: never *.bin / *.pt / *.pkl, so a pickle never reaches the disk.
SAFE_PATTERNS = ["*.safetensors", "*.json", "*.tiktoken", "*.md", "*.png"]
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


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


def download(repo_id: str, revision: str | None = None, timeout_s: float | None = None,
             cache_dir: str | None = None) -> Path:
    """snapshot_download of the safe files, abandoned after `timeout_s` seconds (default LSTMGEN_HUB_TIMEOUT)."""
    from huggingface_hub import snapshot_download

    timeout_s = operator_settings().hub_timeout_s if timeout_s is None else timeout_s
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


def resolve(name: str | ModelRecord, revision: str | None = None, timeout_s: float | None = None,
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


# --------------------------------------------------------------------------- pushing

class MissingTokenError(RuntimeError):
    pass


class PublishError(RuntimeError):
    """A push that cannot be done; the message says why (it never holds the token)."""


def require_token() -> str:
    """The Hub token from HF_TOKEN or the saved login (local_token), for --push-to-hub. Never printed."""
    token = local_token()
    if not token:
        raise MissingTokenError(
            "--push-to-hub needs a Hugging Face token: set HF_TOKEN or run `hf auth login` first")
    return token


def push(folder: str | Path, repo_id: str, token: str, private: bool = False) -> str:
    """Create the repo if needed and upload the model folder. Returns the repo's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo = api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                      commit_message="Upload lstmgen model")
    return str(repo)


def local_token() -> str | None:
    """This machine's token (HF_TOKEN, or the login `hf auth login` saved), or None."""
    from huggingface_hub import get_token

    return get_token()  # HF_TOKEN first, then the saved login


# Off by default. On, a visitor who is not signed in publishes with this server's own Hub login (HF_TOKEN or
# `hf auth login`), i.e. as the server's owner, into the owner's account: only for an app that no stranger reaches.
SERVER_TOKEN_ENV = variable(OperatorSettings, "publish_with_server_token")  # named in the Train tab
# A repo name as the Hub allows it: letters, digits, "-", "_", "."; no "--" or ".."; not starting or ending
# with "-" or "."; at most 96 characters. The owner is never the visitor's to choose.
REPO_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
PUBLISH_TIMEOUT_S = 120.0


def publishing_token(visitor_token: str | None) -> str | None:
    """The token a visitor's publish may use: their own sign-in's. The server's own credentials only when the
    operator set LSTMGEN_PUBLISH_WITH_SERVER_TOKEN=1."""
    if visitor_token:
        return visitor_token
    if operator_settings().publish_with_server_token:
        return local_token()
    return None


def check_repo_name(name) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if "/" in name:
        raise PublishError("give only the repo's name, like my-lstm: it is created on your own account")
    if not REPO_NAME.fullmatch(name) or "--" in name or ".." in name or name.endswith(".git"):
        raise PublishError("give the repo a name of letters, digits, '-', '_' or '.' (at most 96), like my-lstm")
    return name


def push_to_account(folder: str | Path, name: str, token: str | None, timeout_s: float = PUBLISH_TIMEOUT_S) -> str:
    """Push a model folder to `{the token's user}/{name}` and return its URL; PublishError, in plain words,
    for everything that can go wrong (no sign-in, a bad name, no permission, the Hub unreachable)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if not token:
        raise PublishError("sign in with Hugging Face first (the “Sign in” button above), then publish")
    name = check_repo_name(name)
    outcome: dict = {}

    def work():
        try:
            user = HfApi(token=token).whoami()["name"]
            outcome["url"] = push(folder, f"{user}/{name}", token)
        except HfHubHTTPError as error:
            status = getattr(error.response, "status_code", None)
            if status == 401:
                outcome["error"] = f"your sign-in cannot create {name}: sign in again"
            elif status == 403:  # the sign-in lets this app write only to repos it created (contribute-repos)
                outcome["error"] = (f"your sign-in does not let this app write to {name}: choose a new name (it "
                                    "writes only to models it created), or sign in again and allow it to")
            elif status == 409:
                outcome["error"] = f"{name} already exists and cannot be written to: choose another name"
            else:
                outcome["error"] = f"the Hugging Face Hub refused the upload (HTTP {status}): try again later"
        except Exception as error:  # httpx's ConnectError and timeouts (huggingface_hub 2.x), OSError, offline mode
            outcome["error"] = "the Hugging Face Hub could not be reached: try again later"
            outcome["cause"] = type(error).__name__

    worker = threading.Thread(target=work, name="publish", daemon=True)
    worker.start()
    worker.join(timeout_s)  # the Hub's client can wait without end on a server that does not answer
    if "url" in outcome:
        return outcome["url"]
    raise PublishError(outcome.get("error", "the Hugging Face Hub did not answer in time: try again later"))
