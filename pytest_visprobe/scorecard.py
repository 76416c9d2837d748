"""The scorecard: one typed, versioned JSON document per session, and its Markdown view.

Records are sorted by (probe, dataset, metric, encoder), so a serial run and ``pytest -n N``
produce the same document apart from timings.

Schema versions: 2 added each record's uncertainty (``interval``, ``samples``), the baseline
comparison (``comparison``) and controls (``floor``, ``control_of``), all optional, so a version-1
document still loads as a baseline (it simply has no intervals to compare with).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)


class Interval(BaseModel):
    """A confidence interval for a record's value."""

    model_config = ConfigDict(extra="forbid")

    low: float
    high: float
    level: float = 0.95
    method: str  # "bootstrap" (percentile, over test samples) or "probe" (the probe computed it)
    resamples: int | None = None

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


class Samples(BaseModel):
    """Per-sample 0/1 outcomes of a record, kept so a later run can be compared sample by sample."""

    model_config = ConfigDict(extra="forbid")

    split: str
    n: int
    key: str  # hash of (dataset fingerprint, split, n): the same samples in the same order
    bits: str  # base64 of numpy.packbits over the outcomes, in split order


class Comparison(BaseModel):
    """How a record was compared with its baseline (see checks.py for the rule)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["mcnemar", "intervals", "tolerance"]
    drop: float  # how much worse than the baseline, in the metric's units (negative: better)
    noise: float | None = None  # intervals: the drop the noise explains (95 %)
    p_value: float | None = None  # mcnemar: exact two-sided p
    worse: int | None = None  # mcnemar: samples right in the baseline, wrong now
    better: int | None = None  # mcnemar: samples wrong in the baseline, right now
    note: str | None = None  # why a paired comparison was not possible


class Record(BaseModel):
    """One (encoder, probe, dataset, metric) measurement and its verdict."""

    model_config = ConfigDict(extra="forbid")

    encoder: str
    probe: str
    dataset: str
    metric: str
    value: float
    spread: float | None = None  # std over trials, where the probe has trials
    higher_is_better: bool
    threshold: float | None = None
    threshold_source: str | None = None
    baseline: float | None = None
    passed: bool  # threshold and baseline both satisfied (True when neither applies)
    nodeid: str
    duration: float = 0.0  # seconds of the test call that produced it
    details: dict[str, Any] = Field(default_factory=dict)
    interval: Interval | None = None  # 95 % confidence interval of value
    samples: Samples | None = None  # per-sample 0/1 outcomes (accuracy-like metrics)
    comparison: Comparison | None = None  # against the baseline, when there was one
    floor: float | None = None  # the same metric for the randomly re-initialised encoder
    control_of: str | None = None  # set on control records: the encoder this is a control for

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.encoder, self.probe, self.dataset, self.metric)


class EncoderInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    ref: str
    fingerprint: str
    input_size: list[int] | None = None
    parameters: int = 0
    has_feature_map: bool = False


class DatasetInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    fingerprint: str
    splits: dict[str, int]  # split name -> number of samples
    targets: list[str]


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    created: datetime
    profile: str
    seed: int
    limit: int | None = None  # --visprobe-limit: samples per split were capped
    device: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    python: str
    platform: str
    packages: dict[str, str]
    command: list[str]
    workers: int = 1
    features: dict[str, int] = Field(default_factory=dict)  # FeatureStore counters, summed
    baseline: str | None = None
    tolerance: float | None = None


class Outcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0


class Scorecard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1, 2] = SCHEMA_VERSION
    provenance: Provenance
    encoders: list[EncoderInfo] = Field(default_factory=list)
    datasets: list[DatasetInfo] = Field(default_factory=list)
    records: list[Record] = Field(default_factory=list)
    outcome: Outcome = Field(default_factory=Outcome)
    plots: list[str] = Field(default_factory=list)  # PNG files beside this document

    def sorted(self) -> "Scorecard":
        return self.model_copy(update={
            "encoders": sorted(self.encoders, key=lambda e: e.name),
            "datasets": sorted(self.datasets, key=lambda d: d.name),
            "records": sorted(self.records, key=lambda r: (r.probe, r.dataset, r.metric, r.encoder)),
        })


def with_floors(records: list[Record]) -> list[Record]:
    """Each encoder's records with ``floor`` set from its random-init control's matching record."""
    floors = {(r.control_of, r.probe, r.dataset, r.metric): r.value for r in records if r.control_of}
    return [r if r.control_of or r.key not in floors else r.model_copy(update={"floor": floors[r.key]})
            for r in records]


def load_scorecard(path: Path) -> Scorecard:
    """Read an accepted scorecard (a baseline); a malformed one is a ConfigError with the fix."""
    try:
        text = path.read_text(encoding="utf-8")
        return Scorecard.model_validate_json(text)
    except OSError as exc:
        raise ConfigError(f"baseline {path} could not be read: {exc}.") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"baseline {path} is not a text file, so not a pytest-visprobe scorecard. Point "
            f"--visprobe-baseline at a scorecard.json that a run wrote (in its --visprobe-report directory)."
        ) from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[:3]
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}" for e in first)
        raise ConfigError(
            f"baseline {path} is not a pytest-visprobe scorecard (schema_version "
            f"{' or '.join(map(str, READABLE_VERSIONS))}): {problems}. Point --visprobe-baseline at a scorecard.json that a "
            f"run wrote (in its --visprobe-report directory)."
        ) from None


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_scorecard(card: Scorecard, directory: Path) -> tuple[Path, Path]:
    """Plots first (the documents link them), then scorecard.json and scorecard.md."""
    from .plots import write_plots

    card = card.sorted()
    plots = write_plots(card, directory)
    card = card.model_copy(update={"plots": [p.name for p in plots]})
    json_path, md_path = directory / "scorecard.json", directory / "scorecard.md"
    write_atomic(json_path, json.dumps(card.model_dump(mode="json"), indent=2) + "\n")
    write_atomic(md_path, to_markdown(card))
    return json_path, md_path


def format_delta(record: Record) -> str:
    """▲ better / ▼ worse than the baseline (by the metric's direction), ``=`` when unchanged."""
    assert record.baseline is not None
    delta = record.value - record.baseline
    if abs(delta) < 5e-4:
        return "= 0.000"
    better = (delta > 0) == record.higher_is_better
    return f"{'▲' if better else '▼'} {abs(delta):.3f}"


def format_cell(record: Record) -> str:
    """``value [95 % interval] (± trial std) ▲/▼ Δ vs baseline ✓/✗``."""
    text = f"{record.value:.3f}"
    if record.interval is not None:
        text += f" [{record.interval.low:.3f}, {record.interval.high:.3f}]"
    if record.spread is not None:
        text += f" ± {record.spread:.3f}"
    if record.baseline is not None:
        text += f" {format_delta(record)}"
    if record.threshold is not None or record.baseline is not None:
        text += " ✓" if record.passed else " ✗"
    return text


def measured(card: Scorecard) -> list[Record]:
    """The encoders' own records (control records are shown beside them, not as columns)."""
    return [r for r in card.sorted().records if r.control_of is None]


def table_rows(card: Scorecard) -> tuple[list[str], list[list[str]]]:
    """Metrics as rows, encoders as columns (the comparison view)."""
    records = measured(card)
    encoders = sorted({r.encoder for r in records})
    rows: dict[tuple[str, str, str], dict[str, str]] = {}
    for record in records:
        rows.setdefault((record.probe, record.dataset, record.metric), {})[record.encoder] = format_cell(record)
    headers = ["probe", "dataset", "metric", *encoders]
    body = [[*key, *(cells.get(e, "—") for e in encoders)] for key, cells in rows.items()]
    return headers, body


def control_rows(card: Scorecard) -> tuple[list[str], list[list[str]]]:
    """Each metric between its chance level, its random-init floor and the measured value.

    Chance comes from the probe (``details["chance"]``), the floor from the random-init control
    run, the shuffled-label control from the probe's selectivity record.
    """
    records = measured(card)
    selectivity = {(r.encoder, r.probe, r.dataset): r for r in records if r.metric == "selectivity"}
    body = []
    for r in records:
        if r.metric == "selectivity":
            continue
        chance = r.details.get("chance")
        control = selectivity.get((r.encoder, r.probe, r.dataset))
        if chance is None and r.floor is None and control is None:
            continue
        fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
        body.append([r.encoder, r.probe, r.dataset, r.metric, fmt(chance), fmt(r.floor),
                     fmt(control.details.get("control") if control else None), fmt(r.value),
                     fmt(control.value if control else None)])
    headers = ["encoder", "probe", "dataset", "metric", "chance", "random-init floor",
               "shuffled-label control", "measured", "selectivity"]
    return headers, body


def to_markdown(card: Scorecard) -> str:
    from tabulate import tabulate

    p = card.provenance
    headers, body = table_rows(card)
    lines = [
        "# pytest-visprobe scorecard",
        "",
        f"profile `{p.profile}` · seed {p.seed}" + (f" · limit {p.limit}/split" if p.limit else "") + f" · device `{p.device}` · "
        f"{p.created.isoformat(timespec='seconds')}" + (f" · commit `{p.git_commit[:10]}`" if p.git_commit else ""),
        "",
        f"tests: {card.outcome.passed} passed, {card.outcome.failed} failed, "
        f"{card.outcome.errors} errors, {card.outcome.skipped} skipped · feature sets: "
        f"{p.features.get('computed', 0)} computed, {p.features.get('from_disk', 0)} from cache",
        "",
    ]
    if body:
        lines.append(tabulate(body, headers=headers, tablefmt="github", disable_numparse=True))
    else:
        lines.append("_No metrics were recorded._")
    notes = ["", "Cells: value [95 % interval] (± std over trials) ▲/▼ change vs baseline (▲ better) "
                 "✓/✗ against threshold and baseline."]
    if p.baseline:
        notes.append(f"Baseline: `{p.baseline}`, tolerance {p.tolerance}; a metric fails only when it "
                     f"drops by more than the tolerance and by more than the noise explains.")
    failing = [r for r in measured(card) if not r.passed]
    if failing:
        notes += ["", "## Failing metrics", ""]
        for r in failing:
            notes.append(f"- `{r.encoder}` {r.probe}.{r.metric} on {r.dataset}: {r.value:.4f} "
                         f"(threshold {r.threshold}, baseline {r.baseline}) — `{r.nodeid}`")
    control_headers, control_body = control_rows(card)
    if control_body:
        notes += ["", "## Controls", "",
                  "Each metric between chance, the same architecture re-initialised at random, the same "
                  "probe trained on permuted labels, and the encoder itself.", "",
                  tabulate(control_body, headers=control_headers, tablefmt="github", disable_numparse=True)]
    if card.plots:
        notes += ["", "## Plots", ""]
        notes += [f"![{Path(name).stem}]({name})" for name in card.plots]
    if card.encoders:
        notes += ["", "## Encoders", ""]
        notes += [f"- `{e.name}` ← `{e.ref}` · fingerprint `{e.fingerprint[:12]}` · input "
                  f"{e.input_size or 'as given'} · {e.parameters:,} parameters" for e in card.sorted().encoders]
    return "\n".join(lines + notes) + "\n"
