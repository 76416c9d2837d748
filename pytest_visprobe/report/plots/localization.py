"""Localization vs semantics, side by side: one bar group per encoder, one PNG per dataset.

Semantic metrics (region label top-1, region attribute mAP) on the left of each group in blue,
localization metrics (mIoU, box mAP and AP50, mask mAP) on the right in orange, so an encoder
that knows *what* but not *where* shows tall blue and short orange bars.
"""

from __future__ import annotations

import re
from pathlib import Path

#: (probe, metric, label, is_semantic) in drawing order
METRICS = (
    ("region_label_probe", "top1", "region label top-1", True),
    ("region_attribute_probe", "mAP", "region attribute mAP", True),
    ("segmentation_probe", "mIoU", "segmentation mIoU", False),
    ("detection_probe", "AP50", "box AP50", False),
    ("detection_probe", "mAP", "box mAP", False),
    ("instance_segmentation_probe", "mask_mAP", "mask mAP", False),
)


PROBES = {m[0] for m in METRICS}


def encoders_probed(values: dict, dataset: str) -> list[str]:
    """Encoders with a localization record on ``dataset``: others (e.g. semantic controls) get no bars."""
    return sorted({e for e, d, p, _ in values if d == dataset and p in PROBES})


def plot_localization(card, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    values = {(r.encoder, r.dataset, r.probe, r.metric): r.value for r in card.records}
    written = []
    for dataset in sorted({d for _, d, p, _ in values if p in PROBES}):
        encoders = encoders_probed(values, dataset)
        shown = [m for m in METRICS if any((e, dataset, m[0], m[1]) in values for e in encoders)]
        width = 0.8 / len(shown)
        fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(encoders) + 2), 3.6))
        for j, (probe, metric, label, semantic) in enumerate(shown):
            xs = [i - 0.4 + width * (j + 0.5) for i in range(len(encoders))]
            ys = [values.get((e, dataset, probe, metric), float("nan")) for e in encoders]
            shade = 0.45 + 0.5 * j / max(1, len(shown) - 1)
            colour = plt.cm.Blues(shade) if semantic else plt.cm.Oranges(shade)
            ax.bar(xs, ys, width=width, color=colour, label=label)
        ax.set_xticks(range(len(encoders)), encoders)
        ax.set_ylim(0, 1)
        ax.set_ylabel("score")
        ax.set_title(f"semantics (blue) vs localization (orange) on {dataset}")
        ax.legend(fontsize=7, ncol=2, loc="upper right")
        fig.tight_layout()
        path = directory / f"localization-{re.sub(r'[^A-Za-z0-9_.-]+', '_', dataset)[:60]}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
