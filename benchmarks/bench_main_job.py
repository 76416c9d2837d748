"""Where the main job's time goes: cold (empty feature cache) and warm, each phase's share.

Runs ``pytest --encoder=examples/tiny_cnn.py --encoder=examples/trained_cnn.py suites/`` (or the
pytest arguments after ``--``) twice in fresh processes with a fresh ``VISPROBE_CACHE_DIR``:
first cold, then warm on the cache the first run filled. A sampling profiler (the main
thread's stack every few ms; no tracing overhead on the probes' inner loops) puts each sample
in one phase, the first that matches anywhere on the stack in this order:

forward passes (features.py extracting) > plots (report/plots) > encoder loading (incl. the
example's one-time training) > data (datasets/) > the probe family (the outermost
probes/<family>.py frame) > other (pytest, imports, reporting).

    python benchmarks/bench_main_job.py [--interval 0.005] [-- PYTEST ARGS...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

MAIN_JOB = ["--encoder=examples/tiny_cnn.py", "--encoder=examples/trained_cnn.py", "suites/"]
PHASES = ("forward passes", "plots", "encoder loading", "data")


def phase_of(frame) -> str:
    """The phase of one stack sample (see the module docstring for the order)."""
    found: set[str] = set()
    family = None
    while frame is not None:
        path = frame.f_code.co_filename.replace(os.sep, "/")
        if "pytest_visprobe/" in path:
            inner = path.rsplit("pytest_visprobe/", 1)[1]
            if inner == "features.py" and frame.f_code.co_name in ("_batches", "_compute", "_write"):
                found.add("forward passes")
            elif inner.startswith("report/plots"):
                found.add("plots")
            elif inner.startswith("encoders/"):
                found.add("encoder loading")
            elif inner.startswith("datasets/"):
                found.add("data")
            elif (inner.startswith("probes/") and inner not in ("probes/spec.py", "probes/__init__.py")
                  and frame.f_code.co_name != "<module>"):  # importing a probe module is not running it
                family = "probe: " + inner.removeprefix("probes/").removesuffix(".py")  # outermost wins
        frame = frame.f_back
    for phase in PHASES:
        if phase in found:
            return phase
    return family or "other (pytest, imports, reporting)"


def profile_child(pytest_args: list[str], interval: float) -> None:
    """Run pytest in this process while a thread samples the main thread; print phase seconds."""
    import pytest

    main = threading.main_thread().ident
    counts: Counter[str] = Counter()
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval):
            frame = sys._current_frames().get(main)
            if frame is not None:
                counts[phase_of(frame)] += 1

    sampler = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    sampler.start()
    code = pytest.main(pytest_args)
    done.set()
    sampler.join()
    wall = time.perf_counter() - start
    total = sum(counts.values()) or 1
    print(json.dumps({"exit": int(code), "wall": wall,
                      "phases": {k: wall * v / total for k, v in counts.items()}}))


def run(label: str, cache: str, pytest_args: list[str], interval: float) -> dict:
    env = dict(os.environ, VISPROBE_CACHE_DIR=cache, MPLBACKEND="Agg")
    cmd = [sys.executable, __file__, "--child", "--interval", str(interval), "--", *pytest_args, "-q", "-p",
           "no:cacheprovider"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        sys.exit(f"{label} run printed no profile:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1])
    print(f"\n{label}: {result['wall']:.1f} s wall (pytest exit code {result['exit']})")
    for phase, seconds in sorted(result["phases"].items(), key=lambda kv: -kv[1]):
        print(f"  {phase:38s} {seconds:7.1f} s  {100 * seconds / result['wall']:5.1f} %")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between stack samples")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("pytest_args", nargs="*", help="pytest arguments after --; default: the main job")
    args = parser.parse_args()
    pytest_args = args.pytest_args or MAIN_JOB
    if args.child:
        profile_child(pytest_args, args.interval)
        return
    with tempfile.TemporaryDirectory(prefix="visprobe-bench-cache-") as cache, \
            tempfile.TemporaryDirectory(prefix="visprobe-bench-report-") as report:
        pytest_args = [*pytest_args, f"--visprobe-report={report}"]
        print(f"pytest {' '.join(pytest_args)}  (VISPROBE_CACHE_DIR={cache})")
        cold = run("cold (empty cache)", cache, pytest_args, args.interval)
        warm = run("warm (every feature from the cache)", cache, pytest_args, args.interval)
        print(f"\ncold {cold['wall']:.1f} s, warm {warm['wall']:.1f} s")


if __name__ == "__main__":
    main()
