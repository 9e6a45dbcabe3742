"""One registry per axis (dataset, model, method): name -> entry, filled by the entries themselves.

Entries come from three places:
- the package's own modules: the first time a registry is asked for a name it imports every
  public module of its package, so a new entry is one new module, nothing to add to a list;
- installed distributions, through the entry-point group of the axis (`tnbench.methods`,
  `tnbench.models`, `tnbench.datasets`): listed from their metadata (no import) and loaded
  the first time their name is asked for;
- a config section naming its entry with Hydra's `_target_` (a dotted path): `resolve`
  imports it and registers it under the section's `name`, so every later lookup by name
  (building the model, loading the data, the record) finds it.
"""
from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from tnbench.errors import ConfigError, UnknownEntry

T = TypeVar("T")

log = logging.getLogger(__name__)


class Registry(Generic[T]):
    """`accepts` says whether an object can be an entry of this axis (e.g. a Method subclass);
    `kind` names what it must be, for the error when it cannot."""

    def __init__(self, axis: str, package: str | None = None, entry_points: str | None = None,
                 accepts: Callable[[Any], bool] = callable, kind: str = "a callable") -> None:
        self.axis = axis
        self.package = package
        self.group = entry_points
        self.accepts = accepts
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._plugins: dict[str, Any] = {}  # name -> importlib.metadata.EntryPoint, not loaded yet
        self._outside: set[str] = set()  # names added by `_target_` or an entry point
        self._discovered = package is None and entry_points is None

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.axis} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def discover(self) -> None:
        """Import every module of the package whose name does not start with `_` (sub-packages
        are helpers, not entries), and list the entry points of installed distributions."""
        if self._discovered:
            return
        self._discovered = True
        if self.package is not None:
            pkg = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.ispkg and not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
        if self.group is not None:
            self._scan_entry_points()

    def _scan_entry_points(self) -> None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.group):
            if ep.name in self._plugins:
                continue
            if ep.name in self._entries:  # a plugin cannot replace a built-in entry
                log.warning("ignoring entry point %s = %s (%s): %s %r exists already",
                            ep.name, ep.value, self.group, self.axis, ep.name)
            else:
                self._plugins[ep.name] = ep

    def get(self, name: str) -> T:
        self.discover()
        if name not in self._entries and name not in self._plugins and self.group is not None:
            self._scan_entry_points()  # a distribution installed since the last look (a notebook)
        if name not in self._entries and name in self._plugins:
            ep = self._plugins[name]
            self._add(name, _load(lambda: ep.load(), f"entry point {ep.value!r} ({self.group})"),
                      f"entry point {name} = {ep.value}")
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownEntry(f"{self.axis}={name!r} is not known; allowed: {', '.join(self.names())}") from None

    def resolve(self, section: Any) -> T:
        """The entry a config section names: its `_target_` (a dotted path to the class or
        function, imported now and registered under `section.name`) or else its `name`."""
        target = section.get("_target_") if hasattr(section, "get") else None
        if not target:
            return self.get(section.name)
        name = section.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{self.axis}.name must be set for {self.axis}._target_={target!r} "
                              f"(it names the run and its records)")
        from pkgutil import resolve_name

        obj = _load(lambda: resolve_name(str(target)), f"{self.axis}._target_={target!r}")
        if name in self and self.get(name) is not obj:
            raise ConfigError(f"{self.axis}.name={name!r} is taken by another {self.axis}; give "
                              f"{self.axis}._target_={target!r} a name of its own")
        return self._add(name, obj, f"{self.axis}._target_={target!r}")

    def _add(self, name: str, obj: Any, origin: str) -> T:
        if not self.accepts(obj):
            raise ConfigError(f"{origin} is not {self.kind} (got {type(obj).__name__} {obj!r})")
        if name not in self._entries:
            self._outside.add(name)
        return self.register(name)(obj)

    def is_builtin(self, name: str, obj: Any) -> bool:
        """Whether `obj` is what the package itself registered under `name` (not an entry added
        by `_target_` or an entry point, even one naming a class of the package)."""
        self.discover()
        return name not in self._outside and self._entries.get(name) is obj

    def names(self) -> list[str]:
        self.discover()
        return sorted({*self._entries, *self._plugins})

    def __contains__(self, name: str) -> bool:
        self.discover()
        return name in self._entries or name in self._plugins


def _load(load: Callable[[], Any], what: str) -> Any:
    """Import a plugin's object; a missing module or name is the user's input, so one line."""
    try:
        return load()
    except (ImportError, AttributeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{what} cannot be imported: {first}") from None
