"""Where real datasets live on disk, how they are fingerprinted, and how absence is reported.

Real datasets sit under one data root (``--visprobe-data-root``, default
``$VISPROBE_DATA_ROOT`` or ``~/.cache/pytest-visprobe/data``), each in the folder its usual
tool creates (torchvision's ``cifar-10-batches-py``, ``MNIST/raw``, ...), so a root that
torchvision already filled is used as is. Nothing is downloaded unless asked
(``--visprobe-download``); a missing dataset raises ``DatasetNotFoundError``, which the
plugin turns into a skip naming the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Iterable, Iterator

from pytest_visprobe.datasets.base import DatasetError, DatasetNotFoundError

#: Command-line spellings, repeated here so the datasets package need not import pytest.
DATA_ROOT_FLAG = "--visprobe-data-root"
DOWNLOAD_FLAG = "--visprobe-download"

_CHUNK = 1 << 20


def default_data_root() -> Path:
    """``$VISPROBE_DATA_ROOT``, else ``$XDG_CACHE_HOME/pytest-visprobe/data`` (~/.cache/...)."""
    if os.environ.get("VISPROBE_DATA_ROOT"):
        return Path(os.environ["VISPROBE_DATA_ROOT"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytest-visprobe" / "data"


def resolve_root(root: str | os.PathLike[str] | None) -> Path:
    """The data root as an absolute path (files are read later, maybe from another cwd)."""
    path = default_data_root() if root is None else Path(root).expanduser()
    return Path(os.path.abspath(path))


def not_found(title: str, missing: Iterable[Path], *, how: str) -> DatasetNotFoundError:
    """The skip message: what is missing, where it was looked for, and the fix."""
    shown_paths: list[str] = []
    for path in missing:  # a folder that does not exist stands for all the files inside it
        folder = Path(path).parent
        entry = f"{folder}{os.sep}" if not folder.exists() else str(path)
        if not any(entry.startswith(shown) for shown in shown_paths if shown.endswith(os.sep)):
            shown_paths.append(entry)
    shown = ", ".join(shown_paths[:3])
    if len(shown_paths) > 3:
        shown += f" and {len(shown_paths) - 3} more"
    return DatasetNotFoundError(f"{title} is not on disk (missing: {shown}). {how}")


def download_hint(root: Path) -> str:
    """The usual fix for a downloadable dataset."""
    return (
        f"Re-run with {DOWNLOAD_FLAG} to fetch it into {root}, or point {DATA_ROOT_FLAG} "
        "(or $VISPROBE_DATA_ROOT) at a folder that already holds it."
    )


def corrupt(title: str, path: Path | str, cause: str, fix: str) -> DatasetError:
    return DatasetError(f"{title}: {path} is corrupt or incomplete ({cause}). {fix}")


def file_digest(path: Path) -> str:
    """blake2b of a file's bytes, streamed (annotation files can be tens of megabytes)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest(root: Path, files: Iterable[Path], *, content: Iterable[Path] = ()) -> list[tuple]:
    """What identifies a dataset on disk: relative path and size of each file, plus the
    bytes' hash for ``content`` files (labels, splits, annotations: small, and where an edit
    keeps the size). Goes into the fingerprint, so edited data never reuses cached features."""
    rows: list[tuple] = []
    for path in files:
        rows.append((_relative(path, root), os.path.getsize(path)))
    for path in content:
        rows.append((_relative(path, root), os.path.getsize(path), file_digest(path)))
    return rows


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


@contextlib.contextmanager
def download_lock(root: Path, name: str, enabled: bool) -> Iterator[None]:
    """Serialise downloads of one dataset across pytest-xdist workers (one fetches, the rest
    wait and then find it on disk)."""
    if not enabled:
        yield
        return
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{name}.download.lock")):
        yield
