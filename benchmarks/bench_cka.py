"""CKA bootstrap interval: count vectors and GEMMs vs gathering and centring each resample's Grams.

The cka and layer_cka probes take ~1,000 resamples per metric; the gathered way builds and centres
two n × n Grams per resample (memory-bound). Prints both timings for n = 300 and 1000, their
ratio, the largest difference between the resamples' CKAs and between the two intervals.

    python benchmarks/bench_cka.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

from pytest_visprobe.kernels.cka import _cka_stack, cka, gram_linear, resampled_cka
from pytest_visprobe.report.statistics import percentile_interval


def gathered_cka(k, l, rows, debiased, batch_elements=1 << 22):
    """The former cka_interval's resampling: gather, centre, sum, in batches of Gram entries."""
    n = k.shape[0]
    rows = torch.as_tensor(rows, device=k.device)
    batch = max(1, batch_elements // (n * n))
    return torch.cat([_cka_stack(k[r[:, :, None], r[:, None, :]], l[r[:, :, None], r[:, None, :]], debiased)
                      for r in rows.split(batch)]).cpu().numpy()


def interval(values, estimate, plug_in):
    low, high = percentile_interval(values[~np.isnan(values)] - plug_in, 0.95)
    return np.clip([estimate + low, estimate + high], -1.0, 1.0)


def main() -> None:
    rng = np.random.default_rng(0)
    resamples, debiased = 1000, True
    for n in (300, 1000):
        x = rng.standard_normal((n, 64))
        y = np.maximum(x @ rng.standard_normal((64, 256)), 0) + rng.standard_normal((n, 256))
        k, l = gram_linear(x), gram_linear(y)
        rows = np.random.default_rng(1).integers(0, n, (resamples, n))
        estimate, plug_in = cka(k, l, debiased=debiased), cka(k, l, debiased=False)
        start = time.perf_counter()
        fast = resampled_cka(k, l, rows, debiased=debiased)
        fast_s = time.perf_counter() - start
        start = time.perf_counter()
        gathered = gathered_cka(k, l, rows, debiased)
        gathered_s = time.perf_counter() - start
        difference = np.max(np.abs(interval(fast, estimate, plug_in) - interval(gathered, estimate, plug_in)))
        print(f"n={n:5d} resamples={resamples} (linear, debiased): counts+GEMM {fast_s:.2f} s, "
              f"gathered {gathered_s:.2f} s, ratio {gathered_s / fast_s:.1f}x; "
              f"max relative difference per resample {np.max(np.abs(fast / gathered - 1)):.1e}, "
              f"interval bounds differ by {difference:.1e}")


if __name__ == "__main__":
    main()
