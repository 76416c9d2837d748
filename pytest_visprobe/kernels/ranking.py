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


def mean_average_precision(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray]:
    """Macro mAP over columns that have at least one positive; also the per-column APs."""
    y_true = np.asarray(y_true)
    scores = np.asarray(scores)
    per_column = np.array([average_precision(y_true[:, j], scores[:, j]) for j in range(y_true.shape[1])])
    valid = ~np.isnan(per_column)
    if not valid.any():
        raise ValueError("no column has a positive example; mAP is undefined")
    return float(per_column[valid].mean()), per_column
