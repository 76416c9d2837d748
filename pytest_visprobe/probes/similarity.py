"""Representational similarity: do encoders (and language) arrange the classes alike? (PROTOCOLS.md A)

Each encoder's representational dissimilarity matrix (RDM) over classes is the Welch t-distance
between class means of its L2-normalised features; RDMs are compared by the Pearson r of their
upper triangles. ``against="reference"`` gives each encoder after the first its r with the first
``--encoder``; ``against="language"`` gives every encoder its r with a text model's embeddings
of the prompt per class. Every record carries the full correlation matrix for the plot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    import numpy as np

    from pytest_visprobe.runner.context import ProbeContext


class SimilarityConfig(BaseModel):
    """Welch-t RDMs over classes compared by Pearson r (PROTOCOLS.md A)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: str = "test"  # the split whose features give the class means and spreads
    prompt: str = "a photo of {label}."  # text embedded per class for the language comparison

    @field_validator("prompt")
    @classmethod
    def _prompt_names_the_label(cls, value: str) -> str:
        if "{label}" not in value:
            raise ValueError(f"prompt must contain '{{label}}' (replaced by each class name), got {value!r}")
        return value


class SimilarityDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    names: list[str]  # rows/columns of ``matrix``: encoders, then the text model if compared
    matrix: list[list[float]]  # Pearson r between the RDMs
    split: str
    reference: str | None = None
    text_model: str | None = None
    prompt: str | None = None


def encoder_features(ctx: "ProbeContext") -> tuple[dict[str, "np.ndarray"], "np.ndarray"]:
    """Features of every encoder on the configured split (keyed by encoder name), and the labels."""
    import numpy as np

    split, dataset = ctx.settings.split, ctx.dataset
    labels = dataset.split(split).labels
    counts = np.bincount(labels, minlength=len(dataset.class_names))
    if (counts == 0).any():
        missing = [dataset.class_names[i] for i in np.flatnonzero(counts == 0)]
        ctx.skip(f"RSA needs every class in the {split} split, but {dataset.name} has no "
                 f"{', '.join(map(repr, missing[:5]))} image there; raise --visprobe-limit or pick another dataset.")
    return {encoder.name: ctx.features(split, encoder=encoder).numpy() for encoder in ctx.encoders}, labels


def rdms_of(features: dict[str, "np.ndarray"], labels: "np.ndarray", n_classes: int,
            rows: "np.ndarray | None" = None) -> dict[str, "np.ndarray"]:
    """Welch-t RDM of every encoder, on ``rows`` of the split (all rows by default)."""
    from pytest_visprobe.kernels.rsa import welch_rdm

    if rows is None:
        return {name: welch_rdm(x, labels, n_classes=n_classes) for name, x in features.items()}
    return {name: welch_rdm(x[rows], labels[rows], n_classes=n_classes) for name, x in features.items()}


def within_class_intervals(features, labels, n_classes: int, extra: dict[str, "np.ndarray"], pick, *,
                           rng, resamples: int, level: float = 0.95) -> "np.ndarray":
    """Percentile intervals ``[n, 2]`` of the correlations ``pick(corr)`` (one per encoder) when the
    images are resampled within each class and every image RDM is recomputed; ``extra`` RDMs
    (the text side) stay fixed. Images, not the C(K, 2) RDM entries, are the independent units."""
    import numpy as np

    from pytest_visprobe.kernels.rsa import correlation_matrix
    from pytest_visprobe.report.statistics import percentile_interval

    members = [np.flatnonzero(labels == c) for c in range(n_classes)]
    draws = []
    for _ in range(resamples):
        rows = np.concatenate([rng.choice(m, m.size) for m in members])
        rdms = rdms_of(features, labels, n_classes, rows) | extra
        draws.append(pick(correlation_matrix(rdms)[1]))
    return np.stack(percentile_interval(draws, level, axis=0), axis=-1)


def run(ctx: "ProbeContext", against: Literal["reference", "language"]) -> list[Metric]:
    from pytest_visprobe.kernels.rsa import correlation_matrix, euclidean_rdm

    from pytest_visprobe.report.statistics import seed_for

    config: SimilarityConfig = ctx.settings
    encoders = ctx.encoders
    n_classes = len(ctx.dataset.class_names)
    rng = seed_for(ctx.seed, "similarity", ctx.dataset.name, against)
    if against == "reference":
        if len(encoders) < 2:
            ctx.skip("encoder-to-encoder RSA needs at least two --encoder options (the first is the reference)")
        features, labels = encoder_features(ctx)
        names, corr = correlation_matrix(rdms_of(features, labels, n_classes))
        intervals = within_class_intervals(features, labels, n_classes, {}, lambda c: c[1:, 0], rng=rng,
                                           resamples=ctx.resamples)
        details = SimilarityDetails(reference=names[0], names=names, matrix=corr.round(6).tolist(), split=config.split)
        return [Metric("similarity", "rsa_reference", float(corr[i, 0]), details=details, encoder=encoder,
                       interval=tuple(intervals[i - 1]))
                for i, encoder in enumerate(encoders) if i > 0]
    from pytest_visprobe.encoders.text import TextModelUnavailable, embed_labels

    try:
        text = embed_labels(ctx.dataset.class_names, ctx.text_model, config.prompt)
    except TextModelUnavailable as exc:
        ctx.skip(f"text model {ctx.text_model!r} unavailable: {exc}")
    features, labels = encoder_features(ctx)
    text_rdm = {f"text:{ctx.text_model}": euclidean_rdm(text)}
    names, corr = correlation_matrix(rdms_of(features, labels, n_classes) | text_rdm)
    intervals = within_class_intervals(features, labels, n_classes, text_rdm, lambda c: c[:-1, -1], rng=rng,
                                       resamples=ctx.resamples)
    details = SimilarityDetails(text_model=ctx.text_model, prompt=config.prompt, names=names,
                                matrix=corr.round(6).tolist(), split=config.split)
    return [Metric("similarity", "rsa_language", float(corr[i, -1]), details=details, encoder=encoder,
                   interval=tuple(intervals[i]))
            for i, encoder in enumerate(encoders)]


SIMILARITY = ProbeSpec(
    name="similarity",
    description="representational similarity (Welch-t class RDMs, Pearson r) between encoders and with language",
    metrics=(
        MetricSpec("rsa_language", True,
                   "Pearson r between the encoder's Welch-t class RDM and a text model's RDM of 'a photo of {label}.'",
                   lower=-1.0),
        MetricSpec("rsa_reference", True,
                   "Pearson r between the encoder's Welch-t class RDM and the reference encoder's (the first --encoder)",
                   lower=-1.0),
    ),
    run=run,
    settings=SimilarityConfig,
    details=SimilarityDetails,
    role="similarity",
    targets=("label",),
    compares_encoders=True,
    plot="pytest_visprobe.report.plots.generalization:plot_similarity",
)
