"""Plugins: modules (or ``.py`` files) that register their own ingredients when imported.

``--plugin NAME`` on any command, or the config's ``plugins`` list, imports them before the
config is read; the run records them, so ``fflearn eval``, ``--resume`` and
:func:`fflearn.load` import them again before rebuilding the network.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from .errors import FFLearnError

_loaded: dict[str, ModuleType] = {}


def canonical(name: str) -> str:
    """A file plugin as an absolute path (so a run records where it came from); modules as given."""
    return str(Path(name).expanduser().resolve()) if name.endswith(".py") or "/" in name else name


def import_plugin(name: str) -> ModuleType:
    """Import a module by name or a ``.py`` file by path, once; one FFLearnError if it fails."""
    key = canonical(name)
    if key in _loaded:
        return _loaded[key]
    try:
        if key.endswith(".py"):
            path = Path(key)
            if not path.is_file():
                raise FFLearnError(f"cannot import plugin {name!r}: no such file {path}")
            spec = importlib.util.spec_from_file_location(f"fflearn_plugin_{path.stem}", path)
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mod
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(key)
    except FFLearnError:
        raise
    except ImportError as e:
        raise FFLearnError(f"cannot import plugin {name!r}: {e} (give a module on the Python path or a "
                           f"path to a .py file)") from None
    except Exception as e:  # the plugin's own code failed: say where, keep it one line
        raise FFLearnError(f"plugin {name!r} failed while importing: {type(e).__name__}: {e}") from None
    _loaded[key] = mod
    return mod


def import_plugins(names: Iterable[str]) -> list[str]:
    """Import every plugin; returns their recorded (canonical) names."""
    out = []
    for n in names:
        import_plugin(n)
        out.append(canonical(n))
    return out
