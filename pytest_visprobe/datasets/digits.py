"""scikit-learn's handwritten digits: a tiny real-image label dataset that needs no download.

1,797 greyscale 8x8 images (values 0-16) ship inside scikit-learn. They are scaled to uint8,
upsampled (bicubic) to ``image_size`` and repeated to RGB so every encoder can take them. The
train/test split is stratified and seeded, so every digit keeps its share in both splits.
"""

from __future__ import annotations

import numpy as np

from pytest_visprobe.datasets.base import ArrayImages, Dataset, Split, check_fraction, check_int, fingerprint_of

DESCRIPTION = (
    "scikit-learn handwritten digits (1,797 images, 10 classes) upsampled to RGB; offline"
)


def load_digits_dataset(
    *, seed: int = 0, image_size: int = 32, test_fraction: float = 0.3
) -> Dataset:
    """Load the digits with a seeded stratified train/test split."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    image_size = check_int("digits", "image_size", image_size, minimum=8)
    test_fraction = check_fraction("digits", "test_fraction", test_fraction)
    bunch = load_digits()
    raw = np.round(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    shape = (image_size, image_size)
    grey = np.stack(
        [np.asarray(Image.fromarray(img).resize(shape, Image.Resampling.BICUBIC)) for img in raw]
    )
    images = np.repeat(grey[..., None], 3, axis=-1)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=seed
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    splits = {
        "train": Split(images=ArrayImages(images[train_idx]), labels=labels[train_idx]),
        "test": Split(images=ArrayImages(images[test_idx]), labels=labels[test_idx]),
    }
    return Dataset(
        name="digits",
        splits=splits,
        class_names=[str(d) for d in range(10)],
        targets=frozenset({"label"}),
        fingerprint=fingerprint_of(
            "digits", seed, image_size, test_fraction, raw, labels, train_idx, test_idx
        ),
        description=DESCRIPTION,
    )
