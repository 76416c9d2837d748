"""Dense probes: what cached feature maps cost in memory, and what caching saves in time.

    python benchmarks/bench_localization.py [--n 600] [--epochs 3] [--threads N]

1. Bytes per image of a cached ``feature_map`` (float32, as the FeatureStore keeps it) at each
   model's default input size: the quick profile's encoders and common real encoders (random
   init, nothing downloaded; one image is run to read the map shape).
2. Segmentation-head training on the shapes train split (64 px): seconds per epoch on cached
   maps (what the probes do) vs re-running the encoder every epoch (what a head trained on
   images would cost with the backbone frozen), for a small CNN at 64 px and timm test_vit and
   resnet18 (random init) at 64 px. Ratio = re-running / cached.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import torch

from pytest_visprobe.datasets import load_dataset
from pytest_visprobe.encoders.base import ModuleEncoder
from pytest_visprobe.encoders.loading import as_encoder
from pytest_visprobe.features import FeatureStore
from pytest_visprobe.kernels.segmentation import fit_segmentation_head
from pytest_visprobe.probes.heads import LocalizationConfig

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def tiny_cnn():
    spec = importlib.util.spec_from_file_location("tiny_cnn", REPO / "examples" / "tiny_cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.create_encoder()


def timm_encoder(name: str, size: int | None = None):
    import timm

    torch.manual_seed(0)
    kwargs = {"img_size": size} if size and "vit" in name else {}
    model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    if size:
        model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, size, size)}
    return as_encoder(model, name=name)


def open_clip_encoder(arch: str):
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model(arch, pretrained=None)
    size = model.visual.image_size
    size = size if isinstance(size, (tuple, list)) else (size, size)
    return ModuleEncoder(model.visual, name=f"open_clip:{arch}", input_size=size)


def map_bytes() -> None:
    print("cached feature_map per image (float32) at the default input size")
    print(f"{'encoder':28s} {'input':>9s} {'map C×h×w':>14s} {'KB/image':>9s} {'MB per 1k images':>17s}")
    rows = [("examples/tiny_cnn.py", tiny_cnn), ("timm test_vit", lambda: timm_encoder("test_vit")),
            ("timm resnet50", lambda: timm_encoder("resnet50")),
            ("timm vit_base_patch16_224", lambda: timm_encoder("vit_base_patch16_224")),
            ("open_clip RN50", lambda: open_clip_encoder("RN50")),
            ("open_clip ViT-B-16", lambda: open_clip_encoder("ViT-B-16"))]
    for name, make in rows:
        encoder = make().eval()
        size = encoder.input_size or (64, 64)
        with torch.inference_mode():
            fmap = encoder.feature_map(torch.rand(1, 3, *size))
        nbytes = fmap[0].numel() * 4
        shape = "×".join(map(str, fmap.shape[1:]))
        print(f"{name:28s} {size[0]:>4d}×{size[1]:<4d} {shape:>14s} {nbytes / 1024:9.1f} {nbytes * 1000 / 2**20:17.1f}")
        del encoder


def epoch_times(n: int, epochs: int) -> None:
    ds = load_dataset("shapes", n_train=n, n_test=10, image_size=64)
    masks = ds.split("train").semantic_masks
    config = LocalizationConfig(epochs=epochs)
    print(f"\nsegmentation head, shapes train n={n} at 64 px, {epochs} epochs (best of 2)")
    print(f"{'encoder':22s} {'map':>12s} {'extract s':>10s} {'cached s/epoch':>15s} "
          f"{'re-run s/epoch':>15s} {'ratio':>7s}")
    for name, make in [("tiny_cnn", tiny_cnn), ("timm test_vit @64", lambda: timm_encoder("test_vit", 64)),
                       ("timm resnet18 @64", lambda: timm_encoder("resnet18", 64))]:
        encoder = make().eval()
        store = FeatureStore(cache_dir=None, device=CPU)
        start = time.perf_counter()
        maps = store.get(encoder, ds, "train", "feature_map")
        extract = time.perf_counter() - start
        cached = []
        for _ in range(2):
            start = time.perf_counter()
            fit_segmentation_head(maps, masks, n_classes=5, config=config, seed=0)
            cached.append((time.perf_counter() - start) / epochs)
        per_epoch = min(cached)
        rerun = extract + per_epoch  # every epoch pays the forward pass again (no backward through it)
        shape = "×".join(map(str, maps.shape[1:]))
        print(f"{name:22s} {shape:>12s} {extract:10.2f} {per_epoch:15.3f} {rerun:15.3f} {rerun / per_epoch:7.1f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    map_bytes()
    epoch_times(args.n, args.epochs)


if __name__ == "__main__":
    main()
