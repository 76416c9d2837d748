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

# --- generalization probes (PROTOCOLS.md A): few-shot, clustering, representational similarity
#: Shot counts with a registered few-shot metric (``top1_<N>shot``); thresholds can name these.
FEWSHOT_SHOTS = (1, 5, 10)


def fewshot_metric(n_shot: int) -> str:
    """Metric name of N-shot top-1; registered on first use for N outside FEWSHOT_SHOTS."""
    name = f"top1_{n_shot}shot"
    if ("fewshot", name) not in _METRICS:
        register_metric(MetricSpec(
            "fewshot", name, True,
            f"nearest-prototype top-1 with {n_shot} training image(s) per class; mean over trials"))
    return name


for _n in FEWSHOT_SHOTS:
    fewshot_metric(_n)
CLUSTERING_GREEDY = register_metric(MetricSpec(
    "clustering", "greedy_accuracy", True,
    "spectral clustering (|cos| affinity, k = classes) scored by the study's greedy cluster-to-class matching"))
CLUSTERING_HUNGARIAN = register_metric(MetricSpec(
    "clustering", "hungarian_accuracy", True,
    "spectral clustering scored by the best one-to-one cluster-to-class matching (Hungarian)"))
CLUSTERING_NMI = register_metric(MetricSpec(
    "clustering", "nmi", True, "normalised mutual information between spectral clusters and labels"))
CLUSTERING_ARI = register_metric(MetricSpec(
    "clustering", "ari", True, "adjusted Rand index between spectral clusters and labels (0 = chance)",
    lower=-1.0))
SIMILARITY_LANGUAGE = register_metric(MetricSpec(
    "similarity", "rsa_language", True,
    "Pearson r between the encoder's Welch-t class RDM and a text model's RDM of 'a photo of {label}.'",
    lower=-1.0))
SIMILARITY_REFERENCE = register_metric(MetricSpec(
    "similarity", "rsa_reference", True,
    "Pearson r between the encoder's Welch-t class RDM and the reference encoder's (the first --encoder)",
    lower=-1.0))


for _probe, _kind in (("transformation_linear", "linear (multinomial logistic)"),
                      ("transformation_mlp", "one-hidden-layer MLP")):
    register_metric(MetricSpec(_probe, "fine_grained_top1", True,
                               f"top-1 of a {_kind} probe naming which transformation was applied"))
    register_metric(MetricSpec(_probe, "grouped_top1", True,
                               f"top-1 of a {_kind} probe naming the transformation's family"))
    register_metric(MetricSpec(_probe, "generalization_top1", True,
                               f"top-1 of a {_kind} family probe on transformations held out of its training"))
del _probe, _kind

SEGMENTATION_MIOU = register_metric(MetricSpec(
    "segmentation_probe", "mIoU", True,
    "mean IoU over classes and background of a linear 1x1-conv head on the frozen feature map"))
DETECTION_MAP = register_metric(MetricSpec(
    "detection_probe", "mAP", True, "COCO box mAP@[.5:.95] of a linear centre heat-map head on the feature map"))
DETECTION_AP50 = register_metric(MetricSpec(
    "detection_probe", "AP50", True, "COCO box AP at IoU 0.5 of a linear centre heat-map head on the feature map"))
INSTANCE_MASK_MAP = register_metric(MetricSpec(
    "instance_segmentation_probe", "mask_mAP", True,
    "COCO mask mAP@[.5:.95]: centre-head boxes filled with the segmentation head's class pixels"))
REGION_LABEL_TOP1 = register_metric(MetricSpec(
    "region_label_probe", "top1", True, "top-1 object label from RoI-pooled feature-map regions (ground-truth boxes)"))
REGION_ATTRIBUTE_MAP = register_metric(MetricSpec(
    "region_attribute_probe", "mAP", True, "attribute mAP from RoI-pooled feature-map regions (ground-truth boxes)"))

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
