"""The study's transfer probe (PROTOCOLS.md A, Devillers et al. 2021), the ``paper`` recipe.

``Linear(D, classes)`` on the raw frozen features, cross-entropy, ``torch.optim.Adam`` with
lr 1e-3 and weight decay 5e-4 (Adam's L2 term, on weight and bias as in the study's code),
20 epochs of shuffled mini-batches of 60, and the weights after the last epoch (no early
stopping, no validation split). The default probe (:func:`.linear.fit_probe`, L-BFGS with a
weight-decay sweep) converges to the regularised optimum instead; this one is the study's
recipe on cached features, without its training augmentation (see conformance.toml), so it
is not shown to reproduce the published numbers. Everything is seeded: initialisation and
batch order come from ``seed``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pytest_visprobe.kernels.linear import LinearHead


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
    """Train the study's linear head; returned as a :class:`LinearHead` with identity scaling."""
    x = train_x.detach().float().contiguous()
    y = torch.as_tensor(train_y, dtype=torch.long)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"expected features [N, D] and labels [N], got {tuple(x.shape)} and {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes - 1}], got [{int(y.min())}, {int(y.max())}]")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        linear = torch.nn.Linear(x.shape[1], n_classes)  # PyTorch's default init, seeded
    optimizer = torch.optim.Adam(linear.parameters(), lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=generator)
            for start in range(0, x.shape[0], batch_size):
                batch = order[start : start + batch_size]
                optimizer.zero_grad()
                F.cross_entropy(linear(x[batch]), y[batch]).backward()
                optimizer.step()
    d = x.shape[1]
    return LinearHead(mean=torch.zeros(d), scale=torch.ones(d), weight=linear.weight.detach().T.contiguous(),
                      bias=linear.bias.detach().clone(), weight_decay=weight_decay)
