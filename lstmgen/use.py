"""Use a model from Python: lstmgen.load(a Hub repo or a folder), then generate, next_tokens, score and cells.

    import lstmgen
    model = lstmgen.load("someone/char-mine")          # or a local folder; int8=True for the compressed copy
    print(model.generate("ROMEO:", length=200, temperature=0.8))

A model generates as the app does: a step graph on ONNX Runtime (lstmgen.engine), float32 or int8. Where a whole
text is read at once (next_tokens, score, cells), the float32 model is its torch model in one batched pass (the
same weights, to float rounding) and the int8 copy its own graph, as in the app.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .core.evaluate import Score, score_text
from .core.sampling import SamplingConfig, distribution
from .core.settings import checked
from .core.tokenizers import token_texts
from .engine.generate import banned_ids, primed_detokenizer, text_pieces
from .engine.ort import OrtModel
from .hub import LoadedModel, resolve
from .inside.states import cell_states


def load(name: str | Path, int8: bool = False, revision: str | None = None) -> Model:
    """The model `name` names: a local folder, else a Hub repo id ("someone/char-mine", downloaded once into the
    Hub cache, safetensors only) or a shipped model's name ("char", "char-shakespeare": its Hub repo, else the
    weights that ship with lstmgen). `int8=True` gives the compressed copy (8-bit weights); `revision` a Hub
    branch, tag or commit. Raises lstmgen.hub.ModelLoadError, naming the file at fault or why no source worked."""
    with contextlib.redirect_stdout(sys.stderr):  # huggingface_hub's from_pretrained prints to stdout
        loaded = resolve(str(name), revision=revision)
    return Model(loaded, int8)


@dataclass(frozen=True)
class CellValues:
    """One cell along a text: the text each token adds (`pieces`), and the cell's memory (`c`) and output (`h`)
    after each token, one float each."""

    pieces: list[str]
    c: list[float]
    h: list[float]


class Model:
    """A loaded model, float32 or its int8 copy (`int8`). `source` says where the weights came from, `folder`
    holds its files (config.json, model.safetensors, tokenizer, metrics.json, model card)."""

    def __init__(self, loaded: LoadedModel, int8: bool = False):
        self.loaded, self.int8 = loaded, bool(int8)
        self.tokenizer = loaded.tokenizer
        self.engine = OrtModel(loaded.model, "int8" if self.int8 else "float")  # what generates
        self.reader = self.engine if self.int8 else loaded.model  # what reads a whole text in one pass
        self.banned = banned_ids(loaded.tokenizer)  # the special tokens, masked unless allow_special

    @property
    def source(self) -> str:
        return self.loaded.source

    @property
    def folder(self) -> Path:
        return self.loaded.folder

    def __repr__(self) -> str:
        return f"<lstmgen.Model {self.source}{' (int8)' if self.int8 else ''}>"

    def generate(self, prompt: str = "", length: int = 200, **sampling) -> str:
        """The prompt followed by `length` new tokens as text. `sampling`: lstmgen.core.sampling.SamplingConfig's
        settings, each checked against its limits: temperature (0.8; 0 is greedy), top_k (0 = off), top_p (1 =
        off), min_p (0 = off), seed (None: a random one) and allow_special (False: <unk> and the like masked)."""
        config = checked(SamplingConfig, length=length, **sampling)
        return as_text(prompt) + "".join(text_pieces(self.engine, self.tokenizer, prompt, config))

    @torch.inference_mode()
    def next_tokens(self, prompt: str = "", k: int = 10, temperature: float = 1.0, **sampling) -> list[tuple[str, float]]:
        """The `k` most likely next tokens after `prompt`, most likely first, as (the text the token adds when
        written after the prompt, its probability). The probabilities are those generation draws from with these
        settings (SamplingConfig's; by default the model's own at temperature 1, special tokens masked); tokens
        a filter leaves out (top_k, top_p, min_p) are not listed."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a whole number of at least 1, not {k!r}")
        config = checked(SamplingConfig, temperature=temperature, **sampling)
        ids = self.tokenizer.encode(as_text(prompt)).ids or [self.tokenizer.start_id]
        logits = self.reader(torch.tensor([ids]))[0][0, -1].double()
        probabilities = distribution(logits, config, self.banned)
        values, top = torch.topk(probabilities, min(k, probabilities.numel()))
        after_prompt = primed_detokenizer(self.tokenizer, ids)

        def written(token: int) -> str:
            decode = copy.deepcopy(after_prompt)  # each candidate follows the same prompt
            return decode(token) + decode.flush()

        return [(written(int(i)), float(p)) for p, i in zip(values, top) if p > 0]

    def score(self, text: str) -> Score:
        """How well the model predicts a text, token by token (lstmgen.core.evaluate.score_text): a Score with
        `texts` (what each token adds), `probabilities` (each token's, given the tokens before it; None for the
        first, which nothing predicts), `total_nats`, `tokens` (the tokens predicted), `loss` (nats per token,
        per GPT-2 token for a subword model), `perplexity`, `bits_per_char`, `unknown` (what the vocabulary
        could not hold) and `comparison` (a sentence setting the text beside the model's held-out figure)."""
        return score_text(self.reader, self.tokenizer, as_text(text), self.loaded.metrics)

    def cells(self, text: str, layer: int = 1, cell: int = 1) -> CellValues:
        """One LSTM cell's memory (c) and output (h) after each token of a text. Layers and cells are numbered
        from 1, as in the app and `lstmgen cells`, which names the cells that track something."""
        model = self.loaded.model
        for name, value, high in (("layer", layer, model.num_layers), ("cell", cell, model.hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise ValueError(f"{name} must be a whole number from 1 to {high}, not {value!r}")
        ids = self.tokenizer.encode(as_text(text)).ids
        if not ids:
            raise ValueError("this model's vocabulary holds nothing of the text")
        values = cell_states(self.reader, ids, layers=layer, cells=[cell - 1])  # the layers up to it, one cell
        return CellValues(token_texts(self.tokenizer, ids),
                          *([float(v) for v in values[which][layer - 1, :, 0]] for which in ("c", "h")))


def as_text(value) -> str:
    """A text argument, refused in one line when it is not a string."""
    if not isinstance(value, str):
        raise TypeError(f"give the text as a string, not {type(value).__name__}")
    return value
