"""Is a baseline record comparable with this run's? Like must be compared with like.

Two records are comparable only when they were measured on the same data (dataset
fingerprint, checked per dataset by the session), by the same definition of the probe (its
spec's ``version``), with the same effective settings (the hash of its settings model), and on
the same derived data (``data_key``: e.g. the transformed views), and on the same layer
(``--visprobe-layers``; a record without one is the encoder's embedding, ``last``). A difference is named
field by field, e.g. ``label_probe.recipe: lbfgs → adam``, so the reader knows what to change.

A baseline written before settings were recorded (schema 3 and older) cannot be checked: it is
compared with a warning saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pytest_visprobe.report.scorecard import LAST, ProbeInfo, Record


@dataclass(frozen=True)
class Comparability:
    differences: tuple[str, ...] = ()  # non-empty: not comparable
    warning: str | None = None  # comparable, but something could not be checked


def flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{"head.recipe": "adam", ...}``."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def setting_differences(probe: str, baseline: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``probe.key: old → new`` for every setting that differs (missing: ``(unset)``)."""
    old, new = flatten(baseline), flatten(current)
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key, ...) != new.get(key, ...):
            before = "(unset)" if key not in old else _show(old[key])
            after = "(unset)" if key not in new else _show(new[key])
            out.append(f"{probe}.{key}: {before} → {after}")
    return out


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def check(baseline: Record, baseline_probe: ProbeInfo | None, current: ProbeInfo,
          data_key: str | None, layer: str | None = None) -> Comparability:
    """Whether ``baseline`` may be compared with a record measured with ``current``'s settings on
    ``layer`` (``None``: the encoder's embedding, ``--visprobe-layers=last``)."""
    probe = baseline.probe
    if baseline.layer != layer:
        return Comparability(differences=(f"{probe} layer: {baseline.layer or LAST} → {layer or LAST}",))
    if baseline.settings_hash is None:
        return Comparability(warning=(
            f"the baseline's {probe} record carries no settings hash (written by an older "
            f"pytest-visprobe), so its probe settings could not be checked against this run's; "
            f"re-bless the baseline with --visprobe-bless to record them"))
    differences: list[str] = []
    if baseline.probe_version is not None and baseline.probe_version != current.version:
        differences.append(f"{probe} definition: version {baseline.probe_version} → {current.version}")
    if baseline.settings_hash != current.settings_hash:
        if baseline_probe is not None and baseline_probe.settings_hash == baseline.settings_hash:
            differences += setting_differences(probe, baseline_probe.settings, current.settings) or [
                f"{probe} settings hash {baseline.settings_hash} → {current.settings_hash}"]
        else:
            differences.append(f"{probe} settings hash {baseline.settings_hash} → {current.settings_hash} "
                               f"(the baseline does not list its settings)")
    if baseline.data_key != data_key:
        differences.append(f"{probe} derived data (e.g. transformed views): "
                           f"{baseline.data_key or 'not recorded'} → {data_key or 'not recorded'}")
    return Comparability(differences=tuple(differences))
