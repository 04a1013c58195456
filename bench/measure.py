"""What both benchmarks measure with: timed calls, a median with its spread, the bytes an int8 step reads, and the
rate at which this machine reads them (the floor of a step)."""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch


def timed(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of each of `repeats` calls of fn, after `warmup` calls not counted."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def median_spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def int8_weight_bytes(model) -> int:
    """Bytes an int8 step reads: one byte per LSTM and output-layer weight, the biases in float, one
    embedding row."""
    lstm = sum(p.numel() for n, p in model.lstm.named_parameters() if n.startswith("weight"))
    lstm_bias = sum(p.numel() * 4 for n, p in model.lstm.named_parameters() if n.startswith("bias"))
    decoder = model.decoder.weight.numel() + model.decoder.bias.numel() * 4
    return lstm + lstm_bias + decoder + model.embedding.weight.size(1)


def read_bandwidth(num_bytes: int, repeats: int = 50) -> dict:
    """Bytes per second at which a buffer of `num_bytes` is read, hot in cache as the weights are between
    steps: viewed as int64 and summed (numpy's int64 sum streams; a uint8 sum widens every byte and
    measures the widening, ~2.7 GB/s). The torch int8 -> int32 sum is reported beside it as a check."""
    buffer = np.random.default_rng(0).integers(0, 255, size=-(-num_bytes // 8) * 8, dtype=np.uint8)
    as_int64 = buffer.view(np.int64)
    as_torch = torch.from_numpy(buffer.view(np.int8))

    def best(fn) -> float:
        return buffer.nbytes / min(timed(fn, repeats, warmup=5))

    return {"numpy_int64_sum_gb_s": best(lambda: as_int64.sum()) / 1e9,
            "torch_int8_sum_gb_s": best(lambda: as_torch.sum(dtype=torch.int32)) / 1e9}
