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

    Works on a stack ``[..., n, n]`` of Gram matrices (the bootstrap centres a batch at once).
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


def cka_interval(k: "torch.Tensor", l: "torch.Tensor", *, debiased: bool, rng: np.random.Generator,
                 resamples: int = 1000, level: float = 0.95, batch_elements: int = 1 << 22) -> tuple[float, float]:
    """Bootstrap interval over samples: images resampled with replacement, CKA recomputed.

    A resample is n i.i.d. draws from the empirical distribution, duplicates included; on it
    the debiased estimator is (near) unbiased for the empirical distribution's own CKA, which is
    the biased (plug-in) CKA of the full sample, not the debiased estimate. So the interval is
    the estimate plus the percentiles of the resampled estimates' errors against that plug-in
    value. For the biased estimator the plug-in value is the estimate itself, and this is the
    plain percentile bootstrap. Resamples where one side is constant are skipped. The bandwidth
    of an RBF Gram is the full sample's (fixed, part of the kernel). Resamples go through in
    batches of about ``batch_elements`` Gram entries.
    """
    import torch

    n = k.shape[0]
    estimate = cka(k, l, debiased=debiased)
    plug_in = cka(k, l, debiased=False)
    rows = torch.as_tensor(rng.integers(0, n, (resamples, n)), device=k.device)
    batch = max(1, batch_elements // (n * n))
    values = torch.cat([
        _cka_stack(k[r[:, :, None], r[:, None, :]], l[r[:, :, None], r[:, None, :]], debiased)
        for r in rows.split(batch)]).cpu().numpy()
    errors = values[~np.isnan(values)] - plug_in
    if errors.size < resamples // 2:
        raise ValueError("CKA is undefined on most resamples (features constant on too many of them)")
    low, high = percentile_interval(errors, level)
    return float(np.clip(estimate + low, -1.0, 1.0)), float(np.clip(estimate + high, -1.0, 1.0))
