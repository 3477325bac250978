"""A small named registry, the extension point of every built-in space."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from tunelab.spaces.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """An ordered mapping from names to entries that users extend with `register`.

    Args:
        kind: What the entries are, used in error messages ("optimizer", "schedule", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Add an entry under `name`.

        Args:
            name: The name configs refer to; letters, digits and underscores.
            entry: The entry.
            replace: Allow replacing an existing entry of the same name.

        Returns:
            The entry, so that `register` can be used in an expression.

        Raises:
            ValueError: The name is not an identifier, or is taken and `replace` is False.
        """
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{self.kind} names must be identifiers (letters, digits, _), got {name!r}")
        if name in self._entries and not replace:
            raise ValueError(f"a {self.kind} named {name!r} is already registered; pass replace=True to override it")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove and return the entry registered under `name`.

        Raises:
            UnknownNameError: No such entry.
        """
        entry = self.get(name)
        del self._entries[name]
        return entry

    def get(self, name: str) -> T:
        """Return the entry registered under `name`.

        Raises:
            UnknownNameError: No such entry; the message lists the registered names.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; registered {self.kind}s are: {', '.join(self._entries)}"
                f" (add your own with register())"
            ) from None

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def resolve(self, names: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
        """Check a user's selection of names against the registry.

        Args:
            names: One name, several, or None for all.

        Returns:
            The selected names in the order given (all names, in registration order, for None).

        Raises:
            UnknownNameError: A name is not registered.
            ValueError: The selection is empty or repeats a name.
        """
        if names is None:
            return self.names()
        if isinstance(names, str):
            names = (names,)
        names = tuple(names)
        if not names:
            raise ValueError(f"select at least one {self.kind}; registered: {', '.join(self._entries)}")
        if len(set(names)) != len(names):
            raise ValueError(f"{self.kind} names must not repeat, got {list(names)}")
        for name in names:
            self.get(name)
        return names

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
