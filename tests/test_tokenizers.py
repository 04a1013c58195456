"""Every tokenizer round-trips text, handles what its vocabulary lacks, and reloads from its saved state.

The char and word tokenizers save a tokenizer.json that the `tokenizers` library reads and encodes to the
same ids; lstmgen's own part (the kind, the start, the casing, the compact GPT-2 vocabulary) is in a file of
its own name; folders saved before that still load."""

import json
import shutil

import pytest

from conftest import corpus_or_skip
from lstmgen.core.data import cut
from lstmgen.core.files import PRETRAINED_DIR
from lstmgen.core.records import PRESETS
from lstmgen.core.english import basic_english, basic_english_cased, casing_table
from lstmgen.core.tokenizers import (LSTMGEN_TOKENIZER_FILE, CharTokenizer, SubwordTokenizer, WordTokenizer,
                                     load_tokenizer)

SHAKESPEARE = PRESETS["char-shakespeare"].corpus
# Text no training split holds, with what each tokenizer has no id for: accents, an emoji, a form feed and a
# no-break space (whitespace to str.split(), so a word boundary), markup basic_english drops.
ODD_TEXT = ' Zoë said "hi"; <br />x:y (a) b! c? d\'s\u00a0e\x1cf\u2028g 🦓 —\tend.\n'


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


# As the books write: curly quotes, spaced dashes, "Mr." inside a sentence, an ellipsis that trails off.
STORY = ("Harry looked at Dumbledore. He said Mr. Weasley was late. “I saw Harry’s owl,” said Ron, "
         "“and it was late.” Hermione smiled (a little). “Really?” asked Harry. “Yes!” “Then we go — now.” "
         "They left... and Harry didn't look back. Weasley!")


def cased_word_tokenizer(text: str, min_freq: int = 1) -> WordTokenizer:
    return WordTokenizer.build(basic_english(text), min_freq=min_freq, cased_tokens=basic_english_cased(text))


def test_basic_english_cased_is_basic_english_without_lower_casing():
    text = "Mr. Dursley's <BR />“Harry!” (ROMEO) — don’t"
    assert basic_english_cased(text) == [
        "Mr", ".", "Dursley", "'", "s", "“Harry", "!", "”", "(", "ROMEO", ")", "—", "don’t"]
    assert [t.lower() for t in basic_english_cased(text)] == basic_english(text)


def test_word_decoding_restores_casing_and_spacing():
    tokenizer = cased_word_tokenizer(STORY)
    # Every word in the casing it has inside sentences; capitals at sentence starts; punctuation joined.
    assert tokenizer.decode(tokenizer.encode(STORY).ids) == STORY
    assert tokenizer.decode(tokenizer.encode("harry looked at dumbledore . he said mr . weasley").ids) == \
        "Harry looked at Dumbledore. He said Mr. Weasley"
    # An opening quote joins the word after it, a closing one the word before; "?”" does not end the sentence.
    assert tokenizer.decode(tokenizer.encode("“really ?” asked harry , “i ...” and ron left").ids) == \
        "“Really?” asked Harry, “I...” and Ron left"


def test_word_detokenizer_spaces_each_piece_as_it_comes():
    """The app shows the word model's text token by token: each piece carries its own leading space."""
    tokenizer = cased_word_tokenizer(STORY)
    detokenizer = tokenizer.detokenizer()
    pieces = [detokenizer(i) for i in tokenizer.encode("“I saw Harry’s owl,” said Ron <eos> and").ids]
    assert pieces == ["“I", " saw", " Harry’s", " owl", ",", "”", " said", " Ron", "\n", "And"]


def test_casing_table_keeps_the_most_common_casing_inside_sentences():
    text = "Potter ran. Mr. Potter, potter and Potter. The cat sat. Then the cat and the Cat. THE END"
    assert casing_table(basic_english_cased(text)) == {
        "mr": "Mr",
        "potter": "Potter",  # 2 of 3 inside sentences (the sentence start does not count)
        "then": "Then",  # only ever seen starting a sentence: as seen there
    }  # "the": "The" starts a sentence, "the" twice inside one; "THE END" is a heading: not counted
    assert casing_table(basic_english_cased(text), words=["potter"]) == {"potter": "Potter"}


def test_word_tokenizer_saves_and_reloads_its_casing(tmp_path):
    tokenizer = cased_word_tokenizer(STORY)
    tokenizer.save(tmp_path)
    reloaded = load_tokenizer(tmp_path)
    assert reloaded.state() == tokenizer.state() and reloaded.casing["harry"] == "Harry"
    assert reloaded.decode(reloaded.encode(STORY).ids) == STORY


def test_word_tokenizer_file_without_casing_loads_and_decodes_lower_case(tmp_path):
    """tokenizer.json files from before the casing table: the same ids, lower case as before."""
    state = cased_word_tokenizer(STORY).state()
    del state["casing"]
    (tmp_path / "tokenizer.json").write_text(json.dumps(state, ensure_ascii=False))
    reloaded = load_tokenizer(tmp_path)
    assert reloaded.casing is None and "casing" not in reloaded.state()
    decoded = reloaded.decode(reloaded.encode("Harry said Mr. Weasley was late.").ids)
    assert decoded == "harry said mr. weasley was late."


def test_shipped_word_model_restores_the_casing_of_held_out_text():
    """The Harry Potter test split (the last 15% of the words, in book 7; the casing table is counted from
    the first 70%) through the shipped tokenizer: encoded, decoded token by token as the app does, and each
    word's casing compared with the book's. Words outside the vocabulary (<unk>) are not counted.
    Measured: 97.7% of 161,000 words (98.3% on the training part)."""
    record = PRESETS["word-harrypotter"]
    text = corpus_or_skip(record)
    tokenizer = load_tokenizer(PRETRAINED_DIR / record.long_name)
    assert tokenizer.casing  # the shipped table, counted from the training part
    held_out = cut(basic_english_cased(text), record.corpus.cuts)[2]
    held_out = held_out[held_out.index(".") + 1:]  # from the first sentence start on
    ids = tokenizer.encode_words([t.lower() for t in held_out]).ids
    detokenizer = tokenizer.detokenizer()
    unk = tokenizer.special_ids["<unk>"]
    decoded = [detokenizer(i).strip() for i in ids]  # every token, in order: the detokenizer follows the sentences
    pairs = [(d, word) for i, d, word in zip(ids, decoded, held_out) if i != unk and any(c.isalpha() for c in word)]
    share = sum(d == word for d, word in pairs) / len(pairs)
    assert len(pairs) > 100_000 and share >= 0.95, f"casing matches for {share:.1%} of {len(pairs)} words"


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


def test_detokenizer_never_splits_a_character(gpt2_ranks):
    tokenizer = SubwordTokenizer.build("", gpt2_ranks)
    ids = tokenizer.encode("🦓!").ids  # four byte tokens, then "!"
    detokenizer = tokenizer.detokenizer()
    pieces = [detokenizer(i) for i in ids]
    assert pieces[:3] == ["", "", ""] and pieces[3] == "🦓" and pieces[4] == "!"


def test_missing_or_broken_tokenizer_file_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"kind": "char"}')
    with pytest.raises(ValueError, match="tokenizer.json"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("ranks_file", ["../gpt2.tiktoken", "/etc/passwd", "sub/../../x", "..\\x"])
def test_a_subword_tokenizer_file_cannot_point_outside_its_folder(tmp_path, gpt2_ranks, ranks_file):
    tokenizer = SubwordTokenizer.build("hello world", gpt2_ranks)
    tokenizer.save(tmp_path / "model")
    shutil.copyfile(gpt2_ranks, tmp_path / "gpt2.tiktoken")  # a real ranks file, just outside the folder
    state = json.loads((tmp_path / "model" / LSTMGEN_TOKENIZER_FILE).read_text())
    (tmp_path / "model" / LSTMGEN_TOKENIZER_FILE).write_text(json.dumps({**state, "ranks_file": ranks_file}))
    with pytest.raises(ValueError, match="outside the model folder"):
        load_tokenizer(tmp_path / "model")
    # A folder of the format before (lstmgen's state as tokenizer.json) is held to the same rule.
    (tmp_path / "model" / LSTMGEN_TOKENIZER_FILE).rename(tmp_path / "model" / "tokenizer.json")
    with pytest.raises(ValueError, match="outside the model folder"):
        load_tokenizer(tmp_path / "model")


# --------------------------------------------------------------------------- files other tools read


def held_out_shakespeare() -> tuple[str, str]:
    """(the training part, the held-out part) of Tiny Shakespeare, as the shipped models cut it."""
    train, held_out = cut(corpus_or_skip(PRESETS["char-shakespeare"]), SHAKESPEARE.cuts)
    return train, held_out


def test_the_tokenizers_library_reads_the_char_file_and_encodes_held_out_text_to_the_same_ids(tmp_path):
    from tokenizers import Tokenizer as LibraryTokenizer

    train, held_out = held_out_shakespeare()
    tokenizer = CharTokenizer.build(train[:20_000])  # a smaller alphabet: the held-out text has characters it lacks
    tokenizer.save(tmp_path)
    library = LibraryTokenizer.from_file(str(tmp_path / "tokenizer.json"))

    for text in (held_out, ODD_TEXT):
        ours = tokenizer.encode(text)
        assert library.encode(text).ids == ours.ids
    assert ours.unknown  # the odd text had characters to drop, and both dropped them
    assert library.get_vocab_size() == tokenizer.vocab_size
    assert library.decode(tokenizer.encode(held_out[:500]).ids) == tokenizer.decode(tokenizer.encode(held_out[:500]).ids)
    assert load_tokenizer(tmp_path).state() == tokenizer.state()


def test_the_tokenizers_library_reads_the_word_file_and_encodes_held_out_text_to_the_same_ids(tmp_path):
    from tokenizers import Tokenizer as LibraryTokenizer

    train, held_out = held_out_shakespeare()
    tokenizer = WordTokenizer.build(basic_english(train), min_freq=3, cased_tokens=basic_english_cased(train))
    tokenizer.save(tmp_path)
    library = LibraryTokenizer.from_file(str(tmp_path / "tokenizer.json"))

    for text in (held_out, ODD_TEXT):
        ours = tokenizer.encode(text)
        assert library.encode(text).ids == ours.ids
        assert library.encode(text).tokens == [tokenizer.words[i] for i in ours.ids]
    assert len(ours.ids) > 10 and ours.unknown  # words outside the vocabulary: <unk> in both
    own = json.loads((tmp_path / LSTMGEN_TOKENIZER_FILE).read_text())
    assert own["casing"] == tokenizer.casing and "words" not in own  # the vocabulary is said once, in tokenizer.json
    assert load_tokenizer(tmp_path).state() == tokenizer.state()


@pytest.mark.parametrize("name", ["char-shakespeare", "word-harrypotter"])
def test_the_shipped_char_and_word_files_load_in_the_tokenizers_library_with_the_same_ids(name):
    from tokenizers import Tokenizer as LibraryTokenizer

    folder = PRETRAINED_DIR / name
    tokenizer = load_tokenizer(folder)
    library = LibraryTokenizer.from_file(str(folder / "tokenizer.json"))
    text = held_out_shakespeare()[1] + ODD_TEXT
    assert library.encode(text).ids == tokenizer.encode(text).ids


def test_the_subword_tokenizer_keeps_its_compact_vocabulary_in_lstmgens_own_file(gpt2_ranks, tmp_path):
    """The `tokenizers` format cannot say "GPT-2 BPE, these ids kept, the others spelled in bytes": no
    tokenizer.json is written for it, so no tool mistakes the file for one it can read."""
    tokenizer = SubwordTokenizer.build("ROMEO: What say you, my lord?\n", gpt2_ranks)
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer.state()))  # from before: replaced
    tokenizer.save(tmp_path)
    assert not (tmp_path / "tokenizer.json").exists()
    assert json.loads((tmp_path / LSTMGEN_TOKENIZER_FILE).read_text())["gpt2_ids"] == tokenizer.gpt2_ids
    assert load_tokenizer(tmp_path).state() == tokenizer.state()


@pytest.mark.parametrize("kind", ["char", "word", "subword"])
def test_a_folder_saved_before_lstmgens_own_file_still_loads(kind, gpt2_ranks, tmp_path):
    """Before, tokenizer.json held lstmgen's own state (what state() returns) and nothing else."""
    text = "ROMEO: What say you, my lord? Harry looked at the castle.\n" * 3
    tokenizer = {"char": lambda: CharTokenizer.build(text),
                 "word": lambda: WordTokenizer.build(basic_english(text), min_freq=1,
                                                     cased_tokens=basic_english_cased(text)),
                 "subword": lambda: SubwordTokenizer.build(text, gpt2_ranks)}[kind]()
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer.state(), ensure_ascii=False))
    shutil.copyfile(gpt2_ranks, tmp_path / "gpt2.tiktoken")
    reloaded = load_tokenizer(tmp_path)
    assert reloaded.state() == tokenizer.state()
    assert reloaded.encode(text).ids == tokenizer.encode(text).ids
