"""Real-dataset loaders vs using torchvision's dataset classes directly, at the official sizes.

Writes CIFAR-10 (50,000 + 10,000) and MNIST (60,000 + 10,000) in their real on-disk formats
with synthetic pixels into a temporary folder (torchvision's md5 tables pinned to them, as in
the tests), then measures:

- ``load``: ``load_dataset(name)`` (torchvision reads and md5-checks the files, we convert to
  views and fingerprint the manifest) vs constructing torchvision's train and test objects.
- ``batches``: the test split as float ``[B, 3, H, W]`` batches of 256 — ours
  (``split.images.get`` + ``to_float_images``, what the FeatureStore does) vs the direct
  alternative, torchvision's dataset with ``ToTensor`` (+ ``Grayscale(3)`` for MNIST) through a
  ``DataLoader`` (batch 256, no workers).
- ``memory``: bytes the RGB images hold (MNIST greyscale is a broadcast view) vs a
  materialised ``[N, H, W, 3]`` copy.

    python benchmarks/bench_real_datasets.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import pytest  # noqa: E402
import torch  # noqa: E402

from pytest_visprobe.datasets import load_dataset  # noqa: E402
from pytest_visprobe.features import to_float_images  # noqa: E402
from real_formats import pin_md5s, write_cifar, write_mnist  # noqa: E402

BATCH = 256


def _time(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _ours(dataset) -> int:
    split = dataset.split("test")
    rows = 0
    for start in range(0, len(split), BATCH):
        batch = to_float_images(split.images.get(range(start, min(start + BATCH, len(split)))), torch.device("cpu"))
        rows += batch.shape[0]
    return rows


def _direct(cls, root: Path, grey: bool) -> int:
    from torch.utils.data import DataLoader
    from torchvision import transforms

    steps = [transforms.Grayscale(3)] if grey else []
    tv = cls(str(root), train=False, transform=transforms.Compose([*steps, transforms.ToTensor()]))
    rows = 0
    for images, _ in DataLoader(tv, batch_size=BATCH, num_workers=0):
        rows += images.shape[0]
    return rows


def main() -> None:
    import torchvision.datasets as tvd

    torch.set_num_threads(1)
    monkeypatch = pytest.MonkeyPatch()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_cifar(root, per_batch=10_000, n_test=10_000)
        pin_md5s(monkeypatch, "cifar10", root)
        write_mnist(root, n_train=60_000, n_test=10_000, gz=False)
        print(f"{'dataset':<8} {'measure':<9} {'ours':>9} {'direct':>9} {'ratio':>7}")
        for name, cls, grey in (("cifar10", tvd.CIFAR10, False), ("mnist", tvd.MNIST, True)):
            t_ours, dataset = _time(lambda: load_dataset(name, root=root))
            t_direct, _ = _time(lambda: (cls(str(root), train=True), cls(str(root), train=False)))
            print(f"{name:<8} {'load':<9} {t_ours:>8.2f}s {t_direct:>8.2f}s {t_direct / t_ours:>6.2f}x")
            b_ours, n1 = _time(lambda: _ours(dataset))
            b_direct, n2 = _time(lambda: _direct(cls, root, grey), repeat=1)
            assert n1 == n2 == 10_000
            print(f"{name:<8} {'batches':<9} {b_ours:>8.2f}s {b_direct:>8.2f}s {b_direct / b_ours:>6.2f}x")
            array = dataset.split("train").images.array
            held = array.base.nbytes if array.base is not None else array.nbytes
            held = min(held, array.nbytes)
            print(f"{name:<8} {'memory':<9} {held / 2**20:>7.0f}MB {array.nbytes / 2**20:>7.0f}MB "
                  f"{array.nbytes / held:>6.2f}x")
    monkeypatch.undo()


if __name__ == "__main__":
    main()
