"""A linear (1×1 conv) head trained on cached feature maps: the one head family of the dense probes.

Why linear: the probes ask what the frozen map already holds at each location, so the head
must not add spatial reasoning of its own. Segmentation, detection and instance masks all read
the map through such a head; only the targets and the loss differ. Training is seeded
minibatch AdamW on the cached maps (no forward pass through the encoder), on the CPU in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from pytest_visprobe.kernels.linear import standardizer


@dataclass(frozen=True)
class ConvHead:
    """Per-channel standardisation followed by a 1×1 convolution ``[K, C]``."""

    mean: torch.Tensor  # [C]
    scale: torch.Tensor  # [C]
    weight: torch.Tensor  # [K, C]
    bias: torch.Tensor  # [K]

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        """``[N, C, h, w]`` → logits ``[N, K, h, w]``."""
        return _apply(maps, self.mean, self.scale, self.weight, self.bias)


def _apply(maps, mean, scale, weight, bias):
    x = (maps.float() - mean[:, None, None]) / scale[:, None, None]
    return F.conv2d(x, weight[:, :, None, None], bias)


def channel_standardizer(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Train-split mean and std per channel over images and positions; constant channels get 1."""
    positions = maps.float().transpose(0, 1).reshape(maps.shape[1], -1).T  # [N·h·w, C]
    return standardizer(positions)


def fit_conv_head(
    maps: torch.Tensor,
    n_outputs: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    bias_init: torch.Tensor | None = None,
) -> ConvHead:
    """Train a 1×1 conv head; ``loss_fn(logits[B, K, h, w], rows[B])`` gives the minibatch loss.

    The weight starts at zero (the same start for every seed: only the batch order is drawn),
    the bias at ``bias_init`` (e.g. a prior for a focal-loss heat-map).
    """
    mean, scale = channel_standardizer(maps)
    weight = torch.zeros(n_outputs, maps.shape[1], requires_grad=True)
    bias = (torch.zeros(n_outputs) if bias_init is None else bias_init.float().clone()).requires_grad_(True)
    optimizer = torch.optim.AdamW([weight, bias], lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    n = maps.shape[0]
    with torch.enable_grad():
        for _ in range(epochs):
            for rows in torch.randperm(n, generator=generator).split(batch_size):
                optimizer.zero_grad()
                loss = loss_fn(_apply(maps[rows], mean, scale, weight, bias), rows)
                loss.backward()
                optimizer.step()
    return ConvHead(mean=mean, scale=scale, weight=weight.detach(), bias=bias.detach())


def in_chunks(maps: torch.Tensor, fn: Callable[[torch.Tensor, slice], torch.Tensor], chunk: int = 64) -> torch.Tensor:
    """``fn`` over row chunks, concatenated: bounds memory when outputs are upsampled to mask size."""
    with torch.no_grad():
        return torch.cat([fn(maps[s:s + chunk], slice(s, s + chunk)) for s in range(0, maps.shape[0], chunk)])
