"""Thresholds (lookup and validation), verdict messages, and the scorecard's JSON and Markdown."""

from __future__ import annotations

import json
import re
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pytest_visprobe.report.gate import evaluate
from pytest_visprobe.errors import ConfigError
from pytest_visprobe.probes.spec import PROBES, Metric, MetricSpec, ProbeSpec, register_probe
from pytest_visprobe.report.markdown import table_rows, to_markdown
from pytest_visprobe.report.scorecard import (
    DatasetInfo,
    EncoderInfo,
    Outcome,
    Provenance,
    Record,
    Scorecard,
    load_scorecard,
    write_scorecard,
)
from pytest_visprobe.report.thresholds import Threshold, load_thresholds


@pytest.fixture
def lower_is_better():
    """A lower-is-better metric (like an attack success rate), registered only for one test."""
    spec = register_probe(ProbeSpec("test_attack", "test only", run=lambda ctx: [],
                                    metrics=(MetricSpec("success_rate", False, "attack success (test only)"),)))
    yield spec.metrics[0]
    PROBES.unregister("test_attack")


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "visprobe_thresholds.toml"
    path.write_text(textwrap.dedent(text))
    return path


# ----------------------------------------------------------------------------- lookup

RULES = """
    [[threshold]]   # 1: generic
    probe = "label_probe"
    metric = "top1"
    value = 0.10

    [[threshold]]   # 2: encoder glob
    probe = "label_probe"
    metric = "top1"
    value = 0.30
    encoder = "resnet*"

    [[threshold]]   # 3: dataset
    probe = "label_probe"
    metric = "top1"
    value = 0.20
    dataset = "digits"

    [[threshold]]   # 4: encoder + dataset
    probe = "label_probe"
    metric = "top1"
    value = 0.40
    encoder = "resnet*"
    dataset = "digits"

    [[threshold]]   # 5: generic again, later in the file
    probe = "label_probe"
    metric = "top1"
    value = 0.15

    [[threshold]]   # 6: another metric
    probe = "attribute_probe"
    metric = "mAP"
    value = 0.5
    dataset = "shapes"
"""


@pytest.mark.parametrize(("dataset", "encoder", "value", "rule"), [
    ("shapes", "vit_small", 0.15, 5),   # generic; the later of two equal rules wins
    ("digits", "vit_small", 0.20, 3),   # dataset beats generic
    ("shapes", "resnet50", 0.30, 2),    # encoder glob beats generic
    ("digits", "resnet50", 0.40, 4),    # encoder + dataset beats both
    ("digits", "xresnet50", 0.20, 3),   # the glob is anchored: no match
])
def test_lookup_most_specific_rule(tmp_path: Path, dataset: str, encoder: str, value: float, rule: int) -> None:
    path = write_toml(tmp_path, RULES)
    found = load_thresholds(path).lookup("label_probe", "top1", dataset, encoder)
    assert found == Threshold(value, f"{path} (rule {rule})")


def test_lookup_encoder_beats_dataset_regardless_of_order(tmp_path: Path) -> None:
    path = write_toml(tmp_path, """
        [[threshold]]
        probe = "label_probe"
        metric = "top1"
        value = 0.3
        encoder = "tiny*"

        [[threshold]]
        probe = "label_probe"
        metric = "top1"
        value = 0.2
        dataset = "digits"
    """)
    assert load_thresholds(path).lookup("label_probe", "top1", "digits", "tiny_cnn").value == 0.3


def test_lookup_no_match(tmp_path: Path) -> None:
    thresholds = load_thresholds(write_toml(tmp_path, RULES))
    assert thresholds.lookup("attribute_probe", "mAP", "digits", "resnet50") is None
    assert thresholds.lookup("attribute_probe", "mAP", "shapes", "resnet50").value == 0.5
    assert load_thresholds(write_toml(tmp_path, "")).lookup("label_probe", "top1", "d", "e") is None


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("text", "patterns"), [
    ('[[threshold]]\nprobe = "label_probe"\nmetric = "top1"\nvalue = 0.5\ndatset = "digits"\n',
     [r"\[\[threshold\]\] #1 key 'datset'", r"Extra inputs are not permitted"]),
    ('[[thresholds]]\nprobe = "label_probe"\nmetric = "top1"\nvalue = 0.5\n',
     [r"key thresholds"]),
    ('[[threshold]]\nprobe = "label_probe"\nmetric = "top1"\nvalue = 0.5\n\n'
     '[[threshold]]\nprobe = "label_prob"\nmetric = "top1"\nvalue = 0.5\n',
     [r"\[\[threshold\]\] #2", r"unknown probe 'label_prob'\. Did you mean 'label_probe'\?"]),
    ('[[threshold]]\nprobe = "label_probe"\nmetric = "top_1"\nvalue = 0.5\n',
     [r"probe 'label_probe' has no metric 'top_1'\. Did you mean 'top1'\?"]),
    ('[[threshold]]\nprobe = "label_probe"\nmetric = "top1"\nvalue = 1.5\n',
     [r"value 1\.5 is outside label_probe\.top1's range \[0\.0, 1\.0\]"]),
    ('[[threshold]]\nprobe = "label_probe"\nmetric = "top1"\n',
     [r"\[\[threshold\]\] #1 key 'value'", r"Field required"]),
    ('[[threshold]]\nprobe = "label_probe"\nmetric = "top1"\nvalue = "high"\n',
     [r"\[\[threshold\]\] #1 key 'value'"]),
    ('[[threshold]\nprobe = "label_probe"\n', [r"is not valid TOML"]),
])
def test_validation_errors_name_the_bad_key(tmp_path: Path, text: str, patterns: list[str]) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_thresholds(path)
    message = str(info.value)
    assert str(path) in message
    for pattern in patterns:
        assert re.search(pattern, message), (pattern, message)


def test_unreadable_thresholds_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"could not be read"):
        load_thresholds(tmp_path / "missing.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"binary\.toml"):
        load_thresholds(binary)


def test_lower_is_better_range_is_validated(tmp_path: Path, lower_is_better: MetricSpec) -> None:
    path = write_toml(tmp_path, '[[threshold]]\nprobe = "test_attack"\nmetric = "success_rate"\nvalue = 0.25\n')
    assert load_thresholds(path).lookup("test_attack", "success_rate", "d", "e").value == 0.25


# ----------------------------------------------------------------------------- verdicts

SOURCE = Threshold(0.5, "suites/visprobe_thresholds.toml (rule 3)")


def _evaluate(metric: Metric, threshold=None, baseline=None, tolerance=0.25):
    return evaluate(metric, encoder="enc", dataset="digits", threshold=threshold, baseline=baseline,
                    baseline_source="accepted/scorecard.json", tolerance=tolerance)


def test_threshold_higher_is_better() -> None:
    assert _evaluate(Metric("label_probe", "top1", 0.5), threshold=SOURCE).passed  # the bound itself passes
    verdict = _evaluate(Metric("label_probe", "top1", 0.4), threshold=SOURCE)
    assert not verdict.passed and len(verdict.failures) == 1
    message = verdict.failures[0]
    for part in ("enc · label_probe.top1 on digits", "obtained 0.4000", "expected >= 0.5000",
                 "(higher is better)", "suites/visprobe_thresholds.toml (rule 3)", "--visprobe-thresholds"):
        assert part in message, (part, message)


def test_threshold_lower_is_better(lower_is_better: MetricSpec) -> None:
    assert _evaluate(Metric("test_attack", "success_rate", 0.5), threshold=SOURCE).passed
    assert _evaluate(Metric("test_attack", "success_rate", 0.1), threshold=SOURCE).passed
    verdict = _evaluate(Metric("test_attack", "success_rate", 0.6), threshold=SOURCE)
    assert not verdict.passed
    message = verdict.failures[0]
    for part in ("obtained 0.6000", "expected <= 0.5000", "(lower is better)", "(rule 3)"):
        assert part in message, (part, message)


def test_baseline_higher_is_better() -> None:
    # baseline 0.75, tolerance 0.25: anything >= 0.5 passes (exact in binary floating point)
    assert _evaluate(Metric("label_probe", "top1", 0.5), baseline=0.75).passed
    assert _evaluate(Metric("label_probe", "top1", 0.9), baseline=0.75).passed
    verdict = _evaluate(Metric("label_probe", "top1", 0.4), baseline=0.75)
    assert not verdict.passed
    message = verdict.failures[0]
    for part in ("obtained 0.4000", "baseline 0.7500 − tolerance 0.25 = 0.5000", "(higher is better)",
                 "accepted/scorecard.json", "--visprobe-tolerance"):
        assert part in message, (part, message)


def test_baseline_lower_is_better(lower_is_better: MetricSpec) -> None:
    assert _evaluate(Metric("test_attack", "success_rate", 0.5), baseline=0.25).passed
    assert _evaluate(Metric("test_attack", "success_rate", 0.0), baseline=0.25).passed
    verdict = _evaluate(Metric("test_attack", "success_rate", 0.6), baseline=0.25)
    assert not verdict.passed
    message = verdict.failures[0]
    for part in ("obtained 0.6000", "baseline 0.2500 + tolerance 0.25 = 0.5000", "(lower is better)"):
        assert part in message, (part, message)


def test_threshold_and_baseline_both_reported() -> None:
    verdict = _evaluate(Metric("label_probe", "top1", 0.1), threshold=SOURCE, baseline=0.75)
    assert not verdict.passed and len(verdict.failures) == 2
    assert _evaluate(Metric("label_probe", "top1", 0.1)).passed  # nothing to check against


# ----------------------------------------------------------------------------- scorecard


def make_card() -> Scorecard:
    provenance = Provenance(
        created=datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc), profile="quick", seed=0, device="cpu",
        git_commit="0123456789abcdef", git_dirty=False, python="3.11.9", platform="linux",
        packages={"torch": "2.5"}, command=["pytest", "suites/"], features={"computed": 4, "from_disk": 2},
        baseline="accepted/scorecard.json", tolerance=0.02,
    )

    def record(encoder: str, probe: str, metric: str, value: float, **extra) -> Record:
        return Record(encoder=encoder, probe=probe, dataset="shapes", metric=metric, value=value,
                      higher_is_better=True, nodeid=f"suites/test_semantics.py::test_{probe}[{encoder}-shapes]",
                      passed=extra.pop("passed", True), **extra)

    return Scorecard(
        provenance=provenance,
        encoders=[EncoderInfo(name="tiny_cnn", ref="examples/tiny_cnn.py", fingerprint="ab" * 16,
                              input_size=[64, 64], parameters=1234, has_feature_map=True),
                  EncoderInfo(name="pooled", ref="pooled.py", fingerprint="cd" * 16)],
        datasets=[DatasetInfo(name="shapes", fingerprint="ff" * 12, splits={"train": 600, "test": 300},
                              targets=["label", "attributes"])],
        records=[
            record("tiny_cnn", "label_probe", "top1", 0.8123, threshold=0.5, threshold_source="t.toml (rule 1)"),
            record("pooled", "label_probe", "top1", 0.4, threshold=0.5, passed=False, baseline=0.45),
            record("tiny_cnn", "attribute_probe", "mAP", 0.61, spread=0.01, chance=0.3),
        ],
        outcome=Outcome(passed=2, failed=1),
    )


def test_scorecard_json_round_trip(tmp_path: Path) -> None:
    card = make_card()
    json_path, md_path = write_scorecard(card, tmp_path / "report")
    assert json_path.name == "scorecard.json" and md_path.name == "scorecard.md"
    text = json_path.read_text()
    assert json.loads(text)["schema_version"] == 5
    again = Scorecard.model_validate_json(text)
    assert again == card.sorted()
    assert load_scorecard(json_path) == card.sorted()
    # records are sorted by (probe, dataset, metric, encoder), whatever order they were added in
    assert [(r.probe, r.encoder) for r in again.records] == [
        ("attribute_probe", "tiny_cnn"), ("label_probe", "pooled"), ("label_probe", "tiny_cnn")]


@pytest.mark.parametrize(("content", "pattern"), [
    ('{"schema_version": 1, "provenance": {', r"is not a pytest-visprobe scorecard"),
    ("not json at all", r"is not a pytest-visprobe scorecard"),
    ("[]", r"is not a pytest-visprobe scorecard"),
    ('{"schema_version": 6, "provenance": {}}', r"schema_version 6; this pytest-visprobe reads versions 1, 2, 3, 4, 5"),
    ('{"schema_version": 1, "records": []}', r"provenance: Field required"),
])
def test_load_scorecard_malformed(tmp_path: Path, content: str, pattern: str) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_scorecard(path)
    assert str(path) in str(info.value) and "--visprobe-baseline" in str(info.value)


def test_load_scorecard_wrong_record_schema(tmp_path: Path) -> None:
    data = make_card().model_dump(mode="json")
    data["records"][0]["value"] = "high"
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"records\.0\.value"):
        load_scorecard(path)


def test_load_scorecard_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"could not be read"):
        load_scorecard(tmp_path / "missing.json")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")  # someone passed the plot, not the JSON
    with pytest.raises(ConfigError, match=r"binary\.json is not a text file.*--visprobe-baseline"):
        load_scorecard(binary)


def test_markdown_metrics_as_rows_encoders_as_columns() -> None:
    card = make_card()
    headers, body = table_rows(card)
    assert headers == ["probe", "dataset", "metric", "pooled", "tiny_cnn"]
    assert [row[:3] for row in body] == [["attribute_probe", "shapes", "mAP"], ["label_probe", "shapes", "top1"]]
    assert body[0][3] == "—"  # pooled has no attribute record
    assert body[0][4] == "0.610 ± 0.010"
    assert body[1][3] == "0.400 ▼ 0.050 ✗" and body[1][4] == "0.812 ✓"
    markdown = to_markdown(card)
    main, controls = markdown.split("## Controls")
    table = [line for line in main.splitlines() if line.startswith("|")]
    assert "| tiny_cnn  | attribute_probe | shapes    | mAP      | 0.300    |" in controls  # chance from the record
    assert len(table) == 2 + 2  # header, separator, one line per metric
    assert [c.strip() for c in table[0].strip("|").split("|")] == headers
    assert "2 passed, 1 failed" in markdown and "4 computed, 2 from cache" in markdown
    assert "## Failing metrics" in markdown and "`pooled` label_probe.top1 on shapes: 0.4000" in markdown
    assert "commit `0123456789`" in markdown


def test_markdown_without_records() -> None:
    card = make_card().model_copy(update={"records": []})
    assert "_No metrics were recorded._" in to_markdown(card)


def test_shipped_thresholds_file_is_valid_and_every_rule_names_a_registered_metric():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "suites" / "visprobe_thresholds.toml"
    thresholds = load_thresholds(path)  # validates every rule against the metric registry
    assert thresholds.rules, "the shipped suites should carry at least one floor"


def test_schema_is_exported_from_the_models() -> None:
    from pytest_visprobe.report.scorecard import schema_json

    schema = json.loads(schema_json())
    record = schema["$defs"]["Record"]["properties"]
    assert {"chance", "settings_hash", "details", "interval", "samples"} <= set(record)
    assert schema["properties"]["schema_version"]["const"] == 5


def test_compare_lists_every_moved_number_and_one_sided_record(tmp_path: Path, capsys) -> None:
    from pytest_visprobe.report.compare import differences, main

    card = make_card()
    moved = card.model_copy(update={"records": [card.records[0].model_copy(update={"value": 0.8123 + 1e-3}),
                                                *card.records[1:2]]})
    changes = differences(card, moved)
    assert [(c.key[1], c.field) for c in changes] == [("attribute_probe", "only in old"), ("label_probe", "value")]
    assert changes[1].new - changes[1].old == pytest.approx(1e-3)
    old, new = write_scorecard(card, tmp_path / "old")[0], write_scorecard(moved, tmp_path / "new")[0]
    assert main([str(old), str(old)]) == 0
    assert main([str(old), str(new)]) == 1
    assert "label_probe.top1 on shapes · value: 0.812300 → 0.813300 (+0.001000)" in capsys.readouterr().out
    assert main([str(old), str(tmp_path / "missing.json")]) == 2
    assert "missing.json could not be read" in capsys.readouterr().err
