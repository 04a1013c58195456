"""Every tokenizer round-trips text, handles what its vocabulary lacks, and reloads from its saved state."""

import pytest

from lstmgen.tokenizers import CharTokenizer, SubwordTokenizer, WordTokenizer, basic_english, load_tokenizer


# The first case is torchtext's documented example; the others exercise each of its rules.
@pytest.mark.parametrize("text, expected", [
    ("You can now install TorchText using pip!", ["you", "can", "now", "install", "torchtext", "using", "pip", "!"]),
    ("Harry's wand (holly, 11\") -- \"Expelliarmus!\"", ["harry", "'", "s", "wand", "(", "holly", ",", "11", ")", "--", "expelliarmus", "!"]),
    ("Mr. Dursley; said: no?<br />Yes.", ["mr", ".", "dursley", "said", "no", "?", "yes", "."]),
    ("  tabs\tand\nnewlines  ", ["tabs", "and", "newlines"]),
    ("", []),
])
def test_basic_english_matches_torchtext(text, expected):
    assert basic_english(text) == expected


def test_char_round_trip_and_unknown_characters_are_dropped_and_reported(tmp_path):
    tokenizer = CharTokenizer.build("hello world\n")
    encoding = tokenizer.encode("hello world")
    assert tokenizer.decode(encoding.ids) == "hello world" and encoding.unknown == []

    encoding = tokenizer.encode("hellö wörld€")
    assert tokenizer.decode(encoding.ids) == "hell wrld"
    assert encoding.unknown == ["ö", "ö", "€"]

    tokenizer.save(tmp_path)
    reloaded = load_tokenizer(tmp_path)
    assert reloaded.encode("hello").ids == tokenizer.encode("hello").ids
    assert reloaded.start_id == tokenizer.index["\n"]


def test_word_vocabulary_min_frequency_unk_and_eos():
    tokens = basic_english("the cat sat . the cat ran . the dog sat .")
    tokenizer = WordTokenizer.build(tokens, min_freq=2)
    assert tokenizer.words[:2] == ["<unk>", "<eos>"]
    assert set(tokenizer.words[2:]) == {"the", "cat", "sat", "."}  # dog and ran occur once
    encoding = tokenizer.encode("The dog sat.")
    assert encoding.unknown == ["dog"]
    assert encoding.ids[1] == tokenizer.special_ids["<unk>"]
    assert tokenizer.decode(encoding.ids) == "the <unk> sat."


def test_word_decoding_glues_punctuation():
    tokenizer = WordTokenizer.build(basic_english("harry said , \" don't ! \" ( quietly ) . " * 3), min_freq=1)
    assert tokenizer.decode(tokenizer.encode("Harry said, don't! (quietly).").ids) == "harry said, don't! (quietly)."


def test_subword_round_trips_any_text_through_the_compact_vocabulary(gpt2_ranks, tmp_path):
    tokenizer = SubwordTokenizer.build("ROMEO: What say you, my lord?\n", gpt2_ranks)
    assert tokenizer.vocab_size < 300  # 256 bytes + the few tokens this text uses
    for text in ["ROMEO: What say you?", "Zebras très naïves 🦓 — 東京", "", "\n\n  spaces  "]:
        assert tokenizer.decode(tokenizer.encode(text).ids) == text
    encoding = tokenizer.encode("ROMEO Zebras")
    # " Zebras" is GPT-2 tokens outside the compact set: spelled in bytes and reported, "ROMEO" is not.
    assert "".join(encoding.unknown) == " Zebras"
    assert tokenizer.decode(encoding.ids) == "ROMEO Zebras"

    tokenizer.save(tmp_path)
    assert (tmp_path / "gpt2.tiktoken").is_file()  # the checkpoint carries its own ranks
    reloaded = load_tokenizer(tmp_path)
    assert reloaded.gpt2_ids == tokenizer.gpt2_ids
    assert reloaded.encode("ROMEO: 🦓").ids == tokenizer.encode("ROMEO: 🦓").ids


def test_subword_min_freq_spells_the_rarest_training_tokens_in_bytes(gpt2_ranks):
    text = " the king the king the king Bolingbroke\n"
    everything = SubwordTokenizer.build(text, gpt2_ranks)
    frequent = SubwordTokenizer.build(text, gpt2_ranks, min_freq=2)
    assert frequent.vocab_size < everything.vocab_size
    # " Bolingbroke" is used once: the training stream itself spells it, so the model learns spelling.
    assert "".join(frequent.encode(text).unknown) == " Bolingbroke" and everything.encode(text).unknown == []
    assert frequent.encode(" king").unknown == []
    assert frequent.decode(frequent.encode(text).ids) == text


def test_subword_matches_gpt2_ids(gpt2_ranks):
    tokenizer = SubwordTokenizer.build("Hello world", gpt2_ranks)
    assert tokenizer.encoding.encode_ordinary("Hello world") == [15496, 995]
    assert [tokenizer.gpt2_ids[i] for i in tokenizer.encode("Hello world").ids] == [15496, 995]


def test_stream_decoder_never_splits_a_character(gpt2_ranks):
    tokenizer = SubwordTokenizer.build("", gpt2_ranks)
    ids = tokenizer.encode("🦓!").ids  # four byte tokens, then "!"
    decoder = tokenizer.stream_decoder()
    pieces = [decoder(i) for i in ids]
    assert pieces[:3] == ["", "", ""] and pieces[3] == "🦓" and pieces[4] == "!"


def test_missing_or_broken_tokenizer_file_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"kind": "char"}')
    with pytest.raises(ValueError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
