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

    @property
    def spec(self) -> MetricSpec:
        return metric_spec(self.probe, self.metric)


LABEL_TOP1 = register_metric(MetricSpec(
    "label_probe", "top1", True, "top-1 accuracy of a linear (multinomial logistic) probe on frozen embeddings"))
ATTRIBUTE_MAP = register_metric(MetricSpec(
    "attribute_probe", "mAP", True, "mean average precision of per-attribute logistic probes (multi-label)"))

# RPGD robustness (probes/rpgd.py): a pair of metrics per norm and criterion, e.g.
# rpgd.linf_untargeted_success_auc. Attack success: lower is more robust; robust accuracy: higher.
for _norm in ("linf", "l2"):
    for _criterion in ("untargeted", "targeted"):
        register_metric(MetricSpec(
            "rpgd", f"{_norm}_{_criterion}_success_auc", False,
            f"area under the {_norm} {_criterion} PGD attack success rate vs ε (ε equally spaced by "
            "position; only images the clean classifier gets right are attacked); lower is more robust"))
        register_metric(MetricSpec(
            "rpgd", f"{_norm}_{_criterion}_robust_accuracy", True,
            f"accuracy of encoder + linear head under the {_norm} {_criterion} PGD attack at the "
            "profile's robust ε"))
