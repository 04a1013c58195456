"""The page and its wiring: a tab per model, Train your own, the named API, the queue; and launching it."""

from __future__ import annotations

import gradio as gr

from ..core.operator_settings import server_limits
from ..serve import service
from ..serve.service import ServedModel
from ..serve.studio import Studio
from ..serve.web import BodyLimit, Gate, SameSite
from . import words
from .api import App
from .limits import call_only_listed_tools, keep_session_state_small, refuse_malformed_calls, share_the_queue
from .model_tab import model_tab
from .train_tab import forget_download, train_tab

CHEAP_GROUPS = ("next_tokens", "train-expect")  # requests of a few milliseconds each (the rest cost up to seconds)
INSIDE_AT_ONCE = 1  # looking inside takes a core for up to a few seconds: one at a time leaves a core to generation

# Coloured text reads as running text: no padded box around each piece, and lines break only at spaces (the
# whitespace between the pieces' elements is no place to break: a word is never cut in two, on a phone too).
CSS = (".running-text .textfield { display: block !important; word-break: normal !important; font-size: 0 !important;"
       " white-space: nowrap !important; }\n"
       ".running-text .token-container, .running-text .token { display: inline !important; padding: 0 !important;"
       " margin: 0 !important; border-radius: 0 !important; }\n"
       # font-size 0 above hides the whitespace between the pieces' elements; each piece's text keeps its size
       ".running-text .text { font-size: var(--text-md); background-color: inherit; line-height: 1.6;"
       " white-space: pre-wrap; }\n"
       ".running-text .line-break { display: block !important; }\n"
       # Each copy's text (model_tab.text_html): breaks at spaces, the piece where the texts part marked
       ".side-text .side-label { font-size: var(--block-label-text-size); color: var(--block-label-text-color);"
       " margin-bottom: 4px; }\n"
       ".side-text .running { white-space: pre-wrap; overflow-wrap: break-word; line-height: 1.6; min-height: 10em;"
       " max-height: 30em; overflow-y: auto; padding: 8px 10px; border: 1px solid var(--border-color-primary);"
       " border-radius: var(--radius-md); background: var(--input-background-fill); }\n"
       ".side-text .running, .side-text .running * { font-size: var(--text-md); }\n"
       ".side-text .prompt { font-weight: 600; }\n"
       ".side-text mark.parted { background-color: #bfdbfe; color: inherit; outline: 2px solid #2563eb;"
       " border-radius: 2px; scroll-margin: 80px; }\n"
       ".side-text .legend { font-size: var(--text-sm); margin-bottom: 4px; }\n"
       ".side-text .legend span { padding: 0 4px; border-radius: 2px; }\n"
       ".side-text mark.parted.flash { animation: flash 1.5s; }\n"
       "@keyframes flash { 0%, 50% { outline-width: 5px; } 100% { outline-width: 2px; } }\n"
       # The cell table's numbers never wrap (layer, cell and r stay readable on a phone); what the cell does wraps
       ".cell-table th > div, .cell-table [role=gridcell] > div { padding-left: 4px !important;"
       " padding-right: 4px !important; }\n"
       ".cell-table th:not([data-heading='4']) span, .cell-table [role=gridcell]:not([data-col='4']) span"
       " { white-space: nowrap !important; word-break: keep-all !important; }")

# Gradio's plots hard-code the Vega-Lite schema v5.17.0 in the page while bundling Vega-Lite 6, so vega-embed warns
# on every plot. The specs it draws are unchanged between the two versions; this drops that one message and no other.
# A link to a piece of the page (the fidelity sentence's "character 21") scrolls to it and flashes it: Gradio
# opens a Markdown link in a new tab otherwise.
HEAD = """<script>
(() => {
  const warn = console.warn.bind(console);
  console.warn = (...args) => {
    if (args.map(String).join(" ").includes("The input spec uses Vega-Lite v5")) return;
    warn(...args);
  };
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest('a[href^="#"]');
    const target = link && document.getElementById(decodeURIComponent(link.getAttribute("href").slice(1)));
    if (!target) return;
    event.preventDefault();
    event.stopPropagation();
    target.scrollIntoView({behavior: "smooth", block: "center"});
    target.classList.add("flash");
    setTimeout(() => target.classList.remove("flash"), 1500);
  }, true);
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
    limits = server_limits()
    with gr.Blocks(title="lstmgen: LSTM text generation", delete_cache=(min(300, keep_s), keep_s)) as demo:
        gr.Markdown(words.HEADER)
        on_load = []
        with gr.Tabs(overflow_behavior="wrap"):  # on a phone every tab stays in sight (no "⋯" menu)
            for name, served in served_models.items():
                with gr.Tab(served.record.title, id=name, elem_id=f"tab-{name}"):
                    on_load.append(model_tab(app, served))
            with gr.Tab("Train your own", id="train", elem_id="tab-train"):
                train_tab(app)
        app.endpoint(app.generate, api_name="generate", concurrency_id="generate")
        app.endpoint(app.generate_stream, api_name="generate_stream", concurrency_id="generate")
        app.endpoint(app.next_tokens, api_name="next_tokens", concurrency_id="next_tokens")
        app.endpoint(app.list_models, api_name="models", concurrency_limit=None)
        app.endpoint(app.cells, api_name="cells", concurrency_id="inside", concurrency_limit=INSIDE_AT_ONCE)
        app.endpoint(app.cell_features, api_name="cell_features", concurrency_id="inside")
        app.endpoint(app.score, api_name="score", concurrency_id="inside")
        app.endpoint(app.train_endpoint(), api_name="train", concurrency_id="train",
                     concurrency_limit=app.train_slots())
        for fn, inputs, outputs in filter(None, on_load):
            demo.load(fn, inputs, outputs, api_visibility="private", concurrency_id="next_tokens", show_progress="hidden")
    # Each request decodes on one core; a few at a time keep latency low, the queue holds the rest.
    demo.queue(default_concurrency_limit=4, max_size=64)
    # Each client's share of the queue: one costly request at a time (generating and looking inside count as one:
    # either takes a core), a few cheap ones (a page's arrival asks each tab's opening text at once, and a slider
    # asks for the forecast as it moves), and a training plus one more request, which reaches the studio to be told
    # why it is refused ("a training of yours is already running or waiting").
    cheap = max(limits.client_requests, len(served_models) + 2)
    shares = {group: cheap for group in CHEAP_GROUPS} | {"train": limits.client_requests + 1}
    share_the_queue(demo, limits.client_requests, shares, limits.unread_keep_s, pooled=("generate", "inside"))
    refuse_malformed_calls(demo)
    demo.lstmgen_app = app
    return demo


def launch(demo: gr.Blocks, **options):
    """demo.launch with the limits a public server needs: the Gate in front (lstmgen.serve.web: who the client
    is, calls from the app's own pages only, bounded uploads); uploads above the text limit refused by Gradio
    itself, and any request body over twice that (JSON escapes a newline in two bytes) refused unread; page
    state kept small per session; the MCP server calls only the tools it lists."""
    import os

    from starlette.middleware import Middleware

    max_bytes, limits = demo.lstmgen_app.studio.limits.max_bytes, server_limits()
    middleware = [Middleware(Gate, limits=limits), Middleware(BodyLimit, max_bytes=2 * max_bytes + 1_000_000)]
    block = not options.pop("prevent_thread_lock", False)
    result = demo.launch(max_file_size=max_bytes, css=CSS, head=HEAD, mcp_server=True, prevent_thread_lock=True,
                         state_session_capacity=limits.sessions, app_kwargs={"middleware": middleware}, **options)
    # SameSite goes in front of Gradio's own CORS middleware (which answers any origin, with credentials), and so
    # after launch: Gradio adds its middleware in front of those it is given. Starlette builds the new stack on the
    # next request.
    own_hosts = (os.environ.get("SPACE_HOST", ""), "huggingface.co" if os.environ.get("SPACE_ID") else "")
    demo.server_app.user_middleware.insert(0, Middleware(SameSite, allowed_origins=limits.allowed_origins,
                                                         own_hosts=own_hosts))
    demo.server_app.middleware_stack = None
    keep_session_state_small(demo)
    call_only_listed_tools(demo)
    if block:
        demo.block_thread()
    return result
