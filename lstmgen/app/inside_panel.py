"""The look inside a model: the cell explorer, and how surprising each copy finds a visitor's text."""

# No `from __future__ import annotations`: gradio reads the handlers' type hints (gr.SelectData) to inject them.
import gradio as gr

from ..serve.service import MAX_TEXT_CHARS
from . import words
from .api import App


def cell_colours(pieces: list[str], values: list[float]) -> list[tuple[str, float]]:
    """Pieces with their cell's value scaled to [-1, 1] for the colouring (blue negative, red positive)."""
    top = max((abs(v) for v in values), default=0.0) or 1.0
    return [(piece, round(v / top, 4)) for piece, v in zip(pieces, values)]


def feature_rows(found: dict) -> list[list]:
    return [[row["sentence"], row["layer"], row["cell"], row["state"], round(row["r"], 3)] for row in found["rows"]]


def inside_panel(app: App, model, text_box, prompt_box, unit: str, prefix: str | None = None) -> None:
    """The cell explorer, then the score panel, for the model named by the `model` State (a tab's name, or the
    visitor's key); a cell is read along `text_box`'s text, else `prompt_box`'s."""
    def eid(part):
        return f"{prefix}-{part}" if prefix else None

    def on_open(key):
        return feature_rows(app.cell_features(key)) if key else []

    def on_show(key, text, prompt, layer, cell, which):
        if not key:
            raise gr.Error(words.TRAIN_FIRST, print_exception=False)
        found = app.cells(key, text or prompt, layer, cell)
        views = [cell_colours(found["pieces"], found[side][which]) for side in ("float32", "int8")]
        return (*views, found, words.cell_shown(found, which, unit))

    def on_row(evt: gr.SelectData):
        _, layer, cell, which, _ = evt.row_value  # the clicked row of the table
        return int(layer), int(cell), str(which)

    def on_point(found, which, evt: gr.SelectData):
        if not found:
            return ""
        return words.cell_pointed(found, which, evt.index if isinstance(evt.index, int) else evt.index[0])

    with gr.Accordion("Inside the network: what its cells keep", open=False, elem_id=eid("cells")) as explorer:
        gr.Markdown(words.CELLS_INTRO)
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
                          for side, label in words.SIDES.items()]
        pointed = gr.Markdown(elem_id=eid("cell-pointed"))
        values = gr.State(None)

    show_event = dict(inputs=[model, text_box, prompt_box, layer, cell, which], outputs=[*cell_views, values, pointed],
                      api_visibility="private", concurrency_id="inside")
    table.select(on_row, None, [layer, cell, which], api_visibility="private", queue=False).then(
        on_show, **show_event)
    show.click(on_show, **show_event)
    for view in cell_views:
        view.select(on_point, [values, which], pointed, api_visibility="private", queue=False)
    # The table fills when the explorer opens: nothing is computed for a visitor who never looks.
    explorer.expand(on_open, model, table, api_visibility="private", concurrency_id="inside")
    score_panel(app, model, eid)


def score_panel(app: App, model, eid) -> None:
    """The "how surprising is your text?" panel: each piece of a pasted text coloured by how likely each copy
    found it."""
    def on_score(key, text):
        if not key:
            raise gr.Error(words.TRAIN_FIRST, print_exception=False)
        found = app.score(key, text)
        views = [[(piece, None if p is None else words.band(p))
                  for piece, p in zip(found[side]["pieces"], found[side]["probabilities"])]
                 for side in ("float32", "int8")]
        return words.score_verdict(found), *views

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
