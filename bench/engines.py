"""The engines only the benchmarks run, beside lstmgen's own (lstmgen.engine.ort):

- PyTorch's dynamic int8 copy (torch.ao.quantization.quantize_dynamic, deprecated in torch 2.13, its
  replacement in torchao covering nn.Linear only): lstmgen's int8 engine before issue 18, kept as the
  benchmarks' reference. Made at load time from the float weights, never stored.
- `peer_step_proto`: the step as a user of ONNX Runtime would export it (torch.onnx.export, ONNX LSTM ops).
- `step_numpy`: one plain step of an engine, the logits as a numpy view (the network alone, no sampling).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
import torch.nn as nn

from lstmgen.engine.graph import quantize_rows
from lstmgen.engine.streams import forward_step


def step_numpy(engine, token: int) -> np.ndarray:
    """One step of an lstmgen.engine.ort.OrtStep from its current state; the logits as a numpy view."""
    k = engine._current
    engine.advance(token)
    return engine._logits[k][: engine.vocab_size]


class Int8TiedDecoder(nn.Module):
    """One int8 copy of a tied embedding / output matrix that serves both roles.

    torch's quantized Embedding and Linear cannot share a weight, so quantizing a tied model with
    them stores the largest matrix twice. Here the rows are quantized once (symmetric, one scale per
    row); the output layer quantizes its input per row at run time (dynamic quantization) and
    multiplies with torch._int_mm, int8 x int8 -> int32."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        rows, scale = quantize_rows(weight.detach().float().numpy())  # the step graph's own row quantization
        self.register_buffer("weight_int8", torch.from_numpy(rows))
        self.register_buffer("scale", torch.from_numpy(scale))
        self.register_buffer("bias", bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.size(-1)).float()  # the input's rows, quantized at run time as ORT's ops do
        x_scale = rows.abs().amax(1, keepdim=True).clamp_min(1e-8) / 127
        x_int8 = torch.round(rows / x_scale).to(torch.int8)
        out = torch._int_mm(x_int8, self.weight_int8.T).float() * (x_scale * self.scale) + self.bias
        return out.reshape(*x.shape[:-1], -1)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight_int8[ids].float() * self.scale[ids].unsqueeze(-1)


class Int8TiedEmbedding(nn.Module):
    """The embedding side of an Int8TiedDecoder (holds no weights of its own)."""

    def __init__(self, decoder: Int8TiedDecoder):
        super().__init__()
        self._decoder = (decoder,)  # a tuple, so the decoder is not registered (and counted) twice

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self._decoder[0].lookup(ids)


def int8_matmul_is_fast() -> bool:
    """Whether torch._int_mm (the shared tied decoder's multiply) has a fast kernel on this CPU: it runs
    on oneDNN with AVX-512 VNNI; without VNNI (an AVX2-only CPU) it is a scalar loop, ~14x slower
    than fbgemm's int8 Linear on a 384 x 7,846 output layer (2 ms against 0.15 ms a step)."""
    return torch.cpu._is_vnni_supported()


def quantize_dynamic(model: nn.Module, embedding: bool = True, share_tied: bool | None = None) -> nn.Module:
    """An int8 copy: LSTM and Linear weights quantized dynamically, the embedding's rows to 8 bits
    (it is most of a word model's size). The float model is left untouched.

    A tied embedding and output layer share one int8 matrix (`share_tied`) where that matrix
    multiplies fast; elsewhere (the default picks by int8_matmul_is_fast) they are quantized as two
    matrices, the output layer through fbgemm with one scale per row: faster, but the copy is larger."""
    from torch.ao.quantization import (default_dynamic_qconfig, float_qparams_weight_only_qconfig,
                                       per_channel_dynamic_qconfig)

    tied = model.decoder.weight is model.embedding.weight
    share = tied and (int8_matmul_is_fast() if share_tied is None else share_tied)
    spec = {nn.LSTM: default_dynamic_qconfig}
    if not share:
        spec[nn.Linear] = per_channel_dynamic_qconfig if tied else default_dynamic_qconfig
        if embedding:
            spec[nn.Embedding] = float_qparams_weight_only_qconfig
    float_copy = copy.deepcopy(model).eval()
    if tied and not share:
        float_copy.decoder.weight = nn.Parameter(float_copy.embedding.weight.detach().clone())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated; torchao cannot quantize nn.LSTM
        int8 = torch.ao.quantization.quantize_dynamic(float_copy, spec, dtype=torch.qint8)
    if share:
        decoder = Int8TiedDecoder(model.decoder.weight, model.decoder.bias)
        int8.decoder, int8.embedding = decoder, Int8TiedEmbedding(decoder)
    return int8


def peer_step_proto(model, opset: int = 17):
    """The peers' step: torch.onnx.export (TorchScript exporter) of the model's own forward, nn.LSTM
    becoming ONNX LSTM ops; what a user of ONNX Runtime would export. Inputs and outputs as ours."""
    import io
    import warnings

    import onnx

    class Step(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, token, h, c):
            return forward_step(self.model, token, h, c)

    wrapper = Step(model).eval()  # a fresh wrapper trains (dropout on) until told otherwise
    example = (torch.zeros(1, 1, dtype=torch.long), *model.init_state(1))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, example, buffer, dynamo=False, opset_version=opset,
                          input_names=["token", "h", "c"], output_names=["logits", "h_out", "c_out"])
    return onnx.load_from_string(buffer.getvalue())
