"""The look inside a model: the cell explorer, and how surprising each copy finds a visitor's text."""

# No `from __future__ import annotations`: gradio reads the handlers' type hints (gr.SelectData) to inject them.
import gradio as gr
import numpy as np

from ..inside.cells import MIN_TOKENS
from ..inside.features import FEATURE_BY_NAME, features_for
from ..serve.service import MAX_TEXT_CHARS
from . import words
from .api import App

LEVELS = 4  # colour steps each way from 0 in the cell view
PICKED = "the piece you clicked"
BLUE, RED = (37, 99, 235), (220, 38, 38)  # low, high


def level_name(step: int) -> str:
    return f"{step / LEVELS:+.2f}"


def cell_colour_map() -> dict[str, str]:
    """The cell view's colours: from deep blue (the cell's lowest value along the text, scaled to -1) through
    white (0) to deep red (+1), in LEVELS steps each way; the clicked piece yellow."""
    colours = {}
    for step in range(-LEVELS, LEVELS + 1):
        share = abs(step) / LEVELS
        base = BLUE if step < 0 else RED
        colours[level_name(step)] = "#" + "".join(f"{round(255 + (b - 255) * share):02x}" for b in base)
    return {**colours, PICKED: "#facc15"}


def cell_colours(pieces: list[str], values: list[float], picked: int | None = None) -> list[tuple[str, str]]:
    """Pieces with their cell's value scaled to [-1, 1] (by the largest |value| along the text) and rounded to
    a colour step; the clicked piece marked instead."""
    top = max((abs(v) for v in values), default=0.0) or 1.0
    return [(piece, PICKED if i == picked else level_name(round(v / top * LEVELS)))
            for i, (piece, v) in enumerate(zip(pieces, values))]


def kept_for_pointing(found: dict) -> dict:
    """/cells' answer as a session keeps it: the pieces as one text and their lengths, the values as float64
    arrays (a 10,000-piece text: about 350 KB, against 2 MB of Python lists)."""
    return {"text": "".join(found["pieces"]), "lengths": np.array([len(p) for p in found["pieces"]], np.int32),
            **{side: {which: np.asarray(found[side][which], np.float64) for which in ("c", "h")}
               for side in ("float32", "int8")}}


def pointed_from(kept: dict) -> dict:
    """kept_for_pointing's record as /cells gave it: the pieces, and each copy's values by c and h."""
    ends = np.cumsum(kept["lengths"])
    pieces = [kept["text"][end - n:end] for n, end in zip(kept["lengths"].tolist(), ends.tolist())]
    return {"pieces": pieces, **{side: {which: kept[side][which].tolist() for which in ("c", "h")}
                                  for side in ("float32", "int8")}}


def follows(row: dict) -> str:
    """What a best cell does, without the cell's numbers (the table's columns hold them): /cell_features'
    sentence from "counts characters since the line began" on."""
    feature = FEATURE_BY_NAME.get(row["feature"])
    if feature is None:
        return f"follows {row['description']}"
    return feature.phrase if row["r"] >= 0 else feature.negative


def feature_rows(found: dict) -> list[list]:
    """The cell table: layer, cell and r first, short (they stay in sight on a phone), what the cell does last."""
    return [[row["layer"], row["cell"], row["state"], round(row["r"], 2), follows(row)] for row in found["rows"]]


def text_of(shown, prompt) -> str:
    """The text on the page: the prompt and the full model's text when something was written, else the prompt."""
    return shown["prompt"] + "".join(shown["float32"][0]) if shown else prompt


def inside_panel(app: App, model, shown, prompt_box, unit: str, prefix: str | None = None) -> None:
    """The cell explorer, then the score panel, for the model named by the `model` State (a tab's name, or the
    visitor's key); a cell is read along the text on the page (the `shown` State of the tab's texts), else
    `prompt_box`'s."""
    def eid(part):
        return f"{prefix}-{part}" if prefix else None

    def on_open(key):
        if not key:
            return [], ""
        found = app.cell_features(key)
        kind = app.served(key).loaded.tokenizer.kind
        return feature_rows(found), words.cells_missing(found, features_for(kind), MIN_TOKENS)

    def on_show(key, shown_texts, prompt, layer, cell, which):
        if not key:
            raise gr.Error(words.TRAIN_FIRST, print_exception=False)
        found = app.cells(key, text_of(shown_texts, prompt), layer, cell)
        views = [cell_colours(found["pieces"], found[side][which]) for side in ("float32", "int8")]
        return (*views, kept_for_pointing(found), words.cell_shown(found, which, unit))

    def on_row(evt: gr.SelectData):
        layer, cell, which, *_ = evt.row_value  # the clicked row of the table
        return int(layer), int(cell), str(which)

    def on_point(kept, which, evt: gr.SelectData):
        if not kept:
            return "", gr.skip(), gr.skip()
        found = pointed_from(kept)
        i = evt.index if isinstance(evt.index, int) else evt.index[0]
        if not 0 <= i < len(found["pieces"]):
            return "", gr.skip(), gr.skip()
        views = [cell_colours(found["pieces"], found[side][which], picked=i) for side in ("float32", "int8")]
        return words.cell_pointed(found, which, i), *views

    with gr.Accordion("Inside the network: what its cells keep", open=False, elem_id=eid("cells")) as explorer:
        gr.Markdown(words.CELLS_INTRO)
        table = gr.Dataframe(headers=["layer", "cell", "c/h", "r", "what it does"], interactive=False,
                             elem_id=eid("cell-table"), elem_classes=["cell-table"], wrap=True,
                             column_widths=["17%", "14%", "11%", "17%", "41%"])
        missing = gr.Markdown(elem_id=eid("cell-missing"))
        with gr.Row():
            layer = gr.Number(value=1, precision=0, label="Layer", minimum=1, min_width=80)
            cell = gr.Number(value=1, precision=0, label="Cell", minimum=1, min_width=80)
            which = gr.Radio([("memory (c)", "c"), ("output (h)", "h")], value="c", label="Which value")
            show = gr.Button("Show this cell", min_width=120)
        with gr.Row(equal_height=True):
            cell_views = [gr.HighlightedText(label=label, show_legend=False, show_inline_category=False,
                                             combine_adjacent=False, color_map=cell_colour_map(),
                                             elem_classes=["running-text"], elem_id=eid(f"cell-{side}"))
                          for side, label in words.SIDES.items()]
        pointed = gr.Markdown(elem_id=eid("cell-pointed"))
        # What a click on a piece reads, kept compact and for 10 minutes (a page left open that long shows the cell
        # again): the page's state is held for thousands of sessions.
        values = gr.State(None, time_to_live=600)

    show_event = dict(inputs=[model, shown, prompt_box, layer, cell, which], outputs=[*cell_views, values, pointed],
                      api_visibility="private", concurrency_id="inside")
    table.select(on_row, None, [layer, cell, which], api_visibility="private", queue=False).then(
        on_show, **show_event)
    show.click(on_show, **show_event)
    for view in cell_views:
        view.select(on_point, [values, which], [pointed, *cell_views], api_visibility="private", queue=False)
    # The table fills when the explorer opens: nothing is computed for a visitor who never looks.
    explorer.expand(on_open, model, [table, missing], api_visibility="private", concurrency_id="inside")
    score_panel(app, model, eid)


def score_panel(app: App, model, eid) -> None:
    """The "how surprising is your text?" panel: each piece of a pasted text coloured by how likely each copy
    found it."""
    def on_score(key, text):
        if not key:
            raise gr.Error(words.TRAIN_FIRST, print_exception=False)
        if not (text or "").strip():  # said where the verdict goes, not as error badges over the last one
            return words.GIVE_TEXT, [], []
        found = app.score(key, text)
        views = [[(piece, None if p is None else words.band(p))
                  for piece, p in zip(found[side]["pieces"], found[side]["probabilities"])]
                 for side in ("float32", "int8")]
        return words.score_verdict(found, app.served(key)), *views

    with gr.Accordion("How surprising is your text?", open=False, elem_id=eid("score")):
        mine = gr.Textbox(label="Paste any text", lines=4, max_lines=10, max_length=MAX_TEXT_CHARS,
                          elem_id=eid("score-text"))
        rate = gr.Button("Score it", elem_id=eid("score-run"))
        verdict = gr.Markdown(elem_id=eid("score-verdict"))
        with gr.Row(equal_height=True):
            score_views = [gr.HighlightedText(label=label, show_legend=True, show_inline_category=False,
                                              combine_adjacent=False, color_map=words.BAND_COLOURS,
                                              elem_classes=["running-text"], elem_id=eid(f"score-{side}"))
                           for side, label in words.SIDES.items()]

    rate.click(on_score, [model, mine], [verdict, *score_views], api_visibility="private", concurrency_id="inside")
