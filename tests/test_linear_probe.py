"""The linear probe kernels against scikit-learn's LogisticRegression, on data with known answers.

Our objective is ``mean CE + weight_decay/2 · ‖W‖²`` (bias not penalised); scikit-learn's
``LogisticRegression(C)`` minimises ``C · Σ CE + ½‖W‖²``, the same objective scaled by ``C·N``
when ``weight_decay = 1/(C·N)``. Both solutions are scored by one float64 numpy function written
here (independent of probes/linear.py), and ours must be no worse than scikit-learn's (run to a
tight tolerance, i.e. its optimum) plus ``EPS``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit, log_expit, logsumexp
from scipy.stats import binom
from sklearn.linear_model import LogisticRegression

from pytest_visprobe.kernels.linear import LinearHead, fit_linear, fit_probe, standardizer, top1
from pytest_visprobe.probes.label import label_top1 as label_probe
from pytest_visprobe.probes.heads import LinearProbeConfig

#: Allowed excess of our objective over scikit-learn's optimum. The objectives here are O(1e-4..1)
#: and we optimise in float32 (resolution ~1e-7 of an O(1) loss); 1e-6 is that with a margin of
#: ten, and far below what an early stop costs (≥ 1e-3 after 3 iterations, asserted below).
EPS = 1e-6


# ----------------------------------------------------------------------------- references


def softmax_objective(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray, wd: float) -> float:
    """float64: mean multinomial cross-entropy + wd/2 ‖W‖² (W is [D, K])."""
    z = x @ w + b
    ce = logsumexp(z, axis=1) - z[np.arange(len(y)), y]
    return float(ce.mean() + 0.5 * wd * np.sum(w * w))


def binary_objective(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, wd: float) -> float:
    """float64: mean binary cross-entropy of one column + wd/2 ‖w‖²."""
    z = x @ w + b
    bce = -(y * log_expit(z) + (1 - y) * log_expit(-z))
    return float(bce.mean() + 0.5 * wd * np.sum(w * w))


def sklearn_multinomial(x: np.ndarray, y: np.ndarray, wd: float) -> LogisticRegression:
    """Run to a tight tolerance, so its objective is the optimum to ~1e-10."""
    return LogisticRegression(C=1.0 / (wd * len(y)), tol=1e-10, max_iter=10_000).fit(x, y)


def clusters(n: int, d: int, k: int, *, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes around random centres; ``spread`` sets how much they overlap."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * spread
    y = np.arange(n) % k
    rng.shuffle(y)
    x = centers[y] + rng.normal(size=(n, d)) + rng.normal(size=d) * 3.0  # off-centre, like real features
    return x.astype(np.float32), y


def standardised(x: np.ndarray) -> torch.Tensor:
    xt = torch.from_numpy(x)
    mean, scale = standardizer(xt)
    return (xt - mean) / scale


# ----------------------------------------------------------------------------- fit_linear


MULTINOMIAL_CASES = [
    # id, n, d, k, spread (class separation), weight decay
    pytest.param(400, 30, 5, 0.3, 1.0 / (1.0 * 400), id="overlapping-C1"),
    pytest.param(400, 30, 5, 0.3, 1.0 / (0.01 * 400), id="strong-decay-C0.01"),
    pytest.param(300, 20, 4, 1.0, 1e-3, id="separable-wd1e-3"),
    pytest.param(200, 50, 4, 1.0, 1e-5, id="separable-wd1e-5"),  # the profile's weakest decay
    pytest.param(120, 200, 3, 0.3, 1e-3, id="more-dims-than-rows"),
    pytest.param(600, 16, 12, 0.5, 1e-4, id="many-classes"),
]


@pytest.mark.parametrize(("n", "d", "k", "spread", "wd"), MULTINOMIAL_CASES)
def test_fit_linear_reaches_sklearn_optimum(n: int, d: int, k: int, spread: float, wd: float) -> None:
    """Our solution's objective ≤ sklearn's optimum + EPS, and the two predict the same classes."""
    x, y = clusters(n, d, k, spread=spread, seed=n + d + k)
    xs = standardised(x)
    w, b = fit_linear(xs, torch.from_numpy(y), n_outputs=k, weight_decay=wd)
    assert w.shape == (d, k) and b.shape == (k,)
    x64 = xs.double().numpy()
    clf = sklearn_multinomial(x64, y, wd)
    ours = softmax_objective(x64, y, w.double().numpy(), b.double().numpy(), wd)
    theirs = softmax_objective(x64, y, clf.coef_.T, clf.intercept_, wd)
    assert ours <= theirs + EPS, f"objective {ours:.10f} vs sklearn {theirs:.10f} (Δ {ours - theirs:.2e})"
    # fresh points from the same distribution as well as the training rows
    x_new, _ = clusters(n, d, k, spread=spread, seed=n + d + k + 1000)
    for rows in (x64, standardised(x_new).double().numpy()):
        ours_pred = (rows @ w.double().numpy() + b.double().numpy()).argmax(axis=1)
        agreement = float((ours_pred == clf.predict(rows)).mean())
        assert agreement >= 0.99, f"predictions agree on only {agreement:.3f} of rows"


def test_objective_check_has_teeth() -> None:
    """A fit stopped after 3 iterations is caught by EPS: the comparison can fail."""
    x, y = clusters(400, 30, 5, spread=0.3, seed=3)
    xs = standardised(x)
    wd = 1e-3
    w, b = fit_linear(xs, torch.from_numpy(y), n_outputs=5, weight_decay=wd, max_iter=3)
    x64 = xs.double().numpy()
    clf = sklearn_multinomial(x64, y, wd)
    early = softmax_objective(x64, y, w.double().numpy(), b.double().numpy(), wd)
    assert early > softmax_objective(x64, y, clf.coef_.T, clf.intercept_, wd) + 1e3 * EPS


def test_fit_linear_warm_start_reaches_same_optimum() -> None:
    """``init`` (used by the sweep) changes the path, not the answer."""
    x, y = clusters(300, 20, 4, spread=0.3, seed=5)
    xs, yt = standardised(x), torch.from_numpy(y)
    cold = fit_linear(xs, yt, n_outputs=4, weight_decay=1e-3)
    start = fit_linear(xs, yt, n_outputs=4, weight_decay=1e-1)
    warm = fit_linear(xs, yt, n_outputs=4, weight_decay=1e-3, init=start)
    x64 = xs.double().numpy()
    objs = [softmax_objective(x64, y, w.double().numpy(), b.double().numpy(), 1e-3) for w, b in (cold, warm)]
    assert abs(objs[0] - objs[1]) <= EPS
    assert torch.equal(start[0], fit_linear(xs, yt, n_outputs=4, weight_decay=1e-1)[0])  # init not mutated


@pytest.mark.parametrize("wd", [1e-2, 1e-4])
def test_fit_linear_multilabel_matches_one_sklearn_per_column(wd: float) -> None:
    """Multi-label = independent binary problems: each column vs its own LogisticRegression."""
    rng = np.random.default_rng(11)
    n, d, a = 300, 12, 5
    x = rng.normal(size=(n, d)).astype(np.float32) * 2 + 1
    true_w = rng.normal(size=(d, a))
    logits = (x - x.mean(0)) @ true_w * 0.7 + rng.normal(size=a)
    targets = (rng.random((n, a)) < expit(logits)).astype(np.float32)
    xs = standardised(x)
    w, b = fit_linear(xs, torch.from_numpy(targets), n_outputs=a, weight_decay=wd, multilabel=True)
    x64 = xs.double().numpy()
    w64, b64 = w.double().numpy(), b.double().numpy()
    for j in range(a):
        clf = LogisticRegression(C=1.0 / (wd * n), tol=1e-10, max_iter=10_000).fit(x64, targets[:, j])
        ours = binary_objective(x64, targets[:, j], w64[:, j], b64[j], wd)
        theirs = binary_objective(x64, targets[:, j], clf.coef_[0], clf.intercept_[0], wd)
        assert ours <= theirs + EPS, f"column {j}: {ours:.10f} vs sklearn {theirs:.10f}"
        agreement = float(((x64 @ w64[:, j] + b64[j] > 0) == clf.predict(x64).astype(bool)).mean())
        assert agreement >= 0.99, f"column {j}: predictions agree on {agreement:.3f}"


# ----------------------------------------------------------------------------- fit_probe (sweep)


def _one_class_per_row(n: int = 60, d: int = 8, seed: int = 0):
    """Every row its own class, so the targets the score function sees name the held-out rows."""
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32))
    return x, torch.arange(n)


def test_fit_probe_sweep_uses_one_seeded_held_out_part() -> None:
    """Every decay is judged on the same rows, 20 % of train; the same seed picks the same rows."""
    x, rows = _one_class_per_row()
    decays = [1e-1, 1e-2, 1e-3]

    def recorder(seen: list):
        def score(logits: torch.Tensor, targets: torch.Tensor) -> float:
            seen.append(sorted(targets.tolist()))
            return 0.0
        return score

    seen_a, seen_b, seen_c = [], [], []
    for seen, seed in ((seen_a, 3), (seen_b, 3), (seen_c, 4)):
        fit_probe(x, rows, n_outputs=60, weight_decays=decays, val_fraction=0.2,
                  score=recorder(seen), seed=seed, max_iter=5)
    assert len(seen_a) == len(decays)
    assert all(s == seen_a[0] for s in seen_a), "held-out rows change during the sweep"
    assert len(seen_a[0]) == 12 and len(set(seen_a[0])) == 12
    assert seen_a == seen_b, "same seed, different held-out rows"
    assert seen_c[0] != seen_a[0], "the seed does not choose the held-out rows"


@pytest.mark.parametrize(("sign", "expected"), [(+1, 1e-4), (-1, 1.0)])
def test_fit_probe_picks_best_scoring_decay(sign: int, expected: float) -> None:
    """A score rewarding large (or small) logits must pick the weakest (or strongest) decay."""
    x, y = clusters(200, 10, 4, spread=0.3, seed=1)
    decays = [1e-2, 1.0, 1e-4, 1e-3]  # unsorted on purpose
    head = fit_probe(torch.from_numpy(x), torch.from_numpy(y), n_outputs=4, weight_decays=decays,
                     val_fraction=0.25, score=lambda z, t: sign * float(z.abs().mean()), seed=0)
    assert head.weight_decay == expected


def test_fit_probe_is_deterministic_and_refits_on_all_of_train() -> None:
    x, y = clusters(300, 16, 5, spread=0.3, seed=2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    decays = LinearProbeConfig().weight_decays
    heads = [fit_probe(xt, yt, n_outputs=5, weight_decays=decays, val_fraction=0.2, score=top1, seed=7)
             for _ in range(2)]
    assert heads[0].weight_decay in decays
    assert heads[0].weight_decay == heads[1].weight_decay
    assert torch.equal(heads[0].weight, heads[1].weight) and torch.equal(heads[0].bias, heads[1].bias)
    # the final head is the full-train fit at the chosen decay, on train-standardised features
    mean, scale = standardizer(xt)
    torch.testing.assert_close(heads[0].mean, mean)
    torch.testing.assert_close(heads[0].scale, scale)
    w, b = fit_linear((xt - mean) / scale, yt, n_outputs=5, weight_decay=heads[0].weight_decay)
    x64 = ((xt - mean) / scale).double().numpy()
    wd = heads[0].weight_decay
    assert abs(softmax_objective(x64, y, heads[0].weight.double().numpy(), heads[0].bias.double().numpy(), wd)
               - softmax_objective(x64, y, w.double().numpy(), b.double().numpy(), wd)) <= EPS


def test_fit_probe_single_decay_skips_sweep() -> None:
    x, y = clusters(100, 8, 3, spread=0.3, seed=4)
    calls = []
    head = fit_probe(torch.from_numpy(x), torch.from_numpy(y), n_outputs=3, weight_decays=[1e-3],
                     val_fraction=0.2, score=lambda z, t: calls.append(1) or 0.0, seed=0)
    assert head.weight_decay == 1e-3 and calls == []


# ----------------------------------------------------------------------------- label_probe


def test_label_probe_separable_clusters_is_perfect() -> None:
    """Well separated clusters: every test point is classified correctly."""
    x, y = clusters(600, 16, 6, spread=3.0, seed=8)
    metric, head = label_probe(torch.from_numpy(x[:400]), y[:400], torch.from_numpy(x[400:]), y[400:],
                               n_classes=6, config=LinearProbeConfig(), seed=0)
    assert metric.probe == "label_probe" and metric.metric == "top1"
    assert metric.value == 1.0
    assert metric.chance == np.bincount(y[400:]).max() / 200  # the majority class's share of test
    assert head.weight_decay in LinearProbeConfig().weight_decays


@pytest.mark.parametrize("seed", [0, 1])
def test_label_probe_random_labels_is_chance(seed: int) -> None:
    """Random features, random labels: test labels are independent of everything the probe sees,
    so the number correct is exactly Binomial(n_test, 1/K). We accept its central 99.98 % interval
    (binom.ppf 1e-4 .. 1 − 1e-4), so a correct probe fails this with probability 2e-4 per seed."""
    rng = np.random.default_rng(seed)
    k, n_train, n_test, d = 5, 1000, 2000, 32
    x = rng.normal(size=(n_train + n_test, d)).astype(np.float32)
    y = rng.integers(0, k, n_train + n_test)
    metric, _ = label_probe(torch.from_numpy(x[:n_train]), y[:n_train], torch.from_numpy(x[n_train:]),
                            y[n_train:], n_classes=k, config=LinearProbeConfig(), seed=seed)
    low, high = binom.ppf(1e-4, n_test, 1 / k) / n_test, binom.ppf(1 - 1e-4, n_test, 1 / k) / n_test
    assert low <= metric.value <= high, f"top-1 {metric.value:.4f} outside chance band [{low:.4f}, {high:.4f}]"


# ----------------------------------------------------------------------------- LinearHead


def test_as_module_gives_the_same_logits() -> None:
    """The folded nn.Linear (for attacks) computes exactly the head's map."""
    rng = np.random.default_rng(9)
    x = torch.from_numpy(rng.normal(size=(50, 7)).astype(np.float32) * 3 + 2)
    y = torch.from_numpy(rng.integers(0, 4, 50))
    head = fit_probe(x, y, n_outputs=4, weight_decays=[1e-2], val_fraction=0.2, score=top1, seed=0)
    module = head.as_module()
    assert isinstance(module, torch.nn.Linear)
    torch.testing.assert_close(module(x), head.logits(x), rtol=1e-5, atol=1e-5)
    # gradients flow through the module (attacks need them)
    probe = x.clone().requires_grad_(True)
    module(probe).sum().backward()
    assert probe.grad is not None and torch.isfinite(probe.grad).all()


def test_linear_head_logits_standardise_first() -> None:
    head = LinearHead(mean=torch.tensor([1.0, -2.0]), scale=torch.tensor([2.0, 4.0]),
                      weight=torch.tensor([[1.0, 0.0], [0.0, 1.0]]), bias=torch.tensor([0.5, -0.5]),
                      weight_decay=0.0)
    out = head.logits(torch.tensor([[3.0, 2.0]]))
    torch.testing.assert_close(out, torch.tensor([[1.5, 0.5]]))
    torch.testing.assert_close(head.as_module()(torch.tensor([[3.0, 2.0]])), out)
