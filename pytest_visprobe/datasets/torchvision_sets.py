"""torchvision's classification datasets: CIFAR-10, CIFAR-100, MNIST, Fashion-MNIST, SVHN, STL-10.

Read (and, with ``download=True``, fetched) by torchvision's own dataset classes, from the
folders torchvision creates under the data root: ``cifar-10-batches-py/``,
``cifar-100-python/``, ``MNIST/raw/``, ``FashionMNIST/raw/``, ``svhn/`` (torchvision keeps
SVHN's ``.mat`` files directly in the root it is given; we give it ``DATA_ROOT/svhn``) and
``stl10_binary/``. Official train/test splits; STL-10's unlabeled images are not used.

torchvision checks the md5 of every CIFAR, SVHN and STL-10 file on load, so a truncated
download is caught there; MNIST's raw idx files carry no checksum, so their headers are
checked against their sizes. A corrupt file is named in a ``DatasetError``; a missing one
raises ``DatasetNotFoundError`` (a skip) with the fix. MNIST ``.gz`` files left in ``raw/``
(a manual download) are decompressed first, as torchvision does after downloading.

Images become uint8 ``[N, H, W, 3]`` without copying the dataset: greyscale is broadcast to
three channels and channel-first arrays are transposed views, so only the rows a probe asks
for are ever materialised. Class names are plain words (``aquarium fish``, ``zero``) since
they also feed language models' label embeddings ("a photo of {label}.").
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_visprobe.datasets.base import ArrayImages, Dataset, DatasetError, Split, fingerprint_of
from pytest_visprobe.datasets.storage import (
    DOWNLOAD_FLAG,
    corrupt,
    download_hint,
    download_lock,
    manifest,
    not_found,
    resolve_root,
)

#: Bumped whenever the conversion changes what a loader returns (part of the fingerprint).
LOADER_VERSION = 1

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


@dataclass(frozen=True)
class TorchvisionSet:
    """How one torchvision dataset class maps onto the registry."""

    name: str  # registry name
    title: str  # as people write it, for messages
    cls: str  # class in torchvision.datasets
    subdir: str  # torchvision's ``root`` relative to the data root ("" = the data root)
    split_arg: bool  # takes split="train"/"test" (else train=True/False)
    files: tuple[str, ...]  # what torchvision needs for both splits, relative to the data root
    description: str


_CIFAR10 = tuple(f"cifar-10-batches-py/{n}" for n in (
    "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
    "batches.meta"))
_CIFAR100 = tuple(f"cifar-100-python/{n}" for n in ("train", "test", "meta"))
_IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte")
_STL10 = tuple(f"stl10_binary/{n}" for n in (
    "train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin"))

SETS = (
    TorchvisionSet("cifar10", "CIFAR-10", "CIFAR10", "", False, _CIFAR10,
                   "CIFAR-10 (torchvision): 50,000/10,000 32x32 colour images, 10 classes"),
    TorchvisionSet("cifar100", "CIFAR-100", "CIFAR100", "", False, _CIFAR100,
                   "CIFAR-100 (torchvision): 50,000/10,000 32x32 colour images, 100 fine classes"),
    TorchvisionSet("mnist", "MNIST", "MNIST", "", False, tuple(f"MNIST/raw/{n}" for n in _IDX),
                   "MNIST (torchvision): 60,000/10,000 28x28 handwritten digits, greyscale as RGB"),
    TorchvisionSet("fashion_mnist", "Fashion-MNIST", "FashionMNIST", "", False,
                   tuple(f"FashionMNIST/raw/{n}" for n in _IDX),
                   "Fashion-MNIST (torchvision): 60,000/10,000 28x28 clothing images, greyscale "
                   "as RGB, 10 classes"),
    TorchvisionSet("svhn", "SVHN", "SVHN", "svhn", True, ("svhn/train_32x32.mat", "svhn/test_32x32.mat"),
                   "SVHN cropped digits (torchvision): 73,257/26,032 32x32 colour images, 10 "
                   "classes (label 10 is digit 0, as in torchvision)"),
    TorchvisionSet("stl10", "STL-10", "STL10", "", True, _STL10,
                   "STL-10 (torchvision): 5,000/8,000 96x96 colour images, 10 classes (the "
                   "unlabeled images must be present, as torchvision checks them, but are unused)"),
)


def _torchvision_class(spec: TorchvisionSet) -> Any:
    import torchvision.datasets as tvd

    return getattr(tvd, spec.cls)


def checked_files(spec: TorchvisionSet, data_root: Path) -> dict[Path, str | None]:
    """Every file torchvision needs for both splits, with the md5 torchvision checks (if any)."""
    return {data_root / name: md5 for name, md5 in torchvision_md5s(spec).items()}


def torchvision_md5s(spec: TorchvisionSet) -> dict[str, str | None]:
    """``spec.files`` with their md5 from torchvision's class attributes (None: not checked)."""
    cls = _torchvision_class(spec)
    if spec.cls in ("MNIST", "FashionMNIST"):
        known: dict[str, str | None] = {}
    elif spec.cls == "SVHN":
        known = {entry[1]: entry[2] for entry in cls.split_list.values()}
    else:
        known = {name: md5 for name, md5 in cls.train_list + cls.test_list}
        if spec.cls in ("CIFAR10", "CIFAR100"):
            known[cls.meta["filename"]] = cls.meta["md5"]
    return {name: known.get(name.rsplit("/", 1)[-1]) for name in spec.files}


def present(spec: TorchvisionSet, data_root: Path) -> bool:
    """All files there (no torch import: ``--visprobe-list`` calls this)."""
    return all((Path(data_root) / name).is_file() for name in spec.files)


def load_torchvision_set(
    spec: TorchvisionSet, *, seed: int = 0, root: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> Dataset:
    """Both official splits; ``seed`` is unused (the splits are fixed) but part of the contract."""
    data_root = resolve_root(root)
    files = checked_files(spec, data_root)
    with download_lock(data_root, spec.name, download):
        if spec.cls in ("MNIST", "FashionMNIST"):
            _decompress_leftover_gz(spec, files)
        missing = [path for path in files if not path.is_file()]
        if missing and not download:
            raise not_found(spec.title, missing, how=download_hint(data_root))
        splits = {split: _read_split(spec, data_root, split, download, files) for split in ("train", "test")}
    content = [p for p, md5 in files.items() if md5 is None or os.path.getsize(p) <= 1 << 20]
    sized = [p for p in files if p not in content]
    return Dataset(
        name=spec.name,
        splits={name: split for name, (split, _) in splits.items()},
        class_names=splits["train"][1],
        targets=frozenset({"label"}),
        fingerprint=fingerprint_of(
            spec.name, LOADER_VERSION, manifest(data_root, sized, content=content),
            sorted((str(p.relative_to(data_root)), md5) for p, md5 in files.items() if md5),
        ),
        description=spec.description,
    )


def _read_split(
    spec: TorchvisionSet, data_root: Path, split: str, download: bool, files: dict[Path, str | None]
) -> tuple[Split, list[str]]:
    cls = _torchvision_class(spec)
    kwargs = {"split": split} if spec.split_arg else {"train": split == "train"}
    try:
        dataset = cls(str(data_root / spec.subdir), download=download, **kwargs)
    except Exception as exc:  # torchvision raises RuntimeError, AssertionError, EOFError, ...
        raise _diagnose(spec, data_root, files, exc, download) from None
    images, labels, classes = _arrays(spec, dataset)
    if len(images) != len(labels):
        bad = next(iter(files))
        raise corrupt(spec.title, bad.parent, f"{len(images)} images but {len(labels)} labels "
                      f"in the {split} split", _refetch(spec, data_root))
    return Split(images=ArrayImages(images), labels=labels), classes


def _arrays(spec: TorchvisionSet, dataset: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 [N, H, W, 3] views (no copy), int64 labels and readable class names."""
    if spec.cls in ("CIFAR10", "CIFAR100"):
        images = np.asarray(dataset.data)
        labels = np.asarray(dataset.targets, dtype=np.int64)
        classes = [c.replace("_", " ") for c in dataset.classes]
    elif spec.cls in ("MNIST", "FashionMNIST"):
        grey = dataset.data.numpy()
        images = np.broadcast_to(grey[..., None], (*grey.shape, 3))
        labels = dataset.targets.numpy().astype(np.int64)
        classes = list(DIGIT_WORDS) if spec.cls == "MNIST" else list(dataset.classes)
    elif spec.cls == "SVHN":
        images = np.asarray(dataset.data).transpose(0, 2, 3, 1)
        labels = np.asarray(dataset.labels, dtype=np.int64)
        classes = list(DIGIT_WORDS)
    else:  # STL10
        images = np.asarray(dataset.data).transpose(0, 2, 3, 1)
        labels = np.asarray(dataset.labels, dtype=np.int64)
        classes = list(getattr(dataset, "classes", None) or STL10_CLASSES)
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DatasetError(
            f"{spec.title}: labels range over [{labels.min()}, {labels.max()}] but there are "
            f"{len(classes)} classes; the label file is corrupt: {_refetch(spec, None)}"
        )
    return images, labels, classes


def _refetch(spec: TorchvisionSet, data_root: Path | None) -> str:
    top = spec.files[0].split("/")[0]
    where = str(data_root / top) if data_root else f"the {top} folder"
    return f"Delete {where} and re-run with {DOWNLOAD_FLAG} to fetch a fresh copy."


def _diagnose(
    spec: TorchvisionSet, data_root: Path, files: dict[Path, str | None], exc: BaseException,
    download: bool,
) -> DatasetError:
    """Turn torchvision's terse error into one that names the file, the cause and the fix."""
    from torchvision.datasets.utils import check_integrity

    cause = f"{type(exc).__name__}: {exc}".strip()
    missing = [path for path in files if not path.is_file()]
    if missing and download:
        return DatasetError(
            f"{spec.title}: downloading with {DOWNLOAD_FLAG} into {data_root} did not complete "
            f"({cause}); {missing[0]} is still missing. Check the network connection (and disk "
            "space) and re-run, or fetch the files by hand into that folder."
        )
    for path, md5 in files.items():
        if md5 is not None and path.is_file() and not check_integrity(str(path), md5):
            return corrupt(spec.title, path, f"md5 differs from torchvision's, size "
                           f"{os.path.getsize(path):,} bytes; a partial download?", _refetch(spec, data_root))
        if md5 is None and path.is_file():
            problem = idx_problem(path)
            if problem:
                return corrupt(spec.title, path, problem, _refetch(spec, data_root))
    return DatasetError(
        f"{spec.title}: torchvision could not read the files under {data_root} ({cause}). "
        f"{_refetch(spec, data_root)}"
    )


def idx_problem(path: Path) -> str | None:
    """Why an MNIST-style idx file is unreadable (header vs size), or None if it looks whole."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        header = handle.read(4)
        if len(header) < 4 or header[:2] != b"\x00\x00" or not 1 <= header[3] <= 3:
            return "not an idx file: bad magic number"
        ndim = header[3]
        dims_raw = handle.read(4 * ndim)
    if len(dims_raw) < 4 * ndim:
        return "header cut short"
    dims = [int.from_bytes(dims_raw[4 * i: 4 * i + 4], "big") for i in range(ndim)]
    item = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}.get(header[2])
    if item is None:
        return f"unknown idx data type 0x{header[2]:02x}"
    expected = 4 + 4 * ndim + item * int(np.prod(dims))
    if size != expected:
        return f"the header declares shape {dims} ({expected:,} bytes) but the file has {size:,} bytes"
    return None


def _decompress_leftover_gz(spec: TorchvisionSet, files: dict[Path, str | None]) -> None:
    """``raw/x-ubyte.gz`` without ``raw/x-ubyte``: decompress it, atomically, as torchvision would."""
    for path in files:
        packed = path.with_name(path.name + ".gz")
        if path.is_file() or not packed.is_file():
            continue
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as out, gzip.open(packed, "rb") as src:
                shutil.copyfileobj(src, out)
            os.replace(tmp, path)
        except (OSError, EOFError) as exc:
            raise corrupt(spec.title, packed, f"cannot decompress: {exc}",
                          f"Delete it and re-run with {DOWNLOAD_FLAG} to fetch it again.") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
