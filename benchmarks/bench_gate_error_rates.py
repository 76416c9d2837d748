"""What the gate can see: its false-alarm rate and the smallest drop it detects, per metric.

    python benchmarks/bench_gate_error_rates.py visprobe-report/scorecard.json [--trials 200]

Reads a scorecard (the main job's) and, for every record that kept per-unit statistics (paired
bootstrap) or per-sample 0/1 outcomes (McNemar), simulates pairs of runs from its stored rows:

- **Null** (nothing changed): both runs are the stored rows with 10 % of the rows replaced by
  rows drawn from the same record (independently per run), so the two runs differ unit by unit
  but come from the same population. A pooled ratio's donor has the same denominator (a source
  image keeps its number of views in every comparable run: the view assignment is part of the
  comparability key). The share of trials the test calls significant (either
  side) is the false-alarm rate; the target is at most 1.5 × the nominal 5 %. The gate fails
  only on the worse side, so its own false alarms are about half of that.
- **Power**: the second run also loses a fraction of its units (a 0/1 outcome turned wrong, an
  image's intersections zeroed or its detections unmatched, a sample moved to a random cluster); the smallest mean drop
  detected in at least 80 % of trials is printed, by the test alone and by the gate (which
  also needs the drop to exceed the tolerance).

Records with intervals only (no rows) cannot be simulated and are listed as such.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from pytest_visprobe.report.scorecard import Record, load_scorecard
from pytest_visprobe.report.statistics import ALPHA, Bits, mcnemar_exact
from pytest_visprobe.report.units import UnitStats, decode_array, paired_bootstrap

REPLACED = 0.10  # share of rows redrawn per run under the null
FRACTIONS = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)


def rows_of(record: Record) -> tuple[str, dict[str, np.ndarray], str | None] | None:
    """(statistic, rows, crossed column unit or None) of a record that kept its units or samples."""
    if record.units is not None:
        arrays = {k: decode_array(a) for k, a in record.units.arrays.items()}
        return record.units.statistic, arrays, record.units.columns
    if record.samples is not None:
        return "mcnemar", {"value": Bits(record.samples.n, record.samples.bits).to_array().astype(float)}, None
    return None


def redraw(arrays: dict[str, np.ndarray], share: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = len(next(iter(arrays.values())))
    out = {k: a.copy() for k, a in arrays.items()}
    rows = np.flatnonzero(rng.random(n) < share)
    if "denominator" in arrays:  # the donor of a pooled ratio holds as many items as the row it replaces
        weight = arrays["denominator"]
        donors = np.array([rng.choice(np.flatnonzero(weight == weight[r])) for r in rows], dtype=np.int64)
    else:
        donors = rng.integers(0, n, rows.size)
    for k in out:
        out[k][rows] = arrays[k][donors]
    return out


def degrade(statistic: str, arrays: dict[str, np.ndarray], share: float, higher: bool,
            rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A worse run: ``share`` of the units lose what they had."""
    out = {k: a.copy() for k, a in arrays.items()}
    n = len(next(iter(arrays.values())))
    rows = rng.random(n) < share
    if statistic in ("mean", "mcnemar"):
        out["value"][rows] = 0.0 if higher else 1.0
    elif statistic == "ratio":
        out["numerator"][rows] = 0.0 if higher else out["denominator"][rows]
    elif statistic == "miou":
        out["intersection"][rows] = 0
    elif statistic.startswith("coco_"):  # the image's detections all become false positives
        out["matched"][rows] = 0
    else:  # partitions: the sample lands in a random cluster
        clusters = np.unique(arrays["clusters"])
        out["clusters"][rows] = rng.choice(clusters, int(rows.sum()))
    return out


def test(statistic: str, base: dict, now: dict, higher: bool, rng: np.random.Generator,
         resamples: int, columns: str | None = None) -> tuple[float, float]:
    """(drop, p) of the gate's paired test (units.paired_bootstrap: its p is the sign-flip test's
    for additive statistics, the bootstrap's otherwise)."""
    if statistic == "mcnemar":
        b, c = base["value"].astype(bool), now["value"].astype(bool)
        if not higher:
            b, c = ~b, ~c
        drop = float(b.mean() - c.mean())
        return drop, mcnemar_exact(b, c).p_value
    result = paired_bootstrap(UnitStats(statistic, "unit", base, columns=columns),
                              UnitStats(statistic, "unit", now, columns=columns),
                              higher_is_better=higher, rng=rng, resamples=resamples, level=0.95)
    return result.drop, result.p_value


def simulate(record: Record, statistic: str, arrays: dict, *, trials: int, resamples: int, tolerance: float,
             seed: int, columns: str | None = None, power: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    higher = record.higher_is_better
    alarms = 0
    for _ in range(trials):
        drop, p = test(statistic, redraw(arrays, REPLACED, rng), redraw(arrays, REPLACED, rng), higher, rng,
                       resamples, columns)
        alarms += p < ALPHA  # two-sided, as the nominal 5 % (the gate fails on the worse side only)
    found = {"test": None, "gate": None}
    for share in FRACTIONS if power else ():
        drops, detected, gated = [], 0, 0
        for _ in range(max(20, trials // 4)):
            base = redraw(arrays, REPLACED, rng)
            now = degrade(statistic, redraw(arrays, REPLACED, rng), share, higher, rng)
            drop, p = test(statistic, base, now, higher, rng, resamples, columns)
            drops.append(drop)
            detected += p < ALPHA and drop > 0
            gated += p < ALPHA and drop > tolerance
        runs = len(drops)
        if found["test"] is None and detected >= 0.8 * runs:
            found["test"] = float(np.mean(drops))
        if found["gate"] is None and gated >= 0.8 * runs:
            found["gate"] = float(np.mean(drops))
        if found["gate"] is not None:
            break
    return {"false_alarm": alarms / trials, **found}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scorecard", type=Path, nargs="?", default=Path("visprobe-report/scorecard.json"))
    parser.add_argument("--trials", type=int, default=200, help="simulated run pairs per metric under the null")
    parser.add_argument("--resamples", type=int, default=400, help="bootstrap resamples per paired test")
    parser.add_argument("--tolerance", type=float, default=0.02, help="the gate's --visprobe-tolerance")
    parser.add_argument("--encoder", help="only this encoder's records (default: all)")
    parser.add_argument("--probe", action="append", help="only this probe's records (repeatable; default: all)")
    parser.add_argument("--no-power", action="store_true", help="false-alarm rates only (more trials, same time)")
    args = parser.parse_args(argv)
    card = load_scorecard(args.scorecard)
    lines = ["| metric | dataset | encoder | test (unit) | false alarms (nominal 5 %) | smallest drop seen, test "
             "| smallest drop failed, gate (tol. {:g}) |".format(args.tolerance),
             "|---|---|---|---|---|---|---|"]
    unmeasured = []
    worst = 0.0
    for i, record in enumerate(r for r in card.sorted().records if r.control_of is None):
        if (args.encoder and record.encoder != args.encoder) or (args.probe and record.probe not in args.probe):
            continue
        found = rows_of(record)
        if found is None:
            why = record.uncertainty or ("intervals only" if record.interval else "no interval")
            unmeasured.append(f"{record.probe}.{record.metric} on {record.dataset} ({record.encoder}): {why}")
            continue
        statistic, arrays, columns = found
        result = simulate(record, statistic, arrays, trials=args.trials, resamples=args.resamples,
                          tolerance=args.tolerance, seed=i, columns=columns, power=not args.no_power)
        worst = max(worst, result["false_alarm"])
        unit = record.units.unit if record.units else f"{record.samples.split} sample"
        unit += f" × {columns}" if columns else ""
        name = {"mcnemar": "McNemar"}.get(statistic, "paired bootstrap")
        if statistic in ("mean", "ratio") and columns is None:
            name = "paired sign-flip"
        fmt = lambda v: "> tested range" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"| {record.probe}.{record.metric} | {record.dataset} | {record.encoder} | {name} ({unit}) | "
                     f"{100 * result['false_alarm']:.1f} % | {fmt(result['test'])} | {fmt(result['gate'])} |")
        print(lines[-1], flush=True)
    print()
    print("\n".join(lines))
    if unmeasured:
        print("\nNot simulated (no per-unit rows kept):")
        print("\n".join(f"- {u}" for u in unmeasured))
    print(f"\nworst false-alarm rate: {100 * worst:.1f} % (target <= {1.5 * 100 * ALPHA:.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
