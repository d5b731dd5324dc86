"""Where fflearn looks for data, and where it may write downloads.

An explicit ``data_dir`` (``--data-dir``) is authoritative: the data is looked for (and
downloaded) there only, so a run never silently trains on another copy. Without one, the lookup
order is ``$FFLEARN_DATA`` (may hold several folders separated by ``os.pathsep``), then the user
cache folder (``$XDG_CACHE_HOME/fflearn`` or ``~/.cache/fflearn``), then system-wide places such
as ``/usr/share/datasets`` (where Debian's ``dataset-fashion-mnist`` package installs). Within each root the loaders accept the common
layouts (``mnist/raw/``, torchvision's ``MNIST/raw/``, ``cifar-10-batches-bin/``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

ENV_VAR = "FFLEARN_DATA"

# System-wide read-only places searched after the user's own folders (a list so that tests and
# packagers can change it).
STANDARD_ROOTS: list[Path] = [Path("/usr/share/datasets")]


def cache_dir() -> Path:
    """The per-user cache folder: ``$XDG_CACHE_HOME/fflearn`` or ``~/.cache/fflearn``."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not base.strip():
        base = str(Path.home() / ".cache")
    return Path(base).expanduser() / "fflearn"


def env_roots() -> list[Path]:
    """The folders named by ``$FFLEARN_DATA`` (empty entries ignored)."""
    value = os.environ.get(ENV_VAR, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def _dedupe(paths: Iterable[Path]) -> list[Path]:
    seen: set[str] = set()
    out: list[Path] = []
    for p in paths:
        key = os.path.normpath(os.path.abspath(p))
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _explicit(data_dir: str | os.PathLike[str] | None) -> list[Path]:
    return [Path(data_dir).expanduser()] if data_dir is not None and str(data_dir).strip() else []


def data_roots(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """All data roots in lookup order (existing or not): only ``data_dir`` when it is given."""
    roots = _explicit(data_dir)
    if roots:
        return roots
    roots += env_roots()
    roots.append(cache_dir())
    roots += STANDARD_ROOTS
    return _dedupe(roots)


def writable_roots(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The roots a download may go to, in order: the explicit dir alone, else ``$FFLEARN_DATA``, cache."""
    roots = _explicit(data_dir)
    if roots:
        return roots
    roots += env_roots()
    roots.append(cache_dir())
    return _dedupe(roots)


def is_writable(path: Path) -> bool:
    """True if ``path`` exists as a writable folder, or could be created by us."""
    p = Path(os.path.abspath(path))
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def candidate_dirs(root: Path, rels: Iterable[str]) -> list[Path]:
    """Folders under (or at) ``root`` that may hold a dataset laid out as one of ``rels``.

    Each ``rel`` is a folder path relative to a data root (``"mnist/raw"``, ``""`` for the root
    itself). A root that already points inside such a layout also matches, so that
    ``--data-dir ~/data/mnist`` and ``--data-dir ~/data/mnist/raw`` work as well as
    ``--data-dir ~/data``.
    """
    out: list[Path] = []
    root_parts = Path(os.path.abspath(root)).parts
    for rel in rels:
        parts = Path(rel).parts if rel not in ("", ".") else ()
        out.append(root.joinpath(*parts))
        for k in range(len(parts), 0, -1):
            if len(root_parts) >= k and tuple(root_parts[-k:]) == tuple(parts[:k]):
                out.append(root.joinpath(*parts[k:]))
    return _dedupe(out)
