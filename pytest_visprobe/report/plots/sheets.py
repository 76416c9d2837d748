"""Contact sheets: the worst and best test images of one probe run, image, target and prediction
side by side (VisBench's ``show``), boxes and masks drawn.

Panels are composed in NumPy (nearest-neighbour scaling, box edges and mask overlays painted into
the pixels) into one canvas that matplotlib shows once with the captions, so a sheet costs one
``imshow`` and a few text labels. ``sheet_png`` returns the PNG's bytes: the recorder attaches
them to the test's report and the controller writes the file (also under pytest-xdist).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_visprobe.kernels.examples import worst_and_best

if TYPE_CHECKING:
    from pytest_visprobe.datasets.base import Dataset
    from pytest_visprobe.probes.examples import Examples

#: examples shown of each end: up to 2 · K images per sheet
K = 6
SIDE = 96  # panel side in pixels
GAP = 4
CAPTION = 26  # pixels under each cell for its caption
HEADER = 34
#: matplotlib's tab10, as uint8: class c is drawn in PALETTE[c % 10]
PALETTE = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]], np.uint8)
RIGHT, WRONG = np.array([0, 200, 0], np.uint8), np.array([230, 0, 0], np.uint8)
#: what each kind's panels show, left to right (the sheet's header)
PANELS = {"label": "image; true → predicted class, score", "mask": "image | target | prediction",
          "boxes": "image | target | top predicted boxes", "regions": "image | target | named right (green) or wrong (red)",
          "transformation": "source | view; applied → predicted"}
N_PANELS = {"label": 1, "mask": 3, "boxes": 3, "regions": 3, "transformation": 2}


def scaled(array: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """``array [H, W, ...]`` resampled (nearest) so its longer side is ``side``; and the scale."""
    h, w = array.shape[:2]
    scale = side / max(h, w)
    rows = np.minimum((np.arange(max(1, round(h * scale))) / scale).astype(int), h - 1)
    cols = np.minimum((np.arange(max(1, round(w * scale))) / scale).astype(int), w - 1)
    return array[rows][:, cols], scale


def fit_panel(image: np.ndarray, side: int = SIDE) -> tuple[np.ndarray, float]:
    """``image [H, W(, 3)]`` scaled (nearest) so its longer side is ``side``, padded white to
    ``side × side`` at the top left; returns the panel and the scale (panel px per image px)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    small, scale = scaled(image[..., :3], side)
    panel = np.full((side, side, 3), 255, np.uint8)
    panel[:small.shape[0], :small.shape[1]] = small
    return panel, scale


def draw_box(panel: np.ndarray, box: np.ndarray, scale: float, colour: np.ndarray, thickness: int = 2) -> None:
    """Paint the edges of an xyxy box (image pixels) into ``panel``, in place."""
    h, w = panel.shape[:2]
    x0, y0, x1, y1 = (np.asarray(box, np.float64) * scale).round().astype(int)
    x0, x1 = np.clip([x0, x1 - 1], 0, w - 1)
    y0, y1 = np.clip([y0, y1 - 1], 0, h - 1)
    t = thickness
    panel[y0:y0 + t, x0:x1 + 1] = colour
    panel[max(y1 - t + 1, 0):y1 + 1, x0:x1 + 1] = colour
    panel[y0:y1 + 1, x0:x0 + t] = colour
    panel[y0:y1 + 1, max(x1 - t + 1, 0):x1 + 1] = colour


def overlay_mask(panel: np.ndarray, mask: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """``panel`` with every non-background pixel of ``mask`` (0 = background, c+1 = class c)
    blended with its class's colour; the mask is scaled as the image was (``fit_panel``)."""
    labels = np.zeros(panel.shape[:2], np.int64)
    small, _ = scaled(np.asarray(mask, np.int64), panel.shape[0])
    labels[:small.shape[0], :small.shape[1]] = small
    out = panel.copy()
    on = labels > 0
    colours = PALETTE[(labels[on] - 1) % len(PALETTE)].astype(np.float64)
    out[on] = ((1 - alpha) * panel[on] + alpha * colours).round().astype(np.uint8)
    return out


def cell(examples: "Examples", dataset: "Dataset", row: int, predicted: Any) -> tuple[np.ndarray, str]:
    """One example's panels side by side, and its caption."""
    test = dataset.split("test")
    names = dataset.class_names
    image, scale = fit_panel(test.images.get([row])[0])
    score = examples.scores[row]
    kind = examples.kind
    if kind == "label":
        panels = [image]
        caption = f"{names[test.labels[row]]} → {names[int(predicted)]}\n{score:+.2f}"
    elif kind == "transformation":
        source_images = test.images.source
        source, _ = fit_panel(source_images.get([int(test.images.rows[row])])[0])
        panels = [source, image]
        caption = f"{names[test.labels[row]]} → {names[int(predicted)]}\n{score:+.2f}"
    elif kind == "mask":
        panels = [image, overlay_mask(image, test.semantic_masks[row]), overlay_mask(image, predicted)]
        caption = f"IoU {score:.2f}"
    elif kind == "boxes":
        target, prediction = image.copy(), image.copy()
        for box, label in zip(test.boxes[row], test.box_labels[row]):
            draw_box(target, box, scale, PALETTE[int(label) % len(PALETTE)])
        pred_boxes, pred_labels = predicted
        for box, label in zip(pred_boxes, pred_labels):
            draw_box(prediction, box, scale, PALETTE[int(label) % len(PALETTE)])
        panels = [image, target, prediction]
        n = len(test.box_labels[row])
        caption = f"found {round(score * n)} of {n}"
    elif kind == "regions":
        target, judged = image.copy(), image.copy()
        for box, label, guess in zip(test.boxes[row], test.box_labels[row], predicted):
            draw_box(target, box, scale, PALETTE[int(label) % len(PALETTE)])
            draw_box(judged, box, scale, RIGHT if int(guess) == int(label) else WRONG)
        panels = [image, target, judged]
        n = len(test.box_labels[row])
        caption = f"named {round(score * n)} of {n} right"
    else:
        raise ValueError(f"unknown examples kind {kind!r}")
    gap = np.full((SIDE, GAP // 2, 3), 255, np.uint8)
    strip = panels[0]
    for panel in panels[1:]:
        strip = np.concatenate([strip, gap, panel], axis=1)
    return strip, f"#{row} {caption}"


def sheet_png(examples: "Examples", dataset: "Dataset", title: str, k: int = K) -> bytes | None:
    """The contact sheet as PNG bytes: worst on the left, best on the right, one example per row
    (label sheets three per row); None when no test image could be ranked."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    dataset = examples.dataset if examples.dataset is not None else dataset
    worst, best = worst_and_best(examples.scores, k)
    if len(worst) + len(best) == 0:
        return None
    rows = np.concatenate([worst, best])
    predicted = examples.predict(rows)
    cells = [cell(examples, dataset, int(r), p) for r, p in zip(rows, predicted)]
    per_row = max(1, 3 // N_PANELS[examples.kind])
    cell_w = cells[0][0].shape[1]
    lines = -(-max(len(worst), len(best), 1) // per_row)
    group_w = per_row * (cell_w + GAP) - GAP
    width = 2 * group_w + 4 * GAP
    height = HEADER + lines * (SIDE + CAPTION)
    canvas = np.full((height, width, 3), 255, np.uint8)
    labels = []
    for group, (start, chosen) in enumerate(((0, worst), (len(worst), best))):
        x_group = group * (group_w + 4 * GAP)
        for j in range(len(chosen)):
            strip, caption = cells[start + j]
            x = x_group + (j % per_row) * (cell_w + GAP)
            y = HEADER + (j // per_row) * (SIDE + CAPTION)
            canvas[y:y + SIDE, x:x + strip.shape[1]] = strip
            labels.append((x, y + SIDE + 1, caption))
    dpi = 100
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    ax.text(2, 2, f"{title} · ranked by {examples.score}", fontsize=6, va="top", ha="left")
    ax.text(2, 14, f"worst ({PANELS[examples.kind]})", fontsize=6, va="top", ha="left", color="#b00000")
    ax.text(group_w + 4 * GAP, 14, "best", fontsize=6, va="top", ha="left", color="#006000")
    for x, y, caption in labels:
        ax.text(x, y, caption, fontsize=5.5, va="top", ha="left")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()
