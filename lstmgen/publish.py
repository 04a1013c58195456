"""The finished model folder (weights, tokenizer, figures, loss curve, model card) and its upload."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from dataclasses import asdict
from pathlib import Path

import torch

from .cells import MAX_TOKENS as CELLS_MAX_TOKENS, held_out_source, write_cells_json
from .evaluate import evaluate
from .files import BEST_FOLDER, CARD_FILE, CONFIG_FILE, LOSS_CURVE_FILE, METRICS_FILE, PRETRAINED_DIR, read_json, \
    replace_folder, write_json_atomic
from .model import LSTMLanguageModel
from .ort_engine import OrtModel
from .quantize import size_bytes
from .tokenizers import load_tokenizer

MODEL_FOLDER = "model"
VAL_SLICE_TOKENS = 4000
CONTINUATION_FILE = "continued_from.json"


class MissingTokenError(RuntimeError):
    pass


class PublishError(RuntimeError):
    """A push that cannot be done; the message says why (it never holds the token)."""


@torch.no_grad()
def smooth_unseen_words(model, train_ids, rare_max_count: int) -> list[int]:
    """Give the ids the training split never contains the mean embedding and output bias of its rare ids
    (those used 1..rare_max_count times). Returns the ids changed.

    A vocabulary fixed over the whole corpus (the reference's rule for Harry Potter) holds words that only
    the later books use. Training never shows them as targets, only pushes their logits down, so the model
    ends up giving them e^-19; an unseen word is better predicted like a rare one (cf. Good-Turing).
    """
    counts = torch.bincount(torch.as_tensor(train_ids), minlength=model.vocab_size)
    unseen, rare = (counts == 0).nonzero().flatten(), ((counts >= 1) & (counts <= rare_max_count)).nonzero().flatten()
    if len(unseen) and len(rare):
        model.embedding.weight[unseen] = model.embedding.weight[rare].mean(0)
        model.decoder.bias[unseen] = model.decoder.bias[rare].mean()
        if model.decoder.weight is not model.embedding.weight:  # untied: the output rows too
            model.decoder.weight[unseen] = model.decoder.weight[rare].mean(0)
    return unseen.tolist()


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

    return os.environ.get("HF_TOKEN") or get_token()


# Off by default. On, a visitor who is not signed in publishes with this server's own Hub login (HF_TOKEN or
# `hf auth login`), i.e. as the server's owner, into the owner's account: only for an app that no stranger reaches.
SERVER_TOKEN_ENV = "LSTMGEN_PUBLISH_WITH_SERVER_TOKEN"
# A repo name as the Hub allows it: letters, digits, "-", "_", "."; no "--" or ".."; not starting or ending
# with "-" or "."; at most 96 characters. The owner is never the visitor's to choose.
REPO_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
PUBLISH_TIMEOUT_S = 120.0


def publishing_token(visitor_token: str | None) -> str | None:
    """The token a visitor's publish may use: their own sign-in's. The server's own credentials only when the
    operator set LSTMGEN_PUBLISH_WITH_SERVER_TOKEN=1."""
    if visitor_token:
        return visitor_token
    if os.environ.get(SERVER_TOKEN_ENV, "").lower() in ("1", "true", "yes"):
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
            if status in (401, 403):
                outcome["error"] = (f"your sign-in cannot create or write to {name}: sign in again and allow "
                                    "writing to your repos")
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


def measure(model, ids, config, per_tokens=None, num_chars=None, batch_size=None, seq_len=None) -> dict:
    """Loss and perplexity of `ids`, with the training config's evaluation streams and window unless given."""
    batch_size, seq_len = batch_size or config.eval_batch_size, seq_len or config.eval_seq_len
    result = evaluate(model, ids, batch_size, seq_len, per_tokens=per_tokens, num_chars=num_chars)
    return {"loss": result.loss, "perplexity": result.perplexity, "bits_per_char": result.bits_per_char,
            "tokens": result.tokens, "batch_size": batch_size, "seq_len": seq_len}


def final_figures(model, config, data) -> dict:
    """Validation (and test) figures of the float model and its int8 copy."""
    int8 = OrtModel(model, "int8")  # the copy the app generates with
    figures = {"size_bytes": {"float32_in_memory": size_bytes(model), "int8_in_memory": int8.size_bytes()}}
    for name, m in (("float", model), ("int8", int8)):
        figures[f"val_{name}"] = measure(m, data.val_ids, config, data.val_per_tokens, data.val_chars)
        # A fixed slice, quick to recompute: the tests check the shipped weights against it.
        figures[f"val_slice_{name}"] = measure(m, data.val_ids[:VAL_SLICE_TOKENS], config, batch_size=1, seq_len=256)
        if data.test_ids is not None:
            figures[f"test_{name}"] = measure(m, data.test_ids, config)
            figures[f"test_{name}_one_stream"] = measure(m, data.test_ids, config, batch_size=1)
    return figures


def record_continuation(out_dir: str | Path, start_folder: str | Path, earlier_epochs: list[dict]) -> None:
    """Note in the run folder that this run continues another model's training (`--init-from`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic({"from": str(start_folder), "epochs": earlier_epochs}, out_dir / CONTINUATION_FILE)


def whole_history(out_dir: Path, history: list[dict]) -> tuple[list[dict], int]:
    """This run's epochs after those of the runs it continues, numbered on. Returns (epochs, earlier count)."""
    path = out_dir / CONTINUATION_FILE
    earlier = (read_json(path) or {}).get("epochs", [])
    return earlier + [dict(h, epoch=h["epoch"] + len(earlier)) for h in history], len(earlier)


def plot_loss_curve(history: list[dict], path: Path, title: str, continued_after: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train (with dropout)")
    ax.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
    if continued_after:
        ax.axvline(continued_after + 0.5, color="grey", linestyle=":", label="continued (--init-from)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def model_card(record, metrics: dict) -> str:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    final = metrics["final"]
    split = "test" if "test_float" in final else "validation"
    headline = final["test_float"] if split == "test" else final["val_float"]
    kind, dataset = record.tokenizer.kind, record.corpus.name
    metric_type, value = ("perplexity", headline["perplexity"]) if kind == "word" else ("loss", headline["loss"])
    card_data = ModelCardData(
        language="en", license="mit", library_name="lstmgen", pipeline_tag="text-generation",
        tags=["lstm", "text-generation", kind, "lstmgen"], datasets=[dataset],
        model_name=record.long_name,
        eval_results=[EvalResult(task_type="text-generation", dataset_type=dataset,
                                 dataset_name=dataset, dataset_split=split,
                                 metric_type=metric_type, metric_value=round(value, 4))],
    )
    def row(key, fig):
        bpc = "" if fig["bits_per_char"] is None else f"{fig['bits_per_char']:.4f}"
        return (f"| {key} | {fig['loss']:.4f} | {fig['perplexity']:.2f} | {bpc} | "
                f"{fig['batch_size']} × {fig['seq_len']} |")

    rows = "\n".join(row(key, fig) for key, fig in final.items() if key != "size_bytes")
    sizes = final["size_bytes"]
    prompt = record.card_prompt or record.examples[0]
    notes = metrics.get("notes", "")
    content = f"""---
{card_data.to_yaml()}
---

# {record.long_name}

An LSTM language model ({record.title}) trained with lstmgen:
{metrics['parameters']:,} parameters, vocabulary {metrics['vocab_size']:,}, {metrics['kind']} tokens.

| split / model | loss (nats/token) | perplexity | bits/char | streams × steps |
|---|---|---|---|---|
{rows}

Sizes in memory: float32 {sizes['float32_in_memory'] / 1e6:.1f} MB, int8 (dynamic quantization) {sizes['int8_in_memory'] / 1e6:.1f} MB.
The weights are stored as {metrics['stored_dtype']}; every figure above was measured on them as stored.

![loss curve]({LOSS_CURVE_FILE})

## Use

```python
from lstmgen.hub import resolve
from lstmgen.generate import generate
loaded = resolve("{record.repo_id}")  # this repo, through the Hub cache (safetensors only)
print(generate(loaded.model, loaded.tokenizer, {prompt!r}, 200, temperature=0.8, seed=0))
```

## Training

{metrics.get("command") or f"`python train_space.py --preset {record.long_name}`"}; settings:

```json
{json.dumps(metrics['training'], indent=1)}
```

{notes}
"""
    return str(ModelCard(content))


def bundle(folder: str | Path, name: str) -> Path:
    """Copy a finished model folder into lstmgen/pretrained/, the weights that ship with the app."""
    return replace_folder(lambda tmp: shutil.copytree(folder, tmp, dirs_exist_ok=True), PRETRAINED_DIR / name)


def finalize(out_dir: str | Path, record, data, config, stored_dtype: torch.dtype = torch.float16,
             notes: str = "", command: str = "") -> Path:
    """Turn the best checkpoint into the publishable model folder `out_dir/model`."""
    out_dir = Path(out_dir)
    model = LSTMLanguageModel.from_pretrained(out_dir / BEST_FOLDER, strict=True)
    tokenizer = load_tokenizer(out_dir / BEST_FOLDER)
    smoothed = smooth_unseen_words(model, data.train_ids, record.smooth_unseen_max_count) \
        if record.smooth_unseen_max_count else []
    history, continued_after = whole_history(out_dir, read_json(out_dir / METRICS_FILE, {}).get("epochs", []))

    def build(tmp: Path):
        # Stored in 16 bits to keep the repository light; the figures are measured on what is stored.
        model.to(stored_dtype).save_pretrained(tmp)
        tokenizer.save(tmp)
        stored = LSTMLanguageModel.from_pretrained(tmp, strict=True).float().eval()
        metrics = {
            "preset": record.long_name, "kind": record.tokenizer.kind, "record": record.describe(),
            "parameters": stored.num_parameters(), "vocab_size": tokenizer.vocab_size,
            "stored_dtype": str(stored_dtype).replace("torch.", ""),
            "epochs": history, "final": final_figures(stored, config, data),
            "training": {"model": read_json(tmp / CONFIG_FILE, {}), **asdict(config)},
            "unseen_words_smoothed": {"ids": len(smoothed), "like_ids_used_at_most": record.smooth_unseen_max_count},
            "notes": notes, "command": command,
        }
        write_json_atomic(metrics, tmp / METRICS_FILE)
        # The cells that track text features, measured once on the held-out text (the app's cell explorer).
        held_out = data.val_ids[:CELLS_MAX_TOKENS]
        write_cells_json(tmp, stored, tokenizer, held_out, held_out_source(len(held_out)))
        plot_loss_curve(history, tmp / LOSS_CURVE_FILE, record.long_name, continued_after)
        (tmp / CARD_FILE).write_text(model_card(record, metrics))

    return replace_folder(build, out_dir / MODEL_FOLDER)
