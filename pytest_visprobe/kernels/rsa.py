"""Representational similarity analysis over classes (PROTOCOLS.md A, Devillers et al. 2021).

An encoder's representational dissimilarity matrix (RDM) is the norm of the Welch t-vector
between class means, so a class pair is "far" when its means differ relative to the spread of
the features, not merely in absolute units; two encoders (or an encoder and a language model)
are compared by the Pearson r of their RDMs' upper triangles.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-normalised float64 copy; an all-zero row stays zero instead of becoming NaN."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _pairwise_distances(m: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``m`` (float64), exact zeros on the diagonal."""
    sq = np.einsum("ij,ij->i", m, m)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (m @ m.T)
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2)


def welch_rdm(x: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Welch-t RDM over classes, float64 [K, K].

    Per class k: mu_k = mean of the L2-normalised features, s_k = ONE scalar standard deviation
    over all entries of the class's normalised feature matrix (population, ``np.std``, as in the
    study), n_k = count. RDM[i, j] = ||mu_i - mu_j|| / sqrt(s_i^2/n_i + s_j^2/n_j).
    Classes are ``0 .. n_classes-1`` when ``n_classes`` is given (all must occur), else the
    sorted distinct labels.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features must be a non-empty 2-D array [N, D], got shape {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must be 1-D with one entry per sample: {y.shape} vs {x.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"features must be numeric, got dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinity; check the encoder output")
    if n_classes is None:
        classes = np.unique(y)
    else:
        classes = np.arange(n_classes)
        missing = np.setdiff1d(classes, y)
        if missing.size:
            raise ValueError(f"classes {missing[:10].tolist()} have no samples; their RDM rows are undefined")
        stray = np.setdiff1d(np.unique(y), classes)
        if stray.size:
            raise ValueError(f"labels {stray[:10].tolist()} are outside 0..{n_classes - 1}")
    if classes.size < 2:
        raise ValueError(f"an RDM needs at least 2 classes, got {classes.size}")
    k = classes.size
    mu = np.empty((k, x.shape[1]))
    s = np.empty(k)
    n = np.empty(k)
    for i, c in enumerate(classes):
        members = _l2_normalize(x[y == c].astype(np.float64))  # float64 per class only
        mu[i] = members.mean(axis=0)
        s[i] = members.std()
        n[i] = members.shape[0]
    if (s == 0).any():
        raise ValueError(
            f"classes {classes[s == 0][:10].tolist()} have zero feature spread (all-zero or "
            "constant features); the Welch t-distance is undefined"
        )
    var = s**2 / n
    rdm = _pairwise_distances(mu) / np.sqrt(var[:, None] + var[None, :])
    np.fill_diagonal(rdm, 0.0)
    return rdm


class WelchResampler:
    """Welch-t RDMs of one feature matrix under row resampling, one pass over the rows per draw.

    ``rdm(weights)`` equals ``welch_rdm(x[rows], y[rows], n_classes)`` for the multiset of rows
    with ``weights = np.bincount(rows, minlength=len(x))`` (equal up to float rounding): rows are
    L2-normalised independently, so a resampled class's mean is a weighted sum of unit rows (one
    sparse class-by-row product), and its one scalar spread follows from per-row sums and sums of
    squares computed once: var = E[u^2] - E[u]^2 over the class's n_k x D entries. The features
    are not copied whole; the product reads the drawn rows in float64 blocks of ``block`` rows.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, n_classes: int, *, block: int = 8192) -> None:
        x = np.asarray(x)
        y = np.asarray(y)
        if x.ndim != 2 or x.shape[0] != y.shape[0] or y.ndim != 1:
            raise ValueError(f"features [N, D] and labels [N] expected, got {x.shape} and {y.shape}")
        if not np.issubdtype(y.dtype, np.integer) or y.min(initial=0) < 0 or y.max(initial=0) >= n_classes:
            raise ValueError(f"labels must be integers in 0..{n_classes - 1}")
        self.x, self.y, self.k, self.block = x, y, n_classes, block
        norms, rowsum, rowsq = (np.empty(x.shape[0]) for _ in range(3))
        for lo in range(0, x.shape[0], block):
            part = x[lo:lo + block].astype(np.float64)
            norm = np.maximum(np.linalg.norm(part, axis=1), 1e-12)
            norms[lo:lo + block] = norm
            rowsum[lo:lo + block] = part.sum(axis=1) / norm
            rowsq[lo:lo + block] = np.einsum("ij,ij->i", part, part) / norm**2
        self.norms, self.rowsum, self.rowsq = norms, rowsum, rowsq

    def rdm(self, weights: np.ndarray) -> np.ndarray:
        """The Welch-t RDM [K, K] when row i is drawn ``weights[i]`` times."""
        from scipy.sparse import csr_matrix

        w = np.asarray(weights, dtype=np.float64)
        k, d = self.k, self.x.shape[1]
        n = np.bincount(self.y, weights=w, minlength=k)
        if (n == 0).any():
            raise ValueError(f"classes {np.flatnonzero(n == 0)[:10].tolist()} have no samples; their RDM rows are undefined")
        scale = w / (self.norms * n[self.y])
        mu = np.zeros((k, d))
        drawn = np.flatnonzero(w)  # a bootstrap draw leaves about a third of the rows out
        for lo in range(0, drawn.size, self.block):
            rows = drawn[lo:lo + self.block]
            picks = csr_matrix((scale[rows], (self.y[rows], np.arange(rows.size))), shape=(k, rows.size))
            mu += picks @ self.x[rows].astype(np.float64)
        mean = np.bincount(self.y, weights=w * self.rowsum, minlength=k) / (n * d)
        square = np.bincount(self.y, weights=w * self.rowsq, minlength=k) / (n * d)
        s2 = np.maximum(square - mean**2, 0.0)
        if (s2 == 0).any():
            raise ValueError(f"classes {np.flatnonzero(s2 == 0)[:10].tolist()} have zero feature spread (all-zero "
                             "or constant features); the Welch t-distance is undefined")
        var = s2 / n
        rdm = _pairwise_distances(mu) / np.sqrt(var[:, None] + var[None, :])
        np.fill_diagonal(rdm, 0.0)
        return rdm


def euclidean_rdm(emb: np.ndarray) -> np.ndarray:
    """Plain Euclidean RDM [K, K] of one embedding per class (language models: no variance)."""
    emb = np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] < 2 or emb.shape[1] == 0:
        raise ValueError(f"embeddings must be a 2-D array [K >= 2, D], got shape {emb.shape}")
    if not np.isfinite(emb).all():
        raise ValueError("embeddings contain NaN or infinity")
    return _pairwise_distances(emb)


def _upper(rdm: np.ndarray) -> np.ndarray:
    rdm = np.asarray(rdm, dtype=np.float64)
    if rdm.ndim != 2 or rdm.shape[0] != rdm.shape[1]:
        raise ValueError(f"an RDM must be square, got shape {rdm.shape}")
    if rdm.shape[0] < 3:
        raise ValueError(f"Pearson r over the upper triangle needs K >= 3 classes, got {rdm.shape[0]}")
    return rdm[np.triu_indices(rdm.shape[0], k=1)]


def rdm_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r between two RDMs over their strict upper triangles (same class order)."""
    ua, ub = _upper(a), _upper(b)
    if ua.shape != ub.shape:
        raise ValueError(f"RDMs cover different numbers of classes: {np.shape(a)} vs {np.shape(b)}")
    return float(correlation_from_vectors(np.stack([ua, ub]))[0, 1])


def correlation_from_vectors(vectors: np.ndarray) -> np.ndarray:
    """Pearson r matrix between rows; a constant row (no variation) raises ValueError."""
    centred = vectors - vectors.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    if (norms == 0).any():
        raise ValueError("an RDM has identical entries everywhere; its correlation is undefined")
    unit = centred / norms[:, None]
    r = np.clip(unit @ unit.T, -1.0, 1.0)
    np.fill_diagonal(r, 1.0)
    return r


def correlation_matrix(rdms: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Pairwise Pearson r between named RDMs: (names in mapping order, symmetric [M, M])."""
    names = list(rdms)
    if not names:
        raise ValueError("no RDMs given")
    uppers = [_upper(rdms[name]) for name in names]
    sizes = {u.size for u in uppers}
    if len(sizes) != 1:
        shapes = {name: np.shape(rdms[name]) for name in names}
        raise ValueError(f"RDMs cover different numbers of classes: {shapes}")
    return names, correlation_from_vectors(np.stack(uppers))


def similarity_linkage(names: Sequence[str], corr: np.ndarray) -> np.ndarray:
    """Average-linkage matrix on the distance 1 - r, for ``scipy.cluster.hierarchy.dendrogram``
    (pass ``labels=names``)."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    corr = np.asarray(corr, dtype=np.float64)
    if corr.ndim != 2 or corr.shape[0] != corr.shape[1]:
        raise ValueError(f"correlation matrix must be square, got shape {corr.shape}")
    if len(names) != corr.shape[0]:
        raise ValueError(f"{len(names)} names for a {corr.shape[0]}x{corr.shape[0]} matrix")
    if corr.shape[0] < 2:
        raise ValueError("a dendrogram needs at least 2 items")
    dist = 1.0 - (corr + corr.T) / 2.0
    np.maximum(dist, 0.0, out=dist)
    np.fill_diagonal(dist, 0.0)
    return linkage(squareform(dist, checks=False), method="average")
