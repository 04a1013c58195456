"""ONNX export of one stateful decoding step at batch 1: (token id, h, c) -> (next-token logits, h, c).

    python -m lstmgen export --onnx MODEL OUT [--weights float,int8] [--no-hub]

MODEL is a preset, a Hub repo id or a local folder; OUT a folder that gets `step.onnx` (float),
`step.int8.onnx` (int8 weights), each with `config.json`'s shapes in its metadata. Inputs:
`token` int64 (1, 1), `h` and `c` float32 (layers, 1, hidden); outputs `logits` float32 (vocab,),
`h_out` and `c_out` float32 (layers, 1, hidden). Carry `h_out`, `c_out` into the next step; zeros
start a text. (GraphNames holds every input's and output's name.)

The graph is written from the weights with onnx.helper, not traced, by small builders: the output
layer, the embedding, one LSTM layer, the sampler. Each layer's four gate products are one matrix
product over [x, h] concatenated, with the sigmoid gates side by side, so a step is one product per
layer plus the output layer and a few element-wise ops. Why each choice, with its measurements:
bench/step_graph.md.

Weights ("--weights"):
- float: the model's float32 weights (a tied output layer is a Gemm over the embedding's own rows).
- int8: weights in 8 bits, symmetric, each matrix in the format matrix_format picks: MatMulNBits (an
  ONNX Runtime contrib op, one scale per `block` inputs of each output, the input quantized per block
  at run time) where the blocks tile the inputs exactly, else DynamicQuantizeMatMul over int8 rows
  with one scale each.
- int8-nbits / int8-dq: every matrix in one of those two formats.
- int8-dynamic: the float graph through onnxruntime.quantization.quantize_dynamic (standard ONNX
  ops DynamicQuantizeLinear and MatMulInteger).
- int4: as int8-nbits with 4-bit weights.

The embedding: in the int8 kinds its rows are int8, one scale per row, a step gathering one. A tied
model shares the output layer's int8 matrix where that is a MatMulNBits one (a row gather; the
transposed DynamicQuantizeMatMul matrix would need a column); `share_tied` overrides. Where the
vocabulary is no larger than layer 0's input width, layer 0's input product is stored for every
token instead, and a step gathers one row of it.

The engine's graphs (lstmgen.engine.ort; exported files have none of these):
- `layer_states=True`: one h and one c input and output per layer ((1, 1, hidden) each), and every
  tensor (1, 1, features) to the logits: no Split, Concat or Reshape copy a step.
- `sampler=True` (with layer_states): the sampling distribution and the draw, in the step. Inputs
  `inverse_temperature` (1,), `bias` (padded vocab,: the output layer's bias, which the engine sets to
  b / T plus the mask, -inf for a masked token) and `u` (1,: the uniform number of the draw); outputs
  `probs` (softmax((W h) / T + bias), padded with zeros to whole blocks of `sampler_block` tokens) and
  `token_out`, the inverse CDF at u in two levels (blocks of 128, or one running sum where the
  vocabulary has at most 512 tokens). The temperature divides the hidden state, not the logits:
  W (h / T) + b / T is (W h + b) / T, and the int8 product's input quantization is scale-free. The
  settings the sampler serves are declared beside each setting (lstmgen.core.sampling.SamplingConfig).
  `probabilities=True` adds `model_probs`, the model's own distribution (temperature 1, nothing
  masked), for the app's "how sure was it" (inputs `temperature` and `mask` then carry what the bias
  does not).
- `sequence_model(step, layers, logits)`: an engine's step graph over a whole text in one run (an ONNX Scan
  of the step's own nodes, pruned to the outputs asked for), for reading every token's states or logits.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

OPSET = 17
MS_DOMAIN = "com.microsoft"
WEIGHT_KINDS = ("float", "int8", "int8-nbits", "int8-dq", "int8-dynamic", "int4")
FILE_NAMES = {"float": "step.onnx", "int8": "step.int8.onnx"}
DEFAULT_BLOCK = 128
DEFAULT_SAMPLER_BLOCK = 128  # tokens per block of the sampler's cumulative sum
SINGLE_LEVEL_MAX = 512  # up to this vocabulary size, the sampler's draw is one running sum (one block)


@dataclass(frozen=True)
class GraphNames:
    """The step graph's inputs and outputs, by name: the graphs are built with these, and
    lstmgen.engine.ort binds its buffers to them."""

    token: str = "token"  # int64 (1, 1)
    h: str = "h"  # the exported files' state: (layers, 1, hidden) each
    c: str = "c"
    h_out: str = "h_out"
    c_out: str = "c_out"
    logits: str = "logits"
    inverse_temperature: str = "inverse_temperature"  # the sampler's inputs (1,), (padded vocab,), (1,)
    bias: str = "bias"
    u: str = "u"
    temperature: str = "temperature"  # with probabilities: (1,) and the mask (padded vocab,)
    mask: str = "mask"
    probs: str = "probs"  # the sampler's outputs
    token_out: str = "token_out"
    model_probs: str = "model_probs"
    tokens: str = "tokens"  # the sequence graph's (sequence_model): int64 (T, 1, 1)
    cells: str = "cells"  # int64 (k,): the cells whose states it keeps
    h_seq: str = "h_seq"  # each kept layer's h and c after every token: (T, 1, 1, k)
    c_seq: str = "c_seq"
    logits_seq: str = "logits_seq"  # (T, 1, 1, padded vocab)
    h_last: str = "h_last"  # each kept layer's state after the last token: (1, 1, hidden)
    c_last: str = "c_last"

    def layer(self, state: str, i: int) -> str:
        """Layer i's state in the engine's graphs (one (1, 1, hidden) tensor each): h0, c0, h_out0, c_out0."""
        return f"{getattr(self, state)}{i}"


NAMES = GraphNames()


def _weights(model) -> dict:
    """The float model's weights as numpy, gates reordered from torch's (i, f, g, o) to (i, f, o, g) so
    that the three sigmoid gates sit side by side, input and hidden weights stacked as one matrix."""
    import torch

    with torch.no_grad():
        lstm = model.lstm
        hidden = lstm.hidden_size
        order = np.concatenate([np.arange(k * hidden, (k + 1) * hidden) for k in (0, 1, 3, 2)])
        layers = []
        for i in range(lstm.num_layers):
            w_ih = getattr(lstm, f"weight_ih_l{i}").detach().float().numpy()[order]
            w_hh = getattr(lstm, f"weight_hh_l{i}").detach().float().numpy()[order]
            bias = (getattr(lstm, f"bias_ih_l{i}") + getattr(lstm, f"bias_hh_l{i}")).detach().float().numpy()[order]
            # (4H, in + H): one row per output, the layout MatMulNBits takes; MatMul wants its transpose.
            layers.append((np.ascontiguousarray(np.concatenate([w_ih, w_hh], 1)), bias))
        return {
            "embedding": model.embedding.weight.detach().float().numpy().copy(),
            "layers": layers,
            "decoder": (model.decoder.weight.detach().float().numpy().copy(), model.decoder.bias.detach().float().numpy().copy()),
            "hidden": hidden, "num_layers": lstm.num_layers, "vocab": model.embedding.num_embeddings,
        }


def quantize_blockwise(w: np.ndarray, bits: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """w (N, K) -> MatMulNBits' packed B (N, k_blocks, block * bits / 8) and scales (N, k_blocks):
    symmetric, zero point 2**(bits-1) (the op's default), K padded with zeros to whole blocks."""
    n, k = w.shape
    blocks = -(-k // block)
    padded = np.zeros((n, blocks * block), np.float32)
    padded[:, :k] = w
    padded = padded.reshape(n, blocks, block)
    top = 2 ** (bits - 1) - 1
    scale = np.abs(padded).max(-1) / top
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(padded / scale[..., None]), -top - 1, top).astype(np.int32) + top + 1
    if bits == 8:
        packed = q.astype(np.uint8)
    elif bits == 4:
        packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    else:
        raise ValueError(f"bits must be 4 or 8, not {bits}")
    return packed, scale


def dequantize_blockwise(packed: np.ndarray, scale: np.ndarray, bits: int, k: int) -> np.ndarray:
    """The float matrix a blockwise-quantized one stands for (tests, fidelity checks)."""
    if bits == 4:
        q = np.stack([packed & 15, packed >> 4], -1).reshape(*packed.shape[:2], -1)
    else:
        q = packed
    w = (q.astype(np.float32) - 2 ** (bits - 1)) * scale[..., None]
    return w.reshape(w.shape[0], -1)[:, :k]


def matrix_format(kind: str, k: int, block: int = DEFAULT_BLOCK) -> str:
    """How one weight matrix with `k` inputs is stored in a graph of weights `kind`:
    "float"; "nbits8" / "nbits4" (MatMulNBits, blockwise scales); "dq" (DynamicQuantizeMatMul's
    per-tensor kernel over int8 rows that each have their own scale, applied after the product).
    "int8" picks per matrix what measured fastest at equal or better fidelity (bench/step_graph.md):
    MatMulNBits where its blocks tile the inputs exactly, else "dq" (MatMulNBits would pad the rows)."""
    if kind in ("float", "int8-dynamic"):
        return "float"
    if kind == "int8":
        return "nbits8" if k % block == 0 else "dq"
    return {"int8-nbits": "nbits8", "int8-dq": "dq", "int4": "nbits4"}[kind]


class _Graph:
    def __init__(self, weights: str, block: int):
        from onnx import TensorProto, helper

        self.helper, self.nodes, self.inits = helper, [], []
        self.float_type = TensorProto.FLOAT
        self.kind, self.block = weights, block
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, stem: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: int | list[str] = 1, domain: str | None = None,
           **attrs) -> list[str]:
        names = outputs if isinstance(outputs, list) else [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(self.helper.make_node(op_type, inputs, names, name=self.name(op_type), domain=domain, **attrs))
        return names

    def linear(self, x: str, w: np.ndarray, bias: np.ndarray | None, stem: str) -> str:
        """x (..., K) @ w.T + bias, w (N, K), in the format matrix_format picks."""
        return self.apply(x, self.prepare(w, bias, stem))

    def prepare(self, w: np.ndarray, bias: np.ndarray | None, stem: str, rows: bool = False) -> dict:
        """The initializers of x @ w.T + bias in the format matrix_format picks (no nodes yet), so that
        a tied embedding can use the output layer's weights before the layer itself runs. `rows`: a
        float matrix kept as it is, one row an output (Gemm with transB, as fast as MatMul at batch 1),
        so that a tied embedding gathers its rows instead of storing a copy."""
        n, k = w.shape
        bias = np.zeros(n, np.float32) if bias is None else bias.astype(np.float32)
        fmt = matrix_format(self.kind, k, self.block)
        layer = {"format": fmt, "n": n, "k": k}
        if fmt == "float" and rows:
            layer.update(format="float rows", w=self.const(stem + "_w", w), b=self.const(stem + "_b", bias))
        elif fmt == "float":
            # quantize_dynamic finds MatMul nodes with a constant B; the bias stays a float Add.
            layer.update(w=self.const(stem + "_w", np.ascontiguousarray(w.T)), b=self.const(stem + "_b", bias))
        elif fmt == "dq":
            # One scale per output row, applied after the product: the op's per-column scales take a
            # slower kernel (bench/step_graph.md), its per-tensor one
            # does not. The bias goes in divided by the scale: (acc + b / s) * s = acc * s + b.
            q, scale = quantize_rows(w)
            layer.update(w=self.const(stem + "_w", np.ascontiguousarray(q.T)),
                         one=self.const(stem + "_one", np.array(1.0, np.float32)),
                         zero=self.const(stem + "_zero", np.array(0, np.int8)),
                         b=self.const(stem + "_b", (bias / scale).astype(np.float32)),
                         scale=self.const(stem + "_scale", scale))
        else:
            bits = 8 if fmt == "nbits8" else 4
            block = self.block if bits == 8 else min(self.block, 32)
            packed, scale = quantize_blockwise(w, bits, block)
            layer.update(bits=bits, block=block, blocks=packed.shape[1], w=self.const(stem + "_w", packed),
                         scale=self.const(stem + "_scale", scale), b=self.const(stem + "_b", bias))
        return layer

    def apply(self, x: str, layer: dict, out: str | None = None) -> str:
        """x @ w.T + b for a prepared layer; `out` names the result (a graph output)."""
        fmt, out = layer["format"], [out] if out else 1
        if fmt == "float rows":  # Gemm takes a matrix: (1, 1, K) -> (1, K) -> (1, N)
            x = self.op("Reshape", [x, self.const("row_shape", np.array([1, layer["k"]], np.int64))])[0]
            y = self.op("Gemm", [x, layer["w"], layer["b"]], transB=1)[0]
            return self.op("Reshape", [y, self.const("out_shape", np.array([1, 1, layer["n"]], np.int64))], out)[0]
        if fmt == "float":
            return self.op("Add", [self.op("MatMul", [x, layer["w"]])[0], layer["b"]], out)[0]
        if fmt == "dq":
            y = self.op("DynamicQuantizeMatMul", [x, layer["w"], layer["one"], layer["zero"], layer["b"]],
                        domain=MS_DOMAIN)[0]
            return self.op("Mul", [y, layer["scale"]], out)[0]
        return self.op("MatMulNBits", [x, layer["w"], layer["scale"], "", "", layer["b"]], out, domain=MS_DOMAIN,
                       K=layer["k"], N=layer["n"], bits=layer["bits"], block_size=layer["block"],
                       accuracy_level=4)[0]  # int8 products of the quantized input (VNNI)

    def embedding_rows(self, embedding: np.ndarray) -> str:
        """The token's embedding row (1, 1, E) from int8 rows with one scale per row."""
        q, scale = quantize_rows(embedding)
        row = self.op("Cast", [self.op("Gather", [self.const("embedding_int8", q), NAMES.token], axis=0)[0]],
                      to=self.float_type)[0]
        row_scale = self.op("Gather", [self.const("embedding_scale", scale), NAMES.token], axis=0)[0]  # (1, 1)
        return self.op("Mul", [row, row_scale])[0]  # (1, 1, E) * (1, 1) broadcasts as (1, 1, 1)

    def shared_embedding(self, decoder: dict) -> str | None:
        """The token's embedding row read from a tied output layer's int8 weights (None: its format does
        not allow it, 4-bit weights being too coarse for the embedding)."""
        k = decoder["k"]
        if decoder["format"] == "float rows":
            return self.op("Gather", [decoder["w"], NAMES.token], axis=0)[0]
        if decoder["format"] == "dq":
            # B is (E, vocab): the token's column, times the token's row scale.
            column = self.op("Cast", [self.op("Gather", [decoder["w"], NAMES.token], axis=1)[0]], to=self.float_type)[0]
            scaled = self.op("Mul", [column, self.op("Gather", [decoder["scale"], NAMES.token], axis=0)[0]])[0]  # (E, 1, 1)
            return self.op("Reshape", [scaled, self.const("embedding_shape", np.array([1, 1, k], np.int64))])[0]
        if decoder["format"] == "nbits8":
            # B is (vocab, blocks, block) uint8 with zero point 128, scales (vocab, blocks).
            blocks = self.op("Cast", [self.op("Gather", [decoder["w"], NAMES.token], axis=0)[0]], to=self.float_type)[0]
            centred = self.op("Sub", [blocks, self.const("zero_point", np.array(128.0, np.float32))])[0]
            scale = self.op("Unsqueeze", [self.op("Gather", [decoder["scale"], NAMES.token], axis=0)[0],
                                          self.const("last_axis", np.array([-1], np.int64))])[0]  # (1, 1, blocks, 1)
            row = self.op("Reshape", [self.op("Mul", [centred, scale])[0],
                                      self.const("embedding_shape", np.array([1, 1, decoder["blocks"] * decoder["block"]],
                                                                            np.int64))])[0]
            if decoder["blocks"] * decoder["block"] != k:  # padded inputs: keep the first k
                row = self.op("Slice", [row, self.const("start", np.array([0], np.int64)),
                                        self.const("stop", np.array([k], np.int64)),
                                        self.const("axis", np.array([2], np.int64))])[0]
            return row
        return None


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """w (N, K) -> int8 rows (N, K) and one float32 scale per row (N,): symmetric, max |w| -> 127."""
    scale = (np.abs(w).max(1) / 127).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    return np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8), scale


def _sampler(g: _Graph, decoder: dict, x: str, blocks: int, block: int, probabilities: bool) -> list:
    """The output layer and the sampling distribution, drawn from in the graph (see the module's docstring).
    Returns the extra graph inputs."""
    from onnx import TensorProto, helper

    const = g.const
    # The temperature divides the last hidden state (hidden values), not the logits (vocabulary values):
    # (W h + b) / T = W (h / T) + b / T, the int8 product's input quantization being scale-free. The
    # bias becomes an input (the engine writes b / T + mask into it), its default the model's bias.
    bias = next(t for t in g.inits if t.name == decoder["b"])
    bias.name = decoder["b"] = NAMES.bias
    inputs = [helper.make_tensor_value_info(NAMES.inverse_temperature, TensorProto.FLOAT, [1]),
              helper.make_tensor_value_info(NAMES.bias, TensorProto.FLOAT, list(bias.dims)),
              helper.make_tensor_value_info(NAMES.u, TensorProto.FLOAT, [1])]
    padded = blocks * block
    z = g.apply(g.op("Mul", [x, NAMES.inverse_temperature])[0], decoder, None if probabilities else NAMES.logits)  # (1, 1, padded)
    if probabilities:  # the bias holds no mask: the model's own logits are z * T, then the mask
        inputs += [helper.make_tensor_value_info(NAMES.temperature, TensorProto.FLOAT, [1]),
                   helper.make_tensor_value_info(NAMES.mask, TensorProto.FLOAT, [padded])]
        g.op("Softmax", [g.op("Mul", [z, NAMES.temperature], [NAMES.logits])[0]], [NAMES.model_probs], axis=-1)
        z = g.op("Add", [z, NAMES.mask])[0]
    probs = g.op("Softmax", [z], [NAMES.probs], axis=-1)[0]
    # The draw: the inverse CDF at u (the softmax sums to 1) in two levels: the block whose running
    # start is the last at or below u, then the token inside it the same way. Counting starts at or
    # below u never runs past the end; where rounding puts u beyond a block's own sum, the count lands
    # on its last token, and the engine draws again in numpy if that token has probability 0. Each
    # op has a fixed cost however small (bench/step_graph.md), so there are few of them.
    rows = g.op("Reshape", [probs, const("blocks", np.array([blocks, block], np.int64))])[0]
    one = const("one", np.array(1, np.int64))

    def last_start_at_or_below_u(starts):
        at_or_below = g.op("Cast", [g.op("LessOrEqual", [starts, NAMES.u])[0]], to=TensorProto.INT64)[0]
        return g.op("Sub", [g.op("ReduceSum", [at_or_below], keepdims=1)[0], one])[0]

    row_axis = const("row_axis", np.array(1, np.int64))
    if blocks == 1:  # a small vocabulary: one running sum
        g.op("Identity", [last_start_at_or_below_u(g.op("CumSum", [rows, row_axis], exclusive=1)[0])], [NAMES.token_out])
        return inputs
    sums = g.op("ReduceSum", [rows, const("block_axis", np.array([1], np.int64))], keepdims=0)[0]
    starts = g.op("CumSum", [sums, const("block_starts_axis", np.array(0, np.int64))], exclusive=1)[0]
    b = last_start_at_or_below_u(starts)  # (1,)
    local = g.op("Add", [g.op("CumSum", [g.op("Gather", [rows, b], axis=0)[0], row_axis], exclusive=1)[0],
                         g.op("Gather", [starts, b], axis=0)[0]])[0]  # (1, block): the token starts
    index = last_start_at_or_below_u(local)  # (1, 1)
    g.op("Add", [g.op("Mul", [b, const("block_size", np.array(block, np.int64))])[0], index], [NAMES.token_out])
    return inputs


def sequence_model(step, layers: int, logits: bool):
    """The engine's step graph (`step`: a ModelProto step_model made with layer_states) over a whole text in one
    run: an ONNX Scan whose body is the step's own nodes, so that every token computes exactly what a step does
    (the int8 products quantize their input per step, as they do when stepping). The body keeps only what the
    outputs need: the bottom `layers` layers, and the output layer with `logits` (all layers then); a sampler's
    inputs are fixed at temperature 1 with nothing masked, as a fresh engine has them.

    Inputs: `tokens` int64 (T, 1, 1), `cells` int64 (k,), and each kept layer's state to start from (h0, c0, ...:
    (1, 1, hidden)). Outputs: each kept layer's h and c after every token, of the `cells` only (h_seq0, c_seq0,
    ...: (T, 1, 1, k)), its state after the last token (h_last0, c_last0, ...) and with `logits` the logits after
    every token (logits_seq: (T, 1, 1, padded vocab))."""
    from onnx import TensorProto, helper, numpy_helper

    graph = step.graph
    inputs = {value.name: value for value in graph.input}
    if NAMES.layer("h", 0) not in inputs:
        raise ValueError("the sequence graph is built from the engine's step graph (layer_states=True)")
    total = int(next(p.value for p in step.metadata_props if p.key == "lstmgen.layers"))
    layers = total if logits else layers
    if not 1 <= layers <= total:
        raise ValueError(f"layers must be between 1 and {total}, not {layers}")
    kept = range(layers)
    wanted = {NAMES.layer(k, i) for k in ("h_out", "c_out") for i in kept} | ({NAMES.logits} if logits else set())
    nodes = []
    for node in reversed(graph.node):  # the graph is in order: walk back from the outputs asked for
        if wanted.intersection(node.output):
            nodes.append(node)
            wanted.update(node.input)
    nodes.reverse()
    constants = [t for t in graph.initializer if t.name in wanted]
    for name, value in ((NAMES.inverse_temperature, 1.0), (NAMES.temperature, 1.0)):
        if name in wanted:
            constants.append(numpy_helper.from_array(np.array([value], np.float32), name))
    hidden = inputs[NAMES.layer("h", 0)].type.tensor_type.shape.dim[-1].dim_value

    def value(name, shape=None, kind=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, kind, shape)

    # Scan hands the body one token (1, 1); each step's states are also scan outputs, the kept cells only.
    states = [NAMES.layer(k, i) for k in "hc" for i in kept]
    states_out = [NAMES.layer(k, i) for k in ("h_out", "c_out") for i in kept]
    sequences = [NAMES.layer(k, i) for k in ("h_seq", "c_seq") for i in kept]
    nodes += [helper.make_node("Gather", [state, NAMES.cells], [seq], axis=2)
              for state, seq in zip(states_out, sequences)]
    if logits:
        sequences.append(NAMES.logits_seq)
        nodes.append(helper.make_node("Identity", [NAMES.logits], [NAMES.logits_seq]))
    body = helper.make_graph(nodes, "lstmgen_step", [value(n, [1, 1, hidden]) for n in states] +
                             [value(NAMES.token, [1, 1], TensorProto.INT64)],
                             [value(n, [1, 1, hidden]) for n in states_out] + [value(n) for n in sequences], constants)
    lasts = [NAMES.layer(k, i) for k in ("h_last", "c_last") for i in kept]
    scan = helper.make_node("Scan", states + [NAMES.tokens], lasts + sequences, body=body, num_scan_inputs=1)
    outer = helper.make_graph([scan], "lstmgen_sequence",
                              [value(NAMES.tokens, ["T", 1, 1], TensorProto.INT64),
                               value(NAMES.cells, ["k"], TensorProto.INT64)] + [value(n, [1, 1, hidden]) for n in states],
                              [value(n) for n in sequences] + [value(n, [1, 1, hidden]) for n in lasts])
    proto = helper.make_model(outer, opset_imports=list(step.opset_import), producer_name="lstmgen")
    proto.ir_version = step.ir_version
    helper.set_model_props(proto, {p.key: p.value for p in step.metadata_props})
    return proto


def is_tied(model) -> bool:
    """Whether the output layer's weight is the embedding (the same tensor, or equal values)."""
    import torch

    embedding, decoder = model.embedding.weight, model.decoder.weight
    return embedding is decoder or (embedding.shape == decoder.shape and bool(torch.equal(embedding, decoder)))


def step_model(model, weights: str = "float", block: int = DEFAULT_BLOCK, embedding: str = "int8",
               share_tied: bool | None = None, layer_states: bool = False, sampler: bool = False,
               sampler_block: int | None = None, probabilities: bool = False):
    """The ONNX ModelProto of one decoding step of `model` (an LSTMLanguageModel, float weights, left as
    it is). `weights` and `block` as in the module's docstring; `embedding` "int8" (int8 kinds only) or
    "float"; `share_tied` whether a tied model's int8 embedding reads the output layer's int8 matrix
    (default: where that is a row gather, a MatMulNBits decoder); `layer_states`, `sampler`, `sampler_block`
    and `probabilities` make the engine's graphs (the module's docstring)."""
    if weights not in WEIGHT_KINDS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_KINDS)}, not {weights!r}")
    if embedding not in ("int8", "float"):
        raise ValueError(f"embedding must be int8 or float, not {embedding!r}")
    if sampler and not layer_states:
        raise ValueError("the sampler is built for the engine's graphs: layer_states=True")
    w = _weights(model)
    layers, hidden, vocab = w["num_layers"], w["hidden"], w["vocab"]
    g, tied = _Graph(weights, block), is_tied(model)
    decoder, padded, sampler_block = _output_layer(g, w, tied, sampler, sampler_block)
    x, projected, embedding_kind, first_layer = _embedding(g, w, decoder, tied, embedding, share_tied)
    h_in, c_in = _state_inputs(g, layers, layer_states)
    sizes = g.const("gate_split", np.array([3 * hidden, hidden], np.int64))
    hs, cs = [], []
    for i, (weight, bias) in enumerate([first_layer] + w["layers"][1:]):
        h_out, c_out = NAMES.layer("h_out", i), NAMES.layer("c_out", i)
        if not layer_states:  # the exported files: one layer's state is the output itself, else concatenated
            h_out, c_out = (NAMES.h_out, NAMES.c_out) if layers == 1 else (None, None)
        x, c_new = _layer(g, x, h_in[i], c_in[i], weight, bias, sizes, f"lstm_l{i}",
                          projected if i == 0 else None, h_out, c_out)
        hs.append(x)
        cs.append(c_new)
    if layers > 1 and not layer_states:
        g.op("Concat", hs, [NAMES.h_out], axis=0)
        g.op("Concat", cs, [NAMES.c_out], axis=0)
    inputs, outputs = _interface(layers, hidden, padded, layer_states, sampler, probabilities)
    if sampler:
        inputs += _sampler(g, decoder, x, padded // sampler_block, sampler_block, probabilities)
    elif layer_states:
        g.apply(x, decoder, NAMES.logits)
    else:
        g.op("Reshape", [g.apply(x, decoder), g.const("vocab", np.array([padded], np.int64))], [NAMES.logits])
    properties = {"lstmgen.weights": weights, "lstmgen.layers": str(layers), "lstmgen.hidden": str(hidden),
                  "lstmgen.vocab": str(vocab), "lstmgen.block": str(block), "lstmgen.embedding": embedding_kind}
    if sampler:
        properties["lstmgen.sampler_block"] = str(sampler_block)
    return _model_proto(g, inputs, outputs, weights, properties)


def _output_layer(g: _Graph, w: dict, tied: bool, sampler: bool, sampler_block: int | None):
    """The output layer's initializers (no nodes yet: a tied embedding may read them first), the logits'
    length (padded to whole sampler blocks, the extra logits always -inf) and the sampler's block."""
    decoder_weight, decoder_bias = w["decoder"]
    vocab, hidden = w["vocab"], w["hidden"]
    if sampler_block is None:  # one running sum where the vocabulary is small, else two levels
        sampler_block = -(-vocab // 16) * 16 if vocab <= SINGLE_LEVEL_MAX else DEFAULT_SAMPLER_BLOCK
    padded = -(-vocab // sampler_block) * sampler_block if sampler else vocab
    if padded > vocab:
        decoder_weight = np.concatenate([decoder_weight, np.zeros((padded - vocab, hidden), np.float32)])
        decoder_bias = np.concatenate([decoder_bias, np.full(padded - vocab, -np.inf, np.float32)])
    decoder = g.prepare(decoder_weight, decoder_bias, "decoder", rows=g.kind == "float" and tied)
    return decoder, padded, sampler_block


def _embedding(g: _Graph, w: dict, decoder: dict, tied: bool, embedding: str, share_tied: bool | None):
    """Layer 0's input: (x, projected, the embedding's kind, layer 0's (weight, bias)). Where the
    vocabulary is no larger than layer 0's input width, `projected` is layer 0's input product looked
    up per token (x None); else x is the token's embedding row: the tied output layer's (shared), int8
    rows of its own, or float rows. Layer 0's weights come back rescaled where its product is a
    DynamicQuantizeMatMul (see `balance`); `w` is only read."""
    first_weight, first_bias = w["layers"][0]
    inputs_0 = first_weight.shape[1] - w["hidden"]
    if w["vocab"] <= inputs_0:  # the table is no larger than the float input matrix it replaces
        table = w["embedding"] @ first_weight[:, :inputs_0].T + first_bias
        projected = g.op("Gather", [g.const("input_projection", table.astype(np.float32)), NAMES.token], axis=0)[0]
        return None, projected, "projected", (first_weight, first_bias)
    int8_embedding = embedding == "int8" and g.kind not in ("float", "int8-dynamic")
    if share_tied is None:  # where the shared row is a row of the decoder's matrix, not a column
        share_tied = decoder["format"] == "nbits8"
    if tied and (decoder["format"] == "float rows" or int8_embedding and share_tied):
        x = g.shared_embedding(decoder)
        if x is not None:
            return x, None, "shared", (first_weight, first_bias)
    rows = w["embedding"]
    if matrix_format(g.kind, first_weight.shape[1], g.block) == "dq":
        # Layer 0's product quantizes [x, h] with one scale: rows of typical largest value ~0.6 beside h
        # in (-1, 1) would get fewer levels than h. The rows are scaled to h's range and their weights by
        # the inverse (exact in float), which balances the two at no cost in speed.
        balance = 1.0 / float(np.abs(rows).max(1).mean())
        rows = rows * balance
        first_weight = np.concatenate([first_weight[:, :inputs_0] / balance, first_weight[:, inputs_0:]], 1)
    if int8_embedding:
        return g.embedding_rows(rows), None, "int8", (first_weight, first_bias)
    return g.op("Gather", [g.const("embedding", rows), NAMES.token], axis=0)[0], None, "float", (first_weight, first_bias)


def _state_inputs(g: _Graph, layers: int, layer_states: bool) -> tuple[list[str], list[str]]:
    """Each layer's h and c: the engine's inputs one a layer, or the exported files' (layers, 1, hidden) split."""
    if layer_states:
        return [NAMES.layer("h", i) for i in range(layers)], [NAMES.layer("c", i) for i in range(layers)]
    h_in = g.op("Split", [NAMES.h], layers, axis=0) if layers > 1 else [NAMES.h]
    c_in = g.op("Split", [NAMES.c], layers, axis=0) if layers > 1 else [NAMES.c]
    return h_in, c_in


def _layer(g: _Graph, x: str | None, h: str, c: str, weight: np.ndarray, bias: np.ndarray, sizes: str, stem: str,
           projected: str | None = None, h_out: str | None = None, c_out: str | None = None) -> tuple[str, str]:
    """One LSTM layer's step: the four gates as one product over [x, h] (or `projected`, layer 0's input
    product already looked up, plus the product over h), the sigmoid gates side by side (i, f, o), then
    g. Returns (h, c), named `h_out` and `c_out` where given (graph outputs)."""
    if projected is not None:
        hidden = weight.shape[0] // 4
        gates = g.op("Add", [projected, g.linear(h, weight[:, -hidden:], None, "lstm_hh_l0")])[0]
    else:
        gates = g.linear(g.op("Concat", [x, h], axis=2)[0], weight, bias, stem)
    sig, cand = g.op("Split", [gates, sizes], 2, axis=2)
    in_gate, forget, out_gate = g.op("Split", [g.op("Sigmoid", [sig])[0]], 3, axis=2)
    cand = g.op("Tanh", [cand])[0]
    c_new = g.op("Add", [g.op("Mul", [forget, c])[0], g.op("Mul", [in_gate, cand])[0]], [c_out] if c_out else 1)[0]
    h_new = g.op("Mul", [out_gate, g.op("Tanh", [c_new])[0]], [h_out] if h_out else 1)[0]
    return h_new, c_new


def _interface(layers: int, hidden: int, padded: int, layer_states: bool, sampler: bool, probabilities: bool):
    """The graph's inputs and outputs but the sampler's inputs (which _sampler declares): the engine's graphs
    (layer_states) keep every tensor (1, 1, features), an output reshaped to (vocab,) being a copy of the
    logits each step; the exported files take the state as (layers, 1, hidden) and give (vocab,) logits."""
    from onnx import TensorProto, helper

    def value(name, shape, kind=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, kind, shape)

    vector = [1, 1, padded] if layer_states else [padded]
    inputs, outputs = [value(NAMES.token, [1, 1], TensorProto.INT64)], [value(NAMES.logits, vector)]
    if layer_states:
        inputs += [value(NAMES.layer(k, i), [1, 1, hidden]) for k in "hc" for i in range(layers)]
        outputs += [value(NAMES.layer(k, i), [1, 1, hidden]) for k in ("h_out", "c_out") for i in range(layers)]
    else:
        inputs += [value(getattr(NAMES, k), [layers, 1, hidden]) for k in "hc"]
        outputs += [value(getattr(NAMES, k), [layers, 1, hidden]) for k in ("h_out", "c_out")]
    if sampler:
        outputs += [value(NAMES.probs, vector), value(NAMES.token_out, [1, 1], TensorProto.INT64)]
        if probabilities:
            outputs.append(value(NAMES.model_probs, vector))
    return inputs, outputs


def _model_proto(g: _Graph, inputs: list, outputs: list, weights: str, properties: dict):
    """The graph as a ModelProto, with its properties; int8-dynamic through onnxruntime's quantizer."""
    from onnx import checker, helper

    graph = helper.make_graph(g.nodes, "lstmgen_step", inputs, outputs, g.inits)
    imports = [helper.make_opsetid("", OPSET)]
    if weights not in ("float", "int8-dynamic"):
        imports.append(helper.make_opsetid(MS_DOMAIN, 1))
    proto = helper.make_model(graph, opset_imports=imports, producer_name="lstmgen")
    proto.ir_version = 8  # ONNX Runtime 1.14+ reads it
    if weights in ("float", "int8-dynamic"):
        checker.check_model(proto)
    helper.set_model_props(proto, properties)
    if weights == "int8-dynamic":
        proto = quantize_onnx_dynamic(proto)
    return proto


def initializer_bytes(proto) -> int:
    """Bytes of a graph's weights (each initializer once, however many nodes read it)."""
    return sum(len(t.raw_data) or t.ByteSize() for t in proto.graph.initializer)


def quantize_onnx_dynamic(proto, per_channel: bool = True, op_types: list[str] | None = ("MatMul",)):
    """onnxruntime.quantization.quantize_dynamic on an in-memory model (it works on files). `op_types`
    None quantizes every kind it can (an ONNX LSTM op becomes DynamicQuantizeLSTM)."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(proto, src)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=list(op_types) if op_types else None)
        return onnx.load(dst)


def export(model, out: str | Path, weights: tuple[str, ...] = ("float", "int8"), **options) -> list[Path]:
    """Write one ONNX file per weight kind into the folder `out`; returns their paths."""
    import onnx

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in weights:
        path = out / FILE_NAMES.get(kind, f"step.{kind}.onnx")
        onnx.save(step_model(model, kind, **options), path)
        paths.append(path)
    return paths
