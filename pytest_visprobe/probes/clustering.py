"""Unsupervised structure: do the test features fall into the classes without labels? (PROTOCOLS.md A)

Spectral clustering of the test-split features with |cosine| affinity and k = number of
classes, scored by the study's greedy cluster-to-class matching, the one-to-one (Hungarian)
matching, NMI and ARI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    from pytest_visprobe.runner.context import ProbeContext


#: how the matched accuracies' chance level is computed (kernels/clustering.py permutation_chance)
CHANCE_PERMUTED = ("the mean matched accuracy of the cluster assignment shuffled across samples (a random "
                   "partition with the same cluster sizes; seeded, details.chance_permutations shuffles)")


class ClusteringConfig(BaseModel):
    """Spectral clustering of the test split with |cos| affinity (PROTOCOLS.md A)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    affinity: Literal["auto", "dense", "knn"] = "auto"  # auto: dense up to 32,768 samples, then k-NN
    n_neighbors: int | None = Field(None, gt=0)  # k-NN graph only; None: half the mean class size, in [10, 100]
    chance_permutations: int = Field(100, gt=0)  # seeded shuffles of the clusters that estimate chance


class ClusteringDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    affinity: str
    n_clusters: int
    n_samples: int
    chance_permutations: int | None = None  # shuffles of the cluster assignment behind the chance level


def run(ctx: "ProbeContext") -> list[Metric]:
    import numpy as np

    from pytest_visprobe.kernels.clustering import clustering_scores
    from pytest_visprobe.report.units import UnitStats

    config: ClusteringConfig = ctx.settings
    labels = ctx.dataset.split("test").labels
    result = clustering_scores(ctx.features("test").numpy(), labels, seed=ctx.seed, affinity=config.affinity,
                               n_neighbors=config.n_neighbors, chance_permutations=config.chance_permutations)
    details = ClusteringDetails(affinity=result.affinity, n_clusters=result.n_clusters, n_samples=result.n_samples,
                                chance_permutations=result.chance_permutations)

    def units(statistic: str) -> UnitStats:
        # one merged cluster flips about N/k samples at once, so per-sample outcomes are not
        # independent draws: resample samples and recompute the score (matching included)
        return UnitStats(statistic, "test sample", {"labels": np.asarray(labels), "clusters": result.clusters},
                         note="partition fixed")

    return [
        Metric("clustering", "greedy_accuracy", result.greedy_accuracy, details=details,
               units=units("greedy_accuracy"), chance=result.greedy_chance),
        Metric("clustering", "hungarian_accuracy", result.hungarian_accuracy, details=details,
               units=units("hungarian_accuracy"), chance=result.hungarian_chance),
        Metric("clustering", "nmi", result.nmi, details=details, units=units("nmi")),
        Metric("clustering", "ari", result.ari, details=details, chance=0.0, units=units("ari")),
    ]


CLUSTERING = ProbeSpec(
    name="clustering",
    description="spectral clustering of the test features (|cos| affinity, k = classes) against the labels",
    metrics=(
        MetricSpec("greedy_accuracy", True,
                   "spectral clustering (|cos| affinity, k = classes) scored by the study's greedy cluster-to-class "
                   "matching", chance=CHANCE_PERMUTED),
        MetricSpec("hungarian_accuracy", True,
                   "spectral clustering scored by the best one-to-one cluster-to-class matching (Hungarian)",
                   chance=CHANCE_PERMUTED),
        MetricSpec("nmi", True, "normalised mutual information between spectral clusters and labels"),
        MetricSpec("ari", True, "adjusted Rand index between spectral clusters and labels (0 = chance)",
                   lower=-1.0, chance="0 (its expectation for a partition independent of the labels)"),
    ),
    run=run,
    settings=ClusteringConfig,
    details=ClusteringDetails,
    role="clustering",
    targets=("label",),
)
