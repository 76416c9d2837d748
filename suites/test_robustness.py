"""Adversarial robustness (RPGD): how small a pixel change flips the frozen encoder's labels?

The classifier attacked is the model's own ImageNet-1k head when it has one and the dataset is
ImageNet (1,000 classes), as the study attacked supervised models; otherwise the frozen encoder
followed by the label probe's linear head, fitted on cached features (the same fit as the
semantics suite's when the settings agree). foolbox PGD with random start works on pixels in
[0, 1], through the encoder's own resize and normalisation, on the first N of the study's
seeded permutation: of the whole image folder in ImageFolder order (all of ImageNet-val, as the
study) when the model's own head is attacked, of the test split when a linear head fitted on
the train split is (details.pool says which). Success counts over
all of them (a clean mistake is an untargeted success at every ε; target = (label + 800) mod
1000 on ImageNet). Lower attack success means a more robust encoder.
Settings (steps, ε lists, images): the profile's ``[probes.rpgd]`` table.
"""

import pytest


@pytest.mark.visprobe_probe("rpgd")
@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_rpgd(visprobe, visprobe_encoder, visprobe_dataset, norm, targeted):
    visprobe.run("rpgd", visprobe_encoder, visprobe_dataset, norm=norm, targeted=targeted)
