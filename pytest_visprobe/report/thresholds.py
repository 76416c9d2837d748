"""Threshold files: TOML beside the suites, validated by pydantic, most specific rule wins.

```toml
[[threshold]]
probe = "label_probe"      # required
metric = "top1"            # required
value = 0.5                # the bound; its direction comes from the metric (higher/lower is better)
dataset = "digits"         # optional: only this dataset
encoder = "resnet*"        # optional: glob on the encoder id (per-encoder thresholds)
```
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from pytest_visprobe.errors import ConfigError
from pytest_visprobe.probes.spec import metric_spec


class ThresholdRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    probe: str
    metric: str
    value: float
    dataset: str | None = None
    encoder: str | None = None

    @model_validator(mode="after")
    def _known_metric(self) -> "ThresholdRule":
        try:
            spec = metric_spec(self.probe, self.metric)
        except KeyError as exc:
            raise ValueError(exc.args[0].rstrip(".")) from None
        low, high = spec.lower, spec.upper
        if (low is not None and self.value < low) or (high is not None and self.value > high):
            raise ValueError(f"value {self.value} is outside {self.probe}.{self.metric}'s range [{low}, {high}]")
        return self

    @property
    def specificity(self) -> int:
        return 2 * (self.encoder is not None) + (self.dataset is not None)


class ThresholdsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: list[ThresholdRule] = []


@dataclass(frozen=True)
class Threshold:
    value: float
    source: str  # "path (rule N)" — where a user changes it


@dataclass(frozen=True)
class Thresholds:
    path: Path
    rules: tuple[ThresholdRule, ...]

    def lookup(self, probe: str, metric: str, dataset: str, encoder: str) -> Threshold | None:
        """The most specific matching rule; among equals, the last one in the file."""
        best: tuple[int, int] | None = None
        for index, rule in enumerate(self.rules):
            if rule.probe != probe or rule.metric != metric:
                continue
            if rule.dataset is not None and rule.dataset != dataset:
                continue
            if rule.encoder is not None and not fnmatch.fnmatchcase(encoder, rule.encoder):
                continue
            if best is None or rule.specificity >= best[0]:
                best = (rule.specificity, index)
        if best is None:
            return None
        return Threshold(self.rules[best[1]].value, f"{self.path} (rule {best[1] + 1})")


def load_thresholds(path: Path) -> Thresholds:
    """Parse and validate; every problem becomes one ConfigError naming the file and the key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"thresholds file {path} could not be read: {exc}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"thresholds file {path} is not valid TOML: {exc}.") from None
    try:
        parsed = ThresholdsFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_location(err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise ConfigError(
            f"thresholds file {path} is invalid — {problems}. Each [[threshold]] table takes "
            f"probe, metric, value and optionally dataset and encoder."
        ) from None
    return Thresholds(path=path, rules=tuple(parsed.threshold))


def _location(loc: tuple) -> str:
    if len(loc) >= 2 and loc[0] == "threshold" and isinstance(loc[1], int):
        rest = ".".join(str(p) for p in loc[2:])
        return f"[[threshold]] #{loc[1] + 1}" + (f" key {rest!r}" if rest else "")
    return "key " + ".".join(str(p) for p in loc)
