"""RPGD robustness probe: random-start PGD against the frozen encoder's classifier (PROTOCOLS.md A),
L2 and Linf, untargeted and targeted, success over all attacked images as the study counts it.

The classifier is the model's own ImageNet-1k head (``encoder.classify``) when it has one and
the dataset has 1,000 classes, as the study attacked supervised models; otherwise the label
probe's linear head (one fit when the settings agree). The images are the study's seeded first
N of a pool (``attack_pool``): with the model's own classifier, the whole image folder in
ImageFolder order (split ``all``, e.g. all 50,000 of ImageNet-val, as the study) when the
dataset has it; with a linear head, the test split, since the head is fitted on the train split
and must not be attacked on its own training images. The attack runs through the encoder's own
resize and normalisation on pixels in [0, 1] (kernels/rpgd.py, kernels/pgd.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pytest_visprobe.probes.heads import LinearProbeConfig
from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    from pytest_visprobe.runner.context import ProbeContext

PROBE = "rpgd"


class RobustnessConfig(BaseModel):
    """RPGD attacks on the encoder's classifier (PROTOCOLS.md A, Robustness); defaults are ``quick``.

    quick keeps the paper's step budget (steps × rel_stepsize = 2.5, so an iterate can cross
    the ε-ball from any random start) with 10 instead of 100 steps, and fewer images and ε.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_images: int = Field(32, gt=0)  # the first N of the study's seeded permutation of the pool (paper 1000)
    image_seed: int = 42  # the study's np.random.seed(42); not the run's seed: every encoder gets the same images
    steps: int = Field(10, gt=0)  # PGD steps per ε (paper 100)
    rel_stepsize: float = Field(0.25, gt=0)  # step = rel_stepsize · ε (paper 0.025)
    linf_epsilons: tuple[float, ...] = (0.0, 1e-3, 5e-3, 0.01, 0.05)  # increasing, from 0
    l2_epsilons: tuple[float, ...] = (0.0, 0.1, 0.5, 1.0, 4.0)  # [0, 1] pixels at attack_size
    linf_robust_epsilon: float = 0.01  # robust accuracy is reported at this ε (must be listed)
    l2_robust_epsilon: float = 0.5
    #: "dataset": attack the images at the dataset's resolution, the encoder resizing inside;
    #: "encoder": resize them to the encoder's input_size first (the study's L2 ε is per pixel
    #: of the model input); "study": as the study per model family: image files are decoded
    #: with its torchvision transform (Resize(256) bilinear + CenterCrop(224); CLIP (open_clip):
    #: Resize(224, bicubic) + CenterCrop(224); the crop is the encoder's input_size), in-memory
    #: images are centre-cropped to input_size (resized for CLIP).
    #: Either way the encoder's own normalisation is inside the attack.
    attack_size: Literal["dataset", "encoder", "study"] = "dataset"
    #: "auto": the model's own classifier when it has one with as many classes as the dataset
    #: and that is 1,000 (ImageNet-1k), else the linear head; "own" / "linear" force one.
    classifier: Literal["auto", "own", "linear"] = "auto"
    batch_size: int = Field(64, gt=0)  # (image, ε) pairs per PGD batch; bounds peak memory
    head: LinearProbeConfig = LinearProbeConfig()  # the linear head attacked (shared with label_probe when equal)

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


class RPGDDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    norm: str
    targeted: bool
    target_shift: int | None = None  # target = (label + target_shift) mod K
    classifier: str | None = None  # which classifier was attacked
    preparation: str | None = None  # how the images were prepared before the attack
    pool: str | None = None  # which images the seeded permutation runs over (attack_pool)
    clean_accuracy: float
    n_images: int  # the denominator of every success rate
    n_attacked: int  # images PGD ran on: all when targeted, the clean-correct ones untargeted
    steps: int
    rel_stepsize: float
    image_size: list[int]
    epsilons: list[float] | None = None  # the success curve (AUC records)
    success_rate: list[float] | float | None = None  # the curve (over all images), or its value at ``epsilon``
    success_rate_clean_correct: list[float] | None = None  # the curve over the clean-correct images only
    n_success: list[int] | None = None
    robust_accuracy: list[float] | None = None
    epsilon: float | None = None  # robust-accuracy records: the ε it is reported at


def run(ctx: "ProbeContext", norm: Literal["linf", "l2"], targeted: bool) -> list[Metric]:
    from dataclasses import replace

    from pytest_visprobe.kernels.rpgd import rpgd_probe
    from pytest_visprobe.probes.label import shared_label_probe

    config: RobustnessConfig = ctx.settings
    n_classes = len(ctx.dataset.class_names)
    own = uses_own_classifier(ctx.encoder, n_classes, config.classifier)
    head = None if own else shared_label_probe(ctx, config.head)[1]
    split_name, pool = attack_pool(ctx.dataset, own)
    split = ctx.dataset.split(split_name)
    metrics = rpgd_probe(ctx.encoder, head, split, n_classes=n_classes, norm=norm, targeted=targeted,
                         config=config, seed=ctx.seed, device=ctx.device, pool=pool)
    data_key = attacked_data_key(split_name, split, config)
    return [replace(m, details=RPGDDetails(**m.details), split=split_name, data_key=data_key) for m in metrics]


def attack_pool(dataset, own: bool) -> tuple[str, str]:
    """``(split, description)`` the attacked images are drawn from. The study permutes the whole
    ImageNet-val folder in ImageFolder order; that is the split ``all`` of an image folder, used
    when the model's own classifier is attacked (nothing of ours was fitted on any of it). A
    linear head is fitted on the train split, so it is attacked on the test split only."""
    if own and "all" in dataset.splits:
        n = len(dataset.split("all"))
        return "all", f"{dataset.name}, ImageFolder order, all {n:,} images (split 'all')"
    n = len(dataset.split("test"))
    why = ("the dataset has no whole-folder split 'all'" if own else
           "the linear head is fitted on the train split, so it is attacked on held-out images only")
    return "test", f"{dataset.name}, test split, {n:,} images ({why})"


def attacked_data_key(split_name: str, split, config: RobustnessConfig) -> str | None:
    """Fingerprint of which images were attacked and how they were decoded, when that is not the
    test split prepared from the dataset's own images: a baseline on other images is not compared."""
    from pytest_visprobe.datasets.base import FileImages, fingerprint_of

    decoded = config.attack_size == "study" and isinstance(split.images, FileImages)
    if split_name == "test" and not decoded:
        return None
    return fingerprint_of("rpgd-attacked-images", split_name, len(split), "study-decoded" if decoded else "stored")


def uses_own_classifier(encoder, n_classes: int, choice: str = "auto") -> bool:
    """Whether the attack goes through ``encoder.classify`` (see ``RobustnessConfig.classifier``)."""
    from pytest_visprobe.errors import ConfigError

    own = getattr(encoder, "classifier_classes", None)
    if choice == "linear":
        return False
    if choice == "own":
        if own != n_classes:
            raise ConfigError(
                f"probes.rpgd.classifier = 'own', but encoder {getattr(encoder, 'name', '?')!r} "
                + ("has no classifier of its own" if own is None else f"has a {own}-class classifier")
                + f" and the dataset has {n_classes} classes; use classifier = 'auto' or 'linear'.")
        return True
    return own is not None and own == n_classes == 1000


def _metrics() -> tuple[MetricSpec, ...]:
    specs = []
    for norm in ("linf", "l2"):
        for criterion in ("untargeted", "targeted"):
            specs.append(MetricSpec(
                f"{norm}_{criterion}_success_auc", False,
                f"area under the {norm} {criterion} PGD attack success rate vs ε (ε equally spaced by "
                "position), success over all attacked images as the study (a clean mistake is an "
                "untargeted success at every ε; target = (label + round(0.8 K)) mod K, 800 for "
                "ImageNet), through the model's own ImageNet-1k classifier when it has one, else a "
                "linear head (details.classifier); lower is more robust"))
            specs.append(MetricSpec(
                f"{norm}_{criterion}_robust_accuracy", True,
                f"accuracy of the attacked classifier (details.classifier) under the {norm} {criterion} "
                "PGD attack at the profile's robust ε"))
    return tuple(specs)


RPGD = ProbeSpec(
    name=PROBE,
    description="random-start PGD (foolbox) against the frozen encoder's own ImageNet classifier or a linear head, L2 and Linf",
    metrics=_metrics(),
    run=run, settings=RobustnessConfig, details=RPGDDetails,
    role="robustness", targets=("label",),
    plot="pytest_visprobe.report.plots.robustness:plot_attack_success",
)
