"""Adversarial robustness (RPGD): how small a pixel change flips the frozen encoder's labels?

The classifier attacked is the frozen encoder followed by the label probe's linear head, fitted
on cached features (no extra forward pass). foolbox PGD with random start works on pixels in
[0, 1], through the encoder's own resize and normalisation, on a seeded subset of the test
split; only images the clean classifier gets right are attacked. Lower attack success means a
more robust encoder. Settings (steps, ε lists, images): the profile's ``robustness`` block.
"""

import pytest

from pytest_visprobe.probes.rpgd import rpgd_probe
from pytest_visprobe.probes.semantics import label_probe


@pytest.fixture(scope="session")
def label_heads():
    """Linear label heads per (encoder, dataset): fitted once, shared by the four attacks."""
    return {}


@pytest.mark.visprobe_datasets("robustness")
@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_rpgd(visprobe, visprobe_session, visprobe_encoder, visprobe_dataset, label_heads, norm, targeted):
    visprobe.require(visprobe_dataset, "label")
    train, test = visprobe_dataset.split("train"), visprobe_dataset.split("test")
    n_classes = len(visprobe_dataset.class_names)
    key = (visprobe_encoder.name, visprobe_dataset.name)
    if key not in label_heads:
        _, label_heads[key] = label_probe(
            visprobe.features(visprobe_encoder, visprobe_dataset, "train"), train.labels,
            visprobe.features(visprobe_encoder, visprobe_dataset, "test"), test.labels,
            n_classes=n_classes, config=visprobe.profile.linear_probe, seed=visprobe.seed,
        )
    metrics = rpgd_probe(
        visprobe_encoder, label_heads[key], test, n_classes=n_classes, norm=norm, targeted=targeted,
        config=visprobe.profile.robustness, seed=visprobe.seed, device=visprobe_session.store.device,
    )
    visprobe.check(*metrics, encoder=visprobe_encoder, dataset=visprobe_dataset)
