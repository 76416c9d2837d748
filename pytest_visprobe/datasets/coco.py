"""``coco:IMAGES_DIR:ANNOTATIONS.json``: COCO-format detection / instance segmentation data.

Read with pycocotools (polygon, compressed and uncompressed RLE masks). One annotation file
is one pool of images, split into train and test by the seed (``test_fraction``), as with
``imagefolder:PATH``; for COCO itself, ``instances_val2017.json`` (5,000 images) keeps the
cached feature maps to a size a workstation holds.

Every image gets the evaluation transform of the other file datasets — shorter side resized to
``image_size``, centre crop — and boxes and masks get exactly the same transform, so targets
line up with pixels. Categories become contiguous labels in category-id order. Per image:
``boxes`` (xyxy, clipped to the crop), ``box_labels``, ``instance_masks`` (decoded on demand,
so memory holds only the semantic masks), ``semantic_masks`` (0 = background; smaller objects
painted over larger ones) and ``labels`` (the category of the largest object). Crowd
annotations (``iscrowd``) are kept apart as ``crowd_boxes``/``crowd_labels``/``crowd_masks``:
ignore regions for box and mask mAP, as in COCO's evaluation, and never training objects or
semantic-mask pixels. Objects with nothing left inside the crop are left out; images left
without a non-crowd object are dropped, as they have no label (COCOeval would still score
detections on them as false positives). When a captions file sits beside the annotations
(``captions_val2017.json`` beside ``instances_val2017.json``), each image also gets its
captions (five in COCO) and the dataset the ``captions`` target.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pytest_visprobe.datasets.base import Dataset, DatasetError, Split, check_fraction, check_int, fingerprint_of, rng_for

DESCRIPTION = "COCO-format boxes and instance masks: coco:IMAGES_DIR:ANNOTATIONS.json (pycocotools)"
PREFIX = "coco:"


def parse_coco_spec(spec: str) -> tuple[str, str]:
    """``coco:IMAGES_DIR:ANNOTATIONS.json`` → (images dir, annotations file)."""
    from pytest_visprobe.datasets.specs import split_coco_arg

    return split_coco_arg(spec[len(PREFIX):], spec)


@dataclass(frozen=True)
class _Crop:
    """Shorter side to ``size``, then a centre crop: the same numbers for pixels and targets."""

    width: int
    height: int
    size: int

    @property
    def resized(self) -> tuple[int, int]:
        scale = self.size / min(self.width, self.height)
        return (max(self.size, int(round(self.width * scale))), max(self.size, int(round(self.height * scale))))

    @property
    def offset(self) -> tuple[int, int]:
        new_w, new_h = self.resized
        return int(round((new_w - self.size) / 2.0)), int(round((new_h - self.size) / 2.0))

    def box(self, xywh: Sequence[float]) -> np.ndarray:
        new_w, new_h = self.resized
        left, top = self.offset
        x, y, w, h = (float(v) for v in xywh)
        sx, sy = new_w / self.width, new_h / self.height
        box = np.array([x * sx - left, y * sy - top, (x + w) * sx - left, (y + h) * sy - top], dtype=np.float32)
        return np.clip(box, 0.0, float(self.size))

    def mask(self, full: np.ndarray) -> np.ndarray:
        from PIL import Image

        left, top = self.offset
        img = Image.fromarray(full.astype(np.uint8) * 255).resize(self.resized, Image.Resampling.NEAREST)
        return np.asarray(img)[top:top + self.size, left:left + self.size] > 127

    def image(self, path: str) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except FileNotFoundError:
            raise DatasetError(
                f"image file {path!r}, listed in the COCO annotations, does not exist; check the "
                f"IMAGES_DIR part of coco:IMAGES_DIR:ANNOTATIONS.json."
            ) from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DatasetError(
                f"cannot decode image file {path!r} ({type(exc).__name__}: {exc}); the file is "
                f"corrupt or not an image: replace it or remove it from the annotations."
            ) from None
        if rgb.size != (self.width, self.height):
            raise DatasetError(
                f"image {path!r} is {rgb.size[0]}×{rgb.size[1]} but its COCO entry says "
                f"{self.width}×{self.height}; the annotation file does not belong to these images."
            )
        left, top = self.offset
        rgb = rgb.resize(self.resized, Image.Resampling.BICUBIC)
        return np.asarray(rgb.crop((left, top, left + self.size, top + self.size)), dtype=np.uint8)


@dataclass(frozen=True)
class CocoImages:
    """Images decoded when asked for, with the crop their targets were transformed by."""

    paths: tuple[str, ...]
    crops: tuple[_Crop, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, indices: Sequence[int]) -> np.ndarray:
        return np.stack([self.crops[i].image(self.paths[i]) for i in np.asarray(indices, dtype=np.int64)])

    def subset(self, indices: Sequence[int]) -> "CocoImages":
        idx = np.asarray(indices, dtype=np.int64)
        return CocoImages(tuple(self.paths[i] for i in idx), tuple(self.crops[i] for i in idx))


class LazyMasks(Sequence):
    """Per image bool ``[K, S, S]`` instance masks, decoded from the annotations on access."""

    def __init__(self, coco: Any, annotations: list[list[dict]], crops: list[_Crop]) -> None:
        self._coco, self._annotations, self._crops = coco, annotations, crops

    def __len__(self) -> int:
        return len(self._annotations)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        crop = self._crops[i]
        masks = [crop.mask(self._coco.annToMask(a)) for a in self._annotations[i]]
        return np.stack(masks) if masks else np.zeros((0, crop.size, crop.size), dtype=bool)


def load_coco(
    images_dir: str | os.PathLike[str],
    annotations: str | os.PathLike[str],
    *,
    seed: int = 0,
    image_size: int = 224,
    test_fraction: float = 0.2,
) -> Dataset:
    """Index the annotation file with pycocotools and build seeded train/test splits."""
    spec = f"{PREFIX}{images_dir}:{annotations}"
    image_size = check_int(spec, "image_size", image_size, minimum=8)
    test_fraction = check_fraction(spec, "test_fraction", test_fraction)
    root = Path(os.path.abspath(Path(images_dir).expanduser()))
    ann_path = Path(os.path.abspath(Path(annotations).expanduser()))
    if not root.is_dir():
        raise DatasetError(f"{spec}: the images folder {str(root)!r} does not exist; pass the folder "
                           f"holding the images named in the annotation file.")
    coco = _read(ann_path, spec)
    captions = _captions_beside(ann_path, spec)
    categories = sorted(coco.getCatIds())
    if not categories:
        raise DatasetError(f"{spec}: the annotation file has no categories; it is not a COCO "
                           f"detection/segmentation file (instances_*.json).")
    label_of = {cat: i for i, cat in enumerate(categories)}
    class_names = [coco.cats[c].get("name", str(c)) for c in categories]

    rows = []  # (path, crop, kept annotations, boxes, labels, semantic mask, image label, crowd annotations)
    for image_id in sorted(coco.getImgIds()):
        info = coco.imgs[image_id]
        crop = _Crop(int(info["width"]), int(info["height"]), image_size)
        kept, boxes, labels, masks, crowds = [], [], [], [], []
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
            mask = crop.mask(coco.annToMask(ann))
            box = crop.box(ann["bbox"])
            if not mask.any() or box[2] <= box[0] or box[3] <= box[1]:
                continue  # nothing of it left inside the crop
            if ann.get("iscrowd", 0):
                crowds.append(ann)  # an ignore region for evaluation, never a training object
                continue
            kept.append(ann)
            boxes.append(box)
            labels.append(label_of[ann["category_id"]])
            masks.append(mask)
        if not kept:
            continue
        semantic = np.zeros((image_size, image_size), dtype=np.uint8 if len(categories) < 255 else np.int64)
        areas = np.array([m.sum() for m in masks])
        for k in np.argsort(-areas, kind="stable"):  # small objects painted last, so they stay visible
            semantic[masks[k]] = labels[k] + 1
        rows.append((str(root / info["file_name"]), crop, kept, np.stack(boxes),
                     np.array(labels, dtype=np.int64), semantic, labels[int(np.argmax(areas))], crowds,
                     captions.get(image_id, []) if captions is not None else None))
    if len(rows) < 2:
        raise DatasetError(f"{spec}: {len(rows)} image(s) with non-crowd objects inside the crop; "
                           f"at least 2 are needed for a train and a test split.")

    order = rng_for(seed, "coco", "split").permutation(len(rows))
    n_test = min(len(rows) - 1, max(1, int(np.floor(test_fraction * len(rows) + 0.5))))
    parts = {"train": np.sort(order[n_test:]), "test": np.sort(order[:n_test])}
    splits = {name: _split(coco, [rows[i] for i in idx], label_of) for name, idx in parts.items()}
    listing = [(Path(r[0]).name, os.path.getsize(r[0]) if os.path.exists(r[0]) else -1) for r in rows]
    return Dataset(
        name=spec,
        splits=splits,
        class_names=class_names,
        targets=frozenset({"label", "boxes", "masks"} | ({"captions"} if captions is not None else set())),
        fingerprint=fingerprint_of("coco", 2, seed, image_size, test_fraction, ann_path.stat().st_size,
                                   ann_path.stat().st_mtime_ns, listing),
        description=f"COCO-format annotations {str(ann_path)!r} over images in {str(root)!r}",
    )


def _split(coco, rows, label_of: dict[int, int]) -> Split:
    crops = [r[1] for r in rows]
    crowds = [r[7] for r in rows]
    return Split(
        images=CocoImages(tuple(r[0] for r in rows), tuple(crops)),
        labels=np.array([r[6] for r in rows], dtype=np.int64),
        boxes=[r[3] for r in rows],
        box_labels=[r[4] for r in rows],
        instance_masks=LazyMasks(coco, [r[2] for r in rows], crops),
        semantic_masks=np.stack([r[5] for r in rows]),
        captions=[r[8] for r in rows] if rows and rows[0][8] is not None else None,
        crowd_boxes=[np.array([c.box(a["bbox"]) for a in anns], dtype=np.float32).reshape(-1, 4)
                     for c, anns in zip(crops, crowds)],
        crowd_labels=[np.array([label_of[a["category_id"]] for a in anns], dtype=np.int64) for anns in crowds],
        crowd_masks=LazyMasks(coco, crowds, crops),
    )


def captions_path(annotations: Path) -> Path | None:
    """``captions_X.json`` beside ``instances_X.json`` (COCO's naming), else None."""
    name = annotations.name
    return annotations.with_name("captions_" + name[len("instances_"):]) if name.startswith("instances_") else None


def _captions_beside(annotations: Path, spec: str) -> dict[int, list[str]] | None:
    """Image id → its captions, from the captions file beside the annotations if there is one."""
    path = captions_path(annotations)
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        entries = [(int(a["image_id"]), " ".join(str(a["caption"]).split())) for a in data["annotations"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{spec}: cannot read captions from {str(path)!r} ({type(exc).__name__}: {exc}); "
                           f"it must be a COCO captions file (annotations with image_id and caption): "
                           f"download it again or remove it.") from None
    captions: dict[int, list[str]] = {}
    for image_id, caption in entries:
        captions.setdefault(image_id, []).append(caption)
    return captions


def _read(path: Path, spec: str):
    from pycocotools.coco import COCO

    if not path.is_file():
        raise DatasetError(f"{spec}: the annotation file {str(path)!r} does not exist; pass a COCO "
                           f"instances JSON file (e.g. annotations/instances_val2017.json).")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{spec}: cannot read {str(path)!r} as JSON ({type(exc).__name__}: {exc}); "
                           f"the file is truncated or not JSON: download or export it again.") from None
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data, dict) or k not in data]
    if missing:
        raise DatasetError(f"{spec}: {str(path)!r} has no {', '.join(missing)} list, so it is not a COCO "
                           f"instances file; pass one with images, annotations and categories.")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


VAL2017_DESCRIPTION = ("COCO val2017 detection/segmentation (DATA_ROOT/coco/val2017/ and "
                       "DATA_ROOT/coco/annotations/instances_val2017.json), split by seed; captions "
                       "when captions_val2017.json is beside it")


def val2017_paths(data_root: Path) -> tuple[Path, Path]:
    folder = Path(data_root) / "coco"
    return folder / "val2017", folder / "annotations" / "instances_val2017.json"


def val2017_present(data_root: Path) -> bool:
    images, annotations = val2017_paths(data_root)
    return images.is_dir() and annotations.is_file()


def load_coco_val2017(
    *, seed: int = 0, root: str | os.PathLike[str] | None = None, download: bool = False,
    image_size: int = 224, test_fraction: float = 0.2,
) -> Dataset:
    """The registered name ``coco``: the standard and paper profiles' localization data."""
    from dataclasses import replace

    from pytest_visprobe.datasets.storage import not_found, resolve_root

    data_root = resolve_root(root)
    images, annotations = val2017_paths(data_root)
    if not val2017_present(data_root):
        raise not_found("COCO val2017", [images, annotations], how=(
            "COCO is not downloaded automatically" + (" (--visprobe-download does not apply)" if download else "")
            + f": unzip val2017.zip and annotations_trainval2017.zip from cocodataset.org into "
            f"{images.parent}, or point a profile or test at coco:IMAGES_DIR:ANNOTATIONS.json."
        ))
    dataset = load_coco(images, annotations, seed=seed, image_size=image_size, test_fraction=test_fraction)
    return replace(dataset, name="coco", description=VAL2017_DESCRIPTION)
