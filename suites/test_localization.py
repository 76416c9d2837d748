"""Localization vs semantics: does the frozen feature map know *where* things are, or only *what*?

Every head is linear and trains on cached feature maps (no extra forward pass): a 1×1 conv
for segmentation, a centre heat-map head for detection, both together for instance masks,
and linear probes on RoI-pooled ground-truth boxes for the semantic counterpart on the same
images. Settings: the profile's ``[probes.<name>]`` tables.
"""

import pytest


@pytest.mark.visprobe_probe("segmentation_probe")
def test_semantic_segmentation(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.run("segmentation_probe", visprobe_encoder, visprobe_dataset)


@pytest.mark.visprobe_probe("detection_probe")
def test_detection(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.run("detection_probe", visprobe_encoder, visprobe_dataset)


@pytest.mark.visprobe_probe("instance_segmentation_probe")
def test_instance_segmentation(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.run("instance_segmentation_probe", visprobe_encoder, visprobe_dataset)


@pytest.mark.visprobe_probe("region_label_probe")
def test_region_label(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.run("region_label_probe", visprobe_encoder, visprobe_dataset)


@pytest.mark.visprobe_probe("region_attribute_probe")
def test_region_attributes(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.run("region_attribute_probe", visprobe_encoder, visprobe_dataset)
