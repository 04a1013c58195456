"""Dynamic int8 quantization, made at load time from the float weights (never stored as a pickle:
a quantized model's packed parameters cannot go into safetensors)."""

from __future__ import annotations

import copy
import io
import warnings

import torch
import torch.nn as nn


def quantize_dynamic(model: nn.Module, embedding: bool = True) -> nn.Module:
    """An int8 copy: LSTM and Linear weights quantized dynamically, the embedding's rows to 8 bits
    (it is most of a word model's size). The float model is left untouched."""
    from torch.ao.quantization import default_dynamic_qconfig, float_qparams_weight_only_qconfig

    spec = {nn.LSTM: default_dynamic_qconfig, nn.Linear: default_dynamic_qconfig}
    if embedding:
        spec[nn.Embedding] = float_qparams_weight_only_qconfig
    float_copy = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated; torchao cannot quantize nn.LSTM
        return torch.ao.quantization.quantize_dynamic(float_copy, spec, dtype=torch.qint8)


def size_bytes(model: nn.Module) -> int:
    """Bytes of the model's serialized state (weights, packed int8 weights and their scales)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
