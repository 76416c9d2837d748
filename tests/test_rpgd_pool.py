"""Which images RPGD attacks and how they are decoded, against torchvision itself.

The study (PROTOCOLS.md A) loads ImageNet-val with ``torchvision.datasets.ImageFolder``, takes
the first N of ``np.random.seed(42); np.random.permutation(50000)`` and prepares each file with
``Resize(256)`` + ``CenterCrop(224)`` + ``ToTensor`` (CLIP: ``Resize(224, bicubic)``). Here a
generated folder of small JPEGs of varied sizes is read by torchvision's ImageFolder and
transforms (v1, an implementation apart from the probe's v2 pipeline) and compared with the
pixels the attacked classifier is handed. Sizes are scaled down (crop 14 after a resize to 16,
the study's 224/256 ratio), except for one check of the default 256/224 transform.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("foolbox")

from PIL import Image  # noqa: E402
from torchvision import transforms as T  # noqa: E402

from pytest_visprobe import Encoder  # noqa: E402
from pytest_visprobe.datasets import load_dataset  # noqa: E402
from pytest_visprobe.datasets.base import ArrayImages, Dataset, Split, fingerprint_of  # noqa: E402
from pytest_visprobe.kernels.linear import LinearHead  # noqa: E402
from pytest_visprobe.kernels.rpgd import attack_images, study_decoding, study_transform  # noqa: E402
from pytest_visprobe.probes import rpgd as rpgd_module  # noqa: E402
from pytest_visprobe.probes.rpgd import RobustnessConfig, attack_pool  # noqa: E402

K, PER_CLASS, N = 5, 12, 20
CROP, RESIZE = 14, 16  # 224 · 14/224 and 256 · 14/224


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """5 classes × 12 noisy JPEGs, each of its own size (some portrait, some landscape)."""
    root = tmp_path_factory.mktemp("data") / "imagenet" / "val"  # also DATA_ROOT's imagenet_val
    rng = np.random.default_rng(0)
    for c in range(K):
        for i in range(PER_CLASS):
            w, h = (int(v) for v in rng.integers(18, 41, size=2))
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            path = root / f"n0{c}" / f"img_{i:02d}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path, quality=90)
    return root


class Recorder(Encoder):
    """Records every batch its classifier (or its embedding, under a linear head) is handed."""

    name = "recorder"
    input_size = (CROP, CROP)
    classifier_classes = K

    def __init__(self, ref: str) -> None:
        super().__init__()
        self.ref = ref
        self.seen: list[torch.Tensor] = []

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        self.seen.append(images.detach().clone())
        return images.mean(dim=(2, 3))

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images) @ torch.ones(3, K)


HEAD = LinearHead(mean=torch.zeros(3), scale=torch.ones(3), weight=torch.ones(3, K), bias=torch.zeros(K),
                  weight_decay=0.0)


def _reference(paths_targets, order, clip: bool, crop: int = CROP, resize: int = RESIZE):
    """torchvision's (v1) transform of the files at ``order``: pixels and labels."""
    first = T.Resize(crop, interpolation=T.InterpolationMode.BICUBIC) if clip else T.Resize(resize)
    transform = T.Compose([first, T.CenterCrop(crop), T.ToTensor()])
    images = [transform(Image.open(paths_targets[i][0]).convert("RGB")) for i in order]
    return torch.stack(images), [paths_targets[i][1] for i in order]


def _run(dataset, encoder, classifier, monkeypatch):
    monkeypatch.setattr("pytest_visprobe.probes.label.shared_label_probe", lambda ctx, config: (None, HEAD))
    config = RobustnessConfig(n_images=N, steps=2, rel_stepsize=1.25, linf_epsilons=(0.0,), linf_robust_epsilon=0.0,
                              attack_size="study", classifier=classifier)
    ctx = SimpleNamespace(settings=config, dataset=dataset, encoder=encoder, seed=0, device="cpu")
    return rpgd_module.run(ctx, norm="linf", targeted=False)


def test_all_split_is_torchvision_imagefolder_order_and_leaves_the_fingerprint(folder):
    ds = load_dataset(f"imagefolder:{folder}", image_size=16)
    reference = torchvision.datasets.ImageFolder(str(folder))
    every = ds.split("all")
    assert list(every.images.paths) == [p for p, _ in reference.samples]
    assert every.labels.tolist() == reference.targets
    train, test = ds.split("train"), ds.split("test")
    assert sorted(train.images.paths + test.images.paths) == sorted(every.images.paths)
    assert len(test) == K * round(0.2 * PER_CLASS)
    # the fingerprint lists train and test only, as before the split "all" existed
    listing = [(name, Path(f).relative_to(folder).as_posix(), os.path.getsize(f))
               for name, split in (("train", train), ("test", test)) for f in split.images.paths]
    imagefolder = fingerprint_of("imagefolder", "flat", 0, 16, 0.2, ds.class_names, listing)
    assert ds.fingerprint == imagefolder
    imagenet = load_dataset("imagenet_val", root=folder.parent.parent, image_size=16)
    assert list(imagenet.split("all").images.paths) == [p for p, _ in reference.samples]
    assert imagenet.split("all").labels.tolist() == reference.targets


@pytest.mark.parametrize("ref, clip", [("timm:resnet10t", False), ("torchvision:resnet18", False),
                                       ("open_clip:ViT-B-32/openai", True)])
def test_own_classifier_attacks_the_study_images_of_the_whole_folder(folder, ref, clip, monkeypatch):
    ds = load_dataset(f"imagefolder:{folder}", image_size=16)
    encoder = Recorder(ref)
    auc, robust = _run(ds, encoder, "own", monkeypatch)
    reference = torchvision.datasets.ImageFolder(str(folder))
    order = np.random.RandomState(42).permutation(len(reference))[:N]
    expected, labels = _reference(reference.samples, order, clip)
    assert torch.equal(torch.cat(encoder.seen), expected)  # ε = 0 only: the clean pass, in order
    predicted = (expected.mean(dim=(2, 3)) @ torch.ones(3, K)).argmax(1).numpy()
    assert auc.details.clean_accuracy == float(np.mean(predicted == np.array(labels)))
    assert auc.split == robust.split == "all"
    assert auc.details.pool == f"{ds.name}, ImageFolder order, all {K * PER_CLASS} images (split 'all')"
    kind = "bicubic" if clip else "bilinear"
    assert f"Resize({CROP if clip else RESIZE}, {kind}" in auc.details.preparation
    assert auc.data_key is not None and auc.data_key == robust.data_key
    _, got_labels, got_order = attack_images(ds.split("all"), n_images=N, transform=study_decoding(encoder)[0])
    assert got_order.tolist() == order.tolist() and got_labels.tolist() == labels


def test_a_linear_head_is_attacked_on_the_test_split(folder, monkeypatch):
    ds = load_dataset(f"imagefolder:{folder}", image_size=16)
    encoder = Recorder("timm:resnet10t")
    auc, _ = _run(ds, encoder, "linear", monkeypatch)
    test = ds.split("test")
    order = np.random.RandomState(42).permutation(len(test))[:N]
    expected, _ = _reference(list(zip(test.images.paths, test.labels)), order, clip=False)
    assert torch.equal(torch.cat(encoder.seen), expected)
    assert auc.split == "test"
    assert auc.details.pool.startswith(f"{ds.name}, test split, {len(test)} images (the linear head is fitted")


def test_the_default_transform_is_the_studys_256_224(folder):
    paths = sorted(str(p) for p in folder.rglob("*.JPEG"))[:3]
    for clip, v1 in ((False, T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])),
                     (True, T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
                                       T.CenterCrop(224), T.ToTensor()]))):
        transform = study_transform(clip)
        for path in paths:
            image = Image.open(path).convert("RGB")
            ours = torch.from_numpy(np.array(transform(image))).permute(2, 0, 1).float().div(255)
            assert torch.equal(ours, v1(image))


def test_in_memory_datasets_keep_the_stored_images(monkeypatch):
    """No files to decode: the test split, centre-cropped as before (no 'all' split either)."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(30, 16, 16, 3), dtype=np.uint8)
    labels = (np.arange(30) % K).astype(np.int64)
    split = Split(images=ArrayImages(pixels), labels=labels)
    ds = Dataset(name="mem", splits={"train": split, "test": split}, class_names=[str(c) for c in range(K)],
                 targets=frozenset({"label"}))
    assert attack_pool(ds, own=True)[0] == "test"
    encoder = Recorder("timm:resnet10t")
    auc, _ = _run(ds, encoder, "own", monkeypatch)
    order = np.random.RandomState(42).permutation(30)[:N]
    stored = torch.from_numpy(pixels[order]).permute(0, 3, 1, 2).float().div(255)
    assert torch.equal(torch.cat(encoder.seen), stored[..., 1:15, 1:15])  # CenterCrop(14) of 16×16
    assert auc.split == "test" and auc.data_key is None
