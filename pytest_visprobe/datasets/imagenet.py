"""ImageNet's validation images (ILSVRC-2012, 50,000 images, 1,000 classes) as an ImageFolder.

``DATA_ROOT/imagenet/val/<wnid>/*.JPEG``, the layout ``torchvision.datasets.ImageNet``
prepares (and most ImageNet copies use). The 50 images per class are split per class with
the seed (``test_fraction``); the split ``all`` holds the 50,000 in torchvision ``ImageFolder``
order, the pool of the RPGD study's seeded 1,000; ``subset=N`` keeps a seeded N images of each
split. Class names are readable words when torchvision's ``meta.bin`` or Kaggle's
``LOC_synset_mapping.txt`` sits in ``DATA_ROOT/imagenet``; else the wnids. The name is the
synset's first synonym; all its synonyms ride along as ``class_synonyms`` (RSA's study names
are built from the first two).
ImageNet cannot be downloaded automatically (its licence requires a sign-in).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from pytest_visprobe.datasets.base import Dataset, DatasetError, fingerprint_of
from pytest_visprobe.datasets.imagefolder import load_imagefolder
from pytest_visprobe.datasets.storage import file_digest, not_found, resolve_root

DESCRIPTION = "ImageNet ILSVRC-2012 validation images (DATA_ROOT/imagenet/val/<wnid>/), split by seed"
FOLDER = "imagenet"


def present(data_root: Path) -> bool:
    return (Path(data_root) / FOLDER / "val").is_dir()


def load_imagenet_val(
    *, seed: int = 0, root: str | os.PathLike[str] | None = None, download: bool = False,
    image_size: int = 224, test_fraction: float = 0.2, subset: int | None = None,
) -> Dataset:
    data_root = resolve_root(root)
    folder = data_root / FOLDER
    if not present(data_root):
        raise not_found("ImageNet (validation)", [folder / "val"], how=(
            "ImageNet cannot be downloaded automatically"
            + (" (--visprobe-download does not apply)" if download else "")
            + ": get ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz from "
            f"https://image-net.org into {folder} and run python -c \"import torchvision; "
            f"torchvision.datasets.ImageNet('{folder}', split='val')\" once to sort them into "
            "class folders; or use --visprobe-dataset imagefolder:PATH for a copy elsewhere."
        ))
    dataset = load_imagefolder(folder / "val", seed=seed, image_size=image_size,
                               test_fraction=test_fraction, subset=subset)
    synonyms, source = _synonyms(folder, dataset.class_names)
    return replace(
        dataset, name="imagenet_val", class_names=[s[0] for s in synonyms], class_synonyms=synonyms,
        description=DESCRIPTION,
        fingerprint=fingerprint_of("imagenet_val", dataset.fingerprint, source),
    )


def _synonyms(folder: Path, wnids: list[str]) -> tuple[list[list[str]], str | None]:
    """wnid -> its synonyms (["tench", "Tinca tinca"]), from whichever mapping file exists; a
    wnid the file does not name is its own only synonym."""
    mapping: dict[str, list[str]] = {}
    source = None
    loc = folder / "LOC_synset_mapping.txt"
    meta = folder / "meta.bin"
    if loc.is_file():
        with open(loc, encoding="utf-8") as handle:
            for line in handle:
                wnid, _, words = line.strip().partition(" ")
                if wnid:
                    mapping[wnid] = [w.strip() for w in words.split(",") if w.strip()] or [wnid]
        source = file_digest(loc)
    elif meta.is_file():
        import torch

        try:
            wnid_to_classes = torch.load(meta, weights_only=True)[0]
        except Exception as exc:  # a truncated or foreign file
            raise DatasetError(f"ImageNet: cannot read {meta} ({type(exc).__name__}: {exc}); delete "
                               "it (class names fall back to wnids) or let torchvision recreate it.") from None
        mapping = {wnid: [str(c) for c in classes] or [wnid] for wnid, classes in wnid_to_classes.items()}
        source = file_digest(meta)
    return [mapping.get(w, [w]) for w in wnids], source
