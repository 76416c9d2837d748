"""CKA between layers: how alike do an encoder's layers represent the same images? (Kornblith et al. 2019)

Runs only with ``--visprobe-layers`` (its tests are deselected otherwise). For one encoder, the
linear and RBF-kernel CKA (debiased HSIC by default; RBF bandwidth by the median heuristic, as
the ``cka`` probe) between every pair of its requested layers and its own embedding (``last``),
over the same test images: the matrices ride in each record's details and are drawn as
layer × layer heat-maps (``layer-cka-<encoder>-<dataset>.png``). Each layer's records are its
CKA with the embedding (``ENCODER@LAYER``, so they also appear against depth), with the ``cka``
probe's bootstrap interval over images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from pytest_visprobe.probes.cka import CHANCE_DEBIASED, compared_grams
from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    from pytest_visprobe.runner.context import ProbeContext


class LayerCkaConfig(BaseModel):
    """Linear and RBF CKA between an encoder's layers (Kornblith et al. 2019)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: str = "test"  # the split whose images every layer sees
    estimator: Literal["debiased", "biased"] = "debiased"  # as the cka probe's
    max_images: int = Field(5000, ge=4)  # a seeded subset beyond this: the Gram matrices are n × n
    rbf_sigma: float = Field(1.0, gt=0)  # RBF bandwidth = this factor × the median pairwise distance


class LayerCkaDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str  # the encoder whose embedding is the last row and column
    split: str
    n_images: int
    estimator: str
    layers: list[str]  # rows and columns of matrix, in depth order; "last" = the embedding
    matrix: list[list[float]]  # linear CKA between each pair of layers
    rbf_matrix: list[list[float]] | None = None  # RBF-kernel CKA between each pair of layers


def run(ctx: "ProbeContext") -> list[Metric]:
    from pytest_visprobe.kernels.cka import cka, cka_interval
    from pytest_visprobe.report.statistics import seed_for

    config: LayerCkaConfig = ctx.settings
    views = ctx.layer_views()
    if not views:
        ctx.skip("CKA between layers needs --visprobe-layers (e.g. all) naming the layers to compare")
    grams_of = compared_grams(ctx, config.split, config.max_images, config.rbf_sigma)
    debiased = config.estimator == "debiased"
    encoders = [*views, ctx.encoder]
    grams: dict[str, list] = {"linear": [], "rbf": []}
    for encoder in encoders:
        for kernel, (gram, _sigma) in grams_of(encoder).items():
            grams[kernel].append(gram)
    k = len(encoders)
    matrices = {}
    for kernel, stack in grams.items():
        matrix = [[1.0] * k for _ in range(k)]
        for i in range(k):
            for j in range(i + 1, k):
                matrix[i][j] = matrix[j][i] = round(cka(stack[i], stack[j], debiased=debiased), 6)
        matrices[kernel] = matrix
    details = LayerCkaDetails(reference=ctx.encoder.name, split=config.split, n_images=int(grams["linear"][0].shape[0]),
                              estimator=config.estimator, layers=[*(v.layer for v in views), "last"],
                              matrix=matrices["linear"], rbf_matrix=matrices["rbf"])
    metrics = []
    for i, view in enumerate(views):
        for kernel, stack in grams.items():
            value = cka(stack[i], stack[-1], debiased=debiased)
            interval = cka_interval(stack[i], stack[-1], debiased=debiased, resamples=ctx.resamples,
                                    rng=seed_for(ctx.seed, view.name, "layer_cka", ctx.dataset.name, kernel))
            metrics.append(Metric("layer_cka", f"{kernel}_cka_embedding", value, details=details, interval=interval,
                                  chance=0.0 if debiased else None, encoder=view))
    return metrics


LAYER_CKA = ProbeSpec(
    name="layer_cka",
    description="linear and RBF CKA (debiased HSIC) between an encoder's layers (--visprobe-layers) and its embedding",
    metrics=(MetricSpec("linear_cka_embedding", True,
                        "linear CKA of the layer's and the encoder's embedding's image Gram matrices: a "
                        "similarity, not a quality", lower=-1.0, chance=CHANCE_DEBIASED),
             MetricSpec("rbf_cka_embedding", True,
                        "RBF-kernel CKA (bandwidth = factor × median pairwise distance) of the layer's and the "
                        "encoder's embedding's images: a similarity, not a quality", lower=-1.0,
                        chance=CHANCE_DEBIASED),),
    run=run,
    settings=LayerCkaConfig,
    details=LayerCkaDetails,
    role="similarity",
    targets=("label",),
    plot="pytest_visprobe.report.plots.layers:plot_layer_cka",
    layers_only=True,
)
