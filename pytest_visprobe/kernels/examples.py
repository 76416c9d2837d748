"""Per-image scores that rank a probe's test images for its contact sheet, and the choice of the
worst and best of them.

Each score is what the probe's metric is made of, per image, so the worst images are the ones
that pull the metric down: a signed margin for classifiers (positive iff right), per-image mIoU
for segmentation, the matched share of the ground truth for detection, the share of objects
named right for regions.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

#: a detection counts as a match at this IoU (COCO's AP50 criterion)
MATCH_IOU = 0.5


def margins(logits: torch.Tensor, truth: np.ndarray) -> np.ndarray:
    """Softmax probability of the true class minus the largest other class's: positive iff the
    prediction is right (ties aside), its size how sure the head was."""
    probs = torch.softmax(logits.float(), dim=1).numpy().astype(np.float64)
    truth = np.asarray(truth, dtype=np.int64)
    rows = np.arange(len(truth))
    true_p = probs[rows, truth]
    others = probs.copy()
    others[rows, truth] = -np.inf
    return true_p - others.max(axis=1)


def image_miou(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """Per image, the mean IoU over the labels in its truth or prediction (``[N, L]`` pixel counts)."""
    intersection, union = np.asarray(intersection, np.float64), np.asarray(union, np.float64)
    present = union > 0
    iou = np.divide(intersection, union, out=np.zeros_like(intersection), where=present)
    return iou.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a [n, 4]`` with every box of ``b [m, 4]`` (xyxy pixels)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def top_detections(pred: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` highest-scoring predicted boxes and labels of one image (score order)."""
    scores = np.asarray(pred["scores"], np.float64)
    order = np.argsort(-scores, kind="stable")[:n]
    return np.asarray(pred["boxes"], np.float64).reshape(-1, 4)[order], np.asarray(pred["labels"]).reshape(-1)[order]


def matched_share(pred_boxes: np.ndarray, pred_labels: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> float:
    """Share of ground-truth boxes matched (greedily, in prediction order) by a prediction of the
    same class with IoU >= 0.5; NaN for an image without ground truth."""
    labels = np.asarray(labels).reshape(-1)
    if labels.size == 0:
        return float("nan")
    iou = box_iou(pred_boxes, boxes)
    free = np.ones(labels.size, bool)
    matched = 0
    for i, label in enumerate(np.asarray(pred_labels).reshape(-1)):
        candidates = np.where(free & (labels == label) & (iou[i] >= MATCH_IOU), iou[i], -1.0)
        if candidates.max(initial=-1.0) >= MATCH_IOU:
            free[int(candidates.argmax())] = False
            matched += 1
    return matched / labels.size


def detection_scores(preds: Sequence[dict], boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> np.ndarray:
    """Per image, the matched share of its ground truth by its top-``n`` detections, ``n`` its
    number of ground-truth boxes (recall at precision's break-even point: an AP proxy per image)."""
    out = np.empty(len(preds))
    for i, (pred, b, l) in enumerate(zip(preds, boxes, labels)):
        top_boxes, top_labels = top_detections(pred, len(np.asarray(l).reshape(-1)))
        out[i] = matched_share(top_boxes, top_labels, b, l)
    return out


def worst_and_best(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` lowest scores (lowest first) and the ``k`` highest (highest first),
    disjoint; ties go to the lower index; NaN scores are never chosen."""
    scores = np.asarray(scores, np.float64)
    valid = np.flatnonzero(~np.isnan(scores))
    ascending = valid[np.argsort(scores[valid], kind="stable")]
    worst = ascending[:min(k, (len(valid) + 1) // 2)]
    rest = np.setdiff1d(valid, worst)
    best = rest[np.argsort(-scores[rest], kind="stable")][:k]
    return worst, best
