"""COCO crowd annotations are ignore regions: box and mask mAP equal pycocotools' COCOeval.

The test writes a small COCO file whose images are already square at the loader's size, so the
loader's crop is the identity and its targets are the file's own coordinates; the same
predictions then go through the project's scoring and through COCOeval on the file itself.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pytest_visprobe.datasets import load_dataset

S = 32  # image side = loader image_size: no resize, no crop


def rect(x0, y0, x1, y1):
    m = np.zeros((S, S), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def rle(mask):
    from pycocotools import mask as mask_utils

    out = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    out["counts"] = out["counts"].decode()
    return out


@pytest.fixture
def crowd_coco(tmp_path):
    """8 images, categories 1 and 2; every image has objects, most have a crowd region too."""
    rng = np.random.default_rng(3)
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    images, annotations = [], []

    def add(image_id, box, category, crowd):
        x0, y0, x1, y1 = box
        segmentation = rle(rect(*box)) if crowd else [[x0, y0, x1, y0, x1, y1, x0, y1]]
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                            "iscrowd": int(crowd), "segmentation": segmentation,
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)})

    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (S, S, 3), dtype=np.uint8)).save(images_dir / f"{i}.png")
        images.append({"id": 10 + i, "file_name": f"{i}.png", "width": S, "height": S})
        add(10 + i, (2, 2, 12, 12), 1, False)
        add(10 + i, (14, 3 + i % 3, 22, 13), 2, False)
        if i % 4 != 3:
            add(10 + i, (4, 18, 28, 30), 1 + i % 2, True)  # a crowd region, category alternating
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return images_dir, path


def predictions(split, seed):
    """Per image: jittered boxes near the objects, some on the crowd region, some random; box masks."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(len(split)):
        boxes = list(split.boxes[k]) + list(split.crowd_boxes[k]) * 2
        labels = list(split.box_labels[k]) + list(split.crowd_labels[k]) * 2
        boxes += [np.array([rng.integers(0, 16), rng.integers(0, 16), 0, 0]) + [0, 0, 10, 10] for _ in range(2)]
        labels += list(rng.integers(0, 2, 2))
        b = np.array(boxes, dtype=np.float32) + rng.integers(-3, 4, (len(boxes), 4))
        b = np.clip(b, 0, S)
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
        masks = np.stack([rect(*(int(v) for v in box)) for box in b]).astype(bool)
        out.append({"boxes": torch.as_tensor(b), "scores": torch.as_tensor(rng.random(len(b)), dtype=torch.float32),
                    "labels": torch.as_tensor(np.array(labels, dtype=np.int64)), "masks": torch.as_tensor(masks)})
    return out


def cocoeval(path, split, preds, iou_type):
    """COCOeval on the file itself, restricted to the split's images; labels map back to category ids."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        id_of = {img["file_name"]: img["id"] for img in gt.dataset["images"]}
        image_ids = [id_of[Path(p).name] for p in split.images.paths]
        results = []
        for image_id, pred in zip(image_ids, preds):
            for box, score, label, mask in zip(pred["boxes"].tolist(), pred["scores"].tolist(),
                                               pred["labels"].tolist(), pred["masks"].numpy()):
                x0, y0, x1, y1 = box
                results.append({"image_id": image_id, "category_id": int(label) + 1, "score": score,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": rle(mask)})
        dt = gt.loadRes(results)
        evaluation = COCOeval(gt, dt, iou_type)
        evaluation.params.imgIds = image_ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats[0], evaluation.stats[1]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_box_and_mask_map_with_crowd_regions_equal_cocoeval(crowd_coco, iou_type):
    from pytest_visprobe.kernels.detection import coco_map, ground_truth, split_ground_truth

    images_dir, path = crowd_coco
    dataset = load_dataset(f"coco:{images_dir}:{path}", image_size=S, test_fraction=0.5, seed=0)
    split = dataset.split("test")
    assert sum(len(c) for c in split.crowd_boxes) >= 2  # the test split holds crowd regions
    preds = predictions(split, seed=1)
    if iou_type == "bbox":
        preds = [{k: v for k, v in p.items() if k != "masks"} for p in preds]
    masks = iou_type == "segm"
    ours = coco_map(preds, split_ground_truth(split, masks=masks), iou_type=iou_type)
    reference_map, reference_ap50 = cocoeval(path, split, predictions(split, seed=1), iou_type)
    assert ours["map"] == pytest.approx(reference_map, abs=1e-6)
    assert ours["map_50"] == pytest.approx(reference_ap50, abs=1e-6)
    # the crowd regions matter here: dropping them (the old behaviour) scores something else
    dropped = coco_map(preds, ground_truth(split.boxes, split.box_labels, split.instance_masks if masks else None),
                       iou_type=iou_type)
    assert abs(dropped["map"] - reference_map) > 1e-3


def test_crowd_regions_are_neither_objects_nor_semantic_pixels(crowd_coco):
    images_dir, path = crowd_coco
    dataset = load_dataset(f"coco:{images_dir}:{path}", image_size=S, test_fraction=0.5, seed=0)
    for split in dataset.splits.values():
        for k in range(len(split)):
            assert len(split.boxes[k]) == 2 and len(split.instance_masks[k]) == 2
            crowd = split.crowd_masks[k]
            assert crowd.shape[0] == len(split.crowd_boxes[k]) == len(split.crowd_labels[k]) <= 1
            if len(crowd):
                np.testing.assert_array_equal(crowd[0], rect(4, 18, 28, 30).astype(bool))
                np.testing.assert_allclose(split.crowd_boxes[k][0], [4, 18, 28, 30])
                assert not split.semantic_masks[k][crowd[0]].any()  # background under the crowd
    subset = dataset.split("train").subset([1, 0])
    assert len(subset.crowd_boxes) == 2 and len(subset.crowd_masks) == 2
