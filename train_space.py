"""The Space's training entry: `python train_space.py FLAGS` is `lstmgen-train FLAGS` (lstmgen/training/command.py).

    python train_space.py --preset char-shakespeare [--epochs N ...] [--resume] [--push-to-hub OWNER/NAME]
    python train_space.py --tokenizer char --data my_text.txt --time-budget 600
    torchrun --nproc-per-node 2 train_space.py --preset word-harrypotter   # DistributedDataParallel

`python train_space.py -h` lists every flag.
"""

import sys
from functools import partial

from lstmgen.__main__ import run_politely
from lstmgen.training.command import main

if __name__ == "__main__":
    sys.exit(run_politely(partial(main, program="python train_space.py")))
