"""The sampler: the distribution each step samples from, exact draws, and the float/int8 coupling that
makes both sides choose alike whenever their distributions allow, while each stays exact."""

import math

import pytest
import torch

from lstmgen.core.sampling import RandomNumbers, SamplingConfig, distribution, draw
from lstmgen.core.settings import SettingError, checked


def coupled_draw(p: torch.Tensor, q: torch.Tensor, x: int, u_keep: float, u_residual: float) -> int:
    """The reference maximal coupling (generate.coupled_draw is its stream form): the int8 side's token,
    given that the float side drew x from p: keep x with probability min(1, q(x)/p(x)), else draw from
    max(q - p, 0) normalised. Marginally exactly q."""
    if u_keep * float(p[x]) < float(q[x]):
        return x
    residual = (q.double() - p.double()).clamp_min(0.0)
    if float(residual.sum()) <= 0.0:  # p == q up to rounding: nothing left to move
        return x
    return draw(residual, u_residual)


def chi_squared_ok(counts: torch.Tensor, probs: torch.Tensor, n: int, min_expected: float = 5.0) -> bool:
    """Pearson's test, with the rare ids pooled into one cell so every cell expects at least 5 draws.
    The bound is far beyond the 99.9th percentile: it fails only for a biased sampler."""
    expected = probs.double() * n
    big = expected >= min_expected
    observed = torch.cat([counts[big].double(), counts[~big].double().sum().view(1)])
    wanted = torch.cat([expected[big], expected[~big].sum().view(1)])
    keep = wanted > 0
    chi2 = float(((observed[keep] - wanted[keep]) ** 2 / wanted[keep]).sum())
    dof = int(keep.sum()) - 1
    return chi2 < dof + 5 * math.sqrt(2 * dof) + 10


def two_close_distributions(vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A 'float' distribution and an 'int8' one a little off it, as quantization leaves them."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(vocab, generator=generator) * 3
    noisy = logits + torch.randn(vocab, generator=generator) * 0.1
    return torch.softmax(logits, 0), torch.softmax(noisy, 0)


@pytest.mark.parametrize("top_k, top_p", [(0, 1.0), (3, 1.0), (0, 0.7)])
def test_the_distribution_filters_and_renormalises(top_k, top_p):
    logits = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -1.0])
    probs = torch.softmax(logits / 0.9, -1)
    if top_k:
        probs[top_k:] = 0
    if top_p < 1:
        probs[(probs.cumsum(0) - probs) >= top_p] = 0
    probs = probs / probs.sum()
    got = distribution(logits, SamplingConfig(temperature=0.9, top_k=top_k, top_p=top_p))
    torch.testing.assert_close(got, probs)


def test_special_tokens_are_masked_unless_allowed():
    logits = torch.tensor([5.0, 1.0, 0.0])
    masked = distribution(logits, SamplingConfig(temperature=1.0), banned=[0])
    assert masked[0] == 0 and masked.sum() == pytest.approx(1.0)
    torch.testing.assert_close(masked[1:], torch.softmax(logits[1:], 0))
    allowed = distribution(logits, SamplingConfig(temperature=1.0, allow_special=True), banned=[0])
    assert allowed[0] > 0.9
    assert distribution(logits, SamplingConfig(temperature=0), banned=[0]).tolist() == [0.0, 1.0, 0.0]


def test_a_tiny_temperature_tends_to_greedy_instead_of_overflowing():
    logits = torch.tensor([0.5, 3.0, 1.0, -2.0])
    for temperature in (1e-300, 1e-40, 1e-6):
        probs = distribution(logits, SamplingConfig(temperature=temperature))
        assert torch.isfinite(probs).all() and int(probs.argmax()) == 1 and float(probs[1]) > 0.999


@pytest.mark.parametrize("vocab", [65, 13_000])
def test_the_draw_is_exact(vocab):
    probs, _ = two_close_distributions(vocab, seed=1)
    randomness, n = RandomNumbers(3), 40_000
    counts = torch.bincount(torch.tensor([draw(probs, randomness.next()[0]) for _ in range(n)]), minlength=vocab)
    assert chi_squared_ok(counts, probs, n)


@pytest.mark.parametrize("vocab", [65, 13_000])
def test_the_coupled_int8_draw_is_exact_and_agrees_as_often_as_possible(vocab):
    """Both marginals exact (chi-squared), and the share of equal choices is 1 - TV(p, q): the maximum."""
    p, q = two_close_distributions(vocab, seed=2)
    randomness, n = RandomNumbers(4), 40_000
    xs, ys = [], []
    for _ in range(n):
        u_float, u_keep, u_residual = randomness.next()
        x = draw(p, u_float)
        xs.append(x)
        ys.append(coupled_draw(p, q, x, u_keep, u_residual))
    xs, ys = torch.tensor(xs), torch.tensor(ys)
    assert chi_squared_ok(torch.bincount(xs, minlength=vocab), p, n)
    assert chi_squared_ok(torch.bincount(ys, minlength=vocab), q, n)
    same = float((xs == ys).double().mean())
    best = 1 - 0.5 * float((p - q).abs().sum())
    assert best < 0.999  # the two distributions really differ
    assert same == pytest.approx(best, abs=4 * math.sqrt(best * (1 - best) / n) + 1e-3)


def test_identical_distributions_always_make_the_same_choice():
    p, _ = two_close_distributions(500, seed=5)
    randomness = RandomNumbers(0)
    for _ in range(2000):
        u = randomness.next()
        x = draw(p, u[0])
        assert coupled_draw(p, p.clone(), x, u[1], u[2]) == x


def test_a_seed_reproduces_the_random_numbers():
    assert [RandomNumbers(9).next() for _ in range(3)] == [RandomNumbers(9).next() for _ in range(3)]
    assert RandomNumbers(9).next() != RandomNumbers(10).next()


@pytest.mark.parametrize("values, message", [
    (dict(temperature=-0.1), "temperature must be between 0.0 and 2.0"),
    (dict(temperature=float("nan")), "temperature must be a finite number"),
    (dict(length=0), "length must be between 1 and 1000"),
    (dict(length=2.5), "length must be a whole number"),
    (dict(length=10**400), "length must be a finite number"),  # too large for a float
    (dict(top_k="many"), "top_k must be a number"),
    (dict(top_p=0), "top_p must be between 0.01 and 1.0"),
    (dict(seed=-1), "seed must be between 0"),
    (dict(allow_special="yes"), "allow_special must be true or false"),
    (dict(colour=True), "unknown setting 'colour'"),
])
def test_sampling_settings_are_checked_in_one_place(values, message):
    with pytest.raises(SettingError, match=message.replace("(", r"\(")):
        checked(SamplingConfig, **values)
    assert checked(SamplingConfig, temperature="0.5", length=7.0).length == 7  # numbers as text or floats are fine


# One test holds every implementation of the sampling distribution equal to its definition
# (sampling.distribution): the torch model's stream, the engine's step graph, the engine's numpy code
# (its normalisation, greedy pick and draws with a u the step was not given), and the engine's declared
# fallback (settings the graph does not serve sample through sampling.distribution on its logits).
# Each setting that shapes the distribution has values here; a new one fails the first assertion
# until it is listed, so it is never left out of the comparison.
SETTING_VALUES = {
    "temperature": [0.0, 5e-4, 0.6, 1.3],
    "top_k": [0, 5],
    "top_p": [1.0, 0.8],
    "min_p": [0.0, 0.2],
    "allow_special": [False, True],
}
NOT_THE_DISTRIBUTIONS = {"length", "seed"}  # the loop's settings


def setting_combinations():
    import dataclasses
    import itertools

    names = [f.name for f in dataclasses.fields(SamplingConfig)]
    assert set(names) == set(SETTING_VALUES) | NOT_THE_DISTRIBUTIONS, "list the new setting's values above"
    for values in itertools.product(*SETTING_VALUES.values()):
        yield SamplingConfig(**dict(zip(SETTING_VALUES, values)))


@pytest.mark.parametrize("vocab", [65, 700])  # one running sum in the graph; two levels
def test_every_implementation_samples_from_the_one_distribution(vocab):
    import numpy as np

    from lstmgen.core.model import LSTMLanguageModel
    from lstmgen.engine.ort import OrtModel, OrtStream
    from lstmgen.core.sampling import fallbacks
    from lstmgen.engine.streams import LogitsStream, token_stream

    torch.manual_seed(vocab)
    model = LSTMLanguageModel(vocab, embed_size=16, hidden_size=16, num_layers=1).eval()
    with torch.no_grad():  # random logits, spread about 3 per unit
        model.decoder.weight.normal_(0, 1.0)
        model.decoder.bias.normal_(0, 1.0)
    engine = OrtModel(model, "float", threads=1)
    prompt, banned = [3, 1, 4], torch.tensor([0, 5, vocab - 1])
    with torch.inference_mode():
        logits = model(torch.tensor([prompt]))[0][0, -1].double()
    us = np.random.default_rng(vocab).random(200).tolist() + [0.0, 1 - 2**-53]
    served = 0
    for config in setting_combinations():
        expected = distribution(logits, config, banned)
        expected_tokens = [draw(expected, u) for u in us]
        # The torch model's stream.
        ours = token_stream(model, config, banned)
        ours.prompt(prompt)
        torch.testing.assert_close(torch.from_numpy(ours.probabilities()).double(), expected.float().double(),
                                   atol=1e-6, rtol=0)
        assert [ours.draw(u) for u in us] == expected_tokens
        # The engine's stream: in the graph where every setting's value is served, else the declared fallback.
        stream = engine.stream(config, banned)
        assert isinstance(stream, OrtStream if not fallbacks(config) else LogitsStream), config
        served += isinstance(stream, OrtStream)
        stream.prompt(prompt)
        got = stream.probabilities().astype(np.float64)
        assert abs(got.sum() - 1) < 1e-5
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-5, rtol=0)
        assert all(stream.probability(t) == pytest.approx(float(got[t]), abs=1e-7) for t in range(vocab))
        numpy_tokens = [stream.draw(u) for u in us]  # the engine's numpy draw: no step was given these u
        graph_tokens = []
        for u in us:  # each step given its u: the graph's own draw
            stream.prompt(prompt, u)
            graph_tokens.append(stream.draw(u))
        for tokens in (numpy_tokens, graph_tokens):
            assert np.mean(np.array(tokens) == expected_tokens) >= 0.99, config
            assert all(expected[t] > 0 for t in tokens), config  # never a token the distribution excludes
        if isinstance(stream, OrtStream):  # the engine's numpy normalisation (float64) of the graph's softmax
            np.testing.assert_allclose(stream.engine.probs(), expected.numpy(), atol=1e-5, rtol=0)
    assert 0 < served < len(list(setting_combinations()))  # both paths were compared


def test_the_filters_declare_their_off_value_and_the_graph_serves_only_what_is_declared():
    """Each setting says what the step graph serves of it (lstmgen.core.sampling.fallbacks); with every filter off
    (without_filters) a configuration is served, whatever its filters were."""
    from lstmgen.core.sampling import fallbacks, without_filters

    assert fallbacks(SamplingConfig()) == []
    config = SamplingConfig(temperature=1e-4, top_k=5, top_p=0.5, min_p=0.1)
    assert fallbacks(config) == ["temperature", "top_k", "top_p", "min_p"]
    assert fallbacks(without_filters(config)) == ["temperature"] and without_filters(config).temperature == 1e-4
    assert (without_filters(config).top_k, without_filters(config).top_p, without_filters(config).min_p) == (0, 1.0, 0.0)
    # Token 1 is e^-3 = 0.050 times as likely as the top one, token 2 e^-4 = 0.018 times.
    logits = torch.tensor([3.0, 0.0, -1.0])
    kept = distribution(logits, SamplingConfig(temperature=1.0, min_p=0.04))
    torch.testing.assert_close(kept, torch.tensor([math.e**3, 1.0, 0.0]) / (math.e**3 + 1))
    assert distribution(logits, SamplingConfig(temperature=1.0, min_p=0.06)).tolist() == [1.0, 0.0, 0.0]
