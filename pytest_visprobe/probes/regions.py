"""Region probes: the semantic counterpart of the dense probes on the same images and map.

Each object's feature is ``roi_align`` of the frozen map over its ground-truth box; the label
and attribute probes' linear heads are fitted on them. Boxes come from the annotations, so
these probes measure *what*, never *where* (PROTOCOLS.md B).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pytest_visprobe.probes.attributes import AttributeDetails, attribute_map
from pytest_visprobe.probes.heads import LinearProbeConfig
from pytest_visprobe.probes.label import LabelDetails, label_top1
from pytest_visprobe.probes.segmentation import image_size, maps_of
from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    from pytest_visprobe.runner.context import ProbeContext


class RegionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    roi_size: int = Field(2, gt=0)  # RoIAlign output side for region features (roi_size² · C dims)
    linear: LinearProbeConfig = LinearProbeConfig()

    @field_validator("linear")
    @classmethod
    def _no_augment(cls, linear: LinearProbeConfig) -> LinearProbeConfig:
        if linear.augment:
            raise ValueError("augment = true re-encodes augmented whole images every epoch; region features are "
                             "RoI-pooled from cached maps, so set linear.augment = false")
        return linear


def region_inputs(ctx: "ProbeContext"):
    """RoI-pooled features of every ground-truth box, train and test."""
    from pytest_visprobe.kernels.regions import region_features

    train_maps, test_maps = maps_of(ctx)
    roi = ctx.settings.roi_size
    train, test = ctx.dataset.split("train"), ctx.dataset.split("test")
    return (region_features(train_maps, train.boxes, image_size=image_size(train), roi_size=roi),
            region_features(test_maps, test.boxes, image_size=image_size(test), roi_size=roi))


def region_label_top1(train_x, train_labels, test_x, test_labels, *, n_classes: int, config: LinearProbeConfig,
                      seed: int) -> Metric:
    """Top-1 of a linear probe on region features; one sample per ground-truth object, and the
    interval resamples images (the objects of one image are not independent)."""
    import numpy as np

    from pytest_visprobe.report.units import clustered

    test_y = np.concatenate(test_labels)
    metric, head = label_top1(train_x, np.concatenate(train_labels), test_x, test_y, n_classes=n_classes,
                              config=config, seed=seed)
    predicted = head.logits(test_x).argmax(dim=1).numpy()
    correct = (predicted == test_y).astype(np.float64)  # per box
    image_of_box = np.repeat(np.arange(len(test_labels)), [len(labels) for labels in test_labels])
    return replace(metric, probe="region_label_probe", per_sample=None,
                   units=clustered(correct, image_of_box, "test image"),
                   examples=region_examples(predicted, correct, image_of_box, len(test_labels)))


def region_examples(predicted, correct, image_of_box, n_images: int):
    """What the region head saw: each test image ranked by the share of its objects named right."""
    import numpy as np

    from pytest_visprobe.probes.examples import Examples

    count = np.bincount(image_of_box, minlength=n_images)
    right = np.bincount(image_of_box, weights=correct, minlength=n_images)
    scores = np.divide(right, count, out=np.full(n_images, np.nan), where=count > 0)
    return Examples("regions", scores, "share of objects named right",
                    lambda rows: [predicted[image_of_box == r] for r in rows])


def region_attribute_map(train_x, train_attributes, test_x, test_attributes, *, attribute_names,
                         config: LinearProbeConfig, seed: int, resamples: int) -> Metric:
    """Macro mAP of per-attribute linear probes on region features."""
    import numpy as np

    return attribute_map(train_x, np.concatenate(train_attributes), test_x, np.concatenate(test_attributes),
                         attribute_names=attribute_names, config=config, seed=seed, resamples=resamples,
                         probe="region_attribute_probe")


def run_label(ctx: "ProbeContext") -> list[Metric]:
    train_x, test_x = region_inputs(ctx)
    return [region_label_top1(train_x, ctx.dataset.split("train").box_labels, test_x,
                              ctx.dataset.split("test").box_labels, n_classes=len(ctx.dataset.class_names),
                              config=ctx.settings.linear, seed=ctx.seed)]


def run_attributes(ctx: "ProbeContext") -> list[Metric]:
    if ctx.dataset.split("train").box_attributes is None:
        ctx.skip(f"dataset {ctx.dataset.name!r} has image-level attributes but none per box; "
                 f"the region attribute probe needs box_attributes.")
    train_x, test_x = region_inputs(ctx)
    return [region_attribute_map(train_x, ctx.dataset.split("train").box_attributes, test_x,
                                 ctx.dataset.split("test").box_attributes,
                                 attribute_names=ctx.dataset.attribute_names, config=ctx.settings.linear,
                                 seed=ctx.seed, resamples=ctx.resamples)]


REGION_LABEL = ProbeSpec(
    name="region_label_probe",
    description="a linear probe names each object from RoI-pooled feature-map regions (ground-truth boxes)",
    metrics=(MetricSpec("top1", True,
                        "top-1 object label from RoI-pooled feature-map regions (ground-truth boxes)",
                        chance="1/K for K classes"),),
    run=run_label, settings=RegionSettings, details=LabelDetails,
    role="localization", targets=("boxes",), needs_feature_map=True,
    plot="pytest_visprobe.report.plots.localization:plot_localization",  # every dense dataset has boxes
)
REGION_ATTRIBUTES = ProbeSpec(
    name="region_attribute_probe",
    description="per-attribute linear probes read each object's attributes from RoI-pooled regions",
    metrics=(MetricSpec("mAP", True,
                        "attribute mAP from RoI-pooled feature-map regions (ground-truth boxes)",
                        chance="mean positive rate of the attributes present in test"),),
    run=run_attributes, settings=RegionSettings, details=AttributeDetails,
    role="localization", targets=("boxes", "attributes"), needs_feature_map=True,
)
