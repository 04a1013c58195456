"""One served model's tab: the prompt and settings, both copies' texts, what they expect next, the look inside."""

from __future__ import annotations

import html
import threading

import gradio as gr
import pandas as pd

from ..core.sampling import SamplingConfig
from ..engine.compare import visible
from ..serve import service
from ..serve.service import MAX_PROMPT_CHARS, SAMPLING_RANGES, ServedModel
from . import words
from .api import App
from .inside_panel import inside_panel

ARRIVAL_SEED = 1  # the example each tab opens with is written once, with this seed, on the first page load
CANDIDATES = 10  # next pieces listed per copy


def loss_frame(served: ServedModel) -> pd.DataFrame:
    """The model's learning curve in bits per piece, as every surprise is shown."""
    epochs = served.loaded.metrics.get("epochs", [])
    rows = [{"pass": e["epoch"], "surprise": words.bits(e[key]), "text": label}
            for e in epochs for key, label in (("train_loss", "text it learns from"),
                                               ("val_loss", "held-out text")) if key in e]
    return pd.DataFrame(rows, columns=["pass", "surprise", "text"])


def text_html(label: str, prompt: str, pieces: list[str], probabilities: list[float], parted: int | None,
              colour: bool, anchor: str | None) -> str:
    """One copy's text as the page shows it: the prompt, then each written piece, the first one where the two
    texts differ marked (with `anchor` as its id, the fidelity sentence links to it), and with `colour` each
    piece on its band's colour (its probability on hover). Everything the visitor or the model wrote is escaped."""
    out = []
    for i, (piece, p) in enumerate(zip(pieces, probabilities)):
        text = html.escape(piece)
        style = f' style="background-color: {words.BAND_COLOURS[words.band(p)]}66" title="{p:.1%}"' if colour else ""
        if i == parted:
            where = f' id="{anchor}"' if anchor else ""
            out.append(f'<mark class="parted"{where}{style} title="the texts part here">{text}</mark>')
        else:
            out.append(f"<span{style}>{text}</span>" if colour else text)
    legend = ""
    if colour:
        legend = ('<div class="legend">How sure it was of each piece (creativity 1): ' + " ".join(
            f'<span style="background-color: {c}66">{html.escape(name)}</span>' for _, name, c in words.BANDS) + "</div>")
    return (f'<div class="side-label">{html.escape(label)}</div>{legend}<div class="running">'
            f'<span class="prompt">{html.escape(prompt)}</span>{"".join(out)}</div>')


def model_tab(app: App, served: ServedModel):
    """The tab's blocks and events; returns (handler, inputs, outputs) that fill it at page load (its opening
    example and what the model expects next), or None for a model that could not be loaded."""
    if served.loaded is None:
        gr.Markdown(words.NOT_LOADED)
        return None
    name, record = served.name, served.record
    one, many = words.unit(served), words.unit(served, True)
    kind = served.loaded.tokenizer.kind
    labels = words.side_labels(served)
    anchors = {side: f"{name}-{side}-part" for side in ("float32", "int8")}
    table_headers = ["#", f"full model's {one}", "its chance (creativity 1)", f"compressed copy's {one}",
                     "its chance (creativity 1) "]  # a column name once each: the second ends in a space

    def next_pieces(prompt, allow_special, after=()):
        # At creativity 1, like the colours and the table: the model's own chances (words.PROBABILITIES_AT).
        request = app.validated(name, prompt, temperature=1.0, seed=0, allow_special=bool(allow_special))
        return request, service.candidates(request, CANDIDATES, after)

    def on_predict(prompt, allow_special):
        _, result = next_pieces(prompt, allow_special)
        return words.candidate_labels(result, one, kind)

    def on_add(prompt, allow_special):
        """The full model's most likely next piece, added to the prompt (the panel then follows the prompt)."""
        _, result = next_pieces(prompt, allow_special)
        text = result["float32"][0]["text"]
        return prompt + (text.lstrip(" ") if prompt.endswith((" ", "\n")) else text)

    def rendered(shown, colour):
        return [text_html(labels[side], shown["prompt"], *shown[side], shown["parted"], colour, anchors[side])
                for side in ("float32", "int8")]

    def views(prompt, result, colour, arrival=False):
        """Both texts as a run has written them so far, with their figures and the note (and the texts, kept to
        colour them again)."""
        summary = result.summary()
        shown = {"prompt": prompt, "parted": result.parted_at(),
                 "float32": (result.float.pieces, result.float.probabilities),
                 "int8": (result.int8.pieces, result.int8.probabilities)}
        texts = rendered(shown, colour)
        return (texts[0], words.stats(summary["float32"], many), texts[1], words.stats(summary["int8"], many),
                words.fidelity_note(summary, words.units(served), anchors["float32"], arrival), shown)

    def finished(prompt, result, allow_special):
        """What a finished run adds: the table of each piece's chance, and what each copy expects once the full
        model's text is written (the panel then follows the text)."""
        table = pd.DataFrame([[i + 1, visible(f), round(pf, 4), visible(q), round(pq, 4)]  # spaces shown too
                              for i, (f, pf, q, pq) in enumerate(zip(result.float.pieces, result.float.probabilities,
                                                                     result.int8.pieces, result.int8.probabilities))],
                             columns=table_headers)
        _, after = next_pieces(prompt, allow_special, result.float.ids)
        return (table, *words.candidate_labels(after, one, kind, after_text=True))

    def on_generate(prompt, temperature, length, top_k, top_p, seed, allow_special, min_p, colour):
        seed = seed.strip() if isinstance(seed, str) else seed  # "" (or blanks) = random
        request = app.validated(name, prompt, temperature=temperature, length=length, top_k=top_k, top_p=top_p,
                                seed=seed or None, allow_special=allow_special, min_p=min_p)
        # Stop can be pressed until the run is done. Only the first update enables it: a later one still on its way
        # when Stop is pressed would enable it again after its own click had greyed it.
        for i, result in enumerate(service.side_by_side(request)):
            stop_button = gr.update(interactive=True) if i == 0 else gr.skip()
            yield (*views(prompt, result, colour), *(gr.skip(),) * 4, stop_button)
        # The texts are all on the page first; the table and what comes next follow, in one update.
        yield (*(gr.skip(),) * 6, *finished(prompt, result, request.sampling.allow_special),
               gr.update(interactive=False))

    arrival: dict = {}
    arrival_lock = threading.Lock()

    def on_arrive():
        """The tab's opening example (the first example prompt, seed ARRIVAL_SEED), written on the first page
        load and kept: every later visitor sees it at once."""
        with arrival_lock:
            if "views" not in arrival:
                request = app.validated(name, record.examples[0], length=record.length, seed=ARRIVAL_SEED)
                *_, result = service.side_by_side(request, stream_every_s=float("inf"))
                arrival["views"] = (*views(request.prompt, result, False, arrival=True),
                                    *finished(request.prompt, result, False))
        return arrival["views"]

    def on_colour(shown, colour):
        return rendered(shown, colour) if shown else [gr.skip(), gr.skip()]

    with gr.Row():
        with gr.Column(scale=3, min_width=300):
            prompt = gr.Textbox(label="Start the text", value=record.examples[0], lines=3, max_lines=12,
                                max_length=MAX_PROMPT_CHARS, elem_id=f"{name}-prompt")
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id=f"{name}-generate", scale=3, min_width=120)
                stop = gr.Button("Stop", variant="stop", scale=1, min_width=80, interactive=False,
                                 elem_id=f"{name}-stop")
        with gr.Column(scale=2, min_width=240):
            temperature = gr.Slider(*SAMPLING_RANGES["temperature"], value=SamplingConfig.temperature, step=0.05,
                                    label="Creativity", info="Low: safe and repetitive. High: surprising. 0 always "
                                    "takes the most likely piece (temperature).")
            length = gr.Slider(*SAMPLING_RANGES["length"], value=record.length, step=1, label=f"Length ({many} to add)",
                               elem_id=f"{name}-length")
    examples = gr.Examples(list(record.examples), inputs=prompt, label="Examples (click one to write it)",
                           elem_id=f"{name}-examples")
    top_k, top_p, min_p, seed, allow_special = _more_settings(many, bool(served.loaded.tokenizer.special_ids))
    colour = gr.Checkbox(value=False, label="Colour each piece by how sure the model was of it",
                         elem_id=f"{name}-colour")
    texts = _outputs(name, labels)
    fidelity = gr.Markdown(elem_id=f"{name}-fidelity")
    float_next, int8_next, next_note, add = _next_panel(name, labels, one)
    with gr.Accordion(f"How sure it was of each {one} (table)", open=False):
        table = gr.Dataframe(headers=table_headers, interactive=False, elem_id=f"{name}-table")
    shown = gr.State(None)  # the texts on the page, to colour them again
    inside_panel(app, gr.State(name), shown, prompt, one, prefix=name)
    with gr.Accordion("About this model", open=False):
        gr.Markdown(words.model_card(served))
        gr.LinePlot(loss_frame(served), x="pass", y="surprise", color="text", title="How it learned",
                    x_title="pass over the training text (epoch)", y_title=f"average surprise (bits per {one})",
                    height=260)

    next_outputs = [float_next, int8_next, next_note]
    run_outputs = [*texts, fidelity, shown, table, *next_outputs]
    add.click(on_add, [prompt, allow_special], prompt, api_visibility="private", concurrency_id="next_tokens")
    # Also when the prompt changes (typing, an example, the button above): only the last pending update runs.
    prompt.change(on_predict, [prompt, allow_special], next_outputs, api_visibility="private",
                  trigger_mode="always_last", show_progress="hidden", concurrency_id="next_tokens")
    inputs = [prompt, temperature, length, top_k, top_p, seed, allow_special, min_p, colour]
    runs = [run.click(on_generate, inputs, [*run_outputs, stop], api_visibility="private", concurrency_id="generate"),
            examples.load_input_event.then(on_generate, inputs, [*run_outputs, stop], api_visibility="private",
                                           concurrency_id="generate")]
    stop.click(lambda: gr.update(interactive=False), None, stop, cancels=runs, api_visibility="private", queue=False)
    colour.change(on_colour, [shown, colour], [texts[0], texts[2]], api_visibility="private", queue=False)
    return on_arrive, [], run_outputs


def _more_settings(many: str, has_markers: bool) -> tuple:
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
        # Only a model with markers (special tokens) offers them: a letters model has none.
        allow_special = gr.Checkbox(value=SamplingConfig.allow_special, visible=has_markers,
                                    label="Let the model write its markers for an unknown word or the end of a text",
                                    info="Special tokens (<unk>, <eos>, <|endoftext|>) are left out by default.")
    return top_k, top_p, min_p, seed, allow_special


def _outputs(name: str, labels: dict) -> list:
    """Each copy's text (coloured when asked, where the texts part marked) and its figures, side by side."""
    outputs = []
    with gr.Row(equal_height=True):
        for side in ("float32", "int8"):
            with gr.Column(min_width=300):
                outputs += [gr.HTML(text_html(labels[side], "", [], [], None, False, None), elem_id=f"{name}-{side}",
                                    elem_classes=["side-text"], padding=False),
                            gr.Markdown(elem_id=f"{name}-{side}-stats")]
    return outputs


def _next_panel(name: str, labels: dict, one: str) -> tuple:
    """What each copy expects next: its most likely candidates with their chances; a button adds the first."""
    with gr.Accordion("What the model expects next", open=True, elem_id=f"{name}-next"):
        with gr.Row(equal_height=True):
            float_next = gr.Label(num_top_classes=CANDIDATES, label=labels["float32"], elem_id=f"{name}-next-float",
                                  min_width=280)
            int8_next = gr.Label(num_top_classes=CANDIDATES, label=labels["int8"], elem_id=f"{name}-next-int8",
                                 min_width=280)
        with gr.Row():
            next_note = gr.Markdown(elem_id=f"{name}-next-note")
            add = gr.Button(f"Add the most likely {one} to the prompt", size="sm", scale=0, min_width=200,
                            elem_id=f"{name}-add")
    return float_next, int8_next, next_note, add
