"""Confusion matrices of the fine-grained transformation probes, one PNG per encoder × dataset.

Rows are the applied transformations, columns the predicted ones, each row normalised to the
share of its views; lines separate the families, so cross-family mistakes stand out from
confusions between siblings (e.g. two blurs).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pytest_visprobe.report.scorecard import Record, Scorecard

PROBES = ("transformation_linear", "transformation_mlp")


def plot_confusion(card: "Scorecard", directory: Path) -> list[Path]:
    """``transformations-<encoder>-<dataset>.png``: one panel per probe (linear, MLP)."""
    import matplotlib.pyplot as plt

    from pytest_visprobe.report.plots import details_of

    groups: dict[tuple[str, str], list["Record"]] = {}
    for record in card.records:
        if record.probe in PROBES and record.metric == "fine_grained_top1" and details_of(record).confusion:
            groups.setdefault((record.encoder, record.dataset), []).append(record)
    written = []
    for (encoder, dataset), records in sorted(groups.items()):
        records.sort(key=lambda r: PROBES.index(r.probe))
        n = len(details_of(records[0]).labels)
        side = max(5.0, 0.16 * n + 2.0)
        fig, axes = plt.subplots(1, len(records), figsize=(side * len(records), side), squeeze=False)
        for ax, record in zip(axes[0], records):
            _panel(ax, record)
        fig.suptitle(f"{encoder} · {dataset}: which transformation? (rows: applied, columns: predicted)")
        # fixed margins for the tick labels: tight_layout measures ~80 labels and costs seconds
        fig.subplots_adjust(left=1.5 / (side * len(records)), right=0.99, bottom=1.5 / side, top=0.92,
                            wspace=1.6 / side)
        path = directory / f"transformations-{_slug(encoder)}-{_slug(dataset)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _panel(ax, record: "Record") -> None:
    from pytest_visprobe.report.plots import details_of

    d = details_of(record)
    labels = d.labels
    families = d.label_families or [""] * len(labels)
    counts = np.asarray(d.confusion, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    ax.imshow(shares, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=90, fontsize=6)
    ax.set_yticks(ticks, labels, fontsize=6)
    for edge in [i - 0.5 for i in range(1, len(families)) if families[i] != families[i - 1]]:
        ax.axhline(edge, color="white", linewidth=0.6)
        ax.axvline(edge, color="white", linewidth=0.6)
    kind = record.probe.removeprefix("transformation_")
    ax.set_title(f"{kind} probe: top-1 {record.value:.3f} (chance {record.chance or 0:.3f})", fontsize=9)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:60] or "x"
