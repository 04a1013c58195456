"""ONNX export of one decoding step, and the ONNX Runtime engine: logits and states against the torch
model's over several steps, float (tight) and int8 (loose), on tiny models built here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from lstmgen.__main__ import main  # noqa: E402
from lstmgen.engine.graph import WEIGHT_KINDS, dequantize_blockwise, export, quantize_blockwise, step_model  # noqa: E402
from lstmgen.engine.streams import SingleStep  # noqa: E402
from lstmgen.core.model import LSTMLanguageModel  # noqa: E402
from lstmgen.engine.ort import OrtStep  # noqa: E402

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
    from lstmgen.core.tokenizers import CharTokenizer

    CharTokenizer([chr(60 + i) for i in range(VOCAB)]).save(folder)  # "<" ... "m": VOCAB characters
    out = tmp_path / "onnx"
    assert main(["export", "--onnx", str(folder), str(out), "--no-hub"]) == 0
    assert (out / "step.onnx").is_file() and (out / "step.int8.onnx").is_file() and (out / "config.json").is_file()
    printed = capsys.readouterr().out
    assert "InferenceSession" in printed
    # The README snippet printed by the command runs as it is.
    snippet = printed[printed.index("import numpy"):]
    exec(compile(snippet, "snippet", "exec"), {})


def test_int8_model_generates_like_a_quantized_model():
    """OrtModel drops in where quantize_dynamic's copy goes: a prompt batch, streams that do not
    share buffers, and the sequence forward agreeing with the step."""
    from lstmgen.engine.ort import OrtModel

    model = tiny(True)
    int8 = OrtModel(model, "float", threads=1)  # float weights: exact, so the plumbing is what is tested
    ids = torch.tensor([TOKENS, TOKENS[::-1]])
    with torch.inference_mode():
        expected, (h_t, c_t) = model(ids)
    logits, (h, c) = int8(ids)
    assert logits.shape == expected.shape and torch.allclose(logits, expected, atol=1e-5)
    assert torch.allclose(h, h_t, atol=1e-6) and torch.allclose(c, c_t, atol=1e-6)
    a, b = int8.new_engine(), int8.new_engine()
    state_a = state_b = None
    for token in TOKENS:  # interleaved streams keep their own states
        logits_a, state_a = a.step(token, state_a)
        logits_b, state_b = b.step(TOKENS[0], state_b)
    assert torch.allclose(logits_a, expected[0, -1], atol=1e-5)


def test_int8_model_size():
    from lstmgen.engine.ort import OrtModel

    model = tiny(True)
    floats = sum(p.numel() for p in model.parameters()) * 4
    assert 0 < OrtModel(model, "int8", block=16, sampler_block=16).size_bytes() < OrtModel(model, "float", sampler_block=16).size_bytes() <= floats * 1.1


# --------------------------------------------------------------------------- int8 embedding, shared when tied


@pytest.mark.parametrize("kind", ["int8", "int8-nbits", "int8-dq"])
def test_tied_int8_graph_stores_one_matrix(kind):
    """A tied model's int8 graph gathers its embedding rows from the output layer's int8 weights: no
    embedding of its own, in either decoder format (MatMulNBits blocks, DynamicQuantizeMatMul rows)."""
    from lstmgen.engine.graph import initializer_bytes

    model = tiny(True)
    proto = step_model(model, kind, block=16, share_tied=True)
    names = [t.name for t in proto.graph.initializer]
    assert not any(n.startswith("embedding") and "shape" not in n for n in names), names
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["lstmgen.embedding"] == "shared"
    float_embedding = step_model(model, kind, block=16, embedding="float")
    assert initializer_bytes(float_embedding) - initializer_bytes(proto) >= VOCAB * 32 * 4 * 0.9
    run = session(proto).run
    h = c = np.zeros((2, 1, 32), np.float32)
    for token, (logits_t, _, _) in zip(TOKENS, torch_steps(model, TOKENS)):
        logits, h, c = run(None, {"token": np.array([[token]], np.int64), "h": h, "c": c})
        assert np.abs(logits - logits_t).max() <= 3e-2 * max(1.0, float(np.abs(logits_t).max()))
    # By default only a MatMulNBits decoder (a row gather) is shared; a DynamicQuantizeMatMul one keeps rows.
    default = {p.key: p.value for p in step_model(model, kind, block=16).metadata_props}["lstmgen.embedding"]
    assert default == ("int8" if kind == "int8-dq" else "shared")


def test_untied_int8_graph_has_int8_embedding_rows():
    model = tiny(False)
    proto = step_model(model, "int8", block=16)
    by_name = {t.name.rsplit("_", 1)[0]: t for t in proto.graph.initializer}
    assert by_name["embedding_int8"].data_type == onnx.TensorProto.INT8
    assert tuple(by_name["embedding_int8"].dims) == (VOCAB, 16)
    assert {p.key: p.value for p in proto.metadata_props}["lstmgen.embedding"] == "int8"


# --------------------------------------------------------------------------- the sampler


def chi_squared_p(counts: np.ndarray, expected_probs: np.ndarray, min_expected: float = 20.0) -> float:
    """Pearson's chi-squared test of counts against probabilities, cells merged (in order of probability)
    until each expects at least `min_expected` draws; the p-value from the regularized gamma function."""
    n = counts.sum()
    order = np.argsort(expected_probs)
    cells_obs, cells_exp, obs, exp = [], [], 0.0, 0.0
    for i in order:
        obs += counts[i]
        exp += expected_probs[i] * n
        if exp >= min_expected:
            cells_obs.append(obs)
            cells_exp.append(exp)
            obs = exp = 0.0
    cells_obs[-1] += obs
    cells_exp[-1] += exp
    cells_obs, cells_exp = np.array(cells_obs), np.array(cells_exp)
    statistic = float(((cells_obs - cells_exp) ** 2 / cells_exp).sum())
    dof = len(cells_obs) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                         torch.tensor(statistic / 2, dtype=torch.float64)))


def sampler_engine(vocab: int, seed: int = 0, probabilities: bool = False):
    """An int8 engine with the sampler on a model of `vocab` tokens, its logits spread (3 per unit)."""
    torch.manual_seed(seed)
    model = LSTMLanguageModel(vocab, embed_size=16, hidden_size=16, num_layers=1).eval()
    with torch.no_grad():
        model.decoder.weight.normal_(0, 1.0)
        model.decoder.bias.normal_(0, 1.0)
    proto = step_model(model, "int8", block=16, sampler=True, sampler_block=32, probabilities=probabilities,
                       layer_states=True)
    return model, OrtStep(proto, threads=1)


def own_logits(engine, ids):
    """The model's own logits after `ids`: a fresh stream of the engine is left as it was made."""
    logits, _ = engine.fork().forward(ids)
    return logits.double()


@pytest.mark.parametrize("vocab", [65, 13000])
def test_sampler_draws_exactly_from_the_distribution(vocab):
    from lstmgen.core.sampling import RandomNumbers, SamplingConfig, distribution, draw

    model, engine = sampler_engine(vocab)
    config = SamplingConfig(temperature=0.8)
    banned = [0, vocab // 2, vocab - 1]
    expected = distribution(own_logits(engine, [3, 1, 4]), config, banned).numpy()
    assert engine.sampling(config, banned)
    engine.forward([3, 1, 4])
    assert np.allclose(engine.probs(), expected, atol=1e-6)
    # Drawn in numpy, from the same step (a u the step was not given).
    draws = 100_000 if vocab > 100 else 40_000
    stream = RandomNumbers(1234)
    tokens = np.array([engine.draw(stream.next()[0]) for _ in range(draws)])
    counts = np.bincount(tokens, minlength=vocab)
    assert counts[banned].sum() == 0  # masked tokens are never drawn
    assert chi_squared_p(counts, expected) > 1e-3
    # Drawn in the graph, each step given its u: the same distribution.
    stream = RandomNumbers(99)
    in_graph = []
    for _ in range(20_000):
        u = stream.next()[0]
        engine.forward([3, 1, 4], u=u)
        in_graph.append(engine.draw(u))
    counts = np.bincount(in_graph, minlength=vocab)
    assert counts[banned].sum() == 0 and chi_squared_p(counts, expected) > 1e-3
    # The same u gives torch's token (both invert the same CDF), in the graph and in numpy.
    us = np.random.default_rng(0).random(1000).tolist() + [0.0, 1 - 2**-53]
    torch_tokens = np.array([draw(torch.from_numpy(expected), u) for u in us])
    numpy_tokens = np.array([engine.draw(u) for u in us])
    graph_tokens = []
    for u in us:
        engine.forward([3, 1, 4], u=u)
        graph_tokens.append(engine.draw(u))
    assert np.mean(numpy_tokens == torch_tokens) >= 0.999 and np.mean(np.array(graph_tokens) == torch_tokens) >= 0.999
    assert not {numpy_tokens[-1], numpy_tokens[-2], graph_tokens[-1], graph_tokens[-2]} & set(banned)
    stream = RandomNumbers(1234)
    engine.forward([3, 1, 4])
    assert [engine.draw(stream.next()[0]) for _ in range(50)] == tokens[:50].tolist()  # reproducible


@pytest.mark.parametrize("vocab", [65, 13000])
def test_coupled_draw_on_the_engine_is_exact_for_its_side(vocab):
    """The int8 side of a coupled draw (streams.coupled_draw on an engine's stream) has exactly its own distribution q,
    whatever p the float side drew from, and keeps the float side's token as often as the maximal
    coupling does (1 - TV)."""
    from lstmgen.engine.ort import OrtModel, OrtStream
    from lstmgen.core.sampling import RandomNumbers, SamplingConfig, distribution
    from lstmgen.engine.streams import coupled_draw

    model, engine = sampler_engine(vocab)
    config = SamplingConfig(temperature=0.8)
    stream = OrtModel(model, "int8", block=16, sampler_block=32).stream(config)
    stream.prompt([2, 7])
    assert isinstance(stream, OrtStream)
    q = stream.probabilities().astype(np.float64)
    q /= q.sum()
    assert np.allclose(q, distribution(own_logits(engine, [2, 7]), config).numpy(), atol=1e-6)
    noise = torch.randn(vocab, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.5
    p = distribution(torch.from_numpy(q).log() + noise, config).float()
    cdf = p.double().cumsum(0)
    draws = 60_000 if vocab > 100 else 30_000
    randomness = RandomNumbers(7)
    same = 0
    ys = np.empty(draws, np.int64)
    for i in range(draws):
        u, u_keep, u_residual = randomness.next()
        x = min(int(torch.searchsorted(cdf, u * cdf[-1], right=True)), vocab - 1)
        ys[i] = coupled_draw(stream, x, float(p[x]), p.numpy(), u_keep, u_residual)
        same += ys[i] == x
    assert chi_squared_p(np.bincount(ys, minlength=vocab), q) > 1e-3
    tv = 0.5 * np.abs(q - p.double().numpy()).sum()
    assert abs(same / draws - (1 - tv)) < 4 * np.sqrt(tv * (1 - tv) / draws) + 1e-3


@pytest.mark.parametrize("probabilities", [False, True], ids=["sampler", "sampler+probabilities"])
def test_sampler_settings_greedy_and_the_models_own_probabilities(probabilities):
    """Settings the graph does not serve are refused (top-k, top-p, a temperature below 1e-3 but not 0);
    greedy is the most likely token that is not masked; the model's own probability of a token
    (temperature 1, nothing masked) comes from the graph where it computes it, else from the logits
    while the engine is neutral, and is refused otherwise."""
    from lstmgen.core.sampling import SamplingConfig

    model, engine = sampler_engine(65, probabilities=probabilities)
    for refused in (SamplingConfig(temperature=0.8, top_k=5), SamplingConfig(temperature=0.8, top_p=0.9),
                    SamplingConfig(temperature=1e-4), SamplingConfig(temperature=0.8, min_p=0.1)):
        assert not engine.sampling(refused)
    logits = own_logits(engine, [1, 2])
    best = int(logits.argmax())
    assert engine.sampling(SamplingConfig(temperature=0.0), [best])
    engine.forward([1, 2])
    greedy = int(logits.index_fill(0, torch.tensor([best]), float("-inf")).argmax())  # the best one is masked
    assert engine.draw(0.99) == greedy and engine.probability(greedy) == 1.0 and engine.probs().sum() == 1.0
    expected = float(torch.softmax(logits, 0)[9])
    assert engine.sampling(SamplingConfig(temperature=0.5), [4])
    engine.forward([1, 2])
    if probabilities:
        assert abs(engine.model_probability(9) - expected) < 1e-6
    else:
        with pytest.raises(RuntimeError, match="probabilities=True"):
            engine.model_probability(9)
        neutral = engine.fork()
        neutral.forward([1, 2])
        assert abs(neutral.model_probability(9) - expected) < 1e-6
    assert not OrtStep.from_model(tiny(True), "float").sampling(SamplingConfig(temperature=0.8))  # no sampler in the graph


def test_exported_files_have_no_sampler(tmp_path):
    paths = export(tiny(True), tmp_path, ("int8",))
    assert [o.name for o in onnx.load(paths[0]).graph.output] == ["logits", "h_out", "c_out"]


@pytest.mark.parametrize("module, unknown", [("lstmgen.engine.ort", "lstmgen.hub"), ("lstmgen.engine.graph", "lstmgen.hub"),
                                             ("lstmgen.training.folder", "lstmgen.training.trainer"), ("lstmgen.core.records", "lstmgen.training.trainer")])
def test_dependencies_point_one_way(module, unknown):
    """The engine knows no Hub, publishing and the records know no trainer (a fresh interpreter each)."""
    import subprocess
    import sys

    code = f"import sys, {module}; print({unknown!r} in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
