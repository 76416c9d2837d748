"""Adversarial robustness (RPGD): how small a pixel change flips the frozen encoder's labels?

The classifier attacked is the frozen encoder followed by the label probe's linear head, fitted
on cached features (no extra forward pass). foolbox PGD with random start works on pixels in
[0, 1], through the encoder's own resize and normalisation, on a seeded subset of the test
split; only images the clean classifier gets right are attacked. Lower attack success means a
more robust encoder. Settings (steps, ε lists, images): the profile's ``robustness`` block.
"""

import pytest

from pytest_visprobe.probes.rpgd import rpgd_probe


@pytest.mark.visprobe_datasets("robustness")
@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_rpgd(visprobe, visprobe_session, visprobe_encoder, visprobe_dataset, norm, targeted):
    visprobe.require(visprobe_dataset, "label")
    _, head = visprobe.label_probe(visprobe_encoder, visprobe_dataset)  # the semantics probe's head
    metrics = rpgd_probe(
        visprobe_encoder, head, visprobe_dataset.split("test"), n_classes=len(visprobe_dataset.class_names),
        norm=norm, targeted=targeted,
        config=visprobe.profile.robustness, seed=visprobe.seed, device=visprobe_session.store.device,
    )
    visprobe.check(*metrics, encoder=visprobe_encoder, dataset=visprobe_dataset)
