"""A probe declared entirely outside the package, through the public API only, is a first-class probe:
listed, configured by a profile file, gated by a thresholds rule and a baseline, and reported in
scorecard.json, scorecard.md and its own plot."""

from __future__ import annotations

import json
import textwrap

from readme import readme_example
from pytest_visprobe.runner.options import (
    BASELINE_OPTION,
    BLESS_OPTION,
    ENCODER_OPTION,
    LIST_OPTION,
    PROFILE_OPTION,
)

#: the user's conftest.py: a nearest-class-mean probe with a setting, typed details and a plot
CONFTEST = readme_example("conftest-probe")

SUITE = readme_example("suite-probe")

PROFILE = '''
extends = "quick"
description = "quick, digits only, shrunk centroids"

[datasets]
label = ["digits"]

[probes.nearest_centroid]
shrink = 0.25
'''


def _project(suite):
    root = suite.pytester.path
    (root / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (root / "test_centroid.py").write_text(textwrap.dedent(SUITE))
    (root / "mine.toml").write_text(textwrap.dedent(PROFILE))
    return root


def test_an_outside_probe_is_listed_with_its_metrics_and_profile_settings(suite):
    _project(suite)
    result = suite.run(LIST_OPTION, f"{PROFILE_OPTION}=mine.toml", limit=None)
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "nearest_centroid [[]role label; needs label[]] -- the nearest class mean*",
        "    top1 (higher is better; chance: 1/K for K classes): nearest-class-mean top-1",
        "    settings: shrink=0.25",
    ])
    default = suite.run(LIST_OPTION, limit=None)
    default.stdout.fnmatch_lines(["nearest_centroid*", "*", "    settings: shrink=0.0"])


def test_an_outside_probe_is_gated_and_reported_like_a_builtin(suite):
    root = _project(suite)
    args = (f"{ENCODER_OPTION}=pooled.py", f"{PROFILE_OPTION}=mine.toml", "test_centroid.py")
    blessed = suite.run(*args, f"{BASELINE_OPTION}=accepted.json", BLESS_OPTION)
    blessed.assert_outcomes(passed=1)
    card = suite.scorecard()
    (record,) = card["records"]
    assert (record["probe"], record["dataset"], record["metric"]) == ("nearest_centroid", "digits", "top1")
    assert record["details"] == {"n_test": 150, "shrink": 0.25}  # the profile's setting reached the probe
    assert record["chance"] == 0.1 and record["interval"]["method"] == "bootstrap" and record["samples"]
    assert 0.5 < record["value"] <= 1.0  # 6×6 pooled pixels name most digits
    assert card["plots"] == ["nearest_centroid.png"] and (root / "visprobe-report" / "nearest_centroid.png").is_file()
    markdown = (root / "visprobe-report" / "scorecard.md").read_text()
    assert "| nearest_centroid | digits    | top1     |" in markdown and "![nearest_centroid](nearest_centroid.png)" in markdown

    # the same run against its own baseline passes; a rule in visprobe_thresholds.toml is honoured
    (root / "visprobe_thresholds.toml").write_text(
        '[[threshold]]\nprobe = "nearest_centroid"\nmetric = "top1"\nvalue = 0.999\n')
    gated = suite.run(*args, f"{BASELINE_OPTION}=accepted.json")
    gated.assert_outcomes(failed=1)
    gated.stdout.fnmatch_lines(["*pooled · nearest_centroid.top1 on digits: obtained 0.*, expected >= 0.9990 "
                                "(higher is better). The threshold is set in *visprobe_thresholds.toml (rule 1)*"])
    assert "baseline" not in gated.stdout.str().split("expected >= 0.9990")[1].split("\n")[0]

    # a baseline that was better fails the comparison, by the metric's declared direction
    (root / "visprobe_thresholds.toml").unlink()
    accepted = json.loads((root / "accepted.json").read_text())
    accepted["records"][0].update(value=1.0, samples=None, interval=None)
    (root / "accepted.json").write_text(json.dumps(accepted))
    regressed = suite.run(*args, f"{BASELINE_OPTION}=accepted.json")
    regressed.assert_outcomes(failed=1)
    regressed.stdout.fnmatch_lines(["*pooled · nearest_centroid.top1 on digits: obtained 0.*, baseline 1.0000 "
                                    "− tolerance 0.02 = 0.9800 (higher is better)*"])


def test_an_unknown_probe_in_a_suite_or_profile_is_a_usage_error(suite):
    root = _project(suite)
    (root / "test_typo.py").write_text(textwrap.dedent(SUITE).replace('visprobe_probe("nearest_centroid")',
                                                                        'visprobe_probe("nearest_centroids")'))
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", "test_typo.py")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*unknown probe 'nearest_centroids'. Did you mean 'nearest_centroid'?*"])
    (root / "bad.toml").write_text('extends = "quick"\n[probes.nearest_centroid]\nshrinkage = 0.5\n')
    bad = suite.run(f"{ENCODER_OPTION}=pooled.py", f"{PROFILE_OPTION}=bad.toml", "test_centroid.py")
    assert bad.ret != 0
    bad.stderr.fnmatch_lines(["*profile 'bad' (*bad.toml extends *quick.toml): probes.nearest_centroid.shrinkage: "
                              "Extra inputs are not permitted*"])
