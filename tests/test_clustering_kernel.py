"""Spectral clustering and label matching against scikit-learn / scipy and hand-made tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import SpectralClustering
from sklearn.metrics import adjusted_rand_score

from pytest_visprobe.kernels import clustering as C


def _labels_from_table(table):
    """Label vectors (true, pred) realising a contingency table [classes, clusters]."""
    true, pred = [], []
    for cls, row in enumerate(table):
        for clu, count in enumerate(row):
            true += [cls] * count
            pred += [clu] * count
    return np.array(true), np.array(pred)


def _study_greedy(table):
    """The study's rule written out directly from its description, on a table."""
    table = np.asarray(table)
    pairs = sorted(
        ((table[a, b], a, b) for a in range(table.shape[0]) for b in range(table.shape[1])),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    taken = {}
    for _, cls, clu in pairs:
        taken.setdefault(cls, clu)
    relabel = {clu: 0 for clu in range(table.shape[1])}  # untaken cluster -> first class
    for cls in sorted(taken):  # the later class wins a shared cluster
        relabel[taken[cls]] = cls
    return sum(table[relabel[clu], clu] for clu in range(table.shape[1])) / table.sum()


def _blobs(seed, n_per_class, n_classes, dim, spread):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim))
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[y] + spread * rng.standard_normal((y.size, dim))
    perm = rng.permutation(y.size)
    return x[perm].astype(np.float32), y[perm]


# --- matching rules ----------------------------------------------------------------------

def test_greedy_differs_from_hungarian_on_a_shared_cluster():
    # Counts: A sits mostly in cluster 0, B too. Greedy visits (A,0)=6 then (B,0)=5: both
    # classes take cluster 0. Relabelling: cluster 0 -> B (the later class wins), cluster 1 ->
    # untaken -> A (the first class). Correct: B in c0 (5) + A in c1 (1) = 6 of 14.
    # Hungarian: A->0, B->1 gives 6 + 2 = 8 of 14.
    table = [[6, 1], [5, 2]]
    true, pred = _labels_from_table(table)
    assert C.greedy_match_accuracy(true, pred) == pytest.approx(6 / 14)
    assert C.hungarian_match_accuracy(true, pred) == pytest.approx(8 / 14)


def test_greedy_three_classes_by_hand():
    #            c0  c1  c2
    table = [[9, 0, 1],  # class 0 -> c0 (9)
             [7, 3, 0],  # class 1 -> c0 (7 comes before its 3): shares c0 with class 0
             [0, 2, 8]]  # class 2 -> c2 (8)
    # Relabel: c0 -> class 1 (later wins), c1 untaken -> class 0, c2 -> class 2.
    # Correct = table[1,0] + table[0,1] + table[2,2] = 7 + 0 + 8 = 15 of 30.
    true, pred = _labels_from_table(table)
    assert C.greedy_match_accuracy(true, pred) == pytest.approx(15 / 30)
    # Hungarian: 0->c0, 1->c1, 2->c2 = 9 + 3 + 8 = 20 of 30.
    assert C.hungarian_match_accuracy(true, pred) == pytest.approx(20 / 30)


def test_greedy_ties_are_broken_in_class_cluster_order():
    # (0,0), (0,1), (1,0) all count 4: stable order visits (0,0) first, so class 0 -> c0, then
    # class 1 -> c0 via (1,0) before (1,1)=1. c0 -> class 1, c1 untaken -> class 0.
    table = [[4, 4], [4, 1]]
    true, pred = _labels_from_table(table)
    assert C.greedy_match_accuracy(true, pred) == pytest.approx((4 + 4) / 13)


def test_greedy_and_hungarian_agree_with_references_on_random_tables():
    rng = np.random.default_rng(0)
    for _ in range(200):
        k = int(rng.integers(2, 7))
        table = rng.integers(0, 6, size=(k, k))
        table[np.arange(k), rng.permutation(k)] += 1  # every class and cluster occurs
        true, pred = _labels_from_table(table)
        # Arbitrary ids: the rules work on sorted ids, not on 0..K-1.
        true_ids, pred_ids = true * 10 - 5, pred + 100
        assert C.greedy_match_accuracy(true_ids, pred_ids) == pytest.approx(_study_greedy(table))
        rows, cols = linear_sum_assignment(-table)
        assert C.hungarian_match_accuracy(true_ids, pred_ids) == pytest.approx(
            table[rows, cols].sum() / table.sum()
        )


def test_matching_is_perfect_for_a_relabelled_partition():
    true = np.array([0, 0, 1, 1, 2, 2, 2])
    pred = np.array([5, 5, 3, 3, 9, 9, 9])
    assert C.greedy_match_accuracy(true, pred) == 1.0
    assert C.hungarian_match_accuracy(true, pred) == 1.0


# --- affinity and spectral clustering ----------------------------------------------------

def test_abs_cosine_affinity_matches_direct_formula():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 7)).astype(np.float32)
    x[3] = 0.0  # zero row: cosine undefined, affinity 0
    a = C.abs_cosine_affinity(x)
    assert a.dtype == np.float32 and a.shape == (40, 40)
    for i in (0, 5, 39):
        for j in (1, 5, 20):
            want = abs(x[i] @ x[j]) / (np.linalg.norm(x[i]) * np.linalg.norm(x[j]))
            assert a[i, j] == pytest.approx(want, abs=1e-6)
    assert not a[3].any()


def test_knn_affinity_keeps_nearest_abs_cosine_neighbours():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((60, 5)).astype(np.float32)
    dense = C.abs_cosine_affinity(x).astype(np.float64)
    np.fill_diagonal(dense, -1)
    w = C.knn_abs_cosine_affinity(x, 4).toarray()
    assert np.allclose(w, w.T) and np.all(np.diag(w) == 0)
    directed = np.zeros_like(dense)
    for i in range(60):
        nn = np.argsort(-dense[i])[:4]
        directed[i, nn] = dense[i, nn]
    assert np.allclose(w, (directed + directed.T) / 2, atol=1e-6)


def test_same_partition_as_sklearn_on_the_same_dense_affinity():
    x, y = _blobs(3, 100, 6, 32, 0.6)  # 600 samples: the full-eigh path
    a = C.abs_cosine_affinity(x)
    ref = SpectralClustering(6, affinity="precomputed", random_state=0).fit_predict(a)
    ours = C.spectral_clusters_precomputed(a, 6, seed=0)
    assert adjusted_rand_score(ref, ours) == 1.0
    assert adjusted_rand_score(y, ours) == 1.0


def test_same_partition_as_sklearn_through_the_lanczos_path():
    x, y = _blobs(4, 150, 8, 32, 0.8)  # 1200 samples > the eigh cut-off: ARPACK on float32
    a = C.abs_cosine_affinity(x)
    ref = SpectralClustering(8, affinity="precomputed", random_state=0).fit_predict(a)
    ours = C.spectral_clusters(x, 8, seed=0, affinity="dense")
    assert adjusted_rand_score(ref, ours) == 1.0


@pytest.mark.filterwarnings("ignore:Graph is not fully connected")  # separated classes: expected
def test_same_partition_as_sklearn_on_the_same_knn_affinity():
    x, y = _blobs(5, 200, 6, 32, 0.8)
    w = C.knn_abs_cosine_affinity(x, 15)
    ref = SpectralClustering(6, affinity="precomputed", random_state=0).fit_predict(w)
    ours = C.spectral_clusters_precomputed(w, 6, seed=0)
    assert adjusted_rand_score(ref, ours) == 1.0
    assert np.array_equal(C.spectral_clusters(x, 6, affinity="knn", n_neighbors=15), ours)


def test_precomputed_input_is_left_untouched_unless_overwrite():
    x, _ = _blobs(6, 30, 3, 8, 0.3)
    a = C.abs_cosine_affinity(x)
    keep = a.copy()
    C.spectral_clusters_precomputed(a, 3)
    assert np.array_equal(a, keep)


def test_well_separated_clusters_score_perfectly():
    x, y = _blobs(7, 120, 10, 64, 0.3)
    for affinity in ("dense", "knn"):
        res = C.clustering_scores(x, y + 4, seed=0, affinity=affinity)  # ids need not start at 0
        assert res.affinity == affinity and res.n_clusters == 10 and res.n_samples == 1200
        assert (res.greedy_accuracy, res.hungarian_accuracy, res.nmi, res.ari) == (1.0, 1.0, 1.0, 1.0)


def test_random_features_score_near_chance():
    # Labels are i.i.d. uniform over K classes and independent of the features, so the
    # partition is independent of the labels. For any fixed cluster->class map, accuracy is
    # Binomial(N, 1/K)/N; Hoeffding plus a union bound over all maps the matchings can pick
    # (K! bijections for Hungarian, K^K functions for the greedy rule) bounds the chance that
    # either exceeds 1/K + t by K^K exp(-2 N t^2). t is solved for a 1e-6 failure chance; the
    # bound comes from that inequality, not from the observed scores.
    k, n = 5, 1000
    rng = np.random.default_rng(8)
    x = rng.standard_normal((n, 32)).astype(np.float32)
    y = rng.integers(0, k, n)
    t = math.sqrt(math.log(k**k / 1e-6) / (2 * n))
    res = C.clustering_scores(x, y, seed=0, affinity="dense")
    assert res.hungarian_accuracy < 1 / k + t
    assert res.greedy_accuracy < 1 / k + t


def test_auto_switches_to_knn_above_the_dense_limit(monkeypatch):
    x, y = _blobs(9, 100, 4, 16, 0.3)
    assert C.resolve_affinity(400) == "dense"
    monkeypatch.setattr(C, "DENSE_MAX_SAMPLES", 399)
    assert C.resolve_affinity(400) == "knn"
    res = C.clustering_scores(x, y)
    assert res.affinity == "knn" and res.hungarian_accuracy == 1.0
    assert C.default_n_neighbors(400, 4) == 50
    assert C.default_n_neighbors(100_000, 1000) == 50
    assert C.default_n_neighbors(1_000_000, 2) == 100 and C.default_n_neighbors(50, 10) == 10


def test_seed_makes_the_partition_reproducible():
    x, _ = _blobs(10, 60, 4, 8, 1.5)  # overlapping: k-means starts matter
    a = C.spectral_clusters(x, 4, seed=3)
    assert np.array_equal(a, C.spectral_clusters(x, 4, seed=3))
    assert a.dtype == np.int64 and a.shape == (240,)


def test_errors_are_clear():
    x, y = _blobs(11, 10, 3, 4, 0.3)
    with pytest.raises(ValueError, match="affinity must be one of"):
        C.spectral_clusters(x, 3, affinity="rbf")
    with pytest.raises(ValueError, match="n_clusters must be in"):
        C.spectral_clusters(x, 31)
    with pytest.raises(ValueError, match="at least 2 classes"):
        C.clustering_scores(x, np.zeros(30, dtype=np.int64))
    with pytest.raises(ValueError, match="NaN"):
        bad = x.copy()
        bad[0, 0] = np.inf
        C.spectral_clusters(bad, 3)
    with pytest.raises(ValueError, match="30 samples"):
        C.clustering_scores(x, y[:-1])
    with pytest.raises(ValueError, match="symmetric"):
        C.spectral_clusters_precomputed(np.triu(np.ones((5, 5), dtype=np.float32)), 2)
    with pytest.raises(ValueError, match="non-negative"):
        C.spectral_clusters_precomputed(-np.ones((5, 5), dtype=np.float32), 2)
    with pytest.raises(ValueError, match="n_neighbors only applies"):
        C.spectral_clusters(x, 3, affinity="dense", n_neighbors=5)
    with pytest.raises(ValueError, match="n_neighbors must be in"):
        C.knn_abs_cosine_affinity(x, 30)


def test_disconnected_graph_gets_one_exact_eigenvector_per_component():
    # The cause of a kNN-path failure: separated classes make the k-NN graph split into one
    # component per class, so eigenvalue 1 of D^-1/2 A D^-1/2 repeats 10 times and ARPACK
    # returned only 9 copies. The components' eigenvectors are now written down exactly.
    x, y = _blobs(7, 120, 10, 64, 0.3)
    w = C.knn_abs_cosine_affinity(x, 60)
    count, labels = C._components(w)
    assert count == 10 and adjusted_rand_score(y, labels) == 1.0
    degree = np.asarray(w.sum(axis=1)).ravel()
    u = C._component_eigenvectors(w, degree)
    inv = 1 / np.sqrt(degree)
    m = (w.multiply(inv[:, None]).multiply(inv[None, :])).toarray()
    assert np.allclose(m @ u, u, atol=1e-5) and np.allclose(u.T @ u, np.eye(10))
    assert adjusted_rand_score(y, C.spectral_clusters(x, 10, affinity="knn")) == 1.0


def test_dense_affinity_with_orthogonal_classes_is_split_exactly():
    # Classes in orthogonal coordinate blocks: |cos| between classes is exactly 0, so even the
    # dense graph is disconnected (1,200 samples: the Lanczos path).
    rng = np.random.default_rng(12)
    y = np.repeat(np.arange(8), 150)
    x = np.zeros((y.size, 8 * 4), dtype=np.float32)
    for k in range(8):
        x[y == k, 4 * k : 4 * k + 4] = rng.uniform(0.5, 1.0, (150, 4))
    count, labels = C._components(C.abs_cosine_affinity(x) - np.eye(y.size, dtype=np.float32))
    assert count == 8 and adjusted_rand_score(y, labels) == 1.0
    assert adjusted_rand_score(y, C.spectral_clusters(x, 8, affinity="dense")) == 1.0
    # More components than clusters: the largest components take the eigenvectors.
    assert C.spectral_clusters(x, 3, affinity="dense").shape == (1200,)


def test_per_sample_correctness_follows_each_matching():
    # Table [[6, 1], [5, 2]] (see above): greedy maps c0 -> B, c1 -> A; Hungarian c0 -> A, c1 -> B.
    true, pred = _labels_from_table([[6, 1], [5, 2]])
    greedy = C.greedy_match_correct(true, pred)
    hungarian = C.hungarian_match_correct(true, pred)
    assert greedy.tolist() == [0.0] * 6 + [1.0] + [1.0] * 5 + [0.0] * 2
    assert hungarian.tolist() == [1.0] * 6 + [0.0] + [0.0] * 5 + [1.0] * 2
    # More clusters than classes: an unmatched cluster's samples are wrong under Hungarian.
    true, pred = np.array([0, 0, 1, 1, 1]), np.array([0, 0, 1, 1, 2])
    assert C.hungarian_match_correct(true, pred).tolist() == [1, 1, 1, 1, 0]
    x, y = _blobs(13, 40, 3, 8, 0.3)
    res = C.clustering_scores(x, y)
    assert res.greedy_correct.mean() == res.greedy_accuracy == 1.0
    assert res.hungarian_correct.shape == y.shape
