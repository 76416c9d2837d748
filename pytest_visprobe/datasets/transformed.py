"""Transformed views: a dataset whose images are other images with a bank transformation applied.

The transformation probe (PROTOCOLS.md C) embeds images transformed once per (source image,
transformation, seed). :func:`transformed_views` builds that as an ordinary ``Dataset``, so the
FeatureStore caches its features like any other: its fingerprint combines the source dataset's,
the transformation list (with a behavioural hash of the bank, so editing a transformation
invalidates the cache) and the seeded assignment. Images are transformed lazily, batch by
batch, only when features are computed; a cached run never transforms anything.

Labels are transformation indices into ``class_names``; ``family_of`` maps them to families.
Views of a split come only from that split of the source, so no source image is in both train
and test; where the source has ``sources`` (photos: the photo a crop was cut from) they are
carried over, so the photo-level split holds too.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from pytest_visprobe.datasets.base import Dataset, DatasetError, ImageSource, Split, _as_indices, fingerprint_of, rng_for

#: Bumped whenever the assignment of (source image, transformation, seed) changes.
ASSIGNMENT_VERSION = 1


@dataclass(frozen=True)
class TransformedImages:
    """Row ``i`` is ``apply_transformation(names[labels[i]], source[rows[i]], seed=seeds[i])``."""

    source: ImageSource
    rows: np.ndarray  # int64 [M] rows of ``source``
    labels: np.ndarray  # int64 [M] indices into ``names``
    seeds: np.ndarray  # int64 [M] transformation seeds
    names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def get(self, indices: Sequence[int]) -> np.ndarray:
        from pytest_visprobe.datasets.transformations import apply_transformation

        idx = _as_indices(indices, len(self))
        unique, where = np.unique(self.rows[idx], return_inverse=True)
        originals = self.source.get(unique)  # each source image decoded once per batch
        out = np.empty((len(idx),) + originals.shape[1:], dtype=np.uint8)
        for row, (i, j) in enumerate(zip(idx, where.reshape(-1))):
            out[row] = apply_transformation(self.names[self.labels[i]], originals[j], seed=int(self.seeds[i]))
        return out

    def subset(self, indices: Sequence[int]) -> TransformedImages:
        idx = _as_indices(indices, len(self))
        return TransformedImages(self.source, self.rows[idx], self.labels[idx], self.seeds[idx], self.names)


@dataclass
class TransformedDataset(Dataset):
    """A ``Dataset`` of transformed views; ``class_names`` are the transformation names."""

    source_name: str = ""
    families: list[str] = field(default_factory=list)  # family index -> name
    family_of: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # class -> family

    def family_labels(self, split: str) -> np.ndarray:
        """Family index of every view of ``split``."""
        return self.family_of[self.split(split).labels]

    def source_rows(self, split: str) -> np.ndarray:
        """Row of the source split each view of ``split`` was made from."""
        return self.split(split).images.rows


def transformed_views(
    source: Dataset,
    *,
    seed: int,
    per_image: int,
    per_transformation: dict[str, int],
    transformations: Sequence[str] | None = None,
) -> TransformedDataset:
    """Views of ``source`` for each split named in ``per_transformation`` (e.g. train, test).

    Each used source image gets ``per_image`` distinct transformations; the assignment cycles
    through a seeded permutation of the list, so every transformation is used equally often
    (to within one). ``ceil(T · per_transformation[split] / per_image)`` source images are used
    (a seeded subset), or all of them when the split is smaller. Every view has its own seed, so
    the transformations' parameter ranges are spread over the dataset.
    """
    from pytest_visprobe.datasets.transformations import get_transformation, list_families, list_transformations

    names = tuple(t.name for t in list_transformations()) if transformations is None else tuple(transformations)
    if not names:
        raise DatasetError("transformed views need at least one transformation; the list is empty.")
    if len(set(names)) != len(names):
        raise DatasetError(f"transformation list has duplicates: {list(names)}; name each one once.")
    entries = [get_transformation(n) for n in names]  # unknown names fail here, with a hint
    families = [f for f in list_families() if any(e.family == f for e in entries)]
    family_of = np.array([families.index(e.family) for e in entries], dtype=np.int64)
    k = min(int(per_image), len(names))
    if k < 1:
        raise DatasetError(f"per_image={per_image}: each source image needs at least one transformation.")

    splits: dict[str, Split] = {}
    for split_name, wanted in per_transformation.items():
        original = source.split(split_name)
        rng = rng_for(seed, "transformed", source.name, split_name)
        n_images = min(len(original), math.ceil(len(names) * int(wanted) / k))
        if n_images < 1:
            raise DatasetError(
                f"dataset {source.name!r}, split {split_name!r} has no images to transform."
            )
        chosen = np.sort(rng.choice(len(original), size=n_images, replace=False))
        order = rng.permutation(len(names))
        slots = (np.arange(n_images)[:, None] * k + np.arange(k)[None, :]) % len(names)
        rows = np.repeat(chosen, k).astype(np.int64)
        labels = order[slots].reshape(-1).astype(np.int64)
        seeds = rng.integers(0, 2**31 - 1, size=rows.shape[0], dtype=np.int64)
        sources = original.sources[rows] if original.sources is not None else rows.copy()
        images = TransformedImages(original.images, rows, labels, seeds, names)
        splits[split_name] = Split(images=images, labels=labels, sources=sources)

    fingerprint = fingerprint_of(
        "transformed", ASSIGNMENT_VERSION, source.name, source.fingerprint, names,
        bank_fingerprint(names), seed,
        *[part for s in splits.values() for part in (s.images.rows, s.labels, s.images.seeds)],
    )
    return TransformedDataset(
        name=f"{source.name}+transformations",
        splits=splits,
        class_names=list(names),
        targets=frozenset({"label", "source"}),
        fingerprint=fingerprint,
        description=f"{len(names)} transformations applied to {source.name}, {k} per source image",
        source_name=source.name,
        families=families,
        family_of=family_of,
    )


def bank_fingerprint(names: Sequence[str]) -> str:
    """A hash of what the transformations *do*: their outputs on a fixed test image.

    A code change that alters any output (a built-in edited, a user transformation replaced
    under the same name) changes this hash and with it every transformed view's cache key.
    """
    from pytest_visprobe.datasets.transformations import get_transformation

    return _bank_fingerprint(tuple((n, id(get_transformation(n).fn)) for n in names))


@functools.lru_cache(maxsize=8)
def _bank_fingerprint(key: tuple[tuple[str, int], ...]) -> str:
    from pytest_visprobe.datasets.transformations import apply_transformation

    rng = rng_for(0, "bank-fingerprint")
    y, x = np.mgrid[0:32, 0:32]
    ramp = np.stack([x * 6, y * 6, (x + y) * 3], axis=-1) + rng.integers(0, 60, size=(32, 32, 3))
    image = np.clip(ramp, 0, 255).astype(np.uint8)
    outputs = [apply_transformation(name, image, seed=s) for name, _ in key for s in (0, 1)]
    return fingerprint_of([name for name, _ in key], *outputs)
