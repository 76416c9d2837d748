"""What a probe saw, for its contact sheet (report/plots/sheets.py).

A probe puts an ``Examples`` on one of its metrics (``Metric.examples``): a score per test
image and a way to get its predictions for the few images drawn. It lives in memory only, while
the test runs: the recorder draws the sheet and the scorecard never holds images or predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np

Kind = Literal["label", "mask", "boxes", "regions", "transformation"]


@dataclass(frozen=True)
class Examples:
    """``scores[i]`` ranks test image ``i`` (NaN: not ranked); ``predict(rows)`` gives, per row,
    what the sheet draws as the prediction: a class index (label, transformation), a mask
    ``[H, W]`` (mask), ``(boxes [n, 4], labels [n])`` (boxes) or per-box class indices (regions).
    ``dataset`` is the data drawn from when it is not the probe's (the transformed views)."""

    kind: Kind
    scores: np.ndarray
    score: str  # what the score is, for the sheet's title
    predict: Callable[[np.ndarray], list[Any]]
    dataset: Any = None
