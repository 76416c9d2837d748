"""Crops of natural photos shipped inside scikit-image: offline source images for the
transformation probe.

Only the sample images that scikit-image installs with the wheel are used (the others are
fetched with pooch on first use, which fails offline). Synthetic images (checkerboard,
colour wheel, logo, phantoms, binary masks), the motion-blurred ``clock`` (it would look
like a blur transformation) and the tiny ``microaneurysms``/``lfw_subset`` are left out.
Greyscale photos are repeated to RGB.

Split by source photo: the photos are shuffled with the seed and ``round(test_fraction * P)``
of them (at least one) provide every test crop, the rest every train crop, so no photo
contributes to both splits and a probe cannot score by recognising a photo it trained on.
``sources`` gives the index (into ``class_names``, the photo names) of each crop's photo.
"""

from __future__ import annotations

import functools

import numpy as np

from pytest_visprobe.datasets.base import (
    ArrayImages,
    Dataset,
    DatasetError,
    Split,
    check_fraction,
    check_int,
    fingerprint_of,
    rng_for,
)

#: Bumped whenever the cropping changes what a seed produces (part of the fingerprint).
GENERATOR_VERSION = 1

#: (name, how to get it from ``skimage.data``); all ship in the scikit-image wheel.
PHOTOS = (
    ("astronaut", lambda data: data.astronaut()),
    ("camera", lambda data: data.camera()),
    ("chelsea", lambda data: data.chelsea()),
    ("coffee", lambda data: data.coffee()),
    ("rocket", lambda data: data.rocket()),
    ("motorcycle", lambda data: data.stereo_motorcycle()[0]),
    ("hubble_deep_field", lambda data: data.hubble_deep_field()),
    ("immunohistochemistry", lambda data: data.immunohistochemistry()),
    ("retina", lambda data: data.retina()),
    ("coins", lambda data: data.coins()),
    ("moon", lambda data: data.moon()),
    ("brick", lambda data: data.brick()),
    ("grass", lambda data: data.grass()),
    ("gravel", lambda data: data.gravel()),
    ("cell", lambda data: data.cell()),
    ("page", lambda data: data.page()),
    ("text", lambda data: data.text()),
)
PHOTO_NAMES = tuple(name for name, _ in PHOTOS)

_SCALE = (0.2, 0.7)  # crop side as a fraction of the photo's shorter side
_MIN_STD = 6.0  # crops flatter than this (e.g. the black border of `retina`) are redrawn
_TRIES = 20

DESCRIPTION = (
    f"random crops of {len(PHOTOS)} natural photos shipped with scikit-image; "
    "train and test crops come from disjoint photos; offline, seeded"
)


def load_photos(
    *,
    seed: int = 0,
    n_train: int = 400,
    n_test: int = 200,
    image_size: int = 64,
    test_fraction: float = 0.3,
) -> Dataset:
    """Seeded square crops at random scale, resized to ``image_size``."""
    n_train = check_int("photos", "n_train", n_train, minimum=1)
    n_test = check_int("photos", "n_test", n_test, minimum=1)
    image_size = check_int("photos", "image_size", image_size, minimum=8)
    test_fraction = check_fraction("photos", "test_fraction", test_fraction)
    photos = load_photo_arrays()
    order = rng_for(seed, "photos", "split").permutation(len(photos))
    n_test_photos = min(len(photos) - 1, max(1, int(round(test_fraction * len(photos)))))
    test_photos = np.sort(order[:n_test_photos])
    train_photos = np.sort(order[n_test_photos:])
    splits = {
        "train": _crops(
            photos, train_photos, n_train, image_size, rng_for(seed, "photos", "train")
        ),
        "test": _crops(photos, test_photos, n_test, image_size, rng_for(seed, "photos", "test")),
    }
    return Dataset(
        name="photos",
        splits=splits,
        class_names=list(PHOTO_NAMES),
        targets=frozenset({"source"}),
        fingerprint=fingerprint_of(
            "photos", GENERATOR_VERSION, seed, n_train, n_test, image_size, test_fraction,
            splits["train"].images.array, splits["train"].sources,
            splits["test"].images.array, splits["test"].sources,
        ),
        description=DESCRIPTION,
    )


@functools.lru_cache(maxsize=1)
def load_photo_arrays() -> tuple[np.ndarray, ...]:
    """The photos as read-only uint8 ``[H, W, 3]`` arrays, read once per process."""
    try:
        from skimage import data
    except ImportError as exc:
        raise DatasetError(
            f"the 'photos' dataset needs scikit-image ({exc}); install it with "
            "`pip install scikit-image`."
        ) from None
    arrays = []
    for name, get in PHOTOS:
        try:
            img = np.asarray(get(data))
        except Exception as exc:  # a broken install or a future release that stops shipping it
            raise DatasetError(
                f"scikit-image's sample photo {name!r} could not be loaded "
                f"({type(exc).__name__}: {exc}); reinstall scikit-image "
                "(`pip install --force-reinstall scikit-image`)."
            ) from None
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        img = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
        img.setflags(write=False)
        arrays.append(img)
    return tuple(arrays)


def _crops(photos, which, n, size, rng) -> Split:
    """``n`` crops spread evenly over the photos ``which`` (each photo within one of the others)."""
    from PIL import Image

    sources = rng.permutation(np.resize(rng.permutation(which), n)).astype(np.int64)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for row, src in enumerate(sources):
        photo = photos[src]
        height, width = photo.shape[:2]
        for _ in range(_TRIES):
            side = max(8, int(round(rng.uniform(*_SCALE) * min(height, width))))
            top = int(rng.integers(0, height - side + 1))
            left = int(rng.integers(0, width - side + 1))
            crop = photo[top : top + side, left : left + side]
            if crop[::4, ::4].std() >= _MIN_STD:  # strided: cheap and enough to spot a flat crop
                break
        resized = Image.fromarray(crop).resize((size, size), Image.Resampling.BICUBIC)
        out[row] = np.asarray(resized)
    return Split(images=ArrayImages(out), sources=sources)
