"""CUB-200-2011 from its official folder layout: 200 bird species and 312 binary attributes.

``DATA_ROOT/CUB_200_2011/`` as the official archive unpacks it: ``images.txt`` (id, relative
path under ``images/``), ``image_class_labels.txt`` (id, class id), ``train_test_split.txt``
(id, 1 = train), ``classes.txt`` (class id, ``001.Black_footed_Albatross``) and
``attributes/image_attribute_labels.txt`` (image id, attribute id, is_present, certainty,
time; a few lines of the official file carry an extra column, which is ignored). Attribute
names come from ``attributes.txt`` (the archive puts it beside ``CUB_200_2011/``), else
``attribute 1`` ...

Official split: 5,994 train / 5,794 test images. ``attributes`` is ``is_present`` as a
uint8 ``[N, 312]`` multi-hot for the attribute probe. Class names drop the number and the
underscores (``Black footed Albatross``): they are also language-model prompts. Images are
decoded on demand like ImageFolder's (shorter side to ``image_size``, centre crop). The
fingerprint hashes every annotation file's bytes and every image's path and size.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pytest_visprobe.datasets.base import DatasetError, Dataset, FileImages, Split, check_int, fingerprint_of
from pytest_visprobe.datasets.storage import DOWNLOAD_FLAG, corrupt, download_hint, download_lock, manifest, not_found, resolve_root

DESCRIPTION = ("CUB-200-2011: 5,994/11,788 bird photos, 200 species, 312 binary attributes "
               "(official train_test_split.txt)")
FOLDER = "CUB_200_2011"
URL = "https://data.caltech.edu/records/65de6-vhq41/files/CUB_200_2011.tgz"
MD5 = "97eceeb196236b17998738112f37df78"
N_ATTRIBUTES = 312
LOADER_VERSION = 1

_TABLES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt",
           "attributes/image_attribute_labels.txt")


def present(data_root: Path) -> bool:
    return all((Path(data_root) / FOLDER / name).is_file() for name in _TABLES)


def load_cub(
    *, seed: int = 0, root: str | os.PathLike[str] | None = None, download: bool = False,
    image_size: int = 224,
) -> Dataset:
    """The official train/test split of CUB-200-2011 with labels and attributes."""
    image_size = check_int("cub", "image_size", image_size, minimum=8)
    data_root = resolve_root(root)
    folder = data_root / FOLDER
    with download_lock(data_root, "cub", download):
        if download and not present(data_root):
            _download(data_root)
        missing = [folder / name for name in _TABLES if not (folder / name).is_file()]
        if missing:
            raise not_found("CUB-200-2011", missing, how=download_hint(data_root))

    ids, paths = _table(folder / "images.txt", str, data_root)
    label_of = dict(zip(*_table(folder / "image_class_labels.txt", int, data_root)))
    train_of = dict(zip(*_table(folder / "train_test_split.txt", int, data_root)))
    class_ids, class_dirs = _table(folder / "classes.txt", str, data_root)
    for name, table in (("image_class_labels.txt", label_of), ("train_test_split.txt", train_of)):
        lacking = [i for i in ids if i not in table]
        if lacking:
            raise corrupt("CUB-200-2011", folder / name, f"no row for {len(lacking)} of the "
                          f"{len(ids)} images, e.g. image {lacking[0]}", _refetch(data_root))
    if class_ids != list(range(1, len(class_ids) + 1)):
        raise corrupt("CUB-200-2011", folder / "classes.txt", "class ids are not 1..K in order",
                      _refetch(data_root))
    labels = np.array([label_of[i] - 1 for i in ids], dtype=np.int64)
    if labels.min() < 0 or labels.max() >= len(class_ids):
        raise corrupt("CUB-200-2011", folder / "image_class_labels.txt",
                      f"class ids outside 1..{len(class_ids)}", _refetch(data_root))
    is_train = np.array([train_of[i] == 1 for i in ids])
    attributes = _attributes(folder / "attributes/image_attribute_labels.txt", ids, data_root)

    files = [folder / "images" / p for p in paths]
    absent = [f for f in files if not f.is_file()]
    if absent:
        raise corrupt("CUB-200-2011", folder / "images", f"{len(absent)} of {len(files)} images "
                      f"listed in images.txt are missing, e.g. {absent[0]}", _refetch(data_root))
    names_file = next((p for p in (folder / "attributes" / "attributes.txt", folder / "attributes.txt",
                                   data_root / "attributes.txt") if p.is_file()), None)
    attribute_names = _attribute_names(names_file, data_root)

    splits = {}
    for name, rows in (("train", np.flatnonzero(is_train)), ("test", np.flatnonzero(~is_train))):
        splits[name] = Split(
            images=FileImages(tuple(str(files[r]) for r in rows), image_size),
            labels=labels[rows], attributes=attributes[rows],
        )
    tables = [folder / name for name in _TABLES] + ([names_file] if names_file else [])
    return Dataset(
        name="cub",
        splits=splits,
        class_names=[_readable(c) for c in class_dirs],
        attribute_names=attribute_names,
        targets=frozenset({"label", "attributes"}),
        fingerprint=fingerprint_of("cub", LOADER_VERSION, image_size,
                                   manifest(data_root, files, content=tables)),
        description=DESCRIPTION,
    )


def _table(path: Path, kind: type, data_root: Path) -> tuple[list[int], list]:
    """A two-column ``id value`` text table; a malformed line is named."""
    ids, values = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            try:
                ids.append(int(parts[0]))
                values.append(kind(parts[1].strip()))
            except (IndexError, ValueError):
                raise corrupt("CUB-200-2011", path, f"line {number} is not 'id value': {line.strip()!r}",
                              _refetch(data_root)) from None
    if not ids:
        raise corrupt("CUB-200-2011", path, "the file is empty", _refetch(data_root))
    return ids, values


def _attributes(path: Path, ids: list[int], data_root: Path) -> np.ndarray:
    """``is_present`` per (image, attribute) as uint8 [N, 312]; every pair must be listed."""
    import pandas as pd

    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, names=range(6), usecols=[0, 1, 2],
                            dtype="Int64", engine="c").dropna()
    except (ValueError, pd.errors.ParserError) as exc:
        raise corrupt("CUB-200-2011", path, f"unparsable: {exc}", _refetch(data_root)) from None
    image, attribute, value = (table[c].to_numpy(dtype=np.int64) for c in (0, 1, 2))
    row_of = np.full(max(max(ids), int(image.max(initial=0))) + 1, -1, dtype=np.int64)
    row_of[np.asarray(ids)] = np.arange(len(ids))
    rows = row_of[image]
    ok = (rows >= 0) & (attribute >= 1) & (attribute <= N_ATTRIBUTES)
    out = np.zeros((len(ids), N_ATTRIBUTES), dtype=np.uint8)
    seen = np.zeros((len(ids), N_ATTRIBUTES), dtype=bool)
    out[rows[ok], attribute[ok] - 1] = value[ok] > 0
    seen[rows[ok], attribute[ok] - 1] = True
    if not seen.all():
        lacking = int((~seen.all(axis=1)).sum())
        raise corrupt("CUB-200-2011", path, f"attribute rows are missing for {lacking} of "
                      f"{len(ids)} images (expected {N_ATTRIBUTES} per image); a truncated file?",
                      _refetch(data_root))
    return out


def _attribute_names(path: Path | None, data_root: Path) -> list[str]:
    if path is None:
        return [f"attribute {i}" for i in range(1, N_ATTRIBUTES + 1)]
    ids, names = _table(path, str, data_root)
    if ids != list(range(1, N_ATTRIBUTES + 1)):
        raise corrupt("CUB-200-2011", path, f"expected attribute ids 1..{N_ATTRIBUTES}",
                      "Replace it with the attributes.txt of the official archive, or delete it.")
    return names


def _readable(class_dir: str) -> str:
    """``001.Black_footed_Albatross`` -> ``Black footed Albatross``."""
    return class_dir.split(".", 1)[-1].replace("_", " ")


def _refetch(data_root: Path) -> str:
    return (f"Delete {data_root / FOLDER} and re-run with {DOWNLOAD_FLAG} to fetch a fresh copy "
            f"(or unpack CUB_200_2011.tgz from {URL} into {data_root}).")


def _download(data_root: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(URL, str(data_root), filename="CUB_200_2011.tgz", md5=MD5)
    except Exception as exc:  # URLError, md5 mismatch (RuntimeError), tarfile errors
        raise DatasetError(
            f"CUB-200-2011: downloading {URL} into {data_root} failed ({type(exc).__name__}: {exc}). "
            "Check the network connection and disk space and re-run, or download and unpack the "
            "archive by hand into that folder."
        ) from None
