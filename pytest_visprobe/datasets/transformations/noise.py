"""Noise transformations: Gaussian, impulse, speckle, shot noise."""

from __future__ import annotations

import numpy as np

from pytest_visprobe.datasets.transformations.common import builtin, _to_uint8


@builtin("gaussian_noise", "noise")
def gaussian_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise, sigma in [8, 30] grey levels, per channel."""
    sigma = rng.uniform(8.0, 30.0)
    return _to_uint8(image + sigma * rng.standard_normal(image.shape, dtype=np.float32))


@builtin("impulse_noise", "noise")
def impulse_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper: a fraction in [0.02, 0.1] of pixels set to black or white."""
    h, w = image.shape[:2]
    hit = rng.random((h, w)) < rng.uniform(0.02, 0.1)
    salt = rng.random((h, w)) < 0.5
    out = image.copy()
    out[hit & salt] = 255
    out[hit & ~salt] = 0
    return out


@builtin("speckle_noise", "noise")
def speckle_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative noise x * (1 + n), n ~ N(0, s) with s in [0.15, 0.4]."""
    sigma = rng.uniform(0.15, 0.4)
    return _to_uint8(image * (1 + sigma * rng.standard_normal(image.shape, dtype=np.float32)))


@builtin("shot_noise", "noise")
def shot_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photon noise, [0.05, 0.25] photons per grey level: variance proportional to the signal.

    Drawn as Gaussian with the Poisson variance; exact Poisson draws are 4x slower and look
    the same at these counts (a mid-grey pixel collects 6-30 photons).
    """
    # A grey level x is x * scale photons, so its noise in grey levels is sqrt(x / scale).
    sigma = np.sqrt(np.arange(256, dtype=np.float32) / np.float32(rng.uniform(0.05, 0.25)))
    noise = np.take(sigma, image) * rng.standard_normal(image.shape, dtype=np.float32)
    return _to_uint8(image + noise)
