"""Semantic segmentation probe: does the frozen feature map know *where* each class is?

A linear 1×1 conv head on the cached map, its logits upsampled (bilinear) to mask size and
trained with per-pixel cross-entropy; scored by mIoU over the test split (torchmetrics'
multiclass Jaccard index, one confusion matrix over all test pixels, ADE20K-style).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pytest_visprobe.probes.spec import Metric
from pytest_visprobe.kernels.dense import ConvHead, fit_conv_head, in_chunks
from pytest_visprobe.kernels.headfit import HeadFit


def fit_segmentation_head(
    maps: torch.Tensor, masks: np.ndarray, *, n_classes: int, config, seed: int
) -> ConvHead:
    """Train on ``maps [N, C, h, w]`` against ``masks [N, H, W]`` (0 = background, c+1 = class c).

    The head's ``fit``: pixel cross-entropy and mIoU on all train maps at the training mask size
    (:func:`training_targets`), chance the probe's "background everywhere" rule on those masks.
    """
    targets = torch.as_tensor(np.asarray(masks), dtype=torch.long)
    targets = training_targets(targets, config.train_mask_size)
    size = tuple(targets.shape[-2:])

    def loss(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(upsample(logits, size), targets[rows])

    head = fit_conv_head(maps, n_classes + 1, loss, epochs=config.epochs, batch_size=config.batch_size,
                         lr=config.lr, weight_decay=config.weight_decay, seed=seed)
    return replace(head, fit=segmentation_fit(head, maps, targets, n_classes + 1))


def segmentation_fit(head: ConvHead, maps: torch.Tensor, targets: torch.Tensor, n_labels: int) -> HeadFit:
    """Summed pixel cross-entropy and per-image IoU counts over train maps in chunks, pooled."""
    size = tuple(targets.shape[-2:])

    def per_image(m: torch.Tensor, rows: slice) -> torch.Tensor:
        logits = upsample(head(m), size)
        ce = F.cross_entropy(logits, targets[rows], reduction="none").flatten(1).sum(dim=1, dtype=torch.float64)
        inter, union = per_image_counts(logits.argmax(dim=1), targets[rows], n_labels)
        return torch.cat([ce[:, None], torch.as_tensor(inter, dtype=torch.float64),
                          torch.as_tensor(union, dtype=torch.float64)], dim=1)

    stats = in_chunks(maps, per_image).sum(dim=0).numpy()
    inter, union = stats[1:1 + n_labels], stats[1 + n_labels:]
    present = union > 0
    return HeadFit(loss=float(stats[0] / targets.numel()), score=float((inter[present] / union[present]).mean()),
                   chance=background_chance(targets))


def background_chance(masks: torch.Tensor) -> float:
    """The mIoU of predicting background everywhere: the background share on that label and 0 on
    every other label present in the truth."""
    return float((masks == 0).float().mean()) / int(torch.unique(masks).numel())


def training_targets(masks: torch.Tensor, max_side: int) -> torch.Tensor:
    """Masks subsampled (nearest) so the longer side is at most ``max_side``: the loss costs
    O(pixels), and logits upsampled from a coarse map carry no detail finer than that anyway.
    Evaluation always runs at full mask size."""
    h, w = masks.shape[-2:]
    if max(h, w) <= max_side:
        return masks
    size = (max(1, round(h * max_side / max(h, w))), max(1, round(w * max_side / max(h, w))))
    return F.interpolate(masks[:, None].float(), size=size, mode="nearest")[:, 0].long()


def upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def predict_masks(head: ConvHead, maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-pixel class index ``[N, H, W]`` (0 = background) at mask size."""
    return in_chunks(maps, lambda m, _: upsample(head(m), size).argmax(dim=1))


def per_class_iou(pred: torch.Tensor, target: torch.Tensor, n_labels: int) -> np.ndarray:
    """IoU of each label over all pixels (torchmetrics); NaN where a label is in neither."""
    from torchmetrics.functional.classification import multiclass_jaccard_index

    iou = multiclass_jaccard_index(pred.reshape(-1), target.reshape(-1).long(), num_classes=n_labels,
                                   average="none", zero_division=float("nan"))
    return iou.numpy().astype(np.float64)


def per_image_counts(pred: torch.Tensor, target: torch.Tensor, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image and label, pixel intersection and union ``[N, n_labels]`` (int64): summed over
    images they give the dataset-level IoU, so images can be resampled for an interval."""
    n = pred.shape[0]
    offset = (torch.arange(n)[:, None] * n_labels)
    pred_flat, target_flat = pred.reshape(n, -1).long(), target.reshape(n, -1).long()
    size = n * n_labels
    both = torch.bincount((offset + target_flat)[pred_flat == target_flat], minlength=size)
    predicted = torch.bincount((offset + pred_flat).ravel(), minlength=size)
    truth = torch.bincount((offset + target_flat).ravel(), minlength=size)
    inter = both.reshape(n, n_labels).numpy().astype(np.int64)
    union = (predicted + truth - both).reshape(n, n_labels).numpy().astype(np.int64)
    return inter, union


def segmentation_probe(
    train_maps: torch.Tensor, train_masks: np.ndarray, test_maps: torch.Tensor, test_masks: np.ndarray,
    *, class_names: Sequence[str], config, seed: int, head: ConvHead | None = None,
) -> Metric:
    """mIoU (background included, labels absent from both prediction and truth left out).

    ``head``: one already fitted by ``fit_segmentation_head`` on these train maps, to share it.
    """
    if head is None:
        head = fit_segmentation_head(train_maps, train_masks, n_classes=len(class_names), config=config, seed=seed)
    target = torch.as_tensor(np.asarray(test_masks), dtype=torch.long)
    pred = predict_masks(head, test_maps, tuple(target.shape[-2:]))
    names = ["background", *class_names]
    iou = per_class_iou(pred, target, len(names))
    present = ~np.isnan(iou)
    details = {
        "per_class_iou": {n: (None if np.isnan(v) else round(float(v), 4)) for n, v in zip(names, iou)},
        "pixel_accuracy": float((pred == target).float().mean()),
        "feature_map_size": list(train_maps.shape[-2:]),
        "mask_size": list(target.shape[-2:]),
        "chance": background_chance(target),
        "n_train": int(train_maps.shape[0]), "n_test": int(test_maps.shape[0]),
        **(head.fit.details() if head.fit is not None else {}),
    }
    from pytest_visprobe.report.units import UnitStats

    inter, union = per_image_counts(pred, target, len(names))
    units = UnitStats("miou", "test image", {"intersection": inter, "union": union})
    return Metric("segmentation_probe", "mIoU", float(iou[present].mean()), details=details, units=units)
