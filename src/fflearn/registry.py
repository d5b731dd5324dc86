"""Named registries: the extension points of fflearn.

Every swappable ingredient (methods, losses, negative samplers, label injections, update
schemes, models, datasets) is looked up by name in one :class:`Registry`. A user adds their own
from their own code, without editing fflearn::

    from fflearn.registry import LOSSES

    @LOSSES.register("my-loss")
    class MyLoss: ...

and then selects it by name in a config or on the CLI (``--plugin mymodule`` imports the module).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to factories, with a clear error for unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False) -> Any:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""

        def add(o: T) -> T:
            if name in self._items and not overwrite:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = o
            return o

        if obj is None:
            return add
        return add(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))


DatasetLoader = Callable[..., Any]

METHODS: Registry[Any] = Registry("method")
LOSSES: Registry[Any] = Registry("loss")
NEGATIVES: Registry[Any] = Registry("negative sampler")
LABELS: Registry[Any] = Registry("label injection")
SCHEMES: Registry[Any] = Registry("update scheme")
MODELS: Registry[Any] = Registry("model")
DATASETS: Registry[DatasetLoader] = Registry("dataset")
GOODNESS: Registry[Any] = Registry("goodness")
