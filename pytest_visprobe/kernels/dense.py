"""A linear (1×1 conv) head trained on cached feature maps: the one head family of the dense probes.

Why linear: the probes ask what the frozen map already holds at each location, so the head
must not add spatial reasoning of its own. Segmentation, detection and instance masks all read
the map through such a head; only the targets and the loss differ. Training is seeded
minibatch AdamW on the cached maps (no forward pass through the encoder), on the CPU in seconds.

The maps may be float16 and memory-mapped (features.py): everything here reads them a batch
or a chunk of rows at a time, in float32, and gives the touched pages back after each one, so
memory stays bounded by the batch, not the map set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F

from pytest_visprobe.mapped import release

if TYPE_CHECKING:
    from pytest_visprobe.kernels.headfit import HeadFit

CHUNK_BYTES = 64 << 20  # float32 bytes of map per chunk in the streaming passes


@dataclass(frozen=True)
class ConvHead:
    """Per-channel standardisation followed by a 1×1 convolution ``[K, C]``."""

    mean: torch.Tensor  # [C]
    scale: torch.Tensor  # [C]
    weight: torch.Tensor  # [K, C]
    bias: torch.Tensor  # [K]
    fit: "HeadFit | None" = None  # how well it fits its train maps (kernels/headfit.py), set by its task

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        """``[N, C, h, w]`` → logits ``[N, K, h, w]``."""
        return _apply(maps, self.mean, self.scale, self.weight, self.bias)


def _apply(maps, mean, scale, weight, bias):
    x = (maps.float() - mean[:, None, None]) / scale[:, None, None]
    return F.conv2d(x, weight[:, :, None, None], bias)


def channel_standardizer(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Train-split mean and std (unbiased) per channel over images and positions; constant
    channels get 1. Two streaming passes over row chunks, accumulated in float64."""
    count = maps.shape[0] * maps.shape[2] * maps.shape[3]
    total = torch.zeros(maps.shape[1], dtype=torch.float64)
    for chunk in row_chunks(maps):
        total += chunk.double().sum(dim=(0, 2, 3))
    mean = total / count
    squares = torch.zeros_like(total)
    for chunk in row_chunks(maps):
        squares += (chunk.double() - mean[:, None, None]).square().sum(dim=(0, 2, 3))
    scale = (squares / max(count - 1, 1)).sqrt()
    scale = torch.where(scale > 1e-8, scale, torch.ones_like(scale))
    return mean.float(), scale.float()


def row_chunks(maps: torch.Tensor):
    """``maps`` in chunks of about ``CHUNK_BYTES`` (as float32), the pages released after each."""
    step = chunk_rows(maps)
    for start in range(0, maps.shape[0], step):
        yield maps[start:start + step]
        release(maps)


def chunk_rows(maps: torch.Tensor) -> int:
    return max(1, CHUNK_BYTES // max(1, 4 * maps[:1].numel()))


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
                release(maps)
                loss.backward()
                optimizer.step()
    return ConvHead(mean=mean, scale=scale, weight=weight.detach(), bias=bias.detach())


def in_chunks(maps: torch.Tensor, fn: Callable[[torch.Tensor, slice], torch.Tensor], chunk: int = 64) -> torch.Tensor:
    """``fn`` over row chunks, concatenated: bounds memory when outputs are upsampled to mask size."""
    outputs = []
    with torch.no_grad():
        for s in range(0, maps.shape[0], chunk):
            outputs.append(fn(maps[s:s + chunk], slice(s, s + chunk)))
            release(maps)
    return torch.cat(outputs)
