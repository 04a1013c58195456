"""Corpora through `datasets`, the held-out split, and contiguous batches for truncated BPTT.

Where corpus files are looked for: the folder given with `--data` (or `data_dir=`), else the folder
in the LSTMGEN_DATA environment variable, else `data/` in this repository, which ships the
public-domain Tiny Shakespeare. Copyrighted corpora (the Harry Potter books) never ship: put them
in a folder of your own and point `--data` or LSTMGEN_DATA at it.

As in PyTorch's word_language_model example, a token stream is cut into `batch_size` parallel
streams; batch i continues batch i-1 in every row, so the LSTM state is carried across batches
instead of restarting on shuffled, independent windows.
"""

from __future__ import annotations

import logging
import os
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from .files import SHIPPED_DATA_DIR
from .operator_settings import OperatorSettings, operator_settings, variable
from .settings import shown

DATA_ENV = variable(OperatorSettings, "data")  # named in messages and --help
log = logging.getLogger("lstmgen.core.data")


class CorpusError(RuntimeError):
    """A corpus that cannot be read; the message says which files are needed and how to pass them."""


@dataclass(frozen=True)
class Corpus:
    """Where a model's text comes from and how it is cut into training and held-out parts."""

    name: str  # the dataset's name, for the model card
    files: tuple[str, ...] = ()  # relative to the data folder, concatenated in this order
    dataset: str | None = None  # or: a Hub dataset id, or a local folder laid out as the Hub lays one out
    text_column: str = "text"
    dataset_split: str = "train"
    dataset_revision: str | None = None  # a Hub dataset's revision to read; once read, the commit it was read at
    hub_dataset: str | None = None  # local files that are a Hub dataset's text: its id, for the model card
    # Where the text is cut, as fractions: (0.9,) = the first 90% trains, the rest validates;
    # (0.7, 0.85) = 70% train, 15% validation, 15% test.
    cuts: tuple[float, ...] = (0.9,)
    # "chars": cut the text before tokenizing (the vocabulary comes from the training part);
    # "tokens": tokenize the whole text, build the vocabulary on all of it, then cut the ids.
    cut_by: str = "chars"
    note: str = ""  # one line for the UI: what the text is and how it is split
    needs: str = ""  # shown when the files are missing: what they are and where to get them


def data_folders(data_dir: str | Path | None = None) -> list[Path]:
    """The folders searched for corpus files, first match wins."""
    if data_dir:
        return [Path(data_dir).expanduser()]
    env = operator_settings().data
    return ([Path(env).expanduser()] if env else []) + [SHIPPED_DATA_DIR]


def corpus_files(corpus: Corpus, data: str | Path | None = None) -> list[Path]:
    """The corpus's files, found in the data folders; `data` may also be one file (a one-file corpus)."""
    if data and Path(data).is_file():
        return [Path(data)]
    folders = data_folders(data)
    found = []
    for name in corpus.files:
        matches = [folder / name for folder in folders if (folder / name).is_file()]
        if not matches:
            where = " or ".join(str(f) for f in folders)
            raise CorpusError(
                f"{corpus.name} needs {', '.join(corpus.files)} in a data folder ({name} is not in {where}). "
                f"{corpus.needs} Pass the folder with --data DIR or set {DATA_ENV}=DIR.".replace("  ", " "))
        found.append(matches[0])
    return found


def load_text(files: str | Path | list[str | Path] | None = None, dataset: str | None = None, split: str = "train",
              text_column: str = "text", cache_dir: str | None = None, revision: str | None = None) -> str:
    """The text of local files (in the order given; a folder gives its .txt files), or of a dataset's text
    column, through `datasets`.

    `dataset` is a Hub id (e.g. stanfordnlp/imdb) or a local folder laid out as the Hub lays out a
    dataset (`plain_text/train-00000-of-00001.parquet`, …): `datasets` reads both the same way. `revision`:
    a Hub dataset's commit, branch or tag (see hub_dataset_commit)."""
    from datasets import load_dataset

    if (files is None) == (dataset is None):
        raise ValueError("give either local files or a dataset")
    if dataset is not None:
        try:
            rows = load_dataset(str(dataset), split=split, cache_dir=cache_dir, revision=revision)
        except Exception as error:  # datasets raises many types: missing split, offline, not found
            raise CorpusError(f"cannot load dataset {dataset!r} split {split!r}: "
                              f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None
        if text_column not in rows.column_names:
            raise CorpusError(f"dataset {dataset!r} has no column {text_column!r}; its columns are "
                              f"{', '.join(rows.column_names)} (choose one with --text-column)")
        return "\n".join(t for t in rows[text_column] if isinstance(t, str))
    files = [files] if isinstance(files, (str, Path)) else list(files)
    if len(files) == 1 and Path(files[0]).expanduser().is_dir():  # a folder: every .txt in it, by name
        folder = Path(files[0]).expanduser()
        files = sorted(folder.glob("*.txt"))
        if not files:
            raise CorpusError(f"no .txt files in {folder}")
    for f in files:
        if not Path(f).is_file():
            raise CorpusError(f"corpus file not found: {f}")
    try:
        # sample_by="document": one row per file, the text exactly as written (line breaks kept).
        rows = load_dataset("text", data_files=[str(f) for f in files], sample_by="document", split="train",
                            cache_dir=cache_dir)
    except UnicodeDecodeError as error:
        raise CorpusError(f"a corpus file is not UTF-8 text ({error.reason} at byte {error.start}): "
                          f"{', '.join(map(str, files))}") from None
    return "".join(rows["text"])


def is_hub_id(repo_id: str) -> bool:
    """"name" or "owner/name" as the Hub allows it (huggingface_hub's validate_repo_id: ASCII letters, digits, "-",
    "_", "."; no "--" or ".."; not starting or ending with "-" or "."; at most 96 characters)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return False
    return True


def check_hub_dataset_id(dataset_id) -> str:
    """A visitor's dataset id, refused unless it is a Hub id and nothing else: never a path, nor a name
    that `datasets` would read from this server's disk (it looks for a local folder first)."""
    dataset_id = dataset_id.strip() if isinstance(dataset_id, str) else ""
    if not is_hub_id(dataset_id):
        raise CorpusError("give a Hugging Face dataset id, like stanfordnlp/imdb (letters, digits, '-', '_' and '.', "
                          "with at most one '/')")
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES  # "text", "csv", …: readers of local files

    if os.path.lexists(dataset_id) or os.path.lexists(dataset_id.split("/")[0]) or \
            dataset_id.lower() in _PACKAGED_DATASETS_MODULES:
        raise CorpusError(f"{dataset_id!r} is not a Hub dataset this app can read: choose another id")
    return dataset_id


@dataclass(frozen=True)
class DatasetText:
    """A Hub dataset's text, and exactly what was read: the dataset, the commit, the split and the column."""

    text: str
    dataset: str
    commit: str | None
    split: str
    text_column: str


def hub_dataset_commit(dataset: str, revision: str | None = None) -> str | None:
    """The commit a Hub dataset's `revision` (default its main branch) is at now, so that the text is read at
    that commit and the commit recorded; None for a local folder, or a Hub that cannot be asked without a
    revision pinned (then `datasets` reads what its cache holds)."""
    if Path(dataset).expanduser().exists() or not is_hub_id(dataset):
        if revision:
            raise CorpusError(f"--dataset-revision is for a Hub dataset; {dataset} is a local folder")
        return None
    from huggingface_hub import HfApi

    try:
        return HfApi().dataset_info(dataset, revision=revision).sha
    except Exception as error:  # not found, offline, gated: say which
        if revision is None:
            log.warning("the commit of dataset %r is not known (%s): it is read without one", dataset,
                        type(error).__name__)
            return None
        raise CorpusError(f"cannot find revision {revision!r} of the dataset {dataset}: {type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''}") from None


def read_hub_dataset(dataset_id: str, text_column: str = "text", split: str = "train", max_bytes: int = 10_000_000,
                     timeout_s: float = 60.0) -> DatasetText:
    """A visitor's Hub dataset, read as a stranger would: anonymously (never this server's token), streamed row
    by row (nothing is downloaded whole or cached), and stopped at `max_bytes` of text or `timeout_s` seconds,
    each with a clear CorpusError. Dataset scripts are refused by `datasets` itself (5.x). The answer names the
    commit read.

    The reading runs in a child process that is killed at the time limit: a Hub (or anything posing as one) that
    sends a byte now and then keeps a read inside `datasets` from ever returning, and a thread cannot be stopped."""
    dataset_id = check_hub_dataset_id(dataset_id)
    text_column = (text_column or "text").strip() if isinstance(text_column, str) else "text"
    job = json.dumps({"dataset_id": dataset_id, "text_column": text_column, "split": split, "max_bytes": max_bytes})
    # The child gets no Hub token to send (token=False too), and finds lstmgen where this process did.
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")]))
    try:
        child = subprocess.run([sys.executable, "-c", "from lstmgen.core.data import _read_in_child; _read_in_child()"],
                               input=job, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:  # subprocess.run kills the child: its connection to the Hub goes with it
        raise CorpusError(f"reading the dataset {dataset_id} took longer than {timeout_s:g} seconds: try a smaller "
                          "dataset, or upload the text as a file") from None
    try:
        result = json.loads(child.stdout.splitlines()[-1])
    except (IndexError, ValueError):
        result = {"error": f"the dataset {dataset_id} could not be read: upload the text as a file instead"}
    if "error" in result and child.stderr.strip():  # why, for the operator: one line
        log.warning("reading dataset %r: %s", dataset_id, child.stderr.strip().splitlines()[-1][:200])
    if "error" in result:
        raise CorpusError(result["error"])
    return DatasetText(result["text"], dataset_id, result.get("commit"), split, text_column)


def _read_in_child() -> None:
    """read_hub_dataset's child: the job as JSON on stdin, {"text", "commit"} or {"error"} as one JSON line on
    stdout."""
    job = json.loads(sys.stdin.read())
    dataset_id, split = job["dataset_id"], job["split"]
    from datasets import load_dataset_builder

    try:
        with tempfile.TemporaryDirectory(prefix="lstmgen-dataset-") as cache:
            # load_dataset(streaming=True) in two steps: the builder knows the commit it resolved (its hash).
            builder = load_dataset_builder(dataset_id, token=False, cache_dir=cache)
            rows = builder.as_streaming_dataset(split=split)
            result = {**dataset_text(rows, dataset_id, job["text_column"], job["max_bytes"]), "commit": builder.hash}
    except Exception as error:  # datasets raises many types: not found, gated, offline, bad split
        print(f"dataset {dataset_id!r} could not be read: {type(error).__name__}: "
              f"{str(error).splitlines()[0][:200] if str(error) else ''}", file=sys.stderr)
        result = {"error": f"the dataset {dataset_id} (split {shown(split)}) could not be read: check that it "
                           "exists, is public and has that split, or upload the text as a file"}
    print(json.dumps(result), flush=True)


def dataset_text(rows, dataset_id: str, text_column: str, max_bytes: int) -> dict:
    """{"text": the rows' `text_column` joined by line breaks} or {"error": why not}, reading no row more than
    `max_bytes` needs (a streamed dataset may have no end)."""
    columns = getattr(rows, "column_names", None)
    if columns is not None and text_column not in columns:
        return {"error": f"the dataset {dataset_id} has no column {shown(text_column)}; its columns are "
                         f"{', '.join(columns)[:300]}"}
    parts, size = [], 0
    for row in rows:
        text = row.get(text_column)
        if not isinstance(text, str):
            continue
        size += len(text.encode("utf-8")) + 1
        if size > max_bytes:
            return {"error": f"the dataset {dataset_id} has more than {max_bytes:,} bytes of text; the limit is "
                             f"{max_bytes:,}: upload a part of it as a file instead"}
        parts.append(text)
    return {"text": "\n".join(parts)}


def read_corpus(corpus: Corpus, data: str | Path | None = None) -> str:
    """The corpus's text: its dataset (at its revision), or its files found in the data folders."""
    if corpus.dataset:
        return load_text(dataset=corpus.dataset, split=corpus.dataset_split, text_column=corpus.text_column,
                         revision=corpus.dataset_revision)
    return load_text(corpus_files(corpus, data))


def cut(sequence, cuts: tuple[float, ...]) -> list:
    """Cut a string or list at the given fractions of its length: (0.9,) -> [first 90%, last 10%]."""
    points = [0] + [int(len(sequence) * c) for c in cuts] + [len(sequence)]
    return [sequence[a:b] for a, b in zip(points, points[1:])]


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
