"""Welch-t RDMs and RDM correlations against direct loop computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.cluster.hierarchy import dendrogram
from scipy.stats import pearsonr

from pytest_visprobe.kernels.rsa import (
    correlation_matrix,
    euclidean_rdm,
    rdm_correlation,
    similarity_linkage,
    welch_rdm,
)


def _encoder_features(seed, n_classes, per_class, dim=64):
    """Class structure from a 3-D latent space (so the RDM has real structure) plus noise."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n_classes, 3))
    proj = rng.standard_normal((3, dim))
    y = np.repeat(np.arange(n_classes), per_class)
    x = latent[y] @ proj + 0.5 * rng.standard_normal((y.size, dim)) + 3.0
    return x.astype(np.float32), y


def _reference_welch(x, y, classes):
    """Direct loops over class pairs, written from the protocol text."""
    stats = []
    for c in classes:
        rows = np.array([v / np.linalg.norm(v) for v in x[y == c].astype(np.float64)])
        stats.append((rows.mean(axis=0), rows.std(), len(rows)))
    k = len(classes)
    rdm = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            if i != j:
                (mi, si, ni), (mj, sj, nj) = stats[i], stats[j]
                rdm[i, j] = np.linalg.norm(mi - mj) / math.sqrt(si**2 / ni + sj**2 / nj)
    return rdm


def test_welch_rdm_matches_direct_loops():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((90, 12)).astype(np.float32) + 0.3
    y = rng.choice([2, 5, 9, 11], size=90)  # unequal class sizes, ids not 0..K-1
    rdm = welch_rdm(x, y)
    ref = _reference_welch(x, y, [2, 5, 9, 11])
    assert rdm.shape == (4, 4)
    assert np.allclose(rdm, ref, rtol=1e-9, atol=1e-9)
    assert np.allclose(rdm, rdm.T) and not rdm.diagonal().any()


def test_welch_rdm_with_n_classes_and_scale_invariance():
    x, y = _encoder_features(1, 6, 15)
    full = welch_rdm(x, y, n_classes=6)
    assert np.allclose(full, _reference_welch(x, y, range(6)), rtol=1e-9)
    # Features are L2-normalised per sample, so a per-sample rescale changes nothing.
    scale = np.random.default_rng(2).uniform(0.1, 10, size=(x.shape[0], 1)).astype(np.float32)
    assert np.allclose(welch_rdm(x * scale, y), full, rtol=1e-5)
    with pytest.raises(ValueError, match=r"classes \[6\] have no samples"):
        welch_rdm(x, y, n_classes=7)
    with pytest.raises(ValueError, match="outside 0..4"):
        welch_rdm(x, y, n_classes=5)


def test_euclidean_rdm_matches_loops():
    emb = np.random.default_rng(3).standard_normal((7, 5))
    rdm = euclidean_rdm(emb)
    for i in range(7):
        for j in range(7):
            assert rdm[i, j] == pytest.approx(np.linalg.norm(emb[i] - emb[j]), abs=1e-12)


def test_rdm_correlation_is_pearson_over_upper_triangle():
    rng = np.random.default_rng(4)
    a = euclidean_rdm(rng.standard_normal((9, 4)))
    b = euclidean_rdm(rng.standard_normal((9, 4)))
    b[np.tril_indices(9, -1)] = 123.0  # the lower triangle must not matter
    iu = np.triu_indices(9, 1)
    assert rdm_correlation(a, b) == pytest.approx(pearsonr(a[iu], b[iu])[0], abs=1e-12)


def test_encoder_with_itself_is_one_and_permuted_labels_near_zero():
    n_classes = 100
    x, y = _encoder_features(5, n_classes, 20)
    rdm = welch_rdm(x, y)
    assert rdm_correlation(rdm, welch_rdm(x.copy(), y.copy())) == pytest.approx(1.0, abs=1e-12)

    rng = np.random.default_rng(6)
    perm = rng.permutation(n_classes)
    shuffled = welch_rdm(x, perm[y])  # the same encoder with its class names shuffled
    inv = np.argsort(perm)
    assert np.allclose(shuffled, rdm[np.ix_(inv, inv)])  # relabelling only permutes the RDM
    r = rdm_correlation(rdm, shuffled)

    # Null distribution of r under random relabelling. Its mean is exactly 0: a relabelling
    # permutes the RDM entries (same multiset, so same mean and norm) and sends each class pair
    # to a uniformly random pair. Its spread is estimated from 200 other permutations. The test
    # permutation must lie within 4 null standard deviations of 0, and the null mean within 5
    # standard errors: bounds from the null, not from the value observed.
    null = np.array(
        [rdm_correlation(rdm, rdm[np.ix_(p, p)]) for p in (rng.permutation(n_classes) for _ in range(200))]
    )
    sd = null.std(ddof=1)
    assert abs(null.mean()) < 5 * sd / math.sqrt(null.size)
    assert abs(r) < 4 * sd
    assert sd < 0.05  # with 100 classes "near 0" is tight: 4 sd < 0.2


def test_correlation_matrix_and_linkage():
    x, y = _encoder_features(7, 12, 10)
    base = welch_rdm(x, y)
    rng = np.random.default_rng(8)
    close = base + 0.1 * euclidean_rdm(rng.standard_normal((12, 3)))  # mostly the same geometry
    other = euclidean_rdm(rng.standard_normal((12, 3)))
    names, corr = correlation_matrix({"enc": base, "finetune": close, "text": other})
    assert names == ["enc", "finetune", "text"]
    assert np.allclose(corr, corr.T) and np.all(np.diag(corr) == 1.0)
    assert corr[0, 1] == pytest.approx(rdm_correlation(base, close))
    assert corr[0, 2] == pytest.approx(rdm_correlation(base, other))
    z = similarity_linkage(names, corr)
    assert z.shape == (2, 4)
    # First merge: the two most correlated RDMs, at distance 1 - r.
    assert sorted(z[0, :2].astype(int).tolist()) == [0, 1]
    assert z[0, 2] == pytest.approx(1 - corr[0, 1])
    # Average linkage: the last merge is at the mean distance of "text" to the pair.
    assert z[1, 2] == pytest.approx(1 - (corr[0, 2] + corr[1, 2]) / 2)
    leaves = dendrogram(z, labels=names, no_plot=True)["ivl"]
    assert sorted(leaves) == sorted(names)


def test_errors_are_clear():
    x, y = _encoder_features(9, 3, 5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        welch_rdm(x, np.zeros_like(y))
    with pytest.raises(ValueError, match="one entry per sample"):
        welch_rdm(x, y[:-1])
    zero = x.copy()
    zero[y == 1] = 0.0
    with pytest.raises(ValueError, match=r"classes \[1\] have zero feature spread"):
        welch_rdm(zero, y)
    with pytest.raises(ValueError, match="K >= 3"):
        rdm_correlation(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="different numbers of classes"):
        rdm_correlation(euclidean_rdm(np.eye(4)), euclidean_rdm(np.eye(5)))
    with pytest.raises(ValueError, match="identical entries"):
        rdm_correlation(euclidean_rdm(np.eye(4)), euclidean_rdm(np.arange(8.0).reshape(4, 2)))
    with pytest.raises(ValueError, match="different numbers of classes"):
        correlation_matrix({"a": euclidean_rdm(np.eye(4)), "b": euclidean_rdm(np.eye(5))})
    with pytest.raises(ValueError, match="2 names for a 3x3"):
        similarity_linkage(["a", "b"], np.eye(3))


def test_within_class_interval_equals_a_direct_loop_and_is_exact_where_the_answer_is_known():
    """The RSA interval resamples images within each class and recomputes every RDM. Checked
    against a direct loop (the protocol-text Welch RDM above, scipy's pearsonr) on the same
    resamples; and an encoder against a rescaled copy of itself has r = 1 on every resample."""
    from pytest_visprobe.probes.similarity import within_class_intervals

    a, y = _encoder_features(2, 5, 8, dim=16)
    b = a + 0.8 * np.random.default_rng(3).standard_normal(a.shape).astype(np.float32)
    text = euclidean_rdm(np.random.default_rng(4).standard_normal((5, 6)))
    got = within_class_intervals({"a": a, "b": b}, y, 5, {"text": text}, lambda c: c[:-1, -1],
                                 rng=np.random.default_rng(7), resamples=200)
    rng = np.random.default_rng(7)
    members = [np.flatnonzero(y == c) for c in range(5)]
    draws = []
    for _ in range(200):
        rows = np.concatenate([rng.choice(m, m.size) for m in members])
        upper = np.triu_indices(5, k=1)
        draws.append([pearsonr(_reference_welch(x[rows], y[rows], range(5))[upper], text[upper])[0] for x in (a, b)])
    reference = np.percentile(np.array(draws), [2.5, 97.5], axis=0).T
    assert got == pytest.approx(reference, abs=1e-9)
    assert (got[:, 0] < got[:, 1]).all()
    same = within_class_intervals({"a": a, "a2": 2 * a}, y, 5, {}, lambda c: c[1:, 0],
                                  rng=np.random.default_rng(0), resamples=50)
    assert same == pytest.approx(np.array([[1.0, 1.0]]))
