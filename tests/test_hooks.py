"""The hooks in pytest_visprobe/hookspecs.py, each used as its docstring shows, from a conftest.py."""

from __future__ import annotations

import json
import textwrap

from readme import readme_example
from pytest_visprobe.runner.options import DATASET_OPTION, ENCODER_OPTION, LIST_OPTION

CONFTEST = readme_example("conftest-hooks")


def test_hooks_add_an_encoder_kind_a_dataset_kind_and_see_the_scorecard(suite):
    root = suite.pytester.path
    (root / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    result = suite.run(f"{ENCODER_OPTION}=pool:4", f"{DATASET_OPTION}=stripes:20", "suites/test_semantics.py",
                       "-k", "label_probe", limit=None)
    result.assert_outcomes(passed=1)
    (record, selectivity) = sorted(suite.scorecard()["records"], key=lambda r: r["metric"])[::-1]
    assert (record["encoder"], record["dataset"], record["metric"]) == ("pool-4", "stripes", "top1")
    assert record["value"] == 1.0  # pooled 4x4 stripes are linearly separable by orientation
    assert selectivity["metric"] == "selectivity"
    uploaded = json.loads((root / "visprobe-report" / "uploaded.json").read_text())
    assert uploaded == {"records": 2, "from": "scorecard.json"}


def test_a_registered_kind_is_validated_and_a_typo_says_what_exists(suite):
    (suite.pytester.path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    typo = suite.run(f"{ENCODER_OPTION}=poll:4", "suites/test_semantics.py", limit=None)
    assert typo.ret != 0
    typo.stderr.fnmatch_lines(["*--encoder=poll:4: unknown prefix 'poll'. Did you mean pool:4?*"])
    data = suite.run(f"{ENCODER_OPTION}=pool:4", f"{DATASET_OPTION}=stripe:20", "suites/test_semantics.py", limit=None)
    assert data.ret != 0
    data.stderr.fnmatch_lines(["*unknown kind 'stripe'. Did you mean stripes:20?*"])


def test_hook_registrations_are_listed(suite):
    (suite.pytester.path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    listing = suite.run(LIST_OPTION, limit=None)
    assert listing.ret == 0
    listing.stdout.fnmatch_lines(["stripes:N -- N images per class of horizontal or vertical stripes",
                                  "*encoder kinds*", "*", "*", "*", "pool:N -- N x N average-pooled pixels"])
