"""Chance levels against independent computations: the majority share (numpy bincount) for the
label and transformation tasks, and for clustering the expected matched accuracy of a random
partition with the same cluster sizes, against exhaustive enumeration on a tiny case."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pytest_visprobe.kernels import clustering as kernel
from pytest_visprobe.kernels.clustering import greedy_match_accuracy, permutation_chance


def _hungarian_brute_force(true: np.ndarray, pred: np.ndarray) -> float:
    """Best one-to-one cluster→class map by trying every bijection (k ≤ 4 here)."""
    classes, clusters = np.unique(true), np.unique(pred)
    best = 0
    for image in itertools.permutations(classes, len(clusters)):
        mapping = dict(zip(clusters, image))
        best = max(best, int(sum(mapping[p] == t for p, t in zip(pred, true))))
    return best / len(true)


TRUE = np.array([0, 0, 0, 1, 1, 2, 2])
PRED = np.array([0, 0, 1, 1, 2, 2, 0])


def test_permutation_chance_matches_exhaustive_enumeration():
    """Every ordering of ``PRED`` (equally likely under a uniform shuffle): the exact mean."""
    orders = list(itertools.permutations(range(len(PRED))))
    greedy = np.array([greedy_match_accuracy(TRUE, PRED[list(o)]) for o in orders])
    hungarian = np.array([_hungarian_brute_force(TRUE, PRED[list(o)]) for o in orders])
    n = 2000
    got_greedy, got_hungarian = permutation_chance(TRUE, PRED, n_permutations=n, seed=0)
    # a mean of n independent draws: within 4 standard errors of the exact expectation
    assert abs(got_greedy - greedy.mean()) <= 4 * greedy.std() / np.sqrt(n)
    assert abs(got_hungarian - hungarian.mean()) <= 4 * hungarian.std() / np.sqrt(n)
    assert greedy.mean() > 1 / 3 and hungarian.mean() > 1 / 3  # matching scores above 1/k by chance


def test_permutation_chance_is_seeded():
    assert permutation_chance(TRUE, PRED, n_permutations=20, seed=3) == permutation_chance(TRUE, PRED, n_permutations=20, seed=3)
    with pytest.raises(ValueError, match="n_permutations"):
        permutation_chance(TRUE, PRED, n_permutations=0)


def test_clustering_scores_store_the_permutation_chance(monkeypatch):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 60)
    pred = rng.integers(0, 4, 60)
    monkeypatch.setattr(kernel, "spectral_clusters", lambda *a, **k: pred)
    result = kernel.clustering_scores(rng.normal(size=(60, 5)), y, seed=7, chance_permutations=30)
    assert (result.greedy_chance, result.hungarian_chance) == permutation_chance(y, pred, n_permutations=30, seed=7)
    assert result.chance_permutations == 30


def test_label_probe_chance_is_the_majority_share():
    torch = pytest.importorskip("torch")
    from pytest_visprobe.probes.heads import LinearProbeConfig
    from pytest_visprobe.probes.label import label_top1

    rng = np.random.default_rng(1)
    train_y = rng.integers(0, 3, 60)
    test_y = np.array([0] * 14 + [1] * 4 + [2] * 2)  # imbalanced, like SVHN
    metric, _ = label_top1(torch.randn(60, 4), train_y, torch.randn(20, 4), test_y, n_classes=3,
                           config=LinearProbeConfig(weight_decays=(1.0,)), seed=0)
    assert metric.chance == np.bincount(test_y).max() / len(test_y) == 0.7


def test_transformation_chance_is_the_majority_share():
    from pytest_visprobe.kernels.transformations import _details

    test_f = np.array([0] * 10 + [1] * 3 + [2] * 28)  # a large family, as colour's 10 of 41
    details = _details(np.ones(len(test_f)), test_f, ["a", "b", "c"], test_f, test_f, 3)
    assert details["chance"] == details["majority"] == np.bincount(test_f).max() / len(test_f)


def test_top_share_is_the_best_constant_top_k_guess():
    """Against enumeration: every constant top-k guess (a set of k classes) and its hit rate."""
    from pytest_visprobe.kernels.chance import majority_share, top_share

    labels = np.array([3] * 9 + [0] * 5 + [1] * 4 + [2] * 2)
    for k in (1, 2, 3):
        best = max(np.isin(labels, guess).mean() for guess in itertools.combinations(range(5), k))
        assert top_share(labels, k, n_classes=5) == best
    assert majority_share(labels) == 9 / 20
    with pytest.raises(ValueError, match="empty"):
        majority_share(np.array([], dtype=int))


def test_fewshot_chance_is_the_majority_share_of_the_test_split():
    from types import SimpleNamespace

    from pytest_visprobe.probes.fewshot import FewShotConfig, run

    rng = np.random.default_rng(2)
    test_y = np.array([0] * 12 + [1] * 5 + [2] * 3)
    splits = {"train": SimpleNamespace(labels=np.repeat(np.arange(3), 6)), "test": SimpleNamespace(labels=test_y)}
    features = {"train": rng.normal(size=(18, 4)), "test": rng.normal(size=(20, 4))}
    torch = pytest.importorskip("torch")
    ctx = SimpleNamespace(settings=FewShotConfig(trials=2), seed=0,
                          dataset=SimpleNamespace(name="d", class_names=["a", "b", "c"], split=splits.__getitem__),
                          features=lambda split: torch.as_tensor(features[split]), skip=pytest.skip)
    (metric,) = run(ctx, n_shot=1)
    assert metric.chance == 12 / 20
