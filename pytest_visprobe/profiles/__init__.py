"""Profiles are data: TOML files naming each dataset role's datasets, their sizes, and probe settings.

The built-in ``quick`` (offline default: embedded datasets, CPU in minutes), ``standard`` (real
datasets at their usual sizes, GPU) and ``paper`` (PROTOCOLS.md) ship beside this module. A
user's file (``--visprobe-profile path/to/mine.toml``) may ``extends = "quick"`` (or another
file) and override single keys. Each ``[probes.NAME]`` table is validated by that probe's
settings model (its ``ProbeSpec.settings``); a probe without a table runs on its defaults.

```toml
extends = "quick"
description = "quick, with 20 few-shot trials"
[probes.fewshot]
trials = 20
```
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pytest_visprobe.errors import ConfigError
from pytest_visprobe.registry import Registry

BUILTIN_DIR = Path(__file__).parent


class GateConfig(BaseModel):
    """Uncertainty and preflight settings for CI gating (report/statistics.py, encoders/preflight.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resamples: int = Field(1000, gt=0)  # bootstrap resamples per interval
    level: float = Field(0.95, gt=0, lt=1)  # confidence level of the intervals
    preflight_images: int = Field(8, ge=4)  # real images per preflight check (two halves are swapped)


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    source: str = ""  # the file it was read from (and the files it extends)
    #: dataset role -> dataset specs; ``--visprobe-dataset`` replaces them (runner/session.py)
    datasets: dict[str, tuple[str, ...]] = {}
    #: dataset name -> loader options (sizes); specs not listed use the loader's defaults
    dataset_options: dict[str, dict[str, Any]] = {}
    batch_size: int = Field(64, gt=0)  # images per forward pass
    gate: GateConfig = GateConfig()
    #: probe name -> its settings table, validated by ``settings_for``
    probes: dict[str, dict[str, Any]] = {}

    def settings_for(self, probe: str) -> BaseModel:
        """The probe's settings model filled from this profile's ``[probes.NAME]`` table."""
        from pytest_visprobe.probes.spec import get_probe

        spec = get_probe(probe)
        try:
            return spec.settings.model_validate(self.probes.get(probe, {}))  # type: ignore[union-attr]
        except ValidationError as exc:
            raise ConfigError(f"profile {self.name!r} ({self.source}): {_problems(exc, f'probes.{probe}')}") from None

    def validate_probes(self) -> None:
        """Every ``[probes.NAME]`` table names a registered probe and fits its settings model."""
        from pytest_visprobe.probes.spec import PROBES

        for name in self.probes:
            if name not in PROBES:
                raise ConfigError(f"profile {self.name!r} ({self.source}): [probes.{name}]: "
                                  f"{PROBES._unknown(name)}")
            self.settings_for(name)


def settings_hash(settings: "BaseModel | Mapping[str, Any]") -> str:
    """A stable short hash of a settings model's values, or of their JSON dump (keys sorted), for
    comparability keys."""
    values = settings.model_dump(mode="json") if isinstance(settings, BaseModel) else dict(settings)
    text = json.dumps(values, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


PROFILES: Registry[Path] = Registry("profile", hint="Or pass a path: --visprobe-profile=path/to/profile.toml.")
for _file in sorted(BUILTIN_DIR.glob("*.toml")):
    PROFILES.register(_file.stem, _file)


def register_profile(name: str, path: Path | str, *, replace: bool = False) -> None:
    """Make ``--visprobe-profile=NAME`` read ``path`` (a plugin shipping its own profile)."""
    PROFILES.register(name, Path(path), replace=replace)


def get_profile(name_or_path: str) -> Profile:
    """A registered profile by name, or a TOML file by path; every problem is a ConfigError."""
    return Profile.model_validate(_read(name_or_path, seen=()))


def _read(ref: str, seen: tuple[str, ...]) -> dict[str, Any]:
    path = _locate(ref)
    key = str(path.resolve())
    if key in seen:
        raise ConfigError(f"profile {path}: 'extends' forms a cycle ({' → '.join(seen + (key,))}).")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"profile {path} could not be read: {exc}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"profile {path} is not valid TOML: {exc}.") from None
    parent = raw.pop("extends", None)
    name = raw.pop("name", None) or (ref if ref in PROFILES else path.stem)
    base: dict[str, Any] = {}
    sources = [str(path)]
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"profile {path}: 'extends' must be a profile name or a path, got {parent!r}.")
        if not _looks_like_path(parent) or Path(parent).is_absolute():
            base = _read(parent, seen + (key,))
        else:  # a relative path is relative to the file that names it
            base = _read(str(path.parent / parent), seen + (key,))
        sources.append(base.pop("source"))
        base.pop("name", None)
    merged = _merge(base, raw)
    merged["name"], merged["source"] = name, " extends ".join(sources)
    try:
        Profile.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(f"profile {path}: {_problems(exc)}") from None
    return merged


def _looks_like_path(ref: str) -> bool:
    return ref.endswith(".toml") or "/" in ref or "\\" in ref


def _locate(ref: str) -> Path:
    if _looks_like_path(ref):
        path = Path(ref)
        if not path.is_file():
            raise ConfigError(f"profile file not found: {path.resolve()}. Give a registered profile "
                              f"({', '.join(PROFILES.names())}) or the path of a TOML file.")
        return path
    try:
        return PROFILES.get(ref)
    except KeyError as exc:
        raise ConfigError(str(exc)) from None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (lists included) replaces the base's."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _problems(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(err["loc"])) or "document"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts) + "."
