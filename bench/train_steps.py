"""What a Train your own budget gives, by training steps: the held-out loss and a sample after N steps.

    python -m bench.train_steps [--budgets 10,30,60] [--sizes tiny,small] [--text-kb 1,1100]

Trains as the app's studio does (lstmgen.serve.studio.run_training: the recipe for new models, one torch
thread) on the start of Tiny Shakespeare, letters, and prints one row per run: steps made, held-out loss in
bits per character, the speed probe's forecast of the steps (lstmgen.training.run.steps_per_second) and
the first characters the kept model writes. The steps a level of quality needs hardly depend on the CPU (the
speed does): lstmgen/app/words.py's LETTER_LEVELS, STEPS_FOR_WORDS and TEXT_FOR_WORDS come from its table,
bench/train_steps.md. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from lstmgen.core.files import SHIPPED_DATA_DIR


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", default="10,30,60")
    parser.add_argument("--sizes", default="tiny,small")
    parser.add_argument("--text-kb", default="1100")
    args = parser.parse_args(argv)
    from lstmgen.engine.generate import generate
    from lstmgen.hub import resolve
    from lstmgen.serve.studio import run_training
    from lstmgen.training.run import steps_per_second

    torch.set_num_threads(1)  # as the app (app.prepare_runtime)
    full = (SHIPPED_DATA_DIR / "tinyshakespeare.txt").read_text()
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), 1 thread; Tiny Shakespeare, letters.\n")
    print("| size | text | budget (s) | steps | forecast steps | held-out bits/char | writes |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        speed = steps_per_second(size)
        for kb in map(float, args.text_kb.split(",")):
            text = full[: int(kb * 1000)]
            for budget in map(float, args.budgets.split(",")):
                with tempfile.TemporaryDirectory() as run_dir:
                    started = time.perf_counter()
                    *_, last = run_training(str(Path(run_dir) / "run"), text, "char", size, budget)
                    if last["status"] != "done":
                        print(f"| {size} | {kb:g} KB | {budget:g} | - | - | - | {last.get('error')} |")
                        continue
                    loaded = resolve(last["folder"], use_hub=False)
                    sample = generate(loaded.model, loaded.tokenizer, "ROMEO:", 60, temperature=0.8, seed=1)
                bits = last["val_loss"] / math.log(2)
                print(f"| {size} | {kb:g} KB | {budget:g} | {last['step']:,} | {speed * budget:,.0f} | {bits:.2f} | "
                      f"{sample[6:].replace(chr(10), ' / ')!r} |  ({time.perf_counter() - started:.0f} s wall)",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
