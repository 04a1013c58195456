"""ONNX export of one decoding step, and the ONNX Runtime engine: logits and states against the torch
model's over several steps, float (tight) and int8 (loose), on tiny models built here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from lstmgen.export import WEIGHT_KINDS, dequantize_blockwise, export, main, quantize_blockwise, step_model  # noqa: E402
from lstmgen.generate import SingleStep  # noqa: E402
from lstmgen.model import LSTMLanguageModel  # noqa: E402
from lstmgen.ort_engine import OrtStep  # noqa: E402

VOCAB = 50
TOKENS = [1, 5, 7, 49, 0, 3, 3, 12]
TOLERANCE = {"float": 1e-5, "int8": 3e-2, "int8-nbits": 3e-2, "int8-dq": 3e-2, "int8-dynamic": 3e-2, "int4": 2e-1}


def tiny(tied: bool, layers: int = 2) -> LSTMLanguageModel:
    torch.manual_seed(0)
    embed = 32 if tied else 16
    model = LSTMLanguageModel(VOCAB, embed_size=embed, hidden_size=32, num_layers=layers, tie_weights=tied)
    with torch.no_grad():  # the default init leaves biases at zero and the weights small: make it less trivial
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def torch_steps(model, tokens):
    h, c = model.init_state(1)
    out = []
    with torch.inference_mode():
        for token in tokens:
            logits, h, c = SingleStep(model)(torch.tensor([[token]]), h, c)
            out.append((logits.numpy().copy(), h.numpy().copy(), c.numpy().copy()))
    return out


def session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("kind", WEIGHT_KINDS)
def test_step_graph_matches_torch(tied, kind):
    model = tiny(tied)
    run = session(step_model(model, kind, block=16)).run
    h = np.zeros((2, 1, 32), np.float32)
    c = np.zeros_like(h)
    for token, (logits_t, h_t, c_t) in zip(TOKENS, torch_steps(model, TOKENS)):
        logits, h, c = run(None, {"token": np.array([[token]], np.int64), "h": h, "c": c})
        assert logits.shape == (VOCAB,) and h.shape == c.shape == (2, 1, 32)
        scale = max(1.0, float(np.abs(logits_t).max()))
        assert np.abs(logits - logits_t).max() <= TOLERANCE[kind] * scale, kind
        assert np.abs(h - h_t).max() <= TOLERANCE[kind] * 2
        assert np.abs(c - c_t).max() <= TOLERANCE[kind] * 4


def test_one_layer_graph():
    model = tiny(False, layers=1)
    logits, h, c = session(step_model(model, "float")).run(
        None, {"token": np.array([[3]], np.int64), "h": np.zeros((1, 1, 32), np.float32), "c": np.zeros((1, 1, 32), np.float32)})
    logits_t, h_t, c_t = torch_steps(model, [3])[0]
    assert np.allclose(logits, logits_t, atol=1e-5) and np.allclose(h, h_t, atol=1e-6) and np.allclose(c, c_t, atol=1e-6)


@pytest.mark.parametrize("bits", [4, 8])
def test_blockwise_round_trip(bits):
    w = np.random.default_rng(0).standard_normal((7, 40)).astype(np.float32)
    packed, scale = quantize_blockwise(w, bits, 16)  # 40 inputs: the last block is padded
    assert packed.shape == (7, 3, 16 * bits // 8) and scale.shape == (7, 3)
    back = dequantize_blockwise(packed, scale, bits, 40)
    step = np.repeat(scale, 16, 1)[:, :40]
    assert np.all(np.abs(back - w) <= step / 2 + 1e-6)


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_engine_carries_state_without_copies(tied):
    model = tiny(tied)
    engine = OrtStep.from_model(model, "float", threads=1)
    expected = torch_steps(model, TOKENS)
    state = None
    for token, (logits_t, h_t, c_t) in zip(TOKENS, expected):
        logits, state = engine.step(token, state)
        assert isinstance(logits, torch.Tensor) and logits.shape == (VOCAB,)
        assert np.allclose(logits.numpy(), logits_t, atol=1e-5)
        assert np.allclose(state[0].numpy(), h_t, atol=1e-6) and np.allclose(state[1].numpy(), c_t, atol=1e-6)
    # A state from elsewhere (the torch model's) is copied in.
    with torch.inference_mode():
        _, (h, c) = model(torch.tensor([TOKENS[:4]]))
        logits_t, _ = model(torch.tensor([[TOKENS[4]]]), (h, c))
    logits, _ = engine.step(TOKENS[4], (h, c))
    assert np.allclose(logits.numpy(), logits_t[0, -1].numpy(), atol=1e-5)
    # The prompt in one call.
    logits, state = engine.forward(TOKENS)
    assert np.allclose(logits.numpy(), expected[-1][0], atol=1e-5)


def test_int8_engine_is_close():
    model = tiny(True)
    engine = OrtStep.from_model(model, "int8", threads=1, block=16)
    state = None
    for token, (logits_t, _, _) in zip(TOKENS, torch_steps(model, TOKENS)):
        logits, state = engine.step(token, state)
        assert np.abs(logits.numpy() - logits_t).max() <= 3e-2 * max(1.0, float(np.abs(logits_t).max()))


def test_export_files_load_in_onnx_runtime(tmp_path):
    model = tiny(True)
    paths = export(model, tmp_path, ("float", "int8"))
    assert [p.name for p in paths] == ["step.onnx", "step.int8.onnx"]
    onnx.checker.check_model(onnx.load(paths[0]))
    expected = torch_steps(model, TOKENS[:3])
    for path, tolerance in zip(paths, (1e-5, 3e-2)):
        run = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run
        h = c = np.zeros((2, 1, 32), np.float32)
        for token, (logits_t, _, _) in zip(TOKENS, expected):
            logits, h, c = run(None, {"token": np.array([[token]], np.int64), "h": h, "c": c})
            assert np.abs(logits - logits_t).max() <= tolerance * max(1.0, float(np.abs(logits_t).max()))


def test_export_command(tmp_path, capsys):
    model = tiny(False)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    from lstmgen.tokenizers import CharTokenizer

    CharTokenizer([chr(60 + i) for i in range(VOCAB)]).save(folder)  # "<" ... "m": VOCAB characters
    out = tmp_path / "onnx"
    assert main(["--onnx", str(folder), str(out), "--no-hub"]) == 0
    assert (out / "step.onnx").is_file() and (out / "step.int8.onnx").is_file() and (out / "config.json").is_file()
    printed = capsys.readouterr().out
    assert "InferenceSession" in printed
    # The README snippet printed by the command runs as it is.
    snippet = printed[printed.index("import numpy"):]
    exec(compile(snippet, "snippet", "exec"), {})


def test_int8_model_generates_like_a_quantized_model():
    """OrtInt8Model drops in where quantize_dynamic's copy goes: a prompt batch, streams that do not
    share buffers, and the sequence forward agreeing with the step."""
    from lstmgen.ort_engine import OrtInt8Model

    model = tiny(True)
    int8 = OrtInt8Model(model, "float", threads=1)  # float weights: exact, so the plumbing is what is tested
    ids = torch.tensor([TOKENS, TOKENS[::-1]])
    with torch.inference_mode():
        expected, (h_t, c_t) = model(ids)
    logits, (h, c) = int8(ids)
    assert logits.shape == expected.shape and torch.allclose(logits, expected, atol=1e-5)
    assert torch.allclose(h, h_t, atol=1e-6) and torch.allclose(c, c_t, atol=1e-6)
    a, b = int8.new_stream(), int8.new_stream()
    state_a = state_b = None
    for token in TOKENS:  # interleaved streams keep their own states
        logits_a, state_a = a.step(token, state_a)
        logits_b, state_b = b.step(TOKENS[0], state_b)
    assert torch.allclose(logits_a, expected[0, -1], atol=1e-5)


def test_int8_model_size():
    from lstmgen.ort_engine import OrtInt8Model

    model = tiny(True)
    floats = sum(p.numel() for p in model.parameters()) * 4
    assert 0 < OrtInt8Model(model, "int8", block=16).size_bytes() < OrtInt8Model(model, "float").size_bytes() <= floats * 1.1
