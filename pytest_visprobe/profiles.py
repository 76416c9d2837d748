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


class LocalizationConfig(BaseModel):
    """Dense probes on cached feature maps (PROTOCOLS.md B): linear 1×1 conv heads, AdamW."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(30, gt=0)  # passes over the cached train maps, per head
    batch_size: int = Field(64, gt=0)  # images per AdamW step
    lr: float = Field(1e-2, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    train_mask_size: int = Field(32, gt=0)  # segmentation loss at most this side; scored at full size
    max_detections: int = Field(20, gt=0)  # boxes kept per image (top heat-map peaks)
    roi_size: int = Field(2, gt=0)  # RoIAlign output side for region features (roi_size² · C dims)


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
    localization: LocalizationConfig = LocalizationConfig()


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        description="embedded datasets at small sizes; offline, CPU in minutes",
        datasets={"label": ("shapes", "digits"), "attributes": ("shapes",),
                  "localization": ("shapes",)},
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
