"""Peak memory of the dense probes on a feature-map set larger than you would like in RAM.

Writes a synthetic float16 map set (a cache file as the FeatureStore writes it, ``--gb`` of
maps, 5 GB by default) with segmentation masks and one box per image, then runs, each in a
fresh child process so its peak RSS is its own:

- ``streamed``: the maps memory-mapped as a cache read gives them (features.open_features,
  which also checks every value is finite), the segmentation head fitted and scored and the
  region features pooled, all streaming through the maps;
- ``in-ram``: the same probes on the same maps read whole into RAM first (what a cache without
  memory mapping does).

It prints each one's peak RSS (``ru_maxrss``: pages the process touched, file-backed included)
and time, and the ratio streamed / in-RAM. Target (issue 16): 5 GB of maps under 2 GB.

    python benchmarks/bench_feature_memory.py [--gb 5] [--dir /tmp] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHANNELS, SIDE, CLASSES, KEY = 384, 14, 10, "bench-feature-memory"


def write_maps(path: Path, rows: int) -> None:
    """A cache file of ``rows`` random float16 maps, written in chunks (never whole in RAM)."""
    import torch

    from pytest_visprobe.features import safetensors_header

    block = np.random.default_rng(0).standard_normal((256, CHANNELS, SIDE, SIDE), dtype=np.float32).astype(np.float16)
    with open(path, "wb") as handle:
        handle.write(safetensors_header(KEY, torch.float16, (rows, CHANNELS, SIDE, SIDE)))
        for k, start in enumerate(range(0, rows, len(block))):  # one random block, rows cycled: fast to write
            handle.write(np.roll(block, k, axis=0)[:rows - start].tobytes())


def targets(rows: int) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(1)
    masks = rng.integers(0, CLASSES + 1, size=(rows, SIDE, SIDE), dtype=np.int64)
    corner = rng.uniform(0, 100, size=(rows, 2)).astype(np.float32)
    boxes = [np.concatenate([c, c + 50])[None] for c in corner]
    return masks, boxes


def child(path: Path, rows: int, mode: str, epochs: int) -> dict:
    import torch

    from pytest_visprobe.features import open_features
    from pytest_visprobe.kernels.regions import region_features
    from pytest_visprobe.kernels.segmentation import fit_segmentation_head, predict_masks
    from pytest_visprobe.probes.heads import LocalizationConfig

    imported = rss_mb()
    start = time.perf_counter()
    if mode == "in-ram":  # the whole set read into anonymous memory
        with open(path, "rb") as handle:
            offset = 8 + int(np.frombuffer(handle.read(8), dtype="<u8")[0])
        count = rows * CHANNELS * SIDE * SIDE
        maps = torch.from_numpy(np.fromfile(path, dtype="<f2", count=count, offset=offset)).reshape(
            rows, CHANNELS, SIDE, SIDE)
    else:
        maps = open_features(path, KEY, rows, torch.float16, check_finite=True)
    masks, boxes = targets(rows)
    train = rows * 4 // 5
    config = LocalizationConfig(epochs=epochs, batch_size=64)
    head = fit_segmentation_head(maps[:train], masks[:train], n_classes=CLASSES, config=config, seed=0)
    predicted = predict_masks(head, maps[train:], (SIDE, SIDE))
    regions = region_features(maps, boxes, image_size=(160, 160), roi_size=2)
    accuracy = float((predicted.numpy() == masks[train:]).mean())
    return {"mode": mode, "seconds": time.perf_counter() - start, "accuracy": accuracy,
            "regions": list(regions.shape), "imports_rss_mb": imported,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def rss_mb() -> float:
    """Resident set now (after the imports: torch and friends alone take hundreds of MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=5.0, help="size of the map set in GB (10^9 bytes)")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the map file is written")
    parser.add_argument("--epochs", type=int, default=1, help="segmentation head epochs")
    parser.add_argument("--modes", default="streamed,in-ram")
    parser.add_argument("--child", nargs=3, metavar=("PATH", "ROWS", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, rows, mode = args.child
        print(json.dumps(child(Path(path), int(rows), mode, args.epochs)))
        return
    rows = int(args.gb * 1e9 // (CHANNELS * SIDE * SIDE * 2))
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = Path(folder) / "maps.safetensors"
        began = time.perf_counter()
        write_maps(path, rows)
        size = path.stat().st_size / 1e9
        print(f"map set: {rows} maps of {CHANNELS}×{SIDE}×{SIDE} float16, {size:.2f} GB "
              f"(written in {time.perf_counter() - began:.0f} s)")
        results = {}
        for mode in args.modes.split(","):
            out = subprocess.run([sys.executable, __file__, "--epochs", str(args.epochs), "--child", str(path),
                                  str(rows), mode], check=True, capture_output=True, text=True).stdout
            results[mode] = json.loads(out.strip().splitlines()[-1])
            r = results[mode]
            print(f"{mode:>9}: peak RSS {r['peak_rss_mb']:8.0f} MB ({r['imports_rss_mb']:.0f} MB of it after the "
                  f"imports, before any map), {r['seconds']:6.1f} s, pixel accuracy {r['accuracy']:.4f}")
        if {"streamed", "in-ram"} <= results.keys():
            s, m = results["streamed"], results["in-ram"]
            assert s["accuracy"] == m["accuracy"], "streamed and in-RAM probes must give the same numbers"
            print(f"streamed / in-RAM peak RSS: {s['peak_rss_mb'] / m['peak_rss_mb']:.3f}; same numbers: yes")


if __name__ == "__main__":
    main()
