"""Dataset specs, parsed in one place: a registered name (``shapes``, ``cifar10``) or a path form
``KIND:ARG`` (``imagefolder:PATH``, ``coco:IMAGES_DIR:ANNOTATIONS.json``, or a kind a plugin
registered and makes through its ``pytest_visprobe_make_dataset`` hook).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pytest_visprobe.errors import DatasetError
from pytest_visprobe.registry import Registry


@dataclass(frozen=True)
class DatasetKind:
    """A path form. ``check(arg, raw)`` validates it cheaply at start-up (raises DatasetError)."""

    description: str  # "imagefolder:PATH -- class-per-folder images", for listings and errors
    check: Callable[[str, str], None] | None = None


class DatasetKinds(Registry[DatasetKind]):
    def register(self, name: str, entry: DatasetKind | str, *, replace: bool = False) -> None:  # type: ignore[override]
        """``entry`` may be just a description (``"KIND:ARG -- what it is"``): a hook makes the datasets."""
        super().register(name, DatasetKind(entry) if isinstance(entry, str) else entry, replace=replace)


DATASET_KINDS = DatasetKinds(
    "dataset kind", hint="Register one in a pytest_visprobe_register hook and make it in pytest_visprobe_make_dataset.")


@dataclass(frozen=True)
class DatasetSpec:
    raw: str
    kind: str | None  # None: a registered dataset name
    name: str  # the registered name, or the kind
    arg: str = ""  # what follows "KIND:"

    @property
    def id(self) -> str:
        """A short test id: the name, or ``kind-<last path part>``."""
        if self.kind is None:
            return self.name
        return f"{self.kind}-{Path(self.arg).name}"


def parse_dataset_spec(raw: str) -> DatasetSpec:
    """Split a spec into kind and argument; unknown kinds get a did-you-mean. Reads no file."""
    if not isinstance(raw, str) or not raw.strip():
        raise DatasetError(f"dataset spec must be a non-empty string, got {raw!r}.")
    text = raw.strip()
    prefix, sep, arg = text.partition(":")
    if not sep:
        return DatasetSpec(raw=raw, kind=None, name=text.lower())
    kind = prefix.lower()
    if kind not in DATASET_KINDS:
        guess = difflib.get_close_matches(kind, DATASET_KINDS.names(), n=1)
        hint = f" Did you mean {guess[0]}:{arg}?" if guess else ""
        raise DatasetError(f"dataset spec {raw!r}: unknown kind {prefix!r}.{hint} Forms: {forms()}.")
    if not arg:
        raise DatasetError(f"dataset spec {raw!r} has nothing after '{prefix}:'; "
                           f"write {DATASET_KINDS.get(kind).description.split(' -- ')[0]}.")
    return DatasetSpec(raw=raw, kind=kind, name=kind, arg=arg)


def check_dataset_spec(raw: str, registered: list[str]) -> DatasetSpec:
    """Parse and validate at start-up: registered names exist, path forms' files exist."""
    spec = parse_dataset_spec(raw)
    if spec.kind is None:
        if spec.name not in registered:
            close = difflib.get_close_matches(spec.name, registered + DATASET_KINDS.names(), n=1, cutoff=0.6)
            if close and close[0] in DATASET_KINDS:
                hint = f" Did you mean {close[0]}:...?"
            elif close:
                hint = f" Did you mean {close[0]!r}?"
            elif os.path.isdir(os.path.expanduser(raw)):
                hint = f" {raw!r} is a folder: did you mean 'imagefolder:{raw}'?"
            else:
                hint = ""
            raise DatasetError(f"unknown dataset {raw!r}.{hint} Registered datasets: {', '.join(sorted(registered))}; "
                               f"or {forms()}.")
        return spec
    check = DATASET_KINDS.get(spec.kind).check
    if check is not None:
        check(spec.arg, raw)
    return spec


def forms() -> str:
    return "; ".join(DATASET_KINDS.get(name).description for name in DATASET_KINDS.names())


def _check_imagefolder(arg: str, raw: str) -> None:
    if not Path(arg).is_dir():
        raise DatasetError(f"{raw}: folder not found ({Path(arg).resolve()}).")


def split_coco_arg(arg: str, raw: str) -> tuple[str, str]:
    """``IMAGES_DIR:ANNOTATIONS.json`` → (images dir, annotations file)."""
    images, sep, annotations = arg.rpartition(":")
    if not sep or not images or not annotations:
        raise DatasetError(
            f"dataset spec {raw!r} needs an images folder and an annotation file: write "
            f"coco:IMAGES_DIR:ANNOTATIONS.json, e.g. coco:/data/coco/val2017:/data/coco/annotations/"
            f"instances_val2017.json.")
    return images, annotations


def _check_coco(arg: str, raw: str) -> None:
    images, annotations = split_coco_arg(arg, raw)
    if not Path(images).is_dir():
        raise DatasetError(f"{raw}: images folder not found ({Path(images).resolve()}).")
    if not Path(annotations).is_file():
        raise DatasetError(f"{raw}: annotation file not found ({Path(annotations).resolve()}).")


DATASET_KINDS.register("imagefolder", DatasetKind("imagefolder:PATH -- class-per-folder images (PATH/<class>/... or "
                                                  "PATH/train|test/<class>/...)", _check_imagefolder))
DATASET_KINDS.register("coco", DatasetKind("coco:IMAGES_DIR:ANNOTATIONS.json -- COCO-format boxes and masks",
                                           _check_coco))
