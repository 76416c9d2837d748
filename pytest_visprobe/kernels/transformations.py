"""Transformation detection (PROTOCOLS.md C): what non-semantic information does the embedding keep?

Probes train on cached embeddings of transformed views (``datasets/transformed.py``) and are
scored on views of held-out source images. Three tasks, each with a linear and an MLP probe:

* fine-grained: which transformation was applied (identity included);
* grouped: which family it belongs to;
* generalization: the family probe trains on the views of the ``train`` members of
  ``transformations.generalization_split(seed)`` and is scored on views made with the held-out
  members only, i.e. transformations it has never seen.

A probe is a ``Classifier``: ``fit(train_x, train_y, n_classes) -> logits_fn``. All functions
here are pure (features and integer labels in, ``Metric`` out). When ``logits_fn`` is a head's
bound ``logits`` method and the head has a ``fit`` (kernels/headfit.py), its train loss and
top-1 go into the details.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pytest_visprobe.errors import VisprobeError
from pytest_visprobe.probes.heads import LinearProbeConfig, MLPProbeConfig
from pytest_visprobe.probes.spec import Metric
from pytest_visprobe.kernels.chance import majority_share
from pytest_visprobe.kernels.headfit import HeadFit, classifier_fit
from pytest_visprobe.kernels.linear import fit_probe, standardizer, top1

#: ``fit(train_x, train_y, n_classes) -> logits_fn``: trains on features, returns a scorer.
Classifier = Callable[[torch.Tensor, torch.Tensor, int], Callable[[torch.Tensor], torch.Tensor]]


class TransformationProbeError(VisprobeError):
    """A task cannot be scored on the given views; the message says which sizes to raise."""


@dataclass(frozen=True)
class TransformationTask:
    """What the labels mean: transformation names, their families, the held-out members."""

    names: tuple[str, ...]  # class index -> transformation name
    families: tuple[str, ...]  # family index -> family name
    family_of: np.ndarray  # int64 [len(names)]: class index -> family index
    held_out: tuple[str, ...]  # names held out for the generalization task

    @classmethod
    def of(cls, views, *, seed: int) -> "TransformationTask":
        """The task of a ``TransformedDataset``; held-out members from ``generalization_split(seed)``."""
        from pytest_visprobe.datasets.transformations import generalization_split

        names = tuple(views.class_names)
        held_out = tuple(n for n in generalization_split(seed)[1] if n in names)
        return cls(names, tuple(views.families), np.asarray(views.family_of), held_out)


# ----------------------------------------------------------------------------- classifiers


def linear_classifier(config: LinearProbeConfig, seed: int) -> Classifier:
    """Multinomial logistic regression (probes/linear.py), weight decay swept on held-out train."""

    def fit(x: torch.Tensor, y: torch.Tensor, n_classes: int):
        head = fit_probe(x, y, n_outputs=n_classes, weight_decays=config.weight_decays,
                         val_fraction=config.val_fraction, score=top1, seed=seed, max_iter=config.max_iter)
        return head.logits

    return fit


@dataclass(frozen=True)
class MLPHead:
    """Standardisation, ``Linear → ReLU → Linear``."""

    mean: torch.Tensor
    scale: torch.Tensor
    model: torch.nn.Sequential
    fit: HeadFit | None = None  # cross-entropy (L2 term left out) and top-1 on all of train

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model((x - self.mean) / self.scale)


def fit_mlp(x: torch.Tensor, y: torch.Tensor, *, n_classes: int, config: MLPProbeConfig, seed: int) -> MLPHead:
    """One hidden layer, Adam on shuffled mini-batches, ``weight_decay/2·‖W‖²`` on the weights.

    Seeded: initialisation and batch order come from generators seeded with ``seed`` (the global
    torch RNG is left alone), so the same features give the same head.
    """
    mean, scale = standardizer(x)
    x = ((x - mean) / scale).float()
    y = y.long()
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.nn.utils.skip_init(torch.nn.Linear, x.shape[1], config.hidden)
    out = torch.nn.utils.skip_init(torch.nn.Linear, config.hidden, n_classes)
    with torch.no_grad():  # torch's default init (Kaiming-uniform, a=√5), drawn from our generator
        for layer in (hidden, out):
            bound = 1.0 / np.sqrt(layer.in_features)
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
    model = torch.nn.Sequential(hidden, torch.nn.ReLU(), out)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    n = x.shape[0]
    with torch.enable_grad():
        for _ in range(config.epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, config.batch_size):
                batch = order[start:start + config.batch_size]
                loss = F.cross_entropy(model(x[batch]), y[batch])
                loss = loss + 0.5 * config.weight_decay * (hidden.weight.pow(2).sum() + out.weight.pow(2).sum())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    model.eval()
    with torch.no_grad():
        fit = classifier_fit(model(x), y)
    return MLPHead(mean=mean, scale=scale, model=model, fit=fit)


def mlp_classifier(config: MLPProbeConfig, seed: int) -> Classifier:
    def fit(x: torch.Tensor, y: torch.Tensor, n_classes: int):
        return fit_mlp(x, y, n_classes=n_classes, config=config, seed=seed).logits

    return fit


# ----------------------------------------------------------------------------- tasks


def fine_grained_probe(probe: str, fit: Classifier, train_x, train_y, test_x, test_y,
                       task: TransformationTask) -> Metric:
    """Which transformation: top-1 over all of them; per-family accuracy and the confusion matrix."""
    from pytest_visprobe.kernels.examples import margins
    from pytest_visprobe.probes.examples import Examples

    n = len(task.names)
    logits, head_fit = _fit_logits(fit, train_x, train_y, test_x, n)
    predicted = logits.argmax(dim=1).numpy()
    test_y = np.asarray(test_y, dtype=np.int64)
    correct = (predicted == test_y).astype(np.float64)
    details = _details(correct, task.family_of[test_y], task.families, train_y, test_y, n) | head_fit
    details["labels"] = list(task.names)
    details["label_families"] = [task.families[f] for f in task.family_of]
    details["confusion"] = _confusion(test_y, predicted, n)
    examples = Examples("transformation", margins(logits, test_y), "margin p(applied) - max p(other)",
                        lambda rows: list(predicted[rows]))
    return Metric(probe, "fine_grained_top1", float(correct.mean()), details=details, per_sample=correct,
                  examples=examples)


def grouped_probe(probe: str, fit: Classifier, train_x, train_y, test_x, test_y,
                  task: TransformationTask) -> Metric:
    """Which family: top-1; per-family accuracy and the family confusion matrix."""
    n = len(task.families)
    train_f, test_f = task.family_of[np.asarray(train_y)], task.family_of[np.asarray(test_y)]
    predicted, head_fit = _fit_predict(fit, train_x, train_f, test_x, n)
    correct = (predicted == test_f).astype(np.float64)
    details = _details(correct, test_f, task.families, train_f, test_f, n) | head_fit
    details["confusion"] = _confusion(test_f, predicted, n)
    return Metric(probe, "grouped_top1", float(correct.mean()), details=details, per_sample=correct)


def generalization_probe(probe: str, fit: Classifier, train_x, train_y, test_x, test_y,
                         task: TransformationTask) -> Metric:
    """Family probe trained without the held-out members, scored on views made with them only.

    ``per_sample`` covers the scored views (held-out members in the test split), in test order.
    """
    held = np.array([name in task.held_out for name in task.names])
    train_y, test_y = np.asarray(train_y, dtype=np.int64), np.asarray(test_y, dtype=np.int64)
    keep_train, keep_test = ~held[train_y], held[test_y]
    if not keep_test.any() or not keep_train.any():
        which = "test split has no views of a held-out" if not keep_test.any() else "train split has no views of a training"
        raise TransformationProbeError(
            f"generalization task: the {which} transformation (held out: {list(task.held_out)}); "
            "raise the profile's transformations.test_per_transformation / per_image, or the "
            "dataset's size (--visprobe-limit)."
        )
    n = len(task.families)
    train_f, test_f = task.family_of[train_y[keep_train]], task.family_of[test_y[keep_test]]
    predicted, head_fit = _fit_predict(fit, _rows(train_x, keep_train), train_f, _rows(test_x, keep_test), n)
    correct = (predicted == test_f).astype(np.float64)
    details = _details(correct, test_f, task.families, train_f, test_f, n) | head_fit
    details["held_out"] = list(task.held_out)
    details["per_transformation_top1"] = {
        task.names[c]: round(float(correct[test_y[keep_test] == c].mean()), 4)
        for c in np.unique(test_y[keep_test])
    }
    details["confusion"] = _confusion(test_f, predicted, n)
    return Metric(probe, "generalization_top1", float(correct.mean()), details=details, per_sample=correct)


def transformation_probes(probe: str, fit: Classifier, train_x, train_y, test_x, test_y,
                          task: TransformationTask) -> list[Metric]:
    """The three tasks with one classifier: fine-grained, grouped, generalization."""
    return [task_fn(probe, fit, train_x, train_y, test_x, test_y, task)
            for task_fn in (fine_grained_probe, grouped_probe, generalization_probe)]


# ----------------------------------------------------------------------------- helpers


def _rows(x: torch.Tensor, keep: np.ndarray) -> torch.Tensor:
    return x[torch.as_tensor(np.flatnonzero(keep))]


def _fit_logits(fit: Classifier, train_x, train_y, test_x, n_classes: int) -> tuple[torch.Tensor, dict]:
    """Test logits, and the head's ``train_*`` details when it reports its fit."""
    logits_fn = fit(train_x, torch.as_tensor(np.asarray(train_y), dtype=torch.long), n_classes)
    head_fit = getattr(getattr(logits_fn, "__self__", None), "fit", None)
    return logits_fn(test_x), (head_fit.details() if isinstance(head_fit, HeadFit) else {})


def _fit_predict(fit: Classifier, train_x, train_y, test_x, n_classes: int) -> tuple[np.ndarray, dict]:
    """Test predictions, and the head's ``train_*`` details when it reports its fit."""
    logits, head_fit = _fit_logits(fit, train_x, train_y, test_x, n_classes)
    return logits.argmax(dim=1).numpy(), head_fit


def _confusion(truth: np.ndarray, predicted: np.ndarray, n: int) -> list[list[int]]:
    """Rows are true classes, columns predictions (scikit-learn's convention)."""
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix.tolist()


def _details(correct: np.ndarray, groups: np.ndarray, families: Sequence[str], train_y, test_y, n: int) -> dict:
    """Per-family accuracy, sizes, and chance: the best constant guess (the largest class share
    in the test set; 1/n only when the classes are balanced, e.g. families of unequal size are not)."""
    per_family = {families[f]: round(float(correct[groups == f].mean()), 4) for f in np.unique(groups)}
    majority = majority_share(test_y)
    return {
        "per_family_top1": per_family,
        "chance": majority,
        "majority": majority,
        "n_train": int(len(train_y)),
        "n_test": int(len(test_y)),
    }
