"""One registry per axis (dataset, model, method): name -> entry, filled by the entries themselves.

A registry knows the package its entries live in and imports every public module of it the
first time it is asked for a name, so a new entry is one new module: nothing to add to a list.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar

from tnbench.errors import UnknownEntry

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, axis: str, package: str | None = None) -> None:
        self.axis = axis
        self.package = package
        self._entries: dict[str, T] = {}
        self._discovered = package is None

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.axis} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def discover(self) -> None:
        """Import every module of the package whose name does not start with `_` (sub-packages
        are helpers, not entries)."""
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.ispkg and not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")

    def get(self, name: str) -> T:
        self.discover()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownEntry(f"{self.axis}={name!r} is not known; allowed: {', '.join(self.names())}") from None

    def resolve(self, section: Any) -> T:
        """The entry a config section names (`section.name`)."""
        return self.get(section.name)

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self.discover()
        return name in self._entries
