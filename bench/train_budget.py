"""Train your own, measured as the app runs it: validation loss against the time budget.

    python -m bench.train_budget [--budgets 30,60,120,300] [--tokenizers char,word] [--size small]

Launches the app on loopback and calls its /train endpoint with gradio_client, on Tiny Shakespeare (the
whole text: /train holds out the last 10% for validation), with the app's own thread setting (one torch
thread: training takes one core, generation keeps the other). Writes bench/train_budget.json and .md.
Run it on an otherwise idle machine: the budget is wall-clock training time.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ["NO_PROXY"] = "127.0.0.1,localhost"

import argparse
import json
import platform
import socket
import tempfile
import time
from pathlib import Path

import torch

import app as space
from lstmgen.app import build_demo
from lstmgen.serve import service
from lstmgen.core.files import SHIPPED_DATA_DIR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", default="30,60,120,300")
    parser.add_argument("--tokenizers", default="char,word")
    parser.add_argument("--size", default="small")
    parser.add_argument("--out", default="bench")
    args = parser.parse_args(argv)
    from gradio_client import Client

    space.prepare_runtime()
    demo = build_demo(service.load_all(records=[], use_hub=False), studio_root=tempfile.mkdtemp())
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    text = (SHIPPED_DATA_DIR / "tinyshakespeare.txt").read_text()
    rows = []
    for tokenizer in args.tokenizers.split(","):
        for budget in map(int, args.budgets.split(",")):
            started = time.perf_counter()
            updates = list(client.submit(text, tokenizer, args.size, budget, api_name="/train"))
            final = updates[-1]
            rows.append({"tokenizer": tokenizer, "size": args.size, "budget_s": budget,
                         "val_loss": final.get("val_loss"), "steps": final.get("step"),
                         "tokens_per_s": final.get("tokens_per_s"), "wall_s": time.perf_counter() - started,
                         "status": final.get("status")})
            print(rows[-1], flush=True)
    demo.close()
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "rows": rows}
    out = Path(args.out)
    (out / "train_budget.json").write_text(json.dumps(report, indent=2))
    lines = [f"Machine: {report['machine']}; torch {report['torch']}, {report['torch_threads']} thread; "
             "Tiny Shakespeare through the app's /train (last 10% validates).", "",
             "| tokenizer | size | budget (s) | validation loss (nats/token) | steps | training tok/s | wall s |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['tokenizer']} | {r['size']} | {r['budget_s']} | {r['val_loss']:.4f} | {r['steps']:,} | "
              f"{r['tokens_per_s'] or 0:,.0f} | {r['wall_s']:.0f} |" for r in rows]
    (out / "train_budget.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
