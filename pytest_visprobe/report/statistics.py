"""How much of a number is noise: bootstrap intervals, compact per-sample records, paired tests.

Rules (the scorecard and the baseline check rely on them):

- **Interval**: percentile bootstrap over test samples, ``RESAMPLES`` (1,000) resamples at 95 %,
  via ``scipy.stats.bootstrap``. The generator is seeded from the session seed *and* the record's
  key, so an interval never depends on the order tests ran in (``-n 2`` equals serial).
- **Per-sample record**: where a metric's per-sample scores are all 0/1 (accuracy), the scorecard
  keeps them as a base64 bitset with the sample count and a hash naming the samples, so a later
  run can be compared sample by sample.
- **Paired test**: McNemar's exact test — under "no change", the discordant samples (right in one
  run, wrong in the other) split as Binomial(n_discordant, ½); two-sided p-value.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95
ALPHA = 0.05  # significance of the paired test (matches the 95 % intervals)


def seed_for(seed: int, *key: str) -> np.random.Generator:
    """A generator that depends only on the session seed and the record's key."""
    digest = hashlib.blake2b("|".join(key).encode(), digest_size=8).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little")])


def percentile_interval(draws, level: float = LEVEL, axis: int | None = None):
    """The central ``level`` percentile interval of bootstrap draws: ``(low, high)`` floats, or
    with ``axis`` the two arrays of bounds along it."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(np.asarray(draws), [tail, 100 - tail], axis=axis)
    return (float(low), float(high)) if axis is None else (low, high)


def bootstrap_interval(
    data: Sequence[np.ndarray] | np.ndarray,
    statistic: Callable[..., float] | None = None,
    *,
    rng: np.random.Generator,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over the rows of ``data`` (mean by default).

    ``data`` is one array, or a sequence of arrays resampled together (paired rows, e.g. targets
    and scores for mAP). A constant sample gives the degenerate interval ``[v, v]``.
    """
    from scipy.stats import bootstrap

    arrays = (np.asarray(data),) if isinstance(data, np.ndarray) else tuple(np.asarray(a) for a in data)
    n = arrays[0].shape[0]
    if statistic is None:
        values = arrays[0].astype(np.float64)
        if n == 0:
            raise ValueError("no samples to bootstrap")
        if np.all(values == values[0]):
            return float(values[0]), float(values[0])
        result = bootstrap((values,), np.mean, n_resamples=resamples, confidence_level=level,
                           method="percentile", vectorized=True, axis=-1, rng=rng,
                           batch=max(1, min(resamples, 20_000_000 // max(n, 1))))
    else:
        # rows of several arrays resampled together; scipy's paired mode takes only 1-D data
        draws = []
        for _ in range(resamples):
            rows = rng.integers(0, n, n)
            try:
                draws.append(float(statistic(*(a[rows] for a in arrays))))
            except ValueError:  # undefined on this resample (e.g. no positive in any column)
                continue
        if len(draws) < resamples // 2:
            raise ValueError("the statistic is undefined on most resamples")
        return percentile_interval(draws, level)
    low, high = result.confidence_interval
    return float(low), float(high)


# --------------------------------------------------------------------------- per-sample bitsets


@dataclass(frozen=True)
class Bits:
    """0/1 per-sample outcomes, compact: ``n`` samples, base64 of ``np.packbits`` (8 per byte)."""

    n: int
    packed: str

    @classmethod
    def from_array(cls, values: np.ndarray) -> "Bits":
        flags = np.asarray(values).astype(bool).ravel()
        return cls(n=int(flags.size), packed=base64.b64encode(np.packbits(flags).tobytes()).decode("ascii"))

    def to_array(self) -> np.ndarray:
        raw = np.frombuffer(base64.b64decode(self.packed.encode("ascii"), validate=True), dtype=np.uint8)
        if raw.size != (self.n + 7) // 8:
            raise ValueError(f"bitset holds {raw.size} bytes for {self.n} samples")
        return np.unpackbits(raw, count=self.n).astype(bool)


def is_binary(values: np.ndarray) -> bool:
    values = np.asarray(values)
    return values.size > 0 and bool(np.all((values == 0) | (values == 1)))


def samples_key(dataset_fingerprint: str, split: str, n: int) -> str:
    """Names which samples, in which order: the dataset's content hash, the split and the count."""
    return hashlib.blake2b(f"{dataset_fingerprint}|{split}|{n}".encode(), digest_size=8).hexdigest()


# --------------------------------------------------------------------------- paired comparison


@dataclass(frozen=True)
class McNemar:
    n: int  # paired samples
    worse: int  # right in the baseline, wrong now
    better: int  # wrong in the baseline, right now
    p_value: float  # exact, two-sided


def mcnemar_exact(baseline: np.ndarray, current: np.ndarray) -> McNemar:
    """McNemar's exact test on paired 0/1 outcomes (a two-sided binomial test on the discordant pairs)."""
    from scipy.stats import binomtest

    baseline = np.asarray(baseline, dtype=bool)
    current = np.asarray(current, dtype=bool)
    if baseline.shape != current.shape:
        raise ValueError(f"paired outcomes differ in length: {baseline.shape} vs {current.shape}")
    worse = int(np.sum(baseline & ~current))
    better = int(np.sum(~baseline & current))
    p = 1.0 if worse + better == 0 else float(binomtest(better, worse + better, 0.5).pvalue)
    return McNemar(n=int(baseline.size), worse=worse, better=better, p_value=p)


# --------------------------------------------------------------------------- mAP, vectorised


def map_bootstrap_interval(
    y_true: np.ndarray, scores: np.ndarray, *, rng: np.random.Generator, resamples: int = RESAMPLES,
    level: float = LEVEL, chunk: int = 64, labelled: np.ndarray | None = None,
    control_scores: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of macro mAP (ranking.mean_average_precision) over test rows,
    or with ``control_scores`` of the paired difference mAP(scores) − mAP(control_scores), both
    scored on the same resampled rows (the attribute probe's selectivity).

    The hot path of the attribute probe's interval: each column is sorted once, and a resample
    is a row of multiplicities, so AP over a resample is a weighted cumulative sum — identical to
    AP on the resampled rows (duplicates tie with themselves), without re-sorting per resample.
    ``benchmarks/bench_bootstrap.py`` measures it against calling mean_average_precision per resample.
    ``labelled``: partial labels (VAW), as in mean_average_precision.
    """
    y = np.asarray(y_true).astype(bool)
    n = y.shape[0]
    draws = []
    for start in range(0, resamples, chunk):
        rows = rng.integers(0, n, (min(chunk, resamples - start), n))
        draw = map_of_resamples(y, scores, rows, labelled)
        if control_scores is not None:
            draw = draw - map_of_resamples(y, control_scores, rows, labelled)
        draws.append(draw)
    values = np.concatenate(draws)
    values = values[~np.isnan(values)]
    if values.size < resamples // 2:
        raise ValueError("mAP is undefined on most resamples (too few positives)")
    return percentile_interval(values, level)


def map_of_resamples(y_true: np.ndarray, scores: np.ndarray, rows: np.ndarray,
                     labelled: np.ndarray | None = None) -> np.ndarray:
    """Macro mAP of each resample ``rows[b]`` (row indices); NaN where no column has a positive.
    ``labelled``: each column counts only its labelled rows (weight 0 elsewhere)."""
    y = np.asarray(y_true).astype(bool)
    known = None if labelled is None else np.asarray(labelled, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n, k = y.shape
    b = rows.shape[0]
    flat = (rows + np.arange(b)[:, None] * n).ravel()
    weights = np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)
    total = np.zeros(b)
    columns = np.zeros(b)
    for j in range(k):
        order = np.argsort(-s[:, j], kind="mergesort")
        sorted_scores = s[order, j]
        ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), n - 1]
        w = weights[:, order] if known is None else weights[:, order] * known[order, j]
        tp = np.cumsum(w * y[order, j], axis=1)[:, ends]
        seen = np.cumsum(w, axis=1)[:, ends]
        positives = tp[:, -1]
        gained = np.diff(tp, axis=1, prepend=0.0)
        precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
        ap = np.divide((gained * precision).sum(axis=1), positives, out=np.zeros(b), where=positives > 0)
        total += ap
        columns += positives > 0
    return np.divide(total, columns, out=np.full(b, np.nan), where=columns > 0)
