"""Region probes: object label and attributes from RoI-pooled features of ground-truth boxes.

The semantic counterpart of the dense probes on the same images and the same map: each
object's feature is ``roi_align`` of the frozen map over its box (``roi_size``² cells, so the
region keeps a little layout), and the linear probes of semantics.py are fitted on them.
Boxes come from the annotations, so these probes measure *what*, never *where*.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch

from ..results import Metric
from .semantics import attribute_probe, label_probe


def region_features(maps: torch.Tensor, boxes: Sequence[np.ndarray], *, image_size: tuple[int, int],
                    roi_size: int) -> torch.Tensor:
    """``[sum K_i, C·roi_size²]``: every box of every image, in image then box order."""
    from torchvision.ops import roi_align

    h, w = maps.shape[-2:]
    img_h, img_w = image_size
    # boxes to map cells per axis: the map covers the whole image, even if the encoder squashed it
    scale = torch.tensor([w / img_w, h / img_h, w / img_w, h / img_h])
    rois = [torch.as_tensor(np.asarray(b, dtype=np.float32).reshape(-1, 4)) * scale for b in boxes]
    pooled = roi_align(maps.float(), rois, output_size=roi_size, spatial_scale=1.0,
                       sampling_ratio=2, aligned=True)
    return pooled.flatten(1)


def region_label_probe(train_x, train_labels, test_x, test_labels, *, n_classes: int, config, seed: int) -> Metric:
    """Top-1 of a linear probe on region features; one sample per ground-truth object."""
    test_y = np.concatenate(test_labels)
    metric, head = label_probe(train_x, np.concatenate(train_labels), test_x, test_y,
                               n_classes=n_classes, config=config, seed=seed)
    correct = (head.logits(test_x).argmax(dim=1).numpy() == test_y).astype(np.float64)  # per box
    return dataclasses.replace(metric, probe="region_label_probe", per_sample=correct)


def region_attribute_probe(train_x, train_attributes, test_x, test_attributes, *, attribute_names,
                           config, seed: int) -> Metric:
    """Macro mAP of per-attribute linear probes on region features."""
    metric = attribute_probe(train_x, np.concatenate(train_attributes), test_x, np.concatenate(test_attributes),
                             attribute_names=attribute_names, config=config, seed=seed)
    return dataclasses.replace(metric, probe="region_attribute_probe")
