"""Layer plots (``--visprobe-layers``).

- depth: one PNG per encoder, ``layers-<encoder>.png``: a panel per (probe, metric), a line per
  dataset, layers on the x axis in depth order (``last`` = the encoder's embedding at the right),
  error bars = the records' 95 % intervals.
- CKA between layers: per encoder and dataset, ``layer-cka-<encoder>-<dataset>.png``, the
  ``layer_cka`` probe's layer × layer matrix as a heat-map.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_visprobe.report.scorecard import Scorecard


def depth_plot_name(encoder: str) -> str:
    return f"layers-{re.sub(r'[^A-Za-z0-9_.-]+', '_', encoder)}.png"


def plot_layers(card: "Scorecard", directory: Path) -> list[Path]:
    """A depth plot per encoder with layer records; the paths written."""
    import matplotlib.pyplot as plt

    from pytest_visprobe.report.layers import layer_tables

    written = []
    for table in layer_tables(card):
        panels: dict[tuple[str, str], dict[str, dict]] = {}
        for (probe, dataset, metric), cells in table.rows.items():
            panels.setdefault((probe, metric), {})[dataset] = cells
        cols = min(3, len(panels))
        rows = -(-len(panels) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
        xs = range(len(table.layers))
        for ax, ((probe, metric), by_dataset) in zip(axes.flat, sorted(panels.items())):
            for dataset, cells in sorted(by_dataset.items()):
                points = [(x, cells[layer]) for x, layer in zip(xs, table.layers) if layer in cells]
                x = [p[0] for p in points]
                y = [r.value for _, r in points]
                err = [[max(0.0, r.value - r.interval.low) if r.interval else 0.0 for _, r in points],
                       [max(0.0, r.interval.high - r.value) if r.interval else 0.0 for _, r in points]]
                ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=dataset)
            ax.set_xticks(list(xs), table.layers, rotation=45, ha="right", fontsize="small")
            ax.set_title(f"{probe} · {metric}", fontsize="medium")
            ax.set_xlabel("layer (depth →)")
            ax.legend(fontsize="small")
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.suptitle(f"{table.encoder}: metrics against depth")
        fig.tight_layout()
        path = directory / depth_plot_name(table.encoder)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def plot_layer_cka(card: "Scorecard", directory: Path) -> list[Path]:
    """Per encoder and dataset, the layer × layer CKA heat-maps (linear, and RBF when stored) the
    ``layer_cka`` probe stored, side by side."""
    import matplotlib.pyplot as plt
    import numpy as np

    from pytest_visprobe.report.plots import details_of

    seen: dict[tuple[str, str], object] = {}
    for r in card.records:
        if r.probe == "layer_cka" and r.control_of is None:
            seen.setdefault((r.source_encoder, r.dataset), details_of(r))
    written = []
    for (encoder, dataset), details in sorted(seen.items()):
        panels = [("linear", details.matrix)]
        if getattr(details, "rbf_matrix", None) is not None:
            panels.append(("RBF", details.rbf_matrix))
        k = len(details.layers)
        size = 1.6 + 0.55 * k
        fig, axes = plt.subplots(1, len(panels), figsize=((size + 1.2) * len(panels), size), squeeze=False)
        for ax, (kernel, values) in zip(axes[0], panels):
            matrix = np.asarray(values, dtype=float)
            image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
            ax.set_xticks(range(k), details.layers, rotation=45, ha="right", fontsize="small")
            ax.set_yticks(range(k), details.layers, fontsize="small")
            if k <= 16:
                for i in range(k):
                    for j in range(k):
                        ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize="x-small",
                                color="white" if matrix[i, j] < 0.6 else "black")
            fig.colorbar(image, ax=ax, label=f"{kernel} CKA ({details.estimator})")
        fig.suptitle(f"{encoder} · {dataset}: CKA between layers (n = {details.n_images})", fontsize="medium")
        fig.tight_layout()
        path = directory / f"layer-cka-{re.sub(r'[^A-Za-z0-9_.-]+', '_', encoder)}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', dataset)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
