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
        for i, (ax, record) in enumerate(zip(axes[0], records)):
            _panel(ax, record, row_labels=i == 0)
        fig.suptitle(f"{encoder} · {dataset}: which transformation? (rows: applied, columns: predicted, "
                     "in the same order)")
        # fixed margins: tight_layout would measure every label, which costs more than the plot
        fig.subplots_adjust(left=1.5 / (side * len(records)), right=0.99, bottom=1.0 / side, top=0.92,
                            wspace=0.1)
        path = directory / f"transformations-{_slug(encoder)}-{_slug(dataset)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _panel(ax, record: "Record", *, row_labels: bool) -> None:
    """One confusion matrix. Labels are plain texts, not ticks: ~80 matplotlib Tick objects per
    axis cost most of the figure's time. Rows are named once (left panel); columns, which keep
    the rows' order, are named by family under each family's block."""
    from pytest_visprobe.report.plots import details_of

    d = details_of(record)
    labels = d.labels
    families = d.label_families or [""] * len(labels)
    counts = np.asarray(d.confusion, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    ax.imshow(shares, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    starts = [0] + [i for i in range(1, len(families)) if families[i] != families[i - 1]] + [len(families)]
    for edge in starts[1:-1]:
        ax.axhline(edge - 0.5, color="white", linewidth=0.6)
        ax.axvline(edge - 0.5, color="white", linewidth=0.6)
    if row_labels:
        for i, label in enumerate(labels):
            ax.text(-0.8, i, label, ha="right", va="center", fontsize=6)
    for begin, end in zip(starts[:-1], starts[1:]):
        ax.text((begin + end - 1) / 2, len(labels) - 0.2, families[begin], ha="right", va="top", rotation=45,
                fontsize=7)
    kind = record.probe.removeprefix("transformation_")
    ax.set_title(f"{kind} probe: top-1 {record.value:.3f} (chance {record.chance or 0:.3f})", fontsize=9)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:60] or "x"
