"""Quality transformations: JPEG, pixelate, downscale, palette quantisation."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pytest_visprobe.datasets.transformations.common import builtin, _pil, _arr, _resize, _quantized


@builtin("jpeg", "quality")
def jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """JPEG round trip at quality in [5, 25] (PIL encoder, 4:2:0 chroma subsampling)."""
    buf = io.BytesIO()
    _pil(image).save(buf, format="JPEG", quality=int(rng.integers(5, 26)))
    buf.seek(0)
    with Image.open(buf) as img:
        return _arr(img)


@builtin("pixelate", "quality")
def pixelate(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blocks of [4, 10] pixels: box-averaged down, nearest-neighbour back up."""
    h, w = image.shape[:2]
    f = rng.uniform(4.0, 10.0)
    small = _resize(image, round(w / f), round(h / f), Image.Resampling.BOX)
    return _resize(small, w, h, Image.Resampling.NEAREST)


@builtin("downscale", "quality")
def downscale(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Down by a factor in [2.5, 6] and back up (bilinear): a low-resolution upload."""
    h, w = image.shape[:2]
    f = rng.uniform(2.5, 6.0)
    small = _resize(image, round(w / f), round(h / f), Image.Resampling.BILINEAR)
    return _resize(small, w, h, Image.Resampling.BILINEAR)


@builtin("palette_quantize", "quality")
def palette_quantize(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """GIF-like palette of [4, 16] colours (maximum coverage, no dithering)."""
    return _quantized(image, int(rng.integers(4, 17)))
