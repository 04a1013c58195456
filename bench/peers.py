"""Our generation step against the peers' engines at batch 1: speed, the memory floor and fidelity.

    python -m pip install -r requirements-bench.txt && python -m bench.peers [--models char,subword,word]
        [--threads 1,2] [--rounds 9] [--steps 300] [--fidelity-tokens 3000] [--out bench]

(`--install` runs that pip line itself.) Every engine runs in this one process, the engines taking
turns: each round runs every engine for `--steps` greedy steps carrying its state, so a busy machine
slows all sides alike; ratios are per round, reported as median [min–max].

Engines: lstmgen's float step (torch, its fastest path) and int8 step (torch quantize_dynamic),
lstmgen's ONNX Runtime engine (lstmgen/ort_engine.py, float and int8 graphs), ONNX Runtime fp32 and
dynamic int8 (the model exported by torch.onnx.export, quantized by onnxruntime's quantize_dynamic:
DynamicQuantizeLSTM; both with IOBinding), and OpenVINO with NNCF int8 weights (per channel, from
the cell-math ONNX graph) where openvino and nncf are installed.

The floor is the int8 weight bytes one step reads divided by the read bandwidth measured in the same
run by a reader that streams the bytes (a buffer of the same size viewed as int64 and summed).

Fidelity: teacher-forced through the first `--fidelity-tokens` validation tokens as one stream; each
engine's top-1 agreement with the float model and its loss cost relative to float. The word model's
books never ship: its fidelity needs LSTMGEN_DATA=DIR with DIR/harrypotter/1.txt ... 7.txt.

Writes bench/peers.json and bench/peers.md. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements-bench.txt"
NAMES = {"char": "char-shakespeare", "subword": "subword-shakespeare", "word": "word-harrypotter"}
OUR_INT8 = "lstmgen int8 (ORT engine)"
OUR_FLOAT = "lstmgen float (ORT engine)"
TORCH_INT8 = "lstmgen int8 (torch)"
TORCH_FLOAT = "lstmgen float (torch fastest)"
ORT_FP32 = "ORT fp32"
ORT_INT8 = "ORT int8 (DynamicQuantizeLSTM)"
OV_INT8 = "OpenVINO int8 (NNCF)"
PEERS_INT8 = (ORT_INT8, OV_INT8)


def median_spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


# --------------------------------------------------------------------------- engines
# Each engine is a function (token, state) -> (logits as numpy (vocab,), state), plus a fresh state.


class Engine:
    def __init__(self, name: str, step, fresh_state, build_s: float = 0.0):
        self.name, self.step, self.fresh_state, self.build_s = name, step, fresh_state, build_s

    def greedy(self, steps: int, token: int = 1) -> int:
        state, step = self.fresh_state(), self.step
        for _ in range(steps):
            logits, state = step(token, state)
            token = int(logits.argmax())
        return token

    def logits_for(self, ids: list[int]) -> np.ndarray:
        """Teacher-forced: the logits after each of `ids`, (len, vocab)."""
        state, out = self.fresh_state(), []
        for token in ids:
            logits, state = self.step(token, state)
            out.append(np.array(logits, np.float32, copy=True))
        return np.stack(out)


def torch_engine(name: str, model, like) -> Engine:
    from lstmgen.generate import make_step

    started = time.perf_counter()
    step = make_step(model)
    with torch.inference_mode():
        step(0, like.init_state(1))  # trace now, not in the first round

    def run(token, state):
        with torch.inference_mode():
            logits, state = step(token, state)
        return logits.numpy(), state

    return Engine(name, run, lambda: like.init_state(1), time.perf_counter() - started)


def ort_engine(name: str, proto, threads: int, build_s: float = 0.0) -> Engine:
    from lstmgen.ort_engine import OrtStep

    started = time.perf_counter()
    engine = OrtStep(proto, threads=threads)
    step = engine.step

    def run(token, state):
        logits, state = step(token, state)
        return logits.numpy(), state

    return Engine(name, run, lambda: None, build_s + time.perf_counter() - started)


def openvino_model(float_proto):
    """OpenVINO's model of our float cell-math graph, weights compressed to int8 by NNCF (per channel,
    asymmetric: NNCF's default int8 weight compression)."""
    import logging

    import nncf
    import onnx
    import openvino as ov

    nncf.set_log_level(logging.ERROR)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "step.onnx"
        onnx.save(float_proto, path)
        model = ov.convert_model(str(path))
    return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)


def openvino_engine(name: str, ov_model, threads: int, build_s: float = 0.0) -> Engine:
    """Two infer requests that ping-pong the state between two buffer sets, all bound once (no copies)."""
    import openvino as ov

    started = time.perf_counter()
    compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
                                                         "PERFORMANCE_HINT": "LATENCY"})
    shape = tuple(compiled.input("h").get_shape())
    vocab = compiled.output("logits").get_shape()[-1]
    token = np.zeros((1, 1), np.int64)
    hs, cs = [np.zeros(shape, np.float32) for _ in range(2)], [np.zeros(shape, np.float32) for _ in range(2)]
    logits = [np.zeros(vocab, np.float32) for _ in range(2)]
    requests = []
    for k in range(2):
        request = compiled.create_infer_request()
        request.set_tensor("token", ov.Tensor(token, shared_memory=True))
        request.set_tensor("h", ov.Tensor(hs[k], shared_memory=True))
        request.set_tensor("c", ov.Tensor(cs[k], shared_memory=True))
        request.set_tensor("logits", ov.Tensor(logits[k], shared_memory=True))
        request.set_tensor("h_out", ov.Tensor(hs[1 - k], shared_memory=True))
        request.set_tensor("c_out", ov.Tensor(cs[1 - k], shared_memory=True))
        requests.append(request)

    def fresh():
        for array in hs + cs:
            array.fill(0.0)
        return 0

    def run(tok, k):
        token[0, 0] = tok
        requests[k].infer()
        return logits[k], 1 - k

    return Engine(name, run, fresh, build_s + time.perf_counter() - started)


# --------------------------------------------------------------------------- the floor


def int8_weight_bytes(model) -> int:
    """Bytes an int8 step reads: one byte per LSTM and output-layer weight (the embedding: one row)."""
    lstm = sum(p.numel() for n, p in model.lstm.named_parameters() if n.startswith("weight"))
    return lstm + model.decoder.weight.numel() + model.embedding.weight.size(1)


def read_bandwidth(num_bytes: int, repeats: int = 50) -> dict:
    """Bytes per second at which a buffer of `num_bytes` is read, hot in cache as the weights are between
    steps: viewed as int64 and summed (numpy's int64 sum streams; a uint8 sum widens every byte and
    measures the widening, ~2.7 GB/s). The torch int8 -> int32 sum is reported beside it as a check."""
    buffer = np.random.default_rng(0).integers(0, 255, size=-(-num_bytes // 8) * 8, dtype=np.uint8)
    as_int64 = buffer.view(np.int64)
    as_torch = torch.from_numpy(buffer.view(np.int8))

    def best(fn) -> float:
        for _ in range(5):
            fn()
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - started)
        return buffer.nbytes / min(seconds)

    return {"numpy_int64_sum_gb_s": best(lambda: as_int64.sum()) / 1e9,
            "torch_int8_sum_gb_s": best(lambda: as_torch.sum(dtype=torch.int32)) / 1e9}


# --------------------------------------------------------------------------- fidelity


def validation_ids(name: str, tokens: int, tokenizer) -> list[int] | str:
    """The first `tokens` validation ids of the model's corpus, or why there are none."""
    from lstmgen.data import read_corpus
    from lstmgen.records import PRESETS, prepare

    record = PRESETS[name]
    try:
        data = prepare(record, read_corpus(record.corpus))
    except Exception as error:  # the corpus may not be here (the Harry Potter books never ship)
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    if data.tokenizer.state() != tokenizer.state():
        return "the corpus here does not give this model's tokenizer"
    return data.val_ids[:tokens]


def float_reference(model, ids: list[int]) -> np.ndarray:
    with torch.inference_mode():
        logits, _ = model(torch.tensor([ids]))
    return logits[0].numpy()


def fidelity(reference: np.ndarray, logits: np.ndarray, ids: list[int]) -> dict:
    """Top-1 agreement with float and the loss (next-token cross-entropy, nats) against float's."""
    targets = np.array(ids[1:])

    def loss(values):
        values = torch.from_numpy(values[:-1]).double()
        return float(torch.nn.functional.cross_entropy(values, torch.from_numpy(targets)))

    float_loss, loss_q = loss(reference), loss(logits)
    return {"top1_agreement": float((reference.argmax(1) == logits.argmax(1)).mean()), "loss": loss_q,
            "float_loss": float_loss, "relative_cost": (loss_q - float_loss) / float_loss,
            "max_abs_logit_error": float(np.abs(reference - logits).max())}


# --------------------------------------------------------------------------- sampling overhead


def sampling_overhead(vocab: int, repeats: int = 2000) -> dict:
    """µs for the work outside the network in one step: torch's argmax and lstmgen.sampling's
    distribution + draw (temperature 0.8) against numpy doing the same on the same logits."""
    from lstmgen.sampling import SamplingConfig, distribution, draw

    logits_np = np.random.default_rng(0).standard_normal(vocab).astype(np.float32) * 3
    logits = torch.from_numpy(logits_np)
    config = SamplingConfig(temperature=0.8)

    def numpy_sample():
        z = logits_np * np.float32(1 / 0.8)
        p = np.exp(z - z.max())
        cdf = np.cumsum(p)
        return min(int(np.searchsorted(cdf, 0.5 * cdf[-1], side="right")), vocab - 1)

    cases = {"torch_argmax_us": lambda: int(logits.argmax()), "numpy_argmax_us": lambda: int(logits_np.argmax()),
             "torch_sample_us": lambda: draw(distribution(logits, config), 0.5),
             "numpy_sample_us": numpy_sample}
    out = {}
    with torch.inference_mode():
        for label, fn in cases.items():
            for _ in range(50):
                fn()
            started = time.perf_counter()
            for _ in range(repeats):
                fn()
            out[label] = (time.perf_counter() - started) / repeats * 1e6
    return out


# --------------------------------------------------------------------------- one model


def bench_model(short: str, threads_options: list[int], rounds: int, steps: int, fidelity_tokens: int,
                variants: list[str], openvino: bool) -> dict:
    import contextlib

    from lstmgen.export import quantize_onnx_dynamic, step_model
    from lstmgen.hub import resolve
    from lstmgen.ort_engine import peer_step_proto
    from lstmgen.quantize import quantize_dynamic

    name = NAMES.get(short, short)
    with contextlib.redirect_stdout(sys.stderr):
        loaded = resolve(name, use_hub=False)
    model = loaded.model.eval()
    int8 = quantize_dynamic(model)
    load = {}
    clock = time.perf_counter
    started = clock()
    protos = {OUR_FLOAT: step_model(model, "float")}
    load["our_float_graph_s"] = clock() - started
    started = clock()
    protos[OUR_INT8] = step_model(model, "int8")
    load["our_int8_graph_s"] = clock() - started
    for variant in variants:
        protos[f"lstmgen {variant} (ORT engine)"] = step_model(model, variant)
    started = clock()
    protos[ORT_FP32] = peer_step_proto(model)
    load["peer_export_s"] = clock() - started
    started = clock()
    protos[ORT_INT8] = quantize_onnx_dynamic(protos[ORT_FP32], per_channel=False, op_types=None)
    load["peer_quantize_s"] = clock() - started
    ov_model, ov_error = None, None
    if openvino:
        try:
            started = clock()
            with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
                warnings.simplefilter("ignore")
                ov_model = openvino_model(protos[OUR_FLOAT])
            load["openvino_convert_compress_s"] = clock() - started
        except Exception as error:  # not installed, or it failed: reported, the rest still runs
            ov_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    result = {"model": short, "source": loaded.source, "vocab_size": model.vocab_size,
              "int8_weight_bytes": int8_weight_bytes(model), "load": load, "openvino_error": ov_error,
              "by_threads": {}}

    for threads in threads_options:
        torch.set_num_threads(threads)
        engines = [torch_engine(TORCH_FLOAT, model, model), torch_engine(TORCH_INT8, int8, model)]
        engines += [ort_engine(label, proto, threads) for label, proto in protos.items()]
        if ov_model is not None:
            engines.append(openvino_engine(OV_INT8, ov_model, threads))
        for engine in engines:
            engine.greedy(30)  # warm-up
        times = {e.name: [] for e in engines}
        bandwidth = []
        for r in range(rounds):
            order = engines[r % len(engines):] + engines[: r % len(engines)]  # rotate who goes first
            for engine in order:
                started = clock()
                engine.greedy(steps)
                times[engine.name].append((clock() - started) / steps * 1e6)
            bandwidth.append(read_bandwidth(result["int8_weight_bytes"], repeats=20))
        gb_s = [b["numpy_int64_sum_gb_s"] for b in bandwidth]
        floor_us = [result["int8_weight_bytes"] / (g * 1e9) * 1e6 for g in gb_s]
        row = {"us_per_step": {k: median_spread(v) for k, v in times.items()},
               "read_bandwidth_gb_s": median_spread(gb_s),
               "torch_int8_sum_gb_s": median_spread([b["torch_int8_sum_gb_s"] for b in bandwidth]),
               "floor_us": median_spread(floor_us), "ratios": {}}
        peers = [p for p in PEERS_INT8 if p in times]
        best_peer = [min(times[p][i] for p in peers) for i in range(rounds)]
        for label in times:
            row["ratios"][label + " ÷ best peer int8"] = median_spread([a / b for a, b in zip(times[label], best_peer)])
        row["ratios"][f"{OUR_FLOAT} ÷ {ORT_FP32}"] = median_spread(
            [a / b for a, b in zip(times[OUR_FLOAT], times[ORT_FP32])])
        row["ratios"][f"{OUR_INT8} ÷ floor"] = median_spread([a / b for a, b in zip(times[OUR_INT8], floor_us)])
        row["build_s"] = {e.name: e.build_s for e in engines}
        result["by_threads"][str(threads)] = row

    if fidelity_tokens:
        torch.set_num_threads(threads_options[0])
        ids = validation_ids(name, fidelity_tokens, loaded.tokenizer)
        if isinstance(ids, str):
            result["fidelity"] = {"error": ids}
        else:
            reference = float_reference(model, ids)
            engines = [torch_engine(TORCH_INT8, int8, model)]
            engines += [ort_engine(label, proto, threads_options[0]) for label, proto in protos.items()
                        if label != OUR_FLOAT]
            engines.append(ort_engine(ORT_INT8 + " per channel", quantize_onnx_dynamic(
                protos[ORT_FP32], per_channel=True, op_types=None), threads_options[0]))
            if ov_model is not None:
                engines.append(openvino_engine(OV_INT8, ov_model, threads_options[0]))
            result["fidelity"] = {"tokens": len(ids)}
            for engine in engines:
                result["fidelity"][engine.name] = fidelity(reference, engine.logits_for(ids), ids)
    result["sampling"] = sampling_overhead(model.vocab_size)
    return result


# --------------------------------------------------------------------------- report


def markdown(report: dict) -> str:
    lines = [f"Machine: {report['machine']}; torch {report['torch']}; onnxruntime {report['onnxruntime']}; "
             f"openvino {report.get('openvino') or 'not installed'}. {report['rounds']} rounds × {report['steps']} "
             f"greedy steps carrying the state, engines taking turns in one process; median [min–max] over rounds.", ""]
    for m in report["models"]:
        for threads, row in m["by_threads"].items():
            us = row["us_per_step"]
            lines += [f"### {m['model']} (vocabulary {m['vocab_size']:,}), {threads} thread{'s' if threads != '1' else ''}",
                      "", "| ratio | median [min–max] |", "|---|---|"]
            for label in (OUR_INT8 + " ÷ best peer int8", f"{OUR_FLOAT} ÷ {ORT_FP32}", f"{OUR_INT8} ÷ floor",
                          TORCH_INT8 + " ÷ best peer int8"):
                r = row["ratios"].get(label)
                if r:
                    lines.append(f"| {label} | {r['median']:.3f} [{r['min']:.3f}–{r['max']:.3f}] |")
            lines += ["", "| engine | µs per step | ÷ best peer int8 |", "|---|---|---|"]
            for label, t in sorted(us.items(), key=lambda item: item[1]["median"]):
                r = row["ratios"][label + " ÷ best peer int8"]
                lines.append(f"| {label} | {t['median']:.1f} [{t['min']:.0f}–{t['max']:.0f}] | {r['median']:.2f} |")
            fl, bw = row["floor_us"], row["read_bandwidth_gb_s"]
            lines.append(f"| floor: {m['int8_weight_bytes'] / 1e6:.2f} MB int8 weights ÷ {bw['median']:.0f} GB/s "
                         f"(torch int8 sum: {row['torch_int8_sum_gb_s']['median']:.0f} GB/s) | "
                         f"{fl['median']:.1f} [{fl['min']:.0f}–{fl['max']:.0f}] | |")
            lines.append("")
        fid = m.get("fidelity") or {}
        if "error" in fid:
            lines += [f"Fidelity ({m['model']}): not measured — {fid['error']}", ""]
        elif fid:
            lines += [f"Fidelity ({m['model']}, first {fid['tokens']} validation tokens teacher-forced, one stream; "
                      f"float loss {next(v for v in fid.values() if isinstance(v, dict))['float_loss']:.4f}):", "",
                      "| engine | top-1 agreement with float | loss | relative loss cost |", "|---|---|---|---|"]
            for label, f in sorted(((k, v) for k, v in fid.items() if isinstance(v, dict)),
                                   key=lambda item: -item[1]["top1_agreement"]):
                lines.append(f"| {label} | {f['top1_agreement']:.2%} | {f['loss']:.4f} | {f['relative_cost']:+.3%} |")
            lines.append("")
        s, step = m["sampling"], m["by_threads"][next(iter(m["by_threads"]))]["us_per_step"][OUR_INT8]["median"]
        lines += [f"Outside the network ({m['model']}, one thread): argmax torch {s['torch_argmax_us']:.1f} µs, numpy "
                  f"{s['numpy_argmax_us']:.1f} µs; sampling (temperature 0.8) torch {s['torch_sample_us']:.1f} µs, numpy "
                  f"{s['numpy_sample_us']:.1f} µs; against our int8 step of {step:.0f} µs: torch sampling "
                  f"{s['torch_sample_us'] / step:.0%}, numpy {s['numpy_sample_us'] / step:.0%}.",
                  f"Load: {', '.join(f'{k} {v:.2f}' for k, v in m['load'].items())}."
                  + (f" OpenVINO: {m['openvino_error']}" if m.get("openvino_error") else ""), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="char,subword,word")
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--fidelity-tokens", type=int, default=3000, help="validation tokens (0: skip fidelity)")
    parser.add_argument("--variants", default="", help="more int8 graphs of ours to time: int8-nbits,int8-dq,int4,...")
    parser.add_argument("--no-openvino", action="store_true")
    parser.add_argument("--install", action="store_true", help=f"pip install -r {REQUIREMENTS.name} first")
    parser.add_argument("--out", default="bench")
    args = parser.parse_args(argv)
    if args.install:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
    try:
        import onnxruntime
    except ImportError:
        print(f"error: the peers are not installed: python -m pip install -r {REQUIREMENTS.name} (or pass --install)",
              file=sys.stderr)
        return 2
    try:
        import openvino

        openvino_version = openvino.__version__
    except ImportError:
        openvino_version = None
    threads = sorted({int(t) for t in args.threads.split(",")})
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "openvino": openvino_version,
              "rounds": args.rounds, "steps": args.steps, "threads": threads, "models": []}
    variants = [v for v in args.variants.split(",") if v]
    for short in args.models.split(","):
        print(f"benchmarking {short} …", file=sys.stderr, flush=True)
        report["models"].append(bench_model(short, threads, args.rounds, args.steps, args.fidelity_tokens, variants,
                                            openvino_version is not None and not args.no_openvino))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps(report, indent=2))
    (out / "peers.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
