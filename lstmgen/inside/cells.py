"""The best cells: each text feature's most correlated cells, stored as cells.json beside the weights.

For each feature (lstmgen.inside.features), the Pearson correlation of every cell's c and h, every layer,
with the feature over a text (by default the first HELD_OUT_SLICE_TOKENS tokens of the model's held-out
text), ranked by |r|, the best TOP kept (rank_cells). A correlation over a short text, or with a feature that
hardly changes in it, means little (a cell that drifts "counts characters since the line began" over 100
characters without a line break): a text under MIN_TOKENS tokens ranks no cells, and a feature that starts over
(a new line, a quote closed) fewer than MIN_RESTARTS times in it is not ranked. **Layers and cells are numbered from 1 wherever
shown** (rows, sentences, cells.json): the row {"layer": 2, "cell": 417} is `cell_states(...)["c"][1, :, 416]`.
An int8 copy's correlations differ from the float model's by at most INT8_R_TOLERANCE, so the best cells are
the same cells (figures: bench/cells.md).

cells.json records the weights' SHA-256, so a file left from other weights is ignored. load_cells reads it,
else measures at start on STARTUP_TOKENS tokens; write_cells_json stores it; `python -m lstmgen cells` prints
the table.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import numpy as np

from ..core.evaluate import HELD_OUT_SLICE_TOKENS
from ..core.files import WEIGHTS_FILE, read_json, write_json_atomic
from .features import FEATURE_BY_NAME, features_for, token_features
from .states import cell_states, sampled_states

CELLS_FILE = "cells.json"
STARTUP_TOKENS = 2000  # where cells.json is missing, load_cells measures on this many
TOP = 5  # best cells kept per feature
INT8_R_TOLERANCE = 0.01  # largest |r_int8 - r_float| of a cell's correlation with a feature
CELLS_VERSION = 1
MIN_TOKENS = 2000  # the shortest text whose correlations are shown
MIN_RESTARTS = 3  # how often a feature must fall back (a line break, a quote closed, a word ended) to be ranked


def correlations(values: dict[str, np.ndarray], states: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pearson r of every cell with every feature: {feature: r of shape (2, layers, hidden)} (c first, then h);
    a cell that does not vary gets r = 0. Constant features are left out."""
    stacked = np.stack([states["c"], states["h"]]).astype(np.float64)  # (2, L, T, H)
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


def restarts(values) -> int:
    """How often a feature falls back along a text: a count starting over, a 0/1 feature switching off."""
    values = np.asarray(values)
    return int((values[1:] < values[:-1]).sum())


def rank_cells(model, tokenizer, ids, top: int = TOP, states=None) -> list[dict]:
    """The `top` cells (c or h, any layer) most correlated with each feature of the tokenizer's kind over `ids`,
    best |r| first: rows {feature, description, layer, cell, state ('c' | 'h'), r, sentence}, layer and cell
    counted from 1. Features that do not vary over `ids` (see `constant_features`), or start over fewer than
    MIN_RESTARTS times there, have no rows."""
    values = {name: v for name, v in token_features(tokenizer, ids).items() if restarts(v) >= MIN_RESTARTS}
    states = cell_states(model, ids) if states is None else states
    rows = []
    for name, r in correlations(values, states).items():
        flat = np.abs(r).reshape(-1)
        for index in np.argsort(-flat, kind="stable")[:top]:
            kind, layer, cell = np.unravel_index(index, r.shape)
            row = {"feature": name, "description": FEATURE_BY_NAME[name].description, "layer": int(layer) + 1,
                   "cell": int(cell) + 1, "state": "ch"[kind], "r": round(float(r[kind, layer, cell]), 4)}
            row["sentence"] = sentence(row)
            rows.append(row)
    return rows


def constant_features(tokenizer, ids) -> list[str]:
    return [name for name, v in token_features(tokenizer, ids).items() if np.ptp(v) == 0]


def weights_digest(folder) -> str | None:
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compute_cells(model, tokenizer, ids, source: str, top: int = TOP, states=None, min_tokens: int = MIN_TOKENS) -> dict:
    """cells.json's content for `ids` (described by `source`, e.g. "the first 4000 tokens of the model's
    held-out text"); `states`: the cell states of `ids` where already computed. Fewer than `min_tokens` ids rank
    no cells (`tokens` says how many there were)."""
    started = time.perf_counter()
    ids = list(ids)
    rows = rank_cells(model, tokenizer, ids, top, states) if len(ids) >= min_tokens else []
    return {"version": CELLS_VERSION, "numbering": "layers and cells counted from 1", "kind": tokenizer.kind,
            "source": source, "tokens": len(ids), "top": top,
            "features": [{"name": f.name, "description": f.description} for f in features_for(tokenizer.kind)],
            "constant": constant_features(tokenizer, ids), "rows": rows,
            "seconds": round(time.perf_counter() - started, 2)}


def write_cells_json(folder, model, tokenizer, ids, source: str = "held-out text", top: int = TOP) -> Path:
    """Compute the best cells over `ids` and store them as `folder/cells.json` (beside the weights, whose
    digest it records so a stale file is not believed); lstmgen.training.folder writes it after the weights."""
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
    from ..core.english import basic_english
    from ..core.records import prepare

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


def load_cells(folder, model, tokenizer, record=None, data=None, max_tokens: int = STARTUP_TOKENS,
               min_tokens: int = MIN_TOKENS) -> dict:
    """The model's best cells (cells.json's content): its folder's cells.json where it is there and matches the
    weights; else measured now, on `max_tokens` tokens (a few seconds at most), of the held-out text where
    `record`'s corpus is in local files at hand, else of text the model samples itself (`source` says which);
    fewer than `min_tokens` rank no cells. Nothing is written: write_cells_json does that."""
    cells = read_cells_json(folder) if folder is not None else None
    if cells is not None:
        return cells
    ids = held_out_ids(record, tokenizer, data, max_tokens, check=False) if record is not None else None
    if ids:
        return compute_cells(model, tokenizer, ids, held_out_source(len(ids)), min_tokens=min_tokens)
    if not hasattr(model, "lstm"):
        raise TypeError("cells are measured on the float torch model (LSTMLanguageModel)")
    sampled = sampled_states(model, tokenizer, max_tokens)
    return compute_cells(model, tokenizer, sampled["ids"], f"{max_tokens} tokens the model sampled itself "
                         "(temperature 1, seed 0)", states=sampled, min_tokens=min_tokens)


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
