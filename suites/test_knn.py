"""Weighted k-NN: do an image's nearest train images share its class? (DINO)

No head is trained: every test image's k most cosine-similar train images (L2-normalised
features) vote for their class with weight exp(cos / 0.07), and the largest summed vote wins.
One record per k (``knn.top1_k20``), on the label datasets, with a bootstrap interval over test
images; the chance level is the majority class's share of the test split. Features come from
the cache: no forward pass beyond the two splits the label probe uses.
"""

import pytest

from pytest_visprobe.probes.knn import KS


@pytest.mark.visprobe_probe("knn")
@pytest.mark.parametrize("k", KS, ids=lambda k: f"k{k}")
def test_knn(visprobe, visprobe_encoder, visprobe_dataset, k):
    visprobe.run("knn", visprobe_encoder, visprobe_dataset, k=k)
