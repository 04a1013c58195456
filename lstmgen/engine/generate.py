"""Generation: the prompt through the network once, then one LSTM step per new token, the state carried.

Data flows one way: text -> tokenizer -> model -> sampler (core/sampling.py) -> text."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import torch

from ..core.sampling import RandomNumbers, SamplingConfig
from .streams import TokenStream, coupled_draw, token_stream
from ..core.tokenizers import Tokenizer

MAX_UNKNOWN_SHOWN = 20


def banned_ids(tokenizer: Tokenizer) -> torch.Tensor:
    """The special tokens generation masks by default (<unk>, <eos>, <|endoftext|>)."""
    return torch.tensor(sorted(tokenizer.special_ids.values()), dtype=torch.long)


def generate_ids(model, prompt_ids: list[int], config: SamplingConfig, banned=None,
                 fast_steps: bool = True, with_probability: bool = False) -> Iterator:
    """Yield `config.length` new ids one at a time (with `with_probability`, (id, the model's probability
    of it as the stream's model_probability gives it) pairs, at no cost otherwise). `prompt_ids` must not
    be empty. `fast_steps=False` steps a torch model through its forward with torch's default kernels, for
    comparison."""
    randomness = RandomNumbers(config.seed)
    u = randomness.next()[0]
    stream: TokenStream = token_stream(model, config, banned, fast=fast_steps)  # torch's or ONNX Runtime's
    stream.prompt(prompt_ids, u)
    for i in range(config.length):
        token = stream.draw(u)
        yield (token, stream.model_probability(token)) if with_probability else token
        if i + 1 < config.length:
            u = randomness.next()[0]
            stream.step(token, u)


@dataclass
class CoupledStep:
    """One step of the float model and its int8 copy, sampled with shared randomness."""

    float_token: int
    int8_token: int
    float_probability: float  # each model's own probability of its token (its stream's model_probability)
    int8_probability: float
    float_s: float  # time in each model's own step, distribution and draw
    int8_s: float
    sampled_probability: float  # p(x) of the float token under the distribution it was drawn from
    u_keep: float  # the int8 side kept x when u_keep * p(x) < q(x)


TURN = 32  # tokens each model generates before the other takes its turn


def coupled_ids(float_model, int8_model, prompt_ids: list[int], config: SamplingConfig, banned=None,
                turn: int = TURN) -> Iterator[CoupledStep]:
    """Generate with both models, coupled (streams.coupled_draw): they make the same choice whenever
    their distributions allow it, and each samples exactly from its own. They take turns of `turn`
    tokens, the float model first (keeping each step's distribution for the int8 side's draw), so that
    neither runs with its weights pushed out of the caches by the other's: each side's time is its own
    speed, as when it runs alone (token by token, the int8 side ran ~3x slower on the word model)."""
    clock = time.perf_counter
    randomness = RandomNumbers(config.seed)
    numbers = [randomness.next()]  # step i's (u_float, u_keep, u_residual); the float side needs i + 1's early
    started = clock()
    floats = token_stream(float_model, config, banned)
    floats.prompt(prompt_ids, numbers[0][0])
    prompt_float_s, started = clock() - started, clock()
    int8s = token_stream(int8_model, config, banned)
    int8s.prompt(prompt_ids)
    prompt_int8_s = clock() - started
    for first in range(0, config.length, turn):
        steps = range(first, min(first + turn, config.length))
        drawn = []  # the float side's turn: (x, p(x), p, its own probability of x, seconds)
        for i in steps:
            started = clock()
            x = floats.draw(numbers[i][0])
            # Everything about x is read from this step's distributions, before the step that feeds x in.
            p_x, p, x_probability = floats.probability(x), floats.probabilities(), floats.model_probability(x)
            if i + 1 < config.length:
                numbers.append(randomness.next())
                floats.step(x, numbers[i + 1][0])
            drawn.append((x, p_x, p, x_probability, clock() - started))
        for i, (x, p_x, p, x_probability, float_s) in zip(steps, drawn):  # the int8 side's turn
            started = clock()
            y = coupled_draw(int8s, x, p_x, p, numbers[i][1], numbers[i][2])
            y_probability = int8s.model_probability(y)  # before the step that feeds y in, as on the float side
            if i + 1 < config.length:
                int8s.step(y)
            int8_s = clock() - started
            if i == 0:  # the prompt's pass counts towards the first token
                float_s, int8_s = float_s + prompt_float_s, int8_s + prompt_int8_s
            yield CoupledStep(x, y, x_probability, y_probability, float_s, int8_s, p_x, numbers[i][1])


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    first_token_s: float = 0.0  # time from the call to the first new token
    total_s: float = 0.0
    unknown: list[str] = field(default_factory=list)  # prompt pieces outside the vocabulary

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.total_s if self.total_s > 0 else 0.0


def unique_pieces(pieces: list[str], limit: int = MAX_UNKNOWN_SHOWN) -> list[str]:
    """Each piece once, in order of first appearance, at most `limit` of them."""
    return list(dict.fromkeys(pieces))[:limit]


def primed_detokenizer(tokenizer: Tokenizer, prompt_ids: list[int]):
    """A detokenizer that has seen the prompt, so the first new piece joins it correctly."""
    decode = tokenizer.detokenizer()
    for token in prompt_ids:
        decode(token)
    return decode


def text_pieces(model, tokenizer: Tokenizer, prompt: str, config: SamplingConfig,
           stats: GenerationStats | None = None) -> Iterator[str]:
    """Yield the text that each new token adds (the prompt itself is not repeated).
    Pass a GenerationStats to have it filled in as generation goes."""
    stats = stats if stats is not None else GenerationStats()
    started = time.perf_counter()
    encoding = tokenizer.encode(prompt)
    prompt_ids = encoding.ids or [tokenizer.start_id]
    stats.prompt_tokens, stats.unknown = len(prompt_ids), unique_pieces(encoding.unknown)
    decode = primed_detokenizer(tokenizer, prompt_ids)
    for token in generate_ids(model, prompt_ids, config, banned_ids(tokenizer)):
        stats.new_tokens += 1
        if stats.new_tokens == 1:
            stats.first_token_s = time.perf_counter() - started
        piece = decode(token)
        stats.total_s = time.perf_counter() - started
        if piece:
            yield piece
    tail = decode.flush()
    if tail:
        yield tail


def generate(model, tokenizer: Tokenizer, prompt: str, length: int = 200, **settings) -> str:
    """The prompt followed by `length` generated tokens as text: `generate(model, tokenizer, "ROMEO:", 200, seed=0)`.
    The other settings are SamplingConfig's (temperature, top_k, top_p, min_p, seed, allow_special)."""
    config = SamplingConfig(length=length, **settings)
    return prompt + "".join(text_pieces(model, tokenizer, prompt, config))
