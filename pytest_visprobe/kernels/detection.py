"""Object detection probe: a centre heat-map head (CenterNet-style) on the frozen feature map.

Why this head: it is single-level and anchor-free, and every output is a linear read-out of
one map location — a per-class centre heat-map, a sub-cell centre offset and the box's log
size — so it trains on cached maps like the segmentation head, with no anchors, no
assignment rules across pyramid levels (FCOS) and no NMS (peaks are 3×3 local maxima).
What it measures is whether a location's feature says "an object of class c is centred here,
this big". Heat-map targets are elliptical Gaussians (TTFNet: σ = 0.54·side/6 per axis) and
the loss is CenterNet's penalty-reduced focal loss plus L1 on offset and log size at centres.

Box metrics are COCO's (pycocotools COCOeval as torchmetrics' MeanAveragePrecision runs it),
kept per image (coco_matches.py) so their interval resamples test images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pytest_visprobe.probes.spec import Metric
from pytest_visprobe.kernels.dense import ConvHead, fit_conv_head, in_chunks
from pytest_visprobe.kernels.headfit import HeadFit

_PRIOR = 0.01  # initial heat-map probability (focal-loss bias init, as in RetinaNet/CenterNet)
_GAUSS_ALPHA = 0.54


@dataclass(frozen=True)
class CentreTargets:
    """Training targets at map resolution for ``n_classes`` heat-maps + 2 offset + 2 log-size."""

    heatmap: torch.Tensor  # [N, K, h, w] in [0, 1]; exactly 1 at object centres
    regression: torch.Tensor  # [N, 4, h, w]: offset x, y (cells), log(width / W), log(height / H)
    centres: torch.Tensor  # [N, h, w] bool, where regression targets apply
    n_objects: torch.Tensor  # [N]


def centre_targets(boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray], *, n_classes: int,
                   map_size: tuple[int, int], image_size: tuple[int, int]) -> CentreTargets:
    """Encode xyxy pixel boxes of images ``image_size`` (H, W) onto an ``map_size`` (h, w) grid."""
    n, (h, w), (img_h, img_w) = len(boxes), map_size, image_size
    sx, sy = img_w / w, img_h / h
    heatmap = torch.zeros(n, n_classes, h, w)
    regression = torch.zeros(n, 4, h, w)
    centres = torch.zeros(n, h, w, dtype=torch.bool)
    count = torch.zeros(n)
    ys = torch.arange(h, dtype=torch.float32)[:, None]
    xs = torch.arange(w, dtype=torch.float32)[None, :]
    for i, (image_boxes, image_labels) in enumerate(zip(boxes, labels)):
        b = np.asarray(image_boxes, dtype=np.float32).reshape(-1, 4)
        order = np.argsort(-(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), kind="stable")  # small ones win a shared cell
        for k in order:
            x1, y1, x2, y2 = (float(v) for v in b[k])
            bw, bh = x2 - x1, y2 - y1
            if bw <= 0 or bh <= 0:
                continue
            cx, cy = (x1 + x2) / 2 / sx, (y1 + y2) / 2 / sy
            px, py = min(int(cx), w - 1), min(int(cy), h - 1)
            sigma_x = max(_GAUSS_ALPHA * bw / sx / 6, 0.5)
            sigma_y = max(_GAUSS_ALPHA * bh / sy / 6, 0.5)
            g = torch.exp(-((xs - px) ** 2) / (2 * sigma_x ** 2) - ((ys - py) ** 2) / (2 * sigma_y ** 2))
            c = int(image_labels[k])
            heatmap[i, c] = torch.maximum(heatmap[i, c], g)
            regression[i, :, py, px] = torch.tensor([cx - px, cy - py, np.log(bw / img_w), np.log(bh / img_h)])
            centres[i, py, px] = True
            count[i] += 1
    return CentreTargets(heatmap, regression, centres, count)


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel focal loss (α = 2, β = 4), summed; divide by #objects."""
    prob = torch.sigmoid(logits)
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    positive = target.eq(1).float()
    pos = positive * (1 - prob) ** 2 * log_p
    neg = (1 - positive) * (1 - target) ** 4 * prob ** 2 * log_not_p
    return -(pos + neg).sum()


def fit_detection_head(maps: torch.Tensor, targets: CentreTargets, *, config, seed: int) -> ConvHead:
    """The centre head; its ``fit`` holds the focal + L1 loss on all train maps (per object, as
    the training loss; no train mAP) and, as ``constant_loss``, the lowest loss a constant head
    (bias only, weight zero) reaches on the same targets (:func:`best_constant_loss`)."""
    n_classes = targets.heatmap.shape[1]
    bias = torch.zeros(n_classes + 4)
    bias[:n_classes] = -float(np.log((1 - _PRIOR) / _PRIOR))

    def loss(out: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        n_obj = targets.n_objects[rows].sum().clamp(min=1)
        heat, reg = loss_terms(out, targets, rows)
        return heat / n_obj + reg / n_obj

    head = fit_conv_head(maps, n_classes + 4, loss, epochs=config.epochs, batch_size=config.batch_size,
                         lr=config.lr, weight_decay=config.weight_decay, seed=seed, bias_init=bias)
    return replace(head, fit=detection_fit(head, maps, targets))


def loss_terms(out: torch.Tensor, targets: CentreTargets, rows) -> tuple[torch.Tensor, torch.Tensor]:
    """Focal heat-map loss and L1 on offset and log size at centres, each summed over ``rows``;
    the training loss is their sum over the batch's object count."""
    n_classes = targets.heatmap.shape[1]
    where = targets.centres[rows][:, None].expand(-1, 4, -1, -1)
    return (focal_loss(out[:, :n_classes], targets.heatmap[rows]),
            F.l1_loss(out[:, n_classes:][where], targets.regression[rows][where], reduction="sum"))


def detection_fit(head: ConvHead, maps: torch.Tensor, targets: CentreTargets) -> HeadFit:
    """The training loss over all train maps (chunks summed, then divided by all objects), and
    the best constant head's."""

    def per_chunk(m: torch.Tensor, rows: slice) -> torch.Tensor:
        heat, reg = loss_terms(head(m), targets, rows)
        return (heat + reg).double().reshape(1)

    n_obj = max(float(targets.n_objects.sum()), 1.0)
    return HeadFit(loss=float(in_chunks(maps, per_chunk).sum()) / n_obj, constant_loss=best_constant_loss(targets))


def best_constant_loss(targets: CentreTargets) -> float:
    """The lowest training loss of a head that ignores its input (one logit per output channel).

    Channels separate: a regression channel's L1 at centres is least at the targets' median; a
    heat-map class's focal loss at constant probability p is ``−(1−p)²·log p · P − p²·log(1−p) · S``
    with P its centres and S its ``Σ (1−y)⁴`` over the other cells, minimised over the logit
    (L-BFGS, float64). The detection head's chance level for its loss."""
    positives = torch.zeros(targets.heatmap.shape[1], dtype=torch.float64)
    spread = torch.zeros_like(positives)
    for start in range(0, targets.heatmap.shape[0], 64):  # bounded temporaries on large splits
        y = targets.heatmap[start:start + 64].double()
        positive = y.eq(1)
        positives += positive.sum(dim=(0, 2, 3))
        spread += torch.where(positive, torch.zeros_like(y), (1 - y) ** 4).sum(dim=(0, 2, 3))
    logit = torch.full_like(positives, -float(np.log((1 - _PRIOR) / _PRIOR)), requires_grad=True)

    def focal() -> torch.Tensor:
        return -(positives * (1 - torch.sigmoid(logit)) ** 2 * F.logsigmoid(logit)
                 + spread * torch.sigmoid(logit) ** 2 * F.logsigmoid(-logit)).sum()

    optimizer = torch.optim.LBFGS([logit], lr=1.0, max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-14,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = focal()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        heat = float(focal())
    at_centres = targets.regression.permute(1, 0, 2, 3)[:, targets.centres].double()  # [4, objects]
    l1 = 0.0
    if at_centres.shape[1]:
        l1 = float((at_centres - at_centres.median(dim=1, keepdim=True).values).abs().sum())
    return (heat + l1) / max(float(targets.n_objects.sum()), 1.0)


def decode_detections(out: torch.Tensor, *, n_classes: int, image_size: tuple[int, int],
                      max_detections: int) -> list[dict[str, torch.Tensor]]:
    """Head outputs ``[N, K+4, h, w]`` → per image ``{"boxes" xyxy, "scores", "labels"}``.

    Peaks are heat-map cells that equal the max of their 3×3 neighbourhood; the top
    ``max_detections`` over classes and cells are kept.
    """
    n, _, h, w = out.shape
    img_h, img_w = image_size
    heat = torch.sigmoid(out[:, :n_classes])
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    scores, flat = peaks.reshape(n, -1).topk(min(max_detections, n_classes * h * w), dim=1)
    labels = flat // (h * w)
    cell = flat % (h * w)
    py, px = (cell // w).float(), (cell % w).float()
    reg = out[:, n_classes:].reshape(n, 4, h * w).gather(2, cell[:, None].expand(-1, 4, -1))
    cx = (px + reg[:, 0]) * img_w / w
    cy = (py + reg[:, 1]) * img_h / h
    bw = reg[:, 2].clamp(max=2.0).exp() * img_w
    bh = reg[:, 3].clamp(max=2.0).exp() * img_h
    boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=-1)
    boxes[..., 0::2] = boxes[..., 0::2].clamp(0, img_w)
    boxes[..., 1::2] = boxes[..., 1::2].clamp(0, img_h)
    return [{"boxes": boxes[i], "scores": scores[i], "labels": labels[i]} for i in range(n)]


def fit_centre_head(maps: torch.Tensor, boxes, labels, *, n_classes: int, image_size: tuple[int, int],
                    config, seed: int) -> ConvHead:
    """The centre head trained on ``maps`` against the boxes' centre targets."""
    targets = centre_targets(boxes, labels, n_classes=n_classes, map_size=tuple(maps.shape[-2:]),
                             image_size=image_size)
    return fit_detection_head(maps, targets, config=config, seed=seed)


def detect(head: ConvHead, maps: torch.Tensor, *, n_classes: int, image_size: tuple[int, int],
           max_detections: int) -> list[dict[str, torch.Tensor]]:
    out = in_chunks(maps, lambda m, _: head(m))
    return decode_detections(out, n_classes=n_classes, image_size=image_size, max_detections=max_detections)


def ground_truth(boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                 masks: Sequence[np.ndarray] | None = None, *, crowd_boxes: Sequence[np.ndarray] | None = None,
                 crowd_labels: Sequence[np.ndarray] | None = None,
                 crowd_masks: Sequence[np.ndarray] | None = None) -> list[dict[str, torch.Tensor]]:
    """Per image ``{"boxes", "labels"[, "masks"][, "iscrowd"]}`` tensors, torchmetrics' target format.

    Crowd regions (``crowd_*``, COCO's ``iscrowd``) are appended with ``iscrowd = 1``: COCOeval
    then lets a detection that falls on one match it without counting as a true or false positive.
    """
    out = []
    for i, (b, l) in enumerate(zip(boxes, labels)):
        b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
        l = np.asarray(l, dtype=np.int64).reshape(-1)
        m = None if masks is None else np.asarray(masks[i], dtype=bool)
        crowd = np.zeros(len(l), dtype=np.int64)
        if crowd_boxes is not None:
            cb = np.asarray(crowd_boxes[i], dtype=np.float32).reshape(-1, 4)
            b = np.concatenate([b, cb])
            l = np.concatenate([l, np.asarray(crowd_labels[i], dtype=np.int64).reshape(-1)])
            crowd = np.concatenate([crowd, np.ones(len(cb), dtype=np.int64)])
            if m is not None:
                m = np.concatenate([m.reshape(-1, *m.shape[-2:]), np.asarray(crowd_masks[i], dtype=bool)])
        item = {"boxes": torch.as_tensor(b), "labels": torch.as_tensor(l)}
        if m is not None:
            item["masks"] = torch.as_tensor(m)
        if crowd_boxes is not None:
            item["iscrowd"] = torch.as_tensor(crowd)
        out.append(item)
    return out


def split_ground_truth(split, *, masks: bool = False) -> list[dict[str, torch.Tensor]]:
    """:func:`ground_truth` of a dataset Split, with its crowd regions when it has them."""
    crowd = {}
    if split.crowd_boxes is not None:
        crowd = {"crowd_boxes": split.crowd_boxes, "crowd_labels": split.crowd_labels,
                 "crowd_masks": split.crowd_masks if masks else None}
    return ground_truth(split.boxes, split.box_labels, split.instance_masks if masks else None, **crowd)


def coco_map(preds: list[dict], targets: list[dict], iou_type: str = "bbox") -> dict[str, float]:
    """COCO mAP@[.5:.95], AP50 and AP75 (torchmetrics MeanAveragePrecision, pycocotools backend).

    The probes score with :func:`coco_scores` (per-image matches, so images can be resampled);
    this is the independent reference their tests compare with.
    """
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(iou_type=iou_type, backend="pycocotools")
    metric.update(preds, targets)
    result = metric.compute()
    return {key: float(result[key]) for key in ("map", "map_50", "map_75")}


#: what a COCO mAP bootstrap over test images holds fixed (shown with the interval)
RESAMPLING_NOTE = "each image's COCOeval matches fixed, precision/recall re-accumulated over the resampled images"


def coco_scores(preds: list[dict], targets: list[dict], iou_type: str = "bbox") -> tuple[dict[str, float], dict]:
    """COCO mAP@[.5:.95], AP50 and AP75 from one COCOeval run, and per-image ``UnitStats`` for
    mAP and AP50 (``{"map": ..., "map_50": ...}``, None without ground truth).

    Same numbers as :func:`coco_map` (torchmetrics' conversion and thresholds), except that
    for ``segm`` images without a ground-truth mask are evaluated too, as in COCO.
    """
    from pytest_visprobe.kernels.coco_matches import AP50, per_image_matches, trimmed
    from pytest_visprobe.report.units import UnitStats

    matches = per_image_matches(preds, targets, iou_type)
    scores = {"map": matches.stats[0], "map_50": matches.stats[1], "map_75": matches.stats[2]}
    if not matches.gt_count.any():  # COCO's -1: nothing to score, nothing to resample
        return scores, {"map": None, "map_50": None}
    units = {"map": UnitStats("coco_map", "test image", trimmed(matches.arrays()), note=RESAMPLING_NOTE),
             "map_50": UnitStats("coco_ap50", "test image", trimmed(matches.arrays(), AP50), note=RESAMPLING_NOTE)}
    return scores, units


def detection_probe(
    train_maps: torch.Tensor, train_boxes, train_labels, test_maps: torch.Tensor, test_boxes, test_labels,
    *, n_classes: int, image_size: tuple[int, int], config, seed: int, head: ConvHead | None = None,
    test_crowd_boxes=None, test_crowd_labels=None,
) -> list[Metric]:
    """Box mAP@[.5:.95] and AP50 of the centre head on the test split.

    ``head``: one already fitted by :func:`fit_centre_head` on these train maps, to share it.
    ``test_crowd_*``: the test images' crowd regions, ignored by the scoring as in COCOeval.
    """
    if head is None:
        head = fit_centre_head(train_maps, train_boxes, train_labels, n_classes=n_classes,
                               image_size=image_size, config=config, seed=seed)
    preds = detect(head, test_maps, n_classes=n_classes, image_size=image_size,
                   max_detections=config.max_detections)
    scores, units = coco_scores(preds, ground_truth(test_boxes, test_labels, crowd_boxes=test_crowd_boxes,
                                                    crowd_labels=test_crowd_labels))
    details = {"AP75": scores["map_75"], "feature_map_size": list(train_maps.shape[-2:]),
               **(head.fit.details() if head.fit is not None else {}),
               "image_size": list(image_size), "max_detections": config.max_detections,
               "head": "centre heat-map + offset + log-size (linear 1x1 conv)",
               "n_train": int(train_maps.shape[0]), "n_test": int(test_maps.shape[0]),
               "crowd_regions": "ignored (COCOeval)" if test_crowd_boxes is not None else "none in the data"}
    why = None if units["map"] else "no ground-truth boxes in the test split"
    return [Metric("detection_probe", "mAP", scores["map"], details=details, units=units["map"], uncertainty=why),
            Metric("detection_probe", "AP50", scores["map_50"], details=details, units=units["map_50"],
                   uncertainty=why)]
