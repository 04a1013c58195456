"""Sampling in two parts: the distribution a step samples from, and the draw.

The float model and its int8 copy share their randomness through a maximal coupling: the float
side draws x from p; the int8 side keeps x with probability min(1, q(x)/p(x)), else draws from the
normalised residual max(q - p, 0). Each side still samples exactly from its own distribution, and
the two make the same choice with probability 1 - TV(p, q), the most any coupling can.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from .settings import setting

SEED_MAX = 2**31 - 1


@dataclass
class SamplingConfig:
    """How to sample, and for how long: one declaration for the app, the API and the command line.

    Beside each setting, what the engine's step graph (lstmgen.engine.graph) serves of it: `graph` True (every
    value) or a test of the value; a filter declares its `off` value instead (the graph serves it off).
    Where a value is not served, the engine's stream samples through `distribution` on the step's logits
    (`fallbacks` names the settings why): a setting that declares neither is never silently ignored by
    the graph, it always falls back."""

    temperature: float = setting(0.8, "0 is greedy; higher is more adventurous", low=0.0, high=2.0,
                                 graph=lambda t: is_greedy(t) or t >= 1e-3)  # below 1e-3, float32 overflows in the graph
    length: int = setting(200, "new tokens to generate", low=1, high=1000, graph=True)  # the loop's, not the step's
    top_k: int = setting(0, "sample among the k most likely tokens only (0 = off)", low=0, high=500, off=0)
    top_p: float = setting(1.0, "sample among the fewest tokens whose probability reaches p (1 = off)",
                           low=0.01, high=1.0, off=1.0)
    seed: int | None = setting(None, "random seed; empty picks one (and reports it, so a run can be repeated)",
                               low=0, high=SEED_MAX, graph=True)
    allow_special: bool = setting(False, "let the model emit special tokens such as <unk>; by default they are "
                                         "masked before the draw and the rest renormalised", graph=True)
    min_p: float = setting(0.0, "sample among the tokens at least min_p times as likely as the most likely one "
                                "(0 = off)", low=0.0, high=1.0, off=0.0)


def is_greedy(temperature: float) -> bool:
    """Temperature 0 means greedy: each step takes the most likely token not masked, with probability 1
    (the one place this rule is stated; the engine, the service and the app ask here)."""
    return temperature == 0


def fallbacks(config: SamplingConfig) -> list[str]:
    """The settings of `config` whose values the step graph does not serve (see SamplingConfig): where
    any, a stream samples through `distribution` on the logits."""
    names = []
    for f in fields(config):
        serves, value = f.metadata.get("graph"), getattr(config, f.name)
        served = serves is True or (callable(serves) and serves(value))
        if not (served or ("off" in f.metadata and value == f.metadata["off"])):
            names.append(f.name)
    return names


def without_filters(config: SamplingConfig) -> SamplingConfig:
    """`config` with every filter off (the settings that declare an `off` value): the whole vocabulary,
    tempered and masked as `config` says."""
    return replace(config, **{f.name: f.metadata["off"] for f in fields(config) if "off" in f.metadata})


def distribution(logits: torch.Tensor, config: SamplingConfig, banned=None) -> torch.Tensor:
    """The probabilities one step samples from, over the last dimension of `logits`: special tokens masked
    (unless allowed), then temperature, top-k, top-p and min-p. Temperature 0 gives a one-hot distribution.
    `banned`: the special ids, a list or (faster, made once per run) a LongTensor."""
    if banned is not None and len(banned) and not config.allow_special:
        banned = banned if isinstance(banned, torch.Tensor) else torch.tensor(banned)
        logits = logits.index_fill(-1, banned, float("-inf"))
    if is_greedy(config.temperature):
        return torch.zeros_like(logits, dtype=torch.float32).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    if config.temperature < 1e-3:
        # 1e-300 is 0 in float32: subtract the maximum and divide in float64, so the distribution
        # tends to greedy, as it should, instead of overflowing.
        logits = (logits.double() - logits.amax(-1, keepdim=True)) / config.temperature
    else:
        logits = (logits if logits.dtype == torch.float64 else logits.float()) / config.temperature
    if 0 < config.top_k < logits.size(-1):
        kth = torch.topk(logits, config.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if config.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token is always kept).
        drop = sorted_probs.cumsum(-1) - sorted_probs >= config.top_p
        probs = probs.scatter(-1, order, sorted_probs.masked_fill(drop, 0.0))
        probs = probs / probs.sum(-1, keepdim=True)
    if config.min_p > 0.0:  # keep the tokens at least min_p times as likely as the top one (always kept)
        probs = probs.masked_fill(probs < config.min_p * probs.amax(-1, keepdim=True), 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def draw(probs: torch.Tensor, u: float) -> int:
    """Inverse-CDF draw from a 1-D distribution with one uniform number u in [0, 1): a cumulative sum
    and a binary search, several times faster than torch.multinomial on large vocabularies."""
    cdf = probs.cumsum(0)
    index = int(torch.searchsorted(cdf, cdf[-1] * u, right=True))
    if index >= probs.numel() or probs[index] <= 0:  # u rounded up to the total: the last token of weight
        index = int(torch.nonzero(probs > 0)[-1])
    return index


def inverse_cdf(weights: np.ndarray, u: float, block: int = 128) -> int | None:
    """The index at u (in [0, 1)) of the running sum of `weights` (float32, not normalised), in two levels
    as numpy does it fastest: the block of `block` weights by the blocks' running sums, then the index
    inside it. Never an index of weight 0; None where all weights are 0."""
    whole = len(weights) - len(weights) % block
    sums = weights[:whole].reshape(-1, block) @ np.ones(block, weights.dtype)  # BLAS: 3x numpy's row sums
    if whole < len(weights):
        sums = np.append(sums, weights[whole:].sum())
    ends = np.cumsum(sums, dtype=np.float64)
    if not ends[-1] > 0.0:
        return None
    target = u * ends[-1]
    b = int(ends.searchsorted(target, "right"))
    if b >= len(ends):  # rounding at the very end: the last block with weight
        b = int(np.flatnonzero(sums)[-1])
    row = weights[b * block : (b + 1) * block]
    local = np.cumsum(row, dtype=np.float64) + (ends[b - 1] if b else 0.0)
    index = int(local.searchsorted(target, "right"))
    if index >= len(row) or row[index] <= 0:  # rounding at the block's end: its last index of positive weight
        index = int(np.flatnonzero(row)[-1])
    return b * block + index


class RandomNumbers:
    """Three uniform numbers per step from one seeded generator: the float draw, the int8 side's keep
    test, and its residual draw. A fixed seed reproduces a run; a single model uses the first number
    only, so its text equals the float side of a side-by-side run with the same seed. The numbers are
    made 256 steps at a time (one call instead of one per step)."""

    BLOCK = 256

    def __init__(self, seed: int | None):
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self.numbers: list[float] = []

    def next(self) -> list[float]:
        if not self.numbers:
            self.numbers = torch.rand(3 * self.BLOCK, generator=self.generator, dtype=torch.float64).tolist()[::-1]
        return [self.numbers.pop(), self.numbers.pop(), self.numbers.pop()]
