"""The finished model folder: weights, tokenizer, figures, cells, loss curve and model card."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn as nn

from ..core.evaluate import HELD_OUT_SLICE_TOKENS, evaluate
from ..inside import held_out_source, write_cells_json
from ..core.files import BEST_FOLDER, CARD_FILE, CONFIG_FILE, LOSS_CURVE_FILE, METRICS_FILE, PRETRAINED_DIR, read_json, \
    replace_folder, write_json_atomic
from ..core.model import LSTMLanguageModel
from ..engine.ort import OrtModel
from ..core.records import PRESETS, split_revision
from ..core.tokenizers import load_tokenizer

MODEL_FOLDER = "model"
CONTINUATION_FILE = "continued_from.json"


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


def size_bytes(model: nn.Module) -> int:
    """Bytes of the model's serialized state (weights, packed int8 weights and their scales)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


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
        figures[f"val_slice_{name}"] = measure(m, data.val_ids[:HELD_OUT_SLICE_TOKENS], config, batch_size=1, seq_len=256)
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


def published_repo(record) -> str | None:
    """The Hub repo a model's card names: the record's own (`--push-to-hub`, a visitor's publish), a shipped
    model's, or None for a folder that is not published."""
    if record.repo:
        return split_revision(record.repo)[0]
    return record.repo_id if record.long_name in PRESETS else None


def part_names(cuts: tuple[float, ...]) -> dict[str, str]:
    """Which part of the text each split is: (0.7, 0.85) -> {"train": "the first 70%", "val": "the next 15%",
    "test": "the last 15%"}."""
    points = [0.0, *cuts, 1.0]
    shares = [b - a for a, b in zip(points, points[1:])]
    places = ["first"] + ["next"] * (len(shares) - 2) + ["last"]
    return {split: f"the {place} {share:.0%}" for split, place, share in zip(("train", "val", "test"), places, shares)}


def figure_label(key: str, parts: dict[str, str]) -> str:
    """A figure's key in words, with the text it was measured on: "val_slice_int8" -> "validation text (the last
    10%), its first tokens · int8 copy"."""
    split, *rest = key.split("_")
    text = f"{'test' if split == 'test' else 'validation'} text ({parts.get(split, 'held out')})"
    if "slice" in rest:
        text += ", its first tokens"
    if "stream" in rest:
        text += ", read as one stream"
    return f"{text} · {'int8 copy' if 'int8' in rest else 'as stored'}"


def data_words(corpus, hub_ids: list[str]) -> str:
    """Where the text came from, in a sentence or two."""
    if corpus.dataset_revision:
        return (f"The Hub dataset [{corpus.dataset}](https://huggingface.co/datasets/{corpus.dataset}), split "
                f"`{corpus.dataset_split}`, column `{corpus.text_column}`, read at commit `{corpus.dataset_revision}`.")
    if hub_ids:
        return (f"Local files holding the same text as the Hub dataset [{hub_ids[0]}]"
                f"(https://huggingface.co/datasets/{hub_ids[0]}).")
    return "A text that is not on the Hugging Face Hub, given by the person who trained the model."


LICENSE_WORDS = {"other": "The publisher chose no standard license (`other`): ask them before reusing these weights."}


def model_card(record, metrics: dict, repo_id: str | None = None) -> str:
    """The model card (README.md). `repo_id`: the repo it is published to (default published_repo(record)); its
    name is the card's title. The license is the record's, the publisher's choice."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    repo_id = repo_id or published_repo(record)
    title = repo_id.split("/")[-1] if repo_id else record.long_name
    record = replace(record, repo=repo_id or "path/to/this/model/folder")  # what the usage example loads
    corpus, final = record.corpus, metrics["final"]
    split = "test" if "test_float" in final else "validation"
    headline = final["test_float"] if split == "test" else final["val_float"]
    kind = record.tokenizer.kind
    metric_type, value = ("perplexity", headline["perplexity"]) if kind == "word" else ("loss", headline["loss"])
    # Only real Hub ids: a dataset read from the Hub (at the commit read), or the Hub dataset local files are.
    hub_ids = [corpus.dataset] if corpus.dataset_revision else [corpus.hub_dataset] if corpus.hub_dataset else []
    card_data = ModelCardData(
        language="en", license=record.license, library_name="lstmgen", pipeline_tag="text-generation",
        tags=["lstm", "text-generation", kind, "lstmgen"], datasets=hub_ids or None, model_name=title,
        eval_results=[EvalResult(task_type="text-generation", dataset_type=hub_ids[0] if hub_ids else "text",
                                 dataset_name=corpus.name, dataset_split=split,
                                 dataset_revision=corpus.dataset_revision,
                                 metric_type=metric_type, metric_value=round(value, 4))],
    )
    parts = part_names(corpus.cuts)

    def row(key, fig):
        bpc = "" if fig["bits_per_char"] is None else f"{fig['bits_per_char']:.4f}"
        return (f"| {figure_label(key, parts)} | {fig['tokens']:,} | {fig['loss']:.4f} | {fig['perplexity']:.2f} | "
                f"{bpc} | {fig['batch_size']} × {fig['seq_len']} |")

    rows = "\n".join(row(key, fig) for key, fig in final.items() if key != "size_bytes")
    sizes = final["size_bytes"]
    prompt = record.card_prompt or record.examples[0]
    notes = metrics.get("notes", "")
    unit = {"char": "letter by letter", "word": "word by word", "subword": "in pieces of words (GPT-2's)"}[kind]
    unknown = {"char": "Characters it never saw in training are dropped from a prompt.",
               "word": "Words outside its vocabulary read as `<unk>`, and its words are lower case, "
                       "capitalised again as they were most often written in the training text.",
               "subword": "Any text can be given: words it has no piece for are spelled in bytes."}[kind]
    content = f"""---
{card_data.to_yaml()}
---

# {title}

An LSTM language model ({record.title}) trained with lstmgen:
{metrics['parameters']:,} parameters, vocabulary {metrics['vocab_size']:,}, {metrics['kind']} tokens.

## Data

{data_words(corpus, hub_ids)} {corpus.note[:1].upper() + corpus.note[1:]}.

## Figures

Each figure is measured on text the model did not learn from: the part of its text named in the first column.

| measured on · model | tokens | loss (nats/token) | perplexity | bits/char | streams × steps |
|---|---|---|---|---|---|
{rows}

Sizes in memory: float32 {sizes['float32_in_memory'] / 1e6:.1f} MB, int8 (dynamic quantization) {sizes['int8_in_memory'] / 1e6:.1f} MB.
The weights are stored as {metrics['stored_dtype']}; every figure above was measured on them as stored.

![loss curve]({LOSS_CURVE_FILE})

## Intended uses and limitations

A small LSTM ({metrics['parameters']:,} parameters) that continues a text {unit} in the manner of its training
text, for learning how such models work and for play. It knows only that text: it does not answer questions,
follow instructions or know facts, and what it writes is often ungrammatical, repetitive or nonsense, and may
repeat the text's wording and biases. Do not use it where the truth of a text matters. {unknown}

## Use

```python
import lstmgen
model = lstmgen.load("{record.repo_id}")          # or a local folder; int8=True for the compressed copy
print(model.generate({json.dumps(prompt)}, length=200, temperature=0.8))
```

## Training

{metrics.get("command") or f"`python train_space.py --preset {record.long_name}`"}; settings:

```json
{json.dumps(metrics['training'], indent=1)}
```

{notes}

## License

{LICENSE_WORDS.get(record.license, f"`{record.license}`, chosen by the publisher.")}
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
            "preset": record.long_name, "kind": record.tokenizer.kind, "record": record.to_metrics(),
            "parameters": stored.num_parameters(), "vocab_size": tokenizer.vocab_size,
            "stored_dtype": str(stored_dtype).replace("torch.", ""),
            "epochs": history, "final": final_figures(stored, config, data),
            "training": {"model": read_json(tmp / CONFIG_FILE, {}), **asdict(config)},
            "unseen_words_smoothed": {"ids": len(smoothed), "like_ids_used_at_most": record.smooth_unseen_max_count},
            "notes": notes, "command": command,
        }
        write_json_atomic(metrics, tmp / METRICS_FILE)
        # The cells that track text features, measured once on the held-out text (the app's cell explorer).
        held_out = data.val_ids[:HELD_OUT_SLICE_TOKENS]
        write_cells_json(tmp, stored, tokenizer, held_out, held_out_source(len(held_out)))
        plot_loss_curve(history, tmp / LOSS_CURVE_FILE, record.long_name, continued_after)
        (tmp / CARD_FILE).write_text(model_card(record, metrics))

    return replace_folder(build, out_dir / MODEL_FOLDER)
