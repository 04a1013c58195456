"""lstmgen.inside: what the LSTM's cells track; and lstmgen.core.evaluate.score_text, scoring a text of one's own.

Every feature is a number per token: the state of the text after that token is read."""

import io
import math
import random
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch

from lstmgen import inside
from lstmgen.core.evaluate import evaluate, score_text
from lstmgen.core.model import LSTMLanguageModel
from lstmgen.core.tokenizers import CharTokenizer, WordTokenizer


def char_features(text: str) -> dict[str, list[float]]:
    tokenizer = CharTokenizer.build(text)
    return {k: v.tolist() for k, v in inside.token_features(tokenizer, tokenizer.encode(text).ids).items()}


# --------------------------------------------------------------------------- features on hand-written text


def test_characters_since_the_line_began_restart_at_each_line_break():
    assert char_features("ab\ncd")["line_position"] == [1, 2, 0, 1, 2]


def test_a_speakers_name_line_is_capitals_and_spaces_ending_with_a_colon_its_line_break_included():
    assert char_features("KING LEAR:\nNo\n")["speaker_line"] == [1] * 11 + [0, 0, 0]
    assert char_features("First Citizen:\n")["speaker_line"] == [0] * 15  # not all capitals


def test_next_capital_is_about_the_character_that_comes_next():
    assert char_features("aB c")["next_capital"] == [1, 0, 0, 0]  # the last has no next: 0


def test_inside_a_word_counts_apostrophes_between_letters():
    assert char_features("it's a")["in_word"] == [1, 1, 1, 1, 0, 1]


def test_quotes_and_brackets_open_at_their_mark_and_close_after_it():
    assert char_features('a "b" c')["in_quotes"] == [0, 0, 1, 1, 0, 0, 0]
    assert char_features("a (b) c")["in_brackets"] == [0, 0, 1, 1, 0, 0, 0]
    assert char_features("“a” b")["in_quotes"] == [1, 1, 0, 0, 0]


def test_a_blank_line_closes_an_open_quote():
    assert char_features('"a\n\nb')["in_quotes"] == [1, 1, 1, 0, 0]


def test_a_token_that_adds_no_text_keeps_the_state_before_it():
    # A subword token ending inside a UTF-8 character adds nothing until the character is complete.
    assert inside.text_features(["ab", "", "\n"], "char")["line_position"].tolist() == [2, 2, 0]


def test_word_features_sentence_position_quotes_and_sentence_end():
    texts = ["“Hello", " Harry", ".”", " he", " said", "."]
    values = {k: v.tolist() for k, v in inside.text_features(texts, "word").items()}
    assert values["sentence_position"] == [1, 2, 0, 1, 2, 0]
    assert values["sentence_end"] == [0, 0, 1, 0, 0, 1]
    assert values["in_quotes"] == [1, 1, 0, 0, 0, 0]


def test_subword_tokens_of_spaces_only_keep_the_sentence_state():
    texts = ["ROM", "EO", ":", " Hi", ".", "\n", "Go", ' "', "now", '"', "!"]
    values = {k: v.tolist() for k, v in inside.text_features(texts, "subword").items()}
    assert values["sentence_position"] == [1, 2, 3, 4, 0, 0, 1, 2, 3, 4, 0]
    assert values["sentence_end"] == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1]
    assert values["in_quotes"] == [0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0]


def test_sentence_ends_follow_the_word_detokenizers_rule():
    """One rule (lstmgen.core.english.Sentences): "Mr." and an ellipsis that trails off end no sentence, nor
    does a closing quote after "?" ("said" follows in lower case)."""
    texts = ["He", " saw", " Mr", ".", " Weasley", ".", " “Really", "?”", " said", " Ron", ".", " “Yes", "...", "”"]
    values = {k: v.tolist() for k, v in inside.text_features(texts, "word").items()}
    assert values["sentence_end"] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0]
    assert values["sentence_position"] == [1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 0, 1, 2, 3]


def test_features_of_a_word_tokenizer_come_from_its_decoded_text():
    words = ["“harry", "smiled", ".", "”", "he", "left", "."]
    tokenizer = WordTokenizer.build(words, min_freq=1)
    values = inside.token_features(tokenizer, tokenizer.encode_words(words).ids)
    assert values["sentence_end"].tolist() == [0, 0, 1, 1, 0, 0, 1]
    assert values["in_quotes"].tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert set(values) == {f.name for f in inside.features_for("word")}


def test_the_one_table_says_which_features_each_tokenizer_gets():
    assert [f.name for f in inside.features_for("char")] == [
        "line_position", "in_quotes", "in_brackets", "speaker_line", "next_capital", "in_word"]
    assert [f.name for f in inside.features_for("subword")] == ["in_quotes", "sentence_position", "sentence_end"]


# --------------------------------------------------------------------------- cell states


def small_model(vocab_size: int, layers: int = 2, hidden: int = 16, seed: int = 0) -> LSTMLanguageModel:
    torch.manual_seed(seed)
    model = LSTMLanguageModel(vocab_size, embed_size=8, hidden_size=hidden, num_layers=layers, dropout=0.0)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.5, 0.5)
    return model.eval()


def test_states_equal_nn_lstm_forward_after_every_token():
    model = small_model(10, layers=2)
    ids = torch.randint(0, 10, (30,), generator=torch.Generator().manual_seed(1))
    got = inside.cell_states(model, ids)
    assert got["c"].shape == got["h"].shape == (2, 30, 16)
    with torch.no_grad():
        x = model.embedding(ids[None])
        out, _ = model.lstm(x)
        np.testing.assert_allclose(got["h"][-1], out[0].numpy(), atol=1e-5)  # the top layer, every step
        for t in range(30):  # every layer: nn.LSTM's final state over the first t + 1 tokens
            _, (h, c) = model.lstm(x[:, : t + 1])
            np.testing.assert_allclose(got["h"][:, t], h[:, 0].numpy(), atol=1e-5)
            np.testing.assert_allclose(got["c"][:, t], c[:, 0].numpy(), atol=1e-5)


def test_int8_states_follow_the_float_states():
    from lstmgen.engine.ort import OrtModel

    model = small_model(12, layers=2, hidden=32)
    ids = list(torch.randint(0, 12, (200,), generator=torch.Generator().manual_seed(2)))
    float_states = inside.cell_states(model, ids)
    int8_states = inside.cell_states(OrtModel(model, "int8"), ids)
    for k in "ch":
        difference = np.abs(int8_states[k] - float_states[k]) / (1 + np.abs(float_states[k]))
        assert difference.max() < inside.INT8_STATE_TOLERANCE


def exported_int8_steps(model, ids):
    """The int8 copy stepped another way: the exported int8 step file (lstmgen.engine.graph, one h and one c input
    for all layers, no sampler) in a plain ONNX Runtime session, no buffers bound. Its weights are the same
    int8 copy; the engine's graph layout, bindings and state handling are not involved."""
    import onnxruntime as ort

    from lstmgen.engine.graph import step_model

    session = ort.InferenceSession(step_model(model, "int8").SerializeToString(), providers=["CPUExecutionProvider"])
    h = c = np.zeros((model.num_layers, 1, model.hidden_size), np.float32)
    logits, hs, cs = [], [], []
    for token in ids:
        out, h, c = session.run(["logits", "h_out", "c_out"],
                                {"token": np.array([[token]], np.int64), "h": h, "c": c})
        logits.append(out.reshape(-1)[: model.vocab_size])
        hs.append(h[:, 0])
        cs.append(c[:, 0])
    return np.stack(logits), np.stack(hs, 1), np.stack(cs, 1)


def test_int8_states_and_scores_are_the_int8_copys_own():
    """What /cells and /score show for the compressed copy, recomputed with the exported int8 step file."""
    from lstmgen.engine.ort import OrtModel

    tokenizer = CharTokenizer.build(SCORED)
    model = small_model(tokenizer.vocab_size, layers=2, hidden=32)
    int8 = OrtModel(model, "int8", probabilities=True)  # as the app builds it
    ids = tokenizer.encode(SCORED).ids
    logits, h, c = exported_int8_steps(model, ids)
    got = inside.cell_states(int8, ids)
    np.testing.assert_allclose(got["h"], h, atol=1e-5)
    np.testing.assert_allclose(got["c"], c, atol=1e-5)
    log_probs = torch.log_softmax(torch.from_numpy(logits[:-1]).double(), -1)
    nats = -log_probs[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    result = score_text(int8, tokenizer, SCORED)
    assert result.total_nats == pytest.approx(float(nats.sum()), abs=1e-3)
    assert result.probabilities[1:] == pytest.approx(torch.exp(-nats).tolist(), abs=1e-5)


def counting_model(tokenizer: CharTokenizer) -> LSTMLanguageModel:
    """One layer of three cells. Cell 1's input and forget gates are open (bias 20) except on a line break,
    where the forget gate shuts (-40): c grows by tanh(0.1) a character and falls to 0 at each line break.
    Cells 2 and 3 have no weights: c stays 0."""
    vocab = tokenizer.vocab_size
    model = LSTMLanguageModel(vocab, embed_size=vocab, hidden_size=3, num_layers=1, dropout=0.0)
    newline = tokenizer.index["\n"]
    hidden = 3
    i, f, g = 0, hidden, 2 * hidden  # rows of the first cell's gates (PyTorch's order: i, f, g, o)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embedding.weight.copy_(torch.eye(vocab))  # one input a character
        model.lstm.bias_ih_l0[i] = 20.0
        model.lstm.bias_ih_l0[f] = 20.0
        model.lstm.weight_ih_l0[f, newline] = -40.0
        model.lstm.bias_ih_l0[g] = 0.1
        model.lstm.weight_ih_l0[g, newline] = -0.1  # adds nothing on the line break itself
    return model.eval()


def test_a_cell_that_counts_characters_since_the_line_began_is_ranked_first():
    rng = random.Random(0)
    text = "".join("".join(rng.choice("ab ") for _ in range(rng.randint(0, 40))) + "\n" for _ in range(60))
    tokenizer = CharTokenizer.build(text)
    model = counting_model(tokenizer)
    ids = tokenizer.encode(text).ids
    c = inside.cell_states(model, ids)["c"][0, :, 0]
    np.testing.assert_allclose(c, math.tanh(0.1) * inside.token_features(tokenizer, ids)["line_position"], atol=1e-4)
    rows = [r for r in inside.rank_cells(model, tokenizer, ids) if r["feature"] == "line_position"]
    best = rows[0]
    assert (best["layer"], best["cell"], best["state"]) == (1, 1, "c")  # numbered from 1
    assert best["r"] > 0.9
    assert best["sentence"] == f"cell 1 of layer 1 counts characters since the line began (r = {best['r']:.2f})"
    assert len(rows) == inside.TOP


def test_cells_json_is_kept_beside_the_weights_and_dropped_when_they_change(tmp_path):
    text = "ab\nba ab\n" * 20
    tokenizer = CharTokenizer.build(text)
    model = counting_model(tokenizer)
    model.save_pretrained(tmp_path)
    ids = tokenizer.encode(text).ids
    path = inside.write_cells_json(tmp_path, model, tokenizer, ids, source="a test text")
    stored = inside.read_cells_json(tmp_path)
    assert path.name == "cells.json" and stored["source"] == "a test text" and stored["tokens"] == len(ids)
    assert inside.load_cells(tmp_path, model, tokenizer) == stored  # read, not recomputed
    assert "in_quotes" in stored["constant"]  # never varies here: not ranked
    with torch.no_grad():
        model.lstm.bias_ih_l0[0] = 1.0
    model.save_pretrained(tmp_path)
    assert inside.read_cells_json(tmp_path) is None  # other weights: the file is not believed


def test_without_held_out_text_the_cells_are_measured_on_text_the_model_samples():
    tokenizer = CharTokenizer.build("ab \n")
    model = counting_model(tokenizer)  # its output layer is all zeros: every character is equally likely
    sampled = inside.sampled_states(model, tokenizer, length=300)
    again = inside.cell_states(model, tokenizer.encode("\n").ids + sampled["ids"])  # the start id, then the sampled ids
    np.testing.assert_allclose(sampled["c"], again["c"][:, 1:], atol=1e-6)
    measured = inside.load_cells(None, model, tokenizer, max_tokens=300, min_tokens=300)
    assert measured["source"].startswith("300 tokens the model sampled itself")
    best = measured["rows"][0]
    assert (best["feature"], best["layer"], best["cell"], best["state"]) == ("line_position", 1, 1, "c")


# --------------------------------------------------------------------------- scoring a text


SCORED = ("ROMEO:\nBut soft, what light through yonder window breaks?\n" * 12)  # > 256 characters: two windows


def test_score_total_loss_equals_evaluate_on_one_stream():
    tokenizer = CharTokenizer.build(SCORED)
    model = small_model(tokenizer.vocab_size)
    result = score_text(model, tokenizer, SCORED)
    ids = tokenizer.encode(SCORED).ids
    reference = evaluate(model, ids, batch_size=1, seq_len=256, num_chars=len(SCORED))
    assert result.total_nats == pytest.approx(reference.total_nats, abs=1e-4)
    assert result.bits_per_char == pytest.approx(reference.bits_per_char, abs=1e-6)
    assert result.perplexity == pytest.approx(reference.perplexity, rel=1e-5)
    assert result.tokens == len(ids) - 1 and result.probabilities[0] is None  # the first token is not predicted
    assert -sum(math.log(p) for p in result.probabilities[1:]) == pytest.approx(result.total_nats, abs=1e-3)
    assert "".join(result.texts) == SCORED


def test_score_from_the_start_id_predicts_every_token():
    tokenizer = CharTokenizer.build(SCORED)
    model = small_model(tokenizer.vocab_size)
    result = score_text(model, tokenizer, SCORED, from_start=True)
    assert result.tokens == len(SCORED) and None not in result.probabilities


def test_score_compares_with_the_held_out_figure():
    tokenizer = CharTokenizer.build(SCORED)
    model = small_model(tokenizer.vocab_size)  # an untrained model: far worse than any held-out figure
    metrics = {"kind": "char", "record": {"corpus": "tiny_shakespeare"},
               "final": {"val_float": {"loss": 1.0, "perplexity": 2.7, "bits_per_char": 1.5}}}
    result = score_text(model, tokenizer, SCORED, metrics)
    assert result.comparison == (f"your text is {result.bits_per_char:.2f} bits per character: "
                                 "less Shakespeare-like than the plays' held-out part, 1.50")


# --------------------------------------------------------------------------- the shipped models


@pytest.mark.parametrize("name", ["char", "subword", "word"])
def test_shipped_models_have_their_best_cells_stored(name):
    from lstmgen.core.records import find

    folder = find(name).bundled_folder
    stored = inside.read_cells_json(folder)
    assert stored is not None, f"{folder}/cells.json is missing or stale: python -m lstmgen cells --model {name} --write"
    kinds = {f.name for f in inside.features_for(stored["kind"])}
    assert {r["feature"] for r in stored["rows"]} | set(stored["constant"]) == kinds


def test_the_command_prints_the_table_of_best_cells():
    from lstmgen.__main__ import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["cells", "--model", "char", "--no-hub"]) == 0
    table = out.getvalue()
    assert "line_position" in table and "counts characters since the line began" in table


def test_the_shipped_char_models_stored_correlations_are_the_cells_own(tmp_path):
    """Each r in the char model's cells.json (the figures the explorer's table shows), recomputed with numpy's
    corrcoef over the model's states along the same held-out text, stepped here from its weights."""
    from lstmgen.hub import resolve
    from lstmgen.core.records import find

    record = find("char-shakespeare")
    loaded = resolve(record, use_hub=False)
    stored = inside.read_cells_json(record.bundled_folder)
    ids = inside.held_out_ids(record, loaded.tokenizer, max_tokens=stored["tokens"])
    values = inside.token_features(loaded.tokenizer, ids)
    with torch.inference_mode():  # layer by layer, keeping every step
        x = loaded.model.embedding(torch.tensor([ids]))
        hs, cs = [], []
        for layer in range(loaded.model.num_layers):
            weights = [getattr(loaded.model.lstm, f"{kind}_l{layer}") for kind in ("weight_ih", "weight_hh", "bias_ih",
                                                                                     "bias_hh")]
            h = c = torch.zeros(1, loaded.model.hidden_size)
            out_h, out_c = [], []
            for t in range(x.size(1)):
                h, c = torch.lstm_cell(x[:, t], (h, c), *weights)
                out_h.append(h[0])
                out_c.append(c[0])
            hs.append(torch.stack(out_h))
            cs.append(torch.stack(out_c))
            x = hs[-1][None]
    for row in stored["rows"][:8]:
        series = (cs if row["state"] == "c" else hs)[row["layer"] - 1][:, row["cell"] - 1].double().numpy()
        assert row["r"] == pytest.approx(np.corrcoef(series, values[row["feature"]])[0, 1], abs=1e-3), row
