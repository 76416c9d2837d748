"""Chance levels of classification metrics: what the best constant guess scores.

On imbalanced test sets 1/K understates chance (SVHN's largest class holds about 20 % of its
test images), so every probe that reports top-k accuracy shows the share of the test labels in
the k most frequent classes instead: a classifier that ignores its input can score exactly that.
"""

from __future__ import annotations

import numpy as np


def top_share(labels: np.ndarray, k: int = 1, n_classes: int | None = None) -> float:
    """Share of ``labels`` in the ``k`` most frequent classes: the best a constant top-k guess scores."""
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if labels.size == 0:
        raise ValueError("chance of an empty label set is undefined")
    counts = np.sort(np.bincount(labels, minlength=n_classes or 0))[::-1]
    return float(counts[:k].sum() / labels.size)


def majority_share(labels: np.ndarray) -> float:
    """The largest class's share of ``labels``: the accuracy of always guessing that class."""
    return top_share(labels, 1)
