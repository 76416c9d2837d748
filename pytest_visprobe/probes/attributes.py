"""Attribute probe: which attributes (colour, size, texture, ...) does the embedding keep?

Independent logistic regressions per attribute on cached features, scored by macro mAP on the
test split, with the same control task as the label probe (train attribute rows permuted
across images) reported as ``selectivity``. With partial labels (VAW's ``attribute_mask``) an
unknown entry is left out of the loss and each attribute's AP is over the images where it is
labelled, as VAW's evaluator does; VAW's mean recall@15 is then reported in the details too.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from pytest_visprobe.probes.heads import HeadFitDetails, LinearProbeConfig
from pytest_visprobe.probes.label import permuted_targets, selectivity
from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    import numpy as np
    import torch

    from pytest_visprobe.kernels.linear import LinearHead

    from pytest_visprobe.runner.context import ProbeContext

CHANCE_POSITIVE_RATE = "mean positive rate of the attributes present in test (the mAP of random scores)"


class AttributeDetails(HeadFitDetails):
    weight_decay: float | None = None
    per_attribute_ap: dict[str, float | None] | None = None
    n_train: int | None = None
    n_test: int | None = None
    measured: float | None = None
    control: float | None = None
    control_task: str | None = None
    labels_used: str | None = None  # "explicit positives and negatives only" (VAW) or "every entry"
    mean_recall_at_15: float | None = None  # VAW's mR@15, with partial labels only


def attribute_head(train_x: "torch.Tensor", train_a: "np.ndarray", *, config: LinearProbeConfig, seed: int,
                   train_mask: "np.ndarray | None" = None) -> "LinearHead":
    """Per-attribute logistic probes fitted on the train rows (weight decay chosen by held-out
    mAP); an unlabelled entry (``train_mask`` False) is out of the loss."""
    import numpy as np
    import torch

    from pytest_visprobe.kernels.linear import fit_probe
    from pytest_visprobe.kernels.ranking import mean_average_precision

    train_t = torch.as_tensor(np.asarray(train_a), dtype=torch.float32)
    if train_mask is not None:
        train_t[~torch.as_tensor(np.asarray(train_mask, dtype=bool))] = float("nan")

    def val_map(logits: torch.Tensor, targets: torch.Tensor) -> float:
        known = ~torch.isnan(targets)
        try:
            return mean_average_precision(targets.nan_to_num(0.0).numpy(), logits.numpy(),
                                          None if bool(known.all()) else known.numpy())[0]
        except ValueError:
            return float("-inf")

    return fit_probe(train_x, train_t, n_outputs=train_t.shape[1], weight_decays=config.weight_decays,
                     val_fraction=config.val_fraction, score=val_map, seed=seed, multilabel=True,
                     max_iter=config.max_iter)


def attribute_map(train_x: "torch.Tensor", train_a: "np.ndarray", test_x: "torch.Tensor", test_a: "np.ndarray",
                  *, attribute_names: list[str], config: LinearProbeConfig, seed: int, resamples: int = 1000,
                  probe: str = "attribute_probe", train_mask: "np.ndarray | None" = None,
                  test_mask: "np.ndarray | None" = None, head: "LinearHead | None" = None) -> Metric:
    """Per-attribute logistic probes; macro mAP with a bootstrap interval over test images
    (``resamples`` resamples, seeded; 0 skips it, e.g. for a control task).

    ``train_mask``/``test_mask``: where the attributes are labelled (None: everywhere); an
    unlabelled entry is out of the loss (NaN target) and out of its attribute's AP. ``head``:
    one already fitted by :func:`attribute_head` on these train rows.
    """
    import numpy as np
    import torch

    from pytest_visprobe.kernels.ranking import mean_average_precision, mean_recall_at_k
    from pytest_visprobe.report.statistics import map_bootstrap_interval, seed_for

    if head is None:
        head = attribute_head(train_x, train_a, config=config, seed=seed, train_mask=train_mask)
    train_fit = replace(head.fit, chance=positive_rate_chance(np.asarray(train_a), train_mask))
    logits = head.logits(test_x)
    scores = logits.numpy()
    known = None if test_mask is None else np.asarray(test_mask, dtype=bool)
    value, per_attribute = mean_average_precision(np.asarray(test_a), scores, known)
    interval = None
    if resamples:
        interval = map_bootstrap_interval(np.asarray(test_a), scores, rng=seed_for(seed, "attribute_probe", "mAP"),
                                          resamples=resamples, labelled=known)
    details = AttributeDetails(
        weight_decay=head.weight_decay,
        per_attribute_ap={n: (None if np.isnan(ap) else round(float(ap), 4))
                          for n, ap in zip(attribute_names, per_attribute)},
        n_train=int(len(train_a)), n_test=int(len(test_a)),
        labels_used="every entry (absent = negative)" if known is None else "explicit positives and negatives only",
        **train_fit.details())
    if known is not None:
        recall = mean_recall_at_k(np.asarray(test_a), torch.sigmoid(logits).numpy(), known, k=15)
        details.mean_recall_at_15 = None if np.isnan(recall) else recall
    return Metric(probe, "mAP", value, details=details, interval=interval, chance=positive_rate_chance(test_a, known))


def positive_rate_chance(attributes: "np.ndarray", labelled: "np.ndarray | None") -> float:
    """The mAP of random scores: each attribute's positive rate where labelled, averaged over the
    attributes with a positive."""
    import numpy as np

    positives = np.asarray(attributes).astype(bool)
    if labelled is not None:
        labelled = np.asarray(labelled, dtype=bool)
        positives = positives & labelled
    counted = np.full(positives.shape[1], positives.shape[0]) if labelled is None else labelled.sum(axis=0)
    rates = positives.sum(axis=0) / np.maximum(counted, 1)
    return float(rates[rates > 0].mean())


def run(ctx: "ProbeContext") -> list[Metric]:
    from pytest_visprobe.kernels.ranking import mean_average_precision
    from pytest_visprobe.report.statistics import map_bootstrap_interval, seed_for

    train, test = ctx.dataset.split("train"), ctx.dataset.split("test")
    train_x, test_x = ctx.features("train"), ctx.features("test")
    config = ctx.settings
    head = attribute_head(train_x, train.attributes, config=config, seed=ctx.seed, train_mask=train.attribute_mask)
    metric = attribute_map(train_x, train.attributes, test_x, test.attributes, attribute_names=ctx.dataset.attribute_names,
                           config=config, seed=ctx.seed, resamples=ctx.resamples, train_mask=train.attribute_mask,
                           test_mask=test.attribute_mask, head=head)
    if ctx.is_control:
        return [metric]
    permuted_mask = None if train.attribute_mask is None else permuted_targets(train.attribute_mask, ctx.seed)
    control_head = attribute_head(train_x, permuted_targets(train.attributes, ctx.seed), config=config,
                                  seed=ctx.seed, train_mask=permuted_mask)
    measured_scores, control_scores = head.logits(test_x).numpy(), control_head.logits(test_x).numpy()
    control = Metric("attribute_probe", "mAP",
                     mean_average_precision(test.attributes, control_scores, test.attribute_mask)[0])
    # the same resampled test rows score both heads: the interval of the paired difference
    interval = map_bootstrap_interval(test.attributes, measured_scores, control_scores=control_scores,
                                      rng=seed_for(ctx.seed, "attribute_probe", "selectivity"),
                                      resamples=ctx.resamples, labelled=test.attribute_mask)
    return [metric, replace(selectivity(metric, control, AttributeDetails), interval=interval)]


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
    per_layer=True,
)
