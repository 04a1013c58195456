"""What the app serves, without the UI: loaded models, checked requests, float32 beside int8, the look inside.

Generation streams both texts with their own timings; the look inside reads the same two copies."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator


from ..engine import compare
from ..engine.generate import banned_ids, coupled_ids, primed_detokenizer, unique_pieces
from ..hub import LoadedModel, resolve
from ..engine.ort import OrtModel
from ..core.records import RECORDS, ModelRecord, find, record_from_metrics
from ..core.sampling import SEED_MAX, SamplingConfig, is_greedy
from ..core.settings import SettingError, checked, ranges, setting, shown

# The UI's sliders use these bounds; the server enforces them on every caller.
SAMPLING_RANGES = ranges(SamplingConfig)
MAX_PROMPT_TOKENS = 2000  # a 2,000-character prompt of emoji is 8,000 subword byte tokens
MAX_TEXT_TOKENS = 10_000
STREAM_EVERY_S = 0.05  # how often a streaming caller gets an update


@dataclass(frozen=True)
class Inputs:
    """The service's inputs beside the sampling settings, declared like them (lstmgen.core.settings) and checked
    the same way (`checked(Inputs, k=k)`); a model's own limits (its layers, its cells) are given as bounds."""

    prompt: str = setting("", "the text to continue", high=2000)
    # a text to score or read cells along: a prompt and its 1,000 generated tokens fit
    text: str = setting("", "a text to score or to read the cells along", high=10_000, label="the text")
    k: int = setting(10, "how many likely next tokens to list", low=1, high=50)
    layer: int = setting(1, "the layer, numbered from 1", low=1)
    cell: int = setting(1, "the cell, numbered from 1", low=1)


MAX_PROMPT_CHARS = ranges(Inputs)["prompt"][1]
MAX_TEXT_CHARS = ranges(Inputs)["text"][1]


class RequestError(SettingError):
    """A request the service refuses beyond its declared limits (a model that is not there, a prompt of too
    many tokens); the message is meant for the user."""


@dataclass
class ServedModel:
    record: ModelRecord
    loaded: LoadedModel | None = None
    float32: OrtModel | None = None  # the two copies that generate, step graphs on ONNX Runtime
    int8: OrtModel | None = None
    float_bytes: int = 0
    int8_bytes: int = 0
    error: str | None = None  # why it could not be loaded
    best_cells_found: dict | None = field(default=None, repr=False)  # best_cells' answer, found once
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.record.name

    def info(self) -> dict:
        """What a visitor may know of the model: no server paths, no exception text (the operator's console
        has those: app.py prints each model's source and failure at start-up)."""
        base = {"name": self.name, "preset": self.record.long_name, "title": self.record.title}
        if self.loaded is None:
            return {**base, "loaded": False, "error": "this model could not be loaded on the server"}
        final, loaded = self.loaded.metrics.get("final", {}), self.loaded
        return {
            **base, "loaded": True, "source": public_source(loaded.source), "hub": where_from(loaded),
            # The Hub repo and revision asked for (None: its main branch), and the commit served (None: not the Hub's).
            "repo": loaded.repo, "revision": loaded.revision, "commit": loaded.commit,
            "parameters": self.loaded.model.num_parameters(), "vocab_size": self.loaded.tokenizer.vocab_size,
            "tokenizer": self.loaded.tokenizer.kind,
            "size_mb": {"float32": round(self.float_bytes / 1e6, 2), "int8": round(self.int8_bytes / 1e6, 2)},
            "figures": {key: {k: value[k] for k in ("loss", "perplexity", "bits_per_char") if k in value}
                        for key, value in final.items() if key != "size_bytes"},
        }


def where_from(loaded: LoadedModel) -> str | None:
    """Where the weights came from, in a sentence for the Model panel (None: a folder given at start)."""
    revision = f" (revision {loaded.revision})" if loaded.revision else ""
    if loaded.origin == "cache":
        return (f"Read from this server's copy of the Hugging Face Hub repo {loaded.repo}{revision}, saved on an "
                "earlier start: the same files, without asking the Hub.")
    if loaded.origin == "hub":
        return f"Downloaded from the Hugging Face Hub repo {loaded.repo}{revision} when the app started."
    if loaded.origin == "bundled":
        if loaded.fallback_reason:
            return "Using the weights bundled with the app: the Hugging Face Hub could not be reached."
        return "Using the weights bundled with the app (the Hugging Face Hub was not asked)."
    return None


def public_source(source: str) -> str:
    """Where the weights came from, without a path of this server: "local folder /srv/x/model" -> "a folder (model)"."""
    if source.startswith("local folder "):
        return f"a folder on the server ({Path(source.removeprefix('local folder ')).name})"
    return source


def serve(record: ModelRecord, loaded: LoadedModel) -> ServedModel:
    """A loaded model with its two copies, float32 and int8, each a step graph on ONNX Runtime built now
    from the float weights (lstmgen.engine.ort): they generate. The look inside reads the float32 side from
    the torch model, batched (the same float32 numbers to rounding, in one pass instead of a step per token)."""
    int8 = OrtModel(loaded.model, "int8", probabilities=True)
    # Each side's size is the bytes of its weights: the float model's parameters (a tied matrix once), and
    # the int8 graph's weights with their scales. No file headers on either side.
    float_bytes = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    return ServedModel(record, loaded, OrtModel(loaded.model, "float", probabilities=True), int8,
                       float_bytes, int8.size_bytes())


def load_one(record: ModelRecord, hub_timeout_s: float | None = None, use_hub: bool = True) -> ServedModel:
    """Resolve a record's weights (its folder, else the Hub, else the bundled folder); failures are recorded,
    not raised: one model failing must not take the app down."""
    try:
        return serve(record, resolve(record, timeout_s=hub_timeout_s, use_hub=use_hub))
    except Exception as error:
        return ServedModel(record, error=f"{type(error).__name__}: {error}")


def load_source(source: str, hub_timeout_s: float | None = None, use_hub: bool = True) -> ServedModel:
    """A model given as a folder or Hub repo id (`--model`): its record comes from its metrics.json."""
    fallback = Path(source.rstrip("/")).name.split("@")[0]  # "owner/name@revision" -> "name"
    try:
        loaded = resolve(source, timeout_s=hub_timeout_s, use_hub=use_hub)
    except Exception as error:
        return ServedModel(record_from_metrics({}, fallback, "char"), error=f"{type(error).__name__}: {error}")
    preset = find(loaded.preset or "") if not loaded.metrics.get("record") else None
    record = preset or record_from_metrics(loaded.metrics, fallback, loaded.tokenizer.kind)
    return serve(replace(record, folder=loaded.folder), loaded)


def load_all(records: list[ModelRecord] | None = None, sources: list[str] = (), hub_timeout_s: float | None = None,
             use_hub: bool = True) -> dict[str, ServedModel]:
    """Load records and extra sources in parallel threads (so the Hub's waits overlap), named uniquely
    in the order given."""
    records = list(RECORDS.values()) if records is None else list(records)
    jobs = [(load_one, r) for r in records] + [(load_source, s) for s in sources]
    results: list[ServedModel | None] = [None] * len(jobs)

    def work(i, fn, arg):
        results[i] = fn(arg, hub_timeout_s, use_hub)

    threads = [threading.Thread(target=work, args=(i, fn, arg), daemon=True) for i, (fn, arg) in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    served: dict[str, ServedModel] = {}
    for result in results:
        name, n = result.name, 2
        while name in served:
            name, n = f"{result.name}-{n}", n + 1
        result.record = replace(result.record, name=name)
        served[name] = result
    return served


# --------------------------------------------------------------------------- validation


@dataclass
class Request:
    served: ServedModel
    prompt: str
    prompt_ids: list[int]
    unknown: list[str]  # prompt pieces outside the vocabulary, each once, at most 20
    unknown_total: int
    sampling: SamplingConfig


def pick_model(models: dict[str, ServedModel], model) -> ServedModel:
    """The served model called `model` (short name, or the preset's long name)."""
    served = None
    if isinstance(model, str):
        served = models.get(model) or next((s for s in models.values() if s.record.long_name == model), None)
    if served is None:
        raise RequestError(f"unknown model {shown(model)}: choose one of {', '.join(models)}")
    if served.loaded is None:
        raise RequestError(f"the {served.name} model could not be loaded on the server: choose another")
    return served


def validate(models: dict[str, ServedModel], model, prompt, **sampling) -> Request:
    """Check every field against the documented limits; raise RequestError with a clear message.
    `sampling` holds SamplingConfig's settings; missing ones take their defaults."""
    served = pick_model(models, model)
    prompt = checked(Inputs, prompt="" if prompt is None else prompt).prompt
    if sampling.get("seed") is None or (isinstance(sampling.get("seed"), str) and not sampling["seed"].strip()):
        sampling["seed"] = random.SystemRandom().randrange(SEED_MAX)  # returned, so the run can be repeated
    config = checked(SamplingConfig, **sampling)
    tokenizer = served.loaded.tokenizer
    encoding = tokenizer.encode(prompt)
    if len(encoding.ids) > MAX_PROMPT_TOKENS:
        raise RequestError(f"prompt is {len(encoding.ids):,} tokens for the {served.name} model; the limit is "
                           f"{MAX_PROMPT_TOKENS:,} (shorten it)")
    return Request(served, prompt, encoding.ids or [tokenizer.start_id], unique_pieces(encoding.unknown),
                   len(encoding.unknown), config)


# --------------------------------------------------------------------------- generation


@dataclass
class Side:
    """One model's half of a side-by-side run."""

    label: str
    text: str = ""
    ids: list[int] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)  # the model's probability of each token it wrote
    pieces: list[str] = field(default_factory=list)  # the text each token added
    first_token_s: float = 0.0
    total_s: float = 0.0  # time spent in this model's own steps (the two models take turns)
    size_bytes: int = 0

    def summary(self) -> dict:
        return {
            "text": self.text, "tokens": len(self.ids),
            # 6 significant digits: a token written at high temperature can have a probability below 1e-6
            # and must not show as 0.
            "token_probabilities": [float(f"{p:.6g}") for p in self.probabilities],
            "first_token_ms": round(self.first_token_s * 1000, 2), "total_ms": round(self.total_s * 1000, 2),
            "tokens_per_s": round(len(self.ids) / self.total_s, 1) if self.total_s > 0 else 0.0,
            "size_mb": round(self.size_bytes / 1e6, 2),
        }


@dataclass
class SideBySide:
    model: str
    seed: int
    float: Side
    int8: Side
    unknown: list[str]
    unknown_total: int
    fidelity: dict | None = None
    done: bool = False

    def parted_at(self) -> int | None:
        """The index (0-based, in generated tokens) of the first token where the two texts differ; None
        while they are the same over the tokens both have written."""
        return next((i for i, (a, b) in enumerate(zip(self.float.ids, self.int8.ids)) if a != b), None)

    def summary(self) -> dict:
        return {"model": self.model, "seed": self.seed, "float32": self.float.summary(), "int8": self.int8.summary(),
                "parted_at": self.parted_at(), "fidelity": self.fidelity, "unknown": self.unknown,
                "unknown_total": self.unknown_total, "done": self.done}


def side_by_side(request: Request, stream_every_s: float | None = None) -> Iterator[SideBySide]:
    """Generate with the float model and its int8 copy in turns, one token each, with shared randomness
    (generate.coupled_ids), then measure the int8 copy's fidelity along the float model's text. A partial
    result is yielded every `stream_every_s` (default STREAM_EVERY_S), the finished one last."""
    stream_every_s = STREAM_EVERY_S if stream_every_s is None else stream_every_s
    served, config = request.served, request.sampling
    tokenizer = served.loaded.tokenizer
    result = SideBySide(served.name, config.seed, Side("float32", size_bytes=served.float_bytes),
                        Side("int8", size_bytes=served.int8_bytes), request.unknown, request.unknown_total)
    sides = (result.float, result.int8)
    detokenizers = [primed_detokenizer(tokenizer, request.prompt_ids) for _ in sides]
    banned = banned_ids(tokenizer)
    sampled, u_keeps = [], []
    last_yield = time.perf_counter()
    for step in coupled_ids(served.float32, served.int8, request.prompt_ids, config, banned):
        for side, detokenizer, token, probability, seconds in zip(
                sides, detokenizers, (step.float_token, step.int8_token), (step.float_probability, step.int8_probability),
                (step.float_s, step.int8_s)):
            piece = detokenizer(token)
            side.text += piece
            side.pieces.append(piece)
            side.ids.append(token)
            side.probabilities.append(probability)
            side.total_s += seconds
            if len(side.ids) == 1:
                side.first_token_s = side.total_s
        sampled.append(step.sampled_probability)
        u_keeps.append(step.u_keep)
        if time.perf_counter() - last_yield >= stream_every_s:
            last_yield = time.perf_counter()
            yield result
    for side, detokenizer in zip(sides, detokenizers):
        tail = detokenizer.flush()
        side.text += tail
        if side.pieces:
            side.pieces[-1] += tail
    # The float32 side's logits along its own text in one batched torch pass (see serve()).
    result.fidelity = compare.fidelity(served.loaded.model, served.int8, request.prompt_ids, result.float.ids, sampled,
                                       u_keeps, config, banned)
    result.done = True
    yield result


def candidates(request: Request, k, after: list[int] = ()) -> dict:
    """The top-k next tokens of both copies for the request's prompt followed by the tokens `after` (a
    generated text's ids: what each copy expects once that text is written), compare.top_candidates."""
    k = checked(Inputs, k=k).k
    if is_greedy(request.sampling.temperature):
        raise RequestError("temperature must be above 0 for next-token probabilities (0 is greedy: one token, "
                           "probability 1)")
    served = request.served
    return compare.top_candidates(served.loaded.model, served.int8, served.loaded.tokenizer,
                                  request.prompt_ids + list(after), k, request.sampling,
                                  banned_ids(served.loaded.tokenizer))


# --------------------------------------------------------------------------- inside the LSTM


def checked_text(served: ServedModel, text) -> list[int]:
    """A text to score or read cells along, within the limits; its token ids."""
    if not isinstance(text, str) or not text.strip():
        raise RequestError("give some text")
    text = checked(Inputs, text=text).text
    ids = served.loaded.tokenizer.encode(text).ids
    if len(ids) > MAX_TEXT_TOKENS:
        raise RequestError(f"the text is {len(ids):,} tokens for the {served.name} model; the limit is "
                           f"{MAX_TEXT_TOKENS:,}")
    if not ids:
        raise RequestError("this model's vocabulary holds nothing of the text")
    return ids


def best_cells(served: ServedModel) -> dict:
    """The model's best cells per text feature (lstmgen.inside): its cells.json, else measured once on the
    torch model (the float32 copy's weights) and kept on the served model."""
    from ..inside import load_cells, sentence

    with served.lock:
        if served.best_cells_found is None:
            found = load_cells(served.loaded.folder, served.loaded.model, served.loaded.tokenizer, served.record)
            served.best_cells_found = {**found, "rows": [{**row, "sentence": row.get("sentence") or sentence(row)}
                                                         for row in found["rows"]]}
        found = served.best_cells_found
    return {"model": served.name, "source": found.get("source"), "tokens": found.get("tokens"),
            "rows": found["rows"], "constant": found.get("constant", [])}


def cell_trace(served: ServedModel, text, layer, cell) -> dict:
    """One cell's memory (c) and output (h) after each token of `text`, in the float32 and int8 copies.
    Layers and cells are numbered from 1."""
    from ..inside import cell_states, token_texts

    model = served.loaded.model
    where = checked(Inputs, bounds={"layer": (1, model.num_layers), "cell": (1, model.hidden_size)},
                    layer=layer, cell=cell)
    layer, cell = where.layer, where.cell
    ids = checked_text(served, text)
    out = {"model": served.name, "layer": layer, "cell": cell, "pieces": token_texts(served.loaded.tokenizer, ids)}
    for side, engine in (("float32", model), ("int8", served.int8)):
        values = cell_states(engine, ids, layers=layer, cells=[cell - 1])  # the layers below it, one cell kept
        out[side] = {which: [round(float(v), 6) for v in values[which][layer - 1, :, 0]] for which in ("c", "h")}
    return out


def text_scores(served: ServedModel, text) -> dict:
    """How surprising each copy finds `text`, token by token, with the totals (lstmgen.core.evaluate.score_text),
    and the pieces of the text the vocabulary could not hold, as /generate lists them (`unknown`, `unknown_total`)."""
    from ..core.evaluate import score_text

    checked_text(served, text)
    out = {"model": served.name}
    for side, engine in (("float32", served.loaded.model), ("int8", served.int8)):
        result = score_text(engine, served.loaded.tokenizer, text, served.loaded.metrics)
        out[side] = {"pieces": result.texts, "probabilities": [None if p is None else round(p, 6)
                                                                for p in result.probabilities],
                     "total_nats": round(result.total_nats, 6), "tokens": result.tokens, "loss": round(result.loss, 6),
                     "bits_per_char": round(result.bits_per_char, 6), "perplexity": round(result.perplexity, 4),
                     "comparison": result.comparison}
    # Each piece once (at most 20) and how many there were, as /generate lists a prompt's.
    out["unknown"], out["unknown_total"] = unique_pieces(result.unknown), len(result.unknown)
    return out
