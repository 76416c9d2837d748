"""CI gating end to end through pytester: preflight, bless, paired baselines, step summary, junit, xdist."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from pytest_visprobe.runner.options import BASELINE_OPTION, BLESS_OPTION, DATASET_OPTION, ENCODER_OPTION, REPORT_OPTION
from pytest_visprobe.report.scorecard import load_scorecard

HEALTHY = """
    import torch
    from torch import nn
    from pytest_visprobe import ModuleEncoder

    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, stride=2, padding=1)
            self.bn = nn.BatchNorm2d(16, track_running_stats=TRACK)

        def forward(self, x):
            if NORMALISE_INSIDE:
                x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
            h = torch.relu(self.bn(self.conv(x)))
            if DROPOUT:
                h = nn.functional.dropout(h, 0.5, training=True)
            out = nn.functional.adaptive_avg_pool2d(h, 2).flatten(1)
            if NAN:
                out = out / (out - out)
            if CONSTANT:
                out = out * 0 + 1
            return out

    def create_encoder():
        torch.manual_seed(0)
        return ModuleEncoder(Net(), name="net", input_size=(32, 32), mean=MEAN, std=STD)
"""
FAULTS = {"TRACK": "True", "NORMALISE_INSIDE": "False", "DROPOUT": "False", "NAN": "False", "CONSTANT": "False"}
BROKEN = {  # file -> (fault, failing preflight test, message)
    "bn_train.py": ({"TRACK": "False"}, "test_batch_independent",
                    "*bn_train: embeddings depend on batch size*BatchNorm using batch statistics: module.bn*"),
    "dropout_on.py": ({"DROPOUT": "True"}, "test_two_passes_agree",
                      "*dropout_on: two forward passes of the same batch differ*dropout*"),
    "nan_out.py": ({"NAN": "True"}, "test_finite_declared_shape", "*nan_out: embed() returned NaN or inf for 8 of 8 images*"),
    "constant.py": ({"CONSTANT": "True"}, "test_not_constant", "*constant: embed() returns the same vector*ignores its input*"),
    "double_norm.py": ({"NORMALISE_INSIDE": "True"}, "test_normalised_once",
                       "*double_norm: the input is normalised twice with ImageNet constants*"),
}


def encoder_source(**fault: str) -> str:
    settings = {**FAULTS, **fault}
    header = "".join(f"{k} = {v}\n" for k, v in settings.items())
    import textwrap

    return header + textwrap.dedent(HEALTHY)


def test_preflight_runs_first_and_names_each_broken_encoders_cause(suite):
    suite.encoder("healthy.py", encoder_source())
    for name, (fault, _, _) in BROKEN.items():
        suite.encoder(name, encoder_source(**fault))
    encoders = [f"{ENCODER_OPTION}={name}" for name in ["healthy.py", *BROKEN]]
    collected = suite.run(*encoders, "suites/test_semantics.py", "suites/test_preflight.py", "--collect-only", "-q")
    ids = [line for line in collected.stdout.lines if "::" in line]
    first_probe = next(i for i, line in enumerate(ids) if "test_preflight.py" not in line)
    assert first_probe == 6 * 6 and all("test_preflight.py" in line for line in ids[:first_probe])

    result = suite.run(*encoders, "suites/test_preflight.py", "-rf")
    failed = {line.split(" ")[1] for line in result.stdout.lines if line.startswith("FAILED ")}
    expected = {f"suites/test_preflight.py::{test}[{name[:-3]}]" for name, (_, test, _) in BROKEN.items()}
    assert expected <= failed
    assert not any("[healthy]" in nodeid for nodeid in failed)
    # each fault is caught by its own check; dropout also (rightly) makes the batch check fail
    assert failed - expected == {"suites/test_preflight.py::test_batch_independent[dropout_on]"}
    for _, _, message in BROKEN.values():
        result.stdout.fnmatch_lines([message])
    result.stdout.no_fnmatch_line("*Traceback*")


WORSE = """
    from torch import nn

    def create_encoder():
        return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten())   # 12 numbers per image: much worse
"""


def test_bless_then_paired_baseline_catches_a_real_regression_and_not_a_rerun(suite):
    label = ["suites/test_semantics.py::test_label_probe", f"{DATASET_OPTION}=digits"]
    suite.encoder("enc.py", (suite.pytester.path / "pooled.py").read_text())
    result = suite.run(f"{ENCODER_OPTION}=enc.py", f"{BASELINE_OPTION}=accepted/scorecard.json", BLESS_OPTION, *label)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["blessed: *accepted?scorecard.json is now the accepted baseline"])
    accepted = load_scorecard(suite.pytester.path / "accepted" / "scorecard.json")  # round-trips through the schema
    assert accepted == load_scorecard(suite.pytester.path / "visprobe-report" / "scorecard.json")
    top1 = next(r for r in accepted.records if r.metric == "top1")
    assert top1.samples is not None and top1.samples.n == 150 and top1.interval.method == "bootstrap"

    # the same encoder again: every sample agrees, McNemar p = 1
    suite.run(f"{ENCODER_OPTION}=enc.py", f"{BASELINE_OPTION}=accepted/scorecard.json", *label).assert_outcomes(passed=1)
    again = {r["metric"]: r for r in suite.scorecard()["records"]}
    assert again["top1"]["comparison"] == {"method": "mcnemar", "drop": 0.0, "noise": None, "p_value": 1.0,
                                           "worse": 0, "better": 0, "note": None, "drop_low": None,
                                           "drop_high": None, "unit": "test sample"}

    # a worse checkpoint under the same name: a paired, significant drop fails and says so
    suite.encoder("enc.py", WORSE)
    result = suite.run(f"{ENCODER_OPTION}=enc.py", f"{BASELINE_OPTION}=accepted/scorecard.json", *label)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*enc · label_probe.top1 on digits: obtained *, baseline * − tolerance 0.02 = * "
                                 "(higher is better), and beyond the noise: McNemar exact p = * < 0.05 (* samples "
                                 "newly wrong, * newly right), from accepted/scorecard.json. If the change is "
                                 "intended, re-run with --visprobe-bless*"])
    md = (suite.pytester.path / "visprobe-report" / "scorecard.md").read_text()
    assert "▼" in md and "✗" in md

    # accepting it: a verdict failure does not block bless (that is what blessing is for)
    result = suite.run(f"{ENCODER_OPTION}=enc.py", f"{BASELINE_OPTION}=accepted/scorecard.json", BLESS_OPTION, *label)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["blessed: *"])
    suite.run(f"{ENCODER_OPTION}=enc.py", f"{BASELINE_OPTION}=accepted/scorecard.json", *label).assert_outcomes(passed=1)


def test_bless_refuses_an_incomplete_run_and_needs_a_baseline_path(suite):
    (suite.pytester.path / "nan.py").write_text(
        "import torch\nfrom torch import nn\n\nclass Nan(nn.Module):\n    def forward(self, x):\n"
        "        return torch.full((x.shape[0], 4), float('nan'))\n\ndef create_encoder():\n    return Nan()\n")
    label = ["suites/test_semantics.py::test_label_probe", f"{DATASET_OPTION}=digits"]
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", f"{ENCODER_OPTION}=nan.py", f"{BASELINE_OPTION}=accepted.json",
                       BLESS_OPTION, *label)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["not blessed: the baseline was left unchanged because *test_label_probe?nan-digits? "
                                 "failed. Fix that and re-run with --visprobe-bless."])
    assert not (suite.pytester.path / "accepted.json").exists()

    result = suite.run(f"{ENCODER_OPTION}=pooled.py", BLESS_OPTION, *label)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --visprobe-bless writes the accepted baseline to the path "
                                 "--visprobe-baseline names, but no --visprobe-baseline was given.*"])
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", f"{BASELINE_OPTION}=missing.json", *label)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --visprobe-baseline=missing.json: file not found*--visprobe-bless*"])


def test_step_summary_and_junitxml_carry_the_scorecard(suite, monkeypatch):
    summary = suite.pytester.path / "step_summary.md"
    summary.write_text("## an earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", "suites/test_semantics.py::test_label_probe",
                       f"{DATASET_OPTION}=digits", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    text = summary.read_text()
    assert text.startswith("## an earlier step\n# pytest-visprobe scorecard")
    assert text.strip().endswith((suite.pytester.path / "visprobe-report" / "scorecard.md").read_text().strip())
    records = {r["metric"]: r for r in suite.scorecard()["records"]}
    (case,) = ET.parse(suite.pytester.path / "junit.xml").getroot().iter("testcase")
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert float(properties["visprobe.label_probe.top1"]) == pytest.approx(records["top1"]["value"], abs=1e-6)
    low, high = map(float, properties["visprobe.label_probe.top1.ci95"].split(","))
    assert (low, high) == pytest.approx((records["top1"]["interval"]["low"], records["top1"]["interval"]["high"]), abs=1e-6)
    assert "visprobe.label_probe.selectivity" in properties


def test_xdist_equals_serial_with_controls_intervals_and_floors(suite):
    args = [f"{ENCODER_OPTION}=conv.py", "suites/test_semantics.py::test_label_probe",
            "suites/test_controls.py::test_label_probe_random_init", f"{DATASET_OPTION}=digits"]
    suite.run(*args, f"{REPORT_OPTION}=serial", limit=80).assert_outcomes(passed=2)
    suite.run(*args, "-n", "2", f"{REPORT_OPTION}=parallel", "--junitxml=junit.xml",
              subprocess=True, limit=80).assert_outcomes(passed=2)
    serial, parallel = suite.scorecard("serial"), suite.scorecard("parallel")
    strip = lambda card: [{k: v for k, v in r.items() if k != "duration"} for r in card["records"]]  # noqa: E731
    assert strip(parallel) == strip(serial)
    by_key = {(r["encoder"], r["probe"], r["dataset"], r["metric"]): r for r in serial["records"]}
    control = by_key[("conv~random-init", "label_probe", "digits", "top1")]
    assert control["control_of"] == "conv" and by_key[("conv", "label_probe", "digits", "top1")]["floor"] == control["value"]
    names = {p.get("name") for p in ET.parse(suite.pytester.path / "junit.xml").getroot().iter("property")}
    assert "visprobe.label_probe.top1" in names
    md = (suite.pytester.path / "serial" / "scorecard.md").read_text()
    assert "## Controls" in md and "random-init floor" in md
    assert json.loads((suite.pytester.path / "serial" / "scorecard.json").read_text())["schema_version"] == 5


def test_a_baseline_made_with_other_probe_settings_is_not_compared_and_each_difference_is_named(suite):
    label = ["suites/test_semantics.py::test_label_probe", f"{DATASET_OPTION}=digits"]
    suite.encoder("enc.py", (suite.pytester.path / "pooled.py").read_text())
    (suite.pytester.path / "short.toml").write_text('extends = "quick"\n[probes.label_probe]\nmax_iter = 50\n'
                                                    'recipe = "lbfgs"\n')
    suite.run(f"{ENCODER_OPTION}=enc.py", f"{BASELINE_OPTION}=accepted.json", BLESS_OPTION, *label).assert_outcomes(passed=1)
    accepted = load_scorecard(suite.pytester.path / "accepted.json")
    assert accepted.probes["label_probe"].settings["max_iter"] == 200
    assert all(r.settings_hash == accepted.probes["label_probe"].settings_hash for r in accepted.records)

    result = suite.run(f"{ENCODER_OPTION}=enc.py", f"{BASELINE_OPTION}=accepted.json",
                       "--visprobe-profile=short.toml", *label)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*enc · label_probe on digits: the baseline accepted.json is not comparable with "
                                 "this run: label_probe.max_iter: 200 → 50. Run with the baseline's settings (its "
                                 "profile was 'quick'), or accept this run as the new baseline with --visprobe-bless."])
    assert all(r["baseline"] is None and r["comparison"] is None for r in suite.scorecard()["records"])


def test_a_baseline_from_before_settings_were_recorded_is_compared_with_a_warning(suite):
    label = ["suites/test_semantics.py::test_label_probe", f"{DATASET_OPTION}=digits"]
    suite.encoder("enc.py", (suite.pytester.path / "pooled.py").read_text())
    suite.run(f"{ENCODER_OPTION}=enc.py", f"{BASELINE_OPTION}=accepted.json", BLESS_OPTION, *label).assert_outcomes(passed=1)
    old = json.loads((suite.pytester.path / "accepted.json").read_text())
    old["schema_version"] = 3
    old.pop("probes")
    for record in old["records"]:
        for field in ("settings_hash", "probe_version", "data_key", "units", "uncertainty"):
            record.pop(field, None)
    (suite.pytester.path / "accepted.json").write_text(json.dumps(old))
    result = suite.run(f"{ENCODER_OPTION}=enc.py", f"{BASELINE_OPTION}=accepted.json", *label)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*BaselineUncheckedWarning*settings could not be checked*--visprobe-bless*"])
    assert all(r["comparison"] is not None for r in suite.scorecard()["records"])
