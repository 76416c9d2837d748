"""The pytest plugin: options, parametrization over encoders and datasets, fixtures, reporting.

Loading this module imports neither torch nor the probes; they load when a test needs them.
Workers attach results to their reports; the controller gathers them and is the only process
that writes the scorecard or prints the summary.
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

from .errors import ConfigError, VisprobeError
from .options import THRESHOLDS_FILENAME, add_commands, add_options, read_options
from .recorder import ITEM_KEY, VERDICT_FAILED_KEY, Recorder
from .scorecard import (
    DatasetInfo,
    EncoderInfo,
    Provenance,
    Record,
    Scorecard,
    table_rows,
    with_floors,
    write_atomic,
    write_scorecard,
)
from .session import VisprobeSession

SESSION_KEY = pytest.StashKey[VisprobeSession]()
PREFLIGHT_FILE = "test_preflight.py"
STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
DATASETS_MARKER = "visprobe_datasets"
NO_ENCODER_REASON = "no --encoder given; e.g. pytest --encoder=examples/tiny_cnn.py suites/"
PACKAGES = ("pytest-visprobe", "torch", "torchvision", "timm", "open_clip_torch", "numpy",
            "scikit-learn", "scikit-image", "pytest")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)
    add_commands(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """``--visprobe-list`` prints what is registered and exits, as ``--fixtures`` does."""
    if not config.getoption("visprobe_list", False):
        return None
    from .listing import write_listing

    try:
        options = read_options(config)
    except pytest.UsageError as exc:
        sys.stderr.write(f"ERROR: {exc}\n")
        return pytest.ExitCode.USAGE_ERROR
    write_listing(sys.stdout, options)
    return pytest.ExitCode.OK


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{DATASETS_MARKER}(role): parametrize visprobe_dataset over the profile's datasets for "
        f"ROLE (label, attributes, ...); --visprobe-dataset replaces the label-only roles' (label, fewshot, clustering, similarity, robustness).",
    )
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    try:
        session = VisprobeSession.from_options(read_options(config), config.rootpath, worker)
        _validate_threshold_files(session, config)
        _validate_text_model(session)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(_Reporter(config, session), "visprobe-reporter")


def _validate_threshold_files(session: VisprobeSession, config: pytest.Config) -> None:
    """Load every thresholds file the run will use now, so a bad one stops it before any work."""
    if not session.encoder_refs:
        return
    for arg in config.args:
        path = Path(arg.split("::", 1)[0])
        path = path if path.is_absolute() else config.invocation_params.dir / path
        if path.is_dir():
            for found in path.rglob(THRESHOLDS_FILENAME):
                session.thresholds_near(found.parent)
            session.thresholds_near(path)
        elif path.exists():
            session.thresholds_near(path.parent)


def _validate_text_model(session: VisprobeSession) -> None:
    """An unknown --visprobe-text-model stops the run before any work (registered names only:
    conftests and plugins have registered theirs by now)."""
    if not session.encoder_refs:
        return
    from .text_embeddings import check_text_model

    try:
        check_text_model(session.options["visprobe_text_model"])
    except ValueError as exc:
        raise ConfigError(f"--visprobe-text-model: {exc}.") from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session = metafunc.config.stash[SESSION_KEY]
    if "visprobe_encoder" in metafunc.fixturenames:
        refs = session.encoder_refs
        if refs:
            metafunc.parametrize("visprobe_encoder", refs, ids=[r.id for r in refs], indirect=True, scope="session")
        else:
            skip = pytest.param(None, marks=pytest.mark.skip(reason=NO_ENCODER_REASON))
            metafunc.parametrize("visprobe_encoder", [skip], ids=["no-encoder"], indirect=True, scope="session")
    if "visprobe_dataset" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker(DATASETS_MARKER)
        role = marker.args[0] if marker and marker.args else "label"
        try:
            specs = session.datasets_for(role)
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
        metafunc.parametrize("visprobe_dataset", specs, ids=[dataset_id(s) for s in specs],
                             indirect=True, scope="session")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Preflight checks (visprobe tests in a test_preflight.py) run before any probe; a stable
    sort, so the order is otherwise kept."""
    def later(item: pytest.Item) -> bool:
        return not (item.path.name == PREFLIGHT_FILE and "visprobe_encoder" in getattr(item, "fixturenames", ()))

    items.sort(key=later)


def dataset_id(spec: str) -> str:
    name, sep, path = spec.partition(":")
    return f"{name}-{Path(path).name}" if sep else spec


@pytest.fixture(scope="session")
def visprobe_session(request: pytest.FixtureRequest) -> VisprobeSession:
    """The run's state: options, profile, feature store."""
    return request.config.stash[SESSION_KEY]


@pytest.fixture(scope="session")
def visprobe_encoder(request: pytest.FixtureRequest, visprobe_session: VisprobeSession):
    """The encoder under test (parametrized over ``--encoder``), loaded once per process."""
    return visprobe_session.encoder(request.param)


@pytest.fixture(scope="session")
def visprobe_dataset(request: pytest.FixtureRequest, visprobe_session: VisprobeSession):
    """The dataset under test (parametrized over the profile's datasets for the test's role).

    A real dataset that is not on disk skips its tests, the reason naming the fix.
    """
    from .datasets import DatasetNotFoundError

    try:
        return visprobe_session.dataset(request.param)
    except DatasetNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def visprobe_encoders(visprobe_session: VisprobeSession) -> list:
    """Every ``--encoder``, loaded, in command-line order: for probes that compare encoders (RSA).

    The first one is the reference encoder. Skips the test when no encoder is given.
    """
    if not visprobe_session.encoder_refs:
        pytest.skip(NO_ENCODER_REASON)
    return [visprobe_session.encoder(ref) for ref in visprobe_session.encoder_refs]


@pytest.fixture(scope="session")
def visprobe_text_model(visprobe_session: VisprobeSession) -> str:
    """The label-text model spec (``--visprobe-text-model``, default ``minilm``); loads nothing."""
    return visprobe_session.options["visprobe_text_model"]


@pytest.fixture
def visprobe(request: pytest.FixtureRequest, visprobe_session: VisprobeSession) -> Recorder:
    """Features, skips and threshold/baseline checks for one probe test."""
    return Recorder(visprobe_session, request.node)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    session = item.config.stash[SESSION_KEY]
    payload = item.stash.get(ITEM_KEY, None)
    if call.when == "call" and payload:
        for record in payload["records"]:
            record["duration"] = round(report.duration, 4)
        report.visprobe = payload
    if call.when == "call" and report.failed and item.stash.get(VERDICT_FAILED_KEY, False):
        report.visprobe_verdict = True  # failed on a threshold/baseline: does not block --visprobe-bless
    if call.when == "teardown" and session._store is not None:
        report.visprobe_counters = {"worker": session.worker_id, "device": str(session.store.device),
                                    "counters": session.store.counters.as_dict()}
    if call.excinfo is not None and _is_user_error(call.excinfo.value):
        # the message already names cause and fix; a traceback wall would only hide it
        report.longrepr = f"{type(call.excinfo.value).__name__}: {call.excinfo.value}"
    return report


def _is_user_error(exc: BaseException) -> bool:
    from .datasets.base import DatasetError

    return isinstance(exc, (VisprobeError, DatasetError))


class _Reporter:
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
        self.paths = write_scorecard(self.card, self.session.report_dir)
        markdown = self.paths[1].read_text(encoding="utf-8")
        summary = os.environ.get(STEP_SUMMARY_ENV)
        if summary:  # GitHub Actions shows this file on the run's page
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(markdown + "\n")
        if self.session.options["visprobe_bless"]:
            self._bless(session, exitstatus)

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
        target = Path(self.session.options["visprobe_baseline"])
        target = target if target.is_absolute() else self.config.invocation_params.dir / target
        write_atomic(target, self.paths[0].read_text(encoding="utf-8"))
        self.blessed = target

    def _scorecard(self) -> Scorecard:
        got = self.session.collected
        features: dict[str, int] = {}
        for counters in got.counters.values():
            for name, value in counters.items():
                features[name] = features.get(name, 0) + value
        options = self.session.options
        commit, dirty = _git_state(self.config.rootpath)
        provenance = Provenance(
            created=datetime.now(timezone.utc),
            profile=self.session.profile.name,
            seed=self.session.seed,
            limit=options["visprobe_limit"],
            device=", ".join(sorted(got.devices)) or None,
            git_commit=commit,
            git_dirty=dirty,
            python=sys.version.split()[0],
            platform=platform.platform(),
            packages=_package_versions(),
            command=list(self.config.invocation_params.args),
            workers=max(1, len(got.counters)),
            features=features,
            baseline=str(options["visprobe_baseline"]) if options["visprobe_baseline"] else None,
            tolerance=self.session.tolerance if options["visprobe_baseline"] else None,
        )
        return Scorecard(provenance=provenance, encoders=list(got.encoders.values()),
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
        elif self.session.options["visprobe_bless"]:
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
