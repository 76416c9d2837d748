"""RPGD attack success vs ε: one PNG per dataset, Linf and L2 panels, one colour per encoder.

Drawn from the ``rpgd`` success-AUC records, whose details hold the curve (``epsilons``,
``success_rate``); solid lines are untargeted attacks, dashed lines targeted ones. ε = 0 sits
on a linear stretch of a symlog axis, the rest on a log scale, as the ε lists are log-spaced.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_visprobe.report.scorecard import Scorecard

NORMS = (("linf", "L∞"), ("l2", "L2"))


def plot_attack_success(card: "Scorecard", directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from pytest_visprobe.report.plots import details_of

    curves = [(r, details_of(r)) for r in card.records if r.probe == "rpgd" and r.metric.endswith("_success_auc")]
    curves = [(r, d) for r, d in curves if d.epsilons is not None]
    encoders = sorted({r.encoder for r, _ in curves})
    colours = {e: plt.get_cmap("tab10")(i % 10) for i, e in enumerate(encoders)}
    written = []
    for dataset in sorted({r.dataset for r, _ in curves}):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        for ax, (norm, title) in zip(axes, NORMS):
            drawn = False
            for record, d in sorted(curves, key=lambda c: (c[0].encoder, c[1].targeted)):
                if record.dataset != dataset or d.norm != norm:
                    continue
                criterion = "targeted" if d.targeted else "untargeted"
                ax.plot(d.epsilons, d.success_rate, marker="o", markersize=3,
                        color=colours[record.encoder], linestyle="--" if d.targeted else "-",
                        label=f"{record.encoder} · {criterion} (AUC {record.value:.2f})")
                drawn = True
            positive = [e for r, d in curves if r.dataset == dataset and d.norm == norm for e in d.epsilons if e > 0]
            if positive:
                ax.set_xscale("symlog", linthresh=min(positive))
            ax.set_title(f"{title} PGD on {dataset}")
            ax.set_xlabel(f"ε ({title}, pixels in [0, 1])")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(True, alpha=0.3)
            if drawn:
                ax.legend(fontsize=7, loc="upper left")  # curves rise to the right
            else:
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
        axes[0].set_ylabel("attack success rate (lower is more robust)")
        fig.tight_layout()
        path = directory / f"rpgd_success_{_slug(dataset)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "dataset"
