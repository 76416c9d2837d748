"""Throughput of the transformation bank: images per second at 64 and 224 pixels.

    python benchmarks/bench_transformations.py [--sizes 64 224] [--repeats 30] [--json out.json]

Each transformation runs ``repeats`` times per size on natural-photo crops (scikit-image's
astronaut and chelsea) with a different seed each time, after one warm-up call that pays for
lazy imports (reported separately as "first call"). Wall-clock and CPU time are both
reported: on a shared machine the wall clock of any call longer than a scheduler slice
inflates with the load, while CPU time stays put. A transformation is flagged slow when its
median CPU time per image exceeds ``--slow-factor`` times the bank's median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
from PIL import Image

from pytest_visprobe.datasets.transformations import apply_transformation, list_transformations


def crops(size: int) -> list[np.ndarray]:
    """Four square crops of two bundled photos, resized to ``size``."""
    from skimage import data

    sources = [
        data.astronaut()[0:300, 100:400],
        data.astronaut()[200:512, 0:312],
        data.chelsea()[0:300, 0:300],
        data.chelsea()[0:300, 151:451],
    ]
    return [
        np.array(Image.fromarray(s).resize((size, size), Image.Resampling.BICUBIC))
        for s in sources
    ]


def bench(size: int, repeats: int) -> list[dict]:
    images = crops(size)
    rows = []
    for t in list_transformations():
        start = time.perf_counter()
        apply_transformation(t.name, images[0], seed=10_000)
        first = time.perf_counter() - start
        wall, cpu = [], []
        for i in range(repeats):
            image = images[i % len(images)]
            start, start_cpu = time.perf_counter(), time.process_time()
            apply_transformation(t.name, image, seed=i)
            cpu.append(time.process_time() - start_cpu)
            wall.append(time.perf_counter() - start)
        rows.append(
            {
                "name": t.name,
                "family": t.family,
                "wall_median_ms": 1e3 * statistics.median(wall),
                "wall_mean_ms": 1e3 * statistics.fmean(wall),
                "cpu_median_ms": 1e3 * statistics.median(cpu),
                "cpu_mean_ms": 1e3 * statistics.fmean(cpu),
                "first_call_ms": 1e3 * first,
            }
        )
    return rows


def report(size: int, rows: list[dict], slow_factor: float) -> dict:
    median = statistics.median(r["cpu_median_ms"] for r in rows)
    wall_total = sum(r["wall_mean_ms"] for r in rows)
    cpu_total = sum(r["cpu_mean_ms"] for r in rows)
    slow = [r["name"] for r in rows if r["cpu_median_ms"] > slow_factor * median]
    print(f"\n== {size}x{size}: {len(rows)} transformations (median ms per image) ==")
    header = ("transformation", "family", "wall", "cpu", "cpu img/s", "first")
    print("{:18s} {:9s} {:>7s} {:>7s} {:>9s} {:>7s}".format(*header))
    for r in rows:
        flag = "  SLOW" if r["name"] in slow else ""
        print(
            f"{r['name']:18s} {r['family']:9s} {r['wall_median_ms']:7.2f} "
            f"{r['cpu_median_ms']:7.2f} {1e3 / max(r['cpu_median_ms'], 1e-3):9.0f} "
            f"{r['first_call_ms']:7.1f}{flag}"
        )
    summary = {
        "size": size,
        "bank_images_per_s_wall": 1e3 * len(rows) / wall_total,
        "bank_images_per_s_cpu": 1e3 * len(rows) / cpu_total,
        "median_cpu_ms": median,
        "slow": slow,
        "rows": rows,
    }
    print(
        f"whole bank, one pass over all {len(rows)}: {wall_total:.1f} ms wall "
        f"({summary['bank_images_per_s_wall']:.0f} images/s), {cpu_total:.1f} ms CPU "
        f"({summary['bank_images_per_s_cpu']:.0f} images/s); median {median:.2f} ms CPU; "
        f"slow (> {slow_factor:g}x median): {', '.join(slow) or 'none'}"
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224], metavar="PX")
    parser.add_argument("--repeats", type=int, default=30, metavar="N")
    parser.add_argument("--slow-factor", type=float, default=5.0, metavar="X")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} CPUs; {args.repeats} repeats per size")
    results = [report(s, bench(s, args.repeats), args.slow_factor) for s in args.sizes]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
