"""Loss, perplexity and bits per character on a token stream, with the state carried through."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .data import batchify, bptt_batches

HELD_OUT_SLICE_TOKENS = 4000  # the first held-out tokens quick figures and cells.json are measured on


@dataclass
class Evaluation:
    total_nats: float  # summed cross-entropy over every predicted token
    tokens: int  # tokens predicted
    loss: float  # nats per token (or per `per` unit, see evaluate())
    perplexity: float
    bits_per_char: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def evaluate(model, ids, batch_size: int = 1, seq_len: int = 256, num_chars: int | None = None,
             per_tokens: int | None = None, device="cpu") -> Evaluation:
    """Stream `ids` through the model in `batch_size` parallel rows of `seq_len` steps.

    `per_tokens` changes the loss denominator (e.g. GPT-2 tokens for a compact subword
    vocabulary); `num_chars` adds bits per character.
    """
    was_training = model.training
    model.eval()
    rows = batchify(ids, batch_size).to(device)
    state, total, count = None, 0.0, 0
    for _, inputs, targets in bptt_batches(rows, seq_len):
        logits, state = model(inputs, state)
        total += F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum").item()
        count += targets.numel()
    model.train(was_training)
    loss = total / (per_tokens or count)
    bpc = total / num_chars / math.log(2) if num_chars else None
    return Evaluation(total, count, loss, math.exp(min(loss, 50)), bpc)
