"""Centered kernel alignment between two feature matrices of the same images (Kornblith et al. 2019).

``CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` for Gram matrices ``K``, ``L`` over the
same n images (rows in the same order; the feature widths may differ). Two HSIC estimators:

- **biased** (Gretton et al. 2005): ``tr(K H L H) / (n-1)^2``, ``H = I - 11ᵀ/n``. Its CKA is
  positive even for independent features, by an amount that grows with the width and shrinks
  with n.
- **debiased** (Song et al. 2012, as used by Nguyen et al. 2021): the unbiased U-statistic. It
  is computed here as the inner product of U-centred Gram matrices (Székely & Rizzo 2014), the
  form of Kornblith's reference code; tests check it against Song's formula.

Kernels: linear (``X Xᵀ``) and RBF ``exp(-d² / (2σ²))`` with the median heuristic
``σ = factor · median of the pairwise distances d_ij, i < j`` (Kornblith's code takes the median
of the squared distances including the zero diagonal, which differs slightly for small n).
Float64 torch, on the given device; nothing here is specific to encoders, so layers compare alike.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from pytest_visprobe.report.statistics import percentile_interval

if TYPE_CHECKING:
    import torch


def _as_features(x: "np.ndarray | torch.Tensor", device: "torch.device | str | None") -> "torch.Tensor":
    import torch

    t = torch.as_tensor(x)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"features must be a non-empty 2-D array [n, D], got {tuple(t.shape)}")
    t = t.to(device=device, dtype=torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError("features contain NaN or infinity; check the encoder output")
    return t


def gram_linear(x: "np.ndarray | torch.Tensor", *, device: "torch.device | str | None" = None) -> "torch.Tensor":
    """``X Xᵀ`` [n, n], float64."""
    t = _as_features(x, device)
    return t @ t.T


def gram_rbf(x: "np.ndarray | torch.Tensor", *, sigma_factor: float = 1.0,
             device: "torch.device | str | None" = None) -> tuple["torch.Tensor", float]:
    """RBF Gram matrix with the median heuristic, and the bandwidth σ it used."""
    import torch

    if sigma_factor <= 0:
        raise ValueError(f"sigma_factor must be > 0, got {sigma_factor}")
    t = _as_features(x, device)
    if t.shape[0] < 2:
        raise ValueError("the RBF bandwidth needs at least two samples")
    sq = (t * t).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2 * (t @ t.T)).clamp_min_(0)
    d2.fill_diagonal_(0)
    rows, cols = np.triu_indices(t.shape[0], 1)
    median = float(np.median(np.sqrt(d2.cpu().numpy()[rows, cols])))
    if median == 0:
        raise ValueError("the median pairwise distance is 0 (most features identical): the RBF bandwidth is undefined")
    sigma = sigma_factor * median
    return torch.exp(-d2 / (2 * sigma**2)), sigma


def center_gram(gram: "torch.Tensor", *, debiased: bool) -> "torch.Tensor":
    """``H K H`` (biased), or the U-centred ``K`` with zero diagonal (debiased; needs n >= 4).

    Works on a stack ``[..., n, n]`` of Gram matrices (benchmarks/bench_cka.py centres the former
    path's gathered resamples a batch at once; the bootstrap itself uses ``resampled_cka``).
    """
    n = gram.shape[-1]
    if not debiased:
        means = gram.mean(dim=-2)
        return gram - means[..., :, None] - means[..., None, :] + means.mean(dim=-1)[..., None, None]
    if n < 4:
        raise ValueError(f"the debiased HSIC estimator needs at least 4 samples, got {n}")
    g = gram.clone()
    g.diagonal(dim1=-2, dim2=-1).zero_()
    means = g.sum(dim=-2) / (n - 2)
    means = means - means.sum(dim=-1, keepdim=True) / (2 * (n - 1))
    g = g - means[..., :, None] - means[..., None, :]
    g.diagonal(dim1=-2, dim2=-1).zero_()
    return g


def hsic(k: "torch.Tensor", l: "torch.Tensor", *, debiased: bool) -> float:
    """HSIC of two Gram matrices: ``tr(KHLH)/(n-1)^2``, or Song et al.'s unbiased estimator."""
    n = k.shape[0]
    inner = float((center_gram(k, debiased=debiased) * center_gram(l, debiased=debiased)).sum())
    return inner / (n * (n - 3)) if debiased else inner / (n - 1) ** 2


def _cka_stack(k: "torch.Tensor", l: "torch.Tensor", debiased: bool) -> "torch.Tensor":
    """CKA of each pair in stacks ``[B, n, n]``; NaN where one side is constant."""
    import torch

    kc, lc = center_gram(k, debiased=debiased), center_gram(l, debiased=debiased)
    denominator = (kc * kc).sum(dim=(-2, -1)) * (lc * lc).sum(dim=(-2, -1))
    value = (kc * lc).sum(dim=(-2, -1)) / denominator.clamp_min(1e-300).sqrt()
    return torch.where(denominator > 0, value, torch.full_like(value, float("nan")))


def cka(k: "torch.Tensor", l: "torch.Tensor", *, debiased: bool) -> float:
    """CKA of two Gram matrices over the same samples (normalisations cancel in the ratio)."""
    if k.shape != l.shape or k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"Gram matrices must be square and of one size, got {tuple(k.shape)} and {tuple(l.shape)}")
    value = float(_cka_stack(k, l, debiased))
    if math.isnan(value):
        raise ValueError("CKA is undefined: the features of one side are constant over these samples")
    return value


# A side whose HSIC on a resample is below this fraction of the positive terms it is the difference
# of has a centred Gram that is zero up to float64 rounding (those terms are computed to ~1e-15 of
# themselves; a real resample's HSIC is a sizeable fraction of them, its Gram being centred first).
_CONSTANT_TOLERANCE = 1e-10


def _resampled_hsics(k: "torch.Tensor", l: "torch.Tensor", counts: "torch.Tensor", m: int, debiased: bool,
                     column_block: int) -> "tuple[torch.Tensor, ...]":
    """HSIC(K, L), HSIC(K, K), HSIC(L, L) of each resample (unnormalised: the constants cancel in
    CKA) and the positive parts of the last two, from the count vectors ``counts`` [b, n] of
    resamples of size m.

    ``k``, ``l`` are full-sample Grams. A sum over a resample's positions a, b of ``K[r_a, r_b]``
    weighs entry (i, j) by ``w_i w_j``, so with w a resample's counts (size m = Σw)
    ``tr(K_r L_r) = wᵀ(K∘L)w``, ``1ᵀK_r L_r 1 = Σ_i w_i (Kw)_i (Lw)_i``, ``1ᵀK_r 1 = wᵀKw``, and

    - biased: ``tr(K_r H L_r H) = tr(K_r L_r) - (2/m) 1ᵀK_r L_r 1 + (1ᵀK_r 1)(1ᵀL_r 1)/m²``;
    - debiased (Song et al. 2012 on the resample, K̃ = K_r with zero diagonal): only the m diagonal
      positions are removed (a duplicated image sits off the diagonal, with ``K_ii``), so
      ``tr(K̃L̃) = wᵀ(K∘L)w - Σ w_i K_ii L_ii``, ``1ᵀK̃1 = wᵀKw - Σ w_i K_ii``,
      ``1ᵀK̃L̃1 = Σ w_i ((Kw)_i - K_ii)((Lw)_i - L_ii)``, and ``m(m-3) HSIC_u = tr(K̃L̃) +
      (1ᵀK̃1)(1ᵀL̃1)/((m-1)(m-2)) - (2/(m-2)) 1ᵀK̃L̃1``.

    Every term is a sum over the columns, so the n × n products are taken ``column_block``
    columns at a time: [b, n] @ [n, block] GEMMs, the same operations for (K, L), (K, K) and
    (L, L) so that identical Grams give identical HSICs (CKA exactly 1).
    """
    import torch

    b, n = counts.shape
    dot = lambda x, y: torch.einsum("ij,ij->i", x, y)  # row-wise, without an elementwise temporary
    zeros = lambda: torch.zeros(b, dtype=torch.float64, device=counts.device)
    quad = {pair: zeros() for pair in ("kl", "kk", "ll")}  # wᵀ(A∘B)w (minus the diagonal: debiased)
    cross = {pair: zeros() for pair in ("kl", "kk", "ll")}  # 1ᵀ A_r B_r 1 (K̃, L̃: debiased)
    total = {side: zeros() for side in "kl"}  # 1ᵀ A_r 1 (K̃, L̃: debiased)
    for start in range(0, n, column_block):
        block = slice(start, start + column_block)
        w = counts[:, block]
        grams = {"k": k[block].T, "l": l[block].T}  # the columns (symmetric), as a BLAS-friendly view
        diagonals = {"k": k.diagonal()[block], "l": l.diagonal()[block]}
        sums, weighted = {}, {}  # (Aw)_i (minus A_ii: debiased), and w_i times it
        for side, gram in grams.items():
            sums[side] = counts @ gram
            if debiased:
                sums[side] -= diagonals[side]
            weighted[side] = w * sums[side]
            total[side] += dot(w, sums[side])
        for pair in quad:
            first, second = pair
            quad[pair] += dot(counts @ (grams[first] * grams[second]), w)
            if debiased:
                quad[pair] -= w @ (diagonals[first] * diagonals[second])
            cross[pair] += dot(weighted[first], sums[second])

    def combine(pair: str) -> "tuple[torch.Tensor, torch.Tensor]":
        """(HSIC, the sum of its positive terms)."""
        products = total[pair[0]] * total[pair[1]]
        if debiased:
            positive, negative = quad[pair] + products / ((m - 1) * (m - 2)), 2 / (m - 2) * cross[pair]
        else:
            positive, negative = quad[pair] + products / m**2, 2 / m * cross[pair]
        return positive - negative, positive

    (kl, _), (kk, kk_positive), (ll, ll_positive) = combine("kl"), combine("kk"), combine("ll")
    return kl, kk, ll, kk_positive, ll_positive


def resampled_cka(k: "torch.Tensor", l: "torch.Tensor", rows: np.ndarray, *, debiased: bool,
                  batch_elements: int = 1 << 22) -> np.ndarray:
    """CKA of each bootstrap resample ``rows`` [B, m] (indices into the n samples of the symmetric
    Grams ``k``, ``l``): the same as centring each resampled Gram ``k[r][:, r]``, without forming it.

    NaN where a side's centred resampled Gram is zero up to rounding: its features are constant
    on the resample or, debiased, the resample draws one other image just once besides copies of
    a single one (U-centring then removes everything); centring the gathered Gram leaves rounding
    noise there, whose ratio is no CKA.

    Only each resample's count vector is needed (see ``_resampled_hsics``). The Grams are first
    centred over the full sample: a resample's ``H K_r H`` and U-centred ``K_r`` are unchanged
    by adding ``f(i) + f(j)`` to every entry, and the smaller entries lose less to rounding.
    About ``batch_elements`` numbers are held at once besides the two centred Grams.
    """
    import torch

    if k.shape != l.shape or k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"Gram matrices must be square and of one size, got {tuple(k.shape)} and {tuple(l.shape)}")
    rows = np.asarray(rows)
    n = k.shape[0]
    if rows.ndim != 2 or rows.shape[1] == 0 or (rows.size and (rows.min() < 0 or rows.max() >= n)):
        raise ValueError(f"rows must be [resamples, size > 0] indices into the {n} samples, got shape {rows.shape}")
    if debiased and rows.shape[1] < 4:
        raise ValueError(f"the debiased HSIC estimator needs at least 4 samples, got {rows.shape[1]}")
    k, l = center_gram(k, debiased=False), center_gram(l, debiased=False)
    batch = min(max(1, rows.shape[0]), max(1, batch_elements // (2 * n)))
    column_block = min(n, max(1, (batch_elements - batch * n) // (3 * n + 5 * batch)))
    values = []
    for start in range(0, rows.shape[0], batch):
        chunk = rows[start:start + batch]
        offsets = (chunk + n * np.arange(chunk.shape[0])[:, None]).ravel()
        counts = np.bincount(offsets, minlength=chunk.shape[0] * n).reshape(chunk.shape[0], n)
        counts = torch.as_tensor(counts, dtype=torch.float64, device=k.device)
        kl, kk, ll, kk_positive, ll_positive = _resampled_hsics(k, l, counts, rows.shape[1], debiased, column_block)
        constant = (kk <= _CONSTANT_TOLERANCE * kk_positive) | (ll <= _CONSTANT_TOLERANCE * ll_positive)
        value = kl / (kk * ll).clamp_min(1e-300).sqrt()
        values.append(torch.where(constant, torch.full_like(value, float("nan")), value).cpu().numpy())
    return np.concatenate(values) if values else np.empty(0)


def cka_interval(k: "torch.Tensor", l: "torch.Tensor", *, debiased: bool, rng: np.random.Generator,
                 resamples: int = 1000, level: float = 0.95, batch_elements: int = 1 << 22) -> tuple[float, float]:
    """Bootstrap interval over samples: images resampled with replacement, CKA recomputed.

    A resample is n i.i.d. draws from the empirical distribution, duplicates included; on it
    the debiased estimator is (near) unbiased for the empirical distribution's own CKA, which is
    the biased (plug-in) CKA of the full sample, not the debiased estimate. So the interval is
    the estimate plus the percentiles of the resampled estimates' errors against that plug-in
    value. For the biased estimator the plug-in value is the estimate itself, and this is the
    plain percentile bootstrap. Resamples where one side is constant are skipped. The bandwidth
    of an RBF Gram is the full sample's (fixed, part of the kernel). ``resampled_cka`` computes
    the resamples' CKAs from their counts, about ``batch_elements`` numbers at a time.
    """
    n = k.shape[0]
    estimate = cka(k, l, debiased=debiased)
    plug_in = cka(k, l, debiased=False)
    values = resampled_cka(k, l, rng.integers(0, n, (resamples, n)), debiased=debiased,
                           batch_elements=batch_elements)
    errors = values[~np.isnan(values)] - plug_in
    if errors.size < resamples // 2:
        raise ValueError("CKA is undefined on most resamples (features constant on too many of them)")
    low, high = percentile_interval(errors, level)
    return float(np.clip(estimate + low, -1.0, 1.0)), float(np.clip(estimate + high, -1.0, 1.0))
