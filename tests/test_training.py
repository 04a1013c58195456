"""Training learns, keeps the best model, writes metrics, and a killed run resumes where it stopped."""

import json

import pytest
import torch

from lstmgen.core.data import CorpusError, batchify, bptt_batches, load_text, num_batches
from lstmgen.core.evaluate import evaluate
from lstmgen.core.model import LSTMLanguageModel
from lstmgen.core.tokenizers import CharTokenizer, load_tokenizer
from lstmgen.training.folder import smooth_unseen_words
from lstmgen.training.trainer import TrainConfig, Trainer, cosine_lr

from conftest import REPEATING_TEXT


def char_data():
    tokenizer = CharTokenizer.build(REPEATING_TEXT)
    ids = tokenizer.encode(REPEATING_TEXT).ids
    return tokenizer, ids[: len(ids) * 9 // 10], ids[len(ids) * 9 // 10 :]


def small_model(vocab_size):
    return LSTMLanguageModel(vocab_size, embed_size=32, hidden_size=64, num_layers=1, dropout=0.0)


def config(**kwargs):
    settings = dict(epochs=2, batch_size=4, seq_len=32, lr=1e-2, progress=False, eval_batch_size=1,
                    eval_seq_len=64, amp="off", checkpoint_every_s=1e9)
    settings.update(kwargs)
    return TrainConfig(**settings)


def test_load_text_reads_local_files_exactly_through_datasets(tmp_path):
    (tmp_path / "a.txt").write_text("First line\n\nsecond  line\n")
    (tmp_path / "b.txt").write_text("book two")
    text = load_text([tmp_path / "a.txt", tmp_path / "b.txt"], cache_dir=str(tmp_path / "cache"))
    assert text == "First line\n\nsecond  line\nbook two"
    with pytest.raises(CorpusError, match="missing.txt"):
        load_text(tmp_path / "missing.txt")


def test_batches_are_contiguous_so_the_state_can_be_carried():
    rows = batchify(list(range(26)), batch_size=2)  # two streams: 0..12 and 13..25
    windows = list(bptt_batches(rows, seq_len=5))
    assert [w[1].tolist() for w in windows] == [[[0, 1, 2, 3, 4], [13, 14, 15, 16, 17]],
                                                [[5, 6, 7, 8, 9], [18, 19, 20, 21, 22]],
                                                [[10, 11], [23, 24]]]
    for position, inputs, targets in windows:  # targets are the inputs shifted by one
        assert torch.equal(targets, rows[:, position + 1 : position + 1 + inputs.size(1)])


def test_a_tiny_model_learns_a_repeating_text_in_seconds(tmp_path):
    tokenizer, train_ids, val_ids = char_data()
    torch.manual_seed(0)
    model = small_model(tokenizer.vocab_size)
    before = evaluate(model, val_ids, seq_len=64).loss
    history = Trainer(model, train_ids, val_ids, tmp_path, config(epochs=6), tokenizer=tokenizer).fit()
    assert before > 2.5
    assert history[-1]["val_loss"] < 0.3  # the text is fully predictable after one cycle
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, 7))
    assert {"train_loss", "val_loss", "val_perplexity", "tokens_per_s", "elapsed_s", "lr"} <= set(metrics["epochs"][0])
    best = LSTMLanguageModel.from_pretrained(tmp_path / "best", strict=True)
    assert evaluate(best, val_ids, seq_len=64).loss == pytest.approx(min(e["val_loss"] for e in history), rel=1e-4)
    assert load_tokenizer(tmp_path / "best").encode("fox").ids == tokenizer.encode("fox").ids


def test_early_stopping_ends_training_when_validation_stops_improving(tmp_path):
    tokenizer, train_ids, val_ids = char_data()
    # A learning rate of zero never improves on the first epoch's validation loss.
    history = Trainer(small_model(tokenizer.vocab_size), train_ids, val_ids, tmp_path,
                      config(epochs=10, lr=0.0, early_stop=2)).fit()
    assert len(history) == 3


class Killed(Exception):
    pass


@pytest.mark.parametrize("average_after, average_decay", [(0, 0.0), (2, 0.0), (2, 0.9)])
def test_a_killed_run_resumes_from_its_last_checkpoint_and_ends_where_an_uninterrupted_one_does(
        tmp_path, average_after, average_decay):
    tokenizer, train_ids, val_ids = char_data()
    cfg = config(epochs=3, checkpoint_every_steps=1, average_after=average_after, average_decay=average_decay)

    torch.manual_seed(0)
    reference = small_model(tokenizer.vocab_size)
    reference_history = Trainer(reference, train_ids, val_ids, tmp_path / "whole", cfg).fit()

    # Killed at step 5 of the first epoch, or of the second once averaging has started there.
    kill_step = 5 + (num_batches(batchify(train_ids, 4), 32) if average_after else 0)

    def kill_at_step_5(progress):
        if progress["step"] == kill_step:
            raise Killed

    torch.manual_seed(0)
    with pytest.raises(Killed):
        Trainer(small_model(tokenizer.vocab_size), train_ids, val_ids, tmp_path / "killed", cfg,
                on_progress=kill_at_step_5).fit()
    resumed_model = small_model(tokenizer.vocab_size)
    trainer = Trainer(resumed_model, train_ids, val_ids, tmp_path / "killed", cfg)
    assert trainer.resume()
    # the checkpoint after the step before: only the step that was running is lost
    assert trainer.steps == kill_step - 1 and (trainer.averaged is not None) == (average_after > 0)
    history = trainer.fit()

    for (name, a), b in zip(reference.state_dict().items(), resumed_model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    # The interrupted epoch's train_loss covers all its batches, those before the kill too.
    assert [h["train_loss"] for h in history] == pytest.approx([h["train_loss"] for h in reference_history], rel=1e-5)
    if average_after:  # the averaged weights, kept as best, continue exactly too
        whole_best = LSTMLanguageModel.from_pretrained(tmp_path / "whole" / "best", strict=True)
        resumed_best = LSTMLanguageModel.from_pretrained(tmp_path / "killed" / "best", strict=True)
        for (name, a), b in zip(whole_best.state_dict().items(), resumed_best.state_dict().values()):
            torch.testing.assert_close(a, b, msg=name)


def test_time_budget_stops_with_a_checkpoint(tmp_path):
    tokenizer, train_ids, val_ids = char_data()
    trainer = Trainer(small_model(tokenizer.vocab_size), train_ids, val_ids, tmp_path, config(time_budget_s=1e-6))
    trainer.fit()
    assert trainer.steps == 1 and (tmp_path / "last.pt").is_file()


def test_the_cosine_schedule_warms_up_then_falls_to_its_floor_at_the_last_step(tmp_path):
    assert [cosine_lr(s, 100, 1.0, 0.0, warmup_steps=4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cosine_lr(52, 101, 1.0, 0.0, warmup_steps=4) == pytest.approx(0.5)
    assert cosine_lr(99, 100, 1.0, 0.1, warmup_steps=4) == pytest.approx(0.1)

    tokenizer, train_ids, val_ids = char_data()
    trainer = Trainer(small_model(tokenizer.vocab_size), train_ids, val_ids, tmp_path,
                      config(epochs=2, lr_schedule="cosine", min_lr=1e-4))
    history = trainer.fit()
    per_epoch = num_batches(trainer.rows, 32)
    assert trainer.steps == 2 * per_epoch
    assert history[0]["lr"] == pytest.approx(cosine_lr(per_epoch - 1, 2 * per_epoch, 1e-2, 1e-4))
    assert history[1]["lr"] == pytest.approx(1e-4)  # and validation never changes the rate
    with pytest.raises(ValueError, match="lr_schedule"):
        Trainer(small_model(tokenizer.vocab_size), train_ids, val_ids, tmp_path, config(lr_schedule="linear"))


def test_averaged_weights_are_evaluated_and_kept_once_averaging_starts(tmp_path):
    tokenizer, train_ids, val_ids = char_data()
    torch.manual_seed(0)
    model = small_model(tokenizer.vocab_size)
    trainer = Trainer(model, train_ids, val_ids, tmp_path, config(epochs=3, average_after=2))
    history = trainer.fit()
    assert [h["averaged_weights"] for h in history] == [False, True, True]
    averaged = trainer.averaged.module
    assert not torch.equal(averaged.decoder.weight, model.decoder.weight)
    best = LSTMLanguageModel.from_pretrained(tmp_path / "best", strict=True)
    kept = min(history, key=lambda h: h["val_loss"])
    assert evaluate(best, val_ids, seq_len=64).loss == pytest.approx(kept["val_loss"], rel=1e-4)


@pytest.mark.parametrize("tie", [True, False])
def test_words_training_never_shows_are_predicted_like_its_rare_words(tmp_path, tie):
    # "a" and "b" are frequent, "r" and "s" are rare, "z" is in the vocabulary but never in training.
    tokenizer = CharTokenizer.build("abrsz")
    a, b, r, s, z = (tokenizer.encode(c).ids[0] for c in "abrsz")
    train_ids = ([a, b] * 200 + [r]) * 3 + [s] * 2
    model = LSTMLanguageModel(tokenizer.vocab_size, embed_size=16, hidden_size=16, num_layers=1, dropout=0.0,
                              tie_weights=tie)
    Trainer(model, train_ids, train_ids[:200], tmp_path, config(epochs=3, batch_size=2, seq_len=16)).fit()
    text_with_z = [a, b, z, a, b, r, a, b]
    before = evaluate(model, text_with_z, seq_len=8).loss

    assert smooth_unseen_words(model, train_ids, rare_max_count=3) == [z]

    rows = model.embedding.weight
    assert torch.allclose(rows[z], (rows[r] + rows[s]) / 2)  # r is used 3 times, s twice: both rare
    bias = model.decoder.bias.detach()
    assert bias[z].item() == pytest.approx(((bias[r] + bias[s]) / 2).item())
    assert torch.allclose(model.decoder.weight[z], (model.decoder.weight[r] + model.decoder.weight[s]) / 2)
    assert evaluate(model, text_with_z, seq_len=8).loss < before
