"""A small name -> factory registry shared by the plug-in families."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase names to classes or factories.

    Duplicate names are rejected (two plug-ins silently shadowing each other would
    change what a stored bitstream name means); an unknown name lists the choices.

    Args:
        kind: what is registered ("image codec", "flow"), used in messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@registry.register("my-codec")``."""
        if not isinstance(name, str) or not name or name != name.strip():
            raise RegistryError(f"invalid {self.kind} name: {name!r}")

        def deco(obj: T) -> T:
            if name in self._items:
                raise RegistryError(
                    f"{self.kind} {name!r} is already registered "
                    f"(by {self._items[name]!r})"
                )
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            choices = ", ".join(sorted(self._items)) or "(none)"
            raise RegistryError(
                f"unknown {self.kind} {name!r}; choices: {choices}"
            ) from None

    def build(self, name: str, /, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
