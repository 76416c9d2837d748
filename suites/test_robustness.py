"""Adversarial robustness (RPGD): how small a pixel change flips the frozen encoder's labels?

The classifier attacked is the frozen encoder followed by the label probe's linear head, fitted
on cached features (no extra forward pass; the same fit as the semantics suite's when the
settings agree). foolbox PGD with random start works on pixels in [0, 1], through the encoder's
own resize and normalisation, on a seeded subset of the test split; only images the clean
classifier gets right are attacked. Lower attack success means a more robust encoder.
Settings (steps, ε lists, images): the profile's ``[probes.rpgd]`` table.
"""

import pytest


@pytest.mark.visprobe_probe("rpgd")
@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_rpgd(visprobe, visprobe_encoder, visprobe_dataset, norm, targeted):
    visprobe.run("rpgd", visprobe_encoder, visprobe_dataset, norm=norm, targeted=targeted)
