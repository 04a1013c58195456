"""The model saves to config.json + model.safetensors and loads back strictly, giving identical logits."""

import json

import pytest
import torch

from lstmgen.core.model import LSTMLanguageModel


def tiny_model(**kwargs):
    settings = dict(vocab_size=30, embed_size=16, hidden_size=16, num_layers=2, dropout=0.2,
                    embed_dropout=0.1, input_dropout=0.1, weight_drop=0.2, tie_weights=True)
    settings.update(kwargs)
    return LSTMLanguageModel(**settings)


def test_forward_returns_logits_and_state_that_continues_the_sequence():
    model = tiny_model().eval()
    ids = torch.randint(30, (3, 10))
    logits, state = model(ids)
    assert logits.shape == (3, 10, 30)
    assert state[0].shape == state[1].shape == (2, 3, 16)
    first, mid_state = model(ids[:, :6])
    rest, _ = model(ids[:, 6:], mid_state)
    torch.testing.assert_close(torch.cat([first, rest], 1), logits)


def test_save_and_load_round_trip_gives_identical_logits(tmp_path):
    model = tiny_model().eval()
    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    assert json.loads((tmp_path / "config.json").read_text())["tie_weights"] is True
    loaded = LSTMLanguageModel.from_pretrained(tmp_path, strict=True)
    assert not loaded.training
    assert loaded.decoder.weight is loaded.embedding.weight  # tying survives the round trip
    ids = torch.randint(30, (2, 12))
    assert torch.equal(model(ids)[0], loaded(ids)[0])


def test_strict_load_refuses_weights_that_do_not_match_the_config(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["num_layers"] = 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(RuntimeError, match="weight_ih_l2|Missing"):
        LSTMLanguageModel.from_pretrained(tmp_path, strict=True)


def test_regularisation_is_active_in_training_only():
    model = tiny_model(dropout=0.5, input_dropout=0.5, embed_dropout=0.5, weight_drop=0.5)
    ids = torch.randint(30, (2, 8))
    model.train()
    assert not torch.equal(model(ids)[0], model(ids)[0])
    model.eval()
    assert torch.equal(model(ids)[0], model(ids)[0])


def test_weight_drop_reaches_the_recurrent_weights_gradient():
    model = tiny_model(weight_drop=0.5).train()
    logits, _ = model(torch.randint(30, (2, 8)))
    logits.sum().backward()
    assert model.lstm.weight_hh_l0.grad is not None and model.lstm.weight_hh_l0.grad.abs().sum() > 0


def test_tying_needs_equal_sizes():
    with pytest.raises(ValueError, match="tie_weights"):
        tiny_model(embed_size=8)
