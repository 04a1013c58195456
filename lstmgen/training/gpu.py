"""Where torch work runs, honestly, on a Hugging Face ZeroGPU Space and everywhere else.

On ZeroGPU a real GPU exists only while a function decorated with `@spaces.GPU` runs: the `spaces`
package forks a worker, attaches a GPU to it, runs the function there and sends the result back by
pickle. Everywhere else in the Space CUDA is emulated: once `spaces` is imported,
`torch.cuda.is_available()` answers True and tensors moved to "cuda" say so, yet no GPU is used. So:

- `gpu_function(duration)` marks the functions that may use the GPU (a no-op off ZeroGPU);
- `compute_device()` never says "cuda" on ZeroGPU: code inside a GPU function passes
  device="cuda" itself, and everything else (the float-vs-int8 comparison above all) stays on CPU.

Order matters on ZeroGPU: `spaces` must be imported before anything asks torch about CUDA (even
`torch.cuda.is_available()` initialises it, and `import spaces` then refuses to start). Only this
module imports `spaces`, when the first function is decorated; so decorate at import time, in a
module that app.py imports before any code touches torch.cuda.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


def on_zerogpu() -> bool:
    """True on a ZeroGPU Space: the platform sets SPACES_ZERO_GPU=true, and `spaces` reads it the
    same way ("1", "t" or "true", any case: spaces/config.py)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def gpu_function(duration: int | Callable[..., int]) -> Callable[[F], F]:
    """Decorator: on ZeroGPU, run the function with a GPU attached, for at most `duration` seconds.

    `duration` is an int, or a callable that gets the function's own arguments and returns seconds
    (spaces calls it before each run to size the request against the visitor's quota).
    Off ZeroGPU `spaces.GPU` returns the function unchanged, and without `spaces` installed we do.

    Decorate at import time, before `launch()`: ZeroGPU looks for GPU functions when the app starts.
    On ZeroGPU the function runs in a forked process: its arguments and results (or, for a generator,
    each yielded value) cross back by pickle, and changes it makes to globals are lost, so return
    what it made (CPU tensors or a state_dict), not CUDA tensors.
    """
    def decorate(fn: F) -> F:
        try:
            import spaces  # lazily: no other module should pull it (or its torch patches) in
        except ImportError:
            return fn  # not installed: this is not a Space, nothing to schedule
        return spaces.GPU(duration=duration)(fn)

    return decorate


def compute_device() -> str:
    """The device for torch work that is not inside a GPU function.

    - ZeroGPU: always "cpu". Outside a `gpu_function` there is no GPU, whatever
      torch.cuda.is_available() says, and `spaces` has no public way to ask "am I inside one?";
      so code inside a GPU function passes device="cuda" explicitly instead of asking here.
    - Elsewhere: "cuda" when torch sees a CUDA device, else "cpu".
    """
    if on_zerogpu():
        return "cpu"  # without asking torch.cuda, which would break a later `import spaces`
    return "cuda" if torch.cuda.is_available() else "cpu"
