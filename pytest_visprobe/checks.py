"""Verdicts: a metric against its threshold and the accepted baseline, with plain messages.

A message says what was obtained, what was expected, which direction is better, and where
the expectation comes from (so the reader knows which file or option to change).
"""

from __future__ import annotations

from dataclasses import dataclass

from .results import Metric
from .thresholds import Threshold


@dataclass(frozen=True)
class Verdict:
    passed: bool
    failures: tuple[str, ...]


def evaluate(
    metric: Metric,
    *,
    encoder: str,
    dataset: str,
    threshold: Threshold | None,
    baseline: float | None,
    baseline_source: str | None,
    tolerance: float,
) -> Verdict:
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
    if baseline is not None:
        bound = baseline - tolerance if higher else baseline + tolerance
        ok = metric.value >= bound if higher else metric.value <= bound
        if not ok:
            failures.append(
                f"{name}: obtained {metric.value:.4f}, baseline {baseline:.4f} "
                f"{'−' if higher else '+'} tolerance {tolerance:g} = {bound:.4f} ({direction}), from "
                f"{baseline_source}. If the change is intended, accept this run's scorecard.json as "
                f"the new baseline, or widen --visprobe-tolerance."
            )
    return Verdict(passed=not failures, failures=tuple(failures))
