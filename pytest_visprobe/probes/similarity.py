"""Representational similarity: do encoders (and language) arrange the classes alike? (PROTOCOLS.md A)

Each encoder's representational dissimilarity matrix (RDM) over classes is the Welch t-distance
between class means of its L2-normalised features; RDMs are compared by the Pearson r of their
upper triangles. ``against="reference"`` gives each encoder after the first its r with the first
``--encoder``; ``against="language"`` gives every encoder its r with a text model's embeddings
of the prompt per class (the Euclidean RDM of one embedding per class). Every record carries the
full correlation matrix for the plot, and says which text definition it used.

The text side is either the ``--visprobe-text-model`` (metric ``rsa_language``; quick and
standard: MiniLM, L2-normalised) or, when the settings name ``text_models``, one metric
``rsa_language_NAME`` per named model (paper: BERT and GPT-2 read at the class name's token,
and the encoder's own ``encode_text`` for image-text encoders, unnormalised, as the study).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    import numpy as np

    from pytest_visprobe.runner.context import ProbeContext


class SimilarityConfig(BaseModel):
    """Welch-t RDMs over classes compared by Pearson r (PROTOCOLS.md A)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the split whose features give the class means and spreads; "all": every split of the
    #: dataset together (ImageNet-val's 50,000 images, as the study; no probe is fitted here, so
    #: no held-out split is needed)
    split: str = "test"
    prompt: str = "a photo of {label}."  # text embedded per class for the language comparison
    #: "dataset": the loader's class names verbatim; "study": Devillers et al.'s, the first two
    #: synonyms joined by ", " and lower-cased ("tench, tinca tinca"; one name when the loader has one)
    names: Literal["dataset", "study"] = "dataset"
    #: NAME -> text model spec, one metric rsa_language_NAME each; "encoder": each encoder's own
    #: text tower (encode_text), for the encoders that have one. Empty: --visprobe-text-model.
    text_models: dict[str, str] = {}
    #: which of a class name's tokens models that read it (hf-token:) take: "first" (the study's)
    token: Literal["first", "mean", "last"] = "first"
    normalize_text: bool = True  # L2-normalise each class's text embedding (the study: no)

    @field_validator("prompt")
    @classmethod
    def _prompt_names_the_label(cls, value: str) -> str:
        if "{label}" not in value:
            raise ValueError(f"prompt must contain '{{label}}' (replaced by each class name), got {value!r}")
        return value

    @field_validator("text_models")
    @classmethod
    def _text_models_are_named(cls, value: dict[str, str]) -> dict[str, str]:
        for name, spec in value.items():
            if not re.fullmatch(r"[a-z][a-z0-9]*", name):
                raise ValueError(f"text model name {name!r} must be a lower-case word (letters, digits), "
                                 "it names the metric rsa_language_NAME")
            if not isinstance(spec, str) or not spec.strip():
                raise ValueError(f"text model {name!r} needs a spec (NAME:ARG, or 'encoder'), got {spec!r}")
        return value


class SimilarityDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    names: list[str]  # rows/columns of ``matrix``: encoders, then the text model if compared
    matrix: list[list[float]]  # Pearson r between the RDMs
    split: str
    reference: str | None = None
    text_model: str | None = None  # the spec, or "encoder" for the encoder's own text tower
    prompt: str | None = None
    text_definition: str | None = None  # what the text embedding is, and whether it is normalised
    class_names: str | None = None  # "dataset" or "study" (SimilarityConfig.names)
    n_images: int | None = None  # images behind the encoders' RDMs


OWN_TEXT = "encoder"  # a text_models value: each encoder's own text tower


def encoder_features(ctx: "ProbeContext") -> tuple[dict[str, "np.ndarray"], "np.ndarray"]:
    """Features of every encoder on the configured split ("all": every split, concatenated in
    name order — an image folder's own ``all`` split is the same images as train + test, so it is
    left out rather than counted twice and encoded once more), keyed by encoder name, and the labels."""
    import numpy as np

    split, dataset = ctx.settings.split, ctx.dataset
    splits = sorted(set(dataset.splits) - {"all"}) if split == "all" else [split]
    labels = np.concatenate([dataset.split(name).labels for name in splits])
    counts = np.bincount(labels, minlength=len(dataset.class_names))
    if (counts == 0).any():
        missing = [dataset.class_names[i] for i in np.flatnonzero(counts == 0)]
        ctx.skip(f"RSA needs every class in the {split} split, but {dataset.name} has no "
                 f"{', '.join(map(repr, missing[:5]))} image there; raise --visprobe-limit or pick another dataset.")
    return {encoder.name: np.concatenate([ctx.features(name, encoder=encoder).numpy() for name in splits])
            for encoder in ctx.encoders}, labels


def rdms_of(features: dict[str, "np.ndarray"], labels: "np.ndarray", n_classes: int) -> dict[str, "np.ndarray"]:
    """Welch-t RDM of every encoder over the split's rows."""
    from pytest_visprobe.kernels.rsa import welch_rdm

    return {name: welch_rdm(x, labels, n_classes=n_classes) for name, x in features.items()}


def within_class_intervals(features, labels, n_classes: int, extra: dict[str, "np.ndarray"], pick, *,
                           rng, resamples: int, level: float = 0.95) -> "np.ndarray":
    """Percentile intervals ``[n, 2]`` of the correlations ``pick(corr)`` (n of them) when the
    images are resampled within each class and every image RDM is recomputed; ``extra`` RDMs
    (the text side) stay fixed. Images, not the C(K, 2) RDM entries, are the independent units.
    Each draw's RDMs come from ``WelchResampler`` (one pass over the features per encoder),
    equal to ``welch_rdm`` of each encoder's drawn rows."""
    import numpy as np

    from pytest_visprobe.kernels.rsa import WelchResampler, correlation_matrix
    from pytest_visprobe.report.statistics import percentile_interval

    members = [np.flatnonzero(labels == c) for c in range(n_classes)]
    resamplers = {name: WelchResampler(x, labels, n_classes) for name, x in features.items()}
    draws = []
    for _ in range(resamples):
        rows = np.concatenate([rng.choice(m, m.size) for m in members])
        weights = np.bincount(rows, minlength=labels.size)
        rdms = {name: r.rdm(weights) for name, r in resamplers.items()} | extra
        draws.append(np.atleast_1d(pick(correlation_matrix(rdms)[1])))
    return np.stack(percentile_interval(draws, level, axis=0), axis=-1)


def study_names(dataset) -> list[str]:
    """Devillers et al.'s class names: the first two synonyms joined by ", ", lower-cased
    (ImageNet's "tench, tinca tinca"); a class the loader names once keeps that name."""
    synonyms = dataset.class_synonyms or [[name] for name in dataset.class_names]
    return [", ".join(s[:2]).lower() for s in synonyms]


def _own_text(encoder, texts: list[str]) -> "np.ndarray":
    import numpy as np
    import torch

    with torch.inference_mode():
        return np.concatenate([encoder.encode_text(texts[i:i + 256]).float().cpu().numpy()
                               for i in range(0, len(texts), 256)])


def text_sides(ctx: "ProbeContext", names: list[str]) -> list[tuple[str, str, "np.ndarray", str, str, object]]:
    """(metric, RDM name, Euclidean RDM, spec, definition, owner) per text model; ``owner`` is the
    one encoder a model's record belongs to (its own text tower), None for every encoder."""
    import numpy as np

    from pytest_visprobe.encoders.text import (
        TextModelUnavailable,
        embed_labels,
        text_definition,
    )
    from pytest_visprobe.errors import TextTowerUnavailable
    from pytest_visprobe.kernels.rsa import euclidean_rdm

    config: SimilarityConfig = ctx.settings
    norm = "L2-normalised" if config.normalize_text else "not normalised"
    models = config.text_models or {"": ctx.text_model}
    sides = []
    for name, spec in models.items():
        metric = f"rsa_language_{name}" if name else "rsa_language"
        if spec == OWN_TEXT:
            texts = [config.prompt.replace("{label}", n) for n in names]
            for encoder in ctx.encoders:
                if not encoder.has_text_tower:
                    continue
                try:
                    emb = _own_text(encoder, texts)
                except TextTowerUnavailable as exc:
                    ctx.skip(f"encoder {encoder.name!r}: {exc}")
                if config.normalize_text:
                    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
                sides.append((metric, f"text:{encoder.name}", euclidean_rdm(emb), OWN_TEXT,
                              f"{encoder.name}'s own encode_text of the prompt, {norm}", encoder))
            continue
        try:
            emb = embed_labels(names, spec, config.prompt, normalize=config.normalize_text, token=config.token)
            definition = text_definition(spec, token=config.token)
        except TextModelUnavailable as exc:
            ctx.skip(f"text model {spec!r} unavailable: {exc}")
        sides.append((metric, f"text:{name or spec}", euclidean_rdm(emb), spec, f"{definition}, {norm}", None))
    return sides


def run(ctx: "ProbeContext", against: Literal["reference", "language"]) -> list[Metric]:
    from pytest_visprobe.kernels.rsa import correlation_matrix
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
        details = SimilarityDetails(reference=names[0], names=names, matrix=corr.round(6).tolist(), split=config.split,
                                    n_images=len(labels))
        return [Metric("similarity", "rsa_reference", float(corr[i, 0]), details=details, encoder=encoder,
                       interval=tuple(intervals[i - 1]))
                for i, encoder in enumerate(encoders) if i > 0]
    class_names = study_names(ctx.dataset) if config.names == "study" else list(ctx.dataset.class_names)
    sides = text_sides(ctx, class_names)
    if not sides:
        ctx.skip(f"no text model to compare with: {', '.join(config.text_models)} name only the encoders' own "
                 "text towers (encode_text), and no encoder here has one.")
    features, labels = encoder_features(ctx)
    text_rdms = {key: rdm for _, key, rdm, *_ in sides}
    names, corr = correlation_matrix(rdms_of(features, labels, n_classes) | text_rdms)
    index = {name: i for i, name in enumerate(names)}
    pairs = [(i, index[key], metric, spec, definition)
             for metric, key, _, spec, definition, owner in sides
             for i, encoder in enumerate(encoders) if owner is None or owner is encoder]
    rows, cols = [p[0] for p in pairs], [p[1] for p in pairs]
    intervals = within_class_intervals(features, labels, n_classes, text_rdms, lambda c: c[rows, cols], rng=rng,
                                       resamples=ctx.resamples)
    matrix = corr.round(6).tolist()
    return [Metric("similarity", metric, float(corr[i, j]), encoder=encoders[i], interval=tuple(intervals[p]),
                   details=SimilarityDetails(text_model=spec, prompt=config.prompt, names=names, matrix=matrix,
                                             split=config.split, text_definition=definition,
                                             class_names=config.names, n_images=len(labels)))
            for p, (i, j, metric, spec, definition) in enumerate(pairs)]


SIMILARITY = ProbeSpec(
    name="similarity",
    description="representational similarity (Welch-t class RDMs, Pearson r) between encoders and with language",
    metrics=(
        MetricSpec("rsa_language", True,
                   "Pearson r between the encoder's Welch-t class RDM and a text model's RDM of 'a photo of {label}.'",
                   lower=-1.0),
        MetricSpec("rsa_language_{name}", True,
                   "Pearson r between the encoder's Welch-t class RDM and the Euclidean RDM of the text model the "
                   "settings name NAME (text_models; 'encoder': the encoder's own encode_text)",
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
