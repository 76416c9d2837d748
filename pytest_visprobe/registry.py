"""One registry type behind every extension point: probes, datasets, encoder kinds, text models,
transformations, plots and profiles.

Entries may be lazy (``"package.module:attribute"`` strings, imported on first use), a duplicate
name is an error unless ``replace=True``, and an unknown name gets a "did you mean" that lists
what is registered. Nothing here imports torch, numpy or pydantic.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, Iterator, TypeVar

from pytest_visprobe.errors import RegistryError, UnknownNameError

T = TypeVar("T")


def resolve(target: str) -> object:
    """Import ``"package.module:attribute"`` (attribute may be dotted)."""
    module, sep, attribute = target.partition(":")
    if not sep or not module or not attribute:
        raise RegistryError(f"lazy entry {target!r} must look like 'package.module:attribute'.")
    found: object = importlib.import_module(module)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


class Registry(Generic[T]):
    """Named entries of one kind. ``kind`` names them in messages ("probe", "dataset", ...)."""

    def __init__(self, kind: str, *, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint  # how to add one, appended to "unknown" errors
        self._entries: dict[str, T | str] = {}
        self._loaders: list[Callable[[], None]] = []

    def register(self, name: str, entry: T | str, *, replace: bool = False) -> None:
        """Add ``entry`` (an object, or a lazy ``"module:attribute"`` string) under ``name``."""
        if not name or not isinstance(name, str):
            raise RegistryError(f"a {self.kind} needs a non-empty string name, got {name!r}.")
        if name in self._entries and not replace:
            raise RegistryError(
                f"{self.kind} {name!r} is already registered; pass replace=True to replace it on purpose."
            )
        self._entries[name] = entry

    def unregister(self, name: str) -> T:
        found = self.get(name)
        del self._entries[name]
        return found

    def on_first_use(self, loader: Callable[[], None]) -> None:
        """Call ``loader`` once before the first look-up (registers the built-in entries lazily)."""
        self._loaders.append(loader)

    def _load(self) -> None:
        while self._loaders:
            self._loaders.pop(0)()

    def get(self, name: str) -> T:
        self._load()
        try:
            entry = self._entries[name]
        except KeyError:
            raise UnknownNameError(self._unknown(name)) from None
        if isinstance(entry, str):
            entry = resolve(entry)  # type: ignore[assignment]
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def _unknown(self, name: str) -> str:
        names = self.names()
        guess = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {guess[0]!r}?" if guess else ""
        listed = ", ".join(names) if names else "none"
        return f"unknown {self.kind} {name!r}.{hint} Registered: {listed}.{' ' + self.hint if self.hint else ''}"

    def names(self) -> list[str]:
        self._load()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def snapshot(self) -> dict[str, T | str]:
        """Every entry, the built-ins loaded: hand it to ``restore`` to undo later registrations."""
        self._load()
        return dict(self._entries)

    def restore(self, snapshot: dict[str, T | str]) -> None:
        self._entries.clear()
        self._entries.update(snapshot)

    def items(self) -> list[tuple[str, T]]:
        return [(name, self.get(name)) for name in self.names()]

    def __len__(self) -> int:
        return len(self.names())
