"""Ranking metrics for multi-label probes, in numpy.

``average_precision`` follows scikit-learn's definition exactly (step-wise, no
interpolation, ties grouped by distinct score): AP = Σ_n (R_n − R_{n−1}) · P_n.
"""

from __future__ import annotations

import numpy as np


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """AP of one binary target; NaN when it has no positives (undefined, not zero)."""
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(y)[last_of_tie]
    precision = tps / (last_of_tie + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(y_true: np.ndarray, scores: np.ndarray,
                           labelled: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Macro mAP over columns that have at least one positive; also the per-column APs.

    ``labelled`` (bool, like ``y_true``): partial labels, as VAW's; each column's AP is then
    taken over the rows where that column is labelled (explicit positives and negatives only).
    """
    y_true = np.asarray(y_true)
    scores = np.asarray(scores)
    if labelled is None:
        per_column = np.array([average_precision(y_true[:, j], scores[:, j]) for j in range(y_true.shape[1])])
    else:
        labelled = np.asarray(labelled, dtype=bool)
        per_column = np.array([average_precision(y_true[labelled[:, j], j], scores[labelled[:, j], j])
                               for j in range(y_true.shape[1])])
    valid = ~np.isnan(per_column)
    if not valid.any():
        raise ValueError("no column has a positive example; mAP is undefined")
    return float(per_column[valid].mean()), per_column


def mean_recall_at_k(y_true: np.ndarray, probabilities: np.ndarray, labelled: np.ndarray | None = None,
                     *, k: int = 15, threshold: float = 0.5) -> float:
    """VAW's mR@15 as we read its evaluator: per row, the ``k`` highest-scoring attributes whose
    probability exceeds ``threshold`` are predicted; each attribute's recall is over its explicit
    positives; the mean is over attributes with a positive. NaN when none has one."""
    y = np.asarray(y_true).astype(bool)
    if labelled is not None:
        y = y & np.asarray(labelled, dtype=bool)
    p = np.asarray(probabilities, dtype=np.float64)
    top = np.zeros_like(y)
    if k > 0:
        idx = np.argsort(-p, axis=1, kind="stable")[:, :min(k, p.shape[1])]
        np.put_along_axis(top, idx, True, axis=1)
    predicted = top & (p > threshold)
    positives = y.sum(axis=0)
    hits = (predicted & y).sum(axis=0)
    valid = positives > 0
    return float(np.mean(hits[valid] / positives[valid])) if valid.any() else float("nan")
