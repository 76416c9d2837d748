"""Semantic segmentation probe: does the frozen feature map know *where* each class is? (PROTOCOLS.md B)

A linear 1×1-conv head on the cached train maps, upsampled to mask size, scored by mIoU over
the classes and background on the test split.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pytest_visprobe.probes.heads import HeadFitDetails, LocalizationConfig
from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    from pytest_visprobe.runner.context import ProbeContext


class SegmentationDetails(HeadFitDetails):
    per_class_iou: dict[str, float | None]
    pixel_accuracy: float
    feature_map_size: list[int]
    mask_size: list[int]
    n_train: int
    n_test: int


def maps_of(ctx: "ProbeContext") -> tuple[Any, Any]:
    """Cached ``[N, C, h, w]`` maps of train and test."""
    return ctx.features("train", view="feature_map"), ctx.features("test", view="feature_map")


def image_size(split) -> tuple[int, int]:
    return tuple(split.images.get([0]).shape[1:3])


def segmentation_head(ctx: "ProbeContext", config: LocalizationConfig):
    """The segmentation head, fitted once per settings and shared with the instance probe."""
    from pytest_visprobe.kernels.segmentation import fit_segmentation_head

    train = ctx.dataset.split("train")
    return ctx.shared("segmentation_head", lambda: fit_segmentation_head(
        maps_of(ctx)[0], train.semantic_masks, n_classes=len(ctx.dataset.class_names), config=config,
        seed=ctx.seed), config)


def run(ctx: "ProbeContext") -> list[Metric]:
    import numpy as np

    from pytest_visprobe.kernels.segmentation import segmentation_probe

    train_maps, test_maps = maps_of(ctx)
    train, test = ctx.dataset.split("train"), ctx.dataset.split("test")
    metric = segmentation_probe(train_maps, train.semantic_masks, test_maps, test.semantic_masks,
                                class_names=ctx.dataset.class_names, config=ctx.settings, seed=ctx.seed,
                                head=segmentation_head(ctx, ctx.settings))
    details = dict(metric.details)
    chance = details.pop("chance")
    examples = segmentation_examples(segmentation_head(ctx, ctx.settings), test_maps, metric.units,
                                     tuple(np.asarray(test.semantic_masks).shape[-2:]))
    return [replace(metric, details=SegmentationDetails(**details), chance=chance, examples=examples)]


def segmentation_examples(head, test_maps, units, size: tuple[int, int]):
    """What the segmentation head saw: each test image ranked by its own mIoU (from the metric's
    per-image pixel counts), its predicted mask computed only for the images drawn."""
    import torch

    from pytest_visprobe.kernels.examples import image_miou
    from pytest_visprobe.kernels.segmentation import predict_masks
    from pytest_visprobe.probes.examples import Examples

    def predict(rows):
        return list(predict_masks(head, test_maps[torch.as_tensor(rows, dtype=torch.long)], size).numpy())

    return Examples("mask", image_miou(units.arrays["intersection"], units.arrays["union"]), "image mIoU", predict)


SEGMENTATION = ProbeSpec(
    name="segmentation_probe",
    description="a linear 1x1-conv head on the frozen feature map segments the classes",
    metrics=(MetricSpec("mIoU", True,
                        "mean IoU over classes and background of a linear 1x1-conv head on the frozen feature map",
                        chance="'background everywhere': the background share over the labels present"),),
    run=run, settings=LocalizationConfig, details=SegmentationDetails,
    role="localization", targets=("masks",), needs_feature_map=True,
)
