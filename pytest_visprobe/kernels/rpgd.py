"""Attack a frozen encoder followed by a linear head, on a seeded subset of a split.

The PGD loop itself is :mod:`pytest_visprobe.kernels.pgd`; this module chooses the images (a
seeded subset of the test split, the same for every norm and criterion), builds the attacked
classifier (pixels in [0, 1] → the encoder's own resize/normalisation and ``embed`` → the
head fitted on cached features) and turns the attack result into metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pytest_visprobe.datasets.base import rng_for
from pytest_visprobe.features import to_float_images
from pytest_visprobe.kernels.linear import LinearHead
from pytest_visprobe.kernels.pgd import AttackResult, attack_success, success_auc
from pytest_visprobe.probes.spec import Metric

if TYPE_CHECKING:
    from pytest_visprobe.datasets.base import Split
    from pytest_visprobe.encoders.base import Encoder
    from pytest_visprobe.probes.rpgd import RobustnessConfig

PROBE = "rpgd"


class EncoderClassifier(nn.Module):
    """Logits of the linear head on ``encoder.embed(images)``; images are pixels in [0, 1]."""

    def __init__(self, encoder: "Encoder", head: LinearHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head.as_module()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.embed(images))


def attack_images(
    split: "Split", *, n_images: int, seed: int, size: tuple[int, int] | None = None,
    interpolation: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The attacked subset: float images in [0, 1] ``[M, 3, H, W]``, labels, test-split indices.

    ``M = min(n_images, len(split))`` rows of a seeded permutation of the split. ``size``
    resizes them first (antialiased ``interpolation``, bilinear or bicubic, as a data loader
    would; not part of the attack), clipped back into [0, 1].
    """
    if split.labels is None:
        raise ValueError("the attacked split has no labels; the RPGD probe needs a label target")
    order = rng_for(seed, "rpgd", "images").permutation(len(split))[: int(n_images)]
    images = to_float_images(split.images.get(order), torch.device("cpu"))
    if size is not None and tuple(images.shape[-2:]) != tuple(size):
        mode = interpolation if interpolation in ("bilinear", "bicubic") else "bilinear"
        images = F.interpolate(images, size=tuple(size), mode=mode, antialias=True,
                               align_corners=False).clamp_(0.0, 1.0)
    labels = torch.as_tensor(np.asarray(split.labels)[order], dtype=torch.long)
    return images, labels, order


def rpgd_probe(
    encoder: "Encoder", head: LinearHead, split: "Split", *, n_classes: int, norm: str,
    targeted: bool, config: "RobustnessConfig", seed: int, device: torch.device | str = "cpu",
) -> list[Metric]:
    """Attack ``encoder`` + ``head`` on a seeded subset of ``split``; success AUC and robust accuracy."""
    size = encoder.input_size if config.attack_size == "encoder" else None
    images, labels, _ = attack_images(split, n_images=config.n_images, seed=seed, size=size,
                                      interpolation=getattr(encoder, "interpolation", "bilinear"))
    model = EncoderClassifier(encoder, head).to(device)
    result = attack_success(
        model, images, labels, norm=norm, epsilons=config.epsilons(norm), steps=config.steps,
        rel_stepsize=config.rel_stepsize, targeted=targeted, n_classes=n_classes, seed=seed,
        batch_size=config.batch_size,
    )
    return rpgd_metrics(result, robust_epsilon=config.robust_epsilon(norm),
                        image_size=list(images.shape[-2:]))


def metric_names(norm: str, targeted: bool) -> tuple[str, str]:
    """``(success AUC, robust accuracy)`` metric names of one norm and criterion (probes/spec.py)."""
    stem = f"{norm}_{'targeted' if targeted else 'untargeted'}"
    return f"{stem}_success_auc", f"{stem}_robust_accuracy"


def rpgd_metrics(result: AttackResult, *, robust_epsilon: float, image_size: list[int]) -> list[Metric]:
    """The success-curve AUC (its curve in details, for the plot) and robust accuracy at one ε."""
    auc_name, robust_name = metric_names(result.norm, result.targeted)
    common = {
        "norm": result.norm, "targeted": result.targeted, "target_shift": result.target_shift,
        "clean_accuracy": result.clean_accuracy, "n_images": result.n_images,
        "n_attacked": result.n_correct,  # only images the clean classifier gets right are attacked
        "steps": result.steps, "rel_stepsize": result.rel_stepsize, "image_size": image_size,
    }
    curve = {
        "epsilons": list(result.epsilons), "success_rate": list(result.success_rate),
        "n_success": list(result.n_success), "robust_accuracy": list(result.robust_accuracy),
    }
    k = result.epsilons.index(float(robust_epsilon))
    # per_sample: the AUC is linear in the success rates, so it is the mean over attacked images
    # of each image's own AUC (its 0/1 success per ε); robust accuracy is a mean over all images
    auc_per_image = np.array([success_auc(row) for row in result.success_by_image], dtype=np.float64)
    robust_per_image = np.array([row[k] for row in result.robust_by_image], dtype=np.float64)
    return [
        Metric(PROBE, auc_name, result.auc, details=common | curve, per_sample=auc_per_image),
        Metric(PROBE, robust_name, result.robust_accuracy[k], per_sample=robust_per_image,
               details=common | {"epsilon": float(robust_epsilon), "success_rate": result.success_rate[k]}),
    ]
