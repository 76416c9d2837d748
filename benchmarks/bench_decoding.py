"""Image decoding for real datasets: the parallel, prefetching path against the sequential one.

Writes a folder of JPEGs (500 × 375, like ImageNet photos; 2,000 by default), then prints
images/s of (a) the old path, one ``decode_image`` after another, (b) ``FileImages.get`` in
batches (parallel decode threads), and (c) a FeatureStore extraction with a tiny encoder, whose
next batch is decoded while the current one runs; with ratios against (a). Target: ≥ 1.8× on
2 cores. On a CUDA machine it also prints extraction throughput as a ratio of a bare
``model(x)`` loop on pre-decoded tensors (target ≥ 0.9).

    python benchmarks/bench_decoding.py [--images 2000] [--size 224]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_jpegs(folder: Path, count: int) -> list[str]:
    rng = np.random.default_rng(0)
    base = (rng.random((375, 500, 3)) * 255).astype(np.uint8)
    paths = []
    for i in range(count):
        image = np.roll(base, i * 7, axis=1)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(image).save(path, quality=90)
        paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    import torch

    from pytest_visprobe.datasets.base import Dataset, FileImages, Split, decode_image
    from pytest_visprobe.encoders.base import ModuleEncoder
    from pytest_visprobe.features import FeatureStore, resolve_device

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jpegs(Path(tmp), args.images)
        images = FileImages(tuple(paths), args.size)

        start = time.perf_counter()
        sequential = np.stack([decode_image(p, args.size) for p in paths])
        t_seq = time.perf_counter() - start

        start = time.perf_counter()
        parallel = np.concatenate([images.get(range(s, min(s + args.batch, len(paths))))
                                   for s in range(0, len(paths), args.batch)])
        t_par = time.perf_counter() - start
        assert np.array_equal(sequential, parallel), "parallel decoding must give the same pixels"

        device = resolve_device("auto")
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=4), torch.nn.ReLU(),
                                    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        encoder = ModuleEncoder(model, name="tiny")
        split = Split(images, labels=np.zeros(len(paths), dtype=np.int64))
        dataset = Dataset("jpegs", {"test": split}, class_names=["x"], targets=frozenset({"label"}),
                          fingerprint="bench")
        store = FeatureStore(cache_dir=None, device=device, batch_size=args.batch)
        start = time.perf_counter()
        store.get(encoder, dataset, "test")
        t_store = time.perf_counter() - start

        n = len(paths)
        print(f"{n} JPEGs 500x375 -> {args.size}px, batches of {args.batch}, device {device}")
        print(f"  sequential decode_image loop : {n / t_seq:8.1f} images/s")
        print(f"  FileImages.get (threads)     : {n / t_par:8.1f} images/s   ratio {t_seq / t_par:.2f}x (target >= 1.8)")
        print(f"  FeatureStore extraction      : {n / t_store:8.1f} images/s   ratio {t_seq / t_store:.2f}x vs decoding alone")
        if device.type == "cuda":
            tensors = [torch.from_numpy(parallel[s:s + args.batch]).permute(0, 3, 1, 2).float().div(255).to(device)
                       for s in range(0, n, args.batch)]
            model.to(device)
            torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.inference_mode():
                for x in tensors:
                    model(x)
            torch.cuda.synchronize()
            t_bare = time.perf_counter() - start
            print(f"  bare model(x) on decoded     : {n / t_bare:8.1f} images/s; extraction / bare = "
                  f"{t_bare / t_store:.2f} (target >= 0.9)")


if __name__ == "__main__":
    main()
