"""Linear probe speed and accuracy vs scikit-learn's LogisticRegression on the same features.

    python benchmarks/bench_linear_probe.py [--threads 1 2] [--repeats 3]

For each problem (synthetic class-cluster features, standardised on train) it times:
  * ``fit_linear`` — one fit at weight decay ``wd``;
  * scikit-learn ``LogisticRegression(C=1/(wd·N))`` (lbfgs, default tol, max_iter large enough to
    converge) — the same objective (see probes/linear.py);
  * the full ``label_probe`` (its weight-decay sweep on a held-out part, then a refit), compared
    with the single sklearn fit and with sklearn running the same sweep (warm-started, like ours).
and prints test accuracy, seconds (best of ``--repeats``), ratios and the objective value of
both single fits (evaluated in float64 by the same function). Target: accuracy within 1 point,
our time ≤ 0.5 × sklearn's. Thread counts are applied to torch and, through threadpoolctl, to
the BLAS numpy/scikit-learn use, so both sides get the same cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from pytest_visprobe.kernels.linear import fit_linear, objective, standardizer, top1
from pytest_visprobe.probes.label import label_top1 as label_probe
from pytest_visprobe.probes.heads import LinearProbeConfig

PROBLEMS = [
    # (name, n_train, n_test, dim, classes, class separation, weight decay)
    ("N=5000 D=512 K=10", 5000, 2000, 512, 10, 0.08, 1e-3),
    ("N=2000 D=2048 K=100", 2000, 2000, 2048, 100, 0.15, 1e-2),
]


def make_features(n_train: int, n_test: int, dim: int, classes: int, separation: float, seed: int = 0):
    """Class means in a 32-d subspace plus isotropic noise: overlapping, not separable
    (test accuracy well below 100 %, so a badly fitted probe would show)."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(32, dim)) / np.sqrt(32)
    centers = rng.normal(size=(classes, 32)) @ basis * separation
    y = rng.integers(0, classes, n_train + n_test)
    x = centers[y] + rng.normal(size=(n_train + n_test, dim)) * 1.0 + rng.normal(size=dim) * 3
    x = x.astype(np.float32)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def best_of(repeats: int, fn):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def sklearn_fit(x: np.ndarray, y: np.ndarray, C: float, warm: LogisticRegression | None = None):
    clf = warm or LogisticRegression(C=C, max_iter=10_000, warm_start=warm is not None)
    clf.set_params(C=C)
    return clf.fit(x, y)


def sklearn_sweep(x: np.ndarray, y: np.ndarray, decays, val_fraction: float, seed: int):
    """The same protocol as fit_probe, with sklearn as the solver (warm-started sweep + refit)."""
    n = x.shape[0]
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(val_fraction * n)))
    val, fit = order[:n_val], order[n_val:]
    clf = LogisticRegression(max_iter=10_000, warm_start=True)
    best, best_score = None, -np.inf
    for decay in sorted(decays, reverse=True):
        clf.set_params(C=1.0 / (decay * len(fit)))
        clf.fit(x[fit], y[fit])
        score = clf.score(x[val], y[val])
        if score > best_score + 1e-12:
            best, best_score = decay, score
    return LogisticRegression(C=1.0 / (best * n), max_iter=10_000).fit(x, y)


def run(threads: int, repeats: int) -> None:
    torch.set_num_threads(threads)
    config = LinearProbeConfig()
    print(f"\n=== torch.set_num_threads({threads}), BLAS threads {threads} ===")
    fit_linear(torch.randn(200, 16), torch.randint(0, 3, (200,)), n_outputs=3, weight_decay=1e-3)  # warm-up
    with threadpool_limits(limits=threads):
        for name, n_train, n_test, dim, classes, separation, wd in PROBLEMS:
            xtr, ytr, xte, yte = make_features(n_train, n_test, dim, classes, separation)
            mean, scale = standardizer(torch.from_numpy(xtr))
            xs = (torch.from_numpy(xtr) - mean) / scale
            xts = (torch.from_numpy(xte) - mean) / scale
            yt = torch.from_numpy(ytr)
            x64, xt64 = xs.double().numpy(), xts.double().numpy()
            C = 1.0 / (wd * n_train)

            t_ours, (w, b) = best_of(repeats, lambda: fit_linear(xs, yt, n_outputs=classes, weight_decay=wd))
            t_sk, clf = best_of(repeats, lambda: sklearn_fit(x64, ytr, C))
            t_probe, (metric, head) = best_of(repeats, lambda: label_probe(
                torch.from_numpy(xtr), ytr, torch.from_numpy(xte), yte, n_classes=classes, config=config, seed=0))
            t_sk_sweep, clf_sweep = best_of(1, lambda: sklearn_sweep(x64, ytr, config.weight_decays,
                                                                     config.val_fraction, 0))

            acc_ours = top1(xts @ w + b, torch.from_numpy(yte))
            acc_sk = float((clf.predict(xt64) == yte).mean())
            acc_sk_sweep = float((clf_sweep.predict(xt64) == yte).mean())
            X, Y = torch.from_numpy(x64), torch.from_numpy(ytr)
            obj_ours = objective(X, Y, w.double(), b.double(), wd, False).item()
            obj_sk = objective(X, Y, torch.from_numpy(clf.coef_.T.copy()),
                               torch.from_numpy(clf.intercept_.copy()), wd, False).item()
            print(f"\n{name}  (wd={wd:g}, C={C:g}, sklearn n_iter={int(clf.n_iter_[0])})")
            print(f"  fit_linear         acc {acc_ours:.4f}  {t_ours:7.3f} s   objective {obj_ours:.8f}")
            print(f"  sklearn lbfgs      acc {acc_sk:.4f}  {t_sk:7.3f} s   objective {obj_sk:.8f}")
            print(f"  ratio fit_linear / sklearn = {t_ours / t_sk:.2f}   Δacc = {100 * (acc_ours - acc_sk):+.2f} pt"
                  f"   Δobjective = {obj_ours - obj_sk:+.2e}")
            print(f"  label_probe sweep  acc {metric.value:.4f}  {t_probe:7.3f} s   (picked wd={head.weight_decay:g})")
            print(f"  sklearn sweep      acc {acc_sk_sweep:.4f}  {t_sk_sweep:7.3f} s")
            print(f"  ratio label_probe / sklearn single fit = {t_probe / t_sk:.2f}; "
                  f"/ sklearn same sweep = {t_probe / t_sk_sweep:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for threads in args.threads:
        run(threads, args.repeats)


if __name__ == "__main__":
    main()
