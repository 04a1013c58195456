"""The language model: Embedding -> multi-layer LSTM -> Linear, regularised the AWD-LSTM way.

Regularisation (Merity et al., "Regularizing and Optimizing LSTM Language Models"):
- embedding dropout drops whole rows of the embedding matrix (a word vanishes everywhere in a batch);
- locked (variational) dropout uses one mask per sequence on the LSTM's input and output;
- weight drop is DropConnect on the hidden-to-hidden matrices;
- weight tying shares the embedding with the output layer (needs embed_size == hidden_size).
All of it is active only in training; at inference the model is a plain LSTM.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch.func import functional_call

from .settings import setting


@dataclass
class ModelConfig:
    """The model's shape and regularisation (config.json holds these); every field is also a train_space.py flag."""

    embed_size: int = setting(256, "embedding width", low=1)
    hidden_size: int = setting(512, "LSTM width", low=1)
    num_layers: int = setting(2, "LSTM layers", low=1)
    dropout: float = setting(0.2, "locked dropout on the LSTM's output (and between layers)", low=0.0, high=0.95)
    embed_dropout: float = setting(0.0, "embedding dropout: whole vocabulary rows dropped", low=0.0, high=0.95)
    input_dropout: float = setting(0.0, "locked dropout on the LSTM's input", low=0.0, high=0.95)
    weight_drop: float = setting(0.0, "DropConnect on the hidden-to-hidden weights", low=0.0, high=0.95)
    tie_weights: bool = setting(False, "share the embedding with the output layer (embed size = hidden size)")

    def build(self, vocab_size: int):
        """An LSTMLanguageModel of this shape for `vocab_size` tokens."""
        return LSTMLanguageModel(vocab_size, **asdict(self))


State = tuple[torch.Tensor, torch.Tensor]


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout with one mask per sequence, shared across time steps. x: (batch, time, features)."""
    if not training or p == 0:
        return x
    mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p) / (1 - p)
    return x * mask


_DEFAULT = ModelConfig()


class LSTMLanguageModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="lstmgen",
    tags=["text-generation", "lstm", "lstmgen"],
    license="mit",
):
    def __init__(
        self,
        vocab_size: int,
        # config.json holds these arguments (PyTorchModelHubMixin); their defaults are ModelConfig's.
        embed_size: int = _DEFAULT.embed_size,
        hidden_size: int = _DEFAULT.hidden_size,
        num_layers: int = _DEFAULT.num_layers,
        dropout: float = _DEFAULT.dropout,
        embed_dropout: float = _DEFAULT.embed_dropout,
        input_dropout: float = _DEFAULT.input_dropout,
        weight_drop: float = _DEFAULT.weight_drop,
        tie_weights: bool = _DEFAULT.tie_weights,
    ):
        super().__init__()
        if tie_weights and embed_size != hidden_size:
            raise ValueError("tie_weights needs embed_size == hidden_size")
        self.vocab_size, self.hidden_size, self.num_layers = vocab_size, hidden_size, num_layers
        self.dropout, self.embed_dropout, self.input_dropout = dropout, embed_dropout, input_dropout
        self.weight_drop = weight_drop
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.lstm = nn.LSTM(
            embed_size, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.decoder = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            self.decoder.weight = self.embedding.weight
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        for name, param in self.lstm.named_parameters():
            if name.startswith("bias"):
                # Forget-gate bias 1: remember by default early in training.
                nn.init.zeros_(param)
                param.data[self.hidden_size : 2 * self.hidden_size] = 1.0

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def init_state(self, batch_size: int, device=None) -> State:
        shape = (self.num_layers, batch_size, self.hidden_size)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        if self.training and self.embed_dropout > 0:
            weight = self.embedding.weight
            keep = weight.new_empty(weight.size(0), 1).bernoulli_(1 - self.embed_dropout)
            return F.embedding(ids, weight * keep / (1 - self.embed_dropout))
        return self.embedding(ids.contiguous())  # an int8 Embedding rejects strided ids (batch views)

    def run_lstm(self, x: torch.Tensor, state: State | None):
        if self.training and self.weight_drop > 0:
            weights = {
                name: F.dropout(param, self.weight_drop, training=True) if name.startswith("weight_hh") else param
                for name, param in self.lstm.named_parameters()
            }
            return functional_call(self.lstm, weights, (x, state))
        return self.lstm(x, state)

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """ids: (batch, time) token ids. Returns logits (batch, time, vocab) and the new state."""
        x = locked_dropout(self.embed(ids), self.input_dropout, self.training)
        out, state = self.run_lstm(x, state)
        out = locked_dropout(out, self.dropout, self.training)
        return self.decoder(out), state
