"""The house keeps its layout: folders that follow the flow, imports only downward and in no circle, each
folder naming its public API, each file saying its one job, operator settings read in one place, and the
generated docs current."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lstmgen"
# The flow: a module may import its own folder and the layers before it, never one after.
LAYERS = ("core", "engine", "inside", "hub", "use", "training", "serve", "app", "__main__")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def imports(path: Path) -> list[tuple[str, bool]]:
    """(lstmgen module imported, at the module's top level?) for every import in the file, lazy ones too."""
    name, tree = module_name(path), ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from . import x` may name a module
                candidate = f"{base}.{alias.name}"
                target = candidate if (ROOT / (candidate.replace(".", "/") + ".py")).exists() else base
                found.append((target, id(node) in top))
    return [(target, at_top) for target, at_top in found if target == "lstmgen" or target.startswith("lstmgen.")]


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_import_goes_down_the_flow(path):
    here = layer(module_name(path))
    if here is None:  # lstmgen/__init__.py sits above every folder
        return
    upward = [target for target, _ in imports(path) if (layer(target) or 0) > here]
    assert not upward, f"{module_name(path)} ({LAYERS[here]}) imports {upward}, later in the flow"


def test_no_module_imports_itself_in_a_circle():
    graph = {module_name(p): {t for t, _ in imports(p) if t != module_name(p) and not (ROOT / t.replace(".", "/")).is_dir()}
             for p in MODULES}
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError(" → ".join(trail[trail.index(nxt):] + [nxt]) if nxt in trail else nxt)
            if nxt in graph and state.get(nxt) is None:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if state.get(module) is None:
            visit(module, [module])


@pytest.mark.parametrize("folder", ["core", "engine", "inside", "training", "serve", "app"])
def test_each_folder_names_its_public_api(folder):
    # Every name resolves, and none is a module (a function named like its module would be shadowed by it).
    code = (f"import types, lstmgen.{folder} as p; names = p.__all__; "
            "assert not [n for n in names if isinstance(getattr(p, n), types.ModuleType)]; print(len(names))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 0


@pytest.mark.parametrize("path", MODULES + [ROOT / "app.py", ROOT / "train_space.py"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_each_file_opens_with_one_line_saying_its_job(path):
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc, f"{path.name} has no docstring"
    lines = doc.splitlines()
    assert len(lines) == 1 or lines[1].strip() == "", f"{path.name}: its first line is not a line of its own"
    assert len(lines[0]) <= 120 and lines[0].endswith((".", ":")), lines[0]


def test_operator_settings_are_read_in_one_module():
    """No module reads an LSTMGEN_* variable itself: lstmgen/core/operator_settings.py declares them all."""
    readers = []
    for path in MODULES + [ROOT / "app.py", ROOT / "train_space.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("LSTMGEN_") \
                    and path.name != "operator_settings.py":
                readers.append(f"{path.relative_to(ROOT)}: {node.value}")
    assert not readers, readers


def test_the_generated_docs_are_current():
    """docs/code.md's map of the folders and docs/deploy.md's variables come from the code (python docs/make.py)."""
    result = subprocess.run([sys.executable, "docs/make.py", "--check"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_docs_python_example_runs(tmp_path):
    """docs/code.md's Python example, as written (offline: the Hub is refused at once, the bundled weights serve)."""
    import os
    import re

    code = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "code.md").read_text(), re.S).group(1)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    first, second = result.stdout.split("ROMEO:")[-2:]  # the torch model's text, then the int8 engine's
    assert len(first) > 100 and len(second) > 100, result.stdout
