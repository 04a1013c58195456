"""Corpora through `datasets`, token streams, and contiguous batches for truncated BPTT.

As in PyTorch's word_language_model example, a token stream is cut into `batch_size`
parallel streams; batch i continues batch i-1 in every row, so the LSTM state is carried
across batches instead of restarting on shuffled, independent windows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch


def load_text(files: str | Path | list[str | Path] | None = None, dataset: str | None = None, split: str = "train",
              cache_dir: str | None = None) -> str:
    """The text of local files (in the order given) or of a Hub dataset's `text` column, via `datasets`."""
    from datasets import load_dataset

    if (files is None) == (dataset is None):
        raise ValueError("give either local files or a dataset id")
    if dataset is not None:
        rows = load_dataset(dataset, split=split, cache_dir=cache_dir)
        return "\n".join(rows["text"])
    files = [files] if isinstance(files, (str, Path)) else list(files)
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"corpus file not found: {', '.join(missing)}")
    # sample_by="document": one row per file, the text exactly as written (line breaks kept).
    rows = load_dataset("text", data_files=[str(f) for f in files], sample_by="document", split="train",
                        cache_dir=cache_dir)
    return "".join(rows["text"])


def batchify(ids: torch.Tensor | list[int], batch_size: int) -> torch.Tensor:
    """Cut a 1-D stream into `batch_size` contiguous rows: (batch_size, length). The tail that does not fill a row is dropped."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    length = ids.numel() // batch_size
    if length < 2:
        raise ValueError(f"{ids.numel()} tokens are too few for {batch_size} streams")
    return ids[: length * batch_size].view(batch_size, length)


def bptt_batches(rows: torch.Tensor, seq_len: int, start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(position, inputs, targets) windows along the rows; targets are inputs shifted by one."""
    for position in range(start, rows.size(1) - 1, seq_len):
        n = min(seq_len, rows.size(1) - 1 - position)
        yield position, rows[:, position : position + n], rows[:, position + 1 : position + 1 + n]


def num_batches(rows: torch.Tensor, seq_len: int) -> int:
    return -(-(rows.size(1) - 1) // seq_len)
