"""CKA against a direct NumPy transcription of the published formulas, its invariances, known answers
and the bootstrap's handling of duplicated images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform
from scipy.stats import ortho_group

from pytest_visprobe.kernels.cka import (
    center_gram,
    cka,
    cka_interval,
    gram_linear,
    gram_rbf,
    hsic,
    resampled_cka,
)
from pytest_visprobe.probes.spec import metric_spec

# --------------------------------------------------------------------------- the published formulas


def ref_hsic_biased(k, l):
    """Gretton et al. 2005: tr(K H L H) / (n-1)^2 with the centering matrix H."""
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l @ h) / (n - 1) ** 2


def ref_hsic_unbiased(k, l):
    """Song et al. 2012, eq. (5): K~, L~ are K, L with zero diagonal."""
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(n)
    return (np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ kt @ lt @ one)) / (n * (n - 3))


def ref_cka(k, l, hsic_fn):
    return hsic_fn(k, l) / np.sqrt(hsic_fn(k, k) * hsic_fn(l, l))


def ref_rbf(x, factor=1.0):
    d = pdist(x)  # i < j
    sigma = factor * np.median(d)
    return np.exp(-squareform(d) ** 2 / (2 * sigma**2))


def _pair(seed, n=40, dx=8, dy=12, noise=1.0):
    """Y a noisy linear map of X: related but not identical representations of the same images."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dx)) + 0.5
    y = x @ rng.standard_normal((dx, dy)) + noise * rng.standard_normal((n, dy))
    return x, y


# --------------------------------------------------------------------------- against the formulas


@pytest.mark.parametrize("debiased,ref", [(False, ref_hsic_biased), (True, ref_hsic_unbiased)])
def test_hsic_and_cka_match_the_published_formulas(debiased, ref):
    x, y = _pair(0)
    for kx, ky in [(x @ x.T, y @ y.T), (ref_rbf(x), ref_rbf(y, 0.5))]:
        tk, tl = torch.as_tensor(kx), torch.as_tensor(ky)
        assert hsic(tk, tl, debiased=debiased) == pytest.approx(ref(kx, ky), rel=1e-9)
        assert cka(tk, tl, debiased=debiased) == pytest.approx(ref_cka(kx, ky, ref), rel=1e-9)


def test_grams_match_direct_computation():
    x, _ = _pair(1)
    assert np.allclose(gram_linear(x).numpy(), x @ x.T, rtol=1e-12)
    for factor in (1.0, 0.5, 2.0):
        k, sigma = gram_rbf(x, sigma_factor=factor)
        assert sigma == pytest.approx(factor * np.median(pdist(x)), rel=1e-12)
        assert np.allclose(k.numpy(), ref_rbf(x, factor), rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- invariances and known answers


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_is_invariant_to_orthogonal_maps_and_isotropic_scaling(debiased):
    x, y = _pair(2)
    q = ortho_group.rvs(y.shape[1], random_state=3)
    base = cka(gram_linear(x), gram_linear(y), debiased=debiased)
    assert cka(gram_linear(x), gram_linear(y @ q), debiased=debiased) == pytest.approx(base, rel=1e-9)
    assert cka(gram_linear(7.5 * x), gram_linear(0.01 * y), debiased=debiased) == pytest.approx(base, rel=1e-9)
    # ... and to a shift of every feature (the Gram is centred)
    assert cka(gram_linear(x + 3.0), gram_linear(y), debiased=debiased) == pytest.approx(base, rel=1e-9)
    # not to an arbitrary invertible linear map: CKA is not CCA
    a = np.diag(np.linspace(0.1, 10, y.shape[1]))
    assert abs(cka(gram_linear(x), gram_linear(y @ a), debiased=debiased) - base) > 1e-3


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_of_a_representation_with_itself_is_one(debiased):
    x, _ = _pair(4)
    assert cka(gram_linear(x), gram_linear(x), debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    k, _ = gram_rbf(x)
    assert cka(k, k, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    # the median heuristic makes RBF CKA scale-free too
    k2, _ = gram_rbf(3.0 * x @ ortho_group.rvs(x.shape[1], random_state=5))
    assert cka(k, k2, debiased=debiased) == pytest.approx(1.0, abs=1e-9)


def test_independent_features_debiased_near_zero_biased_not():
    # wide independent Gaussians: both Grams are close to a multiple of I, so the biased CKA is
    # large although nothing is shared; the debiased numerator has expectation exactly 0
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((200, 500)), rng.standard_normal((200, 500))
    kx, ky = gram_linear(x), gram_linear(y)
    assert cka(kx, ky, debiased=False) > 0.5
    assert abs(cka(kx, ky, debiased=True)) < 0.05  # its sd over seeds here is about 0.007


# --------------------------------------------------------------------------- bootstrap


def test_debiased_hsic_on_resamples_targets_the_plug_in_hsic():
    # why the interval recentres: duplicated images are i.i.d. draws from the sample, for which the
    # unbiased estimator's expectation is the V-statistic tr(KHLH)/n^2 of the full sample
    x, y = _pair(7, n=12)
    kx, ky = x @ x.T, y @ y.T
    n = kx.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    target = np.trace(kx @ h @ ky @ h) / n**2
    rows = torch.as_tensor(np.random.default_rng(8).integers(0, n, (4000, n)))
    stack = lambda g: torch.as_tensor(g)[rows[:, :, None], rows[:, None, :]]
    inner = (center_gram(stack(kx), debiased=True) * center_gram(stack(ky), debiased=True)).sum(dim=(1, 2))
    draws = (inner / (n * (n - 3))).numpy()
    assert hsic(stack(kx)[0], stack(ky)[0], debiased=True) == pytest.approx(draws[0], rel=1e-9)
    se = draws.std(ddof=1) / np.sqrt(draws.size)
    assert abs(draws.mean() - target) < 4 * se
    assert abs(ref_hsic_unbiased(kx, ky) - target) > 10 * se  # the full-sample estimate is not the target


def test_interval_is_degenerate_for_identical_and_contains_the_estimate():
    x, y = _pair(9, n=60)
    k, l = gram_linear(x), gram_linear(y)
    assert cka_interval(k, k, debiased=True, rng=np.random.default_rng(0), resamples=50) == (1.0, 1.0)
    for debiased in (False, True):
        low, high = cka_interval(k, l, debiased=debiased, rng=np.random.default_rng(0), resamples=300)
        assert low < cka(k, l, debiased=debiased) < high


# --------------------------------------------------------------------------- resamples from counts, not gathers


def gathered_cka(k, l, rows, debiased):
    """The direct way: each resample's Grams gathered, centred and summed; NaN where a centred
    Gram is zero up to rounding (a side constant on the resample)."""
    k, l = torch.as_tensor(k), torch.as_tensor(l)
    values = []
    for r in torch.as_tensor(rows):
        kr, lr = k[r[:, None], r[None, :]], l[r[:, None], r[None, :]]
        kc, lc = center_gram(kr, debiased=debiased), center_gram(lr, debiased=debiased)
        kk, ll = float((kc * kc).sum()), float((lc * lc).sum())
        zero = kk <= 1e-20 * float((kr * kr).sum()) or ll <= 1e-20 * float((lr * lr).sum())
        values.append(np.nan if zero else float((kc * lc).sum()) / np.sqrt(kk * ll))
    return np.array(values)


def _with_duplicates(seed, n=40):
    """A related pair whose features repeat some images, with an offset (a large uncentred mean)."""
    x, y = _pair(seed, n=n)
    x[5:9], y[5:9] = x[0], y[0]
    return x + 3.0, np.maximum(y, 0)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("batch_elements", [1 << 22, 3000])  # one batch; many batches and column blocks
def test_resampled_cka_equals_gathering_each_resample(debiased, kernel, batch_elements):
    x, y = _with_duplicates(11)
    k, l = (gram_linear(x), gram_linear(y)) if kernel == "linear" else (gram_rbf(x)[0], gram_rbf(y, sigma_factor=0.7)[0])
    rows = np.random.default_rng(12).integers(0, x.shape[0], (200, x.shape[0]))
    got = resampled_cka(k, l, rows, debiased=debiased, batch_elements=batch_elements)
    expected = gathered_cka(k, l, rows, debiased)
    assert not np.isnan(expected).any()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=0)
    # and the published formulas on a few gathered resamples
    hsic_fn = ref_hsic_unbiased if debiased else ref_hsic_biased
    for i in range(5):
        r = np.ix_(rows[i], rows[i])
        assert got[i] == pytest.approx(ref_cka(k.numpy()[r], l.numpy()[r], hsic_fn), rel=1e-9)


@pytest.mark.parametrize("debiased", [False, True])
def test_interval_equals_the_percentiles_of_the_gathered_resamples(debiased):
    x, y = _with_duplicates(13, n=30)
    k, l = gram_linear(x), gram_rbf(y)[0]
    low, high = cka_interval(k, l, debiased=debiased, rng=np.random.default_rng(14), resamples=400)
    values = gathered_cka(k, l, np.random.default_rng(14).integers(0, 30, (400, 30)), debiased)
    estimate, plug_in = cka(k, l, debiased=debiased), cka(k, l, debiased=False)
    errors = values - plug_in
    assert (low, high) == pytest.approx((estimate + np.percentile(errors, 2.5), estimate + np.percentile(errors, 97.5)),
                                        rel=0, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_a_side_constant_on_a_resample_is_nan_and_skipped(debiased):
    # images 2..7 look identical to x: a resample drawing only those has a constant Gram on that
    # side; debiased, so has one drawing images 0 or 1 just once (off its diagonal the resampled
    # Gram is then f(a) + f(b), which U-centring removes)
    x, y = _pair(15, n=8)
    x[2:] = x[2]
    k, l = gram_linear(x), gram_rbf(y)[0]
    rows = np.random.default_rng(16).integers(0, 8, (300, 8))
    got = resampled_cka(k, l, rows, debiased=debiased)
    expected = gathered_cka(k, l, rows, debiased)
    constant = (rows < 2).sum(axis=1) <= (1 if debiased else 0)
    assert 10 < constant.sum() < 150
    assert np.array_equal(np.isnan(expected), constant)
    assert np.array_equal(np.isnan(got), constant)
    np.testing.assert_allclose(got[~constant], expected[~constant], rtol=1e-9, atol=0)
    # the interval uses only the defined resamples
    low, high = cka_interval(k, l, debiased=debiased, rng=np.random.default_rng(16), resamples=300)
    errors = expected[~constant] - cka(k, l, debiased=False)
    estimate = cka(k, l, debiased=debiased)
    assert (low, high) == pytest.approx(tuple(np.clip(estimate + np.percentile(errors, [2.5, 97.5]), -1, 1)),
                                        rel=0, abs=1e-12)


def test_resampled_cka_bad_input():
    x, y = _pair(17, n=10)
    k, l = gram_linear(x), gram_linear(y)
    with pytest.raises(ValueError, match="indices into the 10"):
        resampled_cka(k, l, np.array([[0, 1, 2, 10]]), debiased=False)
    with pytest.raises(ValueError, match="at least 4"):
        resampled_cka(k, l, np.zeros((2, 3), dtype=int), debiased=True)
    with pytest.raises(ValueError, match="one size"):
        resampled_cka(k, l[:5, :5], np.zeros((2, 5), dtype=int), debiased=False)


def test_bad_input_is_a_clear_error():
    x, _ = _pair(10)
    with pytest.raises(ValueError, match="at least 4"):
        cka(gram_linear(x[:3]), gram_linear(x[:3]), debiased=True)
    with pytest.raises(ValueError, match="one size"):
        cka(gram_linear(x), gram_linear(x[:10]), debiased=True)
    with pytest.raises(ValueError, match="constant"):
        cka(gram_linear(x), gram_linear(np.ones_like(x)), debiased=False)
    with pytest.raises(ValueError, match="median pairwise distance is 0"):
        gram_rbf(np.ones((5, 3)))


def test_metrics_are_declared_as_similarities():
    for name in ("linear_cka", "rbf_cka"):
        spec = metric_spec("cka", name)
        assert spec.higher_is_better and "similarity" in spec.description and spec.upper == 1.0
