"""Every figure the app shows, checked against an independent computation.

Each test below takes one figure of the named API (service.side_by_side, service.candidates, the
model sizes) for the three shipped models, loaded as the app loads them, and recomputes it another way:
plain numpy over a model's full logits (no reference calls lstmgen's sampling or comparison code).
Figures must agree to 1e-4 (absolute); sizes, shown to 0.01 MB, must round to the same figure.

The references:
- float32 side: the torch model (the weights as trained), teacher-forced over the prompt and the ids in
  one batched forward. The app's float32 copy runs on ONNX Runtime; its figures must match the torch
  model's to 1e-4.
- int8 side: the int8 engine's own logits (served.int8, the app's OrtModel), stepped over the same ids
  from a fresh stream. The int8 copy is a model of its own: its figures are its own, not the float
  model's within some tolerance.
- The documented rule for special tokens (README, "Generate"): they are masked before each draw and the
  rest renormalised, unless allow_special. A token's own probability ("how sure the model was") is its
  model's at temperature 1, with the same masking, whatever the temperature, top-k or top-p of the draw.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lstmgen.serve import service

PROMPTS = {"char": "ROMEO:", "subword": "HAMLET:\nTo be", "word": "Harry looked at"}
LENGTH = 40  # generated tokens a run
K = 10  # next-token candidates
TOLERANCE = 1e-4

# Sampling settings: several temperatures (0 is greedy), top-k, top-p, both, and special tokens allowed.
SETTINGS = [
    {"temperature": 0.0},
    {"temperature": 0.5},
    {"temperature": 1.0},
    {"temperature": 1.5},
    {"temperature": 0.8, "top_k": 5},
    {"temperature": 1.2, "top_p": 0.9},
    {"temperature": 1.0, "top_k": 20, "top_p": 0.8},
    {"temperature": 1.0, "allow_special": True},
]
NEXT_TOKEN_SETTINGS = [s for s in SETTINGS if s["temperature"] > 0]  # next tokens refuses greedy


def settings_id(settings: dict) -> str:
    return ",".join(f"{key}={value}" for key, value in settings.items())


@pytest.fixture(scope="module")
def models():
    """The three shipped models, loaded as the app loads them (bundled weights, no Hub)."""
    served = service.load_all(use_hub=False)
    assert all(s.loaded is not None for s in served.values()), {n: s.error for n, s in served.items()}
    assert set(served) == set(PROMPTS)
    return served


# --------------------------------------------------------------------------- the references, in numpy


def teacher_forced(model, ids: list[int]) -> np.ndarray:
    """(len(ids), vocab) float64 logits: row i is the model's next-token logits after ids[: i + 1]. Works
    for the torch model (one batched forward) and the int8 engine (one step a token, fresh state)."""
    with torch.inference_mode():
        logits, _ = model(torch.tensor([ids]))
    return logits[0].double().numpy()


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis; -inf entries get probability 0."""
    weights = np.exp(z - z.max(-1, keepdims=True))
    return weights / weights.sum(-1, keepdims=True)


def masked_ids(served, allow_special: bool = False) -> list[int]:
    """The special tokens generation masks (none with allow_special)."""
    return [] if allow_special else sorted(served.loaded.tokenizer.special_ids.values())


def own_distribution(logits: np.ndarray, masked: list[int]) -> np.ndarray:
    """The model's own distribution: temperature 1, special tokens masked and the rest renormalised."""
    z = logits.copy()
    z[..., masked] = -np.inf
    return softmax(z)


def sampling_distribution(logits: np.ndarray, masked: list[int], temperature: float = 1.0, top_k: int = 0,
                          top_p: float = 1.0, **_) -> np.ndarray:
    """The distribution a step draws from, as the settings document it, one row of logits at a time:
    special tokens masked; greedy at temperature 0; else logits / T, the k most likely kept (ties kept),
    softmax, then the fewest tokens (most likely first) whose probability reaches top_p, renormalised."""
    if logits.ndim == 2:
        return np.stack([sampling_distribution(row, masked, temperature, top_k, top_p) for row in logits])
    z = logits.copy()
    z[masked] = -np.inf
    if temperature == 0:
        one_hot = np.zeros_like(z)
        one_hot[np.argmax(z)] = 1.0
        return one_hot
    z = z / temperature
    if 0 < top_k < len(z):
        kth = np.sort(z)[-top_k]
        z[z < kth] = -np.inf
    p = softmax(z)
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        before = np.cumsum(p[order]) - p[order]  # the mass of the more likely tokens
        kept = np.zeros_like(p)
        kept[order[before < top_p]] = p[order[before < top_p]]
        p = kept / kept.sum()
    return p


def kl_nats(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats, 0 · log 0 counted as 0; infinite where q misses some of p's support."""
    support = p > 0
    if np.any(q[support] == 0):
        return float("inf")
    return float(np.sum(p[support] * np.log(p[support] / q[support])))


def uniform_numbers(seed: int, steps: int) -> np.ndarray:
    """(steps, 3): the run's uniform numbers, step i's (u_float, u_keep, u_residual), as RandomNumbers
    documents them: torch.rand in float64 from a generator seeded with the seed, 3 numbers a step in order,
    made 256 steps at a time."""
    assert steps <= 256
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(3 * 256, generator=generator, dtype=torch.float64).numpy().reshape(256, 3)[:steps]


def run(models, name: str, seed: int = 1, length: int = LENGTH, **settings):
    """The app's side-by-side run, finished: (request, result, its summary)."""
    request = service.validate(models, name, PROMPTS[name], length=length, seed=seed, **settings)
    *_, result = service.side_by_side(request)
    assert result.done and len(result.float.ids) == len(result.int8.ids) == length
    return request, result, result.summary()


# --------------------------------------------------------------------------- how sure each token was


@pytest.mark.parametrize("settings", SETTINGS, ids=settings_id)
@pytest.mark.parametrize("name", list(PROMPTS))
def test_each_token_probability_is_its_own_models_probability_of_that_token(models, name, settings):
    """token_probabilities[i] of a side is that side's model's probability of the token it wrote at step
    i, given the prompt and that side's own previous tokens: temperature 1, special tokens masked. The
    float32 side against the torch model, the int8 side against the int8 engine's own logits."""
    request, result, summary = run(models, name, **settings)
    served = request.served
    masked = masked_ids(served, settings.get("allow_special", False))
    for label, side, reference in (("float32", result.float, served.loaded.model), ("int8", result.int8, served.int8)):
        steps = len(side.ids)
        # Row j of the logits follows ids[: j + 1]: the rows after the prompt's last token and each new
        # token but the last are the distributions the written tokens came from.
        logits = teacher_forced(reference, request.prompt_ids + side.ids[:-1])[-steps:]
        expected = own_distribution(logits, masked)[np.arange(steps), side.ids]
        reported = np.array(summary[label]["token_probabilities"])
        assert reported.shape == (steps,)
        np.testing.assert_allclose(reported, expected, rtol=0, atol=TOLERANCE, err_msg=f"{name} {label}")
        assert np.all(reported > 0)  # a side never writes a token its own distribution rules out


def test_the_token_probabilities_are_read_before_the_next_step(models):
    """The bug this file was written for: the float side read each token's probability from the step
    after it (the distribution of the next token), so with the same text on both sides the float side
    reported 0.0159, 0.0, 8e-05 where int8 reported 0.99, 0.05, 0.39. Both sides now agree to within what
    int8 changes (the char model: its mean KL to float is ~1e-4 nats a token)."""
    _, result, summary = run(models, "char", seed=1, length=30, temperature=0.8)
    parted = result.parted_at()
    shared = len(result.float.ids) if parted is None else parted  # where both wrote the same text
    assert shared >= 5
    floats = np.array(summary["float32"]["token_probabilities"][:shared])
    int8s = np.array(summary["int8"]["token_probabilities"][:shared])
    assert np.max(np.abs(floats - int8s)) < 0.05


def test_a_model_alone_reports_the_same_probabilities(models):
    """generate_ids(with_probability=True), one torch model on its own (no engine): each token's probability
    is the same figure, the model's at temperature 1 with special tokens masked."""
    from lstmgen.engine.generate import banned_ids, generate_ids
    from lstmgen.core.sampling import SamplingConfig

    served = models["word"]  # two special tokens: <unk>, <eos>
    model, tokenizer = served.loaded.model, served.loaded.tokenizer
    prompt = tokenizer.encode(PROMPTS["word"]).ids
    config = SamplingConfig(temperature=1.2, top_k=50, length=LENGTH, seed=3)
    ids, reported = zip(*generate_ids(model, prompt, config, banned_ids(tokenizer), with_probability=True))
    logits = teacher_forced(model, prompt + list(ids[:-1]))[-len(ids):]
    expected = own_distribution(logits, masked_ids(served))[np.arange(len(ids)), list(ids)]
    np.testing.assert_allclose(reported, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("side", ["float32", "int8"])
def test_renormalising_holds_where_the_masked_tokens_hold_nearly_all_the_mass(models, side):
    """The engines renormalise their model's own probabilities over the tokens not masked; where the masked
    ones hold over 99% of the mass, the rest is summed rather than taken as 1 minus theirs (float32)."""
    served = models["char"]
    copy = served.float32 if side == "float32" else served.int8  # the app's engine for that side
    prompt = served.loaded.tokenizer.encode("First Citize").ids  # "n" next, all but certainly
    engine = copy.new_engine()
    engine.forward(prompt)
    logits = teacher_forced(copy, prompt)[-1]
    order = np.argsort(-softmax(logits))
    masked = [int(i) for i in order[: np.searchsorted(np.cumsum(softmax(logits)[order]), 0.995) + 1]]
    expected = own_distribution(logits, masked)
    assert softmax(logits)[masked].sum() > 0.99 and len(masked) < len(order)
    reported = [engine.model_probability(token, masked) for token in range(len(logits))]
    np.testing.assert_allclose(reported, expected, rtol=0, atol=TOLERANCE)
    assert abs(sum(reported) - 1.0) < 1e-6


# --------------------------------------------------------------------------- next-token candidates


@pytest.mark.parametrize("settings", NEXT_TOKEN_SETTINGS, ids=settings_id)
@pytest.mark.parametrize("name", list(PROMPTS))
def test_next_token_candidates_kl_and_top1_against_full_distributions(models, name, settings):
    """Each candidate's probability is its model's sampling distribution at the prompt (plain softmax of
    logits / T over the full vocabulary, special tokens masked, top-k / top-p as set), the k most likely
    in order. kl_nats is KL(float || int8) of the two whole distributions at T, special tokens masked but
    before top-k / top-p (after them the two can differ in support: an infinite divergence); same_top1
    compares their argmax."""
    request = service.validate(models, name, PROMPTS[name], **settings)
    served = request.served
    reported = service.candidates(request, K)
    masked = masked_ids(served, settings.get("allow_special", False))
    whole = {}
    for label, reference in (("float32", served.loaded.model), ("int8", served.int8)):
        logits = teacher_forced(reference, request.prompt_ids)[-1]
        whole[label] = sampling_distribution(logits, masked, settings["temperature"])
        p = sampling_distribution(logits, masked, **settings)
        order = np.argsort(-p, kind="stable")[:K]
        order = order[p[order] > 0]  # tokens ruled out are not candidates
        candidates = reported[label]
        assert len(candidates) == len(order), label
        np.testing.assert_allclose([c["probability"] for c in candidates], p[order], rtol=0, atol=TOLERANCE,
                                   err_msg=f"{name} {label}")
        # Each candidate names a token of that probability (near-ties may swap places).
        pieces = served.loaded.tokenizer.piece
        for candidate in candidates:
            close = np.flatnonzero(np.abs(p - candidate["probability"]) <= TOLERANCE)
            shown = {pieces(int(i)).translate({32: "␣", 10: "↵", 9: "⇥"}) or "∅" for i in close}
            assert candidate["token"] in shown, (label, candidate)
    assert abs(reported["kl_nats"] - kl_nats(whole["float32"], whole["int8"])) < TOLERANCE
    assert reported["same_top1"] == (int(np.argmax(whole["float32"])) == int(np.argmax(whole["int8"])))


# --------------------------------------------------------------------------- fidelity


@pytest.mark.parametrize("settings", SETTINGS, ids=settings_id)
@pytest.mark.parametrize("name", list(PROMPTS))
def test_fidelity_recomputed_along_the_float_text(models, name, settings):
    """The fidelity figures, from both models teacher-forced along the float side's text (prompt + float
    ids), with the run's own uniform numbers (regenerated from its seed):
    - same_choice: share of steps where the coupled int8 draw keeps the float token x, that is where
      u_keep · p(x) < q(x), p and q the float and int8 sampling distributions at that step;
    - top1_agreement: share of steps where the two models' raw logits have the same argmax;
    - mean_kl_nats: mean KL(float || int8) of the models' own distributions (temperature 1, unmasked);
    - steps: the number of generated tokens.
    Up to where the texts part, both sides had the same context, so every step there kept x, and the
    step where they part did not."""
    request, result, summary = run(models, name, **settings)
    served = request.served
    ids, steps = result.float.ids, len(result.float.ids)
    context = request.prompt_ids + ids[:-1]
    float_logits = teacher_forced(served.loaded.model, context)[-steps:]
    int8_logits = teacher_forced(served.int8, context)[-steps:]
    masked = masked_ids(served, settings.get("allow_special", False))
    p = sampling_distribution(float_logits, masked, **settings)
    q = sampling_distribution(int8_logits, masked, **settings)
    rows = np.arange(steps)
    u_keep = uniform_numbers(request.sampling.seed, steps)[:, 1]
    kept = u_keep * p[rows, ids] < q[rows, ids]
    own_p, own_q = softmax(float_logits), softmax(int8_logits)
    expected = {
        "same_choice": kept.mean(),
        "top1_agreement": np.mean(float_logits.argmax(-1) == int8_logits.argmax(-1)),
        "mean_kl_nats": np.mean([kl_nats(a, b) for a, b in zip(own_p, own_q)]),
    }
    fidelity = summary["fidelity"]
    assert fidelity["steps"] == steps
    for key, value in expected.items():
        assert abs(fidelity[key] - value) < TOLERANCE, (key, fidelity[key], value)
    parted = summary["parted_at"]
    assert kept[: steps if parted is None else parted].all()
    if parted is not None:
        assert not kept[parted]


# --------------------------------------------------------------------------- sizes


def test_sizes_are_the_bytes_of_each_sides_weights(models):
    """size_mb (in /models and in each side of /generate), to 0.01 MB:
    - float32: 4 bytes a parameter, the parameters counted from the model's config.json (embedding,
      4 gates of input and hidden weights and two biases a layer, the output layer; a tied output layer
      shares the embedding's matrix);
    - int8: the bytes of the int8 graph's weights, its initializers read back as arrays (each once), the
      graph built as the app's int8 engine builds it."""
    from onnx import numpy_helper

    from lstmgen.engine.graph import step_model

    for name, served in models.items():
        config = json.loads((Path(served.loaded.folder) / "config.json").read_text())
        vocab, embed, hidden = config["vocab_size"], config["embed_size"], config["hidden_size"]
        parameters = vocab * embed + vocab  # the embedding and the output layer's bias
        for layer in range(config["num_layers"]):
            inputs = embed if layer == 0 else hidden
            parameters += 4 * hidden * (inputs + hidden) + 2 * 4 * hidden
        if not config["tie_weights"]:
            parameters += vocab * hidden
        float_bytes = 4 * parameters

        proto = step_model(served.loaded.model, "int8", sampler=True, layer_states=True, probabilities=True)
        arrays = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        int8_bytes = sum(a.nbytes for a in arrays.values())
        assert sum(a.nbytes for a in arrays.values() if a.dtype.itemsize == 1) > 0.8 * int8_bytes  # mostly 8-bit

        info = served.info()
        assert info["parameters"] == parameters, name
        assert info["size_mb"] == {"float32": round(float_bytes / 1e6, 2), "int8": round(int8_bytes / 1e6, 2)}, name
        _, _, summary = run(models, name, length=2)
        assert summary["float32"]["size_mb"] == round(float_bytes / 1e6, 2), name
        assert summary["int8"]["size_mb"] == round(int8_bytes / 1e6, 2), name
        assert served.float_bytes == float_bytes and served.int8_bytes == int8_bytes, name


# --------------------------------------------------------------------------- where the texts part


def test_parted_at_is_the_first_token_where_the_texts_differ(models):
    """parted_at: the index (0-based, in generated tokens) of the first token where the float32 and int8
    texts differ; None where they are the same throughout. For the char model a token is a character, so
    it is where the two texts first differ. While streaming it is None until the texts part, then fixed."""
    found = {"parted": False, "same": False}
    for seed in range(40):
        request = service.validate(models, "char", PROMPTS["char"], length=60, seed=seed, temperature=1.5)
        updates = [result.summary() for result in service.side_by_side(request, stream_every_s=0.0)]
        final = updates[-1]
        floats, int8s = final["float32"]["text"], final["int8"]["text"]
        first = next((i for i, (a, b) in enumerate(zip(floats, int8s)) if a != b), None)
        assert final["parted_at"] == first
        for update in updates:  # streamed: the texts so far
            seen = min(update["float32"]["tokens"], update["int8"]["tokens"])
            assert update["parted_at"] == (first if first is not None and first < seen else None)
        found["parted" if first is not None else "same"] = True
        if all(found.values()):
            break
    assert all(found.values()), found


def test_parted_at_follows_tokens_not_characters(models):
    """For the word model, parted_at counts words: both sides wrote the same words up to it."""
    for seed in range(40):
        _, result, summary = run(models, "word", seed=seed, length=60, temperature=1.5)
        parted = summary["parted_at"]
        if parted is not None:
            assert result.float.pieces[:parted] == result.int8.pieces[:parted]
            assert result.float.ids[parted] != result.int8.ids[parted]
            return
    pytest.fail("no seed made the word model's texts part")


# --------------------------------------------------------------------------- speed


@pytest.mark.parametrize("name", list(PROMPTS))
def test_each_sides_speed_is_its_tokens_over_its_own_time_within_the_runs_wall_time(models, name):
    """The speed under each text: tokens ÷ that model's own step time, and the two sides' times together fit
    inside the wall time of the whole run (they take turns)."""
    import time

    began = time.perf_counter()
    _, result, summary = run(models, name)
    wall_ms = (time.perf_counter() - began) * 1000
    for side in ("float32", "int8"):
        shown = summary[side]
        assert shown["tokens_per_s"] == pytest.approx(shown["tokens"] / (shown["total_ms"] / 1000), rel=1e-3)
        assert 0 < shown["first_token_ms"] <= shown["total_ms"]
    assert summary["float32"]["total_ms"] + summary["int8"]["total_ms"] <= wall_ms


# --------------------------------------------------------------------------- inside the LSTM: /cells and /score
# /cells and /score run each copy over the whole text at once: the float32 side a layer at a time through torch
# (c recovered from the gates), the int8 side as one run of its step graph. The references step token by token.


def inside_text() -> str:
    """2,000 characters of the plays' held-out part (the text ships with the repository), for all three models."""
    from lstmgen.core.data import cut, read_corpus
    from lstmgen.core.records import find

    record = find("char")
    return cut(read_corpus(record.corpus), record.corpus.cuts)[1][:2000]


def lstm_stepped(model, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The float model's nn.LSTM fed one token at a time, its (h, c) carried: every layer's h and c after each
    token, (layers, T, hidden) each."""
    state, hs, cs = None, [], []
    with torch.inference_mode():
        for token in ids:
            _, state = model.lstm(model.embedding(torch.tensor([[token]])), state)
            hs.append(state[0][:, 0].numpy().copy())
            cs.append(state[1][:, 0].numpy().copy())
    return np.stack(hs, 1), np.stack(cs, 1)


def engine_stepped(int8, ids: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The int8 engine /generate steps with, fed one token at a time from a fresh state: each step's logits
    (T, vocab) float64, and every layer's h and c after each token (layers, T, hidden)."""
    engine, state, logits, hs, cs = int8.new_engine(), None, [], [], []
    for token in ids:
        out, state = engine.step(token, state)
        logits.append(out.double().numpy().copy())
        hs.append(state[0][:, 0].numpy().copy())
        cs.append(state[1][:, 0].numpy().copy())
    return np.stack(logits), np.stack(hs, 1), np.stack(cs, 1)


def assert_states_close(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal to 1e-5 relative to 1 + |value|: some of the char model's cells hold c near 200, where float32 keeps
    about 5 decimals."""
    assert got.shape == expected.shape
    gap = np.abs(got - expected) / (1 + np.abs(expected))
    assert gap.max() <= 1e-5, f"largest gap {gap.max():.2e}"


@pytest.mark.parametrize("name", list(PROMPTS))
def test_a_whole_text_at_once_gives_the_states_of_stepping_token_by_token(models, name):
    """inside.cell_states over a whole text (every layer, every cell), on each copy: the float32 side equals
    nn.LSTM stepped token by token, the int8 side its engine stepped token by token; a few cells of the
    bottom layers, as /cells asks for them, are the same numbers."""
    from lstmgen import inside

    served = models[name]
    ids = served.loaded.tokenizer.encode(inside_text()).ids
    float_h, float_c = lstm_stepped(served.loaded.model, ids)
    _, int8_h, int8_c = engine_stepped(served.int8, ids)
    cells = [served.loaded.model.hidden_size - 1, 0, 7]
    for engine, h, c in ((served.loaded.model, float_h, float_c), (served.int8, int8_h, int8_c)):
        states = inside.cell_states(engine, ids)
        assert_states_close(states["h"], h)
        assert_states_close(states["c"], c)
        some = inside.cell_states(engine, ids, layers=1, cells=cells)
        assert_states_close(some["h"], h[:1, :, cells])
        assert_states_close(some["c"], c[:1, :, cells])


@pytest.mark.parametrize("name", list(PROMPTS))
def test_cells_shows_each_copys_own_states(models, name):
    """/cells' c and h of the top layer's last cell, recomputed by stepping each copy token by token."""
    served = models[name]
    model, text = served.loaded.model, inside_text()
    ids = served.loaded.tokenizer.encode(text).ids
    layer, cell = model.num_layers, model.hidden_size
    shown = service.cell_trace(served, text, layer, cell)
    float_h, float_c = lstm_stepped(model, ids)
    _, int8_h, int8_c = engine_stepped(served.int8, ids)
    for side, h, c in (("float32", float_h, float_c), ("int8", int8_h, int8_c)):
        assert_states_close(np.array(shown[side]["h"]), h[layer - 1, :, cell - 1])
        assert_states_close(np.array(shown[side]["c"]), c[layer - 1, :, cell - 1])


@pytest.mark.parametrize("name", list(PROMPTS))
def test_score_shows_each_copys_own_probabilities_of_the_text(models, name):
    """/score's figures from each copy's logits along the text: the float32 model's one batched forward, the int8
    engine stepped token by token. Token i's probability is softmax(logits after token i - 1)[token i]; the
    totals follow from the documented definitions (loss per GPT-2 token for the subword model)."""
    served = models[name]
    tokenizer, text = served.loaded.tokenizer, inside_text()
    ids = tokenizer.encode(text).ids
    shown = service.text_scores(served, text)
    engine_logits, _, _ = engine_stepped(served.int8, ids)
    for side, logits in (("float32", teacher_forced(served.loaded.model, ids)), ("int8", engine_logits)):
        log_p = np.log(softmax(logits[:-1]))
        nats = -log_p[np.arange(len(ids) - 1), ids[1:]]
        figures = shown[side]
        assert figures["probabilities"][0] is None  # the first token has nothing before it
        assert figures["probabilities"][1:] == pytest.approx(np.exp(-nats).tolist(), abs=1e-5)
        assert figures["tokens"] == len(ids) - 1
        assert figures["total_nats"] == pytest.approx(nats.sum(), abs=TOLERANCE)
        per = tokenizer.gpt2_token_count(text) if name == "subword" else len(ids) - 1
        assert figures["loss"] == pytest.approx(nats.sum() / per, abs=TOLERANCE)
        assert figures["perplexity"] == pytest.approx(np.exp(nats.sum() / per), rel=TOLERANCE)
        assert figures["bits_per_char"] == pytest.approx(nats.sum() / np.log(2) / len(text), abs=TOLERANCE)


def test_score_lists_the_characters_the_vocabulary_drops(models):
    """Like /generate's warning: each character outside the char model's vocabulary once, and how many there were;
    the rest of the text is scored."""
    served = models["char"]
    text = "The harvest grew 23% this year, and 2% more."
    dropped = [c for c in text if c not in served.loaded.tokenizer.chars]
    assert set(dropped) == {"2", "%"}  # the plays have a "3" but no "2" and no "%"
    shown = service.text_scores(served, text)
    assert shown["unknown"] == list(dict.fromkeys(dropped)) and shown["unknown_total"] == len(dropped)
    assert shown["float32"]["tokens"] == shown["int8"]["tokens"] == len(text) - len(dropped) - 1
