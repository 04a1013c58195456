"""Sampling and Python's share of an int8 generation step: the sampler as it was before the coupling (one
softmax, cumulative sum and binary search per step, a fresh uniform number from torch) against today's
generate_ids, in one run, the two taking turns; median of 9 rounds of 300 steps, one thread.

    python -m bench.sampler
"""

from __future__ import annotations

import statistics
import time

import torch

from lstmgen.generate import generate_ids, make_step
from lstmgen.hub import resolve
from lstmgen.quantize import quantize_dynamic
from lstmgen.records import RECORDS
from lstmgen.sampling import SamplingConfig

STEPS, ROUNDS = 300, 9


def earlier_sample_next(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> int:
    """The earlier sampler (top-k and top-p off), kept here as the reference."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    cdf = probs.cumsum(0)
    u = torch.rand((), generator=generator) * cdf[-1]
    return min(int(torch.searchsorted(cdf, u, right=True)), probs.numel() - 1)


@torch.inference_mode()
def earlier_generate_ids(model, prompt_ids: list[int], n: int):
    """The earlier generation loop: a decorated generator yielding each id, as generate_ids is."""
    generator = torch.Generator().manual_seed(0)
    logits, state = model(torch.tensor([prompt_ids]))
    next_logits, step = logits[0, -1], make_step(model)
    for i in range(n):
        token = earlier_sample_next(next_logits, 1.0, generator)
        yield token
        if i + 1 < n:
            next_logits, state = step(token, state)


@torch.inference_mode()
def network_only(model, prompt_ids: list[int], n: int) -> None:
    logits, state = model(torch.tensor([prompt_ids]))
    step = make_step(model)
    for _ in range(n - 1):
        logits, state = step(prompt_ids[-1], state)


def seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    torch.set_num_threads(1)
    print("| model | int8 step, earlier sampler | outside the network | int8 step, now | outside the network |")
    print("|---|---|---|---|---|")
    for name, record in RECORDS.items():
        loaded = resolve(record, use_hub=False)
        int8 = quantize_dynamic(loaded.model)
        ids = loaded.tokenizer.encode(record.examples[0]).ids[:8] or [loaded.tokenizer.start_id]
        config = SamplingConfig(temperature=1.0, length=STEPS, seed=0)
        runs = {"network": lambda: network_only(int8, ids, STEPS),
                "earlier": lambda: list(earlier_generate_ids(int8, ids, STEPS)),
                "now": lambda: list(generate_ids(int8, ids, config))}
        for fn in runs.values():
            fn()  # warm-up
        times = {key: [] for key in runs}
        for _ in range(ROUNDS):
            for key, fn in runs.items():
                times[key].append(seconds(fn))
        network, earlier, now = (statistics.median(times[k]) / STEPS * 1e6 for k in ("network", "earlier", "now"))
        print(f"| {name} | {earlier:.0f} µs | {1 - network / earlier:.0%} | {now:.0f} µs | {1 - network / now:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
