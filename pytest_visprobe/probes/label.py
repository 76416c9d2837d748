"""Label probe: does the frozen embedding say *what* is in the image?

Multinomial logistic regression on cached features (or, under ``paper``, the study's Adam recipe,
its head trained on augmented views: augmented.py), scored by top-1 on the test split, with a
control task (the same probe trained on train labels permuted across images) reported as
``selectivity`` = measured − control, so a probe cannot pass on label priors alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from pytest_visprobe.probes.heads import HeadFitDetails, LinearProbeConfig
from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    import numpy as np
    import torch

    from pytest_visprobe.encoders.base import Encoder
    from pytest_visprobe.kernels.linear import LinearHead
    from pytest_visprobe.probes.examples import Examples
    from pytest_visprobe.runner.context import ProbeContext

CHANCE_MAJORITY = "the largest class's share of the test split (the best constant guess; 1/K when balanced)"
CACHED_VIEWS = "cached features of the un-augmented training images"
CLIP_VIEWS = (CACHED_VIEWS + " (open_clip: the study trains CLIP on its own preprocessing, without augmentation)")


class LabelDetails(HeadFitDetails):
    weight_decay: float | None = None  # chosen on a held-out part of train (None: the Adam recipe)
    recipe: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    measured: float | None = None  # selectivity: the probe's own score ...
    control: float | None = None  # ... and the control task's
    control_task: str | None = None
    train_views: str | None = None  # what the label probe's head was trained on (augmented or cached)


def fit_label_head(train_x: "torch.Tensor", train_y: "np.ndarray", *, n_classes: int,
                   config: LinearProbeConfig, seed: int) -> "LinearHead":
    """The linear head of the label probe, by the configured recipe."""
    import torch

    from pytest_visprobe.kernels.linear import fit_probe, top1

    train_t = torch.as_tensor(train_y, dtype=torch.long)
    if config.recipe == "adam":  # the study's transfer recipe (paper profile)
        from pytest_visprobe.kernels.transfer import fit_adam_probe

        return fit_adam_probe(train_x, train_t, n_classes=n_classes, lr=config.adam_lr,
                              weight_decay=config.adam_weight_decay, epochs=config.adam_epochs,
                              batch_size=config.adam_batch_size, seed=seed)
    return fit_probe(train_x, train_t, n_outputs=n_classes, weight_decays=config.weight_decays,
                     val_fraction=config.val_fraction, score=top1, seed=seed, max_iter=config.max_iter)


def label_top1(train_x: "torch.Tensor", train_y: "np.ndarray", test_x: "torch.Tensor", test_y: "np.ndarray",
               *, n_classes: int, config: LinearProbeConfig, seed: int,
               train_views: str | None = None) -> tuple[Metric, "LinearHead"]:
    """Fit the head and score it: the top-1 metric (per-sample correctness kept) and the head."""
    head = fit_label_head(train_x, train_y, n_classes=n_classes, config=config, seed=seed)
    return score_label_head(head, test_x, test_y, recipe=config.recipe, n_train=len(train_y),
                            train_views=train_views), head


def score_label_head(head: "LinearHead", test_x: "torch.Tensor", test_y: "np.ndarray", *, recipe: str,
                     n_train: int, train_views: str | None = None) -> Metric:
    """The top-1 metric of a fitted head, per-sample correctness kept."""
    import numpy as np
    import torch

    from pytest_visprobe.kernels.chance import majority_share

    correct = (head.logits(test_x).argmax(dim=1) == torch.as_tensor(test_y, dtype=torch.long)).numpy()
    details = LabelDetails(weight_decay=head.weight_decay, recipe=recipe, n_train=int(n_train),
                           n_test=int(len(test_y)), train_views=train_views,
                           **(head.fit.details() if head.fit is not None else {}))
    return Metric("label_probe", "top1", float(correct.mean()), details=details,
                  per_sample=correct.astype(np.uint8), chance=majority_share(test_y))


def augments(encoder: "Encoder", config: LinearProbeConfig) -> bool:
    """Whether the head trains on augmented views: ``config.augment``, except for open_clip
    encoders, which the study trained on their own preprocessing without augmentation."""
    from pytest_visprobe.encoders.kinds import encoder_kind

    return config.augment and encoder_kind(encoder) != "open_clip"


def dataset_label_top1(ctx: "ProbeContext", config: LinearProbeConfig,
                       train_labels: "np.ndarray") -> tuple[Metric, "LinearHead"]:
    """The label probe on the context's dataset with these train labels: the head trained on
    augmented views streamed through the encoder (augmented.py) or on cached features, the
    test split always from the cache (the study's test transform has no augmentation)."""
    test = ctx.dataset.split("test")
    n_classes = len(ctx.dataset.class_names)
    if augments(ctx.encoder, config):
        from pytest_visprobe.augmented import STUDY_AUGMENTATION, fit_adam_probe_augmented

        images = ctx.dataset.split("train").images
        steps = config.adam_epochs * -(-len(images) // config.adam_batch_size)
        desc = f"{ctx.encoder.name} · {ctx.dataset.name}/train (augmented, {config.adam_epochs} epochs)"
        with ctx.progress(desc, steps, config.adam_epochs * len(images)) as tick:
            head = fit_adam_probe_augmented(
                ctx.encoder, images, train_labels, n_classes=n_classes, lr=config.adam_lr,
                weight_decay=config.adam_weight_decay, epochs=config.adam_epochs,
                batch_size=config.adam_batch_size, seed=ctx.seed, device=ctx.device, where=ctx.dataset.name,
                tick=tick)
        return score_label_head(head, ctx.features("test"), test.labels, recipe=config.recipe,
                                n_train=len(train_labels), train_views="augmented: " + STUDY_AUGMENTATION), head
    views = CLIP_VIEWS if config.augment else CACHED_VIEWS
    return label_top1(ctx.features("train"), train_labels, ctx.features("test"), test.labels,
                      n_classes=n_classes, config=config, seed=ctx.seed, train_views=views)


def shared_label_probe(ctx: "ProbeContext", config: LinearProbeConfig) -> tuple[Metric, "LinearHead"]:
    """The label probe of (encoder, dataset), fitted once per process per settings and features.

    The label probe reports its metric; the RPGD probe attacks its head: one fit when their
    head settings agree, two when they do not.
    """
    def fit() -> tuple[Metric, "LinearHead"]:
        return dataset_label_top1(ctx, config, ctx.dataset.split("train").labels)

    return ctx.shared("label_probe", fit, config)


def permuted_targets(targets: Any, seed: int) -> "np.ndarray":
    """Rows of ``targets`` in a seeded random order: the control task's training targets."""
    import numpy as np

    targets = np.asarray(targets)
    order = np.random.default_rng([seed, 0x5E1EC7]).permutation(targets.shape[0])
    return targets[order]


def selectivity(measured: Metric, control: Metric, details: type[BaseModel]) -> Metric:
    """``measured − control`` as its own metric; per-sample differences when both have them."""
    import numpy as np

    per_sample = None
    if measured.per_sample is not None and control.per_sample is not None:
        per_sample = (np.asarray(measured.per_sample, dtype=np.float64)
                      - np.asarray(control.per_sample, dtype=np.float64))
    return Metric(measured.probe, "selectivity", measured.value - control.value, per_sample=per_sample,
                  details=details(measured=measured.value, control=control.value,
                                  control_task="train targets permuted across images (seeded)"),
                  chance=measured.chance)


def label_examples(head: "LinearHead", test_x: "torch.Tensor", test_y: "np.ndarray") -> "Examples":
    """What the label head saw: each test image ranked by its margin, its predicted class."""
    from pytest_visprobe.kernels.examples import margins
    from pytest_visprobe.probes.examples import Examples

    logits = head.logits(test_x)
    predicted = logits.argmax(dim=1).numpy()
    return Examples("label", margins(logits, test_y), "margin p(true) - max p(other)",
                    lambda rows: list(predicted[rows]))


def run(ctx: "ProbeContext") -> list[Metric]:
    from dataclasses import replace

    config: LinearProbeConfig = ctx.settings
    metric, head = shared_label_probe(ctx, config)
    metric = replace(metric, examples=label_examples(head, ctx.features("test"), ctx.dataset.split("test").labels))
    if ctx.is_control:  # a random-init control is itself the floor: no control task of its own
        return [metric]
    # the control task trains as the measured probe does (augmented views or cached features)
    control, _ = dataset_label_top1(ctx, config, permuted_targets(ctx.dataset.split("train").labels, ctx.seed))
    return [metric, selectivity(metric, control, LabelDetails)]


LABEL_PROBE = ProbeSpec(
    name="label_probe",
    description="a linear (multinomial logistic) probe names the image's class from the frozen embedding",
    metrics=(
        MetricSpec("top1", True, "top-1 accuracy of a linear (multinomial logistic) probe on frozen embeddings",
                   chance=CHANCE_MAJORITY),
        MetricSpec("selectivity", True,
                   "top-1 minus the top-1 of the same probe trained on permuted train labels (control task)",
                   lower=-1.0, upper=1.0, chance="the top1 metric's"),
    ),
    run=run,
    settings=LinearProbeConfig,
    details=LabelDetails,
    role="label",
    targets=("label",),
    per_layer=True,
)
