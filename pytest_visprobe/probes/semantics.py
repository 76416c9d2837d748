"""Semantics probes: what the embedding says about *what* is in the image.

Both train on cached features only (no forward pass) and report on the test split.
"""

from __future__ import annotations

import numpy as np
import torch

from ..profiles import LinearProbeConfig
from ..ranking import mean_average_precision
from ..results import Metric
from ..uncertainty import RESAMPLES, map_bootstrap_interval, seed_for
from .linear import LinearHead, fit_probe, top1


def label_probe(
    train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor, test_y: np.ndarray,
    *, n_classes: int, config: LinearProbeConfig, seed: int,
) -> tuple[Metric, LinearHead]:
    """Multinomial logistic regression; top-1 on the test split. Returns the head for reuse."""
    train_t = torch.as_tensor(train_y, dtype=torch.long)
    if config.recipe == "adam":  # the study's transfer recipe (paper profile)
        from .transfer import fit_adam_probe

        head = fit_adam_probe(train_x, train_t, n_classes=n_classes, lr=config.adam_lr,
                              weight_decay=config.adam_weight_decay, epochs=config.adam_epochs,
                              batch_size=config.adam_batch_size, seed=seed)
    else:
        head = fit_probe(train_x, train_t, n_outputs=n_classes, weight_decays=config.weight_decays,
                         val_fraction=config.val_fraction, score=top1, seed=seed,
                         max_iter=config.max_iter)
    correct = (head.logits(test_x).argmax(dim=1) == torch.as_tensor(test_y, dtype=torch.long)).numpy()
    details = {"weight_decay": head.weight_decay, "recipe": config.recipe, "n_train": int(len(train_y)),
               "n_test": int(len(test_y)), "chance": 1.0 / n_classes}
    # per-sample correctness: the recorder bootstraps its interval and keeps it for paired checks
    return Metric("label_probe", "top1", float(correct.mean()), details=details,
                  per_sample=correct.astype(np.uint8)), head


def attribute_probe(
    train_x: torch.Tensor, train_a: np.ndarray, test_x: torch.Tensor, test_a: np.ndarray,
    *, attribute_names: list[str], config: LinearProbeConfig, seed: int, resamples: int = RESAMPLES,
) -> Metric:
    """Independent logistic regressions per attribute; macro mAP on the test split.

    mAP is not a mean over samples, so its 95 % interval is bootstrapped here over test images
    (``resamples`` resamples, seeded; 0 skips it, e.g. for a control run).
    """
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
    # chance AP of a column is its positive rate; the mean of those is the mAP of random scores
    rates = np.asarray(test_a).mean(axis=0)
    details = {
        "weight_decay": head.weight_decay,
        "per_attribute_ap": {n: (None if np.isnan(ap) else round(float(ap), 4))
                             for n, ap in zip(attribute_names, per_attribute)},
        "chance": float(rates[rates > 0].mean()),
        "n_train": int(len(train_a)), "n_test": int(len(test_a)),
    }
    return Metric("attribute_probe", "mAP", value, details=details, interval=interval)
