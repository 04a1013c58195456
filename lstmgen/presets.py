"""The three models: corpus, tokenizer, fixed split, sizes and training settings, Hub repo.

The splits are the comparison contract with the projects we measure against, so they are fixed:
- Shakespeare: the first 90% of tinyshakespeare.txt's characters train, the last 10% validate;
- Harry Potter: books 1-7 in order, basic_english tokens, 70% / 15% / 15% train / val / test,
  vocabulary = tokens seen at least 3 times in the whole list, plus <unk> and <eos>.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .tokenizers import CharTokenizer, SubwordTokenizer, Tokenizer, WordTokenizer, basic_english

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = Path(os.environ.get("LSTMGEN_DATA", PROJECT_ROOT.parent / "shared" / "data"))
HUB_OWNER = os.environ.get("LSTMGEN_HUB_OWNER", "lstmgen")


@dataclass
class Preset:
    name: str
    kind: str  # char | subword | word
    files: list[str]  # relative to the data folder, concatenated in this order
    title: str
    dataset_name: str  # for the model card
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    eval_batch_size: int = 1  # streams for the reported figure
    eval_seq_len: int = 256
    min_freq: int = 1  # word/subword: a token needs this many uses in the training text to get its own id
    # Vocabulary ids the training split never uses are predicted like its ids used at most this often (0: off).
    unseen_like_max_count: int = 0

    @property
    def repo_id(self) -> str:
        return os.environ.get(f"LSTMGEN_REPO_{self.name.upper().replace('-', '_')}", f"{HUB_OWNER}/{self.name}")


PRESETS = {
    "char-shakespeare": Preset(
        name="char-shakespeare", kind="char", files=["tinyshakespeare.txt"],
        title="Char · Shakespeare", dataset_name="tiny_shakespeare",
        model=dict(embed_size=128, hidden_size=512, num_layers=3, dropout=0.5, input_dropout=0.1,
                   weight_drop=0.5),
        # A fixed-length run: 20 epochs (~2 h on two CPU cores) down a cosine, averaged over the last six.
        train=dict(epochs=20, batch_size=32, seq_len=64, lr=3e-3, weight_decay=0.05, clip=1.0,
                   lr_schedule="cosine", warmup_steps=200, early_stop=30, eval_batch_size=8, average_after=15,
                   average_decay=0.998),
    ),
    "subword-shakespeare": Preset(
        name="subword-shakespeare", kind="subword", files=["tinyshakespeare.txt"],
        title="Subword · tiktoken", dataset_name="tiny_shakespeare",
        model=dict(embed_size=384, hidden_size=384, num_layers=2, dropout=0.4, embed_dropout=0.1,
                   input_dropout=0.3, weight_drop=0.3, tie_weights=True),
        train=dict(epochs=60, batch_size=32, seq_len=64, lr=2e-3, weight_decay=0.1, clip=0.5,
                   lr_patience=0, early_stop=3, eval_batch_size=8, average_after=6, average_decay=0.998),
        min_freq=2,  # tokens used once are spelled in bytes, so unseen words are spelled, not guessed
    ),
    "word-harrypotter": Preset(
        name="word-harrypotter", kind="word", files=[f"harrypotter/{i}.txt" for i in range(1, 8)],
        title="Word · Harry Potter", dataset_name="harry_potter_books",
        model=dict(embed_size=400, hidden_size=400, num_layers=2, dropout=0.4, embed_dropout=0.1,
                   input_dropout=0.3, weight_drop=0.3, tie_weights=True),
        train=dict(epochs=40, batch_size=64, seq_len=64, lr=2e-3, weight_decay=0.1, clip=0.5,
                   lr_patience=0, early_stop=3, eval_batch_size=128, eval_seq_len=50, average_after=7,
                   average_decay=0.995),
        eval_batch_size=128, eval_seq_len=50, min_freq=3, unseen_like_max_count=10,
    ),
}


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


def shakespeare_split(text: str) -> tuple[str, str]:
    cut = int(len(text) * 0.9)
    return text[:cut], text[cut:]


def word_split(tokens: list) -> tuple[list, list, list]:
    a, b = int(len(tokens) * 0.7), int(len(tokens) * 0.85)
    return tokens[:a], tokens[a:b], tokens[b:]


def corpus_files(preset: Preset, data_dir: str | Path | None = None) -> list[Path]:
    data_dir = Path(data_dir) if data_dir else DEFAULT_DATA_DIR
    return [data_dir / f for f in preset.files]


def prepare(preset: Preset, text: str, ranks_file: str | Path | None = None) -> PreparedData:
    """Tokenize a corpus and cut it into the preset's fixed split."""
    if preset.kind == "word":
        tokens = basic_english(text)
        tokenizer = WordTokenizer.build(tokens, min_freq=preset.min_freq)
        ids = tokenizer.encode_words(tokens).ids
        train, val, test = word_split(ids)
        return PreparedData(tokenizer, train, val, test)
    train_text, val_text = shakespeare_split(text)
    if preset.kind == "char":
        tokenizer = CharTokenizer.build(train_text)
        val = tokenizer.encode(val_text)
        return PreparedData(tokenizer, tokenizer.encode(train_text).ids, val.ids, None,
                            val_chars=len(val_text), val_unknown=len(val.unknown))
    if preset.kind == "subword":
        if ranks_file is None and (DEFAULT_DATA_DIR / "gpt2.tiktoken").is_file():
            ranks_file = DEFAULT_DATA_DIR / "gpt2.tiktoken"
        tokenizer = SubwordTokenizer.build(train_text, ranks_file, min_freq=preset.min_freq)
        return PreparedData(tokenizer, tokenizer.encode(train_text).ids, tokenizer.encode(val_text).ids, None,
                            val_per_tokens=tokenizer.gpt2_token_count(val_text), val_chars=len(val_text))
    raise ValueError(f"unknown kind {preset.kind!r}")
