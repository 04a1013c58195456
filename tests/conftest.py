"""Shared fixtures. Everything runs offline, on small data the tests make themselves."""

import os

# Read when these libraries are imported (not later): set before any test imports them.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

from pathlib import Path

import pytest
import torch

from lstmgen.core.data import CorpusError, read_corpus
from lstmgen.core.records import GPT2_RANKS

REPEATING_TEXT = "the quick brown fox jumps over the lazy dog. " * 40


@pytest.fixture
def gpt2_ranks() -> Path:
    assert GPT2_RANKS.is_file(), f"GPT-2 ranks file expected at {GPT2_RANKS}"
    return GPT2_RANKS


def corpus_or_skip(record) -> str:
    """A record's corpus text; a test that needs a corpus that cannot ship (the Harry Potter books are
    copyrighted) skips with the reason, and runs wherever LSTMGEN_DATA points at the books."""
    try:
        return read_corpus(record.corpus)
    except CorpusError as error:
        pytest.skip(f"needs a corpus that does not ship with the repository: {error}")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
