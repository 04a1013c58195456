"""One decoding step at batch 1 on ONNX Runtime, as an engine for lstmgen's int8 generation.

The step graph is lstmgen/export.py's (built from the float weights in milliseconds; nothing is stored):
the embedding row, each layer's gates as one int8 matrix product over [x, h], the int8 output layer.
Every buffer is allocated once and bound with IOBinding, so a step copies nothing: the token goes
into a preallocated int64 cell, and the state and logits ping-pong between two sets of buffers (the
step reads set k and writes set 1 - k), which torch tensors share without copying.

    engine = OrtStep.from_model(model, "int8", threads=1)
    logits, state = engine.forward(prompt_ids)        # the prompt, one step a token
    logits, state = engine.step(token, state)         # each new token

`step` returns torch tensors that view the engine's buffers: the logits stay valid until the step
after next, as does the state; pass the returned state back (a state from elsewhere, such as a torch
model's, is copied in first). One engine serves one decoding stream at a time.

Sampling (a graph built with `sampler=True`, as OrtInt8Model's streams are): each step also computes
its sampling distribution in the graph, so that a draw is a few numpy calls:

    engine = int8_model.new_stream()
    if engine.sampling(config, banned):               # False: top-k, top-p or temperature < 1e-3
        logits, state = engine.forward(prompt_ids)    #   (then use lstmgen.sampling on `logits`)
        token = engine.draw(u)                        # = draw(distribution(logits, config, banned), u)
        y = engine.coupled_draw(p, x, u_keep, u_res)  # = coupled_draw(p, distribution(...), x, ...)
        engine.model_probability(y)                   # = generate.model_probability(logits, y) (numpy)
        logits, state = engine.step(token, state)
"""

from __future__ import annotations

import os

import numpy as np
import torch


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
        spinning = os.environ.get("LSTMGEN_ORT_SPINNING", "0") == "1"
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning and threads > 1 else "0")
    return options


class OrtStep:
    """An ONNX Runtime session of a step graph (inputs token, h, c; outputs logits, h_out, c_out) with
    its buffers bound once. `proto` is an onnx.ModelProto or serialized bytes. A graph built with
    `sampler=True` (export.step_model) also gives each step's sampling distribution: see `sampling`."""

    def __init__(self, proto=None, threads: int | None = None, spinning: bool | None = None, session=None):
        import onnxruntime as ort

        if session is None:
            data = proto if isinstance(proto, (bytes, bytearray)) else proto.SerializeToString()
            session = ort.InferenceSession(data, session_options(threads, spinning), providers=["CPUExecutionProvider"])
        self.session = session
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        state_shape = tuple(inputs["h"])
        self.num_layers, _, self.hidden_size = state_shape
        self.vocab_size = outputs["logits"][-1]
        self.token = np.zeros((1, 1), np.int64)
        self._h = [np.zeros(state_shape, np.float32) for _ in range(2)]
        self._c = [np.zeros(state_shape, np.float32) for _ in range(2)]
        self._logits = [np.zeros(self.vocab_size, np.float32) for _ in range(2)]
        self._states = [(torch.from_numpy(self._h[k]), torch.from_numpy(self._c[k])) for k in range(2)]
        self._logits_t = [torch.from_numpy(a) for a in self._logits]
        self.has_sampler = "probs" in outputs
        feeds = [("token", self.token)]
        if self.has_sampler:
            self.sampler_block = outputs["probs"][0] // outputs["cdf"][0]
            self.temperature = np.ones(1, np.float32)  # the sampler's inputs, read by every step
            self.mask = np.zeros(self.vocab_size, np.float32)
            self._probs = [np.zeros(outputs["probs"][0], np.float32) for _ in range(2)]
            self._cdf = [np.zeros(outputs["cdf"][0], np.float32) for _ in range(2)]
            self._rows = [a.reshape(-1, self.sampler_block) for a in self._probs]  # one row a block
            self._local = np.zeros(self.sampler_block, np.float32)  # a block's cumulative sum
            feeds += [("temperature", self.temperature), ("mask", self.mask)]
        self._bindings = []
        for k in range(2):  # binding k: reads state k, writes state 1 - k and logits k
            binding = self.session.io_binding()
            for name, array in feeds + [("h", self._h[k]), ("c", self._c[k])]:
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array))
            fetches = [("logits", self._logits[k]), ("h_out", self._h[1 - k]), ("c_out", self._c[1 - k])]
            if self.has_sampler:
                fetches += [("probs", self._probs[k]), ("cdf", self._cdf[k])]
            for name, array in fetches:
                binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(array))
            self._bindings.append(binding)
        self._run = self.session.run_with_iobinding
        self._current = 0  # the buffer set that holds the state the next step reads
        self._sampling = None  # (temperature, banned) the sampler was set for, or None
        self._version = 0  # bumped by each `sampling` call; _made[k]: the version logits k were made under
        self._made = [-1, -1]

    @classmethod
    def from_model(cls, model, weights: str = "int8", threads: int | None = None, spinning: bool | None = None,
                   **options) -> "OrtStep":
        """An engine for a float LSTMLanguageModel, its graph built by lstmgen.export.step_model."""
        from .export import step_model

        return cls(step_model(model, weights, **options), threads, spinning)

    def fork(self) -> "OrtStep":
        """Another stream on the same session (ONNX Runtime runs a session from several threads at once):
        its own buffers and bindings, so two decoders never overwrite each other's state."""
        return OrtStep(session=self.session)

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

    def step(self, token: int, state=None):
        """(token id, state) -> (next-token logits (vocab,), new state (h, c)), both torch tensors viewing
        the engine's buffers."""
        k = self._load(state)
        self.token[0, 0] = token
        self._run(self._bindings[k])
        self._made[k] = self._version
        self._current = 1 - k
        return self._logits_t[k], self._states[1 - k]

    def step_numpy(self, token: int) -> np.ndarray:
        """One step from the engine's current state; the logits as a numpy view (the fastest call)."""
        k = self._current
        self.token[0, 0] = token
        self._run(self._bindings[k])
        self._made[k] = self._version
        self._current = 1 - k
        return self._logits[k]

    def forward(self, ids, state=None):
        """A prompt, one step a token: (ids, state) -> (the last token's logits, state)."""
        ids = torch.as_tensor(ids).reshape(-1).tolist()
        if not ids:
            raise ValueError("the prompt must not be empty")
        logits, state = self.step(ids[0], state)
        for token in ids[1:]:
            logits, state = self.step(token, state)
        return logits, state

    # ------------------------------------------------------------------ sampling
    # lstmgen.sampling's distribution + draw / coupled_draw for this engine's last logits, computed in
    # the step graph (softmax of logits / temperature + mask, and the running sum of its blocks'
    # masses): a draw is a binary search over the blocks and a cumulative sum inside one block.

    def sampling(self, config, banned: list[int] | None = None) -> bool:
        """Set the distribution the following steps compute: lstmgen.sampling.distribution(logits, config,
        banned). Returns False, changing nothing, where this engine cannot serve `config` (no sampler in
        the graph, temperature below 1e-3 (0 is greedy), top-k or top-p on): use the torch path then.
        Call it before the step whose logits are drawn from (before `forward` for a prompt); a draw from
        logits computed before it is still exact, through numpy (slower)."""
        temperature = float(config.temperature)
        if (not self.has_sampler or temperature < 1e-3 or 0 < config.top_k < self.vocab_size
                or config.top_p < 1.0):
            return False
        if banned is not None and len(banned) and not config.allow_special:  # a list or a LongTensor
            banned = sorted({int(i) for i in (banned.tolist() if isinstance(banned, torch.Tensor) else banned)})
        else:
            banned = []
        if self._sampling != (temperature, banned):
            self.temperature[0] = temperature
            self.mask.fill(0.0)
            self.mask[banned] = -np.inf
            self._sampling = (temperature, banned)
            self._version += 1
        return True

    def _last(self) -> int:
        """The buffer set of the last step's outputs, its distribution recomputed in numpy if that step
        ran under other sampling settings."""
        k = 1 - self._current
        if self._made[k] != self._version:
            if self._sampling is None:
                raise RuntimeError("call sampling(config, banned) first")
            z = self._logits[k].astype(np.float64) / self._sampling[0] + self.mask
            probs = np.exp(z - z.max())
            probs = (probs / probs.sum()).astype(np.float32)
            self._probs[k].fill(0.0)
            self._probs[k][: self.vocab_size] = probs
            np.cumsum(self._probs[k].reshape(-1, self.sampler_block).sum(1), out=self._cdf[k])
            self._made[k] = self._version
        return k

    def draw(self, u: float) -> int:
        """lstmgen.sampling.draw(distribution(logits, config, banned), u) for the last step's logits: the
        token at u (in [0, 1)) of the inverse CDF, in two levels: the block (a binary search over the
        blocks' running sums), then the token inside it (the block's cumulative sum, scaled to the
        block's mass). Never a token of probability 0."""
        k = 1 - self._current
        if self._made[k] != self._version:
            k = self._last()
        cdf = self._cdf[k]
        target = u * float(cdf[-1])
        b = int(cdf.searchsorted(target, "right")) if len(cdf) > 1 else 0
        if b >= len(cdf):  # u * total rounded up to the total: the last block with mass
            b = int(np.flatnonzero(np.diff(cdf, prepend=np.float32(0.0)))[-1])
        low = float(cdf[b - 1]) if b else 0.0
        row, local = self._rows[k][b], self._local
        np.cumsum(row, out=local)
        mass = float(cdf[b]) - low
        index = int(local.searchsorted((target - low) / mass * float(local[-1]) if mass > 0 else 0.0, "right"))
        if index >= len(local):  # rounding at the block's end: its last token of positive probability
            index = int(np.flatnonzero(row)[-1])
        return b * self.sampler_block + index

    def probability(self, token: int) -> float:
        """The sampling distribution's probability of `token` for the last step (q(token))."""
        k = self._last()
        return float(self._probs[k][token]) / float(self._cdf[k][-1])

    def probs(self) -> np.ndarray:
        """The last step's sampling distribution (vocab,), float32, summing to 1 up to rounding (a view)."""
        return self._probs[self._last()][: self.vocab_size]

    def coupled_draw(self, p, x: int, u_keep: float, u_residual: float) -> int:
        """lstmgen.sampling.coupled_draw(p, q, x, u_keep, u_residual) with q this engine's distribution for
        the last step: keep the other side's token x (drawn from p, a torch tensor or numpy array) with
        probability min(1, q(x)/p(x)), else draw from max(q - p, 0) normalised. Marginally exactly q."""
        k = self._last()
        p = p.numpy() if isinstance(p, torch.Tensor) else p
        probs, total = self._probs[k], float(self._cdf[k][-1])
        if u_keep * float(p[x]) < float(probs[x]) / total:
            return x
        residual = np.maximum(probs[: self.vocab_size] / total - np.asarray(p, np.float64), 0.0)
        cdf = np.cumsum(residual)
        if not cdf[-1] > 0.0:  # p == q up to rounding: nothing left to move
            return x
        return _search(cdf, residual, u_residual * cdf[-1])

    def model_probability(self, token: int) -> float:
        """lstmgen.generate.model_probability for the last step: the model's own probability of `token`
        (temperature 1, nothing masked)."""
        logits = self._logits[1 - self._current]
        weights = np.exp(logits - logits.max())  # float32, as lstmgen.generate.model_probability
        return float(weights[token] / weights.sum(dtype=np.float64))


def _search(cdf: np.ndarray, weights: np.ndarray, target: float) -> int:
    """The first index whose running sum exceeds target; past the end (rounding), the last index of
    positive weight."""
    index = int(cdf.searchsorted(target, "right"))
    if index >= len(cdf):
        index = int(np.flatnonzero(weights)[-1])
    return index


class OrtInt8Model(torch.nn.Module):
    """The int8 model for generation on ONNX Runtime: what lstmgen.quantize.quantize_dynamic returns for
    torch, with the same calls (`model(ids, state)`, `init_state`, `eval`), plus `new_stream()`, an
    engine of its own for each decoder (make_step uses it). The float weights are read once, when the
    graph is built (tens of milliseconds); nothing derived is stored."""

    def __init__(self, model, weights: str = "int8", threads: int | None = None, sampler: bool = True, **options):
        super().__init__()
        self.vocab_size, self.num_layers, self.hidden_size = model.vocab_size, model.num_layers, model.hidden_size
        from .export import initializer_bytes, step_model

        proto = step_model(model, weights, sampler=sampler, **options)
        self._bytes = initializer_bytes(proto)
        self._engine = OrtStep(proto, threads)
        self.weights = weights
        self.eval()

    def size_bytes(self) -> int:
        """Bytes of the graph's weights (the int8 matrices and their scales; a tied embedding shares the
        output layer's)."""
        return self._bytes

    def new_stream(self) -> OrtStep:
        return self._engine.fork()

    def init_state(self, batch_size: int, device=None):
        shape = (self.num_layers, batch_size, self.hidden_size)
        return torch.zeros(shape), torch.zeros(shape)

    def forward(self, ids: torch.Tensor, state=None):
        """ids (batch, time) -> logits (batch, time, vocab) and the new state, one step a token per stream."""
        batch, time = ids.shape
        logits = torch.empty(batch, time, self.vocab_size)
        h_all, c_all = state if state is not None else self.init_state(batch)
        hs, cs = [], []
        for b in range(batch):
            engine = self.new_stream()
            stream_state = (h_all[:, b : b + 1], c_all[:, b : b + 1])
            for t, token in enumerate(ids[b].tolist()):
                out, stream_state = engine.step(token, stream_state)
                logits[b, t] = out
            hs.append(stream_state[0].clone())
            cs.append(stream_state[1].clone())
        return logits, (torch.cat(hs, 1), torch.cat(cs, 1))


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
            logits, (h, c) = self.model(token, (h, c))
            return logits[0, -1], h, c

    wrapper = Step(model).eval()  # a fresh wrapper trains (dropout on) until told otherwise
    example = (torch.zeros(1, 1, dtype=torch.long), *model.init_state(1))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, example, buffer, dynamo=False, opset_version=opset,
                          input_names=["token", "h", "c"], output_names=["logits", "h_out", "c_out"])
    return onnx.load_from_string(buffer.getvalue())
