"""Package attributes imported on first use: a package's ``__getattr__`` and ``__dir__`` from one name → module map.

Why: ``import stream_iqa`` (for the contract) and ``import stream_iqa.nn.checkpoint`` (the torch-free worker reading
a model's metadata) must not import what a package merely re-exports — torch, timm, the pipeline.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, namespace: dict[str, Any], exports: dict[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose globals are ``namespace``: each name in ``exports`` is read
    from its module on first access, then kept as a plain attribute."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
