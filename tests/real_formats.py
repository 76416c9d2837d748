"""Writers for tiny datasets in the real on-disk formats (what torchvision and the official
archives contain), so the loaders are tested on the bytes users have, without downloads.

Each writer returns what it wrote (images as uint8 [N, H, W, 3], labels), the reference
the loaders are compared with. ``pin_md5s`` makes torchvision's checksum tables describe the
files a test wrote, so torchvision's own integrity check runs on them unchanged.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def class_images(rng: np.random.Generator, labels: np.ndarray, size: int, channels: int = 3) -> np.ndarray:
    """Noisy images whose mean brightness encodes the label: distinct rows, known answers."""
    base = (labels.astype(np.int64) * 20 + 30)[:, None, None, None]
    noise = rng.integers(0, 15, (len(labels), size, size, channels))
    return (base + noise).clip(0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- CIFAR


def write_cifar(root: Path, *, hundred: bool = False, per_batch: int = 6, n_test: int = 8,
                seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """cifar-10-batches-py (5 train batches + test) or cifar-100-python (train/test), python pickles."""
    rng = np.random.default_rng(seed)
    n_classes = 100 if hundred else 10
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    key = "fine_labels" if hundred else "labels"
    names = [("train", 5 * per_batch)] if hundred else [(f"data_batch_{i}", per_batch) for i in range(1, 6)]
    names += [("test" if hundred else "test_batch", n_test)]
    out: dict[str, list] = {"train": [], "test": []}
    for name, n in names:
        labels = rng.integers(0, min(n_classes, 10), n)
        images = class_images(rng, labels, 32)
        entry = {"batch_label": name, key: labels.tolist(), "filenames": [f"{i}.png" for i in range(n)],
                 # CHW-flattened rows: 1024 red, then green, then blue, as the real batches
                 "data": images.transpose(0, 3, 1, 2).reshape(n, 3072)}
        if hundred:
            entry["coarse_labels"] = (labels // 5).tolist()
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
        out["test" if name.startswith("test") else "train"].append((images, labels))
    if hundred:
        meta = {"fine_label_names": [f"fine_class_{i}" for i in range(100)],
                "coarse_label_names": [f"super_{i}" for i in range(20)]}
        (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    else:
        meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                "horse", "ship", "truck"], "num_cases_per_batch": per_batch, "num_vis": 3072}
        (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return {k: (np.concatenate([i for i, _ in v]), np.concatenate([l for _, l in v])) for k, v in out.items()}


# ----------------------------------------------------------------------------- MNIST


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx format: magic (0, 0, type 0x08 = uint8, ndim), big-endian dims, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_mnist(root: Path, folder: str = "MNIST", *, n_train: int = 20, n_test: int = 10,
                gz: bool = True, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        grey = class_images(rng, labels, 28, channels=1)[..., 0]
        for name, array in ((f"{prefix}-images-idx3-ubyte", grey), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = idx_bytes(array)
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (raw / name).write_bytes(data)
        out[split] = (np.repeat(grey[..., None], 3, axis=-1), labels.astype(np.int64))
    return out


# ----------------------------------------------------------------------------- SVHN


def write_svhn(root: Path, *, n_train: int = 12, n_test: int = 7, seed: int = 0):
    """svhn/{train,test}_32x32.mat: X is (32, 32, 3, N) uint8, y is (N, 1) with 10 for digit 0."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folder = root / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        digits = np.arange(n) % 10  # every digit, 0 included
        images = class_images(rng, digits, 32)
        y = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
        savemat(folder / f"{split}_32x32.mat", {"X": images.transpose(1, 2, 3, 0), "y": y})
        out[split] = (images, digits.astype(np.int64))
    return out


# ----------------------------------------------------------------------------- STL-10


def write_stl10(root: Path, *, n_train: int = 10, n_test: int = 6, n_unlabeled: int = 2, seed: int = 0):
    """stl10_binary/*.bin: images column-major ([C][W][H] bytes per image), labels 1..10."""
    rng = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        labels = rng.integers(0, 10, n)
        images = class_images(rng, labels, 96)
        images[:, :10, :40] = 255  # a bright band at the top: catches a row/column swap
        (folder / f"{split}_X.bin").write_bytes(images.transpose(0, 3, 2, 1).tobytes())
        if split != "unlabeled":
            (folder / f"{split}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
            out[split] = (images, labels.astype(np.int64))
    (folder / "class_names.txt").write_text(
        "\n".join(["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]) + "\n")
    return out


def pin_md5s(monkeypatch: pytest.MonkeyPatch, name: str, root: Path) -> None:
    """Point torchvision's md5 table for ``name`` at the files written under ``root``."""
    import torchvision.datasets as tvd

    if name in ("cifar10", "cifar100"):
        cls = tvd.CIFAR100 if name == "cifar100" else tvd.CIFAR10
        folder = root / cls.base_folder
        monkeypatch.setattr(cls, "train_list", [[n, _md5(folder / n)] for n, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[n, _md5(folder / n)] for n, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", dict(cls.meta, md5=_md5(folder / cls.meta["filename"])))
    elif name == "svhn":
        table = {k: [url, f, _md5(root / "svhn" / f) if (root / "svhn" / f).exists() else md5]
                 for k, (url, f, md5) in tvd.SVHN.split_list.items()}
        monkeypatch.setattr(tvd.SVHN, "split_list", table)
    elif name == "stl10":
        folder = root / "stl10_binary"
        monkeypatch.setattr(tvd.STL10, "train_list", [[n, _md5(folder / n)] for n, _ in tvd.STL10.train_list])
        monkeypatch.setattr(tvd.STL10, "test_list", [[n, _md5(folder / n)] for n, _ in tvd.STL10.test_list])
    else:
        raise ValueError(name)


# ----------------------------------------------------------------------------- CUB-200-2011


CUB_CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross")
CUB_COLOURS = ((200, 30, 30), (30, 200, 30), (30, 30, 200))


def write_cub(root: Path, *, per_class: int = 4, seed: int = 0, extra_column_line: bool = True):
    """The official CUB_200_2011 folder; returns (is_train, labels, attributes [N, 312]) by image id."""
    rng = np.random.default_rng(seed)
    folder = root / "CUB_200_2011"
    (folder / "attributes").mkdir(parents=True, exist_ok=True)
    rows, labels, is_train = [], [], []
    image_id = 0
    for c, (class_dir, colour) in enumerate(zip(CUB_CLASSES, CUB_COLOURS)):
        for k in range(per_class):
            image_id += 1
            rel = f"{class_dir}/{class_dir.split('.')[1]}_{k:04d}_{image_id}.jpg"
            path = folder / "images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40 + 5 * k, 30), colour).save(path, quality=95)
            rows.append((image_id, rel))
            labels.append(c)
            is_train.append(k % 2 == 0)
    n = image_id
    attributes = (rng.random((n, 312)) < 0.3).astype(np.uint8)
    (folder / "images.txt").write_text("".join(f"{i} {rel}\n" for i, rel in rows))
    (folder / "image_class_labels.txt").write_text("".join(f"{i} {l + 1}\n" for (i, _), l in zip(rows, labels)))
    (folder / "train_test_split.txt").write_text("".join(f"{i} {int(t)}\n" for (i, _), t in zip(rows, is_train)))
    (folder / "classes.txt").write_text("".join(f"{c + 1} {name}\n" for c, name in enumerate(CUB_CLASSES)))
    lines = []
    for i in range(n):
        for a in range(312):
            line = f"{i + 1} {a + 1} {attributes[i, a]} {rng.integers(1, 5)} {rng.random() * 10:.3f}"
            if extra_column_line and i == 1 and a == 7:
                line += " 0"  # the official file has a few 6-column lines
            lines.append(line + "\n")
    (folder / "attributes" / "image_attribute_labels.txt").write_text("".join(lines))
    (root / "attributes.txt").write_text("".join(f"{a + 1} has_part::value_{a + 1}\n" for a in range(312)))
    return np.array(is_train), np.array(labels), attributes


# ----------------------------------------------------------------------------- VAW


VAW_ATTRIBUTES = ["red", "green", "blue", "wooden", "shiny"]


def write_vaw(root: Path, *, subfolder: str = "") -> dict[str, list[dict]]:
    """vaw/*.json (official field names) over Visual Genome-style ``images/{image_id}.jpg``.

    Each image is grey with coloured rectangles; each instance box covers one rectangle, whose
    colour is its first positive attribute.
    """
    folder = root / "vaw"
    images = folder / "images" / subfolder if subfolder else folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    colours = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}
    instances: dict[str, list[dict]] = {"train_part1.json": [], "train_part2.json": [], "test.json": []}
    plan = [  # (file, image id, [(box xywh, colour, object, extra positives, negatives)])
        ("train_part1.json", 101, [([5, 5, 20, 10], "red", "car", ["shiny"], ["green"]),
                                   ([40, 20, 15, 25], "green", "tree", [], ["red"])]),
        ("train_part2.json", 102, [([10, 30, 30, 20], "blue", "car", ["wooden"], [])]),
        ("test.json", 103, [([0, 0, 12, 12], "green", "tree", ["shiny"], ["blue"]),
                            ([50, 40, 14, 10], "red", "car", [], ["wooden"])]),
    ]
    for file, image_id, boxes in plan:
        canvas = np.full((64, 72, 3), 128, dtype=np.uint8)
        for k, (box, colour, obj, extra, negatives) in enumerate(boxes):
            x, y, w, h = box
            canvas[y:y + h, x:x + w] = colours[colour]
            instances[file].append({
                "image_id": str(image_id), "instance_id": f"{image_id}{k:03d}", "instance_bbox": box,
                "instance_polygon": [], "object_name": obj,
                "positive_attributes": [colour, *extra], "negative_attributes": negatives,
            })
        Image.fromarray(canvas).save(images / f"{image_id}.jpg", quality=98)
    for file, records in instances.items():
        (folder / file).write_text(json.dumps(records))
    (folder / "attribute_index.json").write_text(json.dumps({a: i for i, a in enumerate(VAW_ATTRIBUTES)}))
    return instances
