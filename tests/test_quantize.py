"""The int8 copy is smaller, stays close to the float model, and leaves the float model untouched."""

import torch
import torch.nn as nn

from lstmgen.core.evaluate import evaluate
from lstmgen.core.model import LSTMLanguageModel
from bench.engines import Int8TiedDecoder, int8_matmul_is_fast, quantize_dynamic
from lstmgen.training.folder import size_bytes
from lstmgen.core.tokenizers import CharTokenizer
from lstmgen.training.trainer import TrainConfig, Trainer

from conftest import REPEATING_TEXT


def random_model(tie_weights: bool, vocab_size=500):
    torch.manual_seed(0)
    return LSTMLanguageModel(vocab_size, embed_size=64, hidden_size=64, num_layers=2, tie_weights=tie_weights).eval()


def test_int8_copy_is_quantized_and_under_30_percent_of_float():
    model = random_model(tie_weights=False)
    int8 = quantize_dynamic(model)
    assert isinstance(int8.lstm, torch.ao.nn.quantized.dynamic.LSTM)
    assert isinstance(int8.decoder, torch.ao.nn.quantized.dynamic.Linear)
    assert isinstance(int8.embedding, torch.ao.nn.quantized.Embedding)
    assert isinstance(model.lstm, nn.LSTM)  # the float model is untouched
    assert size_bytes(int8) < 0.3 * size_bytes(model)


def assert_close_to_float(int8, model):
    ids = torch.randint(500, (2, 7))
    with torch.no_grad():
        rows = model.embedding(ids)
        torch.testing.assert_close(int8.embedding(ids), rows, atol=float(rows.abs().max()) / 100, rtol=0)
        h = torch.randn(3, 64)
        torch.testing.assert_close(int8.decoder(h), model.decoder(h), atol=0.05, rtol=0.05)


def test_a_tied_model_can_keep_one_int8_matrix_for_embedding_and_output():
    model = random_model(tie_weights=True)
    int8 = quantize_dynamic(model, share_tied=True)
    assert isinstance(int8.decoder, Int8TiedDecoder) and int8.embedding._decoder[0] is int8.decoder
    assert size_bytes(int8) < 0.3 * size_bytes(model)
    assert_close_to_float(int8, model)


def test_a_tied_model_can_instead_run_its_output_layer_through_fbgemm_with_one_scale_per_row():
    model = random_model(tie_weights=True)
    int8 = quantize_dynamic(model, share_tied=False)
    assert isinstance(int8.decoder, torch.ao.nn.quantized.dynamic.Linear)
    assert int8.decoder.weight().qscheme() == torch.per_channel_affine
    assert isinstance(int8.embedding, torch.ao.nn.quantized.Embedding)
    assert model.decoder.weight is model.embedding.weight  # the float model stays tied
    assert size_bytes(int8) < 0.5 * size_bytes(model)  # the matrix is stored twice: larger than shared
    assert_close_to_float(int8, model)


def test_the_default_shares_the_tied_matrix_only_where_int8_matmul_is_fast():
    int8 = quantize_dynamic(random_model(tie_weights=True))
    assert isinstance(int8.decoder, Int8TiedDecoder) == int8_matmul_is_fast()


def test_int8_predictions_of_a_trained_model_match_float(tmp_path):
    tokenizer = CharTokenizer.build(REPEATING_TEXT)
    ids = tokenizer.encode(REPEATING_TEXT).ids
    torch.manual_seed(0)
    model = LSTMLanguageModel(tokenizer.vocab_size, embed_size=64, hidden_size=64, num_layers=2)
    config = TrainConfig(epochs=8, batch_size=4, seq_len=32, lr=1e-2, progress=False, amp="off")
    Trainer(model, ids, ids[:400], tmp_path, config).fit()
    model.eval()
    int8 = quantize_dynamic(model)
    inputs = torch.tensor([ids[:300]])
    with torch.no_grad():
        float_probs, int8_probs = torch.softmax(model(inputs)[0], -1), torch.softmax(int8(inputs)[0], -1)
    assert (float_probs - int8_probs).abs().max() < 0.05
    confident = float_probs.max(-1).values > 0.6  # where float is sure, int8 makes the same choice
    assert confident.float().mean() > 0.8
    assert torch.equal(float_probs.argmax(-1)[confident], int8_probs.argmax(-1)[confident])
    loss_float, loss_int8 = evaluate(model, ids[:400], seq_len=50).loss, evaluate(int8, ids[:400], seq_len=50).loss
    assert loss_float < 0.5 and abs(loss_int8 - loss_float) < 0.01 + 0.01 * loss_float


def test_the_int8_copy_evaluates_several_streams_like_the_float_model():
    model = random_model(tie_weights=True)
    ids = torch.randint(500, (2000,)).tolist()
    float_loss = evaluate(model, ids, batch_size=8, seq_len=20).loss  # batches are strided views of the stream
    for share in (True, False):
        int8_loss = evaluate(quantize_dynamic(model, share_tied=share), ids, batch_size=8, seq_len=20).loss
        assert abs(int8_loss - float_loss) < 0.01 * float_loss


def test_quantizing_twice_gives_identical_models():
    model = random_model(tie_weights=True)
    ids = torch.randint(500, (1, 30))
    with torch.no_grad():
        for share in (True, False):
            first, second = quantize_dynamic(model, share_tied=share), quantize_dynamic(model, share_tied=share)
            assert torch.equal(first(ids)[0], second(ids)[0])
