"""Overlay transformations: text, shapes, borders, grids drawn over the image."""

from __future__ import annotations

import string

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pytest_visprobe.datasets.transformations.common import builtin, _pil, _arr, _to_uint8, _side, _colour


def _bitmap_font() -> ImageFont.ImageFont:
    """PIL's built-in bitmap font: needs no font file and renders alike on every machine."""
    if hasattr(ImageFont, "load_default_imagefont"):  # Pillow >= 10.1
        return ImageFont.load_default_imagefont()
    return ImageFont.load_default()  # older Pillow: this is the bitmap font


@builtin("text", "overlay")
def text(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random 3-8 character text, height in [0.15, 0.3] of the side, random colour and place."""
    chars = string.ascii_uppercase + string.digits
    label = "".join(rng.choice(list(chars), size=int(rng.integers(3, 9))))
    font = _bitmap_font()
    left, top, right, bottom = font.getbbox(label)
    mask = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(mask).text((-left, -top), label, fill=255, font=font)
    h, w = image.shape[:2]
    scale = rng.uniform(0.15, 0.3) * _side(image) / mask.height
    scale = min(scale, 0.95 * w / mask.width)  # the whole string fits across
    tw, th = max(1, round(mask.width * scale)), max(1, round(mask.height * scale))
    mask = mask.resize((tw, th), Image.Resampling.BILINEAR)
    x, y = int(rng.integers(0, max(1, w - tw + 1))), int(rng.integers(0, max(1, h - th + 1)))
    img = _pil(image)
    img.paste(_colour(rng), (x, y, x + tw, y + th), mask)
    return _arr(img)


def _star(cx: float, cy: float, r: float, turn: float) -> list[tuple[float, float]]:
    angles = turn + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    return list(zip(cx + radii * np.cos(angles), cy + radii * np.sin(angles)))


@builtin("shape", "overlay")
def shape(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """1-3 solid icons (disc, square, triangle, star), size [0.15, 0.35] of the side."""
    h, w = image.shape[:2]
    img = _pil(image)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        r = max(1.0, rng.uniform(0.075, 0.175) * _side(image))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        kind, colour, turn = int(rng.integers(0, 4)), _colour(rng), rng.uniform(0, 2 * np.pi)
        if kind == 0:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        elif kind == 1:
            draw.regular_polygon((cx, cy, r), 4, rotation=np.degrees(turn), fill=colour)
        elif kind == 2:
            draw.regular_polygon((cx, cy, r), 3, rotation=np.degrees(turn), fill=colour)
        else:
            draw.polygon(_star(cx, cy, r, turn), fill=colour)
    return _arr(img)


@builtin("border", "overlay")
def border(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Solid frame painted over the edges, width [0.04, 0.12] of the side, random colour."""
    width = max(1, round(rng.uniform(0.04, 0.12) * _side(image)))
    out = image.copy()
    colour = np.array(_colour(rng), dtype=np.uint8)
    out[:width], out[-width:], out[:, :width], out[:, -width:] = colour, colour, colour, colour
    return out


@builtin("grid", "overlay")
def grid(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Translucent grid lines, spacing [0.12, 0.3] of the side, opacity [0.4, 0.8]."""
    h, w = image.shape[:2]
    step = max(2, round(rng.uniform(0.12, 0.3) * _side(image)))
    width = max(1, round(0.015 * _side(image)))
    phase = int(rng.integers(0, step))
    on_y = (np.arange(h) + phase) % step < width
    on_x = (np.arange(w) + phase) % step < width
    lines = on_y[:, None] | on_x[None, :]
    alpha = rng.uniform(0.4, 0.8)
    out = image.astype(np.float32)
    out[lines] = (1 - alpha) * out[lines] + alpha * np.array(_colour(rng), dtype=np.float32)
    return _to_uint8(out)
