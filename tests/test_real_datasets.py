"""Real-dataset loaders on tiny files in the real on-disk formats (no downloads).

The reference for every loader is what the test wrote: the images and labels decoded by
hand from the format's definition. torchvision's own classes read the files (with their md5
tables pinned to the test's files), so its integrity checks run as they do for users.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_visprobe.datasets import (
    DatasetError,
    DatasetNotFoundError,
    list_datasets,
    load_dataset,
)
from pytest_visprobe.datasets.storage import default_data_root
from pytest_visprobe.datasets.torchvision_sets import SETS, torchvision_md5s
from real_formats import (
    CUB_COLOURS,
    VAW_ATTRIBUTES,
    pin_md5s,
    write_cifar,
    write_cub,
    write_mnist,
    write_stl10,
    write_svhn,
    write_vaw,
)


def _all_images(split) -> np.ndarray:
    return split.images.get(range(len(split)))


def _assert_split(split, images: np.ndarray, labels: np.ndarray) -> None:
    got = _all_images(split)
    assert got.dtype == np.uint8 and got.shape == images.shape and got.shape[-1] == 3
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(split.labels, labels)
    assert split.labels.dtype == np.int64


# ----------------------------------------------------------------------------- torchvision sets


def test_torchvision_file_lists_match_torchvision():
    """The static file lists (used without importing torch) are what torchvision checks."""
    import torchvision.datasets as tvd

    for spec in SETS:
        md5s = torchvision_md5s(spec)
        cls = getattr(tvd, spec.cls)
        if spec.cls in ("MNIST", "FashionMNIST"):
            expected = {f"{spec.cls}/raw/{name[:-3]}" for name, _ in cls.resources}
        elif spec.cls == "SVHN":
            expected = {f"svhn/{entry[1]}" for key, entry in cls.split_list.items() if key != "extra"}
        else:
            expected = {f"{cls.base_folder}/{n}" for n, _ in cls.train_list + cls.test_list}
            if spec.cls.startswith("CIFAR"):
                expected.add(f"{cls.base_folder}/{cls.meta['filename']}")
        assert set(spec.files) == expected, spec.name
        assert all(md5s[f] for f in spec.files) == (spec.cls not in ("MNIST", "FashionMNIST"))


def test_cifar10_python_batches(tmp_path, monkeypatch):
    wrote = write_cifar(tmp_path)
    pin_md5s(monkeypatch, "cifar10", tmp_path)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.targets == {"label"} and ds.class_names[1] == "automobile"
    for split in ("train", "test"):
        _assert_split(ds.split(split), *wrote[split])
    assert len(ds.split("train")) == 30  # five batches, in order
    assert load_dataset("cifar10", root=tmp_path).fingerprint == ds.fingerprint
    assert load_dataset("cifar10", root=tmp_path, seed=3).fingerprint == ds.fingerprint  # fixed splits


def test_cifar100_fine_labels_and_readable_names(tmp_path, monkeypatch):
    wrote = write_cifar(tmp_path, hundred=True)
    pin_md5s(monkeypatch, "cifar100", tmp_path)
    ds = load_dataset("cifar100", root=tmp_path)
    assert len(ds.class_names) == 100 and ds.class_names[0] == "fine class 0"
    _assert_split(ds.split("test"), *wrote["test"])


def test_cifar_truncated_batch_is_named_with_the_fix(tmp_path, monkeypatch):
    write_cifar(tmp_path)
    pin_md5s(monkeypatch, "cifar10", tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:5000])  # a download cut short
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", root=tmp_path)
    message = str(info.value)
    assert not isinstance(info.value, DatasetNotFoundError)
    assert "data_batch_3" in message and "md5" in message and "--visprobe-download" in message


def test_missing_dataset_is_not_found_with_the_option_that_fixes_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", root=tmp_path)
    message = str(info.value)
    assert "CIFAR-10" in message and str(tmp_path) in message
    assert "--visprobe-download" in message and "--visprobe-data-root" in message


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_idx_gz_files_are_decompressed_and_become_rgb(tmp_path, name, folder):
    wrote = write_mnist(tmp_path, folder)
    ds = load_dataset(name, root=tmp_path)
    for split in ("train", "test"):
        _assert_split(ds.split(split), *wrote[split])
    assert (tmp_path / folder / "raw" / "train-images-idx3-ubyte").is_file()
    if name == "mnist":
        assert ds.class_names[:3] == ["zero", "one", "two"]
    else:
        assert ds.class_names[0] == "T-shirt/top" and len(ds.class_names) == 10


def test_mnist_fingerprint_follows_the_label_bytes(tmp_path):
    write_mnist(tmp_path, gz=False)
    before = load_dataset("mnist", root=tmp_path).fingerprint
    labels = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[-1] = (data[-1] + 1) % 10  # same size, one label changed
    labels.write_bytes(bytes(data))
    assert load_dataset("mnist", root=tmp_path).fingerprint != before


def test_mnist_truncated_gz_and_truncated_idx_are_reported(tmp_path):
    write_mnist(tmp_path)
    packed = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    packed.write_bytes(packed.read_bytes()[: len(packed.read_bytes()) // 2])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz.*cannot decompress"):
        load_dataset("mnist", root=tmp_path)
    assert not (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()  # no half file left

    write_mnist(tmp_path / "b", gz=False)
    raw = tmp_path / "b" / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    raw.write_bytes(raw.read_bytes()[:-100])
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", root=tmp_path / "b")
    assert "t10k-images-idx3-ubyte" in str(info.value) and "header declares shape [10, 28, 28]" in str(info.value)


def test_svhn_mat_files_map_label_10_to_zero(tmp_path, monkeypatch):
    wrote = write_svhn(tmp_path)
    pin_md5s(monkeypatch, "svhn", tmp_path)
    ds = load_dataset("svhn", root=tmp_path)
    for split in ("train", "test"):
        _assert_split(ds.split(split), *wrote[split])
    assert 0 in ds.split("train").labels and ds.class_names[0] == "zero"


def test_svhn_truncated_mat_is_reported(tmp_path, monkeypatch):
    write_svhn(tmp_path)
    pin_md5s(monkeypatch, "svhn", tmp_path)
    mat = tmp_path / "svhn" / "test_32x32.mat"
    mat.write_bytes(mat.read_bytes()[:-500])
    with pytest.raises(DatasetError, match="test_32x32.mat is corrupt or incomplete"):
        load_dataset("svhn", root=tmp_path)


def test_stl10_column_major_binaries(tmp_path, monkeypatch):
    wrote = write_stl10(tmp_path)
    pin_md5s(monkeypatch, "stl10", tmp_path)
    ds = load_dataset("stl10", root=tmp_path)
    for split in ("train", "test"):
        _assert_split(ds.split(split), *wrote[split])
    assert ds.class_names[7] == "monkey"


def test_limit_on_a_real_loader_subsets_views_without_copying_the_whole_set(tmp_path):
    wrote = write_mnist(tmp_path, n_train=40)
    ds = load_dataset("mnist", root=tmp_path, limit=12)
    split = ds.split("train")
    assert len(split) == 12
    images = _all_images(split)
    rows = [next(i for i, ref in enumerate(wrote["train"][0]) if np.array_equal(ref, img)) for img in images]
    np.testing.assert_array_equal(split.labels, wrote["train"][1][rows])


# ----------------------------------------------------------------------------- CUB


def test_cub_official_layout_labels_split_and_312_attributes(tmp_path):
    is_train, labels, attributes = write_cub(tmp_path)
    ds = load_dataset("cub", root=tmp_path, image_size=16)
    assert ds.targets == {"label", "attributes"}
    assert ds.class_names == ["Black footed Albatross", "Laysan Albatross", "Sooty Albatross"]
    assert len(ds.attribute_names) == 312 and ds.attribute_names[0] == "has_part::value_1"
    for split, mask in (("train", is_train), ("test", ~is_train)):
        got = ds.split(split)
        np.testing.assert_array_equal(got.labels, labels[mask])
        np.testing.assert_array_equal(got.attributes, attributes[mask])
        for image, label in zip(_all_images(got), got.labels):
            assert image.shape == (16, 16, 3)
            assert np.abs(image.astype(int) - CUB_COLOURS[label]).max() <= 6  # JPEG
    assert load_dataset("cub", root=tmp_path, image_size=16).fingerprint == ds.fingerprint
    assert load_dataset("cub", root=tmp_path).fingerprint != ds.fingerprint


def test_cub_fingerprint_follows_the_annotations(tmp_path):
    write_cub(tmp_path)
    before = load_dataset("cub", root=tmp_path).fingerprint
    split_file = tmp_path / "CUB_200_2011" / "train_test_split.txt"
    split_file.write_text(split_file.read_text().replace("1 1\n", "1 0\n", 1))  # same size
    assert load_dataset("cub", root=tmp_path).fingerprint != before


@pytest.mark.parametrize("damage, match", [
    ("truncate_attributes", "attribute rows are missing"),
    ("truncate_labels", "image_class_labels.txt.*no row for"),
    ("delete_image", "images listed in images.txt are missing"),
    ("garble_images_txt", "line 2 is not 'id value'"),
])
def test_cub_damage_is_reported_with_cause_and_fix(tmp_path, damage, match):
    write_cub(tmp_path)
    folder = tmp_path / "CUB_200_2011"
    if damage == "truncate_attributes":
        path = folder / "attributes" / "image_attribute_labels.txt"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "truncate_labels":
        path = folder / "image_class_labels.txt"
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:-3]))
    elif damage == "delete_image":
        next((folder / "images").rglob("*.jpg")).unlink()
    else:
        path = folder / "images.txt"
        lines = path.read_text().splitlines(keepends=True)
        path.write_text(lines[0] + "oops\n" + "".join(lines[2:]))
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset("cub", root=tmp_path)
    assert "--visprobe-download" in str(info.value)
    assert not isinstance(info.value, DatasetNotFoundError)


def test_cub_missing_is_not_found(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="CUB-200-2011.*--visprobe-download"):
        load_dataset("cub", root=tmp_path)


# ----------------------------------------------------------------------------- VAW


def test_vaw_regions_positive_attributes_and_object_labels(tmp_path):
    instances = write_vaw(tmp_path, subfolder="VG_100K")
    ds = load_dataset("vaw", root=tmp_path, image_size=8)
    assert ds.attribute_names == VAW_ATTRIBUTES and ds.class_names == ["car", "tree"]
    assert set(ds.splits) == {"train", "test"}
    train = ds.split("train")
    records = instances["train_part1.json"] + instances["train_part2.json"]  # sorted by image id
    assert len(train) == 3 and len(ds.split("test")) == 2
    colours = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}
    for image, attrs, label, record in zip(_all_images(train), train.attributes, train.labels, records):
        expected = np.zeros(len(VAW_ATTRIBUTES), dtype=np.uint8)
        expected[[VAW_ATTRIBUTES.index(a) for a in record["positive_attributes"]]] = 1
        np.testing.assert_array_equal(attrs, expected)
        assert ds.class_names[label] == record["object_name"]
        colour = colours[record["positive_attributes"][0]]
        # the crop is the box: the rectangle's colour fills it (JPEG edges aside)
        assert np.abs(np.median(image.reshape(-1, 3), axis=0) - colour).max() <= 12
    assert ds.split("test").attributes.sum(axis=0)[VAW_ATTRIBUTES.index("shiny")] == 1


@pytest.mark.parametrize("damage, match", [
    ("truncate_json", "test.json is corrupt or incomplete.*not valid JSON"),
    ("unknown_attribute", "has attribute 'purple', which attribute_index.json lacks"),
    ("bad_box", "expected \\[x, y, width, height\\]"),
    ("one_image_missing", "1 of the 3 Visual Genome images"),
])
def test_vaw_damage_is_reported(tmp_path, damage, match):
    write_vaw(tmp_path)
    folder = tmp_path / "vaw"
    if damage == "truncate_json":
        path = folder / "test.json"
        path.write_text(path.read_text()[:-40])
    elif damage in ("unknown_attribute", "bad_box"):
        path = folder / "train_part1.json"
        records = json.loads(path.read_text())
        if damage == "unknown_attribute":
            records[0]["negative_attributes"].append("purple")
        else:
            records[1]["instance_bbox"] = [1, 2, 0, 5]
        path.write_text(json.dumps(records))
    else:
        (folder / "images" / "102.jpg").unlink()
    with pytest.raises(DatasetError, match=match):
        load_dataset("vaw", root=tmp_path)


def test_vaw_without_images_or_annotations_is_not_found(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="adobe-research/vaw_dataset"):
        load_dataset("vaw", root=tmp_path)
    write_vaw(tmp_path)
    for image in (tmp_path / "vaw" / "images").glob("*.jpg"):
        image.unlink()
    with pytest.raises(DatasetNotFoundError, match="VAW's images"):
        load_dataset("vaw", root=tmp_path)


# ----------------------------------------------------------------------------- ImageNet-style folders


def _imagenet_val(root: Path, wnids=("n01440764", "n01443537", "n01484850"), per_class: int = 10) -> Path:
    folder = root / "imagenet" / "val"
    for c, wnid in enumerate(wnids):
        (folder / wnid).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (20, 20), (40 * c, 10 * i, 0)).save(folder / wnid / f"ILSVRC2012_val_{c}{i:04d}.JPEG")
    return folder


def test_imagefolder_subset_is_a_seeded_fixed_size_set_keeping_classes(tmp_path):
    folder = _imagenet_val(tmp_path)
    full = load_dataset(f"imagefolder:{folder}", image_size=8)
    sub = load_dataset(f"imagefolder:{folder}", image_size=8, subset=5)
    for split in ("train", "test"):
        assert len(sub.split(split)) == 5
        assert set(sub.split(split).labels.tolist()) == {0, 1, 2}
        assert set(sub.split(split).images.paths) <= set(full.split(split).images.paths)
    again = load_dataset(f"imagefolder:{folder}", image_size=8, subset=5)
    assert again.split("test").images.paths == sub.split("test").images.paths
    other = load_dataset(f"imagefolder:{folder}", image_size=8, subset=5, seed=1)
    assert other.split("train").images.paths != sub.split("train").images.paths
    assert len({full.fingerprint, sub.fingerprint, other.fingerprint}) == 3
    with pytest.raises(DatasetError, match="subset"):
        load_dataset(f"imagefolder:{folder}", subset=0)


def test_imagenet_val_reads_the_torchvision_layout_with_readable_names(tmp_path):
    _imagenet_val(tmp_path)
    plain = load_dataset("imagenet_val", root=tmp_path, image_size=8)
    assert plain.class_names == ["n01440764", "n01443537", "n01484850"]
    (tmp_path / "imagenet" / "LOC_synset_mapping.txt").write_text(
        "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n"
        "n01484850 great white shark, white shark\n")
    named = load_dataset("imagenet_val", root=tmp_path, image_size=8, subset=4)
    assert named.name == "imagenet_val" and named.class_names == ["tench", "goldfish", "great white shark"]
    assert len(named.split("test")) == 4 and named.fingerprint != plain.fingerprint
    with pytest.raises(DatasetNotFoundError, match="image-net.org"):
        load_dataset("imagenet_val", root=tmp_path / "empty")


# ----------------------------------------------------------------------------- registry and data root


def test_real_datasets_are_registered_with_presence_checks(tmp_path, monkeypatch):
    entries = {e.name: e for e in list_datasets()}
    for name in ("cifar10", "cifar100", "mnist", "fashion_mnist", "svhn", "stl10", "cub", "vaw", "imagenet_val"):
        assert entries[name].needs_data_root and "root" in entries[name].options, name
        assert entries[name].present(tmp_path) is False
    assert entries["cub"].targets == {"label", "attributes"}
    write_cifar(tmp_path)
    assert entries["cifar10"].present(tmp_path) is True


def test_default_data_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VISPROBE_DATA_ROOT", str(tmp_path / "data"))
    assert default_data_root() == tmp_path / "data"
    monkeypatch.delenv("VISPROBE_DATA_ROOT")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_root() == tmp_path / "xdg" / "pytest-visprobe" / "data"


def test_listing_presence_does_not_import_torch(tmp_path):
    code = ("import sys\nfrom pytest_visprobe.datasets import list_datasets\n"
            f"print([e.name for e in list_datasets() if e.present and e.present({str(tmp_path)!r})])\n"
            "assert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ), timeout=60)


def test_gz_decompression_leaves_no_partial_file_on_a_bad_archive(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / f"{name}.gz").write_bytes(gzip.compress(b"\x00" * 10)[:8])
    with pytest.raises(DatasetError, match="cannot decompress"):
        load_dataset("mnist", root=tmp_path)
    assert sorted(p.name for p in raw.iterdir() if not p.name.endswith(".gz")) == []


def test_a_failed_download_says_what_is_missing_and_what_to_check(tmp_path, monkeypatch):
    from urllib.error import URLError

    import torchvision.datasets as tvd
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvd.CIFAR10, "download", lambda self: offline())
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", root=tmp_path, download=True)
    message = str(info.value)
    assert "did not complete" in message and "name resolution" in message and "network" in message
    assert not isinstance(info.value, DatasetNotFoundError)  # asked to download: a failure, not a skip

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(DatasetError, match="CUB_200_2011.tgz into .* failed .*name resolution"):
        load_dataset("cub", root=tmp_path, download=True)


def test_vaw_truncated_image_is_named_when_its_regions_are_read(tmp_path):
    write_vaw(tmp_path)
    image = tmp_path / "vaw" / "images" / "103.jpg"
    image.write_bytes(image.read_bytes()[:60])
    test = load_dataset("vaw", root=tmp_path).split("test")
    with pytest.raises(DatasetError, match="103.jpg.*corrupt"):
        test.images.get([0])
