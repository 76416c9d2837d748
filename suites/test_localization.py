"""Localization vs semantics: does the frozen feature map know *where* things are, or only *what*?

Every head is linear and trains on cached feature maps (no extra forward pass): a 1×1 conv
for segmentation, a centre heat-map head for detection, both together for instance masks,
and linear probes on RoI-pooled ground-truth boxes for the semantic counterpart on the same
images. Settings: the profile's ``localization`` config.
"""

import pytest

from pytest_visprobe.probes.detection import detection_probe, fit_centre_head
from pytest_visprobe.probes.instances import instance_segmentation_probe
from pytest_visprobe.probes.regions import region_attribute_probe, region_features, region_label_probe
from pytest_visprobe.probes.segmentation import fit_segmentation_head, segmentation_probe


def maps_of(visprobe, encoder, dataset):
    """Cached ``[N, C, h, w]`` maps of train and test; skips with the fix when there are none."""
    visprobe.require_feature_map(encoder)
    return (visprobe.features(encoder, dataset, "train", view="feature_map"),
            visprobe.features(encoder, dataset, "test", view="feature_map"))


def image_size(split):
    return tuple(split.images.get([0]).shape[1:3])


def segmentation_head(visprobe, encoder, dataset, train_maps):
    """The segmentation head, fitted once and shared by the segmentation and instance tests."""
    train = dataset.split("train")
    return visprobe.shared("segmentation_head", encoder, dataset, lambda: fit_segmentation_head(
        train_maps, train.semantic_masks, n_classes=len(dataset.class_names),
        config=visprobe.profile.localization, seed=visprobe.seed))


def centre_head(visprobe, encoder, dataset, train_maps):
    """The detection head, fitted once and shared by the detection and instance tests."""
    train = dataset.split("train")
    return visprobe.shared("centre_head", encoder, dataset, lambda: fit_centre_head(
        train_maps, train.boxes, train.box_labels, n_classes=len(dataset.class_names),
        image_size=image_size(train), config=visprobe.profile.localization, seed=visprobe.seed))


@pytest.mark.visprobe_datasets("localization")
def test_semantic_segmentation(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.require(visprobe_dataset, "masks")
    train_maps, test_maps = maps_of(visprobe, visprobe_encoder, visprobe_dataset)
    train, test = visprobe_dataset.split("train"), visprobe_dataset.split("test")
    metric = segmentation_probe(train_maps, train.semantic_masks, test_maps, test.semantic_masks,
                                class_names=visprobe_dataset.class_names,
                                config=visprobe.profile.localization, seed=visprobe.seed,
                                head=segmentation_head(visprobe, visprobe_encoder, visprobe_dataset, train_maps))
    visprobe.check(metric, encoder=visprobe_encoder, dataset=visprobe_dataset)


@pytest.mark.visprobe_datasets("localization")
def test_detection(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.require(visprobe_dataset, "boxes")
    train_maps, test_maps = maps_of(visprobe, visprobe_encoder, visprobe_dataset)
    train, test = visprobe_dataset.split("train"), visprobe_dataset.split("test")
    metrics = detection_probe(train_maps, train.boxes, train.box_labels, test_maps, test.boxes, test.box_labels,
                              n_classes=len(visprobe_dataset.class_names), image_size=image_size(test),
                              config=visprobe.profile.localization, seed=visprobe.seed,
                              head=centre_head(visprobe, visprobe_encoder, visprobe_dataset, train_maps))
    visprobe.check(*metrics, encoder=visprobe_encoder, dataset=visprobe_dataset)


@pytest.mark.visprobe_datasets("localization")
def test_instance_segmentation(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.require(visprobe_dataset, "boxes", "masks")
    train_maps, test_maps = maps_of(visprobe, visprobe_encoder, visprobe_dataset)
    metric = instance_segmentation_probe(
        train_maps, visprobe_dataset.split("train"), test_maps, visprobe_dataset.split("test"),
        n_classes=len(visprobe_dataset.class_names), config=visprobe.profile.localization, seed=visprobe.seed,
        detector=centre_head(visprobe, visprobe_encoder, visprobe_dataset, train_maps),
        segmenter=segmentation_head(visprobe, visprobe_encoder, visprobe_dataset, train_maps))
    visprobe.check(metric, encoder=visprobe_encoder, dataset=visprobe_dataset)


@pytest.mark.visprobe_datasets("localization")
def test_region_label(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.require(visprobe_dataset, "boxes")
    train_x, test_x = region_inputs(visprobe, visprobe_encoder, visprobe_dataset)
    metric = region_label_probe(train_x, visprobe_dataset.split("train").box_labels,
                                test_x, visprobe_dataset.split("test").box_labels,
                                n_classes=len(visprobe_dataset.class_names),
                                config=visprobe.profile.linear_probe, seed=visprobe.seed)
    visprobe.check(metric, encoder=visprobe_encoder, dataset=visprobe_dataset)


@pytest.mark.visprobe_datasets("localization")
def test_region_attributes(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.require(visprobe_dataset, "boxes", "attributes")
    if visprobe_dataset.split("train").box_attributes is None:
        pytest.skip(f"dataset {visprobe_dataset.name!r} has image-level attributes but none per box; "
                    f"the region attribute probe needs box_attributes.")
    train_x, test_x = region_inputs(visprobe, visprobe_encoder, visprobe_dataset)
    metric = region_attribute_probe(train_x, visprobe_dataset.split("train").box_attributes,
                                    test_x, visprobe_dataset.split("test").box_attributes,
                                    attribute_names=visprobe_dataset.attribute_names,
                                    config=visprobe.profile.linear_probe, seed=visprobe.seed)
    visprobe.check(metric, encoder=visprobe_encoder, dataset=visprobe_dataset)


def region_inputs(visprobe, encoder, dataset):
    """RoI-pooled features of every ground-truth box, train and test."""
    train_maps, test_maps = maps_of(visprobe, encoder, dataset)
    roi = visprobe.profile.localization.roi_size
    train, test = dataset.split("train"), dataset.split("test")
    return (region_features(train_maps, train.boxes, image_size=image_size(train), roi_size=roi),
            region_features(test_maps, test.boxes, image_size=image_size(test), roi_size=roi))
