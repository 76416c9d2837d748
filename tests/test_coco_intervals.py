"""COCO box and mask mAP from per-image matches (kernels/coco_matches.py): the full image set
against pycocotools' COCOeval and torchmetrics, a resample with duplicated images against
COCOeval on a dataset where those images are physically duplicated, the lossless trim, and the
interval the detection probe records."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from pytest_visprobe.kernels.coco_matches import (
    AP50,
    AP75,
    IOU_THRESHOLDS,
    average_precision,
    per_image_matches,
    recall_thresholds,
    trimmed,
)
from pytest_visprobe.kernels.detection import coco_map, coco_scores
from pytest_visprobe.report import units

SIZE = 32
K = 4  # categories 0..3 have ground truth; 3 is never predicted; 4 is predicted and never true


def _box_mask(box):
    x1, y1, x2, y2 = box
    ys = np.arange(SIZE)[:, None] + 0.5
    xs = np.arange(SIZE)[None, :] + 0.5
    return (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)


def _data(n=40, seed=0, crowd=True, empty_images=(), informative=False):
    """Random boxes on a quarter-pixel grid (exact in float32, so every side computes the same
    IoUs), noisy detections of them plus false ones, a crowd region in every fourth image.

    ``empty_images``: images with detections but no ground truth. ``informative``: scores rise
    with the detection's quality, so low-scoring detections are mostly false (what the trim drops).
    """
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for i in range(n):
        g = 0 if i in empty_images else int(rng.integers(1, 4))
        xy = np.round(rng.uniform(0, 18, (g, 2)) * 4) / 4
        wh = np.round(rng.uniform(6, 14, (g, 2)) * 4) / 4
        boxes = np.concatenate([xy, np.minimum(xy + wh, SIZE)], 1).astype(np.float32)
        labels = rng.integers(0, K, g)
        crowd_flags = np.zeros(g, dtype=np.int64)
        if crowd and i % 4 == 1:
            boxes = np.concatenate([boxes, np.array([[0, 0, 16, 16]], np.float32)])
            labels = np.concatenate([labels, [int(rng.integers(0, K - 1))]])
            crowd_flags = np.concatenate([crowd_flags, [1]])
        target = {"boxes": torch.tensor(boxes.reshape(-1, 4)), "labels": torch.tensor(labels, dtype=torch.int64),
                  "iscrowd": torch.tensor(crowd_flags),
                  "masks": torch.tensor(np.array([_box_mask(b) for b in boxes]).reshape(-1, SIZE, SIZE))}
        targets.append(target)
        d = int(rng.integers(0, 9))
        if len(boxes):
            src = rng.integers(0, len(boxes), d)
            noise = np.round(rng.normal(0, 1.5, (d, 4)) * 4) / 4
            pbox = np.clip(boxes[src] + noise, 0, SIZE)
            plabels = np.where(rng.random(d) < 0.75, labels[src], rng.integers(0, K + 1, d))
            plabels = np.where(plabels == K - 1, K, plabels)  # category K-1 is never predicted
            quality = -np.abs(noise).sum(1) + 3 * (plabels == labels[src])
        else:
            xy = np.round(rng.uniform(0, 18, (d, 2)) * 4) / 4
            pbox = np.concatenate([xy, xy + 8], 1)
            plabels = rng.integers(0, K + 1, d)
            quality = np.full(d, -5.0)
        pbox = np.concatenate([np.minimum(pbox[:, :2], pbox[:, 2:]), np.maximum(pbox[:, :2], pbox[:, 2:])], 1)
        score = 1 / (1 + np.exp(-quality)) if informative else rng.random(d)
        preds.append({"boxes": torch.tensor(pbox.reshape(-1, 4), dtype=torch.float32),
                      "scores": torch.tensor(score, dtype=torch.float32),
                      "labels": torch.tensor(plabels, dtype=torch.int64),
                      "masks": torch.tensor(np.array([_box_mask(b) for b in pbox]).reshape(-1, SIZE, SIZE))})
    return preds, targets


def _reference(preds, targets, iou_type, rows=None):
    """COCOeval.stats[:3] straight from pycocotools, with torchmetrics' thresholds, on the images
    ``rows`` (default: all), each listed under a new image id: a duplicated row is a physically
    duplicated image."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    from torchmetrics.detection import MeanAveragePrecision

    rows = range(len(preds)) if rows is None else rows
    images, annotations, results = [], [], []
    for new_id, i in enumerate(rows):
        p, t = preds[i], targets[i]
        images.append({"id": new_id, "height": SIZE, "width": SIZE})
        for k, (box, label) in enumerate(zip(t["boxes"].tolist(), t["labels"].tolist())):
            x1, y1, x2, y2 = box
            ann = {"id": len(annotations) + 1, "image_id": new_id, "category_id": label,
                   "iscrowd": int(t["iscrowd"][k]), "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)}
            if iou_type == "segm":
                ann["segmentation"] = mask_utils.encode(np.asfortranarray(t["masks"][k].numpy().astype(np.uint8)))
                ann["area"] = float(mask_utils.area(ann["segmentation"]))
            annotations.append(ann)
        for k, (box, score, label) in enumerate(zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist())):
            x1, y1, x2, y2 = box
            res = {"image_id": new_id, "category_id": label, "score": score, "bbox": [x1, y1, x2 - x1, y2 - y1]}
            if iou_type == "segm":
                res["segmentation"] = mask_utils.encode(np.asfortranarray(p["masks"][k].numpy().astype(np.uint8)))
            results.append(res)
    labels = sorted({int(v) for d in [*preds, *targets] for v in d["labels"].tolist()})
    defaults = MeanAveragePrecision()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in labels]}
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iou_type)
        ev.params.iouThrs = np.array(defaults.iou_thresholds, dtype=np.float64)
        ev.params.recThrs = np.array(defaults.rec_thresholds, dtype=np.float64)
        ev.params.maxDets = [1, 10, 100]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return tuple(float(s) for s in ev.stats[:3])


def _ours(arrays, rows=None):
    chosen = arrays if rows is None else {k: np.asarray(v)[rows] for k, v in arrays.items()}
    return tuple(average_precision(**chosen, thresholds=t) for t in (slice(None), AP50, AP75))


def _only(items, iou_type):
    """Without masks for bbox (the reference reads boxes either way; segm ignores them)."""
    return items if iou_type == "segm" else [{k: v for k, v in d.items() if k != "masks"} for d in items]


def test_thresholds_are_torchmetrics_defaults():
    from torchmetrics.detection import MeanAveragePrecision

    defaults = MeanAveragePrecision()
    assert list(IOU_THRESHOLDS) == defaults.iou_thresholds
    assert recall_thresholds().tolist() == defaults.rec_thresholds
    assert IOU_THRESHOLDS[AP50] == 0.5 and IOU_THRESHOLDS[AP75] == 0.75


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_full_image_set_equals_cocoeval_and_torchmetrics(iou_type):
    preds, targets = _data()
    preds = _only(preds, iou_type)
    targets = _only(targets, iou_type)
    matches = per_image_matches(preds, targets, iou_type)
    # what the data exercises: crowd regions, a category never predicted, one never true
    assert (matches.ignored != 0).any()
    assert set(matches.categories) == set(range(K + 1))
    assert matches.gt_count[:, K].sum() == 0 and (matches.category == K).any()
    assert matches.gt_count[:, K - 1].sum() > 0 and not (matches.category == K - 1).any()
    reference = _reference(preds, targets, iou_type)
    assert 0.02 < reference[0] < 0.9 and len(set(reference)) == 3  # a non-trivial case
    assert _ours(matches.arrays()) == pytest.approx(reference, abs=1e-12)
    assert matches.stats[:3] == pytest.approx(reference, abs=1e-12)
    tm = coco_map(preds, targets, iou_type)  # float32 results
    assert _ours(matches.arrays()) == pytest.approx((tm["map"], tm["map_50"], tm["map_75"]), abs=1e-6)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_resample_with_duplicates_equals_cocoeval_on_physically_duplicated_images(iou_type):
    preds, targets = _data(seed=1)
    preds, targets = _only(preds, iou_type), _only(targets, iou_type)
    arrays = per_image_matches(preds, targets, iou_type).arrays()
    rng = np.random.default_rng(2)
    for rows in (np.array([0, 0, 3, 5, 5, 5, *rng.integers(0, 40, 34)]), rng.integers(0, 40, 40)):
        reference = _reference(preds, targets, iou_type, rows)
        assert _ours(arrays, rows) == pytest.approx(reference, abs=1e-12)
        assert _ours(trimmed(arrays), rows)[0] == pytest.approx(reference[0], abs=1e-12)
        assert _ours(trimmed(arrays, AP50), rows)[1] == pytest.approx(reference[1], abs=1e-12)


def test_the_trim_is_lossless_on_resamples():
    preds, targets = _data(n=60, seed=3, informative=True)
    arrays = per_image_matches(_only(preds, "bbox"), _only(targets, "bbox")).arrays()
    full = trimmed(arrays)
    at_50 = trimmed(arrays, AP50)
    real = int((arrays["category"] >= 0).sum())
    assert int((full["category"] >= 0).sum()) < 0.8 * real  # it does drop detections here
    assert int((at_50["category"] >= 0).sum()) <= int((full["category"] >= 0).sum())
    assert full["score"].dtype == np.float32 and at_50["matched"].dtype == np.uint8
    rng = np.random.default_rng(4)
    for rows in rng.integers(0, 60, (50, 60)):
        expected = _ours(arrays, rows)
        assert _ours(full, rows)[0] == expected[0]
        assert _ours(full, rows)[2] == expected[2]
        assert _ours(at_50, rows)[1] == expected[1]
    # without crowd regions nothing is ignored, and the ignored bits are not stored at all
    preds, targets = _data(n=30, seed=8, crowd=False, informative=True)
    arrays = per_image_matches(_only(preds, "bbox"), _only(targets, "bbox")).arrays()
    assert "ignored" in full and "ignored" not in trimmed(arrays)
    for rows in rng.integers(0, 30, (20, 30)):
        assert _ours(trimmed(arrays), rows)[0] == _ours(arrays, rows)[0]


def test_images_without_ground_truth_count_unlike_torchmetrics_segm():
    """COCO lists every image, so false positives on an image without ground truth lower the
    mAP; torchmetrics' segm conversion leaves such images out (its box conversion does not)."""
    preds, targets = _data(seed=5, empty_images=(2, 7, 11))
    for iou_type in ("bbox", "segm"):
        p, t = _only(preds, iou_type), _only(targets, iou_type)
        ours = per_image_matches(p, t, iou_type).stats[0]
        assert ours == pytest.approx(_reference(p, t, iou_type)[0], abs=1e-12)
        tm = coco_map(p, t, iou_type)["map"]
        if iou_type == "bbox":
            assert ours == pytest.approx(tm, abs=1e-6)
        else:  # torchmetrics scores the images with ground truth only; their false positives are lost
            with_gt = [i for i in range(len(p)) if i not in (2, 7, 11)]
            assert tm == pytest.approx(_reference(p, t, iou_type, with_gt)[0], abs=1e-6)
            assert ours < tm


def test_unit_statistics_interval_and_paired_test():
    preds, targets = _data(n=60, seed=6, informative=True)
    scores, stats = coco_scores(_only(preds, "bbox"), _only(targets, "bbox"))
    for key in ("map", "map_50"):
        assert stats[key].value() == pytest.approx(scores[key], abs=1e-12)
        low, high = units.interval(stats[key], np.random.default_rng(0), 300, 0.95)
        assert low < scores[key] < high
        same = units.paired_bootstrap(stats[key], stats[key], higher_is_better=True,
                                      rng=np.random.default_rng(1), resamples=200, level=0.95)
        assert same.drop == 0 and same.low == same.high == 0 and same.p_value == 1.0
    stored = {k: units.decode_array(units.encode_array(v)) for k, v in stats["map"].arrays.items()}
    assert units.UnitStats("coco_map", "test image", stored).value() == stats["map"].value()


def test_no_ground_truth_gives_no_units_and_says_why():
    preds, targets = _data(n=4, seed=7, crowd=False, empty_images=(0, 1, 2, 3))
    scores, stats = coco_scores(_only(preds, "bbox"), _only(targets, "bbox"))
    assert scores["map"] == -1 and stats == {"map": None, "map_50": None}
    with pytest.raises(ValueError, match="no ground truth"):
        average_precision(**per_image_matches(_only(preds, "bbox"), _only(targets, "bbox")).arrays())


def test_detection_probe_records_a_bootstrap_interval_over_test_images(suite):
    from pytest_visprobe.runner.options import ENCODER_OPTION

    result = suite.run(f"{ENCODER_OPTION}=conv.py", "suites/test_localization.py", "-k",
                       "test_detection or test_instance", limit=40)
    result.assert_outcomes(passed=2)
    records = suite.scorecard()["records"]
    assert {(r["probe"], r["metric"]) for r in records} == {
        ("detection_probe", "mAP"), ("detection_probe", "AP50"), ("instance_segmentation_probe", "mask_mAP")}
    for record in records:
        interval = record["interval"]
        assert interval["method"].startswith("bootstrap over test images")
        assert interval["low"] <= record["value"] <= interval["high"] and interval["low"] < interval["high"]
        assert record["units"]["statistic"] in ("coco_map", "coco_ap50") and record["units"]["n"] == 40
        assert record.get("uncertainty") is None
