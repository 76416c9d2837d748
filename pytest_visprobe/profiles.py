"""Profiles are data: which datasets each probe role uses, their sizes, and probe settings.

``quick`` is the offline default (embedded datasets, CPU in minutes). ``standard`` runs the
real datasets at their usual sizes (GPU); ``paper`` follows PROTOCOLS.md. Real datasets come
from the data root (``--visprobe-data-root``); one that is absent skips its tests unless
``--visprobe-download`` fetches it. Roles: label, attributes, fewshot, clustering,
similarity, transformations, robustness, localization.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


#: Probe roles a profile assigns datasets to (``Profile.datasets``); suites name theirs with
#: ``@pytest.mark.visprobe_datasets(ROLE)``.
ROLES = ("label", "attributes", "fewshot", "clustering", "similarity", "transformations",
         "robustness", "localization")


class LinearProbeConfig(BaseModel):
    """Multinomial logistic regression on cached features (PROTOCOLS.md A, our default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight_decays: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2)  # swept on a held-out part of train
    val_fraction: float = Field(0.2, gt=0, lt=1)  # share of train held out for the sweep
    max_iter: int = Field(200, gt=0)  # L-BFGS iterations per fit
    # The study's transfer recipe (PROTOCOLS.md A), used by the label probe when recipe="adam":
    # Linear(D, classes) on the raw features, cross-entropy, Adam, last-epoch test accuracy.
    recipe: Literal["lbfgs", "adam"] = "lbfgs"  # "lbfgs": the sweep above; "adam": the study's loop
    adam_lr: float = Field(1e-3, gt=0)
    adam_weight_decay: float = Field(5e-4, ge=0)  # torch.optim.Adam's L2 term (weights and bias)
    adam_epochs: int = Field(20, gt=0)
    adam_batch_size: int = Field(60, gt=0)


class FewShotConfig(BaseModel):
    """Nearest-prototype few-shot (PROTOCOLS.md A); N = 1, 5, 10 is the suite's parametrization."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trials: int = Field(10, gt=0)  # support sets drawn per N, each seeded from (session seed, trial)
    ddof: Literal[0, 1] = 1  # std over trials: 1 = sample std; the study's code used 0 (np.std)


class ClusteringConfig(BaseModel):
    """Spectral clustering of the test split with |cos| affinity (PROTOCOLS.md A)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    affinity: Literal["auto", "dense", "knn"] = "auto"  # auto: dense up to 32,768 samples, then k-NN
    n_neighbors: int | None = Field(None, gt=0)  # k-NN graph only; None: half the mean class size, in [10, 100]


class SimilarityConfig(BaseModel):
    """Welch-t RDMs over classes compared by Pearson r (PROTOCOLS.md A)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: str = "test"  # the split whose features give the class means and spreads
    prompt: str = "a photo of {label}."  # text embedded per class for the language comparison

    @field_validator("prompt")
    @classmethod
    def _prompt_names_the_label(cls, value: str) -> str:
        if "{label}" not in value:
            raise ValueError(f"prompt must contain '{{label}}' (replaced by each class name), got {value!r}")
        return value


class MLPProbeConfig(BaseModel):
    """A one-hidden-layer MLP probe on cached features (Adam, seeded). The L2 penalty is
    ``weight_decay / 2 · ‖W‖²`` on the weights (not biases), scikit-learn's
    ``MLPClassifier(alpha=weight_decay · batch_size)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: int = Field(256, gt=0)  # hidden units (ReLU)
    epochs: int = Field(60, gt=0)  # passes over the training features
    batch_size: int = Field(128, gt=0)
    lr: float = Field(1e-3, gt=0)  # Adam learning rate
    weight_decay: float = Field(1e-4, ge=0)


class TransformationProbeConfig(BaseModel):
    """Transformation detection (PROTOCOLS.md C): how many transformed views to embed.

    Each source image of a split gets ``per_image`` different transformations (a seeded,
    balanced assignment), and just enough source images are used for every transformation to
    appear about ``train_per_transformation`` (``test_...``) times in that split; a smaller
    dataset gives fewer views.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_image: int = Field(3, gt=0)  # transformations applied to each source image
    train_per_transformation: int = Field(24, gt=0)  # views of each transformation in train
    test_per_transformation: int = Field(12, gt=0)  # ... and in test
    mlp: MLPProbeConfig = MLPProbeConfig()


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
    #: probe role (ROLES) -> dataset specs; ``--visprobe-dataset`` replaces them (session.datasets_for).
    datasets: dict[str, tuple[str, ...]]
    #: dataset name -> loader options (sizes); specs not listed use the loader's defaults.
    dataset_options: dict[str, dict[str, Any]] = {}
    linear_probe: LinearProbeConfig = LinearProbeConfig()
    batch_size: int = 64
    fewshot: FewShotConfig = FewShotConfig()
    clustering: ClusteringConfig = ClusteringConfig()
    similarity: SimilarityConfig = SimilarityConfig()
    transformations: TransformationProbeConfig = TransformationProbeConfig()
    localization: LocalizationConfig = LocalizationConfig()
    robustness: RobustnessConfig = RobustnessConfig()
    gate: GateConfig = GateConfig()


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        description="embedded datasets at small sizes; offline, CPU in minutes",
        datasets={"label": ("shapes", "digits"), "attributes": ("shapes",),
                  "fewshot": ("digits", "shapes"), "clustering": ("digits", "shapes"),
                  "similarity": ("digits", "shapes"), "transformations": ("photos", "shapes"),
                  "robustness": ("digits",), "localization": ("shapes",)},
        dataset_options={
            "shapes": {"n_train": 600, "n_test": 300, "image_size": 64},
            "digits": {"image_size": 32},
        },
    ),
}

#: The generalization study's six datasets (PROTOCOLS.md A), official splits.
_STUDY_DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist", "svhn", "cub")

PROFILES["standard"] = Profile(
    name="standard",
    description="real datasets at their usual sizes from the data root; GPU; absent ones skip",
    datasets={
        "label": (*_STUDY_DATASETS, "stl10"),
        "attributes": ("cub", "vaw"),
        "fewshot": (*_STUDY_DATASETS, "stl10"),
        "clustering": (*_STUDY_DATASETS, "stl10"),
        "similarity": ("cifar10", "cifar100", "stl10", "cub"),
        "transformations": ("stl10", "cub"),
        "robustness": ("cifar10",),  # the robustness probe attacks 1,000 seeded test images
        "localization": ("coco",),
    },
    dataset_options={
        "cub": {"image_size": 224},
        "vaw": {"image_size": 224},
        "imagenet_val": {"image_size": 224},
    },
    batch_size=256,
    robustness=RobustnessConfig(
        n_images=1000, steps=40, rel_stepsize=2.5 / 40, attack_size="encoder", batch_size=256,
        linf_epsilons=(0.0, 1e-4, 2e-4, 5e-4, 8e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0),
        l2_epsilons=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)),
    transformations=TransformationProbeConfig(  # our sizes: PROTOCOLS.md C gives none
        per_image=2, train_per_transformation=200, test_per_transformation=50,
        mlp=MLPProbeConfig(hidden=512, epochs=100, batch_size=256)),
    localization=LocalizationConfig(train_mask_size=64, max_detections=100),
)

PROFILES["paper"] = Profile(
    name="paper",
    description="the studies' protocols as published (PROTOCOLS.md): their datasets, sizes, "
                "256-pixel bicubic resize and centre crop for image files",
    datasets={
        "label": _STUDY_DATASETS,
        "attributes": ("vaw",),
        "fewshot": _STUDY_DATASETS,
        "clustering": _STUDY_DATASETS,
        "similarity": _STUDY_DATASETS,
        "transformations": ("imagenet_val",),
        "robustness": ("imagenet_val",),  # 1,000 seeded images (the robustness config)
        "localization": ("coco",),
    },
    dataset_options={
        "cub": {"image_size": 256},
        "imagenet_val": {"image_size": 256},
        "vaw": {"image_size": 224},
    },
    batch_size=128,
    linear_probe=LinearProbeConfig(recipe="adam"),  # the study's transfer recipe, last-epoch accuracy
    fewshot=FewShotConfig(trials=10, ddof=0),  # the study's np.std over 10 trials
    clustering=ClusteringConfig(affinity="dense"),  # the full |cos| matrix, as published
    robustness=RobustnessConfig(  # PROTOCOLS.md A: 100 steps, step 0.025·ε, 1,000 seeded images
        n_images=1000, steps=100, rel_stepsize=0.025, attack_size="encoder", batch_size=256,
        linf_epsilons=(0.0, 1e-4, 2e-4, 5e-4, 8e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0),
        l2_epsilons=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)),
    transformations=TransformationProbeConfig(  # our sizes: PROTOCOLS.md C gives none
        per_image=1, train_per_transformation=1000, test_per_transformation=200,
        mlp=MLPProbeConfig(hidden=1024, epochs=100, batch_size=256)),
    localization=LocalizationConfig(train_mask_size=128, max_detections=100, roi_size=7),
)

#: Names taken by later work; selecting one says so instead of "unknown profile".
RESERVED_PROFILES: dict[str, str] = {}


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
