"""End to end through pytester: the commands users type, and what they get back."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from pytest_visprobe.runner.options import (
    BASELINE_OPTION,
    DATASET_OPTION,
    ENCODER_OPTION,
    NO_CACHE_OPTION,
    OPTIONS,
    REPORT_OPTION,
    SEED_OPTION,
    THRESHOLDS_OPTION,
    TOLERANCE_OPTION,
)


def test_help_lists_the_group_without_importing_torch(tmp_path):
    code = textwrap.dedent("""
        import sys, pytest
        rc = pytest.main(["--help"])
        assert rc == 0, rc
        print("TORCH_IMPORTED" if "torch" in sys.modules else "TORCH_NOT_IMPORTED")
    """)
    # run outside the repository so that no conftest of ours is loaded
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout
    assert "probe frozen vision encoders (pytest-visprobe)" in out
    for option in OPTIONS:
        assert option.flag in out
    assert "TORCH_NOT_IMPORTED" in out


def test_main_job_writes_scorecard_and_summary(suite):
    result = suite.run(f"{ENCODER_OPTION}=conv.py", "suites/test_semantics.py")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([
        "*visprobe scorecard*",
        "probe*dataset*metric*conv*",
        "attribute_probe*shapes*mAP*",
        "label_probe*digits*top1*",
        "feature sets: 4 computed, 0 from cache*",
        "scorecard: *scorecard.json*scorecard.md",
    ])
    card = suite.scorecard()
    assert card["schema_version"] == 5
    assert card["provenance"]["profile"] == "quick" and card["provenance"]["device"] == "cpu"
    assert {(r["probe"], r["dataset"]) for r in card["records"]} == {
        ("label_probe", "shapes"), ("label_probe", "digits"), ("attribute_probe", "shapes")}
    for record in card["records"]:
        assert record["encoder"] == "conv" and record["passed"] is True
        assert record["nodeid"].startswith("suites/test_semantics.py::")
        assert 0.0 <= record["value"] <= 1.0
    md = (suite.pytester.path / "visprobe-report" / "scorecard.md").read_text()
    assert "| probe" in md and "| conv" in md


def test_no_encoder_skips_and_writes_nothing(suite):
    result = suite.run("suites/test_semantics.py")
    result.assert_outcomes(skipped=3)
    assert not (suite.pytester.path / "visprobe-report").exists()


def test_two_encoders_are_test_ids_and_scorecard_columns(suite):
    result = suite.run(f"{ENCODER_OPTION}=conv.py", f"{ENCODER_OPTION}=pooled.py",
                       "suites/test_semantics.py", "-v")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*test_label_probe?conv-digits? PASSED*",
                                 "*test_label_probe?pooled-digits? PASSED*"])
    result.stdout.fnmatch_lines(["probe*dataset*metric*conv*pooled*"])
    assert {r["encoder"] for r in suite.scorecard()["records"]} == {"conv", "pooled"}


def test_second_run_is_served_from_the_disk_cache(suite):
    suite.run(f"{ENCODER_OPTION}=conv.py", "suites/test_semantics.py").assert_outcomes(passed=3)
    first = suite.values()
    second = suite.run(f"{ENCODER_OPTION}=conv.py", "suites/test_semantics.py")
    second.assert_outcomes(passed=3)
    features = suite.scorecard()["provenance"]["features"]
    assert features["forward_passes"] == 0 and features["computed"] == 0 and features["from_disk"] == 4
    assert suite.values() == first


def test_no_cache_writes_no_files_and_same_seed_gives_same_values(suite):
    suite.run(f"{ENCODER_OPTION}=pooled.py", NO_CACHE_OPTION, "suites/test_semantics.py").assert_outcomes(passed=3)
    first = suite.values()
    assert not any(suite.cache_dir.iterdir())
    suite.run(f"{ENCODER_OPTION}=pooled.py", NO_CACHE_OPTION, "suites/test_semantics.py").assert_outcomes(passed=3)
    assert suite.values() == first
    suite.run(f"{ENCODER_OPTION}=pooled.py", NO_CACHE_OPTION, f"{SEED_OPTION}=1", "suites/test_semantics.py")
    assert suite.values() != first  # a new seed draws new shapes scenes and splits


def test_corrupt_cache_file_is_recomputed_with_a_warning(suite):
    suite.run(f"{ENCODER_OPTION}=pooled.py", "suites/test_semantics.py").assert_outcomes(passed=3)
    first = suite.values()
    victim = sorted(suite.cache_dir.glob("*.safetensors"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", "suites/test_semantics.py")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*CacheCorruptWarning*unreadable*recomputing*"])
    features = suite.scorecard()["provenance"]["features"]
    assert features["recomputed_corrupt"] == 1 and features["computed"] == 1 and features["from_disk"] == 3
    assert suite.values() == first


def test_xdist_gives_the_same_scorecard_as_serial(suite):
    args = [f"{ENCODER_OPTION}=conv.py", f"{ENCODER_OPTION}=pooled.py", NO_CACHE_OPTION, "suites/test_semantics.py"]
    suite.run(*args, f"{REPORT_OPTION}=serial").assert_outcomes(passed=6)
    suite.run(*args, "-n", "2", f"{REPORT_OPTION}=parallel", subprocess=True).assert_outcomes(passed=6)
    serial, parallel = suite.scorecard("serial"), suite.scorecard("parallel")
    assert parallel["provenance"]["workers"] == 2
    strip = lambda card: [{k: v for k, v in r.items() if k != "duration"} for r in card["records"]]  # noqa: E731
    assert strip(parallel) == strip(serial)
    assert parallel["encoders"] == serial["encoders"] and parallel["outcome"] == serial["outcome"]


# --------------------------------------------------------------------------- thresholds and baseline


def _thresholds(suite, text: str, name: str = "suites/visprobe_thresholds.toml") -> None:
    (suite.pytester.path / name).write_text(textwrap.dedent(text))


def test_failing_threshold_says_obtained_expected_direction_and_where(suite):
    _thresholds(suite, """
        [[threshold]]
        probe = "label_probe"
        metric = "top1"
        value = 0.99
        dataset = "digits"
    """)
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", "suites/test_semantics.py")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*pooled · label_probe.top1 on digits: obtained 0.*, expected >= 0.9900 (higher is better). "
        "The threshold is set in *visprobe_thresholds.toml (rule 1); change it there or pass "
        "--visprobe-thresholds FILE.",
    ])
    result.stdout.no_fnmatch_line("*Traceback*")
    failing = [r for r in suite.scorecard()["records"] if not r["passed"]]
    assert [(r["probe"], r["dataset"], r["threshold"]) for r in failing] == [("label_probe", "digits", 0.99)]


def test_thresholds_can_differ_per_encoder(suite):
    _thresholds(suite, """
        [[threshold]]
        probe = "label_probe"
        metric = "top1"
        value = 0.99

        [[threshold]]
        probe = "label_probe"
        metric = "top1"
        value = 0.05
        encoder = "conv*"
    """)
    result = suite.run(f"{ENCODER_OPTION}=conv.py", f"{ENCODER_OPTION}=pooled.py", "suites/test_semantics.py")
    records = suite.scorecard()["records"]
    label = {(r["encoder"], r["dataset"]): r for r in records if r["probe"] == "label_probe"}
    assert all(label[("conv", d)]["threshold"] == 0.05 and label[("conv", d)]["passed"] for d in ("shapes", "digits"))
    assert all(label[("pooled", d)]["threshold"] == 0.99 and not label[("pooled", d)]["passed"] for d in ("shapes", "digits"))
    result.assert_outcomes(passed=4, failed=2)


def test_explicit_thresholds_file_option(suite):
    _thresholds(suite, """
        [[threshold]]
        probe = "attribute_probe"
        metric = "mAP"
        value = 1.0
    """, name="strict.toml")
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", f"{THRESHOLDS_OPTION}=strict.toml", "suites/test_semantics.py")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*attribute_probe.mAP on shapes: obtained *, expected >= 1.0000*strict.toml (rule 1)*"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[threshold]]\nprobe = "label_probe"\nmetric = "top1"\nvalue = 0.5\ndatset = "digits"\n',
         "*[[][[]threshold[]][]] #1 key 'datset': Extra inputs are not permitted*"),
        ('[[threshold]]\nprobe = "label_prob"\nmetric = "top1"\nvalue = 0.5\n',
         "*unknown probe 'label_prob'. Did you mean 'label_probe'?*"),
        ('[[threshold]]\nprobe = "label_probe"\nmetric = "top1"\nvalue = 1.5\n', "*outside label_probe.top1's range*"),
        ("[[threshold]\n", "*is not valid TOML*"),
    ],
    ids=["extra-key", "unknown-probe", "out-of-range", "bad-toml"],
)
def test_malformed_thresholds_file_stops_the_run_with_one_message(suite, text, expected):
    (suite.pytester.path / "suites" / "visprobe_thresholds.toml").write_text(text)
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", "suites/")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: thresholds file *visprobe_thresholds.toml*" + expected])


def test_baseline_regression_fails_beyond_tolerance_and_noise_only(suite):
    suite.run(f"{ENCODER_OPTION}=pooled.py", "suites/test_semantics.py", f"{REPORT_OPTION}=accepted").assert_outcomes(passed=3)
    accepted = suite.scorecard("accepted")
    # hand-edited values no longer match the kept per-sample outcomes, so the 95 % intervals judge the noise
    # (150 test samples: about ±0.05 on digits' 0.88, ±0.07 on shapes' 0.19)
    for record in accepted["records"]:
        if (record["probe"], record["dataset"], record["metric"]) == ("label_probe", "digits", "top1"):
            record["value"] += 0.1  # beyond the tolerance and the noise → regression
        elif (record["probe"], record["dataset"], record["metric"]) == ("label_probe", "shapes", "top1"):
            record["value"] += 0.05  # beyond the tolerance 0.02, within the noise → passes
        elif record["probe"] == "attribute_probe":
            record["value"] += 0.01  # within the default tolerance 0.02
    (suite.pytester.path / "baseline.json").write_text(json.dumps(accepted))
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", f"{BASELINE_OPTION}=baseline.json", "suites/test_semantics.py")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*label_probe.top1 on digits: obtained *, baseline * − tolerance 0.02 = * (higher is better), "
                                 "and beyond the noise: drop 0.1000 > 0.0* explained by the 95 % intervals*"])
    records = {(r["probe"], r["dataset"], r["metric"]): r for r in suite.scorecard()["records"]}
    assert records[("label_probe", "digits", "top1")]["passed"] is False
    shapes = records[("label_probe", "shapes", "top1")]
    assert shapes["passed"] is True and shapes["comparison"]["method"] == "intervals"
    assert shapes["comparison"]["drop"] > 0.02 and shapes["comparison"]["drop"] < shapes["comparison"]["noise"]
    assert "edited by hand" in shapes["comparison"]["note"]
    assert records[("attribute_probe", "shapes", "mAP")]["passed"] is True
    assert records[("attribute_probe", "shapes", "mAP")]["baseline"] is not None
    # a wider tolerance accepts the same drop
    suite.run(f"{ENCODER_OPTION}=pooled.py", f"{BASELINE_OPTION}=baseline.json", f"{TOLERANCE_OPTION}=0.15",
              "suites/test_semantics.py").assert_outcomes(passed=3)


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not a pytest-visprobe scorecard: not valid JSON*"),
    ('{"schema_version": 1}', "is not a pytest-visprobe scorecard*provenance: Field required*"),
    ('{"schema_version": 99, "provenance": {}}', "has schema_version 99; this pytest-visprobe reads versions 1, 2, 3, 4, 5*"),
])
def test_malformed_baseline_is_a_usage_error(suite, content, message):
    (suite.pytester.path / "baseline.json").write_text(content)
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", f"{BASELINE_OPTION}=baseline.json", "suites/")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: baseline *baseline.json {message}"])


# --------------------------------------------------------------------------- datasets


def test_imagefolder_dataset_option(suite):
    from PIL import Image
    import numpy as np

    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 6)):
        for index, colour in enumerate(((220, 30, 30), (30, 30, 220))):
            folder = suite.pytester.path / "pets" / split / f"class{index}"
            folder.mkdir(parents=True)
            for k in range(count):
                pixels = np.clip(np.array(colour) + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{k}.png")
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", f"{DATASET_OPTION}=imagefolder:pets",
                       "suites/test_semantics.py::test_label_probe", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_label_probe?pooled-imagefolder-pets? PASSED*"])
    (record,) = [r for r in suite.scorecard()["records"] if r["metric"] == "top1"]
    assert record["dataset"] == "imagefolder:pets" and record["value"] == 1.0  # red vs blue: separable


def test_unknown_dataset_name_suggests_the_right_one(suite):
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", f"{DATASET_OPTION}=digts", "suites/")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --visprobe-dataset=digts: unknown dataset 'digts'. Did you mean 'digits'?*"])


# --------------------------------------------------------------------------- bad encoders


def test_missing_encoder_file_is_a_usage_error(suite):
    result = suite.run(f"{ENCODER_OPTION}=nope.py", "suites/")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --encoder=nope.py: file not found (*nope.py). Check the path*"])


def test_unknown_prefix_suggests_the_right_one(suite):
    result = suite.run(f"{ENCODER_OPTION}=tim:resnet18", "suites/")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --encoder=tim:resnet18: unknown prefix 'tim'. Did you mean timm:resnet18?*"])


BROKEN = {
    "no_factory.py": ("def make():\n    pass\n",
                      "*no_factory.py has no function create_encoder(). Define*Functions it defines: make.*"),
    "raises.py": ("def create_encoder():\n    raise RuntimeError('weights missing')\n",
                  "*create_encoder() raised RuntimeError: weights missing (raises.py:2)*"),
    "wrong_shape.py": ("from torch import nn\n\nclass Flat(nn.Module):\n    def forward(self, x):\n"
                       "        return x.flatten()\n\ndef create_encoder():\n    return Flat()\n",
                       "*encoder 'wrong_shape' embed() on *returned shape (*,) for * images; expected [[]N, D]*"),
    "nan.py": ("import torch\nfrom torch import nn\n\nclass Nan(nn.Module):\n    def forward(self, x):\n"
               "        return torch.full((x.shape[0], 4), float('nan'))\n\ndef create_encoder():\n    return Nan()\n",
               "*encoder 'nan' embed() on * returned NaN or inf for * images. Check the weights*"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_encoder_gives_one_clear_message_and_keeps_the_scorecard(suite, name):
    source, message = BROKEN[name]
    (suite.pytester.path / name).write_text(source)
    result = suite.run(f"{ENCODER_OPTION}={name}", f"{ENCODER_OPTION}=pooled.py", "suites/test_semantics.py")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 3  # the healthy encoder is unaffected
    assert outcomes.get("errors", 0) + outcomes.get("failed", 0) == 3
    result.stdout.fnmatch_lines([message])
    result.stdout.no_fnmatch_line("*Traceback*")
    card = suite.scorecard()
    assert {r["encoder"] for r in card["records"]} == {"pooled"}
    assert card["outcome"]["errors"] + card["outcome"]["failed"] == 3


def test_the_plugin_module_imports_neither_torch_numpy_nor_pydantic(tmp_path):
    """Every pytest run in the user's environment loads the plugin: it must stay light."""
    code = ("import sys, pytest_visprobe.plugin, pytest_visprobe.hookspecs; "
            "print(sorted(m for m in ('torch', 'numpy', 'pydantic', 'PIL', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "[]"


def test_a_run_without_visprobe_options_makes_no_session(tmp_path):
    """A user's unrelated tests: the plugin loads neither probes, profiles nor torch."""
    (tmp_path / "test_plain.py").write_text("import sys\n\ndef test_plain():\n"
                                            "    assert 'torch' not in sys.modules and 'pydantic' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_plain.py"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_option_prints_the_scorecard_json_schema(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pytest", "--visprobe-schema", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert schema["title"] == "Scorecard" and "records" in schema["properties"]


def test_tests_are_grouped_by_encoder_for_xdist_loadgroup(suite):
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", f"{ENCODER_OPTION}=conv.py", "suites/test_semantics.py",
                       "suites/test_similarity.py", "--collect-only", "-q", "-m", "xdist_group", limit=None)
    ids = [line for line in result.stdout.lines if "::" in line]
    assert ids and all("similarity" not in i for i in ids)  # tests comparing every encoder stay ungrouped
    grouped = suite.run(f"{ENCODER_OPTION}=pooled.py", "suites/test_semantics.py", "-n", "2", "--dist", "loadgroup",
                        "-p", "xdist", limit=60)
    grouped.assert_outcomes(passed=3)
    grouped.stdout.fnmatch_lines(["*scorecard:*"])
