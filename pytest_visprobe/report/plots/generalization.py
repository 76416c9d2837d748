"""Plots of the generalization probes, drawn from scorecard records by the controller.

- few-shot: top-1 vs N per encoder, one panel per dataset, error bars = std over trials.
- similarity: per dataset, the RDM correlation heat-map beside an average-linkage dendrogram on
  1 - r (encoders and, when it ran, the text model), from the matrix stored in record details.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_visprobe.report.scorecard import Scorecard

_SHOT = re.compile(r"^top1_(\d+)shot$")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def plot_fewshot(card: "Scorecard", directory: Path) -> list[Path]:
    """One PNG: few-shot top-1 vs N, a line per encoder, a panel per dataset."""
    import matplotlib.pyplot as plt

    series: dict[str, dict[str, list[tuple[int, float, float]]]] = {}
    chance: dict[str, float] = {}
    for r in card.records:
        match = _SHOT.match(r.metric)
        if r.probe != "fewshot" or not match:
            continue
        series.setdefault(r.dataset, {}).setdefault(r.encoder, []).append(
            (int(match.group(1)), r.value, r.spread or 0.0))
        if r.chance is not None:
            chance[r.dataset] = float(r.chance)
    if not series:
        return []
    datasets = sorted(series)
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for encoder, points in sorted(series[dataset].items()):
            points.sort()
            shots, values, spreads = zip(*points)
            ax.errorbar(shots, values, yerr=spreads, marker="o", capsize=3, label=encoder)
        if dataset in chance:
            ax.axhline(chance[dataset], color="grey", linestyle=":", linewidth=1, label="chance")
        ax.set_xscale("log")
        shots = sorted({n for pts in series[dataset].values() for n, _, _ in pts})
        ax.set_xticks(shots, [str(n) for n in shots])
        ax.minorticks_off()
        ax.set_ylim(0, 1)
        ax.set_xlabel("training images per class (N)")
        ax.set_ylabel("top-1 (mean ± std over trials)")
        ax.set_title(dataset)
        ax.legend(fontsize="small")
    fig.tight_layout()
    path = directory / "fewshot.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _largest_matrix(records) -> tuple[list[str], list[list[float]]] | None:
    from pytest_visprobe.report.plots import details_of

    best = None
    for r in records:
        d = details_of(r)
        if d.names and d.matrix and (best is None or len(d.names) > len(best[0])):
            best = (list(d.names), d.matrix)
    return best


def plot_similarity(card: "Scorecard", directory: Path) -> list[Path]:
    """One PNG per dataset: RDM correlation heat-map and its average-linkage dendrogram."""
    import matplotlib.pyplot as plt
    import numpy as np
    from scipy.cluster.hierarchy import dendrogram

    from pytest_visprobe.kernels.rsa import similarity_linkage

    by_dataset: dict[str, list] = {}
    for r in card.records:
        if r.probe == "similarity":
            by_dataset.setdefault(r.dataset, []).append(r)
    written = []
    for dataset, records in sorted(by_dataset.items()):
        found = _largest_matrix(records)
        if found is None:
            continue
        names, matrix = found
        corr = np.asarray(matrix, dtype=float)
        n = len(names)
        fig, (heat, tree) = plt.subplots(1, 2, figsize=(4.0 + 1.2 * n, 2.6 + 0.5 * n),
                                         gridspec_kw={"width_ratios": [1.1, 1]})
        image = heat.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
        heat.set_xticks(range(n), names, rotation=45, ha="right")
        heat.set_yticks(range(n), names)
        for i in range(n):
            for j in range(n):
                heat.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=8,
                          color="white" if abs(corr[i, j]) > 0.6 else "black")
        fig.colorbar(image, ax=heat, fraction=0.046, pad=0.04, label="Pearson r of RDMs")
        heat.set_title(f"RSA on {dataset}")
        dendrogram(similarity_linkage(names, corr), labels=names, ax=tree, orientation="right",
                   color_threshold=0)
        tree.set_xlabel("1 - r (average linkage)")
        tree.set_title("dendrogram")
        fig.tight_layout()
        path = directory / f"similarity-{_safe(dataset)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
