"""lstmgen's Gradio app: LSTM models, each shown as its float model beside its int8 copy, with a look
inside (the next-token candidates, how sure each generated token was, how faithful int8 is).

    python app.py [--model FOLDER_OR_REPO ...] [--no-hub] [--host 127.0.0.1] [--port 7860] [--share]

Named API (gradio_client): /generate, /generate_stream, /next_tokens, /models, /train.
This file only wires the UI to the library (lstmgen/service.py).
"""

# No `from __future__ import annotations` here: gradio reads the handlers' type hints (gr.Request,
# gr.OAuthToken) to inject them, so they must be real objects, not strings.
import os

# Offline-safe defaults, read when gradio and huggingface_hub are imported: without them the server and
# gradio_client look up outside hosts in the background, Client() makes a blocking call to the Hub, and
# launch()'s call to its own local URL can hang behind a proxy.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"]))

import argparse
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from lstmgen import hub
from lstmgen.serve import service
from lstmgen.serve import studio as studio_lib
from lstmgen.core.data import CorpusError
from lstmgen.core.sampling import SamplingConfig, is_greedy
from lstmgen.core.operator_settings import OperatorSettings, operator_settings
from lstmgen.serve.service import SAMPLING_RANGES, MAX_PROMPT_CHARS, ServedModel
from lstmgen.core.settings import SettingError, describe
from lstmgen.core.settings import ranges
from lstmgen.serve.web import BodyLimit, client_address

models: dict[str, ServedModel] = {}  # the models everyone sees (a visitor's own model is reached by its key only)
studio: studio_lib.Studio | None = None  # visitors' trainings and their models (build_demo makes it)
# Probability bands for colouring generated tokens, most sure first.
BANDS = [(0.9, "sure (≥ 90%)", "#16a34a"), (0.5, "likely (50–90%)", "#84cc16"), (0.1, "possible (10–50%)", "#f59e0b"),
         (0.0, "surprising (< 10%)", "#ef4444")]


# --------------------------------------------------------------------------- API functions


def _reachable(model) -> dict[str, ServedModel]:
    """The models this caller may use: everyone's, and the visitor's model whose key they hold. An unknown
    key is answered like any unknown name, and errors list only everyone's models."""
    visitor = studio.get(model) if studio is not None and model not in models else None
    return {**models, model: visitor.served} if visitor is not None and visitor.served is not None else models


def _answer(fn, *args, **kwargs):
    """fn's answer; a request outside the limits becomes the visitor's one-line message (gr.Error)."""
    import gradio as gr

    try:
        return fn(*args, **kwargs)
    except SettingError as error:  # the service's refusals (RequestError) and its settings' checks
        raise gr.Error(str(error), print_exception=False) from None


def _validated(model, prompt, **sampling) -> service.Request:
    return _answer(service.validate, _reachable(model), model, prompt, **sampling)


def _served(model) -> ServedModel:
    """The model this caller may use, or a clear gr.Error."""
    return _answer(service.pick_model, _reachable(model), model)


def _settings_doc() -> str:
    import dataclasses

    return "\n".join(f"    {f.name}: {describe(SamplingConfig, f.name)}" for f in dataclasses.fields(SamplingConfig))


def _sampling_endpoint(fn):
    """`fn(model, prompt, **sampling)` as an endpoint with one parameter per SamplingConfig setting after
    model and prompt, in declaration order, each with its declared type and default: gradio documents the
    API from the signature, so a new setting needs no edit here (declare it last: callers pass settings
    by position)."""
    import dataclasses
    import inspect
    import typing

    hints = typing.get_type_hints(SamplingConfig)
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter("model", kind, annotation=str),
                  inspect.Parameter("prompt", kind, default="", annotation=str)]
    parameters += [inspect.Parameter(f.name, kind, default=f.default, annotation=hints[f.name])
                   for f in dataclasses.fields(SamplingConfig)]
    returns = inspect.signature(fn).return_annotation
    signature = inspect.Signature(parameters, return_annotation=returns)

    def arguments(args, kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        return values.pop("model"), values.pop("prompt"), values

    if inspect.isgeneratorfunction(fn):  # gradio streams a generator function's updates
        def endpoint(*args, **kwargs):
            model, prompt, sampling = arguments(args, kwargs)
            yield from fn(model, prompt, **sampling)
    else:
        def endpoint(*args, **kwargs):
            model, prompt, sampling = arguments(args, kwargs)
            return fn(model, prompt, **sampling)
    endpoint.__name__ = endpoint.__qualname__ = fn.__name__
    endpoint.__signature__ = signature
    endpoint.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": returns}
    return endpoint


@_sampling_endpoint
def generate(model: str, prompt: str = "", **sampling) -> dict:
    request = _validated(model, prompt, **sampling)
    *_, result = service.side_by_side(request, stream_every_s=float("inf"))
    return {"prompt": request.prompt, **result.summary()}


@_sampling_endpoint
def generate_stream(model: str, prompt: str = "", **sampling) -> Iterator[dict]:
    request = _validated(model, prompt, **sampling)
    for result in service.side_by_side(request):
        yield {"prompt": request.prompt, **result.summary()}


generate.__doc__ = f"""Generate with the float model and its int8 copy, sharing their randomness; returns both texts,
their timings, each token's probability under its own model, and the int8 copy's fidelity.

Each side has text, tokens, token_probabilities (the probability its model gave each token it wrote),
first_token_ms, total_ms, tokens_per_s and size_mb. `fidelity` is the int8 model fed the float model's
text with the same random numbers: same_choice (share of steps where it makes the same choice),
top1_agreement, mean_kl_nats and steps. Special tokens (<unk>, <eos>, <|endoftext|>) are masked before
the draw and the rest renormalised, unless allow_special is true. Prompt pieces outside the vocabulary
are listed once each in `unknown` (at most 20; unknown_total counts them all).

Inputs (checked on the server with the UI's limits):
    model: the model's name (see /models), e.g. char, subword or word
    prompt: the text to continue, at most {MAX_PROMPT_CHARS} characters and {service.MAX_PROMPT_TOKENS} tokens
{_settings_doc()}
"""
generate_stream.__doc__ = ("Like /generate, but streams: each update holds both texts so far, their timings and token "
                           "probabilities; the last has done=true and the fidelity.\n\n"
                           + generate.__doc__.split("\n\n", 1)[1])


def next_tokens(model: str, prompt: str = "", k: int = 10, temperature: float = 1.0) -> dict:
    """The k most likely next tokens for the prompt under the float model and its int8 copy, sorted by
    probability, the KL divergence between the two next-token distributions, and whether their top
    choice is the same: {"float32": [{"token", "probability"}, ...], "int8": [...], "kl_nats", "same_top1"}.
    Spaces and line breaks in tokens are shown as ␣ and ↵; special tokens are masked, as in generation.

    Inputs (checked on the server):
        model: the model's name (see /models)
        prompt: the text so far, with the limits of /generate
        k: how many candidates, {k_low} to {k_high}
        temperature: above 0 and at most {high}; the distribution generation would sample from
    """
    return _answer(service.next_tokens, _validated(model, prompt, temperature=temperature, seed=0), k)


def _with_limits(fn) -> None:
    """Write the declared limits (lstmgen.core.sampling, lstmgen.serve.service.Inputs) into an endpoint's docstring."""
    k_low, k_high = ranges(service.Inputs)["k"]
    values = {"{high}": SAMPLING_RANGES["temperature"][1], "{k_low}": k_low, "{k_high}": k_high,
              "{text_chars}": f"{service.MAX_TEXT_CHARS:,}", "{text_tokens}": f"{service.MAX_TEXT_TOKENS:,}"}
    for name, value in values.items():
        fn.__doc__ = fn.__doc__.replace(name, str(value))


_with_limits(next_tokens)


def cells(model: str, text: str, layer: int = 1, cell: int = 1) -> dict:
    """One LSTM cell's value after each token of a text, in the float model and its int8 copy: the cell's
    memory (c, the cell state) and its output (h, the hidden state). Layers and cells are numbered from 1
    (see /cell_features for the cells that track something). Returns {"pieces": the text each token adds,
    "float32": {"c": [...], "h": [...]}, "int8": {...}, "layer", "cell"}.

    Inputs (checked on the server):
        model: the model's name (see /models), or your trained model's key
        text: at most {text_chars} characters and {text_tokens} tokens
        layer: 1 to the model's number of layers
        cell: 1 to the model's hidden size
    """
    return _answer(service.cell_values, _served(model), text, layer, cell)


_with_limits(cells)


def cell_features(model: str) -> dict:
    """The cells that track something in the text: for each text feature (characters since the line began,
    inside quotes, position in the sentence, …) the cells whose value correlates best with it over the
    model's held-out text (Pearson r; cell state c and hidden state h both considered), with a sentence
    each ("cell 266 of layer 3 counts characters since the line began (r = 0.93)"). Returns {"rows":
    [{"feature", "description", "layer", "cell", "state", "r", "sentence"}, ...], "constant": features that
    never vary in that text, "source", "tokens"}.

    Inputs (checked on the server):
        model: the model's name (see /models), or your trained model's key
    """
    return _answer(service.cell_features, _served(model))


def score(model: str, text: str) -> dict:
    """How surprising the float model and its int8 copy find a text: each token's probability given the
    tokens before it (temperature 1, nothing masked; the first token has none), the total loss in nats,
    loss per token, bits per character and perplexity, and a sentence comparing them with the model's
    held-out figure. Returns {"float32": {"pieces", "probabilities", "total_nats", "tokens", "loss",
    "bits_per_char", "perplexity", "comparison"}, "int8": {...}}.

    Inputs (checked on the server):
        model: the model's name (see /models), or your trained model's key
        text: at most {text_chars} characters and {text_tokens} tokens
    """
    return _answer(service.score_text, _served(model), text)


_with_limits(score)


def list_models() -> dict:
    """The models everyone can use: for each its source (Hub repo and revision, or bundled), size,
    parameters and validation figures of the float and int8 copies, or that it could not be loaded. A model you trained (/train) is not
    listed: its key, from /train's last update, is the only way to it."""
    return {name: served.info() for name, served in models.items()}


def train(text: str, tokenizer: str = "char", size: str = "small", seconds: float = 60, request=None) -> Iterator[dict]:
    """Train your own model on your text; streams progress, and the last update holds the new model's key.

    Each update: {"status", "step", "epoch", "train_loss", "val_loss", "tokens_per_s", "elapsed_s", "done",
    "model"}; status is "waiting" (then "place" and "wait_s" say where you are in the line), "tokenizing",
    "training", "writing the model folder", then "done" or "failed" (with "error"). The last update's
    "model" is a key of 128 random bits: /generate, /generate_stream and /next_tokens accept it as the
    model's name, for you and whoever you give it to; nobody else can list or use the model. Its
    "val_loss" and "val_loss_int8" are the kept (best) model's loss on the held-out text. One training
    runs at a time per server, first come first served, and one per visitor; your text is never stored,
    and the model is deleted after an hour (or sooner when newer models need the room).

    Inputs (checked on the server):
        text: UTF-8 text to learn from, the last 10% held out for validation (1 KB to 10 MB by default)
        tokenizer: char, word or subword
        size: tiny or small
        seconds: the time budget, 10 to 300 by default
    """
    import gradio as gr

    try:
        for update in studio.train(text, tokenizer, size, seconds, client=client_address(request),
                                   session=getattr(request, "session_hash", None) or ""):
            yield _public(update)
    except SettingError as error:  # the request's checks and the studio's refusals (TrainingError)
        _refused("train", error)
        raise gr.Error(str(error), print_exception=False) from None


def _public(update: dict) -> dict:
    keys = ("status", "step", "epoch", "train_loss", "val_loss", "val_loss_int8", "tokens_per_s", "elapsed_s", "done",
            "model", "error", "place", "wait_s", "parameters", "vocab_size")
    return {k: update.get(k) for k in keys if k in update or k in ("done", "model")}


def _refused(what: str, error: Exception) -> None:
    """A visitor's bad input is not a server fault: one log line, no traceback."""
    print(f"refused {what}: {error}", flush=True)


# --------------------------------------------------------------------------- UI

# What one step writes, in a visitor's words, by tokenizer kind.
UNITS = {"char": ("character", "characters"), "word": ("word", "words"), "subword": ("word piece", "word pieces")}
HEADER = ("# lstmgen\nSmall LSTM networks that write text one piece at a time. Each model runs twice: as trained "
          "(**full model**) and as a **compressed copy** about 4× smaller that stores its numbers in 8 bits. "
          "Both get the same random numbers, so where their texts part, the compression made the difference. "
          "See how fast each one writes, how sure it was of each piece, and what it expects next.")


# Coloured text reads as running text: no padded box around each piece.
CSS = (".running-text .textfield { display: block !important; word-break: normal !important; font-size: 0 !important; }\n"
       ".running-text .token-container, .running-text .token { display: inline !important; padding: 0 !important;"
       " margin: 0 !important; border-radius: 0 !important; }\n"
       # font-size 0 above hides the whitespace between the pieces' elements; each piece's text keeps its size
       ".running-text .text { font-size: var(--text-md); background-color: inherit; line-height: 1.6; }\n"
       ".running-text .line-break { display: block !important; }")


# Gradio's plots hard-code the Vega-Lite schema v5.17.0 in the page while bundling Vega-Lite 6, so vega-embed warns
# on every plot. The specs it draws are unchanged between the two versions; this drops that one message and no other.
HEAD = """<script>
(() => {
  const warn = console.warn.bind(console);
  console.warn = (...args) => {
    if (args.map(String).join(" ").includes("The input spec uses Vega-Lite v5")) return;
    warn(...args);
  };
})();
</script>"""


def _unit(served: ServedModel, plural: bool = False) -> str:
    return UNITS.get(served.loaded.tokenizer.kind, ("token", "tokens"))[plural]


def _side_labels(served: ServedModel) -> dict[str, str]:
    return {"float32": f"Full model ({served.float_bytes / 1e6:.2g} MB)",
            "int8": f"Compressed copy ({served.int8_bytes / 1e6:.2g} MB)"}


def _stats(side: dict) -> str:
    return (f"**{side['tokens_per_s']:,.0f} pieces a second** · first after {side['first_token_ms']:.0f} ms · "
            f"all in {side['total_ms']:.0f} ms")


def _coloured(prompt: str, pieces: list[str], probabilities: list[float]) -> list[tuple[str, str | None]]:
    band = lambda p: next(label for low, label, _ in BANDS if p >= low)  # noqa: E731
    return [(prompt, None)] + [(piece, band(p)) for piece, p in zip(pieces, probabilities)]


def _fidelity(summary: dict, unit: tuple[str, str] = ("token", "tokens")) -> str:
    """The comparison in words: where the texts part, and how often int8 picks as float does."""
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


def _candidates(result: dict, unit: str = "token") -> tuple[dict, dict, str]:
    labels = [{c["token"]: c["probability"] for c in result[side]} for side in ("float32", "int8")]
    agree = (f"Both expect the same {unit} most." if result["same_top1"]
             else f"**They expect different {unit}s most.**")
    return (*labels, f"{agree} <small>KL divergence between the two predictions: {result['kl_nats']:.5f} nats</small>")


FIGURE_NAMES = {"val": "held-out text", "test": "test text", "float": "full model", "int8": "compressed copy"}


def _figure_name(key: str) -> str:
    """val_slice_int8 -> "held-out text (first 4,000 tokens), compressed copy"."""
    parts = key.split("_")
    text = FIGURE_NAMES.get(parts[0], parts[0])
    if "slice" in parts:
        text += " (first 4,000 tokens)"
    if "stream" in parts:
        text += " (read as one stream)"
    return f"{text}, {FIGURE_NAMES.get(parts[2] if 'slice' in parts else parts[1], '')}"


def _model_card(served: ServedModel) -> str:
    info = served.info()
    rows = "\n".join(f"| {_figure_name(key)} | {fig['perplexity']:.2f} | {fig['loss']:.4f} |"
                     for key, fig in info["figures"].items())
    table = ("| measured on · model | choices it hesitates between (perplexity) | average surprise (loss, nats "
             f"per token) |\n|---|---|---|\n{rows}") if rows else "_no figures recorded_"
    hub = f"\n\n{info['hub']}" if info.get("hub") else ""
    return (f"**Learned from:** {served.record.corpus.note}\n\n**Size:** {info['parameters']:,} numbers (parameters) "
            f"· {info['vocab_size']:,} different {_unit(served, True)} it knows · full model {info['size_mb']['float32']}"
            f" MB, compressed copy {info['size_mb']['int8']} MB\n\n**Weights from:** {info['source']}{hub}\n\n"
            f"Lower is better in both columns; text it never saw while learning shows how well it generalises.\n\n"
            f"{table}")


def _loss_frame(served: ServedModel):
    import pandas as pd

    epochs = served.loaded.metrics.get("epochs", [])
    rows = [{"pass": e["epoch"], "loss": e[key], "text": label}
            for e in epochs for key, label in (("train_loss", "text it learns from"),
                                               ("val_loss", "held-out text")) if key in e]
    return pd.DataFrame(rows, columns=["pass", "loss", "text"])


def _tab(gr, served: ServedModel):
    name, record = served.name, served.record
    if served.loaded is None:
        gr.Markdown("⚠️ **This model could not be loaded on the server**, so this tab is disabled.")
        return None
    one, many = _unit(served), _unit(served, True)
    labels = _side_labels(served)
    with gr.Row():
        with gr.Column(scale=3, min_width=300):
            prompt = gr.Textbox(label="Start the text", value=record.examples[0], lines=3, max_lines=12,
                                max_length=MAX_PROMPT_CHARS, elem_id=f"{name}-prompt")
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id=f"{name}-generate", scale=3, min_width=120)
                stop = gr.Button("Stop", variant="stop", scale=1, min_width=80)
        with gr.Column(scale=2, min_width=240):
            temperature = gr.Slider(*SAMPLING_RANGES["temperature"], value=SamplingConfig.temperature, step=0.05,
                                    label="Creativity", info="Low: safe and repetitive. High: surprising. 0 always "
                                    "takes the most likely piece (temperature).")
            length = gr.Slider(*SAMPLING_RANGES["length"], value=record.length, step=1, label=f"Length ({many} to add)",
                               elem_id=f"{name}-length")
    gr.Examples(list(record.examples), inputs=prompt, label="Examples")
    top_k, top_p, min_p, seed, allow_special = _more_settings(gr, many)
    colour = gr.Checkbox(value=False, label="Colour each piece by how sure the model was of it",
                         elem_id=f"{name}-colour")
    outputs = _outputs(gr, name, labels)
    fidelity = gr.Markdown(elem_id=f"{name}-fidelity")
    float_next, int8_next, next_note, predict = _next_panel(gr, name, labels, one)
    with gr.Accordion(f"How sure it was of each {one} (table)", open=False):
        table = gr.Dataframe(headers=["#", f"full model's {one}", "its probability", f"compressed copy's {one}",
                                      "its probability"], interactive=False)
    _inside(gr, gr.State(name), outputs["float32"][0], prompt, one, prefix=name)
    with gr.Accordion("About this model", open=False):
        gr.Markdown(_model_card(served))
        gr.LinePlot(_loss_frame(served), x="pass", y="loss", color="text", title="How it learned",
                    x_title="pass over the training text (epoch)", y_title="average surprise (loss)", height=260)

    def on_predict(prompt, temperature):
        temperature = 1.0 if is_greedy(temperature) else temperature  # greedy has no spread to show: show temperature 1
        return _candidates(next_tokens(name, prompt, 10, temperature), one)

    def on_generate(prompt, temperature, length, top_k, top_p, seed, allow_special, min_p):
        seed = seed.strip() if isinstance(seed, str) else seed  # "" (or blanks) = random
        request = _validated(name, prompt, temperature=temperature, length=length, top_k=top_k, top_p=top_p,
                             seed=seed or None, allow_special=allow_special, min_p=min_p)
        for result in service.side_by_side(request):
            summary, row = result.summary(), []
            for side, part in (("float32", result.float), ("int8", result.int8)):
                row += [prompt + part.text, _coloured(prompt, part.pieces, part.probabilities),
                        _stats(summary[side])]
            rows = [[i + 1, f.replace("\n", "↵"), round(pf, 4), q.replace("\n", "↵"), round(pq, 4)]
                    for i, (f, pf, q, pq) in enumerate(zip(result.float.pieces, result.float.probabilities,
                                                           result.int8.pieces, result.int8.probabilities))]
            yield (*row, _fidelity(summary, UNITS.get(served.loaded.tokenizer.kind, ("token", "tokens"))),
                   rows if result.done else gr.skip())

    next_outputs = [float_next, int8_next, next_note]
    predict.click(on_predict, [prompt, temperature], next_outputs, api_visibility="private",
                  concurrency_id="next_tokens")
    # Also when the prompt changes (typing, an example): only the last pending update runs, a debounce.
    prompt.change(on_predict, [prompt, temperature], next_outputs, api_visibility="private",
                  trigger_mode="always_last", show_progress="hidden", concurrency_id="next_tokens")
    flat = [c for side in ("float32", "int8") for c in outputs[side]]
    event = run.click(on_generate, [prompt, temperature, length, top_k, top_p, seed, allow_special, min_p],
                      [*flat, fidelity, table], api_visibility="private", concurrency_id="generate")
    stop.click(None, cancels=[event])
    colour.change(lambda on: [gr.update(visible=not on), gr.update(visible=on)] * 2, colour,
                  [outputs["float32"][0], outputs["float32"][1], outputs["int8"][0], outputs["int8"][1]],
                  api_visibility="private", queue=False)
    return on_predict, [prompt, temperature], next_outputs  # the candidates for the first prompt, at page load


def _more_settings(gr, many: str) -> tuple:
    """The sampling settings beyond creativity and length, in a closed accordion."""
    with gr.Accordion("More settings", open=False):
        with gr.Row():
            top_k = gr.Slider(*SAMPLING_RANGES["top_k"], value=SamplingConfig.top_k, step=1,
                              label=f"Choose only among the most likely {many}",
                              info="How many to keep; 0 keeps them all (top-k).")
            top_p = gr.Slider(*SAMPLING_RANGES["top_p"], value=SamplingConfig.top_p, step=0.01,
                              label="Leave out the unlikely ones",
                              info="Keep the most likely until they add up to this share; 1 keeps all (top-p).")
            min_p = gr.Slider(*SAMPLING_RANGES["min_p"], value=SamplingConfig.min_p, step=0.01,
                              label="Leave out the far less likely ones",
                              info="Keep only pieces at least this share as likely as the most likely one; 0 keeps "
                                   "all (min-p).")
            # A Textbox, not a Number: inside the closed accordion an empty gr.Number comes up showing 0
            # once opened and then sends 0, so every later run would use seed 0 instead of a random one.
            seed = gr.Textbox(value="", label="Random seed", placeholder="new each time", max_lines=1,
                              info="The same seed and settings write the same text again.")
        allow_special = gr.Checkbox(value=SamplingConfig.allow_special,
                                    label="Let the model write its markers for an unknown word or the end of a text",
                                    info="Special tokens (<unk>, <eos>, <|endoftext|>) are left out by default.")
    return top_k, top_p, min_p, seed, allow_special


def _outputs(gr, name: str, labels: dict) -> dict:
    """Each side's text, its coloured twin (shown instead when colouring is on) and its figures."""
    outputs = {}
    with gr.Row(equal_height=True):
        for side in ("float32", "int8"):
            with gr.Column(min_width=300):
                text = gr.Textbox(label=labels[side], lines=10, max_lines=20, interactive=False, elem_id=f"{name}-{side}")
                coloured = gr.HighlightedText(label=labels[side], visible=False, show_legend=True,
                                              show_inline_category=False, combine_adjacent=False,
                                              color_map={lbl: c for _, lbl, c in BANDS}, elem_id=f"{name}-{side}-colour",
                                              elem_classes=["running-text"])
                stats = gr.Markdown(elem_id=f"{name}-{side}-stats")
            outputs[side] = (text, coloured, stats)
    return outputs


def _next_panel(gr, name: str, labels: dict, one: str) -> tuple:
    """What each model expects next: its most likely candidates with their probabilities."""
    with gr.Accordion("What the model expects next", open=True, elem_id=f"{name}-next"):
        with gr.Row(equal_height=True):
            float_next = gr.Label(num_top_classes=10, label=labels["float32"], elem_id=f"{name}-next-float",
                                  min_width=280)
            int8_next = gr.Label(num_top_classes=10, label=labels["int8"], elem_id=f"{name}-next-int8", min_width=280)
        with gr.Row():
            next_note = gr.Markdown(elem_id=f"{name}-next-note")
            predict = gr.Button(f"Predict the next {one}", size="sm", scale=0, min_width=160)
    return float_next, int8_next, next_note, predict


def _cell_colours(pieces: list[str], values: list[float]) -> list[tuple[str, float]]:
    """Pieces with their cell's value scaled to [-1, 1] for the colouring (blue negative, red positive)."""
    top = max((abs(v) for v in values), default=0.0) or 1.0
    return [(piece, round(v / top, 4)) for piece, v in zip(pieces, values)]


def _feature_rows(found: dict) -> list[list]:
    return [[row["sentence"], row["layer"], row["cell"], row["state"], round(row["r"], 3)] for row in found["rows"]]


def _inside(gr, model, text_box, prompt_box, unit: str, prefix: str | None = None) -> None:
    """The cell explorer, then "score your own text" (_score_panel), for the model named by the `model` State (a tab's name,
    or the visitor's key)."""
    def eid(part):
        return f"{prefix}-{part}" if prefix else None

    with gr.Accordion("Inside the network: what its cells keep", open=False, elem_id=eid("cells")) as explorer:
        gr.Markdown("Each cell of the network keeps a number as it reads. Some follow something you can name. "
                    "Click a row to see that cell along the text above: **red** where its value is high, "
                    "**blue** where it is low. <small>Cells are ranked by how well their value (the memory c, "
                    "or the output h) correlates (Pearson r) with each feature over text the model never "
                    "learned from.</small>")
        table = gr.Dataframe(headers=["what it follows", "layer", "cell", "c or h", "r"], interactive=False,
                             elem_id=eid("cell-table"), wrap=True)
        with gr.Row():
            layer = gr.Number(value=1, precision=0, label="Layer", minimum=1, min_width=80)
            cell = gr.Number(value=1, precision=0, label="Cell", minimum=1, min_width=80)
            which = gr.Radio([("memory (c)", "c"), ("output (h)", "h")], value="c", label="Which value")
            show = gr.Button("Show this cell", min_width=120)
        with gr.Row(equal_height=True):
            cell_views = [gr.HighlightedText(label=label, show_legend=False, combine_adjacent=False,
                                             elem_classes=["running-text"], elem_id=eid(f"cell-{side}"))
                          for side, label in (("float32", "Full model"), ("int8", "Compressed copy"))]
        pointed = gr.Markdown(elem_id=eid("cell-pointed"))
        values = gr.State(None)

    def on_open(key):
        return _feature_rows(cell_features(key)) if key else []

    def on_show(key, text, prompt, layer, cell, which):
        if not key:
            raise gr.Error("train a model first", print_exception=False)
        found = cells(key, text or prompt, layer, cell)
        views = [_cell_colours(found["pieces"], found[side][which]) for side in ("float32", "int8")]
        name = "memory (c)" if which == "c" else "output (h)"
        return (*views, found, f"Cell {found['cell']} of layer {found['layer']}, its {name}. Click a {unit} "
                "to read its value.")

    def on_row(evt: gr.SelectData):
        _, layer, cell, which, _ = evt.row_value  # the clicked row of the table
        return int(layer), int(cell), str(which)

    def on_point(found, which, evt: gr.SelectData):
        if not found:
            return ""
        i = evt.index if isinstance(evt.index, int) else evt.index[0]
        piece = found["pieces"][i].replace("\n", "↵")
        return (f"After {piece!r}: **{found['float32'][which][i]:+.3f}** in the full model, "
                f"{found['int8'][which][i]:+.3f} in the compressed copy.")

    show_event = dict(inputs=[model, text_box, prompt_box, layer, cell, which], outputs=[*cell_views, values, pointed],
                      api_visibility="private", concurrency_id="inside")
    table.select(on_row, None, [layer, cell, which], api_visibility="private", queue=False).then(
        on_show, **show_event)
    show.click(on_show, **show_event)
    for view in cell_views:
        view.select(on_point, [values, which], pointed, api_visibility="private", queue=False)
    # The table fills when the explorer opens: nothing is computed for a visitor who never looks.
    explorer.expand(on_open, model, table, api_visibility="private", concurrency_id="inside")
    _score_panel(gr, model, eid)


def _score_panel(gr, model, eid) -> None:
    """The "how surprising is your text?" panel: each piece of a pasted text coloured by how likely each model
    found it."""
    with gr.Accordion("How surprising is your text?", open=False, elem_id=eid("score")):
        mine = gr.Textbox(label="Paste any text", lines=4, max_lines=10, max_length=service.MAX_TEXT_CHARS,
                          elem_id=eid("score-text"))
        rate = gr.Button("Score it", elem_id=eid("score-run"))
        verdict = gr.Markdown(elem_id=eid("score-verdict"))
        with gr.Row(equal_height=True):
            score_views = [gr.HighlightedText(label=label, show_legend=True, show_inline_category=False,
                                              combine_adjacent=False, color_map={lbl: c for _, lbl, c in BANDS},
                                              elem_classes=["running-text"], elem_id=eid(f"score-{side}"))
                           for side, label in (("float32", "Full model"), ("int8", "Compressed copy"))]

    def on_score(key, text):
        if not key:
            raise gr.Error("train a model first", print_exception=False)
        found = score(key, text)
        views = [[(piece, None if p is None else next(label for low, label, _ in BANDS if p >= low))
                  for piece, p in zip(found[side]["pieces"], found[side]["probabilities"])]
                 for side in ("float32", "int8")]
        f, q = found["float32"], found["int8"]
        return (f"**{f['comparison'][:1].upper() + f['comparison'][1:]}.** <small>Full model: {f['bits_per_char']:.3f} "
                f"bits per character, perplexity {f['perplexity']:.2f}; compressed copy: {q['bits_per_char']:.3f} "
                f"bits per character, perplexity {q['perplexity']:.2f}.</small>", *views)

    rate.click(on_score, [model, mine], [verdict, *score_views], api_visibility="private", concurrency_id="inside")


def _curve_frame(update: dict):
    import pandas as pd

    rows = [{"seconds": p["elapsed_s"], "loss": p[key], "text": label} for p in update.get("curve", [])
            for key, label in (("train_loss", "your text"), ("val_loss", "held-out part")) if p.get(key) is not None]
    return pd.DataFrame(rows, columns=["seconds", "loss", "text"])


def _train_status(update: dict) -> str:
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


def _trained_figures(served: ServedModel, update: dict) -> str:
    loss, int8 = update.get("val_loss"), update.get("val_loss_int8")
    cost = f"; the compressed copy's is {(int8 - loss) / loss:+.2%} from it" if loss and int8 is not None else ""
    return (f"**Your model** has {served.loaded.model.num_parameters():,} parameters and knows "
            f"{served.loaded.tokenizer.vocab_size:,} different {_unit(served, True)}. On the last 10% of your text, "
            f"which it never learned from, its average surprise is **{loss:.3f}** (loss, nats per "
            f"{_unit(served)}; lower is better){cost}. It stays on this server for "
            f"{studio.limits.keep_s / 60:.0f} minutes, for you only.")


def _train_tab(gr) -> None:
    limits = studio.limits
    gr.Markdown(f"Teach a small model your own text, here on the server, then try it, download it, or publish it "
                f"to your Hugging Face account. Give {limits.min_bytes / 1e3:g} KB to {limits.max_bytes / 1e6:g} MB "
                f"of plain text; the last 10% is kept aside to check what it learned. Your text is never stored, "
                f"and your model is yours: nobody else can see or use it, and it is deleted after "
                f"{limits.keep_s / 60:.0f} minutes. One model trains at a time.")
    with gr.Row():
        with gr.Column(scale=3, min_width=300):
            upload = gr.File(label="Upload a .txt file", file_types=[".txt"], type="filepath", elem_id="train-file")
            pasted = gr.Textbox(label="…or paste text", lines=5, max_lines=10, max_length=limits.max_bytes,
                                elem_id="train-text")
            with gr.Row():
                dataset = gr.Textbox(label="…or a public dataset on Hugging Face", placeholder="stanfordnlp/imdb",
                                     info=f"Its id on the Hub; up to {limits.max_bytes / 1e6:g} MB of it is read.",
                                     scale=3, max_lines=1, max_length=200, elem_id="train-dataset")
                column = gr.Textbox(value="text", label="Column with the text", scale=1, min_width=100, max_lines=1,
                                    max_length=100)
        with gr.Column(scale=2, min_width=260):
            tokenizer = gr.Radio([("letters", "char"), ("words", "word"), ("word pieces", "subword")], value="char",
                                 label="Read the text as", info="The model writes one of these at a time (tokenizer).")
            size = gr.Radio([(f"{n} ({studio_lib.parameter_count(n) / 1e3:,.0f} k parameters)", n)
                             for n in studio_lib.SIZES], value="small", label="Model size",
                            info="Bigger learns more but needs more time.")
            seconds = gr.Slider(limits.min_seconds, limits.max_seconds, value=60, step=5, label="Training time (seconds)")
            with gr.Row():
                start = gr.Button("Train", variant="primary", elem_id="train-start")
                stop = gr.Button("Stop (keeps the best so far)", variant="stop", elem_id="train-stop",
                                 interactive=False)
    status = gr.Markdown(elem_id="train-status")
    curve = gr.LinePlot(x="seconds", y="loss", color="text", title="Surprise while learning (lower is better)",
                        x_title="seconds", y_title="average surprise (loss)", height=260, elem_id="train-plot",
                        visible=False)
    trained = gr.State(None)  # the key of this session's model
    with gr.Column(visible=False) as result:
        figures = gr.Markdown(elem_id="train-figures")
        _try_trained(gr, trained)
        download = gr.DownloadButton("Download the model folder (.zip)", elem_id="train-download")
        _publish_row(gr, trained)

    def on_train(upload, pasted, dataset, column, tokenizer, size, seconds, request: gr.Request,
                 progress=gr.Progress()):
        hidden = gr.update(visible=False)
        yield "⏳ Reading your text…", hidden, gr.skip(), hidden, gr.skip(), gr.skip(), gr.update(interactive=True)
        update = {"status": "waiting"}
        try:
            text = _visitor_text(upload, pasted, dataset, column)
            for update in studio.train(text, tokenizer, size, seconds, client=client_address(request),
                                       session=request.session_hash):
                if update["status"] == "training":
                    progress(min(1.0, update["elapsed_s"] / float(seconds)), desc="training")
                plot = gr.update(value=_curve_frame(update), visible=True) if update.get("curve") else gr.skip()
                yield _train_status(update), plot, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        except (SettingError, CorpusError) as error:
            _refused("a training", error)
            yield f"⚠️ {error}", gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.update(interactive=False)
            raise gr.Error(str(error), print_exception=False) from None
        if not update.get("model"):
            return
        key, folder = update["model"], studio.folder(update["model"])
        archive = shutil.make_archive(str(folder.parent / key), "zip", folder)  # deleted with the model
        yield (_train_status(update), gr.skip(), key, gr.update(visible=True),
               _trained_figures(studio.get(key).served, update), archive, gr.skip())

    train_event = start.click(on_train, [upload, pasted, dataset, column, tokenizer, size, seconds],
                              [status, curve, trained, result, figures, download, stop], api_visibility="private",
                              concurrency_id="train", concurrency_limit=_train_slots())
    train_event.then(lambda: gr.update(interactive=False), None, stop, api_visibility="private", queue=False)

    def on_stop(request: gr.Request):
        studio.stop(request.session_hash)

    stop.click(on_stop, None, None, api_visibility="private", queue=False)


def _try_trained(gr, trained) -> None:
    """The trained model's own prompt, its two outputs side by side and the look inside."""
    with gr.Row():
        prompt = gr.Textbox(label="Start the text", lines=2, scale=3, elem_id="train-prompt", max_length=MAX_PROMPT_CHARS)
        generate_button = gr.Button("Generate with your model", variant="primary", elem_id="train-generate")
    sides = []
    with gr.Row(equal_height=True):
        for side, label in (("float32", "Full model"), ("int8", "Compressed copy")):
            with gr.Column(min_width=300):
                sides += [gr.Textbox(label=label, lines=6, interactive=False, elem_id=f"train-{side}"),
                          gr.Markdown(elem_id=f"train-{side}-stats")]
    fidelity = gr.Markdown(elem_id="train-fidelity")
    _inside(gr, trained, sides[0], prompt, "piece", prefix="train")

    def on_generate_trained(key, prompt):
        if studio.get(key) is None:
            raise gr.Error("your model has expired: train it again", print_exception=False)
        request = _validated(key, prompt, length=200, seed=None)
        *_, result = service.side_by_side(request, stream_every_s=float("inf"))
        summary = result.summary()
        return (prompt + result.float.text, _stats(summary["float32"]), prompt + result.int8.text,
                _stats(summary["int8"]), _fidelity(summary, UNITS[request.served.loaded.tokenizer.kind]))

    generate_button.click(on_generate_trained, [trained, prompt], [*sides, fidelity], api_visibility="private",
                          concurrency_id="generate")


def _publish_row(gr, trained) -> None:
    """Publishing the trained model to the visitor's own Hub account, with the visitor's own sign-in."""
    from gradio.utils import get_space

    with gr.Row():
        if get_space():  # "Sign in with Hugging Face" (hf_oauth in the README's front matter)
            gr.LoginButton()
            how = "Sign in with Hugging Face (the button) to publish to your own account."
        else:
            how = (f"Publishing needs a Hugging Face sign-in, which only a Space offers. On your own machine, "
                   f"start the app with {hub.SERVER_TOKEN_ENV}=1 to publish with this machine's login.")
        gr.Markdown(how, elem_id="train-publish-how")
        repo = gr.Textbox(label="Name of the new repo on your account", placeholder="my-lstm", scale=2,
                          max_lines=1, max_length=96)
        publish = gr.Button("Publish to my account", elem_id="train-publish")
    published = gr.Markdown(elem_id="train-published")

    def on_publish(key, name, oauth_token: gr.OAuthToken | None):
        folder = studio.folder(key)
        if folder is None:
            raise gr.Error("train a model first (or train it again: it has expired)", print_exception=False)
        token = hub.publishing_token(oauth_token.token if oauth_token is not None else None)
        try:
            return f"Published: {hub.push_to_account(folder, name, token)}"
        except hub.PublishError as error:
            _refused("a publish", error)
            raise gr.Error(str(error), print_exception=False) from None

    publish.click(on_publish, [trained, repo], published, api_visibility="private")


def _visitor_text(upload, pasted, dataset, column):
    """The text a visitor gave: an uploaded file's (the file is deleted once read), pasted text, or a function
    that reads a public Hub dataset, which the studio calls when the visitor's turn comes."""
    from lstmgen.core.data import check_hub_dataset_id, read_hub_dataset

    given = [bool(upload), bool(pasted and pasted.strip()), bool(dataset and dataset.strip())]
    if sum(given) != 1:
        raise studio_lib.TrainingError("give your text one way: upload a file, paste text, or name a Hub dataset")
    limits = studio.limits
    if upload:
        path = Path(upload)
        try:
            size = path.stat().st_size
            if size > limits.max_bytes:
                raise studio_lib.TrainingError(f"the file is {size:,} bytes; the limit is {limits.max_bytes:,}")
            return studio_lib.decode_upload(path.read_bytes())
        finally:
            path.unlink(missing_ok=True)
    if pasted:
        return pasted
    dataset_id, column = check_hub_dataset_id(dataset), (column or "text").strip()
    return lambda: read_hub_dataset(dataset_id, column, max_bytes=limits.max_bytes, timeout_s=limits.dataset_timeout_s)




def _train_slots() -> int:
    """/train's one concurrency limit (its button and its API share it): the running training, those waiting
    in the studio's line, and a few more so that a refusal (line full, one per visitor) is answered at once
    instead of waiting in Gradio's queue. Generation has its own limit, so trainings never hold its slots."""
    return studio.limits.max_waiting + 1 + 4


def _forget(key: str) -> None:
    """A visitor's model was deleted: delete Gradio's copy of its zip too (the download), named by its key."""
    from gradio.utils import get_upload_folder

    for copy in Path(get_upload_folder()).glob(f"*/{key}.zip"):
        shutil.rmtree(copy.parent, ignore_errors=True)


def build_demo(served_models: dict[str, ServedModel], studio_root=None):
    import gradio as gr

    global studio
    models.clear()
    models.update(served_models)
    studio = studio_lib.Studio(root=studio_root, load=lambda folder: service.load_source(folder, use_hub=False),
                               on_evict=_forget)
    # Gradio's own cache (uploads, the zips it serves) is cleaned as often as the studio's models expire.
    keep_s = int(studio.limits.keep_s)
    with gr.Blocks(title="lstmgen: LSTM text generation", delete_cache=(min(300, keep_s), keep_s)) as demo:
        gr.Markdown(HEADER)
        on_load = []
        with gr.Tabs(overflow_behavior="wrap"):  # on a phone every tab stays in sight (no "⋯" menu)
            for name, served in served_models.items():
                with gr.Tab(served.record.title, id=name, elem_id=f"tab-{name}"):
                    on_load.append(_tab(gr, served))
            with gr.Tab("Train your own", id="train", elem_id="tab-train"):
                _train_tab(gr)
        gr.api(generate, api_name="generate", concurrency_id="generate")
        gr.api(generate_stream, api_name="generate_stream", concurrency_id="generate")
        gr.api(next_tokens, api_name="next_tokens", concurrency_id="next_tokens")
        gr.api(list_models, api_name="models", concurrency_limit=None)
        gr.api(cells, api_name="cells", concurrency_id="inside")
        gr.api(cell_features, api_name="cell_features", concurrency_id="inside")
        gr.api(score, api_name="score", concurrency_id="inside")
        for fn, inputs, outputs in filter(None, on_load):
            demo.load(fn, inputs, outputs, api_visibility="private", concurrency_id="next_tokens", show_progress="hidden")
        # gradio injects the request where a parameter's type says gr.Request; it is imported late (main).
        train.__annotations__["request"] = gr.Request
        if operator_settings().mcp_train:  # else an MCP client sees no train tool (REST callers still do)
            train.__dict__.pop("_mcp_type", None)
        else:
            train._mcp_type = "not listed"  # gradio lists as MCP tools only functions without a type, or "tool"
        gr.api(train, api_name="train", concurrency_id="train", concurrency_limit=_train_slots())
    # Each request decodes on one core; a few at a time keep latency low, the queue holds the rest.
    demo.queue(default_concurrency_limit=4, max_size=64)
    _apply_defaults_to_short_calls(demo)
    return demo


def launch(demo, **options):
    """demo.launch with the limits a public server needs: uploads above the text limit are refused by Gradio
    itself, and any request body over twice that (JSON escapes a newline in two bytes) is refused unread."""
    from starlette.middleware import Middleware

    max_bytes = studio.limits.max_bytes
    return demo.launch(max_file_size=max_bytes, css=CSS, head=HEAD, mcp_server=True,
                       app_kwargs={"middleware": [Middleware(BodyLimit, max_bytes=2 * max_bytes + 1_000_000)]},
                       **options)


def _apply_defaults_to_short_calls(demo) -> None:
    """A REST caller may leave out trailing arguments ({"data": ["char", "ROMEO:"]}): they take their
    documented defaults, and a missing required one gets the usual clear message. (Gradio itself
    refuses such a call with an empty error, since its message is hidden without show_error.)"""
    from gradio.components.api_component import Api

    check = demo.validate_inputs

    def validate_inputs(block_fn, inputs):
        missing = block_fn.inputs[len(inputs):]
        if missing and all(isinstance(component, Api) for component in missing):
            inputs.extend(component.value for component in missing)
        return check(block_fn, inputs)

    demo.validate_inputs = validate_inputs


def prepare_runtime() -> None:
    # One thread per request: torch's, and each ONNX Runtime session's (lstmgen.engine.ort takes torch's
    # count). A batch-1 step gains little from a second thread unless its pool spins between steps, and
    # the two models of a side-by-side run alternate, so a spinning pool would take the core the other
    # needs; threads that wait on each other stall badly on a busy machine, and concurrent requests then
    # share the cores.
    torch.set_num_threads(1)


def main(argv=None) -> None:
    settings = operator_settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="FOLDER_OR_REPO",
                        help="serve this model folder or Hub repo too, in a tab of its own (repeatable; also "
                             "LSTMGEN_MODELS, comma-separated)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", default=os.environ.get("GRADIO_SHARE") == "True")
    parser.add_argument("--hub-timeout", type=float, default=settings.hub_timeout_s,
                        help="seconds to wait for the Hub per model (LSTMGEN_HUB_TIMEOUT)")
    parser.add_argument("--no-hub", action="store_true", help="use the bundled weights without asking the Hub")
    args = parser.parse_args(argv)
    sources = [s.strip() for s in settings.models.split(",") if s.strip()] + args.model
    prepare_runtime()
    # Resolve the models while gradio imports (about 4 s), so the Hub's bounded wait costs nothing extra.
    loaded: dict[str, ServedModel] = {}
    loader = threading.Thread(target=lambda: loaded.update(
        service.load_all(sources=sources, hub_timeout_s=args.hub_timeout, use_hub=not args.no_hub)))
    loader.start()
    import gradio as gr  # noqa: F401  (imported here to overlap with loading)

    loader.join()
    for name, served in loaded.items():
        why = f" (the Hub was not used: {served.loaded.fallback_reason})" if served.loaded and served.loaded.fallback_reason else ""
        print(f"{name}: {served.loaded.source + why if served.loaded else 'NOT LOADED: ' + served.error}", flush=True)
    _stop_on_sigterm()
    launch(build_demo(loaded), server_name=args.host, server_port=args.port, share=args.share)


def _stop_on_sigterm() -> None:
    """SIGTERM (a Space restarting, `kill`) ends the app like Ctrl-C does, so the visitors' models folder is
    deleted on the way out (the studio registers that with atexit)."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C while starting: stop quietly (the visitors' folder goes with atexit)
        raise SystemExit(130) from None
