"""What the app serves, without the UI: the loaded models, request validation, and float-beside-int8
generation that streams both texts with their own timings."""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import torch

from .generate import SamplingConfig, generate_ids, make_generator, primed_decoder, traced_step
from .hub import DEFAULT_HUB_TIMEOUT_S, LoadedModel, resolve
from .presets import PRESETS
from .quantize import quantize_dynamic, size_bytes

# The UI's sliders use these bounds; the server enforces them on every caller.
LIMITS = {
    "temperature": (0.0, 2.0),
    "length": (1, 1000),
    "top_k": (0, 500),
    "top_p": (0.01, 1.0),
    "seed": (0, 2**31 - 1),
}
MAX_PROMPT_CHARS = 2000
MODEL_NAMES = {"char": "char-shakespeare", "subword": "subword-shakespeare", "word": "word-harrypotter"}
STREAM_EVERY_S = 0.05  # how often a streaming caller gets an update


class RequestError(ValueError):
    """A request outside the documented limits; the message is meant for the user."""


@dataclass
class ServedModel:
    name: str  # short name: char, subword, word
    preset: str
    loaded: LoadedModel | None = None
    int8: torch.nn.Module | None = None
    float_bytes: int = 0
    int8_bytes: int = 0
    error: str | None = None  # why it could not be loaded

    def info(self) -> dict:
        if self.loaded is None:
            return {"name": self.name, "preset": self.preset, "loaded": False, "error": self.error}
        metrics = self.loaded.metrics
        final = metrics.get("final", {})
        return {
            "name": self.name, "preset": self.preset, "loaded": True, "source": self.loaded.source,
            "fallback_reason": self.loaded.fallback_reason,
            "parameters": self.loaded.model.num_parameters(), "vocab_size": self.loaded.tokenizer.vocab_size,
            "tokenizer": self.loaded.tokenizer.kind,
            "size_mb": {"float32": round(self.float_bytes / 1e6, 2), "int8": round(self.int8_bytes / 1e6, 2)},
            "figures": {key: {k: value[k] for k in ("loss", "perplexity", "bits_per_char") if k in value}
                        for key, value in final.items() if key != "size_bytes"},
        }


def load_one(name: str, hub_timeout_s: float = DEFAULT_HUB_TIMEOUT_S, use_hub: bool = True,
             source: str | None = None) -> ServedModel:
    """Resolve a preset (or `source`: a folder or repo id) and make its int8 copy; failures are recorded, not raised."""
    served = ServedModel(name, MODEL_NAMES[name])
    try:
        loaded = resolve(source or served.preset, timeout_s=hub_timeout_s, use_hub=use_hub)
        served.loaded, served.int8 = loaded, quantize_dynamic(loaded.model)
        for model in (served.loaded.model, served.int8):
            traced_step(model)  # trace the decoding step now, not in the first user's request
        served.float_bytes, served.int8_bytes = size_bytes(loaded.model), size_bytes(served.int8)
    except Exception as error:  # one model failing must not take the app down
        served.error = f"{type(error).__name__}: {error}"
    return served


def load_all(hub_timeout_s: float = DEFAULT_HUB_TIMEOUT_S, use_hub: bool = True,
             sources: dict[str, str] | None = None) -> dict[str, ServedModel]:
    """Load the three models in parallel threads, so the Hub's waits overlap."""
    sources = sources or {}
    results: dict[str, ServedModel] = {}

    def work(name):
        results[name] = load_one(name, hub_timeout_s, use_hub, sources.get(name))

    threads = [threading.Thread(target=work, args=(name,), daemon=True) for name in MODEL_NAMES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {name: results[name] for name in MODEL_NAMES}


# --------------------------------------------------------------------------- validation


def _number(name: str, value, integer: bool):
    if isinstance(value, bool) or value is None:
        raise RequestError(f"{name} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise RequestError(f"{name} must be a finite number")
    if integer and number != int(number):
        raise RequestError(f"{name} must be a whole number")
    low, high = LIMITS[name]
    if not low <= number <= high:
        raise RequestError(f"{name} must be between {low} and {high}, got {value}")
    return int(number) if integer else number


@dataclass
class Request:
    model: str
    prompt: str
    temperature: float
    length: int
    top_k: int
    top_p: float
    seed: int


def validate(models: dict[str, ServedModel], model, prompt, temperature, length, top_k=0, top_p=1.0,
             seed=None) -> Request:
    """Check every field against the documented limits; raise RequestError with a clear message."""
    aliases = {**{short: short for short in MODEL_NAMES}, **{preset: short for short, preset in MODEL_NAMES.items()}}
    name = aliases.get(model) if isinstance(model, str) else None
    if name is None:
        raise RequestError(f"unknown model {model!r}: choose one of {', '.join(MODEL_NAMES)}")
    served = models.get(name)
    if served is None or served.loaded is None:
        raise RequestError(f"the {name} model is not available: {served.error if served else 'not loaded'}")
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        raise RequestError("prompt must be text")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RequestError(f"prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    if seed is None or seed == "":
        seed = random.SystemRandom().randrange(LIMITS["seed"][1])  # shown to the user, so the run can be repeated
    return Request(name, prompt, _number("temperature", temperature, False), _number("length", length, True),
                   _number("top_k", top_k, True), _number("top_p", top_p, False), _number("seed", seed, True))


# --------------------------------------------------------------------------- generation


@dataclass
class Side:
    """One model's half of a side-by-side run."""

    label: str
    text: str = ""
    ids: list[int] = field(default_factory=list)
    first_token_s: float = 0.0
    total_s: float = 0.0  # time spent in this model's own steps (the two models take turns)
    size_bytes: int = 0

    def summary(self) -> dict:
        return {
            "text": self.text, "tokens": len(self.ids),
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
    done: bool = False

    @property
    def agreeing_tokens(self) -> int:
        """How many of the first generated tokens the two models share."""
        n = 0
        for a, b in zip(self.float.ids, self.int8.ids):
            if a != b:
                break
            n += 1
        return n

    def summary(self) -> dict:
        return {"model": self.model, "seed": self.seed, "float32": self.float.summary(), "int8": self.int8.summary(),
                "agreeing_tokens": self.agreeing_tokens, "unknown": self.unknown, "done": self.done}


def side_by_side(served: ServedModel, request: Request, stream_every_s: float = STREAM_EVERY_S) -> Iterator[SideBySide]:
    """Generate with the float model and its int8 copy in turns, one token each, from the same seed.

    Each model has its own random generator seeded identically, and each draw uses exactly one
    uniform number, so the two texts differ only where quantization changed a choice."""
    tokenizer = served.loaded.tokenizer
    encoding = tokenizer.encode(request.prompt)
    prompt_ids = encoding.ids or [tokenizer.start_id]
    config = SamplingConfig(request.temperature, request.top_k, request.top_p, request.seed)
    result = SideBySide(request.model, request.seed, Side("float32", size_bytes=served.float_bytes),
                        Side("int8", size_bytes=served.int8_bytes), encoding.unknown)
    sides = [result.float, result.int8]
    runs = [generate_ids(model, prompt_ids, request.length, config, make_generator(request.seed))
            for model in (served.loaded.model, served.int8)]
    decoders = [primed_decoder(tokenizer, prompt_ids) for _ in sides]
    last_yield = time.perf_counter()
    for _ in range(request.length):
        for side, run, decoder in zip(sides, runs, decoders):
            started = time.perf_counter()
            token = next(run)
            side.text += decoder(token)
            side.total_s += time.perf_counter() - started
            if not side.ids:
                side.first_token_s = side.total_s
            side.ids.append(token)
        if time.perf_counter() - last_yield >= stream_every_s:
            last_yield = time.perf_counter()
            yield result
    for side, decoder in zip(sides, decoders):
        side.text += decoder.flush()
    result.done = True
    yield result
