"""coco:IMAGES_DIR:ANNOTATIONS.json on a small COCO file the test writes (polygon and RLE masks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pytest_visprobe.datasets import DatasetError, load_dataset


def rect(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def uncompressed_rle(mask):
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with zeros."""
    flat = mask.flatten(order="F")
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


@pytest.fixture
def coco_files(tmp_path):
    from pycocotools import mask as mask_utils

    images_dir = tmp_path / "images"
    images_dir.mkdir()
    images, annotations = [], []
    rng = np.random.default_rng(0)
    for i in range(6):
        w, h = 40, 30  # wide: the 30-px centre crop drops 5 columns each side
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images_dir / f"{i}.png")
        images.append({"id": 100 + i, "file_name": f"{i}.png", "width": w, "height": h})
        poly = [[10, 5, 20, 5, 20, 15, 10, 15]]  # polygon, category 7
        annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "category_id": 7, "iscrowd": 0,
                            "segmentation": poly, "bbox": [10, 5, 10, 10], "area": 100})
        small = rect(h, w, 22, 18, 26, 24)  # compressed RLE, category 3
        rle = mask_utils.encode(np.asfortranarray(small))
        rle["counts"] = rle["counts"].decode()
        annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "category_id": 3, "iscrowd": 0,
                            "segmentation": rle, "bbox": [22, 18, 4, 6], "area": 24})
        if i % 2:  # uncompressed RLE, category 3, partly outside the crop (x 0..8 -> 0..3 after it)
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "category_id": 3, "iscrowd": 0,
                                "segmentation": uncompressed_rle(rect(h, w, 0, 0, 8, 4)), "bbox": [0, 0, 8, 4],
                                "area": 32})
        annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "category_id": 7, "iscrowd": 1,
                            "segmentation": uncompressed_rle(rect(h, w, 0, 20, 10, 30)), "bbox": [0, 20, 10, 10],
                            "area": 100})  # crowd: left out
    # an image whose only object lies outside the crop: dropped (no label)
    Image.fromarray(np.zeros((30, 40, 3), dtype=np.uint8)).save(images_dir / "edge.png")
    images.append({"id": 200, "file_name": "edge.png", "width": 40, "height": 30})
    annotations.append({"id": len(annotations) + 1, "image_id": 200, "category_id": 3, "iscrowd": 0,
                        "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]], "bbox": [0, 0, 4, 4], "area": 16})
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]}
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(data))
    return images_dir, ann


def test_coco_loader_transforms_boxes_and_masks_with_the_pixels(coco_files):
    from pycocotools import mask as mask_utils

    images_dir, ann = coco_files
    ds = load_dataset(f"coco:{images_dir}:{ann}", image_size=30, test_fraction=0.34, seed=0)
    assert ds.class_names == ["cat", "dog"]  # category ids 3, 7 in id order
    assert ds.targets == {"label", "boxes", "masks"}
    assert len(ds.split("train")) + len(ds.split("test")) == 6 and len(ds.split("test")) == 2
    polygon = mask_utils.decode(mask_utils.frPyObjects([[10, 5, 20, 5, 20, 15, 10, 15]], 30, 40)).max(axis=2)
    for split in ds.splits.values():
        for k in range(len(split)):
            labels = split.box_labels[k]
            masks = split.instance_masks[k]
            has_corner = len(labels) == 3
            # the crop keeps columns 5..34; the image label is the largest object's (the dog)
            np.testing.assert_array_equal(masks[0], polygon[:, 5:35].astype(bool))
            np.testing.assert_array_equal(masks[1], rect(30, 40, 22, 18, 26, 24)[:, 5:35].astype(bool))
            np.testing.assert_allclose(split.boxes[k][:2], [[5, 5, 15, 15], [17, 18, 21, 24]])
            assert labels.tolist()[:2] == [1, 0] and split.labels[k] == 1
            if has_corner:
                np.testing.assert_array_equal(masks[2], rect(30, 40, 0, 0, 8, 4)[:, 5:35].astype(bool))
                np.testing.assert_allclose(split.boxes[k][2], [0, 0, 3, 4])
            expected = np.zeros((30, 30), dtype=np.uint8)
            for m, lab in sorted(zip(masks, labels), key=lambda p: -p[0].sum()):
                expected[m] = lab + 1
            np.testing.assert_array_equal(split.semantic_masks[k], expected)
        first = split.images.get([0])
        assert first.shape == (1, 30, 30, 3) and first.dtype == np.uint8
    assert sum(len(s) for s in ds.splits.values()) == 6  # edge.png: no object left in the crop


def test_coco_images_are_cropped_like_their_targets(coco_files):
    images_dir, ann = coco_files
    ds = load_dataset(f"coco:{images_dir}:{ann}", image_size=30, seed=0)
    split = ds.split("train")
    path = split.images.paths[0]
    np.testing.assert_array_equal(split.images.get([0])[0], np.asarray(Image.open(path).convert("RGB"))[:, 5:35])


def test_coco_limit_keeps_targets_aligned(coco_files):
    images_dir, ann = coco_files
    ds = load_dataset(f"coco:{images_dir}:{ann}", image_size=30, seed=0, limit=2)
    split = ds.split("train")
    assert len(split) == 2 and len(split.instance_masks) == 2 and split.semantic_masks.shape == (2, 30, 30)


@pytest.mark.parametrize("spec, message", [
    ("coco:{images}", "needs an images folder and an annotation file"),
    ("coco:{images}:{tmp}/missing.json", "does not exist; pass a COCO instances JSON"),
    ("coco:{tmp}/nowhere:{ann}", "the images folder .* does not exist"),
    ("coco:{images}:{tmp}/notcoco.json", "has no images, annotations, categories list"),
])
def test_coco_bad_specs_say_what_to_fix(coco_files, tmp_path, spec, message):
    images_dir, ann = coco_files
    (tmp_path / "notcoco.json").write_text("{}")
    with pytest.raises(DatasetError, match=message):
        load_dataset(spec.format(images=images_dir, ann=ann, tmp=tmp_path))


def test_dense_probes_run_on_a_coco_dataset(coco_files):
    import torch

    from pytest_visprobe.kernels.instances import instance_segmentation_probe
    from pytest_visprobe.kernels.regions import region_features
    from pytest_visprobe.probes.heads import LocalizationConfig

    images_dir, ann = coco_files
    ds = load_dataset(f"coco:{images_dir}:{ann}", image_size=30, test_fraction=0.34, seed=0)
    train, test = ds.split("train"), ds.split("test")
    maps = {name: torch.rand(len(s), 4, 5, 5, generator=torch.Generator().manual_seed(0))
            for name, s in ds.splits.items()}
    metric = instance_segmentation_probe(maps["train"], train, maps["test"], test, n_classes=2,
                                         config=LocalizationConfig(epochs=2), seed=0)
    assert 0.0 <= metric.value <= 1.0
    assert region_features(maps["test"], test.boxes, image_size=(30, 30), roi_size=2).shape == (
        sum(len(b) for b in test.boxes), 16)


def test_registered_coco_reads_val2017_from_the_data_root_or_says_where_to_put_it(coco_files, tmp_path):
    import shutil

    from pytest_visprobe.datasets import load_dataset
    from pytest_visprobe.datasets.base import DatasetNotFoundError

    root = tmp_path / "root"
    with pytest.raises(DatasetNotFoundError, match=r"COCO val2017 is not on disk .*cocodataset.org"):
        load_dataset("coco", root=str(root))
    images_dir, ann = coco_files
    shutil.copytree(images_dir, root / "coco" / "val2017")
    (root / "coco" / "annotations").mkdir(parents=True)
    shutil.copy(ann, root / "coco" / "annotations" / "instances_val2017.json")
    registered = load_dataset("coco", root=str(root), image_size=30)
    direct = load_dataset(f"coco:{images_dir}:{ann}", image_size=30)
    assert registered.name == "coco" and registered.class_names == direct.class_names
    for split in ("train", "test"):
        np.testing.assert_array_equal(registered.split(split).labels, direct.split(split).labels)
