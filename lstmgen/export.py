"""ONNX export of one stateful decoding step at batch 1: (token id, h, c) -> (next-token logits, h, c).

    python -m lstmgen export --onnx MODEL OUT [--weights float,int8] [--no-hub]

MODEL is a preset, a Hub repo id or a local folder; OUT a folder that gets `step.onnx` (float),
`step.int8.onnx` (int8 weights), each with `config.json`'s shapes in its metadata. Inputs:
`token` int64 (1, 1), `h` and `c` float32 (layers, 1, hidden); outputs `logits` float32 (vocab,),
`h_out` and `c_out` float32 (layers, 1, hidden). Carry `h_out`, `c_out` into the next step; zeros
start a text.

The graph is written from the weights with onnx.helper, not traced: no torch exporter is involved
(torch's TorchScript exporter is deprecated, its dynamo exporter needs onnxscript), building takes
milliseconds, and the graph is the one ONNX Runtime runs fastest at batch 1 (lstmgen/ort_engine.py
measures the choices): each layer's four gate products are one matrix product over [x, h]
concatenated, with the sigmoid gates side by side, so a step is one product per layer plus the
output layer and a few element-wise ops.

Weights ("--weights"):
- float: the model's float32 weights (a tied output layer is a Gemm over the embedding's own rows).
- int8: weights in 8 bits, symmetric, each matrix in the format that measured fastest at equal or
  better fidelity (matrix_format): MatMulNBits (an ONNX Runtime contrib op, one scale per `block`
  inputs of each output, the input quantized per block at run time, VNNI products) where the blocks
  tile the inputs exactly, else DynamicQuantizeMatMul over int8 rows with one scale each.
- int8-nbits / int8-dq: every matrix in one of those two formats.
- int8-dynamic: the float graph through onnxruntime.quantization.quantize_dynamic (standard ONNX
  ops DynamicQuantizeLinear and MatMulInteger, one scale per tensor or per channel).
- int4: as int8-nbits with 4-bit weights (half the bytes; a visible fidelity cost).

The embedding ("embedding"): in the int8 kinds its rows are int8, one scale per row, a step
gathering one. A tied model (the subword and word presets) keeps one int8 matrix for both roles where
the output layer is a MatMulNBits one (the subword preset's 384 inputs); a DynamicQuantizeMatMul
output layer (the word preset's 400) stores its matrix transposed, and gathering a column of it cost
~26 µs a step, so by default the embedding keeps int8 rows of its own (`share_tied=True` shares).
Where the vocabulary is no larger than the embedding width (the char preset: 65 tokens, 128 wide),
`project_input` stores layer 0's input product for every token instead (65 x 2,048 floats): a step
gathers one row, and reads 256 KB fewer int8 weights (1 MB in float), ~5% of the int8 step.

The engine's graphs (lstmgen/ort_engine.py; exported files have neither):
- `layer_states=True`: one h and one c input and output per layer ((1, 1, hidden) each), and every
  tensor (1, 1, features) to the logits: no Split, Concat or Reshape copy a step (~4 µs).
- `sampler=True` (with layer_states): the sampling distribution and the draw, in the step. Inputs
  `inverse_temperature` (1,), `bias` (padded vocab,: the output layer's bias, which the engine sets to
  b / T plus the mask, -inf for a masked token) and `u` (1,: the uniform number of the draw); outputs
  `probs` (softmax((W h) / T + bias), padded with zeros to whole blocks of `sampler_block` tokens) and
  `token_out`, the inverse CDF at u in two levels (blocks of 128, or one running sum where the
  vocabulary has at most 512 tokens). The temperature divides the hidden state, not the logits:
  W (h / T) + b / T is (W h + b) / T, and the int8 product's input quantization is scale-free.
  `probabilities=True` adds `model_probs`, the model's own distribution (temperature 1, nothing
  masked), for the app's "how sure was it" (inputs `temperature` and `mask` then carry what the bias
  does not). ONNX Runtime's CumSum over a whole vocabulary costs ~29 µs (one element at a time), and
  every op costs ~0.5 µs however small, hence the two levels and the few ops.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

OPSET = 17
MS_DOMAIN = "com.microsoft"
WEIGHT_KINDS = ("float", "int8", "int8-nbits", "int8-dq", "int8-dynamic", "int4")
FILE_NAMES = {"float": "step.onnx", "int8": "step.int8.onnx"}
DEFAULT_BLOCK = 128
DEFAULT_SAMPLER_BLOCK = 128  # tokens per block of the sampler's cumulative sum
SINGLE_LEVEL_MAX = 512  # up to this vocabulary size, the sampler's draw is one running sum (one block)


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
            "head": (model.decoder.weight.detach().float().numpy().copy(), model.decoder.bias.detach().float().numpy().copy()),
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
    "int8" picks per matrix what measured fastest at equal or better fidelity: MatMulNBits where its
    blocks tile the inputs exactly, else "dq" (MatMulNBits pads a 400-input row to 512: 20% slower)."""
    if kind in ("float", "int8-dynamic"):
        return "float"
    if kind == "int8":
        return "nbits8" if k % block == 0 else "dq"
    return {"int8-nbits": "nbits8", "int8-dq": "dq", "int4": "nbits4"}[kind]


class _Graph:
    def __init__(self, weights: str, block: int, accuracy: str):
        from onnx import TensorProto, helper

        self.helper, self.nodes, self.inits = helper, [], []
        self.float_type = TensorProto.FLOAT
        self.kind, self.block, self.accuracy = weights, block, accuracy
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
            # slower kernel (measured 1.2-1.5x on a 400 x 13,134 output layer), its per-tensor one
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
        level = {"int8": 4, "float": 1, "unset": 0}[self.accuracy]
        return self.op("MatMulNBits", [x, layer["w"], layer["scale"], "", "", layer["b"]], out, domain=MS_DOMAIN,
                       K=layer["k"], N=layer["n"], bits=layer["bits"], block_size=layer["block"],
                       accuracy_level=level)[0]

    def embedding_rows(self, embedding: np.ndarray) -> str:
        """The token's embedding row (1, 1, E) from int8 rows with one scale per row."""
        q, scale = quantize_rows(embedding)
        row = self.op("Cast", [self.op("Gather", [self.const("embedding_int8", q), "token"], axis=0)[0]],
                      to=self.float_type)[0]
        row_scale = self.op("Gather", [self.const("embedding_scale", scale), "token"], axis=0)[0]  # (1, 1)
        return self.op("Mul", [row, row_scale])[0]  # (1, 1, E) * (1, 1) broadcasts as (1, 1, 1)

    def shared_embedding(self, head: dict) -> str | None:
        """The token's embedding row read from a tied output layer's int8 weights (None: its format does
        not allow it, 4-bit weights being too coarse for the embedding)."""
        k = head["k"]
        if head["format"] == "float rows":
            return self.op("Gather", [head["w"], "token"], axis=0)[0]
        if head["format"] == "dq":
            # B is (E, vocab): the token's column, times the token's row scale.
            column = self.op("Cast", [self.op("Gather", [head["w"], "token"], axis=1)[0]], to=self.float_type)[0]
            scaled = self.op("Mul", [column, self.op("Gather", [head["scale"], "token"], axis=0)[0]])[0]  # (E, 1, 1)
            return self.op("Reshape", [scaled, self.const("embedding_shape", np.array([1, 1, k], np.int64))])[0]
        if head["format"] == "nbits8":
            # B is (vocab, blocks, block) uint8 with zero point 128, scales (vocab, blocks).
            blocks = self.op("Cast", [self.op("Gather", [head["w"], "token"], axis=0)[0]], to=self.float_type)[0]
            centred = self.op("Sub", [blocks, self.const("zero_point", np.array(128.0, np.float32))])[0]
            scale = self.op("Unsqueeze", [self.op("Gather", [head["scale"], "token"], axis=0)[0],
                                          self.const("last_axis", np.array([-1], np.int64))])[0]  # (1, 1, blocks, 1)
            row = self.op("Reshape", [self.op("Mul", [centred, scale])[0],
                                      self.const("embedding_shape", np.array([1, 1, head["blocks"] * head["block"]],
                                                                            np.int64))])[0]
            if head["blocks"] * head["block"] != k:  # padded inputs: keep the first k
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


def _sampler(g: _Graph, head: dict, x: str, blocks: int, block: int, probabilities: bool) -> list:
    """The output layer and the sampling distribution, drawn from in the graph (see the module's docstring).
    Returns the extra graph inputs."""
    from onnx import TensorProto, helper

    const = g.const
    # The temperature divides the last hidden state (hidden values), not the logits (vocabulary values):
    # (W h + b) / T = W (h / T) + b / T, the int8 product's input quantization being scale-free. The
    # bias becomes an input (the engine writes b / T + mask into it), its default the model's bias.
    bias = next(t for t in g.inits if t.name == head["b"])
    bias.name = head["b"] = "bias"
    inputs = [helper.make_tensor_value_info("inverse_temperature", TensorProto.FLOAT, [1]),
              helper.make_tensor_value_info("bias", TensorProto.FLOAT, list(bias.dims)),
              helper.make_tensor_value_info("u", TensorProto.FLOAT, [1])]
    padded = blocks * block
    z = g.apply(g.op("Mul", [x, "inverse_temperature"])[0], head, None if probabilities else "logits")  # (1, 1, padded)
    if probabilities:  # the bias holds no mask: the model's own logits are z * T, then the mask
        inputs += [helper.make_tensor_value_info("temperature", TensorProto.FLOAT, [1]),
                   helper.make_tensor_value_info("mask", TensorProto.FLOAT, [padded])]
        g.op("Softmax", [g.op("Mul", [z, "temperature"], ["logits"])[0]], ["model_probs"], axis=-1)
        z = g.op("Add", [z, "mask"])[0]
    probs = g.op("Softmax", [z], ["probs"], axis=-1)[0]
    # The draw: the inverse CDF at u (the softmax sums to 1) in two levels: the block whose running
    # start is the last at or below u, then the token inside it the same way. Counting starts at or
    # below u never runs past the end; where rounding puts u beyond a block's own sum, the count lands
    # on its last token, and the engine draws again in numpy if that token has probability 0. Each
    # op here costs ~0.5 µs however small, so there are few of them.
    rows = g.op("Reshape", [probs, const("blocks", np.array([blocks, block], np.int64))])[0]
    one = const("one", np.array(1, np.int64))

    def last_start_at_or_below_u(starts):
        at_or_below = g.op("Cast", [g.op("LessOrEqual", [starts, "u"])[0]], to=TensorProto.INT64)[0]
        return g.op("Sub", [g.op("ReduceSum", [at_or_below], keepdims=1)[0], one])[0]

    row_axis = const("row_axis", np.array(1, np.int64))
    if blocks == 1:  # a small vocabulary: one running sum
        g.op("Identity", [last_start_at_or_below_u(g.op("CumSum", [rows, row_axis], exclusive=1)[0])], ["token_out"])
        return inputs
    sums = g.op("ReduceSum", [rows, const("block_axis", np.array([1], np.int64))], keepdims=0)[0]
    starts = g.op("CumSum", [sums, const("block_starts_axis", np.array(0, np.int64))], exclusive=1)[0]
    b = last_start_at_or_below_u(starts)  # (1,)
    local = g.op("Add", [g.op("CumSum", [g.op("Gather", [rows, b], axis=0)[0], row_axis], exclusive=1)[0],
                         g.op("Gather", [starts, b], axis=0)[0]])[0]  # (1, block): the token starts
    index = last_start_at_or_below_u(local)  # (1, 1)
    g.op("Add", [g.op("Mul", [b, const("block_size", np.array(block, np.int64))])[0], index], ["token_out"])
    return inputs


def is_tied(model) -> bool:
    """Whether the output layer's weight is the embedding (the same tensor, or equal values)."""
    import torch

    embedding, decoder = model.embedding.weight, model.decoder.weight
    return embedding is decoder or (embedding.shape == decoder.shape and bool(torch.equal(embedding, decoder)))


def step_model(model, weights: str = "float", block: int = DEFAULT_BLOCK, accuracy: str = "int8",
               per_channel: bool = True, fuse: bool = True, embedding: str = "int8", sampler: bool = False,
               sampler_block: int | None = None, share_tied: bool | None = None,
               project_input: bool | None = None, layer_states: bool = False, probabilities: bool = False):
    """The ONNX ModelProto of one decoding step of `model` (an LSTMLanguageModel, float weights).
    `fuse=False` keeps each layer's input and hidden products apart (two products and an Add);
    `embedding` "int8" (int8 kinds only; shared with a tied output layer) or "float"; `sampler` adds
    the sampling inputs and outputs (see the module's docstring); `share_tied` whether a tied model's
    int8 embedding reads the output layer's int8 matrix (default: where that is a row gather, i.e. a
    MatMulNBits head; a DynamicQuantizeMatMul head stores the matrix transposed, and gathering a column
    of it cost ~26 µs a step on the word model, 177.6 against 151.1 µs, so its embedding gets int8
    rows of its own: 13.25 MB against 7.94 MB shared)."""
    from onnx import TensorProto, checker, helper

    if weights not in WEIGHT_KINDS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_KINDS)}, not {weights!r}")
    if embedding not in ("int8", "float"):
        raise ValueError(f"embedding must be int8 or float, not {embedding!r}")
    w = _weights(model)
    layers, hidden, vocab = w["num_layers"], w["hidden"], w["vocab"]
    g = _Graph(weights, block, accuracy)
    head_weight, head_bias = w["head"]
    if sampler_block is None:  # one running sum where the vocabulary is small, else two levels
        sampler_block = -(-vocab // 16) * 16 if vocab <= SINGLE_LEVEL_MAX else DEFAULT_SAMPLER_BLOCK
    padded = -(-vocab // sampler_block) * sampler_block if sampler else vocab
    if padded > vocab:  # the sampler's blocks tile the logits: extra outputs that are always -inf
        head_weight = np.concatenate([head_weight, np.zeros((padded - vocab, hidden), np.float32)])
        head_bias = np.concatenate([head_bias, np.full(padded - vocab, -np.inf, np.float32)])
    tied = is_tied(model)
    head = g.prepare(head_weight, head_bias, "decoder", rows=weights == "float" and tied)
    # Tensors stay (1, 1, features) throughout: no reshapes on the way in or out but the logits'.
    int8_embedding = embedding == "int8" and weights not in ("float", "int8-dynamic")
    if share_tied is None:  # where the shared row is a row of the head's matrix (a column costs ~26 µs a step)
        share_tied = head["format"] == "nbits8"
    first_weight, first_bias = w["layers"][0]
    inputs_0 = first_weight.shape[1] - hidden
    if project_input is None:  # where the table is no larger than the float input matrix it replaces
        project_input = vocab <= inputs_0
    x = None
    if project_input:  # layer 0's input product for every token, in float32: a step gathers one row
        embedding_kind = "projected"
        table = w["embedding"] @ first_weight[:, :inputs_0].T + first_bias
        projected = g.op("Gather", [g.const("input_projection", table.astype(np.float32)), "token"], axis=0)[0]
    else:
        x = g.shared_embedding(head) if tied and (head["format"] == "float rows" or int8_embedding and share_tied) else None
        embedding_kind = "shared" if x is not None else "int8" if int8_embedding else "float"
    if x is None and not project_input:
        embedding = w["embedding"]
        if matrix_format(weights, first_weight.shape[1], block) == "dq":
            # Layer 0's product quantizes [x, h] with one scale: rows of typical largest value ~0.6 beside
            # h in (-1, 1) would get fewer levels than h. Scaling the rows to h's range, and their weights
            # by the inverse (exact in float), balances the two: top-1 agreement with float on the word
            # model 99.05% -> 99.14% (12,000 validation tokens), at no cost in speed.
            balance = 1.0 / float(np.abs(embedding).max(1).mean())
            embedding = embedding * balance
            w["layers"][0] = (np.concatenate([first_weight[:, :inputs_0] / balance, first_weight[:, inputs_0:]], 1),
                              first_bias)
        x = (g.embedding_rows(embedding) if int8_embedding
             else g.op("Gather", [g.const("embedding", embedding), "token"], axis=0)[0])
    if layer_states:
        h_in, c_in = [f"h{i}" for i in range(layers)], [f"c{i}" for i in range(layers)]
    else:
        h_in = g.op("Split", ["h"], layers, axis=0) if layers > 1 else ["h"]
        c_in = g.op("Split", ["c"], layers, axis=0) if layers > 1 else ["c"]
    sizes = g.const("gate_split", np.array([3 * hidden, hidden], np.int64))
    hs, cs = [], []
    for i, (weight, bias) in enumerate(w["layers"]):
        last = i == layers - 1
        if i == 0 and project_input:
            gates = g.op("Add", [projected, g.linear(h_in[0], weight[:, inputs_0:], None, "lstm_hh_l0")])[0]
        elif fuse:
            gates = g.linear(g.op("Concat", [x, h_in[i]], axis=2)[0], weight, bias, f"lstm_l{i}")
        else:
            inputs = weight.shape[1] - hidden
            gates = g.op("Add", [g.linear(x, weight[:, :inputs], bias, f"lstm_ih_l{i}"),
                                 g.linear(h_in[i], weight[:, inputs:], None, f"lstm_hh_l{i}")])[0]
        sig, cand = g.op("Split", [gates, sizes], 2, axis=2)
        in_gate, forget, out_gate = g.op("Split", [g.op("Sigmoid", [sig])[0]], 3, axis=2)
        cand = g.op("Tanh", [cand])[0]
        c_name = [f"c_out{i}"] if layer_states else ["c_out"] if last and layers == 1 else 1
        h_name = [f"h_out{i}"] if layer_states else ["h_out"] if last and layers == 1 else 1
        c_new = g.op("Add", [g.op("Mul", [forget, c_in[i]])[0], g.op("Mul", [in_gate, cand])[0]], c_name)[0]
        x = g.op("Mul", [out_gate, g.op("Tanh", [c_new])[0]], h_name)[0]
        hs.append(x)
        cs.append(c_new)
    if layers > 1 and not layer_states:
        g.op("Concat", hs, ["h_out"], axis=0)
        g.op("Concat", cs, ["c_out"], axis=0)
    inputs = [helper.make_tensor_value_info("token", TensorProto.INT64, [1, 1])]
    # The engine's graphs (layer_states) keep every tensor (1, 1, features): an output reshaped to
    # (vocab,) is a copy of the logits each step.
    vector = [1, 1, padded] if layer_states else [padded]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, vector)]
    if layer_states:
        one = [1, 1, hidden]
        inputs += [helper.make_tensor_value_info(f"{k}{i}", TensorProto.FLOAT, one) for k in "hc" for i in range(layers)]
        outputs += [helper.make_tensor_value_info(f"{k}_out{i}", TensorProto.FLOAT, one)
                    for k in "hc" for i in range(layers)]
    else:
        state = [layers, 1, hidden]
        inputs += [helper.make_tensor_value_info(k, TensorProto.FLOAT, state) for k in "hc"]
        outputs += [helper.make_tensor_value_info(f"{k}_out", TensorProto.FLOAT, state) for k in "hc"]
    if sampler:
        inputs += _sampler(g, head, x, padded // sampler_block, sampler_block, probabilities)
        if not layer_states:
            raise ValueError("the sampler is built for the engine's graphs: layer_states=True")
        outputs += [helper.make_tensor_value_info("probs", TensorProto.FLOAT, vector),
                    helper.make_tensor_value_info("token_out", TensorProto.INT64, [1, 1])]
        if probabilities:
            outputs.append(helper.make_tensor_value_info("model_probs", TensorProto.FLOAT, vector))
    elif layer_states:
        g.apply(x, head, "logits")
    else:
        g.op("Reshape", [g.apply(x, head), g.const("vocab", np.array([padded], np.int64))], ["logits"])
    graph = helper.make_graph(g.nodes, "lstmgen_step", inputs, outputs, g.inits)
    imports = [helper.make_opsetid("", OPSET)]
    if weights not in ("float", "int8-dynamic"):
        imports.append(helper.make_opsetid(MS_DOMAIN, 1))
    proto = helper.make_model(graph, opset_imports=imports, producer_name="lstmgen")
    proto.ir_version = 8  # ONNX Runtime 1.14+ reads it
    if weights in ("float", "int8-dynamic"):
        checker.check_model(proto)
    properties = {"lstmgen.weights": weights, "lstmgen.layers": str(layers), "lstmgen.hidden": str(hidden),
                  "lstmgen.vocab": str(vocab), "lstmgen.block": str(block), "lstmgen.embedding": embedding_kind}
    if sampler:
        properties["lstmgen.sampler_block"] = str(sampler_block)
    helper.set_model_props(proto, properties)
    if weights == "int8-dynamic":
        proto = quantize_onnx_dynamic(proto, per_channel=per_channel)
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
    model = model.eval()  # the graph is built from the weights; eval() only keeps the contract of a float step
    paths = []
    for kind in weights:
        path = out / FILE_NAMES.get(kind, f"step.{kind}.onnx")
        onnx.save(step_model(model, kind, **options), path)
        paths.append(path)
    return paths


README_SNIPPET = '''\
import numpy as np, onnxruntime as ort

session = ort.InferenceSession("{path}", providers=["CPUExecutionProvider"])
h = np.zeros(({layers}, 1, {hidden}), np.float32); c = np.zeros_like(h)
token = np.array([[{token}]], np.int64)  # a token id of the model's tokenizer
for _ in range(20):  # greedy
    logits, h, c = session.run(None, {{"token": token, "h": h, "c": c}})
    token[0, 0] = int(logits.argmax())
    print(int(token[0, 0]))
'''


def main(argv=None) -> int:
    """`python -m lstmgen export --onnx MODEL OUT`."""
    import contextlib

    parser = argparse.ArgumentParser(prog="python -m lstmgen export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", nargs=2, metavar=("MODEL", "OUT"), required=True,
                        help="a preset, Hub repo id or local folder, and the folder to write")
    parser.add_argument("--weights", default="float,int8", help=f"comma-separated: {', '.join(WEIGHT_KINDS)}")
    parser.add_argument("--block", type=int, default=DEFAULT_BLOCK, help="int8/int4: inputs per weight scale")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    parser.add_argument("--no-hub", action="store_true", help="skip the Hub: local folder or bundled weights")
    args = parser.parse_args(argv)
    from .hub import resolve

    name, out = args.onnx
    kinds = tuple(k.strip() for k in args.weights.split(",") if k.strip())
    unknown = [k for k in kinds if k not in WEIGHT_KINDS]
    if unknown:
        parser.error(f"unknown --weights {', '.join(unknown)}: choose from {', '.join(WEIGHT_KINDS)}")
    with contextlib.redirect_stdout(sys.stderr):  # from_pretrained prints to stdout
        loaded = resolve(name, revision=args.revision, use_hub=not args.no_hub)
    model = loaded.model
    paths = export(model, out, kinds, block=args.block)
    token = loaded.tokenizer.encode("the").ids[:1] or [0]
    (Path(out) / "config.json").write_text(json.dumps(
        {"source": loaded.source, "vocab_size": model.vocab_size, "num_layers": model.num_layers,
         "hidden_size": model.hidden_size, "files": {k: p.name for k, p in zip(kinds, paths)}}, indent=2))
    for kind, path in zip(kinds, paths):
        print(f"{kind}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    print("\nRun it with ONNX Runtime (pip install onnxruntime):\n")
    print(README_SNIPPET.format(path=paths[0], layers=model.num_layers, hidden=model.hidden_size, token=token[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
