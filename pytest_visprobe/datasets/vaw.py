"""VAW (Visual Attributes in the Wild) attribute annotations on object regions.

Annotations as the official repository ships them (``adobe-research/vaw_dataset``,
``data/``), in ``DATA_ROOT/vaw/`` (or ``DATA_ROOT/vaw/data/``): ``train_part1.json``,
``train_part2.json``, ``val.json``, ``test.json`` and ``attribute_index.json`` (attribute
name -> index). Each file is a list of instances::

    {"image_id": "2373241", "instance_id": "2373241004", "instance_bbox": [x, y, w, h],
     "object_name": "floor", "positive_attributes": ["tiled"], "negative_attributes": [...]}

Images are Visual Genome's ``{image_id}.jpg``, looked up in ``DATA_ROOT/vaw/images/`` and its
``VG_100K/`` and ``VG_100K_2/`` sub-folders (``images=`` points elsewhere). They cannot be
fetched here (Visual Genome is several archives); a missing dataset says where to get them.

One sample per instance: the box cropped from its image and resized to a square of
``image_size`` (stretched, so the whole object stays in view), ``attributes`` = the positive
attributes as a multi-hot row, ``attribute_mask`` = True where the attribute is an explicit
positive or negative, ``labels`` = the object name's index. An attribute neither positive nor
negative is unknown, not absent: the attribute probe leaves it out of the loss and of the
scoring, as VAW's evaluator does. Splits: train (both parts), val when present, test.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pytest_visprobe.datasets.base import Dataset, DatasetError, Split, _as_indices, check_int, crop_region, fingerprint_of, open_rgb
from pytest_visprobe.datasets.storage import corrupt, manifest, not_found, resolve_root

DESCRIPTION = ("VAW: attribute annotations (620 attributes) on Visual Genome object regions; "
               "one cropped region per instance")
FOLDER = "vaw"
SPLIT_FILES = {"train": ("train_part1.json", "train_part2.json"), "val": ("val.json",),
               "test": ("test.json",)}
INDEX_FILE = "attribute_index.json"
LOADER_VERSION = 2
_WHERE = ("annotations from https://github.com/adobe-research/vaw_dataset (data/*.json) and "
          "Visual Genome images from https://visualgenome.org")


@dataclass(frozen=True)
class RegionImages:
    """Object regions cropped from image files on demand, each resized to a square."""

    paths: tuple[str, ...]
    boxes: np.ndarray  # float32 [N, 4] xyxy pixels
    image_size: int

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, indices: Sequence[int]) -> np.ndarray:
        idx = _as_indices(indices, len(self))
        out = np.empty((len(idx), self.image_size, self.image_size, 3), dtype=np.uint8)
        opened: tuple[str, object] | None = None  # rows are sorted by image: decode each once
        for row, i in enumerate(idx):
            if opened is None or opened[0] != self.paths[i]:
                opened = (self.paths[i], open_rgb(self.paths[i]))
            out[row] = crop_region(opened[1], self.boxes[i], self.image_size)
        return out

    def subset(self, indices: Sequence[int]) -> RegionImages:
        idx = _as_indices(indices, len(self))
        return RegionImages(tuple(self.paths[i] for i in idx), self.boxes[idx], self.image_size)


def annotation_dir(data_root: Path) -> Path:
    base = data_root / FOLDER
    return base / "data" if (base / "data" / "test.json").is_file() else base


def present(data_root: Path) -> bool:
    folder = annotation_dir(Path(data_root))
    return all((folder / name).is_file() for name in ("train_part1.json", "test.json"))


def load_vaw(
    *, seed: int = 0, root: str | os.PathLike[str] | None = None, download: bool = False,
    images: str | os.PathLike[str] | None = None, image_size: int = 224,
) -> Dataset:
    """VAW instances as region crops with multi-hot positive attributes."""
    image_size = check_int("vaw", "image_size", image_size, minimum=8)
    data_root = resolve_root(root)
    folder = annotation_dir(data_root)
    image_root = Path(os.path.abspath(Path(images).expanduser())) if images else data_root / FOLDER / "images"
    how = (f"VAW cannot be downloaded by {'--visprobe-download' if download else 'this plugin'}: "
           f"put the {_WHERE} into {data_root / FOLDER} (images in {image_root}), or point "
           "--visprobe-data-root at a folder that holds them.")
    needed = [folder / "train_part1.json", folder / "test.json"]
    if not all(p.is_file() for p in needed):
        raise not_found("VAW", [p for p in needed if not p.is_file()], how=how)

    split_records = {}
    for split, names in SPLIT_FILES.items():
        paths = [folder / n for n in names if (folder / n).is_file()]
        if paths:
            split_records[split] = [(p, r) for p in paths for r in _read_json(p, list)]
    index_path = folder / INDEX_FILE
    if index_path.is_file():
        index = _read_json(index_path, dict)
        attribute_names = [name for name, _ in sorted(index.items(), key=lambda kv: kv[1])]
        if sorted(index.values()) != list(range(len(index))):
            raise corrupt("VAW", index_path, "indices are not 0..A-1", _fix(data_root))
    else:
        attribute_names = sorted({a for recs in split_records.values() for p, r in recs
                                  for key in ("positive_attributes", "negative_attributes")
                                  for a in _field(p, r, key, list)})
    column = {name: i for i, name in enumerate(attribute_names)}
    object_names = sorted({str(_field(p, r, "object_name", str)) for recs in split_records.values()
                           for p, r in recs})
    label_of = {name: i for i, name in enumerate(object_names)}

    files: dict[str, Path] = {}
    splits = {}
    for split, records in split_records.items():
        order = sorted(range(len(records)), key=lambda i: str(records[i][1].get("image_id")))
        paths, boxes, labels = [], [], []
        attributes = np.zeros((len(records), len(attribute_names)), dtype=np.uint8)
        labelled = np.zeros((len(records), len(attribute_names)), dtype=bool)
        for row, i in enumerate(order):
            source, record = records[i]
            image_id = str(_field(source, record, "image_id", (str, int)))
            if image_id not in files:
                files[image_id] = _find_image(image_root, image_id)
            paths.append(str(files[image_id]))
            boxes.append(_box(source, record))
            labels.append(label_of[str(record["object_name"])])
            for key in ("positive_attributes", "negative_attributes"):
                for name in _field(source, record, key, list):
                    if name not in column:
                        raise corrupt("VAW", source, f"instance {record.get('instance_id')!r} "
                                      f"has attribute {name!r}, which {INDEX_FILE} lacks", _fix(data_root))
            positives = [column[a] for a in record["positive_attributes"]]
            attributes[row, positives] = 1
            labelled[row, positives] = True
            labelled[row, [column[a] for a in record["negative_attributes"]]] = True
        splits[split] = Split(
            images=RegionImages(tuple(paths), np.array(boxes, dtype=np.float32).reshape(-1, 4), image_size),
            labels=np.array(labels, dtype=np.int64), attributes=attributes, attribute_mask=labelled,
        )
    absent = [image_id for image_id, path in files.items() if path is None]
    if absent:
        message = (f"{len(absent)} of the {len(files)} Visual Genome images VAW annotates are not in "
                   f"{image_root} (or its VG_100K/, VG_100K_2/), e.g. {absent[0]}.jpg")
        if len(absent) == len(files):
            raise not_found("VAW's images", [image_root / f"{absent[0]}.jpg"], how=how)
        raise DatasetError(f"VAW: {message}; an incomplete download? Add the missing images "
                           "(both VG_100K and VG_100K_2 archives are needed).")
    annotations = [p for names in SPLIT_FILES.values() for n in names if (p := folder / n).is_file()]
    annotations += [index_path] if index_path.is_file() else []
    return Dataset(
        name="vaw",
        splits=splits,
        class_names=object_names,
        attribute_names=attribute_names,
        targets=frozenset({"label", "attributes"}),
        fingerprint=fingerprint_of("vaw", LOADER_VERSION, image_size,
                                   manifest(data_root, sorted(set(files.values())), content=annotations)),
        description=DESCRIPTION,
    )


def _read_json(path: Path, kind: type):
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise corrupt("VAW", path, f"not valid JSON: {exc}", _fix(path.parent)) from None
    if not isinstance(data, kind):
        raise corrupt("VAW", path, f"expected a JSON {'list' if kind is list else 'object'}, got "
                      f"{type(data).__name__}", _fix(path.parent))
    return data


def _field(source: Path, record: object, key: str, kind):
    if not isinstance(record, dict) or key not in record or not isinstance(record[key], kind):
        raise corrupt("VAW", source, f"an instance lacks a valid {key!r} field: {str(record)[:120]}",
                      _fix(source.parent))
    return record[key]


def _box(source: Path, record: dict) -> list[float]:
    box = _field(source, record, "instance_bbox", list)
    if len(box) != 4 or not all(isinstance(v, (int, float)) for v in box) or box[2] <= 0 or box[3] <= 0:
        raise corrupt("VAW", source, f"instance {record.get('instance_id')!r} has instance_bbox "
                      f"{box!r}; expected [x, y, width, height] with positive sizes", _fix(source.parent))
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


def _find_image(image_root: Path, image_id: str) -> Path | None:
    for folder in (image_root, image_root / "VG_100K", image_root / "VG_100K_2"):
        candidate = folder / f"{image_id}.jpg"
        if candidate.is_file():
            return candidate
    return None


def _fix(where: Path) -> str:
    return f"Replace the file with the official one ({_WHERE}); the data is under {where}."
