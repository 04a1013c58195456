"""Tiny model folders and a launched app for tests/test_app.py and tests/test_browser.py.

Not a test module: plain helpers, imported by both (the tests folder is on sys.path under pytest)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import torch

from lstmgen.core.model import LSTMLanguageModel
from lstmgen.core.records import GPT2_RANKS
from lstmgen.core.tokenizers import CharTokenizer, SubwordTokenizer, WordTokenizer, basic_english

CHAR_TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n" * 30
SUBWORD_TEXT = "ROMEO:\nBut soft, what light through yonder window breaks? It is the east.\n" * 10
WORD_TEXT = "Harry looked at the castle. Hermione said that the castle was dark and cold. Dumbledore smiled. " * 10


def _metrics(preset: str) -> dict:
    figure = {"loss": 2.9, "perplexity": 18.2, "bits_per_char": None}
    return {"preset": preset, "epochs": [{"epoch": 1, "train_loss": 3.0, "val_loss": 2.9},
                                        {"epoch": 2, "train_loss": 2.5, "val_loss": 2.6}],
            "final": {"val_float": figure, "val_int8": dict(figure, loss=2.91, perplexity=18.4)}}


def _fit(model: LSTMLanguageModel, ids: list[int], steps: int = 120, seq_len: int = 32) -> None:
    """A few Adam steps on repeating text: the model becomes confident, so its int8 copy chooses alike."""
    data = torch.tensor(ids)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq_len - 1, (8,), generator=generator)
        x = torch.stack([data[s : s + seq_len] for s in starts])
        y = torch.stack([data[s + 1 : s + seq_len + 1] for s in starts])
        logits, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def build_model_folders(root: Path) -> dict[str, Path]:
    """char (briefly trained), subword and word (untrained: their samples vary a lot with the seed)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny steps: more threads only contend on a busy machine
    try:
        return _build(root)
    finally:
        torch.set_num_threads(threads)


def _build(root: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    tokenizers = {
        "char": CharTokenizer.build(CHAR_TEXT),
        "subword": SubwordTokenizer.build(SUBWORD_TEXT, GPT2_RANKS),
        "word": WordTokenizer.build(basic_english(WORD_TEXT), min_freq=1),
    }
    presets = {"char": "char-shakespeare", "subword": "subword-shakespeare", "word": "word-harrypotter"}
    folders = {}
    for name, tokenizer in tokenizers.items():
        model = LSTMLanguageModel(tokenizer.vocab_size, embed_size=16, hidden_size=32, num_layers=1, dropout=0.0)
        if name == "char":
            _fit(model, tokenizer.encode(CHAR_TEXT).ids)
        folder = root / name
        model.eval().save_pretrained(folder)
        tokenizer.save(folder)
        (folder / "metrics.json").write_text(json.dumps(_metrics(presets[name])))
        folders[name] = folder
    return folders


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, server, timeout_s: float = 120.0) -> None:
    """Wait until the app started as the subprocess `server` answers HTTP 200 at `url`; fail if it exits first."""
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert server.poll() is None, "the app exited before it answered"
        assert time.monotonic() < deadline, f"the app did not answer within {timeout_s:g} s"
        time.sleep(0.25)


def launch(demo) -> str:
    """Launch on loopback without blocking, with the app's own limits (lstmgen.app.launch); returns the local URL."""
    from lstmgen.app import launch as launch_app

    port = free_port()
    launch_app(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return f"http://127.0.0.1:{port}/"
