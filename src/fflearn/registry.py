"""Named registries: the extension points of fflearn, and the one rule that builds what they hold.

Every swappable ingredient (methods, losses, negative samplers, label injections, heads, update
schemes, goodness functions, models, normalisations, poolings, lr schedules, datasets, callbacks)
is looked up by name in one :class:`Registry`. A user adds their own from their own code,
without editing fflearn::

    from fflearn.registry import LOSSES

    @LOSSES.register("focal-symba")
    class FocalSymBa:
        def __init__(self, alpha: float = 4.0, focal_gamma: float = 2.0) -> None: ...
        def __call__(self, g_pos, g_neg): ...   # one loss per sample

and selects it by name in a config or on the CLI (``--plugin mymodule --loss focal-symba``).

**Construction** (:func:`construct`): a registered class is built by filling each constructor
parameter, by name, from the *context* the caller gives (e.g. ``num_classes``), else from the
config field of that name (``alpha`` above is the config's ``alpha``), else from the config's
plugin hyperparameters (``focal_gamma``), else its default; a parameter named ``cfg`` gets the
whole config. A class may instead define
``from_config(cfg, **context)``. Anything else registered (a plain function: a goodness, a
stateless negative sampler) is used as it is.

**Plugin hyperparameters** (:func:`declared_params`): a constructor parameter that is neither
context nor a config field is a hyperparameter the plugin declares. It becomes a flag
(``--focal-gamma 1.5``) and a YAML key (``focal_gamma: 1.5``), is type-checked against its
annotation, saved in ``config.yaml`` under ``params`` and restored on resume.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to ingredients, with a clear error for unknown names.

    ``context``: the constructor parameters that the code building an entry supplies itself
    (never config fields or hyperparameters). ``aliases``: other spellings of a name (matched
    case-insensitively), e.g. ``fmnist`` for ``fashion-mnist``.
    """

    def __init__(self, kind: str, context: Iterable[str] = (), aliases: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.context = frozenset(context)
        self.aliases: dict[str, str] = dict(aliases or {})
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

    def canonical(self, name: str) -> str:
        """The registered name for ``name``: itself, an alias, or the same letters in lower case;
        ``name`` unchanged when none fits (``get`` then names the choices)."""
        if name in self._items:
            return name
        key = name.strip().lower()
        key = self.aliases.get(key, key)
        return key if key in self._items else name

    def get(self, name: str) -> T:
        try:
            return self._items[self.canonical(name)]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.canonical(name) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))


DatasetLoader = Callable[..., Any]

METHODS: Registry[Any] = Registry("method")
LOSSES: Registry[Any] = Registry("loss")
NEGATIVES: Registry[Any] = Registry("negative sampler", context=("num_classes", "num_train", "device"))
LABELS: Registry[Any] = Registry("label injection", context=("num_classes", "height", "width", "value"))
HEADS: Registry[Any] = Registry("head", context=("features", "num_classes", "shape"))
SCHEMES: Registry[Any] = Registry("update scheme")
MODELS: Registry[Any] = Registry("model")
NORMS: Registry[Any] = Registry("normalisation", context=("shape",))
POOLS: Registry[Any] = Registry("head pool")
SCHEDULES: Registry[Any] = Registry("lr schedule")
GOODNESS: Registry[Any] = Registry("goodness")
ANCHOR_GOODNESS: Registry[Any] = Registry("anchor goodness")
CALLBACKS: Registry[Any] = Registry("callback")
DATASETS: Registry[DatasetLoader] = Registry("dataset", aliases={
    "fmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10", "cifar_10": "cifar10", "cifar-100": "cifar100", "cifar_100": "cifar100",
    "imagenette2": "imagenette",
})

# registries whose entries are built by ``construct`` (and may declare hyperparameters)
BUILT: tuple[Registry[Any], ...] = (LOSSES, NEGATIVES, LABELS, HEADS, SCHEMES, NORMS, CALLBACKS, GOODNESS,
                                    ANCHOR_GOODNESS)


def _params(obj: Any) -> list[inspect.Parameter]:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [p for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj.__init__ if isinstance(obj, type) else obj)  # type: ignore[misc]
    except Exception:  # a plugin's annotations may name what its module does not import
        return {}


def construct(registry: Registry[Any], name: str, cfg: Any, **context: Any) -> Any:
    """Build the ``registry`` entry ``name`` as the module docstring says."""
    obj = registry.get(name)
    if hasattr(obj, "from_config"):
        return obj.from_config(cfg, **context)
    if not isinstance(obj, type):
        return obj
    params: dict[str, Any] = getattr(cfg, "params", None) or {}
    kwargs: dict[str, Any] = {}
    for p in _params(obj):
        if p.name in context:
            kwargs[p.name] = context[p.name]
        elif p.name == "cfg":  # a constructor that reads the whole config itself
            kwargs["cfg"] = cfg
        elif p.name != "params" and hasattr(cfg, p.name):
            kwargs[p.name] = getattr(cfg, p.name)
        elif p.name in params:
            kwargs[p.name] = params[p.name]
        elif p.default is p.empty:
            raise ConfigError(f"{registry.kind} {name!r} needs a value for {p.name!r}: set it in the config "
                              f"(--{p.name.replace('_', '-')})")
    try:
        return obj(**kwargs)
    except (TypeError, ValueError) as e:  # a constructor refusing a value: name the ingredient
        raise ConfigError(f"{registry.kind} {name!r}: {e}") from None


def declared_params(config_fields: Iterable[str]) -> dict[str, tuple[Any, Any, str]]:
    """Hyperparameters that registered ingredients declare beyond the config's fields:
    name -> (type, default, "kind 'name'" of the first ingredient declaring it)."""
    fields = set(config_fields)
    out: dict[str, tuple[Any, Any, str]] = {}
    for reg in BUILT:
        for name, obj in reg.items():
            if not isinstance(obj, type) or hasattr(obj, "from_config"):
                continue
            hints = _hints(obj)
            for p in _params(obj):
                if p.name in reg.context or p.name in fields or p.name in out or p.name in ("self", "cfg"):
                    continue
                default = None if p.default is p.empty else p.default
                typ = hints.get(p.name, type(default) if default is not None else str)
                out[p.name] = (typ, default, f"{reg.kind} {name!r}")
    return out
