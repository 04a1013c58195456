"""The cells' states: every layer's c and h after each token, the model stepped one token at a time.

A torch model (LSTMLanguageModel) steps with lstmgen.engine.streams.step_layers (torch.lstm_cell, layer by
layer, as at inference). An int8 copy (lstmgen.engine.ort.OrtModel) steps through its own engine, whose
`step` returns each step's h and c; its states follow the float model's within INT8_STATE_TOLERANCE,
relative to 1 + |float value| (c grows large in some cells): |c_int8 - c| <= 0.15 (1 + |c|), and the same
for h. The measured gaps are in bench/cells.md.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.evaluate import HELD_OUT_SLICE_TOKENS
from ..engine.streams import lstm_weights, step_layers

INT8_STATE_TOLERANCE = 0.15  # largest |int8 - float| / (1 + |float|) of a c or h value


@torch.inference_mode()
def cell_states(model, ids, state=None) -> dict[str, np.ndarray]:
    """c and h of every layer after each token: {"c": (layers, T, hidden), "h": (layers, T, hidden)}, float32.

    `model` is an LSTMLanguageModel or an OrtModel (see the module's docstring). `state`: (h, c) of shape
    (layers, 1, hidden) to start from (default zeros)."""
    ids = [int(i) for i in torch.as_tensor(ids).reshape(-1).tolist()]
    layers, hidden, steps = model.num_layers, model.hidden_size, len(ids)
    c_all = np.zeros((layers, steps, hidden), np.float32)
    h_all = np.zeros((layers, steps, hidden), np.float32)
    if not hasattr(model, "lstm"):  # ONNX Runtime
        engine, current = model.new_engine(), state  # an OrtModel's own lstmgen.engine.ort.OrtStep
        for t, token in enumerate(ids):
            _, current = engine.step(token, current)
            h_all[:, t] = current[0].numpy().reshape(layers, hidden)
            c_all[:, t] = current[1].numpy().reshape(layers, hidden)
        return {"c": c_all, "h": h_all}
    return _one_thread(_torch_states, model, ids, state, c_all, h_all)


@torch.inference_mode()
def sampled_states(model, tokenizer, length: int = HELD_OUT_SLICE_TOKENS, seed: int = 0) -> dict:
    """Text the model writes itself (temperature 1, after the tokenizer's start id, torch's generator seeded with
    `seed`) and its states, in one pass: {"ids": [...], "c": ..., "h": ...} as `states` gives them."""
    layers, hidden = model.num_layers, model.hidden_size
    c_all = np.zeros((layers, length, hidden), np.float32)
    h_all = np.zeros((layers, length, hidden), np.float32)
    return _one_thread(_torch_states, model, None, None, c_all, h_all,
                       sample=(tokenizer.start_id, torch.Generator().manual_seed(seed)))


def _one_thread(run, *args, **kwargs):
    """Batch-1 steps gain nothing from more threads; on a busy CPU they lose many times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


def _torch_states(model, ids, state, c_all, h_all, sample=None) -> dict[str, np.ndarray]:
    """Step `model` through `ids`, writing each step's states into c_all and h_all. With `sample` = (start id,
    torch.Generator), the ids are drawn instead: each from the model's distribution after the one before
    (temperature 1), starting after the start id; they are returned as "ids"."""
    layers, hidden, steps = model.num_layers, model.hidden_size, c_all.shape[1]
    was_training = model.training
    model.eval()
    weights = [tuple(w.float() for w in layer) for layer in lstm_weights(model.lstm)]
    if state is None:
        h = [torch.zeros(1, hidden) for _ in range(layers)]
        c = [torch.zeros(1, hidden) for _ in range(layers)]
    else:
        h = [state[0][i].reshape(1, hidden).float() for i in range(layers)]
        c = [state[1][i].reshape(1, hidden).float() for i in range(layers)]
    if sample is not None:
        token, generator = sample
        ids = []
        h, c = step_layers(model.embedding(torch.tensor([token])).float(), h, c, weights)
    x_all = model.embedding(torch.tensor([ids], dtype=torch.long))[0].float() if steps and sample is None else None
    for t in range(steps):
        if sample is None:
            x = x_all[t : t + 1]
        else:
            probabilities = F.softmax(model.decoder(h[-1])[0].float(), -1)
            token = int(torch.multinomial(probabilities, 1, generator=generator))
            ids.append(token)
            x = model.embedding(torch.tensor([token])).float()
        h, c = step_layers(x, h, c, weights)
        for i in range(layers):
            h_all[i, t] = h[i][0].numpy()
            c_all[i, t] = c[i][0].numpy()
    model.train(was_training)
    out = {"c": c_all, "h": h_all}
    if sample is not None:
        out["ids"] = ids
    return out
