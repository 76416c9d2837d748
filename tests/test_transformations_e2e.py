"""The transformation suite end to end through pytester: records, per-family details, the
confusion-matrix PNG, the dataset option, caching and determinism across sessions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pytest_visprobe.runner.options import ENCODER_OPTION, TRANSFORMATIONS_DATASET_OPTION
from pytest_visprobe.datasets.transformations import FAMILIES, list_transformations

SUITE = "suites/test_transformations.py"
METRICS = {"fine_grained_top1", "grouped_top1", "generalization_top1"}


def test_suite_records_three_tasks_per_probe_with_details_and_a_confusion_plot(suite):
    args = (f"{ENCODER_OPTION}=pooled.py", f"{TRANSFORMATIONS_DATASET_OPTION}=shapes", SUITE, "-v")
    result = suite.run(*args, limit=40)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_transformation_linear_probe?pooled-shapes? PASSED*",
                                 "*test_transformation_mlp_probe?pooled-shapes? PASSED*"])
    card = suite.scorecard()
    records = {(r["probe"], r["metric"]): r for r in card["records"]}
    assert set(records) == {(p, m) for p in ("transformation_linear", "transformation_mlp") for m in METRICS}
    views = {d["name"]: d for d in card["datasets"]}["shapes+transformations"]
    assert views["splits"] == {"train": 40 * 3, "test": 40 * 3}  # 40 source scenes, 3 views each
    names = [t.name for t in list_transformations()]
    for (probe, metric), record in records.items():
        assert record["dataset"] == "shapes" and record["nodeid"].startswith(SUITE)
        details = record["details"]
        assert 0.0 <= record["value"] <= 1.0 and set(details["per_family_top1"]) <= set(FAMILIES)
        confusion = np.array(details["confusion"])
        assert np.trace(confusion) / confusion.sum() == pytest.approx(record["value"])
        if metric == "fine_grained_top1":
            assert details["labels"] == names and confusion.sum() == 120
    png = suite.pytester.path / "visprobe-report" / "transformations-pooled-shapes.png"
    assert card["plots"] == [png.name]
    with Image.open(png) as image:
        assert image.format == "PNG" and min(image.size) > 300
    # a second session reads the views' features from the cache and gets the same numbers
    # (the MLP probe only: it is the quick one, and the linear fits are deterministic too)
    again = suite.run(*args, "-k", "mlp", limit=40)
    again.stdout.fnmatch_lines(["feature sets: 0 computed, 2 from cache*"])
    assert {(p, m): r["value"] for (p, m), r in records.items() if p == "transformation_mlp"} == {
        (r["probe"], r["metric"]): r["value"] for r in suite.scorecard()["records"]}


def test_default_sources_are_photos_and_shapes(suite):
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", SUITE, "--collect-only", "-q")
    collected = {line.split("::")[1] for line in result.outlines if line.startswith(SUITE + "::")}
    assert collected == {f"test_transformation_{kind}_probe[pooled-{source}]"
                         for kind in ("linear", "mlp") for source in ("photos", "shapes")}


def test_unknown_source_dataset_is_a_usage_error(suite):
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", f"{TRANSFORMATIONS_DATASET_OPTION}=photo", SUITE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: {TRANSFORMATIONS_DATASET_OPTION}=photo: unknown dataset 'photo'. Did you mean 'photos'?*"])
