"""Inside the LSTM: the best cell for each text feature of each shipped model, and what the cell explorer costs.

    python -m bench.cells

Prints three tables and writes bench/cells.md. The explorer computes nothing while it is closed: generation
runs exactly as without it. Opening it reads the cell along the text just written, one pass of each model over
that text; the second table sets that pass beside the generation it follows (300 tokens, T 0.8, one thread,
median of 5). The third measures how far the int8 copy's states and correlations lie from the torch float
model's (lstmgen.inside's INT8_STATE_TOLERANCE and INT8_R_TOLERANCE) on the first INT8_TOKENS held-out
tokens, and what measuring the best cells at start costs where cells.json is missing (STARTUP_TOKENS).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from lstmgen import inside
from lstmgen.serve import service

PROJECT = Path(__file__).resolve().parent.parent
INT8_TOKENS = 1000


def int8_gaps(served) -> str:
    """One row: the int8 copy against the torch float model on the first INT8_TOKENS held-out tokens, and the
    seconds load_cells takes to measure on STARTUP_TOKENS tokens."""
    model, tokenizer = served.loaded.model, served.loaded.tokenizer
    ids = inside.held_out_ids(served.record, tokenizer, max_tokens=INT8_TOKENS, check=False)
    if not ids:
        return f"| {served.name} | – | – | – | – | the held-out text is not at hand |"
    float_states, int8_states = inside.cell_states(model, ids), inside.cell_states(served.int8, ids)
    gap = {k: float((np.abs(int8_states[k] - float_states[k]) / (1 + np.abs(float_states[k]))).max()) for k in "ch"}
    values = inside.token_features(tokenizer, ids)
    r_float, r_int8 = inside.correlations(values, float_states), inside.correlations(values, int8_states)
    r_gap = max((float(np.abs(r_int8[f] - r_float[f]).max()) for f in r_float), default=0.0)
    began = time.perf_counter()
    inside.load_cells(None, model, tokenizer, served.record)
    startup_s = time.perf_counter() - began
    return (f"| {served.name} | {gap['c']:.3f} | {gap['h']:.3f} | {r_gap:.4f} | {startup_s:.1f} | "
            f"{len(ids)} held-out tokens |")


def main() -> None:
    torch.set_num_threads(1)  # as the app runs each request
    served = service.load_all(use_hub=False)
    best = ["| model | feature | layer | cell | c or h | r |", "|---|---|---|---|---|---|"]
    cost = ["| model | generate 300 tokens, both models (ms) | explorer: one cell along that text, both models (ms) "
            "| explorer ÷ generation |", "|---|---|---|---|"]
    gaps = ["| model | largest int8 gap in c, relative to 1 + abs(c) | the same in h | largest r gap "
            f"| measuring at start, {inside.STARTUP_TOKENS} tokens (s) | text |", "|---|---|---|---|---|---|"]
    for name, model in served.items():
        found = service.best_cells(model)
        seen = set()
        for row in found["rows"]:
            if row["feature"] not in seen:
                seen.add(row["feature"])
                best.append(f"| {name} | {row['description']} | {row['layer']} | {row['cell']} | {row['state']} | "
                            f"{row['r']:+.3f} |")
        for feature in found["constant"]:
            best.append(f"| {name} | {feature} | – | – | – | never varies in the held-out text |")
        generate_s, explore_s = [], []
        top = found["rows"][0]
        for seed in range(6):
            request = service.validate(served, name, model.record.examples[0], length=300, seed=seed, temperature=0.8)
            began = time.perf_counter()
            *_, result = service.side_by_side(request, stream_every_s=float("inf"))
            generate_s.append(time.perf_counter() - began)
            began = time.perf_counter()
            service.cell_trace(model, request.prompt + result.float.text, top["layer"], top["cell"])
            explore_s.append(time.perf_counter() - began)
        g, e = statistics.median(generate_s[1:]), statistics.median(explore_s[1:])
        cost.append(f"| {name} | {g * 1000:.0f} | {e * 1000:.0f} | {e / g:.2f} |")
        gaps.append(int8_gaps(model))
    text = "\n".join(["Best cell per feature (`python -m lstmgen cells --model NAME` prints more):", "", *best, "",
                      f"The explorer's cost ({os.cpu_count()} cores, one thread; closed, it costs nothing):", "",
                      *cost, "",
                      f"The int8 copy's cells against the float model's (tolerances: states "
                      f"{inside.INT8_STATE_TOLERANCE}, r {inside.INT8_R_TOLERANCE}), and measuring the best cells "
                      "where cells.json is missing (one thread):", "", *gaps, ""])
    print(text)
    (PROJECT / "bench" / "cells.md").write_text(text)


if __name__ == "__main__":
    main()
