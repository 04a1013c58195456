"""What the LSTM's cells track, and how well a model predicts a text of one's own.

Text features, one table (FEATURES) for the library, the command line and cells.json. Every feature is a
number per token: **token i's value is the state of the text after token i is read** (the state the model's
cell has when it predicts token i + 1). The text of a token is what it adds to the decoded text
(`tokenizer.detokenizer()`: a word token adds its space, a subword token that ends inside a UTF-8
character adds nothing yet and keeps the state of the token before).

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
- ``sentence_end``: 1 where the token just read ended a sentence (its text, less trailing spaces and closing
  quotes or brackets, ends with . ! or ?), i.e. the next token is the first of a sentence. A token of spaces
  only (a line break) keeps the state of the token before.

A feature that does not vary over the text (Tiny Shakespeare has no quotes or brackets) has no correlation:
it is listed under "constant" instead of ranked.

Cell states (`states`): the per-layer c and h after each token, by stepping the model one token at a time
(torch.lstm_cell, layer by layer, at inference). Best cells (`cell_features`): for each feature, the Pearson
correlation of every cell's c and h, every layer, with the feature over a text (by default the first
HELD_OUT_SLICE_TOKENS tokens of the model's held-out text), ranked by |r|, the best TOP kept.
**Layers and cells are numbered from 1 wherever shown** (rows, sentences, cells.json): the row
{"layer": 2, "cell": 417} is `states(...)["c"][1, :, 416]`.

Scoring (`score`): the model reads the text as lstmgen.core.evaluate reads one stream (batch 1, windows of 256
tokens, the state carried from a zero state): each token from the second on gets its probability given the
tokens before it, at temperature 1, nothing masked. The first token has no prediction (evaluate does the
same), unless `from_start=True`, which first feeds the tokenizer's start id (what generation from an empty
prompt starts from) so that every token is predicted. Bits per character divide the total by the characters of
the text given; loss and perplexity are per predicted token (per GPT-2 token for subword models, as their
metrics.json figures are).

int8: `states` and `score` also take lstmgen.engine.ort.OrtModel (its engine's `step` returns each step's h
and c; its `forward` gives teacher-forced logits). Its states follow the float model's within
INT8_STATE_TOLERANCE, relative to 1 + |float value|: |c_int8 - c| <= 0.15 (1 + |c|), and the same for h (whose
values lie in (-1, 1)) - c grows to hundreds in some cells, where int8 drifts by a unit or two. Their
correlations with the features differ by at most INT8_R_TOLERANCE (0.01), so the best cells are the same cells.
Measured on the first 1000 held-out tokens of the shipped models (largest: 0.11 for c and 0.08 for h of the
char model; r within 0.007); tests/test_cells.py checks the state tolerance on a small model.

Stored: cells.json beside the weights (write_cells_json; it records the weights' SHA-256, so a file left from
other weights is ignored). load_cells reads it, else measures at start on STARTUP_TOKENS tokens. The table:

    python -m lstmgen cells --model char|subword|word [--no-hub] [--all] [--write] [--data DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..core.evaluate import HELD_OUT_SLICE_TOKENS
from ..core.files import WEIGHTS_FILE, read_json, write_json_atomic

CELLS_FILE = "cells.json"
STARTUP_TOKENS = 2000  # where cells.json is missing, load_cells measures on this many: 1-4 s on a busy core
TOP = 5  # best cells kept per feature
SCORE_WINDOW = 256  # lstmgen.core.evaluate's window for one stream (batch 1)
INT8_STATE_TOLERANCE = 0.15  # largest |int8 - float| / (1 + |float|) of a c or h value (see above)
INT8_R_TOLERANCE = 0.01  # largest |r_int8 - r_float| of a cell's correlation with a feature (see above)
CELLS_VERSION = 1

OPEN_BRACKETS, CLOSE_BRACKETS = "([{", ")]}"
CLOSING_MARKS = "\"”’')]}"
SPEAKER_LINE = re.compile(r"[A-Z][A-Z ]*:")


# --------------------------------------------------------------------------- the features


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
    position, ended = 0, False
    pos, end = np.zeros(len(texts), np.float32), np.zeros(len(texts), np.float32)
    for i, text in enumerate(texts):
        core = text.strip().rstrip(CLOSING_MARKS).rstrip()
        if core:
            ended = core[-1] in ".!?"
            position = 0 if ended else position + 1
        elif not ended:  # spaces only: a token of the sentence, or the gap after its end
            position += 1
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


def token_texts(tokenizer, ids) -> list[str]:
    """The text each token adds to the decoded text (lstmgen.core.tokenizers. detokenizer)."""
    detokenizer = tokenizer.detokenizer()
    texts = [detokenizer(int(i)) for i in ids]
    if texts:
        texts[-1] += detokenizer.flush()
    return texts


def text_features(texts: list[str], kind: str) -> dict[str, np.ndarray]:
    """The features of tokenizer `kind`, per token, for tokens adding the texts `texts`."""
    return {f.name: f.compute(texts) for f in features_for(kind)}


def features(tokenizer, ids) -> dict[str, np.ndarray]:
    """The features of `ids` for the tokenizer's kind: {name: values (T,)}."""
    return text_features(token_texts(tokenizer, ids), tokenizer.kind)


# --------------------------------------------------------------------------- cell states


@torch.inference_mode()
def states(model, ids, state=None) -> dict[str, np.ndarray]:
    """c and h of every layer after each token: {"c": (layers, T, hidden), "h": (layers, T, hidden)}, float32.

    `model` is an LSTMLanguageModel (stepped with torch.lstm_cell, layer by layer, as at inference) or an
    OrtModel (its stream's step returns the state; int8 weights follow the float ones within
    INT8_STATE_TOLERANCE). `state`: (h, c) of shape (layers, 1, hidden) to start from (default zeros)."""
    ids = [int(i) for i in torch.as_tensor(ids).reshape(-1).tolist()]
    layers, hidden, steps = model.num_layers, model.hidden_size, len(ids)
    c_all = np.zeros((layers, steps, hidden), np.float32)
    h_all = np.zeros((layers, steps, hidden), np.float32)
    if not hasattr(model, "lstm"):  # ONNX Runtime
        engine, current = model.new_engine(), state  # an OrtModel's own lstmgen.engine.ort.OrtStep
        for t, token in enumerate(ids):
            _, current = engine.step(token, current)
            h_all[:, t] = current[0].numpy().reshape(layers, hidden)
            c_all[:, t] = current[1].numpy().reshape(layers, hidden)
        return {"c": c_all, "h": h_all}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batch-1 steps gain nothing from more threads; on a busy CPU they lose ~10x
    try:
        return _torch_states(model, ids, state, c_all, h_all)
    finally:
        torch.set_num_threads(threads)


def _torch_states(model, ids, state, c_all, h_all, sample=None) -> dict[str, np.ndarray]:
    """Step `model` through `ids` with torch.lstm_cell, writing each step's states into c_all and h_all. With
    `sample` = (start id, torch.Generator), the ids are drawn instead: each from the model's distribution
    after the one before (temperature 1), starting after the start id; they are returned as "ids"."""
    layers, hidden, steps = model.num_layers, model.hidden_size, c_all.shape[1]
    was_training = model.training
    model.eval()
    lstm = model.lstm
    weights = [[getattr(lstm, f"{k}_l{i}").float() for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
               for i in range(layers)]
    if state is None:
        h = [torch.zeros(1, hidden) for _ in range(layers)]
        c = [torch.zeros(1, hidden) for _ in range(layers)]
    else:
        h = [state[0][i].reshape(1, hidden).float() for i in range(layers)]
        c = [state[1][i].reshape(1, hidden).float() for i in range(layers)]

    def read(x):
        for i in range(layers):
            h[i], c[i] = torch.lstm_cell(x, (h[i], c[i]), *weights[i])
            x = h[i]

    if sample is not None:
        token, generator = sample
        ids = []
        read(model.embedding(torch.tensor([token])).float())
    x_all = model.embedding(torch.tensor([ids], dtype=torch.long))[0].float() if steps and sample is None else None
    for t in range(steps):
        if sample is None:
            x = x_all[t : t + 1]
        else:
            probabilities = F.softmax(model.decoder(h[-1])[0].float(), -1)
            token = int(torch.multinomial(probabilities, 1, generator=generator))
            ids.append(token)
            x = model.embedding(torch.tensor([token])).float()
        read(x)
        for i in range(layers):
            h_all[i, t] = h[i][0].numpy()
            c_all[i, t] = c[i][0].numpy()
    model.train(was_training)
    out = {"c": c_all, "h": h_all}
    if sample is not None:
        out["ids"] = ids
    return out


# --------------------------------------------------------------------------- best cells


def correlations(values: dict[str, np.ndarray], cell_states: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pearson r of every cell with every feature: {feature: r of shape (2, layers, hidden)} (c first, then h);
    a cell that does not vary gets r = 0. Constant features are left out."""
    stacked = np.stack([cell_states["c"], cell_states["h"]]).astype(np.float64)  # (2, L, T, H)
    kinds, layers, steps, hidden = stacked.shape
    cells = stacked.transpose(0, 1, 3, 2).reshape(-1, steps)
    cells = cells - cells.mean(axis=1, keepdims=True)
    norms = np.sqrt((cells ** 2).sum(axis=1))
    out = {}
    for name, f in values.items():
        f = np.asarray(f, np.float64)
        f = f - f.mean()
        f_norm = math.sqrt(float((f ** 2).sum()))
        if f_norm == 0:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            r = cells @ f / (norms * f_norm)
        r[~np.isfinite(r) | (norms < 1e-9)] = 0.0
        out[name] = r.reshape(kinds, layers, hidden)
    return out


def sentence(row: dict) -> str:
    """One best cell in words: "cell 417 of layer 2 counts characters since the line began (r = 0.83)"; for an
    output h, "the output of cell 70 of layer 2 is high inside a word (r = 0.91)"."""
    feature = FEATURE_BY_NAME.get(row["feature"])
    if feature is None:
        phrase = f"follows {row['description']}"
    else:
        phrase = feature.phrase if row["r"] >= 0 else feature.negative
    which = f"cell {row['cell']} of layer {row['layer']}"
    if row["state"] == "h":
        which = "the output of " + which
    return f"{which} {phrase} (r = {row['r']:.2f})"


def cell_features(model, tokenizer, ids, top: int = TOP, cell_states=None) -> list[dict]:
    """The `top` cells (c or h, any layer) most correlated with each feature of the tokenizer's kind over `ids`,
    best |r| first: rows {feature, description, layer, cell, state ('c' | 'h'), r, sentence}, layer and cell
    counted from 1. Features that do not vary over `ids` have no rows (see `constant_features`)."""
    values = features(tokenizer, ids)
    cell_states = states(model, ids) if cell_states is None else cell_states
    rows = []
    for name, r in correlations(values, cell_states).items():
        flat = np.abs(r).reshape(-1)
        for index in np.argsort(-flat, kind="stable")[:top]:
            kind, layer, cell = np.unravel_index(index, r.shape)
            row = {"feature": name, "description": FEATURE_BY_NAME[name].description, "layer": int(layer) + 1,
                   "cell": int(cell) + 1, "state": "ch"[kind], "r": round(float(r[kind, layer, cell]), 4)}
            row["sentence"] = sentence(row)
            rows.append(row)
    return rows


def constant_features(tokenizer, ids) -> list[str]:
    return [name for name, v in features(tokenizer, ids).items() if np.ptp(v) == 0]


# --------------------------------------------------------------------------- cells.json


def weights_digest(folder) -> str | None:
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compute_cells(model, tokenizer, ids, source: str, top: int = TOP, cell_states=None) -> dict:
    """cells.json's content for `ids` (described by `source`, e.g. "the first 4000 tokens of the model's
    held-out text"); `cell_states`: the states of `ids` where already computed."""
    started = time.perf_counter()
    ids = list(ids)
    rows = cell_features(model, tokenizer, ids, top, cell_states)
    return {"version": CELLS_VERSION, "numbering": "layers and cells counted from 1", "kind": tokenizer.kind,
            "source": source, "tokens": len(ids), "top": top,
            "features": [{"name": f.name, "description": f.description} for f in features_for(tokenizer.kind)],
            "constant": constant_features(tokenizer, ids), "rows": rows,
            "seconds": round(time.perf_counter() - started, 2)}


def write_cells_json(folder, model, tokenizer, ids, source: str = "held-out text", top: int = TOP) -> Path:
    """Compute the best cells over `ids` and store them as `folder/cells.json` (beside the weights, whose
    digest it records so a stale file is not believed). publish.finalize's build(tmp) can call, after the
    weights are saved: write_cells_json(tmp, stored, tokenizer, data.val_ids[:HELD_OUT_SLICE_TOKENS], held_out_source(...))"""
    cells = compute_cells(model, tokenizer, ids, source, top)
    cells["weights_sha256"] = weights_digest(folder)
    path = Path(folder) / CELLS_FILE
    write_json_atomic(cells, path)
    return path


def read_cells_json(folder, check_weights: bool = True) -> dict | None:
    """cells.json of a model folder, or None when missing, unreadable, of another version or of other weights."""
    cells = read_json(Path(folder) / CELLS_FILE)
    if not isinstance(cells, dict) or cells.get("version") != CELLS_VERSION or not isinstance(cells.get("rows"), list):
        return None
    if check_weights and cells.get("weights_sha256") not in (None, weights_digest(folder)):
        return None
    return cells


def held_out_source(tokens: int) -> str:
    return f"the first {tokens} tokens of the model's held-out text"


def held_out_ids(record, tokenizer, data=None, max_tokens: int = HELD_OUT_SLICE_TOKENS, check: bool = True) -> list[int] | None:
    """The first `max_tokens` ids of the record's held-out (validation) text, as lstmgen.core.records.prepare cuts
    it; None when the corpus is not in local files, not at hand, or (with `check`) does not give this
    tokenizer. `check=False` skips building the tokenizer again (seconds for the word model): it cuts the
    text the same way and encodes only the start of the held-out part with `tokenizer`, the same ids where the
    corpus is the model's."""
    from ..core.data import cut, read_corpus
    from ..core.records import prepare
    from ..core.tokenizers import basic_english

    if not record.corpus.files:  # a Hub dataset, or a visitor's text not kept: never fetched here
        return None
    try:
        text = read_corpus(record.corpus, data)
        if check:
            prepared = prepare(record, text)
            if prepared.tokenizer.state() != tokenizer.state():
                return None
            return prepared.val_ids[:max_tokens]
        if record.corpus.cut_by == "tokens":
            return tokenizer.encode_words(cut(basic_english(text), record.corpus.cuts)[1][:max_tokens]).ids
        held_out = cut(text, record.corpus.cuts)[1]
        # Enough characters for max_tokens tokens (a GPT-2 token is ~4 characters of English), cut far away.
        return tokenizer.encode(held_out[: 16 * max_tokens]).ids[:max_tokens]
    except Exception:  # a corpus missing or unreadable (CorpusError, OSError, ValueError, datasets' own errors)
        return None


@torch.inference_mode()
def sampled_states(model, tokenizer, length: int = HELD_OUT_SLICE_TOKENS, seed: int = 0) -> dict:
    """Text the model writes itself (temperature 1, after the tokenizer's start id, torch's generator seeded with
    `seed`) and its states, in one pass: {"ids": [...], "c": ..., "h": ...} as `states` gives them."""
    layers, hidden = model.num_layers, model.hidden_size
    c_all = np.zeros((layers, length, hidden), np.float32)
    h_all = np.zeros((layers, length, hidden), np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _torch_states(model, None, None, c_all, h_all,
                             sample=(tokenizer.start_id, torch.Generator().manual_seed(seed)))
    finally:
        torch.set_num_threads(threads)


def load_cells(folder, model, tokenizer, record=None, data=None, max_tokens: int = STARTUP_TOKENS) -> dict:
    """The model's best cells (cells.json's content): its folder's cells.json where it is there and matches the
    weights; else measured now, on `max_tokens` tokens (a few seconds at most), of the held-out text where
    `record`'s corpus is in local files at hand, else of text the model samples itself (`source` says which).
    Nothing is written: write_cells_json does that."""
    cells = read_cells_json(folder) if folder is not None else None
    if cells is not None:
        return cells
    ids = held_out_ids(record, tokenizer, data, max_tokens, check=False) if record is not None else None
    if ids:
        return compute_cells(model, tokenizer, ids, held_out_source(len(ids)))
    if not hasattr(model, "lstm"):
        raise TypeError("cells are measured on the float torch model (LSTMLanguageModel)")
    sampled = sampled_states(model, tokenizer, max_tokens)
    return compute_cells(model, tokenizer, sampled["ids"], f"{max_tokens} tokens the model sampled itself "
                         "(temperature 1, seed 0)", cell_states=sampled)


def table(cells: dict, per_feature: int = 1) -> str:
    """The best cells per feature as a text table."""
    lines = [f"# {cells['kind']} model, {cells['source']} ({cells['tokens']} tokens); layers and cells from 1",
             f"{'feature':<18} {'layer':>5} {'cell':>5} {'c/h':>3} {'r':>7}  sentence"]
    shown: dict[str, int] = {}
    for row in cells["rows"]:
        if shown.get(row["feature"], 0) >= per_feature:
            continue
        shown[row["feature"]] = shown.get(row["feature"], 0) + 1
        lines.append(f"{row['feature']:<18} {row['layer']:>5} {row['cell']:>5} {row['state']:>3} {row['r']:>7.3f}  "
                     f"{row.get('sentence') or sentence(row)}")
    for name in cells.get("constant", []):
        lines.append(f"{name:<18} {'-':>5} {'-':>5} {'-':>3} {'-':>7}  never varies in this text")
    return "\n".join(lines)


# --------------------------------------------------------------------------- scoring a text


@dataclass
class Score:
    pieces: list[str]  # each token as the tokenizer shows it (tokenizer.piece)
    texts: list[str]  # the text each token adds
    probabilities: list[float | None]  # p(token | tokens before); None for an unpredicted first token
    total_nats: float  # summed -log p over the predicted tokens
    tokens: int  # tokens predicted
    characters: int  # characters of the text
    loss: float  # nats per predicted token (per GPT-2 token for subword: `per_tokens`)
    perplexity: float
    bits_per_char: float
    per_tokens: int | None = None  # the loss's denominator where it is not `tokens`
    unknown: list[str] = field(default_factory=list)  # what the vocabulary could not hold (dropped, <unk> or spelled)
    comparison: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


# How a comparison sentence names a corpus: (…-like, its held-out part).
CORPUS_WORDS = {"tiny_shakespeare": ("Shakespeare-like", "the plays' held-out part"),
                "harry_potter_books": ("Harry-Potter-like", "the books' held-out part")}


@torch.inference_mode()
def score(model, tokenizer, text: str, metrics: dict | None = None, from_start: bool = False) -> Score:
    """How well `model` predicts `text`: per-token probabilities, total loss, bits per character, perplexity,
    and (with the model's metrics.json) a sentence comparing them with the held-out figures. The protocol is
    lstmgen.core.evaluate's with one stream (batch 1, windows of SCORE_WINDOW): temperature 1, nothing masked, the
    first token unpredicted unless `from_start` feeds the tokenizer's start id first. `model`: an
    LSTMLanguageModel or anything with its `model(ids, state) -> (logits, state)` call (OrtModel)."""
    encoding = tokenizer.encode(text)
    ids = list(encoding.ids)
    inputs = ([tokenizer.start_id] + ids) if from_start else ids
    was_training = model.training
    model.eval()
    stream = torch.tensor([inputs], dtype=torch.long)
    state, nats = None, []
    for position in range(0, max(len(inputs) - 1, 0), SCORE_WINDOW):
        n = min(SCORE_WINDOW, len(inputs) - 1 - position)
        logits, state = model(stream[:, position : position + n], state)
        targets = stream[0, position + 1 : position + 1 + n]
        nats.append(F.cross_entropy(logits[0].float(), targets, reduction="none"))
    model.train(was_training)
    nats = torch.cat(nats).double() if nats else torch.zeros(0, dtype=torch.float64)
    probabilities = [math.exp(-float(x)) for x in nats]
    if not from_start:
        probabilities = ([None] + probabilities) if ids else []
    total, count = float(nats.sum()), len(nats)
    per_tokens = tokenizer.gpt2_token_count(text) if tokenizer.kind == "subword" else None
    loss = total / (per_tokens or count) if count else float("nan")
    result = Score(
        pieces=[tokenizer.piece(i) for i in ids], texts=token_texts(tokenizer, ids), probabilities=probabilities,
        total_nats=total, tokens=count, characters=len(text), loss=loss,
        perplexity=math.exp(min(loss, 50)) if count else float("nan"),
        bits_per_char=total / len(text) / math.log(2) if text else float("nan"),
        per_tokens=per_tokens, unknown=list(encoding.unknown))
    if metrics:
        result.comparison = comparison(result, metrics)
    return result


def comparison(result: Score, metrics: dict) -> str:
    """A sentence setting a score beside the held-out figure of metrics.json (final.val_float): bits per
    character where the model has that figure (char models), else perplexity (per word, or per GPT-2 token)."""
    held = (metrics.get("final") or {}).get("val_float") or {}
    corpus = (metrics.get("record") or {}).get("corpus")
    if corpus is None and metrics.get("preset"):  # metrics.json from before it kept its record
        from ..core.records import find

        record = find(metrics["preset"])
        corpus = record.corpus.name if record is not None else None
    like, part = CORPUS_WORDS.get(corpus, ("like the training text", "its held-out part"))
    if result.tokens == 0:
        return "the text is too short to score: it needs at least two tokens"
    if held.get("bits_per_char") is not None:
        mine, theirs, unit = result.bits_per_char, held["bits_per_char"], "bits per character"
    elif held.get("perplexity") is not None:
        mine, theirs = result.perplexity, held["perplexity"]
        unit = {"word": "perplexity per word", "subword": "perplexity per GPT-2 token"}.get(
            metrics.get("kind"), "perplexity per token")
    else:
        return ""
    if abs(mine - theirs) <= 0.05 * theirs:
        verdict = f"about as {like} as"
    elif mine > theirs:
        verdict = f"less {like} than"
    else:
        verdict = f"more {like} than"
    if unit == "bits per character":
        return f"your text is {mine:.2f} bits per character: {verdict} {part}, {theirs:.2f}"
    return f"your text has a {unit} of {mine:.1f}: {verdict} {part}, {theirs:.1f}"


# --------------------------------------------------------------------------- command line


def main(argv=None) -> int:
    """python -m lstmgen cells --model char|subword|word [--no-hub] [--data DIR] [--all] [--recompute] [--write]"""
    import contextlib

    from ..hub import resolve
    from ..core.records import find

    parser = argparse.ArgumentParser(prog="python -m lstmgen cells",
                                     description="the cells that track text features best, per feature")
    parser.add_argument("--model", required=True, help="preset, Hub repo id or local folder")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    parser.add_argument("--no-hub", action="store_true", help="skip the Hub: local folder or bundled weights")
    parser.add_argument("--data", help="folder holding the preset's corpus (where cells.json must be computed)")
    parser.add_argument("--all", action="store_true", help=f"show the best {TOP} cells per feature, not only the first")
    parser.add_argument("--recompute", action="store_true", help="ignore cells.json and measure now")
    parser.add_argument("--write", action="store_true",
                        help="measure on the held-out text and store cells.json in the model's folder")
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):  # from_pretrained prints to stdout
        loaded = resolve(args.model, revision=args.revision, use_hub=not args.no_hub)
    print(f"# {loaded.source}", file=sys.stderr)
    record = find(loaded.preset or args.model)
    if args.write:
        ids = held_out_ids(record, loaded.tokenizer, args.data) if record is not None else None
        if not ids:
            print("error: --write needs the preset's corpus (--data DIR) giving this model's tokenizer",
                  file=sys.stderr)
            return 2
        path = write_cells_json(loaded.folder, loaded.model, loaded.tokenizer, ids, held_out_source(len(ids)))
        print(f"# wrote {path}", file=sys.stderr)
    folder = None if args.recompute else loaded.folder
    cells = load_cells(folder, loaded.model, loaded.tokenizer, record, args.data, max_tokens=HELD_OUT_SLICE_TOKENS)
    print(table(cells, TOP if args.all else 1))
    return 0
