"""Transformed views: transformation + encoding vs encoding alone, and the cached re-run.

    python benchmarks/bench_transformed_views.py [--n 512] [--size 64] [--repeats 3]
                                                 [--encoder examples/tiny_cnn.py] [--threads N]

On ``--n`` views of the ``photos`` crops (the quick profile's assignment: 3 transformations per
crop, balanced over the bank), on CPU, best of ``--repeats`` with the variants interleaved:
  * transform   — ``TransformedImages.get`` over all views (the bank alone);
  * encode      — ``FeatureStore.get`` (no disk cache) on the same views already materialised
                  as an in-memory uint8 array: encoding alone;
  * both        — ``FeatureStore.get`` (no disk cache) on the lazy views: what a first session
                  pays (transform each batch, then encode it);
  * cached      — ``FeatureStore.get`` from the disk cache written by a previous session (what
                  every later session pays: no transformation, no forward pass).
Prints images per second and ratios against ``encode``. Encoders: any --encoder reference the
plugin accepts (default: the offline example); also ``timm:resnet18`` at random init with
``--timm-random``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from pytest_visprobe.datasets import load_dataset
from pytest_visprobe.datasets.base import ArrayImages, Dataset, Split
from pytest_visprobe.datasets.transformed import transformed_views
from pytest_visprobe.encoders.refs import parse_encoder_ref
from pytest_visprobe.encoders.base import ModuleEncoder
from pytest_visprobe.encoders.loading import load_encoder
from pytest_visprobe.features import FeatureStore

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]


def encoder_for(args):
    if args.timm_random:
        import timm

        torch.manual_seed(0)
        model = timm.create_model("resnet18", pretrained=False, num_classes=0)
        encoder = ModuleEncoder(model, name="resnet18-random", input_size=(224, 224))
        return encoder
    return load_encoder(parse_encoder_ref(args.encoder, rootdir=ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=512, help="views per timing (default 512)")
    parser.add_argument("--size", type=int, default=64, help="crop side in pixels (default 64)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--encoder", default="examples/tiny_cnn.py")
    parser.add_argument("--timm-random", action="store_true", help="timm resnet18, random init, 224 px")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    per_image = 3
    source = load_dataset("photos", n_train=-(-args.n // per_image), n_test=1, image_size=args.size)
    views = transformed_views(source, seed=0, per_image=per_image,
                              per_transformation={"train": args.n * per_image // 41 + 1})
    lazy = views.split("train").images
    n = len(lazy)
    materialised = Dataset(name="materialised", splits={"train": Split(images=ArrayImages(lazy.get(range(n))))},
                           fingerprint="materialised")
    encoder = encoder_for(args)
    encoder.fingerprint()  # hashed once per session; not part of any timing

    def transform():
        lazy.get(range(n))

    def encode():
        FeatureStore(cache_dir=None, device=CPU).get(encoder, materialised, "train")

    def both():
        FeatureStore(cache_dir=None, device=CPU).get(encoder, views, "train")

    with tempfile.TemporaryDirectory() as cache:
        FeatureStore(cache_dir=Path(cache), device=CPU).get(encoder, views, "train")  # a first session

        def cached():
            store = FeatureStore(cache_dir=Path(cache), device=CPU)
            store.get(encoder, views, "train")
            assert store.counters.from_disk == 1

        variants = {"transform": transform, "encode": encode, "both": both, "cached": cached}
        best = {name: float("inf") for name in variants}
        encode()  # warm-up: lazy imports, first-call allocations
        transform()
        for _ in range(args.repeats):
            for name, fn in variants.items():
                start = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - start)

    print(f"{n} views of {args.size}-px photo crops, encoder {encoder.name!r}, "
          f"torch threads {torch.get_num_threads()}, best of {args.repeats}")
    print(f"{'variant':10s} {'seconds':>8s} {'images/s':>9s} {'vs encode':>9s}")
    for name, seconds in best.items():
        print(f"{name:10s} {seconds:8.3f} {n / seconds:9.0f} {seconds / best['encode']:8.2f}x")


if __name__ == "__main__":
    main()
