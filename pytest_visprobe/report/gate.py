"""Verdicts: a metric against its threshold and the accepted baseline, with plain messages.

A message says what was obtained, what was expected, which direction is better, and where
the expectation comes from (so the reader knows which file or option to change).

The baseline rule: a metric fails only when it is worse than the baseline by more than the
tolerance **and** by more than the noise explains.

1. Paired (``mcnemar``): when both runs kept per-sample 0/1 outcomes for the same samples (same
   sample key and count, and each bitset's mean equals its recorded value), the drop must also be
   significant by McNemar's exact test (two-sided p < 0.05): the samples that flipped from right
   to wrong are too many, against those that flipped the other way, to be chance.
2. Unpaired (``intervals``): otherwise, when 95 % intervals are known, the drop must exceed
   ``sqrt(h_base² + h_now²)`` — the half-width of the 95 % interval of a difference of two
   independent estimates, from each run's half-width. A baseline without an interval (written
   before intervals existed) is assumed to be as noisy as this run: ``sqrt(2) · h_now``.
3. Otherwise (``tolerance``): the tolerance alone decides, as before intervals existed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pytest_visprobe.probes.spec import Metric
from pytest_visprobe.report.scorecard import Comparison, Interval, Record, Samples
from pytest_visprobe.report.thresholds import Threshold
from pytest_visprobe.report.statistics import ALPHA, Bits, mcnemar_exact


@dataclass(frozen=True)
class Verdict:
    passed: bool
    failures: tuple[str, ...]
    comparison: Comparison | None = None


def evaluate(
    metric: Metric,
    *,
    encoder: str,
    dataset: str,
    threshold: Threshold | None,
    baseline: float | Record | None,
    baseline_source: str | None,
    tolerance: float,
    interval: Interval | None = None,
    samples: Samples | None = None,
) -> Verdict:
    """Threshold and baseline verdicts for one metric; ``baseline`` is the accepted record (or its value)."""
    spec = metric.spec
    higher = spec.higher_is_better
    direction = "higher is better" if higher else "lower is better"
    name = f"{encoder} · {metric.probe}.{metric.metric} on {dataset}"
    failures: list[str] = []
    if threshold is not None:
        ok = metric.value >= threshold.value if higher else metric.value <= threshold.value
        if not ok:
            failures.append(
                f"{name}: obtained {metric.value:.4f}, expected {'>=' if higher else '<='} "
                f"{threshold.value:.4f} ({direction}). The threshold is set in {threshold.source}; "
                f"change it there or pass --visprobe-thresholds FILE."
            )
    comparison = None
    if baseline is not None:
        record = baseline if isinstance(baseline, Record) else None
        base_value = record.value if record is not None else float(baseline)  # type: ignore[arg-type]
        comparison = compare(metric.value, higher, record, base_value, interval, samples)
        bound = base_value - tolerance if higher else base_value + tolerance
        beyond_tolerance = metric.value < bound if higher else metric.value > bound
        if beyond_tolerance and not explained_by_noise(comparison):
            failures.append(
                f"{name}: obtained {metric.value:.4f}, baseline {base_value:.4f} "
                f"{'−' if higher else '+'} tolerance {tolerance:g} = {bound:.4f} ({direction})"
                f"{noise_phrase(comparison)}, from {baseline_source}. If the change is intended, "
                f"re-run with --visprobe-bless to accept this run as the baseline, or widen "
                f"--visprobe-tolerance."
            )
    return Verdict(passed=not failures, failures=tuple(failures), comparison=comparison)


def compare(value: float, higher: bool, record: Record | None, base_value: float,
            interval: Interval | None, samples: Samples | None) -> Comparison:
    """Measure the drop and what the noise explains, by the most informative rule available."""
    drop = (base_value - value) if higher else (value - base_value)
    note = None
    if samples is not None and record is not None and record.samples is not None:
        paired, note = _paired(record, samples, value)
        if paired is not None:
            baseline_bits, current_bits = paired
            # for a lower-is-better 0/1 metric a sample "gets worse" when it flips 0 → 1
            if not higher:
                baseline_bits, current_bits = ~baseline_bits, ~current_bits
            test = mcnemar_exact(baseline_bits, current_bits)
            return Comparison(method="mcnemar", drop=drop, p_value=test.p_value, worse=test.worse,
                              better=test.better)
    elif samples is not None and record is not None:
        note = "the baseline kept no per-sample outcomes"
    if interval is not None:
        base_half = record.interval.half_width if record is not None and record.interval is not None else None
        now_half = interval.half_width
        noise = math.hypot(base_half, now_half) if base_half is not None else math.sqrt(2) * now_half
        return Comparison(method="intervals", drop=drop, noise=noise, note=note)
    return Comparison(method="tolerance", drop=drop, note=note)


def _paired(record: Record, samples: Samples, value: float) -> tuple[tuple[np.ndarray, np.ndarray] | None, str | None]:
    base = record.samples
    assert base is not None
    if (base.key, base.n, base.split) != (samples.key, samples.n, samples.split):
        return None, "the baseline saw other samples (dataset, split or count differ)"
    try:
        baseline_bits = Bits(base.n, base.bits).to_array()
    except ValueError as exc:
        return None, f"the baseline's per-sample record is unreadable ({exc})"
    current_bits = Bits(samples.n, samples.bits).to_array()
    if abs(baseline_bits.mean() - record.value) > 1e-6 or abs(current_bits.mean() - value) > 1e-6:
        return None, "a per-sample record does not match its value (edited by hand?)"
    return (baseline_bits, current_bits), None


def explained_by_noise(comparison: Comparison) -> bool:
    if comparison.method == "mcnemar":
        assert comparison.p_value is not None
        return comparison.p_value >= ALPHA
    if comparison.method == "intervals":
        assert comparison.noise is not None
        return comparison.drop <= comparison.noise
    return False


def noise_phrase(comparison: Comparison) -> str:
    """How the drop compares with the noise, for a failure message."""
    if comparison.method == "mcnemar":
        return (f", and beyond the noise: McNemar exact p = {comparison.p_value:.2g} < {ALPHA} "
                f"({comparison.worse} samples newly wrong, {comparison.better} newly right)")
    if comparison.method == "intervals":
        return (f", and beyond the noise: drop {comparison.drop:.4f} > {comparison.noise:.4f} "
                f"explained by the 95 % intervals")
    return ""
