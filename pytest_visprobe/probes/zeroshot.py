"""Zero-shot probe: can an image-text encoder name the class from text alone, with no training?

CLIP's recipe (as in CLIP_benchmark): each class is the re-normalised mean of its prompts'
normalised text embeddings (templates from probes/prompts.py), each test image goes to the
class of highest cosine with its embedding. ``embed`` of an encoder with a text tower is its
joint-space image embedding (open_clip: ``encode_image`` before normalisation), so the cached
test features are used as they are. Encoders without a text tower skip.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    import numpy as np

    from pytest_visprobe.encoders.base import Encoder
    from pytest_visprobe.runner.context import ProbeContext

TEMPLATE_SETS = ("dataset", "imagenet", "simple")


class ZeroshotConfig(BaseModel):
    """Prompt-ensemble zero-shot classification (CLIP)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: "dataset" (CLIP_benchmark's for the dataset, else ImageNet's 80), "imagenet", "simple"
    #: ("a photo of a {c}."), or a list of templates each holding "{c}"
    templates: Union[str, tuple[str, ...]] = "dataset"
    text_batch_size: int = Field(256, gt=0)  # prompts per text-tower forward pass

    @field_validator("templates")
    @classmethod
    def _known_templates(cls, value):
        if isinstance(value, str):
            if value not in TEMPLATE_SETS:
                raise ValueError(f"templates must be one of {TEMPLATE_SETS} or a list of templates, got {value!r}")
        elif not value or any("{c}" not in t for t in value):
            raise ValueError("a list of templates must be non-empty and each must contain '{c}' (the class name)")
        return value


class ZeroshotDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    templates: str  # which set
    n_templates: int
    n_classes: int
    n_test: int


def encode_texts(ctx: "ProbeContext", texts: list[str], batch_size: int) -> "np.ndarray":
    """The encoder's text embeddings of ``texts`` in batches; skips when it has no text tower."""
    import numpy as np
    import torch

    from pytest_visprobe.errors import TextTowerUnavailable

    encoder: "Encoder" = ctx.encoder
    require_text_tower(ctx)
    out = []
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                out.append(encoder.encode_text(texts[start:start + batch_size]).float().cpu().numpy())
    except TextTowerUnavailable as exc:
        ctx.skip(f"encoder {encoder.name!r}: {exc}")
    return np.concatenate(out).astype(np.float64)


def require_text_tower(ctx: "ProbeContext") -> None:
    if not ctx.encoder.has_text_tower:
        ctx.skip(f"encoder {ctx.encoder.name!r} has no text tower; zero-shot and retrieval need an image-text "
                 f"encoder (--encoder=open_clip:ARCH/WEIGHTS, --encoder=hf:DIR of a CLIP or SigLIP, or an Encoder "
                 f"implementing encode_text(texts) in the space of embed()).")


def run(ctx: "ProbeContext") -> list[Metric]:
    import numpy as np

    from pytest_visprobe.kernels.chance import top_share
    from pytest_visprobe.kernels.zeroshot import class_text_embeddings, target_ranks, zeroshot_logits
    from pytest_visprobe.probes.prompts import prompt_name, templates_for

    config: ZeroshotConfig = ctx.settings
    require_text_tower(ctx)
    names = [prompt_name(c) for c in ctx.dataset.class_names]
    templates, which = templates_for(ctx.dataset.name, config.templates)
    classes = class_text_embeddings(lambda texts: encode_texts(ctx, texts, config.text_batch_size), names, templates)
    labels = np.asarray(ctx.dataset.split("test").labels, dtype=np.int64)
    ranks = target_ranks(zeroshot_logits(ctx.features("test").numpy(), classes), labels)
    details = ZeroshotDetails(templates=which, n_templates=len(templates), n_classes=len(names), n_test=len(labels))
    metrics = []
    for k in (1, 5):
        if k == 1 or len(names) > k:
            correct = (ranks < k).astype(np.uint8)
            metrics.append(Metric("zeroshot", f"top{k}", float(correct.mean()), details=details, per_sample=correct,
                                  chance=top_share(labels, k, len(names))))
    return metrics


ZEROSHOT = ProbeSpec(
    name="zeroshot",
    description="zero-shot classification from the encoder's own text tower (CLIP prompt ensembles); "
                "encoders without one skip",
    metrics=(
        MetricSpec("top1", True, "zero-shot top-1: each image to the class whose prompt-ensemble text embedding "
                   "is nearest (cosine)", chance="majority share of the test labels"),
        MetricSpec("top5", True, "zero-shot top-5 (only with more than 5 classes)",
                   chance="share of the test labels in the 5 most frequent classes"),
    ),
    run=run,
    settings=ZeroshotConfig,
    details=ZeroshotDetails,
    role="label",
    targets=("label",),
)
