"""Detection probe: can a linear head on the frozen feature map put boxes around objects? (PROTOCOLS.md B)

A single-level centre heat-map head (class heat-map + offset + log-size, linear 1×1 conv) on
the cached train maps, scored by COCO box mAP@[.5:.95] and AP50 on the test split; their
intervals resample test images (the per-image COCOeval matches re-accumulated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_visprobe.probes.heads import HeadFitDetails, LocalizationConfig
from pytest_visprobe.probes.segmentation import image_size, maps_of
from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    from pytest_visprobe.runner.context import ProbeContext


class DetectionDetails(HeadFitDetails):
    AP75: float
    feature_map_size: list[int]
    image_size: list[int]
    max_detections: int
    head: str
    n_train: int
    n_test: int
    crowd_regions: str  # whether COCO crowd annotations were ignore regions in the scoring


def centre_head(ctx: "ProbeContext", config: LocalizationConfig):
    """The detection head, fitted once per settings and shared with the instance probe."""
    from pytest_visprobe.kernels.detection import fit_centre_head

    train = ctx.dataset.split("train")
    return ctx.shared("centre_head", lambda: fit_centre_head(
        maps_of(ctx)[0], train.boxes, train.box_labels, n_classes=len(ctx.dataset.class_names),
        image_size=image_size(train), config=config, seed=ctx.seed), config)


def run(ctx: "ProbeContext") -> list[Metric]:
    from dataclasses import replace

    from pytest_visprobe.kernels.detection import detection_probe

    train_maps, test_maps = maps_of(ctx)
    train, test = ctx.dataset.split("train"), ctx.dataset.split("test")
    metrics = detection_probe(train_maps, train.boxes, train.box_labels, test_maps, test.boxes, test.box_labels,
                              n_classes=len(ctx.dataset.class_names), image_size=image_size(test),
                              config=ctx.settings, seed=ctx.seed, head=centre_head(ctx, ctx.settings),
                              test_crowd_boxes=test.crowd_boxes, test_crowd_labels=test.crowd_labels)
    examples = detection_examples(centre_head(ctx, ctx.settings), test_maps, test, n_classes=len(ctx.dataset.class_names),
                                  image_size=image_size(test), max_detections=ctx.settings.max_detections)
    return [replace(m, details=DetectionDetails(**m.details), examples=examples if i == 0 else None)
            for i, m in enumerate(metrics)]


def detection_examples(head, test_maps, test, *, n_classes: int, image_size: tuple[int, int], max_detections: int):
    """What the detection head saw: each test image ranked by the share of its objects its top
    detections find (as many as it has objects, IoU >= 0.5, same class); those boxes drawn."""
    from pytest_visprobe.kernels.detection import detect
    from pytest_visprobe.kernels.examples import detection_scores, top_detections
    from pytest_visprobe.probes.examples import Examples

    preds = detect(head, test_maps, n_classes=n_classes, image_size=image_size, max_detections=max_detections)
    scores = detection_scores(preds, test.boxes, test.box_labels)
    return Examples("boxes", scores, "objects found by as many top boxes (IoU >= 0.5)",
                    lambda rows: [top_detections(preds[r], len(test.box_labels[r])) for r in rows])


DETECTION = ProbeSpec(
    name="detection_probe",
    description="a linear centre heat-map head on the frozen feature map detects the objects",
    metrics=(
        MetricSpec("mAP", True, "COCO box mAP@[.5:.95] of a linear centre heat-map head on the feature map"),
        MetricSpec("AP50", True, "COCO box AP at IoU 0.5 of a linear centre heat-map head on the feature map"),
    ),
    run=run, settings=LocalizationConfig, details=DetectionDetails,
    role="localization", targets=("boxes",), needs_feature_map=True,
)
