"""Centered kernel alignment: do two encoders represent the same images alike? (Kornblith et al. 2019)

Where RSA compares class geometry, CKA compares the images' similarity structure directly: the
Gram matrices of two encoders' features over the same images, linear and RBF (median heuristic),
with the debiased HSIC estimator by default. Each encoder after the first gets its CKA with the
reference encoder (the first ``--encoder``), as the ``similarity`` probe's ``rsa_reference``.
The interval is a bootstrap over images (see ``kernels.cka.cka_interval`` for duplicates).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    from pytest_visprobe.runner.context import ProbeContext

CHANCE_DEBIASED = "0 with the debiased estimator (HSIC of independent features); none with the biased one"


class CkaConfig(BaseModel):
    """Linear and RBF CKA with the reference encoder (Kornblith et al. 2019)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: str = "test"  # the split whose images both encoders see
    estimator: Literal["debiased", "biased"] = "debiased"  # HSIC: Song et al. 2012 U-statistic, or tr(KHLH)/(n-1)^2
    rbf_sigma: float = Field(1.0, gt=0)  # RBF bandwidth = this factor × the median pairwise distance
    max_images: int = Field(5000, ge=4)  # a seeded subset beyond this: the Gram matrices are n × n


class CkaDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str
    split: str
    n_images: int
    estimator: str
    kernel: str
    sigma: float | None = None  # the RBF bandwidth of this encoder's features
    sigma_reference: float | None = None
    interval: str = ("bootstrap over images, resampled with replacement; the estimate plus the percentiles of the "
                     "resampled CKA's deviation from the full sample's plug-in (biased) CKA")


def compared_grams(ctx: "ProbeContext", split: str, max_images: int, rbf_sigma: float) -> Callable[..., dict]:
    """``grams(encoder) -> {"linear": (K, None), "rbf": (K, σ)}`` over the images of ``split`` that
    CKA compares: all of them, or a seeded subset beyond ``max_images``, the same for every encoder
    or layer; float64 on CUDA when the run is there, else the CPU. Skips with fewer than 4 images."""
    import numpy as np

    from pytest_visprobe.kernels.cka import gram_linear, gram_rbf

    n = len(ctx.dataset.split(split).labels)
    if n < 4:
        ctx.skip(f"CKA needs at least 4 images in the {split} split of {ctx.dataset.name}, it has {n}; "
                 "raise --visprobe-limit or pick another dataset.")
    rows = None
    if n > max_images:
        rows = np.sort(np.random.default_rng([ctx.seed, 0xCCA]).choice(n, max_images, replace=False))
    device = ctx.device if getattr(ctx.device, "type", str(ctx.device)) == "cuda" else "cpu"

    def grams(encoder) -> dict:
        x = ctx.features(split, encoder=encoder)
        x = x if rows is None else x[rows]
        return {"linear": (gram_linear(x, device=device), None),
                "rbf": gram_rbf(x, sigma_factor=rbf_sigma, device=device)}

    return grams


def run(ctx: "ProbeContext") -> list[Metric]:
    from pytest_visprobe.kernels.cka import cka, cka_interval
    from pytest_visprobe.report.statistics import seed_for

    config: CkaConfig = ctx.settings
    encoders = ctx.encoders
    if len(encoders) < 2:
        ctx.skip("CKA between encoders needs at least two --encoder options (the first is the reference)")
    grams_of = compared_grams(ctx, config.split, config.max_images, config.rbf_sigma)
    debiased = config.estimator == "debiased"
    chance = 0.0 if debiased else None
    reference = encoders[0]
    ref_grams = grams_of(reference)
    metrics = []
    for encoder in encoders[1:]:
        grams = grams_of(encoder)
        for kernel, (gram, sigma) in grams.items():
            ref_gram, ref_sigma = ref_grams[kernel]
            name = f"{kernel}_cka"
            value = cka(gram, ref_gram, debiased=debiased)
            interval = cka_interval(gram, ref_gram, debiased=debiased, resamples=ctx.resamples,
                                    rng=seed_for(ctx.seed, encoder.name, "cka", ctx.dataset.name, name))
            details = CkaDetails(reference=reference.name, split=config.split, n_images=int(gram.shape[0]),
                                 estimator=config.estimator, kernel=kernel,
                                 sigma=None if sigma is None else round(sigma, 6),
                                 sigma_reference=None if ref_sigma is None else round(ref_sigma, 6))
            metrics.append(Metric("cka", name, value, details=details, interval=interval, chance=chance,
                                  encoder=encoder))
    return metrics


_SIMILARITY_NOTE = "a similarity to the reference encoder (the first --encoder), not a quality"
CKA = ProbeSpec(
    name="cka",
    description="centered kernel alignment (linear and RBF, debiased HSIC) between each encoder and the first",
    metrics=(
        MetricSpec("linear_cka", True, f"linear CKA of the images' feature Gram matrices: {_SIMILARITY_NOTE}",
                   lower=-1.0, chance=CHANCE_DEBIASED),
        MetricSpec("rbf_cka", True,
                   f"RBF-kernel CKA (bandwidth = factor × median pairwise distance): {_SIMILARITY_NOTE}",
                   lower=-1.0, chance=CHANCE_DEBIASED),
    ),
    run=run,
    settings=CkaConfig,
    details=CkaDetails,
    role="similarity",
    targets=("label",),
    compares_encoders=True,
)
