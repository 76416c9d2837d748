"""Linear probes on cached features: full-batch L-BFGS logistic regression in torch.

Objective (matches scikit-learn's ``LogisticRegression(C)`` with ``weight_decay = 1 / (C·N)``):
``mean_i CE(W x_i + b, y_i) + weight_decay / 2 · ‖W‖²`` — the bias is not penalised.
The multi-label variant sums independent binary problems, one per attribute, so each column
is exactly a per-attribute logistic regression.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from pytest_visprobe.kernels.headfit import HeadFit


@dataclass(frozen=True)
class LinearHead:
    """A fitted probe: standardisation followed by ``x @ weight + bias``."""

    mean: torch.Tensor  # [D]
    scale: torch.Tensor  # [D]
    weight: torch.Tensor  # [D, C]
    bias: torch.Tensor  # [C]
    weight_decay: float
    fit: "HeadFit | None" = None  # how well it fits its train split (kernels/headfit.py)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.scale) @ self.weight + self.bias

    def as_module(self) -> torch.nn.Linear:
        """The same map as one ``nn.Linear`` (standardisation folded in), e.g. for attacks."""
        linear = torch.nn.Linear(self.weight.shape[0], self.weight.shape[1])
        with torch.no_grad():
            w = self.weight / self.scale[:, None]
            linear.weight.copy_(w.T)
            linear.bias.copy_(self.bias - self.mean @ w)
        return linear


def standardizer(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Train-split mean and scale; constant features get scale 1 so they stay harmless."""
    mean = x.mean(dim=0)
    scale = x.std(dim=0)
    scale = torch.where(scale > 1e-8, scale, torch.ones_like(scale))
    return mean, scale


def fit_linear(
    x: torch.Tensor,
    targets: torch.Tensor,
    *,
    n_outputs: int,
    weight_decay: float,
    multilabel: bool = False,
    max_iter: int = 200,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise the module's objective on already-standardised ``x``; returns ``(W, b)``."""
    x = x.float().contiguous()
    d = x.shape[1]
    # Optimised as [C, D] (nn.Linear's layout): the weight's gradient is then g.T @ x, which BLAS
    # runs several times faster than the x.T @ g a [D, C] weight needs (benchmarks/bench_linear_probe.py).
    weight_t = torch.zeros(n_outputs, d) if init is None else init[0].T.clone(memory_format=torch.contiguous_format)
    bias = torch.zeros(n_outputs) if init is None else init[1].clone()
    weight_t.requires_grad_(True)
    bias.requires_grad_(True)
    if multilabel:
        y = targets.float()
    else:
        y = targets.long()
    optimizer = torch.optim.LBFGS(
        [weight_t, bias], lr=1.0, max_iter=max_iter, history_size=20,
        tolerance_grad=1e-6, tolerance_change=1e-10, line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _objective_t(x, y, weight_t, bias, weight_decay, multilabel)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight_t.detach().T.contiguous(), bias.detach()


def objective(x, y, weight, bias, weight_decay: float, multilabel: bool) -> torch.Tensor:
    """The module's objective for a ``[D, C]`` weight."""
    return _objective_t(x, y, weight.T, bias, weight_decay, multilabel)


def _objective_t(x, y, weight_t, bias, weight_decay: float, multilabel: bool) -> torch.Tensor:
    logits = F.linear(x, weight_t, bias)
    if multilabel:
        known = ~torch.isnan(y)  # NaN: an unknown label (VAW), left out of the loss
        if bool(known.all()):
            data = F.binary_cross_entropy_with_logits(logits, y, reduction="sum") / x.shape[0]
        else:
            data = F.binary_cross_entropy_with_logits(logits, torch.where(known, y, torch.zeros_like(y)),
                                                      weight=known.float(), reduction="sum") / x.shape[0]
    else:
        data = F.cross_entropy(logits, y)
    return data + 0.5 * weight_decay * weight_t.pow(2).sum()


def fit_probe(
    train_x: torch.Tensor,
    train_targets: torch.Tensor,
    *,
    n_outputs: int,
    weight_decays: Sequence[float],
    val_fraction: float,
    score,
    seed: int,
    multilabel: bool = False,
    max_iter: int = 200,
) -> LinearHead:
    """Pick the weight decay on a seeded held-out part of train, then refit on all of train.

    ``score(logits, targets) -> float`` (higher is better) judges the held-out part. The sweep
    runs from the strongest decay down, each fit warm-started from the previous one. The head's
    ``fit`` holds the final fit's data loss and ``score`` on all of train (chance: the majority
    share for a classifier; left to the caller for multi-label targets).
    """
    mean, scale = standardizer(train_x)
    x = (train_x - mean) / scale
    decays = sorted(set(float(w) for w in weight_decays), reverse=True)
    if len(decays) == 1:
        best = decays[0]
    else:
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(x.shape[0], generator=generator)
        n_val = max(1, int(round(val_fraction * x.shape[0])))
        val, fit = order[:n_val], order[n_val:]
        init = None
        best, best_score = decays[0], -np.inf
        for decay in decays:
            init = fit_linear(x[fit], train_targets[fit], n_outputs=n_outputs, weight_decay=decay,
                              multilabel=multilabel, max_iter=max_iter, init=init)
            value = score(x[val] @ init[0] + init[1], train_targets[val])
            if value > best_score + 1e-12:
                best, best_score = decay, value
    weight, bias = fit_linear(x, train_targets, n_outputs=n_outputs, weight_decay=best,
                              multilabel=multilabel, max_iter=max_iter)
    return LinearHead(mean=mean, scale=scale, weight=weight, bias=bias, weight_decay=best,
                      fit=_train_fit(x @ weight + bias, train_targets, score, multilabel))


def _train_fit(logits: torch.Tensor, targets: torch.Tensor, score, multilabel: bool) -> "HeadFit":
    from pytest_visprobe.kernels.headfit import HeadFit, classifier_fit, data_loss

    if not multilabel:
        return classifier_fit(logits, targets)
    value = float(score(logits, targets))  # -inf: undefined (e.g. no positive in any column)
    return HeadFit(loss=data_loss(logits, targets, multilabel=True), score=value if np.isfinite(value) else None)


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).float().mean())
