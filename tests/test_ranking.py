"""``average_precision`` / ``mean_average_precision`` against scikit-learn's definition.

scikit-learn's ``average_precision_score`` is the independent reference: step-wise AP with
ties grouped by distinct score. Each case is data whose answer is known or computed by it.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from pytest_visprobe.kernels.ranking import average_precision, mean_average_precision


@pytest.mark.parametrize("seed", range(20))
def test_ap_matches_sklearn_on_random_scores(seed: int) -> None:
    """Continuous random scores (no ties), varied prevalence and sizes."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    y = rng.random(n) < rng.uniform(0.05, 0.9)
    y[rng.integers(n)] = True  # at least one positive
    s = rng.normal(size=n) + y * rng.uniform(0, 2)
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_ap_matches_sklearn_with_ties(seed: int) -> None:
    """Heavily tied scores: ties must be grouped, not broken by input order."""
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(5, 200))
    y = rng.random(n) < 0.4
    y[0] = True
    s = rng.integers(0, 4, size=n).astype(np.float64)  # at most four distinct scores
    expected = average_precision_score(y, s)
    assert average_precision(y, s) == pytest.approx(expected, abs=1e-12)
    # the same data in another order gives the same AP (ties are order-independent)
    perm = rng.permutation(n)
    assert average_precision(y[perm], s[perm]) == pytest.approx(expected, abs=1e-12)


def test_ap_all_tied_is_prevalence() -> None:
    """One score for everything: the only threshold gives precision = positive rate."""
    y = np.array([1, 0, 0, 1, 0, 0, 0, 1])
    s = np.zeros(8)
    assert average_precision(y, s) == pytest.approx(3 / 8)
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s))


def test_ap_known_small_case() -> None:
    """Hand-computed: ranking 1,0,1,0 → AP = (1/1 + 2/3) / 2."""
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.7, 0.1])
    assert average_precision(y, s) == pytest.approx((1.0 + 2 / 3) / 2)


def test_perfect_ranking_is_one() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(100) < 0.3
    s = y.astype(float) + rng.uniform(0, 0.5, size=100)  # every positive above every negative
    assert average_precision(y, s) == 1.0


def test_all_positive_column_is_one() -> None:
    y = np.ones(10, dtype=int)
    s = np.random.default_rng(1).normal(size=10)
    assert average_precision(y, s) == pytest.approx(1.0)
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s))


def test_no_positives_is_nan() -> None:
    """Undefined, not zero: a column without positives must not drag mAP down."""
    assert np.isnan(average_precision(np.zeros(6), np.arange(6.0)))


def test_map_matches_sklearn_macro_on_valid_columns() -> None:
    """mAP = mean of per-column sklearn APs over columns with a positive; NaN marks the others."""
    rng = np.random.default_rng(7)
    n, a = 150, 8
    y = (rng.random((n, a)) < rng.uniform(0.05, 0.6, size=a)).astype(np.uint8)
    y[:, 2] = 0  # no positives: excluded, NaN
    y[:, 5] = 1  # all positive: AP 1
    s = rng.normal(size=(n, a)) + y
    s[:, 3] = np.round(s[:, 3])  # ties in one column
    value, per_column = mean_average_precision(y, s)
    valid = [j for j in range(a) if j != 2]
    expected_cols = np.array([average_precision_score(y[:, j], s[:, j]) for j in valid])
    assert np.isnan(per_column[2])
    np.testing.assert_allclose(per_column[valid], expected_cols, atol=1e-12)
    assert per_column[5] == pytest.approx(1.0)
    assert value == pytest.approx(expected_cols.mean(), abs=1e-12)
    # sklearn's macro average over the same valid columns agrees
    assert value == pytest.approx(average_precision_score(y[:, valid], s[:, valid], average="macro"), abs=1e-12)


def test_map_without_any_positive_raises() -> None:
    with pytest.raises(ValueError, match="no column has a positive"):
        mean_average_precision(np.zeros((5, 3)), np.zeros((5, 3)))


def test_map_perfect_is_one() -> None:
    y = np.eye(6, dtype=int)
    value, per_column = mean_average_precision(y, y * 2.0 - 1.0)
    assert value == 1.0
    assert np.all(per_column == 1.0)
