"""Inside the LSTM: the best cell for each text feature of each shipped model, and what the cell explorer costs.

    python -m bench.cells

Prints two tables and writes bench/cells.md. The explorer computes nothing while it is closed: generation runs
exactly as without it. Opening it reads the cell along the text just written, one pass of each model over
that text; the second table sets that pass beside the generation it follows (300 tokens, T 0.8, one thread,
median of 5).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from lstmgen.serve import service

PROJECT = Path(__file__).resolve().parent.parent


def main() -> None:
    torch.set_num_threads(1)  # as the app runs each request
    served = service.load_all(use_hub=False)
    best = ["| model | feature | layer | cell | c or h | r |", "|---|---|---|---|---|---|"]
    cost = ["| model | generate 300 tokens, both models (ms) | explorer: one cell along that text, both models (ms) "
            "| explorer ÷ generation |", "|---|---|---|---|"]
    for name, model in served.items():
        found = service.cell_features(model)
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
            service.cell_values(model, request.prompt + result.float.text, top["layer"], top["cell"])
            explore_s.append(time.perf_counter() - began)
        g, e = statistics.median(generate_s[1:]), statistics.median(explore_s[1:])
        cost.append(f"| {name} | {g * 1000:.0f} | {e * 1000:.0f} | {e / g:.2f} |")
    text = "\n".join(["Best cell per feature (`python -m lstmgen cells --model NAME` prints more):", "", *best, "",
                      f"The explorer's cost ({os.cpu_count()} cores, one thread; closed, it costs nothing):", "",
                      *cost, ""])
    print(text)
    (PROJECT / "bench" / "cells.md").write_text(text)


if __name__ == "__main__":
    main()
