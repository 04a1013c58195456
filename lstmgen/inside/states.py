"""The cells' states: every layer's c and h after each token of a text, each layer over the whole text at once.

A torch model (LSTMLanguageModel) runs each layer over the text in one call (torch.lstm, as nn.LSTM runs it),
which gives h after every token; c follows exactly from the gates, computed for every token in one product from
the h before it, then c_t = f_t c_{t-1} + i_t g_t along the text. An int8 copy (lstmgen.engine.ort.OrtModel)
runs its own step graph over the text in one run (OrtModel.states): the numbers its steps give. Its states
follow the float model's within INT8_STATE_TOLERANCE, relative to 1 + |float value| (c grows large in some
cells): |c_int8 - c| <= 0.15 (1 + |c|), and the same for h. The measured gaps are in bench/cells.md, the cost
in bench/inspect.md.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.evaluate import HELD_OUT_SLICE_TOKENS
from ..engine.streams import lstm_weights, step_layers

INT8_STATE_TOLERANCE = 0.15  # largest |int8 - float| / (1 + |float|) of a c or h value


@torch.inference_mode()
def cell_states(model, ids, state=None, layers: int | None = None, cells=None) -> dict[str, np.ndarray]:
    """c and h after each token: {"c": (layers, T, cells), "h": (layers, T, cells)}, float32, of the bottom
    `layers` layers (default all: a layer's states depend only on the layers below it) and the `cells` asked for
    (indices, default all).

    `model` is an LSTMLanguageModel or an OrtModel (see the module's docstring). `state`: (h, c) of shape
    (layers, 1, hidden) to start from (default zeros)."""
    ids = [int(i) for i in torch.as_tensor(ids).reshape(-1).tolist()]
    layers = model.num_layers if layers is None else layers
    if not 1 <= layers <= model.num_layers:
        raise ValueError(f"layers must be between 1 and {model.num_layers}, not {layers}")
    if not hasattr(model, "lstm"):  # ONNX Runtime
        h, c = model.states(ids, state, layers, cells)
        return {"c": c, "h": h}
    return _one_thread(_torch_states, model, ids, state, layers, cells)


@torch.inference_mode()
def sampled_states(model, tokenizer, length: int = HELD_OUT_SLICE_TOKENS, seed: int = 0) -> dict:
    """Text the model writes itself (temperature 1, after the tokenizer's start id, torch's generator seeded with
    `seed`) and its states, in one pass: {"ids": [...], "c": ..., "h": ...} as `cell_states` gives them."""
    return _one_thread(_sampled, model, tokenizer, length, seed)


def _one_thread(run, *args, **kwargs):
    """A layer's recurrence is a batch-1 product a token: more threads gain little, and on a busy CPU lose much."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


def _torch_states(model, ids, state, layers, cells) -> dict[str, np.ndarray]:
    """The bottom `layers` layers of `model` over `ids`, a layer at a time: torch.lstm for h, then c for `cells`."""
    hidden = model.hidden_size
    rows = torch.arange(hidden) if cells is None else torch.as_tensor(cells, dtype=torch.long).reshape(-1)
    h_all = np.zeros((layers, len(ids), len(rows)), np.float32)
    c_all = np.zeros((layers, len(ids), len(rows)), np.float32)
    if not ids:
        return {"c": c_all, "h": h_all}
    was_training = model.training
    model.eval()
    x = model.embedding(torch.tensor(ids)).float()  # (T, input)
    for i, weights in enumerate(lstm_weights(model.lstm)[:layers]):
        weights = [w.float() for w in weights]
        h0, c0 = (torch.zeros(1, hidden) if state is None else state[k][i].reshape(1, hidden).float() for k in (0, 1))
        h, _, _ = torch.lstm(x[None], (h0[None], c0[None]), weights, True, 1, 0.0, False, False, True)
        h = h[0]  # (T, hidden): h after each token
        h_all[i] = h[:, rows].numpy()
        c_all[i] = _memory(x, torch.cat([h0, h[:-1]]), c0[0, rows], weights, rows)
        x = h
    model.train(was_training)
    return {"c": c_all, "h": h_all}


def _memory(x, h_before, c0, weights, rows) -> np.ndarray:
    """The cell states c (T, cells) of the cells `rows` of one layer, given its inputs x (T, input), the h before
    each token (T, hidden) and c before the first: the input, forget and cell gates of every token in one
    product, then c_t = f_t c_{t-1} + i_t g_t token by token (torch's gate order: i, f, g, o)."""
    w_ih, w_hh, b_ih, b_hh = weights
    hidden = w_hh.shape[1]
    index = torch.cat([rows, rows + hidden, rows + 2 * hidden])
    gates = torch.addmm(b_ih[index] + b_hh[index], x, w_ih[index].T).addmm_(h_before, w_hh[index].T)
    i, f, g = gates.chunk(3, 1)
    forget = torch.sigmoid(f).numpy()
    added = (torch.sigmoid(i) * torch.tanh(g)).numpy()
    c = np.empty_like(added)
    previous = c0.numpy()
    for t in range(len(c)):
        previous = c[t] = forget[t] * previous + added[t]
    return c


def _sampled(model, tokenizer, length, seed) -> dict:
    """The model's own text, a token at a time (each drawn at temperature 1 from the model's distribution after
    the one before, starting after the start id), with the states after each token: {"ids", "c", "h"}."""
    layers, hidden = model.num_layers, model.hidden_size
    c_all = np.zeros((layers, length, hidden), np.float32)
    h_all = np.zeros((layers, length, hidden), np.float32)
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    weights = [tuple(w.float() for w in layer) for layer in lstm_weights(model.lstm)]
    h = [torch.zeros(1, hidden) for _ in range(layers)]
    c = [torch.zeros(1, hidden) for _ in range(layers)]
    h, c = step_layers(model.embedding(torch.tensor([tokenizer.start_id])).float(), h, c, weights)
    ids = []
    for t in range(length):
        probabilities = F.softmax(model.decoder(h[-1])[0].float(), -1)
        token = int(torch.multinomial(probabilities, 1, generator=generator))
        ids.append(token)
        h, c = step_layers(model.embedding(torch.tensor([token])).float(), h, c, weights)
        for i in range(layers):
            h_all[i, t] = h[i][0].numpy()
            c_all[i, t] = c[i][0].numpy()
    model.train(was_training)
    return {"ids": ids, "c": c_all, "h": h_all}
