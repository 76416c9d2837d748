"""``imagefolder:PATH``: any class-per-folder image collection, torchvision ImageFolder style.

Two layouts are accepted:

* ``PATH/train/<class>/...`` and ``PATH/test/<class>/...`` (``val/`` is accepted in place of
  ``test/``): the folders are the splits; class names come from ``train/``.
* ``PATH/<class>/...``: one pool, split per class with a seeded ratio (``test_fraction``,
  default 0.2), so every class keeps its share in both splits. The pool itself is the split
  ``all``: every image in torchvision ``ImageFolder`` order (the index a study's
  ``ImageFolder(PATH)`` gives), for a probe that samples the whole folder as the study did
  (RPGD's seeded 1,000 of ImageNet-val); it is train and test again, so the fingerprint
  does not list it. The train/test layout has no ``all``: there the test folder is the pool.

As in torchvision, class folders are sorted by name (class index = position; hidden folders
are skipped, which torchvision would count as classes), images are found recursively inside
each class folder in sorted walk order, and a file counts as an image by its extension
(``IMAGE_EXTENSIONS``, case-insensitive). Images are only listed here and decoded when a probe
asks for them (``FileImages``), so a corrupt file is reported, by name, on first use. The
fingerprint hashes the relative file list and the file sizes: adding, removing, renaming or
rewriting a file gives a new fingerprint, wherever the folder lives.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pytest_visprobe.datasets.base import (
    IMAGE_EXTENSIONS,
    Dataset,
    DatasetError,
    FileImages,
    Split,
    check_fraction,
    check_int,
    fingerprint_of,
    rng_for,
)

DESCRIPTION = "class-per-folder images at PATH (PATH/<class>/... or PATH/train|test/<class>/...)"

_LAYOUT_HINT = (
    "expected PATH/<class>/<image> (split by the seed) or PATH/train/<class>/<image> "
    "with PATH/test/<class>/<image>"
)


def load_imagefolder(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    image_size: int = 224,
    test_fraction: float = 0.2,
    subset: int | None = None,
) -> Dataset:
    """List the folder and build lazily-decoded train/test splits.

    ``subset=N`` keeps a seeded random N images of each split (every class first when N
    allows), a fixed-size evaluation set.
    """
    spec = f"imagefolder:{path}"
    image_size = check_int(spec, "image_size", image_size, minimum=8)
    test_fraction = check_fraction(spec, "test_fraction", test_fraction)
    if subset is not None:
        subset = check_int(spec, "subset", subset, minimum=1)
    # absolute: files are decoded later, perhaps after the working directory changed
    root = Path(os.path.abspath(Path(path).expanduser()))
    if not root.exists():
        raise DatasetError(
            f"{spec}: the folder {str(root)!r} does not exist; pass an existing directory "
            f"({_LAYOUT_HINT})."
        )
    if not root.is_dir():
        raise DatasetError(
            f"{spec}: {str(root)!r} is a file, not a folder; pass the directory that holds "
            f"the class folders ({_LAYOUT_HINT})."
        )

    train_dir = root / "train"
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if train_dir.is_dir() and test_dir is not None:
        layout = "split"
        class_names, train_files = _scan(train_dir, spec, _LAYOUT_HINT)
        test_names, test_files = _scan(test_dir, spec, _LAYOUT_HINT)
        unknown = sorted(set(test_names) - set(class_names))
        if unknown:
            raise DatasetError(
                f"{spec}: {test_dir.name}/ has class folders that train/ lacks: {unknown}; "
                "a probe cannot learn classes it never trains on: add them to train/ or "
                f"remove them from {test_dir.name}/."
            )
        train = [(f, class_names.index(c)) for c, fs in zip(class_names, train_files) for f in fs]
        test = [(f, class_names.index(c)) for c, fs in zip(test_names, test_files) for f in fs]
    elif train_dir.is_dir() or any((root / n).is_dir() for n in ("test", "val")):
        present = "train/" if train_dir.is_dir() else f"{test_dir.name}/"
        missing = "test/ (or val/)" if train_dir.is_dir() else "train/"
        raise DatasetError(
            f"{spec}: found {present} but no {missing}; with the split layout both are needed. "
            f"Add {missing}, or put the class folders directly under {str(root)!r} to have "
            "them split by the seed."
        )
    else:
        layout = "flat"
        class_names, files = _scan(root, spec, _LAYOUT_HINT)
        every = [(f, label) for label, fs in enumerate(files) for f in fs]
        train, test = _stratified_split(files, test_fraction, rng_for(seed, "imagefolder", "split"))
        if not test:
            raise DatasetError(
                f"{spec}: too few images ({sum(map(len, files))}) to hold out "
                f"test_fraction={test_fraction} of any class; add images, raise test_fraction, "
                "or use the train/ and test/ layout."
            )

    listing = []
    splits = {}
    parts = (("train", train), ("test", test)) + ((("all", every),) if layout == "flat" else ())
    for split_name, items in parts:
        paths = tuple(str(f) for f, _ in items)
        for f in paths if split_name != "all" else ():  # "all" is train + test again
            listing.append((split_name, Path(f).relative_to(root).as_posix(), os.path.getsize(f)))
        split = Split(
            images=FileImages(paths, image_size),
            labels=np.array([label for _, label in items], dtype=np.int64),
        )
        if subset is not None:
            from pytest_visprobe.datasets.base import subset_indices  # the seeded, class-keeping subset

            split = split.subset(subset_indices(split, subset, rng_for(seed, "imagefolder-subset", split_name)))
        splits[split_name] = split
    return Dataset(
        name=spec,
        splits=splits,
        class_names=list(class_names),
        targets=frozenset({"label"}),
        fingerprint=fingerprint_of(
            "imagefolder", layout, seed, image_size, test_fraction, class_names, listing,
            *(("subset", subset) if subset is not None else ()),
        ),
        description=f"class-per-folder images from {str(root)!r} ({layout} layout)",
    )


def _scan(directory: Path, spec: str, hint: str) -> tuple[list[str], list[list[Path]]]:
    """Sorted class folders and, per class, its image files in sorted walk order."""
    classes = sorted(
        e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith(".")
    )
    if not classes:
        stray = [f for f in sorted(os.listdir(directory)) if f.lower().endswith(IMAGE_EXTENSIONS)]
        detail = (
            f" ({len(stray)} images, e.g. {stray[0]!r}, lie directly in it: move them into "
            "one sub-folder per class)"
            if stray
            else ""
        )
        raise DatasetError(
            f"{spec}: no class folders in {str(directory)!r}{detail}; {hint}."
        )
    files = []
    for name in classes:
        found = []
        for dirpath, _, filenames in sorted(os.walk(directory / name, followlinks=True)):
            found.extend(
                Path(dirpath) / f for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTENSIONS)
            )
        if not found:
            raise DatasetError(
                f"{spec}: class folder {str(directory / name)!r} has no image files "
                f"(extensions {', '.join(IMAGE_EXTENSIONS)}); add images to it or remove it."
            )
        files.append(found)
    return classes, files


def _stratified_split(files, test_fraction, rng):
    """Per class, a seeded ``round(test_fraction * n)`` go to test; at least one stays in train."""
    train, test = [], []
    for label, class_files in enumerate(files):
        n = len(class_files)
        n_test = min(n - 1, int(np.floor(test_fraction * n + 0.5)))
        is_test = np.zeros(n, dtype=bool)
        is_test[rng.permutation(n)[:n_test]] = True
        for f, held_out in zip(class_files, is_test):
            (test if held_out else train).append((f, label))
    return train, test
