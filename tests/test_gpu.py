"""lstmgen.training.gpu: `gpu_function` is harmless wherever ZeroGPU is not, and `compute_device()` never picks
ZeroGPU's emulated CUDA."""

import sys
import types

import pytest
import torch

from lstmgen.training.gpu import compute_device, gpu_function, on_zerogpu


def add(a, b):
    return a + b


def count_up(n):
    yield from range(n)


@pytest.fixture
def off_zerogpu(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)


def test_without_spaces_installed_the_function_comes_back_unchanged(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", None)  # makes `import spaces` raise ImportError
    assert gpu_function(30)(add) is add
    assert gpu_function(lambda a, b: 10)(add)(2, 3) == 5


def test_the_function_and_its_duration_are_handed_to_spaces_GPU(monkeypatch):
    seen = {}

    def fake_gpu(duration):
        def wrap(fn):
            seen.update(duration=duration, fn=fn)
            return lambda *args, **kwargs: fn(*args, **kwargs)
        return wrap

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=fake_gpu))
    seconds_for = lambda a, b: 5 * a  # called by spaces with the function's own arguments
    decorated = gpu_function(seconds_for)(add)
    assert seen == {"duration": seconds_for, "fn": add}
    assert decorated(2, 3) == 5


def test_with_spaces_installed_but_off_zerogpu_functions_work_as_before(off_zerogpu):
    pytest.importorskip("spaces")
    for duration in (30, lambda a, b: 10 * a):
        assert gpu_function(duration)(add)(2, 3) == add(2, 3) == 5
    assert list(gpu_function(60)(count_up)(4)) == list(count_up(4)) == [0, 1, 2, 3]  # generators too


def test_on_zerogpu_compute_device_is_cpu_even_though_cuda_looks_available(monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # what spaces' emulation answers
    assert on_zerogpu()
    assert compute_device() == "cpu"


def test_on_zerogpu_compute_device_does_not_even_ask_torch_cuda(monkeypatch):
    # Asking initialises CUDA, and `import spaces` then refuses to start (spaces/zero/__init__.py).
    def ask():
        raise AssertionError("torch.cuda.is_available() was called on ZeroGPU")

    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setattr(torch.cuda, "is_available", ask)
    assert compute_device() == "cpu"


@pytest.mark.parametrize("cuda, device", [(True, "cuda"), (False, "cpu")])
def test_off_zerogpu_compute_device_follows_torch(off_zerogpu, monkeypatch, cuda, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert compute_device() == device


@pytest.mark.parametrize("value, zerogpu", [
    ("true", True), ("True", True), ("1", True), ("t", True), ("false", False), ("0", False), ("", False)])
def test_SPACES_ZERO_GPU_is_read_as_spaces_reads_it(monkeypatch, value, zerogpu):
    monkeypatch.setenv("SPACES_ZERO_GPU", value)
    assert on_zerogpu() is zerogpu


def test_unset_SPACES_ZERO_GPU_means_not_zerogpu(off_zerogpu):
    assert not on_zerogpu()
