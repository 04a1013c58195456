"""The page and its wiring: a tab per model, Train your own, the named API, the queue; and launching it."""

from __future__ import annotations

import gradio as gr

from ..serve import service
from ..serve.service import ServedModel
from ..serve.studio import Studio
from ..serve.web import BodyLimit
from . import words
from .api import App
from .model_tab import model_tab
from .train_tab import forget_download, train_tab

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


def build_demo(served_models: dict[str, ServedModel], studio_root=None) -> gr.Blocks:
    """The app over `served_models`, with a studio of its own for visitors' trainings (under `studio_root`, else a
    temporary folder); its App (the models, the studio, the endpoints) is `demo.lstmgen_app`."""
    studio = Studio(root=studio_root, load=lambda folder: service.load_source(folder, use_hub=False),
                    on_evict=forget_download)
    app = App(served_models, studio)
    # Gradio's own cache (uploads, the zips it serves) is cleaned as often as the studio's models expire.
    keep_s = int(studio.limits.keep_s)
    with gr.Blocks(title="lstmgen: LSTM text generation", delete_cache=(min(300, keep_s), keep_s)) as demo:
        gr.Markdown(words.HEADER)
        on_load = []
        with gr.Tabs(overflow_behavior="wrap"):  # on a phone every tab stays in sight (no "⋯" menu)
            for name, served in served_models.items():
                with gr.Tab(served.record.title, id=name, elem_id=f"tab-{name}"):
                    on_load.append(model_tab(app, served))
            with gr.Tab("Train your own", id="train", elem_id="tab-train"):
                train_tab(app)
        gr.api(app.generate, api_name="generate", concurrency_id="generate")
        gr.api(app.generate_stream, api_name="generate_stream", concurrency_id="generate")
        gr.api(app.next_tokens, api_name="next_tokens", concurrency_id="next_tokens")
        gr.api(app.list_models, api_name="models", concurrency_limit=None)
        gr.api(app.cells, api_name="cells", concurrency_id="inside")
        gr.api(app.cell_features, api_name="cell_features", concurrency_id="inside")
        gr.api(app.score, api_name="score", concurrency_id="inside")
        gr.api(app.train_endpoint(), api_name="train", concurrency_id="train", concurrency_limit=app.train_slots())
        for fn, inputs, outputs in filter(None, on_load):
            demo.load(fn, inputs, outputs, api_visibility="private", concurrency_id="next_tokens", show_progress="hidden")
    # Each request decodes on one core; a few at a time keep latency low, the queue holds the rest.
    demo.queue(default_concurrency_limit=4, max_size=64)
    _apply_defaults_to_short_calls(demo)
    demo.lstmgen_app = app
    return demo


def launch(demo: gr.Blocks, **options):
    """demo.launch with the limits a public server needs: uploads above the text limit are refused by Gradio
    itself, and any request body over twice that (JSON escapes a newline in two bytes) is refused unread."""
    from starlette.middleware import Middleware

    max_bytes = demo.lstmgen_app.studio.limits.max_bytes
    return demo.launch(max_file_size=max_bytes, css=CSS, head=HEAD, mcp_server=True,
                       app_kwargs={"middleware": [Middleware(BodyLimit, max_bytes=2 * max_bytes + 1_000_000)]},
                       **options)


def _apply_defaults_to_short_calls(demo: gr.Blocks) -> None:
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
