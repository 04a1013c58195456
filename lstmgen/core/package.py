"""How a folder names its public API: `__all__`, each name loaded on first use, so one module loads no other."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, where: dict[str, tuple[str, ...]]):
    """(__all__, __getattr__) for a folder's __init__.py; `where` maps each of its modules to the names it exports.
    Importing `lstmgen.training.folder` then does not import the trainer, as an eager __init__ would."""
    owner = {name: module for module, names in where.items() for name in names}

    def __getattr__(name: str):
        if name not in owner:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{owner[name]}"), name)

    return list(owner), __getattr__
