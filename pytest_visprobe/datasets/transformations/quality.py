"""Quality transformations: JPEG, pixelate, downscale (compression and resolution artefacts).

Palette quantisation lives in colour.py beside posterize (both cut the colours); downscale
resamples without a low-pass filter, so its artefact is aliasing and blocks, not the blur a
bilinear round trip gives (which made it a member of the blur family in all but name).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pytest_visprobe.datasets.transformations.common import builtin, _pil, _arr, _resize


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
    """Down by a factor in [2, 4] and back up, nearest-neighbour both ways: a low-resolution copy
    shown enlarged, with its aliasing (pixels dropped, not averaged) and blocks, not a blur."""
    h, w = image.shape[:2]
    f = rng.uniform(2.0, 4.0)
    small = _resize(image, max(1, round(w / f)), max(1, round(h / f)), Image.Resampling.NEAREST)
    return _resize(small, w, h, Image.Resampling.NEAREST)
