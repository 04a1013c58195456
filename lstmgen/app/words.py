"""Every sentence and label a visitor reads, built from the figures it shows."""

from __future__ import annotations

from ..core.evaluate import HELD_OUT_SLICE_TOKENS
from ..core.records import NEW_MODEL_HELD_OUT
from ..serve.service import ServedModel

HEADER = ("# lstmgen\nSmall LSTM networks that write text one piece at a time. Each model runs twice: as trained "
          "(**full model**) and as a **compressed copy** about 4× smaller that stores its numbers in 8 bits. "
          "Both get the same random numbers, so where their texts part, the compression made the difference. "
          "See how fast each one writes, how sure it was of each piece, and what it expects next.")
# What one step writes, in a visitor's words, by tokenizer kind.
UNITS = {"char": ("character", "characters"), "word": ("word", "words"), "subword": ("word piece", "word pieces")}
SIDES = {"float32": "Full model", "int8": "Compressed copy"}
# Probability bands for colouring generated tokens, most sure first.
BANDS = [(0.9, "sure (≥ 90%)", "#16a34a"), (0.5, "likely (50–90%)", "#84cc16"), (0.1, "possible (10–50%)", "#f59e0b"),
         (0.0, "surprising (< 10%)", "#ef4444")]
BAND_COLOURS = {label: colour for _, label, colour in BANDS}
FIGURE_NAMES = {"val": "held-out text", "test": "test text", "float": "full model", "int8": "compressed copy"}

NOT_LOADED = "⚠️ **This model could not be loaded on the server**, so this tab is disabled."
TRAIN_FIRST = "train a model first"
EXPIRED = "your model has expired: train it again"
NOTHING_TO_PUBLISH = "train a model first (or train it again: it has expired)"
CELLS_INTRO = ("Each cell of the network keeps a number as it reads. Some follow something you can name. "
               "Click a row to see that cell along the text above: **red** where its value is high, "
               "**blue** where it is low. <small>Cells are ranked by how well their value (the memory c, "
               "or the output h) correlates (Pearson r) with each feature over text the model never "
               "learned from.</small>")
PUBLISH_ON_SPACE = "Sign in with Hugging Face (the button) to publish to your own account."


def unit(served: ServedModel, plural: bool = False) -> str:
    return units(served)[plural]


def units(served: ServedModel) -> tuple[str, str]:
    return UNITS.get(served.loaded.tokenizer.kind, ("token", "tokens"))


def side_labels(served: ServedModel) -> dict[str, str]:
    return {"float32": f"Full model ({served.float_bytes / 1e6:.2g} MB)",
            "int8": f"Compressed copy ({served.int8_bytes / 1e6:.2g} MB)"}


def stats(side: dict) -> str:
    return (f"**{side['tokens_per_s']:,.0f} pieces a second** · first after {side['first_token_ms']:.0f} ms · "
            f"all in {side['total_ms']:.0f} ms")


def band(probability: float) -> str:
    return next(label for low, label, _ in BANDS if probability >= low)


def coloured(prompt: str, pieces: list[str], probabilities: list[float]) -> list[tuple[str, str | None]]:
    return [(prompt, None)] + [(piece, band(p)) for piece, p in zip(pieces, probabilities)]


def fidelity_note(summary: dict, unit: tuple[str, str] = ("token", "tokens")) -> str:
    """The comparison in words: where the texts part, and how often int8 picks as float32 does."""
    fidelity, parted = summary.get("fidelity"), summary.get("parted_at")
    if parted is None:
        lead = "**The two texts are identical.**" if summary["done"] else "So far the two texts are identical."
    elif parted == 0:
        lead = f"**The texts part at the first {unit[0]}.**"
    else:
        lead = (f"**The texts part at {unit[0]} {parted + 1}**; up to there the compressed copy chose exactly as "
                f"the full model.")
    note = [lead]
    if fidelity:
        note.append(f"Given the full model's text, the compressed copy picks the same next {unit[0]} "
                    f"**{fidelity['same_choice']:.1%}** of the time ({fidelity['steps']} {unit[1]}).")
    note.append(f"<small>Random seed {summary['seed']} (type it under More settings to get this text again)"
                + (f" · most likely {unit[0]} agrees {fidelity['top1_agreement']:.1%} · mean KL divergence "
                   f"{fidelity['mean_kl_nats']:.4f} nats" if fidelity else "") + "</small>")
    if summary["unknown"]:
        shown = ", ".join(repr(u) for u in summary["unknown"])
        note.append(f"⚠️ {summary['unknown_total']} piece(s) of your prompt are not in this model's vocabulary and "
                    f"were left out or spelled differently: {shown}")
    return "\n\n".join(note)


def candidate_labels(result: dict, unit: str = "token") -> tuple[dict, dict, str]:
    """/next_tokens' answer as the two gr.Label values and a sentence on their agreement."""
    labels = [{c["token"]: c["probability"] for c in result[side]} for side in ("float32", "int8")]
    agree = (f"Both expect the same {unit} most." if result["same_top1"]
             else f"**They expect different {unit}s most.**")
    return (*labels, f"{agree} <small>KL divergence between the two predictions: {result['kl_nats']:.5f} nats</small>")


def figure_name(key: str) -> str:
    """val_slice_int8 -> "held-out text (first 4,000 tokens), compressed copy"."""
    parts = key.split("_")
    text = FIGURE_NAMES.get(parts[0], parts[0])
    if "slice" in parts:
        text += f" (first {HELD_OUT_SLICE_TOKENS:,} tokens)"
    if "stream" in parts:
        text += " (read as one stream)"
    return f"{text}, {FIGURE_NAMES.get(parts[2] if 'slice' in parts else parts[1], '')}"


def model_card(served: ServedModel) -> str:
    info = served.info()
    rows = "\n".join(f"| {figure_name(key)} | {fig['perplexity']:.2f} | {fig['loss']:.4f} |"
                     for key, fig in info["figures"].items())
    table = ("| measured on · model | choices it hesitates between (perplexity) | average surprise (loss, nats "
             f"per token) |\n|---|---|---|\n{rows}") if rows else "_no figures recorded_"
    hub = f"\n\n{info['hub']}" if info.get("hub") else ""
    return (f"**Learned from:** {served.record.corpus.note}\n\n**Size:** {info['parameters']:,} numbers (parameters) "
            f"· {info['vocab_size']:,} different {unit(served, True)} it knows · full model {info['size_mb']['float32']}"
            f" MB, compressed copy {info['size_mb']['int8']} MB\n\n**Weights from:** {info['source']}{hub}\n\n"
            f"Lower is better in both columns; text it never saw while learning shows how well it generalises.\n\n"
            f"{table}")


def cell_shown(found: dict, which: str, unit: str) -> str:
    name = "memory (c)" if which == "c" else "output (h)"
    return f"Cell {found['cell']} of layer {found['layer']}, its {name}. Click a {unit} to read its value."


def cell_pointed(found: dict, which: str, i: int) -> str:
    piece = found["pieces"][i].replace("\n", "↵")
    return (f"After {piece!r}: **{found['float32'][which][i]:+.3f}** in the full model, "
            f"{found['int8'][which][i]:+.3f} in the compressed copy.")


def score_verdict(found: dict) -> str:
    """/score's answer in one sentence and its figures."""
    f, q = found["float32"], found["int8"]
    return (f"**{f['comparison'][:1].upper() + f['comparison'][1:]}.** <small>Full model: {f['bits_per_char']:.3f} "
            f"bits per character, perplexity {f['perplexity']:.2f}; compressed copy: {q['bits_per_char']:.3f} "
            f"bits per character, perplexity {q['perplexity']:.2f}.</small>")


def train_intro(limits) -> str:
    return (f"Teach a small model your own text, here on the server, then try it, download it, or publish it "
            f"to your Hugging Face account. Give {limits.min_bytes / 1e3:g} KB to {limits.max_bytes / 1e6:g} MB "
            f"of plain text; the last {NEW_MODEL_HELD_OUT:.0%} is kept aside to check what it learned. Your text is "
            f"never stored, and your model is yours: nobody else can see or use it, and it is deleted after "
            f"{limits.keep_s / 60:.0f} minutes. One model trains at a time.")


def publish_how(on_space: bool, server_token_env: str) -> str:
    if on_space:  # "Sign in with Hugging Face" (hf_oauth in the README's front matter)
        return PUBLISH_ON_SPACE
    return (f"Publishing needs a Hugging Face sign-in, which only a Space offers. On your own machine, "
            f"start the app with {server_token_env}=1 to publish with this machine's login.")


def train_status(update: dict) -> str:
    status = update["status"]
    if status == "waiting":
        return (f"⏳ Another visitor's model is training. You are **number {update['place'] + 1}** in line: "
                f"about {update['wait_s']:.0f} s to wait.")
    if status == "failed":
        return f"⚠️ {update['error']}"
    if status in ("reading your text", "tokenizing"):
        return f"⏳ {'Reading your text' if status == 'reading your text' else 'Cutting your text into pieces'}…"
    if status == "done":
        return "✅ **Done.** Your model is ready below."
    parts = [f"**{status}** · {update['elapsed_s']:.0f} s · step {update['step']:,}"]
    if update.get("val_loss") is not None:
        parts.append(f"surprise on the held-out part {update['val_loss']:.3f}")
    if update.get("train_loss") is not None:
        parts.append(f"on your text {update['train_loss']:.3f}")
    if update.get("tokens_per_s"):
        parts.append(f"{update['tokens_per_s']:,.0f} pieces/s")
    return " · ".join(parts)


def trained_figures(served: ServedModel, update: dict, keep_s: float) -> str:
    loss, int8 = update.get("val_loss"), update.get("val_loss_int8")
    cost = f"; the compressed copy's is {(int8 - loss) / loss:+.2%} from it" if loss and int8 is not None else ""
    return (f"**Your model** has {served.loaded.model.num_parameters():,} parameters and knows "
            f"{served.loaded.tokenizer.vocab_size:,} different {unit(served, True)}. On the last "
            f"{NEW_MODEL_HELD_OUT:.0%} of your text, which it never learned from, its average surprise is "
            f"**{loss:.3f}** (loss, nats per {unit(served)}; lower is better){cost}. It stays on this server for "
            f"{keep_s / 60:.0f} minutes, for you only.")
