"""The dataset registry: the one front door from a spec string to a ``Dataset``.

``load_dataset("shapes")``, ``load_dataset("digits", seed=1, limit=200)`` or
``load_dataset("imagefolder:/data/pets", image_size=160)``. Loaders are plain functions
``loader(*, seed, **options) -> Dataset``; their keyword arguments are the options a user may
pass, so option names are checked against the loader's own signature. Importing this package
imports numpy only: scikit-learn, scikit-image and PIL are imported when a loader runs.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pytest_visprobe.datasets.base import (
    TARGETS,
    ArrayImages,
    Dataset,
    DatasetError,
    DatasetNotFoundError,
    FileImages,
    Split,
    check_int,
    limited,
    subset_indices,
)
from pytest_visprobe.datasets.coco import VAL2017_DESCRIPTION, load_coco, load_coco_val2017, parse_coco_spec, val2017_present
from pytest_visprobe.datasets.digits import DESCRIPTION as _DIGITS_DESCRIPTION
from pytest_visprobe.datasets.digits import load_digits_dataset
from pytest_visprobe.datasets.imagefolder import load_imagefolder
from pytest_visprobe.datasets.photos import DESCRIPTION as _PHOTOS_DESCRIPTION
from pytest_visprobe.datasets.photos import load_photos
from pytest_visprobe.datasets.shapes import DESCRIPTION as _SHAPES_DESCRIPTION
from pytest_visprobe.datasets.shapes import load_shapes
from pytest_visprobe.datasets.specs import DATASET_KINDS, DatasetSpec, check_dataset_spec, forms, parse_dataset_spec
from pytest_visprobe.datasets.storage import default_data_root
from pytest_visprobe.registry import Registry

__all__ = [
    "DATASETS",
    "DATASET_KINDS",
    "DatasetSpec",
    "parse_dataset_spec",
    "subset_indices",
    "ArrayImages",
    "Dataset",
    "DatasetEntry",
    "DatasetError",
    "DatasetNotFoundError",
    "FileImages",
    "Split",
    "TARGETS",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "default_data_root",
]



@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: what ``--visprobe-list-datasets``-style listings show."""

    name: str
    targets: frozenset[str]
    description: str
    options: tuple[str, ...] | None = ()  # keyword options its loader accepts; None: any
    loader: Callable[..., Dataset] | None = field(default=None, repr=False, compare=False)
    splits: tuple[str, ...] = ("train", "test")
    #: ``present(data_root) -> bool`` for datasets read from the data root; None: embedded
    present: Callable[[Path], bool] | None = field(default=None, repr=False, compare=False)

    @property
    def needs_data_root(self) -> bool:
        return self.present is not None


#: registered datasets by name (``imagefolder:PATH``-style path forms are DATASET_KINDS)
DATASETS: Registry[DatasetEntry] = Registry(
    "dataset", hint="Register one with pytest_visprobe.datasets.register_dataset(...).")


def register_dataset(
    name: str,
    loader: Callable[..., Dataset],
    *,
    targets: set[str] | frozenset[str] | tuple[str, ...],
    description: str,
    splits: tuple[str, ...] = ("train", "test"),
    present: Callable[[Path], bool] | None = None,
    replace: bool = False,
) -> DatasetEntry:
    """Make ``name`` loadable by ``load_dataset``; ``loader(*, seed, **options)`` builds it.

    Datasets read from the data root take ``root`` and ``download`` options and pass
    ``present``, which says whether the files are there (for ``--visprobe-list``).
    """
    if not isinstance(name, str) or not name or name != name.strip().lower() or ":" in name:
        raise DatasetError(
            f"cannot register dataset name {name!r}: use a non-empty lower-case name without "
            "':' (the colon is reserved for path forms such as imagefolder:PATH)."
        )
    targets = frozenset(targets)
    unknown = sorted(targets - set(TARGETS))
    if unknown:
        raise DatasetError(
            f"cannot register dataset {name!r}: unknown targets {unknown}; valid targets are "
            f"{list(TARGETS)}."
        )
    entry = DatasetEntry(name, targets, description, _options_of(loader, name), loader,
                         tuple(splits), present)
    DATASETS.register(name, entry, replace=replace)
    return entry


def list_datasets() -> list[DatasetEntry]:
    """The registered datasets by name (``imagefolder:PATH`` is a path form, not listed)."""
    return [DATASETS.get(name) for name in sorted(DATASETS.names())]


def load_dataset(spec: str, *, seed: int = 0, limit: int | None = None, **options: Any) -> Dataset:
    """Load a registered dataset, ``imagefolder:PATH`` or ``coco:IMAGES_DIR:ANNOTATIONS.json``.

    ``limit`` caps every split at that many samples, chosen at random with the seed (rows
    keep their order); a straight truncation would keep only the first classes of datasets
    stored class by class. Classes (or source photos) are all kept when ``limit`` allows.
    """
    parsed = parse_dataset_spec(spec) if isinstance(spec, str) and spec.strip() else None
    if parsed is None:
        raise DatasetError(f"dataset spec must be a non-empty string, got {spec!r}; {_known()}")
    seed = check_int(spec, "seed", seed, minimum=0)
    if seed >= 2**32:
        raise DatasetError(f"seed={seed} is too large; use an integer in [0, 2**32).")
    if limit is not None:
        limit = check_int(spec, "limit", limit, minimum=1)

    spec = spec.strip()
    if parsed.kind == "imagefolder":
        _check_options(spec, _options_of(load_imagefolder, "imagefolder", skip=("path",)), options)
        dataset = load_imagefolder(parsed.arg, seed=seed, **options)
        targets = frozenset({"label"})
    elif parsed.kind == "coco":
        images_dir, annotations = parse_coco_spec(spec)
        _check_options(spec, _options_of(load_coco, "coco", skip=("images_dir", "annotations")), options)
        dataset = load_coco(images_dir, annotations, seed=seed, **options)
        targets = frozenset({"label", "boxes", "masks", "captions"})
    elif parsed.kind is not None:
        raise DatasetError(f"dataset spec {spec!r}: no pytest_visprobe_make_dataset hook made this "
                           f"{parsed.kind!r} dataset; the plugin that registered the kind must implement it.")
    else:
        entry = _lookup(spec)
        _check_options(entry.name, entry.options, options)
        dataset = entry.loader(seed=seed, **options)
        targets = entry.targets

    # captions are the one target a loader may lack (COCO has them only with a captions file)
    if dataset.targets - {"captions"} != targets - {"captions"} or not dataset.targets <= targets:
        raise DatasetError(
            f"dataset {spec!r} provides targets {sorted(dataset.targets)} but was registered "
            f"with {sorted(targets)}; this is a bug in its loader or registration."
        )
    for split_name, split in dataset.splits.items():
        split.check(f"dataset {spec!r}, split {split_name!r}")
    if limit is not None:
        dataset = limited(dataset, limit, seed)
    return dataset


def imagefolder_options() -> tuple[str, ...]:
    """Options of the ``imagefolder:PATH`` form (it is a path form, not a registry entry)."""
    return _options_of(load_imagefolder, "imagefolder", skip=("path",)) or ()


def _lookup(spec: str) -> DatasetEntry:
    name = spec.lower()
    if name in DATASETS:
        return DATASETS.get(name)
    check_dataset_spec(spec, DATASETS.names())  # raises the did-you-mean
    raise DatasetError(f"unknown dataset {spec!r}. {_known()}")  # pragma: no cover - check raised


def _known() -> str:
    return f"Registered datasets: {', '.join(sorted(DATASETS.names()))}; or {forms()}."


def _check_options(name: str, valid: tuple[str, ...] | None, options: dict[str, Any]) -> None:
    if valid is None:  # the loader takes **options and checks them itself
        return
    unknown = sorted(set(options) - set(valid))
    if not unknown:
        return
    hints = []
    for option in unknown:
        close = difflib.get_close_matches(option, valid, n=1, cutoff=0.6)
        hints.append(f"{option!r} (did you mean {close[0]!r}?)" if close else repr(option))
    raise DatasetError(
        f"dataset {name!r} has no option {', '.join(hints)}; its options are "
        f"{', '.join(valid) if valid else '(none)'}, plus seed and limit for every dataset."
    )


def _options_of(
    loader: Callable[..., Dataset], name: str, skip: tuple[str, ...] = ()
) -> tuple[str, ...] | None:
    """Keyword options a loader accepts: its keyword parameters other than ``seed``."""
    try:
        params = inspect.signature(loader).parameters.values()
    except (TypeError, ValueError):
        raise DatasetError(
            f"cannot register dataset {name!r}: its loader {loader!r} has no inspectable "
            "signature; pass a function `loader(*, seed, **options) -> Dataset`."
        ) from None
    params = list(params)
    if "seed" not in {p.name for p in params} and not any(p.kind == p.VAR_KEYWORD for p in params):
        raise DatasetError(
            f"cannot register dataset {name!r}: its loader {_qualname(loader)} takes no "
            "`seed` keyword; loaders are `loader(*, seed, **options) -> Dataset`."
        )
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return tuple(
        sorted(
            p.name
            for p in params
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.name not in ("seed", *skip)
        )
    )


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


register_dataset(
    "shapes", load_shapes, targets={"label", "attributes", "boxes", "masks", "captions"},
    description=_SHAPES_DESCRIPTION,
)
register_dataset("digits", load_digits_dataset, targets={"label"}, description=_DIGITS_DESCRIPTION)
register_dataset("photos", load_photos, targets={"source"}, description=_PHOTOS_DESCRIPTION)


def _register_torchvision_sets() -> None:
    from pytest_visprobe.datasets import torchvision_sets as tv

    for spec in tv.SETS:
        register_dataset(spec.name, functools.partial(tv.load_torchvision_set, spec),
                         targets={"label"}, description=spec.description,
                         present=functools.partial(tv.present, spec))


def _register_data_root_sets() -> None:
    from pytest_visprobe.datasets import cub, imagenet, vaw

    register_dataset("cub", cub.load_cub, targets={"label", "attributes"},
                     description=cub.DESCRIPTION, present=cub.present)
    register_dataset("vaw", vaw.load_vaw, targets={"label", "attributes"},
                     description=vaw.DESCRIPTION, splits=("train", "val", "test"),
                     present=vaw.present)
    register_dataset("imagenet_val", imagenet.load_imagenet_val, targets={"label"},
                     description=imagenet.DESCRIPTION, splits=("train", "test", "all"),
                     present=imagenet.present)
    register_dataset("coco", load_coco_val2017, targets={"label", "boxes", "masks", "captions"},
                     description=VAL2017_DESCRIPTION, present=val2017_present)


_register_torchvision_sets()
_register_data_root_sets()
