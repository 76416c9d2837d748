"""The dataset contract: what every probe may rely on, whatever the source.

Datasets are numpy-only (no torch import) so the plugin stays light until features are
needed. Images are handed out as uint8 ``[B, H, W, 3]`` arrays at the dataset's own size;
the encoder resizes and normalises them itself (DESIGN.md, encoder contract).
"""

from __future__ import annotations

import functools
import hashlib
import operator
import os
import zlib
from dataclasses import dataclass, field, replace
from typing import Callable, Protocol, Sequence, TypeVar

import numpy as np

from pytest_visprobe.errors import DatasetError, DatasetNotFoundError  # noqa: F401 (re-exported)

#: Targets a dataset can provide. Probes declare which they need and skip otherwise.
TARGETS = ("label", "attributes", "boxes", "masks", "source", "captions")

T = TypeVar("T")


class ImageSource(Protocol):
    """Anything that returns images by index: an in-memory array or files on disk."""

    def __len__(self) -> int: ...

    def get(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 ``[len(indices), H, W, 3]``."""


@dataclass(frozen=True)
class ArrayImages:
    """Images already decoded in memory (procedural and small embedded datasets)."""

    array: np.ndarray  # uint8 [N, H, W, 3]

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def get(self, indices: Sequence[int]) -> np.ndarray:
        return self.array[np.asarray(indices, dtype=np.int64)]

    def subset(self, indices: Sequence[int]) -> ArrayImages:
        return ArrayImages(self.array[_as_indices(indices, len(self))])


#: File extensions ImageFolder accepts (torchvision's IMG_EXTENSIONS), compared lower-case.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class FileImages:
    """Images on disk, decoded only when asked for, so large folders cost no memory up front.

    Each image is converted to RGB, its shorter side resized to ``image_size`` (bicubic) and
    centre-cropped to a square, the usual evaluation transform, so every batch has one shape.
    """

    paths: tuple[str, ...]
    image_size: int

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, indices: Sequence[int]) -> np.ndarray:
        """Decode the files in parallel threads (PIL releases the GIL while decoding and resizing);
        the result is the same as decoding them one by one, in order."""
        idx = _as_indices(indices, len(self))
        out = np.empty((len(idx), self.image_size, self.image_size, 3), dtype=np.uint8)

        def decode_into(row: int) -> None:
            out[row] = decode_image(self.paths[idx[row]], self.image_size)

        _each_row(len(idx), decode_into)
        return out

    def decode_with(self, indices: Sequence[int], transform: Callable[[object], T]) -> list[T]:
        """``transform`` applied to each file decoded in full (PIL RGB, no resize or draft), in
        order: for a probe that must prepare the files as a study did (RPGD's torchvision
        transforms) rather than take the dataset's shared ``image_size`` crops."""
        idx = _as_indices(indices, len(self))
        out: list = [None] * len(idx)

        def decode_into(row: int) -> None:
            out[row] = transform(open_rgb(self.paths[idx[row]]))

        _each_row(len(idx), decode_into)
        return out

    def subset(self, indices: Sequence[int]) -> FileImages:
        idx = _as_indices(indices, len(self))
        return FileImages(tuple(self.paths[i] for i in idx), self.image_size)


def _each_row(n: int, decode_into: Callable[[int], None]) -> None:
    """``decode_into(row)`` for every row, in the decoding threads when there are a few."""
    if n < 4:
        for row in range(n):
            decode_into(row)
    else:
        list(_decoder_pool().map(decode_into, range(n)))  # re-raises a file's DatasetError


@functools.lru_cache(maxsize=1)
def _decoder_pool():
    """One thread pool per process for image decoding (``VISPROBE_DECODE_THREADS``, default the CPU count, at most 8)."""
    from concurrent.futures import ThreadPoolExecutor

    threads = int(os.environ.get("VISPROBE_DECODE_THREADS", 0)) or min(8, os.cpu_count() or 1)
    return ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="visprobe-decode")


def decode_image(path: str, image_size: int) -> np.ndarray:
    """Decode one file to uint8 ``[S, S, 3]``; a broken file raises DatasetError naming it."""
    from PIL import Image  # lazy: keeps `import pytest_visprobe` light

    rgb = open_rgb(path, draft=image_size)
    width, height = rgb.size
    scale = image_size / min(width, height)
    new_w = max(image_size, int(round(width * scale)))
    new_h = max(image_size, int(round(height * scale)))
    rgb = rgb.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left = int(round((new_w - image_size) / 2.0))
    top = int(round((new_h - image_size) / 2.0))
    rgb = rgb.crop((left, top, left + image_size, top + image_size))
    return np.asarray(rgb, dtype=np.uint8)


def open_rgb(path: str, *, draft: int | None = None):
    """Decode one file to a PIL RGB image; a missing or broken file raises DatasetError naming it.

    ``draft``: the smallest side needed, so JPEGs decode at a reduced scale (much faster).
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            if draft is not None:
                img.draft("RGB", (draft, draft))
            return img.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(
            f"image file {path!r} has disappeared since the dataset was listed; "
            "re-run so it is listed again."
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(
            f"cannot decode image file {path!r} ({type(exc).__name__}: {exc}); "
            "the file is corrupt or not an image: replace or delete it."
        ) from None


def crop_region(rgb, box: Sequence[float], image_size: int) -> np.ndarray:
    """Crop the xyxy ``box`` (clipped to the image, at least one pixel) and resize it to
    ``[S, S, 3]`` uint8, stretching so the whole region stays in view."""
    from PIL import Image

    width, height = rgb.size
    x1 = min(max(int(np.floor(box[0])), 0), width - 1)
    y1 = min(max(int(np.floor(box[1])), 0), height - 1)
    x2 = min(max(int(np.ceil(box[2])), x1 + 1), width)
    y2 = min(max(int(np.ceil(box[3])), y1 + 1), height)
    region = rgb.crop((x1, y1, x2, y2)).resize((image_size, image_size), Image.Resampling.BICUBIC)
    return np.asarray(region, dtype=np.uint8)


@dataclass(frozen=True)
class SubsetImages:
    """A view of some rows of another image source (for sources without their own ``subset``)."""

    source: ImageSource
    indices: np.ndarray  # int64 [M] into ``source``

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def get(self, indices: Sequence[int]) -> np.ndarray:
        return self.source.get(self.indices[_as_indices(indices, len(self))])

    def subset(self, indices: Sequence[int]) -> SubsetImages:
        return SubsetImages(self.source, self.indices[_as_indices(indices, len(self))])


def _as_indices(indices: Sequence[int], n: int) -> np.ndarray:
    """Validate row indices up front: a wrong index should fail here, not deep in a probe."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise DatasetError(
            f"row index out of range: indices must lie in [0, {n}), got "
            f"[{int(idx.min())}, {int(idx.max())}]."
        )
    return idx


@dataclass
class Split:
    """One split of a dataset. Optional targets are ``None`` when the dataset lacks them."""

    images: ImageSource
    labels: np.ndarray | None = None  # int64 [N]
    attributes: np.ndarray | None = None  # uint8 [N, A] multi-hot, for the image's main object
    boxes: list[np.ndarray] | None = None  # per image float32 [K, 4] xyxy pixels
    box_labels: list[np.ndarray] | None = None  # per image int64 [K]
    box_attributes: list[np.ndarray] | None = None  # per image uint8 [K, A]
    instance_masks: list[np.ndarray] | None = None  # per image bool [K, H, W]
    semantic_masks: np.ndarray | None = None  # uint8/int64 [N, H, W]; 0 = background, c+1 = class c
    sources: np.ndarray | None = None  # int64 [N], which source image a crop came from
    captions: list[list[str]] | None = None  # per image its captions (COCO has five), for retrieval
    # VAW-style partial labels: True where ``attributes`` is an explicit positive or negative;
    # None means every entry is labelled (absent = negative)
    attribute_mask: np.ndarray | None = None  # bool [N, A]
    # COCO crowd regions, kept apart from the objects: ignore regions for box and mask mAP only
    crowd_boxes: list[np.ndarray] | None = None  # per image float32 [C, 4] xyxy pixels
    crowd_labels: list[np.ndarray] | None = None  # per image int64 [C]
    crowd_masks: list[np.ndarray] | None = None  # per image bool [C, H, W]

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Sequence[int]) -> Split:
        """The rows ``indices`` (in that order) of every field, so targets stay aligned."""
        idx = _as_indices(indices, len(self))
        images = self.images
        sub_images = images.subset(idx) if hasattr(images, "subset") else SubsetImages(images, idx)

        def rows(value):
            if value is None:
                return None
            if isinstance(value, np.ndarray):
                return value[idx]
            return [value[i] for i in idx]

        return replace(
            self,
            images=sub_images,
            labels=rows(self.labels),
            attributes=rows(self.attributes),
            boxes=rows(self.boxes),
            box_labels=rows(self.box_labels),
            box_attributes=rows(self.box_attributes),
            instance_masks=rows(self.instance_masks),
            semantic_masks=rows(self.semantic_masks),
            sources=rows(self.sources),
            captions=rows(self.captions),
            attribute_mask=rows(self.attribute_mask),
            crowd_boxes=rows(self.crowd_boxes),
            crowd_labels=rows(self.crowd_labels),
            crowd_masks=rows(self.crowd_masks),
        )

    def check(self, where: str = "split") -> None:
        """Every target has one entry per image; a loader bug should fail at load time."""
        n = len(self)
        for name in (
            "labels", "attributes", "boxes", "box_labels", "box_attributes",
            "instance_masks", "semantic_masks", "sources", "captions",
            "instance_masks", "semantic_masks", "sources", "attribute_mask",
            "crowd_boxes", "crowd_labels", "crowd_masks",
        ):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise DatasetError(
                    f"{where}: field {name!r} has {len(value)} entries for {n} images; "
                    "this is a bug in the dataset loader."
                )


@dataclass
class Dataset:
    """A named dataset with its splits and what targets it provides."""

    name: str
    splits: dict[str, Split]
    class_names: list[str] = field(default_factory=list)
    #: per class, its synonyms in the source's order where the source has several (ImageNet's
    #: WordNet synsets); empty when each class has only its name
    class_synonyms: list[list[str]] = field(default_factory=list)
    attribute_names: list[str] = field(default_factory=list)
    targets: frozenset[str] = frozenset()
    fingerprint: str = ""  # content/config hash; part of every feature-cache key
    description: str = ""

    def split(self, name: str) -> Split:
        try:
            return self.splits[name]
        except KeyError:
            raise DatasetError(
                f"dataset {self.name!r} has no split {name!r}; it has {sorted(self.splits)}."
            ) from None


def fingerprint_of(*parts: object) -> str:
    """A short stable hash of config values and arrays (for cache keys and the scorecard)."""
    digest = hashlib.blake2b(digest_size=12)
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(str(part.dtype).encode() + str(part.shape).encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(repr(part).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def check_int(dataset: str, name: str, value: object, *, minimum: int) -> int:
    """Validate an integer option, so a typo'd value fails with the option's name."""
    if isinstance(value, bool):
        value = None  # bool is an int subclass, but never what the user meant
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise DatasetError(
            f"dataset {dataset!r}: option {name}={value!r} must be an integer >= {minimum}."
        ) from None
    if number < minimum:
        raise DatasetError(
            f"dataset {dataset!r}: option {name}={number} is too small; "
            f"use an integer >= {minimum}."
        )
    return int(number)


def check_fraction(dataset: str, name: str, value: object) -> float:
    """Validate a fraction option strictly inside (0, 1): both splits must be non-empty."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise DatasetError(
            f"dataset {dataset!r}: option {name}={value!r} must be a number in (0, 1)."
        )
    fraction = float(value)
    if not 0.0 < fraction < 1.0:
        raise DatasetError(
            f"dataset {dataset!r}: option {name}={fraction} is out of range; "
            "use a number in (0, 1)."
        )
    return fraction


def rng_for(seed: int, *stream: str) -> np.random.Generator:
    """An independent random stream per (seed, purpose), e.g. ``rng_for(0, "shapes", "test")``.

    Keying streams by name means changing one split's size never changes another split.
    """
    key = zlib.crc32("/".join(stream).encode())
    return np.random.default_rng([int(seed), key])


def subset_indices(split: Split, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted random rows, at most ``limit``; one row of every class first when it fits."""
    n = len(split)
    if limit >= n:
        return np.arange(n)
    groups = split.labels if split.labels is not None else split.sources
    if groups is None:
        return np.sort(rng.choice(n, size=limit, replace=False))
    order = rng.permutation(n)
    _, first = np.unique(groups[order], return_index=True)  # a random member of each class
    if len(first) > limit:
        return np.sort(rng.choice(order[first], size=limit, replace=False))
    chosen = np.zeros(n, dtype=bool)
    chosen[order[first]] = True
    rest = order[~chosen[order]]
    chosen[rest[: limit - len(first)]] = True
    return np.flatnonzero(chosen)


def limited(dataset: "Dataset", limit: int, seed: int) -> "Dataset":
    """Every split capped at ``limit`` rows (``subset_indices``); the fingerprint says so."""
    splits = {
        name: split.subset(subset_indices(split, limit, rng_for(seed, "limit", name)))
        for name, split in dataset.splits.items()
    }
    return replace(
        dataset,
        splits=splits,
        fingerprint=fingerprint_of(dataset.fingerprint, "limit", limit, seed),
    )
