"""Benchmark: generation speed at batch 1 on CPU, int8 against float, the memory floor, and training.

    python -m bench [--models char,subword,word] [--repeats 5] [--out bench]

Paths measured, each generating the same number of tokens from a short prompt (temperature 1):
- float default / float torch / int8 torch: PyTorch's own kernels, the traced lstm_cell step, and
  torch's dynamic int8 copy (torch.ao quantize_dynamic): the engines lstmgen used before issue 18;
- float / int8: lstmgen's engine, the step graphs on ONNX Runtime (lstmgen/engine/ort.py), what the app,
  the API and `python -m lstmgen generate` run;
- naive re-feed: no state carried, the whole growing sequence re-fed every step (as several earlier
  projects do).

Writes bench/results.json, bench/results.md and bench/results.png. Every ratio is computed from
figures measured in the same run, so a busy machine shifts both sides alike. Nothing here asserts
a timing; the tests only check that the report is well formed. bench/peers.py measures the same
step against ONNX Runtime's and OpenVINO's own int8.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import onnxruntime
import torch
import torch.nn.functional as F

from lstmgen.core.data import read_corpus
from lstmgen.core.evaluate import evaluate
from lstmgen.core.files import WEIGHTS_FILE
from lstmgen.engine.graph import step_model
from lstmgen.engine.generate import banned_ids, coupled_ids, generate_ids
from lstmgen.engine.streams import token_stream
from lstmgen.hub import LoadedModel, resolve
from lstmgen.engine.ort import OrtModel, OrtStep
from lstmgen.training.folder import size_bytes
from lstmgen.core.records import RECORDS, ModelRecord, prepare
from lstmgen.core.sampling import RandomNumbers, SamplingConfig, distribution, draw

from bench.engines import quantize_dynamic, step_numpy
from bench.measure import int8_weight_bytes, median_spread, read_bandwidth, timed

PROMPT_CHARS = 200  # the prompt of the time-to-first-token figure


def long_prompt(record: ModelRecord, chars: int = PROMPT_CHARS) -> str:
    """About `chars` characters of the record's own example prompts, for the time-to-first-token figure."""
    text = " ".join(e for e in record.examples if e) or "the "
    return ((text + " ") * (chars // (len(text) + 1) + 1))[:chars]


def naive_generate(model, prompt_ids: list[int], config: SamplingConfig) -> list[int]:
    """What several earlier projects do: no state carried, the whole growing sequence re-fed every step."""
    randomness = RandomNumbers(config.seed)
    ids = list(prompt_ids)
    with torch.inference_mode():
        for _ in range(config.length):
            logits, _ = model(torch.tensor([ids]))
            ids.append(draw(distribution(logits[0, -1], config), randomness.next()[0]))
    return ids[len(prompt_ids):]


def generation_speed(model, prompt_ids, tokens: int, repeats: int, fast_steps: bool = True) -> dict:
    config = SamplingConfig(temperature=1.0, length=tokens, seed=0)
    seconds = timed(lambda: list(generate_ids(model, prompt_ids, config, fast_steps=fast_steps)), repeats)
    return median_spread([tokens / s for s in seconds])


def independent_side_by_side(floats, int8, prompt_ids, config: SamplingConfig, banned) -> None:
    """Both models in turns, each drawing on its own with the same uniform number, no probabilities kept:
    the side-by-side run as it was before the coupling."""
    randomness = RandomNumbers(config.seed)
    u = randomness.next()[0]
    streams = [token_stream(floats, config, banned), token_stream(int8, config, banned)]
    for stream in streams:
        stream.prompt(prompt_ids, u)
    for i in range(config.length):
        tokens = [s.draw(u) for s in streams]
        if i + 1 < config.length:
            u = randomness.next()[0]
            for stream, token in zip(streams, tokens):
                stream.step(token, u)


def side_by_side_cost(floats, int8, prompt_ids, tokens: int, repeats: int, banned) -> dict:
    """Microseconds per step of both models: token by token with independent draws (the side-by-side run
    before issue 16), against the app's run (turns of 32 tokens, coupled draws, both models' token
    probabilities, which their graphs compute)."""
    config = SamplingConfig(temperature=1.0, length=tokens, seed=0)
    plain = timed(lambda: independent_side_by_side(floats, int8, prompt_ids, config, banned), repeats)
    coupled = timed(lambda: list(coupled_ids(floats, int8, prompt_ids, config, banned)), repeats)
    plain_us, coupled_us = statistics.median(plain) / tokens * 1e6, statistics.median(coupled) / tokens * 1e6
    return {"plain_us": plain_us, "coupled_with_probabilities_us": coupled_us, "overhead": coupled_us / plain_us - 1}


def step_breakdown(model, weights: str, prompt_ids, tokens: int, repeats: int, banned, spinning: bool) -> dict:
    """Share of a generated token spent outside the network: lstmgen's generation loop (the step graph
    with the sampler, the draw, Python) against the plain step graph stepping through the same tokens,
    the two taking turns. Temperature 0.8, the special tokens masked: what the app samples with."""
    config = SamplingConfig(temperature=0.8, length=tokens, seed=0)
    engine = OrtModel(model, weights, threads=torch.get_num_threads(), spinning=spinning)
    plain = OrtStep(step_model(model, weights, layer_states=True), threads=torch.get_num_threads(), spinning=spinning)
    sequence = list(generate_ids(engine, prompt_ids, config, banned))

    def network_only():
        plain.forward(prompt_ids)
        for token in sequence[:-1]:
            step_numpy(plain, token)

    whole, network = [], []
    for _ in range(repeats):  # taking turns, so that a busy moment slows both
        whole += timed(lambda: list(generate_ids(engine, prompt_ids, config, banned)), 1)
        if spinning:  # a spinning pool keeps its core busy for a moment after its last step
            time.sleep(0.05)
        network += timed(network_only, 1)
        if spinning:
            time.sleep(0.05)
    shares = [1 - n / w for n, w in zip(network, whole)]
    return {"step_us": statistics.median(whole) / tokens * 1e6, "network_us": statistics.median(network) / tokens * 1e6,
            "outside_network_share": max(0.0, statistics.median(shares)),
            "sampling_over_step": statistics.median([w / n - 1 for n, w in zip(network, whole)])}


def float_weight_bytes(model) -> int:
    """Bytes of weights one float step reads: the LSTM and output layer whole, one embedding row."""
    lstm = sum(p.numel() * p.element_size() for p in model.lstm.parameters())
    decoder = sum(p.numel() * p.element_size() for p in model.decoder.parameters())
    return lstm + decoder + model.embedding.weight[0].numel() * model.embedding.weight.element_size()


def val_slice_losses(loaded: LoadedModel, int8, record: ModelRecord, limit: int) -> dict | None:
    try:
        data = prepare(record, read_corpus(record.corpus))
    except Exception as error:  # the corpus may not be here (the Harry Potter books never ship)
        return {"error": str(error)}
    ids = data.val_ids[:limit]
    float_loss = evaluate(loaded.model, ids, 1, 256).loss
    int8_loss = evaluate(int8, ids, 1, 256).loss
    return {"tokens": len(ids), "float": float_loss, "int8": int8_loss,
            "relative_cost": (int8_loss - float_loss) / float_loss}


def app_ready_seconds(repeats: int = 2) -> dict:
    """Seconds from `python app.py` to an HTTP 200 on its page."""
    root = Path(__file__).resolve().parent.parent  # the repository, where app.py is
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               NO_PROXY="127.0.0.1,localhost")
    results = []
    for attempt in range(repeats):
        port = 7900 + attempt
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--no-hub"], cwd=root, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while time.perf_counter() - started < 120:
                try:
                    if urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).status == 200:
                        results.append(time.perf_counter() - started)
                        break
                except OSError:
                    time.sleep(0.05)
        finally:
            process.terminate()
            process.wait(10)
    return median_spread(results) if results else {"error": "the app never answered"}


def manual_lstm_step_rate(record: ModelRecord, steps: int = 3) -> dict:
    """Training tokens/s of nn.LSTM against a hand-written per-time-step LSTM cell in Python."""
    cfg = record.train
    loaded = resolve(record, use_hub=False)  # the shipped model's vocabulary
    vocab = loaded.tokenizer.vocab_size
    model = record.model.build(vocab).train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    batch, seq = cfg.batch_size, cfg.seq_len
    x = torch.randint(vocab, (batch, seq))
    amp = bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())

    def fused_step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits, _ = model(x)
        F.cross_entropy(logits.float().reshape(-1, vocab), x.reshape(-1)).backward()
        optimizer.step()
        optimizer.zero_grad()

    def python_cell_step():
        # The per-time-step cell a reference project wrote by hand: one Python iteration per character.
        h = [torch.zeros(batch, model.hidden_size) for _ in range(model.num_layers)]
        c = [torch.zeros(batch, model.hidden_size) for _ in range(model.num_layers)]
        outputs = []
        embedded = model.embedding(x)
        for t in range(seq):
            inp = embedded[:, t]
            for layer in range(model.num_layers):
                w_ih, w_hh = getattr(model.lstm, f"weight_ih_l{layer}"), getattr(model.lstm, f"weight_hh_l{layer}")
                bias = getattr(model.lstm, f"bias_ih_l{layer}") + getattr(model.lstm, f"bias_hh_l{layer}")
                gates = inp @ w_ih.T + h[layer] @ w_hh.T + bias
                i, f, g, o = gates.chunk(4, 1)
                c[layer] = torch.sigmoid(f) * c[layer] + torch.sigmoid(i) * torch.tanh(g)
                h[layer] = torch.sigmoid(o) * torch.tanh(c[layer])
                inp = h[layer]
            outputs.append(inp)
        logits = model.decoder(torch.stack(outputs, 1))
        F.cross_entropy(logits.reshape(-1, vocab), x.reshape(-1)).backward()
        optimizer.step()
        optimizer.zero_grad()

    fused = timed(fused_step, steps)
    manual = timed(python_cell_step, max(1, steps // 2))
    tokens = batch * seq
    fused_rate, manual_rate = tokens / statistics.median(fused), tokens / statistics.median(manual)
    try:
        epoch_tokens = len(prepare(record, read_corpus(record.corpus)).train_ids)
    except Exception:  # the corpus may not be here (the Harry Potter books never ship)
        epoch_tokens = None
    return {"batch": batch, "seq_len": seq, "bf16_autocast": amp, "tokens_per_s": fused_rate,
            "python_cell_tokens_per_s": manual_rate, "speedup": fused_rate / manual_rate,
            "epoch_minutes": epoch_tokens / fused_rate / 60 if epoch_tokens else None}


def bench_model(name: str, threads_options: list[int], tokens: int, repeats: int, naive: bool, val_limit: int,
                source: str | None = None) -> dict:
    record = RECORDS[name]
    loaded = resolve(source or record, use_hub=False)
    model, tokenizer = loaded.model, loaded.tokenizer
    banned = banned_ids(tokenizer)
    torch_int8 = quantize_dynamic(model)
    prompt_ids = tokenizer.encode(long_prompt(record)).ids
    short_prompt = prompt_ids[:8]
    result = {"model": name, "source": loaded.source, "parameters": model.num_parameters(),
              "vocab_size": tokenizer.vocab_size, "by_threads": {}}
    for threads in threads_options:
        torch.set_num_threads(threads)
        # With more than one thread the pool spins between steps (as `python -m lstmgen generate` runs it);
        # the app runs one thread per model.
        spin = threads > 1
        ours = {w: OrtModel(model, w, threads=threads, spinning=spin) for w in ("float", "int8")}
        row = {
            "float_default": generation_speed(model, short_prompt, tokens, repeats, fast_steps=False),
            "float_torch": generation_speed(model, short_prompt, tokens, repeats),
            "int8_torch": generation_speed(torch_int8, short_prompt, tokens, repeats),
            "float": generation_speed(ours["float"], short_prompt, tokens, repeats),
            "int8": generation_speed(ours["int8"], short_prompt, tokens, repeats),
        }
        if naive:
            seconds = timed(lambda: naive_generate(model, short_prompt, SamplingConfig(1.0, tokens, seed=0)),
                            max(1, repeats // 2), warmup=0)
            row["naive_refeed"] = median_spread([tokens / s for s in seconds])
        config = SamplingConfig(temperature=1.0, length=1, seed=0)
        for label, m in ours.items():
            first = timed(lambda: next(generate_ids(m, prompt_ids, config)), repeats)
            row[f"first_token_ms_{label}"] = median_spread([s * 1000 for s in first])
        row["step_int8"] = step_breakdown(model, "int8", short_prompt, tokens, repeats, banned, spin)
        served = {label: OrtModel(model, label, threads=threads, probabilities=True)  # as the app: no spinning
                  for label in ("float", "int8")}
        row["side_by_side"] = side_by_side_cost(served["float"], served["int8"], short_prompt, tokens, repeats, banned)
        row["ratios"] = {
            "int8_over_float": row["int8"]["median"] / row["float"]["median"],
            "float_over_torch_float": row["float"]["median"] / row["float_torch"]["median"],
            "int8_over_torch_int8": row["int8"]["median"] / row["int8_torch"]["median"],
            "int8_over_torch_float": row["int8"]["median"] / row["float_torch"]["median"],
        }
        if naive:
            row["ratios"]["stateful_over_naive"] = row["int8"]["median"] / row["naive_refeed"]["median"]
        result["by_threads"][str(threads)] = row
    torch.set_num_threads(threads_options[0])
    float_bytes, q_bytes = float_weight_bytes(model), int8_weight_bytes(model)
    floor = {}
    first = result["by_threads"][str(threads_options[0])]
    for label, num_bytes, speed in (("float", float_bytes, first["float"]), ("int8", q_bytes, first["int8"])):
        bandwidth = read_bandwidth(num_bytes, repeats=20)["numpy_int64_sum_gb_s"] * 1e9
        floor_us = num_bytes / bandwidth * 1e6
        step_us = 1e6 / speed["median"]
        floor[label] = {"bytes_per_step": num_bytes, "read_bandwidth_gb_s": bandwidth / 1e9, "floor_us": floor_us,
                        "step_us": step_us, "step_over_floor": step_us / floor_us}
    result["floor_1_thread"] = floor
    disk = loaded.folder / WEIGHTS_FILE
    int8 = OrtModel(model, "int8")
    result["size"] = {"disk_mb": disk.stat().st_size / 1e6, "float32_memory_mb": size_bytes(model) / 1e6,
                      "int8_memory_mb": int8.size_bytes() / 1e6, "int8_torch_memory_mb": size_bytes(torch_int8) / 1e6}
    result["size"]["int8_over_float"] = result["size"]["int8_memory_mb"] / result["size"]["float32_memory_mb"]
    if val_limit:
        result["val_slice"] = val_slice_losses(loaded, int8, record, val_limit)
    return result


def markdown(report: dict) -> str:
    lines = [f"Machine: {report['machine']}; torch {report['torch']}; onnxruntime {report.get('onnxruntime', '?')}; "
             f"{report['tokens']} generated tokens at batch 1, median of {report['repeats']} runs after a warm-up "
             "(min–max in brackets). float and int8 are lstmgen's engine (ONNX Runtime); the torch columns are "
             "PyTorch's kernels, its traced step and its dynamic int8 copy.", ""]
    lines += ["| model | threads | int8 ÷ float | float ÷ torch float | int8 ÷ torch int8 | stateful ÷ naive | "
              "int8 tok/s | float tok/s | float torch tok/s | int8 torch tok/s | float default tok/s | naive re-feed tok/s | "
              "first token int8 (200-char prompt) | sampling + Python ÷ int8 step | side by side (turns of 32, coupled, "
              "probabilities) ÷ token by token, independent draws |", "|" + "---|" * 15]

    def cell(x):
        return f"{x['median']:.0f} [{x['min']:.0f}–{x['max']:.0f}]"

    for m in report["models"]:
        for threads, row in m["by_threads"].items():
            r = row["ratios"]
            naive = cell(row["naive_refeed"]) if "naive_refeed" in row else "–"
            ratio_naive = f"{r['stateful_over_naive']:.0f}×" if "stateful_over_naive" in r else "–"
            lines.append(f"| {m['model']} | {threads} | {r['int8_over_float']:.2f}× | {r['float_over_torch_float']:.2f}× | "
                         f"{r['int8_over_torch_int8']:.2f}× | {ratio_naive} | {cell(row['int8'])} | {cell(row['float'])} | "
                         f"{cell(row['float_torch'])} | {cell(row['int8_torch'])} | {cell(row['float_default'])} | {naive} | "
                         f"{row['first_token_ms_int8']['median']:.1f} ms | {row['step_int8']['sampling_over_step']:.0%} | "
                         f"{1 + row['side_by_side']['overhead']:.2f}× |")
    lines += ["", "| model | parameters | disk MB | float32 MB (memory) | int8 MB | int8 ÷ float | int8 torch MB | "
              "val loss float | val loss int8 | int8 cost | floor µs/step (int8) | int8 step ÷ floor |",
              "|" + "---|" * 12]
    for m in report["models"]:
        s, v, fl = m["size"], m.get("val_slice") or {}, m["floor_1_thread"]["int8"]
        val = (f"{v['float']:.4f} | {v['int8']:.4f} | {v['relative_cost']:+.3%}" if "float" in v else "– | – | –")
        lines.append(f"| {m['model']} | {m['parameters']:,} | {s['disk_mb']:.1f} | {s['float32_memory_mb']:.1f} | "
                     f"{s['int8_memory_mb']:.1f} | {s['int8_over_float']:.0%} | {s['int8_torch_memory_mb']:.1f} | {val} | "
                     f"{fl['floor_us']:.0f} | {fl['step_over_floor']:.2f}× |")
    if report.get("app_ready_s"):
        a = report["app_ready_s"]
        lines += ["", f"`python app.py` answers HTTP 200 after {a['median']:.1f} s (median of {a['n']})."
                  if "median" in a else f"app: {a}"]
    if report.get("training"):
        lines += ["", "| preset | batch × steps | training tok/s (nn.LSTM) | hand-written Python cell tok/s | speed-up | one epoch |",
                  "|---|---|---|---|---|---|"]
        for name, t in report["training"].items():
            lines.append(f"| {name} | {t['batch']} × {t['seq_len']} | {t['tokens_per_s']:.0f} | "
                         f"{t['python_cell_tokens_per_s']:.0f} | {t['speedup']:.1f}× | "
                         + (f"{t['epoch_minutes']:.1f} min |" if t["epoch_minutes"] else "– (corpus not here) |"))
    return "\n".join(lines) + "\n"


def bar_chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = str(report["threads"][0])
    labels = ["naive_refeed", "float_default", "float_torch", "int8_torch", "float", "int8"]
    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=110)
    width = 0.13
    for i, label in enumerate(labels):
        values = [m["by_threads"][threads].get(label, {}).get("median", 0) for m in report["models"]]
        ax.bar([x + i * width for x in range(len(values))], values, width, label=label.replace("_", " "))
    ax.set_xticks([x + 2.5 * width for x in range(len(report["models"]))], [m["model"] for m in report["models"]])
    ax.set_yscale("log")
    ax.set_ylabel(f"generated tokens/s ({threads} thread, batch 1)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="char,subword,word")
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}")
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--val-limit", type=int, default=20000, help="validation tokens for the quality cost (0: skip)")
    parser.add_argument("--no-app", action="store_true")
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument("--source", action="append", default=[], metavar="NAME=FOLDER",
                        help="benchmark this model folder instead of the bundled one")
    parser.add_argument("--out", default="bench")
    args = parser.parse_args(argv)
    sources = dict(item.split("=", 1) for item in args.source)
    threads = sorted({int(t) for t in args.threads.split(",")})
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "tokens": args.tokens, "repeats": args.repeats, "threads": threads,
              "models": []}
    for name in args.models.split(","):
        print(f"benchmarking {name} …", file=sys.stderr, flush=True)
        report["models"].append(bench_model(name, threads, args.tokens, args.repeats, not args.no_naive, args.val_limit,
                                              sources.get(name)))
    if not args.no_app:
        report["app_ready_s"] = app_ready_seconds()
    if not args.no_training:
        torch.set_num_threads(max(threads))
        report["training"] = {RECORDS[n].long_name: manual_lstm_step_rate(RECORDS[n]) for n in args.models.split(",")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "results.md").write_text(markdown(report))
    bar_chart(report, out / "results.png")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
