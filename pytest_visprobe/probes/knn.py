"""Weighted k-NN: do an image's nearest train images share its class? (DINO, Caron et al. 2021)

The first number self-supervised papers report: no head is trained. Test features are matched
by cosine similarity to the train split's; the ``k`` nearest vote for their class with weight
``exp(similarity / T)``. One metric per ``k`` (``top1_k20``), 0/1 per test image kept so the
interval is a bootstrap over test images and a baseline is compared image by image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    from pytest_visprobe.runner.context import ProbeContext

#: The ``k`` the shipped suite runs (DINO reports 10, 20, 100 and 200; 20 is its headline)
KS = (10, 20, 200)


class KnnConfig(BaseModel):
    """DINO's weighted k-NN on L2-normalised features."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.07, gt=0)  # vote weight exp(cos / T); DINO's 0.07


class KnnDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int  # as asked for
    k_used: int  # min(k, train size): every train image votes when the train split is smaller
    temperature: float
    n_train: int
    n_test: int
    note: str | None = None


def metric_name(k: int) -> str:
    return f"top1_k{k}"


def run(ctx: "ProbeContext", k: int) -> list[Metric]:
    import numpy as np

    from pytest_visprobe.kernels.knn import knn_predict
    from pytest_visprobe.kernels.chance import majority_share

    config: KnnConfig = ctx.settings
    train, test = ctx.dataset.split("train"), ctx.dataset.split("test")
    n_classes = len(ctx.dataset.class_names)
    pred = knn_predict(ctx.features("train"), train.labels, ctx.features("test"), ks=[k],
                       temperature=config.temperature, n_classes=n_classes, device=ctx.device)[k]
    correct = (pred == np.asarray(test.labels)).astype(np.uint8)
    n_train = len(train.labels)
    k_used = min(k, n_train)
    note = (f"k = {k} exceeds the {n_train} train images: every train image votes (k = {k_used})"
            if k_used < k else None)
    details = KnnDetails(k=k, k_used=k_used, temperature=config.temperature, n_train=n_train,
                         n_test=len(test.labels), note=note)
    return [Metric("knn", metric_name(k), float(correct.mean()), details=details, per_sample=correct,
                   chance=majority_share(test.labels))]


KNN = ProbeSpec(
    name="knn",
    description="weighted k-NN (DINO: cosine, k nearest train images vote with exp(cos / 0.07)), no head trained",
    metrics=(MetricSpec("top1_k{n}", True,
                        "top-1 of DINO's weighted k-NN on L2-normalised features: the k most cosine-similar "
                        "train images vote for their class with weight exp(cos / T)",
                        chance="the majority class's share of the test split"),),
    run=run,
    settings=KnnConfig,
    details=KnnDetails,
    role="label",
    targets=("label",),
    per_layer=True,
)
