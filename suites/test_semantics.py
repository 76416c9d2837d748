"""Semantics probes: does the frozen embedding say *what* is in the image?

Linear probes train on cached features (no extra forward pass) and are scored on the test
split. Each also fits a control task — the same probe on train targets permuted across images —
and reports ``selectivity`` = measured − control, so a probe cannot pass on priors alone.
Thresholds live in visprobe_thresholds.toml beside this file.
"""

import pytest


@pytest.mark.visprobe_probe("label_probe")
def test_label_probe(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.run("label_probe", visprobe_encoder, visprobe_dataset)


@pytest.mark.visprobe_probe("attribute_probe")
def test_attribute_probe(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.run("attribute_probe", visprobe_encoder, visprobe_dataset)
