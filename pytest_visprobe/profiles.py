"""Profiles are data: which datasets each probe role uses, their sizes, and probe settings.

``quick`` is the offline default (embedded datasets, CPU in minutes). ``standard`` and
``paper`` are reserved names: they arrive with the real-dataset loaders.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LinearProbeConfig(BaseModel):
    """Multinomial logistic regression on cached features (PROTOCOLS.md A, our default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight_decays: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2)  # swept on a held-out part of train
    val_fraction: float = Field(0.2, gt=0, lt=1)  # share of train held out for the sweep
    max_iter: int = Field(200, gt=0)  # L-BFGS iterations per fit


class GateConfig(BaseModel):
    """Uncertainty, controls and preflight settings for CI gating (uncertainty.py, controls.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resamples: int = Field(1000, gt=0)  # bootstrap resamples per interval
    level: float = Field(0.95, gt=0, lt=1)  # confidence level of the intervals
    preflight_images: int = Field(8, ge=4)  # real images per preflight check (two halves are swapped)


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    #: probe role -> dataset specs; ``--visprobe-dataset`` replaces the ``label`` role's list.
    datasets: dict[str, tuple[str, ...]]
    #: dataset name -> loader options (sizes); specs not listed use the loader's defaults.
    dataset_options: dict[str, dict[str, Any]] = {}
    linear_probe: LinearProbeConfig = LinearProbeConfig()
    batch_size: int = 64
    gate: GateConfig = GateConfig()


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        description="embedded datasets at small sizes; offline, CPU in minutes",
        datasets={"label": ("shapes", "digits"), "attributes": ("shapes",)},
        dataset_options={
            "shapes": {"n_train": 600, "n_test": 300, "image_size": 64},
            "digits": {"image_size": 32},
        },
    ),
}

#: Names taken by later work; selecting one says so instead of "unknown profile".
RESERVED_PROFILES = {
    "standard": "real datasets at their usual sizes (GPU); arrives with the real-dataset loaders",
    "paper": "the studies' protocols as published; arrives with the real-dataset loaders",
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; a clear error for reserved or unknown names."""
    from .errors import ConfigError

    if name in PROFILES:
        return PROFILES[name]
    if name in RESERVED_PROFILES:
        raise ConfigError(
            f"profile {name!r} is reserved but not available yet ({RESERVED_PROFILES[name]}); "
            f"use --visprobe-profile=quick."
        )
    raise ConfigError(f"unknown profile {name!r}; available: {sorted(PROFILES)}.")
