"""Downloading, checksum verification and the small stamp file that remembers it.

Downloads are all-or-nothing: a file is streamed to a hidden temporary name next to its
destination, its md5 is checked against the upstream value, and only then renamed into place, so
a killed or truncated download never leaves a file that a later run would trust. The first
network failure stops the whole download (no retry loop): the caller turns it into one
:class:`DataError` that tells the user which files to fetch by hand.

``.fflearn-verified.json`` next to the data records what fflearn downloaded and verified (and
checksums it computed), keyed by size and mtime, so the check is not repeated on every load.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

from ..errors import DataError

log = logging.getLogger("fflearn.data")

DOWNLOAD_TIMEOUT = 10.0  # seconds per connect/read; offline machines must fail fast
STAMP_NAME = ".fflearn-verified.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Resource:
    """One upstream file: its name on disk, its address and its md5 as published upstream."""

    filename: str
    url: str
    md5: str
    archive: bool = False  # a .tar.gz to unpack in place after verification


class DownloadFailed(DataError):
    """The network (or the host) did not deliver a file; nothing was kept."""


def md5_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def fetch(resource: Resource, folder: Path, timeout: float | None = None) -> Path:
    """Download ``resource`` into ``folder``, verify its md5, and return its final path.

    Raises :class:`DownloadFailed` when the host cannot be reached, and :class:`DataError` when
    the delivered bytes are truncated or corrupt (the partial file is deleted either way).
    """
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / resource.filename
    tmp = folder / f".{resource.filename}.{os.getpid()}.part"
    h = hashlib.md5(usedforsecurity=False)
    received = 0
    expected_len: int | None = None
    log.info("downloading %s", resource.url)
    try:
        with urlopen(resource.url, timeout=DOWNLOAD_TIMEOUT if timeout is None else timeout) as r:
            length = r.headers.get("Content-Length") if getattr(r, "headers", None) else None
            if length and str(length).isdigit():
                expected_len = int(length)
            with open(tmp, "wb") as out:
                while chunk := r.read(_CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    received += len(chunk)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise DownloadFailed(f"{resource.url}: {_describe(exc)}") from None
    if expected_len is not None and received != expected_len:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"download of {resource.filename} from {resource.url} was truncated "
            f"({received} of {expected_len} bytes); the partial file was deleted"
        )
    got = h.hexdigest()
    if got != resource.md5:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"downloaded {resource.filename} from {resource.url} is corrupt or truncated "
            f"(md5 {got}, expected {resource.md5}); the file was deleted"
        )
    os.replace(tmp, dest)
    record(folder, dest.name, md5=got, origin="download", url=resource.url)
    return dest


def extract(archive: Path, dest: Path) -> list[Path]:
    """Unpack a verified tar archive into ``dest`` atomically per top-level entry.

    Unpacks into a hidden scratch folder first (with tarfile's ``data`` filter, which refuses
    absolute paths, ``..`` and device files), then moves the top-level entries into place, so an
    interrupted extraction never leaves a half-written dataset folder behind.
    """
    scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    moved: list[Path] = []
    try:
        with tarfile.open(archive, "r:*") as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(scratch, filter="data")
            else:  # Python < 3.10.12 / 3.11.4: check members ourselves
                tf.extractall(scratch, members=_safe_members(tf, archive))
        for entry in sorted(scratch.iterdir()):
            target = dest / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
            moved.append(target)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot unpack {archive}: {exc}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return moved


def _safe_members(tf: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members = tf.getmembers()
    for m in members:
        parts = Path(m.name).parts
        if m.name.startswith(("/", "\\")) or ".." in parts or not (m.isfile() or m.isdir()):
            raise DataError(f"{archive} contains an unsafe entry {m.name!r}; refusing to unpack it")
    return members


# -- stamp file -----------------------------------------------------------------------------


def read_stamp(folder: Path) -> dict[str, Any]:
    """The stamp of ``folder`` (empty if missing or unreadable: it is only a cache)."""
    try:
        data = json.loads((folder / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return {}
    return data


def _fingerprint(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def record(folder: Path, name: str, *, md5: str | None, origin: str, url: str = "") -> None:
    """Remember ``md5`` of ``folder/name`` (``origin``: "download" or "checked").

    Silently does nothing where the folder is read-only: the stamp only saves time.
    """
    record_many(folder, {name: md5}, origin=origin, url=url)


def record_many(folder: Path, md5s: Mapping[str, str | None], *, origin: str, url: str = "") -> None:
    """:func:`record` for several files of one folder, with a single stamp write."""
    data = read_stamp(folder) or {"fflearn": 1, "files": {}}
    changed = False
    for name, md5 in md5s.items():
        fp = _fingerprint(folder / name)
        if fp is None:
            continue
        entry: dict[str, Any] = {"size": fp[0], "mtime_ns": fp[1], "origin": origin}
        if md5:
            entry["md5"] = md5
        if url:
            entry["url"] = url
        data["files"][name] = entry
        changed = True
    if changed:
        _write_stamp(folder, data)


def record_archive(folder: Path, resource: Resource) -> None:
    """Remember that ``folder`` was unpacked from ``resource``, downloaded and md5-verified."""
    data = read_stamp(folder) or {"fflearn": 1, "files": {}}
    data["archive"] = {"name": resource.filename, "url": resource.url, "md5": resource.md5}
    _write_stamp(folder, data)


def _write_stamp(folder: Path, data: dict[str, Any]) -> None:
    tmp = folder / f".{STAMP_NAME}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, folder / STAMP_NAME)
    except OSError:
        tmp.unlink(missing_ok=True)


def _stamp_entry(folder: Path, name: str, stamp: dict[str, Any]) -> dict[str, Any] | None:
    entry = stamp.get("files", {}).get(name)
    if not isinstance(entry, dict):
        return None
    fp = _fingerprint(folder / name)
    if fp is None or (entry.get("size"), entry.get("mtime_ns")) != fp:
        return None  # the file changed since it was recorded
    return entry


def downloaded_by_fflearn(folder: Path, names: list[str]) -> bool:
    """True if every one of ``names`` was downloaded and verified by fflearn, unchanged since."""
    stamp = read_stamp(folder)
    for name in names:
        entry = _stamp_entry(folder, name, stamp)
        if entry is None or entry.get("origin") != "download":
            return False
    return bool(names)


def upstream_status(folder: Path, expected: dict[str, str | None]) -> bool | None:
    """Whether the files in ``folder`` are the upstream originals, as far as can be told.

    ``expected`` maps file names to upstream md5s (None where no per-file checksum is published).
    True: every file was downloaded by fflearn or matches its md5; False: some file differs;
    None: nothing to compare against. Computed md5s are cached in the stamp.
    """
    names = list(expected)
    if downloaded_by_fflearn(folder, names):
        return True
    stamp = read_stamp(folder)
    computed: dict[str, str] = {}
    known = False
    result = True
    for name, md5 in expected.items():
        if md5 is None:
            continue
        known = True
        entry = _stamp_entry(folder, name, stamp)
        if entry is not None and entry.get("origin") == "download":
            continue
        if entry is not None and isinstance(entry.get("md5"), str):
            got = entry["md5"]
        else:
            try:
                got = md5_file(folder / name)
            except OSError as exc:
                raise DataError(f"cannot read {folder / name}: {exc.strerror or exc}") from None
            computed[name] = got
        if got != md5:
            result = False
            break
    if computed:
        record_many(folder, computed, origin="checked")
    return result if known else None
