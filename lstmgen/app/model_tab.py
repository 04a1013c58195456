"""One served model's tab: the prompt and settings, both copies' texts, what they expect next, the look inside."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ..core.sampling import SamplingConfig, is_greedy
from ..serve import service
from ..serve.service import MAX_PROMPT_CHARS, SAMPLING_RANGES, ServedModel
from . import words
from .api import App
from .inside_panel import inside_panel


def loss_frame(served: ServedModel) -> pd.DataFrame:
    epochs = served.loaded.metrics.get("epochs", [])
    rows = [{"pass": e["epoch"], "loss": e[key], "text": label}
            for e in epochs for key, label in (("train_loss", "text it learns from"),
                                               ("val_loss", "held-out text")) if key in e]
    return pd.DataFrame(rows, columns=["pass", "loss", "text"])


def model_tab(app: App, served: ServedModel):
    """The tab's blocks and events; returns (handler, inputs, outputs) for the candidates at page load, or None
    for a model that could not be loaded."""
    if served.loaded is None:
        gr.Markdown(words.NOT_LOADED)
        return None
    name, record = served.name, served.record
    one, many = words.unit(served), words.unit(served, True)
    labels = words.side_labels(served)

    def on_predict(prompt, temperature):
        temperature = 1.0 if is_greedy(temperature) else temperature  # greedy has no spread to show: show temperature 1
        return words.candidate_labels(app.next_tokens(name, prompt, 10, temperature), one)

    def on_generate(prompt, temperature, length, top_k, top_p, seed, allow_special, min_p):
        seed = seed.strip() if isinstance(seed, str) else seed  # "" (or blanks) = random
        request = app.validated(name, prompt, temperature=temperature, length=length, top_k=top_k, top_p=top_p,
                                seed=seed or None, allow_special=allow_special, min_p=min_p)
        for result in service.side_by_side(request):
            summary, row = result.summary(), []
            for side, part in (("float32", result.float), ("int8", result.int8)):
                row += [prompt + part.text, words.coloured(prompt, part.pieces, part.probabilities),
                        words.stats(summary[side])]
            rows = [[i + 1, f.replace("\n", "↵"), round(pf, 4), q.replace("\n", "↵"), round(pq, 4)]
                    for i, (f, pf, q, pq) in enumerate(zip(result.float.pieces, result.float.probabilities,
                                                           result.int8.pieces, result.int8.probabilities))]
            yield (*row, words.fidelity_note(summary, words.units(served)), rows if result.done else gr.skip())

    def on_colour(on):
        return [gr.update(visible=not on), gr.update(visible=on)] * 2

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
    top_k, top_p, min_p, seed, allow_special = _more_settings(many)
    colour = gr.Checkbox(value=False, label="Colour each piece by how sure the model was of it",
                         elem_id=f"{name}-colour")
    outputs = _outputs(name, labels)
    fidelity = gr.Markdown(elem_id=f"{name}-fidelity")
    float_next, int8_next, next_note, predict = _next_panel(name, labels, one)
    with gr.Accordion(f"How sure it was of each {one} (table)", open=False):
        table = gr.Dataframe(headers=["#", f"full model's {one}", "its probability", f"compressed copy's {one}",
                                      "its probability"], interactive=False)
    inside_panel(app, gr.State(name), outputs["float32"][0], prompt, one, prefix=name)
    with gr.Accordion("About this model", open=False):
        gr.Markdown(words.model_card(served))
        gr.LinePlot(loss_frame(served), x="pass", y="loss", color="text", title="How it learned",
                    x_title="pass over the training text (epoch)", y_title="average surprise (loss)", height=260)

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
    colour.change(on_colour, colour, [outputs["float32"][0], outputs["float32"][1], outputs["int8"][0],
                                      outputs["int8"][1]], api_visibility="private", queue=False)
    return on_predict, [prompt, temperature], next_outputs


def _more_settings(many: str) -> tuple:
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


def _outputs(name: str, labels: dict) -> dict:
    """Each side's text, its coloured twin (shown instead when colouring is on) and its figures."""
    outputs = {}
    with gr.Row(equal_height=True):
        for side in ("float32", "int8"):
            with gr.Column(min_width=300):
                text = gr.Textbox(label=labels[side], lines=10, max_lines=20, interactive=False, elem_id=f"{name}-{side}")
                coloured = gr.HighlightedText(label=labels[side], visible=False, show_legend=True,
                                              show_inline_category=False, combine_adjacent=False,
                                              color_map=words.BAND_COLOURS, elem_id=f"{name}-{side}-colour",
                                              elem_classes=["running-text"])
                stats = gr.Markdown(elem_id=f"{name}-{side}-stats")
            outputs[side] = (text, coloured, stats)
    return outputs


def _next_panel(name: str, labels: dict, one: str) -> tuple:
    """What each copy expects next: its most likely candidates with their probabilities."""
    with gr.Accordion("What the model expects next", open=True, elem_id=f"{name}-next"):
        with gr.Row(equal_height=True):
            float_next = gr.Label(num_top_classes=10, label=labels["float32"], elem_id=f"{name}-next-float",
                                  min_width=280)
            int8_next = gr.Label(num_top_classes=10, label=labels["int8"], elem_id=f"{name}-next-int8", min_width=280)
        with gr.Row():
            next_note = gr.Markdown(elem_id=f"{name}-next-note")
            predict = gr.Button(f"Predict the next {one}", size="sm", scale=0, min_width=160)
    return float_next, int8_next, next_note, predict
