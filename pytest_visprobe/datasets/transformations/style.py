"""Style transformations: artistic filters standing in for neural style transfer."""

from __future__ import annotations

import numpy as np
from PIL import ImageFilter, ImageOps

from pytest_visprobe.datasets.transformations.common import builtin, _pil, _arr, _to_uint8, _side, _luma, _filtered, _quantized


@builtin("emboss", "style")
def emboss(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey relief lit from a direction in [0, 360) degrees, strength in [1, 3] (3x3 kernel)."""
    t, strength = rng.uniform(0.0, 2 * np.pi), rng.uniform(1.0, 3.0)
    dy, dx = np.mgrid[-1:2, -1:2]
    kernel = strength * (dx * np.cos(t) + dy * np.sin(t))
    relief = ImageFilter.Kernel((3, 3), kernel.ravel().tolist(), scale=1, offset=128)
    return np.repeat(_filtered(image, relief, gray=True)[..., None], 3, axis=2)


@builtin("edges", "style")
def edges(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour edge map, gain in [1.5, 4], light-on-dark or dark-on-light (PIL FIND_EDGES)."""
    gain = _to_uint8(np.arange(256) * rng.uniform(1.5, 4.0))  # as a lookup table: cheap
    lut = 255 - gain if rng.random() < 0.5 else gain
    return np.take(lut, _filtered(image, ImageFilter.FIND_EDGES))


@builtin("contour", "style")
def contour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Line drawing: PIL CONTOUR filter, dark outlines on white (no parameters)."""
    return _filtered(image, ImageFilter.CONTOUR)


@builtin("cartoon", "style")
def cartoon(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat colours ([4, 12]-colour palette), black lines on the top [8, 20] % of edges."""
    # A light box blur, not a median: the palette flattens regions anyway and PIL's median is
    # 10x slower; the blur only keeps palette boundaries and edge lines from speckling.
    smooth = _arr(_pil(image).filter(ImageFilter.BoxBlur(max(0.5, 0.005 * _side(image)))))
    flat = _quantized(smooth, int(rng.integers(4, 13)))
    strength = _filtered(smooth, ImageFilter.FIND_EDGES, gray=True)
    cut = max(np.percentile(strength, 100.0 - rng.uniform(8.0, 20.0)), 8.0)
    flat[strength > cut] = 0
    return flat


@builtin("oil_paint", "style")
def oil_paint(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Kuwahara filter (flat, edge-keeping brush strokes), radius [0.025, 0.06] of the side."""
    from scipy.ndimage import uniform_filter

    half = max(1, round(rng.uniform(0.025, 0.06) * _side(image) / 2))
    m = 2 * half  # quadrants are (m+1)-pixel squares with the pixel at a corner
    h, w = image.shape[:2]
    luma = _luma(image).astype(np.float32)
    # Centred box means of colour, luma and luma squared, read half a quadrant away in each
    # diagonal: each pixel takes the mean colour of its least-varying (in luma) quadrant.
    planes = np.concatenate([np.moveaxis(image, 2, 0), luma[None], luma[None] ** 2], dtype="f4")
    box = uniform_filter(planes, (1, m + 1, m + 1), mode="reflect")
    box = np.pad(box, ((0, 0), (half, half), (half, half)), mode="edge")
    quadrants = [box[:, dy : dy + h, dx : dx + w] for dy in (0, m) for dx in (0, m)]
    variance = np.empty((4, h, w), dtype=np.float32)
    for k, q in enumerate(quadrants):
        np.subtract(q[4], q[3] * q[3], out=variance[k])
    pick = variance.argmin(axis=0)
    out = quadrants[0][:3].copy()
    for k in (1, 2, 3):
        np.copyto(out, quadrants[k][:3], where=pick == k)
    return _to_uint8(np.moveaxis(out, 0, 2))


@builtin("pencil_sketch", "style")
def pencil_sketch(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey colour-dodge sketch: luma / (1 - blurred negative), blur sigma [0.02, 0.06] of side."""
    gray = _pil(image).convert("L")
    sigma = rng.uniform(0.02, 0.06) * _side(image)
    blurred = ImageOps.invert(gray).filter(ImageFilter.GaussianBlur(sigma))
    g, b = np.asarray(gray, dtype=np.float32), np.asarray(blurred, dtype=np.float32)
    sketch = _to_uint8(g * 255.0 / np.maximum(255.0 - b, 1.0))
    return np.repeat(sketch[..., None], 3, axis=2)
