"""Every sentence and label a visitor reads, built from the figures it shows."""

from __future__ import annotations

import math

from ..core.evaluate import CORPUS_WORDS, HELD_OUT_SLICE_TOKENS
from ..core.records import NEW_MODEL_HELD_OUT
from ..engine.compare import visible
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
# What a letters model writes, by its surprise on held-out text (bits per character), most fluent first:
# samples of models trained as the Train tab trains them, in bench/train_steps.md.
LETTER_LEVELS = [(2.8, "writes mostly real words, with made-up ones between"),
                 (3.5, "writes word-shaped strings, some of them real"), (math.inf, "writes letter soup")]
# What a letters model needs for mostly real words (bench/train_steps.md): about this many training steps, on a
# text of at least this size (10 KB gave word-shaped strings, 1 KB letter soup, whatever the time). The steps
# hardly depend on the machine; its speed does, measured here (train_expectation).
STEPS_FOR_WORDS = 600
TEXT_FOR_WORDS = 100_000

NOT_LOADED = "⚠️ **This model could not be loaded on the server**, so this tab is disabled."
TRAIN_FIRST = "train a model first"
EXPIRED = "your model has expired: train it again"
NOTHING_TO_PUBLISH = "train a model first (or train it again: it has expired)"
GIVE_TEXT = "⚠️ Paste some text first, then score it."
CELLS_INTRO = ("Each cell of the network keeps a number as it reads. Some follow something you can name. "
               "Click a row to see that cell along the text above: **red** where its value is high, "
               "**blue** where it is low; click a piece to read its value (the piece turns yellow). "
               "<small>Cells are ranked by how well their value (the memory c, or the output h) correlates "
               "(Pearson r) with each feature over text the model never learned from.</small>")
PUBLISH_ON_SPACE = "Sign in with Hugging Face (the button) to publish to your own account."
PROBABILITIES_AT = ("<small>Chances as the model gives them (creativity 1), as in the colours and the table: "
                    "creativity changes the draw, not these.</small>")


def unit(served: ServedModel, plural: bool = False) -> str:
    return units(served)[plural]


def units(served: ServedModel) -> tuple[str, str]:
    return UNITS.get(served.loaded.tokenizer.kind, ("token", "tokens"))


def bits(nats: float) -> float:
    """Surprise in bits, as every figure shows it (the loss is in nats)."""
    return nats / math.log(2)


def side_labels(served: ServedModel) -> dict[str, str]:
    return {"float32": f"Full model ({served.float_bytes / 1e6:.2g} MB)",
            "int8": f"Compressed copy ({served.int8_bytes / 1e6:.2g} MB)"}


def stats(side: dict, many: str) -> str:
    return (f"**{side['tokens_per_s']:,.0f} {many} a second** · first after {side['first_token_ms']:.0f} ms · "
            f"all in {side['total_ms']:.0f} ms")


def band(probability: float) -> str:
    return next(label for low, label, _ in BANDS if probability >= low)


def unknown_warning(unknown: list[str], total: int, where: str) -> str:
    """Pieces of a visitor's text that the vocabulary drops: listed, as Generate and Score both say."""
    shown = ", ".join(repr(u) for u in unknown)
    return (f"⚠️ {total} piece(s) of {where} are not in this model's vocabulary and were left out or spelled "
            f"differently: {shown}")


def fidelity_note(summary: dict, unit: tuple[str, str] = ("token", "tokens"), part_anchor: str | None = None,
                  arrival: bool = False) -> str:
    """The comparison in words: where the texts part (a link to the piece marked in the texts), and how often
    int8 picks as float32 does; the second measure in the small print, saying how it differs."""
    fidelity, parted = summary.get("fidelity"), summary.get("parted_at")
    where = (lambda words: f"[{words}](#{part_anchor})") if part_anchor else (lambda words: words)
    if parted is None:
        lead = "**The two texts are identical.**" if summary["done"] else "So far the two texts are identical."
    elif parted == 0:
        lead = f"**The texts part at {where(f'the first {unit[0]}')}**, marked in both texts."
    else:
        lead = (f"**The texts part at {where(f'{unit[0]} {parted + 1}')}**, marked in both texts; up to there the "
                f"compressed copy chose exactly as the full model.")
    note = [lead]
    if arrival:
        note.insert(0, f"*An example the server wrote for you: the first example prompt, random seed "
                       f"{summary['seed']}. Press Generate (or click an example) to write your own.*")
    if fidelity:
        note.append(f"Given the full model's text, the compressed copy picks the same next {unit[0]} "
                    f"**{fidelity['same_choice']:.1%}** of the time ({fidelity['steps']} {unit[1]}).")
    note.append(f"<small>Random seed {summary['seed']} (type it under More settings to get this text again)"
                + (f" · without the random draw, each copy's single most likely {unit[0]} is the same at "
                   f"{fidelity['top1_agreement']:.1%} of the steps · mean KL divergence "
                   f"{fidelity['mean_kl_nats']:.4f} nats" if fidelity else "") + "</small>")
    if summary["unknown"]:
        note.append(unknown_warning(summary["unknown"], summary["unknown_total"], "your prompt"))
    return "\n\n".join(note)


def candidate_text(candidate: dict, kind: str) -> str:
    """A candidate as it would be written (cased, spaced; spaces and line breaks shown), else its token."""
    text = candidate.get("text") or ""
    if kind == "word":  # a word's leading space says nothing in a list of words
        text = text.strip() or text
    return visible(text) if text else candidate["token"]


def candidate_labels(result: dict, unit: str = "token", kind: str = "char",
                     after_text: bool = False) -> tuple[dict, dict, str]:
    """/next_tokens' answer as the two gr.Label values and a sentence on what they follow and agree on."""
    labels = []
    for side in ("float32", "int8"):
        shown: dict[str, float] = {}
        for candidate in result[side]:
            shown.setdefault(candidate_text(candidate, kind), candidate["probability"])
        labels.append(shown)
    where = ("After the full model's text (both copies read it)" if after_text else "After your prompt")
    agree = (f"both expect the same {unit} most." if result["same_top1"]
             else f"**they expect different {unit}s most.**")
    return (*labels, f"{where}, {agree} {PROBABILITIES_AT} <small>KL divergence between the two predictions: "
                     f"{result['kl_nats']:.5f} nats</small>")


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
    info, one = served.info(), unit(served)
    figures = info["figures"].items()
    rows = "\n".join(f"| {figure_name(key)} | {bits(fig['loss']):.3f} | {fig['perplexity']:.2f} |"
                     for key, fig in figures)
    nats = " · ".join(f"{figure_name(key)} {fig['loss']:.4f}" for key, fig in figures)
    table = (f"| measured on · model | average surprise (bits per {one}) | choices it hesitates between "
             f"(perplexity) |\n|---|---|---|\n{rows}\n\n<small>The same surprise in nats per {one} (the loss; "
             f"bits × ln 2): {nats}.</small>") if rows else "_no figures recorded_"
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
    return (f"After {piece!r} (marked yellow): **{found['float32'][which][i]:+.3f}** in the full model, "
            f"{found['int8'][which][i]:+.3f} in the compressed copy.")


def cells_missing(found: dict, features: list, min_tokens: int) -> str:
    """Why some (or all) features have no cells in the table: the text was too short, or a feature did not vary
    enough in it (lstmgen.inside.cells.MIN_TOKENS, MIN_RESTARTS)."""
    if found.get("tokens") is not None and found["tokens"] < min_tokens:
        return (f"No cells are shown: the text they are measured on ({found.get('source') or 'held-out text'}) "
                f"is {found['tokens']:,} pieces long, and a correlation needs at least {min_tokens:,}, with each "
                f"feature taking both its values, to mean something. Train on a longer text to see them.")
    ranked = {row["feature"] for row in found["rows"]}
    constant = set(found.get("constant", []))
    missing = [f for f in features if f.name not in ranked]
    if not missing:
        return ""
    never = [f.description for f in missing if f.name in constant]
    rare = [f.description for f in missing if f.name not in constant]
    parts = []
    if never:
        parts.append(f"never vary in this text: {', '.join(never)}")
    if rare:
        parts.append(f"change too rarely in it to measure: {', '.join(rare)}")
    return f"<small>Not in the table, because they {'; and '.join(parts)}.</small>"


def _likeness(mine: float, theirs: float, like: str) -> str:
    if abs(mine - theirs) <= 0.05 * theirs:
        return f"about as {like} as"
    return f"less {like} than" if mine > theirs else f"more {like} than"


def score_verdict(found: dict, served: ServedModel) -> str:
    """/score's answer: the full model's surprise beside its held-out figure in one sentence (bits per piece, as
    everywhere), then both copies' figures in the small print, and what the vocabulary could not read."""
    f, q = found["float32"], found["int8"]
    one, many = units(served)
    if not f["tokens"]:
        return f"⚠️ The text is too short to score: it needs at least two {many}."
    like, part = CORPUS_WORDS.get(served.record.corpus.name, ("like the training text", "its held-out part"))
    held = ((served.loaded.metrics.get("final") or {}).get("val_float") or {}).get("loss")
    lead = f"**Your text: {bits(f['loss']):.2f} bits per {one}"
    lead += (f", {_likeness(f['loss'], held, like)} {part} ({bits(held):.2f}).**" if held else ".**")
    small = (f"<small>Surprise in bits per {one} scored (the first has nothing before it; lower is more like what "
             f"the model learned). Full model: {f['loss']:.3f} nats per {one}, perplexity {f['perplexity']:.2f}; "
             f"compressed copy: {bits(q['loss']):.2f} bits ({q['loss']:.3f} nats), perplexity "
             f"{q['perplexity']:.2f}; {f['tokens']:,} {many} scored.</small>")
    note = [lead, small]
    if found.get("unknown_total"):
        note.append(unknown_warning(found["unknown"], found["unknown_total"], "your text"))
    return "\n\n".join(note)


def train_intro(limits) -> str:
    return (f"Teach a small model your own text, here on the server, then try it, download it, or publish it "
            f"to your Hugging Face account. Give {limits.min_bytes / 1e3:g} KB to {limits.max_bytes / 1e6:g} MB "
            f"of plain text; the last {NEW_MODEL_HELD_OUT:.0%} is kept aside to check what it learned. Your text is "
            f"never stored, and your model is yours: nobody else can see or use it, and it is deleted after "
            f"{limits.keep_s / 60:.0f} minutes. One model trains at a time.")


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def train_expectation(steps_per_s: float | None, size: str, seconds: float, tokenizer: str) -> str:
    """What a budget gives on this server: its speed, measured here, against the steps a letters model needs."""
    if not steps_per_s:
        return "⏳ Measuring this server's training speed…"
    steps = round(steps_per_s * seconds, -1)  # "about": to ten steps
    enough = (f"enough for mostly real words (about {STEPS_FOR_WORDS:,} steps)" if steps >= STEPS_FOR_WORDS else
              f"too few for real words, which take about {STEPS_FOR_WORDS:,} ({duration(STEPS_FOR_WORDS / steps_per_s)}"
              f" here)")
    text = (f"**What to expect here:** on this server the {size} model makes about {steps_per_s:,.0f} training steps "
            f"a second (measured on it), so {duration(seconds)} gives about {steps:,.0f} steps: reading letters from a "
            f"text of {TEXT_FOR_WORDS / 1e3:g} KB or more, {enough}. A shorter text caps it, whatever the time: "
            f"10 KB writes word-shaped strings, 1 KB letter soup.")
    if tokenizer != "char":
        text += (" Reading words or word pieces, it writes real ones from the start, but each step is slower (it "
                 "chooses among thousands) and putting them in order needs far more text and time.")
    return text


def publish_how(on_space: bool, server_token_env: str) -> str:
    if on_space:  # "Sign in with Hugging Face" (hf_oauth in the README's front matter)
        return PUBLISH_ON_SPACE
    return (f"Publishing needs a Hugging Face sign-in, which only a Space offers. On your own machine, "
            f"start the app with {server_token_env}=1 to publish with this machine's login.")


def level(loss_nats: float, kind: str) -> str | None:
    """What a model writes, in plain words, from its surprise on held-out text; None where not measured
    (only letters models have levels)."""
    if kind != "char":
        return None
    return next(words for top, words in LETTER_LEVELS if bits(loss_nats) < top)


def train_status(update: dict, budget_s: float, kind: str = "char") -> str:
    status = update["status"]
    if status == "waiting":
        return (f"⏳ Another visitor's model is training. You are **number {update['place'] + 1}** in line: "
                f"about {update['wait_s']:.0f} s to wait.")
    if status == "failed":
        return f"⚠️ {update['error']}"
    if status in ("reading your text", "tokenizing"):
        return f"⏳ {'Reading your text' if status == 'reading your text' else 'Cutting your text into pieces'}…"
    if status == "done":
        return "✅ **Stopped.** The best model so far is kept." if update.get("stopped") else "✅ **Done.**"
    one = UNITS.get(kind, ("token",))[0]
    parts = [f"⏳ **{status}** · {update['elapsed_s']:.0f} s of {budget_s:.0f} s · step {update['step']:,}"]
    if update.get("val_loss") is not None:
        now = level(update["val_loss"], kind)
        parts.append((f"now it {now}, " if now else "") +
                     f"{bits(update['val_loss']):.2f} bits per {one} on the held-out part")
    return " · ".join(parts)


def trained_figures(served: ServedModel, update: dict, keep_s: float) -> str:
    """A finished (or stopped) training in the app's plain words, bits as everywhere, nats in the small print."""
    loss, int8 = update.get("val_loss"), update.get("val_loss_int8")
    kind, one = served.loaded.tokenizer.kind, unit(served)
    if update.get("stopped"):
        lead = f"**Stopped after {update['elapsed_s']:.0f} s; kept the best model so far.**"
    else:
        lead = f"**Done: trained for {update['elapsed_s']:.0f} s.** Your model is ready below."
    writes = level(loss, kind) if loss is not None else None
    figure = (f"On the last {NEW_MODEL_HELD_OUT:.0%} of your text, which it never learned from, its surprise is "
              f"**{bits(loss):.2f} bits per {one}** (lower is better)") if loss is not None else ""
    if figure and int8 is not None:
        figure += ("; the compressed copy's is the same to two decimals" if round(bits(int8), 2) == round(bits(loss), 2)
                   else f"; the compressed copy's is {bits(int8):.2f}")
    about = (f"It has {served.loaded.model.num_parameters():,} parameters and knows "
             f"{served.loaded.tokenizer.vocab_size:,} different {unit(served, True)}. It stays on this server for "
             f"{keep_s / 60:.0f} minutes, for you only.")
    small = (f"<small>In nats per {one} (the loss): {loss:.3f}" + (f", compressed copy {int8:.3f}" if int8 is not None
                                                                 else "") + ".</small>") if loss is not None else ""
    body = (f"It {writes}. " if writes else "") + (f"{figure}. " if figure else "") + about
    return "\n\n".join(part for part in (lead, body, small) if part)
