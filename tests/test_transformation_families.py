"""Families do not leak: no two transformations of different families give near-identical images.

If a member of one family produced what a member of another produces, the generalization task
(train on some members, test on held-out ones) would reward telling the twins apart, not
knowing the family. The measure, per pair (a, b) over the same seeded images x:

    r(a, b) = Σ_x mean|a(x) − b(x)| / Σ_x ½ (mean|a(x) − x| + mean|b(x) − x|)

0 means the two edits give the same pixels; two unrelated edits of equal strength give about 1
or more. MARGIN = 0.5: two edits of different families must lie at least half as far from each
other as they lie, on average, from the original.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from pytest_visprobe.datasets import load_dataset
from pytest_visprobe.datasets.transformations import apply_transformation, get_transformation, list_transformations

MARGIN = 0.5


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Six natural photo crops and two shapes scenes at 64 pixels."""
    photos = load_dataset("photos", seed=0).split("test")
    shapes = load_dataset("shapes", seed=0, n_train=4, n_test=4, image_size=64).split("test")
    return np.concatenate([photos.images.get(range(6)), shapes.images.get(range(2))])


def ratio(out_a: np.ndarray, out_b: np.ndarray, original: np.ndarray) -> float:
    a, b, x = (v.astype(np.float64) for v in (out_a, out_b, original))
    return float(np.abs(a - b).mean(axis=(1, 2, 3)).sum()
                 / (0.5 * (np.abs(a - x).mean(axis=(1, 2, 3)) + np.abs(b - x).mean(axis=(1, 2, 3)))).sum())


def outputs(name: str, images: np.ndarray) -> np.ndarray:
    return np.stack([apply_transformation(name, image, seed=i) for i, image in enumerate(images)])


def test_no_two_transformations_of_different_families_are_near_identical(images):
    bank = list_transformations()
    out = {t.name: outputs(t.name, images) for t in bank}
    too_close = [(a.name, b.name, round(r, 3)) for a, b in itertools.combinations(bank, 2)
                 if a.family != b.family and (r := ratio(out[a.name], out[b.name], images)) < MARGIN]
    assert not too_close, f"cross-family pairs closer than {MARGIN}: {too_close}"


def test_the_measure_catches_the_old_downscale_which_was_a_blur(images):
    """The bank's former ``downscale`` (bilinear down by [2.5, 6] and back, in quality) is the
    kind of leak the test above is for: it falls under the margin against gaussian_blur."""
    def old_downscale(image: np.ndarray, seed: int) -> np.ndarray:
        f = np.random.default_rng(seed).uniform(2.5, 6.0)
        h, w = image.shape[:2]
        small = Image.fromarray(image).resize((round(w / f), round(h / f)), Image.Resampling.BILINEAR)
        return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR))

    old = np.stack([old_downscale(image, i) for i, image in enumerate(images)])
    assert ratio(old, outputs("gaussian_blur", images), images) < MARGIN


def test_colour_count_reductions_share_a_family():
    assert get_transformation("palette_quantize").family == get_transformation("posterize").family == "colour"
    assert get_transformation("downscale").family == "quality"


def test_downscale_is_blocky_not_blurred(images):
    """Nearest-neighbour both ways: every output pixel is one of the image's own pixels."""
    out = outputs("downscale", images)
    for image, edited in zip(images, out):
        colours = {tuple(p) for p in image.reshape(-1, 3)}
        assert {tuple(p) for p in edited.reshape(-1, 3)} <= colours
        assert not np.array_equal(edited, image)
