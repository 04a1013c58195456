"""The text features the cells are compared with: one number per token, from the text the tokens add.

Token i's value is the state of the text after token i is read (the state the model's cell has when it
predicts token i + 1). The text of a token is what it adds to the decoded text (token_texts: a word token
adds its space; a subword token that ends inside a UTF-8 character adds nothing yet and keeps the state of
the token before).

Characters (char tokenizer):
- ``line_position``: characters since the line began (0 right after a line break);
- ``in_quotes``: 1 inside double quotes (``"`` toggles; ``“`` opens, ``”`` closes; a blank line closes all);
- ``in_brackets``: 1 inside ( ), [ ] or { } (a blank line closes all);
- ``speaker_line``: 1 on a speaker's name line, a line of capital letters and spaces ending with ':'
  (``ROMEO:``), its line break included (the whole line counts, from its first character);
- ``next_capital``: 1 where the NEXT character is a capital letter (what the cell helps predict); 0 at the end;
- ``in_word``: 1 where the character is part of a word (a letter, or an apostrophe between two letters).

Words and subwords:
- ``sentence_position``: tokens since the sentence began (0 at the token that ends a sentence);
- ``in_quotes``: as above, from the characters of the tokens (straight or curly double quotes);
- ``sentence_end``: 1 where a sentence has just ended, i.e. the next word starts a sentence, by the word
  detokenizer's rule (lstmgen.core.english.Sentences over each token's words; "Mr." and an ellipsis that
  trails off end none). A token of spaces only (a line break) keeps the state of the token before.

A feature that does not vary over a text has no correlation: it is listed as "constant" instead of ranked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..core.english import Sentences
from ..core.tokenizers import token_texts

OPEN_BRACKETS, CLOSE_BRACKETS = "([{", ")]}"
SPEAKER_LINE = re.compile(r"[A-Z][A-Z ]*:")


def _char_states(text: str) -> dict[str, np.ndarray]:
    """Every character feature of `text`, per character (the state after that character is read)."""
    n = len(text)
    out = {name: np.zeros(n, np.float32) for name in
           ("line_position", "in_quotes", "in_brackets", "speaker_line", "next_capital", "in_word")}
    column, quoted, depth = 0, False, 0
    for j, ch in enumerate(text):
        if ch == "\n":
            column = 0
            if j and text[j - 1] == "\n":  # a blank line closes whatever is open
                quoted, depth = False, 0
        else:
            column += 1
        if ch == '"':
            quoted = not quoted
        elif ch == "“":
            quoted = True
        elif ch == "”":
            quoted = False
        elif ch in OPEN_BRACKETS:
            depth += 1
        elif ch in CLOSE_BRACKETS:
            depth = max(0, depth - 1)
        out["line_position"][j] = column
        out["in_quotes"][j] = quoted
        out["in_brackets"][j] = depth > 0
        out["next_capital"][j] = j + 1 < n and text[j + 1].isupper()
        out["in_word"][j] = ch.isalpha() or (ch == "'" and 0 < j < n - 1 and text[j - 1].isalpha()
                                             and text[j + 1].isalpha())
    start = 0
    for line in text.split("\n"):
        end = start + len(line) + 1  # its line break included
        if SPEAKER_LINE.fullmatch(line):
            out["speaker_line"][start:min(end, n)] = 1
        start = end
    return out


def _sentence_states(texts: list[str]) -> dict[str, np.ndarray]:
    """sentence_end and sentence_position per token, by the word detokenizer's sentence rule."""
    sentences, position = Sentences(), 0
    pos, end = np.zeros(len(texts), np.float32), np.zeros(len(texts), np.float32)
    for i, text in enumerate(texts):
        ended = sentences.read(text)
        position = 0 if ended else position + 1
        pos[i], end[i] = position, ended
    return {"sentence_position": pos, "sentence_end": end}


def _per_token(texts: list[str], per_char: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each token takes the state after its last character (a token that adds no text, the one before)."""
    last = np.cumsum([len(t) for t in texts]) - 1
    out = {}
    for name, values in per_char.items():
        padded = np.concatenate([np.zeros(1, np.float32), values])  # before any character: all 0
        out[name] = padded[last + 1]
    return out


@dataclass(frozen=True)
class Feature:
    name: str
    kinds: tuple[str, ...]  # tokenizer kinds it is measured for
    description: str  # for tables
    phrase: str  # "cell 417 of layer 2 <phrase> (r = 0.83)"
    negative: str  # the same where r < 0: "cell 12 of layer 1 <negative> (r = -0.71)"
    compute: Callable[[list[str]], np.ndarray] = field(repr=False)


def _chars(name):
    return lambda texts: _per_token(texts, {name: _char_states("".join(texts))[name]})[name]


def _sentences(name):
    return lambda texts: _sentence_states(texts)[name]


# The one table: what is measured, for which tokenizers, and how a best cell is said in words.
FEATURES: tuple[Feature, ...] = (
    Feature("line_position", ("char",), "characters since the line began", "counts characters since the line began",
            "falls as the characters since the line began grow", _chars("line_position")),
    Feature("in_quotes", ("char", "word", "subword"), "inside quotes", "is high inside quotes",
            "is low inside quotes", _chars("in_quotes")),
    Feature("in_brackets", ("char",), "inside brackets", "is high inside brackets", "is low inside brackets",
            _chars("in_brackets")),
    Feature("speaker_line", ("char",), "on a speaker's name line (ROMEO:)", "is high on a speaker's name line",
            "is low on a speaker's name line", _chars("speaker_line")),
    Feature("next_capital", ("char",), "the next character is a capital", "is high where a capital letter comes next",
            "is low where a capital letter comes next", _chars("next_capital")),
    Feature("in_word", ("char",), "inside a word", "is high inside a word", "is low inside a word",
            _chars("in_word")),
    Feature("sentence_position", ("word", "subword"), "tokens since the sentence began",
            "counts tokens since the sentence began", "falls as the tokens since the sentence began grow",
            _sentences("sentence_position")),
    Feature("sentence_end", ("word", "subword"), "the token just read ended a sentence",
            "is high when a sentence has just ended", "is low when a sentence has just ended",
            _sentences("sentence_end")),
)
FEATURE_BY_NAME = {f.name: f for f in FEATURES}


def features_for(kind: str) -> list[Feature]:
    return [f for f in FEATURES if kind in f.kinds]


def text_features(texts: list[str], kind: str) -> dict[str, np.ndarray]:
    """The features of tokenizer `kind`, per token, for tokens adding the texts `texts`."""
    return {f.name: f.compute(texts) for f in features_for(kind)}


def token_features(tokenizer, ids) -> dict[str, np.ndarray]:
    """The features of `ids` for the tokenizer's kind: {name: values (T,)}."""
    return text_features(token_texts(tokenizer, ids), tokenizer.kind)
