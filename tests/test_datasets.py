"""The dataset package: registry, embedded datasets and ImageFolder, on data with known answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pytest_visprobe.datasets as datasets
from pytest_visprobe.errors import RegistryError
from pytest_visprobe.datasets import (
    ArrayImages,
    Dataset,
    DatasetError,
    Split,
    list_datasets,
    load_dataset,
    register_dataset,
)
from pytest_visprobe.datasets.shapes import (
    ATTRIBUTE_NAMES,
    CLASS_NAMES,
    min_visible_pixels,
)

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def shapes() -> Dataset:
    return load_dataset("shapes")


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def photos() -> Dataset:
    return load_dataset("photos", n_train=120, n_test=60)


def _split_arrays(split: Split) -> dict[str, object]:
    """Every field of a split as plain arrays, for exact comparisons."""
    out: dict[str, object] = {"images": split.images.get(range(len(split)))}
    for name in (
        "labels", "attributes", "boxes", "box_labels", "box_attributes",
        "instance_masks", "semantic_masks", "sources",
    ):
        out[name] = getattr(split, name)
    return out


def _assert_same(a: Dataset, b: Dataset) -> None:
    assert a.fingerprint == b.fingerprint
    assert a.splits.keys() == b.splits.keys()
    for name in a.splits:
        fa, fb = _split_arrays(a.splits[name]), _split_arrays(b.splits[name])
        for key, va in fa.items():
            vb = fb[key]
            if va is None:
                assert vb is None, key
            elif isinstance(va, list):
                assert len(va) == len(vb) and all(np.array_equal(x, y) for x, y in zip(va, vb)), key
            else:
                np.testing.assert_array_equal(va, vb, err_msg=key)


def _write_png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (24, 18)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


_CLASS_COLOURS = {"cat": (250, 10, 10), "dog": (10, 250, 10), "emu": (10, 10, 250)}


def _flat_folder(root: Path, per_class: int = 5) -> Path:
    for name, colour in _CLASS_COLOURS.items():
        for i in range(per_class):
            _write_png(root / name / f"{i:02d}.png", colour, size=(20 + 3 * i, 16))
    return root


# ----------------------------------------------------------------------------- registry


def test_builtin_datasets_are_registered_with_their_targets():
    entries = {e.name: e for e in list_datasets()}
    assert set(entries) >= {"shapes", "digits", "photos"}
    assert entries["shapes"].targets == {"label", "attributes", "boxes", "masks", "captions"}
    assert entries["digits"].targets == {"label"}
    assert entries["photos"].targets == {"source"}
    assert set(entries["shapes"].options) == {"n_train", "n_test", "image_size"}
    assert all(e.description for e in entries.values())


def test_importing_the_datasets_does_not_import_torch():
    package_root = Path(datasets.__file__).resolve().parents[2]
    path = os.pathsep.join([str(package_root), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    code = (
        "import sys, pytest_visprobe.datasets\n"
        "heavy = [m for m in ('torch', 'sklearn', 'skimage') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_unknown_dataset_suggests_the_closest_name_and_lists_all():
    with pytest.raises(DatasetError) as info:
        load_dataset("shapez")
    message = str(info.value)
    assert "did you mean 'shapes'" in message.lower()
    for name in ("digits", "photos", "shapes", "imagefolder:PATH"):
        assert name in message


def test_a_folder_given_without_the_prefix_suggests_imagefolder(tmp_path):
    with pytest.raises(DatasetError, match="imagefolder:"):
        load_dataset(str(tmp_path))


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(DatasetError) as info:
        load_dataset("shapes", n_trian=10)
    message = str(info.value)
    assert "'n_trian'" in message and "did you mean 'n_train'" in message
    assert "image_size" in message and "n_test" in message


@pytest.mark.parametrize(
    "kwargs",
    [{"n_train": 0}, {"n_train": "10"}, {"n_train": True}, {"image_size": 8}, {"n_test": 1.5}],
)
def test_bad_option_values_are_rejected_by_name(kwargs):
    with pytest.raises(DatasetError, match=next(iter(kwargs))):
        load_dataset("shapes", **kwargs)


@pytest.mark.parametrize("kwargs", [{"seed": -1}, {"seed": 2**40}, {"limit": 0}, {"seed": "0"}])
def test_bad_seed_or_limit_is_rejected(kwargs):
    with pytest.raises(DatasetError):
        load_dataset("digits", **kwargs)


def test_register_dataset_makes_a_loader_loadable(monkeypatch):
    monkeypatch.setattr(datasets.DATASETS, "_entries", dict(datasets.DATASETS._entries))  # undone after the test

    def tiny(*, seed: int = 0, n: int = 4) -> Dataset:
        rng = np.random.default_rng(seed)
        images = ArrayImages(rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8))
        split = Split(images, labels=np.arange(n))
        return Dataset("tiny", {"train": split, "test": split}, targets=frozenset({"label"}),
                       fingerprint=str((seed, n)))

    register_dataset("tiny", tiny, targets={"label"}, description="test")
    assert "tiny" in [e.name for e in list_datasets()]
    assert len(load_dataset("tiny", n=6).split("train")) == 6
    with pytest.raises(RegistryError, match="already registered.*replace=True"):
        register_dataset("tiny", lambda *, seed: None, targets={"label"}, description="x")
    register_dataset("tiny", tiny, targets={"label"}, description="replaced", replace=True)
    assert datasets.DATASETS.get("tiny").description == "replaced"
    with pytest.raises(DatasetError, match="unknown targets"):
        register_dataset("other", tiny, targets={"labels"}, description="x")
    with pytest.raises(DatasetError, match="options are n"):
        load_dataset("tiny", m=3)


def test_missing_split_names_the_splits(digits):
    with pytest.raises(DatasetError, match="validation"):
        digits.split("validation")


def test_split_subset_keeps_every_field_aligned(shapes):
    split = shapes.split("test")
    rows = [7, 2, 11]
    sub = split.subset(rows)
    assert len(sub) == 3
    np.testing.assert_array_equal(sub.images.get([0, 1, 2]), split.images.get(rows))
    np.testing.assert_array_equal(sub.labels, split.labels[rows])
    np.testing.assert_array_equal(sub.semantic_masks, split.semantic_masks[rows])
    for i, r in enumerate(rows):
        np.testing.assert_array_equal(sub.boxes[i], split.boxes[r])
        np.testing.assert_array_equal(sub.instance_masks[i], split.instance_masks[r])
    with pytest.raises(DatasetError, match="out of range"):
        split.subset([len(split)])


# ----------------------------------------------------------------------------- shapes


def test_shapes_same_seed_is_identical_other_seed_differs():
    a = load_dataset("shapes", n_train=40, n_test=20, seed=3)
    _assert_same(a, load_dataset("shapes", n_train=40, n_test=20, seed=3))
    b = load_dataset("shapes", n_train=40, n_test=20, seed=4)
    assert b.fingerprint != a.fingerprint
    assert not np.array_equal(a.split("train").images.array, b.split("train").images.array)
    assert not np.array_equal(a.split("test").images.array, b.split("test").images.array)


def test_shapes_splits_are_independent_streams_and_options_change_the_fingerprint():
    a = load_dataset("shapes", n_train=40, n_test=20)
    b = load_dataset("shapes", n_train=40, n_test=30)
    np.testing.assert_array_equal(a.split("train").images.array, b.split("train").images.array)
    assert not np.array_equal(a.split("train").images.array[:20], a.split("test").images.array)
    assert a.fingerprint != b.fingerprint
    assert load_dataset("shapes", n_train=40, n_test=20, image_size=48).fingerprint != a.fingerprint


def test_shapes_fields_have_the_documented_shapes_and_dtypes(shapes):
    assert shapes.class_names == list(CLASS_NAMES)
    assert shapes.attribute_names == list(ATTRIBUTE_NAMES) and len(ATTRIBUTE_NAMES) == 11
    assert shapes.targets == {"label", "attributes", "boxes", "masks", "captions"}
    for name, n in (("train", 600), ("test", 300)):
        split = shapes.split(name)
        images = split.images.get(range(n))
        assert images.shape == (n, 64, 64, 3) and images.dtype == np.uint8
        assert split.labels.shape == (n,) and split.labels.dtype == np.int64
        assert split.attributes.shape == (n, 11) and split.attributes.dtype == np.uint8
        assert split.semantic_masks.shape == (n, 64, 64)
        assert len(split.boxes) == len(split.box_labels) == len(split.box_attributes) == n
        assert len(split.instance_masks) == n
        for boxes, labels, attrs, masks in zip(
            split.boxes, split.box_labels, split.box_attributes, split.instance_masks
        ):
            k = len(labels)
            assert 1 <= k <= 3
            assert boxes.shape == (k, 4) and boxes.dtype == np.float32
            assert labels.dtype == np.int64
            assert attrs.shape == (k, 11) and attrs.dtype == np.uint8
            assert masks.shape == (k, 64, 64) and masks.dtype == bool
        assert split.sources is None


def test_shapes_image_size_option():
    ds = load_dataset("shapes", n_train=10, n_test=10, image_size=96)
    split = ds.split("train")
    assert split.images.get([0]).shape == (1, 96, 96, 3)
    assert split.instance_masks[0].shape[1:] == (96, 96)
    assert split.semantic_masks.shape == (10, 96, 96)


def test_shapes_boxes_are_the_tight_boxes_of_the_visible_pixels(shapes):
    split = shapes.split("train")
    for boxes, masks in zip(split.boxes, split.instance_masks):
        for box, mask in zip(boxes, masks):
            ys, xs = np.nonzero(mask)
            expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            np.testing.assert_array_equal(box, np.array(expected, dtype=np.float32))


def test_shapes_instances_are_disjoint_visible_and_match_the_semantic_mask(shapes):
    split = shapes.split("train")
    threshold = min_visible_pixels(64)
    for i in range(len(split)):
        masks, labels = split.instance_masks[i], split.box_labels[i]
        assert (masks.sum(axis=0) <= 1).all(), "instances overlap"
        assert (masks.sum(axis=(1, 2)) >= threshold).all()
        expected = np.zeros((64, 64), dtype=np.int64)
        for mask, label in zip(masks, labels):
            expected[mask] = label + 1
        np.testing.assert_array_equal(split.semantic_masks[i], expected)


def test_shapes_image_label_and_attributes_are_the_main_objects(shapes):
    split = shapes.split("train")
    for i in range(len(split)):
        # main object = last drawn, fully visible, and the largest
        assert split.labels[i] == split.box_labels[i][-1]
        np.testing.assert_array_equal(split.attributes[i], split.box_attributes[i][-1])
        areas = split.instance_masks[i].sum(axis=(1, 2))
        assert areas[-1] == areas.max()
    attrs = np.concatenate(split.box_attributes)
    # exactly one colour, one size and one texture per object
    np.testing.assert_array_equal(attrs[:, :6].sum(1), 1)
    np.testing.assert_array_equal(attrs[:, 6:8].sum(1), 1)
    np.testing.assert_array_equal(attrs[:, 8:].sum(1), 1)


def test_shapes_every_class_and_attribute_appears_and_colour_is_not_the_class(shapes):
    for name in ("train", "test"):
        split = shapes.split(name)
        counts = np.bincount(split.labels, minlength=5)
        assert (counts > 0).all() and counts.max() - counts.min() <= 1  # balanced labels
        assert (split.attributes.sum(axis=0) > 0).all()
    split = shapes.split("train")
    colour = split.attributes[:, :6].argmax(1)
    # colour is drawn independently of the class: every class shows every colour
    table = np.zeros((5, 6), dtype=int)
    np.add.at(table, (split.labels, colour), 1)
    assert (table > 0).all()
    assert {len(b) for b in split.boxes} == {1, 2, 3}


def test_shapes_backgrounds_vary(shapes):
    images = shapes.split("train").images.array.astype(np.float32)
    semantic = shapes.split("train").semantic_masks
    stds = [images[i][semantic[i] == 0].std(axis=0).max() for i in range(60)]
    # solid backgrounds are flat; noise backgrounds are not; gradients lie between
    assert min(stds) < 1.0 and max(stds) > 10.0


# ----------------------------------------------------------------------------- digits


def test_digits_counts_classes_and_stratified_split(digits):
    train, test = digits.split("train"), digits.split("test")
    assert len(train) + len(test) == 1797 and len(test) == 540
    assert digits.class_names == [str(d) for d in range(10)]
    assert digits.targets == {"label"}
    totals = np.bincount(np.concatenate([train.labels, test.labels]), minlength=10)
    held_out = np.bincount(test.labels, minlength=10)
    assert (np.abs(held_out - 0.3 * totals) <= 1).all()
    images = test.images.get(range(len(test)))
    assert images.shape == (540, 32, 32, 3) and images.dtype == np.uint8
    assert (images[..., 0] == images[..., 2]).all() and images.max() > 200


def test_digits_seeds_and_options(digits):
    _assert_same(digits, load_dataset("digits"))
    other = load_dataset("digits", seed=1)
    assert other.fingerprint != digits.fingerprint
    assert not np.array_equal(other.split("test").labels, digits.split("test").labels)
    big = load_dataset("digits", image_size=48)
    assert big.split("train").images.get([0]).shape == (1, 48, 48, 3)
    assert big.fingerprint != digits.fingerprint


# ----------------------------------------------------------------------------- photos


def test_photos_splits_use_disjoint_source_photos(photos):
    train, test = photos.split("train"), photos.split("test")
    assert len(train) == 120 and len(test) == 60
    assert photos.targets == {"source"}
    train_src, test_src = set(train.sources.tolist()), set(test.sources.tolist())
    assert not train_src & test_src
    assert len(train_src | test_src) == len(photos.class_names)
    assert train.labels is None and train.sources.dtype == np.int64
    images = train.images.get(range(len(train)))
    assert images.shape == (120, 64, 64, 3) and images.dtype == np.uint8
    # crops come from many photos, spread evenly
    counts = np.bincount(train.sources)[sorted(train_src)]
    assert counts.max() - counts.min() <= 1


def test_photos_are_seeded(photos):
    _assert_same(photos, load_dataset("photos", n_train=120, n_test=60))
    other = load_dataset("photos", n_train=120, n_test=60, seed=1)
    assert other.fingerprint != photos.fingerprint
    assert set(other.split("test").sources.tolist()) != set(photos.split("test").sources.tolist())
    smaller = load_dataset("photos", n_train=120, n_test=60, image_size=32)
    assert smaller.fingerprint != photos.fingerprint


# ----------------------------------------------------------------------------- imagefolder


def test_imagefolder_flat_layout_split_by_seed(tmp_path):
    root = _flat_folder(tmp_path / "pets")
    (root / "cat" / "notes.txt").write_text("not an image")
    _write_png(root / "cat" / "nested" / "deep.PNG", _CLASS_COLOURS["cat"])
    ds = load_dataset(f"imagefolder:{root}", image_size=16)
    assert ds.class_names == ["cat", "dog", "emu"]
    assert ds.targets == {"label"}
    train, test = ds.split("train"), ds.split("test")
    assert len(train) + len(test) == 16
    assert np.bincount(test.labels).tolist() == [1, 1, 1]  # round(0.2 * 5 or 6) per class
    for split in (train, test):
        images = split.images.get(range(len(split)))
        assert images.shape == (len(split), 16, 16, 3) and images.dtype == np.uint8
        for image, label in zip(images, split.labels):
            colour = _CLASS_COLOURS[ds.class_names[label]]
            assert np.abs(image.astype(int) - colour).max() <= 2
    assert load_dataset(f"imagefolder:{root}", image_size=16).fingerprint == ds.fingerprint
    reseeded = load_dataset(f"imagefolder:{root}", image_size=16, seed=5)
    assert reseeded.fingerprint != ds.fingerprint


def test_imagefolder_fingerprint_follows_the_files(tmp_path):
    root = _flat_folder(tmp_path / "pets")
    before = load_dataset(f"imagefolder:{root}").fingerprint
    _write_png(root / "dog" / "00.png", (0, 0, 0), size=(40, 40))  # same name, new content
    changed = load_dataset(f"imagefolder:{root}").fingerprint
    assert changed != before
    _write_png(root / "dog" / "99.png", (0, 0, 0))
    assert load_dataset(f"imagefolder:{root}").fingerprint != changed
    assert load_dataset(f"imagefolder:{root}", image_size=64).fingerprint != changed


def test_imagefolder_train_test_layout(tmp_path):
    root = tmp_path / "ds"
    for split, n in (("train", 3), ("test", 2)):
        for name, colour in _CLASS_COLOURS.items():
            for i in range(n):
                _write_png(root / split / name / f"{i}.jpg", colour, size=(30, 50))
    ds = load_dataset(f"imagefolder:{root}", image_size=20)
    assert ds.class_names == ["cat", "dog", "emu"]
    assert ds.split("train").labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert ds.split("test").labels.tolist() == [0, 0, 1, 1, 2, 2]
    image = ds.split("test").images.get([5])
    assert image.shape == (1, 20, 20, 3)
    assert np.abs(image.astype(int) - _CLASS_COLOURS["emu"]).max() <= 8  # JPEG


def test_imagefolder_val_folder_serves_as_test(tmp_path):
    root = tmp_path / "ds"
    _write_png(root / "train" / "a" / "0.png", (1, 2, 3))
    _write_png(root / "train" / "b" / "0.png", (1, 2, 3))
    _write_png(root / "val" / "b" / "0.png", (1, 2, 3))
    ds = load_dataset(f"imagefolder:{root}")
    assert ds.split("test").labels.tolist() == [1]


def test_imagefolder_limit_keeps_every_class(tmp_path):
    root = _flat_folder(tmp_path / "pets", per_class=10)
    ds = load_dataset(f"imagefolder:{root}", limit=5)
    assert len(ds.split("train")) == 5
    assert set(ds.split("train").labels.tolist()) == {0, 1, 2}
    assert ds.split("train").images.get(range(5)).shape == (5, 224, 224, 3)


@pytest.mark.parametrize(
    "layout, match",
    [
        ("missing", "does not exist"),
        ("file", "is a file"),
        ("empty", "no class folders"),
        ("stray", "move them into"),
        ("empty_class", "has no image files"),
        ("train_only", "no test/"),
        ("unknown_test_class", "train/ lacks"),
        ("single_images", "too few images"),
    ],
)
def test_imagefolder_errors_name_the_cause_and_the_fix(tmp_path, layout, match):
    root = tmp_path / "ds"
    if layout == "file":
        root.write_text("x")
    elif layout == "empty":
        root.mkdir()
    elif layout == "stray":
        _write_png(root / "a.png", (0, 0, 0))
    elif layout == "empty_class":
        _flat_folder(root)
        (root / "zebra").mkdir()
    elif layout == "train_only":
        _flat_folder(root / "train")
    elif layout == "unknown_test_class":
        _flat_folder(root / "train")
        _write_png(root / "test" / "yak" / "0.png", (0, 0, 0))
    elif layout == "single_images":
        _write_png(root / "a" / "0.png", (0, 0, 0))
    with pytest.raises(DatasetError, match=match):
        load_dataset(f"imagefolder:{root}")


def test_imagefolder_corrupt_image_is_named_when_decoded(tmp_path):
    root = _flat_folder(tmp_path / "pets")
    bad = root / "dog" / "01.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    ds = load_dataset(f"imagefolder:{root}")
    split = ds.split("train")
    rows = [i for i in range(len(split)) if split.images.paths[i] == str(bad)]
    if not rows:
        split = ds.split("test")
        rows = [i for i in range(len(split)) if split.images.paths[i] == str(bad)]
    with pytest.raises(DatasetError) as info:
        split.images.get(rows)
    assert "01.png" in str(info.value) and "corrupt" in str(info.value)


def test_imagefolder_rejects_unknown_options(tmp_path):
    root = _flat_folder(tmp_path / "pets")
    with pytest.raises(DatasetError, match="did you mean 'image_size'"):
        load_dataset(f"imagefolder:{root}", imagesize=32)


# ----------------------------------------------------------------------------- limit


def test_limit_is_a_seeded_sorted_random_subset_keeping_all_classes(digits):
    full = digits.split("train")
    row_of = {img.tobytes(): i for i, img in enumerate(full.images.array)}
    limited = load_dataset("digits", limit=50)
    split = limited.split("train")
    assert len(split) == 50 and len(limited.split("test")) == 50
    rows = np.array([row_of[img.tobytes()] for img in split.images.array])
    assert (np.diff(rows) > 0).all(), "rows keep their order"
    assert rows[-1] > 49, "not a truncation"
    np.testing.assert_array_equal(split.labels, full.labels[rows])
    assert set(split.labels.tolist()) == set(range(10))
    assert limited.fingerprint != digits.fingerprint
    _assert_same(limited, load_dataset("digits", limit=50))
    other = load_dataset("digits", limit=50, seed=1)
    assert other.fingerprint != limited.fingerprint
    assert load_dataset("digits", limit=60).fingerprint != limited.fingerprint


def test_limit_below_the_class_count_gives_distinct_classes_and_above_n_is_a_no_op(photos):
    few = load_dataset("digits", limit=5).split("train")
    assert len(set(few.labels.tolist())) == 5
    limited = load_dataset("photos", n_train=120, n_test=60, limit=1000)
    np.testing.assert_array_equal(
        limited.split("train").images.array, photos.split("train").images.array
    )
    keeps_sources = load_dataset("photos", n_train=120, n_test=60, limit=20)
    assert set(keeps_sources.split("train").sources.tolist()) == set(
        photos.split("train").sources.tolist()
    )


def test_limit_subsets_every_shapes_field():
    ds = load_dataset("shapes", n_train=60, n_test=30, limit=12)
    split = ds.split("train")
    assert len(split) == 12 == len(split.boxes) == len(split.instance_masks)
    assert split.semantic_masks.shape[0] == 12 and split.attributes.shape[0] == 12
    for labels, label in zip(split.box_labels, split.labels):
        assert labels[-1] == label


def test_file_images_decode_in_parallel_to_the_same_pixels_and_name_a_broken_file(tmp_path):
    from PIL import Image

    from pytest_visprobe.datasets.base import FileImages, decode_image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(9):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (30 + i, 40, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    images = FileImages(tuple(paths), 16)
    expected = np.stack([decode_image(p, 16) for p in paths])
    assert np.array_equal(images.get(range(9)), expected)
    assert np.array_equal(images.get([8, 0, 3, 3]), expected[[8, 0, 3, 3]])  # order kept, duplicates too
    (tmp_path / "4.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"4\.jpg"):
        images.get(range(9))


def test_prefetched_batches_arrive_complete_and_in_order():
    from pytest_visprobe.datasets.base import ArrayImages
    from pytest_visprobe.features import prefetched

    array = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    batches = list(prefetched(ArrayImages(array), range(0, 10, 4), 4, 10))
    assert [len(b) for b in batches] == [4, 4, 2] and np.array_equal(np.concatenate(batches), array)
