"""The named API: each endpoint a method of an App, which holds the served models and the visitors' studio."""

# No `from __future__ import annotations`: gradio reads the endpoints' type hints (gr.Request) to inject them,
# so they must be real objects, not strings.
import dataclasses
import functools
import inspect
import typing
from collections.abc import Iterator

import gradio as gr

from ..core.operator_settings import operator_settings
from ..core.records import NEW_MODEL_HELD_OUT, NEW_MODEL_SIZE, NEW_MODEL_TRAINING
from ..core.sampling import SamplingConfig
from ..core.settings import SettingError, describe
from ..serve import service
from ..serve.service import MAX_PROMPT_CHARS, SAMPLING_RANGES, ServedModel
from ..serve.studio import SIZES, Studio, TrainRequest
from ..serve.web import client_key

PUBLIC_UPDATE = ("status", "step", "epoch", "train_loss", "val_loss", "val_loss_int8", "tokens_per_s", "elapsed_s",
                 "done", "model", "error", "place", "wait_s", "parameters", "vocab_size")


def answer(fn, *args, **kwargs):
    """fn's answer; a request outside the limits becomes the visitor's one-line message (gr.Error)."""
    try:
        return fn(*args, **kwargs)
    except SettingError as error:  # the service's refusals (RequestError) and its settings' checks
        raise gr.Error(str(error), print_exception=False) from None


LOGGED_CHARS = 200  # a refusal's line in the server's log is cut to this: visitors choose what it quotes


def refused(what: str, error: Exception) -> None:
    """A visitor's bad input is not a server fault: one short log line, no traceback."""
    line = f"refused {what}: {error}"
    print(line if len(line) <= LOGGED_CHARS else line[:LOGGED_CHARS - 1] + "…", flush=True)


def page_session(request) -> str:
    """The browser session a call came from, for "stop my training"; "" for Gradio's MCP server, which calls
    the app for every MCP client in one session of its own (they are told apart by client_key alone)."""
    headers = getattr(request, "headers", None) or {}
    if hasattr(headers, "get") and headers.get("x-gradio-user") == "mcp":
        return ""
    return getattr(request, "session_hash", None) or ""


def _sampling_endpoint(method):
    """`method(self, model, prompt, **sampling)` as an endpoint with one parameter per SamplingConfig setting
    after model and prompt, in declaration order, each with its declared type and default: gradio documents
    the API from the signature, so a new setting needs no edit here (declare it last: callers pass settings
    by position)."""
    hints = typing.get_type_hints(SamplingConfig)
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter("model", kind, annotation=str),
                  inspect.Parameter("prompt", kind, default="", annotation=str)]
    parameters += [inspect.Parameter(f.name, kind, default=f.default, annotation=hints[f.name])
                   for f in dataclasses.fields(SamplingConfig)]
    returns = inspect.signature(method).return_annotation
    signature = inspect.Signature(parameters, return_annotation=returns)

    def arguments(args, kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        return values.pop("model"), values.pop("prompt"), values

    if inspect.isgeneratorfunction(method):  # gradio streams a generator function's updates
        def endpoint(self, *args, **kwargs):
            model, prompt, sampling = arguments(args, kwargs)
            yield from method(self, model, prompt, **sampling)
    else:
        def endpoint(self, *args, **kwargs):
            model, prompt, sampling = arguments(args, kwargs)
            return method(self, model, prompt, **sampling)
    endpoint.__name__, endpoint.__qualname__ = method.__name__, method.__qualname__
    endpoint.__signature__ = signature.replace(parameters=[inspect.Parameter("self", kind), *parameters])
    endpoint.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": returns}
    return endpoint


def _prompt() -> str:
    """The prompt's declaration and limits, as every endpoint that takes one documents it."""
    return (f"{describe(service.Inputs, 'prompt')}, at most {MAX_PROMPT_CHARS:,} characters and "
            f"{service.MAX_PROMPT_TOKENS:,} tokens")


def _fill(doc: str, values: dict) -> str:
    """A docstring with its {placeholders} replaced (the rest of its braces are left alone)."""
    for name, value in values.items():
        doc = doc.replace("{" + name + "}", str(value))
    return doc


class App:
    """The models everyone sees, the studio that trains and keeps visitors' models, and the named API over both.
    Each demo has its own (build_demo: `demo.lstmgen_app`)."""

    def __init__(self, models: dict[str, ServedModel], studio: Studio):
        self.models = dict(models)
        self.studio = studio

    def reachable(self, model) -> dict[str, ServedModel]:
        """The models this caller may use: everyone's, and the visitor's model whose key they hold. An unknown
        key is answered like any unknown name, and errors list only everyone's models."""
        if not isinstance(model, str):
            return self.models  # answered like any unknown name
        visitor = self.studio.get(model) if model not in self.models else None
        if visitor is not None and visitor.served is not None:
            return {**self.models, model: visitor.served}
        return self.models

    def validated(self, model, prompt, **sampling) -> service.Request:
        return answer(service.validate, self.reachable(model), model, prompt, **sampling)

    def served(self, model) -> ServedModel:
        """The model this caller may use, or a clear gr.Error."""
        return answer(service.pick_model, self.reachable(model), model)

    def train_slots(self) -> int:
        """/train's one concurrency limit (its button and its API share it): the running training, those waiting
        in the studio's line, and a few more so that a refusal (line full, one per visitor) is answered at once
        instead of waiting in Gradio's queue. Generation has its own limit, so trainings never hold its slots."""
        return self.studio.limits.max_waiting + 1 + 4

    def endpoint(self, fn, **options) -> None:
        """gr.api(fn, **options), each parameter described in view_api() and the API panel as in the MCP tool
        list: by its line under "Args:" in fn's docstring, read with gradio's own parser (else gradio shows only
        its generic sentence). The panel's snippets show a served model and its first example prompt for
        `model` and `text`, which have no default, so they run as copied (gradio's placeholder "..." names no
        model, and may hold no token the model knows). An endpoint that is not an MCP tool
        (fn._mcp_type, as train_endpoint sets it) is left out of the docs too, since the panel counts every
        documented endpoint as a tool; callers still reach it by name."""
        from gradio.context import get_blocks_context
        from gradio.utils import get_function_description, get_function_params

        if getattr(fn, "_mcp_type", "tool") != "tool":
            options = {"api_visibility": "undocumented", **options}
        dependency = gr.api(fn, **options)
        _, descriptions, _ = get_function_description(fn)
        names = [name for name, *_ in get_function_params(fn)]  # the inputs, in order (gr.Request left out)
        served = next((served for served in self.models.values() if served.loaded), None)
        examples = {"model": served.name, "text": next(filter(None, served.record.examples), "...")} \
            if served is not None and "model" in names else {}
        for name, component in zip(names, get_blocks_context().fns[dependency["id"]].inputs, strict=True):
            component.label = name  # the panel reads "The input value that is provided in the <label> component."
            component._api_info = {**component._api_info, "additional_description": descriptions[name]}
            if name in examples and component.value is None:  # what gradio's snippets show for this parameter
                component.example_payload = lambda value=examples[name]: value

    # ----------------------------------------------------------------------- the endpoints

    @_sampling_endpoint
    def generate(self, model: str, prompt: str = "", **sampling) -> dict:
        request = self.validated(model, prompt, **sampling)
        *_, result = service.side_by_side(request, stream_every_s=float("inf"))
        return {"prompt": request.prompt, **result.summary()}

    @_sampling_endpoint
    def generate_stream(self, model: str, prompt: str = "", **sampling) -> Iterator[dict]:
        request = self.validated(model, prompt, **sampling)
        for result in service.side_by_side(request):
            yield {"prompt": request.prompt, **result.summary()}

    def next_tokens(self, model: str, prompt: str = "", k: int = 10, temperature: float = 1.0) -> dict:
        """The k most likely next tokens for the prompt under the float32 model and its int8 copy, sorted by
        probability, the KL divergence between the two next-token distributions, and whether their top
        choice is the same: {"float32": [{"token", "text", "probability"}, ...], "int8": [...], "kl_nats",
        "same_top1"}. "token" shows spaces and line breaks as ␣ and ↵; "text" is the piece as it would be written
        after the prompt (cased on a word model); special tokens are masked, as in generation.
        Every argument is checked on the server.

        Args:
            model: the model's name (see /models), or your trained model's key
            prompt: {prompt}
            k: {k}
            temperature: above 0 and at most {temperature_high}; the distribution generation would sample from
        """
        return answer(service.candidates, self.validated(model, prompt, temperature=temperature, seed=0), k)

    def cells(self, model: str, text: str, layer: int = 1, cell: int = 1) -> dict:
        """One LSTM cell's value after each token of a text, in the float32 model and its int8 copy: the cell's
        memory (c, the cell state) and its output (h, the hidden state). Layers and cells are numbered from 1
        (see /cell_features for the cells that track something). Returns {"pieces": the text each token adds,
        "float32": {"c": [...], "h": [...]}, "int8": {...}, "layer", "cell"}. The int8 side is /generate's int8
        graph; the float32 side reads the same float32 weights as /generate's float graph through torch. Every
        argument is checked on the server.

        Args:
            model: the model's name (see /models), or your trained model's key
            text: {text}
            layer: {layer}, up to the model's number of layers
            cell: {cell}, up to the model's hidden size
        """
        return answer(service.cell_trace, self.served(model), text, layer, cell)

    def cell_features(self, model: str) -> dict:
        """The cells that track something in the text: for each text feature (characters since the line began,
        inside quotes, position in the sentence, …) the cells whose value correlates best with it over the
        model's held-out text (Pearson r; cell state c and hidden state h both considered), with a sentence
        each ("cell 266 of layer 3 counts characters since the line began (r = 0.93)"). Returns {"rows":
        [{"feature", "description", "layer", "cell", "state", "r", "sentence"}, ...], "constant": features that
        never vary in that text, "source", "tokens"}. The ranking is measured on the float32 weights (the
        torch model), once per model.

        Args:
            model: the model's name (see /models), or your trained model's key
        """
        return answer(service.best_cells, self.served(model))

    def score(self, model: str, text: str) -> dict:
        """How surprising the float32 model and its int8 copy find a text: each token's probability given the
        tokens before it (temperature 1, nothing masked; the first token has none), the total loss in nats,
        loss per token, bits per character and perplexity, and a sentence comparing them with the model's
        held-out figure. Returns {"float32": {"pieces", "probabilities", "total_nats", "tokens", "loss",
        "bits_per_char", "perplexity", "comparison"}, "int8": {...}, "unknown", "unknown_total"}. Pieces of the
        text outside the model's vocabulary are dropped (char), read as the unknown word (word) or spelled in
        bytes (subword), and listed once each in `unknown` (at most 20; unknown_total counts them all), as
        /generate lists a prompt's. The int8 side is /generate's int8 graph, run over the whole text at once;
        the float32 side reads the same float32 weights as /generate's float graph through torch, batched.

        Args:
            model: the model's name (see /models), or your trained model's key
            text: {text}
        """
        return answer(service.text_scores, self.served(model), text)

    def list_models(self) -> dict:
        """The models everyone can use: for each its source (Hub repo and revision, or bundled), size,
        parameters and validation figures of the float32 and int8 copies, or that it could not be loaded. A
        model you trained (/train) is not listed: its key, from /train's last update, is the only way to it."""
        return {name: served.info() for name, served in self.models.items()}

    def train(self, text: str, tokenizer: str = "char", size: str = NEW_MODEL_SIZE,
              seconds: float = NEW_MODEL_TRAINING.time_budget_s, request: gr.Request = None) -> Iterator[dict]:
        """Train your own model on your text; streams progress, and the last update holds the new model's key.

        Each update: {"status", "step", "epoch", "train_loss", "val_loss", "tokens_per_s", "elapsed_s", "done",
        "model"}; status is "waiting" (then "place" and "wait_s" say where you are in the line), "tokenizing",
        "training", "writing the model folder", then "done" or "failed" (with "error"). The last update's
        "model" is a key of 128 random bits: every endpoint that takes a model accepts it as the model's name,
        for you and whoever you give it to; nobody else can list or use the model. Its "val_loss" and
        "val_loss_int8" are the kept (best) model's loss on the held-out text. One training runs at a time per
        server, first come first served, and one per visitor; your text is never stored, and the model is
        deleted after {keep_minutes} minutes (or sooner when newer models need the room).

        Args:
            text: {text}, the last {held_out} held out for validation ({min_kb} KB to {max_mb} MB)
            tokenizer: {tokenizer}: char, word or subword
            size: {size}: {sizes}
            seconds: {seconds}, {min_seconds} to {max_seconds}
        """
        try:
            for update in self.studio.train(text, tokenizer, size, seconds, client=client_key(request),
                                            session=page_session(request)):
                yield {k: update.get(k) for k in PUBLIC_UPDATE if k in update or k in ("done", "model")}
        except SettingError as error:  # the request's checks and the studio's refusals (TrainingError)
            refused("train", error)
            raise gr.Error(str(error), print_exception=False) from None

    def train_endpoint(self):
        """/train: self.train with this server's limits in its docstring, listed as an MCP tool only where the
        operator asks (LSTMGEN_MCP_TRAIN); REST callers always reach it."""
        @functools.wraps(self.train)
        def train(*args, **kwargs):
            yield from self.train(*args, **kwargs)

        limits = self.studio.limits
        train.__doc__ = _fill(App.train.__doc__, {
            "keep_minutes": f"{limits.keep_s / 60:.0f}", "held_out": f"{NEW_MODEL_HELD_OUT:.0%}",
            "min_kb": f"{limits.min_bytes / 1e3:g}", "max_mb": f"{limits.max_bytes / 1e6:g}",
            "sizes": " or ".join(SIZES), "min_seconds": limits.min_seconds, "max_seconds": limits.max_seconds})
        # gradio lists as MCP tools only the functions whose _mcp_type is absent or "tool"
        train._mcp_type = "tool" if operator_settings().mcp_train else "not listed"
        return train


App.generate.__doc__ = f"""Generate with the float32 model and its int8 copy, sharing their randomness; returns both
texts, their timings, each token's probability under its own model, and the int8 copy's fidelity.

Each side has text, tokens, token_probabilities (the probability its model gave each token it wrote),
first_token_ms, total_ms, tokens_per_s and size_mb. `fidelity` is the int8 model fed the float32 model's
text with the same random numbers: same_choice (share of steps where it makes the same choice),
top1_agreement, mean_kl_nats and steps. Special tokens (<unk>, <eos>, <|endoftext|>) are masked before
the draw and the rest renormalised, unless allow_special is true. Prompt pieces outside the vocabulary
are listed once each in `unknown` (at most 20; unknown_total counts them all). Every argument is checked on
the server with the UI's limits.

Args:
    model: the model's name (see /models), e.g. char, subword or word, or your trained model's key
    prompt: {_prompt()}
""" + "\n".join(f"    {f.name}: {describe(SamplingConfig, f.name)}" for f in dataclasses.fields(SamplingConfig)) + "\n"
App.generate_stream.__doc__ = ("Like /generate, but streams: each update holds both texts so far, their timings and "
                               "token probabilities; the last has done=true and the fidelity.\n\n"
                               + App.generate.__doc__.split("\n\n", 1)[1])


def _document_limits() -> None:
    """Write the declared settings and limits (lstmgen.core.sampling, lstmgen.serve.service.Inputs and
    lstmgen.serve.studio.TrainRequest) into the docs, once: each {name} of an Args line is that input's declaration."""
    text_limits = f"at most {service.MAX_TEXT_CHARS:,} characters and {service.MAX_TEXT_TOKENS:,} tokens"
    values = {"prompt": _prompt(), "k": describe(service.Inputs, "k"),
              "text": f"{describe(service.Inputs, 'text')}, {text_limits}",
              "layer": describe(service.Inputs, "layer"), "cell": describe(service.Inputs, "cell"),
              "temperature_high": SAMPLING_RANGES["temperature"][1],
              "text_chars": f"{service.MAX_TEXT_CHARS:,}", "text_tokens": f"{service.MAX_TEXT_TOKENS:,}"}
    for endpoint in (App.next_tokens, App.cells, App.score):
        endpoint.__doc__ = _fill(endpoint.__doc__, values)
    # /train's inputs are a training request's (its server's limits are filled in by train_endpoint)
    App.train.__doc__ = _fill(App.train.__doc__, {f.name: describe(TrainRequest, f.name)
                                                  for f in dataclasses.fields(TrainRequest)})


_document_limits()
