"""--visprobe-layers end to end: rows per layer, a depth plot, and a second run served by the cache."""

from __future__ import annotations

import shutil

from tests.conftest import REPO

from pytest_visprobe.runner.options import DATASET_OPTION, ENCODER_OPTION, LAYERS_OPTION


def test_all_layers_rows_plot_and_cache(suite):
    shutil.copy(REPO / "examples" / "tiny_cnn.py", suite.pytester.path / "tiny_cnn.py")
    args = (f"{ENCODER_OPTION}=tiny_cnn.py", f"{DATASET_OPTION}=digits", f"{LAYERS_OPTION}=all",
            "suites/test_knn.py", "-k", "k20]")
    result = suite.run(*args)
    result.assert_outcomes(passed=4)  # k-NN (k = 20) on the embedding and each of 3 layers
    card = suite.scorecard()
    knn = {r["encoder"]: r for r in card["records"] if r["probe"] == "knn"}
    assert sorted(knn) == ["tiny_cnn", "tiny_cnn@body.1", "tiny_cnn@body.3", "tiny_cnn@body.5"]
    assert knn["tiny_cnn"]["layer"] is None and knn["tiny_cnn@body.3"]["layer"] == "body.3"
    assert "layers-tiny_cnn.png" in card["plots"]
    assert (suite.pytester.path / "visprobe-report" / "layers-tiny_cnn.png").stat().st_size > 0
    markdown = (suite.pytester.path / "visprobe-report" / "scorecard.md").read_text()
    assert "## Layers" in markdown and "[layers-tiny_cnn.png](layers-tiny_cnn.png)" in markdown
    assert "| body.1 " in markdown
    first = card["provenance"]["features"]
    # train and test of digits: the embedding's pass, and one pass for all three layers
    assert first["computed"] == 2 * (1 + 3)

    again = suite.run(*args)
    again.assert_outcomes(passed=4)
    second = suite.scorecard()
    counters = second["provenance"]["features"]
    assert counters["forward_passes"] == 0 and counters["computed"] == 0 and counters["from_disk"] == 2 * (1 + 3)
    assert {r["encoder"]: r["value"] for r in second["records"] if r["probe"] == "knn"} == \
        {name: r["value"] for name, r in knn.items()}


def test_unknown_layer_stops_the_run_naming_the_layers(suite):
    shutil.copy(REPO / "examples" / "tiny_cnn.py", suite.pytester.path / "tiny_cnn.py")
    result = suite.run(f"{ENCODER_OPTION}=tiny_cnn.py", f"{DATASET_OPTION}=digits", f"{LAYERS_OPTION}=7",
                       "suites/test_knn.py")
    assert result.ret == 4  # a usage error, before any test ran
    result.stderr.fnmatch_lines(["ERROR: --visprobe-layers=7: encoder 'tiny_cnn' has no layer 7*body.1, body.3, body.5*"])
