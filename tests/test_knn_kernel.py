"""Weighted k-NN against scikit-learn's KNeighborsClassifier with DINO's weights, and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from pytest_visprobe.kernels.knn import knn_predict
from pytest_visprobe.probes.spec import metric_spec

T = 0.07


def _clustered(seed, n, n_classes=5, dim=16, noise=1.5):
    """Overlapping classes (k-NN is neither perfect nor at chance), unequal class sizes; the class
    centres are the same for every seed, so two seeds give a train and a test split."""
    centres = np.random.default_rng(1234).standard_normal((n_classes, dim))
    rng = np.random.default_rng(seed)
    y = rng.choice(n_classes, size=n, p=np.linspace(1, 2, n_classes) / np.linspace(1, 2, n_classes).sum())
    return centres[y] + noise * rng.standard_normal((n, dim)), y


def _sklearn(train_x, train_y, test_x, k):
    # cosine distance d = 1 - cos, so the DINO weight exp(cos / T) is exp((1 - d) / T)
    clf = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute",
                               weights=lambda d: np.exp((1 - d) / T))
    return clf.fit(train_x, train_y).predict(test_x)


@pytest.mark.parametrize("k", [1, 10, 20, 200])
def test_predictions_match_sklearn(k):
    train_x, train_y = _clustered(0, 400)
    test_x, test_y = _clustered(1, 150)
    # tiny chunks: the chunked path must equal one block
    ours = knn_predict(train_x, train_y, test_x, ks=[k], temperature=T, chunk_elements=400 * 7)[k]
    ref = _sklearn(train_x, train_y, test_x, k)
    assert np.array_equal(ours, ref)
    acc = (ours == test_y).mean()
    assert acc == (ref == test_y).mean()
    assert 0.3 < acc < 1.0  # a data set where the answer is neither trivial nor chance


def test_float32_features_agree_with_sklearn_on_float64():
    train_x, train_y = _clustered(2, 300)
    test_x, _ = _clustered(3, 100)
    ours = knn_predict(train_x.astype(np.float32), train_y, test_x.astype(np.float32), ks=[10, 20])
    for k in (10, 20):
        assert np.array_equal(ours[k], _sklearn(train_x, train_y, test_x, k))


def test_weighted_vote_beats_majority_vote_by_hand():
    # one very close neighbour of class 1 against two farther ones of class 0:
    # exp(0.99/T) = 1.4e6 > 2 * exp(0.6/T) = 1.0e4, so class 1 wins although class 0 has more votes
    def at(cos):
        return [cos, np.sqrt(1 - cos**2)]

    train_x = np.array([at(0.99), at(0.6), [0.6, -0.8]])
    train_y = np.array([1, 0, 0])
    test_x = np.array([[3.0, 0.0]])  # the norm does not matter: features are L2-normalised
    pred = knn_predict(train_x, train_y, test_x, ks=[1, 3])
    assert pred[1][0] == 1 and pred[3][0] == 1
    # with a flat vote (large T) the two class-0 neighbours win
    assert knn_predict(train_x, train_y, test_x, ks=[3], temperature=100.0)[3][0] == 0


def test_k_above_train_size_uses_every_train_sample():
    train_x, train_y = _clustered(4, 30)
    test_x, _ = _clustered(5, 20)
    pred = knn_predict(train_x, train_y, test_x, ks=[200, 30])
    assert np.array_equal(pred[200], pred[30])
    assert np.array_equal(pred[30], _sklearn(train_x, train_y, test_x, 30))


def test_bad_input_is_a_clear_error():
    x, y = _clustered(6, 20)
    with pytest.raises(ValueError, match="k must be >= 1"):
        knn_predict(x, y, x, ks=[0])
    with pytest.raises(ValueError, match="differ in width"):
        knn_predict(x, y, x[:, :3], ks=[5])
    with pytest.raises(ValueError, match="NaN"):
        knn_predict(np.full_like(x, np.nan), y, x, ks=[5])


def test_metric_family_is_declared():
    spec = metric_spec("knn", "top1_k20")
    assert spec.higher_is_better and spec.chance.startswith("the majority")
    assert metric_spec("knn", "top1_k7").name == "top1_k7"
