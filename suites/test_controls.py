"""Random-init controls: the same probes on the same architecture with re-initialised weights.

The control's score is each metric's floor in the scorecard (beside chance and the measured
value): what the architecture and the probe reach without any training. Skipped, with the
reason, for encoders that cannot be re-initialised (e.g. no parameters).
"""

import pytest

from pytest_visprobe.probes.semantics import attribute_probe, label_probe


@pytest.mark.visprobe_datasets("label")
def test_label_probe_random_init(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.require(visprobe_dataset, "label")
    control = visprobe.control_encoder(visprobe_encoder)
    train, test = visprobe_dataset.split("train"), visprobe_dataset.split("test")
    metric, _ = label_probe(
        visprobe.features(control, visprobe_dataset, "train"), train.labels,
        visprobe.features(control, visprobe_dataset, "test"), test.labels,
        n_classes=len(visprobe_dataset.class_names), config=visprobe.profile.linear_probe, seed=visprobe.seed,
    )
    visprobe.check(metric, encoder=control, dataset=visprobe_dataset)


@pytest.mark.visprobe_datasets("attributes")
def test_attribute_probe_random_init(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.require(visprobe_dataset, "attributes")
    control = visprobe.control_encoder(visprobe_encoder)
    train, test = visprobe_dataset.split("train"), visprobe_dataset.split("test")
    metric = attribute_probe(
        visprobe.features(control, visprobe_dataset, "train"), train.attributes,
        visprobe.features(control, visprobe_dataset, "test"), test.attributes,
        attribute_names=visprobe_dataset.attribute_names, config=visprobe.profile.linear_probe,
        seed=visprobe.seed, resamples=visprobe.profile.gate.resamples,
    )
    visprobe.check(metric, encoder=control, dataset=visprobe_dataset)
