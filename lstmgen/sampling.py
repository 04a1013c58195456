"""Sampling in two parts: the distribution a step samples from, and the draw.

The float model and its int8 copy share their randomness through a maximal coupling: the float
side draws x from p; the int8 side keeps x with probability min(1, q(x)/p(x)), else draws from the
normalised residual max(q - p, 0). Each side still samples exactly from its own distribution, and
the two make the same choice with probability 1 - TV(p, q), the most any coupling can.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .settings import setting

SEED_MAX = 2**31 - 1


@dataclass
class SamplingConfig:
    """How to sample, and for how long: one declaration for the app, the API and the command line."""

    temperature: float = setting(0.8, "0 is greedy; higher is more adventurous", low=0.0, high=2.0)
    length: int = setting(200, "new tokens to generate", low=1, high=1000)
    top_k: int = setting(0, "sample among the k most likely tokens only (0 = off)", low=0, high=500)
    top_p: float = setting(1.0, "sample among the fewest tokens whose probability reaches p (1 = off)",
                           low=0.01, high=1.0)
    seed: int | None = setting(None, "random seed; empty picks one (and reports it, so a run can be repeated)",
                               low=0, high=SEED_MAX)
    allow_special: bool = setting(False, "let the model emit special tokens such as <unk>; by default they are "
                                         "masked before the draw and the rest renormalised")


def distribution(logits: torch.Tensor, config: SamplingConfig, banned=None) -> torch.Tensor:
    """The probabilities one step samples from, over the last dimension of `logits`: special tokens masked
    (unless allowed), then temperature, top-k and top-p. Temperature 0 gives a one-hot distribution.
    `banned`: the special ids, a list or (faster, made once per run) a LongTensor."""
    if banned is not None and len(banned) and not config.allow_special:
        banned = banned if isinstance(banned, torch.Tensor) else torch.tensor(banned)
        logits = logits.index_fill(-1, banned, float("-inf"))
    if config.temperature == 0:
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
    return probs


def draw(probs: torch.Tensor, u: float) -> int:
    """Inverse-CDF draw from a 1-D distribution with one uniform number u in [0, 1): a cumulative sum
    and a binary search, several times faster than torch.multinomial on large vocabularies."""
    cdf = probs.cumsum(0)
    return min(int(torch.searchsorted(cdf, cdf[-1] * u, right=True)), probs.numel() - 1)


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


def coupled_draw(p: torch.Tensor, q: torch.Tensor, x: int, u_keep: float, u_residual: float) -> int:
    """The int8 side's token, given that the float side drew x from p: keep x with probability
    min(1, q(x)/p(x)), else draw from max(q - p, 0) normalised. Marginally exactly q."""
    if u_keep * float(p[x]) < float(q[x]):
        return x
    residual = (q.double() - p.double()).clamp_min(0.0)
    if float(residual.sum()) <= 0.0:  # p == q up to rounding: nothing left to move
        return x
    return draw(residual, u_residual)


class RandomStream:
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
