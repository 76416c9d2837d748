"""Random-init controls: the same probes on the same architecture with re-initialised weights.

The control's score is each metric's floor in the scorecard (beside chance and the measured
value): what the architecture and the probe reach without any training. Skipped, with the
reason, for encoders that cannot be re-initialised (e.g. no parameters).
"""

import pytest


@pytest.mark.visprobe_probe("label_probe")
def test_label_probe_random_init(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.run("label_probe", visprobe.control_encoder(visprobe_encoder), visprobe_dataset)


@pytest.mark.visprobe_probe("attribute_probe")
def test_attribute_probe_random_init(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.run("attribute_probe", visprobe.control_encoder(visprobe_encoder), visprobe_dataset)


@pytest.mark.visprobe_probe("knn")
def test_knn_random_init(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.run("knn", visprobe.control_encoder(visprobe_encoder), visprobe_dataset, k=20)  # DINO's headline k
