"""lstmgen's Gradio app: three LSTM models, each shown as its float model beside its int8 copy.

    python app.py [--host 127.0.0.1] [--port 7860] [--share]

Named API (gradio_client): /generate, /generate_stream, /models.
"""

from __future__ import annotations

import os

# Offline-safe defaults, read when gradio and huggingface_hub are imported (../shared/STACK.md).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"]))

import argparse
import threading
from collections.abc import Iterator

import torch

from lstmgen import service
from lstmgen.service import LIMITS, MAX_PROMPT_CHARS, MODEL_NAMES, RequestError, ServedModel

TABS = {
    "char": dict(title="Char · Shakespeare", length=300, examples=[
        "ROMEO:", "JULIET:\nO Romeo, Romeo! wherefore art thou", "KING RICHARD III:\nNow is the winter of",
        "First Citizen:\n"]),
    "subword": dict(title="Subword · tiktoken", length=120, examples=[
        "ROMEO:\nBut soft, what light", "HAMLET:\nTo be, or not to be", "DUKE VINCENTIO:\n", "LADY MACBETH:\n"]),
    "word": dict(title="Word · Harry Potter", length=80, examples=[
        "Harry looked at", "Hermione said that", "The castle was dark and", "Dumbledore smiled"]),
}
DATA_NOTES = {
    "char": "Tiny Shakespeare (1.1 M characters), first 90% for training, last 10% for validation",
    "subword": "Tiny Shakespeare as GPT-2 BPE tokens (compact vocabulary), 90% / 10% split",
    "word": "the seven Harry Potter books, basic_english words, 70% / 15% / 15% split",
}

models: dict[str, ServedModel] = {}


# --------------------------------------------------------------------------- API functions


def _request(model, prompt, temperature, length, top_k, top_p, seed):
    import gradio as gr

    try:
        return service.validate(models, model, prompt, temperature, length, top_k, top_p, seed)
    except RequestError as error:
        raise gr.Error(str(error), print_exception=False) from None


def generate(model: str, prompt: str, temperature: float = 0.8, length: int = 200, top_k: int = 0,
             top_p: float = 1.0, seed: int | None = None) -> dict:
    """Generate with the float model and its int8 copy from the same seed; returns both texts and timings.

    model: char, subword or word. temperature: 0 (greedy) to 2. length: 1 to 1000 new tokens.
    top_k: 0 (off) to 500. top_p: 0.01 to 1 (1 = off). seed: 0 to 2^31-1, or empty for a random one.
    The prompt may hold at most 2000 characters; pieces outside the vocabulary are listed in `unknown`."""
    request = _request(model, prompt, temperature, length, top_k, top_p, seed)
    *_, result = service.side_by_side(models[request.model], request, stream_every_s=float("inf"))
    return {"prompt": request.prompt, **result.summary()}


def generate_stream(model: str, prompt: str, temperature: float = 0.8, length: int = 200, top_k: int = 0,
                    top_p: float = 1.0, seed: int | None = None) -> Iterator[dict]:
    """Like /generate, but streams: each update holds both texts so far and their timings; the last has done=true."""
    request = _request(model, prompt, temperature, length, top_k, top_p, seed)
    for result in service.side_by_side(models[request.model], request):
        yield {"prompt": request.prompt, **result.summary()}


def list_models() -> dict:
    """What is loaded: for each model its source (Hub repo and revision, or bundled), size, parameters and
    validation figures of the float and int8 copies; or the reason it could not be loaded."""
    return {name: served.info() for name, served in models.items()}


# --------------------------------------------------------------------------- UI


def _stats(side: dict) -> str:
    return (f"**first token** {side['first_token_ms']:.0f} ms · **total** {side['total_ms']:.0f} ms · "
            f"**{side['tokens_per_s']:.0f} tokens/s** · {side['size_mb']:.3g} MB")


def _agreement(summary: dict) -> str:
    n, total = summary["agreeing_tokens"], summary["float32"]["tokens"]
    note = (f"Seed **{summary['seed']}**: both models draw from the same random stream, so the texts differ only "
            f"where quantization changed a choice. The first **{n} of {total}** tokens agree.")
    if summary["unknown"]:
        shown = ", ".join(repr(u) for u in summary["unknown"][:10])
        note += f"\n\n⚠️ Not in this model's vocabulary (dropped, mapped to <unk> or spelled in bytes): {shown}"
    return note


def _model_card(served: ServedModel) -> str:
    info = served.info()
    figures = info["figures"]
    rows = "\n".join(f"| {key.replace('_', ' ')} | {fig['loss']:.4f} | {fig['perplexity']:.2f} |"
                     for key, fig in figures.items())
    table = f"| split · model | loss | perplexity |\n|---|---|---|\n{rows}" if rows else "_no figures recorded_"
    fallback = f"\n\nThe Hub was not used: {info['fallback_reason']}" if info.get("fallback_reason") else ""
    return (f"**{info['parameters']:,} parameters** · vocabulary {info['vocab_size']:,} ({info['tokenizer']}) · "
            f"float32 {info['size_mb']['float32']} MB, int8 {info['size_mb']['int8']} MB\n\n"
            f"**Training data:** {DATA_NOTES[served.name]}\n\n**Weights from:** {info['source']}{fallback}\n\n{table}")


def _loss_frame(served: ServedModel):
    import pandas as pd

    epochs = served.loaded.metrics.get("epochs", [])
    rows = [{"epoch": e["epoch"], "loss": e[key], "split": label}
            for e in epochs for key, label in (("train_loss", "train"), ("val_loss", "validation"))]
    return pd.DataFrame(rows, columns=["epoch", "loss", "split"])


def _tab(gr, name: str, served: ServedModel) -> None:
    spec = TABS[name]
    if served.loaded is None:
        gr.Markdown(f"⚠️ **This model could not be loaded**, so this tab is disabled.\n\n`{served.error}`")
        return
    with gr.Row():
        prompt = gr.Textbox(label="Prompt", value=spec["examples"][0], lines=3, max_lines=12,
                            max_length=MAX_PROMPT_CHARS, elem_id=f"{name}-prompt", scale=3)
        with gr.Column(scale=2, min_width=240):
            temperature = gr.Slider(*LIMITS["temperature"], value=0.8, step=0.05, label="Temperature (0 = greedy)")
            length = gr.Slider(*LIMITS["length"], value=spec["length"], step=1, label="Length (new tokens)")
    gr.Examples(spec["examples"], inputs=prompt, label="Examples")
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            top_k = gr.Slider(*LIMITS["top_k"], value=0, step=1, label="Top-k (0 = off)")
            top_p = gr.Slider(*LIMITS["top_p"], value=1.0, step=0.01, label="Top-p (1 = off)")
            # A Textbox, not a Number: inside the closed accordion an empty gr.Number comes up showing 0
            # once opened and then sends 0, so every later run would use seed 0 instead of a random one.
            seed = gr.Textbox(value="", label="Seed (empty = random)", placeholder="random", max_lines=1)
    with gr.Row():
        run = gr.Button("Generate", variant="primary", elem_id=f"{name}-generate", scale=3)
        stop = gr.Button("Stop", variant="stop", scale=1, min_width=80)
    with gr.Row(equal_height=True):
        with gr.Column(min_width=280):
            float_text = gr.Textbox(label="float32", lines=10, max_lines=20, interactive=False,
                                    elem_id=f"{name}-float")
            float_stats = gr.Markdown(elem_id=f"{name}-float-stats")
        with gr.Column(min_width=280):
            int8_text = gr.Textbox(label="int8 (dynamic quantization)", lines=10, max_lines=20, interactive=False,
                                   elem_id=f"{name}-int8")
            int8_stats = gr.Markdown(elem_id=f"{name}-int8-stats")
    agreement = gr.Markdown(elem_id=f"{name}-agreement")
    with gr.Accordion("Model", open=False):
        gr.Markdown(_model_card(served))
        gr.LinePlot(_loss_frame(served), x="epoch", y="loss", color="split", title="Training loss curve",
                    x_title="epoch", y_title="loss (nats per token)", height=260)

    def on_generate(prompt, temperature, length, top_k, top_p, seed):
        seed = seed.strip() if isinstance(seed, str) else seed  # "" (or blanks) = random
        for summary in generate_stream(name, prompt, temperature, length, top_k, top_p, seed):
            yield (summary["prompt"] + summary["float32"]["text"], _stats(summary["float32"]),
                   summary["prompt"] + summary["int8"]["text"], _stats(summary["int8"]), _agreement(summary))

    event = run.click(on_generate, [prompt, temperature, length, top_k, top_p, seed],
                      [float_text, float_stats, int8_text, int8_stats, agreement],
                      api_visibility="private", concurrency_id="generate")
    stop.click(None, cancels=[event])


def build_demo(served_models: dict[str, ServedModel]):
    import gradio as gr

    models.clear()
    models.update(served_models)
    with gr.Blocks(title="lstmgen: LSTM text generation") as demo:
        gr.Markdown("# lstmgen\nLSTM text generation, each model beside its dynamically int8-quantized copy: "
                    "same seed, same random stream, with the latency of each.")
        with gr.Tabs():
            for name, served in served_models.items():
                with gr.Tab(TABS[name]["title"], id=name, elem_id=f"tab-{name}"):
                    _tab(gr, name, served)
        gr.api(generate, api_name="generate", concurrency_id="generate")
        gr.api(generate_stream, api_name="generate_stream", concurrency_id="generate")
        gr.api(list_models, api_name="models", concurrency_limit=None)
    # Each request decodes on one core; a few at a time keep latency low, the queue holds the rest.
    demo.queue(default_concurrency_limit=4, max_size=64)
    return demo


def prepare_runtime() -> None:
    # One thread per request: batch-1 steps gain nothing from more (see the benchmark), threads that
    # wait on each other stall badly on a busy machine, and concurrent requests then share the cores.
    torch.set_num_threads(1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", default=os.environ.get("GRADIO_SHARE") == "True")
    parser.add_argument("--hub-timeout", type=float, default=4.0, help="seconds to wait for the Hub per model")
    parser.add_argument("--no-hub", action="store_true", help="use the bundled weights without asking the Hub")
    args = parser.parse_args(argv)
    prepare_runtime()
    # Resolve the models while gradio imports (about 4 s), so the Hub's bounded wait costs nothing extra.
    loaded: dict[str, ServedModel] = {}
    loader = threading.Thread(target=lambda: loaded.update(service.load_all(args.hub_timeout, not args.no_hub)))
    loader.start()
    import gradio as gr  # noqa: F401  (imported here to overlap with loading)

    loader.join()
    for name, served in loaded.items():
        print(f"{name}: {served.loaded.source if served.loaded else 'NOT LOADED: ' + served.error}", flush=True)
    build_demo(loaded).launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
