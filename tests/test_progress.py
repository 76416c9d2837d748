"""Progress of feature extraction reaches the person running pytest, not pytest's capture."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from pytest_visprobe.runner.options import ENCODER_OPTION, NO_CACHE_OPTION
from pytest_visprobe.runner import progress
from pytest_visprobe.runner.progress import Progress


@pytest.fixture(autouse=True)
def _real_tty_check():
    original = Progress.__dict__["terminal_is_tty"]
    yield
    Progress.terminal_is_tty = original


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)


def _config(isatty: bool, worker: bool = False, verbosity: int = 0):
    Progress.terminal_is_tty = staticmethod(lambda: isatty)  # undone by the autouse fixture below
    writer = _Writer()
    config = SimpleNamespace(pluginmanager=SimpleNamespace(getplugin=lambda name: object() if name == "terminalreporter" else None),
                             get_terminal_writer=lambda: writer, get_verbosity=lambda: verbosity)
    if worker:
        config.workerinput = {"workerid": "gw0"}
    return config, writer


def test_a_log_gets_one_line_per_finished_feature_set(monkeypatch):
    monkeypatch.setattr(progress, "MIN_SECONDS_FOR_A_LINE", 0.0)
    config, writer = _config(isatty=False)
    with Progress(config).track("enc · digits/train (embed)", total=10, items=640) as tick:
        for _ in range(10):
            tick()
    (line,) = writer.lines
    assert line.startswith("visprobe: features enc · digits/train (embed): 640 images in ") and "images/s" in line


def test_a_terminal_gets_a_bar_that_counts_batches(monkeypatch):
    import tqdm.auto

    seen = []

    class Bar(io.StringIO):
        def __init__(self, total, **kwargs):
            super().__init__()
            seen.append(("open", total, kwargs["desc"]))

        def update(self, n=1):
            seen.append(("tick", n))

        def __exit__(self, *exc):
            seen.append(("close",))

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    config, writer = _config(isatty=True)
    with Progress(config).track("enc · shapes/test (feature_map)", total=5, items=300) as tick:
        for _ in range(5):
            tick()
    assert seen == [("open", 5, "visprobe enc · shapes/test (feature_map)"), *[("tick", 1)] * 5, ("close",)]
    assert writer.lines == []  # the bar is the report on a terminal


def test_xdist_workers_and_quiet_runs_stay_silent():
    for config, writer in (_config(isatty=False, worker=True), _config(isatty=False, verbosity=-2)):
        with Progress(config).track("x", total=10, items=10) as tick:
            tick()
        assert writer.lines == []


def test_a_short_extraction_leaves_the_log_alone():
    config, writer = _config(isatty=False)
    with Progress(config).track("x", total=10, items=10) as tick:
        tick()
    assert writer.lines == []  # under MIN_SECONDS_FOR_A_LINE: not worth splitting a -v line


def test_a_pytest_run_in_a_log_shows_each_extraction(suite, monkeypatch):
    monkeypatch.setattr(progress, "MIN_SECONDS_FOR_A_LINE", 0.0)
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", NO_CACHE_OPTION, "suites/test_semantics.py", "-k", "digits")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*visprobe: features pooled · digits/train (embed): 150 images in * s (* images/s)*",
                                 "*visprobe: features pooled · digits/test (embed): 150 images in *"])
