"""The common shape of a built-in dataset loader: find, download, read, label.

Each built-in dataset is a :class:`Source` instance registered in ``fflearn.registry.DATASETS``;
calling it as ``source(root, download)`` returns a :class:`Dataset`. Its ``locate`` method lets
:func:`fflearn.data.load_dataset` search several data roots before deciding to download.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ..errors import DataError
from .dataset import Dataset
from .download import (
    DownloadFailed,
    Resource,
    extract,
    fetch,
    record_archive,
    record_many,
)
from .locate import ENV_VAR, candidate_dirs, is_writable

log = logging.getLogger("fflearn.data")

_JPEG_RE = re.compile(r"JPEG[- ]DERIVED", re.IGNORECASE)
_INEXACT_RE = re.compile(r"NOT\s+BYTE[- ]EXACT", re.IGNORECASE)


def provenance_note(folder: Path) -> str | None:
    """The note for a rebuilt copy ("JPEG-derived copy", ...) if a PROVENANCE.txt says so.

    Shared offline mirrors document rebuilt copies in a PROVENANCE.txt next to the data folder;
    results obtained on such a copy must say so.
    """
    for d in (folder, folder.parent, folder.parent.parent):
        try:
            text = (d / "PROVENANCE.txt").read_text(errors="replace")
        except OSError:
            continue
        if _JPEG_RE.search(text):
            return "JPEG-derived copy"
        if _INEXACT_RE.search(text):
            return "non-upstream copy"
    return None


def _has_visible_entries(folder: Path) -> bool:
    try:
        return any(not p.name.startswith(".") for p in folder.iterdir())
    except OSError:
        return False


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders a failed download created, deepest first, if they are still empty."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            return


class Source:
    """A built-in dataset. Subclasses set the class attributes and implement the hooks."""

    name: str = ""
    title: str = ""  # human name used in labels and messages, e.g. "CIFAR-10"
    rels: tuple[str, ...] = ()  # dataset folders relative to a data root, preferred first
    download_rel: str = ""  # where downloads go, relative to the chosen root
    resources: tuple[Resource, ...] = ()
    placement: str = ""  # how to lay out hand-fetched files, with DIR for the data root

    # -- hooks -----------------------------------------------------------------------------

    def missing_files(self, folder: Path) -> list[str]:
        """Required files absent from ``folder`` (empty list: a complete copy is there)."""
        raise NotImplementedError

    def read(self, folder: Path) -> Dataset:
        """Parse and validate the files in ``folder``; raise DataError on anything wrong."""
        raise NotImplementedError

    def downloaded_files(self, folder: Path) -> list[str]:
        """Files of an unpacked archive to mark as downloaded-and-verified in the stamp."""
        return []

    # -- shared logic ----------------------------------------------------------------------

    def locate(self, root: Path) -> Path | None:
        """The folder under ``root`` holding a complete copy, or None."""
        for d in candidate_dirs(Path(root), self.rels):
            if d.is_dir() and not self.missing_files(d):
                return d
        return None

    def __call__(self, root: Path, download: bool = True, *, searched: list[Path] | None = None) -> Dataset:
        root = Path(root)
        folder = self.locate(root)
        if folder is None:
            searched = searched or [root]
            if not download:
                raise self.missing_error(searched, "Downloading was disabled (download=False).")
            self.download(root, searched)
            folder = self.locate(root)
            if folder is None:
                raise DataError(
                    f"{self.title}: the download into {root} finished but no complete copy is "
                    f"there; expected {self.placement.replace('DIR', str(root))}"
                )
        return self.read(folder)

    def download(self, root: Path, searched: list[Path]) -> None:
        """Fetch all resources into ``root/download_rel``; one DataError on any failure."""
        if not is_writable(root):
            raise self.missing_error(searched, f"Cannot download: the data folder {root} is not writable.")
        target = root / self.download_rel
        created = [p for p in (target, *target.parents) if not p.exists()]
        try:
            for res in self.resources:
                dest = target / res.filename
                if not res.archive and dest.exists():
                    continue  # keep what the user (or an earlier partial run) put there
                path = fetch(res, target)
                if res.archive:
                    extract(path, target)
                    path.unlink(missing_ok=True)
                    folder = self.locate(root)
                    if folder is not None:
                        record_archive(folder, res)
                        names = self.downloaded_files(folder)
                        record_many(folder, dict.fromkeys(names), origin="download", url=res.url)
        except DownloadFailed as exc:
            _remove_empty(created)
            raise self.missing_error(searched, f"Download failed: {exc}") from None
        except DataError as exc:
            _remove_empty(created)
            raise self.missing_error(searched, str(exc)) from None
        except OSError as exc:
            _remove_empty(created)
            raise self.missing_error(searched, f"Cannot write to {target}: {exc.strerror or exc}") from None

    def missing_error(self, searched: list[Path], reason: str) -> DataError:
        """One message: what was searched, why no download, which files to get, where to put them."""
        lines = [f"{self.title} data not found (searched: {', '.join(map(str, searched))})."]
        for root in searched:
            for d in candidate_dirs(root, self.rels):
                if _has_visible_entries(d):
                    missing = self.missing_files(d)
                    if missing:
                        lines.append(f"{d} is incomplete: it lacks {', '.join(missing)}.")
        lines.append(reason)
        lines.append("Needed files:")
        for res in self.resources:
            lines.append(f"  {res.filename}  from {res.url}  (md5 {res.md5})")
        example = f" (for example DIR={searched[0]})" if searched else ""
        lines.append(f"Put them in {self.placement}, then pass --data-dir DIR or set {ENV_VAR}=DIR{example}.")
        return DataError("\n".join(lines))

    def make_label(self, folder: Path, upstream: bool | None) -> str:
        """``title``, annotated when the copy is known not to be the upstream original."""
        if upstream is True:
            return self.title
        note = provenance_note(folder)
        if note is None and upstream is False:
            note = "non-upstream copy"
        return f"{self.title} ({note})" if note else self.title
