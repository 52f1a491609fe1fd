"""Package ``__init__`` files that name their public surface without importing it.

``import hwnas.devices.spec`` runs ``hwnas/devices/__init__.py`` first; if that imported every
backend, reading a TOML file would load numpy and the runtimes. With :func:`lazy_exports` a
package lists ``name -> module`` and each name is imported on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps a public name to its submodule."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
