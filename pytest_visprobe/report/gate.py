"""Verdicts: a metric against its threshold and the accepted baseline, with plain messages.

A message says what was obtained, what was expected, which direction is better, and where
the expectation comes from (so the reader knows which file or option to change).

The baseline rule: a metric fails only when it is worse than the baseline by more than the
tolerance **and** by more than the noise explains.

Only comparable records are compared at all (report/comparability.py: same data, probe
version, settings and derived data); the recorder fails the test, naming the differences,
before this module is asked.

1. Paired bootstrap (``paired_bootstrap``): when both runs kept per-unit statistics of the same
   units (same key, count and statistic; report/units.py), the same bootstrap resamples of the
   units are applied to both, and the drop must be significant: its 95 % percentile interval
   excludes zero (two-sided p < 0.05). This is the test for clustered units (views of one source
   image, regions of one image) and for statistics that are not means (mIoU, NMI, ARI). Where
   the statistic is additive over units (a mean, or a pooled ratio with the same weights in both
   runs) the p-value comes from the paired sign-flip test instead (``paired_sign_flip``): exact
   when nothing changed, where the percentile bootstrap was measured liberal with few units
   (72 source images: 7.9 % false alarms at a nominal 5 %).
2. Paired (``mcnemar``): when both runs kept per-sample 0/1 outcomes for the same independent
   samples (same sample key and count, and each bitset's mean equals its recorded value), the
   drop must be significant by McNemar's exact test (two-sided p < 0.05).
3. Unpaired (``intervals``): otherwise, when 95 % intervals are known, the drop must exceed
   ``sqrt(h_base² + h_now²)`` — the half-width of the 95 % interval of a difference of two
   independent estimates, from each run's half-width. A baseline without an interval (written
   before intervals existed) is assumed to be as noisy as this run: ``sqrt(2) · h_now``.
4. Otherwise (``tolerance``): the tolerance alone decides, as before intervals existed.
   Why no paired test was possible is recorded in the comparison's ``note``.

Thresholds are asserted on the point value, or with ``--visprobe-threshold-on=bound`` on the
95 % interval's lower bound (upper for lower-is-better metrics): a metric only luckily above
its floor then fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pytest_visprobe.probes.spec import Metric
from pytest_visprobe.report.scorecard import Comparison, Interval, Record, Samples, Units
from pytest_visprobe.report.thresholds import Threshold
from pytest_visprobe.report.statistics import ALPHA, RESAMPLES, Bits, mcnemar_exact, seed_for


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
    units: Units | None = None,
    threshold_on: str = "value",
    seed: int = 0,
    resamples: int = RESAMPLES,
    level: float = 0.95,
) -> Verdict:
    """Threshold and baseline verdicts for one metric; ``baseline`` is the accepted record (or its value)."""
    spec = metric.spec
    higher = spec.higher_is_better
    direction = "higher is better" if higher else "lower is better"
    name = f"{encoder} · {metric.probe}.{metric.metric} on {dataset}"
    failures: list[str] = []
    if threshold is not None:
        tested, what = metric.value, f"obtained {metric.value:.4f}"
        if threshold_on == "bound" and interval is not None:
            tested = interval.low if higher else interval.high
            what = (f"the 95 % interval's {'lower' if higher else 'upper'} bound is {tested:.4f} "
                    f"(value {metric.value:.4f}; --visprobe-threshold-on=bound)")
        elif threshold_on == "bound":
            what += " (no interval for this metric, so the point value is asserted)"
        ok = tested >= threshold.value if higher else tested <= threshold.value
        if not ok:
            failures.append(
                f"{name}: {what}, expected {'>=' if higher else '<='} "
                f"{threshold.value:.4f} ({direction}). The threshold is set in {threshold.source}; "
                f"change it there or pass --visprobe-thresholds FILE."
            )
    comparison = None
    if baseline is not None:
        record = baseline if isinstance(baseline, Record) else None
        base_value = record.value if record is not None else float(baseline)  # type: ignore[arg-type]
        rng_key = (encoder, metric.probe, dataset, metric.metric, "paired")
        comparison = compare(metric.value, higher, record, base_value, interval, samples, units,
                             rng=seed_for(seed, *rng_key), resamples=resamples, level=level)
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
            interval: Interval | None, samples: Samples | None, units: Units | None = None, *,
            rng: np.random.Generator | None = None, resamples: int = RESAMPLES,
            level: float = 0.95) -> Comparison:
    """Measure the drop and what the noise explains, by the most informative rule available."""
    drop = (base_value - value) if higher else (value - base_value)
    note = None
    if units is not None and record is not None:
        if record.units is None:
            note = "the baseline kept no per-unit statistics"
        else:
            paired, note = _paired_units(record, units, value)
            if paired is not None:
                from pytest_visprobe.report.units import paired_bootstrap

                result = paired_bootstrap(paired[0], paired[1], higher_is_better=higher,
                                          rng=rng if rng is not None else np.random.default_rng(0),
                                          resamples=resamples, level=level)
                method = "paired_sign_flip" if result.test == "sign-flip" else "paired_bootstrap"
                blind, smallest_p = None, 2.0 ** (1 - units.n)  # both all-equal sign patterns
                if method == "paired_sign_flip" and smallest_p >= ALPHA:
                    blind = (f"only {units.n} {units.unit}s: no sign pattern of so few gives p < {ALPHA} (the "
                             f"smallest possible p is {smallest_p:.3g}), so no drop can be called "
                             f"significant here; more {units.unit}s would make this metric gateable")
                return Comparison(method=method, drop=drop, drop_low=result.low,
                                  drop_high=result.high, p_value=result.p_value, unit=units.unit, note=blind)
    elif samples is not None and record is not None and record.samples is not None:
        paired, note = _paired(record, samples, value)
        if paired is not None:
            baseline_bits, current_bits = paired
            # for a lower-is-better 0/1 metric a sample "gets worse" when it flips 0 → 1
            if not higher:
                baseline_bits, current_bits = ~baseline_bits, ~current_bits
            test = mcnemar_exact(baseline_bits, current_bits)
            return Comparison(method="mcnemar", drop=drop, p_value=test.p_value, worse=test.worse,
                              better=test.better, unit=f"{samples.split} sample")
    elif samples is not None and record is not None:
        note = "the baseline kept no per-sample outcomes"
    if interval is not None:
        if note is None and record is not None:
            note = "no per-sample or per-unit statistics to pair"
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


def _paired_units(record: Record, units: Units, value: float):
    """The baseline's and this run's unit statistics, if they describe the same units."""
    from pytest_visprobe.report.units import UnitStats, decode_array

    base = record.units
    assert base is not None
    if (base.key, base.n, base.split) != (units.key, units.n, units.split):
        return None, "the baseline saw other units (dataset, split or count differ)"
    if base.statistic != units.statistic:
        return None, f"the baseline's statistic is {base.statistic}, this run's {units.statistic}"
    if base.columns != units.columns:
        return None, (f"the baseline resampled {base.unit}s" + (f" and {base.columns}s" if base.columns else "")
                      + f", this run {units.unit}s" + (f" and {units.columns}s" if units.columns else ""))
    try:
        baseline = UnitStats(base.statistic, base.unit, {k: decode_array(a) for k, a in base.arrays.items()},
                             columns=base.columns)
        current = UnitStats(units.statistic, units.unit, {k: decode_array(a) for k, a in units.arrays.items()},
                            columns=units.columns)
        if baseline.n_columns != current.n_columns:
            return None, f"the baseline has {baseline.n_columns} {base.columns}s, this run {current.n_columns}"
        consistent = (abs(baseline.value() - record.value) <= 1e-6 * max(1.0, abs(record.value))
                      and abs(current.value() - value) <= 1e-6 * max(1.0, abs(value)))
    except (ValueError, TypeError, KeyError) as exc:
        return None, f"the baseline's per-unit statistics are unreadable ({exc})"
    if not consistent:
        return None, "per-unit statistics do not reproduce their value (edited by hand?)"
    return (baseline, current), None


def explained_by_noise(comparison: Comparison) -> bool:
    if comparison.method in ("paired_bootstrap", "paired_sign_flip"):
        assert comparison.p_value is not None
        return comparison.p_value >= ALPHA
    if comparison.method == "mcnemar":
        assert comparison.p_value is not None
        return comparison.p_value >= ALPHA
    if comparison.method == "intervals":
        assert comparison.noise is not None
        return comparison.drop <= comparison.noise
    return False


def noise_phrase(comparison: Comparison) -> str:
    """How the drop compares with the noise, for a failure message."""
    if comparison.method in ("paired_bootstrap", "paired_sign_flip"):
        test = "sign-flip test" if comparison.method == "paired_sign_flip" else "bootstrap"
        return (f", and beyond the noise: paired over {comparison.unit}s, drop 95 % interval "
                f"[{comparison.drop_low:.4f}, {comparison.drop_high:.4f}] (bootstrap), {test} "
                f"p = {comparison.p_value:.2g} < {ALPHA}")
    if comparison.method == "mcnemar":
        return (f", and beyond the noise: McNemar exact p = {comparison.p_value:.2g} < {ALPHA} "
                f"({comparison.worse} samples newly wrong, {comparison.better} newly right)")
    if comparison.method == "intervals":
        return (f", and beyond the noise: drop {comparison.drop:.4f} > {comparison.noise:.4f} "
                f"explained by the 95 % intervals")
    return ""
