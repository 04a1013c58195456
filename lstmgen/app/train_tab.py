"""Train your own: a visitor's text in, progress out, then their model to try, download or publish."""

# No `from __future__ import annotations`: gradio reads the handlers' type hints (gr.Request, gr.OAuthToken) to
# inject them, so they must be real objects, not strings.
import shutil
import threading
from pathlib import Path

import gradio as gr
import pandas as pd
from gradio.utils import get_space, get_upload_folder

from .. import hub
from ..core.data import CorpusError, check_hub_dataset_id, read_hub_dataset
from ..core.records import NEW_MODEL_SIZE, NEW_MODEL_TRAINING
from ..core.settings import SettingError
from ..serve import service
from ..serve import studio as studio_lib
from ..serve.service import MAX_PROMPT_CHARS
from ..serve.web import client_key
from ..training.run import steps_per_second
from . import words
from .api import App, refused
from .inside_panel import inside_panel
from .model_tab import text_html

# When training starts, the room for the status line and the curve is kept (so the page does not grow under
# the visitor) and the Train button scrolled to the top: the run stays in view, on a desktop and on a phone.
WATCH_JS = ("(...args) => { const room = document.getElementById('train-progress'); if (room) room.style.minHeight = "
            "'330px'; document.getElementById('train-start')?.scrollIntoView({block: 'start'}); return args; }")


def curve_frame(update: dict) -> pd.DataFrame:
    """The run's curve in bits per piece, as every surprise is shown."""
    rows = [{"seconds": p["elapsed_s"], "surprise": words.bits(p[key]), "text": label} for p in update.get("curve", [])
            for key, label in (("train_loss", "your text"), ("val_loss", "held-out part")) if p.get(key) is not None]
    return pd.DataFrame(rows, columns=["seconds", "surprise", "text"])


def visitor_text(limits, upload, pasted, dataset, column):
    """The text a visitor gave: an uploaded file's (the file is deleted once read), pasted text, or a function
    that reads a public Hub dataset, which the studio calls when the visitor's turn comes."""
    given = [bool(upload), bool(pasted and pasted.strip()), bool(dataset and dataset.strip())]
    if sum(given) != 1:
        raise studio_lib.TrainingError("give your text one way: upload a file, paste text, or name a Hub dataset")
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


def forget_download(key: str) -> None:
    """A visitor's model was deleted: delete Gradio's copy of its zip too (the download), named by its key."""
    for copy in Path(get_upload_folder()).glob(f"*/{key}.zip"):
        shutil.rmtree(copy.parent, ignore_errors=True)


def train_tab(app: App) -> None:
    studio = app.studio
    limits = studio.limits
    speeds: dict[str, float] = {}  # training steps a second by size, measured on this server (a probe, then runs)
    probing = threading.Lock()

    def on_expect(tokenizer, size, seconds):
        """What the chosen size and time give here; the first call for a size measures its speed (half a second)."""
        with probing:
            if size not in speeds:
                speeds[size] = steps_per_second(size)
        return words.train_expectation(speeds[size], size, float(seconds), tokenizer)

    def on_train(upload, pasted, dataset, column, tokenizer, size, seconds, request: gr.Request):
        hidden = gr.update(visible=False)
        yield "⏳ Reading your text…", hidden, gr.skip(), hidden, gr.skip(), gr.skip(), gr.update(interactive=True)
        update = {"status": "waiting"}
        try:
            text = visitor_text(limits, upload, pasted, dataset, column)
            for update in studio.train(text, tokenizer, size, seconds, client=client_key(request),
                                       session=request.session_hash):
                plot = gr.update(value=curve_frame(update), visible=True) if update.get("curve") else gr.skip()
                yield (words.train_status(update, float(seconds), tokenizer), plot, gr.skip(), gr.skip(), gr.skip(),
                       gr.skip(), gr.skip())
        except (SettingError, CorpusError) as error:
            refused("a training", error)
            yield f"⚠️ {error}", gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.update(interactive=False)
            raise gr.Error(str(error), print_exception=False) from None
        if not update.get("model"):
            return
        if tokenizer == "char" and update.get("elapsed_s"):  # the run's own speed on this server, as it was
            speeds[size] = update["step"] / update["elapsed_s"]
        key, folder = update["model"], studio.folder(update["model"])
        archive = shutil.make_archive(str(folder.parent / key), "zip", folder)  # deleted with the model
        yield (words.train_status(update, float(seconds), tokenizer), gr.skip(), key, gr.update(visible=True),
               words.trained_figures(studio.get(key).served, update, limits.keep_s), archive, gr.skip())

    def on_stop(request: gr.Request):
        studio.stop(request.session_hash)

    gr.Markdown(words.train_intro(limits))
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
            tokenizer = gr.Radio([("letters", "char"), ("words", "word"), ("word pieces", "subword")], value="char",
                                 label="Read the text as", info="The model writes one of these at a time (tokenizer).")
            with gr.Row():
                size = gr.Radio([(f"{n} ({studio_lib.parameter_count(n) / 1e3:,.0f} k parameters)", n)
                                 for n in studio_lib.SIZES], value=NEW_MODEL_SIZE, label="Model size",
                                info="Bigger learns more but needs more time.")
                seconds = gr.Slider(limits.min_seconds, limits.max_seconds, value=NEW_MODEL_TRAINING.time_budget_s,
                                    step=5, label="Training time (seconds)", elem_id="train-seconds")
        # Beside the text on a desktop, right under it on a phone: what to expect, Train, and while it trains
        # the status and the curve, together in view.
        with gr.Column(scale=2, min_width=260, elem_id="train-watch"):
            expectation = gr.Markdown(elem_id="train-expect")
            with gr.Row():
                start = gr.Button("Train", variant="primary", elem_id="train-start")
                stop = gr.Button("Stop (keeps the best so far)", variant="stop", elem_id="train-stop",
                                 interactive=False)
            with gr.Column(elem_id="train-progress"):
                status = gr.Markdown(elem_id="train-status")
                curve = gr.LinePlot(x="seconds", y="surprise", color="text", title="Surprise while learning (lower is "
                                    "better)", x_title="seconds", y_title="bits per piece", height=240,
                                    elem_id="train-plot", visible=False)
    trained = gr.State(None)  # the key of this session's model
    with gr.Column(visible=False) as result:
        figures = gr.Markdown(elem_id="train-figures")
        _try_trained(app, trained)
        download = gr.DownloadButton("Download the model folder (.zip)", elem_id="train-download")
        _publish_row(app, trained)

    # At page load and when a setting changes (the speed is measured once per size).
    gr.on(None, on_expect, [tokenizer, size, seconds], expectation, api_visibility="private",
          show_progress="hidden", concurrency_id="train-expect", concurrency_limit=1)
    # No progress overlay: the status line says where the run is, with the run's own clock.
    train_event = start.click(on_train, [upload, pasted, dataset, column, tokenizer, size, seconds],
                              [status, curve, trained, result, figures, download, stop], api_visibility="private",
                              concurrency_id="train", concurrency_limit=app.train_slots(), show_progress="hidden",
                              js=WATCH_JS)
    train_event.then(lambda: gr.update(interactive=False), None, stop, api_visibility="private", queue=False)
    stop.click(on_stop, None, None, api_visibility="private", queue=False)


def _try_trained(app: App, trained) -> None:
    """The trained model's own prompt, its two copies' texts side by side and the look inside."""
    def on_generate_trained(key, prompt):
        if app.studio.get(key) is None:
            raise gr.Error(words.EXPIRED, print_exception=False)
        request = app.validated(key, prompt, length=200, seed=None)
        *_, result = service.side_by_side(request, stream_every_s=float("inf"))
        summary, served = result.summary(), request.served
        shown = {"prompt": prompt, "parted": result.parted_at(),
                 "float32": (result.float.pieces, result.float.probabilities),
                 "int8": (result.int8.pieces, result.int8.probabilities)}
        many = words.unit(served, True)
        return (*[value for side, label in words.SIDES.items() for value in (
                    text_html(label, prompt, *shown[side], shown["parted"], False, f"train-{side}-part"),
                    words.stats(summary[side], many))],
                words.fidelity_note(summary, words.units(served), "train-float32-part"), shown)

    with gr.Row():
        prompt = gr.Textbox(label="Start the text", lines=2, scale=3, elem_id="train-prompt", max_length=MAX_PROMPT_CHARS)
        generate_button = gr.Button("Generate with your model", variant="primary", elem_id="train-generate")
    sides = []
    with gr.Row(equal_height=True):
        for side, label in words.SIDES.items():
            with gr.Column(min_width=300):
                sides += [gr.HTML(text_html(label, "", [], [], None, False, None), elem_id=f"train-{side}",
                                  elem_classes=["side-text"], padding=False),
                          gr.Markdown(elem_id=f"train-{side}-stats")]
    fidelity = gr.Markdown(elem_id="train-fidelity")
    shown = gr.State(None)
    inside_panel(app, trained, shown, prompt, "piece", prefix="train")

    generate_button.click(on_generate_trained, [trained, prompt], [*sides, fidelity, shown], api_visibility="private",
                          concurrency_id="generate")


def _publish_row(app: App, trained) -> None:
    """Publishing the trained model to the visitor's own Hub account, with the visitor's own sign-in."""
    def on_publish(key, name, license, oauth_token: gr.OAuthToken | None):
        folder = app.studio.folder(key)
        if folder is None:
            raise gr.Error(words.NOTHING_TO_PUBLISH, print_exception=False)
        token = hub.publishing_token(oauth_token.token if oauth_token is not None else None)
        try:
            return f"Published: {studio_lib.publish(folder, name, token, license)}"
        except hub.PublishError as error:
            refused("a publish", error)
            raise gr.Error(str(error), print_exception=False) from None

    with gr.Row():
        on_space = bool(get_space())
        if on_space:  # "Sign in with Hugging Face" (hf_oauth in the README's front matter)
            gr.LoginButton()
        gr.Markdown(words.publish_how(on_space, hub.SERVER_TOKEN_ENV), elem_id="train-publish-how")
        repo = gr.Textbox(label="Name of the new repo on your account", placeholder="my-lstm", scale=2,
                          max_lines=1, max_length=96)
        # The card says the license: the visitor's choice ("other": none chosen, and the card says so).
        license = gr.Dropdown(list(studio_lib.LICENSES), value="other", label="License for others who use it",
                              info="“other” means you chose none: others should ask you first", elem_id="train-license")
        publish = gr.Button("Publish to my account", elem_id="train-publish")
    published = gr.Markdown(elem_id="train-published")

    publish.click(on_publish, [trained, repo, license], published, api_visibility="private")
