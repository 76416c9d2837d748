"""Colour transformations: brightness, contrast, saturation, hue, grayscale, invert, posterize,
palette quantisation, solarize, ... (palette quantisation sits beside posterize: both cut the
number of colours, so splitting them across families leaked one into the other's held-out task)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from pytest_visprobe.datasets.transformations.common import builtin, _pil, _arr, _quantized, _to_uint8, _either, _signed


@builtin("brightness", "colour")
def brightness(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness factor in [0.35, 0.7] (darker) or [1.4, 2.0] (brighter), PIL ImageEnhance."""
    factor = _either(rng, (0.35, 0.7), (1.4, 2.0))
    return _arr(ImageEnhance.Brightness(_pil(image)).enhance(factor))


@builtin("contrast", "colour")
def contrast(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast factor in [0.25, 0.6] (flatter) or [1.6, 2.5] (harsher), PIL ImageEnhance."""
    factor = _either(rng, (0.25, 0.6), (1.6, 2.5))
    return _arr(ImageEnhance.Contrast(_pil(image)).enhance(factor))


@builtin("saturation", "colour")
def saturation(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Saturation factor in [0.15, 0.5] (washed out) or [1.8, 3.0] (vivid), PIL ImageEnhance."""
    factor = _either(rng, (0.15, 0.5), (1.8, 3.0))
    return _arr(ImageEnhance.Color(_pil(image)).enhance(factor))


@builtin("hue_shift", "colour")
def hue_shift(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hue rotated by ±[0.15, 0.5] of a turn in HSV, saturation and value kept."""
    hsv = np.array(_pil(image).convert("HSV"), dtype=np.uint8)
    hsv[..., 0] += np.uint8(round(_signed(rng, 0.15, 0.5) * 256) % 256)  # uint8 wraps: a turn
    return _arr(Image.merge("HSV", [Image.fromarray(hsv[..., i]) for i in range(3)]))


@builtin("grayscale", "colour")
def grayscale(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """ITU-R 601 luma copied to all three channels (no parameters)."""
    return _arr(ImageOps.grayscale(_pil(image)))


@builtin("invert", "colour")
def invert(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photographic negative, 255 - x (no parameters)."""
    return _arr(ImageOps.invert(_pil(image)))


@builtin("posterize", "colour")
def posterize(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep [2, 3] bits per channel (PIL ImageOps.posterize)."""
    return _arr(ImageOps.posterize(_pil(image), int(rng.integers(2, 4))))


@builtin("palette_quantize", "colour")
def palette_quantize(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """GIF-like palette of [4, 16] colours (maximum coverage, no dithering)."""
    return _quantized(image, int(rng.integers(4, 17)))


@builtin("solarize", "colour")
def solarize(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Invert values above a threshold in [64, 192] (PIL ImageOps.solarize)."""
    return _arr(ImageOps.solarize(_pil(image), threshold=int(rng.integers(64, 193))))


@builtin("equalize", "colour")
def equalize(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Histogram equalisation per channel (PIL ImageOps.equalize; no parameters)."""
    return _arr(ImageOps.equalize(_pil(image)))


@builtin("gamma", "colour")
def gamma(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma curve x ** g with g in [0.4, 0.7] (lifts shadows) or [1.5, 2.5] (deepens)."""
    g = _either(rng, (0.4, 0.7), (1.5, 2.5))
    lut = _to_uint8(255.0 * (np.arange(256) / 255.0) ** g)
    return np.take(lut, image)
