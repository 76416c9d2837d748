"""Instance segmentation probe: the detection head's boxes filled with the segmentation head's
class pixels, scored by COCO mask mAP@[.5:.95] (PROTOCOLS.md B). Both heads are shared with
their own probes when the settings agree."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from pytest_visprobe.probes.detection import centre_head
from pytest_visprobe.probes.heads import LocalizationConfig
from pytest_visprobe.probes.segmentation import maps_of, segmentation_head
from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    from pytest_visprobe.runner.context import ProbeContext


class InstanceDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mask_AP50: float
    mask_AP75: float
    head: str
    n_train: int
    n_test: int
    crowd_regions: str  # whether COCO crowd annotations were ignore regions in the scoring


def run(ctx: "ProbeContext") -> list[Metric]:
    from pytest_visprobe.kernels.instances import instance_segmentation_probe

    train_maps, test_maps = maps_of(ctx)
    metric = instance_segmentation_probe(
        train_maps, ctx.dataset.split("train"), test_maps, ctx.dataset.split("test"),
        n_classes=len(ctx.dataset.class_names), config=ctx.settings, seed=ctx.seed,
        detector=centre_head(ctx, ctx.settings), segmenter=segmentation_head(ctx, ctx.settings))
    return [replace(metric, details=InstanceDetails(**metric.details))]


INSTANCES = ProbeSpec(
    name="instance_segmentation_probe",
    description="centre-head boxes filled with the segmentation head's class pixels give instance masks",
    metrics=(MetricSpec("mask_mAP", True,
                        "COCO mask mAP@[.5:.95]: centre-head boxes filled with the segmentation head's class pixels"),),
    run=run, settings=LocalizationConfig, details=InstanceDetails,
    role="localization", targets=("boxes", "masks"), needs_feature_map=True,
    # 2: scored by COCOeval directly; images without a ground-truth mask now count (their false
    # positives lower the mAP, as in COCO), where torchmetrics left them out
    version=2,
)
