"""One registry for everything hwnas looks up by name: search spaces, device backends, export
formats, latency predictors (as torchvision's model registry: a duplicate name is refused, an
unknown one is a one-line :class:`UserError` naming the known ones, ``list(pattern)`` filters).

A registry can name the modules whose import fills it (``modules=``); they are imported on the
first lookup, not when the registry is created, so listing or checking a name never costs the
import of a runtime that the command does not use.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from hwnas.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named values of one ``kind`` (the word used in error messages, e.g. ``"search space"``)."""

    def __init__(self, kind: str, modules: Sequence[str] = ()) -> None:
        self.kind = kind
        self._modules = tuple(modules)
        self._loaded = not self._modules
        self._entries: dict[str, T] = {}

    def register(self, name: str, value: T) -> T:
        if name in self._entries:
            raise ValueError(f"a {self.kind} named {name!r} is already registered")
        self._entries[name] = value
        return value

    def decorator(self, name_of: Callable[[T], str]) -> Callable[[T], T]:
        """``@registry.decorator(lambda cls: cls.name)``: register a class under one of its attributes."""

        def register(value: T) -> T:
            return self.register(name_of(value), value)

        return register

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise UserError(f"unknown {self.kind} {name!r}; known: {', '.join(self.list())}") from None

    def list(self, pattern: str = "*") -> list[str]:
        self._load()
        return sorted(name for name in self._entries if fnmatch.fnmatch(name, pattern))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)
