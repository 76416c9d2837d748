"""The reporter: gathers results from test reports; on the controller, writes the scorecard
(JSON, Markdown, plots, the contact sheets the tests drew), the terminal summary and the GitHub
step summary, and blesses a baseline.

Workers attach results to their reports; the controller alone writes files (so ``pytest -n N``
and a serial run give the same scorecard).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from pytest_visprobe.report.scorecard import (
    DatasetInfo,
    EncoderInfo,
    Provenance,
    ProbeInfo,
    Record,
    Scorecard,
    with_floors,
    write_atomic,
    write_scorecard,
)
from pytest_visprobe.report.markdown import table_rows
from pytest_visprobe.runner.session import VisprobeSession

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
SHEETS_DIR = "sheets"  # contact sheets, beside scorecard.json
PACKAGES = ("pytest-visprobe", "torch", "torchvision", "timm", "open_clip_torch", "numpy",
            "scikit-learn", "scikit-image", "pytest")


class Reporter:
    """Gathers results from reports; on the controller writes the scorecard and the summary."""

    def __init__(self, config: pytest.Config, session: VisprobeSession) -> None:
        self.config = config
        self.session = session
        self.is_controller = not hasattr(config, "workerinput")
        self.paths: tuple[Path, Path] | None = None
        self.card: Scorecard | None = None
        self.bless_blockers: list[str] = []  # why this run may not become the baseline
        self.blessed: Path | None = None

    @property
    def active(self) -> bool:
        return bool(self.session.encoder_refs or self.session.collected.records)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        got = self.session.collected
        payload = getattr(report, "visprobe", None)
        if payload:
            got.records += [Record.model_validate(r) for r in payload["records"]]
            for info in payload["encoders"].values():
                got.encoders.setdefault(info["name"], EncoderInfo.model_validate(info))
            for info in payload["datasets"].values():
                got.datasets.setdefault(info["name"], DatasetInfo.model_validate(info))
            for name, info in payload.get("probes", {}).items():
                got.probes.setdefault(name, ProbeInfo.model_validate(info))
            got.sheets.update(payload.get("sheets", {}))
        counters = getattr(report, "visprobe_counters", None)
        if counters:
            got.counters[counters["worker"]] = counters["counters"]
            got.devices.add(counters["device"])
        if report.failed and not getattr(report, "visprobe_verdict", False):
            self.bless_blockers.append(f"{report.nodeid} {'failed' if report.when == 'call' else 'errored in ' + report.when}")
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if report.passed:
                got.outcome.passed += 1
            elif report.skipped:
                got.outcome.skipped += 1
            elif report.when == "setup":
                got.outcome.errors += 1
            else:
                got.outcome.failed += 1
        elif report.when == "teardown" and report.failed:
            got.outcome.errors += 1

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.bless_blockers.append(f"collection error in {report.nodeid or 'the session'}")

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Written even when tests failed or the run was interrupted: nothing computed is lost."""
        if not self.is_controller or not self.active:
            return
        self.card = self._scorecard()
        self.paths = write_scorecard(self.card, self.session.report_dir, sheets=self._write_sheets())
        self.config.hook.pytest_visprobe_scorecard(scorecard=self.card, json_path=self.paths[0],
                                                   markdown_path=self.paths[1], config=self.config)
        markdown = self.paths[1].read_text(encoding="utf-8")
        summary = os.environ.get(STEP_SUMMARY_ENV)
        if summary:  # GitHub Actions shows this file on the run's page
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(markdown + "\n")
        if self.session.run.bless:
            self._bless(session, exitstatus)

    def _write_sheets(self) -> list[str]:
        """The contact sheets the tests drew, as files in ``sheets/`` beside the scorecard; their
        paths relative to it (the Markdown links them). Sheets of an earlier run that this one did
        not draw are deleted, so the folder shows this scorecard only."""
        import base64

        written = []
        directory = self.session.report_dir / SHEETS_DIR
        for name, data in sorted(self.session.collected.sheets.items()):
            directory.mkdir(parents=True, exist_ok=True)
            (directory / name).write_bytes(base64.b64decode(data))
            written.append(f"{SHEETS_DIR}/{name}")
        if directory.is_dir():
            current = set(self.session.collected.sheets)
            for stale in directory.glob("*.png"):
                if stale.name not in current:
                    stale.unlink(missing_ok=True)
        return written

    def _bless(self, session: pytest.Session, exitstatus: int) -> None:
        """Accept this run as the baseline, only if it completed (see the option's help).

        Threshold/baseline verdict failures do not block: accepting a changed metric is the point
        of blessing (like pytest-regressions' --force-regen). Anything that left metrics unmeasured
        does: an interrupt (Ctrl-C, -x, --maxfail), a collection error, a test that errored or failed
        for another reason (a preflight check, a broken encoder) — blessing it would silently drop
        those metrics from the gate.
        """
        if exitstatus == pytest.ExitCode.INTERRUPTED or session.shouldstop or session.shouldfail:
            self.bless_blockers.insert(0, "the run was interrupted")
        if self.bless_blockers:
            return
        assert self.card is not None and self.paths is not None
        target = Path(self.session.run.baseline)
        target = target if target.is_absolute() else self.config.invocation_params.dir / target
        write_atomic(target, self.paths[0].read_text(encoding="utf-8"))
        self.blessed = target

    def _scorecard(self) -> Scorecard:
        got = self.session.collected
        features: dict[str, int] = {}
        for counters in got.counters.values():
            for name, value in counters.items():
                features[name] = features.get(name, 0) + value
        options = self.session.run
        commit, dirty = _git_state(self.config.rootpath)
        provenance = Provenance(
            created=datetime.now(timezone.utc),
            profile=self.session.profile.name,
            seed=self.session.seed,
            limit=options.limit,
            device=", ".join(sorted(got.devices)) or None,
            git_commit=commit,
            git_dirty=dirty,
            python=sys.version.split()[0],
            platform=platform.platform(),
            packages=_package_versions(),
            command=list(self.config.invocation_params.args),
            workers=max(1, len(got.counters)),
            features=features,
            baseline=str(options.baseline) if options.baseline else None,
            tolerance=self.session.tolerance if options.baseline else None,
            threshold_on=options.threshold_on,
            map_dtype=options.map_dtype,
        )
        return Scorecard(provenance=provenance, probes=dict(sorted(got.probes.items())),
                         encoders=list(got.encoders.values()),
                         datasets=list(got.datasets.values()), records=with_floors(got.records),
                         outcome=got.outcome)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.is_controller or self.card is None:
            return
        from tabulate import tabulate

        tr = terminalreporter
        tr.write_sep("=", "visprobe scorecard")
        headers, body = table_rows(self.card)
        if body:
            tr.write_line(tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True))
        else:
            tr.write_line("no metrics were recorded")
        layered = sorted({r.source_encoder for r in self.card.records if r.layer is not None and r.control_of is None})
        if layered:
            tr.write_line(f"layers (--visprobe-layers) of {', '.join(layered)}: per-layer tables and depth plots "
                          f"in scorecard.md")
        f = self.card.provenance.features
        tr.write_line(
            f"feature sets: {f.get('computed', 0)} computed, {f.get('from_disk', 0)} from cache, "
            f"{f.get('from_memory', 0)} reused in session; {f.get('forward_passes', 0)} forward passes"
            + (f"; {f['recomputed_corrupt']} corrupt cache files recomputed" if f.get("recomputed_corrupt") else "")
        )
        assert self.paths is not None
        tr.write_line(f"scorecard: {self.paths[0]}  {self.paths[1]}")
        if self.blessed is not None:
            tr.write_line(f"blessed: {self.blessed} is now the accepted baseline")
        elif self.session.run.bless:
            shown = "; ".join(self.bless_blockers[:5]) + (" …" if len(self.bless_blockers) > 5 else "")
            tr.write_line(f"not blessed: the baseline was left unchanged because {shown}. Fix that and "
                          f"re-run with --visprobe-bless.", red=True)


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _git_state(root: Path) -> tuple[str | None, bool | None]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=5, check=True).stdout
        return commit or None, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None
