"""The Hugging Face Hub both ways: resolve a model (local folder, Hub cache, Hub, bundled weights) and push one.

Resolving reads safetensors only and never waits long: a pinned revision ("owner/name@revision") is looked for
in this machine's Hub cache first (no network); then the Hub is asked, and since huggingface_hub's own time-outs
bound only its first request, the download runs in a daemon thread and we stop waiting at a deadline
(LSTMGEN_HUB_TIMEOUT); then the bundled weights serve. An unpinned repo asks the Hub before the cache.
Pushing goes to the account of the token given (a visitor's own sign-in in the app), in plain-words errors.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .core.data import is_hub_id
from .core.files import CARD_FILE, CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, read_json
from .core.model import LSTMLanguageModel
from .core.operator_settings import OperatorSettings, operator_settings, variable
from .core.records import PRESETS, ModelRecord, find, split_revision, weights_revision
from .core.tokenizers import Tokenizer, load_tokenizer, vocabulary_file

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
    source: str  # "local folder …", "Hub owner/name@commit" (+ " from the cache") or "bundled …"
    metrics: dict = field(default_factory=dict)
    fallback_reason: str | None = None  # why the Hub was not used, when it was tried
    origin: str = "folder"  # folder | cache | hub | bundled
    repo: str | None = None  # the Hub repo asked for, and the revision asked (None: its main branch)
    revision: str | None = None
    commit: str | None = None  # the Hub commit served (cache or Hub)

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
        raise ModelLoadError(f"tokenizer {vocabulary_file(folder)} has {tokenizer.vocab_size} tokens, "
                             f"config {config} expects {model.vocab_size}")
    return model.eval(), tokenizer


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_metrics(folder: Path) -> dict:
    return read_json(Path(folder) / METRICS_FILE, {})


def cached(repo_id: str, revision: str | None = None, cache_dir: str | None = None) -> Path:
    """The snapshot of `repo_id` at `revision` in this machine's Hub cache, without the network (local_files_only);
    huggingface_hub's LocalEntryNotFoundError where there is none."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, revision=revision, allow_patterns=SAFE_PATTERNS, cache_dir=cache_dir,
                                  local_files_only=True))


def download(repo_id: str, revision: str | None = None, timeout_s: float | None = None,
             cache_dir: str | None = None) -> Path:
    """snapshot_download of the safe files, abandoned after `timeout_s` seconds (default LSTMGEN_HUB_TIMEOUT)."""
    from huggingface_hub import constants, snapshot_download

    if constants.HF_HUB_OFFLINE:  # it would answer from the cache: that is cached()'s to say
        raise ConnectionError("the Hub is not asked: HF_HUB_OFFLINE is set")

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
    bundled weights), or a Hub repo id, "owner/name" or "owner/name@revision" (`revision` also names one).
    With use_hub=False neither the Hub nor its cache is asked."""
    record = name if isinstance(name, ModelRecord) else None
    if record is None:
        path = Path(name).expanduser()
        if path.is_dir():
            model, tokenizer = load_model_folder(path)
            return LoadedModel(model, tokenizer, path, f"local folder {path}", read_metrics(path))
        record = find(name)
    if record is not None and record.folder is not None:
        return resolve(str(record.folder))
    repo_id, pinned = record.hub_ref if record else split_revision(name)
    revision = revision or pinned
    reasons = []
    if use_hub:
        # A pinned revision is the same files wherever they come from: the cache first, without the network.
        # An unpinned one (main) may have moved on: the Hub first, the cache when the Hub cannot be had.
        tries = [("cache", cached), ("hub", download)] if revision else [("hub", download), ("cache", cached)]
        for origin, fetch in tries:
            try:
                folder = fetch(repo_id, revision, timeout_s, cache_dir) if origin == "hub" else \
                    fetch(repo_id, revision, cache_dir)
                model, tokenizer = load_model_folder(folder)
            except Exception as error:  # any failure of one source falls to the next
                reasons.append(f"{'the cache' if origin == 'cache' else 'the Hub'}: {type(error).__name__}: "
                               f"{_first_line(error)}")
                continue
            # The snapshot folder is named after the commit it holds.
            where = " (this machine's Hub cache)" if origin == "cache" else ""
            return LoadedModel(model, tokenizer, folder, f"Hub {repo_id}@{folder.name[:12]}{where}",
                               read_metrics(folder), origin=origin, repo=repo_id, revision=revision,
                               commit=folder.name)
    reason = "; ".join(reasons) or None
    if record is None:
        hub = f"neither the Hub cache nor the Hub had it ({reason})" if use_hub else "the Hub was not asked (--no-hub)"
        raise ModelLoadError(f"cannot load {name!r}: it is not a model folder, not a preset "
                             f"({', '.join(PRESETS)}), and {hub}")
    bundled = record.bundled_folder
    if not bundled.is_dir():
        raise ModelLoadError(f"no bundled weights for {record.long_name} at {bundled}; Hub: {reason or 'not tried'}")
    model, tokenizer = load_model_folder(bundled)
    return LoadedModel(model, tokenizer, bundled, f"bundled {Path(*bundled.parts[-3:])}", read_metrics(bundled),
                       fallback_reason=reason, origin="bundled", repo=repo_id, revision=revision)


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


def push(folder: str | Path, repo_id: str, token: str, private: bool = False, card: str | None = None) -> str:
    """Create the repo if needed and upload the model folder (with `card` as its README.md, if given). A shipped
    model's upload is tagged with its weights' revision (lstmgen.core.records.weights_revision), the revision its
    record pins. Returns the repo's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo = api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
    with tempfile.TemporaryDirectory(prefix="lstmgen-push-") as copy:
        if card is not None:  # the folder itself stays as it was
            folder = Path(shutil.copytree(folder, Path(copy) / "model"))
            (folder / CARD_FILE).write_text(card)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                   commit_message="Upload lstmgen model")
        if read_metrics(folder).get("preset") in PRESETS and (Path(folder) / WEIGHTS_FILE).is_file():
            api.create_tag(repo_id, tag=weights_revision(folder), revision=getattr(commit, "oid", None),
                           exist_ok=True)
    return str(repo)


def local_token() -> str | None:
    """This machine's token (HF_TOKEN, or the login `hf auth login` saved), or None."""
    from huggingface_hub import get_token

    return get_token()  # HF_TOKEN first, then the saved login


# Off by default. On, a visitor who is not signed in publishes with this server's own Hub login (HF_TOKEN or
# `hf auth login`), i.e. as the server's owner, into the owner's account: only for an app that no stranger reaches.
SERVER_TOKEN_ENV = variable(OperatorSettings, "publish_with_server_token")  # named in the Train tab
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
    """A repo name as the Hub allows it (validate_repo_id), and only a name: the owner is never the visitor's to
    choose."""
    name = name.strip() if isinstance(name, str) else ""
    if "/" in name:
        raise PublishError("give only the repo's name, like my-lstm: it is created on your own account")
    if not is_hub_id(name):
        raise PublishError("give the repo a name of letters, digits, '-', '_' or '.' (at most 96), like my-lstm")
    return name


def push_to_account(folder: str | Path, name: str, token: str | None, timeout_s: float = PUBLISH_TIMEOUT_S,
                    card: Callable[[str], str] | None = None) -> str:
    """Push a model folder to `{the token's user}/{name}` and return its URL; PublishError, in plain words,
    for everything that can go wrong (no sign-in, a bad name, no permission, the Hub unreachable). `card(repo_id)`
    writes the model card for the repo it goes to (the folder's own README.md otherwise)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if not token:
        raise PublishError("sign in with Hugging Face first (the “Sign in” button above), then publish")
    name = check_repo_name(name)
    outcome: dict = {}

    def work():
        try:
            repo_id = f"{HfApi(token=token).whoami()['name']}/{name}"
            outcome["url"] = push(folder, repo_id, token, card=card(repo_id) if card else None)
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
