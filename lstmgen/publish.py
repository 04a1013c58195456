"""The finished model folder (weights, tokenizer, figures, loss curve, model card) and its upload."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from .evaluate import evaluate
from .model import LSTMLanguageModel
from .quantize import quantize_dynamic, size_bytes
from .tokenizers import load_tokenizer
from .train import BEST_FOLDER, smooth_unseen_words, write_json_atomic

MODEL_FOLDER = "model"
METRICS_FILE = "metrics.json"
LOSS_CURVE_FILE = "loss_curve.png"
CARD_FILE = "README.md"
VAL_SLICE_TOKENS = 4000
CONTINUATION_FILE = "continued_from.json"


class MissingTokenError(RuntimeError):
    pass


def require_token() -> str:
    """The Hub token from HF_TOKEN or the saved login. Never printed."""
    from huggingface_hub import get_token

    token = os.environ.get("HF_TOKEN") or get_token()
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


def measure(model, ids, preset, per_tokens=None, num_chars=None, batch_size=None, seq_len=None) -> dict:
    result = evaluate(model, ids, batch_size or preset.eval_batch_size, seq_len or preset.eval_seq_len,
                      per_tokens=per_tokens, num_chars=num_chars)
    return {"loss": result.loss, "perplexity": result.perplexity, "bits_per_char": result.bits_per_char,
            "tokens": result.tokens, "batch_size": batch_size or preset.eval_batch_size,
            "seq_len": seq_len or preset.eval_seq_len}


def final_figures(model, preset, data) -> dict:
    """Validation (and test) figures of the float model and its int8 copy, as the preset reports them."""
    int8 = quantize_dynamic(model)
    figures = {"size_bytes": {"float32_in_memory": size_bytes(model), "int8_in_memory": size_bytes(int8)}}
    chars = data.val_chars if preset.kind == "char" else None
    for name, m in (("float", model), ("int8", int8)):
        figures[f"val_{name}"] = measure(m, data.val_ids, preset, data.val_per_tokens, chars)
        # A fixed slice, quick to recompute: the tests check the shipped weights against it.
        figures[f"val_slice_{name}"] = measure(m, data.val_ids[:VAL_SLICE_TOKENS], preset, batch_size=1, seq_len=256)
        if data.test_ids is not None:
            figures[f"test_{name}"] = measure(m, data.test_ids, preset)
            figures[f"test_{name}_one_stream"] = measure(m, data.test_ids, preset, batch_size=1)
    return figures


def record_continuation(out_dir: str | Path, start_folder: str | Path, earlier_epochs: list[dict]) -> None:
    """Note in the run folder that this run continues another model's training (`--init-from`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic({"from": str(start_folder), "epochs": earlier_epochs}, out_dir / CONTINUATION_FILE)


def whole_history(out_dir: Path, history: list[dict]) -> tuple[list[dict], int]:
    """This run's epochs after those of the runs it continues, numbered on. Returns (epochs, earlier count)."""
    path = out_dir / CONTINUATION_FILE
    earlier = json.loads(path.read_text())["epochs"] if path.is_file() else []
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


def model_card(preset, metrics: dict) -> str:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    final = metrics["final"]
    split = "test" if "test_float" in final else "validation"
    headline = final["test_float"] if split == "test" else final["val_float"]
    metric_type, value = ("perplexity", headline["perplexity"]) if preset.kind == "word" else ("loss", headline["loss"])
    card_data = ModelCardData(
        language="en", license="mit", library_name="lstmgen", pipeline_tag="text-generation",
        tags=["lstm", "text-generation", preset.kind, "lstmgen"], datasets=[preset.dataset_name],
        model_name=preset.name,
        eval_results=[EvalResult(task_type="text-generation", dataset_type=preset.dataset_name,
                                 dataset_name=preset.dataset_name, dataset_split=split,
                                 metric_type=metric_type, metric_value=round(value, 4))],
    )
    def row(key, fig):
        bpc = "" if fig["bits_per_char"] is None else f"{fig['bits_per_char']:.4f}"
        return (f"| {key} | {fig['loss']:.4f} | {fig['perplexity']:.2f} | {bpc} | "
                f"{fig['batch_size']} × {fig['seq_len']} |")

    rows = "\n".join(row(key, fig) for key, fig in final.items() if key != "size_bytes")
    sizes = final["size_bytes"]
    prompt = "Harry looked at" if preset.kind == "word" else "ROMEO:"
    notes = metrics.get("notes", "")
    content = f"""---
{card_data.to_yaml()}
---

# {preset.name}

An LSTM language model ({preset.title}) trained with lstmgen:
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
loaded = resolve("{preset.repo_id}")  # this repo, through the Hub cache (safetensors only)
print(generate(loaded.model, loaded.tokenizer, {prompt!r}, 200, temperature=0.8, seed=0))
```

## Training

`python train_space.py --preset {preset.name}`; settings:

```json
{json.dumps(metrics['training'], indent=1)}
```

{notes}
"""
    return str(ModelCard(content))


def bundle(folder: str | Path, preset_name: str) -> Path:
    """Copy a finished model folder into lstmgen/pretrained/, the weights that ship with the app."""
    target = Path(__file__).resolve().parent / "pretrained" / preset_name
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def finalize(out_dir: str | Path, preset, data, config, stored_dtype: torch.dtype = torch.float16,
             notes: str = "") -> Path:
    """Turn the best checkpoint into the publishable model folder `out_dir/model`."""
    out_dir = Path(out_dir)
    folder = out_dir / MODEL_FOLDER
    model = LSTMLanguageModel.from_pretrained(out_dir / BEST_FOLDER, strict=True)
    tokenizer = load_tokenizer(out_dir / BEST_FOLDER)
    smoothed = smooth_unseen_words(model, data.train_ids, preset.unseen_like_max_count) \
        if preset.unseen_like_max_count else []
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # Stored in 16 bits to keep the repository light; the figures are measured on what is stored.
    model.to(stored_dtype).save_pretrained(tmp)
    tokenizer.save(tmp)
    model = LSTMLanguageModel.from_pretrained(tmp, strict=True).float().eval()
    history, continued_after = whole_history(out_dir, json.loads((out_dir / METRICS_FILE).read_text())["epochs"])
    metrics = {
        "preset": preset.name, "kind": preset.kind, "parameters": model.num_parameters(),
        "vocab_size": tokenizer.vocab_size, "stored_dtype": str(stored_dtype).replace("torch.", ""),
        "epochs": history, "final": final_figures(model, preset, data),
        "training": {"model": {k: v for k, v in json.loads((tmp / "config.json").read_text()).items()},
                     **asdict(config)},
        "unseen_words_smoothed": {"ids": len(smoothed), "like_ids_used_at_most": preset.unseen_like_max_count},
        "notes": notes,
    }
    write_json_atomic(metrics, tmp / METRICS_FILE)
    plot_loss_curve(history, tmp / LOSS_CURVE_FILE, preset.name, continued_after)
    (tmp / CARD_FILE).write_text(model_card(preset, metrics))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder

