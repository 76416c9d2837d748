"""The transfer probe's augmented path (augmented.py) vs a bare ``encoder.embed(x)`` loop.

    python benchmarks/bench_transfer_augment.py [--n 240] [--batch-size 60] [--repeats 2] [--threads 2]

For each model (a small CNN at 64 px, timm ``resnet18`` at 224 px, random init) and dataset
image size (32 px as CIFAR, 256 px as the image-file datasets), best of ``--repeats``:
  * augmented — one epoch of ``fit_adam_probe_augmented``: shuffled uint8 batches, the study's
                Resize(276) + RandomResizedCrop(256, bicubic) + flip per image, the encoder (eval,
                no_grad, its own resize and normalisation), the Adam step on the head;
  * bare      — ``encoder.embed(x)`` under no_grad over the same number of 256-pixel float
                batches made beforehand (the floor: no decoding, no augmentation, no head).
Prints images/s of both and augmented/bare time. The target on a GPU is close to 1 (the
augmentation is per image on the CPU RNG, the encoder dominates); on a shared CPU the
per-image transforms weigh more.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from pytest_visprobe.augmented import fit_adam_probe_augmented
from pytest_visprobe.datasets.base import ArrayImages
from pytest_visprobe.encoders.base import ModuleEncoder

from bench_features import small_cnn  # the same small CNN as the feature-extraction benchmark (this folder)


def resnet18() -> nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, num_classes=0)


MODELS = [("small CNN", 64, small_cnn), ("timm resnet18", 224, resnet18)]


def run(label: str, size: int, build, image_side: int, n: int, batch_size: int, repeats: int,
        device: torch.device) -> None:
    encoder = ModuleEncoder(build().eval(), name=label, input_size=(size, size),
                            mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)).to(device).eval()
    rng = np.random.default_rng(0)
    images = ArrayImages(rng.integers(0, 256, size=(n, image_side, image_side, 3), dtype=np.uint8))
    labels = rng.integers(0, 10, n)
    pre = [torch.rand(min(batch_size, n - s), 3, 256, 256, device=device) for s in range(0, n, batch_size)]

    def augmented() -> None:
        fit_adam_probe_augmented(encoder, images, labels, n_classes=10, epochs=1, batch_size=batch_size,
                                 seed=0, device=device)

    def bare() -> None:
        with torch.no_grad():
            for x in pre:
                encoder.embed(x)
        if device.type == "cuda":
            torch.cuda.synchronize()

    best = {"augmented": float("inf"), "bare": float("inf")}
    bare()  # warm-up
    for _ in range(repeats):
        for name, fn in (("augmented", augmented), ("bare", bare)):
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    print(f"{label:14s} input {size:3d} px, dataset {image_side:3d} px, {n} images: "
          f"augmented {n / best['augmented']:7.1f} img/s, bare {n / best['bare']:7.1f} img/s, "
          f"augmented/bare time {best['augmented'] / best['bare']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--batch-size", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {args.threads} threads, device {device}")
    for label, size, build in MODELS:
        for side in (32, 256):
            run(label, size, build, side, args.n, args.batch_size, args.repeats, device)


if __name__ == "__main__":
    main()
