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

from lstmgen import publish as publish_lib
from lstmgen import service
from lstmgen import studio as studio_lib
from lstmgen.sampling import SamplingConfig
from lstmgen.service import LIMITS, MAX_PROMPT_CHARS, RequestError, ServedModel
from lstmgen.settings import describe

models: dict[str, ServedModel] = {}
studio: studio_lib.Studio | None = None  # visitors' trainings (build_demo makes it)
# Probability bands for colouring generated tokens, most sure first.
BANDS = [(0.9, "sure (≥ 90%)", "#16a34a"), (0.5, "likely (50–90%)", "#84cc16"), (0.1, "possible (10–50%)", "#f59e0b"),
         (0.0, "surprising (< 10%)", "#ef4444")]


# --------------------------------------------------------------------------- API functions


def _validated(model, prompt, **sampling) -> service.Request:
    import gradio as gr

    try:
        return service.validate(models, model, prompt, **sampling)
    except RequestError as error:
        raise gr.Error(str(error), print_exception=False) from None


def _settings_doc() -> str:
    return "\n".join(f"    {name}: {describe(SamplingConfig, name)}" for name in
                     ("temperature", "length", "top_k", "top_p", "seed", "allow_special"))


def generate(model: str, prompt: str = "", temperature: float = SamplingConfig.temperature,
             length: int = SamplingConfig.length, top_k: int = SamplingConfig.top_k, top_p: float = SamplingConfig.top_p,
             seed: int | None = None, allow_special: bool = SamplingConfig.allow_special) -> dict:
    request = _validated(model, prompt, temperature=temperature, length=length, top_k=top_k, top_p=top_p, seed=seed,
                         allow_special=allow_special)
    *_, result = service.side_by_side(request, stream_every_s=float("inf"))
    return {"prompt": request.prompt, **result.summary()}


def generate_stream(model: str, prompt: str = "", temperature: float = SamplingConfig.temperature,
                    length: int = SamplingConfig.length, top_k: int = SamplingConfig.top_k,
                    top_p: float = SamplingConfig.top_p, seed: int | None = None,
                    allow_special: bool = SamplingConfig.allow_special) -> Iterator[dict]:
    request = _validated(model, prompt, temperature=temperature, length=length, top_k=top_k, top_p=top_p, seed=seed,
                         allow_special=allow_special)
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
        k: how many candidates, 1 to 50
        temperature: above 0 and at most 2; the distribution generation would sample from
    """
    import gradio as gr

    request = _validated(model, prompt, temperature=temperature, seed=0)
    try:
        return service.next_tokens(request, k)
    except RequestError as error:
        raise gr.Error(str(error), print_exception=False) from None


def list_models() -> dict:
    """What is loaded: for each model its source (Hub repo and revision, bundled, or a folder), size,
    parameters and validation figures of the float and int8 copies; or the reason it could not be loaded.
    Models that visitors trained (/train) are listed too, until they expire."""
    if studio is not None:
        studio.evict()  # expired models go (and leave `models` through on_evict)
    return {name: served.info() for name, served in models.items()}


def train(text: str, tokenizer: str = "char", size: str = "small", seconds: float = 60, request=None) -> Iterator[dict]:
    """Train your own model on your text; streams progress, and the last update names the new model.

    Each update: {"status", "step", "epoch", "train_loss", "val_loss", "tokens_per_s", "elapsed_s", "done",
    "model"}; status is "waiting" (then "place" and "wait_s" say where you are in the line), "training",
    "done" or "failed" (with "error"). The last update's "model" is accepted by /generate,
    /generate_stream and /next_tokens, and listed by /models, until it expires. One training runs at
    a time per server; the text is never stored, only the trained model, for a limited time.

    Inputs (checked on the server):
        text: UTF-8 text to learn from, the last 10% held out for validation (1 KB to 10 MB by default)
        tokenizer: char, word or subword
        size: tiny or small
        seconds: the time budget, 10 to 300 by default
    """
    import gradio as gr

    session = getattr(request, "session_hash", None) or "api"
    try:
        for update in studio.train(text, tokenizer, size, seconds, session):
            yield _public(update)
    except studio_lib.TrainingError as error:
        raise gr.Error(str(error), print_exception=False) from None


def _public(update: dict) -> dict:
    keys = ("status", "step", "epoch", "train_loss", "val_loss", "tokens_per_s", "elapsed_s", "done", "model",
            "error", "place", "wait_s", "parameters", "vocab_size")
    return {k: update.get(k) for k in keys if k in update or k in ("done", "model")}


# --------------------------------------------------------------------------- UI


def _stats(side: dict) -> str:
    return (f"**first token** {side['first_token_ms']:.0f} ms · **total** {side['total_ms']:.0f} ms · "
            f"**{side['tokens_per_s']:.0f} tokens/s** · {side['size_mb']:.3g} MB")


def _coloured(prompt: str, pieces: list[str], probabilities: list[float]) -> list[tuple[str, str | None]]:
    band = lambda p: next(label for low, label, _ in BANDS if p >= low)  # noqa: E731
    return [(prompt, None)] + [(piece, band(p)) for piece, p in zip(pieces, probabilities)]


def _fidelity(summary: dict) -> str:
    seed = f"Seed **{summary['seed']}**. "
    fidelity = summary.get("fidelity")
    if not fidelity:
        return seed + "Both models share their random numbers, so they choose alike wherever their distributions allow."
    note = (seed + f"Fed the float model's text with the same random numbers, **int8 made the same choice as float at "
            f"{fidelity['same_choice']:.1%} of the {fidelity['steps']} steps**; their most likely tokens agreed at "
            f"{fidelity['top1_agreement']:.1%}, mean KL divergence {fidelity['mean_kl_nats']:.4f} nats per token.")
    if summary["unknown"]:
        shown = ", ".join(repr(u) for u in summary["unknown"])
        note += (f"\n\n⚠️ {summary['unknown_total']} prompt piece(s) not in this model's vocabulary (dropped, mapped "
                 f"to <unk> or spelled in bytes): {shown}")
    return note


def _candidates(result: dict) -> tuple[dict, dict, str]:
    labels = [{c["token"]: c["probability"] for c in result[side]} for side in ("float32", "int8")]
    same = "the same" if result["same_top1"] else "**different**"
    return (*labels, f"Top choice: {same} · KL(float ‖ int8) = {result['kl_nats']:.5f} nats")


def _model_card(served: ServedModel) -> str:
    info = served.info()
    rows = "\n".join(f"| {key.replace('_', ' ')} | {fig['loss']:.4f} | {fig['perplexity']:.2f} |"
                     for key, fig in info["figures"].items())
    table = f"| split · model | loss | perplexity |\n|---|---|---|\n{rows}" if rows else "_no figures recorded_"
    fallback = f"\n\nThe Hub was not used: {info['fallback_reason']}" if info.get("fallback_reason") else ""
    return (f"**{info['parameters']:,} parameters** · vocabulary {info['vocab_size']:,} ({info['tokenizer']}) · "
            f"float32 {info['size_mb']['float32']} MB, int8 {info['size_mb']['int8']} MB\n\n"
            f"**Training data:** {served.record.corpus.note}\n\n**Weights from:** {info['source']}{fallback}\n\n{table}")


def _loss_frame(served: ServedModel):
    import pandas as pd

    epochs = served.loaded.metrics.get("epochs", [])
    rows = [{"epoch": e["epoch"], "loss": e[key], "split": label}
            for e in epochs for key, label in (("train_loss", "train"), ("val_loss", "validation")) if key in e]
    return pd.DataFrame(rows, columns=["epoch", "loss", "split"])


def _tab(gr, served: ServedModel):
    name, record = served.name, served.record
    if served.loaded is None:
        gr.Markdown(f"⚠️ **This model could not be loaded**, so this tab is disabled.\n\n`{served.error}`")
        return None
    with gr.Row():
        prompt = gr.Textbox(label="Prompt", value=record.examples[0], lines=3, max_lines=12,
                            max_length=MAX_PROMPT_CHARS, elem_id=f"{name}-prompt", scale=3)
        with gr.Column(scale=2, min_width=240):
            temperature = gr.Slider(*LIMITS["temperature"], value=SamplingConfig.temperature, step=0.05,
                                    label="Temperature (0 = greedy)")
            length = gr.Slider(*LIMITS["length"], value=record.length, step=1, label="Length (new tokens)")
    gr.Examples(list(record.examples), inputs=prompt, label="Examples")
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            top_k = gr.Slider(*LIMITS["top_k"], value=SamplingConfig.top_k, step=1, label="Top-k (0 = off)")
            top_p = gr.Slider(*LIMITS["top_p"], value=SamplingConfig.top_p, step=0.01, label="Top-p (1 = off)")
            # A Textbox, not a Number: inside the closed accordion an empty gr.Number comes up showing 0
            # once opened and then sends 0, so every later run would use seed 0 instead of a random one.
            seed = gr.Textbox(value="", label="Seed (empty = random)", placeholder="random", max_lines=1)
        allow_special = gr.Checkbox(value=SamplingConfig.allow_special,
                                    label="Allow special tokens (<unk>, end of text): masked by default")
    what = "word" if served.loaded.tokenizer.kind == "word" else "token"
    with gr.Accordion(f"Predict the next {what}", open=True):
        with gr.Row(equal_height=True):
            float_next = gr.Label(num_top_classes=10, label="float32", elem_id=f"{name}-next-float")
            int8_next = gr.Label(num_top_classes=10, label="int8", elem_id=f"{name}-next-int8")
        with gr.Row():
            next_note = gr.Markdown(elem_id=f"{name}-next-note")
            predict = gr.Button(f"Predict next {what}", size="sm", scale=0, min_width=160)
    with gr.Row():
        run = gr.Button("Generate", variant="primary", elem_id=f"{name}-generate", scale=3)
        stop = gr.Button("Stop", variant="stop", scale=1, min_width=80)
    colour = gr.Checkbox(value=False, label="Colour each generated token by the probability its model gave it",
                         elem_id=f"{name}-colour")
    outputs = {}
    with gr.Row(equal_height=True):
        for side, label in (("float32", "float32"), ("int8", "int8 (dynamic quantization)")):
            with gr.Column(min_width=280):
                text = gr.Textbox(label=label, lines=10, max_lines=20, interactive=False, elem_id=f"{name}-{side}")
                coloured = gr.HighlightedText(label=label, visible=False, show_legend=True, show_inline_category=False,
                                              color_map={lbl: c for _, lbl, c in BANDS}, elem_id=f"{name}-{side}-colour")
                stats = gr.Markdown(elem_id=f"{name}-{side}-stats")
            outputs[side] = (text, coloured, stats)
    fidelity = gr.Markdown(elem_id=f"{name}-fidelity")
    with gr.Accordion("Token probabilities (table)", open=False):
        table = gr.Dataframe(headers=["#", "float32 token", "float32 p", "int8 token", "int8 p"], interactive=False)
    with gr.Accordion("Model", open=False):
        gr.Markdown(_model_card(served))
        gr.LinePlot(_loss_frame(served), x="epoch", y="loss", color="split", title="Training loss curve",
                    x_title="epoch", y_title="loss (nats per token)", height=260)

    def on_predict(prompt, temperature):
        temperature = temperature if temperature > 0 else 1.0  # greedy has no spread to show: show temperature 1
        return _candidates(next_tokens(name, prompt, 10, temperature))

    def on_generate(prompt, temperature, length, top_k, top_p, seed, allow_special):
        seed = seed.strip() if isinstance(seed, str) else seed  # "" (or blanks) = random
        request = _validated(name, prompt, temperature=temperature, length=length, top_k=top_k, top_p=top_p,
                             seed=seed or None, allow_special=allow_special)
        for result in service.side_by_side(request):
            summary, row = result.summary(), []
            for side, part in (("float32", result.float), ("int8", result.int8)):
                row += [prompt + part.text, _coloured(prompt, part.pieces, part.probabilities),
                        _stats(summary[side])]
            rows = [[i + 1, f.replace("\n", "↵"), round(pf, 4), q.replace("\n", "↵"), round(pq, 4)]
                    for i, (f, pf, q, pq) in enumerate(zip(result.float.pieces, result.float.probabilities,
                                                           result.int8.pieces, result.int8.probabilities))]
            yield (*row, _fidelity(summary), rows if result.done else gr.skip())

    next_outputs = [float_next, int8_next, next_note]
    predict.click(on_predict, [prompt, temperature], next_outputs, api_visibility="private",
                  concurrency_id="next_tokens")
    # Also when the prompt changes (typing, an example): only the last pending update runs, a debounce.
    prompt.change(on_predict, [prompt, temperature], next_outputs, api_visibility="private",
                  trigger_mode="always_last", show_progress="hidden", concurrency_id="next_tokens")
    flat = [c for side in ("float32", "int8") for c in outputs[side]]
    event = run.click(on_generate, [prompt, temperature, length, top_k, top_p, seed, allow_special],
                      [*flat, fidelity, table], api_visibility="private", concurrency_id="generate")
    stop.click(None, cancels=[event])
    colour.change(lambda on: [gr.update(visible=not on), gr.update(visible=on)] * 2, colour,
                  [outputs["float32"][0], outputs["float32"][1], outputs["int8"][0], outputs["int8"][1]],
                  api_visibility="private", queue=False)
    return on_predict, [prompt, temperature], next_outputs  # the candidates for the first prompt, at page load


def _curve_frame(update: dict):
    import pandas as pd

    rows = [{"seconds": p["elapsed_s"], "loss": p[key], "split": label} for p in update.get("curve", [])
            for key, label in (("train_loss", "train"), ("val_loss", "validation")) if p.get(key) is not None]
    return pd.DataFrame(rows, columns=["seconds", "loss", "split"])


def _train_status(update: dict) -> str:
    if update["status"] == "waiting":
        return (f"⏳ Another visitor's model is training. You are **number {update['place'] + 1}** in line: "
                f"about {update['wait_s']:.0f} s to wait.")
    if update["status"] == "failed":
        return f"⚠️ {update['error']}"
    parts = [f"**{update['status']}** · step {update['step']:,} · {update['elapsed_s']:.0f} s"]
    if update.get("train_loss") is not None:
        parts.append(f"train loss {update['train_loss']:.3f}")
    if update.get("val_loss") is not None:
        parts.append(f"validation loss {update['val_loss']:.3f}")
    if update.get("tokens_per_s"):
        parts.append(f"{update['tokens_per_s']:,.0f} tokens/s")
    return " · ".join(parts)


def _trained_figures(served: ServedModel) -> str:
    final = served.loaded.metrics.get("final", {})
    loss = {k: final[k]["loss"] for k in ("val_float", "val_int8") if k in final}
    cost = (loss["val_int8"] - loss["val_float"]) / loss["val_float"] if len(loss) == 2 else 0.0
    return (f"**{served.name}**: {served.loaded.model.num_parameters():,} parameters · vocabulary "
            f"{served.loaded.tokenizer.vocab_size:,} ({served.loaded.tokenizer.kind}) · validation loss "
            f"{loss.get('val_float', float('nan')):.4f} (int8 {loss.get('val_int8', float('nan')):.4f}, "
            f"{cost:+.2%}) · kept on this server for {studio.limits.keep_s / 60:.0f} min")


def _train_tab(gr) -> None:
    limits = studio.limits
    gr.Markdown(f"Train an LSTM on your own text, here on the server, then compare its float and int8 copies, "
                f"download it, or publish it to your Hugging Face account. Text: {limits.min_bytes:,} bytes to "
                f"{limits.max_bytes / 1e6:g} MB of UTF-8, the last 10% held out for validation; it is never stored. "
                f"One training runs at a time; models are deleted after {limits.keep_s / 60:.0f} minutes.")
    with gr.Row():
        with gr.Column(scale=3):
            upload = gr.File(label="Upload a .txt file", file_types=[".txt"], type="filepath", elem_id="train-file")
            pasted = gr.Textbox(label="…or paste text", lines=5, max_lines=10, elem_id="train-text")
            with gr.Row():
                dataset = gr.Textbox(label="…or a Hub dataset id", placeholder="stanfordnlp/imdb", scale=3)
                column = gr.Textbox(value="text", label="its text column", scale=1, min_width=100)
        with gr.Column(scale=2, min_width=260):
            tokenizer = gr.Radio(list(studio_lib.TOKENIZERS), value="char", label="Tokenizer")
            size = gr.Radio([(f"{n} (≈{studio_lib.parameter_count(n) / 1e3:,.0f} k parameters for characters)", n)
                             for n in studio_lib.SIZES], value="small", label="Size")
            seconds = gr.Slider(limits.min_seconds, limits.max_seconds, value=60, step=5, label="Time budget (seconds)")
            with gr.Row():
                start = gr.Button("Train", variant="primary", elem_id="train-start")
                stop = gr.Button("Stop (keeps the best so far)", variant="stop", elem_id="train-stop")
    status = gr.Markdown(elem_id="train-status")
    curve = gr.LinePlot(x="seconds", y="loss", color="split", title="Loss while training", x_title="seconds",
                        y_title="loss (nats per token)", height=260, elem_id="train-plot")
    trained = gr.State(None)
    with gr.Column(visible=False) as result:
        figures = gr.Markdown(elem_id="train-figures")
        with gr.Row():
            prompt = gr.Textbox(label="Prompt", lines=2, scale=3, elem_id="train-prompt")
            generate_button = gr.Button("Generate with your model", variant="primary", elem_id="train-generate")
        with gr.Row(equal_height=True):
            texts = [gr.Textbox(label=label, lines=6, interactive=False, elem_id=f"train-{side}")
                     for side, label in (("float32", "float32"), ("int8", "int8 (dynamic quantization)"))]
        fidelity = gr.Markdown(elem_id="train-fidelity")
        download = gr.DownloadButton("Download the model folder (.zip)", elem_id="train-download")
        with gr.Row():
            from gradio.utils import get_space

            if get_space():  # "Sign in with Hugging Face" (hf_oauth in the README's front matter)
                gr.LoginButton()
            else:  # locally gradio's login button needs a saved login and the Hub; the push uses the saved login
                gr.Markdown("Publishing uses this machine's Hugging Face login (`hf auth login`, or HF_TOKEN).")
            repo = gr.Textbox(label="Repo name on your account", placeholder="my-lstm", scale=2)
            publish = gr.Button("Publish to my Hub account")
        published = gr.Markdown()

    def on_train(upload, pasted, dataset, column, tokenizer, size, seconds, request: gr.Request,
                 progress=gr.Progress()):
        text = _visitor_text(upload, pasted, dataset, column)
        update = {"status": "waiting"}
        for update in studio.train(text, tokenizer, size, seconds, request.session_hash):
            if update["status"] == "training":
                progress(min(1.0, update["elapsed_s"] / float(seconds)), desc="training")
            yield _train_status(update), _curve_frame(update), gr.skip(), gr.update(visible=False), gr.skip(), gr.skip()
        if not update.get("model"):
            return
        name = update["model"]
        archive = shutil.make_archive(str(Path(update["folder"]).parent / name), "zip", update["folder"])
        yield (_train_status(update), _curve_frame(update), name, gr.update(visible=True),
               _trained_figures(models[name]), archive)

    def on_generate_trained(name, prompt):
        if name not in models:
            raise gr.Error("this model has expired: train it again", print_exception=False)
        request = _validated(name, prompt, length=200, seed=None)
        *_, result = service.side_by_side(request, stream_every_s=float("inf"))
        summary = result.summary()
        return prompt + result.float.text, prompt + result.int8.text, _fidelity(summary)

    def on_publish(name, repo, oauth_token: gr.OAuthToken | None):
        folder = studio.folder(name) if name else None
        if folder is None:
            raise gr.Error("train a model first (or train it again: it has expired)", print_exception=False)
        token = oauth_token.token if oauth_token is not None else publish_lib.local_token()
        try:
            return f"Published: {publish_lib.push_to_account(folder, repo, token)}"
        except publish_lib.PublishError as error:
            raise gr.Error(str(error), print_exception=False) from None

    start.click(on_train, [upload, pasted, dataset, column, tokenizer, size, seconds],
                              [status, curve, trained, result, figures, download], api_visibility="private",
                              concurrency_id="train", concurrency_limit=studio_lib.Limits().max_models + 4)
    def on_stop(request: gr.Request):
        studio.stop(request.session_hash)

    stop.click(on_stop, None, None, api_visibility="private", queue=False)
    generate_button.click(on_generate_trained, [trained, prompt], [*texts, fidelity], api_visibility="private",
                          concurrency_id="generate")
    publish.click(on_publish, [trained, repo], published, api_visibility="private")


def _visitor_text(upload, pasted, dataset, column) -> str:
    """The text a visitor gave: an uploaded file, pasted text or a Hub dataset's text column."""
    import gradio as gr

    from lstmgen.data import CorpusError, load_text

    given = [bool(upload), bool(pasted and pasted.strip()), bool(dataset and dataset.strip())]
    if sum(given) != 1:
        raise gr.Error("give your text one way: upload a file, paste text, or name a Hub dataset", print_exception=False)
    try:
        if upload:
            size = Path(upload).stat().st_size
            if size > studio.limits.max_bytes:
                raise studio_lib.TrainingError(f"the file is {size:,} bytes; the limit is {studio.limits.max_bytes:,}")
            return studio_lib.decode_upload(Path(upload).read_bytes())
        if pasted:
            return pasted
        return load_text(dataset=dataset.strip(), text_column=(column or "text").strip())
    except (studio_lib.TrainingError, CorpusError) as error:
        raise gr.Error(str(error), print_exception=False) from None


def build_demo(served_models: dict[str, ServedModel], studio_root=None):
    import gradio as gr

    global studio
    models.clear()
    models.update(served_models)
    # A visitor's model is served like any other (named by its metrics.json) until the studio deletes it.
    studio = studio_lib.Studio(root=studio_root, on_evict=lambda name: models.pop(name, None),
                               on_ready=lambda name, folder: models.update({name: service.load_source(folder)}))
    with gr.Blocks(title="lstmgen: LSTM text generation") as demo:
        gr.Markdown("# lstmgen\nLSTM text generation, each model beside its dynamically int8-quantized copy: "
                    "shared random numbers, the latency of each, and a look inside.")
        on_load = []
        with gr.Tabs():
            for name, served in served_models.items():
                with gr.Tab(served.record.title, id=name, elem_id=f"tab-{name}"):
                    on_load.append(_tab(gr, served))
            with gr.Tab("Train your own", id="train", elem_id="tab-train"):
                _train_tab(gr)
        gr.api(generate, api_name="generate", concurrency_id="generate")
        gr.api(generate_stream, api_name="generate_stream", concurrency_id="generate")
        gr.api(next_tokens, api_name="next_tokens", concurrency_id="next_tokens")
        gr.api(list_models, api_name="models", concurrency_limit=None)
        for fn, inputs, outputs in filter(None, on_load):
            demo.load(fn, inputs, outputs, api_visibility="private", concurrency_id="next_tokens", show_progress="hidden")
        # gradio injects the request where a parameter's type says gr.Request; it is imported late (main).
        train.__annotations__["request"] = gr.Request
        gr.api(train, api_name="train", concurrency_id="train")
    # Each request decodes on one core; a few at a time keep latency low, the queue holds the rest.
    demo.queue(default_concurrency_limit=4, max_size=64)
    _apply_defaults_to_short_calls(demo)
    return demo


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
    # One thread per request: torch's, and each ONNX Runtime session's (lstmgen.ort_engine takes torch's
    # count). A batch-1 step gains little from a second thread unless its pool spins between steps, and
    # the two models of a side-by-side run alternate, so a spinning pool would take the core the other
    # needs; threads that wait on each other stall badly on a busy machine, and concurrent requests then
    # share the cores.
    torch.set_num_threads(1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="FOLDER_OR_REPO",
                        help="serve this model folder or Hub repo too, in a tab of its own (repeatable; also "
                             "LSTMGEN_MODELS, comma-separated)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", default=os.environ.get("GRADIO_SHARE") == "True")
    parser.add_argument("--hub-timeout", type=float, default=float(os.environ.get("LSTMGEN_HUB_TIMEOUT", "4")),
                        help="seconds to wait for the Hub per model (LSTMGEN_HUB_TIMEOUT)")
    parser.add_argument("--no-hub", action="store_true", help="use the bundled weights without asking the Hub")
    args = parser.parse_args(argv)
    sources = [s.strip() for s in os.environ.get("LSTMGEN_MODELS", "").split(",") if s.strip()] + args.model
    prepare_runtime()
    # Resolve the models while gradio imports (about 4 s), so the Hub's bounded wait costs nothing extra.
    loaded: dict[str, ServedModel] = {}
    loader = threading.Thread(target=lambda: loaded.update(
        service.load_all(sources=sources, hub_timeout_s=args.hub_timeout, use_hub=not args.no_hub)))
    loader.start()
    import gradio as gr  # noqa: F401  (imported here to overlap with loading)

    loader.join()
    for name, served in loaded.items():
        print(f"{name}: {served.loaded.source if served.loaded else 'NOT LOADED: ' + served.error}", flush=True)
    build_demo(loaded).launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
