"""Retrieval probe: do an image-text encoder's image and caption embeddings find each other?

On the test split of a captioned dataset (COCO captions, or the shapes scenes' generated
captions), every image and every caption is embedded and compared by cosine, as in
CLIP_benchmark: image → text recall@k counts an image when any of its captions is among its k
nearest captions; text → image recall@k counts a caption when its image is among its k nearest
images. Images without a caption are left out. Intervals bootstrap over images (a caption is
resampled with its image). Encoders without a text tower skip.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    from pytest_visprobe.runner.context import ProbeContext

RECALL_AT = (1, 5, 10)


class RetrievalConfig(BaseModel):
    """Image-text retrieval recall@k (CLIP_benchmark)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text_batch_size: int = Field(256, gt=0)  # captions per text-tower forward pass


class RetrievalDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_images: int
    n_captions: int
    k: int


def run(ctx: "ProbeContext") -> list[Metric]:
    import numpy as np

    from pytest_visprobe.kernels.zeroshot import image_to_text_chance, retrieval_hits
    from pytest_visprobe.probes.zeroshot import encode_texts, require_text_tower

    config: RetrievalConfig = ctx.settings
    require_text_tower(ctx)
    captions = ctx.dataset.split("test").captions
    kept = np.array([i for i, c in enumerate(captions) if c], dtype=np.int64)
    if kept.size < 2:
        ctx.skip(f"dataset {ctx.dataset.name!r} has {kept.size} captioned test image(s); retrieval needs at least 2.")
    texts = [c for i in kept for c in captions[i]]
    per_image = np.array([len(captions[i]) for i in kept], dtype=np.int64)
    text_image = np.repeat(np.arange(kept.size), per_image)
    images = ctx.features("test").numpy()[kept]
    i2t, t2i = retrieval_hits(images, encode_texts(ctx, texts, config.text_batch_size), text_image, RECALL_AT)
    metrics = []
    whole = kept.size == len(captions)  # every test image captioned: per-image outcomes kept as the label probe's
    for k in RECALL_AT:
        details = RetrievalDetails(n_images=int(kept.size), n_captions=len(texts), k=k)
        hits = i2t[k].astype(np.uint8)
        metrics.append(Metric("retrieval", f"image_to_text_r{k}", float(hits.mean()), details=details,
                              per_sample=hits if whole else None,
                              interval=None if whole else _interval(ctx, f"image_to_text_r{k}", hits),
                              chance=image_to_text_chance(per_image, len(texts), k)))
        found = np.bincount(text_image, weights=t2i[k], minlength=kept.size)  # captions found, per image
        metrics.append(Metric("retrieval", f"text_to_image_r{k}", float(t2i[k].mean()), details=details,
                              interval=_interval(ctx, f"text_to_image_r{k}", found, per_image),
                              chance=min(1.0, k / kept.size)))
    return metrics


def _interval(ctx: "ProbeContext", metric: str, hits, counts=None) -> tuple[float, float] | None:
    """95 % percentile bootstrap over images of hits / captions (or the mean of per-image hits)."""
    from pytest_visprobe.report.statistics import bootstrap_interval, seed_for

    if not ctx.resamples:
        return None
    rng = seed_for(ctx.seed, ctx.encoder.name, "retrieval", ctx.dataset.name, metric)
    if counts is None:
        return bootstrap_interval(hits, rng=rng, resamples=ctx.resamples)
    return bootstrap_interval((hits, counts), _ratio, rng=rng, resamples=ctx.resamples)


def _ratio(found, counts) -> float:
    return float(found.sum() / counts.sum())


RETRIEVAL = ProbeSpec(
    name="retrieval",
    description="image-text retrieval recall@1/5/10 both ways with the encoder's own text tower; "
                "encoders without one skip",
    metrics=(
        MetricSpec("image_to_text_r{n}", True, "share of images with one of their captions among their n nearest "
                   "captions (cosine)", chance="expected under a random ranking of the captions"),
        MetricSpec("text_to_image_r{n}", True, "share of captions whose image is among their n nearest images "
                   "(cosine)", chance="n / number of images"),
    ),
    run=run,
    settings=RetrievalConfig,
    details=RetrievalDetails,
    role="retrieval",
    targets=("captions",),
)
