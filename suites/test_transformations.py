"""Transformation detection: which non-semantic edits (colour, quality, noise, blur, overlay,
geometry, style) does the frozen embedding keep? (Rashtchian et al., "Substance or Style")

Each source image is transformed a few times (seeded, balanced over the bank); the views'
embeddings are cached like any other features. Linear and MLP probes then name the
transformation (fine-grained), its family (grouped), and the family of transformations held
out of training (generalization). Train and test views come from disjoint source images.
"""

import pytest


@pytest.mark.visprobe_probe("transformation_linear")
def test_transformation_linear_probe(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.run("transformation_linear", visprobe_encoder, visprobe_dataset)


@pytest.mark.visprobe_probe("transformation_mlp")
def test_transformation_mlp_probe(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.run("transformation_mlp", visprobe_encoder, visprobe_dataset)
