"""Per-unit statistics: the uncertainty of a metric that is not a plain mean, and paired tests.

A metric whose value is a function of independent *units* (test images for mIoU, source images
for transformation views, samples for NMI with the partition fixed) hands the recorder a
``UnitStats``: one row per unit, and the name of a registered statistic that recomputes the
metric from any set of rows. Resampling the rows gives a percentile bootstrap interval; the
same resamples applied to a baseline's rows of the *same units* give a paired bootstrap of the
difference, which is what the gate tests (its p-value from a sign-flip test where the statistic
is additive over units). The rows are kept in the scorecard (compact base64
arrays), so a later run can pair with them.

Statistics are registered by name (``STATISTICS``) because the scorecard stores the name: a
baseline's rows are recomputed by the same function in a later version.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from pytest_visprobe.registry import Registry
from pytest_visprobe.report.statistics import percentile_interval

Statistic = Callable[..., float]

STATISTICS: Registry[Statistic] = Registry("unit statistic")


def statistic(name: str) -> Callable[[Statistic], Statistic]:
    def register(function: Statistic) -> Statistic:
        STATISTICS.register(name, function)
        return function
    return register


@statistic("mean")
def _mean(value: np.ndarray) -> float:
    """Mean of per-unit scores (accuracy over independent samples)."""
    return float(np.mean(value))


@statistic("ratio")
def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> float:
    """Pooled ratio over clustered units: e.g. correct views / views, per source image."""
    total = float(np.sum(denominator))
    if total <= 0:
        raise ValueError("no scored items in this resample")
    return float(np.sum(numerator)) / total


@statistic("miou")
def _miou(intersection: np.ndarray, union: np.ndarray) -> float:
    """Dataset-level mIoU from per-image pixel counts per class; classes with no union left out."""
    inter = np.sum(intersection, axis=0, dtype=np.float64)
    union_total = np.sum(union, axis=0, dtype=np.float64)
    present = union_total > 0
    if not present.any():
        raise ValueError("no class present in this resample")
    return float(np.mean(inter[present] / union_total[present]))


def _contingency(labels: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    from pytest_visprobe.kernels.clustering import contingency

    return contingency(labels, clusters)[0].astype(np.float64)


@statistic("nmi")
def _nmi(labels: np.ndarray, clusters: np.ndarray) -> float:
    """scikit-learn's normalized_mutual_info_score (arithmetic mean), from the contingency table:
    sklearn's own call costs ~1 ms in argument checks, times 1,000 resamples per metric."""
    table = _contingency(labels, clusters)
    if table.shape[0] == table.shape[1] == 1:
        return 1.0
    n = table.sum()
    p = table / n
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    mi = float(np.sum(p[nz] * (np.log(p[nz]) - np.log(np.outer(rows, cols)[nz]))))
    h_rows = -float(np.sum(rows[rows > 0] * np.log(rows[rows > 0])))
    h_cols = -float(np.sum(cols[cols > 0] * np.log(cols[cols > 0])))
    mean = (h_rows + h_cols) / 2
    return 0.0 if mean <= 0 or mi <= 0 else mi / max(mean, np.finfo(np.float64).eps)


@statistic("ari")
def _ari(labels: np.ndarray, clusters: np.ndarray) -> float:
    """scikit-learn's adjusted_rand_score, from its pair confusion matrix (same formula)."""
    table = _contingency(labels, clusters)
    n = table.sum()
    sum_squares = float((table ** 2).sum())
    tp = sum_squares - n
    fp = float(table.dot(table.sum(axis=0)).sum()) - sum_squares
    fn = float(table.T.dot(table.sum(axis=1)).sum()) - sum_squares
    tn = n ** 2 - fp - fn - sum_squares
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


@statistic("greedy_accuracy")
def _greedy(labels: np.ndarray, clusters: np.ndarray) -> float:
    from pytest_visprobe.kernels.clustering import greedy_match_accuracy

    return greedy_match_accuracy(labels, clusters)


@statistic("hungarian_accuracy")
def _hungarian(labels: np.ndarray, clusters: np.ndarray) -> float:
    from pytest_visprobe.kernels.clustering import hungarian_match_accuracy

    return hungarian_match_accuracy(labels, clusters)


def _coco(thresholds):
    def statistic(score: np.ndarray, category: np.ndarray, matched: np.ndarray, gt_count: np.ndarray,
                  ignored: np.ndarray | None = None) -> float:
        from pytest_visprobe.kernels.coco_matches import average_precision

        return average_precision(score, category, matched, gt_count, ignored, thresholds)
    statistic.__doc__ = ("COCO AP from per-image match rows (kernels/coco_matches.py): COCOeval.accumulate "
                         "re-run on the resampled images.")
    return statistic


# IoU-threshold indices into kernels.coco_matches.IOU_THRESHOLDS: all, 0.5, 0.75
for _name, _thresholds in (("coco_map", slice(None)), ("coco_ap50", 0), ("coco_ap75", 5)):
    STATISTICS.register(_name, _coco(_thresholds))


@dataclass(frozen=True)
class UnitStats:
    """Rows of per-unit statistics (one row per independent unit, all arrays the same length).

    ``unit`` says what a row is, for the reader ("test image", "source image"); ``note`` says
    what the resampling holds fixed, where that matters (e.g. "partition fixed"). ``columns``
    names a second, crossed unit along every array's second axis (e.g. "support set" for
    few-shot trials): rows and columns are then resampled together (a two-way bootstrap, which
    counts the row × column interaction twice and so errs wide).
    """

    statistic: str
    unit: str
    arrays: Mapping[str, np.ndarray]
    note: str | None = None
    split: str = "test"
    columns: str | None = None
    n: int = field(init=False)
    n_columns: int = field(init=False)

    def __post_init__(self) -> None:
        shapes = {name: np.shape(a) for name, a in self.arrays.items()}
        if not shapes or any(not s for s in shapes.values()) or len({s[0] for s in shapes.values()}) != 1:
            raise ValueError(f"unit arrays must be non-empty and of one length, got {shapes}")
        n_columns = 1
        if self.columns is not None:
            if any(len(s) < 2 for s in shapes.values()) or len({s[1] for s in shapes.values()}) != 1:
                raise ValueError(f"crossed unit arrays ({self.columns}) must share their second axis, got {shapes}")
            n_columns = next(iter(shapes.values()))[1]
        STATISTICS.get(self.statistic)  # an unknown name fails here, with did-you-mean
        object.__setattr__(self, "n", next(iter(shapes.values()))[0])
        object.__setattr__(self, "n_columns", n_columns)

    def value(self, rows: np.ndarray | None = None, columns: np.ndarray | None = None) -> float:
        function = STATISTICS.get(self.statistic)
        arrays = {k: np.asarray(a) for k, a in self.arrays.items()}
        if rows is not None:
            arrays = {k: a[rows] for k, a in arrays.items()}
        if columns is not None:
            arrays = {k: a[:, columns] for k, a in arrays.items()}
        return function(**arrays)


def clustered(scores: np.ndarray, clusters: np.ndarray, unit: str, note: str | None = None) -> UnitStats:
    """Per-item scores grouped into their independent units (e.g. views by source image): one row
    per unit holding the scores' sum and count, so a resample of units recomputes the pooled mean."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    ids, inverse = np.unique(np.asarray(clusters).ravel(), return_inverse=True)
    if ids.size and inverse.size != scores.size:
        raise ValueError(f"{scores.size} scores but {inverse.size} cluster ids")
    numerator = np.bincount(inverse, weights=scores, minlength=ids.size)
    denominator = np.bincount(inverse, minlength=ids.size)
    return UnitStats("ratio", unit, {"numerator": numerator, "denominator": denominator}, note=note)


def resample_rows(n: int, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """Row indices of ``resamples`` bootstrap resamples of ``n`` units, drawn once (paired use)."""
    return rng.integers(0, n, (resamples, n))


def _resamples(stats: UnitStats, rng: np.random.Generator, resamples: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows, and columns for crossed units, of ``resamples`` bootstrap resamples."""
    rows = resample_rows(stats.n, rng, resamples)
    columns = resample_rows(stats.n_columns, rng, resamples) if stats.columns is not None else None
    return rows, columns


def _draws(stats: UnitStats, rows: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
    out = np.full(rows.shape[0], np.nan)
    for b, r in enumerate(rows):
        try:
            out[b] = stats.value(r, None if columns is None else columns[b])
        except ValueError:  # undefined on this resample (e.g. a class absent): left out
            continue
    return out


def interval(stats: UnitStats, rng: np.random.Generator, resamples: int, level: float) -> tuple[float, float]:
    """Percentile bootstrap interval of the statistic over units (and crossed columns)."""
    draws = _draws(stats, *_resamples(stats, rng, resamples))
    draws = draws[~np.isnan(draws)]
    if draws.size < resamples // 2:
        raise ValueError(f"{stats.statistic} is undefined on most resamples of {stats.n} {stats.unit}s")
    return percentile_interval(draws, level)


@dataclass(frozen=True)
class PairedResult:
    drop: float  # how much worse now (positive: worse), from the full rows
    low: float  # percentile interval of the drop
    high: float
    p_value: float  # two-sided
    resamples: int
    test: str = "bootstrap"  # what gave the p-value: "bootstrap" or "sign-flip"


#: statistics whose drop is a sum of per-unit differences (score column, weight column that
#: must be equal in both runs); their p-value comes from the sign-flip test
_ADDITIVE = {"mean": ("value", None), "ratio": ("numerator", "denominator")}
#: up to this many non-zero differences the sign-flip distribution is enumerated exactly
EXACT_SIGN_FLIPS = 16


def paired_bootstrap(baseline: UnitStats, current: UnitStats, *, higher_is_better: bool,
                     rng: np.random.Generator, resamples: int, level: float) -> PairedResult:
    """Paired bootstrap of the drop: the same resampled units for both runs.

    The interval is the percentile interval of the resampled drops. The p-value, for an additive
    statistic (a mean, or a pooled ratio with the same weights in both runs), is the sign-flip
    test's (``sign_flip_p``): exact under "nothing changed" (each unit's two rows exchangeable),
    where the bootstrap's percentile p is liberal with few units (measured by
    benchmarks/bench_gate_error_rates.py). Otherwise it is twice the smaller share of resampled
    drops on either side of zero (the percentile interval inverted), at least 1 / (resamples + 1).
    """
    if ((baseline.n, baseline.columns, baseline.n_columns, baseline.statistic)
            != (current.n, current.columns, current.n_columns, current.statistic)):
        raise ValueError("paired statistics need the same units and the same statistic")
    sign = 1.0 if higher_is_better else -1.0
    rows, columns = _resamples(current, rng, resamples)
    diffs = sign * (_draws(baseline, rows, columns) - _draws(current, rows, columns))
    diffs = diffs[~np.isnan(diffs)]
    if diffs.size < resamples // 2:
        raise ValueError(f"{current.statistic} is undefined on most resamples")
    low, high = percentile_interval(diffs, level)
    drop = sign * (baseline.value() - current.value())
    differences = unit_differences(baseline, current)
    if differences is not None:
        return PairedResult(drop=float(drop), low=float(low), high=float(high), resamples=int(diffs.size),
                            p_value=sign_flip_p(differences, rng, resamples), test="sign-flip")
    p = 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0))
    p = float(min(1.0, max(p, 1.0 / (diffs.size + 1))))
    return PairedResult(drop=float(drop), low=float(low), high=float(high), p_value=p, resamples=int(diffs.size))


def unit_differences(baseline: UnitStats, current: UnitStats) -> np.ndarray | None:
    """Per-unit score differences (baseline − current) when the drop is their sum over shared
    weights; None for other statistics, crossed units, or weights that differ between runs."""
    if baseline.columns is not None or baseline.statistic not in _ADDITIVE:
        return None
    score, weight = _ADDITIVE[baseline.statistic]
    if weight is not None and not np.array_equal(baseline.arrays[weight], current.arrays[weight]):
        return None
    return np.asarray(baseline.arrays[score], np.float64) - np.asarray(current.arrays[score], np.float64)


def sign_flip_p(differences: np.ndarray, rng: np.random.Generator, resamples: int) -> float:
    """Two-sided p of the paired sign-flip (randomisation) test of ``sum(differences) == 0``.

    Under the null each unit's difference is as likely negative as positive, so the observed
    sum is compared with the sums of the differences under every sign pattern: enumerated
    exactly up to ``EXACT_SIGN_FLIPS`` non-zero differences, else ``resamples`` random patterns
    (p = (1 + hits) / (resamples + 1), valid for a finite number of draws).
    """
    d = np.asarray(differences, np.float64).ravel()
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    observed = abs(d.sum())
    slack = 1e-9 * float(np.abs(d).sum())  # ties with the observed sum count as at least as extreme
    if d.size <= EXACT_SIGN_FLIPS:
        signs = ((np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1) * 2.0 - 1.0
        return float(np.mean(np.abs(signs @ d) >= observed - slack))
    hits = 0
    for start in range(0, resamples, 256):  # bounded memory for many units
        signs = rng.integers(0, 2, (min(256, resamples - start), d.size)) * 2.0 - 1.0
        hits += int(np.count_nonzero(np.abs(signs @ d) >= observed - slack))
    return float((1 + hits) / (resamples + 1))


# --------------------------------------------------------------------------- compact storage


#: dtypes a caller may choose for smaller scorecards; kept as given (lossless for what it chose)
COMPACT_DTYPES = ("<f4", "|u1", "|i1", "<u2", "<i2")


def encode_array(array: np.ndarray) -> dict:
    """A numpy array as JSON: dtype, shape and base64 of its little-endian bytes.

    float64 and int32/int64 by default; an array already in one of ``COMPACT_DTYPES`` (e.g.
    float32 scores, uint8 counts) is stored as it is.
    """
    a = np.ascontiguousarray(array)
    if a.dtype.str in COMPACT_DTYPES:
        pass
    elif a.dtype.kind == "f":
        a = a.astype("<f8")
    elif a.dtype.kind == "b":
        a = a.astype("|u1")  # 0/1 outcomes: a byte each
    elif a.dtype.kind in "iu":
        a = a.astype("<i8") if a.size and (a.min() < -2**31 or a.max() >= 2**31) else a.astype("<i4")
    else:
        raise TypeError(f"cannot store {a.dtype} unit statistics")
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode("ascii")}


def decode_array(stored: Mapping) -> np.ndarray:
    raw = base64.b64decode(str(stored["data"]).encode("ascii"), validate=True)
    dtype = np.dtype(str(stored["dtype"]))
    if dtype.str not in ("<f8", "<i4", "<i8", *COMPACT_DTYPES):
        raise ValueError(f"unexpected dtype {dtype.str}")
    shape = tuple(int(s) for s in stored["shape"])
    array = np.frombuffer(raw, dtype=dtype)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{array.size} values stored for shape {shape}")
    return array.reshape(shape)
