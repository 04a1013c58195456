"""Sampling and generation. The prompt goes through the network once; after that each new
token costs one LSTM step, because the hidden state is carried from step to step."""

from __future__ import annotations

import time
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Iterator

import torch

from .tokenizers import Tokenizer


@dataclass
class SamplingConfig:
    temperature: float = 0.8  # 0: greedy
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    seed: int | None = None


def make_generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def sample_next(logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator) -> int:
    """Draw one id from 1-D logits. Exactly one uniform number is used per draw, so two models
    given the same seed share one random stream and differ only where their distributions do."""
    if config.temperature == 0:
        return int(logits.argmax())
    if config.temperature < 1e-3:
        # 1e-300 is 0 in float32: subtract the maximum and divide in float64, so the distribution
        # tends to greedy, as it should, instead of overflowing.
        logits = (logits.double() - logits.max()) / config.temperature
    else:
        logits = logits.float() / config.temperature
    if 0 < config.top_k < logits.numel():
        kth = torch.topk(logits, config.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if config.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token is always kept).
        drop = sorted_probs.cumsum(0) - sorted_probs >= config.top_p
        probs = probs.scatter(0, order[drop], 0.0)
    # Inverse-CDF draw: a cumulative sum and a binary search, several times faster than
    # torch.multinomial on large vocabularies and exactly the same distribution.
    cdf = probs.cumsum(0)
    u = torch.rand((), generator=generator) * cdf[-1]
    return min(int(torch.searchsorted(cdf, u, right=True)), probs.numel() - 1)


class SingleStep(torch.nn.Module):
    """One decoding step at batch 1: (ids (1, 1), h, c) -> (next-token logits, h, c).

    For a float nn.LSTM it runs torch.lstm_cell layer by layer: at batch 1 torch's default oneDNN
    LSTM kernel is several times slower per step (../shared/STACK.md), and switching oneDNN off
    globally would also slow the int8 path, whose shared tied output layer runs on oneDNN where the
    CPU has VNNI (quantize.int8_matmul_is_fast)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.cells = isinstance(model.lstm, torch.nn.LSTM)

    def forward(self, ids, h, c):
        model = self.model
        if not self.cells:
            logits, (h, c) = model(ids, (h, c))
            return logits[0, -1], h, c
        x = model.embedding(ids[0])
        hs, cs = [], []
        for i in range(model.num_layers):
            weights = [getattr(model.lstm, f"{kind}_l{i}") for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            x, c_i = torch.lstm_cell(x, (h[i], c[i]), *weights)
            hs.append(x)
            cs.append(c_i)
        return model.decoder(x)[0], torch.stack(hs), torch.stack(cs)


_traced_steps: "weakref.WeakKeyDictionary[torch.nn.Module, torch.jit.ScriptModule]" = weakref.WeakKeyDictionary()


def traced_step(model):
    """The single step, traced once per model with TorchScript: the step is a few dozen small ops,
    and running them without the Python interpreter in between makes an int8 step ~25% faster."""
    traced = _traced_steps.get(model)
    if traced is None:
        example = (torch.zeros(1, 1, dtype=torch.long), *model.init_state(1))
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation notices
            traced = torch.jit.trace(SingleStep(model), example, check_trace=False)
        _traced_steps[model] = traced
    return traced


def make_step(model, fast: bool = True):
    """A function (token id, state) -> (next-token logits, state) for one decoding step at batch 1.
    `fast=False` steps through the model's own forward with torch's default kernels instead."""
    inputs = torch.zeros(1, 1, dtype=torch.long)
    if fast and not model.training:
        step = traced_step(model)
    else:

        def step(ids, h, c):
            logits, (h, c) = model(ids, (h, c))
            return logits[0, -1], h, c

    def run(token: int, state):
        inputs[0, 0] = token
        logits, h, c = step(inputs, *state)
        return logits, (h, c)

    return run


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


@torch.inference_mode()
def generate_ids(model, prompt_ids: list[int], max_new_tokens: int, config: SamplingConfig,
                 generator: torch.Generator | None = None, fast_steps: bool = True) -> Iterator[int]:
    """Yield new ids one at a time. `prompt_ids` must not be empty. The prompt goes through the
    network in one call; each new token then costs one step. `fast_steps=False` steps through the
    model's forward with torch's default kernels, for comparison."""
    model.eval()
    generator = generator or make_generator(config.seed)
    logits, state = model(torch.tensor([prompt_ids]))
    next_logits = logits[0, -1]
    step = make_step(model, fast=fast_steps)
    for i in range(max_new_tokens):
        token = sample_next(next_logits, config, generator)
        yield token
        if i + 1 < max_new_tokens:
            next_logits, state = step(token, state)


def primed_decoder(tokenizer: Tokenizer, prompt_ids: list[int]):
    """A stream decoder that has seen the prompt, so the first new piece joins it correctly."""
    decode = tokenizer.stream_decoder()
    for token in prompt_ids:
        decode(token)
    return decode


def stream(model, tokenizer: Tokenizer, prompt: str, max_new_tokens: int, config: SamplingConfig,
           stats: GenerationStats | None = None) -> Iterator[str]:
    """Yield the text that each new token adds (the prompt itself is not repeated).
    Pass a GenerationStats to have it filled in as generation goes."""
    stats = stats if stats is not None else GenerationStats()
    started = time.perf_counter()
    encoding = tokenizer.encode(prompt)
    prompt_ids = encoding.ids or [tokenizer.start_id]
    stats.prompt_tokens, stats.unknown = len(prompt_ids), encoding.unknown
    decode = primed_decoder(tokenizer, prompt_ids)
    for token in generate_ids(model, prompt_ids, max_new_tokens, config):
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


def generate(model, tokenizer: Tokenizer, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8,
             top_k: int = 0, top_p: float = 1.0, seed: int | None = None) -> str:
    """The prompt followed by up to `max_new_tokens` generated tokens, as text."""
    config = SamplingConfig(temperature, top_k, top_p, seed)
    return prompt + "".join(stream(model, tokenizer, prompt, max_new_tokens, config))
