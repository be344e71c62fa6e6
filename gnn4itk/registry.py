"""A name -> object registry filled by decorators in the objects' own files (stage kinds, model classes).

When a name is first not found, every module of the registry's package is imported once, so an object in
a new file of that package is found without any other line. Objects elsewhere register when their module
is imported.
"""

from __future__ import annotations

import importlib
import pkgutil


class Registry:
    """Names -> registered objects.

    Args:
        what: what the names name, for messages (``"model"``, ``"edge_classification kind"``).
        package: the package whose modules are imported once when a name is first not found.
    """

    def __init__(self, what: str, package: str):
        self.what = what
        self.package = package
        self._entries: dict[str, object] = {}
        self._discovered = False

    def add(self, name: str, target) -> None:
        """Register ``target`` as ``name``; the same name for another object is an error."""
        known = self._entries.get(name)
        if known is not None and known != target:
            raise ValueError(f"{self.what} {name!r} is registered twice ({known!r} and {target!r})")
        self._entries[name] = target

    def get(self, name: str):
        """The object registered as ``name``.

        Raises:
            ValueError: for an unknown name, naming the known ones.
        """
        if name not in self._entries:
            self._discover()
        if name not in self._entries:
            raise ValueError(f"unknown {self.what} {name!r}: expected one of {self.names()}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Every registered name (the package's modules imported first)."""
        self._discover()
        return sorted(self._entries)

    def items(self) -> list[tuple[str, object]]:
        """(name, object) of what is registered so far."""
        return list(self._entries.items())

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{self.package}.{info.name}")
