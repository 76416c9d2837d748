"""Transformation detection: which non-semantic edits (colour, quality, noise, blur, overlay,
geometry, style) does the frozen embedding keep? (Rashtchian et al., "Substance or Style")

Each source image is transformed a few times (seeded, balanced over the bank); the views'
embeddings are cached like any other features. Linear and MLP probes then name the
transformation (fine-grained), its family (grouped), and the family of transformations held
out of training (generalization). Train and test views come from disjoint source images.
"""

import pytest

from pytest_visprobe.datasets.transformed import transformed_views
from pytest_visprobe.probes.transformations import (
    TransformationTask,
    linear_classifier,
    mlp_classifier,
    transformation_probes,
)


def _probe(visprobe, encoder, dataset, probe, fit):
    config = visprobe.profile.transformations
    views = transformed_views(
        dataset, seed=visprobe.seed, per_image=config.per_image,
        per_transformation={"train": config.train_per_transformation, "test": config.test_per_transformation},
    )
    train, test = views.split("train"), views.split("test")
    metrics = transformation_probes(
        probe, fit,
        visprobe.features(encoder, views, "train"), train.labels,
        visprobe.features(encoder, views, "test"), test.labels,
        TransformationTask.of(views, seed=visprobe.seed),
    )
    visprobe.check(*metrics, encoder=encoder, dataset=dataset)


@pytest.mark.visprobe_datasets("transformations")
def test_transformation_linear_probe(visprobe, visprobe_encoder, visprobe_dataset):
    fit = linear_classifier(visprobe.profile.linear_probe, seed=visprobe.seed)
    _probe(visprobe, visprobe_encoder, visprobe_dataset, "transformation_linear", fit)


@pytest.mark.visprobe_datasets("transformations")
def test_transformation_mlp_probe(visprobe, visprobe_encoder, visprobe_dataset):
    fit = mlp_classifier(visprobe.profile.transformations.mlp, seed=visprobe.seed)
    _probe(visprobe, visprobe_encoder, visprobe_dataset, "transformation_mlp", fit)
