"""Our generation step against the peers' engines at batch 1: speed, the memory floor, fidelity, and
what sampling adds to our step.

    python -m pip install -r requirements-bench.txt && python -m bench.peers [--models char,subword,word]
        [--threads 1,2] [--rounds 11] [--steps 300] [--fidelity-tokens 40000] [--out bench]

(`--install` runs that pip line itself.) Every engine runs in this one process, the engines taking
turns: each round runs every engine for `--steps` greedy steps carrying its state, so a busy machine
slows all sides alike; ratios are per round, reported as median [min–max].

Engines:
- lstmgen int8 / lstmgen float: our engine (lstmgen/engine/ort.py), the step graph lstmgen/engine/graph.py
  writes, on ONNX Runtime: what the app generates with;
- lstmgen int8 / float before: PyTorch's dynamic int8 copy (torch.ao quantize_dynamic) and the
  traced float step, the engines before issue 18;
- ORT fp32 and ORT int8: the model exported by torch.onnx.export (ONNX LSTM ops), quantized by
  onnxruntime's quantize_dynamic (DynamicQuantizeLSTM; its default one scale per tensor, and per
  channel), all with IOBinding: what a user of ONNX Runtime would deploy;
- OpenVINO int8: NNCF int8 weights (per channel) on the cell-math graph, where openvino is installed.
With more than one thread, every ONNX Runtime engine also runs with its workers spinning between
steps (ONNX Runtime's own default; ours turns it off unless LSTMGEN_ORT_SPINNING=1, since the app's
two models alternate and a spinning pool takes the core the other needs): the best of the two
settings stands for each side.

The floor is the int8 weight bytes one step reads divided by the read bandwidth measured in the same
run by a reader that streams the bytes (a buffer of the same size viewed as int64 and summed).

Fidelity: teacher-forced through the first `--fidelity-tokens` validation tokens as one stream; each
engine's top-1 agreement with the float model and its loss cost relative to float. The engines differ
by a few tokens in a thousand, so the sample is large: at 3,000 tokens the order of near-equal
engines changes with a hair's change in a weight. The word model's
books never ship: its fidelity needs LSTMGEN_DATA=DIR with DIR/harrypotter/1.txt ... 7.txt.

Sampling (`--parts sampling`): what a generated token costs beyond the int8 step, at temperature 0.8,
top-k and top-p off, the special tokens masked, loops taking turns per round:
- int8 step: our plain int8 step graph stepping through the generated tokens (the reference);
- generation: lstmgen.engine.generate.generate_ids on our int8 model: the step graph with the sampler (the
  distribution and the draw in the graph), the draw's check, the random numbers and the Python loop;
- torch sampling: the plain step plus lstmgen.core.sampling's distribution and draw on its logits;
- side by side: the app's loop (generate.coupled_ids, both models computing their own probabilities),
  µs per token of each side.

Writes bench/peers.json and bench/peers.md. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bench.measure import int8_weight_bytes, median_spread, read_bandwidth

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements-bench.txt"
NAMES = {"char": "char-shakespeare", "subword": "subword-shakespeare", "word": "word-harrypotter"}
OUR_INT8 = "lstmgen int8"
OUR_FLOAT = "lstmgen float"
SPINNING = " (spinning)"
PARTS = ("speed", "fidelity", "sampling")
TORCH_INT8 = "lstmgen int8 before (torch)"
TORCH_FLOAT = "lstmgen float before (torch)"
ORT_FP32 = "ORT fp32"
ORT_INT8 = "ORT int8 (DynamicQuantizeLSTM)"
ORT_INT8_CHANNEL = "ORT int8 (DynamicQuantizeLSTM) per channel"
OV_INT8 = "OpenVINO int8 (NNCF)"
PEERS_INT8 = (ORT_INT8, ORT_INT8_CHANNEL, OV_INT8)


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
    from lstmgen.engine.streams import make_step

    started = time.perf_counter()
    step = make_step(model)
    with torch.inference_mode():
        step(0, like.init_state(1))  # trace now, not in the first round

    def run(token, state):
        with torch.inference_mode():
            logits, state = step(token, state)
        return logits.numpy(), state

    return Engine(name, run, lambda: like.init_state(1), time.perf_counter() - started)


def ort_engine(name: str, proto, threads: int, build_s: float = 0.0, spinning: bool = False) -> Engine:
    from lstmgen.engine.ort import OrtStep

    started = time.perf_counter()
    engine = OrtStep(proto, threads=threads, spinning=spinning)
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


# --------------------------------------------------------------------------- fidelity


def validation_ids(name: str, tokens: int, tokenizer) -> list[int] | str:
    """The first `tokens` validation ids of the model's corpus, or why there are none."""
    from lstmgen.core.data import read_corpus
    from lstmgen.core.records import PRESETS, prepare

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


# --------------------------------------------------------------------------- sampling


def sampling_share(model, banned, threads: int, rounds: int, steps: int) -> dict:
    """µs per generated token of the loops in the module docstring (`Sampling`), per round; each loop's
    excess over the int8 step per round, as median [min–max]."""
    from lstmgen.engine.graph import step_model
    from lstmgen.engine.generate import coupled_ids, generate_ids
    from lstmgen.engine.ort import OrtModel, OrtStep
    from lstmgen.core.sampling import RandomNumbers, SamplingConfig, distribution, draw

    from bench.engines import step_numpy

    config = SamplingConfig(temperature=0.8, length=steps, seed=0)
    plain = OrtStep(step_model(model, "int8", layer_states=True), threads=threads)
    int8 = OrtModel(model, "int8", threads=threads)
    served = [OrtModel(model, weights, threads=threads, probabilities=True) for weights in ("float", "int8")]
    prompt = [1]
    sequence = list(generate_ids(int8, prompt, config, banned))
    clock = time.perf_counter

    def int8_step():
        started = clock()
        plain.forward(prompt)
        for token in sequence[:-1]:
            step_numpy(plain, token)
        return clock() - started

    def generation():
        started = clock()
        for _ in generate_ids(int8, prompt, config, banned):
            pass
        return clock() - started

    def torch_sampling():
        stream = RandomNumbers(0)
        started = clock()
        logits, state = plain.forward(prompt)
        for _ in range(steps):
            token = draw(distribution(logits, config, banned), stream.next()[0])
            logits, state = plain.step(token, state)
        return clock() - started

    sides = {"float": [], "int8": []}

    def side_by_side():
        float_s = int8_s = 0.0
        started = clock()
        for step in coupled_ids(*served, prompt, config, banned):
            float_s, int8_s = float_s + step.float_s, int8_s + step.int8_s
        sides["float"].append(float_s / steps * 1e6)
        sides["int8"].append(int8_s / steps * 1e6)
        return clock() - started

    loops = {"int8 step": int8_step, "generation (generate_ids)": generation,
             "torch sampling on the int8 step": torch_sampling, "side by side (coupled_ids), both sides": side_by_side}
    for fn in loops.values():  # warm-up
        fn()
    sides = {"float": [], "int8": []}
    times = {k: [] for k in loops}
    names = list(loops)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(loops[name]() / steps * 1e6)
    times["side by side: float side"] = sides["float"]
    times["side by side: int8 side"] = sides["int8"]
    out = {"us": {k: median_spread(v) for k, v in times.items()}, "excess": {}}
    for k in ("generation (generate_ids)", "torch sampling on the int8 step"):
        out["excess"][k] = median_spread([a / b - 1 for a, b in zip(times[k], times["int8 step"])])
    out["excess"]["side by side: int8 side"] = median_spread(
        [a / b - 1 for a, b in zip(sides["int8"], times["int8 step"])])
    return out


# --------------------------------------------------------------------------- one model


def bench_model(short: str, threads_options: list[int], rounds: int, steps: int, fidelity_tokens: int,
                variants: list[str], openvino: bool, parts: tuple[str, ...] = PARTS) -> dict:
    import contextlib

    from lstmgen.engine.graph import initializer_bytes, quantize_onnx_dynamic, step_model
    from lstmgen.engine.generate import banned_ids
    from lstmgen.hub import resolve
    from lstmgen.training.folder import size_bytes

    from bench.engines import peer_step_proto, quantize_dynamic

    name = NAMES.get(short, short)
    with contextlib.redirect_stdout(sys.stderr):
        loaded = resolve(name, use_hub=False)
    model = loaded.model.eval()
    torch_int8 = quantize_dynamic(model)
    load = {}
    clock = time.perf_counter
    started = clock()
    protos = {OUR_FLOAT: step_model(model, "float", layer_states=True)}
    load["our_float_graph_s"] = clock() - started
    started = clock()
    protos[OUR_INT8] = step_model(model, "int8", layer_states=True)
    load["our_int8_graph_s"] = clock() - started
    for variant in variants:
        protos[f"lstmgen {variant}"] = step_model(model, variant, layer_states=True)
    started = clock()
    protos[ORT_FP32] = peer_step_proto(model)
    load["peer_export_s"] = clock() - started
    started = clock()
    protos[ORT_INT8] = quantize_onnx_dynamic(protos[ORT_FP32], per_channel=False, op_types=None)
    load["peer_quantize_s"] = clock() - started
    protos[ORT_INT8_CHANNEL] = quantize_onnx_dynamic(protos[ORT_FP32], per_channel=True, op_types=None)
    app_int8 = step_model(model, "int8", layer_states=True, sampler=True, probabilities=True)
    sizes = {"float32 (torch)": size_bytes(model), TORCH_INT8: size_bytes(torch_int8),
             OUR_FLOAT: initializer_bytes(protos[OUR_FLOAT]), OUR_INT8: initializer_bytes(protos[OUR_INT8]),
             OUR_INT8 + " as the app builds it (sampler, probabilities)": initializer_bytes(app_int8),
             ORT_INT8: initializer_bytes(protos[ORT_INT8])}
    embedding_kind = {p.key: p.value for p in protos[OUR_INT8].metadata_props}.get("lstmgen.embedding")
    ov_model, ov_error = None, None
    if openvino:
        try:
            started = clock()
            with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
                warnings.simplefilter("ignore")
                ov_model = openvino_model(step_model(model, "float"))
            load["openvino_convert_compress_s"] = clock() - started
        except Exception as error:  # not installed, or it failed: reported, the rest still runs
            ov_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    result = {"model": short, "source": loaded.source, "vocab_size": model.vocab_size,
              "int8_weight_bytes": int8_weight_bytes(model), "load": load, "openvino_error": ov_error,
              "sizes": sizes, "embedding": embedding_kind, "by_threads": {}, "sampling_share": {}}

    for threads in threads_options if "speed" in parts else ():
        torch.set_num_threads(threads)
        engines = [torch_engine(TORCH_FLOAT, model, model), torch_engine(TORCH_INT8, torch_int8, model)]
        spins = (False, True) if threads > 1 else (False,)
        engines += [ort_engine(label + (SPINNING if spin else ""), proto, threads, spinning=spin)
                    for label, proto in protos.items() for spin in spins]
        if ov_model is not None:
            engines.append(openvino_engine(OV_INT8, ov_model, threads))
        for engine in engines:
            engine.greedy(30)  # warm-up
        times = {e.name: [] for e in engines}
        bandwidth = []
        for r in range(rounds):
            order = engines[r % len(engines):] + engines[: r % len(engines)]  # rotate who goes first
            for engine in order:
                if threads > 1:  # a spinning pool keeps its core busy for a moment after its last step
                    time.sleep(0.05)
                started = clock()
                engine.greedy(steps)
                times[engine.name].append((clock() - started) / steps * 1e6)
            bandwidth.append(read_bandwidth(result["int8_weight_bytes"], repeats=20))
        gb_s = [b["numpy_int64_sum_gb_s"] for b in bandwidth]
        floor_us = [result["int8_weight_bytes"] / (g * 1e9) * 1e6 for g in gb_s]

        def best(label: str) -> list[float]:  # per round, the faster of an engine's settings
            runs = [times[k] for k in (label, label + SPINNING) if k in times]
            return [min(values) for values in zip(*runs)]

        best_peer = [min(values) for values in zip(*(best(p) for p in PEERS_INT8 if p in times))]
        row = {"us_per_step": {k: median_spread(v) for k, v in times.items()},
               "read_bandwidth_gb_s": median_spread(gb_s),
               "torch_int8_sum_gb_s": median_spread([b["torch_int8_sum_gb_s"] for b in bandwidth]),
               "floor_us": median_spread(floor_us), "ratios": {}, "vs_best_peer": {}}
        for label in times:
            row["vs_best_peer"][label] = median_spread([a / b for a, b in zip(times[label], best_peer)])
        row["ratios"][f"{OUR_INT8} ÷ best peer int8"] = median_spread(
            [a / b for a, b in zip(best(OUR_INT8), best_peer)])
        row["ratios"][f"{OUR_FLOAT} ÷ {ORT_FP32}"] = median_spread(
            [a / b for a, b in zip(best(OUR_FLOAT), best(ORT_FP32))])
        row["ratios"][f"{OUR_INT8} ÷ floor"] = median_spread([a / b for a, b in zip(best(OUR_INT8), floor_us)])
        row["ratios"][f"{TORCH_INT8} ÷ best peer int8"] = median_spread(
            [a / b for a, b in zip(times[TORCH_INT8], best_peer)])
        row["build_s"] = {e.name: e.build_s for e in engines}
        result["by_threads"][str(threads)] = row

    for threads in threads_options if "sampling" in parts else ():
        torch.set_num_threads(threads)
        result["sampling_share"][str(threads)] = sampling_share(model, banned_ids(loaded.tokenizer), threads,
                                                                rounds, steps)
        result["sampling_share"][str(threads)]["load_average"] = os.getloadavg()

    if fidelity_tokens and "fidelity" in parts:
        torch.set_num_threads(threads_options[0])
        ids = validation_ids(name, fidelity_tokens, loaded.tokenizer)
        if isinstance(ids, str):
            result["fidelity"] = {"error": ids}
        else:
            reference = float_reference(model, ids)
            engines = [torch_engine(TORCH_INT8, torch_int8, model)]
            engines += [ort_engine(label, proto, threads_options[0]) for label, proto in protos.items()]
            engines.append(ort_engine(OUR_INT8 + " as the app builds it (sampler, probabilities)", app_int8,
                                      threads_options[0]))
            if ov_model is not None:
                engines.append(openvino_engine(OV_INT8, ov_model, threads_options[0]))
            result["fidelity"] = {"tokens": len(ids)}
            for engine in engines:
                result["fidelity"][engine.name] = fidelity(reference, engine.logits_for(ids), ids)
    return result


# --------------------------------------------------------------------------- report


def _loads(values) -> str:
    return "/".join(f"{v:.2f}" for v in values) if values else "not recorded"


def markdown(report: dict) -> str:
    lines = [f"Machine: {report['machine']}; torch {report['torch']}; onnxruntime {report['onnxruntime']}; "
             f"openvino {report.get('openvino') or 'not installed'}. {report['rounds']} rounds × {report['steps']} "
             f"greedy steps carrying the state, engines taking turns in one process; median [min–max] over rounds. "
             f"Load average (1, 5, 15 min) at the start {_loads(report.get('load_average_start'))}, at the end "
             f"{_loads(report.get('load_average_end'))}.", ""]
    for m in report["models"]:
        sizes = m.get("sizes")
        if sizes:
            base = sizes[TORCH_INT8]
            lines += [f"### {m['model']} (vocabulary {m['vocab_size']:,}): sizes (weights; our int8 embedding: "
                      f"{m.get('embedding')})", "", "| copy | MB | ÷ torch int8 | ÷ float32 |", "|---|---|---|---|"]
            for label, size in sizes.items():
                ratio = size / sizes["float32 (torch)"]
                lines.append(f"| {label} | {size / 1e6:.2f} | {size / base:.3f} | {ratio:.3f} |")
            lines.append("")
        for threads, row in m["by_threads"].items():
            us = row["us_per_step"]
            plural = "s" if threads != "1" else ""
            lines += [f"### {m['model']} (vocabulary {m['vocab_size']:,}), {threads} thread{plural}",
                      "", "| ratio (per round; each side at its faster setting) | median [min–max] |", "|---|---|"]
            for label, r in row["ratios"].items():
                lines.append(f"| {label} | {r['median']:.3f} [{r['min']:.3f}–{r['max']:.3f}] |")
            lines += ["", "| engine | µs per step | ÷ best peer int8 |", "|---|---|---|"]
            for label, t in sorted(us.items(), key=lambda item: item[1]["median"]):
                r = row["vs_best_peer"][label]
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
        for threads, share in (m.get("sampling_share") or {}).items():
            load = share.get("load_average")
            plural = "s" if threads != "1" else ""
            lines += [f"Sampling ({m['model']}, {threads} thread{plural}, temperature 0.8, top-k/top-p off, special "
                      f"tokens masked; load average at the end {load[0]:.2f}): µs per generated token, and its excess "
                      "over the int8 step (per round, median [min–max]):", "",
                      "| loop | µs per token | excess over the int8 step |", "|---|---|---|"]
            for label, t in share["us"].items():
                r = share["excess"].get(label)
                excess = ("(reference)" if label == "int8 step" else
                          f"{r['median']:+.1%} [{r['min']:+.1%}–{r['max']:+.1%}]" if r else "")
                lines.append(f"| {label} | {t['median']:.1f} [{t['min']:.1f}–{t['max']:.1f}] | {excess} |")
            lines.append("")
        lines += [f"Load: {', '.join(f'{k} {v:.2f}' for k, v in m['load'].items())}."
                  + (f" OpenVINO: {m['openvino_error']}" if m.get("openvino_error") else ""), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="char,subword,word")
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--fidelity-tokens", type=int, default=40000,
                        help="validation tokens (0: skip fidelity); at 3,000 the top-1 figures move by ±0.1%% between near-equal engines")
    parser.add_argument("--variants", default="", help="more int8 graphs of ours to time: int8-nbits,int8-dq,int4,...")
    parser.add_argument("--no-openvino", action="store_true")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"what to measure besides sizes: {', '.join(PARTS)}")
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
              "rounds": args.rounds, "steps": args.steps, "threads": threads, "load_average_start": os.getloadavg(),
              "models": []}
    parts = tuple(p for p in args.parts.split(",") if p)
    if set(parts) - set(PARTS):
        parser.error(f"--parts: choose from {', '.join(PARTS)}")
    variants = [v for v in args.variants.split(",") if v]
    for short in args.models.split(","):
        print(f"benchmarking {short} …", file=sys.stderr, flush=True)
        report["models"].append(bench_model(short, threads, args.rounds, args.steps, args.fidelity_tokens, variants,
                                            openvino_version is not None and not args.no_openvino
                                            and "speed" in parts, parts))
    report["load_average_end"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps(report, indent=2))
    (out / "peers.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
