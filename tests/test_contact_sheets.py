"""Contact sheets (what each probe saw): every sheet-drawing probe draws one, linked from the
Markdown; the images chosen are the worst and best by a per-image score computed independently
here; boxes and masks land on the pixels they should."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytest_visprobe.kernels import examples as ex
from pytest_visprobe.runner.options import ENCODER_OPTION, NO_SHEETS_OPTION

SHEET_PROBES = ("label_probe", "segmentation_probe", "detection_probe", "region_label_probe", "transformation_linear")
TESTS = ("suites/test_semantics.py::test_label_probe", "suites/test_localization.py::test_semantic_segmentation",
         "suites/test_localization.py::test_detection", "suites/test_localization.py::test_region_label",
         "suites/test_transformations.py::test_transformation_linear_probe")


#: the quick profile on 32 px shapes with one-setting, short fits: the sheets, not the numbers, are tested
FAST_PROFILE = """
extends = "quick"
[datasets]
label = ["shapes"]
transformations = ["shapes"]
localization = ["shapes"]
[dataset_options.shapes]
n_train = 40
n_test = 16
image_size = 32
[probes.label_probe]
weight_decays = [0.001]
max_iter = 30
[probes.region_label_probe]
linear = {weight_decays = [0.001], max_iter = 30}
[probes.transformation_linear]
per_image = 1
train_per_transformation = 3
test_per_transformation = 2
linear = {weight_decays = [0.001], max_iter = 30}
[probes.segmentation_probe]
epochs = 3
[probes.detection_probe]
epochs = 3
"""


def test_every_sheet_probe_draws_a_sheet_linked_from_the_markdown(suite):
    (suite.pytester.path / "fast.toml").write_text(FAST_PROFILE)
    result = suite.run(f"{ENCODER_OPTION}=conv.py", *TESTS, "--visprobe-profile=fast.toml", "-W", "error::UserWarning",
                       limit=None)
    result.assert_outcomes(passed=5)
    report = suite.pytester.path / "visprobe-report"
    markdown = (report / "scorecard.md").read_text()
    runs = {(r["probe"], r["encoder"], r["dataset"]) for r in suite.scorecard()["records"]}
    assert runs == {(probe, "conv", "shapes") for probe in SHEET_PROBES}
    for probe, encoder, dataset in runs:
        name = f"sheets/{probe}-{encoder}-{dataset}.png"
        assert (report / name).read_bytes().startswith(b"\x89PNG"), name
        assert f"]({name})" in markdown
    assert "## What the probes saw" in markdown
    assert "sheets" not in suite.scorecard()  # the JSON holds no images, nor their names

    # a later run into the same folder keeps only its own sheets: no stale image beside the Markdown
    suite.run(f"{ENCODER_OPTION}=conv.py", TESTS[0], "--visprobe-profile=fast.toml", limit=None).assert_outcomes(passed=1)
    [kept] = {r["probe"] for r in suite.scorecard()["records"]}
    assert sorted(p.name for p in (report / "sheets").glob("*.png")) == [f"{kept}-conv-shapes.png"]

    suite.run(f"{ENCODER_OPTION}=conv.py", TESTS[0], "--visprobe-profile=fast.toml", NO_SHEETS_OPTION,
              "--visprobe-report=off", limit=None).assert_outcomes(passed=1)
    assert not (suite.pytester.path / "off" / "sheets").exists()
    assert "What the probes saw" not in (suite.pytester.path / "off" / "scorecard.md").read_text()


# ----------------------------------------------------------------------------- the choice


def reference_choice(scores, k):
    """Worst k (lowest first) and best k of the rest (highest first), ties to the lower index."""
    order = sorted((i for i in range(len(scores)) if not np.isnan(scores[i])), key=lambda i: (scores[i], i))
    worst = order[:min(k, (len(order) + 1) // 2)]
    rest = [i for i in order if i not in worst]
    best = sorted(rest, key=lambda i: (-scores[i], i))[:k]
    return worst, best


@pytest.mark.parametrize("n", [3, 11, 40])
def test_worst_and_best_by_margin_match_a_direct_computation(n):
    from scipy.special import softmax

    rng = np.random.default_rng(n)
    logits, truth = rng.normal(size=(n, 5)), rng.integers(0, 5, n)
    probs = softmax(logits, axis=1)
    by_hand = np.array([probs[i, truth[i]] - max(p for c, p in enumerate(probs[i]) if c != truth[i])
                        for i in range(n)])
    scores = ex.margins(torch.as_tensor(logits), truth)
    np.testing.assert_allclose(scores, by_hand, atol=1e-6)
    assert ((scores > 0) == (logits.argmax(1) == truth)).all()  # positive iff right
    worst, best = ex.worst_and_best(scores, 6)
    ref_worst, ref_best = reference_choice(by_hand, 6)
    assert worst.tolist() == ref_worst and best.tolist() == ref_best
    assert np.array_equal(worst, np.argsort(by_hand)[:len(worst)])


def test_worst_and_best_skip_unranked_images_and_break_ties_by_index():
    scores = np.array([0.5, np.nan, 0.5, 0.0, 1.0, 0.5])
    worst, best = ex.worst_and_best(scores, 2)
    assert worst.tolist() == [3, 0] and best.tolist() == [4, 2]


def test_image_miou_matches_scikit_learn_per_image():
    from sklearn.metrics import jaccard_score

    from pytest_visprobe.kernels.segmentation import per_image_counts

    rng = np.random.default_rng(0)
    pred, target = rng.integers(0, 4, (6, 9, 9)), rng.integers(0, 3, (6, 9, 9))
    pred[2] = target[2]  # one perfect image
    inter, union = per_image_counts(torch.as_tensor(pred), torch.as_tensor(target), 4)
    scores = ex.image_miou(inter, union)
    by_hand = [jaccard_score(t.ravel(), p.ravel(), labels=np.union1d(t, p), average="macro")
               for p, t in zip(pred, target)]
    np.testing.assert_allclose(scores, by_hand)
    assert scores[2] == 1.0 and ex.worst_and_best(scores, 1)[1].tolist() == [2]


def test_detection_scores_count_objects_found_by_as_many_top_boxes():
    from torchvision.ops import box_iou

    gt_boxes = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([[5, 5, 15, 15]], np.float32),
                np.zeros((0, 4), np.float32)]
    gt_labels = [np.array([0, 1]), np.array([2]), np.array([], np.int64)]
    preds = [  # image 0: one hit (box 1), a wrong-class hit on box 0, a higher-scoring miss
        {"boxes": np.array([[20, 20, 30, 31], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32),
         "scores": np.array([0.9, 0.5, 0.95]), "labels": np.array([1, 2, 0])},
        {"boxes": np.array([[5, 5, 15, 15], [0, 0, 1, 1]], np.float32),  # image 1: found
         "scores": np.array([0.8, 0.1]), "labels": np.array([2, 2])},
        {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0), "labels": np.zeros(0, np.int64)}]
    scores = ex.detection_scores(preds, gt_boxes, gt_labels)

    def by_hand(pred, boxes, labels):  # the top len(labels) boxes, each claiming its best free match
        if len(labels) == 0:
            return np.nan
        top = np.argsort(-pred["scores"])[:len(labels)]
        iou = box_iou(torch.as_tensor(pred["boxes"][top]), torch.as_tensor(boxes)).numpy()
        free, found = set(range(len(labels))), 0
        for i, j in enumerate(top):
            options = [g for g in free if labels[g] == pred["labels"][j] and iou[i, g] >= 0.5]
            if options:
                free.remove(max(options, key=lambda g: iou[i, g]))
                found += 1
        return found / len(labels)

    expected = [by_hand(p, b, l) for p, b, l in zip(preds, gt_boxes, gt_labels)]
    np.testing.assert_allclose(scores, expected)
    assert scores[0] == 0.5 and scores[1] == 1.0 and np.isnan(scores[2])


def test_region_scores_are_each_images_share_of_objects_named_right():
    from pytest_visprobe.probes.regions import region_examples

    image_of_box = np.array([0, 0, 0, 2, 2, 3])
    predicted, truth = np.array([1, 2, 3, 0, 0, 4]), np.array([1, 0, 3, 0, 1, 4])
    examples = region_examples(predicted, (predicted == truth).astype(float), image_of_box, 4)
    expected = [np.mean([predicted[b] == truth[b] for b in np.flatnonzero(image_of_box == i)])
                if (image_of_box == i).any() else np.nan for i in range(4)]
    np.testing.assert_allclose(examples.scores, expected)
    assert [p.tolist() for p in examples.predict(np.array([2, 1]))] == [[0, 0], []]


# ----------------------------------------------------------------------------- drawing


def test_a_box_is_painted_on_its_edge_pixels_only():
    from pytest_visprobe.report.plots.sheets import draw_box, fit_panel

    image = np.zeros((32, 32, 3), np.uint8)
    panel, scale = fit_panel(image, side=96)  # 3x
    colour = np.array([10, 200, 30], np.uint8)
    draw_box(panel, np.array([4, 8, 20, 16]), scale, colour, thickness=2)
    # x 12..59, y 24..47 on the panel: edges two pixels thick, the inside untouched
    for y, x in [(24, 30), (25, 30), (47, 30), (46, 30), (35, 12), (35, 13), (35, 59), (35, 58)]:
        assert panel[y, x].tolist() == colour.tolist(), (y, x)
    for y, x in [(23, 30), (26, 30), (35, 14), (35, 57), (35, 60), (48, 30), (35, 30)]:
        assert panel[y, x].tolist() == [0, 0, 0], (y, x)


def test_a_sheet_cell_draws_target_and_predicted_boxes_and_masks_where_they_are():
    from types import SimpleNamespace

    from pytest_visprobe.datasets.base import ArrayImages, Split
    from pytest_visprobe.probes.examples import Examples
    from pytest_visprobe.report.plots.sheets import GAP, PALETTE, SIDE, cell

    mask = np.zeros((1, 16, 16), np.int64)
    mask[0, 8:, :8] = 2  # class 1, bottom left
    test = Split(images=ArrayImages(np.full((1, 16, 16, 3), 255, np.uint8)), boxes=[np.array([[0, 0, 8, 8]], np.float32)],
                 box_labels=[np.array([3])], semantic_masks=mask)
    dataset = SimpleNamespace(split=lambda name: test, class_names=["a", "b", "c", "d"])
    step = SIDE + GAP // 2  # panel j starts at x = j * step; 6 panel px per image px
    boxes = Examples("boxes", np.array([1.0]), "found", lambda rows: [])
    strip, caption = cell(boxes, dataset, 0, (np.array([[8, 8, 16, 16]]), np.array([0])))
    assert caption == "#0 found 1 of 1"
    assert strip[0, step + 20].tolist() == PALETTE[3].tolist()  # target: top edge of the top-left box
    assert strip[60, 2 * step + 48].tolist() == PALETTE[0].tolist()  # prediction: left edge, bottom right
    assert strip[20, 2 * step + 20].tolist() == [255, 255, 255]  # ... and nothing where it is not
    masks = Examples("mask", np.array([0.5]), "IoU", lambda rows: [])
    predicted = np.zeros((16, 16), np.int64)
    predicted[:8, 8:] = 1  # class 0, top right
    strip, _ = cell(masks, dataset, 0, predicted)
    blend = lambda c: np.round(0.4 * 255 + 0.6 * PALETTE[c].astype(float)).tolist()
    assert strip[80, step + 10].tolist() == blend(1) and strip[10, step + 80].tolist() == [255] * 3
    assert strip[10, 2 * step + 80].tolist() == blend(0) and strip[80, 2 * step + 10].tolist() == [255] * 3


def test_a_sheet_survives_the_report_serialization_xdist_uses(tmp_path):
    """Workers send reports to the controller as JSON-able dicts (pytest_report_to_serializable):
    the sheet rides on the report as base64 text, and the controller alone writes the file."""
    import base64
    import json

    from pytest_visprobe.datasets import load_dataset
    from pytest_visprobe.probes.examples import Examples
    from pytest_visprobe.report.plots.sheets import sheet_png

    dataset = load_dataset("digits", seed=0, limit=20)
    n = len(dataset.split("test"))
    png = sheet_png(Examples("label", np.linspace(-1, 1, n), "margin", lambda rows: list(rows % 10)), dataset, "t")
    report = pytest.TestReport("t.py::t", ("t.py", 0, "t"), {}, "passed", None, "call", [])
    report.visprobe = {"records": [], "encoders": {}, "datasets": {}, "sheets": {"a.png": base64.b64encode(png).decode()}}
    back = pytest.TestReport._from_json(json.loads(json.dumps(report._to_json())))
    assert base64.b64decode(back.visprobe["sheets"]["a.png"]) == png and png.startswith(b"\x89PNG")
