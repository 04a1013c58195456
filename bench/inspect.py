"""What looking inside a text costs: /cells and /score on 10,000 characters, token by token (before) and at once.

    python -m bench.inspect [--models char,subword,word] [--chars 10000] [--repeats 3]

Prints a table and writes bench/inspect.md. Each row is one endpoint's service call (service.cell_trace,
service.text_scores) on each shipped model, both copies (float32 and int8) included, one thread as app.py runs
them. The text: the first CHARS characters of the plays' held-out part (for the word model too). CPU seconds
(time.process_time) are what the machine is charged; wall seconds follow other work on a shared machine.

"Before" is the path these endpoints took until issue 30, rebuilt here: each copy stepped token by token (the
float32 model with torch.lstm_cell a layer at a time, the int8 copy through its engine's `step`); the float32
side of /score was already one batched forward. It runs once (it costs many times more); "after" is the median of
`repeats` runs. The last column is the largest gap between the figures the two paths give, relative to
1 + |value| (the tests hold both to 1e-5 of stepping token by token).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from bench.measure import int8_weight_bytes, read_bandwidth
from lstmgen.core.data import cut, read_corpus
from lstmgen.core.evaluate import score_text
from lstmgen.core.records import find
from lstmgen.engine.streams import lstm_weights, step_layers
from lstmgen.serve import service

OUT = Path(__file__).resolve().parent / "inspect.md"
FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def machine() -> str:
    """The CPU's model, its cores and the instruction sets the kernels use, from /proc/cpuinfo."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    have = " ".join(f for f in FLAGS if f in flags) or "none of " + " ".join(FLAGS)
    return f"{model}, {os.cpu_count()} cores; {have}"


def text(chars: int) -> str:
    record = find("char")
    return cut(read_corpus(record.corpus), record.corpus.cuts)[1][:chars]


# --------------------------------------------------------------------------- before: token by token


@torch.inference_mode()
def cells_before(served, text: str, layer: int, cell: int) -> dict:
    """/cells as it was: both copies stepped token by token, every layer's states kept, one cell read."""
    model, ids = served.loaded.model, service.checked_text(served, text)
    weights = [tuple(w.float() for w in layer_weights) for layer_weights in lstm_weights(model.lstm)]
    hidden, layers = model.hidden_size, model.num_layers
    h, c = [torch.zeros(1, hidden) for _ in range(layers)], [torch.zeros(1, hidden) for _ in range(layers)]
    x_all = model.embedding(torch.tensor([ids]))[0].float()
    states = np.zeros((2, layers, len(ids), hidden), np.float32)
    for t in range(len(ids)):
        h, c = step_layers(x_all[t : t + 1], h, c, weights)
        for i in range(layers):
            states[0, i, t], states[1, i, t] = h[i][0].numpy(), c[i][0].numpy()
    out = {"float32": {"h": states[0, layer - 1, :, cell - 1].copy(), "c": states[1, layer - 1, :, cell - 1].copy()}}
    engine, state = served.int8.new_engine(), None
    for t, token in enumerate(ids):
        _, state = engine.step(token, state)
        states[0, :, t], states[1, :, t] = state[0].numpy()[:, 0], state[1].numpy()[:, 0]
    out["int8"] = {"h": states[0, layer - 1, :, cell - 1], "c": states[1, layer - 1, :, cell - 1]}
    return out


class SteppedInt8(torch.nn.Module):
    """The int8 copy's `model(ids, state)` as it was: its engine stepped token by token."""

    def __init__(self, int8):
        super().__init__()
        self.int8 = int8

    def forward(self, ids, state=None):
        logits = torch.empty(ids.size(1), self.int8.vocab_size)
        engine = self.int8.new_engine()
        for t, token in enumerate(ids[0].tolist()):
            out, state = engine.step(token, state)
            logits[t] = out
        return logits[None], (state[0].clone(), state[1].clone())


def score_before(served, text: str) -> dict:
    """/score as it was: the float32 model's batched forward, the int8 copy stepped token by token."""
    service.checked_text(served, text)
    return {side: score_text(engine, served.loaded.tokenizer, text, served.loaded.metrics).probabilities
            for side, engine in (("float32", served.loaded.model), ("int8", SteppedInt8(served.int8)))}


# --------------------------------------------------------------------------- the table


def seconds(fn, repeats: int) -> tuple[float, float, object]:
    """Median CPU and wall seconds of `repeats` calls of fn, and its last answer."""
    cpu, wall = [], []
    for _ in range(repeats):
        started_cpu, started = time.process_time(), time.perf_counter()
        answer = fn()
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    return statistics.median(cpu), statistics.median(wall), answer


def gap(before: dict, after: dict, keys) -> float:
    """The largest |after - before| / (1 + |before|) over both copies' figures (probabilities: the predicted
    tokens'; c reaches ~200 in some of the char model's cells)."""
    worst = 0.0
    for side in ("float32", "int8"):
        for key in keys:
            old = np.array([v for v in before[side][key] if v is not None], np.float64)
            new = np.array([v for v in after[side][key] if v is not None], np.float64)
            worst = max(worst, float((np.abs(new - old) / (1 + np.abs(old))).max()))
    return worst


def reading_row(served, tokens: int, score_cpu: float) -> str:
    """What reading the weights costs /score: each token reads every layer's recurrent float32 matrix (the input
    products and the output layer are batched) and the int8 step's weights once, timed at this machine's read rate."""
    model = served.loaded.model
    float_bytes = sum(p.numel() * 4 for n, p in model.lstm.named_parameters() if n.startswith("weight_hh"))
    int8_bytes = int8_weight_bytes(model)
    rates = [read_bandwidth(n, repeats=20)["numpy_int64_sum_gb_s"] for n in (float_bytes, int8_bytes)]
    read_s = [tokens * n / (rate * 1e9) for n, rate in zip((float_bytes, int8_bytes), rates)]
    return (f"| {served.name} | {tokens:,} | {float_bytes / 1e6:.2f} at {rates[0]:.0f} GB/s: {read_s[0]:.2f} | "
            f"{int8_bytes / 1e6:.2f} at {rates[1]:.0f} GB/s: {read_s[1]:.2f} | {sum(read_s):.2f} | {score_cpu:.2f} |")


def rows_for(served, text: str, repeats: int) -> tuple[list[str], str]:
    model = served.loaded.model
    tokens = len(service.checked_text(served, text))
    rows = []
    for layer in sorted({1, model.num_layers}):
        old_cpu, old_wall, old = seconds(lambda: cells_before(served, text, layer, 1), 1)
        cpu, wall, new = seconds(lambda: service.cell_trace(served, text, layer, 1), repeats)
        rows.append((f"/cells, layer {layer}", old_cpu, old_wall, cpu, wall, gap(old, new, ("c", "h"))))
    old_cpu, old_wall, old = seconds(lambda: score_before(served, text), 1)
    cpu, wall, new = seconds(lambda: service.text_scores(served, text), repeats)
    before = {side: {"p": probabilities} for side, probabilities in old.items()}
    rows.append(("/score", old_cpu, old_wall, cpu, wall, gap(before, {s: {"p": new[s]["probabilities"]} for s in before}, ("p",))))
    table = [f"| {served.name} | {len(text):,} / {tokens:,} | {endpoint} | {a:.2f} | {b:.2f} | {c:.2f} | {d:.2f} | "
             f"{a / c:.1f}× | {g:.1e} |" for endpoint, a, b, c, d, g in rows]
    return table, reading_row(served, tokens, cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="char,subword,word")
    parser.add_argument("--chars", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as app.py serves; the copies' ONNX Runtime sessions take torch's count
    names = args.models.split(",")
    models = service.load_all([find(name) for name in names], use_hub=False)
    sample = text(args.chars)
    load = os.getloadavg()
    lines = [f"Machine: {machine()}. torch {torch.__version__}, one thread. Load average at the start "
             f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}.",
             "",
             f"Text: the first {args.chars:,} characters of the plays' held-out part. Before: one run, token by "
             f"token; after: median of {args.repeats}. Seconds of one call, both copies (float32 and int8).",
             "",
             "| model | characters / tokens | endpoint | before CPU s | before wall s | after CPU s | after wall s | "
             "CPU before ÷ after | largest gap in the figures, ÷ (1 + |value|) |",
             "|---|---|---|---|---|---|---|---|---|"]
    reading = []
    for name in names:
        table, row = rows_for(models[name], sample, args.repeats)
        lines += table
        reading.append(row)
    lines += ["", "What reading the weights costs /score: the MB each token must read (a token's products wait for the "
              "token before), over the rate numpy sums a buffer of that size hot in cache (bench.measure."
              "read_bandwidth), in seconds for the text. The products' own kernels read a little faster (/cells at "
              "the top layer reads as much), so this is an estimate of the least a pass costs, not a bound.", "",
              "| model | tokens | float32: recurrent weights, MB a token, s | int8: step weights, MB a token, s | "
              "reading s | /score CPU s |", "|---|---|---|---|---|---|"] + reading
    load = os.getloadavg()
    lines += ["", f"Load average at the end {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}."]
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
