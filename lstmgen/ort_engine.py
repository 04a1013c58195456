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
    its buffers bound once. `proto` is an onnx.ModelProto or serialized bytes."""

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
        self._bindings = []
        for k in range(2):  # binding k: reads state k, writes state 1 - k and logits k
            binding = self.session.io_binding()
            for name, array in (("token", self.token), ("h", self._h[k]), ("c", self._c[k])):
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array))
            for name, array in (("logits", self._logits[k]), ("h_out", self._h[1 - k]), ("c_out", self._c[1 - k])):
                binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(array))
            self._bindings.append(binding)
        self._run = self.session.run_with_iobinding
        self._current = 0  # the buffer set that holds the state the next step reads

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
        self._current = 1 - k
        return self._logits_t[k], self._states[1 - k]

    def step_numpy(self, token: int) -> np.ndarray:
        """One step from the engine's current state; the logits as a numpy view (the fastest call)."""
        k = self._current
        self.token[0, 0] = token
        self._run(self._bindings[k])
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


class OrtInt8Model(torch.nn.Module):
    """The int8 model for generation on ONNX Runtime: what lstmgen.quantize.quantize_dynamic returns for
    torch, with the same calls (`model(ids, state)`, `init_state`, `eval`), plus `new_stream()`, an
    engine of its own for each decoder (make_step uses it). The float weights are read once, when the
    graph is built (tens of milliseconds); nothing derived is stored."""

    def __init__(self, model, weights: str = "int8", threads: int | None = None, **options):
        super().__init__()
        self.vocab_size, self.num_layers, self.hidden_size = model.vocab_size, model.num_layers, model.hidden_size
        from .export import step_model

        proto = step_model(model, weights, **options)
        self._bytes = sum(len(t.raw_data) or t.ByteSize() for t in proto.graph.initializer)
        self._engine = OrtStep(proto, threads)
        self.weights = weights
        self.eval()

    def size_bytes(self) -> int:
        """Bytes of the graph's weights (the int8 matrices, their scales, the float embedding)."""
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
