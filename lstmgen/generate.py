"""Generation. The prompt goes through the network once; after that each new token costs one LSTM
step, because the hidden state is carried from step to step. Data flows one way:
text -> tokenizer -> model -> sampler (sampling.py) -> text."""

from __future__ import annotations

import time
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from .sampling import RandomStream, SamplingConfig, distribution, draw, inverse_cdf
from .tokenizers import Tokenizer

MAX_UNKNOWN_SHOWN = 20


class SingleStep(torch.nn.Module):
    """One decoding step at batch 1: (ids (1, 1), h, c) -> (next-token logits, h, c).

    For a float nn.LSTM it runs torch.lstm_cell layer by layer: at batch 1 torch's default oneDNN
    LSTM kernel is several times slower per step (measured in bench/: "float default" against
    "float fastest"), and switching oneDNN off globally would also slow the int8 path, whose shared
    tied output layer runs on oneDNN where the CPU has VNNI (quantize.int8_matmul_is_fast)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.cells = isinstance(model.lstm, torch.nn.LSTM)

    def forward(self, ids, h, c):
        model = self.model
        if not self.cells:
            logits, (h, c) = model(ids, (h, c))
            return logits[0, -1], h, c
        x = model.embedding(ids[0])
        hs, cs = [], []
        for i in range(model.num_layers):
            weights = [getattr(model.lstm, f"{kind}_l{i}") for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            x, c_i = torch.lstm_cell(x, (h[i], c[i]), *weights)
            hs.append(x)
            cs.append(c_i)
        return model.decoder(x)[0], torch.stack(hs), torch.stack(cs)


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
    if fast and not model.training:
        step = traced_step(model)
    else:

        def step(ids, h, c):
            logits, (h, c) = model(ids, (h, c))
            return logits[0, -1], h, c

    def run(token: int, state):
        inputs[0, 0] = token
        logits, h, c = step(inputs, *state)
        return logits, (h, c)

    return run


class Decoder:
    """One model decoding at batch 1 and drawing its tokens: the prompt goes through the network once,
    then each `advance(token)` costs one step.

    A model on ONNX Runtime (lstmgen.ort_engine.OrtModel, which has `new_stream`) steps and samples in
    its engine: the step graph computes the sampling distribution and draws from it with the uniform
    number `advance` gives it, so the loop calls the engine directly (`advance`, `draw` and
    `probability` are the engine's). Settings the graph does not serve (top-k, top-p) and torch models
    sample through lstmgen.sampling on the step's logits."""

    def __init__(self, model, prompt_ids: list[int], config: SamplingConfig, banned=None, fast_steps: bool = True,
                 u: float | None = None):
        model.eval()
        self.config, self.banned = config, banned
        # The special tokens this run masks (none with allow_special): the sampling distribution and the
        # model's own probability of a token (model_probability) both leave them out.
        self.masked = [] if banned is None or config.allow_special else [int(b) for b in banned]
        self.engine = model.new_stream() if hasattr(model, "new_stream") else None
        self.in_engine = self.engine is not None and self.engine.sampling(config, banned)
        self._probs = None
        if self.engine is not None:  # numpy and ONNX Runtime: no torch mode to enter at each step
            self.logits, self.state = self.engine.forward(prompt_ids, u=u)
            self._step = self.engine.step
            if self.in_engine:
                self.advance, self.draw, self.probability = self.engine.advance, self.engine.draw, self.engine.probability
            return
        with torch.inference_mode():
            logits, self.state = model(torch.tensor([prompt_ids]))
        self.logits = logits[0, -1]
        torch_step = make_step(model, fast=fast_steps)

        def step(token, state, u=None):
            with torch.inference_mode():
                return torch_step(token, state)

        self._step = step

    def advance(self, token: int, u: float | None = None) -> None:
        """One step; `u`: the uniform number the next draw will use (the engine draws in the same run)."""
        self.logits, self.state = self._step(token, self.state, u)
        self._probs = None

    def distribution(self) -> torch.Tensor:
        """The distribution this step samples from (lstmgen.sampling.distribution), as a tensor."""
        if self.in_engine:
            return torch.from_numpy(self.engine.probs())
        if self._probs is None:
            self._probs = distribution(self.logits, self.config, self.banned)
        return self._probs

    def draw(self, u: float) -> int:
        return draw(self.distribution(), u)

    def probability(self, token: int) -> float:
        """The probability of `token` under the distribution this step samples from."""
        return float(self.distribution()[token])

    def snapshot(self) -> np.ndarray:
        """This step's distribution as float32 numpy, kept for a later coupled_draw (sums to 1 up to
        float rounding)."""
        return self.engine.probs_float32() if self.in_engine else self.distribution().float().numpy()

    def coupled_draw(self, x: int, p_x: float, p: np.ndarray, u_keep: float, u_residual: float) -> int:
        """This side's token when the other side drew x with probability p_x from p (its snapshot), as in
        sampling.coupled_draw: keep x with probability min(1, q(x)/p(x)), else draw from max(q - p, 0)
        normalised. The keep test reads two probabilities; the residual (frequent once the two texts have
        parted, their contexts then differing) is three numpy passes over the vocabulary."""
        if u_keep * p_x < self.probability(x):
            return x
        residual = np.subtract(self.snapshot(), p)
        np.maximum(residual, 0.0, out=residual)
        index = inverse_cdf(residual, u_residual)
        return x if index is None else index  # None: p == q up to rounding, nothing left to move

    def model_probability(self, token: int) -> float:
        """The model's own probability of `token` at this step: temperature 1, no top-k or top-p, the special
        tokens masked and the rest renormalised as in sampling (unless allow_special)."""
        if self.engine is not None:
            return self.engine.model_probability(token, self.masked)
        return model_probability(self.logits, token, self.masked)


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


def banned_ids(tokenizer: Tokenizer) -> torch.Tensor:
    """The special tokens generation masks by default (<unk>, <eos>, <|endoftext|>)."""
    return torch.tensor(sorted(tokenizer.special_ids.values()), dtype=torch.long)


def generate_ids(model, prompt_ids: list[int], config: SamplingConfig, banned=None,
                 fast_steps: bool = True, with_probability: bool = False) -> Iterator:
    """Yield `config.length` new ids one at a time (with `with_probability`, (id, the model's probability
    of it as Decoder.model_probability gives it) pairs, at no cost otherwise). `prompt_ids` must not be
    empty. `fast_steps=False` steps a torch model through its forward with torch's default kernels, for
    comparison."""
    randomness = RandomStream(config.seed)
    u = randomness.next()[0]
    decoder = Decoder(model, prompt_ids, config, banned, fast_steps, u)
    for i in range(config.length):
        token = decoder.draw(u)
        yield (token, decoder.model_probability(token)) if with_probability else token
        if i + 1 < config.length:
            u = randomness.next()[0]
            decoder.advance(token, u)


@dataclass
class CoupledStep:
    """One step of the float model and its int8 copy, sampled with shared randomness."""

    float_token: int
    int8_token: int
    float_probability: float  # each model's own probability of its token (Decoder.model_probability)
    int8_probability: float
    float_s: float  # time in each model's own step, distribution and draw
    int8_s: float
    sampled_probability: float  # p(x) of the float token under the distribution it was drawn from
    u_keep: float  # the int8 side kept x when u_keep * p(x) < q(x)


TURN = 32  # tokens each model generates before the other takes its turn


def coupled_ids(float_model, int8_model, prompt_ids: list[int], config: SamplingConfig, banned=None,
                turn: int = TURN) -> Iterator[CoupledStep]:
    """Generate with both models, coupled (Decoder.coupled_draw): they make the same choice whenever
    their distributions allow it, and each samples exactly from its own. They take turns of `turn`
    tokens, the float model first (keeping each step's distribution for the int8 side's draw), so that
    neither runs with its weights pushed out of the caches by the other's: each side's time is its own
    speed, as when it runs alone (token by token, the int8 side ran ~3x slower on the word model)."""
    clock = time.perf_counter
    randomness = RandomStream(config.seed)
    numbers = [randomness.next()]  # step i's (u_float, u_keep, u_residual); the float side needs i + 1's early
    started = clock()
    floats = Decoder(float_model, prompt_ids, config, banned, u=numbers[0][0])
    prompt_float_s, started = clock() - started, clock()
    int8s = Decoder(int8_model, prompt_ids, config, banned)
    prompt_int8_s = clock() - started
    for first in range(0, config.length, turn):
        steps = range(first, min(first + turn, config.length))
        drawn = []  # the float side's turn: (x, p(x), p, its own probability of x, seconds)
        for i in steps:
            started = clock()
            x = floats.draw(numbers[i][0])
            # Everything about x is read from this step's distributions, before the step that feeds x in.
            p_x, p, x_probability = floats.probability(x), floats.snapshot(), floats.model_probability(x)
            if i + 1 < config.length:
                numbers.append(randomness.next())
                floats.advance(x, numbers[i + 1][0])
            drawn.append((x, p_x, p, x_probability, clock() - started))
        for i, (x, p_x, p, x_probability, float_s) in zip(steps, drawn):  # the int8 side's turn
            started = clock()
            y = int8s.coupled_draw(x, p_x, p, numbers[i][1], numbers[i][2])
            y_probability = int8s.model_probability(y)  # before the step that feeds y in, as on the float side
            if i + 1 < config.length:
                int8s.advance(y)
            int8_s = clock() - started
            if i == 0:  # the prompt's pass counts towards the first token
                float_s, int8_s = float_s + prompt_float_s, int8_s + prompt_int8_s
            yield CoupledStep(x, y, x_probability, y_probability, float_s, int8_s, p_x, numbers[i][1])


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    first_token_s: float = 0.0  # time from the call to the first new token
    total_s: float = 0.0
    unknown: list[str] = field(default_factory=list)  # prompt pieces outside the vocabulary

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.total_s if self.total_s > 0 else 0.0


def unique_pieces(pieces: list[str], limit: int = MAX_UNKNOWN_SHOWN) -> list[str]:
    """Each piece once, in order of first appearance, at most `limit` of them."""
    return list(dict.fromkeys(pieces))[:limit]


def primed_decoder(tokenizer: Tokenizer, prompt_ids: list[int]):
    """A stream decoder that has seen the prompt, so the first new piece joins it correctly."""
    decode = tokenizer.stream_decoder()
    for token in prompt_ids:
        decode(token)
    return decode


def stream(model, tokenizer: Tokenizer, prompt: str, config: SamplingConfig,
           stats: GenerationStats | None = None) -> Iterator[str]:
    """Yield the text that each new token adds (the prompt itself is not repeated).
    Pass a GenerationStats to have it filled in as generation goes."""
    stats = stats if stats is not None else GenerationStats()
    started = time.perf_counter()
    encoding = tokenizer.encode(prompt)
    prompt_ids = encoding.ids or [tokenizer.start_id]
    stats.prompt_tokens, stats.unknown = len(prompt_ids), unique_pieces(encoding.unknown)
    decode = primed_decoder(tokenizer, prompt_ids)
    for token in generate_ids(model, prompt_ids, config, banned_ids(tokenizer)):
        stats.new_tokens += 1
        if stats.new_tokens == 1:
            stats.first_token_s = time.perf_counter() - started
        piece = decode(token)
        stats.total_s = time.perf_counter() - started
        if piece:
            yield piece
    tail = decode.flush()
    if tail:
        yield tail


def generate(model, tokenizer: Tokenizer, prompt: str, length: int = 200, **settings) -> str:
    """The prompt followed by `length` generated tokens as text: `generate(model, tokenizer, "ROMEO:", 200, seed=0)`.
    The other settings are SamplingConfig's (temperature, top_k, top_p, seed, allow_special)."""
    config = SamplingConfig(length=length, **settings)
    return prompt + "".join(stream(model, tokenizer, prompt, config))
