"""What a probe returns, and the one place each metric's direction and bounds are declared.

Thresholds and baselines never restate direction: they look it up here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MetricSpec:
    probe: str
    metric: str
    higher_is_better: bool
    description: str
    lower: float | None = 0.0
    upper: float | None = 1.0


_METRICS: dict[tuple[str, str], MetricSpec] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    _METRICS[(spec.probe, spec.metric)] = spec
    return spec


def metric_spec(probe: str, metric: str) -> MetricSpec:
    """The declared spec; a did-you-mean error for names that do not exist."""
    try:
        return _METRICS[(probe, metric)]
    except KeyError:
        probes = sorted({p for p, _ in _METRICS})
        if probe not in probes:
            guess = difflib.get_close_matches(probe, probes, n=1)
            hint = f" Did you mean {guess[0]!r}?" if guess else ""
            raise KeyError(f"unknown probe {probe!r}.{hint} Known probes: {', '.join(probes)}.") from None
        metrics = sorted(m for p, m in _METRICS if p == probe)
        guess = difflib.get_close_matches(metric, metrics, n=1)
        hint = f" Did you mean {guess[0]!r}?" if guess else ""
        raise KeyError(
            f"probe {probe!r} has no metric {metric!r}.{hint} Its metrics: {', '.join(metrics)}."
        ) from None


def all_metric_specs() -> list[MetricSpec]:
    return list(_METRICS.values())


@dataclass(frozen=True)
class Metric:
    """One measured number. ``spread`` is a std over trials where the probe has trials."""

    probe: str
    metric: str
    value: float
    spread: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: per-test-sample scores whose mean is ``value`` (e.g. 0/1 correctness), in test-split order,
    #: where the metric is such a mean; used for bootstrap intervals and paired baseline checks.
    per_sample: Any = None
    #: ``(low, high)`` 95 % interval a probe computed itself, for metrics that are not a mean over
    #: samples (e.g. mAP); ignored when ``per_sample`` is given (the recorder bootstraps that).
    interval: tuple[float, float] | None = None

    @property
    def spec(self) -> MetricSpec:
        return metric_spec(self.probe, self.metric)


LABEL_TOP1 = register_metric(MetricSpec(
    "label_probe", "top1", True, "top-1 accuracy of a linear (multinomial logistic) probe on frozen embeddings"))
ATTRIBUTE_MAP = register_metric(MetricSpec(
    "attribute_probe", "mAP", True, "mean average precision of per-attribute logistic probes (multi-label)"))

# Controls (Hewitt & Liang-style): the real probe's score minus the same probe's score when it is
# trained on seeded, permuted train labels. A gap near 0 means the probe passes without the labels.
LABEL_SELECTIVITY = register_metric(MetricSpec(
    "label_probe", "selectivity", True,
    "top-1 minus the top-1 of the same probe trained on permuted train labels (control task)",
    lower=-1.0, upper=1.0))
ATTRIBUTE_SELECTIVITY = register_metric(MetricSpec(
    "attribute_probe", "selectivity", True,
    "mAP minus the mAP of the same probes trained on permuted train attribute rows (control task)",
    lower=-1.0, upper=1.0))
