"""One scoring protocol: how well a model predicts a token stream (evaluate) or a text of one's own (score_text).

Both run windows of ids through `model(ids, state)`, the state carried from a zero state, and sum the
cross-entropy at temperature 1, nothing masked (window_nats). The first token has no prediction.
evaluate cuts the ids into `batch_size` parallel rows (data.batchify); score_text reads the text as one
stream (batch 1, windows of SCORE_WINDOW) and keeps each token's probability; with `from_start=True` it
first feeds the tokenizer's start id (what generation from an empty prompt starts from), so that every
token is predicted. Bits per character divide the total by the characters; loss and perplexity are per
predicted token, or per `per_tokens` unit (GPT-2 tokens for subword models, as their metrics.json figures).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from .data import batchify, bptt_batches
from .tokenizers import token_texts

HELD_OUT_SLICE_TOKENS = 4000  # the first held-out tokens quick figures and cells.json are measured on
SCORE_WINDOW = 256  # score_text's window: evaluate's for one stream (batch 1)


@torch.inference_mode()
def window_nats(model, rows: torch.Tensor, seq_len: int, per_token: bool = False) -> list[torch.Tensor]:
    """The one scoring loop: `rows` (batch, length) through `model(ids, state) -> (logits, state)` in windows of
    `seq_len` steps, the state carried from a zero state, each step predicting the next id. Each window's
    cross-entropy in nats: summed (float32), or with `per_token` one value per predicted token (row-major),
    taken in float64 from the float32 logits (a text's figures are shown to 6 decimals, beyond what float32's
    log-softmax over a large vocabulary keeps).
    `model`: an LSTMLanguageModel or anything with its call (lstmgen.engine.ort.OrtModel)."""
    was_training = model.training
    model.eval()
    state, nats = None, []
    for _, inputs, targets in bptt_batches(rows, seq_len):
        logits, state = model(inputs, state)
        logits = logits.double() if per_token else logits.float()
        nats.append(F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                    reduction="none" if per_token else "sum"))
    model.train(was_training)
    return nats


@dataclass
class Evaluation:
    total_nats: float  # summed cross-entropy over every predicted token
    tokens: int  # tokens predicted
    loss: float  # nats per token (or per `per` unit, see evaluate())
    perplexity: float
    bits_per_char: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(model, ids, batch_size: int = 1, seq_len: int = 256, num_chars: int | None = None,
             per_tokens: int | None = None, device="cpu") -> Evaluation:
    """Stream `ids` through the model in `batch_size` parallel rows of `seq_len` steps.

    `per_tokens` changes the loss denominator (e.g. GPT-2 tokens for a compact subword
    vocabulary); `num_chars` adds bits per character.
    """
    rows = batchify(ids, batch_size).to(device)
    total = 0.0
    for window in window_nats(model, rows, seq_len):
        total += window.item()
    count = rows.size(0) * (rows.size(1) - 1)  # every id but each row's first is predicted
    loss = total / (per_tokens or count)
    bpc = total / num_chars / math.log(2) if num_chars else None
    return Evaluation(total, count, loss, math.exp(min(loss, 50)), bpc)


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


def score_text(model, tokenizer, text: str, metrics: dict | None = None, from_start: bool = False) -> Score:
    """How well `model` predicts `text`: per-token probabilities, total loss, bits per character, perplexity,
    and (with the model's metrics.json) a sentence comparing them with the held-out figures (see the module's
    docstring for the protocol)."""
    encoding = tokenizer.encode(text)
    ids = list(encoding.ids)
    inputs = ([tokenizer.start_id] + ids) if from_start else ids
    nats = window_nats(model, torch.tensor([inputs], dtype=torch.long), SCORE_WINDOW, per_token=True)
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
        from .records import find

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
