"""Unsupervised structure: do the test features fall into the classes without any labels?

Spectral clustering of the test-split features with |cosine| affinity and k = number of
classes, scored by the study's greedy cluster-to-class matching, the one-to-one (Hungarian)
matching, NMI and ARI. The profile's ``clustering`` settings choose the affinity (dense up to
32,768 samples, a sparse k-nearest-neighbour graph beyond).
"""

import pytest

from pytest_visprobe.probes.clustering import clustering_scores
from pytest_visprobe.results import Metric


@pytest.mark.visprobe_datasets("clustering")
def test_clustering(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.require(visprobe_dataset, "label")
    config = visprobe.profile.clustering
    labels = visprobe_dataset.split("test").labels
    result = clustering_scores(
        visprobe.features(visprobe_encoder, visprobe_dataset, "test").numpy(), labels,
        seed=visprobe.seed, affinity=config.affinity, n_neighbors=config.n_neighbors,
    )
    details = {"affinity": result.affinity, "n_clusters": result.n_clusters, "n_samples": result.n_samples}
    # chance per metric: 1/k for matched accuracy, 0 for ARI (its expectation under a labelling
    # independent of the classes); NMI has no fixed chance level (above 0 for finite samples)
    accuracy = {**details, "chance": 1.0 / result.n_clusters}
    visprobe.check(
        Metric("clustering", "greedy_accuracy", result.greedy_accuracy, details=accuracy,
               per_sample=result.greedy_correct),
        Metric("clustering", "hungarian_accuracy", result.hungarian_accuracy, details=accuracy,
               per_sample=result.hungarian_correct),
        Metric("clustering", "nmi", result.nmi, details=details),
        Metric("clustering", "ari", result.ari, details={**details, "chance": 0.0}),
        encoder=visprobe_encoder, dataset=visprobe_dataset,
    )
