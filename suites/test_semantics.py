"""Semantics probes: does the frozen embedding say *what* is in the image?

Linear probes train on cached features (no extra forward pass) and are scored on the test
split. Each also fits a control task — the same probe on train targets permuted across images —
and reports ``selectivity`` = measured − control, so a probe cannot pass on priors alone.
Thresholds live in visprobe_thresholds.toml beside this file.
"""

import pytest

from pytest_visprobe.controls import permuted_targets, selectivity
from pytest_visprobe.probes.semantics import attribute_probe, label_probe


@pytest.mark.visprobe_datasets("label")
def test_label_probe(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.require(visprobe_dataset, "label")
    train, test = visprobe_dataset.split("train"), visprobe_dataset.split("test")
    train_x = visprobe.features(visprobe_encoder, visprobe_dataset, "train")
    test_x = visprobe.features(visprobe_encoder, visprobe_dataset, "test")
    metric, _ = visprobe.label_probe(visprobe_encoder, visprobe_dataset, train_x, test_x)  # shared with RPGD
    control, _ = label_probe(train_x, permuted_targets(train.labels, visprobe.seed), test_x, test.labels,
                             n_classes=len(visprobe_dataset.class_names), config=visprobe.profile.linear_probe,
                             seed=visprobe.seed)
    visprobe.check(metric, selectivity(metric, control), encoder=visprobe_encoder, dataset=visprobe_dataset)


@pytest.mark.visprobe_datasets("attributes")
def test_attribute_probe(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.require(visprobe_dataset, "attributes")
    train, test = visprobe_dataset.split("train"), visprobe_dataset.split("test")
    train_x = visprobe.features(visprobe_encoder, visprobe_dataset, "train")
    test_x = visprobe.features(visprobe_encoder, visprobe_dataset, "test")
    settings = dict(attribute_names=visprobe_dataset.attribute_names, config=visprobe.profile.linear_probe,
                    seed=visprobe.seed)
    metric = attribute_probe(train_x, train.attributes, test_x, test.attributes,
                             resamples=visprobe.profile.gate.resamples, **settings)
    control = attribute_probe(train_x, permuted_targets(train.attributes, visprobe.seed), test_x, test.attributes,
                              resamples=0, **settings)
    visprobe.check(metric, selectivity(metric, control), encoder=visprobe_encoder, dataset=visprobe_dataset)
