"""Module attributes imported on first access (PEP 562), shared by the packages that need it.

Why: importing scikit-learn, torch, onnxruntime or faiss takes seconds, and a CLI's
``--help``, a cached run or a serving process that needs none of them should not pay it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, lazy: Mapping[str, str], namespace: dict[str, Any],
                    exported: list[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``lazy`` maps a name to its module."""

    def __getattr__(name: str) -> Any:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exported))

    return __getattr__, __dir__
