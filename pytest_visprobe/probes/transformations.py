"""Transformation detection: which non-semantic edits does the frozen embedding keep? (PROTOCOLS.md C)

Each source image is transformed a few times (seeded, balanced over the bank); the views'
embeddings are cached like any other features. A linear and an MLP probe then name the
transformation (fine-grained), its family (grouped), and the family of transformations held out
of training (generalization). Train and test views come from disjoint source images.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from pytest_visprobe.probes.heads import HeadFitDetails, LinearProbeConfig, MLPProbeConfig
from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    from pytest_visprobe.runner.context import ProbeContext


class ViewSettings(BaseModel):
    """How many transformed views to embed. Each source image of a split gets ``per_image``
    different transformations (a seeded, balanced assignment), and just enough source images are
    used for every transformation to appear about ``train_per_transformation``
    (``test_...``) times in that split; a smaller dataset gives fewer views."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_image: int = Field(3, gt=0)  # transformations applied to each source image
    train_per_transformation: int = Field(24, gt=0)  # views of each transformation in train
    test_per_transformation: int = Field(12, gt=0)  # ... and in test


class TransformationLinearSettings(ViewSettings):
    linear: LinearProbeConfig = LinearProbeConfig()


class TransformationMLPSettings(ViewSettings):
    mlp: MLPProbeConfig = MLPProbeConfig()


class TransformationDetails(HeadFitDetails):
    per_family_top1: dict[str, float]
    majority: float  # the best constant guess: the largest class share in the test set
    n_train: int
    n_test: int
    labels: list[str] | None = None  # fine-grained: class index -> transformation
    label_families: list[str] | None = None
    confusion: list[list[int]] | None = None  # rows: truth, columns: prediction
    held_out: list[str] | None = None  # generalization: members never seen in training
    per_transformation_top1: dict[str, float] | None = None


def run_with(ctx: "ProbeContext", probe: str, fit) -> list[Metric]:
    import numpy as np

    from pytest_visprobe.datasets.transformed import transformed_views
    from pytest_visprobe.kernels.transformations import TransformationTask, transformation_probes
    from pytest_visprobe.report.units import clustered

    s: ViewSettings = ctx.settings
    views = transformed_views(ctx.dataset, seed=ctx.seed, per_image=s.per_image,
                              per_transformation={"train": s.train_per_transformation,
                                                  "test": s.test_per_transformation})
    train, test = views.split("train"), views.split("test")
    task = TransformationTask.of(views, seed=ctx.seed)
    metrics = transformation_probes(probe, fit, ctx.features("train", dataset=views), train.labels,
                                    ctx.features("test", dataset=views), test.labels, task)
    typed = []
    held = np.array([name in task.held_out for name in task.names])
    for m in metrics:
        details = dict(m.details)
        chance = details.pop("chance")
        scored = held[test.labels] if m.metric == "generalization_top1" else np.ones(len(test.labels), bool)
        # views of one source image are not independent: resample source images
        units = clustered(m.per_sample, test.sources[scored], "source image")
        examples = replace(m.examples, dataset=views) if m.examples is not None else None
        typed.append(replace(m, details=TransformationDetails(**details), chance=chance, per_sample=None,
                             units=units, data_key=views.fingerprint, examples=examples))
    return typed


def run_linear(ctx: "ProbeContext") -> list[Metric]:
    from pytest_visprobe.kernels.transformations import linear_classifier

    return run_with(ctx, "transformation_linear", linear_classifier(ctx.settings.linear, seed=ctx.seed))


def run_mlp(ctx: "ProbeContext") -> list[Metric]:
    from pytest_visprobe.kernels.transformations import mlp_classifier

    return run_with(ctx, "transformation_mlp", mlp_classifier(ctx.settings.mlp, seed=ctx.seed))


#: the best constant guess: families hold different numbers of transformations, so 1/F is too low
CHANCE_MAJORITY = "the largest class's share of the scored test views (the best constant guess)"


def _metrics(kind: str) -> tuple[MetricSpec, ...]:
    return (
        MetricSpec("fine_grained_top1", True, f"top-1 of a {kind} probe naming which transformation was applied",
                   chance=CHANCE_MAJORITY),
        MetricSpec("grouped_top1", True, f"top-1 of a {kind} probe naming the transformation's family",
                   chance=CHANCE_MAJORITY),
        MetricSpec("generalization_top1", True,
                   f"top-1 of a {kind} family probe on transformations held out of its training",
                   chance=CHANCE_MAJORITY),
    )


PLOT = "pytest_visprobe.report.plots.transformations:plot_confusion"

TRANSFORMATION_LINEAR = ProbeSpec(
    name="transformation_linear",
    description="a linear probe names the transformation applied to an image, its family, and held-out members' family",
    metrics=_metrics("linear (multinomial logistic)"),
    run=run_linear, settings=TransformationLinearSettings, details=TransformationDetails,
    role="transformations", targets=(), plot=PLOT, per_layer=True,
)
TRANSFORMATION_MLP = ProbeSpec(
    name="transformation_mlp",
    description="an MLP probe names the transformation applied to an image, its family, and held-out members' family",
    metrics=_metrics("one-hidden-layer MLP"),
    run=run_mlp, settings=TransformationMLPSettings, details=TransformationDetails,
    role="transformations", targets=(), plot=PLOT, per_layer=True,
)
