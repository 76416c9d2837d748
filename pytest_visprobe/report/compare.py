"""Compare two scorecards record by record: ``python -m pytest_visprobe.report.compare OLD NEW``.

Records are matched by (encoder, probe, dataset, metric, control_of); the table shows every
value and 95 % interval bound that moved by more than ``--atol``, records only one side has, and
exits 1 when there are any (0 when the two agree, 2 when a file is not a scorecard). Used to check that a refactor left the main
job's numbers unchanged, and by CI users to see what a new checkpoint changed.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from pytest_visprobe.errors import ConfigError
from pytest_visprobe.report.scorecard import Record, Scorecard, load_scorecard

Key = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class Change:
    key: Key
    field: str  # "value", "interval.low", "interval.high", "spread", "only in old", "only in new"
    old: float | None
    new: float | None


def _key(record: Record) -> Key:
    return (record.encoder, record.probe, record.dataset, record.metric, record.control_of or "")


def _numbers(record: Record) -> dict[str, float | None]:
    return {"value": record.value, "spread": record.spread,
            "interval.low": record.interval.low if record.interval else None,
            "interval.high": record.interval.high if record.interval else None}


def differences(old: Scorecard, new: Scorecard, atol: float = 1e-9) -> list[Change]:
    """Every number that differs by more than ``atol``, and every record only one side has."""
    before = {_key(r): r for r in old.records}
    after = {_key(r): r for r in new.records}
    changes: list[Change] = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            changes.append(Change(key, "only in old", before[key].value, None))
        elif key not in before:
            changes.append(Change(key, "only in new", None, after[key].value))
        else:
            a, b = _numbers(before[key]), _numbers(after[key])
            for name in a:
                x, y = a[name], b[name]
                if (x is None) != (y is None) or (x is not None and abs(x - y) > atol):  # type: ignore[operator]
                    changes.append(Change(key, name, x, y))
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--atol", type=float, default=1e-9, help="ignore differences up to this (default 1e-9)")
    args = parser.parse_args(argv)
    try:
        old, new = load_scorecard(args.old), load_scorecard(args.new)
    except ConfigError as exc:  # the message names the file and the fix; a traceback would hide it
        print(f"error: {exc}", file=sys.stderr)
        return 2
    changes = differences(old, new, args.atol)
    print(f"{len(old.records)} records in {args.old}, {len(new.records)} in {args.new}; "
          f"{len(changes)} differences beyond {args.atol:g}")
    fmt = lambda v: "—" if v is None else f"{v:.6f}"  # noqa: E731
    for change in changes:
        encoder, probe, dataset, metric, control = change.key
        who = f"{encoder}{' (control)' if control else ''}"
        delta = "" if None in (change.old, change.new) else f" ({change.new - change.old:+.6f})"  # type: ignore[operator]
        print(f"  {who} {probe}.{metric} on {dataset} · {change.field}: {fmt(change.old)} → {fmt(change.new)}{delta}")
    return 1 if changes else 0


if __name__ == "__main__":
    sys.exit(main())
