"""Spectral clustering time and memory: our kernel vs scikit-learn on the same |cos| affinity.

Features: N samples, D = 512, 10 Gaussian classes (seeded), overlapping enough that the
partition is not trivial (ARI vs truth ~0.96). For each N, each method runs in a fresh
subprocess so its peak memory can be read:

- ``ours``: ``abs_cosine_affinity`` (one float32 matmul) then ``spectral_clusters_precomputed``
  (Lanczos on D^-1/2 A D^-1/2 in place, then k-means) — the ``dense`` path.
- ``sklearn``: the same affinity, then ``SpectralClustering(affinity="precomputed")``.
- ``knn``: ``knn_abs_cosine_affinity`` (default neighbour count) then the same clustering —
  the path ``affinity="auto"`` takes above ``DENSE_MAX_SAMPLES``.

"affinity" is the time to build the affinity, "cluster" the time from affinity to labels,
"ratio" sklearn's cluster time over ours. Peak memory = ``ru_maxrss`` minus the RSS before the
method started (data and imports excluded). On a shared machine the times move with the load.

    python benchmarks/bench_clustering.py                    # N = 2,000 and 10,000
    python benchmarks/bench_clustering.py --sizes 32768 --methods ours knn
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIM = 512
N_CLASSES = 10
METHODS = ("ours", "sklearn", "knn")


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((N_CLASSES, DIM)).astype(np.float32)
    y = rng.integers(0, N_CLASSES, n)
    x = 0.2 * centres[y] + rng.standard_normal((n, DIM)).astype(np.float32)
    return x, y


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(method: str, n: int, labels_out: str) -> dict:
    from sklearn.cluster import SpectralClustering
    from sklearn.metrics import adjusted_rand_score

    from pytest_visprobe.kernels import clustering as C

    x, y = make_data(n)
    if method == "knn":
        import torch  # noqa: F401  (import cost is not part of the measurement)
    before = _rss_bytes()
    t0 = time.perf_counter()
    if method == "knn":
        n_neighbors = C.default_n_neighbors(n, N_CLASSES)
        affinity = C.knn_abs_cosine_affinity(x, n_neighbors)
    else:
        n_neighbors = None
        affinity = C.abs_cosine_affinity(x)
    t1 = time.perf_counter()
    if method == "sklearn":
        labels = SpectralClustering(N_CLASSES, affinity="precomputed", random_state=0).fit_predict(affinity)
    else:
        labels = C.spectral_clusters_precomputed(affinity, N_CLASSES, seed=0, overwrite=True)
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    np.save(labels_out, labels)
    return {
        "method": method,
        "n": n,
        "n_neighbors": n_neighbors,
        "affinity_s": t1 - t0,
        "cluster_s": t2 - t1,
        "peak_extra_mb": peak / 2**20,
        "ari_vs_truth": float(adjusted_rand_score(y, labels)),
    }


def run(method: str, n: int, tmp: Path) -> dict:
    out = tmp / f"{method}-{n}.npy"
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", method, str(n), str(out)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{method} at N={n} failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["labels"] = np.load(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "N", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, n, out = args.worker
        print(json.dumps(worker(method, int(n), out)))
        return

    from sklearn.metrics import adjusted_rand_score

    print(f"D={DIM}, {N_CLASSES} classes, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    header = f"{'N':>6} {'method':>8} {'affinity s':>10} {'samples/s':>10} {'cluster s':>9} {'ratio':>6} {'peak MB':>8} {'ARI truth':>9} {'ARI vs sk':>9}"
    print(header)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            results = {m: run(m, n, Path(tmp)) for m in args.methods}
            sk = results.get("sklearn")
            for m, r in results.items():
                ratio = sk["cluster_s"] / r["cluster_s"] if sk and m != "sklearn" else float("nan")
                agree = adjusted_rand_score(sk["labels"], r["labels"]) if sk and m != "sklearn" else float("nan")
                label = m if m != "knn" else f"knn{r['n_neighbors']}"
                print(
                    f"{n:>6} {label:>8} {r['affinity_s']:>10.2f} {n / r['affinity_s']:>10.0f} "
                    f"{r['cluster_s']:>9.2f} {ratio:>6.1f} {r['peak_extra_mb']:>8.0f} "
                    f"{r['ari_vs_truth']:>9.3f} {agree:>9.3f}",
                    flush=True,
                )
                rows.append({k: v for k, v in r.items() if k != "labels"} | {"ratio_vs_sklearn": ratio, "ari_vs_sklearn": agree})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
