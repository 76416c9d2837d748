"""FeatureStore extraction overhead vs a bare ``model(x)`` loop over the same images.

    python benchmarks/bench_features.py [--n 512] [--batch-size 64] [--repeats 3] [--threads N]

For each model (a small CNN at 64 px; timm ``test_vit`` and ``resnet18``, random init, at 224 px)
it times, on CPU, best of ``--repeats`` (the three variants interleaved, so load drift hits all):
  * store  — ``FeatureStore.get`` (no disk cache) on the uint8 dataset: uint8 → float → the
             encoder's normalisation → model → pooled, under inference_mode;
  * bare   — ``model(x)`` under inference_mode on images already converted to normalised float
             tensors, same batches (the floor: no conversion at all);
  * bare+u8 — the same loop also converting each uint8 batch (what any pipeline must do).
The encoder's fingerprint (hashing the weights, once per encoder per session) is timed apart.
Target: store ≤ 1.10 × bare.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from pytest_visprobe.datasets.base import ArrayImages, Dataset, Split
from pytest_visprobe.encoders.base import ModuleEncoder
from pytest_visprobe.features import FeatureStore

CPU = torch.device("cpu")


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 64, 5, stride=2, padding=2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )


def timm_model(name: str, size: int) -> nn.Module:
    import timm

    torch.manual_seed(0)
    kwargs = {"img_size": size} if "vit" in name else {}
    return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)


MODELS = [
    ("small CNN", 64, small_cnn),
    ("timm test_vit", 224, lambda: timm_model("test_vit", 224)),
    ("timm resnet18", 224, lambda: timm_model("resnet18", 224)),
]


def dataset_of(n: int, size: int) -> Dataset:
    images = np.random.default_rng(0).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return Dataset(name=f"bench{size}", splits={"test": Split(images=ArrayImages(images))},
                   fingerprint=f"bench-{n}-{size}")


def to_float(batch: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - mean) / std


def run_model(label: str, size: int, build, n: int, batch_size: int, repeats: int) -> None:
    model = build().eval()
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    encoder = ModuleEncoder(model, name=label, input_size=(size, size), mean=mean, std=std).eval()
    dataset = dataset_of(n, size)
    array = dataset.split("test").images.array
    starts = range(0, n, batch_size)
    pre = [to_float(array[s:s + batch_size], encoder.mean, encoder.std) for s in starts]

    start = time.perf_counter()
    encoder.fingerprint()
    t_fingerprint = time.perf_counter() - start

    def store() -> torch.Tensor:
        return FeatureStore(cache_dir=None, device=CPU, batch_size=batch_size).get(encoder, dataset, "test")

    def bare() -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([model(x) for x in pre])

    def bare_u8() -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([model(to_float(array[s:s + batch_size], encoder.mean, encoder.std)) for s in starts])

    with torch.inference_mode():  # warm-up (allocator, oneDNN kernels)
        model(pre[0])
    times: dict[str, list[float]] = {"store": [], "bare": [], "bare+u8": []}
    outputs = {}
    for _ in range(repeats):
        for name, fn in (("store", store), ("bare", bare), ("bare+u8", bare_u8)):
            start = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - start)
    # the store must compute the same features, or the timing means nothing
    torch.testing.assert_close(outputs["store"], outputs["bare"].float(), rtol=1e-4, atol=1e-4)
    best = {k: min(v) for k, v in times.items()}
    print(f"\n{label} @ {size}px, {n} images, batch {batch_size}, torch threads {torch.get_num_threads()}")
    for name in ("bare", "bare+u8", "store"):
        spread = f"(runs: {', '.join(f'{t:.2f}' for t in times[name])})"
        print(f"  {name:8s} {best[name]:8.3f} s  {spread}")
    print(f"  fingerprint (once per encoder per session): {t_fingerprint:.3f} s")
    print(f"  overhead store / bare      = {best['store'] / best['bare']:.3f}"
          f"   (with fingerprint {(best['store'] + t_fingerprint) / best['bare']:.3f})")
    print(f"  overhead store / bare+u8   = {best['store'] / best['bare+u8']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--models", nargs="*", default=None, help="subset of: cnn vit resnet18")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keys = {"cnn": "small CNN", "vit": "timm test_vit", "resnet18": "timm resnet18"}
    chosen = {keys[m] for m in args.models} if args.models else None
    for label, size, build in MODELS:
        if chosen is None or label in chosen:
            run_model(label, size, build, args.n, args.batch_size, args.repeats)


if __name__ == "__main__":
    main()
