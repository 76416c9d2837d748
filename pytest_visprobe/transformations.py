"""The transformation bank of the substance-or-style probe (PROTOCOLS.md section C).

A transformation is ``fn(image, rng) -> image`` on uint8 ``[H, W, 3]`` arrays, same shape out.
Its parameters are drawn from ``rng`` within the range its docstring states, so one seed gives
one concrete edit and the probe sees the whole range across seeds. Spatial parameters are
fractions of the shorter image side, so a transformation looks alike at 64 and 224 pixels.

Built-ins use PIL and NumPy; SciPy (FFT, box filter) and scikit-image (anti-aliased line) are
imported on first use, as they add ~0.2-0.5 s. The module never imports torch. Users add their
own transformations with :func:`register_transformation`; :func:`apply_transformation` is the
one way to run any of them, seeded.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import re
import string
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from pytest_visprobe.errors import VisprobeError

__all__ = [
    "FAMILIES",
    "Transformation",
    "TransformationError",
    "apply_transformation",
    "generalization_split",
    "get_transformation",
    "list_families",
    "list_transformations",
    "register_transformation",
    "unregister_transformation",
]

TransformFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]

#: Built-in families, in the order labels and reports use. ``identity`` is a class of its own.
FAMILIES: tuple[str, ...] = (
    "identity",
    "colour",
    "quality",
    "noise",
    "blur",
    "overlay",
    "geometry",
    "style",
)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class TransformationError(VisprobeError):
    """A transformation name, family or registration is invalid, or a transformation broke
    the image contract (uint8 ``[H, W, 3]`` in, same shape and dtype out)."""


@dataclass(frozen=True)
class Transformation:
    """One registered transformation; ``description`` states its parameter range."""

    name: str
    family: str
    fn: TransformFn
    description: str


_REGISTRY: dict[str, Transformation] = {}
_EXTRA_FAMILIES: list[str] = []


# --------------------------------------------------------------------------------------------
# Registry


def list_families() -> list[str]:
    """Built-in families followed by any that users registered with ``new_family=True``."""
    return list(FAMILIES) + list(_EXTRA_FAMILIES)


def register_transformation(
    name: str,
    family: str,
    fn: TransformFn,
    *,
    description: str,
    new_family: bool = False,
) -> Transformation:
    """Add ``fn`` to the bank under ``name``.

    ``family`` must be one of :func:`list_families` unless ``new_family=True``, so a typo does
    not silently create a one-member family. Names are unique; unregister first to replace.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise TransformationError(
            f"invalid transformation name {name!r}: use letters, digits, '_', '.', '-' "
            "(it becomes a class label and a test id)."
        )
    if name in _REGISTRY:
        raise TransformationError(
            f"a transformation named {name!r} is already registered (family "
            f"{_REGISTRY[name].family!r}); pick another name or call "
            f"unregister_transformation({name!r}) first."
        )
    if not isinstance(family, str) or not _NAME_RE.match(family):
        raise TransformationError(f"invalid family name {family!r}.")
    if family not in list_families():
        if not new_family:
            raise TransformationError(
                f"unknown family {family!r}{_did_you_mean(family, list_families())}; known "
                f"families: {', '.join(list_families())}. Pass new_family=True to create it."
            )
        _EXTRA_FAMILIES.append(family)
    if not callable(fn):
        raise TransformationError(f"transformation {name!r}: fn must be callable, got {fn!r}.")
    if not isinstance(description, str) or not description.strip():
        raise TransformationError(
            f"transformation {name!r}: give a description stating its parameter range."
        )
    entry = Transformation(name=name, family=family, fn=fn, description=description.strip())
    _REGISTRY[name] = entry
    return entry


def unregister_transformation(name: str) -> Transformation:
    """Remove ``name`` from the bank (a user family left empty goes too); returns the entry."""
    entry = get_transformation(name)
    del _REGISTRY[name]
    if entry.family in _EXTRA_FAMILIES and not list_transformations(entry.family):
        _EXTRA_FAMILIES.remove(entry.family)
    return entry


def list_transformations(family: str | None = None) -> list[Transformation]:
    """Registered transformations in family order, then registration order."""
    if family is not None and family not in list_families():
        raise TransformationError(
            f"unknown family {family!r}{_did_you_mean(family, list_families())}; known "
            f"families: {', '.join(list_families())}."
        )
    order = {fam: i for i, fam in enumerate(list_families())}
    entries = sorted(_REGISTRY.values(), key=lambda t: order[t.family])  # stable sort
    return [t for t in entries if family is None or t.family == family]


def get_transformation(name: str) -> Transformation:
    """The registered transformation ``name``; an unknown name suggests the closest ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise TransformationError(
            f"unknown transformation {name!r}{_did_you_mean(str(name), list(_REGISTRY))}; "
            "list_transformations() shows them all."
        ) from None


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _stable_hash(text: str) -> int:
    """64-bit hash of ``text`` that, unlike ``hash()``, is the same in every process."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def _check_seed(seed: object) -> None:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TransformationError(f"seed must be a non-negative int, got {seed!r}.")


def _describe(array: object) -> str:
    if isinstance(array, np.ndarray):
        return f"{array.dtype} {list(array.shape)}"
    return type(array).__name__


def apply_transformation(name: str, image: np.ndarray, *, seed: int) -> np.ndarray:
    """Apply ``name`` to ``image`` with parameters drawn from ``seed``.

    Deterministic in (name, image, seed): the generator is seeded from the seed and a stable
    hash of the name, so two transformations under one seed draw independent parameters. The
    parameters depend on (name, seed) only, so give each source image its own seed to spread
    the range over a dataset. The input is passed read-only (a transformation must not edit
    it) and the output is checked against the contract.
    """
    entry = get_transformation(name)
    _check_seed(seed)
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
        or image.shape[0] < 1
        or image.shape[1] < 1
    ):
        got = _describe(image)
        raise TransformationError(f"{name}: expected a uint8 [H, W, 3] image, got {got}.")
    view = image.view()
    view.flags.writeable = False
    rng = np.random.default_rng([int(seed), _stable_hash(name)])
    out = entry.fn(view, rng)
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != image.shape:
        raise TransformationError(
            f"transformation {name!r} returned {_describe(out)}; it must return uint8 "
            f"{list(image.shape)} (the input's shape)."
        )
    if not out.flags.writeable or np.may_share_memory(out, image):
        out = out.copy()  # the caller owns the result; the input stays untouched
    return out


def generalization_split(seed: int = 0) -> tuple[list[str], list[str]]:
    """Split the bank into (train names, held-out names) for the generalization task.

    In every family except ``identity`` with at least two members, ``max(1, n // 4)`` members
    are held out, chosen by a generator seeded from ``seed`` and the family name. The family
    probe trains on the rest and is scored on the held-out members, so each family keeps at
    least one training member; identity is never held out. Both lists follow bank order.
    """
    _check_seed(seed)
    held: set[str] = set()
    for family in list_families():
        names = sorted(t.name for t in list_transformations(family))
        if family == "identity" or len(names) < 2:
            continue
        rng = np.random.default_rng([int(seed), _stable_hash("generalization_split:" + family)])
        k = max(1, len(names) // 4)
        held.update(names[i] for i in rng.choice(len(names), size=k, replace=False))
    order = [t.name for t in list_transformations()]
    return [n for n in order if n not in held], [n for n in order if n in held]


# --------------------------------------------------------------------------------------------
# Helpers shared by the built-ins


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


# --------------------------------------------------------------------------------------------
# Built-in transformations. The first docstring line is the registry description.

_BUILTINS: list[tuple[str, str, TransformFn]] = []


def _builtin(name: str, family: str) -> Callable[[TransformFn], TransformFn]:
    def add(fn: TransformFn) -> TransformFn:
        _BUILTINS.append((name, family, fn))
        return fn

    return add


@_builtin("identity", "identity")
def identity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unchanged image (no parameters): the reference class."""
    return image.copy()


# colour ---------------------------------------------------------------------------------------


@_builtin("brightness", "colour")
def brightness(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness factor in [0.35, 0.7] (darker) or [1.4, 2.0] (brighter), PIL ImageEnhance."""
    factor = _either(rng, (0.35, 0.7), (1.4, 2.0))
    return _arr(ImageEnhance.Brightness(_pil(image)).enhance(factor))


@_builtin("contrast", "colour")
def contrast(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast factor in [0.25, 0.6] (flatter) or [1.6, 2.5] (harsher), PIL ImageEnhance."""
    factor = _either(rng, (0.25, 0.6), (1.6, 2.5))
    return _arr(ImageEnhance.Contrast(_pil(image)).enhance(factor))


@_builtin("saturation", "colour")
def saturation(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Saturation factor in [0.15, 0.5] (washed out) or [1.8, 3.0] (vivid), PIL ImageEnhance."""
    factor = _either(rng, (0.15, 0.5), (1.8, 3.0))
    return _arr(ImageEnhance.Color(_pil(image)).enhance(factor))


@_builtin("hue_shift", "colour")
def hue_shift(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hue rotated by ±[0.15, 0.5] of a turn in HSV, saturation and value kept."""
    hsv = np.array(_pil(image).convert("HSV"), dtype=np.uint8)
    hsv[..., 0] += np.uint8(round(_signed(rng, 0.15, 0.5) * 256) % 256)  # uint8 wraps: a turn
    return _arr(Image.merge("HSV", [Image.fromarray(hsv[..., i]) for i in range(3)]))


@_builtin("grayscale", "colour")
def grayscale(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """ITU-R 601 luma copied to all three channels (no parameters)."""
    return _arr(ImageOps.grayscale(_pil(image)))


@_builtin("invert", "colour")
def invert(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photographic negative, 255 - x (no parameters)."""
    return _arr(ImageOps.invert(_pil(image)))


@_builtin("posterize", "colour")
def posterize(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep [2, 3] bits per channel (PIL ImageOps.posterize)."""
    return _arr(ImageOps.posterize(_pil(image), int(rng.integers(2, 4))))


@_builtin("solarize", "colour")
def solarize(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Invert values above a threshold in [64, 192] (PIL ImageOps.solarize)."""
    return _arr(ImageOps.solarize(_pil(image), threshold=int(rng.integers(64, 193))))


@_builtin("equalize", "colour")
def equalize(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Histogram equalisation per channel (PIL ImageOps.equalize; no parameters)."""
    return _arr(ImageOps.equalize(_pil(image)))


@_builtin("gamma", "colour")
def gamma(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma curve x ** g with g in [0.4, 0.7] (lifts shadows) or [1.5, 2.5] (deepens)."""
    g = _either(rng, (0.4, 0.7), (1.5, 2.5))
    lut = _to_uint8(255.0 * (np.arange(256) / 255.0) ** g)
    return np.take(lut, image)


# quality --------------------------------------------------------------------------------------


@_builtin("jpeg", "quality")
def jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """JPEG round trip at quality in [5, 25] (PIL encoder, 4:2:0 chroma subsampling)."""
    buf = io.BytesIO()
    _pil(image).save(buf, format="JPEG", quality=int(rng.integers(5, 26)))
    buf.seek(0)
    with Image.open(buf) as img:
        return _arr(img)


@_builtin("pixelate", "quality")
def pixelate(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blocks of [4, 10] pixels: box-averaged down, nearest-neighbour back up."""
    h, w = image.shape[:2]
    f = rng.uniform(4.0, 10.0)
    small = _resize(image, round(w / f), round(h / f), Image.Resampling.BOX)
    return _resize(small, w, h, Image.Resampling.NEAREST)


@_builtin("downscale", "quality")
def downscale(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Down by a factor in [2.5, 6] and back up (bilinear): a low-resolution upload."""
    h, w = image.shape[:2]
    f = rng.uniform(2.5, 6.0)
    small = _resize(image, round(w / f), round(h / f), Image.Resampling.BILINEAR)
    return _resize(small, w, h, Image.Resampling.BILINEAR)


@_builtin("palette_quantize", "quality")
def palette_quantize(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """GIF-like palette of [4, 16] colours (maximum coverage, no dithering)."""
    return _quantized(image, int(rng.integers(4, 17)))


# noise ----------------------------------------------------------------------------------------


@_builtin("gaussian_noise", "noise")
def gaussian_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise, sigma in [8, 30] grey levels, per channel."""
    sigma = rng.uniform(8.0, 30.0)
    return _to_uint8(image + sigma * rng.standard_normal(image.shape, dtype=np.float32))


@_builtin("impulse_noise", "noise")
def impulse_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper: a fraction in [0.02, 0.1] of pixels set to black or white."""
    h, w = image.shape[:2]
    hit = rng.random((h, w)) < rng.uniform(0.02, 0.1)
    salt = rng.random((h, w)) < 0.5
    out = image.copy()
    out[hit & salt] = 255
    out[hit & ~salt] = 0
    return out


@_builtin("speckle_noise", "noise")
def speckle_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative noise x * (1 + n), n ~ N(0, s) with s in [0.15, 0.4]."""
    sigma = rng.uniform(0.15, 0.4)
    return _to_uint8(image * (1 + sigma * rng.standard_normal(image.shape, dtype=np.float32)))


@_builtin("shot_noise", "noise")
def shot_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photon noise, [0.05, 0.25] photons per grey level: variance proportional to the signal.

    Drawn as Gaussian with the Poisson variance; exact Poisson draws are 4x slower and look
    the same at these counts (a mid-grey pixel collects 6-30 photons).
    """
    # A grey level x is x * scale photons, so its noise in grey levels is sqrt(x / scale).
    sigma = np.sqrt(np.arange(256, dtype=np.float32) / np.float32(rng.uniform(0.05, 0.25)))
    noise = np.take(sigma, image) * rng.standard_normal(image.shape, dtype=np.float32)
    return _to_uint8(image + noise)


# blur -----------------------------------------------------------------------------------------


@_builtin("gaussian_blur", "blur")
def gaussian_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, sigma in [0.015, 0.04] of the shorter side (PIL GaussianBlur)."""
    radius = rng.uniform(0.015, 0.04) * _side(image)
    return _arr(_pil(image).filter(ImageFilter.GaussianBlur(radius)))


@_builtin("box_blur", "blur")
def box_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Box (mean) blur, radius in [0.015, 0.04] of the shorter side (PIL BoxBlur)."""
    radius = max(1.0, rng.uniform(0.015, 0.04) * _side(image))
    return _arr(_pil(image).filter(ImageFilter.BoxBlur(radius)))


@_builtin("motion_blur", "blur")
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


@_builtin("defocus_blur", "blur")
def defocus_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Out-of-focus lens: uniform disk kernel, radius in [0.03, 0.07] of the shorter side."""
    r = max(1.0, rng.uniform(0.03, 0.07) * _side(image))
    k = int(np.ceil(r))
    y, x = np.mgrid[-k : k + 1, -k : k + 1]
    return _convolve(image, (x * x + y * y <= r * r).astype(np.float32))


@_builtin("sharpen", "blur")
def sharpen(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unsharp mask, radius in [0.015, 0.04] of the shorter side, amount in [150, 300] %."""
    radius = max(1.0, rng.uniform(0.015, 0.04) * _side(image))
    mask = ImageFilter.UnsharpMask(radius=radius, percent=int(rng.integers(150, 301)), threshold=0)
    return _arr(_pil(image).filter(mask))


# overlay --------------------------------------------------------------------------------------


def _bitmap_font() -> ImageFont.ImageFont:
    """PIL's built-in bitmap font: needs no font file and renders alike on every machine."""
    if hasattr(ImageFont, "load_default_imagefont"):  # Pillow >= 10.1
        return ImageFont.load_default_imagefont()
    return ImageFont.load_default()  # older Pillow: this is the bitmap font


@_builtin("text", "overlay")
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


@_builtin("shape", "overlay")
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


@_builtin("border", "overlay")
def border(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Solid frame painted over the edges, width [0.04, 0.12] of the side, random colour."""
    width = max(1, round(rng.uniform(0.04, 0.12) * _side(image)))
    out = image.copy()
    colour = np.array(_colour(rng), dtype=np.uint8)
    out[:width], out[-width:], out[:, :width], out[:, -width:] = colour, colour, colour, colour
    return out


@_builtin("grid", "overlay")
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


# geometry -------------------------------------------------------------------------------------


@_builtin("rotate_90", "geometry")
def rotate_90(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Quarter turns, k in [1, 3] (90-270 degrees); a non-square image is resized back."""
    h, w = image.shape[:2]
    out = np.rot90(image, k=int(rng.integers(1, 4)))
    if out.shape[:2] != (h, w):
        return _resize(out, w, h, Image.Resampling.BICUBIC)
    return out.copy()


@_builtin("rotate", "geometry")
def rotate(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotation by ±[10, 40] degrees about the centre, border mirrored."""
    t = np.radians(_signed(rng, 10.0, 40.0))  # as the output-to-input map: same distribution
    turn = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return _warp(image, _about_centre(image, turn))


@_builtin("flip_horizontal", "geometry")
def flip_horizontal(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirror left-right (no parameters)."""
    return image[:, ::-1].copy()


@_builtin("flip_vertical", "geometry")
def flip_vertical(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirror top-bottom (no parameters)."""
    return image[::-1].copy()


@_builtin("crop_zoom", "geometry")
def crop_zoom(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A window of [0.45, 0.75] of each side, anywhere, resized back up (bicubic)."""
    h, w = image.shape[:2]
    f = rng.uniform(0.45, 0.75)
    ch, cw = max(1, round(h * f)), max(1, round(w * f))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return _resize(image[top : top + ch, left : left + cw], w, h, Image.Resampling.BICUBIC)


@_builtin("shear", "geometry")
def shear(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Horizontal or vertical shear by ±[15, 35] degrees about the centre, border mirrored."""
    # The output-to-input map is drawn directly: with a random sign, its inverse (the shear
    # applied) has the same distribution.
    s = np.tan(np.radians(_signed(rng, 15.0, 35.0)))
    linear = np.array([[1.0, s], [0.0, 1.0]])
    if rng.random() < 0.5:
        linear = linear.T  # vertical instead of horizontal
    return _warp(image, _about_centre(image, linear))


@_builtin("perspective", "geometry")
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


# style ----------------------------------------------------------------------------------------


@_builtin("emboss", "style")
def emboss(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey relief lit from a direction in [0, 360) degrees, strength in [1, 3] (3x3 kernel)."""
    t, strength = rng.uniform(0.0, 2 * np.pi), rng.uniform(1.0, 3.0)
    dy, dx = np.mgrid[-1:2, -1:2]
    kernel = strength * (dx * np.cos(t) + dy * np.sin(t))
    relief = ImageFilter.Kernel((3, 3), kernel.ravel().tolist(), scale=1, offset=128)
    return np.repeat(_filtered(image, relief, gray=True)[..., None], 3, axis=2)


@_builtin("edges", "style")
def edges(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour edge map, gain in [1.5, 4], light-on-dark or dark-on-light (PIL FIND_EDGES)."""
    gain = _to_uint8(np.arange(256) * rng.uniform(1.5, 4.0))  # as a lookup table: cheap
    lut = 255 - gain if rng.random() < 0.5 else gain
    return np.take(lut, _filtered(image, ImageFilter.FIND_EDGES))


@_builtin("contour", "style")
def contour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Line drawing: PIL CONTOUR filter, dark outlines on white (no parameters)."""
    return _filtered(image, ImageFilter.CONTOUR)


@_builtin("cartoon", "style")
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


@_builtin("oil_paint", "style")
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


@_builtin("pencil_sketch", "style")
def pencil_sketch(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey colour-dodge sketch: luma / (1 - blurred negative), blur sigma [0.02, 0.06] of side."""
    gray = _pil(image).convert("L")
    sigma = rng.uniform(0.02, 0.06) * _side(image)
    blurred = ImageOps.invert(gray).filter(ImageFilter.GaussianBlur(sigma))
    g, b = np.asarray(gray, dtype=np.float32), np.asarray(blurred, dtype=np.float32)
    sketch = _to_uint8(g * 255.0 / np.maximum(255.0 - b, 1.0))
    return np.repeat(sketch[..., None], 3, axis=2)


for _name, _family, _fn in _BUILTINS:
    _summary = " ".join(_fn.__doc__.split("\n\n")[0].split())
    register_transformation(_name, _family, _fn, description=_summary)
del _name, _family, _fn, _summary
