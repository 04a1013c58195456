"""The sampler: the distribution each step samples from, exact draws, and the float/int8 coupling that
makes both sides choose alike whenever their distributions allow, while each stays exact."""

import math

import pytest
import torch

from lstmgen.sampling import RandomStream, SamplingConfig, coupled_draw, distribution, draw
from lstmgen.settings import SettingError, checked


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
    randomness, n = RandomStream(3), 40_000
    counts = torch.bincount(torch.tensor([draw(probs, randomness.next()[0]) for _ in range(n)]), minlength=vocab)
    assert chi_squared_ok(counts, probs, n)


@pytest.mark.parametrize("vocab", [65, 13_000])
def test_the_coupled_int8_draw_is_exact_and_agrees_as_often_as_possible(vocab):
    """Both marginals exact (chi-squared), and the share of equal choices is 1 - TV(p, q): the maximum."""
    p, q = two_close_distributions(vocab, seed=2)
    randomness, n = RandomStream(4), 40_000
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
    randomness = RandomStream(0)
    for _ in range(2000):
        u = randomness.next()
        x = draw(p, u[0])
        assert coupled_draw(p, p.clone(), x, u[1], u[2]) == x


def test_a_seed_reproduces_the_random_numbers():
    assert [RandomStream(9).next() for _ in range(3)] == [RandomStream(9).next() for _ in range(3)]
    assert RandomStream(9).next() != RandomStream(10).next()


@pytest.mark.parametrize("values, message", [
    (dict(temperature=-0.1), "temperature must be between 0.0 and 2.0"),
    (dict(temperature=float("nan")), "temperature must be a finite number"),
    (dict(length=0), "length must be between 1 and 1000"),
    (dict(length=2.5), "length must be a whole number"),
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
