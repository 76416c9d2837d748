"""Attack a frozen encoder through a classifier, on the study's seeded subset of a pool of images.

The PGD loop itself is :mod:`pytest_visprobe.kernels.pgd`; this module chooses the images (the
first N of ``np.random.RandomState(42).permutation(len(pool))``, as the study's
``np.random.seed(42)``, the same for every encoder, norm and criterion; the probe picks the pool,
probes/rpgd.py), prepares them as the study did per model family (for image files, decoded
with the study's torchvision transform), builds the attacked classifier (pixels in [0, 1] → the
encoder's own resize/normalisation → its own classifier, or ``embed`` → a linear head fitted on
cached features) and turns the attack result into metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pytest_visprobe.datasets.base import FileImages
from pytest_visprobe.features import to_float_images
from pytest_visprobe.kernels.linear import LinearHead
from pytest_visprobe.kernels.pgd import AttackResult, attack_success, success_auc
from pytest_visprobe.probes.spec import Metric

if TYPE_CHECKING:
    from pytest_visprobe.datasets.base import Split
    from pytest_visprobe.encoders.base import Encoder
    from pytest_visprobe.probes.rpgd import RobustnessConfig

PROBE = "rpgd"
#: the study's ``np.random.seed(42)`` before ``np.random.permutation(50000)``
STUDY_IMAGE_SEED = 42
#: the study's evaluation transform: Resize(256) + CenterCrop(224) (CLIP: Resize(224) + CenterCrop(224))
STUDY_RESIZE, STUDY_CROP = 256, 224
OWN_CLASSIFIER = "the model's own classifier (encoder.classify)"
LINEAR_CLASSIFIER = "a linear head fitted on the frozen embedding (the label probe's)"


class EncoderClassifier(nn.Module):
    """Logits of the linear head on ``encoder.embed(images)``; images are pixels in [0, 1]."""

    def __init__(self, encoder: "Encoder", head: LinearHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head.as_module()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.embed(images))


class OwnClassifier(nn.Module):
    """The encoder's own logits, ``encoder.classify(images)``; images are pixels in [0, 1]."""

    def __init__(self, encoder: "Encoder") -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.classify(images)


def study_order(n: int, n_images: int, seed: int = STUDY_IMAGE_SEED) -> np.ndarray:
    """The first ``n_images`` of ``np.random.seed(seed); np.random.permutation(n)`` (the global
    RNG is left untouched: ``RandomState(seed)`` draws the same permutation)."""
    return np.random.RandomState(seed).permutation(int(n))[: int(n_images)]


def is_clip(encoder: "Encoder") -> bool:
    """CLIP-family (open_clip) encoders, which the study prepared with CLIP's own transform."""
    from pytest_visprobe.encoders.kinds import encoder_kind

    return encoder_kind(encoder) == "open_clip"


def study_transform(clip: bool, crop: int | tuple[int, int] = STUDY_CROP, resize: int = STUDY_RESIZE):
    """The study's evaluation transform of a decoded PIL image, torchvision.transforms.v2 as its
    pipeline: ``Resize(resize)`` (torchvision's default, bilinear with antialias) +
    ``CenterCrop(crop)``, or for CLIP ``Resize(crop, bicubic)`` + ``CenterCrop(crop)``; a PIL
    image out (``attack_images`` makes it a tensor in [0, 1], as ``ToTensor``)."""
    from torchvision.transforms import v2

    side = crop if isinstance(crop, int) else max(crop)
    first = (v2.Resize(side, interpolation=v2.InterpolationMode.BICUBIC) if clip
             else v2.Resize(resize))
    return v2.Compose([first, v2.CenterCrop(crop)])


def attack_images(
    split: "Split", *, n_images: int, seed: int = STUDY_IMAGE_SEED, size: tuple[int, int] | None = None,
    interpolation: str = "bilinear", crop: bool = False, transform=None,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The attacked subset: float images in [0, 1] ``[M, 3, H, W]``, labels, split indices.

    ``M = min(n_images, len(split))`` rows of :func:`study_order`. ``transform`` (e.g.
    :func:`study_transform`; image files only) decodes each file in full and prepares it as the
    study did. Otherwise the split's images are taken as stored and ``size`` prepares them
    (not part of the attack): ``crop`` centre-crops to ``size`` (an image smaller than ``size``
    is resized instead), else they are resized (antialiased ``interpolation``, bilinear or
    bicubic, as a data loader would), clipped back into [0, 1].
    """
    if split.labels is None:
        raise ValueError("the attacked split has no labels; the RPGD probe needs a label target")
    order = study_order(len(split), n_images, seed)
    labels = torch.as_tensor(np.asarray(split.labels)[order], dtype=torch.long)
    if transform is not None:
        if not isinstance(split.images, FileImages):
            raise TypeError("a decoding transform needs image files (FileImages); in-memory images use size/crop")
        prepared = split.images.decode_with(order, lambda image: np.asarray(transform(image), dtype=np.uint8))
        return to_float_images(np.stack(prepared), torch.device("cpu")), labels, order
    images = to_float_images(split.images.get(order), torch.device("cpu"))
    if size is not None and tuple(images.shape[-2:]) != tuple(size):
        h, w = (int(v) for v in size)
        if crop and images.shape[-2] >= h and images.shape[-1] >= w:
            top = int(round((images.shape[-2] - h) / 2.0))
            left = int(round((images.shape[-1] - w) / 2.0))
            images = images[..., top:top + h, left:left + w].contiguous()
        else:
            mode = interpolation if interpolation in ("bilinear", "bicubic") else "bilinear"
            images = F.interpolate(images, size=(h, w), mode=mode, antialias=True,
                                   align_corners=False).clamp_(0.0, 1.0)
    return images, labels, order


def preparation(encoder: "Encoder", attack_size: str) -> tuple[tuple[int, int] | None, bool, str]:
    """``(size, crop, description)`` of in-memory images before the attack, per the profile's
    ``attack_size`` and the model family: ``"study"`` centre-crops to the encoder's input size
    (the study's ``CenterCrop(224)`` after its resize) except for CLIP (open_clip) encoders,
    which it resizes (``Resize(224, bicubic)`` + ``CenterCrop(224)`` of a square image). Image
    files under ``"study"`` are decoded with :func:`study_decoding` instead."""
    size = getattr(encoder, "input_size", None)
    if attack_size == "dataset" or size is None:
        return None, False, "dataset images as stored; the encoder resizes inside the attack"
    if attack_size == "study" and not is_clip(encoder):
        return size, True, f"centre crop to {size[0]}×{size[1]} before the attack (Resize + CenterCrop)"
    return size, False, f"resized to {size[0]}×{size[1]} before the attack"


def study_decoding(encoder: "Encoder") -> tuple[object, str]:
    """``(transform, description)``: :func:`study_transform` for the encoder's family, cropping
    to its input size (224 for the study's models; 224 when it declares none) after a resize
    of the shorter side to 256/224 of that (CLIP: to the crop size)."""
    size = getattr(encoder, "input_size", None) or (STUDY_CROP, STUDY_CROP)
    h, w = (int(v) for v in size)
    crop: int | tuple[int, int] = h if h == w else (h, w)
    clip = is_clip(encoder)
    resize = max(h, w) if clip else int(round(max(h, w) * STUDY_RESIZE / STUDY_CROP))
    kind = "bicubic" if clip else "bilinear, antialias"
    return (study_transform(clip, crop, resize),
            f"each file decoded and prepared as the study: Resize({resize}, {kind}) + CenterCrop({h}×{w}), "
            "ToTensor")


def rpgd_probe(
    encoder: "Encoder", head: LinearHead | None, split: "Split", *, n_classes: int, norm: str,
    targeted: bool, config: "RobustnessConfig", seed: int, device: torch.device | str = "cpu",
    pool: str | None = None,
) -> list[Metric]:
    """Attack ``encoder`` + ``head`` (``head=None``: ``encoder.classify``) on the study's subset of
    ``split`` (``pool`` says which images it holds, for the details); success AUC and robust
    accuracy."""
    if config.attack_size == "study" and isinstance(split.images, FileImages):
        transform, prepared = study_decoding(encoder)
        size, crop = None, False
    else:
        transform = None
        size, crop, prepared = preparation(encoder, config.attack_size)
    images, labels, _ = attack_images(split, n_images=config.n_images, seed=config.image_seed, size=size,
                                      interpolation=getattr(encoder, "interpolation", "bilinear"), crop=crop,
                                      transform=transform)
    model = (OwnClassifier(encoder) if head is None else EncoderClassifier(encoder, head)).to(device)
    result = attack_success(
        model, images, labels, norm=norm, epsilons=config.epsilons(norm), steps=config.steps,
        rel_stepsize=config.rel_stepsize, targeted=targeted, n_classes=n_classes, seed=seed,
        batch_size=config.batch_size,
    )
    return rpgd_metrics(result, robust_epsilon=config.robust_epsilon(norm), image_size=list(images.shape[-2:]),
                        classifier=OWN_CLASSIFIER if head is None else LINEAR_CLASSIFIER, preparation=prepared,
                        pool=pool)


def metric_names(norm: str, targeted: bool) -> tuple[str, str]:
    """``(success AUC, robust accuracy)`` metric names of one norm and criterion (probes/spec.py)."""
    stem = f"{norm}_{'targeted' if targeted else 'untargeted'}"
    return f"{stem}_success_auc", f"{stem}_robust_accuracy"


def rpgd_metrics(result: AttackResult, *, robust_epsilon: float, image_size: list[int],
                 classifier: str = LINEAR_CLASSIFIER, preparation: str = "", pool: str | None = None) -> list[Metric]:
    """The success-curve AUC (its curve in details, for the plot) and robust accuracy at one ε."""
    auc_name, robust_name = metric_names(result.norm, result.targeted)
    common = {
        "norm": result.norm, "targeted": result.targeted, "target_shift": result.target_shift,
        "classifier": classifier, "preparation": preparation, "pool": pool,
        "clean_accuracy": result.clean_accuracy, "n_images": result.n_images,
        "n_attacked": len(result.attacked),  # PGD runs: all images targeted, the clean-correct untargeted
        "steps": result.steps, "rel_stepsize": result.rel_stepsize, "image_size": image_size,
    }
    curve = {
        "epsilons": list(result.epsilons), "success_rate": list(result.success_rate),
        "n_success": list(result.n_success), "robust_accuracy": list(result.robust_accuracy),
        "success_rate_clean_correct": (None if result.success_rate_clean_correct is None
                                       else list(result.success_rate_clean_correct)),
    }
    k = result.epsilons.index(float(robust_epsilon))
    # per_sample: the AUC is linear in the success rates, so it is the mean over all images of
    # each image's own AUC (its 0/1 success per ε); robust accuracy is a mean over all images
    auc_per_image = np.array([success_auc(row) for row in result.success_by_image], dtype=np.float64)
    robust_per_image = np.array([row[k] for row in result.robust_by_image], dtype=np.float64)
    return [
        Metric(PROBE, auc_name, result.auc, details=common | curve, per_sample=auc_per_image),
        Metric(PROBE, robust_name, result.robust_accuracy[k], per_sample=robust_per_image,
               details=common | {"epsilon": float(robust_epsilon), "success_rate": result.success_rate[k]}),
    ]
