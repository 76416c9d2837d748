"""Few-shot prototype kernel against an independent loop computation and known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_visprobe.kernels.fewshot import FewShotResult, fewshot_accuracy, support_indices


def _reference_accuracy(train_x, train_y, test_x, test_y, support):
    """Plain loops: per-class mean of unit vectors, nearest prototype by dot product."""
    classes = sorted(set(train_y.tolist()))
    protos = []
    for c in classes:
        rows = [train_x[i] / np.linalg.norm(train_x[i]) for i in support if train_y[i] == c]
        protos.append(np.sum(rows, axis=0) / len(rows))
    correct = 0
    for feat, label in zip(test_x, test_y):
        unit = feat / np.linalg.norm(feat)
        scores = [float(np.dot(unit, p)) for p in protos]
        correct += classes[int(np.argmax(scores))] == label
    return correct / len(test_y)


def _splits(seed, n_train, n_test, n_classes, dim, spread):
    """Train and test splits drawn around the same class centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim))
    return _blobs(rng, centres, n_train, spread) + _blobs(rng, centres, n_test, spread)


def _blobs(rng, centres, n_per_class, spread):
    dim = centres.shape[1]
    y = np.repeat(np.arange(centres.shape[0]), n_per_class)
    x = centres[y] + spread * rng.standard_normal((y.size, dim))
    return x.astype(np.float32), y.astype(np.int64)


def test_matches_independent_loop_computation():
    rng = np.random.default_rng(0)
    # Overlapping classes (spread 1.5) so accuracy is far from 0 and 1 and any slip shows.
    train_x, train_y, test_x, test_y = _splits(0, 20, 30, 5, 16, 1.5)
    # Non-contiguous class ids and shuffled order: the kernel must not assume 0..K-1 or sorting.
    perm = rng.permutation(train_y.size)
    train_x, train_y = train_x[perm], train_y[perm] * 7 + 3
    test_y = test_y * 7 + 3
    res = fewshot_accuracy(train_x, train_y, test_x, test_y, n_shot=5, trials=4, seed=11)
    expected = [
        _reference_accuracy(
            train_x, train_y, test_x, test_y, support_indices(train_y, n_shot=5, trial=t, seed=11)
        )
        for t in range(4)
    ]
    assert isinstance(res, FewShotResult) and res.n_shot == 5
    assert res.per_trial == pytest.approx(expected, abs=1e-12)
    assert res.mean == pytest.approx(np.mean(expected))
    assert res.std == pytest.approx(np.std(expected, ddof=1))
    assert 0.3 < res.mean < 0.95  # the data really is in the informative range
    assert len(set(res.per_trial)) > 1  # trials draw different supports


def test_support_sets_are_per_class_without_replacement_and_stable():
    y = np.array([2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 2], dtype=np.int64)
    idx = support_indices(y, n_shot=3, trial=1, seed=5)
    assert y[idx].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert len(set(idx.tolist())) == idx.size
    # A trial's draw depends only on (seed, trial), not on how many trials run.
    data = _splits(1, 10, 10, 3, 4, 1.0)
    a = fewshot_accuracy(*data, n_shot=2, trials=3)
    b = fewshot_accuracy(*data, n_shot=2, trials=5)
    assert a.per_trial == b.per_trial[:3]
    assert np.array_equal(support_indices(y, n_shot=3, trial=1, seed=5), idx)


def test_all_samples_gives_the_class_mean_prototype():
    # n_shot = class size: no randomness left, every trial is the same full-mean prototype.
    train_x, train_y, test_x, test_y = _splits(3, 8, 25, 4, 6, 2.0)
    res = fewshot_accuracy(train_x, train_y, test_x, test_y, n_shot=8, trials=3)
    ref = _reference_accuracy(train_x, train_y, test_x, test_y, np.arange(train_y.size))
    assert res.per_trial == pytest.approx((ref,) * 3)
    assert res.std == 0.0


def test_well_separated_classes_are_perfect():
    train_x, train_y, test_x, test_y = _splits(4, 15, 40, 10, 64, 0.05)
    for n_shot in (1, 5, 10):
        res = fewshot_accuracy(train_x, train_y, test_x, test_y, n_shot=n_shot, trials=10)
        assert res.mean == 1.0 and res.std == 0.0


def test_random_features_score_chance():
    # Test labels drawn i.i.d. uniform and independent of the features, so given the
    # predictions each test sample is correct with probability exactly 1/K: per-trial accuracy
    # is Binomial(M, 1/K)/M. Bound: 5 binomial standard deviations (two-sided tail < 1e-6), a
    # property of the binomial, not a value fitted to this run.
    rng = np.random.default_rng(5)
    k, m = 10, 6000
    train_x = rng.standard_normal((500, 32)).astype(np.float32)
    train_y = np.repeat(np.arange(k), 50)
    test_x = rng.standard_normal((m, 32)).astype(np.float32)
    test_y = rng.integers(0, k, m)
    res = fewshot_accuracy(train_x, train_y, test_x, test_y, n_shot=5, trials=10)
    bound = 5 * math.sqrt((1 / k) * (1 - 1 / k) / m)
    assert all(abs(a - 1 / k) < bound for a in res.per_trial)


def test_population_std_on_request_and_single_trial():
    tr_te = _splits(6, 12, 30, 3, 8, 2.0)
    pop = fewshot_accuracy(*tr_te, n_shot=1, trials=6, ddof=0)
    assert pop.std == pytest.approx(np.std(pop.per_trial))
    one = fewshot_accuracy(*tr_te, n_shot=1, trials=1)
    assert math.isnan(one.std) and one.mean == one.per_trial[0]
    assert fewshot_accuracy(*tr_te, n_shot=1, trials=1, ddof=0).std == 0.0


def test_errors_are_clear():
    x, y, _, _ = _splits(7, 4, 1, 3, 5, 1.0)
    y_short = y.copy()
    y_short[0] = 1  # class 0 now has 3 samples
    with pytest.raises(ValueError, match=r"5-shot needs 5 training samples per class.*3 class"):
        fewshot_accuracy(x, y, x, y, n_shot=5)
    with pytest.raises(ValueError, match=r"0 \(3\)"):
        fewshot_accuracy(x, y_short, x, y, n_shot=4)
    with pytest.raises(ValueError, match="no training samples"):
        fewshot_accuracy(x, y, x, y + 10, n_shot=1)
    with pytest.raises(ValueError, match="differ in width"):
        fewshot_accuracy(x, y, x[:, :3], y, n_shot=1)
    with pytest.raises(ValueError, match="NaN"):
        bad = x.copy()
        bad[1, 1] = np.nan
        fewshot_accuracy(bad, y, x, y, n_shot=1)
    with pytest.raises(ValueError, match="n_shot must be >= 1"):
        fewshot_accuracy(x, y, x, y, n_shot=0)
    with pytest.raises(ValueError, match="integers"):
        fewshot_accuracy(x, y.astype(float), x, y, n_shot=1)


def test_per_sample_is_the_fraction_of_trials_each_test_sample_is_right():
    train_x, train_y, test_x, test_y = _splits(3, 15, 20, 4, 8, 1.5)
    res = fewshot_accuracy(train_x, train_y, test_x, test_y, n_shot=2, trials=5, seed=4)
    right = np.zeros(test_y.size)
    for t in range(5):
        support = support_indices(train_y, n_shot=2, trial=t, seed=4)
        for i in range(test_y.size):  # one test sample at a time through the loop reference
            right[i] += _reference_accuracy(train_x, train_y, test_x[i : i + 1], test_y[i : i + 1], support)
    assert res.per_sample.shape == test_y.shape
    assert res.per_sample == pytest.approx(right / 5)
    assert res.per_sample.mean() == pytest.approx(res.mean)
