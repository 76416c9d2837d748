"""The study's transfer probe (PROTOCOLS.md A, Devillers et al. 2021), the ``paper`` recipe.

``Linear(D, classes)`` on the raw frozen features, cross-entropy, ``torch.optim.Adam`` with
lr 1e-3 and weight decay 5e-4 (Adam's L2 term, on weight and bias as in the study's code),
20 epochs of shuffled mini-batches of 60, and the weights after the last epoch (no early
stopping, no validation split). The default probe (:func:`.linear.fit_probe`, L-BFGS with a
weight-decay sweep) converges to the regularised optimum instead. The loop
(:func:`train_adam_head`) takes its batches from a source: cached features
(:func:`fit_adam_probe`) or augmented views streamed through the frozen encoder every epoch
(pytest_visprobe/augmented.py), the study's training transform. Neither is shown to reproduce
the published numbers. Everything is seeded: initialisation and batch order come from ``seed``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

from pytest_visprobe.kernels.chance import majority_share
from pytest_visprobe.kernels.headfit import HeadFit, classifier_fit
from pytest_visprobe.kernels.linear import LinearHead

#: where an Adam head's train loss and top-1 come from when no cached train features exist
RUNNING = "the last epoch's mini-batches, each before its step (running mean)"

#: ``batches(epoch)`` -> that epoch's ``(features [B, D], labels [B])`` mini-batches, in order
EpochBatches = Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def train_adam_head(
    batches: EpochBatches,
    *,
    n_classes: int,
    lr: float = 1e-3,
    weight_decay: float = 5e-4,
    epochs: int = 20,
    seed: int = 0,
) -> LinearHead:
    """One Adam step per mini-batch of ``batches(epoch)`` for each epoch; the last-epoch head.

    The head is created at the first batch (its width is the features'), with PyTorch's
    default init drawn right after ``torch.manual_seed(seed)`` on a forked RNG. Its ``fit`` is
    the last epoch's running cross-entropy and top-1 (each batch before its step; no extra
    pass, as augmented views are not cached), ``on`` saying so; :func:`fit_adam_probe`
    replaces it with the final head's on all cached train features.
    """
    linear = optimizer = None
    last = {"loss": 0.0, "correct": 0, "rows": 0, "labels": []}
    with torch.enable_grad():
        for epoch in range(epochs):
            for x, y in batches(epoch):
                if linear is None:
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(seed)
                        linear = torch.nn.Linear(x.shape[1], n_classes)  # PyTorch's default init, seeded
                    optimizer = torch.optim.Adam(linear.parameters(), lr=lr, weight_decay=weight_decay)
                optimizer.zero_grad()
                logits = linear(x)
                loss = F.cross_entropy(logits, y)
                loss.backward()
                optimizer.step()
                if epoch == epochs - 1:
                    last["loss"] += float(loss.detach()) * len(y)
                    last["correct"] += int((logits.detach().argmax(dim=1) == y).sum())
                    last["rows"] += len(y)
                    last["labels"].append(y.detach().cpu())
    if linear is None:
        raise ValueError("no training batches: the training split is empty")
    d = linear.in_features
    fit = None
    if last["rows"]:
        fit = HeadFit(loss=last["loss"] / last["rows"], score=last["correct"] / last["rows"],
                      chance=majority_share(torch.cat(last["labels"]).numpy()), on=RUNNING)
    return LinearHead(mean=torch.zeros(d), scale=torch.ones(d), weight=linear.weight.detach().T.contiguous(),
                      bias=linear.bias.detach().clone(), weight_decay=weight_decay, fit=fit)


def shuffled_batches(n: int, batch_size: int, seed: int) -> Callable[[], list[torch.Tensor]]:
    """Each call: the next epoch's row batches, one seeded permutation of ``range(n)`` cut into
    ``batch_size`` pieces (the last may be short). Calls must come in epoch order."""
    generator = torch.Generator().manual_seed(seed)

    def next_epoch() -> list[torch.Tensor]:
        return list(torch.randperm(n, generator=generator).split(batch_size))

    return next_epoch


def check_labels(y: torch.Tensor, rows: int, n_classes: int) -> None:
    if y.shape != (rows,):
        raise ValueError(f"expected {rows} labels, got shape {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes - 1}], got [{int(y.min())}, {int(y.max())}]")


def fit_adam_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    *,
    n_classes: int,
    lr: float = 1e-3,
    weight_decay: float = 5e-4,
    epochs: int = 20,
    batch_size: int = 60,
    seed: int = 0,
) -> LinearHead:
    """Train the study's linear head on cached features; a :class:`LinearHead` with identity scaling,
    its ``fit`` measured on all of ``train_x`` after the last epoch."""
    x = train_x.detach().float().contiguous()
    y = torch.as_tensor(train_y, dtype=torch.long)
    if x.ndim != 2:
        raise ValueError(f"expected features [N, D] and labels [N], got {tuple(x.shape)} and {tuple(y.shape)}")
    check_labels(y, x.shape[0], n_classes)
    next_epoch = shuffled_batches(x.shape[0], batch_size, seed)

    def batches(_epoch: int):
        return ((x[rows], y[rows]) for rows in next_epoch())

    head = train_adam_head(batches, n_classes=n_classes, lr=lr, weight_decay=weight_decay, epochs=epochs, seed=seed)
    with torch.no_grad():  # the last-epoch head on all cached train features (Adam's L2 term left out)
        return replace(head, fit=classifier_fit(head.logits(x), y))
