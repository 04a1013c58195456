"""The stream: a model that steps token by token at batch 1 and draws its tokens.

    stream = token_stream(model, config, banned)   # a torch model's, or OrtModel.stream (ONNX Runtime)
    stream.prompt(prompt_ids, u)            # the prompt through the network once; u: the next draw's number
    token = stream.draw(u)                  # = sampling.draw(sampling.distribution(logits, config, banned), u)
    stream.probability(token)               # = that distribution's probability of token
    stream.probabilities()                  # = that distribution, float32 numpy (a copy)
    stream.model_probability(token)         # the model's own probability of token (temperature 1, masked)
    stream.step(token, u)                   # one step; u: the number the next draw will use

Two implementations: `LogitsStream` samples through lstmgen.core.sampling on a step's logits (the torch
model's stream, and the engine's for settings its graph does not serve: sampling.fallbacks), and
lstmgen.engine.ort.OrtStream, whose step graph computes the distribution and draws in the same run.
"""

from __future__ import annotations

import functools
import warnings
import weakref
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..core.model import LSTMLanguageModel
from ..core.sampling import SamplingConfig, distribution, draw, inverse_cdf


@runtime_checkable
class TokenStream(Protocol):
    """A model stepping token by token and drawing its tokens (see the module's docstring)."""

    def prompt(self, ids: list[int], u: float | None = None) -> None: ...

    def step(self, token: int, u: float | None = None) -> None: ...

    def draw(self, u: float) -> int: ...

    def probability(self, token: int) -> float: ...

    def probabilities(self) -> np.ndarray: ...

    def model_probability(self, token: int) -> float: ...


def masked_ids(config: SamplingConfig, banned) -> list[int]:
    """The special ids a run masks: none with allow_special."""
    return [] if banned is None or config.allow_special else [int(b) for b in banned]


def model_probability(logits: torch.Tensor, token: int, masked=()) -> float:
    """How likely the model itself (temperature 1) found `token`, with the ids in `masked` left out and the
    rest renormalised (numpy: a third faster than torch's logsumexp for one vector)."""
    values = logits.float().numpy()
    if len(masked):
        if token in masked:
            return 0.0
        values = values.copy()
        values[list(masked)] = -np.inf
    weights = np.exp(values - values.max())
    return float(weights[token] / weights.sum())


def coupled_draw(stream: TokenStream, x: int, p_x: float, p: np.ndarray, u_keep: float, u_residual: float) -> int:
    """The stream's token when the other side drew x with probability p_x from p (its `probabilities()`):
    keep x with probability min(1, q(x)/p(x)), else draw from max(q - p, 0) normalised, q being this
    stream's distribution. Each side stays exact, and they agree as often as any coupling allows. The
    keep test reads two probabilities; the residual (frequent once the two texts have parted) is three
    numpy passes over the vocabulary."""
    if u_keep * p_x < stream.probability(x):
        return x
    residual = np.subtract(stream.probabilities(), p)
    np.maximum(residual, 0.0, out=residual)
    index = inverse_cdf(residual, u_residual)
    return x if index is None else index  # None: p == q up to rounding, nothing left to move


class LogitsStream:
    """A stream over (token, state) -> (logits, state) steps, sampling through lstmgen.core.sampling.
    `forward(ids)` runs the prompt; `own_probability(token, masked)` replaces model_probability on the
    logits where the step computes it itself (the engine)."""

    def __init__(self, forward, step, config: SamplingConfig, banned=None, own_probability=None):
        self._forward, self._step, self._own = forward, step, own_probability
        self.config = config
        self.banned = banned if banned is None or isinstance(banned, torch.Tensor) else torch.as_tensor(banned)
        self.masked = masked_ids(config, banned)
        self.logits = self.state = self._probs = None

    def prompt(self, ids: list[int], u: float | None = None) -> None:
        self.logits, self.state = self._forward(ids)
        self._probs = None

    def step(self, token: int, u: float | None = None) -> None:
        self.logits, self.state = self._step(token, self.state)
        self._probs = None

    def distribution(self) -> torch.Tensor:
        if self._probs is None:
            self._probs = distribution(self.logits, self.config, self.banned)
        return self._probs

    def draw(self, u: float) -> int:
        return draw(self.distribution(), u)

    def probability(self, token: int) -> float:
        return float(self.distribution()[token])

    def probabilities(self) -> np.ndarray:
        return self.distribution().float().numpy()

    def model_probability(self, token: int) -> float:
        if self._own is not None:
            return self._own(token, self.masked)
        return model_probability(self.logits, token, self.masked)


# --------------------------------------------------------------------------- the torch model's step


def forward_step(model, ids, h, c):
    """One token through the model's own forward at batch 1: ids (1, 1), h, c -> (next-token logits, h, c)."""
    logits, (h, c) = model(ids, (h, c))
    return logits[0, -1], h, c


def lstm_weights(lstm: torch.nn.LSTM) -> list[tuple[torch.Tensor, ...]]:
    """Each layer's (weight_ih, weight_hh, bias_ih, bias_hh) of an nn.LSTM, as torch.lstm_cell takes them."""
    return [tuple(getattr(lstm, f"{kind}_l{i}") for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            for i in range(lstm.num_layers)]


def step_layers(x, h, c, weights) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One step up through the layers with torch.lstm_cell: input x (1, input), each layer's h[i] and c[i]
    (1, hidden), `weights` as lstm_weights gives them -> the new per-layer h and c lists (h[-1]: the output)."""
    hs, cs = [], []
    for i, layer in enumerate(weights):
        x, c_i = torch.lstm_cell(x, (h[i], c[i]), *layer)
        hs.append(x)
        cs.append(c_i)
    return hs, cs


class SingleStep(torch.nn.Module):
    """One decoding step at batch 1: (ids (1, 1), h, c) -> (next-token logits, h, c).

    For a float nn.LSTM it runs torch.lstm_cell layer by layer: at batch 1 torch's default oneDNN
    LSTM kernel is several times slower per step (measured in bench/: "float default" against
    "float fastest"), and switching oneDNN off globally would also slow an int8 copy's shared
    tied output layer, which runs on oneDNN where the CPU has VNNI."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.cells = isinstance(model.lstm, torch.nn.LSTM)

    def forward(self, ids, h, c):
        model = self.model
        if not self.cells:
            return forward_step(model, ids, h, c)
        hs, cs = step_layers(model.embedding(ids[0]), h, c, lstm_weights(model.lstm))
        return model.decoder(hs[-1])[0], torch.stack(hs), torch.stack(cs)


_traced_steps: "weakref.WeakKeyDictionary[torch.nn.Module, torch.jit.ScriptModule]" = weakref.WeakKeyDictionary()


def traced_step(model):
    """The single step, traced once per model with TorchScript: the step is a few dozen small ops,
    and running them without the Python interpreter in between makes an int8 step ~25% faster."""
    traced = _traced_steps.get(model)
    if traced is None:
        example = (torch.zeros(1, 1, dtype=torch.long), *model.init_state(1))
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation notices
            traced = torch.jit.trace(SingleStep(model), example, check_trace=False)
        _traced_steps[model] = traced
    return traced


def make_step(model, fast: bool = True):
    """A function (token id, state) -> (next-token logits, state) for one decoding step at batch 1.
    `fast=False` steps through the model's own forward with torch's default kernels instead."""
    inputs = torch.zeros(1, 1, dtype=torch.long)
    step = traced_step(model) if fast and not model.training else functools.partial(forward_step, model)

    def run(token: int, state):
        inputs[0, 0] = token
        logits, h, c = step(inputs, *state)
        return logits, (h, c)

    return run


def torch_stream(model, config: SamplingConfig, banned=None, fast: bool = True) -> LogitsStream:
    """A torch model's stream: the prompt through its batched forward once, then `make_step`'s steps."""
    model.eval()
    one_step = make_step(model, fast=fast)

    def forward(ids):
        with torch.inference_mode():
            logits, state = model(torch.tensor([list(ids)]))
        return logits[0, -1], state

    def step(token, state):
        with torch.inference_mode():
            return one_step(token, state)

    return LogitsStream(forward, step, config, banned)


def token_stream(model, config: SamplingConfig, banned=None, fast: bool = True) -> TokenStream:
    """The stream of any model that generates: an LSTMLanguageModel steps through torch (`torch_stream`),
    an engine (lstmgen.engine.ort.OrtModel) through its own `stream`."""
    if isinstance(model, LSTMLanguageModel):
        return torch_stream(model, config, banned, fast)
    return model.stream(config, banned, fast=fast)
