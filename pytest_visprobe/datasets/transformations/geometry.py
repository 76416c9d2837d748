"""Geometric transformations: rotations, flips, crop-zoom, shear, perspective."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pytest_visprobe.datasets.transformations.common import builtin, _side, _signed, _resize, _warp, _about_centre


@builtin("rotate_90", "geometry")
def rotate_90(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Quarter turns, k in [1, 3] (90-270 degrees); a non-square image is resized back."""
    h, w = image.shape[:2]
    out = np.rot90(image, k=int(rng.integers(1, 4)))
    if out.shape[:2] != (h, w):
        return _resize(out, w, h, Image.Resampling.BICUBIC)
    return out.copy()


@builtin("rotate", "geometry")
def rotate(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotation by ±[10, 40] degrees about the centre, border mirrored."""
    t = np.radians(_signed(rng, 10.0, 40.0))  # as the output-to-input map: same distribution
    turn = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return _warp(image, _about_centre(image, turn))


@builtin("flip_horizontal", "geometry")
def flip_horizontal(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirror left-right (no parameters)."""
    return image[:, ::-1].copy()


@builtin("flip_vertical", "geometry")
def flip_vertical(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirror top-bottom (no parameters)."""
    return image[::-1].copy()


@builtin("crop_zoom", "geometry")
def crop_zoom(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A window of [0.45, 0.75] of each side, anywhere, resized back up (bicubic)."""
    h, w = image.shape[:2]
    f = rng.uniform(0.45, 0.75)
    ch, cw = max(1, round(h * f)), max(1, round(w * f))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return _resize(image[top : top + ch, left : left + cw], w, h, Image.Resampling.BICUBIC)


@builtin("shear", "geometry")
def shear(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Horizontal or vertical shear by ±[15, 35] degrees about the centre, border mirrored."""
    # The output-to-input map is drawn directly: with a random sign, its inverse (the shear
    # applied) has the same distribution.
    s = np.tan(np.radians(_signed(rng, 15.0, 35.0)))
    linear = np.array([[1.0, s], [0.0, 1.0]])
    if rng.random() < 0.5:
        linear = linear.T  # vertical instead of horizontal
    return _warp(image, _about_centre(image, linear))


@builtin("perspective", "geometry")
def perspective(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Homography moving each corner by up to d of the side per axis, d in [0.12, 0.25]."""
    h, w = image.shape[:2]
    if min(h, w) < 2:
        return image.copy()  # corners coincide: no homography to draw
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)
    d = rng.uniform(0.12, 0.25) * _side(image)
    dst = src + rng.uniform(-d, d, size=src.shape)  # where each output corner samples from
    # Solve dst ~ H @ src for the 8 unknowns of H (h33 = 1): the direct linear transform.
    a = np.zeros((8, 8))
    b = dst.reshape(-1)
    for i, ((x, y), (u, v)) in enumerate(zip(src, dst)):
        a[2 * i] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        a[2 * i + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
    matrix = np.append(np.linalg.solve(a, b), 1.0).reshape(3, 3)
    return _warp(image, matrix)
