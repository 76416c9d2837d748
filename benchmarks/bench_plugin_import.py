"""What the installed plugin costs every pytest run in the user's environment.

Prints, with ``python -X importtime``, the cumulative import time of ``pytest_visprobe.plugin``
and the wall time of ``pytest --version`` with the plugin and with it disabled
(``-p no:visprobe``), as the median of several runs, and the ratio. The target (issue "A probe is
declared once") is at most 50 ms added to ``pytest --version``, and no torch, numpy or pydantic
imported by the plugin module.

    python benchmarks/bench_plugin_import.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time


def import_time_us(module: str, after: str = "sys") -> tuple[int, list[str]]:
    """Cumulative microseconds of importing ``module`` in a fresh interpreter once ``after`` is
    imported (so what they share is not counted), and the heavy modules it pulled in."""
    code = (f"import sys, {after}; import {module}; "
            "print('HEAVY', [m for m in ('torch', 'numpy', 'pydantic', 'scipy', 'PIL') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                          check=True)
    total = 0
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if match and match.group(2) == module:
            total = int(match.group(1))
    heavy = eval(done.stdout.split("HEAVY", 1)[1].strip())  # a list literal we printed ourselves
    return total, heavy


def version_time_s(extra: list[str], repeats: int) -> float:
    times = []
    with tempfile.TemporaryDirectory() as empty:  # no conftest, no ini: only installed plugins load
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pytest", "--version", *extra], capture_output=True, cwd=empty,
                           check=True)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    plugin_us, heavy = import_time_us("pytest_visprobe.plugin", after="pytest")
    pytest_us, _ = import_time_us("pytest")
    print(f"import pytest_visprobe.plugin after pytest: {plugin_us / 1000:.1f} ms "
          f"(import pytest: {pytest_us / 1000:.1f} ms); heavy modules imported: {heavy or 'none'}")
    with_plugin = version_time_s([], args.repeats)
    without = version_time_s(["-p", "no:visprobe"], args.repeats)
    print(f"pytest --version: {with_plugin * 1000:.0f} ms with the plugin, {without * 1000:.0f} ms without "
          f"(median of {args.repeats}); the plugin adds {(with_plugin - without) * 1000:.0f} ms "
          f"(ratio {with_plugin / without:.2f}; target: at most 50 ms)")


if __name__ == "__main__":
    main()
