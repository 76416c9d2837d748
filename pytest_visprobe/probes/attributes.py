"""Attribute probe: which attributes (colour, size, texture, ...) does the embedding keep?

Independent logistic regressions per attribute on cached features, scored by macro mAP on the
test split, with the same control task as the label probe (train attribute rows permuted
across images) reported as ``selectivity``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from pytest_visprobe.probes.heads import LinearProbeConfig
from pytest_visprobe.probes.label import permuted_targets, selectivity
from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    import numpy as np
    import torch

    from pytest_visprobe.runner.context import ProbeContext

CHANCE_POSITIVE_RATE = "mean positive rate of the attributes present in test (the mAP of random scores)"


class AttributeDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weight_decay: float | None = None
    per_attribute_ap: dict[str, float | None] | None = None
    n_train: int | None = None
    n_test: int | None = None
    measured: float | None = None
    control: float | None = None
    control_task: str | None = None


def attribute_map(train_x: "torch.Tensor", train_a: "np.ndarray", test_x: "torch.Tensor", test_a: "np.ndarray",
                  *, attribute_names: list[str], config: LinearProbeConfig, seed: int, resamples: int = 1000,
                  probe: str = "attribute_probe") -> Metric:
    """Per-attribute logistic probes; macro mAP with a bootstrap interval over test images
    (``resamples`` resamples, seeded; 0 skips it, e.g. for a control task)."""
    import numpy as np
    import torch

    from pytest_visprobe.kernels.linear import fit_probe
    from pytest_visprobe.kernels.ranking import mean_average_precision
    from pytest_visprobe.report.statistics import map_bootstrap_interval, seed_for

    train_t = torch.as_tensor(np.asarray(train_a), dtype=torch.float32)

    def val_map(logits: torch.Tensor, targets: torch.Tensor) -> float:
        try:
            return mean_average_precision(targets.numpy(), logits.numpy())[0]
        except ValueError:
            return float("-inf")

    head = fit_probe(train_x, train_t, n_outputs=train_t.shape[1], weight_decays=config.weight_decays,
                     val_fraction=config.val_fraction, score=val_map, seed=seed, multilabel=True,
                     max_iter=config.max_iter)
    scores = head.logits(test_x).numpy()
    value, per_attribute = mean_average_precision(np.asarray(test_a), scores)
    interval = None
    if resamples:
        interval = map_bootstrap_interval(np.asarray(test_a), scores, rng=seed_for(seed, "attribute_probe", "mAP"),
                                          resamples=resamples)
    rates = np.asarray(test_a).mean(axis=0)  # a column's chance AP is its positive rate
    details = AttributeDetails(
        weight_decay=head.weight_decay,
        per_attribute_ap={n: (None if np.isnan(ap) else round(float(ap), 4))
                          for n, ap in zip(attribute_names, per_attribute)},
        n_train=int(len(train_a)), n_test=int(len(test_a)))
    return Metric(probe, "mAP", value, details=details, interval=interval, chance=float(rates[rates > 0].mean()))


def run(ctx: "ProbeContext") -> list[Metric]:
    train, test = ctx.dataset.split("train"), ctx.dataset.split("test")
    train_x, test_x = ctx.features("train"), ctx.features("test")
    settings = dict(attribute_names=ctx.dataset.attribute_names, config=ctx.settings, seed=ctx.seed)
    metric = attribute_map(train_x, train.attributes, test_x, test.attributes, resamples=ctx.resamples, **settings)
    if ctx.is_control:
        return [metric]
    control = attribute_map(train_x, permuted_targets(train.attributes, ctx.seed), test_x, test.attributes,
                            resamples=0, **settings)
    return [metric, selectivity(metric, control, AttributeDetails)]


ATTRIBUTE_PROBE = ProbeSpec(
    name="attribute_probe",
    description="per-attribute logistic probes read the image's attributes from the frozen embedding",
    metrics=(
        MetricSpec("mAP", True, "mean average precision of per-attribute logistic probes (multi-label)",
                   chance=CHANCE_POSITIVE_RATE),
        MetricSpec("selectivity", True,
                   "mAP minus the mAP of the same probes trained on permuted train attribute rows (control task)",
                   lower=-1.0, upper=1.0, chance="the mAP metric's"),
    ),
    run=run,
    settings=LinearProbeConfig,
    details=AttributeDetails,
    role="attributes",
    targets=("attributes",),
)
