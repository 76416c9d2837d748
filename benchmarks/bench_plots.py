"""Time every plot a scorecard gets, one plot function at a time (Agg backend).

Prints wall and CPU seconds per plot function and in all (CPU time is the honest figure on a
shared machine). Target (issue 16): the main job's plots under 1 s in all.

    python benchmarks/bench_plots.py visprobe-report/scorecard.json [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scorecard", type=Path)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs per plot")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot  # noqa: F401  (its import is not a plot's cost)

    from pytest_visprobe.probes.spec import PROBES
    from pytest_visprobe.registry import resolve
    from pytest_visprobe.report.scorecard import Scorecard

    card = Scorecard.model_validate_json(args.scorecard.read_text())
    probes = dict.fromkeys(r.probe for r in card.records)
    targets = dict.fromkeys(PROBES.get(p).plot for p in probes if p in PROBES and PROBES.get(p).plot)
    total_wall = total_cpu = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for target in targets:
            plot = resolve(target) if isinstance(target, str) else target
            runs = []
            for _ in range(args.repeat):
                wall, cpu = time.perf_counter(), time.process_time()
                written = plot(card, Path(folder))
                runs.append((time.perf_counter() - wall, time.process_time() - cpu))
            wall, cpu = min(runs, key=lambda r: r[1])
            total_wall += wall
            total_cpu += cpu
            name = target if isinstance(target, str) else target.__name__
            print(f"{name:70s} {len(written):2d} PNG  wall {wall:6.2f} s  cpu {cpu:6.2f} s")
    print(f"{'all plots':70s}         wall {total_wall:6.2f} s  cpu {total_cpu:6.2f} s")


if __name__ == "__main__":
    main()
