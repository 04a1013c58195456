"""What a model *is*: one record each, read by the app, the service, the trainer, the card and the tests.

Adding a model is one record here plus its weights folder. The shipped splits are the comparison contract
with the projects we measure against, so they are fixed:
- Shakespeare: the first 90% of tinyshakespeare.txt's characters train, the last 10% validate;
- Harry Potter: books 1-7 in order, basic_english tokens, 70% / 15% / 15% train / val / test,
  vocabulary = tokens seen at least 3 times in the whole list, plus <unk> and <eos>.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import TrainConfig
from .data import Corpus, cut
from . import files
from .files import GPT2_RANKS_FILE, PRETRAINED_DIR, WEIGHTS_FILE
from .model import ModelConfig
from .operator_settings import operator_settings
from .english import basic_english, basic_english_cased
from .tokenizers import CharTokenizer, SubwordTokenizer, Tokenizer, WordTokenizer

# GPT-2's BPE ranks (byte-identical to OpenAI's r50k/gpt2 file), shipped with the subword model:
# tiktoken.get_encoding("gpt2") would download them, and cannot offline.
GPT2_RANKS = PRETRAINED_DIR / "subword-shakespeare" / GPT2_RANKS_FILE


@dataclass(frozen=True)
class TokenizerSpec:
    kind: str  # char | word | subword
    min_freq: int = 1  # word/subword: a token needs this many uses to get its own id
    max_size: int = 0  # word: keep at most this many words, the most frequent (0: no cap)


@dataclass(frozen=True)
class ModelRecord:
    name: str  # short name: the tab's id and the API's `model` value
    long_name: str  # the preset, the bundled folder and the Hub repo's name
    title: str  # the tab's title
    corpus: Corpus
    tokenizer: TokenizerSpec
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    examples: tuple[str, ...] = ("",)  # prompts offered in the UI; the first fills the prompt box
    card_prompt: str = ""  # the prompt in the model card's usage example
    length: int = 200  # the UI's default number of new tokens
    # Vocabulary ids the training split never uses are predicted like its ids used at most this often (0: off).
    smooth_unseen_max_count: int = 0
    folder: Path | None = None  # weights in a folder of their own (else the bundled folder, or the Hub)
    repo: str | None = None  # Hub repo "owner/name", or "owner/name@revision" (default: LSTMGEN_HUB_OWNER/long_name)
    # The Hub revision served (a commit, or a tag): a shipped model pins the one holding its bundled weights.
    revision: str | None = None
    license: str = "other"  # the model card's license: the publisher's choice ("other": none chosen)

    @property
    def hub_ref(self) -> tuple[str, str | None]:
        """(repo id, revision) the weights are read from: LSTMGEN_REPO_<NAME>, else `repo`, else the owner's repo
        at the pinned `revision`. A repo named without "@revision" is read at its main branch."""
        settings = operator_settings()
        named = settings.repo(self.long_name) or self.repo
        if named:
            return split_revision(named)
        return f"{settings.hub_owner}/{self.long_name}", self.revision

    @property
    def repo_id(self) -> str:
        return self.hub_ref[0]

    @property
    def bundled_folder(self) -> Path:
        return files.PRETRAINED_DIR / self.long_name  # read at call time, so tests can point it elsewhere

    def to_metrics(self) -> dict:
        """What a model folder's metrics.json keeps of its record, so the app can serve it as it was meant, and
        where its text came from (a Hub dataset with the commit read)."""
        corpus = self.corpus
        kept = {"name": self.name, "long_name": self.long_name, "title": self.title, "examples": list(self.examples),
                "card_prompt": self.card_prompt, "length": self.length, "corpus": corpus.name, "note": corpus.note,
                "license": self.license}
        if corpus.dataset_revision:  # read from the Hub: which dataset, and at which commit
            kept["dataset"] = {"id": corpus.dataset, "revision": corpus.dataset_revision,
                               "split": corpus.dataset_split, "text_column": corpus.text_column}
        if corpus.hub_dataset:
            kept["hub_dataset"] = corpus.hub_dataset
        return kept


def split_revision(repo: str) -> tuple[str, str | None]:
    """"owner/name@revision" -> ("owner/name", "revision"); "owner/name" -> ("owner/name", None)."""
    repo_id, _, revision = repo.strip().partition("@")
    return repo_id, revision or None


def weights_revision(folder: str | Path) -> str:
    """The Hub tag of a model folder's weights, named after their SHA-256: what a shipped record pins, and what
    lstmgen.hub.push tags a shipped model's upload with."""
    return "weights-" + hashlib.sha256((Path(folder) / WEIGHTS_FILE).read_bytes()).hexdigest()[:12]


# The same text as the Hub's karpathy/tiny_shakespeare, whose train split is our first 90%.
SHAKESPEARE = Corpus(
    name="tiny_shakespeare", files=("tinyshakespeare.txt",), cuts=(0.9,), cut_by="chars",
    note="Tiny Shakespeare (1.1 M characters), first 90% for training, last 10% for validation",
    hub_dataset="karpathy/tiny_shakespeare")

# Shakespeare's figures are measured on one stream through the validation text, Harry Potter's on
# 128 streams of 50 steps (the reference's protocol): `eval_batch_size` and `eval_seq_len`.
# Each `revision` is weights_revision() of the bundled folder: the Hub serves the commit tagged with these weights.
RECORDS = {r.name: r for r in [
    ModelRecord(
        name="char", long_name="char-shakespeare", title="Shakespeare · letters",
        corpus=SHAKESPEARE, tokenizer=TokenizerSpec("char"),
        model=ModelConfig(embed_size=128, hidden_size=512, num_layers=3, dropout=0.5, input_dropout=0.1,
                          weight_drop=0.5),
        # A fixed-length run: 20 epochs (~2 h on two CPU cores) down a cosine, averaged over the last six.
        train=TrainConfig(epochs=20, batch_size=32, seq_len=64, lr=3e-3, weight_decay=0.05, clip=1.0,
                          lr_schedule="cosine", warmup_steps=200, early_stop=30, eval_batch_size=1,
                          average_after=15, average_decay=0.998),
        examples=("ROMEO:", "JULIET:\nO Romeo, Romeo! wherefore art thou", "KING RICHARD III:\nNow is the winter of",
                  "First Citizen:\n"),
        card_prompt="ROMEO:", length=300, revision="weights-2653cd12d123", license="mit"),
    ModelRecord(
        name="subword", long_name="subword-shakespeare", title="Shakespeare · word pieces",
        corpus=replace(SHAKESPEARE, note="Tiny Shakespeare as GPT-2 BPE tokens (compact vocabulary), 90% / 10% split"),
        # Tokens used once are spelled in bytes, so unseen words are spelled, not guessed.
        tokenizer=TokenizerSpec("subword", min_freq=2),
        model=ModelConfig(embed_size=384, hidden_size=384, num_layers=2, dropout=0.4, embed_dropout=0.1,
                          input_dropout=0.3, weight_drop=0.3, tie_weights=True),
        train=TrainConfig(epochs=60, batch_size=32, seq_len=64, lr=2e-3, weight_decay=0.1, clip=0.5,
                          lr_patience=0, early_stop=3, eval_batch_size=1, average_after=6, average_decay=0.998),
        examples=("ROMEO:\nBut soft, what light", "HAMLET:\nTo be, or not to be", "DUKE VINCENTIO:\n",
                  "LADY MACBETH:\n"),
        card_prompt="ROMEO:", length=120, revision="weights-3613cc39f9c9", license="mit"),
    ModelRecord(
        name="word", long_name="word-harrypotter", title="Harry Potter · words",
        corpus=Corpus(
            name="harry_potter_books", files=tuple(f"harrypotter/{i}.txt" for i in range(1, 8)),
            cuts=(0.7, 0.85), cut_by="tokens",
            note="the seven Harry Potter books, basic_english words, 70% / 15% / 15% split",
            needs="The books are copyrighted and never ship: put your own copies of the seven books, as plain "
                  "UTF-8 text, in DIR/harrypotter/1.txt ... 7.txt."),
        tokenizer=TokenizerSpec("word", min_freq=3),
        model=ModelConfig(embed_size=400, hidden_size=400, num_layers=2, dropout=0.4, embed_dropout=0.1,
                          input_dropout=0.3, weight_drop=0.3, tie_weights=True),
        train=TrainConfig(epochs=40, batch_size=64, seq_len=64, lr=2e-3, weight_decay=0.1, clip=0.5,
                          lr_patience=0, early_stop=3, eval_batch_size=128, eval_seq_len=50, average_after=7,
                          average_decay=0.995),
        examples=("Harry looked at", "Hermione said that", "The castle was dark and", "Dumbledore smiled"),
        card_prompt="Harry looked at", length=80, smooth_unseen_max_count=10, revision="weights-1bc803c6098d",
        license="mit"),
]}
# The same records under their long names (the presets of train_space.py and the Hub repos).
PRESETS = {r.long_name: r for r in RECORDS.values()}


def find(name: str) -> ModelRecord | None:
    """A shipped record by its short or long name."""
    return RECORDS.get(name) or PRESETS.get(name)


# --------------------------------------------------------------------------- the recipe for new models

# A new model on one's own text, from the app's Train your own tab (studio.visitor_record) and from
# `train_space.py --tokenizer ...` (where any flag given overrides it): one recipe, tuned for short budgets
# on one CPU thread (bench/train_budget.py). "small" is a wide single layer; with a high peak rate and
# short windows (32 streams × 32 steps) it learns fastest when the budget is short, where a 1×512 model
# or a second layer runs 3-4 times fewer steps and ends worse. The rate follows a cosine fitted to the
# time budget, so a run always has one (60 s unless given); the best model is kept, validated also where
# the budget ends mid-epoch.
NEW_MODEL_SIZES = {
    "tiny": ModelConfig(embed_size=32, hidden_size=128, num_layers=1, dropout=0.0),
    "small": ModelConfig(embed_size=64, hidden_size=256, num_layers=1, dropout=0.0),
}
NEW_MODEL_SIZE = "small"
NEW_MODEL_TRAINING = TrainConfig(
    epochs=10_000, batch_size=32, seq_len=32, lr=1e-2, weight_decay=0.01, clip=1.0, lr_schedule="budget",
    warmup_steps=100, min_lr=5e-4, early_stop=10_000, eval_batch_size=16, threads=1, time_budget_s=60.0,
    validate_at_stop=True, curve_every_s=3.0, curve_val_tokens=4_000, seed=0)
NEW_MODEL_HELD_OUT = 0.1  # the last 10% of the text validates
NEW_MODEL_MAX_WORDS = 20_000  # word vocabularies of large texts are capped, so the model stays small


def new_model(name: str, tokenizer: str, corpus: Corpus, size: str = NEW_MODEL_SIZE, seconds: float | None = None,
              min_freq: int = 1, title: str | None = None, repo: str | None = None,
              license: str = "other") -> ModelRecord:
    """The record of a new model trained with the recipe above: `seconds` is its time budget (default the
    recipe's), `min_freq` the uses a word/subword token needs for an id of its own."""
    train = NEW_MODEL_TRAINING if seconds is None else replace(NEW_MODEL_TRAINING, time_budget_s=float(seconds))
    spec = TokenizerSpec(tokenizer, min_freq=min_freq, max_size=NEW_MODEL_MAX_WORDS if tokenizer == "word" else 0)
    return ModelRecord(name=name, long_name=name, title=title or name, corpus=corpus, tokenizer=spec,
                       model=NEW_MODEL_SIZES[size], train=train, examples=("",), length=200, repo=repo, license=license)


def new_model_batch_size(train: TrainConfig, train_tokens: int) -> int:
    """Fewer streams for a short text, so that each stream still gives at least four windows."""
    return min(train.batch_size, max(1, train_tokens // (4 * train.seq_len)))


def record_from_metrics(metrics: dict, fallback_name: str, tokenizer_kind: str) -> ModelRecord:
    """The record of a model folder that is not a preset: what its metrics.json kept (ModelRecord.to_metrics),
    else plain defaults named after the folder."""
    kept = metrics.get("record") or {}
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", kept.get("name") or fallback_name).strip("-") or "model"
    dataset = kept.get("dataset") or {}
    corpus = Corpus(name=kept.get("corpus") or "own text", note=kept.get("note") or "a model folder given at start",
                    dataset=dataset.get("id"), dataset_revision=dataset.get("revision"),
                    dataset_split=dataset.get("split") or "train", text_column=dataset.get("text_column") or "text",
                    hub_dataset=kept.get("hub_dataset"))
    return ModelRecord(
        name=name, long_name=kept.get("long_name") or name, title=kept.get("title") or name, corpus=corpus,
        tokenizer=TokenizerSpec(tokenizer_kind),
        examples=tuple(kept.get("examples") or ("",)), card_prompt=kept.get("card_prompt") or "",
        length=int(kept.get("length") or 200), license=kept.get("license") or "other")


# --------------------------------------------------------------------------- tokenize and split


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train_ids: list[int]
    val_ids: list[int]
    test_ids: list[int] | None
    # How figures are normalised: loss per `val_per_tokens` (GPT-2 tokens for subword), bits per `val_chars`.
    val_per_tokens: int | None = None
    val_chars: int | None = None
    val_unknown: int = 0


def build_tokenizer(spec: TokenizerSpec, text: str | None = None, tokens: list[str] | None = None,
                    cased_tokens: list[str] | None = None) -> Tokenizer:
    """`cased_tokens` (word): basic_english_cased tokens of the training text, for the casing table
    (by default those of `text`)."""
    if spec.kind == "char":
        return CharTokenizer.build(text)
    if spec.kind == "word":
        if cased_tokens is None and text is not None:
            cased_tokens = basic_english_cased(text)
        return WordTokenizer.build(tokens if tokens is not None else basic_english(text), min_freq=spec.min_freq,
                                   max_size=spec.max_size, cased_tokens=cased_tokens)
    if spec.kind == "subword":
        return SubwordTokenizer.build(text, GPT2_RANKS, min_freq=spec.min_freq)
    raise ValueError(f"unknown tokenizer kind {spec.kind!r}: choose char, word or subword")


def prepare(record: ModelRecord, text: str) -> PreparedData:
    """Tokenize a corpus and cut it into the record's split."""
    spec, corpus = record.tokenizer, record.corpus
    if corpus.cut_by == "tokens":
        if spec.kind != "word":
            raise ValueError("cut_by='tokens' is for word tokenizers")
        words = basic_english(text)
        # The vocabulary comes from all the words, the casing table from the training part only.
        tokenizer = build_tokenizer(spec, tokens=words, cased_tokens=cut(basic_english_cased(text), corpus.cuts)[0])
        parts = cut(tokenizer.encode_words(words).ids, corpus.cuts)
        return PreparedData(tokenizer, parts[0], parts[1], parts[2] if len(parts) > 2 else None)
    parts = cut(text, corpus.cuts)
    train_text, val_text = parts[0], parts[1]
    tokenizer = build_tokenizer(spec, train_text)
    val = tokenizer.encode(val_text)
    test_ids = tokenizer.encode(parts[2]).ids if len(parts) > 2 else None
    return PreparedData(
        tokenizer, tokenizer.encode(train_text).ids, val.ids, test_ids,
        val_per_tokens=tokenizer.gpt2_token_count(val_text) if spec.kind == "subword" else None,
        val_chars=len(val_text) if spec.kind == "char" else None, val_unknown=len(val.unknown))
