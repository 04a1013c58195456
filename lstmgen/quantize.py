"""A model's size: the bytes of its serialized state. (PyTorch's dynamic int8 copy, the int8 engine
before issue 18, is the benchmarks' reference now: bench/engines.py.)"""

from __future__ import annotations

import io

import torch
import torch.nn as nn


def size_bytes(model: nn.Module) -> int:
    """Bytes of the model's serialized state (weights, packed int8 weights and their scales)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
