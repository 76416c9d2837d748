"""Semantics probes: does the frozen embedding say *what* is in the image?

Linear probes train on cached features (no extra forward pass) and are scored on the test
split. Thresholds live in visprobe_thresholds.toml beside this file.
"""

import pytest

from pytest_visprobe.probes.semantics import attribute_probe, label_probe


@pytest.mark.visprobe_datasets("label")
def test_label_probe(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.require(visprobe_dataset, "label")
    train, test = visprobe_dataset.split("train"), visprobe_dataset.split("test")
    metric, _ = label_probe(
        visprobe.features(visprobe_encoder, visprobe_dataset, "train"), train.labels,
        visprobe.features(visprobe_encoder, visprobe_dataset, "test"), test.labels,
        n_classes=len(visprobe_dataset.class_names), config=visprobe.profile.linear_probe, seed=visprobe.seed,
    )
    visprobe.check(metric, encoder=visprobe_encoder, dataset=visprobe_dataset)


@pytest.mark.visprobe_datasets("attributes")
def test_attribute_probe(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.require(visprobe_dataset, "attributes")
    train, test = visprobe_dataset.split("train"), visprobe_dataset.split("test")
    metric = attribute_probe(
        visprobe.features(visprobe_encoder, visprobe_dataset, "train"), train.attributes,
        visprobe.features(visprobe_encoder, visprobe_dataset, "test"), test.attributes,
        attribute_names=visprobe_dataset.attribute_names, config=visprobe.profile.linear_probe, seed=visprobe.seed,
    )
    visprobe.check(metric, encoder=visprobe_encoder, dataset=visprobe_dataset)
