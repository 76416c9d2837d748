"""Unsupervised structure: do the test features fall into the classes without any labels?

Spectral clustering of the test-split features with |cosine| affinity and k = number of
classes, scored by the study's greedy cluster-to-class matching, the one-to-one (Hungarian)
matching, NMI and ARI. The profile's ``[probes.clustering]`` settings choose the affinity
(dense up to 32,768 samples, a sparse k-nearest-neighbour graph beyond).
"""

import pytest


@pytest.mark.visprobe_probe("clustering")
def test_clustering(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.run("clustering", visprobe_encoder, visprobe_dataset)
