"""Instance segmentation probe: each detected box, filled with the pixels of its class.

The light-head version of instance masks: the centre head (detection.py) gives boxes, classes
and scores; the linear segmentation head (segmentation.py) gives a class per pixel; a
detection's mask is the pixels inside its box that the segmentation head gives its class.
Both heads are linear read-outs of the same frozen map, so no extra head is trained. Two
touching objects of one class inside one box are not told apart — a limit of the light head,
which the score shows rather than hides. Metric: COCO mask mAP@[.5:.95] (pycocotools COCOeval,
per-image matches kept for the interval), crowd regions ignored as in COCOeval.
"""

from __future__ import annotations

import numpy as np
import torch

from pytest_visprobe.probes.spec import Metric
from pytest_visprobe.kernels.dense import ConvHead
from pytest_visprobe.kernels.detection import coco_scores, detect, fit_centre_head, split_ground_truth
from pytest_visprobe.kernels.segmentation import fit_segmentation_head, predict_masks


def box_class_masks(detections: list[dict], semantic: torch.Tensor) -> list[dict]:
    """Add ``masks [D, H, W]`` to each image's detections: box ∩ (semantic == label + 1)."""
    h, w = semantic.shape[-2:]
    ys = torch.arange(h, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, :] + 0.5
    out = []
    for det, sem in zip(detections, semantic):
        b = det["boxes"]
        inside = ((xs >= b[:, 0, None, None]) & (xs < b[:, 2, None, None])
                  & (ys >= b[:, 1, None, None]) & (ys < b[:, 3, None, None]))
        masks = inside & (sem[None] == det["labels"][:, None, None] + 1)
        out.append({**det, "masks": masks})
    return out


def instance_segmentation_probe(
    train_maps: torch.Tensor, train, test_maps: torch.Tensor, test,
    *, n_classes: int, config, seed: int, detector: ConvHead | None = None, segmenter: ConvHead | None = None,
) -> Metric:
    """Mask mAP@[.5:.95] on the test split; ``train``/``test`` are dataset Splits with masks.

    ``detector``/``segmenter``: the detection and segmentation probes' heads on these train
    maps, to share them; each is fitted here when not given.
    """
    image_size = tuple(np.asarray(test.semantic_masks).shape[-2:])
    if detector is None:
        detector = fit_centre_head(train_maps, train.boxes, train.box_labels, n_classes=n_classes,
                                   image_size=image_size, config=config, seed=seed)
    if segmenter is None:
        segmenter = fit_segmentation_head(train_maps, train.semantic_masks, n_classes=n_classes,
                                          config=config, seed=seed)
    detections = detect(detector, test_maps, n_classes=n_classes, image_size=image_size,
                        max_detections=config.max_detections)
    preds = box_class_masks(detections, predict_masks(segmenter, test_maps, image_size))
    scores, units = coco_scores(preds, split_ground_truth(test, masks=True), iou_type="segm")
    details = {"mask_AP50": scores["map_50"], "mask_AP75": scores["map_75"],
               "head": "centre-head boxes filled with the linear segmentation head's class pixels",
               "n_train": int(train_maps.shape[0]), "n_test": int(test_maps.shape[0]),
               "crowd_regions": "ignored (COCOeval)" if test.crowd_boxes is not None else "none in the data"}
    return Metric("instance_segmentation_probe", "mask_mAP", scores["map"], details=details, units=units["map"],
                  uncertainty=None if units["map"] else "no ground-truth masks in the test split")
