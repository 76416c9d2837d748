"""Region probes: object label and attributes from RoI-pooled features of ground-truth boxes.

The semantic counterpart of the dense probes on the same images and the same map: each
object's feature is ``roi_align`` of the frozen map over its box (``roi_size``² cells, so the
region keeps a little layout), and the label and attribute probes' linear heads are fitted on them (probes/regions.py).
Boxes come from the annotations, so these probes measure *what*, never *where*.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def region_features(maps: torch.Tensor, boxes: Sequence[np.ndarray], *, image_size: tuple[int, int],
                    roi_size: int) -> torch.Tensor:
    """``[sum K_i, C·roi_size²]``: every box of every image, in image then box order."""
    from torchvision.ops import roi_align

    from pytest_visprobe.kernels.dense import chunk_rows
    from pytest_visprobe.mapped import release

    h, w = maps.shape[-2:]
    img_h, img_w = image_size
    # boxes to map cells per axis: the map covers the whole image, even if the encoder squashed it
    scale = torch.tensor([w / img_w, h / img_h, w / img_w, h / img_h])
    rois = [torch.as_tensor(np.asarray(b, dtype=np.float32).reshape(-1, 4)) * scale for b in boxes]
    pooled = []
    step = chunk_rows(maps)  # a chunk of images at a time: the maps may be larger than memory
    for start in range(0, maps.shape[0], step):
        pooled.append(roi_align(maps[start:start + step].float(), rois[start:start + step], output_size=roi_size,
                                spatial_scale=1.0, sampling_ratio=2, aligned=True))
        release(maps)
    return torch.cat(pooled).flatten(1)
