"""Did a change of code make generation slower? lstmgen's generation timed at two git revisions on the same
weights, the two taking turns round by round, so a busy machine slows both alike.

    python -m bench.ab --base REV [--models char,subword,word] [--threads 1,2] [--rounds 11] [--tokens 300]

The base revision is checked out into a temporary git worktree; each revision runs in a worker process of
its own, started once, which waits for its turn on stdin. A round times, in each worker:
- int8 step: the plain int8 step graph (no sampler) stepping `--tokens` greedy steps;
- int8 generation: lstmgen.engine.generate.generate_ids on the int8 copy the app builds, at temperature 0.8;
- side by side: the app's loop (generate.coupled_ids, float and int8 taking turns), per token pair.
Both revisions load the weights in this checkout's lstmgen/pretrained (the base's own may differ).
Prints a table: µs per token, median [min-max] over rounds, and the ratio this revision ÷ base per
round. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"char": "char-shakespeare", "subword": "subword-shakespeare", "word": "word-harrypotter"}
PARTS = ("int8 step", "int8 generation", "side by side")

# Runs in each revision's checkout: read a request line, answer with µs per token of each part.
WORKER = r"""
import json, sys, time, torch
from lstmgen.hub import load_model_folder
try:  # the folders of issue 29
    from lstmgen.engine.ort import OrtModel
    from lstmgen.engine.generate import banned_ids, coupled_ids, generate_ids
    from lstmgen.core.sampling import SamplingConfig
except ImportError:  # a revision from before them
    from lstmgen.ort_engine import OrtModel
    from lstmgen.generate import banned_ids, coupled_ids, generate_ids
    from lstmgen.sampling import SamplingConfig
torch.set_num_threads(int(sys.argv[2]))
model, tokenizer = load_model_folder(sys.argv[1])
plain = OrtModel(model, "int8", sampler=False)
float32, int8 = OrtModel(model, "float", probabilities=True), OrtModel(model, "int8", probabilities=True)
banned, prompt = banned_ids(tokenizer), tokenizer.encode("The ").ids or [tokenizer.start_id]
print("ready", flush=True)
for line in sys.stdin:
    n = int(line)
    config = SamplingConfig(temperature=0.8, length=n, seed=1)
    engine = (plain.new_engine if hasattr(plain, "new_engine") else plain.new_stream)()  # renamed in issue 24
    logits, state = engine.forward(prompt)
    start = time.perf_counter()
    for _ in range(n):
        logits, state = engine.step(int(logits.argmax()), state)
    step = time.perf_counter() - start
    start = time.perf_counter()
    for _ in generate_ids(int8, prompt, config, banned):
        pass
    generation = time.perf_counter() - start
    start = time.perf_counter()
    for _ in coupled_ids(float32, int8, prompt, config, banned):
        pass
    pair = time.perf_counter() - start
    print(json.dumps([1e6 * t / n for t in (step, generation, pair)]), flush=True)
"""


class Worker:
    def __init__(self, checkout: Path, folder: Path, threads: int):
        self.process = subprocess.Popen([sys.executable, "-c", WORKER, str(folder), str(threads)], cwd=checkout,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for line in self.process.stdout:  # the lines before "ready" are the loaders' own notes
            if line.strip() == "ready":
                return
        raise RuntimeError(f"the worker in {checkout} did not start (its error is above)")

    def time(self, tokens: int) -> list[float]:
        self.process.stdin.write(f"{tokens}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the git revision to compare this checkout with")
    parser.add_argument("--models", default="char,subword,word")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--tokens", type=int, default=300)
    args = parser.parse_args(argv)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as temporary:
        base = Path(temporary) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.base], cwd=ROOT, check=True)
        try:
            print(f"this checkout ({head.strip()}, with its uncommitted changes) against {args.base}; "
                  f"{args.rounds} rounds × {args.tokens} tokens, the two taking turns\n")
            print("| model | threads | part | base µs/token | this µs/token | this ÷ base |\n|---|---|---|---|---|---|")
            for name in args.models.split(","):
                folder = ROOT / "lstmgen" / "pretrained" / FOLDERS[name]
                for threads in map(int, args.threads.split(",")):
                    workers = [Worker(base, folder, threads), Worker(ROOT, folder, threads)]
                    for worker in workers:  # a warm-up round, not counted
                        worker.time(args.tokens)
                    times = {0: [], 1: []}
                    for r in range(args.rounds):
                        for w in (0, 1) if r % 2 == 0 else (1, 0):
                            times[w].append(workers[w].time(args.tokens))
                    for worker in workers:
                        worker.close()
                    for p, part in enumerate(PARTS):
                        old, new = [t[p] for t in times[0]], [t[p] for t in times[1]]
                        ratios = [b / a for a, b in zip(old, new)]
                        print(f"| {name} | {threads} | {part} | {spread(old)} | {spread(new)} | {spread(ratios, 3)} |",
                              flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
