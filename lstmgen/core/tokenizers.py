"""Three tokenizers behind one interface: character, word (basic_english) and GPT-2 subword.

Every tokenizer turns text into model ids and back, knows its vocabulary size, its
special ids and the id generation starts from, and saves itself next to the weights, so a
checkpoint always carries its own tokenizer. Where the `tokenizers` library's format says a
tokenizer exactly (char, word), `tokenizer.json` is that format, so other tools read it;
what it cannot say (the kind, the start id, the casing table, the compact GPT-2 vocabulary)
is in lstmgen's own `lstmgen_tokenizer.json`. Folders from before, with lstmgen's state
under `tokenizer.json`, still load.
The word tokenizer's English (its words, sentence ends and casing) is lstmgen.core.english.
"""

from __future__ import annotations

import codecs
import functools
import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .english import (BASIC_ENGLISH_RULES, EOS, OPENING, Sentences, basic_english, capitalize_first, casing_table,
                      closes, split_opening)
from .files import GPT2_RANKS_FILE, TOKENIZER_FILE

LSTMGEN_TOKENIZER_FILE = "lstmgen_tokenizer.json"  # lstmgen's own part: `tokenizers` owns tokenizer.json

# GPT-2's pre-tokenizer pattern and end-of-text id, as tiktoken's "gpt2" encoding defines them.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_END_OF_TEXT = 50256


@dataclass
class Encoding:
    """Model ids for a text, and the pieces of it the vocabulary could not hold."""

    ids: list[int]
    unknown: list[str] = field(default_factory=list)


class Tokenizer:
    kind: str

    def encode(self, text: str) -> Encoding:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        detokenizer = self.detokenizer()
        return "".join(detokenizer(i) for i in ids) + detokenizer.flush()

    def detokenizer(self) -> "Detokenizer":
        """A callable that turns ids, one at a time, into the text they add."""
        raise NotImplementedError

    def piece(self, token_id: int) -> str:
        """One token on its own, for display (a byte that is not a whole character shows as <0xNN>)."""
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    @property
    def special_ids(self) -> dict[str, int]:
        return {}

    @property
    def start_id(self) -> int:
        """The id an empty prompt starts from."""
        raise NotImplementedError

    def state(self) -> dict:
        raise NotImplementedError

    # The state's key that `tokenizer.json` holds instead, where the `tokenizers` format says it (char, word).
    vocabulary_key: str | None = None

    def tokenizers_json(self) -> dict | None:
        """This tokenizer in the `tokenizers` library's format, where it says it exactly (same ids for any
        text); else None."""
        return None

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state, shared = self.state(), self.tokenizers_json()
        if shared is None:
            (folder / TOKENIZER_FILE).unlink(missing_ok=True)  # a file of the old format, from before
        else:
            (folder / TOKENIZER_FILE).write_text(json.dumps(shared, ensure_ascii=False, indent=1))
            del state[self.vocabulary_key]  # said once, in tokenizer.json
        (folder / LSTMGEN_TOKENIZER_FILE).write_text(json.dumps(state, ensure_ascii=False))


class Detokenizer:
    """Turns token ids back into text one token at a time, holding back what cannot be written yet (half a
    UTF-8 character, a word waiting for its capital)."""
    def __call__(self, token_id: int) -> str:
        raise NotImplementedError

    def flush(self) -> str:
        return ""


def token_texts(tokenizer: Tokenizer, ids) -> list[str]:
    """The text each token adds to the decoded text, the last with what the detokenizer held back."""
    detokenizer = tokenizer.detokenizer()
    texts = [detokenizer(int(i)) for i in ids]
    if texts:
        texts[-1] += detokenizer.flush()
    return texts


# --------------------------------------------------------------------------- character


class CharTokenizer(Tokenizer):
    """One id per character seen in the training text; other characters are dropped and reported."""

    kind = "char"

    def __init__(self, chars: list[str], start_char: str | None = None):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        if start_char is None:
            start_char = "\n" if "\n" in self.index else self.chars[0]
        self.start_char = start_char

    @classmethod
    def build(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    def encode(self, text: str) -> Encoding:
        ids, unknown = [], []
        for c in text:
            i = self.index.get(c)
            if i is None:
                unknown.append(c)
            else:
                ids.append(i)
        return Encoding(ids, unknown)

    def detokenizer(self) -> Detokenizer:
        chars = self.chars

        class _Detokenizer(Detokenizer):
            def __call__(self, token_id: int) -> str:
                return chars[token_id]

        return _Detokenizer()

    def piece(self, token_id: int) -> str:
        return self.chars[token_id]

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def start_id(self) -> int:
        return self.index[self.start_char]

    def state(self) -> dict:
        return {"kind": self.kind, "chars": self.chars, "start_char": self.start_char}

    vocabulary_key = "chars"

    def tokenizers_json(self) -> dict:
        # Characters outside the vocabulary are removed, as encode() drops them; each one left is a token.
        known = "".join(f"\\x{{{ord(c):x}}}" for c in self.chars)
        return shared_tokenizer(
            self.chars, normalizers=[_replace(f"[^{known}]", "", regex=True)],
            pre_tokenizer={"type": "Split", "pattern": {"Regex": r"[\s\S]"}, "behavior": "Isolated", "invert": False},
            decoder={"type": "Fuse"}, unk_token=self.chars[0])


# --------------------------------------------------------------------------- word


class WordTokenizer(Tokenizer):
    """basic_english words; words below the minimum frequency map to <unk> and are reported.

    Decoding writes readable text: punctuation joined the usual way ("mr . weasley" -> "mr. weasley") and,
    with a casing table (`casing`, built from the original text), each word in its most common casing
    and sentence starts capitalised ("Mr. Weasley"). Without a table (tokenizer files from before it)
    words stay lower case."""

    kind = "word"
    UNK, EOS = "<unk>", EOS

    def __init__(self, words: list[str], start_word: str = ".", casing: dict[str, str] | None = None):
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        # The corpus has no <eos> in it; an empty prompt starts as after a full stop.
        self.start_word = start_word if start_word in self.index else self.EOS
        self.casing = dict(casing) if casing is not None else None

    @classmethod
    def build(cls, tokens: list[str], min_freq: int = 3, max_size: int = 0,
              cased_tokens: list[str] | None = None) -> "WordTokenizer":
        """The words used at least `min_freq` times (at most `max_size` of them, the most frequent, if given).
        With `cased_tokens` (basic_english_cased of the original text, e.g. its training part) the
        tokenizer keeps a casing table and decodes with capitals (see casing_table)."""
        counts = Counter(tokens)
        # Most frequent first (ties alphabetical), so ids are stable for the same corpus.
        kept = sorted((w for w, n in counts.items() if n >= min_freq), key=lambda w: (-counts[w], w))
        kept = kept[:max_size] if max_size else kept
        words = [cls.UNK, cls.EOS] + [w for w in kept if w not in (cls.UNK, cls.EOS)]
        casing = casing_table(cased_tokens, words) if cased_tokens is not None else None
        return cls(words, casing=casing)

    def encode(self, text: str) -> Encoding:
        return self.encode_words(basic_english(text))

    def encode_words(self, words: list[str]) -> Encoding:
        unk = self.index[self.UNK]
        ids, unknown = [], []
        for w in words:
            i = self.index.get(w)
            if i is None:
                unknown.append(w)
                i = unk
            ids.append(i)
        return Encoding(ids, unknown)

    def cased(self, word: str, starts_sentence: bool) -> str:
        """A vocabulary word as the text spells it: "“harry" -> "“Harry", "i" -> "I" (without a table: as is)."""
        if self.casing is None or word in (self.UNK, self.EOS):
            return word
        prefix, core = split_opening(word)
        word = prefix + self.casing.get(core, core)
        return capitalize_first(word) if starts_sentence else word

    def detokenizer(self) -> Detokenizer:
        words, eos, cased = self.words, self.EOS, self.cased

        class _Detokenizer(Detokenizer):
            def __init__(self):
                self.previous: str | None = None  # the token before, for spacing
                self.sentences = Sentences()  # where capitals are due

            def __call__(self, token_id: int) -> str:
                word = words[token_id]
                starts = self.sentences.step(word)
                if word == eos:
                    self.previous = None
                    return "\n"
                # A space between words; none before closing marks, none after opening ones.
                glue = self.previous is None or closes(word) or self.previous[-1] in OPENING
                self.previous = word
                word = cased(word, starts)
                return word if glue else " " + word

        return _Detokenizer()

    def piece(self, token_id: int) -> str:
        return self.words[token_id]

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    @property
    def special_ids(self) -> dict[str, int]:
        return {self.UNK: self.index[self.UNK], self.EOS: self.index[self.EOS]}

    @property
    def start_id(self) -> int:
        return self.index[self.start_word]

    def state(self) -> dict:
        state = {"kind": self.kind, "words": self.words, "start_word": self.start_word}
        if self.casing is not None:
            state["casing"] = self.casing
        return state

    vocabulary_key = "words"

    def tokenizers_json(self) -> dict:
        # basic_english, rule for rule: lower case, its replacements, then a split at every whitespace that
        # Python's str.split() splits at (all of them end up as one space).
        steps = [{"type": "Lowercase"}]
        for pattern, replacement in BASIC_ENGLISH_RULES[:-1]:
            steps.append(_replace(pattern.pattern.replace("\\", ""), replacement))
        steps.append(_replace(f"[{python_spaces()}]+", " ", regex=True))
        return shared_tokenizer(self.words, normalizers=steps, unk_token=self.UNK,
                                pre_tokenizer={"type": "Split", "pattern": {"String": " "}, "behavior": "Removed",
                                               "invert": False})


def shared_tokenizer(vocabulary: list[str], normalizers: list[dict], pre_tokenizer: dict, unk_token: str,
                     decoder: dict | None = None) -> dict:
    """A `tokenizers` tokenizer.json: a normalizer sequence, a pre-tokenizer, and a word-level model whose ids
    are the vocabulary's positions (written here as JSON: lstmgen itself does not need the library)."""
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
            "normalizer": {"type": "Sequence", "normalizers": normalizers}, "pre_tokenizer": pre_tokenizer,
            "post_processor": None, "decoder": decoder,
            "model": {"type": "WordLevel", "vocab": {token: i for i, token in enumerate(vocabulary)},
                      "unk_token": unk_token}}


@functools.cache
def python_spaces() -> str:
    """Every character str.isspace() holds, for a regex character class."""
    return "".join(f"\\x{{{i:x}}}" for i in range(0x110000) if chr(i).isspace())


def _replace(pattern: str, content: str, regex: bool = False) -> dict:
    return {"type": "Replace", "pattern": {"Regex" if regex else "String": pattern}, "content": content}


# --------------------------------------------------------------------------- subword


def load_gpt2_encoding(ranks_file: str | Path | None):
    """GPT-2's BPE from a local .tiktoken ranks file; only with no file does tiktoken download it."""
    import tiktoken

    if ranks_file is None:
        return tiktoken.get_encoding("gpt2")
    from tiktoken.load import load_tiktoken_bpe

    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=load_tiktoken_bpe(str(ranks_file)),
        special_tokens={"<|endoftext|>": GPT2_END_OF_TEXT},
    )


class SubwordTokenizer(Tokenizer):
    """GPT-2 BPE with a compact vocabulary: the 256 byte tokens plus the GPT-2 tokens the training
    text uses. A GPT-2 token outside the compact set is spelled with byte tokens, so any text
    encodes losslessly."""

    kind = "subword"

    def __init__(self, gpt2_ids: list[int], ranks_file: str | Path | None, start_gpt2_id: int = 198):
        self.ranks_file = ranks_file
        self.encoding = load_gpt2_encoding(ranks_file)
        self.gpt2_ids = list(gpt2_ids)
        self.index = {g: i for i, g in enumerate(self.gpt2_ids)}
        self.byte_ids = [self.index[self.encoding.encode_single_token(bytes([b]))] for b in range(256)]
        self.start_gpt2_id = start_gpt2_id  # "\n" by default

    @classmethod
    def build(cls, text: str, ranks_file: str | Path | None, min_freq: int = 1) -> "SubwordTokenizer":
        """Keep the GPT-2 tokens the text uses at least `min_freq` times. With min_freq > 1 the rarest
        tokens are spelled in bytes in the training text too, so the model learns to spell the words
        it has never seen, instead of meeting byte fallback for the first time in new text."""
        encoding = load_gpt2_encoding(ranks_file)
        byte_tokens = [encoding.encode_single_token(bytes([b])) for b in range(256)]
        counts = Counter(encoding.encode_ordinary(text))
        used = {g for g, n in counts.items() if n >= min_freq} | {GPT2_END_OF_TEXT, 198}
        return cls(byte_tokens + sorted(used - set(byte_tokens)), ranks_file)

    def encode(self, text: str) -> Encoding:
        ids, spelled = [], []
        for g in self.encoding.encode_ordinary(text):
            i = self.index.get(g)
            if i is not None:
                ids.append(i)
            else:
                piece = self.encoding.decode_single_token_bytes(g)
                ids.extend(self.byte_ids[b] for b in piece)
                spelled.append(piece.decode("utf-8", errors="replace"))
        # Nothing is lost; `unknown` lists the pieces spelled out byte by byte.
        return Encoding(ids, spelled)

    def gpt2_token_count(self, text: str) -> int:
        return len(self.encoding.encode_ordinary(text))

    def detokenizer(self) -> Detokenizer:
        encoding, gpt2_ids = self.encoding, self.gpt2_ids

        class _Detokenizer(Detokenizer):
            def __init__(self):
                # Tokens can end inside a UTF-8 character: hold bytes back until it is complete.
                self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

            def __call__(self, token_id: int) -> str:
                return self.utf8.decode(encoding.decode_single_token_bytes(gpt2_ids[token_id]))

            def flush(self) -> str:
                return self.utf8.decode(b"", final=True)

        return _Detokenizer()

    def piece(self, token_id: int) -> str:
        data = self.encoding.decode_single_token_bytes(self.gpt2_ids[token_id])
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return "".join(f"<0x{b:02X}>" for b in data)

    @property
    def vocab_size(self) -> int:
        return len(self.gpt2_ids)

    @property
    def special_ids(self) -> dict[str, int]:
        return {"<|endoftext|>": self.index[GPT2_END_OF_TEXT]}

    @property
    def start_id(self) -> int:
        return self.index[self.start_gpt2_id]

    def state(self) -> dict:
        return {
            "kind": self.kind,
            "encoding": "gpt2",
            "ranks_file": GPT2_RANKS_FILE,
            "gpt2_ids": self.gpt2_ids,
            "start_gpt2_id": self.start_gpt2_id,
        }

    def save(self, folder: str | Path) -> None:
        super().save(folder)
        # Ship the ranks with the model: loading never needs the network.
        target = Path(folder) / GPT2_RANKS_FILE
        if self.ranks_file is not None and Path(self.ranks_file).resolve() != target.resolve():
            shutil.copyfile(self.ranks_file, target)


# --------------------------------------------------------------------------- loading


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """The tokenizer saved in `folder`: lstmgen_tokenizer.json (with tokenizer.json's vocabulary for char and
    word), or a tokenizer.json of lstmgen's own from before."""
    folder = Path(folder)
    path = folder / LSTMGEN_TOKENIZER_FILE
    if not path.is_file():
        path = folder / TOKENIZER_FILE  # a folder from before lstmgen_tokenizer.json
    if not path.is_file():
        raise FileNotFoundError(f"missing tokenizer file: {folder / LSTMGEN_TOKENIZER_FILE}")
    try:
        state = json.loads(path.read_text())
        kind = state["kind"]
        if path.name == LSTMGEN_TOKENIZER_FILE and kind in ("char", "word"):
            key = {"char": "chars", "word": "words"}[kind]
            state[key] = shared_vocabulary(folder / TOKENIZER_FILE)
        if kind == "char":
            return CharTokenizer(state["chars"], state.get("start_char"))
        if kind == "word":
            return WordTokenizer(state["words"], state.get("start_word", "."), state.get("casing"))
        if kind == "subword":
            # A downloaded folder names its own ranks file: it must be a name inside that folder (no "../x", no
            # absolute path), or a model could make the app read any file of the server. (Checked by name, not
            # by resolving: the Hub's cache links a snapshot's files to blobs outside the snapshot folder.)
            name = Path(state["ranks_file"])
            if name.is_absolute() or name.drive or ".." in name.parts or "\\" in state["ranks_file"]:
                raise ValueError(f"the ranks file {state['ranks_file']!r} is outside the model folder")
            ranks = folder / name
            if not ranks.is_file():
                raise FileNotFoundError(f"missing GPT-2 ranks file: {ranks}")
            return SubwordTokenizer(state["gpt2_ids"], ranks, state.get("start_gpt2_id", 198))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"invalid tokenizer file {path}: {error}") from error
    raise ValueError(f"invalid tokenizer file {path}: unknown kind {kind!r}")


def shared_vocabulary(path: Path) -> list[str]:
    """The tokens of a `tokenizers` tokenizer.json's word-level model, in id order (ids 0..n-1, each once)."""
    if not path.is_file():
        raise FileNotFoundError(f"missing tokenizer file: {path}")
    try:
        vocab = json.loads(path.read_text())["model"]["vocab"]
        tokens = sorted(vocab, key=vocab.get)
        if [vocab[t] for t in tokens] != list(range(len(tokens))):
            raise ValueError("its ids are not 0, 1, 2, ... each once")
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"invalid tokenizer file {path}: {error}") from None
    return tokens


def vocabulary_file(folder: str | Path) -> Path:
    """The file that holds a saved tokenizer's vocabulary: tokenizer.json where there is one, else lstmgen's own."""
    folder = Path(folder)
    return folder / TOKENIZER_FILE if (folder / TOKENIZER_FILE).is_file() else folder / LSTMGEN_TOKENIZER_FILE
