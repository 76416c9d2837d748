"""Spectral clustering of frozen features and the study's label-matching scores.

Protocol (PROTOCOLS.md A, Devillers et al. 2021): spectral clustering of the test-split
features with k = number of classes and affinity |cosine similarity|, scored with the study's
greedy cluster-to-class matching, plus Hungarian-matched accuracy, NMI and ARI.

Why not call ``sklearn.cluster.SpectralClustering(affinity="precomputed")`` directly: for a
dense matrix it converts the affinity to float64 and finds the eigenvectors by ARPACK
shift-invert, i.e. a dense LU factorisation, O(N^3) time and several float64 N x N copies
(about 20-30 s and 5 GB at N = 10,000 on the 2-core reference machine). The eigenvectors it
needs are the top ones of the normalised affinity D^-1/2 A D^-1/2, which Lanczos finds from
float32 matrix-vector products alone, in place on the one N x N buffer. The embedding and the
k-means step are the same as scikit-learn's (eigenvectors divided by sqrt(degree), diagonal of
the affinity ignored as in ``scipy.sparse.csgraph.laplacian``, ``k_means`` with n_init=10), so
on data with a clear eigengap both give the same partition (tests/test_clustering.py checks
it). Beyond :data:`DENSE_MAX_SAMPLES` samples the memory of the N x N float32 matrix (4 N^2
bytes) becomes the limit, so ``affinity="auto"`` switches to a sparse k-nearest-neighbour
|cosine| graph (:func:`knn_abs_cosine_affinity`), O(N k) memory for the same matmul time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Largest sample count for which ``affinity="auto"`` builds the dense N x N |cosine| matrix:
#: 32,768 samples = 4 GiB of float32, measured at ~4.2-4.3 GB peak RSS and ~15-25 s for the whole
#: clustering on the idle 2-core reference machine, 111 s single-threaded at load average 6.5
#: (benchmarks/bench_clustering.py). The dense path is
#: not slower than the k-NN graph (both are one O(N^2 D) matmul; Lanczos on the dense matrix
#: converges in a few dozen passes), so the limit is memory, kept well under the 24 GiB machine
#: so that test workers and encoders fit beside it. It covers every test split of the study
#: (largest: SVHN, 26,032 images), so ``auto`` uses the paper's dense affinity there.
DENSE_MAX_SAMPLES = 32_768

#: Upper and lower bound of the default neighbour count of the k-NN graph, which is half the
#: mean class size (N / 2k) clipped to this range: enough edges per sample to stay close to the
#: dense partition (10 is scikit-learn's default and measurably worse on 10-class data), few
#: enough that neighbours stay mostly within a class when classes are small.
DEFAULT_N_NEIGHBORS_RANGE = (10, 100)

# Below this size a full dense eigendecomposition is cheap and avoids ARPACK corner cases.
_EIGH_MAX_SAMPLES = 1_000
# Rows of similarities computed at once by the k-NN affinity (bounds its temporary memory).
_KNN_BLOCK_ELEMENTS = 1 << 25
_AFFINITIES = ("auto", "dense", "knn")


@dataclass(frozen=True)
class ClusteringResult:
    """Scores of one spectral clustering against the true labels."""

    n_samples: int
    n_clusters: int
    affinity: str  # "dense" or "knn": what was actually used
    greedy_accuracy: float  # the study's matching rule (``paper``)
    hungarian_accuracy: float  # one-to-one optimal matching
    nmi: float
    ari: float
    #: 0/1 per sample (input order): its cluster's matched class equals its label; the means are
    #: the two accuracies.
    greedy_correct: np.ndarray = field(default=None, repr=False, compare=False)
    hungarian_correct: np.ndarray = field(default=None, repr=False, compare=False)
    clusters: np.ndarray = field(default=None, repr=False, compare=False)  # cluster id per sample
    #: chance levels (:func:`permutation_chance`): the two accuracies a random partition with
    #: the same cluster sizes scores on average, and how many permutations estimated them
    greedy_chance: float | None = None
    hungarian_chance: float | None = None
    chance_permutations: int = 0


def _as_features(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features must be a non-empty 2-D array [N, D], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"features must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinity; check the encoder output")
    return x


def _as_labels(y: np.ndarray, n: int | None, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array, got shape {y.shape}")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"{what} has {y.shape[0]} entries but there are {n} samples")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{what} must be integers, got dtype {y.dtype}")
    return y


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-normalised float32 copy; all-zero rows stay zero (cosine undefined -> 0)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


def abs_cosine_affinity(x: np.ndarray) -> np.ndarray:
    """Dense |cosine similarity| matrix, float32 [N, N], diagonal 1 (0 for all-zero rows).

    One float32 matmul of the normalised features and an in-place abs: the only N x N buffer
    is the result, so this stays a small part of the clustering time (benchmarks/).
    """
    xn = _l2_normalize(_as_features(x))
    a = xn @ xn.T
    np.abs(a, out=a)
    return a


def default_n_neighbors(n_samples: int, n_clusters: int) -> int:
    """Neighbour count of the k-NN graph when none is given (see DEFAULT_N_NEIGHBORS_RANGE)."""
    lo, hi = DEFAULT_N_NEIGHBORS_RANGE
    k = int(np.clip(n_samples // (2 * max(1, n_clusters)), lo, hi))
    return max(1, min(k, n_samples - 1))


def knn_abs_cosine_affinity(x: np.ndarray, n_neighbors: int):
    """Sparse symmetric |cosine| graph: each sample keeps its ``n_neighbors`` largest |cos|.

    The graph is symmetrised as ``(W + W.T) / 2`` (scikit-learn's ``nearest_neighbors``
    convention, here with |cos| weights instead of 1): an edge found from both ends keeps its
    weight, an edge found from one end gets half. Self-loops are excluded. Similarities are
    computed in row blocks, so memory is O(N * n_neighbors) plus one block, while time is the
    same O(N^2 D) matmul as the dense matrix. Returns a float32 ``scipy.sparse.csr_matrix``.
    """
    import scipy.sparse as sp

    xn = _l2_normalize(_as_features(x))
    n = xn.shape[0]
    if not 1 <= n_neighbors < n:
        raise ValueError(f"n_neighbors must be in [1, {n - 1}] for {n} samples, got {n_neighbors}")
    import torch  # topk is ~10x faster than np.argpartition here, and multi-threaded

    xt = torch.from_numpy(xn)
    block = max(1, _KNN_BLOCK_ELEMENTS // n)
    cols = np.empty((n, n_neighbors), dtype=np.int64)
    vals = np.empty((n, n_neighbors), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, n, block):
            stop = min(n, start + block)
            s = (xt[start:stop] @ xt.T).abs_()
            s[torch.arange(stop - start), torch.arange(start, stop)] = -1.0  # never pick oneself
            v, i = torch.topk(s, n_neighbors, dim=1, sorted=False)
            cols[start:stop] = i.numpy()
            vals[start:stop] = v.numpy()
    rows = np.repeat(np.arange(n, dtype=np.int64), n_neighbors)
    w = sp.csr_matrix((vals.ravel(), (rows, cols.ravel())), shape=(n, n), dtype=np.float32)
    return ((w + w.T) * np.float32(0.5)).tocsr()


def _components(m) -> tuple[int, np.ndarray]:
    """Connected components of the graph with edges where ``m > 0`` (dense or sparse).

    Dense: breadth-first search over blocks of rows; a connected |cos| matrix (the usual case:
    one row with no zero entry) is settled after reading a single row.
    """
    import scipy.sparse as sp

    if sp.issparse(m):
        from scipy.sparse.csgraph import connected_components

        return connected_components(m, directed=False)
    n = m.shape[0]
    labels = np.full(n, -1, dtype=np.int64)
    count = 0
    for start in range(n):
        if labels[start] >= 0:
            continue
        labels[start] = count
        frontier = np.array([start])
        while frontier.size and (labels < 0).any():  # nothing left to reach: done
            reached = np.zeros(n, dtype=bool)
            for lo in range(0, frontier.size, 256):
                reached |= (m[frontier[lo : lo + 256]] > 0).any(axis=0)
            frontier = np.flatnonzero(reached & (labels < 0))
            labels[frontier] = count
        count += 1
    return count, labels


def _component_eigenvectors(m, degree: np.ndarray) -> np.ndarray:
    """Exact eigenvectors of eigenvalue 1 of D^-1/2 A D^-1/2, one per connected component.

    The normalised affinity is block-diagonal over the graph's components and each block with
    edges has eigenvalue 1 (its largest) with eigenvector sqrt(degree) on the block. So the
    multiplicity of the top eigenvalue is the number of such components: a k-NN graph of
    well-separated classes has one per class. Single-vector Lanczos (ARPACK) cannot resolve a
    repeated eigenvalue reliably (it found 9 of 10 copies on 10 separated blobs and returned the
    next eigenvector instead, merging two classes), so these vectors are written down, not
    solved for. Columns are unit-norm, ordered by component size (largest first, ties by first
    sample). Isolated samples (no edges) have eigenvalue 0 and get no column. Returns [N, c].
    """
    _, labels = _components(m)
    has_edges = degree > 0
    ids, first, sizes = np.unique(labels[has_edges], return_index=True, return_counts=True)
    order = np.lexsort((first, -sizes))
    vecs = np.zeros((m.shape[0], ids.size), dtype=np.float64)
    root = np.sqrt(degree)
    for col, comp in enumerate(ids[order]):
        rows = (labels == comp) & has_edges
        vecs[rows, col] = root[rows]
        vecs[:, col] /= np.linalg.norm(vecs[:, col])
    return vecs


def _top_eigenvectors(m, k: int, seed: int, known: np.ndarray | None = None) -> np.ndarray:
    """Eigenvectors of the k largest eigenvalues of the symmetric matrix ``m`` [N, k].

    ``known``: orthonormal eigenvectors [N, c] of the top eigenvalue (1 for a normalised
    affinity), e.g. from :func:`_component_eigenvectors`. They are used as they are and
    deflated out of ``m`` (``m - U U^T``) before the solver looks for the remaining k - c, so
    the solver never has to separate copies of a repeated eigenvalue.
    """
    import scipy.sparse as sp

    n = m.shape[0]
    c = 0 if known is None else known.shape[1]
    if c >= k:
        return known[:, :k]
    if n <= _EIGH_MAX_SAMPLES:
        import scipy.linalg

        dense = (m.toarray() if sp.issparse(m) else m).astype(np.float64)
        if c:
            dense -= known @ known.T
        _, vecs = scipy.linalg.eigh(dense, subset_by_index=[n - (k - c), n - 1])
        return vecs if not c else np.hstack([known, vecs])
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    op = m
    if c:
        u = known.astype(m.dtype)
        op = LinearOperator(
            (n, n), dtype=m.dtype, matvec=lambda v: m @ v - u @ (u.T @ v),
            matmat=lambda v: m @ v - u @ (u.T @ v),
        )
    # ARPACK's own start distribution, seeded as scikit-learn seeds it.
    v0 = np.random.RandomState(seed).uniform(-1, 1, n).astype(m.dtype)
    try:
        _, vecs = eigsh(op, k=k - c, which="LA", tol=1e-5, v0=v0)
    except ArpackNoConvergence:
        # A small gap after the k-th eigenvalue: a larger Krylov space usually resolves it.
        try:
            _, vecs = eigsh(op, k=k - c, which="LA", tol=1e-4, v0=v0, ncv=min(n - 1, max(4 * k + 1, 64)))
        except ArpackNoConvergence as exc:
            raise RuntimeError(
                f"the spectral embedding did not converge ({len(exc.eigenvalues)} of {k} "
                "eigenvectors found): the affinity has no clear cluster structure at this k"
            ) from exc
    return vecs if not c else np.hstack([known, vecs])


def spectral_clusters_precomputed(
    affinity, n_clusters: int, *, seed: int = 0, overwrite: bool = False
) -> np.ndarray:
    """Spectral clustering of a precomputed symmetric non-negative affinity (dense or sparse).

    Same embedding and k-means as ``SpectralClustering(affinity="precomputed")``: the diagonal
    is ignored, the top ``n_clusters`` eigenvectors of D^-1/2 A D^-1/2 are divided by
    sqrt(degree) and clustered by ``k_means(n_init=10, random_state=seed)``. A dense float32
    input is normalised in place when ``overwrite=True`` (no second N x N buffer). Isolated
    samples (zero degree) get a zero embedding row, as in scipy's Laplacian. Returns int64 [N].
    """
    import scipy.sparse as sp
    from sklearn.cluster import KMeans

    n = affinity.shape[0]
    if affinity.ndim != 2 or affinity.shape[1] != n:
        raise ValueError(f"affinity must be square [N, N], got shape {affinity.shape}")
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be in [1, {n}] for {n} samples, got {n_clusters}")
    if n_clusters == 1:
        return np.zeros(n, dtype=np.int64)
    if sp.issparse(affinity):
        m = sp.csr_matrix(affinity, dtype=np.float32, copy=True)
        m.setdiag(0)
        m.eliminate_zeros()
        if m.data.size and m.data.min() < 0:
            raise ValueError("affinity must be non-negative")
        if m.nnz and abs(m - m.T).max() > 1e-5 * max(1.0, float(m.data.max())):
            raise ValueError("affinity must be symmetric")
        degree = np.asarray(m.sum(axis=1, dtype=np.float64)).ravel()
    else:
        a = np.asarray(affinity)
        if a.dtype != np.float32 or not overwrite:
            a = a.astype(np.float32, copy=True)
        np.fill_diagonal(a, 0.0)
        if a.min() < 0:
            raise ValueError("affinity must be non-negative")
        degree = a.sum(axis=1, dtype=np.float64)
        # Cheap necessary condition (a full a == a.T check would need another N x N buffer).
        if not np.allclose(degree, a.sum(axis=0, dtype=np.float64), rtol=1e-4, atol=1e-6):
            raise ValueError("affinity must be symmetric")
        m = a
    known = _component_eigenvectors(m, degree)
    if known.shape[1] < 2:
        known = None  # connected graph: one top eigenvector, nothing the solver can miss
    degree[degree == 0] = 1.0
    inv_sqrt = (1.0 / np.sqrt(degree)).astype(np.float32)
    if sp.issparse(m):
        scale = sp.diags(inv_sqrt)
        m = (scale @ m @ scale).tocsr()
    else:
        m *= inv_sqrt[:, None]
        m *= inv_sqrt[None, :]
    vecs = _top_eigenvectors(m, n_clusters, seed, known)
    embedding = (vecs * inv_sqrt[:, None]).astype(np.float64)
    labels = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(embedding)
    return labels.astype(np.int64)


def resolve_affinity(n_samples: int, affinity: str = "auto") -> str:
    """Which affinity ``affinity`` means for ``n_samples``: "dense" or "knn"."""
    if affinity not in _AFFINITIES:
        raise ValueError(f"affinity must be one of {_AFFINITIES}, got {affinity!r}")
    if affinity == "auto":
        return "dense" if n_samples <= DENSE_MAX_SAMPLES else "knn"
    return affinity


def spectral_clusters(
    x: np.ndarray,
    n_clusters: int,
    *,
    seed: int = 0,
    affinity: str = "auto",
    n_neighbors: int | None = None,
) -> np.ndarray:
    """Cluster features [N, D] into ``n_clusters`` by spectral clustering on |cosine|.

    ``affinity``: "dense" (the study's full |cos| matrix), "knn" (sparse graph of
    ``n_neighbors`` |cos| neighbours, default :func:`default_n_neighbors`), or "auto" (dense up
    to :data:`DENSE_MAX_SAMPLES` samples). Returns int64 cluster ids [N].
    """
    x = _as_features(x)
    kind = resolve_affinity(x.shape[0], affinity)
    if kind == "dense":
        if n_neighbors is not None:
            raise ValueError("n_neighbors only applies to the 'knn' affinity")
        a = abs_cosine_affinity(x)
        return spectral_clusters_precomputed(a, n_clusters, seed=seed, overwrite=True)
    k = default_n_neighbors(x.shape[0], n_clusters) if n_neighbors is None else int(n_neighbors)
    w = knn_abs_cosine_affinity(x, k)
    return spectral_clusters_precomputed(w, n_clusters, seed=seed)


def contingency(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Co-occurrence counts [classes, clusters] with the sorted class and cluster ids."""
    true = _as_labels(true, None, "true labels")
    pred = _as_labels(pred, true.shape[0], "predicted labels")
    if true.size == 0:
        raise ValueError("no samples to score")
    classes, ti = np.unique(true, return_inverse=True)
    clusters, pi = np.unique(pred, return_inverse=True)
    table = np.zeros((classes.size, clusters.size), dtype=np.int64)
    np.add.at(table, (ti, pi), 1)
    return table, classes, clusters


def greedy_match_accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    """Accuracy under the study's greedy cluster-to-class matching (see :func:`greedy_match_correct`)."""
    return float(greedy_match_correct(true, pred).mean())


def greedy_match_correct(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per sample 0/1 under the study's greedy cluster-to-class matching (reproduced exactly).

    Visit (class, cluster) pairs by descending co-occurrence count; each class not yet matched
    takes the cluster of the first pair it appears in, so two classes may take the same
    cluster. Then every cluster is relabelled as the class that took it; as in the study's
    code, when several classes took one cluster the last class in sorted order wins, and a
    cluster no class took is labelled as the first class. Ties in count are visited in
    (class, cluster) order (a stable sort; the study's quicksort left them unspecified).
    """
    table, classes, clusters = contingency(true, pred)
    n_classes, n_clusters = table.shape
    order = np.argsort(-table, axis=None, kind="stable")
    cluster_of = np.full(n_classes, -1, dtype=np.int64)
    for flat in order:
        cls, clu = divmod(int(flat), n_clusters)
        if cluster_of[cls] < 0:
            cluster_of[cls] = clu
            if (cluster_of >= 0).all():
                break
    class_of_cluster = np.zeros(n_clusters, dtype=np.int64)  # untaken clusters -> first class
    for cls in range(n_classes):  # later classes overwrite earlier ones, as in the study
        class_of_cluster[cluster_of[cls]] = cls
    return _correct(true, pred, classes, clusters, class_of_cluster)


def _correct(true, pred, classes, clusters, class_of_cluster) -> np.ndarray:
    """0/1 per sample: the class its cluster was matched to (-1: none) is its own class."""
    matched = class_of_cluster[np.searchsorted(clusters, np.asarray(pred))]
    own = np.searchsorted(classes, np.asarray(true))
    return (matched == own).astype(np.float64)


def hungarian_match_accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    """Accuracy under the best one-to-one cluster-to-class matching (linear_sum_assignment)."""
    return float(hungarian_match_correct(true, pred).mean())


def hungarian_match_correct(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per sample 0/1 under the best one-to-one cluster-to-class matching; unmatched clusters
    (more clusters than classes) count as wrong."""
    from scipy.optimize import linear_sum_assignment

    table, classes, clusters = contingency(true, pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    class_of_cluster = np.full(clusters.size, -1, dtype=np.int64)
    class_of_cluster[cols] = rows
    return _correct(true, pred, classes, clusters, class_of_cluster)


def permutation_chance(true: np.ndarray, pred: np.ndarray, *, n_permutations: int = 100,
                       seed: int = 0) -> tuple[float, float]:
    """Expected greedy and Hungarian matched accuracy of a random partition with ``pred``'s
    cluster sizes, estimated by scoring ``n_permutations`` seeded shuffles of ``pred``.

    Both matchings pick the best-looking class for each cluster, so a partition independent of
    the labels scores above 1/k (more so with few samples per class); this is its chance level.
    """
    if int(n_permutations) < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    true, pred = np.asarray(true), np.asarray(pred)
    rng = np.random.default_rng([int(seed), 0xC4A2CE])
    greedy = hungarian = 0.0
    for _ in range(int(n_permutations)):
        shuffled = rng.permutation(pred)
        greedy += greedy_match_accuracy(true, shuffled)
        hungarian += hungarian_match_accuracy(true, shuffled)
    return greedy / n_permutations, hungarian / n_permutations


def clustering_scores(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int = 0,
    affinity: str = "auto",
    n_neighbors: int | None = None,
    chance_permutations: int = 100,
) -> ClusteringResult:
    """Spectral-cluster features with k = number of distinct labels and score the partition."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    x = _as_features(x)
    y = _as_labels(y, x.shape[0], "labels")
    n_classes = int(np.unique(y).size)
    if n_classes < 2:
        raise ValueError(f"clustering needs at least 2 classes, got {n_classes}")
    kind = resolve_affinity(x.shape[0], affinity)
    pred = spectral_clusters(x, n_classes, seed=seed, affinity=kind, n_neighbors=n_neighbors)
    greedy, hungarian = greedy_match_correct(y, pred), hungarian_match_correct(y, pred)
    greedy_chance, hungarian_chance = permutation_chance(y, pred, n_permutations=chance_permutations, seed=seed)
    return ClusteringResult(
        n_samples=int(x.shape[0]),
        n_clusters=n_classes,
        affinity=kind,
        greedy_accuracy=float(greedy.mean()),
        hungarian_accuracy=float(hungarian.mean()),
        nmi=float(normalized_mutual_info_score(y, pred)),
        ari=float(adjusted_rand_score(y, pred)),
        greedy_correct=greedy,
        hungarian_correct=hungarian,
        clusters=np.asarray(pred),
        greedy_chance=greedy_chance,
        hungarian_chance=hungarian_chance,
        chance_permutations=int(chance_permutations),
    )
