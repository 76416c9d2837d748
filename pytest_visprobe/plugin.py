"""The pytest plugin: options, hooks, parametrization over encoders and datasets, fixtures.

Loading this module imports neither torch, numpy nor pydantic: every pytest run in the user's
environment loads it. The run's state (``VisprobeSession``) is made when a visprobe option is
used, or on first use by a visprobe test; the reporter (runner/reporter.py) writes the scorecard.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_visprobe.errors import ConfigError, VisprobeError
from pytest_visprobe.runner.options import THRESHOLDS_FILENAME, RunSettings, add_commands, add_options, read_options
from pytest_visprobe.runner.stash import ITEM_KEY, SESSION_KEY, VERDICT_FAILED_KEY

if TYPE_CHECKING:
    from pytest_visprobe.runner.recorder import Recorder
    from pytest_visprobe.runner.session import VisprobeSession

PREFLIGHT_FILE = "test_preflight.py"
DATASETS_MARKER = "visprobe_datasets"
PROBE_MARKER = "visprobe_probe"
NO_ENCODER_REASON = "no --encoder given; e.g. pytest --encoder=examples/tiny_cnn.py suites/"
_SETTINGS_KEY = pytest.StashKey[RunSettings]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_visprobe import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)
    add_commands(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """``--visprobe-list`` and ``--visprobe-schema`` print and exit, as ``--fixtures`` does."""
    listing, schema = config.getoption("visprobe_list", False), config.getoption("visprobe_schema", False)
    if not (listing or schema):
        return None
    try:
        options = read_options(config)
        from pytest_visprobe.runner.extensions import register_extensions

        register_extensions(config)
        if schema:
            from pytest_visprobe.report.scorecard import schema_json

            sys.stdout.write(schema_json() + "\n")
            return pytest.ExitCode.OK
        from pytest_visprobe.runner.listing import write_listing

        write_listing(sys.stdout, options)
    except (pytest.UsageError, ConfigError) as exc:
        sys.stderr.write(f"ERROR: {exc}\n")
        return pytest.ExitCode.USAGE_ERROR
    return pytest.ExitCode.OK


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{PROBE_MARKER}(name): parametrize visprobe_dataset over the profile's datasets for the probe's "
        f"dataset role (see --visprobe-list).",
    )
    config.addinivalue_line(
        "markers",
        f"{DATASETS_MARKER}(role): parametrize visprobe_dataset over the profile's datasets for ROLE "
        f"(label, attributes, ...); a plain --visprobe-dataset SPEC replaces the label-only roles'.",
    )
    options = read_options(config)
    config.stash[_SETTINGS_KEY] = options
    if options != RunSettings():  # a visprobe option was used: validate it all now, before any work
        session_of(config)


def session_of(config: pytest.Config) -> "VisprobeSession":
    """The run's state, made (and validated) on first use; a bad option is a usage error."""
    if SESSION_KEY in config.stash:
        return config.stash[SESSION_KEY]
    from pytest_visprobe.runner.extensions import register_extensions
    from pytest_visprobe.runner.progress import Progress
    from pytest_visprobe.runner.reporter import Reporter
    from pytest_visprobe.runner.session import VisprobeSession

    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    try:
        register_extensions(config)
        session = VisprobeSession.from_options(config.stash[_SETTINGS_KEY], config.rootpath, worker, hook=config.hook)
        _validate_threshold_files(session, config)
        _validate_text_model(session)
        _validate_layers(session)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    session.progress = Progress(config)
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(Reporter(config, session), "visprobe-reporter")
    return session


def _validate_threshold_files(session: "VisprobeSession", config: pytest.Config) -> None:
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


def _validate_text_model(session: "VisprobeSession") -> None:
    """An unknown --visprobe-text-model stops the run before any work (registered names only:
    conftests and plugins have registered theirs by now)."""
    if not session.encoder_refs:
        return
    from pytest_visprobe.encoders.text import check_text_model

    try:
        check_text_model(session.run.text_model)
    except ValueError as exc:
        raise ConfigError(f"--visprobe-text-model: {str(exc).rstrip('.')}.") from None


def _validate_layers(session: "VisprobeSession") -> None:
    """``--visprobe-layers`` naming a layer an encoder lacks stops the run before any work, listing
    the encoder's layers (this loads the encoders, only when the option is given)."""
    from pytest_visprobe.runner.options import LAST

    if session.run.layers == LAST:
        return
    for ref in session.encoder_refs:
        try:
            session.layer_params(ref)
        except ConfigError:
            raise
        except VisprobeError as exc:
            raise ConfigError(f"--visprobe-layers={session.run.layers} reads each encoder's layers at start-up, "
                              f"and {ref.raw} could not be loaded: {exc}") from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wants_encoder = "visprobe_encoder" in metafunc.fixturenames
    wants_dataset = "visprobe_dataset" in metafunc.fixturenames
    if not (wants_encoder or wants_dataset):
        return
    session = session_of(metafunc.config)
    if wants_encoder:
        refs = session.encoder_refs
        if refs and _per_layer(metafunc.definition):
            try:
                refs = [param for ref in refs for param in session.layer_params(ref)]
            except VisprobeError as exc:  # --visprobe-layers names a layer an encoder lacks
                raise pytest.UsageError(str(exc)) from None
        if refs:
            metafunc.parametrize("visprobe_encoder", refs, ids=[r.id for r in refs], indirect=True, scope="session")
        else:
            skip = pytest.param(None, marks=pytest.mark.skip(reason=NO_ENCODER_REASON))
            metafunc.parametrize("visprobe_encoder", [skip], ids=["no-encoder"], indirect=True, scope="session")
    if wants_dataset:
        try:
            specs = session.datasets_for(_role_of(metafunc.definition))
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
        metafunc.parametrize("visprobe_dataset", specs, ids=[dataset_id(s) for s in specs],
                             indirect=True, scope="session")


def _marked_probe(node: Any) -> Any:
    """The ProbeSpec a test names with ``visprobe_probe``, or None (unmarked, or an unknown
    probe, which _role_of reports)."""
    probe = node.get_closest_marker(PROBE_MARKER)
    if not (probe and probe.args):
        return None
    from pytest_visprobe.probes.spec import get_probe

    try:
        return get_probe(probe.args[0])
    except KeyError:
        return None


def _per_layer(definition: Any) -> bool:
    """Whether the test's probe runs on each ``--visprobe-layers`` layer too (``ProbeSpec.per_layer``)."""
    spec = _marked_probe(definition)
    return spec is not None and spec.per_layer


def _role_of(definition: Any) -> str:
    """The dataset role of a test: its probe's (``visprobe_probe``), or ``visprobe_datasets(ROLE)``."""
    probe = definition.get_closest_marker(PROBE_MARKER)
    if probe and probe.args:
        from pytest_visprobe.probes.spec import get_probe

        try:
            return get_probe(probe.args[0]).role
        except KeyError as exc:
            raise pytest.UsageError(f"{definition.nodeid}: @pytest.mark.{PROBE_MARKER}: {exc}") from None
    marker = definition.get_closest_marker(DATASETS_MARKER)
    return marker.args[0] if marker and marker.args else "label"


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Preflight checks (visprobe tests in a test_preflight.py) run before any probe; a stable
    sort, so the order is otherwise kept."""
    def later(item: pytest.Item) -> bool:
        return not (item.path.name == PREFLIGHT_FILE and "visprobe_encoder" in getattr(item, "fixturenames", ()))

    items.sort(key=later)
    _deselect_layer_tests(config, items)
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:  # under `pytest -n N --dist loadgroup`, one worker extracts each encoder's features
        encoder = _encoder_param(item)
        if encoder is not None:
            item.add_marker(pytest.mark.xdist_group(f"visprobe-{encoder}"))


def _deselect_layer_tests(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without --visprobe-layers, tests of probes that compare layers (``ProbeSpec.layers_only``) are
    deselected, not skipped: the run and its scorecard are as if they did not exist."""
    from pytest_visprobe.runner.options import LAST

    if config.stash[_SETTINGS_KEY].layers != LAST:
        return
    dropped = [item for item in items if _layers_only(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


def _layers_only(item: pytest.Item) -> bool:
    spec = _marked_probe(item)
    return spec is not None and spec.layers_only


def _encoder_param(item: pytest.Item) -> str | None:
    """The ``--encoder`` id a test is parametrized with, or None (encoder-comparing tests have none)."""
    callspec = getattr(item, "callspec", None)
    ref = callspec.params.get("visprobe_encoder") if callspec is not None else None
    ref = getattr(ref, "ref", ref)  # a layer goes to its encoder's worker: one forward pass for all layers
    return getattr(ref, "id", None)


def dataset_id(spec: str) -> str:
    from pytest_visprobe.datasets.specs import parse_dataset_spec

    return parse_dataset_spec(spec).id


@pytest.fixture(scope="session")
def visprobe_session(request: pytest.FixtureRequest) -> "VisprobeSession":
    """The run's state: settings, profile, feature store."""
    return session_of(request.config)


@pytest.fixture(scope="session")
def visprobe_encoder(request: pytest.FixtureRequest, visprobe_session: "VisprobeSession"):
    """The encoder under test (parametrized over ``--encoder``, and for per-layer probes over the
    ``--visprobe-layers`` layers of each), loaded once per process."""
    param = request.param
    layer = getattr(param, "layer", None)
    if layer is not None:
        return visprobe_session.layer_encoder(visprobe_session.encoder(param.ref), layer)
    return visprobe_session.encoder(param)


@pytest.fixture(scope="session")
def visprobe_dataset(request: pytest.FixtureRequest, visprobe_session: "VisprobeSession"):
    """The dataset under test (parametrized over the profile's datasets for the test's role).

    A real dataset that is not on disk skips its tests, the reason naming the fix.
    """
    from pytest_visprobe.errors import DatasetNotFoundError

    try:
        return visprobe_session.dataset(request.param)
    except DatasetNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def visprobe_encoders(visprobe_session: "VisprobeSession") -> list:
    """Every ``--encoder``, loaded, in command-line order: for probes that compare encoders (RSA).

    The first one is the reference encoder. Skips the test when no encoder is given.
    """
    if not visprobe_session.encoder_refs:
        pytest.skip(NO_ENCODER_REASON)
    return visprobe_session.loaded_encoders()


@pytest.fixture(scope="session")
def visprobe_text_model(visprobe_session: "VisprobeSession") -> str:
    """The label-text model spec (``--visprobe-text-model``, default ``minilm``); loads nothing."""
    return visprobe_session.run.text_model


@pytest.fixture
def visprobe(request: pytest.FixtureRequest, visprobe_session: "VisprobeSession") -> "Recorder":
    """Runs probes, gives features and skips, and checks metrics against thresholds and the baseline."""
    from pytest_visprobe.runner.recorder import Recorder

    return Recorder(visprobe_session, request.node)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    session = item.config.stash.get(SESSION_KEY, None)
    if session is None:  # no visprobe test has run in this process
        return report
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
    if call.excinfo is not None and isinstance(call.excinfo.value, VisprobeError):
        # the message already names cause and fix; a traceback wall would only hide it
        report.longrepr = f"{type(call.excinfo.value).__name__}: {call.excinfo.value}"
    return report
