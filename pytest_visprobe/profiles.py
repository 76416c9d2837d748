"""Profiles are data: which datasets each probe role uses, their sizes, and probe settings.

``quick`` is the offline default (embedded datasets, CPU in minutes). ``standard`` and
``paper`` are reserved names: they arrive with the real-dataset loaders.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from typing import Literal  # noqa: I001  (robustness config)
from pydantic import model_validator  # noqa: I001  (robustness config)


class LinearProbeConfig(BaseModel):
    """Multinomial logistic regression on cached features (PROTOCOLS.md A, our default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight_decays: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2)  # swept on a held-out part of train
    val_fraction: float = Field(0.2, gt=0, lt=1)  # share of train held out for the sweep
    max_iter: int = Field(200, gt=0)  # L-BFGS iterations per fit


class RobustnessConfig(BaseModel):
    """RPGD attacks on encoder + linear head (PROTOCOLS.md A, Robustness); defaults are ``quick``.

    quick keeps the paper's step budget (steps × rel_stepsize = 2.5, so an iterate can cross
    the ε-ball from any random start) with 10 instead of 100 steps, and fewer images and ε.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_images: int = Field(32, gt=0)  # seeded subset of the test split that is attacked (paper 1000)
    steps: int = Field(10, gt=0)  # PGD steps per ε (paper 100)
    rel_stepsize: float = Field(0.25, gt=0)  # step = rel_stepsize · ε (paper 0.025)
    linf_epsilons: tuple[float, ...] = (0.0, 1e-3, 5e-3, 0.01, 0.05)  # increasing, from 0
    l2_epsilons: tuple[float, ...] = (0.0, 0.1, 0.5, 1.0, 4.0)  # [0, 1] pixels at attack_size
    linf_robust_epsilon: float = 0.01  # robust accuracy is reported at this ε (must be listed)
    l2_robust_epsilon: float = 0.5
    #: "dataset": attack the images at the dataset's resolution, the encoder resizing inside;
    #: "encoder": resize them to the encoder's input_size first (the study's L2 ε is per pixel
    #: of the model input). Either way the encoder's own normalisation is inside the attack.
    attack_size: Literal["dataset", "encoder"] = "dataset"
    batch_size: int = Field(64, gt=0)  # (image, ε) pairs per PGD batch; bounds peak memory

    @model_validator(mode="after")
    def _robust_epsilons_listed(self) -> "RobustnessConfig":
        for norm in ("linf", "l2"):
            eps = getattr(self, f"{norm}_epsilons")
            if not eps or any(e < 0 for e in eps) or any(b <= a for a, b in zip(eps, eps[1:])):
                raise ValueError(f"{norm}_epsilons must be non-empty, >= 0 and strictly increasing, got {eps}")
            if getattr(self, f"{norm}_robust_epsilon") not in eps:
                raise ValueError(f"{norm}_robust_epsilon must be one of {norm}_epsilons {eps}")
        return self

    def epsilons(self, norm: str) -> tuple[float, ...]:
        return getattr(self, f"{norm}_epsilons")

    def robust_epsilon(self, norm: str) -> float:
        return getattr(self, f"{norm}_robust_epsilon")


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
    robustness: RobustnessConfig = RobustnessConfig()


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
