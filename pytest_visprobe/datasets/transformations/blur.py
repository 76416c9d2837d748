"""Blur transformations: Gaussian, box, motion and defocus blur; sharpen."""

from __future__ import annotations

import numpy as np
from PIL import ImageFilter

from pytest_visprobe.datasets.transformations.common import builtin, _pil, _arr, _side, _convolve


@builtin("gaussian_blur", "blur")
def gaussian_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, sigma in [0.015, 0.04] of the shorter side (PIL GaussianBlur)."""
    radius = rng.uniform(0.015, 0.04) * _side(image)
    return _arr(_pil(image).filter(ImageFilter.GaussianBlur(radius)))


@builtin("box_blur", "blur")
def box_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Box (mean) blur, radius in [0.015, 0.04] of the shorter side (PIL BoxBlur)."""
    radius = max(1.0, rng.uniform(0.015, 0.04) * _side(image))
    return _arr(_pil(image).filter(ImageFilter.BoxBlur(radius)))


@builtin("motion_blur", "blur")
def motion_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Linear motion blur, length in [0.06, 0.15] of the shorter side, any direction."""
    from skimage.draw import line_aa

    length = max(3, round(rng.uniform(0.06, 0.15) * _side(image)))
    angle = rng.uniform(0.0, np.pi)
    r = length // 2
    dx, dy = round(r * np.cos(angle)), round(r * np.sin(angle))
    kernel = np.zeros((2 * r + 1, 2 * r + 1), dtype=np.float32)
    rr, cc, val = line_aa(r - dy, r - dx, r + dy, r + dx)
    kernel[rr, cc] = val
    return _convolve(image, kernel)


@builtin("defocus_blur", "blur")
def defocus_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Out-of-focus lens: uniform disk kernel, radius in [0.03, 0.07] of the shorter side."""
    r = max(1.0, rng.uniform(0.03, 0.07) * _side(image))
    k = int(np.ceil(r))
    y, x = np.mgrid[-k : k + 1, -k : k + 1]
    return _convolve(image, (x * x + y * y <= r * r).astype(np.float32))


@builtin("sharpen", "blur")
def sharpen(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unsharp mask, radius in [0.015, 0.04] of the shorter side, amount in [150, 300] %."""
    radius = max(1.0, rng.uniform(0.015, 0.04) * _side(image))
    mask = ImageFilter.UnsharpMask(radius=radius, percent=int(rng.integers(150, 301)), threshold=0)
    return _arr(_pil(image).filter(mask))
