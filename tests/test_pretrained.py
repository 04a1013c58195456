"""The models shipped in lstmgen/pretrained/ load through the app's resolver, match their recorded
figures, keep the int8 cost under 1%, and generate deterministically when greedy."""

import functools

import pytest

from lstmgen.evaluate import evaluate
from lstmgen.generate import generate
from lstmgen.files import PRETRAINED_DIR
from lstmgen.hub import resolve
from lstmgen.records import PRESETS, prepare
from lstmgen.publish import VAL_SLICE_TOKENS
from lstmgen.quantize import quantize_dynamic

from conftest import corpus_or_skip

@functools.lru_cache(maxsize=None)
def shipped(name):
    return resolve(name, use_hub=False)


@functools.lru_cache(maxsize=None)
def prepared(name):
    return prepare(PRESETS[name], corpus_or_skip(PRESETS[name]))


def validation_slice(name):
    return prepared(name).val_ids[:VAL_SLICE_TOKENS]


@pytest.mark.parametrize("name", list(PRESETS))
def test_shipped_model_loads_strictly_through_the_resolver(name):
    loaded = shipped(name)
    assert loaded.source.startswith("bundled")
    assert loaded.metrics["preset"] == name
    for required in ("config.json", "model.safetensors", "tokenizer.json", "metrics.json", "loss_curve.png", "README.md"):
        assert (loaded.folder / required).is_file(), required
    assert (loaded.folder / "model.safetensors").stat().st_size <= 25e6


@pytest.mark.parametrize("name", list(PRESETS))
def test_shipped_tokenizer_is_the_one_the_preset_builds(name):
    # Otherwise the README's evaluate command would measure the model on ids it was not trained on.
    assert shipped(name).tokenizer.state() == prepared(name).tokenizer.state()


def test_all_shipped_weights_together_stay_light():
    total = sum((PRETRAINED_DIR / name / "model.safetensors").stat().st_size for name in PRESETS)
    assert total <= 60e6


@pytest.mark.parametrize("name", list(PRESETS))
def test_validation_slice_loss_matches_metrics_and_int8_costs_under_one_percent(name):
    loaded = shipped(name)
    ids = validation_slice(name)
    recorded = loaded.metrics["final"]
    float_loss = evaluate(loaded.model, ids, batch_size=1, seq_len=256).loss
    int8_loss = evaluate(quantize_dynamic(loaded.model), ids, batch_size=1, seq_len=256).loss
    assert float_loss == pytest.approx(recorded["val_slice_float"]["loss"], rel=1e-3)
    assert int8_loss == pytest.approx(recorded["val_slice_int8"]["loss"], rel=1e-3)
    assert abs(int8_loss - float_loss) / float_loss < 0.01


@pytest.mark.parametrize("name", list(PRESETS))
def test_greedy_generation_is_deterministic(name):
    loaded = shipped(name)
    prompt = PRESETS[name].examples[0]
    first = generate(loaded.model, loaded.tokenizer, prompt, 40, temperature=0)
    assert first == generate(loaded.model, loaded.tokenizer, prompt, 40, temperature=0, seed=123)
    assert len(first) > len(prompt)
