"""The scorecard: one typed, versioned JSON document per session, and its Markdown view.

Records are sorted by (probe, dataset, metric, encoder), so a serial run and ``pytest -n N``
produce the same document apart from timings.

Schema versions: 2 added each record's uncertainty (``interval``, ``samples``), the baseline
comparison (``comparison``) and controls (``floor``, ``control_of``); 3 made each probe's
``details`` its spec's typed model and moved the chance level out of them into ``chance``, and
added ``settings_hash``; 4 added what makes two records comparable (``probe_version``,
``data_key``, the probes' effective ``settings`` per document), per-unit statistics (``units``)
for paired bootstrap comparisons, and ``uncertainty`` where a metric has no honest interval; 5
added each record's ``layer`` (``--visprobe-layers``; absent: the encoder's embedding, ``last``).
Older documents are migrated on load (``migrate``), so a baseline
written by an earlier version still gates; a newer one is refused with the versions named.
The JSON schema is exported by ``pytest --visprobe-schema``.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pytest_visprobe.errors import ConfigError

SCHEMA_VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)
LAST = "last"  # a record's layer when it has none: the encoder's own embedding


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


class Units(BaseModel):
    """Per-unit statistics of a record (report/units.py): rows a later run pairs with."""

    model_config = ConfigDict(extra="forbid")

    statistic: str  # name in report.units.STATISTICS that recomputes the value from rows
    unit: str  # what one row is: "test image", "source image", "test sample"
    split: str
    n: int
    key: str  # hash of (dataset or derived-data fingerprint, split, n): the same units in the same order
    note: str | None = None  # what resampling holds fixed, e.g. "partition fixed"
    columns: str | None = None  # a crossed second unit along the arrays' second axis, e.g. "support set"
    arrays: dict[str, dict[str, Any]]  # name -> {dtype, shape, data (base64)}


class Comparison(BaseModel):
    """How a record was compared with its baseline (see report/gate.py for the rule)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["paired_bootstrap", "paired_sign_flip", "mcnemar", "intervals", "tolerance"]
    drop: float  # how much worse than the baseline, in the metric's units (negative: better)
    noise: float | None = None  # intervals: the drop the noise explains (95 %)
    drop_low: float | None = None  # paired_*: 95 % bootstrap interval of the drop
    drop_high: float | None = None
    unit: str | None = None  # paired tests: the unit resampled or paired
    p_value: float | None = None  # two-sided: mcnemar exact, paired_sign_flip exact/Monte Carlo, paired_bootstrap percentile
    worse: int | None = None  # mcnemar: samples right in the baseline, wrong now
    better: int | None = None  # mcnemar: samples wrong in the baseline, right now
    note: str | None = None  # why a paired comparison was not possible, or could not reach significance


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
    chance: float | None = None  # the metric's chance level, by its probe's rule (--visprobe-list)
    settings_hash: str | None = None  # hash of the probe's effective settings (profiles.settings_hash)
    probe_version: int | None = None  # the probe spec's version: a new definition is not comparable
    data_key: str | None = None  # fingerprint of derived data the metric saw (e.g. transformed views)
    units: Units | None = None  # per-unit statistics (paired bootstrap against a baseline)
    uncertainty: str | None = None  # why there is no interval, where there is none
    layer: str | None = None  # the layer read (--visprobe-layers; encoder is then ENCODER@LAYER); None: last

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.encoder, self.probe, self.dataset, self.metric)

    @property
    def layer_name(self) -> str:
        """The layer read, ``last`` for the encoder's own embedding (also every record before schema 5)."""
        return self.layer or LAST

    @property
    def source_encoder(self) -> str:
        """The encoder a layer record belongs to (its name without ``@LAYER``)."""
        suffix = f"@{self.layer}"
        return self.encoder[:-len(suffix)] if self.layer and self.encoder.endswith(suffix) else self.encoder


class EncoderInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    ref: str
    fingerprint: str
    input_size: list[int] | None = None
    parameters: int = 0
    has_feature_map: bool = False
    layer_of: str | None = None  # a layer view (--visprobe-layers): the encoder it reads a layer of
    layer_depth: int | None = None  # its position in that encoder's layers() (None: not one of them)


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
    threshold_on: str = "value"  # --visprobe-threshold-on: the point value or the interval's bound
    map_dtype: str | None = None  # --visprobe-map-dtype: how feature maps were cached (None: before it was recorded)


class ProbeInfo(BaseModel):
    """A probe's effective settings in a run, so a mismatch with a baseline can be named."""

    model_config = ConfigDict(extra="forbid")

    version: int
    settings: dict[str, Any]
    settings_hash: str


class Outcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0


class Scorecard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[5] = SCHEMA_VERSION
    provenance: Provenance
    probes: dict[str, ProbeInfo] = Field(default_factory=dict)  # probes that ran: their settings
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


def migrate(document: Any) -> Any:
    """An older scorecard document as the current schema: chance leaves ``details`` (v1, v2);
    v3 records simply lack the fields v4 added (the gate warns that it could not check them), v3
    and v4 records the ``layer`` v5 added (they are the encoder's embedding)."""
    if not isinstance(document, dict):
        return document
    version = document.get("schema_version")
    if version in (3, 4):  # v3/v4 records lack later fields; a record without a layer is the last
        document["schema_version"] = SCHEMA_VERSION
    if version in (1, 2):
        for record in document.get("records", []) or []:
            if isinstance(record, dict) and isinstance(record.get("details"), dict):
                details = dict(record["details"])
                chance = details.pop("chance", None)
                record["details"] = details
                record.setdefault("chance", chance)
        document["schema_version"] = SCHEMA_VERSION
    return document


def load_scorecard(path: Path) -> Scorecard:
    """Read an accepted scorecard (a baseline); a malformed one is a ConfigError with the fix."""
    hint = ("Point --visprobe-baseline at a scorecard.json that a run wrote (in its --visprobe-report "
            "directory).")
    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text)
    except OSError as exc:
        raise ConfigError(f"baseline {path} could not be read: {exc}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"baseline {path} is not a text file, so not a pytest-visprobe scorecard. {hint}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"baseline {path} is not a pytest-visprobe scorecard: not valid JSON ({exc}). "
                          f"{hint}") from None
    version = document.get("schema_version") if isinstance(document, dict) else None
    if isinstance(version, int) and version not in READABLE_VERSIONS:
        raise ConfigError(
            f"baseline {path} has schema_version {version}; this pytest-visprobe reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}. Upgrade pytest-visprobe to read it, or point "
            f"--visprobe-baseline at a scorecard this version wrote (make one with --visprobe-bless).")
    try:
        return Scorecard.model_validate(migrate(document))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[:3]
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}" for e in first)
        raise ConfigError(
            f"baseline {path} is not a pytest-visprobe scorecard (schema_version "
            f"{' or '.join(map(str, READABLE_VERSIONS))}): {problems}. {hint}"
        ) from None


def schema_json() -> str:
    """The scorecard's JSON schema (``pytest --visprobe-schema``), from the models."""
    return json.dumps(Scorecard.model_json_schema(), indent=2)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_scorecard(card: Scorecard, directory: Path, sheets: Sequence[str] = ()) -> tuple[Path, Path]:
    """Plots first (the documents link them), then scorecard.json and scorecard.md; ``sheets``
    are contact sheets already written (paths relative to ``directory``), linked from the Markdown
    only: the JSON holds no images."""
    from pytest_visprobe.report.markdown import to_markdown
    from pytest_visprobe.report.plots import write_plots

    card = card.sorted()
    plots = write_plots(card, directory)
    card = card.model_copy(update={"plots": [p.name for p in plots]})
    json_path, md_path = directory / "scorecard.json", directory / "scorecard.md"
    write_atomic(json_path, json.dumps(card.model_dump(mode="json"), indent=2) + "\n")
    write_atomic(md_path, to_markdown(card, sheets=sheets))
    return json_path, md_path
