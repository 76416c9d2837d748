"""Localization kernels against independent references, on data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pytest_visprobe.datasets import load_dataset
from pytest_visprobe.kernels.detection import (
    centre_targets,
    coco_map,
    decode_detections,
    detection_probe,
    ground_truth,
)
from pytest_visprobe.kernels.instances import box_class_masks
from pytest_visprobe.kernels.regions import region_features
from pytest_visprobe.probes.regions import region_label_top1 as region_label_probe
from pytest_visprobe.kernels.segmentation import per_class_iou, segmentation_probe
from pytest_visprobe.probes.heads import LinearProbeConfig, LocalizationConfig

CONFIG = LocalizationConfig()
N_CLASSES = 5


@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes", n_train=200, n_test=100, image_size=64)


def spatial_map(split, side=8):
    """A map that knows where things are: class shares and mean colour of each cell."""
    onehot = F.one_hot(torch.as_tensor(split.semantic_masks).long(), N_CLASSES + 1).permute(0, 3, 1, 2).float()
    rgb = torch.from_numpy(split.images.array).permute(0, 3, 1, 2).float() / 255
    return F.adaptive_avg_pool2d(torch.cat([onehot, rgb], dim=1), side)


def localizing_map(split, side=8):
    """``spatial_map`` plus, at each object's centre cell, its class, offset and log size."""
    t = centre_targets(split.boxes, split.box_labels, n_classes=N_CLASSES, map_size=(side, side), image_size=(64, 64))
    return torch.cat([spatial_map(split, side), t.heatmap, t.regression], dim=1)


def tiled(maps):
    """The spatial-free control: each image's global mean repeated over the grid."""
    return maps.mean(dim=(2, 3), keepdim=True).expand_as(maps).contiguous()


# ------------------------------------------------------------------ segmentation


def numpy_miou(pred, target, n):
    cm = np.bincount(n * target.reshape(-1) + pred.reshape(-1), minlength=n * n).reshape(n, n)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
    return iou, np.nanmean(iou)


def test_per_class_iou_matches_numpy_confusion_matrix():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 5, (7, 16, 16))  # label 5 never occurs in truth
    pred = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, 5, target.shape))
    iou = per_class_iou(torch.as_tensor(pred), torch.as_tensor(target), 7)
    expected, _ = numpy_miou(pred, target, 7)
    np.testing.assert_allclose(iou, expected, rtol=1e-6)
    assert np.isnan(iou[5]) and np.isnan(iou[6])  # absent from both: left out of the mean


def test_segmentation_oracle_map_scores_one(shapes):
    # a map that *is* the one-hot mask: a linear head can read every pixel's class off it
    train, test = shapes.split("train"), shapes.split("test")
    onehot = lambda s: F.one_hot(torch.as_tensor(s.semantic_masks[:60]).long(), 6).permute(0, 3, 1, 2).float()
    metric = segmentation_probe(onehot(train), train.semantic_masks[:60], onehot(test), test.semantic_masks[:60],
                                class_names=shapes.class_names, config=CONFIG, seed=0)
    assert metric.value == pytest.approx(1.0, abs=1e-3)
    assert set(metric.details["per_class_iou"]) == {"background", *shapes.class_names}


def test_segmentation_probe_value_is_the_numpy_miou_of_its_predictions(shapes):
    from pytest_visprobe.kernels.segmentation import fit_segmentation_head, predict_masks

    train, test = shapes.split("train"), shapes.split("test")
    config = LocalizationConfig(epochs=5)
    head = fit_segmentation_head(spatial_map(train), train.semantic_masks, n_classes=5, config=config, seed=0)
    pred = predict_masks(head, spatial_map(test), (64, 64)).numpy()
    _, expected = numpy_miou(pred, test.semantic_masks.astype(np.int64), 6)
    metric = segmentation_probe(spatial_map(train), train.semantic_masks, spatial_map(test), test.semantic_masks,
                                class_names=shapes.class_names, config=config, seed=0)
    assert metric.value == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------ detection metrics vs pycocotools


def _cocoeval(preds, targets, iou_type):
    """COCO mAP straight from pycocotools on the same predictions (the reference)."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets)):
        h, w = 64, 64
        images.append({"id": i, "height": h, "width": w})
        for k, (box, label) in enumerate(zip(t["boxes"].tolist(), t["labels"].tolist())):
            x1, y1, x2, y2 = box
            ann = {"id": len(annotations) + 1, "image_id": i, "category_id": label, "iscrowd": 0,
                   "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)}
            if iou_type == "segm":
                rle = mask_utils.encode(np.asfortranarray(t["masks"][k].numpy().astype(np.uint8)))
                ann["segmentation"] = rle
                ann["area"] = float(mask_utils.area(rle))
            annotations.append(ann)
        for k, (box, score, label) in enumerate(zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist())):
            x1, y1, x2, y2 = box
            res = {"image_id": i, "category_id": label, "score": score, "bbox": [x1, y1, x2 - x1, y2 - y1]}
            if iou_type == "segm":
                res["segmentation"] = mask_utils.encode(np.asfortranarray(p["masks"][k].numpy().astype(np.uint8)))
            results.append(res)
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations,
                  "categories": [{"id": c} for c in range(N_CLASSES)]}
    gt.createIndex()
    dt = gt.loadRes(results)
    ev = COCOeval(gt, dt, iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev.stats[0], ev.stats[1]


def _noisy_predictions(split, rng, with_masks=False):
    targets = ground_truth(split.boxes, split.box_labels, split.instance_masks if with_masks else None)
    preds = []
    for t in targets:
        k = len(t["boxes"])
        # quarter-pixel noise: exact in float32, so both sides see the same IoUs
        boxes = t["boxes"] + torch.as_tensor(np.round(rng.normal(0, 2.0, (k, 4)) * 4) / 4, dtype=torch.float32)
        labels = torch.where(torch.as_tensor(rng.random(k) < 0.8), t["labels"],
                             torch.as_tensor(rng.integers(0, N_CLASSES, k)))
        pred = {"boxes": boxes.clamp(0, 64), "scores": torch.as_tensor(rng.random(k), dtype=torch.float32),
                "labels": labels}
        if with_masks:
            flip = torch.as_tensor(rng.random(t["masks"].shape) < 0.1)
            pred["masks"] = t["masks"] ^ (flip & torch.roll(t["masks"], 2, dims=-1))
        preds.append(pred)
    return preds, targets


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_coco_map_matches_pycocotools_cocoeval(shapes, iou_type):
    preds, targets = _noisy_predictions(shapes.split("test"), np.random.default_rng(1), iou_type == "segm")
    ours = coco_map(preds, targets, iou_type=iou_type)
    ref_map, ref_ap50 = _cocoeval(preds, targets, iou_type)
    assert 0.05 < ours["map"] < 0.95  # a non-trivial case
    assert ours["map"] == pytest.approx(ref_map, abs=1e-6)
    assert ours["map_50"] == pytest.approx(ref_ap50, abs=1e-6)


def test_perfect_predictions_score_one(shapes):
    targets = ground_truth(shapes.split("test").boxes, shapes.split("test").box_labels,
                           shapes.split("test").instance_masks)
    preds = [{**t, "scores": torch.ones(len(t["labels"]))} for t in targets]
    assert coco_map(preds, targets)["map"] == pytest.approx(1.0)
    assert coco_map(preds, targets, iou_type="segm")["map"] == pytest.approx(1.0)


def test_centre_targets_decode_back_to_the_boxes(shapes):
    # known answer for the head's encoding: decoding the targets gives back every box
    split = shapes.split("test")
    targets = centre_targets(split.boxes, split.box_labels, n_classes=N_CLASSES, map_size=(16, 16), image_size=(64, 64))
    out = torch.cat([targets.heatmap * 40 - 20, targets.regression], dim=1)
    dets = decode_detections(out, n_classes=N_CLASSES, image_size=(64, 64), max_detections=20)
    recovered = 0
    for det, boxes, labels in zip(dets, split.boxes, split.box_labels):
        top = det["scores"] > 0.5
        found = {(int(l), tuple(np.round(b.numpy(), 3))) for b, l in zip(det["boxes"][top], det["labels"][top])}
        truth = {(int(l), tuple(np.round(b, 3))) for b, l in zip(boxes, labels)}
        recovered += len(found & truth)
        assert found <= truth
    assert recovered >= 0.95 * sum(len(b) for b in split.boxes)  # two centres may share a cell


def test_detection_head_learns_from_an_oracle_map(shapes):
    train, test = shapes.split("train"), shapes.split("test")

    def oracle(split):
        t = centre_targets(split.boxes, split.box_labels, n_classes=N_CLASSES, map_size=(16, 16), image_size=(64, 64))
        return torch.cat([t.heatmap, t.regression], dim=1)

    metrics = detection_probe(oracle(train), train.boxes, train.box_labels, oracle(test), test.boxes, test.box_labels,
                              n_classes=N_CLASSES, image_size=(64, 64), config=CONFIG, seed=0)
    values = {m.metric: m.value for m in metrics}
    assert values["AP50"] > 0.9 and values["mAP"] > 0.6


def test_box_class_masks_fill_boxes_with_their_class():
    semantic = torch.zeros(1, 8, 8, dtype=torch.long)
    semantic[0, 1:4, 1:4] = 2  # class 1
    semantic[0, 5:7, 5:7] = 1  # class 0
    det = [{"boxes": torch.tensor([[0.0, 0.0, 8.0, 8.0], [4.0, 4.0, 8.0, 8.0]]),
            "labels": torch.tensor([1, 1]), "scores": torch.tensor([0.9, 0.5])}]
    masks = box_class_masks(det, semantic)[0]["masks"]
    assert torch.equal(masks[0], semantic[0] == 2)
    assert not masks[1].any()  # inside its box, no pixel of class 1


# ------------------------------------------------------------------ regions


def test_region_features_average_the_map_over_the_box():
    # on a map linear in x, bilinear RoI sampling is exact: the mean is the box centre's x
    maps = torch.arange(8, dtype=torch.float32).view(1, 1, 1, 8).expand(1, 1, 8, 8).contiguous()
    boxes = [np.array([[8.0, 8.0, 40.0, 24.0], [16.0, 0.0, 48.0, 64.0]], dtype=np.float32)]
    feats = region_features(maps, boxes, image_size=(64, 64), roi_size=1)
    # map cell j covers pixels [8j, 8j+8): pixel x sits at map coordinate x/8 - 0.5
    np.testing.assert_allclose(feats[:, 0].numpy(), [24 / 8 - 0.5, 32 / 8 - 0.5], atol=1e-5)


# ------------------------------------------------------------------ the contrast the probes exist for


def test_spatial_map_localizes_and_tiled_embedding_does_not_but_still_names_objects(shapes):
    train, test = shapes.split("train"), shapes.split("test")
    good = localizing_map(train), localizing_map(test)
    flat = tiled(good[0]), tiled(good[1])
    seg = {name: segmentation_probe(a, train.semantic_masks, b, test.semantic_masks,
                                    class_names=shapes.class_names, config=CONFIG, seed=0)
           for name, (a, b) in {"good": good, "flat": flat}.items()}
    det = {name: {m.metric: m.value for m in detection_probe(
        a, train.boxes, train.box_labels, b, test.boxes, test.box_labels,
        n_classes=N_CLASSES, image_size=(64, 64), config=CONFIG, seed=0)}
           for name, (a, b) in {"good": good, "flat": flat}.items()}
    region = {name: region_label_probe(
        region_features(a, train.boxes, image_size=(64, 64), roi_size=2), train.box_labels,
        region_features(b, test.boxes, image_size=(64, 64), roi_size=2), test.box_labels,
        n_classes=N_CLASSES, config=LinearProbeConfig(), seed=0)
        for name, (a, b) in {"good": good, "flat": flat}.items()}

    assert seg["good"].value > 0.5 and det["good"]["AP50"] > 0.8 and det["good"]["mAP"] > 0.5
    # where: the tiled map gives nothing beyond "background everywhere" and no usable boxes ...
    assert seg["flat"].value < seg["flat"].details["chance"] + 0.05
    assert det["flat"]["AP50"] < 0.05 and det["flat"]["mAP"] < 0.02
    # ... what: yet its regions still name their objects far above chance (0.2)
    assert region["good"].value > 0.9
    units = region["good"].units  # one row per test image: its boxes' correct count and box count
    assert units.unit == "test image" and units.n == len(test.boxes)
    assert units.arrays["denominator"].sum() == sum(len(b) for b in test.boxes)
    assert units.value() == pytest.approx(region["good"].value)
    assert region["flat"].value > 2.5 * (1 / N_CLASSES)


def test_region_features_map_each_axis_on_its_own():
    # an encoder that squashed 64×64 images to a 4×8 map: x and y scale differently
    maps = torch.arange(8, dtype=torch.float32).view(1, 1, 1, 8).expand(1, 1, 4, 8).contiguous()
    feats = region_features(maps, [np.array([[8.0, 0.0, 40.0, 64.0]], dtype=np.float32)], image_size=(64, 64), roi_size=1)
    np.testing.assert_allclose(feats[:, 0].numpy(), [24 / 8 - 0.5], atol=1e-5)
