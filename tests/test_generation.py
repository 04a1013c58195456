"""Generation carries the state, is reproducible with a seed, greedy at temperature 0, and samples exactly."""

import pytest
import torch

from lstmgen.engine.generate import GenerationStats, generate, generate_ids, text_pieces
from lstmgen.core.sampling import SamplingConfig
from lstmgen.core.model import LSTMLanguageModel
from lstmgen.core.tokenizers import CharTokenizer, SubwordTokenizer, WordTokenizer, basic_english


@pytest.fixture
def char_model():
    tokenizer = CharTokenizer.build("abcdefghij \n")
    model = LSTMLanguageModel(tokenizer.vocab_size, embed_size=8, hidden_size=16, num_layers=2).eval()
    return model, tokenizer


def test_a_seed_reproduces_a_run_and_another_seed_changes_it(char_model):
    model, tokenizer = char_model
    first = generate(model, tokenizer, "abc", 50, temperature=1.0, seed=7)
    assert first == generate(model, tokenizer, "abc", 50, temperature=1.0, seed=7)
    assert first != generate(model, tokenizer, "abc", 50, temperature=1.0, seed=8)
    assert first.startswith("abc") and len(first) == 53


def test_temperature_zero_is_greedy(char_model):
    model, tokenizer = char_model
    text = generate(model, tokenizer, "ab", 20, temperature=0, seed=1)
    assert text == generate(model, tokenizer, "ab", 20, temperature=0, seed=2)
    # Greedy means each next character is the argmax of the model given everything before it.
    ids = tokenizer.encode(text).ids
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids]))
    assert logits[0, 1:-1].argmax(-1).tolist() == ids[2:]


def test_stateful_generation_gives_the_same_distribution_as_the_whole_sequence(char_model):
    """Carrying the state step by step equals re-running the whole growing sequence (what naive
    generators do at O(n^2) cost)."""
    model, tokenizer = char_model
    prompt = tokenizer.encode("abc").ids
    config = SamplingConfig(temperature=1.0, length=15, seed=3)
    generated = list(generate_ids(model, prompt, config))
    sequence = prompt + generated
    state = None
    with torch.no_grad():
        stepped, state = model(torch.tensor([prompt]))
        step_logits = [stepped[0, -1]]
        for token in generated[:-1]:
            out, state = model(torch.tensor([[token]]), state)
            step_logits.append(out[0, -1])
        for i, logits in enumerate(step_logits):
            whole, _ = model(torch.tensor([sequence[: len(prompt) + i]]))
            torch.testing.assert_close(torch.softmax(logits, -1), torch.softmax(whole[0, -1], -1))


def test_empty_prompt_starts_from_the_start_token(char_model):
    model, tokenizer = char_model
    stats = GenerationStats()
    text = "".join(text_pieces(model, tokenizer, "", SamplingConfig(temperature=0, length=10), stats))
    assert len(text) == 10 and stats.prompt_tokens == 1 and stats.new_tokens == 10


def test_stream_yields_growing_text_and_timings(char_model):
    model, tokenizer = char_model
    stats = GenerationStats()
    pieces = list(text_pieces(model, tokenizer, "ab€", SamplingConfig(length=12, seed=0), stats))
    assert len(pieces) == 12 and all(len(p) == 1 for p in pieces)
    assert stats.unknown == ["€"]  # reported, not fatal
    assert 0 < stats.first_token_s <= stats.total_s and stats.tokens_per_s > 0


def test_word_continuation_is_spaced_from_the_prompt():
    tokenizer = WordTokenizer.build(basic_english("harry looked at ron . " * 5), min_freq=1)
    model = LSTMLanguageModel(tokenizer.vocab_size, embed_size=8, hidden_size=8, num_layers=1).eval()
    text = generate(model, tokenizer, "Harry", 5, temperature=0)
    assert text.startswith("Harry ") or text.startswith("Harry.") or text.startswith("Harry,")


def test_subword_stream_equals_decoding_all_bytes_at_once(gpt2_ranks):
    tokenizer = SubwordTokenizer.build("abc", gpt2_ranks)
    model = LSTMLanguageModel(tokenizer.vocab_size, embed_size=8, hidden_size=8, num_layers=1).eval()
    ids = list(generate_ids(model, [tokenizer.start_id], SamplingConfig(temperature=1.0, length=60, seed=0)))
    detokenizer = tokenizer.detokenizer()
    streamed = "".join(detokenizer(i) for i in ids) + detokenizer.flush()
    raw = b"".join(tokenizer.encoding.decode_single_token_bytes(tokenizer.gpt2_ids[i]) for i in ids)
    assert streamed == raw.decode("utf-8", errors="replace")


@pytest.mark.parametrize("config", [SamplingConfig(temperature=0.9, length=30, seed=5),
                                    SamplingConfig(temperature=0.9, length=30, seed=5, min_p=0.05)],
                         ids=["in the graph", "declared fallback"])
def test_the_torch_model_and_the_engine_are_one_stream_interface(char_model, config):
    """Both models implement lstmgen.engine.streams.TokenStream, and the same seed writes the same text on both
    (the float engine's distribution equals torch's to float rounding), sampled in the graph or not."""
    from lstmgen.engine.ort import OrtModel, OrtStream
    from lstmgen.core.sampling import fallbacks
    from lstmgen.engine.streams import LogitsStream, TokenStream, token_stream

    model, tokenizer = char_model
    engine = OrtModel(model, "float", threads=1)
    streams = [token_stream(model, config), engine.stream(config)]
    assert all(isinstance(s, TokenStream) for s in streams)
    assert isinstance(streams[1], LogitsStream if fallbacks(config) else OrtStream)
    prompt = tokenizer.encode("abc").ids
    assert list(generate_ids(model, prompt, config)) == list(generate_ids(engine, prompt, config))
