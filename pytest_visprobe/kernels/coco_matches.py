"""COCO box and mask mAP from per-image match statistics, so test images can be resampled.

COCO's mAP is not a mean over images: COCOeval.evaluate matches each image's detections to its
ground truth (per category, per IoU threshold), and COCOeval.accumulate pools the matches of
all images into one precision/recall curve per category. The matching is per image, so a
bootstrap over test images only has to re-run the pooling: this module keeps, per image, each
detection's score, category and the IoU thresholds at which it is matched or ignored, and the
image's count of non-ignored ground truth per category, and :func:`average_precision`
reimplements accumulate + summarize (area 'all', at most 100 detections per image and
category) on any list of image rows, duplicates included.

The evaluation is the one torchmetrics' MeanAveragePrecision (pycocotools backend) runs: the
same conversion of the prediction and target dicts and the same thresholds (torchmetrics builds
them with float32 ``torch.linspace``, so e.g. its recall threshold 0.07 is 0.0700000003, not
pycocotools' float64 0.07; using torchmetrics' keeps the value it gave). One difference, on
purpose: for ``segm`` torchmetrics leaves images without a ground-truth mask out of the
evaluation, so false positives on them do not count; here every image is evaluated, as COCO
does with its own image list.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: torchmetrics' defaults (mean_ap.py), float32 linspace values as it passes them to COCOeval
IOU_THRESHOLDS: tuple[float, ...] = (0.5, 0.550000011920929, 0.6000000238418579, 0.6499999761581421,
                                     0.699999988079071, 0.75, 0.800000011920929, 0.8500000238418579,
                                     0.8999999761581421, 0.949999988079071)
MAX_DETECTIONS = (1, 10, 100)
AP50, AP75 = 0, 5  # indices of IoU 0.5 and 0.75 in IOU_THRESHOLDS


def recall_thresholds() -> np.ndarray:
    """torchmetrics' 101 recall thresholds, ``torch.linspace(0, 1, 101)`` in float32, as float64."""
    import torch

    return np.array(torch.linspace(0.0, 1.00, 101).tolist(), dtype=np.float64)


_REC_THRESHOLDS: np.ndarray | None = None


def _rec_thresholds() -> np.ndarray:
    global _REC_THRESHOLDS
    if _REC_THRESHOLDS is None:
        _REC_THRESHOLDS = recall_thresholds()
    return _REC_THRESHOLDS


# --------------------------------------------------------------------------- pycocotools


def coco_datasets(preds: list[dict], targets: list[dict], iou_type: str = "bbox"):
    """pycocotools ``COCO`` objects (ground truth, detections) of torchmetrics-format dicts.

    As torchmetrics' ``_get_coco_format``: boxes xyxy → xywh, area w·h (mask area for segm),
    ``iscrowd`` from the targets, annotation ids from 1, image id = index, categories = every
    label seen in either. Unlike it, every image is listed for segm too (see module docstring).
    """
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from torchvision.ops import box_convert

    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} prediction dicts but {len(targets)} target dicts (one per image each)")
    labels = sorted({int(v) for d in [*preds, *targets] for v in d["labels"].reshape(-1).tolist()})

    def dataset(items: list[dict], scores: bool) -> dict:
        images, annotations = [], []
        for image_id, item in enumerate(items):
            images.append({"id": image_id})
            image_labels = item["labels"].reshape(-1).tolist()
            if iou_type == "bbox":
                boxes = item["boxes"].reshape(-1, 4)
                geometry = (box_convert(boxes, "xyxy", "xywh") if boxes.numel() else boxes).tolist()
            else:
                masks = item["masks"].cpu().numpy().astype(np.uint8).reshape(-1, *item["masks"].shape[-2:])
                geometry = [mask_utils.encode(np.asfortranarray(m)) for m in masks]
                images[-1]["height"], images[-1]["width"] = (int(s) for s in item["masks"].shape[-2:])
            if len(geometry) != len(image_labels):
                raise ValueError(f"image {image_id}: {len(image_labels)} labels but {len(geometry)} "
                                 f"{'boxes' if iou_type == 'bbox' else 'masks'}")
            crowd = item.get("iscrowd")
            crowd = [0] * len(image_labels) if crowd is None else [int(c) for c in crowd.reshape(-1).tolist()]
            for k, label in enumerate(image_labels):
                g = geometry[k]
                annotation = {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                              "iscrowd": crowd[k],
                              "area": g[2] * g[3] if iou_type == "bbox" else float(mask_utils.area(g))}
                annotation["bbox" if iou_type == "bbox" else "segmentation"] = g
                if scores:
                    annotation["score"] = float(item["scores"].reshape(-1)[k])
                annotations.append(annotation)
        return {"images": images, "annotations": annotations,
                "categories": [{"id": c, "name": str(c)} for c in labels]}

    gt, dt = COCO(), COCO()
    gt.dataset, dt.dataset = dataset(targets, False), dataset(preds, True)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt.createIndex()
    return gt, dt


def coco_evaluation(gt, dt, iou_type: str = "bbox"):
    """COCOeval with torchmetrics' parameters, evaluated, accumulated and summarized (quietly)."""
    from pycocotools.cocoeval import COCOeval

    evaluation = COCOeval(gt, dt, iouType=iou_type)
    evaluation.params.iouThrs = np.array(IOU_THRESHOLDS, dtype=np.float64)
    evaluation.params.recThrs = _rec_thresholds().copy()
    evaluation.params.maxDets = list(MAX_DETECTIONS)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


# --------------------------------------------------------------------------- per-image rows


@dataclass(frozen=True)
class CocoMatches:
    """Per-image rows of COCOeval's matches (area 'all', ≤ 100 detections per image and category).

    Row i is test image i. ``score``/``category``/``matched``/``ignored`` are ``[n, D]``, each
    image's detections padded to the longest list with score NaN and category -1; within an
    image a category's detections keep COCOeval's order (score-sorted, stable), which is what
    its tie-breaking needs. ``category`` is a column of ``gt_count``; bit t of ``matched``
    (``ignored``) says the detection is matched (ignored, e.g. on a crowd region) at IoU
    threshold t. ``gt_count[i, k]``: image i's non-ignored ground truth of category k.
    ``categories[k]`` is the label of column k.
    """

    score: np.ndarray
    category: np.ndarray
    matched: np.ndarray
    ignored: np.ndarray
    gt_count: np.ndarray
    categories: tuple[int, ...]
    stats: tuple[float, ...]  # COCOeval.stats of the full image set (the point values)

    def arrays(self) -> dict[str, np.ndarray]:
        """The keyword arrays of the ``coco_*`` unit statistics."""
        return {"score": self.score, "category": self.category, "matched": self.matched,
                "ignored": self.ignored, "gt_count": self.gt_count}


def per_image_matches(preds: list[dict], targets: list[dict], iou_type: str = "bbox") -> CocoMatches:
    """Run COCOeval once and keep its per-image matches (see :class:`CocoMatches`)."""
    gt, dt = coco_datasets(preds, targets, iou_type)
    evaluation = coco_evaluation(gt, dt, iou_type)
    p = evaluation.params
    n_images, n_areas = len(p.imgIds), len(p.areaRng)
    if list(p.imgIds) != list(range(n_images)) or p.areaRngLbl[0] != "all" or p.maxDets[-1] != MAX_DETECTIONS[-1]:
        raise AssertionError("unexpected COCOeval parameters")  # our own construction guarantees them
    n_thresholds = len(p.iouThrs)
    rows: list[list[tuple[float, int, int, int]]] = [[] for _ in range(n_images)]
    gt_count = np.zeros((n_images, len(p.catIds)), dtype=np.int64)
    weights = 1 << np.arange(n_thresholds)
    for k in range(len(p.catIds)):
        for i in range(n_images):
            e = evaluation.evalImgs[k * n_areas * n_images + i]  # area index 0: 'all'
            if e is None:
                continue
            gt_count[i, k] = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
            matched = (np.asarray(e["dtMatches"]) > 0).astype(np.int64).T @ weights
            ignored = np.asarray(e["dtIgnore"]).astype(np.int64).T @ weights
            rows[i].extend((float(s), k, int(m), int(g)) for s, m, g in zip(e["dtScores"], matched, ignored))
    width = max([len(r) for r in rows] + [0])
    score = np.full((n_images, width), np.nan, dtype=np.float64)
    category = np.full((n_images, width), -1, dtype=np.int64)
    matched_bits = np.zeros((n_images, width), dtype=np.int64)
    ignored_bits = np.zeros((n_images, width), dtype=np.int64)
    for i, r in enumerate(rows):
        if r:
            score[i, :len(r)], category[i, :len(r)], matched_bits[i, :len(r)], ignored_bits[i, :len(r)] = zip(*r)
    return CocoMatches(score, category, matched_bits, ignored_bits, gt_count, tuple(int(c) for c in p.catIds),
                       tuple(float(s) for s in evaluation.stats))


def trimmed(arrays: Mapping[str, np.ndarray], thresholds=slice(None)) -> dict[str, np.ndarray]:
    """The rows without detections that cannot change the AP at ``thresholds``, in compact dtypes.

    A detection that is a false positive at every chosen threshold and scores strictly below
    every detection of its category that is a true positive at some chosen threshold (in any
    image) sorts after that category's last true positive in every resample: it lowers only
    precisions past the last recall step, which interpolation (the max from the right) never
    reads. Dropping it leaves every resample's AP as it was. Bits of unchosen thresholds are
    cleared; categories without ground truth anywhere lose their detections (never scored).
    Scores are float32 when that is exact (torchmetrics' inputs are float32); ``ignored`` is
    left out when no detection is ignored (no crowd regions).
    """
    index = np.arange(len(IOU_THRESHOLDS))[thresholds]
    index = np.atleast_1d(index)
    mask = int(np.sum(1 << index))
    score = np.asarray(arrays["score"], dtype=np.float64)
    category = np.asarray(arrays["category"]).astype(np.int64)
    matched = np.asarray(arrays["matched"]).astype(np.int64) & mask
    ignored = np.asarray(arrays["ignored"]).astype(np.int64) & mask if "ignored" in arrays else 0 * matched
    gt_count = np.asarray(arrays["gt_count"])
    real = category >= 0
    tp_any = (matched & ~ignored & mask) != 0
    fp_all = (~matched & ~ignored & mask) == mask
    keep = real.copy()
    has_gt = gt_count.sum(axis=0) > 0
    for k in range(gt_count.shape[1]):
        of_k = real & (category == k)
        if not has_gt[k]:
            keep &= ~of_k
            continue
        tp_scores = score[of_k & tp_any]
        floor = tp_scores.min() if tp_scores.size else np.inf
        keep &= ~(of_k & fp_all & (score < floor))
    width = int(keep.sum(axis=1).max()) if keep.size else 0
    n = score.shape[0]
    out_score = np.full((n, width), np.nan)
    out_category = np.full((n, width), -1, dtype=np.int64)
    out_matched = np.zeros((n, width), dtype=np.int64)
    out_ignored = np.zeros((n, width), dtype=np.int64)
    for i in range(n):
        kept = keep[i]
        m = int(kept.sum())
        out_score[i, :m], out_category[i, :m] = score[i, kept], category[i, kept]
        out_matched[i, :m], out_ignored[i, :m] = matched[i, kept], ignored[i, kept]
    f32 = out_score.astype(np.float32)
    exact = np.array_equal(f32.astype(np.float64), out_score, equal_nan=True)
    bits = np.uint8 if mask < 256 else np.uint16
    n_categories = gt_count.shape[1]
    return {"score": f32 if exact else out_score,
            "category": out_category.astype(np.int8 if n_categories < 128 else np.int16 if n_categories < 2 ** 15
                                            else np.int32),
            "matched": out_matched.astype(bits),
            **({"ignored": out_ignored.astype(bits)} if out_ignored.any() else {}),
            "gt_count": gt_count.astype(np.uint8 if gt_count.max(initial=0) < 256 else np.int32)}


# --------------------------------------------------------------------------- the statistic


def average_precision(score: np.ndarray, category: np.ndarray, matched: np.ndarray, gt_count: np.ndarray,
                      ignored: np.ndarray | None = None, thresholds=slice(None)) -> float:
    """COCOeval.accumulate + summarize (area 'all', maxDet 100) on these image rows.

    Per category with ground truth in the rows: its detections in row order, mergesorted by
    descending score (COCO's tie order), true positives (matched, not ignored) and false
    positives (neither) cumulated, precision made monotone from the right and read at the
    first rank reaching each recall threshold (0 past the end). The mean over the chosen IoU
    thresholds, recall thresholds and categories is COCOeval.stats[0] (all thresholds),
    stats[1] (``AP50``) or stats[2] (``AP75``), summed in COCO's order. ``ignored`` None:
    no detection is ignored.

    Only the ranks of true positives are visited (the speed of a 1,000-resample bootstrap):
    a recall threshold is first reached at a true positive, and a false positive or ignored
    detection never has a higher precision than the rank before it, so the maximum from the
    right is always taken at a true positive. The precisions there are COCO's own floats
    (same integer counts, same divisions).
    """
    index = np.atleast_1d(np.arange(len(IOU_THRESHOLDS))[thresholds])
    rec = _rec_thresholds()
    npig = np.asarray(gt_count).sum(axis=0)
    valid = np.flatnonzero(npig > 0)
    if valid.size == 0:
        raise ValueError("no ground truth in this resample")
    category = np.asarray(category).ravel()
    score = np.asarray(score).ravel()
    chosen = int(np.sum(1 << index))
    matched = np.asarray(matched).ravel().astype(np.uint16)
    ignored = (np.zeros_like(matched) if ignored is None
               else np.asarray(ignored).ravel().astype(np.uint16) & np.uint16(chosen))
    true_positive = matched & ~ignored & np.uint16(chosen)
    shifts = index[:, None].astype(np.uint16)
    precision = np.zeros((index.size, rec.size, valid.size))
    for j, k in enumerate(valid):
        of_k = np.flatnonzero(category == k)
        if of_k.size == 0:
            continue  # no detections: precision 0 at every recall threshold
        order = of_k[np.argsort(-score[of_k], kind="mergesort")]  # float32 scores sort as COCO's float64
        t_of, rank = np.nonzero(((true_positive[order][None] >> shifts) & 1).astype(bool))  # by threshold
        if rank.size == 0:
            continue
        found = np.bincount(t_of, minlength=index.size)  # true positives per threshold
        first = np.concatenate([[0], np.cumsum(found)[:-1]])
        tp = np.arange(1, rank.size + 1) - first[t_of]  # the how-manieth true positive at its threshold
        fp = rank + 1 - tp
        if ignored[order].any():
            fp = fp - np.cumsum((ignored[order][None] >> shifts) & 1, axis=1, dtype=np.int64)[t_of, rank]
        tp, fp = tp.astype(np.float64), fp.astype(np.float64)
        pr = np.zeros((index.size, int(found.max())))  # [threshold, true positive], 0-padded
        pr[t_of, tp.astype(np.int64) - 1] = tp / (fp + tp + np.spacing(1))
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # padding 0 never raises a max
        # the recall at the l-th true positive is l / npig whatever the threshold
        at = np.searchsorted(np.arange(1, pr.shape[1] + 1) / npig[k], rec, side="left")
        reached = at[None, :] < found[:, None]
        precision[:, :, j] = np.where(reached, pr[:, np.minimum(at, pr.shape[1] - 1)], 0.0)
    return float(np.mean(precision))
