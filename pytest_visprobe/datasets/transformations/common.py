"""Helpers shared by the built-in transformations, and the list they add themselves to."""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

TransformFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]

#: (name, family, fn) of every built-in, in definition order (the bank's order within a family)
BUILTINS: list[tuple[str, str, TransformFn]] = []


def builtin(name: str, family: str) -> Callable[[TransformFn], TransformFn]:
    """Add the decorated function to the bank (the first docstring line is its description)."""
    def add(fn: TransformFn) -> TransformFn:
        BUILTINS.append((name, family, fn))
        return fn

    return add


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(image))


def _arr(img: Image.Image) -> np.ndarray:
    return np.array(img.convert("RGB"), dtype=np.uint8)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _side(image: np.ndarray) -> int:
    return min(image.shape[0], image.shape[1])


def _either(
    rng: np.random.Generator, low: tuple[float, float], high: tuple[float, float]
) -> float:
    """A factor from ``low`` or ``high`` with equal odds: weakening and strengthening both,
    never the no-op band in between."""
    lo, hi = low if rng.random() < 0.5 else high
    return float(rng.uniform(lo, hi))


def _signed(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A magnitude in [lo, hi] with a random sign."""
    return float(rng.uniform(lo, hi) * rng.choice((-1.0, 1.0)))


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def _resize(image: np.ndarray, width: int, height: int, resample: Image.Resampling) -> np.ndarray:
    return _arr(_pil(image).resize((max(1, width), max(1, height)), resample))


def _warp(image: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """Resample ``image`` (bilinear) through the 3x3 homography ``inverse``, which maps output
    pixel centres (x, y) to input ones. The input is first mirrored outwards as far as the
    output's corners reach (a homography that keeps the horizon off the image samples inside
    their hull), so geometry is not betrayed by a fill colour. PIL does the resampling, ~2x
    faster than skimage's warp."""
    h, w = image.shape[:2]
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], float)
    reach = corners @ inverse.T
    reach = reach[:, :2] / reach[:, 2:]
    beyond = max(0.0, -reach.min(), (reach[:, 0] - (w - 1)).max(), (reach[:, 1] - (h - 1)).max())
    pad = int(np.ceil(beyond)) + 2
    padded = _pil(np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric"))
    # PIL's coordinates put pixel centres at +0.5 and here the input is offset by the margin.
    to_pil = np.array([[1.0, 0.0, pad + 0.5], [0.0, 1.0, pad + 0.5], [0.0, 0.0, 1.0]])
    from_pil = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    m = to_pil @ inverse @ from_pil
    coeffs = (m / m[2, 2]).ravel()[:8]
    out = padded.transform((w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR)
    return _arr(out)


def _about_centre(image: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """Homography applying the 2x2 ``linear`` map about the image centre."""
    h, w = image.shape[:2]
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    m = np.eye(3)
    m[:2, :2] = linear
    m[:2, 2] = c - linear @ c
    return m


def _convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel with the 2-D ``kernel`` normalised to sum 1, mirroring the border.

    By FFT (SciPy), since motion and defocus kernels reach 30+ pixels at 224. The margin is
    kernel - 1 wide, so the transform can be the padded size: wrap-around only reaches the
    first kernel - 1 rows and columns, which are cropped (2x faster than fftconvolve here).
    """
    from scipy import fft

    kh, kw = kernel.shape
    pad = ((0, 0), (kh // 2, kh - 1 - kh // 2), (kw // 2, kw - 1 - kw // 2))
    planes = np.moveaxis(image, 2, 0).astype(np.float32)
    planes = np.pad(planes, pad, mode="symmetric")
    shape = (fft.next_fast_len(planes.shape[1], True), fft.next_fast_len(planes.shape[2], True))
    spectrum = fft.rfft2(planes, shape) * fft.rfft2(kernel / kernel.sum(), shape)
    out = fft.irfft2(spectrum, shape)[:, kh - 1 : planes.shape[1], kw - 1 : planes.shape[2]]
    return _to_uint8(np.moveaxis(out, 0, 2))


def _luma(image: np.ndarray) -> np.ndarray:
    return np.array(_pil(image).convert("L"), dtype=np.uint8)


def _filtered(image: np.ndarray, kernel: ImageFilter.Filter, *, gray: bool = False) -> np.ndarray:
    """Apply a 3x3 PIL filter on a mirrored 1-pixel margin. PIL copies the outermost pixels
    through unfiltered, which would leave an unedited frame: a giveaway, not a style."""
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="symmetric")
    img = _pil(padded).convert("L") if gray else _pil(padded)
    return np.array(img.filter(kernel), dtype=np.uint8)[1:-1, 1:-1]


def _quantized(image: np.ndarray, colours: int) -> np.ndarray:
    """Map to a ``colours``-colour palette, no dithering. PIL's maximum-coverage palette keeps
    small vivid regions (median cut gives them away to the background). It is built from a
    32-pixel thumbnail, which looks the same and is 5x (at 64 px) to 50x (224) faster."""
    img = _pil(image)
    thumb = img.copy()
    thumb.thumbnail((32, 32))
    palette = thumb.quantize(colours, Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE)
    return _arr(img.quantize(palette=palette, dither=Image.Dither.NONE))
