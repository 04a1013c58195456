"""English for the word tokenizer and the text features: words, sentence ends, casing."""

from __future__ import annotations

import re
from collections import Counter

EOS = "<eos>"  # the word tokenizer's end of a line: a sentence starts after it

# --------------------------------------------------------------------------- words

# torchtext's `basic_english`, line for line (torchtext does not install with torch 2.13).
BASIC_ENGLISH_RULES = [
    (re.compile(r"\'"), " '  "),
    (re.compile(r"\""), ""),
    (re.compile(r"\."), " . "),
    (re.compile(r"<br \/>"), " "),
    (re.compile(r","), " , "),
    (re.compile(r"\("), " ( "),
    (re.compile(r"\)"), " ) "),
    (re.compile(r"\!"), " ! "),
    (re.compile(r"\?"), " ? "),
    (re.compile(r"\;"), " "),
    (re.compile(r"\:"), " "),
    (re.compile(r"\s+"), " "),
]


def basic_english(line: str) -> list[str]:
    """Lower-case, split off . , ( ) ! ? and ', drop " ; : — exactly torchtext's basic_english."""
    line = line.lower()
    for pattern, replacement in BASIC_ENGLISH_RULES:
        line = pattern.sub(replacement, line)
    return line.split()


# The same rules on text that is not lower-cased ("<BR />" is a break too).
_BASIC_ENGLISH_CASED = [(re.compile(p.pattern, re.IGNORECASE), r) for p, r in BASIC_ENGLISH_RULES]


def basic_english_cased(line: str) -> list[str]:
    """basic_english's tokens as the text spells them: the same split, one for one, not lower-cased
    (what a word tokenizer's casing table is counted from)."""
    for pattern, replacement in _BASIC_ENGLISH_CASED:
        line = pattern.sub(replacement, line)
    return line.split()


# How decoded words are joined. A token made only of closing marks (". , ! ? ; : ) ' ” ’", e.g. "”" or "’”")
# joins the word before it; a token ending in an opening mark ("(", "“", "‘", "'") joins the word after it.
# Curly quotes are mostly part of word tokens already ("“i", "harry’s"); straight "'" joins both sides
# ("don ' t" -> "don't"), as basic_english splits every one off.
CLOSING = frozenset(".,!?;:)'”’")
OPENING = frozenset("(“‘'")
# Where a new sentence starts (see Sentences): after these a capital letter follows.
SENTENCE_ENDS = frozenset(".!?")
# "mr ." is "Mr." inside a sentence, not its end.
ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "prof", "jr", "sr", "mt", "messrs", "mme", "mlle"})


def closes(token: str) -> bool:
    """A token made only of closing marks: it joins the word before it."""
    return all(c in CLOSING for c in token)


def _has_alnum(token: str) -> bool:
    return any(c.isalnum() for c in token)


def split_opening(token: str) -> tuple[str, str]:
    """An opening mark glued to a word, and the word: "“i" -> ("“", "i"), "“—" -> ("“—", "")."""
    core = token.lstrip("“‘(—")
    return token[: len(token) - len(core)], core


# --------------------------------------------------------------------------- sentence ends


class Sentences:
    """The one sentence-end rule: follows a stream of basic_english tokens and says which words start a
    sentence (the word detokenizer's capitals) and whether a sentence has just ended (the text features).

    A sentence starts at the beginning, after <eos>, after . ! ? (not after "mr ." nor after an ellipsis
    ". . .", which mostly trails off inside a sentence in the books; ". . . ." is an ellipsis and a period),
    after a closing quote that ends a sentence ('.”', and '—”', an interrupted line whose answer starts a
    new paragraph; not '?”' or '!”', which "said harry" mostly follows), and at an opening quote that
    starts a line of dialogue (after a closing quote, a sentence end or "(": not after "," or a word, where
    the quote mostly continues a sentence: "“well ,” said harry , “we ..."). How well these rules restore
    the books' casing: tests/test_tokenizers.py.
    """

    def __init__(self):
        self.start = True  # the next word starts a sentence
        self.previous: str | None = None
        self.dots = 0  # full stops in a row

    @property
    def ended(self) -> bool:
        """Whether a sentence has just ended: the next word starts one."""
        return self.start

    def step(self, token: str) -> bool:
        """Whether `token` (lower-case) is a word that starts a sentence; then move past it."""
        previous, starts = self.previous, False
        if token == EOS:
            self.start = True
        elif token == ".":
            # "mr ." goes on; ". . ." mostly trails off inside a sentence, ". . . ." (and a period) ends one.
            self.dots = self.dots + 1 if previous == "." else 1
            self.start = self.dots >= 4 if self.dots > 1 else previous not in ABBREVIATIONS
        elif token in SENTENCE_ENDS:
            self.start = True
        elif token in (",", ";", ":"):
            self.start = False
        elif closes(token):
            if token.endswith("”"):  # a double quote closes; after '?”' and '!”' the sentence mostly goes on
                self.start = self.start and previous not in ("!", "?")
        elif token.endswith("”") and not _has_alnum(token):  # "—”": an interrupted line
            self.start = True
        else:
            prefix, core = split_opening(token)
            if prefix[:1] in ("“", "‘") and previous is not None and not _has_alnum(previous) and (
                    previous[-1] in "”’(" or previous in SENTENCE_ENDS):
                self.start = True  # an opening quote after a closing one: a new line of dialogue
            if "—" in prefix or token.startswith("—"):
                self.start = False  # a dash goes on with the sentence: "“— and the locket"
            elif _has_alnum(core):
                starts, self.start = self.start, False
        self.previous = token
        return starts

    def read(self, text: str) -> bool:
        """Move past a piece of text (its basic_english tokens; spaces only: nothing); whether a sentence
        has just ended after it."""
        for token in basic_english(text):
            self.step(token)
        return self.ended


# --------------------------------------------------------------------------- casing


def capitalize_first(word: str) -> str:
    """The word with its first letter upper-cased, if no digit or letter comes before it: "“i" -> "“I"."""
    for i, c in enumerate(word):
        if c.isalpha():
            return word[:i] + c.upper() + word[i + 1:]
        if c.isdigit():
            break
    return word


def _shouted(token: str) -> bool:
    """A word in capitals, as headings and shouts write them: "CHAPTER", "STINKS" (not "I" or "A")."""
    return token.isupper() and sum(c.isalpha() for c in token) > 1


def casing_table(cased_tokens: list[str], words=None) -> dict[str, str]:
    """Each word's most common spelling inside sentences (where no capital is due to a sentence start),
    counted from basic_english_cased tokens of the original text: {"harry": "Harry", "i": "I", ...}.

    A word only ever seen at sentence starts takes its most common spelling there. Capitals next to
    capitals ("CHAPTER ONE", "POTTER STINKS") are headings or shouts and are not counted; a word in
    capitals on its own ("BBC", "OUCH") is. Opening marks are counted apart: "“harry" counts as "harry",
    so the entry of a word serves every token that carries it. Only the words in `words` (all if None)
    not spelled in lower case are kept."""
    inside: dict[str, Counter] = {}
    anywhere: dict[str, Counter] = {}
    sentences = Sentences()
    tokens = list(cased_tokens)
    for i, token in enumerate(tokens):
        starts = sentences.step(token.lower())
        core = split_opening(token)[1]
        if not any(c.isalpha() for c in core):
            continue
        neighbours = tokens[max(i - 1, 0):i] + tokens[i + 1:i + 2]
        if _shouted(core) and any(_shouted(n) for n in neighbours):
            continue
        key = core.lower()
        anywhere.setdefault(key, Counter())[core] += 1
        if not starts:
            inside.setdefault(key, Counter())[core] += 1
    if words is not None:
        keep = {split_opening(w)[1] for w in words}
        anywhere = {k: v for k, v in anywhere.items() if k in keep}
    table = {}
    for key, counts in anywhere.items():
        counts = inside.get(key) or counts
        # Most common first; a tie goes to lower case, then alphabetical, so the table is reproducible.
        best = min(counts, key=lambda form: (-counts[form], form != key, form))
        if best != key:
            table[key] = best
    return dict(sorted(table.items()))
