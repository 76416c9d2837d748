"""Few-shot and RSA plots drawn from scorecard records (what the controller does)."""

from __future__ import annotations

from datetime import datetime, timezone

import matplotlib
import matplotlib.axes
import matplotlib.pyplot  # noqa: F401  (imported at collection: pytester's inline runs must not drop it)
import pytest

from pytest_visprobe.probes.spec import get_probe
from pytest_visprobe.report.plots.generalization import plot_fewshot, plot_similarity
from pytest_visprobe.kernels import rsa
from pytest_visprobe.report.scorecard import Provenance, Record, Scorecard

matplotlib.use("Agg")


def _card(records):
    provenance = Provenance(created=datetime(2026, 1, 1, tzinfo=timezone.utc), profile="quick", seed=0,
                            python="3.11", platform="linux", packages={}, command=[])
    return Scorecard(provenance=provenance, records=records)


def _record(encoder, probe, dataset, metric, value, spread=None, chance=None, **details):
    return Record(encoder=encoder, probe=probe, dataset=dataset, metric=metric, value=value, spread=spread,
                  higher_is_better=True, passed=True, nodeid="x", details=details, chance=chance)


def _fewshot(encoder, metric, value, spread):
    n = int(metric.split("_")[1].removesuffix("shot"))
    return _record(encoder, "fewshot", "digits", metric, value, spread, chance=0.1, n_shot=n, trials=3,
                   per_trial=[value] * 3, n_test=10)


def _similarity(encoder, dataset, metric, value, **details):
    return _record(encoder, "similarity", dataset, metric, value, split="test", **details)


def test_plots_are_declared_by_their_probes():
    assert get_probe("fewshot").plot.endswith(":plot_fewshot")
    assert get_probe("similarity").plot.endswith(":plot_similarity")


def test_fewshot_plot_draws_one_line_per_encoder(tmp_path, monkeypatch):
    drawn = []
    original = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar",
                        lambda self, x, y, yerr=None, **kw: drawn.append((kw["label"], list(x), list(y), list(yerr)))
                        or original(self, x, y, yerr=yerr, **kw))
    card = _card([
        _fewshot("a", "top1_5shot", 0.6, 0.05),
        _fewshot("a", "top1_1shot", 0.4, 0.1),
        _fewshot("b", "top1_1shot", 0.3, 0.02),
        _record("a", "clustering", "digits", "nmi", 0.5),
    ])
    (path,) = plot_fewshot(card, tmp_path)
    assert path.name == "fewshot.png" and path.stat().st_size > 1000
    assert sorted(drawn) == [("a", [1, 5], [0.4, 0.6], [0.1, 0.05]), ("b", [1], [0.3], [0.02])]


def test_similarity_plot_uses_the_largest_matrix_per_dataset(tmp_path, monkeypatch):
    seen = []
    original = rsa.similarity_linkage
    monkeypatch.setattr(rsa, "similarity_linkage", lambda names, corr: seen.append(list(names)) or original(names, corr))
    encoders = {"names": ["a", "b"], "matrix": [[1, 0.5], [0.5, 1]]}
    full = {"names": ["a", "b", "text:minilm"], "matrix": [[1, 0.5, 0.2], [0.5, 1, 0.1], [0.2, 0.1, 1]]}
    card = _card([
        _similarity("b", "digits", "rsa_reference", 0.5, **encoders),
        _similarity("a", "digits", "rsa_language", 0.2, **full),
        _similarity("b", "shapes", "rsa_reference", 0.3, names=["a", "b"], matrix=[[1, 0.3], [0.3, 1]]),
    ])
    paths = plot_similarity(card, tmp_path)
    assert [p.name for p in paths] == ["similarity-digits.png", "similarity-shapes.png"]
    assert seen[0] == ["a", "b", "text:minilm"] and seen[1] == ["a", "b"]
    assert plot_similarity(_card([]), tmp_path) == []


def test_a_plot_failure_warns_and_keeps_the_scorecard(tmp_path):
    from pytest_visprobe.report.plots import write_plots

    broken = _card([_similarity("a", "digits", "rsa_language", 0.2, names=["a", "b"], matrix=[[1]])])
    with pytest.warns(UserWarning, match="plot_similarity could not be drawn"):
        assert write_plots(broken, tmp_path) == []
