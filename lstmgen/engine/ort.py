"""One decoding step at batch 1 on ONNX Runtime: lstmgen's engine for generation, float and int8.

The step graph is lstmgen/export.py's (built from the float weights in tens of milliseconds; nothing
is stored): each layer's gates as one matrix product over [x, h] (int8 weights in the int8 graph),
the output layer, and the sampling distribution. Every buffer is allocated once and bound with
IOBinding, so a step copies nothing: the token goes into a preallocated int64 cell, and the state and
logits ping-pong between two sets of buffers (the step reads set k and writes set 1 - k), which torch
tensors share without copying.

    engine = OrtModel(model, "int8").new_engine()
    logits, state = engine.forward(prompt_ids)        # the prompt, one step a token
    logits, state = engine.step(token, state)         # each new token

A whole text goes through in one run instead (OrtModel.forward's logits, OrtModel.states' h and c): the step
graph's own nodes in an ONNX Scan (lstmgen.engine.graph.sequence_model), so each token computes what a step does.

`step` returns torch tensors that view the engine's buffers: the logits stay valid until the step
after next, as does the state; pass the returned state back (a state from elsewhere, such as a torch
model's, is copied in first). One engine decodes one text at a time; engines share their session (`fork`).

Sampling: each step of a graph built with `sampler=True` (as OrtModel builds them) also computes its
sampling distribution and draws from it with the uniform number it was given, so the Python side of
a generated token is a few reads (OrtStream, the stream interface of lstmgen.engine.streams, runs this loop):

    if engine.sampling(config, banned):               # False: a setting sampling.fallbacks names
        engine.forward(prompt_ids, u=u)               #   (OrtModel.stream then samples through lstmgen.core.sampling)
        token = engine.draw(u)                        # = draw(distribution(logits, config, banned), u)
        engine.probability(token)                     # = distribution(logits, config, banned)[token]
        engine.model_probability(token, masked)       # = streams.model_probability(logits, token, masked)
        engine.advance(token, u=next_u)               # the next step, drawing with next_u
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from ..core.operator_settings import operator_settings
from .graph import NAMES
from ..core.sampling import SamplingConfig, fallbacks, inverse_cdf, is_greedy
from .streams import LogitsStream, masked_ids, model_probability


def session_options(threads: int | None = None, spinning: bool | None = None):
    """ONNX Runtime options for a batch-1 step: all graph optimisations, sequential execution, `threads`
    intra-op threads (default: torch's count), and worker spinning off unless asked for (a spinning
    worker keeps a core busy between steps; at batch 1 the hand-off it saves is a few microseconds)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    threads = options.intra_op_num_threads
    if spinning is None:
        spinning = operator_settings().ort_spinning
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning and threads > 1 else "0")
    return options


class OrtStep:
    """An ONNX Runtime session of a step graph with its buffers bound once. `proto` is an onnx.ModelProto
    or serialized bytes. The graph's state is either one (layers, 1, hidden) tensor each for h and c
    (the exported files' interface) or one tensor a layer (`layer_states=True`, ~4 µs faster a step: no
    Split and Concat); either way the engine holds the state as (layers, 1, hidden) arrays."""

    def __init__(self, proto=None, threads: int | None = None, spinning: bool | None = None, session=None,
                 bias: np.ndarray | None = None):
        import onnxruntime as ort

        if session is None:
            data = proto if isinstance(proto, (bytes, bytearray)) else proto.SerializeToString()
            session = ort.InferenceSession(data, session_options(threads, spinning), providers=["CPUExecutionProvider"])
            bias = _initializer(proto, NAMES.bias)
        self.session = session
        inputs = {i.name: i.shape for i in session.get_inputs()}
        outputs = {o.name: o.shape for o in session.get_outputs()}
        meta = session.get_modelmeta().custom_metadata_map
        layer_states = NAMES.layer("h", 0) in inputs
        self.num_layers = int(meta["lstmgen.layers"]) if layer_states else inputs[NAMES.h][0]
        self.hidden_size = inputs[NAMES.layer("h", 0) if layer_states else NAMES.h][-1]
        vector = tuple(outputs[NAMES.logits])  # (vocab,), or (1, 1, vocab) in the engine's graphs
        padded = vector[-1]  # a sampler graph pads the logits to whole blocks (-inf there)
        self.vocab_size = int(meta.get("lstmgen.vocab", padded))
        state_shape = (self.num_layers, 1, self.hidden_size)
        self.token = np.zeros((1, 1), np.int64)
        self._h = [np.zeros(state_shape, np.float32) for _ in range(2)]
        self._c = [np.zeros(state_shape, np.float32) for _ in range(2)]
        self._logits_out = [np.zeros(vector, np.float32) for _ in range(2)]  # bound; used through flat views
        self._logits = [a.reshape(-1) for a in self._logits_out]
        self._states = [(torch.from_numpy(self._h[k]), torch.from_numpy(self._c[k])) for k in range(2)]
        self._logits_t = [torch.from_numpy(a[: self.vocab_size]) for a in self._logits]
        feeds = [(NAMES.token, self.token)]  # bound in both sets
        set_feeds, set_fetches = [], []  # binding k: reads state k, writes state 1 - k and set k's outputs
        for k in range(2):
            h_in, c_in, h_out, c_out = self._h[k], self._c[k], self._h[1 - k], self._c[1 - k]
            if layer_states:  # one (1, 1, hidden) view a layer
                layer = range(self.num_layers)
                set_feeds.append([(NAMES.layer(n, i), a[i : i + 1]) for n, a in (("h", h_in), ("c", c_in)) for i in layer])
                outs = [(NAMES.layer(n, i), a[i : i + 1]) for n, a in (("h_out", h_out), ("c_out", c_out)) for i in layer]
            else:
                set_feeds.append([(NAMES.h, h_in), (NAMES.c, c_in)])
                outs = [(NAMES.h_out, h_out), (NAMES.c_out, c_out)]
            set_fetches.append([(NAMES.logits, self._logits_out[k])] + outs)
        self.has_sampler = NAMES.probs in outputs
        self.has_probabilities = NAMES.model_probs in outputs
        if self.has_sampler:
            self._bias = bias  # the model's bias, in the output layer's format
            # The sampler's inputs, read by every step: set by `sampling`, u by `step`.
            self.inverse_temperature = np.ones(1, np.float32)
            self.bias = bias.copy()
            self.u = np.zeros(1, np.float32)
            feeds += [(NAMES.inverse_temperature, self.inverse_temperature), (NAMES.bias, self.bias), (NAMES.u, self.u)]
            if self.has_probabilities:
                self.temperature = np.ones(1, np.float32)
                self.mask = np.zeros(padded, np.float32)
                feeds += [(NAMES.temperature, self.temperature), (NAMES.mask, self.mask)]
            probs_out = [np.zeros(vector, np.float32) for _ in range(2)]
            model_probs_out = [np.zeros(vector, np.float32) for _ in range(2)]
            self._probs = [a.reshape(-1) for a in probs_out]
            self._model_probs = [a.reshape(-1) for a in model_probs_out]
            self._drawn = [np.zeros((1, 1), np.int64) for _ in range(2)]
            for k in range(2):
                set_fetches[k] += [(NAMES.probs, probs_out[k]), (NAMES.token_out, self._drawn[k])]
                if self.has_probabilities:
                    set_fetches[k].append((NAMES.model_probs, model_probs_out[k]))
        self._bindings = []
        for feeds_k, fetches_k in zip(set_feeds, set_fetches):
            binding = session.io_binding()
            for name, array in feeds + feeds_k:
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array))
            for name, array in fetches_k:
                binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(array))
            self._bindings.append(binding)
        self._run = session.run_with_iobinding
        self._current = 0  # the buffer set that holds the state the next step reads
        self._u_used = [None, None]  # the u each buffer set's draw was made with
        self._greedy = False

    @classmethod
    def from_model(cls, model, weights: str = "int8", threads: int | None = None, spinning: bool | None = None,
                   **options) -> "OrtStep":
        """An engine for a float LSTMLanguageModel, its graph built by lstmgen.engine.graph.step_model."""
        from .graph import step_model

        return cls(step_model(model, weights, **options), threads, spinning)

    def fork(self) -> "OrtStep":
        """Another engine on the same session (ONNX Runtime runs a session from several threads at once):
        its own buffers and bindings, so two streams never overwrite each other's state."""
        return OrtStep(session=self.session, bias=getattr(self, "_bias", None))

    def init_state(self, batch_size: int = 1, device=None):
        """A zero state: a state outside the engine's buffers, copied in by the first step."""
        shape = (self.num_layers, batch_size, self.hidden_size)
        return torch.zeros(shape), torch.zeros(shape)

    def _load(self, state) -> int:
        k = self._current
        if state is None:
            self._h[k].fill(0.0)
            self._c[k].fill(0.0)
        elif state is not self._states[k]:
            if state is self._states[1 - k]:  # the older of the two sets (a caller went back one step)
                np.copyto(self._h[k], self._h[1 - k])
                np.copyto(self._c[k], self._c[1 - k])
            else:
                h, c = state
                np.copyto(self._h[k], torch.as_tensor(h).detach().float().reshape(self._h[k].shape).numpy())
                np.copyto(self._c[k], torch.as_tensor(c).detach().float().reshape(self._c[k].shape).numpy())
        return k

    def advance(self, token: int, u: float | None = None) -> None:
        """`step` from the engine's own current state, returning nothing: the generation loop's call."""
        k = self._current
        self.token[0, 0] = token
        if u is not None:
            self.u[0] = u
        self._run(self._bindings[k])
        self._u_used[k] = u
        self._current = 1 - k

    def step(self, token: int, state=None, u: float | None = None):
        """(token id, state) -> (next-token logits (vocab,), new state (h, c)), both torch tensors viewing
        the engine's buffers. `u`: the uniform number the next `draw` will be given, so that the graph
        draws in the same run (a draw with another u is made in numpy)."""
        k = self._load(state)
        self.advance(token, u)
        return self._logits_t[k], self._states[1 - k]

    def forward(self, ids, state=None, u: float | None = None):
        """A prompt, one step a token: (ids, state) -> (the last token's logits, state); `u` as in `step`,
        for the last one."""
        ids = torch.as_tensor(ids).reshape(-1).tolist()
        if not ids:
            raise ValueError("the prompt must not be empty")
        last = len(ids) - 1
        for i, token in enumerate(ids):
            logits, state = self.step(token, state, u if i == last else None)
        return logits, state

    # ------------------------------------------------------------------ sampling
    # lstmgen.core.sampling's distribution + draw, computed in the step graph from the sampler's inputs (the
    # temperature divides the last hidden state, the bias input holds b / T plus the mask) and drawn
    # there with the u given to `step`: the softmax, the running sum of its blocks' masses, then the
    # block and the token inside it. Greedy (temperature 0) is an argmax over the masked logits.

    def sampling(self, config, banned: list[int] | None = None) -> bool:
        """Set the distribution the following steps compute and draw from: lstmgen.core.sampling's
        distribution(logits, config, banned). Returns False, changing nothing, where this engine cannot
        serve `config` (no sampler in the graph, or a setting's value the graph does not serve, as
        SamplingConfig declares: sampling.fallbacks): sample through lstmgen.core.sampling then, on `step`'s
        logits (the model's own while the engine is left as it was made), as OrtModel.stream does.
        Call it before the steps it should apply to (before `forward` for a prompt)."""
        temperature = float(config.temperature)
        if not self.has_sampler or fallbacks(config):
            return False
        mask = np.zeros(len(self.bias), np.float32)
        if banned is not None and len(banned) and not config.allow_special:  # a list or a LongTensor
            mask[torch.as_tensor(banned, dtype=torch.long).numpy()] = -np.inf
        self._greedy = is_greedy(temperature)  # an argmax over the masked logits at temperature 1
        scale = 1.0 if self._greedy else temperature
        inverse = 1.0 / scale
        self.inverse_temperature[0] = inverse
        if self.has_probabilities:  # the mask is added after the model's own logits are taken
            self.temperature[0] = scale
            np.multiply(self._bias, np.float32(inverse), out=self.bias)
            self.mask[:] = mask
        else:
            np.add(self._bias * np.float32(inverse), mask, out=self.bias)
        return True

    def draw(self, u: float) -> int:
        """lstmgen.core.sampling.draw(distribution(logits, config, banned), u) for the last step: the token at
        u (in [0, 1)) of the inverse CDF. The graph's draw where that step was given this u; else, or
        where rounding sent the graph's draw to a token of probability 0, a running sum in numpy."""
        k = 1 - self._current
        if self._greedy:
            return self._greedy_token(k)
        if self._u_used[k] == u:
            token = int(self._drawn[k][0, 0])
            if self._probs[k][token] > 0:
                return token
        return inverse_cdf(self._probs[k][: self.vocab_size], u)

    def _greedy_token(self, k: int) -> int:
        """The most likely token not masked, in buffer set k (the graph's logits are at temperature 1
        then; with `probabilities` the mask is a separate input)."""
        return int(np.argmax(self._logits[k] + self.mask if self.has_probabilities else self._logits[k]))

    def probability(self, token: int) -> float:
        """The sampling distribution's probability of `token` for the last step (q(token)): the graph's
        softmax, which sums to 1 up to float32 rounding."""
        k = 1 - self._current
        if self._greedy:
            return float(token == self._greedy_token(k))
        return float(self._probs[k][token])

    def probs(self) -> np.ndarray:
        """The last step's sampling distribution (vocab,), float64, normalised (a copy)."""
        k = 1 - self._current
        if self._greedy:
            one_hot = np.zeros(self.vocab_size)
            one_hot[self._greedy_token(k)] = 1.0
            return one_hot
        probs = self._probs[k][: self.vocab_size].astype(np.float64)
        return probs / probs.sum()

    def probs_float32(self) -> np.ndarray:
        """The last step's sampling distribution as the graph computed it: float32, summing to 1 up to
        rounding (a copy, cheaper than probs())."""
        if self._greedy:
            return self.probs().astype(np.float32)
        return self._probs[1 - self._current][: self.vocab_size].copy()

    def model_probability(self, token: int, masked=()) -> float:
        """lstmgen.engine.streams.model_probability for the last step: the model's own probability of `token`
        (temperature 1; the ids in `masked` left out and the rest renormalised, nothing masked by default),
        from the graph where it computes them (`probabilities=True`)."""
        k = 1 - self._current
        if self.has_probabilities:
            probs = self._model_probs[k]
            if not len(masked):
                return float(probs[token])
            if token in masked:
                return 0.0
            rest = 1.0 - sum(float(probs[b]) for b in masked)
            if rest < 0.01:  # the masked tokens hold nearly all the mass: sum the others, not 1 minus theirs
                rest = float(probs[: self.vocab_size].sum(dtype=np.float64)) - sum(float(probs[b]) for b in masked)
            return float(probs[token]) / rest if rest > 0 else 0.0
        if self.has_sampler and not np.array_equal(self.bias, self._bias):
            raise RuntimeError("the logits are scaled and masked for sampling: build the graph with probabilities=True")
        return model_probability(self._logits_t[k], token, masked)


class OrtStream:
    """The stream interface (lstmgen.engine.streams) on an engine whose graph samples: each step computes the
    distribution and draws with the u it was given; the Python side is a few reads."""

    def __init__(self, engine: OrtStep, config: SamplingConfig, banned=None):
        if not engine.sampling(config, banned):
            raise ValueError(f"the graph does not serve {', '.join(fallbacks(config)) or 'sampling'}: "
                             "use OrtModel.stream")
        self.engine, self.masked = engine, masked_ids(config, banned)

    def prompt(self, ids, u: float | None = None) -> None:
        self.engine.forward(ids, u=u)

    def step(self, token: int, u: float | None = None) -> None:
        self.engine.advance(token, u)

    def draw(self, u: float) -> int:
        return self.engine.draw(u)

    def probability(self, token: int) -> float:
        return self.engine.probability(token)

    def probabilities(self) -> np.ndarray:
        return self.engine.probs_float32()

    def model_probability(self, token: int) -> float:
        return self.engine.model_probability(token, self.masked)


def _initializer(proto, name: str) -> np.ndarray | None:
    """A graph initializer as numpy (the sampler's default bias), or None."""
    from onnx import ModelProto, numpy_helper

    if isinstance(proto, (bytes, bytearray)):
        proto = ModelProto.FromString(bytes(proto))
    return next((numpy_helper.to_array(t).copy() for t in proto.graph.initializer if t.name == name), None)


class OrtModel(torch.nn.Module):
    """A model for generation on ONNX Runtime, float or int8 weights: the calls of the torch model it
    was built from (`model(ids, state)`, `init_state`, `eval`), `stream(config, banned)` (the stream
    interface of lstmgen.engine.streams), `new_engine()`, an engine of its own for each stream, and `states`, a
    text's h and c. The float weights are read once, when the step graph is built; the graphs that run a whole
    text in one call (`forward`, `states`, `sequence`) are made from it when first used. `probabilities`: each
    step also computes the model's own distribution (one more softmax over the vocabulary), for
    model_probability."""

    def __init__(self, model, weights: str = "int8", threads: int | None = None, spinning: bool | None = None,
                 probabilities: bool = False, **options):
        super().__init__()
        from .graph import initializer_bytes, step_model

        self.vocab_size, self.num_layers, self.hidden_size = model.vocab_size, model.num_layers, model.hidden_size
        options = {"sampler": True, "layer_states": True, "probabilities": probabilities, **options}
        proto = step_model(model, weights, **options)
        self._bytes = initializer_bytes(proto)
        self._engine = OrtStep(proto, threads, spinning)
        self.weights = weights
        # The sequence graphs (a whole text in one run) are built from the step graph when first asked for.
        self._step, self._threads = proto, threads
        self._sequences: dict[tuple[int, bool], object] = {}
        self._sequences_lock = threading.Lock()
        self.eval()

    def size_bytes(self) -> int:
        """Bytes of the graph's weights (matrices and their scales; a tied embedding shares the output
        layer's where its format allows)."""
        return self._bytes

    def new_engine(self) -> OrtStep:
        return self._engine.fork()

    def stream(self, config: SamplingConfig, banned=None, fast: bool = True):
        """A stream on an engine of its own: sampled in the step graph where it serves `config`, else (the
        fallback SamplingConfig declares) through lstmgen.core.sampling on the engine's logits. `fast`: the
        torch model's option; an engine is always fast."""
        engine = self.new_engine()
        if engine.has_sampler and not fallbacks(config):
            return OrtStream(engine, config, banned)
        return LogitsStream(engine.forward, engine.step, config, banned, engine.model_probability)

    def init_state(self, batch_size: int, device=None):
        shape = (self.num_layers, batch_size, self.hidden_size)
        return torch.zeros(shape), torch.zeros(shape)

    def forward(self, ids: torch.Tensor, state=None):
        """ids (batch, time) -> logits (batch, time, vocab) and the new state: each row through the sequence
        graph in one run, the numbers a fresh engine's steps give (temperature 1, nothing masked)."""
        batch, time = ids.shape
        logits = torch.empty(batch, time, self.vocab_size)
        h_all, c_all = state if state is not None else self.init_state(batch)
        h_new, c_new = torch.empty_like(h_all, dtype=torch.float32), torch.empty_like(c_all, dtype=torch.float32)
        for b in range(batch):
            out = self.sequence(ids[b].tolist(), (h_all[:, b], c_all[:, b]), cells=(), logits=True)
            logits[b] = torch.from_numpy(out["logits"])
            h_new[:, b], c_new[:, b] = torch.from_numpy(out["h_last"]), torch.from_numpy(out["c_last"])
        return logits, (h_new, c_new)

    def states(self, ids, state=None, layers: int | None = None, cells=None) -> tuple[np.ndarray, np.ndarray]:
        """h and c after each token of `ids`, of the bottom `layers` layers (default all) and the `cells` asked
        for (indices, default all): two float32 arrays (layers, T, cells), what the engine's steps give."""
        out = self.sequence(ids, state, layers or self.num_layers, cells)
        return out["h"], out["c"]

    def sequence(self, ids, state=None, layers: int | None = None, cells=None, logits: bool = False) -> dict:
        """A whole text through the step graph in one run (lstmgen.engine.graph.sequence_model): {"h", "c": each
        kept layer's states after each token, (layers, T, cells); "h_last", "c_last": the state after the last
        token, (layers, hidden); with `logits` (all layers then) "logits": (T, vocab)}. `state`: (h, c) of shape
        (layers, ..., hidden) to start from (default zeros); `cells`: indices (default all)."""
        ids = np.asarray(torch.as_tensor(ids).reshape(-1).tolist(), np.int64)
        layers = self.num_layers if logits or layers is None else layers
        cells = np.arange(self.hidden_size) if cells is None else np.asarray(cells, np.int64).reshape(-1)
        hidden, steps = self.hidden_size, len(ids)
        if state is None:
            h = c = np.zeros((layers, hidden), np.float32)
        else:
            h, c = (torch.as_tensor(s).detach().float().reshape(-1, hidden)[:layers].numpy() for s in state)
        out = {k: np.zeros((layers, steps, len(cells)), np.float32) for k in "hc"}
        out["h_last"], out["c_last"] = h.copy(), c.copy()
        if logits:
            out["logits"] = np.zeros((steps, self.vocab_size), np.float32)
        if steps == 0:
            return out
        feeds = {NAMES.tokens: ids.reshape(-1, 1, 1), NAMES.cells: cells}
        for i in range(layers):
            feeds[NAMES.layer("h", i)] = np.ascontiguousarray(h[i].reshape(1, 1, hidden))
            feeds[NAMES.layer("c", i)] = np.ascontiguousarray(c[i].reshape(1, 1, hidden))
        session = self._sequence_session(layers, logits)
        names = [o.name for o in session.get_outputs()]
        results = dict(zip(names, session.run(names, feeds)))
        for i in range(layers):
            for k in "hc":
                out[k][i] = results[NAMES.layer(f"{k}_seq", i)].reshape(steps, len(cells))
                out[f"{k}_last"][i] = results[NAMES.layer(f"{k}_last", i)].reshape(hidden)
        if logits:
            out["logits"] = results[NAMES.logits_seq].reshape(steps, -1)[:, : self.vocab_size]
        return out

    def _sequence_session(self, layers: int, logits: bool):
        """The session of the sequence graph for the bottom `layers` layers (with `logits`: all of them and the
        output layer), made the first time it is asked for: at most one a layer count, and one with logits."""
        import onnxruntime as ort

        from .graph import sequence_model

        key = (layers, logits)
        with self._sequences_lock:
            if key not in self._sequences:
                proto = sequence_model(self._step, layers, logits)
                self._sequences[key] = ort.InferenceSession(proto.SerializeToString(),
                                                            session_options(self._threads, spinning=False),
                                                            providers=["CPUExecutionProvider"])
            return self._sequences[key]
